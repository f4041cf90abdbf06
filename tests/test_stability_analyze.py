"""stability.analyze: the whole analysis in one report."""

import json
import math

import numpy as np
import pytest

import flow
import stability
from flow import problems


def test_report_on_scalar_regularized():
    sh = flow.shoot(problems.scalar_regularized(), 200)
    # tol: the replay's stopping tolerance (Hamiltonian residual), the old replay_tol
    # default 1e-9; Theorem 5.14 is now reported for that same tol
    r = stability.analyze(sh, metric="hamiltonian", tol=1e-9)
    assert r.equilibrium.success and r.classification.stable
    # alpha_opt = 2 / (mu_min + mu_max) from the spectrum's ends
    mu = np.asarray(r.euler.eigenvalues)
    assert r.step == pytest.approx(2.0 / (abs(mu.min()) + abs(mu.max())), rel=1e-12)
    assert r.replay is not None and r.replay.success
    assert r.agrees is True
    assert r.observed_rate == pytest.approx(r.predicted_rate, rel=1e-3)
    # Theorem 5.14 numbers
    assert r.tolerance["tol"] == 1e-9 and r.tolerance["stop_on"] == "hamiltonian"
    assert r.tolerance["min_step"] == pytest.approx(1 / 200, rel=1e-12)
    assert r.tolerance["tol_over_h"] == pytest.approx(1e-9 * 200)
    assert r.tolerance["tol_times_h"] == pytest.approx(1e-9 / 200)
    d = r.to_dict()
    text = json.dumps(d, allow_nan=False)
    for key in (
        "problem",
        "N",
        "scheme",
        "metric",
        "step",
        "equilibrium",
        "spectrum",
        "classification",
        "euler",
        "tolerance",
        "replay",
        "equivalence",
    ):
        assert key in d
    assert json.loads(text)["euler"]["alpha_max"] == pytest.approx(r.euler.alpha_max)
    assert d["replay"]["agrees"] is True
    assert "stable" in r.summary() and "Theorem 5.14" in r.summary()
    assert r.equivalence.lemma2 < 1e-12


def test_identity_metric_scales_the_step_by_h():
    a = stability.analyze(flow.shoot(problems.scalar_regularized(), 100), metric="identity")
    b = stability.analyze(flow.shoot(problems.scalar_regularized(), 100), metric="hamiltonian")
    assert a.euler.alpha_max == pytest.approx(100 * b.euler.alpha_max, rel=1e-6)
    assert a.predicted_rate == pytest.approx(b.predicted_rate, rel=1e-6)


def test_saddle_verdict():
    r = stability.analyze(flow.shoot(problems.double_well(), 50), metric="hamiltonian")
    assert r.classification.kind == "saddle" and r.classification.index == 1
    assert r.euler.alpha_max is None and r.replay is None
    assert "saddle" in r.verdict


def test_marginal_verdict_and_step_none():
    r = stability.analyze(flow.shoot(problems.scalar_mayer(), 50), metric="identity", step=None)
    assert r.classification.kind == "marginal"
    assert r.classification.manifold_dimension == 49
    assert r.replay is None and "manifold" in r.verdict


def test_observed_rate_of_a_geometric_sequence():
    r = 0.3 ** np.arange(30)
    assert stability.observed_rate(r, floor=1e-14) == pytest.approx(0.3, rel=1e-12)
    assert stability.observed_rate([1.0, 0.5], floor=1e-14) is None


def test_bad_arguments():
    sh = flow.shoot(problems.scalar_regularized(), 20)
    with pytest.raises(ValueError, match="`step`"):
        stability.analyze(sh, step=-1.0)
    with pytest.raises(ValueError, match="`metric`"):
        stability.analyze(sh, metric="nope")
    assert math.isfinite(stability.analyze(sh, step=0.5, tol=1e-9).observed_rate)
