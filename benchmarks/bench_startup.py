"""The first result, where users feel it: a fresh process, with and without JAX's
persistent compilation cache, against the peers a user would otherwise run.

    python benchmarks/bench_startup.py [--only analyze,equilibrium,flow] [--repeats 3]
                                       [--out FILE.json]

Every measurement runs in a fresh Python process (this script with `--child`), so it
includes what a user's first call pays: compilation, or loading compiled code from
the cache. Each repeat uses fresh temporary cache folders (`gradflow.enable_cache`,
or `GRADFLOW_CACHE_DIR` for the command line): *cold* means an empty cache (the run
compiles and writes it), *warm* the same folder on the next run, *no cache* the
cache turned off. The repeats interleave the variants, so that a change of load on
this shared machine hits them alike; the tables give medians.

1. `analyze`: the wall time of `gradflow analyze --out DIR` (the default problem;
   its figures, results.json and report.md), cold and warm, against the bare
   `python -c "import jax, diffrax, matplotlib.pyplot"` measured in the same run.
   Targets: warm <= 1.5x bare, cold <= 2.5x bare.
2. `equilibrium`: the first call of `stability.equilibrium(sh)` on van_der_pol,
   N = 200, forward Euler, from U = 0 (default `tol` 1e-10 on max|dH/du|), against
   CasADi + IPOPT with its exact Hessian on the same discretised problem: the same
   Euler recursion with the running cost as a third state, an SX step mapped with
   `mapaccum` and expanded, `ipopt.tol` = h * 1e-10 (the same rule on grad E^N =
   h dH/du). The IPOPT time is `nlpsol` construction plus the solve (CasADi's
   equivalent of compilation plus the run). Both end points are checked to agree.
   Targets: warm <= IPOPT, no cache <= 3x IPOPT.
3. `flow`: the first call of the stiff flow of `bench_flow.py` (van_der_pol,
   N = 10^3, Hamiltonian metric, from U = 0, to max|dH/du| <= 1e-8):
   `flow.gradient_flow` with `flow.stiff_solver(order=5, matrix_free=True)`, rtol
   1e-3, atol 1e-6, PI controller 0.3/0.3; against scipy's BDF and LSODA stepped to
   the same rule on the same jitted vector field with a jitted dense `jax.jacfwd`
   Jacobian, each timed from the `jax.jit` of its functions (so their compilation
   counts) to the end of the solve; the better of the two is the peer. Targets: no
   cache <= scipy, warm >= 3x faster than scipy.

The gradient's per-call time against CasADi is `bench_shooting.py`'s.

Prints tables and writes JSON to `--out` (default `benchmarks/results/startup.json`).
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import RESULTS_DIR, environment, finish, write_json


HERE = Path(__file__).resolve().parent
DEFAULT_OUT = RESULTS_DIR / "startup.json"
MARK = "BENCH_STARTUP_RESULT "
BARE_IMPORT = "import jax, diffrax, matplotlib.pyplot"

#: Targets (from the issue).
ANALYZE_WARM_MAX = 1.5  # warm / bare import
ANALYZE_COLD_MAX = 2.5  # cold / bare import
EQUILIBRIUM_WARM_MAX = 1.0  # warm / IPOPT
EQUILIBRIUM_NOCACHE_MAX = 3.0  # no cache / IPOPT
FLOW_NOCACHE_MAX = 1.0  # no cache / best scipy
FLOW_WARM_MAX = 1.0 / 3.0  # warm / best scipy

EQ_PROBLEM, EQ_N, EQ_TOL = "van_der_pol", 200, 1e-10
FLOW_PROBLEM, FLOW_N, FLOW_UNTIL = "van_der_pol", 1000, 1e-8
FLOW_RTOL, FLOW_ATOL = 1e-3, 1e-6
SCIPY_METHODS = ("BDF", "LSODA")
PROCESS_TIMEOUT_S = 300.0


# ----------------------------------------------------------------------------- children


def _cache(path: str | None) -> None:
    if path:
        import gradflow

        gradflow.enable_cache(path)


def child_equilibrium(cache: str | None) -> dict[str, Any]:
    import jax

    import flow
    import stability

    _cache(cache)
    sh = flow.shoot(flow.problems.get(EQ_PROBLEM), EQ_N)
    t0 = time.perf_counter()
    eq = stability.equilibrium(sh, tol=EQ_TOL)
    jax.block_until_ready(eq.U)
    call = time.perf_counter() - t0
    return dict(
        call_s=call,
        status=eq.status,
        hamiltonian_residual=eq.hamiltonian_residual,
        iterations=eq.num_steps,
        U=[float(u) for u in eq.U[:, 0]],
    )


def child_ipopt() -> dict[str, Any]:
    import casadi as ca
    import numpy as np

    import flow

    problem = flow.problems.get(EQ_PROBLEM)
    h = (problem.tf - problem.t0) / EQ_N
    t0 = time.perf_counter()
    x = ca.SX.sym("x", 3)
    u = ca.SX.sym("u")
    # van_der_pol: x1' = (1 - x2^2) x1 - x2 + u, x2' = x1, running cost x1^2 + x2^2 + u^2
    rhs = ca.vertcat((1 - x[1] ** 2) * x[0] - x[1] + u, x[0], x[0] ** 2 + x[1] ** 2 + u**2)
    step = ca.Function("step", [x, u], [x + h * rhs])
    U = ca.MX.sym("U", EQ_N)
    X = step.mapaccum("F", EQ_N)(ca.DM([0.0, 1.0, 0.0]), U.T)
    opts = {
        "expand": True,
        "print_time": 0,
        "ipopt.print_level": 0,
        "ipopt.sb": "yes",
        "ipopt.tol": h * EQ_TOL,
        "ipopt.hessian_approximation": "exact",
    }
    solver = ca.nlpsol("ipopt", "ipopt", {"x": U, "f": X[2, -1]}, opts)
    built = time.perf_counter()
    sol = solver(x0=np.zeros(EQ_N))
    done = time.perf_counter()
    stats = solver.stats()
    Us = np.asarray(sol["x"]).ravel()
    sh = flow.shoot(problem, EQ_N)
    dH = float(np.max(np.abs(np.asarray(sh.hamiltonian_gradient(Us[:, None])))))
    return dict(
        call_s=done - t0,
        build_s=built - t0,
        solve_s=done - built,
        status=stats["return_status"],
        iterations=int(stats["iter_count"]),
        hamiltonian_residual=dH,
        casadi=ca.__version__,
        U=[float(v) for v in Us],
    )


def child_flow(cache: str | None) -> dict[str, Any]:
    import jax

    import flow

    _cache(cache)
    sh = flow.shoot(flow.problems.get(FLOW_PROBLEM), FLOW_N)
    t0 = time.perf_counter()
    sol = flow.gradient_flow(
        sh,
        sh.zeros(),
        metric=flow.metrics.Hamiltonian(),
        solver=flow.stiff_solver(order=5, matrix_free=True),
        rtol=FLOW_RTOL,
        atol=FLOW_ATOL,
        pcoeff=0.3,
        icoeff=0.3,
        tol=FLOW_UNTIL,
        max_steps=100_000,
        throw=False,
    )
    jax.block_until_ready(sol.U)
    return dict(
        call_s=time.perf_counter() - t0,
        status=sol.status,
        residual=float(sol.residual),
        steps=int(sol.num_steps),
        solver=sol.solver,
    )


def child_scipy(method: str) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import scipy.integrate as si

    import flow

    sh = flow.shoot(flow.problems.get(FLOW_PROBLEM), FLOW_N)
    N, m = sh.control_shape
    F = flow.vector_field(sh, flow.metrics.Hamiltonian())
    t0 = time.perf_counter()
    f = jax.jit(lambda U: F(0.0, U.reshape(N, m), None).reshape(-1))
    # F = -grad/h for the Hamiltonian metric: max|F| is max|dH/du|
    r = jax.jit(lambda U: jnp.max(jnp.abs(F(0.0, U.reshape(N, m), None))))
    J = jax.jit(jax.jacfwd(f))
    solver = getattr(si, method)(
        lambda t, y: np.asarray(f(y)),
        0.0,
        np.zeros(N * m),
        1e30,
        rtol=FLOW_RTOL,
        atol=FLOW_ATOL,
        jac=lambda t, y: np.asarray(J(y)),
    )
    status, steps, res = "running", 0, float(r(np.zeros(N * m)))
    while res > FLOW_UNTIL:
        msg = solver.step()
        steps += 1
        if solver.status == "failed":
            status = f"failed: {msg}"
            break
        res = float(r(solver.y))
        if solver.status == "finished":
            status = "reached t_bound"
            break
    else:
        status = "converged"
    return dict(
        call_s=time.perf_counter() - t0,
        method=method,
        status=status,
        residual=res,
        steps=steps,
        nlu=None if getattr(solver, "nlu", None) is None else int(solver.nlu),
    )


def run_child(kind: str, arg: str | None) -> dict[str, Any]:
    if kind == "equilibrium":
        return child_equilibrium(arg)
    if kind == "ipopt":
        return child_ipopt()
    if kind == "flow":
        return child_flow(arg)
    if kind == "scipy":
        return child_scipy(arg or "BDF")
    raise ValueError(f"unknown child {kind!r}")


# ----------------------------------------------------------------------------- driver


def spawn(kind: str, arg: str | None = None) -> dict[str, Any]:
    """One child in a fresh interpreter: its result, plus the process's wall time."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind]
    if arg:
        cmd += ["--arg", arg]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"child {kind} {arg} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    row = json.loads(lines[-1][len(MARK) :])
    row["process_s"] = wall
    return row


def wall(cmd: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> float:
    """Wall time of a command (it must succeed)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    w = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return w


def gradflow_command() -> list[str]:
    script = Path(sys.executable).parent / "gradflow"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from gradflow._entry import main; sys.exit(main())"]


def bench_analyze(repeats: int, tmp: Path) -> dict[str, Any]:
    rows = []
    cmd = gradflow_command()
    for i in range(repeats):
        bare = wall([sys.executable, "-c", BARE_IMPORT])
        cache = tmp / f"analyze-cache-{i}"
        env = {**os.environ, "GRADFLOW_CACHE_DIR": str(cache)}
        out = str(tmp / f"analyze-out-{i}")
        cold = wall([*cmd, "analyze", "--out", out], env=env)
        warm = wall([*cmd, "analyze", "--out", out], env=env)
        off = wall([*cmd, "analyze", "--out", out], env={**os.environ, "GRADFLOW_CACHE_DIR": "off"})
        rows.append(dict(bare_s=bare, cold_s=cold, warm_s=warm, no_cache_s=off))
        print(
            f"  analyze {i + 1}/{repeats}: "
            + ", ".join(f"{k} {v:.2f}" for k, v in rows[-1].items()),
            flush=True,
        )
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    return dict(
        command=f"{' '.join(Path(c).name for c in cmd[:1])} analyze --out DIR",
        bare_command=f'python -c "{BARE_IMPORT}"',
        runs=rows,
        median=med,
        warm_over_bare=med["warm_s"] / med["bare_s"],
        cold_over_bare=med["cold_s"] / med["bare_s"],
        no_cache_over_bare=med["no_cache_s"] / med["bare_s"],
    )


def _variants(kind: str, tmp: Path, i: int) -> dict[str, dict[str, Any]]:
    """The child `kind` cold (a fresh cache folder), then warm (the same folder), then
    with no cache."""
    cache = str(tmp / f"{kind}-cache-{i}")
    return dict(cold=spawn(kind, cache), warm=spawn(kind, cache), no_cache=spawn(kind))


def bench_equilibrium(repeats: int, tmp: Path) -> dict[str, Any]:
    rows = []
    for i in range(repeats):
        ours = _variants("equilibrium", tmp, i)
        cold, warm, off = ours["cold"], ours["warm"], ours["no_cache"]
        ipopt = spawn("ipopt")
        rows.append(dict(**ours, ipopt=ipopt))
        print(
            f"  equilibrium {i + 1}/{repeats}: cold {cold['call_s']:.2f}, "
            f"warm {warm['call_s']:.2f}, no cache {off['call_s']:.2f}, "
            f"IPOPT {ipopt['call_s']:.2f} (build {ipopt['build_s']:.2f})",
            flush=True,
        )
    med = {k: statistics.median(r[k]["call_s"] for r in rows) for k in rows[0]}
    last = rows[-1]
    U_flow, U_ipopt = last["no_cache"].pop("U"), last["ipopt"].pop("U")
    for r in rows:
        for v in r.values():
            v.pop("U", None)
    agree = max(abs(a - b) for a, b in zip(U_flow, U_ipopt, strict=True))
    return dict(
        problem=EQ_PROBLEM,
        N=EQ_N,
        tol=EQ_TOL,
        runs=rows,
        median_call_s=med,
        ipopt_build_median_s=statistics.median(r["ipopt"]["build_s"] for r in rows),
        warm_over_ipopt=med["warm"] / med["ipopt"],
        no_cache_over_ipopt=med["no_cache"] / med["ipopt"],
        max_abs_U_difference=agree,
    )


def bench_flow(repeats: int, tmp: Path) -> dict[str, Any]:
    rows = []
    for i in range(repeats):
        ours = _variants("flow", tmp, i)
        cold, warm, off = ours["cold"], ours["warm"], ours["no_cache"]
        sp = {m: spawn("scipy", m) for m in SCIPY_METHODS}
        rows.append(
            dict(cold=cold, warm=warm, no_cache=off, **{f"scipy_{m}": r for m, r in sp.items()})
        )
        print(
            f"  flow {i + 1}/{repeats}: cold {cold['call_s']:.2f}, warm {warm['call_s']:.2f}, "
            f"no cache {off['call_s']:.2f}, "
            + ", ".join(f"scipy {m} {r['call_s']:.2f} ({r['status']})" for m, r in sp.items()),
            flush=True,
        )
    med = {k: statistics.median(r[k]["call_s"] for r in rows) for k in rows[0]}
    best = min(SCIPY_METHODS, key=lambda m: med[f"scipy_{m}"])
    peer = med[f"scipy_{best}"]
    return dict(
        problem=FLOW_PROBLEM,
        N=FLOW_N,
        until=FLOW_UNTIL,
        runs=rows,
        median_call_s=med,
        best_scipy=best,
        no_cache_over_scipy=med["no_cache"] / peer,
        warm_over_scipy=med["warm"] / peer,
        scipy_over_warm=peer / med["warm"],
    )


#: (part, name, key of the part's results, bound, "max" or "min") for every target.
TARGETS = (
    ("analyze", "analyze warm / bare import", "warm_over_bare", ANALYZE_WARM_MAX, "max"),
    ("analyze", "analyze cold / bare import", "cold_over_bare", ANALYZE_COLD_MAX, "max"),
    ("equilibrium", "equilibrium warm / IPOPT", "warm_over_ipopt", EQUILIBRIUM_WARM_MAX, "max"),
    (
        "equilibrium",
        "equilibrium no cache / IPOPT",
        "no_cache_over_ipopt",
        EQUILIBRIUM_NOCACHE_MAX,
        "max",
    ),
    ("flow", "stiff flow no cache / best scipy", "no_cache_over_scipy", FLOW_NOCACHE_MAX, "max"),
    ("flow", "stiff flow: best scipy / warm", "scipy_over_warm", 1 / FLOW_WARM_MAX, "min"),
)


def targets(res: dict[str, Any]) -> list[tuple[str, float, str, bool]]:
    """(name, measured value, rule, met) for the targets of the parts that ran."""
    out = []
    for part, name, key, bound, kind in TARGETS:
        if part in res:
            value = res[part][key]
            ok = value <= bound if kind == "max" else value >= bound
            out.append((name, value, f"{'<=' if kind == 'max' else '>='} {bound:g}", bool(ok)))
    return out


def print_tables(res: dict[str, Any]) -> None:
    if "analyze" in res:
        m = res["analyze"]["median"]
        print("\n| gradflow analyze (median s) | bare import | cold | warm | no cache |")
        print("|---|---|---|---|---|")
        print(
            f"| wall | {m['bare_s']:.2f} | {m['cold_s']:.2f} | {m['warm_s']:.2f} | "
            f"{m['no_cache_s']:.2f} |"
        )
    if "equilibrium" in res:
        m = res["equilibrium"]["median_call_s"]
        print("\n| equilibrium, first call (median s) | cold | warm | no cache | IPOPT (build) |")
        print("|---|---|---|---|---|")
        b = res["equilibrium"]["ipopt_build_median_s"]
        print(
            f"| call | {m['cold']:.2f} | {m['warm']:.2f} | {m['no_cache']:.2f} | "
            f"{m['ipopt']:.2f} ({b:.2f}) |"
        )
    if "flow" in res:
        m = res["flow"]["median_call_s"]
        cols = ["cold", "warm", "no_cache", *[f"scipy_{s}" for s in SCIPY_METHODS]]
        print("\n| stiff flow, first call (median s) | " + " | ".join(cols) + " |")
        print("|---" * (len(cols) + 1) + "|")
        print("| call | " + " | ".join(f"{m[c]:.2f}" for c in cols) + " |")
    print("\n| target | value | rule | met |")
    print("|---|---|---|---|")
    for name, value, rule, ok in targets(res):
        print(f"| {name} | {value:.2f} | {rule} | {'met' if ok else 'NOT MET'} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="analyze,equilibrium,flow")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--arg", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(MARK + json.dumps(run_child(args.child, args.arg)), flush=True)
        return 0
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(parts) - {"analyze", "equilibrium", "flow"}
    if unknown:
        parser.error(f"--only: unknown part(s) {sorted(unknown)}")
    t_start = time.perf_counter()
    env = environment(dirty=("flow", "stability", "gradflow", "figures"))
    print(f"bench_startup: {parts}, {args.repeats} repeats; load avg {env['loadavg_start']}")
    tmp = Path(tempfile.mkdtemp(prefix="gradflow-bench-startup-"))
    res: dict[str, Any] = {}
    try:
        bench = {"analyze": bench_analyze, "equilibrium": bench_equilibrium, "flow": bench_flow}
        for p in parts:
            res[p] = bench[p](args.repeats, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_tables(res)
    finish(env, t_start)
    result = {
        "command": " ".join(["python", "benchmarks/bench_startup.py", *sys.argv[1:]]),
        "environment": env,
        "repeats": args.repeats,
        **res,
        "targets": [dict(target=n, value=v, rule=r, met=ok) for n, v, r, ok in targets(res)],
    }
    print(f"\nwrote {write_json(args.out, result)} ({env['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
