r"""Plots of a sweep's table: the standard views of the tidy table that
`gradflow.sweep` returns (one row per configuration, step and start).

- [`plot_metric_against_N`][figures.sweeps.plot_metric_against_N]: a column of the
  table (the iterations of the converged runs at one step, $\alpha_{\max}$, a final
  residual, ...) against $N$, one line per group (per metric by default);
- [`plot_stability_boundary`][figures.sweeps.plot_stability_boundary]: the
  $(N, \alpha)$ plane of one (problem, scheme, metric), each cell of the step grid
  coloured by what the descent did there, under the curve of forward Euler's bound
  $\alpha_{\max}$: where the colours change is the observed stability boundary.

Both take a `pandas.DataFrame` with the columns of a sweep's table (this package
sits below `gradflow` and does not import it: a table read back from
`sweep.parquet` works as well), draw onto a given matplotlib `Axes` or a new figure
in the shared style (`figures._style`; save it with `figures._style.save` or
`fig.savefig`), and return the `Axes`. Their artists carry gids (`"cells"`,
`"alpha_max"`, `"error"`, `"N"`) so that what is drawn can be found again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.collections import PatchCollection
from matplotlib.colors import LinearSegmentedColormap, to_rgba
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import LogFormatter, MaxNLocator, NullFormatter, ScalarFormatter

from . import _plots, _style


CATEGORIES: tuple[str, ...] = ("converged", "max_steps", "diverged", "error")
"""The classes of a status in [`plot_stability_boundary`][figures.sweeps.plot_stability_boundary],
best to worst: `converged` (and `completed`); `max_steps` (the tolerance was not
reached: `max_steps`, and every other status that is neither a success nor a
divergence, e.g. `stalled`, `indefinite`, `oscillating`); `diverged` (and `nonfinite`); `error`
(the configuration raised: no descent ran)."""

STATUS_COLORS: dict[str, str] = {
    "converged": _style.COLORS[2],  # green
    "max_steps": _style.COLORS[4],  # orange
    "diverged": _style.COLORS[1],  # vermillion
    "error": "#999999",  # grey
}
"""The colour of each class of [`CATEGORIES`][figures.sweeps.CATEGORIES] in the cells
of [`plot_stability_boundary`][figures.sweeps.plot_stability_boundary] (the shared
Okabe-Ito palette)."""

_CATEGORY_OF = {"converged": "converged", "completed": "converged", "diverged": "diverged",
                "nonfinite": "diverged", "error": "error"}  # fmt: skip
_LEGEND = {"converged": "converged", "max_steps": "max_steps (stalled, oscillating)",
           "diverged": "diverged", "error": "error (configuration raised)"}  # fmt: skip
#: The fraction converged, 0 (vermillion) to 1 (green), through a light yellow.
_FRACTION_CMAP = LinearSegmentedColormap.from_list(
    "converged_fraction", [STATUS_COLORS["diverged"], "#F0E442", STATUS_COLORS["converged"]]
)
_IDENTIFYING = ("problem", "scheme", "metric")
_LABELS = {  # the y label of a column (followed by its name)
    "alpha_max": r"$\alpha_{\max}$", "alpha_opt": r"$\alpha_{\mathrm{opt}}$",
    "rho_opt": r"$\rho(\alpha_{\mathrm{opt}})$", "step": r"step $\alpha$",
    "step_multiplier": r"$\alpha / \alpha_{\max}$", "cost": r"final cost $E^N$",
    "gradient_residual": r"final $\|\nabla E^N\|_\infty$",
    "hamiltonian_residual": r"final $\max_k|\partial_u H_k|$",
    "guaranteed_hamiltonian_residual": r"guaranteed $\max_k|\partial_u H_k|$ ($\epsilon/h$)",
    "basin_fraction": "fraction of the starts converged", "mu_stiff": r"$\mu_{\mathrm{stiff}}$",
    "mu_slow": r"$\mu_{\mathrm{slow}}$", "flow_tau": r"flow time $\tau$",
}  # fmt: skip
_AGGREGATES = ("median", "mean", "min", "max")
_N_LABEL = r"number of intervals $N$"
_MARKERS = ("o", "s", "^", "D", "v", "P")
_DASHES = ("-", "--", "-.", ":")


def category(status: Any) -> str:
    """The class of [`CATEGORIES`][figures.sweeps.CATEGORIES] of a status word."""
    return _CATEGORY_OF.get(str(status), "max_steps")


# ------------------------------------------------------------------ the two views


def plot_metric_against_N(
    table: pd.DataFrame,
    column: str,
    *,
    ax: Any = None,
    by: str | Sequence[str] | None = "metric",
    status: str | None = "converged",
    step: float | None = None,
    step_multiplier: float | None = None,
    problem: str | None = None,
    scheme: str | None = None,
    metric: str | None = None,
    aggregate: str | Callable[[Any], float] = "median",
    logy: bool | None = None,
    slopes: bool = True,
    title: str | None = None,
) -> Any:
    r"""`column` against $N$, one line (with markers) per group of `by`.

    **Selection:** the rows with `status` (default `"converged"`: the iterations
    and residuals of runs that did not converge are not comparable; `None` keeps
    every row), at the absolute step `step` or the multiple `step_multiplier` of
    $\alpha_{\max}$ (each matched to a relative $10^{-9}$), and of the `problem`,
    `scheme`, `metric` given. A problem, scheme or metric that still takes several
    values in the selection must be in `by` (else lines would mix configurations).

    **Drawn:** for each group and each $N$, the `aggregate` (`"median"`, `"mean"`,
    `"min"`, `"max"` or a function of a `Series`) of the column's finite values over
    the rows left, i.e. over the starts, and over the steps unless one is selected.
    A per-configuration column (`alpha_max`, `rho_opt`, ...) has one value. $N$ on a
    log axis with its values as ticks; the column on a log axis when `logy` (default:
    when every value is positive and they span a factor of 10 or more), else on a
    linear axis from 0 when no value is negative; on log-log axes with `slopes`, each
    label carries the fitted exponent, $\propto N^{p}$. The title says what was
    selected and aggregated; the legend (title `by`) sits to the right of the axes,
    clear of the data.

    **Arguments:**

    - `table`: a sweep's table (columns `N`, `step`, `status`, `column`, and those
      named).
    - `column`: a numeric column (`"iterations"`, `"alpha_max"`, `"cost"`, ...).
    - `ax`: the matplotlib `Axes` to draw on (default: a new figure in the shared
      style).
    - `by`: the column(s) whose values make the lines (`None`: one line).
    - `logy`: force the column's axis to log (True) or linear (False).
    - `title`: replaces the title made from the selection.

    **Returns:** the `Axes`; the lines carry gid `"N"`, in the order of the legend.

    **Raises:** `ValueError` naming the argument (`table`, `column`, `by`,
    `status`, `step`, `step_multiplier`, `problem`, `scheme`, `metric`,
    `aggregate`) for a missing column or a selection without rows or values.
    """
    _check_table(table, ("N", "status", "step"))
    columns = list(table.columns)
    if not isinstance(column, str) or column not in columns:
        raise ValueError(f"`column`: {column!r} is not a column of the table; columns: {columns}.")
    groups = [] if by is None else [by] if isinstance(by, str) else list(by)
    if unknown := [g for g in groups if g not in columns]:
        raise ValueError(f"`by`: {unknown} not columns of the table; columns: {columns}.")
    if not (aggregate in _AGGREGATES or callable(aggregate)):
        raise ValueError(f"`aggregate`: one of {_AGGREGATES} or a function; got {aggregate!r}.")
    if step is not None and step_multiplier is not None:
        raise ValueError("give `step` or `step_multiplier`, not both.")
    rows = _filter(table, problem=problem, scheme=scheme, metric=metric)
    if status is not None:
        if (kept := rows[rows["status"] == status]).empty:
            raise ValueError(
                f"`status`: no rows with status {status!r} in the selection; statuses: "
                f"{sorted(map(str, rows['status'].unique()))} (status=None keeps every row)."
            )
        rows = kept
    for name, value in (("step", step), ("step_multiplier", step_multiplier)):
        if value is not None:
            rows = _at(rows, name, value)
    for name in _IDENTIFYING:
        if name in rows.columns and name not in groups and rows[name].nunique() > 1:
            raise ValueError(
                f"`{name}`: the selection holds several ({sorted(rows[name].unique())}); "
                f"choose one with {name}=... or add {name!r} to `by`."
            )
    values = _numeric(rows, column, "column")
    data = pd.DataFrame({"N": _numeric(rows, "N"), "value": values})
    for g in groups:
        data[g] = rows[g].astype(str).to_numpy()
    data = data[np.isfinite(data["value"]) & np.isfinite(data["N"])]
    if data.empty:
        raise ValueError(f"`column`: no finite values of {column!r} in the selection.")
    keys = groups or ["_all"]
    if not groups:
        data["_all"] = ""
    summary = data.groupby([*keys, "N"], sort=True)["value"]
    aggregated = bool((summary.nunique() > 1).any())  # else one value per point
    points = summary.agg(aggregate).reset_index()
    if logy is None:
        v = points["value"].to_numpy()
        logy = bool(np.all(v > 0) and v.max() >= 10 * v.min())
    loglog = logy and slopes
    ax = _axes(ax, width=6.0)
    with _style.style():
        for i, (key, line) in enumerate(points.groupby(keys, sort=True)):
            key = key if isinstance(key, tuple) else (key,)
            label = ", ".join(str(k) for k in key) if groups else column
            if loglog and len(line) >= 2:
                p = _plots.fmt_slope(_plots.loglog_slope(line["N"], line["value"]))
                label = rf"{label} ($\propto N^{{{p}}}$)"
            # markers and dashes differ, and shrink from line to line, so that
            # lines on top of each other stay visible
            ax.plot(
                line["N"].to_numpy(dtype=float), line["value"].to_numpy(dtype=float),
                marker=_MARKERS[i % len(_MARKERS)], markersize=max(7.0 - 1.5 * i, 3.0),
                linestyle=_DASHES[i % len(_DASHES)], color=_style.COLORS[i % len(_style.COLORS)],
                label=label, gid="N",
            )  # fmt: skip
        _n_axis(ax, points["N"])
        if logy:
            _log_y(ax)
        else:
            v = points["value"].to_numpy()
            if np.all(v >= 0) and v.max() > 0:  # counts, sizes: from zero
                ax.set_ylim(0.0, 1.08 * v.max())
            if pd.api.types.is_integer_dtype(rows[column].dtype):
                ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        pretty = _LABELS.get(column, column)
        ax.set_ylabel(pretty if pretty == column else f"{pretty} ({column})")
        if title is None:
            title = _describe(column, status, step, step_multiplier, aggregate, aggregated, rows)
        ax.set_title(title)
        legend_title = ", ".join(groups) if groups else None
        ax.legend(title=legend_title, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    return ax


def plot_stability_boundary(
    table: pd.DataFrame,
    *,
    ax: Any = None,
    metric: str | None = None,
    problem: str | None = None,
    scheme: str | None = None,
    relative: bool | None = None,
    aggregate: str = "worst",
    logy: bool | None = None,
    title: str | None = None,
) -> Any:
    r"""The $(N, \alpha)$ plane of one (problem, scheme, metric): the step grid's
    cells coloured by the descent's status, under forward Euler's bound
    $\alpha_{\max}$.

    **Drawn:**

    - one rectangle per $(N, \text{step})$ of the table (gid `"cells"`, a
      `PatchCollection` in the order of $N$, then of the step), centred on its $N$
      and step and reaching halfway to the neighbouring ones (geometric halfway on a
      log axis). Over the starts of a cell, `aggregate="worst"` colours it by its
      worst status, in the order of [`CATEGORIES`][figures.sweeps.CATEGORIES]
      (converged < max_steps < diverged < error; colours
      [`STATUS_COLORS`][figures.sweeps.STATUS_COLORS], legend of the classes
      present); `aggregate="fraction"` by the fraction of the starts that converged,
      from 0 (vermillion) to 1 (green), with a colour bar. With one start the two
      agree on converged and not;
    - a configuration that raised (one `error` row, no step) as a grey hatched
      column at its $N$, over the whole height (gid `"error"`);
    - $\alpha_{\max}$ from the table's column, one value per $N$ (gid
      `"alpha_max"`, black): with `relative=False` the curve $(N, \alpha_{\max}(N))$
      over absolute steps $\alpha$; with `relative=True` the line
      $\alpha/\alpha_{\max} = 1$ over the steps as multiples of $\alpha_{\max}$
      (the column `step_multiplier` when the study's steps were relative, else
      `step / alpha_max`). The default `relative=None` follows the table: relative
      when its steps were relative to $\alpha_{\max}$. The curve breaks at an $N$
      without a value (its configuration raised), and is left out without any.

    $N$ on a log axis with its values as ticks; the steps on a log axis when `logy`
    (default: when they span a factor of 10 or more). The legend sits to the right
    of the axes, clear of the cells (with `aggregate="fraction"`, the colour bar
    does, and the legend sits below).

    **Arguments:**

    - `table`: a sweep's table (columns `N`, `step`, `status`; `alpha_max` for
      the curve and for `relative=True`); `ax`: as for `plot_metric_against_N`.
    - `metric`, `problem`, `scheme`: the configuration to draw; each may be left
      out when the table holds one value.
    - `relative`, `aggregate`, `logy`: as above; `title` replaces the default.

    **Returns:** the `Axes`.

    **Raises:** `ValueError` naming the argument: `table` without the columns
    needed, `metric`/`problem`/`scheme` absent from the table or left out where
    it holds several, `relative=True` without $\alpha_{\max}$ at a step's $N$,
    an unknown `aggregate`.
    """
    _check_table(table, ("N", "step", "status"))
    if aggregate not in ("worst", "fraction"):
        raise ValueError(f"`aggregate` must be 'worst' or 'fraction'; got {aggregate!r}.")
    rows = _filter(table, problem=problem, scheme=scheme, metric=metric)
    chosen = {}
    for name in (n for n in _IDENTIFYING if n in rows.columns):
        if len(values := sorted(map(str, rows[name].unique()))) > 1:
            raise ValueError(
                f"`{name}`: the table holds several ({values}); choose one: {name}=..."
            )
        chosen[name] = values[0]
    cells, failed, relative, alpha_max = _cells(rows, relative)
    Ns = np.array(sorted(set(cells.index.get_level_values("N")) | set(failed)), dtype=float)
    if logy is None:
        yv = cells.index.get_level_values("y").to_numpy()
        logy = bool(len(yv) and np.all(yv > 0) and yv.max() >= 10 * yv.min())
    x_edges = _edges(Ns, log=True)
    boxes = []  # (x0, x1, y0, y1) of each cell, in the order of `cells`
    for n, group in cells.groupby(level="N", sort=True):
        i = int(np.searchsorted(Ns, n))
        y_edges = _edges(group.index.get_level_values("y").to_numpy(), log=logy)
        boxes += [(x_edges[i], x_edges[i + 1], y0, y1) for y0, y1 in pairwise(y_edges)]
    ax = _axes(ax, width=6.4)
    handles: list[Any] = []
    with _style.style():
        if boxes:
            rects = [Rectangle((x0, y0), x1 - x0, y1 - y0) for x0, x1, y0, y1 in boxes]
            art = PatchCollection(rects, edgecolor="white", linewidth=0.6, gid="cells")
            if aggregate == "worst":
                ranks = cells["rank"].to_numpy()
                art.set_facecolor([to_rgba(STATUS_COLORS[CATEGORIES[r]]) for r in ranks])
                present = [c for k, c in enumerate(CATEGORIES) if k in set(ranks)]
                handles += [Patch(facecolor=STATUS_COLORS[c], label=_LEGEND[c]) for c in present]
            else:
                art.set(array=cells["fraction"].to_numpy(), cmap=_FRACTION_CMAP, clim=(0, 1))
                bar = ax.figure.colorbar(art, ax=ax, pad=0.02, fraction=0.05)
                bar.set_label("fraction of the starts converged")
            ax.add_collection(art)
        error = dict(facecolor=STATUS_COLORS["error"], alpha=0.5, hatch="//")
        for n in failed:
            i = int(np.searchsorted(Ns, n))
            ax.axvspan(x_edges[i], x_edges[i + 1], edgecolor="white", lw=0, gid="error", **error)
        if failed:
            handles.append(Patch(label=_LEGEND["error"], **error))
        line = None
        if relative:
            line = ax.axhline(1.0, color="black", linewidth=1.4, gid="alpha_max")
            line.set_label(r"$\alpha = \alpha_{\max}$ (forward Euler)")
        elif np.isfinite(alpha_max.to_numpy(dtype=float)).any():
            (line,) = ax.plot(
                alpha_max.index.to_numpy(dtype=float), alpha_max.to_numpy(dtype=float),
                color="black", marker="o", markersize=4, gid="alpha_max",
                label=r"$\alpha_{\max}$ (forward Euler)",
            )  # fmt: skip
        handles = handles if line is None else [line, *handles]
        ax.set_xlim(x_edges[0], x_edges[-1])
        _n_axis(ax, Ns)
        if logy:
            _log_y(ax)
        if boxes:  # the cells, and the whole curve of alpha_max with a margin
            lo, hi = min(b[2] for b in boxes), max(b[3] for b in boxes)
            curve = np.array([]) if relative else alpha_max.to_numpy(dtype=float)
            curve = curve[np.isfinite(curve)]
            if curve.size and (curve.min() < lo or curve.max() > hi):
                lo, hi = min(lo, curve.min()), max(hi, curve.max())
                pad = 0.05 * (hi - lo)
                lo, hi = (lo / 1.15, hi * 1.15) if logy else (lo - pad, hi + pad)
            ax.set_ylim(lo, hi)
        ax.grid(False)
        ax.set_ylabel(r"step $\alpha / \alpha_{\max}$" if relative else r"step $\alpha$")
        if title is None:
            starts = int(rows["start"].nunique()) if "start" in rows.columns else 1
            what = "worst status" if aggregate == "worst" else "fraction converged"
            what += f" over {starts} starts" if starts > 1 else ""
            names = [chosen[k] for k in ("problem", "scheme") if k in chosen]
            names += [f"{chosen['metric']} metric"] if "metric" in chosen else []
            title = f"{', '.join(names)}: {what}" if names else what
        ax.set_title(title)
        if handles and aggregate == "fraction":  # the colour bar to the right, this below
            ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=2)
        elif handles:
            ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    return ax


def _cells(rows: pd.DataFrame, relative: bool | None):
    """The cells of `plot_stability_boundary`: a frame indexed by (N, y), sorted, with
    the worst class's `rank` in CATEGORIES and the `fraction` converged over the
    starts; the N of the configurations that raised (no step); whether y is
    relative; alpha_max per N."""
    N, steps = _numeric(rows, "N"), _numeric(rows, "step")
    stepped = np.isfinite(steps) & np.isfinite(N)
    nan = np.full(len(rows), np.nan)  # for a column the table does not have
    alpha_max = _numeric(rows, "alpha_max") if "alpha_max" in rows.columns else nan
    multiplier = _numeric(rows, "step_multiplier") if "step_multiplier" in rows.columns else nan
    from_table = bool(np.all(np.isfinite(multiplier[stepped])))  # steps relative to alpha_max
    relative = from_table and bool(stepped.any()) if relative is None else relative
    if relative and from_table:
        y = multiplier
    elif relative:
        if (missing := stepped & ~(alpha_max > 0)).any():  # no column, or no value at an N
            raise ValueError(
                f"`relative`: no alpha_max at N = {sorted({int(n) for n in N[missing]})} (compute "
                "'euler_bound'); draw absolute steps with relative=False."
            )
        y = steps / np.where(stepped, alpha_max, 1.0)
    else:
        y = steps
    ranks = [CATEGORIES.index(category(s)) for s in rows["status"][stepped]]
    cells = pd.DataFrame({"N": N[stepped], "y": y[stepped], "rank": ranks})
    cells["fraction"] = (cells["rank"] == 0).astype(float)
    cells = cells.groupby(["N", "y"], sort=True).agg(
        rank=("rank", "max"), fraction=("fraction", "mean")
    )
    failed = sorted(set(N[~stepped & np.isfinite(N)]) - set(cells.index.get_level_values("N")))
    per_N = pd.Series(alpha_max).groupby(N).first()  # one value per configuration
    return cells, failed, bool(relative), per_N  # NaN where none: the curve breaks there


# --------------------------------------------------------------------- helpers


def _check_table(table: Any, needed: Sequence[str]) -> None:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"`table` must be a pandas DataFrame; got {type(table).__name__}.")
    if missing := [c for c in needed if c not in table.columns]:
        raise ValueError(
            f"`table` lacks the columns {missing} (a gradflow.sweep table has them); "
            f"its columns: {list(table.columns)}."
        )
    if table.empty:
        raise ValueError("`table` has no rows.")


def _filter(table: pd.DataFrame, **chosen: str | None) -> pd.DataFrame:
    rows = table
    for name, value in ((k, v) for k, v in chosen.items() if v is not None):
        if name not in rows.columns:
            raise ValueError(f"`{name}`: the table has no column {name!r} to select on.")
        if (kept := rows[rows[name] == value]).empty:
            raise ValueError(
                f"`{name}`: no rows with {name} {value!r}; the table holds "
                f"{sorted(map(str, rows[name].unique()))}."
            )
        rows = kept
    return rows


def _at(rows: pd.DataFrame, name: str, value: float) -> pd.DataFrame:
    if name not in rows.columns:
        raise ValueError(f"`{name}`: the table has no column {name!r}.")
    have = _numeric(rows, name)
    kept = np.isclose(have, float(value), rtol=1e-9, atol=0.0)
    if not kept.any():
        there = sorted({float(v) for v in have if np.isfinite(v)})
        shown = ", ".join(f"{v:.6g}" for v in there) or "none"
        raise ValueError(f"`{name}`: no rows at {value!r} in the selection; it holds {shown}.")
    return rows[kept]


def _numeric(rows: pd.DataFrame, name: str, argument: str = "table") -> np.ndarray:
    """A column as float64, missing values (None, pandas NA) as NaN."""
    try:
        values = pd.to_numeric(rows[name], errors="raise")
    except (ValueError, TypeError) as e:
        raise ValueError(f"`{argument}`: the column {name!r} is not numeric.") from e
    return values.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)


def _edges(centres: np.ndarray, *, log: bool) -> np.ndarray:
    """Cell edges halfway between sorted centres (geometric halfway when `log`), the
    outer ones mirrored; a single centre gets a cell a factor 1.4 (log) or 20%
    wide."""
    c = np.asarray(centres, dtype=float)
    t = np.log(c) if log else c
    if len(t) == 1:
        half = 0.5 * np.log(1.4) if log else 0.1 * max(abs(t[0]), 1e-12)
        e = np.array([t[0] - half, t[0] + half])
    else:
        mid = 0.5 * (t[1:] + t[:-1])
        e = np.concatenate([[2 * t[0] - mid[0]], mid, [2 * t[-1] - mid[-1]]])
    return np.exp(e) if log else e


def _n_axis(ax: Any, Ns: Any) -> None:
    """$N$ on a log axis, its values as ticks (up to 12 of them)."""
    ax.set_xscale("log")
    values = sorted({int(n) for n in np.asarray(Ns, dtype=float) if np.isfinite(n)})
    if 0 < len(values) <= 12:
        ax.set_xticks(values)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(_N_LABEL)


class _PlainLogFormatter(LogFormatter):
    """matplotlib's choice of labelled ticks on a log axis, written as plain numbers
    (20 and 0.06, not 2 x 10^1 and 6e-02)."""

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        return f"{x:g}"


def _log_y(ax: Any) -> None:
    """A log y axis labelled with plain numbers."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_PlainLogFormatter())
    ax.yaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def _axes(ax: Any, *, width: float) -> Any:
    if ax is None:
        _, ax = _style.figure(width=width, height=3.6)
    return ax


def _describe(column, status, step, step_multiplier, aggregate, aggregated, rows) -> str:
    parts = [f"{column} against N"]
    if step_multiplier is not None:
        parts.append(rf"at $\alpha$ = {step_multiplier:g} $\alpha_{{\max}}$")
    elif step is not None:
        parts.append(rf"at $\alpha$ = {step:g}")
    if status is not None:
        parts[-1] += ","
        parts.append(f"{status} runs")
    if aggregated:
        name = aggregate if isinstance(aggregate, str) else getattr(aggregate, "__name__", "value")
        steps = step is None and step_multiplier is None and rows["step"].nunique() > 1
        parts.append(f"({name} over {'steps and starts' if steps else 'starts'})")
    return " ".join(parts)


__all__ = [
    "CATEGORIES",
    "STATUS_COLORS",
    "category",
    "plot_metric_against_N",
    "plot_stability_boundary",
]
