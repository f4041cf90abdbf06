r"""The bounded equilibrium: projected Newton-CG on the box of the control bounds
(Bertsekas 1982), as one compiled kernel, and the active set, multipliers and
degenerate components of its end point. Used by
[`stability.equilibrium`][stability.equilibrium] when the shooting has bounds."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from flow import Shooting, bounds, solvers


#: Bertsekas' bar-epsilon: components within min(this, residual) of a bound, with the
#: gradient pushing outwards, are treated as active in the next step.
_EPS_ACTIVE = 1e-2
#: Armijo's sufficient-decrease fraction and the most halvings of the step.
_ARMIJO, _HALVINGS = 1e-4, 40


def _projected_newton(sh, U0, tol, on_hamiltonian, radius0, max_steps, max_cg):
    """Projected Newton-CG on the box (Bertsekas 1982, "Projected Newton methods for
    optimization problems with simple constraints", SIAM J. Control Optim. 20(2)), and
    the residuals, active set and multipliers of its end point, in one program.
    `radius0` is unused (the options are those of the trust-region kernel)."""
    del radius0
    lower, upper = sh.bounds
    steps = sh.steps[:, None]
    weight = jnp.where(on_hamiltonian, 1.0 / steps, jnp.ones_like(steps))
    value_and_grad = jax.value_and_grad(type(sh).objective, argnums=1)
    U0 = bounds.project(U0, lower, upper)
    f0, g0 = value_and_grad(sh, U0)
    eps = jnp.finfo(U0.dtype).eps
    finite0 = jnp.isfinite(f0) & jnp.all(jnp.isfinite(g0))

    def residual(U, g):
        return jnp.max(jnp.abs(bounds.projected_residual(U, weight * g, lower, upper)))

    # carry: U, f, g, the projected residual, iterations, n_hvp, n_rejected, stalled
    r0 = residual(U0, g0)
    init = (U0, f0, g0, r0, jnp.array(0), jnp.array(0), jnp.array(0), jnp.array(False))

    def cond(s):
        _, _, _, r, it, _, _, stalled = s
        return finite0 & (it < max_steps) & (r > tol) & ~stalled

    def body(s):
        U, f, g, r, it, n_hvp, n_rej, _ = s
        near = jnp.minimum(_EPS_ACTIVE, r)
        active = ((U <= lower + near) & (g > 0)) | ((U >= upper - near) & (g < 0))
        free = jnp.where(active, 0.0, 1.0)
        g_free = free * g
        g_norm = jnp.linalg.norm(g_free)
        # Newton on the free set: CG on the free block of the Hessian (Hessian-vector
        # products of the masked direction, masked), stopped at negative curvature
        cg = solvers.truncated_cg(
            lambda V: free * sh.hessian_vector_product(U, free * V),
            -g_free,
            atol=jnp.minimum(0.5, jnp.sqrt(g_norm)) * g_norm,
            max_steps=max_cg,
            stop=lambda res: jnp.max(jnp.abs(res * weight)) <= 0.1 * tol,
        )
        d_free = jnp.where(jnp.vdot(g_free, cg.x) < 0, cg.x, -free * weight * g)
        # the active set: the (scaled) gradient, which the projection clips
        d = d_free - (1.0 - free) * weight * g
        slope = -jnp.vdot(g_free, d_free)  # > 0 unless the free gradient is 0

        def trial(alpha):
            Ut = bounds.project(U + alpha * d, lower, upper)
            ft, gt = value_and_grad(sh, Ut)
            required = _ARMIJO * (alpha * slope + jnp.vdot((1.0 - free) * g, U - Ut))
            finite = jnp.isfinite(ft) & jnp.all(jnp.isfinite(gt))
            # near convergence the decrease is below the rounding of f: judge the step
            # by the projected residual instead
            rounding = required <= 100 * eps * jnp.maximum(jnp.abs(f), 1e-300)
            rt = residual(Ut, gt)
            ok = jnp.where(rounding, rt < r, f - ft >= required)
            return Ut, ft, gt, rt, finite & ok

        def search_cond(c):
            k, *_, ok = c
            return ~ok & (k < _HALVINGS)

        def search_body(c):
            k = c[0]
            return (k + 1, *trial(0.5**k))

        k, Ut, ft, gt, rt, ok = jax.lax.while_loop(
            search_cond, search_body, (jnp.array(0), U, f, g, r, jnp.array(False))
        )
        return (
            jnp.where(ok, Ut, U),
            jnp.where(ok, ft, f),
            jnp.where(ok, gt, g),
            jnp.where(ok, rt, r),
            it + 1,
            n_hvp + cg.num_steps,
            n_rej + k - jnp.where(ok, 1, 0),
            ~ok,
        )

    U, f, g, r, it, n_hvp, n_rej, stalled = jax.lax.while_loop(cond, body, init)
    status = jnp.where(~finite0, 3, jnp.where(r <= tol, 0, jnp.where(stalled, 2, 1)))
    if isinstance(sh, Shooting):
        dH = sh.hamiltonian_gradient(U)
    else:  # the discrete Hamiltonian gradient, grad E^N / h_k
        dH = g / steps
    residuals = jnp.stack(
        [
            jnp.max(jnp.abs(bounds.projected_residual(U, g, lower, upper))),
            jnp.max(jnp.abs(bounds.projected_residual(U, dH, lower, upper))),
        ]
    )
    return U, f, g, it, n_hvp, n_rej, status, residuals


solve_bounded = eqx.filter_jit(_projected_newton)
solve_bounded_batch = eqx.filter_jit(
    eqx.filter_vmap(_projected_newton, in_axes=(None, 0, None, None, None, None, None))
)


def bound_arrays(shooting, tol, stop_on, U, g) -> dict[str, Any]:
    """The active set, multipliers and degenerate components of a bounded end point."""
    lower, upper = (np.asarray(b) for b in shooting.bounds)
    U_np, g_np = np.asarray(U), np.asarray(g)
    active = np.asarray(bounds.active_set(U_np, lower, upper))
    nu = np.asarray(bounds.multipliers(g_np, active))
    scale = 1.0 / np.asarray(shooting.steps)[:, None] if stop_on == "hamiltonian" else 1.0
    weak = (active != bounds.FREE) & (np.abs(nu * scale) <= 10 * tol)
    close = (active == bounds.FREE) & (np.minimum(U_np - lower, upper - U_np) <= 10 * tol)
    return dict(active_set=active, multipliers=jax.device_put(nu), degenerate=weak | close)
