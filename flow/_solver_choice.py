r"""Which solver integrates the gradient flow: [`stiff_solver`][flow.stiff_solver]
(the implicit solvers for stiff flows) and the rule of `gradient_flow(...,
solver="auto")` (an explicit probe, then the stiff solver from where the explicit
step collapses), with the thresholds it uses and the measurements behind them."""

from __future__ import annotations

import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx

from ._krylov import EarlyGMRES
from ._metrics import Newton
from ._root_finders import StageNewton
from ._validation import fraction, positive_int


#: `solver="auto"`: explicit steps tried before the flow is declared stiff.
EXPLICIT_PROBE_STEPS = 2000

#: The explicit phase's tolerances without `tol` (an accurate trajectory to `tau1`).
EXPLICIT_TOLERANCES = (1e-6, 1e-9)

#: With `tol`, the explicit phase's rtol = atol = `EXPLICIT_TOL_FACTOR * tol` (at most
#: 1e-6): an explicit method whose step has grown to its stability limit keeps the
#: error at the controller's tolerance, and the residual (about |J| times that error)
#: then stalls above `tol` unless the tolerance is well below it (measured on
#: `scalar_regularized`, N = 1000, Hamiltonian metric, tol 1e-8: with 1e-6 / 1e-9 the
#: residual stalled at 4e-7 for 2000 steps; with 1e-10 it converges).
EXPLICIT_TOL_FACTOR = 1e-2

#: `solver="auto"`: the stiff phase's tolerances (loose: the flow is attracted to
#: its equilibrium, and the implicit solver's cost grows with the accuracy asked).
STIFF_TOLERANCES = (1e-4, 1e-7)

#: `solver="auto"`: above this many unknowns N*m the stiff phase is matrix-free.
MATRIX_FREE_MIN = 128

#: `solver="auto"`: the explicit step is capped at `EXPLICIT_DAMPING / |mu_max|`
#: ($|\mu_{max}|$ of $J$ at U0 by power iteration; 1 for Newton near a minimiser),
#: inside Tsit5's real stability interval (about (-3.5, 0)) where it damps every mode
#: (|R(-2)| ~ 0.1). At the edge of that interval the controller keeps the error at
#: its tolerance and the residual, $|J|$ times that error, stalls (measured: the
#: Newton flow on `van_der_pol`, N = 200, from a perturbed optimum ran 100000 steps
#: with the residual stuck at 2e-7).
EXPLICIT_DAMPING = 2.0


def stiff_solver(
    *,
    order: int | None = None,
    matrix_free: bool = False,
    krylov_rtol: float = 1e-2,
    restart: int = 30,
    kappa: float = 0.1,
) -> diffrax.AbstractImplicitSolver:
    r"""A diffrax ESDIRK solver (`Kvaerno3`, `Kvaerno4` or `Kvaerno5` by `order`;
    L-stable) set up for stiff gradient flows. `gradient_flow` pairs it with a PI
    step controller (`pcoeff=0.3, icoeff=0.3`, which avoids most rejected steps on
    stiff flows) unless told otherwise. The stage equations use the step
    controller's tolerances.

    - `matrix_free=True` (large $Nm$, e.g. $10^4$; default `order` 5): inexact
      Newton-Krylov on the stage equations. Each Newton iteration `jax.linearize`s
      the stage function and solves $(I - \gamma\Delta\tau\,J)\delta = r$ by GMRES
      on Jacobian-vector products (one Hessian-vector product each), tested for
      convergence after every product and stopped at relative residual
      `krylov_rtol` (GMRES with Givens rotations; `restart` vectors per cycle).
      Newton stops as soon as its scaled correction is below `kappa` (possibly
      after one iteration) or its observed rate says the rest is (Hairer-Wanner
      IV.8); a rate $\ge 1$ rejects the step. Nothing $Nm \times Nm$ is formed.
    - `matrix_free=False` (small $Nm$, a few hundred; default `order` 3): diffrax's
      `VeryChord` linearises once per step and reuses that Jacobian for every stage
      and iteration: $\partial F/\partial U = -M^{-1}\nabla^2 E^N$ is materialised
      from $Nm$ Hessian-vector products and LU-factorised once per step;
      $O((Nm)^2)$ memory.

    Why this set-up (measured on `van_der_pol`, N = 10^3, Hamiltonian metric, from
    U = 0 to $\max|\partial_u H| \le 10^{-8}$, rtol 1e-3, atol 1e-6; see
    `benchmarks/README.md`): with optimistix `Newton` and lineax `GMRES` the solve
    took 2.8 s (restart 40) or 0.61 s (restart 5), because lineax's GMRES tests
    convergence only between restart cycles and needs two cycles; testing after
    every product and a loose `krylov_rtol` (1e-2; Newton corrects the rest) cut
    the products per solve to about 3; allowing Newton to stop after one
    iteration cut the linear solves by a quarter. The dense path was 20-40 times
    slower at $Nm = 10^3$.

    When to pick which solver: an explicit solver (`diffrax.Tsit5()`) when the
    flow is not stiff (the spectrum of $J$ spans a small ratio, e.g. the
    Hamiltonian metric on `scalar_regularized`); this implicit one when it is
    (e.g. `van_der_pol`, whose $\nabla^2 E^N/h$ spans about $[2, 5\cdot10^4]$), where
    an explicit solver needs a step below $2/\lambda_{max}$. `gradient_flow`'s
    default `solver="auto"` makes that choice.
    """
    solvers = {3: diffrax.Kvaerno3, 4: diffrax.Kvaerno4, 5: diffrax.Kvaerno5}
    if order is None:
        order = 5 if matrix_free else 3
    if order not in solvers:
        raise ValueError(f"`order` must be 3, 4 or 5; got {order!r}.")
    fraction(krylov_rtol, "krylov_rtol")
    fraction(kappa, "kappa")
    positive_int(restart, "restart")
    if matrix_free:
        root_finder = diffrax.with_stepsize_controller_tols(StageNewton)(
            kappa=kappa,
            linear_solver=EarlyGMRES(rtol=krylov_rtol, restart=restart, max_restarts=10),
        )
    else:
        root_finder = diffrax.with_stepsize_controller_tols(diffrax.VeryChord)(
            linear_solver=lx.AutoLinearSolver(well_posed=None)
        )
    return solvers[order](root_finder=root_finder)


def solver_name(solver: diffrax.AbstractSolver) -> str:
    name = type(solver).__name__
    if isinstance(solver, diffrax.AbstractImplicitSolver):
        free = isinstance(getattr(solver, "root_finder", None), StageNewton)
        name += " (matrix-free)" if free else " (dense Jacobian)"
    return name


class Phase(eqx.Module):
    solver: diffrax.AbstractSolver
    rtol: float
    atol: float
    pcoeff: float
    icoeff: float
    dtmax: float | None
    probe: bool  # stop after EXPLICIT_PROBE_STEPS and hand over to the next phase


def plan(solver, metric, shooting, U0, tol, rtol, atol, pcoeff, icoeff) -> list[Phase]:
    """The phases of the integration (see `gradient_flow`, `solver="auto"`)."""

    def phase(s, tols, probe=False, dtmax=None):
        implicit = isinstance(s, diffrax.AbstractImplicitSolver)
        p_default, i_default = (0.3, 0.3) if implicit else (0.0, 1.0)
        return Phase(
            solver=s,
            rtol=tols[0] if rtol is None else rtol,
            atol=tols[1] if atol is None else atol,
            pcoeff=p_default if pcoeff is None else pcoeff,
            icoeff=i_default if icoeff is None else icoeff,
            dtmax=dtmax,
            probe=probe,
        )

    explicit = EXPLICIT_TOLERANCES
    if tol is not None:
        t = min(EXPLICIT_TOL_FACTOR * tol, EXPLICIT_TOLERANCES[0])
        explicit = (t, t)
    if solver != "auto":
        implicit = isinstance(solver, diffrax.AbstractImplicitSolver)
        return [phase(solver, STIFF_TOLERANCES if implicit else explicit)]
    if not shooting.forward_differentiable:
        # no Hessian-vector products (an adaptive map): neither the spectral
        # estimate nor an implicit solver's Jacobian exists; integrate explicitly
        return [phase(diffrax.Tsit5(), explicit)]
    if not metric.constant:
        # Newton: J = -(H + mu I)^-1 H has its eigenvalues in (-1, 0] where H > 0,
        # so |mu_max| <= 1 near a minimiser
        dtmax = EXPLICIT_DAMPING if isinstance(metric, Newton) else None
        return [phase(diffrax.Tsit5(), explicit, dtmax=dtmax)]
    size = shooting.N * shooting.control_dim
    stiff = stiff_solver(matrix_free=size > MATRIX_FREE_MIN)
    mu = float(largest_rate(shooting, metric, U0))
    dtmax = EXPLICIT_DAMPING / mu if math.isfinite(mu) and mu > 0 else None
    return [
        phase(diffrax.Tsit5(), explicit, probe=True, dtmax=dtmax),
        phase(stiff, STIFF_TOLERANCES),
    ]


@eqx.filter_jit
def largest_rate(sh, metric, U, iterations: int = 30):
    r"""$|\mu_{max}|$ of $J = -M^{-1}\nabla^2 E^N(U)$ by 30 steps of power iteration
    (a real spectrum for an SPD metric; a rough estimate from below, about 30
    Hessian-vector products): the explicit step cap of `solver="auto"`, and the
    stiffness diagnosis of a `max_steps` stop."""
    grad = jax.grad(type(sh).objective, argnums=1)

    def J(V):
        HV = jax.jvp(lambda W: grad(sh, W), (U,), (V,))[1]
        return metric.apply_inverse(sh, U, HV)

    v0 = jnp.ones_like(U) / jnp.sqrt(U.size)

    def body(_, carry):
        v, _ = carry
        w = J(v)
        nw = jnp.linalg.norm(w)
        return w / jnp.where(nw > 0, nw, 1.0), nw

    _, est = jax.lax.fori_loop(0, iterations, body, (v0, jnp.zeros((), U.dtype)))
    return est
