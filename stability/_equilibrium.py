r"""Equilibria of the gradient flow: stationary points of $E^N$ (eq. (51)).

The flow $dU/d\tau = -M^{-1}\nabla E^N(U)$ (eq. (50)) is at rest exactly where
$\nabla E^N(U) = 0$ (eq. (51)), whatever the (non-singular) metric. They are found
here by a trust-region Newton method whose subproblem is solved by truncated
conjugate gradients on Hessian-vector products (Steihaug-Toint CG): nothing of
size $Nm \times Nm$ is ever formed, and negative curvature is followed to the
trust-region boundary, so the method works from points where the Hessian is
indefinite (where plain Newton fails) and converges quadratically near a
non-degenerate minimiser (where plain descent crawls).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ._common import as_controls, check_shooting, jsonable, positive_float, positive_int


#: Status names of [`equilibrium`][stability.equilibrium] and their messages.
STATUS_MESSAGES: dict[str, str] = {
    "converged": "the stopping norm fell below tol",
    "max_steps": "max_steps trust-region iterations without reaching tol",
    "stalled": (
        "the trust region collapsed to rounding level before reaching tol (tol may be "
        "below the rounding floor of the gradient; try a larger tol)"
    ),
    "nonfinite": "the cost or gradient is not finite at the start point U0",
}
_STATUS_CODES = ("converged", "max_steps", "stalled", "nonfinite")
_NORMS = ("gradient", "hamiltonian")


class Equilibrium(eqx.Module):
    r"""A stationary point $U^*$ of $E^N$ (eq. (51)), the result of [`equilibrium`][].

    **Fields:**

    - `U`: the point, shape `(N, m)`;
    - `gradient`: $\nabla E^N(U^*)$, shape `(N, m)`;
    - `cost`: $E^N(U^*)$;
    - `gradient_norm`: $\|\nabla E^N(U^*)\|_\infty$ (eq. (54));
    - `hamiltonian_residual`: $\max_k |\partial_u H(\lambda_k, x_k, u_k)|$ from the
      costates (eq. (55); $\le$ `gradient_norm` $/ \min_k h_k$ by Theorem 5.14);
    - `iterations`: trust-region iterations; `n_hvp`: Hessian-vector products;
      `n_rejected`: rejected trial steps;
    - `status`: one of `"converged"`, `"max_steps"`, `"stalled"`, `"nonfinite"`
      (see `STATUS_MESSAGES`), and `message`;
    - `tol`, `norm`: the stopping rule ($\|\nabla E^N\|_\infty \le$ `tol`, or
      $\max_k |\nabla_{u_k} E^N| / h_k \le$ `tol` for `norm="hamiltonian"`);
    - `problem`, `N`.
    """

    U: Float[Array, "N m"]
    gradient: Float[Array, "N m"]
    cost: float
    gradient_norm: float
    hamiltonian_residual: float
    iterations: int
    n_hvp: int
    n_rejected: int
    status: str
    message: str
    tol: float
    norm: str
    problem: str
    N: int

    @property
    def success(self) -> bool:
        """True when `status == "converged"`."""
        return self.status == "converged"

    def to_dict(self, *, include_arrays: bool = False) -> dict[str, Any]:
        """A JSON-safe dictionary; `U` and `gradient` only with `include_arrays=True`."""
        d = {
            f: getattr(self, f)
            for f in self.__dataclass_fields__
            if include_arrays or f not in ("U", "gradient")
        }
        d["success"] = self.success
        return jsonable(d)

    def __repr__(self) -> str:
        return (
            f"Equilibrium({self.problem}, N={self.N}: {self.status} after "
            f"{self.iterations} iterations ({self.n_hvp} Hessian-vector products), "
            f"|grad|_inf={self.gradient_norm:.2e}, max|dH/du|="
            f"{self.hamiltonian_residual:.2e}, E^N={self.cost:.10g})"
        )


class Equilibria(eqx.Module):
    r"""Distinct stationary points found from several starts ([`equilibria`][]).

    **Fields:**

    - `points`: the distinct converged equilibria, a tuple of [`Equilibrium`][],
      sorted by cost;
    - `labels`: for each start, the index into `points` it converged to, or -1
      when that start did not converge;
    - `runs`: the result of every start, in order;
    - `distinct_tol`: two converged points are the same when
      $\|U_a - U_b\|_\infty \le$ `distinct_tol` $\cdot \max(1, \|U_b\|_\infty)$.
    """

    points: tuple[Equilibrium, ...]
    labels: Int[np.ndarray, " S"]
    runs: tuple[Equilibrium, ...]
    distinct_tol: float

    @property
    def n_failed(self) -> int:
        """The number of starts that did not converge."""
        return int(np.sum(self.labels < 0))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary (without the control arrays)."""
        return jsonable(
            {
                "points": [p.to_dict() for p in self.points],
                "labels": self.labels,
                "runs": [r.to_dict() for r in self.runs],
                "distinct_tol": self.distinct_tol,
                "n_failed": self.n_failed,
            }
        )

    def __repr__(self) -> str:
        costs = ", ".join(f"{p.cost:.6g}" for p in self.points)
        return (
            f"Equilibria({len(self.points)} distinct from {len(self.runs)} starts, "
            f"{self.n_failed} failed; costs [{costs}])"
        )


# --------------------------------------------------------------------------
# The trust-region Newton-CG kernel (pure JAX, vmappable).


def _crit(g: Array, weight: Array) -> Array:
    return jnp.max(jnp.abs(g * weight))


def _boundary_step(p: Array, d: Array, radius: Array) -> Array:
    """tau >= 0 with ||p + tau d|| = radius (||p|| <= radius)."""
    pd, dd, pp = jnp.vdot(p, d), jnp.vdot(d, d), jnp.vdot(p, p)
    disc = jnp.sqrt(jnp.maximum(pd**2 + dd * (radius**2 - pp), 0.0))
    return (-pd + disc) / jnp.where(dd > 0, dd, 1.0)


def _steihaug(sh, U, g, radius, rtol_abs, crit_tol, weight, max_cg):
    """Truncated CG for min g.p + p.Hp/2, ||p|| <= radius (Steihaug-Toint).

    Returns (p, H p, number of HVPs, hit_boundary).
    """
    zeros = jnp.zeros_like(g)
    init = (zeros, g, -g, zeros, jnp.array(0), jnp.array(False), jnp.array(False))

    def cond(s):
        return (~s[5]) & (s[4] < max_cg)

    def body(s):
        p, r, d, Hp, j, _, _ = s
        Hd = sh.hessian_vector_product(U, d)
        dHd = jnp.vdot(d, Hd)
        rr = jnp.vdot(r, r)
        negative = dHd <= 0
        alpha = rr / jnp.where(negative, 1.0, dHd)
        p_new = p + alpha * d
        outside = negative | (jnp.linalg.norm(p_new) >= radius)
        tau = _boundary_step(p, d, radius)
        r_new = r + alpha * Hd
        small = (jnp.linalg.norm(r_new) <= rtol_abs) | (_crit(r_new, weight) <= crit_tol)
        beta = jnp.vdot(r_new, r_new) / jnp.where(rr > 0, rr, 1.0)
        p_out = jnp.where(outside, p + tau * d, p_new)
        Hp_out = jnp.where(outside, Hp + tau * Hd, Hp + alpha * Hd)
        done = outside | small | (rr == 0)
        return (p_out, r_new, -r_new + beta * d, Hp_out, j + 1, done, outside)

    p, _, _, Hp, j, _, boundary = jax.lax.while_loop(cond, body, init)
    return p, Hp, j, boundary


def _trust_region(sh, U0, tol, weight, radius0, max_steps, max_cg):
    """Trust-region Newton-CG (Nocedal & Wright, Algorithms 4.1 and 7.2)."""
    value_and_grad = jax.value_and_grad(sh.cost)
    f0, g0 = value_and_grad(U0)
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
        p, Hp, n_cg, boundary = _steihaug(
            sh, U, g, radius, forcing * g_norm, 0.1 * tol, weight, max_cg
        )
        predicted = -(jnp.vdot(g, p) + 0.5 * jnp.vdot(p, Hp))
        f_t, g_t = value_and_grad(U + p)
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
            jnp.where((ratio > 0.75) & boundary, 2.0 * radius, radius),
        )
        return (
            jnp.where(accept, U + p, U),
            jnp.where(accept, f_t, f),
            jnp.where(accept, g_t, g),
            radius,
            it + 1,
            n_hvp + n_cg,
            n_rej + jnp.where(accept, 0, 1),
        )

    U, f, g, radius, it, n_hvp, n_rej = jax.lax.while_loop(cond, body, init)
    dH = jnp.max(jnp.abs(sh.hamiltonian_gradient(U)))
    status = jnp.where(
        ~finite0,
        3,
        jnp.where(_crit(g, weight) <= tol, 0, jnp.where(radius <= radius_floor(U), 2, 1)),
    )
    return U, f, g, dH, it, n_hvp, n_rej, status


_solve = eqx.filter_jit(_trust_region)
_solve_batch = eqx.filter_jit(
    eqx.filter_vmap(_trust_region, in_axes=(None, 0, None, None, None, None, None))
)


def _options(shooting, tol, norm, max_steps, max_cg_steps, initial_radius):
    tol = positive_float(tol, "tol")
    if norm not in _NORMS:
        raise ValueError(f"`norm` must be one of {_NORMS}; got {norm!r}.")
    max_steps = positive_int(max_steps, "max_steps")
    size = shooting.N * shooting.control_dim
    if max_cg_steps is None:
        max_cg = min(size, 1000)
    else:
        max_cg = positive_int(max_cg_steps, "max_cg_steps")
    if initial_radius is None:
        radius = float(np.sqrt(size))
    else:
        radius = positive_float(initial_radius, "initial_radius")
    if norm == "gradient":
        weight = jnp.ones(shooting.control_shape)
    else:
        weight = jnp.broadcast_to(1.0 / shooting.steps[:, None], shooting.control_shape)
    return (
        tol,
        norm,
        (
            jnp.asarray(tol),
            weight,
            jnp.asarray(radius),
            jnp.asarray(max_steps),
            jnp.asarray(max_cg),
        ),
    )


def _result(shooting, tol, norm, U, f, g, dH, it, n_hvp, n_rej, status) -> Equilibrium:
    name = _STATUS_CODES[int(status)]
    message = STATUS_MESSAGES[name]
    return Equilibrium(
        U=U,
        gradient=g,
        cost=float(f),
        gradient_norm=float(jnp.max(jnp.abs(g))),
        hamiltonian_residual=float(dH),
        iterations=int(it),
        n_hvp=int(n_hvp),
        n_rejected=int(n_rej),
        status=name,
        message=message,
        tol=tol,
        norm=norm,
        problem=shooting.problem.name,
        N=shooting.N,
    )


def equilibrium(
    shooting: Any,
    U0: Any = None,
    *,
    tol: Any = 1e-10,
    norm: str = "gradient",
    max_steps: Any = 200,
    max_cg_steps: Any = None,
    initial_radius: Any = None,
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

    **Arguments:**

    - `shooting`: a `flow.Shooting`.
    - `U0`: the start, shape `(N, m)`; default the zero control.
    - `tol`: stop when $\|\nabla E^N\|_\infty \le$ `tol` (eq. (54)), or, with
      `norm="hamiltonian"`, when $\max_k |\nabla_{u_k} E^N| / h_k \le$ `tol` (the
      Hamiltonian condition (55) for Euler; Theorem 5.14).
    - `max_steps`: trust-region iterations; `max_cg_steps`: CG iterations per
      subproblem (default $\min(Nm, 1000)$); `initial_radius`: $\Delta_0$ in the
      Euclidean norm of $U$ (default $\sqrt{Nm}$, a unit change per component).
    - `throw`: raise `RuntimeError` when the status is not `"converged"`
      (default); with `throw=False` the status is returned instead.

    **Returns:** an [`Equilibrium`][stability.Equilibrium].
    """
    shooting = check_shooting(shooting)
    U0 = shooting.zeros() if U0 is None else as_controls(shooting, U0, "U0")
    tol, norm, opts = _options(shooting, tol, norm, max_steps, max_cg_steps, initial_radius)
    out = _solve(shooting, U0, *opts)
    result = _result(shooting, tol, norm, *out)
    if throw and not result.success:
        raise RuntimeError(
            f"equilibrium: {result.status}: {result.message} ({result!r}). Pass "
            f"throw=False to get the result anyway."
        )
    return result


def equilibria(
    shooting: Any,
    starts: Any,
    *,
    tol: Any = 1e-10,
    norm: str = "gradient",
    max_steps: Any = 200,
    max_cg_steps: Any = None,
    initial_radius: Any = None,
    distinct_tol: Any = 1e-6,
) -> Equilibria:
    r"""[`equilibrium`][stability.equilibrium] from several starts at once
    (`jax.vmap` of the same trust-region kernel), with the distinct equilibria
    deduplicated.

    Two converged points $U_a, U_b$ are the same equilibrium when
    $\|U_a - U_b\|_\infty \le$ `distinct_tol` $\cdot\max(1, \|U_b\|_\infty)$
    (greedy, in the order of increasing cost). Starts that do not converge are
    reported (label -1), never raised.

    **Arguments:** `starts`, an array of shape `(S, N, m)`; the other arguments as
    in [`equilibrium`][stability.equilibrium].

    **Returns:** [`Equilibria`][stability.Equilibria].
    """
    shooting = check_shooting(shooting)
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
    starts = jnp.asarray(starts)
    if not bool(jnp.all(jnp.isfinite(starts))):
        raise ValueError("`starts` must be finite.")
    distinct_tol = positive_float(distinct_tol, "distinct_tol")
    tol, norm, opts = _options(shooting, tol, norm, max_steps, max_cg_steps, initial_radius)
    out = _solve_batch(shooting, starts, *opts)
    runs = tuple(_result(shooting, tol, norm, *(o[i] for o in out)) for i in range(starts.shape[0]))
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
    return Equilibria(points=tuple(points), labels=labels, runs=runs, distinct_tol=distinct_tol)
