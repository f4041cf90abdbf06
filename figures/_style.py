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
import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.image import imsave  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402


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
    # embedded TrueType (Type 42): editable text, and accepted by publishers' PDF
    # checks, which reject Type 3 fonts (Type 3 would save ~0.25 s per figure)
    "pdf.fonttype": 42,
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

    The figure is laid out (constrained layout) and rasterised once, at the PNG's
    resolution: the PNG is that raster cut to the tight bounding box (padded by
    `savefig.pad_inches`, edges on whole pixels), and the PDF draws the same
    positions inside the same box, without laying out again. Where something sticks
    out of the figure, matplotlib draws the PNG on the larger canvas instead.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    dpi0, engine = fig.get_dpi(), fig.get_layout_engine()
    # no layout engine from the user's rcParams when the saves below turn layout off
    no_layout = {"figure.autolayout": False, "figure.constrained_layout.use": False}
    with style(), plt.rc_context(no_layout):
        dpi = plt.rcParams["savefig.dpi"]
        try:
            fig.set_dpi(dpi)
            FigureCanvasAgg.draw(canvas)  # the layout engine runs inside this draw
            tight = fig.get_tightbbox(canvas.get_renderer())
            bbox = _on_pixels(tight.padded(plt.rcParams["savefig.pad_inches"]), dpi)
            fig.set_layout_engine(None)  # laid out: the saves keep these positions
            if _inside(tight, fig):
                _write_png(canvas, bbox, paths[0], dpi)
            else:
                fig.savefig(paths[0], bbox_inches=bbox, metadata={"Software": None})
            fig.savefig(
                paths[1],
                bbox_inches=bbox,
                metadata={"CreationDate": None, "Producer": None, "Creator": None},
            )
        finally:
            fig.set_dpi(dpi0)
            fig.set_layout_engine(engine)
    plt.close(fig)
    return paths


def _on_pixels(bbox: Bbox, dpi: float) -> Bbox:
    """`bbox` (inches) grown to whole pixels at `dpi`."""
    x0, y0 = np.floor(bbox.p0 * dpi) / dpi
    x1, y1 = np.ceil(bbox.p1 * dpi) / dpi
    return Bbox.from_extents(x0, y0, x1, y1)


def _inside(bbox: Bbox, fig) -> bool:
    """Whether `bbox` (inches) lies within the figure."""
    w, h = fig.get_size_inches()
    return bool(bbox.x0 >= 0 and bbox.y0 >= 0 and bbox.x1 <= w and bbox.y1 <= h)


def _write_png(canvas: FigureCanvasAgg, bbox: Bbox, path: Path, dpi: float) -> None:
    """Write the part `bbox` (inches, on whole pixels) of the canvas's raster as a PNG,
    as `savefig(path, bbox_inches=bbox)` would draw it; figure colour where `bbox`
    extends past the figure."""
    full = np.asarray(canvas.buffer_rgba())
    height, width = full.shape[:2]
    w, h = int(bbox.width * dpi), int(bbox.height * dpi)  # matplotlib's canvas size
    left = round(bbox.x0 * dpi)
    top = round(height - h - bbox.y0 * dpi)  # rows count down from the top
    img = np.empty((h, w, 4), dtype=np.uint8)
    img[...] = np.round(np.multiply(to_rgba(canvas.figure.get_facecolor()), 255))
    r0, r1 = max(top, 0), min(top + h, height)
    c0, c1 = max(left, 0), min(left + w, width)
    img[r0 - top : r1 - top, c0 - left : c1 - left] = full[r0:r1, c0:c1]
    imsave(path, img, format="png", origin="upper", dpi=dpi, metadata={"Software": None})
