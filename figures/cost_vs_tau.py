r"""The discrete algorithm is forward Euler on the gradient flow: cost against the
flow time $\tau$.

On `scalar_regularized` ($N = 100$, Hamiltonian metric $M = \mathrm{diag}(h)$, from
$U = 0$) the gradient flow $dU/d\tau = -M^{-1}\nabla E^N(U)$ (50) is integrated by
`flow.gradient_flow` (Tsit5, tight tolerances), and the discrete algorithm (37)
$U_{i+1} = U_i - \alpha M^{-1}\nabla E^N(U_i)$ is replayed by `flow.descend`
(`throw=False`) at several constant steps, its iterate $i$ placed at
$\tau_i = i\alpha$. Below the forward-Euler bound $\alpha_{\max}$
(`stability.euler_bound` at the minimiser) the replays follow the flow, closer as
$\alpha$ shrinks (the legend gives `flow.compare`'s $\max_i\|U_i - U(\tau_i)\|_\infty$
on $[0, 8]$: first order in $\alpha$); above it the replay diverges, and `descend`
reports the iteration (marked with a cross). (`--quick` compares only the smallest
step with the flow.)

Left: $E^N$ on $[0, 8]$; right: $E^N - E^N(U^*)$ on a log scale until the divergence
is reported ($U^*$: the end of the $\alpha = 0.1$ replay, $\max|\partial_u H| \leq 10^{-10}$).

Run: `python figures/cost_vs_tau.py --out DIR [--quick]`.
"""

from __future__ import annotations

from pathlib import Path

import diffrax
import jax.numpy as jnp
import numpy as np

import flow
import stability
from figures import _plots, _style
from flow import metrics, problems


NAME = "cost_vs_tau"
N_FULL = 100
N_QUICK = 20
#: constant steps (Hamiltonian metric, so O(1) at every N); the last is above alpha_max
STEPS = (0.1, 0.4, 1.0, 3.0)
ITERATIONS = 600  # budget of every replay (alpha = 0.1 needs ~250)
WINDOW = 8.0  # tau window of the left panel and of flow.compare
#: the stable steps' colours, and marker / line style per step (colour AND style
#: tell the replays apart); a step above alpha_max is drawn in vermillion
STABLE_COLORS = (_style.COLORS[0], _style.COLORS[2], _style.COLORS[3])
MARKERS = ("o", "s", "^", "D")
LINESTYLES = ("-", "--", "-.", ":")
FLOOR = 1e-16  # relative rounding floor of E^N - E* on the log axis


def compute(N: int, *, compare_all: bool = True) -> dict:
    """The flow on a tau grid, the replays, their comparisons with the flow (all
    stable steps, or only the smallest one: each comparison compiles anew), E* and
    alpha_max."""
    sh = flow.shoot(problems.scalar_regularized(), N)
    U0 = sh.zeros()
    metric = metrics.Hamiltonian()
    runs = []
    tau_end = WINDOW
    for alpha in STEPS:
        # converging replays stop below the rounding floor of E^N - E* (max|dH/du|
        # <= 1e-10); the diverging one runs until descend reports the divergence.
        # One iteration budget for all, so that descend compiles once.
        tr = flow.descend(
            sh,
            U0,
            metric=metric,
            step=alpha,
            max_steps=ITERATIONS,
            tol=1e-10,
            save_iterates=True,
            throw=False,
        )
        runs.append(dict(alpha=alpha, trace=tr))
        tau_end = max(tau_end, float(tr.taus[int(tr.num_steps)]))
    # the minimiser U*: the end of the first converged replay (max|dH/du| <= 1e-10, so
    # E^N there is E* to ~1e-20); alpha_max from the spectrum of J at it
    best = next(r["trace"] for r in runs if r["trace"].success)
    lin = stability.linearize(sh, best.U, metric=metric)
    bound = stability.euler_bound(stability.spectrum(lin))
    taus = np.linspace(0.0, tau_end, 801)
    sol = flow.gradient_flow(
        sh,
        U0,
        metric=metric,
        tol=None,
        solver=diffrax.Tsit5(),
        rtol=1e-10,
        atol=1e-12,
        tau1=float(taus[-1]),
        saveat=diffrax.SaveAt(ts=jnp.asarray(taus), dense=True),
    )
    for i, run in enumerate(runs):
        if run["alpha"] < bound.alpha_max and (compare_all or i == 0):
            run["compare"] = flow.compare(run["trace"], sol, tau_max=WINDOW)
    return dict(shooting=sh, flow=sol, runs=runs, cost_star=float(sh.cost(best.U)), bound=bound)


def make(out: Path, *, quick: bool = False) -> list[Path]:
    """Draw the figure into `out` (`cost_vs_tau.png`, `cost_vs_tau.pdf`); returns the
    paths."""
    d = compute(N_QUICK, compare_all=False) if quick else compute(N_FULL)
    sol, E_star, amax = d["flow"], d["cost_star"], d["bound"].alpha_max
    floor = FLOOR * abs(E_star)
    tau = np.asarray(sol.tau)
    cost = np.asarray(sol.cost)
    fig, (a, b) = _style.figure(2, width=_style.WIDTH_DOUBLE, height=4.3)
    inw = tau <= WINDOW
    a.plot(tau[inw], cost[inw], color="k", linewidth=2.2, label="gradient flow (50)", zorder=2)
    b.semilogy(
        tau,
        np.maximum(cost - E_star, floor),
        color="k",
        linewidth=2.2,
        label="gradient flow (50)",
        zorder=2,
    )
    for i, run in enumerate(d["runs"]):
        tr, alpha = run["trace"], run["alpha"]
        n = int(tr.num_steps)
        t_i = np.asarray(tr.taus)[: n + 1]
        c_i = np.asarray(tr.cost)[: n + 1]
        color = _style.COLORS[1] if alpha >= amax else STABLE_COLORS[i % 3]
        style = dict(
            color=color,
            marker=MARKERS[i % 4],
            markersize=4,
            linestyle=LINESTYLES[i % 4],
            linewidth=1.1,
        )
        label = rf"$\alpha = {alpha:g}$ = {alpha / amax:.2f} $\alpha_{{\max}}$"
        if "compare" in run:
            label += f", max dist {run['compare'].max_distance:.1e}"
        every = max(1, round(0.4 / alpha))  # a marker every ~0.4 in tau
        keep = t_i <= WINDOW
        a.plot(t_i[keep], c_i[keep], markevery=every, label=label, **style)
        b.semilogy(t_i, np.maximum(c_i - E_star, floor), markevery=every, **style)
        if tr.result == flow.RESULTS.diverged:
            j = int(tr.diverged_at)
            _plots.mark_divergence(
                b,
                t_i[j],
                max(c_i[j] - E_star, floor),
                text=f"descend: diverged\nat iteration {j}",
                color=color,
                ha="right",
            )
    a.axhline(E_star, color="0.5", linestyle=":", linewidth=1.0, label=r"$E^N(U^*)$")
    a.set_xlabel(r"flow time $\tau = \sum_i \alpha_i$")
    a.set_ylabel(r"cost $E^N(U)$")
    a.set_title(rf"(a) the replays follow the flow ($\tau \leq {WINDOW:g}$)")
    lo, hi = E_star, float(cost[0])
    a.set_ylim(lo - 0.08 * (hi - lo), hi + 0.1 * (hi - lo))
    b.set_xlabel(r"flow time $\tau = \sum_i \alpha_i$")
    b.set_ylabel(r"$E^N(U) - E^N(U^*)$")
    b.set_title(r"(b) above $\alpha_{\max}$ the replay diverges")
    top = max(float(np.max(np.asarray(r["trace"].cost))) for r in d["runs"]) - E_star
    b.set_ylim(floor / 3, max(top, 1.0) * 1e5)
    # one legend for both panels (the same lines), below them: clear of the data
    fig.legend(
        handles=a.get_legend_handles_labels()[0],
        loc="outside lower center",
        ncol=2,
        fontsize=7.5,
    )
    fig.suptitle(
        rf"scalar_regularized, $N = {d['shooting'].N}$, Hamiltonian metric: descent with "
        r"step $\alpha$ is forward Euler on the flow (50)"
        "\n"
        rf"stable below $\alpha_{{\max}} = {amax:.4g}$ (stability.euler_bound); "
        r"max dist $= \max_i\|U_i - U(\tau_i)\|_\infty$ on $\tau \leq 8$ (flow.compare)",
        fontsize=10,
    )
    return _style.save(fig, out, NAME)


def main(argv: list[str] | None = None) -> int:
    """`python figures/cost_vs_tau.py --out DIR [--quick]`."""
    return _plots.command_line(make, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
