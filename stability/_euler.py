r"""Forward-Euler step bounds: gradient descent $U_{i+1} = U_i - \alpha M^{-1}\nabla
E^N(U_i)$ (eq. (37)) is forward Euler with step $\alpha$ on the flow (50), so near an
equilibrium it converges iff $|1 + \alpha\mu| < 1$ for every eigenvalue $\mu$ of
$J$ (section 5.1, DESIGN section 2)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from jaxtyping import Inexact

from flow import AbstractRecord, format_number
from flow.validation import positive_float

from ._spectrum_results import Spectrum


class EulerBound(AbstractRecord):
    r"""Forward-Euler stability of gradient descent at an equilibrium, from
    [`euler_bound`][stability.euler_bound].

    **Fields:**

    - `alpha_max`: $\min_{\mathrm{Re}\,\mu<0} -2\,\mathrm{Re}\,\mu/|\mu|^2$; the descent
      is linearly stable iff $0 < \alpha <$ `alpha_max`. None when some
      $\mathrm{Re}\,\mu > 0$ (the flow itself is unstable: no step size converges).
    - `alpha_opt`: $2/(|\mu_{\text{stiff}}| + |\mu_{\text{slow}}|)$ for a real
      spectrum in $[\mu_{\text{stiff}}, \mu_{\text{slow}}] \subset (-\infty, 0)$; None
      for complex spectra.
    - `rho_opt`: $\rho(\alpha_{\text{opt}}) = (\kappa - 1)/(\kappa + 1)$,
      $\kappa = \mu_{\text{stiff}}/\mu_{\text{slow}}$; `iterations_opt`:
      $\lceil\log(\text{reduction})/\log\rho_{\text{opt}}\rceil$.
    - `stiff`, `slow`: the ends used; `limiting`: the eigenvalue attaining
      `alpha_max`.
    - `n_excluded`: zero eigenvalues ($|\mu| \le$ `zero_tol`$\cdot\max|\mu|$, a
      manifold of equilibria) left out, as they must be: along the manifold the
      iteration neither converges nor diverges.
    - `eigenvalues`: the non-zero eigenvalues the bounds were computed from (for a
      partial spectrum, the computed ones).
    - `exact`: True when both ends are converged eigenvalues (not a cluster edge or
      an unconverged Ritz value); `reduction`; `description` (the bound in words,
      also the message's details). `result` is always `completed`.
    """

    alpha_max: float | None
    alpha_opt: float | None
    rho_opt: float | None
    iterations_opt: int | None
    stiff: float | None
    slow: float | None
    limiting: complex | float | None
    n_excluded: int
    eigenvalues: Inexact[np.ndarray, " j"]
    reduction: float
    exact: bool
    description: str

    def _details(self) -> str:
        return self.description

    def rate(self, alpha: float) -> float:
        r"""$\rho(\alpha) = \max_\mu |1 + \alpha\mu|$ over the non-zero eigenvalues: the
        asymptotic contraction factor per step of descent with step $\alpha$."""
        alpha = positive_float(alpha, "alpha")
        if self.eigenvalues.shape[0] == 0:
            return 1.0
        return float(np.max(np.abs(1.0 + alpha * self.eigenvalues)))

    def iterations(self, alpha: float) -> int | None:
        r"""$\lceil\log(\text{reduction})/\log\rho(\alpha)\rceil$, the predicted number of
        steps to shrink the error by `reduction`; None when $\rho(\alpha) \ge 1$."""
        return _iterations(self.rate(alpha), self.reduction)

    def _summary(self) -> str:
        excl = f", {self.n_excluded} zero eigenvalue(s) excluded" if self.n_excluded else ""
        approx = "" if self.exact else " (approximate: an end is not a converged eigenvalue)"
        return (
            f"alpha_max={format_number(self.alpha_max, '.6g')}, alpha_opt="
            f"{format_number(self.alpha_opt, '.6g')}, rho_opt="
            f"{format_number(self.rho_opt, '.6g')}, iterations_opt="
            f"{format_number(self.iterations_opt)} for reduction {self.reduction:g}"
            f"{excl}{approx}"
        )


def _iterations(rho: float, reduction: float) -> int | None:
    if not rho < 1.0:
        return None
    if rho == 0.0:
        return 1
    return max(1, math.ceil(math.log(reduction) / math.log(rho)))


def euler_bound(
    spectrum: Spectrum, *, reduction: float = 1e-6, zero_tol: float | None = None
) -> EulerBound:
    r"""Step-size bounds of forward Euler on the flow (50) at an equilibrium.

    For the eigenvalues $\mu$ of $J$ (complex allowed), leaving out zeros
    ($|\mu| \le$ `zero_tol`$\cdot\max|\mu|$, default the spectrum's `zero_tol`):

    - $\alpha_{\max} = \min_{\mathrm{Re}\,\mu < 0} -2\,\mathrm{Re}\,\mu/|\mu|^2$ (from
      $|1 + \alpha\mu| < 1$), None when some $\mathrm{Re}\,\mu > 0$;
    - for a real spectrum $[-\mu_{\max}, -\mu_{\min}]$:
      $\alpha_{\text{opt}} = 2/(\mu_{\min} + \mu_{\max})$,
      $\rho(\alpha) = \max|1 + \alpha\mu|$, $\rho(\alpha_{\text{opt}}) =
      (\mu_{\max} - \mu_{\min})/(\mu_{\max} + \mu_{\min})$, and about
      $\log(\text{reduction})/\log\rho$ iterations to shrink the error by
      `reduction`.

    For a partial spectrum the computed eigenvalues are used: the stiff end is a
    converged eigenvalue in practice; when the slow end was resolved only to a
    cluster, it is the rightmost Ritz value, and for a symmetric problem the true
    end lies between that value and the cluster's right edge (`exact` is then
    False).

    **Returns:** an [`EulerBound`][stability.EulerBound].
    """
    if not isinstance(spectrum, Spectrum):
        raise TypeError(f"`spectrum` must be a stability.Spectrum; got {type(spectrum).__name__}.")
    reduction = positive_float(reduction, "reduction")
    if not reduction < 1:
        raise ValueError(f"`reduction` must be in (0, 1); got {reduction}.")
    zero_tol = spectrum.zero_tol if zero_tol is None else positive_float(zero_tol, "zero_tol")
    mu = np.asarray(spectrum.eigenvalues)
    mu = mu[np.isfinite(mu)]
    scale = max(float(np.max(np.abs(mu))) if mu.shape[0] else 0.0, spectrum.norm)
    threshold = zero_tol * scale
    zero = np.abs(mu) <= threshold
    n_excluded = int(np.sum(zero))
    for c in spectrum.clusters:
        if abs(c.position) <= threshold:
            n_excluded += c.count - int(np.sum(np.abs(mu - c.position) <= c.halfwidth))
    mu_nz = mu[~zero]
    real = spectrum.real
    values = np.real(mu_nz) if real else mu_nz
    exact = spectrum.complete or (
        spectrum.stiff_status in ("converged", "complete")
        and spectrum.slow_status in ("converged", "complete")
    )
    note = f"{n_excluded} zero eigenvalue(s) excluded" if n_excluded else "no zero eigenvalues"
    if values.shape[0] == 0:
        return EulerBound(
            alpha_max=None,
            alpha_opt=None,
            rho_opt=None,
            iterations_opt=None,
            stiff=None,
            slow=None,
            limiting=None,
            n_excluded=n_excluded,
            eigenvalues=values,
            reduction=reduction,
            exact=exact,
            description=f"no non-zero eigenvalues: no bound ({note})",
        )
    re = np.real(values)
    if np.any(re > 0):
        worst = values[np.argmax(re)]
        return EulerBound(
            alpha_max=None,
            alpha_opt=None,
            rho_opt=None,
            iterations_opt=None,
            stiff=float(np.min(re)),
            slow=float(np.max(re)),
            limiting=_scalar(worst),
            n_excluded=n_excluded,
            eigenvalues=values,
            reduction=reduction,
            exact=exact,
            description=(
                f"the flow is unstable here (Re mu = {np.max(re):.3g} > 0): forward Euler "
                f"diverges along that direction for every step size ({note})"
            ),
        )
    bounds = -2.0 * re / np.abs(values) ** 2
    i = int(np.argmin(bounds))
    alpha_max = float(bounds[i])
    stiff, slow = float(np.min(re)), float(np.max(re))
    alpha_opt = rho_opt = iterations_opt = None
    if real:
        alpha_opt = 2.0 / (abs(stiff) + abs(slow))
        rho_opt = (abs(stiff) - abs(slow)) / (abs(stiff) + abs(slow))
        iterations_opt = _iterations(rho_opt, reduction)
    msg = (
        f"stable for 0 < alpha < {alpha_max:.6g}"
        + (f"; alpha_opt = {alpha_opt:.6g} contracts by {rho_opt:.6g} per step" if real else "")
        + f" ({note})"
    )
    return EulerBound(
        alpha_max=alpha_max,
        alpha_opt=alpha_opt,
        rho_opt=rho_opt,
        iterations_opt=iterations_opt,
        stiff=stiff,
        slow=slow,
        limiting=_scalar(values[i]),
        n_excluded=n_excluded,
        eigenvalues=values,
        reduction=reduction,
        exact=bool(exact),
        description=msg,
    )


def _scalar(x: Any) -> complex | float:
    x = complex(x)
    return x.real if x.imag == 0 else x
