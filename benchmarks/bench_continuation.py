"""Continuation at N = 10^4: 50 points, matrix-free, against re-solving at each p.

    python benchmarks/bench_continuation.py [--N 10000] [--points 50] [--out FILE.json]

`stability.continuation` on the built-in family `tilted_double_well` (x' = u,
E = (x(1)^2 - 1)^2 + p x(1), int u^2/2; folds at p = -1 and 1 exactly), forward Euler,
Hamiltonian metric, from the outer minimiser at p = -2 (the real root of
4x^3 - 3x - 2). The target (issue #17): a continuation of 50 points at N = 10^4 runs
matrix-free (no (Nm)^2 array) in under 60 s on 2 cores.

Measured, in one process:

- *50 points*: `max_points=50`, `max_step=0.1` (small enough that 50 points reach
  past the first fold): wall time of the first call (compilation included; the
  compile time from `jax.monitoring`) and of a second call (compiled), the counters
  (Newton steps, GMRES steps, Lanczos products), the folds found and their error;
- *the whole S*: the default step control from p = -2 to 2 (both folds);
- *the peer*: what a user without continuation does, natural-parameter re-solves:
  `stability.equilibrium` warm-started from the previous p, then `stability.spectrum`
  and `euler_bound` (the same information per point), at the 50-point run's values
  of p on its first stable stretch (up to the fold); the ratio per point. Past the
  fold the re-solve cannot follow the branch: at p = 1.2 it lands on the other
  minimiser (recorded);
- *memory*: the process's peak resident set size before and after the continuation
  runs (before the peer) against the 763 MiB that one dense (Nm)^2 float64 matrix
  would take, and the path (`method`).

Writes JSON to `--out` (default `benchmarks/results/continuation.json`). See
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
from _harness import RESULTS_DIR, CompileTimer, environment, finish, fmt_n, timed, write_json


DEFAULT_OUT = RESULTS_DIR / "continuation.json"
TARGET_S = 60.0


def _outer_root(p: float) -> float:
    roots = np.roots([4.0, 0.0, -3.0, p])
    return float(np.max(roots[np.abs(roots.imag) < 1e-12].real))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _fold_errors(c) -> list[float]:
    return [abs(abs(s.p) - 1.0) for s in c.folds]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--N", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=50)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)
    t_start = time.perf_counter()
    env = environment(["scipy", "lineax"], dirty=("flow", "stability"), command=" ".join(sys.argv))

    import flow
    import stability
    from flow import problems

    N = args.N
    family = problems.tilted_double_well
    U0 = np.full((N, 1), _outer_root(-2.0))
    rss0 = _peak_rss_mb()
    out: dict = {"N": N, "points": args.points, "target_s": TARGET_S}

    def run(**kw):
        return stability.continuation(family, U0, (-2.0, 2.0), N=N, **kw)

    with CompileTimer() as ct:
        c50, first = timed(run, max_points=args.points, max_step=0.1)
    c50b, second = timed(run, max_points=args.points, max_step=0.1)
    out["fifty"] = {
        "first_call_s": first,
        "compile_s": ct.seconds,
        "second_call_s": second,
        "per_point_ms": 1e3 * second / len(c50b.points),
        "points": len(c50.points),
        "status": c50.status,
        "method": c50.method,
        "p_last": c50.points[-1].p,
        "folds": [s.p for s in c50.folds],
        "fold_errors": _fold_errors(c50),
        "num_newton": c50.num_newton,
        "num_krylov": c50.num_krylov,
        "num_products": c50.num_products,
        "num_rejected": c50.num_rejected,
    }
    whole, t_whole = timed(run)
    out["whole"] = {
        "seconds": t_whole,
        "points": len(whole.points),
        "status": whole.status,
        "folds": [s.p for s in whole.folds],
        "fold_errors": _fold_errors(whole),
        "num_newton": whole.num_newton,
        "num_krylov": whole.num_krylov,
        "num_products": whole.num_products,
    }

    rss_continuation = _peak_rss_mb()

    # the peer: warm-started re-solves at the 50-point run's p on its first stable stretch
    stretch = []
    for q in c50b.points:
        if q.kind != "asymptotically stable" or (stretch and q.p < stretch[-1]):
            break
        stretch.append(q.p)
    U = U0
    t0 = time.perf_counter()
    peer_bounds = []
    with CompileTimer() as peer_ct:
        for p in stretch:
            sh = flow.shoot(family(p), N)
            eq = stability.equilibrium(sh, U)
            U = eq.U
            lin = stability.linearize(sh, eq)
            peer_bounds.append(stability.euler_bound(stability.spectrum(lin)))
    peer = time.perf_counter() - t0
    ours = {q.p: q.alpha_max for q in c50b.points}
    agree = max(abs(b.alpha_max / ours[p] - 1.0) for p, b in zip(stretch, peer_bounds, strict=True))
    past = stability.equilibrium(flow.shoot(family(1.2), N), U)
    out["peer"] = {
        "points": len(stretch),
        "seconds": peer,
        "per_point_ms": 1e3 * peer / len(stretch),
        "compile_s": peer_ct.seconds,
        "ratio_per_point": (peer / len(stretch)) / (second / len(c50b.points)),
        "alpha_max_agreement": agree,
        "past_fold_p": 1.2,
        "past_fold_x": float(np.mean(past.U)),
        "past_fold_status": past.status,
    }
    out["memory"] = {
        "peak_rss_mb_before": rss0,
        "peak_rss_mb_continuation": rss_continuation,
        "dense_matrix_mb": (N * N * 8) / 2**20,
    }
    finish(env, t_start)
    path = write_json(args.out, {"environment": env, "results": out})

    f, w, pe, m = out["fifty"], out["whole"], out["peer"], out["memory"]
    print(f"N = {fmt_n(N)}, tilted_double_well, Hamiltonian metric, {f['method']}")
    print(
        f"{f['points']} points ({f['status']}, last p = {f['p_last']:.4g}): first call "
        f"{f['first_call_s']:.2f} s ({f['compile_s']:.2f} s compile), second "
        f"{f['second_call_s']:.2f} s ({f['per_point_ms']:.0f} ms/point); target < "
        f"{TARGET_S:g} s: {'met' if f['first_call_s'] < TARGET_S else 'MISSED'}"
    )
    print(
        f"  folds {f['folds']} (errors {f['fold_errors']}); Newton {f['num_newton']}, "
        f"GMRES {f['num_krylov']}, Lanczos products {f['num_products']}"
    )
    print(
        f"whole S: {w['points']} points in {w['seconds']:.2f} s, folds {w['folds']} "
        f"(errors {w['fold_errors']})"
    )
    print(
        f"peer (warm-started equilibrium + spectrum per p): {pe['points']} points in "
        f"{pe['seconds']:.2f} s, {pe['compile_s']:.2f} s of it compiling (a new p is a new "
        f"problem) ({pe['per_point_ms']:.0f} ms/point, "
        f"{pe['ratio_per_point']:.2f}x continuation's); alpha_max agrees to "
        f"{pe['alpha_max_agreement']:.1e}; at p = 1.2, past the fold, it lands on "
        f"x(1) = {pe['past_fold_x']:.4f} (the other minimiser)"
    )
    print(
        f"memory: peak RSS {m['peak_rss_mb_before']:.0f} MB before, "
        f"{m['peak_rss_mb_continuation']:.0f} MB after the continuations (a dense (Nm)^2 matrix: "
        f"{m['dense_matrix_mb']:.0f} MB)"
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
