r"""Sharpness along a path: the largest eigenvalues $\mu$ of $M^{-1}\nabla^2 E^N(U_i)$ at
the iterates of a descent (or the saved points of a flow), next to forward Euler's
limit $2/\alpha_i$.

Gradient descent $U_{i+1} = U_i - \alpha_i M^{-1}\nabla E^N(U_i)$ (eq. (37)) is forward
Euler with step $\alpha_i$ on the flow (50), whose Jacobian there is
$J = -M^{-1}\nabla^2 E^N(U_i)$ (frozen metric). For a symmetric positive definite
diagonal $M = \mathrm{diag}(d)$ the eigenvalues of $M^{-1}\nabla^2 E^N$ are those of the
symmetric $K = M^{-1/2}\nabla^2 E^N M^{-1/2}$, real; a step is linearly stable at $U_i$
iff $\alpha_i\mu < 2$ for the largest of them, $\mu_{\max}$ (the *sharpness*; the
other half of $|1 + \alpha\mu| < 1$, $\alpha\mu > 0$, holds wherever $\mu > 0$).

Small problems take $K$ dense; large ones run Lanczos on $K$ matrix-free, one
Hessian-vector product per step, from the previous tracked iterate's top Ritz
vector: along a path the top eigenvector moves little from one iterate to the next,
so a warm start needs fewer products than a random one (measured in
benchmarks/README.md, "Sharpness along the path": 2-10 per iterate at $N = 10^5$).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

import flow
from flow import RESULTS, AbstractResult, AbstractShooting, format_number, metrics, validation
from flow.metrics import as_metric
from flow.validation import choice, positive_float, positive_int

from ._blas import single_threaded_blas
from ._lanczos import _krylov, _tridiag_eig
from ._linearize import _problem_name


DENSE_SHARPNESS_MAX = 192
"""Largest $Nm$ for which `sharpness(..., method="auto")` assembles $K$ and calls a
dense symmetric solver ($Nm$ Hessian-vector products per iterate, batched, and an
$O((Nm)^3)$ eigensolve) instead of Lanczos (about ten products). Measured per iterate
on a Van der Pol descent path (2 cores): dense 1.2 ms and Lanczos 2.6 ms at
$Nm = 128$, 4.5 ms and 2.8 ms at 256, 22 ms and 3.4 ms at 512."""

_METHODS = ("auto", "dense", "lanczos")
_EPS = float(np.finfo(np.float64).eps)
#: weight of a fixed random unit vector added to a warm start (see `sharpness`)
_MIX = 1e-3


class Sharpness(AbstractResult):
    r"""The sharpness along a path, from [`sharpness`][stability.sharpness].

    One entry per tracked iterate (every `every`-th and the last):

    - `iterations`: the iterate indices $i$ (for a flow solution, the index of the
      saved point); `taus`: their flow times $\tau_i$ (eq. (50); NaN for plain
      iterates).
    - `mu_max`: $\mu_{\max}(U_i)$, the largest eigenvalue of
      $M^{-1}\nabla^2 E^N(U_i)$ (= $-$ the stiff end of the flow's Jacobian $J$);
      `top`: the `k` largest, descending, shape (I, k).
    - `residuals`: $\|K y - \theta y\|$ of each unit Ritz vector (units of $\mu$; an
      eigenvalue lies within it of each reported value), shape (I, k); for the dense
      path LAPACK's backward-error bound $\epsilon\|K\|$. `converged`: all `k`
      residuals of the iterate are $\le$ `tol`$\,|\mu| + 100\epsilon\|K\|$.
    - `step`: the step $\alpha_i$ taken from $U_i$ (NaN for a flow solution, for plain
      iterates, and for a descent's last iterate, from which no step was taken);
      `stability_limit`: $2/\alpha_i$; `edge`: $\alpha_i\mu_{\max}/2$, above 1 where
      the step is beyond forward Euler's stability bound at $U_i$.
    - `num_hvp`: the Hessian-vector products spent on the iterate ($Nm$ for the dense
      path: one per column of the assembled Hessian).
    - `method` (`"dense"`, `"lanczos"`), `warm_start`, `k`, `tol`, `problem`, `N`,
      `metric`, `source` (`"descent"`, `"flow"`, `"iterates"`), `description` (how
      it was computed, in words; also the message's details).

    `result` is `max_steps` when some tracked iterate did not converge within
    `max_steps` Lanczos steps, else `completed`.
    """

    iterations: Int[np.ndarray, " I"]
    taus: Float[np.ndarray, " I"]
    mu_max: Float[np.ndarray, " I"]
    top: Float[np.ndarray, "I k"]
    residuals: Float[np.ndarray, "I k"]
    converged: Bool[np.ndarray, " I"]
    step: Float[np.ndarray, " I"]
    stability_limit: Float[np.ndarray, " I"]
    edge: Float[np.ndarray, " I"]
    num_hvp: Int[np.ndarray, " I"]
    method: str
    warm_start: bool
    k: int
    tol: float
    problem: str
    N: int
    metric: str
    source: str
    description: str

    @property
    def result(self) -> RESULTS:
        """`max_steps` when an iterate's top eigenvalues did not converge, else
        `completed`."""
        return RESULTS.completed if bool(np.all(self.converged)) else RESULTS.max_steps

    @property
    def max_edge(self) -> float | None:
        r"""$\max_i \alpha_i\mu_{\max}(U_i)/2$ over the iterates with a step (None when
        none has one)."""
        edge = self.edge[np.isfinite(self.edge)]
        return float(np.max(edge)) if edge.shape[0] else None

    @property
    def hvp_after_first(self) -> float | None:
        """The mean number of Hessian-vector products per tracked iterate after the
        first (the warm-started ones); None for a single iterate."""
        return float(np.mean(self.num_hvp[1:])) if self.num_hvp.shape[0] > 1 else None

    def _details(self) -> str:
        return self.description

    def _record(self, include_arrays: bool) -> dict[str, Any]:
        return {
            **self._fields(),
            "max_edge": self.max_edge,
            "hvp_after_first": self.hvp_after_first,
        }

    def _summary(self) -> str:
        mu, edge, per = self.mu_max, self.max_edge, self.hvp_after_first
        return (
            f"{self.problem}, N={self.N}, metric={self.metric}: {mu.shape[0]} iterates, mu_max "
            f"{format_number(float(mu[0]), '.6g')} -> {format_number(float(mu[-1]), '.6g')}"
            + ("" if edge is None else f", max alpha*mu/2 {edge:.4g}")
            + f"; {self.method}"
            + ("" if per is None else f", {per:.1f} products per iterate after the first")
        )


# --------------------------------------------------------------------------
# The path: iterates, their indices, flow times and steps.


class _Points(NamedTuple):
    shooting: AbstractShooting
    Us: np.ndarray  # (I, N, m)
    index: np.ndarray  # iterate (or saved point) indices
    taus: np.ndarray
    steps: np.ndarray  # alpha_i, NaN where there is none
    source: str


def _given(shooting: Any, what: str) -> AbstractShooting:
    if shooting is None:
        raise ValueError(
            f"`shooting`: {what} does not carry its shooting; pass it "
            f"(sharpness(path, shooting=sh, metric=...))."
        )
    return validation.shooting(shooting)


def _path_points(path: Any, shooting: Any) -> _Points:
    """The points of a descent trace, a flow solution or plain iterates."""
    if isinstance(path, flow.DescentTrace):
        if shooting is not None:
            raise ValueError("`shooting`: a DescentTrace carries its shooting; leave it out.")
        if path.iterates is None:
            raise ValueError(
                "`path`: this DescentTrace has no iterates; run flow.descend(..., "
                "save_iterates=True) to keep them."
            )
        n = int(path.num_steps)
        steps = np.full(n + 1, np.nan)
        steps[:n] = np.asarray(path.step)[:n]
        Us = np.asarray(path.iterates)[: n + 1]
        taus = np.asarray(path.taus)[: n + 1]
        return _Points(path.shooting, Us, np.arange(n + 1), taus, steps, "descent")
    if hasattr(path, "shape") and hasattr(path, "dtype") or isinstance(path, list | tuple):
        sh = _given(shooting, "an array of iterates")
        Us = np.asarray(path)
        if Us.ndim != 3:
            raise ValueError(
                f"`path`: plain iterates must have shape (I, N, m) = (I, {sh.N}, "
                f"{sh.control_dim}); got {Us.shape}."
            )
        shape = (Us.shape[0],) + sh.control_shape
        Us = np.asarray(validation.real_array(path, "path", shape, "iterates", finite=False))
        nan = np.full(Us.shape[0], np.nan)
        return _Points(sh, Us, np.arange(Us.shape[0]), nan, nan, "iterates")
    if isinstance(path, flow.FlowSolution):
        sh = _given(shooting, "a FlowSolution")
        if path.Us is None:
            raise ValueError(
                "`path`: this FlowSolution saved no controls; run flow.gradient_flow(..., "
                "saveat=diffrax.SaveAt(ts=...)) to save them at the times you want."
            )
        tau = np.asarray(path.tau)
        reached = np.flatnonzero(np.isfinite(tau))
        Us = np.asarray(path.Us)[reached]
        if Us.shape[1:] != sh.control_shape:
            raise ValueError(
                f"`shooting` has controls of shape {sh.control_shape}; the flow "
                f"solution's have {Us.shape[1:]}."
            )
        nan = np.full(reached.shape[0], np.nan)
        return _Points(sh, Us, reached, tau[reached], nan, "flow")
    raise TypeError(
        "`path` must be a flow.DescentTrace (descend(..., save_iterates=True)), a "
        "flow.FlowSolution, or an array of iterates of shape (I, N, m); got "
        f"{type(path).__name__}."
    )


# --------------------------------------------------------------------------
# The products and the two eigen-solvers.


@eqx.filter_jit
def _scaled_hvp(sh: AbstractShooting, U: Array, scale: Array, V: Array) -> Array:
    r"""$K V = S\,\nabla^2 E^N(U)\,(S V)$, $S = M^{-1/2}$: one compiled kernel for every
    iterate of a path (a new U of the same shape compiles nothing)."""
    return scale * sh.hessian_vector_product(U, scale * V)


class _NonFinite(Exception):
    """A product was not finite (raised out of the Lanczos loop)."""


def _lanczos_top(
    matvec: Any,
    v0: np.ndarray,
    *,
    k: int,
    tol: float,
    max_steps: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """The k largest Ritz pairs of K from a Lanczos run (full reorthogonalisation,
    `stability._lanczos._krylov`) started at v0, checked after every step until all k
    residuals |beta_m s_{m,j}| are <= tol |theta_j| + 100 eps ||K||. Returns (theta
    descending, residuals, converged, Ritz vectors (k, n), products)."""
    n, kk = v0.shape[0], min(k, v0.shape[0])

    def top(a, b):
        m = a.shape[0]
        theta, S = _tridiag_eig(a, b[: m - 1])
        idx = np.arange(m - 1, m - 1 - min(kk, m), -1)
        est = np.abs(b[m - 1] * S[m - 1, idx])
        norm = float(np.max(np.abs(theta)))
        conv = est <= tol * np.abs(theta[idx]) + 100 * _EPS * norm
        return theta, S, idx, est, conv

    def on_check(m, a, b, first_block):
        return m >= kk and bool(np.all(top(a, b)[4]))

    V, a, b, m, _ = _krylov(matvec, v0, max_steps, rng, on_check, check_every=1, min_steps=kk)
    theta, S, idx, est, conv = top(a, b)
    if m == n:  # the whole space: the tridiagonal's eigenvalues are K's
        est = np.full(idx.shape, _EPS * float(np.max(np.abs(theta))))
        conv = np.ones(idx.shape, dtype=bool)
    Y = S[:, idx].T @ V[:m]
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    return theta[idx], est, conv, Y, m


# --------------------------------------------------------------------------
# The verb.


def sharpness(
    path: Any,
    *,
    metric: metrics.AbstractMetric | str | None = None,
    shooting: AbstractShooting | None = None,
    every: int = 1,
    k: int = 1,
    tol: float = 1e-10,
    method: str = "auto",
    max_steps: int | None = None,
    warm_start: bool = True,
    seed: int = 0,
) -> Sharpness:
    r"""The sharpness along a path: the `k` largest eigenvalues $\mu$ of
    $M^{-1}\nabla^2 E^N(U_i)$ at every `every`-th iterate $U_i$ (and the last), next to
    forward Euler's limit $2/\alpha_i$.

    Descent with step $\alpha_i$ (eq. (37)) is forward Euler on the flow (50), whose
    frozen-metric Jacobian at $U_i$ is $J = -M^{-1}\nabla^2 E^N(U_i)$. For a constant
    diagonal metric $M = \mathrm{diag}(d)$ the eigenvalues of $M^{-1}\nabla^2 E^N$ are
    those of the symmetric $K = M^{-1/2}\nabla^2 E^N M^{-1/2}$ (similar to it), and
    a step is linearly stable at $U_i$ iff $\alpha_i\,\mu_{\max}(U_i) < 2$:
    `edge` $= \alpha_i\mu_{\max}/2$ above 1 means beyond forward Euler's bound there
    (at an equilibrium this is [`euler_bound`][stability.euler_bound]'s
    $\alpha_{\max} = 2/\mu_{\max}$ for a real spectrum).

    **Methods** (`method="auto"` picks by size):

    - `"dense"` ($Nm \le$ `DENSE_SHARPNESS_MAX` = 192): $K$ assembled from the dense
      Hessian ($Nm$ Hessian-vector products, batched) and `numpy.linalg.eigvalsh`.
    - `"lanczos"`: Lanczos with full reorthogonalisation on $K$, matrix-free (one
      Hessian-vector product per step, one compiled kernel for the whole path),
      stopped as soon as the `k` largest Ritz values have residuals $\le$
      `tol`$\,|\mu| + 100\epsilon\|K\|$, which puts an eigenvalue within `tol`
      (relative) of each. The first tracked iterate starts from a seeded random
      vector; each later one (with `warm_start=True`) from the previous one's top
      Ritz vectors (their sum for `k` > 1) plus $10^{-3}$ of a fixed random unit
      vector, so that no eigenvector is exactly missing from the start.

    **Arguments:**

    - `path`: a `flow.DescentTrace` run with `save_iterates=True` (its shooting,
      iterates, flow times $\tau_i = \sum_{j<i}\alpha_j$ and steps), a
      `flow.FlowSolution` with saved controls (`Us`, at its reached times `tau`; pass
      `shooting`), or an array of iterates of shape (I, N, m) (pass `shooting`).
      Iterates after the first non-finite one (a diverged run) are left out.
    - `metric`: the metric the run used, an object or a name (neither result records
      it): `"identity"`, `"hamiltonian"`, `"diagonal-hessian"` (prepared at the
      path's first point, as `descend` does) or a `flow.metrics.Diagonal`. Other
      metrics are refused: for them $M^{-1}\nabla^2 E^N$ is not similar to a
      symmetric matrix built from $M^{-1/2}$.
    - `shooting`: the shooting of a flow solution or of plain iterates.
    - `every`: track every `every`-th iterate (and always the last).
    - `k`: how many of the largest eigenvalues per iterate (default 1).
    - `tol`: the relative accuracy of the Lanczos eigenvalues (residual test above).
    - `method`: `"auto"`, `"dense"` or `"lanczos"`.
    - `max_steps`: Lanczos steps (= products) per iterate (default
      $\min(Nm, \max(50, \min(500, 2^{27}/(8Nm))))$: a basis of at most 128 MiB up
      to $Nm = 3\cdot 10^5$, and at least 50 steps).
    - `warm_start`: start each iterate's Lanczos run from the previous one's Ritz
      vectors (default); False starts every run from a fresh random vector.
    - `seed`: the seed of the random start vectors.

    A host-side driver (numpy) around one jitted Hessian-vector product; not itself
    jit-able.

    **Returns:** a [`Sharpness`][stability.Sharpness], with `num_hvp` per iterate.

    **Raises:** `ValueError` naming `path` for a trace without iterates or a flow
    solution without saved controls, `metric` when it is missing or not a constant
    diagonal metric, `shooting` when it is missing or does not fit; `TypeError` for
    a `path` of another kind.
    """
    every = positive_int(every, "every")
    k = positive_int(k, "k")
    tol = positive_float(tol, "tol")
    method = choice(method, "method", _METHODS)
    seed = positive_int(seed, "seed", minimum=0)
    pts = _path_points(path, shooting)
    sh, size = pts.shooting, pts.shooting.N * pts.shooting.control_dim
    if getattr(sh, "bounds", None) is not None or not sh.forward_differentiable:
        raise ValueError(
            f"`path`: its shooting has control bounds (projected descent lives on a free "
            f"set that changes along the path) or no forward-mode derivatives "
            f"({type(sh).__name__}); sharpness needs an unbounded, twice differentiable "
            f"E^N (stability.linearize restricts one point to its free set)."
        )
    if metric is None:
        raise ValueError(
            "`metric`: a descent trace or flow solution does not record its metric; pass "
            "the one the run used, e.g. metric='hamiltonian' (descend's default)."
        )
    metric = as_metric(metric)
    if k > size:
        raise ValueError(f"`k` must be at most N*m = {size}; got {k}.")
    ok = np.all(np.isfinite(pts.Us.reshape(pts.Us.shape[0], -1)), axis=1)
    n_finite = int(ok.shape[0] if ok.all() else np.argmin(ok))  # a diverged run's tail
    if n_finite == 0:
        raise ValueError("`path`: its first point is not finite (or it has none).")
    prepared = metric.prepare(sh, jax.device_put(pts.Us[0]))
    if not isinstance(prepared, metrics.AbstractDiagonalMetric):
        raise ValueError(
            f"`metric`: sharpness needs a constant diagonal metric M = diag(d) (identity, "
            f"hamiltonian, diagonal-hessian, Diagonal(d)), for which M^-1 Hess E^N is "
            f"similar to the symmetric M^-1/2 Hess E^N M^-1/2; got {metric.name!r}."
        )
    if max_steps is None:
        max_steps = min(size, max(50, min(500, 2**27 // (8 * size))))
    if positive_int(max_steps, "max_steps") < k:
        raise ValueError(f"`max_steps` must be at least k = {k}; got {max_steps}.")
    if method == "auto":
        method = "dense" if size <= DENSE_SHARPNESS_MAX else "lanczos"
    pos = np.arange(0, n_finite, every)
    if pos[-1] != n_finite - 1:
        pos = np.append(pos, n_finite - 1)
    scale = 1.0 / np.sqrt(np.asarray(prepared.diagonal(sh), dtype=np.float64))
    with single_threaded_blas():
        top, res, conv, nhvp, stopped = _track(
            sh, pts.Us[pos], scale, method, k, tol, max_steps, bool(warm_start), seed
        )
    if top.shape[0] == 0:
        raise ValueError("`path`: the Hessian of E^N is not finite at its first point.")
    pos = pos[: top.shape[0]]
    steps = pts.steps[pos]
    with np.errstate(divide="ignore"):
        limit = 2.0 / steps
    edge = steps * top[:, 0] / 2.0
    index = pts.index[pos]
    parts = [_how(method, k, tol, bool(warm_start), nhvp, size)]
    if pts.Us.shape[0] > n_finite:
        parts.append(f"{pts.Us.shape[0] - n_finite} non-finite point(s) at the end left out")
    if stopped is not None:
        parts.append(
            f"stopped at iterate {int(pts.index[stopped])}: a Hessian-vector product is "
            f"not finite there"
        )
    if not np.all(conv):
        parts.append(
            f"{int(np.sum(~conv))} iterate(s) not converged within max_steps = {max_steps} "
            f"products (first: iterate {int(index[~conv][0])})"
        )
    if np.any(edge > 1.0):
        parts.append(
            f"alpha mu_max > 2 (beyond forward Euler's bound) at {int(np.sum(edge > 1.0))} "
            f"iterate(s), first at iterate {int(index[edge > 1.0][0])}"
        )
    return Sharpness(
        iterations=np.asarray(index, dtype=np.int64),
        taus=np.asarray(pts.taus[pos], dtype=np.float64),
        mu_max=top[:, 0].copy(),
        top=top,
        residuals=res,
        converged=conv,
        step=np.asarray(steps, dtype=np.float64),
        stability_limit=np.asarray(limit, dtype=np.float64),
        edge=np.asarray(edge, dtype=np.float64),
        num_hvp=nhvp,
        method=method,
        warm_start=bool(warm_start),
        k=k,
        tol=tol,
        problem=_problem_name(sh),
        N=sh.N,
        metric=metric.name,
        source=pts.source,
        description="; ".join(parts),
    )


def _track(
    sh: AbstractShooting,
    Us: np.ndarray,
    scale: np.ndarray,
    method: str,
    k: int,
    tol: float,
    max_steps: int,
    warm_start: bool,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int | None]:
    """The k largest eigenvalues of K at each of `Us`: (top, residuals, converged,
    products, position of the first point where a product was not finite or None);
    the arrays stop before that point."""
    size, shape = scale.size, sh.control_shape
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal(size)
    mix /= np.linalg.norm(mix)
    scale_dev = jax.device_put(scale)
    out: list[tuple[np.ndarray, np.ndarray, bool, int]] = []
    previous = None
    for j in range(Us.shape[0]):
        U = jax.device_put(Us[j])
        try:
            if method == "dense":
                theta, est = _dense_top(sh, U, scale, k)
                out.append((theta, est, True, size))
                continue

            def mv(v: np.ndarray, U: Array = U) -> np.ndarray:
                w = np.array(_scaled_hvp(sh, U, scale_dev, jnp.asarray(v.reshape(shape))))
                if not np.all(np.isfinite(w)):
                    raise _NonFinite
                return w.reshape(-1)

            if warm_start and previous is not None:
                v0 = previous.sum(axis=0)
                v0 = v0 / np.linalg.norm(v0) + _MIX * mix
            else:
                v0 = rng.standard_normal(size)
            theta, est, ok, previous, m = _lanczos_top(
                mv, v0, k=k, tol=tol, max_steps=max_steps, rng=rng
            )
            out.append((theta, est, bool(np.all(ok)), m))
        except _NonFinite:
            break
    stopped = len(out) if len(out) < Us.shape[0] else None
    top = np.array([o[0] for o in out], dtype=np.float64).reshape(len(out), k)
    res = np.array([o[1] for o in out], dtype=np.float64).reshape(len(out), k)
    conv = np.array([o[2] for o in out], dtype=bool)
    nhvp = np.array([o[3] for o in out], dtype=np.int64)
    return top, res, conv, nhvp, stopped


def _dense_top(
    sh: AbstractShooting, U: Array, scale: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The k largest eigenvalues of the assembled K = S H S (descending) and LAPACK's
    error bound eps ||K||."""
    H = np.asarray(sh.hessian(U, max_size=scale.size))
    if not np.all(np.isfinite(H)):
        raise _NonFinite
    s = scale.reshape(-1)
    K = s[:, None] * H * s[None, :]
    theta = np.linalg.eigvalsh(0.5 * (K + K.T))
    return theta[::-1][:k], np.full(k, _EPS * float(np.max(np.abs(theta))))


def _how(method: str, k: int, tol: float, warm: bool, nhvp: np.ndarray, size: int) -> str:
    what = "the largest eigenvalue" if k == 1 else f"the {k} largest eigenvalues"
    if method == "dense":
        return f"{what} by a dense symmetric solver (LAPACK syevd), {size} products per iterate"
    start = "warm-started from the previous iterate's Ritz vector" if warm else "random starts"
    after = "" if nhvp.shape[0] < 2 else f", {np.mean(nhvp[1:]):.1f} per iterate after the first"
    return (
        f"{what} by Lanczos (full reorthogonalisation, {start}, tol {tol:.0e}): "
        f"{int(nhvp[0])} products at the first iterate{after}"
    )
