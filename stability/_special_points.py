r"""Special points of a continued branch, detected between consecutive points and
located: a fold where $dp/ds$ changes sign, a branch point where the number of
unstable directions changes and $dp/ds$ does not (the sign of the bordered
determinant, $\mathrm{sign}\det K \cdot \mathrm{sign}\,dp/ds$, changes). Each is
located by regula falsi with the Illinois modification in the arclength from the
point before it, on its test function ($dp/ds$, or the eigenvalue of $K$ nearest
zero)."""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from . import _branch as branch
from ._continuation_results import ContinuationPoint, SpecialPoint


class Node:
    """A corrected point of the branch, in scaled coordinates, with its unit tangent."""

    def __init__(self, W, p, tW, tp, residual, newton_steps):
        self.W, self.p, self.tW, self.tp = W, p, tW, tp
        self.residual, self.newton_steps = residual, newton_steps
        self.record: ContinuationPoint | None = None

    def cos(self, other: Node) -> float:
        return float(jnp.vdot(self.tW, other.tW)) + self.tp * other.tp


class Run:
    """One continuation's settings and counters, around the compiled kernels."""

    def __init__(self, fam, dense, tol, max_newton, analyser):
        self.fam, self.dense, self.tol, self.max_newton = fam, dense, tol, max_newton
        self.analyser = analyser
        self.rtol = 1e-10
        self.max_krylov = 1000
        self.num_newton = self.num_krylov = self.num_rejected = 0

    def correct(self, W, p, tW, tp):
        out = branch.correct(
            self.fam, W, jnp.asarray(p), tW, jnp.asarray(tp), self.tol,
            self.max_newton, self.dense, self.rtol, self.max_krylov,
        )  # fmt: skip
        W, p, r, it, steps, ok = out
        self.num_newton += int(it)
        self.num_krylov += int(steps)
        return W, float(p), float(r), int(it), bool(ok)

    def tangent(self, W, p, tW, tp):
        xW, xp, n, ok = branch.tangent(
            self.fam, W, jnp.asarray(p), tW, jnp.asarray(tp), self.dense, self.rtol,
            self.max_krylov,
        )  # fmt: skip
        self.num_krylov += int(n)
        return xW, float(xp), bool(ok)

    def node(self, W, p, tW, tp, sigma=0.0) -> Node | None:
        """The branch point predicted at arclength `sigma` along (tW, tp) from (W, p)
        and corrected on the hyperplane through the prediction normal to the tangent;
        with its own tangent, oriented by (tW, tp). None when either solve fails."""
        W1, p1, r, it, ok = self.correct(W + sigma * tW, p + sigma * tp, tW, tp)
        if not ok:
            return None
        TW, Tp, ok = self.tangent(W1, p1, tW, tp)
        return Node(W1, p1, TW, Tp, r, it) if ok else None

    def at_parameter(self, W, p, border_W, border_p) -> Node | None:
        """Newton at fixed p (natural parameter) from W, with the tangent oriented by
        the border direction."""
        zero = jnp.zeros_like(W)
        W1, p1, r, it, ok = self.correct(W, p, zero, 1.0)
        if not ok:
            return None
        TW, Tp, ok = self.tangent(W1, p1, border_W, border_p)
        return Node(W1, p1, TW, Tp, r, it) if ok else None

    def record(self, node: Node) -> ContinuationPoint:
        node.record = self.analyser.point(node.W, node.p, node.residual, node.tp, node.newton_steps)
        return node.record


def _illinois(
    run: Run, a: Node, b: Node, ds: float, test: Callable, fa: float, fb: float, ftol: float
):
    """The root of test(node(sigma)) for sigma in (0, ds) by regula falsi with the
    Illinois modification (superlinear, bracketing). Returns the node with the smallest
    |test| found (b itself when no evaluation improved on it, e.g. every corrector
    inside the bracket failed), its test value and the number of evaluations."""
    lo, hi, flo, fhi = 0.0, ds, fa, fb
    side, iterations = 0, 0
    best, best_value = b, fb
    for iterations in range(1, 61):  # noqa: B007 - the count is returned
        sigma = (lo * fhi - hi * flo) / (fhi - flo)
        if not lo < sigma < hi:
            sigma = 0.5 * (lo + hi)
        node = run.node(a.W, a.p, a.tW, a.tp, sigma)
        if node is None:
            break
        value = test(node)
        if abs(value) <= abs(best_value):
            best, best_value = node, value
        if abs(value) <= ftol or hi - lo <= 1e-15 * ds:
            break
        if np.sign(value) == np.sign(flo):
            lo, flo = sigma, value
            if side == -1:
                fhi *= 0.5
            side = -1
        else:
            hi, fhi = sigma, value
            if side == +1:
                flo *= 0.5
            side = +1
    return best, best_value, iterations


def _nearest_zero(run: Run, node: Node) -> float:
    lam, _ = run.analyser.eigen(node.W, node.p)
    return float(lam[int(np.argmin(np.abs(lam)))])


def events(run: Run, a: Node, b: Node, ds: float, after: int, locate_tol: float):
    """The special point between consecutive points a and b, located: a fold where
    dp/ds changes sign, a branch point where the index changes and dp/ds does not."""
    ra, rb = a.record, b.record
    fold = np.sign(a.tp) * np.sign(b.tp) < 0
    crossing = ra.index != rb.index and ra.certain and rb.certain
    if fold:
        kind, test, fa, fb, ftol = "fold", (lambda n: n.tp), a.tp, b.tp, locate_tol
    elif crossing:
        fa, fb = _nearest_zero(run, a), _nearest_zero(run, b)
        if np.sign(fa) * np.sign(fb) >= 0:
            return []
        kind, test = "branch", (lambda n: _nearest_zero(run, n))
        ftol = locate_tol * max(abs(ra.stiff), abs(ra.slow))
    else:
        return []
    node, value, iterations = _illinois(run, a, b, ds, test, fa, fb, ftol)
    rec = run.analyser.point(node.W, node.p, node.residual, node.tp, node.newton_steps)
    null = None
    if kind == "branch":
        null = np.asarray(run.fam.scale) * run.analyser.null_vector(node.W, node.p)
    return [
        SpecialPoint(
            kind=kind,
            p=rec.p,
            U=rec.U,
            norm=rec.norm,
            cost=rec.cost,
            index_before=ra.index,
            index_after=rb.index,
            test=float(value),
            iterations=int(iterations),
            null_vector=null,
            after=after,
        )
    ]
