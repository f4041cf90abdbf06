"""How many XLA programs a first call compiles, and the per-call checks (issue #13).

A user's first call pays for every program XLA compiles (tens of milliseconds each,
even for one `jnp` operation run eagerly on a new shape). These tests count the
backend compilations that JAX reports through `jax.monitoring` for a fresh problem
size, so that an eager operation or a second kernel creeping back into a verb fails
here rather than showing up as a slower first result.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _compiles import counted

import flow
import stability
from flow import problems


def _fresh_problem(name):
    """A problem whose functions no earlier test compiled (new closures)."""
    a = 0.37 + 0.001 * len(name)
    return flow.OptimalControlProblem(
        lambda x, u: -a * x + u - 0.1 * x**3,
        lambda x: 0.5 * (x[0] - 1.0) ** 2,
        [0.2],
        0.0,
        1.0,
        control_dim=1,
        running_cost=lambda x, u: 0.5 * jnp.sum(u**2),
        name=name,
    )


def test_building_and_sizing_compile_nothing():
    """Problem validation traces (`jax.eval_shape`); grids, steps, zeros and the probe
    control are computed by numpy: no XLA program for any of them."""
    with counted() as names:
        p = _fresh_problem("build")
        sh = flow.shoot(p, 37)
        h = sh.steps
        Z = sh.zeros()
        U = flow.probe_control(sh)
    assert names == []
    grid = np.asarray(sh.grid)
    np.testing.assert_array_equal(np.asarray(h), grid[1:] - grid[:-1])
    assert Z.shape == (37, 1) and not np.any(np.asarray(Z))
    s = (grid[:-1] - grid[0]) / (grid[-1] - grid[0])
    np.testing.assert_allclose(
        np.asarray(U)[:, 0], 0.5 * np.sin(np.pi * s + 1.0), rtol=0, atol=1e-15
    )


def test_check_gradients_is_one_program_per_size():
    sh = flow.shoot(_fresh_problem("check"), 41)
    with counted() as names:
        chk = flow.check_gradients(sh)
    assert names == ["jit(_check_kernel)"]
    assert chk.costate_vs_autodiff < 1e-13 and chk.fd_vs_autodiff < 1e-7
    # the same routes as the public methods, at the same point
    U = flow.probe_control(sh)
    g = np.asarray(sh.gradient(U))
    assert chk.gradient_norm == pytest.approx(float(np.max(np.abs(g))), rel=1e-14)
    assert chk.cost == pytest.approx(float(sh.cost(U)), rel=1e-14)


def test_equilibrium_is_one_program():
    sh = flow.shoot(_fresh_problem("equilibrium"), 43)
    with counted() as names:
        eq = stability.equilibrium(sh)
    assert names == ["jit(_trust_region)"]
    # its reported residuals are those of the public methods at its point
    g = np.asarray(sh.gradient(eq.U))
    dH = np.asarray(sh.hamiltonian_gradient(eq.U))
    assert eq.gradient_norm == pytest.approx(float(np.max(np.abs(g))), rel=1e-6, abs=1e-15)
    assert eq.hamiltonian_residual == pytest.approx(float(np.max(np.abs(dH))), rel=1e-6, abs=1e-13)
    assert eq.hamiltonian_residual <= 1e-10


def test_problem_functions_must_trace():
    """A Python branch on the state is refused when the problem is built, with the
    reason, not later inside a verb."""

    def branchy(x, u):
        return x if x[0] > 0 else -x

    with pytest.raises(ValueError, match=r"`dynamics` failed when traced.*traceable by JAX"):
        flow.OptimalControlProblem(branchy, lambda x: x @ x, [1.0], 0.0, 1.0, control_dim=1)
    with pytest.raises(TypeError, match="`endpoint_cost` must return an array"):
        flow.OptimalControlProblem(lambda x, u: x, lambda x: "E", [1.0], 0.0, 1.0, control_dim=1)


def test_checks_cached_per_shape_still_refuse_bad_input():
    """The controls' checks run while `jax.jit` traces; a call with a bad shape or
    dtype after good calls still raises the same errors."""
    sh = flow.shoot(problems.scalar_regularized(), 12)
    U = flow.probe_control(sh)
    for _ in range(2):
        sh.cost(U), sh.gradient(U), sh.hessian_vector_product(U, U)
    with pytest.raises(ValueError, match=r"`U` must have shape \(12, 1\)"):
        sh.cost(U[:-1])
    with pytest.raises(TypeError, match="`U` must be a float64 array"):
        sh.gradient(U.astype(jnp.float32))
    with pytest.raises(ValueError, match=r"`V` must have shape \(12, 1\)"):
        sh.hessian_vector_product(U, U[:-1])
    # numpy and nested lists take the checked path, to the same values
    ref = float(sh.cost(U))
    assert float(sh.cost(np.asarray(U))) == ref
    assert float(sh.cost(np.asarray(U).tolist())) == ref
    # bound methods are plain callables under the transformations
    Us = jnp.stack([U, 2 * U])
    np.testing.assert_array_equal(np.asarray(jax.vmap(sh.cost)(Us))[0], ref)
    np.testing.assert_allclose(
        np.asarray(jax.jit(jax.grad(sh.cost))(U)), np.asarray(sh.gradient(U)), rtol=1e-14
    )


def test_a_shootings_flattening_is_kept_while_it_lives():
    """The per-call path keeps each discretisation's pytree flattening (a module is
    immutable) and forgets it when the discretisation is garbage collected."""
    import gc

    from flow import _dispatch

    sh = flow.shoot(problems.scalar_regularized(), 9)
    U = flow.probe_control(sh)
    value = float(sh.cost(U))
    key = id(sh)
    assert key in _dispatch._FLAT and _dispatch._FLAT[key][0]() is sh
    del sh
    gc.collect()
    assert key not in _dispatch._FLAT
    # a new discretisation (possibly at the same address) is flattened afresh
    other = flow.shoot(problems.scalar_regularized(), 9)
    assert float(other.cost(U)) == value
