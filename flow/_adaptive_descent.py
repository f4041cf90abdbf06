r"""The effect of the term S on a descent run (paper section 6.5): descent on the
adaptive map with the grid re-chosen at every iterate, against descent with the grid
fixed per outer iteration. Both runs are [`descend`][flow.descend] on an
[`AbstractShooting`][flow.AbstractShooting] (the adaptive map, or the frozen-grid
map), in the $L^2$ (Hamiltonian) metric of the reference grid."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._adaptive import AdaptiveShooting, _solve, frozen_grid
from ._custom_types import RealArrayLike
from ._descent import descend
from ._encoding import format_number
from ._results import AbstractRecord
from ._s_term import FD_DELTA, _central_pair, _fd_result, _inf, full_gradient
from ._steps import Armijo, Constant
from ._validation import choice, instance, positive_float, positive_int


class AdaptiveDescent(AbstractRecord):
    r"""Descent on the adaptive map with the grid re-chosen at every iterate
    ("inside"), against descent with the grid fixed per outer iteration ("fixed").

    Both runs are [`descend`][flow.descend] in the $L^2$ metric
    ($D = \nabla E / h_k$, `metric="hamiltonian"`) with the Armijo rule (from
    `alpha0`, halving, $c_1 = 10^{-4}$, no move when no trial is accepted) or a
    constant step `alpha0`. Residuals are $\max_k |\nabla_{u_k} E|/h_k$ of the
    gradient the algorithm uses (the frozen one inside the adaptive run).

    **Fields:**

    - `tol`, `alpha0`, `step` (`"armijo"` or `"constant"`), `max_steps` (per run;
      per outer iteration for "fixed");
    - `inside_residual`, `inside_cost`: histories (max_steps+1);
      `inside_failures`: line searches that found no decrease; `inside_grid_changes`:
      iterations at which the per-interval step counts changed;
      `inside_true_residual`: $\max_k |d\hat E/du_k|/h_k$ at the last iterate by
      finite differences (the full derivative, including S), over smooth components;
    - `fixed_residual`: the concatenated histories of the outer iterations,
      `fixed_outer`: per outer iteration `(num_steps, final residual, failures)`;
      `fixed_true_residual`: the finite-difference residual of the last fixed-grid
      map at its last iterate (equals its gradient's: S = 0).
    """

    tol: float
    alpha0: float
    step: str
    max_steps: int
    inside_residual: np.ndarray
    inside_cost: np.ndarray
    inside_failures: int
    inside_grid_changes: int
    inside_true_residual: float
    fixed_residual: np.ndarray
    fixed_outer: tuple[tuple[int, float, int], ...]
    fixed_true_residual: float

    @property
    def inside_final(self) -> float:
        """The last residual of the adaptive-inside run."""
        return float(self.inside_residual[-1])

    @property
    def fixed_final(self) -> float:
        """The last residual of the fixed-grid run."""
        return float(self.fixed_residual[-1])

    def _record(self, include_arrays: bool) -> dict[str, Any]:
        out = self._fields()
        out.update(inside_final=self.inside_final, fixed_final=self.fixed_final)
        return out

    def _summary(self) -> str:
        return (
            f"tol={self.tol:.0e}: grid inside -> residual "
            f"{format_number(self.inside_final, '.2e')} ({self.inside_failures} failed "
            f"line searches, true {format_number(self.inside_true_residual, '.2e')}); grid "
            f"fixed per outer iteration -> {format_number(self.fixed_final, '.2e')} (true "
            f"{format_number(self.fixed_true_residual, '.2e')})"
        )


@eqx.filter_jit
def _accepted_counts(ash: AdaptiveShooting, Us):
    """The accepted steps per reference interval at each control of `Us` (S, N, m)."""
    return jax.vmap(lambda U: _solve(ash, U, False)[1][1])(Us)


def adaptive_descent(
    ash: AdaptiveShooting,
    U0: RealArrayLike | None = None,
    *,
    max_steps: int = 200,
    outer_iterations: int = 3,
    step: str = "armijo",
    alpha0: float = 1.0,
    max_backtracks: int = 30,
    delta: float = FD_DELTA,
) -> AdaptiveDescent:
    r"""The effect of S on a descent run (section 6.5).

    - *inside*: `max_steps` descent steps on the adaptive map $\hat E$ with the
      frozen gradient, the grid re-chosen by the controller at every evaluation
      (what a direct shooting code with an adaptive integrator does);
    - *fixed*: `outer_iterations` times, choose the grid $\pi_j = \pi(U_j)$ by the
      controller at the current iterate, then run `max_steps` descent steps on the
      fixed-grid map $E_{\pi_j}$ (the paper: vary the grid in the outer
      algorithm, not inside the inner one).

    Steps are in the $L^2$ metric, $U \leftarrow U - \alpha\,\nabla E / h_k$:
    `step="armijo"` (backtracking from `alpha0`, at most `max_backtracks` halvings)
    or `step="constant"` ($\alpha$ = `alpha0`). Both runs are `flow.descend`.

    **Returns:** an [`AdaptiveDescent`][flow.AdaptiveDescent] with both residual
    histories and the true (finite-difference) residuals at the ends.
    """
    instance(ash, "ash", AdaptiveShooting, "from flow.adaptive_shoot")
    U0 = ash.zeros() if U0 is None else ash.check_controls(U0, "U0")
    max_steps = positive_int(max_steps, "max_steps")
    outer_iterations = positive_int(outer_iterations, "outer_iterations")
    max_backtracks = positive_int(max_backtracks, "max_backtracks")
    alpha0 = positive_float(alpha0, "alpha0")
    choice(step, "step", ("armijo", "constant"))
    rule = (
        Armijo(alpha0=alpha0, beta=0.5, c1=1e-4, max_backtracks=max_backtracks)
        if step == "armijo"
        else Constant(alpha0)
    )

    def run(sh, U, save):
        return descend(
            sh,
            U,
            metric="hamiltonian",
            step=rule,
            max_steps=max_steps,
            save_iterates=save,
            throw=False,
        )

    inside = run(ash, U0, True)
    acc = np.asarray(_accepted_counts(ash, inside.iterates))
    changes = int(np.sum(np.any(acc[1:] != acc[:-1], axis=1)))
    true_in = full_gradient(ash, inside.U, delta=delta)
    h = np.asarray(ash.steps)[:, None]
    U = U0
    hist = []
    outer = []
    fm = None
    for _ in range(outer_iterations):
        grid = ash.adaptive_grid(U)
        fm = frozen_grid(ash, grid.times, grid.owner)
        trace = run(fm, U, False)
        U = trace.U
        r = np.asarray(trace.hamiltonian_norm)
        hist.append(r if not hist else r[1:])
        outer.append((grid.num_steps, float(r[-1]), int(trace.num_fallback_steps)))
    assert fm is not None
    D1, D2 = _central_pair(fm, U, jnp.asarray(delta))
    fixed_fd = _fd_result(D1, D2, float(fm.objective(U)), delta)
    return AdaptiveDescent(
        tol=float(ash.tol),
        alpha0=alpha0,
        step=step,
        max_steps=max_steps,
        inside_residual=np.asarray(inside.hamiltonian_norm),
        inside_cost=np.asarray(inside.cost),
        inside_failures=int(inside.num_fallback_steps),
        inside_grid_changes=changes,
        inside_true_residual=_inf((true_in.gradient / h)[true_in.smooth]),
        fixed_residual=np.concatenate(hist),
        fixed_outer=tuple(outer),
        fixed_true_residual=_inf((fixed_fd.gradient / h)[fixed_fd.smooth]),
    )
