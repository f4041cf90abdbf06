r"""Cycles of descent: the test `flow.descend` runs to recognise that its iterates
settled on a periodic orbit (period 2 or 4) instead of a fixed point, and the
orbit's half-width. Past forward Euler's bound the fixed point loses stability in a
flip, and a stable cycle is what a supercritical flip leaves behind
(`stability.flip`).

The test runs every `CHECK_EVERY` iterations, not every one, between two loops:
`descend` runs its steps in blocks that end at the test iterations, so the test's
reductions are not in the step loop. Measured at N = 10^4 (`scalar_regularized`,
1000 steps): run every iteration with a ring of the last four iterates, the test
doubled the time per iteration; inside the step loop as a `lax.cond`, 15-20 %; after
blocks of 8, 15 % (four separate max-reductions, about 40 us each here); one fused
reduction after blocks of 16, a few per cent. The steps keep `U_{j-2}`, `U_{j-3}`, `U_{j-4}` for the
next test `j` as three snapshots (`U_{j-1}` and `U_j` are the loop's own)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array


#: Iterations between two cycle tests of `descend` (at least 4).
CHECK_EVERY = 16


def init(U0: Array) -> Array:
    """The snapshots before the first step: (3, N, m)."""
    return jnp.broadcast_to(U0, (3,) + U0.shape)


def at_test(i: Array, max_steps: int) -> Array:
    """Whether iteration i is a test: (max_steps - i) mod `CHECK_EVERY` = 0, so that
    the last possible iteration is one."""
    return (max_steps - i) % CHECK_EVERY == 0


def keep(back: Array, i: Array, U_new: Array, max_steps: int) -> Array:
    """After step i (`U_new` = U_i): keep U_i in snapshot k - 2 when it is k = 2, 3, 4
    iterations before a test (a `lax.cond`: nothing is written otherwise)."""
    k = (max_steps - i) % CHECK_EVERY
    return jax.lax.cond(
        (k >= 2) & (k <= 4),
        lambda: jax.lax.dynamic_update_index_in_dim(back, U_new, k - 2, 0),
        lambda: back,
    )


def period(U: Array, U_prev: Array, back: Array, cycle_tol: float) -> Array:
    """At a test j (`U` = U_j, `U_prev` = U_{j-1}, `back` = U_{j-2}, U_{j-3}, U_{j-4}):
    the period of the cycle the iterates settled on, or 0 (see `_period`)."""
    return _period(U, U_prev, back[0], back[2], cycle_tol)


def points(U: Array, U_prev: Array, back: Array) -> Array:
    """The last four iterates at a test (newest first): U_j, U_{j-1}, U_{j-2},
    U_{j-3}."""
    return jnp.concatenate([U[None], U_prev[None], back[:2]])


def _period(U_new: Array, U: Array, U_prev: Array, U_back4: Array, cycle_tol: float) -> Array:
    """2 or 4 when U_i = U_new repeats with that period, else 0.

    Period p: max|U_i - U_{i-p}| <= cycle_tol * s, and the shorter recurrences stay
    apart, max|U_i - U_{i-q}| >= sqrt(cycle_tol) * s for q = 1 (and 2 when p = 4),
    with s = max(1, max|U_i|). For p = 2 the cycle must also have stopped shrinking:
    max|U_i - U_{i-1}| >= (1 - 100 cycle_tol) max|U_{i-1} - U_{i-2}| (an alternation
    converging to the fixed point with a multiplier near -1 shrinks by |multiplier|
    every step)."""
    # one reduction over the five (a max-reduction is ~40 us at N = 10^4 on a CPU)
    terms = jnp.stack([U_new, U_new - U, U - U_prev, U_new - U_prev, U_new - U_back4])
    norm, d1, d1_prev, d2, d4 = jnp.max(jnp.abs(terms), axis=tuple(range(1, terms.ndim)))
    s = jnp.maximum(1.0, norm)
    close, apart = cycle_tol * s, math.sqrt(cycle_tol) * s
    steady = d1 >= (1.0 - 100.0 * cycle_tol) * d1_prev
    two = (d2 <= close) & (d1 >= apart) & steady
    four = (d4 <= close) & (d1 >= apart) & (d2 >= apart)
    return jnp.where(two, 2, jnp.where(four, 4, 0))


def amplitude(cycle: Array, period: Array) -> Array:
    """max_{j<p} max|U_{n-j} - mean| over the cycle's p points (0 without a cycle)."""
    used = (jnp.arange(4) < period).reshape((4,) + (1,) * (cycle.ndim - 1))
    count = jnp.maximum(period, 1)
    mean = jnp.sum(jnp.where(used, cycle, 0.0), axis=0) / count
    spread = jnp.where(used, jnp.abs(cycle - mean[None]), 0.0)
    return jnp.where(period > 0, jnp.max(spread), 0.0)
