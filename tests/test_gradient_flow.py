"""flow.gradient_flow: the ODE (50) with diffrax, against closed forms and the descent."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from _jaxprs import largest_intermediate
from _reference import lq_euler_quadratic

import flow
from flow import metrics, problems


LQ = dict(
    A=[[0.0, 1.0], [-2.0, -0.3]],
    B=[[0.0, 0.0], [1.0, 0.4]],
    Q=[[1.0, 0.0], [0.0, 0.5]],
    R=[[0.7, 0.1], [0.1, 1.2]],
    S=[[2.0, 0.0], [0.0, 1.0]],
    x0=[1.0, -0.5],
    T=1.5,
)


@pytest.mark.parametrize(
    "metric", [metrics.Identity(), metrics.Hamiltonian(), metrics.Newton()], ids=lambda m: m.name
)
def test_lq_flow_matches_matrix_exponential(metric, rng):
    """E^N = U^T A U/2 + b^T U + c, so U(tau) = U* + expm(-tau M^-1 A)(U0 - U*); A and b
    assembled in numpy from the LQ matrices (independent of the code under test)."""
    N, m = 20, 2
    sh = flow.shoot(problems.linear_quadratic(**LQ), N)
    A, b, _ = lq_euler_quadratic(**LQ, N=N)
    U_star = -np.linalg.solve(A, b)
    U0 = rng.normal(size=N * m)
    h = LQ["T"] / N
    Minv = {
        "identity": np.eye(N * m),
        "hamiltonian": np.eye(N * m) / h,
        "newton": np.linalg.inv(A),
    }[metric.name]
    taus = np.array([0.0, 0.05, 0.2, 0.6, 1.0]) * (1.0 if metric.name != "identity" else 20.0)
    sol = flow.gradient_flow(
        sh,
        jnp.asarray(U0.reshape(N, m)),
        metric=metric,
        tol=None,
        solver=diffrax.Tsit5(),
        rtol=1e-11,
        atol=1e-13,
        tau1=taus[-1],
        saveat=diffrax.SaveAt(ts=jnp.asarray(taus)),
    )
    assert sol.result == flow.RESULTS.completed
    for tau, U in zip(taus, np.asarray(sol.Us), strict=True):
        exact = U_star + scipy.linalg.expm(-tau * Minv @ A) @ (U0 - U_star)
        np.testing.assert_allclose(U.reshape(-1), exact, rtol=1e-8, atol=1e-8 * np.abs(exact).max())


# 14 s; compare runs by default in test_gaps.py
@pytest.mark.slow
def test_compare_shows_first_order():
    """On a fixed tau window, halving alpha halves the largest distance (within 10%)."""
    sh = flow.shoot(problems.scalar_regularized(), 100)
    U0 = sh.zeros()
    fs = flow.gradient_flow(
        sh,
        U0,
        metric=metrics.Hamiltonian(),
        tol=None,
        solver=diffrax.Tsit5(),
        rtol=1e-12,
        atol=1e-14,
        tau1=3.0,
        saveat=diffrax.SaveAt(t1=True, dense=True),
    )
    dists = []
    for alpha in (0.1, 0.05, 0.025):
        tr = flow.descend(
            sh,
            U0,
            metric=metrics.Hamiltonian(),
            step=alpha,
            max_steps=int(3.0 / alpha),
            save_iterates=True,
        )
        comp = flow.compare(tr, fs, tau_max=3.0)
        assert comp.tau[-1] <= 3.0 + 1e-12
        dists.append(comp.max_distance)
    ratios = np.array(dists[:-1]) / np.array(dists[1:])
    np.testing.assert_allclose(ratios, 2.0, rtol=0.1)
    d = comp.to_dict()
    assert len(d["tau"]) == len(d["distance"])
    np.testing.assert_allclose(comp.flow_cost[0], comp.descent_cost[0], rtol=1e-14)


def test_event_stops_at_the_tolerance():
    sh = flow.shoot(problems.scalar_regularized(), 200)
    sol = flow.gradient_flow(
        sh,
        sh.zeros(),
        metric=metrics.Hamiltonian(),
        solver=diffrax.Tsit5(),
        rtol=1e-8,
        atol=1e-10,
        tol=1e-8,
    )
    assert sol.result == flow.RESULTS.converged and sol.success
    assert sol.hamiltonian_norm[-1] <= 1e-8 < sol.hamiltonian_norm[0]
    g = sh.gradient(sol.U)
    np.testing.assert_allclose(jnp.max(jnp.abs(g)) * 200, sol.hamiltonian_norm[-1], rtol=1e-12)
    sol_g = flow.gradient_flow(
        sh,
        sh.zeros(),
        metric=metrics.Hamiltonian(),
        solver=diffrax.Tsit5(),
        rtol=1e-8,
        atol=1e-10,
        tol=1e-8,
        stop_on="gradient",
    )
    # a gradient tolerance is eps/h on the Hamiltonian: it stops earlier
    assert sol_g.tau_final < sol.tau_final
    assert sol_g.gradient_norm[-1] <= 1e-8
    d = sol.to_dict()
    assert d["status"] == "converged" and d["num_steps"] == int(sol.num_steps)
    assert "converged" in repr(sol)


def _quartic():
    """E = -x^4 with x' = u, x(0) = 1 on [0, 1]: unbounded below.

    Euler with N = 10 (h = 0.1, T = N h = 1): x_N = 1 + h sum_k u_k, E^N = -x_N^4 and
    dE^N/du_k = -4 h x_N^3. From U0 = 1 (x_N(0) = 2) the Hamiltonian flow
    (M = h I) moves every u_k alike, du_k/dtau = 4 x_N^3, so dx_N/dtau = 4 T x_N^3 =
    4 x_N^3: x_N(tau) = 2 / sqrt(1 - 32 tau), a blow-up at tau = 1/32. The invariant
    c = x_N^-2 + 8 tau stays 1/4 along the exact flow.
    """
    return flow.OptimalControlProblem(
        lambda x, u: u, lambda x: -(x[0] ** 4), [1.0], 0.0, 1.0, control_dim=1
    )


#: One instance per module, so that the tests below share compiled kernels.
QUARTIC = flow.shoot(_quartic(), 10)


def test_divergence_at_the_closed_form_blow_up_time():
    """The flow is declared diverged at the end of the first step where the
    Hamiltonian residual r = max_k |dE^N/du_k| / h = 4 x_N^3 exceeds
    divergence_factor r(U0) = 1e6 * 32, i.e. where x_N passes 200: the exact flow
    crosses at tau_c = (1 - (2/200)^2)/32 = (1 - 1e-4)/32, 3.1e-6 before the blow-up.

    Tolerance: the step controller keeps every accepted step's local error below
    atol + rtol |u_k| per component (all u_k are equal here), so x_N = 1 + h sum u_k
    errs by at most atol + rtol x_N per step and the invariant c by
    2 x_N^-3 (atol + rtol x_N) <= (rtol + atol/2)/2 (x_N >= 2): after n steps
    |c - 1/4| <= D = n (rtol + atol/2)/2 (checked below on every saved step). Then
    x_N > 200 at the detection time t_d gives t_d > tau_c - D/8, a finite x_N gives
    t_d < 1/32 + D/8, and x_N <= 200 one step earlier gives t_prev <= tau_c + D/8:
    the detection lies within 1e-4/32 + D/8 (3.1e-6) of 1/32 and the step that
    detects it brackets tau_c.
    """
    sh = QUARTIC
    U0 = jnp.ones(sh.control_shape)
    rtol, atol = 1e-10, 1e-12
    args = dict(
        metric=metrics.Hamiltonian(),
        tol=None,
        solver=diffrax.Tsit5(),
        rtol=rtol,
        atol=atol,
        tau1=10.0,
        max_steps=1000,
    )
    sol = flow.gradient_flow(sh, U0, **args, saveat=diffrax.SaveAt(steps=True), throw=False)
    assert sol.result == flow.RESULTS.diverged and not sol.success
    ok = np.isfinite(np.asarray(sol.tau))
    tau = np.asarray(sol.tau)[ok]
    x = 1.0 + 0.1 * np.asarray(sol.Us)[ok].sum(axis=(1, 2))
    n = int(sol.num_steps)
    D = n * (rtol + atol / 2) / 2
    assert np.max(np.abs(x**-2 + 8 * tau - 0.25)) <= D
    tau_c = (1 - 1e-4) / 32
    t_d, t_prev = float(sol.tau_final), tau[-2]
    assert t_d == tau[-1]
    assert x[-1] > 200 >= x[-2]  # the first saved step past the limit
    assert 4 * x[-1] ** 3 == pytest.approx(float(sol.residual), rel=1e-12)
    assert tau_c - D / 8 < t_d < 1 / 32 + D / 8
    assert t_prev <= tau_c + D / 8
    assert abs(t_d - 1 / 32) <= 1e-4 / 32 + D / 8
    with pytest.raises(flow.DivergenceError, match=r"limit\) near tau = 0\.03124"):
        flow.gradient_flow(sh, U0, **args)


def test_stiff_van_der_pol_hamiltonian_flow_and_newton_flow():
    """van_der_pol, N = 200: Hess E^N/h spans about [2, 4.8e4] at the optimum and is
    indefinite at U = 0. The Hamiltonian-metric flow from U = 0 reaches
    max|dH/du| <= 1e-8 with an implicit solver; the Newton-metric flow from a nearby
    start reaches the same point. (Its run time is measured in benchmarks/.)"""
    sh = flow.shoot(problems.van_der_pol(), 200)
    sol = flow.gradient_flow(
        sh,
        sh.zeros(),
        metric=metrics.Hamiltonian(),
        rtol=1e-3,
        atol=1e-6,
        tol=1e-8,
        solver=flow.stiff_solver(),
        pcoeff=0.3,
        icoeff=0.3,
    )
    assert sol.result == flow.RESULTS.converged
    U_star = sol.U
    assert float(jnp.max(jnp.abs(sh.hamiltonian_gradient(U_star)))) <= 1e-8
    ev = np.linalg.eigvalsh(np.asarray(sh.hessian(U_star))) / 0.05
    assert 1.9 < ev[0] < 2.1 and 4e4 < ev[-1] < 6e4  # the stiffness is real
    # a nearby start: a smooth perturbation inside the region where Hess E^N is
    # positive definite (Newton's flow is only defined there; checked with numpy)
    t = np.asarray(sh.grid[:-1])[:, None]
    U1 = U_star + 1e-3 * jnp.asarray(np.sin(0.7 * t) * np.exp(-0.1 * t))
    assert np.linalg.eigvalsh(np.asarray(sh.hessian(U1)))[0] > 0
    sol_n = flow.gradient_flow(
        sh,
        U1,
        metric=metrics.Newton(),
        solver=diffrax.Tsit5(),
        rtol=1e-10,
        atol=1e-14,
        tol=1e-8,
        max_steps=5000,
    )
    assert sol_n.result == flow.RESULTS.converged
    assert float(jnp.max(jnp.abs(sol_n.U - U_star))) < 1e-8


def test_matrix_free_implicit_solver_forms_no_dense_matrix():
    """With stiff_solver(matrix_free=True) no intermediate has (N m)^2 entries; with the
    dense set-up one does (the check can fail)."""
    from flow._flow_phases import _phase_kernel, _Settings
    from flow._solver_choice import Phase

    sh = flow.shoot(problems.scalar_regularized(), 1000)
    U0 = sh.zeros()
    settings = _Settings(
        tol=None,
        on_hamiltonian=True,
        stop_on="hamiltonian",
        curvature=False,
        dt0=None,
        saveat=diffrax.SaveAt(t1=True),
    )
    t0, t1, limit = jnp.asarray(0.0), jnp.asarray(1.0), jnp.asarray(jnp.inf)

    def biggest(solver):
        phase = Phase(
            solver=solver, rtol=1e-6, atol=1e-8, pcoeff=0.3, icoeff=0.3, dtmax=None, probe=False
        )
        jaxpr = eqx.filter_make_jaxpr(_phase_kernel)(
            sh, U0, metrics.Hamiltonian(), phase, settings, t0, t1, limit, 100
        )[0]
        return largest_intermediate(jaxpr.jaxpr)

    assert biggest(flow.stiff_solver(matrix_free=True)) < 1000**2 // 10
    assert biggest(flow.stiff_solver(matrix_free=False)) >= 1000**2


@pytest.mark.slow
def test_matrix_free_implicit_flow_at_N_10000():
    sh = flow.shoot(problems.van_der_pol(), 10_000)
    sol = flow.gradient_flow(
        sh,
        sh.zeros(),
        metric=metrics.Hamiltonian(),
        rtol=1e-3,
        atol=1e-6,
        tol=1e-6,
        solver=flow.stiff_solver(matrix_free=True),
        pcoeff=0.3,
        icoeff=0.3,
        max_steps=2000,
    )
    assert sol.result == flow.RESULTS.converged


def test_evaluate_needs_dense_output():
    sh = flow.shoot(problems.scalar_regularized(), 20)
    sol = flow.gradient_flow(
        sh,
        sh.zeros(),
        metric=metrics.Identity(),
        tol=None,
        solver=diffrax.Tsit5(),
        rtol=1e-6,
        atol=1e-8,
        tau1=1.0,
    )
    with pytest.raises(ValueError, match="dense"):
        sol.evaluate(0.5)


@pytest.mark.parametrize(
    "kw, exc, words",
    [
        (dict(tau1=None, tol=None), ValueError, "tau1"),
        (dict(tau1=-1.0), ValueError, "`tau1`"),
        (dict(tol=0.0), ValueError, "`tol`"),
        (dict(rtol=0.0), ValueError, "`rtol`"),
        (dict(stop_on="cost"), ValueError, "`stop_on`"),
    ],
)
def test_bad_flow_arguments(kw, exc, words):
    sh = flow.shoot(problems.scalar_regularized(), 10)
    args = dict(rtol=1e-6, atol=1e-8, tau1=1.0, tol=None)
    args.update(kw)
    with pytest.raises(exc, match=words):
        flow.gradient_flow(sh, sh.zeros(), metric=metrics.Identity(), **args)


def test_stiff_solver_order_validation():
    with pytest.raises(ValueError, match="`order`"):
        flow.stiff_solver(order=2)
    assert isinstance(flow.stiff_solver(order=5), diffrax.Kvaerno5)


# ------------------------------------------------- jit, vmap and recompilation


def _counting_problem(traces: list):
    """x' = -x + u, x(0) = 1 on [0, 1], E = x^2; the dynamics record every trace."""

    def f(x, u):
        traces.append(1)  # runs only while JAX traces
        return -x + u

    return flow.OptimalControlProblem(f, lambda x: jnp.sum(x**2), [1.0], 0.0, 1.0, control_dim=1)


def _linear_flow_exact(N: int, U0: np.ndarray, tau: float) -> np.ndarray:
    """The Hamiltonian flow of `_counting_problem` in closed form (numpy).

    Euler: x_{k+1} = (1 - h) x_k + h u_k, so x_N = c + w . U with c = (1 - h)^N and
    w_k = h (1 - h)^(N-1-k); E^N = r^2 with r = x_N, grad E^N = 2 r w. With M = h I,
    dU/dtau = -(2 r / h) w, so dr/dtau = -(2 |w|^2 / h) r: r(tau) = r0 exp(-2 |w|^2
    tau / h) and U(tau) = U0 - w (r0 - r(tau)) / |w|^2.
    """
    h = 1.0 / N
    w = h * (1 - h) ** (N - 1 - np.arange(N))
    r0 = (1 - h) ** N + w @ U0.reshape(-1)
    r = r0 * np.exp(-2 * (w @ w) * tau / h)
    return (U0.reshape(-1) - w * (r0 - r) / (w @ w)).reshape(U0.shape)


def test_gradient_flow_refuses_jit_and_vmap():
    """gradient_flow is a host-side driver (phases, statuses on concrete values): under
    jit or vmap it says so and how to batch, instead of failing inside diffrax."""
    sh = flow.shoot(problems.scalar_regularized(), 10)
    kw = dict(tol=None, tau1=0.1, throw=False)
    with pytest.raises(ValueError, match="outside jit/vmap"):
        jax.jit(lambda U: flow.gradient_flow(sh, U, **kw).U)(sh.zeros())
    with pytest.raises(ValueError, match="outside jit/vmap"):
        jax.vmap(lambda U: flow.gradient_flow(sh, U, **kw).U)(jnp.zeros((2, 10, 1)))


def test_vector_field_flow_under_jit_and_vmap_over_starts(rng):
    """The documented way to batch flows over starts: diffrax on flow.vector_field
    under jax.jit(jax.vmap(...)). Each start matches the closed form and
    gradient_flow on that start; a new batch of starts of the same shape, and a new
    U0 for gradient_flow, trace nothing again.

    Tolerance: each accepted step adds at most rtol |U| + atol per component
    (the controller's bound); the decaying linear flow does not amplify earlier
    errors, so after n steps the error is below n (rtol max|U| + atol)."""
    traces: list = []
    N, S, tau1, rtol, atol = 10, 3, 1.0, 1e-10, 1e-12
    sh = flow.shoot(_counting_problem(traces), N)
    F = flow.vector_field(sh, "hamiltonian")

    @jax.jit
    @jax.vmap
    def flows(U0):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(F),
            diffrax.Tsit5(),
            0.0,
            tau1,
            None,
            U0,
            stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
            saveat=diffrax.SaveAt(t1=True),
        )
        return sol.ys[-1], sol.stats["num_accepted_steps"]

    def check(starts):
        U1, n = flows(jnp.asarray(starts))
        assert U1.shape == (S, N, 1) and U1.dtype == jnp.float64
        for i in range(S):
            exact = _linear_flow_exact(N, starts[i], tau1)
            bound = int(n[i]) * (rtol * np.abs(exact).max() + atol)
            np.testing.assert_allclose(U1[i], exact, rtol=0, atol=bound)
            one = flow.gradient_flow(
                sh, jnp.asarray(starts[i]), tol=None, tau1=tau1, solver=diffrax.Tsit5(),
                rtol=rtol, atol=atol,
            )  # fmt: skip
            assert one.result == flow.RESULTS.completed
            np.testing.assert_allclose(one.U, exact, rtol=0, atol=int(one.num_steps) * bound)

    check(rng.normal(size=(S, N, 1)))
    count = len(traces)
    assert count > 0
    check(rng.normal(size=(S, N, 1)))
    assert len(traces) == count  # neither path recompiled


# ------------------------------------------------------ every status on purpose


def _linear():
    """x' = u, x(0) = 1 on [0, 1], E = x^2/2: with N = 10 and M = h I every u_k follows
    du_k/dtau = -x_N and dx_N/dtau = -x_N, so the Hamiltonian residual is
    r(tau) = |x_N(tau)| = |x_N(0)| exp(-tau) (1 at U0 = 0)."""
    return flow.OptimalControlProblem(
        lambda x, u: u, lambda x: 0.5 * jnp.sum(x**2), [1.0], 0.0, 1.0, control_dim=1
    )


LINEAR = flow.shoot(_linear(), 10)
#: The solver settings of the status tests (shared: each new setting compiles anew).
KW = dict(solver=diffrax.Tsit5(), rtol=1e-10, atol=1e-12)


def test_converged_and_completed_on_the_closed_form():
    """Tolerance: every u_k moves alike, so each accepted step errs by at most
    atol + rtol |u_k| in each u_k and by atol + rtol |x_N - 1| <= atol + rtol in
    x_N = 1 + h sum u_k; after n steps |x_N - exp(-tau)| <= E = n (atol + rtol)."""
    sh, kw = LINEAR, KW
    sol = flow.gradient_flow(sh, sh.zeros(), tol=1e-8, **kw)
    assert sol.result == flow.RESULTS.converged
    E = int(sol.num_steps) * (KW["atol"] + KW["rtol"])
    # the event fires at the end of the first step with r <= tol: exp(-tau) <= tol + E
    assert float(sol.residual) <= 1e-8
    assert float(sol.tau_final) >= -np.log(1e-8 + E)
    done = flow.gradient_flow(sh, sh.zeros(), tol=None, tau1=2.0, **kw)
    assert done.result == flow.RESULTS.completed and float(done.tau_final) == 2.0
    E = int(done.num_steps) * (KW["atol"] + KW["rtol"])
    np.testing.assert_allclose(1 + 0.1 * float(jnp.sum(done.U)), np.exp(-2.0), rtol=0, atol=E)


def test_max_steps_reached_on_purpose():
    """dt0 = 0.01 and the controller's growth factor of at most 10 per step keep three
    steps below tau = 0.01 + 0.1 + 1 = 1.11, where r >= exp(-1.11) > 0.3 > tol."""
    sh = LINEAR
    sol = flow.gradient_flow(sh, sh.zeros(), tol=1e-8, **KW, dt0=0.01, max_steps=3, throw=False)
    assert sol.result == flow.RESULTS.max_steps
    assert int(sol.num_steps) == 3 and float(sol.tau_final) <= 1.11
    assert float(sol.residual) >= np.exp(-1.11) * (1 - 1e-6)
    assert "after 3 steps" in sol.message
    with pytest.raises(flow.ConvergenceError, match="max_steps"):
        flow.gradient_flow(sh, sh.zeros(), tol=1e-8, **KW, dt0=0.01, max_steps=3)


def test_solver_failed_when_the_step_size_falls_below_dtmin():
    """(a) dtmin = 10 on the linear flow of rate 1: diffrax starts at dt = max(dt0,
    dtmin) = 10, a Tsit5 step with tau-rate 10 cannot meet rtol 1e-10, and the rejected
    step's successor is below dtmin: `solver_failed` with nothing accepted.
    (b) The quartic blow-up with a divergence limit it never reaches: the
    error-controlled steps shrink towards the singularity at tau = 1/32 until they
    fall below dtmin (step-size underflow)."""
    sh, kw = LINEAR, KW
    sol = flow.gradient_flow(sh, sh.zeros(), dtmin=10.0, **kw, throw=False)
    assert sol.result == flow.RESULTS.solver_failed
    assert int(sol.num_accepted_steps) == 0 and float(sol.tau_final) == 0.0
    assert "dtmin = 10" in sol.message
    with pytest.raises(flow.ConvergenceError, match="dtmin"):
        flow.gradient_flow(sh, sh.zeros(), dtmin=10.0, **kw)
    q = QUARTIC
    blow = flow.gradient_flow(
        q, jnp.ones(q.control_shape), tol=None, tau1=10.0, divergence_factor=1e300,
        dtmin=1e-9, max_steps=1000, **kw, throw=False,
    )  # fmt: skip
    assert blow.result == flow.RESULTS.solver_failed
    # it stopped close to the singularity: x_N > 200 there, which with the invariant
    # bound D of test_divergence_at_the_closed_form_blow_up_time puts tau_final past
    # tau_c - D/8 = (1 - 1e-4)/32 - D/8, and a finite x_N puts it before 1/32 + D/8
    assert 1 + 0.1 * float(jnp.sum(blow.U)) > 200
    D = int(blow.num_steps) * (KW["rtol"] + KW["atol"] / 2) / 2
    assert (1 - 1e-4) / 32 - D / 8 < float(blow.tau_final) < 1 / 32 + D / 8


def test_nonfinite_and_indefinite_at_the_start():
    """nonfinite: E = sqrt(x) at x_N = 1 - 5 < 0 is NaN. indefinite: the Newton metric
    on the quartic at U0 = 1, whose Hessian -12 h^2 x_N^2 11^T (closed form; numpy
    agrees) has no positive eigenvalue."""
    root = flow.OptimalControlProblem(
        lambda x, u: u, lambda x: jnp.sqrt(x[0]), [1.0], 0.0, 1.0, control_dim=1
    )
    sh = flow.shoot(root, 10)
    sol = flow.gradient_flow(sh, jnp.full((10, 1), -5.0), throw=False)
    assert sol.result == flow.RESULTS.nonfinite and int(sol.num_steps) == 0
    with pytest.raises(flow.DivergenceError, match="not finite"):
        flow.gradient_flow(sh, jnp.full((10, 1), -5.0))
    q = QUARTIC
    U0 = jnp.ones(q.control_shape)
    H = np.asarray(q.hessian(U0))
    np.testing.assert_allclose(H, -12 * 0.01 * 4 * np.ones((10, 10)), rtol=1e-13)
    sol = flow.gradient_flow(q, U0, metric=metrics.Newton(), throw=False)
    assert sol.result == flow.RESULTS.indefinite and float(sol.indefinite_at) == 0.0


def test_max_steps_on_a_runaway_flow_says_so():
    """The quartic flow blows up at tau = 1/32 (see above). With a divergence factor
    too large to trigger, the controller's steps collapse and the flow stops at
    max_steps with the residual far above its start: the message says the flow runs
    away, not that it is stiff."""
    sol = flow.gradient_flow(
        QUARTIC,
        jnp.ones(QUARTIC.control_shape),
        metric=metrics.Hamiltonian(),
        tol=None,
        tau1=10.0,
        max_steps=300,
        divergence_factor=1e300,
        throw=False,
    )
    assert sol.result == flow.RESULTS.max_steps
    assert float(sol.residual) > 100 * 32.0  # r(U0) = 4 x_N^3 = 32
    assert "runs away" in sol.message and "stiff" not in sol.message
