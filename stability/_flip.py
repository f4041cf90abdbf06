r"""The flip (period-doubling) bifurcation of gradient descent at forward Euler's bound.

Descent with a constant step, $F_\alpha(U) = U - \alpha M^{-1}\nabla E^N(U)$ (37), has
the equilibrium $U^*$ as a fixed point with Jacobian $A = I - \alpha M^{-1}H$,
$H = \nabla^2 E^N(U^*)$. With $\mu_{\max}$ the largest eigenvalue of $M^{-1}H$, the
multiplier $1 - \alpha\mu_{\max}$ crosses $-1$ at $\alpha^* = 2/\mu_{\max}$
(`stability.euler_bound`'s `alpha_max` at a minimiser): a flip. Which flip it is
follows from the normal form on the centre manifold (Kuznetsov, *Elements of Applied
Bifurcation Theory*, 3rd ed., eq. (5.74)): with $q$ the critical eigenvector ($Aq = -q$),
$p$ the adjoint one ($A^\top p = -p$, $\langle p, q\rangle = 1$), $B$ and $C$ the second
and third derivatives of $F$,

$$c = \tfrac16\langle p, C(q,q,q)\rangle - \tfrac12\langle p, B(q,(A - I)^{-1}B(q,q))\rangle.$$

For $F_\alpha$ and a symmetric metric, normalising $q^\top M q = 1$ (then $p = Mq$),
$B(u, v) = -\alpha M^{-1}D^3E^N[u, v]$, $C = -\alpha M^{-1}D^4E^N$ and
$(A - I)^{-1} = -H^{-1}M/\alpha$, so

$$c = \alpha^*\Bigl(\tfrac12\,t^\top H^{-1}t - \tfrac16\,D^4E^N[q,q,q,q]\Bigr),
\qquad t = D^3E^N[q, q].$$

On the centre manifold the map is $\eta \mapsto -(1 + \beta)\eta + c\eta^3 + \dots$ with
$\beta = \alpha\mu_{\max} - 2 = 2(\alpha/\alpha^* - 1)$. For $c > 0$ the flip is
*supercritical*: past $\alpha^*$ a stable 2-cycle $U^* \pm \eta q + O(\eta^2)$,
$\eta = \sqrt{\beta/c}$, is born, and descent settles on it. For $c < 0$ it is
*subcritical*: an unstable 2-cycle exists below $\alpha^*$ and nothing small is left
above it; descent leaves the neighbourhood (it diverges, or is captured by a distant
attractor). (One-dimensional check: $f(x) = -x + ax^2 + bx^3$ gives $c = a^2 + b$.)

The 2-cycle itself, at a given $\alpha > \alpha^*$, is the fixed point of the two-step
map: $G(V) = F_\alpha(F_\alpha(V)) - V = 0$, solved by Newton, continued in the
step from just past $\alpha^*$ (where $U^* + \eta q$ is a close start) out to
$\alpha$ (Newton-Krylov with GMRES on Hessian-vector products for large $N$,
a dense Jacobian for small $N$); its stability is the largest modulus of the
eigenvalues of $DF_\alpha(V_2)DF_\alpha(V_1)$, $DF_\alpha(V) = I - \alpha M^{-1}
\nabla^2E^N(V)$.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float

import flow
from flow import AbstractRecord, format_number
from flow.metrics import AbstractDiagonalMetric, as_metric
from flow.validation import positive_float, positive_int

from ._spectrum import DENSE_SPECTRUM_MAX
from ._two_cycle import two_cycle


#: Relative size of |c| below which the flip is reported `degenerate` (relative to
#: its terms, and to 1/max(1, |U*|_M^2)).
DEGENERATE_RTOL = 1e-8

#: `flip` and `orbit_diagram` refuse a `U_star` whose max|dH/du| is above this.
EQUILIBRIUM_TOL = 1e-6

KINDS = ("supercritical", "subcritical", "degenerate")


class Flip(AbstractRecord):
    r"""The flip of gradient descent at forward Euler's bound, from
    [`flip`][stability.flip].

    **Fields:**

    - `alpha`: $\alpha^* = 2/\mu_{\max}$, where the multiplier $1 - \alpha\mu_{\max}$
      of the fixed point $U^*$ crosses $-1$ (equal to
      [`euler_bound`][stability.euler_bound]'s `alpha_max` at a minimiser);
      `mu_max`: the largest eigenvalue of $M^{-1}\nabla^2E^N(U^*)$.
    - `kind`: `"supercritical"` ($c > 0$: a stable 2-cycle is born past $\alpha^*$),
      `"subcritical"` ($c < 0$: descent leaves the neighbourhood past $\alpha^*$) or
      `"degenerate"` ($|c| \le 10^{-8}$ of its terms' size: higher order decides).
    - `coefficient`: $c$, the normal-form coefficient (for $q^\top Mq = 1$);
      `third`: $\tfrac12 t^\top H^{-1} t$ and `fourth`: $\tfrac16 D^4E^N[q^4]$, its two
      parts ($c = \alpha^*(\text{third} - \text{fourth})$).
    - `eigenvector`: $q$, shape (N, m), $q^\top Mq = 1$, largest component positive.
    - `cycle_alpha`: the step at which the 2-cycle was computed (None when it was
      not); `cycle`: its two points $V_1, V_2 = F(V_1)$, shape (2, N, m), $V_1$ the
      one on the side of $+q$; `cycle_multiplier`: the largest modulus of the
      eigenvalues of $DF(V_2)DF(V_1)$; `cycle_stable`: whether it is below 1;
      `cycle_residual`: $\|F(F(V_1)) - V_1\|_\infty$; `amplitude`:
      $\|V_1 - V_2\|_\infty/2$ (the half-width [`descend`][flow.descend] reports);
      `predicted_amplitude`: $\eta\|q\|_\infty$, $\eta = \sqrt{\beta/c}$,
      $\beta = 2(\alpha/\alpha^* - 1)$ (leading order). The normal form is local:
      how far past $\alpha^*$ the cycle survives (and stays stable) depends on the
      problem, so `cycle_stable` is what holds at `cycle_alpha`.
    - `metric`: the metric's name; `num_hvp`: Hessian-vector products of the
      matrix-free path (a product with the two-step map's Jacobian counts 2; 0 on the
      dense path, which forms the Hessian and the Jacobians instead); `note`: why
      the default 2-cycle is missing, when it is (the continuation in the step did
      not reach it), else empty.
    """

    alpha: float
    mu_max: float
    kind: str
    coefficient: float
    third: float
    fourth: float
    eigenvector: Float[np.ndarray, "N m"]
    cycle_alpha: float | None
    cycle: Float[np.ndarray, "2 N m"] | None
    cycle_multiplier: float | None
    cycle_stable: bool | None
    cycle_residual: float | None
    amplitude: float | None
    predicted_amplitude: float | None
    metric: str
    num_hvp: int
    note: str

    _arrays = ("eigenvector", "cycle")

    def predicted_cycle_amplitude(self, alpha: float) -> float | None:
        r"""$\eta\|q\|_\infty$ with $\eta = \sqrt{\beta/c}$, $\beta = 2(\alpha/\alpha^* - 1)$:
        the leading-order half-width of the 2-cycle at step `alpha` (supercritical,
        $\alpha > \alpha^*$; None otherwise)."""
        alpha = positive_float(alpha, "alpha")
        beta = 2.0 * (alpha / self.alpha - 1.0)
        if self.kind != "supercritical" or beta <= 0:
            return None
        return math.sqrt(beta / self.coefficient) * float(np.max(np.abs(self.eigenvector)))

    def _details(self) -> str:
        where = f"at alpha = {self.alpha:.6g} (= 2/mu_max, mu_max = {self.mu_max:.6g})"
        if self.kind == "supercritical":
            text = (
                f"Supercritical flip {where}: just past it descent settles on a stable "
                f"2-cycle of half-width about sqrt(2 (alpha/alpha* - 1)/c) max|q| (c = "
                f"{self.coefficient:.4g}; the normal form is local: how far past alpha* the "
                f"cycle survives depends on the problem)"
            )
        elif self.kind == "subcritical":
            text = (
                f"Subcritical flip {where} (c = {self.coefficient:.4g}): past it no small "
                f"cycle exists, and descent leaves the equilibrium (it diverges or is "
                f"captured by a distant attractor)"
            )
        else:
            text = f"Degenerate flip {where}: c is zero to rounding; higher order decides"
        if self.note:
            text += f". {self.note[0].upper()}{self.note[1:]}"
        if self.cycle is not None:
            text += (
                f". At alpha = {self.cycle_alpha:.6g} the 2-cycle has half-width "
                f"{self.amplitude:.4g} and multiplier {self.cycle_multiplier:.4g} "
                f"({'stable' if self.cycle_stable else 'unstable'})"
            )
        return text

    def _summary(self) -> str:
        return (
            f"{self.kind} at alpha={format_number(self.alpha, '.6g')}, "
            f"c={format_number(self.coefficient, '.4g')}"
            + ("" if self.amplitude is None else f", 2-cycle half-width {self.amplitude:.4g}")
        )


def flip(
    shooting: flow.AbstractShooting,
    U_star: Any,
    *,
    metric: Any = "hamiltonian",
    alpha: float | None = None,
    cycle: bool = True,
    tol: float = 1e-12,
    max_steps: int = 50,
    dense: bool | None = None,
) -> Flip:
    r"""Locate and classify the flip of descent at forward Euler's bound, and compute
    the 2-cycle born in a supercritical flip.

    The formulas are in this module's docstring: $\alpha^* = 2/\mu_{\max}$ with
    $\mu_{\max}$ the largest eigenvalue of $M^{-1}\nabla^2E^N(U^*)$, and the
    normal-form coefficient $c = \alpha^*(\tfrac12 t^\top H^{-1}t -
    \tfrac16 D^4E^N[q^4])$, $t = D^3E^N[q, q]$, from third and fourth derivatives of
    $E^N$ along $q$ (forward-mode derivatives of the Hessian-vector product).

    **Arguments:**

    - `shooting`: the discretisation ([`flow.shoot`][flow.shoot]), unbounded.
    - `U_star`: a minimiser of $E^N$ (an array (N, m) or a
      [`stability.Equilibrium`][stability.Equilibrium]); $H$ must be positive definite.
    - `metric`: a diagonal metric (`"identity"`, `"hamiltonian"`, a
      `flow.metrics.Diagonal`), object or name.
    - `alpha`: the step at which to compute the 2-cycle: default $1.02\,\alpha^*$
      for a supercritical flip, none for the others; a value $\le \alpha^*$ is
      refused for a supercritical flip (there is no small cycle there).
    - `cycle`: compute the 2-cycle (default); `False` gives the location and the kind
      only (no Newton on the two-step map).
    - `tol`: Newton on the two-step map stops at $\|F(F(V)) - V\|_\infty \le$
      `tol` $\cdot\max(1, \|V\|_\infty)$; `max_steps`: its iteration limit.
    - `dense`: force the dense (`True`) or matrix-free (`False`) path; default dense
      when $Nm \le$ `DENSE_SPECTRUM_MAX`.

    **Returns:** a [`Flip`][stability.Flip].
    """
    import scipy.sparse.linalg as spla  # on first use: `import stability` does not load scipy

    U_star, metric, d = checked(shooting, U_star, metric, "the flip")
    tol = positive_float(tol, "tol")
    max_steps = positive_int(max_steps, "max_steps")
    size = U_star.size
    # ARPACK needs k < n - 1: the smallest problems are dense whatever is asked
    dense = size <= DENSE_SPECTRUM_MAX if dense is None else bool(dense) or size <= 3
    shape = U_star.shape
    count = [0]
    mu_max, q, H = critical(shooting, U_star, d, dense, count)
    alpha_star = 2.0 / mu_max
    qU = jnp.asarray(q.reshape(shape))

    t, d4 = _along(shooting, U_star, qU)
    t_flat = np.asarray(t).reshape(-1)
    d4 = float(d4)
    if dense:
        w_sol = np.linalg.solve(H, t_flat)
    else:
        H_op = spla.LinearOperator(
            (size, size), matvec=_host_hvp(shooting, U_star, count), dtype=np.float64
        )
        w_sol, info = spla.cg(H_op, t_flat, rtol=1e-12, maxiter=10 * size)
        if info != 0:
            raise RuntimeError(f"flip: CG on H w = t did not converge (info {info}).")
    third = 0.5 * float(t_flat @ w_sol)
    fourth = d4 / 6.0
    c = alpha_star * (third - fourth)
    # relative to its terms, and to the size of the problem: with q^T M q = 1 the
    # predicted half-width sqrt(beta/c) of a cycle must not dwarf |U*|_M
    size_m = float(np.asarray(U_star).reshape(-1) ** 2 @ d)
    scale = max(alpha_star * (abs(third) + abs(fourth)), 1.0 / max(1.0, size_m))
    if not abs(c) > DEGENERATE_RTOL * scale:
        kind = "degenerate"
    else:
        kind = "supercritical" if c > 0 else "subcritical"

    if alpha is not None and not cycle:
        raise ValueError("`alpha` is the step of the 2-cycle; it needs cycle=True.")
    want_cycle = cycle
    cycle = multiplier = stable = residual = amplitude = predicted = None
    cycle_alpha, note = None, ""
    if want_cycle and (alpha is not None or kind == "supercritical"):
        cycle_alpha = 1.02 * alpha_star if alpha is None else positive_float(alpha, "alpha")
        if kind != "supercritical":
            why = {
                "subcritical": "no small 2-cycle is born past",
                "degenerate": "the normal form does not decide whether a 2-cycle is born at",
            }[kind]
            raise ValueError(
                f"`alpha`: the flip is {kind}; {why} alpha* = {alpha_star:.6g}, so no "
                f"cycle is computed (pass alpha=None)."
            )
        if not cycle_alpha > alpha_star:
            raise ValueError(
                f"`alpha` must be above the flip's alpha* = {alpha_star:.6g} for the "
                f"2-cycle of a supercritical flip; got {cycle_alpha}."
            )
        beta = 2.0 * (cycle_alpha / alpha_star - 1.0)
        eta = math.sqrt(beta / c)
        predicted = eta * float(np.max(np.abs(q)))
        try:
            cycle, residual, multiplier = two_cycle(
                shooting, metric, U_star, qU, c, alpha_star, cycle_alpha, tol, max_steps,
                dense, count,
            )  # fmt: skip
        except RuntimeError as err:
            if alpha is not None:
                raise RuntimeError(f"flip: no 2-cycle found: {err}.") from None
            note = f"no 2-cycle found at the default alpha = 1.02 alpha*: {err}"
        else:
            stable = None if multiplier is None else multiplier < 1.0
            amplitude = float(np.max(np.abs(cycle[0] - cycle[1]))) / 2.0
    return Flip(
        alpha=alpha_star,
        mu_max=mu_max,
        kind=kind,
        coefficient=c,
        third=third,
        fourth=fourth,
        eigenvector=q.reshape(shape),
        cycle_alpha=cycle_alpha,
        cycle=cycle,
        cycle_multiplier=multiplier,
        cycle_stable=stable,
        cycle_residual=residual,
        amplitude=amplitude,
        predicted_amplitude=predicted,
        metric=type(metric).__name__.lower(),
        num_hvp=count[0],
        note=note,
    )


def checked(
    shooting: Any, U_star: Any, metric: Any, what: str
) -> tuple[Any, AbstractDiagonalMetric, np.ndarray]:
    """The arguments of `flip` and `orbit_diagram`, checked: (U*, the metric, its
    diagonal d, flattened)."""
    if not isinstance(shooting, flow.AbstractShooting):
        raise TypeError(f"`shooting` must be a flow shooting (flow.shoot); got {shooting!r}.")
    if getattr(shooting, "bounds", None) is not None:
        raise ValueError(
            f"`shooting` has control bounds: {what} of projected descent is not "
            f"implemented (the unbounded map's normal form does not apply at active bounds)."
        )
    U_star = getattr(U_star, "U", U_star)
    U_star = type(shooting).check_controls(shooting, U_star, "U_star")
    metric = as_metric(metric)
    if not isinstance(metric, AbstractDiagonalMetric):
        raise ValueError(
            f"`metric` must be a diagonal metric (identity, hamiltonian, Diagonal); got "
            f"{type(metric).__name__}: {what} here uses M^-1 H similar to a symmetric "
            f"matrix."
        )
    d = np.asarray(metric.diagonal(shooting), np.float64).reshape(-1)
    g = np.asarray(shooting.gradient(U_star)) / np.asarray(shooting.steps)[:, None]
    residual = float(np.max(np.abs(g)))
    if not residual <= EQUILIBRIUM_TOL:
        raise ValueError(
            f"`U_star` is not an equilibrium: max|dH/du| = {residual:.3e} there (> "
            f"{EQUILIBRIUM_TOL:g}); {what} is a bifurcation of the fixed point of descent "
            f"(stability.equilibrium finds it)."
        )
    return U_star, metric, d


def critical(
    shooting: flow.AbstractShooting, U_star: Any, d: np.ndarray, dense: bool, count: list
) -> tuple[float, np.ndarray, np.ndarray | None]:
    """The top eigenpair of M^-1 H at a minimiser (M = diag(d)), through the symmetric
    S = D^-1/2 H D^-1/2: (mu_max, q with q^T M q = 1 and largest component positive,
    the dense H or None). Raises naming `U_star` when H is not positive definite."""
    import scipy.sparse.linalg as spla  # on first use: `import stability` does not load scipy

    size = U_star.size
    s = 1.0 / np.sqrt(d)
    H = None
    if dense:
        H = np.asarray(shooting.hessian(U_star, max_size=size))
        H = 0.5 * (H + H.T)
        w, V = np.linalg.eigh(s[:, None] * H * s[None, :])
        mu_max, v = float(w[-1]), V[:, -1]
        mu_min = float(w[0])
    else:
        hvp = _host_hvp(shooting, U_star, count)
        op = spla.LinearOperator((size, size), matvec=lambda x: s * hvp(s * x), dtype=np.float64)
        try:
            w, V = spla.eigsh(op, k=1, which="LA", tol=1e-13)
            # only the sign matters: a loose tolerance (tens of products, not thousands)
            low = spla.eigsh(op, k=1, which="SA", tol=1e-2, return_eigenvectors=False)
        except spla.ArpackNoConvergence as err:
            raise RuntimeError(
                f"ARPACK did not converge on an end of the spectrum of M^-1 H at U_star "
                f"({err}); pass dense=True where N m allows it."
            ) from None
        mu_max, v = float(w[0]), V[:, 0]
        mu_min = float(low[0])
    if not mu_min > 0:
        raise ValueError(
            f"`U_star`: the Hessian of E^N there is not positive definite (smallest "
            f"eigenvalue of M^-1 H {mu_min:.3e}): the flip is a bifurcation of a stable "
            f"fixed point of descent, which needs a minimiser."
        )
    q = s * v
    q = q / math.sqrt(float(q @ (d * q)))
    if q[np.argmax(np.abs(q))] < 0:
        q = -q
    return mu_max, q, H


def _host_hvp(shooting: flow.AbstractShooting, U: Any, count: list):
    """v -> Hess E^N(U) v on flat numpy vectors (the shooting's compiled product),
    counted in `count[0]`."""
    shape = U.shape

    def hvp(v: np.ndarray) -> np.ndarray:
        count[0] += 1
        V = jnp.asarray(v.reshape(shape))
        return np.array(shooting.hessian_vector_product(U, V)).reshape(-1)

    return hvp


@eqx.filter_jit
def _along(sh, U, q):
    """t = D^3 E^N(U)[q, q] and D^4 E^N(U)[q, q, q, q], by forward mode along q."""

    def t_of(X):
        return jax.jvp(lambda Y: jax.grad(type(sh).objective, argnums=1)(sh, Y), (X,), (q,))[1]

    t = jax.jvp(t_of, (U,), (q,))[1]
    fourth = jax.jvp(lambda X: jax.jvp(t_of, (X,), (q,))[1], (U,), (q,))[1]
    return t, jnp.vdot(fourth, q)
