"""Speed benchmark of the gradient flow (`flow.gradient_flow`) and the discrete descent
(`flow.descend`), next to `scipy.integrate` on the same jitted vector field.

    python benchmarks/bench_flow.py [--quick] [--out FILE.json]

Part 1, time to convergence. On `scalar_regularized` (non-stiff) and `van_der_pol`
(stiff), forward Euler, Hamiltonian metric, from U = 0, integrate the flow
dU/dtau = -grad E^N(U)/h until max|dH/du| = max_k |grad_k E^N / h_k| <= 1e-8, at
N = 10^3 and 10^4 (``--quick``: 10^3 only, scipy caps of 10 s, no dense Kvaerno), with

- flow: `diffrax.Tsit5()`; `flow.stiff_solver(order=3 | 5, matrix_free=True | False)`
  (Kvaerno3/5; dense = VeryChord + LU of the materialised Jacobian, matrix-free =
  flow's inexact Newton-Krylov: GMRES tested after every Jacobian-vector product;
  dense only on van_der_pol at N = 10^3) with the PI controller 0.3/0.3; on
  van_der_pol also a *comparison variant*: the previous matrix-free set-up,
  optimistix Newton + lineax GMRES(restart=5) (see README.md, diagnosis);
- scipy: RK45, LSODA, BDF, Radau on `jax.jit(F)` (numpy <-> jax at each call), with
  scipy's default finite-difference Jacobian (N*m vector-field calls each) and with
  `jac=` a dense jitted `jax.jacfwd(F)`. The OdeSolver classes are stepped directly
  (what `solve_ivp` does) and stop at the first step whose end point has residual
  <= 1e-8: the same rule as flow's diffrax `Event` (no root finding on either side).

Tolerances (the same for flow and scipy): explicit methods (Tsit5, RK45, "LSODA
tight") rtol 1e-8 / atol 1e-10 -- at looser tolerances their error-controlled steps sit
at the stability limit and the residual stalls at about the tolerance, above 1e-8;
implicit methods (Kvaerno, BDF, Radau, "LSODA loose") rtol 1e-3 / atol 1e-6.

Every run has a cap: diffrax a `max_steps` (Tsit5 on the stiff problem), scipy a
wall-clock cap checked in each vector-field call and after each step. Runs that would
obviously take far longer than the cap (scipy implicit methods at N = 10^4: an LU of a
dense 10^4 x 10^4 matrix takes 8-15 s here and they need tens of them) are run capped
once (BDF, LSODA) or skipped, and a lower bound is projected from the measured cost of
one LU at that N times the number of LUs the same method needed at N = 10^3.

Timing: the first call (compile + run) and the steady state (median of repeats; one
repeat when a run takes > 2 s; none when > 15 s, then the steady time is the first call
minus the compile time JAX reports through `jax.monitoring`). Compile time = first call
minus steady median.

Part 2, descend overhead. `flow.descend(sh, 0, metric=Hamiltonian(), step=alpha,
max_steps=K)` (no tol; default and `save_iterates=False`) against K bare gradient
steps U <- U - alpha * grad/h in one jitted `lax.fori_loop`, K = 200, N = 10^3, 10^4,
10^5 (``--quick``: 10^3); alpha = 0.5 (scalar_regularized) and 2e-5 (van_der_pol,
below its forward-Euler bound 2/lambda_max ~ 4.5e-5). Target ratio <= 1.2.

Writes tables to stdout and JSON to ``--out`` (default ``benchmarks/results/flow.json``;
``--quick``: ``benchmarks/results/flow-quick.tmp``, git-ignored). See README.md.
Timing, compile-time tracking, the environment record and the JSON writing come from
`_harness.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx
import scipy.integrate as si
import scipy.linalg as sla
from _harness import CompileTimer, environment, finish, fmt_n, repeat, write_json

import flow
from flow import metrics, problems


HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "flow.json"
DEFAULT_QUICK_OUT = HERE / "results" / "flow-quick.tmp"

PROBLEMS = ("scalar_regularized", "van_der_pol")
STIFF = {"scalar_regularized": False, "van_der_pol": True}
FULL_NS = (10**3, 10**4)
QUICK_NS = (10**3,)
DESCEND_NS_FULL = (10**3, 10**4, 10**5)
DESCEND_NS_QUICK = (10**3,)
DESCEND_K = 200
DESCEND_ALPHA = {"scalar_regularized": 0.5, "van_der_pol": 2e-5}

UNTIL = 1e-8
TIGHT = (1e-8, 1e-10)  # explicit methods
LOOSE = (1e-3, 1e-6)  # implicit methods
PI = dict(pcoeff=0.3, icoeff=0.3)

#: Dense (materialised-Jacobian) Kvaerno only up to this N: at 10^4 the Jacobian has
#: 10^8 entries (0.8 GB, 10^4 HVPs) and its LU ~15 s here, per step.
DENSE_MAX_N = 10**3
#: Tsit5 on the stiff problem: stable step ~ 3.3/lambda_max ~ 7e-5 (lambda_max ~ 4.4e4),
#: tau ~ 10-15 to converge: ~2e5 steps. Capped at about 5 s of work.
EXPLICIT_STIFF_STEP_BUDGET = 2 * 10**7  # max_steps = this / N
#: scipy wall-clock caps (s): per run.
SCIPY_CAP = {10**3: 30.0, 10**4: 20.0}
SCIPY_CAP_QUICK = 10.0
SCIPY_EXPLICIT_STIFF_CAP = 10.0
#: Repeat policy.
ONE_REPEAT_ABOVE_S = 2.0
NO_REPEAT_ABOVE_S = 15.0

NONSTIFF_TARGET = 1.0  # Tsit5 / best scipy <= 1
STIFF_TARGET = 5.0  # best scipy implicit / best flow implicit >= 5
DESCEND_TARGET = 1.2

# ----------------------------------------------------------------------------- timing


def time_calls(call: Callable[[], Any], *, budget_s: float = 1.0, max_repeats: int = 10) -> dict:
    """First call, then repeats by the policy in the module docstring."""
    last: list[Any] = []

    def keep() -> None:
        last[:] = [call()]

    with CompileTimer() as ct:
        t0 = time.perf_counter()
        keep()
        first = time.perf_counter() - t0
    monitored = ct.seconds
    est = first - monitored
    times: list[float] = []
    if est <= NO_REPEAT_ABOVE_S:
        n_min = 1 if est > ONE_REPEAT_ABOVE_S else 3
        n_max = 1 if est > ONE_REPEAT_ABOVE_S else max_repeats
        times, _ = repeat(keep, min_repeats=n_min, max_repeats=n_max, budget_s=budget_s)
    out = last[0]
    if times:
        steady, how = statistics.median(times), f"median of {len(times)}"
    else:
        steady, how = est, "single call: first call minus monitored compile time"
    return {
        "out": out,
        "first_call_s": first,
        "steady_s": steady,
        "steady_min_s": min(times) if times else est,
        "repeats": len(times),
        "steady_how": how,
        "compile_s": first - steady,
        "compile_monitored_s": monitored,
    }


# ----------------------------------------------------------------------------- flow side


def _gmres_variant(order: int, restart: int) -> diffrax.AbstractImplicitSolver:
    """The previous matrix-free set-up (diagnostic): optimistix Newton + lineax GMRES."""
    rf = diffrax.with_stepsize_controller_tols(optx.Newton)(
        linear_solver=lx.GMRES(
            rtol=1e-6, atol=1e-14, restart=restart, stagnation_iters=restart, max_steps=400
        )
    )
    return {3: diffrax.Kvaerno3, 5: diffrax.Kvaerno5}[order](root_finder=rf)


def flow_configs(name: str, N: int, quick: bool) -> list[dict[str, Any]]:
    stiff = STIFF[name]
    tsit_steps = int(EXPLICIT_STIFF_STEP_BUDGET // N) if stiff else 100_000
    out = [
        dict(key="Tsit5", solver=lambda: diffrax.Tsit5(), tol=TIGHT, kw={}, max_steps=tsit_steps),
    ]
    for order in (3, 5):
        out.append(
            dict(
                key=f"Kvaerno{order} matrix-free",
                solver=lambda o=order: flow.stiff_solver(order=o, matrix_free=True),
                tol=LOOSE,
                kw=PI,
                max_steps=100_000,
            )
        )
    for order in (3, 5):
        skip = None
        if N > DENSE_MAX_N:
            skip = "dense Jacobian at N = 10^4: 0.8 GB, 10^4 HVPs, one LU (8-15 s here) per step"
        elif not stiff:
            skip = "non-stiff problem: dense implicit run on van_der_pol only (time budget)"
        elif quick:
            skip = "--quick (a dense run takes 15-30 s)"
        out.append(
            dict(
                key=f"Kvaerno{order} dense",
                solver=lambda o=order: flow.stiff_solver(order=o, matrix_free=False),
                tol=LOOSE,
                kw=PI,
                max_steps=100_000,
                skip=skip,
            )
        )
    if stiff:
        for order in (3, 5) if N <= 10**3 else (5,):
            out.append(
                dict(
                    key=f"Kvaerno{order} optx Newton + lineax GMRES(5) [previous default]",
                    solver=lambda o=order: _gmres_variant(o, 5),
                    tol=LOOSE,
                    kw=PI,
                    max_steps=100_000,
                    variant=True,
                )
            )
    return out


def bench_flow_solver(sh: flow.Shooting, cfg: dict[str, Any]) -> dict[str, Any]:
    load = os.getloadavg()[0]
    rtol, atol = cfg["tol"]
    solver = cfg["solver"]()
    U0 = sh.zeros()
    H = metrics.Hamiltonian()

    def call() -> flow.FlowSolution:
        sol = flow.gradient_flow(
            sh,
            U0,
            metric=H,
            rtol=rtol,
            atol=atol,
            tol=UNTIL,
            solver=solver,
            max_steps=cfg["max_steps"],
            throw=False,
            **cfg["kw"],
        )
        jax.block_until_ready(sol.U)
        return sol

    t = time_calls(call)
    sol = t.pop("out")
    res = float(sol.residual)  # max|grad/h| at the final control (stop_on="hamiltonian")
    steps = int(sol.num_steps)
    return dict(
        side="flow",
        method=cfg["key"],
        variant=cfg.get("variant", False),
        rtol=rtol,
        atol=atol,
        max_steps=cfg["max_steps"],
        reached=bool(res <= UNTIL),
        status=sol.status,
        message=sol.message,
        solver=sol.solver,
        steps=steps,
        accepted=int(sol.num_accepted_steps),
        rejected=int(sol.num_rejected_steps),
        tau_final=float(sol.tau_final),
        residual=res,
        ms_per_step=1e3 * t["steady_s"] / max(steps, 1),
        loadavg_1min=load,
        **t,
        _U=sol.U,
    )


# ----------------------------------------------------------------------------- scipy side


class _Cap(Exception):
    pass


_SCIPY_SOLVERS = {"RK45": si.RK45, "LSODA": si.LSODA, "BDF": si.BDF, "Radau": si.Radau}


def scipy_configs(name: str, N: int) -> list[dict[str, Any]]:
    big = N > 10**3
    proj = "skipped at N = 10^4: projected from one LU (see lower bound)"
    stiff = STIFF[name]
    return [
        dict(method="RK45", jac="-", tol=TIGHT, cap=SCIPY_EXPLICIT_STIFF_CAP if stiff else None),
        dict(
            method="LSODA",
            jac="FD",
            tol=TIGHT,
            label="LSODA tight",
            skip="stiff problem: LSODA runs at the implicit tolerances (LSODA loose)"
            if stiff
            else None,
        ),
        dict(
            method="LSODA",
            jac="FD",
            tol=LOOSE,
            label="LSODA loose",
            skip=proj if (big and not stiff) else None,
        ),
        dict(
            method="LSODA", jac="jacfwd", tol=LOOSE, label="LSODA loose", skip=proj if big else None
        ),
        dict(method="BDF", jac="FD", tol=LOOSE),
        dict(method="BDF", jac="jacfwd", tol=LOOSE, skip=proj if big else None),
        dict(method="Radau", jac="FD", tol=LOOSE, skip=proj if big else None),
        dict(method="Radau", jac="jacfwd", tol=LOOSE, skip=proj if big else None),
    ]


class ScipyProblem:
    """The jitted vector field, residual and dense Jacobian as numpy callables."""

    def __init__(self, sh: flow.Shooting, need_jac: bool):
        N, m = sh.control_shape
        F = flow.vector_field(sh, metrics.Hamiltonian())
        self.size = N * m
        self.f = jax.jit(lambda U: F(0.0, U.reshape(N, m), None).reshape(-1))
        # F = -grad/h for the Hamiltonian metric: max|F| is the residual max|dH/du|.
        self.r = jax.jit(lambda U: jnp.max(jnp.abs(F(0.0, U.reshape(N, m), None))))
        self.J = jax.jit(jax.jacfwd(self.f)) if need_jac else None
        y0 = np.zeros(self.size)
        self.compile_s: dict[str, float] = {}
        self.call_s: dict[str, float] = {}
        for key, fn in (("f", self.f), ("residual", self.r), ("jacfwd", self.J)):
            if fn is None:
                continue
            t0 = time.perf_counter()
            np.asarray(fn(y0))
            first = time.perf_counter() - t0
            reps = []
            while len(reps) < 5 and (len(reps) < 2 or sum(reps) < 0.3):
                t0 = time.perf_counter()
                np.asarray(fn(y0))
                reps.append(time.perf_counter() - t0)
            self.call_s[key] = statistics.median(reps)
            self.compile_s[key] = first - self.call_s[key]


def run_scipy_once(P: ScipyProblem, cfg: dict[str, Any], cap: float) -> dict[str, Any]:
    cnt = {"f": 0, "jac": 0, "res": 0}
    t0 = time.perf_counter()

    def fun(t: float, y: np.ndarray) -> np.ndarray:
        if time.perf_counter() - t0 > cap:
            raise _Cap
        cnt["f"] += 1
        return np.asarray(P.f(y))

    def jac(t: float, y: np.ndarray) -> np.ndarray:
        cnt["jac"] += 1
        return np.asarray(P.J(y))

    def resid(y: np.ndarray) -> float:
        cnt["res"] += 1
        return float(P.r(y))

    rtol, atol = cfg["tol"]
    kw = {"jac": jac} if cfg["jac"] == "jacfwd" else {}
    y0 = np.zeros(P.size)
    status, steps, solver, r = "running", 0, None, resid(y0)
    try:
        solver = _SCIPY_SOLVERS[cfg["method"]](fun, 0.0, y0, 1e30, rtol=rtol, atol=atol, **kw)
        while True:
            msg = solver.step()
            steps += 1
            if solver.status == "failed":
                status = f"failed: {msg}"
                break
            r = resid(solver.y)
            if r <= UNTIL:
                status = "converged"
                break
            if solver.status == "finished":
                status = "reached t_bound"
                break
            if time.perf_counter() - t0 > cap:
                raise _Cap
    except _Cap:
        status = f"capped at {cap:g} s"
    except Exception as e:  # noqa: BLE001 -- reported, not hidden
        status = f"error: {type(e).__name__}: {e}"
    wall = time.perf_counter() - t0
    if solver is not None and status.startswith("capped"):
        r = resid(solver.y)
    return dict(
        wall_s=wall,
        status=status,
        reached=status == "converged",
        steps=steps,
        tau_final=float(solver.t) if solver is not None else 0.0,
        residual=r,
        f_calls=cnt["f"],
        jac_calls=cnt["jac"],
        residual_calls=cnt["res"],
        nfev=getattr(solver, "nfev", None),
        njev=getattr(solver, "njev", None),
        nlu=getattr(solver, "nlu", None),
    )


def bench_scipy(P: ScipyProblem, cfg: dict[str, Any], cap: float) -> dict[str, Any]:
    load = os.getloadavg()[0]
    first = run_scipy_once(P, cfg, cap)
    runs = [first]
    if first["reached"] and first["wall_s"] < 1.0:
        while len(runs) < 10 and (len(runs) < 3 or sum(x["wall_s"] for x in runs) < 1.0):
            runs.append(run_scipy_once(P, cfg, cap))
    steady = statistics.median(x["wall_s"] for x in runs)
    row = dict(first)
    row.update(
        side="scipy",
        method=cfg.get("label", cfg["method"]),
        scipy_method=cfg["method"],
        jac=cfg["jac"],
        rtol=cfg["tol"][0],
        atol=cfg["tol"][1],
        cap_s=cap,
        steady_s=steady,
        repeats=len(runs),
        first_call_s=first["wall_s"],
        ms_per_step=1e3 * steady / max(first["steps"], 1),
        loadavg_1min=load,
    )
    return row


def time_dense_lu(n: int) -> float:
    """One LU factorisation of a dense n x n matrix (what BDF/Radau/LSODA do)."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, n)) + n * np.eye(n)
    t0 = time.perf_counter()
    sla.lu_factor(A, overwrite_a=True, check_finite=False)
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------- descend


def bench_descend(name: str, N: int) -> dict[str, Any]:
    sh = flow.shoot(problems.get(name), N)
    U0 = sh.zeros()
    alpha, K = DESCEND_ALPHA[name], DESCEND_K
    H = metrics.Hamiltonian()

    @eqx.filter_jit
    def bare(sh: flow.Shooting, U: jax.Array) -> jax.Array:
        h = sh.steps[:, None]
        return jax.lax.fori_loop(0, K, lambda i, V: V - alpha * sh.gradient(V) / h, U)

    def call_bare() -> Any:
        return jax.block_until_ready(bare(sh, U0))

    def call_descend(save: bool | None) -> Callable[[], Any]:
        def call() -> Any:
            kw = {} if save is None else {"save_iterates": save}  # None: flow's default
            tr = flow.descend(sh, U0, metric=H, step=alpha, max_steps=K, throw=False, **kw)
            return jax.block_until_ready(tr)

        return call

    row: dict[str, Any] = {
        "problem": name,
        "N": N,
        "K": K,
        "alpha": alpha,
        "loadavg_1min": os.getloadavg()[0],
    }
    tb = time_calls(call_bare, budget_s=1.0, max_repeats=20)
    Ub = tb.pop("out")
    td = time_calls(call_descend(None), budget_s=1.0, max_repeats=20)
    tr = td.pop("out")
    tn = time_calls(call_descend(False), budget_s=1.0, max_repeats=20)
    tn.pop("out")
    row.update(
        bare=tb,
        descend_default=td,
        descend_nosave=tn,
        iterates_saved=tr.iterates is not None,
        status=tr.status,
        message=tr.message,
        n_iterations=int(tr.num_steps),
        final_residual=float(tr.hamiltonian_norm[-1]),
        same_iterate_as_bare=float(
            np.max(np.abs(np.asarray(tr.U) - np.asarray(Ub)))
            / max(float(np.max(np.abs(Ub))), 1e-300)
        ),
        ratio_default=td["steady_s"] / tb["steady_s"],
        ratio_nosave=tn["steady_s"] / tb["steady_s"],
        us_per_iteration_bare=1e6 * tb["steady_s"] / K,
    )
    return row


# ----------------------------------------------------------------------------- reports


def _s(x: float | None) -> str:
    if x is None:
        return "–"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 0.1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def print_flow_table(name: str, N: int, rows: list[dict[str, Any]], extra: dict[str, Any]) -> None:
    print(f"\n#### {name}, N = {fmt_n(N)}\n")
    print(
        "| side | method | Jacobian | rtol / atol | reached 1e-8 | steps (rej.) | f calls | "
        "steady s | compile s | ms/step | final residual | tau |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "skip" in r:
            lb = r.get("lower_bound_s")
            lbs = f"; projected >= {lb:.0f} s" if lb else ""
            print(
                f"| {r['side']} | {r['method']} | {r.get('jac', '')} | | skipped: {r['skip']}{lbs} "
                "| | | | | | | |"
            )
            continue
        if r["side"] == "flow":
            jac = (
                "JVP (GMRES)"
                if ("matrix-free" in r["method"] or "GMRES" in r["method"])
                else ("dense (VeryChord)" if "dense" in r["method"] else "–")
            )
            fc = "–"
            comp = _s(r["compile_s"])
            steps = f"{r['steps']} ({r['rejected']})"
        else:
            jac = {"FD": "FD (scipy default)", "jacfwd": "dense jacfwd", "-": "–"}[r["jac"]]
            fc = str(r["f_calls"]) + (f" + {r['jac_calls']} J" if r["jac_calls"] else "")
            comp = "–"
            steps = str(r["steps"])
        reached = "yes" if r["reached"] else f"**no** ({r['status']})"
        steady = _s(r["steady_s"]) + (" (1 call)" if r.get("repeats", 1) <= 1 else "")
        print(
            f"| {r['side']} | {r['method']} | {jac} | {r['rtol']:g} / {r['atol']:g} | {reached} | "
            f"{steps} | {fc} | {steady} | {comp} | {r['ms_per_step']:.2f} | {r['residual']:.1e} | "
            f"{r['tau_final']:.3g} |"
        )
    if extra:
        print(f"\n{json.dumps(extra)}")


def print_descend_table(rows: list[dict[str, Any]]) -> None:
    print("\n#### descend vs bare gradient loop (K = 200; ms, steady median)\n")
    print(
        "| problem | N | alpha | bare loop | descend (default) | iterates saved | ratio | "
        "descend (save_iterates=False) | ratio | compile bare / descend s | status |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['problem']} | {fmt_n(r['N'])} | {r['alpha']:g} | "
            f"{1e3 * r['bare']['steady_s']:.2f} | {1e3 * r['descend_default']['steady_s']:.2f} | "
            f"{'yes' if r['iterates_saved'] else 'no'} | "
            f"{r['ratio_default']:.2f} | {1e3 * r['descend_nosave']['steady_s']:.2f} | "
            f"{r['ratio_nosave']:.2f} | {r['bare']['compile_s']:.2f} / "
            f"{r['descend_default']['compile_s']:.2f} | {r['status'].split(':')[0]}, "
            f"{r['n_iterations']} it. |"
        )


def check_targets(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"nonstiff": [], "stiff": [], "descend": []}
    for block in results["flow"].values():
        name, N = block["problem"], block["N"]
        rows = [r for r in block["rows"] if "skip" not in r]
        sp = [r for r in rows if r["side"] == "scipy" and r["reached"]]
        if not STIFF[name]:
            ts = next(r for r in rows if r["method"] == "Tsit5")
            best = min(sp, key=lambda r: r["steady_s"]) if sp else None
            ratio = ts["steady_s"] / best["steady_s"] if best else None
            out["nonstiff"].append(
                dict(
                    problem=name,
                    N=N,
                    tsit5_s=ts["steady_s"],
                    tsit5_reached=ts["reached"],
                    tsit5_compile_s=ts["compile_s"],
                    best_scipy=f"{best['method']} ({best['jac']})" if best else None,
                    best_scipy_s=best["steady_s"] if best else None,
                    ratio=ratio,
                    met=bool(ts["reached"] and ratio is not None and ratio <= NONSTIFF_TARGET),
                )
            )
        else:
            fl = [
                r
                for r in rows
                if r["side"] == "flow"
                and r["reached"]
                and not r["variant"]
                and r["method"] != "Tsit5"
            ]
            fv = [r for r in rows if r["side"] == "flow" and r["reached"] and r["variant"]]
            spi = [r for r in rows if r["side"] == "scipy" and r["scipy_method"] != "RK45"]
            bf = min(fl, key=lambda r: r["steady_s"]) if fl else None
            bv = min(fv, key=lambda r: r["steady_s"]) if fv else None
            # fastest scipy implicit method: its time if it finished, else a lower bound
            # (the cap it hit, or the projection for a skipped/capped run at N = 10^4)
            cands = []
            for r in spi:
                if r.get("reached"):
                    cands.append((r["steady_s"], False, r))
                else:
                    b = max(r.get("wall_s", 0.0), r.get("lower_bound_s", 0.0))
                    if b > 0:
                        cands.append((b, True, r))
            done = [c for c in cands if not c[1]]
            best_sp = min(done, key=lambda c: c[0])[2] if done else None
            best_sp_s = best_sp["steady_s"] if best_sp else None
            low = min(cands, key=lambda c: c[0]) if cands else None
            lower = low[0] if low else None
            lower_is_bound = bool(low and low[1])
            out["stiff"].append(
                dict(
                    problem=name,
                    N=N,
                    best_flow=bf["method"] if bf else None,
                    best_flow_s=bf["steady_s"] if bf else None,
                    best_scipy=f"{best_sp['method']} ({best_sp['jac']})" if best_sp else None,
                    best_scipy_s=best_sp_s,
                    scipy_lower_bound_s=lower,
                    scipy_is_bound=lower_is_bound,
                    scipy_fastest=f"{low[2]['method']} ({low[2]['jac']})" if low else None,
                    speedup=(lower / bf["steady_s"]) if (bf and lower) else None,
                    met=bool(bf and lower and lower / bf["steady_s"] >= STIFF_TARGET),
                    variant=bv["method"] if bv else None,
                    variant_s=bv["steady_s"] if bv else None,
                    variant_speedup=(lower / bv["steady_s"]) if (bv and lower) else None,
                )
            )
    for r in results["descend"]:
        out["descend"].append(
            dict(
                problem=r["problem"],
                N=r["N"],
                ratio_default=r["ratio_default"],
                ratio_nosave=r["ratio_nosave"],
                met=r["ratio_default"] <= DESCEND_TARGET,
            )
        )
    return out


def print_targets(t: dict[str, Any]) -> None:
    print("\n#### targets\n")
    for r in t["nonstiff"]:
        print(
            f"- non-stiff {r['problem']} N={fmt_n(r['N'])}: Tsit5 {_s(r['tsit5_s'])} s (compile "
            f"{_s(r['tsit5_compile_s'])} s) vs best scipy {r['best_scipy']} "
            f"{_s(r['best_scipy_s'])} s: "
            f"ratio {r['ratio']:.2f} -> {'MET' if r['met'] else 'NOT MET'}"
        )
    for r in t["stiff"]:
        sp = r["best_scipy"] or "none finished"
        print(
            f"- stiff {r['problem']} N={fmt_n(r['N'])}: best flow {r['best_flow']} "
            f"{_s(r['best_flow_s'])} s; "
            f"best scipy that finished {sp} {_s(r['best_scipy_s'])} s; scipy fastest "
            f"{r['scipy_fastest']} {_s(r['scipy_lower_bound_s'])} s"
            f"{' (a bound)' if r['scipy_is_bound'] else ''}: "
            f"speed-up {r['speedup'] or float('nan'):.1f}x "
            f"-> {'MET' if r['met'] else 'NOT MET'} "
            f"(variant {r['variant']}: {_s(r['variant_s'])} s, "
            f"{r['variant_speedup'] or float('nan'):.1f}x)"
        )
    for r in t["descend"]:
        print(
            f"- descend {r['problem']} N={fmt_n(r['N'])}: ratio {r['ratio_default']:.2f} "
            f"(no save {r['ratio_nosave']:.2f}) -> {'MET' if r['met'] else 'NOT MET'}"
        )


# ----------------------------------------------------------------------------- main


def _spectrum(sh: flow.Shooting, U: jax.Array) -> dict[str, Any]:
    H = np.asarray(sh.hessian(U, max_size=sh.N * sh.control_dim))
    ev = np.linalg.eigvalsh(H) / float(sh.steps[0])
    return {
        "min": float(ev.min()),
        "max": float(ev.max()),
        "top5": [float(x) for x in np.sort(ev)[-5:]],
        "count_above_100": int((ev > 100).sum()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="N = 10^3 only, shorter caps, no dense")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--only", choices=("flow", "descend"), default=None, help="run one part")
    args = ap.parse_args(argv)
    out_path = args.out or (DEFAULT_QUICK_OUT if args.quick else DEFAULT_OUT)
    Ns = QUICK_NS if args.quick else FULL_NS
    dNs = DESCEND_NS_QUICK if args.quick else DESCEND_NS_FULL
    t_start = time.perf_counter()
    env = environment(("diffrax", "optimistix", "lineax", "scipy"), dirty=("flow",))
    print(
        f"bench_flow: N = {[fmt_n(N) for N in Ns]}; {env['cpu']}, {env['cpu_count']} cpus; "
        f"jax {env['jax']}, diffrax {env['diffrax']}, scipy {env['scipy']}; "
        f"load avg {env['loadavg_start']}",
        flush=True,
    )
    results: dict[str, Any] = {"environment": env, "flow": {}, "descend": [], "lu_s": {}}
    if args.only != "descend":
        for N in Ns:
            if N > 10**3 and not args.quick:
                results["lu_s"][str(N)] = time_dense_lu(N)
                print(
                    f"one dense LU at N = {fmt_n(N)}: {results['lu_s'][str(N)]:.1f} s", flush=True
                )
        for name in PROBLEMS:
            for N in Ns:
                sh = flow.shoot(problems.get(name), N)
                rows: list[dict[str, Any]] = []
                U_star = None
                for cfg in flow_configs(name, N, args.quick):
                    if cfg.get("skip"):
                        rows.append(dict(side="flow", method=cfg["key"], skip=cfg["skip"]))
                        continue
                    r = bench_flow_solver(sh, cfg)
                    U = r.pop("_U")
                    if r["reached"] and U_star is None:
                        U_star = U
                    rows.append(r)
                    print(
                        f"  {name} {fmt_n(N)} flow {r['method']}: {r['status'][:40]}, "
                        f"{r['steps']} steps, steady {r['steady_s']:.3f} s, first "
                        f"{r['first_call_s']:.2f} s (load {r['loadavg_1min']:.1f})",
                        flush=True,
                    )
                cfgs = scipy_configs(name, N)
                P = ScipyProblem(
                    sh, need_jac=any(c["jac"] == "jacfwd" and not c.get("skip") for c in cfgs)
                )
                cap = SCIPY_CAP_QUICK if args.quick else SCIPY_CAP[N]
                for cfg in cfgs:
                    label = cfg.get("label", cfg["method"])
                    if cfg.get("skip"):
                        rows.append(
                            dict(side="scipy", method=label, jac=cfg["jac"], skip=cfg["skip"])
                        )
                        continue
                    r = bench_scipy(P, cfg, cfg.get("cap") or cap)
                    rows.append(r)
                    print(
                        f"  {name} {fmt_n(N)} scipy {label} ({cfg['jac']}): {r['status']}, "
                        f"{r['steps']} steps, {r['f_calls']} f, steady {r['steady_s']:.3f} s "
                        f"(load {r['loadavg_1min']:.1f})",
                        flush=True,
                    )
                extra: dict[str, Any] = {
                    "scipy_compile_s": P.compile_s,
                    "scipy_call_s": P.call_s,
                }
                if N == 10**3 and U_star is not None:
                    extra["spectrum_hess_over_h_at_solution"] = _spectrum(sh, U_star)
                results["flow"][f"{name}/{N}"] = {"problem": name, "N": N, "rows": rows, **extra}
        # project lower bounds for the skipped / capped scipy implicit runs at N > 10^3
        for block in results["flow"].values():
            N = block["N"]
            if N == 10**3 or str(N) not in results["lu_s"]:
                continue
            small = {
                (r["method"], r["jac"]): r
                for r in results["flow"].get(f"{block['problem']}/1000", {}).get("rows", [])
                if r["side"] == "scipy" and "skip" not in r
            }
            for r in block["rows"]:
                if r["side"] != "scipy" or r.get("scipy_method", r["method"]) == "RK45":
                    continue
                if "skip" not in r and r["reached"]:
                    continue
                ref = small.get((r["method"], r["jac"]))
                if ref and ref["reached"]:
                    nlu = ref["nlu"] or ref["njev"] or 0
                    r["lower_bound_s"] = nlu * results["lu_s"][str(N)]
                    r["lower_bound_how"] = (
                        f"{nlu} LUs (as at N = 10^3) x {results['lu_s'][str(N)]:.1f} s per LU at "
                        f"N = {fmt_n(N)}; Jacobians and steps not counted"
                    )
        for block in results["flow"].values():
            print_flow_table(
                block["problem"],
                block["N"],
                block["rows"],
                {k: v for k, v in block.items() if k not in ("rows", "problem", "N")},
            )
    if args.only != "flow":
        for name in PROBLEMS:
            for N in dNs:
                r = bench_descend(name, N)
                results["descend"].append(r)
                print(f"  descend {name} {fmt_n(N)}: ratio {r['ratio_default']:.2f}", flush=True)
        print_descend_table(results["descend"])
    if args.only is None:
        results["targets"] = check_targets(results)
        print_targets(results["targets"])
    finish(env, t_start)
    print(f"\nwall time {env['wall_s']:.0f} s; load avg at end {env['loadavg_end']}")
    print(f"wrote {write_json(out_path, results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
