"""Built-in optimal control problems.

Each factory returns an [`OptimalControlProblem`][flow.OptimalControlProblem];
`BUILTIN` maps a name to its factory (default arguments) and a one-line
description, [`get`][flow.problems.get] looks one up by name, and
[`load`][flow.problems.load] also takes `path/to/file.py:object` or
`package.module:object` (the command line's `--problem`). `FAMILIES` and
[`load_family`][flow.problems.load_family] do the same for problem families
`p -> OptimalControlProblem` ([`stability.continuation`][stability.continuation],
`gradflow continue`).
"""

from ._families import (
    FAMILIES as FAMILIES,
    load_family as load_family,
    symmetric_well as symmetric_well,
    tilted_double_well as tilted_double_well,
    van_der_pol_mu as van_der_pol_mu,
)
from ._loading import ProblemLoadError as ProblemLoadError, load as load
from ._problems import (
    BUILTIN as BUILTIN,
    DEFAULT_LQ as DEFAULT_LQ,
    DEFAULT_PROBLEM as DEFAULT_PROBLEM,
    RiccatiReference as RiccatiReference,
    cart_pole as cart_pole,
    double_integrator as double_integrator,
    double_well as double_well,
    get as get,
    linear_quadratic as linear_quadratic,
    lotka_volterra as lotka_volterra,
    riccati_reference as riccati_reference,
    scalar_mayer as scalar_mayer,
    scalar_regularized as scalar_regularized,
    unicycle as unicycle,
    van_der_pol as van_der_pol,
)


#: The public names of `flow.problems`: what the API reference documents (tests/test_docs.py).
__all__ = [
    "BUILTIN",
    "cart_pole",
    "DEFAULT_LQ",
    "DEFAULT_PROBLEM",
    "double_integrator",
    "FAMILIES",
    "double_well",
    "get",
    "linear_quadratic",
    "load",
    "load_family",
    "lotka_volterra",
    "ProblemLoadError",
    "riccati_reference",
    "RiccatiReference",
    "scalar_mayer",
    "scalar_regularized",
    "symmetric_well",
    "tilted_double_well",
    "unicycle",
    "van_der_pol",
    "van_der_pol_mu",
]
