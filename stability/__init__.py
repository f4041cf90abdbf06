"""gradient-flow-analyzer, part two: stability of the gradient flow.

Equilibria, spectra, forward-Euler step bounds and tolerances arrive with the
stability issue; for now this package holds the `gradflow` command line.
Importing it imports `flow` (and so turns on float64 in JAX).
"""

import importlib.metadata

import flow as _flow  # noqa: F401  (enables float64)


__version__ = importlib.metadata.version("gradient-flow-analyzer")
