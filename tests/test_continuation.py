"""stability.continuation: branches of equilibria in a parameter, folds, branch points.

References are independent of the code under test: the closed forms of the tilted
double well and of the symmetric well (stationary controls are constant; their
values solve a cubic, by numpy.roots), and fresh `stability.equilibrium` solves
with `stability.spectrum` + `euler_bound` (a different solver and eigen-path) on
Van der Pol.
"""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _jaxprs import largest_intermediate

import flow
import stability
from flow import problems
from stability import _branch


def _tilted_start(N: int, p: float = -2.0) -> np.ndarray:
    """The stationary control of the tilted double well at p on the outer branch
    (the largest real root of 4x^3 - 3x + p)."""
    roots = np.roots([4.0, 0.0, -3.0, p])
    x = float(np.max(roots[np.abs(roots.imag) < 1e-12].real))
    return np.full((N, 1), x)


@pytest.fixture(scope="module")
def tilted():
    return stability.continuation(
        problems.tilted_double_well, _tilted_start(100), (-2.0, 2.0), N=100
    )


def test_tilted_double_well_follows_the_s_through_both_folds(tilted):
    c = tilted
    assert c.status == "completed" and c.method == "dense"
    assert [s.kind for s in c.special_points] == ["fold", "fold"]
    first, second = c.special_points
    # the folds of 4x^3 - 3x + p = 0 are at p = 1 (x = 1/2) and p = -1 (x = -1/2),
    # exactly, for every N
    assert abs(first.p - 1.0) < 1e-8 and abs(second.p + 1.0) < 1e-8
    assert abs(first.U[0, 0] - 0.5) < 1e-4 and abs(second.U[0, 0] + 0.5) < 1e-4
    assert (first.index_before, first.index_after) == (0, 1)
    assert (second.index_before, second.index_after) == (1, 0)
    # the branch ends at p = 2 on the other outer stretch
    ps = c.table()["p"]
    assert ps[0] == -2.0 and ps[-1] == 2.0 and ps.max() <= 2.0
    assert c.points[-1].U[0, 0] < -1.0


def test_tilted_double_well_points_match_the_closed_form(tilted):
    for q in tilted.points:
        x = q.U[0, 0]
        # a constant control solving the cubic
        assert np.ptp(q.U) < 1e-9
        assert abs(4 * x**3 - 3 * x + q.p) < 1e-9
        # Hamiltonian metric: M^-1 Hess E^N has eigenvalues 1 (N - 1 times) and 12x^2 - 3
        lam = sorted([1.0, 12 * x**2 - 3])
        assert q.slow == pytest.approx(-lam[0], rel=1e-8, abs=1e-8)
        assert q.stiff == pytest.approx(-lam[1], rel=1e-8)
        if lam[0] > 1e-6:
            assert q.kind == "asymptotically stable" and q.index == 0
            assert q.alpha_max == pytest.approx(2.0 / lam[1], rel=1e-8)
        elif lam[0] < -1e-6:
            assert q.kind == "saddle" and q.index == 1 and q.alpha_max is None
        assert q.cost == pytest.approx((x**2 - 1) ** 2 + q.p * x + 0.5 * x**2, rel=1e-10)
        assert q.norm == pytest.approx(abs(x), rel=1e-10)


def test_matrix_free_path_finds_the_same_folds(tilted):
    c = stability.continuation(
        problems.tilted_double_well, _tilted_start(100), (-2.0, 2.0), N=100, method="matrix-free"
    )
    assert c.method == "matrix-free" and c.num_krylov > 0 and c.num_products > 0
    assert [s.kind for s in c.special_points] == ["fold", "fold"]
    for s, ref, exact in zip(c.special_points, tilted.special_points, (1.0, -1.0), strict=True):
        assert abs(s.p - exact) < 1e-8 and abs(s.p - ref.p) < 1e-8


def test_branch_point_and_switching_on_the_symmetric_well():
    N = 20
    c = stability.continuation(problems.symmetric_well, np.zeros((N, 1)), (0.0, 2.0), N=N)
    assert c.status == "completed"
    assert [s.kind for s in c.special_points] == ["branch"]
    bp = c.branch_points[0]
    # on U = 0 the eigenvalue 1 - p of M^-1 Hess E^N crosses zero at p = 1
    assert abs(bp.p - 1.0) < 1e-8
    assert (bp.index_before, bp.index_after) == (0, 1)
    # the null vector is the constant control (unit in the L2 norm)
    phi = bp.null_vector
    assert np.ptp(phi) < 1e-8 and np.sum(phi**2) / N == pytest.approx(1.0, rel=1e-10)
    assert [q.kind for q in c.points if q.p > 1.01] == ["saddle"] * sum(
        q.p > 1.01 for q in c.points
    )
    # the other branch: x^2 = p - 1, minimisers
    for direction, sign in ((1, 1.0), (-1, -1.0)):
        d = stability.continuation(
            problems.symmetric_well, bp, (0.0, 2.0), N=N, direction=direction
        )
        assert d.status == "completed" and d.points[-1].p == 2.0
        assert d.special_points == ()  # the new branch has none of its own
        for q in d.points[1:]:
            x = q.U[0, 0]
            assert np.sign(x) == sign
            assert abs(x**2 - (q.p - 1.0)) < 1e-9
            assert q.kind == "asymptotically stable"


@pytest.mark.parametrize("end", [2.5, 4.0, 40.0])
def test_branch_point_is_located_whatever_the_span(end):
    """Long steps land next to the branch point and other eigenvalues come closer to
    zero than the crossing one: the test follows the eigenvalue that crosses."""
    c = stability.continuation(problems.symmetric_well, np.zeros((20, 1)), (0.0, end), N=20)
    assert [s.kind for s in c.special_points] == ["branch"]
    assert abs(c.special_points[0].p - 1.0) < 1e-8


def test_no_special_point_beyond_p_span():
    c = stability.continuation(problems.symmetric_well, np.zeros((20, 1)), (0.0, 0.99), N=20)
    assert c.special_points == () and c.points[-1].p == 0.99
    assert {q.index for q in c.points} == {0}


def _transcritical(p):
    """x' = u, E = x(1)^3/3 - p x(1)^2/2, int u^2/2: stationary x(x - (p - 1)) = 0, the
    branches x = 0 and x = p - 1 cross at p = 1 (a transcritical branch point)."""
    return flow.OptimalControlProblem(
        lambda x, u: u, lambda x: x[0] ** 3 / 3 - p * x[0] ** 2 / 2, [0.0], 0.0, 1.0,
        running_cost=lambda x, u: 0.5 * jnp.sum(u**2), control_dim=1,
    )  # fmt: skip


def test_switching_at_a_transcritical_branch_point():
    N = 20
    c = stability.continuation(_transcritical, np.zeros((N, 1)), (0.0, 2.0), N=N)
    (bp,) = c.branch_points
    assert abs(bp.p - 1.0) < 1e-8 and bp.tangent_p == pytest.approx(1.0)
    ends = []
    for direction in (1, -1):
        d = stability.continuation(_transcritical, bp, (0.0, 2.0), N=N, direction=direction)
        assert d.status == "completed" and len(d.points) > 3
        for q in d.points:
            assert abs(q.U[0, 0] - (q.p - 1.0)) < 1e-9  # the other branch, x = p - 1
        ends.append(d.points[-1].p)
        # x = p - 1 is a minimiser for p > 1 and a saddle for p < 1
        assert all(q.kind == ("saddle" if q.p < 1 else "asymptotically stable")
                   for q in d.points[1:])  # fmt: skip
    assert sorted(ends) == [0.0, 2.0]
    with pytest.raises(ValueError, match="not an equilibrium of this family"):
        stability.continuation(_transcritical, _moved(bp), (0.0, 2.0), N=N)
    with pytest.raises(ValueError, match="outside p_span"):
        stability.continuation(_transcritical, bp, (1.5, 2.0), N=N)
    with pytest.raises(ValueError, match="shape"):
        stability.continuation(_transcritical, bp, (0.0, 2.0), N=N + 1)


def _moved(bp):
    """The branch point with its control shifted: not an equilibrium any more."""
    import dataclasses

    return dataclasses.replace(bp, U=bp.U + 0.1)


def test_van_der_pol_continued_equilibria_equal_fresh_solves():
    """Five points of the branch itself (its own values of p, spread over the span)
    against fresh trust-region solves at those p and their dense spectra."""
    N = 200
    sh = flow.shoot(problems.van_der_pol(mu=0.6), N)
    c = stability.continuation(problems.van_der_pol_mu, sh.zeros(), (0.6, 1.4), N=N)
    assert c.status == "completed" and c.method == "dense"
    assert c.special_points == () and len(c.points) >= 8
    start = c.points[0].U
    picks = np.linspace(1, len(c.points) - 1, 5).round().astype(int)
    for q in (c.points[i] for i in picks):
        shp = flow.shoot(problems.van_der_pol(mu=q.p), N)
        fresh = stability.equilibrium(shp, start)
        assert fresh.success
        assert np.max(np.abs(q.U - np.asarray(fresh.U))) < 1e-9
        bound = stability.euler_bound(stability.spectrum(stability.linearize(shp, fresh)))
        assert q.alpha_max == pytest.approx(bound.alpha_max, rel=1e-9)
        assert q.kind == "asymptotically stable"
    assert c.points[-1].p == 1.4  # landed on the end of p_span


def test_matrix_free_kernels_form_no_dense_matrix():
    """At N = 1000 no value computed by the corrector, the tangent or the product has
    (Nm)^2 entries on the matrix-free path; the dense path does (the check can fail)."""
    N = 1000
    sh = flow.shoot(problems.tilted_double_well(0.0), N)
    h = np.asarray(sh.steps)[:, None]
    fam = _branch.Family(
        family=problems.tilted_double_well,
        N=N,
        scheme=flow.Euler(),
        scale=jnp.asarray(1 / np.sqrt(h)),
        unscale=jnp.asarray(1 / np.sqrt(h)),
        steps=jnp.asarray(h[:, 0]),
    )
    W, p = jnp.ones((N, 1)), jnp.asarray(0.0)

    def biggest(fn, *args):
        return largest_intermediate(eqx.filter_make_jaxpr(fn)(*args)[0].jaxpr)

    for dense, check in ((False, lambda b: b < N**2 // 10), (True, lambda b: b >= N**2)):
        assert check(biggest(_branch.correct, fam, W, p, W, p, 1e-10, 10, dense, 1e-10, 1000))
        assert check(biggest(_branch.tangent, fam, W, p, W, p, dense, 1e-10, 1000))
    assert biggest(_branch.kvp, fam, W, p, W) < N**2 // 10


def test_to_dict_table_and_at(tilted):
    d = tilted.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["num_points"] == len(tilted.points) and len(d["special_points"]) == 2
    assert "U" not in d["points"][0] and "U" in tilted.to_dict(include_arrays=True)["points"][0]
    table = tilted.table()
    assert list(table) == list(stability._continuation_results.COLUMNS)
    assert np.isnan(table["alpha_max"][table["index"] > 0]).all()
    # three equilibria at p = 0 (x = 0, +-sqrt(3)/2) on three stretches of the S
    xs = sorted(q.U[0, 0] for q in tilted.at(0.0))
    assert np.allclose(xs, [-np.sqrt(3) / 2, 0.0, np.sqrt(3) / 2], atol=1e-9)
    assert [q.index for q in sorted(tilted.at(0.0), key=lambda q: q.U[0, 0])] == [0, 1, 0]
    # next to the folds: every root of the cubic once (natural-parameter Newton alone
    # finds one root twice here), and the double root at the fold itself
    for p in (0.999, 0.9999, -0.9999):
        roots = np.roots([4.0, 0.0, -3.0, p])
        roots = np.sort(roots[np.abs(roots.imag) < 1e-7].real)
        qs = tilted.at(p)
        assert np.allclose(np.sort([q.U[0, 0] for q in qs]), roots, atol=1e-9)
        assert all(q.p == p for q in qs)
    assert np.allclose(np.sort([q.U[0, 0] for q in tilted.at(1.0)]), [-1.0, 0.5], atol=1e-7)
    with pytest.raises(ValueError, match="`p` = 3"):
        tilted.at(3.0)
    assert "fold at p=1" in repr(tilted)


def _bounded(p):
    return flow.OptimalControlProblem(
        lambda x, u: u, lambda x: p * x[0] ** 2, [0.0], 0.0, 1.0,
        control_dim=1, control_bounds=(-1.0, 1.0),
    )  # fmt: skip


def _python_branch(p):
    scale = 2.0 if float(p) > 0 else 1.0  # not traceable
    return problems.tilted_double_well(scale * p)


def _horizon(p):
    return flow.OptimalControlProblem(
        lambda x, u: u, lambda x: x[0] ** 2, [0.0], 0.0, 1.0 + p**2, control_dim=1
    )


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"family": 3}, TypeError, "`family` must be a callable"),
        ({"family": lambda p: 3}, TypeError, "`family` must return"),
        ({"family": _bounded}, ValueError, "control_bounds"),
        ({"family": _python_branch}, ValueError, "traced parameter"),
        ({"family": _horizon}, ValueError, "`tf` must be a concrete number"),
        ({"p_span": (1.0,)}, ValueError, "`p_span` must be a pair"),
        ({"p_span": (1.0, 1.0)}, ValueError, "p_start != p_end"),
        ({"metric": "newton"}, ValueError, "constant diagonal metric"),
        ({"U0": np.zeros((5, 1))}, ValueError, "`U0`"),
        ({"direction": 0}, ValueError, "`direction`"),
        ({"direction": -1}, ValueError, "swap p_span"),
        ({"step": 1.0, "max_step": 0.5}, ValueError, "`step` must lie between"),
        ({"method": "lu"}, ValueError, "`method`"),
    ],
)
def test_bad_input_is_refused_by_name(kwargs, error, match):
    args = {
        "family": problems.tilted_double_well,
        "U0": _tilted_start(10),
        "p_span": (-2.0, 2.0),
        "N": 10,
    }
    args.update(kwargs)
    family, U0, p_span = args.pop("family"), args.pop("U0"), args.pop("p_span")
    with pytest.raises(error, match=match):
        stability.continuation(family, U0, p_span, **args)


def test_a_stiffening_branch_stalls_with_its_reason():
    """Van der Pol's optimum stiffens like exp(5 mu): past mu ~ 1.5 the residual's
    rounding floor exceeds tol = 1e-10 and the run stops, saying where."""
    N = 100
    sh = flow.shoot(problems.van_der_pol(mu=1.45), N)
    c = stability.continuation(problems.van_der_pol_mu, sh.zeros(), (1.45, 3.0), N=N, max_points=60)
    assert c.status == "stalled"
    assert "the corrector failed from p = " in c.message
    assert 1.45 < c.points[-1].p < 2.0


def test_max_points_is_reported():
    c = stability.continuation(
        problems.tilted_double_well, _tilted_start(20), (-2.0, 2.0), N=20, max_points=4
    )
    assert c.status == "max_steps" and len(c.points) == 4
    assert "max_points = 4" in c.message


def test_traced_problem_construction():
    """A problem built under jit from a traced parameter (x0 traced too) gives the same
    gradient as one built from the number."""

    def grad(p):
        problem = flow.OptimalControlProblem(
            lambda x, u: u, lambda x: (x[0] - p) ** 2, jnp.stack([p]), 0.0, 1.0, control_dim=1
        )
        sh = flow.shoot(problem, 8)
        return jax.grad(sh.objective)(jnp.ones((8, 1)))

    assert np.allclose(jax.jit(grad)(0.3), grad(0.3), rtol=1e-14, atol=0)
    assert problems.van_der_pol(mu=1.0).dynamics is problems.van_der_pol().dynamics


@pytest.mark.slow
def test_continuation_at_N_10000_is_matrix_free():
    """The benchmark's run: N = 10^4, both folds to 1e-8, matrix-free."""
    N = 10_000
    c = stability.continuation(problems.tilted_double_well, _tilted_start(N), (-2.0, 2.0), N=N)
    assert c.method == "matrix-free" and c.status == "completed"
    assert [round(s.p, 8) for s in c.folds] == [1.0, -1.0]


def test_plots_of_a_continuation(tilted, tmp_path):
    """The figure module's plotting functions (the quick figure is in the slow run) and
    the standard view `gradflow continue` writes."""
    import matplotlib

    matplotlib.use("Agg")
    from figures import continuation as fig

    paths = fig.draw_result(tilted, tmp_path)
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size for p in paths)
    ax = fig.plot_branch(tilted, y="cost")
    # stable stretches solid, the saddle stretch dashed, both folds marked
    assert sum(line.get_marker() == "X" for line in ax.lines) == 2
    assert {line.get_label() for line in ax.lines} >= {"asymptotically stable", "saddle", "fold"}
    ax = fig.plot_step_bound(tilted)
    ys = np.concatenate([line.get_ydata() for line in ax.lines if len(line.get_ydata()) > 2])
    assert np.all(ys > 0) and ys.max() == pytest.approx(2.0, rel=1e-3)
    with pytest.raises(ValueError, match="`y`"):
        fig.plot_branch(tilted, y="energy")
    with pytest.raises(TypeError, match="`result`"):
        fig.plot_step_bound(3)


def test_gradflow_continue(tmp_path, capsys):
    from gradflow._cli import main

    out = tmp_path / "c"
    assert main(["continue", "symmetric_well", "--N", "20", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "branch at p = 1 (index 0 -> 1" in text and "completed" in text
    doc = json.loads((out / "continuation.json").read_text())
    assert doc["special_points"][0]["kind"] == "branch"
    assert abs(doc["special_points"][0]["p"] - 1.0) < 1e-8
    assert (out / "continuation.png").is_file()
    assert main(["continue", "no_such_family", "--out", str(out)]) == 2
    assert "unknown family 'no_such_family'" in capsys.readouterr().err
    assert main(["continue", "symmetric_well", "--from", "1", "--to", "1"]) == 2


def _circle(p):
    """x' = u, E = x^3/3 - x^2/2 + (p^2 - 1) x, int u^2/2: stationary x^2 + p^2 = 1, a
    closed branch (an isola) with folds at p = -1 and 1 (x = 0)."""
    return flow.OptimalControlProblem(
        lambda x, u: u, lambda x: x[0] ** 3 / 3 - x[0] ** 2 / 2 + (p**2 - 1) * x[0],
        [0.0], 0.0, 1.0, running_cost=lambda x, u: 0.5 * jnp.sum(u**2), control_dim=1,
    )  # fmt: skip


def test_a_closed_branch_ends_where_it_crosses_the_start_again():
    """From (p, x) = (0, 1) on the circle, through the fold at p = 1, back across
    p = 0 on the other half (x = -1): the run lands there and ends."""
    c = stability.continuation(_circle, np.ones((10, 1)), (0.0, 2.0), N=10)
    assert c.status == "completed" and "left p_span at p = 0" in c.message
    assert [round(s.p, 8) for s in c.folds] == [1.0]
    assert c.points[-1].p == 0.0 and c.points[-1].U[0, 0] == pytest.approx(-1.0, abs=1e-9)
    for q in c.points:
        assert abs(q.U[0, 0] ** 2 + q.p**2 - 1.0) < 1e-9
