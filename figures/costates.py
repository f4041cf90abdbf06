r"""Costates over time from the direct recursion and from the indirect routes.

On `scalar_regularized` the costates of one problem are computed by every route
of [`flow.indirect.costate_report`][flow.indirect.costate_report]:

- the direct method's discrete adjoint recursion (23), (25) at its optimum
  (`flow.indirect.direct_optimum`: Newton-metric descent to
  $\max_k|\partial_u H_k| \le 10^{-10}$); $\lambda_k = \partial E^N/\partial x_{k+1}$
  is drawn at $t_{k+1}$;
- Newton's method on the discrete necessary conditions (36)
  (`solve_conditions`, started from the zero control): by Proposition 4.5 the
  same numbers, to rounding;
- classic costate shooting on the continuous conditions (14) (`costate_shooting`,
  Tsit5, rtol $10^{-10}$): the continuous $\lambda(t)$;
- the continuous (optimize-then-discretize) adjoint at the direct optimum
  (`continuous_adjoint_gradient`): $\lambda(t_{k+1})$ of the costate ODE with the
  piecewise-constant optimal controls.

Left: the costate over time at a coarse $N$. Right: the largest distance of each
route from the direct costates against $N$: rounding for (36), first order ($O(h)$,
slope $-1$ in $N$) for the continuous routes, since Euler's $\lambda_k$ is a
first-order approximation of $\lambda(t_{k+1})$ (and of $\lambda(t_k)$).

Run: `python figures/costates.py --out DIR [--quick]` (`--quick`: $N = 10$ only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import flow
from figures import _plots, _style
from flow import indirect, problems


NAME = "costates"
N_TIME = 10  # the grid of the left panel (coarse, so that the O(h) offset shows)
NS_FULL = (10, 20, 40, 80, 160)
NS_QUICK = (10,)  # one report: the compilation per N dominates the quick run
RTOL, ATOL = 1e-10, 1e-12  # ODE tolerances of costate shooting and the adjoint
FLOOR = 1e-17  # exact zeros (bitwise-equal costates) are drawn here on the log axis
#: the routes of flow.indirect.costate_report, in drawing order
ROUTES = ("conditions", "shooting", "shooting_at_tk", "adjoint")


def compute(Ns: tuple[int, ...], N_time: int = N_TIME) -> dict:
    """One `costate_report` per N (the first of them, `N_time`, also drawn over
    time), and the costate-shooting trajectory lambda(t) on a fine time grid.

    Returns `reports` ({N: CostateReport}), `t` and `lam` (lambda(t) of costate
    shooting, user state only), `differences` ({route: array over Ns}) and the
    fitted log-log `slopes` ({route: slope against N})."""
    problem = problems.scalar_regularized()
    reports = {}
    for N in sorted({N_time, *Ns}):
        reports[N] = indirect.costate_report(flow.shoot(problem, N), rtol=RTOL, atol=ATOL)
    first = reports[N_time]
    n = problem.state_dim
    # the same call costate_report makes (same guess, same tolerances): its dense
    # output gives lambda(t) between the grid points
    traj = indirect.costate_shooting(
        problem, np.asarray(first.direct)[0, :n], rtol=RTOL, atol=ATOL, throw=False
    )
    t = np.linspace(problem.t0, problem.tf, 401)
    lam = np.asarray(traj.costates(t))[:, :n]
    differences = {r: np.array([reports[N].differences[r] for N in Ns]) for r in ROUTES}
    x = np.asarray(Ns, dtype=np.float64)
    slopes = {r: _plots.loglog_slope(x, differences[r]) for r in ROUTES}
    return dict(
        problem=problem,
        reports=reports,
        N_time=N_time,
        Ns=tuple(Ns),
        t=t,
        lam=lam,
        trajectory=traj,
        differences=differences,
        slopes=slopes,
    )


def make(out: Path, *, quick: bool = False) -> list[Path]:
    """Draw the figure into `out` (`costates.png`, `costates.pdf`); returns the paths."""
    d = compute(NS_QUICK if quick else NS_FULL)
    rep = d["reports"][d["N_time"]]
    grid = np.asarray(rep.grid)
    t_next = grid[1:]
    c = _style.COLORS
    fig, (a, b) = _style.figure(2, width=_style.WIDTH_DOUBLE, height=3.7)

    a.plot(
        d["t"],
        d["lam"][:, 0],
        color="k",
        linewidth=1.8,
        label=r"costate shooting (14): $\lambda(t)$",
    )
    a.plot(
        t_next,
        np.asarray(rep.direct)[:, 0],
        linestyle="none",
        marker="o",
        markersize=7,
        markerfacecolor="none",
        markeredgewidth=1.4,
        color=c[0],
        label=r"direct recursion (23),(25): $\lambda_k$ at $t_{k+1}$",
    )
    a.plot(
        t_next,
        np.asarray(rep.conditions)[:, 0],
        linestyle="none",
        marker="+",
        markersize=8,
        markeredgewidth=1.4,
        color=c[1],
        label=r"Newton on (36): $\lambda_k$ at $t_{k+1}$",
    )
    a.plot(
        t_next,
        np.asarray(rep.adjoint)[:, 0],
        linestyle="none",
        marker="s",
        markersize=4,
        color=c[2],
        label=r"continuous adjoint: $\lambda(t_{k+1})$",
    )
    h = float(grid[1] - grid[0])
    a.set_xlabel("time $t$")
    a.set_ylabel(r"costate $\lambda$ (of $x$)")
    a.set_title(rf"(a) over time, $N = {d['N_time']}$ ($h = {h:g}$)")
    a.legend(loc="lower left", fontsize=7.5)

    N = np.asarray(d["Ns"], dtype=np.float64)
    styles = {
        "conditions": dict(color=c[1], marker="+", markersize=8, label="Newton on (36)"),
        "shooting": dict(color="k", marker="o", label=r"costate shooting at $t_{k+1}$"),
        "shooting_at_tk": dict(
            color="0.45",
            marker="o",
            markerfacecolor="none",
            linestyle="--",
            label=r"costate shooting at $t_k$",
        ),
        "adjoint": dict(color=c[2], marker="s", label=r"continuous adjoint at $t_{k+1}$"),
    }
    for route in ROUTES:
        kw = dict(styles[route])
        y = d["differences"][route]
        if route != "conditions" and np.isfinite(d["slopes"][route]):
            kw["label"] += f" (slope {_plots.fmt_slope(d['slopes'][route])})"
        b.loglog(N, np.maximum(y, FLOOR), **kw)
    eps = float(np.finfo(np.float64).eps)
    b.axhline(eps, color="0.3", linewidth=0.9, linestyle=":", label=r"machine $\epsilon$")
    _plots.reference_slope(
        b, N, d["differences"]["adjoint"][0] / 4, -1.0, label=r"slope $-1$ ($O(h)$)"
    )
    b.set_xlabel(r"number of intervals $N$ ($h = 1/N$)")
    b.set_ylabel(r"$\max_k|\lambda^{\mathrm{route}}_k - \lambda^{\mathrm{direct}}_k|$")
    b.set_title(r"(b) distance from the direct $\lambda_k$ against $N$")
    b.set_ylim(FLOOR / 5, 1.0)
    b.legend(loc="center right", fontsize=7.5)
    fig.suptitle(
        r"scalar_regularized, Euler: the direct method's costates $\lambda_k$ are the indirect "
        r"method's (flow.indirect.costate_report)",
        fontsize=10,
    )
    return _style.save(fig, out, NAME)


def main(argv: list[str] | None = None) -> int:
    """`python figures/costates.py --out DIR [--quick]`."""
    return _plots.command_line(make, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
