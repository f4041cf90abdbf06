"""`gradflow sweep STUDY.toml`: a study from its TOML file, with a progress bar over
the configurations, an estimate of the time left, and a summary of the failures by
reason."""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any


def add_parser(sub: Any, usage_error: type[Exception]) -> None:
    sw = sub.add_parser(
        "sweep",
        help="run a study (a grid of problems, N, schemes, metrics, steps) from a TOML file",
        description="Runs every configuration of STUDY.toml (see gradflow.Study), in local "
        "processes or on a Dask cluster, and writes the tidy table (sweep.parquet, "
        "sweep.csv) and study.json into --out. A rerun with the same --out computes only "
        "what is missing.",
    )
    sw.add_argument("study", help="the study's TOML file")
    sw.add_argument("--out", default=None, help="output folder (default: the study's name)")
    sw.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="a Dask scheduler (tcp://host:8786) to run the configurations on",
    )
    sw.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local worker processes (default: one per core; 1 runs in this process)",
    )
    sw.set_defaults(func=lambda args: _sweep(args, usage_error))


def _sweep(args: argparse.Namespace, usage_error: type[Exception]) -> int:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ._study import Study
    from ._sweep import sweep

    path = Path(args.study)
    if not path.is_file():
        raise usage_error(f"study file not found: {path}")
    try:
        study = Study.from_toml(path)
    except (ValueError, TypeError) as e:
        raise usage_error(f"{path}: {e}") from e
    if args.workers is not None and args.workers < 1:
        raise usage_error(f"--workers must be >= 1; got {args.workers}")
    out = Path(args.out) if args.out else Path(path.stem)
    client = None
    if args.scheduler:
        try:
            from dask.distributed import Client
        except ImportError as e:
            raise usage_error(
                "--scheduler needs dask.distributed: pip install 'gradient-flow-analyzer[dask]'"
            ) from e
        client = Client(args.scheduler)
    total = sum(1 for _ in study.configurations())
    t0 = time.perf_counter()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("configurations", total=total)

        def progress(i: int, n: int, config: Any, output: dict[str, Any]) -> None:
            bar.update(task, completed=i, description=f"{config.problem} N={config.N}")

        try:
            table = sweep(study, client=client, out=out, workers=args.workers, progress=progress)
        finally:
            if client is not None:
                client.close()
    print(_summary(table, total, out, time.perf_counter() - t0))
    return 0


def _summary(table: Any, total: int, out: Path, seconds: float) -> str:
    counts = Counter(table["status"])
    lines = [
        f"{total} configurations, {len(table)} rows in {seconds:.1f} s -> {out}/sweep.parquet",
        "status: " + ", ".join(f"{k} {v}" for k, v in counts.most_common()),
    ]
    failed = table[table["status"] != "converged"]
    if len(failed):
        # group reasons by their kind (numbers removed): "diverged at iteration #"
        kinds = Counter(re.sub(r"[-+]?\d[\d.e+-]*", "#", str(r)) for r in failed["reason"])
        lines.append("failures by reason:")
        lines += [f"  {n:6d}  {kind}" for kind, n in kinds.most_common()]
    return "\n".join(lines)
