"""The `gradflow` command line: `analyze`, `problems`, `figures`.

`gradflow analyze` runs [`stability._report.run_analysis`][] (the whole analysis of
one problem: `stability.analyze`, the gradient-equivalence table over N, figures)
and writes `results.json`, `report.md` and the figures (PNG and PDF) into `--out`;
it prints a summary table and the verdict, or with `--json` the results document.
Bad input exits with code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import flow
from flow import problems


class UsageError(Exception):
    """Bad input from the command line: reported in one line, exit code 2."""


def load_problem(spec: str) -> flow.OptimalControlProblem:
    """A built-in name, `path/to/file.py:object` or `package.module:object`.

    The object may be an `OptimalControlProblem` or a callable with no required
    arguments that returns one.

    **Raises:** [`UsageError`][stability._cli.UsageError] naming what is wrong: an
    unknown name, a missing file or module, a missing object, a callable with
    required arguments, or an object of another type.
    """
    if ":" not in spec:
        if spec not in problems.BUILTIN:
            raise UsageError(
                f"unknown problem {spec!r}; built-in problems: "
                f"{', '.join(sorted(problems.BUILTIN))} (or give file.py:object)"
            )
        return problems.get(spec)
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise UsageError(f"--problem {spec!r}: expected path/to/file.py:object or module:object")
    if where.endswith(".py") or "/" in where:
        path = Path(where)
        if not path.is_file():
            raise UsageError(f"problem file not found: {where}")
        mod_spec = importlib.util.spec_from_file_location(path.stem, path)
        if mod_spec is None or mod_spec.loader is None:  # pragma: no cover
            raise UsageError(f"cannot import {where}")
        module = importlib.util.module_from_spec(mod_spec)
        try:
            mod_spec.loader.exec_module(module)
        except Exception as e:  # noqa: BLE001
            raise UsageError(f"importing {where} failed: {type(e).__name__}: {_line(e)}") from e
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise UsageError(f"cannot import module {where!r}: {_line(e)}") from e
    if not hasattr(module, attr):
        raise UsageError(f"{where} has no object named {attr!r}")
    obj = getattr(module, attr)
    if not isinstance(obj, flow.OptimalControlProblem) and callable(obj):
        required = _required_parameters(obj)
        if required:
            raise UsageError(
                f"{spec} takes required arguments ({', '.join(required)}); expected an "
                f"OptimalControlProblem or a function with no required arguments returning one"
            )
        try:
            obj = obj()
        except Exception as e:  # noqa: BLE001
            raise UsageError(f"calling {spec} failed: {type(e).__name__}: {_line(e)}") from e
    if not isinstance(obj, flow.OptimalControlProblem):
        raise UsageError(
            f"{spec} is of type {type(obj).__name__}, expected an OptimalControlProblem "
            f"or a function returning one"
        )
    return obj


def _required_parameters(fn: Callable[..., Any]) -> list[str]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: just call them
        return []
    return [
        p.name
        for p in params
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def _line(e: BaseException) -> str:
    """The first non-empty line of an exception's message."""
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


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


_positive_int = _integer_at_least_one("an integer N")
_iterations = _integer_at_least_one("an integer")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got {text!r}")
    return value


def _scheme(text: str) -> str:
    try:
        return flow.scheme_from_name(text).name
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).replace("`scheme` must", "must")) from None


def _metric(text: str) -> str:
    try:
        return flow.metrics.metric_from_name(text).name
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).replace("`metric` must", "must")) from None


def _step(text: str) -> str | float:
    from ._report import STEP_RULES

    if text.lower() in STEP_RULES:
        return text.lower()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"expected {', '.join(STEP_RULES)} or a positive number, got {text!r}"
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


def _g(x: Any, spec: str = ".4g") -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    return format(x, spec)


def _analyze(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ._report import ProblemError, dumps, run_analysis

    problem = load_problem(args.problem)
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
            eps=args.tol,
            iterations=args.iterations,
            equivalence_N=args.equivalence_N,
            out=out,
            stage=_stage_display(err),
        )
    except ProblemError as e:
        raise UsageError(str(e)) from e
    if args.json:
        print(dumps(run.document))
        return 0
    _print_summary(Console(), run.document, out)
    return 0


def _print_summary(console: Any, doc: dict[str, Any], out: Path) -> None:
    from rich.table import Table

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
        ("", "E^N(U*)", _g(eq["cost"], ".10g")),
        (
            "",
            "max|grad|, max|dH/du|",
            f"{_g(eq['gradient_norm'], '.1e')}, {_g(eq['hamiltonian_residual'], '.1e')}",
        ),
        ("spectrum", "classification", cl["status"]),
        (
            "",
            "stiff end, slow end",
            f"{_g(doc['spectrum']['stiff'])}, {_g(doc['spectrum']['slow'])}",
        ),
        ("Euler bound", "alpha_max, alpha_opt", f"{_g(eu['alpha_max'])}, {_g(eu['alpha_opt'])}"),
        (
            "",
            f"alpha ({doc['step_rule']}), rho(alpha)",
            f"{_g(eu['step'])}, {_g(eu['rate_at_step'])}",
        ),
        ("", "predicted iterations", _g(eu["iterations_at_step"])),
        (
            "Thm 5.14",
            f"|grad| <= {tol['eps']:.0e}: |dH/du| <=",
            f"{tol['hamiltonian_tolerance']:.1e}",
        ),
        (
            "",
            f"|dH/du| <= {tol['eps']:.0e}: |grad| <=",
            f"{tol['gradient_tolerance_for_eps_H']:.1e}",
        ),
    ]
    if rp is not None:
        agrees = {True: "agree", False: "DISAGREE", None: "n/c"}[rp["agrees"]]
        rows += [
            ("replay", rp["status"].split(":")[0], f"{rp['n_iterations']} iterations"),
            (
                "",
                "rate predicted, observed",
                f"{_g(rp['predicted_rate'], '.3g')}, {_g(rp['observed_rate'], '.3g')} ({agrees})",
            ),
        ]
    worst = max(max(c["costate_vs_autodiff"], c["lemma2"]) for c in doc["equivalence_sweep"])
    rows.append(
        (
            "Lemma 2",
            f"N = {', '.join(str(c['N']) for c in doc['equivalence_sweep'])}",
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
    width = max(len(k) for k in problems.BUILTIN)
    for name, (_, description) in problems.BUILTIN.items():
        default = " (default)" if name == problems.DEFAULT_PROBLEM else ""
        print(f"{name:<{width}}  {description}{default}")
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
    """The argument parser of `gradflow` (sub-commands analyze, problems, figures)."""
    from ._report import EQUIVALENCE_N

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
        "--N",
        type=_positive_int,
        default=200,
        help="grid intervals of the analysis (default: %(default)s)",
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
        help="replayed step alpha: optimal (alpha_opt, or alpha_max/2 for a complex "
        "spectrum), hamiltonian (alpha = 1/h, section 6.2), none (no replay), or a "
        "positive number (default: %(default)s)",
    )
    an.add_argument(
        "--tol",
        type=_positive_float,
        default=1e-6,
        help="gradient tolerance eps for Theorem 5.14 (default: %(default)g)",
    )
    an.add_argument(
        "--iterations",
        type=_iterations,
        default=20_000,
        help="iteration limit of the replay (default: %(default)s)",
    )
    an.add_argument(
        "--equivalence-N",
        type=_positive_int,
        nargs="+",
        default=list(EQUIVALENCE_N),
        metavar="N",
        help="grid sizes of the gradient-equivalence table; --N is always included "
        "(default: %(default)s)",
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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `gradflow` console script; returns the exit code (0, or 2
    on bad input with one line on stderr)."""
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except UsageError as e:
        print(f"gradflow: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
