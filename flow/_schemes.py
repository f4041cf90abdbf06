"""One-step schemes x_{k+1} = Phi(x_k, u_k, h_k) with piecewise-constant controls."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
from jaxtyping import Array, Float


VectorField = Callable[[Array, Array], Array]


def _linearize(f: VectorField, x: Array, u: Array):
    """f(x, u) and its transposed Jacobian v -> (f_x^T v, f_u^T v) at (x, u): the only
    derivative the hand-written adjoints below take (of the right-hand side, never of
    the step map)."""
    return jax.vjp(f, x, u)


class AbstractScheme(eqx.Module):
    r"""A one-step map $x_{k+1} = \Phi(x_k, u_k, h_k)$ for $\dot x = f(x, u)$, with
    $u$ held constant on $[t_k, t_{k+1})$.

    Subclasses are final and implement [`step`][] and its discrete adjoint
    [`adjoint`][]; `order` is the classical order of the scheme for smooth controls
    (with piecewise-constant controls the optimal *cost* converges at order at most
    2, see the user guide).
    """

    order: ClassVar[int]
    name: ClassVar[str]

    @abc.abstractmethod
    def step(
        self,
        f: VectorField,
        x: Float[Array, " n"],
        u: Float[Array, " m"],
        h: Float[Array, ""],
    ) -> Float[Array, " n"]:
        """One step of length `h` from `x` with the control `u` held constant."""

    @abc.abstractmethod
    def adjoint(
        self,
        f: VectorField,
        x: Float[Array, " n"],
        u: Float[Array, " m"],
        h: Float[Array, ""],
        lam: Float[Array, " n"],
    ) -> tuple[Float[Array, " n"], Float[Array, " m"]]:
        r"""The transposed derivatives of one step applied to `lam`:
        $\big(\partial_x\Phi(x, u, h)^T\lambda,\ \partial_u\Phi(x, u, h)^T\lambda\big)$.

        With $\lambda = \lambda_k$ these are $\lambda_{k-1}$ of the adjoint
        recursion (23) and $\partial E^N/\partial u_k$. Written out stage by stage
        (the discrete adjoint of a Runge-Kutta scheme, Hager 2000), from the
        transposed Jacobians of `f` at the stage points only: it does not
        differentiate [`step`][], so `Shooting.gradient(U, "costate")` is independent
        of reverse-mode differentiation of the scan.
        """


class Euler(AbstractScheme):
    r"""Forward Euler, paper eq. (16): $\Phi(x, u, h) = x + h f(x, u)$. Order 1.

    With this scheme the discrete costates obey the backward-Euler adjoint (23)
    and $\partial E^N/\partial u_k = h_k\,\partial_u H(\lambda_k, x_k, u_k)$
    exactly (Lemma 2, eq. (49)).
    """

    order: ClassVar[int] = 1
    name: ClassVar[str] = "euler"

    def step(self, f, x, u, h):
        return x + h * f(x, u)

    def adjoint(self, f, x, u, h, lam):
        r"""$\lambda + h\,\partial_x f(x, u)^T\lambda$ and $h\,\partial_u f(x, u)^T\lambda$
        (eqs. (23), (49))."""
        _, vjp = _linearize(f, x, u)
        fx_lam, fu_lam = vjp(lam)
        return lam + h * fx_lam, h * fu_lam


class Heun(AbstractScheme):
    r"""Heun's method (explicit trapezoid), order 2:

    $k_1 = f(x, u)$, $k_2 = f(x + h k_1, u)$, $\Phi = x + \tfrac{h}{2}(k_1 + k_2)$.
    """

    order: ClassVar[int] = 2
    name: ClassVar[str] = "heun"

    def step(self, f, x, u, h):
        k1 = f(x, u)
        k2 = f(x + h * k1, u)
        return x + 0.5 * h * (k1 + k2)

    def adjoint(self, f, x, u, h, lam):
        r"""With $X_2 = x + h k_1$ and $\bar k_i = \partial\Phi/\partial k_i$ pulled back:
        $\bar k_2 = \tfrac h2\lambda$, $\bar X_2 = f_x(X_2)^T\bar k_2$,
        $\bar k_1 = \tfrac h2\lambda + h\bar X_2$, $\bar X_1 = f_x(x)^T\bar k_1$;
        $\partial_x\Phi^T\lambda = \lambda + \bar X_1 + \bar X_2$ and
        $\partial_u\Phi^T\lambda = f_u(x)^T\bar k_1 + f_u(X_2)^T\bar k_2$."""
        k1, vjp1 = _linearize(f, x, u)
        _, vjp2 = _linearize(f, x + h * k1, u)
        X2, U2 = vjp2(0.5 * h * lam)
        X1, U1 = vjp1(0.5 * h * lam + h * X2)
        return lam + X1 + X2, U1 + U2


class RK4(AbstractScheme):
    r"""The classical fourth-order Runge-Kutta method:

    $k_1 = f(x, u)$, $k_2 = f(x + \tfrac h2 k_1, u)$, $k_3 = f(x + \tfrac h2 k_2, u)$,
    $k_4 = f(x + h k_3, u)$, $\Phi = x + \tfrac h6 (k_1 + 2k_2 + 2k_3 + k_4)$.
    """

    order: ClassVar[int] = 4
    name: ClassVar[str] = "rk4"

    def step(self, f, x, u, h):
        k1 = f(x, u)
        k2 = f(x + 0.5 * h * k1, u)
        k3 = f(x + 0.5 * h * k2, u)
        k4 = f(x + h * k3, u)
        return x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)

    def adjoint(self, f, x, u, h, lam):
        r"""The stages pulled back in reverse order, $\bar X_i = f_x(X_i)^T\bar k_i$:
        $\bar k_4 = \tfrac h6\lambda$, $\bar k_3 = \tfrac h3\lambda + h\bar X_4$,
        $\bar k_2 = \tfrac h3\lambda + \tfrac h2\bar X_3$,
        $\bar k_1 = \tfrac h6\lambda + \tfrac h2\bar X_2$;
        $\partial_x\Phi^T\lambda = \lambda + \sum_i\bar X_i$ and
        $\partial_u\Phi^T\lambda = \sum_i f_u(X_i)^T\bar k_i$."""
        k1, vjp1 = _linearize(f, x, u)
        k2, vjp2 = _linearize(f, x + 0.5 * h * k1, u)
        k3, vjp3 = _linearize(f, x + 0.5 * h * k2, u)
        _, vjp4 = _linearize(f, x + h * k3, u)
        X4, U4 = vjp4((h / 6.0) * lam)
        X3, U3 = vjp3((h / 3.0) * lam + h * X4)
        X2, U2 = vjp2((h / 3.0) * lam + 0.5 * h * X3)
        X1, U1 = vjp1((h / 6.0) * lam + 0.5 * h * X2)
        return lam + X1 + X2 + X3 + X4, U1 + U2 + U3 + U4


SCHEMES: dict[str, type[AbstractScheme]] = {cls.name: cls for cls in (Euler, Heun, RK4)}


def scheme_from_name(name: str) -> AbstractScheme:
    """`"euler" | "heun" | "rk4"` -> a scheme instance (case-insensitive)."""
    try:
        return SCHEMES[name.lower()]()
    except KeyError:
        raise ValueError(f"`scheme` must be one of {sorted(SCHEMES)}; got {name!r}.") from None
