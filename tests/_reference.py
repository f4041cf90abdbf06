"""Independent numpy references: the one-step schemes and their discrete adjoints,
written out by hand, and derivative checks that need no adjoint at all.

Nothing here imports the package under test. The references are written
differently from the package on purpose: the schemes from their Butcher tableaux
(the package writes each scheme out as its formula), the adjoint as the generic
stage recursion of an explicit Runge-Kutta method (the package writes one per
scheme), Jacobians by hand (or `jax.jacfwd` of the right-hand side alone, never of
the package's map), and gradients and Hessian-vector products also by the complex
step, which needs no adjoint and is exact to rounding.

Tolerances: a reference and the package evaluate the same sums in a different
order, so they differ by rounding only. Each stage of each step evaluates f and
its Jacobians, a few dot products and one elementary function per entry, with a
relative error of some 10-30 eps (eps the float64 machine epsilon) of the sizes
of the terms summed; the gradient of the endpoint cost adds as much again. The
recursions carry these errors forward linearly, so `rounding_tolerance(N, s)` =
32 (N s + 2) eps, relative to the sizes of the terms (`rk_magnitudes`, or the
largest entry where nothing cancels). The differences measured are 1e-16 to
5e-15, against bounds of 2e-14 to 2e-12.
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

    def sizes(self):
        """f_x, f_u and E_x evaluated with the absolute value of every factor: the
        sizes of the terms each entry sums (for `rk_magnitudes`)."""

        def s(x, u):  # 1 - tanh^2 sums the terms 1 and tanh^2 (cancelling when saturated)
            return 1.0 + np.tanh(self.A @ x + self.B @ u + self.c) ** 2

        def f_x(x, u):
            return np.abs(self.W) @ (s(x, u)[:, None] * np.abs(self.A)) + np.abs(self.D)

        def f_u(x, u):
            return np.abs(self.W) @ (s(x, u)[:, None] * np.abs(self.B))

        def E_x(x):
            return np.abs(self.a * np.cos(x)) + np.abs(self.P) @ np.abs(x)

        return f_x, f_u, E_x

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


EPS = float(np.finfo(np.float64).eps)

#: Butcher tableaux (A strictly lower triangular, b) of the explicit schemes, as in
#: Hairer, Norsett & Wanner, Solving ODEs I, section II.1.
TABLEAUX = {
    "euler": (np.zeros((1, 1)), np.array([1.0])),
    "heun": (np.array([[0.0, 0.0], [1.0, 0.0]]), np.array([0.5, 0.5])),
    "rk4": (
        np.array(
            [[0.0, 0.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0], [0.0, 0.5, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]
        ),
        np.array([1.0, 2.0, 2.0, 1.0]) / 6.0,
    ),
}


def rounding_tolerance(N: int, stages: int) -> float:
    """32 (N s + 2) eps: the rounding bound of a reference against the package (see
    the module docstring)."""
    return 32.0 * (N * stages + 2) * EPS


#: eps^(2/3) = 3.7e-11: the error of a central difference at the balanced step
#: eps^(1/3), relative to |E| + |E'''| (see `central_difference_gradient`).
FD_ERROR = EPS ** (2.0 / 3.0)


def _stages(tableau, f, x, u, h):
    A, b = tableau
    X, K = [], []
    for i in range(b.shape[0]):
        Xi = x + h * sum((A[i, j] * K[j] for j in range(i)), np.zeros_like(x))
        X.append(Xi)
        K.append(f(Xi, u))
    return X, K


def rk_step(tableau, f, x, u, h):
    """x + h sum_i b_i k_i with k_i = f(x + h sum_{j<i} a_ij k_j, u)."""
    _, K = _stages(tableau, f, x, u, h)
    return x + h * sum(bi * ki for bi, ki in zip(tableau[1], K, strict=True))


def rk_step_adjoint(tableau, f, f_x, f_u, x, u, h, lam):
    """(d Phi/dx)^T lam and (d Phi/du)^T lam for one explicit Runge-Kutta step, by the
    stage recursion in reverse: kbar_i = h b_i lam + h sum_{l>i} a_li Xbar_l,
    Xbar_i = f_x(X_i)^T kbar_i; then lam + sum_i Xbar_i and sum_i f_u(X_i)^T kbar_i.
    Only transposes (no conjugation), so it is complex-analytic (complex step)."""
    A, b = tableau
    s = b.shape[0]
    X, _ = _stages(tableau, f, x, u, h)
    Xbar = [None] * s
    lam_prev = lam
    g = 0.0
    for i in range(s - 1, -1, -1):
        later = sum((A[j, i] * Xbar[j] for j in range(i + 1, s)), np.zeros_like(lam))
        kbar = h * b[i] * lam + h * later
        Xbar[i] = f_x(X[i], u).T @ kbar
        lam_prev = lam_prev + Xbar[i]
        g = g + f_u(X[i], u).T @ kbar
    return lam_prev, g


def rk_reference(scheme, f, f_x, f_u, E_x, x0, U, grid):
    """States, costates (23)/(25) and dE^N/du_k of the scheme named `scheme`
    ("euler", "heun", "rk4"), by hand on the grid.

    Returns (xs (N+1, n), lams (N, n), grads (N, m)) with lams[k] = lambda_k =
    dE^N/dx_{k+1} and grads[k] = dE^N/du_k. Complex inputs are carried through.
    """
    tableau = TABLEAUX[scheme]
    U = np.asarray(U)
    N = U.shape[0]
    h = np.diff(np.asarray(grid, dtype=float))
    xs = [np.asarray(x0) + 0.0 * U[0, 0]]
    for k in range(N):
        xs.append(rk_step(tableau, f, xs[-1], U[k], h[k]))
    lams, grads = [None] * N, [None] * N
    lam = E_x(xs[N])
    for k in range(N - 1, -1, -1):
        lams[k] = lam
        lam, grads[k] = rk_step_adjoint(tableau, f, f_x, f_u, xs[k], U[k], h[k], lam)
    return np.stack(xs), np.stack(lams), np.stack(grads)


def rk_magnitudes(scheme, f, f_x_size, f_u_size, E_x_size, x0, U, grid):
    """The costates and gradients of `rk_reference` recomputed with every Jacobian
    replaced by the sizes of the terms that make it up (`absolute(f_x)` where nothing
    better is known; `RandomProblem.sizes()` for the random problems): since the
    tableaux have no negative entries, these are the sizes of the terms the
    recursions add up. Rounding in a sum is relative to the sum of the magnitudes of
    its terms, not to the sum itself, so this is the scale for `rounding_tolerance`
    where the terms cancel.

    Returns (lams_size (N, n), grads_size (N, m)).
    """
    _, lams, grads = rk_reference(scheme, f, f_x_size, f_u_size, E_x_size, x0, U, grid)
    return lams, grads


def absolute(fn):
    """|fn|: the size of a Jacobian whose entries are not sums that cancel."""
    return lambda *a: np.abs(fn(*a))


def err(actual, expected, magnitude):
    """max|actual - expected| / max|magnitude|: the error relative to the sizes of the
    terms that make up `expected` (see `rk_magnitudes`)."""
    scale = np.max(np.abs(np.asarray(magnitude)))
    return np.max(np.abs(np.asarray(actual) - np.asarray(expected))) / (scale if scale > 0 else 1.0)


def rk_cost(scheme, f, E, x0, U, grid):
    """E^N(U) = E(x_N) by the tableau recursion (complex inputs carried through)."""
    tableau = TABLEAUX[scheme]
    U = np.asarray(U)
    h = np.diff(np.asarray(grid, dtype=float))
    x = np.asarray(x0) + 0.0 * U[0, 0]
    for k in range(U.shape[0]):
        x = rk_step(tableau, f, x, U[k], h[k])
    return E(x)


def rk_conditions(scheme, f, f_x, f_u, E_x, xs, lams, U, grid):
    """The residual of the discrete necessary conditions (36) at given states x_0..x_N
    (N+1, n), costates (N, n) and controls (N, m), by the tableau step and adjoint,
    in the package's sign convention:

        r_x[k] = x_{k+1} - Phi(x_k, u_k, h_k)
        r_l[k] = lambda_k - (dPhi/dx(x_{k+1}, u_{k+1}, h_{k+1}))^T lambda_{k+1}  (k < N-1)
        r_l[N-1] = lambda_{N-1} - grad E(x_N)
        r_u[k] = h_k^{-1} (dPhi/du(x_k, u_k, h_k))^T lambda_k

    Returns (r_x (N, n), r_l (N, n), r_u (N, m))."""
    tableau = TABLEAUX[scheme]
    xs, lams, U = (np.asarray(a, dtype=float) for a in (xs, lams, U))
    h = np.diff(np.asarray(grid, dtype=float))
    N = U.shape[0]
    r_x = np.stack([xs[k + 1] - rk_step(tableau, f, xs[k], U[k], h[k]) for k in range(N)])
    r_l, r_u = np.empty_like(lams), np.empty_like(U)
    r_l[N - 1] = lams[N - 1] - E_x(xs[N])
    for k in range(N):
        prev, g = rk_step_adjoint(tableau, f, f_x, f_u, xs[k], U[k], h[k], lams[k])
        r_u[k] = g / h[k]
        if k > 0:
            r_l[k - 1] = lams[k - 1] - prev
    return r_x, r_l, r_u


def complex_step_gradient(cost, U, step=1e-30):
    """dcost/dU_j = Im cost(U + i step e_j) / step: no subtractive cancellation, so it
    is exact to rounding for any step below ~1e-8 (Squire & Trapp 1998). `cost` must
    be complex-analytic (no abs, no conjugation). Costs U.size evaluations."""
    U = np.asarray(U, dtype=float)
    flat = U.reshape(-1)
    out = np.empty_like(flat)
    for j in range(flat.size):
        z = flat.astype(complex)
        z[j] += 1j * step
        out[j] = np.imag(cost(z.reshape(U.shape))) / step
    return out.reshape(U.shape)


def complex_step_directional(fn, U, V, step=1e-30):
    """D fn(U)[V] = Im fn(U + i step V) / step, exact to rounding: with `fn` a reference
    gradient, the Hessian-vector product."""
    z = np.asarray(U, dtype=float) + 1j * step * np.asarray(V, dtype=float)
    return np.imag(fn(z)) / step


def central_difference_gradient(cost, U):
    """Central differences with the relative step d_j = eps^(1/3) max(1, |U_j|),
    divided by the step actually taken. Error: truncation d_j^2 |E'''| / 6 plus
    rounding eps |E| / d_j, each about eps^(2/3) = 3.7e-11 times |E'''| and |E|."""
    U = np.asarray(U, dtype=float)
    flat = U.reshape(-1)
    out = np.empty_like(flat)
    for j in range(flat.size):
        d = EPS ** (1.0 / 3.0) * max(1.0, abs(flat[j]))
        up, down = flat.copy(), flat.copy()
        up[j] += d
        down[j] -= d
        out[j] = (cost(up.reshape(U.shape)) - cost(down.reshape(U.shape))) / (up[j] - down[j])
    return out.reshape(U.shape)


def rhs_derivatives(f, E):
    """numpy callables f, f_x, f_u, E_x from a right-hand side `f(x, u)` and an endpoint
    cost `E(x)` (JAX functions), the Jacobians by `jax.jacfwd` of these alone (never
    of a scheme or a shooting map). Real inputs only."""
    import jax

    def rhs(x, u):
        return f(x, u)

    def endpoint(x):
        return E(x)

    fns = (
        jax.jit(rhs),
        jax.jit(jax.jacfwd(rhs, argnums=0)),
        jax.jit(jax.jacfwd(rhs, argnums=1)),
        jax.jit(jax.grad(endpoint)),
    )

    def wrap(fn):
        return lambda *a: np.asarray(fn(*(np.asarray(v, dtype=float) for v in a)))

    return tuple(wrap(fn) for fn in fns)


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
