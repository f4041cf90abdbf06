"""The whole `gradflow analyze` run on one problem: the analysis, the
gradient-equivalence table over several N, the figures, `results.json` and
`report.md`."""

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import jax
import numpy as np

import flow
import stability
from flow import validation

from . import _figure_worker
from ._document import EQUIVALENCE_N, dumps, results_document
from ._markdown import render_markdown


class ProblemError(ValueError):
    """The analysis of a problem failed on bad input: a `ValueError` or `TypeError`
    raised while discretising or analysing it (a user function that cannot be
    traced by JAX, a cost that is not finite at the start, a step that makes no
    sense for the metric). The message names the problem; the original error is the
    cause."""


@dataclasses.dataclass(frozen=True)
class AnalysisRun:
    """What [`run_analysis`][gradflow.run_analysis] produced: the `report`
    ([`StabilityReport`][stability.StabilityReport]), the `document` written to
    `results.json`, and the paths of every file written (`files`)."""

    report: stability.StabilityReport
    document: dict[str, Any]
    files: tuple[Path, ...]

    def __repr__(self) -> str:
        return f"AnalysisRun({self.report!r}, {len(self.files)} files)"


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    yield


@contextmanager
def _problem_errors(spec: str) -> Iterator[None]:
    try:
        yield
    except (ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        hint = ""
        if isinstance(e, jax.errors.JAXTypeError):
            hint = (
                " (the problem's functions must be traceable by JAX: jnp operations, "
                "no Python if/for on the state or control)"
            )
        raise ProblemError(f"analysing {spec} failed: {type(e).__name__}: {first}{hint}") from e


def run_analysis(
    problem: flow.OptimalControlProblem,
    *,
    spec: str | None = None,
    N: int = 200,
    scheme: str = "euler",
    metric: str = "hamiltonian",
    step: float | str | None = "optimal",
    tol: float = 1e-8,
    stop_on: str = "hamiltonian",
    max_steps: int = 20_000,
    U0: flow.RealArrayLike | None = None,
    U0_label: str | None = None,
    equivalence_N: Sequence[int] = EQUIVALENCE_N,
    flip: bool | str = "auto",
    out: str | Path = "gradflow-out",
    figures: bool = True,
    stage: Callable[[str], AbstractContextManager[Any]] | None = None,
) -> AnalysisRun:
    """The whole `gradflow analyze` run on `problem`, written into `out`.

    1. `stability.analyze(flow.shoot(problem, N, scheme), U0, metric=metric,
       step=step, tol=tol, stop_on=stop_on, max_steps=max_steps, flip=flip,
       throw=False)` (with `flip`, the flip at the step bound: `True`, `False` or
       `"auto"`, when the replay met the bound);
    2. `flow.check_gradients` at `flow.probe_control` for every N in
       `equivalence_N` (the analysis' own check is reused at its N; the others run
       in a second thread while the analysis runs);
    3. the figures ([`figures.report.draw`][figures.report.draw]: the spectrum over
       the stability disk, the replay's residual against the predicted rate, the
       equilibrium's controls and costates) as PNG and PDF, unless `figures=False`;
    4. `results.json` and `report.md`.

    `step`: `"optimal"`, `"hamiltonian"`, `"armijo"`, `"lbfgs"`, `"none"` or a
    positive number (see [`stability.analyze`][stability.analyze]). `U0`: the start,
    `(N, m)` (default zeros), described in the outputs by `U0_label`. `stage(name)`
    is entered around each stage (for a progress display). `spec` names the problem
    in the outputs (default its name).

    **Returns:** an [`AnalysisRun`][gradflow.AnalysisRun].

    **Raises:** [`ProblemError`][gradflow.ProblemError] (a `ValueError`) when the
    analysis fails on the problem's input, with the cause; `ValueError`/`TypeError`
    for bad arguments.
    """
    validation.instance(problem, "problem", flow.OptimalControlProblem)
    N = validation.positive_int(N, "N")
    Ns = sorted({validation.positive_int(n, "equivalence_N") for n in equivalence_N} | {N})
    tol = validation.positive_float(tol, "tol")
    max_steps = validation.positive_int(max_steps, "max_steps")
    spec = problem.name if spec is None else spec
    stage = _quiet if stage is None else stage
    scheme_obj = flow.scheme_from_name(scheme)
    metric_obj = flow.metrics.as_metric(metric)
    out = Path(out)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()

    # The sweep's other sizes are independent of the analysis: they are checked in a
    # second thread meanwhile (XLA compiles without the GIL, so the two compilations
    # share the machine's cores). Their errors surface in the sweep's stage below.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradflow-sweep")
    with _problem_errors(spec):
        others = {
            n: pool.submit(flow.check_gradients, flow.shoot(problem, n, scheme_obj))
            for n in Ns
            if n != N
        }
    pool.shutdown(wait=False)

    with stage(f"analysis at N = {N} (equilibrium, spectrum, Euler bound, replay)"):
        t0 = time.perf_counter()
        with _problem_errors(spec):
            sh = flow.shoot(problem, N, scheme_obj)
            report = stability.analyze(
                sh,
                U0,
                metric=metric_obj,
                step=step,
                tol=tol,
                stop_on=stop_on,
                max_steps=max_steps,
                flip=flip,
                throw=False,
            )
        timings["analysis"] = time.perf_counter() - t0

    with stage(f"gradient equivalence at N = {', '.join(map(str, Ns))}"):
        t0 = time.perf_counter()
        with _problem_errors(spec):
            sweep = [report.equivalence if n == N else others[n].result() for n in Ns]
        timings["equivalence_sweep"] = time.perf_counter() - t0

    settings = dict(
        tol=tol,
        stop_on=stop_on,
        U0="zeros" if U0 is None else (U0_label or "given"),
        max_steps=max_steps,
        equilibrium_tol=_default("equilibrium_tol"),
        k=_default("k"),
        equivalence_N=Ns,
        flip=flip,
    )

    def document(figs: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return results_document(
            report,
            problem=problem,
            spec=spec,
            equivalence_sweep=sweep,
            settings=settings,
            timings=timings,
            figures=figs,
        )

    files: list[Path] = []
    figs: list[dict[str, Any]] = []
    if figures:
        with stage("figures (PNG and PDF)"):
            t0 = time.perf_counter()
            figs = _figure_worker.draw(document([]), out)
            files += [out / f[k] for f in figs for k in ("png", "pdf")]
            timings["figures"] = time.perf_counter() - t0

    with stage("results.json and report.md"):
        out.mkdir(parents=True, exist_ok=True)
        timings["total"] = time.perf_counter() - t_start
        doc = document(figs)
        (out / "results.json").write_text(dumps(doc) + "\n", encoding="utf-8")
        (out / "report.md").write_text(render_markdown(doc), encoding="utf-8")
        files = [out / "results.json", out / "report.md", *files]
    return AnalysisRun(report=report, document=doc, files=tuple(files))


def _default(name: str) -> Any:
    import inspect

    return inspect.signature(stability.analyze).parameters[name].default


def read_controls(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Controls of shape `shape` from a `.npy` file (a `(N,)` array is taken as
    `(N, 1)`), as float64. **Raises:** `ValueError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--U0 {path}: no such file")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ValueError(f"--U0 {path}: not a .npy array ({e})") from None
    if arr.ndim == 1 and shape[1] == 1:
        arr = arr[:, None]
    if arr.shape != shape:
        raise ValueError(f"--U0 {path}: expected shape (N, m) = {shape}; got {arr.shape}")
    return np.asarray(arr, dtype=np.float64)
