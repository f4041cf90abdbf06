r"""How the flow's spectrum and the forward-Euler bounds scale with the grid.

Under the identity metric the eigenvalues of $J = -\nabla^2 E^N$ are $O(h)$, so
$\alpha_{\max}$ grows like $N$; under the Hamiltonian metric $M = \mathrm{diag}(h_k)$
the spectrum of $J = -M^{-1}\nabla^2 E^N$ converges as $N \to \infty$ and so does
$\alpha_{\max}$ (DESIGN section 2; the paper's section 6.2, eq. (56))."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Float, Int

import flow
from flow import (
    AbstractRecord,
    OptimalControlProblem,
    Shooting,
    format_number,
)
from flow.metrics import as_metric
from flow.validation import positive_float, positive_int

from ._classify import classify
from ._equilibrium import equilibrium
from ._euler import euler_bound
from ._linearize import linearize
from ._spectrum import spectrum


class MeshStudy(AbstractRecord):
    r"""The spectrum ends and step bounds against $N$, from [`mesh_study`][
    stability.mesh_study]. Arrays have one entry per $N$ (NaN where a quantity does
    not exist, e.g. `alpha_max` at an unstable equilibrium).

    **Fields:** `N`, `h_min` ($\min_k h_k$), `stiff` and `slow` (the ends of the
    spectrum of $J$), `alpha_max`, `alpha_opt`, `rho_opt`, `iterations_opt` (at
    `alpha_opt`, to shrink the error by `reduction`), `gradient_norm` (of each
    equilibrium), `kind` (classification), `method` (spectrum method),
    `num_hvp`, `seconds` (wall time per $N$), `problem`, `metric`, `scheme`,
    `reduction`. `result` is always `completed`.
    """

    N: Int[np.ndarray, " r"]
    h_min: Float[np.ndarray, " r"]
    stiff: Float[np.ndarray, " r"]
    slow: Float[np.ndarray, " r"]
    alpha_max: Float[np.ndarray, " r"]
    alpha_opt: Float[np.ndarray, " r"]
    rho_opt: Float[np.ndarray, " r"]
    iterations_opt: Float[np.ndarray, " r"]
    gradient_norm: Float[np.ndarray, " r"]
    kind: tuple[str, ...]
    method: tuple[str, ...]
    num_hvp: Int[np.ndarray, " r"]
    seconds: Float[np.ndarray, " r"]
    problem: str
    metric: str
    scheme: str
    reduction: float

    def exponent(self, field: str = "alpha_max") -> float:
        r"""The least-squares slope of $\log|\text{field}|$ against $\log N$ (1 for
        linear growth, 0 for a mesh-independent quantity)."""
        y = np.abs(np.asarray(getattr(self, field), dtype=np.float64))
        ok = np.isfinite(y) & (y > 0)
        if ok.sum() < 2:
            return float("nan")
        return float(np.polyfit(np.log(self.N[ok]), np.log(y[ok]), 1)[0])

    def table(self) -> str:
        """A plain-text table, one row per N."""
        head = (
            f"{'N':>8} {'h_min':>10} {'stiff':>12} {'slow':>12} {'alpha_max':>11} "
            f"{'alpha_opt':>11} {'rho_opt':>10} {'iters':>9}  kind"
        )
        rows = [head]
        for i in range(self.N.shape[0]):
            it = self.iterations_opt[i]
            rows.append(
                f"{self.N[i]:>8d} {self.h_min[i]:>10.3e} {self.stiff[i]:>12.5g} "
                f"{self.slow[i]:>12.5g} {self.alpha_max[i]:>11.5g} {self.alpha_opt[i]:>11.5g} "
                f"{self.rho_opt[i]:>10.6f} {format_number(it, '.0f'):>9}  "
                f"{self.kind[i]}"
            )
        return "\n".join(rows)

    def _record(self, include_arrays: bool) -> dict[str, Any]:
        d = self._fields()
        d["alpha_max_exponent"] = self.exponent("alpha_max")
        return d

    def _summary(self) -> str:
        return (
            f"{self.problem}, metric={self.metric}, scheme={self.scheme}; alpha_max ~ "
            f"N^{self.exponent('alpha_max'):.3f}\n{self.table()}"
        )


def _shooting_for(problem: Any, N: int, scheme: Any) -> Shooting:
    if isinstance(problem, OptimalControlProblem):
        return flow.shoot(problem, N, scheme)
    if isinstance(problem, str):
        return flow.shoot(flow.problems.get(problem), N, scheme)
    out = problem(N)
    if isinstance(out, Shooting):
        if out.N != N:
            raise ValueError(f"`problem`({N}) returned a Shooting with N = {out.N}.")
        return out
    if isinstance(out, OptimalControlProblem):
        return flow.shoot(out, N, scheme)
    raise TypeError(
        f"`problem`({N}) must return an OptimalControlProblem or a flow.Shooting; got "
        f"{type(out).__name__}."
    )


def _transfer(U: np.ndarray, old_grid: np.ndarray, new_grid: np.ndarray) -> np.ndarray:
    """Piecewise-constant controls moved to a new grid (value at each new midpoint)."""
    mid = 0.5 * (new_grid[1:] + new_grid[:-1])
    idx = np.clip(np.searchsorted(old_grid, mid, side="right") - 1, 0, U.shape[0] - 1)
    return U[idx]


def mesh_study(
    problem: OptimalControlProblem | str | Callable[[int], OptimalControlProblem | Shooting],
    Ns: Sequence[int],
    *,
    metric: flow.metrics.AbstractMetric | str | Callable[[Shooting], Any] = "hamiltonian",
    scheme: flow.AbstractScheme | None = None,
    start: str | Callable[[Shooting], Any] = "continuation",
    tol: float = 1e-10,
    k: int = 6,
    reduction: float = 1e-6,
    spectrum_options: dict[str, Any] | None = None,
    equilibrium_options: dict[str, Any] | None = None,
) -> MeshStudy:
    r"""For each $N$: the equilibrium, the ends of the spectrum of
    $J = -M^{-1}\nabla^2 E^N$, $\alpha_{\max}$, $\alpha_{\text{opt}}$, the predicted
    rate and iteration count ([`euler_bound`][stability.euler_bound]), so that the
    scaling with $N$ is visible: under the identity metric $\alpha_{\max} \propto N$
    (the spectrum is $O(h)$), under the Hamiltonian metric it converges (eq. (56)).

    **Arguments:**

    - `problem`: an `OptimalControlProblem`, a built-in name, or a callable
      `factory(N)` returning an `OptimalControlProblem` or a `flow.Shooting`. (JAX
      compiles the kernels once per N and problem object: pass the same object to
      several studies to reuse them.)
    - `Ns`: the grid sizes (increasing).
    - `metric`: a metric, its name, or a callable `metric(shooting)` (for metrics
      that depend on N); default `"hamiltonian"`.
    - `scheme`: the one-step scheme (default Euler).
    - `start`: `"continuation"` (zero at the first N, then the previous equilibrium
      moved to the new grid), `"zeros"`, or a callable `start(shooting) -> U0`.
    - `tol`: the equilibrium's tolerance (on its default `stop_on`, the Hamiltonian
      residual; `equilibrium_options` for more).
    - `k`, `spectrum_options`: passed to [`spectrum`][stability.spectrum]; the
      default method is Lanczos for symmetric kinds at every N (only the ends are
      needed, and it is much cheaper than a dense Hessian), "auto" otherwise.
    - `reduction`: the error reduction the iteration counts refer to.

    **Returns:** a [`MeshStudy`][stability.MeshStudy].
    """
    Ns_arr = np.asarray(Ns)
    if Ns_arr.ndim != 1 or Ns_arr.shape[0] < 1 or Ns_arr.dtype.kind not in "iu":
        raise ValueError(f"`Ns` must be a 1-D sequence of integers >= 1; got {Ns!r}.")
    Ns_list = [positive_int(int(n), "Ns") for n in Ns_arr]
    if isinstance(problem, str):
        problem = flow.problems.get(problem)  # once: its kernels then compile once per N
    if start not in ("continuation", "zeros") and not callable(start):
        raise ValueError(f"`start` must be 'continuation', 'zeros' or a callable; got {start!r}.")
    tol = positive_float(tol, "tol")
    reduction = positive_float(reduction, "reduction")
    k = positive_int(k, "k")
    metric_of: Callable[[Shooting], Any]
    if callable(metric) and not isinstance(metric, flow.metrics.AbstractMetric):
        metric_of = metric
    else:
        fixed_metric = as_metric(metric)
        metric_of = lambda sh: fixed_metric  # noqa: E731
    sopts = dict(spectrum_options or {})
    sopts.setdefault("k", k)
    eopts = dict(equilibrium_options or {})
    eopts.setdefault("tol", tol)

    rows: dict[str, list] = {
        key: []
        for key in (
            "h_min stiff slow alpha_max alpha_opt rho_opt iterations_opt gradient_norm "
            "kind method num_hvp seconds"
        ).split()
    }
    previous: tuple[np.ndarray, np.ndarray] | None = None
    names = ("", "", "")
    for N in Ns_list:
        t0 = time.perf_counter()
        sh = _shooting_for(problem, N, scheme)
        if callable(start) and start not in ("continuation", "zeros"):
            U0 = start(sh)
        elif start == "continuation" and previous is not None:
            U0 = jnp.asarray(_transfer(previous[0], previous[1], np.asarray(sh.grid)))
        else:
            U0 = sh.zeros()
        eq = equilibrium(sh, U0, **eopts)
        previous = (np.asarray(eq.U), np.asarray(sh.grid))
        m = metric_of(sh)
        lin = linearize(sh, eq.U, metric=m)
        spec = spectrum(lin, **{"method": "lanczos" if lin.symmetric else "auto", **sopts})
        cls = classify(spec)
        eb = euler_bound(spec, reduction=reduction)
        names = (sh.problem.name, lin.metric.name, sh.scheme.name)

        def val(x):
            return float("nan") if x is None else float(x)

        rows["h_min"].append(float(jnp.min(sh.steps)))
        rows["stiff"].append(val(spec.stiff))
        rows["slow"].append(val(spec.slow))
        rows["alpha_max"].append(val(eb.alpha_max))
        rows["alpha_opt"].append(val(eb.alpha_opt))
        rows["rho_opt"].append(val(eb.rho_opt))
        rows["iterations_opt"].append(val(eb.iterations_opt))
        rows["gradient_norm"].append(eq.gradient_norm)
        rows["kind"].append(cls.kind)
        rows["method"].append(spec.method)
        rows["num_hvp"].append(spec.num_hvp)
        rows["seconds"].append(time.perf_counter() - t0)

    def arr(key, dtype=np.float64):
        return np.asarray(rows[key], dtype=dtype)

    return MeshStudy(
        N=np.asarray(Ns_list, dtype=np.int64),
        h_min=arr("h_min"),
        stiff=arr("stiff"),
        slow=arr("slow"),
        alpha_max=arr("alpha_max"),
        alpha_opt=arr("alpha_opt"),
        rho_opt=arr("rho_opt"),
        iterations_opt=arr("iterations_opt"),
        gradient_norm=arr("gradient_norm"),
        kind=tuple(rows["kind"]),
        method=tuple(rows["method"]),
        num_hvp=arr("num_hvp", np.int64),
        seconds=arr("seconds"),
        problem=names[0],
        metric=names[1],
        scheme=names[2],
        reduction=reduction,
    )
