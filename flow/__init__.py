"""gradient-flow-analyzer, part one: the optimizer as a dynamical system.

Importing `flow` turns on 64-bit floats in JAX (`jax_enable_x64`): every
computation in this package is float64.
"""

import importlib
import importlib.metadata
from typing import TYPE_CHECKING, Any

import jax


jax.config.update("jax_enable_x64", True)

from . import (  # noqa: E402
    bounds as bounds,
    controls as controls,
    metrics as metrics,
    solvers as solvers,
    validation as validation,
)
from ._bases import rank_report as rank_report  # noqa: E402
from ._check import (  # noqa: E402
    GradientCheck as GradientCheck,
    check_gradients as check_gradients,
    probe_control as probe_control,
)
from ._custom_types import RealArrayLike as RealArrayLike  # noqa: E402
from ._descent import DescentTrace as DescentTrace, descend as descend  # noqa: E402
from ._encoding import format_number as format_number, to_json as to_json  # noqa: E402
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
from ._steps import (  # noqa: E402
    LBFGS as LBFGS,
    AbstractStepRule as AbstractStepRule,
    Armijo as Armijo,
    Constant as Constant,
    HamiltonianStep as HamiltonianStep,
    StepUpdate as StepUpdate,
    step_rule as step_rule,
)


# Loaded on first use (PEP 562, `__getattr__` below), so that `import flow` does not
# import diffrax, optimistix or scipy: the flows, the adaptive grid and the S-term
# (diffrax), the indirect side (diffrax, optimistix, scipy) and the built-in problems
# (scipy). `flow.gradient_flow`, `from flow import gradient_flow` and `import
# flow.indirect` work as before. The imports below name the same objects for a type
# checker and for the API reference (griffe reads them); tests/test_imports.py checks
# that they match the tables.
if TYPE_CHECKING:
    from . import indirect as indirect, problems as problems
    from ._adaptive import (
        AdaptiveGrid as AdaptiveGrid,
        AdaptiveShooting as AdaptiveShooting,
        DiffraxStep as DiffraxStep,
        adaptive_shoot as adaptive_shoot,
    )
    from ._adaptive_descent import (
        AdaptiveDescent as AdaptiveDescent,
        adaptive_descent as adaptive_descent,
    )
    from ._compare import Comparison as Comparison, compare as compare
    from ._flow_phases import vector_field as vector_field
    from ._flow_solution import FlowSolution as FlowSolution
    from ._gradient_flow import gradient_flow as gradient_flow
    from ._s_term import (
        FDGradient as FDGradient,
        STerm as STerm,
        STermStudy as STermStudy,
        full_gradient as full_gradient,
        s_term as s_term,
        s_term_study as s_term_study,
    )
    from ._solver_choice import stiff_solver as stiff_solver

#: The public submodules loaded on first use.
_LAZY_SUBMODULES = ("indirect", "problems")

#: The public names loaded on first use, and the private module of each.
_LAZY_NAMES = {
    "AdaptiveGrid": "_adaptive",
    "AdaptiveShooting": "_adaptive",
    "DiffraxStep": "_adaptive",
    "adaptive_shoot": "_adaptive",
    "AdaptiveDescent": "_adaptive_descent",
    "adaptive_descent": "_adaptive_descent",
    "Comparison": "_compare",
    "compare": "_compare",
    "vector_field": "_flow_phases",
    "FlowSolution": "_flow_solution",
    "gradient_flow": "_gradient_flow",
    "FDGradient": "_s_term",
    "STerm": "_s_term",
    "STermStudy": "_s_term",
    "full_gradient": "_s_term",
    "s_term": "_s_term",
    "s_term_study": "_s_term",
    "stiff_solver": "_solver_choice",
}


# Imports a name of `_LAZY_SUBMODULES` / `_LAZY_NAMES` on first use and keeps it in
# the module's namespace (no docstring: the API reference would list it).
def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    elif name in _LAZY_NAMES:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY_NAMES[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_SUBMODULES, *_LAZY_NAMES})


__version__ = importlib.metadata.version("gradient-flow-analyzer")


#: The public names of `flow`: what the API reference documents (tests/test_docs.py).
__all__ = [
    "bounds",
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
