r"""Control parameterizations U = B C (paper eqs. (40)-(43)) and their rank diagnostics.

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
import jax.numpy as jnp
import numpy as np
import numpy.polynomial.chebyshev as npcheb
import numpy.polynomial.legendre as npleg
import scipy.interpolate
from jaxtyping import Array, Float

from ._metrics import Fixed
from ._problem import OptimalControlProblem
from ._schemes import AbstractScheme
from ._shooting import Shooting


_SAMPLES = ("midpoint", "average")

#: Gauss-Legendre points per interval for `sample="average"` (exact for polynomial
#: pieces of degree <= 15 that do not break inside an interval).
QUADRATURE_POINTS = 8


# ----------------------------------------------------------------- validation
def _int_arg(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"`{name}` must be an integer >= {minimum}; got {value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; got {value}.")
    return int(value)


def _points_arg(name: str, value: Any, minimum_count: int) -> int | tuple[float, ...]:
    """An integer count (>= minimum_count - 1 intervals) or a strictly increasing,
    finite 1-D sequence of at least `minimum_count` times (kept as a tuple)."""
    if isinstance(value, bool):
        raise TypeError(f"`{name}` must be an integer or an increasing array of times.")
    if isinstance(value, int | np.integer):
        return _int_arg(name, value, max(minimum_count - 1, 1))
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"`{name}` must be a real array of times; got dtype {arr.dtype}.")
    arr = arr.astype(np.float64)
    if arr.ndim != 1 or arr.shape[0] < minimum_count:
        raise ValueError(
            f"`{name}` must be a 1-D array of at least {minimum_count} times; got shape "
            f"{arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` must be finite.")
    if not np.all(np.diff(arr) > 0):
        bad = int(np.argmin(np.diff(arr) > 0))
        raise ValueError(
            f"`{name}` must be strictly increasing; entry {bad} ({arr[bad]!r}) >= entry "
            f"{bad + 1} ({arr[bad + 1]!r})."
        )
    return tuple(float(v) for v in arr)


def _resolve_points(name: str, points: int | tuple[float, ...], t0: float, tf: float) -> np.ndarray:
    """The points as an array on [t0, tf]: uniform for a count, else checked to span
    exactly [t0, tf] (to 1e-12 of the interval; the ends are then snapped)."""
    if isinstance(points, int):
        out = t0 + (tf - t0) * (np.arange(points + 1, dtype=np.float64) / points)
        out[-1] = tf
        return out
    out = np.asarray(points, dtype=np.float64)
    scale = 1e-12 * (tf - t0)
    if abs(out[0] - t0) > scale or abs(out[-1] - tf) > scale:
        raise ValueError(
            f"`{name}` must start at t0 = {t0!r} and end at tf = {tf!r} (the grid's "
            f"ends); got [{out[0]!r}, ..., {out[-1]!r}]."
        )
    out = out.copy()
    out[0], out[-1] = t0, tf
    return out


def _as_grid(grid: Any) -> np.ndarray:
    """A Shooting's grid, or a validated strictly increasing 1-D array of times."""
    if isinstance(grid, Shooting):
        return np.asarray(grid.grid, dtype=np.float64)
    if isinstance(grid, bool) or isinstance(grid, int | float | np.integer | np.floating):
        raise TypeError(
            "`grid` must be a flow.Shooting or a 1-D array of N+1 >= 2 times; got the "
            f"number {grid!r}."
        )
    arr = np.asarray(grid)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"`grid` must be a real array of times; got dtype {arr.dtype}.")
    arr = arr.astype(np.float64)
    if arr.ndim != 1 or arr.shape[0] < 2:
        raise ValueError(f"`grid` must be a 1-D array of N+1 >= 2 times; got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError("`grid` must be finite.")
    if not np.all(np.diff(arr) > 0):
        bad = int(np.argmin(np.diff(arr) > 0))
        raise ValueError(
            f"`grid` must be strictly increasing; t[{bad}]={arr[bad]!r} >= "
            f"t[{bad + 1}]={arr[bad + 1]!r}."
        )
    return arr


def _check_sample(sample: Any) -> str:
    if sample not in _SAMPLES:
        raise ValueError(f"`sample` must be one of {_SAMPLES}; got {sample!r}.")
    return sample


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
        m = _int_arg("control_dim", control_dim, 1)
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
        self.sample = _check_sample(sample)

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
        self.sample = _check_sample(sample)

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
        self.degree = _int_arg("degree", degree, 0)
        self.sample = _check_sample(sample)

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
        self.degree = _int_arg("degree", degree, 0)
        self.knots = _points_arg("knots", knots, 2)
        self.sample = _check_sample(sample)

    def knot_vector(self, t0: float, tf: float) -> np.ndarray:
        """The full clamped knot vector on $[t_0, t_f]$, length $K + 2d + 1$."""
        s = _resolve_points("knots", self.knots, t0, tf)
        d = self.degree
        return np.concatenate([np.full(d, s[0]), s, np.full(d, s[-1])])

    def evaluate(self, t, t0, tf):
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
        m = _int_arg("control_dim", control_dim, 1)
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


def basis_matrix(basis: Any, grid: Any, control_dim: int = 1) -> Float[np.ndarray, "Nm p"]:
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


class RankReport(eqx.Module):
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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary."""
        return dict(
            basis=self.basis,
            rows=self.rows,
            columns=self.columns,
            singular_values=[float(v) for v in self.singular_values],
            tolerance=self.tolerance,
            rank=self.rank,
            condition_number=_json_float(self.condition_number),
            rank_deficient=self.rank_deficient,
            invisible_dimension=self.invisible_dimension,
        )

    def __repr__(self) -> str:
        flag = "RANK DEFICIENT" if self.rank_deficient else "full column rank"
        return (
            f"RankReport({self.basis}: B is {self.rows}x{self.columns}, rank {self.rank} "
            f"({flag}), cond {self.condition_number:.3g}, "
            f"dim ker B^T = {self.invisible_dimension})"
        )


def _json_float(x: float) -> float | str:
    return x if math.isfinite(x) else ("inf" if x > 0 else "nan")


def rank_report(
    basis: Any, grid: Any, *, control_dim: int = 1, rtol: float | None = None
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
    if rtol is not None and not (isinstance(rtol, int | float) and 0 < rtol < 1):
        raise ValueError(f"`rtol` must be a number in (0, 1); got {rtol!r}.")
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


# --------------------------------------------------------- parameterization
class Parameterized(AbstractScheme):
    r"""The one-step map of a parameterized problem $(Q^N_C)$ (eq. (41)): one step
    over the whole horizon $[t_0, t_f]$ with the $p$ coefficients $C$ as control,

    $$\Phi_B(x_0, C, t_f - t_0) = x_N(U), \qquad U = B C,$$

    i.e. the whole inner shooting ($x_{k+1} = \Phi(x_k, u_k, h_k)$ on the inner
    grid) run with the controls $U = BC$. Built by
    [`parameterize`][flow.controls.parameterize]; not used on its own.

    **Fields:** `shooting` (the inner [`Shooting`][flow.Shooting]), `matrix` ($B$,
    `(N*m, p)`), `basis` (its label).
    """

    order: ClassVar[int] = 0
    name: ClassVar[str] = "parameterized"
    shooting: Shooting
    matrix: Float[Array, "Nm p"]
    basis: str = eqx.field(static=True)

    def controls(self, C: Any) -> Float[Array, "N m"]:
        r"""$U = BC$ reshaped to `(N, m)`; `C` of shape `(1, p)` or `(p,)`."""
        C = jnp.asarray(C)
        return (self.matrix @ C.reshape(-1)).reshape(self.shooting.control_shape)

    def step(self, f, x, u, h):
        del f, h  # the inner scheme integrates the inner problem's dynamics
        inner = self.shooting
        U = self.controls(u)

        def body(y, inp):
            uk, hk = inp
            return inner.scheme.step(inner.problem.augmented_dynamics, y, uk, hk), None

        body = jax.checkpoint(body, policy=jax.checkpoint_policies.nothing_saveable)
        xN, _ = jax.lax.scan(body, x, (U, inner.steps))
        return xN


def parameterize(shooting: Shooting, basis: Any) -> Shooting:
    r"""The parameterized problem $(Q^N_C)$, eq. (41): minimise
    $E^N(C) = E(x_N(U(C)))$ with $U = BC$, as a [`Shooting`][flow.Shooting].

    The result is an ordinary `Shooting` with **one interval** $[t_0, t_f]$ and
    control dimension $p$: its one-step map is [`Parameterized`][flow.controls.Parameterized]
    (the whole inner shooting with $U = BC$). So `flow.descend`,
    `flow.gradient_flow`, `stability.equilibrium`, `stability.spectrum`,
    `stability.analyze` and every `Shooting` method work on it unchanged:

    - controls are $C$ with shape `(1, p)` (`zeros()`, `check_controls`);
    - `cost(C)` $= E^N(BC)$; `gradient(C)` $= B^T\nabla_U E^N$ (eq. (43)) by
      autodiff, the adjoint, or finite differences; `hessian_vector_product`
      and `hessian` ($B^T\nabla^2_U E^N B$, `(p, p)`) are in $C$;
    - `steps` is $[t_f - t_0]$, so the Hamiltonian metric and the Hamiltonian
      residual (`descend`'s default `stop_on`) are $\nabla_C E^N/(t_f - t_0)$, a
      scaled gradient, *not* $\max_k|\partial_u H|$: use
      [`spurious_check`][flow.controls.spurious_check] for the Hamiltonian
      condition of the original problem, and [`l2_metric`][flow.controls.l2_metric]
      for the $L^2$ metric in $C$;
    - `costates` are those of the one big step ($\nabla E(x_N)$ only).

    Use [`expand`][flow.controls.expand] for $U = BC$ on the original grid and
    [`original`][flow.controls.original] for the inner `Shooting`.

    **Arguments:** `shooting`, a [`Shooting`][flow.Shooting] (not itself
    parameterized); `basis`, an [`AbstractBasis`][flow.controls.AbstractBasis] or
    a matrix of shape `(N*m, p)` in the module's ordering.

    **Raises:** `TypeError` for a wrong type; `ValueError` when $B$ does not have
    $Nm$ rows for this grid or is not finite.
    """
    if not isinstance(shooting, Shooting):
        raise TypeError(f"`shooting` must be a flow.Shooting; got {type(shooting).__name__}.")
    if isinstance(shooting.scheme, Parameterized):
        raise ValueError(
            "`shooting` is already parameterized; compose the matrices instead "
            "(B_total = B_outer @ B_inner) and parameterize the original shooting."
        )
    B_np = basis_matrix(basis, shooting, shooting.control_dim)
    label = basis.label() if isinstance(basis, AbstractBasis) else "matrix"
    B = jnp.asarray(B_np)
    p = int(B.shape[1])
    problem = shooting.problem
    m = shooting.control_dim
    B_first = B[:m]

    def reduced_dynamics(x, c):
        # Only used to validate shapes: the one-step map is the inner shooting.
        return problem.augmented_dynamics(x, B_first @ c)

    def reduced_endpoint(x):
        return problem.augmented_endpoint_cost(x)

    reduced = OptimalControlProblem(
        reduced_dynamics,
        reduced_endpoint,
        np.asarray(problem.augmented_x0()),
        problem.t0,
        problem.tf,
        control_dim=p,
        name=f"{problem.name}|{label}",
    )
    scheme = Parameterized(shooting=shooting, matrix=B, basis=label)
    grid = jnp.asarray([problem.t0, problem.tf], dtype=jnp.float64)
    return Shooting(problem=reduced, scheme=scheme, grid=grid)


def _parameterization(param: Any, name: str = "param") -> Parameterized:
    if not isinstance(param, Shooting) or not isinstance(param.scheme, Parameterized):
        raise TypeError(
            f"`{name}` must be a parameterized Shooting from flow.controls.parameterize; "
            f"got {param!r}."
        )
    return param.scheme


def is_parameterized(shooting: Any) -> bool:
    """True for a `Shooting` made by [`parameterize`][flow.controls.parameterize]."""
    return isinstance(shooting, Shooting) and isinstance(shooting.scheme, Parameterized)


def original(param: Shooting) -> Shooting:
    """The inner (original) [`Shooting`][flow.Shooting] of a parameterized one."""
    return _parameterization(param).shooting


def expand(param: Shooting, C: Any) -> Float[Array, "N m"]:
    r"""$U = BC$ on the original grid, shape `(N, m)`; `C` of shape `(1, p)` (a
    control of `param`) or `(p,)`."""
    P = _parameterization(param)
    C = _as_coefficients(param, C)
    return P.controls(C)


def _as_coefficients(param: Shooting, C: Any) -> Array:
    p = param.control_dim
    if not hasattr(C, "shape") or not hasattr(C, "dtype"):
        C = np.asarray(C)
    if tuple(C.shape) == (p,):
        C = jnp.asarray(C).reshape(1, p)
    return param.check_controls(C, "C")


def l2_metric(param: Shooting) -> Fixed:
    r"""The $L^2$ (Hamiltonian) metric in $C$: $M_C = B^T (\mathrm{diag}(h_k)\otimes I_m) B$
    (the Gram matrix of the sampled basis; with it the flow in $C$ is the $L^2$
    projection of $-\partial H/\partial U$ onto the span of $B$).

    **Returns:** a [`flow.metrics.Fixed`][flow.metrics.Fixed] metric for `param`.

    **Raises:** `ValueError` when $B$ is rank deficient (the Gram matrix is
    singular: see [`rank_report`][flow.controls.rank_report]).
    """
    P = _parameterization(param)
    B = np.asarray(P.matrix)
    _, _, rank = _svd_rank(B, None)
    if rank < B.shape[1]:
        raise ValueError(
            f"`param`: the L2 Gram matrix B^T diag(h) B is not positive definite: B has "
            f"rank {rank} < p = {B.shape[1]} on this grid (see flow.controls.rank_report)."
        )
    m = P.shooting.control_dim
    w = np.repeat(np.asarray(P.shooting.steps), m)
    gram = B.T @ (w[:, None] * B)
    return Fixed(0.5 * (gram + gram.T))


# ------------------------------------------------------------ spurious check
class SpuriousCheck(eqx.Module):
    r"""Is a stationary point in $C$ (eq. (52)) a stationary point in $U$ ((51))?

    With $g = \nabla_U E^N(BC)$ (eq. (43): $\nabla_C E^N = B^T g$):

    - `gradient_C_norm` $= \|B^T g\|_\infty$; `gradient_U_norm` $= \|g\|_\infty$;
    - `hamiltonian_norm` $= \max_k |\partial_u H_k|$ of the original problem
      (Lemma 2; $\nabla_{u_k} E^N / h_k$ for schemes other than Euler);
    - `visible_fraction` $= \|B^T g\|_2 / (\sigma_{max}(B)\,\|g\|_2) \in [0, 1]$: the
      part of $g$ the coefficients can see (0 when $g \in \ker B^T$);
    - `stationary_in_C`: `gradient_C_norm <= tol`; `stationary_in_U`:
      `hamiltonian_norm <= hamiltonian_tol`;
    - `spurious`: stationary in $C$ but not in $U$ (Remark 5.13);
    - `rank`, `rows`: of $B$ (a spurious point needs `rank < rows`);
    - `cost`: $E^N(BC)$.
    """

    cost: float
    gradient_C_norm: float
    gradient_U_norm: float
    hamiltonian_norm: float
    visible_fraction: float
    tol: float
    hamiltonian_tol: float
    rank: int
    rows: int

    @property
    def stationary_in_C(self) -> bool:
        """`gradient_C_norm <= tol`."""
        return self.gradient_C_norm <= self.tol

    @property
    def stationary_in_U(self) -> bool:
        """`hamiltonian_norm <= hamiltonian_tol`."""
        return self.hamiltonian_norm <= self.hamiltonian_tol

    @property
    def spurious(self) -> bool:
        """Stationary in C, not in U."""
        return self.stationary_in_C and not self.stationary_in_U

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary (fields and the three verdicts)."""
        out = {f: getattr(self, f) for f in self.__dataclass_fields__}
        out.update(
            stationary_in_C=self.stationary_in_C,
            stationary_in_U=self.stationary_in_U,
            spurious=self.spurious,
        )
        return out

    def __repr__(self) -> str:
        verdict = (
            "SPURIOUS stationary point"
            if self.spurious
            else ("stationary" if self.stationary_in_C else "not stationary in C")
        )
        return (
            f"SpuriousCheck({verdict}: |B^T g| = {self.gradient_C_norm:.2e}, "
            f"|g| = {self.gradient_U_norm:.2e}, max|dH/du| = {self.hamiltonian_norm:.2e})"
        )


def _positive(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
        raise TypeError(f"`{name}` must be a positive number; got {v!r}.")
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"`{name}` must be a positive finite number; got {v!r}.")
    return float(v)


def spurious_check(
    shooting: Shooting,
    C: Any,
    *,
    basis: Any = None,
    tol: float = 1e-8,
    hamiltonian_tol: float = 1e-6,
) -> SpuriousCheck:
    r"""Detect a spurious stationary point (Remark 5.13): $\|B^T g\|$ small while
    $g = \nabla_U E^N$ and $\partial H/\partial u$ are not.

    **Arguments:**

    - `shooting`: a parameterized `Shooting` (from
      [`parameterize`][flow.controls.parameterize]; then `basis` must be None), or
      the original `Shooting` together with `basis`;
    - `C`: coefficients, shape `(1, p)` or `(p,)`;
    - `tol`: the stationarity tolerance in $C$ on $\|B^T g\|_\infty$;
    - `hamiltonian_tol`: the tolerance on $\max_k|\partial_u H_k|$ for
      stationarity in $U$.

    **Returns:** a [`SpuriousCheck`][flow.controls.SpuriousCheck] with both numbers.
    """
    tol = _positive("tol", tol)
    hamiltonian_tol = _positive("hamiltonian_tol", hamiltonian_tol)
    if is_parameterized(shooting):
        if basis is not None:
            raise ValueError("`basis` must be None for a parameterized shooting (it has one).")
        param = shooting
    elif isinstance(shooting, Shooting):
        if basis is None:
            raise ValueError(
                "`basis` is required with an unparameterized shooting: "
                "spurious_check(shooting, C, basis=...)."
            )
        param = parameterize(shooting, basis)
    else:
        raise TypeError(f"`shooting` must be a flow.Shooting; got {type(shooting).__name__}.")
    P = param.scheme
    inner = P.shooting
    C = _as_coefficients(param, C)
    U = P.controls(C)
    g = inner.gradient(U)
    dH = inner.hamiltonian_gradient(U)
    B = np.asarray(P.matrix)
    g_flat = np.asarray(g).reshape(-1)
    gC = B.T @ g_flat
    s, _, rank = _svd_rank(B, None)
    g2 = float(np.linalg.norm(g_flat))
    visible = float(np.linalg.norm(gC) / (s[0] * g2)) if g2 > 0 and s[0] > 0 else 0.0
    return SpuriousCheck(
        cost=float(inner.cost(U)),
        gradient_C_norm=float(np.max(np.abs(gC))),
        gradient_U_norm=float(np.max(np.abs(g_flat))),
        hamiltonian_norm=float(jnp.max(jnp.abs(dH))),
        visible_fraction=visible,
        tol=tol,
        hamiltonian_tol=hamiltonian_tol,
        rank=rank,
        rows=int(B.shape[0]),
    )
