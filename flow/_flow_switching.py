r"""The projected gradient flow of a bounded problem: the field with the active
components held, the events where the active set changes, and the switch.

On the box $B = \{\ell \le U \le \upsilon\}$ the flow is
$dU/d\tau = P_{T_B(U)}(-M^{-1}\nabla E^N(U))$: for a diagonal metric $M$ the
tangent-cone projection acts componentwise, zeroing a component that sits on its
bound and points out of the box. Between two changes of the active set $A$ the flow
is the smooth ODE $dU_F/d\tau = -(M^{-1}\nabla E^N)_F$, $dU_A/d\tau = 0$, which
diffrax integrates; the changes are events of one real condition, the least of

- the **hit** values $\max(d_i, v_i)$ of the free components, with $d_i$ the distance
  to the nearer bound and $v_i$ the force's component into the box: it falls through
  0 when a component moving outwards reaches its bound (a component on its bound
  that moves inwards, released a moment ago, is positive);
- the **release** values $-v_i$ of the active components: it falls through 0 when a
  multiplier changes sign (the force turns inward);

over the components whose value is positive at the segment's start, and a boolean
**violation** safeguard (a free component found beyond its bound at the end of a
step).

The switch is located by bisection on diffrax's dense interpolant
(relative tolerance `SWITCH_RTOL` = 1e-12 in tau); at the switch the newly active
components are put exactly on their bounds (the clip), and the next segment starts
there.
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array

from . import _box as box


#: Relative and absolute tolerance of the bisection that locates a switch in tau.
SWITCH_RTOL = 1e-12
SWITCH_ATOL = 1e-14

#: The most active-set changes one flow may make before it stops as `max_steps`
#: with a chattering diagnosis.
MAX_SWITCHES = 2000


class _BisectionState(eqx.Module):
    lower: Array
    upper: Array
    flip: Array


class EventBisection(optx.AbstractRootFinder):
    r"""Bisection in $\tau$ for diffrax's event root find, whose function returns one
    value per condition (zero for those that did not trigger, the distance to the
    step's end for a boolean one): their sum is the triggered condition's value.
    `optx.Bisection` takes a scalar function only, and checks the bracket with an
    error that a boolean trigger (a value of 0 at the step's end) would raise. Stops
    when the bracket is below `atol + rtol |tau|`."""

    rtol: float
    atol: float
    norm: ClassVar[Any] = jnp.abs

    def _value(self, fn, t, args):
        out, aux = fn(t, args)
        return sum(jnp.asarray(v, t.dtype) for v in jax.tree_util.tree_leaves(out)), aux

    def init(self, fn, y, args, options, f_struct, aux_struct, tags):
        del f_struct, aux_struct, tags
        lower = jnp.asarray(options["lower"], jnp.result_type(y))
        upper = jnp.asarray(options["upper"], jnp.result_type(y))
        f_lower, _ = self._value(fn, lower, args)
        f_upper, _ = self._value(fn, upper, args)
        return _BisectionState(lower=lower, upper=upper, flip=f_lower > f_upper)

    def step(self, fn, y, args, options, state, tags):
        del options, tags
        f, aux = self._value(fn, y, args)
        below = state.flip ^ (f < 0)
        lower = jnp.where(below, y, state.lower)
        upper = jnp.where(below, state.upper, y)
        return lower + 0.5 * (upper - lower), _BisectionState(lower, upper, state.flip), aux

    def terminate(self, fn, y, args, options, state, tags):
        del fn, args, options, tags
        done = jnp.abs(state.upper - state.lower) < self.atol + self.rtol * jnp.abs(y)
        return done, optx.RESULTS.successful

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        del fn, args, options, tags, result
        # the end of the bracket where the triggered condition has crossed
        return state.upper, aux, {}


ROOT_FINDER = EventBisection(rtol=SWITCH_RTOL, atol=SWITCH_ATOL)


def held(field: Array, active: Array) -> Array:
    """The field with the active components held (zero)."""
    return jnp.where(active != box.FREE, 0.0, field)


def residual(U: Array, g: Array, lower: Array, upper: Array, h: Array | None) -> Array:
    r"""The projected residual $\max|U - P_B(U - g)|$, or its Hamiltonian form with
    $g/h$ (the residuals of projected descent)."""
    G = g if h is None else g / h
    return jnp.max(jnp.abs(box.projected_residual(U, G, lower, upper)))


def _values(sh: Any, U: Array, active: Array, g: Array):
    r"""Per component: the hit value $\max(d_i, v_i)$ on the free set ($d_i$ the
    distance to the nearer bound, $v_i$ the force's component into the box) and the
    release value $-v_i$ on the active set ($+\infty$ elsewhere); with $d$, $v$ and
    the side of the nearer bound."""
    lower, upper = sh.bounds
    free = active == box.FREE
    at_lower = jnp.where(free, U - lower <= upper - U, active == box.AT_LOWER)
    distance = jnp.where(at_lower, U - lower, upper - U)
    inward = jnp.where(at_lower, -g, g)  # the force's component into the box
    hit = jnp.where(free, jnp.maximum(distance, inward), jnp.inf)
    release = jnp.where(free, jnp.inf, -inward)
    return hit, release, distance, inward, at_lower


def events(
    sh: Any, active: Array, grad: Any, U_start: Array
) -> tuple[list[Any], list[bool | None]]:
    """The switching condition of one segment (real, down-crossing) and the violation
    safeguard (boolean), with their diffrax directions.

    The condition is the least hit or release value over the components whose value
    is positive at the segment's start; one that starts at zero (a degenerate
    component: on its bound with a zero force) would hold the minimum at zero, where
    no down-crossing can be seen, and is left to the next switch (and, if free, to
    the violation safeguard)."""
    lower, upper = sh.bounds
    free = active == box.FREE
    hit0, release0, *_ = _values(sh, U_start, active, grad(sh, U_start))
    watched = jnp.where(free, hit0 > 0, release0 > 0)

    def switching(t, y, args, **kwargs):
        del t, args, kwargs
        hit, release, *_ = _values(sh, y, active, grad(sh, y))
        c = jnp.min(jnp.where(watched, jnp.minimum(hit, release), jnp.inf))
        return jnp.where(jnp.isfinite(c), c, 1.0)

    def violation(t, y, args, **kwargs):
        del t, args, kwargs
        slack = 1e-12 * (1.0 + jnp.abs(y))
        return jnp.any(free & ((y < lower - slack) | (y > upper + slack)))

    return [switching, violation], [False, None]


@eqx.filter_jit
def switch(sh: Any, U: Array, active: Array):
    """The active set after a segment that ended on an event, and the start of the
    next segment.

    The event is the smaller of the two values at the located time. A hit activates
    the free component with the smallest hit value (and any other within rounding of
    its bound whose force points out of the box, or beyond it); a release frees the
    active component with the smallest release value (and any other whose force now
    points inward). Choosing the extremal component, whatever the sign of its value
    at the located time, makes every switch change the set, so the next segment
    cannot stop at once on the same crossing."""
    lower, upper = sh.bounds
    g = jax.grad(type(sh).objective, argnums=1)(sh, U)
    free = active == box.FREE
    hit, release, distance, inward, at_lower = _values(sh, U, active, g)
    is_hit = jnp.min(hit) <= jnp.min(release)

    def one(values, on):
        flat = jnp.zeros(values.size, bool).at[jnp.argmin(values)].set(on)
        return flat.reshape(values.shape)

    scale = 1e-10 * (1.0 + jnp.abs(U))
    newly = free & (((distance <= scale) & (inward <= 0)) | (distance < 0) | one(hit, is_hit))
    freed = ~free & ((release < 0) | one(release, ~is_hit))
    side = jnp.where(at_lower, box.AT_LOWER, box.AT_UPPER).astype(active.dtype)
    new_active = jnp.where(newly, side, jnp.where(freed, box.FREE, active))
    U_new = jnp.where(
        new_active == box.AT_LOWER, lower, jnp.where(new_active == box.AT_UPPER, upper, U)
    )
    return U_new, new_active


@eqx.filter_jit
def initial(sh: Any, U0: Array):
    r"""$P_B(U_0)$ and its active set: the components on a bound whose force
    $-\nabla_i E^N$ points out of the box."""
    lower, upper = sh.bounds
    U = box.project(U0, lower, upper)
    g = jax.grad(type(sh).objective, argnums=1)(sh, U)
    at = box.active_set(U, lower, upper)
    outward = ((at == box.AT_LOWER) & (g >= 0)) | ((at == box.AT_UPPER) & (g <= 0))
    return U, jnp.where(outward, at, box.FREE).astype(jnp.int8)
