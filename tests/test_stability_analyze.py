"""stability.analyze: the whole analysis in one report."""

import json
import math

import numpy as np
import pytest

import flow
import stability
from flow import problems


EPS = np.finfo(np.float64).eps


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
    # against the grid's steps computed here (one subtraction, one product or quotient:
    # 2 eps), and against 1/N: the grid points k/N round at eps |t| <= eps, so each step
    # is within 2 eps of 1/N absolutely, 2 N eps relatively (4.4e-14)
    h_min = np.min(np.diff(np.asarray(sh.grid)))
    assert r.tolerance["min_step"] == pytest.approx(h_min, rel=2 * EPS, abs=0)
    assert r.tolerance["tol_over_h"] == pytest.approx(1e-9 / h_min, rel=2 * EPS, abs=0)
    assert r.tolerance["tol_times_h"] == pytest.approx(1e-9 * h_min, rel=2 * EPS, abs=0)
    assert r.tolerance["min_step"] == pytest.approx(1 / 200, rel=2 * 200 * EPS, abs=0)
    assert r.tolerance["tol_over_h"] == pytest.approx(1e-9 * 200, rel=3 * 200 * EPS, abs=0)
    assert r.tolerance["tol_times_h"] == pytest.approx(1e-9 / 200, rel=3 * 200 * EPS, abs=0)
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
    assert json.loads(text)["euler"]["alpha_max"] == r.euler.alpha_max  # repr round-trips
    assert d["replay"]["agrees"] is True
    assert "stable" in r.summary() and "Theorem 5.14" in r.summary()
    assert r.equivalence.lemma2 < 1e-12


def test_identity_metric_scales_the_step_by_h():
    """J = -Hess under the identity metric and -diag(h)^-1 Hess under the Hamiltonian
    one, at the same equilibrium: every eigenvalue scales by h exactly, alpha_max and
    the step alpha_opt by 1/h, and rho(alpha_opt) = (kappa - 1)/(kappa + 1) not at all.

    Tolerances, rounding only: a dense symmetric eigensolver is backward stable,
    |d mu| <= c N eps |Hess|, so the ends of the spectrum move by <= c N eps cond(Hess)
    relatively (cond = mu_max/mu_min ~ 1.44 here); the grid's steps differ from 1/N
    by <= 2 N eps relatively. With c = 2: 6 N eps = 1.3e-13 for alpha_max and the
    step; rho's relative error is 2 kappa/(kappa^2 - 1) ~ 2.7 times kappa's (two ends):
    5 times that for the rate."""
    N = 100
    sh = flow.shoot(problems.scalar_regularized(), N)
    a = stability.analyze(sh, metric="identity")
    b = stability.analyze(flow.shoot(problems.scalar_regularized(), N), metric="hamiltonian")
    # the premise: one equilibrium, the metric only enters after it
    np.testing.assert_array_equal(np.asarray(a.equilibrium.U), np.asarray(b.equilibrium.U))
    rel = 6 * N * EPS
    mu_a = np.sort(np.asarray(a.euler.eigenvalues).real)
    mu_b = np.sort(np.asarray(b.euler.eigenvalues).real)
    np.testing.assert_allclose(mu_a, mu_b / N, rtol=rel, atol=0)
    assert a.euler.alpha_max == pytest.approx(N * b.euler.alpha_max, rel=rel, abs=0)
    assert a.step == pytest.approx(N * b.step, rel=rel, abs=0)
    assert a.predicted_rate == pytest.approx(b.predicted_rate, rel=5 * rel, abs=0)
    # and each against the closed forms in the spectrum's ends (2/mu_max, 2/(mu_min +
    # mu_max), (mu_max - mu_min)/(mu_max + mu_min)): a few operations, 4 eps; the rate
    # max|1 + alpha mu| cancels in 1 + alpha mu (terms ~1): 4 eps absolute, 4 eps / rho
    # relative
    lo, hi = -mu_a[-1], -mu_a[0]
    assert a.euler.alpha_max == pytest.approx(2 / hi, rel=4 * EPS, abs=0)
    assert a.step == pytest.approx(2 / (lo + hi), rel=4 * EPS, abs=0)
    rho = (hi - lo) / (hi + lo)
    assert a.predicted_rate == pytest.approx(rho, rel=4 * EPS / rho, abs=0)


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
