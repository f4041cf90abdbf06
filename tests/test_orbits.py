"""The orbit diagram of descent (`stability.orbit_diagram`): one compiled call for
all steps, the attractors it classifies equal to `flow.descend`'s own verdicts, and
divergence past a subcritical flip."""

import jax.numpy as jnp
import numpy as np
import pytest
from _compiles import counted
from test_flip import _double_well, _pendulum

import flow
import stability


N = 60


@pytest.fixture(scope="module")
def well():
    sh = flow.shoot(_double_well(), N)
    U0 = jnp.full((N, 1), 0.5)
    return sh, U0, stability.equilibrium(sh, U0)


def test_all_steps_in_one_compiled_call_and_none_for_other_steps(well):
    """256 steps: the iteration is one compiled program; a second diagram with 256
    other steps compiles nothing."""
    sh, U0, eq = well
    with counted() as first:
        stability.orbit_diagram(sh, eq, U0=U0, transient=300)
    assert sum("_orbits" in name for name in first) == 1, first
    with counted() as second:
        other = stability.orbit_diagram(
            sh, eq, U0=U0, alphas=np.linspace(0.8, 1.4, 256), transient=300
        )
    assert second == []
    assert other.alphas.shape == (256,) and other.points.shape == (256, 32)


def test_the_attractors_are_descents_verdicts(well):
    """At 0.9, 1.1 and 1.26 alpha*: a fixed point, a 2-cycle and a 4-cycle, as
    `flow.descend` finds from the same start; the recorded points are the
    observable q^T M (U - U*) of descent's iterates."""
    sh, U0, eq = well
    relative = np.array([0.9, 1.1, 1.26])
    diagram = stability.orbit_diagram(sh, eq, U0=U0, alphas=relative, transient=3000)
    assert list(diagram.period) == [1, 2, 4]
    assert diagram.labels == ["fixed point", "period 2", "period 4"]
    flip = stability.flip(sh, eq)
    assert diagram.alpha_star == pytest.approx(flip.alpha, rel=1e-12)
    weights = np.asarray(flip.eigenvector) * np.asarray(sh.steps)[:, None]  # M q
    for k, alpha in enumerate(diagram.alphas):
        trace = flow.descend(sh, U0, step=float(alpha), max_steps=3032, save_iterates=True,
                             cycle_tol=None)  # fmt: skip
        late = np.asarray(trace.iterates)[-32:]
        s = np.sum(weights * (late - np.asarray(eq.U)), axis=(1, 2))
        np.testing.assert_allclose(diagram.points[k], s, rtol=1e-9, atol=1e-12)
        if diagram.period[k] > 1:
            verdict = flow.descend(sh, U0, step=float(alpha), max_steps=5000, tol=1e-12,
                                   throw=False)  # fmt: skip
            assert verdict.status == "oscillating"
            assert int(verdict.period) == diagram.period[k]


def test_divergence_past_a_subcritical_flip():
    """The pendulum's flip is subcritical: from a small push off U*, every step
    past alpha* diverges (points NaN, diverged_at set); below it the fixed point."""
    sh = flow.shoot(_pendulum(), 40)
    eq = stability.equilibrium(sh)
    diagram = stability.orbit_diagram(sh, eq, alphas=[0.95, 1.02, 1.2], transient=2000)
    assert list(diagram.period) == [1, -1, -1]
    assert np.isnan(diagram.points[1:]).all() and (diagram.diverged_at[1:] > 0).all()
    assert diagram.first(-1) == pytest.approx(1.02 * diagram.alpha_star)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(samples=8), ValueError, "`samples` must be >= 16"),
        (dict(alphas=[1.0, -1.0]), ValueError, "`alphas` must be"),
        (dict(observable=3), TypeError, "`observable`"),
        (dict(transient=0), ValueError, "`transient`"),
    ],
)
def test_bad_arguments_are_named(well, kwargs, error, match):
    sh, _, eq = well
    with pytest.raises(error, match=match):
        stability.orbit_diagram(sh, eq, **kwargs)


def test_a_start_at_the_minimiser_is_not_a_divergence(well):
    """Divergence is judged against the problem's scale, not the start's gradient: from
    U* + 1e-8 q (a gradient of 1e-8) the iterates past alpha* still find the 2-cycle;
    with `relative=False` the default steps are absolute multiples of alpha*."""
    sh, _, eq = well
    flip = stability.flip(sh, eq, cycle=False)
    diagram = stability.orbit_diagram(
        sh, eq, U0=eq.U + 1e-8 * flip.eigenvector, alphas=[1.1], transient=3000
    )
    assert list(diagram.period) == [2]
    absolute = stability.orbit_diagram(sh, eq, relative=False, transient=50)
    np.testing.assert_allclose(absolute.relative, np.linspace(0.5, 1.5, 256), rtol=1e-12)
