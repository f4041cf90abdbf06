"""Control bounds: the box on the controls, the bounded equilibrium (projected Newton)
against CasADi + IPOPT on the same discretised problems, projected descent against
the reduced Euler bound of an independently assembled Hessian, the projected
gradient flow against closed forms, two-metric projected descent, and the refusals
of what the bounded verbs do not handle. The indirect side's costate shooting and
basin are in `test_bounds_indirect.py`."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import flow
import stability
from flow import bounds


N = 100


def _bounded(problem, lower, upper):
    return flow.OptimalControlProblem(
        problem.dynamics,
        problem.endpoint_cost,
        problem.x0,
        problem.t0,
        problem.tf,
        running_cost=problem.running_cost,
        control_dim=problem.control_dim,
        control_bounds=(lower, upper),
        name=f"{problem.name}[{lower}, {upper}]",
    )


# ------------------------------------------------------------------ the box


@pytest.mark.parametrize(
    "value, error, match",
    [
        ((1.0, 0.0), ValueError, r"lower < upper everywhere; at index \(0,\)"),
        ((0.0, 0.0), ValueError, "lower < upper"),
        ((0.0, np.nan), ValueError, "upper bound must not be NaN"),
        ((np.zeros(2), 1.0), ValueError, r"lower bound must be a scalar or have shape \(1,\)"),
        ((np.inf, np.inf), ValueError, "lower bound of \\+inf"),
        ((-1.0, -np.inf), ValueError, "upper bound of -inf"),
        (3.0, TypeError, "must be a pair"),
        ((0.0, 1.0, 2.0), TypeError, "must be a pair"),
        (("a", 1.0), TypeError, "lower bound must be real"),
    ],
)
def test_bad_bounds_are_refused_naming_the_argument(value, error, match):
    p = flow.problems.get("van_der_pol")
    with pytest.raises(error, match="`control_bounds`"):
        _bounded_raw(p, value)
    with pytest.raises(error, match=match):
        _bounded_raw(p, value)


def _bounded_raw(p, value):
    return flow.OptimalControlProblem(
        p.dynamics, p.endpoint_cost, p.x0, p.t0, p.tf,
        running_cost=p.running_cost, control_dim=1, control_bounds=value,
    )  # fmt: skip


def test_bounds_broadcast_per_component_and_per_interval():
    lq = flow.problems.get("linear_quadratic")  # m = 2
    q = _bounded(lq, [-0.3, -np.inf], [np.inf, 0.2])
    sh = flow.shoot(q, 5)
    lo, hi = (np.asarray(b) for b in sh.bounds)
    assert lo.shape == hi.shape == (5, 2)
    assert np.all(lo[:, 0] == -0.3) and np.all(lo[:, 1] == -np.inf)
    assert np.all(hi[:, 0] == np.inf) and np.all(hi[:, 1] == 0.2)
    # per interval, given to shoot, replace the problem's
    per = np.linspace(-1.0, -0.5, 5)[:, None] * np.ones((1, 2))
    sh2 = flow.shoot(q, 5, control_bounds=(per, 1.0))
    assert np.array_equal(np.asarray(sh2.bounds[0]), per)
    assert flow.shoot(lq, 5).bounds is None
    with pytest.raises(ValueError, match=r"shape \(2,\) or \(5, 2\); got shape \(4, 2\)"):
        flow.shoot(q, 5, control_bounds=(np.zeros((4, 2)), 1.0))
    vdp = _bounded(flow.problems.van_der_pol(), -0.3, 1.0)
    assert "bounded u" in repr(q) and "-0.3 <= u <= 1" in repr(vdp)


def test_projection_and_projected_residual_by_hand():
    lo, hi = np.array([[0.0], [0.0], [0.0]]), np.array([[1.0], [1.0], [1.0]])
    U = np.array([[0.0], [0.5], [1.0]])
    g = np.array([[2.0], [0.3], [-0.5]])  # pushes out at both bounds, free in between
    assert np.array_equal(np.asarray(bounds.project(U + 5.0, lo, hi)), hi)
    assert np.allclose(bounds.projected_residual(U, g, lo, hi), [[0.0], [0.3], [0.0]])
    g_in = np.array([[-2.0], [0.0], [0.5]])  # points into the box at both bounds
    # -g itself, except where the step -g would cross the box: capped at its width
    assert np.allclose(bounds.projected_residual(U, g_in, lo, hi), [[-1.0], [0.0], [0.5]])
    assert np.asarray(bounds.active_set(U, lo, hi)).ravel().tolist() == [-1, 0, 1]


# ------------------------------------------------- the equilibrium against IPOPT


def _ipopt(problem, N, lower, upper, rhs):
    """CasADi + IPOPT on the same Euler recursion (running cost as a last state), with
    bounds on U, exact Hessian, tight tolerances and no relaxation of the bounds."""
    ca = pytest.importorskip("casadi", reason="casadi (the test extra) is not installed")
    h = (problem.tf - problem.t0) / N
    n = len(np.asarray(problem.x0))
    x = ca.SX.sym("x", n + (problem.running_cost is not None))
    u = ca.SX.sym("u")
    step = ca.Function("step", [x, u], [x + h * rhs(ca, x, u)])
    U = ca.MX.sym("U", N)
    x0 = list(np.asarray(problem.x0)) + ([0.0] if problem.running_cost is not None else [])
    X = step.mapaccum("F", N)(ca.DM(x0), U.T)
    opts = {
        "expand": True,
        "print_time": 0,
        "ipopt.print_level": 0,
        "ipopt.sb": "yes",
        "ipopt.tol": 1e-14,
        "ipopt.bound_relax_factor": 0.0,
        "ipopt.mu_target": 0.0,
    }
    solver = ca.nlpsol("ipopt", "ipopt", {"x": U, "f": X[-1, -1]}, opts)
    sol = solver(x0=np.zeros(N), lbx=lower, ubx=upper)
    # at 1e-14 IPOPT may also end on a step below its rounding: its point is then
    # checked by the KKT test of test_bounded_equilibrium_equals_ipopt
    status = solver.stats()["return_status"]
    assert status in ("Solve_Succeeded", "Search_Direction_Becomes_Too_Small"), status
    return np.asarray(sol["x"]).ravel(), np.asarray(sol["lam_x"]).ravel()


def _vdp_rhs(ca, x, u):
    return ca.vertcat((1 - x[1] ** 2) * x[0] - x[1] + u, x[0], x[0] ** 2 + x[1] ** 2 + u**2)


def _lv_rhs(ca, x, u):  # flow.problems.lotka_volterra, rho = 0.1, in Mayer form
    return ca.vertcat(
        x[0] - x[0] * x[1] - 0.4 * x[0] * u,
        -x[1] + x[0] * x[1] - 0.2 * x[1] * u,
        (x[0] - 1) ** 2 + (x[1] - 1) ** 2 + 0.1 * u**2,
    )


#: The built-in bounded problems, their bounds and their right-hand sides for CasADi.
CASES = {
    "van_der_pol_bounded": (-0.3, 1.0, _vdp_rhs),
    "lotka_volterra_bounded": (0.0, 1.0, _lv_rhs),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    lower, upper, rhs = CASES[request.param]
    problem = flow.problems.get(request.param)
    sh = flow.shoot(problem, N)
    eq = stability.equilibrium(sh)
    U_ip, lam_x = _ipopt(problem, N, lower, upper, rhs)
    return request.param, sh, eq, U_ip, lam_x, lower, upper


def test_bounded_equilibrium_equals_ipopt(case):
    """The controls within 1e-6 and the same active set, with bounds active on part of
    the horizon. IPOPT is an interior-point method: it reaches a bound only to its
    barrier's precision, so its active set is |U - bound| <= 1e-6. Its end point is
    checked to satisfy the KKT conditions to 1e-7 by flow's own gradient."""
    name, sh, eq, U_ip, lam_x, lower, upper = case
    U = np.asarray(eq.U).ravel()
    assert eq.status == "converged" and eq.bounded
    assert np.max(np.abs(U - U_ip)) <= 1e-6, name
    active = np.asarray(eq.active_set).ravel()
    ip_active = np.where(U_ip <= lower + 1e-6, -1, np.where(U_ip >= upper - 1e-6, 1, 0))
    assert np.array_equal(active, ip_active), name
    assert 0 < np.count_nonzero(active) < N  # bounds active on part of the horizon only
    g_ip = np.asarray(sh.gradient(np.clip(U_ip, lower, upper)[:, None])).ravel()
    assert np.max(np.abs(bounds.projected_residual(U_ip, g_ip, lower, upper))) <= 1e-7


def test_bound_multipliers_equal_ipopt_lam_x(case):
    """nu = grad E^N on the active set is -lam_x (CasADi: grad f + lam_x = 0), to 1e-6
    relative; off the active set both are zero (IPOPT's to its barrier's precision)."""
    name, sh, eq, U_ip, lam_x, *_ = case
    nu = np.asarray(eq.multipliers).ravel()
    active = np.asarray(eq.active_set).ravel() != 0
    scale = np.max(np.abs(lam_x[active]))
    assert np.max(np.abs(nu[active] + lam_x[active])) <= 1e-6 * scale, name
    assert np.all(nu[~active] == 0.0) and np.max(np.abs(lam_x[~active])) <= 1e-6 * scale
    # the sign of a KKT point: nu >= 0 at lower bounds, <= 0 at upper ones
    codes = np.asarray(eq.active_set).ravel()
    assert np.all(nu[codes == -1] >= 0) and np.all(nu[codes == 1] <= 0)
    # Lemma 2: the multiplier is h times the Hamiltonian gradient on the active set
    dH = np.asarray(sh.hamiltonian_gradient(eq.U)).ravel()
    h = float(sh.steps[0])
    assert np.allclose(nu[active], h * dH[active], rtol=1e-12, atol=1e-15)


def test_degenerate_components_are_reported():
    """Lotka-Volterra's last control: its costate is zero at T, so dH/du = 2 rho u and
    the unbounded minimiser u = 0 sits exactly on the bound u >= 0, with a zero
    multiplier. Strict complementarity fails there, and only there."""
    sh = flow.shoot(flow.problems.get("lotka_volterra_bounded"), N)
    eq = stability.equilibrium(sh)
    degenerate = np.asarray(eq.degenerate).ravel()
    assert np.flatnonzero(degenerate).tolist() == [N - 1]
    assert eq.num_degenerate == 1 and eq.to_dict()["num_degenerate"] == 1
    assert "1 degenerate" in repr(eq)


@pytest.mark.slow  # the vmapped kernel compiles for 2.5 s
def test_bounded_equilibria_from_several_starts():
    sh = flow.shoot(flow.problems.get("van_der_pol_bounded"), 40)
    starts = np.stack([np.zeros((40, 1)), np.full((40, 1), 0.5)])
    found = stability.equilibria(sh, starts)
    assert len(found.points) == 1 and found.labels.tolist() == [0, 0]
    single = stability.equilibrium(sh)
    assert np.max(np.abs(np.asarray(found.points[0].U) - np.asarray(single.U))) <= 1e-9


# ------------------------------------------ projected descent and the reduced bound


def _lq_hessian(sh):
    """The Hessian of E^N for the built-in LQ problem under Euler, assembled by numpy
    from the recursion x_{k+1} = (I + hA) x_k + h B u_k and the cost
    x_N' S x_N / 2 + sum_k h (x_k' Q x_k + u_k' R u_k) / 2 (no autodiff)."""
    lq = flow.problems.DEFAULT_LQ
    A, B, Q, R, S = (np.asarray(lq[k], dtype=float) for k in "ABQRS")
    n, m = B.shape
    Nn = sh.N
    h = float(sh.steps[0])
    Phi = np.eye(n) + h * A
    G = np.zeros((n, Nn * m))  # x_k = Phi^k x0 + G_k U
    H = np.zeros((Nn * m, Nn * m))
    for k in range(Nn):
        H += h * G.T @ Q @ G
        H[k * m : (k + 1) * m, k * m : (k + 1) * m] += h * R
        G = Phi @ G
        G[:, k * m : (k + 1) * m] += h * B
    return H + G.T @ S @ G


def test_reduced_spectrum_and_projected_descent_at_the_reduced_euler_bound():
    """LQ with bounds: the reduced spectrum (`stability.linearize` on the free set) is
    numpy's eigenvalues of -M_FF^-1 H_FF, the free-set block of the Hessian assembled
    above, to 1e-10, and its Euler bound is alpha_max = 2 / lambda_max(M_FF^-1 H_FF)
    of projected descent with the Hamiltonian metric. From a start near the solution
    with the same active set, 0.97 alpha_max converges to the bounded equilibrium; at
    1.03 alpha_max the free components oscillate away from it."""
    sh = flow.shoot(_bounded(flow.problems.get("linear_quadratic"), -0.3, 0.3), 40)
    eq = stability.equilibrium(sh)
    active = np.asarray(eq.active_set).ravel()
    free = active == 0
    assert 0 < np.count_nonzero(~free) < free.size and eq.num_degenerate == 0
    H = _lq_hessian(sh)
    assert np.allclose(H, np.asarray(sh.hessian(eq.U)), rtol=1e-12, atol=1e-14)
    h = float(sh.steps[0])
    lam = np.linalg.eigvalsh(H[np.ix_(free, free)] / h)
    alpha_max = 2.0 / lam[-1]
    # the library's reduced spectrum (stability.linearize restricts to the free set)
    spec = stability.spectrum(stability.linearize(sh, eq))
    mu = np.sort(np.real(np.asarray(spec.eigenvalues)))
    assert mu.shape == lam.shape and np.all(np.imag(np.asarray(spec.eigenvalues)) == 0)
    assert np.max(np.abs(mu - np.sort(-lam))) <= 1e-10 * lam[-1]
    bound = stability.euler_bound(spec)
    assert abs(bound.alpha_max - alpha_max) <= 1e-10 * alpha_max
    rng = np.random.default_rng(0)
    start = np.asarray(eq.U) + 1e-3 * rng.standard_normal(eq.U.shape) * free.reshape(eq.U.shape)
    lo, hi = (np.asarray(b) for b in sh.bounds)
    assert np.array_equal(np.asarray(bounds.active_set(start, lo, hi)).ravel(), active)
    ok = flow.descend(sh, start, step=0.97 * alpha_max, max_steps=5000, tol=1e-10)
    assert np.max(np.abs(np.asarray(ok.U) - np.asarray(eq.U))) <= 1e-9
    bad = flow.descend(sh, start, step=1.03 * alpha_max, max_steps=2000, tol=1e-10, throw=False)
    assert bad.status != "converged"
    assert np.max(np.abs(np.asarray(bad.U) - np.asarray(eq.U))) > 1e-2  # it left


# ------------------------------------------- two-metric projected descent


@pytest.mark.parametrize("name", ["van_der_pol_bounded", "lotka_volterra_bounded"])
def test_projected_newton_descent_reaches_the_bounded_equilibrium(name):
    """The Newton metric with Armijo's rule on the projection arc (Bertsekas'
    two-metric projection) from U = 0: the IPOPT-checked bounded equilibrium (above)
    to 1e-9, with its active set, in few steps (measured 31 and 17)."""
    sh = flow.shoot(flow.problems.get(name), N)
    eq = stability.equilibrium(sh)
    tr = flow.descend(sh, sh.zeros(), metric="newton", step="armijo", max_steps=60, tol=1e-10)
    assert tr.status == "converged" and int(tr.num_steps) <= 40
    assert np.max(np.abs(np.asarray(tr.U) - np.asarray(eq.U))) <= 1e-9
    lo, hi = (np.asarray(b) for b in sh.bounds)
    assert np.array_equal(
        np.asarray(bounds.active_set(np.asarray(tr.U), lo, hi)), np.asarray(eq.active_set)
    )


def test_two_metric_steps_on_a_bounded_quadratic():
    """LQ with |u| <= 0.3: E^N is quadratic, so once the epsilon-active set is the
    solution's, one Newton step on the free block, (Hess_FF)^-1 grad_F (not the free
    block of the inverse), lands on the solution to rounding: the unit-step Newton
    iteration ends in 3 steps with a residual at rounding level. L-BFGS (identity
    start) and Armijo (Hamiltonian metric) reach 1e-7 and the same point."""
    sh = flow.shoot(_bounded(flow.problems.get("linear_quadratic"), -0.3, 0.3), 40)
    eq = stability.equilibrium(sh)
    newton = flow.descend(sh, sh.zeros(), metric="newton", step=1.0, max_steps=10, tol=1e-12)
    assert newton.status == "converged" and int(newton.num_steps) == 3
    assert float(newton.hamiltonian_norm[3]) <= 1e-12
    assert np.max(np.abs(np.asarray(newton.U) - np.asarray(eq.U))) <= 1e-9
    for metric, step in [("identity", "lbfgs"), ("hamiltonian", "armijo")]:
        tr = flow.descend(sh, sh.zeros(), metric=metric, step=step, max_steps=3000, tol=1e-7)
        assert tr.status == "converged", (metric, step)
        assert np.max(np.abs(np.asarray(tr.U) - np.asarray(eq.U))) <= 1e-6, (metric, step)
    with pytest.raises(ValueError, match="`metric`: with control bounds descend .* 'fixed'"):
        flow.descend(sh, sh.zeros(), metric=flow.metrics.Fixed(np.eye(80)), step=0.1)
    with pytest.raises(ValueError, match="L-BFGS starts from a diagonal metric"):
        flow.descend(sh, sh.zeros(), metric="newton", step="lbfgs")


# ------------------------------------------------- the projected gradient flow


def _clock_problem(running_cost, endpoint_cost, lower, upper):
    """x' = 1 from 0 (a clock, so that L may depend on t = x), bounded u."""
    return flow.OptimalControlProblem(
        lambda x, u: jnp.ones(1), endpoint_cost, jnp.zeros(1), 0.0, 1.0,
        running_cost=running_cost, control_dim=1, control_bounds=(lower, upper),
    )  # fmt: skip


def test_projected_flow_of_a_separable_cost_in_closed_form():
    """L = (u - c(t))^2 / 2, E = 0: E^N = sum_k h (u_k - c_k)^2 / 2, so with the
    Hamiltonian metric each control flows alone, u_k(tau) = c_k + (u0 - c_k) e^-tau,
    until it reaches its bound b at tau_k = log((u0 - c_k) / (b - c_k)), and stays
    there. The switching times the flow found (its segment ends) and its dense output
    at times between them equal these to 1e-8 (rtol 1e-10); it ends at clip(c)."""
    N, u0 = 8, 0.5
    c = lambda t: 2.0 * jnp.sin(3.0 * t)  # noqa: E731
    problem = _clock_problem(
        lambda x, u: 0.5 * jnp.sum((u - c(x[0])) ** 2), lambda x: 0.0 * x[0], -1.0, 1.0
    )
    sh = flow.shoot(problem, N)
    sol = flow.gradient_flow(
        sh, np.full((N, 1), u0), tol=1e-10, rtol=1e-10, atol=1e-12,
        saveat=diffrax.SaveAt(t0=True, t1=True, dense=True),
    )  # fmt: skip
    ck = 2.0 * np.sin(3.0 * np.arange(N) / N)
    bound = np.clip(ck, -1.0, 1.0)
    hits = np.sort(np.log((u0 - ck[ck > 1]) / (1.0 - ck[ck > 1])))
    assert sol.status == "converged" and sol.switches == hits.size == 5
    tau = np.asarray(sol.tau)[np.isfinite(np.asarray(sol.tau))]
    np.testing.assert_allclose(tau[1:-1], hits, rtol=0, atol=1e-8)
    assert np.array_equal(np.asarray(sol.active_set).ravel(), np.where(ck > 1, 1, 0))
    np.testing.assert_allclose(np.asarray(sol.U).ravel(), bound, atol=1e-10)
    for t in (0.1, 0.45, 0.7, 3.0):
        free = ck + (u0 - ck) * np.exp(-t)  # every c_k >= 0 here: upper hits only
        exact = np.where(ck > 1, np.minimum(free, 1.0), free)
        np.testing.assert_allclose(np.asarray(sol.evaluate(t)).ravel(), exact, atol=1e-8)


def _piecewise_linear_flow(Q, b, lo, hi, U0, tau1):
    """The projected flow dU/dtau = P_T(-(QU - b)) of a quadratic, exactly: on each
    active set the free part is linear, U_F(s) = U*_F + expm(-Q_FF s)(U_F - U*_F)
    (by the eigendecomposition of Q_FF); the
    next hit or release is bracketed on a grid and located by brentq. Returns U(tau1)
    and the switching times."""
    U, t, times = U0.copy(), 0.0, []
    g = Q @ U - b
    act = np.where((U <= lo) & (g >= 0), -1, np.where((U >= hi) & (g <= 0), 1, 0))
    while True:
        F = act == 0
        Ustar = np.linalg.solve(Q[np.ix_(F, F)], b[F] - Q[np.ix_(F, ~F)] @ U[~F])
        start = U.copy()
        lam, V = np.linalg.eigh(Q[np.ix_(F, F)])  # expm(-Q_FF s) = V e^{-lam s} V^T
        coef = V.T @ (start[F] - Ustar)

        def at(s, start=start, F=F, Ustar=Ustar, lam=lam, V=V, coef=coef):
            W = start.copy()
            W[F] = Ustar + V @ (np.exp(-lam * s) * coef)
            return W

        def hit(s, F=F, at=at):
            V = at(s)
            return np.min(np.minimum(V - lo, hi - V)[F], initial=1.0)

        def release(s, act=act, at=at):
            gg = Q @ at(s) - b
            return np.max(np.where(act == -1, -gg, np.where(act == 1, gg, -np.inf)), initial=-1.0)

        grid = np.linspace(0.0, tau1 - t, 2001)
        hv, rv = np.array([hit(s) for s in grid]), np.array([release(s) for s in grid])
        jh = np.nonzero((hv[:-1] > 0) & (hv[1:] <= 0))[0]
        jr = np.nonzero((rv[:-1] <= 0) & (rv[1:] > 0))[0]
        if not (jh.size or jr.size):
            return at(tau1 - t), np.array(times)
        if jh.size and (not jr.size or jh[0] <= jr[0]):
            s = scipy.optimize.brentq(hit, grid[jh[0]], grid[jh[0] + 1], xtol=1e-14)
            V = at(s)
            i = np.argmin(np.where(F, np.minimum(V - lo, hi - V), np.inf))
            act[i] = -1 if V[i] - lo < hi - V[i] else 1
            V[i] = lo if act[i] == -1 else hi
        else:
            s = scipy.optimize.brentq(release, grid[jr[0]], grid[jr[0] + 1], xtol=1e-14)
            V = at(s)
            gg = Q @ V - b
            act[np.argmax(np.where(act == -1, -gg, np.where(act == 1, gg, -np.inf)))] = 0
        U, t = V, t + s
        times.append(t)


def test_projected_flow_hits_and_releases_like_the_exact_piecewise_flow():
    """x' = u, L = (x^2 + rho u^2)/2, E = w (x(1) - a)^2 / 2 with |u| <= 1 is, under
    explicit Euler, the quadratic E^N = U^T Q U / 2 - b^T U + const assembled here by
    hand. From half the controls near the upper bound and half near the lower one, the
    terminal pull drives four controls onto the upper bound, and the running cost later
    frees them again: four hits and four releases. The identity-metric flow's switching
    times and U(tau = 3) equal the exact piecewise-linear flow's to 1e-8."""
    N, w, a, rho = 8, 20.0, 0.3, 0.5
    problem = flow.OptimalControlProblem(
        lambda x, u: u, lambda x: 0.5 * w * (x[0] - a) ** 2, jnp.zeros(1), 0.0, 1.0,
        running_cost=lambda x, u: 0.5 * (x[0] ** 2 + rho * u[0] ** 2), control_dim=1,
        control_bounds=(-1.0, 1.0),
    )  # fmt: skip
    sh = flow.shoot(problem, N)
    h = 1.0 / N
    S = h * np.tril(np.ones((N + 1, N)), -1)  # x_k = S[k] @ U
    Q = h * S[:N].T @ S[:N] + h * rho * np.eye(N) + w * np.outer(S[N], S[N])
    b = w * a * S[N]
    U0 = np.repeat([0.9, -0.9], N // 2)
    g = np.asarray(jax.grad(type(sh).objective, argnums=1)(sh, jnp.asarray(U0[:, None])))
    assert np.max(np.abs(g.ravel() - (Q @ U0 - b))) <= 1e-14  # the quadratic is E^N
    U_ref, times = _piecewise_linear_flow(Q, b, -1.0, 1.0, U0, 3.0)
    sol = flow.gradient_flow(
        sh, U0[:, None], metric="identity", tol=None, tau1=3.0, rtol=1e-10, atol=1e-12
    )
    assert sol.status == "completed" and sol.switches == times.size == 8
    tau = np.asarray(sol.tau)[np.isfinite(np.asarray(sol.tau))]
    np.testing.assert_allclose(tau[1:-1], times, rtol=0, atol=1e-8)
    np.testing.assert_allclose(np.asarray(sol.U).ravel(), U_ref, rtol=0, atol=1e-8)
    assert np.all(np.asarray(sol.active_set) == 0)


@pytest.mark.parametrize("n", [pytest.param(50, marks=pytest.mark.slow), 200])  # 50: 12 s
def test_projected_flow_ends_at_the_bounded_equilibrium(n):
    """Lotka-Volterra fishing with 0 <= u <= 1: from U = 0 the projected Hamiltonian
    flow crosses tens of changes of the active set and stops at the projected Newton
    equilibrium, with its active set, to the flow's tolerance. At N = 50 the flow goes
    stiff and hands over to the implicit solver; at N = 200 it starts with 96 controls
    on the lower bound and the others on it too but pushed inward (which must stay
    free: catching them ended this flow at a wrong point, once)."""
    sh = flow.shoot(flow.problems.get("lotka_volterra_bounded"), n)
    eq = stability.equilibrium(sh)
    sol = flow.gradient_flow(sh, sh.zeros(), tol=1e-9)
    assert sol.status == "converged" and sol.switches > 10
    assert ("Kvaerno" in sol.solver) == (n == 50)
    # every segment ends in the box (a hit is located, not overshot by a step)
    lo, hi = (np.asarray(b) for b in sh.bounds)
    Us = np.asarray(sol.Us)[np.isfinite(np.asarray(sol.tau))]
    assert Us.shape[0] == sol.switches + 2
    assert np.all(Us >= lo - 1e-12) and np.all(Us <= hi + 1e-12)
    assert np.array_equal(np.asarray(sol.active_set), np.asarray(eq.active_set))
    assert np.max(np.abs(np.asarray(sol.U) - np.asarray(eq.U))) <= 1e-7
    assert float(sol.residual) <= 1e-9


def test_projected_flow_refusals():
    sh = flow.shoot(flow.problems.get("van_der_pol_bounded"), 20)
    with pytest.raises(ValueError, match="`metric`: the projected gradient flow .* 'newton'"):
        flow.gradient_flow(sh, sh.zeros(), metric="newton")
    with pytest.raises(ValueError, match="`saveat`: a bounded flow is integrated in segments"):
        flow.gradient_flow(sh, sh.zeros(), saveat=diffrax.SaveAt(ts=[0.0, 1.0]))


# ------------------------------------------- the indirect side: Proposition 4.5


def test_bounded_proposition_4_5():
    """The discrete necessary conditions with the box (u_k minimising H over the box
    to first order: u_k - P(u_k - dH/du_k) = 0), solved by semismooth Newton from the
    zero control, give the direct method's KKT point: the controls and the costates
    of the bounded equilibrium to 1e-9."""
    sh = flow.shoot(flow.problems.get("lotka_volterra_bounded"), N)
    eq = stability.equilibrium(sh)
    sol = flow.indirect.solve_conditions(sh)
    assert sol.status == "converged"
    assert np.max(np.abs(np.asarray(sol.U) - np.asarray(eq.U))) <= 1e-9
    lam = np.asarray(sh.costates(eq.U))
    assert np.max(np.abs(np.asarray(sol.costates) - lam)) <= 1e-9 * max(1.0, np.max(np.abs(lam)))
    # the same active set, read from the indirect solution's controls
    lo, hi = (np.asarray(b) for b in sh.bounds)
    assert np.array_equal(
        np.asarray(bounds.active_set(np.asarray(sol.U), lo, hi)), np.asarray(eq.active_set)
    )


# ------------------------------------------------------------ the whole analysis


def test_analysis_of_a_bounded_problem(tmp_path):
    """`gradflow.run_analysis` on LQ with bounds: the equilibrium with its active set,
    the reduced spectrum and bound, and the projected replay from U = 0, which
    converges at the predicted rate; the results document validates against its
    schema and carries the bounds and the active set; report.md says what was done."""
    import gradflow

    problem = _bounded(flow.problems.get("linear_quadratic"), -0.3, 0.3)
    run = gradflow.run_analysis(problem, N=40, equivalence_N=(40,), out=tmp_path, figures=False)
    report, doc = run.report, run.document
    gradflow.validate_results(doc)
    assert report.verdict.startswith("28 of 80 controls on a bound; on the free set the ")
    assert report.replay.status == "converged" and report.agrees is True
    assert report.spectrum.size == 80 - 28
    assert doc["equilibrium"]["num_active"] == 28 and doc["equilibrium"]["num_degenerate"] == 0
    assert np.array_equal(
        doc["trajectory"]["active_set"], np.asarray(report.equilibrium.active_set)
    )
    assert doc["trajectory"]["lower"][0] == [-0.3, -0.3]
    assert "by projected Newton-CG" in (tmp_path / "report.md").read_text()


# ----------------------------------------------- verbs that refuse bounds, for now


def test_what_bounds_do_not_support_is_refused():
    q = flow.problems.get("van_der_pol_bounded")
    sh = flow.shoot(q, 20)
    with pytest.raises(ValueError, match="no control bounds: there is no free set"):
        flow.bounds.restrict(flow.shoot(flow.problems.van_der_pol(), 20), np.zeros((20, 1)))
    with pytest.raises(ValueError, match="inside the bounds"):
        flow.bounds.restrict(sh, np.full((20, 1), 2.0))
    with pytest.raises(ValueError, match="`metric`: with control bounds analyze"):
        stability.analyze(sh, metric="newton")
    with pytest.raises(ValueError, match="`step`='armijo': with control bounds"):
        stability.analyze(sh, step="armijo")
    with pytest.raises(ValueError, match="`metric`: with control bounds linearize"):
        stability.linearize(sh, sh.zeros(), metric="newton")
    with pytest.raises(ValueError, match="adaptive_shoot does not support them"):
        flow.adaptive_shoot(q, 20, tol=1e-6)
    with pytest.raises(ValueError, match="parameterize does not support them"):
        flow.controls.parameterize(sh, np.ones((20, 1)))
