"""What `stability.analyze` says beyond the worst-case step bound: the prediction for
the start actually given (its spectral measure, `stability.start_spectrum`) and the
flip at the bound (`stability.flip`), each where it applies, and their records in
the report's dictionary."""

from __future__ import annotations

from typing import Any

import numpy as np

from flow import format_number, metrics

from ._flip import Flip, flip as flip_verb
from ._start import EXCITED_RTOL, StartSpectrum, start_spectrum


def start_at(lin, eq, cls, bound, U0) -> StartSpectrum | None:
    """The start's spectral measure where it applies: an unbounded problem, a
    diagonal metric and a stable minimiser."""
    if eq.bounded or not eq.success or lin.kind != "diagonal":
        return None
    if cls.kind != "asymptotically stable" or bound.alpha_max is None:
        return None
    return start_spectrum(lin, U0)


def start_prediction(start, alpha, effective, tol, stop_on, max_steps) -> dict[str, Any] | None:
    """What the start's spectral measure predicts, with the replay's stopping rule."""
    if start is None:
        return None
    return dict(
        rule=f"the first iteration whose {stop_on} residual is <= {tol:g}",
        rate_at_step=None if alpha is None else start.rate(alpha),
        iterations_at_step=None
        if alpha is None
        else start.iterations(alpha, tol, stop_on, max_steps),
        effective_step=effective[0],
        iterations_at_effective=effective[1],
    )


def start_record(start, prediction) -> dict[str, Any] | None:
    """The results document's `start`."""
    if start is None:
        return None
    excited = np.abs(start.coefficients) > EXCITED_RTOL * np.max(
        np.abs(start.coefficients), initial=0
    )
    return dict(
        excited=start.mu[excited],
        weights=start.weights[excited],
        exact=start.exact,
        num_hvp=start.num_hvp,
        **prediction,
    )


def flip_record(result: Flip) -> dict[str, Any]:
    """The results document's `flip`: the location, kind and coefficient."""
    return dict(
        kind=result.kind,
        alpha=result.alpha,
        mu_max=result.mu_max,
        coefficient=result.coefficient,
        message=result.message,
    )


def flip_at(sh, eq, cls, metric, bound, flip, alpha, trace, warnings) -> Flip | None:
    """`stability.flip` without its cycle, when asked (`flip=True`) or, with "auto",
    when the replay met the bound: a constant step at or past alpha_max, or a replay
    that oscillated or diverged. Only where it applies: an unbounded problem, a
    diagonal metric, a converged, asymptotically stable minimiser. A solver that
    fails inside it is a warning, not an error of the analysis."""
    if flip is False or eq.bounded or not eq.success or bound.alpha_max is None:
        return None
    if not isinstance(metric, metrics.AbstractDiagonalMetric):
        return None
    if cls.kind != "asymptotically stable":
        return None
    if flip == "auto":
        past = alpha is not None and alpha >= bound.alpha_max
        left = trace is not None and trace.status in ("oscillating", "diverged")
        if not (past or left):
            return None
    try:
        return flip_verb(sh, eq, metric=metric, cycle=False)
    except (RuntimeError, ValueError) as err:
        warnings.append(f"the flip at the bound could not be classified: {err}")
        return None


def summary_lines(start, prediction, step, flip) -> list[str]:
    """The report summary's lines for the start's prediction and the flip."""
    lines = []
    if prediction is not None:
        p = prediction
        excited = ", ".join(format_number(m, ".4g") for m in start.excited[:4])
        more = "" if start.excited.size <= 4 else f" ({start.excited.size} in all)"
        lines.append(
            f"this start excites mu = {excited}{more}: predicted "
            f"{format_number(p['iterations_at_step'])} iterations at alpha = "
            f"{format_number(step)} (rate {format_number(p['rate_at_step'])}), "
            f"{format_number(p['iterations_at_effective'])} at the effective step "
            f"{format_number(p['effective_step'])} ({p['rule']})"
        )
    if flip is not None:
        past = {
            "supercritical": "settles on a stable 2-cycle (for steps close enough to it)",
            "subcritical": "leaves the equilibrium",
        }.get(flip.kind, "is decided by higher order")
        lines.append(
            f"flip at alpha* = {flip.alpha:.6g}: {flip.kind} (c = {flip.coefficient:.4g}): "
            f"past the bound descent {past}"
        )
    return lines
