"""The gradient-equivalence check: three gradients and Lemma 2 on one problem."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._custom_types import RealArrayLike
from ._encoding import format_number
from ._results import AbstractRecord
from ._shooting import (
    Shooting,
    _adjoint_impl,
    _cost_impl,
    _fd_gradient_impl,
    _hamiltonian_from_adjoint,
)
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
    grid = shooting.grid
    xp = jnp if isinstance(grid, jax.core.Tracer) else np  # numpy: no kernel per N
    grid = grid if xp is jnp else np.asarray(grid)
    s = (grid[:-1] - grid[0]) / (grid[-1] - grid[0])
    i = xp.arange(shooting.control_dim, dtype=s.dtype)
    U = 0.5 * xp.sin(xp.pi * s[:, None] + i[None, :] + 1.0)
    return U if xp is jnp else jax.device_put(U)


@eqx.filter_jit
def _check_kernel(
    sh: Shooting, U: Array, with_fd: bool
) -> tuple[Array, Array, Array, Array, Array | None]:
    """Everything `check_gradients` compares, in one compiled program: the autodiff
    and costate gradients, the Hamiltonian gradient (from the same adjoint pass as the
    costate gradient), the cost and (if `with_fd`) the finite-difference gradient.
    One compilation per N instead of five."""
    g_ad = jax.grad(_cost_impl, argnums=1)(sh, U)
    xs, (lams, g_co) = _adjoint_impl(sh, U, True)
    dH = _hamiltonian_from_adjoint(sh, U, xs, lams, g_co)
    cost = _cost_impl(sh, U)
    fd = _fd_gradient_impl(sh, U) if with_fd else None
    return g_ad, g_co, dH, cost, fd


def check_gradients(shooting: Shooting, U: RealArrayLike | None = None) -> GradientCheck:
    r"""Compare $\nabla E^N(U)$ by autodiff, costates and finite differences, and
    check Lemma 2, $\nabla E^N = h_k\,\partial_u H$ (eq. (49)).

    The routes are those of [`Shooting.gradient`][flow.Shooting.gradient] (`"autodiff"`,
    `"costate"`, `"finite-difference"`) and
    [`Shooting.hamiltonian_gradient`][flow.Shooting.hamiltonian_gradient], compiled
    together into one program.

    **Arguments:** `shooting`, a [`Shooting`][]; `U`, controls of shape (N, m)
    (default: [`probe_control`][]).

    **Returns:** a [`GradientCheck`][].
    """
    instance(shooting, "shooting", Shooting, "from flow.shoot")
    U = probe_control(shooting) if U is None else shooting.check_controls(U)
    with_fd = shooting.N * shooting.control_dim <= FD_CHECK_MAX
    g_ad, g_co, dH, cost, g_fd = jax.device_get(_check_kernel(shooting, U, with_fd))
    h = np.asarray(shooting.steps)[:, None]
    fd = None if g_fd is None else _rel(g_fd, g_ad)
    return GradientCheck(
        problem=shooting.problem.name,
        scheme=shooting.scheme.name,
        N=shooting.N,
        cost=float(cost),
        gradient_norm=float(np.max(np.abs(g_ad))),
        hamiltonian_residual=float(np.max(np.abs(dH))),
        costate_vs_autodiff=_rel(g_co, g_ad),
        fd_vs_autodiff=fd,
        lemma2=_rel(h * dH, g_ad),
    )
