r"""The gradient flow (50), dU/dtau = -M^{-1} grad E^N(U), integrated with diffrax."""

from __future__ import annotations

from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, Float, Int

from ._krylov import EarlyGMRES, StageNewton
from ._metrics import AbstractMetric
from ._shooting import Shooting, _cost_impl
from ._status import RESULTS, ConvergenceError, DivergenceError, is_success


_STOP_ON = ("hamiltonian", "gradient")


def stiff_solver(
    *,
    order: int | None = None,
    matrix_free: bool = False,
    krylov_rtol: float = 1e-2,
    restart: int = 30,
    kappa: float = 0.1,
) -> diffrax.AbstractImplicitSolver:
    r"""A diffrax ESDIRK solver (`Kvaerno3`, `Kvaerno4` or `Kvaerno5` by `order`;
    L-stable) set up for stiff gradient flows. Use it with
    `gradient_flow(..., pcoeff=0.3, icoeff=0.3)` (a PI step controller, which
    avoids most rejected steps on stiff flows). The stage equations use the step
    controller's tolerances.

    - `matrix_free=True` (large $Nm$, e.g. $10^4$; default `order` 5): inexact
      Newton-Krylov on the stage equations. Each Newton iteration `jax.linearize`s
      the stage function and solves $(I - \gamma\Delta\tau\,J)\delta = r$ by GMRES
      on Jacobian-vector products (one Hessian-vector product each), tested for
      convergence after every product and stopped at relative residual
      `krylov_rtol` (GMRES with Givens rotations; `restart` vectors per cycle).
      Newton stops as soon as its scaled correction is below `kappa` (possibly
      after one iteration) or its observed rate says the rest is (Hairer-Wanner
      IV.8); a rate $\ge 1$ rejects the step. Nothing $Nm \times Nm$ is formed.
    - `matrix_free=False` (small $Nm$, a few hundred; default `order` 3): diffrax's
      `VeryChord` linearises once per step and reuses that Jacobian for every stage
      and iteration: $\partial F/\partial U = -M^{-1}\nabla^2 E^N$ is materialised
      from $Nm$ Hessian-vector products and LU-factorised once per step;
      $O((Nm)^2)$ memory.

    Why this set-up (measured on `van_der_pol`, N = 10^3, Hamiltonian metric, from
    U = 0 to $\max|\partial_u H| \le 10^{-8}$, rtol 1e-3, atol 1e-6; see
    `benchmarks/README.md`): with optimistix `Newton` and lineax `GMRES` the solve
    took 2.8 s (restart 40) or 0.61 s (restart 5), because lineax's GMRES tests
    convergence only between restart cycles and needs two cycles; testing after
    every product and a loose `krylov_rtol` (1e-2; Newton corrects the rest) cut
    the products per solve to about 3; allowing Newton to stop after one
    iteration cut the linear solves by a quarter. The dense path was 20-40 times
    slower at $Nm = 10^3$.

    When to pick which solver: an explicit solver (`diffrax.Tsit5()`) when the
    flow is not stiff (the spectrum of $J$ spans a small ratio, e.g. the
    Hamiltonian metric on `scalar_regularized`); this implicit one when it is
    (e.g. `van_der_pol`, whose $\nabla^2 E^N/h$ spans about $[2, 5\cdot10^4]$), where
    an explicit solver needs a step below $2/\lambda_{max}$.
    """
    solvers = {3: diffrax.Kvaerno3, 4: diffrax.Kvaerno4, 5: diffrax.Kvaerno5}
    if order is None:
        order = 5 if matrix_free else 3
    if order not in solvers:
        raise ValueError(f"`order` must be 3, 4 or 5; got {order!r}.")
    if not (0 < krylov_rtol < 1):
        raise ValueError(f"`krylov_rtol` must be in (0, 1); got {krylov_rtol!r}.")
    if not (0 < kappa < 1):
        raise ValueError(f"`kappa` must be in (0, 1); got {kappa!r}.")
    if isinstance(restart, bool) or not isinstance(restart, int) or restart < 1:
        raise ValueError(f"`restart` must be an integer >= 1; got {restart!r}.")
    if matrix_free:
        root_finder = diffrax.with_stepsize_controller_tols(StageNewton)(
            kappa=kappa,
            linear_solver=EarlyGMRES(rtol=krylov_rtol, restart=restart, max_restarts=10),
        )
    else:
        root_finder = diffrax.with_stepsize_controller_tols(diffrax.VeryChord)(
            linear_solver=lx.AutoLinearSolver(well_posed=None)
        )
    return solvers[order](root_finder=root_finder)


class FlowSolution(eqx.Module):
    r"""The result of [`gradient_flow`][].

    **Fields:**

    - `tau`: the saved flow times (entries the solve did not reach hold `inf`, as
      in diffrax);
    - `U`: the controls at those times, (S, N, m), or `None` when not saved;
    - `cost`, `gradient_norm`, `hamiltonian_norm`: $E^N$, $\|\nabla E^N\|_\infty$
      and $\max_k|\nabla_{u_k}E^N/h_k|$ at the saved times (`inf` where not reached);
    - `U_final`, `tau_final`: where the integration stopped;
    - `num_steps`, `num_accepted_steps`, `num_rejected_steps`: diffrax's counts;
    - `result`: a [`RESULTS`][flow.RESULTS] item (`message` is its text);
    - `solution`: the `diffrax.Solution` (dense output through [`evaluate`][] when
      the flow was saved with `SaveAt(dense=True)`).
    """

    tau: Float[Array, " S"]
    U: Float[Array, "S N m"] | None
    cost: Float[Array, " S"]
    gradient_norm: Float[Array, " S"]
    hamiltonian_norm: Float[Array, " S"]
    U_final: Float[Array, "N m"]
    tau_final: Float[Array, ""]
    num_steps: Int[Array, ""]
    num_accepted_steps: Int[Array, ""]
    num_rejected_steps: Int[Array, ""]
    result: RESULTS
    solution: diffrax.Solution

    @property
    def message(self) -> str:
        """The human-readable status."""
        return RESULTS[self.result]

    @property
    def success(self) -> bool:
        """True when the flow reached the tolerance or tau1."""
        return is_success(self.result)

    def evaluate(self, tau: Any) -> Float[Array, "... N m"]:
        r"""$U(\tau)$ from diffrax's dense output (needs `saveat=SaveAt(dense=True)`);
        `tau` may be an array of times."""
        if self.solution.interpolation is None:
            raise ValueError(
                "this FlowSolution has no dense output: call gradient_flow(..., "
                "saveat=diffrax.SaveAt(t1=True, dense=True))."
            )
        tau = jnp.asarray(tau, dtype=self.tau_final.dtype)
        if tau.ndim == 0:
            return self.solution.evaluate(tau)
        return jax.vmap(self.solution.evaluate)(tau)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (finite saved points only)."""
        ok = np.isfinite(np.asarray(self.tau))
        return dict(
            status=self.message,
            success=self.success,
            tau_final=float(self.tau_final),
            num_steps=int(self.num_steps),
            num_accepted_steps=int(self.num_accepted_steps),
            num_rejected_steps=int(self.num_rejected_steps),
            tau=np.asarray(self.tau)[ok].tolist(),
            cost=np.asarray(self.cost)[ok].tolist(),
            gradient_norm=np.asarray(self.gradient_norm)[ok].tolist(),
            hamiltonian_norm=np.asarray(self.hamiltonian_norm)[ok].tolist(),
        )

    def __repr__(self) -> str:
        return (
            f"FlowSolution({self.message.split(':')[0]} at tau={float(self.tau_final):.4g}, "
            f"{int(self.num_steps)} steps)"
        )


def vector_field(shooting: Shooting, metric: AbstractMetric):
    r"""The vector field $F(\tau, U) = -M^{-1}\nabla E^N(U)$ of (50), as a
    `diffrax.ODETerm`-compatible function `(tau, U, args) -> dU/dtau`."""

    def F(tau, U, args):
        del tau, args
        g = jax.grad(_cost_impl, argnums=1)(shooting, U)
        return -metric.apply_inverse(shooting, U, g)

    return F


def gradient_flow(
    shooting: Shooting,
    U0: Any,
    metric: AbstractMetric,
    *,
    rtol: float,
    atol: float,
    tau1: float | None = None,
    until: float | None = None,
    stop_on: str = "hamiltonian",
    solver: diffrax.AbstractSolver | None = None,
    saveat: diffrax.SaveAt | None = None,
    dt0: float | None = None,
    max_steps: int = 100_000,
    pcoeff: float = 0.0,
    icoeff: float = 1.0,
    throw: bool = True,
) -> FlowSolution:
    r"""Integrate the gradient flow $dU/d\tau = -M^{-1}\nabla E^N(U)$ (eq. (50)).

    The discrete algorithm (37) with step $\alpha$ is forward Euler on this ODE;
    its equilibria are the stationary points of $E^N$ (51).

    **Arguments:**

    - `shooting`, `U0` (N, m), `metric`: the problem, the start and $M$.
    - `rtol`, `atol`: the PID step-size controller's tolerances (required: no
      hidden defaults).
    - `tau1`: the final flow time; `until`: stop as soon as the residual is
      $\le$ `until` (a diffrax event). At least one of them is needed.
    - `stop_on`: the residual, `"hamiltonian"` ($\max_k|\nabla_{u_k}E^N/h_k|$,
      i.e. $\max_k|\partial_u H_k|$ for Euler) or `"gradient"` ($\|\nabla E^N\|_\infty$).
    - `solver`: a diffrax solver, default `diffrax.Tsit5()`; for stiff flows
      [`stiff_solver`][] (Kvaerno5 with a dense or matrix-free root finder).
    - `saveat`: a `diffrax.SaveAt` (default: start and end); use
      `SaveAt(t1=True, dense=True)` for [`compare`][flow.compare].
    - `dt0`: the initial step (default: chosen by the controller).
    - `max_steps`: diffrax's step limit.
    - `pcoeff`, `icoeff`: the PID controller's coefficients (diffrax's defaults,
      an I controller; `pcoeff=0.3, icoeff=0.3` suits stiff flows, see
      [`stiff_solver`][]).
    - `throw`: raise on divergence or on a failed/limited solve; with `False` the
      status is in `result`.

    **Returns:** a [`FlowSolution`][].
    """
    if not isinstance(shooting, Shooting):
        raise TypeError(f"`shooting` must be a Shooting; got {type(shooting).__name__}.")
    if not isinstance(metric, AbstractMetric):
        raise TypeError(f"`metric` must be a flow.metrics metric; got {metric!r}.")
    if stop_on not in _STOP_ON:
        raise ValueError(f"`stop_on` must be one of {_STOP_ON}; got {stop_on!r}.")
    if tau1 is None and until is None:
        raise ValueError("give `tau1` (a final flow time), `until` (a tolerance), or both.")
    if tau1 is not None and not float(tau1) > 0:
        raise ValueError(f"`tau1` must be positive; got {tau1}.")
    if until is not None and not float(until) > 0:
        raise ValueError(f"`until` must be positive; got {until}.")
    for name, v in (("rtol", rtol), ("atol", atol)):
        if not (isinstance(v, int | float) and v > 0):
            raise ValueError(f"`{name}` must be a positive number; got {v!r}.")
    U0 = shooting.check_controls(U0, "U0")
    metric = metric.prepare(shooting, U0)
    solver = diffrax.Tsit5() if solver is None else solver
    saveat = diffrax.SaveAt(t0=True, t1=True) if saveat is None else saveat
    # Without tau1 the event ends the solve; the horizon is then only a bound.
    t1 = float(tau1) if tau1 is not None else 1e30
    sol = _solve(
        shooting,
        U0,
        metric,
        solver,
        saveat,
        float(rtol),
        float(atol),
        t1,
        None if until is None else float(until),
        stop_on == "hamiltonian",
        dt0,
        int(max_steps),
        float(pcoeff),
        float(icoeff),
    )
    if throw:
        if sol.result == RESULTS.diverged:
            raise DivergenceError(
                f"the gradient flow diverged near tau = {float(sol.tau_final):.4g}: "
                f"non-finite state (|dH/du| at the last good save "
                f"{_last_finite(sol.hamiltonian_norm):.3e}). {sol.message}"
            )
        if not sol.success:
            raise ConvergenceError(
                f"the gradient flow stopped at tau = {float(sol.tau_final):.4g} after "
                f"{int(sol.num_steps)} steps: {sol.message}. Raise max_steps, use "
                f"flow.stiff_solver() for a stiff flow, or pass throw=False."
            )
    return sol


def _last_finite(x: Array) -> float:
    x = np.asarray(x)
    x = x[np.isfinite(x)]
    return float(x[-1]) if x.size else float("nan")


@eqx.filter_jit
def _solve(
    sh: Shooting,
    U0: Array,
    metric: AbstractMetric,
    solver: diffrax.AbstractSolver,
    saveat: diffrax.SaveAt,
    rtol: float,
    atol: float,
    t1: float,
    until: float | None,
    on_hamiltonian: bool,
    dt0: float | None,
    max_steps: int,
    pcoeff: float,
    icoeff: float,
) -> FlowSolution:
    h = sh.steps[:, None]

    def residual(U):
        g = jax.grad(_cost_impl, argnums=1)(sh, U)
        return jnp.max(jnp.abs(g / h)) if on_hamiltonian else jnp.max(jnp.abs(g))

    event = None
    if until is not None:

        def cond_fn(t, y, args, **kwargs):
            del t, args, kwargs
            r = residual(y)
            # stop on convergence, and on a non-finite state (divergence)
            return (r <= until) | ~jnp.isfinite(r)

        event = diffrax.Event(cond_fn)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field(sh, metric)),
        solver,
        t0=0.0,
        t1=t1,
        dt0=dt0,
        y0=U0,
        saveat=saveat,
        stepsize_controller=diffrax.PIDController(
            rtol=rtol, atol=atol, pcoeff=pcoeff, icoeff=icoeff
        ),
        event=event,
        max_steps=max_steps,
        throw=False,
    )

    def metrics_at(U):
        c, g = jax.value_and_grad(_cost_impl, argnums=1)(sh, U)
        return c, jnp.max(jnp.abs(g)), jnp.max(jnp.abs(g / h))

    ts = sol.ts if sol.ts is not None else jnp.zeros((0,))
    ys = sol.ys
    if ys is not None:
        valid = jnp.isfinite(ts)
        safe = jnp.where(valid[:, None, None], ys, U0)
        c, gn, hn = jax.vmap(metrics_at)(safe)
        inf = jnp.inf
        c, gn, hn = (jnp.where(valid, v, inf) for v in (c, gn, hn))
        # the final state: the last reached save, else the dense endpoint
        last = jnp.maximum(jnp.sum(valid) - 1, 0)
        U_final = ys[last]
        tau_final = jnp.where(jnp.any(valid), ts[last], 0.0)
    else:  # dense-only save
        c = gn = hn = jnp.zeros((0,))
        tau_final = sol.t1
        U_final = sol.evaluate(sol.t1)
    finite = jnp.all(jnp.isfinite(U_final))
    if ys is not None:
        finite = finite & jnp.all(jnp.where(jnp.isfinite(ts), jnp.isfinite(c), True))
    event_hit = sol.result == diffrax.RESULTS.event_occurred
    ok = sol.result == diffrax.RESULTS.successful
    max_steps_hit = sol.result == diffrax.RESULTS.max_steps_reached
    result = RESULTS.where(
        ~finite,
        RESULTS.diverged,
        RESULTS.where(
            event_hit,
            RESULTS.converged,
            RESULTS.where(
                ok,
                RESULTS.reached_tau1,
                RESULTS.where(max_steps_hit, RESULTS.max_steps, RESULTS.solver_failed),
            ),
        ),
    )
    if until is not None:
        # an event fired by a non-finite residual is divergence, not convergence
        r_final = residual(jnp.where(finite, U_final, U0))
        result = RESULTS.where(
            event_hit & finite & ~(r_final <= until * (1 + 1e-12)), RESULTS.diverged, result
        )
    stats = sol.stats
    return FlowSolution(
        tau=ts,
        U=ys,
        cost=c,
        gradient_norm=gn,
        hamiltonian_norm=hn,
        U_final=U_final,
        tau_final=jnp.asarray(tau_final, dtype=U0.dtype),
        num_steps=jnp.asarray(stats["num_steps"]),
        num_accepted_steps=jnp.asarray(stats["num_accepted_steps"]),
        num_rejected_steps=jnp.asarray(stats["num_rejected_steps"]),
        result=result,
        solution=sol,
    )
