"""Theorem 5.14 tolerances and the mesh study."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _closed_forms import scalar_euler_optimum, scalar_euler_rayleigh

import flow
import stability
from flow import problems


EPS = np.finfo(np.float64).eps


def test_theorem_5_14_mapping_on_a_graded_grid():
    grid = np.array([0.0, 0.1, 0.15, 0.4, 1.0])  # min h = 0.05 (0.15 - 0.1, rounded)
    # one subtraction and one division or product: 2 eps (abs=0: pytest.approx's default
    # abs=1e-12 would be 5e-6 of these values)
    h_min = np.min(np.diff(grid))
    assert float(stability.hamiltonian_tolerance(1e-8, grid)) == pytest.approx(
        1e-8 / h_min, rel=2 * EPS, abs=0
    )
    assert float(stability.gradient_tolerance(1e-6, grid)) == pytest.approx(
        1e-6 * h_min, rel=2 * EPS, abs=0
    )
    # and the closed forms 2e-7, 5e-8: h_min is 0.05 to 2 eps / 0.05 relative
    assert float(stability.hamiltonian_tolerance(1e-8, grid)) == pytest.approx(
        2e-7, rel=50 * EPS, abs=0
    )
    assert float(stability.gradient_tolerance(1e-6, grid)) == pytest.approx(
        5e-8, rel=50 * EPS, abs=0
    )
    eps = jnp.array([1e-8, 1e-6, 1e-4])
    back = stability.gradient_tolerance(stability.hamiltonian_tolerance(eps, grid), grid)
    np.testing.assert_allclose(np.asarray(back), np.asarray(eps), rtol=1e-15)
    # jit and vmap in eps
    f = jax.jit(jax.vmap(lambda e: stability.hamiltonian_tolerance(e, grid)))
    np.testing.assert_allclose(np.asarray(f(eps)), np.asarray(eps) / 0.05, rtol=1e-15)
    assert stability.hamiltonian_tolerance(1e-8, grid).dtype == jnp.float64


def test_theorem_5_14_holds_at_an_equilibrium():
    """Stopping at |grad|_inf <= eps guarantees max|dH/du| <= eps / min h (Lemma 2
    with costates computed independently), and gradient_tolerance(eps_H) gives eps_H."""
    sh = flow.shoot(problems.van_der_pol(), 200)
    eps = 1e-7
    eq = stability.equilibrium(sh, tol=eps, stop_on="gradient", max_steps=200)
    assert eq.gradient_norm <= eps
    assert eq.hamiltonian_residual <= float(stability.hamiltonian_tolerance(eps, sh)) * (1 + 1e-12)
    eps_H = 1e-6
    eq2 = stability.equilibrium(
        sh, tol=float(stability.gradient_tolerance(eps_H, sh)), stop_on="gradient"
    )
    assert eq2.hamiltonian_residual <= eps_H * (1 + 1e-12)


@pytest.mark.parametrize(
    "eps, grid, exc, words",
    [
        (-1.0, np.linspace(0, 1, 5), ValueError, "`eps`"),
        (1e-8, np.array([0.0, 1.0, 0.5]), ValueError, "strictly increasing"),
        (1e-8, np.zeros((2, 2)), ValueError, "1-D"),
        (1e-8, np.arange(3), TypeError, "float64"),
    ],
)
def test_bad_tolerance_arguments(eps, grid, exc, words):
    with pytest.raises(exc, match=words):
        stability.hamiltonian_tolerance(eps, grid)


NS = [100, 200, 400, 800, 1600, 3200]


@pytest.fixture(scope="module")
def studies():
    """Both metrics on one problem object, so the kernels compile once per N. The
    equilibria stop on |grad E^N|_inf <= tol (the old default, checked below)."""
    problem = problems.scalar_regularized()
    return {
        name: stability.mesh_study(
            problem, NS, metric=name, equilibrium_options={"stop_on": "gradient"}
        )
        for name in ("identity", "hamiltonian")
    }


def test_identity_metric_alpha_max_grows_linearly(studies):
    """The issue's "must show": within 10% of linear over N = 100 ... 3200."""
    ms = studies["identity"]
    ratio = (ms.alpha_max / ms.N) / (ms.alpha_max[0] / ms.N[0])
    assert np.all(np.abs(ratio - 1) <= 0.10)  # measured: within 0.2%
    assert ms.exponent("alpha_max") == pytest.approx(1.0, abs=0.02)
    assert all(s == "asymptotically stable" for s in ms.kind)
    assert np.all(ms.gradient_norm <= 1e-10)
    # h * alpha_max is the Hamiltonian-metric bound (eq. (56)): the same equilibria (the
    # metric enters after them), so the same Hessian scaled by h; each stiff end is a
    # converged Lanczos eigenvalue (within 1e-10 |mu| + 100 eps |J|), and the steps differ
    # from h_min by <= 2 N eps relatively: rtol = 2e-10 + 2 N eps + 200 N eps
    hm = studies["hamiltonian"]
    np.testing.assert_array_equal(ms.gradient_norm, hm.gradient_norm)
    rtol = 2e-10 + 202 * np.max(ms.N) * EPS
    np.testing.assert_allclose(ms.alpha_max * ms.h_min, hm.alpha_max, rtol=rtol, atol=0)


def test_hamiltonian_metric_alpha_max_converges(studies):
    """The issue's "must show": less than 2% change between N = 800 and 3200."""
    ms = studies["hamiltonian"]
    a = dict(zip(ms.N.tolist(), ms.alpha_max, strict=True))
    assert abs(a[3200] / a[800] - 1) < 0.02  # measured 1.6e-4
    assert abs(ms.exponent("alpha_max")) < 0.01
    # the ends against the numpy Hessian at the numpy optimum (Newton), for the three
    # smallest N (dense, _closed_forms.scalar_euler_derivatives)
    for i, N in enumerate(NS[:3]):
        _check_ends_against_numpy(ms, i, N)
    # the predicted iteration count at alpha_opt is mesh-independent too
    assert len(set(ms.iterations_opt.tolist())) == 1
    d = ms.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["alpha_max_exponent"] == ms.exponent()  # the same computation
    assert "alpha_max ~ N^" in repr(ms) and "3200" in ms.table()


def _check_ends_against_numpy(ms, i, N):
    """Row i of a Hamiltonian-metric study of scalar_regularized (rho = 1) against the
    eigenvalues of Hess E^N / h at the numpy optimum U*.

    The stiff end is a converged Lanczos eigenvalue (residual <= 1e-10 |mu| + 100 eps
    |J|, so an eigenvalue lies within that). The package's equilibrium is U* + dU with
    |dU|_2 <= sqrt(N) |grad|_inf / lambda_min(Hess), which moves the top eigenvalue by
    <= |grad_U lambda|_2 |dU|_2 (first order); grad_U lambda = grad_U (v^T Hess v) / h at
    the top eigenvector v, by central differences of the O(N) numpy recursion
    (`scalar_euler_rayleigh`, step 1e-6: relative error ~1e-6, so a factor 2 covers
    it and the second-order term). The grid's steps differ from 1/N by 2 N eps.

    The slow end lies in the cluster at the control weight, which Lanczos accepts
    without resolving single eigenvalues (slow_status "cluster"): a Ritz value is never
    below lambda_min (interlacing), and the cluster's bottom is within 1e-6 of it (the
    residual of the unresolved Ritz values there is ~2e-7, the numpy eigenvalues show
    the cluster's lowest members within 2e-7 of lambda_min at N = 100).
    """
    grid = np.linspace(0.0, 1.0, N + 1)
    h = np.diff(grid)
    U, g, H = scalar_euler_optimum(grid)
    assert np.max(np.abs(g)) < 1e-16  # the reference optimum, to rounding
    lam, V = np.linalg.eigh(H / h[0])
    lo, hi = lam[0], lam[-1]
    v = V[:, -1]
    d = 1e-6
    E = d * np.eye(N)
    dq = (scalar_euler_rayleigh(U + E, v, grid) - scalar_euler_rayleigh(U - E, v, grid)) / (2 * d)
    dU = np.sqrt(N) * ms.gradient_norm[i] / (h[0] * lo)
    rel = 1e-10 + 100 * N * EPS + 2 * np.linalg.norm(dq / h[0]) * dU / hi + 2 * N * EPS
    assert rel < 2e-10
    assert -ms.stiff[i] == pytest.approx(hi, rel=rel, abs=0)
    assert ms.alpha_max[i] == pytest.approx(2 / hi, rel=rel, abs=0)
    assert lo * (1 - 10 * N * EPS) <= -ms.slow[i] <= lo + 1e-6
    assert lo >= 1.0 - 10 * N * EPS  # the control weight bounds the spectrum below


def test_mesh_study_accepts_factories_and_reports_bad_input():
    calls = []

    def factory(N):
        calls.append(N)
        return flow.shoot(problems.scalar_regularized(rho=2.0), N, flow.Heun())

    ms = stability.mesh_study(factory, [30], metric=lambda sh: flow.metrics.Hamiltonian())
    assert calls == [30] and ms.scheme == "heun" and ms.metric == "hamiltonian"
    np.testing.assert_allclose(ms.slow, -2.0, rtol=1e-3)  # the control weight rho
    with pytest.raises(ValueError, match="returned a Shooting with N = 30"):
        stability.mesh_study(lambda N: factory(30), [31])
    with pytest.raises(TypeError, match="Ns"):  # the annotation, Sequence[int]
        stability.mesh_study("scalar_regularized", [1.5])
    with pytest.raises(ValueError, match="`Ns`"):
        stability.mesh_study("scalar_regularized", [0])
    with pytest.raises(ValueError, match="`start`"):
        stability.mesh_study("scalar_regularized", [10], start="ones")
