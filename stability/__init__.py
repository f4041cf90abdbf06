"""gradient-flow-analyzer, part two: stability of the gradient flow (eq. (50)).

Equilibria of the flow (stationary points of E^N, eq. (51)), its linearisation
J = -M^-1 Hess E^N, the spectrum of J (dense for small N, Lanczos with cluster
detection and a spectral density for large N), classification, forward-Euler step
bounds, the Theorem 5.14 tolerance mapping and mesh studies; and the `gradflow`
command line. Importing it imports `flow` (and so turns on float64 in JAX).
"""

import importlib.metadata

import flow as _flow  # noqa: F401  (enables float64)

from ._analysis import (
    StabilityReport as StabilityReport,
    analyze as analyze,
    observed_rate as observed_rate,
)
from ._basin import Basin as Basin, BasinRow as BasinRow, basin as basin
from ._classify import Classification as Classification, classify as classify
from ._equilibrium import (
    STATUS_MESSAGES as STATUS_MESSAGES,
    Equilibria as Equilibria,
    Equilibrium as Equilibrium,
    equilibria as equilibria,
    equilibrium as equilibrium,
)
from ._euler import EulerBound as EulerBound, euler_bound as euler_bound
from ._linearize import (
    DENSE_JACOBIAN_MAX as DENSE_JACOBIAN_MAX,
    Linearization as Linearization,
    linearize as linearize,
)
from ._mesh import MeshStudy as MeshStudy, mesh_study as mesh_study
from ._report import (
    SCHEMA_VERSION as SCHEMA_VERSION,
    AnalysisRun as AnalysisRun,
    ProblemError as ProblemError,
    load_schema as load_schema,
    run_analysis as run_analysis,
    validate as validate_results,  # noqa: F401  (public name: validate_results)
)
from ._spectrum import (
    DENSE_SPECTRUM_MAX as DENSE_SPECTRUM_MAX,
    Cluster as Cluster,
    SpectralDensity as SpectralDensity,
    Spectrum as Spectrum,
    spectrum as spectrum,
)
from ._tolerance import (
    gradient_tolerance as gradient_tolerance,
    hamiltonian_tolerance as hamiltonian_tolerance,
)


__version__ = importlib.metadata.version("gradient-flow-analyzer")
