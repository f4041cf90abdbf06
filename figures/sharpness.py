r"""Sharpness along the path: $\mu_{\max}(U_i)$, the largest eigenvalue of
$M^{-1}\nabla^2 E^N(U_i)$ at the iterates of gradient descent, against the iteration,
next to forward Euler's limit $2/\alpha$ (a step is linearly stable at $U_i$ iff
$\alpha\mu_{\max}(U_i) < 2$; eqs. (37), (50)).

On `scalar_regularized`, descent (37) from $U_0 = 4$ with a constant step, for
$N = 50, 200, 800$, with `stability.sharpness` at every iterate:

- (a) the identity metric (the direct method, eq. (38)), one step for every $N$:
  $\alpha = 0.9 \cdot 2/\mu_{\max}(U^*)$ at the smallest $N$. The eigenvalues of
  $\nabla^2 E^N$ are $O(h)$ (Lemma 2), so the sharpness falls like $1/N$ while the
  limit $2/\alpha$ stays: the step that sits at 90 % of the bound at $N = 50$ uses
  a sixteenth of it at $N = 800$, and the iterates move correspondingly slowly (the
  sharpness takes longer to reach its plateau).
- (b) the Hamiltonian metric $M = \mathrm{diag}(h)$ (the indirect method's flow), one
  step for every $N$, chosen the same way: the sharpness is mesh-independent (the
  curves coincide), and so is the margin to $2/\alpha$.

Along the path the sharpness rises from its value at $U_0$ to its value at the
minimiser: the top eigenvalue of $\nabla^2 E^N/h$ is about $1 + \sum_k h\,
(\partial x_N/\partial u_k / h)^2$ (control weight plus the endpoint term), and at
$U_0 = 4$ the state is large, so $\partial_x f = -1 - 0.3x^2$ damps the sensitivities
$\partial x_N/\partial u_k$ more than near the minimiser.

Run: `python figures/sharpness.py --out DIR [--quick]` (`--quick`: $N = 20, 40$, 15
iterations).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

import flow
import stability
from figures import _plots, _style
from flow import problems


NAME = "sharpness"
NS_FULL = (50, 200, 800)
NS_QUICK = (20, 40)
ITERATIONS_FULL = 40
ITERATIONS_QUICK = 15
#: the constant start U_0
START = 4.0
#: the step as a fraction of forward Euler's bound 2/mu_max(U*) at the smallest N
FRACTION = 0.9
METRICS = ("identity", "hamiltonian")
_TITLES = {"identity": "identity metric (direct)", "hamiltonian": "Hamiltonian metric (indirect)"}
_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D")


def plot_sharpness(
    results: stability.Sharpness | Sequence[stability.Sharpness],
    ax: Any = None,
    *,
    labels: Sequence[str] | None = None,
    colors: Sequence[str] | None = None,
    limit: bool = True,
) -> Any:
    r"""Draw the sharpness $\mu_{\max}(U_i)$ of one or more
    [`stability.Sharpness`][stability.Sharpness] results against the iteration $i$,
    with forward Euler's limit $2/\alpha_i$ (a step is stable at $U_i$ iff
    $\alpha_i\mu_{\max} < 2$).

    **Arguments:**

    - `results`: a `Sharpness` or a sequence of them (one line each).
    - `ax`: a matplotlib `Axes` (default: a new figure in the shared style).
    - `labels`: legend text per result (default `"N = ..."`).
    - `colors`: a colour per result (default the shared palette).
    - `limit`: draw $2/\alpha_i$ where the results have steps: one black dashed line
      when all results share it, else a dashed line per result in its colour.

    **Returns:** the `Axes`.
    """
    if isinstance(results, stability.Sharpness):
        results = [results]
    results = list(results)
    if not results or not all(isinstance(r, stability.Sharpness) for r in results):
        raise TypeError("`results` must be a stability.Sharpness or a sequence of them.")
    if ax is None:
        _, ax = _style.figure()
    labels = [f"$N = {r.N}$" for r in results] if labels is None else list(labels)
    colors = list(_style.COLORS) if colors is None else list(colors)
    if len(labels) != len(results):
        raise ValueError(f"`labels` must have {len(results)} entries; got {len(labels)}.")
    for j, (r, label) in enumerate(zip(results, labels, strict=True)):
        every = max(1, r.iterations.shape[0] // 8)
        ax.plot(
            r.iterations,
            r.mu_max,
            color=colors[j % len(colors)],
            linestyle=_LINESTYLES[j % len(_LINESTYLES)],
            marker=_MARKERS[j % len(_MARKERS)],
            # markers shifted per line, so that coinciding lines stay distinguishable
            markevery=(j * max(1, every // len(results)) % every, every),
            markerfacecolor="none",
            label=rf"{label}: $\mu_{{\max}}$",
        )
    if limit:
        finite = [r for r in results if np.any(np.isfinite(r.stability_limit))]
        shared = all(
            np.array_equal(r.stability_limit, finite[0].stability_limit, equal_nan=True)
            and np.array_equal(r.iterations, finite[0].iterations)
            for r in finite
        )
        if finite and shared:
            r = finite[0]
            ax.plot(
                r.iterations,
                r.stability_limit,
                color="black",
                linestyle=(0, (5, 2)),
                linewidth=1.2,
                label=r"$2/\alpha$: forward Euler's limit",
            )
        else:
            for j, (r, label) in enumerate(zip(results, labels, strict=True)):
                if r in finite:
                    ax.plot(
                        r.iterations,
                        r.stability_limit,
                        color=colors[j % len(colors)],
                        linestyle=(0, (5, 2)),
                        linewidth=1.0,
                        label=rf"{label}: $2/\alpha$",
                    )
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration $i$")
    ax.set_ylabel(r"sharpness $\mu_{\max}(M^{-1}\nabla^2 E^N(U_i))$")
    return ax


def compute(Ns: tuple[int, ...] = NS_FULL, iterations: int = ITERATIONS_FULL) -> dict[str, Any]:
    """Per metric: the step (`FRACTION` of 2/mu_max at the minimiser of the smallest
    N), and per N the descent from U_0 = `START` and its `stability.sharpness`."""
    problem = problems.scalar_regularized()
    shootings = {N: flow.shoot(problem, N) for N in Ns}
    smallest = shootings[min(Ns)]
    eq = stability.equilibrium(smallest)
    out: dict[str, Any] = {"Ns": tuple(Ns), "iterations": iterations, "metrics": {}}
    for metric in METRICS:
        at_minimiser = stability.sharpness(np.asarray(eq.U)[None], shooting=smallest, metric=metric)
        alpha = FRACTION * 2.0 / float(at_minimiser.mu_max[0])
        runs = {}
        for N, sh in shootings.items():
            U0 = jax.device_put(np.full(sh.control_shape, START))
            trace = flow.descend(
                sh, U0, metric=metric, step=alpha, max_steps=iterations, save_iterates=True
            )
            runs[N] = stability.sharpness(trace, metric=metric)
        out["metrics"][metric] = {"alpha": alpha, "sharpness": runs}
    return out


def draw(d: dict[str, Any], out: Path) -> list[Path]:
    """Draw the figure from the data of `compute` into `out` (`sharpness.png`,
    `sharpness.pdf`); returns the paths."""
    fig, axes = _style.figure(2, width=_style.WIDTH_DOUBLE, height=3.6)
    for ax, metric, letter in zip(axes, METRICS, "ab", strict=True):
        entry = d["metrics"][metric]
        alpha = entry["alpha"]
        runs = [entry["sharpness"][N] for N in d["Ns"]]
        plot_sharpness(runs, ax)
        ax.set_title(rf"({letter}) {_TITLES[metric]}, $\alpha = {alpha:.3g}$")
        # the margin at the last iterate: alpha mu_max / 2 (1 is forward Euler's bound)
        for j, r in enumerate(runs):
            edge = alpha * float(r.mu_max[-1]) / 2.0
            ax.annotate(
                rf"$\alpha\mu_{{\max}}/2 = {edge:.2f}$",
                (float(r.iterations[-1]), float(r.mu_max[-1])),
                xytext=(-4, -4 if metric == "identity" else -12 - 10 * j),
                textcoords="offset points",
                ha="right",
                va="top",
                fontsize=7.5,
                color=_style.COLORS[j],
            )
        if metric == "identity":
            ax.set_yscale("log")
        else:
            top = max(float(np.nanmax(r.stability_limit)) for r in runs)
            low = min(float(np.min(r.mu_max)) for r in runs)
            ax.set_ylim(low - 0.1 * (top - low), top + 0.1 * (top - low))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), bbox_to_anchor=(0.5, -0.08))
    fig.suptitle(
        rf"scalar_regularized, descent from $U_0 = {START:g}$ with one step $\alpha$ per "
        rf"metric ({FRACTION:g} of the bound at $N = {min(d['Ns'])}$): stable at $U_i$ iff "
        rf"$\alpha\,\mu_{{\max}}(U_i) < 2$",
        fontsize=9.5,
    )
    return _style.save(fig, out, NAME)


def make(out: Path, *, quick: bool = False) -> list[Path]:
    """Draw the figure into `out` (`sharpness.png`, `sharpness.pdf`); returns the
    paths."""
    if quick:
        d = compute(NS_QUICK, ITERATIONS_QUICK)
    else:
        d = compute()
    return draw(d, out)


def main(argv: list[str] | None = None) -> int:
    """`python figures/sharpness.py --out DIR [--quick]`."""
    return _plots.command_line(make, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
