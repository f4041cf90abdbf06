"""The `gradflow` command line."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from pathlib import Path

import flow
from flow import problems


class UsageError(Exception):
    """Bad input from the command line: reported in one line, exit code 2."""


def load_problem(spec: str) -> flow.OptimalControlProblem:
    """A built-in name, `path/to/file.py:object` or `package.module:object`.

    The object may be an `OptimalControlProblem` or a callable with no required
    arguments that returns one.
    """
    if ":" not in spec:
        if spec not in problems.BUILTIN:
            raise UsageError(
                f"unknown problem {spec!r}; built-in problems: "
                f"{', '.join(sorted(problems.BUILTIN))} (or give file.py:object)"
            )
        return problems.get(spec)
    where, _, attr = spec.rpartition(":")
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
            raise UsageError(f"importing {where} failed: {type(e).__name__}: {e}") from e
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise UsageError(f"cannot import module {where!r}: {e}") from e
    if not hasattr(module, attr):
        raise UsageError(f"{where} has no object named {attr!r}")
    obj = getattr(module, attr)
    if not isinstance(obj, flow.OptimalControlProblem) and callable(obj):
        try:
            obj = obj()
        except Exception as e:  # noqa: BLE001
            raise UsageError(f"calling {spec} failed: {type(e).__name__}: {e}") from e
    if not isinstance(obj, flow.OptimalControlProblem):
        raise UsageError(
            f"{spec} is a {type(obj).__name__}, expected an OptimalControlProblem "
            f"or a function returning one"
        )
    return obj


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer N >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer N >= 1, got {value}")
    return value


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2e}"


def _analyze(args: argparse.Namespace) -> int:
    problem = load_problem(args.problem)
    try:
        scheme = flow.scheme_from_name(args.scheme)
    except ValueError as e:
        raise UsageError(str(e)) from e
    results = []
    for N in args.N:
        sh = flow.shoot(problem, N, scheme)
        results.append(flow.check_gradients(sh, flow.probe_control(sh)))
    if args.json:
        print(
            json.dumps(
                {
                    "equivalence": [r.to_dict() for r in results],
                    "versions": {"gradient-flow-analyzer": flow.__version__},
                },
                indent=2,
            )
        )
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(
        title=f"Gradient equivalence on {problem.name!r} ({scheme.name}, probe control)",
        caption="costate, fin. diff.: gradient routes against autodiff; Lemma 2: "
        "grad E^N against h*dH/du; all max|a-b|/max|grad|",
    )
    for col in ("N", "E^N(U)", "max|grad|", "max|dH/du|", "costate", "fin. diff.", "Lemma 2"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(
            str(r.N),
            f"{r.cost:.6g}",
            _fmt(r.gradient_norm),
            _fmt(r.hamiltonian_residual),
            _fmt(r.costate_vs_autodiff),
            _fmt(r.fd_vs_autodiff),
            _fmt(r.lemma2),
        )
    console.print(table)
    worst = max(max(r.costate_vs_autodiff, r.lemma2) for r in results)
    verdict = "hold to rounding" if worst < 1e-11 else "DO NOT hold"
    console.print(
        f"Verdict: the costate gradient and Lemma 2 {verdict} "
        f"(worst relative difference {worst:.1e}); |dH/du| = |grad|/h, so a "
        f"tolerance eps on grad E^N is eps/h on the Hamiltonian condition."
    )
    return 0


def _problems(args: argparse.Namespace) -> int:
    width = max(len(k) for k in problems.BUILTIN)
    for name, (_, description) in problems.BUILTIN.items():
        default = " (default)" if name == problems.DEFAULT_PROBLEM else ""
        print(f"{name:<{width}}  {description}{default}")
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit code 2
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gradflow",
        description="Analyze direct shooting methods as gradient flows.",
    )
    parser.add_argument("--version", action="version", version=flow.__version__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    an = sub.add_parser(
        "analyze", help="analyze one problem (default: the built-in scalar problem)"
    )
    an.add_argument(
        "--problem",
        default=problems.DEFAULT_PROBLEM,
        help="built-in name, path/to/file.py:object or package.module:object",
    )
    an.add_argument(
        "--N",
        type=_positive_int,
        nargs="+",
        default=[50, 200, 1000],
        help="number(s) of grid intervals",
    )
    an.add_argument("--scheme", default="euler", help="euler | heun | rk4")
    an.add_argument("--json", action="store_true", help="print JSON instead of a table")
    an.set_defaults(func=_analyze)
    pr = sub.add_parser("problems", help="list the built-in problems")
    pr.set_defaults(func=_problems)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `gradflow` console script."""
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except UsageError as e:
        print(f"gradflow: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
