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

from ._krylov import (
    CGResult as CGResult,
    EarlyGMRES as EarlyGMRES,
    truncated_cg as truncated_cg,
)
from ._root_finders import DampedNewton as DampedNewton, StageNewton as StageNewton


#: The public names of `flow.solvers`: what the API reference documents (tests/test_docs.py).
__all__ = [
    "CGResult",
    "DampedNewton",
    "EarlyGMRES",
    "StageNewton",
    "truncated_cg",
]
