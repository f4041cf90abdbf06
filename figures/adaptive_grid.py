r"""Section 6.5: an adaptive grid adds the term S of eq. (59) to the gradient.

The adaptive shooting map $\hat E(U) = E(x_N(U, \pi(U)))$ (eqs. (57), (58),
`flow.adaptive_shoot`) integrates `scalar_regularized` ($N = 10$ piecewise-constant
controls) with diffrax's Bogacki-Shampine 3(2) under a PID step-size controller
($\mathrm{rtol} = \mathrm{atol} = $ tol), so the integration grid $\pi(U)$ moves
with $U$. Differentiating through the solver gives the *frozen* gradient, the
first term of (59) (the grid held fixed); the full derivative of $\hat E$ has the
extra term $S$.

- Left (`flow.s_term_study` at the smooth probe control `flow.probe_control`):
  $\|S\|_\infty$, measured as the central finite-difference derivative of
  $\hat E$ (the grid re-adapted at every evaluation) minus the frozen gradient,
  against the tolerance. The same measurement on the frozen-grid map (a fixed
  grid) gives the finite-difference error only. At loose tolerances every
  interval takes the same two steps for all nearby $U$ (a locally fixed grid), so
  $S = 0$; once the controller refines, $\|S\|$ is about the tolerance.
- Right (`flow.adaptive_descent`, tol $10^{-6}$, $L^2$-metric descent with the
  Armijo rule): the Hamiltonian residual $\max_k|\nabla_{u_k}E|/h_k$ of the
  gradient the algorithm uses. With the grid re-chosen at every iterate (inside
  the inner algorithm) the residual stalls and the line search fails: once the
  frozen gradient is as small as $S$ it is no longer a descent direction of
  $\hat E$. With the grid fixed during each inner run and re-chosen only
  between them (the paper's remedy: vary the grid in the outer algorithm) it falls
  to the line search's rounding floor. The cross is the true residual of $\hat E$ at
  the last iterate of the first run (finite differences, so with $S$): that point
  is not stationary for the map it minimised.

Run: `python figures/adaptive_grid.py --out DIR [--quick]` (`--quick`: two
tolerances, 20 iterations per run, two outer iterations).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import flow
from figures import _plots, _style
from flow import problems


NAME = "adaptive_grid"
N = 10
TOLS_FULL = (1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9)
TOLS_QUICK = (1e-4, 1e-7)
DESCENT_TOL = 1e-6  # the controller tolerance of the descent runs
ITERATIONS_FULL, OUTER_FULL = 100, 3
ITERATIONS_QUICK, OUTER_QUICK = 20, 2
FLOOR = 1e-17
#: S counts as resolved where it exceeds this multiple of the finite-difference error
RESOLVED = 3.0


def compute(
    tols: tuple[float, ...] = TOLS_FULL,
    iterations: int = ITERATIONS_FULL,
    outer_iterations: int = OUTER_FULL,
) -> dict:
    """The S-term study over `tols` at the probe control, and the two descent runs
    (grid inside the iteration against grid fixed per outer iteration)."""
    problem = problems.scalar_regularized()
    reference = flow.shoot(problem, N)
    U = flow.probe_control(reference)
    study = flow.s_term_study(problem, N, U, tols=tols)
    ash = flow.adaptive_shoot(problem, N, tol=DESCENT_TOL)
    descent = flow.adaptive_descent(
        ash, max_steps=iterations, outer_iterations=outer_iterations, step="armijo"
    )
    return dict(study=study, descent=descent, h=float(reference.steps[0]))


def make(out: Path, *, quick: bool = False) -> list[Path]:
    """Draw the figure into `out` (`adaptive_grid.png`, `adaptive_grid.pdf`); returns
    the paths."""
    if quick:
        d = compute(TOLS_QUICK, ITERATIONS_QUICK, OUTER_QUICK)
    else:
        d = compute()
    rows = d["study"].rows
    c = _style.COLORS
    fig, (a, b) = _style.figure(2, width=_style.WIDTH_DOUBLE, height=4.9)

    tol = np.array([r.tol for r in rows])
    s = np.array([r.s_norm for r in rows])
    fixed = np.array([r.fixed_s_norm for r in rows])
    noise = np.array([r.fd_noise for r in rows])
    g = np.array([r.gradient_norm for r in rows])
    # S is resolved where it stands clear of the finite-difference error of the map
    resolved = s > RESOLVED * np.maximum(noise, fixed)
    slope = _plots.loglog_slope(tol[resolved], s[resolved])
    slope_text = f", slope {_plots.fmt_slope(slope)}" if int(np.sum(resolved)) >= 2 else ""
    a.loglog(tol, g, color="0.3", linestyle="-.", linewidth=1.1)
    a.text(
        tol.max(),
        g.max() / 1.6,
        r"$\|g_{\mathrm{frozen}}\|_\infty$ (the gradient)",
        ha="right",
        va="top",
        fontsize=7.5,
        color="0.3",
    )
    a.loglog(tol, s, color=c[1], linewidth=1.3, zorder=2)
    a.loglog(
        tol[resolved],
        s[resolved],
        linestyle="none",
        marker="o",
        color=c[1],
        label=r"adaptive grid: $\|S\|_\infty$ (FD of $\hat E$ $-$ $g_{\mathrm{frozen}}$)"
        + slope_text,
    )
    a.loglog(
        tol[~resolved],
        s[~resolved],
        linestyle="none",
        marker="o",
        markerfacecolor="none",
        markersize=7,
        color=c[1],
        label=f"adaptive grid, within {RESOLVED:g}x the FD error",
    )
    a.loglog(
        tol,
        np.maximum(fixed, FLOOR),
        color=c[0],
        marker="s",
        markersize=3.5,
        label=r"fixed grid $\pi$: FD of $E_\pi$ $-$ $\nabla E_\pi$",
    )
    a.loglog(tol, tol, color="0.45", linestyle=":", linewidth=1.1, label=r"$\|S\|_\infty = $ tol")
    for r in rows:
        a.annotate(
            f"{r.num_steps}",
            (r.tol, r.s_norm),
            xytext=(-3, 3),
            textcoords="offset points",
            ha="right",
            va="bottom",
            fontsize=7,
            color=c[1],
        )
    a.text(
        0.98,
        0.03,
        r"numbers: steps of $\pi(U)$ (10 intervals)",
        transform=a.transAxes,
        ha="right",
        va="bottom",
        fontsize=7,
        color=c[1],
    )
    a.set_title(r"(a) the term $S$ against the tolerance")
    a.set_xlabel("controller tolerance (rtol = atol)")
    a.set_ylabel("max-norm over the 10 controls")
    a.set_ylim(1e-12, 1e1)
    # legends below the panels: the curves start in the upper left of (b), and the
    # outer-iteration lines cross its whole height
    a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.17), fontsize=7)

    r = d["descent"]
    inside = np.asarray(r.inside_residual)
    fixed_hist = np.asarray(r.fixed_residual)
    b.semilogy(
        np.arange(inside.size),
        np.maximum(inside, FLOOR),
        color=c[1],
        linewidth=1.8,
        label=f"grid inside the iteration ({r.inside_failures} failed line searches)",
    )
    b.semilogy(
        np.arange(fixed_hist.size),
        np.maximum(fixed_hist, FLOOR),
        color=c[0],
        label="grid fixed per outer iteration",
    )
    b.plot(
        [inside.size - 1],
        [r.inside_true_residual],
        marker="X",
        markersize=8,
        color=c[1],
        linestyle="none",
        label=rf"FD residual of $\hat E$ at the last iterate: {r.inside_true_residual:.1e}",
    )
    start = 0
    for j, (steps, _, _) in enumerate(r.fixed_outer):
        if j:
            b.axvline(start, color=c[0], linestyle=":", linewidth=0.9)
        b.text(
            start + 0.5 * r.max_steps,
            3e-15,
            f"outer {j + 1}\n{steps} steps",
            fontsize=7,
            color=c[0],
            ha="center",
            va="bottom",
        )
        start += r.max_steps
    b.set_xlabel(r"descent iteration ($L^2$ metric, Armijo)")
    b.set_ylabel(r"$\max_k|\nabla_{u_k}E|/h_k$")
    b.set_title(r"(b) descent on the adaptive map, tol $= 10^{-6}$")
    b.set_ylim(1e-15, 1e2)
    b.legend(loc="upper center", bbox_to_anchor=(0.5, -0.17), fontsize=7)
    fig.suptitle(
        rf"scalar_regularized, $N = {N}$ controls, Bosh3 with a PID controller: the grid "
        r"$\pi(U)$ adds $S$ to $d\hat E/dU$ (59)",
        fontsize=10,
    )
    return _style.save(fig, out, NAME)


def main(argv: list[str] | None = None) -> int:
    """`python figures/adaptive_grid.py --out DIR [--quick]`."""
    return _plots.command_line(make, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
