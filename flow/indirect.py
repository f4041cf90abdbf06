"""The indirect side of direct shooting (paper sections 3, 4 and 6.3).

- [`solve_conditions`][flow.indirect.solve_conditions]: the discrete necessary
  conditions (36) solved by Newton (a sparse LU of the block-banded Jacobian at
  large N); by Proposition 4.5 its solution is a converged direct method's.
- [`costate_shooting`][flow.indirect.costate_shooting]: classic indirect shooting on
  the continuous conditions (14), with a damped Newton root finder
  ([`DampedNewton`][flow.indirect.DampedNewton]).
- [`continuous_adjoint_gradient`][flow.indirect.continuous_adjoint_gradient]: the
  optimize-then-discretize gradient, and its O(h) distance from grad E^N.
- [`costate_report`][flow.indirect.costate_report]: the costates from every route
  side by side, with the h factor between NLP multipliers and costates.
"""

from ._indirect import (
    DENSE_CONDITIONS_MAX as DENSE_CONDITIONS_MAX,
    INDIRECT_RESULTS as INDIRECT_RESULTS,
    ConditionsSolution as ConditionsSolution,
    ContinuousAdjoint as ContinuousAdjoint,
    CostateReport as CostateReport,
    CostateTrajectory as CostateTrajectory,
    DampedNewton as DampedNewton,
    continuous_adjoint_gradient as continuous_adjoint_gradient,
    costate_report as costate_report,
    costate_shooting as costate_shooting,
    direct_optimum as direct_optimum,
    solve_conditions as solve_conditions,
)
