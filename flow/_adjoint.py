r"""The continuous (optimize-then-discretize) adjoint: the costate ODE solved
backwards with an independent integrator, and the gradient it implies, against the
discrete adjoint's exact $\nabla E^N$ (paper section 4)."""

from __future__ import annotations

from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._custom_types import RealArrayLike
from ._encoding import format_number
from ._results import RESULTS, AbstractResult
from ._shooting import Shooting
from ._validation import controls, instance, positive_float, positive_int


class ContinuousAdjoint(AbstractResult):
    r"""The result of [`continuous_adjoint_gradient`][flow.indirect.continuous_adjoint_gradient].

    **Fields:**

    - `gradient`: $g_k = \int_{t_k}^{t_{k+1}} \partial_u f(x(t), u_k)^T\lambda(t)\,dt$,
      shape `(N, m)` (the exact gradient of the *continuous* cost with piecewise-constant
      controls, to the ODE tolerance);
    - `exact_gradient`: $\nabla E^N(U)$ by autodiff (the gradient of the discretized
      problem); `costate_gradient`: the discrete adjoint recursion's gradient;
    - `states`, `costates`: $x(t_k)$, $\lambda(t_k)$ of the ODEs, shape `(N+1, n)`;
    - `distance`: $\max_k \|g_k - \nabla_{u_k}E^N\|_\infty / h_k$ (Hamiltonian units:
      $O(h)$ for Euler); `relative_distance`: $\max|g - \nabla E^N| / \max|\nabla E^N|$;
    - `discrete_distance`: the same as `distance` for the discrete costate gradient
      (rounding only);
    - `num_steps`: ODE steps, forward and backward; `result`: `completed`, or
      `solver_failed` when an ODE solve failed (`ode_success` is False);
    - `rtol`, `atol`, `shooting`.
    """

    gradient: Float[Array, "N m"]
    exact_gradient: Float[Array, "N m"]
    costate_gradient: Float[Array, "N m"]
    states: Float[Array, "Np1 n"]
    costates: Float[Array, "Np1 n"]
    distance: float
    relative_distance: float
    discrete_distance: float
    num_steps: int
    ode_success: bool
    rtol: float
    atol: float
    shooting: Shooting

    @property
    def result(self) -> RESULTS:
        """`completed`, or `solver_failed` when an ODE solve failed."""
        return RESULTS.completed if self.ode_success else RESULTS.solver_failed

    def _record(self, include_arrays: bool) -> dict[str, Any]:
        return dict(
            problem=self.shooting.problem.name,
            scheme=self.shooting.scheme.name,
            N=self.shooting.N,
            rtol=self.rtol,
            atol=self.atol,
            distance=self.distance,
            relative_distance=self.relative_distance,
            discrete_distance=self.discrete_distance,
            num_steps=self.num_steps,
            ode_success=self.ode_success,
        )

    def _summary(self) -> str:
        return (
            f"{self.shooting.problem.name}, N={self.shooting.N}, rtol={self.rtol:g}: "
            f"|g_cont - grad E^N|/h = {format_number(self.distance, '.2e')}, discrete "
            f"adjoint {format_number(self.discrete_distance, '.1e')}"
        )


@eqx.filter_jit
def _continuous_adjoint(sh: Shooting, U, solver, rtol, atol, ode_max_steps: int):
    problem = sh.problem
    f = problem.augmented_dynamics
    m = sh.control_dim
    controller = diffrax.PIDController(rtol=rtol, atol=atol)
    t_left, t_right = sh.grid[:-1], sh.grid[1:]

    def forward(x, inp):
        u, ta, tb = inp
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, y, a: f(y, a)),
            solver,
            ta,
            tb,
            None,
            x,
            args=u,
            stepsize_controller=controller,
            max_steps=ode_max_steps,
            throw=False,
        )
        x_next = sol.ys[-1]
        return x_next, (x_next, sol.stats["num_steps"], sol.result == diffrax.RESULTS.successful)

    xN, (xs_next, n_fwd, ok_fwd) = jax.lax.scan(
        forward, problem.augmented_x0(), (U, t_left, t_right)
    )
    lamN = jax.grad(problem.augmented_endpoint_cost)(xN)

    def field(t, y, u):
        del t
        x, lam, _ = y
        fx, vjp = jax.vjp(f, x, u)
        fx_t_lam, fu_t_lam = vjp(lam)
        return fx, -fx_t_lam, -fu_t_lam

    def backward(lam, inp):
        x_right, u, ta, tb = inp
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(field),
            solver,
            tb,
            ta,
            None,
            (x_right, lam, jnp.zeros((m,), lam.dtype)),
            args=u,
            stepsize_controller=controller,
            max_steps=ode_max_steps,
            throw=False,
        )
        _, lam_left, q = (y[-1] for y in sol.ys)
        return lam_left, (
            lam_left,
            q,
            sol.stats["num_steps"],
            sol.result == diffrax.RESULTS.successful,
        )

    lam0, (lams_left, g, n_bwd, ok_bwd) = jax.lax.scan(
        backward, lamN, (xs_next, U, t_left, t_right), reverse=True
    )
    states = jnp.concatenate([problem.augmented_x0()[None], xs_next], axis=0)
    costates = jnp.concatenate([lams_left, lamN[None]], axis=0)
    steps = jnp.sum(n_fwd) + jnp.sum(n_bwd)
    ok = jnp.all(ok_fwd) & jnp.all(ok_bwd)
    return g, states, costates, steps, ok


def continuous_adjoint_gradient(
    shooting: Shooting,
    U: RealArrayLike,
    *,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    solver: diffrax.AbstractSolver | None = None,
    ode_max_steps: int = 4096,
) -> ContinuousAdjoint:
    r"""The optimize-then-discretize gradient: the continuous costate equation solved
    backwards with an independent scheme, and the gradient it implies.

    With the controls $u_k$ held constant on $[t_k, t_{k+1})$:

    1. the state ODE $\dot x = f(x, u_k)$ is solved on each interval by diffrax
       (adaptive, `rtol`/`atol`), giving $x(t_k)$ (the ODE's states, *not* the
       scheme's $x_k$);
    2. the costate ODE $\dot\lambda = -\partial_x f(x, u_k)^T\lambda$ is solved
       backwards from $\lambda(t_f) = \nabla E(x(t_f))$, interval by interval,
       together with the state (re-integrated backwards from the stored $x(t_{k+1})$,
       as diffrax's `BacksolveAdjoint` does) and the quadrature
       $\dot q = -\partial_u f(x, u_k)^T\lambda$, $q(t_{k+1}) = 0$;
    3. $g_k = q(t_k) = \int_{t_k}^{t_{k+1}} \partial_u f(x(t), u_k)^T\lambda(t)\,dt$
       $= \int_{t_k}^{t_{k+1}}\partial_u H\,dt$.

    $g$ is the gradient of the *continuous* cost $J(U)$ (exact flow), to the ODE
    tolerance; it differs from $\nabla E^N$ by the discretization error, $O(h)$ in
    Hamiltonian units ($\max_k |g_k - \nabla_{u_k}E^N|/h_k$) for Euler, while the
    discrete adjoint recursion (23) gives $\nabla E^N$ to rounding.

    **Arguments:** `shooting` (its grid and $E^N$), controls `U` `(N, m)`, the ODE
    tolerances `rtol`, `atol` (default 1e-10, 1e-12; recorded in the result), `solver`
    (default `diffrax.Tsit5()`), and
    `ode_max_steps` per interval.

    **Returns:** a [`ContinuousAdjoint`][flow.indirect.ContinuousAdjoint].
    """
    sh = instance(shooting, "shooting", Shooting, "from flow.shoot(problem, N)")
    U = controls(sh, U, "U", finite=True)
    rtol = positive_float(rtol, "rtol")
    atol = positive_float(atol, "atol")
    ode_max_steps = positive_int(ode_max_steps, "ode_max_steps")
    if solver is None:
        solver = diffrax.Tsit5()
    instance(solver, "solver", diffrax.AbstractSolver)
    g, states, costates, steps, ok = _continuous_adjoint(
        sh, U, solver, jnp.asarray(rtol), jnp.asarray(atol), ode_max_steps
    )
    exact = sh.gradient(U)
    disc = sh.gradient(U, "costate")
    h = np.asarray(sh.steps)[:, None]
    gn, en, dn = (np.asarray(a) for a in (g, exact, disc))
    scale = float(np.max(np.abs(en)))
    return ContinuousAdjoint(
        gradient=g,
        exact_gradient=exact,
        costate_gradient=disc,
        states=states,
        costates=costates,
        distance=float(np.max(np.abs(gn - en) / h)),
        relative_distance=float(np.max(np.abs(gn - en)) / (scale if scale > 0 else 1.0)),
        discrete_distance=float(np.max(np.abs(dn - en) / h)),
        num_steps=int(steps),
        ode_success=bool(ok),
        rtol=rtol,
        atol=atol,
        shooting=sh,
    )
