"""Time grids t_0 < t_1 < ... < t_N on [t0, tf]."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._validation import increasing_times, spanning


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
        return uniform_grid(N, t0, tf)
    if isinstance(N_or_grid, float | np.floating):
        raise TypeError(
            f"`N_or_grid` must be an integer N >= 1 or an array of times; got the "
            f"float {N_or_grid!r}."
        )
    grid = increasing_times(N_or_grid, "N_or_grid")
    return spanning(grid, "N_or_grid", t0, tf)


def uniform_grid(N: int, t0: float, tf: float) -> np.ndarray:
    """`N + 1` equally spaced times from `t0` to exactly `tf` (eq. (15))."""
    grid = t0 + (tf - t0) * (np.arange(N + 1, dtype=np.float64) / N)
    grid[-1] = tf
    return grid
