"""The bounded equilibrium against CasADi + IPOPT on the same discretised problem.

    python benchmarks/bench_bounds.py [--ns 200,2000] [--limit 120] [--out FILE.json]

For each built-in bounded problem (`van_der_pol_bounded`, -0.3 <= u <= 1;
`lotka_volterra_bounded`, 0 <= u <= 1) and each N, in one run:

- **flow**: `stability.equilibrium(flow.shoot(problem, N))`, projected Newton-CG from
  U = 0 to max|U - P_B(U - dH/du)| <= 1e-10. *First call* is the call in a process
  that has not compiled this N yet (compilation included); *steady* is the median of
  further calls.
- **IPOPT**: the same Euler recursion with the running cost as a last state, an SX
  step mapped with `mapaccum` and expanded, bounds on U, `ipopt.tol` = h * 1e-10 (the
  same rule on grad E^N = h dH/du), no relaxation of the bounds; with the exact
  Hessian (the peer) and with IPOPT's limited-memory quasi-Newton Hessian. *First
  call* is `nlpsol` construction plus the solve (CasADi's equivalent of compiling);
  *steady* is the median of further solves of the built solver. Each IPOPT variant
  runs in a child process with a time limit (`--limit`, default 120 s): the exact
  Hessian of single shooting is dense, and from N = 1000 its construction does not
  end within minutes; such a run is recorded as timed out.

Both end points are compared: the controls (max abs difference) and the active sets
(IPOPT's: within 1e-6 of a bound). Prints a table and writes JSON to `--out` (default
`benchmarks/results/bounds.json`). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _harness import RESULTS_DIR, environment, finish, write_json


DEFAULT_OUT = RESULTS_DIR / "bounds.json"
TOL = 1e-10
PROBLEMS = {
    "van_der_pol_bounded": (
        -0.3,
        1.0,
        lambda ca, x, u: ca.vertcat(
            (1 - x[1] ** 2) * x[0] - x[1] + u, x[0], x[0] ** 2 + x[1] ** 2 + u**2
        ),
    ),
    "lotka_volterra_bounded": (
        0.0,
        1.0,
        lambda ca, x, u: ca.vertcat(
            x[0] - x[0] * x[1] - 0.4 * x[0] * u,
            -x[1] + x[0] * x[1] - 0.2 * x[1] * u,
            (x[0] - 1) ** 2 + (x[1] - 1) ** 2 + 0.1 * u**2,
        ),
    ),
}
REPEATS = 5


def bench_flow(name: str, N: int) -> dict[str, Any]:
    import jax

    import flow
    import stability

    sh = flow.shoot(flow.problems.get(name), N)
    t0 = time.perf_counter()
    eq = stability.equilibrium(sh, tol=TOL)
    jax.block_until_ready(eq.U)
    first = time.perf_counter() - t0
    steady = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        jax.block_until_ready(stability.equilibrium(sh, tol=TOL).U)
        steady.append(time.perf_counter() - t0)
    return dict(
        first_s=first,
        steady_s=statistics.median(steady),
        status=eq.status,
        iterations=eq.num_steps,
        hvp=eq.num_hvp,
        residual=eq.hamiltonian_residual,
        num_active=eq.num_active,
        U=np.asarray(eq.U).ravel(),
        active=np.asarray(eq.active_set).ravel(),
    )


def bench_ipopt(name: str, N: int, hessian: str) -> dict[str, Any]:
    import casadi as ca

    import flow

    lower, upper, rhs = PROBLEMS[name]
    problem = flow.problems.get(name)
    h = (problem.tf - problem.t0) / N
    x0 = list(np.asarray(problem.x0)) + ([0.0] if problem.running_cost is not None else [])
    t0 = time.perf_counter()
    x = ca.SX.sym("x", len(x0))
    u = ca.SX.sym("u")
    step = ca.Function("step", [x, u], [x + h * rhs(ca, x, u)])
    U = ca.MX.sym("U", N)
    X = step.mapaccum("F", N)(ca.DM(x0), U.T)
    opts = {
        "expand": True,
        "print_time": 0,
        "ipopt.print_level": 0,
        "ipopt.sb": "yes",
        "ipopt.tol": h * TOL,
        "ipopt.bound_relax_factor": 0.0,
        "ipopt.hessian_approximation": hessian,
    }
    solver = ca.nlpsol("ipopt", "ipopt", {"x": U, "f": X[-1, -1]}, opts)
    built = time.perf_counter()
    sol = solver(x0=np.zeros(N), lbx=lower, ubx=upper)
    first = time.perf_counter() - t0
    stats = solver.stats()
    steady = []
    for _ in range(REPEATS if first < 10 else 0):
        t1 = time.perf_counter()
        solver(x0=np.zeros(N), lbx=lower, ubx=upper)
        steady.append(time.perf_counter() - t1)
    Us = np.asarray(sol["x"]).ravel()
    return dict(
        hessian=hessian,
        first_s=first,
        build_s=built - t0,
        steady_s=statistics.median(steady) if steady else None,
        status=stats["return_status"],
        iterations=int(stats["iter_count"]),
        U=Us.tolist(),
        active=np.where(Us <= lower + 1e-6, -1, np.where(Us >= upper - 1e-6, 1, 0)).tolist(),
        casadi=ca.__version__,
    )


def ipopt_in_child(name: str, N: int, hessian: str, limit: float) -> dict[str, Any]:
    """`bench_ipopt` in a fresh process, stopped after `limit` seconds."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, str(N), hessian]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return dict(hessian=hessian, timed_out=True, limit_s=limit)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out.update(timed_out=False, U=np.asarray(out["U"]), active=np.asarray(out["active"]))
    return out


def _compare(ours: dict[str, Any], peer: dict[str, Any]) -> dict[str, Any]:
    record = {k: v for k, v in peer.items() if k not in ("U", "active")}
    if peer["timed_out"]:
        return record
    record.update(
        max_abs_U_difference=float(np.max(np.abs(ours["U"] - peer["U"]))),
        same_active_set=bool(np.array_equal(ours["active"], peer["active"])),
        flow_first_over_ipopt=ours["first_s"] / peer["first_s"],
        flow_steady_over_ipopt=(ours["steady_s"] / peer["steady_s"] if peer["steady_s"] else None),
    )
    return record


def _cell(peer: dict[str, Any], key: str, scale: float, fmt: str, unit: str) -> str:
    if peer["timed_out"]:
        return f"> {peer['limit_s']:.0f} s (stopped)" if key == "first_s" else "-"
    value = peer.get(key)
    return "-" if value is None else f"{value * scale:{fmt}} {unit}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ns", default="200,2000", help="grid sizes (default 200,2000)")
    parser.add_argument("--limit", type=float, default=120.0, help="seconds per IPOPT run")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--child", nargs=3, metavar=("PROBLEM", "N", "HESSIAN"))
    args = parser.parse_args(argv)
    if args.child:
        name, N, hessian = args.child
        print(json.dumps(bench_ipopt(name, int(N), hessian)))
        return 0
    Ns = [int(n) for n in args.ns.split(",")]
    t_start = time.perf_counter()
    env = environment(["casadi"], dirty=("flow", "stability"), command=" ".join(sys.argv))
    rows = []
    for name in PROBLEMS:
        for N in Ns:
            ours = bench_flow(name, N)
            peers = {h: ipopt_in_child(name, N, h, args.limit) for h in ("exact", "limited-memory")}
            row = dict(
                problem=name,
                N=N,
                flow={k: v for k, v in ours.items() if k not in ("U", "active")},
                ipopt={h: _compare(ours, p) for h, p in peers.items()},
            )
            rows.append(row)
            print(f"  {name} N={N}: flow {row['flow']}", flush=True)
            for h, p in row["ipopt"].items():
                print(f"    IPOPT {h}: {p}", flush=True)
    print()
    print(
        "| problem | N | flow first call | flow steady | IPOPT exact first call | steady "
        "| IPOPT limited-memory first call | steady | max abs dU (exact) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        f, ex, lm = r["flow"], r["ipopt"]["exact"], r["ipopt"]["limited-memory"]
        du = ex.get("max_abs_U_difference", lm.get("max_abs_U_difference"))
        print(
            f"| {r['problem']} | {r['N']} | {f['first_s']:.3f} s | {f['steady_s'] * 1e3:.2f} ms "
            f"| {_cell(ex, 'first_s', 1, '.3f', 's')} | {_cell(ex, 'steady_s', 1e3, '.1f', 'ms')} "
            f"| {_cell(lm, 'first_s', 1, '.3f', 's')} | {_cell(lm, 'steady_s', 1e3, '.1f', 'ms')} "
            f"| {'-' if du is None else format(du, '.1e')} |"
        )
    finish(env, t_start)
    path = write_json(args.out, {"environment": env, "tol": TOL, "rows": rows})
    print(f"\nwrote {path} ({env['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
