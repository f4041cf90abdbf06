r"""The box of the control bounds: validation, the projection, the projected
gradient, active sets and multipliers (public as [`flow.bounds`][flow.bounds])."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike


AT_LOWER = -1
"""The code of `active_set` for a component at its lower bound."""
FREE = 0
"""The code of `active_set` for a component strictly inside its bounds."""
AT_UPPER = 1
"""The code of `active_set` for a component at its upper bound."""


def validate_bounds(value: Any, name: str, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """`value = (lower, upper)` as two float64 numpy arrays broadcast to `shape`, or an
    error naming `name`: each side a real scalar or an array that broadcasts to
    `shape` (`(m,)` per component; `(N, m)` per interval), no NaN, $-\\infty$ allowed
    below and $+\\infty$ above, and `lower < upper` everywhere."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise TypeError(
            f"`{name}` must be a pair (lower, upper) of numbers or arrays of shape "
            f"{_shapes(shape)}; got {value!r}."
        )
    sides = []
    for side, v in zip(("lower", "upper"), value, strict=True):
        arr = np.asarray(v)
        if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
            raise TypeError(f"`{name}` {side} bound must be real; got dtype {arr.dtype}.")
        arr = arr.astype(np.float64)
        if arr.ndim > len(shape) or any(
            a not in (1, s) for a, s in zip(arr.shape[::-1], shape[::-1], strict=False)
        ):
            raise ValueError(
                f"`{name}` {side} bound must be a scalar or have shape {_shapes(shape)}; "
                f"got shape {arr.shape}."
            )
        if np.any(np.isnan(arr)):
            raise ValueError(f"`{name}` {side} bound must not be NaN; got {arr}.")
        sides.append(np.broadcast_to(arr, shape).copy())
    lower, upper = sides
    if np.any(lower == np.inf) or np.any(upper == -np.inf):
        raise ValueError(
            f"`{name}`: a lower bound of +inf or an upper bound of -inf leaves no control."
        )
    bad = ~(lower < upper)
    if np.any(bad):
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"`{name}` must have lower < upper everywhere; at index {index} lower = "
            f"{lower[index]} and upper = {upper[index]}."
        )
    return lower, upper


def _shapes(shape: tuple[int, ...]) -> str:
    if len(shape) == 1:
        return f"({shape[0]},)"
    return f"({shape[1]},) or {tuple(shape)}"


def project(U: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> Array:
    r"""$P_B(U)$: the componentwise clip of `U` onto $[\ell, \upsilon]$."""
    return jnp.clip(U, lower, upper)


def projected_residual(U: ArrayLike, g: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> Array:
    r"""$U - P_B(U - g)$: $g$ on the free set, and on a bound the part of $g$ that
    points out of the box (0 where the bound holds it). Zero exactly at a KKT point."""
    return U - jnp.clip(U - g, lower, upper)


def active_set(U: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> Array:
    """-1 where `U` is at its lower bound, +1 at its upper bound, 0 elsewhere (int8).

    A projected method puts an active component exactly on its bound (the clip
    returns the bound itself), so the test is equality."""
    return jnp.where(U <= lower, AT_LOWER, jnp.where(U >= upper, AT_UPPER, FREE)).astype(jnp.int8)


def multipliers(g: ArrayLike, active: ArrayLike) -> Array:
    r"""The bound multipliers $\nu$: $\nabla E^N$ on the active set, 0 on the free set
    ($\nabla E^N = \nu$ at a KKT point; $\nu \ge 0$ at lower bounds, $\le 0$ at
    upper ones)."""
    return jnp.where(active != FREE, g, 0.0)


def device_bounds(lower: np.ndarray, upper: np.ndarray) -> tuple[Array, Array]:
    """The two sides placed on the device from numpy (no XLA program per conversion)."""
    return jax.device_put(lower), jax.device_put(upper)
