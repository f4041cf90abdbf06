r"""Built-in problem families `p -> OptimalControlProblem`, for
[`stability.continuation`][stability.continuation] and `gradflow continue`.

Each builds its problem from a parameter that may be a traced JAX scalar (closures
over `p`, `jnp` operations only), so that $\partial_p \nabla E^N$ comes from JAX.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ._costs import ControlPenalty
from ._loading import ProblemLoadError, _required_parameters, builtin_name, import_object
from ._problem import OptimalControlProblem
from ._problems import _integrator, van_der_pol


def _tilted_endpoint(p, x):
    return (x[0] ** 2 - 1.0) ** 2 + p * x[0]


def _symmetric_endpoint(p, x):
    return 0.25 * x[0] ** 4 - 0.5 * p * x[0] ** 2


def _integrator_problem(
    endpoint: Callable, p: Any, name: str, x0: Any = 0.0
) -> OptimalControlProblem:
    """x' = u, x(0) = x0 on [0, 1], cost endpoint(p, x(1)) + int u^2/2."""
    return OptimalControlProblem(
        _integrator,
        functools.partial(endpoint, p),
        x0=[x0],
        t0=0.0,
        tf=1.0,
        running_cost=ControlPenalty(1.0),
        control_dim=1,
        name=name,
    )


def tilted_double_well(p: Any, *, x0: Any = 0.0) -> OptimalControlProblem:
    r"""$\dot x = u$, $x(0) = x_0$ on $[0, 1]$, cost $E = (x(1)^2 - 1)^2 + p\,x(1)$
    plus $\int_0^1 u^2/2\,dt$: a tilted double well (`x0` default 0; the figure
    `orbit_diagram` uses $p = 0.2$, $x_0 = 0.3$).

    With $x_0 = 0$, for every scheme here $x_N = h\sum_k u_k$, so a stationary $U$ is constant,
    $u_k = x$ with $x = -E'(x)$: $4x^3 - 3x + p = 0$. The branch is an S in the
    $(p, x)$ plane with folds at $p = \pm 1$ ($x = \pm 1/2$), for every $N$: one
    minimiser for $|p| > 1$; two minimisers and a saddle for $|p| < 1$. The Hessian
    of $E^N$ is $h I + h^2 E''(x_N)\,\mathbf{1}\mathbf{1}^T$, with eigenvalues $h$
    ($N - 1$ times) and $h(1 + E''(x))$, $E''(x) = 12x^2 - 4$.
    """
    return _integrator_problem(_tilted_endpoint, p, "tilted_double_well", x0)


def symmetric_well(p: Any) -> OptimalControlProblem:
    r"""$\dot x = u$, $x(0) = 0$ on $[0, 1]$, cost $E = x(1)^4/4 - p\,x(1)^2/2$ plus
    $\int_0^1 u^2/2\,dt$: a pitchfork.

    The stationary controls are constant, $u_k = x$ with $x(x^2 - p + 1) = 0$: the
    branch $U = 0$ (a minimiser for $p < 1$, a saddle for $p > 1$) and, for
    $p > 1$, the minimisers $x = \pm\sqrt{p - 1}$, which cross it at the branch
    point $p = 1$ (the Hessian's eigenvalue $h(1 - p)$ on $U = 0$ crosses zero
    there while the branch goes on in $p$).
    """
    return _integrator_problem(_symmetric_endpoint, p, "symmetric_well")


def van_der_pol_mu(p: Any) -> OptimalControlProblem:
    r"""[`van_der_pol`][flow.problems.van_der_pol] with $\mu = p$ (the damping of the
    oscillator); the optimum's Hessian stiffens quickly as $\mu$ grows."""
    return van_der_pol(mu=p)


FAMILIES: dict[str, tuple[Callable[[Any], OptimalControlProblem], tuple[float, float], str]] = {
    "tilted_double_well": (
        tilted_double_well,
        (-2.0, 2.0),
        "x' = u, (x(1)^2-1)^2 + p x(1) + int u^2/2: folds at p = -1 and 1",
    ),
    "symmetric_well": (
        symmetric_well,
        (0.0, 2.0),
        "x' = u, x(1)^4/4 - p x(1)^2/2 + int u^2/2: a branch point at p = 1",
    ),
    "van_der_pol": (
        van_der_pol_mu,
        (1.0, 1.4),
        "Van der Pol with damping mu = p (the built-in at p = 1)",
    ),
}
"""name -> (family, default `p_span`, one-line description)."""


def load_family(spec: str) -> Callable[[Any], OptimalControlProblem]:
    """The problem family named by `spec`: a built-in name (see `FAMILIES`),
    `path/to/file.py:object` or `package.module:object`, where the object is a
    callable of one required argument, the parameter `p`.

    **Raises:** [`ProblemLoadError`][flow.problems.ProblemLoadError] naming what is
    wrong.
    """
    if builtin_name(spec, FAMILIES, "family", "file.py:function of p"):
        return FAMILIES[spec][0]
    obj = import_object(spec)
    if not callable(obj) or isinstance(obj, OptimalControlProblem):
        raise ProblemLoadError(
            f"{spec} is of type {type(obj).__name__}, expected a function p -> "
            f"OptimalControlProblem"
        )
    required = _required_parameters(obj)
    if len(required) != 1:
        raise ProblemLoadError(
            f"{spec} must take exactly one required argument, the parameter p; it takes "
            f"{len(required)} ({', '.join(required) or 'none'})"
        )
    return obj
