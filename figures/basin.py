r"""Section 6.3: the region of convergence of the direct and the indirect method.

From the same random initial guesses, the fraction that converges
([`stability.basin`][stability.basin]) on the `unicycle` problem ($N = 20$, Euler):
controls $U_0 = \xi$, $\xi$ standard normal (spread 1, seeded), and the costate
guesses $\lambda_0$ that the same controls imply (the discrete $\lambda_0$ of
$U_0$), so both methods start from the same information.

- Left, the direct method: descent with the Hamiltonian metric
  $M = \mathrm{diag}(h)$ at constant steps $\alpha$, given as fractions of the
  forward-Euler bound $\alpha_{\max}$ at the minimiser (`stability.euler_bound`);
  converged when $\max_k|\partial_u H_k| \le 10^{-6}$ within 2000 iterations.
- Right, the indirect method: costate shooting on (14) with the damped Newton
  iteration $\lambda_0 \leftarrow \lambda_0 - d\,F'(\lambda_0)^{-1}F(\lambda_0)$ at
  several damping factors $d$ ($d = 1$: Newton).

The paper's reading: an algorithm is a discretization of a flow; a small
(effective) step promotes global convergence, at the price of more iterations
(the median count is printed on each bar). Below $\alpha_{\max}$ descent converges
from every start; full Newton steps ($d = 1$) on the costates converge from few,
and shortening them ($d < 1$) widens the region, as the paper suggests.

Run: `python figures/basin.py --out DIR [--quick]` (`--quick`: 2 starts, two
steps and two dampings).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import flow
import stability
from figures import _plots, _style
from flow import problems


NAME = "basin"
N = 20
SPREAD = 1.0
SEED = 0
TOL = 1e-6
ITERATIONS = 2000
#: steps of the direct method as fractions of alpha_max (the last one above it)
FRACTIONS_FULL = (0.25, 0.5, 0.9, 1.1)
FRACTIONS_QUICK = (0.5, 1.1)
DAMPINGS_FULL = (1.0, 0.5, 0.25)
DAMPINGS_QUICK = (1.0, 0.5)
STARTS_FULL = 32
STARTS_QUICK = 2
#: how the outcomes of stability.basin read on the bars
OUTCOME_WORDS = {"max_steps": "did not\nconverge"}


def compute(
    n_starts: int,
    fractions: tuple[float, ...] = FRACTIONS_FULL,
    dampings: tuple[float, ...] = DAMPINGS_FULL,
) -> dict:
    """alpha_max of the Hamiltonian metric at the minimiser, and the `stability.Basin`
    table for the steps `fractions * alpha_max` and the damping factors."""
    sh = flow.shoot(problems.unicycle(), N)
    eq = stability.equilibrium(sh)
    bound = stability.euler_bound(
        stability.spectrum(stability.linearize(sh, eq.U, metric="hamiltonian"))
    )
    alpha_max = float(bound.alpha_max)
    table = stability.basin(
        sh,
        steps=[f * alpha_max for f in fractions],
        dampings=dampings,
        n_starts=n_starts,
        seed=SEED,
        spread=SPREAD,
        metric="hamiltonian",
        max_steps=ITERATIONS,
        tol=TOL,
    )
    return dict(shooting=sh, alpha_max=alpha_max, fractions=fractions, basin=table)


def _bars(ax, labels, rows, colors) -> None:
    x = np.arange(len(rows))
    frac = [r.fraction for r in rows]
    ax.bar(x, frac, width=0.62, color=colors, edgecolor="k", linewidth=0.6, zorder=2)
    for xi, r in zip(x, rows, strict=True):
        lines = [f"{r.converged}/{r.starts}"]
        if r.median_steps is not None:
            lines.append(f"{r.median_steps:.0f} its")
        lines += [
            f"{n} {OUTCOME_WORDS.get(k, k)}"
            for k, n in sorted(r.outcomes.items())
            if k != "converged" and n
        ]
        ax.annotate(
            "\n".join(lines),
            (xi, r.fraction),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7.5,
        )
    ax.set_xticks(x, labels)
    ax.set_ylim(0.0, 1.3)
    ax.set_yticks(np.linspace(0.0, 1.0, 6))
    ax.grid(axis="x", visible=False)


def make(out: Path, *, quick: bool = False) -> list[Path]:
    """Draw the figure into `out` (`basin.png`, `basin.pdf`); returns the paths."""
    if quick:
        d = compute(STARTS_QUICK, FRACTIONS_QUICK, DAMPINGS_QUICK)
    else:
        d = compute(STARTS_FULL)
    table = d["basin"]
    descent = [r for r in table.rows if r.method == "descent"]
    shooting = [r for r in table.rows if r.method == "costate shooting"]
    c = _style.COLORS
    fig, (a, b) = _style.figure(
        2, width=_style.WIDTH_DOUBLE, height=3.5, sharey=True, gridspec_kw=dict(width_ratios=(4, 3))
    )
    stable = [f < 1.0 for f in d["fractions"]]
    _bars(
        a,
        [rf"{f:g} $\alpha_{{\max}}$" for f in d["fractions"]],
        descent,
        [c[0] if s else c[1] for s in stable],
    )
    if not all(stable):
        # the forward-Euler bound between the last stable and the first unstable step
        k = stable.index(False)
        a.axvline(k - 0.5, color=c[1], linestyle=":", linewidth=1.2)
        a.text(k - 0.45, 1.13, r"$\alpha_{\max}$", color=c[1], fontsize=8.5, ha="left", va="center")
    a.set_xlabel(rf"descent step $\alpha$ ($\alpha_{{\max}} = {d['alpha_max']:.4g}$)")
    a.set_ylabel("fraction of starts that converge")
    a.set_title("(a) direct: descent, Hamiltonian metric")
    _bars(
        b, [f"$d = {x:g}$" for x in (r.setting for r in shooting)], shooting, [c[2]] * len(shooting)
    )
    b.set_xlabel(r"Newton damping $d$")
    b.set_title("(b) indirect: costate shooting (14)")
    fig.suptitle(
        rf"unicycle, $N = {N}$: {table.n_starts} random starts (spread {SPREAD:g}, seed {SEED}); "
        r"converged: $\max_k|\partial_u H_k| \leq 10^{-6}$ (descent), "
        r"$\lambda(t_f) = \nabla E$ (shooting)",
        fontsize=9.5,
    )
    return _style.save(fig, out, NAME)


def main(argv: list[str] | None = None) -> int:
    """`python figures/basin.py --out DIR [--quick]`."""
    return _plots.command_line(make, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
