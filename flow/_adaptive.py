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
  to detect grid-topology jumps (see [`full_gradient`][]).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ._controls import PiecewiseConstant, parameterize
from ._problem import OptimalControlProblem
from ._schemes import AbstractScheme
from ._shooting import Shooting, shoot


#: The default finite-difference step of the full derivative (units of U; scaled
#: by max(1, |U_j|)).
FD_DELTA = 1e-6

#: FD noise bound factor: two central differences that differ by more than
#: `FD_NOISE_FACTOR * eps * |E| / (delta/2)` straddle a jump of the adaptive map.
FD_NOISE_FACTOR = 100.0


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
class AdaptiveGrid(eqx.Module):
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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary."""
        return dict(
            times=self.times.tolist(),
            owner=self.owner.tolist(),
            accepted=self.accepted.tolist(),
            rejected=self.rejected.tolist(),
        )

    def __repr__(self) -> str:
        return (
            f"AdaptiveGrid({self.num_steps} steps on {self.accepted.size} intervals, "
            f"{int(self.rejected.sum())} rejected)"
        )


class AdaptiveShooting(eqx.Module):
    r"""The adaptive shooting map $\hat E(U) = E(x_N(U, \pi(U)))$ (eqs. (57), (58)).

    Built by [`adaptive_shoot`][]. Controls $U$, shape `(N, m)`, are piecewise
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

    @property
    def grid(self) -> Float[Array, " Np1"]:
        """The reference (control) grid."""
        return self.reference.grid

    @property
    def N(self) -> int:
        """The number of reference intervals (controls)."""
        return self.reference.N

    @property
    def steps(self) -> Float[Array, " N"]:
        r"""The reference steps $h_k$."""
        return self.reference.steps

    @property
    def control_dim(self) -> int:
        """m."""
        return self.reference.control_dim

    @property
    def control_shape(self) -> tuple[int, int]:
        """`(N, m)`."""
        return self.reference.control_shape

    def zeros(self) -> Float[Array, "N m"]:
        """The zero control."""
        return self.reference.zeros()

    def check_controls(self, U: Any, name: str = "U") -> Float[Array, "N m"]:
        """`U` as float64 of shape `(N, m)`, or a `TypeError`/`ValueError` naming `name`."""
        return self.reference.check_controls(U, name)

    def cost(self, U: Any) -> Float[Array, ""]:
        r"""$\hat E(U)$, with the grid chosen by the controller.

        **Raises:** an `EquinoxRuntimeError` when a reference interval needs more than
        `max_steps` steps (or the solver fails).
        """
        return _cost(self, self.check_controls(U))

    def frozen_gradient(self, U: Any) -> Float[Array, "N m"]:
        r"""The gradient with the grid held fixed, the first term of (59):
        `jax.grad` through diffrax, whose controller stops gradients through the
        step sizes."""
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
        [`frozen_gradient`][] (to rounding) and its S term is zero."""
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
    N_or_grid: Any,
    *,
    tol: float,
    solver: Any = None,
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

    **Returns:** an [`AdaptiveShooting`][].
    """
    if not isinstance(problem, OptimalControlProblem):
        raise TypeError(
            f"`problem` must be an OptimalControlProblem; got {type(problem).__name__}."
        )
    solver = _check_solver(diffrax.Bosh3() if solver is None else solver)
    tol = _positive_float("tol", tol)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int | np.integer):
        raise TypeError(f"`max_steps` must be an integer >= 1; got {max_steps!r}.")
    if max_steps < 1:
        raise ValueError(f"`max_steps` must be >= 1; got {max_steps}.")
    reference = shoot(problem, N_or_grid)
    return AdaptiveShooting(
        problem=problem,
        reference=reference,
        solver=solver,
        tol=jnp.asarray(tol, dtype=jnp.float64),
        max_steps=int(max_steps),
    )


def _positive_float(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
        raise TypeError(f"`{name}` must be a positive number; got {v!r}.")
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"`{name}` must be a positive finite number; got {v!r}.")
    return float(v)


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
    return jax.grad(_cost_impl, argnums=1)(ash, U)


@eqx.filter_jit
def _grid(ash: AdaptiveShooting, U: Array):
    _, (ok, acc, rej, ts) = _solve(ash, U, True)
    ts = eqx.error_if(
        ts, ~jnp.all(ok), "AdaptiveShooting: max_steps reached; raise max_steps or loosen tol."
    )
    return ts, acc, rej


# ------------------------------------------------------ fixed-grid maps
class _FixedMap(eqx.Module):
    """The same Runge-Kutta method on a fixed grid, padded with zero steps (which
    are exact identities) to a static length: no recompilation per grid size."""

    problem: OptimalControlProblem
    solver: diffrax.AbstractERK
    sub_steps: Float[Array, " M"]
    owner: Int[Array, " M"]

    def final_state(self, U):
        step = DiffraxStep(self.solver)
        f = self.problem.augmented_dynamics

        def body(x, inp):
            k, h = inp
            return step.step(f, x, U[k], h), None

        xN, _ = jax.lax.scan(body, self.problem.augmented_x0(), (self.owner, self.sub_steps))
        return xN


def _fixed_cost(fm: _FixedMap, U: Array) -> Array:
    return fm.problem.augmented_endpoint_cost(fm.final_state(U))


def _fixed_map(ash: AdaptiveShooting, times: np.ndarray, owner: np.ndarray) -> _FixedMap:
    M = times.size - 1
    size = 1 << max(M - 1, 1).bit_length()  # next power of two >= M
    h = np.zeros(size)
    h[:M] = np.diff(times)
    own = np.full(size, ash.N - 1, dtype=np.int32)
    own[:M] = owner
    return _FixedMap(
        problem=ash.problem,
        solver=ash.solver,
        sub_steps=jnp.asarray(h),
        owner=jnp.asarray(own),
    )


def _uniform_map(ash: AdaptiveShooting, substeps: int) -> _FixedMap:
    g = np.asarray(ash.grid)
    frac = np.arange(substeps) / substeps
    starts = (g[:-1, None] + np.diff(g)[:, None] * frac[None, :]).reshape(-1)
    times = np.concatenate([starts, [g[-1]]])
    owner = np.repeat(np.arange(ash.N), substeps)
    return _fixed_map(ash, times, owner)


_fixed_value_and_grad = eqx.filter_jit(jax.value_and_grad(_fixed_cost, argnums=1))


# ---------------------------------------------------- finite differences
def _central_pair(cost_fn, obj, U: Array, delta: Array):
    """Central differences at steps delta_j and delta_j/2 for every component,
    delta_j = delta * max(1, |U_j|), dividing by the steps actually taken."""
    flat = U.reshape(-1)
    n = flat.size
    d1 = delta * jnp.maximum(1.0, jnp.abs(flat))
    eye = jnp.eye(n, dtype=flat.dtype)
    pert = jnp.concatenate(
        [
            flat[None] + eye * d1[None],
            flat[None] - eye * d1[None],
            flat[None] + eye * (0.5 * d1)[None],
            flat[None] - eye * (0.5 * d1)[None],
        ]
    )
    values = jax.lax.map(lambda v: cost_fn(obj, v.reshape(U.shape)), pert, batch_size=64)
    up1, dn1, up2, dn2 = values[:n], values[n : 2 * n], values[2 * n : 3 * n], values[3 * n :]
    taken1 = (flat + d1) - (flat - d1)
    taken2 = (flat + 0.5 * d1) - (flat - 0.5 * d1)
    return ((up1 - dn1) / taken1).reshape(U.shape), ((up2 - dn2) / taken2).reshape(U.shape)


_fd_adaptive = eqx.filter_jit(lambda ash, U, d: _central_pair(_cost_impl, ash, U, d))
_fd_fixed = eqx.filter_jit(lambda fm, U, d: _central_pair(_fixed_cost, fm, U, d))


class FDGradient(eqx.Module):
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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary."""
        return dict(
            gradient=self.gradient.tolist(),
            half_step=self.half_step.tolist(),
            smooth=self.smooth.tolist(),
            noise=self.noise.tolist(),
            noise_bound=self.noise_bound,
            delta=self.delta,
            cost=self.cost,
        )


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


def full_gradient(ash: AdaptiveShooting, U: Any, *, delta: float = FD_DELTA) -> FDGradient:
    r"""The full derivative $d\hat E/dU$ = frozen + S of the adaptive map (59), by
    central differences of $\hat E$ with the grid re-adapted at each evaluation
    (see [`FDGradient`][] for the step choice and the noise test). Costs $4Nm$
    adaptive solves (one vmapped batch).
    """
    if not isinstance(ash, AdaptiveShooting):
        raise TypeError(f"`ash` must be an AdaptiveShooting; got {type(ash).__name__}.")
    U = ash.check_controls(U)
    delta = _positive_float("delta", delta)
    D1, D2 = _fd_adaptive(ash, U, jnp.asarray(delta))
    return _fd_result(D1, D2, float(ash.cost(U)), delta)


# ------------------------------------------------------------ S report
def _inf(x) -> float:
    x = np.asarray(x)
    return float(np.max(np.abs(x))) if x.size else 0.0


class STerm(eqx.Module):
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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary (arrays as lists, NaN as None)."""
        out: dict[str, Any] = {}
        for f in self.__dataclass_fields__:
            v = getattr(self, f)
            if isinstance(v, np.ndarray):
                v = [[None if not np.isfinite(x) else float(x) for x in row] for row in v]
            out[f] = v
        return out

    def __repr__(self) -> str:
        return (
            f"STerm(tol={self.tol:.0e}: {self.num_steps} steps, |g|={self.gradient_norm:.2e}, "
            f"|S|={self.s_norm:.2e} (fixed grid {self.fixed_s_norm:.1e}), "
            f"{self.discontinuous} jumps)"
        )


def s_term(ash: AdaptiveShooting, U: Any, *, delta: float = FD_DELTA) -> STerm:
    r"""Measure the term S of (59) at `U`: frozen-grid gradient, full derivative
    (finite differences of the adaptive map), their difference, the same for the
    frozen-grid map (where S must vanish), and a fixed uniform grid's gradient.

    **Arguments:** `ash`, an [`AdaptiveShooting`][]; `U`, `(N, m)`; `delta`, the
    finite-difference step ([`FDGradient`][]).

    **Returns:** an [`STerm`][].
    """
    if not isinstance(ash, AdaptiveShooting):
        raise TypeError(f"`ash` must be an AdaptiveShooting; got {type(ash).__name__}.")
    U = ash.check_controls(U)
    delta = _positive_float("delta", delta)
    g_frozen = np.asarray(ash.frozen_gradient(U))
    full = full_gradient(ash, U, delta=delta)
    grid = ash.adaptive_grid(U)
    smooth = full.smooth
    S = np.where(smooth, full.gradient - g_frozen, np.nan)
    h = np.asarray(ash.steps)[:, None]
    fm = _fixed_map(ash, grid.times, grid.owner)
    _, g_rerun = _fixed_value_and_grad(fm, U)
    g_rerun = np.asarray(g_rerun)
    D1f, D2f = _fd_fixed(fm, U, jnp.asarray(delta))
    fixed = _fd_result(D1f, D2f, full.cost, delta)
    substeps = max(1, -(-grid.num_steps // ash.N))
    _, g_uni = _fixed_value_and_grad(_uniform_map(ash, substeps), U)
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


class STermStudy(eqx.Module):
    """[`s_term`][] at several tolerances (one [`STerm`][] per row)."""

    rows: tuple[STerm, ...]

    def to_dict(self) -> dict[str, Any]:
        """`{"rows": [row.to_dict(), ...]}`."""
        return dict(rows=[r.to_dict() for r in self.rows])

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

    def __repr__(self) -> str:
        return "STermStudy(\n" + self.table() + "\n)"


def s_term_study(
    problem: OptimalControlProblem,
    N_or_grid: Any,
    U: Any,
    *,
    tols: Any,
    solver: Any = None,
    max_steps: int = 512,
    delta: float = FD_DELTA,
) -> STermStudy:
    r"""[`s_term`][] at each tolerance in `tols` (the same compiled kernels: `tol`
    is traced). `U` of shape `(N, m)`; other arguments as in [`adaptive_shoot`][].

    **Returns:** an [`STermStudy`][].
    """
    tols = [_positive_float("tols", float(t)) for t in np.atleast_1d(np.asarray(tols))]
    if not tols:
        raise ValueError("`tols` must hold at least one tolerance.")
    rows = []
    for tol in tols:
        ash = adaptive_shoot(problem, N_or_grid, tol=tol, solver=solver, max_steps=max_steps)
        rows.append(s_term(ash, U, delta=delta))
    return STermStudy(rows=tuple(rows))


# ---------------------------------------------------------- descent runs
class _AdaptiveMap(eqx.Module):
    ash: AdaptiveShooting

    def value_and_grad(self, U):
        (c, acc), g = jax.value_and_grad(_cost_aux, argnums=1, has_aux=True)(self.ash, U)
        return c, g, acc

    def cost(self, U):
        return _cost_impl(self.ash, U)


class _FrozenMap(eqx.Module):
    fm: _FixedMap
    n_intervals: int = eqx.field(static=True)

    def value_and_grad(self, U):
        c, g = jax.value_and_grad(_fixed_cost, argnums=1)(self.fm, U)
        return c, g, jnp.zeros((self.n_intervals,), dtype=jnp.int64)

    def cost(self, U):
        return _fixed_cost(self.fm, U)


@eqx.filter_jit
def _descent_run(obj, U0, inv_h, alpha0, iterations: int, max_backtracks: int, armijo: bool):
    """Gradient descent in the L2 metric, D = g / h_k: a constant step alpha0, or
    the Armijo rule of flow.Armijo from alpha0 (beta = 1/2, c1 = 1e-4; no move when
    no trial is accepted)."""

    def body(carry, _):
        U, c, g, acc = carry
        D = g * inv_h
        slope = jnp.vdot(g, D)

        def cond(s):
            return (s[1] < max_backtracks) & ~s[2]

        def trial(s):
            a, j, _ = s
            ok = obj.cost(U - a * D) <= c - 1e-4 * a * slope
            return (jnp.where(ok, a, 0.5 * a), j + 1, ok)

        if armijo:
            a, _, ok = jax.lax.while_loop(cond, trial, (alpha0, 0, jnp.array(False)))
        else:
            a, ok = alpha0, jnp.array(True)
        U_new = jnp.where(ok, U - a * D, U)
        c_new, g_new, acc_new = obj.value_and_grad(U_new)
        changed = jnp.any(acc_new != acc)
        out = (c_new, jnp.max(jnp.abs(g_new * inv_h)), ok, changed)
        return (U_new, c_new, g_new, acc_new), out

    c0, g0, acc0 = obj.value_and_grad(U0)
    (U, _, _, _), (cs, rs, oks, changed) = jax.lax.scan(
        body, (U0, c0, g0, acc0), None, length=iterations
    )
    r0 = jnp.max(jnp.abs(g0 * inv_h))
    return U, jnp.concatenate([c0[None], cs]), jnp.concatenate([r0[None], rs]), oks, changed


class AdaptiveDescent(eqx.Module):
    r"""Descent on the adaptive map with the grid re-chosen at every iterate
    ("inside"), against descent with the grid fixed per outer iteration ("fixed").

    Both runs are gradient descent in the $L^2$ metric ($D = \nabla E / h_k$) with
    the Armijo rule (from `alpha0`, halving, $c_1 = 10^{-4}$, no move when no trial
    is accepted) or a constant step `alpha0`. Residuals are
    $\max_k |\nabla_{u_k} E|/h_k$ of the gradient the algorithm uses (the frozen one
    inside the adaptive run).

    **Fields:**

    - `tol`, `alpha0`, `step` (`"armijo"` or `"constant"`), `iterations` (per run;
      per outer iteration for "fixed");
    - `inside_residual`, `inside_cost`: histories (iterations+1);
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
    iterations: int
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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary."""
        return dict(
            tol=self.tol,
            alpha0=self.alpha0,
            step=self.step,
            iterations=self.iterations,
            inside_residual=self.inside_residual.tolist(),
            inside_cost=self.inside_cost.tolist(),
            inside_failures=self.inside_failures,
            inside_grid_changes=self.inside_grid_changes,
            inside_true_residual=self.inside_true_residual,
            inside_final=self.inside_final,
            fixed_residual=self.fixed_residual.tolist(),
            fixed_outer=[list(o) for o in self.fixed_outer],
            fixed_true_residual=self.fixed_true_residual,
            fixed_final=self.fixed_final,
        )

    def __repr__(self) -> str:
        return (
            f"AdaptiveDescent(tol={self.tol:.0e}: grid inside -> residual "
            f"{self.inside_final:.2e} ({self.inside_failures} failed line searches, true "
            f"{self.inside_true_residual:.2e}); grid fixed per outer iteration -> "
            f"{self.fixed_final:.2e} (true {self.fixed_true_residual:.2e}))"
        )


def adaptive_descent(
    ash: AdaptiveShooting,
    U0: Any = None,
    *,
    iterations: int = 200,
    outer_iterations: int = 3,
    step: str = "armijo",
    alpha0: float = 1.0,
    max_backtracks: int = 30,
    delta: float = FD_DELTA,
) -> AdaptiveDescent:
    r"""The effect of S on a descent run (section 6.5).

    - *inside*: `iterations` descent steps on the adaptive map $\hat E$ with the
      frozen gradient, the grid re-chosen by the controller at every evaluation
      (what a direct shooting code with an adaptive integrator does);
    - *fixed*: `outer_iterations` times, choose the grid $\pi_j = \pi(U_j)$ by the
      controller at the current iterate, then run `iterations` descent steps on the
      fixed-grid map $E_{\pi_j}$ (the paper: vary the grid in the outer
      algorithm, not inside the inner one).

    Steps are in the $L^2$ metric, $U \leftarrow U - \alpha\,\nabla E / h_k$:
    `step="armijo"` (backtracking from `alpha0`, at most `max_backtracks` halvings)
    or `step="constant"` ($\alpha$ = `alpha0`).

    **Returns:** an [`AdaptiveDescent`][] with both residual histories and the true
    (finite-difference) residuals at the ends.
    """
    if not isinstance(ash, AdaptiveShooting):
        raise TypeError(f"`ash` must be an AdaptiveShooting; got {type(ash).__name__}.")
    U0 = ash.zeros() if U0 is None else ash.check_controls(U0, "U0")
    for name, v, lo in (
        ("iterations", iterations, 1),
        ("outer_iterations", outer_iterations, 1),
        ("max_backtracks", max_backtracks, 1),
    ):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < lo:
            raise ValueError(f"`{name}` must be an integer >= {lo}; got {v!r}.")
    alpha0 = _positive_float("alpha0", alpha0)
    if step not in ("armijo", "constant"):
        raise ValueError(f"`step` must be 'armijo' or 'constant'; got {step!r}.")
    armijo = step == "armijo"
    inv_h = 1.0 / ash.steps[:, None]
    a0 = jnp.asarray(alpha0)
    U_in, c_in, r_in, ok_in, ch_in = _descent_run(
        _AdaptiveMap(ash), U0, inv_h, a0, int(iterations), int(max_backtracks), armijo
    )
    true_in = full_gradient(ash, U_in, delta=delta)
    h = np.asarray(ash.steps)[:, None]
    inside_true = _inf((true_in.gradient / h)[true_in.smooth])
    U = U0
    hist = []
    outer = []
    fm = None
    for _ in range(int(outer_iterations)):
        grid = ash.adaptive_grid(U)
        fm = _fixed_map(ash, grid.times, grid.owner)
        U, _, r, ok, _ = _descent_run(
            _FrozenMap(fm, ash.N), U, inv_h, a0, int(iterations), int(max_backtracks), armijo
        )
        r = np.asarray(r)
        hist.append(r if not hist else r[1:])
        outer.append((grid.num_steps, float(r[-1]), int(np.sum(~np.asarray(ok)))))
    assert fm is not None
    D1, D2 = _fd_fixed(fm, U, jnp.asarray(delta))
    fixed_fd = _fd_result(D1, D2, float(_fixed_value_and_grad(fm, U)[0]), delta)
    return AdaptiveDescent(
        tol=float(ash.tol),
        alpha0=alpha0,
        step=step,
        iterations=int(iterations),
        inside_residual=np.asarray(r_in),
        inside_cost=np.asarray(c_in),
        inside_failures=int(np.sum(~np.asarray(ok_in))),
        inside_grid_changes=int(np.sum(np.asarray(ch_in))),
        inside_true_residual=inside_true,
        fixed_residual=np.concatenate(hist),
        fixed_outer=tuple(outer),
        fixed_true_residual=_inf((fixed_fd.gradient / h)[fixed_fd.smooth]),
    )
