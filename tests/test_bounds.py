"""Control bounds: the box on the controls, the bounded equilibrium (projected Newton)
against CasADi + IPOPT on the same discretised problems, projected descent against
the reduced Euler bound of an independently assembled Hessian, and the verbs that
refuse bounds until they handle them."""

import numpy as np
import pytest

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


def test_verbs_without_bounds_refuse_a_bounded_problem():
    q = flow.problems.get("van_der_pol_bounded")
    sh = flow.shoot(q, 20)
    refuse = "has control bounds, which {} does not handle yet"
    with pytest.raises(ValueError, match="no control bounds: there is no free set"):
        flow.bounds.restrict(flow.shoot(flow.problems.van_der_pol(), 20), np.zeros((20, 1)))
    with pytest.raises(ValueError, match="inside the bounds"):
        flow.bounds.restrict(sh, np.full((20, 1), 2.0))
    with pytest.raises(ValueError, match=refuse.format("flow.gradient_flow")):
        flow.gradient_flow(sh, sh.zeros())
    with pytest.raises(ValueError, match="`metric`: with control bounds analyze"):
        stability.analyze(sh, metric="newton")
    with pytest.raises(ValueError, match="`step`='armijo': with control bounds"):
        stability.analyze(sh, step="armijo")
    with pytest.raises(ValueError, match="`metric`: with control bounds linearize"):
        stability.linearize(sh, sh.zeros(), metric="newton")
    with pytest.raises(ValueError, match=refuse.format("stability.basin")):
        stability.basin(sh, steps=[0.1])
    with pytest.raises(ValueError, match=refuse.format("flow.indirect.costate_shooting")):
        flow.indirect.costate_shooting(q, np.zeros(3))
    with pytest.raises(ValueError, match="adaptive_shoot does not support them"):
        flow.adaptive_shoot(q, 20, tol=1e-6)
    with pytest.raises(ValueError, match="parameterize does not support them"):
        flow.controls.parameterize(sh, np.ones((20, 1)))
    with pytest.raises(ValueError, match="`metric`: with control bounds"):
        flow.descend(sh, sh.zeros(), metric="newton", step=0.1)
    with pytest.raises(ValueError, match="`step`: with control bounds"):
        flow.descend(sh, sh.zeros(), step="armijo")
