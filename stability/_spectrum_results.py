r"""The results of [`spectrum`][stability.spectrum]: the eigenvalues of the flow's
Jacobian $J$ with how each end was resolved, the clusters where most of them
accumulate, and the spectral density."""

from __future__ import annotations

from typing import Any

import numpy as np
from jaxtyping import Bool, Float, Inexact

from flow import RESULTS, AbstractRecord, AbstractResult, format_number, validation


class Cluster(AbstractRecord):
    r"""A window of the spectrum of $J$ that holds a large fraction of it.

    **Fields:** `position` (centre, an eigenvalue of $J$), `halfwidth` (the window
    is `position` $\pm$ `halfwidth`; half-width `cluster_width`$\cdot|$position$|$ +
    `zero_tol`$\cdot\|J\|$), `weight` (fraction of all $Nm$ eigenvalues in the
    window), `count` (their number), `exact` (True when `count` is a count of
    computed eigenvalues: the dense path, or a Lanczos run in which everything
    outside the cluster converged; otherwise `count` = round(`weight` $\cdot Nm$)
    from stochastic Lanczos quadrature).
    """

    position: float
    halfwidth: float
    weight: float
    count: int
    exact: bool

    @property
    def interval(self) -> tuple[float, float]:
        """(position - halfwidth, position + halfwidth)."""
        return (self.position - self.halfwidth, self.position + self.halfwidth)

    def _summary(self) -> str:
        how = "" if self.exact else " est."
        return (
            f"{self.position:.6g} +- {self.halfwidth:.2g}: {100 * self.weight:.1f}% of the "
            f"spectrum, {self.count}{how} eigenvalues"
        )


class SpectralDensity(AbstractRecord):
    r"""A discrete approximation of the eigenvalue distribution of $J$:
    $\frac{1}{Nm}\sum_i \delta(\mu - \mu_i) \approx \sum_j w_j\,\delta(\mu - \nu_j)$.

    `method="exact"`: the nodes are all eigenvalues, weights $1/(Nm)$.
    `method="slq"`: stochastic Lanczos quadrature, the Gauss quadrature of the
    spectral measure of `probes` random start vectors (nodes: Ritz values; weights:
    squared first components of the tridiagonal's eigenvectors, averaged).

    **Fields:** `nodes` (ascending), `weights` (sum 1), `probes`, `num_steps`
    (Lanczos steps per probe), `method`.
    """

    nodes: Float[np.ndarray, " q"]
    weights: Float[np.ndarray, " q"]
    probes: int
    num_steps: int
    method: str

    def cdf(self, x: Any) -> Float[np.ndarray, "..."]:
        r"""The fraction of eigenvalues $\le x$ (a step function)."""
        x = np.asarray(x, dtype=np.float64)
        cum = np.concatenate([[0.0], np.cumsum(self.weights)])
        return np.asarray(cum[np.searchsorted(self.nodes, x, side="right")])

    def smoothed(self, x: Any, width: Any) -> Float[np.ndarray, "..."]:
        r"""The density broadened by a Gaussian of standard deviation `width`:
        $\sum_j w_j \exp(-(x - \nu_j)^2 / 2\sigma^2) / (\sigma\sqrt{2\pi})$ (integrates
        to 1; for plots)."""
        sigma = validation.positive_float(width, "width")
        x = np.asarray(x, dtype=np.float64)
        z = (x[..., None] - self.nodes) / sigma
        dens = np.sum(self.weights * np.exp(-0.5 * z**2), axis=-1) / (sigma * np.sqrt(2 * np.pi))
        return np.asarray(dens)

    def _summary(self) -> str:
        return (
            f"{self.method}, {self.nodes.shape[0]} nodes in [{self.nodes[0]:.4g}, "
            f"{self.nodes[-1]:.4g}], probes={self.probes}"
        )


class Spectrum(AbstractResult):
    r"""Eigenvalues of the flow's Jacobian $J$, from [`spectrum`][stability.spectrum].

    **Fields:**

    - `eigenvalues`: eigenvalues of $J$ (real for a symmetric `kind`, else complex),
      ascending by real part: all $Nm$ of them when `complete`, otherwise the `k`
      at each requested end plus the converged isolated eigenvalues on the slow
      side of the lowest-curvature cluster.
    - `residuals`: residual norms $\|K y - \theta y\|$ of the unit Ritz vectors of
      the symmetric problem they were computed from (units of the eigenvalues; for
      the Newton kind mapped to first order); for the dense path the a-priori
      backward-error bound $\epsilon\|K\|$ of LAPACK's solver.
    - `converged`: residual $\le$ `tol`$\cdot|\mu|$ + $100\,\epsilon\,\|J\|$, which
      puts an eigenvalue within the residual of each reported value.
    - `method` (`"dense"`, `"lanczos"`, `"arnoldi"`), `num_hvp` (operator
      applications, each one Hessian-vector product), `num_steps` (Krylov
      dimension), `size` ($Nm$), `complete`, `symmetric`, `norm` ($\max|\mu|$).
    - `clusters`: [`Cluster`][stability.Cluster]s, ascending; `density`: a
      [`SpectralDensity`][stability.SpectralDensity] (None for non-symmetric).
    - `stiff_status`, `slow_status`: how each end was resolved: `"complete"`,
      `"converged"` (the `k` eigenvalues), `"cluster"` (every eigenvalue beyond the
      cluster converged and the cluster is stable: the end *is* the cluster edge,
      whose individual eigenvalues are not resolved), `"unresolved"`, or
      `"not requested"`; `result` is `max_steps` when an end is `"unresolved"`, else
      `completed`.
    - `tol`, `zero_tol`, `description` (how it was computed, in words; also the
      message's details), `problem`, `N`, `metric`, `kind`.
    """

    eigenvalues: Inexact[np.ndarray, " k"]
    residuals: Float[np.ndarray, " k"]
    converged: Bool[np.ndarray, " k"]
    method: str
    num_hvp: int
    num_steps: int
    size: int
    complete: bool
    symmetric: bool
    norm: float
    clusters: tuple[Cluster, ...]
    density: SpectralDensity | None
    stiff_status: str
    slow_status: str
    tol: float
    zero_tol: float
    description: str
    problem: str
    N: int
    metric: str
    kind: str

    @property
    def result(self) -> RESULTS:
        """`max_steps` when a requested end is unresolved, else `completed`."""
        unresolved = "unresolved" in (self.stiff_status, self.slow_status)
        return RESULTS.max_steps if unresolved else RESULTS.completed

    def _details(self) -> str:
        return self.description

    @property
    def real(self) -> bool:
        """True when every eigenvalue is real."""
        return bool(self.symmetric or np.all(np.imag(self.eigenvalues) == 0))

    @property
    def cluster(self) -> Cluster | None:
        """The heaviest cluster, or None."""
        if not self.clusters:
            return None
        return max(self.clusters, key=lambda c: c.weight)

    @property
    def stiff(self) -> float | None:
        r"""The most negative real part among the computed eigenvalues (the stiff
        end), or None when nothing was computed at that end."""
        if self.eigenvalues.shape[0] == 0 or self.stiff_status == "not requested":
            return None
        return float(np.min(np.real(self.eigenvalues)))

    @property
    def slow(self) -> float | None:
        r"""The largest real part among the computed eigenvalues (the slow end).
        For a symmetric problem a Ritz value that has not converged still bounds the
        true end from the left (Ritz values lie inside the spectrum)."""
        if self.eigenvalues.shape[0] == 0 or self.slow_status == "not requested":
            return None
        return float(np.max(np.real(self.eigenvalues)))

    @property
    def isolated(self) -> Inexact[np.ndarray, " j"]:
        """Converged eigenvalues outside every cluster window."""
        mask = self.converged.copy()
        for c in self.clusters:
            mask &= np.abs(np.real(self.eigenvalues) - c.position) > c.halfwidth
        return self.eigenvalues[mask]

    @property
    def slow_isolated(self) -> Inexact[np.ndarray, " j"]:
        r"""Converged eigenvalues to the right of the rightmost cluster: in Hessian
        terms, the isolated eigenvalues *below* the control-weight cluster."""
        mask = self.converged.copy()
        if self.clusters:
            edge = self.clusters[-1].position + self.clusters[-1].halfwidth
            mask &= np.real(self.eigenvalues) > edge
        return self.eigenvalues[mask]

    def _record(self, include_arrays: bool) -> dict[str, Any]:
        d = self._fields()
        d["stiff"], d["slow"] = self.stiff, self.slow
        return d

    def _summary(self) -> str:
        lines = [
            f"{self.problem}, N={self.N}, metric={self.metric}: {self.method}, "
            f"{self.num_hvp} products, "
            + ("complete" if self.complete else f"{self.eigenvalues.shape[0]} eigenvalues"),
            f"  stiff end {format_number(self.stiff, '.6g')} ({self.stiff_status}), slow end "
            f"{format_number(self.slow, '.6g')} ({self.slow_status})",
        ]
        lines += [f"  {c!r}" for c in self.clusters]
        return "\n".join(lines)
