r"""The paper's section 6.3 experiment: the region of convergence of the direct method
(descent with several steps) against that of the indirect method (costate shooting
with several damping factors), from the same random initial guesses."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

import flow
from flow import RESULTS, AbstractResult, RealArrayLike, metrics, validation
from flow.validation import positive_float, positive_int


class BasinRow(AbstractResult):
    """One method and setting of a [`Basin`][stability.Basin] table.

    `method` is `"descent"`, `"costate shooting"` or `"Newton on (36)"`; `setting`
    the step $\\alpha$ or the damping $d$ (None for Newton on (36)); `converged`
    the number of starts that converged, `fraction` = converged / starts;
    `median_steps` over the converged starts (None if none); `outcomes` the
    count of each status.
    """

    method: str
    setting: float | None
    converged: int
    starts: int
    fraction: float
    median_steps: float | None
    outcomes: dict

    @property
    def result(self) -> RESULTS:
        """`converged` when some start converged, else `completed`."""
        return RESULTS.converged if self.converged else RESULTS.completed

    def _record(self, include_arrays: bool) -> dict[str, Any]:
        return self._fields()

    def _summary(self) -> str:
        setting = "" if self.setting is None else f" {self.setting:.4g}"
        return f"{self.method}{setting}: {self.converged}/{self.starts} converged"


class Basin(AbstractResult):
    r"""The result of [`basin`][stability.basin]: the fraction of random initial
    guesses from which each method converges (paper section 6.3).

    **Fields:** `rows` (a tuple of [`BasinRow`][stability.BasinRow]), `problem`,
    `N`, `scheme`, `metric` (of the descent rows), `n_starts`, `seed`, `spread`,
    `lambda_starts` (`"implied"` or `"given"`), `tol`, `stop_on`, `max_steps`;
    `starts`: the initial controls $U_0^{(s)}$ every method started from, shape
    `(n_starts, N, m)` (inside the box with control bounds; in `to_dict` only with
    `include_arrays=True`). `result` is `converged` when any start of any method
    converged, else `completed`.
    """

    rows: tuple[BasinRow, ...]
    problem: str
    N: int
    scheme: str
    metric: str
    n_starts: int
    seed: int
    spread: float
    lambda_starts: str
    tol: float
    stop_on: str
    max_steps: int
    starts: Float[Array, "S N m"]
    _arrays: ClassVar[tuple[str, ...]] = ("starts",)

    @property
    def result(self) -> RESULTS:
        """`converged` when some start of some method converged, else `completed`."""
        return RESULTS.converged if any(r.converged for r in self.rows) else RESULTS.completed

    def fractions(self, method: str) -> dict[float | None, float]:
        """`{setting: fraction}` of one method."""
        return {r.setting: r.fraction for r in self.rows if r.method == method}

    def _record(self, include_arrays: bool) -> dict[str, Any]:
        d = self._fields()
        d["rows"] = [r.to_dict() for r in self.rows]
        return d

    def summary(self) -> str:
        """A printable table."""
        lines = [
            f"Region of convergence, {self.problem} (N = {self.N}, {self.scheme}): "
            f"{self.n_starts} random starts (seed {self.seed}, spread {self.spread:g}; "
            f"costate guesses {self.lambda_starts})",
            f"{'method':18s} {'step/damping':>12s} {'converged':>10s} {'fraction':>9s} "
            f"{'median steps':>12s}  outcomes",
        ]
        for r in self.rows:
            s = "-" if r.setting is None else f"{r.setting:.4g}"
            it = "-" if r.median_steps is None else f"{r.median_steps:.0f}"
            out = ", ".join(f"{k} {v}" for k, v in r.outcomes.items() if v)
            lines.append(
                f"{r.method:18s} {s:>12s} {r.converged:>5d}/{r.starts:<4d} {r.fraction:9.2f} "
                f"{it:>12s}  {out}"
            )
        lines.append(
            f"descent: metric {self.metric}, converged = {self.stop_on} residual <= "
            f"{self.tol:g} within {self.max_steps} steps."
        )
        return "\n".join(lines)

    def _summary(self) -> str:
        parts = "; ".join(
            f"{r.method} {'' if r.setting is None else f'{r.setting:.3g} '}{r.fraction:.2f}"
            for r in self.rows
        )
        return f"{self.problem}, N={self.N}, {self.n_starts} starts: {parts}"


def _row(method, setting, names, num_steps):
    names = tuple(names)
    converged = np.array([s == "converged" for s in names], dtype=bool)
    its = np.asarray(num_steps)[converged]
    kinds, counts = np.unique(np.asarray(names), return_counts=True)
    return BasinRow(
        method=method,
        setting=None if setting is None else float(setting),
        converged=int(converged.sum()),
        starts=int(converged.size),
        fraction=float(converged.mean()),
        median_steps=float(np.median(its)) if its.size else None,
        outcomes={str(k): int(v) for k, v in zip(kinds, counts, strict=True)},
    )


@eqx.filter_jit
def _descent_batch(sh, starts, metric, alpha, max_steps: int, tol, stop_on: str):
    def one(U0):
        trace = flow.descend(
            sh,
            U0,
            metric=metric,
            step=alpha,
            max_steps=max_steps,
            tol=tol,
            stop_on=stop_on,
            throw=False,
        )
        return trace.result, trace.num_steps

    return jax.vmap(one)(starts)


def _continuous_problem(sh: flow.Shooting, shoot_costates: bool) -> flow.OptimalControlProblem:
    """The problem costate shooting solves: `sh.problem` with the box of `sh.bounds`
    (the same on every interval; bounds given to `flow.shoot` replace the problem's)."""
    problem = sh.problem
    if sh.bounds is None or not shoot_costates:
        return problem
    lo, hi = (np.asarray(b) for b in sh.bounds)
    if not (np.all(lo == lo[0]) and np.all(hi == hi[0])):
        raise ValueError(
            "`shooting` has control bounds that vary per interval; costate shooting (the "
            "continuous method) takes the same box on every interval. Pass dampings=() "
            "to leave costate shooting out."
        )
    box = problem.control_bounds
    if (
        box is not None
        and np.array_equal(np.asarray(box[0]), lo[0])
        and np.array_equal(np.asarray(box[1]), hi[0])
    ):
        return problem
    return eqx.tree_at(
        lambda p: p.control_bounds,
        problem,
        (jnp.asarray(lo[0]), jnp.asarray(hi[0])),
        is_leaf=lambda x: x is None,
    )


class _Outcomes(AbstractResult):
    """The statuses of a batch of descent runs (a vmapped `RESULTS` item)."""

    result: RESULTS


def basin(
    shooting: flow.Shooting,
    *,
    steps: ArrayLike | Sequence[float],
    dampings: ArrayLike | Sequence[float] = (1.0, 0.5),
    n_starts: int = 16,
    seed: int = 0,
    spread: float = 1.0,
    center: RealArrayLike | None = None,
    lambda_starts: RealArrayLike | None = None,
    metric: metrics.AbstractMetric | str = "hamiltonian",
    tol: float = 1e-6,
    stop_on: str = "hamiltonian",
    max_steps: int = 2000,
    shooting_max_steps: int = 200,
    rtol: float = 1e-9,
    atol: float = 1e-11,
    ode_max_steps: int = 1024,
    control_law: Callable | None = None,
    conditions: bool = False,
    throw: bool = True,
) -> Basin:
    r"""Section 6.3 of the paper: from many random initial guesses, the fraction that
    converges for the direct method (descent, several steps $\alpha$) and for the
    indirect method (costate shooting, several damping factors $d$).

    Starts: $U_0^{(s)} = $ `center` $+$ `spread` $\cdot\,\xi^{(s)}$, $\xi$ standard
    normal of shape `(N, m)` (numpy, `seed`); `center` defaults to the zero control.
    The costate guesses are, by default, the ones the same random controls imply:
    $\lambda_0^{(s)}$ = the discrete costate $\lambda_0$ of $U_0^{(s)}$ (on the user's
    state), so both methods start from the same information; or pass
    `lambda_starts` of shape `(n_starts, n)`.

    - descent: [`flow.descend`][flow.descend] with the constant step $\alpha$ and the
      metric (`"hamiltonian"` by default, `"identity"` for the paper's gradient
      method, or a metric instance), vmapped over the starts, converged when the
      `stop_on` residual is $\le$ `tol` within `max_steps` steps. Linear stability
      needs $\alpha < \alpha_{max}$ ([`euler_bound`][stability.euler_bound]); the
      effective step on the Hamiltonian flow is $\alpha h$ for the identity metric
      (paper (56)).
    - costate shooting: the damped Newton iteration
      $\lambda_0 \leftarrow \lambda_0 - d\,F'^{-1}F$ of
      [`costate_shooting`][flow.indirect.costate_shooting] on the batch of guesses,
      with at most `shooting_max_steps` iterations, ODE tolerances `rtol`, `atol`
      and `ode_max_steps` per ODE solve (a trajectory that blows up fails fast).
    - with `conditions=True`, also Newton with line search on the discrete
      conditions (36) from each $U_0^{(s)}$ (the batch form of
      [`solve_conditions`][flow.indirect.solve_conditions]).

    With control bounds (`shooting.bounds`, see [`flow.bounds`][flow.bounds]) every
    method solves the bounded problem:

    - the starts are projected onto the box, $U_0^{(s)} = P_B($`center` $+$ `spread`
      $\cdot\,\xi^{(s)})$ (the same normal draws as without bounds, then clipped:
      components drawn outside sit on their bound), and the implied costate guesses
      are those of the projected controls;
    - descent is [`flow.descend`][flow.descend]'s projected descent (for a diagonal
      metric $U \leftarrow P_B(U - \alpha M^{-1}\nabla E^N(U))$), converged on the
      projected residual; a metric that `descend` does not project is refused by it,
      with a `ValueError` naming `metric`;
    - costate shooting solves the minimum principle on the box,
      $u = \arg\min_{\ell \le u \le \upsilon} H$, for the box of `shooting.bounds`,
      which must then be the same on every interval (else `dampings=()` leaves it out);
    - Newton on (36) is semismooth Newton on the bounded conditions
      $u_k - P_B(u_k - \partial_u H_k) = 0$.

    `throw`: raise [`flow.ConvergenceError`][flow.ConvergenceError] (carrying the
    table) when no start converged by any method, which usually means an
    experiment set up wrong; failures of individual starts are the table's data.

    **Returns:** a [`Basin`][stability.Basin] table (`summary()`, `to_dict()`), with
    the starts it used in `starts`.

    **Raises:** `ValueError`/`TypeError` naming the argument: a `metric` that
    projected descent does not handle, with control bounds; a `shooting` whose bounds
    vary per interval when costate shooting is asked for (`dampings` not empty); a
    `center` or `lambda_starts` of the wrong shape.
    """
    sh = validation.instance(shooting, "shooting", flow.Shooting, "from flow.shoot")
    n_starts = positive_int(n_starts, "n_starts")
    seed = positive_int(seed, "seed", minimum=0)
    spread = positive_float(spread, "spread", allow_zero=True)
    tol = positive_float(tol, "tol")
    validation.stop_on(stop_on)
    max_steps = positive_int(max_steps, "max_steps")
    shooting_max_steps = positive_int(shooting_max_steps, "shooting_max_steps")
    rtol = positive_float(rtol, "rtol")
    atol = positive_float(atol, "atol")
    ode_max_steps = positive_int(ode_max_steps, "ode_max_steps")
    alphas = [positive_float(a, "steps") for a in np.atleast_1d(np.asarray(steps, dtype=float))]
    damps = [
        positive_float(d, "dampings") for d in np.atleast_1d(np.asarray(dampings, dtype=float))
    ]
    metric = metrics.as_metric(metric)
    problem = _continuous_problem(sh, bool(damps))
    if center is None:
        center_arr = np.zeros(sh.control_shape)
    else:
        center_arr = np.asarray(
            validation.real_array(center, "center", sh.control_shape, "controls (N, m)")
        )
    rng = np.random.default_rng(seed)
    starts = center_arr + spread * rng.standard_normal((n_starts,) + sh.control_shape)
    if sh.bounds is not None:
        starts = np.clip(starts, *(np.asarray(b) for b in sh.bounds))
    starts = jnp.asarray(starts)
    n = problem.state_dim
    if lambda_starts is None:
        lam0s = jax.vmap(lambda U: sh.costates(U)[0, :n])(starts)
        lam_kind = "implied"
    else:
        lam0s = validation.real_array(
            lambda_starts, "lambda_starts", (n_starts, n), "(n_starts, n)"
        )
        lam_kind = "given"

    rows = []
    metric = metric.prepare(sh, starts[0])
    for alpha in alphas:
        result, num = _descent_batch(
            sh, starts, metric, jnp.asarray(alpha), max_steps, jnp.asarray(tol), stop_on
        )
        rows.append(_row("descent", alpha, _Outcomes(result).statuses, num))
    for d in damps:
        traj = flow.indirect.costate_shooting(
            problem,
            lam0s,
            rtol=rtol,
            atol=atol,
            damping=d,
            max_steps=shooting_max_steps,
            ode_max_steps=ode_max_steps,
            control_law=control_law,
            throw=False,
        )
        rows.append(_row("costate shooting", d, traj.statuses, traj.num_steps))
    if conditions:
        cond = flow.indirect.solve_conditions(sh, starts, tol=1e-10, throw=False)
        rows.append(_row("Newton on (36)", None, cond.statuses, cond.num_steps))

    table = Basin(
        rows=tuple(rows),
        problem=problem.name,
        N=sh.N,
        scheme=sh.scheme.name,
        metric=metric.name,
        n_starts=n_starts,
        seed=seed,
        spread=spread,
        lambda_starts=lam_kind,
        tol=tol,
        stop_on=stop_on,
        max_steps=max_steps,
        starts=starts,
    )
    if throw and table.status != "converged":
        raise flow.ConvergenceError(
            "basin: no start converged, by any method: the steps or dampings may be "
            "unstable, or max_steps too small. Pass throw=False to get the table.",
            table,
        )
    return table
