r"""The spectrum of the flow's Jacobian $J = -M^{-1}\nabla^2 E^N(U)$.

Small problems ($Nm \le$ `DENSE_SPECTRUM_MAX`) get every eigenvalue from a dense
symmetric (or general) solver. Large ones get the extremal eigenvalues at both
ends from Lanczos with full reorthogonalisation on the jitted Hessian-vector
product, plus the position and weight of the cluster where almost all
eigenvalues of $\nabla^2 E^N/h$ accumulate (the control weight) and a spectral
density from stochastic Lanczos quadrature (see `stability._lanczos`).

Names: the **stiff end** is the most negative eigenvalue of $J$ (the largest
curvature; it sets the forward-Euler bound $\alpha_{\max}$), the **slow end** the
rightmost (the smallest curvature; it decides stability and the rate).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from flow.validation import choice, positive_float, positive_int

from ._blas import single_threaded_blas
from ._lanczos import RawCluster, find_clusters, lanczos, outside
from ._linearize import Linearization, _problem_name
from ._spectrum_results import Cluster, SpectralDensity, Spectrum


DENSE_SPECTRUM_MAX = 2048
"""Largest $Nm$ for which `spectrum(..., method="auto")` uses the dense solver and
returns every eigenvalue. At $Nm = 2048$ the dense Hessian costs $Nm$ Hessian-vector
products and the symmetric eigensolver about a second or two on two cores (see
benchmarks/STABILITY.md); beyond it, Lanczos."""

_WHICH = ("both", "stiff", "slow")
_METHODS = ("auto", "dense", "lanczos", "arnoldi")
_EPS = float(np.finfo(np.float64).eps)


# --------------------------------------------------------------------------
# Maps from the symmetric problem's eigenvalues theta to those of J.


def _to_jacobian(lin: Linearization, theta: np.ndarray, zero_abs: float) -> np.ndarray:
    theta = np.asarray(theta, dtype=np.float64)
    if lin.kind != "newton":
        return -theta
    d = lin.damping
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = -theta / (theta + d)
    mu = np.where(theta + d > 0, mu, np.nan)
    return np.where(np.abs(theta) <= zero_abs, 0.0, mu)


def _derivative(lin: Linearization, theta: np.ndarray) -> np.ndarray:
    if lin.kind != "newton":
        return np.ones_like(theta)
    d = lin.damping
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(d / (theta + d) ** 2)


def _clusters_to_jacobian(
    lin: Linearization, raw: list[RawCluster], counts: list[int], exact: bool, zero_abs: float
) -> tuple[Cluster, ...]:
    out = []
    for c, n in zip(raw, counts, strict=True):
        pos = float(_to_jacobian(lin, np.array([c.position]), zero_abs)[0])
        hw = float(c.halfwidth * _derivative(lin, np.array([c.position]))[0])
        out.append(
            Cluster(position=pos, halfwidth=hw, weight=float(c.mass), count=int(n), exact=exact)
        )
    return tuple(sorted(out, key=lambda c: c.position))


def _order(mu: np.ndarray) -> np.ndarray:
    return np.lexsort((np.imag(mu), np.real(mu)))


# --------------------------------------------------------------------------
# The three paths.


def _dense_symmetric(lin, opts) -> dict:
    K = np.asarray(lin._dense_k(lin.size))
    # LAPACK syevd (values only), under single_threaded_blas (see stability._blas).
    theta = np.linalg.eigvalsh(0.5 * (K + K.T))
    normK = float(np.max(np.abs(theta)))
    zero_abs = opts["zero_tol"] * normK
    raw = find_clusters(
        theta,
        np.full(theta.shape, 1.0 / theta.shape[0]),
        width=opts["cluster_width"],
        floor=zero_abs,
        min_weight=opts["cluster_min_weight"],
    )
    counts = [int(np.sum(c.contains(theta))) for c in raw]
    mu = _to_jacobian(lin, theta, zero_abs)
    order = _order(mu)
    mu = mu[order]
    res = np.full(mu.shape, _EPS * normK) * _derivative(lin, theta)[order]
    density = SpectralDensity(
        nodes=np.sort(mu),
        weights=np.full(mu.shape, 1.0 / mu.shape[0]),
        probes=0,
        num_steps=0,
        method="exact",
    )
    return dict(
        eigenvalues=mu,
        residuals=res,
        converged=np.isfinite(mu),
        method="dense",
        num_hvp=lin.size,
        num_steps=0,
        complete=True,
        norm=float(np.nanmax(np.abs(mu))) if np.any(np.isfinite(mu)) else float("nan"),
        clusters=_clusters_to_jacobian(lin, raw, counts, True, zero_abs),
        density=density,
        stiff_status="complete",
        slow_status="complete",
        description=f"all {mu.shape[0]} eigenvalues by a dense symmetric solver (LAPACK syevd)",
    )


def _dense_general(lin, opts) -> dict:
    J = np.asarray(lin.dense(max_size=lin.size))
    mu = np.linalg.eigvals(J)
    mu = mu[_order(mu)]
    normJ = float(np.linalg.norm(J))  # Frobenius: a cheap upper bound of the 2-norm
    if np.all(np.abs(np.imag(mu)) <= 1e-12 * normJ):
        mu = np.real(mu)
    return dict(
        eigenvalues=mu,
        residuals=np.full(mu.shape, _EPS * normJ),
        converged=np.ones(mu.shape, dtype=bool),
        method="dense",
        num_hvp=lin.size,
        num_steps=0,
        complete=True,
        norm=float(np.max(np.abs(mu))),
        clusters=(),
        density=None,
        stiff_status="complete",
        slow_status="complete",
        description=f"all {mu.shape[0]} eigenvalues by a dense general solver (LAPACK geev)",
    )


def _host_matvec(lin: Linearization, fn):
    """fn on flat numpy vectors."""
    shape = lin.shooting.control_shape

    def mv(v: np.ndarray) -> np.ndarray:
        out = fn(lin, jnp.asarray(v.reshape(shape)))
        return np.array(out, dtype=np.float64).reshape(-1)

    return mv


def _lanczos_path(lin, opts) -> dict:
    from ._linearize import _kvp

    size = lin.size
    k = opts["k"]
    which = opts["which"]
    max_steps = opts["max_steps"]
    if max_steps is None:
        max_steps = min(size, max(2 * k + 30, min(1000, 2**28 // (8 * size))))
    run = lanczos(
        _host_matvec(lin, _kvp),
        size,
        k=k,
        low=which in ("both", "slow"),
        high=which in ("both", "stiff"),
        tol=opts["tol"],
        width=opts["cluster_width"],
        zero_tol=opts["zero_tol"],
        min_weight=opts["cluster_min_weight"],
        max_steps=max_steps,
        resolve_cluster=opts["resolve_cluster"],
        probes=opts["probes"],
        density_steps=opts["density_steps"],
        seed=opts["seed"],
    )
    zero_abs = opts["zero_tol"] * run.norm
    theta = run.theta[run.report]
    thresh = opts["tol"] * np.abs(theta) + 100 * _EPS * run.norm
    converged = run.residuals <= thresh
    mu = _to_jacobian(lin, theta, zero_abs)
    res = run.residuals * _derivative(lin, theta)
    order = _order(mu)
    # Cluster counts: exact when every Ritz value outside the clusters converged
    # (a single cluster holds the rest), else from the quadrature weight.
    out_mask = outside(run.theta, run.clusters)
    resolved = bool(np.all(run.est_converged[out_mask])) and len(run.clusters) == 1
    if run.complete:
        counts = [int(np.sum(c.contains(run.theta))) for c in run.clusters]
        exact = True
    elif resolved:
        counts = [size - int(np.sum(out_mask))]
        exact = True
    else:
        counts = [int(round(c.mass * size)) for c in run.clusters]
        exact = False
    dens_mu = _to_jacobian(lin, run.nodes, zero_abs)
    dorder = np.argsort(dens_mu)
    density = SpectralDensity(
        nodes=dens_mu[dorder],
        weights=run.weights[dorder],
        probes=run.probes,
        num_steps=run.steps,
        method="slq",
    )
    # Which end of K is which end of J: the maps are decreasing.
    stiff_status, slow_status = run.high_status, run.low_status
    clusters = _clusters_to_jacobian(lin, run.clusters, counts, exact, zero_abs)
    parts = [f"Lanczos (full reorthogonalisation), {run.steps} steps, {run.n_products} products"]
    mu_sorted, conv_sorted = mu[order], converged[order]
    kk = min(k, mu_sorted.shape[0])
    for name, status in (("stiff", stiff_status), ("slow", slow_status)):
        if status == "not requested":
            continue
        # J's stiff end is the left of the sorted eigenvalues, the slow end the right
        end = conv_sorted[:kk] if name == "stiff" else conv_sorted[-kk:]
        counts = f"{int(np.sum(end))}/{kk} of the {name}-end eigenvalues converged"
        if status == "cluster":
            c = clusters[-1] if name == "slow" else clusters[0]
            parts.append(
                f"{name} end: {counts}; every eigenvalue beyond the cluster at "
                f"{c.position:.6g} ({100 * c.weight:.1f}% of the spectrum) converged, the "
                f"eigenvalues inside it are not resolved individually"
            )
        else:
            parts.append(f"{name} end: {status}, {counts}")
    return dict(
        eigenvalues=mu[order],
        residuals=res[order],
        converged=converged[order],
        method="lanczos",
        num_hvp=run.n_products,
        num_steps=run.steps,
        complete=run.complete,
        norm=float(np.nanmax(np.abs(_to_jacobian(lin, run.theta, zero_abs)))),
        clusters=clusters,
        density=density,
        stiff_status=stiff_status,
        slow_status=slow_status,
        description="; ".join(parts),
    )


def _arnoldi_path(lin, opts) -> dict:
    import scipy.sparse.linalg as spla  # on first use: `import stability` does not load scipy

    from ._linearize import _jvp

    size = lin.size
    k = min(opts["k"], size - 2)
    count = [0]
    base = _host_matvec(lin, _jvp)

    def mv(v):
        count[0] += 1
        return base(np.real(v)) + (1j * base(np.imag(v)) if np.iscomplexobj(v) else 0)

    op = spla.LinearOperator((size, size), matvec=mv, dtype=np.float64)
    found, vecs, statuses = [], [], []
    ends = [("stiff", "SR"), ("slow", "LR")]
    maxiter = opts["max_steps"] or 10 * size
    for name, which in ends:
        if opts["which"] not in ("both", name):
            statuses.append("not requested")
            continue
        try:
            w, v = spla.eigs(op, k=k, which=which, tol=opts["tol"], maxiter=maxiter)
            statuses.append("converged")
        except spla.ArpackNoConvergence as e:
            w, v = e.eigenvalues, e.eigenvectors
            statuses.append("unresolved")
        found.append(w)
        vecs.append(v)
    mu = np.concatenate(found) if found else np.zeros(0)
    V = np.concatenate(vecs, axis=1) if vecs else np.zeros((size, 0))
    keep = np.unique(np.round(mu, 12), return_index=True)[1]
    mu, V = mu[keep], V[:, keep]
    res = np.array(
        [
            np.linalg.norm(mv(V[:, i]) - mu[i] * V[:, i]) / np.linalg.norm(V[:, i])
            for i in range(mu.shape[0])
        ]
    )
    norm = float(np.max(np.abs(mu))) if mu.shape[0] else 0.0
    converged = res <= opts["tol"] * np.abs(mu) + 100 * _EPS * norm
    order = _order(mu)
    mu = mu[order]
    if np.all(np.imag(mu) == 0):
        mu = np.real(mu)
    return dict(
        eigenvalues=mu,
        residuals=res[order],
        converged=converged[order],
        method="arnoldi",
        num_hvp=count[0],
        num_steps=0,
        complete=False,
        norm=norm,
        clusters=(),
        density=None,
        stiff_status=statuses[0],
        slow_status=statuses[1],
        description=(
            f"ARPACK (scipy eigs) on the non-symmetric J: {k} eigenvalues of smallest and "
            f"of largest real part, {count[0]} products"
        ),
    )


def spectrum(
    linearization: Linearization,
    *,
    k: int | None = None,
    which: str = "both",
    method: str = "auto",
    tol: float = 1e-10,
    zero_tol: float = 1e-8,
    cluster_width: float = 1e-2,
    cluster_min_weight: float = 0.1,
    max_steps: int | None = None,
    resolve_cluster: bool = False,
    probes: int = 1,
    density_steps: int | None = None,
    seed: int = 0,
) -> Spectrum:
    r"""Eigenvalues $\mu$ of the flow's Jacobian $J = -M^{-1}\nabla^2 E^N(U)$
    (DESIGN section 2; the stability of eq. (50), section 5.1).

    **Methods** (`method="auto"` picks by size):

    - `"dense"` ($Nm \le$ `DENSE_SPECTRUM_MAX` = 2048): every eigenvalue, from the
      dense symmetric $S = -L^{-1}\nabla^2 E^N L^{-T}$ (`numpy.linalg.eigvalsh`), or
      the dense $J$ (`numpy.linalg.eigvals`) for a general metric; with a
      single-threaded OpenBLAS (see `stability._blas`: on two cores a
      multi-threaded one competing with XLA's threads was 10-30 times slower).
    - `"lanczos"` (symmetric kinds, larger $Nm$): the `k` extremal eigenvalues at
      each requested end by Lanczos with full reorthogonalisation on the jitted
      Hessian-vector product (one product per step), from a seeded random start.
      Almost all eigenvalues of $\nabla^2 E^N/h$ sit in a tight cluster at the
      control weight, and those inside it cannot be resolved in a number of steps
      independent of $N$; so with `resolve_cluster=False` the run stops as soon as
      each end has either its `k` eigenvalues converged or every Ritz value beyond
      the cluster converged and the cluster estimate stable for two checks (the end
      then *is* the cluster's edge: `status="cluster"`). The clusters (position,
      weight, count) and a spectral density come from stochastic Lanczos
      quadrature on the same run (plus `probes - 1` extra random vectors of
      `density_steps` steps). `resolve_cluster=True` keeps going until the `k`
      eigenvalues at each end converge or `max_steps` is reached.
    - `"arnoldi"` (general metrics, larger $Nm$): ARPACK `eigs` on $J$, the `k`
      eigenvalues of smallest and of largest real part.

    **Arguments:**

    - `linearization`: a [`Linearization`][stability.Linearization].
    - `k`: eigenvalues per end for the iterative paths (`None`: 6); the dense path
      returns all of them.
    - `which`: `"both"`, `"stiff"` (most negative: sets $\alpha_{\max}$) or
      `"slow"` (rightmost: stability and rate).
    - `tol`: a Ritz pair is converged when its residual is at most
      `tol`$\cdot|\mu| + 100\epsilon\|J\|$.
    - `zero_tol`: eigenvalues with $|\mu| \le$ `zero_tol`$\cdot\|J\|$ count as zero
      (and the clusters' windows have at least that half-width).
    - `cluster_width`, `cluster_min_weight`: a cluster is a window of half-width
      `cluster_width`$\cdot|$centre$|$ holding at least `cluster_min_weight` of the
      spectrum (defaults 1 % and 10 %).
    - `max_steps`: Lanczos steps (default $\min(Nm, \max(2k+30, \min(1000,
      2^{28}/(8Nm))))$: a basis of at most 256 MiB); ARPACK iterations.
    - `resolve_cluster`, `probes`, `density_steps`, `seed`: see above.

    A host-side driver (numpy, scipy) around the jitted products; not itself
    jit-able. Dense linear algebra runs with a single-threaded OpenBLAS (see
    `stability._blas`).

    **Returns:** a [`Spectrum`][stability.Spectrum].
    """
    if not isinstance(linearization, Linearization):
        raise TypeError(
            "`linearization` must be a stability.Linearization (from stability.linearize); "
            f"got {type(linearization).__name__}."
        )
    lin = linearization
    choice(which, "which", _WHICH)
    choice(method, "method", _METHODS)
    opts = dict(
        k=6 if k is None else positive_int(k, "k"),
        which=which,
        tol=positive_float(tol, "tol"),
        zero_tol=positive_float(zero_tol, "zero_tol"),
        cluster_width=positive_float(cluster_width, "cluster_width"),
        cluster_min_weight=positive_float(cluster_min_weight, "cluster_min_weight"),
        max_steps=None if max_steps is None else positive_int(max_steps, "max_steps"),
        resolve_cluster=bool(resolve_cluster),
        probes=positive_int(probes, "probes"),
        density_steps=(
            None if density_steps is None else positive_int(density_steps, "density_steps")
        ),
        seed=positive_int(seed, "seed", minimum=0),
    )
    if opts["cluster_min_weight"] > 1:
        raise ValueError(f"`cluster_min_weight` must be in (0, 1]; got {cluster_min_weight}.")
    if method == "auto":
        if lin.size <= DENSE_SPECTRUM_MAX:
            method = "dense"
        else:
            method = "lanczos" if lin.symmetric else "arnoldi"
    if method == "lanczos" and not lin.symmetric:
        raise ValueError(
            "`method`='lanczos' needs a symmetric problem (an SPD metric with a known "
            "factor); this linearization is 'general': use 'arnoldi' or 'dense'."
        )
    if method == "arnoldi" and lin.size < 4:
        method = "dense"
    with single_threaded_blas():
        if method == "dense":
            parts = _dense_symmetric(lin, opts) if lin.symmetric else _dense_general(lin, opts)
        elif method == "lanczos":
            parts = _lanczos_path(lin, opts)
        else:
            parts = _arnoldi_path(lin, opts)
    return Spectrum(
        size=lin.size,
        symmetric=lin.symmetric,
        tol=opts["tol"],
        zero_tol=opts["zero_tol"],
        problem=_problem_name(lin.shooting),
        N=lin.N,
        metric=lin.metric.name,
        kind=lin.kind,
        **parts,
    )
