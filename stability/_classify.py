r"""Classification of an equilibrium of the gradient flow (50) from the spectrum of
its Jacobian $J$ (section 5.1: the flow must be stable for the algorithm to
converge)."""

from __future__ import annotations

from typing import Any

import numpy as np

from flow import AbstractRecord
from flow.validation import instance, positive_float

from ._spectrum_results import Spectrum


KINDS = ("asymptotically stable", "marginal", "saddle", "unstable")
"""The kinds of equilibrium, `Classification.kind`."""


class Classification(AbstractRecord):
    r"""The type of an equilibrium, from [`classify`][stability.classify].

    **Fields:**

    - `kind`: `"asymptotically stable"` (every $\mathrm{Re}\,\mu < 0$),
      `"marginal"` (no $\mathrm{Re}\,\mu > 0$, some $\mu = 0$: a manifold of
      equilibria, not an instability), `"saddle"` (some $\mathrm{Re}\,\mu > 0$ and some
      $< 0$) or `"unstable"` (no $\mathrm{Re}\,\mu < 0$ and some $> 0$);
    - `n_unstable` (the saddle's index: the number of unstable directions),
      `n_zero`, `n_stable`;
    - `manifold_dimension`: `n_zero`, the dimension of the kernel of the Hessian:
      when the equilibria near $U^*$ form a smooth manifold (a Morse-Bott point, as
      for the paper's Mayer problems with control-affine $f$, where
      $\nabla^2 E^N$ has rank $n$ at a reachable minimiser), its dimension; 0 for an
      isolated equilibrium;
    - `threshold`: $|\mathrm{Re}\,\mu| \le$ `threshold` counts as zero
      (= `tol` $\cdot \max|\mu|$); `tol`;
    - `rightmost`: the largest real part; `certain`: False when the slow end of
      the spectrum was not resolved (then unstable directions may be missing);
    - `description`: the counts in words (also the message's details).

    `result` is always `completed`; the kind of equilibrium is `kind`.
    """

    kind: str
    n_unstable: int
    n_zero: int
    n_stable: int
    manifold_dimension: int
    threshold: float
    tol: float
    rightmost: float | None
    certain: bool
    description: str

    def _details(self) -> str:
        return self.description

    @property
    def index(self) -> int:
        """The number of unstable directions (the Morse index of a saddle)."""
        return self.n_unstable

    @property
    def stable(self) -> bool:
        """True for an asymptotically stable equilibrium."""
        return self.kind == "asymptotically stable"

    def _record(self, include_arrays: bool) -> dict[str, Any]:
        d = self._fields()
        d["index"] = self.index
        return d

    def _summary(self) -> str:
        extra = ""
        if self.kind == "saddle":
            extra = f" with {self.n_unstable} unstable direction(s)"
        if self.n_zero:
            extra += f", manifold of equilibria of dimension {self.manifold_dimension}"
        doubt = "" if self.certain else " (slow end unresolved)"
        return f"{self.kind}{extra}{doubt}"


def classify(spectrum: Spectrum, *, tol: float | None = None) -> Classification:
    r"""Classify the equilibrium whose Jacobian spectrum is `spectrum`.

    With $\tau$ = `tol` $\cdot \max_i|\mu_i|$ (default `tol` = the spectrum's
    `zero_tol`, 1e-8): eigenvalues with $\mathrm{Re}\,\mu > \tau$ are unstable, with
    $|\mathrm{Re}\,\mu| \le \tau$ zero, the rest stable. Zero eigenvalues are not
    instability: they are counted as the dimension of a manifold of equilibria
    (for a gradient flow, the kernel of $\nabla^2 E^N$).

    For a partial (Lanczos) spectrum the counts combine the converged eigenvalues
    with the clusters: a cluster whose position is zero (within $\tau$) adds its
    `count` to `n_zero`, one at a positive position to `n_unstable`; the rest of the
    $Nm$ directions are stable. `certain` is False when the slow end was not
    resolved.

    **Returns:** a [`Classification`][stability.Classification].
    """
    instance(spectrum, "spectrum", Spectrum, "from stability.spectrum")
    tol = spectrum.zero_tol if tol is None else positive_float(tol, "tol")
    mu = np.asarray(spectrum.eigenvalues)
    re = np.real(mu)
    finite = np.isfinite(re)
    scale = float(np.max(np.abs(mu[finite]))) if finite.any() else 0.0
    scale = max(scale, spectrum.norm if np.isfinite(spectrum.norm) else 0.0)
    threshold = tol * scale
    if spectrum.complete:
        ok = finite
        n_unstable = int(np.sum(re[ok] > threshold))
        n_zero = int(np.sum(np.abs(re[ok]) <= threshold))
        n_stable = int(np.sum(re[ok] < -threshold))
        certain = bool(np.all(ok))
    else:
        windows = [(c.position, c.halfwidth) for c in spectrum.clusters]
        in_cluster = np.zeros(re.shape, dtype=bool)
        for pos, hw in windows:
            in_cluster |= np.abs(re - pos) <= hw
        # Converged eigenvalues outside the clusters are counted one by one.
        counted = spectrum.converged & ~in_cluster & finite
        n_unstable = int(np.sum(re[counted] > threshold))
        n_zero = int(np.sum(np.abs(re[counted]) <= threshold))
        for c in spectrum.clusters:
            if abs(c.position) <= threshold:
                n_zero += c.count
            elif c.position > threshold:
                n_unstable += c.count
        n_stable = spectrum.size - n_unstable - n_zero
        certain = spectrum.slow_status in ("converged", "cluster", "complete")
    if n_unstable > 0:
        kind = "saddle" if n_stable > 0 else "unstable"
    elif n_zero > 0:
        kind = "marginal"
    else:
        kind = "asymptotically stable"
    rightmost = float(np.max(re[finite])) if finite.any() else None
    parts = [f"{n_stable} stable, {n_zero} zero, {n_unstable} unstable of {spectrum.size}"]
    if n_zero:
        parts.append(
            f"the zero eigenvalues (|Re mu| <= {threshold:.2e}) are a manifold of equilibria "
            f"of dimension {n_zero}, left out of step-size bounds"
        )
    if not certain:
        parts.append("the slow end of the spectrum is not resolved: counts are lower bounds")
    return Classification(
        kind=kind,
        n_unstable=n_unstable,
        n_zero=n_zero,
        n_stable=n_stable,
        manifold_dimension=n_zero,
        threshold=threshold,
        tol=tol,
        rightmost=rightmost,
        certain=certain,
        description="; ".join(parts),
    )
