"""The one matplotlib style shared by every figure of the product.

Every figure script and the `gradflow analyze` report draw with
[`figure`][figures._style.figure] and save with [`save`][figures._style.save], so
fonts, sizes, colours and file formats agree everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib


matplotlib.use("Agg")  # figures are files; never open a window

import matplotlib.pyplot as plt  # noqa: E402


#: rcParams applied inside [`figure`][figures._style.figure] (and by `style()`).
RC: dict[str, Any] = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "font.size": 9.5,
    "axes.titlesize": 10,
    "axes.labelsize": 9.5,
    "legend.fontsize": 8.5,
    "legend.frameon": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.6,
    "lines.markersize": 4.5,
    "image.cmap": "viridis",
    "pdf.fonttype": 42,  # embed TrueType, editable text in the PDF
    # metadata-free, so reruns write identical files (deterministic output)
    "svg.hashsalt": "gradflow",
}

#: Colour-blind-safe palette (Okabe-Ito), in the order lines should use it.
COLORS: tuple[str, ...] = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # green
    "#CC79A7",  # purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#000000",  # black
)

#: Single-column and full-width figure sizes in inches.
WIDTH_SINGLE = 4.8
WIDTH_DOUBLE = 7.2
HEIGHT = 3.3


@contextmanager
def style() -> Iterator[None]:
    """Apply the shared rcParams (and the colour cycle) inside a `with` block."""
    from cycler import cycler

    with plt.rc_context({**RC, "axes.prop_cycle": cycler(color=list(COLORS))}):
        yield


def figure(
    ncols: int = 1,
    nrows: int = 1,
    *,
    width: float | None = None,
    height: float | None = None,
    **kwargs: Any,
):
    """A new `(fig, axes)` in the shared style; `axes` is squeezed like `plt.subplots`."""
    with style():
        w = width if width is not None else (WIDTH_SINGLE if ncols == 1 else WIDTH_DOUBLE)
        h = height if height is not None else HEIGHT * nrows
        fig, axes = plt.subplots(nrows, ncols, figsize=(w, h), layout="constrained", **kwargs)
    return fig, axes


def save(fig, out: str | Path, name: str) -> list[Path]:
    """Save `fig` as `out/name.png` and `out/name.pdf` (folders created), close it,
    and return the two paths. PDFs carry no creation date, so reruns are identical.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    with style():
        fig.savefig(paths[0], metadata={"Software": None})
        fig.savefig(paths[1], metadata={"CreationDate": None, "Producer": None, "Creator": None})
    plt.close(fig)
    return paths
