"""The one strict-JSON encoder and the one number formatter of the package.

Every `to_dict()` goes through [`to_json`][flow.to_json]; every table, summary,
report and command-line line formats numbers with
[`format_number`][flow.format_number].
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


#: What [`format_number`][flow.format_number] prints for a missing or non-finite value.
MISSING = "n/a"


def to_json(value: Any) -> Any:
    """A strict-JSON copy of `value`: what `json.dumps(..., allow_nan=False)` accepts.

    - non-finite floats (NaN, +-inf) become `None` (JSON `null`): strict JSON has
      no NaN, and a missing number is what they mean in a result;
    - numpy and JAX arrays become (nested) lists, their scalars Python numbers;
    - complex numbers become `{"real": ..., "imag": ...}` (arrays of them, one such
      object of two lists);
    - an enumeration item (a `RESULTS` status) becomes its name;
    - objects with a `to_dict()` method are converted by it; mappings, lists and
      tuples recursively (keys as strings).

    **Raises:** `TypeError` for anything else.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if hasattr(value, "_enumeration") and hasattr(value, "_value"):
        from ._results import status_of

        return status_of(value)
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return to_json(value.to_dict())
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, complex | np.complexfloating):
        return {"real": to_json(value.real), "imag": to_json(value.imag)}
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        arr = np.asarray(value)
        if np.iscomplexobj(arr):
            return {"real": to_json(arr.real), "imag": to_json(arr.imag)}
        if arr.ndim == 0:
            return to_json(arr.item())
        if arr.dtype.kind == "f":
            obj = arr.astype(object)
            obj[~np.isfinite(arr)] = None
            return obj.tolist()
        return arr.tolist()
    raise TypeError(f"cannot convert {type(value).__name__} to JSON")


def format_number(x: Any, spec: str = ".4g") -> str:
    """`x` as text for tables and messages.

    `None` and non-finite numbers print as `MISSING` ("n/a"); booleans as "yes"/"no";
    integers exactly; complex numbers (or their JSON form `{"real", "imag"}`) as
    `a + bi`; everything else with the format `spec`.
    """
    if x is None:
        return MISSING
    if isinstance(x, bool | np.bool_):
        return "yes" if x else "no"
    if isinstance(x, Mapping) and set(x) == {"real", "imag"}:
        x = complex(
            math.nan if x["real"] is None else x["real"],
            math.nan if x["imag"] is None else x["imag"],
        )
    if isinstance(x, complex | np.complexfloating):
        if not (math.isfinite(x.real) and math.isfinite(x.imag)):
            return MISSING
        sign = "+" if x.imag >= 0 else "-"
        return f"{format(x.real, spec)} {sign} {format(abs(x.imag), spec)}i"
    if isinstance(x, int | np.integer):
        return str(int(x))
    x = float(x)
    if not math.isfinite(x):
        return MISSING
    return format(x, spec)
