r"""How [`gradient_flow`][flow.gradient_flow] integrates: the vector field of (50), the
checks at the start, one diffrax solve per phase (with the stopping, divergence and
curvature events), the hand-over between phases, and the diagnosis a failed status
carries. The verb itself, with its arguments and documented rule, is
`flow/_gradient_flow.py`; the choice of phases is `flow/_solver_choice.py`."""

from __future__ import annotations

import math
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._encoding import format_number
from ._flow_solution import FlowSolution
from ._flow_switching import (
    MAX_SWITCHES,
    ROOT_FINDER,
    events as switching_events,
    held,
    residual as projected_residual,
    switch,
)
from ._metrics import AbstractMetric, as_metric
from ._results import RESULTS
from ._shooting import AbstractShooting
from ._solver_choice import EXPLICIT_PROBE_STEPS, Phase, largest_rate, solver_name


def vector_field(shooting: AbstractShooting, metric: AbstractMetric | str):
    r"""The vector field $F(\tau, U) = -M^{-1}\nabla E^N(U)$ of (50), as a
    `diffrax.ODETerm`-compatible function `(tau, U, args) -> dU/dtau`."""
    metric = as_metric(metric)

    def F(tau, U, args):
        del tau, args
        return _field(shooting, metric, U)

    return F


@eqx.filter_jit
def _field(shooting: AbstractShooting, metric: AbstractMetric, U: Any) -> Any:
    """$-M^{-1}\nabla E^N(U)$ behind one `jit` boundary: an implicit solver evaluates
    and linearises the field at every stage of every step; inside its trace each of
    those calls reuses this function's traced program instead of tracing the
    gradient of the whole scan again."""
    g = jax.grad(type(shooting).objective, argnums=1)(shooting, U)
    return -metric.apply_inverse(shooting, U, g)


#: A `max_steps` stop whose residual ended this many times above its start is
#: diagnosed as a runaway flow (not a stiff or a slow one).
RUNAWAY = 100.0


class _Settings(eqx.Module):
    tol: float | None
    on_hamiltonian: bool
    stop_on: str
    curvature: bool
    dt0: float | None
    saveat: diffrax.SaveAt
    dtmin: float | None = None


def _norms(sh, U):
    r"""$E^N(U)$, $\|\nabla E^N\|_\infty$, $\max_k|\nabla_{u_k}E^N/h_k|$; with control
    bounds the projected forms of the two residuals."""
    c, g = jax.value_and_grad(type(sh).objective, argnums=1)(sh, U)
    h = sh.steps[:, None]
    bounds = getattr(sh, "bounds", None)
    if bounds is not None:
        gn = projected_residual(U, g, *bounds, None)
        return c, gn, projected_residual(U, g, *bounds, h), g
    return c, jnp.max(jnp.abs(g)), jnp.max(jnp.abs(g / h)), g


@eqx.filter_jit
def _start_kernel(sh, U0, metric, on_hamiltonian: bool):
    c, gn, hn, g = _norms(sh, U0)
    r = hn if on_hamiltonian else gn
    ok = metric.solve(sh, U0, g).ok
    return c, r, ok


def _start(sh, U0, metric, on_hamiltonian) -> tuple[str | None, float]:
    """(None when the flow can start at U0, else the status "nonfinite" or
    "indefinite"; the residual at U0)."""
    c, r, ok = _start_kernel(sh, U0, metric, on_hamiltonian)
    if not (math.isfinite(float(c)) and math.isfinite(float(r))):
        return "nonfinite", float(r)
    if not bool(ok):
        return "indefinite", float(r)
    return None, float(r)


def _stopped_at_start(sh, U0, settings: _Settings, status: str, active=None) -> FlowSolution:
    c, gn, hn, _ = _norms(sh, U0)
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
        active_set=active,
    )


def _residual_function(sh: AbstractShooting, on_hamiltonian: bool):
    r"""The `stop_on` residual: $\max|g/h|$ or $\max|g|$, and with control bounds the
    projected gradient's (the residuals of projected descent)."""
    h = sh.steps[:, None]
    grad = jax.grad(type(sh).objective, argnums=1)
    bounds = getattr(sh, "bounds", None)

    def residual(U):
        g = grad(sh, U)
        if bounds is not None:
            return projected_residual(U, g, *bounds, h if on_hamiltonian else None)
        return jnp.max(jnp.abs(g / h)) if on_hamiltonian else jnp.max(jnp.abs(g))

    return residual


@eqx.filter_jit
def _phase_kernel(
    sh: AbstractShooting,
    U0: Array,
    metric: AbstractMetric,
    phase: Phase,
    settings: _Settings,
    t0: Array,
    t1: Array,
    limit: Array,
    max_steps: int,
    active: Array | None = None,
):
    """One diffrax solve from (t0, U0); the raw pieces the caller assembles. With
    control bounds, `active` holds the active set of this segment: the field is held
    there, and the switching events end the segment (`flow/_flow_switching.py`)."""
    grad = jax.grad(type(sh).objective, argnums=1)
    residual = _residual_function(sh, settings.on_hamiltonian)

    def stop(t, y, args, **kwargs):
        del t, args, kwargs
        r = residual(y)
        # stop on convergence, on a non-finite state, and on a residual grown past the
        # divergence limit (descend's rule)
        done = ~jnp.isfinite(r) | (r > limit)
        return done | (r <= settings.tol) if settings.tol is not None else done

    conds: list[Any] = [stop]
    if settings.curvature:

        def indefinite(t, y, args, **kwargs):
            del t, args, kwargs
            return ~metric.solve(sh, y, grad(sh, y)).ok

        conds.append(indefinite)
    directions: list[bool | None] = [None] * len(conds)
    first_switch = len(conds)
    if active is None:
        event = diffrax.Event(tuple(conds))
        term = diffrax.ODETerm(vector_field(sh, metric))
    else:
        switching, dirs = switching_events(sh, active, grad, U0)
        conds += switching
        directions += dirs
        event = diffrax.Event(tuple(conds), ROOT_FINDER, tuple(directions))
        term = diffrax.ODETerm(lambda t, U, args: held(_field(sh, metric, U), active))
    sol = diffrax.diffeqsolve(
        term,
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
            dtmin=settings.dtmin,
            force_dtmin=False,  # a step below dtmin ends the solve (solver_failed)
        ),
        event=event,
        max_steps=max_steps,
        throw=False,
    )

    def metrics_at(U):
        return _norms(sh, U)[:3]

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
    fired_stop = mask[0]
    fired_indef = mask[1] if settings.curvature else jnp.array(False)
    event_hit = sol.result == diffrax.RESULTS.event_occurred
    no = jnp.array(False)
    switched, violated = (
        (no, no) if active is None else (event_hit & m for m in mask[first_switch:])
    )
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
        converged=event_hit & fired_stop & finite & (r_final <= limit),
        switched=(switched | violated) & finite,
        grew=finite & (r_final > limit),
        indefinite=event_hit & fired_indef & finite,
        successful=sol.result == diffrax.RESULTS.successful,
        max_steps=sol.result == diffrax.RESULTS.max_steps_reached,
        num_steps=stats["num_steps"],
        num_accepted=stats["num_accepted_steps"],
        num_rejected=stats["num_rejected_steps"],
        solution=sol,
    )


def _integrate(
    sh, U0, metric, settings: _Settings, phases, horizon, limit, max_steps, active=None
) -> FlowSolution:
    """Run the phases (an explicit probe, then the stiff solver) and, with control
    bounds, one segment per active set: a segment that ends on a switch goes on from
    the switch with the same phase (`flow/_flow_switching.py`)."""
    U = U0
    t = 0.0
    left = max_steps
    pieces = []
    names = []
    status = "solver_failed"
    k = 0
    used = 0  # steps taken in the current phase
    switches = 0
    # the step limit of each solve is static (diffrax sizes its buffers with it): one
    # value per phase, so that the segments of a bounded flow share one compilation
    budget = min(left, EXPLICIT_PROBE_STEPS) if phases[0].probe else left
    while True:
        phase = phases[k]
        out = _phase_kernel(
            sh,
            U,
            metric,
            phase,
            settings,
            jnp.asarray(t),
            jnp.asarray(horizon),
            jnp.asarray(limit),
            budget,
            active,
        )
        pieces.append((phase, out, t))
        n = int(out["num_steps"])
        left -= n
        used += n
        status = _phase_status(out, settings)
        if len(names) == k:
            names.append(_phase_name(phase, pieces, t))
        t = float(out["tau"])
        if status == "switch":
            U, active = switch(sh, out["U"], active)
            switches += 1
            if used < budget and switches < MAX_SWITCHES:
                continue
            status = "max_steps"  # out of steps (this phase's, or all) or of switches
        else:
            U = out["U"]
        handover = phase.probe and status == "max_steps" and k + 1 < len(phases) and left > 0
        if not handover or switches >= MAX_SWITCHES:
            break
        k += 1
        used = 0
        budget = left
    return _assemble(
        sh, U0, metric, settings, pieces, ", then ".join(names), status, active, switches
    )


def _phase_name(phase: Phase, pieces, t: float) -> str:
    """The solver's name, and for a hand-over why the explicit phase ended."""
    name = solver_name(phase.solver)
    previous = [out for p, out, _ in pieces if p is not phase]
    if not previous:
        return name
    steps = sum(int(o["num_steps"]) for o in previous)
    accepted = sum(int(o["num_accepted"]) for o in previous)
    return (
        f"{name} from tau = {t:.4g}: the explicit step size fell to "
        f"{t / max(accepted, 1):.2e} on average over {steps} steps with the residual "
        f"at {float(previous[-1]['residual']):.2e} (a stiff flow)"
    )


def _phase_status(out: dict[str, Any], settings: _Settings) -> str:
    if not bool(out["finite"]) or bool(out["grew"]):
        return "diverged"
    if bool(out["indefinite"]):
        return "indefinite"
    if bool(out["converged"]):
        r = float(out["residual"])
        return "converged" if r <= settings.tol * (1 + 1e-12) else "diverged"
    if bool(out["switched"]):
        return "switch"  # internal: the active set changes, the flow goes on
    if bool(out["successful"]):
        return "completed"
    if bool(out["max_steps"]):
        return "max_steps"
    return "solver_failed"


def _valid_first(*arrays: np.ndarray, ts: np.ndarray) -> list[np.ndarray]:
    keep = np.isfinite(ts)
    order = np.concatenate([np.nonzero(keep)[0], np.nonzero(~keep)[0]])
    return [a[order] for a in arrays]


def _assemble(
    sh, U0, metric, settings, pieces, solver_text, status, active=None, switches=0
) -> FlowSolution:
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
        sh, U0, metric, settings, last, num_steps, num_accepted, last_phase, status, switches
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
        active_set=active,
        switches=switches,
    )


def _diagnose(
    sh, U0, metric, settings, last, n, accepted, phase: Phase, status: str, switches=0
) -> str:
    """The sentence a failed status carries: where the flow stopped and the likely
    cause."""
    tau = float(last["tau"])
    r = float(last["residual"])
    if status == "max_steps" and switches >= MAX_SWITCHES:
        return (
            f"Stopped at tau = {tau:.4g} after {switches} changes of the active set "
            f"(the limit) and {n} steps, residual {r:.3e}. Likely cause: the active set "
            f"chatters (a component released and caught again on its bound: a multiplier "
            f"near zero, a degenerate bound)"
        )
    if status == "indefinite":
        return (
            f"The Newton metric's Hessian had non-positive curvature at tau = {tau:.6g} "
            f"(after {n} steps, residual {r:.3e})"
        )
    if status == "diverged":
        if math.isfinite(r):
            r0 = float(_start_kernel(sh, U0, metric, settings.on_hamiltonian)[1])
            return (
                f"The {settings.stop_on} residual grew from {r0:.3e} to {r:.3e} (past the "
                f"divergence limit) near tau = {tau:.6g} after {n} steps"
            )
        return f"The state became non-finite near tau = {tau:.6g} after {n} steps"
    if status == "solver_failed":
        reason = str(diffrax.RESULTS[last["solution"].result]).rstrip(".")
        if settings.dtmin is not None:
            reason = reason.replace(
                "minimum step size", f"minimum step size dtmin = {settings.dtmin:.3g}"
            )
        return (
            f"At tau = {tau:.6g} after {n} steps (residual {format_number(r, '.3e')}); "
            f"diffrax: {reason or 'no reason given'}"
        )
    if status != "max_steps":
        return ""
    r0 = float(_start_kernel(sh, U0, metric, settings.on_hamiltonian)[1])
    text = (
        f"Stopped at tau = {tau:.4g} after {n} steps with the {settings.stop_on} residual "
        f"{r:.3e} (tol {settings.tol if settings.tol is not None else math.inf:.1e}; "
        f"{r0:.3e} at tau = 0)"
    )
    if r > RUNAWAY * r0:
        return (
            f"{text}. Likely cause: the flow runs away (the residual grew by a factor "
            f"{r / r0:.3g}: a finite-time blow-up, or a descent direction without a "
            f"bound), with a divergence_factor too large to call it diverged; lower "
            f"divergence_factor, or set dtmin"
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
