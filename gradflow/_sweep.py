"""Running a study: its configurations in this process, in local worker processes,
or on a Dask cluster; each finished configuration stored at once (so that an
interrupted study resumes), and the tidy table at the end.

This module imports no JAX at its top: worker processes import it to run their
initializer, which must set the thread counts before JAX starts."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import multiprocessing
import os
import platform
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from ._study import Configuration, Study


#: The leading columns of a sweep's table (the rest follow the outcomes computed).
COLUMNS = (
    "problem", "N", "scheme", "metric", "step", "step_multiplier", "start", "status",
    "reason", "iterations", "cost", "gradient_residual", "hamiltonian_residual",
)  # fmt: skip

#: One finished configuration: its index, key, configuration and worker output.
Progress = Callable[[int, int, Configuration, dict[str, Any]], None]

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class _Store:
    """`out/parts/<key>.json`: one file per finished configuration, written
    atomically (a temporary file, then a rename), so that a killed run leaves only
    whole parts."""

    def __init__(self, out: Path):
        self.parts = out / "parts"
        self.parts.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.parts / f"{key}.json"

    def load(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.path(key).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def save(self, key: str, result: dict[str, Any]) -> None:
        tmp = self.path(key).with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(result, allow_nan=False, default=_plain))
        tmp.replace(self.path(key))


def _plain(x: Any) -> Any:
    import numpy as np

    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")


def _init_worker(threads: int, cache: str | None) -> None:
    """A spawned worker: its XLA and BLAS thread pools sized to its share of the
    cores (before JAX starts), and the shared persistent compilation cache."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = (
        f"{flags} --xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
        f"intra_op_parallelism_threads={threads}"
    ).strip()
    if cache is not None:
        _enable_cache(cache)


def _enable_cache(path: str) -> None:
    from ._cache import enable_cache

    enable_cache(path)


def _run_one(study_data: dict[str, Any], config_data: dict[str, Any]) -> dict[str, Any]:
    from ._configuration import run

    return run(study_data, config_data)


def sweep(
    study: Study,
    *,
    client: Any = None,
    out: str | Path | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> Any:
    """Run every configuration of `study` and return the tidy table, a
    `pandas.DataFrame` with one row per (configuration, step, start).

    **Columns:** `problem`, `N`, `scheme`, `metric`; `step` (the absolute
    $\\alpha$) and `step_multiplier` (its multiple of alpha_max, with relative
    steps); `start`; `status` (descend's status word, or `error` when the
    configuration raised) and `reason` (why it failed: `diverged at iteration
    283`, `max_steps: residual ...`, or the exception); `iterations`, `cost`,
    `gradient_residual`, `hamiltonian_residual` at the descent's end; then the
    columns of each outcome computed (`gradflow.OUTCOMES`): `alpha_max`, `alpha_opt`,
    `rho_opt`, `equilibrium_*`, `mu_stiff`, `mu_slow`, `classification`,
    `guaranteed_hamiltonian_residual`, `basin_fraction`, `flow_*`. A configuration
    that raised is one row with status `error`; none is dropped.

    **Execution:** in each configuration the steps and starts run in one compiled,
    vmapped call. Configurations run in this process when `workers=1` or there is
    one, else in `workers` local processes (default: one per core; spawned, each
    with `cores // workers` XLA and BLAS threads, sharing the persistent compilation
    cache when [`enable_cache`][gradflow.enable_cache] is on), or on a Dask cluster
    with `client` (a `dask.distributed.Client`; the workers need this package).
    The results do not depend on where they ran.

    **Storage and resuming:** with `out`, every finished configuration is written
    at once to `out/parts/<key>.json`, keyed by a hash of the configuration, the
    study's settings and the package version; a rerun (after an interruption, or
    with more configurations) computes only the configurations without a part, and
    those whose part is an error (which may have been transient: a killed worker). At
    the end the table is written as `out/sweep.parquet` and `out/sweep.csv`, with
    `out/study.json` (the study, the versions, the machine and the timings).

    `progress(i, total, configuration, output)` is called as each configuration
    finishes (stored ones first).

    **Raises:** `TypeError` for a `study` that is not a [`Study`][gradflow.Study];
    `ValueError` for `workers` < 1; `ImportError` when pandas (or, with `out`,
    pyarrow) is missing.
    """
    import pandas as pd

    if not isinstance(study, Study):
        raise TypeError(f"`study` must be a gradflow.Study; got {type(study).__name__}.")
    cores = os.cpu_count() or 1
    if workers is None:
        workers = cores
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"`workers` must be an integer >= 1; got {workers!r}.")
    configs = list(study.configurations())
    keys = [c.key(study) for c in configs]
    store = _Store(Path(out)) if out is not None else None
    outputs: dict[str, dict[str, Any]] = {}
    done = 0
    if store is not None:
        for c, k in zip(configs, keys, strict=True):
            stored = store.load(k)
            if stored is not None and stored.get("error") is None:
                outputs[k] = stored
                done += 1
                if progress is not None:
                    progress(done, len(configs), c, stored)
    todo = [(c, k) for c, k in zip(configs, keys, strict=True) if k not in outputs]
    t0 = time.perf_counter()
    study_data = study.to_dict()

    def finished(config: Configuration, key: str, output: dict[str, Any]) -> None:
        nonlocal done
        outputs[key] = output
        if store is not None:
            store.save(key, output)
        done += 1
        if progress is not None:
            progress(done, len(configs), config, output)

    where = _execute(study_data, todo, client, workers, cores, finished)
    elapsed = time.perf_counter() - t0
    rows = [row for k in keys for row in outputs[k]["rows"]]
    table = _table(pd, rows)
    if out is not None:
        _write(Path(out), study, table, where, len(todo), len(configs), elapsed)
    return table


def _execute(study_data, todo, client, workers, cores, finished) -> str:
    """Run the configurations to do; say where they ran."""
    if not todo:
        return "nothing to compute"
    if client is not None:
        from dask.distributed import as_completed as dask_completed

        cache = _active_cache()
        if cache is not None:  # the workers compile into (and load from) the same cache
            client.run(_enable_cache, cache)
        futures = {
            client.submit(
                _run_one, study_data, dataclasses.asdict(c), pure=False, key=f"gradflow-{k}"
            ): (c, k)
            for c, k in todo
        }
        for future in dask_completed(futures):
            c, k = futures[future]
            finished(c, k, future.result())
        return f"Dask scheduler {client.scheduler.address}"
    n = min(workers, len(todo))
    if n == 1:
        for c, k in todo:
            finished(c, k, _run_one(study_data, dataclasses.asdict(c)))
        return "this process"
    threads = max(1, cores // n)
    cache = _active_cache()
    with ProcessPoolExecutor(
        max_workers=n,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(threads, cache),
    ) as pool:
        futures = {
            pool.submit(_run_one, study_data, dataclasses.asdict(c)): (c, k) for c, k in todo
        }
        for future in as_completed(futures):
            c, k = futures[future]
            finished(c, k, future.result())
    return f"{n} local processes ({threads} thread{'s' if threads > 1 else ''} each)"


def _active_cache() -> str | None:
    """The persistent compilation cache this process turned on, if any (so that the
    workers share it)."""
    import sys

    cache = sys.modules.get(f"{__package__}._cache")
    directory = getattr(cache, "active", None)
    return None if directory is None else str(directory)


def _table(pd: Any, rows: list[dict[str, Any]]) -> Any:
    seen = {k: None for row in rows for k in row}
    extra = [k for k in seen if k not in COLUMNS]
    table = pd.DataFrame(rows, columns=[*COLUMNS, *extra])
    for name in ("N", "iterations", "start"):
        table[name] = table[name].astype("Int64")
    return table


def _write(out: Path, study: Study, table, where: str, computed: int, total: int, seconds: float):
    out.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out / "sweep.parquet", index=False)
    table.to_csv(out / "sweep.csv", index=False)
    versions = {
        name: importlib.metadata.version(name)
        for name in ("gradient-flow-analyzer", "jax", "diffrax", "numpy", "pandas")
    }
    meta = dict(
        study=study.to_dict(),
        versions=versions,
        python=platform.python_version(),
        machine=platform.platform(),
        executed=where,
        computed=computed,
        configurations=total,
        seconds=round(seconds, 3),
    )
    (out / "study.json").write_text(json.dumps(meta, indent=2) + "\n")
