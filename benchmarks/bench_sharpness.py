"""Sharpness along a descent path at N = 10^5: Hessian-vector products per tracked iterate.

    python benchmarks/bench_sharpness.py [--N 100000] [--steps 50] [--out FILE.json]

`stability.sharpness` computes the largest eigenvalue mu_max of M^-1 Hess E^N at every
iterate of a `flow.descend` run (`save_iterates=True`) by Lanczos on
M^-1/2 Hess E^N M^-1/2, matrix-free, each iterate's run warm-started from the previous
iterate's top Ritz vector. The target (issue #16, item 3): at most 30 Hessian-vector
products per tracked iterate after the first, at a tolerance giving 1e-8 relative
accuracy (`tol=1e-8`: every reported value has a residual <= 1e-8 mu_max, so an
eigenvalue lies within 1e-8 relative of it).

The paths (forward Euler, `--steps` descent steps, every iterate tracked):

- `scalar_regularized`, U_0 = 4, constant step 0.9 alpha_max, alpha_max = 2/mu_max at
  the minimiser (`stability.equilibrium`), with the Hamiltonian and with the identity
  metric: a stable path along which the sharpness rises from 1.18 to 1.44 (in units
  of the metric).
- `van_der_pol`, U_0 = 0, Hamiltonian metric, constant step 0.9 alpha_max as above
  (about 4e-5: the minimiser's sharpness is some 3000 times U_0's, so the iterates
  move little), and 0.9 * 2/mu_max(U_0): then the sharpness grows along the path past
  2/alpha (the iteration oscillates, as descent at the edge of stability does), so
  consecutive iterates, and their top eigenvectors, differ much more: the hard case
  for a warm start.

For each path: products at the first iterate (a random start) and per iterate after it
(mean and max), for the warm start and for random starts at every iterate (`warm_start
=False`), at `tol` 1e-8 and at the default 1e-10; the wall time of the warm `tol=1e-8`
call (indicative only: the machine is shared); and the largest relative difference of
its mu_max from a `tol=1e-12` run (the accuracy actually reached). Writes JSON to
`--out` (default `benchmarks/results/sharpness.json`). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
from _harness import RESULTS_DIR, environment, finish, fmt_n, timed, write_json


DEFAULT_OUT = RESULTS_DIR / "sharpness.json"
TARGET = 30
FRACTION = 0.9


def _path(name: str, metric: str, at: str, N: int, steps: int) -> tuple[Any, float, str]:
    """The descent trace of one benchmark path, its step and how the step was chosen."""
    import jax
    import jax.numpy as jnp

    import flow
    import stability

    sh = flow.shoot(flow.problems.get(name), N)
    U0 = jnp.full(sh.control_shape, 4.0) if name == "scalar_regularized" else sh.zeros()
    if at == "minimiser":
        point = stability.equilibrium(sh).U
        how = f"{FRACTION} * 2/mu_max(U*)"
    else:
        point = U0
        how = f"{FRACTION} * 2/mu_max(U_0)"
    bound = stability.sharpness(np.asarray(point)[None], shooting=sh, metric=metric, tol=1e-12)
    alpha = FRACTION * 2.0 / float(bound.mu_max[0])
    trace = flow.descend(
        sh, U0, metric=metric, step=alpha, max_steps=steps, save_iterates=True, throw=False
    )
    jax.block_until_ready(trace.iterates)
    return trace, alpha, how


def _counts(result: Any) -> dict[str, Any]:
    after = result.num_hvp[1:]
    return dict(
        first=int(result.num_hvp[0]),
        mean_after_first=float(np.mean(after)),
        max_after_first=int(np.max(after)),
        converged=bool(np.all(result.converged)),
    )


def bench(name: str, metric: str, at: str, N: int, steps: int) -> dict[str, Any]:
    import stability

    trace, alpha, how = _path(name, metric, at, N, steps)
    # compile the product once (one iterate), so that the timed call runs only
    stability.sharpness(np.asarray(trace.iterates[:1]), shooting=trace.shooting, metric=metric)
    row: dict[str, Any] = dict(
        problem=name,
        metric=metric,
        N=N,
        step=alpha,
        step_rule=how,
        descent_status=trace.status,
        descent_steps=int(trace.num_steps),
    )
    warm, wall = timed(stability.sharpness, trace, metric=metric, tol=1e-8)
    tight = stability.sharpness(trace, metric=metric, tol=1e-12)
    row.update(
        tracked=int(warm.iterations.shape[0]),
        mu_max_first=float(warm.mu_max[0]),
        mu_max_last=float(warm.mu_max[-1]),
        mu_max_max=float(np.max(warm.mu_max)),
        max_edge=warm.max_edge,
        method=warm.method,
        wall_s=wall,
        ms_per_hvp=1e3 * wall / int(np.sum(warm.num_hvp)),
        max_rel_diff_vs_tol_1e12=float(np.max(np.abs(warm.mu_max - tight.mu_max) / tight.mu_max)),
        hvp_tight_after_first=tight.hvp_after_first,
    )
    row["hvp"] = {}
    for tol in (1e-8, 1e-10):
        for start in ("warm", "cold"):
            result = (
                warm
                if (tol, start) == (1e-8, "warm")
                else stability.sharpness(trace, metric=metric, tol=tol, warm_start=start == "warm")
            )
            row["hvp"][f"{start} tol={tol:g}"] = _counts(result)
    row["target_met"] = row["hvp"]["warm tol=1e-08"]["max_after_first"] <= TARGET
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--N", type=int, default=100_000, help="grid size (default 10^5)")
    parser.add_argument("--steps", type=int, default=50, help="descent steps (default 50)")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)
    t_start = time.perf_counter()
    env = environment(["scipy"], dirty=("flow", "stability"), command=" ".join(sys.argv))
    paths = [
        ("scalar_regularized", "hamiltonian", "minimiser"),
        ("scalar_regularized", "identity", "minimiser"),
        ("van_der_pol", "hamiltonian", "minimiser"),
        ("van_der_pol", "hamiltonian", "start"),
    ]
    rows = [bench(*path, args.N, args.steps) for path in paths]
    finish(env, t_start)
    write_json(args.out, dict(environment=env, target_hvp_after_first=TARGET, rows=rows))
    print(
        "| problem | metric | N | path | mu_max first -> last (max) | max alpha mu/2 | "
        "HVPs first | warm 1e-8: mean / max after first | random 1e-8 | warm 1e-10 | "
        "random 1e-10 | wall (warm 1e-8) | rel. diff. vs tol 1e-12 |"
    )
    print("|" + "---|" * 13)
    for r in rows:
        h = r["hvp"]
        print(
            f"| {r['problem']} | {r['metric']} | {fmt_n(r['N'])} | {r['descent_steps']} steps "
            f"at {r['step_rule']} = {r['step']:.4g} ({r['descent_status']}) | "
            f"{r['mu_max_first']:.6g} -> {r['mu_max_last']:.6g} ({r['mu_max_max']:.4g}) | "
            f"{r['max_edge']:.3g} | {h['warm tol=1e-08']['first']} | "
            f"{h['warm tol=1e-08']['mean_after_first']:.1f} / "
            f"{h['warm tol=1e-08']['max_after_first']} | "
            f"{h['cold tol=1e-08']['mean_after_first']:.1f} / "
            f"{h['cold tol=1e-08']['max_after_first']} | "
            f"{h['warm tol=1e-10']['mean_after_first']:.1f} / "
            f"{h['warm tol=1e-10']['max_after_first']} | "
            f"{h['cold tol=1e-10']['mean_after_first']:.1f} / "
            f"{h['cold tol=1e-10']['max_after_first']} | "
            f"{r['wall_s']:.2f} s ({r['ms_per_hvp']:.1f} ms/HVP) | "
            f"{r['max_rel_diff_vs_tol_1e12']:.1e} |"
        )
    print(f"target: at most {TARGET} products per tracked iterate after the first: ", end="")
    print("met" if all(r["target_met"] for r in rows) else "NOT met")
    print(f"wrote {args.out}; {env['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
