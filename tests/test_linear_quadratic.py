"""Linear-quadratic problems: discrete optimum against the Riccati solution."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from _reference import fit_order

import flow
from flow import problems


def discrete_optimum(sh):
    """E^N is quadratic: U* solves Hess U = -grad(0) (a dense linear system)."""
    U0 = sh.zeros()
    H = np.asarray(sh.hessian(U0))
    g = np.asarray(sh.gradient(U0)).reshape(-1)
    return jnp.asarray(-np.linalg.solve(H, g).reshape(sh.control_shape))


def test_riccati_reference_against_algebraic_riccati():
    """On a long horizon with S = P_inf, P(t) = P_inf (scipy's ARE solver)."""
    A = np.array([[0.0, 1.0], [-1.0, -0.2]])
    B = np.array([[0.0], [1.0]])
    Q, R = np.eye(2), np.array([[0.5]])
    P_inf = scipy.linalg.solve_continuous_are(A, B, Q, R)
    x0 = np.array([1.0, 0.5])
    ref = problems.riccati_reference(A, B, Q, R, P_inf, x0, 3.0)
    np.testing.assert_allclose(ref.P, np.broadcast_to(P_inf, ref.P.shape), atol=1e-10)
    np.testing.assert_allclose(ref.cost, 0.5 * x0 @ P_inf @ x0, rtol=1e-10)


@pytest.mark.parametrize(
    "scheme, expected",
    [(flow.Euler(), 1.0), (flow.Heun(), 2.0), (flow.RK4(), 2.0)],
    ids=["euler", "heun", "rk4"],
)
def test_discrete_cost_converges_to_riccati(scheme, expected):
    """|J^N - J*| = O(h^p) with p = min(scheme order, 2).

    Piecewise-constant controls cap the rate at 2: even with exact integration the
    best piecewise-constant control is O(h) from u*(t), and at a minimum the cost
    gap is quadratic in that distance. So RK4's cost converges at order 2
    (measured: 2.000), Heun at 2, Euler at 1.
    """
    lq = problems.DEFAULT_LQ
    ref = problems.riccati_reference(**lq)
    Ns = [20, 40, 80, 160]
    errs = []
    for N in Ns:
        sh = flow.shoot(problems.linear_quadratic(**lq), N, scheme)
        U = discrete_optimum(sh)
        np.testing.assert_allclose(sh.gradient(U), 0.0, atol=1e-13)
        errs.append(abs(float(sh.cost(U)) - ref.cost))
    order = fit_order([lq["T"] / N for N in Ns], errs)
    assert abs(order - expected) < 0.1, (order, errs)
    # and the discrete optimal control approaches the Riccati feedback control
    ref_u = problems.riccati_reference(**lq, ts=np.asarray(sh.grid[:-1])).u
    assert np.max(np.abs(np.asarray(U) - ref_u)) < 0.05
