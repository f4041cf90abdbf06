r"""The costates of one problem from every route, side by side: the direct method's
discrete recursion, Newton on the discrete conditions (36), costate shooting on (14)
and the continuous adjoint, with the factor h between NLP multipliers and costates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._adjoint import continuous_adjoint_gradient
from ._conditions import solve_conditions
from ._costate_shooting import costate_shooting
from ._custom_types import RealArrayLike
from ._descent import DescentTrace, descend
from ._encoding import format_number
from ._results import AbstractRecord
from ._shooting import Shooting
from ._validation import choice, controls, instance, positive_float


_MULTIPLIER_FORMS = ("difference", "quotient")


class CostateReport(AbstractRecord):
    r"""The costates of one problem from every route, from
    [`costate_report`][flow.indirect.costate_report].

    All costate arrays have shape `(N, n)` (augmented) and are aligned with the
    discrete $\lambda_k$, $k = 0..N-1$:

    - `direct`: the discrete adjoint recursion (23)/(25) at the direct method's
      optimum `controls` (`shooting.costates(controls)`);
    - `conditions`: the Newton solution of (36)
      ([`solve_conditions`][flow.indirect.solve_conditions], started from the zero
      control: an independent route);
    - `shooting`: costate shooting (14) sampled at $t_{k+1}$, $\lambda(t_{k+1})$;
      `shooting_at_tk`: the same at $t_k$;
    - `adjoint`: the continuous adjoint at the direct optimum (piecewise-constant
      controls, backwards ODE), at $t_{k+1}$.

    `differences[name]` is $\max_{k,i}|\lambda^{name}_{k,i} - \lambda^{direct}_{k,i}|$;
    `control_differences` the same for the controls ($u$ of (36); $u(x(t_k),
    \lambda(t_k))$ of costate shooting). `route_status[name]` is each route's status.

    **Which time, which scale.** $\lambda_k = \partial E^N/\partial x_{k+1}$ is the
    sensitivity to the state at $t_{k+1}$ ($\lambda_{N-1}$ is the transversality value
    at $t_N$) and approximates, to first order for Euler, both $\lambda(t_{k+1})$ and
    $\lambda(t_k)$; which is closer depends on the problem (compare
    `differences["shooting"]` with `differences["shooting_at_tk"]`). The multipliers
    of the NLP with the state equations written $x_{k+1} - \Phi(x_k, u_k, h_k) = 0$
    and the Lagrangian $E - \sum_k\mu_k^T(x_{k+1} - \Phi)$ are $\mu_k = \lambda_k$; written
    $(x_{k+1} - \Phi)/h_k = 0$ (the "defect over h" form) they are
    $\mu_k = h_k\lambda_k$, which vanish as $h \to 0$; with the Lagrangian
    $E + \sum_k\mu_k^T c_k$ (the sign most NLP solvers use) they change sign. See
    [`multipliers`][flow.indirect.CostateReport.multipliers].
    """

    controls: Float[Array, "N m"]
    grid: Float[Array, " Np1"]
    direct: Float[Array, "N n"]
    conditions: Float[Array, "N n"]
    shooting: Float[Array, "N n"]
    shooting_at_tk: Float[Array, "N n"]
    adjoint: Float[Array, "N n"]
    differences: dict
    control_differences: dict
    route_status: dict
    direct_hamiltonian_residual: float
    problem: str
    scheme: str
    N: int

    @property
    def steps(self) -> Float[Array, " N"]:
        r"""The step sizes $h_k$."""
        return self.grid[1:] - self.grid[:-1]

    def multipliers(self, form: str = "difference", *, sign: int = 1) -> Float[Array, "N n"]:
        r"""The NLP multipliers $\mu_k$ of the state equations at the optimum.

        - `form="difference"`: constraints $x_{k+1} - \Phi(x_k, u_k, h_k) = 0$:
          $\mu_k = \lambda_k$;
        - `form="quotient"`: constraints $(x_{k+1} - \Phi(x_k, u_k, h_k))/h_k = 0$:
          $\mu_k = h_k\lambda_k$;
        - `sign=+1` for the Lagrangian $E - \sum\mu_k^T c_k$, `sign=-1` for
          $E + \sum\mu_k^T c_k$.
        """
        choice(form, "form", _MULTIPLIER_FORMS)
        if sign not in (1, -1):
            raise ValueError(f"`sign` must be +1 or -1; got {sign!r}.")
        lam = self.direct if form == "difference" else self.steps[:, None] * self.direct
        return sign * lam

    def _record(self, include_arrays: bool) -> dict[str, Any]:
        return dict(
            problem=self.problem,
            scheme=self.scheme,
            N=self.N,
            direct_hamiltonian_residual=self.direct_hamiltonian_residual,
            differences=self.differences,
            control_differences=self.control_differences,
            route_status=dict(self.route_status),
            lambda_k_approximates="lambda(t_{k+1}) and lambda(t_k), both to O(h); "
            "lambda_{N-1} = grad E(x_N) is the transversality value at t_N",
            multipliers="difference form x_{k+1} - Phi = 0: mu_k = lambda_k; quotient form "
            "(x_{k+1} - Phi)/h_k = 0: mu_k = h_k lambda_k; sign flips for L = E + mu^T c",
            grid=self.grid,
            controls=self.controls,
            direct=self.direct,
            conditions=self.conditions,
            shooting=self.shooting,
            shooting_at_tk=self.shooting_at_tk,
            adjoint=self.adjoint,
        )

    def summary(self) -> str:
        """A readable table of the routes and their distances from the direct costates."""
        rows = [
            ("direct recursion (23)/(25)", "direct", "-"),
            ("Newton on (36)", "conditions", "lambda_k"),
            ("costate shooting (14) at t_{k+1}", "shooting", "lambda(t_{k+1})"),
            ("costate shooting (14) at t_k", "shooting_at_tk", "lambda(t_k)"),
            ("continuous adjoint at t_{k+1}", "adjoint", "lambda(t_{k+1})"),
        ]
        lines = [
            f"Costates of {self.problem} (scheme {self.scheme}, N = {self.N}, "
            f"h = {float(np.max(np.asarray(self.steps))):.3g}); direct optimum: "
            f"{self.route_status['direct']}, max|dH/du| = {self.direct_hamiltonian_residual:.1e}",
            f"{'route':36s} {'compared as':16s} {'max|lam - lam_direct|':>22s} "
            f"{'max|u - u_direct|':>18s}  status",
        ]
        for label, key, what in rows:
            d = self.differences.get(key, 0.0)
            du = self.control_differences.get(key)
            du_s = "-" if du is None else f"{du:.3e}"
            lines.append(
                f"{label:36s} {what:16s} {d:22.3e} {du_s:>18s}  {self.route_status.get(key, '-')}"
            )
        lines.append(
            "lambda_k = dE^N/dx_{k+1} approximates lambda(t_{k+1}) and lambda(t_k) to O(h).\n"
            "NLP multipliers: mu_k = lambda_k for x_{k+1} - Phi = 0, h_k lambda_k for "
            "(x_{k+1} - Phi)/h_k = 0 (sign flipped for the Lagrangian E + mu^T c)."
        )
        return "\n".join(lines)

    def _summary(self) -> str:
        parts = ", ".join(f"{k} {format_number(v, '.1e')}" for k, v in self.differences.items())
        return f"{self.problem}, N={self.N}: max|lam - lam_direct|: {parts}"


def direct_optimum(
    shooting: Shooting, U0: RealArrayLike | None = None, *, tol: float = 1e-10
) -> DescentTrace:
    r"""A stationary point of $E^N$ by the direct method alone (flow's own tools):
    Newton-metric descent with an Armijo line search to
    $\max_k|\partial_u H_k| \le 10^{-6}$, then full Newton steps
    ($M = \nabla^2 E^N$, $\alpha = 1$) to $\max_k|\partial_u H_k| \le$ `tol`.

    **Returns:** the [`DescentTrace`][flow.DescentTrace] of the second phase
    (`.U`, `.result`, `.hamiltonian_norm`).
    """
    sh = instance(shooting, "shooting", Shooting, "from flow.shoot(problem, N)")
    tol = positive_float(tol, "tol")
    U0 = sh.zeros() if U0 is None else controls(sh, U0, "U0", finite=True)
    first = descend(
        sh, U0, metric="newton", step="armijo", max_steps=200, tol=max(tol, 1e-6), throw=False
    )
    return descend(sh, first.U, metric="newton", step=1.0, max_steps=30, tol=tol, throw=False)


def costate_report(
    shooting: Shooting,
    U: RealArrayLike | None = None,
    *,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    tol: float = 1e-10,
    lambda0_guess: RealArrayLike | None = None,
    control_law: Callable | None = None,
    conditions_guess: RealArrayLike | tuple | None = None,
) -> CostateReport:
    r"""The costates of one problem from every route side by side: the direct
    method's discrete recursion, Newton on the discrete conditions (36), costate
    shooting on (14), and the continuous adjoint (see [`CostateReport`][]).

    **Arguments:**

    - `shooting`: a [`Shooting`][flow.Shooting].
    - `U`: the direct method's optimum, shape `(N, m)` (for instance
      `stability.equilibrium(shooting).U`); default: found by [`direct_optimum`][]
      to $\max|\partial_u H| \le$ `tol`.
    - `rtol`, `atol`: the ODE tolerances of costate shooting and the continuous
      adjoint, and Newton's tolerances on (36).
    - `lambda0_guess`: costate shooting's start (default: the direct
      $\lambda_0$ on the user's state, a first-order approximation of $\lambda(t_0)$).
    - `control_law`: passed to [`costate_shooting`][].
    - `conditions_guess`: the start of [`solve_conditions`][] (default: the zero
      control, so that the route is independent of `U`).

    Routes that fail are reported in `route_status` (their costates may then be NaN).
    With control bounds every route solves the bounded problem: the direct optimum by
    two-metric projected Newton ([`descend`][flow.descend]), (36) by semismooth
    Newton, costate shooting on the minimum principle over the box (its Newton on
    $\lambda_0$ has a small basin on long horizons: pass a `lambda0_guess`).

    **Returns:** a [`CostateReport`][].
    """
    sh = instance(shooting, "shooting", Shooting, "from flow.shoot(problem, N)")
    problem = sh.problem
    n_user = problem.state_dim
    if U is None:
        trace = direct_optimum(sh, tol=tol)
        U = trace.U
        direct_status = trace.status
    else:
        U = controls(sh, U, "U", finite=True)
        direct_status = "given"
    lam_direct = sh.costates(U)
    dH = float(jnp.max(jnp.abs(sh.hamiltonian_gradient(U))))

    cond = solve_conditions(sh, conditions_guess, tol=rtol, throw=False)
    if lambda0_guess is None:
        lambda0_guess = lam_direct[0, :n_user]
    traj = costate_shooting(
        problem, lambda0_guess, rtol=rtol, atol=atol, control_law=control_law, throw=False
    )
    adj = continuous_adjoint_gradient(sh, U, rtol=rtol, atol=atol)

    grid = sh.grid
    lam_next = traj.costates(grid[1:])
    lam_tk = traj.costates(grid[:-1])
    u_tk = traj.controls(grid[:-1])
    routes = dict(
        conditions=cond.costates,
        shooting=lam_next,
        shooting_at_tk=lam_tk,
        adjoint=adj.costates[1:],
    )

    def dist(a, b):
        return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))

    differences = {k: dist(v, lam_direct) for k, v in routes.items()}
    control_differences = dict(conditions=dist(cond.U, U), shooting_at_tk=dist(u_tk, U))
    status = dict(
        direct=direct_status,
        conditions=cond.status,
        shooting=traj.status,
        shooting_at_tk=traj.status,
        adjoint=adj.status,
    )
    return CostateReport(
        controls=U,
        grid=grid,
        direct=lam_direct,
        conditions=cond.costates,
        shooting=lam_next,
        shooting_at_tk=lam_tk,
        adjoint=adj.costates[1:],
        differences=differences,
        control_differences=control_differences,
        route_status=status,
        direct_hamiltonian_residual=dH,
        problem=problem.name,
        scheme=sh.scheme.name,
        N=sh.N,
    )
