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


@eqx.filter_jit
def _start_kernel(sh, U0, metric, on_hamiltonian: bool):
    c, g = jax.value_and_grad(type(sh).objective, argnums=1)(sh, U0)
    a = jnp.abs(g)
    r = jnp.max(a / sh.steps[:, None]) if on_hamiltonian else jnp.max(a)
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
    limit: Array,
    max_steps: int,
):
    """One diffrax solve from (t0, U0); the raw pieces the caller assembles."""
    h = sh.steps[:, None]
    grad = jax.grad(type(sh).objective, argnums=1)

    def residual(U):
        g = grad(sh, U)
        return jnp.max(jnp.abs(g / h)) if settings.on_hamiltonian else jnp.max(jnp.abs(g))

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
    event = diffrax.Event(tuple(conds))
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
            dtmin=settings.dtmin,
            force_dtmin=False,  # a step below dtmin ends the solve (solver_failed)
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
    fired_stop = mask[0]
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
        converged=event_hit & fired_stop & finite & (r_final <= limit),
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
    sh, U0, metric, settings: _Settings, phases, horizon, limit, max_steps
) -> FlowSolution:
    U = U0
    t = 0.0
    left = max_steps
    pieces = []
    names = []
    status = "solver_failed"
    for k, phase in enumerate(phases):
        budget = min(left, EXPLICIT_PROBE_STEPS) if phase.probe else left
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
    if not bool(out["finite"]) or bool(out["grew"]):
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
