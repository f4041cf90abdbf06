"""stability.classify and stability.euler_bound against closed forms."""

import json
import math

import numpy as np
import pytest
from _stability_reference import double_well, hill, scalar_mayer_sensitivity

import flow
import stability
from flow import problems


RHO = 0.5


@pytest.fixture(scope="module")
def well():
    return double_well(RHO)


@pytest.mark.parametrize("method, N", [("dense", 64), ("lanczos", 3000)])
def test_double_well_saddle_has_index_one(well, method, N):
    """U = 0: Hessian -h^2 11^T + rho h I, so under the Hamiltonian metric J has the
    eigenvalues 1 - rho = 0.5 (once: unstable) and -rho = -0.5 (N - 1 times)."""
    sh = flow.shoot(well, N)
    eq = stability.equilibrium(sh)  # started exactly at the saddle: 0 iterations
    assert eq.num_steps == 0 and eq.gradient_norm == 0.0
    spec = stability.spectrum(stability.linearize(sh, eq, metric="hamiltonian"), method=method)
    mu = spec.eigenvalues
    assert mu[-1] == pytest.approx(1 - RHO, rel=1e-12)
    np.testing.assert_allclose(mu[spec.converged][:-1], -RHO, rtol=1e-12)
    # the cluster at the control weight, and one isolated eigenvalue beyond it
    assert spec.cluster.position == pytest.approx(-RHO, rel=1e-12)
    assert spec.cluster.count == N - 1 and spec.cluster.exact
    np.testing.assert_allclose(spec.slow_isolated, [1 - RHO], rtol=1e-12)
    cls = stability.classify(spec)
    assert cls.kind == "saddle" and cls.index == 1 and cls.n_unstable == 1
    assert cls.n_stable == N - 1 and cls.n_zero == 0 and cls.certain
    assert "1 unstable direction" in repr(cls)
    bound = stability.euler_bound(spec)
    assert bound.alpha_max is None and bound.alpha_opt is None
    assert "unstable" in bound.description and bound.limiting == pytest.approx(1 - RHO)
    json.dumps(cls.to_dict(), allow_nan=False)
    json.dumps(bound.to_dict(), allow_nan=False)


def test_double_well_minimiser_bounds_in_closed_form(well):
    """At U = sqrt(1 - rho) 1 the Hamiltonian-metric spectrum is {-rho (N - 1 times),
    -(2 - 2 rho)}: alpha_max = 2/(2 - 2 rho), alpha_opt = 2/(rho + 2 - 2 rho),
    rho(alpha_opt) = (2 - 3 rho)/(2 - rho)."""
    N = 64
    sh = flow.shoot(well, N)
    eq = stability.equilibrium(sh, 0.3 * np.ones((N, 1)), tol=1e-14, stop_on="gradient")
    spec = stability.spectrum(stability.linearize(sh, eq, metric="hamiltonian"))
    assert stability.classify(spec).kind == "asymptotically stable"
    b = stability.euler_bound(spec, reduction=1e-6)
    big, small = 2 - 2 * RHO, RHO
    assert b.alpha_max == pytest.approx(2 / big, rel=1e-9)
    assert b.alpha_opt == pytest.approx(2 / (big + small), rel=1e-9)
    assert b.rho_opt == pytest.approx((big - small) / (big + small), rel=1e-8)
    assert b.iterations_opt == math.ceil(math.log(1e-6) / math.log((big - small) / (big + small)))
    assert b.exact and b.n_excluded == 0
    # rho(alpha) = max |1 + alpha mu| over every eigenvalue, by brute force
    for alpha in (0.1, b.alpha_opt, 0.99 * b.alpha_max, 1.5 * b.alpha_max):
        brute = np.max(np.abs(1 + alpha * spec.eigenvalues))
        assert b.rate(alpha) == pytest.approx(brute, rel=1e-12)
    assert b.iterations(1.01 * b.alpha_max) is None  # divergent step
    # identity metric: the same bounds divided by h (eq. (56))
    bi = stability.euler_bound(stability.spectrum(stability.linearize(sh, eq, metric="identity")))
    assert bi.alpha_max == pytest.approx(b.alpha_max / float(sh.steps[0]), rel=1e-9)


@pytest.mark.parametrize("method, N", [("dense", 60), ("lanczos", 3000)])
def test_scalar_mayer_is_marginal_with_a_manifold(method, N):
    """The paper's Mayer problem: at a reachable minimiser Hess E^N = G G^T has rank
    n = 1, so J has N - 1 zero eigenvalues: marginal, not unstable, and the zero
    eigenvalues are excluded from the step bound, which is 2 / |G|^2."""
    sh = flow.shoot(problems.scalar_mayer(), N)
    eq = stability.equilibrium(sh, stop_on="gradient")
    spec = stability.spectrum(stability.linearize(sh, eq, metric="identity"), method=method)
    cls = stability.classify(spec)
    assert cls.kind == "marginal" and cls.certain
    assert cls.manifold_dimension == N - 1 and cls.n_zero == N - 1
    assert cls.n_unstable == 0 and cls.n_stable == 1
    G, x = scalar_mayer_sensitivity(np.asarray(eq.U), np.asarray(sh.grid))
    assert x[-1] == pytest.approx(1.0, abs=1e-8)  # reachable: E^N = 0
    b = stability.euler_bound(spec)
    assert b.n_excluded == N - 1 and "excluded" in repr(b)
    # the nonzero eigenvalue is -|G|^2 (up to the O(x_N - 1) second-order term)
    assert b.stiff == pytest.approx(-(G @ G), rel=1e-6)
    assert b.alpha_max == pytest.approx(2 / (G @ G), rel=1e-6)


def test_a_maximum_is_unstable():
    sh = flow.shoot(hill(), 40)
    spec = stability.spectrum(stability.linearize(sh, sh.zeros(), metric="identity"))
    cls = stability.classify(spec)
    assert cls.kind == "unstable" and cls.n_unstable == 40 and cls.n_stable == 0
    assert stability.euler_bound(spec).alpha_max is None


def _spectrum_with(eigenvalues, **overrides):
    """A complete Spectrum holding the given eigenvalues (to test the formulas)."""
    mu = np.asarray(eigenvalues)
    fields = dict(
        eigenvalues=mu,
        residuals=np.zeros(mu.shape),
        converged=np.ones(mu.shape, dtype=bool),
        method="dense",
        num_hvp=0,
        num_steps=0,
        size=mu.shape[0],
        complete=True,
        symmetric=False,
        norm=float(np.max(np.abs(mu))),
        clusters=(),
        density=None,
        stiff_status="complete",
        slow_status="complete",
        tol=1e-10,
        zero_tol=1e-8,
        description="test",
        problem="test",
        N=mu.shape[0],
        metric="test",
        kind="general",
    )
    fields.update(overrides)
    return stability.Spectrum(**fields)


def test_complex_spectrum_bound():
    """alpha_max = min -2 Re mu / |mu|^2: just below it every |1 + alpha mu| < 1,
    just above it one is > 1; no alpha_opt for a complex spectrum."""
    mu = np.array([-1.0 + 3.0j, -1.0 - 3.0j, -2.0, -0.5 + 0.1j, -0.5 - 0.1j])
    b = stability.euler_bound(_spectrum_with(mu))
    expected = np.min(-2 * mu.real / np.abs(mu) ** 2)
    assert b.alpha_max == pytest.approx(expected, rel=1e-14)
    assert expected == pytest.approx(0.2)  # from -1 +- 3i
    assert np.max(np.abs(1 + 0.999 * expected * mu)) < 1
    assert np.max(np.abs(1 + 1.001 * expected * mu)) > 1
    assert b.alpha_opt is None and b.limiting == pytest.approx(-1 + 3j)
    assert b.rate(0.1) == pytest.approx(np.max(np.abs(1 + 0.1 * mu)), rel=1e-14)
    json.dumps(b.to_dict(), allow_nan=False)


def test_zero_eigenvalues_are_excluded_and_said_so():
    mu = np.array([-4.0, -1.0, 0.0, 1e-12])
    spec = _spectrum_with(mu, symmetric=True, kind="diagonal")
    cls = stability.classify(spec)
    assert cls.kind == "marginal" and cls.manifold_dimension == 2
    b = stability.euler_bound(spec)
    assert b.n_excluded == 2 and "2 zero eigenvalue(s) excluded" in b.description
    assert b.alpha_max == pytest.approx(0.5) and b.alpha_opt == pytest.approx(0.4)
    assert b.rho_opt == pytest.approx(0.6)
    # a looser zero tolerance moves -1 into the kernel
    assert stability.classify(spec, tol=0.5).n_zero == 3


def test_bad_arguments():
    spec = _spectrum_with([-1.0, -2.0])
    with pytest.raises(ValueError, match="`reduction`"):
        stability.euler_bound(spec, reduction=2.0)
    with pytest.raises(TypeError, match="spectrum"):
        stability.euler_bound([-1.0])
    with pytest.raises(TypeError, match="spectrum"):
        stability.classify(np.array([-1.0]))
    with pytest.raises(ValueError, match="`tol`"):
        stability.classify(spec, tol=-1.0)
    with pytest.raises(ValueError, match="`alpha`"):
        stability.euler_bound(spec).rate(-1.0)
