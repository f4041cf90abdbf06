"""figures/unstable_flows.py: section 5.1, subproblem 1 (an unstable or marginal flow
defeats every step size), at the quick size, against references computed here with
numpy: closed forms and finite differences of hand-written costs."""

import numpy as np
import pytest
from _figure_files import check_files

from figures import unstable_flows as uf


RHO = 0.5  # double_well's default control weight


@pytest.fixture(scope="module")
def fig():
    return uf.compute(quick=True)


def test_the_quick_figure_draws(fig, tmp_path):
    # what make(quick=True) writes, from the data the tests below check
    check_files(uf.draw(fig, tmp_path), tmp_path, "unstable_flows")


def _fd_hessian(cost, U: np.ndarray, step: float) -> np.ndarray:
    """Central second differences of a numpy cost (error O(step^2) + O(eps/step^2))."""
    n = U.size
    H = np.empty((n, n))
    E = np.eye(n) * step
    for i in range(n):
        for j in range(i, n):
            H[i, j] = H[j, i] = (
                cost(U + E[i] + E[j])
                - cost(U + E[i] - E[j])
                - cost(U - E[i] + E[j])
                + cost(U - E[i] - E[j])
            ) / (4 * step * step)
    return H


def _double_well_cost(U: np.ndarray) -> float:
    """E^N of double_well with Euler: x_N = h sum u, the running cost rho/2 h sum u^2."""
    h = 1.0 / U.size
    return 0.25 * ((h * U.sum()) ** 2 - 1.0) ** 2 + 0.5 * RHO * h * np.sum(U**2)


def _mayer_states(U: np.ndarray) -> np.ndarray:
    """x_0..x_N of scalar_mayer by forward Euler: x' = -x + u - 0.1 x^3, x(0) = 0."""
    h = 1.0 / U.size
    x = np.zeros(U.size + 1)
    for k, u in enumerate(U):
        x[k + 1] = x[k] + h * (-x[k] + u - 0.1 * x[k] ** 3)
    return x


def _mayer_cost(U: np.ndarray) -> float:
    return 0.5 * (_mayer_states(U)[-1] - 1.0) ** 2


def _mayer_sensitivity(U: np.ndarray) -> np.ndarray:
    """g_k = dx_N/du_k = h prod_{j > k} (1 + h(-1 - 0.3 x_j^2)) (the Euler recursion);
    at a minimiser (x_N = 1) the Hessian of E^N is g g^T."""
    h = 1.0 / U.size
    x = _mayer_states(U)
    factors = 1.0 + h * (-1.0 - 0.3 * x[1:-1] ** 2)  # d x_{j+1} / d x_j, j = 1..N-1
    tail = np.append(np.cumprod(factors[::-1])[::-1], 1.0)
    return h * tail


def test_double_well_saddle_at_zero(fig):
    s = fig["saddle"]
    N = s["shooting"].N
    h = 1.0 / N
    # U = 0 is stationary: equilibrium() stays there (0 iterations, zero gradient)
    assert s["equilibrium"].num_steps == 0 and s["equilibrium"].gradient_norm == 0.0
    # the Hessian at 0 by finite differences of the hand-written cost, and in closed
    # form -h^2 1 1^T + rho h I (the cost is a quartic; step 1e-3 leaves an O(1e-7) error)
    H_fd = _fd_hessian(_double_well_cost, np.zeros(N), 1e-3)
    H = -(h**2) * np.ones((N, N)) + RHO * h * np.eye(N)
    np.testing.assert_allclose(H_fd, H, atol=1e-8)
    # J = -M^-1 H with M = h I: eigenvalues -rho (N-1 times) and 1 - rho > 0
    mu_ref = np.sort(np.linalg.eigvalsh(-H / h))
    np.testing.assert_allclose(mu_ref, [-RHO] * (N - 1) + [1 - RHO], atol=1e-13)
    np.testing.assert_allclose(np.sort(s["mu"]), mu_ref, atol=1e-12)
    assert s["mu_max"] == pytest.approx(1 - RHO, rel=1e-12)
    cls = s["classification"]
    assert cls.kind == "saddle" and cls.n_unstable == 1 and cls.n_stable == N - 1
    # alpha_max at the minimisers: J there has eigenvalues -rho and -(2 - 2 rho)
    assert s["alpha_max"] == pytest.approx(2 / max(RHO, 2 - 2 * RHO), rel=1e-10)


def test_growth_per_step_is_one_plus_alpha_mu_max(fig):
    s = fig["saddle"]
    alphas, factors = s["growth"][:, 0], s["growth"][:, 1]
    # the unstable component is multiplied by 1 + alpha (1 - rho) per step, whatever
    # alpha > 0. The cubic term of the gradient is |x_N|^2 ~ |U|^2/N relative to the
    # linear one: ~1e-16 at |U| ~ 1e-8, but at alpha_max the component doubles each
    # step and reaches |U| ~ 1e-2 after 20 steps (about 3e-8 on the mean factor)
    small = alphas < 0.5 * s["alpha_max"]
    pred = 1.0 + alphas * (1 - RHO)
    np.testing.assert_allclose(factors[small], pred[small], rtol=1e-10)
    np.testing.assert_allclose(factors, pred, rtol=1e-7)
    assert np.all(factors > 1.0)
    assert alphas.min() <= 1e-3 * s["alpha_max"] * 1.0001  # far below alpha_max too


def test_every_step_leaves_the_saddle(fig):
    s = fig["saddle"]
    N = s["shooting"].N
    d0 = np.linalg.norm(s["U0"])
    for run in s["runs"]:
        dist = run["distance"]
        assert dist[-1] > 1e7 * d0, run["fraction"]
        # ... along the constant vector (the unstable eigenvector; the others have
        # decayed), towards a minimiser, the constant control +-sqrt(1 - rho) (the
        # largest step contracts by only |1 - 0.9 * 2 * 1| = 0.8 per step there)
        assert np.ptp(run["final"]) < 1e-7
        np.testing.assert_allclose(np.abs(run["final"]), np.sqrt(1 - RHO), rtol=1e-2)
        # in the linear regime the distance is the unstable component's prediction
        k = int(np.argmax(run["prediction"] > 1e-5))
        assert run["prediction"][k] == pytest.approx(dist[k], rel=1e-4)
        if run["fraction"] <= 0.25:  # these have converged
            assert dist[-1] == pytest.approx(np.sqrt(N * (1 - RHO)), rel=1e-9)
            assert run["hamiltonian_norm"] < 1e-9


def test_scalar_mayer_minimisers_are_a_manifold(fig):
    m = fig["marginal"]
    N = m["shooting"].N
    h = 1.0 / N
    for end in m["ends"]:
        U = end["U"][:, 0]
        # a minimiser: x_N = 1 by the hand-written recursion
        assert abs(_mayer_states(U)[-1] - 1.0) < 1e-11
        # the Hessian there: finite differences agree with g g^T (rank 1) ...
        g = _mayer_sensitivity(U)
        H_fd = _fd_hessian(_mayer_cost, U, 1e-4)
        np.testing.assert_allclose(H_fd, np.outer(g, g), atol=1e-7)
        lam = np.linalg.eigvalsh(H_fd)
        assert int(np.sum(np.abs(lam) <= 1e-5 * np.abs(lam).max())) == N - 1
        # ... so J = -H/h has one eigenvalue -|g|^2/h and N - 1 zeros
        cls = end["classification"]
        assert cls.kind == "marginal" and cls.n_zero == N - 1 and cls.n_stable == 1
        mu = np.sort(np.real(np.asarray(end["spectrum"].eigenvalues)))
        assert mu[0] == pytest.approx(-(g @ g) / h, rel=1e-10)
        assert np.max(np.abs(mu[1:])) < 1e-12
    # different starts, different minimisers
    off = m["pairwise"][np.triu_indices(len(m["ends"]), 1)]
    assert off.min() > 0.5


def test_zero_eigenvalues_do_not_contract(fig):
    m = fig["marginal"]
    N = m["shooting"].N
    h = 1.0 / N
    U_star, delta = m["U_star"], m["delta"]
    g = _mayer_sensitivity(U_star)
    mu_1 = -(g @ g) / h
    assert m["mu_1"] == pytest.approx(mu_1, rel=1e-10)
    # the projector onto the null space of g^T, independently of the figure's eigh
    P0 = np.eye(N) - np.outer(g, g) / (g @ g)
    # the limit is U* plus the null-space part of delta (to second order in |delta|)
    np.testing.assert_allclose(m["U_limit"] - U_star, P0 @ delta, atol=1e-3 * np.linalg.norm(delta))
    # the null-space component does not move, to second order ...
    null = m["null_part"]
    assert np.linalg.norm(P0 @ delta) == pytest.approx(null[0], rel=1e-12)
    assert np.max(np.abs(null - null[0])) < 1e-3 * null[0]
    # ... while the other contracts by |1 + alpha mu_1| per step (the linearisation at
    # U_infinity, O(|delta|) from U*'s)
    r = m["range_part"]
    ratios = r[1:20] / r[:19]
    np.testing.assert_allclose(ratios, abs(1 + m["alpha"] * mu_1), rtol=1e-2)
    assert r[40] < 1e-8 * r[0]  # 0.6^40 = 1.3e-9


@pytest.mark.slow
def test_full_size_numbers():
    # the numbers docs/figures.md quotes (N = 20; about 10 s)
    d = uf.compute()
    s, m = d["saddle"], d["marginal"]
    N = uf.N_FULL
    assert s["classification"].kind == "saddle" and s["classification"].n_unstable == 1
    assert s["alpha_max"] == pytest.approx(2.0, rel=1e-10)
    np.testing.assert_allclose(s["growth"][:, 1], 1 + s["growth"][:, 0] * (1 - RHO), rtol=1e-7)
    for run in s["runs"]:
        assert run["distance"][-1] > 1e7 * run["distance"][0]
    for end in m["ends"]:
        cls = end["classification"]
        assert cls.kind == "marginal" and cls.n_zero == N - 1
        assert abs(_mayer_states(end["U"][:, 0])[-1] - 1.0) < 1e-11
    assert m["pairwise"][np.triu_indices(len(m["ends"]), 1)].min() > 4.0
    null = m["null_part"]
    assert np.max(np.abs(null - null[0])) < 1e-6 * null[0]
