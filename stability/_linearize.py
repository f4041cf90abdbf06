r"""The linearisation of the gradient flow (50) at a point: $J = -M^{-1}\nabla^2 E^N(U)$.

For $F(U) = -M(U)^{-1}\nabla E^N(U)$ the Jacobian is
$J = -M^{-1}\nabla^2 E^N - (\partial_U M^{-1})\nabla E^N$; the second term vanishes
for a constant metric and at an equilibrium ($\nabla E^N = 0$), so
$J = -M^{-1}\nabla^2 E^N$ there (DESIGN section 2). With $M = L L^T$ symmetric
positive definite, $J$ is similar to the symmetric matrix
$S = -L^{-1}\nabla^2 E^N L^{-T}$ ($J = L^{-T} S L^{T}$): its eigenvalues are real
and come from a symmetric solver.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import lineax as lx
import numpy as np
from jaxtyping import Array, Float

from flow import AbstractShooting, RealArrayLike, bounds, metrics, to_json, validation
from flow.metrics import as_metric
from flow.validation import positive_int

from ._equilibrium import Equilibrium


DENSE_JACOBIAN_MAX = 4096
"""Largest N*m for which [`Linearization.dense`][stability.Linearization.dense] forms a
matrix by default (a dense Jacobian of that size takes 128 MiB)."""

_KINDS = ("diagonal", "cholesky", "newton", "general")


class Linearization(eqx.Module):
    r"""$J = -M^{-1}\nabla^2 E^N(U)$, the Jacobian of the flow (50) at `U`; built by
    [`linearize`][stability.linearize].

    Matrix-free: [`matvec`][stability.Linearization.matvec] costs one
    Hessian-vector product and one application of $M^{-1}$; [`operator`][
    stability.Linearization.operator] wraps it as a lineax operator; [`dense`][
    stability.Linearization.dense] forms $J$ for small $Nm$.

    `kind` says how the spectrum is computed:

    - `"diagonal"`: $M = \mathrm{diag}(d)$ (Identity, Hamiltonian, Diagonal,
      prepared DiagonalHessian); $S = -D^{-1/2}\nabla^2 E^N D^{-1/2}$, symmetric.
    - `"cholesky"`: a dense SPD `Fixed` metric, $M = LL^T$;
      $S = -L^{-1}\nabla^2 E^N L^{-T}$, symmetric.
    - `"newton"`: $M = \nabla^2 E^N + \mu I$ (`Newton(damping=mu)`); $J$ is a
      function of the Hessian, with eigenvalues $-\lambda/(\lambda + \mu)$ for the
      Hessian's eigenvalues $\lambda$ (valid where $\lambda + \mu > 0$; a zero
      Hessian eigenvalue gives a zero of $J$); `matvec` solves with CG, or LSMR
      (the pseudo-inverse) where $M$ is not positive definite.
    - `"general"`: any other metric; $J$ itself, a non-symmetric eigenproblem.

    **Fields:** `shooting`, `U`, `metric` (prepared at `U`), `kind`, `scale`
    ($d^{-1/2}$, diagonal kind), `cholesky` ($L$, cholesky kind), `damping` ($\mu$,
    newton kind), `gradient_norm` ($\|\nabla E^N(U)\|_\infty$: $J$ is the flow's
    Jacobian exactly when the metric is constant or this is zero).
    """

    shooting: AbstractShooting
    U: Float[Array, "N m"]
    metric: metrics.AbstractMetric
    kind: str = eqx.field(static=True)
    scale: Float[Array, "N m"] | None
    cholesky: Float[Array, "Nm Nm"] | None
    damping: float = eqx.field(static=True)
    gradient_norm: float = eqx.field(static=True)

    # ----------------------------------------------------------------- sizes
    @property
    def N(self) -> int:
        """The number of intervals."""
        return self.shooting.N

    @property
    def size(self) -> int:
        """$Nm$, the dimension of the control space."""
        return self.shooting.N * self.shooting.control_dim

    @property
    def symmetric(self) -> bool:
        """True when the eigenvalues are computed from a symmetric problem (real)."""
        return self.kind != "general"

    @property
    def exact(self) -> bool:
        r"""True when $-M^{-1}\nabla^2 E^N$ is the flow's Jacobian at `U`: a constant
        metric, or an equilibrium ($\|\nabla E^N\|_\infty \le 10^{-8}$)."""
        return bool(self.metric.constant) or self.gradient_norm <= 1e-8

    # ------------------------------------------------------------- products
    def hessian_matvec(self, V: Any) -> Float[Array, "N m"]:
        r"""$\nabla^2 E^N(U)\,V$, shape `(N, m)`."""
        V = validation.controls(self.shooting, V, "V", finite=True)
        return self.shooting.hessian_vector_product(self.U, V)

    def matvec(self, V: Any) -> Float[Array, "N m"]:
        r"""$J V = -M^{-1}\nabla^2 E^N(U)\,V$, shape `(N, m)` (matrix-free)."""
        V = validation.controls(self.shooting, V, "V", finite=True)
        return _jvp(self, V)

    def symmetric_matvec(self, V: Any) -> Float[Array, "N m"]:
        r"""$S V$ with the symmetric $S = -L^{-1}\nabla^2 E^N L^{-T}$ similar to $J$
        (kinds `"diagonal"` and `"cholesky"`; for `"newton"`, $S = -\nabla^2 E^N$,
        whose eigenvalues map to those of $J$ as described in the class)."""
        if self.kind == "general":
            raise ValueError(
                "symmetric_matvec: this metric has no known factor M = L L^T; the "
                "Jacobian is treated as a general (non-symmetric) matrix."
            )
        V = validation.controls(self.shooting, V, "V", finite=True)
        return -_kvp(self, V)

    def operator(self) -> lx.FunctionLinearOperator:
        """$J$ as a lineax `FunctionLinearOperator` on arrays of shape `(N, m)`."""
        struct = jax.ShapeDtypeStruct(self.shooting.control_shape, jnp.float64)
        parts = _parts(self)
        return lx.FunctionLinearOperator(lambda V: _jvp_kernel(*parts, V), struct)

    def dense(self, *, max_size: int = DENSE_JACOBIAN_MAX) -> Float[Array, "Nm Nm"]:
        r"""The dense Jacobian $J$, shape `(Nm, Nm)`, row-major order of
        `U.reshape(-1)`.

        **Raises:** `ValueError` when $Nm >$ `max_size`.
        """
        H = self._dense_hessian(max_size)
        if self.kind == "diagonal":
            d = 1.0 / self.scale.reshape(-1) ** 2
            return -H / d[:, None]
        if self.kind == "cholesky":
            L = self.cholesky
            return -jsl.cho_solve((L, True), H)
        if self.kind == "newton":
            M = H + self.damping * jnp.eye(H.shape[0], dtype=H.dtype)
            return -jnp.linalg.solve(M, H)
        cols = jax.lax.map(
            lambda c: self.metric.apply_inverse(
                self.shooting, self.U, c.reshape(self.shooting.control_shape)
            ).reshape(-1),
            H.T,
            batch_size=64,
        )
        return -cols.T

    def dense_symmetric(self, *, max_size: int = DENSE_JACOBIAN_MAX) -> Float[Array, "Nm Nm"]:
        r"""The dense symmetric $S = -L^{-1}\nabla^2 E^N L^{-T}$ similar to $J$
        (for kind `"newton"`: $-\nabla^2 E^N$), symmetrised to rounding."""
        if self.kind == "general":
            raise ValueError(
                "dense_symmetric: this metric has no known factor M = L L^T; use dense()."
            )
        K = self._dense_k(max_size)
        return -0.5 * (K + K.T)

    # --------------------------------------------------------------- helpers
    def _dense_hessian(self, max_size: int) -> Array:
        max_size = positive_int(max_size, "max_size")
        if self.size > max_size:
            raise ValueError(
                f"N*m = {self.size} exceeds max_size = {max_size}: a dense matrix would "
                f"take {self.size**2 * 8 / 2**20:.0f} MiB. Use matvec (matrix-free) or "
                f"stability.spectrum, or raise max_size."
            )
        return self.shooting.hessian(self.U, max_size=max_size)

    def _dense_k(self, max_size: int) -> Array:
        """K with J = -K (diagonal, cholesky) or K = Hessian (newton)."""
        H = self._dense_hessian(max_size)
        if self.kind == "diagonal":
            if isinstance(H, jax.core.Tracer) or isinstance(self.scale, jax.core.Tracer):
                s = self.scale.reshape(-1)
                return s[:, None] * H * s[None, :]
            # the same products by numpy: no kernel compiled per size
            s = np.asarray(self.scale).reshape(-1)
            return jax.device_put(s[:, None] * np.asarray(H) * s[None, :])
        if self.kind == "cholesky":
            L = self.cholesky
            X = jsl.solve_triangular(L, H, lower=True)
            return jsl.solve_triangular(L, X.T, lower=True).T
        return H

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (no arrays)."""
        return to_json(
            {
                "problem": _problem_name(self.shooting),
                "N": self.N,
                "m": self.shooting.control_dim,
                "metric": self.metric.name,
                "kind": self.kind,
                "damping": self.damping,
                "gradient_norm": self.gradient_norm,
                "exact": self.exact,
            }
        )

    def __repr__(self) -> str:
        note = "" if self.exact else ", not an equilibrium: frozen-metric Jacobian"
        return (
            f"Linearization({_problem_name(self.shooting)}, N={self.N}, "
            f"metric={self.metric.name}, kind={self.kind}, |grad|_inf="
            f"{self.gradient_norm:.1e}{note})"
        )


_gradient = eqx.filter_jit(jax.grad(lambda sh, U: sh.objective(U), argnums=1))


def _parts(lin: Linearization) -> tuple:
    """The pieces the kernels need; only arrays and the (static) kind and damping,
    so that a new point U reuses the compiled kernels."""
    damping = jnp.asarray(lin.damping, dtype=jnp.float64)
    return (lin.shooting, lin.U, lin.metric, lin.kind, lin.scale, lin.cholesky, damping)


def _kvp(lin: Linearization, V: Array) -> Array:
    """K V: the symmetric operator whose eigenvalues give those of J."""
    return _kvp_kernel(*_parts(lin), V)


def _jvp(lin: Linearization, V: Array) -> Array:
    """J V."""
    return _jvp_kernel(*_parts(lin), V)


@eqx.filter_jit
def _kvp_kernel(sh, U, metric, kind, scale, cholesky, damping, V):
    del metric, damping
    if kind == "diagonal":
        return scale * sh.hessian_vector_product(U, scale * V)
    if kind == "cholesky":
        v = jsl.solve_triangular(cholesky.T, V.reshape(-1), lower=False)
        w = sh.hessian_vector_product(U, v.reshape(V.shape)).reshape(-1)
        return jsl.solve_triangular(cholesky, w, lower=True).reshape(V.shape)
    return sh.hessian_vector_product(U, V)


@eqx.filter_jit
def _jvp_kernel(sh, U, metric, kind, scale, cholesky, damping, V):
    HV = sh.hessian_vector_product(U, V)
    if kind == "diagonal":
        return -HV * scale**2
    if kind == "cholesky":
        return -jsl.cho_solve((cholesky, True), HV.reshape(-1)).reshape(V.shape)
    if kind == "newton":
        struct = jax.ShapeDtypeStruct(V.shape, V.dtype)

        def m_mv(W):
            return sh.hessian_vector_product(U, W) + damping * W

        # CG where M = H + mu I is positive definite (near a minimiser); otherwise
        # LSMR, the pseudo-inverse solution: J V = -(H + mu I)^+ H V.
        spd = lx.FunctionLinearOperator(m_mv, struct, tags=(lx.positive_semidefinite_tag,))
        cg = lx.linear_solve(
            spd, HV, lx.CG(rtol=1e-13, atol=1e-15, max_steps=20 * V.size), throw=False
        )
        sym = lx.FunctionLinearOperator(m_mv, struct, tags=(lx.symmetric_tag,))

        def lsmr():
            return lx.linear_solve(
                sym, HV, lx.LSMR(rtol=1e-12, atol=1e-12, conlim=1e12), throw=False
            ).value

        ok = cg.result == lx.RESULTS.successful
        return -jax.lax.cond(ok, lambda: cg.value, lsmr)
    return -metric.apply_inverse(sh, U, HV)


def _problem_name(shooting: AbstractShooting) -> str:
    problem = getattr(shooting, "problem", None)
    return getattr(problem, "name", type(shooting).__name__)


def linearize(
    shooting: AbstractShooting,
    U: RealArrayLike | Equilibrium,
    *,
    metric: metrics.AbstractMetric | str = "hamiltonian",
) -> Linearization:
    r"""The linearisation of the gradient flow $dU/d\tau = -M^{-1}\nabla E^N(U)$
    (eq. (50)) at `U`: $J = -M^{-1}\nabla^2 E^N(U)$.

    Exact at an equilibrium (eq. (51)) for every metric, and everywhere for a
    constant metric; elsewhere it is the frozen-metric Jacobian (`exact` says
    which). A metric that is evaluated once (`DiagonalHessian`) is prepared at `U`;
    to analyse the metric an optimiser prepared at its start `U0`, pass
    `metric.prepare(shooting, U0)` instead.

    **Arguments:**

    - `shooting`: a `flow.Shooting`.
    - `U`: the point, shape `(N, m)`, or an [`Equilibrium`][stability.Equilibrium].
    - `metric`: a `flow.metrics` metric or its name; default `"hamiltonian"`
      ($M = \mathrm{diag}(h_k)$; `"identity"` is the gradient method, eq. (38)).

    With control bounds (`shooting.bounds`) it is the linearisation of the projected
    flow on the free set: the reduced Jacobian $-M_{FF}^{-1}\nabla^2_{FF}E^N$ of the
    problem restricted to the components that are not on a bound
    ([`flow.bounds.restrict`][flow.bounds.restrict]; the active set of an
    `Equilibrium`, or the components of `U` on a bound). Its spectrum and Euler bound
    are those of projected descent near a solution with strict complementarity, where
    the active components stay on their bounds.

    **Returns:** a [`Linearization`][stability.Linearization] (matrix-free; dense on
    request for small $Nm$).
    """
    shooting = validation.shooting(shooting)
    gradient_norm = None
    if getattr(shooting, "bounds", None) is not None:
        # the reduced problem on the free set: its Jacobian is the bounded flow's
        metric = as_metric(metric)
        if not isinstance(metric, metrics.Identity | metrics.Hamiltonian):
            raise ValueError(
                f"`metric`: with control bounds linearize takes 'identity' or "
                f"'hamiltonian', whose restriction to the free set is known; got "
                f"{metric.name!r}."
            )
        active = U.active_set if isinstance(U, Equilibrium) else None
        point = U.U if isinstance(U, Equilibrium) else U
        free = bounds.restrict(shooting, point, active)
        return linearize(free, free.free(point), metric=metric)
    if isinstance(U, Equilibrium):
        if U.N == shooting.N and U.problem == _problem_name(shooting):
            gradient_norm = U.gradient_norm
        U = U.U
    U = validation.controls(shooting, U, "U", finite=True)
    metric = as_metric(metric).prepare(shooting, U)
    scale = cholesky = None
    damping = 0.0
    if isinstance(metric, metrics.AbstractDiagonalMetric):
        kind = "diagonal"
        d = metric.diagonal(shooting)
        if isinstance(d, jax.core.Tracer):
            scale = 1.0 / jnp.sqrt(d)
        else:  # the same IEEE operations by numpy: no kernel compiled per shape
            scale = jax.device_put(1.0 / np.sqrt(np.asarray(d)))
    elif isinstance(metric, metrics.Newton):
        kind = "newton"
        damping = float(metric.damping)
    elif isinstance(metric, metrics.Fixed) and isinstance(metric.operator, lx.MatrixLinearOperator):
        M = metric.operator.matrix
        if M.shape[0] != shooting.N * shooting.control_dim:
            raise ValueError(
                f"`metric` has size {M.shape[0]}; the controls have N*m = "
                f"{shooting.N * shooting.control_dim}."
            )
        kind = "cholesky"
        cholesky = jnp.linalg.cholesky(M)
    else:
        kind = "general"
    if gradient_norm is None:
        gradient_norm = float(jnp.max(jnp.abs(_gradient(shooting, U))))
    return Linearization(
        shooting=shooting,
        U=U,
        metric=metric,
        kind=kind,
        scale=scale,
        cholesky=cholesky,
        damping=damping,
        gradient_norm=gradient_norm,
    )
