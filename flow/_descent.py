r"""The discrete algorithm (37) replayed: U_{i+1} = U_i - alpha_i M^{-1} grad E^N(U_i)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from . import _box as bounds, _cycles as cycles, _projected_descent as projected
from ._custom_types import RealArrayLike
from ._encoding import format_number
from ._metrics import AbstractMetric, as_metric
from ._results import RESULTS, AbstractResult
from ._shooting import AbstractShooting
from ._steps import AbstractStepRule, step_rule
from ._validation import (
    positive_float,
    positive_int,
    shooting as check_shooting,
    stop_on as check_stop_on,
)


#: `save_iterates=True` refuses runs whose iterates would take more than this.
SAVE_ITERATES_MAX_BYTES = 1024 * 2**20


class DescentTrace(AbstractResult):
    r"""The record of one [`descend`][flow.descend] run.

    Arrays have one entry per iterate $i = 0, \dots,$ `max_steps` (per step for
    `step`); entries after the run stopped (index > `num_steps`) repeat the final
    values.

    **Fields:**

    - `cost`: $E^N(U_i)$;
    - `gradient_norm`: $\|\nabla E^N(U_i)\|_\infty$;
    - `hamiltonian_norm`: $\max_k |\nabla_{u_k} E^N / h_k|$, the Hamiltonian residual
      $\max_k|\partial_u H_k|$ (Lemma 2; for non-Euler schemes the discrete one);
    - `step`: the step $\alpha_i$ taken from $U_i$ (a scalar per iteration);
    - `iterates`: $U_i$, shape (max_steps+1, N, m), or `None` when not saved;
    - `U`: the last finite iterate;
    - `result`: a [`RESULTS`][flow.RESULTS] item (`status`, `message`, `success`);
    - `diverged_at`: the iteration at which divergence was detected, or -1;
    - `period`: with status `oscillating`, the period $p$ (2 or 4) of the cycle the
      iterates settled on ($\|U_i - U_{i-p}\|_\infty \le$ `cycle_tol`
      $\cdot\max(1, \|U_i\|_\infty)$ while the cycle's points stay apart), else 0;
    - `amplitude`: with status `oscillating`, the cycle's half-width
      $\max_{j<p}\|U_{i-j} - \bar U\|_\infty$ around its mean
      $\bar U = \frac1p\sum_{j<p} U_{i-j}$ (for a 2-cycle $\|U_i - U_{i-1}\|_\infty/2$),
      else 0;
    - `cycle`: with status `oscillating`, the iterates $U_j, \dots, U_{j-3}$ (newest
      first) at the test $j$ that found the cycle; its first `period` rows are the
      cycle's points. Shape (4, N, m); `None` when detection is off (`cycle_tol=None`);
    - work: `num_steps` (steps taken), `num_gradients` (cost-and-gradient
      evaluations, `num_steps + 1`), `num_hvp` (Hessian-vector products of the
      metric), `num_line_search_trials` (extra cost evaluations of a line search),
      `num_fallback_steps` (steps where the metric or the line search could not give
      a descent direction and fell back: Newton on an indefinite Hessian, a failed
      line search);
    - `tol`, `stop_on`: the stopping rule ($\infty$ when no tolerance was given);
    - `shooting`: the problem it ran on.
    """

    cost: Float[Array, " I"]
    gradient_norm: Float[Array, " I"]
    hamiltonian_norm: Float[Array, " I"]
    step: Float[Array, " J"]
    iterates: Float[Array, "I N m"] | None
    U: Float[Array, "N m"]
    result: RESULTS
    diverged_at: Int[Array, ""]
    period: Int[Array, ""]
    amplitude: Float[Array, ""]
    cycle: Float[Array, "4 N m"] | None
    num_steps: Int[Array, ""]
    num_gradients: Int[Array, ""]
    num_hvp: Int[Array, ""]
    num_line_search_trials: Int[Array, ""]
    num_fallback_steps: Int[Array, ""]
    tol: Float[Array, ""]
    stop_on: str = eqx.field(static=True)
    shooting: AbstractShooting
    _arrays: ClassVar[tuple[str, ...]] = ("U",)

    @property
    def taus(self) -> Float[Array, " I"]:
        r"""Flow times of the iterates, $\tau_i = \sum_{j<i}\alpha_j$ (eq. (50))."""
        return jnp.concatenate([jnp.zeros((1,)), jnp.cumsum(self.step)])

    @property
    def residual(self) -> Float[Array, " I"]:
        """The residual the tolerance is measured on (`stop_on`), per iterate."""
        return self.hamiltonian_norm if self.stop_on == "hamiltonian" else self.gradient_norm

    def _record(self, include_arrays: bool) -> dict[str, Any]:
        n = int(self.num_steps)
        tol = float(self.tol)
        return dict(
            num_steps=n,
            num_gradients=int(self.num_gradients),
            num_hvp=int(self.num_hvp),
            num_line_search_trials=int(self.num_line_search_trials),
            num_fallback_steps=int(self.num_fallback_steps),
            diverged_at=int(self.diverged_at),
            period=int(self.period),
            amplitude=float(self.amplitude),
            tol=tol if math.isfinite(tol) else None,
            stop_on=self.stop_on,
            # sliced by numpy: slicing a jax array compiles a kernel per length
            cost=np.asarray(self.cost)[: n + 1],
            gradient_norm=np.asarray(self.gradient_norm)[: n + 1],
            hamiltonian_norm=np.asarray(self.hamiltonian_norm)[: n + 1],
            step=np.asarray(self.step)[:n],
            U=self.U,
        )

    def _details(self) -> str:
        status = self.status
        n = int(self.num_steps)
        g = np.asarray(self.gradient_norm)
        if status == "nonfinite":
            report = self.shooting.nonfinite_report(self.U, "U0")
            return report or ""
        if status == "diverged":
            i = int(self.diverged_at)
            if np.isfinite(g[i]) and np.isfinite(float(self.cost[i])):
                what = f"|grad E^N|_inf grew from {g[0]:.3e} to {g[i]:.3e}"
            else:
                last = max(i - 1, 0)
                what = (
                    f"a non-finite cost or gradient appeared (|grad E^N|_inf was "
                    f"{g[0]:.3e} at the start and {g[last]:.3e} at iteration {last})"
                )
            return (
                f"Diverged at iteration {i}: {what}; the step is likely above the "
                f"forward-Euler stability bound (stability.euler_bound)"
            )
        if status == "oscillating":
            p = int(self.period)
            return (
                f"Settled on a cycle of period {p} and amplitude "
                f"{float(self.amplitude):.4g} (max-norm half-width) by iteration {n}: the "
                f"fixed point is unstable at this step (above stability.euler_bound's "
                f"alpha_max, past a flip: stability.flip); lower the step"
            )
        if status == "max_steps":
            r = np.asarray(self.residual)[: n + 1]
            return f"The {self.stop_on} residual {_trend(r, float(self.tol))}"
        return ""

    def _summary(self) -> str:
        n = int(self.num_steps)
        return (
            f"{n} steps, cost {format_number(float(self.cost[n]), '.6g')}, "
            f"max|dH/du| {float(self.hamiltonian_norm[n]):.2e}"
        )


def _trend(r: np.ndarray, tol: float) -> str:
    """What a residual history that missed `tol` did: still falling (at what rate,
    and how many more steps it would take) or stalled."""
    last = float(r[-1])
    text = f"was {last:.3e} > tol {tol:.1e} after {r.size - 1} steps"
    window = r[max(r.size // 2, r.size - 200) :]
    window = window[np.isfinite(window) & (window > 0)]
    if window.size < 4:
        return text
    slope = float(np.polyfit(np.arange(window.size), np.log(window), 1)[0])
    more = math.log(tol / last) / slope if slope < 0 else math.inf
    if more <= 100 * r.size:
        return (
            f"{text}; it was falling by a factor {math.exp(slope):.6g} per step (about "
            f"{more:.3g} more steps to tol): raise max_steps, or take a larger step"
        )
    return (
        f"{text}; it has not fallen over the last {window.size} steps (factor "
        f"{math.exp(slope):.6g} per step: stalled, as a line search does at the cost's "
        f"rounding floor, or tol is below the residual's floor, or the iteration oscillates)"
    )


def descend(
    shooting: AbstractShooting,
    U0: RealArrayLike,
    *,
    metric: AbstractMetric | str = "hamiltonian",
    step: float | ArrayLike | str | AbstractStepRule,
    max_steps: int = 1000,
    tol: float | ArrayLike | None = None,
    stop_on: str = "hamiltonian",
    divergence_factor: float = 1e6,
    cycle_tol: float | None = 1e-10,
    save_iterates: bool = False,
    throw: bool = True,
) -> DescentTrace:
    r"""Run the discrete algorithm (37): $U_{i+1} = U_i - \alpha_i M^{-1}\nabla E^N(U_i)$.

    With a constant step this is forward Euler with step $\alpha$ on the gradient
    flow $dU/d\tau = -M^{-1}\nabla E^N(U)$ (50).

    With control bounds (`shooting.bounds`, see [`flow.bounds`][flow.bounds]) it is
    projected descent, $U_{i+1} = P_B(U_i - \alpha M^{-1}\nabla E^N(U_i))$ from
    $P_B(U_0)$, exact for a diagonal metric (identity, Hamiltonian, diagonal or
    diagonal-Hessian) with a constant or Hamiltonian step; the residuals are then the
    projected gradient's, $\max|U - P_B(U - \nabla E^N)|$ and
    $\max|U - P_B(U - \partial_u H)|$. Near a solution with strict complementarity
    the active components lock onto their bounds after finitely many steps, and the
    free ones follow the unbounded iteration restricted to the free set. The Newton
    metric, line searches (`"armijo"`) and L-BFGS (`"lbfgs"`, from a diagonal metric)
    use Bertsekas' two-metric projection: on an $\varepsilon$-active set (the
    components within $\varepsilon = \min(10^{-3}\,\text{width},
    \|U - P_B(U - D_0)\|_\infty)$ of a bound that the gradient pushes onto it) the
    step is diagonal, $\nabla_A E^N/d_A$; on the rest it is the metric's,
    $(\nabla^2_{FF}E^N + \mu I)^{-1}\nabla_F E^N$ for Newton (CG on the free
    block) or L-BFGS's two-loop recursion on the masked gradient; the step along
    the projection arc $P_B(U - \alpha D)$ is fixed or chosen by Armijo's rule on
    the arc (Bertsekas 1982; the formulas are in `flow/_projected_descent.py`).
    Near a non-degenerate solution this is the unbounded method on the free set
    (projected Newton converges quadratically). Other metrics (`"fixed"`) are
    refused with bounds.

    The loop is one `lax.while_loop`
    (one cost-and-gradient evaluation per iteration, plus the metric's solve and
    any line-search trials); it vmaps over step sizes and initial points.

    **Arguments:**

    - `shooting`: a [`Shooting`][flow.Shooting] (or any
      [`AbstractShooting`][flow.AbstractShooting]: parameterized, adaptive);
      `U0`: the start, shape (N, m).
    - `metric`: $M$, a [`flow.metrics`][flow.metrics] metric or its name (default
      `"hamiltonian"`, $M = \mathrm{diag}(h_k)$: the mesh-independent choice);
      prepared at `U0`.
    - `step`: a positive number (constant $\alpha$), `"hamiltonian"`
      ($\alpha = 1/h$), `"armijo"`, `"lbfgs"`, or a step rule instance.
    - `max_steps`: the maximum number of steps.
    - `tol`: stop when the residual is $\le$ `tol` (default: run all `max_steps`).
    - `stop_on`: the residual: `"hamiltonian"` ($\max_k|\partial_u H_k|$) or
      `"gradient"` ($\|\nabla E^N\|_\infty$). By Theorem 5.14 a gradient
      tolerance $\epsilon$ is only $\epsilon/h$ on the Hamiltonian.
    - `divergence_factor`: divergence is declared at the first iteration where a
      value is non-finite or $\|\nabla E^N\|_\infty >$ `divergence_factor` $\cdot
      \max(\|\nabla E^N(U_0)\|_\infty, 10^{-300})$.
    - `cycle_tol`: detect cycles (periodic orbits past a flip of forward Euler,
      [`stability.flip`][stability.flip]): stop with status `oscillating` when, for
      $p = 2$ or $4$, $\|U_i - U_{i-p}\|_\infty \le$ `cycle_tol` $\cdot s$ while the
      shorter recurrences stay $\ge \sqrt{\texttt{cycle\_tol}}\cdot s$ apart,
      $s = \max(1, \|U_i\|_\infty)$, tested every 16 iterations (`flow/_cycles.py`).
      Without `tol` every step is taken, and the status is `oscillating` when the
      last test (the last iteration is one) found a cycle. `None` turns it off; it
      keeps three more copies of $U$, and costs one fused reduction every 16
      iterations (measured 2-3 % per iteration at N = 100 and 10^4).
    - `save_iterates`: keep every $U_i$ in `trace.iterates` (needed by
      [`compare`][flow.compare]); off by default: writing them costs about 5% per
      iteration, and `(max_steps + 1) N m` floats of memory.
    - `throw`: raise [`DivergenceError`][flow.DivergenceError] (diverged, or a
      non-finite start) or [`ConvergenceError`][flow.ConvergenceError] (`tol` not
      reached, or a cycle, `oscillating`, with or without `tol`); with `throw=False`
      the status is returned instead (use it under `vmap`).

    **Returns:** a [`DescentTrace`][flow.DescentTrace].
    """
    check_shooting(shooting)
    metric = as_metric(metric)
    max_steps = positive_int(max_steps, "max_steps")
    check_stop_on(stop_on)
    divergence_factor = positive_float(divergence_factor, "divergence_factor")
    if not divergence_factor > 1:
        raise ValueError(f"`divergence_factor` must be > 1; got {divergence_factor}.")
    if tol is not None:
        tol = positive_float(tol, "tol", allow_traced=True)
    if cycle_tol is not None:
        cycle_tol = positive_float(cycle_tol, "cycle_tol")
        if not cycle_tol < 1:
            raise ValueError(f"`cycle_tol` must be in (0, 1) or None; got {cycle_tol}.")
    rule = step_rule(step)
    if getattr(shooting, "bounds", None) is not None:
        reason = projected.supported(metric, rule)
        if reason is not None:
            raise ValueError(reason)
    # Unbound calls: an equinox bound method costs ~35 us to create (equinox 0.13),
    # which counted at small N (benchmarks/README.md, descend overhead).
    U0 = type(shooting).check_controls(shooting, U0, "U0")
    if save_iterates and (max_steps + 1) * U0.size * 8 > SAVE_ITERATES_MAX_BYTES:
        raise ValueError(
            f"`save_iterates`: {max_steps + 1} iterates of {U0.size} floats exceed "
            f"{SAVE_ITERATES_MAX_BYTES // 2**20} MiB; lower `max_steps` or save fewer."
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
        max_steps,
        tol_arg,
        tol is not None,
        stop_on,
        float(divergence_factor),
        None if cycle_tol is None else float(cycle_tol),
        bool(save_iterates),
    )
    if throw:
        trace.raise_for_status("descend")
    return trace


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
    sh: AbstractShooting,
    U0: Array,
    metric: AbstractMetric,
    rule: AbstractStepRule,
    max_steps: int,
    tol: Any,
    has_tol: bool,
    stop_on: str,
    divergence_factor: float,
    cycle_tol: float | None,
    save_iterates: bool,
) -> DescentTrace:
    inv_h = 1.0 / sh.steps[:, None]
    value_and_grad = jax.value_and_grad(type(sh).objective, argnums=1)
    on_hamiltonian = stop_on == "hamiltonian"
    box = getattr(sh, "bounds", None)

    def project(U):
        return U if box is None else bounds.project(U, *box)

    def residuals(U, g):
        # Two max-reductions per iteration; a NaN in g propagates into both norms,
        # so they double as the finiteness check of the gradient.
        if box is None:
            a = jnp.abs(g)
            gn = jnp.max(a)
            hn = jnp.max(a * inv_h)
        else:  # the projected gradient, and its Hamiltonian form
            gn = jnp.max(jnp.abs(bounds.projected_residual(U, g, *box)))
            hn = jnp.max(jnp.abs(bounds.projected_residual(U, g * inv_h, *box)))
        return gn, hn, (hn if on_hamiltonian else gn)

    def direction(U):
        return lambda G: metric.solve(sh, U, G)

    U0 = project(U0)
    c0, g0 = value_and_grad(sh, U0)
    gn0, hn0, r0 = residuals(U0, g0)
    limit = divergence_factor * jnp.maximum(gn0, 1e-300)
    n_hist = max_steps + 1
    hist = dict(
        cost=jnp.full((n_hist,), c0),
        gnorm=jnp.full((n_hist,), gn0),
        hnorm=jnp.full((n_hist,), hn0),
        step=jnp.zeros((max_steps,), U0.dtype),
    )
    if save_iterates:
        hist["U"] = jnp.broadcast_to(U0, (n_hist,) + U0.shape)
    detect = cycle_tol is not None
    converged0 = has_tol & (r0 <= tol)
    bad0 = ~(jnp.isfinite(c0) & jnp.isfinite(gn0) & jnp.isfinite(hn0))
    result0 = RESULTS.where(
        bad0, RESULTS.nonfinite, RESULTS.where(converged0, RESULTS.converged, RESULTS.completed)
    )
    running0 = ~(bad0 | converged0)
    zero = jnp.array(0)
    carry0 = dict(
        i=zero,
        U=U0,
        U_prev=U0,
        c=c0,
        g=g0,
        state=rule.init(sh, U0, g0),
        hist=hist,
        running=running0,
        result=result0,
        diverged_at=jnp.where(bad0, 0, -1),
        period=zero,
        fallback=zero,
        hvp=zero,
        trials=zero,
    )
    if detect:
        carry0["back"] = cycles.init(U0)

    def cond(carry):
        return carry["running"] & (carry["i"] < max_steps)

    two_metric = box is not None and not projected.exact_projection(metric, rule)

    def body(carry):
        i, U = carry["i"], carry["U"]
        if two_metric:  # its step is already in the box
            upd = projected.update(sh, metric, rule, U, carry["c"], carry["g"], carry["state"])
            U_new = upd.U
        else:
            upd = rule.update(sh, U, carry["c"], carry["g"], direction(U), carry["state"])
            U_new = project(upd.U)
        c, g = value_and_grad(sh, U_new)
        gn, hn, r = residuals(U_new, g)
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
            step=hist["step"].at[i - 1].set(upd.alpha),
            **({"U": hist["U"].at[i].set(U_new)} if save_iterates else {}),
        )
        result = RESULTS.where(
            diverged,
            RESULTS.diverged,
            RESULTS.where(converged, RESULTS.converged, carry["result"]),
        )
        new = dict(
            i=i,
            U=U_new,
            U_prev=U,
            c=c,
            g=g,
            state=upd.state,
            hist=hist,
            running=~(diverged | converged),
            result=result,
            diverged_at=jnp.where(diverged, i, carry["diverged_at"]),
            period=jnp.where(diverged | converged, 0, carry["period"]),
            fallback=carry["fallback"] + jnp.where(upd.ok, 0, 1),
            hvp=carry["hvp"] + upd.num_hvp,
            trials=carry["trials"] + upd.num_cost,
        )
        if detect:
            new["back"] = cycles.keep(carry["back"], i, U_new, max_steps)
        return new

    def block(carry):
        """Steps up to the next cycle test, then the test (`flow/_cycles.py`)."""
        carry = body(carry)
        carry = jax.lax.while_loop(
            lambda c: cond(c) & ~cycles.at_test(c["i"], max_steps), body, carry
        )
        tested = carry["running"] & cycles.at_test(carry["i"], max_steps) & (carry["i"] >= 4)
        found = cycles.period(carry["U"], carry["U_prev"], carry["back"], cycle_tol)
        period = jnp.where(tested, found, carry["period"])
        # without a tolerance every step is taken; the last test judges the end
        settled = has_tol & (period > 0)
        result = RESULTS.where(settled, RESULTS.oscillating, carry["result"])
        return carry | dict(period=period, running=carry["running"] & ~settled, result=result)

    out = jax.lax.while_loop(cond, block if detect else body, carry0)
    ran_out = out["running"] & (out["i"] >= max_steps)
    result = RESULTS.where(ran_out & has_tol, RESULTS.max_steps, out["result"])
    n = out["i"]
    if detect:
        cycle, period = cycles.points(out["U"], out["U_prev"], out["back"]), out["period"]
        result = RESULTS.where(ran_out & (period > 0), RESULTS.oscillating, result)
        amplitude = cycles.amplitude(cycle, period)
    else:
        cycle, period, amplitude = None, out["period"], jnp.zeros((), U0.dtype)
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
        result=result,
        diverged_at=out["diverged_at"],
        period=period,
        amplitude=amplitude,
        cycle=cycle,
        num_steps=n,
        num_gradients=n + 1,
        num_hvp=out["hvp"],
        num_line_search_trials=out["trials"],
        num_fallback_steps=out["fallback"],
        tol=jnp.asarray(tol, dtype=U0.dtype),
        stop_on=stop_on,
        shooting=sh,
    )


_descend_jit = jax.jit(_descend_impl, static_argnums=(4, 6, 7, 8, 9, 10))
_descend_filter_jit = eqx.filter_jit(_descend_impl)


def _repeat_tail(buf: Array, n: Array) -> Array:
    """buf with the entries after index n replaced by buf[n]."""
    idx = jnp.arange(buf.shape[0]).reshape((-1,) + (1,) * (buf.ndim - 1))
    return jnp.where(idx > n, buf[n], buf)
