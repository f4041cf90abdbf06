r"""The control law of the minimum principle on a box of control bounds,
$u(x, \lambda) = \arg\min_{\ell \le u \le \upsilon} H(\lambda, x, u)$, for
[`costate_shooting`][flow.indirect.costate_shooting]: Bertsekas' projected Newton
method with its almost-everywhere derivative, and a user's law clipped onto the box."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from ._problem import OptimalControlProblem


class BoxNewtonControl(eqx.Module):
    r"""$u(x, \lambda) = \arg\min_{\ell \le u \le \upsilon} H(\lambda, x, u)$ (the minimum
    principle on the box of `problem.control_bounds`) by Bertsekas' projected Newton
    method from `u_start` projected (at most `iterations` steps); NaN when it does not
    converge.

    A step from $u$ (in the box), with $g = \partial_u H$ and $Q = \partial_{uu}H$: the
    active set $A$ holds the components within $\epsilon = \min(10^{-3}, w)$ of a bound
    whose gradient points out of the box ($w = \|u - P(u - g / \mathrm{diag}\,Q)\|_\infty$
    the scaled first-order residual, $P$ the clip onto the box), $F$ the others; the
    direction is Newton's on $F$ and diagonally scaled on $A$,
    $p_F = Q_{FF}^{-1} g_F$, $p_A = g_A / Q_{AA}^{\mathrm{diag}}$, and
    $u \leftarrow P(u - t p)$ with the Armijo backtracking $t = 1, \tfrac12, \dots$ on
    $H$ itself (Bertsekas 1982, "Projected Newton methods for optimization problems
    with simple constraints"): it converges to the minimiser for a strictly convex $H$,
    puts the active components exactly on their bounds and is Newton's method on the
    free ones once the active set is found (one step for a quadratic $H$).

    The value returned is the converged $u^*$ corrected by one more step whose
    derivative is the implicit-function one on the free components,
    $du_F = -Q_{FF}^{-1}(\partial_{ux}H\,dx + \partial_{u\lambda}H\,d\lambda)_F$, and zero
    on the active ones (on a bound, with the gradient pointing out): the derivative of
    the box-constrained minimiser wherever the active set does not switch (almost
    everywhere)."""

    problem: OptimalControlProblem
    u_start: Array
    iterations: int = eqx.field(static=True, default=50)

    def _direction(self, u: Array, g: Array, Q: Array, eps: Array):
        """The free set (with the active set of components within `eps` of a bound
        whose gradient points out) and the projected Newton matrix: $Q_{FF}$ on the
        free block, the positive diagonal of $Q$ (1 where it is not) on the active one."""
        lo, hi = self.problem.control_bounds
        active = ((u <= lo + eps) & (g > 0)) | ((u >= hi - eps) & (g < 0))
        free = ~active
        d = jnp.diagonal(Q)
        d = jnp.where(d > 0, d, 1.0)
        J = jnp.where(free[:, None] & free[None, :], Q, 0.0) + jnp.diag(jnp.where(free, 0.0, d))
        return free, J

    def __call__(self, x: Array, lam: Array) -> Array:
        return _box_minimiser(self, x, lam)

    def minimise(self, x: Array, lam: Array) -> Array:
        r"""The box-constrained minimiser of $H(\lambda, x, \cdot)$, uncompiled (see the
        class docstring); `__call__` compiles it."""
        H = self.problem.hamiltonian
        Hu = jax.grad(H, argnums=2)
        Huu = jax.jacfwd(Hu, argnums=2)
        lo, hi = self.problem.control_bounds
        xs, ls = jax.lax.stop_gradient(x), jax.lax.stop_gradient(lam)

        def cond(c):
            _, j, err = c
            return (j < self.iterations) & (err > 0)

        def body(c):
            u, j, _ = c
            g, Q = Hu(ls, xs, u), Huu(ls, xs, u)
            d = jnp.diagonal(Q)
            w = jnp.max(jnp.abs(u - jnp.clip(u - g / jnp.where(d > 0, d, 1.0), lo, hi)))
            free, J = self._direction(u, g, Q, jnp.minimum(1e-3, w))
            p = jnp.linalg.solve(J, g)
            H0 = H(ls, xs, u)

            def trial(t):
                v = jnp.clip(u - t * p, lo, hi)
                decrease = t * jnp.sum(jnp.where(free, g * p, 0.0)) + jnp.sum(
                    jnp.where(free, 0.0, g * (u - v))
                )
                return v, H(ls, xs, v) <= H0 - 1e-4 * decrease

            def ls_cond(s):
                _, _, ok, k = s
                return (~ok) & (k < 40)

            def ls_body(s):
                t, _, _, k = s
                v, ok = trial(t)
                return 0.5 * t, v, ok, k + 1

            _, v, ok, _ = jax.lax.while_loop(
                ls_cond, ls_body, (jnp.array(1.0), u, jnp.array(False), jnp.array(0))
            )
            # no decrease at any t: at the minimiser to rounding (or H not convex);
            # the full step then decides, as plain Newton does
            u_new = jnp.where(ok, v, jnp.clip(u - p, lo, hi))
            step = jnp.abs(u_new - u)
            err = jnp.where(jnp.all(step <= 1e-14 * (1.0 + jnp.abs(u_new))), 0.0, jnp.max(step))
            err = jnp.where(jnp.all(jnp.isfinite(u_new)), err, 0.0)
            return u_new, j + 1, err

        u0 = jnp.clip(self.u_start, lo, hi)
        u_star, j, err = jax.lax.while_loop(cond, body, (u0, jnp.array(0), jnp.array(1.0)))
        ok = jnp.all(jnp.isfinite(u_star)) & (j < self.iterations)
        u_star = jax.lax.stop_gradient(jnp.where(ok, u_star, jnp.nan))
        # the last step with its derivative: Newton on the free components (the IFT),
        # the active ones held on their bounds (derivative zero)
        g = Hu(lam, x, u_star)
        free, J = self._direction(
            u_star, jax.lax.stop_gradient(g), Huu(ls, xs, u_star), jnp.array(0.0)
        )
        u_free = u_star - jnp.linalg.solve(jax.lax.stop_gradient(J), jnp.where(free, g, 0.0))
        u_free = jnp.where(u_free < lo, lo, jnp.where(u_free > hi, hi, u_free))
        # NaN (no convergence) stays NaN: the ODE solve then fails and says so
        return jnp.where(ok, jnp.where(free, u_free, u_star), jnp.nan)


# Compiled as one program: inside the canonical vector field it is inlined, and a
# trajectory's `controls` (evaluated eagerly) then compiles it once instead of its
# nested loops one by one (measured on the first call of `controls`: 2.6 s -> 1.1 s).
_box_minimiser = eqx.filter_jit(lambda control, x, lam: control.minimise(x, lam))


class ClippedControl(eqx.Module):
    """A user's control law clipped onto the box of the problem's control bounds."""

    law: Callable
    lower: Array
    upper: Array

    def __call__(self, x: Array, lam: Array) -> Array:
        return jnp.clip(self.law(x, lam), self.lower, self.upper)
