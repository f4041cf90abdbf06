r"""The gradient flow (50), dU/dtau = -M^{-1} grad E^N(U), integrated with diffrax.

[`gradient_flow`][flow.gradient_flow] with its defaults chooses the solver
([`solver="auto"`][flow.gradient_flow]): an explicit Runge-Kutta method while the flow
is not stiff, and the L-stable implicit [`stiff_solver`][flow.stiff_solver] from the
point where the explicit step size collapses. The rule, its thresholds and its
measurements are in `gradient_flow`'s docstring; what it chose is in the result.
"""

from __future__ import annotations

from typing import Literal

import diffrax
import jax

from ._custom_types import RealArrayLike
from ._flow_phases import _integrate, _Settings, _start, _stopped_at_start
from ._flow_solution import FlowSolution
from ._flow_switching import initial
from ._metrics import AbstractDiagonalMetric, AbstractMetric, DiagonalHessian, as_metric
from ._shooting import AbstractShooting
from ._solver_choice import plan
from ._validation import (
    optional_positive_float,
    positive_float,
    positive_int,
    shooting as check_shooting,
    stop_on as check_stop_on,
)


#: The default stopping tolerance of `gradient_flow` (on `stop_on`'s residual).
DEFAULT_TOL = 1e-8


def gradient_flow(
    shooting: AbstractShooting,
    U0: RealArrayLike,
    *,
    metric: AbstractMetric | str = "hamiltonian",
    tol: float | None = DEFAULT_TOL,
    stop_on: str = "hamiltonian",
    tau1: float | None = None,
    max_steps: int = 100_000,
    solver: diffrax.AbstractSolver | Literal["auto"] = "auto",
    rtol: float | None = None,
    atol: float | None = None,
    saveat: diffrax.SaveAt | None = None,
    dt0: float | None = None,
    dtmin: float | None = None,
    pcoeff: float | None = None,
    icoeff: float | None = None,
    divergence_factor: float = 1e6,
    throw: bool = True,
) -> FlowSolution:
    r"""Integrate the gradient flow $dU/d\tau = -M^{-1}\nabla E^N(U)$ (eq. (50)).

    The discrete algorithm (37) with step $\alpha$ is forward Euler on this ODE;
    its equilibria are the stationary points of $E^N$ (51).

    **Arguments:**

    - `shooting`, `U0` (N, m): the problem and the start.
    - `metric`: $M$, a [`flow.metrics`][flow.metrics] metric or its name (default
      `"hamiltonian"`: $F = -\partial H/\partial U$, the indirect method's flow).
    - `tol`: stop as soon as the `stop_on` residual is $\le$ `tol` (a diffrax
      event; default $10^{-8}$); `None` integrates to `tau1`.
    - `stop_on`: `"hamiltonian"` ($\max_k|\nabla_{u_k}E^N/h_k|$, i.e.
      $\max_k|\partial_u H_k|$ for Euler) or `"gradient"` ($\|\nabla E^N\|_\infty$).
    - `tau1`: the final flow time (default: none, the tolerance ends the solve).
    - `max_steps`: the step limit (all phases together).
    - `solver`: a diffrax solver, or `"auto"` (default; the rule below).
    - `rtol`, `atol`: the step controller's tolerances (default: the rule's).
    - `saveat`: a `diffrax.SaveAt` (default: start and end); use
      `SaveAt(t1=True, dense=True)` for [`compare`][flow.compare].
    - `dt0`: the initial step (default: chosen by the controller).
    - `dtmin`: the smallest step the controller may propose (default: none). A flow
      whose step size collapses below it (a finite-time blow-up with a large
      `divergence_factor`, a solver that cannot meet `rtol`) stops with
      `solver_failed` at that $\tau$ instead of spending `max_steps` on rejected
      steps.
    - `pcoeff`, `icoeff`: the PID controller's coefficients (default: diffrax's I
      controller for explicit solvers, `0.3, 0.3` for implicit ones).
    - `divergence_factor`: the flow is declared diverged where the state is not
      finite or the `stop_on` residual exceeds `divergence_factor` times its value
      at `U0` (the rule of [`descend`][flow.descend]; a finite-time blow-up is
      caught before the solver's steps collapse).
    - `throw`: raise on divergence, a non-finite start, an indefinite Newton metric
      or a failed/limited solve; with `False` the status is in `result`.

    **`solver="auto"`.** For a constant metric the flow is integrated with `Tsit5`
    (rtol 1e-6, atol 1e-9) for at most `EXPLICIT_PROBE_STEPS` = 2000 steps. A flow
    that reaches `tol` (or `tau1`) within them is not stiff for this purpose. One that
    does not is: an explicit step is held below $\approx 3.3/|\mu_{max}|$ for the
    largest eigenvalue $\mu_{max}$ of $J = -M^{-1}\nabla^2 E^N$, while the slowest
    mode needs $\tau \sim 1/|\mu_{min}|$; from where the probe stopped the flow goes
    on with [`stiff_solver`][flow.stiff_solver] (Kvaerno5 matrix-free above
    `MATRIX_FREE_MIN` = 128 unknowns $Nm$, Kvaerno3 with a dense Jacobian below;
    rtol 1e-4, atol 1e-7, PI controller 0.3/0.3). Measured with the defaults on 2
    cores, including compilation: `scalar_regularized` N = 1000 stays explicit;
    `van_der_pol` N = 200 (Hessian/h spans $[2, 4.8\cdot 10^4]$) switches. A
    non-constant metric (Newton: $J \approx -I$ near a minimiser, not stiff) uses
    `Tsit5` throughout. `solver`, `rtol`, `atol` in the result record the choice.

    **Status.** `converged` (the residual reached `tol`), `completed` (reached
    `tau1`), `max_steps` (with the residual reached and the likely cause: a stiff
    flow held at the explicit stability limit, or a slow one), `diverged` (a
    non-finite state), `nonfinite` (the cost or gradient at `U0`), `indefinite` (a
    non-constant metric met non-positive curvature: the Newton flow is not a
    descent flow there; the first such $\tau$ is in `indefinite_at` and the
    message), `solver_failed` (diffrax reported an error: the step size fell below
    `dtmin`, or the solver failed a step; the message quotes diffrax's reason).

    **Control bounds.** For a bounded problem (`shooting.bounds`, see
    [`flow.bounds`][flow.bounds]) this is the projected gradient flow
    $dU/d\tau = P_{T_B(U)}(-M^{-1}\nabla E^N(U))$ from $P_B(U_0)$: the tangent-cone
    projection zeroes each component that sits on its bound and points out of the
    box, which for a diagonal metric (identity, Hamiltonian, diagonal,
    diagonal-Hessian; others are refused) is the whole projection. Between changes of
    the active set the flow is smooth and integrated as above; a free component
    reaching its bound (a *hit*) and an active one whose multiplier
    $s_i\nabla_i E^N$ changes sign (a *release*) are diffrax events, located by
    bisection on the dense output to $10^{-12}$ relative in $\tau$; at a hit the
    component is put exactly on its bound. What is exact: the set of switches and
    their order, the projection, and the state on the bounds; what is approximate:
    the smooth pieces (to `rtol`/`atol`, as without bounds) and so the switching
    times (to the same accuracy). Each segment is a phase in `solutions` (the dense
    output spans them); the residuals are the projected gradient's, as in
    [`descend`][flow.descend]; the result carries the final `active_set` and the
    number of `switches`. More than 2000 switches stop the flow as `max_steps` with a
    chattering diagnosis. The step limit is checked at each switch: the last segment
    may pass `max_steps` by up to its own steps. `saveat` may not name times `ts`
    (save with `dense=True` and use [`evaluate`][flow.FlowSolution.evaluate]).

    **Batching.** `gradient_flow` is a host-side driver (it checks the start, chooses
    and hands over phases, and reads statuses on concrete values); its diffrax solves
    are compiled once per shape and reused for every new `U0` of that shape. It
    cannot itself run under `jax.jit` or `jax.vmap`. To integrate many starts at
    once, vmap a diffrax solve of [`vector_field`][flow.vector_field]:
    `jax.vmap(lambda U0: diffrax.diffeqsolve(diffrax.ODETerm(flow.vector_field(sh,
    metric)), solver, 0.0, tau1, None, U0, stepsize_controller=...).ys[-1])`.

    **Returns:** a [`FlowSolution`][flow.FlowSolution].

    **Raises:** `TypeError`/`ValueError` naming a bad argument (a `U0` that is not
    float64 of shape (N, m), a non-positive tolerance, a non-diagonal metric or `ts`
    in `saveat` for a bounded problem, ...); `ValueError` for a traced
    `U0` (a call under `jax.jit`/`jax.vmap`, see *Batching*); with `throw=True`,
    [`DivergenceError`][flow.DivergenceError] for `diverged`/`nonfinite` and
    [`ConvergenceError`][flow.ConvergenceError] for `max_steps`, `indefinite` and
    `solver_failed`.
    """
    check_shooting(shooting)
    metric = as_metric(metric)
    bounded = getattr(shooting, "bounds", None) is not None
    if bounded and not isinstance(metric, AbstractDiagonalMetric | DiagonalHessian):
        raise ValueError(
            "`metric`: the projected gradient flow of a bounded problem needs a diagonal "
            "metric (identity, hamiltonian, diagonal, diagonal-hessian), where the "
            f"tangent-cone projection acts componentwise; got {metric.name!r}."
        )
    check_stop_on(stop_on)
    tol = optional_positive_float(tol, "tol")
    tau1 = optional_positive_float(tau1, "tau1")
    if tau1 is None and tol is None:
        raise ValueError("give `tol` (a tolerance), `tau1` (a final flow time), or both.")
    max_steps = positive_int(max_steps, "max_steps")
    rtol = optional_positive_float(rtol, "rtol")
    atol = optional_positive_float(atol, "atol")
    dt0 = optional_positive_float(dt0, "dt0")
    dtmin = optional_positive_float(dtmin, "dtmin")
    divergence_factor = positive_float(divergence_factor, "divergence_factor")
    if not divergence_factor > 1:
        raise ValueError(f"`divergence_factor` must be > 1; got {divergence_factor}.")
    pcoeff = None if pcoeff is None else positive_float(pcoeff, "pcoeff", allow_zero=True)
    icoeff = None if icoeff is None else positive_float(icoeff, "icoeff", allow_zero=True)
    if not (solver == "auto" or isinstance(solver, diffrax.AbstractSolver)):
        raise TypeError(f"`solver` must be 'auto' or a diffrax solver; got {solver!r}.")
    U0 = shooting.check_controls(U0, "U0")
    if isinstance(U0, jax.core.Tracer):
        raise ValueError(
            "gradient_flow runs its phases and checks on concrete values: call it "
            "outside jit/vmap (its diffrax solve is compiled inside)."
        )
    active = None
    if bounded:
        if saveat is not None and saveat.subs.ts is not None:
            raise ValueError(
                "`saveat`: a bounded flow is integrated in segments between changes of "
                "the active set; save with t0/t1/steps or dense=True (then "
                "`FlowSolution.evaluate(tau)`), not at given times `ts`."
            )
        U0, active = initial(shooting, U0)
    metric = metric.prepare(shooting, U0)
    saveat = diffrax.SaveAt(t0=True, t1=True) if saveat is None else saveat
    settings = _Settings(
        tol=tol, on_hamiltonian=stop_on == "hamiltonian", stop_on=stop_on,
        curvature=not metric.constant, dt0=dt0, saveat=saveat, dtmin=dtmin,
    )  # fmt: skip
    horizon = tau1 if tau1 is not None else 1e30

    start, r0 = _start(shooting, U0, metric, settings.on_hamiltonian)
    if start is not None:
        sol = _stopped_at_start(shooting, U0, settings, start, active)
    else:
        phases = plan(solver, metric, shooting, U0, tol, rtol, atol, pcoeff, icoeff)
        limit = divergence_factor * max(r0, 1e-300)
        sol = _integrate(shooting, U0, metric, settings, phases, horizon, limit, max_steps, active)
    if throw:
        hint = {
            "max_steps": "",
            "diverged": "",
            "indefinite": "Start nearer a minimiser, or use metric='hamiltonian'.",
            "solver_failed": "Check the flow for a blow-up; lower `dtmin` or loosen rtol.",
        }.get(sol.status, "")
        sol.raise_for_status("gradient_flow", hint)
    return sol
