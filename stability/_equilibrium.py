r"""Equilibria of the gradient flow: stationary points of $E^N$ (eq. (51)).

The flow $dU/d\tau = -M^{-1}\nabla E^N(U)$ (eq. (50)) is at rest exactly where
$\nabla E^N(U) = 0$ (eq. (51)), whatever the (non-singular) metric. They are found
here by a trust-region Newton method whose subproblem is solved by truncated
conjugate gradients on Hessian-vector products (Steihaug-Toint CG,
[`flow.solvers.truncated_cg`][flow.solvers.truncated_cg]): nothing of size
$Nm \times Nm$ is ever formed, and negative curvature is followed to the
trust-region boundary, so the method works from points where the Hessian is
indefinite (where plain Newton fails) and converges quadratically near a
non-degenerate minimiser (where plain descent crawls).
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from flow import (
    RESULTS,
    AbstractResult,
    AbstractShooting,
    RealArrayLike,
    Shooting,
    format_number,
    solvers,
    validation,
)

from ._projected_newton import bound_arrays, solve_bounded, solve_bounded_batch


# `stop_on` is annotated `str` (not a Literal) on the public verbs: its values are
# checked by `flow.validation.choice`, which raises a ValueError naming them, where a
# Literal would give a runtime type checker's TypeError instead.


class Equilibrium(AbstractResult):
    r"""A stationary point $U^*$ of $E^N$ (eq. (51)), the result of
    [`equilibrium`][stability.equilibrium].

    **Fields:**

    - `U`: the point, shape `(N, m)`; `gradient`: $\nabla E^N(U^*)$, shape `(N, m)`;
    - `cost`: $E^N(U^*)$;
    - `gradient_norm`: $\|\nabla E^N(U^*)\|_\infty$ (eq. (54));
    - `hamiltonian_residual`: $\max_k |\partial_u H(\lambda_k, x_k, u_k)|$ from the
      costates (eq. (55); $\le$ `gradient_norm` $/ \min_k h_k$ by Theorem 5.14);
    - `result`: a [`flow.RESULTS`][flow.RESULTS] item: `converged`, `max_steps`,
      `stalled` (the trust region collapsed to rounding level: `tol` is likely
      below the rounding floor of the residual) or `nonfinite` (at `U0`);
    - work: `num_steps` (trust-region iterations), `num_hvp` (Hessian-vector
      products), `num_gradients` (cost-and-gradient evaluations), `num_rejected`
      (rejected trial steps);
    - `tol`, `stop_on`: the stopping rule ($\max_k |\nabla_{u_k} E^N| / h_k \le$ `tol`
      for `"hamiltonian"`, $\|\nabla E^N\|_\infty \le$ `tol` for `"gradient"`);
    - `problem`, `N`.

    For a problem with control bounds ([`flow.bounds`][flow.bounds]) the residuals are
    those of the projected gradient: `gradient_norm` is
    $\|U^* - P_B(U^* - \nabla E^N)\|_\infty$ and `hamiltonian_residual`
    $\max|U^* - P_B(U^* - \partial_u H)|$, and three arrays describe the bounds:

    - `active_set`: int8, shape `(N, m)`: -1 where $u^*_{k,i}$ is at its lower bound,
      +1 at its upper bound, 0 free;
    - `multipliers`: the bound multipliers $\nu = \nabla E^N(U^*)$ on the active set
      (0 on the free set; $\ge 0$ at lower bounds, $\le 0$ at upper ones). By Lemma 2
      $\nu_k = h_k\,\partial_u H_k$. CasADi's `lam_x` is $-\nu$;
    - `degenerate`: where strict complementarity fails to the solve's precision: an
      active component whose multiplier $|\nu_k| / h_k$ (or $|\nu|$ for
      `stop_on="gradient"`) is at most `10 * tol`, or a free one within `10 * tol` of a
      bound. Empty at a non-degenerate solution;

    and `num_steps` counts projected Newton iterations. Without bounds these are None.
    """

    U: Float[Array, "N m"]
    gradient: Float[Array, "N m"]
    cost: float
    gradient_norm: float
    hamiltonian_residual: float
    result: RESULTS
    num_steps: int
    num_hvp: int
    num_gradients: int
    num_rejected: int
    tol: float
    stop_on: str
    problem: str
    N: int
    active_set: Int[np.ndarray, "N m"] | None = None
    multipliers: Float[Array, "N m"] | None = None
    degenerate: Bool[np.ndarray, "N m"] | None = None
    _arrays: ClassVar[tuple[str, ...]] = (
        "U",
        "gradient",
        "active_set",
        "multipliers",
        "degenerate",
    )

    @property
    def bounded(self) -> bool:
        """Whether the problem had control bounds."""
        return self.active_set is not None

    @property
    def num_active(self) -> int:
        """The number of components at a bound (0 without bounds)."""
        return 0 if self.active_set is None else int(np.count_nonzero(self.active_set))

    @property
    def num_degenerate(self) -> int:
        """The number of degenerate components (0 without bounds)."""
        return 0 if self.degenerate is None else int(np.count_nonzero(self.degenerate))

    def _record(self, include_arrays: bool) -> dict[str, Any]:
        record = {k: v for k, v in self._fields().items() if k != "result"}
        # null without bounds, so that the document has the same keys either way
        record.update(
            num_active=self.num_active if self.bounded else None,
            num_degenerate=self.num_degenerate if self.bounded else None,
        )
        return record

    def _details(self) -> str:
        if self.status in ("max_steps", "stalled"):
            residual = (
                self.hamiltonian_residual if self.stop_on == "hamiltonian" else self.gradient_norm
            )
            kind = "projected Newton" if self.bounded else "trust-region"
            return (
                f"The {self.stop_on} residual is {residual:.3e} (tol {self.tol:.1e}) after "
                f"{self.num_steps} {kind} steps"
            )
        return ""

    def _summary(self) -> str:
        active = ""
        if self.bounded:
            active = f", {self.num_active} active ({self.num_degenerate} degenerate)"
        return (
            f"{self.problem}, N={self.N}, {self.num_steps} steps ({self.num_hvp} "
            f"Hessian-vector products), |grad|_inf={format_number(self.gradient_norm, '.2e')}, "
            f"max|dH/du|={format_number(self.hamiltonian_residual, '.2e')}, "
            f"E^N={format_number(self.cost, '.10g')}{active}"
        )


class Equilibria(AbstractResult):
    r"""Distinct stationary points found from several starts
    ([`equilibria`][stability.equilibria]).

    **Fields:**

    - `points`: the distinct converged equilibria, a tuple of
      [`Equilibrium`][stability.Equilibrium], sorted by cost;
    - `labels`: for each start, the index into `points` it converged to, or -1
      when that start did not converge;
    - `runs`: the result of every start, in order;
    - `distinct_tol`: two converged points are the same when
      $\|U_a - U_b\|_\infty \le$ `distinct_tol` $\cdot \max(1, \|U_b\|_\infty)$.

    `result` is `converged` when at least one start converged, else the status of
    the first start.
    """

    points: tuple[Equilibrium, ...]
    labels: Int[np.ndarray, " S"]
    runs: tuple[Equilibrium, ...]
    distinct_tol: float

    @property
    def result(self) -> RESULTS:
        """`converged` when some start converged, else the first start's status."""
        return RESULTS.converged if self.points else self.runs[0].result

    @property
    def num_failed(self) -> int:
        """The number of starts that did not converge."""
        return int(np.sum(self.labels < 0))

    def _record(self, include_arrays: bool) -> dict[str, Any]:
        return {
            "points": [p.to_dict(include_arrays=include_arrays) for p in self.points],
            "labels": self.labels,
            "runs": [r.to_dict(include_arrays=include_arrays) for r in self.runs],
            "distinct_tol": self.distinct_tol,
            "num_failed": self.num_failed,
        }

    def _summary(self) -> str:
        costs = ", ".join(format_number(p.cost, ".6g") for p in self.points)
        return (
            f"{len(self.points)} distinct from {len(self.runs)} starts, {self.num_failed} "
            f"failed; costs [{costs}]"
        )


# --------------------------------------------------------------------------
# The trust-region Newton-CG kernel (pure JAX, vmappable).

#: Kernel status codes, in this order.
_CODES = ("converged", "max_steps", "stalled", "nonfinite")


def _crit(g: Array, weight: Array) -> Array:
    return jnp.max(jnp.abs(g * weight))


def _trust_region(sh, U0, tol, on_hamiltonian, radius0, max_steps, max_cg):
    """Trust-region Newton-CG (Nocedal & Wright, Algorithms 4.1 and 7.2), and the
    residuals of its end point: everything `equilibrium` reports, in one compiled
    program (the stopping weight, 1/h_k or 1, is formed inside it too)."""
    steps = sh.steps[:, None]
    weight = jnp.where(on_hamiltonian, 1.0 / steps, jnp.ones_like(steps))
    value_and_grad = jax.value_and_grad(type(sh).objective, argnums=1)
    f0, g0 = value_and_grad(sh, U0)
    g0_norm = jnp.linalg.norm(g0)
    eps = jnp.finfo(U0.dtype).eps
    finite0 = jnp.isfinite(f0) & jnp.all(jnp.isfinite(g0))

    def radius_floor(U):
        return 10 * eps * jnp.maximum(1.0, jnp.linalg.norm(U))

    # carry: U, f, g, radius, iterations, n_hvp, n_rejected
    init = (U0, f0, g0, radius0, jnp.array(0), jnp.array(0), jnp.array(0))

    def cond(s):
        U, _, g, radius, it, _, _ = s
        return finite0 & (it < max_steps) & (_crit(g, weight) > tol) & (radius > radius_floor(U))

    def body(s):
        U, f, g, radius, it, n_hvp, n_rej = s
        g_norm = jnp.linalg.norm(g)
        forcing = jnp.minimum(0.5, jnp.sqrt(g_norm / jnp.where(g0_norm > 0, g0_norm, 1.0)))
        # min g.p + p.Hp/2 over ||p|| <= radius: CG on H p = -g (Steihaug-Toint)
        cg = solvers.truncated_cg(
            lambda V: sh.hessian_vector_product(U, V),
            -g,
            atol=forcing * g_norm,
            max_steps=max_cg,
            radius=radius,
            stop=lambda r: _crit(r, weight) <= 0.1 * tol,
        )
        p, Hp = cg.x, cg.Ax
        predicted = -(jnp.vdot(g, p) + 0.5 * jnp.vdot(p, Hp))
        f_t, g_t = value_and_grad(sh, U + p)
        finite = jnp.isfinite(f_t) & jnp.all(jnp.isfinite(g_t))
        # Near convergence the predicted decrease drops below the rounding of f:
        # then judge the step by the gradient norm instead of by the cost.
        rounding = predicted <= 100 * eps * jnp.maximum(jnp.abs(f), 1e-300)
        ratio = jnp.where(
            rounding,
            jnp.where(jnp.linalg.norm(g_t) < g_norm, 1.0, 0.0),
            (f - f_t) / jnp.where(predicted > 0, predicted, 1.0),
        )
        ratio = jnp.where(finite, ratio, -jnp.inf)
        accept = ratio > 1e-4
        p_norm = jnp.linalg.norm(p)
        radius = jnp.where(
            ratio < 0.25,
            0.25 * p_norm,
            jnp.where((ratio > 0.75) & cg.boundary, 2.0 * radius, radius),
        )
        return (
            jnp.where(accept, U + p, U),
            jnp.where(accept, f_t, f),
            jnp.where(accept, g_t, g),
            radius,
            it + 1,
            n_hvp + cg.num_steps,
            n_rej + jnp.where(accept, 0, 1),
        )

    U, f, g, radius, it, n_hvp, n_rej = jax.lax.while_loop(cond, body, init)
    status = jnp.where(
        ~finite0,
        3,
        jnp.where(_crit(g, weight) <= tol, 0, jnp.where(radius <= radius_floor(U), 2, 1)),
    )
    if isinstance(sh, Shooting):
        dH = sh.hamiltonian_gradient(U)
    else:  # the discrete Hamiltonian gradient, grad E^N / h_k
        dH = g / steps
    residuals = jnp.stack([jnp.max(jnp.abs(g)), jnp.max(jnp.abs(dH))])
    return U, f, g, it, n_hvp, n_rej, status, residuals


_solve = eqx.filter_jit(_trust_region)
_solve_batch = eqx.filter_jit(
    eqx.filter_vmap(_trust_region, in_axes=(None, 0, None, None, None, None, None))
)


def _options(shooting, tol, stop_on, max_steps, max_cg_steps, initial_radius):
    tol = validation.positive_float(tol, "tol")
    validation.stop_on(stop_on)
    max_steps = validation.positive_int(max_steps, "max_steps")
    size = shooting.N * shooting.control_dim
    if max_cg_steps is None:
        max_cg = min(size, 1000)
    else:
        max_cg = validation.positive_int(max_cg_steps, "max_cg_steps")
    if initial_radius is None:
        radius = float(np.sqrt(size))
    else:
        radius = validation.positive_float(initial_radius, "initial_radius")
    return (
        tol,
        stop_on,
        (
            # placed on the device from numpy: no XLA program per conversion
            jax.device_put(np.float64(tol)),
            jax.device_put(np.bool_(stop_on == "hamiltonian")),
            jax.device_put(np.float64(radius)),
            jax.device_put(np.int64(max_steps)),
            jax.device_put(np.int64(max_cg)),
        ),
    )


def _result(shooting, tol, stop_on, U, f, g, it, n_hvp, n_rej, status, residuals) -> Equilibrium:
    name = _CODES[int(status)]
    g_norm, dH = np.asarray(residuals)
    bounded = getattr(shooting, "bounds", None) is not None
    extra = bound_arrays(shooting, tol, stop_on, U, g) if bounded else {}
    accepted = int(it) - (1 if bounded and name == "stalled" else 0)
    return Equilibrium(
        U=U,
        gradient=g,
        cost=float(f),
        gradient_norm=float(g_norm),
        hamiltonian_residual=float(dH),
        result=getattr(RESULTS, name),
        num_steps=int(it),
        num_hvp=int(n_hvp),
        num_gradients=1 + (accepted + int(n_rej) if bounded else int(it)),
        num_rejected=int(n_rej),
        tol=tol,
        stop_on=stop_on,
        problem=getattr(getattr(shooting, "problem", None), "name", type(shooting).__name__),
        N=shooting.N,
        **extra,
    )


def equilibrium(
    shooting: AbstractShooting,
    U0: RealArrayLike | None = None,
    *,
    tol: float = 1e-10,
    stop_on: str = "hamiltonian",
    max_steps: int = 200,
    max_cg_steps: int | None = None,
    initial_radius: float | None = None,
    throw: bool = True,
) -> Equilibrium:
    r"""A stationary point of $E^N$: $\nabla E^N(U^*) = 0$ (eq. (51)), an
    equilibrium of every gradient flow (50).

    Trust-region Newton-CG: at $U_i$ the model
    $m(p) = E^N + \nabla E^N\cdot p + \tfrac12 p\cdot\nabla^2 E^N p$ is minimised over
    $\|p\|_2 \le \Delta_i$ by Steihaug-Toint truncated CG on Hessian-vector
    products (negative curvature is followed to the boundary; CG stops at relative
    residual $\min(\tfrac12, \sqrt{\|g_i\|/\|g_0\|})$, which gives superlinear
    convergence); the step is accepted when the actual decrease is at least
    $10^{-4}$ of the predicted one, and $\Delta$ shrinks (ratio $< 1/4$) or doubles
    (ratio $> 3/4$ on the boundary). Where the predicted decrease is below the
    rounding of $E^N$ the step is judged by the gradient norm. Never forms a dense
    Hessian; one `lax.while_loop`, jit-compiled and vmappable
    ([`equilibria`][stability.equilibria]).

    From a generic start the method converges to a local minimiser (it escapes
    saddles along negative curvature); started exactly at a saddle ($\nabla E^N = 0$)
    it stays there, with 0 iterations.

    **With control bounds** (`shooting.bounds`, [`flow.bounds`][flow.bounds]) it finds
    a KKT point of $\min E^N$ over the box $B$: $U^* - P_B(U^* - \nabla E^N(U^*)) = 0$,
    by projected Newton-CG (Bertsekas 1982). From $P_B(U_0)$, each step treats as
    active the components within $\epsilon_i = \min(10^{-2}, r_i)$ of a bound with the
    gradient pushing outwards ($r_i$ the projected residual), takes a Newton step on
    the free set (truncated CG on the free block of Hessian-vector products; the
    scaled gradient where CG finds no descent direction) and the scaled gradient on
    the active set, projects, and halves the step until Armijo's condition along the
    projection arc holds (up to 40 times; then `stalled`). Near a solution with strict
    complementarity the active set is identified after finitely many steps and the
    convergence is that of Newton's method on the free set. The stopping rule and the
    residuals are those of the projected gradient (`stop_on="hamiltonian"`:
    $\max|U - P_B(U - \nabla E^N / h)| \le$ `tol`); `initial_radius` is not used.
    The result also gives the active set, the bound multipliers and the degenerate
    components ([`Equilibrium`][stability.Equilibrium]).

    **Arguments:**

    - `shooting`: a `flow.Shooting`.
    - `U0`: the start, shape `(N, m)`; default the zero control.
    - `tol`, `stop_on`: stop when $\max_k |\nabla_{u_k} E^N| / h_k \le$ `tol`
      (`"hamiltonian"`, the default: the Hamiltonian condition (55) for Euler,
      mesh-independent by Theorem 5.14) or $\|\nabla E^N\|_\infty \le$ `tol`
      (`"gradient"`, eq. (54)).
    - `max_steps`: trust-region iterations; `max_cg_steps`: CG iterations per
      subproblem (default $\min(Nm, 1000)$); `initial_radius`: $\Delta_0$ in the
      Euclidean norm of $U$ (default $\sqrt{Nm}$, a unit change per component).
    - `throw`: raise [`flow.ConvergenceError`][flow.ConvergenceError] (or
      [`flow.DivergenceError`][flow.DivergenceError] for a non-finite start) unless
      the status is `converged`; with `throw=False` the status is returned.

    **Returns:** an [`Equilibrium`][stability.Equilibrium].
    """
    shooting = validation.shooting(shooting)
    U0 = shooting.zeros() if U0 is None else validation.controls(shooting, U0, "U0", finite=True)
    tol, stop_on, opts = _options(shooting, tol, stop_on, max_steps, max_cg_steps, initial_radius)
    bounded = getattr(shooting, "bounds", None) is not None
    out = (solve_bounded if bounded else _solve)(shooting, U0, *opts)
    result = _result(shooting, tol, stop_on, *out)
    if throw:
        hint = ""
        if result.status == "nonfinite":
            hint = shooting.nonfinite_report(U0, "U0") or ""
        result.raise_for_status("equilibrium", hint)
    return result


def equilibria(
    shooting: AbstractShooting,
    starts: RealArrayLike,
    *,
    tol: float = 1e-10,
    stop_on: str = "hamiltonian",
    max_steps: int = 200,
    max_cg_steps: int | None = None,
    initial_radius: float | None = None,
    distinct_tol: float = 1e-6,
    throw: bool = True,
) -> Equilibria:
    r"""[`equilibrium`][stability.equilibrium] from several starts at once
    (`jax.vmap` of the same trust-region kernel), with the distinct equilibria
    deduplicated.

    Two converged points $U_a, U_b$ are the same equilibrium when
    $\|U_a - U_b\|_\infty \le$ `distinct_tol` $\cdot\max(1, \|U_b\|_\infty)$
    (greedy, in the order of increasing cost). Starts that do not converge are
    reported (label -1).

    **Arguments:** `starts`, an array of shape `(S, N, m)`; `throw`: raise
    [`flow.ConvergenceError`][flow.ConvergenceError] when no start converged (the
    starts that fail while others converge are part of the answer, never raised);
    the other arguments as in [`equilibrium`][stability.equilibrium].

    **Returns:** [`Equilibria`][stability.Equilibria].
    """
    shooting = validation.shooting(shooting)
    if not hasattr(starts, "shape"):
        starts = np.asarray(starts, dtype=np.float64)
    if starts.ndim != 3 or tuple(starts.shape[1:]) != shooting.control_shape:
        raise ValueError(
            f"`starts` must have shape (S, N, m) = (S, {shooting.N}, "
            f"{shooting.control_dim}); got {tuple(starts.shape)}."
        )
    if starts.shape[0] < 1:
        raise ValueError("`starts` must hold at least one start.")
    if starts.dtype != jnp.float64:
        raise TypeError(f"`starts` must be float64; got dtype {starts.dtype}.")
    starts = validation.real_array(starts, "starts")
    distinct_tol = validation.positive_float(distinct_tol, "distinct_tol")
    tol, stop_on, opts = _options(shooting, tol, stop_on, max_steps, max_cg_steps, initial_radius)
    bounded = getattr(shooting, "bounds", None) is not None
    out = (solve_bounded_batch if bounded else _solve_batch)(shooting, starts, *opts)
    runs = tuple(
        _result(shooting, tol, stop_on, *(o[i] for o in out)) for i in range(starts.shape[0])
    )
    order = sorted(range(len(runs)), key=lambda i: runs[i].cost)
    points: list[Equilibrium] = []
    labels = np.full(len(runs), -1, dtype=np.int64)
    for i in order:
        r = runs[i]
        if not r.success:
            continue
        Ui = np.asarray(r.U)
        for j, p in enumerate(points):
            Uj = np.asarray(p.U)
            if np.max(np.abs(Ui - Uj)) <= distinct_tol * max(1.0, float(np.max(np.abs(Uj)))):
                labels[i] = j
                break
        else:
            labels[i] = len(points)
            points.append(r)
    found = Equilibria(points=tuple(points), labels=labels, runs=runs, distinct_tol=distinct_tol)
    if throw:
        found.raise_for_status("equilibria")
    return found
