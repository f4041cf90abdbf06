r"""GMRES that tests convergence after every Arnoldi step (a lineax solver).

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

from typing import Any

import equinox as eqx
import jax
import jax.flatten_util as jfu
import jax.lax as lax
import jax.numpy as jnp
import lineax as lx
import optimistix as optx
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
                    return col.at[i].set(cs[i] * a + sn[i] * c).at[i + 1].set(
                        -sn[i] * a + cs[i] * c
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


class _StageNewtonState(eqx.Module):
    diffsize: Array
    diffsize_prev: Array
    step: Array
    result: optx.RESULTS


class StageNewton(optx.AbstractRootFinder):
    r"""Inexact Newton-Krylov for the stage equations of an implicit Runge-Kutta
    solver, matrix-free.

    Iteration $y \leftarrow y - \delta$ with $J(y)\,\delta \approx F(y)$ solved by
    `linear_solver` (default [`EarlyGMRES`][flow._krylov.EarlyGMRES], relative
    tolerance $10^{-2}$: inexact Newton) on Jacobian-vector products of the
    `jax.linearize`d $F$ (for a gradient flow, one Hessian-vector product each);
    nothing of size $n \times n$ is formed.

    Termination, with $d_k = \|\delta_k / (\mathrm{atol} + \mathrm{rtol}\,|y_k|)\|_\infty$
    (Hairer & Wanner, *Solving ODEs II*, IV.8): converged when $d_k \le \kappa$,
    already after the first iteration (the correction is far below the
    tolerance, so what is left, $O(d_k^2)$, is too), or when the observed rate
    $\theta = d_k/d_{k-1} < 1$ gives $\theta d_k/(1-\theta) \le \kappa$; diverged
    (`nonlinear_divergence`, so the step controller shrinks the step) when
    $\theta \ge 1$ or $\delta$ is not finite.
    """

    rtol: float
    atol: float
    norm: Any = optx.max_norm
    kappa: float = 1e-2
    linear_solver: lx.AbstractLinearSolver = EarlyGMRES(rtol=1e-2)

    def init(self, fn, y, args, options, f_struct, aux_struct, tags):
        del fn, y, args, options, f_struct, aux_struct, tags
        inf = jnp.array(jnp.inf)
        return _StageNewtonState(inf, inf, jnp.array(0), optx.RESULTS.successful)

    def step(self, fn, y, args, options, state, tags):
        del options
        fx, lin_fn, aux = jax.linearize(lambda _y: fn(_y, args), y, has_aux=True)
        jac = lx.FunctionLinearOperator(lin_fn, jax.eval_shape(lambda: y), tags=tags)
        sol = lx.linear_solve(jac, fx, self.linear_solver, throw=False)
        diff = sol.value
        new_y = jax.tree.map(lambda a, b: a - b, y, diff)
        scale = jax.tree.map(lambda a: self.atol + self.rtol * jnp.abs(a), new_y)
        diffsize = self.norm(jax.tree.map(lambda a, b: a / b, diff, scale))
        diffsize = jnp.where(jnp.isfinite(diffsize), diffsize, jnp.inf)
        new_state = _StageNewtonState(diffsize, state.diffsize, state.step + 1, state.result)
        return new_y, new_state, aux

    def terminate(self, fn, y, args, options, state, tags):
        del fn, y, args, options, tags
        first = state.step == 1
        rate = state.diffsize / state.diffsize_prev
        small = state.diffsize <= self.kappa
        settled = rate * state.diffsize / (1 - rate) <= self.kappa
        converged = small | (~first & (rate < 1) & settled)
        diverged = ~jnp.isfinite(state.diffsize) | (~first & (rate >= 1) & ~small)
        started = state.step >= 1
        result = optx.RESULTS.where(
            started & diverged & ~converged, optx.RESULTS.nonlinear_divergence,
            optx.RESULTS.successful,
        )
        return started & (converged | diverged), result

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        return y, aux, {"num_newton_steps": state.step}
