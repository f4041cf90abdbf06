"""The plots of a sweep's table (figures.sweeps): drawn from a small study run here
(scalar_regularized, N = 4, 8, 16, identity and Hamiltonian metrics, 8 steps across
[0.5, 1.5] alpha_max), each figure is checked against the table it shows: the cells
and their colours, the alpha_max curve, the lines against N, and the errors."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from _figure_files import check_png
from matplotlib.colors import to_rgba

import gradflow
from figures import _style, sweeps


NS = [4, 8, 16]
STEPS = 8


@pytest.fixture(scope="module")
def table():
    study = gradflow.Study(
        problems=["scalar_regularized"],
        N=NS,
        metrics=["identity", "hamiltonian"],
        steps={"start": 0.5, "stop": 1.5, "num": STEPS, "relative_to": "alpha_max"},
        max_steps=2000,
        compute=["descent", "euler_bound"],
    )
    return gradflow.sweep(study, workers=1)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _artist(ax, gid):
    found = [a for a in [*ax.collections, *ax.lines, *ax.patches] if a.get_gid() == gid]
    assert found, f"nothing drawn with gid {gid!r}"
    return found


def _cells(ax):
    """The cells' rectangles as (x0, x1, y0, y1), in drawing order."""
    (cells,) = _artist(ax, "cells")
    boxes = [p.get_extents() for p in cells.get_paths()]  # data coordinates: no transform
    return cells, np.array([(b.x0, b.x1, b.y0, b.y1) for b in boxes])


def _worst(statuses):
    return max((sweeps.category(s) for s in statuses), key=sweeps.CATEGORIES.index)


# ------------------------------------------------------------- the stability boundary


def test_boundary_relative_cells_colours_and_the_line_at_one(table):
    """Relative steps (the table's default): one cell per (N, step multiple), centred
    on it, coloured by its status; alpha_max is the line alpha / alpha_max = 1, and
    the cells below it are green, those above it are not."""
    ax = sweeps.plot_stability_boundary(table, metric="identity")
    cells, box = _cells(ax)
    rows = table[table["metric"] == "identity"].sort_values(["N", "step_multiplier"])
    assert len(box) == len(rows) == len(NS) * STEPS
    np.testing.assert_allclose(np.sqrt(box[:, 0] * box[:, 1]), rows["N"].astype(float))
    np.testing.assert_allclose(0.5 * (box[:, 2] + box[:, 3]), rows["step_multiplier"])
    expected = [to_rgba(sweeps.STATUS_COLORS[sweeps.category(s)]) for s in rows["status"]]
    np.testing.assert_allclose(cells.get_facecolor(), expected)
    (line,) = _artist(ax, "alpha_max")
    np.testing.assert_array_equal(line.get_ydata(), [1.0, 1.0])
    green = np.all(cells.get_facecolor() == to_rgba(sweeps.STATUS_COLORS["converged"]), axis=1)
    below = rows["step_multiplier"].to_numpy() < 1
    assert green.any() and not green.all()
    np.testing.assert_array_equal(green, below)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "linear"
    assert ax.get_xlabel() and "alpha" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[1:] == ["converged", "max_steps (stalled, oscillating)", "diverged"]
    _legend_clear_of_the_axes(ax)


def test_boundary_absolute_steps_under_the_alpha_max_curve(table):
    """relative=False: the cells at the absolute steps, each step inside its cell,
    and the curve through (N, alpha_max) of the table, one value per N."""
    ax = sweeps.plot_stability_boundary(table, metric="identity", relative=False)
    _, box = _cells(ax)
    rows = table[table["metric"] == "identity"].sort_values(["N", "step"])
    step = rows["step"].to_numpy()
    assert np.all((box[:, 2] < step) & (step < box[:, 3]))
    (line,) = _artist(ax, "alpha_max")
    alpha_max = rows.groupby("N")["alpha_max"].first()
    np.testing.assert_array_equal(line.get_xdata(), NS)
    np.testing.assert_array_equal(line.get_ydata(), alpha_max.to_numpy())
    assert ax.get_yscale() == "log"  # the steps span 2.6 to 33 (alpha_max grows like N)
    lo, hi = ax.get_ylim()
    assert lo <= alpha_max.min() and alpha_max.max() <= hi


def test_boundary_over_starts_and_an_error_column(table):
    """Two starts per cell, one of them diverging at the converged steps: worst
    status colours those cells as diverged, the fraction as 1/2; a configuration
    that raised is a grey column at its N, without cells."""
    rows = table[table["metric"] == "hamiltonian"]
    second = rows.assign(start=1, status=rows["status"].replace("converged", "diverged"))
    error = rows[rows["N"] == 8].iloc[:1].assign(
        status="error", reason="ValueError: boom", step=np.nan, step_multiplier=np.nan,
        alpha_max=np.nan,
    )  # fmt: skip
    both = pd.concat([rows, second])
    both = pd.concat([both[both["N"] != 8], error], ignore_index=True)
    ax = sweeps.plot_stability_boundary(both)
    cells, box = _cells(ax)
    assert len(box) == 2 * STEPS and 8 not in np.sqrt(box[:, 0] * box[:, 1]).round()
    ordered = both.dropna(subset=["step"]).sort_values(["N", "step_multiplier", "start"])
    worst = ordered.groupby(["N", "step_multiplier"], sort=True)["status"].agg(_worst)
    assert set(worst) == {"diverged", "max_steps"}
    expected = [to_rgba(sweeps.STATUS_COLORS[c]) for c in worst]
    np.testing.assert_allclose(cells.get_facecolor(), expected)
    (span,) = _artist(ax, "error")
    assert span.get_x() < 8 < span.get_x() + span.get_width()  # x in data, y in axes units
    assert "worst status over 2 starts" in ax.get_title()

    ax = sweeps.plot_stability_boundary(both, aggregate="fraction")
    cells, _ = _cells(ax)
    fraction = ordered.groupby(["N", "step_multiplier"], sort=True)["status"].agg(
        lambda s: np.mean(s == "converged")
    )
    np.testing.assert_allclose(cells.get_array(), fraction.to_numpy())
    assert set(np.round(cells.get_array(), 6)) == {0.0, 0.5}
    assert len(ax.figure.axes) == 2  # the colour bar
    _artist(ax, "error")


def test_boundary_of_a_table_with_absolute_steps(table):
    """A table whose steps are absolute draws them as they are (relative=None); with
    relative=True, as step / alpha_max."""
    absolute = table.assign(step_multiplier=None)
    rows = absolute[absolute["metric"] == "hamiltonian"].sort_values(["N", "step"])
    ax = sweeps.plot_stability_boundary(absolute, metric="hamiltonian")
    assert len(_artist(ax, "alpha_max")[0].get_ydata()) == len(NS)
    ax = sweeps.plot_stability_boundary(absolute, metric="hamiltonian", relative=True)
    _, box = _cells(ax)
    np.testing.assert_allclose(
        0.5 * (box[:, 2] + box[:, 3]), rows["step"] / rows["alpha_max"], rtol=1e-12
    )


# --------------------------------------------------------------- a column against N


def test_alpha_max_against_N_one_line_per_metric(table, tmp_path):
    ax = sweeps.plot_metric_against_N(table, "alpha_max", status=None)
    lines = _artist(ax, "N")
    assert [line.get_label().split(" ")[0] for line in lines] == ["hamiltonian", "identity"]
    for line, (_, group) in zip(lines, table.groupby("metric"), strict=True):
        np.testing.assert_array_equal(line.get_xdata(), NS)
        np.testing.assert_array_equal(line.get_ydata(), group.groupby("N")["alpha_max"].first())
    # identity: alpha_max ~ N; Hamiltonian: converges (mesh study), fitted exponents
    assert r"\propto N^{1.0" in lines[1].get_label()
    assert r"\propto N^{0.0" in lines[0].get_label()
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert "alpha_max" in ax.get_ylabel() and ax.get_xlabel()
    _legend_clear_of_the_axes(ax)
    check_png(_style.save(ax.figure, tmp_path, "alpha_max")[0])


def test_iterations_at_a_step_multiplier(table):
    """Iterations of the converged runs at 0.5 alpha_max: one point per N, the
    table's value (one start), on a linear axis with integer ticks."""
    ax = sweeps.plot_metric_against_N(table, "iterations", step_multiplier=0.5, metric="identity")
    (line,) = _artist(ax, "N")
    rows = table[(table["metric"] == "identity") & np.isclose(table["step_multiplier"], 0.5)]
    np.testing.assert_array_equal(line.get_ydata(), rows["iterations"].astype(float))
    assert ax.get_yscale() == "linear"
    assert "0.5" in ax.get_title() and "converged" in ax.get_title()
    # no selection: the median over the converged steps
    ax = sweeps.plot_metric_against_N(table, "iterations", by=["metric"], aggregate="max")
    converged = table[table["status"] == "converged"]
    expected = converged.groupby(["metric", "N"])["iterations"].max()
    got = np.concatenate([line.get_ydata() for line in _artist(ax, "N")])
    np.testing.assert_array_equal(got, expected.to_numpy(dtype=float))
    assert "max over steps and starts" in ax.get_title()


def _legend_clear_of_the_axes(ax):
    ax.figure.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # to the right of the data


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda t: sweeps.plot_stability_boundary(t.to_dict()), TypeError, "`table` must be a"),
        (lambda t: sweeps.plot_stability_boundary(t.drop(columns="status")), ValueError,
         r"`table` lacks the columns \['status'\]"),
        (lambda t: sweeps.plot_stability_boundary(t.iloc[:0]), ValueError, "`table` has no rows"),
        (lambda t: sweeps.plot_stability_boundary(t), ValueError,
         r"`metric`: the table holds several \(\['hamiltonian', 'identity'\]\)"),
        (lambda t: sweeps.plot_stability_boundary(t, metric="newton"), ValueError,
         r"`metric`: no rows with metric 'newton'"),
        (lambda t: sweeps.plot_stability_boundary(t, metric="identity", aggregate="mean"),
         ValueError, "`aggregate` must be 'worst' or 'fraction'"),
        (lambda t: sweeps.plot_stability_boundary(
            t.assign(step_multiplier=None).drop(columns="alpha_max"), metric="identity",
            relative=True), ValueError, r"`relative`: no alpha_max at N = \[4, 8, 16\]"),
        (lambda t: sweeps.plot_metric_against_N(t, "nope"), ValueError,
         "`column`: 'nope' is not a column"),
        (lambda t: sweeps.plot_metric_against_N(t, "reason", status=None), ValueError,
         "`column`: the column 'reason' is not numeric"),
        (lambda t: sweeps.plot_metric_against_N(t, "cost", by="colour"), ValueError,
         r"`by`: \['colour'\] not columns"),
        (lambda t: sweeps.plot_metric_against_N(t, "cost", aggregate="mode"), ValueError,
         r"`aggregate`: one of \('median', 'mean', 'min', 'max'\) or a function"),
        (lambda t: sweeps.plot_metric_against_N(t, "cost", by=None), ValueError,
         "`metric`: the selection holds several"),
        (lambda t: sweeps.plot_metric_against_N(t, "iterations", step_multiplier=0.3),
         ValueError, "`step_multiplier`: no rows at 0.3 in the selection; it holds 0.5, "),
        (lambda t: sweeps.plot_metric_against_N(t, "iterations", status="stalled"),
         ValueError, "`status`: no rows with status 'stalled'"),
        (lambda t: sweeps.plot_metric_against_N(t, "iterations", step=1.0, step_multiplier=1),
         ValueError, "give `step` or `step_multiplier`, not both"),
        (lambda t: sweeps.plot_metric_against_N(t.assign(cost=np.nan), "cost"), ValueError,
         "`column`: no finite values of 'cost'"),
    ],
)  # fmt: skip
def test_errors_name_the_argument(table, call, error, match):
    with pytest.raises(error, match=match):
        call(table)
