"""gradient-flow-analyzer, part one: the optimizer as a dynamical system.

Importing `flow` turns on 64-bit floats in JAX (`jax_enable_x64`): every
computation in this package is float64.
"""

import importlib.metadata

import jax


jax.config.update("jax_enable_x64", True)

from . import (  # noqa: E402
    controls as controls,
    indirect as indirect,
    metrics as metrics,
    problems as problems,
    solvers as solvers,
    validation as validation,
)
from ._adaptive import (  # noqa: E402
    AdaptiveGrid as AdaptiveGrid,
    AdaptiveShooting as AdaptiveShooting,
    DiffraxStep as DiffraxStep,
    adaptive_shoot as adaptive_shoot,
)
from ._adaptive_descent import (  # noqa: E402
    AdaptiveDescent as AdaptiveDescent,
    adaptive_descent as adaptive_descent,
)
from ._bases import rank_report as rank_report  # noqa: E402
from ._check import (  # noqa: E402
    GradientCheck as GradientCheck,
    check_gradients as check_gradients,
    probe_control as probe_control,
)
from ._compare import Comparison as Comparison, compare as compare  # noqa: E402
from ._custom_types import RealArrayLike as RealArrayLike  # noqa: E402
from ._descent import DescentTrace as DescentTrace, descend as descend  # noqa: E402
from ._encoding import format_number as format_number, to_json as to_json  # noqa: E402
from ._flow_phases import vector_field as vector_field  # noqa: E402
from ._flow_solution import FlowSolution as FlowSolution  # noqa: E402
from ._gradient_flow import gradient_flow as gradient_flow  # noqa: E402
from ._parameterize import parameterize as parameterize  # noqa: E402
from ._problem import OptimalControlProblem as OptimalControlProblem  # noqa: E402
from ._results import (  # noqa: E402
    RESULTS as RESULTS,
    AbstractRecord as AbstractRecord,
    AbstractResult as AbstractResult,
    ConvergenceError as ConvergenceError,
    DivergenceError as DivergenceError,
    ResultError as ResultError,
)
from ._s_term import (  # noqa: E402
    FDGradient as FDGradient,
    STerm as STerm,
    STermStudy as STermStudy,
    full_gradient as full_gradient,
    s_term as s_term,
    s_term_study as s_term_study,
)
from ._schemes import (  # noqa: E402
    RK4 as RK4,
    AbstractScheme as AbstractScheme,
    Euler as Euler,
    Heun as Heun,
    scheme_from_name as scheme_from_name,
)
from ._shooting import (  # noqa: E402
    AbstractShooting as AbstractShooting,
    Shooting as Shooting,
    shoot as shoot,
)
from ._solver_choice import stiff_solver as stiff_solver  # noqa: E402
from ._steps import (  # noqa: E402
    LBFGS as LBFGS,
    AbstractStepRule as AbstractStepRule,
    Armijo as Armijo,
    Constant as Constant,
    HamiltonianStep as HamiltonianStep,
    StepUpdate as StepUpdate,
    step_rule as step_rule,
)


__version__ = importlib.metadata.version("gradient-flow-analyzer")


#: The public names of `flow`: what the API reference documents (tests/test_docs.py).
__all__ = [
    "AbstractRecord",
    "AbstractResult",
    "AbstractScheme",
    "AbstractShooting",
    "AbstractStepRule",
    "adaptive_descent",
    "adaptive_shoot",
    "AdaptiveDescent",
    "AdaptiveGrid",
    "AdaptiveShooting",
    "Armijo",
    "check_gradients",
    "compare",
    "Comparison",
    "Constant",
    "ConvergenceError",
    "descend",
    "DescentTrace",
    "DiffraxStep",
    "DivergenceError",
    "Euler",
    "FDGradient",
    "FlowSolution",
    "format_number",
    "full_gradient",
    "gradient_flow",
    "GradientCheck",
    "HamiltonianStep",
    "Heun",
    "LBFGS",
    "OptimalControlProblem",
    "parameterize",
    "probe_control",
    "rank_report",
    "RealArrayLike",
    "ResultError",
    "RESULTS",
    "RK4",
    "s_term",
    "s_term_study",
    "scheme_from_name",
    "shoot",
    "Shooting",
    "step_rule",
    "StepUpdate",
    "STerm",
    "STermStudy",
    "stiff_solver",
    "to_json",
    "vector_field",
]
