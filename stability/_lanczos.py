r"""Lanczos with full reorthogonalisation, cluster detection and stochastic Lanczos
quadrature, for the symmetric operator $K$ whose eigenvalues give those of $J$.

Internal (numpy + one jitted product per step); [`spectrum`][stability.spectrum]
is the public entry point.

Why not plain ARPACK: the eigenvalues of $\nabla^2 E^N / h$ accumulate at the
control weight (a mesh-independent value) with almost all of the spectrum inside a
1 % window, and the eigenvalues *inside* that cluster cannot be told apart by any
Krylov method in a number of steps independent of $N$ (ARPACK `which="SA"` was
measured not to converge at $N = 10^4$ within 30 000 products). What can be
resolved cheaply are the eigenvalues *outside* the cluster (the isolated
eigenvalues, converged in about as many steps as there are of them) and the
cluster itself: its position and weight come from the Gauss quadrature of the
start vector's spectral measure (stochastic Lanczos quadrature, Golub & Meurant;
Ubaru, Chen & Saad 2017), which for a random start in dimension $n$ estimates the
fraction of eigenvalues in a window with standard deviation about
$\sqrt{2 p(1-p)/n}$. So the run stops once the wanted eigenvalues have converged,
*or* once everything outside the cluster has converged and the cluster estimate
is stable (`resolve_cluster=False`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class RawCluster:
    """A window [position - halfwidth, position + halfwidth] holding `mass` of the
    measure (in the units of K)."""

    position: float
    halfwidth: float
    mass: float

    def contains(self, x: np.ndarray) -> np.ndarray:
        return np.abs(x - self.position) <= self.halfwidth


def find_clusters(
    nodes: np.ndarray,
    weights: np.ndarray,
    *,
    width: float,
    floor: float,
    min_weight: float,
    max_clusters: int = 4,
) -> list[RawCluster]:
    r"""Greedy densest windows of a discrete measure.

    A window centred at $c$ has half-width $w|c| + \text{floor}$. Repeatedly: the
    node whose window holds the most (not yet assigned) mass is taken; the centre
    is refined to the weighted median of the nodes in it; its members are removed.
    Stops when the best window holds less than `min_weight`.
    """
    order = np.argsort(nodes)
    x = np.asarray(nodes, dtype=np.float64)[order]
    w = np.asarray(weights, dtype=np.float64)[order]
    active = np.ones(x.shape, dtype=bool)
    out: list[RawCluster] = []
    for _ in range(max_clusters):
        if not active.any():
            break
        wa = np.where(active, w, 0.0)
        cum = np.concatenate([[0.0], np.cumsum(wa)])
        hw = width * np.abs(x) + floor
        lo = np.searchsorted(x, x - hw, side="left")
        hi = np.searchsorted(x, x + hw, side="right")
        mass = np.where(active, cum[hi] - cum[lo], -1.0)
        i = int(np.argmax(mass))
        if mass[i] < min_weight:
            break
        inside = active & (np.abs(x - x[i]) <= hw[i])
        xi, wi = x[inside], w[inside]
        cw = np.cumsum(wi)
        c = float(xi[np.searchsorted(cw, 0.5 * cw[-1])])
        hwc = width * abs(c) + floor
        members = active & (np.abs(x - c) <= hwc)
        m = float(w[members].sum())
        if m < min_weight:
            break
        out.append(RawCluster(position=c, halfwidth=hwc, mass=m))
        active &= ~members
    return sorted(out, key=lambda r: r.position)


def outside(x: np.ndarray, clusters: list[RawCluster]) -> np.ndarray:
    """Mask of the points of `x` in no cluster window."""
    mask = np.ones(np.shape(x), dtype=bool)
    for c in clusters:
        mask &= ~c.contains(x)
    return mask


@dataclasses.dataclass
class LanczosRun:
    """What [`lanczos`][] found (units of K, ascending)."""

    theta: np.ndarray  # Ritz values
    est_residuals: np.ndarray  # |beta_m s_{m,i}|
    est_converged: np.ndarray  # est_residuals <= tol |theta| + 100 eps ||K||
    report: np.ndarray  # indices into theta that are reported
    residuals: np.ndarray  # true ||K y - theta y|| for the reported ones
    nodes: np.ndarray  # SLQ nodes (first Krylov block of each probe)
    weights: np.ndarray  # SLQ weights, summing to 1
    clusters: list[RawCluster]
    steps: int
    n_products: int
    probes: int
    low_status: str  # "converged" | "cluster" | "unresolved" | "complete" | "not requested"
    high_status: str
    norm: float
    complete: bool


def _tridiag_eig(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if a.shape[0] == 1:
        return a.copy(), np.ones((1, 1))
    import scipy.linalg  # on first use: `import stability` does not load scipy

    return scipy.linalg.eigh_tridiagonal(a, b)


def _project(V: np.ndarray, w: np.ndarray) -> np.ndarray:
    """w minus its projection on the rows of V: w - V^T (V w).

    Callers run this under `single_threaded_blas()`: a multi-threaded OpenBLAS
    competing with XLA's thread pool (the Hessian-vector products run in between)
    was measured 20-70 times slower for these matrix-vector products (10 ms
    instead of 0.15 ms at 600 x 1000 on two loaded cores).
    """
    return w - (V @ w) @ V


def _krylov(
    matvec: Callable[[np.ndarray], np.ndarray],
    v0: np.ndarray,
    steps: int,
    rng: np.random.Generator,
    on_check: Callable[[int, np.ndarray, np.ndarray, int | None], bool] | None = None,
    check_every: int = 10,
    min_steps: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int | None]:
    """Lanczos with full reorthogonalisation (one classical Gram-Schmidt pass after
    the three-term recurrence, repeated once when it cancels; DGKS). On an exact
    breakdown (an invariant subspace), continues from a random vector orthogonal to
    the basis, with a zero off-diagonal. Returns (V, alpha, beta, steps,
    first_block)."""
    n = v0.shape[0]
    steps = min(steps, n)
    V = np.empty((steps + 1, n))
    alpha = np.zeros(steps)
    beta = np.zeros(steps)
    V[0] = v0 / np.linalg.norm(v0)
    first_block: int | None = None
    scale = 0.0
    m = 0
    next_check = max(min_steps, check_every)
    for j in range(steps):
        w = np.array(matvec(V[j]), dtype=np.float64)
        a = float(np.dot(V[j], w))
        w -= a * V[j]
        if j > 0:
            w -= beta[j - 1] * V[j - 1]
        for _ in range(2):
            before = np.linalg.norm(w)
            w = _project(V[: j + 1], w)
            if np.linalg.norm(w) > 0.7 * before:
                break
        alpha[j] = a
        b = float(np.linalg.norm(w))
        scale = max(scale, abs(a), b)
        m = j + 1
        if m == n:
            beta[j] = b
            break
        if b <= 1e-13 * scale:
            if first_block is None:
                first_block = m
            w = _project(V[: j + 1], _project(V[: j + 1], rng.standard_normal(n)))
            beta[j] = 0.0
            V[j + 1] = w / np.linalg.norm(w)
        else:
            beta[j] = b
            V[j + 1] = w / b
        if on_check is not None and m >= next_check:
            # checks cost an O(m^2) tridiagonal eigensolve: every `check_every`
            # steps, and every 10 % of the steps once m > 10 check_every.
            next_check = m + max(check_every, m // 10)
            if on_check(m, alpha[:m], beta[:m], first_block):
                break
    return V[: m + 1], alpha[:m], beta[:m], m, first_block


def lanczos(
    matvec: Callable[[np.ndarray], np.ndarray],
    n: int,
    *,
    k: int,
    low: bool,
    high: bool,
    tol: float,
    width: float,
    zero_tol: float,
    min_weight: float,
    max_steps: int,
    resolve_cluster: bool,
    probes: int,
    density_steps: int | None,
    seed: int,
    check_every: int = 10,
) -> LanczosRun:
    """Extremal eigenvalues of the symmetric K (see the module docstring)."""
    rng = np.random.default_rng(seed)
    count = [0]

    def mv(v: np.ndarray) -> np.ndarray:
        count[0] += 1
        return matvec(v)

    eps = np.finfo(np.float64).eps
    state: dict = {"previous": None, "low": "unresolved", "high": "unresolved"}

    def assess(a, b, first_block):
        m = a.shape[0]
        theta, S = _tridiag_eig(a, b[: m - 1])
        est = np.abs(b[m - 1] * S[m - 1, :])
        normK = float(np.max(np.abs(theta)))
        thresh = tol * np.abs(theta) + 100 * eps * normK
        conv = est <= thresh
        fb = m if first_block is None else first_block
        if fb == m:
            nodes, weights = theta, S[0, :] ** 2
        else:
            nodes, S1 = _tridiag_eig(a[:fb], b[: fb - 1])
            weights = S1[0, :] ** 2
        clusters = find_clusters(
            nodes,
            weights,
            width=width,
            floor=zero_tol * normK,
            min_weight=min_weight,
        )
        return theta, est, conv, normK, nodes, weights, clusters

    def end_status(theta, conv, clusters, side):
        kk = min(k, theta.shape[0])
        idx = np.arange(kk) if side == "low" else np.arange(theta.shape[0] - kk, theta.shape[0])
        if np.all(conv[idx]):
            return "converged"
        if resolve_cluster or not clusters:
            return "unresolved"
        if side == "low":
            edge = clusters[0].position - clusters[0].halfwidth
            beyond = theta < edge
        else:
            edge = clusters[-1].position + clusters[-1].halfwidth
            beyond = theta > edge
        if beyond.sum() < kk and np.all(conv[beyond]):
            return "cluster"
        return "unresolved"

    def on_check(m, a, b, first_block):
        theta, est, conv, normK, nodes, weights, clusters = assess(a, b, first_block)
        lo = end_status(theta, conv, clusters, "low") if low else "not requested"
        hi = end_status(theta, conv, clusters, "high") if high else "not requested"
        state["low"], state["high"] = lo, hi
        ok = lo != "unresolved" and hi != "unresolved"
        signature = (
            [(c.position, c.halfwidth) for c in clusters],
            int(np.sum(conv & outside(theta, clusters))),
        )
        previous = state["previous"]
        state["previous"] = signature
        if not ok:
            return False
        if "cluster" not in (lo, hi):
            return True
        if previous is None or len(previous[0]) != len(signature[0]):
            return False
        same_clusters = all(
            abs(p[0] - q[0]) <= 0.1 * q[1] for p, q in zip(previous[0], signature[0], strict=True)
        )
        return same_clusters and previous[1] == signature[1]

    v0 = rng.standard_normal(n)
    V, a, b, m, first_block = _krylov(
        mv, v0, max_steps, rng, on_check, check_every=check_every, min_steps=min(2 * k + 10, n)
    )
    theta, est, conv, normK, nodes, weights, clusters = assess(a, b, first_block)
    complete = m == n
    if complete:
        lo_status = "complete" if low else "not requested"
        hi_status = "complete" if high else "not requested"
    else:
        lo_status = end_status(theta, conv, clusters, "low") if low else "not requested"
        hi_status = end_status(theta, conv, clusters, "high") if high else "not requested"

    # Which Ritz pairs to report: k at each requested end, and every converged Ritz
    # value below the lowest cluster (the isolated slow-side eigenvalues), capped.
    kk = min(k, m)
    report = set()
    if low:
        report.update(range(kk))
        if clusters:
            below = np.flatnonzero((theta < clusters[0].position - clusters[0].halfwidth) & conv)
            report.update(below[:50].tolist())
    if high:
        report.update(range(m - kk, m))
    report_idx = np.array(sorted(report), dtype=np.int64)
    _, S = _tridiag_eig(a, b[: m - 1])
    Y = S[:, report_idx].T @ V[:m]
    del V
    residuals = np.empty(report_idx.shape[0])
    for i, t in enumerate(theta[report_idx]):
        y = Y[i] / np.linalg.norm(Y[i])
        residuals[i] = np.linalg.norm(mv(y) - t * y)

    # Extra probes for the density (stochastic Lanczos quadrature).
    all_nodes, all_weights = [nodes], [weights]
    d_steps = min(m, 100) if density_steps is None else density_steps
    for _ in range(probes - 1):
        _, a2, b2, m2, fb2 = _krylov(mv, rng.standard_normal(n), d_steps, rng)
        fb2 = m2 if fb2 is None else fb2
        nd, S2 = _tridiag_eig(a2[:fb2], b2[: fb2 - 1])
        all_nodes.append(nd)
        all_weights.append(S2[0, :] ** 2)
    nodes = np.concatenate(all_nodes)
    weights = np.concatenate(all_weights) / probes
    order = np.argsort(nodes)
    nodes, weights = nodes[order], weights[order]
    if probes > 1:
        clusters = find_clusters(
            nodes, weights, width=width, floor=zero_tol * normK, min_weight=min_weight
        )
    return LanczosRun(
        theta=theta,
        est_residuals=est,
        est_converged=conv,
        report=report_idx,
        residuals=residuals,
        nodes=nodes,
        weights=weights,
        clusters=clusters,
        steps=m,
        n_products=count[0],
        probes=probes,
        low_status=lo_status,
        high_status=hi_status,
        norm=normK,
        complete=complete,
    )
