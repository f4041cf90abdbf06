"""Problems with known equilibria and independent numpy references for the
stability tests.

`double_well` is the nonconvex problem with a saddle equilibrium
(`flow.problems.double_well`, with its closed forms). The scalar Euler
sensitivities are written out by hand in numpy; the LQ assembly is
`_reference.lq_euler_quadratic`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import flow


def double_well(rho: float = 0.5) -> flow.OptimalControlProblem:
    r"""`flow.problems.double_well(rho)`: x' = u, x(0) = 0, t in [0, 1]; cost
    (x(1)^2 - 1)^2 / 4 + int rho/2 u^2 dt. The closed forms the tests check:

    Euler is exact here: x_N = h sum_k u_k = s. So
    E^N(U) = (s^2 - 1)^2 / 4 + rho h |U|^2 / 2 and

    - U = 0 is stationary with Hessian -h^2 11^T + rho h I: eigenvalues rho h
      (N - 1 times) and h (rho - 1); for rho < 1 a saddle of index 1;
    - U = +-sqrt(1 - rho) 1 are minimisers with Hessian (2 - 3 rho) h^2 11^T +
      rho h I: eigenvalues rho h (N - 1 times) and h (2 - 2 rho).
    """
    return flow.problems.double_well(rho)


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
