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


def lq_euler_quadratic(A, B, Q, R, S, x0, T, N):
    """E^N(U) = U^T H U / 2 + b^T U + c for forward Euler on an LQ problem, assembled
    from the matrices (U flattened row-major, m inputs). Returns (H, b, c)."""
    A, B, Q, R, S, x0 = (np.atleast_2d(np.asarray(v, dtype=float)) for v in (A, B, Q, R, S, x0))
    x0 = x0.reshape(-1)
    n, m = B.shape
    h = T / N
    Phi = np.eye(n) + h * A
    G = [np.zeros((n, N * m))]  # x_k = G_k U + c_k
    c = [x0]
    for k in range(N):
        Gk = Phi @ G[-1]
        Gk[:, k * m : (k + 1) * m] += h * B
        G.append(Gk)
        c.append(Phi @ c[-1])
    H = sum(h * G[k].T @ Q @ G[k] for k in range(N)) + np.kron(np.eye(N), h * R)
    H = H + G[N].T @ S @ G[N]
    b = sum(h * G[k].T @ Q @ c[k] for k in range(N)) + G[N].T @ S @ c[N]
    const = 0.5 * sum(h * c[k] @ Q @ c[k] for k in range(N)) + 0.5 * c[N] @ S @ c[N]
    return H, b, const
