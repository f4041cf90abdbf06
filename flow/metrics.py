"""Metrics M for the gradient flow dU/dtau = -M^-1 grad E^N(U) (eq. (50)).

`Identity` (the gradient method), `Hamiltonian` (the L2 metric diag(h_k): the
indirect method's flow), `Newton` (the exact Hessian by CG on Hessian-vector
products), `DiagonalHessian` (Jacobi, evaluated once), `Diagonal` and `Fixed`
(any constant SPD metric supplied by the user).
"""

from ._metrics import (
    METRICS as METRICS,
    AbstractDiagonalMetric as AbstractDiagonalMetric,
    AbstractMetric as AbstractMetric,
    Diagonal as Diagonal,
    DiagonalHessian as DiagonalHessian,
    Fixed as Fixed,
    Hamiltonian as Hamiltonian,
    Identity as Identity,
    MetricSolve as MetricSolve,
    Newton as Newton,
    as_metric as as_metric,
    metric_from_name as metric_from_name,
)


#: The public names of `flow.metrics`: what the API reference documents (tests/test_docs.py).
__all__ = [
    "AbstractDiagonalMetric",
    "AbstractMetric",
    "as_metric",
    "Diagonal",
    "DiagonalHessian",
    "Fixed",
    "Hamiltonian",
    "Identity",
    "metric_from_name",
    "METRICS",
    "MetricSolve",
    "Newton",
]
