"""EarlyGMRES and StageNewton (flow.solvers): the matrix-free implicit stages."""

import diffrax
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx
import pytest

import flow
from flow.solvers import EarlyGMRES, StageNewton


def _nonsymmetric(n, seed=0):
    rng = np.random.default_rng(seed)
    return 3.0 * np.eye(n) + rng.standard_normal((n, n)) / np.sqrt(n), rng.standard_normal(n)


@pytest.mark.parametrize("rtol", [1e-2, 1e-6, 1e-12])
@pytest.mark.parametrize("restart", [4, 200])
def test_early_gmres_meets_its_residual_against_numpy(rtol, restart):
    """The returned x satisfies ||b - Ax|| <= rtol ||b|| (computed here with numpy), and
    at rtol 1e-12 it is numpy.linalg.solve's answer (condition number ~3: 1e-11)."""
    A, b = _nonsymmetric(200)
    sol = lx.linear_solve(
        lx.MatrixLinearOperator(jnp.asarray(A)),
        jnp.asarray(b),
        EarlyGMRES(rtol=rtol, restart=restart, max_restarts=50),
    )
    x = np.asarray(sol.value)
    assert np.linalg.norm(b - A @ x) <= rtol * np.linalg.norm(b)
    if rtol == 1e-12:
        ref = np.linalg.solve(A, b)
        assert np.linalg.norm(x - ref) <= 1e-11 * np.linalg.norm(ref)


def test_early_gmres_stops_after_the_first_product_that_suffices():
    """Diagonal operator with 2 outliers and a cluster: the count of products is the
    smallest k with ||b - A x_k|| <= rtol ||b|| over the Krylov space (the GMRES
    optimum, computed here by numpy least squares on the explicit Krylov basis), while
    lineax's GMRES(5) needs at least two full cycles (13 products)."""
    n = 400
    d = np.concatenate([np.linspace(2.0, 5.0, n - 2), [9.1e3, 4.4e4]])
    A = np.diag(1.0 + 0.3 * d)
    b = np.ones(n)
    count = [0]

    def mv(v):
        jax.debug.callback(lambda: count.__setitem__(0, count[0] + 1))
        return v + 0.3 * jnp.asarray(d) * v

    op = lx.FunctionLinearOperator(mv, jax.ShapeDtypeStruct((n,), jnp.float64))
    rtol = 1e-6
    lx.linear_solve(op, jnp.asarray(b), EarlyGMRES(rtol=rtol, restart=50))
    # Independent: the GMRES residual min_{x in K_k} ||b - A x|| for each k.
    # Orthonormal Krylov basis by numpy Gram-Schmidt (twice), then least squares.
    Q = [b / np.linalg.norm(b)]
    best = None
    for k in range(1, 50):
        B = np.array(Q).T
        x = B @ np.linalg.lstsq(A @ B, b, rcond=None)[0]
        if np.linalg.norm(b - A @ x) <= rtol * np.linalg.norm(b):
            best = k
            break
        w = A @ Q[-1]
        for _ in range(2):
            w = w - B @ (B.T @ w)
        Q.append(w / np.linalg.norm(w))
    assert best is not None and count[0] == best


def test_early_gmres_reports_failure_when_out_of_steps():
    A, b = _nonsymmetric(100)
    sol = lx.linear_solve(
        lx.MatrixLinearOperator(jnp.asarray(A)),
        jnp.asarray(b),
        EarlyGMRES(rtol=1e-14, restart=2, max_restarts=1),
        throw=False,
    )
    assert sol.result == lx.RESULTS.max_steps_reached


@pytest.mark.parametrize(
    "kw, words",
    [(dict(rtol=-1.0), "rtol"), (dict(rtol=1e-3, restart=0), "restart")],
)
def test_early_gmres_bad_arguments(kw, words):
    with pytest.raises(ValueError, match=words):
        EarlyGMRES(**kw)


def test_stage_newton_solves_a_nonlinear_system():
    """x^3 + x - c = 0 componentwise: the root against numpy's polynomial roots."""
    c = jnp.linspace(-3.0, 3.0, 7)
    sol = optx.root_find(
        lambda x, _: x**3 + x - c,
        StageNewton(rtol=1e-12, atol=1e-12, kappa=1e-2),
        jnp.zeros(7),
        max_steps=50,
    )
    ref = [np.roots([1.0, 0.0, 1.0, -ci]) for ci in np.asarray(c)]
    ref = np.array([r[np.abs(r.imag) < 1e-12].real[0] for r in ref])
    np.testing.assert_allclose(np.asarray(sol.value), ref, rtol=0, atol=1e-10)


def test_stage_newton_reports_divergence():
    """atan(x) = 0 from x0 = 3: Newton overshoots with growing steps (|x| > 1.39)."""
    sol = optx.root_find(
        lambda x, _: jnp.arctan(x),
        StageNewton(rtol=1e-8, atol=1e-8),
        jnp.array([3.0]),
        max_steps=50,
        throw=False,
    )
    assert sol.result == optx.RESULTS.nonlinear_divergence


# Two Kvaerno3 programs to compile (about 11 s): in the slow run. The default run checks
# the matrix-free solver against closed forms and scipy (tests/test_gradient_flow.py).
@pytest.mark.slow
def test_stiff_solver_matrix_free_matches_the_dense_one():
    """Same flow, same tolerances: the matrix-free Kvaerno3 and the dense Kvaerno3
    end within a few rtol of each other (both integrate to rtol 1e-6)."""
    sh = flow.shoot(flow.problems.van_der_pol(), 40)
    kw = dict(
        metric=flow.metrics.Hamiltonian(),
        tol=None,
        rtol=1e-6,
        atol=1e-9,
        tau1=2.0,
        pcoeff=0.3,
        icoeff=0.3,
    )
    a = flow.gradient_flow(
        sh, sh.zeros(), solver=flow.stiff_solver(order=3, matrix_free=True), **kw
    )
    b = flow.gradient_flow(
        sh, sh.zeros(), solver=flow.stiff_solver(order=3, matrix_free=False), **kw
    )
    scale = float(jnp.max(jnp.abs(b.U)))
    assert float(jnp.max(jnp.abs(a.U - b.U))) <= 1e-5 * scale


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(krylov_rtol=1.0), "krylov_rtol"),
        (dict(kappa=0.0), "kappa"),
        (dict(restart=0), "restart"),
        (dict(order=6), "order"),
    ],
)
def test_stiff_solver_bad_arguments(kw, words):
    with pytest.raises(ValueError, match=words):
        flow.stiff_solver(matrix_free=True, **kw)


def test_stiff_solver_default_orders():
    assert isinstance(flow.stiff_solver(matrix_free=True), diffrax.Kvaerno5)
    assert isinstance(flow.stiff_solver(), diffrax.Kvaerno3)
