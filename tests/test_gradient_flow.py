"""flow.gradient_flow: the ODE (50) with diffrax, against closed forms and the descent."""

import time

import diffrax
import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
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


def test_divergence_is_reported():
    """E = -x^4 is unbounded below: the flow blows up in finite time."""
    p = flow.OptimalControlProblem(
        lambda x, u: u, lambda x: -(x[0] ** 4), [1.0], 0.0, 1.0, control_dim=1
    )
    sh = flow.shoot(p, 10)
    U0 = jnp.ones(sh.control_shape)
    args = dict(
        metric=metrics.Hamiltonian(),
        tol=None,
        solver=diffrax.Tsit5(),
        rtol=1e-6,
        atol=1e-8,
        tau1=10.0,
    )
    sol = flow.gradient_flow(sh, U0, **args, throw=False)
    assert not sol.success
    assert sol.result in (flow.RESULTS.diverged, flow.RESULTS.solver_failed, flow.RESULTS.max_steps)
    with pytest.raises((flow.DivergenceError, flow.ConvergenceError), match="tau"):
        flow.gradient_flow(sh, U0, **args)


def test_stiff_van_der_pol_hamiltonian_flow_and_newton_flow():
    """van_der_pol, N = 200: Hess E^N/h spans about [2, 4.8e4] at the optimum and is
    indefinite at U = 0. The Hamiltonian-metric flow from U = 0 reaches
    max|dH/du| <= 1e-8 with an implicit solver in under 60 s (compilation included);
    the Newton-metric flow from a nearby start reaches the same point."""
    sh = flow.shoot(problems.van_der_pol(), 200)
    start = time.perf_counter()
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
    elapsed = time.perf_counter() - start
    assert elapsed < 60, elapsed
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


def _subjaxprs(value):
    from jax.extend.core import ClosedJaxpr, Jaxpr

    if isinstance(value, ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, Jaxpr):
        yield value
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _subjaxprs(v)


def _largest_intermediate(jaxpr) -> int:
    """The largest number of entries of any value computed in a jaxpr (recursively)."""
    biggest = 0
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            size = int(np.prod(getattr(v.aval, "shape", ()) or (1,)))
            biggest = max(biggest, size)
        for param in eqn.params.values():
            for sub in _subjaxprs(param):
                biggest = max(biggest, _largest_intermediate(sub))
    return biggest


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
        return _largest_intermediate(jaxpr.jaxpr)

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
