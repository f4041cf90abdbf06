"""Independent numpy references: forward Euler and its adjoint, written out by hand.

Nothing here imports the package under test.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.linalg


@dataclasses.dataclass(frozen=True)
class RandomProblem:
    """f(x, u) = W tanh(A x + B u + c) + D x,  E(x) = a . sin(x) + x^T P x / 2.

    Smooth, nonlinear in x and u, with hand-written Jacobians.
    """

    W: np.ndarray
    A: np.ndarray
    B: np.ndarray
    c: np.ndarray
    D: np.ndarray
    a: np.ndarray
    P: np.ndarray
    x0: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, n: int, m: int) -> RandomProblem:
        k = n + 1
        P = rng.normal(size=(n, n))
        return cls(
            W=rng.normal(size=(n, k)) / np.sqrt(k),
            A=rng.normal(size=(k, n)) / np.sqrt(n),
            B=rng.normal(size=(k, m)) / np.sqrt(m),
            c=rng.normal(size=k),
            D=0.3 * rng.normal(size=(n, n)),
            a=rng.normal(size=n),
            P=P @ P.T / n,
            x0=rng.normal(size=n),
        )

    # numpy versions
    def f(self, x, u):
        return self.W @ np.tanh(self.A @ x + self.B @ u + self.c) + self.D @ x

    def f_x(self, x, u):
        s = 1.0 - np.tanh(self.A @ x + self.B @ u + self.c) ** 2
        return self.W @ (s[:, None] * self.A) + self.D

    def f_u(self, x, u):
        s = 1.0 - np.tanh(self.A @ x + self.B @ u + self.c) ** 2
        return self.W @ (s[:, None] * self.B)

    def E(self, x):
        return self.a @ np.sin(x) + 0.5 * x @ self.P @ x

    def E_x(self, x):
        return self.a * np.cos(x) + self.P @ x

    # jax versions, for building the problem under test
    def jax_functions(self):
        import jax.numpy as jnp

        W, A, B, c, D, a, P = (
            jnp.asarray(v) for v in (self.W, self.A, self.B, self.c, self.D, self.a, self.P)
        )

        def f(x, u):
            return W @ jnp.tanh(A @ x + B @ u + c) + D @ x

        def E(x):
            return a @ jnp.sin(x) + 0.5 * x @ (P @ x)

        return f, E


def euler_reference(f, f_x, f_u, E_x, x0, U, grid):
    """Forward Euler states, the costate recursion (23)/(25) and dH/du, by hand.

    Returns (xs (N+1, n), lams (N, n), dHdu (N, m)).
    """
    N = U.shape[0]
    h = np.diff(grid)
    xs = [np.asarray(x0, dtype=float)]
    for k in range(N):
        xs.append(xs[-1] + h[k] * f(xs[-1], U[k]))
    lams = [None] * N
    lams[N - 1] = E_x(xs[N])
    for k in range(N - 1, 0, -1):
        lams[k - 1] = lams[k] + h[k] * f_x(xs[k], U[k]).T @ lams[k]
    dHdu = np.stack([f_u(xs[k], U[k]).T @ lams[k] for k in range(N)])
    return np.stack(xs), np.stack(lams), dHdu


def linear_flow_exact(A, B, u, x0, t):
    """x(t) for x' = A x + B u with constant u, by the matrix exponential of the
    augmented system [[A, B u], [0, 0]]."""
    n = A.shape[0]
    M = np.zeros((n + 1, n + 1))
    M[:n, :n] = A
    M[:n, n] = B @ u
    z = scipy.linalg.expm(M * t) @ np.concatenate([x0, [1.0]])
    return z[:n]


def rel(a, b):
    """max|a - b| / max|b|."""
    a, b = np.asarray(a), np.asarray(b)
    scale = np.max(np.abs(b))
    return np.max(np.abs(a - b)) / (scale if scale > 0 else 1.0)


def fit_order(hs, errs):
    """Slope of log(err) against log(h), least squares."""
    return np.polyfit(np.log(hs), np.log(errs), 1)[0]


def lq_euler_quadratic(A, B, Q, R, S, x0, grid=None, *, T=None, N=None):
    """E^N(U) = U^T H U / 2 + b^T U + c for forward Euler on an LQ problem, assembled by
    hand in numpy. The grid is `grid`, or uniform on [0, T] with N steps.

    x_{k+1} = (I + h_k A) x_k + h_k B u_k, so x_k = G_k U + c_k with
    G_{k+1} = (I + h_k A) G_k + h_k B E_k, c_{k+1} = (I + h_k A) c_k. The cost is
    x_N^T S x_N / 2 + sum_k h_k (x_k^T Q x_k + u_k^T R u_k) / 2. U is ordered
    row-major (index k*m + i is u_{k,i}). Returns (H, b, c).
    """
    A, B, Q, R, S, x0 = (np.atleast_2d(np.asarray(v, dtype=float)) for v in (A, B, Q, R, S, x0))
    x0 = x0.reshape(-1)
    n, m = B.shape
    if grid is None:
        grid = np.linspace(0.0, T, N + 1)
    h = np.diff(np.asarray(grid, dtype=float))
    N = h.shape[0]
    G = np.zeros((n, N * m))
    c = x0.copy()
    H = np.zeros((N * m, N * m))
    b = np.zeros(N * m)
    const = 0.0
    for k in range(N):
        H += h[k] * G.T @ Q @ G
        b += h[k] * G.T @ Q @ c
        const += 0.5 * h[k] * c @ Q @ c
        sl = slice(k * m, (k + 1) * m)
        H[sl, sl] += h[k] * R
        Phi = np.eye(n) + h[k] * A
        G = Phi @ G
        G[:, sl] += h[k] * B
        c = Phi @ c
    H += G.T @ S @ G
    b += G.T @ S @ c
    const += 0.5 * c @ S @ c
    return H, b, const
