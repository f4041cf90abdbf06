"""Figures that reproduce each claim of the reference paper.

Each figure is a module `figures.<name>` with a function
`make(out: Path, *, quick: bool = False) -> list[Path]` (it writes `<name>.png`
and `<name>.pdf` into `out` and returns their paths) and a command line
`python figures/<name>.py --out DIR [--quick]`. `quick=True` draws the same
figure at small sizes (seconds; used by the tests). All of them share the
style in `figures._style`.

[`generate_all`][figures.generate_all] regenerates every figure; it backs
`gradflow figures`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path


#: Module names of the figures, in the order `gradflow figures` draws them.
FIGURES: tuple[str, ...] = ()


def generate_all(
    out: str | Path,
    *,
    quick: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Run every figure in [`FIGURES`][figures.FIGURES] into `out`; returns all files
    written. `progress(name)` is called before each figure, if given."""
    written: list[Path] = []
    for name in FIGURES:
        if progress is not None:
            progress(name)
        module = importlib.import_module(f"figures.{name}")
        written.extend(module.make(Path(out), quick=quick))
    return written
