r"""Pseudo-arclength continuation of the equilibria $\nabla E^N(U; p) = 0$ of a problem
family, with folds and branch points located on the way.

The host-side driver: step-size control, the event tests and their location, the
spectra (dense, or Lanczos on the compiled Hessian-vector product). Each point's
numerical work (the Newton corrector, the tangent) is one compiled call of
`stability._branch`, traced once per family.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import flow
from flow import RESULTS, metrics
from flow.metrics import as_metric
from flow.validation import choice, finite_float, positive_float, positive_int

from . import _branch as branch
from ._branch_spectra import Analyser
from ._continuation_results import Continuation, ContinuationPoint, SpecialPoint
from ._equilibrium import equilibrium
from ._special_points import Node, Run, events, illinois


DENSE_CONTINUATION_MAX = 400
"""Largest $Nm$ for which `continuation(..., method="auto")` assembles the bordered
Jacobian (LU) and the whole spectrum of $K$ (`numpy.linalg.eigh`) at each point;
above it, GMRES on Jacobian-vector products and Lanczos on Hessian-vector products:
no $(Nm)^2$ array."""

_MIN_COS = 0.9  # consecutive tangents further apart than ~25 degrees: step halved


def _check_family(family: Any, p0: float) -> flow.OptimalControlProblem:
    if not callable(family):
        raise TypeError(
            f"`family` must be a callable p -> flow.OptimalControlProblem; got "
            f"{type(family).__name__}."
        )
    problem = family(p0)
    if not isinstance(problem, flow.OptimalControlProblem):
        raise TypeError(
            f"`family` must return a flow.OptimalControlProblem; family({p0:g}) returned "
            f"{type(problem).__name__}."
        )
    if problem.control_bounds is not None:
        raise ValueError(
            "`family`: continuation follows smooth branches of grad E^N(U; p) = 0 and "
            "takes problems without control bounds; this family's problem has "
            "control_bounds."
        )
    return problem


def _traced_check(fam: branch.Family, W: jax.Array, p: float) -> None:
    """Trace the family once in its parameter, turning failures into a clear error."""
    try:
        jax.eval_shape(lambda q: branch.residual(fam, W, q), jnp.asarray(p))
    except Exception as e:  # noqa: BLE001 - re-raised with context
        first = (str(e).strip().splitlines() or [""])[0]
        raise ValueError(
            f"`family` must build its problem from a traced parameter (p is a JAX "
            f"value under jit: use jnp operations on it, no float(p) or Python "
            f"branches on it): {type(e).__name__}: {first}"
        ) from e


def _start(run, sh0, U0, p0, scale, tol, stop_on):
    """The first node: Newton at fixed p0 from U0, or trust-region Newton-CG
    ([`equilibrium`][stability.equilibrium]) when Newton fails."""
    U0 = flow.validation.controls(sh0, U0, "U0", finite=True)
    W0 = U0 / scale
    zero = jnp.zeros_like(W0)
    W, p, r, it, ok = run.correct(W0, p0, zero, 1.0)
    if not ok:
        eq = equilibrium(sh0, U0, tol=tol, stop_on=stop_on, throw=False)
        if not eq.success:
            raise ValueError(
                f"`U0`: no equilibrium was found at p = {p0:g} (Newton from U0 failed, "
                f"and stability.equilibrium: {eq.message}). Pass an equilibrium or a "
                f"closer guess."
            )
        W, p, r, it, ok = run.correct(eq.U / scale, p0, zero, 1.0)
        if not ok:  # pragma: no cover - equilibrium met the same tolerance
            raise ValueError(f"`U0`: Newton did not confirm the equilibrium at p = {p0:g}.")
    tW, tp, ok = run.tangent(W, p, zero, 1.0)
    if not ok or abs(tp) < 1e-12:
        raise ValueError(
            f"`U0`: the Hessian of E^N is singular at the start (p = {p0:g}): a fold "
            f"or branch point; start the continuation at another parameter value."
        )
    return Node(W, p, tW, tp, r, it)


def _switch(run, sp, scale, tol):
    """The first node of the branch through a branch point: the point itself, with the
    null vector, made orthogonal to the old branch's tangent, as the tangent."""
    W = jnp.asarray(sp.U) / scale
    r = float(branch.residual(run.fam, W, jnp.asarray(sp.p))[1])
    if not r <= 100 * tol:
        raise ValueError(
            f"`U0`: the branch point is not an equilibrium of this family at p = "
            f"{sp.p:.8g} (stopping residual {r:.2e} > 100 tol); pass a SpecialPoint of "
            f"a continuation of the same family, N, scheme and metric."
        )
    phi = jnp.asarray(sp.null_vector) / scale
    tW_old = jnp.asarray(sp.tangent) / scale
    along = jnp.vdot(phi, tW_old)
    phiW, phip = phi - along * tW_old, -along * sp.tangent_p
    norm = jnp.sqrt(jnp.vdot(phiW, phiW) + phip**2)
    return Node(W, sp.p, phiW / norm, float(phip / norm), r, 0)


def _landing(run, a: Node, b: Node, bound: float) -> Node | None:
    """The point at p = bound between a and b (the branch leaves p_span there)."""
    theta = (bound - a.p) / (b.p - a.p)
    return run.at_parameter(a.W + theta * (b.W - a.W), bound, a.tW, a.tp)


def continuation(
    family: Any,
    U0: Any,
    p_span: Any,
    *,
    N: Any,
    scheme: Any = None,
    metric: Any = "hamiltonian",
    tol: Any = 1e-10,
    stop_on: str = "hamiltonian",
    step: Any = None,
    min_step: Any = None,
    max_step: Any = None,
    max_points: Any = 200,
    max_newton: Any = 10,
    locate_tol: Any = 1e-10,
    direction: Any = 1,
    method: str = "auto",
) -> Continuation:
    r"""Follow the equilibria of the gradient flow (50) as a problem parameter varies:
    pseudo-arclength continuation of $\nabla E^N(U; p) = 0$, with the spectrum,
    classification and step bound at each point, and folds and branch points located.

    **The branch.** With $M = D$ a constant diagonal metric and $W = D^{1/2} U$, the
    branch is the curve $G(W, p) = D^{-1/2}\nabla E^N(D^{-1/2} W; p) = 0$,
    parameterised by its arclength $s$ in the norm
    $\|(\delta U, \delta p)\|^2 = \delta U^T M \delta U + \delta p^2$. From a point
    $X_i = (W_i, p_i)$ with unit tangent $t_i$ the predictor is $X_i + \Delta s\,t_i$;
    the corrector is Newton on $G = 0$, $t_i \cdot (X - X_i - \Delta s\,t_i) = 0$ with
    the bordered Jacobian $\begin{pmatrix} K & G_p \\ t_i^T \end{pmatrix}$,
    $K = D^{-1/2}\nabla^2 E^N D^{-1/2}$ (nonsingular at a simple fold), until the
    stopping residual ($\max_k |\partial_{u_k} H|$ for `stop_on="hamiltonian"`) is at
    most `tol`; the next tangent solves the same bordered system with right-hand side
    $(0, 1)$. For $Nm \le$ `DENSE_CONTINUATION_MAX` the bordered matrix is assembled
    (forward-mode columns) and the full spectrum of $K$ computed; above it, the
    bordered system is solved by lineax GMRES on Jacobian-vector products of $G$
    (a Hessian-vector product and the derivative in $p$) and the spectrum's ends by
    Lanczos: no $(Nm)^2$ array. $\partial_p\nabla E^N$ comes from JAX, by tracing
    `family` in $p$.

    **Step control.** The step $\Delta s$ grows by 1.5 after a corrector that needed at
    most 3 Newton steps, shrinks by 2 after one that needed more than 5, and is
    halved and the step retried when the corrector fails or the tangent turns by
    more than about 25 degrees; below `min_step` the run stops (`stalled`).

    **At each point** ([`ContinuationPoint`][stability.ContinuationPoint]): $p$, $U^*$,
    its $L^2$ norm and cost, the ends of the spectrum of $J = -M^{-1}\nabla^2 E^N$,
    the number of unstable directions (the Morse index of $E^N$), the classification,
    and the forward-Euler bound $\alpha_{\max} = 2/\lambda_{\max}(M^{-1}\nabla^2 E^N)$.

    **Special points** ([`SpecialPoint`][stability.SpecialPoint]). A *fold* (an optimum
    merging with a saddle) is where $dp/ds$ changes sign; a *branch point* is where
    the index (the number of negative eigenvalues of $K$) changes and $dp/ds$ does
    not: there the sign of the bordered determinant, $\mathrm{sign}\det K \cdot
    \mathrm{sign}\,dp/ds$, changes. Each is located by regula falsi (Illinois) in the
    arclength on its test function, $dp/ds$ or the eigenvalue of $K$ that crosses zero
    (the one at the position of the smaller index), until that is at most
    `locate_tol` (times $\|K\|$ for a branch point): a fold's $p$ is then exact to
    about `locate_tol`$^2/(2|d^2p/ds^2|)$ plus the corrector's error, far below 1e-8.
    Special points beyond `p_span` are not reported. To follow the other branch
    through a branch point, pass the [`SpecialPoint`][stability.SpecialPoint] as `U0`:
    the run leaves along its null vector, made orthogonal to the old branch's tangent
    (`direction=-1` for the other half); the first step may turn (a transcritical
    branch point).

    **Arguments:**

    - `family`: `p -> flow.OptimalControlProblem`; `p` arrives as a traced JAX scalar,
      so build the problem with `jnp` operations on it (closures over `p` are fine).
      The problem's sizes, `t0` and `tf` must not depend on `p` (for a horizon as the
      parameter, scale time), and it must have no control bounds.
    - `U0`: an equilibrium or a guess at `p_span[0]`, shape `(N, m)` (Newton, falling
      back to [`equilibrium`][stability.equilibrium]); or a branch
      [`SpecialPoint`][stability.SpecialPoint] of an earlier run.
    - `p_span`: `(p_start, p_end)`; the run ends when the branch leaves the interval
      between them (the last point lands on the end it crossed).
    - `N`: the number of uniform intervals; `scheme`: the one-step scheme (default
      Euler); `metric`: a constant diagonal metric (`"hamiltonian"`, the default, or
      `"identity"`, or `flow.metrics.Diagonal(d)`): the flow, the spectra and the step
      bound are this metric's.
    - `tol`, `stop_on`: the corrector's tolerance and what it is measured on
      (`"hamiltonian"`: $\max|\nabla E^N / h_k|$; `"gradient"`: $\max|\nabla E^N|$).
    - `step`, `min_step`, `max_step`: the first, smallest and largest arclength step
      (defaults $|\Delta p|/50$, $10^{-8}|\Delta p|$, $|\Delta p|/5$ with
      $\Delta p$ = `p_end - p_start`).
    - `max_points`: the most points on the branch; `max_newton`: Newton steps per
      correction; `locate_tol`: see above; `direction`: +1 to start towards
      `p_end`; for a branch point, +1 or -1 leaves along $+\varphi$ or $-\varphi$;
      `method`: `"auto"`, `"dense"` or `"matrix-free"`.

    **Returns:** a [`Continuation`][stability.Continuation] (`points`,
    `special_points`, `folds`, `branch_points`, `table()`, `at(p)`, `to_dict()`).

    **Raises:** `TypeError`/`ValueError` naming the argument for bad input, a family
    that cannot be traced in `p`, or a start where no equilibrium is found.
    """
    if isinstance(p_span, str) or not hasattr(p_span, "__len__") or len(p_span) != 2:
        raise ValueError(f"`p_span` must be a pair (p_start, p_end); got {p_span!r}.")
    p_start, p_end = (finite_float(v, "p_span") for v in p_span)
    if p_start == p_end:
        raise ValueError(f"`p_span` must have p_start != p_end; got {p_span!r}.")
    N = positive_int(N, "N")
    scheme = flow.Euler() if scheme is None else scheme
    if not isinstance(scheme, flow.AbstractScheme):
        raise TypeError(f"`scheme` must be a scheme instance such as flow.Euler(); got {scheme!r}.")
    metric = as_metric(metric)
    if not (isinstance(metric, metrics.AbstractDiagonalMetric) and metric.constant):
        raise ValueError(
            f"`metric`: continuation takes a constant diagonal metric ('hamiltonian', "
            f"'identity' or flow.metrics.Diagonal(d)); got {metric.name!r}."
        )
    tol = positive_float(tol, "tol")
    stop_on = choice(stop_on, "stop_on", ("hamiltonian", "gradient"))
    max_points = positive_int(max_points, "max_points", minimum=2)
    max_newton = positive_int(max_newton, "max_newton")
    locate_tol = positive_float(locate_tol, "locate_tol")
    method = choice(method, "method", ("auto", "dense", "matrix-free"))
    switching = isinstance(U0, SpecialPoint)
    lo, hi = min(p_start, p_end), max(p_start, p_end)
    if direction not in (1, -1):
        raise ValueError(f"`direction` must be 1 or -1; got {direction!r}.")
    if direction == -1 and not switching:
        raise ValueError(
            "`direction`=-1 chooses the other half of a branch through a branch point "
            "(U0 a SpecialPoint); from an ordinary start the run goes from p_span[0] "
            "towards p_span[1]: swap p_span instead."
        )
    if switching and (U0.kind != "branch" or U0.null_vector is None):
        raise ValueError(
            f"`U0`: a SpecialPoint starts a branch only at a branch point; got a {U0.kind}."
        )
    if switching and not lo <= U0.p <= hi:
        raise ValueError(
            f"`U0`: the branch point at p = {U0.p:.8g} lies outside p_span = {p_span!r}."
        )
    p0 = U0.p if switching else p_start
    span = abs(p_end - p_start)
    step = span / 50 if step is None else positive_float(step, "step")
    min_step = 1e-8 * span if min_step is None else positive_float(min_step, "min_step")
    max_step = span / 5 if max_step is None else positive_float(max_step, "max_step")
    if not min_step <= step <= max_step:
        raise ValueError(
            f"`step` must lie between `min_step` and `max_step`; got min_step = "
            f"{min_step:g}, step = {step:g}, max_step = {max_step:g}."
        )

    problem0 = _check_family(family, p0)
    sh0 = flow.shoot(problem0, N, scheme)
    steps = np.asarray(sh0.steps)
    scale_np = 1.0 / np.sqrt(np.asarray(metric.diagonal(sh0)))
    weight = (1.0 / steps[:, None]) if stop_on == "hamiltonian" else np.ones((N, 1))
    fam = branch.Family(
        family=family,
        N=N,
        scheme=scheme,
        scale=jax.device_put(scale_np),
        unscale=jax.device_put(weight / scale_np),
        steps=jax.device_put(steps),
    )
    size = N * problem0.control_dim
    dense = size <= DENSE_CONTINUATION_MAX if method == "auto" else method == "dense"
    _traced_check(fam, jnp.zeros((N, problem0.control_dim)), p0)
    analyser = Analyser(fam, dense, (N, problem0.control_dim), steps)
    run = Run(fam, dense, tol, max_newton, analyser)
    scale = fam.scale

    if switching:
        if U0.U.shape != (N, problem0.control_dim):
            raise ValueError(
                f"`U0`: the branch point's control has shape {U0.U.shape}; this "
                f"continuation's controls have shape {(N, problem0.control_dim)} (N = {N})."
            )
        first = _switch(run, U0, scale, tol)
        first.tW, first.tp = direction * first.tW, direction * first.tp
    else:
        first = _start(run, sh0, U0, p0, scale, tol, stop_on)
        orient = direction * np.sign(p_end - p_start)
        first.tW, first.tp = orient * first.tW, orient * first.tp
    run.record(first)
    nodes, specials = [first], []
    ds, status, reason = step, None, ""
    while status is None:
        if len(nodes) >= max_points:
            status = RESULTS.max_steps
            reason = (
                f"max_points = {max_points} points were taken; the last at p = "
                f"{nodes[-1].p:.8g}, inside p_span"
            )
            break
        a = nodes[-1]
        b = run.node(a.W, a.p, a.tW, a.tp, ds)
        # the first step off a branch point may turn far: (phi, 0) is the new branch's
        # tangent only for a symmetric (pitchfork) branch point
        turned = b is not None and a.cos(b) < _MIN_COS and not (switching and len(nodes) == 1)
        if b is None or turned:
            run.num_rejected += 1
            ds *= 0.5
            if ds < min_step:
                status = RESULTS.stalled
                reason = (
                    f"the corrector failed from p = {a.p:.8g} (norm {a.record.norm:.6g}) "
                    f"with steps down to min_step = {min_step:.3g} (its last stopping "
                    f"residual {run.last_residual:.2e}, tol {tol:.1e}): the branch turns "
                    f"sharply there, meets a singular point it cannot pass, ends, or "
                    f"needs a tolerance above its rounding floor"
                )
            continue
        run.record(b)
        nodes.append(b)
        # special points beyond p_span's end (before the landing) are not reported
        specials += [
            sp for sp in events(run, a, b, ds, len(nodes) - 2, locate_tol) if lo <= sp.p <= hi
        ]
        if not lo <= b.p <= hi and lo <= a.p <= hi:
            landed = _landing(run, a, b, hi if b.p > hi else lo)
            if landed is not None:
                run.record(landed)
                nodes[-1] = landed
            status = RESULTS.completed
            reason = f"the branch left p_span at p = {nodes[-1].p:.8g}"
        elif b.newton_steps <= 3:
            ds = min(1.5 * ds, max_step)
        elif b.newton_steps > 5:
            ds = max(0.5 * ds, min_step)
    return Continuation(
        result=status,
        points=tuple(n.record for n in nodes),
        special_points=tuple(specials),
        problem=problem0.name,
        N=N,
        m=problem0.control_dim,
        scheme=scheme.name,
        metric=metric.name,
        p_span=(p_start, p_end),
        tol=tol,
        stop_on=stop_on,
        method="dense" if dense else "matrix-free",
        num_newton=run.num_newton,
        num_krylov=run.num_krylov,
        num_rejected=run.num_rejected,
        num_products=analyser.num_products,
        reason=reason,
        settings={"max_newton": max_newton, "locate_tol": locate_tol, "step": step,
                  "min_step": min_step, "max_step": max_step, "max_points": max_points},
        family=fam,
    )  # fmt: skip


def _vertices(result: Continuation) -> list[tuple[float, np.ndarray]]:
    """The branch as (p, U) vertices: its points, with each fold inserted after the
    point before it, so that p is monotone between consecutive vertices."""
    folds = {s.after: s for s in result.folds}
    out = []
    for i, q in enumerate(result.points):
        out.append((q.p, q.U))
        if i in folds:
            out.append((folds[i].p, folds[i].U))
    return out


def points_at(result: Continuation, p: float) -> tuple[ContinuationPoint, ...]:
    """The equilibria of `result`'s branch at `p` (see `Continuation.at`): on each
    stretch between consecutive vertices whose parameters enclose `p`, the root of
    p(sigma) = p along the secant (pseudo-arclength corrections, well conditioned at
    a fold), then Newton at fixed p away from folds; duplicates removed."""
    fam = result.family
    dense = result.method == "dense"
    analyser = Analyser(fam, dense, (result.N, result.m), np.asarray(fam.steps))
    run = Run(fam, dense, result.tol, result.settings["max_newton"], analyser)
    scale = fam.scale
    vertices = _vertices(result)
    found: list[Node] = []
    for (pa, Ua), (pb, Ub) in zip(vertices[:-1], vertices[1:], strict=True):
        if pa == pb or (pa - p) * (pb - p) > 0:
            continue
        Wa, Wb = jnp.asarray(Ua) / scale, jnp.asarray(Ub) / scale
        dW, dp = Wb - Wa, pb - pa
        n = float(jnp.sqrt(jnp.vdot(dW, dW) + dp**2))
        tW, tp = dW / n, dp / n
        a = Node(Wa, pa, tW, tp, 0.0, 0)
        b = Node(Wb, pb, tW, tp, 0.0, 0)

        def evaluate(sigma, a=a):
            return run.node(a.W, a.p, a.tW, a.tp, sigma, with_tangent=False)

        ftol = 1e-13 * max(1.0, abs(p))
        node, value, _ = illinois(evaluate, lambda q: q.p - p, n, a, b, pa - p, pb - p, ftol)
        TW, Tp, ok = run.tangent(node.W, node.p, tW, tp)
        node.tW, node.tp = (TW, Tp) if ok else (tW, tp)
        if node.p != p and ok and abs(Tp) > 1e-3:  # well conditioned: land on p exactly
            exact = run.at_parameter(node.W, p, node.tW, node.tp)
            node = exact if exact is not None else node
        if node.residual == 0.0:  # a vertex itself: its residual
            node.residual = float(branch.residual(fam, node.W, jnp.asarray(node.p))[1])
        size = 1e-8 * (1.0 + float(jnp.max(jnp.abs(node.W))))
        if all(float(jnp.max(jnp.abs(node.W - m.W))) > size for m in found):
            found.append(node)
    if not found:
        ps = [q.p for q in result.points]
        raise ValueError(
            f"`p` = {p:g}: no stretch of the branch encloses it (the branch spans "
            f"p in [{min(ps):.6g}, {max(ps):.6g}])."
        )
    return tuple(run.record(node) for node in found)
