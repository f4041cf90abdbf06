r"""The mesh study: the forward-Euler step bound $\alpha_{\max}$ against $N$ for the
identity and the Hamiltonian metric.

`stability.mesh_study` on `scalar_regularized` finds the equilibrium at each $N$
(continuation from the previous grid), the ends of the spectrum of
$J = -M^{-1}\nabla^2 E^N$ (Lanczos) and the bounds of `stability.euler_bound`.
Under the identity metric the eigenvalues of $\nabla^2 E^N$ are $O(h)$ (Lemma 2:
$\nabla E^N = h\,\partial H/\partial U$), so $\alpha_{\max} \propto N$ and a fixed
step is ever more conservative; under the Hamiltonian metric $M = \mathrm{diag}(h)$
the spectrum, and with it $\alpha_{\max}$, converges (the remedy $\alpha h = 1$ of
section 6.2, eq. (56)).

Left: $\alpha_{\max}$ (solid) and $\alpha_{\text{opt}}$ (dashed) with the fitted
exponents of $N$; right: the two ends of the spectrum of $J$.

Run: `python figures/mesh.py --out DIR [--quick]`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import stability
from figures import _plots, _style
from flow import problems


NAME = "mesh"
NS_FULL = (25, 100, 400, 1600, 6400)
NS_QUICK = (25, 50)
METRICS = ("identity", "hamiltonian")


def compute(Ns: tuple[int, ...]) -> dict[str, stability.MeshStudy]:
    """One `stability.mesh_study` per metric (one problem object, so the kernels
    compile once per N)."""
    problem = problems.scalar_regularized()
    return {m: stability.mesh_study(problem, list(Ns), metric=m) for m in METRICS}


def make(out: Path, *, quick: bool = False) -> list[Path]:
    """Draw the figure into `out` (`mesh.png`, `mesh.pdf`); returns the paths."""
    studies = compute(NS_QUICK if quick else NS_FULL)
    fig, (a, b) = _style.figure(2, width=_style.WIDTH_DOUBLE, height=4.6)
    names = {"identity": "identity", "hamiltonian": "Hamiltonian"}
    for i, m in enumerate(METRICS):
        ms = studies[m]
        N = ms.N.astype(np.float64)
        c = _style.COLORS[i]
        p = _plots.fmt_slope(ms.exponent("alpha_max"))
        a.loglog(
            N,
            ms.alpha_max,
            color=c,
            marker="o",
            label=rf"{names[m]}: $\alpha_{{\max}} \propto N^{{{p}}}$",
        )
        a.loglog(
            N,
            ms.alpha_opt,
            color=c,
            linestyle="--",
            marker=".",
            label=rf"{names[m]}: $\alpha_{{\mathrm{{opt}}}}$",
        )
        b.loglog(
            N, -ms.stiff, color=c, marker="v", label=rf"{names[m]}: stiff end (largest $|\mu|$)"
        )
        b.loglog(
            N,
            -ms.slow,
            color=c,
            marker="^",
            linestyle="--",
            markerfacecolor="none",
            label=rf"{names[m]}: slow end (smallest $|\mu|$)",
        )
    a.set_xlabel(r"number of intervals $N$ ($h = 1/N$)")
    a.set_ylabel(r"step bounds $\alpha_{\max}$, $\alpha_{\mathrm{opt}}$ (euler_bound)")
    a.set_title(r"(a) forward-Euler step bounds")
    a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=7.5)
    b.set_xlabel(r"number of intervals $N$ ($h = 1/N$)")
    b.set_ylabel(r"$|\mu|$, eigenvalues of $J = -M^{-1}\nabla^2 E^N$")
    b.set_title(r"(b) the ends of the spectrum of $J$")
    b.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=7.5)
    fig.suptitle(
        "Mesh study on scalar_regularized (stability.mesh_study): under the identity metric "
        r"$M = I$"
        "\n"
        r"the spectrum of $J$ shrinks like $h$ and $\alpha_{\max}$ grows like $N$; "
        r"under the Hamiltonian metric $M = \mathrm{diag}(h)$ both converge",
        fontsize=10,
    )
    return _style.save(fig, out, NAME)


def main(argv: list[str] | None = None) -> int:
    """`python figures/mesh.py --out DIR [--quick]`."""
    return _plots.command_line(make, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
