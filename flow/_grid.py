"""Time grids t_0 < t_1 < ... < t_N on [t0, tf]."""

from __future__ import annotations

from typing import Any

import numpy as np


def make_grid(N_or_grid: Any, t0: float, tf: float) -> np.ndarray:
    r"""A validated time grid, as a float64 numpy array of shape `(N+1,)`.

    - An integer `N >= 1` gives the uniform grid $t_k = t_0 + k h$, $h = (t_f-t_0)/N$
      (paper eq. (15)); the last point is set to exactly $t_f$.
    - An array is taken as the grid itself: 1-D, finite, strictly increasing, with
      at least two points, starting at `t0` and ending at `tf` (to a relative
      1e-12 of the interval; the end points are then snapped to `t0`, `tf`).

    **Raises:** `TypeError` / `ValueError` naming `N_or_grid` and what was expected.
    """
    if isinstance(N_or_grid, bool):
        raise TypeError("`N_or_grid` must be an integer N >= 1 or an array of times.")
    if isinstance(N_or_grid, int | np.integer):
        N = int(N_or_grid)
        if N < 1:
            raise ValueError(f"`N_or_grid`: the number of steps N must be >= 1; got {N}.")
        grid = t0 + (tf - t0) * (np.arange(N + 1, dtype=np.float64) / N)
        grid[-1] = tf
        return grid
    if isinstance(N_or_grid, float | np.floating):
        raise TypeError(
            f"`N_or_grid` must be an integer N >= 1 or an array of times; got the "
            f"float {N_or_grid!r}."
        )
    grid = np.asarray(N_or_grid)
    if grid.dtype.kind not in "fiu":
        raise TypeError(f"`N_or_grid` must be a real array of times; got dtype {grid.dtype}.")
    grid = grid.astype(np.float64)
    if grid.ndim != 1 or grid.shape[0] < 2:
        raise ValueError(
            f"`N_or_grid` as a grid must be a 1-D array of at least 2 times; got "
            f"shape {grid.shape}."
        )
    if not np.all(np.isfinite(grid)):
        raise ValueError("`N_or_grid`: the grid must be finite.")
    if not np.all(np.diff(grid) > 0):
        bad = int(np.argmin(np.diff(grid) > 0))
        raise ValueError(
            f"`N_or_grid`: the grid must be strictly increasing; t[{bad}]="
            f"{grid[bad]!r} >= t[{bad + 1}]={grid[bad + 1]!r}."
        )
    scale = 1e-12 * (tf - t0)
    if abs(grid[0] - t0) > scale or abs(grid[-1] - tf) > scale:
        raise ValueError(
            f"`N_or_grid`: the grid must start at t0={t0!r} and end at tf={tf!r}; got "
            f"[{grid[0]!r}, ..., {grid[-1]!r}]."
        )
    grid[0], grid[-1] = t0, tf
    return grid
