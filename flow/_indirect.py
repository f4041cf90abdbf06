r"""The indirect side: the discrete necessary conditions (36) solved directly, classic
costate shooting on the continuous conditions (14), the continuous
(optimize-then-discretize) adjoint, and a side-by-side report of the costates.

Indexing follows DESIGN.md section 2 (the paper's (23), (25)): on the grid
$t_0 < \dots < t_N$ with steps $h_k$,

    x_{k+1}      = Phi(x_k, u_k, h_k)                                  k = 0..N-1
    lambda_{N-1} = grad E(x_N)                                         (25)
    lambda_{k-1} = (dPhi/dx (x_k, u_k, h_k))^T lambda_k                k = N-1..1  (23)
    0            = h_k^{-1} (dPhi/du (x_k, u_k, h_k))^T lambda_k       k = 0..N-1  (24)

`lambda_k = dE^N/dx_{k+1}` is the sensitivity to the state at $t_{k+1}$ and takes the
transversality value of $\lambda(t_N)$ at $k = N-1$; it is a first-order (Euler)
approximation of the continuous costate at $t_{k+1}$, and, since $\lambda$ changes
by $O(h)$ over one step, equally of $\lambda(t_k)$: which alignment is closer
depends on the problem (measured at N = 25..800: $t_{k+1}$ about 3 times closer on
`scalar_regularized`, $t_k$ about 1.6 times closer on the built-in LQ problem; both
errors fall as $h^1$). States and costates have the *augmented* dimension (a running
cost is one extra state whose costate is 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx
import scipy.sparse
import scipy.sparse.linalg
from jaxtyping import Array, Float

from ._problem import OptimalControlProblem
from ._shooting import Shooting


#: `solve_conditions` uses a dense LU of the Jacobian of (36) when it has at most
#: this many unknowns N(2n+m), and a sparse LU (scipy SuperLU) above.
DENSE_CONDITIONS_MAX = 1024

_LINEAR_SOLVERS = ("auto", "dense", "sparse")


class INDIRECT_RESULTS(eqx.Enumeration):
    """Outcome of [`solve_conditions`][] and [`costate_shooting`][] (the conventions
    of [`flow.RESULTS`][flow.RESULTS]: `RESULTS[item]` is the message)."""

    converged = "converged: the Newton step fell below atol + rtol |z|"
    max_steps = "stopped: max_steps Newton iterations without reaching the tolerance"
    diverged = "diverged: a non-finite residual appeared (the iterates or the ODE blew up)"
    singular = "failed: the Newton system is singular (or its solution is not finite)"
    line_search_failed = (
        "failed: the line search found no decrease of the residual norm (a local "
        "minimum of |residual| that is not a root, or a poor guess)"
    )


def _is_success(result: INDIRECT_RESULTS) -> bool:
    return bool(result == INDIRECT_RESULTS.converged)


def _jsonable_float(x: Any) -> float | None:
    v = float(np.asarray(x))
    return v if math.isfinite(v) else None


def _tolerance(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"`{name}` must be a positive real number; got {value!r}.")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be finite and positive; got {value}.")
    return value


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"`{name}` must be an integer >= 1; got {value!r}.")
    if value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1; got {value}.")
    return int(value)


def _check_shooting(shooting: Any) -> Shooting:
    if not isinstance(shooting, Shooting):
        raise TypeError(
            f"`shooting` must be a flow.Shooting (build one with flow.shoot(problem, N)); "
            f"got {type(shooting).__name__}."
        )
    return shooting


def _as_array(value: Any, name: str, shape: tuple[int, ...], what: str) -> Array:
    """`value` as a finite float64 array of exactly `shape`, or a clear error."""
    arr = value if hasattr(value, "shape") and hasattr(value, "dtype") else np.asarray(value)
    if np.dtype(arr.dtype).kind not in "fiu":
        raise TypeError(f"`{name}` must be a real array ({what}); got dtype {arr.dtype}.")
    if tuple(arr.shape) != shape:
        raise ValueError(f"`{name}` must have shape {shape} ({what}); got {tuple(arr.shape)}.")
    arr = jnp.asarray(arr, dtype=jnp.float64)
    if not bool(jnp.all(jnp.isfinite(arr))):
        raise ValueError(f"`{name}` must be finite.")
    return arr


# ===========================================================================
# 1. The discrete necessary conditions (36), solved by Newton.


class ConditionsSolution(eqx.Module):
    r"""A solution of the discrete necessary conditions (36), from [`solve_conditions`][].

    **Fields:**

    - `states`: $x_0, \dots, x_N$, shape `(N+1, n)` ($x_0$ is the fixed initial state);
    - `costates`: $\lambda_0, \dots, \lambda_{N-1}$, shape `(N, n)`;
    - `controls`: $u_0, \dots, u_{N-1}$, shape `(N, m)`;
    - `state_residual`: $\max_k \|x_{k+1} - \Phi(x_k, u_k, h_k)\|_\infty$;
    - `costate_residual`: the largest violation of (23) and (25);
    - `control_residual`: $\max_k \|h_k^{-1}\partial_u\Phi^T\lambda_k\|_\infty$, the
      Hamiltonian residual $\max_k|\partial_u H_k|$ for Euler (eq. (24));
    - `iterations`: Newton iterations; `result`: an [`INDIRECT_RESULTS`][] item;
    - `linear_solver`: `"dense"` or `"sparse"`; `shooting`: the discretization.
    """

    states: Float[Array, "Np1 n"]
    costates: Float[Array, "N n"]
    controls: Float[Array, "N m"]
    state_residual: float
    costate_residual: float
    control_residual: float
    iterations: int
    result: INDIRECT_RESULTS
    linear_solver: str
    shooting: Shooting

    @property
    def message(self) -> str:
        """The human-readable status."""
        return INDIRECT_RESULTS[self.result]

    @property
    def success(self) -> bool:
        """True when Newton converged."""
        return _is_success(self.result)

    def to_dict(self, *, include_arrays: bool = False) -> dict[str, Any]:
        """A JSON-safe dictionary; the arrays only with `include_arrays=True`."""
        d: dict[str, Any] = dict(
            problem=self.shooting.problem.name,
            scheme=self.shooting.scheme.name,
            N=self.shooting.N,
            status=self.message,
            success=self.success,
            iterations=self.iterations,
            linear_solver=self.linear_solver,
            state_residual=_jsonable_float(self.state_residual),
            costate_residual=_jsonable_float(self.costate_residual),
            control_residual=_jsonable_float(self.control_residual),
        )
        if include_arrays:
            for f in ("states", "costates", "controls"):
                d[f] = np.asarray(getattr(self, f)).tolist()
        return d

    def __repr__(self) -> str:
        return (
            f"ConditionsSolution({self.shooting.problem.name}, N={self.shooting.N}: "
            f"{self.message.split(':')[0]} after {self.iterations} Newton iterations, "
            f"residuals x {self.state_residual:.1e}, lambda {self.costate_residual:.1e}, "
            f"dH/du {self.control_residual:.1e})"
        )


def _stage_residual(sh: Shooting, x_prev, z, z_next, h, h_next, last):
    """The three residual blocks of stage k, unknowns z_k = (x_{k+1}, lambda_k, u_k):

    r_x = x_{k+1} - Phi(x_k, u_k, h_k)
    r_l = lambda_k - (dPhi/dx(x_{k+1}, u_{k+1}, h_{k+1}))^T lambda_{k+1}   (k < N-1)
        = lambda_{N-1} - grad E(x_N)                                      (k = N-1)
    r_u = h_k^{-1} (dPhi/du(x_k, u_k, h_k))^T lambda_k
    """
    n = sh.state_dim
    problem, scheme = sh.problem, sh.scheme
    x, lam, u = z[:n], z[n : 2 * n], z[2 * n :]
    lam_next, u_next = z_next[n : 2 * n], z_next[2 * n :]
    f = problem.augmented_dynamics

    phi, vjp = jax.vjp(lambda x_, u_: scheme.step(f, x_, u_, h), x_prev, u)
    _, phi_u_t_lam = vjp(lam)
    _, vjp_next = jax.vjp(lambda x_: scheme.step(f, x_, u_next, h_next), x)
    (adjoint,) = vjp_next(lam_next)
    target = jnp.where(last, jax.grad(problem.augmented_endpoint_cost)(x), adjoint)
    return jnp.concatenate([x - phi, lam - target, phi_u_t_lam / h])


def _stage_inputs(sh: Shooting, Z: Array):
    N, s = Z.shape
    n = sh.state_dim
    x_prev = jnp.concatenate([sh.problem.augmented_x0()[None], Z[:-1, :n]], axis=0)
    z_next = jnp.concatenate([Z[1:], jnp.zeros((1, s), Z.dtype)], axis=0)
    h = sh.steps
    h_next = jnp.concatenate([h[1:], h[-1:]])
    last = jnp.arange(N) == N - 1
    return x_prev, Z, z_next, h, h_next, last


def _residual(sh: Shooting, Z: Array) -> Array:
    """The residual of (36), shape (N, 2n+m), rows (r_x, r_lambda, r_u) per stage."""
    stage = lambda *a: _stage_residual(sh, *a)  # noqa: E731
    return jax.vmap(stage)(*_stage_inputs(sh, Z))


def _jacobian_blocks(sh: Shooting, Z: Array):
    """The block-tridiagonal Jacobian of `_residual`: per stage k the blocks
    dR_k/dx_k (s, n), dR_k/dz_k (s, s) and dR_k/dz_{k+1} (s, s)."""
    stage = lambda *a: _stage_residual(sh, *a)  # noqa: E731
    jac = jax.jacfwd(stage, argnums=(0, 1, 2))
    return jax.vmap(jac)(*_stage_inputs(sh, Z))


def _dense_solve(blocks, R: Array) -> Array:
    Lb, Db, Ub = blocks
    N, s = R.shape
    n = Lb.shape[2]
    k = jnp.arange(N)
    J = jnp.zeros((N, s, N, s), R.dtype)
    J = J.at[k, :, k, :].set(Db)
    J = J.at[k[:-1], :, k[1:], :].set(Ub[:-1])
    J = J.at[k[1:], :, k[:-1], :n].set(Lb[1:])
    return jnp.linalg.solve(J.reshape(N * s, N * s), R.reshape(-1)).reshape(N, s)


def _sparse_pattern(N: int, s: int, n: int):
    """Row and column indices of the nonzero blocks, in the order of
    (D blocks, U blocks k < N-1, L blocks k > 0)."""
    i = np.arange(s)
    k = np.arange(N)
    rd = (k[:, None, None] * s + i[None, :, None]) + 0 * i[None, None, :]
    cd = (k[:, None, None] * s + i[None, None, :]) + 0 * i[None, :, None]
    ku = k[:-1]
    ru = (ku[:, None, None] * s + i[None, :, None]) + 0 * i[None, None, :]
    cu = ((ku[:, None, None] + 1) * s + i[None, None, :]) + 0 * i[None, :, None]
    kl = k[1:]
    j = np.arange(n)
    rl = (kl[:, None, None] * s + i[None, :, None]) + 0 * j[None, None, :]
    cl = ((kl[:, None, None] - 1) * s + j[None, None, :]) + 0 * i[None, :, None]
    rows = np.concatenate([rd.ravel(), ru.ravel(), rl.ravel()])
    cols = np.concatenate([cd.ravel(), cu.ravel(), cl.ravel()])
    return rows, cols


def _host_sparse_solve(Lb, Db, Ub, R):
    """Solve the block-tridiagonal Newton system with scipy's sparse LU (SuperLU,
    with partial pivoting); NaN when it is singular."""
    Lb, Db, Ub, R = (np.asarray(a) for a in (Lb, Db, Ub, R))
    N, s = R.shape
    n = Lb.shape[2]
    rows, cols = _sparse_pattern(N, s, n)
    data = np.concatenate([Db.ravel(), Ub[:-1].ravel(), Lb[1:].ravel()])
    A = scipy.sparse.csc_matrix((data, (rows, cols)), shape=(N * s, N * s))
    try:
        lu = scipy.sparse.linalg.splu(A)
        x = lu.solve(R.reshape(-1))
    except RuntimeError:  # "Factor is exactly singular"
        x = np.full(N * s, np.nan)
    return x.reshape(N, s).astype(np.float64)


def _sparse_solve(blocks, R: Array) -> Array:
    Lb, Db, Ub = blocks
    out = jax.ShapeDtypeStruct(R.shape, R.dtype)
    return jax.pure_callback(_host_sparse_solve, out, Lb, Db, Ub, R, vmap_method="sequential")


@eqx.filter_jit
def _newton_conditions(sh: Shooting, Z0, rtol, atol, max_steps, dense: bool, line_search: bool):
    """Newton's method on the residual of (36), with a backtracking line search on
    |R|_2^2 (Armijo, c = 1e-4, at most 30 halvings)."""
    solve = _dense_solve if dense else _sparse_solve

    def merit(R):
        return jnp.sum(R * R)

    R0 = _residual(sh, Z0)
    # codes: -1 running, then the INDIRECT_RESULTS items by index below
    init = dict(Z=Z0, R=R0, it=jnp.array(0), code=jnp.array(-1))
    C_CONV, C_MAX, C_DIV, C_SING, C_LS = 0, 1, 2, 3, 4

    def cond(c):
        return (c["code"] < 0) & (c["it"] < max_steps)

    def body(c):
        Z, R = c["Z"], c["R"]
        delta = solve(_jacobian_blocks(sh, Z), R)
        finite_delta = jnp.all(jnp.isfinite(delta))
        delta = jnp.where(finite_delta, delta, 0.0)
        small = jnp.max(jnp.abs(delta) / (atol + rtol * jnp.abs(Z))) <= 1.0
        phi0 = merit(R)

        def ls_cond(s):
            t, _, ok, j = s
            return (~ok) & (j < 30)

        def ls_body(s):
            t, _, _, j = s
            t = jnp.where(j == 0, 1.0, 0.5 * t)
            Rt = _residual(sh, Z - t * delta)
            ok = jnp.isfinite(merit(Rt)) & (merit(Rt) <= (1.0 - 2e-4 * t) * phi0)
            return t, Rt, ok, j + 1

        if line_search:
            t, Rt, ok, _ = jax.lax.while_loop(
                ls_cond, ls_body, (jnp.array(1.0), R, jnp.array(False), jnp.array(0))
            )
        else:
            t = jnp.array(1.0)
            Rt = _residual(sh, Z - delta)
            ok = jnp.all(jnp.isfinite(Rt))
        # A converged (small) full step is always taken: near the root |R| is at the
        # rounding level and need not decrease.
        take_full = small & finite_delta
        t = jnp.where(take_full, 1.0, t)
        Rt = jnp.where(take_full, _residual(sh, Z - delta), Rt)
        accept = ok | take_full
        Z_new = jnp.where(accept, Z - t * delta, Z)
        R_new = jnp.where(accept, Rt, R)
        finite = jnp.all(jnp.isfinite(R_new))
        code = jnp.where(
            ~finite_delta,
            C_SING,
            jnp.where(
                take_full,
                jnp.where(finite, C_CONV, C_DIV),
                jnp.where(~ok, jnp.where(line_search, C_LS, C_DIV), -1),
            ),
        )
        return dict(Z=Z_new, R=R_new, it=c["it"] + 1, code=code)

    out = jax.lax.while_loop(cond, body, init)
    code = jnp.where(out["code"] < 0, C_MAX, out["code"])
    code = jnp.where(jnp.all(jnp.isfinite(R0)), code, C_DIV)
    return out["Z"], out["R"], out["it"], code


_CODE_TO_RESULT = ("converged", "max_steps", "diverged", "singular", "line_search_failed")


def _guess_from_controls(sh: Shooting, U: Array) -> Array:
    xs = sh.states(U)
    lams = sh.costates(U)
    return jnp.concatenate([xs[1:], lams, U], axis=1)


def _initial_unknowns(sh: Shooting, guess: Any) -> Array:
    N, n, m = sh.N, sh.state_dim, sh.control_dim
    if guess is None:
        return _guess_from_controls(sh, sh.zeros())
    if isinstance(guess, ConditionsSolution):
        guess = (guess.states, guess.costates, guess.controls)
    if isinstance(guess, tuple | list) and not hasattr(guess, "shape"):
        if len(guess) != 3:
            raise ValueError(
                f"`guess` as a tuple must be (states, costates, controls); got {len(guess)} items."
            )
        states, costates, controls = guess
        shape = tuple(getattr(states, "shape", np.shape(states)))
        if shape == (N + 1, n):
            states = states[1:]
        states = _as_array(states, "guess states", (N, n), "x_1..x_N, or x_0..x_N as (N+1, n)")
        costates = _as_array(costates, "guess costates", (N, n), "lambda_0..lambda_{N-1}")
        controls = _as_array(controls, "guess controls", (N, m), "u_0..u_{N-1}")
        return jnp.concatenate([states, costates, controls], axis=1)
    U = _as_array(guess, "guess", (N, m), "controls u_0..u_{N-1}; or a tuple")
    return _guess_from_controls(sh, U)


def solve_conditions(
    shooting: Shooting,
    guess: Any = None,
    *,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    max_steps: int = 50,
    linear_solver: str = "auto",
    line_search: bool = True,
    throw: bool = True,
) -> ConditionsSolution:
    r"""Solve the discrete necessary conditions (36) of a shooting discretization by
    Newton's method (the indirect method on the grid).

    Unknowns $z_k = (x_{k+1}, \lambda_k, u_k)$, $k = 0, \dots, N-1$: $N(2n+m)$ numbers
    ($n$ the augmented state dimension). Equations, for every scheme $\Phi$
    (DESIGN.md section 2; for Euler exactly the paper's (36)):

    $$x_{k+1} - \Phi(x_k, u_k, h_k) = 0, \qquad
      \lambda_{k-1} - \partial_x\Phi(x_k, u_k, h_k)^T\lambda_k = 0 \;(k \ge 1), \qquad
      \lambda_{N-1} - \nabla E(x_N) = 0,$$
    $$h_k^{-1}\,\partial_u\Phi(x_k, u_k, h_k)^T\lambda_k = 0 .$$

    The control equations are scaled by $1/h_k$, so that for Euler they read
    $\partial_u H(\lambda_k, x_k, u_k) = 0$ (eq. (24); $\partial_u\Phi = h\,\partial_u f$)
    and their Jacobian rows are $O(1)$ like those of the state and costate rows.

    Newton: $z \leftarrow z - t\,J(z)^{-1}R(z)$ with a backtracking line search on
    $\|R\|_2^2$ ($t = 1, \tfrac12, \dots$). The Jacobian is block tridiagonal (block
    size $2n+m$; every stage couples only to its neighbours); its blocks are computed
    by forward-mode autodiff of one stage, vmapped over the grid, and the system is
    solved by a dense LU when $N(2n+m) \le$ `DENSE_CONDITIONS_MAX` and otherwise by a
    sparse LU of the block-banded matrix (scipy SuperLU, $O(N)$ memory): never a
    dense matrix at large N. The loop is one `lax.while_loop`.

    By Proposition 4.5 the solution is a stationary point of $E^N$: its controls are
    those of a converged direct method and its costates equal
    `shooting.costates(controls)`.

    **Arguments:**

    - `shooting`: a [`Shooting`][flow.Shooting] (any scheme).
    - `guess`: `None` (the zero control), controls `(N, m)` (states and costates
      then follow from the forward and adjoint recursions), a tuple
      `(states, costates, controls)` with states `(N, n)` ($x_1..x_N$) or `(N+1, n)`,
      costates `(N, n)`, controls `(N, m)`, or a previous `ConditionsSolution`.
    - `rtol`, `atol`: converged when a full Newton step satisfies
      $|\delta z_i| \le$ `atol` + `rtol` $|z_i|$ for every unknown (the next iterate
      is then accurate to about the square of that).
    - `max_steps`: Newton iterations; `linear_solver`: `"auto"`, `"dense"` or `"sparse"`.
    - `line_search`: backtracking on $\|R\|^2$ (default); `False` for pure Newton.
    - `throw`: raise `RuntimeError` when not converged; `False` returns the status.

    **Returns:** a [`ConditionsSolution`][].

    **Raises:** `TypeError`/`ValueError` for a bad argument (naming it), for example
    a guess of the wrong shape.
    """
    sh = _check_shooting(shooting)
    rtol = _tolerance(rtol, "rtol")
    atol = _tolerance(atol, "atol")
    max_steps = _count(max_steps, "max_steps")
    if linear_solver not in _LINEAR_SOLVERS:
        raise ValueError(
            f"`linear_solver` must be one of {_LINEAR_SOLVERS}; got {linear_solver!r}."
        )
    Z0 = _initial_unknowns(sh, guess)
    size = Z0.size
    dense = size <= DENSE_CONDITIONS_MAX if linear_solver == "auto" else linear_solver == "dense"
    Z, R, it, code = _newton_conditions(
        sh,
        Z0,
        jnp.asarray(rtol),
        jnp.asarray(atol),
        jnp.asarray(max_steps),
        bool(dense),
        bool(line_search),
    )
    n = sh.state_dim
    states = jnp.concatenate([sh.problem.augmented_x0()[None], Z[:, :n]], axis=0)
    absR = np.abs(np.asarray(R))
    result = getattr(INDIRECT_RESULTS, _CODE_TO_RESULT[int(code)])
    sol = ConditionsSolution(
        states=states,
        costates=Z[:, n : 2 * n],
        controls=Z[:, 2 * n :],
        state_residual=float(np.max(absR[:, :n])),
        costate_residual=float(np.max(absR[:, n : 2 * n])),
        control_residual=float(np.max(absR[:, 2 * n :])),
        iterations=int(it),
        result=result,
        linear_solver="dense" if dense else "sparse",
        shooting=sh,
    )
    if throw and not sol.success:
        raise RuntimeError(
            f"solve_conditions: {sol.message} ({sol!r}). Try a better guess (e.g. the "
            f"controls of a direct method), more max_steps, or pass throw=False."
        )
    return sol


# ===========================================================================
# 2. Costate shooting on the continuous conditions (14).


class DampedNewton(optx.AbstractRootFinder):
    r"""Damped Newton root finder (an `optimistix` root finder):
    $y \leftarrow y - d\,J(y)^{-1} F(y)$, with the damping (step factor) $d$.

    $d = 1$ is Newton's method; $0 < d < 1$ shortens every step (the direct method's
    effective step, paper section 6.3), which widens the region of convergence at
    the price of a linear rate $|1 - d|$ near the root. Converged when the full
    Newton step satisfies $\|J^{-1}F\|_\infty \le$ `atol` + `rtol` $|y|$
    componentwise and $\|F\|_\infty \le$ `ftol`; a non-finite $F$ or step ends
    the solve as a divergence.
    """

    rtol: Any
    atol: Any
    ftol: Any
    damping: Any = 1.0
    norm: Callable = optx.max_norm
    linear_solver: lx.AbstractLinearSolver = lx.AutoLinearSolver(well_posed=None)

    def init(self, fn, y, args, options, f_struct, aux_struct, tags):
        del fn, args, options, aux_struct, tags
        return _DampedNewtonState(
            f=jnp.full(f_struct.shape, jnp.inf, f_struct.dtype),
            diff=jnp.full_like(y, jnp.inf),
            result=optx.RESULTS.successful,
            step=jnp.array(0),
        )

    def step(self, fn, y, args, options, state, tags):
        del options
        fx, lin_fn, aux = jax.linearize(lambda _y: fn(_y, args), y, has_aux=True)
        jac = lx.FunctionLinearOperator(lin_fn, jax.eval_shape(lambda: y), tags=tags)
        sol = lx.linear_solve(jac, fx, self.linear_solver, throw=False)
        diff = sol.value
        new_y = y - self.damping * diff
        new_state = _DampedNewtonState(
            f=fx, diff=diff, result=optx.RESULTS.promote(sol.result), step=state.step + 1
        )
        return new_y, new_state, aux

    def terminate(self, fn, y, args, options, state, tags):
        del fn, args, options, tags
        scale = self.atol + self.rtol * jnp.abs(y)
        step_small = self.norm(jnp.abs(state.diff) / scale) < 1
        f_small = self.norm(state.f) <= self.ftol
        started = state.step > 0
        nonfinite = started & ~(jnp.all(jnp.isfinite(state.f)) & jnp.all(jnp.isfinite(state.diff)))
        failed = state.result != optx.RESULTS.successful
        result = optx.RESULTS.where(
            nonfinite,
            optx.RESULTS.nonlinear_divergence,
            optx.RESULTS.where(failed, state.result, optx.RESULTS.successful),
        )
        return failed | nonfinite | (started & step_small & f_small), result

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        del fn, args, options, state, tags, result
        return y, aux, {}


class _DampedNewtonState(eqx.Module):
    f: Array
    diff: Array
    result: optx.RESULTS
    step: Array


class _NewtonControl(eqx.Module):
    r"""$u(x, \lambda)$ from $\partial_u H(\lambda, x, u) = 0$ by Newton from `u_start`
    (at most `iterations` steps), with the implicit-function derivative
    $du = -(\partial_{uu}H)^{-1}(\partial_{ux}H\,dx + \partial_{u\lambda}H\,d\lambda)$;
    NaN when Newton does not converge."""

    problem: OptimalControlProblem
    u_start: Array
    iterations: int = eqx.field(static=True, default=50)

    def __call__(self, x: Array, lam: Array) -> Array:
        H = self.problem.hamiltonian
        Hu = jax.grad(H, argnums=2)
        Huu = jax.jacfwd(Hu, argnums=2)
        xs, ls = jax.lax.stop_gradient(x), jax.lax.stop_gradient(lam)

        def cond(c):
            _, j, err = c
            return (j < self.iterations) & (err > 0)

        def body(c):
            u, j, _ = c
            du = jnp.linalg.solve(Huu(ls, xs, u), Hu(ls, xs, u))
            u_new = u - du
            err = jnp.where(
                jnp.all(jnp.abs(du) <= 1e-14 * (1.0 + jnp.abs(u_new))), 0.0, jnp.max(jnp.abs(du))
            )
            err = jnp.where(jnp.all(jnp.isfinite(u_new)), err, 0.0)
            return u_new, j + 1, err

        u_star, j, err = jax.lax.while_loop(
            cond, body, (self.u_start, jnp.array(0), jnp.array(1.0))
        )
        ok = jnp.all(jnp.isfinite(u_star)) & (j < self.iterations)
        u_star = jax.lax.stop_gradient(jnp.where(ok, u_star, jnp.nan))
        A = jax.lax.stop_gradient(Huu(ls, xs, u_star))
        # value u_star (up to one more Newton correction), derivative by the IFT
        return u_star - jnp.linalg.solve(A, Hu(lam, x, u_star))


class _UserControl(eqx.Module):
    """u = control_law(x, lambda) on the user's (non-augmented) state and costate."""

    law: Callable = eqx.field(static=True)
    n: int = eqx.field(static=True)

    def __call__(self, x: Array, lam: Array) -> Array:
        return jnp.asarray(self.law(x[: self.n], lam[: self.n]))


def _augment_costate(problem: OptimalControlProblem, lam: Array) -> Array:
    if problem.running_cost is None:
        return lam
    return jnp.concatenate([lam, jnp.ones((1,), lam.dtype)])


def _canonical_field(problem: OptimalControlProblem, control: Callable):
    """The vector field of (14): x' = f(x, u), lambda' = -f_x^T lambda, u = u(x, lambda)."""
    na = problem.augmented_dim

    def vf(t, y, args):
        del t, args
        x, lam = y[:na], y[na:]
        u = control(x, lam)
        fx, vjp = jax.vjp(lambda x_: problem.augmented_dynamics(x_, u), x)
        (fx_t_lam,) = vjp(lam)
        return jnp.concatenate([fx, -fx_t_lam])

    return vf


def _canonical_solve(problem, control, solver, lam0, rtol, atol, ode_max_steps, saveat, adjoint):
    y0 = jnp.concatenate([problem.augmented_x0(), _augment_costate(problem, lam0)])
    return diffrax.diffeqsolve(
        diffrax.ODETerm(_canonical_field(problem, control)),
        solver,
        problem.t0,
        problem.tf,
        None,
        y0,
        saveat=saveat,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        adjoint=adjoint,
        max_steps=ode_max_steps,
        throw=False,
    )


def _terminal_residual(problem, yT):
    na, n = problem.augmented_dim, problem.state_dim
    xT, lamT = yT[:na], yT[na:]
    return (lamT - jax.grad(problem.augmented_endpoint_cost)(xT))[:n]


def _costate_kernel(problem, control, solver, root_finder, lam0, rtol, atol, ode_max_steps, steps):
    """Root-find lambda(t0), then the dense solution. Pure JAX (vmappable)."""

    def residual(lam, args):
        del args
        sol = _canonical_solve(
            problem,
            control,
            solver,
            lam,
            rtol,
            atol,
            ode_max_steps,
            diffrax.SaveAt(t1=True),
            diffrax.ForwardMode(),
        )
        r = _terminal_residual(problem, sol.ys[-1])
        return jnp.where(sol.result == diffrax.RESULTS.successful, r, jnp.nan)

    root = optx.root_find(
        residual, root_finder, lam0, max_steps=steps, throw=False, adjoint=optx.ImplicitAdjoint()
    )
    lam = root.value
    dense = _canonical_solve(
        problem,
        control,
        solver,
        lam,
        rtol,
        atol,
        ode_max_steps,
        diffrax.SaveAt(t1=True, dense=True),
        diffrax.RecursiveCheckpointAdjoint(),
    )
    r = _terminal_residual(problem, dense.ys[-1])
    res = root.result
    code = jnp.where(
        res == optx.RESULTS.successful,
        0,
        jnp.where(
            res == optx.RESULTS.nonlinear_max_steps_reached,
            1,
            jnp.where(res == optx.RESULTS.singular, 3, 2),
        ),
    )
    ode_ok = dense.result == diffrax.RESULTS.successful
    finite = jnp.all(jnp.isfinite(r)) & jnp.all(jnp.isfinite(lam))
    code = jnp.where(ode_ok & finite, code, 2)
    return lam, r, root.stats["num_steps"], code, dense


_costate_kernel_jit = eqx.filter_jit(_costate_kernel)


class CostateTrajectory(eqx.Module):
    r"""The result of [`costate_shooting`][]: a solution of the continuous necessary
    conditions (14), with dense output.

    **Fields:**

    - `lambda0`: $\lambda(t_0)$, shape `(n,)` (augmented: a running cost's costate 1
      is the last component);
    - `terminal_residual`: $\lambda(t_f) - \nabla E(x(t_f))$ on the user's state, `(n_user,)`;
    - `iterations`: root-finder iterations; `result`: an [`INDIRECT_RESULTS`][] item;
    - `damping`: the Newton step factor used (None for a user root finder);
    - `solution`: the `diffrax.Solution` of $(x, \lambda)$ with dense output;
    - `problem`, `control`: the problem and the control map $u(x, \lambda)$.

    Evaluate with [`states`][], [`costates`][], [`controls`][] at any times in
    $[t_0, t_f]$.
    """

    lambda0: Float[Array, " n"]
    terminal_residual: Float[Array, " nu"]
    iterations: int
    result: INDIRECT_RESULTS
    damping: float | None
    solution: diffrax.Solution
    problem: OptimalControlProblem
    control: Callable

    @property
    def message(self) -> str:
        """The human-readable status."""
        return INDIRECT_RESULTS[self.result]

    @property
    def success(self) -> bool:
        """True when the root finder converged."""
        return _is_success(self.result)

    def _evaluate(self, ts: Any) -> Array:
        ts = jnp.asarray(ts, dtype=jnp.float64)
        if ts.ndim > 1:
            raise ValueError(
                f"`ts` must be a scalar or a 1-D array of times; got shape {ts.shape}."
            )
        lo, hi = self.problem.t0, self.problem.tf
        tol = 1e-12 * (hi - lo)
        if bool(jnp.any((ts < lo - tol) | (ts > hi + tol))):
            raise ValueError(f"`ts` must lie in [t0, tf] = [{lo}, {hi}].")
        return jax.vmap(self.solution.evaluate)(jnp.atleast_1d(jnp.clip(ts, lo, hi)))

    def states(self, ts: Any) -> Float[Array, "T n"]:
        r"""$x(t)$ at the times `ts` (1-D), shape `(T, n)` (augmented)."""
        return self._evaluate(ts)[:, : self.problem.augmented_dim]

    def costates(self, ts: Any) -> Float[Array, "T n"]:
        r"""$\lambda(t)$ at the times `ts` (1-D), shape `(T, n)` (augmented)."""
        return self._evaluate(ts)[:, self.problem.augmented_dim :]

    def controls(self, ts: Any) -> Float[Array, "T m"]:
        r"""$u(t) = u(x(t), \lambda(t))$ from $\partial_u H = 0$, shape `(T, m)`."""
        y = self._evaluate(ts)
        na = self.problem.augmented_dim
        return jax.vmap(self.control)(y[:, :na], y[:, na:])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (no trajectories)."""
        return dict(
            problem=self.problem.name,
            status=self.message,
            success=self.success,
            iterations=self.iterations,
            damping=self.damping,
            lambda0=[_jsonable_float(v) for v in np.asarray(self.lambda0)],
            terminal_residual=_jsonable_float(np.max(np.abs(np.asarray(self.terminal_residual)))),
        )

    def __repr__(self) -> str:
        r = float(np.max(np.abs(np.asarray(self.terminal_residual))))
        return (
            f"CostateTrajectory({self.problem.name}: {self.message.split(':')[0]} after "
            f"{self.iterations} iterations, |lambda(tf) - grad E| = {r:.1e})"
        )


def _hamiltonian_uu(problem: OptimalControlProblem, x: Array, lam: Array, u: Array) -> np.ndarray:
    Hu = jax.grad(problem.hamiltonian, argnums=2)
    return np.asarray(jax.jacfwd(Hu, argnums=2)(lam, x, u))


def _make_control(problem: OptimalControlProblem, control_law: Any, lam0: Array, u_start: Array):
    """The control map u(x, lambda), checked once at (x0, lambda0)."""
    x0 = problem.augmented_x0()
    lam_aug = _augment_costate(problem, lam0)
    m = problem.control_dim
    if control_law is not None:
        if not callable(control_law):
            raise TypeError(
                f"`control_law` must be a callable (x, lam) -> u of shape ({m},); got "
                f"{type(control_law).__name__}."
            )
        control = _UserControl(control_law, problem.state_dim)
        u = control(x0, lam_aug)
        if u.shape != (m,) or u.dtype != jnp.float64:
            raise ValueError(
                f"`control_law(x, lam)` must return a float64 array of shape ({m},); got "
                f"shape {u.shape}, dtype {u.dtype}."
            )
        return control
    A = _hamiltonian_uu(problem, x0, lam_aug, u_start)
    s = np.linalg.svd(A, compute_uv=False) if np.all(np.isfinite(A)) else np.array([np.nan])
    if not np.all(np.isfinite(s)) or s[-1] <= 1e-10 * max(1.0, float(s[0])):
        raise ValueError(
            f"d_uu H is singular at (x0, lambda0_guess, u={np.asarray(u_start).tolist()}) "
            f"(singular values {np.asarray(s).tolist()}): the control cannot be found from "
            f"d_u H = 0 by Newton. This happens for control-affine problems without a "
            f"control penalty (e.g. scalar_mayer: singular or bang-bang arcs). Pass "
            f"`control_law(x, lam)` or add a running cost in u."
        )
    return _NewtonControl(problem, u_start)


def costate_shooting(
    problem: OptimalControlProblem,
    lambda0_guess: Any,
    *,
    rtol: float,
    atol: float,
    control_law: Callable | None = None,
    damping: float = 1.0,
    solver: diffrax.AbstractSolver | None = None,
    root_finder: optx.AbstractRootFinder | None = None,
    max_steps: int = 50,
    ode_max_steps: int = 16384,
    root_rtol: float | None = None,
    root_atol: float | None = None,
    control_guess: Any = None,
    throw: bool = True,
) -> CostateTrajectory:
    r"""Classic indirect shooting on the continuous necessary conditions (14).

    $$\dot x = f(x, u),\quad \dot\lambda = -\partial_x f(x, u)^T\lambda,\quad
      \partial_u H(\lambda, x, u) = 0,\quad x(t_0) = x_0,\quad
      \lambda(t_f) = \nabla E(x(t_f)),$$

    with $H = \lambda^T f$ (5) on the augmented state (a running cost $L$ adds
    $+L$ to $H$; its costate is 1). The control is $u(x, \lambda)$ = `control_law(x,
    lam)` (on the user's state and costate) when given, otherwise the root of
    $\partial_u H = 0$ by a local Newton solve (from `control_guess`, default 0) at
    every evaluation of the vector field. $(x, \lambda)$ is integrated forwards with
    diffrax from $(x_0, \lambda_0)$, and $\lambda_0$ is found by a damped Newton root
    finder ([`DampedNewton`][], optimistix) on
    $F(\lambda_0) = \lambda(t_f) - \nabla E(x(t_f))$:
    $\lambda_0 \leftarrow \lambda_0 - d\,F'(\lambda_0)^{-1}F(\lambda_0)$ with the
    damping $d$ (paper section 6.3; $d = 1$ is Newton). $F'$ is computed by
    forward-mode differentiation through the ODE solver.

    **Arguments:**

    - `problem`: an [`OptimalControlProblem`][flow.OptimalControlProblem].
    - `lambda0_guess`: the initial guess of $\lambda(t_0)$ on the user's state, shape
      `(n,)` (without the running-cost component, which is 1).
    - `rtol`, `atol`: the ODE tolerances (diffrax `PIDController`; required).
    - `control_law`: optional closed form $u(x, \lambda)$, shapes `(n,), (n,) -> (m,)`.
    - `damping`: the Newton step factor $d > 0$.
    - `solver`: the diffrax solver (default `Tsit5()`); `root_finder`: any optimistix
      root finder instead of the damped Newton (then `damping` must be 1).
    - `max_steps`: root-finder iterations; `ode_max_steps`: ODE steps per solve.
    - `root_rtol`, `root_atol`: the root finder's tolerances on $\lambda_0$ and on
      $\|F\|_\infty$ (default 100 `rtol`, 100 `atol`: the residual is only as
      accurate as the ODE solve).
    - `control_guess`: the start of the local Newton solve for $u$, shape `(m,)`.
    - `throw`: raise `RuntimeError` when not converged; `False` returns the status.

    **Returns:** a [`CostateTrajectory`][]: evaluate $x(t), \lambda(t), u(t)$ at any times.

    **Raises:** `ValueError` naming $\partial_{uu}H$ when it is singular at
    $(x_0, \lambda_0)$ and no `control_law` is given (control-affine problems without
    a control penalty, such as `scalar_mayer`); `ValueError`/`TypeError` for
    arguments of the wrong shape or type.
    """
    if not isinstance(problem, OptimalControlProblem):
        raise TypeError(
            f"`problem` must be an OptimalControlProblem; got {type(problem).__name__}."
        )
    n, m = problem.state_dim, problem.control_dim
    lam0 = _as_array(lambda0_guess, "lambda0_guess", (n,), "lambda(t0) on the user's state")
    rtol = _tolerance(rtol, "rtol")
    atol = _tolerance(atol, "atol")
    damping = _tolerance(damping, "damping")
    max_steps = _count(max_steps, "max_steps")
    ode_max_steps = _count(ode_max_steps, "ode_max_steps")
    r_rtol = 100 * rtol if root_rtol is None else _tolerance(root_rtol, "root_rtol")
    r_atol = 100 * atol if root_atol is None else _tolerance(root_atol, "root_atol")
    if solver is None:
        solver = diffrax.Tsit5()
    if not isinstance(solver, diffrax.AbstractSolver):
        raise TypeError(f"`solver` must be a diffrax solver; got {solver!r}.")
    if root_finder is None:
        root_finder = DampedNewton(
            rtol=jnp.asarray(r_rtol),
            atol=jnp.asarray(r_atol),
            ftol=jnp.asarray(r_atol),
            damping=jnp.asarray(damping),
        )
        used_damping: float | None = damping
    else:
        if not isinstance(root_finder, optx.AbstractRootFinder):
            raise TypeError(
                f"`root_finder` must be an optimistix root finder; got {root_finder!r}."
            )
        if damping != 1.0:
            raise ValueError(
                "`damping` applies to the default root finder only; got a root_finder."
            )
        used_damping = None
    u_start = (
        jnp.zeros((m,))
        if control_guess is None
        else _as_array(control_guess, "control_guess", (m,), "a control")
    )
    control = _make_control(problem, control_law, lam0, u_start)
    lam, r, steps, code, dense = _costate_kernel_jit(
        problem,
        control,
        solver,
        root_finder,
        lam0,
        jnp.asarray(rtol),
        jnp.asarray(atol),
        ode_max_steps,
        max_steps,
    )
    result = getattr(INDIRECT_RESULTS, _CODE_TO_RESULT[int(code)])
    traj = CostateTrajectory(
        lambda0=_augment_costate(problem, lam),
        terminal_residual=r,
        iterations=int(steps),
        result=result,
        damping=used_damping,
        solution=dense,
        problem=problem,
        control=control,
    )
    if throw and not traj.success:
        raise RuntimeError(
            f"costate_shooting: {traj.message} ({traj!r}). Try a better lambda0_guess "
            f"(e.g. the costates of a direct method), a smaller damping with more "
            f"max_steps, or pass throw=False."
        )
    return traj


# ===========================================================================
# 4. The continuous (optimize-then-discretize) adjoint.


class ContinuousAdjoint(eqx.Module):
    r"""The result of [`continuous_adjoint_gradient`][].

    **Fields:**

    - `gradient`: $g_k = \int_{t_k}^{t_{k+1}} \partial_u f(x(t), u_k)^T\lambda(t)\,dt$,
      shape `(N, m)` (the exact gradient of the *continuous* cost with piecewise-constant
      controls, to the ODE tolerance);
    - `exact_gradient`: $\nabla E^N(U)$ by autodiff (the gradient of the discretized
      problem); `costate_gradient`: the discrete adjoint recursion's gradient;
    - `states`, `costates`: $x(t_k)$, $\lambda(t_k)$ of the ODEs, shape `(N+1, n)`;
    - `distance`: $\max_k \|g_k - \nabla_{u_k}E^N\|_\infty / h_k$ (Hamiltonian units:
      $O(h)$ for Euler); `relative_distance`: $\max|g - \nabla E^N| / \max|\nabla E^N|$;
    - `discrete_distance`: the same as `distance` for the discrete costate gradient
      (rounding only);
    - `num_steps`: ODE steps, forward and backward; `ode_success`: all solves succeeded;
    - `rtol`, `atol`, `shooting`.
    """

    gradient: Float[Array, "N m"]
    exact_gradient: Float[Array, "N m"]
    costate_gradient: Float[Array, "N m"]
    states: Float[Array, "Np1 n"]
    costates: Float[Array, "Np1 n"]
    distance: float
    relative_distance: float
    discrete_distance: float
    num_steps: int
    ode_success: bool
    rtol: float
    atol: float
    shooting: Shooting

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (no arrays)."""
        return dict(
            problem=self.shooting.problem.name,
            scheme=self.shooting.scheme.name,
            N=self.shooting.N,
            rtol=self.rtol,
            atol=self.atol,
            distance=_jsonable_float(self.distance),
            relative_distance=_jsonable_float(self.relative_distance),
            discrete_distance=_jsonable_float(self.discrete_distance),
            num_steps=self.num_steps,
            ode_success=self.ode_success,
        )

    def __repr__(self) -> str:
        return (
            f"ContinuousAdjoint({self.shooting.problem.name}, N={self.shooting.N}, "
            f"rtol={self.rtol:g}: |g_cont - grad E^N|/h = {self.distance:.2e}, discrete "
            f"adjoint {self.discrete_distance:.1e})"
        )


@eqx.filter_jit
def _continuous_adjoint(sh: Shooting, U, solver, rtol, atol, ode_max_steps: int):
    problem = sh.problem
    f = problem.augmented_dynamics
    m = sh.control_dim
    controller = diffrax.PIDController(rtol=rtol, atol=atol)
    t_left, t_right = sh.grid[:-1], sh.grid[1:]

    def forward(x, inp):
        u, ta, tb = inp
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, y, a: f(y, a)),
            solver,
            ta,
            tb,
            None,
            x,
            args=u,
            stepsize_controller=controller,
            max_steps=ode_max_steps,
            throw=False,
        )
        x_next = sol.ys[-1]
        return x_next, (x_next, sol.stats["num_steps"], sol.result == diffrax.RESULTS.successful)

    xN, (xs_next, n_fwd, ok_fwd) = jax.lax.scan(
        forward, problem.augmented_x0(), (U, t_left, t_right)
    )
    lamN = jax.grad(problem.augmented_endpoint_cost)(xN)

    def field(t, y, u):
        del t
        x, lam, _ = y
        fx, vjp = jax.vjp(f, x, u)
        fx_t_lam, fu_t_lam = vjp(lam)
        return fx, -fx_t_lam, -fu_t_lam

    def backward(lam, inp):
        x_right, u, ta, tb = inp
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(field),
            solver,
            tb,
            ta,
            None,
            (x_right, lam, jnp.zeros((m,), lam.dtype)),
            args=u,
            stepsize_controller=controller,
            max_steps=ode_max_steps,
            throw=False,
        )
        _, lam_left, q = (y[-1] for y in sol.ys)
        return lam_left, (
            lam_left,
            q,
            sol.stats["num_steps"],
            sol.result == diffrax.RESULTS.successful,
        )

    lam0, (lams_left, g, n_bwd, ok_bwd) = jax.lax.scan(
        backward, lamN, (xs_next, U, t_left, t_right), reverse=True
    )
    states = jnp.concatenate([problem.augmented_x0()[None], xs_next], axis=0)
    costates = jnp.concatenate([lams_left, lamN[None]], axis=0)
    steps = jnp.sum(n_fwd) + jnp.sum(n_bwd)
    ok = jnp.all(ok_fwd) & jnp.all(ok_bwd)
    return g, states, costates, steps, ok


def continuous_adjoint_gradient(
    shooting: Shooting,
    U: Any,
    *,
    rtol: float,
    atol: float,
    solver: diffrax.AbstractSolver | None = None,
    ode_max_steps: int = 4096,
) -> ContinuousAdjoint:
    r"""The optimize-then-discretize gradient: the continuous costate equation solved
    backwards with an independent scheme, and the gradient it implies.

    With the controls $u_k$ held constant on $[t_k, t_{k+1})$:

    1. the state ODE $\dot x = f(x, u_k)$ is solved on each interval by diffrax
       (adaptive, `rtol`/`atol`), giving $x(t_k)$ (the ODE's states, *not* the
       scheme's $x_k$);
    2. the costate ODE $\dot\lambda = -\partial_x f(x, u_k)^T\lambda$ is solved
       backwards from $\lambda(t_f) = \nabla E(x(t_f))$, interval by interval,
       together with the state (re-integrated backwards from the stored $x(t_{k+1})$,
       as diffrax's `BacksolveAdjoint` does) and the quadrature
       $\dot q = -\partial_u f(x, u_k)^T\lambda$, $q(t_{k+1}) = 0$;
    3. $g_k = q(t_k) = \int_{t_k}^{t_{k+1}} \partial_u f(x(t), u_k)^T\lambda(t)\,dt$
       $= \int_{t_k}^{t_{k+1}}\partial_u H\,dt$.

    $g$ is the gradient of the *continuous* cost $J(U)$ (exact flow), to the ODE
    tolerance; it differs from $\nabla E^N$ by the discretization error, $O(h)$ in
    Hamiltonian units ($\max_k |g_k - \nabla_{u_k}E^N|/h_k$) for Euler, while the
    discrete adjoint recursion (23) gives $\nabla E^N$ to rounding.

    **Arguments:** `shooting` (its grid and $E^N$), controls `U` `(N, m)`, the ODE
    tolerances `rtol`, `atol` (required), `solver` (default `diffrax.Tsit5()`), and
    `ode_max_steps` per interval.

    **Returns:** a [`ContinuousAdjoint`][].
    """
    sh = _check_shooting(shooting)
    U = sh.check_controls(U)
    if not bool(jnp.all(jnp.isfinite(U))):
        raise ValueError("`U` must be finite.")
    rtol = _tolerance(rtol, "rtol")
    atol = _tolerance(atol, "atol")
    ode_max_steps = _count(ode_max_steps, "ode_max_steps")
    if solver is None:
        solver = diffrax.Tsit5()
    if not isinstance(solver, diffrax.AbstractSolver):
        raise TypeError(f"`solver` must be a diffrax solver; got {solver!r}.")
    g, states, costates, steps, ok = _continuous_adjoint(
        sh, U, solver, jnp.asarray(rtol), jnp.asarray(atol), ode_max_steps
    )
    exact = sh.gradient(U)
    disc = sh.gradient(U, "costate")
    h = np.asarray(sh.steps)[:, None]
    gn, en, dn = (np.asarray(a) for a in (g, exact, disc))
    scale = float(np.max(np.abs(en)))
    return ContinuousAdjoint(
        gradient=g,
        exact_gradient=exact,
        costate_gradient=disc,
        states=states,
        costates=costates,
        distance=float(np.max(np.abs(gn - en) / h)),
        relative_distance=float(np.max(np.abs(gn - en)) / (scale if scale > 0 else 1.0)),
        discrete_distance=float(np.max(np.abs(dn - en) / h)),
        num_steps=int(steps),
        ode_success=bool(ok),
        rtol=rtol,
        atol=atol,
        shooting=sh,
    )


# ===========================================================================
# 3. The costates of one problem from every route, side by side.

_MULTIPLIER_FORMS = ("difference", "quotient")


class CostateReport(eqx.Module):
    r"""The costates of one problem from every route, from [`costate_report`][].

    All costate arrays have shape `(N, n)` (augmented) and are aligned with the
    discrete $\lambda_k$, $k = 0..N-1$:

    - `direct`: the discrete adjoint recursion (23)/(25) at the direct method's
      optimum `controls` (`shooting.costates(controls)`);
    - `conditions`: the Newton solution of (36) ([`solve_conditions`][], started
      from the zero control: an independent route);
    - `shooting`: costate shooting (14) sampled at $t_{k+1}$, $\lambda(t_{k+1})$;
      `shooting_at_tk`: the same at $t_k$;
    - `adjoint`: the continuous adjoint at the direct optimum (piecewise-constant
      controls, backwards ODE), at $t_{k+1}$.

    `differences[name]` is $\max_{k,i}|\lambda^{name}_{k,i} - \lambda^{direct}_{k,i}|$;
    `control_differences` the same for the controls ($u$ of (36); $u(x(t_k),
    \lambda(t_k))$ of costate shooting). `status[name]` is each route's status.

    **Which time, which scale.** $\lambda_k = \partial E^N/\partial x_{k+1}$ is the
    sensitivity to the state at $t_{k+1}$ ($\lambda_{N-1}$ is the transversality value
    at $t_N$) and approximates, to first order for Euler, both $\lambda(t_{k+1})$ and
    $\lambda(t_k)$; which is closer depends on the problem (compare
    `differences["shooting"]` with `differences["shooting_at_tk"]`). The multipliers
    of the NLP with the state equations written $x_{k+1} - \Phi(x_k, u_k, h_k) = 0$
    and the Lagrangian $E - \sum_k\mu_k^T(x_{k+1} - \Phi)$ are $\mu_k = \lambda_k$; written
    $(x_{k+1} - \Phi)/h_k = 0$ (the "defect over h" form) they are
    $\mu_k = h_k\lambda_k$, which vanish as $h \to 0$; with the Lagrangian
    $E + \sum_k\mu_k^T c_k$ (the sign most NLP solvers use) they change sign. See
    [`multipliers`][].
    """

    controls: Float[Array, "N m"]
    grid: Float[Array, " Np1"]
    direct: Float[Array, "N n"]
    conditions: Float[Array, "N n"]
    shooting: Float[Array, "N n"]
    shooting_at_tk: Float[Array, "N n"]
    adjoint: Float[Array, "N n"]
    differences: dict
    control_differences: dict
    status: dict
    direct_hamiltonian_residual: float
    problem: str
    scheme: str
    N: int

    @property
    def steps(self) -> Float[Array, " N"]:
        r"""The step sizes $h_k$."""
        return self.grid[1:] - self.grid[:-1]

    def multipliers(self, form: str = "difference", *, sign: int = 1) -> Float[Array, "N n"]:
        r"""The NLP multipliers $\mu_k$ of the state equations at the optimum.

        - `form="difference"`: constraints $x_{k+1} - \Phi(x_k, u_k, h_k) = 0$:
          $\mu_k = \lambda_k$;
        - `form="quotient"`: constraints $(x_{k+1} - \Phi(x_k, u_k, h_k))/h_k = 0$:
          $\mu_k = h_k\lambda_k$;
        - `sign=+1` for the Lagrangian $E - \sum\mu_k^T c_k$, `sign=-1` for
          $E + \sum\mu_k^T c_k$.
        """
        if form not in _MULTIPLIER_FORMS:
            raise ValueError(f"`form` must be one of {_MULTIPLIER_FORMS}; got {form!r}.")
        if sign not in (1, -1):
            raise ValueError(f"`sign` must be +1 or -1; got {sign!r}.")
        lam = self.direct if form == "difference" else self.steps[:, None] * self.direct
        return sign * lam

    def to_dict(self, *, include_arrays: bool = False) -> dict[str, Any]:
        """A JSON-safe dictionary; the costate arrays only with `include_arrays=True`."""
        d: dict[str, Any] = dict(
            problem=self.problem,
            scheme=self.scheme,
            N=self.N,
            direct_hamiltonian_residual=_jsonable_float(self.direct_hamiltonian_residual),
            differences={k: _jsonable_float(v) for k, v in self.differences.items()},
            control_differences={
                k: _jsonable_float(v) for k, v in self.control_differences.items()
            },
            status=dict(self.status),
            lambda_k_approximates="lambda(t_{k+1}) and lambda(t_k), both to O(h); "
            "lambda_{N-1} = grad E(x_N) is the transversality value at t_N",
            multipliers="difference form x_{k+1} - Phi = 0: mu_k = lambda_k; quotient form "
            "(x_{k+1} - Phi)/h_k = 0: mu_k = h_k lambda_k; sign flips for L = E + mu^T c",
        )
        if include_arrays:
            for f in (
                "grid",
                "controls",
                "direct",
                "conditions",
                "shooting",
                "shooting_at_tk",
                "adjoint",
            ):
                d[f] = np.asarray(getattr(self, f)).tolist()
        return d

    def summary(self) -> str:
        """A readable table of the routes and their distances from the direct costates."""
        rows = [
            ("direct recursion (23)/(25)", "direct", "-"),
            ("Newton on (36)", "conditions", "lambda_k"),
            ("costate shooting (14) at t_{k+1}", "shooting", "lambda(t_{k+1})"),
            ("costate shooting (14) at t_k", "shooting_at_tk", "lambda(t_k)"),
            ("continuous adjoint at t_{k+1}", "adjoint", "lambda(t_{k+1})"),
        ]
        lines = [
            f"Costates of {self.problem} (scheme {self.scheme}, N = {self.N}, "
            f"h = {float(np.max(np.asarray(self.steps))):.3g}); direct optimum: "
            f"{self.status['direct']}, max|dH/du| = {self.direct_hamiltonian_residual:.1e}",
            f"{'route':36s} {'compared as':16s} {'max|lam - lam_direct|':>22s} "
            f"{'max|u - u_direct|':>18s}  status",
        ]
        for label, key, what in rows:
            d = self.differences.get(key, 0.0)
            du = self.control_differences.get(key)
            du_s = "-" if du is None else f"{du:.3e}"
            lines.append(
                f"{label:36s} {what:16s} {d:22.3e} {du_s:>18s}  {self.status.get(key, '-')}"
            )
        lines.append(
            "lambda_k = dE^N/dx_{k+1} approximates lambda(t_{k+1}) and lambda(t_k) to O(h).\n"
            "NLP multipliers: mu_k = lambda_k for x_{k+1} - Phi = 0, h_k lambda_k for "
            "(x_{k+1} - Phi)/h_k = 0 (sign flipped for the Lagrangian E + mu^T c)."
        )
        return "\n".join(lines)

    def __repr__(self) -> str:
        parts = ", ".join(f"{k} {v:.1e}" for k, v in self.differences.items())
        return f"CostateReport({self.problem}, N={self.N}: max|lam - lam_direct|: {parts})"


def _status_word(message: str) -> str:
    return message.split(":")[0]


def direct_optimum(shooting: Shooting, U0: Any = None, *, tol: float = 1e-10):
    r"""A stationary point of $E^N$ by the direct method alone (flow's own tools):
    Newton-metric descent with an Armijo line search to
    $\max_k|\partial_u H_k| \le 10^{-6}$, then full Newton steps
    ($M = \nabla^2 E^N$, $\alpha = 1$) to $\max_k|\partial_u H_k| \le$ `tol`.

    **Returns:** the [`DescentTrace`][flow.DescentTrace] of the second phase
    (`.U`, `.result`, `.hamiltonian_norm`).
    """
    from ._descent import descend
    from ._metrics import Newton

    sh = _check_shooting(shooting)
    tol = _tolerance(tol, "tol")
    U0 = sh.zeros() if U0 is None else _as_array(U0, "U0", sh.control_shape, "controls")
    first = descend(
        sh, U0, Newton(), step="armijo", iterations=200, tol=max(tol, 1e-6), throw=False
    )
    return descend(sh, first.U, Newton(), step=1.0, iterations=30, tol=tol, throw=False)


def costate_report(
    shooting: Shooting,
    U: Any = None,
    *,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    tol: float = 1e-10,
    lambda0_guess: Any = None,
    control_law: Callable | None = None,
    conditions_guess: Any = None,
) -> CostateReport:
    r"""The costates of one problem from every route side by side: the direct
    method's discrete recursion, Newton on the discrete conditions (36), costate
    shooting on (14), and the continuous adjoint (see [`CostateReport`][]).

    **Arguments:**

    - `shooting`: a [`Shooting`][flow.Shooting].
    - `U`: the direct method's optimum, shape `(N, m)` (for instance
      `stability.equilibrium(shooting).U`); default: found by [`direct_optimum`][]
      to $\max|\partial_u H| \le$ `tol`.
    - `rtol`, `atol`: the ODE tolerances of costate shooting and the continuous
      adjoint, and Newton's tolerances on (36).
    - `lambda0_guess`: costate shooting's start (default: the direct
      $\lambda_0$ on the user's state, a first-order approximation of $\lambda(t_0)$).
    - `control_law`: passed to [`costate_shooting`][].
    - `conditions_guess`: the start of [`solve_conditions`][] (default: the zero
      control, so that the route is independent of `U`).

    Routes that fail are reported in `status` (their costates may then be NaN).

    **Returns:** a [`CostateReport`][].
    """
    sh = _check_shooting(shooting)
    problem = sh.problem
    n_user = problem.state_dim
    if U is None:
        trace = direct_optimum(sh, tol=tol)
        U = trace.U
        direct_status = _status_word(trace.message)
    else:
        U = _as_array(U, "U", sh.control_shape, "the direct method's optimal controls")
        direct_status = "given"
    lam_direct = sh.costates(U)
    dH = float(jnp.max(jnp.abs(sh.hamiltonian_gradient(U))))

    cond = solve_conditions(sh, conditions_guess, rtol=rtol, atol=atol, throw=False)
    if lambda0_guess is None:
        lambda0_guess = lam_direct[0, :n_user]
    traj = costate_shooting(
        problem, lambda0_guess, rtol=rtol, atol=atol, control_law=control_law, throw=False
    )
    adj = continuous_adjoint_gradient(sh, U, rtol=rtol, atol=atol)

    grid = sh.grid
    lam_next = traj.costates(grid[1:])
    lam_tk = traj.costates(grid[:-1])
    u_tk = traj.controls(grid[:-1])
    routes = dict(
        conditions=cond.costates,
        shooting=lam_next,
        shooting_at_tk=lam_tk,
        adjoint=adj.costates[1:],
    )

    def dist(a, b):
        return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))

    differences = {k: dist(v, lam_direct) for k, v in routes.items()}
    control_differences = dict(conditions=dist(cond.controls, U), shooting_at_tk=dist(u_tk, U))
    status = dict(
        direct=direct_status,
        conditions=_status_word(cond.message),
        shooting=_status_word(traj.message),
        shooting_at_tk=_status_word(traj.message),
        adjoint="completed" if adj.ode_success else "ODE failed",
    )
    return CostateReport(
        controls=U,
        grid=grid,
        direct=lam_direct,
        conditions=cond.costates,
        shooting=lam_next,
        shooting_at_tk=lam_tk,
        adjoint=adj.costates[1:],
        differences=differences,
        control_differences=control_differences,
        status=status,
        direct_hamiltonian_residual=dH,
        problem=problem.name,
        scheme=sh.scheme.name,
        N=sh.N,
    )
