"""The `gradflow` command line: `analyze`, `problems`, `figures`.

`gradflow analyze` runs [`run_analysis`][gradflow.run_analysis] (the whole analysis
of one problem: `stability.analyze`, the gradient-equivalence table over N, figures)
and writes `results.json`, `report.md` and the figures (PNG and PDF) into `--out`;
it prints a summary table and the verdict, or with `--json` the results document.
Bad input, and a problem the analysis cannot start on, exit with code 2 and one line
on stderr.
"""

import argparse
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

import flow
from flow import format_number, problems

from . import _continue_cli, _sweep_cli
from ._cache import enable_cache
from ._document import EQUIVALENCE_N


class UsageError(Exception):
    """Bad input from the command line: reported in one line, exit code 2."""


# --------------------------------------------------------------------------
# Argument types (argparse turns their ArgumentTypeError into "argument --X: ...").


def _integer_at_least_one(what: str) -> Callable[[str], int]:
    """An argparse type: an integer >= 1, named `what` in the error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} >= 1, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"expected {what} >= 1, got {value}")
        return value

    return parse


_grid_size = _integer_at_least_one("an integer N")
_step_count = _integer_at_least_one("an integer")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got {text!r}")
    return value


def _named(parse: Callable[[str], Any], argument: str) -> Callable[[str], str]:
    """An argparse type that checks a name with `parse` (which raises ValueError)."""

    def check(text: str) -> str:
        try:
            return parse(text).name
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e).replace(f"`{argument}` must", "must")) from None

    return check


_scheme = _named(flow.scheme_from_name, "scheme")
_metric = _named(flow.metrics.metric_from_name, "metric")

#: `--step` words besides a positive number (the step rules of stability.analyze).
STEP_WORDS = ("optimal", "effective", "hamiltonian", "armijo", "lbfgs", "none")


def _step(text: str) -> str | float:
    if text.lower() in STEP_WORDS:
        return text.lower()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"expected {', '.join(STEP_WORDS)} or a positive number, got {text!r}"
        )
    return value


def _output_folder(text: str) -> Path:
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {text}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {text}: cannot create the folder ({e.strerror})") from e
    return out


def _start(text: str | None, shape: tuple[int, int]) -> tuple[np.ndarray | None, str | None]:
    """`--U0`: a number (every control equal to it) or a `.npy` file of shape (N, m)."""
    from ._run import read_controls

    if text is None:
        return None, None
    try:
        value = float(text)
    except ValueError:
        try:
            return read_controls(text, shape), text
        except ValueError as e:
            raise UsageError(str(e)) from None
    if not math.isfinite(value):
        raise UsageError(f"--U0 {text}: expected a finite number or a .npy file")
    return np.full(shape, value), f"constant {value:g}"


# --------------------------------------------------------------------------
# Progress on stderr (so that `--json` keeps stdout pure JSON).


def _stage_display(console: Any) -> Callable[[str], Any]:
    """A context-manager factory: a spinner while a stage runs and, on a terminal, a
    line with its wall time when it ends."""

    @contextmanager
    def stage(name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        with console.status(f"{name} ..."):
            yield
        if console.is_terminal:
            console.print(f"[green]done[/green] {name} [dim]({time.perf_counter() - t0:.1f} s)")

    return stage


# --------------------------------------------------------------------------
# Commands.


def _load(spec: str) -> flow.OptimalControlProblem:
    try:
        return problems.load(spec)
    except problems.ProblemLoadError as e:
        raise UsageError(f"--problem: {e}") from None


def _analyze(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ._document import dumps
    from ._run import ProblemError, run_analysis

    problem = _load(args.problem)
    U0, label = _start(args.U0, (args.N, problem.control_dim))
    out = _output_folder(args.out)
    err = Console(stderr=True)
    try:
        run = run_analysis(
            problem,
            spec=args.problem,
            N=args.N,
            scheme=args.scheme,
            metric=args.metric,
            step=args.step,
            tol=args.tol,
            stop_on=args.stop_on,
            max_steps=args.max_steps,
            U0=U0,
            U0_label=label,
            equivalence_N=args.equivalence_N,
            flip={"auto": "auto", "always": True, "never": False}[args.flip],
            out=out,
            stage=_stage_display(err),
        )
    except ProblemError as e:
        raise UsageError(str(e)) from e
    for warning in run.report.warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    if args.json:
        print(dumps(run.document))
        return 0
    _print_summary(Console(), run.document, out)
    return 0


def _print_summary(console: Any, doc: dict[str, Any], out: Path) -> None:
    from rich.table import Table

    g = format_number
    eq, cl, eu, tol, rp = (
        doc["equilibrium"],
        doc["classification"],
        doc["euler"],
        doc["tolerance"],
        doc["replay"],
    )
    table = Table(
        title=f"{doc['problem']['name']} (N = {doc['N']}, {doc['scheme']}, {doc['metric']} metric)",
        show_header=True,
    )
    table.add_column("stage")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    rows = [
        ("equilibrium", "status", eq["status"]),
        ("", "E^N(U*)", g(eq["cost"], ".10g")),
        (
            "",
            "max|grad|, max|dH/du|",
            f"{g(eq['gradient_norm'], '.1e')}, {g(eq['hamiltonian_residual'], '.1e')}",
        ),
        ("spectrum", "classification", cl["kind"]),
        ("", "stiff end, slow end", f"{g(doc['spectrum']['stiff'])}, {g(doc['spectrum']['slow'])}"),
        ("Euler bound", "alpha_max, alpha_opt", f"{g(eu['alpha_max'])}, {g(eu['alpha_opt'])}"),
        (
            "",
            f"alpha ({doc['step_rule']}), rho(alpha)",
            f"{g(eu['step'])}, {g(eu['rate_at_step'])}",
        ),
        ("", f"worst-case iterations (error x {eu['reduction']:.0e})", g(eu["iterations_at_step"])),
        ("Thm 5.14", f"|grad| <= {tol['tol']:.0e}: |dH/du| <=", f"{tol['tol_over_h']:.1e}"),
        ("", f"|dH/du| <= {tol['tol']:.0e}: |grad| <=", f"{tol['tol_times_h']:.1e}"),
    ]
    if rp is not None:
        agrees = {True: "agree", False: "DISAGREE", None: "n/c"}[rp["agrees"]]
        rows += [
            ("replay", rp["status"], f"{rp['num_steps']} steps"),
            (
                "",
                "rate predicted, observed",
                f"{g(rp['predicted_rate'], '.3g')}, {g(rp['observed_rate'], '.3g')} ({agrees})",
            ),
        ]
        st = doc["start"]
        if st is not None:
            rows.append(
                (
                    "",
                    "iterations: observed, predicted for this start",
                    f"{rp['num_steps']}, {g(st['iterations_at_step'])}",
                )
            )
            rows.append(
                (
                    "",
                    "effective step, its predicted iterations",
                    f"{g(st['effective_step'])}, {g(st['iterations_at_effective'])}",
                )
            )
        if rp["period"]:
            rows.append(("", "cycle: period, half-width", f"{rp['period']}, {g(rp['amplitude'])}"))
    if doc["flip"] is not None:
        fl = doc["flip"]
        rows.append(
            (
                "flip",
                f"at alpha* = {g(fl['alpha'])}",
                f"{fl['kind']} (c = {g(fl['coefficient'], '.3g')})",
            )
        )
    sweep = doc["equivalence_sweep"]
    worst = max(max(c["costate_vs_autodiff"], c["lemma2"]) for c in sweep)
    rows.append(
        (
            "Lemma 2",
            f"N = {', '.join(str(c['N']) for c in sweep)}",
            f"{'holds' if doc['equivalence_holds'] else 'FAILS'} (worst {worst:.0e})",
        )
    )
    for r in rows:
        table.add_row(*r)
    console.print(table)
    console.print(f"[bold]Verdict:[/bold] {doc['headline']}")
    names = ", ".join(f"{f['name']}.png/.pdf" for f in doc["figures"])
    console.print(f"Wrote results.json, report.md and {names} to {out}/")


def _problems(args: argparse.Namespace) -> int:
    width = max(len(k) for k in (*problems.BUILTIN, *problems.FAMILIES))
    for name, (_, description) in problems.BUILTIN.items():
        default = " (default)" if name == problems.DEFAULT_PROBLEM else ""
        print(f"{name:<{width}}  {description}{default}")
    print("\nproblem families p -> problem (gradflow continue):")
    for name, (_, span, description) in problems.FAMILIES.items():
        print(f"{name:<{width}}  {description}; p from {span[0]:g} to {span[1]:g}")
    return 0


def _figures(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    import figures

    out = _output_folder(args.out)
    names = tuple(figures.FIGURES)
    if not names:
        print("no figures are registered (figures.FIGURES is empty)")
        return 0
    err = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err
    ) as progress:
        task = progress.add_task("figures", total=len(names))
        started: list[str] = []

        def report(name: str) -> None:
            if started:
                progress.advance(task)
            started.append(name)
            progress.update(task, description=f"figure {name}")

        written = figures.generate_all(out, quick=args.quick, progress=report)
        progress.update(task, completed=len(names), description="figures")
    print(f"wrote {len(written)} files for {len(names)} figures to {out}/")
    for path in written:
        print(f"  {path}")
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit code 2
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `gradflow` (sub-commands analyze, problems, figures,
    sweep, continue)."""
    parser = _Parser(
        prog="gradflow",
        description="Analyze direct shooting methods for optimal control as gradient flows.",
    )
    parser.add_argument("--version", action="version", version=flow.__version__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    an = sub.add_parser(
        "analyze",
        help="the whole analysis of one problem (default: the built-in scalar problem)",
        description="Equilibrium, spectrum, classification, forward-Euler step bound, "
        "Theorem 5.14, a replay of the descent, and the gradient-equivalence check; "
        "writes results.json, report.md and figures (PNG, PDF) into --out.",
    )
    an.add_argument(
        "--problem",
        default=problems.DEFAULT_PROBLEM,
        help="built-in name (see `gradflow problems`), path/to/file.py:object or "
        "package.module:object (default: %(default)s)",
    )
    an.add_argument(
        "--N", type=_grid_size, default=200, help="grid intervals (default: %(default)s)"
    )
    an.add_argument(
        "--scheme", type=_scheme, default="euler", help="euler | heun | rk4 (default: %(default)s)"
    )
    an.add_argument(
        "--metric",
        type=_metric,
        default="hamiltonian",
        help="identity | hamiltonian | newton | diagonal-hessian (default: %(default)s)",
    )
    an.add_argument(
        "--step",
        type=_step,
        default="optimal",
        help="the replayed step: a positive number ALPHA, optimal (alpha_opt, or "
        "alpha_max/2 for a complex spectrum), effective (the fewest iterations predicted "
        "for this start), hamiltonian (alpha = 1/h, section 6.2; "
        "with --metric identity only), armijo or lbfgs (line searches), none (no "
        "replay) (default: %(default)s)",
    )
    an.add_argument(
        "--tol",
        type=_positive_float,
        default=1e-8,
        help="stopping tolerance of the replay, on the --stop-on residual; Theorem 5.14 "
        "is stated for it (default: %(default)g)",
    )
    an.add_argument(
        "--stop-on",
        choices=flow.validation.STOP_ON,
        default="hamiltonian",
        help="the residual --tol is measured on: max|dH/du| or max|grad E^N| "
        "(default: %(default)s)",
    )
    an.add_argument(
        "--max-steps",
        type=_step_count,
        default=20_000,
        help="step limit of the replay (default: %(default)s)",
    )
    an.add_argument(
        "--U0",
        default=None,
        metavar="VALUE|FILE.npy",
        help="the start: a number (every control equal to it) or a .npy array of shape "
        "(N, m) (default: zeros)",
    )
    an.add_argument(
        "--equivalence-N",
        type=_grid_size,
        nargs="+",
        default=list(EQUIVALENCE_N),
        metavar="N",
        help="grid sizes of the gradient-equivalence table; --N is always included "
        "(default: %(default)s)",
    )
    an.add_argument(
        "--flip",
        choices=("auto", "always", "never"),
        default="auto",
        help="classify the flip at the step bound (stability.flip: does descent settle on "
        "a 2-cycle past alpha_max, or leave?): always, never, or auto, when the replay "
        "met the bound (default: %(default)s)",
    )
    an.add_argument("--out", default="gradflow-out", help="output folder (default: %(default)s)")
    an.add_argument(
        "--json",
        action="store_true",
        help="print the results document (JSON) instead of the summary",
    )
    an.set_defaults(func=_analyze)
    pr = sub.add_parser("problems", help="list the built-in problems")
    pr.set_defaults(func=_problems)
    fg = sub.add_parser("figures", help="regenerate every figure of figures/")
    fg.add_argument(
        "--out", default="gradflow-figures", help="output folder (default: %(default)s)"
    )
    fg.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    fg.set_defaults(func=_figures)
    _sweep_cli.add_parser(sub, UsageError)
    _continue_cli.add_parser(
        sub,
        UsageError,
        {
            "grid_size": _grid_size,
            "step_count": _step_count,
            "scheme": _scheme,
            "output_folder": _output_folder,
            "start": _start,
        },
    )
    return parser


def _enable_cache() -> None:
    """The persistent compilation cache, on by default (`GRADFLOW_CACHE_DIR` moves it or
    turns it off); a directory that is not the user's own is reported and skipped."""
    try:
        enable_cache()
    except PermissionError as e:
        print(f"gradflow: warning: {e} Running without the cache.", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `gradflow` console script; returns the exit code (0, or 2
    on bad input with one line on stderr)."""
    try:
        args = build_parser().parse_args(argv)
        if args.func is not _problems:
            _enable_cache()
        return int(args.func(args))
    except UsageError as e:
        print(f"gradflow: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
