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
EPS = np.finfo(np.float64).eps


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
    assert "unstable" in bound.description
    assert bound.limiting == pytest.approx(1 - RHO, rel=1e-12, abs=0)  # as mu[-1] above
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
    # Hess E^N = (3 s^2 - 1) h^2 11^T + rho h I depends on U only through s = h sum u_k,
    # so the -rho eigenvalues are exact at any U and the big one, 3 s^2 - 1 + rho, moves
    # by 6 s ds. Along s, grad_k = h dE/ds with d2E/ds2 = 2 - 2 rho, so the equilibrium's
    # |ds| <= N |grad|_inf / (2 - 2 rho). Plus the dense eigensolver's rounding, N eps
    # relative (cond = big/small = 2): rel = 10 N eps + 6 s N |grad|_inf / (2 - 2 rho)
    s = np.sqrt(1 - RHO)
    rel = 10 * N * EPS + 6 * s * N * eq.gradient_norm / big
    assert rel < 1e-12
    assert b.alpha_max == pytest.approx(2 / big, rel=rel, abs=0)
    assert b.alpha_opt == pytest.approx(2 / (big + small), rel=rel, abs=0)
    # rho = (k - 1)/(k + 1), k = big/small: relative error 2k/(k^2 - 1) = 4/3 times k's
    assert b.rho_opt == pytest.approx((big - small) / (big + small), rel=3 * rel, abs=0)
    assert b.iterations_opt == math.ceil(math.log(1e-6) / math.log((big - small) / (big + small)))
    assert b.exact and b.n_excluded == 0
    # rho(alpha) = max |1 + alpha mu| over every eigenvalue, by brute force
    for alpha in (0.1, b.alpha_opt, 0.99 * b.alpha_max, 1.5 * b.alpha_max):
        brute = np.max(np.abs(1 + alpha * spec.eigenvalues))
        assert b.rate(alpha) == pytest.approx(brute, rel=1e-12)
    assert b.iterations(1.01 * b.alpha_max) is None  # divergent step
    # identity metric: the same bounds divided by h (eq. (56))
    bi = stability.euler_bound(stability.spectrum(stability.linearize(sh, eq, metric="identity")))
    # the same Hessian, scaled by h exactly: two eigensolver roundings, 2 x 10 N eps
    assert bi.alpha_max == pytest.approx(b.alpha_max / float(sh.steps[0]), rel=20 * N * EPS, abs=0)


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
    # reachable, E^N = 0 up to the equilibrium's tolerance: grad_k = (x_N - 1) G_k, so
    # |x_N - 1| max|G| = |grad|_inf, up to the rounding of x_N (N eps) times max|G|
    gmax = np.max(np.abs(G))
    assert abs(x[-1] - 1) * gmax == pytest.approx(eq.gradient_norm, rel=0, abs=4 * N * EPS * gmax)
    b = stability.euler_bound(spec)
    assert b.n_excluded == N - 1 and "excluded" in repr(b)
    # Hess E^N = G G^T + (x_N - 1) K. Its nonzero eigenvalue to first order in x_N - 1
    # is the Rayleigh quotient at v = G/|G|: |G|^2 + (x_N - 1) v^T K v (numpy, by hand);
    # the second-order term is ((x_N - 1)|K|/|G|^2)^2 |G|^2 ~ 1e-22 |G|^2. So rounding
    # only: the Hessian-vector products sum N terms, 4 N eps relative.
    mu = _mayer_rayleigh_quotient(np.asarray(eq.U), np.asarray(sh.grid))
    assert b.stiff == pytest.approx(-mu, rel=4 * N * EPS, abs=0)
    assert b.alpha_max == pytest.approx(2 / mu, rel=4 * N * EPS, abs=0)


def _mayer_rayleigh_quotient(U, grid):
    """v^T Hess E^N v at v = G/|G| for the scalar Mayer problem (Euler, x0 = 0), by
    hand: the tangent x'_{k+1} = a_k x'_k + h_k v_k and the second derivative
    x''_{k+1} = a_k x''_k - 0.6 h_k x_k x'_k^2 (f = -x + u - 0.1 x^3 is linear in u),
    so v^T Hess v = (G.v)^2 + (x_N - 1) x''_N."""
    G, x = scalar_mayer_sensitivity(U, grid)
    h = np.diff(grid)
    v = G / np.linalg.norm(G)
    xd = xdd = 0.0
    for k in range(h.shape[0]):
        a = 1 + h[k] * (-1 - 0.3 * x[k] ** 2)
        xd, xdd = a * xd + h[k] * v[k], a * xdd - 0.6 * h[k] * x[k] * xd**2
    return (G @ v) ** 2 + (x[-1] - 1) * xdd


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
    # by hand: -2 Re mu / |mu|^2 = 2/10 (-1 +- 3i), 1 (-2), 1/0.26 (-0.5 +- 0.1i)
    assert b.alpha_max == pytest.approx(0.2, rel=4 * EPS, abs=0)
    assert b.alpha_opt is None and b.limiting == -1 + 3j
    # near 0.2 the pair -1 +- 3i sets the rate: |1 + a(-1 + 3i)| = sqrt((1 - a)^2 + 9 a^2),
    # which is 1 exactly at a = 0.2; the others stay below 0.7 there
    for a in (0.999 * 0.2, 1.001 * 0.2):
        assert b.rate(a) == pytest.approx(np.sqrt((1 - a) ** 2 + 9 * a**2), rel=4 * EPS, abs=0)
    assert b.rate(0.999 * 0.2) < 1 < b.rate(1.001 * 0.2)
    # at a = 0.1: |0.9 + 0.3i| = sqrt(0.9), |0.8|, |0.95 + 0.01i|: the last one
    assert b.rate(0.1) == pytest.approx(np.sqrt(0.95**2 + 0.01**2), rel=4 * EPS, abs=0)
    json.dumps(b.to_dict(), allow_nan=False)


def test_zero_eigenvalues_are_excluded_and_said_so():
    mu = np.array([-4.0, -1.0, 0.0, 1e-12])
    spec = _spectrum_with(mu, symmetric=True, kind="diagonal")
    cls = stability.classify(spec)
    assert cls.kind == "marginal" and cls.manifold_dimension == 2
    b = stability.euler_bound(spec)
    assert b.n_excluded == 2 and "2 zero eigenvalue(s) excluded" in b.description
    # the nonzero ones, -4 and -1: 2/4, 2/(1 + 4), (4 - 1)/(4 + 1); a few roundings
    assert b.alpha_max == pytest.approx(0.5, rel=4 * EPS, abs=0)
    assert b.alpha_opt == pytest.approx(0.4, rel=4 * EPS, abs=0)
    assert b.rho_opt == pytest.approx(0.6, rel=4 * EPS, abs=0)
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
