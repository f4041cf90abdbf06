r"""Control bases sampled on a grid (paper eqs. (40)-(43)) and the rank diagnostics of
the sampled matrix B (Remark 5.13). The parameterized problem itself is in
`flow/_parameterize.py`.

A basis is a set of scalar functions $\xi_j(t)$, $j = 0, \dots, q-1$, on $[t_0, t_f]$
(eq. (40): $u(t; C) = \sum_j c_j \xi_j(t)$). On a grid $t_0 < \dots < t_N$ with
piecewise-constant controls on $[t_k, t_{k+1})$ it is *sampled* into the matrix
$\Phi \in \mathbb{R}^{N \times q}$: $\Phi_{kj} = \xi_j(\bar t_k)$ at the interval
midpoint $\bar t_k = (t_k + t_{k+1})/2$ (`sample="midpoint"`, the default), or
$\Phi_{kj} = h_k^{-1}\int_{t_k}^{t_{k+1}} \xi_j\,dt$ (`sample="average"`).

Ordering, with $m$ controls: $C$ has $p = q m$ entries, read row-major as a
$(q, m)$ matrix (entry `j*m + i` is the coefficient of $\xi_j$ in control $i$), and

    U = Phi @ C.reshape(q, m)            (shape (N, m))
    U.reshape(-1) = B @ C.reshape(-1),   B = kron(Phi, I_m)   (shape (N*m, p))

so row `k*m + i` of $B$ belongs to $u_{k,i}$, the order of `U.reshape(-1)` used
everywhere in this package. The gradient in $C$ is eq. (43):
$\nabla_C E^N = B^T \nabla_U E^N$.
"""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar

import equinox as eqx
import jax
import numpy as np
import numpy.polynomial.chebyshev as npcheb
import numpy.polynomial.legendre as npleg
from jaxtyping import Float

from ._custom_types import RealArrayLike
from ._encoding import format_number
from ._grid import uniform_grid
from ._results import AbstractRecord
from ._shooting import Shooting
from ._validation import choice, fraction, increasing_times, positive_int, spanning


_SAMPLES = ("midpoint", "average")

QUADRATURE_POINTS = 8
"""Gauss-Legendre points per interval for `sample="average"` (exact for polynomial
pieces of degree <= 15 that do not break inside an interval)."""


# ----------------------------------------------------------------- validation
def _points_arg(name: str, value: Any, minimum_count: int) -> int | tuple[float, ...]:
    """An integer count (>= minimum_count - 1 intervals) or a strictly increasing,
    finite 1-D sequence of at least `minimum_count` times (kept as a tuple)."""
    if isinstance(value, bool):
        raise TypeError(f"`{name}` must be an integer or an increasing array of times.")
    if isinstance(value, int | np.integer):
        return positive_int(value, name, minimum=max(minimum_count - 1, 1))
    arr = increasing_times(value, name, minimum_length=minimum_count)
    return tuple(float(v) for v in arr)


def _resolve_points(name: str, points: int | tuple[float, ...], t0: float, tf: float) -> np.ndarray:
    """The points as an array on [t0, tf]: uniform for a count, else checked to span
    exactly [t0, tf] (to 1e-12 of the interval; the ends are then snapped)."""
    if isinstance(points, int):
        return uniform_grid(points, t0, tf)
    return spanning(np.asarray(points, dtype=np.float64), name, t0, tf)


def _as_grid(grid: Any) -> np.ndarray:
    """A Shooting's grid, or a validated strictly increasing 1-D array of times."""
    if isinstance(grid, Shooting):
        return np.asarray(grid.grid, dtype=np.float64)
    return increasing_times(grid, "grid")


# --------------------------------------------------------------------- bases
class AbstractBasis(eqx.Module):
    r"""Scalar basis functions $\xi_0, \dots, \xi_{q-1}$ on $[t_0, t_f]$ (eq. (40)).

    Subclasses are final and implement [`evaluate`][] (pointwise values). A basis
    is independent of the grid until it is sampled by [`functions`][] or
    [`matrix`][]; integer sizes (a number of blocks, nodes or knot intervals) are
    resolved then, uniformly on the grid's $[t_0, t_f]$.
    """

    name: ClassVar[str]
    sample: eqx.AbstractVar[str]

    @abc.abstractmethod
    def evaluate(self, t: Any, t0: float, tf: float) -> np.ndarray:
        r"""$\xi_j(t)$ at the times `t` (1-D, inside $[t_0, t_f]$): shape `(len(t), q)`."""

    @abc.abstractmethod
    def label(self) -> str:
        """A short description, e.g. `legendre(degree=3)`."""

    def functions(self, grid: Any) -> Float[np.ndarray, "N q"]:
        r"""$\Phi$, shape `(N, q)`: each function sampled on each interval
        $[t_k, t_{k+1})$ of `grid` (a [`Shooting`][flow.Shooting] or an array of
        N+1 increasing times), at the midpoint or as the interval average (see the
        module docstring; `sample`)."""
        g = _as_grid(grid)
        t0, tf = float(g[0]), float(g[-1])
        if self.sample == "midpoint":
            return self.evaluate(0.5 * (g[:-1] + g[1:]), t0, tf)
        nodes, weights = np.polynomial.legendre.leggauss(QUADRATURE_POINTS)
        h = np.diff(g)
        ts = g[:-1, None] + 0.5 * h[:, None] * (nodes[None, :] + 1.0)  # (N, Q)
        vals = self.evaluate(ts.reshape(-1), t0, tf).reshape(ts.shape + (-1,))
        return np.einsum("q,kqj->kj", 0.5 * weights, vals)

    def matrix(self, grid: Any, control_dim: int = 1) -> Float[np.ndarray, "Nm p"]:
        r"""$B = \Phi \otimes I_m$, shape `(N*m, q*m)`: the sampled basis in the
        ordering of the module docstring (`U.reshape(-1) = B @ C.reshape(-1)`)."""
        m = positive_int(control_dim, "control_dim", minimum=1)
        phi = self.functions(grid)
        return np.kron(phi, np.eye(m))

    def __repr__(self) -> str:
        return self.label()


class PiecewiseConstant(AbstractBasis):
    r"""Block indicators: $\xi_j = 1$ on $[s_j, s_{j+1})$, 0 elsewhere (the last
    block closed at $t_f$), for breakpoints $t_0 = s_0 < \dots < s_q = t_f$.

    **Arguments:** `breakpoints`, an integer $q \ge 1$ (uniform blocks) or the
    strictly increasing times $s_0, \dots, s_q$ (spanning the grid's $[t_0, t_f]$);
    `sample`: `"midpoint"` (interval $k$ belongs to the block containing its
    midpoint: on a grid that refines the breakpoints, $\Phi$ groups consecutive
    intervals into blocks of 0/1 entries) or `"average"` (the exact fraction of
    the interval covered by the block).

    A block that contains no interval midpoint gives a zero column (a rank
    deficiency that [`rank_report`][flow.controls.rank_report] reports), and
    several intervals in one block tie their controls together.
    """

    name: ClassVar[str] = "piecewise-constant"
    breakpoints: int | tuple[float, ...]
    sample: str = "midpoint"

    def __init__(self, breakpoints: Any, *, sample: str = "midpoint"):
        self.breakpoints = _points_arg("breakpoints", breakpoints, 2)
        self.sample = choice(sample, "sample", _SAMPLES)

    def evaluate(self, t, t0, tf):
        s = _resolve_points("breakpoints", self.breakpoints, t0, tf)
        t = np.asarray(t, dtype=np.float64)
        idx = np.clip(np.searchsorted(s, t, side="right") - 1, 0, s.size - 2)
        out = np.zeros((t.size, s.size - 1))
        out[np.arange(t.size), idx] = 1.0
        return out

    def functions(self, grid):
        if self.sample == "midpoint":
            return super().functions(grid)
        g = _as_grid(grid)
        s = _resolve_points("breakpoints", self.breakpoints, float(g[0]), float(g[-1]))
        lo = np.maximum(g[:-1, None], s[None, :-1])
        hi = np.minimum(g[1:, None], s[None, 1:])
        return np.maximum(hi - lo, 0.0) / np.diff(g)[:, None]

    def label(self):
        q = self.breakpoints if isinstance(self.breakpoints, int) else len(self.breakpoints) - 1
        return f"piecewise-constant(blocks={q}, {self.sample})"


class Hat(AbstractBasis):
    r"""Hat (piecewise-linear) functions on nodes $t_0 = s_0 < \dots < s_{q-1} = t_f$:
    $\xi_j(s_i) = \delta_{ij}$, linear between nodes (the degree-1 B-splines).

    **Arguments:** `nodes`, an integer number of node intervals $q - 1 \ge 1$
    (uniform nodes) or the node times themselves; `sample`.
    """

    name: ClassVar[str] = "hat"
    nodes: int | tuple[float, ...]
    sample: str = "midpoint"

    def __init__(self, nodes: Any, *, sample: str = "midpoint"):
        self.nodes = _points_arg("nodes", nodes, 2)
        self.sample = choice(sample, "sample", _SAMPLES)

    def evaluate(self, t, t0, tf):
        s = _resolve_points("nodes", self.nodes, t0, tf)
        t = np.asarray(t, dtype=np.float64)
        eye = np.eye(s.size)
        return np.stack([np.interp(t, s, eye[j]) for j in range(s.size)], axis=1)

    def label(self):
        q = self.nodes + 1 if isinstance(self.nodes, int) else len(self.nodes)
        return f"hat(nodes={q}, {self.sample})"


def _unit(t: Any, t0: float, tf: float) -> np.ndarray:
    """t mapped affinely from [t0, tf] onto [-1, 1]."""
    return 2.0 * (np.asarray(t, dtype=np.float64) - t0) / (tf - t0) - 1.0


class _AbstractPolynomial(AbstractBasis):
    r"""Polynomials $p_0, \dots, p_d$ of $s = 2(t - t_0)/(t_f - t_0) - 1$ from a numpy
    Vandermonde function `_vander(s, d)`; $q = d + 1$ functions."""

    _vander: ClassVar[Any]
    degree: int
    sample: str = "midpoint"

    def __init__(self, degree: Any, *, sample: str = "midpoint"):
        self.degree = positive_int(degree, "degree", minimum=0)
        self.sample = choice(sample, "sample", _SAMPLES)

    def evaluate(self, t, t0, tf):
        return type(self)._vander(_unit(t, t0, tf), self.degree)

    def label(self):
        return f"{self.name}(degree={self.degree}, {self.sample})"


class Legendre(_AbstractPolynomial):
    r"""Legendre polynomials $P_0, \dots, P_d$ of $s = 2(t - t_0)/(t_f - t_0) - 1$
    ($q = d + 1$ functions; `numpy.polynomial.legendre.legvander`).

    **Arguments:** `degree` $d \ge 0$; `sample`.
    """

    name: ClassVar[str] = "legendre"
    _vander: ClassVar[Any] = staticmethod(npleg.legvander)


class Chebyshev(_AbstractPolynomial):
    r"""Chebyshev polynomials of the first kind $T_0, \dots, T_d$ of
    $s = 2(t - t_0)/(t_f - t_0) - 1$ ($q = d + 1$; `numpy.polynomial.chebyshev.chebvander`).

    **Arguments:** `degree` $d \ge 0$; `sample`.
    """

    name: ClassVar[str] = "chebyshev"
    _vander: ClassVar[Any] = staticmethod(npcheb.chebvander)


class BSpline(AbstractBasis):
    r"""Clamped B-splines of degree $d$ on the breakpoints
    $t_0 = s_0 < \dots < s_K = t_f$: the knot vector is $s_0$ repeated $d+1$ times,
    the interior breakpoints, and $s_K$ repeated $d+1$ times, giving $q = K + d$
    functions ($C^{d-1}$ at the breakpoints, a partition of unity). Built by
    `scipy.interpolate.BSpline.design_matrix`.

    **Arguments:** `degree` $d \ge 0$; `knots`, an integer $K \ge 1$ (uniform
    breakpoints) or the strictly increasing breakpoints; `sample`.
    """

    name: ClassVar[str] = "bspline"
    degree: int
    knots: int | tuple[float, ...]
    sample: str = "midpoint"

    def __init__(self, degree: Any, knots: Any, *, sample: str = "midpoint"):
        self.degree = positive_int(degree, "degree", minimum=0)
        self.knots = _points_arg("knots", knots, 2)
        self.sample = choice(sample, "sample", _SAMPLES)

    def knot_vector(self, t0: float, tf: float) -> np.ndarray:
        """The full clamped knot vector on $[t_0, t_f]$, length $K + 2d + 1$."""
        s = _resolve_points("knots", self.knots, t0, tf)
        d = self.degree
        return np.concatenate([np.full(d, s[0]), s, np.full(d, s[-1])])

    def evaluate(self, t, t0, tf):
        import scipy.interpolate  # on first use: `import flow` does not load scipy

        knots = self.knot_vector(t0, tf)
        t = np.clip(np.asarray(t, dtype=np.float64), t0, tf)
        design = scipy.interpolate.BSpline.design_matrix(t, knots, self.degree)
        return np.asarray(design.toarray())

    def label(self):
        K = self.knots if isinstance(self.knots, int) else len(self.knots) - 1
        return f"bspline(degree={self.degree}, knot intervals={K}, {self.sample})"


class Sampled(AbstractBasis):
    r"""A user's matrix $B$ of shape `(N*m, p)`, already sampled on a grid and in
    the ordering of the module docstring (rows `k*m + i`). Its number of rows must
    match the grid it is used with.

    **Arguments:** `matrix`, a finite real 2-D array with at least one column;
    `title`: a label for reports.
    """

    name: ClassVar[str] = "sampled"
    values: np.ndarray
    title: str
    sample: str = "midpoint"

    def __init__(self, matrix: Any, *, title: str = "sampled"):
        B = np.asarray(matrix)
        if B.dtype.kind not in "fiu":
            raise TypeError(f"`matrix` must be a real array; got dtype {B.dtype}.")
        if B.ndim != 2 or B.shape[0] < 1 or B.shape[1] < 1:
            raise ValueError(f"`matrix` must be 2-D of shape (N*m, p), p >= 1; got {B.shape}.")
        if not np.all(np.isfinite(B)):
            raise ValueError("`matrix` must be finite.")
        self.values = B.astype(np.float64)
        self.title = str(title)
        self.sample = "midpoint"

    @property
    def shape(self) -> tuple[int, int]:
        """`(N*m, p)`."""
        return (int(self.values.shape[0]), int(self.values.shape[1]))

    def evaluate(self, t, t0, tf):
        raise TypeError("a Sampled basis has no function values between its rows.")

    def functions(self, grid):
        raise TypeError(
            "a Sampled basis is already a matrix of shape (N*m, p): use matrix(grid, m)."
        )

    def matrix(self, grid, control_dim=1):
        m = positive_int(control_dim, "control_dim", minimum=1)
        N = _as_grid(grid).size - 1
        B = self.values.copy()
        if B.shape[0] != N * m:
            raise ValueError(
                f"`basis`: the matrix has {B.shape[0]} rows; the grid needs N*m = "
                f"{N}*{m} = {N * m} (one row per control u_(k,i), row index k*m + i)."
            )
        return B

    def label(self):
        return f"{self.title}({self.shape[0]}x{self.shape[1]})"


def basis_matrix(
    basis: "AbstractBasis | RealArrayLike",
    grid: Shooting | RealArrayLike,
    control_dim: int = 1,
) -> Float[np.ndarray, "Nm p"]:
    r"""$B$ of shape `(N*m, p)` for a basis (an [`AbstractBasis`][]) or a raw matrix
    on `grid` (a [`Shooting`][flow.Shooting] or N+1 times).

    **Raises:** `TypeError` for something that is neither; `ValueError` when a
    matrix has the wrong number of rows (N*m) for the grid.
    """
    if isinstance(basis, AbstractBasis):
        return basis.matrix(grid, control_dim)
    if isinstance(basis, np.ndarray | jax.Array | list | tuple):
        return Sampled(basis).matrix(grid, control_dim)
    raise TypeError(
        "`basis` must be a flow.controls basis (PiecewiseConstant, Hat, Legendre, "
        f"Chebyshev, BSpline, Sampled) or a matrix of shape (N*m, p); got {type(basis).__name__}."
    )


# -------------------------------------------------------------- rank report
def _svd_rank(B: np.ndarray, rtol: float | None) -> tuple[np.ndarray, float, int]:
    s = np.linalg.svd(B, compute_uv=False)
    smax = float(s[0]) if s.size else 0.0
    if rtol is None:
        tol = smax * max(B.shape) * float(np.finfo(np.float64).eps)
    else:
        tol = smax * float(rtol)
    return s, tol, int(np.sum(s > tol))


class RankReport(AbstractRecord):
    r"""The rank diagnostics of a sampled basis $B$ (Remark 5.13, eqs. (43), (52)).

    **Fields:**

    - `basis`: the basis' label; `rows` $= Nm$; `columns` $= p$;
    - `singular_values`: of $B$, descending (`numpy.linalg.svd`);
    - `tolerance`: singular values $\le$ it count as zero. Default, as in
      `numpy.linalg.matrix_rank`: $\sigma_{max}\max(Nm, p)\,\epsilon$ with
      $\epsilon$ the float64 machine epsilon; with `rtol`: $\sigma_{max}\cdot$`rtol`;
    - `rank`: the number of singular values above `tolerance`;
    - `condition_number`: $\sigma_{max}/\sigma_{min}$ over all $\min(Nm, p)$
      singular values (the 2-norm condition number, `numpy.linalg.cond`), and `inf`
      when $B$ is numerically rank deficient (`rank < min(Nm, p)`);
    - `rank_deficient`: `rank < columns`: the columns are dependent, $C$ is not
      unique and $\nabla^2_C E^N$ is singular (zero eigenvalues of the flow);
    - `invisible_dimension`: `rows - rank`, the dimension of $\ker B^T$: gradients
      $g = \nabla_U E^N$ that $C$ cannot see. When it is positive a stationary point
      in $C$ ($B^T g = 0$, eq. (52)) need not be one in $U$ ((51)): spurious
      solutions are possible (Remark 5.13). Only `invisible_dimension = 0` (full
      row rank, which needs $p \ge Nm$) rules them out.
    """

    basis: str
    rows: int
    columns: int
    singular_values: np.ndarray
    tolerance: float
    rank: int
    condition_number: float

    @property
    def rank_deficient(self) -> bool:
        """`rank < columns`."""
        return self.rank < self.columns

    @property
    def invisible_dimension(self) -> int:
        """`rows - rank` = dim ker B^T."""
        return self.rows - self.rank

    def _record(self, include_arrays: bool) -> dict[str, Any]:
        return dict(
            basis=self.basis,
            rows=self.rows,
            columns=self.columns,
            singular_values=self.singular_values,
            tolerance=self.tolerance,
            rank=self.rank,
            condition_number=self.condition_number,
            rank_deficient=self.rank_deficient,
            invisible_dimension=self.invisible_dimension,
        )

    def _summary(self) -> str:
        flag = "RANK DEFICIENT" if self.rank_deficient else "full column rank"
        return (
            f"{self.basis}: B is {self.rows}x{self.columns}, rank {self.rank} ({flag}), "
            f"cond {format_number(self.condition_number, '.3g')}, dim ker B^T = "
            f"{self.invisible_dimension}"
        )


def rank_report(
    basis: "AbstractBasis | RealArrayLike",
    grid: Shooting | RealArrayLike,
    *,
    control_dim: int = 1,
    rtol: float | None = None,
) -> RankReport:
    r"""Singular values, numerical rank and condition number of $B = \partial U/\partial C$
    (eq. (43)) for `basis` sampled on `grid`.

    **Arguments:**

    - `basis`: an [`AbstractBasis`][flow.controls.AbstractBasis] or a matrix
      `(N*m, p)`; `grid`: a [`Shooting`][flow.Shooting] (then `control_dim` is
      taken from it) or an array of N+1 increasing times;
    - `control_dim`: $m$ (ignored for a Shooting);
    - `rtol`: relative rank tolerance (default: `numpy.linalg.matrix_rank`'s,
      $\sigma_{max}\max(Nm, p)\,\epsilon$).

    **Returns:** a [`RankReport`][flow.controls.RankReport].
    """
    if isinstance(grid, Shooting):
        control_dim = grid.control_dim
    if rtol is not None:
        rtol = fraction(rtol, "rtol")
    B = basis_matrix(basis, grid, control_dim)
    s, tol, rank = _svd_rank(B, rtol)
    smin = float(s[-1]) if s.size else 0.0
    cond = float(s[0] / smin) if rank == min(B.shape) and smin > 0 else math.inf
    label = basis.label() if isinstance(basis, AbstractBasis) else "matrix"
    return RankReport(
        basis=label,
        rows=int(B.shape[0]),
        columns=int(B.shape[1]),
        singular_values=s,
        tolerance=float(tol),
        rank=rank,
        condition_number=cond,
    )
