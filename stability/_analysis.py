r"""One call for the whole analysis of an optimizer on one discretised problem."""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import numpy as np

import flow

from ._classify import Classification, classify
from ._common import check_shooting, jsonable
from ._equilibrium import Equilibrium, equilibrium
from ._euler import EulerBound, euler_bound
from ._linearize import as_metric, linearize
from ._spectrum import Spectrum, spectrum
from ._tolerance import gradient_tolerance, hamiltonian_tolerance


#: Observed and predicted linear rates "agree" when their logarithms differ by at
#: most this fraction (10%: the observed rate is a fit over a finite window).
RATE_AGREEMENT = 0.1


def observed_rate(residuals: Any, *, floor: float) -> float | None:
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


class StabilityReport(eqx.Module):
    r"""Everything [`analyze`][stability.analyze] found, with `to_dict()` (JSON-safe)
    and a readable `summary()`.

    **Fields:** `problem`, `N`, `scheme`, `metric`, `step` (the replayed step
    $\alpha$ or None); `equilibrium` ([`Equilibrium`][stability.Equilibrium]);
    `spectrum`, `classification`, `euler` (the bound, with `alpha_max`,
    `alpha_opt`); `tolerance` (Theorem 5.14: the gradient tolerance `eps`, the
    Hamiltonian tolerance `eps/h` it implies, and `h * eps` for the other way);
    `replay` (the [`DescentTrace`][flow.DescentTrace] of `flow.descend` at `step`, or
    None); `predicted_rate` $\rho(\alpha)$, `observed_rate` (fitted from the
    replay's Hamiltonian residuals), `agrees`; `equivalence` (the
    [`GradientCheck`][flow.GradientCheck] at `flow.probe_control`); `verdict`.
    """

    problem: str
    N: int
    scheme: str
    metric: str
    step: float | None
    equilibrium: Equilibrium
    spectrum: Spectrum
    classification: Classification
    euler: EulerBound
    tolerance: dict[str, float]
    replay: flow.DescentTrace | None
    predicted_rate: float | None
    observed_rate: float | None
    agrees: bool | None
    equivalence: flow.GradientCheck
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary (arrays of U left out)."""
        euler = self.euler.to_dict()
        if self.step is not None:
            euler["step"] = self.step
            euler["rate_at_step"] = self.predicted_rate
        replay = None
        if self.replay is not None:
            replay = self.replay.to_dict()
            replay.update(
                step=self.step,
                predicted_rate=self.predicted_rate,
                observed_rate=self.observed_rate,
                agrees=self.agrees,
            )
        return jsonable(
            dict(
                problem=self.problem,
                N=self.N,
                scheme=self.scheme,
                metric=self.metric,
                step=self.step,
                verdict=self.verdict,
                equilibrium=self.equilibrium.to_dict(),
                spectrum=self.spectrum.to_dict(),
                classification=self.classification.to_dict(),
                euler=euler,
                tolerance=self.tolerance,
                replay=replay,
                equivalence=self.equivalence.to_dict(),
            )
        )

    def summary(self) -> str:
        """A few readable lines: the verdict and the key numbers."""
        e, b = self.equilibrium, self.euler
        lines = [
            f"{self.problem}, N = {self.N}, {self.scheme}, metric {self.metric}",
            f"verdict: {self.verdict}",
            f"equilibrium: {e.status}, E^N = {e.cost:.10g}, |grad|_inf = "
            f"{e.gradient_norm:.2e}, max|dH/du| = {e.hamiltonian_residual:.2e}",
            f"flow: {self.classification.status}"
            + (
                f" (manifold of dimension {self.classification.manifold_dimension})"
                if self.classification.n_zero
                else ""
            ),
            f"Euler bound: alpha_max = {_fmt(b.alpha_max)}, alpha_opt = {_fmt(b.alpha_opt)}",
            f"Theorem 5.14: |grad E^N|_inf <= {self.tolerance['eps']:.1e} only gives "
            f"max|dH/du| <= {self.tolerance['hamiltonian_tolerance']:.1e}; stop at "
            f"{self.tolerance['gradient_tolerance_for_eps_H']:.1e} for max|dH/du| <= "
            f"{self.tolerance['eps']:.1e}",
        ]
        if self.replay is not None:
            lines.append(
                f"replay at alpha = {_fmt(self.step)}: {self.replay.message.split(':')[0]} "
                f"after {int(self.replay.n_iterations)} iterations; rate predicted "
                f"{_fmt(self.predicted_rate)}, observed {_fmt(self.observed_rate)}"
                + ("" if self.agrees is None else (" (agree)" if self.agrees else " (DISAGREE)"))
            )
        lines.append(
            f"Lemma 2: |grad - h dH/du| / |grad| = {self.equivalence.lemma2:.1e}; "
            f"costate vs autodiff {self.equivalence.costate_vs_autodiff:.1e}"
        )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"StabilityReport({self.problem}, N={self.N}, {self.metric}: {self.verdict})"


def _fmt(x: float | None) -> str:
    return "none" if x is None else f"{x:.4g}"


def analyze(
    shooting: Any,
    U0: Any = None,
    *,
    metric: Any = "hamiltonian",
    step: Any = "optimal",
    eps: float = 1e-6,
    equilibrium_tol: float = 1e-10,
    iterations: int = 20_000,
    replay_tol: float = 1e-9,
    k: int = 6,
) -> StabilityReport:
    r"""The whole analysis of the optimizer $U \leftarrow U - \alpha M^{-1}\nabla E^N$ on
    one discretised problem (sections 5.1, 5.2 of the paper):

    1. the equilibrium $U^*$ ($\nabla E^N = 0$, eq. (51)) by trust-region Newton-CG
       from `U0` (default zeros);
    2. the spectrum of $J = -M^{-1}\nabla^2 E^N(U^*)$ and its classification
       (is the flow (50) stable?);
    3. forward Euler's bound: is $\alpha$ inside $|1 + \alpha\mu| < 1$? and the
       predicted rate $\rho(\alpha) = \max_\mu |1 + \alpha\mu|$;
    4. Theorem 5.14: a gradient tolerance `eps` is `eps / min h` on the
       Hamiltonian condition, and `eps * min h` is the gradient tolerance for
       `max|dH/du| <= eps`;
    5. the replay: `flow.descend` from `U0` at the step, the observed linear rate
       fitted from its Hamiltonian residuals, and whether it agrees with
       $\rho(\alpha)$ (log-rates within 10%);
    6. the gradient-equivalence check (Lemma 2) at a smooth probe control.

    **Arguments:** `shooting`; `U0`; `metric` (a metric or its name); `step`:
    `"optimal"` ($\alpha_{opt}$, or $\alpha_{max}/2$ for a complex spectrum), a
    positive number, or None (no replay); `eps`; `equilibrium_tol`;
    `iterations` and `replay_tol` for the replay; `k` eigenvalues at each end.

    **Returns:** a [`StabilityReport`][stability.StabilityReport].
    """
    sh = check_shooting(shooting)
    metric = as_metric(metric)
    U0 = sh.zeros() if U0 is None else sh.check_controls(U0, "U0")
    eq = equilibrium(sh, U0, tol=equilibrium_tol, throw=False)
    metric_at = metric.prepare(sh, U0)
    spec = spectrum(linearize(sh, eq.U, metric_at), k=k)
    cls = classify(spec)
    bound = euler_bound(spec)
    tolerance = dict(
        eps=float(eps),
        min_step=float(np.min(np.asarray(sh.steps))),
        hamiltonian_tolerance=float(hamiltonian_tolerance(eps, sh)),
        gradient_tolerance_for_eps_H=float(gradient_tolerance(eps, sh)),
    )
    alpha: float | None
    if step is None:
        alpha = None
    elif isinstance(step, str):
        if step != "optimal":
            raise ValueError(f"`step` must be 'optimal', a positive number or None; got {step!r}.")
        if bound.alpha_opt is not None:
            alpha = bound.alpha_opt
        elif bound.alpha_max is not None:
            alpha = 0.5 * bound.alpha_max
        else:
            alpha = None
    else:
        alpha = float(step)
        if not (alpha > 0 and math.isfinite(alpha)):
            raise ValueError(f"`step` must be positive; got {step!r}.")
    trace = predicted = observed = agrees = None
    if alpha is not None:
        trace = flow.descend(
            sh, U0, metric, step=alpha, iterations=iterations, tol=replay_tol, throw=False
        )
        predicted = bound.rate(alpha) if bound.alpha_max is not None else None
        observed = observed_rate(
            np.asarray(trace.hamiltonian_norm[: int(trace.n_iterations) + 1]),
            floor=max(100 * replay_tol, 1e-12),
        )
        if predicted is not None and observed is not None and 0 < predicted < 1:
            agrees = abs(math.log(observed) - math.log(predicted)) <= RATE_AGREEMENT * abs(
                math.log(predicted)
            )
    # at a smooth non-trivial control: at U* the gradient is ~0 and relative
    # differences would only measure rounding
    check = flow.check_gradients(sh)
    verdict = _verdict(eq, cls, bound, alpha, trace, agrees)
    return StabilityReport(
        problem=sh.problem.name,
        N=sh.N,
        scheme=sh.scheme.name,
        metric=metric.name,
        step=alpha,
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
        verdict=verdict,
    )


def _verdict(eq, cls, bound, alpha, trace, agrees) -> str:
    if not eq.success:
        return f"no equilibrium found ({eq.status}); the analysis below is at the last iterate"
    flow_part = {
        "asymptotically stable": "the flow is stable at the equilibrium",
        "marginal": "the flow is marginally stable (a manifold of equilibria)",
        "saddle": f"the equilibrium is a saddle with {cls.n_unstable} unstable direction(s)",
        "unstable": "the equilibrium is unstable",
    }.get(cls.status, cls.status)
    if bound.alpha_max is None:
        return f"{flow_part}; no step size makes descent converge to it"
    text = f"{flow_part}; descent is stable for alpha < {bound.alpha_max:.4g}"
    if alpha is not None and trace is not None:
        inside = alpha < bound.alpha_max
        text += (
            f"; alpha = {alpha:.4g} is {'inside' if inside else 'outside'} the bound and "
            f"the replay {trace.message.split(':')[0]}"
        )
        if agrees is not None:
            text += " at the predicted rate" if agrees else " at a rate other than predicted"
    return text
