r"""The parameterized problem $(Q^N_C)$ (paper eqs. (40)-(43)): $U = BC$ with a
sampled basis $B$, as an ordinary [`Shooting`][flow.Shooting] in the coefficients
$C$, the $L^2$ metric in $C$, and the check for spurious stationary points
(Remark 5.13). The bases and their rank report are in `flow/_bases.py`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._bases import AbstractBasis, _svd_rank, basis_matrix
from ._custom_types import RealArrayLike
from ._encoding import format_number
from ._metrics import Fixed
from ._problem import OptimalControlProblem
from ._results import AbstractRecord
from ._schemes import AbstractScheme
from ._shooting import Shooting
from ._validation import instance, positive_float


class Parameterized(AbstractScheme):
    r"""The one-step map of a parameterized problem $(Q^N_C)$ (eq. (41)): one step
    over the whole horizon $[t_0, t_f]$ with the $p$ coefficients $C$ as control,

    $$\Phi_B(x_0, C, t_f - t_0) = x_N(U), \qquad U = B C,$$

    i.e. the whole inner shooting ($x_{k+1} = \Phi(x_k, u_k, h_k)$ on the inner
    grid) run with the controls $U = BC$. Built by
    [`parameterize`][flow.controls.parameterize]; not used on its own.

    **Fields:** `shooting` (the inner [`Shooting`][flow.Shooting]), `matrix` ($B$,
    `(N*m, p)`), `basis` (its label).
    """

    order: ClassVar[int] = 0
    name: ClassVar[str] = "parameterized"
    shooting: Shooting
    matrix: Float[Array, "Nm p"]
    basis: str = eqx.field(static=True)

    def controls(self, C: Any) -> Float[Array, "N m"]:
        r"""$U = BC$ reshaped to `(N, m)`; `C` of shape `(1, p)` or `(p,)`."""
        C = jnp.asarray(C)
        return (self.matrix @ C.reshape(-1)).reshape(self.shooting.control_shape)

    def step(self, f, x, u, h):
        del f, h  # the inner scheme integrates the inner problem's dynamics
        inner = self.shooting
        U = self.controls(u)

        def body(y, inp):
            uk, hk = inp
            return inner.scheme.step(inner.problem.augmented_dynamics, y, uk, hk), None

        body = jax.checkpoint(body, policy=jax.checkpoint_policies.nothing_saveable)
        xN, _ = jax.lax.scan(body, x, (U, inner.steps))
        return xN

    def adjoint(self, f, x, u, h, lam):
        r"""The inner discrete adjoint (23) run back over the inner grid from
        $\lambda_{N-1} = $ `lam`, each inner step by its scheme's
        [`adjoint`][flow.AbstractScheme.adjoint]: $\lambda_{-1}$ (the sensitivity to
        $x_0$) and $B^T\nabla_U$ (eq. (43))."""
        del f, h
        inner = self.shooting
        F = inner.problem.augmented_dynamics
        U = self.controls(u)

        def forward(y, inp):
            uk, hk = inp
            return inner.scheme.step(F, y, uk, hk), y

        _, xs = jax.lax.scan(forward, x, (U, inner.steps))

        def backward(mu, inp):
            xk, uk, hk = inp
            mu_prev, g = inner.scheme.adjoint(F, xk, uk, hk, mu)
            return mu_prev, g

        mu0, G = jax.lax.scan(backward, lam, (xs, U, inner.steps), reverse=True)
        return mu0, (self.matrix.T @ G.reshape(-1)).reshape(jnp.shape(u))


def parameterize(shooting: Shooting, basis: AbstractBasis | RealArrayLike) -> Shooting:
    r"""The parameterized problem $(Q^N_C)$, eq. (41): minimise
    $E^N(C) = E(x_N(U(C)))$ with $U = BC$, as a [`Shooting`][flow.Shooting].

    The result is an ordinary `Shooting` with **one interval** $[t_0, t_f]$ and
    control dimension $p$: its one-step map is [`Parameterized`][flow.controls.Parameterized]
    (the whole inner shooting with $U = BC$). So `flow.descend`,
    `flow.gradient_flow`, `stability.equilibrium`, `stability.spectrum`,
    `stability.analyze` and every `Shooting` method work on it unchanged:

    - controls are $C$ with shape `(1, p)` (`zeros()`, `check_controls`);
    - `cost(C)` $= E^N(BC)$; `gradient(C)` $= B^T\nabla_U E^N$ (eq. (43)) by
      autodiff, the adjoint, or finite differences; `hessian_vector_product`
      and `hessian` ($B^T\nabla^2_U E^N B$, `(p, p)`) are in $C$;
    - `steps` is $[t_f - t_0]$, so the Hamiltonian metric and the Hamiltonian
      residual (`descend`'s default `stop_on`) are $\nabla_C E^N/(t_f - t_0)$, a
      scaled gradient, *not* $\max_k|\partial_u H|$: use
      [`spurious_check`][flow.controls.spurious_check] for the Hamiltonian
      condition of the original problem, and [`l2_metric`][flow.controls.l2_metric]
      for the $L^2$ metric in $C$;
    - `costates` are those of the one big step ($\nabla E(x_N)$ only).

    Use [`expand`][flow.controls.expand] for $U = BC$ on the original grid and
    [`original`][flow.controls.original] for the inner `Shooting`.

    **Arguments:** `shooting`, a [`Shooting`][flow.Shooting] (not itself
    parameterized); `basis`, an [`AbstractBasis`][flow.controls.AbstractBasis] or
    a matrix of shape `(N*m, p)` in the module's ordering.

    **Raises:** `TypeError` for a wrong type; `ValueError` when $B$ does not have
    $Nm$ rows for this grid or is not finite.
    """
    instance(shooting, "shooting", Shooting, "from flow.shoot")
    if isinstance(shooting.scheme, Parameterized):
        raise ValueError(
            "`shooting` is already parameterized; compose the matrices instead "
            "(B_total = B_outer @ B_inner) and parameterize the original shooting."
        )
    B_np = basis_matrix(basis, shooting, shooting.control_dim)
    if shooting.bounds is not None:
        raise ValueError(
            "`shooting` has control bounds; parameterize does not support them (a box on "
            "U = BC is a general linear constraint on C, not a box)."
        )
    label = basis.label() if isinstance(basis, AbstractBasis) else "matrix"
    B = jnp.asarray(B_np)
    p = int(B.shape[1])
    problem = shooting.problem
    m = shooting.control_dim
    B_first = B[:m]

    def reduced_dynamics(x, c):
        # Only used to validate shapes: the one-step map is the inner shooting.
        return problem.augmented_dynamics(x, B_first @ c)

    def reduced_endpoint(x):
        return problem.augmented_endpoint_cost(x)

    reduced = OptimalControlProblem(
        reduced_dynamics,
        reduced_endpoint,
        np.asarray(problem.augmented_x0()),
        problem.t0,
        problem.tf,
        control_dim=p,
        name=f"{problem.name}|{label}",
    )
    scheme = Parameterized(shooting=shooting, matrix=B, basis=label)
    grid = jnp.asarray([problem.t0, problem.tf], dtype=jnp.float64)
    return Shooting(problem=reduced, scheme=scheme, grid=grid)


def _parameterization(param: Any, name: str = "param") -> Parameterized:
    if not isinstance(param, Shooting) or not isinstance(param.scheme, Parameterized):
        raise TypeError(
            f"`{name}` must be a parameterized Shooting from flow.controls.parameterize; "
            f"got {param!r}."
        )
    return param.scheme


def is_parameterized(shooting: object) -> bool:
    """True for a `Shooting` made by [`parameterize`][flow.controls.parameterize]."""
    return isinstance(shooting, Shooting) and isinstance(shooting.scheme, Parameterized)


def original(param: Shooting) -> Shooting:
    """The inner (original) [`Shooting`][flow.Shooting] of a parameterized one."""
    return _parameterization(param).shooting


def expand(param: Shooting, C: RealArrayLike) -> Float[Array, "N m"]:
    r"""$U = BC$ on the original grid, shape `(N, m)`; `C` of shape `(1, p)` (a
    control of `param`) or `(p,)`."""
    P = _parameterization(param)
    C = _as_coefficients(param, C)
    return P.controls(C)


def _as_coefficients(param: Shooting, C: Any) -> Array:
    p = param.control_dim
    if not hasattr(C, "shape") or not hasattr(C, "dtype"):
        C = np.asarray(C)
    if tuple(C.shape) == (p,):
        C = jnp.asarray(C).reshape(1, p)
    return param.check_controls(C, "C")


def l2_metric(param: Shooting) -> Fixed:
    r"""The $L^2$ (Hamiltonian) metric in $C$: $M_C = B^T (\mathrm{diag}(h_k)\otimes I_m) B$
    (the Gram matrix of the sampled basis; with it the flow in $C$ is the $L^2$
    projection of $-\partial H/\partial U$ onto the span of $B$).

    **Returns:** a [`flow.metrics.Fixed`][flow.metrics.Fixed] metric for `param`.

    **Raises:** `ValueError` when $B$ is rank deficient (the Gram matrix is
    singular: see [`rank_report`][flow.controls.rank_report]).
    """
    P = _parameterization(param)
    B = np.asarray(P.matrix)
    _, _, rank = _svd_rank(B, None)
    if rank < B.shape[1]:
        raise ValueError(
            f"`param`: the L2 Gram matrix B^T diag(h) B is not positive definite: B has "
            f"rank {rank} < p = {B.shape[1]} on this grid (see flow.controls.rank_report)."
        )
    m = P.shooting.control_dim
    w = np.repeat(np.asarray(P.shooting.steps), m)
    gram = B.T @ (w[:, None] * B)
    return Fixed(0.5 * (gram + gram.T))


# ------------------------------------------------------------ spurious check
class SpuriousCheck(AbstractRecord):
    r"""Is a stationary point in $C$ (eq. (52)) a stationary point in $U$ ((51))?

    With $g = \nabla_U E^N(BC)$ (eq. (43): $\nabla_C E^N = B^T g$):

    - `gradient_C_norm` $= \|B^T g\|_\infty$; `gradient_U_norm` $= \|g\|_\infty$;
    - `hamiltonian_norm` $= \max_k |\partial_u H_k|$ of the original problem
      (Lemma 2; $\nabla_{u_k} E^N / h_k$ for schemes other than Euler);
    - `visible_fraction` $= \|B^T g\|_2 / (\sigma_{max}(B)\,\|g\|_2) \in [0, 1]$: the
      part of $g$ the coefficients can see (0 when $g \in \ker B^T$);
    - `stationary_in_C`: `gradient_C_norm <= tol`; `stationary_in_U`:
      `hamiltonian_norm <= hamiltonian_tol`;
    - `spurious`: stationary in $C$ but not in $U$ (Remark 5.13);
    - `rank`, `rows`: of $B$ (a spurious point needs `rank < rows`);
    - `cost`: $E^N(BC)$.
    """

    cost: float
    gradient_C_norm: float
    gradient_U_norm: float
    hamiltonian_norm: float
    visible_fraction: float
    tol: float
    hamiltonian_tol: float
    rank: int
    rows: int

    @property
    def stationary_in_C(self) -> bool:
        """`gradient_C_norm <= tol`."""
        return self.gradient_C_norm <= self.tol

    @property
    def stationary_in_U(self) -> bool:
        """`hamiltonian_norm <= hamiltonian_tol`."""
        return self.hamiltonian_norm <= self.hamiltonian_tol

    @property
    def spurious(self) -> bool:
        """Stationary in C, not in U."""
        return self.stationary_in_C and not self.stationary_in_U

    def _record(self, include_arrays: bool) -> dict[str, Any]:
        out = self._fields()
        out.update(
            stationary_in_C=self.stationary_in_C,
            stationary_in_U=self.stationary_in_U,
            spurious=self.spurious,
        )
        return out

    def _summary(self) -> str:
        verdict = (
            "SPURIOUS stationary point"
            if self.spurious
            else ("stationary" if self.stationary_in_C else "not stationary in C")
        )
        return (
            f"{verdict}: |B^T g| = {format_number(self.gradient_C_norm, '.2e')}, |g| = "
            f"{format_number(self.gradient_U_norm, '.2e')}, max|dH/du| = "
            f"{format_number(self.hamiltonian_norm, '.2e')}"
        )


def spurious_check(
    shooting: Shooting,
    C: RealArrayLike,
    *,
    basis: AbstractBasis | RealArrayLike | None = None,
    tol: float = 1e-8,
    hamiltonian_tol: float = 1e-6,
) -> SpuriousCheck:
    r"""Detect a spurious stationary point (Remark 5.13): $\|B^T g\|$ small while
    $g = \nabla_U E^N$ and $\partial H/\partial u$ are not.

    **Arguments:**

    - `shooting`: a parameterized `Shooting` (from
      [`parameterize`][flow.controls.parameterize]; then `basis` must be None), or
      the original `Shooting` together with `basis`;
    - `C`: coefficients, shape `(1, p)` or `(p,)`;
    - `tol`: the stationarity tolerance in $C$ on $\|B^T g\|_\infty$;
    - `hamiltonian_tol`: the tolerance on $\max_k|\partial_u H_k|$ for
      stationarity in $U$.

    **Returns:** a [`SpuriousCheck`][flow.controls.SpuriousCheck] with both numbers.
    """
    tol = positive_float(tol, "tol")
    hamiltonian_tol = positive_float(hamiltonian_tol, "hamiltonian_tol")
    if is_parameterized(shooting):
        if basis is not None:
            raise ValueError("`basis` must be None for a parameterized shooting (it has one).")
        param = shooting
    elif isinstance(shooting, Shooting):
        if basis is None:
            raise ValueError(
                "`basis` is required with an unparameterized shooting: "
                "spurious_check(shooting, C, basis=...)."
            )
        param = parameterize(shooting, basis)
    else:
        raise TypeError(f"`shooting` must be a flow.Shooting; got {type(shooting).__name__}.")
    P = param.scheme
    inner = P.shooting
    C = _as_coefficients(param, C)
    U = P.controls(C)
    g = inner.gradient(U)
    dH = inner.hamiltonian_gradient(U)
    B = np.asarray(P.matrix)
    g_flat = np.asarray(g).reshape(-1)
    gC = B.T @ g_flat
    s, _, rank = _svd_rank(B, None)
    g2 = float(np.linalg.norm(g_flat))
    visible = float(np.linalg.norm(gC) / (s[0] * g2)) if g2 > 0 and s[0] > 0 else 0.0
    return SpuriousCheck(
        cost=float(inner.cost(U)),
        gradient_C_norm=float(np.max(np.abs(gC))),
        gradient_U_norm=float(np.max(np.abs(g_flat))),
        hamiltonian_norm=float(jnp.max(jnp.abs(dH))),
        visible_fraction=visible,
        tol=tol,
        hamiltonian_tol=hamiltonian_tol,
        rank=rank,
        rows=int(B.shape[0]),
    )
