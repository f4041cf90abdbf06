"""Shape-annotated type aliases shared by the package (jaxtyping)."""

from collections.abc import Sequence
from typing import Any, TypeAlias

from jaxtyping import Array, ArrayLike, Float, Int


Scalar: TypeAlias = Float[Array, ""]
ScalarLike: TypeAlias = float | Float[ArrayLike, ""]
State: TypeAlias = Float[Array, " n"]
Control: TypeAlias = Float[Array, " m"]
Controls: TypeAlias = Float[Array, "N m"]
States: TypeAlias = Float[Array, "Np1 n"]
Costates: TypeAlias = Float[Array, "N n"]
Grid: TypeAlias = Float[Array, " Np1"]
Steps: TypeAlias = Float[Array, " N"]
IntScalar: TypeAlias = Int[Array, ""]
RealArrayLike: TypeAlias = ArrayLike | Sequence[Any]
"""Anything `np.asarray` turns into a real array: arrays, scalars, nested sequences (the
type of every user-given array argument)."""
Real: TypeAlias = float | int

__all__ = [
    "Array",
    "ArrayLike",
    "Control",
    "Controls",
    "Costates",
    "Grid",
    "IntScalar",
    "Real",
    "RealArrayLike",
    "Scalar",
    "ScalarLike",
    "State",
    "States",
    "Steps",
]
