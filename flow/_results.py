r"""One results vocabulary for every verb of the package.

- [`RESULTS`][flow.RESULTS]: the status enumeration (an `equinox.Enumeration`, the
  lineax/optimistix/diffrax pattern). Verbs with outcomes of their own extend it,
  as `optimistix.RESULTS` extends `lineax.RESULTS`:
  [`flow.indirect.RESULTS`][flow.indirect.RESULTS] adds the singular Newton system
  and the failed line search.
- [`AbstractResult`][flow.AbstractResult]: the base of every result object. It owns
  `.status` (the short word, the item's name: nobody parses a message to get it
  back), `.message`, `.success`, `.to_dict()` (strict JSON through the one encoder
  [`to_json`][flow.to_json]) and the short repr.
- The exceptions raised with `throw=True`: [`ResultError`][flow.ResultError] and its
  two kinds, [`DivergenceError`][flow.DivergenceError] and
  [`ConvergenceError`][flow.ConvergenceError]; each carries the failed result.
"""

import dataclasses
from typing import Any, ClassVar

import equinox as eqx
import jax
import numpy as np
from equinox import AbstractVar

from ._encoding import to_json


class RESULTS(eqx.Enumeration):
    """The outcome of a verb. `RESULTS[item]` is the item's message; a result's
    `.status` is the item's name (`"converged"`, `"diverged"`, ...)."""

    converged = "converged: the residual fell below the tolerance `tol`"
    completed = (
        "completed: ran to the requested end (every step, or the final time tau1) with "
        "no tolerance to meet"
    )
    max_steps = "stopped: `max_steps` was reached before the tolerance"
    diverged = (
        "diverged: a non-finite value appeared, or the gradient grew past the divergence limit"
    )
    nonfinite = "failed: the cost or its gradient is not finite at the start point U0"
    stalled = (
        "stalled: no further progress is possible at this precision (the tolerance is "
        "likely below the rounding floor of the residual)"
    )
    indefinite = (
        "stopped: the Newton metric met non-positive curvature (the Hessian is not "
        "positive definite), so M^-1 grad E^N is not a descent direction"
    )
    solver_failed = "failed: the ODE solver reported an error (step-size underflow)"
    oscillating = (
        "stopped: the iterates settled on a cycle instead of a fixed point (the step is "
        "past the forward-Euler stability bound, where the fixed point loses stability "
        "in a flip: see stability.flip)"
    )


#: The statuses that count as success.
SUCCESSES = frozenset({"converged", "completed"})

#: Statuses whose exception is a DivergenceError (the others: ConvergenceError).
DIVERGENCES = frozenset({"diverged", "nonfinite"})


def status_of(result: Any) -> str:
    """The name of an enumeration item (`"converged"`, ...), for a concrete result;
    `"traced"` under a JAX transformation, `"batched"` for a vmapped result."""
    value = result._value
    if isinstance(value, jax.core.Tracer):
        return "traced"
    value = np.asarray(value)
    if value.ndim != 0:
        return "batched"
    return _names(result._enumeration)[int(value)]


_NAME_CACHE: dict[Any, tuple[str, ...]] = {}


def _names(enumeration: Any) -> tuple[str, ...]:
    try:
        return _NAME_CACHE[enumeration]
    except KeyError:
        pass
    items = enumeration._name_to_item
    names = [""] * len(items)
    for name, item in items.items():
        names[int(item._value)] = name
    _NAME_CACHE[enumeration] = tuple(names)
    return _NAME_CACHE[enumeration]


class ResultError(RuntimeError):
    """A verb failed and `throw=True`. `.result` is the failed result object (the same
    object `throw=False` returns), so nothing computed is lost."""

    def __init__(self, message: str, result: Any = None):
        super().__init__(message)
        self.result = result


class DivergenceError(ResultError):
    """Raised (with `throw=True`) when a run diverged or its start is not finite."""


class ConvergenceError(ResultError):
    """Raised (with `throw=True`) when a tolerance was not reached: `max_steps`, a
    stall, a cycle (`oscillating`), an indefinite Newton metric, a failed solver or
    Newton system."""


class AbstractResult(eqx.Module):
    r"""The base of every result object.

    Every result has `result` (an item of [`RESULTS`][flow.RESULTS] or of an
    enumeration that extends it), and from it:

    - `status`: the short word, the item's name (`"converged"`, `"completed"`,
      `"max_steps"`, `"diverged"`, `"nonfinite"`, `"stalled"`, `"indefinite"`,
      `"solver_failed"`, `"oscillating"`, and the extensions' items);
    - `message`: the item's text, followed by what the verb found (where, why);
    - `success`: `status in {"converged", "completed"}`;
    - `to_dict()`: a strict-JSON dictionary (through [`to_json`][flow.to_json]:
      non-finite numbers become `null`), always with `status`, `success` and
      `message`; `json.dumps(result.to_dict(), allow_nan=False)` never fails;
    - a short repr: `Name(status: the key numbers)`.

    Subclasses declare `result` as a field, implement `_record()` (the rest of the
    dictionary) and `_summary()` (the repr's numbers), and may add a `details`
    sentence to the message with `_details()`. Array-valued entries listed in
    `_arrays` appear in `to_dict` only with `include_arrays=True`.
    """

    result: AbstractVar[Any]
    _arrays: ClassVar[tuple[str, ...]] = ()

    @property
    def status(self) -> str:
        """The short status word (the name of `result`)."""
        return status_of(self.result)

    @property
    def statuses(self) -> tuple[str, ...]:
        """The status of every element of a batched (vmapped) result, in order; a
        one-element tuple for an unbatched one."""
        names = _names(self.result._enumeration)
        return tuple(names[int(v)] for v in np.asarray(self.result._value).reshape(-1))

    @property
    def success(self) -> bool:
        """True when the status is `"converged"` or `"completed"`."""
        return self.status in SUCCESSES

    @property
    def message(self) -> str:
        """The status message, with what the verb found about it (where, why)."""
        status = self.status
        if status in ("traced", "batched"):
            return status
        text = self.result._enumeration._index_to_message[int(np.asarray(self.result._value))]
        details = self._details()
        return f"{text}. {details}" if details else text

    def _details(self) -> str:
        """A sentence added to the message (default none)."""
        return ""

    def _fields(self) -> dict[str, Any]:
        """Every dataclass field by name (class variables left out)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def _record(self, include_arrays: bool) -> dict[str, Any]:
        """The entries of `to_dict` besides the status (default: every field but
        `result`)."""
        del include_arrays
        return {k: v for k, v in self._fields().items() if k != "result"}

    def _summary(self) -> str:
        """The numbers shown by the repr after the status."""
        return ""

    def to_dict(self, *, include_arrays: bool = False) -> dict[str, Any]:
        """A strict-JSON dictionary: `status`, `success`, `message` and the result's
        own entries (arrays listed in `_arrays` only with `include_arrays=True`).
        Non-finite numbers are `null` (see [`to_json`][flow.to_json])."""
        record = self._record(include_arrays)
        if not include_arrays:
            record = {k: v for k, v in record.items() if k not in self._arrays}
        out: dict[str, Any] = {
            "status": self.status,
            "success": self.success,
            "message": self.message,
        }
        out.update(record)
        return to_json(out)

    def __repr__(self) -> str:
        status = self.status
        if status in ("traced", "batched"):
            return f"{type(self).__name__}(<{status}>)"
        summary = self._summary()
        return f"{type(self).__name__}({status}{': ' + summary if summary else ''})"

    def raise_for_status(self, verb: str, hint: str = "") -> None:
        """Raise [`DivergenceError`][flow.DivergenceError] or
        [`ConvergenceError`][flow.ConvergenceError] (carrying this result) unless the
        status is a success. `verb` names the function; `hint` says what to try."""
        status = self.status
        if status in ("traced", "batched"):
            raise ValueError(
                f"{verb}(..., throw=True) cannot report a status under a JAX "
                f"transformation (vmap/jit): pass throw=False and read `.result`."
            )
        if self.success:
            return
        kind = DivergenceError if status in DIVERGENCES else ConvergenceError
        tail = f" {hint}" if hint else ""
        text = self.message.rstrip(".")
        raise kind(f"{verb}: {text}.{tail} Pass throw=False to get the result.", self)


class AbstractRecord(AbstractResult):
    """A result that cannot fail (a check, a table, a bound, a report of numbers):
    its status is always `completed`, and `to_dict()` holds its fields."""

    @property
    def result(self) -> RESULTS:
        """Always `completed` (what it found is in the fields)."""
        return RESULTS.completed
