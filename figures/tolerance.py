r"""Theorem 5.14 and section 6.1: a gradient tolerance $\epsilon$ is a Hamiltonian
tolerance $\epsilon/h$.

On `scalar_regularized`, for each grid $N$ ($h = 1/N$), the step-scaled direct method
(identity metric, step $\alpha = 0.5/h$, i.e. `flow.HamiltonianStep(0.5)`: by (56) the
indirect method's step $1/2$, from $U = 0$) is stopped at $\|\nabla E^N\|_\infty \leq \epsilon$ with

- a fixed $\epsilon = 10^{-6}$: the Hamiltonian residual $\max_k|\partial_u H_k|$ it
  leaves grows like $1/h$, up to the bound $\epsilon/h$ of Theorem 5.14
  (`stability.hamiltonian_tolerance`);
- $\epsilon = h\,\epsilon_H$ with $\epsilon_H = 10^{-6}$ (`stability.gradient_tolerance`,
  the remedy of section 6.1): the Hamiltonian residual stays below $\epsilon_H$ at
  every $N$.

Left: the gradient norm the optimizer checks; right: the Hamiltonian residual,
recomputed from the costates (`Shooting.hamiltonian_gradient`).

Run: `python figures/tolerance.py --out DIR [--quick]`.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np

import flow
import stability
from figures import _plots, _style
from flow import metrics, problems


NAME = "tolerance"
NS_FULL = (100, 300, 1000, 3000, 10_000, 30_000, 100_000)
NS_QUICK = (100, 1000)
EPS = 1e-6
EPS_H = 1e-6


def _stop_on_gradient(sh: flow.Shooting, tol: float) -> flow.DescentTrace:
    """Identity metric, alpha = 0.5/h, stop at |grad E^N|_inf <= tol."""
    return flow.descend(
        sh,
        sh.zeros(),
        metric=metrics.Identity(),
        step=flow.HamiltonianStep(0.5),
        max_steps=500,
        tol=tol,
        stop_on="gradient",
    )


def compute(Ns: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Per N: h, the two gradient tolerances, the bound eps/h, and for each stop the
    final |grad E^N|_inf, max|dH/du| and the iteration count."""
    problem = problems.scalar_regularized()
    rows = []
    for N in Ns:
        sh = flow.shoot(problem, N)
        eps_g = float(stability.gradient_tolerance(EPS_H, sh))  # h * eps_H
        bound = float(stability.hamiltonian_tolerance(EPS, sh))  # eps / h
        row = [float(jnp.min(sh.steps)), eps_g, bound]
        for tol in (EPS, eps_g):
            tr = _stop_on_gradient(sh, tol)
            row += [
                float(jnp.max(jnp.abs(sh.gradient(tr.U)))),
                float(jnp.max(jnp.abs(sh.hamiltonian_gradient(tr.U)))),
                int(tr.num_steps),
            ]
        rows.append(row)
    r = np.array(rows)
    keys = "h eps_g bound g_fixed dH_fixed it_fixed g_scaled dH_scaled it_scaled".split()
    return {k: r[:, i] for i, k in enumerate(keys)} | {"N": np.asarray(Ns)}


def _reciprocal(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 1.0 / np.asarray(x, dtype=np.float64)


def make(out: Path, *, quick: bool = False) -> list[Path]:
    """Draw the figure into `out` (`tolerance.png`, `tolerance.pdf`); returns the paths."""
    d = compute(NS_QUICK if quick else NS_FULL)
    h = d["h"]
    c_fix, c_sc = _style.COLORS[1], _style.COLORS[0]
    fig, (a, b) = _style.figure(2, width=_style.WIDTH_DOUBLE, height=3.6)

    a.loglog(
        h,
        np.full_like(h, EPS),
        color=c_fix,
        linestyle="--",
        linewidth=1.0,
        label=r"fixed tolerance $\epsilon = 10^{-6}$",
    )
    a.loglog(
        h,
        d["eps_g"],
        color=c_sc,
        linestyle="--",
        linewidth=1.0,
        label=r"scaled tolerance $\epsilon = h\,\epsilon_H$",
    )
    a.loglog(
        h,
        d["g_fixed"],
        color=c_fix,
        marker="o",
        linestyle="none",
        label=r"final $\|\nabla E^N\|_\infty$, fixed $\epsilon$",
    )
    a.loglog(
        h,
        d["g_scaled"],
        color=c_sc,
        marker="s",
        linestyle="none",
        label=r"final $\|\nabla E^N\|_\infty$, $\epsilon = h\,\epsilon_H$",
    )
    a.set_xlabel(r"step $h = 1/N$")
    a.set_ylabel(r"$\|\nabla E^N\|_\infty$ at the stop")
    a.set_title("(a) what the optimizer checks: both are met")
    a.legend(loc="center right", fontsize=7.5)

    slope_fix = _plots.loglog_slope(h, d["dH_fixed"])
    slope_sc = _plots.loglog_slope(h, d["dH_scaled"])
    b.loglog(
        h,
        d["bound"],
        color=c_fix,
        linestyle="--",
        linewidth=1.0,
        label=r"Theorem 5.14 bound $\epsilon/h$",
    )
    b.loglog(
        h,
        d["dH_fixed"],
        color=c_fix,
        marker="o",
        label=rf"fixed $\epsilon$: slope {_plots.fmt_slope(slope_fix)} in $h$",
    )
    b.loglog(
        h,
        np.full_like(h, EPS_H),
        color=c_sc,
        linestyle="--",
        linewidth=1.0,
        label=r"target $\epsilon_H = 10^{-6}$",
    )
    b.loglog(
        h,
        d["dH_scaled"],
        color=c_sc,
        marker="s",
        label=rf"$\epsilon = h\,\epsilon_H$: slope {_plots.fmt_slope(slope_sc)}",
    )
    b.set_xlabel(r"step $h = 1/N$")
    b.set_ylabel(r"$\max_k |\partial_u H(\lambda_k, x_k, u_k)|$ at the stop")
    b.set_title(r"(b) the Hamiltonian residual it leaves")
    b.legend(loc="upper left", fontsize=7.5)
    for ax in (a, b):
        ax.invert_xaxis()  # finer grids to the right
        top = ax.secondary_xaxis("top", functions=(_reciprocal, _reciprocal))
        top.set_xlabel(r"$N$", labelpad=1)
    fig.suptitle(
        r"Theorem 5.14 on scalar_regularized: stopping at $\|\nabla E^N\|_\infty \leq \epsilon$ "
        r"leaves $\max|\partial_u H_k|$ up to $\epsilon/h$",
        fontsize=10,
    )
    return _style.save(fig, out, NAME)


def main(argv: list[str] | None = None) -> int:
    """`python figures/tolerance.py --out DIR [--quick]`."""
    return _plots.command_line(make, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
