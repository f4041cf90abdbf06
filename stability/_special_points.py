r"""Special points of a continued branch, detected between consecutive points and
located: a fold where $dp/ds$ changes sign, a branch point where the number of
unstable directions changes and $dp/ds$ does not (the sign of the bordered
determinant, $\mathrm{sign}\det K \cdot \mathrm{sign}\,dp/ds$, changes). Each is
located by regula falsi with the Illinois modification in the arclength from the
point before it, on its test function ($dp/ds$, or the eigenvalue of $K$ nearest
zero)."""

from __future__ import annotations

import math
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
        self.eigen: tuple[np.ndarray, bool] | None = None  # (eigenvalues of K, certain)

    def eigenvalues(self, analyser) -> tuple[np.ndarray, bool]:
        """The eigenvalues of K here (computed once, then kept)."""
        if self.eigen is None:
            self.eigen = analyser.eigen(self.W, self.p)
        return self.eigen

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
        self.last_residual = math.nan

    def correct(self, W, p, tW, tp):
        out = branch.correct(
            self.fam, W, jnp.asarray(p), tW, jnp.asarray(tp), self.tol,
            self.max_newton, self.dense, self.rtol, self.max_krylov,
        )  # fmt: skip
        W, p, r, it, steps, ok = out
        self.last_residual = float(r)
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

    def node(self, W, p, tW, tp, sigma=0.0, *, with_tangent=True) -> Node | None:
        """The branch point predicted at arclength `sigma` along (tW, tp) from (W, p)
        and corrected on the hyperplane through the prediction normal to the tangent;
        with its own tangent, oriented by (tW, tp) (with `with_tangent=False`, the
        given one: the tangent solve is singular at a branch point). None when a
        solve fails."""
        W1, p1, r, it, ok = self.correct(W + sigma * tW, p + sigma * tp, tW, tp)
        if not ok:
            return None
        if not with_tangent:
            return Node(W1, p1, tW, tp, r, it)
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
        node.record = self.analyser.point(
            node.W, node.p, node.residual, node.tp, node.newton_steps,
            node.eigenvalues(self.analyser),
        )  # fmt: skip
        return node.record


def illinois(
    evaluate: Callable[[float], Node | None],
    test: Callable[[Node], float],
    hi: float,
    a: Node,
    b: Node,
    fa: float,
    fb: float,
    ftol: float,
):
    """The root of test(evaluate(sigma)) for sigma in (0, hi), with test values fa
    at a (sigma = 0) and fb at b (sigma = hi) of opposite signs, by regula falsi with
    the Illinois modification (superlinear, bracketing). An evaluation that fails is
    retried once at a nudged sigma, then the bracket is bisected. Returns the node
    with the smallest |test| found (a or b when nothing improved on them), its test
    value and the number of evaluations."""
    lo, flo, fhi = 0.0, fa, fb
    side, iterations = 0, 0
    best, best_value = (a, fa) if abs(fa) < abs(fb) else (b, fb)
    for iterations in range(1, 61):  # noqa: B007 - the count is returned
        sigma = (lo * fhi - hi * flo) / (fhi - flo)
        if not lo < sigma < hi:
            sigma = 0.5 * (lo + hi)
        node = evaluate(sigma)
        if node is None:  # e.g. exactly on a singular point: step aside once
            sigma = sigma + 1e-3 * (hi - lo) * (1 if sigma - lo < hi - sigma else -1)
            node = evaluate(sigma)
        if node is None:
            break
        value = test(node)
        if abs(value) <= abs(best_value):
            best, best_value = node, value
        if abs(value) <= ftol or hi - lo <= 1e-15 * max(abs(hi), 1e-300):
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


def _eigenvalue(run: Run, node: Node, position: int) -> float:
    """The eigenvalue of K at `position` in ascending order (the one that crosses
    zero when the index changes between `position` and `position + 1`)."""
    lam, _ = node.eigenvalues(run.analyser)
    return float(lam[min(position, lam.size - 1)])


def events(run: Run, a: Node, b: Node, ds: float, after: int, locate_tol: float):
    """The special point between consecutive points a and b, located: a fold where
    dp/ds changes sign, a branch point where the index changes and dp/ds does not
    (the eigenvalue at the position of the smaller index crosses zero)."""
    ra, rb = a.record, b.record
    fold = np.sign(a.tp) * np.sign(b.tp) < 0
    crossing = ra.index != rb.index and ra.certain and rb.certain
    with_tangent = True
    if fold:
        kind, test, fa, fb, ftol = "fold", (lambda n: n.tp), a.tp, b.tp, locate_tol
    elif crossing:
        position = min(ra.index, rb.index)
        fa, fb = _eigenvalue(run, a, position), _eigenvalue(run, b, position)
        if np.sign(fa) * np.sign(fb) >= 0:  # pragma: no cover - the index says otherwise
            return []
        kind, test = "branch", (lambda n: _eigenvalue(run, n, position))
        ftol = locate_tol * max(abs(ra.stiff), abs(ra.slow))
        with_tangent = False  # the tangent solve is singular at the branch point
    else:
        return []

    def evaluate(sigma: float) -> Node | None:
        return run.node(a.W, a.p, a.tW, a.tp, sigma, with_tangent=with_tangent)

    node, value, iterations = illinois(evaluate, test, ds, a, b, fa, fb, ftol)
    U, norm, cost = run.analyser.basics(node.W, node.p)
    scale = np.asarray(run.fam.scale)
    null = None
    if kind == "branch":
        null = scale * run.analyser.null_vector(node.W, node.p)
    return [
        SpecialPoint(
            kind=kind,
            p=float(node.p),
            U=U,
            norm=norm,
            cost=cost,
            index_before=ra.index,
            index_after=rb.index,
            test=float(value),
            iterations=int(iterations),
            null_vector=null,
            tangent=scale * np.asarray(a.tW),
            tangent_p=float(a.tp),
            after=after,
        )
    ]
