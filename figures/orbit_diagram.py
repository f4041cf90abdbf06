r"""Past forward Euler's bound: the optimizer's own period-doubling cascade.

Gradient descent with a constant step is the map $F_\alpha(U) = U - \alpha
M^{-1}\nabla E^N(U)$ (37). At $\alpha^* = 2/\mu_{\max}$ (`stability.euler_bound`'s
`alpha_max`) the multiplier $1 - \alpha\mu_{\max}$ of the minimiser crosses $-1$:
a flip (period-doubling) bifurcation (`stability.flip`).

On the tilted double well ($\dot x = u$, $x(0) = 0.3$, $E = (x(1)^2 - 1)^2 +
0.2\,x(1)$, running cost $u^2/2$; $N = 100$, forward Euler, Hamiltonian metric;
the minimiser from $U = 0.5$), from $U_0 = 0.5$:

- (a) the orbit diagram (`stability.orbit_diagram`): for 256 steps over
  $[0.5, 1.5]\,\alpha^*$, in one compiled call, the last 32 of 2000 + 32 iterates
  through $s = q^\top M(U - U^*)$, the coordinate along the critical eigenvector.
  The fixed point ($s = 0$) gives way at $\alpha^*$ to a 2-cycle (the flip is
  supercritical), then to 4-, 8- and 16-cycles and to bands of chaos: Feigenbaum's
  cascade, made by an optimizer.
- (b) the 2-cycle's half-width $\|V_1 - V_2\|_\infty/2$ against $\alpha/\alpha^* - 1$:
  the flip verb's cycles (Newton on the two-step map) and descent's cycles
  (`flow.descend`, status `oscillating`), with the normal form's leading order
  $\sqrt{2(\alpha/\alpha^* - 1)/c}\,\|q\|_\infty$: the square-root law of a
  supercritical flip.

Run: `python figures/orbit_diagram.py --out DIR [--quick]` (`--quick`: $N = 40$, 64
steps, 500 transient iterations, two distances in (b)).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

import flow
import stability
from figures import _plots, _style
from flow import problems


NAME = "orbit_diagram"
N_FULL, N_QUICK = 100, 40
STEPS_FULL, STEPS_QUICK = 256, 64
TRANSIENT_FULL, TRANSIENT_QUICK = 2000, 500
#: distances past the flip, alpha/alpha* - 1, of panel (b)
DISTANCES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1)
DISTANCES_QUICK = (1e-2, 0.1)


def tilted_double_well() -> flow.OptimalControlProblem:
    r"""$\dot x = u$, $x(0) = 0.3$ on $[0, 1]$, $E = (x(1)^2 - 1)^2 + 0.2\,x(1)$,
    running cost $u^2/2$: `flow.problems.tilted_double_well(0.2, x0=0.3)`."""
    return problems.tilted_double_well(0.2, x0=0.3)


def plot_orbit_diagram(diagram: stability.OrbitDiagram, ax: Any, *, label: bool = True) -> None:
    """Draw an [`OrbitDiagram`][stability.OrbitDiagram] on `ax`: the observable at the
    recorded iterates against alpha/alpha*, forward Euler's bound, the first step
    of each period, and the diverged steps shaded."""
    x = np.repeat(diagram.relative, diagram.samples)
    y = diagram.points.reshape(-1)
    ax.plot(x, y, ",", color="black", alpha=0.6, rasterized=True)
    ax.scatter(x, y, s=0.6, color="black", linewidths=0, rasterized=True)
    ax.axvline(1.0, color=_style.COLORS[1], ls="--", lw=1.2)
    ax.text(0.98, 0.03, r"$\alpha^* = 2/\mu_{\max}$", color=_style.COLORS[1], va="bottom",
            ha="right", fontsize=8.5, transform=ax.get_xaxis_transform())  # fmt: skip
    dead = diagram.period == -1
    if dead.any():
        ax.fill_between(diagram.relative, 0, 1, where=dead, color="0.85", step="mid",
                        transform=ax.get_xaxis_transform(), label="diverged")  # fmt: skip
    if label:
        ax.text(0.01, 0.97, "first step of period", transform=ax.transAxes, va="top",
                fontsize=8, color=_style.COLORS[0])  # fmt: skip
        for p in (2, 4, 8):
            first = diagram.first(p)
            if first is not None:
                x = first / diagram.alpha_star
                ax.plot([x, x], [0.86, 0.9], color=_style.COLORS[0], lw=1,
                        transform=ax.get_xaxis_transform())  # fmt: skip
                ax.text(x, 0.91, f"{p}", ha="center", va="bottom", fontsize=8.5,
                        color=_style.COLORS[0], transform=ax.get_xaxis_transform())  # fmt: skip
    ax.set_xlabel(r"step $\alpha/\alpha^*$")
    ax.set_ylabel(r"attractor $s = q^\top M (U - U^*)$")


def compute(
    N: int = N_FULL,
    steps: int = STEPS_FULL,
    transient: int = TRANSIENT_FULL,
    distances: tuple[float, ...] = DISTANCES,
) -> dict:
    """The minimiser, the flip, the orbit diagram, and the 2-cycle half-widths of the
    flip verb and of descent at `DISTANCES` past the flip."""
    sh = flow.shoot(tilted_double_well(), N)
    U0 = jnp.full((N, 1), 0.5)
    eq = stability.equilibrium(sh, U0)
    result = stability.flip(sh, eq)
    diagram = stability.orbit_diagram(
        sh, eq, U0=U0, alphas=np.linspace(0.5, 1.5, steps), transient=transient
    )
    verb, replay = [], []
    for delta in distances:
        alpha = result.alpha * (1.0 + delta)
        verb.append(stability.flip(sh, eq, alpha=alpha).amplitude)
        trace = flow.descend(sh, U0, step=alpha, max_steps=200_000, tol=1e-13,
                             cycle_tol=1e-12, throw=False)  # fmt: skip
        replay.append(float(trace.amplitude) if trace.status == "oscillating" else np.nan)
    return dict(N=N, flip=result, diagram=diagram, distances=np.asarray(distances),
                verb=np.asarray(verb), replay=np.asarray(replay))  # fmt: skip


def draw(d: dict, out: Path) -> list[Path]:
    """Draw the figure from the data of `compute` into `out`; returns the paths."""
    fig, (a, b) = _style.figure(2, width=_style.WIDTH_DOUBLE, height=3.6)
    plot_orbit_diagram(d["diagram"], a)
    a.set_title(f"(a) orbit diagram (N = {d['N']})")
    delta = d["distances"]
    fine = np.geomspace(delta[0], delta[-1], 100)
    predicted = [d["flip"].predicted_cycle_amplitude(d["flip"].alpha * (1 + x)) for x in fine]
    b.loglog(fine, predicted, color=_style.COLORS[1], ls="--",
             label=r"normal form $\sqrt{2\delta/c}\,\|q\|_\infty$")  # fmt: skip
    b.loglog(delta, d["verb"], "o", color=_style.COLORS[0], mfc="none", ms=7,
             label="stability.flip (Newton)")  # fmt: skip
    b.loglog(delta, d["replay"], "x", color=_style.COLORS[2], ms=6,
             label="flow.descend (its cycle)")  # fmt: skip
    b.set_xlabel(r"distance past the flip $\delta = \alpha/\alpha^* - 1$")
    b.set_ylim(1e-3, 0.3)
    b.set_ylabel(r"2-cycle half-width $\|V_1 - V_2\|_\infty / 2$")
    b.set_title("(b) the 2-cycle past the flip")
    b.legend(loc="lower right")
    return _style.save(fig, out, NAME)


def make(out: Path, *, quick: bool = False) -> list[Path]:
    """Draw the figure into `out` (`orbit_diagram.png`, `.pdf`); returns the paths."""
    d = compute(N_QUICK, STEPS_QUICK, TRANSIENT_QUICK, DISTANCES_QUICK) if quick else compute()
    return draw(d, out)


def main(argv: list[str] | None = None) -> int:
    """`python figures/orbit_diagram.py --out DIR [--quick]`."""
    return _plots.command_line(make, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
