"""Figures that reproduce each claim of the reference paper.

Each figure is a module `figures.<name>` with a function
`make(out: Path, *, quick: bool = False) -> list[Path]` (it writes `<name>.png`
and `<name>.pdf` into `out` and returns their paths) and a command line
`python figures/<name>.py --out DIR [--quick]`. `quick=True` draws the same
figure at small sizes (seconds; used by the tests). Where a module's tests check the
data of its figure, it also has `compute(...)` (the data) and `draw(data, out)` (the
files), so the tests draw from the data they checked. All of them share the
style in `figures._style` and the drawing primitives in `figures._plots` (forward
Euler's stability disk, slope guides, divergence marks), and take every number
from the public API of `flow` and `stability`. Output is deterministic: two runs
write byte-identical PNG and PDF files. `docs/figures.md` says which claim of the
paper each figure reproduces.

[`generate_all`][figures.generate_all] regenerates every figure; it backs
`gradflow figures`. [`figures.report`][figures.report] draws the figures of a
`gradflow analyze` report again, from its results document or a
`stability.StabilityReport`. [`figures.sweeps`][figures.sweeps] draws the standard
views of a `gradflow.sweep` table (a pandas DataFrame): a column against N, and the
stability boundary in the (N, alpha) plane under alpha_max.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path


FIGURES: tuple[str, ...] = (
    "lemma2",  # Lemma 2 (eq. (49)): grad E^N = h dH/du to rounding; off-by-one costate O(h)
    "tolerance",  # Theorem 5.14, section 6.1: eps on the gradient is eps/h on dH/du
    "iterations",  # section 6.2: iterations against N for four metrics / steps
    "euler_disk",  # forward Euler's disk |1 + alpha mu| < 1 below and above alpha_max
    "unstable_flows",  # section 5.1: a saddle / a manifold of minima defeat every step alpha
    "mesh",  # alpha_max against N, identity vs Hamiltonian metric (mesh study)
    "cost_vs_tau",  # cost against tau: the flow and the discrete replays, one diverging
    "costates",  # costates from the direct recursion and the indirect routes; O(h) in N
    "basin",  # section 6.3: direct (identity) vs indirect (Hamiltonian at alpha, alpha h; Newton)
    "parameterization",  # Remark 5.13: singular values of B; a spurious stationary point
    "adaptive_grid",  # section 6.5: the term S of (59); descent with the grid inside
    "depth",  # section 8: a residual network; iterations against depth, identity vs Hamiltonian
    "sharpness",  # sharpness mu_max along descent paths against 2/alpha, identity vs Hamiltonian
    "orbit_diagram",  # past alpha_max: the flip, the 2-cycle's square-root law, period doubling
    "continuation",  # equilibria against a parameter: folds, a branch point, alpha_max(p)
)
"""Module names of the figures, in the order `gradflow figures` draws them."""


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


#: The public names of `figures`: what the API reference documents (tests/test_docs.py).
__all__ = [
    "FIGURES",
    "generate_all",
]
