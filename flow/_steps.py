r"""Step rules for the discrete algorithm U_{i+1} = U_i - alpha_i M^{-1} grad E^N(U_i) (37).

A step rule is a pure `init` / `update` pair over an explicit state (optax-style),
so that [`descend`][flow.descend] runs it under `lax.while_loop` and it vmaps over
step sizes.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PyTree

from ._metrics import MetricSolve
from ._shooting import AbstractShooting
from ._validation import fraction, positive_float, positive_int


#: The metric's direction map G -> M^{-1} G at the current iterate.
Direction = Callable[[Array], MetricSolve]


class StepUpdate(NamedTuple):
    r"""What [`AbstractStepRule.update`][flow.AbstractStepRule.update] returns: the
    next iterate `U`, the step `alpha` taken, `ok` (False when the metric fell back
    or the line search found no acceptable step), the Hessian-vector products
    `num_hvp` and extra cost evaluations `num_cost` (line-search trials) it used, and
    the rule's new `state`."""

    U: Float[Array, "N m"]
    alpha: Float[Array, ""]
    ok: Bool[Array, ""]
    num_hvp: Int[Array, ""]
    num_cost: Int[Array, ""]
    state: PyTree


def _positive(name: str, value: Any) -> Any:
    """Validate a positive step parameter; return it as a 0-d float64 numpy array (a
    dynamic leaf under `eqx.filter_jit`, so that a new value does not recompile;
    numpy rather than jax, because a host-to-device `jnp.asarray` costs tens of
    microseconds per call, which showed in `descend`'s overhead at small N)."""
    if isinstance(value, jax.core.Tracer):
        return value
    return np.asarray(positive_float(value, name), dtype=np.float64)


class AbstractStepRule(eqx.Module):
    r"""A step rule: `update` returns the new iterate $U_{i+1}$ from $U_i$, $E^N(U_i)$,
    $\nabla E^N(U_i)$ and the metric's direction map $G \mapsto M^{-1} G$."""

    name: ClassVar[str]

    def init(self, shooting: AbstractShooting, U0: Array, g0: Array) -> PyTree:
        """The initial state (default: none)."""
        del shooting, U0, g0
        return None

    @abc.abstractmethod
    def update(
        self,
        shooting: AbstractShooting,
        U: Float[Array, "N m"],
        value: Float[Array, ""],
        grad: Float[Array, "N m"],
        direction: Direction,
        state: PyTree,
    ) -> StepUpdate:
        """The next iterate and what it cost (a [`StepUpdate`][flow.StepUpdate])."""


class Constant(AbstractStepRule):
    r"""A constant step: $U_{i+1} = U_i - \alpha M^{-1}\nabla E^N(U_i)$: exactly
    forward Euler with step $\alpha$ on the gradient flow (50)."""

    name: ClassVar[str] = "constant"
    alpha: Float[Array, ""] | Float[np.ndarray, ""] | float

    def __init__(self, alpha: Any):
        self.alpha = _positive("alpha", alpha)

    def update(self, shooting, U, value, grad, direction, state):
        d = direction(grad)
        alpha = jnp.asarray(self.alpha, dtype=U.dtype)
        return StepUpdate(U - alpha * d.direction, alpha, d.ok, d.num_hvp, jnp.array(0), state)


class HamiltonianStep(AbstractStepRule):
    r"""The paper's remedy $\alpha h = 1$ (section 6.2, eq. (56)): $\alpha = c/h$.

    On a uniform grid, $U_{i+1} = U_i - (c/h) M^{-1}\nabla E^N = U_i - c\,M^{-1}
    h\,\partial H/\partial U$: with the identity metric this is a step $c$ on the
    indirect method's update. On a non-uniform grid the step is taken per interval,
    $\alpha_k = c/h_k$ (the identity metric then equals the Hamiltonian metric with
    step $c$); the recorded scalar step is $c / \min_k h_k$.
    """

    name: ClassVar[str] = "hamiltonian"
    c: Float[Array, ""] | Float[np.ndarray, ""] | float = 1.0

    def __init__(self, c: Any = 1.0):
        self.c = _positive("c", c)

    def update(self, shooting, U, value, grad, direction, state):
        d = direction(grad)
        c = jnp.asarray(self.c, dtype=U.dtype)
        alpha_k = c / shooting.steps[:, None]
        return StepUpdate(
            U - alpha_k * d.direction, jnp.max(alpha_k), d.ok, d.num_hvp, jnp.array(0), state
        )


def _check_line_search(rule: Any) -> None:
    """The backtracking parameters `Armijo` and `LBFGS` share."""
    fraction(rule.beta, "beta")
    fraction(rule.c1, "c1")
    positive_int(rule.max_backtracks, "max_backtracks")


def _armijo(shooting, U, value, grad, D, alpha0, beta, c1, max_backtracks):
    """Backtracking: the largest alpha0 * beta^j with
    E(U - alpha D) <= E(U) - c1 alpha <grad, D> (non-finite trial costs rejected)."""
    slope = jnp.vdot(grad, D)
    return backtrack(
        lambda alpha: shooting.objective(U - alpha * D),
        lambda alpha: c1 * alpha * slope,
        value,
        jnp.asarray(alpha0, dtype=U.dtype),
        beta,
        max_backtracks,
    )


def backtrack(cost_at, required, value, alpha0, beta, max_backtracks):
    """The line search's loop: the largest `alpha0 * beta^j` (j < `max_backtracks`)
    whose trial cost `cost_at(alpha)` is finite and at most `value - required(alpha)`
    (Armijo's sufficient decrease, of whatever form the caller's step takes);
    returns `(alpha, found, trials)`, with alpha = 0 (do not move) when none is."""

    def accepted(alpha, c):
        return jnp.isfinite(c) & (c <= value - required(alpha))

    def cond(carry):
        j, alpha, c = carry
        return (j < max_backtracks) & ~accepted(alpha, c)

    def body(carry):
        j, alpha, _ = carry
        alpha = alpha * beta
        return j + 1, alpha, cost_at(alpha)

    j, alpha, c = jax.lax.while_loop(cond, body, (jnp.array(0), alpha0, cost_at(alpha0)))
    found = accepted(alpha, c)
    # no acceptable step (e.g. at the cost's rounding floor): do not move
    return jnp.where(found, alpha, 0.0), found, j + 1


class Armijo(AbstractStepRule):
    r"""Backtracking line search (Armijo): $\alpha = \alpha_0\beta^j$ with the smallest
    $j \le$ `max_backtracks` such that
    $E^N(U - \alpha D) \le E^N(U) - c_1\alpha\,\nabla E^N \cdot D$, $D = M^{-1}\nabla E^N$.
    If no trial is accepted the iterate does not move and the step is reported
    as a fallback step. Near a minimiser the decrease a line search must verify,
    $\sim \nabla E^N\cdot D$, falls below the cost's rounding $\epsilon|E^N|$, so
    line searches stall at a residual floor; use a constant step or Newton for
    residuals near rounding.

    **Raises:** `ValueError` naming the parameter for `alpha0` not finite and
    positive, `beta` or `c1` outside the open interval (0, 1), or `max_backtracks`
    < 1; `TypeError` for a value that is not a number (or, for `max_backtracks`, not
    an integer)."""

    name: ClassVar[str] = "armijo"
    alpha0: float = 1.0
    beta: float = 0.5
    c1: float = 1e-4
    max_backtracks: int = 40

    def __check_init__(self):
        positive_float(self.alpha0, "alpha0")
        _check_line_search(self)

    def update(self, shooting, U, value, grad, direction, state):
        d = direction(grad)
        D = d.direction
        alpha, found, trials = _armijo(
            shooting, U, value, grad, D, self.alpha0, self.beta, self.c1, self.max_backtracks
        )
        return StepUpdate(U - alpha * D, alpha, d.ok & found, d.num_hvp, trials, state)


class LBFGS(AbstractStepRule):
    r"""Limited-memory BFGS (the paper's quasi-Newton choice of M), with an Armijo
    line search from $\alpha = 1$.

    The inverse-Hessian approximation is built by the two-loop recursion from the
    last `memory` pairs $s_i = U_{i+1} - U_i$, $y_i = \nabla E^N_{i+1} - \nabla E^N_i$,
    starting from $H_0 = \gamma M^{-1}$ with the metric of `descend` and
    $\gamma = s^T y / (y^T M^{-1} y)$: with the Hamiltonian metric the
    quasi-Newton iteration inherits its mesh independence. Pairs with
    $s^T y \le 10^{-12}\|s\|\|y\|$ are skipped; a non-descent direction resets to
    $M^{-1}\nabla E^N$.

    **Raises:** `ValueError` naming the parameter for `memory` or `max_backtracks`
    < 1, or `beta` or `c1` outside the open interval (0, 1); `TypeError` for a value
    of the wrong type.
    """

    name: ClassVar[str] = "lbfgs"
    memory: int = 10
    beta: float = 0.5
    c1: float = 1e-4
    max_backtracks: int = 40

    def __check_init__(self):
        positive_int(self.memory, "memory")
        _check_line_search(self)

    def init(self, shooting, U0, g0):
        k = self.memory
        zeros = jnp.zeros((k,) + U0.shape, U0.dtype)
        return dict(
            S=zeros,
            Y=zeros,
            rho=jnp.zeros((k,), U0.dtype),
            valid=jnp.zeros((k,), bool),
            head=jnp.array(0),
            U_prev=U0,
            g_prev=g0,
            started=jnp.array(False),
        )

    def update(self, shooting, U, value, grad, direction, state):
        memory = self.remember(U, grad, state)
        r, ok, num_hvp = self.two_loop(grad, direction, memory)
        d_g = direction(grad)
        descent = jnp.vdot(grad, r) > 0
        D = jnp.where(descent, r, d_g.direction)
        alpha, found, trials = _armijo(
            shooting, U, value, grad, D, 1.0, self.beta, self.c1, self.max_backtracks
        )
        new_state = self.next_state(U, grad, memory, descent)
        return StepUpdate(
            U - alpha * D, alpha, ok & d_g.ok & found, num_hvp + d_g.num_hvp, trials, new_state
        )

    def remember(self, U: Array, grad: Array, state: PyTree) -> PyTree:
        """The memory with the pair of the last step added (when its curvature
        $s^T y$ is positive enough)."""
        s = U - state["U_prev"]
        y = grad - state["g_prev"]
        sy = jnp.vdot(s, y)
        good = state["started"] & (sy > 1e-12 * jnp.sqrt(jnp.vdot(s, s) * jnp.vdot(y, y)))
        head = state["head"]
        S = jnp.where(good, state["S"].at[head].set(s), state["S"])
        Y = jnp.where(good, state["Y"].at[head].set(y), state["Y"])
        rho = jnp.where(
            good, state["rho"].at[head].set(1.0 / jnp.where(good, sy, 1.0)), state["rho"]
        )
        valid = jnp.where(good, state["valid"].at[head].set(True), state["valid"])
        new_head = jnp.where(good, (head + 1) % self.memory, head)
        return dict(S=S, Y=Y, rho=rho, valid=valid, head=new_head)

    def two_loop(self, q: Array, direction: Direction, memory: PyTree):
        r"""$H q$ by the two-loop recursion (newest pair first) from
        $H_0 = \gamma M^{-1}$; with whether the metric's solves were positive definite
        and their Hessian-vector products."""
        S, Y, rho, valid = memory["S"], memory["Y"], memory["rho"], memory["valid"]
        last = (memory["head"] - 1) % self.memory
        order = (last - jnp.arange(self.memory)) % self.memory

        def first(q, i):
            a = jnp.where(valid[i], rho[i] * jnp.vdot(S[i], q), 0.0)
            return q - a * Y[i], a

        q, alphas = jax.lax.scan(first, q, order)
        y_last = Y[last]
        d_y = direction(y_last)
        gamma = jnp.where(
            valid[last], jnp.vdot(S[last], y_last) / jnp.vdot(y_last, d_y.direction), 1.0
        )
        d_q = direction(q)
        r = gamma * d_q.direction

        def second(r, ia):
            i, a = ia
            b = jnp.where(valid[i], rho[i] * jnp.vdot(Y[i], r), 0.0)
            return r + jnp.where(valid[i], a - b, 0.0) * S[i], None

        r, _ = jax.lax.scan(second, r, (order[::-1], alphas[::-1]))
        return r, d_q.ok & d_y.ok, d_q.num_hvp + d_y.num_hvp

    def next_state(self, U: Array, grad: Array, memory: PyTree, descent: Array) -> PyTree:
        """The state after a step from `U`; a non-descent direction clears the memory."""
        S, Y, rho = memory["S"], memory["Y"], memory["rho"]
        return dict(
            S=jnp.where(descent, S, jnp.zeros_like(S)),
            Y=jnp.where(descent, Y, jnp.zeros_like(Y)),
            rho=jnp.where(descent, rho, jnp.zeros_like(rho)),
            valid=memory["valid"] & descent,
            head=memory["head"],
            U_prev=U,
            g_prev=grad,
            started=jnp.array(True),
        )


def step_rule(step: float | ArrayLike | str | AbstractStepRule) -> AbstractStepRule:
    """A number -> [`Constant`][]; `"hamiltonian"` -> [`HamiltonianStep`][]();
    `"armijo"` -> [`Armijo`][](); `"lbfgs"` -> [`LBFGS`][](); a rule -> itself."""
    if isinstance(step, AbstractStepRule):
        return step
    if isinstance(step, str):
        rules = {"hamiltonian": HamiltonianStep, "armijo": Armijo, "lbfgs": LBFGS}
        try:
            return rules[step.lower()]()
        except KeyError:
            raise ValueError(
                f"`step` must be a positive number, a step rule, or one of {sorted(rules)}; "
                f"got {step!r}."
            ) from None
    if isinstance(step, bool):
        raise TypeError(f"`step` must be a positive number or a step rule; got {step!r}.")
    return Constant(step)
