r"""The orbit diagram of gradient descent: its attractor from a fixed start, as the
step crosses forward Euler's bound.

For each step $\alpha$ the map $F_\alpha(U) = U - \alpha M^{-1}\nabla E^N(U)$ (37) is
iterated from the same $U_0$: `transient` steps, then `samples` more, recorded
through a scalar observable (by default the coordinate along the critical
eigenvector, $s(U) = q^\top M (U - U^*)$, $q^\top M q = 1$: zero at the fixed
point, $\pm$ the cycle's half-width past a flip). The attractor is classified from
the iterates themselves (not the observable): period $p \in \{1, 2, 4, 8, 16\}$ when
$\|U_j - U_{j-p}\|_\infty \le$ `cycle_tol` $\cdot\max(1, \|U_j\|_\infty)$ at the last
iterate for the smallest such $p$; `diverged` when a value became non-finite or
$\|\nabla E^N\|_\infty$ grew past `divergence_factor` times the larger of its size at
$U_0$ and the problem's scale $\mu_{\max}\max_k d_k\max(1, \|U^*\|_\infty)$;
`unresolved` otherwise (a longer period, chaos, or not settled within `transient`). The picture
is the optimizer's own period-doubling cascade (Feigenbaum's, for the logistic map).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float, Int

import flow
from flow import AbstractRecord
from flow.validation import positive_float, positive_int

from ._flip import DENSE_SPECTRUM_MAX, checked, critical


#: The periods the diagram resolves.
PERIODS = (1, 2, 4, 8, 16)

#: Class codes of `OrbitDiagram.period`: a period p > 0, or one of these.
UNRESOLVED, DIVERGED = 0, -1


class OrbitDiagram(AbstractRecord):
    r"""The attractor of descent from one start across steps, from
    [`orbit_diagram`][stability.orbit_diagram].

    **Fields:**

    - `alphas`: the steps (absolute), shape (A,); `relative`: `alphas / alpha_star`;
      `alpha_star`: the flip's step $2/\mu_{\max}$ (forward Euler's bound at $U^*$).
    - `points`: the observable at the last `samples` iterates, shape (A, samples);
      NaN where the run diverged.
    - `period`: per step, the attractor's period (1: the fixed point; 2, 4, 8, 16: a
      cycle), 0 (`unresolved`: none of those within `cycle_tol`: a longer period,
      chaos, or not settled within `transient`) or -1 (`diverged`);
      `diverged_at`: the iteration of divergence, or -1.
    - `observable`: its name; `transient`, `samples`, `cycle_tol`; `metric`.
    """

    alphas: Float[np.ndarray, " A"]
    relative: Float[np.ndarray, " A"]
    alpha_star: float
    points: Float[np.ndarray, "A S"]
    period: Int[np.ndarray, " A"]
    diverged_at: Int[np.ndarray, " A"]
    observable: str
    transient: int
    samples: int
    cycle_tol: float
    metric: str

    _arrays = ("alphas", "relative", "points", "period", "diverged_at")

    @property
    def labels(self) -> list[str]:
        """Per step: `fixed point`, `period p`, `unresolved` or `diverged`."""
        return [_label(int(p)) for p in self.period]

    def first(self, period: int) -> float | None:
        """The smallest step of the grid whose attractor has this period (a period
        `p`, 0 for unresolved, -1 for diverged), or None."""
        hits = np.flatnonzero(self.period == period)
        return float(self.alphas[hits[0]]) if hits.size else None

    def _summary(self) -> str:
        counts = {}
        for label in self.labels:
            counts[label] = counts.get(label, 0) + 1
        text = ", ".join(f"{k}: {v}" for k, v in counts.items())
        return f"{len(self.alphas)} steps, alpha*={self.alpha_star:.6g}; {text}"


def _label(p: int) -> str:
    if p == DIVERGED:
        return "diverged"
    if p == UNRESOLVED:
        return "unresolved"
    return "fixed point" if p == 1 else f"period {p}"


def orbit_diagram(
    shooting: flow.AbstractShooting,
    U_star: Any,
    *,
    U0: Any = None,
    alphas: Any = None,
    relative: bool = True,
    metric: Any = "hamiltonian",
    transient: int = 2000,
    samples: int = 32,
    observable: Any = None,
    cycle_tol: float = 1e-9,
    divergence_factor: float = 1e6,
) -> OrbitDiagram:
    r"""The attractor of descent $U_{i+1} = U_i - \alpha M^{-1}\nabla E^N(U_i)$ from one
    start, for many steps $\alpha$ in one compiled, vmapped call (the formulas and
    the classification are in this module's docstring).

    **Arguments:**

    - `shooting`, `U_star`: the discretisation and a minimiser of $E^N$ (an array or
      a [`stability.Equilibrium`][stability.Equilibrium]); it fixes $\alpha^* =
      2/\mu_{\max}$ and the default observable.
    - `U0`: the start (default `U_star` plus $10^{-3}\,q$, a small push along the
      critical eigenvector).
    - `alphas`: the steps (default 256 values over [0.5, 1.5]); relative to
      $\alpha^*$ when `relative` (default), else absolute. Their number sets the
      compiled shape: another call with as many steps compiles nothing.
    - `metric`: a diagonal metric (object or name).
    - `transient`, `samples`: iterations discarded, then recorded.
    - `observable`: a JAX function of $U$ returning a scalar (default
      $q^\top M(U - U^*)$).
    - `cycle_tol`, `divergence_factor`: the classification's tolerances.

    **Returns:** an [`OrbitDiagram`][stability.OrbitDiagram].
    """
    U_star, metric, d = checked(shooting, U_star, metric, "the orbit diagram")
    transient = positive_int(transient, "transient")
    samples = positive_int(samples, "samples")
    cycle_tol = positive_float(cycle_tol, "cycle_tol")
    divergence_factor = positive_float(divergence_factor, "divergence_factor")
    if samples < max(PERIODS):
        raise ValueError(f"`samples` must be >= {max(PERIODS)}; got {samples}.")
    dense = U_star.size <= DENSE_SPECTRUM_MAX
    mu_max, q, _ = critical(shooting, U_star, d, dense, [0])
    alpha_star = 2.0 / mu_max
    if alphas is None:
        alphas = np.linspace(0.5, 1.5, 256) * (1.0 if relative else alpha_star)
    alphas = np.asarray(alphas, dtype=np.float64)
    if alphas.ndim != 1 or alphas.size == 0 or not np.all(np.isfinite(alphas) & (alphas > 0)):
        raise ValueError("`alphas` must be a non-empty 1-d array of positive, finite steps.")
    absolute = alphas * alpha_star if relative else alphas
    qU = jnp.asarray(q.reshape(U_star.shape))
    U0 = U_star + 1e-3 * qU if U0 is None else type(shooting).check_controls(shooting, U0, "U0")
    if observable is None:
        weights = jnp.asarray((d * q).reshape(U_star.shape))
        observe, name = _Coordinate(U_star, weights), "q^T M (U - U*)"
    else:
        if not callable(observable):
            raise TypeError(f"`observable` must be a function of U; got {observable!r}.")
        observe, name = observable, getattr(observable, "__name__", "observable")
    # divergence: the gradient past divergence_factor times the larger of its size at
    # U0 and the problem's scale mu_max max(d) max(1, |U*|) (a start at U* has none)
    scale = mu_max * float(np.max(d)) * max(1.0, float(np.max(np.abs(np.asarray(U_star)))))
    start = float(np.max(np.abs(np.asarray(shooting.gradient(U0)))))
    floor = divergence_factor * max(start, scale)
    points, period, diverged_at = _orbits(
        shooting, metric, observe, U0, jnp.asarray(absolute), transient, samples,
        cycle_tol, jnp.asarray(floor),
    )  # fmt: skip
    period = np.asarray(period)
    points = np.where((period == DIVERGED)[:, None], np.nan, np.asarray(points))
    return OrbitDiagram(
        alphas=absolute,
        relative=absolute / alpha_star,
        alpha_star=alpha_star,
        points=points,
        period=period,
        diverged_at=np.asarray(diverged_at),
        observable=name,
        transient=transient,
        samples=samples,
        cycle_tol=cycle_tol,
        metric=type(metric).__name__.lower(),
    )


class _Coordinate(eqx.Module):
    """s(U) = sum(w * (U - U*)), with w = M q."""

    U_star: Any
    weights: Any

    def __call__(self, U):
        return jnp.sum(self.weights * (U - self.U_star))


@eqx.filter_jit
def _orbits(sh, metric, observe, U0, alphas, transient, samples, cycle_tol, floor):
    """All steps at once: vmap over `alphas` of one descent from U0. Divergence: a
    non-finite gradient, or one above `floor` (fixed by the caller from the problem's
    scale, not from the start, which may sit at U*)."""
    grad = jax.grad(type(sh).objective, argnums=1)
    stop = transient + samples
    # the iterations whose iterates the periods are tested against, newest last
    marks = jnp.asarray([stop - p for p in PERIODS[::-1]])

    def one(alpha):
        def advance(U, dead, at, i):
            G = grad(sh, U)
            bad = ~jnp.all(jnp.isfinite(G)) | (jnp.max(jnp.abs(G)) > floor)
            at = jnp.where(bad & ~dead, i, at)
            dead = dead | bad
            U_new = U - alpha * metric.solve(sh, U, G).direction
            return jnp.where(dead, U, U_new), dead, at

        def burn(carry, i):
            return advance(*carry, i), None

        def record(carry, i):
            U, dead, at, snaps = carry
            U, dead, at = advance(U, dead, at, i)
            # U_{i+1} is kept when it is one of the marked iterates (5 snapshots of U,
            # not a ring of 17)
            hit = (marks == i + 1).reshape((-1,) + (1,) * U.ndim)
            snaps = jnp.where(hit, U[None], snaps)
            return (U, dead, at, snaps), observe(U)

        carry = (U0, jnp.array(False), jnp.array(-1))
        carry, _ = jax.lax.scan(burn, carry, jnp.arange(transient))
        snaps = jnp.broadcast_to(carry[0], (len(PERIODS),) + U0.shape)
        (U, dead, at, snaps), values = jax.lax.scan(
            record, (*carry, snaps), jnp.arange(transient, stop - 1)
        )
        # the last step: its gradient is checked too
        U_end, dead, at = advance(U, dead, at, stop - 1)
        values = jnp.concatenate([values, observe(U_end)[None]])
        scale = jnp.maximum(1.0, jnp.max(jnp.abs(U_end)))
        recur = jnp.max(jnp.abs(U_end[None] - snaps[::-1]), axis=tuple(range(1, U.ndim + 1)))
        ok = recur <= cycle_tol * scale
        period = jnp.where(jnp.any(ok), jnp.asarray(PERIODS)[jnp.argmax(ok)], UNRESOLVED)
        period = jnp.where(dead | ~jnp.all(jnp.isfinite(U_end)), DIVERGED, period)
        return values, period, at

    return jax.vmap(one)(alphas)
