"""Status of a descent run or a gradient-flow integration."""

import equinox as eqx


class RESULTS(eqx.Enumeration):
    """Outcome of [`descend`][flow.descend] and [`gradient_flow`][flow.gradient_flow].

    `RESULTS[item]` is the human-readable message of an item.
    """

    converged = "converged: the residual fell below the tolerance"
    completed = "completed: ran the requested iterations (no tolerance was given)"
    reached_tau1 = "completed: integrated up to tau1 (the tolerance was not reached)"
    max_iterations = "stopped: the iteration limit was reached before the tolerance"
    max_steps = "stopped: the solver's max_steps was reached before the tolerance or tau1"
    diverged = (
        "diverged: a non-finite value appeared, or the gradient norm grew by more than "
        "`divergence_factor` times its initial value"
    )
    solver_failed = "failed: the ODE solver reported an error (step size underflow or root finding)"


#: Outcomes that are not failures.
SUCCESSES = ("converged", "completed", "reached_tau1")


def is_success(result: RESULTS) -> bool:
    """True for the outcomes in `SUCCESSES` (a concrete, unbatched result)."""
    return any(bool(result == getattr(RESULTS, s)) for s in SUCCESSES)


class DivergenceError(RuntimeError):
    """Raised (with `throw=True`) when a descent run or a flow diverges."""


class ConvergenceError(RuntimeError):
    """Raised (with `throw=True`) when a tolerance was not reached within the limits."""
