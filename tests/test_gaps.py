"""Promises and error paths no other test reached: float64 on import, float32 refused
by every verb that takes controls, the documented argument errors of `compare`, the
step rules and the metrics, and the result statuses reached on purpose.

The references are closed forms stated in each test (the Hessians, costates and
residuals of one-line problems), never the package's own numbers.
"""

import json
import os
import subprocess
import sys

import diffrax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest

import flow
import stability
from flow import indirect, metrics, problems


SR = flow.shoot(problems.scalar_regularized(), 10)


def _problem(f, E, x0=(1.0,), tf=1.0):
    return flow.OptimalControlProblem(f, E, list(x0), 0.0, tf, control_dim=1)


# ----------------------------------------------------------- float64 on import

_IMPORT_ONLY = """
import json
import jax
before = bool(jax.config.jax_enable_x64)
import jax.numpy as jnp
import flow
sh = flow.shoot(flow.problems.scalar_regularized(), 5)
print(json.dumps(dict(
    before=before,
    after=bool(jax.config.jax_enable_x64),
    zeros=str(jnp.zeros(3).dtype),
    cost=str(sh.cost(sh.zeros()).dtype),
    gradient=str(sh.gradient(sh.zeros()).dtype),
)))
"""


def test_importing_flow_turns_on_float64():
    """In a fresh interpreter (no conftest, no JAX_ENABLE_X64 in the environment)
    x64 is off until `import flow` turns it on; then arrays and a shooting cost are
    float64."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_ONLY], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == dict(
        before=False, after=True, zeros="float64", cost="float64", gradient="float64"
    )


# ------------------------------------------------------------ float32 refused

_ADAPTIVE = flow.adaptive_shoot(problems.scalar_regularized(), 4, tol=1e-6)
_PARAM = flow.controls.parameterize(SR, flow.controls.Legendre(1))
_F32 = jnp.zeros((10, 1), jnp.float32)
_A32 = jnp.zeros(_ADAPTIVE.control_shape, jnp.float32)

#: (verb, the call with float32 controls, the argument's name)
FLOAT32_CALLS = {
    "flow.descend": (lambda: flow.descend(SR, _F32, step=0.1, max_steps=2), "U0"),
    "flow.gradient_flow": (lambda: flow.gradient_flow(SR, _F32, tol=None, tau1=0.1), "U0"),
    "flow.check_gradients": (lambda: flow.check_gradients(SR, _F32), "U"),
    "flow.adaptive_descent": (lambda: flow.adaptive_descent(_ADAPTIVE, _A32), "U0"),
    "flow.full_gradient": (lambda: flow.full_gradient(_ADAPTIVE, _A32), "U"),
    "flow.s_term": (lambda: flow.s_term(_ADAPTIVE, _A32), "U"),
    "flow.s_term_study": (
        lambda: flow.s_term_study(SR.problem, 4, _A32, tols=(1e-6,)),
        "U",
    ),
    "flow.indirect.continuous_adjoint_gradient": (
        lambda: indirect.continuous_adjoint_gradient(SR, _F32),
        "U",
    ),
    "flow.indirect.costate_report": (lambda: indirect.costate_report(SR, _F32), "U"),
    "flow.indirect.direct_optimum": (lambda: indirect.direct_optimum(SR, _F32), "U0"),
    "flow.controls.spurious_check": (
        lambda: flow.controls.spurious_check(
            SR, jnp.zeros((1, 2), jnp.float32), basis=flow.controls.Legendre(1)
        ),
        "C",
    ),
    "flow.controls.expand": (
        lambda: flow.controls.expand(_PARAM, jnp.zeros(_PARAM.control_shape, jnp.float32)),
        "C",
    ),
    "stability.linearize": (lambda: stability.linearize(SR, _F32), "U"),
    "stability.equilibria": (
        lambda: stability.equilibria(SR, jnp.zeros((2, 10, 1), jnp.float32)),
        "starts",
    ),
    "stability.analyze": (lambda: stability.analyze(SR, _F32), "U0"),
}

#: Verbs whose guesses go through flow.validation.real_array (batched or 1-D):
#: float32 is refused there too.
FLOAT32_GUESSES = {
    "flow.indirect.solve_conditions": (
        lambda: indirect.solve_conditions(SR, _F32, max_steps=1, throw=False),
        "guess",
    ),
    "flow.indirect.costate_shooting(control_guess)": (
        lambda: indirect.costate_shooting(
            SR.problem,
            [0.0],
            control_guess=jnp.zeros((1,), jnp.float32),
            max_steps=1,
            throw=False,
        ),
        "control_guess",
    ),  # fmt: skip
    "flow.indirect.costate_shooting(lambda0_guess)": (
        lambda: indirect.costate_shooting(
            SR.problem, jnp.zeros((1,), jnp.float32), max_steps=1, throw=False
        ),
        "lambda0_guess",
    ),
}


@pytest.mark.parametrize(
    "verb",
    [*FLOAT32_CALLS, *FLOAT32_GUESSES],
)
def test_float32_controls_are_refused(verb):
    call, name = {**FLOAT32_CALLS, **FLOAT32_GUESSES}[verb]
    try:
        call()
    except TypeError as e:
        assert f"`{name}`" in str(e) and "float64" in str(e), str(e)
    else:
        pytest.fail(f"{verb} accepted float32 `{name}`")


# --------------------------------------------------------------- compare


@pytest.fixture(scope="module")
def runs():
    """A descent with iterates, and dense flows of the same problem (N = 10) from its
    start and from another start."""
    sh = SR
    U0 = sh.zeros()
    trace = flow.descend(sh, U0, step=0.2, max_steps=5, save_iterates=True)
    kw = dict(tol=None, tau1=1.0, solver=diffrax.Tsit5(), rtol=1e-8, atol=1e-10)
    dense = diffrax.SaveAt(t1=True, dense=True)
    fs = flow.gradient_flow(sh, U0, **kw, saveat=dense)
    return dict(
        trace=trace,
        fs=fs,
        other_start=flow.gradient_flow(sh, U0 + 0.5, **kw, saveat=dense),
        not_dense=flow.gradient_flow(sh, U0, **kw),
        no_iterates=flow.descend(sh, U0, step=0.2, max_steps=5),
    )


def test_compare_accepts_matching_runs(runs):
    comp = flow.compare(runs["trace"], runs["fs"])
    assert comp.tau.shape == (6,) and float(comp.distance[0]) == 0.0


def test_compare_error_paths(runs):
    trace, fs = runs["trace"], runs["fs"]
    with pytest.raises(TypeError, match="trace"):
        flow.compare(fs, fs)
    with pytest.raises(TypeError, match="flow_solution"):
        flow.compare(trace, trace)
    with pytest.raises(ValueError, match="`tau_max`"):
        flow.compare(trace, fs, tau_max=-1.0)
    with pytest.raises(ValueError, match="`tau_max`"):
        flow.compare(trace, fs, tau_max=float("nan"))
    with pytest.raises(ValueError, match="`trace` has no iterates"):
        flow.compare(runs["no_iterates"], fs)
    with pytest.raises(ValueError, match="`flow_solution` has no dense output"):
        flow.compare(trace, runs["not_dense"])
    with pytest.raises(ValueError, match="`flow_solution` starts elsewhere"):
        flow.compare(trace, runs["other_start"])


def test_compare_refuses_runs_of_other_problems(runs):
    sh20 = flow.shoot(problems.scalar_regularized(), 20)
    trace20 = flow.descend(sh20, sh20.zeros(), step=0.2, max_steps=2, save_iterates=True)
    with pytest.raises(ValueError, match=r"`flow_solution` has controls of shape \(10, 1\)"):
        flow.compare(trace20, runs["fs"])


def test_compare_and_evaluate_refuse_a_flow_stopped_at_the_start(runs):
    """A Newton flow from a point where the Hessian (closed form: -12 h^2 x_N^2 11^T
    for E = -x^4, x' = u) has no positive eigenvalue stops at tau = 0: nothing to
    evaluate or compare, and both say so."""
    q = flow.shoot(_problem(lambda x, u: u, lambda x: -(x[0] ** 4)), 10)
    stopped = flow.gradient_flow(
        q, jnp.ones((10, 1)), metric="newton", saveat=diffrax.SaveAt(t1=True, dense=True),
        throw=False,
    )  # fmt: skip
    assert stopped.result == flow.RESULTS.indefinite
    with pytest.raises(ValueError, match=r"stopped at the start \(indefinite\)"):
        stopped.evaluate(0.0)
    trace = flow.descend(q, jnp.ones((10, 1)), step=1e-3, max_steps=2, save_iterates=True)
    with pytest.raises(ValueError, match="`flow_solution` has no dense output"):
        flow.compare(trace, stopped)


# ------------------------------------------------------------- step rules


@pytest.mark.parametrize(
    "rule, kw, exc, words",
    [
        (flow.Armijo, dict(alpha0=0.0), ValueError, "`alpha0`"),
        (flow.Armijo, dict(alpha0=-1.0), ValueError, "`alpha0`"),
        (flow.Armijo, dict(alpha0=float("nan")), ValueError, "`alpha0`"),
        (flow.Armijo, dict(alpha0=float("inf")), ValueError, "`alpha0`"),
        (flow.Armijo, dict(beta=0.0), ValueError, "`beta`"),
        (flow.Armijo, dict(beta=1.0), ValueError, "`beta`"),
        (flow.Armijo, dict(beta=1.5), ValueError, "`beta`"),
        (flow.Armijo, dict(c1=0.0), ValueError, "`c1`"),
        (flow.Armijo, dict(c1=1.0), ValueError, "`c1`"),
        (flow.Armijo, dict(max_backtracks=0), ValueError, "`max_backtracks`"),
        (flow.Armijo, dict(max_backtracks=2.5), TypeError, "max_backtracks"),
        (flow.Armijo, dict(alpha0="1"), TypeError, "alpha0"),
        (flow.LBFGS, dict(memory=0), ValueError, "`memory`"),
        (flow.LBFGS, dict(memory=2.0), TypeError, "memory"),
        (flow.LBFGS, dict(beta=0.0), ValueError, "`beta`"),
        (flow.LBFGS, dict(beta=2.0), ValueError, "`beta`"),
        (flow.LBFGS, dict(c1=-0.1), ValueError, "`c1`"),
        (flow.LBFGS, dict(c1=1.0), ValueError, "`c1`"),
        (flow.LBFGS, dict(max_backtracks=0), ValueError, "`max_backtracks`"),
    ],
)
def test_bad_line_search_parameters(rule, kw, exc, words):
    with pytest.raises(exc, match=words):
        rule(**kw)


def test_good_line_search_parameters_are_kept():
    a = flow.Armijo(alpha0=2.0, beta=0.3, c1=0.5, max_backtracks=3)
    assert (a.alpha0, a.beta, a.c1, a.max_backtracks) == (2.0, 0.3, 0.5, 3)
    b = flow.LBFGS(memory=3, beta=0.9, c1=1e-3, max_backtracks=1)
    assert (b.memory, b.beta, b.c1, b.max_backtracks) == (3, 0.9, 1e-3, 1)


# ---------------------------------------------------------------- metrics


@pytest.mark.parametrize(
    "d, exc, words",
    [
        (np.ones(10), ValueError, r"`d` must have shape \(N, m\); got \(10,\)"),
        (np.ones((2, 5, 1)), ValueError, r"`d` must have shape \(N, m\)"),
        ([[1.0], [0.0]], ValueError, r"`d` must be positive.*d\[1, 0\] = 0\.0"),
        ([[1.0], [-2.0]], ValueError, r"`d` must be positive.*d\[1, 0\] = -2\.0"),
        ([[1.0], [np.nan]], ValueError, r"`d` must be finite.*d\[1, 0\] = nan"),
        ([[np.inf], [1.0]], ValueError, r"`d` must be finite.*d\[0, 0\] = inf"),
        ([["a"], ["b"]], TypeError, r"`d` must be a real array"),
        (np.ones((2, 1), complex), TypeError, r"`d` must be a real array"),
    ],
)
def test_bad_diagonal_metric(d, exc, words):
    with pytest.raises(exc, match=words):
        metrics.Diagonal(d)


def test_diagonal_metric_of_the_wrong_shape_is_refused_when_used():
    with pytest.raises(ValueError, match=r"`d` has shape \(5, 1\); the controls have shape"):
        flow.gradient_flow(SR, SR.zeros(), metric=metrics.Diagonal(np.ones((5, 1))))


@pytest.mark.parametrize(
    "M, exc, words",
    [
        (np.ones((3, 4)), ValueError, r"`operator` must be a square"),
        (np.ones(3), ValueError, r"`operator` must be a square"),
        (
            [[2.0, 1.0], [0.0, 2.0]],
            ValueError,
            r"`operator` must be symmetric; max \|M - M\^T\| = 1",
        ),
        ([[1.0, 0.0], [0.0, -1.0]], ValueError, r"`operator` must be positive definite"),
        ([[1.0, 2.0], [2.0, 1.0]], ValueError, r"`operator` must be positive definite"),
        ([[1.0, 0.0], [0.0, 0.0]], ValueError, r"`operator` must be positive definite"),
        ([[np.nan, 0.0], [0.0, 1.0]], ValueError, r"`operator` must be finite"),
        ([["a"]], TypeError, r"`operator` must be a real array"),
        (lx.MatrixLinearOperator(jnp.eye(2)), ValueError, r"`operator` must be tagged"),
    ],
)
def test_bad_fixed_metric(M, exc, words):
    with pytest.raises(exc, match=words):
        metrics.Fixed(M)


def test_fixed_metric_of_the_wrong_size_is_refused_when_used():
    with pytest.raises(ValueError, match=r"`operator` has size 5; the controls have N\*m = 10"):
        flow.gradient_flow(SR, SR.zeros(), metric=metrics.Fixed(np.eye(5)))


def test_diagonal_hessian_metric():
    """Closed forms with x' = u, x(0) = 1, N = 10 (h = 0.1, x_N = 1 + h sum u_k):

    - E = x: E^N is linear, its Hessian is 0: no diagonal metric, an error naming U0;
    - E = sqrt(x) at x_N = -4: the Hessian is NaN: an error naming U0;
    - E = -x^4 at U0 = 1 (x_N = 2): Hess = -12 h^2 x_N^2 11^T, a negative diagonal
      -0.48, which enters with its absolute value (the documented |diag|).
    """
    linear = flow.shoot(_problem(lambda x, u: u, lambda x: jnp.sum(x)), 10)
    with pytest.raises(ValueError, match=r"diagonal vanishes at `U0`.*max \|diag\| = 0"):
        flow.gradient_flow(linear, linear.zeros(), metric=metrics.DiagonalHessian())
    with pytest.raises(ValueError, match=r"diagonal vanishes at `U0`"):
        flow.descend(linear, linear.zeros(), metric="diagonal-hessian", step=0.1)
    root = flow.shoot(_problem(lambda x, u: u, lambda x: jnp.sqrt(x[0])), 10)
    with pytest.raises(ValueError, match=r"diagonal is not finite at `U0` \(entry 0"):
        metrics.DiagonalHessian().prepare(root, jnp.full((10, 1), -5.0))
    quartic = flow.shoot(_problem(lambda x, u: u, lambda x: -(x[0] ** 4)), 10)
    prepared = metrics.DiagonalHessian().prepare(quartic, jnp.ones((10, 1)))
    assert isinstance(prepared, metrics.Diagonal)
    np.testing.assert_allclose(prepared.d, np.full((10, 1), 12 * 0.01 * 4), rtol=1e-13)
    with pytest.raises(TypeError, match="must be prepared"):
        metrics.DiagonalHessian().solve(quartic, quartic.zeros(), quartic.zeros())


@pytest.mark.parametrize(
    "cls, kw, exc, words",
    [
        (metrics.DiagonalHessian, dict(floor=-1e-3), ValueError, "`floor`"),
        (metrics.DiagonalHessian, dict(floor=1.0), ValueError, "`floor`"),
        (metrics.DiagonalHessian, dict(floor=float("nan")), ValueError, "`floor`"),
        (metrics.DiagonalHessian, dict(max_size=0), ValueError, "`max_size`"),
        (metrics.Newton, dict(damping=-1.0), ValueError, "`damping`"),
        (metrics.Newton, dict(damping=float("inf")), ValueError, "`damping`"),
        (metrics.Newton, dict(rtol=0.0), ValueError, "`rtol`"),
        (metrics.Newton, dict(max_steps=0), ValueError, "`max_steps`"),
    ],
)
def test_bad_metric_parameters(cls, kw, exc, words):
    with pytest.raises(exc, match=words):
        cls(**kw)


# -------------------------------------------------- statuses reached on purpose


def test_solve_conditions_singular():
    """f = u^3: the control equation r_u = h^-1 dPhi/du^T lambda = 3 u^2 lambda has the
    gradient (6 u lambda, 3 u^2) = 0 at the zero guess: a zero row of the Newton
    matrix, singular for both linear solvers."""
    sh = flow.shoot(_problem(lambda x, u: u**3, lambda x: 0.5 * jnp.sum((x - 1.0) ** 2)), 5)
    for linear_solver in ("dense", "sparse"):
        sol = indirect.solve_conditions(sh, linear_solver=linear_solver, throw=False)
        assert sol.result == indirect.RESULTS.singular
        assert int(sol.num_steps) == 1
    with pytest.raises(flow.ConvergenceError, match="singular"):
        indirect.solve_conditions(sh)


def test_solve_conditions_line_search_failed():
    """f = u^3/3 + u, E = x: the costates are 1 (dPhi/dx = 1, grad E = 1), so the
    control equation reads u_k^2 + 1 = 0: no root. Newton with the line search
    decreases |R|^2 towards its minimum at u = 0, where no step decreases it
    further."""
    sh = flow.shoot(_problem(lambda x, u: u**3 / 3 + u, lambda x: jnp.sum(x), x0=(0.0,)), 5)
    sol = indirect.solve_conditions(sh, jnp.full((5, 1), 0.5), max_steps=200, throw=False)
    assert sol.result == indirect.RESULTS.line_search_failed
    assert int(sol.num_steps) < 200
    assert float(sol.control_residual) >= 1.0  # u^2 + 1 >= 1: not a root
    np.testing.assert_allclose(sol.costates, 1.0, rtol=1e-12)
    with pytest.raises(flow.ConvergenceError, match="line search"):
        indirect.solve_conditions(sh, jnp.full((5, 1), 0.5), max_steps=200)


def test_solve_conditions_diverged():
    """x' = x^2 + u from x(0) = 1 on [0, 2]: with u = 0 Euler's states overflow (the
    continuous solution blows up at t = 1), so the residual at the guess is not
    finite."""
    sh = flow.shoot(_problem(lambda x, u: x**2 + u, lambda x: 0.5 * jnp.sum(x**2), tf=2.0), 50)
    sol = indirect.solve_conditions(sh, throw=False)
    assert sol.result == indirect.RESULTS.diverged
    with pytest.raises(flow.DivergenceError, match="diverged"):
        indirect.solve_conditions(sh)


def test_solve_conditions_max_steps():
    """Newton counts as converged only after a step below tol (1 + |z|); the first step
    from the zero guess moves the controls by about their optimal size (they are not
    zero at the optimum), so a single iteration ends at max_steps."""
    sol = indirect.solve_conditions(SR, max_steps=1, throw=False)
    assert sol.result == indirect.RESULTS.max_steps and int(sol.num_steps) == 1
    assert float(jnp.max(jnp.abs(sol.U))) > 1e-3  # the first step was not small


def test_continuous_adjoint_solver_failed():
    """One ODE step cannot cover [0, 1] at rtol 1e-10: the continuous adjoint's
    solves stop at diffrax's max_steps, which the result reports as solver_failed
    (`completed`: tests/test_indirect.py, `ode_success`)."""
    ca = indirect.continuous_adjoint_gradient(SR, SR.zeros(), ode_max_steps=1)
    assert ca.result == flow.RESULTS.solver_failed and not ca.ode_success


def test_costate_shooting_max_steps_and_diverged():
    """max_steps: lambda(t0) = 0 is not the root (u = -lambda/rho is not zero at the
    optimum), so one Newton iteration cannot pass the step test. diverged: x' = x^2 + u
    with L = u^2/2 gives u = -lambda, and lambda0 = 0 keeps lambda' = -2 x lambda = 0,
    hence u = 0 and x = 1/(1 - t), which blows up at t = 1 < tf = 2: the residual is
    not finite."""
    sol = indirect.costate_shooting(SR.problem, [0.0], max_steps=1, throw=False)
    assert sol.result == indirect.RESULTS.max_steps and int(sol.num_steps) == 1
    blow_up = flow.OptimalControlProblem(
        lambda x, u: x**2 + u, lambda x: 0.5 * jnp.sum(x**2), [1.0], 0.0, 2.0,
        running_cost=lambda x, u: 0.5 * jnp.sum(u**2), control_dim=1,
    )  # fmt: skip
    sol = indirect.costate_shooting(blow_up, [0.0], ode_max_steps=512, throw=False)
    assert sol.result == indirect.RESULTS.diverged
