r"""The projected gradient flow of a bounded problem: the field with the active
components held, the events where the active set changes, and the switch.

On the box $B = \{\ell \le U \le \upsilon\}$ the flow is
$dU/d\tau = P_{T_B(U)}(-M^{-1}\nabla E^N(U))$: for a diagonal metric $M$ the
tangent-cone projection acts componentwise, zeroing a component that sits on its
bound and points out of the box. Between two changes of the active set $A$ the flow
is the smooth ODE $dU_F/d\tau = -(M^{-1}\nabla E^N)_F$, $dU_A/d\tau = 0$, which
diffrax integrates; the changes are events:

- **hit**: a free component reaches its bound, $\min_{i \in F} \min(U_i - \ell_i,
  \upsilon_i - U_i)$ falls to 0;
- **release**: an active component's multiplier changes sign (its force turns
  inward), $\max_{i \in A} s_i(-\nabla_i E^N)$ rises through 0, where $s_i = +1$ at
  a lower bound and $-1$ at an upper one;
- **violation** (a safeguard): a free component is found beyond its bound at the end
  of a step (a release whose force turned back within one step).

Hits and releases are located by bisection on diffrax's dense interpolant
([`SWITCH_RTOL`][flow._flow_switching.SWITCH_RTOL]); at the switch the newly active
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


def _distance(U, lower, upper):
    return jnp.minimum(U - lower, upper - U)


def _inward(g, active):
    r"""$s_i(-\nabla_i E^N)$ on the active set, $-\infty$ on the free set."""
    return jnp.where(active == box.AT_LOWER, -g, jnp.where(active == box.AT_UPPER, g, -jnp.inf))


def events(sh: Any, active: Array, grad: Any) -> tuple[list[Any], list[bool | None]]:
    """The three switching conditions (hit, release, violation) of one segment, and
    their diffrax directions."""
    lower, upper = sh.bounds
    free = active == box.FREE

    def hit(t, y, args, **kwargs):
        del t, args, kwargs
        d = jnp.min(jnp.where(free, _distance(y, lower, upper), jnp.inf))
        return jnp.where(jnp.isfinite(d), d, 1.0)

    def release(t, y, args, **kwargs):
        del t, args, kwargs
        c = jnp.max(_inward(grad(sh, y), active))
        return jnp.where(jnp.isfinite(c), c, -1.0)

    def violation(t, y, args, **kwargs):
        del t, args, kwargs
        slack = 1e-12 * (1.0 + jnp.abs(y))
        return jnp.any(free & ((y < lower - slack) | (y > upper + slack)))

    # hit: a down-crossing; release: an up-crossing; violation: boolean
    return [hit, release, violation], [False, True, None]


@eqx.filter_jit
def switch(sh: Any, U: Array, active: Array, hit: Array, released: Array):
    """The active set after a segment that ended on an event, and the start of the
    next segment.

    A hit activates the free component nearest its bound (and any other within
    rounding of it, or beyond it); a release frees the active component with the
    largest inward force (and any other whose force points inward). Choosing the
    extremal component, whatever the sign its value has at the located time, makes
    every switch change the set, so the next segment cannot stop at once on the same
    crossing."""
    lower, upper = sh.bounds
    g = jax.grad(type(sh).objective, argnums=1)(sh, U)
    free = active == box.FREE
    d = jnp.where(free, _distance(U, lower, upper), jnp.inf)
    scale = 1e-10 * (1.0 + jnp.abs(U))
    nearest = jnp.zeros(d.shape, bool).reshape(-1).at[jnp.argmin(d)].set(hit).reshape(d.shape)
    newly = free & ((d <= scale) | nearest)
    side = jnp.where(U - lower <= upper - U, box.AT_LOWER, box.AT_UPPER).astype(active.dtype)
    inward = _inward(g, active)
    first = jnp.zeros(d.shape, bool).reshape(-1).at[jnp.argmax(inward)].set(released)
    freed = (active != box.FREE) & ((inward > 0) | first.reshape(d.shape))
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
