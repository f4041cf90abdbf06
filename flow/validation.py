"""The argument checks shared by `flow`, `stability` and `gradflow`: each returns the
value in the form a verb uses or raises a `TypeError`/`ValueError` naming the
argument and what was expected."""

from ._validation import (
    STOP_ON as STOP_ON,
    choice as choice,
    controls as controls,
    finite_float as finite_float,
    float64_array as float64_array,
    fraction as fraction,
    function as function,
    instance as instance,
    optional_positive_float as optional_positive_float,
    positive_float as positive_float,
    positive_int as positive_int,
    real_array as real_array,
    shooting as shooting,
    stop_on as stop_on,
    unbounded as unbounded,
)


#: The public names of `flow.validation`: what the API reference documents (tests/test_docs.py).
__all__ = [
    "choice",
    "controls",
    "finite_float",
    "float64_array",
    "fraction",
    "function",
    "instance",
    "optional_positive_float",
    "positive_float",
    "positive_int",
    "real_array",
    "shooting",
    "STOP_ON",
    "stop_on",
    "unbounded",
]
