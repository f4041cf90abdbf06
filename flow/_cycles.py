r"""Cycles of descent: the test `flow.descend` runs every iteration to recognise that
its iterates settled on a periodic orbit (period 2 or 4) instead of a fixed point,
and the orbit's half-width. Past forward Euler's bound the fixed point loses
stability in a flip, and a stable cycle is what a supercritical flip leaves behind
(`stability.flip`)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array


def test(
    ring: Array,
    i: Array,
    U_new: Array,
    U: Array,
    U_prev: Array,
    cycle_tol: float,
    d1_prev: Array,
) -> tuple[Array, Array, Array]:
    """Store U_i (= `U_new`, `i` already incremented) in slot i mod 4 of `ring` and
    return (the ring, the period (2 or 4) of a cycle the iterates settled on or 0,
    d1 = max|U_i - U_{i-1}|).

    Period p: max|U_i - U_{i-p}| <= cycle_tol * s, and the shorter recurrences stay
    apart, max|U_i - U_{i-q}| >= sqrt(cycle_tol) * s for q = 1 (and 2 when p = 4),
    with s = max(1, max|U_i|). For p = 2 the cycle must also have stopped shrinking:
    d1 >= (1 - 100 cycle_tol) d1_prev (an alternation converging to the fixed point
    with a multiplier near -1 shrinks by |multiplier| every step). The slot written
    is the one holding U_{i-4}."""
    slot = i % 4
    U_back4 = ring[slot]
    ring = jax.lax.dynamic_update_index_in_dim(ring, U_new, slot, 0)
    s = jnp.maximum(1.0, jnp.max(jnp.abs(U_new)))
    d1 = jnp.max(jnp.abs(U_new - U))
    d2 = jnp.max(jnp.abs(U_new - U_prev))
    d4 = jnp.max(jnp.abs(U_new - U_back4))
    close, apart = cycle_tol * s, math.sqrt(cycle_tol) * s
    steady = d1 >= (1.0 - 100.0 * cycle_tol) * d1_prev
    two = (i >= 2) & (d2 <= close) & (d1 >= apart) & steady
    four = (i >= 4) & (d4 <= close) & (d1 >= apart) & (d2 >= apart)
    return ring, jnp.where(two, 2, jnp.where(four, 4, 0)), d1


def amplitude(cycle: Array, period: Array) -> Array:
    """max_{j<p} max|U_{n-j} - mean| over the cycle's p points (0 without a cycle)."""
    used = (jnp.arange(4) < period).reshape((4,) + (1,) * (cycle.ndim - 1))
    count = jnp.maximum(period, 1)
    mean = jnp.sum(jnp.where(used, cycle, 0.0), axis=0) / count
    spread = jnp.where(used, jnp.abs(cycle - mean[None]), 0.0)
    return jnp.where(period > 0, jnp.max(spread), 0.0)
