"""Speed benchmark of the shooting map (`flow.shoot`): cost, gradients, HVP, compile time.

    python benchmarks/bench_shooting.py [--quick] [--out FILE.json]

For N = 10^3 ... 10^6 (``--quick``: 10^3, 10^4) on `scalar_regularized` and
`van_der_pol` with forward Euler it records, per problem and N:

- steady-state wall time of `cost`, `gradient` ("autodiff", "costate",
  "finite-difference" where affordable) and `hessian_vector_product`:
  median and min over repeats after one warm-up call (each call is closed by
  `jax.block_until_ready`), and the minor page faults per call;
- compile time of each of them: the trace + lowering + XLA-compile durations
  JAX reports through `jax.monitoring` during the first call ("compile_s"), and,
  for reference, the first-call wall time and first call minus steady median;
- the ratios gradient/cost (target <= 2.5) and HVP/cost;
- a side-by-side with CasADi: the same forward-Euler recursion (running cost
  folded in as an extra state, exactly like `flow`) as an SX step function,
  mapped over the grid with `mapaccum`, reverse-mode gradient by
  `casadi.gradient`, evaluated by the CasADi virtual machines (no C code
  generation); for N <= 10^5 also the same graph expanded into one SX function.

Nothing timed loops over grid points in Python. Writes a table to stdout and JSON
to ``--out`` (default ``benchmarks/results/shooting.json``; with ``--quick``
``benchmarks/results/shooting-quick.tmp``, git-ignored). See benchmarks/README.md.
Timing, compile-time tracking, the environment record and the JSON writing come from
`_harness.py`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _harness import CompileTimer, environment, finish, fmt_n, repeat, summary, write_json

import flow
from flow import problems


HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "shooting.json"
#: `--quick` writes elsewhere by default (git-ignored by `benchmarks/results/*.tmp`), so a
#: smoke test never overwrites the committed full results. The file is JSON.
DEFAULT_QUICK_OUT = HERE / "results" / "shooting-quick.tmp"

FULL_NS = (10**3, 10**4, 10**5, 10**6)
QUICK_NS = (10**3, 10**4)
PROBLEMS = ("scalar_regularized", "van_der_pol")

#: Finite differences cost 2*N*m evaluations of E^N, each O(N): O(N^2) work.
#: At N = 10^4 one FD gradient takes ~1 s here, so N = 10^5 would take ~100 s
#: per call (and 10^6 ~3 hours): skipped.
FD_MAX_N = 10**4
#: CasADi through mapaccum: ~2 s per gradient at N = 10^6, affordable.
CASADI_MAX_N = 10**6
#: CasADi graph expanded to one SX function: expansion takes ~10 s at N = 10^5
#: and grows linearly in time and memory; 10^6 is skipped.
CASADI_EXPAND_MAX_N = 10**5

RATIO_TARGET = 2.5
#: "Compile time does not grow with N": compile time (median of 3 compilations) at
#: the largest N over that at the smallest N, for each function.
COMPILE_GROWTH_TOL = 1.5
#: CasADi and flow gradients must agree to this relative (max-norm) error.
AGREE_TOL = 1e-12

# ----------------------------------------------------------------------------- timing


def time_jax(
    fn: Callable[..., Any],
    *args: Any,
    min_repeats: int = 7,
    max_repeats: int = 200,
    budget_s: float = 0.5,
    warmup: int = 1,
    compile_repeats: int = 3,
) -> tuple[dict[str, Any], Any]:
    """First call (compile + one run), `warmup` calls, then the steady-state repeats;
    then `compile_repeats - 1` more compilations (after `jax.clear_caches()`), so
    that the reported compile time is a median, not one noisy sample."""

    def call() -> Any:
        return jax.block_until_ready(fn(*args))

    with CompileTimer() as first_compile:
        t0 = time.perf_counter()
        out = call()
        first = time.perf_counter() - t0
    compiles = [first_compile]
    for _ in range(warmup):
        call()
    times, faults = repeat(
        call, min_repeats=min_repeats, max_repeats=max_repeats, budget_s=budget_s
    )
    for _ in range(compile_repeats - 1):
        jax.clear_caches()
        with CompileTimer() as ct:
            call()
        compiles.append(ct)
    totals = [c.seconds for c in compiles]
    res = summary(times, faults)
    res.update(
        compile_s=statistics.median(totals),
        compile_samples_s=totals,
        compile_parts_s=first_compile.parts,
        first_call_s=first,
        first_minus_steady_s=first - res["median_s"],
    )
    return res, out


def time_py(
    fn: Callable[[], Any],
    *,
    min_repeats: int = 3,
    max_repeats: int = 100,
    budget_s: float = 0.5,
    warmup: int = 1,
) -> dict[str, Any]:
    for _ in range(warmup):
        fn()
    return summary(*repeat(fn, min_repeats=min_repeats, max_repeats=max_repeats, budget_s=budget_s))


# ----------------------------------------------------------------------------- flow


def bench_flow(name: str, N: int) -> dict[str, Any]:
    sh = flow.shoot(problems.get(name), N)
    U = flow.probe_control(sh)
    V = jnp.cos(3.0 * U) + 0.25  # any fixed direction; the HVP time does not depend on it
    assert U.dtype == jnp.float64 and U.shape == sh.control_shape
    budget = 1.0 if N >= 10**6 else 0.5

    row: dict[str, Any] = {"problem": name, "scheme": sh.scheme.name, "N": N, "m": sh.control_dim}
    row["cost"], c = time_jax(sh.cost, U, budget_s=budget)
    row["grad_autodiff"], g_ad = time_jax(lambda W: sh.gradient(W, "autodiff"), U, budget_s=budget)
    row["grad_costate"], g_co = time_jax(lambda W: sh.gradient(W, "costate"), U, budget_s=budget)
    row["hvp"], _ = time_jax(sh.hessian_vector_product, U, V, budget_s=budget)
    g_ad, g_co = np.asarray(g_ad), np.asarray(g_co)
    scale = float(np.max(np.abs(g_ad)))
    row["cost_value"] = float(c)
    row["costate_vs_autodiff_rel"] = float(np.max(np.abs(g_co - g_ad)) / scale)
    if N <= FD_MAX_N:
        fd, g_fd = time_jax(
            lambda W: sh.gradient(W, "finite-difference"),
            U,
            min_repeats=2,
            max_repeats=3,
            budget_s=2.0,
            warmup=0,
            compile_repeats=1,
        )
        fd["fd_vs_autodiff_rel"] = float(np.max(np.abs(np.asarray(g_fd) - g_ad)) / scale)
        row["grad_fd"] = fd
    else:
        row["grad_fd"] = {
            "skipped": f"N > {FD_MAX_N}: finite differences take 2*N*m cost evaluations "
            f"(O(N^2) work), ~(N/1e4)^2 s here"
        }
    cost_t = row["cost"]["median_s"]
    row["ratio_autodiff_cost"] = row["grad_autodiff"]["median_s"] / cost_t
    row["ratio_costate_cost"] = row["grad_costate"]["median_s"] / cost_t
    row["ratio_hvp_cost"] = row["hvp"]["median_s"] / cost_t
    return row


def bench_floor(name: str, N: int = 10) -> dict[str, Any]:
    """The per-call floor (Python dispatch, argument checks, equinox filtering) at tiny N."""
    sh = flow.shoot(problems.get(name), N)
    U = flow.probe_control(sh)
    cost, _ = time_jax(sh.cost, U, compile_repeats=1)
    grad, _ = time_jax(lambda W: sh.gradient(W, "autodiff"), U, compile_repeats=1)
    return {"problem": name, "N": N, "cost_s": cost["median_s"], "grad_s": grad["median_s"]}


# ----------------------------------------------------------------------------- casadi


def _casadi_step(ca: Any, name: str) -> tuple[Any, list[float], Callable[[Any], Any]]:
    """The augmented forward-Euler step x_aug + h (f, L) as an SX Function, x_aug(0),
    and the augmented endpoint cost E(x_N) + x_aug_N[-1]."""
    h = ca.SX.sym("h")
    u = ca.SX.sym("u", 1)
    if name == "scalar_regularized":
        x = ca.SX.sym("x", 2)
        rhs = ca.vertcat(-x[0] + u[0] - 0.1 * x[0] ** 3, 0.5 * u[0] ** 2)
        x0 = [0.0, 0.0]

        def endpoint(z: Any) -> Any:
            return 0.5 * (z[0] - 1.0) ** 2 + z[1]

    elif name == "van_der_pol":
        x = ca.SX.sym("x", 3)
        rhs = ca.vertcat(
            (1.0 - x[1] ** 2) * x[0] - x[1] + u[0], x[0], x[0] ** 2 + x[1] ** 2 + u[0] ** 2
        )
        x0 = [0.0, 1.0, 0.0]

        def endpoint(z: Any) -> Any:
            return z[2]

    else:  # pragma: no cover
        raise ValueError(name)
    step = ca.Function("euler_step", [x, u, h], [x + h * rhs])
    return step, x0, endpoint


def bench_casadi(ca: Any, name: str, N: int, flow_row: dict[str, Any] | None) -> dict[str, Any]:
    sh = flow.shoot(problems.get(name), N)
    U = flow.probe_control(sh)
    g_flow = np.asarray(sh.gradient(U, "autodiff")).reshape(-1)
    c_flow = float(sh.cost(U))

    t0 = time.perf_counter()
    step, x0, endpoint = _casadi_step(ca, name)
    acc = step.mapaccum("euler_N", N)  # (x0, U (m x N), H (1 x N)) -> X (n x N)
    Us = ca.MX.sym("U", sh.control_dim, N)
    Hs = ca.MX.sym("H", 1, N)
    J = endpoint(acc(ca.DM(x0), Us, Hs)[:, N - 1])
    f_cost = ca.Function("cost", [Us, Hs], [J])
    f_grad = ca.Function("grad", [Us, Hs], [ca.gradient(J, Us)])
    build_s = time.perf_counter() - t0

    # Inputs converted once, outside the timings (flow's U is already on device too).
    Ud = ca.DM(np.asarray(U).T)
    Hd = ca.DM(np.asarray(sh.steps)[None, :])
    budget = 2.0 if N >= 10**6 else 0.5

    def check(fc: Any, fg: Any) -> dict[str, float]:
        g = np.asarray(fg(Ud, Hd)).T.reshape(-1)  # (m, N) -> (N, m), like U
        return {
            "grad_rel_err": float(np.max(np.abs(g - g_flow)) / np.max(np.abs(g_flow))),
            "cost_rel_err": float(abs(float(fc(Ud, Hd)) - c_flow) / abs(c_flow)),
        }

    row: dict[str, Any] = {"problem": name, "N": N, "mapaccum": {"build_s": build_s}}
    m = row["mapaccum"]
    m.update(check(f_cost, f_grad))
    m["agree"] = m["grad_rel_err"] <= AGREE_TOL
    m["cost"] = time_py(lambda: f_cost(Ud, Hd), budget_s=budget)
    m["grad"] = time_py(lambda: f_grad(Ud, Hd), budget_s=budget)

    if N <= CASADI_EXPAND_MAX_N:
        t0 = time.perf_counter()
        e_cost, e_grad = f_cost.expand(), f_grad.expand()
        e = {"expand_s": time.perf_counter() - t0}
        e.update(check(e_cost, e_grad))
        e["agree"] = e["grad_rel_err"] <= AGREE_TOL
        e["cost"] = time_py(lambda: e_cost(Ud, Hd), budget_s=budget)
        e["grad"] = time_py(lambda: e_grad(Ud, Hd), budget_s=budget)
        row["sx_expanded"] = e
    else:
        row["sx_expanded"] = {
            "skipped": f"N > {CASADI_EXPAND_MAX_N}: expanding to one SX graph takes "
            "~10 s and ~1 GB per 10^5 steps"
        }

    if flow_row is not None:
        row["flow_cost_s"] = flow_row["cost"]["median_s"]
        row["flow_grad_s"] = flow_row["grad_autodiff"]["median_s"]
        row["flow_over_mapaccum_grad"] = row["flow_grad_s"] / m["grad"]["median_s"]
        row["flow_over_mapaccum_cost"] = row["flow_cost_s"] / m["cost"]["median_s"]
        if "grad" in row["sx_expanded"]:
            row["flow_over_sx_grad"] = row["flow_grad_s"] / row["sx_expanded"]["grad"]["median_s"]
            row["flow_over_sx_cost"] = row["flow_cost_s"] / row["sx_expanded"]["cost"]["median_s"]
    return row


# ----------------------------------------------------------------------------- report


def _ms(x: float) -> str:
    return f"{x * 1e3:9.3f}"


def print_flow_tables(rows: list[dict[str, Any]]) -> None:
    for name in PROBLEMS:
        sel = [r for r in rows if r["problem"] == name]
        if not sel:
            continue
        print(f"\n{name} (euler): steady-state ms, median over repeats")
        print(
            "    N |      cost |   grad AD |   grad CS |       HVP |  AD/cost |  CS/cost "
            "| HVP/cost |   FD grad"
        )
        for r in sel:
            fd = r["grad_fd"]
            fd_s = _ms(fd["median_s"]) if "median_s" in fd else "  skipped"
            print(
                f"{fmt_n(r['N']):>5} | {_ms(r['cost']['median_s'])} | "
                f"{_ms(r['grad_autodiff']['median_s'])} | {_ms(r['grad_costate']['median_s'])} | "
                f"{_ms(r['hvp']['median_s'])} | {r['ratio_autodiff_cost']:8.2f} | "
                f"{r['ratio_costate_cost']:8.2f} | {r['ratio_hvp_cost']:8.2f} | {fd_s}"
            )
        print(f"{name}: compile s (trace+lower+XLA compile, jax.monitoring) [first call - steady]")
        print(
            "    N |          cost |       grad AD |       grad CS |           HVP |       FD grad"
        )
        for r in sel:
            cells = []
            for key in ("cost", "grad_autodiff", "grad_costate", "hvp", "grad_fd"):
                t = r[key]
                cells.append(
                    f"{t['compile_s']:5.2f} [{t['first_minus_steady_s']:5.2f}]"
                    if "compile_s" in t
                    else "      skipped"
                )
            print(f"{fmt_n(r['N']):>5} | " + " | ".join(f"{c:>13}" for c in cells))
        print(
            "  page faults/call (grad AD, grad CS, HVP):",
            ", ".join(
                f"{fmt_n(r['N'])}: {r['grad_autodiff']['minor_faults_per_call']:.0f}/"
                f"{r['grad_costate']['minor_faults_per_call']:.0f}/{r['hvp']['minor_faults_per_call']:.0f}"
                for r in sel
            ),
        )
    skipped = [r for r in rows if "skipped" in r["grad_fd"]]
    if skipped:
        print(
            f"\nFD gradient skipped for N > {FD_MAX_N}: it takes 2*N*m cost evaluations "
            "(O(N^2)); ~100 s per call at 1e5, ~3 h at 1e6 on this machine."
        )


def print_casadi_table(rows: list[dict[str, Any]]) -> None:
    print("\nCasADi (SX step, mapaccum, casadi.gradient, VM; no codegen) vs flow autodiff, ms")
    print(
        "problem            |     N | flow cost | ca cost | flow grad |   ca grad | flow/ca grad "
        "| SX-exp grad | flow/SXexp | rel err"
    )
    for r in rows:
        m, e = r["mapaccum"], r["sx_expanded"]
        e_g = _ms(e["grad"]["median_s"]) if "grad" in e else "  skipped"
        e_r = f"{r['flow_over_sx_grad']:10.3f}" if "flow_over_sx_grad" in r else "         -"
        print(
            f"{r['problem']:<18} | {fmt_n(r['N']):>5} | {_ms(r['flow_cost_s'])} | "
            f"{m['cost']['median_s'] * 1e3:7.2f} | {_ms(r['flow_grad_s'])} | "
            f"{_ms(m['grad']['median_s'])} | {r['flow_over_mapaccum_grad']:12.3f} | "
            f"{e_g:>11} | {e_r} | {m['grad_rel_err']:.1e}"
        )
    bad = [r for r in rows if not r["mapaccum"]["agree"]]
    if bad:
        print(f"WARNING: CasADi/flow gradients differ by more than {AGREE_TOL:g} (relative):")
        for r in bad:
            print(f"  {r['problem']} N={r['N']}: {r['mapaccum']['grad_rel_err']:.2e}")


def check_targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ratio_fail = [
        {"problem": r["problem"], "N": r["N"], "method": meth, "ratio": r[f"ratio_{meth}_cost"]}
        for r in rows
        for meth in ("autodiff", "costate")
        if r[f"ratio_{meth}_cost"] > RATIO_TARGET
    ]
    growth = {}
    for name in PROBLEMS:
        sel = [r for r in rows if r["problem"] == name]
        for key in ("cost", "grad_autodiff", "grad_costate", "hvp"):
            cs = [r[key]["compile_s"] for r in sel]
            growth[f"{name}/{key}"] = {
                "compile_s_by_N": dict(zip([r["N"] for r in sel], cs, strict=True)),
                "largest_over_smallest_N": cs[-1] / cs[0],
                "max_over_min": max(cs) / min(cs),
            }
    compile_fail = [
        k for k, v in growth.items() if v["largest_over_smallest_N"] > COMPILE_GROWTH_TOL
    ]
    return {
        "ratio_target": RATIO_TARGET,
        "ratio_met": not ratio_fail,
        "ratio_failures": ratio_fail,
        "compile_growth_tol": COMPILE_GROWTH_TOL,
        "compile_met": not compile_fail,
        "compile_failures": compile_fail,
        "compile_growth": growth,
    }


def print_targets(t: dict[str, Any]) -> None:
    print(
        f"\nTarget gradient/cost <= {t['ratio_target']} at every N (median times): "
        + ("MET" if t["ratio_met"] else "NOT MET")
    )
    for f in t["ratio_failures"]:
        print(f"  {f['problem']} N={f['N']} {f['method']}: {f['ratio']:.2f}")
    print(
        "Target compile time not growing with N (compile(largest N) / compile(smallest N) "
        f"<= {t['compile_growth_tol']}): " + ("MET" if t["compile_met"] else "NOT MET")
    )
    for k, v in t["compile_growth"].items():
        flag = "  <-- grows" if k in t["compile_failures"] else ""
        print(
            f"  {k:<34} largest/smallest N = {v['largest_over_smallest_N']:.2f}, "
            f"max/min = {v['max_over_min']:.2f}{flag}"
        )


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 1e3, 1e4 only (smoke test)")
    parser.add_argument(
        "--ns",
        default=None,
        help="comma-separated grid sizes instead of the defaults, e.g. 100,1000,10000",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"JSON output file (default {DEFAULT_OUT.relative_to(HERE.parent)}; with "
        f"--quick {DEFAULT_QUICK_OUT.relative_to(HERE.parent)})",
    )
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = DEFAULT_QUICK_OUT if args.quick else DEFAULT_OUT
    Ns = QUICK_NS if args.quick else FULL_NS
    if args.ns:
        try:
            Ns = tuple(int(n) for n in args.ns.split(","))
        except ValueError:
            parser.error(f"--ns: expected comma-separated integers; got {args.ns!r}")
        if not Ns or min(Ns) < 1:
            parser.error(f"--ns: expected grid sizes >= 1; got {args.ns!r}")

    try:
        import casadi as ca
    except ImportError as e:
        ca = None
        casadi_msg = f"casadi not importable ({e}); CasADi comparison skipped"
        print(casadi_msg)
    t_start = time.perf_counter()
    env = environment(dirty=("flow",), casadi=None if ca is None else ca.__version__)
    print(
        f"bench_shooting: N = {[fmt_n(N) for N in Ns]}; {env['cpu']}, {env['cpu_count']} cpus; "
        f"jax {env['jax']}, casadi {env['casadi']}; load avg {env['loadavg_start']}"
    )

    rows = []
    for name in PROBLEMS:
        for N in Ns:
            print(f"  flow {name} N={fmt_n(N)} ...", flush=True)
            rows.append(bench_flow(name, N))
    floor = [bench_floor(name) for name in PROBLEMS]
    print_flow_tables(rows)
    print(
        "per-call floor at N = 10 (dispatch + checks), ms: "
        + ", ".join(
            f"{f['problem']} cost {f['cost_s'] * 1e3:.3f} grad {f['grad_s'] * 1e3:.3f}"
            for f in floor
        )
    )
    targets = check_targets(rows)

    casadi_rows: list[dict[str, Any]] | dict[str, str]
    if ca is None:
        casadi_rows = {"skipped": casadi_msg}
    else:
        casadi_rows = []
        for name in PROBLEMS:
            for N in Ns:
                if N > CASADI_MAX_N:
                    continue
                print(f"  casadi {name} N={fmt_n(N)} ...", flush=True)
                flow_row = next(r for r in rows if r["problem"] == name and r["N"] == N)
                casadi_rows.append(bench_casadi(ca, name, N, flow_row))
        print_casadi_table(casadi_rows)
    print_targets(targets)

    finish(env, t_start)
    result = {
        "command": " ".join(["python", "benchmarks/bench_shooting.py", *sys.argv[1:]]),
        "quick": args.quick,
        "environment": env,
        "settings": {
            "Ns": list(Ns),
            "fd_max_N": FD_MAX_N,
            "casadi_max_N": CASADI_MAX_N,
            "casadi_expand_max_N": CASADI_EXPAND_MAX_N,
            "timing": "median (and min) of >= 7 repeats (>= 0.5 s, 1 s at N = 1e6) after "
            "the first call and one warm-up, each closed by jax.block_until_ready",
            "compile": "compile_s = trace + lowering + XLA compile durations reported by "
            "jax.monitoring, median over 3 compilations (first call, then twice after "
            "jax.clear_caches(); 1 for FD); first_call_s = wall time of the first call; "
            "first_minus_steady_s = first call - steady median",
        },
        "flow": rows,
        "flow_call_floor": floor,
        "casadi": casadi_rows,
        "targets": targets,
    }
    print(f"\nwrote {write_json(args.out, result)} ({env['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
