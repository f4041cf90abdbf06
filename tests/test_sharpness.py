"""stability.sharpness: the largest eigenvalues of M^-1 Hess E^N along a path, against
numpy.linalg.eigvalsh of the Hessian assembled independently (jax.hessian of the
objective, and finite differences of the costate gradient), by both the dense and the
matrix-free (Lanczos) path; the warm start's saving, measured; bad input; the figure."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _compiles import counted
from _figure_files import check_files

import flow
import stability
from figures import sharpness as fs
from flow import metrics, problems


N = 100
#: a constant step per (problem, metric): the Hamiltonian metric's about 0.85 of
#: 2/mu_max along the path; the identity metric's the same iterates' step alpha / h
#: (eq. (56)); Van der Pol's sharpness grows along its path, so its steps cross the
#: bound there (as a descent near the edge of stability does)
STEPS = {
    ("scalar_regularized", "hamiltonian"): 1.2,
    ("scalar_regularized", "identity"): 1.2 * N,
    ("van_der_pol", "hamiltonian"): 0.05,
    ("van_der_pol", "identity"): 0.05 * N / 10.0,
}
K = 3


def _hessian(sh, U):
    """The Hessian of E^N at U, assembled by jax.hessian of the flattened objective
    (forward-over-reverse on the whole vector, not the library's HVP loop)."""
    return np.asarray(_hessian_kernel(sh, jnp.asarray(U).reshape(-1)))


@eqx.filter_jit
def _hessian_kernel(sh, u):
    return jax.hessian(lambda v: sh.objective(v.reshape(sh.control_shape)))(u)


def _diagonal(sh, metric):
    """d of M = diag(d), row-major order of U.reshape(-1)."""
    h = np.diff(np.asarray(sh.grid))
    if metric == "identity":
        return np.ones(sh.N * sh.control_dim)
    return np.repeat(h, sh.control_dim)


def _reference(H, d, k):
    """The k largest eigenvalues of M^-1/2 H M^-1/2 by numpy, descending."""
    s = 1.0 / np.sqrt(d)
    K_ = s[:, None] * H * s[None, :]
    return np.linalg.eigvalsh(0.5 * (K_ + K_.T))[::-1][:k]


# van_der_pol in the slow run (about 4 s); scalar_regularized, both metrics, by default
@pytest.fixture(
    scope="module",
    params=["scalar_regularized", pytest.param("van_der_pol", marks=pytest.mark.slow)],
)
def problem_shooting(request):
    return request.param, flow.shoot(getattr(problems, request.param)(), N)


def _trace(name, sh, metric, max_steps=12):
    return flow.descend(
        sh,
        flow.probe_control(sh),
        metric=metric,
        step=STEPS[(name, metric)],
        max_steps=max_steps,
        save_iterates=True,
        throw=False,
    )


@pytest.mark.parametrize("metric", ["identity", "hamiltonian"])
def test_matches_dense_eigvalsh_of_the_assembled_hessian(problem_shooting, metric):
    """The issue's "must show" at N = 100: the k = 3 largest eigenvalues along a descent
    path, dense (auto at this size) and matrix-free (forced), equal numpy's eigvalsh of
    M^-1/2 H M^-1/2 with H from jax.hessian, to 1e-8 relative."""
    name, sh = problem_shooting
    trace = _trace(name, sh, metric)
    assert trace.status in ("completed", "oscillating"), trace
    dense = stability.sharpness(trace, metric=metric, k=K, every=4)
    lanczos = stability.sharpness(trace, metric=metric, k=K, every=4, method="lanczos")
    assert dense.method == "dense" and lanczos.method == "lanczos"
    n = int(trace.num_steps)
    assert list(dense.iterations) == [0, 4, 8, 12] == list(lanczos.iterations)
    d = _diagonal(sh, metric)
    iterates = np.asarray(trace.iterates)
    for j, i in enumerate(dense.iterations):
        ref = _reference(_hessian(sh, iterates[i]), d, K)
        for result in (dense, lanczos):
            err = np.max(np.abs(result.top[j] - ref) / np.abs(ref))
            assert err <= 1e-8, (result.method, i, result.top[j], ref)
            assert result.mu_max[j] == result.top[j, 0]
    assert np.all(lanczos.converged) and lanczos.success
    assert np.all(lanczos.residuals <= 1e-10 * np.abs(lanczos.top) + 1e-13 * lanczos.top[:, :1])
    # the path's numbers: steps, taus, 2/alpha and alpha mu_max / 2 (none from the last
    # iterate: no step was taken from it)
    steps = np.asarray(trace.step)
    alpha = STEPS[(name, metric)]
    np.testing.assert_array_equal(dense.step[:-1], steps[dense.iterations[:-1]])
    assert np.all(dense.step[:-1] == alpha) and np.isnan(dense.step[-1]) and n == 12
    np.testing.assert_allclose(dense.taus, alpha * dense.iterations, rtol=1e-14)
    np.testing.assert_allclose(dense.stability_limit[:-1], 2.0 / alpha, rtol=1e-15)
    np.testing.assert_allclose(dense.edge[:-1], alpha * dense.mu_max[:-1] / 2, rtol=1e-15)
    assert np.all(dense.num_hvp == N) and np.all(lanczos.num_hvp < N)


def test_an_independent_hessian_by_finite_differences():
    """The reference itself, checked: central differences of the costate gradient (no
    second-order autodiff) give the same largest eigenvalues to their truncation error."""
    sh = flow.shoot(problems.van_der_pol(), 40)
    U = np.asarray(flow.probe_control(sh)).reshape(-1)
    delta = 1e-5 * max(1.0, float(np.max(np.abs(U))))
    E = np.eye(U.size) * delta
    grad = jax.vmap(lambda u: sh.gradient(u.reshape(sh.control_shape), "costate").reshape(-1))
    H = (np.asarray(grad(jnp.asarray(U + E))) - np.asarray(grad(jnp.asarray(U - E)))) / (2 * delta)
    d = _diagonal(sh, "hamiltonian")
    result = stability.sharpness(
        U.reshape((1,) + sh.control_shape), shooting=sh, metric="hamiltonian", k=K
    )
    ref = _reference(0.5 * (H + H.T), d, K)
    assert np.max(np.abs(result.top[0] - ref) / ref) <= 1e-6


def test_auto_picks_by_size_and_reuses_one_kernel():
    """Dense up to DENSE_SHARPNESS_MAX, Lanczos above; along a path, and for a second
    path of the same shape, the matrix-free product compiles once."""
    assert stability.DENSE_SHARPNESS_MAX == 192
    sh = flow.shoot(problems.scalar_regularized(), 400)
    rng = np.random.default_rng(3)
    paths = [4.0 + 0.1 * rng.standard_normal((5,) + sh.control_shape) for _ in range(2)]
    first = stability.sharpness(paths[0], shooting=sh, metric="hamiltonian")
    assert first.method == "lanczos"
    with counted() as names:
        second = stability.sharpness(paths[1], shooting=sh, metric="hamiltonian")
    assert names == [], names
    assert second.iterations.shape == (5,) and np.all(second.converged)
    small = flow.shoot(problems.scalar_regularized(), 50)
    U = np.zeros((1,) + small.control_shape)
    assert stability.sharpness(U, shooting=small, metric="identity").method == "dense"


def _trace_on(sh, step, max_steps, metric="hamiltonian", U0=None):
    U0 = jnp.full(sh.control_shape, 4.0) if U0 is None else U0
    return flow.descend(
        sh, U0, metric=metric, step=step, max_steps=max_steps, save_iterates=True, throw=False
    )


@pytest.mark.parametrize(
    "name,step,start,k",
    [("van_der_pol", 1e-3, "probe", 1), ("scalar_regularized", 1.2, "four", 2)],
)
def test_warm_start_uses_fewer_products_than_a_cold_start(name, step, start, k):
    """Measured on two stable descent paths at N = 400 (Lanczos): from the previous
    iterate's Ritz vectors, fewer Hessian-vector products per iterate than from random
    vectors, for the same eigenvalues (measured: Van der Pol, k = 1, 6.6 against 7.7
    per iterate after the first; scalar_regularized, k = 2, whose second eigenvalue
    sits at the edge of the cluster at the control weight: 14 against 38)."""
    sh = flow.shoot(getattr(problems, name)(), 400)
    U0 = flow.probe_control(sh) if start == "probe" else jnp.full(sh.control_shape, 4.0)
    trace = _trace_on(sh, step, 20, U0=U0)
    warm = stability.sharpness(trace, metric="hamiltonian", k=k)
    cold = stability.sharpness(trace, metric="hamiltonian", k=k, warm_start=False)
    assert warm.warm_start and not cold.warm_start and warm.method == "lanczos"
    assert 0.5 < warm.max_edge < 1.0  # a step near forward Euler's bound, stable
    np.testing.assert_allclose(warm.top, cold.top, rtol=1e-9)
    assert warm.num_hvp[0] == cold.num_hvp[0]  # the same random start
    assert np.sum(warm.num_hvp[1:]) < np.sum(cold.num_hvp[1:]), (warm.num_hvp, cold.num_hvp)
    assert warm.hvp_after_first <= 30


def test_a_flow_solution_and_plain_iterates():
    """A FlowSolution's saved controls (at its times tau, no step) and an array of
    iterates give the eigenvalues of the same points."""
    import diffrax

    sh = flow.shoot(problems.scalar_regularized(), 30)
    ts = np.array([0.0, 0.5, 1.0, 2.0])
    sol = flow.gradient_flow(
        sh,
        jnp.full(sh.control_shape, 4.0),
        saveat=diffrax.SaveAt(ts=ts),
        tol=None,
        tau1=2.0,
        solver=diffrax.Heun(),
        rtol=1e-6,
        atol=1e-8,
    )
    result = stability.sharpness(sol, shooting=sh, metric="hamiltonian", k=2)
    assert result.source == "flow"
    np.testing.assert_array_equal(result.taus, ts)
    assert np.all(np.isnan(result.step)) and np.all(np.isnan(result.edge))
    assert result.max_edge is None
    d = _diagonal(sh, "hamiltonian")
    Us = np.asarray(sol.Us)
    for j in range(ts.shape[0]):
        ref = _reference(_hessian(sh, Us[j]), d, 2)
        np.testing.assert_allclose(result.top[j], ref, rtol=1e-10)
    plain = stability.sharpness(Us, shooting=sh, metric=metrics.Hamiltonian(), k=2)
    assert plain.source == "iterates" and np.all(np.isnan(plain.taus))
    np.testing.assert_array_equal(plain.top, result.top)
    # a Diagonal metric equal to the Hamiltonian one gives the same numbers
    diag = metrics.Diagonal(np.asarray(sh.steps)[:, None])
    np.testing.assert_allclose(
        stability.sharpness(Us, shooting=sh, metric=diag, k=2).top, plain.top, rtol=1e-14
    )


def test_a_diverged_descent_is_tracked_up_to_its_last_finite_iterate():
    """Past forward Euler's bound the sharpness says so (alpha mu_max / 2 > 1, in the
    message); the non-finite tail of a diverged run is left out, never NaN."""
    sh = flow.shoot(problems.scalar_regularized(), 20)
    trace = _trace_on(sh, 2.0 / 1.44 * 1.5, 200, U0=flow.probe_control(sh))
    assert trace.status == "diverged"
    result = stability.sharpness(trace, metric="hamiltonian")
    assert np.all(np.isfinite(result.mu_max))
    assert result.max_edge > 1.0
    assert "beyond forward Euler's bound" in result.message
    assert result.iterations[-1] <= int(trace.num_steps)


def test_unconverged_lanczos_is_reported():
    sh = flow.shoot(problems.van_der_pol(), 300)
    Us = np.asarray(flow.probe_control(sh))[None]
    result = stability.sharpness(Us, shooting=sh, metric="hamiltonian", k=3, max_steps=3)
    assert result.status == "max_steps" and not result.success
    assert not np.all(result.converged)
    assert "not converged within max_steps = 3" in result.message


def test_record_json_and_repr():
    sh = flow.shoot(problems.scalar_regularized(), 20)
    result = stability.sharpness(_trace_on(sh, 1.2, 5), metric="hamiltonian", every=2, k=2)
    assert list(result.iterations) == [0, 2, 4, 5]
    d = result.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert d["status"] == "completed" and d["metric"] == "hamiltonian"
    assert d["step"][-1] is None and len(d["top"]) == 4 and len(d["top"][0]) == 2
    assert d["max_edge"] == pytest.approx(result.max_edge) and "num_hvp" in text
    r = repr(result)
    assert r.startswith("Sharpness(completed: scalar_regularized, N=20, metric=hamiltonian")
    assert len(r) < 300


def test_bad_input_names_the_argument():
    sh = flow.shoot(problems.scalar_regularized(), 10)
    no_iterates = flow.descend(sh, sh.zeros(), step=1.0, max_steps=2)
    with pytest.raises(ValueError, match=r"`path`.*save_iterates=True"):
        stability.sharpness(no_iterates, metric="hamiltonian")
    trace = _trace_on(sh, 1.0, 2)
    with pytest.raises(ValueError, match="`metric`.*does not record"):
        stability.sharpness(trace)
    for bad in ("newton", metrics.Fixed(np.eye(10))):
        with pytest.raises(ValueError, match="`metric`.*constant diagonal"):
            stability.sharpness(trace, metric=bad)
    with pytest.raises(ValueError, match="`metric` must be one of"):
        stability.sharpness(trace, metric="nope")
    with pytest.raises(ValueError, match="`shooting`.*carries"):
        stability.sharpness(trace, metric="identity", shooting=sh)
    with pytest.raises(TypeError, match="`path` must be"):
        stability.sharpness({"U": 1}, metric="identity")
    Us = np.zeros((3,) + sh.control_shape)
    with pytest.raises(ValueError, match="`shooting`"):
        stability.sharpness(Us, metric="identity")
    with pytest.raises(ValueError, match=r"`path`.*shape"):
        stability.sharpness(np.zeros((3, 11, 1)), shooting=sh, metric="identity")
    with pytest.raises(ValueError, match=r"`path`.*shape"):
        stability.sharpness(np.zeros((11, 1)), shooting=sh, metric="identity")
    with pytest.raises(TypeError, match="`path` must be a float64"):
        stability.sharpness(Us.astype(np.float32), shooting=sh, metric="identity")
    for kwargs, name in (
        ({"every": 0}, "every"),
        ({"k": 0}, "k"),
        ({"k": 11}, "k"),
        ({"tol": -1.0}, "tol"),
        ({"method": "qr"}, "method"),
        ({"max_steps": 0}, "max_steps"),
        ({"max_steps": 2, "k": 3}, "max_steps"),
    ):
        with pytest.raises(ValueError, match=f"`{name}`"):
            stability.sharpness(trace, metric="identity", **kwargs)
    bounded = flow.shoot(problems.van_der_pol(control_bounds=(-0.3, 1.0)), 10)
    with pytest.raises(ValueError, match="`path`.*control bounds"):
        stability.sharpness(
            np.zeros((1,) + bounded.control_shape), shooting=bounded, metric="identity"
        )


# --------------------------------------------------------------------------
# The figure.


def test_plot_sharpness_and_the_figure(tmp_path):
    """plot_sharpness draws one line per result and one shared 2/alpha line; the figure
    script's compute and draw at tiny sizes (figures.sharpness.make(quick=True) runs in
    tests/test_figures.py)."""
    d = fs.compute((10, 20), 4)
    for metric in fs.METRICS:
        runs = d["metrics"][metric]["sharpness"]
        alpha = d["metrics"][metric]["alpha"]
        for r in runs.values():
            assert r.success and np.all(r.step[:-1] == alpha)
    # identity: the sharpness is O(h); Hamiltonian: mesh-independent; so on the uniform
    # grid the steps (0.9 of the bound at N = 10) differ by the factor h = 1/10
    ident, ham = (d["metrics"][m]["sharpness"] for m in ("identity", "hamiltonian"))
    alphas = [d["metrics"][m]["alpha"] for m in ("identity", "hamiltonian")]
    assert alphas[0] * 0.1 == pytest.approx(alphas[1], rel=1e-10)
    assert ident[20].mu_max[-1] == pytest.approx(ident[10].mu_max[-1] / 2, rel=0.05)
    assert ham[20].mu_max[-1] == pytest.approx(ham[10].mu_max[-1], rel=0.02)
    ax = fs.plot_sharpness(list(ham.values()))
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == [
        r"$N = 10$: $\mu_{\max}$",
        r"$N = 20$: $\mu_{\max}$",
        r"$2/\alpha$: forward Euler's limit",
    ]
    with pytest.raises(TypeError, match="`results`"):
        fs.plot_sharpness([1.0])
    check_files(fs.draw(d, tmp_path), tmp_path, "sharpness")


# --------------------------------------------------------------------------
# Heavier cases (slow run).


# covered in the default run at N = 100 by
# test_matches_dense_eigvalsh_of_the_assembled_hessian (both paths) and at N = 400 by
# test_warm_start_uses_fewer_products_than_a_cold_start (the budget)
@pytest.mark.slow
@pytest.mark.parametrize("metric", ["identity", "hamiltonian"])
def test_lanczos_matches_dense_at_N_2000(metric):
    """Matrix-free (auto at this size) against the dense path at N = 2000 on Van der
    Pol, to 1e-8 relative, within 30 products per iterate after the first."""
    sh = flow.shoot(problems.van_der_pol(), 2000)
    step = 0.01 if metric == "hamiltonian" else 0.01 * 2000 / 10.0
    trace = _trace_on(sh, step, 20, metric=metric, U0=flow.probe_control(sh))
    lanczos = stability.sharpness(trace, metric=metric, k=2, every=5)
    dense = stability.sharpness(trace, metric=metric, k=2, every=5, method="dense")
    assert lanczos.method == "lanczos"
    np.testing.assert_allclose(lanczos.top, dense.top, rtol=1e-8)
    assert lanczos.hvp_after_first <= 30
