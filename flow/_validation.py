"""The argument checks of every public verb, in one place.

Each function returns the value in the form the verb uses, or raises `TypeError`
(wrong kind of value) or `ValueError` (right kind, wrong value) whose message names
the argument and what was expected. The verbs of `flow`, `stability` and `gradflow`
use these (public as `flow.validation`), so one kind of mistake reads the same
everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array


_REAL = (int, float, np.integer, np.floating)


def _is_traced(value: Any) -> bool:
    return isinstance(value, jax.core.Tracer)


def _real_number(value: Any, name: str) -> float:
    """A real number or a concrete 0-d array as a float (bool refused)."""
    if isinstance(value, bool) or not isinstance(value, _REAL):
        if hasattr(value, "shape") and np.shape(value) == () and not _is_traced(value):
            value = np.asarray(value).item()
        if isinstance(value, bool) or not isinstance(value, _REAL):
            raise TypeError(f"`{name}` must be a real number; got {value!r}.")
    return float(value)


def positive_float(
    value: Any, name: str, *, allow_zero: bool = False, allow_traced: bool = False
) -> float | Any:
    """`value` as a finite positive (or, with `allow_zero`, non-negative) float.

    With `allow_traced`, a JAX tracer (a value under `vmap`/`jit`) passes unchecked.
    """
    if allow_traced and _is_traced(value):
        return value
    value = _real_number(value, name)
    ok = value >= 0 if allow_zero else value > 0
    if not (math.isfinite(value) and ok):
        sign = "non-negative" if allow_zero else "positive"
        raise ValueError(f"`{name}` must be a finite {sign} number; got {value}.")
    return value


def finite_float(value: Any, name: str) -> float:
    """`value` (a real number or a 0-d array) as a finite float."""
    value = _real_number(value, name)
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite; got {value}.")
    return value


def optional_positive_float(value: Any, name: str, **kwargs: Any) -> float | None:
    """None, or [`positive_float`][flow.validation.positive_float]."""
    return None if value is None else positive_float(value, name, **kwargs)


def fraction(value: Any, name: str) -> float:
    """`value` as a float in the open interval (0, 1)."""
    if isinstance(value, bool) or not isinstance(value, _REAL):
        raise TypeError(f"`{name}` must be a number in (0, 1); got {value!r}.")
    value = float(value)
    if not 0 < value < 1:
        raise ValueError(f"`{name}` must be in (0, 1); got {value}.")
    return value


def positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """`value` as a Python int >= `minimum` (booleans are refused)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"`{name}` must be an integer >= {minimum}; got {value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}; got {value}.")
    return int(value)


STOP_ON = ("hamiltonian", "gradient")
"""The residuals a stopping tolerance can be measured on (every verb's `stop_on`): the
Hamiltonian residual max_k |d_u H_k| (mesh-independent) or max |grad E^N|."""


def stop_on(value: Any) -> str:
    """`value` if it is one of `STOP_ON`, else a `ValueError` naming `stop_on`."""
    return choice(value, "stop_on", STOP_ON)


def choice(value: Any, name: str, options: Iterable[str]) -> str:
    """`value` if it is one of `options` (strings), else a `ValueError` listing them."""
    options = tuple(options)
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"`{name}` must be one of {options}; got {value!r}.")
    return value


def function(value: Any, name: str, signature: str) -> Callable[..., Any]:
    """`value` if it is callable; else a `TypeError` naming the expected signature."""
    if not callable(value):
        raise TypeError(f"`{name}` must be a callable {signature}; got {type(value).__name__}.")
    return value


def instance(value: Any, name: str, kind: type | tuple[type, ...], hint: str = "") -> Any:
    """`value` if `isinstance(value, kind)`; else a `TypeError` naming `name`."""
    if not isinstance(value, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        names = " or ".join(k.__name__ for k in kinds)
        extra = f" ({hint})" if hint else ""
        raise TypeError(f"`{name}` must be a {names}{extra}; got {type(value).__name__}.")
    return value


def real_array(
    value: Any,
    name: str,
    shape: tuple[int, ...] | None = None,
    what: str = "",
    *,
    finite: bool = True,
) -> Array:
    """`value` as a float64 JAX array (of exactly `shape`, if given), finite unless
    `finite=False` (checked only when concrete). `what` says what the array holds.
    Integers and Python numbers are converted; a float dtype other than float64
    (float32, float16) is refused, as it would silently carry single-precision
    values into a float64 computation."""
    arr = value if hasattr(value, "shape") and hasattr(value, "dtype") else np.asarray(value)
    described = f" ({what})" if what else ""
    if np.dtype(arr.dtype).kind not in "fiu":
        raise TypeError(f"`{name}` must be a real array{described}; got dtype {arr.dtype}.")
    if np.dtype(arr.dtype).kind == "f" and np.dtype(arr.dtype) != np.float64:
        raise TypeError(
            f"`{name}` must be a float64 array{described}; got dtype {arr.dtype}. Convert "
            f"with jnp.asarray({name}, dtype=float)."
        )
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise ValueError(
            f"`{name}` must have shape {tuple(shape)}{described}; got {tuple(arr.shape)}."
        )
    arr = jnp.asarray(arr, dtype=jnp.float64)
    if finite and not _is_traced(arr) and not bool(jnp.all(jnp.isfinite(arr))):
        raise ValueError(f"`{name}` must be finite.")
    return arr


def float64_array(value: Any, name: str, shape: tuple[int, ...]) -> Array:
    """`value` as a float64 array of exactly `shape`; a `TypeError` for another dtype
    (float32 is refused, not converted: the package computes in float64), a
    `ValueError` for another shape. Tracers pass (static checks only)."""
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        value = np.asarray(value)
    if value.dtype != jnp.float64:
        raise TypeError(
            f"`{name}` must be a float64 array of shape {tuple(shape)}; got dtype "
            f"{value.dtype}. Convert with jnp.asarray({name}, dtype=float)."
        )
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"`{name}` must have shape {tuple(shape)}; got {tuple(value.shape)}.")
    return value if isinstance(value, jax.Array) else jnp.asarray(value)


def shooting(value: Any, name: str = "shooting") -> Any:
    """`value` if it is a shooting discretisation (a [`flow.AbstractShooting`][]:
    `flow.shoot`, `flow.controls.parameterize`, `flow.adaptive_shoot`)."""
    from ._shooting import AbstractShooting

    if not isinstance(value, AbstractShooting):
        raise TypeError(
            f"`{name}` must be a flow.Shooting (build one with flow.shoot(problem, N)); "
            f"got {type(value).__name__}."
        )
    return value


def unbounded(value: Any, verb: str, name: str = "shooting") -> Any:
    """`value` (a shooting discretisation or a problem) if it has no control bounds;
    otherwise a `ValueError` saying that `verb` does not handle bounds yet."""
    bounds = getattr(value, "bounds", None)
    if bounds is None:
        bounds = getattr(value, "control_bounds", None)
    if bounds is not None:
        raise ValueError(
            f"`{name}` has control bounds, which {verb} does not handle yet: it would "
            f"solve the unbounded problem. stability.equilibrium solves the bounded one."
        )
    return value


def controls(shooting: Any, U: Any, name: str = "U", *, finite: bool = False) -> Array:
    """`U` as float64 controls of shape `(N, m)` for `shooting` (see
    `AbstractShooting.check_controls`), and finite if `finite=True` (when concrete)."""
    U = shooting.check_controls(U, name)
    if finite and not _is_traced(U) and not np.isfinite(np.asarray(U)).all():
        raise ValueError(f"`{name}` must be finite.")
    return U


def increasing_times(value: Any, name: str, *, minimum_length: int = 2) -> np.ndarray:
    """`value` as a float64 numpy array of at least `minimum_length` finite, strictly
    increasing times (1-D); errors name the first pair out of order."""
    if isinstance(value, bool) or isinstance(value, _REAL):
        raise TypeError(
            f"`{name}` must be a 1-D array of at least {minimum_length} increasing times; "
            f"got the number {value!r}."
        )
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"`{name}` must be a real array of times; got dtype {arr.dtype}.")
    arr = arr.astype(np.float64)
    if arr.ndim != 1 or arr.shape[0] < minimum_length:
        raise ValueError(
            f"`{name}` must be a 1-D array of at least {minimum_length} times; got shape "
            f"{arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` must be finite.")
    if not np.all(np.diff(arr) > 0):
        bad = int(np.argmin(np.diff(arr) > 0))
        raise ValueError(
            f"`{name}` must be strictly increasing; t[{bad}]={arr[bad]!r} >= "
            f"t[{bad + 1}]={arr[bad + 1]!r}."
        )
    return arr


def spanning(times: np.ndarray, name: str, t0: float, tf: float) -> np.ndarray:
    """`times` checked to start at `t0` and end at `tf` (to 1e-12 of the interval);
    a copy with the ends snapped to them exactly."""
    scale = 1e-12 * (tf - t0)
    if abs(times[0] - t0) > scale or abs(times[-1] - tf) > scale:
        raise ValueError(
            f"`{name}` must start at t0 = {t0!r} and end at tf = {tf!r}; got "
            f"[{times[0]!r}, ..., {times[-1]!r}]."
        )
    out = np.array(times, dtype=np.float64)
    out[0], out[-1] = t0, tf
    return out
