r"""Theorem 5.14: a gradient tolerance $\epsilon$ is a Hamiltonian tolerance
$\epsilon / h$ (eqs. (54), (55)), and back."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from flow import AbstractShooting as Shooting, RealArrayLike


def _min_step(grid: Any, name: str = "grid") -> Array | np.floating:
    if isinstance(grid, Shooting):
        grid = grid.grid
    if not isinstance(grid, jax.core.Tracer):
        g = np.asarray(grid)
        if g.ndim != 1 or g.shape[0] < 2:
            raise ValueError(
                f"`{name}` must be a flow.Shooting or a 1-D array of N+1 >= 2 times; got "
                f"shape {g.shape}."
            )
        if g.dtype.kind != "f":
            raise TypeError(f"`{name}` must hold float64 times; got dtype {g.dtype}.")
        if not (np.all(np.isfinite(g)) and np.all(np.diff(g) > 0)):
            raise ValueError(f"`{name}` must be finite and strictly increasing.")
        return np.min(np.diff(g))  # by numpy: no kernel compiled per N
    grid = jnp.asarray(grid)
    return jnp.min(grid[1:] - grid[:-1])


def _eps(eps: Any, name: str) -> Array | np.ndarray:
    if not isinstance(eps, jax.core.Tracer):
        e = np.asarray(eps, dtype=np.float64)
        if not (np.all(np.isfinite(e)) and np.all(e > 0)):
            raise ValueError(f"`{name}` must be finite and positive; got {eps}.")
        return e
    return jnp.asarray(eps, dtype=jnp.float64)


def _result(value: Any) -> Array:
    """A jax array; one computed by numpy (concrete inputs) is placed on the device
    without compiling anything."""
    return value if isinstance(value, jax.Array) else jax.device_put(np.asarray(value))


def hamiltonian_tolerance(
    eps: float | ArrayLike, grid: Shooting | RealArrayLike
) -> Float[Array, "..."]:
    r"""The Hamiltonian tolerance implied by a gradient tolerance (Theorem 5.14):
    $\|\nabla E^N\|_\infty \le \epsilon \Rightarrow \max_k |\partial_u H_k| \le
    \epsilon / \min_k h_k$ (eqs. (54), (55); for Euler, $\nabla_{u_k} E^N = h_k
    \partial_u H_k$ by Lemma 2).

    **Arguments:** `eps` (> 0, scalar or array), `grid` (a `flow.Shooting` or the
    times $t_0 < \dots < t_N$). Jit- and vmap-able in `eps`.

    **Returns:** $\epsilon / \min_k h_k$ (shape of `eps`).
    """
    return _result(_eps(eps, "eps") / _min_step(grid))


def gradient_tolerance(
    eps_H: float | ArrayLike, grid: Shooting | RealArrayLike
) -> Float[Array, "..."]:
    r"""The gradient tolerance that guarantees a Hamiltonian tolerance: stopping at
    $\|\nabla E^N\|_\infty \le \epsilon_H \min_k h_k$ gives $\max_k|\partial_u H_k|
    \le \epsilon_H$ (the inverse of [`hamiltonian_tolerance`][
    stability.hamiltonian_tolerance]; the remedy of section 6.1: vary $\epsilon$
    with $h$).

    **Returns:** $\epsilon_H \min_k h_k$ (shape of `eps_H`).
    """
    return _result(_eps(eps_H, "eps_H") * _min_step(grid))
