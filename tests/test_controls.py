"""Control parameterizations U = B C (eqs. (40)-(43)), rank diagnostics, spurious points.

References are independent of the code under test: scipy.special / closed forms
for the polynomials, a hand-written Cox-de Boor recursion for the B-splines,
explicit loops for the indicators and hats, numpy.linalg for ranks and singular
values, and central finite differences of the *original* shooting cost E^N(BC).
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

import flow
import stability
from flow import controls as fc, problems


EPS = np.finfo(np.float64).eps


def _nonuniform_grid(N, rng, t0=0.0, tf=1.0):
    w = rng.uniform(0.5, 1.5, N)
    g = t0 + (tf - t0) * np.concatenate([[0.0], np.cumsum(w) / np.sum(w)])
    g[-1] = tf
    return g


#: A grid clustered near t = 0: with 10 blocks uniform in time, blocks 3 and 5
#: hold no interval midpoint and blocks 0 and 1 hold two each.
CLUSTERED = np.array([0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 1.0])


def _cox_de_boor(t, knots, k):
    """B-spline values N_{j,k}(t), by the Cox-de Boor recursion (t inside the knots,
    right-open intervals except the last)."""
    n = len(knots) - k - 1
    t = np.asarray(t)
    B = np.zeros((t.size, len(knots) - 1))
    for i in range(len(knots) - 1):
        if knots[i] < knots[i + 1]:
            last = knots[i + 1] == knots[-1]
            B[:, i] = (knots[i] <= t) & ((t < knots[i + 1]) | (last & (t == knots[i + 1])))
    for d in range(1, k + 1):
        new = np.zeros((t.size, len(knots) - 1 - d))
        for i in range(len(knots) - 1 - d):
            a = knots[i + d] - knots[i]
            b = knots[i + d + 1] - knots[i + 1]
            left = (t - knots[i]) / a * B[:, i] if a > 0 else 0.0
            right = (knots[i + d + 1] - t) / b * B[:, i + 1] if b > 0 else 0.0
            new[:, i] = left + right
        B = new
    return B[:, :n]


# ------------------------------------------------------------------ bases
def test_polynomial_bases_against_scipy_and_closed_forms(rng):
    g = _nonuniform_grid(17, rng, 0.5, 2.5)
    mid = 0.5 * (g[:-1] + g[1:])
    s = 2 * (mid - 0.5) / 2.0 - 1
    leg = fc.Legendre(4).functions(g)
    ref = np.stack([scipy.special.eval_legendre(j, s) for j in range(5)], axis=1)
    # two evaluations of degree-4 polynomials on [-1, 1]: rounding only
    np.testing.assert_allclose(leg, ref, rtol=0, atol=1e-14)
    cheb = fc.Chebyshev(4).functions(g)
    ref = np.stack([np.cos(j * np.arccos(s)) for j in range(5)], axis=1)
    np.testing.assert_allclose(cheb, ref, rtol=0, atol=1e-14)
    # interval averages of T_0, T_1, T_2 in closed form (antiderivatives in s)
    avg = fc.Chebyshev(2, sample="average").functions(g)
    a, b = 2 * (g[:-1] - 0.5) / 2.0 - 1, 2 * (g[1:] - 0.5) / 2.0 - 1
    ref = np.stack(
        [
            np.ones_like(a),
            (b**2 - a**2) / 2 / (b - a),
            ((2 * b**3 / 3 - b) - (2 * a**3 / 3 - a)) / (b - a),
        ],
        axis=1,
    )
    # 8-point Gauss-Legendre is exact for quadratics: rounding only
    np.testing.assert_allclose(avg, ref, rtol=0, atol=1e-14)


def test_bspline_against_cox_de_boor(rng):
    g = _nonuniform_grid(30, rng)
    breaks = np.array([0.0, 0.2, 0.45, 0.7, 1.0])
    for degree in (0, 1, 2, 3):
        basis = fc.BSpline(degree, breaks)
        phi = basis.functions(g)
        knots = np.concatenate([np.zeros(degree), breaks, np.ones(degree)])
        ref = _cox_de_boor(0.5 * (g[:-1] + g[1:]), knots, degree)
        assert phi.shape == (30, len(breaks) - 1 + degree)
        np.testing.assert_allclose(phi, ref, rtol=0, atol=1e-14)
        # a partition of unity
        np.testing.assert_allclose(phi.sum(axis=1), 1.0, rtol=0, atol=1e-14)
    # uniform knots from an integer
    np.testing.assert_allclose(
        fc.BSpline(2, 4).functions(g), fc.BSpline(2, [0, 0.25, 0.5, 0.75, 1.0]).functions(g)
    )


def test_piecewise_constant_and_hat_against_loops(rng):
    g = _nonuniform_grid(23, rng)
    breaks = [0.0, 0.3, 0.35, 0.8, 1.0]
    mid = fc.PiecewiseConstant(breaks).functions(g)
    avg = fc.PiecewiseConstant(breaks, sample="average").functions(g)
    ref_mid = np.zeros((23, 4))
    ref_avg = np.zeros((23, 4))
    for k in range(23):
        c = 0.5 * (g[k] + g[k + 1])
        for j in range(4):
            ref_mid[k, j] = float(breaks[j] <= c < breaks[j + 1])
            ref_avg[k, j] = max(0.0, min(g[k + 1], breaks[j + 1]) - max(g[k], breaks[j]))
            ref_avg[k, j] /= g[k + 1] - g[k]
    np.testing.assert_array_equal(mid, ref_mid)
    np.testing.assert_allclose(avg, ref_avg, rtol=0, atol=1e-14)
    nodes = np.linspace(0, 1, 6)
    hat = fc.Hat(5).functions(g)
    c = 0.5 * (g[:-1] + g[1:])
    ref = np.maximum(0.0, 1 - np.abs(c[:, None] - nodes[None, :]) / 0.2)
    np.testing.assert_allclose(hat, ref, rtol=0, atol=1e-14)


def test_matrix_ordering_for_several_controls(rng):
    """B = kron(Phi, I_m): row k*m+i, column j*m+i' holds Phi[k, j] delta_{i i'}, so
    U = Phi @ C.reshape(q, m) equals (B @ C).reshape(N, m)."""
    g = np.linspace(0, 2, 9)
    basis = fc.Legendre(2)
    B = basis.matrix(g, 3)
    phi = basis.functions(g)
    assert B.shape == (8 * 3, 3 * 3)
    for k in range(8):
        for i in range(3):
            for j in range(3):
                for i2 in range(3):
                    assert B[k * 3 + i, j * 3 + i2] == (phi[k, j] if i == i2 else 0.0)
    C = rng.standard_normal(9)
    np.testing.assert_allclose((B @ C).reshape(8, 3), phi @ C.reshape(3, 3), rtol=1e-14)


# ------------------------------------------------------------ rank report
@pytest.mark.parametrize(
    "make",
    [
        lambda g: fc.Legendre(3),
        lambda g: fc.BSpline(3, 6),
        lambda g: fc.Hat(8, sample="average"),
        # more polynomials than intervals: rank N < p
        lambda g: fc.Chebyshev(14),
        # N uniform-in-time blocks on a nonuniform grid: empty blocks and tied intervals
        lambda g: fc.PiecewiseConstant(len(g) - 1, sample="average"),
        # a user matrix with a repeated column
        lambda g: fc.Sampled(np.repeat(fc.Legendre(2).functions(g), [1, 2, 1], axis=1)),
    ],
)
def test_rank_report_against_numpy(make, rng):
    g = CLUSTERED
    basis = make(g)
    rep = fc.rank_report(basis, g)
    B = basis.matrix(g)
    s_ref = np.linalg.svd(B, compute_uv=False)
    np.testing.assert_allclose(rep.singular_values, s_ref, rtol=1e-13, atol=1e-14 * s_ref[0])
    assert rep.rank == np.linalg.matrix_rank(B)
    assert rep.rows == B.shape[0] and rep.columns == B.shape[1]
    assert rep.rank_deficient == (np.linalg.matrix_rank(B) < B.shape[1])
    assert rep.invisible_dimension == B.shape[0] - np.linalg.matrix_rank(B)
    if rep.rank == min(B.shape):
        np.testing.assert_allclose(rep.condition_number, np.linalg.cond(B), rtol=1e-10)
    else:
        assert rep.condition_number == np.inf
    json.dumps(rep.to_dict())


def test_rank_deficient_bases_are_reported(rng):
    g = _nonuniform_grid(10, rng)
    rep = fc.rank_report(fc.Chebyshev(14), g)
    assert rep.rank_deficient and rep.rank == 10 and rep.invisible_dimension == 0
    rep = fc.rank_report(fc.PiecewiseConstant(10), CLUSTERED)
    # blocks 3 and 5 are empty: rank 8 of 10 columns, and 2 gradient directions
    # (u_0 - u_1, u_2 - u_3) are invisible
    assert rep.rank_deficient and rep.rank == 8 and rep.invisible_dimension == 2
    assert "RANK DEFICIENT" in repr(rep)
    full = fc.rank_report(fc.BSpline(0, g), g)  # one block per interval: B = I
    assert not full.rank_deficient and full.invisible_dimension == 0
    assert full.condition_number == pytest.approx(1.0, abs=1e-14)
    # a looser relative tolerance counts small singular values as zero
    rep = fc.rank_report(fc.Legendre(8), g, rtol=1e-2)
    s = np.linalg.svd(fc.Legendre(8).matrix(g), compute_uv=False)
    assert rep.rank == int(np.sum(s > 1e-2 * s[0]))


# -------------------------------------------------------- parameterization
@pytest.fixture(scope="module")
def lq_param():
    sh = flow.shoot(problems.linear_quadratic(**problems.DEFAULT_LQ), 16, flow.Heun())
    return sh, fc.parameterize(sh, fc.BSpline(2, 3))


def test_gradient_in_C_against_finite_differences(lq_param, rng):
    """grad_C = B^T grad_U (eq. (43)), checked against central differences of the
    original E^N(B C) and against B^T times the original gradient."""
    sh, param = lq_param
    B = fc.BSpline(2, 3).matrix(np.asarray(sh.grid), sh.control_dim)
    p = B.shape[1]
    assert param.control_shape == (1, p) and param.N == 1
    C = jnp.asarray(rng.standard_normal((1, p)))
    g = np.asarray(param.gradient(C)).reshape(-1)

    def E(c):
        return float(sh.cost(jnp.asarray((B @ c).reshape(sh.control_shape))))

    fd = np.zeros(p)
    c0 = np.asarray(C).reshape(-1)
    for j in range(p):
        d = EPS ** (1 / 3) * max(1.0, abs(c0[j]))
        e = np.zeros(p)
        e[j] = d
        fd[j] = (E(c0 + e) - E(c0 - e)) / ((c0[j] + d) - (c0[j] - d))
    # central differences with step eps^(1/3): error ~ eps^(2/3) (|E| + |E'''|) ~ 1e-10
    np.testing.assert_allclose(g, fd, rtol=0, atol=1e-8 * max(1.0, np.max(np.abs(fd))))
    gU = np.asarray(sh.gradient(jnp.asarray((B @ c0).reshape(sh.control_shape)))).reshape(-1)
    # the same adjoint sweep: rounding only
    np.testing.assert_allclose(g, B.T @ gU, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(g, np.asarray(param.gradient(C, "costate")).reshape(-1), rtol=1e-12)
    np.testing.assert_allclose(float(param.cost(C)), E(c0), rtol=1e-14)
    # Hessian-vector product in C: B^T Hess_U (B V) (forward-over-reverse both ways)
    V = rng.standard_normal(p)
    HV = np.asarray(param.hessian_vector_product(C, jnp.asarray(V.reshape(1, p)))).reshape(-1)
    HUV = sh.hessian_vector_product(
        jnp.asarray((B @ c0).reshape(sh.control_shape)),
        jnp.asarray((B @ V).reshape(sh.control_shape)),
    )
    np.testing.assert_allclose(HV, B.T @ np.asarray(HUV).reshape(-1), rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(
        np.asarray(fc.expand(param, C)), (B @ c0).reshape(sh.control_shape), rtol=1e-15
    )
    # vmap over C agrees with single evaluations
    Cs = jnp.asarray(rng.standard_normal((3, 1, p)))
    vc = jax.vmap(param.cost)(Cs)
    np.testing.assert_allclose(vc, [float(param.cost(c)) for c in Cs], rtol=1e-14)


def test_l2_metric_is_the_gram_matrix(lq_param):
    sh, param = lq_param
    B = fc.BSpline(2, 3).matrix(np.asarray(sh.grid), sh.control_dim)
    w = np.repeat(np.asarray(sh.steps), sh.control_dim)
    M = fc.l2_metric(param)
    np.testing.assert_allclose(np.asarray(M.operator.matrix), B.T @ (w[:, None] * B), rtol=1e-14)


@pytest.fixture(scope="module")
def legendre_param():
    sh = flow.shoot(problems.scalar_regularized(), 20)
    return sh, fc.parameterize(sh, fc.Legendre(2))


def test_descend_flow_and_stability_run_on_a_parameterized_problem(legendre_param):
    """flow.descend, flow.gradient_flow and stability.{equilibrium, spectrum, analyze}
    accept the parameterized Shooting unchanged and agree with each other and
    with a dense numpy eigen-decomposition."""
    sh, param = legendre_param
    tr = flow.descend(
        param,
        param.zeros(),
        metric=flow.metrics.Identity(),
        step=1.0,
        max_steps=500,
        tol=1e-11,
        stop_on="gradient",
    )
    fs = flow.gradient_flow(
        param,
        param.zeros(),
        metric=flow.metrics.Identity(),
        rtol=1e-10,
        atol=1e-12,
        tol=1e-9,
        stop_on="gradient",
    )
    eq = stability.equilibrium(param, stop_on="gradient")
    assert tr.success and fs.success and eq.success
    # three routes to the same stationary C: the descent's tolerance 1e-11 over the
    # smallest Hessian eigenvalue (~0.2) bounds its error by ~5e-11; the flow's by
    # 1e-9/0.2 = 5e-9
    np.testing.assert_allclose(np.asarray(tr.U), np.asarray(eq.U), rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.asarray(fs.U), np.asarray(eq.U), rtol=0, atol=2e-8)
    spec = stability.spectrum(stability.linearize(param, eq.U, metric="identity"))
    H = np.asarray(param.hessian(eq.U))
    ref = np.sort(-np.linalg.eigvalsh(H))
    np.testing.assert_allclose(np.sort(np.real(spec.eigenvalues)), ref, rtol=1e-10)
    rep = stability.analyze(param, metric="identity", tol=1e-9)
    assert rep.classification.kind == "asymptotically stable"
    assert rep.replay is not None and rep.replay.success
    np.testing.assert_allclose(np.asarray(rep.equilibrium.U), np.asarray(eq.U), atol=1e-9)


def test_badly_chosen_basis_stalls_at_a_spurious_point(legendre_param):
    """Remark 5.13: an affine control (Legendre degree 1) reaches B^T g = 0 (eq. (52))
    while g != 0 and dH/du != 0: the optimizer reports convergence at a point that
    is not stationary for E^N ((51)); the full-rank basis does not."""
    sh, _ = legendre_param
    param = fc.parameterize(sh, fc.Legendre(1))
    tr = flow.descend(
        param,
        param.zeros(),
        metric=flow.metrics.Identity(),
        step=1.0,
        max_steps=500,
        tol=1e-11,
        stop_on="gradient",
    )
    assert tr.success
    chk = fc.spurious_check(param, tr.U)
    assert chk.spurious and chk.stationary_in_C and not chk.stationary_in_U
    assert chk.gradient_C_norm <= 1e-11
    # independent: dH/du = lambda_k + u_k (rho = 1), from the costates of the original
    U = np.asarray(fc.expand(param, tr.U))
    lam = np.asarray(sh.costates(jnp.asarray(U)))[:, 0]
    assert chk.hamiltonian_norm == pytest.approx(np.max(np.abs(lam + U[:, 0])), rel=1e-12)
    assert chk.hamiltonian_norm > 1e-2
    g = np.asarray(sh.gradient(jnp.asarray(U))).reshape(-1)
    assert chk.gradient_U_norm == pytest.approx(np.max(np.abs(g)), rel=1e-12)
    # the true optimum of E^N is lower
    eq = stability.equilibrium(sh, stop_on="gradient")
    assert eq.cost < chk.cost - 1e-4
    # the same check from the original shooting and the basis
    chk2 = fc.spurious_check(sh, tr.U, basis=fc.Legendre(1))
    assert chk2.spurious and chk2.hamiltonian_norm == pytest.approx(chk.hamiltonian_norm)
    # one function per interval (B = I, invisible dimension 0): not spurious
    ident = fc.parameterize(sh, fc.BSpline(0, np.asarray(sh.grid)))
    full = fc.spurious_check(ident, np.asarray(eq.U).reshape(1, -1))
    assert not full.spurious and full.stationary_in_U
    json.dumps(chk.to_dict())


def test_rank_deficient_blocks_are_detected(rng):
    """N blocks uniform in time on a nonuniform grid: p = N columns, yet some blocks
    are empty and some intervals share a control (rank < N). The descent stalls at
    a spurious point with tied controls."""
    sh = flow.shoot(problems.scalar_regularized(), CLUSTERED)
    basis = fc.PiecewiseConstant(10)
    rep = fc.rank_report(basis, sh)
    assert rep.rank_deficient and rep.invisible_dimension > 0
    param = fc.parameterize(sh, basis)
    eq = stability.equilibrium(param, tol=1e-12, stop_on="gradient")
    assert eq.success
    chk = fc.spurious_check(param, eq.U)
    assert chk.spurious and chk.hamiltonian_norm > 1e-3
    assert chk.rank == rep.rank < chk.rows


# ----------------------------------------------------------------- errors
def test_bad_inputs():
    sh = flow.shoot(problems.scalar_regularized(), 10)
    with pytest.raises(ValueError, match="rows"):
        fc.parameterize(sh, np.ones((11, 2)))
    with pytest.raises(ValueError, match="rows"):
        fc.rank_report(fc.Sampled(np.ones((9, 2))), sh)
    with pytest.raises(ValueError, match="`knots` must be strictly increasing"):
        fc.BSpline(3, [0.0, 0.5, 0.5, 1.0])
    with pytest.raises(ValueError, match="`knots` must be strictly increasing"):
        fc.BSpline(3, [0.0, 0.7, 0.5, 1.0])
    with pytest.raises(ValueError, match="`breakpoints` must be strictly increasing"):
        fc.PiecewiseConstant([0.0, 0.5, 0.2, 1.0])
    with pytest.raises(ValueError, match="`knots` must start at t0"):
        fc.BSpline(2, [0.1, 0.5, 1.0]).functions(sh)
    with pytest.raises(ValueError, match="`degree` must be an integer >= 0"):
        fc.Legendre(-1)
    with pytest.raises(TypeError, match="`degree` must be an integer"):
        fc.Chebyshev(2.5)
    with pytest.raises(TypeError, match="`degree` must be an integer"):
        fc.BSpline(True, 3)
    with pytest.raises(ValueError, match="`sample`"):
        fc.Hat(3, sample="left")
    with pytest.raises(ValueError, match="`grid` must be strictly increasing"):
        fc.rank_report(fc.Legendre(2), [0.0, 0.5, 0.4, 1.0])
    with pytest.raises(TypeError, match="`grid`"):
        fc.rank_report(fc.Legendre(2), 10)
    with pytest.raises(TypeError, match="`basis`"):
        fc.parameterize(sh, "legendre")
    param = fc.parameterize(sh, fc.Legendre(2))
    with pytest.raises(ValueError, match="already parameterized"):
        fc.parameterize(param, fc.Legendre(1))
    with pytest.raises(ValueError, match="`basis` is required"):
        fc.spurious_check(sh, np.zeros(3))
    with pytest.raises(ValueError, match=r"`C` must have shape"):
        fc.spurious_check(param, np.zeros(4))
    with pytest.raises(TypeError, match="parameterized Shooting"):
        fc.expand(sh, np.zeros(3))
    with pytest.raises(ValueError, match="not positive definite"):
        fc.l2_metric(fc.parameterize(sh, fc.Chebyshev(12)))
