"""Inspecting jaxprs: the largest array a compiled kernel computes (the matrix-free
checks of the stiff flow and of continuation)."""

import numpy as np


def _subjaxprs(value):
    from jax.extend.core import ClosedJaxpr, Jaxpr

    if isinstance(value, ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, Jaxpr):
        yield value
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _subjaxprs(v)


def largest_intermediate(jaxpr) -> int:
    """The largest number of entries of any value computed in a jaxpr (recursively)."""
    biggest = 0
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            size = int(np.prod(getattr(v.aval, "shape", ()) or (1,)))
            biggest = max(biggest, size)
        for param in eqn.params.values():
            for sub in _subjaxprs(param):
                biggest = max(biggest, largest_intermediate(sub))
    return biggest
