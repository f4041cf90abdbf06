r"""Section 6.2: iterations to a Hamiltonian tolerance against $N$, for four metrics
and steps.

On `scalar_regularized` from $U = 0$, `flow.descend` runs until
$\max_k|\partial_u H_k| \leq 10^{-8}$ with

- the identity metric and $\alpha = 1$, the classical direct method: by (56) this is
  the indirect method with step $h$, so the count grows like $N$;
- the identity metric and its optimal step $\alpha_{\text{opt}} = 2/(\mu_{\min} +
  \mu_{\max})$ from `stability.euler_bound` at the equilibrium ($\propto N$: the
  remedy $\alpha h = $ const);
- the Hamiltonian metric $M = \mathrm{diag}(h)$ with the fixed step 1 (the paper's
  $\alpha h = 1$): a flat count;
- Newton ($M = \nabla^2 E^N$, step 1): a handful of iterations at every $N$.

Open markers on dashed lines, drawn over the observed counts (filled markers,
solid lines) so that both show where they agree: the counts
`stability.EulerBound.iterations` predicts from the spectrum of $J$ at the
equilibrium, $\lceil\log(\text{tol}/r_0)/\log\rho(\alpha)\rceil$ ($r_0$ the
starting residual).

Run: `python figures/iterations.py --out DIR [--quick]`.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np

import flow
import stability
from figures import _plots, _style
from flow import metrics, problems


NAME = "iterations"
NS_FULL = (25, 100, 400, 1600)
NS_QUICK = (25, 50)
TOL = 1e-8
#: iteration budget per N for the identity metric with alpha = 1 (it needs ~14 N)
BUDGET_PER_N = 40


def compute(Ns: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Per N: observed iterations (identity alpha=1, identity alpha_opt, Hamiltonian
    step 1, Newton step 1), the predicted ones, and alpha_opt."""
    problem = problems.scalar_regularized()
    keys = (
        "it_id1 it_idopt it_ham it_newton pred_id1 pred_idopt pred_ham alpha_opt alpha_max "
        "gradient_norm"
    ).split()
    rows: dict[str, list[float]] = {k: [] for k in keys}
    for N in Ns:
        sh = flow.shoot(problem, N)
        U0 = sh.zeros()
        r0 = float(jnp.max(jnp.abs(sh.hamiltonian_gradient(U0))))
        # Newton first: its end point (quadratic convergence: |grad E^N|_inf far
        # below the 1e-8 h of the stop) is the equilibrium at which J is linearised.
        newton = flow.descend(sh, U0, metric=metrics.Newton(), step=1.0, max_steps=100, tol=TOL)
        lin = stability.linearize(sh, newton.U, metric="identity")
        spec = stability.spectrum(lin, method="lanczos")
        bound = stability.euler_bound(spec, reduction=TOL / r0)
        h = float(jnp.min(sh.steps))
        rows["it_newton"].append(int(newton.num_steps))
        runs = {
            "it_id1": (metrics.Identity(), 1.0, BUDGET_PER_N * N),
            "it_idopt": (metrics.Identity(), bound.alpha_opt, 1000),
            "it_ham": (metrics.Hamiltonian(), 1.0, 1000),
        }
        for key, (metric, step, budget) in runs.items():
            tr = flow.descend(sh, U0, metric=metric, step=step, max_steps=budget, tol=TOL)
            rows[key].append(int(tr.num_steps))
        rows["gradient_norm"].append(lin.gradient_norm)
        rows["pred_id1"].append(bound.iterations(1.0))
        rows["pred_idopt"].append(bound.iterations(bound.alpha_opt))
        # the Hamiltonian metric with step c is the identity metric with step c/h
        # on a uniform grid (J_H = J_I / h)
        rows["pred_ham"].append(bound.iterations(1.0 / h))
        rows["alpha_opt"].append(bound.alpha_opt)
        rows["alpha_max"].append(bound.alpha_max)
    return {k: np.asarray(v, dtype=np.float64) for k, v in rows.items()} | {"N": np.asarray(Ns)}


def make(out: Path, *, quick: bool = False) -> list[Path]:
    """Draw the figure into `out` (`iterations.png`, `iterations.pdf`); returns the paths."""
    d = compute(NS_QUICK if quick else NS_FULL)
    N = d["N"].astype(np.float64)
    fig, ax = _style.figure(1, width=_style.WIDTH_SINGLE + 0.6, height=4.9)
    series = (
        ("it_id1", "pred_id1", r"identity, $\alpha = 1$", "o"),
        ("it_idopt", "pred_idopt", r"identity, $\alpha_{\mathrm{opt}}$ (from euler_bound)", "s"),
        ("it_ham", "pred_ham", r"Hamiltonian $M = \mathrm{diag}(h)$, step 1", "^"),
        ("it_newton", None, r"Newton, step 1", "D"),
    )
    for i, (key, pred, label, marker) in enumerate(series):
        slope = _plots.loglog_slope(N, d[key])
        c = _style.COLORS[i]
        ax.loglog(
            N,
            d[key],
            color=c,
            marker=marker,
            markersize=5,
            zorder=2,
            label=f"{label}: slope {_plots.fmt_slope(slope)}",
        )
        if pred is not None:
            # on top, hollow and larger: a ring around the observed marker where the
            # two agree, a separate ring where they do not
            ax.loglog(
                N,
                d[pred],
                color=c,
                linestyle=(0, (3, 2)),
                linewidth=1.1,
                marker=marker,
                markersize=9.5,
                markerfacecolor="none",
                markeredgewidth=1.1,
                zorder=3,
            )
        ax.annotate(
            f"{d[key][-1]:.0f}",
            (N[-1], d[key][-1]),
            xytext=(8, 0),  # clear of the prediction's ring
            textcoords="offset points",
            va="center",
            fontsize=7.5,
            color=c,
        )
    ax.plot(
        [],
        [],
        color="0.4",
        linestyle=(0, (3, 2)),
        linewidth=1.1,
        marker="o",
        markersize=9.5,
        markerfacecolor="none",
        label="predicted by stability.euler_bound (open markers, dashed)",
    )
    ax.set_xlabel(r"number of intervals $N$ ($h = 1/N$)")
    ax.set_ylabel(r"iterations to $\max|\partial_u H_k| \leq 10^{-8}$")
    ax.set_title(
        r"Section 6.2: the direct method with $\alpha = 1$ needs $O(N)$ iterations;"
        "\n"
        r"$\alpha h$ = const, the Hamiltonian metric and Newton do not",
    )
    # below the axes: the steep alpha = 1 line crosses the upper left
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), fontsize=7.5)
    top = max(float(np.max(d["it_id1"])), float(np.max(d["pred_id1"])))
    ax.set_ylim(1, max(top * 3, 100))
    return _style.save(fig, out, NAME)


def main(argv: list[str] | None = None) -> int:
    """`python figures/iterations.py --out DIR [--quick]`."""
    return _plots.command_line(make, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
