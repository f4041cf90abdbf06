r"""Classic indirect shooting on the continuous necessary conditions (14): the
costate equation integrated forwards from a guessed $\lambda(t_0)$, and a damped
Newton root finder on the transversality condition (paper sections 3 and 6.3)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, Float, Int

from ._box_control import BoxNewtonControl, ClippedControl
from ._conditions import RESULTS, _from_code
from ._custom_types import RealArrayLike
from ._encoding import format_number
from ._problem import OptimalControlProblem
from ._results import AbstractResult
from ._root_finders import DampedNewton
from ._validation import (
    instance,
    optional_positive_float,
    positive_float,
    positive_int,
    real_array,
)


class _NewtonControl(eqx.Module):
    r"""$u(x, \lambda)$ from $\partial_u H(\lambda, x, u) = 0$ by Newton from `u_start`
    (at most `iterations` steps), with the implicit-function derivative
    $du = -(\partial_{uu}H)^{-1}(\partial_{ux}H\,dx + \partial_{u\lambda}H\,d\lambda)$;
    NaN when Newton does not converge."""

    problem: OptimalControlProblem
    u_start: Array
    iterations: int = eqx.field(static=True, default=50)

    def __call__(self, x: Array, lam: Array) -> Array:
        H = self.problem.hamiltonian
        Hu = jax.grad(H, argnums=2)
        Huu = jax.jacfwd(Hu, argnums=2)
        xs, ls = jax.lax.stop_gradient(x), jax.lax.stop_gradient(lam)

        def cond(c):
            _, j, err = c
            return (j < self.iterations) & (err > 0)

        def body(c):
            u, j, _ = c
            du = jnp.linalg.solve(Huu(ls, xs, u), Hu(ls, xs, u))
            u_new = u - du
            err = jnp.where(
                jnp.all(jnp.abs(du) <= 1e-14 * (1.0 + jnp.abs(u_new))), 0.0, jnp.max(jnp.abs(du))
            )
            err = jnp.where(jnp.all(jnp.isfinite(u_new)), err, 0.0)
            return u_new, j + 1, err

        u_star, j, err = jax.lax.while_loop(
            cond, body, (self.u_start, jnp.array(0), jnp.array(1.0))
        )
        ok = jnp.all(jnp.isfinite(u_star)) & (j < self.iterations)
        u_star = jax.lax.stop_gradient(jnp.where(ok, u_star, jnp.nan))
        A = jax.lax.stop_gradient(Huu(ls, xs, u_star))
        # value u_star (up to one more Newton correction), derivative by the IFT
        return u_star - jnp.linalg.solve(A, Hu(lam, x, u_star))


class _UserControl(eqx.Module):
    """u = control_law(x, lambda) on the user's (non-augmented) state and costate."""

    law: Callable = eqx.field(static=True)
    n: int = eqx.field(static=True)

    def __call__(self, x: Array, lam: Array) -> Array:
        return jnp.asarray(self.law(x[: self.n], lam[: self.n]))


def _augment_costate(problem: OptimalControlProblem, lam: Array) -> Array:
    if problem.running_cost is None:
        return lam
    return jnp.concatenate([lam, jnp.ones((1,), lam.dtype)])


def _canonical_field(problem: OptimalControlProblem, control: Callable):
    """The vector field of (14): x' = f(x, u), lambda' = -f_x^T lambda, u = u(x, lambda)."""
    na = problem.augmented_dim

    def vf(t, y, args):
        del t, args
        x, lam = y[:na], y[na:]
        u = control(x, lam)
        fx, vjp = jax.vjp(lambda x_: problem.augmented_dynamics(x_, u), x)
        (fx_t_lam,) = vjp(lam)
        return jnp.concatenate([fx, -fx_t_lam])

    return vf


def _canonical_solve(problem, control, solver, lam0, rtol, atol, ode_max_steps, saveat, adjoint):
    y0 = jnp.concatenate([problem.augmented_x0(), _augment_costate(problem, lam0)])
    return diffrax.diffeqsolve(
        diffrax.ODETerm(_canonical_field(problem, control)),
        solver,
        problem.t0,
        problem.tf,
        None,
        y0,
        saveat=saveat,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        adjoint=adjoint,
        max_steps=ode_max_steps,
        throw=False,
    )


def _terminal_residual(problem, yT):
    na, n = problem.augmented_dim, problem.state_dim
    xT, lamT = yT[:na], yT[na:]
    return (lamT - jax.grad(problem.augmented_endpoint_cost)(xT))[:n]


def _terminal_terms(problem, yT):
    """max(|lambda(tf)| + |grad E(x(tf))|): the size of the two terms whose difference
    is the residual; it resolves nothing below eps times this."""
    na, n = problem.augmented_dim, problem.state_dim
    xT, lamT = yT[:na], yT[na:]
    return jnp.max((jnp.abs(lamT) + jnp.abs(jax.grad(problem.augmented_endpoint_cost)(xT)))[:n])


def _costate_kernel(problem, control, solver, root_finder, lam0, rtol, atol, ode_max_steps, steps):
    """Root-find lambda(t0), then the dense solution. Pure JAX (vmappable)."""

    def residual(lam, args):
        del args
        sol = _canonical_solve(
            problem,
            control,
            solver,
            lam,
            rtol,
            atol,
            ode_max_steps,
            diffrax.SaveAt(t1=True),
            diffrax.ForwardMode(),
        )
        r = _terminal_residual(problem, sol.ys[-1])
        return jnp.where(sol.result == diffrax.RESULTS.successful, r, jnp.nan)

    root = optx.root_find(
        residual, root_finder, lam0, max_steps=steps, throw=False, adjoint=optx.ImplicitAdjoint()
    )
    lam = root.value
    dense = _canonical_solve(
        problem,
        control,
        solver,
        lam,
        rtol,
        atol,
        ode_max_steps,
        diffrax.SaveAt(t1=True, dense=True),
        diffrax.RecursiveCheckpointAdjoint(),
    )
    r = _terminal_residual(problem, dense.ys[-1])
    terms = _terminal_terms(problem, dense.ys[-1])
    res = root.result
    code = jnp.where(
        res == optx.RESULTS.successful,
        0,
        jnp.where(
            res == optx.RESULTS.nonlinear_max_steps_reached,
            1,
            jnp.where(res == optx.RESULTS.singular, 3, 2),
        ),
    )
    ode_ok = dense.result == diffrax.RESULTS.successful
    finite = jnp.all(jnp.isfinite(r)) & jnp.all(jnp.isfinite(lam))
    code = jnp.where(ode_ok & finite, code, 2)
    return lam, r, terms, root.stats["num_steps"], code, dense


_costate_kernel_jit = eqx.filter_jit(_costate_kernel)
_costate_kernel_batch = eqx.filter_jit(
    eqx.filter_vmap(_costate_kernel, in_axes=(None, None, None, None, 0, None, None, None, None))
)


class CostateTrajectory(AbstractResult):
    r"""The result of [`costate_shooting`][flow.indirect.costate_shooting]: a solution of
    the continuous necessary conditions (14), with dense output.

    **Fields** (with a leading batch axis for a batch of guesses):

    - `lambda0`: $\lambda(t_0)$, shape `(n,)` (augmented: a running cost's costate 1
      is the last component);
    - `terminal_residual`: $\lambda(t_f) - \nabla E(x(t_f))$ on the user's state, `(n_user,)`;
    - `num_steps`: root-finder iterations; `result`: a
      [`flow.indirect.RESULTS`][flow.indirect.RESULTS] item;
    - `tol`, `rtol`, `atol`; `damping`: the Newton step factor used (None for a user
      root finder);
    - `solution`: the `diffrax.Solution` of $(x, \lambda)$ with dense output;
    - `problem`, `control`: the problem and the control map $u(x, \lambda)$.

    Evaluate an unbatched trajectory with
    [`states`][flow.indirect.CostateTrajectory.states],
    [`costates`][flow.indirect.CostateTrajectory.costates],
    [`controls`][flow.indirect.CostateTrajectory.controls] at any times in
    $[t_0, t_f]$.
    """

    lambda0: Float[Array, "*B n"]
    terminal_residual: Float[Array, "*B nu"]
    num_steps: Int[Array, "*B"]
    result: RESULTS
    tol: float = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    damping: float | None = eqx.field(static=True)
    solution: diffrax.Solution
    problem: OptimalControlProblem
    control: Callable
    _arrays: ClassVar[tuple[str, ...]] = ()

    def _evaluate(self, ts: Any) -> Array:
        if self.lambda0.ndim != 1:
            raise ValueError("a batched CostateTrajectory cannot be evaluated; index a run.")
        ts = jnp.asarray(ts, dtype=jnp.float64)
        if ts.ndim > 1:
            raise ValueError(
                f"`ts` must be a scalar or a 1-D array of times; got shape {ts.shape}."
            )
        lo, hi = self.problem.t0, self.problem.tf
        tol = 1e-12 * (hi - lo)
        if bool(jnp.any((ts < lo - tol) | (ts > hi + tol))):
            raise ValueError(f"`ts` must lie in [t0, tf] = [{lo}, {hi}].")
        return jax.vmap(self.solution.evaluate)(jnp.atleast_1d(jnp.clip(ts, lo, hi)))

    def states(self, ts: Any) -> Float[Array, "T n"]:
        r"""$x(t)$ at the times `ts` (1-D), shape `(T, n)` (augmented)."""
        return self._evaluate(ts)[:, : self.problem.augmented_dim]

    def costates(self, ts: Any) -> Float[Array, "T n"]:
        r"""$\lambda(t)$ at the times `ts` (1-D), shape `(T, n)` (augmented)."""
        return self._evaluate(ts)[:, self.problem.augmented_dim :]

    def controls(self, ts: Any) -> Float[Array, "T m"]:
        r"""$u(t) = u(x(t), \lambda(t))$ from $\partial_u H = 0$ (with control bounds:
        the minimiser of $H$ over the box), shape `(T, m)`."""
        y = self._evaluate(ts)
        na = self.problem.augmented_dim
        return jax.vmap(self.control)(y[:, :na], y[:, na:])

    def _record(self, include_arrays: bool) -> dict[str, Any]:
        return dict(
            problem=self.problem.name,
            num_steps=self.num_steps,
            tol=self.tol,
            rtol=self.rtol,
            atol=self.atol,
            damping=self.damping,
            lambda0=self.lambda0,
            terminal_residual=jnp.max(jnp.abs(self.terminal_residual), axis=-1),
        )

    def _summary(self) -> str:
        r = float(jnp.max(jnp.abs(self.terminal_residual)))
        return (
            f"{self.problem.name}, {int(self.num_steps)} Newton steps, "
            f"|lambda(tf) - grad E| = {format_number(r, '.1e')}"
        )


def _hamiltonian_uu(problem: OptimalControlProblem, x: Array, lam: Array, u: Array) -> np.ndarray:
    Hu = jax.grad(problem.hamiltonian, argnums=2)
    return np.asarray(jax.jacfwd(Hu, argnums=2)(lam, x, u))


def _make_control(problem: OptimalControlProblem, control_law: Any, lam0: Array, u_start: Array):
    """The control map u(x, lambda), checked once at (x0, lambda0)."""
    x0 = problem.augmented_x0()
    lam_aug = _augment_costate(problem, lam0)
    m = problem.control_dim
    if control_law is not None:
        if not callable(control_law):
            raise TypeError(
                f"`control_law` must be a callable (x, lam) -> u of shape ({m},); got "
                f"{type(control_law).__name__}."
            )
        control = _UserControl(control_law, problem.state_dim)
        u = control(x0, lam_aug)
        if u.shape != (m,) or u.dtype != jnp.float64:
            raise ValueError(
                f"`control_law(x, lam)` must return a float64 array of shape ({m},); got "
                f"shape {u.shape}, dtype {u.dtype}."
            )
        if problem.control_bounds is not None:
            return ClippedControl(control, *problem.control_bounds)
        return control
    if problem.control_bounds is not None:
        u_start = jnp.clip(u_start, *problem.control_bounds)
    A = _hamiltonian_uu(problem, x0, lam_aug, u_start)
    s = np.linalg.svd(A, compute_uv=False) if np.all(np.isfinite(A)) else np.array([np.nan])
    if not np.all(np.isfinite(s)) or s[-1] <= 1e-10 * max(1.0, float(s[0])):
        raise ValueError(
            f"d_uu H is singular at (x0, lambda0_guess, u={np.asarray(u_start).tolist()}) "
            f"(singular values {np.asarray(s).tolist()}): the control cannot be found from "
            f"d_u H = 0 by Newton. This happens for control-affine problems without a "
            f"control penalty (e.g. scalar_mayer: singular or bang-bang arcs). Pass "
            f"`control_law(x, lam)` or add a running cost in u."
        )
    if problem.control_bounds is not None:
        return BoxNewtonControl(problem, u_start)
    return _NewtonControl(problem, u_start)


def costate_shooting(
    problem: OptimalControlProblem,
    lambda0_guess: RealArrayLike,
    *,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    tol: float | None = None,
    max_steps: int = 50,
    control_law: Callable | None = None,
    damping: float = 1.0,
    solver: diffrax.AbstractSolver | None = None,
    root_finder: optx.AbstractRootFinder | None = None,
    ode_max_steps: int = 16384,
    control_guess: RealArrayLike | None = None,
    throw: bool = True,
) -> CostateTrajectory:
    r"""Classic indirect shooting on the continuous necessary conditions (14).

    $$\dot x = f(x, u),\quad \dot\lambda = -\partial_x f(x, u)^T\lambda,\quad
      \partial_u H(\lambda, x, u) = 0,\quad x(t_0) = x_0,\quad
      \lambda(t_f) = \nabla E(x(t_f)),$$

    with $H = \lambda^T f$ (5) on the augmented state (a running cost $L$ adds
    $+L$ to $H$; its costate is 1). The control is $u(x, \lambda)$ = `control_law(x,
    lam)` (on the user's state and costate) when given, otherwise the root of
    $\partial_u H = 0$ by a local Newton solve (from `control_guess`, default 0) at
    every evaluation of the vector field. $(x, \lambda)$ is integrated forwards with
    diffrax from $(x_0, \lambda_0)$, and $\lambda_0$ is found by a damped Newton root
    finder ([`DampedNewton`][flow.solvers.DampedNewton], optimistix) on
    $F(\lambda_0) = \lambda(t_f) - \nabla E(x(t_f))$:
    $\lambda_0 \leftarrow \lambda_0 - d\,F'(\lambda_0)^{-1}F(\lambda_0)$ with the
    damping $d$ (paper section 6.3; $d = 1$ is Newton). $F'$ is computed by
    forward-mode differentiation through the ODE solver.

    With control bounds (`problem.control_bounds`, $\ell \le u \le \upsilon$) the
    control equation is the minimum principle on the box,

    $$u(x, \lambda) = \arg\min_{\ell \le u \le \upsilon} H(\lambda, x, u),
      \qquad\text{i.e.}\qquad u - P\bigl(u - \partial_u H(\lambda, x, u)\bigr) = 0,$$

    ($P$ the componentwise clip onto the box; the first-order condition, which is the
    minimiser when $H$ is strictly convex in $u$, as for a control-affine $f$ with a
    quadratic control cost). It is solved at every evaluation by Bertsekas' projected
    Newton method with an Armijo search on $H$, from `control_guess` projected onto the
    box: Newton on the free components, the active ones (on a bound, the gradient
    pointing out) held there; for $m = 1$ and a quadratic $H$ the result is the clip of
    the unconstrained minimiser, for $m > 1$ with a coupled $\partial_{uu}H$ it is not,
    and the method finds it. Its derivative is the implicit-function one on the free
    components and zero on the active ones, exact wherever the active set does not
    switch, so $F'$ is exact almost everywhere and the root finder keeps its
    convergence. The vector field is then only Lipschitz: $u(t)$ has kinks where a
    component reaches or leaves a bound, and the adaptive ODE solver takes small steps
    there (its error estimate sees the kink); the result is as accurate as `rtol`,
    `atol` say, at the cost of more ODE steps. A user's `control_law` must respect the
    bounds itself (return the box-constrained minimiser); its output is clipped onto
    the box, which is the minimiser only for a separable $H$ (e.g. a diagonal
    $\partial_{uu}H$). Box bounds per interval (`flow.shoot(..., control_bounds=...)`)
    belong to a discretisation and are not seen here: the continuous problem's are the
    problem's.

    **Arguments:**

    - `problem`: an [`OptimalControlProblem`][flow.OptimalControlProblem].
    - `lambda0_guess`: the initial guess of $\lambda(t_0)$ on the user's state, shape
      `(n,)` (without the running-cost component, which is 1); or a batch `(S, n)`:
      then every field of the result has a leading axis `S` (one vmapped root find
      per guess; `result.statuses` names each).
    - `rtol`, `atol`: the ODE tolerances (diffrax `PIDController`; default 1e-10,
      1e-12: the residual $F$ is only as accurate as the ODE solve); recorded in the
      result.
    - `tol`: the root finder's tolerance: converged when the Newton step satisfies
      $|\delta\lambda_0| \le$ `tol` $(1 + |\lambda_0|)$ and
      $\|F\|_\infty \le$ `tol` (default: 100 `rtol` on the step and 100 `atol` on
      $F$: the residual is only as accurate as the ODE solve).
    - `max_steps`: root-finder iterations; `ode_max_steps`: ODE steps per solve.
    - `control_law`: optional closed form $u(x, \lambda)$, shapes `(n,), (n,) -> (m,)`;
      with control bounds it should return the box-constrained minimiser, and its
      output is clipped onto the box.
    - `damping`: the Newton step factor $d > 0$.
    - `solver`: the diffrax solver (default `Tsit5()`); `root_finder`: any optimistix
      root finder instead of the damped Newton (then `damping` must be 1).
    - `control_guess`: the start of the local Newton solve for $u$, shape `(m,)`
      (projected onto the box with control bounds).
    - `throw`: raise [`ConvergenceError`][flow.ConvergenceError] (or
      [`DivergenceError`][flow.DivergenceError]) when not converged; `False` returns
      the status (always for a batch).

    **Returns:** a [`CostateTrajectory`][flow.indirect.CostateTrajectory]: evaluate
    $x(t), \lambda(t), u(t)$ at any times. Its status is `diverged` also when the
    residual met its tolerance only because it is below the rounding of its terms
    ($\epsilon(|\lambda(t_f)| + |\nabla E(x(t_f))|)$ above the residual tolerance:
    $\lambda_0$ ran off to where the difference rounds to zero, as on a problem
    without a root).

    **Raises:** `ValueError` naming $\partial_{uu}H$ when it is singular at
    $(x_0, \lambda_0)$ (at the projected `control_guess`) and no `control_law` is given
    (control-affine problems without a control penalty, such as `scalar_mayer`);
    `ValueError`/`TypeError` for
    arguments of the wrong shape or type.
    """
    instance(problem, "problem", OptimalControlProblem)
    n, m = problem.state_dim, problem.control_dim
    guess = lambda0_guess if hasattr(lambda0_guess, "shape") else np.asarray(lambda0_guess)
    batched = np.ndim(guess) == 2
    shape = (np.shape(guess)[0], n) if batched else (n,)
    lam0 = real_array(guess, "lambda0_guess", shape, "lambda(t0) on the user's state")
    rtol = positive_float(rtol, "rtol")
    atol = positive_float(atol, "atol")
    tol = optional_positive_float(tol, "tol")
    damping = positive_float(damping, "damping")
    max_steps = positive_int(max_steps, "max_steps")
    ode_max_steps = positive_int(ode_max_steps, "ode_max_steps")
    if solver is None:
        solver = diffrax.Tsit5()
    instance(solver, "solver", diffrax.AbstractSolver)
    if root_finder is None:
        step_tol, f_tol = (100 * rtol, 100 * atol) if tol is None else (tol, tol)
        root_finder = DampedNewton(
            rtol=jnp.asarray(step_tol),
            atol=jnp.asarray(f_tol if tol is None else tol),
            ftol=jnp.asarray(f_tol),
            damping=jnp.asarray(damping),
        )
        used_damping: float | None = damping
    else:
        instance(root_finder, "root_finder", optx.AbstractRootFinder)
        if damping != 1.0:
            raise ValueError(
                "`damping` applies to the default root finder only; got a root_finder."
            )
        used_damping = None
    u_start = (
        jnp.zeros((m,))
        if control_guess is None
        else real_array(control_guess, "control_guess", (m,), "a control")
    )
    control = _make_control(problem, control_law, lam0[0] if batched else lam0, u_start)
    kernel = _costate_kernel_batch if batched else _costate_kernel_jit
    lam, r, terms, steps, code, dense = kernel(
        problem,
        control,
        solver,
        root_finder,
        lam0,
        jnp.asarray(rtol),
        jnp.asarray(atol),
        ode_max_steps,
        max_steps,
    )
    # A residual below the rounding of its terms is no evidence of a root: Newton can
    # run lambda0 off to ~1e16, where lambda(tf) - grad E(x(tf)) rounds to zero. A
    # "root" whose terms are so large that eps times them exceeds the residual
    # tolerance is reported as a divergence.
    f_check = (100 * atol if tol is None else tol) if used_damping is not None else 100 * atol
    unresolved = np.finfo(np.float64).eps * np.asarray(terms) > f_check
    code = jnp.where(jnp.asarray(unresolved) & (code == 0), 2, code)
    aug = (
        jax.vmap(lambda v: _augment_costate(problem, v))
        if batched
        else (lambda v: _augment_costate(problem, v))
    )
    traj = CostateTrajectory(
        lambda0=aug(lam),
        terminal_residual=r,
        num_steps=steps,
        result=_from_code(code),
        tol=float(root_finder.rtol) if used_damping is not None else float("nan"),
        rtol=rtol,
        atol=atol,
        damping=used_damping,
        solution=dense,
        problem=problem,
        control=control,
    )
    if throw and not batched:
        traj.raise_for_status(
            "costate_shooting",
            "Try a better lambda0_guess (e.g. the costates of a direct method), a smaller "
            "damping with more max_steps.",
        )
    return traj
