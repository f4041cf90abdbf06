r"""The package's Newton root finders (optimistix root finders), in one home.

- [`StageNewton`][flow.solvers.StageNewton]: inexact Newton-Krylov for the stage
  equations of the implicit solvers of stiff gradient flows (matrix-free).
- [`DampedNewton`][flow.solvers.DampedNewton]: Newton with a fixed step factor, the
  indirect method's iteration of costate shooting (paper section 6.3).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import optimistix as optx
from jaxtyping import Array

from ._krylov import EarlyGMRES


def _newton_correction(fn, y, args, tags, linear_solver):
    """`(F(y), J(y)^{-1} F(y), aux, the linear solve's result)`: the Newton correction,
    with J the Jacobian of the `jax.linearize`d F (matrix-free; lineax solves it)."""
    fx, lin_fn, aux = jax.linearize(lambda _y: fn(_y, args), y, has_aux=True)
    jac = lx.FunctionLinearOperator(lin_fn, jax.eval_shape(lambda: y), tags=tags)
    sol = lx.linear_solve(jac, fx, linear_solver, throw=False)
    return fx, sol.value, aux, sol.result


class _StageNewtonState(eqx.Module):
    diffsize: Array
    diffsize_prev: Array
    step: Array
    result: optx.RESULTS


class StageNewton(optx.AbstractRootFinder):
    r"""Inexact Newton-Krylov for the stage equations of an implicit Runge-Kutta
    solver, matrix-free.

    Iteration $y \leftarrow y - \delta$ with $J(y)\,\delta \approx F(y)$ solved by
    `linear_solver` (default [`EarlyGMRES`][flow.solvers.EarlyGMRES], relative
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
        _, diff, aux, _ = _newton_correction(fn, y, args, tags, self.linear_solver)
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
            started & diverged & ~converged,
            optx.RESULTS.nonlinear_divergence,
            optx.RESULTS.successful,
        )
        return started & (converged | diverged), result

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        return y, aux, {"num_newton_steps": state.step}


class DampedNewton(optx.AbstractRootFinder):
    r"""Damped Newton root finder (an `optimistix` root finder):
    $y \leftarrow y - d\,J(y)^{-1} F(y)$, with the damping (step factor) $d$.

    $d = 1$ is Newton's method; $0 < d < 1$ shortens every step (the direct method's
    effective step, paper section 6.3), which widens the region of convergence at
    the price of a linear rate $|1 - d|$ near the root. Converged when the full
    Newton step satisfies $\|J^{-1}F\|_\infty \le$ `atol` + `rtol` $|y|$
    componentwise and $\|F\|_\infty \le$ `ftol`; a non-finite $F$ or step ends
    the solve as a divergence.
    """

    rtol: Any
    atol: Any
    ftol: Any
    damping: Any = 1.0
    norm: Callable = optx.max_norm
    linear_solver: lx.AbstractLinearSolver = lx.AutoLinearSolver(well_posed=None)

    def init(self, fn, y, args, options, f_struct, aux_struct, tags):
        del fn, args, options, aux_struct, tags
        return _DampedNewtonState(
            f=jnp.full(f_struct.shape, jnp.inf, f_struct.dtype),
            diff=jnp.full_like(y, jnp.inf),
            result=optx.RESULTS.successful,
            step=jnp.array(0),
        )

    def step(self, fn, y, args, options, state, tags):
        del options
        fx, diff, aux, result = _newton_correction(fn, y, args, tags, self.linear_solver)
        new_y = y - self.damping * diff
        new_state = _DampedNewtonState(
            f=fx, diff=diff, result=optx.RESULTS.promote(result), step=state.step + 1
        )
        return new_y, new_state, aux

    def terminate(self, fn, y, args, options, state, tags):
        del fn, args, options, tags
        scale = self.atol + self.rtol * jnp.abs(y)
        step_small = self.norm(jnp.abs(state.diff) / scale) < 1
        f_small = self.norm(state.f) <= self.ftol
        started = state.step > 0
        nonfinite = started & ~(jnp.all(jnp.isfinite(state.f)) & jnp.all(jnp.isfinite(state.diff)))
        failed = state.result != optx.RESULTS.successful
        result = optx.RESULTS.where(
            nonfinite,
            optx.RESULTS.nonlinear_divergence,
            optx.RESULTS.where(failed, state.result, optx.RESULTS.successful),
        )
        return failed | nonfinite | (started & step_small & f_small), result

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        del fn, args, options, state, tags, result
        return y, aux, {}


class _DampedNewtonState(eqx.Module):
    f: Array
    diff: Array
    result: optx.RESULTS
    step: Array
