r"""Section 6.3: the region of convergence of the direct and the indirect method.

By Lemma 2 the direct method's step (37) with the identity metric reads
$U_{i+1} = U_i - \alpha h\,\partial H/\partial U_i$ (56): it *is* the indirect
method's flow $dU/d\tau = -\partial H/\partial U$ (the Hamiltonian metric
$M = \mathrm{diag}(h)$) discretised with the effective step $\alpha h < \alpha$. So
the same $\alpha$ that the direct method takes safely can be far above the forward-Euler
bound of the indirect method, and the paper's remedy is to take the indirect step
$\alpha h$: the iterates are then the direct method's, to rounding.

On `unicycle` ($N = 20$, Euler, $h = 0.1$), from 128 random starts
$U_0 = U^* + \sigma\xi$ per spread $\sigma$ ($U^*$ the minimiser from
`stability.equilibrium`, $\xi$ standard normal, seed 0), `stability.basin` runs

- the direct method: descent with the identity metric at
  $\alpha = 0.8\,\alpha_{\max}^{I}$ (`stability.euler_bound` at $U^*$);
- the indirect method's flow: descent with the Hamiltonian metric at the same
  $\alpha$ ($= 8\,\alpha_{\max}^{H}$, since $\alpha_{\max}^{H} = h\,\alpha_{\max}^{I}$) and
  at $\alpha h$;
- the indirect method's Newton iteration: Newton with a backtracking line search on
  the discrete necessary conditions (36) (`conditions=True`), from the same controls.

Descent converges when $\max_k|\partial_u H_k| \le 10^{-6}$ within 2000 steps,
Newton when its step is below $10^{-10}$ (relative). (a) The fraction that converges
against $\sigma$, with 95 % Wilson intervals for a binomial proportion; (b) the
median number of iterations of the converged starts. The direct method and the
Hamiltonian metric at $\alpha h$ converge from every start, in identical iterations;
the Hamiltonian metric at $\alpha$ from none (its step is unstable at $U^*$); Newton
on (36) converges in a few iterations but from fewer starts as $\sigma$ grows.
(Costate shooting is left out: at this size its vmapped root find takes about 150 s per
spread, and the count of converged guesses depends on the ODE step budget.)

Run: `python figures/basin.py --out DIR [--quick]` (`--quick`: $N = 10$, 16 starts,
two spreads).
"""

from __future__ import annotations

from pathlib import Path
from statistics import NormalDist

import numpy as np

import flow
import stability
from figures import _plots, _style
from flow import problems


NAME = "basin"
N_FULL = 20
N_QUICK = 10
SEED = 0
TOL = 1e-6
ITERATIONS = 2000
#: the direct method's step as a fraction of alpha_max of the identity metric at U*
ALPHA_FRACTION = 0.8
SPREADS_FULL = (0.1, 0.3, 1.0, 3.0, 10.0)
SPREADS_QUICK = (0.1, 3.0)
STARTS_FULL = 128
STARTS_QUICK = 16
CONFIDENCE = 0.95
#: the curves: key -> (legend label, colour, line style, marker, horizontal dodge)
CURVES = {
    "direct": (
        r"direct: identity metric, step $\alpha$",
        _style.COLORS[0],
        "-",
        "o",
        1 / 1.08,
    ),
    "indirect alpha h": (
        r"indirect flow: Hamiltonian metric, step $\alpha h$ (= direct by (56))",
        _style.COLORS[2],
        "--",
        "x",
        1.0,
    ),
    "indirect alpha": (
        r"indirect flow: Hamiltonian metric, step $\alpha$",
        _style.COLORS[1],
        ":",
        "v",
        1.08,
    ),
    "newton": (
        "indirect: Newton on (36), line search",
        _style.COLORS[3],
        "-.",
        "s",
        1.16,
    ),
}


def wilson_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    r"""The Wilson score interval of a binomial proportion $\hat p = k/n$:
    $\bigl(\hat p + \tfrac{z^2}{2n} \pm z\sqrt{\hat p(1-\hat p)/n + z^2/4n^2}\bigr)
    / (1 + z^2/n)$ with $z$ the $(1 + \text{confidence})/2$ normal quantile."""
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, n >= 1; got k = {k}, n = {n}.")
    z = NormalDist().inv_cdf(0.5 + 0.5 * confidence)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _point(row: stability.BasinRow) -> dict:
    low, high = wilson_interval(row.converged, row.starts)
    return dict(
        converged=row.converged,
        starts=row.starts,
        fraction=row.fraction,
        low=low,
        high=high,
        median_steps=row.median_steps,
        outcomes=row.outcomes,
    )


def compute(
    N: int = N_FULL,
    spreads: tuple[float, ...] = SPREADS_FULL,
    n_starts: int = STARTS_FULL,
) -> dict:
    """The minimiser, both forward-Euler bounds there, and per spread the `stability.basin`
    tables of the identity metric (step alpha) and of the Hamiltonian metric (steps
    alpha and alpha h, plus Newton on (36)), from the same starts."""
    sh = flow.shoot(problems.unicycle(), N)
    h = float(sh.steps[0])
    eq = stability.equilibrium(sh)
    bounds = {
        metric: float(
            stability.euler_bound(
                stability.spectrum(stability.linearize(sh, eq, metric=metric))
            ).alpha_max
        )
        for metric in ("identity", "hamiltonian")
    }
    alpha = ALPHA_FRACTION * bounds["identity"]
    common = dict(
        dampings=(),
        n_starts=n_starts,
        seed=SEED,
        center=eq.U,
        tol=TOL,
        max_steps=ITERATIONS,
    )
    curves: dict[str, list[dict]] = {key: [] for key in CURVES}
    tables = []
    for spread in spreads:
        direct = stability.basin(sh, steps=(alpha,), metric="identity", spread=spread, **common)
        indirect = stability.basin(
            sh,
            steps=(alpha, alpha * h),
            metric="hamiltonian",
            spread=spread,
            conditions=True,
            **common,
        )
        rows = indirect.rows
        curves["direct"].append(_point(direct.rows[0]))
        curves["indirect alpha"].append(_point(rows[0]))
        curves["indirect alpha h"].append(_point(rows[1]))
        curves["newton"].append(_point(rows[2]))
        tables.append((spread, direct, indirect))
    return dict(
        shooting=sh,
        h=h,
        equilibrium=eq,
        alpha_max=bounds,
        alpha=alpha,
        spreads=tuple(spreads),
        n_starts=n_starts,
        curves=curves,
        tables=tables,
    )


def make(out: Path, *, quick: bool = False) -> list[Path]:
    """Draw the figure into `out` (`basin.png`, `basin.pdf`); returns the paths."""
    if quick:
        d = compute(N_QUICK, SPREADS_QUICK, STARTS_QUICK)
    else:
        d = compute()
    return draw(d, out)


def draw(d: dict, out: Path) -> list[Path]:
    """Draw the figure from the data of `compute` into `out` (`basin.png`,
    `basin.pdf`); returns the paths."""
    spreads = np.asarray(d["spreads"])
    fig, (a, b) = _style.figure(2, width=_style.WIDTH_DOUBLE, height=3.9)
    handles = []
    for key, (label, color, ls, marker, dodge) in CURVES.items():
        pts = d["curves"][key]
        x = spreads * dodge
        frac = np.array([p["fraction"] for p in pts])
        err = np.array(
            [[p["fraction"] - p["low"] for p in pts], [p["high"] - p["fraction"] for p in pts]]
        )
        hd = a.errorbar(
            x,
            frac,
            yerr=err,
            color=color,
            linestyle=ls,
            marker=marker,
            markersize=6 if marker == "x" else 5,
            markerfacecolor="none" if marker != "x" else color,
            capsize=3,
            elinewidth=1.0,
            label=label,
        )
        handles.append(hd)
        med = np.array([np.nan if p["median_steps"] is None else p["median_steps"] for p in pts])
        if np.isfinite(med).any():
            b.plot(
                x,
                med,
                color=color,
                linestyle=ls,
                marker=marker,
                markerfacecolor="none" if marker != "x" else color,
            )
    a.set_xscale("log")
    a.set_ylim(-0.05, 1.08)
    a.set_xlabel(r"spread $\sigma$ of the starts $U^* + \sigma\xi$")
    a.set_ylabel("fraction of starts that converge")
    a.set_title(f"(a) region of convergence ({d['n_starts']} starts, 95% Wilson)")
    b.set_xscale("log")
    b.set_yscale("log")
    b.set_xlabel(r"spread $\sigma$")
    b.set_ylabel("median iterations (converged starts)")
    b.set_title("(b) the price: iterations")
    b.text(
        0.03,
        0.5,
        r"Hamiltonian metric at $\alpha$: no start converges",
        transform=b.transAxes,
        fontsize=7.5,
        color=CURVES["indirect alpha"][1],
    )
    fig.legend(handles=handles, loc="lower center", ncol=2, bbox_to_anchor=(0.5, -0.12), fontsize=8)
    am = d["alpha_max"]
    fig.suptitle(
        rf"unicycle, $N = {d['shooting'].N}$, $h = {d['h']:g}$: "
        rf"$\alpha = {ALPHA_FRACTION:g}\,\alpha_{{\max}}^I = {d['alpha']:.3g}$ "
        rf"($\alpha_{{\max}}^I = {am['identity']:.3g}$, "
        rf"$\alpha_{{\max}}^H = {am['hamiltonian']:.3g}$ at $U^*$)",
        fontsize=9.5,
    )
    return _style.save(fig, out, NAME)


def main(argv: list[str] | None = None) -> int:
    """`python figures/basin.py --out DIR [--quick]`."""
    return _plots.command_line(make, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
