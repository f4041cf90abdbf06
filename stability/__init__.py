"""gradient-flow-analyzer, part two: stability of the gradient flow (eq. (50)).

Equilibria of the flow (stationary points of E^N, eq. (51)), its linearisation
J = -M^-1 Hess E^N, the spectrum of J (dense for small N, Lanczos with cluster
detection and a spectral density for large N), classification, forward-Euler step
bounds, the Theorem 5.14 tolerance mapping, mesh studies, the region-of-convergence
experiment, and `analyze`, which does all of it for one problem. Numerics only: the
command line, the results document and the report are the `gradflow` package.
Importing it imports `flow` (and so turns on float64 in JAX).
"""

import importlib.metadata

import flow as _flow  # noqa: F401  (enables float64)

from ._analysis import (
    STEP_RULES as STEP_RULES,
    StabilityReport as StabilityReport,
    analyze as analyze,
    observed_rate as observed_rate,
)
from ._basin import Basin as Basin, BasinRow as BasinRow, basin as basin
from ._classify import KINDS as KINDS, Classification as Classification, classify as classify
from ._continuation import (
    DENSE_CONTINUATION_MAX as DENSE_CONTINUATION_MAX,
    continuation as continuation,
)
from ._continuation_results import (
    Continuation as Continuation,
    ContinuationPoint as ContinuationPoint,
    SpecialPoint as SpecialPoint,
)
from ._equilibrium import (
    Equilibria as Equilibria,
    Equilibrium as Equilibrium,
    equilibria as equilibria,
    equilibrium as equilibrium,
)
from ._euler import EulerBound as EulerBound, euler_bound as euler_bound
from ._flip import Flip as Flip, flip as flip
from ._linearize import (
    DENSE_JACOBIAN_MAX as DENSE_JACOBIAN_MAX,
    Linearization as Linearization,
    linearize as linearize,
)
from ._mesh import MeshStudy as MeshStudy, mesh_study as mesh_study
from ._orbits import OrbitDiagram as OrbitDiagram, orbit_diagram as orbit_diagram
from ._sharpness import (
    DENSE_SHARPNESS_MAX as DENSE_SHARPNESS_MAX,
    Sharpness as Sharpness,
    sharpness as sharpness,
)
from ._spectrum import DENSE_SPECTRUM_MAX as DENSE_SPECTRUM_MAX, spectrum as spectrum
from ._spectrum_results import (
    Cluster as Cluster,
    SpectralDensity as SpectralDensity,
    Spectrum as Spectrum,
)
from ._start import StartSpectrum as StartSpectrum, start_spectrum as start_spectrum
from ._tolerance import (
    gradient_tolerance as gradient_tolerance,
    hamiltonian_tolerance as hamiltonian_tolerance,
)


__version__ = importlib.metadata.version("gradient-flow-analyzer")


#: The public names of `stability`: what the API reference documents (tests/test_docs.py).
__all__ = [
    "analyze",
    "Basin",
    "basin",
    "BasinRow",
    "Classification",
    "classify",
    "Cluster",
    "Continuation",
    "continuation",
    "ContinuationPoint",
    "DENSE_CONTINUATION_MAX",
    "DENSE_JACOBIAN_MAX",
    "DENSE_SHARPNESS_MAX",
    "DENSE_SPECTRUM_MAX",
    "Equilibria",
    "equilibria",
    "Equilibrium",
    "equilibrium",
    "euler_bound",
    "EulerBound",
    "Flip",
    "flip",
    "gradient_tolerance",
    "hamiltonian_tolerance",
    "KINDS",
    "Linearization",
    "linearize",
    "mesh_study",
    "MeshStudy",
    "orbit_diagram",
    "OrbitDiagram",
    "observed_rate",
    "Sharpness",
    "sharpness",
    "SpecialPoint",
    "SpectralDensity",
    "Spectrum",
    "spectrum",
    "start_spectrum",
    "StartSpectrum",
    "StabilityReport",
    "STEP_RULES",
]
