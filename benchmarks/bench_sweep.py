"""Sweeps: a configuration's steps in one vmapped call against separate calls, and
local worker processes against one process.

    python benchmarks/bench_sweep.py [--N 10000] [--steps 32] [--out FILE.json]

1. **Vmapped steps.** `scalar_regularized` at N = 10^4 (Euler, Hamiltonian metric),
   32 constant steps spread over [0.5, 1.5] x alpha_max (alpha_max from the
   equilibrium's spectrum), tol 1e-8, at most 300 iterations. *Vmapped*: the 32 steps
   in one compiled call, as `gradflow.sweep` runs a configuration
   (`gradflow._configuration._descent_grid`). *Separate*: 32 `flow.descend` calls
   with the same compiled kernel (the step is traced: one compilation for all). Both
   after a warm-up call (compilation excluded), medians of 3; the statuses and
   iteration counts of the two are checked equal.
   *Ceiling*: what batching can gain at all on this CPU. `jax.vmap` of the
   gradient of E^N over 32 controls against 32 single gradients (the descent's
   dominant cost), at N = 10^4, medians of 30, each in a fresh process with the
   default XLA flags and with a sweep worker's one-thread flags. A vmapped descent
   cannot beat separate calls by more than this, and it loses the lanes that wait
   for the slowest (the `lane_efficiency`: the separate calls' iterations over 32 x
   the vmapped call's).
2. **Local processes.** A study of 16 configurations (`scalar_regularized` and
   `van_der_pol`, N = 250, 500, 1000, 2000, identity and Hamiltonian metrics, 16 steps
   relative to alpha_max) with `workers=1` (this process) and `workers=2` (two
   spawned processes, one thread each), each in a fresh Python process with a warm
   persistent compilation cache (filled by a first run), so that the processes'
   startup is counted and compilation is not. The two tables are checked equal.

Run with no other job on the machine. Prints a table and writes JSON to `--out`
(default `benchmarks/results/sweep.json`). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _harness import RESULTS_DIR, environment, finish, write_json


DEFAULT_OUT = RESULTS_DIR / "sweep.json"

STUDY = dict(
    problems=["scalar_regularized", "van_der_pol"],
    N=[250, 500, 1000, 2000],
    metrics=["identity", "hamiltonian"],
    steps={"start": 0.5, "stop": 1.5, "num": 16, "relative_to": "alpha_max"},
    max_steps=3000,
    compute=["descent", "euler_bound"],
)

CEILING = """
import json, statistics, sys, time
import jax, jax.numpy as jnp
import flow
N, lanes = int(sys.argv[1]), int(sys.argv[2])
sh = flow.shoot(flow.problems.get("scalar_regularized"), N)
grad = jax.grad(lambda U: sh.objective(U))
one, many = jax.jit(grad), jax.jit(jax.vmap(grad))
U = jnp.linspace(0.0, 1.0, N)[:, None]
Us = U[None] * jnp.linspace(0.5, 1.5, lanes)[:, None, None]
def median(fn, x):
    fn(x).block_until_ready()
    times = []
    for _ in range(30):
        t = time.perf_counter(); fn(x).block_until_ready(); times.append(time.perf_counter() - t)
    return statistics.median(times)
t1, tb = median(one, U), median(many, Us)
print(json.dumps({"single_s": t1, "batched_s": tb, "ceiling": lanes * t1 / tb}))
"""

WORKER_FLAGS = "--xla_cpu_multi_thread_eigen=false"

CHILD = """
import json, sys, time
t0 = time.perf_counter()
import gradflow
gradflow.enable_cache(sys.argv[1])
study = gradflow.Study(**json.loads(sys.argv[2]))
table = gradflow.sweep(study, workers=int(sys.argv[3]))
table.to_parquet(sys.argv[4])
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def _median(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def vmapped_steps(N: int, num: int) -> dict:
    import jax
    import jax.numpy as jnp

    import flow
    import stability
    from gradflow import _configuration

    sh = flow.shoot(flow.problems.get("scalar_regularized"), N)
    eq = stability.equilibrium(sh)
    bound = stability.euler_bound(stability.spectrum(stability.linearize(sh, eq)))
    alphas = np.linspace(0.5, 1.5, num) * bound.alpha_max
    metric = flow.metrics.as_metric("hamiltonian")
    U0s = jnp.zeros((1, *sh.control_shape))
    tol, max_steps = 1e-8, 300

    def together():
        out = _configuration._descent_grid(
            sh, U0s, metric, jnp.asarray(alphas), max_steps, jnp.asarray(tol), "hamiltonian"
        )
        return jax.block_until_ready(out)

    def separately():
        traces = [
            flow.descend(sh, U0s[0], step=float(a), max_steps=max_steps, tol=tol, throw=False)
            for a in alphas
        ]
        return jax.block_until_ready(traces)

    together()
    separately()
    t_together = _median(together)
    t_separate = _median(separately)
    result, num_steps, *_ = together()
    statuses = _configuration._Batch(result).statuses
    traces = separately()
    assert list(statuses) == [t.status for t in traces]
    assert [int(n) for n in np.asarray(num_steps).ravel()] == [int(t.num_steps) for t in traces]
    return dict(
        N=N,
        steps=num,
        alpha_max=bound.alpha_max,
        vmapped_s=t_together,
        separate_s=t_separate,
        speedup=t_separate / t_together,
        statuses={s: list(statuses).count(s) for s in set(statuses)},
        lane_efficiency=float(
            np.sum(np.asarray(num_steps)) / (num * np.max(np.asarray(num_steps)))
        ),
        max_iterations=int(np.max(np.asarray(num_steps))),
    )


def ceiling(N: int, lanes: int) -> dict:
    out = {}
    for name, flags in (("default_flags", ""), ("worker_flags", WORKER_FLAGS)):
        env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip())
        run = subprocess.run(
            [sys.executable, "-c", CEILING, str(N), str(lanes)],
            capture_output=True, text=True, check=True, env=env,
        )  # fmt: skip
        out[name] = json.loads(run.stdout.strip().splitlines()[-1])
    return out


def local_processes() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cache = str(Path(tmp) / "kernels")
        spec = json.dumps(STUDY)

        def run(workers: int, name: str) -> float:
            out = subprocess.run(
                [sys.executable, "-c", CHILD, cache, spec, str(workers), str(Path(tmp) / name)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]

        run(1, "warm.parquet")  # fills the compilation cache
        one = [run(1, "one.parquet") for _ in range(2)]
        two = [run(2, "two.parquet") for _ in range(2)]
        import pandas as pd

        pd.testing.assert_frame_equal(
            pd.read_parquet(Path(tmp) / "one.parquet"), pd.read_parquet(Path(tmp) / "two.parquet")
        )
        t1, t2 = min(one), min(two)
        return dict(
            configurations=16,
            one_process_s=t1,
            two_processes_s=t2,
            speedup=t1 / t2,
            runs_one=one,
            runs_two=two,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--N", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args()
    t0 = time.perf_counter()
    env = environment(("diffrax", "pandas"), dirty=("flow", "gradflow"))
    steps = vmapped_steps(args.N, args.steps)
    print(
        f"{args.steps} steps at N = {args.N}: vmapped {steps['vmapped_s']:.3f} s, "
        f"separate {steps['separate_s']:.3f} s, speed-up {steps['speedup']:.1f}x "
        f"(statuses {steps['statuses']}, at most {steps['max_iterations']} iterations)"
    )
    steps["ceiling"] = ceiling(args.N, args.steps)
    for name, c in steps["ceiling"].items():
        print(
            f"  ceiling ({name}): {args.steps} gradients batched {c['batched_s'] * 1e3:.2f} ms, "
            f"single {c['single_s'] * 1e3:.3f} ms, throughput {c['ceiling']:.2f}x"
        )
    print(f"  lane efficiency of the vmapped call: {steps['lane_efficiency']:.2f}")
    procs = local_processes()
    print(
        f"16 configurations: 1 process {procs['one_process_s']:.1f} s, 2 processes "
        f"{procs['two_processes_s']:.1f} s, speed-up {procs['speedup']:.2f}x"
    )
    finish(env, t0)
    path = write_json(args.out, dict(environment=env, vmapped_steps=steps, processes=procs))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
