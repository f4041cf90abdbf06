r"""$E^N$ restricted to the free set of a bounded point: the problem whose controls are
the free components, with the active ones held on their bounds.

Near a solution with strict complementarity a projected method keeps the active
components on their bounds (after finitely many steps), and the free ones follow the
unbounded dynamics of this restricted problem. Its gradient flow, its Jacobian
$-M_{FF}^{-1}\nabla^2_{FF}E^N$ and forward Euler's bound on it are the reduced ones of
the bounded problem, so every unbounded verb (`stability.linearize`, `spectrum`,
`euler_bound`, `flow.descend`) analyses the bounded problem through it.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jaxtyping import Array, Float, Int

from . import _box
from ._shooting import AbstractShooting
from ._validation import controls, shooting as check_shooting


class FreeShooting(AbstractShooting):
    r"""$V \mapsto E^N(U)$ with $U_F = V$ on the free set $F$ and $U_A$ fixed: the
    bounded problem restricted to its free components, built by
    [`restrict`][flow.bounds.restrict].

    Its controls have shape `(F, 1)`, one row per free component $u_{k,i}$ in the
    row-major order of `U.reshape(-1)`; `steps` gives each row its $h_k$, so the
    Hamiltonian metric is $\mathrm{diag}(h_k)$ restricted to $F$ and
    `stop_on="hamiltonian"` measures $\partial_u H$ on the free set. It has no bounds
    of its own.

    **Fields:** `shooting` (the bounded discretisation), `U` (the point, shape
    `(N, m)`, whose active components are held), `index` (the flat indices of the
    free components, shape `(F,)`), `free_steps` ($h_k$ of each free component),
    `grid` (any grid with `F` intervals; only its length is used).
    """

    shooting: AbstractShooting
    U: Float[Array, "N m"]
    index: Int[Array, " F"]
    free_steps: Float[Array, " F"]
    grid: Float[Array, " Fp1"]

    @property
    def control_dim(self) -> int:
        """1: one free component per row."""
        return 1

    @property
    def steps(self) -> Float[Array, " F"]:
        r"""$h_k$ of each free component $u_{k,i}$."""
        return self.free_steps

    @property
    def problem(self) -> Any:
        """The problem of the bounded discretisation."""
        return getattr(self.shooting, "problem", None)

    def objective(self, V: Float[Array, "F 1"]) -> Float[Array, ""]:
        r"""$E^N$ at the full control `expand(V)`, unchecked and traceable."""
        return self.shooting.objective(self.expand(V))

    def expand(self, V: Float[Array, "F 1"]) -> Float[Array, "N m"]:
        """The full control: `U` with its free components replaced by `V`."""
        return self.U.reshape(-1).at[self.index].set(V[:, 0]).reshape(self.U.shape)

    def free(self, U: Any) -> Float[Array, "F 1"]:
        """The free components of a full control `U` (shape `(N, m)`), shape `(F, 1)`."""
        U = controls(self.shooting, U, "U")
        return U.reshape(-1)[self.index][:, None]

    def __repr__(self) -> str:
        return f"FreeShooting({self.N} free of {self.U.size}, {self.shooting!r})"


def restrict(shooting: AbstractShooting, U: Any, active_set: Any = None) -> FreeShooting:
    r"""The bounded problem `shooting` restricted to the free set at `U`: the
    components where `active_set` is 0 are the controls, the others stay at their
    values in `U` (on their bounds).

    **Arguments:** `shooting`, with bounds; `U`, shape `(N, m)`, inside the bounds;
    `active_set` (int, `(N, m)`: -1, 0, +1 as [`active_set`][flow.bounds.active_set]
    returns, e.g. an equilibrium's), default the components of `U` on a bound.

    **Returns:** a [`FreeShooting`][flow.bounds.FreeShooting].

    **Raises:** `ValueError` when `shooting` has no bounds, `U` is outside them, or
    no component is free.
    """
    check_shooting(shooting)
    box = getattr(shooting, "bounds", None)
    if box is None:
        raise ValueError("`shooting` has no control bounds: there is no free set to restrict to.")
    U = controls(shooting, U, "U", finite=True)
    lower, upper = (np.asarray(b) for b in box)
    U_np = np.asarray(U)
    if np.any(U_np < lower) or np.any(U_np > upper):
        raise ValueError("`U` must lie inside the bounds (project it first).")
    if active_set is None:
        active = np.asarray(_box.active_set(U_np, lower, upper))
    else:
        active = np.asarray(active_set)
        if active.shape != U_np.shape:
            raise ValueError(f"`active_set` must have shape {U_np.shape}; got {active.shape}.")
    index = np.flatnonzero(active.reshape(-1) == _box.FREE)
    if index.size == 0:
        raise ValueError("every component of `U` is active: the free set is empty.")
    h = np.repeat(np.asarray(shooting.steps), shooting.control_dim)[index]
    grid = np.concatenate([[0.0], np.cumsum(h)])
    return FreeShooting(
        shooting=shooting,
        U=U,
        index=jax.device_put(index),
        free_steps=jax.device_put(h),
        grid=jax.device_put(grid),
    )
