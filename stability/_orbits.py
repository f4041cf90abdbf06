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
$\|\nabla E^N\|_\infty$ grew past `divergence_factor` times its start; `aperiodic`
otherwise (a longer period, chaos, or not settled within `transient`). The picture
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
APERIODIC, DIVERGED = 0, -1


class OrbitDiagram(AbstractRecord):
    r"""The attractor of descent from one start across steps, from
    [`orbit_diagram`][stability.orbit_diagram].

    **Fields:**

    - `alphas`: the steps (absolute), shape (A,); `relative`: `alphas / alpha_star`;
      `alpha_star`: the flip's step $2/\mu_{\max}$ (forward Euler's bound at $U^*$).
    - `points`: the observable at the last `samples` iterates, shape (A, samples);
      NaN where the run diverged.
    - `period`: per step, the attractor's period (1: the fixed point; 2, 4, 8, 16: a
      cycle), 0 (`aperiodic`: none of those within `cycle_tol`) or -1 (`diverged`);
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
        """Per step: `fixed point`, `period p`, `aperiodic` or `diverged`."""
        return [_label(int(p)) for p in self.period]

    def first(self, period: int) -> float | None:
        """The smallest step of the grid whose attractor has this period (a period
        `p`, 0 for aperiodic, -1 for diverged), or None."""
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
    if p == APERIODIC:
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
        alphas = np.linspace(0.5, 1.5, 256)
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
    points, period, diverged_at = _orbits(
        shooting, metric, observe, U0, jnp.asarray(absolute), transient, samples,
        cycle_tol, divergence_factor,
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
def _orbits(sh, metric, observe, U0, alphas, transient, samples, cycle_tol, factor):
    """All steps at once: vmap over `alphas` of one descent from U0."""
    grad = jax.grad(type(sh).objective, argnums=1)
    limit = factor * jnp.maximum(jnp.max(jnp.abs(grad(sh, U0))), 1e-300)
    ring_size = max(PERIODS) + 1

    def one(alpha):
        def advance(U, dead, at, i):
            G = grad(sh, U)
            bad = ~jnp.all(jnp.isfinite(G)) | (jnp.max(jnp.abs(G)) > limit)
            at = jnp.where(bad & ~dead, i, at)
            dead = dead | bad
            U_new = U - alpha * metric.solve(sh, U, G).direction
            return jnp.where(dead, U, U_new), dead, at

        def burn(carry, i):
            return advance(*carry, i), None

        def record(carry, i):
            U, dead, at, ring = carry
            U, dead, at = advance(U, dead, at, i)
            ring = jax.lax.dynamic_update_index_in_dim(ring, U, i % ring_size, 0)
            return (U, dead, at, ring), observe(U)

        carry = (U0, jnp.array(False), jnp.array(-1))
        carry, _ = jax.lax.scan(burn, carry, jnp.arange(transient))
        ring = jnp.broadcast_to(carry[0], (ring_size,) + U0.shape)
        stop = transient + samples
        (U, dead, at, ring), values = jax.lax.scan(
            record, (*carry, ring), jnp.arange(transient, stop)
        )
        # U_j for j = stop - 1 - p sits in slot (stop - 1 - p) mod ring_size
        scale = jnp.maximum(1.0, jnp.max(jnp.abs(U)))
        recur = jnp.stack([jnp.max(jnp.abs(U - ring[(stop - 1 - p) % ring_size])) for p in PERIODS])
        ok = recur <= cycle_tol * scale
        period = jnp.where(jnp.any(ok), jnp.asarray(PERIODS)[jnp.argmax(ok)], APERIODIC)
        period = jnp.where(dead | ~jnp.all(jnp.isfinite(U)), DIVERGED, period)
        return values, period, at

    return jax.vmap(one)(alphas)
