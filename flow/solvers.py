"""The package's own solvers, each with the measured reason it exists beside the
libraries' (see each docstring).

- [`truncated_cg`][flow.solvers.truncated_cg]: conjugate gradients truncated at
  non-positive curvature and at a trust radius (the Newton metric, the
  equilibrium solver).
- [`EarlyGMRES`][flow.solvers.EarlyGMRES]: a lineax GMRES that tests convergence
  after every product (the matrix-free stiff solver).
- [`StageNewton`][flow.solvers.StageNewton], [`DampedNewton`][flow.solvers.DampedNewton]:
  optimistix root finders (stiff stage equations; costate shooting).
"""

import importlib
from typing import TYPE_CHECKING, Any

from ._krylov import (
    CGResult as CGResult,
    EarlyGMRES as EarlyGMRES,
    truncated_cg as truncated_cg,
)


# The root finders are built on optimistix: loaded on first use (PEP 562), so that
# `import flow` does not import optimistix. The import below is for the type checker
# and the API reference (griffe reads it).
if TYPE_CHECKING:
    from ._root_finders import DampedNewton as DampedNewton, StageNewton as StageNewton

_LAZY_NAMES = {"DampedNewton": "_root_finders", "StageNewton": "_root_finders"}


# No docstrings on `__getattr__` and `__dir__`: the API reference (`::: flow.solvers`)
# would list them.
def __getattr__(name: str) -> Any:
    if name not in _LAZY_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"flow.{_LAZY_NAMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_NAMES})


#: The public names of `flow.solvers`: what the API reference documents (tests/test_docs.py).
__all__ = [
    "CGResult",
    "DampedNewton",
    "EarlyGMRES",
    "StageNewton",
    "truncated_cg",
]
