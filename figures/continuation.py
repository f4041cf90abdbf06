r"""Branches of equilibria in a parameter: where optima appear, merge and change
stability, and how the step bound follows them (`stability.continuation`).

- (a) The tilted double well (`flow.problems.tilted_double_well`: $\dot x = u$,
  $E = (x(1)^2 - 1)^2 + p\,x(1)$, $\int u^2/2$), $N = 100$, Hamiltonian metric: the
  branch of stationary controls (constant, $u = x(1)$) is an S in the $(p, x(1))$
  plane. Continued from $p = -2$ it passes both folds, where a minimiser merges with
  the saddle, at $p = 1$ and $p = -1$ exactly (the closed form $4x^3 - 3x + p = 0$).
- (b) Along the same branch, the ends of the spectrum of $M^{-1}\nabla^2 E^N$ (the
  slow end $\lambda_{\min} = -\mu_{\text{slow}}$ crosses zero at each fold) and the
  step bound $\alpha_{\max} = 2/\lambda_{\max}$ of descent on the stable stretches.
  At a fold the bound stays finite: what fails there is the rate,
  $\rho(\alpha) \to 1$, since the slow end goes to zero.
- (c) The symmetric well (`flow.problems.symmetric_well`, $E = x^4/4 - p\,x^2/2$):
  $U = 0$ loses stability at the branch point $p = 1$; the run switches branches
  there along the null vector and follows the two new minimisers
  $x = \pm\sqrt{p - 1}$.
- (d) Van der Pol with damping $\mu = p$ (`flow.problems.van_der_pol_mu`),
  $N = 200$: the optimum stays a minimiser, and the step bound of the identity and
  Hamiltonian metrics falls by orders of magnitude as $\mu$ grows: the optimizer's
  step must be re-chosen along a parameter study.

Run: `python figures/continuation.py --out DIR [--quick]` (`--quick`: smaller $N$
and a shorter Van der Pol span).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import stability
from figures import _plots, _style
from flow import problems


NAME = "continuation"
N_FULL, N_QUICK = 100, 20
VDP_N_FULL, VDP_N_QUICK = 200, 60
VDP_SPAN_FULL, VDP_SPAN_QUICK = (0.5, 1.4), (0.8, 1.1)
_KIND_STYLE = {
    "asymptotically stable": dict(color=_style.COLORS[0], linestyle="-"),
    "saddle": dict(color=_style.COLORS[1], linestyle=(0, (4, 2))),
    "unstable": dict(color=_style.COLORS[3], linestyle=":"),
    "marginal": dict(color="0.4", linestyle="-."),
}
_SPECIAL_MARKERS = {"fold": "X", "branch": "D"}


def _stretches(points) -> list[tuple[str, list[int]]]:
    """Consecutive runs of points of one kind (a point where the kind changes belongs
    to both stretches, so that the lines join)."""
    out: list[tuple[str, list[int]]] = []
    for i, q in enumerate(points):
        if out and out[-1][0] == q.kind:
            out[-1][1].append(i)
        else:
            if out:
                out[-1][1].append(i)
            out.append((q.kind, [i - 1, i] if out else [i]))
    return out


def _values(result: stability.Continuation, y: str | Callable) -> tuple[np.ndarray, str]:
    if callable(y):
        return np.asarray([float(y(q.U)) for q in result.points]), "observable of $U^*$"
    if y not in ("norm", "cost"):
        raise ValueError(f"`y` must be 'norm', 'cost' or a function of U; got {y!r}.")
    label = r"$\|U^*\|_{L^2}$" if y == "norm" else r"cost $E^N(U^*)$"
    return np.asarray([getattr(q, y) for q in result.points]), label


def plot_branch(
    result: stability.Continuation,
    ax: Any = None,
    *,
    y: str | Callable[[np.ndarray], float] = "norm",
    ylabel: str | None = None,
    legend: bool | str = True,
) -> Any:
    r"""Draw a [`stability.Continuation`][stability.Continuation]'s branch against $p$:
    each stretch in the style of its kind (stable solid, saddle dashed, unstable
    dotted), its folds (X) and branch points (diamond) marked and labelled with $p$.

    **Arguments:** `result`; `ax` (default a new figure); `y`: `"norm"` (the
    control's $L^2$ norm), `"cost"`, or a function of $U^*$ (an array `(N, m)`)
    returning a number; `ylabel`; `legend`: add a legend of the kinds drawn (True:
    at matplotlib's `"best"` place; a string: that `loc`).

    **Returns:** the `Axes`.
    """
    _check(result)
    if ax is None:
        _, ax = _style.figure()
    values, default_label = _values(result, y)
    ps = np.asarray([q.p for q in result.points])
    drawn = set()
    for kind, idx in _stretches(result.points):
        label = kind if kind not in drawn else None
        drawn.add(kind)
        ax.plot(ps[idx], values[idx], label=label, **_KIND_STYLE[kind])
    for s in result.special_points:
        value = float(y(s.U)) if callable(y) else getattr(s, y)
        label = s.kind if s.kind not in drawn else None
        drawn.add(s.kind)
        ax.plot(s.p, value, _SPECIAL_MARKERS[s.kind], color="black", ms=7, label=label, zorder=5)
        ax.annotate(f"$p = {s.p:.6g}$", (s.p, value), xytext=(6, -3), textcoords="offset points",
                    fontsize=8, va="top")  # fmt: skip
    ax.set_xlabel("parameter $p$")
    ax.set_ylabel(ylabel or default_label)
    if legend:
        ax.legend(loc="best" if legend is True else legend, fontsize=8)
    return ax


def plot_step_bound(result: stability.Continuation, ax: Any = None, **kwargs: Any) -> Any:
    r"""Draw the step bound $\alpha_{\max}(p) = 2/\lambda_{\max}(M^{-1}\nabla^2 E^N)$
    along a continued branch, on its stable stretches (one line each), with the
    special points as vertical dotted lines. `kwargs` go to `ax.plot`.

    **Returns:** the `Axes`.
    """
    _check(result)
    if ax is None:
        _, ax = _style.figure()
    table = result.table()
    style = {"color": _style.COLORS[0], "lw": 1.8} | kwargs
    first = True
    for kind, idx in _stretches(result.points):
        idx = [i for i in idx if np.isfinite(table["alpha_max"][i])]
        if kind == "asymptotically stable" and idx:
            label = style.pop("label", r"$\alpha_{\max} = 2/\lambda_{\max}$") if first else None
            ax.plot(table["p"][idx], table["alpha_max"][idx], label=label, **style)
            first = False
    for s in result.special_points:
        ax.axvline(s.p, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel("parameter $p$")
    ax.set_ylabel(r"step bound $\alpha_{\max}$")
    return ax


def plot_spectrum_ends(result: stability.Continuation, ax: Any = None) -> Any:
    r"""Draw the ends of the spectrum of $M^{-1}\nabla^2 E^N$ along a continued branch
    against $p$: $\lambda_{\min} = -\mu_{\text{slow}}$ in the style of each stretch's
    kind (it crosses zero at folds and branch points, marked) and
    $\lambda_{\max} = -\mu_{\text{stiff}}$ (grey), with the zero line.

    **Returns:** the `Axes`.
    """
    _check(result)
    if ax is None:
        _, ax = _style.figure()
    table = result.table()
    ps = table["p"]
    for kind, idx in _stretches(result.points):
        ax.plot(ps[idx], -table["slow"][idx], **_KIND_STYLE[kind])
    ax.plot(ps, -table["stiff"], color="0.55", lw=1.0, ls="-.",
            label=r"$\lambda_{\max}$ (stiff end)")  # fmt: skip
    ax.plot([], [], color="black", lw=1.2, label=r"$\lambda_{\min}$ (slow end), by kind")
    ax.axhline(0.0, color="0.3", lw=0.6)
    for s in result.special_points:
        ax.plot(s.p, 0.0, _SPECIAL_MARKERS[s.kind], color="black", ms=7, zorder=5)
    ax.set_xlabel("parameter $p$")
    ax.set_ylabel(r"eigenvalues of $M^{-1}\nabla^2 E^N$")
    return ax


def _check(result: Any) -> None:
    if not isinstance(result, stability.Continuation):
        raise TypeError(f"`result` must be a stability.Continuation; got {type(result).__name__}.")


def _outer_root(p: float) -> float:
    roots = np.roots([4.0, 0.0, -3.0, p])
    return float(np.max(roots[np.abs(roots.imag) < 1e-12].real))


def compute(quick: bool = False) -> dict[str, Any]:
    """The four continuations of the figure."""
    N = N_QUICK if quick else N_FULL
    tilted = stability.continuation(
        problems.tilted_double_well, np.full((N, 1), _outer_root(-2.0)), (-2.0, 2.0), N=N
    )
    trivial = stability.continuation(problems.symmetric_well, np.zeros((N, 1)), (0.0, 2.0), N=N)
    (bp,) = trivial.branch_points
    branches = [
        stability.continuation(problems.symmetric_well, bp, (0.0, 2.0), N=N, direction=d)
        for d in (1, -1)
    ]
    vdp_N = VDP_N_QUICK if quick else VDP_N_FULL
    span = VDP_SPAN_QUICK if quick else VDP_SPAN_FULL
    vdp = {
        metric: stability.continuation(
            problems.van_der_pol_mu, np.zeros((vdp_N, 1)), span, N=vdp_N, metric=metric
        )
        for metric in ("hamiltonian", "identity")
    }
    return {"N": N, "tilted": tilted, "trivial": trivial, "branches": branches, "vdp": vdp,
            "vdp_N": vdp_N}  # fmt: skip


def _endpoint(U: np.ndarray) -> float:
    """x(1) = sum_k h u_k on [0, 1] with a uniform grid: the mean control."""
    return float(np.mean(U))


def draw(d: dict[str, Any], out: Path) -> list[Path]:
    """Draw the figure from `compute`'s data into `out`; returns the paths."""
    fig, axes = _style.figure(2, 2, width=_style.WIDTH_DOUBLE, height=6.8)
    (a, b), (c, e) = axes
    plot_branch(d["tilted"], a, y=_endpoint, ylabel=r"$x(1) = u$ (constant)",
                legend="upper right")  # fmt: skip
    a.set_title(rf"(a) tilted double well, $N = {d['N']}$: two folds", fontsize=9.5)
    plot_spectrum_ends(d["tilted"], b)
    b.legend(loc="upper center", fontsize=8)
    b.set_title(r"(b) the same branch: $\lambda_{\min}$ crosses 0 at each fold", fontsize=9.5)
    plot_branch(d["trivial"], c, y=_endpoint, ylabel=r"$x(1) = u$", legend=False)
    for branch in d["branches"]:
        plot_branch(branch, c, y=_endpoint, ylabel=r"$x(1) = u$", legend=False)
    c.legend(*_unique_of(c), loc="upper left", fontsize=8)
    c.set_title("(c) symmetric well: a branch point and the switch", fontsize=9.5)
    styles = {"hamiltonian": ("-", "Hamiltonian metric"), "identity": ("--", "identity metric")}
    for j, (metric, res) in enumerate(d["vdp"].items()):
        ls, label = styles[metric]
        plot_step_bound(res, e, color=_style.COLORS[j], ls=ls, label=label)
    e.set_yscale("log")
    e.set_xlabel(r"damping $\mu = p$")
    e.legend(loc="upper right", fontsize=8)
    e.set_title(rf"(d) Van der Pol, $N = {d['vdp_N']}$: $\alpha_{{\max}}$ falls with $\mu$",
                fontsize=9.5)  # fmt: skip
    fig.suptitle("stability.continuation: equilibria of the gradient flow (50) against a "
                 "problem parameter", fontsize=10)  # fmt: skip
    return _style.save(fig, out, NAME)


def _unique_of(*axes: Any) -> tuple[list, list]:
    """The legend entries of `axes`, each label once."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, h)
    return list(seen.values()), list(seen)


def draw_result(
    result: stability.Continuation, out: Path, *, name: str = NAME, y: str = "norm"
) -> list[Path]:
    """The standard view of one continuation (what `gradflow continue` writes): the
    branch against $p$ ([`plot_branch`][figures.continuation.plot_branch], `y`), the
    spectrum's ends ([`plot_spectrum_ends`][figures.continuation.plot_spectrum_ends])
    and the step bound ([`plot_step_bound`][figures.continuation.plot_step_bound]),
    into `out/<name>.png` and `.pdf`; returns the paths."""
    _check(result)
    fig, (a, b, c) = _style.figure(3, width=_style.WIDTH_DOUBLE, height=3.6)
    plot_branch(result, a, y=y, legend=False)
    plot_spectrum_ends(result, b)
    plot_step_bound(result, c)
    bounds = result.table()["alpha_max"]
    bounds = bounds[np.isfinite(bounds)]
    if bounds.size and bounds.max() > 20 * bounds.min():
        c.set_yscale("log")
    handles, labels = _unique_of(a, b)
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8,
               bbox_to_anchor=(0.5, -0.07))  # fmt: skip
    fig.suptitle(
        f"{result.problem}: N = {result.N}, {result.metric} metric, "
        f"{len(result.points)} points ({result.status})",
        fontsize=9.5,
    )
    return _style.save(fig, out, name)


def make(out: Path, *, quick: bool = False) -> list[Path]:
    """Draw the figure into `out` (`continuation.png`, `continuation.pdf`); returns the
    paths."""
    return draw(compute(quick), out)


def main(argv: list[str] | None = None) -> int:
    """`python figures/continuation.py --out DIR [--quick]`."""
    return _plots.command_line(make, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
