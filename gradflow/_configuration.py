"""One configuration of a study, computed in the process that runs it: the problem
loaded from its spec and compiled here (jitted code does not pickle), its steps and
starts in one vmapped descent, and the outcomes asked for, as plain rows."""

from __future__ import annotations

import math
import time
import traceback
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import flow
import stability

from ._study import Configuration, Study


def starts(study: Study, control_shape: tuple[int, int]) -> np.ndarray:
    r"""The initial controls $U_0^{(s)} = $ `spread` $\cdot\,\xi^{(s)}$, shape
    `(starts, N, m)`, with the bounds' projection for a bounded problem done by
    `descend` itself. The draws depend only on the seed and the shape."""
    rng = np.random.default_rng([study.seed, *control_shape])
    return study.spread * rng.standard_normal((study.starts, *control_shape))


@eqx.filter_jit
def _descent_grid(sh, U0s, metric, alphas, max_steps: int, tol, stop_on: str):
    """Every (step, start) pair in one compiled call (steps and starts are traced:
    new values do not recompile)."""

    def one(alpha, U0):
        trace = flow.descend(
            sh, U0, metric=metric, step=alpha, max_steps=max_steps, tol=tol,
            stop_on=stop_on, throw=False,
        )  # fmt: skip
        return (
            trace.result,
            trace.num_steps,
            trace.diverged_at,
            trace.cost[trace.num_steps],
            trace.gradient_norm[trace.num_steps],
            trace.hamiltonian_norm[trace.num_steps],
            trace.period,
        )

    per_start = jax.vmap(one, in_axes=(None, 0))
    return jax.vmap(per_start, in_axes=(0, None))(alphas, U0s)


class _Batch(flow.AbstractResult):
    """The statuses of a vmapped descent (a batched `RESULTS` item)."""

    result: flow.RESULTS


def _reason(
    status: str, steps: int, diverged_at: int, residual: float, max_steps: int, period: int = 0
) -> str:
    if status == "converged":
        return ""
    if status == "diverged":
        return f"diverged at iteration {diverged_at}"
    if status == "nonfinite":
        return "the cost or gradient is not finite at the start"
    if status == "max_steps":
        return f"max_steps: residual {residual:.3e} after {max_steps} steps"
    if status == "oscillating":
        return f"settled on a cycle of period {period} after {steps} steps"
    return f"{status} after {steps} steps"


def _number(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _equilibrium_columns(study: Study, sh, metric: str) -> dict[str, Any]:
    eq = stability.equilibrium(sh, throw=False)
    # the equilibrium's own columns come with every outcome built on it (they say
    # why alpha_max is missing when it is)
    cols: dict[str, Any] = dict(
        equilibrium_status=eq.status,
        equilibrium_cost=_number(eq.cost),
        equilibrium_residual=_number(eq.hamiltonian_residual),
    )
    if eq.status != "converged":
        cols.update(alpha_max=None, alpha_opt=None)
        return cols
    spec = stability.spectrum(stability.linearize(sh, eq, metric=metric))
    if "spectrum" in study.compute:
        cols.update(
            mu_stiff=_number(spec.stiff),
            mu_slow=_number(spec.slow),
            classification=stability.classify(spec).kind,
        )
    bound = stability.euler_bound(spec)
    cols.update(alpha_max=_number(bound.alpha_max), alpha_opt=_number(bound.alpha_opt))
    if "euler_bound" in study.compute:
        cols.update(rho_opt=_number(bound.rho_opt))
    return cols


def compute(study: Study, config: Configuration) -> list[dict[str, Any]]:
    """The rows of one configuration: one per (step, start), with the
    configuration's columns repeated. Raises what the computation raises (the caller
    turns it into an `error` row)."""
    problem = flow.problems.load(config.problem)
    sh = flow.shoot(problem, config.N, flow.scheme_from_name(config.scheme))
    shared: dict[str, Any] = {}
    if study.needs_equilibrium:
        shared.update(_equilibrium_columns(study, sh, config.metric))
    multipliers = np.asarray(study.steps.multipliers())
    if study.steps.relative_to == "alpha_max":
        alpha_max = shared.get("alpha_max")
        if alpha_max is None:
            raise ValueError(
                "steps are relative to alpha_max, but there is no forward-Euler bound here "
                f"(equilibrium {shared.get('equilibrium_status')}, or an unstable flow)"
            )
        alphas = multipliers * alpha_max
    else:
        alphas = multipliers
    U0s = starts(study, sh.control_shape)
    metric = flow.metrics.as_metric(config.metric)
    result, num, div_at, cost, gnorm, hnorm, period = _descent_grid(
        sh, jnp.asarray(U0s), metric, jnp.asarray(alphas), study.max_steps,
        jnp.asarray(study.tol), study.stop_on,
    )  # fmt: skip
    statuses = np.asarray(_Batch(result).statuses).reshape(alphas.size, study.starts)
    num, div_at, period = np.asarray(num), np.asarray(div_at), np.asarray(period)
    cost, gnorm, hnorm = np.asarray(cost), np.asarray(gnorm), np.asarray(hnorm)
    h_min = float(np.min(np.asarray(sh.steps)))
    flows = _flows(study, sh, metric, U0s) if "flow" in study.compute else None
    rows = []
    for i, (alpha, mult) in enumerate(zip(alphas, multipliers, strict=True)):
        fraction = float(np.mean(statuses[i] == "converged"))
        for s in range(study.starts):
            status = str(statuses[i, s])
            r = hnorm[i, s] if study.stop_on == "hamiltonian" else gnorm[i, s]
            row = dict(
                step=float(alpha),
                step_multiplier=float(mult) if study.steps.relative_to else None,
                start=s,
                status=status,
                reason=_reason(
                    status,
                    int(num[i, s]),
                    int(div_at[i, s]),
                    r,
                    study.max_steps,
                    int(period[i, s]),
                ),  # fmt: skip
                iterations=int(num[i, s]),
                cost=_number(cost[i, s]),
                gradient_residual=_number(gnorm[i, s]),
                hamiltonian_residual=_number(hnorm[i, s]),
                **shared,
            )
            if "tolerance" in study.compute:
                # Theorem 5.14: |grad E^N| <= eps guarantees max|dH/du| <= eps / h_min
                row["guaranteed_hamiltonian_residual"] = _number(gnorm[i, s] / h_min)
            if "basin" in study.compute:
                row["basin_fraction"] = fraction
            if flows is not None:
                row.update(flows[s])
            rows.append(row)
    return rows


def _flows(study: Study, sh, metric, U0s: np.ndarray) -> list[dict[str, Any]]:
    out = []
    for U0 in U0s:
        sol = flow.gradient_flow(
            sh, U0, metric=metric, tol=study.tol, stop_on=study.stop_on,
            max_steps=max(study.max_steps, 10_000), throw=False,
        )  # fmt: skip
        out.append(
            dict(
                flow_status=sol.status,
                flow_tau=_number(sol.tau_final),
                flow_steps=int(sol.num_steps),
            )
        )
    return out


def run(study_data: dict[str, Any], config_data: dict[str, Any]) -> dict[str, Any]:
    """What a worker runs for one configuration (plain data in, plain data out, so
    that it pickles to a process or a Dask worker): `{"rows", "seconds", "error"}`.
    An exception becomes one row with status `error` and its message as the reason."""
    study = Study.from_dict(study_data)
    config = Configuration(**config_data)
    base = dict(problem=config.problem, N=config.N, scheme=config.scheme, metric=config.metric)
    t0 = time.perf_counter()
    try:
        rows = [base | row for row in compute(study, config)]
        error = None
    except Exception as e:  # noqa: BLE001 - every failure must become a row
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        error = f"{type(e).__name__}: {first}"
        rows = [base | dict(status="error", reason=error)]
        traceback.clear_frames(e.__traceback__)
    return dict(rows=rows, seconds=time.perf_counter() - t0, error=error)
