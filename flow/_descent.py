r"""The discrete algorithm (37) replayed: U_{i+1} = U_i - alpha_i M^{-1} grad E^N(U_i)."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ._metrics import AbstractMetric
from ._shooting import Shooting, _cost_impl
from ._status import RESULTS, ConvergenceError, DivergenceError, is_success
from ._steps import AbstractStepRule, step_rule


#: `save_iterates=True` refuses runs whose iterates would take more than this.
SAVE_ITERATES_MAX_BYTES = 1024 * 2**20

_STOP_ON = ("hamiltonian", "gradient")


class DescentTrace(eqx.Module):
    r"""The record of one [`descend`][] run.

    Arrays have one entry per iterate $i = 0, \dots,$ `iterations` (per step for
    `step`); entries after the run stopped (index > `n_iterations`) repeat the
    final values.

    **Fields:**

    - `cost`: $E^N(U_i)$;
    - `gradient_norm`: $\|\nabla E^N(U_i)\|_\infty$;
    - `hamiltonian_norm`: $\max_k |\nabla_{u_k} E^N / h_k|$, the Hamiltonian residual
      $\max_k|\partial_u H_k|$ (Lemma 2; for non-Euler schemes the discrete one);
    - `step`: the step $\alpha_i$ taken from $U_i$ (a scalar per iteration);
    - `iterates`: $U_i$, shape (iterations+1, N, m), or `None` when not saved;
    - `U`: the last finite iterate; `n_iterations`: the number of steps taken;
    - `result`: a [`RESULTS`][flow.RESULTS] item, `message` its text;
    - `diverged_at`: the iteration at which divergence was detected, or -1;
    - `fallback_steps`: steps where the metric or line search could not give a
      descent direction and fell back (Newton on an indefinite Hessian, a failed
      line search);
    - `shooting`: the problem it ran on.
    """

    cost: Float[Array, " I"]
    gradient_norm: Float[Array, " I"]
    hamiltonian_norm: Float[Array, " I"]
    step: Float[Array, " J"]
    iterates: Float[Array, "I N m"] | None
    U: Float[Array, "N m"]
    n_iterations: Int[Array, ""]
    result: RESULTS
    diverged_at: Int[Array, ""]
    fallback_steps: Int[Array, ""]
    shooting: Shooting

    @property
    def message(self) -> str:
        """The human-readable status."""
        return RESULTS[self.result]

    @property
    def success(self) -> bool:
        """True when the run converged or completed."""
        return is_success(self.result)

    @property
    def taus(self) -> Float[Array, " I"]:
        r"""Flow times of the iterates, $\tau_i = \sum_{j<i}\alpha_j$ (eq. (50))."""
        return jnp.concatenate([jnp.zeros((1,)), jnp.cumsum(self.step)])

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary: the histories up to `n_iterations`, status and counts."""
        n = int(self.n_iterations)
        return dict(
            n_iterations=n,
            status=self.message,
            success=self.success,
            diverged_at=int(self.diverged_at),
            fallback_steps=int(self.fallback_steps),
            cost=np.asarray(self.cost[: n + 1]).tolist(),
            gradient_norm=np.asarray(self.gradient_norm[: n + 1]).tolist(),
            hamiltonian_norm=np.asarray(self.hamiltonian_norm[: n + 1]).tolist(),
            step=np.asarray(self.step[:n]).tolist(),
        )

    def __repr__(self) -> str:
        try:
            n = int(self.n_iterations)
            return (
                f"DescentTrace({self.message.split(':')[0]} after {n} iterations, "
                f"cost {float(self.cost[n]):.6g}, |dH/du| {float(self.hamiltonian_norm[n]):.2e})"
            )
        except (TypeError, jax.errors.ConcretizationTypeError):  # pragma: no cover
            return "DescentTrace(<traced>)"


def descend(
    shooting: Shooting,
    U0: Any,
    metric: AbstractMetric,
    *,
    step: Any,
    iterations: Any,
    tol: Any = None,
    stop_on: str = "hamiltonian",
    divergence_factor: float | int = 1e6,
    save_iterates: bool = False,
    throw: bool = True,
) -> DescentTrace:
    r"""Run the discrete algorithm (37): $U_{i+1} = U_i - \alpha_i M^{-1}\nabla E^N(U_i)$.

    With a constant step this is forward Euler with step $\alpha$ on the gradient
    flow $dU/d\tau = -M^{-1}\nabla E^N(U)$ (50). The loop is one `lax.while_loop`
    (one cost-and-gradient evaluation per iteration, plus the metric's solve and
    any line-search trials); it vmaps over step sizes and initial points.

    **Arguments:**

    - `shooting`: a [`Shooting`][]; `U0`: the start, shape (N, m).
    - `metric`: an [`AbstractMetric`][flow.metrics.AbstractMetric] (prepared at `U0`).
    - `step`: a positive number (constant $\alpha$), `"hamiltonian"`
      ($\alpha = 1/h$), `"armijo"`, `"lbfgs"`, or a step rule instance.
    - `iterations`: the maximum number of steps.
    - `tol`: stop when the residual is $\le$ `tol` (default: run all iterations).
    - `stop_on`: the residual: `"hamiltonian"` ($\max_k|\partial_u H_k|$) or
      `"gradient"` ($\|\nabla E^N\|_\infty$). By Theorem 5.14 a gradient
      tolerance $\epsilon$ is only $\epsilon/h$ on the Hamiltonian.
    - `divergence_factor`: divergence is declared at the first iteration where a
      value is non-finite or $\|\nabla E^N\|_\infty >$ `divergence_factor` $\cdot
      \max(\|\nabla E^N(U_0)\|_\infty, 10^{-300})$.
    - `save_iterates`: keep every $U_i$ in `trace.iterates` (needed by
      [`compare`][flow.compare]); off by default: writing them costs about 5% per
      iteration, and `(iterations + 1) N m` floats of memory.
    - `throw`: raise [`DivergenceError`][flow.DivergenceError] on divergence and
      [`ConvergenceError`][flow.ConvergenceError] when `tol` is not reached; with
      `throw=False` the status is returned instead (use it under `vmap`).

    **Returns:** a [`DescentTrace`][].
    """
    if not isinstance(shooting, Shooting):
        raise TypeError(f"`shooting` must be a Shooting; got {type(shooting).__name__}.")
    if not isinstance(metric, AbstractMetric):
        raise TypeError(f"`metric` must be a flow.metrics metric; got {metric!r}.")
    if isinstance(iterations, bool) or not isinstance(iterations, int | np.integer):
        raise TypeError(f"`iterations` must be an integer >= 1; got {iterations!r}.")
    if iterations < 1:
        raise ValueError(f"`iterations` must be >= 1; got {iterations}.")
    if stop_on not in _STOP_ON:
        raise ValueError(f"`stop_on` must be one of {_STOP_ON}; got {stop_on!r}.")
    if not divergence_factor > 1:
        raise ValueError(f"`divergence_factor` must be > 1; got {divergence_factor}.")
    if tol is not None and not isinstance(tol, jax.core.Tracer) and not float(tol) > 0:
        raise ValueError(f"`tol` must be positive; got {tol}.")
    rule = step_rule(step)
    # Unbound calls: an equinox bound method costs ~35 us to create (equinox 0.13),
    # which counted at small N (benchmarks/README.md, descend overhead).
    U0 = type(shooting).check_controls(shooting, U0, "U0")
    if save_iterates and (iterations + 1) * U0.size * 8 > SAVE_ITERATES_MAX_BYTES:
        raise ValueError(
            f"`save_iterates`: {iterations + 1} iterates of {U0.size} floats exceed "
            f"{SAVE_ITERATES_MAX_BYTES // 2**20} MiB; lower `iterations` or save fewer."
        )
    metric = type(metric).prepare(metric, shooting, U0)
    # numpy, not jnp: a host-side 0-d array is a dynamic leaf without a device transfer
    if isinstance(tol, jax.core.Tracer):
        tol_arg = tol
    else:
        tol_arg = np.asarray(np.inf if tol is None else tol, np.float64)
    trace = _descend(
        shooting,
        U0,
        metric,
        rule,
        int(iterations),
        tol_arg,
        tol is not None,
        stop_on == "hamiltonian",
        float(divergence_factor),
        bool(save_iterates),
    )
    if throw:
        _raise_for(trace, tol, stop_on)
    return trace


def _raise_for(trace: DescentTrace, tol: Any, stop_on: str) -> None:
    if isinstance(trace.result._value, jax.core.Tracer):
        raise ValueError(
            "descend(..., throw=True) cannot report a status under a JAX transformation "
            "(vmap/jit): pass throw=False and read `trace.result`."
        )
    if trace.result == RESULTS.diverged:
        i = int(trace.diverged_at)
        g = np.asarray(trace.gradient_norm)
        if np.isfinite(g[i]) and np.isfinite(float(trace.cost[i])):
            what = f"|grad E^N|_inf grew from {g[0]:.3e} to {g[i]:.3e}"
        else:
            last = max(i - 1, 0)
            what = (
                f"a non-finite cost or gradient appeared (|grad E^N|_inf was {g[0]:.3e} "
                f"at the start and {g[last]:.3e} at iteration {last})"
            )
        raise DivergenceError(
            f"descend diverged at iteration {i}: {what}; the step is likely above the "
            f"forward-Euler stability bound. Pass throw=False to get the trace."
        )
    if trace.result == RESULTS.max_iterations:
        n = int(trace.n_iterations)
        res = trace.hamiltonian_norm if stop_on == "hamiltonian" else trace.gradient_norm
        raise ConvergenceError(
            f"descend did not reach {stop_on} residual <= {float(tol):.3e} in {n} "
            f"iterations (last residual {float(res[n]):.3e}). Raise `iterations`, or pass "
            f"throw=False to get the trace."
        )


def _descend(*args: Any) -> DescentTrace:
    """`_descend_impl` compiled: by `jax.jit` when every leaf of the shooting, start
    point, metric and rule is an array (the common case: its C++ dispatch costs about
    0.13 ms less per call than `eqx.filter_jit`, which showed at small N), otherwise
    by `eqx.filter_jit` (non-array leaves, e.g. Python ints, stay static)."""
    leaves = jax.tree_util.tree_leaves(args[:4])
    if all(isinstance(leaf, jax.Array | np.ndarray) for leaf in leaves):
        return _descend_jit(*args)
    return _descend_filter_jit(*args)


def _descend_impl(
    sh: Shooting,
    U0: Array,
    metric: AbstractMetric,
    rule: AbstractStepRule,
    iterations: int,
    tol: Any,
    has_tol: bool,
    on_hamiltonian: bool,
    divergence_factor: float,
    save_iterates: bool,
) -> DescentTrace:
    inv_h = 1.0 / sh.steps[:, None]
    value_and_grad = jax.value_and_grad(_cost_impl, argnums=1)

    def residuals(g):
        # Two max-reductions per iteration; a NaN in g propagates into both norms,
        # so they double as the finiteness check of the gradient.
        a = jnp.abs(g)
        gn = jnp.max(a)
        hn = jnp.max(a * inv_h)
        return gn, hn, (hn if on_hamiltonian else gn)

    def direction(U):
        return lambda G: metric.solve(sh, U, G)

    c0, g0 = value_and_grad(sh, U0)
    gn0, hn0, r0 = residuals(g0)
    limit = divergence_factor * jnp.maximum(gn0, 1e-300)
    n_hist = iterations + 1
    hist = dict(
        cost=jnp.full((n_hist,), c0),
        gnorm=jnp.full((n_hist,), gn0),
        hnorm=jnp.full((n_hist,), hn0),
        step=jnp.zeros((iterations,), U0.dtype),
    )
    if save_iterates:
        hist["U"] = jnp.broadcast_to(U0, (n_hist,) + U0.shape)
    converged0 = has_tol & (r0 <= tol)
    bad0 = ~(jnp.isfinite(c0) & jnp.isfinite(gn0) & jnp.isfinite(hn0))
    result0 = RESULTS.where(
        bad0, RESULTS.diverged, RESULTS.where(converged0, RESULTS.converged, RESULTS.completed)
    )
    running0 = ~(bad0 | converged0)
    carry0 = dict(
        i=jnp.array(0),
        U=U0,
        U_prev=U0,
        c=c0,
        g=g0,
        state=rule.init(sh, U0, g0),
        hist=hist,
        running=running0,
        result=result0,
        diverged_at=jnp.where(bad0, 0, -1),
        fallback=jnp.array(0),
    )

    def cond(carry):
        return carry["running"] & (carry["i"] < iterations)

    def body(carry):
        i, U = carry["i"], carry["U"]
        U_new, alpha, ok, state = rule.update(
            sh, U, carry["c"], carry["g"], direction(U), carry["state"]
        )
        c, g = value_and_grad(sh, U_new)
        gn, hn, r = residuals(g)
        i = i + 1
        # a non-finite U_new gives a non-finite cost; a non-finite g a non-finite norm
        finite = jnp.isfinite(c) & jnp.isfinite(gn) & jnp.isfinite(hn)
        diverged = ~finite | (gn > limit)
        converged = ~diverged & has_tol & (r <= tol)
        hist = carry["hist"]
        hist = dict(
            cost=hist["cost"].at[i].set(c),
            gnorm=hist["gnorm"].at[i].set(gn),
            hnorm=hist["hnorm"].at[i].set(hn),
            step=hist["step"].at[i - 1].set(alpha),
            **({"U": hist["U"].at[i].set(U_new)} if save_iterates else {}),
        )
        result = RESULTS.where(
            diverged,
            RESULTS.diverged,
            RESULTS.where(converged, RESULTS.converged, carry["result"]),
        )
        return dict(
            i=i,
            U=U_new,
            U_prev=U,
            c=c,
            g=g,
            state=state,
            hist=hist,
            running=~(diverged | converged),
            result=result,
            diverged_at=jnp.where(diverged, i, carry["diverged_at"]),
            fallback=carry["fallback"] + jnp.where(ok, 0, 1),
        )

    out = jax.lax.while_loop(cond, body, carry0)
    ran_out = out["running"] & (out["i"] >= iterations)
    result = RESULTS.where(ran_out & has_tol, RESULTS.max_iterations, out["result"])
    n = out["i"]
    # the last finite iterate: the one before a non-finite step
    nonfinite_end = ~jnp.isfinite(out["c"]) | ~jnp.all(jnp.isfinite(out["U"]))
    U_final = jnp.where(nonfinite_end, out["U_prev"], out["U"])
    hist = {k: _repeat_tail(v, n) for k, v in out["hist"].items() if k != "step"}
    hist["step"] = out["hist"]["step"]
    return DescentTrace(
        cost=hist["cost"],
        gradient_norm=hist["gnorm"],
        hamiltonian_norm=hist["hnorm"],
        step=hist["step"],
        iterates=hist.get("U"),
        U=U_final,
        n_iterations=out["i"],
        result=result,
        diverged_at=out["diverged_at"],
        fallback_steps=out["fallback"],
        shooting=sh,
    )


_descend_jit = jax.jit(_descend_impl, static_argnums=(4, 6, 7, 8, 9))
_descend_filter_jit = eqx.filter_jit(_descend_impl)


def _repeat_tail(buf: Array, n: Array) -> Array:
    """buf with the entries after index n replaced by buf[n]."""
    idx = jnp.arange(buf.shape[0]).reshape((-1,) + (1,) * (buf.ndim - 1))
    return jnp.where(idx > n, buf[n], buf)
