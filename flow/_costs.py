"""Cost terms of the built-in problems, comparable by value: problems built with the
same weights share compiled code (an equinox Module compares by its fields, a
closure by identity)."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp


class ControlPenalty(eqx.Module):
    """L(x, u) = weight/2 |u|^2, comparable by value (problems built with the same
    weight share compiled code)."""

    weight: float

    def __call__(self, x, u):
        return 0.5 * self.weight * jnp.sum(u**2)


class TargetPenalty(eqx.Module):
    """E(x) = weight/2 |x - target|^2, comparable by value."""

    weight: float
    target: tuple[float, ...]

    def __call__(self, x):
        return 0.5 * self.weight * jnp.sum((x - jnp.asarray(self.target)) ** 2)
