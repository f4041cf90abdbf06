r"""Projected descent with a non-diagonal scaling: Bertsekas' two-metric projection
(Bertsekas 1982, "Projected Newton methods for optimization problems with simple
constraints", SIAM J. Control Optim. 20(2)).

Projecting $U - \alpha M^{-1}\nabla E^N$ onto the box is a descent method only when
$M$ is diagonal: a full matrix can turn a step that the box cuts short into an
ascent. The two-metric method scales differently on two sets. With the
$\varepsilon$-active set

$$A = \{i : \ell_i \le U_i \le \ell_i + \varepsilon,\ \nabla_i E^N > 0\} \cup
      \{i : \upsilon_i - \varepsilon \le U_i \le \upsilon_i,\ \nabla_i E^N < 0\},
  \qquad \varepsilon = \min(\varepsilon_0, \|U - P_B(U - D_0)\|_\infty),$$

($D_0$ the diagonal direction $\nabla E^N / d$, below) the direction is
$D_A = \nabla_A E^N / d_A$ (a diagonal scaling $d$: the Hamiltonian metric's $h$,
or the metric's own diagonal) and, on the free set $F$, $D_F = M_F^{-1}\nabla_F E^N$:
the Newton metric's $(\nabla^2_{FF} E^N + \mu I)^{-1}$ by CG on the free block's
Hessian-vector products, or L-BFGS's two-loop recursion applied to the masked
gradient (the free block of its inverse-Hessian approximation, which is positive
definite). The step is $U(\alpha) = P_B(U - \alpha D)$, with a fixed $\alpha$ or
Armijo's rule along the projection arc,

$$E^N(U) - E^N(U(\alpha)) \ge c_1\Big(\alpha\sum_{i\in F}\nabla_i E^N D_i
   + \sum_{i\in A}\nabla_i E^N\,(U_i - U_i(\alpha))\Big).$$

Every limit point is stationary; near a non-degenerate solution $A$ settles on its
active set and the iteration is the unconstrained method on the free set (Newton:
quadratic convergence; Bertsekas 1982, Propositions 2 and 4).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jaxtyping import Array

from . import _box as box
from ._metrics import AbstractDiagonalMetric, DiagonalHessian, MetricSolve, Newton
from ._steps import LBFGS, Armijo, Constant, HamiltonianStep, StepUpdate, backtrack


#: $\varepsilon_0$ of the $\varepsilon$-active set, relative to the box's width
#: (absolute where a side is infinite).
EPSILON = 1e-3


def supported(metric: Any, rule: Any) -> str | None:
    """None when projected descent handles this metric and rule, else the reason."""
    diagonal = isinstance(metric, AbstractDiagonalMetric | DiagonalHessian)
    if not (diagonal or isinstance(metric, Newton)):
        return (
            f"`metric`: with control bounds descend needs a diagonal metric (identity, "
            f"hamiltonian, diagonal, diagonal-hessian) or 'newton' (two-metric "
            f"projection); got {metric.name!r}."
        )
    if not isinstance(rule, Constant | HamiltonianStep | Armijo | LBFGS):
        return (
            "`step`: with control bounds descend takes a constant step, 'hamiltonian', "
            f"'armijo' or 'lbfgs'; got {rule!r}."
        )
    if isinstance(rule, LBFGS) and not diagonal:
        return (
            "`metric`: with control bounds L-BFGS starts from a diagonal metric "
            f"(identity, hamiltonian, diagonal, diagonal-hessian); got {metric.name!r}."
        )
    return None


def exact_projection(metric: Any, rule: Any) -> bool:
    """A diagonal metric with a fixed step: plain projected descent
    $P_B(U - \\alpha M^{-1}\\nabla E^N)$ (the two-metric direction is the same there)."""
    return isinstance(metric, AbstractDiagonalMetric | DiagonalHessian) and isinstance(
        rule, Constant | HamiltonianStep
    )


def _diagonal(sh: Any, metric: Any) -> Array:
    if isinstance(metric, AbstractDiagonalMetric):  # a prepared diagonal-hessian too
        return metric.diagonal(sh)
    return jnp.broadcast_to(sh.steps[:, None], sh.control_shape)  # Hamiltonian's h


def free_set(U: Array, g: Array, d: Array, lower: Array, upper: Array) -> Array:
    """The complement of the $\\varepsilon$-active set (True where free)."""
    width = jnp.where(jnp.isfinite(upper - lower), upper - lower, 1.0)
    w = jnp.max(jnp.abs(box.projected_residual(U, g / d, lower, upper)))
    eps = jnp.minimum(EPSILON * width, w)
    active = ((U <= lower + eps) & (g > 0)) | ((U >= upper - eps) & (g < 0))
    return ~active


def _arc_armijo(sh, U, value, g, D, free, alpha0, beta, c1, max_backtracks):
    """Armijo's rule along the projection arc (the module's formula); no acceptable
    step within `max_backtracks`: do not move."""
    lower, upper = sh.bounds
    slope = jnp.sum(jnp.where(free, g * D, 0.0))

    def point(alpha):
        return box.project(U - alpha * D, lower, upper)

    def required(alpha):
        return c1 * (alpha * slope + jnp.sum(jnp.where(free, 0.0, g * (U - point(alpha)))))

    alpha0 = jnp.asarray(alpha0, dtype=U.dtype)
    return backtrack(
        lambda alpha: type(sh).objective(sh, point(alpha)), required, value, alpha0, beta,
        max_backtracks,
    )  # fmt: skip


def update(sh: Any, metric: Any, rule: Any, U: Array, value: Array, g: Array, state: Any):
    """One two-metric projected step: a [`StepUpdate`][flow.StepUpdate] whose `U` is
    already in the box."""
    lower, upper = sh.bounds
    d = _diagonal(sh, metric)
    free = free_set(U, g, d, lower, upper)
    g_free = jnp.where(free, g, 0.0)
    if isinstance(metric, Newton):

        def hvp(V):  # the free block, and the identity on the active set
            W = jnp.where(free, V, 0.0)
            return jnp.where(free, sh.hessian_vector_product(U, W), V)

        def direction(G):
            return metric.solve_with(hvp, jnp.where(free, G, 0.0))

    else:

        def direction(G):
            return MetricSolve(G / d, jnp.array(True), jnp.array(0))

    if isinstance(rule, LBFGS):
        memory = rule.remember(U, g, state)
        r, ok, num_hvp = rule.two_loop(g_free, direction, memory)
        r = jnp.where(free, r, 0.0)
        descent = jnp.vdot(g_free, r) > 0
        D_free = jnp.where(descent, r, g_free / d)
        state = rule.next_state(U, g, memory, descent)
    else:
        solved = direction(g_free)
        D_free, ok, num_hvp = jnp.where(free, solved.direction, 0.0), solved.ok, solved.num_hvp
    D = jnp.where(free, D_free, g / d)
    if isinstance(rule, Armijo | LBFGS):
        alpha0 = rule.alpha0 if isinstance(rule, Armijo) else 1.0
        alpha, found, trials = _arc_armijo(
            sh, U, value, g, D, free, alpha0, rule.beta, rule.c1, rule.max_backtracks
        )
        ok = ok & found
    elif isinstance(rule, HamiltonianStep):
        alpha = jnp.asarray(rule.c, U.dtype) / sh.steps[:, None]
        trials = jnp.array(0)
    else:
        alpha, trials = jnp.asarray(rule.alpha, U.dtype), jnp.array(0)
    U_new = box.project(U - alpha * D, lower, upper)
    return StepUpdate(U_new, jnp.max(alpha), ok, num_hvp, trials, state)
