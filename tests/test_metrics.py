"""The metrics M of the flow dU/dtau = -M^-1 grad E^N on non-uniform grids, where an
index slip (h_{k+1} for h_k) changes the result: against numpy assemblies of E^N
(tests/_reference.py) and the matrix exponential."""

import diffrax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from _reference import lq_euler_quadratic, rel, rounding_tolerance

import flow
from flow import metrics, problems


LQ = {k: np.asarray(v, dtype=float) for k, v in problems.DEFAULT_LQ.items() if k != "T"}
T = float(problems.DEFAULT_LQ["T"])


def _grid(N, rng):
    """A strongly non-uniform grid on [0, T]: steps vary by a factor of up to 10."""
    w = rng.uniform(0.1, 1.0, size=N)
    grid = T * np.concatenate([[0.0], np.cumsum(w) / w.sum()])
    grid[-1] = T  # exactly tf, as the package stores it
    return grid


def _setup(rng, N=16):
    grid = _grid(N, rng)
    sh = flow.shoot(problems.linear_quadratic(**problems.DEFAULT_LQ), grid)
    H, b, _ = lq_euler_quadratic(**LQ, grid=grid)
    h = np.repeat(np.diff(grid), sh.control_dim)  # M = diag(h_k) (x) I_m, row-major
    return sh, H, b, h


def test_hamiltonian_metric_divides_by_the_step_of_each_interval(rng):
    sh, H, b, h = _setup(rng)
    U = rng.normal(size=sh.control_shape)
    G = H @ U.reshape(-1) + b  # grad E^N, assembled in numpy
    D = metrics.Hamiltonian().apply_inverse(sh, jnp.asarray(U), jnp.asarray(G.reshape(U.shape)))
    # one IEEE division per entry in both: equal to the last bit
    np.testing.assert_array_equal(np.asarray(D).reshape(-1), G / h)


def test_hamiltonian_descent_on_a_nonuniform_grid(rng):
    """Five steps U <- U - alpha M^-1 (H U + b) against the same iteration in numpy."""
    sh, H, b, h = _setup(rng)
    U0 = rng.normal(size=sh.control_shape)
    alpha = 0.1
    trace = flow.descend(
        sh, jnp.asarray(U0), metric="hamiltonian", step=alpha, max_steps=5, save_iterates=True
    )
    U = U0.reshape(-1)
    for i in range(1, 6):
        U = U - alpha * (H @ U + b) / h
        # the package's gradient is a scan of N steps, numpy's a dense product:
        # rounding of N steps, amplified by at most |I - alpha M^-1 H| per iteration
        assert (
            rel(np.asarray(trace.iterates[i]).reshape(-1), U)
            <= i
            * rounding_tolerance(sh.N, 1)
            * max(1.0, np.linalg.norm(np.eye(H.shape[0]) - alpha * H / h[:, None], 2)) ** i
        )


def test_hamiltonian_flow_on_a_nonuniform_grid(rng):
    """U(tau) = U* + expm(-tau M^-1 H)(U0 - U*) with M = diag(h_k): the flow's solution
    at rtol 1e-11 agrees to 1e-8 (the error control is local; over tau = 0.5 and
    |M^-1 H| ~ 1 the global error stays within 1e3 rtol)."""
    sh, H, b, h = _setup(rng)
    U_star = -np.linalg.solve(H, b)
    U0 = rng.normal(size=sh.control_shape)
    taus = np.array([0.0, 0.1, 0.5])
    sol = flow.gradient_flow(
        sh,
        jnp.asarray(U0),
        metric=metrics.Hamiltonian(),
        tol=None,
        solver=diffrax.Tsit5(),
        rtol=1e-11,
        atol=1e-13,
        tau1=float(taus[-1]),
        saveat=diffrax.SaveAt(ts=jnp.asarray(taus)),
    )
    assert sol.result == flow.RESULTS.completed
    A = H / h[:, None]  # M^-1 H
    for tau, U in zip(taus, np.asarray(sol.Us), strict=True):
        exact = U_star + scipy.linalg.expm(-tau * A) @ (U0.reshape(-1) - U_star)
        assert rel(U.reshape(-1), exact) <= 1e-8
