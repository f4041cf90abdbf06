"""One public surface: the same names in every verb, one results vocabulary, strict
JSON from every result type in every state, and defaults that work.

The references here are the package's contracts themselves (signatures, JSON
strictness) and, for the numbers, independent ones: a closed form for the divergence
time of a gradient flow, numpy's eigenvalues for the indefinite Hessian.
"""

import inspect
import json
import math

import diffrax
import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

import flow
import gradflow
import stability
from flow import indirect, metrics, problems


# ------------------------------------------------------------------ the names

VERBS = {
    "flow.descend": flow.descend,
    "flow.gradient_flow": flow.gradient_flow,
    "stability.equilibrium": stability.equilibrium,
    "stability.equilibria": stability.equilibria,
    "stability.analyze": stability.analyze,
    "stability.basin": stability.basin,
    "flow.indirect.solve_conditions": indirect.solve_conditions,
    "flow.indirect.costate_shooting": indirect.costate_shooting,
}

#: Other names the stopping tolerance and the step limit had (and must not have again).
FORBIDDEN = {"iterations", "until", "eps", "n_iterations", "max_iterations", "maxiter",
             "replay_tol", "norm", "root_rtol", "root_atol"}  # fmt: skip


@pytest.mark.parametrize("name", sorted(VERBS))
def test_every_verb_has_the_same_names(name):
    params = inspect.signature(VERBS[name]).parameters
    assert "tol" in params and "max_steps" in params, name
    assert not FORBIDDEN & set(params), (name, FORBIDDEN & set(params))
    assert params["throw"].default is True and params["throw"].kind is params["throw"].KEYWORD_ONLY
    for p in ("tol", "max_steps"):
        assert params[p].kind is params[p].KEYWORD_ONLY
    if "metric" in params:  # keyword-only, an object or a name, one default
        assert params["metric"].kind is params["metric"].KEYWORD_ONLY
        assert params["metric"].default == "hamiltonian"
    if "stop_on" in params:
        assert params["stop_on"].default == "hamiltonian"
    # typed: no parameter of a verb is annotated Any
    assert all("Any" != str(p.annotation) for p in params.values()), name


def test_metric_is_keyword_only_and_takes_a_name_everywhere():
    for fn in (stability.linearize, stability.mesh_study, flow.vector_field):
        params = inspect.signature(fn).parameters
        assert "metric" in params
    assert inspect.signature(stability.linearize).parameters["metric"].kind.name == "KEYWORD_ONLY"
    assert isinstance(metrics.as_metric("newton"), metrics.Newton)
    with pytest.raises(ValueError, match="metric"):
        metrics.as_metric("euclid")
    with pytest.raises(TypeError, match="metric"):
        metrics.as_metric(3)


# ---------------------------------------------------------- the vocabulary

STATUSES = set(indirect.RESULTS._name_to_item)


def test_one_results_hierarchy():
    base = set(flow.RESULTS._name_to_item)
    assert base == {
        "converged", "completed", "max_steps", "diverged", "nonfinite", "stalled",
        "indefinite", "solver_failed", "oscillating",
    }  # fmt: skip
    # the indirect side extends it (optimistix style), it does not duplicate it
    assert issubclass(indirect.RESULTS, flow.RESULTS)
    assert STATUSES == base | {"singular", "line_search_failed"}
    for name in base:
        assert (
            flow.RESULTS[getattr(flow.RESULTS, name)]
            == indirect.RESULTS[getattr(indirect.RESULTS, name)]
        )


def _unbounded():
    """E(x) = -x^4 / 4 with x' = u: unbounded below, so descent and the flow blow up.
    For N = 1, h = 1: E^N(u) = -u^4/4, gradient -u^3; the Hamiltonian flow
    du/dtau = u^3 from u = 2 blows up at tau = 1/(2 u0^2) = 1/8."""
    return flow.OptimalControlProblem(
        lambda x, u: u, lambda x: -0.25 * jnp.sum(x**4), [0.0], 0.0, 1.0, control_dim=1
    )


def _blow_up():
    return flow.OptimalControlProblem(
        lambda x, u: x**2 + u, lambda x: 0.5 * jnp.sum(x**2), [1.0], 0.0, 2.0, control_dim=1
    )


def _check(result, states):
    """Strict JSON in both forms, the status words, the short repr."""
    assert result.status in STATUSES, result.status
    states.add(result.status)
    for arrays in (False, True):
        d = result.to_dict(include_arrays=arrays)
        text = json.dumps(d, allow_nan=False)  # never fails: non-finite -> null
        assert json.loads(text)["status"] == result.status
        assert d["success"] is result.success and d["message"] == result.message
    assert isinstance(result.message, str) and result.message
    assert repr(result).startswith(f"{type(result).__name__}({result.status}")


def _with_status(result, name):
    """The same result object in another state (for states a test cannot reach
    cheaply on purpose): only `result` changes."""
    item = getattr(result.result._enumeration, name)
    return eqx.tree_at(lambda r: r.result, result, item)


SR = flow.shoot(problems.scalar_regularized(), 20)


def test_descent_trace_in_every_state():
    seen: set[str] = set()
    for kwargs in (
        dict(step=0.5, max_steps=200, tol=1e-10),  # converged
        dict(step=0.5, max_steps=5),  # completed (no tol)
        dict(step=0.5, max_steps=3, tol=1e-12),  # max_steps
        dict(step=5.0, max_steps=200),  # diverged (outside the Euler bound)
    ):
        _check(flow.descend(SR, SR.zeros(), throw=False, **kwargs), seen)
    bad = flow.shoot(_blow_up(), 50)
    trace = flow.descend(bad, bad.zeros(), step=0.1, throw=False)
    _check(trace, seen)
    assert trace.status == "nonfinite" and "first becomes non-finite" in trace.message
    assert seen == {"converged", "completed", "max_steps", "diverged", "nonfinite"}


def test_flow_solution_in_every_state():
    seen: set[str] = set()
    _check(flow.gradient_flow(SR, SR.zeros()), seen)
    _check(flow.gradient_flow(SR, SR.zeros(), tol=None, tau1=0.5), seen)
    _check(
        flow.gradient_flow(SR, SR.zeros(), solver=diffrax.Tsit5(), max_steps=3, throw=False), seen
    )
    one = flow.shoot(_unbounded(), 1)
    diverged = flow.gradient_flow(one, jnp.full((1, 1), 2.0), tau1=1.0, throw=False)
    _check(diverged, seen)
    bad = flow.shoot(_blow_up(), 50)
    _check(flow.gradient_flow(bad, bad.zeros(), throw=False), seen)
    sol = flow.gradient_flow(SR, SR.zeros())
    for name in ("indefinite", "solver_failed"):
        _check(_with_status(sol, name), seen)
    assert seen == {
        "converged", "completed", "max_steps", "diverged", "nonfinite", "indefinite",
        "solver_failed",
    }  # fmt: skip


def test_flow_divergence_at_the_closed_form_time():
    """du/dtau = u^3 from u0 = 2 (N = 1, h = 1, Hamiltonian metric) blows up at
    tau* = 1/(2 u0^2) = 0.125: the flow reports divergence just before it."""
    one = flow.shoot(_unbounded(), 1)
    sol = flow.gradient_flow(one, jnp.full((1, 1), 2.0), tau1=1.0, throw=False)
    assert sol.status == "diverged"
    assert 0.12 < float(sol.tau_final) <= 0.125
    with pytest.raises(flow.DivergenceError, match="diverged") as info:
        flow.gradient_flow(one, jnp.full((1, 1), 2.0), tau1=1.0)
    assert info.value.result.status == "diverged"


def test_stability_results_in_every_state():
    seen: set[str] = set()
    eq = stability.equilibrium(SR)
    _check(eq, seen)
    _check(stability.equilibrium(SR, max_steps=1, throw=False), seen)
    _check(stability.equilibrium(SR, tol=1e-300, throw=False), seen)  # stalled
    bad = flow.shoot(_blow_up(), 50)
    _check(stability.equilibrium(bad, throw=False), seen)
    assert seen == {"converged", "max_steps", "stalled", "nonfinite"}
    starts = jnp.stack([SR.zeros(), SR.zeros() + 1.0])
    _check(stability.equilibria(SR, starts), set())
    report = stability.analyze(SR)
    for part in (report, report.spectrum, report.classification, report.euler, report.equivalence):
        _check(part, set())
    for cluster in report.spectrum.clusters:
        _check(cluster, set())
    _check(report.spectrum.density, set())
    _check(_with_status(report, "max_steps"), set())


# 9 s (a mesh study and a basin with Newton on (36)); their own files run them by
# default (tests/test_stability_tolerance_mesh.py, tests/test_basin.py)
@pytest.mark.slow
def test_mesh_study_and_basin_results():
    _check(stability.mesh_study(problems.scalar_regularized(), [10, 20]), set())
    table = stability.basin(SR, steps=(0.5, 3.0), n_starts=3, dampings=(1.0,), conditions=True)
    _check(table, set())
    for row in table.rows:
        _check(row, set())


# 16 s; the indirect verbs run by default in test_indirect.py
@pytest.mark.slow
def test_indirect_results_in_every_state():
    seen: set[str] = set()
    cond = indirect.solve_conditions(SR)
    _check(cond, seen)
    _check(indirect.solve_conditions(SR, max_steps=1, throw=False), seen)
    for name in ("diverged", "singular", "line_search_failed"):
        _check(_with_status(cond, name), seen)
    traj = indirect.costate_shooting(SR.problem, [0.0], rtol=1e-9, atol=1e-11)
    _check(traj, seen)
    far = indirect.costate_shooting(SR.problem, [12.0], rtol=1e-9, atol=1e-11, throw=False)
    _check(far, seen)
    # from lambda(0) = 12 the costate blows up before t = 1 (x is driven to about
    # -(10 lambda)^(1/3), so lambda' ~ 1.4 lambda^(5/3)): non-finite at the first step
    assert far.status == "diverged" and not np.isfinite(float(far.lambda0[0]))
    _check(indirect.continuous_adjoint_gradient(SR, SR.zeros(), rtol=1e-8, atol=1e-10), seen)
    _check(indirect.costate_report(SR), seen)
    assert {"converged", "max_steps", "diverged", "singular", "line_search_failed"} <= seen


def test_other_result_types():
    seen: set[str] = set()
    _check(flow.check_gradients(SR), seen)
    trace = flow.descend(SR, SR.zeros(), step=0.5, max_steps=20, save_iterates=True)
    sol = flow.gradient_flow(
        SR, SR.zeros(), tol=None, tau1=5.0, saveat=diffrax.SaveAt(t1=True, dense=True)
    )
    _check(flow.compare(trace, sol), seen)
    basis = flow.controls.Legendre(1)
    _check(flow.controls.rank_report(basis, SR), seen)
    _check(flow.controls.spurious_check(SR, jnp.zeros((1, 2)), basis=basis), seen)
    singular = flow.controls.rank_report(np.ones((20, 2)), SR)
    assert singular.to_dict()["condition_number"] is None  # inf is null, never "inf"
    ash = flow.adaptive_shoot(SR.problem, 4, tol=1e-6)
    _check(ash.adaptive_grid(flow.probe_control(ash.reference)), seen)


@pytest.mark.slow
def test_adaptive_result_types():
    """The S-term results (each compiles gradients through adaptive solves: ~20 s)."""
    seen: set[str] = set()
    ash = flow.adaptive_shoot(SR.problem, 4, tol=1e-6)
    U = flow.probe_control(ash.reference)
    _check(flow.full_gradient(ash, U), seen)
    st = flow.s_term_study(SR.problem, 4, U, tols=(1e-6,))
    _check(st, seen)
    _check(st.rows[0], seen)
    _check(flow.adaptive_descent(ash, max_steps=5, outer_iterations=1), seen)


def test_every_public_result_type_is_covered():
    """Every public result class derives from flow.AbstractResult (one base)."""
    modules = (flow, flow.indirect, flow.controls, stability)
    classes = {
        obj
        for m in modules
        for name in dir(m)
        if isinstance(obj := getattr(m, name), type) and name[0].isupper()
    }
    results = {c for c in classes if issubclass(c, flow.AbstractResult)}
    names = {c.__name__ for c in results}
    assert {
        "DescentTrace", "FlowSolution", "GradientCheck", "Comparison", "ConditionsSolution",
        "CostateTrajectory", "ContinuousAdjoint", "CostateReport", "RankReport",
        "SpuriousCheck", "AdaptiveGrid", "FDGradient", "STerm", "STermStudy",
        "AdaptiveDescent", "Equilibrium", "Equilibria", "Spectrum", "Cluster",
        "SpectralDensity", "Classification", "EulerBound", "MeshStudy", "StabilityReport",
        "Basin", "BasinRow",
    } <= names  # fmt: skip
    for c in results:
        assert "status" not in {f for f in getattr(c, "__annotations__", {})}, c


def test_to_json_and_format_number():
    assert flow.to_json({"a": np.array([1.0, np.nan, np.inf]), "b": complex(1, -2)}) == {
        "a": [1.0, None, None],
        "b": {"real": 1.0, "imag": -2.0},
    }
    assert flow.to_json(flow.RESULTS.converged) == "converged"
    with pytest.raises(TypeError, match="JSON"):
        flow.to_json(object())
    assert flow.format_number(None) == flow.format_number(math.nan) == "n/a"
    assert flow.format_number(True) == "yes" and flow.format_number(3) == "3"
    assert flow.format_number({"real": 1.0, "imag": -0.5}, ".2g") == "1 - 0.5i"


# ------------------------------------------------------- defaults that work


@pytest.mark.parametrize(
    "name, N, explicit",
    [
        ("scalar_regularized", 1000, True),
        ("van_der_pol", 200, False),
        ("lotka_volterra", 200, True),
    ],
)
def test_gradient_flow_defaults_reach_the_tolerance(name, N, explicit):
    """With nothing but (shooting, U0): max|dH/du| <= 1e-8, and the result says which
    solver did it (the stiff one for van der Pol, whose Hessian/h spans [2, 5e4])."""
    sh = flow.shoot(problems.get(name), N)
    sol = flow.gradient_flow(sh, sh.zeros())
    assert sol.status == "converged" and float(sol.residual) <= 1e-8
    # the residual recomputed from the final control by the costates (Lemma 2)
    assert float(jnp.max(jnp.abs(sh.hamiltonian_gradient(sol.U)))) <= 1e-8
    assert sol.solver.startswith("Tsit5")
    assert ("Kvaerno" in sol.solver) is not explicit
    assert math.isfinite(sol.rtol) and math.isfinite(sol.atol)


def test_explicit_choices_win():
    sol = flow.gradient_flow(SR, SR.zeros(), solver=diffrax.Dopri5(), rtol=1e-9, atol=1e-11)
    assert sol.solver == "Dopri5" and (sol.rtol, sol.atol) == (1e-9, 1e-11)
    stiff = flow.gradient_flow(SR, SR.zeros(), solver=flow.stiff_solver())
    assert stiff.solver == "Kvaerno3 (dense Jacobian)" and stiff.status == "converged"


def test_max_steps_reports_the_residual_and_the_cause():
    """A stiff flow on an explicit solver: the message gives the residual reached
    and names stiffness (the step held at the stability limit)."""
    vdp = flow.shoot(problems.van_der_pol(), 100)
    sol = flow.gradient_flow(vdp, vdp.zeros(), solver=diffrax.Tsit5(), max_steps=300, throw=False)
    assert sol.status == "max_steps"
    assert "residual" in sol.message and "stiff" in sol.message
    with pytest.raises(flow.ConvergenceError, match="stiff"):
        flow.gradient_flow(vdp, vdp.zeros(), solver=diffrax.Tsit5(), max_steps=300)


def test_newton_flow_stops_where_the_hessian_is_indefinite():
    """van der Pol at N = 200, the optimum perturbed by 0.05: the Hessian's smallest
    eigenvalue (numpy) is about -80; the Newton flow stops with `indefinite` at
    tau = 0 and says why, instead of running to max_steps."""
    sh = flow.shoot(problems.van_der_pol(), 200)
    opt = stability.equilibrium(sh)
    U0 = opt.U + 0.05
    lowest = np.linalg.eigvalsh(np.asarray(sh.hessian(U0)))[0]
    assert lowest < -50
    sol = flow.gradient_flow(sh, U0, metric="newton", throw=False)
    assert sol.status == "indefinite" and float(sol.indefinite_at) == 0.0
    assert "non-positive curvature" in sol.message and "tau = 0" in sol.message
    with pytest.raises(flow.ConvergenceError, match="curvature"):
        flow.gradient_flow(sh, U0, metric="newton")


class _PositiveBelow(metrics.AbstractMetric):
    """The Hamiltonian metric, declared 'not positive definite' once max|U| reaches
    `level`: a test metric that makes the flow's curvature event fire mid-flow at a
    known point of the (monotone) trajectory."""

    constant = False
    name = "test"
    level: float

    def solve(self, shooting, U, G):
        d = metrics.Hamiltonian().solve(shooting, U, G)
        return metrics.MetricSolve(d.direction, jnp.max(jnp.abs(U)) < self.level, d.num_hvp)


def test_indefinite_metric_detected_mid_flow():
    U_star = stability.equilibrium(SR).U
    level = 0.5 * float(jnp.max(jnp.abs(U_star)))
    sol = flow.gradient_flow(SR, SR.zeros(), metric=_PositiveBelow(level), throw=False)
    assert sol.status == "indefinite"
    tau = float(sol.indefinite_at)
    assert tau > 0 and f"tau = {tau:.6g}" in sol.message
    # the reference: the Hamiltonian flow integrated independently to that time
    ref = flow.gradient_flow(
        SR, SR.zeros(), tol=None, tau1=tau, solver=diffrax.Dopri8(), rtol=1e-12, atol=1e-12
    )
    assert float(jnp.max(jnp.abs(ref.U))) >= level * (1 - 1e-6)
    assert float(jnp.max(jnp.abs(sol.U - ref.U))) <= 1e-6


def test_analyze_refuses_a_nonfinite_start():
    bad = flow.shoot(_blow_up(), 50)
    with pytest.raises(ValueError, match=r"`U0`: E\^N\(U0\) = inf is not finite.*at k = \d+"):
        stability.analyze(bad)
    with pytest.raises(gradflow.ProblemError, match="not finite"):
        gradflow.run_analysis(bad.problem, N=50, figures=False, out="/nonexistent/never-written")


# 9 s; adaptive grids run by default in test_adaptive.py
@pytest.mark.slow
def test_descend_drives_an_adaptive_shooting():
    """descend drives an AdaptiveShooting like a Shooting, through the one shooting
    interface (first-order metrics: no Hessian-vector products pass diffrax's
    step-size loop). A tolerance below what descent with the grid re-chosen at every
    iterate reaches (the term S, section 6.5) ends at max_steps with the residual in
    the message (the stall itself: tests/test_adaptive.py, slow)."""
    ash = flow.adaptive_shoot(problems.scalar_regularized(), 4, tol=1e-6)
    trace = flow.descend(ash, ash.zeros(), step=0.5, max_steps=10, tol=1e-12, throw=False)
    assert trace.status == "max_steps" and "hamiltonian residual" in trace.message
    with pytest.raises(NotImplementedError, match="Hessian-vector"):
        ash.hessian_vector_product(ash.zeros(), ash.zeros())


@pytest.mark.slow
def test_gradient_flow_on_an_adaptive_shooting_stays_explicit():
    """solver="auto" on a map without Hessian-vector products: Tsit5 throughout (about
    30 s: each Runge-Kutta stage compiles a gradient through an adaptive solve)."""
    ash = flow.adaptive_shoot(problems.scalar_regularized(), 4, tol=1e-6)
    sol = flow.gradient_flow(ash, ash.zeros(), tol=1e-5)
    assert sol.status == "converged" and sol.solver == "Tsit5"
