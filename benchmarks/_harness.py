"""The benchmark harness: how the scripts in `benchmarks/` measure and record.

One idea, shared by every `bench_*.py`: time a call the same way everywhere and write
down, next to the numbers, the machine and code they came from. The scripts are run
as `python benchmarks/bench_x.py`, which puts this folder on `sys.path`, and import
from here with `from _harness import ...`.

Measuring:

- [`CompileTimer`][]: the JIT compilation a block of code triggered, from the
  durations JAX reports through `jax.monitoring` (trace, lowering to MLIR, XLA
  compile; `COMPILE_EVENTS`). Wall time minus this is the run time of a first call.
- [`timed`][]: `(fn(*args), wall seconds)` of one call.
- [`repeat`][]: run a call until it has run `min_repeats` times and `budget_s`
  seconds (or `max_repeats` times); the wall time of each run and the minor page
  faults per run. [`summary`][] turns that into the recorded dictionary (median, min,
  repeats, faults).

Recording:

- [`environment`][]: the machine (CPU model, count, load average), the versions of
  Python and of the numerical packages, and the git commit with the uncommitted
  changes under the given folders.
- [`write_json`][]: the results as strict JSON (through `flow.to_json`: numpy and JAX
  values become numbers or lists, non-finite numbers `null`), creating the folder.
- [`fmt_n`][] (`10^3` for the powers of ten in tables) and [`load_text`][] (the
  `uptime`-style load average line the READMEs quote).

Nothing here imports JAX or `flow` until it is used, so a driver that only starts
subprocesses (`bench_defaults.py`) stays light.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"

# ----------------------------------------------------------------------------- compile time

#: The `jax.monitoring` duration events whose sum is "compile time": tracing to a
#: jaxpr, lowering it to an MLIR module, and the XLA backend compile.
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)

_compile_log: dict[str, float] = {}
_listening = False


def _on_duration(event: str, duration: float, **kwargs: Any) -> None:
    if event in COMPILE_EVENTS:
        _compile_log[event] = _compile_log.get(event, 0.0) + duration


def _listen() -> None:
    """Register the `jax.monitoring` listener once per process."""
    global _listening
    if not _listening:
        import jax

        jax.monitoring.register_event_duration_secs_listener(_on_duration)
        _listening = True


class CompileTimer:
    """The compilation done inside a `with` block, as JAX reports it.

        with CompileTimer() as ct:
            out = call()
        ct.seconds  # trace + lowering + XLA compile, summed
        ct.parts    # {"jaxpr_trace_duration": ..., ...} (the last path component)

    Blocks must not nest (they share one process-wide log)."""

    def __init__(self) -> None:
        self.events: dict[str, float] = {}

    def __enter__(self) -> CompileTimer:
        _listen()
        _compile_log.clear()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.events = dict(_compile_log)
        _compile_log.clear()

    @property
    def seconds(self) -> float:
        return sum(self.events.values())

    @property
    def parts(self) -> dict[str, float]:
        return {k.rsplit("/", 1)[-1]: v for k, v in self.events.items()}


# ----------------------------------------------------------------------------- timing


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """`(fn(*args, **kwargs), wall seconds)`. The caller makes sure the result is
    computed when `fn` returns (`jax.block_until_ready`, or host values)."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def minor_faults() -> int:
    """Minor page faults of this process so far (`getrusage`)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def repeat(
    call: Callable[[], Any], *, min_repeats: int, max_repeats: int, budget_s: float
) -> tuple[list[float], float]:
    """Run `call` until it has run at least `min_repeats` times for at least
    `budget_s` seconds in all, or `max_repeats` times. Returns the wall time of each
    run and the minor page faults per run (0 runs when `max_repeats` is 0)."""
    times: list[float] = []
    faults0 = minor_faults()
    while len(times) < max_repeats and (len(times) < min_repeats or sum(times) < budget_s):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return times, (minor_faults() - faults0) / max(len(times), 1)


def summary(times: list[float], faults: float) -> dict[str, Any]:
    """The recorded form of `repeat`'s output: median, min, repeats, faults per call."""
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "repeats": len(times),
        "minor_faults_per_call": round(faults, 1),
    }


# ----------------------------------------------------------------------------- recording


def cpu_model() -> str:
    """The CPU's model name, family and model from /proc/cpuinfo (", VM guest" when
    the hypervisor flag is set)."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or "unknown"
    vm = ", VM guest" if "hypervisor" in info.get("flags", "").split() else ""
    return (
        f"{info.get('model name', '?')} (family {info.get('cpu family', '?')}, "
        f"model {info.get('model', '?')}{vm})"
    )


def git(*args: str) -> str | None:
    """The output of a read-only `git` query run in this folder, or None."""
    try:
        out = subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def load_text() -> str:
    """The load average as `uptime` prints it: "load average: 1.02, 0.88, 0.75"."""
    return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def environment(
    packages: Iterable[str] = (),
    *,
    dirty: Iterable[str] = ("flow",),
    **extra: Any,
) -> dict[str, Any]:
    """Where the numbers come from.

    Keys: `date_utc`, `cpu`, `cpu_count`, `platform`, `python`, the versions of
    `jax`, `jaxlib`, `equinox`, `numpy`, `flow` and of each of `packages` (None when
    not importable), `jax_backend`, `git_commit` (short hash of HEAD),
    `<folder>_uncommitted_changes` (`git status --porcelain` of each folder in
    `dirty`), `loadavg_start` (1, 5, 15 min), then `extra`. Scripts add
    `loadavg_end` and `wall_s` when they finish."""
    import importlib

    import jax

    import flow

    env: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    for name in ("jax", "jaxlib", "equinox", "numpy", *packages):
        try:
            env[name] = importlib.import_module(name).__version__
        except ImportError:
            env[name] = None
    env["flow"] = flow.__version__
    env["jax_backend"] = jax.default_backend()
    env["git_commit"] = git("rev-parse", "--short", "HEAD")
    for folder in dirty:
        env[f"{folder}_uncommitted_changes"] = git("status", "--porcelain", "--", f":(top){folder}")
    env["loadavg_start"] = os.getloadavg()
    env.update(extra)
    return env


def finish(env: dict[str, Any], t_start: float) -> None:
    """Add `loadavg_end` and `wall_s` (since `t_start`, a `time.perf_counter()`)."""
    env["loadavg_end"] = os.getloadavg()
    env["wall_s"] = time.perf_counter() - t_start


def write_json(path: Path | str, results: Any) -> Path:
    """Write `results` as strict, indented JSON (`flow.to_json`: non-finite numbers
    become `null`) to `path`, creating its folder; returns the path."""
    from flow import to_json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json(results), indent=1, allow_nan=False) + "\n")
    return path


# ----------------------------------------------------------------------------- formatting


def fmt_n(N: int) -> str:
    """A grid size for tables: `10^3` for a power of ten, else the number."""
    e = round(math.log10(N)) if N > 0 else 0
    return f"10^{e}" if 10**e == N else str(N)
