"""Plotting primitives shared by the figure scripts and the `gradflow analyze` report.

Every function draws onto a matplotlib `Axes` it is given and returns what it drew
(or nothing); none of them computes numbers of its own beyond the geometry of the
picture (the eigenvalues, slopes and counts come from `flow` and `stability`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _style


def stability_disk(
    ax: Any,
    mu: Any,
    alpha: float,
    *,
    color: str | None = None,
    label: str | None = None,
    disk_label: str | None = r"forward Euler: $|1 + z| < 1$",
    marker: str = "o",
    zoom: bool = True,
) -> dict[str, Any]:
    r"""Draw the eigenvalues $z = \alpha\mu$ of $\alpha J$ over forward Euler's
    stability disk $|1 + z| < 1$ (centre $-1$, radius 1) in the complex plane.

    Gradient descent with step $\alpha$ is forward Euler on the flow (50); it is
    linearly stable at the equilibrium iff every $\alpha\mu$ lies inside the disk.
    Points outside are drawn as crosses in red and counted.

    **Arguments:**

    - `ax`: a matplotlib `Axes` (set to equal aspect; the box adapts to the limits).
    - `mu`: the eigenvalues of $J$ (real or complex, any shape).
    - `alpha`: the step $\alpha > 0$.
    - `color`, `label`, `marker`: for the points inside the disk; the default label
      (None) is "alpha mu inside the disk (count)", a given one is used as it is.
    - `disk_label`: legend text of the disk (None: no legend entry).
    - `zoom`: fit the view to the disk and the points (else leave the limits to the
      caller).

    **Returns:** `{"z": alpha*mu (1-D complex), "outside": bool mask,
    "n_outside": int}`.
    """
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Circle

    z = float(alpha) * np.asarray(mu).astype(np.complex128).reshape(-1)
    outside = np.abs(1.0 + z) >= 1.0
    color = _style.COLORS[0] if color is None else color
    bad = _style.COLORS[1]
    ax.add_patch(
        Circle(
            (-1.0, 0.0),
            1.0,
            facecolor=to_rgba(_style.COLORS[5], 0.18),
            edgecolor=_style.COLORS[5],
            linewidth=1.3,
            label=disk_label,
            zorder=1,
        )
    )
    ax.axhline(0.0, color="0.6", linewidth=0.6, zorder=0)
    ax.axvline(0.0, color="0.6", linewidth=0.6, zorder=0)
    n_in = int(np.sum(~outside))
    ax.plot(
        z.real[~outside],
        z.imag[~outside],
        linestyle="none",
        marker=marker,
        markersize=4.0,
        markerfacecolor="none",
        color=color,
        label=rf"$\alpha\mu$ inside the disk ({n_in})" if label is None else label,
        zorder=3,
    )
    n_out = int(np.sum(outside))
    if n_out:
        ax.plot(
            z.real[outside],
            z.imag[outside],
            linestyle="none",
            marker="x",
            markersize=6.0,
            color=bad,
            label=f"outside the disk ({n_out})",
            zorder=4,
        )
    ax.set_aspect("equal", adjustable="box")
    if zoom:
        lo = min(-2.15, float(np.min(z.real)) - 0.15) if z.size else -2.15
        hi = max(0.25, float(np.max(z.real)) + 0.15) if z.size else 0.25
        half = max(1.15, 0.5 * (hi - lo) * 0.55)
        ax.set_xlim(lo, hi)
        ax.set_ylim(-half, half)
    ax.set_xlabel(r"Re $\alpha\mu$")
    ax.set_ylabel(r"Im $\alpha\mu$")
    return {"z": z, "outside": outside, "n_outside": n_out}


def loglog_slope(x: Any, y: Any) -> float:
    r"""The least-squares slope of $\log y$ against $\log x$ over the finite,
    positive pairs (NaN with fewer than two)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if int(np.sum(ok)) < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def reference_slope(
    ax: Any,
    x: Sequence[float],
    anchor: float,
    slope: float,
    *,
    label: str | None = None,
    color: str = "0.45",
) -> None:
    r"""A dashed guide line $y = \text{anchor}\,(x/x_0)^{\text{slope}}$ through
    $(x_0, \text{anchor})$, $x_0$ = `x[0]`, on log-log axes."""
    x = np.asarray(x, dtype=np.float64)
    ax.plot(
        x,
        anchor * (x / x[0]) ** slope,
        linestyle=":",
        color=color,
        linewidth=1.1,
        label=label,
        zorder=1,
    )


def mark_divergence(
    ax: Any,
    x: float,
    y: float,
    *,
    text: str = "diverged",
    color: str | None = None,
    ha: str = "left",
) -> None:
    """A red cross at `(x, y)` with a short annotation (where a run blew up), placed
    to the right of the cross (`ha="left"`) or to its left (`ha="right"`)."""
    color = _style.COLORS[1] if color is None else color
    ax.plot([x], [y], marker="X", markersize=9, color=color, linestyle="none", zorder=5)
    ax.annotate(
        text,
        (x, y),
        xytext=(6 if ha == "left" else -10, 8),
        textcoords="offset points",
        color=color,
        fontsize=8,
        ha=ha,
        va="bottom",
    )


def command_line(make: Any, doc: str | None, argv: Sequence[str] | None = None) -> int:
    """The command line of one figure script: `python figures/<name>.py --out DIR
    [--quick]`. Runs `make(out, quick=...)` and prints the files written."""
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path("figures-out"), help="output folder (created)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes (seconds; what the tests run)"
    )
    args = parser.parse_args(argv)
    for path in make(args.out, quick=args.quick):
        print(path)
    return 0


def fmt_slope(slope: float) -> str:
    """A fitted slope to two decimals, without the sign of a rounded zero."""
    text = f"{slope:.2f}"
    return "0.00" if text == "-0.00" else text
