"""The indirect side: the discrete conditions (36), costate shooting (14), the
continuous adjoint, and the costate report.

References are independent of the code under test: numpy assemblies of the LQ
problem (tests/_reference.py), hand-written numpy Euler recursions, the scipy Riccati
solution, scipy shooting (solve_ivp + brentq) and finite differences of scipy-integrated
costs. Comparisons between two routes of the package (direct equilibrium against the
conditions (36): Proposition 4.5) are the claims themselves.
"""

import json

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest
import scipy.integrate
import scipy.optimize
from _reference import (
    TABLEAUX,
    euler_reference,
    fit_order,
    lq_euler_quadratic,
    rel,
    rk_conditions,
    rk_reference,
    rounding_tolerance,
)

import flow
import stability
from flow import problems
from flow._conditions import _jacobian_blocks, _residual
from flow.indirect import (
    RESULTS,
    continuous_adjoint_gradient,
    costate_report,
    costate_shooting,
    solve_conditions,
)
from flow.solvers import DampedNewton


LQ = problems.linear_quadratic(**problems.DEFAULT_LQ)
SREG = problems.scalar_regularized()
VDP = problems.van_der_pol()


def _lq_arrays():
    return [np.asarray(problems.DEFAULT_LQ[k], dtype=float) for k in "ABQRS"] + [
        np.asarray(problems.DEFAULT_LQ["x0"], dtype=float)
    ]


# --------------------------------------------------------------------------
# Hand-written numpy versions of the scalar problem f = -x + u - 0.1 x^3 with
# L = u^2/2 and E = (x - 1)^2 / 2, augmented by the running cost (n = 2).


def _sreg_f(x, u):
    return np.array([-x[0] + u[0] - 0.1 * x[0] ** 3, 0.5 * u[0] ** 2])


def _sreg_fx(x, u):
    return np.array([[-1.0 - 0.3 * x[0] ** 2, 0.0], [0.0, 0.0]])


def _sreg_fu(x, u):
    return np.array([[1.0], [u[0]]])


def _sreg_Ex(x):
    return np.array([x[0] - 1.0, 1.0])


# ======================================================================= (36)


def test_conditions_lq_against_numpy():
    # E^N is quadratic for LQ + Euler: U* = -H^{-1} b with H, b assembled by hand in
    # numpy; the costates then follow from the hand-written Euler adjoint recursion.
    A, B, Q, R, S, x0 = _lq_arrays()
    N = 40
    H, b, _ = lq_euler_quadratic(A, B, Q, R, S, x0, T=2.0, N=N)
    U_ref = np.linalg.solve(H, -b).reshape(N, 2)
    sh = flow.shoot(LQ, N)
    grid = np.asarray(sh.grid)

    def f(x, u):
        return np.concatenate([A @ x[:2] + B @ u, [0.5 * (x[:2] @ Q @ x[:2] + u @ R @ u)]])

    def fx(x, u):
        J = np.zeros((3, 3))
        J[:2, :2] = A
        J[2, :2] = Q @ x[:2]
        return J

    def fu(x, u):
        return np.vstack([B, (R @ u)[None]])

    def Ex(x):
        return np.concatenate([S @ x[:2], [1.0]])

    xs, lams, dHdu = euler_reference(f, fx, fu, Ex, np.r_[x0, 0.0], U_ref, grid)
    assert np.max(np.abs(dHdu)) < 1e-10  # the numpy reference is itself stationary
    dense = solve_conditions(sh, linear_solver="dense")
    sparse = solve_conditions(sh, linear_solver="sparse")
    # cond(H) ~ 1e2 here and every quantity is O(1): 1e-11 leaves a wide margin over
    # rounding (~1e-14) and is far below any modelling error.
    for sol in (dense, sparse):
        assert sol.success and sol.linear_solver in ("dense", "sparse")
        np.testing.assert_allclose(sol.U, U_ref, rtol=0, atol=1e-11)
        np.testing.assert_allclose(sol.costates, lams, rtol=0, atol=1e-11)
        np.testing.assert_allclose(sol.states, xs, rtol=0, atol=1e-11)
        assert (
            max(float(sol.state_residual), float(sol.costate_residual), float(sol.control_residual))
            < 1e-12
        )
    # the system is linear: Newton needs one step, plus one to see a small step
    assert int(dense.num_steps) <= 3


@pytest.mark.parametrize(
    "scheme",
    [flow.Heun(), pytest.param(flow.RK4(), marks=pytest.mark.slow)],
    ids=lambda s: s.name,
)
def test_conditions_blocks_and_other_schemes(scheme):
    sh = flow.shoot(SREG, 8, scheme)
    U = jnp.asarray(np.linspace(-0.5, 0.7, 8)[:, None])
    Z = jnp.concatenate([sh.states(U)[1:], sh.costates(U), U], axis=1) + 0.01
    # the block-tridiagonal Jacobian against jax.jacfwd of the whole residual
    N, s = Z.shape
    n = sh.state_dim
    J = np.asarray(jax.jacfwd(lambda z: _residual(sh, z.reshape(N, s)).reshape(-1))(Z.reshape(-1)))
    J = J.reshape(N, s, N, s)
    Lb, Db, Ub = (np.asarray(a) for a in _jacobian_blocks(sh, Z))
    for k in range(N):
        np.testing.assert_allclose(J[k, :, k, :], Db[k], rtol=0, atol=1e-14)
        if k + 1 < N:
            np.testing.assert_allclose(J[k, :, k + 1, :], Ub[k], rtol=0, atol=1e-14)
        if k > 0:
            np.testing.assert_allclose(J[k, :, k - 1, :n], Lb[k], rtol=0, atol=1e-14)
            assert np.all(J[k, :, k - 1, n:] == 0)
        others = [j for j in range(N) if abs(j - k) > 1]
        assert np.all(J[k][:, others] == 0)
    # the solution is a stationary point of E^N (autodiff gradient, a separate code
    # path), with the discrete costates of the direct method (Proposition 4.5)
    sol = solve_conditions(sh)
    h = np.asarray(sh.steps)[:, None]
    assert np.max(np.abs(np.asarray(sh.gradient(sol.U))) / h) < 1e-12
    np.testing.assert_allclose(sol.costates, sh.costates(sol.U), rtol=0, atol=1e-13)


@pytest.mark.parametrize("scheme", [flow.Euler(), flow.Heun(), flow.RK4()], ids=lambda s: s.name)
def test_conditions_against_reference(scheme):
    """The residual of (36) at an arbitrary point, and its Newton solution, against the
    numpy tableau step and adjoint with hand-written Jacobians (`rk_conditions`)."""
    N = 8
    sh = flow.shoot(SREG, N, scheme)
    n, s = sh.state_dim, len(TABLEAUX[scheme.name][1])
    grid = np.asarray(sh.grid)
    x0 = np.asarray(sh.problem.augmented_x0())

    def reference(Z):
        Z = np.asarray(Z)
        xs = np.vstack([x0, Z[:, :n]])
        return rk_conditions(
            scheme.name,
            _sreg_f,
            _sreg_fx,
            _sreg_fu,
            _sreg_Ex,
            xs,
            Z[:, n : 2 * n],
            Z[:, 2 * n :],
            grid,
        )

    # an arbitrary point: every block of the residual, entry by entry, to rounding
    rng = np.random.default_rng(36)
    Z = jnp.asarray(rng.normal(size=(N, 2 * n + 1)))
    r_x, r_l, r_u = reference(Z)
    R = np.asarray(_residual(sh, Z))
    tol = rounding_tolerance(N, s)
    assert rel(R[:, :n], r_x) <= tol
    assert rel(R[:, n : 2 * n], r_l) <= tol
    assert rel(R[:, 2 * n :], r_u) <= tol
    # the Newton solution satisfies the reference conditions: Newton stops at a step
    # below tol (1e-12 relative) with a quadratically convergent residual, so the
    # residual is at rounding level, ~1e-15 for these O(1) quantities; 1e-12 bounds it
    sol = solve_conditions(sh)
    assert sol.result == RESULTS.converged
    Z = np.hstack([np.asarray(sol.states)[1:], np.asarray(sol.costates), np.asarray(sol.U)])
    assert max(float(np.max(np.abs(r))) for r in reference(Z)) <= 1e-12
    # ...and its controls are a stationary point of the reference E^N, its costates
    # the reference costates there (Proposition 4.5)
    _, lams, grads = rk_reference(
        scheme.name, _sreg_f, _sreg_fx, _sreg_fu, _sreg_Ex, x0, np.asarray(sol.U), grid
    )
    np.testing.assert_allclose(sol.costates, lams, rtol=0, atol=1e-12)
    assert np.max(np.abs(grads) / np.diff(grid)[:, None]) <= 1e-12


def _equilibrium(sh, guess=None):
    return stability.equilibrium(sh, guess, tol=1e-12, stop_on="gradient")


@pytest.mark.parametrize(
    "name, problem, N",
    [("scalar_regularized", SREG, 50), ("linear_quadratic", LQ, 40), ("van_der_pol", VDP, 100)],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_proposition_4_5(name, problem, N):
    # A converged direct method and Newton on the indirect conditions (36) land on
    # the same point. The direct equilibrium is converged to |grad E^N|_inf <= 1e-12,
    # i.e. max|dH/du| <= 1e-12/h; the Hessian's smallest eigenvalue is >= ~h (for
    # these problems Hess/h has spectrum >= 1 or so), so |U_direct - U*| <~ 1e-12:
    # 1e-9 leaves three orders of margin (the figure).
    sh = flow.shoot(problem, N)
    eq = _equilibrium(sh)
    if name == "van_der_pol":
        # Newton on (36) from U = 0 fails for Van der Pol (see the test below); start
        # from an early iterate of the direct method (max|dH/du| <= 0.1).
        guess = stability.equilibrium(sh, tol=0.1, stop_on="hamiltonian").U
    else:
        guess = None
    sol = solve_conditions(sh, guess)
    assert sol.success
    assert float(jnp.max(jnp.abs(sol.U - eq.U))) < 1e-9
    assert float(jnp.max(jnp.abs(sol.costates - sh.costates(eq.U)))) < 1e-9
    assert float(sol.control_residual) < 1e-12


def test_conditions_large_N_uses_the_sparse_factorization():
    # N(2n+m) = 10^4 unknowns: the sparse LU path (no dense Jacobian). The solution is
    # a stationary point of E^N by the autodiff gradient (a separate code path) and
    # carries the direct method's discrete costates.
    sh = flow.shoot(SREG, 2000)
    sol = solve_conditions(sh)
    assert sol.success and sol.linear_solver == "sparse"
    assert float(jnp.max(jnp.abs(sh.gradient(sol.U)))) * 2000 < 1e-12
    np.testing.assert_allclose(sol.costates, sh.costates(sol.U), rtol=0, atol=1e-13)


def test_conditions_failure_is_reported():
    # From U = 0, Newton (with line search) on (36) for Van der Pol stalls at a point
    # that is not a root: reported in the status, finite iterates, and raised by default.
    sh = flow.shoot(VDP, 100)
    sol = solve_conditions(sh, throw=False)
    assert not sol.success
    assert sol.result != RESULTS.converged
    assert np.all(np.isfinite(np.asarray(sol.U)))
    assert max(float(sol.state_residual), float(sol.costate_residual)) > 1e-3
    json.dumps(sol.to_dict(include_arrays=True))
    with pytest.raises(flow.ConvergenceError, match="solve_conditions"):
        solve_conditions(sh, max_steps=3)


def test_conditions_bad_input():
    sh = flow.shoot(SREG, 10)
    with pytest.raises(ValueError, match="guess"):
        solve_conditions(sh, np.zeros((11, 1)))
    with pytest.raises(ValueError, match="guess costates"):
        solve_conditions(sh, (np.zeros((10, 2)), np.zeros((10, 1)), np.zeros((10, 1))))
    with pytest.raises(ValueError, match="guess states"):
        solve_conditions(sh, (np.zeros((9, 2)), np.zeros((10, 2)), np.zeros((10, 1))))
    with pytest.raises(ValueError, match="states, costates, controls"):
        solve_conditions(sh, (np.zeros((10, 2)), np.zeros((10, 2))))
    with pytest.raises(TypeError, match="guess"):
        solve_conditions(sh, np.array([["a"]] * 10))
    with pytest.raises(ValueError, match="guess.*finite"):
        solve_conditions(sh, np.full((10, 1), np.nan))
    with pytest.raises(ValueError, match="linear_solver"):
        solve_conditions(sh, linear_solver="cholesky")
    with pytest.raises(ValueError, match="tol"):
        solve_conditions(sh, tol=-1.0)
    with pytest.raises(TypeError, match="max_steps"):
        solve_conditions(sh, max_steps=2.5)
    with pytest.raises(TypeError, match="shooting"):
        solve_conditions(SREG)
    # a non-increasing grid is refused where a grid enters: flow.shoot
    with pytest.raises(ValueError, match="strictly increasing"):
        flow.shoot(SREG, [0.0, 0.5, 0.4, 1.0])


# ======================================================================= (14)


def _scipy_costate_shooting():
    """lambda(0) of scalar_regularized by scipy: u = -lambda, solve_ivp (DOP853) and brentq."""

    def rhs(t, y):
        x, lam = y
        return [-x - lam - 0.1 * x**3, lam * (1.0 + 0.3 * x**2)]

    def F(l0):
        sol = scipy.integrate.solve_ivp(
            rhs, (0.0, 1.0), [0.0, l0], "DOP853", rtol=1e-13, atol=1e-14
        )
        x1, lam1 = sol.y[:, -1]
        return lam1 - (x1 - 1.0)

    return scipy.optimize.brentq(F, -2.0, 0.0, xtol=1e-15)


def test_costate_shooting_scalar_against_scipy():
    lam0_ref = _scipy_costate_shooting()
    # u from d_u H = 0 by the local Newton solve (H_uu = 1 here)
    traj = costate_shooting(SREG, jnp.array([0.0]), rtol=1e-11, atol=1e-13)
    # ODE tolerance 1e-11 on an O(1) solution over a unit interval: 1e-8 on lambda(0)
    # (the map lambda0 -> F has slope ~4) is a safe bound.
    assert traj.success and int(traj.num_steps) <= 10
    assert abs(float(traj.lambda0[0]) - lam0_ref) < 1e-8
    assert float(traj.lambda0[1]) == 1.0  # the running cost's costate
    assert float(np.max(np.abs(traj.terminal_residual))) < 1e-9
    ts = jnp.linspace(0.0, 1.0, 7)
    np.testing.assert_allclose(traj.controls(ts), -traj.costates(ts)[:, :1], rtol=0, atol=1e-12)
    json.dumps(traj.to_dict())
    assert "converged" in repr(traj)


def test_costate_shooting_without_a_root_is_not_converged():
    """x' = u, L = u^2/2, E = -x^2/2 on [0, 1], x(0) = 1: u = -lambda, lambda constant,
    x(1) = 1 - lambda0, so F(lambda0) = lambda0 + (1 - lambda0) = 1 for every lambda0:
    no root. Newton runs lambda0 off to ~1e16, where F rounds to 0; that is reported
    as a divergence, not a convergence."""
    problem = flow.OptimalControlProblem(
        lambda x, u: u,
        lambda x: -0.5 * x[0] ** 2,
        x0=[1.0],
        t0=0.0,
        tf=1.0,
        running_cost=lambda x, u: 0.5 * u[0] ** 2,
        control_dim=1,
    )
    traj = costate_shooting(problem, jnp.array([0.0]), throw=False)
    assert traj.result == RESULTS.diverged
    with pytest.raises(flow.DivergenceError, match="costate_shooting"):
        costate_shooting(problem, jnp.array([0.0]))


def test_costate_shooting_lq_against_riccati():
    # lambda(t) = P(t) x(t), u = -R^{-1} B^T P x: scipy's Riccati solution.
    A, B, Q, R, S, x0 = _lq_arrays()
    ts = np.linspace(0.0, 2.0, 9)
    ref = problems.riccati_reference(**problems.DEFAULT_LQ, ts=ts)
    Rinv_Bt = np.linalg.solve(R, B.T)
    # the closed-form control law u = -R^{-1} B^T lambda (the Newton route is tested above)
    traj = costate_shooting(
        LQ, jnp.zeros(2), rtol=1e-11, atol=1e-13, control_law=lambda x, lam: -Rinv_Bt @ lam
    )
    assert traj.success
    lam_ref = np.einsum("tij,tj->ti", ref.P, ref.x)
    # both solutions are accurate to ~1e-10 (ODE tolerances 1e-11 / 1e-12)
    np.testing.assert_allclose(traj.states(ts)[:, :2], ref.x, rtol=0, atol=1e-8)
    np.testing.assert_allclose(traj.costates(ts)[:, :2], lam_ref, rtol=0, atol=1e-8)
    np.testing.assert_allclose(traj.controls(ts), ref.u, rtol=0, atol=1e-8)


def test_discrete_costates_converge_to_continuous_at_first_order():
    # lambda_k (Euler, at the optimum of E^N) against the continuous costate at
    # t_{k+1}: the error is O(h). The log-log slope over N = 25..100 is fitted;
    # the window [0.9, 1.1] allows the O(h^2) remainder at the coarsest grid (the
    # measured slope is 1.00 to two digits), while an off-by-one-step error or a
    # wrong order would fall outside it. The continuous costates are accurate to
    # ~1e-10, far below the smallest error (~1e-3).
    traj = costate_shooting(SREG, jnp.array([0.0]), rtol=1e-11, atol=1e-13)
    hs, errs, errs_tk = [], [], []
    for N in (25, 50, 100):
        sh = flow.shoot(SREG, N)
        sol = solve_conditions(sh, linear_solver="sparse")
        lam_c = np.asarray(traj.costates(sh.grid))
        errs.append(np.max(np.abs(np.asarray(sol.costates) - lam_c[1:])))
        errs_tk.append(np.max(np.abs(np.asarray(sol.costates) - lam_c[:-1])))
        hs.append(1.0 / N)
    assert 0.9 <= fit_order(hs, errs) <= 1.1
    assert 0.9 <= fit_order(hs, errs_tk) <= 1.1
    # lambda_k = dE^N/dx_{k+1} is closer to lambda(t_{k+1}) than to lambda(t_k) on this
    # problem (about 3 times; on the built-in LQ problem it is the other way round)
    assert all(a < b for a, b in zip(errs, errs_tk, strict=True))


def test_costate_shooting_bad_input():
    with pytest.raises(ValueError, match="d_uu H"):
        costate_shooting(problems.scalar_mayer(), jnp.array([-1.0]), rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="lambda0_guess"):
        costate_shooting(SREG, jnp.zeros(2), rtol=1e-8, atol=1e-10)
    # a 2-D guess is a batch (S, n) of guesses: wrong width, or a third axis, is refused
    with pytest.raises(ValueError, match="lambda0_guess"):
        costate_shooting(SREG, jnp.zeros((1, 2)), rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="lambda0_guess"):
        costate_shooting(SREG, jnp.zeros((1, 1, 1)), rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="control_law"):
        costate_shooting(
            SREG, jnp.zeros(1), rtol=1e-8, atol=1e-10, control_law=lambda x, lam: jnp.zeros(2)
        )
    with pytest.raises(TypeError, match="control_law"):
        costate_shooting(SREG, jnp.zeros(1), rtol=1e-8, atol=1e-10, control_law=3.0)
    with pytest.raises(ValueError, match="damping"):
        costate_shooting(SREG, jnp.zeros(1), rtol=1e-8, atol=1e-10, damping=0.0)
    with pytest.raises(ValueError, match="damping"):
        costate_shooting(
            SREG,
            jnp.zeros(1),
            rtol=1e-8,
            atol=1e-10,
            damping=0.5,
            root_finder=optx.Newton(rtol=1e-8, atol=1e-8),
        )
    with pytest.raises(TypeError, match="solver"):
        costate_shooting(SREG, jnp.zeros(1), rtol=1e-8, atol=1e-10, solver="tsit5")
    with pytest.raises(TypeError, match="problem"):
        costate_shooting(flow.shoot(SREG, 4), jnp.zeros(1), rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="atol"):
        costate_shooting(SREG, jnp.zeros(1), rtol=1e-8, atol=0.0)


def test_damped_newton_root_finder():
    # optimistix root finding of x^2 = 2: quadratic convergence for d = 1, the linear
    # rate |1 - d| for d = 1/2 (many more iterations), the same root.
    def fn(y, args):
        return y**2 - 2.0

    def run(d):
        solver = DampedNewton(rtol=1e-12, atol=1e-12, ftol=1e-12, damping=d)
        return optx.root_find(fn, solver, jnp.array([3.0]), max_steps=200, throw=False)

    full, half = run(1.0), run(0.5)
    for sol in (full, half):
        assert sol.result == optx.RESULTS.successful
        assert abs(float(sol.value[0]) - np.sqrt(2.0)) < 1e-11
    assert int(full.stats["num_steps"]) <= 8
    assert int(half.stats["num_steps"]) >= 30  # 0.5^k * 2 <= 1e-12 needs k ~ 40
    diverging = optx.root_find(
        lambda y, a: jnp.exp(y) - 0.5 + jnp.where(y > 5, jnp.nan, 0.0),
        DampedNewton(rtol=1e-12, atol=1e-12, ftol=1e-12),
        jnp.array([6.0]),
        max_steps=20,
        throw=False,
    )
    assert diverging.result == optx.RESULTS.nonlinear_divergence


# ======================================================================= adjoint


def _scipy_continuous_gradient(U, N):
    """d/du_k of J(U) = (x(1) - 1)^2/2 + sum_k h u_k^2/2 for the exact flow of
    x' = -x + u - 0.1 x^3 with piecewise-constant u, by central differences of a
    scipy DOP853 solution (rtol 1e-13)."""
    grid = np.linspace(0.0, 1.0, N + 1)
    h = 1.0 / N

    def J(u):
        x = 0.0
        for k in range(N):
            sol = scipy.integrate.solve_ivp(
                lambda t, y, uk=u[k]: -y + uk - 0.1 * y**3,
                (grid[k], grid[k + 1]),
                [x],
                "DOP853",
                rtol=1e-13,
                atol=1e-15,
            )
            x = sol.y[0, -1]
        return 0.5 * (x - 1.0) ** 2 + 0.5 * h * np.sum(u**2)

    g = np.zeros(N)
    for k in range(N):
        d = 1e-5
        e = np.zeros(N)
        e[k] = d
        g[k] = (J(U + e) - J(U - e)) / (2 * d)
    return g


def _smooth_control(sh):
    t = np.asarray(sh.grid[:-1])
    return jnp.asarray((np.sin(3.0 * t) + 0.5)[:, None])


def test_continuous_adjoint_is_the_continuous_gradient():
    # Central differences with step 1e-5 on a cost of order one: truncation ~1e-10,
    # rounding ~1e-16/1e-5 = 1e-11, the ODE error ~1e-13: 1e-8 on |g| ~ 0.1 is safe.
    N = 8
    sh = flow.shoot(SREG, N)
    U = _smooth_control(sh)
    ca = continuous_adjoint_gradient(sh, U, rtol=1e-12, atol=1e-14)
    g_ref = _scipy_continuous_gradient(np.asarray(U[:, 0]), N)
    assert ca.ode_success
    np.testing.assert_allclose(np.asarray(ca.gradient[:, 0]), g_ref, rtol=0, atol=1e-8)
    assert float(ca.costates[-1, 1]) == 1.0 and np.allclose(ca.costates[:, 1], 1.0)


def test_continuous_adjoint_differs_from_grad_EN_at_first_order():
    # max_k |g_cont,k - dE^N/du_k| / h = O(h) for Euler: slope window [0.9, 1.1]
    # (measured 1.01-1.06 between consecutive N from 25 to 200; the O(h^2) remainder
    # shows at the coarsest grids). The discrete costate gradient
    # equals the exact gradient of E^N to rounding: checked against the hand-written
    # numpy recursion (Lemma 2) at the same U.
    hs, dists = [], []
    for N in (20, 40, 80):
        sh = flow.shoot(SREG, N)
        U = _smooth_control(sh)
        ca = continuous_adjoint_gradient(sh, U, rtol=1e-10, atol=1e-12)
        hs.append(1.0 / N)
        dists.append(ca.distance)
        _, _, dHdu = euler_reference(
            _sreg_f, _sreg_fx, _sreg_fu, _sreg_Ex, np.zeros(2), np.asarray(U), np.asarray(sh.grid)
        )
        g_ref = np.asarray(sh.steps)[:, None] * dHdu
        scale = np.max(np.abs(g_ref))
        assert np.max(np.abs(np.asarray(ca.costate_gradient) - g_ref)) < 1e-13 * scale
        assert np.max(np.abs(np.asarray(ca.exact_gradient) - g_ref)) < 1e-13 * scale
        assert ca.discrete_distance < 1e-12
        assert ca.distance > 1e-5  # the continuous gradient is not the discrete one
    # The gap is the discretization error, not the ODE solver's: at rtol 1e-4 instead
    # of 1e-10 it is the same to 1e-3 relative (measured: identical to 4 digits; a
    # Tsit5 step per interval is already accurate to ~h^5).
    loose = continuous_adjoint_gradient(sh, U, rtol=1e-4, atol=1e-6)
    assert abs(loose.distance - ca.distance) < 1e-3 * ca.distance
    assert 0.9 <= fit_order(hs, dists) <= 1.1
    json.dumps(ca.to_dict())


def test_continuous_adjoint_bad_input():
    sh = flow.shoot(SREG, 5)
    with pytest.raises(ValueError, match="U"):
        continuous_adjoint_gradient(sh, jnp.zeros((4, 1)), rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="rtol"):
        continuous_adjoint_gradient(sh, sh.zeros(), rtol=float("nan"), atol=1e-10)
    with pytest.raises(TypeError, match="solver"):
        continuous_adjoint_gradient(sh, sh.zeros(), rtol=1e-8, atol=1e-10, solver=diffrax.Tsit5)


# ======================================================================= report


def _scipy_piecewise_adjoint(U, grid):
    """lambda(t_k) of scalar_regularized for piecewise-constant controls by scipy:
    x' = -x + u_k - 0.1 x^3 forward interval by interval (DOP853), then
    lambda' = (1 + 0.3 x^2) lambda backwards from lambda(1) = x(1) - 1, with x
    interpolated from the forward solution's dense output."""
    N = len(U)
    pieces, x = [], 0.0
    for k in range(N):
        sol = scipy.integrate.solve_ivp(
            lambda t, y, u=U[k]: [-y[0] + u - 0.1 * y[0] ** 3],
            (grid[k], grid[k + 1]),
            [x],
            "DOP853",
            rtol=1e-13,
            atol=1e-14,
            dense_output=True,
        )
        pieces.append(sol.sol)
        x = sol.y[0, -1]
    lam = np.empty(N + 1)
    lam[N] = x - 1.0
    for k in range(N - 1, -1, -1):
        sol = scipy.integrate.solve_ivp(
            lambda t, y, xk=pieces[k]: [(1.0 + 0.3 * xk(t)[0] ** 2) * y[0]],
            (grid[k + 1], grid[k]),
            [lam[k + 1]],
            "DOP853",
            rtol=1e-13,
            atol=1e-14,
        )
        lam[k] = sol.y[0, -1]
    return lam


def test_costate_report_scalar():
    N = 50
    sh = flow.shoot(SREG, N)
    rep = costate_report(sh)
    h = 1.0 / N
    assert rep.route_status["direct"] == "converged"
    assert rep.route_status["conditions"] == "converged"
    assert rep.route_status["shooting"] == "converged"
    assert rep.direct_hamiltonian_residual < 1e-9
    assert rep.differences["conditions"] < 1e-9
    assert rep.control_differences["conditions"] < 1e-9
    # Each route against an independent reference (the first-order gap to the
    # continuous costates is a property of the problem; these pin its value):
    # - direct: the hand-written numpy Euler adjoint at the direct optimum (rounding);
    # - shooting: scipy's costate shooting (solve_ivp + brentq, ODE tolerance 1e-13;
    #   lambda(0) agrees to ~1e-8, see test_costate_shooting_scalar_against_scipy, and
    #   the map lambda(0) -> lambda(t) has slope <= e^1.3 here, so 1e-7);
    # - adjoint: scipy's piecewise-constant state and backward costate (1e-13 tolerances,
    #   the package's continuous adjoint runs at rtol 1e-10: 1e-8 leaves a margin).
    U = np.asarray(rep.controls)
    grid = np.asarray(sh.grid)
    _, lams, _ = euler_reference(_sreg_f, _sreg_fx, _sreg_fu, _sreg_Ex, np.zeros(2), U, grid)
    np.testing.assert_allclose(rep.direct, lams, rtol=0, atol=1e-13)
    lam0 = _scipy_costate_shooting()
    cont = scipy.integrate.solve_ivp(
        lambda t, y: [-y[0] - y[1] - 0.1 * y[0] ** 3, y[1] * (1.0 + 0.3 * y[0] ** 2)],
        (0.0, 1.0),
        [0.0, lam0],
        "DOP853",
        t_eval=grid,
        rtol=1e-13,
        atol=1e-14,
    ).y[1]
    np.testing.assert_allclose(np.asarray(rep.shooting)[:, 0], cont[1:], rtol=0, atol=1e-7)
    np.testing.assert_allclose(np.asarray(rep.shooting_at_tk)[:, 0], cont[:-1], rtol=0, atol=1e-7)
    adj = _scipy_piecewise_adjoint(U[:, 0], grid)
    np.testing.assert_allclose(np.asarray(rep.adjoint)[:, 0], adj[1:], rtol=0, atol=1e-8)
    for key, ref, atol in (
        ("shooting", cont[1:], 1e-7),
        ("shooting_at_tk", cont[:-1], 1e-7),
        ("adjoint", adj[1:], 1e-8),
    ):
        assert abs(rep.differences[key] - np.max(np.abs(lams[:, 0] - ref))) <= atol
    # the gap is the first-order discretization error, not rounding or ODE error
    assert rep.differences["shooting"] > 1e3 * 1e-7
    d = rep.to_dict(include_arrays=True)
    json.dumps(d)
    assert "lambda(t_{k+1})" in rep.summary() and "Newton on (36)" in rep.summary()
    # The multipliers of the NLP min E(x_N) s.t. c_k = x_{k+1} - x_k - h f(x_k, u_k) = 0,
    # from the KKT stationarity in the states, grad_X E = (dc/dX)^T mu, solved by numpy
    # (least squares on the hand-written constraint Jacobian): mu_k = lambda_k; with
    # c_k / h, mu_k = h lambda_k.
    xs = np.asarray(sh.states(rep.controls))
    U = np.asarray(rep.controls)
    n = 2
    Jc = np.zeros((N * n, N * n))  # rows: constraint k, cols: x_1..x_N
    for k in range(N):
        Jc[k * n : (k + 1) * n, k * n : (k + 1) * n] = np.eye(n)
        if k > 0:
            Jc[k * n : (k + 1) * n, (k - 1) * n : k * n] = -np.eye(n) - h * _sreg_fx(xs[k], U[k])
    gradE = np.zeros(N * n)
    gradE[-n:] = _sreg_Ex(xs[N])
    mu = np.linalg.lstsq(Jc.T, gradE, rcond=None)[0].reshape(N, n)
    mu_quotient = np.linalg.lstsq((Jc / h).T, gradE, rcond=None)[0].reshape(N, n)
    np.testing.assert_allclose(rep.multipliers("difference"), mu, rtol=0, atol=1e-12)
    np.testing.assert_allclose(rep.multipliers("quotient"), mu_quotient, rtol=0, atol=1e-12)
    np.testing.assert_allclose(rep.multipliers(sign=-1), -mu, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="form"):
        rep.multipliers("scaled")
