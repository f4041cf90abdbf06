"""Theorem 5.14 tolerances and the mesh study."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flow
import stability
from flow import problems


def test_theorem_5_14_mapping_on_a_graded_grid():
    grid = np.array([0.0, 0.1, 0.15, 0.4, 1.0])  # min h = 0.05
    assert float(stability.hamiltonian_tolerance(1e-8, grid)) == pytest.approx(2e-7, rel=1e-15)
    assert float(stability.gradient_tolerance(1e-6, grid)) == pytest.approx(5e-8, rel=1e-15)
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
    # h * alpha_max is the Hamiltonian-metric bound (eq. (56))
    np.testing.assert_allclose(ms.alpha_max * ms.h_min, studies["hamiltonian"].alpha_max, rtol=1e-8)


def test_hamiltonian_metric_alpha_max_converges(studies):
    """The issue's "must show": less than 2% change between N = 800 and 3200."""
    ms = studies["hamiltonian"]
    a = dict(zip(ms.N.tolist(), ms.alpha_max, strict=True))
    assert abs(a[3200] / a[800] - 1) < 0.02  # measured 1.6e-4
    assert abs(ms.exponent("alpha_max")) < 0.01
    # eigenvalues of Hess E^N / h at the optimum: [1 (the control weight), ~1.438]
    np.testing.assert_allclose(ms.slow, -1.0, rtol=1e-6)
    np.testing.assert_allclose(ms.stiff, -1.438, rtol=2e-3)
    # the predicted iteration count at alpha_opt is mesh-independent too
    assert len(set(ms.iterations_opt.tolist())) == 1
    d = ms.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["alpha_max_exponent"] == pytest.approx(ms.exponent())
    assert "alpha_max ~ N^" in repr(ms) and "3200" in ms.table()


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
