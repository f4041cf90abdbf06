r"""Predictions for the start actually given: the spectral measure of the initial error.

Near a minimiser $U^*$ descent with a constant step is linear in the error
$e_i = U_i - U^*$: $e_{i+1} = (I - \alpha M^{-1}H)e_i$, $H = \nabla^2E^N(U^*)$. For a
diagonal metric $M = D$, in $z = D^{1/2}e$ the map is $I - \alpha S$ with the
symmetric $S = D^{-1/2}HD^{-1/2}$ (eigenvalues $\mu$ of $M^{-1}H$). Write
$z_0 = \sum_j c_j y_j$ on the eigenvectors $y_j$ of $S$; then
$$z_i = \sum_j c_j (1 - \alpha\mu_j)^i y_j, \qquad
\nabla E^N(U_i) = H e_i = \sum_j c_j (1 - \alpha\mu_j)^i \mu_j D^{1/2} y_j .$$
The worst-case rate $\max_\mu|1 - \alpha\mu|$ (and $\alpha_{opt} = 2/(\mu_{\min} +
\mu_{\max})$) assumes every mode is excited; a start excites only the modes with
$c_j \ne 0$, and its residual history, rate and iteration count follow from
$(\mu_j, c_j)$ alone: the *spectral measure* of $e_0$.

Lanczos on $S$ started at $z_0$ computes it without knowing the eigenvectors: the
Ritz values $\theta_j$ of the Krylov space and the weights $c_j = \|z_0\|\,s_{1j}$
(first components of the tridiagonal matrix's eigenvectors) are exact once the
Krylov space is invariant, which happens after as many steps as $e_0$ excites
distinct eigenvalues (two for a rank-two problem started at $U = 0$), and are the
Gauss-quadrature approximation before. The predicted residual of iteration $i$
uses the stopping rule of the replay: $\max_k|\nabla_{u_k}E^N|/h_k$ (`stop_on`
`"hamiltonian"`) or $\max|\nabla E^N|$ (`"gradient"`) $\le$ `tol`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from jaxtyping import Float

from flow import AbstractRecord, format_number
from flow.validation import positive_float, positive_int, stop_on as check_stop_on

from ._lanczos import _krylov, _tridiag_eig
from ._linearize import Linearization, _kvp


#: Ritz pairs with weight |c_j| below this fraction of max|c| are not excited.
EXCITED_RTOL = 1e-10

#: Iterations evaluated at once when predicting a residual history.
_CHUNK = 512


class StartSpectrum(AbstractRecord):
    r"""The spectral measure of a start's error $U_0 - U^*$ on the eigenvalues of
    $M^{-1}\nabla^2E^N(U^*)$, from [`start_spectrum`][stability.start_spectrum], and
    the predictions it gives for descent from that start.

    **Fields:** `mu` (the Ritz values $\theta_j$, ascending), `coefficients` ($c_j$),
    `weights` ($c_j^2/\sum c^2$, the spectral measure), `excited` (the $\mu_j$ with
    $|c_j| > 10^{-10}\max|c|$), `error_norm` ($\|D^{1/2}(U_0 - U^*)\|_2$), `exact`
    (True when the Krylov space became invariant: the measure is exact, not a
    quadrature), `num_hvp`, `metric`; `modes`: $\mu_j D^{1/2} y_j$, shape (k, N, m),
    the gradient of each mode; `steps`: the grid's $h_k$, shape (N, 1).
    """

    mu: Float[np.ndarray, " k"]
    coefficients: Float[np.ndarray, " k"]
    weights: Float[np.ndarray, " k"]
    excited: Float[np.ndarray, " e"]
    error_norm: float
    exact: bool
    num_hvp: int
    metric: str
    modes: Float[np.ndarray, "k N m"]
    steps: Float[np.ndarray, "N 1"]

    _arrays = ("mu", "coefficients", "weights", "excited", "modes", "steps")

    def rate(self, alpha: float) -> float:
        r"""$\max_{j\ \text{excited}}|1 - \alpha\mu_j|$: the asymptotic contraction
        factor per step of descent with step `alpha` from this start."""
        alpha = positive_float(alpha, "alpha")
        if self.excited.size == 0:
            return 0.0
        return float(np.max(np.abs(1.0 - alpha * self.excited)))

    def residuals(self, alpha: float, num: int, stop_on: str = "hamiltonian") -> np.ndarray:
        r"""The predicted residuals of iterations $0, \dots,$ `num` - 1: $\max_k
        |\nabla_{u_k}E^N(U_i)|/h_k$ (`"hamiltonian"`) or $\max|\nabla E^N(U_i)|$
        (`"gradient"`)."""
        alpha = positive_float(alpha, "alpha")
        num = positive_int(num, "num")
        check_stop_on(stop_on)
        return np.concatenate(list(self._chunks(alpha, 0, num, stop_on)))

    def iterations(
        self, alpha: float, tol: float, stop_on: str = "hamiltonian", max_steps: int = 20_000
    ) -> int | None:
        r"""The predicted number of steps to the replay's stopping rule: the first $i$
        whose predicted residual is $\le$ `tol`; None when it is not reached within
        `max_steps`."""
        alpha = positive_float(alpha, "alpha")
        tol = positive_float(tol, "tol")
        check_stop_on(stop_on)
        return self._first(alpha, tol, stop_on, positive_int(max_steps, "max_steps"))

    def effective_step(
        self,
        alpha_max: float,
        tol: float,
        stop_on: str = "hamiltonian",
        max_steps: int = 20_000,
        num: int = 64,
    ) -> tuple[float, int | None]:
        r"""The step in $(0, \alpha_{\max})$ with the fewest predicted iterations from
        this start: `num` steps spread over $(0, \alpha_{\max})$ and the steps
        $2/(\mu_i + \mu_j)$ that balance two of the eight heaviest modes, or the
        ends of the excited ones, each evaluated exactly, in order of their
        asymptotic rate (each stopping once it needs more steps than the best so
        far). Returns (the step, its predicted iterations); when the fastest rate
        does not reach `tol` within `max_steps`, that step and None.
        $\alpha_{\max}$ bounds it because rounding excites every mode, and a mode
        with $|1 - \alpha\mu| > 1$ grows from rounding."""
        alpha_max = positive_float(alpha_max, "alpha_max")
        tol = positive_float(tol, "tol")
        candidates = list(np.linspace(0.0, alpha_max, num + 1)[1:] * (1.0 - 1e-9))
        mu = self.excited
        heavy = self.mu[np.argsort(-np.abs(self.coefficients))[:8]]
        ends = [mu.min(), mu.max()] if mu.size else []
        for group in (heavy, ends):
            for i in range(len(group)):
                for j in range(i, len(group)):
                    alpha = 2.0 / (group[i] + group[j])
                    if alpha < alpha_max:
                        candidates.append(float(alpha))
        # the fastest asymptotic rates first, so that the bound prunes the rest early;
        # when even the fastest rate does not reach tol within max_steps, none is tried
        candidates.sort(key=lambda a: (self.rate(a), a))
        best, best_count = float(candidates[0]), None
        limit = positive_int(max_steps, "max_steps")
        for alpha in candidates:
            count = self._first(alpha, tol, stop_on, limit if best_count is None else best_count)
            if count is None and best_count is None:
                break
            if count is not None and (best_count is None or count < best_count):
                best, best_count = float(alpha), count
        return best, best_count

    def _chunks(self, alpha, start, stop, stop_on, chunk=_CHUNK):
        factors = 1.0 - alpha * self.mu
        modes = self.modes.reshape(self.mu.size, -1)
        if stop_on == "hamiltonian":
            modes = modes / np.broadcast_to(self.steps, self.modes.shape[1:]).reshape(1, -1)
        with np.errstate(over="ignore", invalid="ignore"):
            for i0 in range(start, stop, chunk):
                i = np.arange(i0, min(i0 + chunk, stop))[:, None]
                P = self.coefficients * np.power(factors, i)
                yield np.max(np.abs(P @ modes), axis=1)

    def _first(self, alpha, tol, stop_on, max_steps) -> int | None:
        # chunks grow from 16: a short search does not pay for a long one
        size, i0 = 16, 0
        while i0 <= max_steps:
            stop = min(i0 + size, max_steps + 1)
            chunk = next(self._chunks(alpha, i0, stop, stop_on, chunk=stop - i0))
            hits = np.flatnonzero(chunk <= tol)
            if hits.size:
                return int(i0 + hits[0])
            i0, size = stop, min(2 * size, _CHUNK)
        return None

    def _summary(self) -> str:
        mu = ", ".join(format_number(m, ".6g") for m in self.excited[:4])
        more = "" if self.excited.size <= 4 else f", ... ({self.excited.size} in all)"
        return f"excites mu = {mu}{more}; {'exact' if self.exact else 'quadrature'}"


def start_spectrum(
    linearization: Linearization,
    U0: Any,
    *,
    max_steps: int = 100,
    tol: float = 1e-10,
) -> StartSpectrum:
    r"""The spectral measure of the error $U_0 - U^*$ at the minimiser of a
    [`Linearization`][stability.Linearization] (formulas in this module's docstring):
    Lanczos on $S = D^{-1/2}\nabla^2E^N D^{-1/2}$ from $D^{1/2}(U_0 - U^*)$, with full
    reorthogonalisation, until the Krylov space is invariant, or every excited Ritz
    pair has converged ($|\beta_m s_{mj}| \le$ `tol` $\cdot\theta_{\max}$), or after
    `max_steps` Hessian-vector products.

    **Arguments:** `linearization`: [`stability.linearize`][stability.linearize] at
    the minimiser with a diagonal metric (identity, Hamiltonian, Diagonal); `U0`: the
    start, shape (N, m); `max_steps`, `tol`: the Lanczos budget and tolerance.

    **Returns:** a [`StartSpectrum`][stability.StartSpectrum].
    """
    if not isinstance(linearization, Linearization):
        raise TypeError(
            f"`linearization` must be a stability.Linearization; got {linearization!r}."
        )
    if linearization.kind != "diagonal":
        raise ValueError(
            "`linearization`: the start's spectral measure needs a diagonal metric "
            f"(identity, hamiltonian, Diagonal); got {type(linearization.metric).__name__}."
        )
    max_steps = positive_int(max_steps, "max_steps")
    tol = positive_float(tol, "tol")
    sh = linearization.shooting
    U_star = np.asarray(linearization.U)
    U0 = np.asarray(type(sh).check_controls(sh, U0, "U0"), dtype=np.float64)
    scale = np.asarray(linearization.scale)  # d^-1/2
    shape = U_star.shape
    z0 = ((U0 - U_star) / scale).reshape(-1)
    norm = float(np.linalg.norm(z0))
    steps_h = np.asarray(sh.steps, dtype=np.float64)[:, None]
    name = type(linearization.metric).__name__.lower()
    if norm == 0.0:
        empty = np.zeros(0)
        return StartSpectrum(
            mu=empty, coefficients=empty, weights=empty, excited=empty, error_norm=0.0,
            exact=True, num_hvp=0, metric=name, modes=np.zeros((0, *shape)), steps=steps_h,
        )  # fmt: skip
    import jax.numpy as jnp

    count = [0]

    def matvec(v):
        count[0] += 1
        return np.asarray(_kvp(linearization, jnp.asarray(v.reshape(shape)))).reshape(-1)

    state = {"exact": False}

    def check(m, a, b, first_block):
        if first_block is not None:
            state["exact"] = True
            return True
        theta, s = _tridiag_eig(a, b[: m - 1])
        weight = np.abs(s[0])
        excited = weight > EXCITED_RTOL * weight.max()
        residual = np.abs(b[m - 1] * s[-1])
        return bool(np.all(residual[excited] <= tol * np.max(np.abs(theta))))

    V, a, b, m, first_block = _krylov(
        matvec, z0, max_steps, np.random.default_rng(0), check, check_every=1
    )
    m = first_block if first_block is not None else m
    exact = state["exact"] or m == z0.size
    theta, s = _tridiag_eig(a[:m], b[: m - 1])
    coefficients = norm * s[0]
    Y = s.T @ V[:m]  # Ritz vectors, rows
    modes = (theta[:, None] * Y / scale.reshape(1, -1)).reshape(m, *shape)  # mu D^1/2 y
    weights = coefficients**2 / np.sum(coefficients**2)
    excited = theta[np.abs(coefficients) > EXCITED_RTOL * np.max(np.abs(coefficients))]
    return StartSpectrum(
        mu=theta,
        coefficients=coefficients,
        weights=weights,
        excited=excited,
        error_norm=norm,
        exact=bool(exact),
        num_hvp=count[0],
        metric=name,
        modes=modes,
        steps=steps_h,
    )
