r"""The discrete necessary conditions (36) of a shooting discretization, solved by
Newton's method: the indirect method on the grid.

Indexing follows DESIGN.md section 2 (the paper's (23), (25)): on the grid
$t_0 < \dots < t_N$ with steps $h_k$,

    x_{k+1}      = Phi(x_k, u_k, h_k)                                  k = 0..N-1
    lambda_{N-1} = grad E(x_N)                                         (25)
    lambda_{k-1} = (dPhi/dx (x_k, u_k, h_k))^T lambda_k                k = N-1..1  (23)
    0            = h_k^{-1} (dPhi/du (x_k, u_k, h_k))^T lambda_k       k = 0..N-1  (24)

`lambda_k = dE^N/dx_{k+1}` is the sensitivity to the state at $t_{k+1}$. States and
costates have the *augmented* dimension (a running cost is one extra state whose
costate is 1).

The verbs of the indirect side report their outcome with [`RESULTS`][flow.indirect.RESULTS],
which extends [`flow.RESULTS`][flow.RESULTS] by the Newton-specific items.
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ._custom_types import RealArrayLike
from ._encoding import format_number
from ._results import RESULTS as _BASE_RESULTS, AbstractResult
from ._shooting import Shooting
from ._validation import choice, instance, positive_float, positive_int, real_array


DENSE_CONDITIONS_MAX = 1024
"""`solve_conditions` uses a dense LU of the Jacobian of (36) when it has at most this
many unknowns N(2n+m), and a sparse LU (scipy SuperLU) above."""

_LINEAR_SOLVERS = ("auto", "dense", "sparse")


class RESULTS(_BASE_RESULTS):
    """[`flow.RESULTS`][flow.RESULTS] extended by the outcomes of Newton's method on
    the indirect side ([`solve_conditions`][flow.indirect.solve_conditions],
    [`costate_shooting`][flow.indirect.costate_shooting])."""

    singular = "failed: the Newton system is singular (or its solution is not finite)"
    line_search_failed = (
        "failed: the line search found no decrease of the residual norm (a local "
        "minimum of |residual| that is not a root, or a poor guess)"
    )


#: The integer codes of the Newton kernels, in this order.
CODES = ("converged", "max_steps", "diverged", "singular", "line_search_failed")


def _from_code(code: Array) -> RESULTS:
    """The `RESULTS` item of a Newton kernel's integer code (index into `CODES`);
    batched for an array of codes."""
    code = jnp.asarray(code)
    if code.ndim > 0:
        return jax.vmap(_from_code)(code)
    result = RESULTS.converged
    for k, name in enumerate(CODES[1:], start=1):
        result = RESULTS.where(jnp.asarray(code) == k, getattr(RESULTS, name), result)
    return result


class ConditionsSolution(AbstractResult):
    r"""A solution of the discrete necessary conditions (36), from
    [`solve_conditions`][flow.indirect.solve_conditions].

    **Fields** (with a leading batch axis for a batch of guesses):

    - `states`: $x_0, \dots, x_N$, shape `(N+1, n)` ($x_0$ is the fixed initial state);
    - `costates`: $\lambda_0, \dots, \lambda_{N-1}$, shape `(N, n)`;
    - `U`: the controls $u_0, \dots, u_{N-1}$, shape `(N, m)`;
    - `state_residual`: $\max_k \|x_{k+1} - \Phi(x_k, u_k, h_k)\|_\infty$;
    - `costate_residual`: the largest violation of (23) and (25);
    - `control_residual`: $\max_k \|h_k^{-1}\partial_u\Phi^T\lambda_k\|_\infty$, the
      Hamiltonian residual $\max_k|\partial_u H_k|$ for Euler (eq. (24));
    - `num_steps`: Newton iterations; `result`: a
      [`flow.indirect.RESULTS`][flow.indirect.RESULTS] item;
    - `tol`; `linear_solver`: `"dense"` or `"sparse"`; `shooting`: the discretization.
    """

    states: Float[Array, "*B Np1 n"]
    costates: Float[Array, "*B N n"]
    U: Float[Array, "*B N m"]
    state_residual: Float[Array, "*B"]
    costate_residual: Float[Array, "*B"]
    control_residual: Float[Array, "*B"]
    num_steps: Int[Array, "*B"]
    result: RESULTS
    tol: float = eqx.field(static=True)
    linear_solver: str = eqx.field(static=True)
    shooting: Shooting
    _arrays: ClassVar[tuple[str, ...]] = ("states", "costates", "U")

    def _record(self, include_arrays: bool) -> dict[str, Any]:
        return dict(
            problem=self.shooting.problem.name,
            scheme=self.shooting.scheme.name,
            N=self.shooting.N,
            num_steps=self.num_steps,
            tol=self.tol,
            linear_solver=self.linear_solver,
            state_residual=self.state_residual,
            costate_residual=self.costate_residual,
            control_residual=self.control_residual,
            states=self.states,
            costates=self.costates,
            U=self.U,
        )

    def _summary(self) -> str:
        return (
            f"{self.shooting.problem.name}, N={self.shooting.N}, {int(self.num_steps)} Newton "
            f"steps, residuals x {format_number(float(self.state_residual), '.1e')}, lambda "
            f"{format_number(float(self.costate_residual), '.1e')}, dH/du "
            f"{format_number(float(self.control_residual), '.1e')}"
        )


def _stage_residual(sh: Shooting, x_prev, z, z_next, h, h_next, last, lower, upper):
    """The three residual blocks of stage k, unknowns z_k = (x_{k+1}, lambda_k, u_k):

    r_x = x_{k+1} - Phi(x_k, u_k, h_k)
    r_l = lambda_k - (dPhi/dx(x_{k+1}, u_{k+1}, h_{k+1}))^T lambda_{k+1}   (k < N-1)
        = lambda_{N-1} - grad E(x_N)                                      (k = N-1)
    r_u = h_k^{-1} (dPhi/du(x_k, u_k, h_k))^T lambda_k

    With control bounds r_u is the natural residual u_k - P(u_k - r_u) of the box
    (`lower`, `upper` of stage k): zero exactly where u_k minimises H over the box to
    first order. It is piecewise smooth, and its forward-mode Jacobian is a generalized
    Jacobian (rows e_u on the active set), so Newton on it is semismooth Newton.
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
    r_u = phi_u_t_lam / h
    if sh.bounds is not None:
        r_u = u - jnp.clip(u - r_u, lower, upper)
    return jnp.concatenate([x - phi, lam - target, r_u])


def _stage_inputs(sh: Shooting, Z: Array):
    N, s = Z.shape
    n = sh.state_dim
    x_prev = jnp.concatenate([sh.problem.augmented_x0()[None], Z[:-1, :n]], axis=0)
    z_next = jnp.concatenate([Z[1:], jnp.zeros((1, s), Z.dtype)], axis=0)
    h = sh.steps
    h_next = jnp.concatenate([h[1:], h[-1:]])
    last = jnp.arange(N) == N - 1
    if sh.bounds is None:  # unused: the unbounded residual does not read them
        lower = upper = jnp.zeros((N, 0), Z.dtype)
    else:
        lower, upper = sh.bounds
    return x_prev, Z, z_next, h, h_next, last, lower, upper


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
    import scipy.sparse  # on first use: the indirect side does not load scipy on import
    import scipy.sparse.linalg

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


def _newton_conditions(sh: Shooting, Z0, tol, max_steps, dense: bool, line_search: bool):
    """Newton's method on the residual of (36), with a backtracking line search on
    |R|_2^2 (Armijo, c = 1e-4, at most 30 halvings). Returns (Z, R, iterations, code)
    with `code` indexing `CODES`."""
    solve = _dense_solve if dense else _sparse_solve

    def merit(R):
        return jnp.sum(R * R)

    R0 = _residual(sh, Z0)
    # codes: -1 running, then the index in CODES
    init = dict(Z=Z0, R=R0, it=jnp.array(0), code=jnp.array(-1))
    C_CONV, C_MAX, C_DIV, C_SING, C_LS = 0, 1, 2, 3, 4

    def cond(c):
        return (c["code"] < 0) & (c["it"] < max_steps)

    def body(c):
        Z, R = c["Z"], c["R"]
        delta = solve(_jacobian_blocks(sh, Z), R)
        finite_delta = jnp.all(jnp.isfinite(delta))
        delta = jnp.where(finite_delta, delta, 0.0)
        small = jnp.max(jnp.abs(delta) / (tol * (1.0 + jnp.abs(Z)))) <= 1.0
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


_newton_jit = eqx.filter_jit(_newton_conditions)
_newton_batch = eqx.filter_jit(
    eqx.filter_vmap(_newton_conditions, in_axes=(None, 0, None, None, None, None))
)


def _guess_from_controls(sh: Shooting, U: Array) -> Array:
    if sh.bounds is not None:
        U = jnp.clip(U, *sh.bounds)
    xs = sh.states(U)
    lams = sh.costates(U)
    return jnp.concatenate([xs[1:], lams, U], axis=1)


def _initial_unknowns(sh: Shooting, guess: Any) -> Array:
    N, n, m = sh.N, sh.state_dim, sh.control_dim
    if guess is None:
        return _guess_from_controls(sh, sh.zeros())
    if isinstance(guess, ConditionsSolution):
        guess = (guess.states, guess.costates, guess.U)
    if isinstance(guess, tuple | list) and not hasattr(guess, "shape"):
        if len(guess) != 3:
            raise ValueError(
                f"`guess` as a tuple must be (states, costates, controls); got {len(guess)} items."
            )
        states, costates, controls = guess
        shape = tuple(getattr(states, "shape", np.shape(states)))
        if shape == (N + 1, n):
            states = states[1:]
        states = real_array(states, "guess states", (N, n), "x_1..x_N, or x_0..x_N as (N+1, n)")
        costates = real_array(costates, "guess costates", (N, n), "lambda_0..lambda_{N-1}")
        controls = real_array(controls, "guess controls", (N, m), "u_0..u_{N-1}")
        return jnp.concatenate([states, costates, controls], axis=1)
    arr = guess if hasattr(guess, "shape") else np.asarray(guess)
    if arr.ndim == 3:
        S = arr.shape[0]
        U = real_array(arr, "guess", (S, N, m), "a batch of controls, (S, N, m)")
        return jax.vmap(lambda V: _guess_from_controls(sh, V))(U)
    U = real_array(guess, "guess", (N, m), "controls u_0..u_{N-1}; or a tuple")
    return _guess_from_controls(sh, U)


def solve_conditions(
    shooting: Shooting,
    guess: RealArrayLike | ConditionsSolution | tuple | None = None,
    *,
    tol: float = 1e-10,
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

    With control bounds (`shooting.bounds`) the control equations become the discrete
    minimum principle's first-order condition, $u_k - P_B(u_k - \partial_u H_k) = 0$
    ($u_k$ minimises $H(\lambda_k, x_k, \cdot)$ over the box to first order), solved by
    semismooth Newton (the same iteration: the Jacobian of the clip is the generalized
    one); a control guess is projected onto the box. The bounded form of Proposition
    4.5: the solution is the KKT point that
    [`stability.equilibrium`][stability.equilibrium] finds, with the same costates.

    **Arguments:**

    - `shooting`: a [`Shooting`][flow.Shooting] (any scheme).
    - `guess`: `None` (the zero control), controls `(N, m)` (states and costates
      then follow from the forward and adjoint recursions), a tuple
      `(states, costates, controls)` with states `(N, n)` ($x_1..x_N$) or `(N+1, n)`,
      costates `(N, n)`, controls `(N, m)`, a previous `ConditionsSolution`, or a
      batch of controls `(S, N, m)`: then every field of the result has a leading
      axis `S` (one vmapped Newton run per guess; `result.statuses` names each).
    - `tol`: converged when a full Newton step satisfies
      $|\delta z_i| \le$ `tol` $(1 + |z_i|)$ for every unknown (the next iterate is
      then accurate to about the square of that).
    - `max_steps`: Newton iterations; `linear_solver`: `"auto"`, `"dense"` or `"sparse"`.
    - `line_search`: backtracking on $\|R\|^2$ (default); `False` for pure Newton.
    - `throw`: raise [`ConvergenceError`][flow.ConvergenceError] (or
      [`DivergenceError`][flow.DivergenceError]) when not converged; `False`
      returns the status (always for a batch).

    **Returns:** a [`ConditionsSolution`][flow.indirect.ConditionsSolution].

    **Raises:** `TypeError`/`ValueError` for a bad argument (naming it), for example
    a guess of the wrong shape.
    """
    sh = instance(shooting, "shooting", Shooting, "from flow.shoot(problem, N)")
    tol = positive_float(tol, "tol")
    max_steps = positive_int(max_steps, "max_steps")
    choice(linear_solver, "linear_solver", _LINEAR_SOLVERS)
    Z0 = _initial_unknowns(sh, guess)
    batched = Z0.ndim == 3
    size = Z0[0].size if batched else Z0.size
    dense = size <= DENSE_CONDITIONS_MAX if linear_solver == "auto" else linear_solver == "dense"
    kernel = _newton_batch if batched else _newton_jit
    Z, R, it, code = kernel(
        sh, Z0, jnp.asarray(tol), jnp.asarray(max_steps), bool(dense), bool(line_search)
    )
    n = sh.state_dim
    x0 = jnp.broadcast_to(sh.problem.augmented_x0(), Z.shape[:-2] + (1, n))
    absR = jnp.abs(R)
    sol = ConditionsSolution(
        states=jnp.concatenate([x0, Z[..., :n]], axis=-2),
        costates=Z[..., n : 2 * n],
        U=Z[..., 2 * n :],
        state_residual=jnp.max(absR[..., :n], axis=(-2, -1)),
        costate_residual=jnp.max(absR[..., n : 2 * n], axis=(-2, -1)),
        control_residual=jnp.max(absR[..., 2 * n :], axis=(-2, -1)),
        num_steps=it,
        result=_from_code(code),
        tol=tol,
        linear_solver="dense" if dense else "sparse",
        shooting=sh,
    )
    if throw and not batched:
        sol.raise_for_status(
            "solve_conditions",
            "Try a better guess (e.g. the controls of a direct method) or more max_steps.",
        )
    return sol
