r"""The figures of the `gradflow analyze` report, drawn again from a results document
or from a [`StabilityReport`][stability.StabilityReport].

Each function takes `source`: the document of `results.json` (for instance from
[`gradflow.load_results`][gradflow.load_results]) or a `StabilityReport` (its
`to_dict()` holds the same sections), so a figure shows exactly the numbers written
there, and saves PNG and PDF with the shared style:

- `spectrum`: the eigenvalues $\alpha\mu$ of $\alpha J$ over forward Euler's
  stability disk $|1 + z| < 1$ at the chosen step;
- `replay`: the replay's Hamiltonian residual $\max_k|\partial_u H_k|$ against the
  iteration $i$, beside the predicted $r_0\,\rho(\alpha)^i$;
- `equilibrium`: the controls $u^*_k$ and the costates $\lambda_k$ at the
  equilibrium.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from flow import format_number
from stability import StabilityReport

from . import _plots, _style


#: What the drawing functions take: a results document or a report.
Source = Mapping[str, Any] | StabilityReport


def _document(source: Source) -> dict[str, Any]:
    """The sections the figures read, from a results document or a report."""
    if isinstance(source, Mapping):
        return dict(source)
    to_dict = getattr(source, "to_dict", None)
    if not callable(to_dict):
        raise TypeError(
            "`source` must be a results document (dict, e.g. gradflow.load_results(path)) "
            f"or a stability.StabilityReport; got {type(source).__name__}."
        )
    doc = to_dict()
    doc.setdefault("settings", {"tol": doc["tolerance"]["tol"]})
    return doc


def _complex(values: Any) -> np.ndarray:
    """Eigenvalues from the document (a list, or `{"real", "imag"}` lists; None for
    a non-finite value) as a finite complex array."""
    if isinstance(values, dict):
        re = np.array([np.nan if v is None else v for v in values["real"]], dtype=float)
        im = np.array([np.nan if v is None else v for v in values["imag"]], dtype=float)
        z = re + 1j * im
    else:
        z = np.array([np.nan if v is None else v for v in values], dtype=float).astype(complex)
    return z[np.isfinite(z)]


def _floats(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _figure_step(doc: dict[str, Any]) -> tuple[float, str]:
    """The step the spectrum is drawn at, and how it was chosen."""
    eu = doc["euler"]
    if doc["step"] is not None:
        return float(doc["step"]), "the chosen step"
    if eu["alpha_opt"] is not None:
        return float(eu["alpha_opt"]), "α_opt, no replay"
    if eu["alpha_max"] is not None:
        return 0.5 * float(eu["alpha_max"]), "α_max / 2, no replay"
    norm = doc["spectrum"]["norm"]
    return (1.0 / norm if norm else 1.0), "1 / max |μ|: no stable step exists"


def spectrum(source: Source, out: str | Path) -> dict[str, Any]:
    r"""$\alpha\mu$ for the computed eigenvalues $\mu$ of $J$ over the disk
    $|1 + z| < 1$ at the chosen step (hollow grey: at $\alpha_{\max}$, where the
    limiting eigenvalue touches the circle); cluster windows as bars on the real
    axis. Returns the figure's entry for the document."""
    doc = _document(source)
    mu = _complex(doc["spectrum"]["eigenvalues"])
    alpha, how = _figure_step(doc)
    eu = doc["euler"]
    fig, ax = _style.figure(width=_style.WIDTH_SINGLE, height=4.4)
    if eu["alpha_max"] is not None:
        zmax = float(eu["alpha_max"]) * mu
        ax.plot(
            zmax.real,
            zmax.imag,
            linestyle="none",
            marker="o",
            markersize=6.5,
            markerfacecolor="none",
            color="0.6",
            zorder=2,
            label=rf"$\alpha_{{\max}}\mu$, $\alpha_{{\max}}$ = {eu['alpha_max']:.4g}",
        )
    drawn = _plots.stability_disk(ax, mu, alpha, label=rf"$\alpha\mu$, $\alpha$ = {alpha:.4g}")
    # equal scales with the limits fixed by stability_disk: adjust the box, not the
    # limits (adjustable="datalim" would override them, with a logged warning)
    ax.set_aspect("equal", adjustable="box")
    clusters = doc["spectrum"]["clusters"]
    counts = ", ".join(str(int(c["count"])) for c in clusters)
    windows = f"cluster window{'s' if len(clusters) > 1 else ''} ({counts} eigenvalues)"
    for j, c in enumerate(clusters):
        lo, hi = alpha * (c["position"] - c["halfwidth"]), alpha * (c["position"] + c["halfwidth"])
        # a bar with end ticks, under the points: a window narrower than a marker
        # still shows as a bracket
        ax.plot(
            [lo, hi],
            [0.0, 0.0],
            color=_style.COLORS[2],
            linewidth=3,
            marker="|",
            markersize=11,
            markeredgewidth=1.6,
            alpha=0.8,
            solid_capstyle="butt",
            zorder=2.5,
            label=None if j else windows,
        )
    rate = eu["rate_at_step"] if doc["step"] is not None else None
    rho = "" if rate is None else rf", $\rho(\alpha)$ = {rate:.3g}"
    if eu["alpha_max"] is None:
        rho = ": no stable step"
    ax.set_title(f"spectrum of $\\alpha J$ ({doc['metric']} metric, N = {doc['N']}){rho}")
    # below the axes: the disk fills the box, so no corner inside it is free
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=7.5)
    paths = _style.save(fig, out, "spectrum")
    n = mu.shape[0]
    size = doc["spectrum"]["size"]
    which = "all" if n == size else f"{n} computed (of {size})"
    caption = (
        f"The eigenvalues αμ of αJ ({which}) at α = {alpha:.4g} ({how}), over forward "
        f"Euler's stability disk |1 + z| < 1 (shaded). Descent is linearly stable iff "
        f"every point lies inside; {drawn['n_outside']} lie outside. Grey circles: the "
        f"same eigenvalues at α_max, where the limiting one touches the boundary."
    )
    return _entry("spectrum", "Spectrum over the stability disk", caption, paths)


def replay(source: Source, out: str | Path) -> dict[str, Any] | None:
    r"""The replay's $\max_k|\partial_u H_k|$ against the iteration, with the
    predicted $r_0\rho(\alpha)^i$ and the stopping tolerance; None without a
    replay."""
    doc = _document(source)
    rp = doc["replay"]
    if rp is None:
        return None
    on_h = doc["tolerance"]["stop_on"] == "hamiltonian"
    r = _floats(rp["hamiltonian_norm" if on_h else "gradient_norm"])
    what = r"$\max_k|\partial_u H_k|$" if on_h else r"$\max|\nabla E^N|$"
    what_text = "Hamiltonian residual max |∂H/∂u|" if on_h else "gradient max |∇E^N|"
    if doc.get("trajectory", {}).get("active_set") is not None:  # the projected residuals
        what = r"$\max|U - P_B(U - \partial_u H)|$" if on_h else r"$\max|U - P_B(U - \nabla E^N)|$"
        what_text = (
            "projected Hamiltonian residual max |u - P(u - ∂H/∂u)|"
            if on_h
            else "projected gradient max |u - P(u - ∇E^N)|"
        )
    alpha = "a line search" if rp["step"] is None else f"α = {rp['step']:.4g}"
    i = np.arange(r.shape[0])
    tol = doc["tolerance"]["tol"]
    fig, ax = _style.figure(width=_style.WIDTH_SINGLE, height=4.0)
    ok = np.isfinite(r) & (r > 0)
    ax.semilogy(
        i[ok],
        r[ok],
        color=_style.COLORS[0],
        marker="o" if r.shape[0] <= 40 else None,  # a short run is a few points
        label=f"replay: {what}",
    )
    rho = rp["predicted_rate"]
    if rho is not None and 0 < rho < 1 and ok[0]:
        stop = np.log(tol / 10 / r[0]) / np.log(rho)
        ip = np.arange(0, max(2, min(i[-1], int(np.ceil(stop))) + 1))
        ax.semilogy(
            ip,
            r[0] * rho**ip,
            linestyle="--",
            color=_style.COLORS[1],
            label=rf"predicted $r_0\,\rho(\alpha)^i$, $\rho$ = {rho:.4g}",
        )
    elif rho is not None and rho >= 1 and ok[0]:
        # growth: draw it up to 10x the largest residual seen (not to overflow)
        top = np.log(10 * np.max(r[ok]) / r[0]) / np.log(rho) if rho > 1 else i[-1]
        ig = np.arange(0, int(min(i[-1], max(1.0, np.floor(top)))) + 1)
        ax.semilogy(
            ig,
            r[0] * rho**ig,
            linestyle="--",
            color=_style.COLORS[1],
            label=rf"predicted $r_0\,\rho(\alpha)^i$, $\rho$ = {rho:.4g} (no contraction)",
        )
    ax.axhline(tol, color="0.45", linestyle=":", linewidth=1.1, label=f"tolerance {tol:.0e}")
    if rp["diverged_at"] >= 0:
        j = int(np.max(i[ok])) if np.any(ok) else 0
        y = float(r[j]) if np.any(ok) else 1.0
        side = "right" if j > 0.5 * i[-1] else "left"  # the label toward the middle
        _plots.mark_divergence(ax, j, y, text=f"diverged at i = {rp['diverged_at']}", ha=side)
        # room above the cross for its label, inside the axes
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, max(hi, y) * (max(hi, y) / lo) ** 0.12)
    obs = rp["observed_rate"]
    where = "a line search" if rp["step"] is None else f"$\\alpha$ = {rp['step']:.4g}"
    ax.set_title(f"replay with {where}: observed rate {format_number(obs)}")
    ax.set_xlabel("iteration $i$")
    ax.set_ylabel(what)
    # below the axes: a diverging run fills the upper left, where "best" would go
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.17), fontsize=7.5)
    paths = _style.save(fig, out, "replay")
    agrees = {True: "agree", False: "disagree", None: "were not compared"}[rp["agrees"]]
    caption = (
        f"The {what_text} of flow.descend with {alpha} "
        f"({rp['status']} after {rp['num_steps']} steps) and the "
        f"linear rate predicted from the spectrum, r₀ ρ(α)^i (dashed); the fitted and "
        f"predicted rates {agrees}."
    )
    return _entry("replay", "Replay against the predicted rate", caption, paths)


def equilibrium(source: Source, out: str | Path) -> dict[str, Any]:
    r"""The equilibrium's controls $u^*_k$ (piecewise constant) and costates
    $\lambda_k$ (plotted at $t_{k+1}$: $\lambda_k = \partial E^N/\partial x_{k+1}$)."""
    doc = _document(source)
    tr = doc["trajectory"]
    t = _floats(tr["t"])
    U = np.array(tr["controls"], dtype=float)
    lam = np.array(tr["costates"], dtype=float)
    fig, (a, b) = _style.figure(ncols=2, height=3.0)
    # colour and line style per component, so that lines differ in grey scale too
    styles = ("-", "--", "-.", ":")
    for j in range(U.shape[1]):
        a.stairs(
            U[:, j],
            t,
            label=f"$u_{{{j + 1}}}$",
            linewidth=1.4,
            linestyle=styles[j % 4],
            color=_style.COLORS[j % len(_style.COLORS)],
            baseline=None,
        )
    if tr.get("active_set") is not None:
        _draw_bounds(a, t, tr)
    a.set_xlabel("$t$")
    a.set_ylabel(r"$u^*_k$ on $[t_k, t_{k+1})$")
    a.set_title(f"controls $u^*$ ({doc['equilibrium']['status']})")
    for j in range(lam.shape[1]):
        b.plot(
            t[1:],
            lam[:, j],
            linestyle=styles[j % 4],
            color=_style.COLORS[j % len(_style.COLORS)],
            label=rf"$\lambda_{{{j + 1}}}$",
        )
    b.set_xlabel("$t$")
    b.set_ylabel(r"$\lambda_k$")
    b.set_title(r"costates $\lambda_k$ at $t_{k+1}$")
    for ax in (a, b):
        if ax.get_legend_handles_labels()[0] and len(ax.get_legend_handles_labels()[0]) <= 8:
            ax.legend(loc="best")
    paths = _style.save(fig, out, "equilibrium")
    caption = (
        f"The equilibrium U* (E^N = {doc['equilibrium']['cost']:.6g}, max |∂H/∂u| = "
        f"{doc['equilibrium']['hamiltonian_residual']:.1e}): the controls u_k on "
        f"[t_k, t_k+1) and the costates λ_k of the discrete adjoint recursion "
        f"(eqs. (23), (25)), drawn at t_k+1 since λ_k = ∂E^N/∂x_k+1."
    )
    if tr.get("active_set") is not None:
        caption += (
            f" Dotted: the control bounds; shaded: the intervals where a control is on a "
            f"bound ({doc['equilibrium']['num_active']} controls)."
        )
    return _entry("equilibrium", "Equilibrium controls and costates", caption, paths)


def _draw_bounds(ax: Any, t: np.ndarray, tr: dict[str, Any]) -> None:
    """The finite control bounds as dotted grey stairs, and the intervals where some
    control is on a bound shaded (one span per run of active intervals)."""
    lower, upper = (np.array(tr[k], dtype=float) for k in ("lower", "upper"))
    for side, values in (("bounds", lower), (None, upper)):
        for j in range(values.shape[1]):
            v = values[:, j]
            if np.all(np.isfinite(v)):
                ax.stairs(v, t, color="0.45", linestyle=":", linewidth=1.2, baseline=None,
                          label=side if j == 0 else None)  # fmt: skip
                side = None
    active = np.any(np.array(tr["active_set"]) != 0, axis=1)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(int), [0]])))
    for i, (k0, k1) in enumerate(zip(edges[::2], edges[1::2], strict=True)):
        ax.axvspan(t[k0], t[k1], color=_style.COLORS[2], alpha=0.15, linewidth=0,
                   label="on a bound" if i == 0 else None)  # fmt: skip


def _entry(name: str, title: str, caption: str, paths: list[Path]) -> dict[str, Any]:
    return {
        "name": name,
        "title": title,
        "caption": caption,
        "png": paths[0].name,
        "pdf": paths[1].name,
    }


def draw(source: Source, out: str | Path) -> list[dict[str, Any]]:
    """Draw every report figure of `source` (a results document or a
    `StabilityReport`) into `out`: the functions of `REPORT_FIGURES`, in order; returns one
    entry per figure drawn: `{"name", "title", "caption", "png", "pdf"}` (file names
    relative to `out`)."""
    doc = _document(source)
    entries = [part(doc, out) for part in REPORT_FIGURES]
    return [e for e in entries if e is not None]


def warm_up() -> None:
    """Load what drawing the report's figures needs into this process: matplotlib's
    fonts, its mathtext parser and both backends (PNG and PDF), by drawing a small
    figure in the shared style to memory. Processes forked afterwards inherit them;
    `gradflow analyze` does this in its figures' process while the analysis runs."""
    import io

    import matplotlib.pyplot as plt

    fig, ax = _style.figure()
    ax.plot([0.0, 1.0], [0.0, 1.0], label=r"$\alpha\mu$, $\max_k|\partial_u H_k|$")
    ax.set_title(r"$\lambda_k$ at $t_{k+1}$")
    ax.legend()
    for kind in ("png", "pdf"):
        fig.savefig(io.BytesIO(), format=kind)
    plt.close(fig)


REPORT_FIGURES = (spectrum, replay, equilibrium)
"""The report's figures, in the order of `draw`: each function draws one figure of a
document (or returns None where the document has nothing for it, as `replay`
without a replay) and returns its entry."""


#: The public names of `figures.report`: what the API reference documents (tests/test_docs.py).
__all__ = [
    "REPORT_FIGURES",
    "draw",
    "equilibrium",
    "replay",
    "spectrum",
    "warm_up",
]
