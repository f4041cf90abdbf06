"""One-step schemes x_{k+1} = Phi(x_k, u_k, h_k) with piecewise-constant controls."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
from jaxtyping import Array, Float


VectorField = Callable[[Array, Array], Array]


class AbstractScheme(eqx.Module):
    r"""A one-step map $x_{k+1} = \Phi(x_k, u_k, h_k)$ for $\dot x = f(x, u)$, with
    $u$ held constant on $[t_k, t_{k+1})$.

    Subclasses are final and implement [`step`][]; `order` is the classical order
    of the scheme for smooth controls (with piecewise-constant controls the
    optimal *cost* converges at order at most 2, see the user guide).
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


SCHEMES: dict[str, type[AbstractScheme]] = {cls.name: cls for cls in (Euler, Heun, RK4)}


def scheme_from_name(name: str) -> AbstractScheme:
    """`"euler" | "heun" | "rk4"` -> a scheme instance (case-insensitive)."""
    try:
        return SCHEMES[name.lower()]()
    except KeyError:
        raise ValueError(f"`scheme` must be one of {sorted(SCHEMES)}; got {name!r}.") from None
