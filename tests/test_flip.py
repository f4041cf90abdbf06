"""Past forward Euler's bound: cycles detected by `flow.descend` (status
`oscillating`, `period`, `amplitude`, `cycle`) and the flip bifurcation located and
classified by `stability.flip`, measured against brute-force iteration of the map.

Problems (N = 100, forward Euler):

- the tilted double well of the issue: x' = u, x(0) = 0.3, E = (x(1)^2 - 1)^2 +
  0.2 x(1), running cost u^2/2, equilibrium from U = 0.5 (supercritical flip);
- `scalar_regularized` (its flip is supercritical with a small coefficient, so its
  2-cycle is already far out, half-width 2.36, at 1.02 alpha_max);
- a damped pendulum with quadratic costs: theta'' = -sin(theta) - 0.5 theta' + u,
  x(0) = 0, E = 5 ((theta(1) - 1)^2 + theta'(1)^2), running cost
  (theta^2 + u^2)/2 (subcritical flip: descent diverges).
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest

import flow
import stability


N = 100


def _double_well():
    return flow.OptimalControlProblem(
        dynamics=lambda x, u: u,
        endpoint_cost=lambda x: (x[0] ** 2 - 1.0) ** 2 + 0.2 * x[0],
        running_cost=lambda x, u: 0.5 * u[0] ** 2,
        x0=jnp.array([0.3]), t0=0.0, tf=1.0, control_dim=1, name="tilted_double_well",
    )  # fmt: skip


def _pendulum():
    return flow.OptimalControlProblem(
        dynamics=lambda x, u: jnp.stack([x[1], -jnp.sin(x[0]) - 0.5 * x[1] + u[0]]),
        endpoint_cost=lambda x: 5.0 * ((x[0] - 1.0) ** 2 + x[1] ** 2),
        running_cost=lambda x, u: 0.5 * (x[0] ** 2 + u[0] ** 2),
        x0=jnp.zeros(2), t0=0.0, tf=1.0, control_dim=1, name="damped_pendulum",
    )  # fmt: skip


@pytest.fixture(scope="module")
def double_well():
    sh = flow.shoot(_double_well(), N)
    U0 = jnp.full((N, 1), 0.5)
    return sh, U0, stability.equilibrium(sh, U0)


def _alpha_max(sh, eq, metric):
    linear = stability.linearize(sh, eq, metric=metric)
    return stability.euler_bound(stability.spectrum(linear)).alpha_max


@pytest.mark.parametrize(
    "metric",
    # identity: the same map on a uniform grid (alpha scaled by h), compiled anew (slow)
    ["hamiltonian", pytest.param("identity", marks=pytest.mark.slow)],
)
def test_a_supercritical_flip_and_the_replay_settling_on_its_cycle(double_well, metric):
    """The flip is at euler_bound's alpha_max (1e-6 relative; measured 1e-15), it is
    supercritical, and past it descent settles on a 2-cycle (status `oscillating`,
    period 2) whose points are the flip's cycle to 1e-8 (measured 8e-12). The nearer
    point's distance from U* is the issue's 0.056 and 0.104 at 1.02 and 1.1 alpha_max
    (measured 0.0563, 0.1044)."""
    sh, U0, eq = double_well
    alpha_max = _alpha_max(sh, eq, metric)
    result = stability.flip(sh, eq, metric=metric)
    assert result.kind == "supercritical" and result.coefficient > 0
    assert result.alpha == pytest.approx(alpha_max, rel=1e-6)
    assert result.cycle_stable and result.cycle_multiplier < 1
    for factor, distance in ((1.02, 0.056), (1.1, 0.104)):
        alpha = factor * alpha_max
        trace = flow.descend(sh, U0, metric=metric, step=alpha, max_steps=5000,
                             tol=1e-13, cycle_tol=1e-12, throw=False)  # fmt: skip
        assert trace.status == "oscillating" and int(trace.period) == 2
        late = np.asarray(trace.cycle[:2])
        cycle = stability.flip(sh, eq, metric=metric, alpha=alpha).cycle
        matched = min(np.max(np.abs(late - cycle)), np.max(np.abs(late[::-1] - cycle)))
        assert matched <= 1e-8
        assert float(trace.amplitude) == pytest.approx(np.max(np.abs(cycle[0] - cycle[1])) / 2)
        nearer = min(np.max(np.abs(late[j] - np.asarray(eq.U))) for j in range(2))
        assert nearer == pytest.approx(distance, abs=1e-3)


def test_the_cycle_grows_like_the_square_root_of_the_distance_past_the_flip(double_well):
    """Half-widths at alpha* (1 + d) for d = 1e-4, 4e-4, 1.6e-3 (the flip verb's
    cycles): each quadrupling of d doubles the half-width to 1%, and the normal
    form's sqrt(2 d / c) max|q| predicts it to 1% at d = 1e-4."""
    sh, _, eq = double_well
    result = stability.flip(sh, eq)
    deltas = [1e-4, 4e-4, 1.6e-3]
    widths = [stability.flip(sh, eq, alpha=result.alpha * (1 + d)).amplitude for d in deltas]
    for a, b in zip(widths, widths[1:], strict=False):
        assert b / a == pytest.approx(2.0, rel=1e-2)
    predicted = math.sqrt(2 * deltas[0] / result.coefficient) * np.max(np.abs(result.eigenvector))
    assert widths[0] == pytest.approx(predicted, rel=1e-2)
    assert result.predicted_cycle_amplitude(result.alpha * (1 + deltas[0])) == pytest.approx(
        predicted, rel=1e-12
    )


def test_scalar_regularized_flip_and_its_distant_looking_cycle():
    """At 1.02 alpha_max descent from U = 0 settles on a 2-cycle of half-width 2.36
    (the issue's 2.35). The issue calls this flip subcritical; it is supercritical
    with a small coefficient: at 1.001 alpha_max descent from U* + 1e-3 q settles on
    a cycle of half-width 0.488 (the normal form predicts 0.486), the flip verb's
    cycle there, so the cycle is born small and grows fast."""
    sh = flow.shoot(flow.problems.get("scalar_regularized"), N)
    eq = stability.equilibrium(sh)
    result = stability.flip(sh, eq)
    assert result.kind == "supercritical"
    assert result.alpha == pytest.approx(_alpha_max(sh, eq, "hamiltonian"), rel=1e-6)
    far = flow.descend(sh, jnp.zeros((N, 1)), step=1.02 * result.alpha, max_steps=5000,
                       tol=1e-10, throw=False)  # fmt: skip
    assert far.status == "oscillating" and int(far.period) == 2
    assert float(far.amplitude) == pytest.approx(2.35, abs=0.02)
    alpha = 1.001 * result.alpha
    near = stability.flip(sh, eq, alpha=alpha)
    assert near.amplitude == pytest.approx(near.predicted_amplitude, rel=1e-2)
    trace = flow.descend(sh, eq.U + 1e-3 * near.eigenvector, step=alpha, max_steps=20000,
                         tol=1e-13, cycle_tol=1e-12, throw=False)  # fmt: skip
    assert trace.status == "oscillating" and int(trace.period) == 2
    assert float(trace.amplitude) == pytest.approx(near.amplitude, rel=1e-8)


def test_a_subcritical_flip_and_descent_diverging():
    """The pendulum's flip is subcritical: no cycle is computed (an `alpha` is
    refused, naming it), and descent past alpha_max diverges, from U = 0 at 1.02
    alpha_max (iteration 69) and from U* + 1e-4 q at 1.001 alpha_max."""
    sh = flow.shoot(_pendulum(), N)
    eq = stability.equilibrium(sh)
    result = stability.flip(sh, eq)
    assert result.kind == "subcritical" and result.coefficient < 0 and result.cycle is None
    assert result.alpha == pytest.approx(_alpha_max(sh, eq, "hamiltonian"), rel=1e-6)
    with pytest.raises(ValueError, match="`alpha`: the flip is subcritical"):
        stability.flip(sh, eq, alpha=1.02 * result.alpha)
    trace = flow.descend(sh, jnp.zeros((N, 1)), step=1.02 * result.alpha, max_steps=5000,
                         tol=1e-10, throw=False)  # fmt: skip
    assert trace.status == "diverged" and int(trace.diverged_at) == 69
    near = flow.descend(sh, eq.U + 1e-4 * result.eigenvector, step=1.001 * result.alpha,
                        max_steps=20000, tol=1e-10, throw=False)  # fmt: skip
    assert near.status == "diverged"


def test_matrix_free_flip_equals_the_dense_one(double_well):
    """The matrix-free path (eigsh, CG, Newton-GMRES and ARPACK on Hessian-vector
    products) gives the dense path's numbers."""
    sh, _, eq = double_well
    dense = stability.flip(sh, eq, dense=True)
    free = stability.flip(sh, eq, dense=False)
    assert free.num_hvp > 0 and dense.num_hvp == 0
    for name in ("alpha", "coefficient", "amplitude", "cycle_multiplier"):
        assert getattr(free, name) == pytest.approx(getattr(dense, name), rel=1e-9), name
    np.testing.assert_allclose(free.cycle, dense.cycle, atol=1e-10)


# ---------------------------------------------------------------- cycle detection


def test_period_four_and_no_cycle_below_the_bound(double_well):
    """At 1.26 alpha_max the double well's descent settles on a 4-cycle; at 0.995
    alpha_max (convergence with multiplier -0.99, the most cycle-like approach) it
    converges and no cycle is reported."""
    sh, U0, eq = double_well
    alpha_max = _alpha_max(sh, eq, "hamiltonian")
    four = flow.descend(sh, U0, step=1.26 * alpha_max, max_steps=5000, tol=1e-10, throw=False)
    assert four.status == "oscillating" and int(four.period) == 4
    points = np.asarray(four.cycle)
    assert min(np.max(np.abs(points[0] - points[j])) for j in (1, 2, 3)) > 1e-3
    below = flow.descend(sh, U0, step=0.995 * alpha_max, max_steps=20000, tol=1e-10)
    assert below.status == "converged" and int(below.period) == 0


def test_cycles_without_a_tolerance_and_detection_off(double_well):
    """Without `tol` every step is taken and the status is `oscillating` when the
    last iterates form a cycle; `cycle_tol=None` turns detection off (`completed`,
    no `cycle`); with `throw=True` a cycle raises ConvergenceError naming the period."""
    sh, U0, eq = double_well
    alpha = 1.1 * _alpha_max(sh, eq, "hamiltonian")
    full = flow.descend(sh, U0, step=alpha, max_steps=300, throw=False)
    assert full.status == "oscillating" and int(full.num_steps) == 300 and int(full.period) == 2
    off = flow.descend(sh, U0, step=alpha, max_steps=300, cycle_tol=None)
    assert off.status == "completed" and off.cycle is None and int(off.period) == 0
    with pytest.raises(flow.ConvergenceError, match="cycle of period 2"):
        flow.descend(sh, U0, step=alpha, max_steps=300, tol=1e-10)
    record = full.to_dict()
    assert record["status"] == "oscillating" and record["period"] == 2
    assert record["amplitude"] == pytest.approx(float(full.amplitude))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(metric="newton"), "`metric` must be a diagonal metric"),
        (dict(alpha=0.1), "`alpha` must be above the flip's alpha"),
        (dict(tol=-1.0), "`tol`"),
    ],
)
def test_bad_flip_arguments_are_named(double_well, kwargs, match):
    sh, _, eq = double_well
    with pytest.raises(ValueError, match=match):
        stability.flip(sh, eq, **kwargs)


def test_a_saddle_and_bounds_are_refused():
    sh = flow.shoot(flow.problems.get("double_well"), 20)
    with pytest.raises(ValueError, match="`U_star`: the Hessian of E\\^N there is not positive"):
        stability.flip(sh, jnp.zeros((20, 1)))
    bounded = flow.shoot(flow.problems.get("lotka_volterra_bounded"), 20)
    with pytest.raises(ValueError, match="`shooting` has control bounds"):
        stability.flip(bounded, jnp.zeros((20, 1)))
    with pytest.raises(ValueError, match="`cycle_tol`"):
        flow.descend(sh, jnp.zeros((20, 1)), step=0.1, cycle_tol=2.0)


# ------------------------------------------------------------------ in the analysis


def test_analyze_classifies_the_flip_when_the_replay_meets_the_bound():
    """`stability.analyze(flip="auto")`: at the optimal step (inside the bound) no
    flip is computed; at a step past alpha_max the replay is `oscillating` and the
    report carries the flip, equal to `stability.flip`'s kind and location;
    `flip=True` computes it always, `flip=False` never; a bad value is named."""
    sh = flow.shoot(flow.problems.get("scalar_regularized"), 50)
    inside = stability.analyze(sh)
    assert inside.flip is None and inside.to_dict()["flip"] is None
    past = stability.analyze(sh, step=1.5)
    reference = stability.flip(sh, past.equilibrium, cycle=False)
    assert past.replay.status == "oscillating" and int(past.replay.period) == 2
    assert past.flip.kind == reference.kind == "supercritical" and past.flip.cycle is None
    assert past.flip.alpha == pytest.approx(past.euler.alpha_max, rel=1e-6)
    assert "settled on a cycle" in past.verdict and "flip at alpha*" in past.summary()
    record = past.to_dict()["flip"]
    assert record["kind"] == "supercritical" and record["alpha"] == pytest.approx(reference.alpha)
    assert stability.analyze(sh, flip=True).flip.kind == "supercritical"
    assert stability.analyze(sh, step=1.5, flip=False).flip is None
    with pytest.raises(ValueError, match="`flip` must be True, False or 'auto'"):
        stability.analyze(sh, flip="yes")


def test_not_an_equilibrium_and_a_quadratic_problem():
    """A U_star that is not an equilibrium is refused, naming it and its residual; on
    a linear-quadratic problem (no third or fourth derivative: c is rounding) the
    flip is `degenerate`, and no cycle is computed for it."""
    sh = flow.shoot(flow.problems.get("double_integrator"), 20)
    eq = stability.equilibrium(sh)
    with pytest.raises(ValueError, match="`U_star` is not an equilibrium: max"):
        stability.flip(sh, eq.U + 0.1)
    result = stability.flip(sh, eq)
    assert result.kind == "degenerate" and result.cycle is None
    with pytest.raises(ValueError, match="`alpha`: the flip is degenerate"):
        stability.flip(sh, eq, alpha=1.1 * result.alpha)
