"""Adaptive grids and the term S of eq. (59) (section 6.5).

References: a hand-written Bogacki-Shampine step in numpy (for the frozen-grid
re-run), scipy's solve_ivp (for the adaptive map's value), `flow.shoot` on the
frozen grid with `flow.controls.parameterize` (for the frozen gradient), and
central finite differences of the maps themselves (for the full derivative).
"""

import json

import diffrax
import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate

import flow
from flow import problems


EPS = np.finfo(np.float64).eps
TOL = 1e-6


@pytest.fixture(scope="module")
def ash():
    return flow.adaptive_shoot(problems.scalar_regularized(), 10, tol=TOL)


@pytest.fixture(scope="module")
def U(ash):
    return flow.probe_control(ash.reference)


def _bosh3_step(f, x, h):
    """Bogacki-Shampine 3(2), the 3rd-order solution (Butcher tableau by hand)."""
    k1 = f(x)
    k2 = f(x + 0.5 * h * k1)
    k3 = f(x + 0.75 * h * k2)
    return x + h * (2 / 9 * k1 + 1 / 3 * k2 + 4 / 9 * k3)


def test_adaptive_map_value_and_grid(ash, U):
    grid = ash.adaptive_grid(U)
    assert grid.times[0] == 0.0 and grid.times[-1] == 1.0
    assert np.all(np.diff(grid.times) > 0)
    # every reference point is a grid point (each interval is integrated on its own)
    assert np.all(np.isin(np.asarray(ash.grid), grid.times))
    assert grid.num_steps == int(grid.accepted.sum())
    assert grid.num_steps > ash.N  # at tol 1e-6 some interval is subdivided
    # the same Runge-Kutta method by hand on the chosen grid: rounding only
    u = np.asarray(U)[:, 0]

    def f_of(k):
        return lambda x: np.array([-x[0] + u[k] - 0.1 * x[0] ** 3, 0.5 * u[k] ** 2])

    x = np.zeros(2)
    for k, (a, b) in zip(
        grid.owner, zip(grid.times[:-1], grid.times[1:], strict=True), strict=True
    ):
        x = _bosh3_step(f_of(k), x, b - a)
    ref = 0.5 * (x[0] - 1.0) ** 2 + x[1]
    assert float(ash.cost(U)) == pytest.approx(ref, rel=1e-14)
    # and the exact flow (solve_ivp at 1e-12): the controller keeps the error at the
    # tolerance's scale (the local error per step is <= tol; 30 steps)
    y = np.zeros(2)
    for k in range(ash.N):
        y = scipy.integrate.solve_ivp(
            lambda t, z, k=k: f_of(k)(z), (k / 10, (k + 1) / 10), y, rtol=1e-12, atol=1e-14
        ).y[:, -1]
    assert abs(float(ash.cost(U)) - (0.5 * (y[0] - 1) ** 2 + y[1])) < 100 * TOL


def test_frozen_gradient_is_the_fixed_grid_gradient(ash, U):
    """jax.grad through diffrax = the gradient on the frozen grid (the first term of
    (59)), re-computed by flow.shoot on that grid with the same RK step and the
    reference intervals as blocks (flow.controls)."""
    g = np.asarray(ash.frozen_gradient(U))
    frozen = ash.freeze(U)
    C = jnp.asarray(np.asarray(U).reshape(1, -1))
    g_shoot = np.asarray(frozen.gradient(C)).reshape(U.shape)
    # the same arithmetic along a different code path: rounding only
    np.testing.assert_allclose(g_shoot, g, rtol=0, atol=1e-14 * np.max(np.abs(g)))
    assert float(frozen.cost(C)) == pytest.approx(float(ash.cost(U)), rel=1e-14)


# 12 s; the S term is checked by default against an independent difference
@pytest.mark.slow
def test_s_term_nonzero_for_adaptive_zero_for_fixed_grid(ash, U):
    """S = (full derivative) - (frozen gradient). Threshold: the central differences
    (step 1e-6) have rounding error ~ eps |E| / delta ~ 1e-10, and the a-priori
    noise bound 100 eps |E| / (delta/2) is ~2e-8. On the frozen (fixed) grid S must
    stay below that bound; on the adaptive grid it must exceed it tenfold."""
    st = flow.s_term(ash, U)
    assert st.discontinuous == 0  # no grid-topology jump inside the stencils at this U
    assert st.fd_noise <= st.fd_noise_bound
    assert st.fixed_s_norm <= st.fd_noise_bound
    assert st.s_norm >= 10 * st.fd_noise_bound
    assert st.s_norm >= 1e3 * max(st.fd_noise, st.fixed_s_norm)
    # the rerun on the frozen grid (padded scan) reproduces the frozen gradient
    assert st.rerun_difference <= 1e-14 * st.gradient_norm
    json.dumps(st.to_dict())
    # a loose tolerance: every interval takes the same two steps for all nearby U
    # (the second step is clipped to the interval's end): a locally fixed grid, S = 0
    loose = flow.s_term(flow.adaptive_shoot(problems.scalar_regularized(), 10, tol=1e-4), U)
    assert loose.num_steps == 20 and loose.s_norm <= loose.fd_noise_bound


def test_s_term_against_an_independent_difference(ash, U):
    """S computed here: central differences of the adaptive map, one evaluation of
    `ash.cost` at a time (its value is checked against a hand-written
    Bogacki-Shampine step above), minus the frozen gradient re-computed by
    `flow.shoot` on the frozen grid. |S|, |S|/|g| and max |S_k|/h_k against it.

    Tolerance: with the same step delta both differences have the same truncation
    error (delta^2 |E^(3)|/6), so they differ by rounding only: each evaluation of E
    rounds at <= 100 eps |E| (29 Runge-Kutta steps of a few eps each), so each
    difference at <= 100 eps |E| / delta; the two frozen gradients agree to 1e-14 |g|
    (test above). So |S_package - S_here| <= 2 * 100 eps |E| / delta + 1e-14 |g|
    (2.1e-8, 1.2% of |S| = 1.75e-6)."""
    st = flow.s_term(ash, U)
    u = np.asarray(U)
    E0 = float(ash.cost(U))
    delta = st.delta

    def central(d):
        D = np.empty_like(u)
        for k in range(u.shape[0]):
            dk = d * max(1.0, abs(u[k, 0]))
            e = np.zeros_like(u)
            e[k, 0] = dk
            up, um = float(ash.cost(jnp.asarray(u + e))), float(ash.cost(jnp.asarray(u - e)))
            D[k, 0] = (up - um) / (2 * dk)
        return D

    D, D_half = central(delta), central(0.5 * delta)
    # no jump of the map inside any stencil: both steps agree to their rounding
    assert np.all(np.abs(D - D_half) <= 100 * EPS * abs(E0) / (0.5 * delta))
    frozen = ash.freeze(U)
    g = np.asarray(frozen.gradient(jnp.asarray(u.reshape(1, -1)))).reshape(u.shape)
    S = D - g
    s_inf, g_inf = np.max(np.abs(S)), np.max(np.abs(g))
    tol = 2 * 100 * EPS * abs(E0) / delta + 1e-14 * g_inf
    assert tol < 0.02 * s_inf  # the comparison resolves S
    np.testing.assert_allclose(st.s, S, rtol=0, atol=tol)
    assert st.s_norm == pytest.approx(s_inf, rel=0, abs=tol)
    assert st.gradient_norm == pytest.approx(g_inf, rel=1e-14, abs=0)
    assert st.s_relative == pytest.approx(s_inf / g_inf, rel=0, abs=2 * tol / g_inf)
    h = np.diff(np.asarray(ash.grid))
    s_ham = np.max(np.abs(S[:, 0]) / h)
    assert st.s_hamiltonian == pytest.approx(s_ham, rel=0, abs=tol / h.min())


@pytest.mark.slow
def test_s_term_decreases_with_tolerance(U):
    study = flow.s_term_study(problems.scalar_regularized(), 10, U, tols=[1e-6, 1e-7, 1e-8])
    s = [r.s_norm for r in study.rows]
    assert s[0] > s[1] > s[2] > 0
    for r in study.rows:
        assert r.fixed_s_norm <= r.fd_noise_bound
        # the a-priori bound (2e-8) is conservative; against the measured FD noise
        # (~1e-10) S stays two orders above it down to tol = 1e-8 (S ~ 3e-8 there)
        assert r.s_norm >= 100 * max(r.fd_noise, r.fixed_s_norm)
    json.dumps(study.to_dict())
    assert "S fixed" in study.table()


@pytest.mark.slow
def test_descent_stalls_with_the_grid_inside_and_not_with_it_fixed(ash):
    """Armijo descent with the frozen gradient on the adaptive map: the line search
    fails once |g_frozen| ~ |S| (the true slope differs), the residual stalls near
    |S|/h; with the grid fixed per outer iteration it falls to the line search's
    rounding floor (~1e-8)."""
    r = flow.adaptive_descent(ash, max_steps=100, outer_iterations=3)
    assert r.inside_failures > 10
    assert r.inside_final > 1e-7
    assert r.fixed_final < 1e-2 * r.inside_final
    assert r.fixed_outer[-1][2] == 0  # no failed line search in the last outer iteration
    # with a constant step both residuals reach rounding, but the adaptive map's true
    # derivative at the limit is S (the floor), the fixed map's is FD noise
    c = flow.adaptive_descent(ash, max_steps=100, outer_iterations=2, step="constant", alpha0=0.7)
    assert c.inside_final < 1e-12 and c.fixed_final < 1e-12
    assert c.inside_true_residual > 1e-7
    assert c.fixed_true_residual < 1e-8
    json.dumps(c.to_dict())


def test_bad_inputs(ash, U):
    P = problems.scalar_regularized()
    with pytest.raises(ValueError, match="`tol`"):
        flow.adaptive_shoot(P, 10, tol=0.0)
    with pytest.raises(TypeError, match="solver"):
        flow.adaptive_shoot(P, 10, tol=1e-6, solver=diffrax.Euler())
    with pytest.raises(ValueError, match="strictly increasing"):
        flow.adaptive_shoot(P, [0.0, 0.5, 0.4, 1.0], tol=1e-6)
    with pytest.raises(ValueError, match="`max_steps`"):
        flow.adaptive_shoot(P, 10, tol=1e-6, max_steps=0)
    with pytest.raises(ValueError, match="shape"):
        ash.cost(jnp.zeros((9, 1)))
    with pytest.raises(ValueError, match="`delta`"):
        flow.s_term(ash, U, delta=-1.0)
    with pytest.raises(ValueError, match="`step`"):
        flow.adaptive_descent(ash, step="newton")
    # a runtime check inside jit (eqx.error_if): equinox's RuntimeError, naming the argument
    tight = flow.adaptive_shoot(P, 10, tol=1e-12, max_steps=4)
    with pytest.raises(eqx.EquinoxRuntimeError, match="more than `max_steps` steps"):
        tight.cost(U)
    # the gradient too (it used to return a silent, wrong value: under jax.grad the
    # check on the cost was dead code). tol 1e-14 needs > 512 steps (the default
    # max_steps) in some interval, and reuses this module's compiled kernels.
    with pytest.raises(eqx.EquinoxRuntimeError, match="more than `max_steps` steps"):
        flow.adaptive_shoot(P, 10, tol=1e-14).frozen_gradient(U)
