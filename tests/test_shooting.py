"""The shooting map: states, costates, the three gradients, Lemma 2, second derivatives."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import (
    FD_ERROR,
    TABLEAUX,
    RandomProblem,
    central_difference_gradient,
    complex_step_directional,
    complex_step_gradient,
    err,
    euler_reference,
    lq_euler_quadratic,
    rel,
    rhs_derivatives,
    rk_cost,
    rk_magnitudes,
    rk_reference,
    rounding_tolerance,
)
from hypothesis import HealthCheck, given, settings, strategies as st

import flow
from flow import problems


SCHEMES = [flow.Euler(), flow.Heun(), flow.RK4()]
STAGES = {name: len(b) for name, (_, b) in TABLEAUX.items()}
# Builtins at sizes where finite differences stay cheap.
BUILTIN_N = {
    "scalar_regularized": 40,
    "scalar_mayer": 40,
    "linear_quadratic": 30,
    "van_der_pol": 60,
    "cart_pole": 40,
    "unicycle": 30,
}


def nonuniform_grid(t0, tf, N, rng):
    w = rng.uniform(0.2, 1.0, size=N)
    return t0 + (tf - t0) * np.concatenate([[0.0], np.cumsum(w) / w.sum()])


def random_control(sh, rng, scale=0.5):
    return jnp.asarray(scale * rng.normal(size=sh.control_shape))


# ---------------------------------------------------------------- gradients
@functools.cache
def _derivatives(name):  # `name` as in problems.get
    p = problems.get(name)
    return rhs_derivatives(p.augmented_dynamics, p.augmented_endpoint_cost)


def _reference_for(sh, name):
    """The tableau reference (states, costates, dE^N/du) of `sh` at U, from the
    problem's right-hand side and endpoint cost alone (`rhs_derivatives`, compiled
    once per problem)."""
    p = sh.problem
    f, f_x, f_u, E_x = _derivatives(name)

    def at(U):
        return rk_reference(
            sh.scheme.name, f, f_x, f_u, E_x, np.asarray(p.augmented_x0()), U, np.asarray(sh.grid)
        )

    return at


def _builtin_cases():
    """Every builtin with Euler, and with Heun and RK4 on van_der_pol (nonlinear, with a
    running cost), in the default run; the other schemes on the other builtins in the
    slow run (the random problems below draw every scheme in the default run)."""
    for name in sorted(BUILTIN_N):
        for scheme in SCHEMES:
            default = isinstance(scheme, flow.Euler) or name == "van_der_pol"
            marks = () if default else (pytest.mark.slow,)
            yield pytest.param(name, scheme, marks=marks, id=f"{name}-{scheme.name}")


@pytest.mark.parametrize(("name", "scheme"), list(_builtin_cases()))
def test_gradients_against_reference_on_builtins(name, scheme, rng):
    """States, costates and both exact gradients against the tableau reference (to
    rounding). The package's finite differences are checked on the random problems
    (`test_random_problems`), where their bound is stated."""
    sh = flow.shoot(problems.get(name), BUILTIN_N[name], scheme)
    U = random_control(sh, rng)
    xs, lams, grads = _reference_for(sh, name)(np.asarray(U))
    tol = rounding_tolerance(sh.N, STAGES[scheme.name])
    g_ad = sh.gradient(U, "autodiff")
    g_co = sh.gradient(U, "costate")
    assert g_ad.dtype == g_co.dtype == jnp.float64
    assert rel(sh.states(U), xs) <= tol
    assert rel(sh.costates(U), lams) <= tol
    assert rel(g_ad, grads) <= tol
    assert rel(g_co, grads) <= tol
    # Non-Euler schemes: the discrete Hamiltonian gradient is dE^N/du_k / h_k.
    if not isinstance(scheme, flow.Euler):
        h = np.asarray(sh.steps)[:, None]
        assert rel(sh.hamiltonian_gradient(U), grads / h) <= tol


@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("name", ["scalar_regularized", "van_der_pol", "unicycle"])
def test_lemma2_euler_against_hand_written_recursion(name, uniform, rng):
    """grad E^N == h_k dH/du_k (eq. (49)) with the costates of DESIGN.md's recursion,
    computed here in numpy with hand-written Jacobians (no autodiff)."""
    p = problems.get(name)
    N = 50
    grid = N if uniform else nonuniform_grid(p.t0, p.tf, N, rng)
    sh = flow.shoot(p, grid, flow.Euler())
    U = random_control(sh, rng)
    f, f_x, f_u, E_x = HAND_WRITTEN[name]
    xs, lams, dHdu = euler_reference(
        f,
        f_x,
        f_u,
        E_x,
        np.asarray(sh.problem.augmented_x0()),
        np.asarray(U),
        np.asarray(sh.grid),
    )
    np.testing.assert_allclose(sh.states(U), xs, rtol=1e-13, atol=1e-14)
    assert rel(sh.costates(U), lams) <= 1e-12
    assert rel(sh.hamiltonian_gradient(U), dHdu) <= 1e-12
    h = np.asarray(sh.steps)[:, None]
    assert rel(h * np.asarray(sh.hamiltonian_gradient(U)), sh.gradient(U)) <= 1e-12
    assert rel(sh.gradient(U), h * dHdu) <= 1e-12


def _scalar_hand():
    def f(x, u):
        return np.array([-x[0] + u[0] - 0.1 * x[0] ** 3, 0.5 * u[0] ** 2])

    def f_x(x, u):
        return np.array([[-1.0 - 0.3 * x[0] ** 2, 0.0], [0.0, 0.0]])

    def f_u(x, u):
        return np.array([[1.0], [u[0]]])

    def E_x(x):
        return np.array([x[0] - 1.0, 1.0])

    return f, f_x, f_u, E_x


def _vdp_hand():
    def f(x, u):
        x1, x2 = x[0], x[1]
        return np.array([(1 - x2**2) * x1 - x2 + u[0], x1, x1**2 + x2**2 + u[0] ** 2])

    def f_x(x, u):
        x1, x2 = x[0], x[1]
        return np.array(
            [[1 - x2**2, -2 * x1 * x2 - 1, 0.0], [1.0, 0.0, 0.0], [2 * x1, 2 * x2, 0.0]]
        )

    def f_u(x, u):
        return np.array([[1.0], [0.0], [2 * u[0]]])

    def E_x(x):
        return np.array([0.0, 0.0, 1.0])

    return f, f_x, f_u, E_x


def _unicycle_hand():
    target = np.array([1.0, 1.0, np.pi / 2])

    def f(x, u):
        return np.array(
            [u[0] * np.cos(x[2]), u[0] * np.sin(x[2]), u[1], 0.5 * (u[0] ** 2 + u[1] ** 2)]
        )

    def f_x(x, u):
        J = np.zeros((4, 4))
        J[0, 2] = -u[0] * np.sin(x[2])
        J[1, 2] = u[0] * np.cos(x[2])
        return J

    def f_u(x, u):
        return np.array([[np.cos(x[2]), 0.0], [np.sin(x[2]), 0.0], [0.0, 1.0], [u[0], u[1]]])

    def E_x(x):
        return np.concatenate([10.0 * (x[:3] - target), [1.0]])

    return f, f_x, f_u, E_x


HAND_WRITTEN = {
    "scalar_regularized": _scalar_hand(),
    "van_der_pol": _vdp_hand(),
    "unicycle": _unicycle_hand(),
}


def test_costate_indexing_is_not_off_by_one(rng):
    """lambda_k = dE^N/dx_{k+1}: perturb x_{k+1} through u_k and compare."""
    sh = flow.shoot(problems.scalar_mayer(), 20)
    U = random_control(sh, rng)
    lams = np.asarray(sh.costates(U))
    np.testing.assert_allclose(lams[-1], np.asarray(sh.states(U))[-1] - np.array([1.0]), rtol=1e-14)
    # For Euler with f_u = 1: dE/du_k = h lambda_k, so lambda_k = grad_k / h exactly.
    g = np.asarray(sh.gradient(U))[:, 0] / np.asarray(sh.steps)
    np.testing.assert_allclose(lams[:, 0], g, rtol=1e-12)
    assert rel(lams[1:, 0], g[:-1]) > 1e-4  # the shifted costate is visibly wrong


_RANDOM_PROBLEMS = given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 4),
    m=st.integers(1, 3),
    N=st.integers(1, 25),
    uniform=st.booleans(),
    scheme=st.sampled_from(SCHEMES),
)


def _random_settings(examples: int):
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


@_random_settings(3)
@_RANDOM_PROBLEMS
def test_random_problems(seed, n, m, N, uniform, scheme):
    """Random smooth problems with hand-written Jacobians: the reference adjoint
    against the complex step (no adjoint at all), then the package against both.
    Each example compiles its own problem (about 3 s): three here, twelve in the
    slow run."""
    _check_random_problem(seed, n, m, N, uniform, scheme)


@pytest.mark.slow
@_random_settings(12)
@_RANDOM_PROBLEMS
def test_random_problems_more(seed, n, m, N, uniform, scheme):
    """`test_random_problems` on twelve examples."""
    _check_random_problem(seed, n, m, N, uniform, scheme)


def _check_random_problem(seed, n, m, N, uniform, scheme):
    rng = np.random.default_rng(seed)
    rp = RandomProblem.draw(rng, n, m)
    f, E = rp.jax_functions()
    T = float(rng.uniform(0.5, 2.0))
    p = flow.OptimalControlProblem(f, E, x0=rp.x0, t0=0.0, tf=T, control_dim=m)
    grid = N if uniform else nonuniform_grid(0.0, T, N, rng)
    sh = flow.shoot(p, grid, scheme)
    U = rng.normal(size=(N, m))
    t = np.asarray(sh.grid)
    args = (scheme.name, rp.f, rp.f_x, rp.f_u, rp.E_x, rp.x0, U, t)
    xs, lams, grads = rk_reference(*args)
    # rounding relative to the sizes of the terms summed (they may cancel)
    lam_size, grad_size = rk_magnitudes(scheme.name, rp.f, *rp.sizes(), rp.x0, U, t)
    tol = rounding_tolerance(N, STAGES[scheme.name])
    cs = complex_step_gradient(lambda V: rk_cost(scheme.name, rp.f, rp.E, rp.x0, V, t), U)
    assert err(grads, cs, grad_size) <= tol
    U = jnp.asarray(U)
    assert rel(sh.states(U), xs) <= tol
    assert err(sh.costates(U), lams, lam_size) <= tol
    assert err(sh.gradient(U, "autodiff"), grads, grad_size) <= tol
    assert err(sh.gradient(U, "costate"), grads, grad_size) <= tol
    h = np.asarray(sh.steps)[:, None]
    if isinstance(scheme, flow.Euler):
        # Lemma 2, eq. (49): dH/du = f_u^T lambda_k and grad E^N = h_k dH/du
        dHdu = np.stack([rp.f_u(xs[k], U[k]).T @ lams[k] for k in range(N)])
        assert err(sh.hamiltonian_gradient(U), dHdu, grad_size / h) <= tol
        assert err(h * dHdu, grads, grad_size) <= tol
    else:
        assert err(sh.hamiltonian_gradient(U), grads / h, grad_size / h) <= tol
    # The package's central differences at delta = eps^(1/3) max(1, |U_j|): truncation
    # delta^2 |E'''| / 6 plus rounding eps |E| / delta, i.e. FD_ERROR (|E| + |E'''|);
    # measured on 36 random problems: below 4 FD_ERROR (1 + |E|); 10 leaves a margin.
    scale = 1.0 + abs(float(sh.cost(U)))
    fd = np.asarray(sh.gradient(U, "finite-difference"))
    assert np.max(np.abs(fd - grads)) <= 10 * FD_ERROR * scale


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.name)
def test_central_differences_written_here(scheme, rng):
    """A central difference written in the test (`central_difference_gradient`, step
    eps^(1/3) max(1, |U_j|)) against the package's exact gradient: within its error
    bound FD_ERROR (|E| + |E'\'\'|); the error measured on 36 random problems is below
    4 FD_ERROR (1 + |E|), and 10 leaves a margin."""
    rp = RandomProblem.draw(rng, 3, 2)
    f, E = rp.jax_functions()
    p = flow.OptimalControlProblem(f, E, x0=rp.x0, t0=0.0, tf=1.0, control_dim=2)
    sh = flow.shoot(p, 12, scheme)
    U = rng.normal(size=sh.control_shape)
    t = np.asarray(sh.grid)
    fd = central_difference_gradient(lambda V: rk_cost(scheme.name, rp.f, rp.E, rp.x0, V, t), U)
    scale = 1.0 + abs(float(sh.cost(jnp.asarray(U))))
    error = np.max(np.abs(fd - np.asarray(sh.gradient(jnp.asarray(U)))))
    assert error <= 10 * FD_ERROR * scale


def test_running_cost_costate_is_one(rng):
    sh = flow.shoot(problems.van_der_pol(), 40, flow.RK4())
    lams = sh.costates(random_control(sh, rng))
    np.testing.assert_array_equal(lams[:, -1], 1.0)


def test_cost_equals_endpoint_of_states(rng):
    sh = flow.shoot(problems.unicycle(), 30, flow.Heun())
    U = random_control(sh, rng)
    x = np.asarray(sh.states(U))
    target = np.array([1.0, 1.0, np.pi / 2])
    expected = 5.0 * np.sum((x[-1, :3] - target) ** 2) + x[-1, 3]
    np.testing.assert_allclose(sh.cost(U), expected, rtol=1e-14)


# ------------------------------------------------------- second derivatives
@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.name)
def test_hessian_vector_product_against_complex_step(scheme, rng):
    """Hess E^N V against the complex step of the hand-written reference gradient,
    D grad(U)[V] = Im grad(U + i 1e-30 V) / 1e-30 (no cancellation: rounding only)."""
    sh = flow.shoot(problems.van_der_pol(), 40, scheme)
    U, V = random_control(sh, rng), random_control(sh, rng)
    f, f_x, f_u, E_x = HAND_WRITTEN["van_der_pol"]
    x0, t = np.asarray(sh.problem.augmented_x0()), np.asarray(sh.grid)

    def grad(W):
        return rk_reference(scheme.name, f, f_x, f_u, E_x, x0, W, t)[2]

    ref = complex_step_directional(grad, np.asarray(U), np.asarray(V))
    Hv = sh.hessian_vector_product(U, V)
    assert rel(Hv, ref) <= rounding_tolerance(sh.N, STAGES[scheme.name])
    H = np.asarray(sh.hessian(U))
    np.testing.assert_allclose(H, H.T, rtol=1e-12, atol=1e-14)
    assert rel(H @ np.asarray(V).reshape(-1), np.asarray(ref).reshape(-1)) <= rounding_tolerance(
        sh.N, STAGES[scheme.name]
    )


def test_lq_hessian_is_constant_and_matches_assembled(rng):
    """For Euler on an LQ problem, assemble Hess E^N independently from A, B, Q, R, S."""
    A = np.array([[0.0, 1.0], [-2.0, -0.3]])
    B = np.array([[0.0], [1.0]])
    Q, R, S = np.diag([1.0, 0.5]), np.array([[0.7]]), np.diag([2.0, 1.0])
    x0, T, N = np.array([1.0, -0.5]), 1.5, 12
    sh = flow.shoot(problems.linear_quadratic(A, B, Q, R, S, x0, T), N)
    H, _, _ = lq_euler_quadratic(A, B, Q, R, S, x0, T=T, N=N)
    for U in (sh.zeros(), random_control(sh, rng)):
        np.testing.assert_allclose(sh.hessian(U), H, rtol=1e-12, atol=1e-14)


def test_dense_hessian_refuses_large_problems():
    sh = flow.shoot(problems.scalar_regularized(), 5000)
    with pytest.raises(ValueError, match="hessian_vector_product"):
        sh.hessian(sh.zeros())
    with pytest.raises(ValueError, match="max_size"):
        sh.hessian(sh.zeros(), max_size=10)


# ----------------------------------------------------- jit, vmap, dtypes
def test_no_recompilation_for_new_U(rng):
    traces = []

    def f(x, u):
        traces.append(1)  # runs only while tracing
        return -x + u

    p = flow.OptimalControlProblem(f, lambda x: jnp.sum(x**2), [1.0], 0.0, 1.0, control_dim=1)
    sh = flow.shoot(p, 30)
    methods = [sh.cost, sh.gradient, sh.costates, sh.hamiltonian_gradient, sh.states]
    for method in methods:
        method(random_control(sh, rng))
    count = len(traces)
    for method in methods:
        method(random_control(sh, rng))
    sh.hessian_vector_product(random_control(sh, rng), random_control(sh, rng))
    count2 = len(traces)
    sh.hessian_vector_product(random_control(sh, rng), random_control(sh, rng))
    assert len(traces) == count2
    assert count2 - count <= 2  # only the new HVP kernel was traced
    # a new grid with the same N shares the compiled code too
    sh2 = flow.shoot(p, nonuniform_grid(0.0, 1.0, 30, rng))
    sh2.gradient(random_control(sh2, rng))
    assert len(traces) == count2


def test_vmap_over_controls(rng):
    sh = flow.shoot(problems.van_der_pol(), 25, flow.Heun())
    Us = jnp.asarray(rng.normal(size=(4, 25, 1)))
    costs = jax.vmap(sh.cost)(Us)
    grads = jax.vmap(lambda U: sh.gradient(U, "costate"))(Us)
    dH = jax.vmap(sh.hamiltonian_gradient)(Us)
    for i in range(4):
        np.testing.assert_allclose(costs[i], sh.cost(Us[i]), rtol=1e-14)
        np.testing.assert_allclose(grads[i], sh.gradient(Us[i]), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(dH[i], sh.hamiltonian_gradient(Us[i]), rtol=1e-12)


def test_jit_of_methods(rng):
    sh = flow.shoot(problems.cart_pole(), 20, flow.RK4())
    U = random_control(sh, rng)
    np.testing.assert_allclose(jax.jit(lambda V: sh.cost(V))(U), sh.cost(U), rtol=1e-14)
    np.testing.assert_allclose(eqx.filter_jit(sh.gradient)(U), sh.gradient(U), rtol=1e-14)
    # the module itself is a pytree: it can be passed through jit
    np.testing.assert_allclose(
        jax.jit(lambda s, V: s.hamiltonian_gradient(V))(sh, U),
        sh.hamiltonian_gradient(U),
        rtol=1e-14,
    )


@pytest.mark.parametrize(
    "method", ["states", "cost", "costates", "hamiltonian_gradient", "gradient"]
)
def test_outputs_are_float64(method, rng):
    sh = flow.shoot(problems.unicycle(), 10)
    assert getattr(sh, method)(random_control(sh, rng)).dtype == jnp.float64


# ----------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "U, exc, words",
    [
        (np.zeros((10, 2)), ValueError, "`U` must have shape"),
        (np.zeros((9, 1)), ValueError, "`U` must have shape"),
        (np.zeros(10), ValueError, "`U` must have shape"),
        (np.zeros((10, 1), dtype=np.int64), TypeError, "`U` must be a float64"),
        (np.zeros((10, 1), dtype=np.float32), TypeError, "`U` must be a float64"),
        (jnp.zeros((10, 1), dtype=jnp.float32), TypeError, "`U` must be a float64"),
        ([[0]] * 10, TypeError, "`U` must be a float64"),
    ],
)
def test_bad_controls(U, exc, words):
    sh = flow.shoot(problems.scalar_regularized(), 10)
    for call in (sh.cost, sh.gradient, sh.states, sh.costates, sh.hamiltonian_gradient):
        with pytest.raises(exc, match=words):
            call(U)


def test_bad_hvp_direction():
    sh = flow.shoot(problems.scalar_regularized(), 10)
    with pytest.raises(ValueError, match="`V`"):
        sh.hessian_vector_product(sh.zeros(), np.zeros((3, 1)))


def test_bad_gradient_method():
    sh = flow.shoot(problems.scalar_regularized(), 10)
    with pytest.raises(ValueError, match="`method`"):
        sh.gradient(sh.zeros(), "adjoint")


@pytest.mark.parametrize(
    "grid, exc, words",
    [
        (0, ValueError, "N must be >= 1"),
        (-3, ValueError, "N must be >= 1"),
        (10.0, TypeError, "integer"),
        (True, TypeError, "integer"),
        ([0.0, 0.5, 0.5, 1.0], ValueError, "strictly increasing"),
        ([0.0, 0.7, 0.5, 1.0], ValueError, "strictly increasing"),
        ([0.0, 0.5, 0.9], ValueError, "end at tf"),
        ([0.1, 0.5, 1.0], ValueError, "start at t0"),
        ([0.0], ValueError, "at least 2"),
        ([[0.0, 1.0]], ValueError, "1-D"),
        ([0.0, np.nan, 1.0], ValueError, "finite"),
        (["a", "b"], TypeError, "real array"),
    ],
)
def test_bad_grids(grid, exc, words):
    with pytest.raises(exc, match=words):
        flow.shoot(problems.scalar_regularized(), grid)


def test_bad_shoot_arguments():
    # (under the test suite's runtime type checking the annotation fires first;
    # both messages name the argument)
    with pytest.raises(TypeError, match="problem"):
        flow.shoot("scalar", 10)
    with pytest.raises(TypeError, match="scheme"):
        flow.shoot(problems.scalar_regularized(), 10, "euler")


def test_shooting_attributes():
    sh = flow.shoot(problems.unicycle(), 8, flow.RK4())
    assert sh.N == 8 and sh.control_dim == 2 and sh.state_dim == 4
    np.testing.assert_allclose(sh.steps, 0.25, rtol=1e-15)
    assert sh.grid[0] == 0.0 and sh.grid[-1] == 2.0
    assert sh.scheme == flow.RK4() and sh.problem.name == "unicycle"
    assert "N=8" in repr(sh)


def test_check_gradients_report():
    res = flow.check_gradients(flow.shoot(problems.van_der_pol(), 40))
    assert res.costate_vs_autodiff <= 1e-12 and res.lemma2 <= 1e-12
    assert res.fd_vs_autodiff is not None and res.fd_vs_autodiff < 1e-5
    d = res.to_dict()
    assert d["N"] == 40 and d["scheme"] == "euler"
    assert "lemma2" in repr(res)
