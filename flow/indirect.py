"""The indirect side of direct shooting (paper sections 3, 4 and 6.3).

- [`solve_conditions`][flow.indirect.solve_conditions]: the discrete necessary
  conditions (36) solved by Newton (a sparse LU of the block-banded Jacobian at
  large N); by Proposition 4.5 its solution is a converged direct method's.
- [`costate_shooting`][flow.indirect.costate_shooting]: classic indirect shooting on
  the continuous conditions (14), with a damped Newton root finder
  ([`DampedNewton`][flow.solvers.DampedNewton]).
- [`continuous_adjoint_gradient`][flow.indirect.continuous_adjoint_gradient]: the
  optimize-then-discretize gradient, and its O(h) distance from grad E^N.
- [`costate_report`][flow.indirect.costate_report]: the costates from every route
  side by side, with the h factor between NLP multipliers and costates.
- [`RESULTS`][flow.indirect.RESULTS]: [`flow.RESULTS`][flow.RESULTS] extended by
  the Newton-specific outcomes (a singular Newton system, a failed line search).
"""

from ._adjoint import (
    ContinuousAdjoint as ContinuousAdjoint,
    continuous_adjoint_gradient as continuous_adjoint_gradient,
)
from ._conditions import (
    DENSE_CONDITIONS_MAX as DENSE_CONDITIONS_MAX,
    RESULTS as RESULTS,
    ConditionsSolution as ConditionsSolution,
    solve_conditions as solve_conditions,
)
from ._costate_report import (
    CostateReport as CostateReport,
    costate_report as costate_report,
    direct_optimum as direct_optimum,
)
from ._costate_shooting import (
    CostateTrajectory as CostateTrajectory,
    costate_shooting as costate_shooting,
)


#: The public names of `flow.indirect`: what the API reference documents (tests/test_docs.py).
__all__ = [
    "ConditionsSolution",
    "continuous_adjoint_gradient",
    "ContinuousAdjoint",
    "costate_report",
    "costate_shooting",
    "CostateReport",
    "CostateTrajectory",
    "DENSE_CONDITIONS_MAX",
    "direct_optimum",
    "RESULTS",
    "solve_conditions",
]
