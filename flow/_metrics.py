r"""Metrics M of the optimizer U <- U - alpha M^{-1} grad E^N (paper eqs. (37), (38)).

Each metric applies $M^{-1}$ to a gradient matrix-free.
[`AbstractMetric.solve`][flow.metrics.AbstractMetric.solve] returns a
[`MetricSolve`][flow.metrics.MetricSolve]: the direction $D = M^{-1} G$, a flag `ok`
that is False only when $M$ is not positive definite at that point (Newton on an
indefinite Hessian; the direction is then a fallback, still a descent direction),
and the number of Hessian-vector products it took. Callers count and report both.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from ._krylov import truncated_cg
from ._shooting import AbstractShooting
from ._validation import positive_float, positive_int


class MetricSolve(NamedTuple):
    r"""What [`AbstractMetric.solve`][flow.metrics.AbstractMetric.solve] returns:
    `direction` $D = M^{-1}G$, `ok` (False where $M$ was not positive definite and
    `direction` is a fallback), `num_hvp` (Hessian-vector products used)."""

    direction: Float[Array, "N m"]
    ok: Bool[Array, ""]
    num_hvp: Int[Array, ""]


def _done(D: Array) -> MetricSolve:
    return MetricSolve(D, jnp.array(True), jnp.array(0))


class AbstractMetric(eqx.Module):
    r"""A metric $M$ (symmetric positive definite) on the control space $\mathbb{R}^{N
    \times m}$, used as $F(U) = -M^{-1}\nabla E^N(U)$ (eq. (50)).

    Subclasses implement [`solve`][]; `constant` says whether $M$ is independent of
    $U$ (then the flow's Jacobian at an equilibrium is $-M^{-1}\nabla^2 E^N$).
    """

    constant: ClassVar[bool]
    name: ClassVar[str]

    def prepare(self, shooting: AbstractShooting, U0: Float[Array, "N m"]) -> AbstractMetric:
        """The metric to use from the start point `U0` on (default: itself).

        Metrics that are evaluated once, such as [`DiagonalHessian`][], return a
        constant metric here.
        """
        del shooting, U0
        return self

    @abc.abstractmethod
    def solve(
        self, shooting: AbstractShooting, U: Float[Array, "N m"], G: Float[Array, "N m"]
    ) -> MetricSolve:
        r"""$M^{-1} G$ at the point `U`, with the positive-definiteness flag and the
        work (a [`MetricSolve`][flow.metrics.MetricSolve])."""

    def apply_inverse(
        self, shooting: AbstractShooting, U: Float[Array, "N m"], G: Float[Array, "N m"]
    ) -> Float[Array, "N m"]:
        r"""$M^{-1} G$ at the point `U` (the direction of
        [`solve`][flow.metrics.AbstractMetric.solve])."""
        return self.solve(shooting, U, G).direction


class AbstractDiagonalMetric(AbstractMetric):
    r"""A constant diagonal metric $M = \mathrm{diag}(d)$, $d > 0$ of shape (N, m)."""

    constant: ClassVar[bool] = True

    @abc.abstractmethod
    def diagonal(self, shooting: AbstractShooting) -> Float[Array, "N m"]:
        """The diagonal d of M, shape (N, m), positive."""

    def solve(self, shooting, U, G):
        del U
        return _done(G / self.diagonal(shooting))


class Identity(AbstractDiagonalMetric):
    r"""$M = I$: the gradient method, eq. (38). $F = -\nabla E^N = -h\,\partial H/\partial U$
    (Euler), so the flow's spectrum shrinks like $h$ as the grid is refined."""

    name: ClassVar[str] = "identity"

    def diagonal(self, shooting):
        return jax.device_put(np.ones(shooting.control_shape))  # no kernel per shape


class Hamiltonian(AbstractDiagonalMetric):
    r"""$M = \mathrm{diag}(h_k) \otimes I_m$, the $L^2$ (Hamiltonian) metric.

    $F = -M^{-1}\nabla E^N = -\partial H/\partial U$ exactly for Euler (Lemma 2):
    the flow of the indirect method, with a mesh-independent spectrum (the
    paper's remedy, section 6.2: $\alpha h = 1$ on uniform grids).
    """

    name: ClassVar[str] = "hamiltonian"

    def diagonal(self, shooting):
        h = shooting.steps
        if isinstance(h, jax.core.Tracer):
            return jnp.broadcast_to(h[:, None], shooting.control_shape)
        # concrete steps: broadcast by numpy, no kernel compiled per shape
        return jax.device_put(np.broadcast_to(np.asarray(h)[:, None], shooting.control_shape))


def _real_matrix(value: Any, name: str) -> np.ndarray:
    """`value` as a float64 numpy array, or a `TypeError` naming `name`."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"`{name}` must be a real array; got dtype {arr.dtype}.")
    return arr.astype(np.float64)


class Diagonal(AbstractDiagonalMetric):
    r"""A user-given constant diagonal metric $M = \mathrm{diag}(d)$, $d > 0$, (N, m).

    **Raises:** `TypeError` when `d` is not a real array; `ValueError` when it is not
    two-dimensional, has a non-finite or a non-positive entry (the message gives the
    first such index), or (when used) its shape differs from the controls' (N, m).
    """

    name: ClassVar[str] = "diagonal"
    d: Float[Array, "N m"]

    def __init__(self, d: Any):
        d_np = _real_matrix(d, "d")
        if d_np.ndim != 2:
            raise ValueError(f"`d` must have shape (N, m); got {d_np.shape}.")
        bad = ~np.isfinite(d_np)
        if np.any(bad):
            k = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"`d` must be finite; d{list(k)} = {d_np[k]}.")
        if not np.all(d_np > 0):
            k = tuple(int(i) for i in np.argwhere(d_np <= 0)[0])
            raise ValueError(f"`d` must be positive (an SPD metric); d{list(k)} = {d_np[k]}.")
        self.d = jnp.asarray(d_np)

    def diagonal(self, shooting):
        if self.d.shape != shooting.control_shape:
            raise ValueError(
                f"`d` has shape {self.d.shape}; the controls have shape {shooting.control_shape}."
            )
        return self.d


class DiagonalHessian(AbstractMetric):
    r"""The diagonal of the Hessian, evaluated once at the start point:
    $M = \mathrm{diag}(\max(|\mathrm{diag}\,\nabla^2 E^N(U_0)|, \text{floor}\cdot
    \max|\mathrm{diag}|))$ (a Jacobi-type approximate Hessian).

    The exact diagonal costs $Nm$ Hessian-vector products (the Hessian of a
    shooting problem is dense), so `prepare` refuses $Nm >$ `max_size`; pass a
    [`Diagonal`][] for larger problems. Use the metric through `prepare(...)`
    (done by `gradient_flow` and `descend`). Negative diagonal entries (non-convex
    directions) enter with their absolute value; entries below `floor` times the
    largest are raised to that level.

    **Raises:** `ValueError` for `floor` outside $[0, 1)$ or `max_size` < 1; from
    `prepare`, a `ValueError` naming `U0` when the Hessian's diagonal is not finite
    there, or when it vanishes (every entry zero, as for a cost linear in $U$, or
    some entry zero with `floor=0`): no positive diagonal metric can be built.
    """

    constant: ClassVar[bool] = True
    name: ClassVar[str] = "diagonal-hessian"
    floor: float = 1e-8
    max_size: int = 4096

    def __check_init__(self):
        floor = positive_float(self.floor, "floor", allow_zero=True)
        if not floor < 1:
            raise ValueError(f"`floor` must be in [0, 1); got {floor}.")
        positive_int(self.max_size, "max_size")

    def prepare(self, shooting, U0):
        H = shooting.hessian(U0, max_size=self.max_size)
        raw = np.asarray(jnp.diag(H))
        if not np.all(np.isfinite(raw)):
            k = int(np.argmin(np.isfinite(raw)))
            raise ValueError(
                f"`DiagonalHessian`: the Hessian's diagonal is not finite at `U0` "
                f"(entry {k} of U0.reshape(-1) is {raw[k]})."
            )
        d = np.abs(raw)
        d = np.maximum(d, self.floor * np.max(d))
        if not np.all(d > 0):
            k = int(np.argmin(d > 0))
            raise ValueError(
                f"`DiagonalHessian`: the Hessian's diagonal vanishes at `U0` (entry {k} "
                f"of U0.reshape(-1) is 0, max |diag| = {np.max(np.abs(raw)):.3g}); no "
                f"positive diagonal metric follows from it. Use metric='hamiltonian' or "
                f"a Diagonal(d)."
            )
        return Diagonal(d.reshape(shooting.control_shape))

    def solve(self, shooting, U, G):
        raise TypeError(
            "DiagonalHessian must be prepared at a start point first: "
            "metric.prepare(shooting, U0) (gradient_flow and descend do this)."
        )


class Newton(AbstractMetric):
    r"""$M = \nabla^2 E^N(U) + \mu I$: Newton's method ($\mu$ = `damping` $\ge 0$).

    $M^{-1} G$ is computed by conjugate gradients on Hessian-vector products
    (line-search Newton-CG, Nocedal and Wright, Algorithm 7.1, with
    [`truncated_cg`][flow.solvers.truncated_cg]); nothing $Nm \times Nm$ is formed.
    CG runs until the residual is below `rtol` $\|G\|_2$ (or `max_steps`
    products). When $M$ is positive definite this is the Newton direction. When CG
    meets a direction of non-positive curvature ($p^T M p \le 0$: an indefinite
    Hessian) it stops there and returns the last iterate, which is always a
    descent direction ($G\cdot D > 0$); if that happens at the first iteration it
    returns $D = G\,\|G\|^2 / |G^T M G|$ (steepest descent with the curvature's
    scale). Either way `ok = False`: `descend` counts such steps as fallback
    steps and `gradient_flow` stops with the `indefinite` status. Newton never
    ascends silently.

    **Raises:** `ValueError` for a negative or non-finite `damping`, a non-positive
    `rtol` or `max_steps` < 1.
    """

    constant: ClassVar[bool] = False
    name: ClassVar[str] = "newton"
    damping: float = 0.0
    rtol: float = 1e-10
    max_steps: int = 2000

    def __check_init__(self):
        positive_float(self.damping, "damping", allow_zero=True, allow_traced=True)
        positive_float(self.rtol, "rtol", allow_traced=True)
        positive_int(self.max_steps, "max_steps")

    def solve(self, shooting, U, G):
        return self.solve_with(lambda V: shooting.hessian_vector_product(U, V), G)

    def solve_with(self, hvp: Callable[[Array], Array], G: Array) -> MetricSolve:
        r"""$(\nabla^2 E^N + \mu I)^{-1} G$ for a given Hessian-vector product `hvp`
        (the rule of `solve`; projected descent passes the free set's block)."""
        mu = self.damping

        def mv(V):
            return hvp(V) + mu * V

        gg = jnp.vdot(G, G)
        cg = truncated_cg(mv, G, atol=self.rtol * jnp.sqrt(gg), max_steps=self.max_steps)
        first = cg.negative_curvature & (cg.num_steps == 1)
        fallback = G * gg / jnp.maximum(jnp.abs(cg.curvature), 1e-300)
        D = jnp.where(first, fallback, cg.x)
        return MetricSolve(D, ~cg.negative_curvature, cg.num_steps)


class Fixed(AbstractMetric):
    r"""A constant user metric $M$: a dense SPD matrix of shape (N*m, N*m) (row-major
    order of `U.reshape(-1)`) or a `lineax` operator on arrays of shape (N, m)
    tagged positive semi-definite (for example a BFGS matrix from a previous run).

    Dense matrices are solved by Cholesky, operators by CG.

    **Raises:** `TypeError` when `operator` is neither a lineax operator nor a real
    array; `ValueError` when a matrix is not square, not finite, not symmetric (to a
    relative 1e-12) or not positive definite (its Cholesky factorization fails), when
    an operator is not tagged positive semi-definite, or (when used) when its size
    differs from the controls' N*m.
    """

    constant: ClassVar[bool] = True
    name: ClassVar[str] = "fixed"
    operator: lx.AbstractLinearOperator
    solver: lx.AbstractLinearSolver

    def __init__(self, operator: Any, *, rtol: float = 1e-12, atol: float = 1e-14):
        if isinstance(operator, lx.AbstractLinearOperator):
            if not lx.is_positive_semidefinite(operator):
                raise ValueError(
                    "`operator` must be tagged lx.positive_semidefinite_tag (an SPD metric)."
                )
            self.operator = operator
            self.solver = lx.CG(rtol=rtol, atol=atol)
            return
        M = _real_matrix(operator, "operator")
        if M.ndim != 2 or M.shape[0] != M.shape[1]:
            raise ValueError(f"`operator` must be a square (N*m, N*m) matrix; got {M.shape}.")
        if not np.all(np.isfinite(M)):
            raise ValueError("`operator` must be finite.")
        if not np.allclose(M, M.T, rtol=1e-12, atol=0):
            asym = float(np.max(np.abs(M - M.T)))
            raise ValueError(f"`operator` must be symmetric; max |M - M^T| = {asym:.3g}.")
        try:
            np.linalg.cholesky(M)
        except np.linalg.LinAlgError:
            raise ValueError("`operator` must be positive definite.") from None
        self.operator = lx.MatrixLinearOperator(jnp.asarray(M), lx.positive_semidefinite_tag)
        self.solver = lx.Cholesky()

    def solve(self, shooting, U, G):
        del U
        if isinstance(self.operator, lx.MatrixLinearOperator):
            size = self.operator.matrix.shape[0]
            if size != G.size:
                raise ValueError(f"`operator` has size {size}; the controls have N*m = {G.size}.")
            sol = lx.linear_solve(self.operator, G.reshape(-1), self.solver)
            return _done(sol.value.reshape(G.shape))
        sol = lx.linear_solve(self.operator, G, self.solver)
        return _done(sol.value)


METRICS: dict[str, type[AbstractMetric]] = {
    "identity": Identity,
    "hamiltonian": Hamiltonian,
    "newton": Newton,
    "diagonal-hessian": DiagonalHessian,
}
"""Metric name -> metric class: the names every verb's `metric` argument accepts."""


def metric_from_name(name: str) -> AbstractMetric:
    """`"identity" | "hamiltonian" | "newton" | "diagonal-hessian"` -> a metric."""
    try:
        return METRICS[name.lower()]()
    except (KeyError, AttributeError):
        raise ValueError(f"`metric` must be one of {sorted(METRICS)}; got {name!r}.") from None


def as_metric(metric: AbstractMetric | str) -> AbstractMetric:
    """The metric every verb's `metric=` argument names: a metric instance, or the
    name of a built-in one (`"identity"`, `"hamiltonian"`, `"newton"`,
    `"diagonal-hessian"`).

    **Raises:** `ValueError` for an unknown name, `TypeError` for anything else.
    """
    if isinstance(metric, str):
        return metric_from_name(metric)
    if not isinstance(metric, AbstractMetric):
        raise TypeError(
            "`metric` must be a flow.metrics metric (Identity(), Hamiltonian(), Newton(), "
            f"Diagonal(d), DiagonalHessian(), Fixed(M)) or one of the names "
            f"{sorted(METRICS)}; got {type(metric).__name__}."
        )
    return metric
