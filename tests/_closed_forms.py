"""Closed forms and independent numpy references shared by the tests.

Nothing here imports the package under test.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg


def lq_rk_quadratic(A, B, Q, R, S, x0, tableau, T, N):
    r"""E^N(U) = U^T H U / 2 + b^T U + c for an explicit Runge-Kutta scheme (Butcher
    `tableau` = (a, b)) on an LQ problem whose running cost is folded into the state
    (y' = (x^T Q x + u^T R u)/2, integrated by the same scheme), uniform grid on [0, T].

    With u held constant on a step, every stage is linear: X_i = P_i x_k + W_i u_k with
    P_i = I + h sum_j a_ij A P_j, W_i = h sum_j a_ij (A W_j + B). Then
    x_{k+1} = (I + h sum_i b_i A P_i) x_k + h sum_i b_i (A W_i + B) u_k and the cost
    increment is h sum_i b_i L(X_i, u_k). U is row-major (index k*m + i). For the
    Euler tableau this is `_reference.lq_euler_quadratic`.
    """
    A, B, Q, R, S = (np.atleast_2d(np.asarray(v, dtype=float)) for v in (A, B, Q, R, S))
    x0 = np.asarray(x0, dtype=float).reshape(-1)
    a, bw = (np.asarray(v, dtype=float) for v in tableau)
    n, m = B.shape
    s = bw.shape[0]
    h = T / N
    P, W = [], []
    for i in range(s):
        Pi, Wi = np.eye(n), np.zeros((n, m))
        for j in range(i):
            Pi = Pi + h * a[i, j] * A @ P[j]
            Wi = Wi + h * a[i, j] * (A @ W[j] + B)
        P.append(Pi)
        W.append(Wi)
    Phi = np.eye(n) + h * sum(bw[i] * A @ P[i] for i in range(s))
    Gam = h * sum(bw[i] * (A @ W[i] + B) for i in range(s))
    G = np.zeros((n, N * m))
    c = x0.copy()
    H = np.zeros((N * m, N * m))
    b = np.zeros(N * m)
    const = 0.0
    for k in range(N):
        sl = slice(k * m, (k + 1) * m)
        for i in range(s):
            M = P[i] @ G
            M[:, sl] += W[i]
            d = P[i] @ c
            H += h * bw[i] * M.T @ Q @ M
            b += h * bw[i] * M.T @ Q @ d
            const += 0.5 * h * bw[i] * d @ Q @ d
        H[sl, sl] += h * bw.sum() * R
        G = Phi @ G
        G[:, sl] += Gam
        c = Phi @ c
    H += G.T @ S @ G
    b += G.T @ S @ c
    const += 0.5 * c @ S @ c
    return H, b, const


def lq_hamiltonian_solution(A, B, Q, R, S, x0, T, ts):
    r"""The continuous LQ optimum in closed form, from the matrix exponential of the
    Hamiltonian matrix Z = [[A, -B R^-1 B^T], [-Q, -A^T]] (no ODE solver).

    P(t) = Y X^-1 with [X; Y] = expm(Z (t - T)) [I; S] (Radon's lemma: the solution of
    -P' = A^T P + P A - P B R^-1 B^T P + Q, P(T) = S); the optimal state and costate
    are [x; lam](t) = expm(Z t) [x0; P(0) x0], u*(t) = -R^-1 B^T lam(t), and the cost
    is x0^T P(0) x0 / 2. Returns (cost, P (len(ts), n, n), x (len(ts), n),
    u (len(ts), m)).
    """
    A, B, Q, R, S = (np.atleast_2d(np.asarray(v, dtype=float)) for v in (A, B, Q, R, S))
    x0 = np.asarray(x0, dtype=float).reshape(-1)
    n = A.shape[0]
    Rinv_Bt = np.linalg.solve(R, B.T)
    Z = np.block([[A, -B @ Rinv_Bt], [-Q, -A.T]])

    def P_at(t):
        XY = scipy.linalg.expm(Z * (t - T)) @ np.vstack([np.eye(n), S])
        return np.linalg.solve(XY[:n].T, XY[n:].T).T

    P = np.stack([P_at(t) for t in ts])
    P0 = P_at(0.0)
    z0 = np.concatenate([x0, P0 @ x0])
    xl = np.stack([scipy.linalg.expm(Z * t) @ z0 for t in ts])
    x, lam = xl[:, :n], xl[:, n:]
    u = -lam @ Rinv_Bt.T
    return 0.5 * x0 @ P0 @ x0, P, x, u


def scalar_euler_derivatives(U, grid, rho=1.0):
    r"""Gradient and Hessian of E^N for the signature problem x' = -x + u - 0.1 x^3,
    x(0) = 0, E = (x_N - 1)^2 / 2 + sum_k h_k rho u_k^2 / 2 (forward Euler), by hand.

    With a_k = 1 + h_k (-1 - 0.3 x_k^2) and the sensitivities s_k = dx_k/dU
    (s_{k+1} = a_k s_k + h_k e_k): G = s_N, and the second derivative of x_N is
    K = sum_k w_k s_k s_k^T with w_k = -0.6 h_k x_k prod_{i>k} a_i. Then
    grad = (x_N - 1) G + rho h U and Hess = G G^T + (x_N - 1) K + rho diag(h).
    Returns (grad (N,), Hess (N, N), x (N + 1,)). Dense: for N up to a few hundred.
    """
    U = np.asarray(U, dtype=float).reshape(-1)
    h = np.diff(np.asarray(grid, dtype=float))
    N = h.shape[0]
    x = np.zeros(N + 1)
    S = np.zeros((N + 1, N))
    a = np.empty(N)
    for k in range(N):
        x[k + 1] = x[k] + h[k] * (-x[k] + U[k] - 0.1 * x[k] ** 3)
        a[k] = 1 + h[k] * (-1 - 0.3 * x[k] ** 2)
        S[k + 1] = a[k] * S[k]
        S[k + 1, k] += h[k]
    tail = np.append(np.cumprod(a[::-1])[::-1][1:], 1.0)  # prod_{i > k} a_i
    w = -0.6 * h * x[:-1] * tail
    K = S[:N].T @ (w[:, None] * S[:N])
    G = S[N]
    grad = (x[N] - 1) * G + rho * h * U
    hess = np.outer(G, G) + (x[N] - 1) * K + np.diag(rho * h)
    return grad, hess, x


def scalar_euler_optimum(grid, rho=1.0, max_steps=30):
    """The minimiser of `scalar_euler_derivatives`' E^N by Newton's method from U = 0
    (numpy; converges quadratically, to |grad|_inf ~ 1e-18 here)."""
    U = np.zeros(np.asarray(grid).shape[0] - 1)
    for _ in range(max_steps):
        g, H, _ = scalar_euler_derivatives(U, grid, rho)
        step = np.linalg.solve(H, g)
        U = U - step
        if np.max(np.abs(step)) <= 1e-15 * max(1.0, np.max(np.abs(U))):
            break
    g, H, _ = scalar_euler_derivatives(U, grid, rho)
    return U, g, H


def scalar_euler_rayleigh(Us, v, grid, rho=1.0):
    """v^T Hess E^N(U) v for each row of `Us` (B, N), by the tangent and second-order
    tangent recursions t_{k+1} = a_k t_k + h_k v_k, r_{k+1} = a_k r_k - 0.6 h_k x_k t_k^2:
    v^T Hess v = t_N^2 + (x_N - 1) r_N + rho sum_k h_k v_k^2. O(N) per row."""
    Us = np.atleast_2d(np.asarray(Us, dtype=float))
    h = np.diff(np.asarray(grid, dtype=float))
    x = np.zeros(Us.shape[0])
    t = np.zeros_like(x)
    r = np.zeros_like(x)
    for k in range(h.shape[0]):
        a = 1 + h[k] * (-1 - 0.3 * x**2)
        r = a * r - 0.6 * h[k] * x * t**2
        t = a * t + h[k] * v[k]
        x = x + h[k] * (-x + Us[:, k] - 0.1 * x**3)
    return t**2 + (x - 1) * r + rho * np.sum(h * v**2)
