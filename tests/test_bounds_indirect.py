r"""Control bounds on the indirect side: `flow.indirect.costate_shooting` with the
minimum principle on the box, and `stability.basin` on bounded problems.

References: closed forms derived by hand in the docstrings (linear dynamics
$x' = u$, where the costate is constant and the optimal control is a constant on the
box), the direct method's bounded equilibrium (`stability.equilibrium`, projected
Newton-CG, checked against CasADi + IPOPT in test_bounds.py) at growing N for the
$O(h)$ convergence of Euler to the continuous solution, and the unconstrained
minimiser of $H$ written out by hand for each built-in.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import fit_order

import flow
import stability
from flow._box_control import BoxNewtonControl
from flow.indirect import costate_shooting


# ------------------------------------------------ a closed form: x' = u on a box

W, A = 10.0, 1.0  # E = W (x(1) - A)^2 / 2


def _line(x, u):
    return u


def _target(x):
    return 0.5 * W * (x[0] - A) ** 2


def _effort(x, u):
    return 0.5 * jnp.sum(u**2)


def _line_problem(bounds):
    return flow.OptimalControlProblem(
        _line, _target, [0.0], 0.0, 1.0,
        running_cost=_effort, control_dim=1, control_bounds=bounds, name="line",
    )  # fmt: skip


def _minus_costate(x, lam):
    """The unconstrained minimiser of H = lam u + u^2/2 (one function: one compilation)."""
    return -lam


#: the unconstrained optimum u = W A / (1 + W T) of the line problem
U_FREE = W * A / (1.0 + W)


@pytest.mark.parametrize(
    "bounds, c",
    [
        ((-1.0, 0.5), 0.5),
        pytest.param((0.95, 2.0), 0.95, marks=pytest.mark.slow),  # 9 s each; the upper
        pytest.param((-1.0, 2.0), U_FREE, marks=pytest.mark.slow),  # case runs by default
    ],
    ids=["upper active", "lower active", "inactive"],
)
def test_costate_shooting_on_a_box_closed_form(bounds, c):
    r"""$\dot x = u$, $x(0) = 0$, $L = u^2/2$, $E = w(x(1) - a)^2/2$ ($w = 10$, $a = 1$).

    $H = \lambda u + u^2/2$ does not depend on $x$, so $\dot\lambda = 0$ and
    $\lambda = w(x(1) - a)$ is constant; $u = \arg\min_{\ell \le u \le \upsilon} H =
    P(-\lambda)$ is constant, $x(t) = c t$. Without bounds $c = -\lambda = -w(c - a)$
    gives $c^* = wa/(1 + w) = 10/11$. The problem is convex (quadratic cost, linear
    dynamics), so the box solution is the unique fixed point $c = P(-w(c - a))$: for
    $\upsilon = 0.5 < c^*$, $c = 0.5$ ($\lambda = -5$, and $-\lambda = 5 \ge 0.5$ pushes
    out of the top); for $\ell = 0.95 > c^*$, $c = 0.95$ ($\lambda = -0.5$, and
    $-\lambda = 0.5 \le 0.95$ pushes out of the bottom); for the box $[-1, 2]$ the
    bound is inactive and $c = c^*$, $\lambda = -c^*$.

    Everything is a polynomial of degree $\le 1$ in $t$, which Tsit5 integrates
    exactly: the result agrees to rounding (1e-12). The residual
    $F(\lambda_0) = \lambda_0 - w(x(1) - a)$ is affine near the root with slope 1
    on an active bound ($u$ does not move with $\lambda_0$) and $1 + w$ when free, so
    Newton with the right derivative lands on the root in one step and stops at
    most two steps later. A derivative that moved an active control (slope $1 + w$
    where it is 1) would contract by $w/(1+w)$ per step and need hundreds.
    """
    traj = costate_shooting(_line_problem(bounds), [0.0])
    lam = W * (c - A)
    assert traj.status == "converged" and int(traj.num_steps) <= 3
    assert abs(float(traj.lambda0[0]) - lam) <= 1e-12 * abs(lam)
    assert float(traj.lambda0[1]) == 1.0
    ts = jnp.linspace(0.0, 1.0, 9)
    np.testing.assert_allclose(traj.controls(ts), c, rtol=1e-12, atol=0)
    np.testing.assert_allclose(traj.costates(ts)[:, 0], lam, rtol=1e-12, atol=0)
    np.testing.assert_allclose(traj.states(ts)[:, 0], c * ts, rtol=1e-12, atol=1e-15)
    # a user's law that ignores the bounds (u = -lambda, the unconstrained minimiser of
    # H) is clipped onto the box: the box-constrained minimiser here (m = 1)
    user = costate_shooting(_line_problem(bounds), [0.0], control_law=_minus_costate)
    assert abs(float(user.lambda0[0]) - lam) <= 1e-12 * abs(lam)
    np.testing.assert_allclose(user.controls(ts), c, rtol=1e-12, atol=0)
    if c == U_FREE:  # an inactive box changes nothing: unbounded costate shooting
        free = costate_shooting(_line_problem(None), [0.0])
        assert abs(float(free.lambda0[0]) - float(traj.lambda0[0])) <= 1e-14
        np.testing.assert_allclose(traj.controls(ts), free.controls(ts), rtol=1e-14, atol=0)


@pytest.mark.slow  # 7 s; the default run keeps the closed forms
def test_coupled_controls_on_a_box_are_not_the_clip_of_the_free_minimiser():
    r"""$m = 2$ with a coupled control cost: $\dot x = u$ ($n = 2$), $x(0) = 0$,
    $L = u^T R u/2$, $R = [[1, 1/2], [1/2, 1]]$, $E = w|x(1) - a|^2/2$, $w = 10$,
    $a = (2, -1)$, box $u_0 \le 1$ (and $\pm 5$ elsewhere, inactive).

    As above $\lambda = w(x(1) - a)$ is constant, so is $u = c$, and $c$ minimises
    the convex $J(c) = c^T R c/2 + w|c - a|^2/2$ over the box: the box QP with
    $Q = R + wI$, $b = wa$. Its unconstrained minimiser $Q^{-1}b$ has $c_0 > 1$, so
    $c_0 = 1$, and the free component solves $Q_{11}c_1 + Q_{10}c_0 = b_1$:
    $c_1 = (-10 - 0.5)/11$. KKT: $\partial J/\partial c_0 = Q_{00} + Q_{01}c_1 - b_0
    < 0$ at the upper bound (checked below).

    By the minimum principle of this convex problem, $c$ minimises
    $H = \lambda^Tu + u^TRu/2$ over the box at $\lambda = w(c - a)$. The clip of the
    unconstrained minimiser of $H$, $P(-R^{-1}\lambda) = (1, -5)$ there, is not $c$
    (checked below): the method must re-solve the free component with the active one
    held (projected Newton). Linear in $t$ again: rounding, 1e-12."""
    R = jnp.array([[1.0, 0.5], [0.5, 1.0]])
    a = jnp.array([2.0, -1.0])
    problem = flow.OptimalControlProblem(
        _line, lambda x: 0.5 * W * jnp.sum((x - a) ** 2), [0.0, 0.0], 0.0, 1.0,
        running_cost=lambda x, u: 0.5 * u @ R @ u, control_dim=2,
        control_bounds=([-5.0, -5.0], [1.0, 5.0]),
    )  # fmt: skip
    Q = np.asarray(R) + W * np.eye(2)
    b = W * np.asarray(a)
    c = np.array([1.0, (b[1] - Q[1, 0]) / Q[1, 1]])
    assert Q[0] @ c - b[0] < 0  # the upper bound holds c_0 (KKT sign)
    assert np.linalg.solve(Q, b)[0] > 1.0  # ... and is active
    lam = W * (c - np.asarray(a))
    naive = np.clip(-np.linalg.solve(np.asarray(R), lam), [-5.0, -5.0], [1.0, 5.0])
    assert np.max(np.abs(naive - c)) > 1.0  # the clip of the free minimiser is wrong
    traj = costate_shooting(problem, [0.0, 0.0])
    # u(lambda) is affine near the root (u_0 held, u_1 from the free equation), so is
    # F: with the implicit-function derivative on the free component and zero on the
    # active one, Newton lands on the root in one step
    assert traj.status == "converged" and int(traj.num_steps) <= 3
    np.testing.assert_allclose(traj.lambda0[:2], lam, rtol=1e-12, atol=1e-12)
    ts = jnp.linspace(0.0, 1.0, 5)
    np.testing.assert_allclose(traj.controls(ts), np.broadcast_to(c, (5, 2)), rtol=1e-12)


def _box_qp_by_enumeration(Q, b, lo, hi):
    """arg min u'Qu/2 + b'u on the box, Q symmetric positive definite: the one pattern
    (lower, free, upper per component) whose equality-constrained minimiser is in the
    box with multipliers of the right sign (the KKT point, unique)."""
    for pattern in itertools.product((-1, 0, 1), repeat=b.size):
        pattern = np.array(pattern)
        if np.any(~np.isfinite(np.where(pattern == -1, lo, np.where(pattern == 1, hi, 0.0)))):
            continue
        u = np.where(pattern == -1, lo, np.where(pattern == 1, hi, 0.0))
        F = pattern == 0
        if F.any():
            u[F] = np.linalg.solve(Q[np.ix_(F, F)], -b[F] - Q[np.ix_(F, ~F)] @ u[~F])
        g = Q @ u + b
        scale = 1e-9 * (1.0 + np.max(np.abs(b)))
        if (
            np.all((u >= lo - 1e-12) & (u <= hi + 1e-12))
            and np.all(g[pattern == -1] >= -scale)
            and np.all(g[pattern == 1] <= scale)
        ):
            return u
    raise AssertionError("no KKT point: Q is not positive definite")


def test_box_minimiser_of_H_against_an_enumeration_of_active_sets():
    r"""The control law itself, $u(x, \lambda) = \arg\min_{\ell \le u \le \upsilon} H$,
    for $m = 3$: $\dot x = u$, $L = u^TQu/2$, so $H = b^Tu + u^TQu/2$ with
    $b = \lambda$, a box QP. $Q$ is coupled and ill-conditioned (eigenvalues 1e3, 10,
    1 in a random basis); the box is $[-1, 1] \times [-0.5, \infty) \times
    (-\infty, 0.3]$; 300 random $b$ of different scales give every number of active
    components. Reference: the exact solution by enumerating the 27 active sets in
    numpy. Both solve the same linear systems: agreement to 1e-12 (measured 1e-14),
    from the default start $u = 0$, with no failure (NaN)."""
    rng = np.random.default_rng(5)
    V, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    Q = V @ np.diag([1e3, 10.0, 1.0]) @ V.T
    Qj = jnp.asarray(Q)
    lo, hi = np.array([-1.0, -0.5, -np.inf]), np.array([1.0, np.inf, 0.3])
    problem = flow.OptimalControlProblem(
        _line, lambda x: 0.0 * x[0], np.zeros(3), 0.0, 1.0,
        running_cost=lambda x, u: 0.5 * u @ Qj @ u, control_dim=3, control_bounds=(lo, hi),
    )  # fmt: skip
    control = BoxNewtonControl(problem, jnp.zeros(3))
    b = rng.standard_normal((300, 3)) * np.array([300.0, 10.0, 3.0])
    lam = jnp.asarray(np.concatenate([b, np.ones((300, 1))], axis=1))  # costate of L: 1
    U = np.asarray(jax.vmap(control)(jnp.zeros((300, 4)), lam))
    ref = np.array([_box_qp_by_enumeration(Q, bi, lo, hi) for bi in b])
    assert np.max(np.abs(U - ref)) <= 1e-12 * max(1.0, np.max(np.abs(ref)))
    on_bound = np.sum((ref == lo) | (ref == hi), axis=1)
    assert set(on_bound.tolist()) == {0, 1, 2, 3}


# ------------------------------------- a nonlinear built-in against the direct method


def _unconstrained_minimiser(name, x, lam):
    """arg min_u H(lam, x, u) without bounds, by hand from the problem's formulas
    (augmented state and costate, one row per time)."""
    if name == "van_der_pol_bounded":  # H = lam_0 (... + u) + lam_1 x_0 + x_0^2 + x_1^2 + u^2
        return -lam[:, 0] / 2.0
    # lotka_volterra_bounded: H_u = -0.4 lam_0 x_0 - 0.2 lam_1 x_1 + 2 rho lam_2 u, rho = 0.1
    return (0.4 * lam[:, 0] * x[:, 0] + 0.2 * lam[:, 1] * x[:, 1]) / (0.2 * lam[:, 2])


NS = (400, 800, 1600)


@pytest.mark.parametrize(
    "name",
    ["van_der_pol_bounded", pytest.param("lotka_volterra_bounded", marks=pytest.mark.slow)],
)
def test_costate_shooting_against_the_bounded_direct_method(name):
    r"""The continuous minimum principle on the box (costate shooting) against the
    direct method's bounded KKT point (`stability.equilibrium`, Euler) at
    N = 400, 800, 1600, with bounds active on part of the horizon.

    Euler is first order and the bounded control $u(t) = P(u_{free}(t))$ is Lipschitz
    (a clip of a smooth function), so $\max_k|u_k - u(t_k)| = O(h)$ across the
    switching times too: the fitted order lies in [0.8, 1.2] (measured 1.00 on Van der
    Pol, 1.06 on Lotka-Volterra, whose coarsest grid still carries an $O(h^2)$ part).
    The continuous solution is accurate far below the smallest error (about 1e-2): ODE
    tolerances 1e-12, and a root to 1e-7 on a residual whose sensitivity to
    $\lambda_0$ is at least 1 (the identity block of $\lambda(t_f)$).

    Newton on $\lambda_0$ has a small basin on these horizons (T = 10 and 12), so the
    guess is the Richardson extrapolation $2\lambda_0^{1600} - \lambda_0^{800}$ of the
    direct method's discrete costates ($\lambda_0^N \approx \lambda(t_1)$, $O(h)$).

    The active sets agree away from the switching times: where the continuous
    unconstrained minimiser $u_{free}(t_k)$ (written out by hand) is farther from a
    bound than twice the control error $e$ of N = 1600, the direct solution sits on
    that bound exactly when $u_{free}$ is beyond it. (The direct $u_k$ is the clip of
    the discrete $u_{free}$, Lemma 2, which is within about $e$ of the continuous one;
    the margin keeps out the switching times and the stretches where $u_{free}$ hovers
    at a bound, as Lotka-Volterra's does near its steady state. Both classes keep a
    fair part of the grid.)"""
    problem = flow.problems.get(name)
    n = problem.state_dim
    lo, hi = (float(np.asarray(b)[0]) for b in problem.control_bounds)
    direct = {}
    for N in NS:
        sh = flow.shoot(problem, N)  # Euler
        direct[N] = (sh, stability.equilibrium(sh))
    lam0 = {N: np.asarray(sh.costates(eq.U))[0, :n] for N, (sh, eq) in direct.items()}
    guess = 2.0 * lam0[1600] - lam0[800]
    traj = costate_shooting(problem, guess, rtol=1e-12, atol=1e-14, tol=1e-7)
    # one evaluation on the finest grid: the coarser grids are nested in it
    sh, eq = direct[NS[-1]]
    t = np.asarray(sh.grid[:-1])
    u_c = np.asarray(traj.controls(t))[:, 0]
    assert np.all((u_c >= lo) & (u_c <= hi))
    errs = []
    for N in NS:
        stride = NS[-1] // N
        assert np.allclose(np.asarray(direct[N][0].grid[:-1]), t[::stride], rtol=0, atol=1e-12)
        errs.append(np.max(np.abs(np.asarray(direct[N][1].U)[:, 0] - u_c[::stride])))
    hs = [1.0 / N for N in NS]
    assert 0.8 <= fit_order(hs[:2], errs[:2]) <= 1.2
    assert 0.8 <= fit_order(hs[1:], errs[1:]) <= 1.2
    # the active sets, away from the switching times
    x, lam = np.asarray(traj.states(t)), np.asarray(traj.costates(t))
    u_free = _unconstrained_minimiser(name, x, lam)
    clear = np.minimum(np.abs(u_free - lo), np.abs(u_free - hi)) > 2.0 * errs[-1]
    on_bound = (u_free <= lo) | (u_free >= hi)
    active = np.asarray(eq.active_set)[:, 0] != 0
    assert np.array_equal(active[clear], on_bound[clear])
    assert np.count_nonzero(clear & on_bound) >= 0.02 * t.size
    assert np.count_nonzero(clear & ~on_bound) >= 0.2 * t.size


# ------------------------------------------------------------------ basin


def _rootless(bounds):
    """tests/test_indirect.py's problem without a root: x' = u, L = u^2/2,
    E = -x(1)^2/2, x(0) = 1, on [0, 1]."""
    return flow.OptimalControlProblem(
        _line, _concave, [1.0], 0.0, 1.0,
        running_cost=_effort, control_dim=1, control_bounds=bounds, name="rootless",
    )  # fmt: skip


def _concave(x):
    return -0.5 * x[0] ** 2


def test_basin_on_a_box_closed_form():
    r"""A problem that has a root only with its bounds: $\dot x = u$, $x(0) = 1$,
    $L = u^2/2$, $E = -x(1)^2/2$. Without bounds $u = -\lambda_0$ ($\lambda$ is
    constant), $x(1) = 1 - \lambda_0$ and $F(\lambda_0) = \lambda_0 + x(1) = 1$ for
    every $\lambda_0$: no root (tests/test_indirect.py). On the box $[-1, 0.5]$,
    $u = P(-\lambda_0)$ and $F(\lambda_0) = \lambda_0 + 1 + P(-\lambda_0)$, which is
    $\lambda_0 + 1.5$ for $-\lambda_0 \ge 0.5$: the root $\lambda_0 = -1.5$, reached
    by one Newton step from any guess there. The bounds are given to `flow.shoot`
    (the problem itself is unbounded): basin must take the box from the shooting.
    The direct solution is $u_k = 0.5$: $E^N = h\sum u_k^2/2 - x_N^2/2$ with
    $x_N = 1 + h\sum u_k$ has $\partial E^N/\partial u_k = h(u_k - x_N)$, which is
    $< 0$ at $U = 0.5$ ($x_N = 1.5$): a KKT point with every control on the upper
    bound; it is the only one (a free $u_k = x_N \ge 1$ or a lower $u_k = -1$ with
    $x_N \le -1$ contradict $x_N \ge 0$).

    - starts: every start lies in the box, and they are $P(\xi)$ for the documented
      normal draws;
    - descent (Hamiltonian metric, $\alpha = 0.5$): from every start to $U = 0.5$
      (replayed with `flow.descend` from the recorded starts, to 1e-12: the
      projection puts the controls on the bound exactly);
    - costate shooting from the implied guesses $\lambda_0 = -x_N(U_0) \le -0.5$
      ($h\sum u \ge -0.5$ for these starts, checked): $F = \lambda_0 + 1.5$ there, so
      Newton converges from every start in at most 3 steps (with the box ignored,
      every start would fail);
    - Newton on (36) converges from every start."""
    N = 20
    sh = flow.shoot(_rootless(None), N, control_bounds=(-1.0, 0.5))
    b = stability.basin(sh, steps=(0.5,), dampings=(1.0,), n_starts=6, seed=1, conditions=True)
    starts = np.asarray(b.starts)
    xi = np.random.default_rng(1).standard_normal((6, N, 1))
    assert np.array_equal(starts, np.clip(xi, -1.0, 0.5))
    assert np.count_nonzero(starts == -1.0) > 0 and np.count_nonzero(starts == 0.5) > 0
    assert np.all(starts.sum(axis=(1, 2)) / N >= -0.5)  # the implied guesses are <= -0.5
    assert b.fractions("descent") == {0.5: 1.0}
    for U0 in starts:
        tr = flow.descend(sh, U0, step=0.5, max_steps=2000, tol=1e-6)
        np.testing.assert_allclose(tr.U, 0.5, rtol=0, atol=1e-12)
    (shooting,) = [r for r in b.rows if r.method == "costate shooting"]
    assert shooting.fraction == 1.0 and shooting.median_steps <= 3
    assert b.fractions("Newton on (36)") == {None: 1.0}
    d = b.to_dict(include_arrays=True)
    assert np.array_equal(np.asarray(d["starts"]), starts) and "starts" not in b.to_dict()


@pytest.mark.slow  # 7 s; the default run keeps the closed forms
def test_basin_on_a_bounded_builtin():
    r"""Lotka-Volterra with $0 \le u \le 1$ at N = 30 from 4 starts around $u = 0.5$
    (spread 1, so many components start on a bound): the starts are the documented
    projected draws; every descent start that converges ends at the bounded equilibrium
    of projected Newton-CG (`stability.equilibrium`) with its active set, and the
    starts that Newton on (36) solves give the same controls.

    The rows' counts are replayed: `flow.descend` and `solve_conditions` from the
    recorded starts, with basin's settings, give the same outcomes. Tolerances:
    descent stops at the projected Hamiltonian residual 1e-10; the reduced Hessian of
    this equilibrium, divided by h, has its smallest eigenvalue near 0.2 (an isolated
    KKT point with strict complementarity), so the controls are within about 5e-10 of
    it: 1e-8 leaves a factor 20. Newton on (36) stops at a relative step of 1e-10,
    after which the iterate is accurate to about its square: 1e-9."""
    N, n_starts = 30, 4
    sh = flow.shoot(flow.problems.get("lotka_volterra_bounded"), N)
    center = np.full((N, 1), 0.5)
    kwargs = dict(tol=1e-10, max_steps=3000)
    b = stability.basin(
        sh, steps=(0.1,), dampings=(), n_starts=n_starts, seed=1, center=center,
        conditions=True, **kwargs,
    )  # fmt: skip
    starts = np.asarray(b.starts)
    xi = np.random.default_rng(1).standard_normal((n_starts, N, 1))
    assert np.array_equal(starts, np.clip(0.5 + xi, 0.0, 1.0))
    assert np.count_nonzero(starts == 0.0) > 0 and np.count_nonzero(starts == 1.0) > 0
    eq = stability.equilibrium(sh)
    (descent,) = [r for r in b.rows if r.method == "descent"]
    statuses = []
    for U0 in starts:
        tr = flow.descend(sh, U0, step=0.1, throw=False, **kwargs)
        statuses.append(tr.status)
        if tr.status == "converged":
            assert np.max(np.abs(np.asarray(tr.U) - np.asarray(eq.U))) <= 1e-8
            # the same active set, except where strict complementarity fails (the last
            # control: its multiplier is zero, and descent reaches the bound only in
            # the limit; test_bounds.py::test_degenerate_components_are_reported)
            lo, hi = (np.asarray(x) for x in sh.bounds)
            active = np.asarray(flow.bounds.active_set(tr.U, lo, hi))
            strict = ~np.asarray(eq.degenerate)
            assert np.array_equal(active[strict], np.asarray(eq.active_set)[strict])
            assert np.count_nonzero(~strict) == 1
    assert statuses.count("converged") == descent.converged >= 1
    cond = flow.indirect.solve_conditions(sh, starts, tol=1e-10, throw=False)
    ok = np.asarray([s == "converged" for s in cond.statuses])
    assert b.fractions("Newton on (36)") == {None: ok.mean()} and ok.any()
    assert np.max(np.abs(np.asarray(cond.U)[ok] - np.asarray(eq.U))) <= 1e-9


def test_basin_with_bounds_refuses_what_it_cannot_do():
    sh = flow.shoot(flow.problems.get("lotka_volterra_bounded"), 10)
    # a full constant metric: projecting its step is not a descent method (descend's
    # refusal, which basin passes on)
    fixed = flow.metrics.Fixed(np.eye(10) + 0.1)
    with pytest.raises(ValueError, match="`metric`: with control bounds descend") as e:
        stability.basin(sh, steps=(0.1,), metric=fixed)
    assert "'fixed'" in str(e.value)
    lower = np.linspace(0.0, 0.2, 10)[:, None]  # per interval: not a continuous box
    varying = flow.shoot(flow.problems.get("lotka_volterra"), 10, control_bounds=(lower, 1.0))
    with pytest.raises(ValueError, match="`shooting` has control bounds that vary"):
        stability.basin(varying, steps=(0.1,))
