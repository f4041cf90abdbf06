"""OptimalControlProblem: validation, augmented (Mayer) form, built-in problems."""

import jax.numpy as jnp
import numpy as np
import pytest

import flow
from flow import problems


def f_ok(x, u):
    return -x + u


def E_ok(x):
    return 0.5 * jnp.sum(x**2)


def make(**kw):
    args = dict(dynamics=f_ok, endpoint_cost=E_ok, x0=[1.0], t0=0.0, tf=1.0)
    args.update(kw)
    control_dim = args.pop("control_dim", 1)
    return flow.OptimalControlProblem(**args, control_dim=control_dim)


def test_valid_problem_and_repr():
    p = make()
    assert p.state_dim == 1 and p.augmented_dim == 1 and p.control_dim == 1
    assert p.x0.dtype == jnp.float64
    assert "n=1" in repr(p)


@pytest.mark.parametrize(
    "kw, exc, words",
    [
        (dict(tf=0.0), ValueError, "`tf`"),
        (dict(tf=-1.0), ValueError, "`tf`"),
        (dict(t0=float("nan")), ValueError, "`t0`"),
        (dict(tf="1"), TypeError, "`tf`"),
        (dict(control_dim=0), ValueError, "`control_dim`"),
        (dict(control_dim=1.5), TypeError, "`control_dim`"),
        (dict(control_dim=True), TypeError, "`control_dim`"),
        (dict(x0=[np.nan]), ValueError, "`x0`"),
        (dict(x0=[np.inf]), ValueError, "`x0`"),
        (dict(x0=1.0), ValueError, "`x0`"),
        (dict(x0=[[1.0]]), ValueError, "`x0`"),
        (dict(x0=["a"]), TypeError, "`x0`"),
        (dict(dynamics="f"), TypeError, "`dynamics`"),
        (dict(endpoint_cost=None), TypeError, "`endpoint_cost`"),
        (dict(running_cost=3.0), TypeError, "`running_cost`"),
        # wrong output shapes
        (dict(dynamics=lambda x, u: jnp.concatenate([x, x])), ValueError, "`dynamics`"),
        (dict(dynamics=lambda x, u: x[0]), ValueError, "`dynamics`"),
        (dict(endpoint_cost=lambda x: x), ValueError, "`endpoint_cost`"),
        (dict(running_cost=lambda x, u: u), ValueError, "`running_cost`"),
        # a function that fails on x0 (wrong signature)
        (dict(dynamics=lambda x: x), ValueError, "`dynamics`"),
        # float32 sneaking in
        (dict(dynamics=lambda x, u: (x + u).astype(jnp.float32)), TypeError, "float64"),
        (dict(endpoint_cost=lambda x: jnp.float32(1.0)), TypeError, "float64"),
    ],
)
def test_bad_input_names_the_argument(kw, exc, words):
    with pytest.raises(exc, match=words.replace("`", "`?")):
        make(**kw)


def test_control_dim_mismatch_is_reported():
    # u of shape (2,) cannot be added to x of shape (1,) -> f fails on x0, zero u
    with pytest.raises(ValueError, match="dynamics"):
        make(control_dim=2)


def test_running_cost_folding():
    p = make(running_cost=lambda x, u: 0.5 * jnp.sum(u**2) + jnp.sum(x))
    assert p.augmented_dim == 2
    np.testing.assert_array_equal(p.augmented_x0(), [1.0, 0.0])
    x, u = jnp.array([2.0, 5.0]), jnp.array([3.0])
    np.testing.assert_allclose(p.augmented_dynamics(x, u), [-2.0 + 3.0, 4.5 + 2.0])
    np.testing.assert_allclose(p.augmented_endpoint_cost(x), 0.5 * 4.0 + 5.0)
    # H = lambda^T f + L when the last costate is 1
    np.testing.assert_allclose(p.hamiltonian(jnp.array([0.5, 1.0]), x, u), 0.5 * 1.0 + 6.5)


@pytest.mark.parametrize("name", sorted(problems.BUILTIN))
def test_builtins_construct(name):
    p = problems.get(name)
    assert isinstance(p, flow.OptimalControlProblem)
    assert p.x0.dtype == jnp.float64
    assert problems.BUILTIN[name][0].__doc__


def test_builtin_sizes():
    assert (problems.scalar_mayer().state_dim, problems.scalar_mayer().control_dim) == (1, 1)
    assert problems.scalar_mayer().running_cost is None
    assert problems.scalar_regularized(2.0).running_cost is not None
    assert problems.van_der_pol().state_dim == 2
    assert problems.cart_pole().state_dim == 4
    assert problems.unicycle().control_dim == 2


def test_unknown_builtin():
    with pytest.raises(ValueError, match="unknown problem"):
        problems.get("nope")


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(A=[[1.0, 0.0]]), "`A`"),
        (dict(B=[[1.0]]), "`B`"),
        (dict(R=[[0.0, 0.0], [0.0, 1.0]]), "`R`"),
        (dict(Q=[[1.0, 2.0], [0.0, 1.0]]), "`Q`"),
        (dict(x0=[1.0]), "`x0`"),
    ],
)
def test_linear_quadratic_validation(kw, words):
    args = dict(problems.DEFAULT_LQ)
    args.update(kw)
    with pytest.raises(ValueError, match=words.replace("`", "`?")):
        problems.linear_quadratic(**args)


def test_scalar_regularized_rejects_bad_rho():
    with pytest.raises(ValueError, match="rho"):
        problems.scalar_regularized(-1.0)


def test_van_der_pol_dynamics_formula():
    p = problems.van_der_pol()
    x, u = jnp.array([0.3, -0.7, 0.0]), jnp.array([0.2])
    x1, x2 = 0.3, -0.7
    expected = [(1 - x2**2) * x1 - x2 + 0.2, x1, x1**2 + x2**2 + 0.2**2]
    np.testing.assert_allclose(p.augmented_dynamics(x, u), expected, rtol=1e-15)
