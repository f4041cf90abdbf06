"""User problems for the `gradflow analyze --problem file.py:object` tests.

Loaded by path (`tests/fixtures_user_problem.py:problem`), as a user's own file
would be; pytest does not collect it (no `test_` prefix).
"""

import jax.numpy as jnp

import flow


def dynamics(x, u):
    """A damped oscillator driven by one control: n = 2, m = 1."""
    return jnp.stack([x[1], -x[0] - 0.2 * x[1] + u[0]])


def endpoint_cost(x):
    """Reach the origin at tf."""
    return 2.0 * jnp.sum(x**2)


def running_cost(x, u):
    """Quadratic running cost on the position and the control."""
    return 0.5 * (x[0] ** 2 + u[0] ** 2)


def make():
    """The problem, from a factory with no arguments."""
    return flow.OptimalControlProblem(
        dynamics,
        endpoint_cost,
        x0=[1.0, 0.0],
        t0=0.0,
        tf=2.0,
        running_cost=running_cost,
        control_dim=1,
        name="damped_oscillator",
    )


#: The problem object itself.
problem = make()

#: Not a problem.
not_a_problem = 3


def needs_arguments(stiffness, damping):
    """A factory with required arguments: the command line cannot call it."""
    return make()


def broken():
    """A factory that raises."""
    raise RuntimeError("the factory is broken")


def python_branch():
    """A problem whose dynamics branch in Python on the state: it evaluates on
    concrete arrays (so construction succeeds) but cannot be traced by JAX."""

    def f(x, u):
        if x[0] > 0:
            return jnp.stack([x[1], u[0]])
        return jnp.stack([x[1], -u[0]])

    return flow.OptimalControlProblem(
        f, endpoint_cost, x0=[1.0, 0.0], t0=0.0, tf=1.0, control_dim=1, name="branching"
    )


def blow_up():
    """x' = x^2 + u from x(0) = 1 on [0, 2]: with u = 0 the state blows up at t = 1
    (finite-time blow-up), so E^N is not finite at U0 = 0."""
    return flow.OptimalControlProblem(
        lambda x, u: x**2 + u,
        lambda x: 0.5 * jnp.sum(x**2),
        x0=[1.0],
        t0=0.0,
        tf=2.0,
        control_dim=1,
        name="blow_up",
    )
