"""figures/basin.py: section 6.3 redone. Eq. (56) (the direct method at alpha is the
Hamiltonian metric at alpha h, iterate by iterate), the binomial interval against
scipy, and the quick figure's numbers; the full-size numbers (slow) that
docs/figures.md quotes."""

import numpy as np
import pytest
import scipy.stats
from _figure_files import check_files

import flow
from figures import basin as fb
from flow import problems


@pytest.fixture(scope="module")
def quick():
    return fb.compute(fb.N_QUICK, fb.SPREADS_QUICK, fb.STARTS_QUICK)


@pytest.mark.parametrize("N", [16, 20])
def test_direct_at_alpha_is_hamiltonian_at_alpha_h(N):
    # (56): U - alpha grad E^N = U - (alpha h) (grad E^N / h). With T = 2 and N = 16,
    # h = 1/8 is a power of two, so dividing by h and multiplying by alpha h are exact
    # and the iterates agree bit for bit; with N = 20 (h = 0.1) they agree to rounding.
    sh = flow.shoot(problems.unicycle(), N)
    h = float(sh.steps[0])
    # the steps are the grid's differences: exactly 1/8 for N = 16, 0.1 to rounding for 20
    assert np.all(np.asarray(sh.steps) == h) == (N == 16)
    np.testing.assert_allclose(sh.steps, 2.0 / N, rtol=1e-14)
    rng = np.random.default_rng(5)
    U0 = rng.standard_normal(sh.control_shape)
    alpha = 0.3
    runs = [
        flow.descend(sh, U0, metric=metric, step=step, max_steps=1000, tol=1e-8, save_iterates=True)
        for metric, step in (("identity", alpha), ("hamiltonian", alpha * h))
    ]
    a, b = (np.asarray(r.iterates) for r in runs)
    assert runs[0].success and int(runs[0].num_steps) == int(runs[1].num_steps)
    if N == 16:
        assert np.array_equal(a, b)
    else:
        # rounding per step is ~1e-16 |U|, and the iteration contracts, so it does not grow
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13 * np.max(np.abs(a)))
        assert not np.array_equal(a, b)  # genuinely two computations
    # the Hamiltonian metric at the same alpha is a step 1/h = N/2 times longer
    tr = flow.descend(sh, U0, metric="hamiltonian", step=alpha, max_steps=300, throw=False)
    assert tr.status == "diverged"


@pytest.mark.parametrize(
    "k,n", [(0, 16), (1, 16), (7, 16), (16, 16), (0, 128), (53, 128), (128, 128)]
)
def test_wilson_interval_matches_scipy(k, n):
    low, high = fb.wilson_interval(k, n)
    ref = scipy.stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
    assert low == pytest.approx(ref.low, abs=1e-12)
    assert high == pytest.approx(ref.high, abs=1e-12)
    assert low <= k / n <= high


def test_wilson_interval_bad_input():
    with pytest.raises(ValueError, match="k <= n"):
        fb.wilson_interval(5, 4)
    with pytest.raises(ValueError, match="n >= 1"):
        fb.wilson_interval(0, 0)


def test_the_quick_figure_draws(quick, tmp_path):
    # what make(quick=True) writes, from the data the tests here check
    check_files(fb.draw(quick, tmp_path), tmp_path, "basin")


def test_quick_figure_numbers(quick):
    d = quick
    h = d["h"]
    am = d["alpha_max"]
    # the two bounds: the Hamiltonian metric's J is the identity metric's divided by h
    assert am["hamiltonian"] == pytest.approx(h * am["identity"], rel=1e-10)
    assert d["alpha"] == pytest.approx(fb.ALPHA_FRACTION * am["identity"])
    assert d["alpha"] > am["hamiltonian"] and d["alpha"] * h < am["hamiltonian"]
    curves = d["curves"]
    for key, pts in curves.items():
        assert len(pts) == len(fb.SPREADS_QUICK)
        for p in pts:
            assert p["starts"] == fb.STARTS_QUICK
            assert p["fraction"] == p["converged"] / p["starts"]
            assert p["low"] <= p["fraction"] <= p["high"], key
            assert sum(p["outcomes"].values()) == p["starts"]
    # (56): the same region and the same iteration counts
    for p, q in zip(curves["direct"], curves["indirect alpha h"], strict=True):
        assert p["converged"] == q["converged"] and p["median_steps"] == q["median_steps"]
    # the direct method converges from every start; the Hamiltonian metric at alpha,
    # unstable at U*, from none (every start diverges)
    assert all(p["fraction"] == 1.0 for p in curves["direct"])
    assert all(p["outcomes"] == {"diverged": p["starts"]} for p in curves["indirect alpha"])
    # Newton on (36) converges near U*, in far fewer iterations than descent
    newton = curves["newton"]
    assert newton[0]["fraction"] == 1.0
    assert newton[0]["median_steps"] < 0.1 * curves["direct"][0]["median_steps"]


@pytest.mark.slow
def test_basin_figure_numbers():
    # the full-size numbers docs/figures.md quotes (about 25 s on 2 idle cores)
    d = fb.compute()
    c = d["curves"]
    assert all(p["fraction"] == 1.0 for p in c["direct"])
    assert all(p["fraction"] == 0.0 for p in c["indirect alpha"])
    for p, q in zip(c["direct"], c["indirect alpha h"], strict=True):
        assert (p["converged"], p["median_steps"]) == (q["converged"], q["median_steps"])
    newton = [p["fraction"] for p in c["newton"]]
    # Newton's region is local: all near U*, well under half at the largest spread,
    # shrinking beyond the Wilson intervals' overlap between the ends
    assert newton[0] == 1.0 and newton[-1] < 0.5
    assert c["newton"][-1]["high"] < c["newton"][0]["low"]
    assert all(np.diff(newton) <= 0.05)
