r"""The term S of eq. (59), measured: the full derivative of the adaptive shooting
map by careful central differences (the grid re-adapted at every evaluation),
against the frozen-grid gradient that differentiating through the solver gives
(paper section 6.5; the map itself is in `flow/_adaptive.py`)."""

from __future__ import annotations

import math
from typing import Any

import diffrax
import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._adaptive import (
    AdaptiveShooting,
    adaptive_shoot,
    frozen_grid,
    uniform_grid,
    value_and_grad,
)
from ._custom_types import RealArrayLike
from ._encoding import format_number
from ._finite_differences import central_differences
from ._problem import OptimalControlProblem
from ._results import AbstractRecord
from ._shooting import AbstractShooting
from ._validation import instance, positive_float


#: The default finite-difference step of the full derivative (units of U; scaled
#: by max(1, |U_j|)).
FD_DELTA = 1e-6

#: FD noise bound factor: two central differences that differ by more than
#: `FD_NOISE_FACTOR * eps * |E| / (delta/2)` straddle a jump of the adaptive map.
FD_NOISE_FACTOR = 100.0


@eqx.filter_jit
def _central_pair(sh: AbstractShooting, U: Array, delta: Array):
    """Central differences of `sh.objective` at the relative steps delta and delta/2
    (`central_differences`, the package's one finite-difference gradient)."""
    f = sh.objective
    return central_differences(f, U, delta), central_differences(f, U, 0.5 * delta)


class FDGradient(AbstractRecord):
    r"""A careful central-difference derivative of a (possibly discontinuous) map.

    $D(\delta) = (E(U + \delta e_j) - E(U - \delta e_j))/(2\delta)$ with
    $\delta_j = $ `delta` $\cdot\max(1, |U_j|)$, computed at $\delta$ and $\delta/2$.
    Inside a smooth piece of the map both agree to the rounding error
    $\approx \epsilon|E|/\delta$ (the truncation error $\delta^2|E'''|/6$ is far
    below it at $\delta = 10^{-6}$). A component whose two values differ by more
    than `noise_bound` $= 100\,\epsilon|E|/(\delta/2)$ has a jump of the map (a
    change of the grid's topology: a step accepted instead of rejected, one step
    more or less) inside its stencil; it is flagged in `smooth` and its value is
    not a derivative.

    **Fields:** `gradient` ($D(\delta)$, `(N, m)`), `half_step` ($D(\delta/2)$),
    `smooth` (bool, `(N, m)`), `noise` ($|D(\delta) - D(\delta/2)|$), `noise_bound`,
    `delta`, `cost`.
    """

    gradient: np.ndarray
    half_step: np.ndarray
    smooth: np.ndarray
    noise: np.ndarray
    noise_bound: float
    delta: float
    cost: float

    def _summary(self) -> str:
        return f"{int(np.sum(~self.smooth))} jumps, noise bound {self.noise_bound:.1e}"


def _fd_result(D1, D2, cost: float, delta: float) -> FDGradient:
    D1, D2 = np.asarray(D1), np.asarray(D2)
    noise = np.abs(D1 - D2)
    eps = float(np.finfo(np.float64).eps)
    bound = FD_NOISE_FACTOR * eps * max(abs(cost), 1e-300) / (0.5 * delta)
    return FDGradient(
        gradient=D1,
        half_step=D2,
        smooth=noise <= bound,
        noise=noise,
        noise_bound=float(bound),
        delta=float(delta),
        cost=float(cost),
    )


def full_gradient(
    ash: AdaptiveShooting, U: RealArrayLike, *, delta: float = FD_DELTA
) -> FDGradient:
    r"""The full derivative $d\hat E/dU$ = frozen + S of the adaptive map (59), by
    central differences of $\hat E$ with the grid re-adapted at each evaluation
    (see [`FDGradient`][flow.FDGradient] for the step choice and the noise test).
    Costs $4Nm$ adaptive solves (batched).
    """
    instance(ash, "ash", AdaptiveShooting, "from flow.adaptive_shoot")
    U = ash.check_controls(U)
    delta = positive_float(delta, "delta")
    D1, D2 = _central_pair(ash, U, jnp.asarray(delta))
    return _fd_result(D1, D2, float(ash.cost(U)), delta)


# ------------------------------------------------------------ S report
def _inf(x) -> float:
    x = np.asarray(x)
    return float(np.max(np.abs(x))) if x.size else 0.0


class STerm(AbstractRecord):
    r"""The term S of eq. (59) at one control $U$ and one tolerance.

    All norms are $\infty$-norms over the components; "full" is the finite-difference
    derivative of the adaptive map ([`full_gradient`][]), restricted to the
    components where it is smooth.

    **Fields:**

    - `tol`, `delta`, `cost` ($\hat E(U)$), `num_steps`, `num_rejected` (of $\pi(U)$);
    - `gradient_norm`: $\|g_{frozen}\|$;
    - `s_norm`: $\|S\| = \|g_{full} - g_{frozen}\|$; `s_relative` $= \|S\|/\|g_{frozen}\|$;
      `s_hamiltonian` $= \max_k |S_k|/h_k$ (its size on the Hamiltonian residual);
    - `fd_noise`: the largest $|D(\delta) - D(\delta/2)|$ over smooth components,
      `fd_noise_bound`, `discontinuous`: the number of components whose stencil
      straddles a jump of $\hat E$;
    - `rerun_difference`: $\|g_{frozen} - \nabla E_{\pi}\|$ with $E_\pi$ the same
      solver re-run on the frozen grid $\pi(U)$ (rounding);
    - `fixed_s_norm`: the S term of the frozen-grid map $E_\pi$ ($\|D_\pi(\delta) -
      \nabla E_\pi\|$: zero up to the finite-difference error), `fixed_fd_noise`;
    - `uniform_steps`, `frozen_vs_uniform`, `full_vs_uniform`: against the exact
      gradient of a fixed uniform grid with at least as many steps
      (`ceil(num_steps/N)` per reference interval): a discretisation difference;
    - `frozen`, `full`, `s`: the arrays, `(N, m)` (`s` is NaN where not smooth).
    """

    tol: float
    delta: float
    cost: float
    num_steps: int
    num_rejected: int
    gradient_norm: float
    s_norm: float
    s_relative: float
    s_hamiltonian: float
    fd_noise: float
    fd_noise_bound: float
    discontinuous: int
    rerun_difference: float
    fixed_s_norm: float
    fixed_fd_noise: float
    uniform_steps: int
    frozen_vs_uniform: float
    full_vs_uniform: float
    frozen: np.ndarray
    full: np.ndarray
    s: np.ndarray

    def _summary(self) -> str:
        return (
            f"tol={self.tol:.0e}, {self.num_steps} steps, |g|={self.gradient_norm:.2e}, "
            f"|S|={format_number(self.s_norm, '.2e')} (fixed grid "
            f"{format_number(self.fixed_s_norm, '.1e')}), {self.discontinuous} jumps"
        )


def s_term(ash: AdaptiveShooting, U: RealArrayLike, *, delta: float = FD_DELTA) -> STerm:
    r"""Measure the term S of (59) at `U`: frozen-grid gradient, full derivative
    (finite differences of the adaptive map), their difference, the same for the
    frozen-grid map (where S must vanish), and a fixed uniform grid's gradient.

    **Arguments:** `ash`, an [`AdaptiveShooting`][flow.AdaptiveShooting]; `U`,
    `(N, m)`; `delta`, the finite-difference step ([`FDGradient`][flow.FDGradient]).

    **Returns:** an [`STerm`][flow.STerm].
    """
    instance(ash, "ash", AdaptiveShooting, "from flow.adaptive_shoot")
    U = ash.check_controls(U)
    delta = positive_float(delta, "delta")
    g_frozen = np.asarray(ash.frozen_gradient(U))
    full = full_gradient(ash, U, delta=delta)
    grid = ash.adaptive_grid(U)
    smooth = full.smooth
    S = np.where(smooth, full.gradient - g_frozen, np.nan)
    h = np.asarray(ash.steps)[:, None]
    fm = frozen_grid(ash, grid.times, grid.owner)
    _, g_rerun = value_and_grad(fm, U)
    g_rerun = np.asarray(g_rerun)
    D1f, D2f = _central_pair(fm, U, jnp.asarray(delta))
    fixed = _fd_result(D1f, D2f, full.cost, delta)
    substeps = max(1, -(-grid.num_steps // ash.N))
    _, g_uni = value_and_grad(uniform_grid(ash, substeps), U)
    g_uni = np.asarray(g_uni)
    gn = _inf(g_frozen)
    s_norm = _inf(S[smooth])
    return STerm(
        tol=float(ash.tol),
        delta=delta,
        cost=full.cost,
        num_steps=grid.num_steps,
        num_rejected=int(grid.rejected.sum()),
        gradient_norm=gn,
        s_norm=s_norm,
        s_relative=s_norm / gn if gn > 0 else math.inf,
        s_hamiltonian=_inf((S / h)[smooth]),
        fd_noise=_inf(full.noise[smooth]),
        fd_noise_bound=full.noise_bound,
        discontinuous=int(np.sum(~smooth)),
        rerun_difference=_inf(g_frozen - g_rerun),
        fixed_s_norm=_inf(fixed.gradient - g_rerun),
        fixed_fd_noise=_inf(fixed.noise),
        uniform_steps=substeps * ash.N,
        frozen_vs_uniform=_inf(g_frozen - g_uni),
        full_vs_uniform=_inf((full.gradient - g_uni)[smooth]),
        frozen=g_frozen,
        full=full.gradient,
        s=S,
    )


class STermStudy(AbstractRecord):
    """[`s_term`][flow.s_term] at several tolerances (one [`STerm`][flow.STerm] per row)."""

    rows: tuple[STerm, ...]

    def _record(self, include_arrays: bool) -> dict[str, Any]:
        return dict(rows=[r.to_dict(include_arrays=include_arrays) for r in self.rows])

    def table(self) -> str:
        """A fixed-width text table of the scalar fields."""
        head = (
            f"{'tol':>8} {'steps':>6} {'|g|':>9} {'|S|':>9} {'|S|/|g|':>9} "
            f"{'FD noise':>9} {'jumps':>5} {'S fixed':>9} {'frz-unif':>9}"
        )
        lines = [head]
        for r in self.rows:
            lines.append(
                f"{r.tol:8.0e} {r.num_steps:6d} {r.gradient_norm:9.2e} {r.s_norm:9.2e} "
                f"{r.s_relative:9.2e} {r.fd_noise:9.1e} {r.discontinuous:5d} "
                f"{r.fixed_s_norm:9.1e} {r.frozen_vs_uniform:9.2e}"
            )
        return "\n".join(lines)

    def _summary(self) -> str:
        return "\n" + self.table() + "\n"


def s_term_study(
    problem: OptimalControlProblem,
    N_or_grid: int | RealArrayLike,
    U: RealArrayLike,
    *,
    tols: RealArrayLike,
    solver: diffrax.AbstractERK | None = None,
    max_steps: int = 512,
    delta: float = FD_DELTA,
) -> STermStudy:
    r"""[`s_term`][flow.s_term] at each tolerance in `tols` (the same compiled kernels:
    `tol` is traced). `U` of shape `(N, m)`; other arguments as in
    [`adaptive_shoot`][flow.adaptive_shoot].

    **Returns:** an [`STermStudy`][flow.STermStudy].
    """
    tols = [positive_float(float(t), "tols") for t in np.atleast_1d(np.asarray(tols))]
    if not tols:
        raise ValueError("`tols` must hold at least one tolerance.")
    rows = []
    for tol in tols:
        ash = adaptive_shoot(problem, N_or_grid, tol=tol, solver=solver, max_steps=max_steps)
        rows.append(s_term(ash, U, delta=delta))
    return STermStudy(rows=tuple(rows))
