"""Problems with known equilibria and independent numpy references for the
stability tests.

`double_well` is the nonconvex problem with a saddle equilibrium (a candidate
for `flow.problems`). The LQ assembly and the scalar Euler sensitivities are
written out by hand in numpy; nothing here calls the code under test.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import flow


def double_well(rho: float = 0.5) -> flow.OptimalControlProblem:
    r"""x' = u, x(0) = 0, t in [0, 1]; cost (x(1)^2 - 1)^2 / 4 + int rho/2 u^2 dt.

    Euler is exact here: x_N = h sum_k u_k = s. So
    E^N(U) = (s^2 - 1)^2 / 4 + rho h |U|^2 / 2 and

    - U = 0 is stationary with Hessian -h^2 11^T + rho h I: eigenvalues rho h
      (N - 1 times) and h (rho - 1); for rho < 1 a saddle of index 1;
    - U = +-sqrt(1 - rho) 1 are minimisers with Hessian (2 - 3 rho) h^2 11^T +
      rho h I: eigenvalues rho h (N - 1 times) and h (2 - 2 rho).
    """

    def dynamics(x, u):
        return u

    def endpoint(x):
        return 0.25 * (x[0] ** 2 - 1.0) ** 2

    def running(x, u):
        return 0.5 * rho * jnp.sum(u**2)

    return flow.OptimalControlProblem(
        dynamics,
        endpoint,
        x0=[0.0],
        t0=0.0,
        tf=1.0,
        running_cost=running,
        control_dim=1,
        name=f"double_well(rho={rho:g})",
    )


def hill() -> flow.OptimalControlProblem:
    """x' = u, cost -x(1)^2/2 - int u^2/2: U = 0 is a strict local maximum (a source
    of every gradient flow)."""

    def running(x, u):
        return -0.5 * jnp.sum(u**2)

    return flow.OptimalControlProblem(
        lambda x, u: u,
        lambda x: -0.5 * x[0] ** 2,
        x0=[0.0],
        t0=0.0,
        tf=1.0,
        running_cost=running,
        control_dim=1,
        name="hill",
    )


def lq_euler_quadratic(A, B, Q, R, S, x0, grid):
    """E^N(U) = U^T H U / 2 + b^T U + c for forward Euler on an LQ problem, by hand.

    x_{k+1} = (I + h_k A) x_k + h_k B u_k, so x_k = G_k U + c_k with
    G_{k+1} = (I + h_k A) G_k + h_k B E_k, c_{k+1} = (I + h_k A) c_k. The cost is
    x_N^T S x_N / 2 + sum_k h_k (x_k^T Q x_k + u_k^T R u_k) / 2. U is ordered
    row-major (index k*m + i is u_{k,i}). Returns (H, b).
    """
    A, B, Q, R, S, x0 = (np.atleast_2d(np.asarray(a, dtype=float)) for a in (A, B, Q, R, S, x0))
    x0 = x0.reshape(-1)
    n, m = B.shape
    h = np.diff(np.asarray(grid, dtype=float))
    N = h.shape[0]
    G = np.zeros((n, N * m))
    c = x0.copy()
    H = np.zeros((N * m, N * m))
    b = np.zeros(N * m)
    for k in range(N):
        H += h[k] * G.T @ Q @ G
        b += h[k] * G.T @ Q @ c
        sl = slice(k * m, (k + 1) * m)
        H[sl, sl] += h[k] * R
        Phi = np.eye(n) + h[k] * A
        G = Phi @ G
        G[:, sl] += h[k] * B
        c = Phi @ c
    H += G.T @ S @ G
    b += G.T @ S @ c
    return H, b


def scalar_mayer_sensitivity(U, grid):
    """dx_N/dU for x' = -x + u - 0.1 x^3 (Euler, x0 = 0), by hand: with
    a_j = 1 + h_j (-1 - 0.3 x_j^2), dx_N/du_k = h_k prod_{j > k} a_j."""
    U = np.asarray(U, dtype=float).reshape(-1)
    h = np.diff(np.asarray(grid, dtype=float))
    N = U.shape[0]
    x = np.zeros(N + 1)
    for k in range(N):
        x[k + 1] = x[k] + h[k] * (-x[k] + U[k] - 0.1 * x[k] ** 3)
    a = 1.0 + h * (-1.0 - 0.3 * x[:-1] ** 2)
    G = np.empty(N)
    tail = 1.0
    for k in range(N - 1, -1, -1):
        G[k] = h[k] * tail
        tail *= a[k]
    return G, x
