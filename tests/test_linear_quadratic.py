"""Linear-quadratic problems: the discrete problem against a hand-assembled quadratic,
the discrete optimum against the Riccati solution, and `riccati_reference` against
closed forms.

References (none uses the package's output): `_closed_forms.lq_rk_quadratic` (E^N
assembled in numpy from the Butcher tableau), `_closed_forms.lq_hamiltonian_solution`
(the continuous optimum from the matrix exponential of the Hamiltonian matrix),
scipy's ARE solver and scipy's `solve_ivp` on the Riccati equation.
"""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
from _closed_forms import lq_hamiltonian_solution, lq_rk_quadratic
from _reference import TABLEAUX, fit_order, lq_euler_quadratic

import flow
from flow import problems


EPS = np.finfo(np.float64).eps
SCHEMES = [flow.Euler(), flow.Heun(), flow.RK4()]


def test_riccati_reference_against_algebraic_riccati():
    """On a long horizon with S = P_inf, P(t) = P_inf (scipy's ARE solver)."""
    A = np.array([[0.0, 1.0], [-1.0, -0.2]])
    B = np.array([[0.0], [1.0]])
    Q, R = np.eye(2), np.array([[0.5]])
    P_inf = scipy.linalg.solve_continuous_are(A, B, Q, R)
    x0 = np.array([1.0, 0.5])
    ref = problems.riccati_reference(A, B, Q, R, P_inf, x0, 3.0)
    # P(t) = P_inf is an exact solution: the right side there is the ARE residual
    # (~eps |P|^2 |B R^-1 B^T|), so only rounding moves the integrator, ~10 eps |P| per
    # DOP853 step (12 stages) over at most a few hundred steps: <= 1e-12 |P|.
    scale = np.max(np.abs(P_inf))
    np.testing.assert_allclose(
        ref.P, np.broadcast_to(P_inf, ref.P.shape), rtol=0, atol=1e-12 * scale
    )
    np.testing.assert_allclose(ref.cost, 0.5 * x0 @ P_inf @ x0, rtol=1e-12)


def _lq_cases():
    """The built-in example (S != P_inf, T = 2) and a seeded random 3-state, 2-input
    problem; both have a P(t) that moves far from its end value S."""
    rng = np.random.default_rng(7)
    M = rng.normal(size=(3, 3))
    Rm = rng.normal(size=(2, 2))
    random = dict(
        A=0.5 * rng.normal(size=(3, 3)),
        B=rng.normal(size=(3, 2)),
        Q=M @ M.T / 3,
        R=Rm @ Rm.T + 0.5 * np.eye(2),
        S=np.diag([3.0, 0.1, 1.0]),
        x0=rng.normal(size=3),
        T=1.5,
    )
    return [problems.DEFAULT_LQ, random]


@pytest.mark.parametrize("lq", _lq_cases(), ids=["default_lq", "random_3x2"])
def test_riccati_reference_time_varying_against_closed_form(lq):
    """Finite horizon, S != P_inf: P(t) varies. P, x*, u* and the cost against the
    matrix-exponential closed form (Radon's lemma), which itself is checked against
    scipy's solve_ivp of the Riccati ODE run here (DOP853 at rtol 1e-13)."""
    T = lq["T"]
    ts = np.linspace(0.0, T, 41)
    cost, P, x, u = lq_hamiltonian_solution(**lq, ts=ts)
    A, B, Q, R, S = (np.asarray(lq[k], dtype=float) for k in "ABQRS")
    n = A.shape[0]
    assert np.max(np.abs(P[0] - S)) > 0.1  # the test's premise: P is not constant
    Rinv_Bt = np.linalg.solve(R, B.T)

    def riccati(s, p):  # in reversed time s = T - t: dP/ds = A^T P + P A - P B R^-1 B^T P + Q
        Pm = p.reshape(n, n)
        return (A.T @ Pm + Pm @ A - Pm @ B @ Rinv_Bt @ Pm + Q).reshape(-1)

    ivp = scipy.integrate.solve_ivp(
        riccati,
        (0.0, T),
        S.reshape(-1),
        method="DOP853",
        rtol=1e-13,
        atol=1e-15,
        t_eval=T - ts[::-1],
    )
    P_ivp = ivp.y.T.reshape(-1, n, n)[::-1]
    # both references: the expm closed form rounds at ~eps |Z T| cond ~ 1e-14, the IVP
    # at rtol 1e-13 has a global error of a few rtol |P|: they must agree to 1e-12 |P|
    scale_P = np.max(np.abs(P))
    np.testing.assert_allclose(P_ivp, P, rtol=0, atol=1e-12 * scale_P)

    ref = problems.riccati_reference(**lq, ts=ts)
    # riccati_reference runs DOP853 at its defaults rtol 1e-12, atol 1e-14 (P backwards,
    # then x forwards with that P). Each step's local error is <= rtol |y|; the errors
    # of its ~10 steps add and grow at most by e^{2 mu T}, mu the largest logarithmic
    # norm of the closed-loop matrix A - B K(t) (the linearised Riccati equation is
    # dP' = -(A_cl^T dP + dP A_cl)). So the global error is <= 10 e^{2 mu T} rtol |y|.
    K = np.einsum("ij,tjk->tik", Rinv_Bt, P)
    mu = max(np.linalg.eigvalsh(0.5 * (A - B @ k + (A - B @ k).T))[-1] for k in K)
    tol = 10 * np.exp(2 * max(mu, 0.0) * T) * 1e-12
    assert tol < 1e-10  # (e^{2 mu T} < 3 for both problems here)
    np.testing.assert_allclose(ref.ts, ts, rtol=0, atol=0)
    np.testing.assert_allclose(ref.P, P, rtol=0, atol=tol * scale_P)
    np.testing.assert_allclose(ref.x, x, rtol=0, atol=tol * np.max(np.abs(x)))
    # u* = -K(t) x*(t): its error is <= |K| |dx| + |dK| |x|, relative to |K| |x|; the
    # closed form's u comes from the costate, not from P
    scale_u = np.max(np.einsum("tij,tj->ti", np.abs(K), np.abs(x)))
    np.testing.assert_allclose(ref.u, u, rtol=0, atol=2 * tol * scale_u)
    # the cost x0^T P(0) x0 / 2: the same relative error as P(0)
    assert ref.cost == pytest.approx(cost, rel=tol)
    # boundary values: P(T) = S (the integration starts there), x(0) = x0
    np.testing.assert_allclose(ref.P[-1], S, rtol=0, atol=4 * EPS * np.max(np.abs(S)))
    np.testing.assert_allclose(ref.x[0], np.asarray(lq["x0"], dtype=float), rtol=0, atol=4 * EPS)


def test_rk_assembly_reduces_to_the_euler_assembly():
    """The two numpy references agree (the Euler tableau): the same sums in another order."""
    lq = problems.DEFAULT_LQ
    H1, b1, c1 = lq_euler_quadratic(**lq, N=20)
    H2, b2, c2 = lq_rk_quadratic(**lq, tableau=TABLEAUX["euler"], N=20)
    # N = 20 accumulated terms each: rounding <= N eps |.|, so 1e-13 relative
    np.testing.assert_allclose(H2, H1, rtol=0, atol=1e-13 * np.max(np.abs(H1)))
    np.testing.assert_allclose(b2, b1, rtol=0, atol=1e-13 * np.max(np.abs(b1)))
    assert c2 == pytest.approx(c1, rel=1e-13)


def _discrete(lq, scheme, N):
    """The package's Shooting and the numpy quadratic E^N(U) = U^T H U / 2 + b^T U + c
    with its minimiser U* = -H^-1 b and minimum c + b^T U* / 2 (numpy only)."""
    sh = flow.shoot(problems.linear_quadratic(**lq), N, scheme)
    H, b, c = lq_rk_quadratic(**lq, tableau=TABLEAUX[scheme.name], N=N)
    U_star = np.linalg.solve(H, -b)
    return sh, H, b, c, U_star, c + 0.5 * b @ U_star


@pytest.mark.parametrize(
    "scheme",
    [flow.Euler(), flow.Heun(), pytest.param(flow.RK4(), marks=pytest.mark.slow)],  # RK4: 8 s
    ids=lambda s: s.name,
)
def test_discrete_problem_is_the_assembled_quadratic(scheme, rng):
    """Cost, gradient and Hessian-vector products of the package against the numpy
    assembly (a quadratic is fixed by c, b and H), and the package's gradient vanishes
    at the numpy minimiser, all to rounding."""
    N = 40
    sh, H, b, c, U_star, J_star = _discrete(problems.DEFAULT_LQ, scheme, N)
    shape = sh.control_shape
    # rounding: every entry of H, b, c is a sum of O(N) products, and the package's
    # forward/adjoint sweeps are N steps: errors <= N eps |.|; 10 N eps = 8.9e-14 here
    tol = 10 * N * EPS
    g0 = np.asarray(sh.gradient(sh.zeros())).reshape(-1)
    np.testing.assert_allclose(g0, b, rtol=0, atol=tol * np.max(np.abs(b)))
    assert float(sh.cost(sh.zeros())) == pytest.approx(c, rel=tol)
    V = rng.normal(size=(3, N * 2))
    for v in V:
        hv = sh.hessian_vector_product(sh.zeros(), jnp.asarray(v.reshape(shape)))
        ref = H @ v
        np.testing.assert_allclose(
            np.asarray(hv).reshape(-1), ref, rtol=0, atol=tol * np.max(np.abs(H) @ np.abs(v))
        )
    U = jnp.asarray(U_star.reshape(shape))
    assert float(sh.cost(U)) == pytest.approx(J_star, rel=tol)
    # g(U*) = H U* + b = 0 up to the rounding of its terms |H||U*| + |b| (componentwise)
    # and of U* itself (numpy's solve: cond(H) eps |U*|, cond ~ 5 here)
    terms = np.max(np.abs(H) @ np.abs(U_star) + np.abs(b))
    np.testing.assert_allclose(
        np.asarray(sh.gradient(U)).reshape(-1), 0.0, rtol=0, atol=tol * terms
    )


@pytest.mark.parametrize(
    "scheme, expected",
    [
        (flow.Euler(), 1.0),
        (flow.Heun(), 2.0),
        pytest.param(flow.RK4(), 2.0, marks=pytest.mark.slow),  # 9 s; Heun shows order 2
    ],
    ids=["euler", "heun", "rk4"],
)
def test_discrete_optimum_converges_to_riccati(scheme, expected):
    """|J^N - J*| = O(h^p) and max_k |u^N_k - u*(t_k + h/2)| = O(h^p), p = min(scheme
    order, 2).

    Piecewise-constant controls cap the rate at 2: even with exact integration the
    best piecewise-constant control is O(h^2) from u* at the interval midpoints (the
    interval mean), and at a minimum the cost gap is quadratic in the control error.
    Euler's states are O(h) off, so its cost and controls converge at order 1. J^N and
    U* are the numpy minimum of the assembled quadratic (the package's cost there is
    checked against it); J* and u* are the matrix-exponential closed form.
    """
    lq = problems.DEFAULT_LQ
    T = lq["T"]
    J_cont = lq_hamiltonian_solution(**lq, ts=np.zeros(1))[0]
    Ns = [40, 80, 160]
    cost_errs, control_errs = [], []
    for N in Ns:
        sh, _, _, _, U_star, J_star = _discrete(lq, scheme, N)
        J_pkg = float(sh.cost(jnp.asarray(U_star.reshape(sh.control_shape))))
        assert J_pkg == pytest.approx(J_star, rel=10 * N * EPS)  # rounding, as above
        cost_errs.append(abs(J_pkg - J_cont))
        mid = np.asarray(sh.grid[:-1]) + 0.5 * T / N
        u_mid = lq_hamiltonian_solution(**lq, ts=mid)[3]
        control_errs.append(np.max(np.abs(U_star.reshape(N, -1) - u_mid)))
    hs = [T / N for N in Ns]
    # the fitted slope of a clean power law h^p is p; the next term of the error
    # expansion (relative O(h) at h <= 0.1) moves it by less than 0.1
    order = fit_order(hs, cost_errs)
    assert abs(order - expected) < 0.1, (order, cost_errs)
    order_u = fit_order(hs, control_errs)
    assert abs(order_u - expected) < 0.1, (order_u, control_errs)
