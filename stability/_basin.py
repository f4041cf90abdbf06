r"""The paper's section 6.3 experiment: the region of convergence of the direct method
(descent with several steps) against that of the indirect method (costate shooting
with several damping factors), from the same random initial guesses."""

from __future__ import annotations

import dataclasses
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import flow
from flow import metrics as flow_metrics
from flow._indirect import (
    DENSE_CONDITIONS_MAX,
    DampedNewton,
    _costate_kernel,
    _make_control,
    _newton_conditions,
)

from ._common import check_shooting, jsonable, positive_float, positive_int


@dataclasses.dataclass(frozen=True)
class BasinRow:
    """One method and setting of a [`Basin`][stability.Basin] table.

    `method` is `"descent"`, `"costate shooting"` or `"Newton on (36)"`; `setting`
    the step $\\alpha$ or the damping $d$ (None for Newton on (36)); `converged`
    the number of starts that converged, `fraction` = converged / starts;
    `median_iterations` over the converged starts (None if none); `outcomes` the
    count of each status.
    """

    method: str
    setting: float | None
    converged: int
    starts: int
    fraction: float
    median_iterations: float | None
    outcomes: dict

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary."""
        return jsonable(dataclasses.asdict(self))


@dataclasses.dataclass(frozen=True)
class Basin:
    r"""The result of [`basin`][stability.basin]: the fraction of random initial
    guesses from which each method converges (paper section 6.3).

    **Fields:** `rows` (a tuple of [`BasinRow`][stability.BasinRow]), `problem`,
    `N`, `scheme`, `metric` (of the descent rows), `n_starts`, `seed`, `spread`,
    `lambda_starts` (`"implied"` or `"given"`), `tol`, `iterations`.
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
    iterations: int

    def fractions(self, method: str) -> dict[float | None, float]:
        """`{setting: fraction}` of one method."""
        return {r.setting: r.fraction for r in self.rows if r.method == method}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["rows"] = [r.to_dict() for r in self.rows]
        return jsonable(d)

    def summary(self) -> str:
        """A printable table."""
        lines = [
            f"Region of convergence, {self.problem} (N = {self.N}, {self.scheme}): "
            f"{self.n_starts} random starts (seed {self.seed}, spread {self.spread:g}; "
            f"costate guesses {self.lambda_starts})",
            f"{'method':18s} {'step/damping':>12s} {'converged':>10s} {'fraction':>9s} "
            f"{'median its':>11s}  outcomes",
        ]
        for r in self.rows:
            s = "-" if r.setting is None else f"{r.setting:.4g}"
            it = "-" if r.median_iterations is None else f"{r.median_iterations:.0f}"
            out = ", ".join(f"{k} {v}" for k, v in r.outcomes.items() if v)
            lines.append(
                f"{r.method:18s} {s:>12s} {r.converged:>5d}/{r.starts:<4d} {r.fraction:9.2f} "
                f"{it:>11s}  {out}"
            )
        lines.append(
            f"descent: metric {self.metric}, converged = max|dH/du| <= {self.tol:g} within "
            f"{self.iterations} iterations."
        )
        return "\n".join(lines)

    def __repr__(self) -> str:
        parts = "; ".join(
            f"{r.method} {'' if r.setting is None else f'{r.setting:.3g} '}{r.fraction:.2f}"
            for r in self.rows
        )
        return f"Basin({self.problem}, N={self.N}, {self.n_starts} starts: {parts})"


def _row(method, setting, converged, iterations, outcome_names):
    converged = np.asarray(converged, dtype=bool)
    its = np.asarray(iterations)[converged]
    names, counts = np.unique(np.asarray(outcome_names), return_counts=True)
    return BasinRow(
        method=method,
        setting=None if setting is None else float(setting),
        converged=int(converged.sum()),
        starts=int(converged.size),
        fraction=float(converged.mean()),
        median_iterations=float(np.median(its)) if its.size else None,
        outcomes={str(k): int(v) for k, v in zip(names, counts, strict=True)},
    )


@eqx.filter_jit
def _descent_batch(sh, starts, metric, alpha, iterations: int, tol):
    def one(U0):
        trace = flow.descend(
            sh, U0, metric, step=alpha, iterations=iterations, tol=tol, throw=False
        )
        return trace.result._value, trace.n_iterations

    return jax.vmap(one)(starts)


@eqx.filter_jit
def _shooting_batch(problem, control, solver, finder, lam0s, rtol, atol, ode_max_steps, steps):
    def one(lam0):
        _, _, it, code, _ = _costate_kernel(
            problem, control, solver, finder, lam0, rtol, atol, ode_max_steps, steps
        )
        return code, it

    return jax.vmap(one)(lam0s)


@eqx.filter_jit
def _conditions_batch(sh, Z0s, rtol, atol, max_steps, dense: bool):
    def one(Z0):
        _, _, it, code = _newton_conditions(sh, Z0, rtol, atol, max_steps, dense, True)
        return code, it

    return jax.vmap(one)(Z0s)


_DESCENT_NAMES = {
    int(np.asarray(getattr(flow.RESULTS, name)._value)): name
    for name in (
        "converged",
        "completed",
        "reached_tau1",
        "max_iterations",
        "max_steps",
        "diverged",
        "solver_failed",
    )
}
_SHOOTING_NAMES = ("converged", "max_steps", "diverged", "singular", "line_search_failed")


def basin(
    shooting: Any,
    *,
    steps: Any,
    dampings: Any = (1.0, 0.5),
    n_starts: Any = 16,
    seed: Any = 0,
    spread: Any = 1.0,
    center: Any = None,
    lambda_starts: Any = None,
    metric: Any = "identity",
    iterations: Any = 2000,
    tol: Any = 1e-6,
    shooting_max_steps: Any = 200,
    rtol: Any = 1e-9,
    atol: Any = 1e-11,
    ode_max_steps: Any = 1024,
    control_law: Any = None,
    conditions: bool = False,
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
      metric (`"identity"`, `"hamiltonian"`, ... or a metric instance), vmapped over
      the starts, converged when $\max_k|\partial_u H_k| \le$ `tol` within
      `iterations` steps. Linear stability needs $\alpha < \alpha_{max}$
      ([`euler_bound`][stability.euler_bound]); the effective step on the Hamiltonian
      flow is $\alpha h$ for the identity metric (paper (56)).
    - costate shooting: the damped Newton iteration
      $\lambda_0 \leftarrow \lambda_0 - d\,F'^{-1}F$ of
      [`costate_shooting`][flow.indirect.costate_shooting], vmapped, with at most
      `shooting_max_steps` iterations, ODE tolerances `rtol`, `atol` and
      `ode_max_steps` per ODE solve (a trajectory that blows up fails fast).
    - with `conditions=True`, also Newton with line search on the discrete
      conditions (36) ([`solve_conditions`][flow.indirect.solve_conditions]) from
      each $U_0^{(s)}$.

    **Returns:** a [`Basin`][stability.Basin] table (`summary()`, `to_dict()`).
    """
    sh = check_shooting(shooting)
    problem = sh.problem
    n_starts = positive_int(n_starts, "n_starts")
    seed = positive_int(seed, "seed", minimum=0)
    spread = positive_float(spread, "spread", allow_zero=True)
    tol = positive_float(tol, "tol")
    iterations = positive_int(iterations, "iterations")
    shooting_max_steps = positive_int(shooting_max_steps, "shooting_max_steps")
    rtol = positive_float(rtol, "rtol")
    atol = positive_float(atol, "atol")
    ode_max_steps = positive_int(ode_max_steps, "ode_max_steps")
    alphas = [positive_float(a, "steps") for a in np.atleast_1d(np.asarray(steps, dtype=float))]
    damps = [
        positive_float(d, "dampings") for d in np.atleast_1d(np.asarray(dampings, dtype=float))
    ]
    if isinstance(metric, str):
        metric = flow_metrics.metric_from_name(metric)
    if not isinstance(metric, flow_metrics.AbstractMetric):
        raise TypeError(f"`metric` must be a metric name or a flow.metrics metric; got {metric!r}.")
    if center is None:
        center_arr = np.zeros(sh.control_shape)
    else:
        center_arr = np.asarray(center, dtype=np.float64)
        if center_arr.shape != sh.control_shape:
            raise ValueError(
                f"`center` must have shape (N, m) = {sh.control_shape}; got {center_arr.shape}."
            )
    rng = np.random.default_rng(seed)
    starts = jnp.asarray(center_arr + spread * rng.standard_normal((n_starts,) + sh.control_shape))
    n = problem.state_dim
    if lambda_starts is None:
        lam0s = jax.vmap(lambda U: sh.costates(U)[0, :n])(starts)
        lam_kind = "implied"
    else:
        lam0s = np.asarray(lambda_starts, dtype=np.float64)
        if lam0s.shape != (n_starts, n):
            raise ValueError(
                f"`lambda_starts` must have shape (n_starts, n) = ({n_starts}, {n}); got "
                f"{lam0s.shape}."
            )
        lam0s = jnp.asarray(lam0s)
        lam_kind = "given"

    rows = []
    metric = metric.prepare(sh, starts[0])
    for alpha in alphas:
        codes, its = _descent_batch(
            sh, starts, metric, jnp.asarray(alpha), iterations, jnp.asarray(tol)
        )
        codes = np.asarray(codes)
        names = [_DESCENT_NAMES.get(int(c), "other") for c in codes]
        conv = codes == flow.RESULTS.converged._value
        rows.append(_row("descent", alpha, conv, its, names))

    if damps:
        control = _make_control(problem, control_law, lam0s[0], jnp.zeros(problem.control_dim))
        for d in damps:
            finder = DampedNewton(
                rtol=jnp.asarray(100 * rtol),
                atol=jnp.asarray(100 * atol),
                ftol=jnp.asarray(100 * atol),
                damping=jnp.asarray(d),
            )
            codes, its = _shooting_batch(
                problem,
                control,
                diffrax.Tsit5(),
                finder,
                lam0s,
                jnp.asarray(rtol),
                jnp.asarray(atol),
                ode_max_steps,
                shooting_max_steps,
            )
            codes = np.asarray(codes)
            rows.append(
                _row(
                    "costate shooting",
                    d,
                    codes == 0,
                    its,
                    [_SHOOTING_NAMES[int(c)] for c in codes],
                )
            )

    if conditions:
        Z0s = jax.vmap(lambda U: jnp.concatenate([sh.states(U)[1:], sh.costates(U), U], axis=1))(
            starts
        )
        dense = Z0s[0].size <= DENSE_CONDITIONS_MAX
        codes, its = _conditions_batch(
            sh, Z0s, jnp.asarray(1e-10), jnp.asarray(1e-12), jnp.asarray(50), bool(dense)
        )
        codes = np.asarray(codes)
        rows.append(
            _row("Newton on (36)", None, codes == 0, its, [_SHOOTING_NAMES[int(c)] for c in codes])
        )

    return Basin(
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
        iterations=iterations,
    )
