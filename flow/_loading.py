"""Where a problem comes from: a built-in name, a file, or a module (the `--problem`
of the command line, and `flow.problems.load`)."""

import importlib
import importlib.util
import inspect
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ._problem import OptimalControlProblem
from ._problems import BUILTIN, get


class ProblemLoadError(ValueError):
    """[`load`][flow.problems.load] could not produce a problem from the spec; the
    message says what is wrong (one line)."""


def _line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


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


def builtin_name(spec: Any, names: Iterable[str], what: str, other: str) -> bool:
    """True when `spec` names a built-in (one of `names`), False for a
    `where:object` spec.

    **Raises:** `TypeError` for a spec that is not a string;
    [`ProblemLoadError`][flow.problems.ProblemLoadError] for an unknown name (the
    message names `what`, lists the built-in names, and gives `other`, the other
    form).
    """
    if not isinstance(spec, str):
        raise TypeError(f"`spec` must be a string; got {type(spec).__name__}.")
    if ":" in spec:
        return False
    if spec not in names:
        raise ProblemLoadError(
            f"unknown {what} {spec!r}; the built-in ones: {', '.join(sorted(names))} "
            f"(or give {other})"
        )
    return True


def import_object(spec: str) -> Any:
    """The object named by `path/to/file.py:object` or `package.module:object`.

    **Raises:** [`ProblemLoadError`][flow.problems.ProblemLoadError] for a malformed
    spec, a missing file or module, a failed import or a missing object.
    """
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise ProblemLoadError(
            f"problem {spec!r}: expected path/to/file.py:object or module:object"
        )
    if where.endswith(".py") or "/" in where:
        path = Path(where)
        if not path.is_file():
            raise ProblemLoadError(f"problem file not found: {where}")
        mod_spec = importlib.util.spec_from_file_location(path.stem, path)
        if mod_spec is None or mod_spec.loader is None:  # pragma: no cover
            raise ProblemLoadError(f"cannot import {where}")
        module = importlib.util.module_from_spec(mod_spec)
        try:
            mod_spec.loader.exec_module(module)
        except Exception as e:  # noqa: BLE001
            raise ProblemLoadError(
                f"importing {where} failed: {type(e).__name__}: {_line(e)}"
            ) from e
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise ProblemLoadError(f"cannot import module {where!r}: {_line(e)}") from e
    if not hasattr(module, attr):
        raise ProblemLoadError(f"{where} has no object named {attr!r}")
    obj = getattr(module, attr)
    return obj


def load(spec: str) -> OptimalControlProblem:
    """The problem named by `spec`: a built-in name (see `BUILTIN`),
    `path/to/file.py:object` or `package.module:object`.

    The object may be an [`OptimalControlProblem`][flow.OptimalControlProblem] or a
    callable with no required arguments that returns one.

    **Raises:** [`ProblemLoadError`][flow.problems.ProblemLoadError] (a `ValueError`)
    naming what is wrong: an unknown name, a missing file or module, a missing
    object, a callable with required arguments, or an object of another type.
    """
    if builtin_name(spec, BUILTIN, "problem", "file.py:object"):
        return get(spec)
    obj = import_object(spec)
    if not isinstance(obj, OptimalControlProblem) and callable(obj):
        required = _required_parameters(obj)
        if required:
            raise ProblemLoadError(
                f"{spec} takes required arguments ({', '.join(required)}); expected an "
                f"OptimalControlProblem or a function with no required arguments returning one"
            )
        try:
            obj = obj()
        except Exception as e:  # noqa: BLE001
            raise ProblemLoadError(f"calling {spec} failed: {type(e).__name__}: {_line(e)}") from e
    if not isinstance(obj, OptimalControlProblem):
        raise ProblemLoadError(
            f"{spec} is of type {type(obj).__name__}, expected an OptimalControlProblem "
            f"or a function returning one"
        )
    return obj
