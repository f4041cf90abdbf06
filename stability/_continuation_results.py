r"""The results of [`continuation`][stability.continuation]: the branch's points (a tidy
table), its special points (folds, branch points) and the run."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from jaxtyping import Float

from flow import RESULTS, AbstractRecord, AbstractResult
from flow.validation import finite_float

from ._branch import Family


#: The columns of [`Continuation.table`][stability.Continuation.table], in order.
COLUMNS = (
    "p",
    "norm",
    "cost",
    "slow",
    "stiff",
    "kind",
    "index",
    "alpha_max",
    "residual",
    "tangent_p",
    "newton_steps",
)


class ContinuationPoint(AbstractRecord):
    r"""One equilibrium on a continued branch: an entry of `Continuation.points`.

    **Fields:**

    - `p`: the parameter; `U`: the equilibrium $U^*(p)$, shape `(N, m)` (in `to_dict`
      only with `include_arrays=True`);
    - `norm`: $\|U^*\|_{L^2} = (\sum_k h_k |u_k|^2)^{1/2}$, the control's $L^2$ norm
      (mesh independent); `cost`: $E^N(U^*; p)$;
    - `slow`, `stiff`: the ends of the spectrum of $J = -M^{-1}\nabla^2 E^N$, the
      rightmost and the leftmost eigenvalue (both real: the metric is diagonal);
    - `kind`: the classification ([`stability.KINDS`][stability.KINDS]:
      `"asymptotically stable"` is a strict local minimiser, `"saddle"` a saddle of
      $E^N$, `"unstable"` a maximiser, `"marginal"` a zero eigenvalue and no unstable
      one); `index`: the number of unstable directions (eigenvalues of $J$ above zero,
      the Morse index of $E^N$); `certain`: False when the matrix-free path could not
      resolve an end of the spectrum (or found more than 6 unstable directions, where
      the index is a lower bound): then no special point is detected from it;
    - `alpha_max`: the forward-Euler step bound $2/|\text{stiff}|$ of descent with
      this metric (None unless asymptotically stable);
    - `residual`: the stopping residual at $U^*$ (`stop_on`); `tangent_p`:
      $dp/ds$, the parameter's share of the unit tangent (it changes sign at a fold);
      `newton_steps`: the corrector's Newton steps for this point.
    """

    p: float
    U: Float[np.ndarray, "N m"]
    norm: float
    cost: float
    slow: float
    stiff: float
    kind: str
    index: int
    certain: bool
    alpha_max: float | None
    residual: float
    tangent_p: float
    newton_steps: int
    _arrays: ClassVar[tuple[str, ...]] = ("U",)

    @property
    def stable(self) -> bool:
        """True for an asymptotically stable equilibrium (a strict local minimiser)."""
        return self.kind == "asymptotically stable"

    def _summary(self) -> str:
        bound = "" if self.alpha_max is None else f", alpha_max={self.alpha_max:.6g}"
        return f"p={self.p:.8g}, {self.kind} (index {self.index}), norm={self.norm:.6g}{bound}"


class SpecialPoint(AbstractRecord):
    r"""A fold or a branch point located on a continued branch.

    **Fields:**

    - `kind`: `"fold"` (an eigenvalue of $\nabla^2 E^N$ crosses zero and the branch
      turns back in $p$: an optimum merges with a saddle and both disappear) or
      `"branch"` (an eigenvalue crosses zero and the branch goes on in $p$: another
      branch of equilibria crosses it);
    - `p`, `U` (the equilibrium there, shape `(N, m)`), `norm`, `cost`;
    - `index_before`, `index_after`: the number of unstable directions on either side;
    - `test`: the test function at the located point ($dp/ds$ for a fold, the
      eigenvalue of $M^{-1}\nabla^2 E^N$ nearest zero for a branch point): at most
      `locate_tol` (times the spectrum's scale for a branch point) once located; a
      larger value says the location stopped early (a corrector inside the bracket
      failed) at the best point found; `iterations`: the location's secant
      (Illinois) steps;
    - `null_vector`: for a branch point, the unit eigenvector $\varphi$ (in the metric)
      of the eigenvalue nearest zero, in $U$'s shape, which
      [`continuation`][stability.continuation] follows to switch branches; None for a
      fold;
    - `tangent`, `tangent_p`: the unit tangent $(dU/ds, dp/ds)$ of the branch at
      the last point before it (unit in the metric: $dU^T M\,dU + dp^2 = 1$); a
      branch switch leaves along the null vector made orthogonal to it;
    - `after`: the index in `points` of the last point before it.
    """

    kind: str
    p: float
    U: Float[np.ndarray, "N m"]
    norm: float
    cost: float
    index_before: int
    index_after: int
    test: float
    iterations: int
    null_vector: Float[np.ndarray, "N m"] | None
    tangent: Float[np.ndarray, "N m"]
    tangent_p: float
    after: int
    _arrays: ClassVar[tuple[str, ...]] = ("U", "null_vector", "tangent")

    def _summary(self) -> str:
        return (
            f"{self.kind} at p={self.p:.12g} (index {self.index_before} -> "
            f"{self.index_after}), norm={self.norm:.6g}"
        )


class Continuation(AbstractResult):
    r"""The result of [`continuation`][stability.continuation]: a branch of equilibria
    $\nabla E^N(U; p) = 0$ followed in $p$.

    **Fields:**

    - `result`: `completed` (the branch left `p_span`; a closed branch through
      `p_span[0]` leaves it where it comes back across `p_span[0]`), `max_steps`
      (`max_points` points were taken first), `stalled` (the corrector failed at the
      smallest step: a sharp turn, a singular point it could not pass, the end of
      the branch, or a tolerance below the residual's rounding floor; the message
      gives the last residual);
    - `points`: a tuple of [`ContinuationPoint`][stability.ContinuationPoint], in the
      order of the branch; `special_points`: a tuple of
      [`SpecialPoint`][stability.SpecialPoint], in the same order;
    - `problem`, `N`, `m`, `scheme`, `metric`, `p_span`, `tol`, `stop_on`, `method`
      (`"dense"` or `"matrix-free"`);
    - counters: `num_newton` (corrector Newton steps, the rejected ones included),
      `num_krylov` (GMRES steps of the matrix-free path), `num_rejected` (steps
      halved), `num_products` (Hessian-vector products of the spectra's Lanczos runs);
    - `reason`: where and why it stopped (also in `message`).

    `table()` gives the points as columns; [`at`][stability.Continuation.at] the
    equilibria on the branch at a given $p$.
    """

    result: RESULTS
    points: tuple[ContinuationPoint, ...]
    special_points: tuple[SpecialPoint, ...]
    problem: str
    N: int
    m: int
    scheme: str
    metric: str
    p_span: tuple[float, float]
    tol: float
    stop_on: str
    method: str
    num_newton: int
    num_krylov: int
    num_rejected: int
    num_products: int
    reason: str
    settings: dict
    family: Family

    @property
    def folds(self) -> tuple[SpecialPoint, ...]:
        """The special points of kind `"fold"`."""
        return tuple(s for s in self.special_points if s.kind == "fold")

    @property
    def branch_points(self) -> tuple[SpecialPoint, ...]:
        """The special points of kind `"branch"`."""
        return tuple(s for s in self.special_points if s.kind == "branch")

    def table(self) -> dict[str, np.ndarray]:
        """The points as columns (numpy arrays; `alpha_max` is NaN where undefined),
        in this order: `p`, `norm`, `cost`, `slow`, `stiff`, `kind`, `index`,
        `alpha_max`, `residual`, `tangent_p`, `newton_steps`."""
        out: dict[str, np.ndarray] = {}
        for name in COLUMNS:
            values = [getattr(q, name) for q in self.points]
            if name == "alpha_max":
                values = [np.nan if v is None else v for v in values]
            out[name] = np.asarray(values)
        return out

    def at(self, p: Any) -> tuple[ContinuationPoint, ...]:
        r"""The equilibria on this branch at parameter `p`, each once: the branch is cut
        at its folds, so that $p$ is monotone on each stretch between consecutive
        points; on each stretch that encloses `p`, the point where $p(s) = $ `p` is
        found by regula falsi in the arclength along the secant (pseudo-arclength
        corrections, well conditioned next to a fold), then, away from a fold, by
        Newton at fixed `p`; each is analysed as a point.

        **Raises:** `ValueError` when no stretch of the branch encloses `p`.
        """
        from ._continuation import points_at  # the driver's kernels

        return points_at(self, finite_float(p, "p"))

    def _details(self) -> str:
        return self.reason

    def _record(self, include_arrays: bool) -> dict[str, Any]:
        return {
            "problem": self.problem,
            "N": self.N,
            "m": self.m,
            "scheme": self.scheme,
            "metric": self.metric,
            "p_span": list(self.p_span),
            "tol": self.tol,
            "stop_on": self.stop_on,
            "method": self.method,
            "num_points": len(self.points),
            "num_newton": self.num_newton,
            "num_krylov": self.num_krylov,
            "num_rejected": self.num_rejected,
            "num_products": self.num_products,
            "settings": self.settings,
            "points": [q.to_dict(include_arrays=include_arrays) for q in self.points],
            "special_points": [
                s.to_dict(include_arrays=include_arrays) for s in self.special_points
            ],
        }

    def _summary(self) -> str:
        ps = [q.p for q in self.points]
        span = f"p in [{min(ps):.6g}, {max(ps):.6g}]" if ps else "no point"
        special = ", ".join(f"{s.kind} at p={s.p:.10g}" for s in self.special_points)
        return f"{len(self.points)} points, {span}" + (f"; {special}" if special else "")
