r"""Adaptive grids and the term S of eq. (59) (paper section 6.5).

The *adaptive shooting map*: the controls are piecewise constant on a fixed
reference grid $t_0 < \dots < t_N$ (the same $U$, shape `(N, m)`, as everywhere in
this package), and the state equation is integrated on each reference interval
$[t_k, t_{k+1}]$ by a diffrax explicit Runge-Kutta solver with a
`diffrax.PIDController(rtol=tol, atol=tol)` (first step chosen by diffrax's
initial-step heuristic). The integration grid $\pi(U)$, the union of the accepted
steps, depends on $U$ (eq. (58)), and

$$\hat E(U) = E(x_N(U, \pi(U))),\qquad
  \frac{d\hat E}{dU} = \underbrace{\frac{\partial E}{\partial x_N}
  \frac{\partial x_N}{\partial U}\Big|_{\pi\ \mathrm{fixed}}}_{\text{frozen}}
  + \underbrace{\frac{\partial E}{\partial x_N}\Big[\frac{\partial\pi}{\partial U}\Big]^T
  \frac{\partial x_N}{\partial \pi}}_{S}\quad\text{(57)-(59)}.$$

- The *frozen* gradient is what differentiating through the solver gives:
  diffrax stops gradients through the step-size controller (`lax.stop_gradient`
  on the step-size factor and on the initial step), so `jax.grad` of $\hat E$ is
  exactly the gradient on the grid $\pi(U)$ held fixed. It equals (to rounding)
  the gradient of the same Runge-Kutta method re-run on the frozen grid
  ([`AdaptiveShooting.freeze`][]).
- The *full* derivative (frozen + S) is measured by central finite differences
  of $\hat E$ itself (the grid re-adapted at every evaluation), at two steps
  to detect grid-topology jumps: [`full_gradient`][flow.full_gradient] and
  [`s_term`][flow.s_term] (`flow/_s_term.py`); the effect of S on a descent run is
  [`adaptive_descent`][flow.adaptive_descent] (`flow/_adaptive_descent.py`).

This module holds the map itself: the one-step scheme of a diffrax solver, the
adaptive shooting map, and the same solver on a frozen grid.
"""

from __future__ import annotations

from typing import Any, ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ._bases import PiecewiseConstant
from ._custom_types import RealArrayLike
from ._parameterize import parameterize
from ._problem import OptimalControlProblem
from ._results import AbstractRecord
from ._schemes import AbstractScheme
from ._shooting import AbstractShooting, Shooting, shoot
from ._validation import instance, positive_float, positive_int


# ----------------------------------------------------------------- scheme
class DiffraxStep(AbstractScheme):
    r"""One step of a diffrax explicit Runge-Kutta solver as a one-step scheme
    $x_{k+1} = \Phi(x_k, u_k, h_k)$ (the control held constant; the embedded error
    estimate is discarded). A zero step returns $x$ exactly.

    Used to re-run an adaptive solve on its frozen grid with `flow.shoot`.
    **Fields:** `solver`, a `diffrax.AbstractERK` (e.g. `diffrax.Bosh3()`).
    """

    order: ClassVar[int] = 0
    name: ClassVar[str] = "diffrax"
    solver: diffrax.AbstractERK

    def step(self, f, x, u, h):
        term = diffrax.ODETerm(lambda t, y, args: f(y, u))
        zero = jnp.zeros((), dtype=x.dtype)
        state = self.solver.init(term, zero, h, x, None)
        y1, _, _, _, _ = self.solver.step(term, zero, h, x, None, state, made_jump=False)
        return y1

    def adjoint(self, f, x, u, h, lam):
        """By reverse-mode differentiation of diffrax's step (a general tableau's
        stage-by-stage adjoint is not written out here)."""
        _, vjp = jax.vjp(lambda x_, u_: self.step(f, x_, u_, h), x, u)
        return vjp(lam)


def _check_solver(solver: Any) -> diffrax.AbstractERK:
    if not isinstance(solver, diffrax.AbstractERK) or not isinstance(
        solver, diffrax.AbstractAdaptiveSolver
    ):
        raise TypeError(
            "`solver` must be an explicit diffrax Runge-Kutta solver with an embedded "
            f"error estimate (e.g. diffrax.Bosh3(), diffrax.Tsit5()); got {solver!r}."
        )
    return solver


# ------------------------------------------------------------ the map
class AdaptiveGrid(AbstractRecord):
    r"""The integration grid $\pi(U)$ chosen by the adaptive solve.

    **Fields:** `times` (all accepted step times, $t_0$ first, increasing),
    `owner` (for each step, the reference interval $k$ that holds it),
    `accepted`, `rejected` (step counts per reference interval, shape `(N,)`).
    """

    times: np.ndarray
    owner: np.ndarray
    accepted: np.ndarray
    rejected: np.ndarray

    @property
    def num_steps(self) -> int:
        """The number of accepted steps (len(times) - 1)."""
        return int(self.times.size - 1)

    def _record(self, include_arrays: bool) -> dict[str, Any]:
        return dict(
            num_steps=self.num_steps,
            times=self.times,
            owner=self.owner,
            accepted=self.accepted,
            rejected=self.rejected,
        )

    def _summary(self) -> str:
        return (
            f"{self.num_steps} steps on {self.accepted.size} intervals, "
            f"{int(self.rejected.sum())} rejected"
        )


class AdaptiveShooting(AbstractShooting):
    r"""The adaptive shooting map $\hat E(U) = E(x_N(U, \pi(U)))$ (eqs. (57), (58)).

    Built by [`adaptive_shoot`][flow.adaptive_shoot]. An
    [`AbstractShooting`][flow.AbstractShooting]: [`descend`][flow.descend] and
    [`gradient_flow`][flow.gradient_flow] run on it (with the frozen-grid gradient
    that differentiating through the solver gives). Controls $U$, shape `(N, m)`, are piecewise
    constant on the reference grid; each reference interval is integrated by
    `solver` under `diffrax.PIDController(rtol=tol, atol=tol)` with at most
    `max_steps` steps. The running cost, if any, is folded into the state as
    everywhere in the package.

    **Fields:** `problem`, `reference` (a [`Shooting`][flow.Shooting] on the
    reference grid, used for validation), `solver`, `tol`, `max_steps`.
    """

    problem: OptimalControlProblem
    reference: Shooting
    solver: diffrax.AbstractERK
    tol: Float[Array, ""]
    max_steps: int = eqx.field(static=True)
    forward_differentiable: ClassVar[bool] = False

    @property
    def grid(self) -> Float[Array, " Np1"]:
        """The reference (control) grid."""
        return self.reference.grid

    @property
    def control_dim(self) -> int:
        """m."""
        return self.reference.control_dim

    def objective(self, U: Float[Array, "N m"]) -> Float[Array, ""]:
        r"""$\hat E(U)$ unchecked and traceable (see
        [`AbstractShooting.objective`][flow.AbstractShooting.objective])."""
        return _cost_impl(self, U)

    def hessian_vector_product(self, U: Any, V: Any) -> Float[Array, "N m"]:
        """Not available: forward-over-reverse differentiation does not pass through
        diffrax's adaptive step-size loop. Raises `NotImplementedError`."""
        raise NotImplementedError(
            "AdaptiveShooting has no Hessian-vector product (diffrax's adaptive loop is "
            "not forward-differentiable after reverse mode); use a first-order metric "
            "(identity, hamiltonian) or freeze(U) for a fixed-grid Shooting."
        )

    def cost(self, U: Any) -> Float[Array, ""]:
        r"""$\hat E(U)$, with the grid chosen by the controller.

        **Raises:** an `EquinoxRuntimeError` when a reference interval needs more than
        `max_steps` steps (or the solver fails).
        """
        return _cost(self, self.check_controls(U))

    def frozen_gradient(self, U: Any) -> Float[Array, "N m"]:
        r"""The gradient with the grid held fixed, the first term of (59):
        `jax.grad` through diffrax, whose controller stops gradients through the
        step sizes.

        **Raises:** an `EquinoxRuntimeError` when a reference interval needs more than
        `max_steps` steps (or the solver fails), as [`cost`][] does.
        """
        return _grad(self, self.check_controls(U))

    def adaptive_grid(self, U: Any) -> AdaptiveGrid:
        r"""The grid $\pi(U)$ (accepted steps) and the step counts."""
        ts, acc, rej = _grid(self, self.check_controls(U))
        ts = np.asarray(ts)
        owner = np.repeat(np.arange(ts.shape[0]), ts.shape[1]).reshape(ts.shape)
        keep = np.isfinite(ts)
        times = np.concatenate([[float(self.grid[0])], ts[keep]])
        return AdaptiveGrid(
            times=times,
            owner=owner[keep],
            accepted=np.asarray(acc),
            rejected=np.asarray(rej),
        )

    def freeze(self, U: Any) -> Shooting:
        r"""The fixed-grid shooting problem on $\pi(U)$: `flow.shoot` on the frozen
        grid with the same Runge-Kutta step ([`DiffraxStep`][]), parameterized
        by blocks of the reference intervals
        (`flow.controls.PiecewiseConstant(reference grid)`), so its controls are
        $C$ = `U.reshape(1, -1)`. Its gradient equals
        [`frozen_gradient`][flow.AdaptiveShooting.frozen_gradient] (to rounding) and its
        S term is zero."""
        g = self.adaptive_grid(U)
        inner = shoot(self.problem, g.times, DiffraxStep(self.solver))
        basis = PiecewiseConstant(tuple(float(t) for t in np.asarray(self.grid)))
        return parameterize(inner, basis)

    def __repr__(self) -> str:
        return (
            f"AdaptiveShooting({self.problem.name!r}, {type(self.solver).__name__}, "
            f"tol={float(self.tol):.1e}, N={self.N})"
        )


def adaptive_shoot(
    problem: OptimalControlProblem,
    N_or_grid: int | RealArrayLike,
    *,
    tol: float,
    solver: diffrax.AbstractERK | None = None,
    max_steps: int = 512,
) -> AdaptiveShooting:
    r"""The adaptive shooting map of `problem` (eqs. (57), (58)).

    **Arguments:**

    - `problem`: an [`OptimalControlProblem`][flow.OptimalControlProblem];
    - `N_or_grid`: the reference (control) grid, as for [`shoot`][flow.shoot];
    - `tol`: the controller's `rtol = atol` (required: no hidden default);
    - `solver`: an explicit diffrax Runge-Kutta solver with an error estimate,
      default `diffrax.Bosh3()` (3rd order, embedded 2nd);
    - `max_steps`: the step limit per reference interval.

    **Returns:** an [`AdaptiveShooting`][flow.AdaptiveShooting].
    """
    instance(problem, "problem", OptimalControlProblem)
    if problem.control_bounds is not None:
        raise ValueError(
            "`problem` has control bounds; adaptive_shoot does not support them yet "
            "(use flow.shoot)."
        )
    solver = _check_solver(diffrax.Bosh3() if solver is None else solver)
    tol = positive_float(tol, "tol")
    max_steps = positive_int(max_steps, "max_steps")
    reference = shoot(problem, N_or_grid)
    return AdaptiveShooting(
        problem=problem,
        reference=reference,
        solver=solver,
        tol=jnp.asarray(tol, dtype=jnp.float64),
        max_steps=int(max_steps),
    )


def _interval(ash: AdaptiveShooting, x, u, ta, tb, save_steps: bool):
    problem = ash.problem

    def vf(t, y, args):
        del t, args
        return problem.augmented_dynamics(y, u)

    return diffrax.diffeqsolve(
        diffrax.ODETerm(vf),
        ash.solver,
        ta,
        tb,
        None,
        x,
        stepsize_controller=diffrax.PIDController(rtol=ash.tol, atol=ash.tol),
        saveat=diffrax.SaveAt(t1=True, steps=save_steps),
        max_steps=ash.max_steps,
        throw=False,
    )


def _solve(ash: AdaptiveShooting, U: Array, save_steps: bool):
    grid = ash.grid

    def body(x, inp):
        u, ta, tb = inp
        sol = _interval(ash, x, u, ta, tb, save_steps)
        ok = sol.result == diffrax.RESULTS.successful
        x_new = sol.ys[-1] if not save_steps else sol.ys[jnp.sum(jnp.isfinite(sol.ts)) - 1]
        out = (ok, sol.stats["num_accepted_steps"], sol.stats["num_rejected_steps"])
        if save_steps:
            out = out + (sol.ts,)
        return x_new, out

    return jax.lax.scan(body, ash.problem.augmented_x0(), (U, grid[:-1], grid[1:]))


def _cost_aux(ash: AdaptiveShooting, U: Array):
    xN, (ok, acc, _) = _solve(ash, U, False)
    value = ash.problem.augmented_endpoint_cost(xN)
    value = eqx.error_if(
        value,
        ~jnp.all(ok),
        "AdaptiveShooting: a reference interval needed more than `max_steps` steps "
        "(or the solver failed); raise max_steps or loosen tol.",
    )
    return value, acc


def _cost_impl(ash: AdaptiveShooting, U: Array) -> Array:
    return _cost_aux(ash, U)[0]


_cost = eqx.filter_jit(_cost_impl)


@eqx.filter_jit
def _grad(ash: AdaptiveShooting, U: Array) -> Array:
    # The solver's success flag is checked on the gradient itself: under jax.grad the
    # value (and an eqx.error_if attached to it) is dead code, so a failed interval
    # would otherwise return a silent, wrong gradient.
    def cost_and_ok(U):
        xN, (ok, _, _) = _solve(ash, U, False)
        return ash.problem.augmented_endpoint_cost(xN), jnp.all(ok)

    g, ok = jax.grad(cost_and_ok, has_aux=True)(U)
    return eqx.error_if(
        g,
        ~ok,
        "AdaptiveShooting: a reference interval needed more than `max_steps` steps "
        "(or the solver failed); raise max_steps or loosen tol.",
    )


@eqx.filter_jit
def _grid(ash: AdaptiveShooting, U: Array):
    _, (ok, acc, rej, ts) = _solve(ash, U, True)
    ts = eqx.error_if(
        ts, ~jnp.all(ok), "AdaptiveShooting: max_steps reached; raise max_steps or loosen tol."
    )
    return ts, acc, rej


# ------------------------------------------------------ fixed-grid maps
class FrozenGrid(AbstractShooting):
    r"""The adaptive map's solver on a fixed grid $\pi$ of sub-steps, with the controls
    on the reference grid: an [`AbstractShooting`][flow.AbstractShooting] whose `grid`
    is the reference grid (so the Hamiltonian metric and residual are those of
    $U$), and whose cost is $E_\pi(U)$. The sub-steps are padded with zero steps
    (exact identities) to a power-of-two length: no recompilation per grid size.
    Its S term is zero. Made by `frozen_grid` (private to the adaptive modules)."""

    problem: OptimalControlProblem
    solver: diffrax.AbstractERK
    grid: Float[Array, " Np1"]
    sub_steps: Float[Array, " M"]
    owner: Int[Array, " M"]

    @property
    def control_dim(self) -> int:
        """m."""
        return self.problem.control_dim

    def objective(self, U):
        r"""$E_\pi(U)$."""
        return self.problem.augmented_endpoint_cost(self.final_state(U))

    def final_state(self, U):
        step = DiffraxStep(self.solver)
        f = self.problem.augmented_dynamics

        def body(x, inp):
            k, h = inp
            return step.step(f, x, U[k], h), None

        xN, _ = jax.lax.scan(body, self.problem.augmented_x0(), (self.owner, self.sub_steps))
        return xN


def frozen_grid(ash: AdaptiveShooting, times: np.ndarray, owner: np.ndarray) -> FrozenGrid:
    M = times.size - 1
    size = 1 << max(M - 1, 1).bit_length()  # next power of two >= M
    h = np.zeros(size)
    h[:M] = np.diff(times)
    own = np.full(size, ash.N - 1, dtype=np.int32)
    own[:M] = owner
    return FrozenGrid(
        problem=ash.problem,
        solver=ash.solver,
        grid=ash.grid,
        sub_steps=jnp.asarray(h),
        owner=jnp.asarray(own),
    )


def uniform_grid(ash: AdaptiveShooting, substeps: int) -> FrozenGrid:
    g = np.asarray(ash.grid)
    frac = np.arange(substeps) / substeps
    starts = (g[:-1, None] + np.diff(g)[:, None] * frac[None, :]).reshape(-1)
    times = np.concatenate([starts, [g[-1]]])
    owner = np.repeat(np.arange(ash.N), substeps)
    return frozen_grid(ash, times, owner)


#: (E, grad E) of any AbstractShooting, compiled.
value_and_grad = eqx.filter_jit(jax.value_and_grad(lambda sh, U: sh.objective(U), argnums=1))
