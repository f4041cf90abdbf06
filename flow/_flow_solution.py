r"""The result of [`gradient_flow`][flow.gradient_flow]: the saved points, the final
control, what was used and why it stopped."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ._results import RESULTS, AbstractResult


class FlowSolution(AbstractResult):
    r"""The result of [`gradient_flow`][flow.gradient_flow].

    **Fields:**

    - `tau`: the saved flow times (entries the solve did not reach hold `inf`, as
      in diffrax; reached entries first);
    - `Us`: the controls at those times, (S, N, m), or `None` when not saved;
    - `cost`, `gradient_norm`, `hamiltonian_norm`: $E^N$, $\|\nabla E^N\|_\infty$
      and $\max_k|\nabla_{u_k}E^N/h_k|$ at the saved times (`inf` where not reached);
    - `U`, `tau_final`: the final control and flow time;
    - `residual`: the `stop_on` residual at `U`; `tol`, `stop_on`: the stopping rule
      (`tol` $= \infty$ when none);
    - `result`: a [`RESULTS`][flow.RESULTS] item (`status`, `message`, `success`);
    - work: `num_steps`, `num_accepted_steps`, `num_rejected_steps` (diffrax's
      counts, summed over the phases);
    - what was used: `solver` (its name; with `solver="auto"` the phases and why,
      e.g. `"Tsit5, then Kvaerno5 (matrix-free) from tau = 0.3: ..."`), `rtol`,
      `atol` (of the last phase);
    - `indefinite_at`: the first $\tau$ where a non-constant metric (Newton) was not
      positive definite, or NaN;
    - `solutions`: the `diffrax.Solution` of each phase, `phase_starts` their
      initial times (dense output through [`evaluate`][flow.FlowSolution.evaluate]
      when saved with `SaveAt(dense=True)`). With control bounds every segment
      between two changes of the active set is a phase of its own;
    - with control bounds, `active_set`: the final active set, (N, m) int8 (-1 at the
      lower bound, +1 at the upper, 0 free; `None` without bounds), and `switches`:
      the number of changes of the active set along the flow.
    """

    tau: Float[Array, " S"]
    Us: Float[Array, "S N m"] | None
    cost: Float[Array, " S"]
    gradient_norm: Float[Array, " S"]
    hamiltonian_norm: Float[Array, " S"]
    U: Float[Array, "N m"]
    tau_final: Float[Array, ""]
    residual: Float[Array, ""]
    tol: Float[Array, ""]
    stop_on: str = eqx.field(static=True)
    result: RESULTS
    num_steps: Int[Array, ""]
    num_accepted_steps: Int[Array, ""]
    num_rejected_steps: Int[Array, ""]
    solver: str = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    indefinite_at: Float[Array, ""]
    solutions: tuple[diffrax.Solution, ...]
    phase_starts: tuple[float, ...] = eqx.field(static=True)
    diagnosis: str = eqx.field(static=True)
    active_set: Int[Array, "N m"] | None = None
    switches: int = eqx.field(static=True, default=0)
    _arrays: ClassVar[tuple[str, ...]] = ("U", "active_set")

    def evaluate(self, tau: Any) -> Float[Array, "... N m"]:
        r"""$U(\tau)$ from diffrax's dense output (needs `saveat=SaveAt(dense=True)`);
        `tau` may be an array of times.

        **Raises:** `ValueError` when there is no dense output: the flow was saved
        without `dense=True`, or it stopped at the start (`nonfinite`, `indefinite`)
        without integrating.
        """
        missing = _missing_dense_output(self)
        if missing is not None:
            raise ValueError(f"this FlowSolution has no dense output: {missing}.")
        tau = jnp.asarray(tau, dtype=self.tau_final.dtype)
        starts = np.asarray(self.phase_starts)

        def one(t):
            # the phase that holds t (phases are contiguous in tau)
            k = int(np.clip(np.searchsorted(starts, float(t), side="right") - 1, 0, None))
            return self.solutions[k].evaluate(t)

        if tau.ndim == 0:
            return one(tau)
        if len(self.solutions) == 1:
            return jax.vmap(self.solutions[0].evaluate)(tau)
        return jnp.stack([one(t) for t in tau])

    def _record(self, include_arrays: bool) -> dict[str, Any]:
        ok = np.isfinite(np.asarray(self.tau))
        tol = float(self.tol)
        return dict(
            tau_final=self.tau_final,
            residual=self.residual,
            tol=tol if math.isfinite(tol) else None,
            stop_on=self.stop_on,
            num_steps=self.num_steps,
            num_accepted_steps=self.num_accepted_steps,
            num_rejected_steps=self.num_rejected_steps,
            solver=self.solver,
            rtol=self.rtol,
            atol=self.atol,
            indefinite_at=self.indefinite_at,
            tau=np.asarray(self.tau)[ok],
            cost=np.asarray(self.cost)[ok],
            gradient_norm=np.asarray(self.gradient_norm)[ok],
            hamiltonian_norm=np.asarray(self.hamiltonian_norm)[ok],
            U=self.U,
            active_set=self.active_set,
            switches=self.switches if self.active_set is not None else None,
        )

    def _details(self) -> str:
        return self.diagnosis

    def _summary(self) -> str:
        return (
            f"tau = {float(self.tau_final):.4g} after {int(self.num_steps)} steps of "
            f"{self.solver.split(':')[0]}, residual {float(self.residual):.2e}"
        )


def _missing_dense_output(sol: FlowSolution) -> str | None:
    """None when `sol` has dense output over its whole tau range; otherwise why not."""
    if not sol.solutions:
        return f"the flow stopped at the start ({sol.status}) without integrating"
    if any(s.interpolation is None for s in sol.solutions):
        return "run gradient_flow(..., saveat=diffrax.SaveAt(t1=True, dense=True))"
    return None
