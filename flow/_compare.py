r"""The discrete iterates (37) against the gradient flow (50) at tau_i = sum of steps."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._descent import DescentTrace
from ._encoding import format_number
from ._flow_solution import FlowSolution, _missing_dense_output
from ._results import AbstractRecord
from ._shooting import AbstractShooting
from ._validation import instance, optional_positive_float


class Comparison(AbstractRecord):
    r"""Result of [`compare`][]: iterate $i$ of the descent against $U(\tau_i)$,
    $\tau_i = \sum_{j<i}\alpha_j$, for the iterates with $\tau_i$ inside the window.

    - `tau`: $\tau_i$; `distance`: $\|U_i - U(\tau_i)\|_\infty$;
    - `max_distance`: its maximum over the window;
    - `descent_cost`, `flow_cost`: $E^N(U_i)$ and $E^N(U(\tau_i))$;
    - `descent_residual`, `flow_residual`: the Hamiltonian residuals
      $\max_k|\nabla_{u_k}E^N/h_k|$ of both.
    """

    tau: Float[Array, " K"]
    distance: Float[Array, " K"]
    max_distance: float
    descent_cost: Float[Array, " K"]
    flow_cost: Float[Array, " K"]
    descent_residual: Float[Array, " K"]
    flow_residual: Float[Array, " K"]

    def _summary(self) -> str:
        return (
            f"{self.tau.shape[0]} iterates up to tau = {float(self.tau[-1]):.4g}, max "
            f"distance {format_number(self.max_distance, '.3e')}"
        )


def compare(
    trace: DescentTrace,
    flow_solution: FlowSolution,
    *,
    tau_max: float | None = None,
) -> Comparison:
    r"""Compare a [`DescentTrace`][flow.DescentTrace] with a
    [`FlowSolution`][flow.FlowSolution] of the same problem, start and metric.

    Forward Euler is first order: on a fixed window $[0, \tau_{max}]$ the maximum
    distance is $O(\alpha)$, so halving the step halves it.

    **Arguments:** `trace` (with iterates saved; it carries its `shooting`); `flow_solution`
    (with dense output, `SaveAt(dense=True)`); `tau_max`, the window (default:
    every iterate up to the end of both runs).

    **Returns:** a [`Comparison`][].

    **Raises:** `TypeError` when `trace` is not a `DescentTrace` or `flow_solution`
    not a `FlowSolution`; `ValueError` for a non-positive `tau_max`, a `trace`
    without iterates, a `flow_solution` without dense output (saved without
    `dense=True`, or stopped at the start), controls of different shapes, or
    different starts ($U_0$ of the trace against $U(0)$ of the flow, to a relative
    $10^{-12}$). The metric is recorded by neither result and is not checked.
    """
    instance(trace, "trace", DescentTrace, "from flow.descend(..., save_iterates=True)")
    instance(flow_solution, "flow_solution", FlowSolution, "from flow.gradient_flow")
    tau_max = optional_positive_float(tau_max, "tau_max")
    if trace.iterates is None:
        raise ValueError(
            "`trace` has no iterates: run descend(..., save_iterates=True) to compare."
        )
    missing = _missing_dense_output(flow_solution)
    if missing is not None:
        raise ValueError(f"`flow_solution` has no dense output: {missing}.")
    shape_t, shape_f = tuple(trace.U.shape), tuple(flow_solution.U.shape)
    if shape_t != shape_f:
        raise ValueError(
            f"`flow_solution` has controls of shape {shape_f}, `trace` of shape {shape_t}: "
            f"compare runs of the same shooting problem."
        )
    start_t = np.asarray(trace.iterates[0])
    start_f = np.asarray(flow_solution.evaluate(flow_solution.phase_starts[0]))
    gap = float(np.max(np.abs(start_t - start_f)))
    if not gap <= 1e-12 * (1.0 + float(np.max(np.abs(start_t)))):
        raise ValueError(
            f"`flow_solution` starts elsewhere than `trace`: max |U0_trace - U_flow(0)| "
            f"= {gap:.3g}; compare runs from the same U0."
        )
    n = int(trace.num_steps)
    taus = np.asarray(trace.taus)[: n + 1]
    end = float(flow_solution.tau_final)
    window = end if tau_max is None else min(float(tau_max), end)
    keep = np.nonzero(taus <= window * (1 + 1e-12))[0]
    if keep.size == 0:
        raise ValueError(f"no iterate lies inside the window [0, {window}].")
    tau = jnp.asarray(taus[keep])
    U_desc = trace.iterates[keep]
    U_flow = flow_solution.evaluate(jnp.minimum(tau, end))
    dist, c_d, c_f, r_d, r_f = _curves(trace.shooting, U_desc, U_flow)
    return Comparison(
        tau=tau,
        distance=dist,
        max_distance=float(jnp.max(dist)),
        descent_cost=c_d,
        flow_cost=c_f,
        descent_residual=r_d,
        flow_residual=r_f,
    )


@eqx.filter_jit
def _curves(sh: AbstractShooting, U_desc: Array, U_flow: Array):
    h = sh.steps[:, None]

    def one(U):
        c, g = jax.value_and_grad(type(sh).objective, argnums=1)(sh, U)
        return c, jnp.max(jnp.abs(g / h))

    c_d, r_d = jax.vmap(one)(U_desc)
    c_f, r_f = jax.vmap(one)(U_flow)
    dist = jnp.max(jnp.abs(U_desc - U_flow), axis=(1, 2))
    return dist, c_d, c_f, r_d, r_f
