"""Built-in mechanical problems (`flow.problems`): the cart-pole, the unicycle and the
double integrator."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from . import _validation as validation
from ._costs import ControlPenalty, TargetPenalty
from ._custom_types import Real
from ._problem import OptimalControlProblem


def _cart_pole_dynamics(x, u):
    mc, mp, l, g = 1.0, 0.1, 0.5, 9.81
    th, pd, thd = x[1], x[2], x[3]
    s, c = jnp.sin(th), jnp.cos(th)
    den = mc + mp * s**2
    pdd = (u[0] + mp * s * (l * thd**2 + g * c)) / den
    thdd = (-u[0] * c - mp * l * thd**2 * c * s - (mc + mp) * g * s) / (l * den)
    return jnp.stack([pd, thd, pdd, thdd])


def cart_pole(
    T: Real = 2.0, terminal_weight: float = 100.0, control_weight: float = 0.01
) -> OptimalControlProblem:
    r"""Cart-pole swing-up with a terminal penalty (n = 4, m = 1).

    State $x = (p, \theta, \dot p, \dot\theta)$ with $\theta = 0$ hanging down
    and $\theta = \pi$ upright; force $u$ on the cart; cart mass 1, pole mass
    0.1, pole length 0.5, $g = 9.81$ (the frictionless model of Barto, Sutton
    and Anderson, 1983, in the form of Tedrake's *Underactuated Robotics*):

    $\ddot p = \frac{u + m_p \sin\theta (l \dot\theta^2 + g\cos\theta)}
                    {m_c + m_p \sin^2\theta}$,
    $\ddot\theta = \frac{-u\cos\theta - m_p l \dot\theta^2 \cos\theta\sin\theta
                    - (m_c + m_p) g \sin\theta}{l (m_c + m_p \sin^2\theta)}$.

    Cost $\tfrac{w_T}{2} \|x(T) - (0, \pi, 0, 0)\|^2 + \int_0^T \tfrac{w_u}{2} u^2 dt$
    from rest hanging down. Strongly nonconvex: many local minimisers.
    """
    return OptimalControlProblem(
        _cart_pole_dynamics,
        TargetPenalty(
            validation.positive_float(terminal_weight, "terminal_weight"), (0.0, np.pi, 0.0, 0.0)
        ),
        x0=[0.0, 0.0, 0.0, 0.0],
        t0=0.0,
        tf=float(T),
        running_cost=ControlPenalty(validation.positive_float(control_weight, "control_weight")),
        control_dim=1,
        name="cart_pole",
    )


def _unicycle_dynamics(x, u):
    return jnp.stack([u[0] * jnp.cos(x[2]), u[0] * jnp.sin(x[2]), u[1]])


def unicycle(T: Real = 2.0, terminal_weight: float = 10.0) -> OptimalControlProblem:
    r"""A unicycle (Dubins-type car) steered to a target pose (n = 3, m = 2).

    $\dot p_x = v\cos\theta$, $\dot p_y = v\sin\theta$, $\dot\theta = \omega$ with
    controls $u = (v, \omega)$, from $(0, 0, 0)$; cost
    $\tfrac{w_T}{2}\|x(T) - (1, 1, \pi/2)\|^2 + \int_0^T \tfrac12 (v^2 + \omega^2)
    dt$. Nonlinear in both state and control (bilinear $v\cos\theta$).
    """
    return OptimalControlProblem(
        _unicycle_dynamics,
        TargetPenalty(
            validation.positive_float(terminal_weight, "terminal_weight"), (1.0, 1.0, np.pi / 2)
        ),
        x0=[0.0, 0.0, 0.0],
        t0=0.0,
        tf=float(T),
        running_cost=ControlPenalty(1.0),
        control_dim=2,
        name="unicycle",
    )


def _double_integrator_dynamics(x, u):
    return jnp.stack([x[1], u[0]])


def double_integrator(terminal_weight: Real = 100.0, T: Real = 1.0) -> OptimalControlProblem:
    r"""A rest-to-rest transfer of a double integrator (n = 2, m = 1): $\dot p = v$,
    $\dot v = u$ from $(0, 0)$, cost $\tfrac{w}{2}\|x(T) - (1, 0)\|^2 +
    \int_0^T \tfrac12 u^2\,dt$.

    Linear-quadratic, so $E^N$ is exactly quadratic: $\nabla^2 E^N = h I + w\,G^\top G$
    with $G = \partial x_N/\partial U$ of rank 2. Under the Hamiltonian metric
    $M = hI$ the eigenvalues of $M^{-1}\nabla^2E^N$ are 1 ($N m - 2$ times) and two
    above it, and the error of a start $U_0 = 0$, $U_0 - U^* = -U^*$, lies in the
    span of the two: the worst-case step $\alpha_{opt} = 2/(\mu_{\min} +
    \mu_{\max})$ is tuned for modes the start does not excite (issue #16).
    """
    w = validation.positive_float(terminal_weight, "terminal_weight")
    return OptimalControlProblem(
        _double_integrator_dynamics,
        TargetPenalty(w, (1.0, 0.0)),
        x0=[0.0, 0.0],
        t0=0.0,
        tf=validation.positive_float(T, "T"),
        running_cost=ControlPenalty(1.0),
        control_dim=1,
        name="double_integrator",
    )
