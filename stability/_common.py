"""Helpers shared by the stability modules: input checks and JSON conversion."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from flow import Shooting


def check_shooting(shooting: Any, name: str = "shooting") -> Shooting:
    """`shooting` must be a `flow.Shooting` (from `flow.shoot`)."""
    if not isinstance(shooting, Shooting):
        raise TypeError(
            f"`{name}` must be a flow.Shooting (build one with flow.shoot(problem, N)); "
            f"got {type(shooting).__name__}."
        )
    return shooting


def as_controls(shooting: Shooting, U: Any, name: str) -> Array:
    """`shooting.check_controls(U, name)`, and finite (checked when concrete)."""
    U = shooting.check_controls(U, name)
    if not isinstance(U, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(U))):
        raise ValueError(f"`{name}` must be finite.")
    return U


def positive_float(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """`value` as a finite positive (or non-negative) Python float."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"`{name}` must be a real number; got {value!r}.")
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not (math.isfinite(value) and ok):
        sign = "non-negative" if allow_zero else "positive"
        raise ValueError(f"`{name}` must be a finite {sign} number; got {value}.")
    return value


def positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """`value` as a Python int >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"`{name}` must be an integer >= {minimum}; got {value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}; got {value}.")
    return int(value)


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of `value` (strict JSON: non-finite floats become None).

    Arrays become (nested) lists; complex numbers `{"real": ..., "imag": ...}`;
    objects with a `to_dict` method are converted by it.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return value.to_dict()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, complex | np.complexfloating):
        return {"real": jsonable(value.real), "imag": jsonable(value.imag)}
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        arr = np.asarray(value)
        if np.iscomplexobj(arr):
            return {"real": jsonable(arr.real), "imag": jsonable(arr.imag)}
        if arr.ndim == 0:
            return jsonable(arr.item())
        return [jsonable(v) for v in arr]
    raise TypeError(f"cannot convert {type(value).__name__} to JSON")


def fmt(x: float | None, spec: str = ".3g") -> str:
    """`x` formatted, or 'n/a' for None."""
    return "n/a" if x is None else format(x, spec)
