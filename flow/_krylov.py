r"""The Krylov solvers of the package: truncated conjugate gradients (the one CG of
`Newton` metrics and of the trust-region equilibrium solver) and a GMRES that tests
convergence after every Arnoldi step (a lineax solver).

Why a GMRES of our own:

lineax 0.1.1's `lx.GMRES` tests convergence only between restart cycles, and
declares convergence only when the update of the last cycle is also small, so a
solve costs at least two cycles (`2 * restart + 3` operator products) whatever its
tolerance. Inside the implicit stages of a stiff gradient flow the linear solves
are the whole cost, and inexact Newton needs only a loose one. This solver is the
textbook GMRES with Givens rotations (Saad, *Iterative Methods for Sparse Linear
Systems*, algorithm 6.11): after Arnoldi step $j$ the residual norm
$\|b - Ax_j\|_2 = |g_{j+1}|$ is known without another product, and the solve stops
at the first $j$ with $|g_{j+1}| \le \max(\text{rtol}\,\|b\|_2, \text{atol})$.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.flatten_util as jfu
import jax.lax as lax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, PyTree


class EarlyGMRES(lx.AbstractLinearSolver):
    r"""Restarted GMRES, convergence tested after every operator product.

    Solves $Ax = b$ for a square (not necessarily symmetric) lineax operator, from
    $x_0 = 0$. Each Arnoldi step costs one product $Av$ and orthogonalises against
    the basis twice (classical Gram-Schmidt, repeated: "CGS2"). The residual norm
    after step $j$ comes from the Givens-rotated Hessenberg matrix, so no extra
    product is needed to stop; the solve ends at the first step where
    $\|b - Ax_j\|_2 \le \max(\mathrm{rtol}\,\|b\|_2,\ \mathrm{atol})$, or after
    `restart` steps it restarts from $x_j$ (at most `max_restarts` times; then the
    result is `max_steps_reached`).

    **Arguments:** `rtol`, `atol` (2-norm tolerances); `restart` (Krylov dimension
    per cycle, memory `restart + 1` vectors); `max_restarts`.
    """

    rtol: float
    atol: float = 0.0
    restart: int = eqx.field(static=True, default=30)
    max_restarts: int = eqx.field(static=True, default=10)

    def __check_init__(self):
        if not (self.rtol >= 0 and self.atol >= 0):
            raise ValueError(f"`rtol` and `atol` must be >= 0; got {self.rtol}, {self.atol}.")
        if self.restart < 1 or self.max_restarts < 1:
            raise ValueError(
                f"`restart` and `max_restarts` must be >= 1; got {self.restart}, "
                f"{self.max_restarts}."
            )

    def init(self, operator: lx.AbstractLinearOperator, options: dict[str, Any]):
        del options
        if operator.in_size() != operator.out_size():
            raise ValueError("EarlyGMRES needs a square operator.")
        return operator

    def compute(
        self, state: lx.AbstractLinearOperator, vector: PyTree[Array], options: dict[str, Any]
    ) -> tuple[PyTree[Array], lx.RESULTS, dict[str, Any]]:
        del options
        operator = state
        b, unravel = jfu.ravel_pytree(vector)
        n = b.size
        m = min(self.restart, n)
        dtype = b.dtype

        def matvec(v):
            return jfu.ravel_pytree(operator.mv(unravel(v)))[0]

        b_norm = jnp.linalg.norm(b)
        target = jnp.maximum(self.rtol * b_norm, self.atol)

        def cycle(x, r):
            beta = jnp.linalg.norm(r)
            safe_beta = jnp.where(beta > 0, beta, 1.0)
            V = jnp.zeros((m + 1, n), dtype).at[0].set(r / safe_beta)
            R = jnp.zeros((m, m), dtype)  # the rotated (upper triangular) Hessenberg
            cs = jnp.zeros((m,), dtype)
            sn = jnp.zeros((m,), dtype)
            g = jnp.zeros((m + 1,), dtype).at[0].set(beta)
            mask_rows = jnp.arange(m + 1)

            def cond(carry):
                j, _, _, _, _, g, breakdown = carry
                return (j < m) & (jnp.abs(g[j]) > target) & ~breakdown

            def body(carry):
                j, V, R, cs, sn, g, _ = carry
                w = matvec(V[j])
                live = (mask_rows <= j)[:, None]
                Vj = jnp.where(live, V, 0.0)
                h1 = Vj @ w
                w = w - h1 @ Vj
                h2 = Vj @ w  # second pass: CGS2 keeps the basis orthogonal
                w = w - h2 @ Vj
                h = h1 + h2  # entries 0..j (zeros beyond)
                h_next = jnp.linalg.norm(w)
                breakdown = h_next <= 1e-14 * jnp.maximum(jnp.linalg.norm(h), 1e-300)
                V = V.at[j + 1].set(w / jnp.where(h_next > 0, h_next, 1.0))

                def rotate(i, col):  # apply the earlier rotations to the new column
                    a, c = col[i], col[i + 1]
                    return (
                        col.at[i].set(cs[i] * a + sn[i] * c).at[i + 1].set(-sn[i] * a + cs[i] * c)
                    )

                col = jnp.concatenate([h[:m], jnp.zeros((1,), dtype)]).at[j + 1].set(h_next)
                col = lax.fori_loop(0, j, rotate, col)
                a, c = col[j], col[j + 1]
                rad = jnp.hypot(a, c)
                c_j = jnp.where(rad > 0, a / jnp.where(rad > 0, rad, 1.0), 1.0)
                s_j = jnp.where(rad > 0, c / jnp.where(rad > 0, rad, 1.0), 0.0)
                col = col.at[j].set(rad).at[j + 1].set(0.0)
                cs, sn = cs.at[j].set(c_j), sn.at[j].set(s_j)
                g = g.at[j + 1].set(-s_j * g[j]).at[j].set(c_j * g[j])
                R = R.at[:, j].set(col[:m])
                return j + 1, V, R, cs, sn, g, breakdown

            j, V, R, cs, sn, g, _ = lax.while_loop(
                cond, body, (0, V, R, cs, sn, g, jnp.array(False))
            )
            # Solve the leading j x j triangle: pad the rest with the identity.
            k = jnp.arange(m)
            used = k < j
            R = jnp.where(used[:, None] & used[None, :], R, jnp.diag(jnp.where(used, 0.0, 1.0)))
            y = jax.scipy.linalg.solve_triangular(R, jnp.where(used, g[:m], 0.0), lower=False)
            x = x + y @ V[:m]
            return x, jnp.abs(g[j]), j

        def outer_cond(carry):
            _, res, it, _ = carry
            return (res > target) & (it < self.max_restarts)

        def outer_body(carry):
            x, _, it, steps = carry
            r = lax.cond(it == 0, lambda: b, lambda: b - matvec(x))
            x, res, j = cycle(x, r)
            return x, res, it + 1, steps + j

        x0 = jnp.zeros_like(b)
        x, res, _, steps = lax.while_loop(
            outer_cond, outer_body, (x0, b_norm, jnp.array(0), jnp.array(0))
        )
        ok = jnp.isfinite(res) & (res <= target)
        result = lx.RESULTS.where(ok, lx.RESULTS.successful, lx.RESULTS.max_steps_reached)
        return unravel(x), result, {"num_steps": steps, "residual_norm": res}

    def transpose(self, state: lx.AbstractLinearOperator, options: dict[str, Any]):
        return state.transpose(), options

    def conj(self, state: lx.AbstractLinearOperator, options: dict[str, Any]):
        return lx.conj(state), options

    def assume_full_rank(self) -> bool:
        return True


class CGResult(NamedTuple):
    """The result of [`truncated_cg`][flow.solvers.truncated_cg].

    `x` the (truncated) solution, `Ax` its image $A x$ (accumulated, no extra
    product), `num_steps` the operator products, `negative_curvature` whether a
    direction with $p^T A p \\le 0$ stopped the iteration, `boundary` whether it
    stopped on the trust-region boundary, `converged` whether the residual test
    (or `stop`) was met, `curvature` $p^T A p$ of the last direction taken."""

    x: Array
    Ax: Array
    num_steps: Array
    negative_curvature: Array
    boundary: Array
    converged: Array
    curvature: Array


def truncated_cg(
    matvec: Callable[[Array], Array],
    b: Array,
    *,
    atol: Array | float,
    max_steps: int | Array,
    radius: Array | float | None = None,
    stop: Callable[[Array], Array] | None = None,
) -> CGResult:
    r"""Conjugate gradients for $A x = b$ from $x_0 = 0$, truncated at non-positive
    curvature and (optionally) at a trust-region radius (Steihaug-Toint; Nocedal &
    Wright, Algorithms 5.2 and 7.2). `A` is symmetric, given by `matvec`; nothing
    is formed. Pure JAX (one `lax.while_loop`): jit-able and vmappable.

    Each iteration takes one product $A p$. It stops when

    - $\|r\|_2 \le$ `atol` or `stop(r)` is True (`converged`), $r = b - Ax$;
    - a direction $p$ has $p^T A p \le 0$ (`negative_curvature`): without a
      radius the last iterate is returned (for $b = \nabla E$ it is a descent
      direction; it is 0 if this happens at the first step); with a radius the
      step goes on along $p$ to the boundary $\|x\|_2 = $ `radius` (`boundary`);
    - the next iterate would leave $\|x\|_2 \le$ `radius` (`boundary`): it stops on
      the boundary;
    - `max_steps` products were taken.

    **Returns:** a [`CGResult`][flow.solvers.CGResult].
    """
    bb = jnp.vdot(b, b)
    zeros = jnp.zeros_like(b)
    has_radius = radius is not None
    radius = jnp.inf if radius is None else radius

    def to_boundary(x, p):
        # tau >= 0 with ||x + tau p|| = radius (||x|| <= radius)
        xp, pp, xx = jnp.vdot(x, p), jnp.vdot(p, p), jnp.vdot(x, x)
        disc = jnp.sqrt(jnp.maximum(xp**2 + pp * (radius**2 - xx), 0.0))
        return (-xp + disc) / jnp.where(pp > 0, pp, 1.0)

    def cond(c):
        return c["running"]

    def body(c):
        x, Ax, r, p, rr, j = c["x"], c["Ax"], c["r"], c["p"], c["rr"], c["j"]
        Ap = matvec(p)
        curv = jnp.vdot(p, Ap)
        negative = curv <= 0
        alpha = rr / jnp.where(negative, 1.0, curv)
        x_new = x + alpha * p
        Ax_new = Ax + alpha * Ap
        if has_radius:
            outside = negative | (jnp.linalg.norm(x_new) >= radius)
            tau = to_boundary(x, p)
            x_out = jnp.where(outside, x + tau * p, x_new)
            Ax_out = jnp.where(outside, Ax + tau * Ap, Ax_new)
        else:
            outside = jnp.array(False)
            x_out = jnp.where(negative, x, x_new)
            Ax_out = jnp.where(negative, Ax, Ax_new)
        r_new = r - alpha * Ap
        rr_new = jnp.vdot(r_new, r_new)
        small = rr_new <= atol**2
        if stop is not None:
            small = small | stop(r_new)
        small = small & ~negative
        p_new = r_new + (rr_new / jnp.where(rr > 0, rr, 1.0)) * p
        done = negative | outside | small | (j + 1 >= max_steps)
        return dict(
            x=x_out,
            Ax=Ax_out,
            r=jnp.where(negative, r, r_new),
            p=p_new,
            rr=jnp.where(negative, rr, rr_new),
            j=j + 1,
            running=~done,
            negative=negative,
            boundary=outside & has_radius,
            converged=small & ~outside,
            curvature=curv,
        )

    init = dict(
        x=zeros,
        Ax=zeros,
        r=b,
        p=b,
        rr=bb,
        j=jnp.array(0),
        running=bb > 0,
        negative=jnp.array(False),
        boundary=jnp.array(False),
        converged=bb == 0,
        curvature=jnp.zeros((), b.dtype),
    )
    out = jax.lax.while_loop(cond, body, init)
    return CGResult(
        x=out["x"],
        Ax=out["Ax"],
        num_steps=out["j"],
        negative_curvature=out["negative"],
        boundary=out["boundary"],
        converged=out["converged"],
        curvature=out["curvature"],
    )
