"""`gradflow continue FAMILY`: a branch of equilibria followed in the family's parameter
(`stability.continuation`), with its folds and branch points; writes
continuation.json and the figure."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any


def add_parser(sub: Any, usage_error: type[Exception], types: dict[str, Callable]) -> None:
    """The `continue` sub-command; `types` are the shared argument types and helpers of
    `gradflow._cli` (`grid_size`, `step_count`, `scheme`, `metric`, `output_folder`,
    `start`)."""
    co = sub.add_parser(
        "continue",
        help="follow the equilibria of a problem family p -> problem as p varies "
        "(folds, branch points, the step bound along the branch)",
        description="Pseudo-arclength continuation of grad E^N(U; p) = 0 "
        "(stability.continuation): at each point the equilibrium, its kind, the ends of "
        "the spectrum and alpha_max; folds and branch points located. Writes "
        "continuation.json and continuation.png/.pdf into --out.",
    )
    co.add_argument(
        "family",
        help="a built-in family (tilted_double_well, symmetric_well, van_der_pol) or "
        "path/to/file.py:function / package.module:function, a function of one "
        "argument p returning an OptimalControlProblem",
    )
    co.add_argument("--from", dest="p_start", type=float, default=None,
                    help="the start of the parameter range (default: the built-in's)")  # fmt: skip
    co.add_argument("--to", dest="p_end", type=float, default=None,
                    help="the end of the parameter range (default: the built-in's)")  # fmt: skip
    co.add_argument("--N", type=types["grid_size"], default=100,
                    help="grid intervals (default: %(default)s)")  # fmt: skip
    co.add_argument("--scheme", type=types["scheme"], default="euler",
                    help="euler | heun | rk4 (default: %(default)s)")  # fmt: skip
    co.add_argument("--metric", choices=("hamiltonian", "identity"), default="hamiltonian",
                    help="the flow's metric (default: %(default)s)")  # fmt: skip
    co.add_argument("--U0", default=None, metavar="VALUE|FILE.npy",
                    help="an equilibrium or a guess at --from: a number (every control "
                    "equal to it) or a .npy array of shape (N, m) (default: zeros)")  # fmt: skip
    co.add_argument("--max-points", type=types["step_count"], default=200,
                    help="the most points on the branch (default: %(default)s)")  # fmt: skip
    co.add_argument("--out", default="gradflow-continuation",
                    help="output folder (default: %(default)s)")  # fmt: skip
    co.add_argument("--json", action="store_true",
                    help="print the continuation (JSON) instead of the summary")  # fmt: skip
    co.set_defaults(func=lambda args: _continue(args, usage_error, types))


def _continue(args: argparse.Namespace, usage_error: type[Exception], types: dict) -> int:
    import numpy as np

    import flow
    import stability
    from figures.continuation import draw_result
    from flow import problems

    try:
        family = problems.load_family(args.family)
    except problems.ProblemLoadError as e:
        raise usage_error(str(e)) from None
    default = problems.FAMILIES.get(args.family, (None, (None, None)))[1]
    p_start = default[0] if args.p_start is None else args.p_start
    p_end = default[1] if args.p_end is None else args.p_end
    if p_start is None or p_end is None:
        raise usage_error(f"{args.family}: give the parameter range with --from and --to")
    for flag, value in (("--from", p_start), ("--to", p_end)):
        if not math.isfinite(value):
            raise usage_error(f"{flag} {value}: expected a finite number")
    if p_start == p_end:
        raise usage_error(f"--from and --to must differ; both are {p_start:g}")
    out: Path = types["output_folder"](args.out)
    try:
        m = family(float(p_start)).control_dim
    except Exception as e:  # noqa: BLE001 - the user's family, reported in one line
        raise usage_error(f"{args.family}({p_start:g}) failed: {type(e).__name__}: {e}") from None
    U0, _ = types["start"](args.U0, (args.N, m))
    U0 = np.zeros((args.N, m)) if U0 is None else U0
    try:
        result = stability.continuation(
            family, U0, (p_start, p_end), N=args.N, scheme=flow.scheme_from_name(args.scheme),
            metric=args.metric, max_points=args.max_points,
        )  # fmt: skip
    except (ValueError, TypeError) as e:
        raise usage_error(" ".join(str(e).split())) from None
    document = result.to_dict()
    (out / "continuation.json").write_text(
        json.dumps(document, indent=1, ensure_ascii=True, allow_nan=False) + "\n"
    )
    draw_result(result, out)
    if args.json:
        print(json.dumps(document, indent=1, ensure_ascii=True, allow_nan=False))
        return 0
    print(summary(result, out))
    return 0


def summary(result: Any, out: Path) -> str:
    """The printed summary: the run, the special points, and a table of the points
    (at most 12 rows)."""
    lines = [
        f"{result.problem}, N = {result.N}, {result.metric} metric, {result.method}: "
        f"{len(result.points)} points, {result.status}",
        f"  {result.reason}",
    ]
    for s in result.special_points:
        lines.append(
            f"  {s.kind} at p = {s.p:.10g} (index {s.index_before} -> {s.index_after}, "
            f"norm {s.norm:.6g}, cost {s.cost:.6g})"
        )
    if not result.special_points:
        lines.append("  no fold or branch point on this stretch")
    header = ("p", 12), ("norm", 10), ("cost", 12), ("kind", 22), ("index", 5), ("alpha_max", 11)
    lines.append("  " + " ".join(f"{name:>{width}}" for name, width in header))
    step = max(1, math.ceil(len(result.points) / 12))
    for q in result.points[::step]:
        bound = "-" if q.alpha_max is None else f"{q.alpha_max:.4g}"
        lines.append(
            f"  {q.p:12.6g} {q.norm:10.4g} {q.cost:12.6g} {q.kind:>22} {q.index:5d} {bound:>11}"
        )
    lines.append(f"wrote {out / 'continuation.json'} and continuation.png/.pdf")
    return "\n".join(lines)
