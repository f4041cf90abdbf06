"""The gradient-equivalence check: three gradients and Lemma 2 on one problem."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._custom_types import RealArrayLike
from ._encoding import format_number
from ._results import AbstractRecord
from ._shooting import Shooting
from ._validation import instance


#: Largest N*m for which `check_gradients` also runs finite differences.
FD_CHECK_MAX = 2000


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    """max|a - b| / max|b| (inf-norm relative difference; 0 when both vanish)."""
    scale = float(np.max(np.abs(b)))
    diff = float(np.max(np.abs(a - b)))
    return diff / scale if scale > 0 else diff


class GradientCheck(AbstractRecord):
    r"""Result of [`check_gradients`][]: how well the gradient routes agree.

    All differences are inf-norm relative to the autodiff gradient:
    $\max|a - b| / \max|b|$.

    - `costate_vs_autodiff`: the hand-written adjoint recursion against `jax.grad`
      (should be ~1e-15, rounding);
    - `fd_vs_autodiff`: central finite differences against `jax.grad` (limited by
      the difference step, ~1e-8; `None` when N*m > `FD_CHECK_MAX`);
    - `lemma2`: $\nabla E^N$ against $h_k\,\partial_u H(\lambda_k, x_k, u_k)$
      (Lemma 2, eq. (49); exact for Euler, a definition for other schemes).
    """

    problem: str
    scheme: str
    N: int
    cost: float
    gradient_norm: float
    hamiltonian_residual: float
    costate_vs_autodiff: float
    fd_vs_autodiff: float | None
    lemma2: float

    def _summary(self) -> str:
        return (
            f"{self.problem}, {self.scheme}, N={self.N}: costate "
            f"{format_number(self.costate_vs_autodiff, '.1e')}, fd "
            f"{format_number(self.fd_vs_autodiff, '.1e')}, lemma2 "
            f"{format_number(self.lemma2, '.1e')}"
        )


def probe_control(shooting: Shooting) -> Float[Array, "N m"]:
    r"""A deterministic, smooth, non-trivial control for checks:
    $u_{k,i} = \tfrac12 \sin(\pi s_k + i + 1)$ with $s_k = (t_k - t_0)/(t_f - t_0)$."""
    s = (shooting.grid[:-1] - shooting.grid[0]) / (shooting.grid[-1] - shooting.grid[0])
    i = jnp.arange(shooting.control_dim, dtype=s.dtype)
    return 0.5 * jnp.sin(jnp.pi * s[:, None] + i[None, :] + 1.0)


def check_gradients(shooting: Shooting, U: RealArrayLike | None = None) -> GradientCheck:
    r"""Compare $\nabla E^N(U)$ by autodiff, costates and finite differences, and
    check Lemma 2, $\nabla E^N = h_k\,\partial_u H$ (eq. (49)).

    **Arguments:** `shooting`, a [`Shooting`][]; `U`, controls of shape (N, m)
    (default: [`probe_control`][]).

    **Returns:** a [`GradientCheck`][].
    """
    instance(shooting, "shooting", Shooting, "from flow.shoot")
    U = probe_control(shooting) if U is None else U
    g_ad = np.asarray(shooting.gradient(U, "autodiff"))
    g_co = np.asarray(shooting.gradient(U, "costate"))
    dH = np.asarray(shooting.hamiltonian_gradient(U))
    h = np.asarray(shooting.steps)[:, None]
    fd = None
    if shooting.N * shooting.control_dim <= FD_CHECK_MAX:
        fd = _rel(np.asarray(shooting.gradient(U, "finite-difference")), g_ad)
    return GradientCheck(
        problem=shooting.problem.name,
        scheme=shooting.scheme.name,
        N=shooting.N,
        cost=float(shooting.cost(U)),
        gradient_norm=float(np.max(np.abs(g_ad))),
        hamiltonian_residual=float(np.max(np.abs(dH))),
        costate_vs_autodiff=_rel(g_co, g_ad),
        fd_vs_autodiff=fd,
        lemma2=_rel(h * dH, g_ad),
    )
