"""Predictions for the start actually given (`stability.start_spectrum`, the report's
`start`): the spectral measure of U0 - U* against a dense eigendecomposition, and the
predicted iteration counts against the replays, with the replay's own stopping rule.

The double-integrator transfer (`double_integrator`, N = 200, Euler, Hamiltonian
metric, from U = 0): the eigenvalues of M^-1 Hess E^N are 1 (198 times), 7.59 and
127.5, and the start excites only the last two. The worst-case alpha_opt =
2/(1 + 127.5) predicts 881 iterations (error x 1e-6) and the replay takes 1586 to
max|dH/du| <= 1e-9; a step balancing the two excited modes takes 207.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import flow
import stability


N = 200
TOL = 1e-9


@pytest.fixture(scope="module")
def transfer():
    sh = flow.shoot(flow.problems.get("double_integrator"), N)
    eq = stability.equilibrium(sh)
    lin = stability.linearize(sh, eq)
    bound = stability.euler_bound(stability.spectrum(lin))
    U0 = jnp.zeros((N, 1))
    return sh, eq, lin, bound, U0, stability.start_spectrum(lin, U0)


def test_the_spectral_measure_is_the_dense_one(transfer):
    """The excited eigenvalues and their weights equal numpy's eigendecomposition of
    M^-1/2 H M^-1/2 and the projections of M^1/2 (U0 - U*) on its eigenvectors (to
    1e-10 relative); Lanczos stops after 2 products, its space invariant."""
    sh, eq, _, _, U0, start = transfer
    h = np.asarray(sh.steps)
    H = np.asarray(sh.hessian(eq.U))
    mu, Y = np.linalg.eigh(H / np.sqrt(h)[:, None] / np.sqrt(h)[None, :])
    c = Y.T @ (np.sqrt(h) * (np.asarray(U0) - np.asarray(eq.U)).ravel())
    excited = np.abs(c) > 1e-8 * np.abs(c).max()
    assert excited.sum() == 2 and np.sum(np.abs(mu - 1) < 1e-9) == N - 2
    np.testing.assert_allclose(start.excited, mu[excited], rtol=1e-10)
    np.testing.assert_allclose(start.weights, c[excited] ** 2 / np.sum(c**2), rtol=1e-8)
    assert start.exact and start.num_hvp == 2


def test_predicted_iterations_for_the_start_match_the_replays(transfer):
    """At alpha_opt and at the effective step the predicted count is within 10% of
    the replay's (measured: equal, 1586 and 207), with the replay's stopping rule;
    the predicted residual history follows the replay's to 1e-2 relative (measured
    1.5e-3, the equilibrium's own accuracy at the end); the effective step needs
    fewer iterations than alpha_opt; the worst case (881) is not the start's."""
    sh, _, _, bound, U0, start = transfer
    effective, predicted_effective = start.effective_step(bound.alpha_max, TOL)
    assert effective < bound.alpha_max
    counts = {}
    for name, alpha in (("opt", bound.alpha_opt), ("effective", effective)):
        trace = flow.descend(sh, U0, step=alpha, max_steps=20000, tol=TOL)
        n = int(trace.num_steps)
        predicted = start.iterations(alpha, TOL)
        assert abs(predicted - n) <= 0.1 * n, (name, predicted, n)
        history = start.residuals(alpha, n + 1)
        observed = np.asarray(trace.residual)[: n + 1]
        assert np.max(np.abs(history - observed) / observed) <= 1e-2
        counts[name] = n
    assert counts["effective"] < counts["opt"] / 5
    assert bound.iterations_opt == 881 and counts["opt"] == 1586
    assert start.rate(bound.alpha_opt) == pytest.approx(bound.rho_opt, rel=1e-9)


def test_the_report_states_the_start_prediction_and_the_effective_rule(transfer):
    """`analyze(step="effective")` replays the effective step; the report gives the
    start's prediction with its rule beside the worst case, and the verdict the two
    counts; `to_dict()` carries them."""
    sh = transfer[0]
    report = stability.analyze(sh, step="effective", tol=TOL)
    p = report.start_prediction
    assert report.step_rule == "effective" and report.step == pytest.approx(p["effective_step"])
    n = int(report.replay.num_steps)
    assert report.replay.status == "converged" and abs(p["iterations_at_step"] - n) <= 0.1 * n
    assert p["rule"] == "the first iteration whose hamiltonian residual is <= 1e-09"
    assert f"in {n} steps ({p['iterations_at_step']} predicted for this start)" in report.verdict
    record = report.to_dict()["start"]
    assert record["exact"] and len(record["excited"]) == 2
    assert record["iterations_at_effective"] == p["iterations_at_effective"]
    assert "this start excites mu" in report.summary()


def test_a_nonlinear_start_and_the_errors():
    """On scalar_regularized from U = 0 (48 excited modes, a quadrature: not exact)
    the prediction at alpha_opt is within 10% of the replay (measured: 11 and 11);
    a start at U* has an empty measure; a Newton linearization is refused."""
    sh = flow.shoot(flow.problems.get("scalar_regularized"), 100)
    eq = stability.equilibrium(sh)
    lin = stability.linearize(sh, eq)
    bound = stability.euler_bound(stability.spectrum(lin))
    start = stability.start_spectrum(lin, jnp.zeros((100, 1)))
    trace = flow.descend(sh, jnp.zeros((100, 1)), step=bound.alpha_opt, tol=1e-8)
    n = int(trace.num_steps)
    assert abs(start.iterations(bound.alpha_opt, 1e-8) - n) <= max(1, 0.1 * n)
    assert stability.start_spectrum(lin, eq.U).excited.size == 0
    with pytest.raises(ValueError, match="`linearization`: the start's spectral measure"):
        stability.start_spectrum(stability.linearize(sh, eq, metric="newton"), eq.U)
    with pytest.raises(ValueError, match="`step`='effective' needs"):
        stability.analyze(sh, metric="newton", step="effective")
