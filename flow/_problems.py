"""Built-in optimal control problems (`flow.problems`)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _validation as validation
from ._costs import ControlPenalty
from ._custom_types import Real, RealArrayLike
from ._mechanical import cart_pole, double_integrator, unicycle
from ._problem import OptimalControlProblem


def _scalar_dynamics(x, u):
    return -x + u - 0.1 * x**3


def _scalar_endpoint(x):
    return 0.5 * (x[0] - 1.0) ** 2


def _penalised_scalar(f, E, rho: float, default_rho: float, name: str) -> OptimalControlProblem:
    """x' = f(x, u), x(0) = 0 on [0, 1], cost E(x(1)) + int rho/2 u^2 (n = m = 1);
    named `name`, with rho in the name when it is not the default."""
    return OptimalControlProblem(
        f,
        E,
        x0=[0.0],
        t0=0.0,
        tf=1.0,
        running_cost=ControlPenalty(rho),
        control_dim=1,
        name=name if rho == default_rho else f"{name}(rho={rho:g})",
    )


def scalar_mayer() -> OptimalControlProblem:
    r"""The paper's signature problem (eq. (4)): a scalar Mayer problem.

    $\min\ E(x(1)) = \tfrac12 (x(1) - 1)^2$ subject to
    $\dot x = -x + u - 0.1 x^3$, $x(0) = 0$, $t \in [0, 1]$; $n = m = 1$.

    The dynamics are control-affine and nonlinear, and there is no running cost,
    so every control that reaches $x(1) = 1$ is a minimiser: the minimisers form a
    manifold of dimension $N - 1$ in $U$-space and the Hessian of $E^N$ has rank
    $n = 1$ there (a marginally stable gradient flow).
    """
    return OptimalControlProblem(
        _scalar_dynamics,
        _scalar_endpoint,
        x0=[0.0],
        t0=0.0,
        tf=1.0,
        control_dim=1,
        name="scalar_mayer",
    )


def scalar_regularized(rho: Real = 1.0) -> OptimalControlProblem:
    r"""The signature problem with a control penalty (isolated minimiser).

    $\min\ \tfrac12 (x(1) - 1)^2 + \int_0^1 \tfrac{\rho}{2} u^2\,dt$ subject to
    $\dot x = -x + u - 0.1 x^3$, $x(0) = 0$. The running cost makes the Hessian
    of $E^N$ equal to $\rho h I$ plus a positive semi-definite term near the
    minimiser, so the minimiser is isolated and $\mathrm{eig}(\nabla^2 E^N)/h$
    has a mesh-independent lower end $\rho$.

    **Arguments:** `rho > 0`, the control weight; `control_bounds`, optional
    `(lower, upper)` on the fishing rate $u$ (the built-in `lotka_volterra_bounded`
    has $0 \le u \le 1$).
    """
    rho = validation.positive_float(rho, "rho")
    return _penalised_scalar(_scalar_dynamics, _scalar_endpoint, rho, 1.0, "scalar_regularized")


def _lq_matrices(A, B, Q, R, S, x0):
    A, B, Q, R, S, x0 = (
        np.atleast_1d(np.asarray(a, dtype=np.float64)) for a in (A, B, Q, R, S, x0)
    )
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"`A` must be a square (n, n) matrix; got shape {A.shape}.")
    n = A.shape[0]
    if B.ndim != 2 or B.shape[0] != n:
        raise ValueError(f"`B` must have shape (n, m) = ({n}, m); got {B.shape}.")
    m = B.shape[1]
    for name, M, size in (("Q", Q, n), ("R", R, m), ("S", S, n)):
        if M.shape != (size, size):
            raise ValueError(f"`{name}` must have shape ({size}, {size}); got {M.shape}.")
        if not np.allclose(M, M.T):
            raise ValueError(f"`{name}` must be symmetric.")
    if np.linalg.eigvalsh(R).min() <= 0:
        raise ValueError("`R` must be symmetric positive definite.")
    if x0.shape != (n,):
        raise ValueError(f"`x0` must have shape ({n},); got {x0.shape}.")
    return A, B, Q, R, S, x0


def linear_quadratic(
    A: RealArrayLike,
    B: RealArrayLike,
    Q: RealArrayLike,
    R: RealArrayLike,
    S: RealArrayLike,
    x0: RealArrayLike,
    T: Real,
) -> OptimalControlProblem:
    r"""A linear-quadratic problem of any size.

    $\min\ \tfrac12 x(T)^T S x(T) + \int_0^T \tfrac12 (x^T Q x + u^T R u)\,dt$
    subject to $\dot x = A x + B u$, $x(0) = x_0$, with $Q, S \succeq 0$,
    $R \succ 0$. $E^N$ is quadratic in $U$ for every scheme here. The
    continuous-time reference (Riccati) is [`riccati_reference`][] with the same
    arguments.
    """
    A, B, Q, R, S, x0 = _lq_matrices(A, B, Q, R, S, x0)
    Aj, Bj, Qj, Rj, Sj = (jnp.asarray(a) for a in (A, B, Q, R, S))

    def dynamics(x, u):
        return Aj @ x + Bj @ u

    def endpoint(x):
        return 0.5 * x @ (Sj @ x)

    def running(x, u):
        return 0.5 * (x @ (Qj @ x) + u @ (Rj @ u))

    return OptimalControlProblem(
        dynamics,
        endpoint,
        x0=x0,
        t0=0.0,
        tf=float(T),
        running_cost=running,
        control_dim=B.shape[1],
        name=f"linear_quadratic(n={A.shape[0]}, m={B.shape[1]})",
    )


@dataclasses.dataclass(frozen=True)
class RiccatiReference:
    r"""The continuous-time LQ solution: optimal cost $\tfrac12 x_0^T P(0) x_0$,
    and on the times `ts`: $P(t)$, the optimal state $x^*(t)$ and control
    $u^*(t) = -R^{-1} B^T P(t) x^*(t)$."""

    cost: float
    ts: np.ndarray
    P: np.ndarray
    x: np.ndarray
    u: np.ndarray


def riccati_reference(
    A: RealArrayLike,
    B: RealArrayLike,
    Q: RealArrayLike,
    R: RealArrayLike,
    S: RealArrayLike,
    x0: RealArrayLike,
    T: Real,
    ts: RealArrayLike | None = None,
    *,
    rtol: Real = 1e-12,
    atol: Real = 1e-14,
) -> RiccatiReference:
    r"""Solve the Riccati equation of [`linear_quadratic`][] with scipy (DOP853).

    $-\dot P = A^T P + P A - P B R^{-1} B^T P + Q$, $P(T) = S$, integrated
    backwards; then $\dot x = (A - B R^{-1} B^T P) x$ forwards. Independent of
    the rest of this package (numpy/scipy only), for use as a test reference.
    """
    import scipy.integrate  # on first use: `gradflow problems` does not load scipy

    A, B, Q, R, S, x0 = _lq_matrices(A, B, Q, R, S, x0)
    n = A.shape[0]
    Rinv_Bt = np.linalg.solve(R, B.T)
    T = float(T)
    ts = np.linspace(0.0, T, 101) if ts is None else np.asarray(ts, dtype=np.float64)

    def riccati(t, p):
        P = p.reshape(n, n)
        dP = -(A.T @ P + P @ A - P @ B @ Rinv_Bt @ P + Q)
        return dP.reshape(-1)

    sol_P = scipy.integrate.solve_ivp(
        riccati,
        (T, 0.0),
        S.reshape(-1),
        method="DOP853",
        rtol=rtol,
        atol=atol,
        dense_output=True,
    )
    P_of = lambda t: sol_P.sol(t).reshape(n, n)  # noqa: E731

    def closed_loop(t, x):
        return (A - B @ Rinv_Bt @ P_of(t)) @ x

    sol_x = scipy.integrate.solve_ivp(
        closed_loop,
        (0.0, T),
        x0,
        method="DOP853",
        rtol=rtol,
        atol=atol,
        dense_output=True,
    )
    P_ts = np.stack([P_of(t) for t in ts])
    x_ts = sol_x.sol(ts).T
    u_ts = -np.einsum("ij,tjk,tk->ti", Rinv_Bt, P_ts, x_ts)
    cost = 0.5 * x0 @ P_of(0.0) @ x0
    return RiccatiReference(cost=float(cost), ts=ts, P=P_ts, x=x_ts, u=u_ts)


def _vdp_dynamics(x, u):
    return jnp.stack([(1.0 - x[1] ** 2) * x[0] - x[1] + u[0], x[0]])


def _vdp_dynamics_mu(mu, x, u):
    return jnp.stack([mu * (1.0 - x[1] ** 2) * x[0] - x[1] + u[0], x[0]])


def _vdp_name(control_bounds: Any, mu: Any) -> str:
    name = "van_der_pol" if control_bounds is None else "van_der_pol_bounded"
    if isinstance(mu, jax.core.Tracer):
        return f"{name}(mu)"
    return name if mu == 1.0 else f"{name}(mu={mu:g})"


def _zero_endpoint(x):
    return jnp.zeros((), dtype=x.dtype)


def _vdp_running(x, u):
    return x[0] ** 2 + x[1] ** 2 + u[0] ** 2


def van_der_pol(control_bounds: Any = None, *, mu: Any = 1.0) -> OptimalControlProblem:
    r"""The Van der Pol oscillator, the classic direct single shooting benchmark.

    $\dot x_1 = \mu(1 - x_2^2) x_1 - x_2 + u$, $\dot x_2 = x_1$, $x(0) = (0, 1)$,
    $t \in [0, 10]$, cost $\int_0^{10} (x_1^2 + x_2^2 + u^2)\,dt$ (the CasADi
    and ACADO example). $n = 2$, $m = 1$, no endpoint cost. The flow's Jacobian is
    stiff: at N = 200 (Euler) the eigenvalues of $\nabla^2 E^N / h$ at the optimum
    span roughly [2, 5e4], and the Hessian is indefinite at $U = 0$.

    `control_bounds`: optional `(lower, upper)` on $u$; the classic bounded variant
    (ACADO's) is $-0.3 \le u \le 1$, the built-in `van_der_pol_bounded`.

    `mu`: the damping parameter $\mu$ (default 1, the benchmark). It may be a traced
    value, so that `lambda p: van_der_pol(mu=p)` is a problem family for
    [`stability.continuation`][stability.continuation].
    """
    if isinstance(mu, jax.core.Tracer):
        dynamics = functools.partial(_vdp_dynamics_mu, mu)
    else:
        mu = validation.finite_float(mu, "mu")
        dynamics = _vdp_dynamics if mu == 1.0 else functools.partial(_vdp_dynamics_mu, mu)
    return OptimalControlProblem(
        dynamics,
        _zero_endpoint,
        x0=[0.0, 1.0],
        t0=0.0,
        tf=10.0,
        running_cost=_vdp_running,
        control_dim=1,
        control_bounds=control_bounds,
        name=_vdp_name(control_bounds, mu),
    )


def _van_der_pol_bounded() -> OptimalControlProblem:
    """The built-in `van_der_pol_bounded`: `van_der_pol(control_bounds=(-0.3, 1.0))`,
    the bound at -0.3 active on part of the horizon."""
    return van_der_pol(control_bounds=(-0.3, 1.0))


def _integrator(x, u):
    return u


def _double_well_endpoint(x):
    return 0.25 * (x[0] ** 2 - 1.0) ** 2


def double_well(rho: Real = 0.5) -> OptimalControlProblem:
    r"""A nonconvex problem with a saddle: $\dot x = u$, $x(0) = 0$, $t \in [0, 1]$,
    cost $\tfrac14 (x(1)^2 - 1)^2 + \int_0^1 \tfrac{\rho}{2} u^2\,dt$, $0 < \rho < 1$.

    For every scheme here $x_N = h\sum_k u_k$, so with $s = \sum_k u_k$ the closed
    forms are: $U = 0$ is a stationary point whose Hessian has eigenvalues
    $\rho h$ ($N - 1$ times) and $h(\rho - 1) < 0$: a saddle of index 1; the
    minimisers are the constant controls $u = \pm\sqrt{1 - \rho}$, with Hessian
    eigenvalues $\rho h$ ($N - 1$ times) and $h(2 - 2\rho)$.
    """
    rho = validation.positive_float(rho, "rho")
    if not rho < 1:
        raise ValueError(f"`rho` must be in (0, 1) for a saddle at U = 0; got {rho}.")
    return _penalised_scalar(_integrator, _double_well_endpoint, rho, 0.5, "double_well")


class _FishingDynamics(eqx.Module):
    """The Lotka-Volterra fishing dynamics with the cost as a third state,
    comparable by value (problems with the same weight share compiled code)."""

    weight: float

    def __call__(self, x, u):
        prey, predator = x[0], x[1]
        return jnp.stack(
            [
                prey - prey * predator - 0.4 * prey * u[0],
                -predator + prey * predator - 0.2 * predator * u[0],
                (prey - 1.0) ** 2 + (predator - 1.0) ** 2 + self.weight * u[0] ** 2,
            ]
        )


def _third_state(x):
    return x[2]


def lotka_volterra(rho: Real = 0.1, control_bounds: Any = None) -> OptimalControlProblem:
    r"""The Lotka-Volterra fishing problem (Sager's benchmark of mixed-integer optimal
    control) with a quadratic control cost instead of the binary constraint, in
    Mayer form with three states.

    $\min\ x_2(T)$ subject to
    $\dot x_0 = x_0 - x_0 x_1 - 0.4\,x_0 u$ (prey),
    $\dot x_1 = -x_1 + x_0 x_1 - 0.2\,x_1 u$ (predators),
    $\dot x_2 = (x_0 - 1)^2 + (x_1 - 1)^2 + \rho u^2$ (the accumulated cost),
    $x(0) = (0.5, 0.7, 0)$, $t \in [0, 12]$; $n = 3$, $m = 1$. Fishing ($u > 0$)
    steers the oscillating populations to the steady state $(1, 1)$.

    **Arguments:** `rho > 0`, the control weight.
    """
    rho = validation.positive_float(rho, "rho")
    return OptimalControlProblem(
        _FishingDynamics(rho),
        _third_state,
        x0=[0.5, 0.7, 0.0],
        t0=0.0,
        tf=12.0,
        control_dim=1,
        control_bounds=control_bounds,
        name=("lotka_volterra" if rho == 0.1 else f"lotka_volterra(rho={rho:g})")
        + ("" if control_bounds is None else "_bounded"),
    )


def _lotka_volterra_bounded() -> OptimalControlProblem:
    """The built-in `lotka_volterra_bounded`: `lotka_volterra(control_bounds=(0.0, 1.0))`,
    a fishing rate in [0, 1], on a bound over most of the horizon."""
    return lotka_volterra(control_bounds=(0.0, 1.0))


def _default_lq() -> OptimalControlProblem:
    """The built-in LQ example: `linear_quadratic(**DEFAULT_LQ)`, a damped
    oscillator with two inputs on [0, 2]."""
    return linear_quadratic(**DEFAULT_LQ)


DEFAULT_LQ: dict[str, Any] = dict(
    A=[[0.0, 1.0], [-1.0, -0.2]],
    B=[[0.0, 0.0], [1.0, 0.5]],
    Q=[[1.0, 0.0], [0.0, 0.5]],
    R=[[1.0, 0.0], [0.0, 2.0]],
    S=[[2.0, 0.0], [0.0, 1.0]],
    x0=[1.0, 0.0],
    T=2.0,
)
"""The arguments of the built-in `linear_quadratic` example (a damped oscillator with
two inputs)."""

BUILTIN: dict[str, tuple[Callable[[], OptimalControlProblem], str]] = {
    "scalar_regularized": (
        scalar_regularized,
        "x' = -x + u - 0.1x^3, cost (x(1)-1)^2/2 + int u^2/2 (isolated minimiser; default)",
    ),
    "scalar_mayer": (
        scalar_mayer,
        "the paper's signature Mayer problem: endpoint cost only (manifold of minimisers)",
    ),
    "linear_quadratic": (
        _default_lq,
        "2-state, 2-input LQ problem with a Riccati reference solution",
    ),
    "van_der_pol": (
        van_der_pol,
        "Van der Pol oscillator, T = 10, int x1^2 + x2^2 + u^2 (stiff gradient flow)",
    ),
    "van_der_pol_bounded": (
        _van_der_pol_bounded,
        "Van der Pol with -0.3 <= u <= 1 (the lower bound active on part of the horizon)",
    ),
    "cart_pole": (
        cart_pole,
        "cart-pole swing-up, n = 4, terminal penalty (nonconvex)",
    ),
    "unicycle": (
        unicycle,
        "unicycle to a target pose, n = 3, m = 2",
    ),
    "double_well": (
        double_well,
        "x' = u, cost (x(1)^2-1)^2/4 + int u^2/4: a saddle at U = 0 and two minimisers",
    ),
    "double_integrator": (
        double_integrator,
        "double integrator rest-to-rest transfer, n = 2, w/2 |x(1) - (1, 0)|^2 + int u^2/2",
    ),
    "lotka_volterra": (
        lotka_volterra,
        "Lotka-Volterra fishing, n = 3 (Mayer form), T = 12, quadratic control cost",
    ),
    "lotka_volterra_bounded": (
        _lotka_volterra_bounded,
        "Lotka-Volterra fishing with 0 <= u <= 1 (bounds active over most of the horizon)",
    ),
}
"""name -> (factory with default arguments, one-line description)."""

DEFAULT_PROBLEM = "scalar_regularized"
"""The built-in problem that `gradflow analyze` and `run_analysis` use by default."""


def get(name: str) -> OptimalControlProblem:
    """The built-in problem `name` with its default arguments (see `BUILTIN`)."""
    try:
        factory, _ = BUILTIN[name]
    except KeyError:
        raise ValueError(
            f"unknown problem {name!r}; built-in problems are {sorted(BUILTIN)}."
        ) from None
    return factory()
