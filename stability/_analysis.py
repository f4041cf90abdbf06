r"""One call for the whole analysis of an optimizer on one discretised problem."""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import numpy as np

import flow
from flow import (
    RESULTS,
    AbstractResult,
    RealArrayLike,
    Shooting,
    format_number,
    metrics,
    validation,
)

from ._classify import Classification, classify
from ._equilibrium import Equilibrium, equilibrium
from ._euler import EulerBound, euler_bound
from ._flip import Flip
from ._linearize import linearize
from ._predictions import (
    flip_at,
    flip_record,
    start_at,
    start_prediction,
    start_record,
    summary_lines,
)
from ._spectrum import spectrum
from ._spectrum_results import Spectrum
from ._start import StartSpectrum
from ._tolerance import gradient_tolerance, hamiltonian_tolerance


#: Observed and predicted linear rates "agree" when their logarithms differ by at
#: most this fraction (10%: the observed rate is a fit over a finite window).
RATE_AGREEMENT = 0.1

STEP_RULES = ("optimal", "effective", "hamiltonian", "armijo", "lbfgs", "none")
"""The step rules `analyze` replays besides a positive number (see `analyze`)."""


def observed_rate(residuals: RealArrayLike, *, floor: float) -> float | None:
    r"""The linear convergence factor of a residual sequence $r_0, r_1, \dots$:
    $\exp$ of the least-squares slope of $\log r_i$ against $i$ over the second half
    of the iterations whose residual is above `floor` (the asymptotic regime,
    before rounding). None when fewer than 4 such iterations exist.
    """
    r = np.asarray(residuals, dtype=float)
    r = r[np.isfinite(r) & (r > floor)]
    if r.size < 4:
        return None
    tail = r[r.size // 2 :]
    i = np.arange(tail.size)
    slope = np.polyfit(i, np.log(tail), 1)[0]
    return float(math.exp(slope))


class StabilityReport(AbstractResult):
    r"""Everything [`analyze`][stability.analyze] found, with `to_dict()` (strict
    JSON) and a readable `summary()`.

    **Fields:**

    - `problem`, `N`, `scheme`, `metric`; `step` (the replayed constant step
      $\alpha$, or None for a line search or no replay) and `step_rule` (how it was
      chosen: `"optimal"`, `"hamiltonian"`, `"value"`, `"armijo"`, `"lbfgs"`,
      `"none"`);
    - `equilibrium` ([`Equilibrium`][stability.Equilibrium]), `spectrum`,
      `classification`, `euler` (the bound, with `alpha_max`, `alpha_opt`);
    - `tolerance`: Theorem 5.14 for the stopping rule `tol`/`stop_on`: `min_step`
      $\min_k h_k$, `tol_over_h` (the bound on $\max_k|\partial_u H_k|$ that
      $\|\nabla E^N\|_\infty \le$ `tol` gives) and `tol_times_h` (the gradient
      tolerance that gives $\max_k|\partial_u H_k| \le$ `tol`);
    - `replay` (the [`DescentTrace`][flow.DescentTrace] of `flow.descend` with the
      step, or None), `predicted_rate` $\rho(\alpha)$, `observed_rate` (fitted from
      the replay's residuals), `agrees`;
    - `equivalence`: the [`GradientCheck`][flow.GradientCheck] at
      `flow.probe_control` (Lemma 2);
    - `trajectory`: at the equilibrium, the grid `t`, `controls`, `states`,
      `costates` (user state, no running-cost component) and `hamiltonian_gradient`;
    - `start`: the [`StartSpectrum`][stability.StartSpectrum] of `U0 - U*` (the
      eigenvalues the start excites, with their weights; None where it does not
      apply: a bounded problem, a non-diagonal metric, no stable minimiser), and
      `start_prediction`: what it predicts with the replay's own stopping rule
      (`rule`): `rate_at_step` and `iterations_at_step` for the replayed step, the
      `effective_step` (the fewest predicted iterations from this start) and its
      `iterations_at_effective`. (`euler`'s `iterations_opt` is the worst case over
      every mode, for an error reduction of `euler.reduction`.)
    - `flip`: the [`Flip`][stability.Flip] at the step bound (where descent's fixed
      point loses stability, and whether a stable 2-cycle is born there or descent
      leaves), without its cycle; None when not computed (see `analyze`'s `flip`);
    - `warnings`: what is doubtful about the chosen step for this metric;
    - `verdict`: the finding in one sentence; `shooting`.

    `result` is the equilibrium's (`converged`, or why the search stopped).
    """

    problem: str
    N: int
    scheme: str
    metric: str
    step: float | None
    step_rule: str
    equilibrium: Equilibrium
    spectrum: Spectrum
    classification: Classification
    euler: EulerBound
    tolerance: dict[str, Any]
    replay: flow.DescentTrace | None
    predicted_rate: float | None
    observed_rate: float | None
    agrees: bool | None
    equivalence: flow.GradientCheck | None
    trajectory: dict[str, Any]
    start: StartSpectrum | None
    start_prediction: dict[str, Any] | None
    flip: Flip | None
    warnings: tuple[str, ...]
    verdict: str
    shooting: flow.AbstractShooting

    @property
    def result(self) -> RESULTS:
        """The equilibrium search's result."""
        return self.equilibrium.result

    @property
    def U(self) -> Any:
        """The equilibrium $U^*$, shape `(N, m)` (`equilibrium.U`)."""
        return self.equilibrium.U

    def _details(self) -> str:
        return self.verdict

    def _record(self, include_arrays: bool) -> dict[str, Any]:
        euler = self.euler.to_dict()
        euler["step"] = self.step
        euler["rate_at_step"] = self.predicted_rate
        euler["iterations_at_step"] = (
            self.euler.iterations(self.step)
            if self.step is not None and self.euler.alpha_max is not None
            else None
        )
        replay = None
        if self.replay is not None:
            replay = self.replay.to_dict()
            replay.update(
                step=self.step,
                predicted_rate=self.predicted_rate,
                observed_rate=self.observed_rate,
                agrees=self.agrees,
            )
        return dict(
            problem=self.problem,
            N=self.N,
            scheme=self.scheme,
            metric=self.metric,
            step=self.step,
            step_rule=self.step_rule,
            verdict=self.verdict,
            warnings=list(self.warnings),
            equilibrium=self.equilibrium.to_dict(),
            spectrum=self.spectrum.to_dict(),
            classification=self.classification.to_dict(),
            euler=euler,
            tolerance=self.tolerance,
            replay=replay,
            equivalence=None if self.equivalence is None else self.equivalence.to_dict(),
            trajectory=self.trajectory,
            start=start_record(self.start, self.start_prediction),
            flip=None if self.flip is None else flip_record(self.flip),
        )

    def summary(self) -> str:
        """A few readable lines: the verdict and the key numbers."""
        e, b, t = self.equilibrium, self.euler, self.tolerance
        lines = [
            f"{self.problem}, N = {self.N}, {self.scheme}, metric {self.metric}",
            f"verdict: {self.verdict}",
            f"equilibrium: {e.status}, E^N = {format_number(e.cost, '.10g')}, |grad|_inf = "
            f"{format_number(e.gradient_norm, '.2e')}, max|dH/du| = "
            f"{format_number(e.hamiltonian_residual, '.2e')}",
            f"flow: {self.classification.kind}"
            + (
                f" (manifold of dimension {self.classification.manifold_dimension})"
                if self.classification.n_zero
                else ""
            ),
            f"Euler bound: alpha_max = {format_number(b.alpha_max)}, alpha_opt = "
            f"{format_number(b.alpha_opt)}",
            f"Theorem 5.14: |grad E^N|_inf <= {t['tol']:.1e} only gives max|dH/du| <= "
            f"{t['tol_over_h']:.1e}; stop at {t['tol_times_h']:.1e} for max|dH/du| <= "
            f"{t['tol']:.1e}",
        ]
        if self.replay is not None:
            agree = "" if self.agrees is None else (" (agree)" if self.agrees else " (DISAGREE)")
            lines.append(
                f"replay ({self.step_rule}, alpha = {format_number(self.step)}): "
                f"{self.replay.status} after {int(self.replay.num_steps)} steps; rate "
                f"predicted {format_number(self.predicted_rate)}, observed "
                f"{format_number(self.observed_rate)}{agree}"
            )
        lines += summary_lines(self.start, self.start_prediction, self.step, self.flip)
        if self.equivalence is not None:
            lines.append(
                f"Lemma 2: |grad - h dH/du| / |grad| = {self.equivalence.lemma2:.1e}; "
                f"costate vs autodiff {self.equivalence.costate_vs_autodiff:.1e}"
            )
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def _summary(self) -> str:
        return f"{self.problem}, N={self.N}, {self.metric}: {self.verdict}"


def _trajectory(shooting: flow.AbstractShooting, eq: Equilibrium) -> dict[str, Any]:
    r"""The grid, controls, states $x_k$, costates $\lambda_k$ (eqs. (23), (25)) and
    $\partial_u H_k$ at the equilibrium, without the running-cost component; with
    control bounds also the bounds and the active set."""
    U = eq.U
    out: dict[str, Any] = dict(t=np.asarray(shooting.grid), controls=np.asarray(U))
    if isinstance(shooting, Shooting):
        n = shooting.problem.state_dim
        xs, lams, dH = jax.device_get(_trajectory_arrays(shooting, U))
        out.update(states=xs[:, :n], costates=lams[:, :n], hamiltonian_gradient=dH)
    out.update(lower=None, upper=None, active_set=None)
    if eq.bounded:
        lower, upper = (np.asarray(b) for b in shooting.bounds)
        out.update(lower=lower, upper=upper, active_set=np.asarray(eq.active_set))
    return out


def _check_bounded(metric: metrics.AbstractMetric, step: Any) -> None:
    """With control bounds the analysis is that of projected descent: a metric whose
    restriction to the free set is the same metric, and a fixed step."""
    if not isinstance(metric, metrics.Identity | metrics.Hamiltonian):
        raise ValueError(
            f"`metric`: with control bounds analyze takes 'identity' or 'hamiltonian' "
            f"(projected descent is exact for a diagonal metric, and these restrict to the "
            f"free set); got {metric.name!r}."
        )
    if isinstance(step, str) and step in ("armijo", "lbfgs"):
        raise ValueError(
            f"`step`={step!r}: with control bounds the replay is projected descent with "
            f"a fixed step ('optimal', 'hamiltonian', a number or 'none')."
        )


@eqx.filter_jit
def _trajectory_arrays(shooting: Shooting, U: Any) -> tuple[Any, Any, Any]:
    """States, costates and the Hamiltonian gradient at `U`: one compiled program."""
    return shooting.states(U), shooting.costates(U), shooting.hamiltonian_gradient(U)


def _resolve_step(
    step, shooting, metric, bound, effective=None
) -> tuple[Any, float | None, str, list[str]]:
    """(the `descend` step argument or None, the constant alpha or None, the rule's
    name, warnings). Refuses steps that make no sense for the metric."""
    warnings: list[str] = []
    h_min = float(np.min(np.asarray(shooting.steps)))
    if step is None or step == "none":
        return None, None, "none", warnings
    if isinstance(step, str):
        validation.choice(step, "step", STEP_RULES)
        if step == "optimal":
            alpha = bound.alpha_opt
            if alpha is None and bound.alpha_max is not None:
                alpha = 0.5 * bound.alpha_max
            if alpha is None:
                warnings.append("no step size is stable at this equilibrium: nothing replayed")
                return None, None, "optimal", warnings
            return float(alpha), float(alpha), "optimal", warnings
        if step == "effective":
            alpha = effective[0]
            return float(alpha), float(alpha), "effective", warnings
        if step == "hamiltonian":
            if not isinstance(metric, metrics.Identity):
                raise ValueError(
                    f"`step`='hamiltonian' (alpha = 1/h, section 6.2) is the remedy for the "
                    f"identity metric: alpha h = 1 makes it the Hamiltonian flow's Euler step. "
                    f"With metric {metric.name!r} it means alpha = {1 / h_min:.4g} (alpha_max "
                    f"is {format_number(bound.alpha_max)}); use metric='identity' with "
                    f"step='hamiltonian', or a number, 'optimal' or 'armijo'."
                )
            return 1.0 / h_min, 1.0 / h_min, "hamiltonian", warnings
        return step, None, step, warnings
    alpha = validation.positive_float(step, "step")
    if bound.alpha_max is not None and alpha >= bound.alpha_max:
        warnings.append(
            f"step alpha = {alpha:.4g} is outside the forward-Euler bound alpha_max = "
            f"{bound.alpha_max:.4g} at the equilibrium: the replay is expected to diverge "
            f"or oscillate"
        )
    if isinstance(metric, metrics.Newton) and alpha != 1.0:
        warnings.append(
            f"a constant step {alpha:.4g} with the Newton metric is a damped Newton "
            f"method; far from the minimiser use step='armijo'"
        )
    return alpha, alpha, "value", warnings


def analyze(
    shooting: flow.AbstractShooting,
    U0: RealArrayLike | None = None,
    *,
    metric: metrics.AbstractMetric | str = "hamiltonian",
    step: float | str | None = "optimal",
    tol: float = 1e-8,
    stop_on: str = "hamiltonian",
    max_steps: int = 20_000,
    equilibrium_tol: float = 1e-10,
    k: int = 6,
    flip: bool | str = "auto",
    throw: bool = True,
) -> StabilityReport:
    r"""The whole analysis of the optimizer $U \leftarrow U - \alpha M^{-1}\nabla E^N$ on
    one discretised problem (sections 5.1, 5.2 of the paper):

    1. the equilibrium $U^*$ ($\nabla E^N = 0$, eq. (51)) by trust-region Newton-CG
       from `U0` (default zeros), to `equilibrium_tol` on the Hamiltonian residual;
    2. the spectrum of $J = -M^{-1}\nabla^2 E^N(U^*)$ and its classification
       (is the flow (50) stable?);
    3. forward Euler's bound: is $\alpha$ inside $|1 + \alpha\mu| < 1$? and the
       predicted rate $\rho(\alpha) = \max_\mu |1 + \alpha\mu|$;
    4. Theorem 5.14 for the stopping rule (`tol` on `stop_on`'s residual): a
       gradient tolerance `tol` is `tol / min h` on the Hamiltonian condition, and
       `tol * min h` is the gradient tolerance for `max|dH/du| <= tol`;
    5. the replay: `flow.descend` from `U0` with the step, to `tol` on `stop_on`
       within `max_steps`, the observed linear rate fitted from its residuals, and
       whether it agrees with $\rho(\alpha)$ (log-rates within 10%);
    6. the gradient-equivalence check (Lemma 2) at a smooth probe control;
    7. the flip at the bound ([`flip`][stability.flip], without its cycle): is a
       stable 2-cycle born past $\alpha_{\max}$, or does descent leave?

    **Arguments:** `shooting`; `U0`; `metric` (a metric or its name); `step`:
    `"optimal"` ($\alpha_{opt}$, or $\alpha_{max}/2$ for a complex spectrum),
    `"hamiltonian"` ($\alpha = 1/h$, the identity metric's remedy of section 6.2;
    refused for other metrics), `"armijo"` or `"lbfgs"` (line searches: no predicted
    rate), a positive number (a warning when it is outside the Euler bound), or None
    / `"none"` (no replay); `tol`, `stop_on`, `max_steps`: the replayed optimizer's
    stopping rule; `equilibrium_tol`; `k` eigenvalues at each end; `flip`: compute
    step 7 always (`True`), never (`False`), or (`"auto"`, the default) when the
    replay met the bound (a constant step at or past $\alpha_{\max}$, or a replay
    that oscillated or diverged); it needs an unbounded problem, a diagonal metric
    and a stable minimiser, and costs a dense Hessian (or Lanczos) and third and
    fourth derivatives along one vector; `throw`: raise
    [`flow.ConvergenceError`][flow.ConvergenceError] (carrying the report) when no
    equilibrium was found.

    **Raises:** `ValueError` when the cost or its gradient is not finite at `U0`
    (naming the first grid index whose state is not finite), or for a step that
    makes no sense for the metric (why is said).

    **Returns:** a [`StabilityReport`][stability.StabilityReport].
    """
    sh = validation.shooting(shooting)
    metric = metrics.as_metric(metric)
    bounded = getattr(sh, "bounds", None) is not None
    if bounded:
        _check_bounded(metric, step)
    if not (isinstance(flip, bool) or flip == "auto"):
        raise ValueError(f"`flip` must be True, False or 'auto'; got {flip!r}.")
    U0 = sh.zeros() if U0 is None else validation.controls(sh, U0, "U0", finite=True)
    tol = validation.positive_float(tol, "tol")
    validation.stop_on(stop_on)
    max_steps = validation.positive_int(max_steps, "max_steps")
    eq = equilibrium(sh, U0, tol=equilibrium_tol, throw=False)
    if eq.status == "nonfinite":  # E^N or its gradient is not finite at U0: say where
        report = sh.nonfinite_report(U0, "U0") or "E^N or its gradient is not finite"
        raise ValueError(f"`U0`: {report}; analyze needs a start where E^N is finite.")
    metric_at = metric.prepare(sh, U0)
    # the Equilibrium itself, so that linearize reuses its gradient norm
    lin = linearize(sh, eq, metric=metric_at)
    spec = spectrum(lin, k=k)
    cls = classify(spec)
    bound = euler_bound(spec)
    start = start_at(lin, eq, cls, bound, U0)
    h_min = float(np.min(np.asarray(sh.steps)))
    tolerance = dict(
        tol=tol,
        stop_on=stop_on,
        min_step=h_min,
        tol_over_h=float(hamiltonian_tolerance(tol, sh)),
        tol_times_h=float(gradient_tolerance(tol, sh)),
    )
    if step == "effective" and start is None:
        raise ValueError(
            "`step`='effective' needs the start's spectral measure: an unbounded problem, "
            "a diagonal metric (identity, hamiltonian) and a stable minimiser; use 'optimal'."
        )
    effective = (
        None if start is None else start.effective_step(bound.alpha_max, tol, stop_on, max_steps)
    )
    rule, alpha, step_rule, warnings = _resolve_step(step, sh, metric, bound, effective)
    trace = predicted = observed = agrees = None
    if rule is not None:
        trace = flow.descend(
            sh,
            U0,
            metric=metric,
            step=rule,
            max_steps=max_steps,
            tol=tol,
            stop_on=stop_on,
            throw=False,
        )
        if alpha is not None and bound.alpha_max is not None:
            predicted = bound.rate(alpha)
        n = int(trace.num_steps)
        observed = observed_rate(np.asarray(trace.residual)[: n + 1], floor=max(100 * tol, 1e-12))
        if predicted is not None and observed is not None and 0 < predicted < 1:
            agrees = abs(math.log(observed) - math.log(predicted)) <= RATE_AGREEMENT * abs(
                math.log(predicted)
            )
    # at a smooth non-trivial control: at U* the gradient is ~0 and relative
    # differences would only measure rounding
    check = flow.check_gradients(sh) if isinstance(sh, Shooting) else None
    flip_result = flip_at(sh, eq, cls, metric_at, bound, flip, alpha, trace, warnings)
    verdict = _verdict(eq, cls, bound, alpha, step_rule, trace, agrees)
    prediction = start_prediction(start, alpha, effective, tol, stop_on, max_steps)
    if prediction is not None and trace is not None and alpha is not None:
        verdict += (
            f" in {int(trace.num_steps)} steps ({format_number(prediction['iterations_at_step'])} "
            f"predicted for this start)"
        )
    out = StabilityReport(
        problem=getattr(getattr(sh, "problem", None), "name", type(sh).__name__),
        N=sh.N,
        scheme=getattr(getattr(sh, "scheme", None), "name", "adaptive"),
        metric=metric.name,
        step=alpha,
        step_rule=step_rule,
        equilibrium=eq,
        spectrum=spec,
        classification=cls,
        euler=bound,
        tolerance=tolerance,
        replay=trace,
        predicted_rate=predicted,
        observed_rate=observed,
        agrees=agrees,
        equivalence=check,
        trajectory=_trajectory(sh, eq),
        start=start,
        start_prediction=prediction,
        flip=flip_result,
        warnings=tuple(warnings),
        verdict=verdict,
        shooting=sh,
    )
    if throw:
        out.raise_for_status("analyze", "Try another U0 or a looser equilibrium_tol.")
    return out


#: How the verdict says what the replay did.
_REPLAY = {
    "converged": "converged",
    "completed": "completed",
    "max_steps": "stopped at max_steps before the tolerance",
    "diverged": "diverged",
    "nonfinite": "could not start (non-finite cost)",
    "oscillating": "settled on a cycle (past the flip at the bound)",
}


def _verdict(eq, cls, bound, alpha, step_rule, trace, agrees) -> str:
    if not eq.success:
        return f"no equilibrium found ({eq.status}); the analysis below is at the last iterate"
    text = _flow_verdict(cls, bound, alpha, step_rule, trace, agrees)
    if not eq.bounded:
        return text
    # the same, said of the free set
    degenerate = f", {eq.num_degenerate} degenerate" if eq.num_degenerate else ""
    text = text.replace("the flow is", "the projected flow is", 1)
    text = text.replace("descent is stable", "projected descent is stable", 1)
    return f"{eq.num_active} of {eq.U.size} controls on a bound{degenerate}; on the free set {text}"


def _flow_verdict(cls, bound, alpha, step_rule, trace, agrees) -> str:
    flow_part = {
        "asymptotically stable": "the flow is stable at the equilibrium",
        "marginal": "the flow is marginally stable (a manifold of equilibria)",
        "saddle": f"the equilibrium is a saddle with {cls.n_unstable} unstable direction(s)",
        "unstable": "the equilibrium is unstable",
    }.get(cls.kind, cls.kind)
    if bound.alpha_max is None:
        return f"{flow_part}; no step size makes descent converge to it"
    text = f"{flow_part}; descent is stable for alpha < {bound.alpha_max:.4g}"
    if trace is not None and alpha is not None:
        inside = alpha < bound.alpha_max
        text += (
            f"; alpha = {alpha:.4g} is {'inside' if inside else 'outside'} the bound and "
            f"the replay {_REPLAY.get(trace.status, trace.status)}"
        )
        if agrees is not None:
            text += " at the predicted rate" if agrees else " at a rate other than predicted"
    elif trace is not None:
        text += (
            f"; the replay with the {step_rule} line search "
            f"{_REPLAY.get(trace.status, trace.status)}"
        )
    return text
