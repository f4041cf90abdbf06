r"""The analysis of one point of a continued branch: the spectrum of
$K = D^{-1/2}\nabla^2 E^N D^{-1/2}$ (whose eigenvalues are those of $-J$), the index,
the classification and the step bound; and the null vector at a branch point.

Dense for small $Nm$ (the assembled $K$, `numpy.linalg.eigh`: every eigenvalue, so
the index is exact); Lanczos on the compiled Hessian-vector product otherwise (the
$k$ extremal eigenvalues at each end, `stability._lanczos`: the index is exact while
fewer than $k$ eigenvalues are negative, `certain` says so).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from . import _branch as branch
from ._blas import single_threaded_blas
from ._continuation_results import ContinuationPoint
from ._lanczos import _krylov, _tridiag_eig, lanczos


ZERO_TOL = 1e-8  # eigenvalues within this fraction of the largest count as zero
K_ENDS = 6  # Lanczos eigenvalues per end on the matrix-free path


class Analyser:
    """The per-point analysis: cost, spectrum ends, index, classification, bound."""

    def __init__(self, fam, dense, shape, steps, seed=0):
        self.fam, self.dense, self.shape, self.steps = fam, dense, shape, steps
        self.size = int(np.prod(shape))
        self.num_products = 0
        self.seed = seed

    def eigen(self, W, p) -> tuple[np.ndarray, bool]:
        """Eigenvalues of K (ascending): all of them (dense), or the computed ends."""
        if self.dense:
            with single_threaded_blas():
                K = np.asarray(branch.dense_k(self.fam, W, jnp.asarray(p)))
                return np.linalg.eigvalsh(0.5 * (K + K.T)), True
        mv = branch.host_kvp(self.fam, W, jnp.asarray(p), self.shape)
        max_steps = min(self.size, max(2 * K_ENDS + 30, min(1000, 2**28 // (8 * self.size))))
        with single_threaded_blas():
            run = lanczos(
                mv, self.size, k=K_ENDS, low=True, high=True, tol=1e-10, width=1e-2,
                zero_tol=ZERO_TOL, min_weight=0.1, max_steps=max_steps,
                resolve_cluster=False, probes=1, density_steps=None, seed=self.seed,
            )  # fmt: skip
        self.num_products += run.n_products
        # Ritz values interlace the eigenvalues, so the count below zero is a lower
        # bound of the index; it is exact once the low end has converged with fewer
        # than k negative values
        theta = np.sort(run.theta)
        certain = (
            run.low_status != "unresolved"
            and run.high_status != "unresolved"
            and int(np.sum(theta[:K_ENDS] < 0)) < K_ENDS
        )
        return theta, bool(certain)

    def basics(self, W, p) -> tuple[np.ndarray, float, float]:
        """U = D^{-1/2} W, its L2 norm (sum_k h_k |u_k|^2)^{1/2} and the cost E^N."""
        U = np.asarray(self.fam.scale * W)
        norm = float(np.sqrt(np.sum(self.steps[:, None] * U**2)))
        return U, norm, float(branch.cost(self.fam, W, jnp.asarray(p)))

    def point(self, W, p, residual, tangent_p, newton_steps, eigen=None) -> ContinuationPoint:
        """The point's record; `eigen` = (eigenvalues, certain) when already computed."""
        lam, certain = self.eigen(W, p) if eigen is None else eigen
        U, norm, cost = self.basics(W, p)
        return point_record(lam, certain, U, norm, p, cost, residual, tangent_p, newton_steps)

    def null_vector(self, W, p) -> np.ndarray:
        """The unit eigenvector phi of K nearest zero (in the scaled coordinates W), in
        U's shape; its sign makes its largest component positive. Matrix-free: the
        Ritz vector of Lanczos runs of 80, 300 and 1000 steps, until its residual
        |K phi - theta phi| is at most 1e-8 |K|."""
        if self.dense:
            with single_threaded_blas():
                K = np.asarray(branch.dense_k(self.fam, W, jnp.asarray(p)))
                lam, vec = np.linalg.eigh(0.5 * (K + K.T))
            phi = vec[:, int(np.argmin(np.abs(lam)))]
        else:
            mv = branch.host_kvp(self.fam, W, jnp.asarray(p), self.shape)
            rng = np.random.default_rng(self.seed)
            for steps in sorted({min(self.size, s) for s in (80, 300, 1000)}):
                with single_threaded_blas():
                    V, a, b, m, _ = _krylov(mv, rng.standard_normal(self.size), steps, rng)
                    theta, S = _tridiag_eig(a, b[: m - 1])
                j = int(np.argmin(np.abs(theta)))
                phi = S[:, j] @ V[:m]
                phi = phi / np.linalg.norm(phi)
                residual = np.linalg.norm(mv(phi) - theta[j] * phi)
                self.num_products += m + 1
                if residual <= 1e-8 * float(np.max(np.abs(theta))):
                    break
        phi = phi / np.linalg.norm(phi)
        i = int(np.argmax(np.abs(phi)))
        return np.sign(phi[i]) * phi.reshape(self.shape)


def point_record(lam, certain, U, norm, p, cost, residual, tangent_p, newton_steps):
    scale = float(np.max(np.abs(lam))) if lam.size else 0.0
    thr = ZERO_TOL * scale
    n_neg = int(np.sum(lam < -thr))
    n_zero = int(np.sum(np.abs(lam) <= thr))
    n_pos = lam.size - n_neg - n_zero
    if n_neg == 0 and n_zero == 0:
        kind = "asymptotically stable"
    elif n_neg == 0:
        kind = "marginal"
    elif n_pos == 0 and n_zero == 0 and certain and lam.size == U.size:
        kind = "unstable"
    else:
        kind = "saddle"
    stiff, slow = -float(lam[-1]), -float(lam[0])
    return ContinuationPoint(
        p=float(p),
        U=U,
        norm=norm,
        cost=cost,
        slow=slow,
        stiff=stiff,
        kind=kind,
        index=n_neg,
        certain=bool(certain),
        alpha_max=(2.0 / float(lam[-1])) if kind == "asymptotically stable" else None,
        residual=float(residual),
        tangent_p=float(tangent_p),
        newton_steps=int(newton_steps),
    )
