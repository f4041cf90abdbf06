"""Control parameterizations U = B C (eqs. (40)-(43)) and their rank diagnostics.

Bases sampled on a grid (`PiecewiseConstant`, `Hat`, `Legendre`, `Chebyshev`,
`BSpline`, or a user's `Sampled` matrix), `parameterize` (the problem in the
coefficients C as an ordinary `flow.Shooting`, usable by `flow.descend`,
`flow.gradient_flow` and `stability` unchanged), `rank_report` (singular values,
numerical rank, condition number of B) and `spurious_check` (a stationary point
in C that is not one in U, Remark 5.13).
"""

from ._bases import (
    QUADRATURE_POINTS as QUADRATURE_POINTS,
    AbstractBasis as AbstractBasis,
    BSpline as BSpline,
    Chebyshev as Chebyshev,
    Hat as Hat,
    Legendre as Legendre,
    PiecewiseConstant as PiecewiseConstant,
    RankReport as RankReport,
    Sampled as Sampled,
    basis_matrix as basis_matrix,
    rank_report as rank_report,
)
from ._parameterize import (
    Parameterized as Parameterized,
    SpuriousCheck as SpuriousCheck,
    expand as expand,
    is_parameterized as is_parameterized,
    l2_metric as l2_metric,
    original as original,
    parameterize as parameterize,
    spurious_check as spurious_check,
)


#: The public names of `flow.controls`: what the API reference documents (tests/test_docs.py).
__all__ = [
    "AbstractBasis",
    "basis_matrix",
    "BSpline",
    "Chebyshev",
    "expand",
    "Hat",
    "is_parameterized",
    "l2_metric",
    "Legendre",
    "original",
    "parameterize",
    "Parameterized",
    "PiecewiseConstant",
    "QUADRATURE_POINTS",
    "rank_report",
    "RankReport",
    "Sampled",
    "spurious_check",
    "SpuriousCheck",
]
