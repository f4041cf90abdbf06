"""flow.descend: the discrete algorithm (37), its step rules, statuses and divergence."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import lq_euler_quadratic

import flow
from flow import metrics, problems


EPS = np.finfo(np.float64).eps

LQ = dict(
    A=[[0.0, 1.0], [-2.0, -0.3]],
    B=[[0.0], [1.0]],
    Q=[[1.0, 0.0], [0.0, 0.5]],
    R=[[0.7]],
    S=[[2.0, 0.0], [0.0, 1.0]],
    x0=[1.0, -0.5],
    T=1.5,
)


def lq_setup(N=30):
    sh = flow.shoot(problems.linear_quadratic(**LQ), N)
    H, b, c = lq_euler_quadratic(**LQ, N=N)
    return sh, H, b


def test_quadratic_assembly_is_the_cost(rng):
    sh, H, b = lq_setup()
    _, _, c = lq_euler_quadratic(**LQ, N=30)
    U = rng.normal(size=30)
    np.testing.assert_allclose(
        sh.cost(jnp.asarray(U[:, None])), 0.5 * U @ H @ U + b @ U + c, rtol=1e-13
    )


@pytest.mark.parametrize(
    "metric", [metrics.Identity(), metrics.Hamiltonian()], ids=lambda m: m.name
)
def test_constant_step_equals_diffrax_euler(metric, rng):
    """descend with a constant alpha is forward Euler on the flow (50), to rounding."""
    sh = flow.shoot(problems.van_der_pol(), 40)
    U0 = jnp.asarray(0.1 * rng.normal(size=sh.control_shape))
    alpha = 0.01 if metric.name == "identity" else 0.0005
    K = 25
    tr = flow.descend(sh, U0, metric=metric, step=alpha, max_steps=K, save_iterates=True)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(flow.vector_field(sh, metric)),
        diffrax.Euler(),
        t0=0.0,
        t1=K * alpha,
        dt0=alpha,
        y0=U0,
        saveat=diffrax.SaveAt(steps=True),
        max_steps=K + 1,
    )
    ys = np.asarray(sol.ys)[: K - 1]  # diffrax's last step may be clipped to t1
    np.testing.assert_allclose(np.asarray(tr.iterates)[1:K], ys, rtol=1e-12, atol=1e-14)
    assert tr.status == "completed" and int(tr.num_steps) == K


def test_linear_rate_and_divergence_iteration_on_lq():
    """On a quadratic, g_i = (I - alpha H)^i g_0 exactly: from the top eigenvector the
    gradient grows by rho = |1 - alpha mu_max| per step; divergence is reported at the
    first i with rho^i > divergence_factor (numpy eigenvectors, independent)."""
    sh, H, b = lq_setup()
    mu, V = np.linalg.eigh(H)
    alpha_max = 2.0 / mu[-1]
    U_star = -np.linalg.solve(H, b)
    U0 = jnp.asarray((U_star + 1e-3 * V[:, -1])[:, None])
    alpha = 1.05 * alpha_max
    rho = abs(1 - alpha * mu[-1])
    factor = 1e4
    tr = flow.descend(
        sh,
        U0,
        metric=metrics.Identity(),
        step=alpha,
        max_steps=2000,
        divergence_factor=factor,
        throw=False,
    )
    assert tr.result == flow.RESULTS.diverged
    expected = int(np.floor(np.log(factor) / np.log(rho))) + 1
    assert int(tr.diverged_at) == expected
    assert np.all(np.isfinite(np.asarray(tr.cost)))  # nothing silent: finite records
    with pytest.raises(flow.DivergenceError, match=f"iteration {expected}"):
        flow.descend(
            sh, U0, metric=metrics.Identity(), step=alpha, max_steps=2000, divergence_factor=factor
        )


def test_gradient_history_and_step_count_on_lq_in_closed_form(rng):
    """Just inside the bound (alpha = 0.9 alpha_max) from a generic start: the package's
    |g_i|_inf against the closed form |(I - alpha H)^i (H U0 + b)|_inf (numpy), and the
    number of steps to |g|_inf <= tol against the first i where the closed form gets
    there."""
    sh, H, b = lq_setup()
    N = H.shape[0]
    alpha = 0.9 * 2.0 / np.linalg.eigvalsh(H)[-1]
    U0 = -np.linalg.solve(H, b) + rng.normal(size=N)
    K = 120
    g = H @ U0 + b
    G = [np.max(np.abs(g))]
    for _ in range(K):
        g = g - alpha * (H @ g)
        G.append(np.max(np.abs(g)))
    G = np.asarray(G)
    tr = flow.descend(
        sh,
        jnp.asarray(U0[:, None]),
        metric=metrics.Identity(),
        step=alpha,
        max_steps=K,
        stop_on="gradient",
        throw=False,
    )
    assert tr.status == "completed" and int(tr.num_steps) == K
    # rounding: each step rounds U_i at eps |U| and the error map I - alpha H is a
    # contraction here (spectral radius 0.8), so the iterate's error after i steps is
    # <= i eps |U|; the gradient adds the rounding of its N-term sums, N eps (|H||U| + |b|)
    i = np.arange(K + 1)
    scale = np.max(np.abs(H)) * np.max(np.abs(U0)) * N + np.max(np.abs(b))
    err = np.abs(np.asarray(tr.gradient_norm) - G)
    assert np.all(err <= (i + N) * EPS * scale), np.max(err / ((i + N) * EPS * scale))
    assert G[-1] < 1e-3 * G[0]  # (the comparison spans a real decay)
    # the step count: tol between two closed-form values, far from both (relative to the
    # rounding bound above), so the first i with |g_i| <= tol is unambiguous
    tol = np.sqrt(G[40] * G[41])
    assert np.all(np.abs(G - tol) > (i + N) * EPS * scale)
    expected = int(np.argmax(G <= tol))
    tr = flow.descend(
        sh,
        jnp.asarray(U0[:, None]),
        metric=metrics.Identity(),
        step=alpha,
        max_steps=K,
        stop_on="gradient",
        tol=tol,
    )
    assert tr.status == "converged" and int(tr.num_steps) == expected


def test_diverged_at_in_closed_form_on_a_scalar_quadratic():
    """E^N(U) = rho h |U|^2 / 2 (x' = u, no endpoint cost): grad = rho h U, so constant-step
    descent gives g_k = (1 - alpha rho h)^k g_0 exactly. With alpha rho h = 2.5 the
    gradient grows by 1.5 per step, and divergence is declared at the first k with
    |g_k|_inf > factor |g_0|_inf, i.e. 1.5^k > factor: k = 18 for factor 1200
    (1.5^17 = 985.3, 1.5^18 = 1477.9: 18% and 23% from 1200, far beyond rounding)."""
    rho, N = 1.0, 10
    p = flow.OptimalControlProblem(
        lambda x, u: u,
        lambda x: 0.0 * x[0],
        x0=[0.0],
        t0=0.0,
        tf=1.0,
        running_cost=lambda x, u: 0.5 * rho * jnp.sum(u**2),
        control_dim=1,
    )
    sh = flow.shoot(p, N)
    h = 1.0 / N
    alpha = 2.5 / (rho * h)
    factor = 1200.0
    k = np.arange(40)
    expected = int(np.argmax(1.5**k > factor))
    assert expected == 18 and 1.5 ** (expected - 1) < 0.9 * factor < 1.1 * factor < 1.5**expected
    U0 = jnp.asarray(np.linspace(0.5, 1.0, N)[:, None])
    tr = flow.descend(
        sh,
        U0,
        metric=metrics.Identity(),
        step=alpha,
        max_steps=100,
        divergence_factor=factor,
        throw=False,
    )
    assert tr.result == flow.RESULTS.diverged and tr.status == "diverged"
    assert int(tr.diverged_at) == expected and int(tr.num_steps) == expected
    # the history up to there, in closed form with the grid's own steps h_k (they differ
    # from 1/N by rounding, which 1.5^k would amplify): u_{k,i} = (1 - alpha rho h_k)^i
    # u_{k,0}; i steps of rounding at a few eps each
    hk = np.diff(np.asarray(sh.grid))
    powers = (1 - alpha * rho * hk)[None, :] ** np.arange(expected + 1)[:, None]
    Us = powers * np.asarray(U0)[:, 0]
    gn = np.max(np.abs(rho * hk * Us), axis=1)
    rtol = 4 * (expected + 1) * EPS
    np.testing.assert_allclose(np.asarray(tr.gradient_norm)[: expected + 1], gn, rtol=rtol)
    np.testing.assert_allclose(np.asarray(tr.U)[:, 0], Us[-1], rtol=rtol)
    with pytest.raises(flow.DivergenceError, match=f"iteration {expected}"):
        flow.descend(
            sh, U0, metric=metrics.Identity(), step=alpha, max_steps=100, divergence_factor=factor
        )
    # one step fewer than needed: no divergence yet
    tr = flow.descend(
        sh,
        U0,
        metric=metrics.Identity(),
        step=alpha,
        max_steps=expected - 1,
        divergence_factor=factor,
        throw=False,
    )
    assert tr.status == "completed" and int(tr.diverged_at) == -1


def test_vmap_over_steps_across_the_boundary():
    sh, H, _ = lq_setup()
    alpha_max = 2.0 / np.linalg.eigvalsh(H)[-1]
    alphas = jnp.asarray([0.5, 0.97, 1.03, 1.5]) * alpha_max

    def run(a):
        return flow.descend(
            sh, sh.zeros(), metric=metrics.Identity(), step=a, max_steps=3000, tol=1e-9, throw=False
        )

    traces = jax.vmap(run)(alphas)
    results = [
        flow.RESULTS.converged,
        flow.RESULTS.converged,
        flow.RESULTS.diverged,
        flow.RESULTS.diverged,
    ]
    for i, expected in enumerate(results):
        assert bool(traces.result._value[i] == expected._value), i
    with pytest.raises(ValueError, match="throw=False"):
        jax.vmap(
            lambda a: flow.descend(sh, sh.zeros(), metric=metrics.Identity(), step=a, max_steps=5)
        )(alphas)


def test_no_recompilation_for_a_new_step(rng):
    traces = []

    def f(x, u):
        traces.append(1)
        return -x + u

    p = flow.OptimalControlProblem(f, lambda x: jnp.sum(x**2), [1.0], 0.0, 1.0, control_dim=1)
    sh = flow.shoot(p, 20)
    flow.descend(
        sh, sh.zeros(), metric=metrics.Identity(), step=0.1, max_steps=5, tol=1e-3, throw=False
    )
    n = len(traces)
    flow.descend(
        sh, sh.zeros(), metric=metrics.Identity(), step=0.2, max_steps=5, tol=1e-4, throw=False
    )
    assert len(traces) == n


def test_mesh_independence_hamiltonian_metric():
    """Hamiltonian metric, fixed step: iterations to max|dH/du| <= 1e-8 converge as N
    grows (N = 1000 and 10^4 within 5%)."""
    its = []
    for N in (1000, 10_000):
        sh = flow.shoot(problems.scalar_regularized(), N)
        tr = flow.descend(
            sh, sh.zeros(), metric=metrics.Hamiltonian(), step=0.5, max_steps=1000, tol=1e-8
        )
        its.append(int(tr.num_steps))
    assert abs(its[1] - its[0]) <= 0.05 * its[0], its


def test_hamiltonian_step_equals_hamiltonian_metric():
    """alpha = c/h with the identity metric is the Hamiltonian metric with step c."""
    sh = flow.shoot(problems.scalar_regularized(), 100)
    a = flow.descend(
        sh,
        sh.zeros(),
        metric=metrics.Identity(),
        step=flow.HamiltonianStep(0.5),
        max_steps=15,
        save_iterates=True,
    )
    b = flow.descend(
        sh, sh.zeros(), metric=metrics.Hamiltonian(), step=0.5, max_steps=15, save_iterates=True
    )
    np.testing.assert_allclose(a.iterates, b.iterates, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(a.step, 0.5 * 100, rtol=1e-13)


def _iterations_identity(N):
    sh = flow.shoot(problems.scalar_regularized(), N)
    tr = flow.descend(
        sh,
        sh.zeros(),
        metric=metrics.Identity(),
        step=1.0,
        max_steps=400 * N,
        tol=1e-8,
        save_iterates=False,
    )
    return int(tr.num_steps)


def test_identity_metric_iterations_grow_like_N():
    Ns = np.array([100, 200, 400, 800])
    its = np.array([_iterations_identity(int(N)) for N in Ns])
    slope = np.polyfit(np.log(Ns), np.log(its), 1)[0]
    assert 0.8 <= slope <= 1.2, (its, slope)


@pytest.mark.slow
def test_identity_metric_iterations_grow_like_N_large():
    Ns = np.array([1000, 3000, 10_000])
    its = np.array([_iterations_identity(int(N)) for N in Ns])
    slope = np.polyfit(np.log(Ns), np.log(its), 1)[0]
    assert 0.8 <= slope <= 1.2, (its, slope)


def test_newton_on_an_indefinite_start_never_ascends():
    """van_der_pol at U = 0: the Hessian is indefinite (checked with numpy). Newton-CG
    with Armijo backtracking reports its negative-curvature steps and decreases the
    cost monotonically to the optimum."""
    sh = flow.shoot(problems.van_der_pol(), 100)
    U0 = sh.zeros()
    assert np.linalg.eigvalsh(np.asarray(sh.hessian(U0)))[0] < 0
    tr = flow.descend(sh, U0, metric=metrics.Newton(), step="armijo", max_steps=100, tol=1e-8)
    n = int(tr.num_steps)
    assert np.all(np.diff(np.asarray(tr.cost[: n + 1])) <= 0)
    assert int(tr.num_fallback_steps) >= 1
    # and the metric itself returns a descent direction with ok=False there
    G = sh.gradient(U0)
    solve = metrics.Newton().solve(sh, U0, G)
    D, ok = solve.direction, solve.ok
    assert not bool(ok) and float(jnp.vdot(G, D)) > 0


def test_newton_direction_matches_dense_solve(rng):
    sh = flow.shoot(problems.scalar_regularized(), 60)
    U = jnp.asarray(0.3 * rng.normal(size=sh.control_shape))
    G = sh.gradient(U)
    solve = metrics.Newton().solve(sh, U, G)
    D, ok = solve.direction, solve.ok
    H = np.asarray(sh.hessian(U))
    assert bool(ok)
    np.testing.assert_allclose(
        np.asarray(D).ravel(), np.linalg.solve(H, np.asarray(G).ravel()), rtol=1e-8, atol=1e-14
    )


@pytest.mark.parametrize("step", ["armijo", "lbfgs"])
@pytest.mark.parametrize(
    "metric", [metrics.Identity(), metrics.Hamiltonian()], ids=lambda m: m.name
)
def test_line_search_rules_converge_monotonically(step, metric):
    sh = flow.shoot(problems.unicycle(), 40)
    tol = 1e-5  # above the line search's rounding floor
    tr = flow.descend(sh, sh.zeros(), metric=metric, step=step, max_steps=3000, tol=tol)
    n = int(tr.num_steps)
    assert np.all(np.diff(np.asarray(tr.cost[: n + 1])) <= 1e-15)
    assert float(tr.hamiltonian_norm[n]) <= tol


def test_lbfgs_hamiltonian_metric_beats_gradient():
    sh = flow.shoot(problems.scalar_regularized(), 400)
    a = flow.descend(
        sh, sh.zeros(), metric=metrics.Hamiltonian(), step="lbfgs", max_steps=200, tol=1e-8
    )
    b = flow.descend(
        sh, sh.zeros(), metric=metrics.Hamiltonian(), step=0.5, max_steps=200, tol=1e-8
    )
    assert int(a.num_steps) < int(b.num_steps)


def test_trace_contents_and_status():
    sh = flow.shoot(problems.scalar_regularized(), 50)
    tr = flow.descend(
        sh,
        sh.zeros(),
        metric=metrics.Hamiltonian(),
        step=0.5,
        max_steps=100,
        tol=1e-9,
        save_iterates=True,
    )
    n = int(tr.num_steps)
    assert tr.success and tr.status == "converged"
    h = 1 / 50
    np.testing.assert_allclose(tr.hamiltonian_norm, tr.gradient_norm / h, rtol=1e-12)
    np.testing.assert_allclose(tr.cost[n], sh.cost(tr.U), rtol=1e-14)
    np.testing.assert_allclose(tr.iterates[n], tr.U)
    np.testing.assert_allclose(tr.taus[: n + 1], 0.5 * np.arange(n + 1), rtol=1e-14)
    d = tr.to_dict()
    assert d["num_steps"] == n and len(d["cost"]) == n + 1
    assert "converged" in repr(tr)
    with pytest.raises(flow.ConvergenceError, match="before the tolerance"):
        flow.descend(sh, sh.zeros(), metric=metrics.Hamiltonian(), step=0.5, max_steps=3, tol=1e-9)
    tr = flow.descend(
        sh, sh.zeros(), metric=metrics.Hamiltonian(), step=0.5, max_steps=3, tol=1e-9, throw=False
    )
    assert tr.result == flow.RESULTS.max_steps and not tr.success


def test_iterates_are_opt_in_and_bounded():
    sh = flow.shoot(problems.scalar_regularized(), 1000)
    tr = flow.descend(sh, sh.zeros(), metric=metrics.Hamiltonian(), step=0.5, max_steps=20)
    assert tr.iterates is None
    with pytest.raises(ValueError, match="save_iterates"):
        flow.descend(
            sh,
            sh.zeros(),
            metric=metrics.Hamiltonian(),
            step=0.5,
            max_steps=200_000,
            save_iterates=True,
        )


def test_last_finite_iterate_is_returned():
    sh = flow.shoot(problems.scalar_regularized(), 200)
    tr = flow.descend(
        sh,
        sh.zeros(),
        metric=metrics.Hamiltonian(),
        step=2.5,
        max_steps=500,
        throw=False,
        save_iterates=True,
    )
    i = int(tr.diverged_at)
    assert tr.result == flow.RESULTS.diverged and not np.isfinite(float(tr.cost[i]))
    assert np.all(np.isfinite(np.asarray(tr.U)))
    np.testing.assert_array_equal(tr.U, tr.iterates[i - 1])


@pytest.mark.parametrize(
    "kw, exc, words",
    [
        (dict(step=-1.0), ValueError, "`alpha`"),
        (dict(step=float("nan")), ValueError, "`alpha`"),
        (dict(step="newton"), ValueError, "`step`"),
        (dict(max_steps=0), ValueError, "`max_steps`"),
        # (under the test suite's runtime type checking the annotation fires first;
        # both messages name the argument)
        (dict(max_steps=2.5), TypeError, "max_steps"),
        (dict(stop_on="cost"), ValueError, "`stop_on`"),
        (dict(tol=-1.0), ValueError, "`tol`"),
        (dict(divergence_factor=0.5), ValueError, "`divergence_factor`"),
    ],
)
def test_bad_descend_arguments(kw, exc, words):
    sh = flow.shoot(problems.scalar_regularized(), 10)
    args = dict(step=0.1, max_steps=5)
    args.update(kw)
    with pytest.raises(exc, match=words):
        flow.descend(sh, sh.zeros(), metric=metrics.Identity(), **args)


def test_bad_start_and_metric():
    sh = flow.shoot(problems.scalar_regularized(), 10)
    with pytest.raises(ValueError, match="`U0`"):
        flow.descend(sh, np.zeros((3, 1)), metric=metrics.Identity(), step=0.1, max_steps=5)
    with pytest.raises(TypeError, match="metric"):
        flow.descend(sh, sh.zeros(), metric=1.0, step=0.1, max_steps=5)
    with pytest.raises(ValueError, match="`metric`"):
        flow.descend(sh, sh.zeros(), metric="euclidean", step=0.1, max_steps=5)
