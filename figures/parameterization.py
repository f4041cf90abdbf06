r"""Remark 5.13: a control parameterization must keep $\partial_C U^N$ of full rank.

With $U = BC$ (eqs. (40)-(43)) the direct method solves $(Q^N_C)$ and stops at
$\nabla_C E^N = B^T\nabla_U E^N = 0$ (eq. (52)). That implies $\nabla_U E^N = 0$
(eq. (51)), hence $\partial_u H = 0$ (Lemma 2), only when $\ker B^T = \{0\}$: when
$B$ has full *row* rank $N m$. On `scalar_regularized`, $N = 20$, Euler:

- left, the singular values of $B^T$ ($N$ of them: those of $B$ from
  `flow.controls.rank_report`, and zeros for the $N - \mathrm{rank}$ directions of
  $\ker B^T$, drawn on the floor) for several bases sampled at the interval
  midpoints: one block per interval ($B = I$), Chebyshev polynomials of degree 25
  (26 columns: dependent columns, yet $\ker B^T = \{0\}$), hat functions on 11
  nodes, Legendre polynomials of degree 3 and 1;
- right, descent in $C$ (`flow.descend` on `flow.controls.parameterize`, the
  $L^2$ metric `flow.controls.l2_metric`, step 1, stopped at
  $\|\nabla_C E^N\|_\infty \le 10^{-12}$; colour and marker: the basis): what the
  optimizer sees, $\|B^T g\|_\infty$ (solid), against the original problem's
  Hamiltonian residual $\max_k|\partial_u H_k|$ (dashed). With a low-degree basis
  the optimizer reports convergence at a spurious point ($\|B^T g\|$ at rounding,
  $\max|\partial_u H|$ not small: `flow.controls.spurious_check`); with $B = I$
  both vanish.

Run: `python figures/parameterization.py --out DIR [--quick]` (`--quick`: two of
the three descents).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import flow
from figures import _plots, _style
from flow import controls, problems


NAME = "parameterization"
N = 20
TOL = 1e-12  # stop on ||grad_C E^N||_inf
ITERATIONS = 400
FLOOR = 1e-17  # zero singular values / exact zeros on the log axis


def bases(grid: np.ndarray) -> dict[str, controls.AbstractBasis]:
    """The bases of the figure, keyed by a short label."""
    return {
        "one block per interval ($B = I$)": controls.BSpline(0, grid),
        "Chebyshev, degree 25": controls.Chebyshev(25),
        "hat, 11 nodes": controls.Hat(10),
        "Legendre, degree 3": controls.Legendre(3),
        "Legendre, degree 1": controls.Legendre(1),
    }


#: short names of the bases in the right panel
SHORT = {
    "Legendre, degree 1": "Legendre 1",
    "Legendre, degree 3": "Legendre 3",
    "one block per interval ($B = I$)": "$B = I$",
}

#: the bases descended in the right panel (quick: the first and the last)
DESCENDED = ("Legendre, degree 1", "Legendre, degree 3", "one block per interval ($B = I$)")


def _descent(sh: flow.Shooting, basis: controls.AbstractBasis) -> dict:
    param = controls.parameterize(sh, basis)
    trace = flow.descend(
        param,
        param.zeros(),
        metric=controls.l2_metric(param),
        step=1.0,
        max_steps=ITERATIONS,
        tol=TOL,
        stop_on="gradient",
        save_iterates=True,
        throw=False,
    )
    n = int(trace.num_steps)
    inner, P = controls.original(param), param.scheme
    iterates = trace.iterates[: n + 1]
    # max_k |dH/du_k| of the original problem at every iterate U_i = B C_i (Lemma 2)
    dH = jax.vmap(lambda C: jnp.max(jnp.abs(inner.hamiltonian_gradient(P.controls(C)))))(iterates)
    return dict(
        trace=trace,
        gradient_C=np.asarray(trace.gradient_norm)[: n + 1],
        hamiltonian=np.asarray(dH),
        check=controls.spurious_check(param, trace.U),
    )


def compute(descended: tuple[str, ...] = DESCENDED) -> dict:
    """Rank reports of every basis, and the descent histories of the `descended` ones."""
    sh = flow.shoot(problems.scalar_regularized(), N)
    bs = bases(np.asarray(sh.grid))
    ranks = {k: controls.rank_report(b, sh) for k, b in bs.items()}
    runs = {k: _descent(sh, bs[k]) for k in descended}
    return dict(shooting=sh, ranks=ranks, runs=runs)


def make(out: Path, *, quick: bool = False) -> list[Path]:
    """Draw the figure into `out` (`parameterization.png`, `.pdf`); returns the paths."""
    d = compute((DESCENDED[0], DESCENDED[-1]) if quick else DESCENDED)
    colors = dict(zip(d["ranks"], _style.COLORS, strict=False))
    markers = dict(zip(d["ranks"], ("o", "s", "^", "D", "v"), strict=True))
    fig, (a, b) = _style.figure(2, width=_style.WIDTH_DOUBLE, height=3.6)

    rows = N
    i = np.arange(1, rows + 1)
    for k, rep in d["ranks"].items():
        s = np.zeros(rows)
        s[: rep.rank] = np.asarray(rep.singular_values)[: rep.rank]
        label = f"{k}: {rep.columns}, {rep.rank}, {rep.invisible_dimension}"
        a.plot(
            i,
            s / s[0],
            color=colors[k],
            marker=markers[k],
            markersize=4.5,
            markerfacecolor="none" if rep.invisible_dimension else colors[k],
            linewidth=1.0,
            label=label,
        )
    a.annotate(
        "zeros: $\\ker B^T$\n(unseen by $C$)",
        (15.0, 0.015),
        xytext=(15.5, 0.2),
        ha="center",
        va="bottom",
        fontsize=7.5,
        color="0.3",
        arrowprops=dict(arrowstyle="->", color="0.4", linewidth=0.8),
    )
    a.set_xlabel(r"index $i$ ($N = 20$ rows of $B$: $N$ singular values of $B^T$)")
    a.set_ylabel(r"$\sigma_i(B^T) / \sigma_1$")
    a.set_xticks([1, 5, 10, 15, 20])
    a.set_ylim(-0.05, 1.75)
    a.set_yticks(np.linspace(0.0, 1.0, 6))
    a.set_title(r"(a) singular values of $B = \partial U/\partial C$")
    a.legend(
        loc="upper right",
        fontsize=6.8,
        title=r"basis: columns $p$, rank, $\dim\ker B^T$",
        title_fontsize=6.8,
    )

    for j, (k, run) in enumerate(d["runs"].items()):
        it = np.arange(run["gradient_C"].size)
        chk = run["check"]
        b.semilogy(
            it,
            np.maximum(run["gradient_C"], FLOOR),
            color=colors[k],
            marker=markers[k],
            markevery=(2 * j, 6),  # staggered: the curves in C nearly coincide
            markersize=4.5,
            zorder=3 - j,
        )
        b.semilogy(
            it,
            np.maximum(run["hamiltonian"], FLOOR),
            color=colors[k],
            linestyle="--",
            linewidth=1.3,
        )
        name = SHORT[k]
        if chk.spurious:
            b.annotate(
                f"{name}: spurious, {chk.hamiltonian_norm:.1e}",
                (it[-1], run["hamiltonian"][-1]),
                xytext=(0, -4),
                textcoords="offset points",
                ha="right",
                va="top",
                fontsize=7.5,
                color=colors[k],
            )
        else:
            b.text(
                0.98,
                0.03,
                f"{name}: stationary, {chk.hamiltonian_norm:.1e}",
                transform=b.transAxes,
                ha="right",
                va="bottom",
                fontsize=7.5,
                color=colors[k],
            )
    b.plot(
        [],
        [],
        color="0.2",
        label=r"$\|\nabla_C E^N\|_\infty = \|B^T g\|_\infty$ (what descent sees)",
    )
    b.plot(
        [],
        [],
        color="0.2",
        linestyle="--",
        label=r"$\max_k|\partial_u H_k|$ of the original problem",
    )
    b.axhline(
        TOL,
        color="0.3",
        linestyle=":",
        linewidth=0.9,
        label=r"stop: $\|\nabla_C E^N\|_\infty \leq 10^{-12}$",
    )
    b.set_xlabel("descent iteration in $C$")
    b.set_ylabel(r"$\|\nabla_C E^N\|_\infty$ and $\max_k|\partial_u H_k|$")
    b.set_ylim(1e-16, 1e4)
    b.set_title(r"(b) descent in $C$ ($L^2$ metric, step 1)")
    # two legends: line style (what is measured), upper right; colour and marker (the
    # basis), left, between the stop line and the curves (which start at 1 and fall)
    from matplotlib.lines import Line2D

    styles = b.legend(loc="upper right", fontsize=7.2)
    b.add_artist(styles)
    b.legend(
        handles=[
            Line2D([], [], color=colors[k], marker=markers[k], markersize=4.5, label=SHORT[k])
            for k in d["runs"]
        ],
        loc="lower left",
        bbox_to_anchor=(0.0, 0.22),
        fontsize=7.2,
        title="colour: the basis",
        title_fontsize=7.2,
    )
    fig.suptitle(
        r"Remark 5.13 on scalar_regularized, $N = 20$: "
        r"$\nabla_C E^N = B^T\nabla_U E^N = 0$ (52) implies (51) only if $\ker B^T = \{0\}$",
        fontsize=10,
    )
    return _style.save(fig, out, NAME)


def main(argv: list[str] | None = None) -> int:
    """`python figures/parameterization.py --out DIR [--quick]`."""
    return _plots.command_line(make, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
