r"""The gradient flow (50), dU/dtau = -M^{-1} grad E^N(U), integrated with diffrax.

[`gradient_flow`][flow.gradient_flow] with its defaults chooses the solver
([`solver="auto"`][flow.gradient_flow]): an explicit Runge-Kutta method while the flow
is not stiff, and the L-stable implicit [`stiff_solver`][flow.stiff_solver] from the
point where the explicit step size collapses. The rule, its thresholds and its
measurements are in `gradient_flow`'s docstring; what it chose is in the result.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from ._descent import STOP_ON, StopOn
from ._encoding import format_number
from ._metrics import AbstractMetric, as_metric
from ._results import RESULTS, AbstractResult
from ._shooting import AbstractShooting
from ._solver_choice import EXPLICIT_PROBE_STEPS, Phase, largest_rate, plan, solver_name
from ._validation import (
    choice,
    optional_positive_float,
    positive_float,
    positive_int,
    shooting as check_shooting,
)


#: The default stopping tolerance of `gradient_flow` (on `stop_on`'s residual).
DEFAULT_TOL = 1e-8


#: `solver="auto"`: explicit steps tried before the flow is declared stiff.
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
      when saved with `SaveAt(dense=True)`).
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
    _arrays: ClassVar[tuple[str, ...]] = ("U",)

    def evaluate(self, tau: Any) -> Float[Array, "... N m"]:
        r"""$U(\tau)$ from diffrax's dense output (needs `saveat=SaveAt(dense=True)`);
        `tau` may be an array of times."""
        if any(sol.interpolation is None for sol in self.solutions):
            raise ValueError(
                "this FlowSolution has no dense output: call gradient_flow(..., "
                "saveat=diffrax.SaveAt(t1=True, dense=True))."
            )
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
        )

    def _details(self) -> str:
        return self.diagnosis

    def _summary(self) -> str:
        return (
            f"tau = {float(self.tau_final):.4g} after {int(self.num_steps)} steps of "
            f"{self.solver.split(':')[0]}, residual {float(self.residual):.2e}"
        )


def vector_field(shooting: AbstractShooting, metric: AbstractMetric | str):
    r"""The vector field $F(\tau, U) = -M^{-1}\nabla E^N(U)$ of (50), as a
    `diffrax.ODETerm`-compatible function `(tau, U, args) -> dU/dtau`."""
    metric = as_metric(metric)

    def F(tau, U, args):
        del tau, args
        g = jax.grad(type(shooting).objective, argnums=1)(shooting, U)
        return -metric.apply_inverse(shooting, U, g)

    return F


def gradient_flow(
    shooting: AbstractShooting,
    U0: ArrayLike,
    *,
    metric: AbstractMetric | str = "hamiltonian",
    tol: float | None = DEFAULT_TOL,
    stop_on: StopOn = "hamiltonian",
    tau1: float | None = None,
    max_steps: int = 100_000,
    solver: diffrax.AbstractSolver | Literal["auto"] = "auto",
    rtol: float | None = None,
    atol: float | None = None,
    saveat: diffrax.SaveAt | None = None,
    dt0: float | None = None,
    pcoeff: float | None = None,
    icoeff: float | None = None,
    throw: bool = True,
) -> FlowSolution:
    r"""Integrate the gradient flow $dU/d\tau = -M^{-1}\nabla E^N(U)$ (eq. (50)).

    The discrete algorithm (37) with step $\alpha$ is forward Euler on this ODE;
    its equilibria are the stationary points of $E^N$ (51).

    **Arguments:**

    - `shooting`, `U0` (N, m): the problem and the start.
    - `metric`: $M$, a [`flow.metrics`][flow.metrics] metric or its name (default
      `"hamiltonian"`: $F = -\partial H/\partial U$, the indirect method's flow).
    - `tol`: stop as soon as the `stop_on` residual is $\le$ `tol` (a diffrax
      event; default $10^{-8}$); `None` integrates to `tau1`.
    - `stop_on`: `"hamiltonian"` ($\max_k|\nabla_{u_k}E^N/h_k|$, i.e.
      $\max_k|\partial_u H_k|$ for Euler) or `"gradient"` ($\|\nabla E^N\|_\infty$).
    - `tau1`: the final flow time (default: none, the tolerance ends the solve).
    - `max_steps`: the step limit (all phases together).
    - `solver`: a diffrax solver, or `"auto"` (default; the rule below).
    - `rtol`, `atol`: the step controller's tolerances (default: the rule's).
    - `saveat`: a `diffrax.SaveAt` (default: start and end); use
      `SaveAt(t1=True, dense=True)` for [`compare`][flow.compare].
    - `dt0`: the initial step (default: chosen by the controller).
    - `pcoeff`, `icoeff`: the PID controller's coefficients (default: diffrax's I
      controller for explicit solvers, `0.3, 0.3` for implicit ones).
    - `throw`: raise on divergence, a non-finite start, an indefinite Newton metric
      or a failed/limited solve; with `False` the status is in `result`.

    **`solver="auto"`.** For a constant metric the flow is integrated with `Tsit5`
    (rtol 1e-6, atol 1e-9) for at most `EXPLICIT_PROBE_STEPS` = 2000 steps. A flow
    that reaches `tol` (or `tau1`) within them is not stiff for this purpose. One that
    does not is: an explicit step is held below $\approx 3.3/|\mu_{max}|$ for the
    largest eigenvalue $\mu_{max}$ of $J = -M^{-1}\nabla^2 E^N$, while the slowest
    mode needs $\tau \sim 1/|\mu_{min}|$; from where the probe stopped the flow goes
    on with [`stiff_solver`][flow.stiff_solver] (Kvaerno5 matrix-free above
    `MATRIX_FREE_MIN` = 128 unknowns $Nm$, Kvaerno3 with a dense Jacobian below;
    rtol 1e-4, atol 1e-7, PI controller 0.3/0.3). Measured with the defaults on 2
    cores, including compilation: `scalar_regularized` N = 1000 stays explicit;
    `van_der_pol` N = 200 (Hessian/h spans $[2, 4.8\cdot 10^4]$) switches. A
    non-constant metric (Newton: $J \approx -I$ near a minimiser, not stiff) uses
    `Tsit5` throughout. `solver`, `rtol`, `atol` in the result record the choice.

    **Status.** `converged` (the residual reached `tol`), `completed` (reached
    `tau1`), `max_steps` (with the residual reached and the likely cause: a stiff
    flow held at the explicit stability limit, or a slow one), `diverged` (a
    non-finite state), `nonfinite` (the cost or gradient at `U0`), `indefinite` (a
    non-constant metric met non-positive curvature: the Newton flow is not a
    descent flow there; the first such $\tau$ is in `indefinite_at` and the
    message), `solver_failed`.

    **Returns:** a [`FlowSolution`][flow.FlowSolution].
    """
    check_shooting(shooting)
    metric = as_metric(metric)
    choice(stop_on, "stop_on", STOP_ON)
    tol = optional_positive_float(tol, "tol")
    tau1 = optional_positive_float(tau1, "tau1")
    if tau1 is None and tol is None:
        raise ValueError("give `tol` (a tolerance), `tau1` (a final flow time), or both.")
    max_steps = positive_int(max_steps, "max_steps")
    rtol = optional_positive_float(rtol, "rtol")
    atol = optional_positive_float(atol, "atol")
    dt0 = optional_positive_float(dt0, "dt0")
    pcoeff = None if pcoeff is None else positive_float(pcoeff, "pcoeff", allow_zero=True)
    icoeff = None if icoeff is None else positive_float(icoeff, "icoeff", allow_zero=True)
    if not (solver == "auto" or isinstance(solver, diffrax.AbstractSolver)):
        raise TypeError(f"`solver` must be 'auto' or a diffrax solver; got {solver!r}.")
    U0 = shooting.check_controls(U0, "U0")
    if isinstance(U0, jax.core.Tracer):
        raise ValueError(
            "gradient_flow runs its phases and checks on concrete values: call it "
            "outside jit/vmap (its diffrax solve is compiled inside)."
        )
    metric = metric.prepare(shooting, U0)
    saveat = diffrax.SaveAt(t0=True, t1=True) if saveat is None else saveat
    settings = _Settings(
        tol=tol, on_hamiltonian=stop_on == "hamiltonian", stop_on=stop_on,
        curvature=not metric.constant, dt0=dt0, saveat=saveat,
    )  # fmt: skip
    horizon = tau1 if tau1 is not None else 1e30

    start = _start(shooting, U0, metric, settings.on_hamiltonian)
    if start is not None:
        sol = _stopped_at_start(shooting, U0, settings, start)
    else:
        phases = plan(solver, metric, shooting, U0, tol, rtol, atol, pcoeff, icoeff)
        sol = _integrate(shooting, U0, metric, settings, phases, horizon, max_steps)
    if throw:
        hint = {
            "max_steps": "",
            "diverged": "",
            "indefinite": "Start nearer a minimiser, or use metric='hamiltonian'.",
        }.get(sol.status, "")
        sol.raise_for_status("gradient_flow", hint)
    return sol


class _Settings(eqx.Module):
    tol: float | None
    on_hamiltonian: bool
    stop_on: str
    curvature: bool
    dt0: float | None
    saveat: diffrax.SaveAt


@eqx.filter_jit
def _start_kernel(sh, U0, metric, on_hamiltonian: bool):
    c, g = jax.value_and_grad(type(sh).objective, argnums=1)(sh, U0)
    a = jnp.abs(g)
    r = jnp.max(a / sh.steps[:, None]) if on_hamiltonian else jnp.max(a)
    ok = metric.solve(sh, U0, g).ok
    return c, r, ok


def _start(sh, U0, metric, on_hamiltonian) -> str | None:
    """None when the flow can start at U0; else the status ("nonfinite" or
    "indefinite")."""
    c, r, ok = _start_kernel(sh, U0, metric, on_hamiltonian)
    if not (math.isfinite(float(c)) and math.isfinite(float(r))):
        return "nonfinite"
    if not bool(ok):
        return "indefinite"
    return None


def _stopped_at_start(sh, U0, settings: _Settings, status: str) -> FlowSolution:
    c, g = jax.value_and_grad(type(sh).objective, argnums=1)(sh, U0)
    gn = jnp.max(jnp.abs(g))
    hn = jnp.max(jnp.abs(g / sh.steps[:, None]))
    if status == "nonfinite":
        diagnosis = sh.nonfinite_report(U0, "U0") or ""
    else:
        diagnosis = (
            "The Newton metric's Hessian has non-positive curvature at U0 (tau = 0): "
            "-M^-1 grad E^N is not the Newton direction there"
        )
    zero = jnp.array(0)
    return FlowSolution(
        tau=jnp.zeros((1,)),
        Us=U0[None],
        cost=c[None],
        gradient_norm=gn[None],
        hamiltonian_norm=hn[None],
        U=U0,
        tau_final=jnp.zeros(()),
        residual=hn if settings.on_hamiltonian else gn,
        tol=jnp.asarray(np.inf if settings.tol is None else settings.tol),
        stop_on=settings.stop_on,
        result=getattr(RESULTS, status),
        num_steps=zero,
        num_accepted_steps=zero,
        num_rejected_steps=zero,
        solver="none (stopped at the start)",
        rtol=math.nan,
        atol=math.nan,
        indefinite_at=jnp.asarray(0.0 if status == "indefinite" else np.nan),
        solutions=(),
        phase_starts=(),
        diagnosis=diagnosis,
    )


@eqx.filter_jit
def _phase_kernel(
    sh: AbstractShooting,
    U0: Array,
    metric: AbstractMetric,
    phase: Phase,
    settings: _Settings,
    t0: Array,
    t1: Array,
    max_steps: int,
):
    """One diffrax solve from (t0, U0); the raw pieces the caller assembles."""
    h = sh.steps[:, None]
    grad = jax.grad(type(sh).objective, argnums=1)

    def residual(U):
        g = grad(sh, U)
        return jnp.max(jnp.abs(g / h)) if settings.on_hamiltonian else jnp.max(jnp.abs(g))

    conds: list[Any] = []
    if settings.tol is not None:

        def converged(t, y, args, **kwargs):
            del t, args, kwargs
            r = residual(y)
            # stop on convergence, and on a non-finite state (divergence)
            return (r <= settings.tol) | ~jnp.isfinite(r)

        conds.append(converged)
    if settings.curvature:

        def indefinite(t, y, args, **kwargs):
            del t, args, kwargs
            return ~metric.solve(sh, y, grad(sh, y)).ok

        conds.append(indefinite)
    event = diffrax.Event(tuple(conds)) if conds else None
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field(sh, metric)),
        phase.solver,
        t0=t0,
        t1=t1,
        dt0=settings.dt0,
        y0=U0,
        saveat=settings.saveat,
        stepsize_controller=diffrax.PIDController(
            rtol=phase.rtol,
            atol=phase.atol,
            pcoeff=phase.pcoeff,
            icoeff=phase.icoeff,
            dtmax=phase.dtmax,
        ),
        event=event,
        max_steps=max_steps,
        throw=False,
    )

    def metrics_at(U):
        c, g = jax.value_and_grad(type(sh).objective, argnums=1)(sh, U)
        return c, jnp.max(jnp.abs(g)), jnp.max(jnp.abs(g / h))

    ts = sol.ts if sol.ts is not None else jnp.zeros((0,))
    ys = sol.ys
    if ys is not None:
        valid = jnp.isfinite(ts)
        safe = jnp.where(valid[:, None, None], ys, U0)
        c, gn, hn = jax.vmap(metrics_at)(safe)
        c, gn, hn = (jnp.where(valid, v, jnp.inf) for v in (c, gn, hn))
        last = jnp.maximum(jnp.sum(valid) - 1, 0)
        U_final = ys[last]
        tau_final = jnp.where(jnp.any(valid), ts[last], t0)
    else:  # dense-only save
        c = gn = hn = jnp.zeros((0,))
        tau_final = sol.t1
        U_final = sol.evaluate(sol.t1)
    finite = jnp.all(jnp.isfinite(U_final))
    r_final = residual(jnp.where(finite, U_final, U0))
    mask = sol.event_mask if sol.event_mask is not None else ()
    fired_conv = mask[0] if settings.tol is not None else jnp.array(False)
    fired_indef = mask[-1] if settings.curvature else jnp.array(False)
    event_hit = sol.result == diffrax.RESULTS.event_occurred
    stats = sol.stats
    return dict(
        ts=ts,
        ys=ys,
        cost=c,
        gnorm=gn,
        hnorm=hn,
        U=U_final,
        tau=jnp.asarray(tau_final, dtype=U0.dtype),
        residual=jnp.where(finite, r_final, jnp.inf),
        finite=finite,
        converged=event_hit & fired_conv & finite,
        indefinite=event_hit & fired_indef & finite,
        successful=sol.result == diffrax.RESULTS.successful,
        max_steps=sol.result == diffrax.RESULTS.max_steps_reached,
        num_steps=stats["num_steps"],
        num_accepted=stats["num_accepted_steps"],
        num_rejected=stats["num_rejected_steps"],
        solution=sol,
    )


def _integrate(sh, U0, metric, settings: _Settings, phases, horizon, max_steps) -> FlowSolution:
    U = U0
    t = 0.0
    left = max_steps
    pieces = []
    names = []
    status = "solver_failed"
    for k, phase in enumerate(phases):
        budget = min(left, EXPLICIT_PROBE_STEPS) if phase.probe else left
        out = _phase_kernel(
            sh, U, metric, phase, settings, jnp.asarray(t), jnp.asarray(horizon), budget
        )
        pieces.append((phase, out, t))
        left -= int(out["num_steps"])
        status = _phase_status(out, settings)
        name = solver_name(phase.solver)
        if k > 0:
            prev = pieces[-2][1]
            name = (
                f"{name} from tau = {t:.4g}: the explicit step size fell to "
                f"{float(prev['tau']) / max(int(prev['num_accepted']), 1):.2e} on average "
                f"over {int(prev['num_steps'])} steps with the residual at "
                f"{float(prev['residual']):.2e} (a stiff flow)"
            )
        names.append(name)
        handover = phase.probe and status == "max_steps" and k + 1 < len(phases) and left > 0
        if not handover:
            break
        U, t = out["U"], float(out["tau"])
    return _assemble(sh, U0, metric, settings, pieces, ", then ".join(names), status)


def _phase_status(out: dict[str, Any], settings: _Settings) -> str:
    if not bool(out["finite"]):
        return "diverged"
    if bool(out["indefinite"]):
        return "indefinite"
    if bool(out["converged"]):
        r = float(out["residual"])
        return "converged" if r <= settings.tol * (1 + 1e-12) else "diverged"
    if bool(out["successful"]):
        return "completed"
    if bool(out["max_steps"]):
        return "max_steps"
    return "solver_failed"


def _valid_first(*arrays: np.ndarray, ts: np.ndarray) -> list[np.ndarray]:
    keep = np.isfinite(ts)
    order = np.concatenate([np.nonzero(keep)[0], np.nonzero(~keep)[0]])
    return [a[order] for a in arrays]


def _assemble(sh, U0, metric, settings, pieces, solver_text, status) -> FlowSolution:
    outs = [p[1] for p in pieces]
    last_phase, last, _ = pieces[-1]
    # the hand-over point is saved twice (at the end of one phase, the start of the next)
    drop = 1 if settings.saveat.subs.t0 else 0
    keys = ("ts", "cost", "gnorm", "hnorm") + (("ys",) if outs[0]["ys"] is not None else ())
    cols = {
        k: np.concatenate([np.asarray(o[k])[(drop if i else 0) :] for i, o in enumerate(outs)])
        for k in keys
    }
    ordered = _valid_first(*(cols[k] for k in keys), ts=cols["ts"])
    ts, cost, gn, hn = ordered[:4]
    ys = jnp.asarray(ordered[4]) if len(ordered) > 4 else None
    num_steps = sum(int(o["num_steps"]) for o in outs)
    num_accepted = sum(int(o["num_accepted"]) for o in outs)
    indefinite_at = float(last["tau"]) if status == "indefinite" else math.nan
    diagnosis = _diagnose(
        sh, U0, metric, settings, last, num_steps, num_accepted, last_phase, status
    )
    return FlowSolution(
        tau=jnp.asarray(ts),
        Us=ys,
        cost=jnp.asarray(cost),
        gradient_norm=jnp.asarray(gn),
        hamiltonian_norm=jnp.asarray(hn),
        U=last["U"],
        tau_final=last["tau"],
        residual=last["residual"],
        tol=jnp.asarray(np.inf if settings.tol is None else settings.tol),
        stop_on=settings.stop_on,
        result=getattr(RESULTS, status),
        num_steps=jnp.asarray(num_steps),
        num_accepted_steps=jnp.asarray(num_accepted),
        num_rejected_steps=jnp.asarray(sum(int(o["num_rejected"]) for o in outs)),
        solver=solver_text,
        rtol=float(last_phase.rtol),
        atol=float(last_phase.atol),
        indefinite_at=jnp.asarray(indefinite_at),
        solutions=tuple(o["solution"] for o in outs),
        phase_starts=tuple(float(p[2]) for p in pieces),
        diagnosis=diagnosis,
    )


def _diagnose(sh, U0, metric, settings, last, n, accepted, phase: Phase, status: str) -> str:
    """The sentence a failed status carries: where the flow stopped and the likely
    cause."""
    tau = float(last["tau"])
    r = float(last["residual"])
    if status == "indefinite":
        return (
            f"The Newton metric's Hessian had non-positive curvature at tau = {tau:.6g} "
            f"(after {n} steps, residual {r:.3e})"
        )
    if status == "diverged":
        return (
            f"The state became non-finite near tau = {tau:.4g} after {n} steps "
            f"(last residual {format_number(r, '.3e')})"
        )
    if status == "solver_failed":
        return f"At tau = {tau:.4g} after {n} steps (residual {format_number(r, '.3e')})"
    if status != "max_steps":
        return ""
    r0 = float(_start_kernel(sh, U0, metric, settings.on_hamiltonian)[1])
    text = (
        f"Stopped at tau = {tau:.4g} after {n} steps with the {settings.stop_on} residual "
        f"{r:.3e} (tol {settings.tol if settings.tol is not None else math.inf:.1e}; "
        f"{r0:.3e} at tau = 0)"
    )
    if isinstance(phase.solver, diffrax.AbstractImplicitSolver):
        return text + ": raise max_steps, or tau1"
    dt = tau / max(accepted, 1)
    mu = float(largest_rate(sh, metric, last["U"]))
    if dt * mu > 1.0:
        return (
            f"{text}. Likely cause: a stiff flow. The explicit step size averaged "
            f"{dt:.2e}, held near the stability limit by the largest eigenvalue "
            f"|mu_max| ~ {mu:.3g} of J (dt |mu_max| ~ {dt * mu:.2g}); use solver='auto' "
            f"or flow.stiff_solver()"
        )
    if r > 0.5 * r0:
        return (
            f"{text}. Likely cause: the residual barely fell (a slow or stalled flow; "
            f"tol may be below the residual's rounding floor)"
        )
    return f"{text}. The residual was still falling: raise max_steps (or tau1)"
