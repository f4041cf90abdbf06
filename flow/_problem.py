"""The continuous optimal control problem (P) and its Mayer (endpoint-cost) form."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from . import _validation as validation
from ._box import device_bounds, validate_bounds


class _NotAnArray(TypeError):
    """A user function returned something `jnp.asarray` cannot convert."""


#: Appended to a JAX tracing error: what a problem's functions must be.
TRACEABLE_HINT = (
    " (the problem's functions must be traceable by JAX: jnp operations, no Python "
    "if/for/float() on the state or control; use jnp.where and lax.cond for branches)"
)


def _evaluate(name: str, fn: Callable, *args: jax.ShapeDtypeStruct) -> jax.ShapeDtypeStruct:
    """Trace a user function once on abstract arguments (`jax.eval_shape`: nothing is
    computed or compiled) and return the shape and dtype of its result, turning
    failures into a clear message. Every verb traces the function the same way, so
    a function that fails here would fail there."""

    def traced(*a: Array) -> Array:
        out = fn(*a)
        try:
            return jnp.asarray(out)
        except TypeError as e:
            raise _NotAnArray(f"`{name}` must return an array; got {type(out)}.") from e

    try:
        out = jax.eval_shape(traced, *args)
    except _NotAnArray as e:
        raise TypeError(str(e)) from e.__cause__
    except Exception as e:  # noqa: BLE001 - re-raised with context
        hint = TRACEABLE_HINT if isinstance(e, jax.errors.JAXTypeError) else ""
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(
            f"`{name}` failed when traced on x0 and a zero control: {type(e).__name__}: "
            f"{first}{hint}"
        ) from e
    if out.dtype != jnp.float64:
        raise TypeError(
            f"`{name}` must return float64 values (this package enables "
            f"jax_enable_x64); got dtype {out.dtype}. Avoid explicit float32 casts."
        )
    return out


def _concrete_x0(x0: Any) -> Array:
    """`x0` checked (a finite real 1-D array) and placed on the device as float64."""
    x0_np = np.asarray(x0)
    if x0_np.dtype.kind not in "fiu":
        raise TypeError(f"`x0` must be a real array; got dtype {x0_np.dtype}.")
    _check_x0_shape(x0_np.shape)
    if not np.all(np.isfinite(x0_np)):
        raise ValueError(f"`x0` must be finite; got {x0_np}.")
    # converted by numpy, then placed on the device: no XLA kernel to compile
    x0_arr = jax.device_put(np.asarray(x0_np, dtype=np.float64))
    if x0_arr.dtype != jnp.float64:  # pragma: no cover - x64 is always on
        raise TypeError("float64 is disabled: enable jax_enable_x64.")
    return x0_arr


def _traced_x0(x0: Array) -> Array:
    """A traced `x0` (a family's parameter flows into it): shape and dtype only."""
    if not jnp.issubdtype(x0.dtype, jnp.floating):
        raise TypeError(f"`x0` must be a real float64 array; got dtype {x0.dtype}.")
    _check_x0_shape(x0.shape)
    return jnp.asarray(x0, dtype=jnp.float64)


def _check_x0_shape(shape: tuple[int, ...]) -> None:
    if len(shape) != 1 or shape[0] < 1:
        raise ValueError(
            f"`x0` must be a 1-D array of shape (n,), n >= 1; got shape "
            f"{shape}. For a scalar state write x0=[value]."
        )


class OptimalControlProblem(eqx.Module):
    r"""An optimal control problem (P), with an optional running cost.

    $$\min_u\; E(x(t_f)) + \int_{t_0}^{t_f} L(x, u)\,dt
      \quad\text{s.t.}\quad \dot x = f(x, u),\; x(t_0) = x_0,$$

    with $x \in \mathbb{R}^n$, $u \in \mathbb{R}^m$ and $t_0, t_f$ fixed (paper eq. (4),
    generalised to vectors and a running cost), and optionally box bounds
    $\ell \le u(t) \le \upsilon$ on the control.

    A running cost is folded into the state as one extra component
    $x_{n+1}' = L(x, u)$, $x_{n+1}(t_0) = 0$, with $E \mathrel{+}= x_{n+1}(t_f)$
    (the *augmented* or Mayer form used by every discretisation in this package;
    the costate of the extra component is identically 1).

    **Arguments:**

    - `dynamics`: $f(x, u)$, returning an array of shape `(n,)`.
    - `endpoint_cost`: $E(x)$, returning a scalar.
    - `x0`: the initial state, a finite array of shape `(n,)`.
    - `t0`, `tf`: the fixed initial and final times, `tf > t0`.
    - `running_cost`: optional $L(x, u)$, returning a scalar.
    - `control_dim`: $m \ge 1$.
    - `control_bounds`: optional `(lower, upper)`, each a number or an array of shape
      `(m,)`; `-inf` / `inf` leave a side free, and `lower < upper` everywhere.
      [`shoot`][flow.shoot] takes per-interval bounds of shape `(N, m)` instead.
      The verbs then solve the bounded problem (see `flow/_bounds.py` and
      [`stability.equilibrium`][stability.equilibrium]).
    - `name`: a label used in reports.

    **Raises:**

    `ValueError` or `TypeError`, naming the argument, when a shape, a dtype or a
    value is wrong. `f`, `E` and `L` are traced once (`jax.eval_shape`: nothing is
    computed) on arrays shaped like `x0` and the control, so a function JAX cannot
    trace (a Python `if` on the state, say) is refused here, with the reason.
    """

    dynamics: Callable[[Array, Array], Array] = eqx.field(static=True)
    endpoint_cost: Callable[[Array], Array] = eqx.field(static=True)
    running_cost: Callable[[Array, Array], Array] | None = eqx.field(static=True)
    x0: Float[Array, " n"]
    t0: float = eqx.field(static=True)
    tf: float = eqx.field(static=True)
    control_dim: int = eqx.field(static=True)
    name: str = eqx.field(static=True)
    control_bounds: tuple[Float[Array, " m"], Float[Array, " m"]] | None

    # Arguments are annotated `Any`: they are validated below, with messages that
    # name the argument, rather than by the static annotation.
    def __init__(
        self,
        dynamics: Any,
        endpoint_cost: Any,
        x0: Any,
        t0: Any,
        tf: Any,
        *,
        running_cost: Any = None,
        control_dim: Any,
        control_bounds: Any = None,
        name: str = "custom",
    ):
        validation.function(dynamics, "dynamics", "f(x, u) -> array of shape (n,)")
        validation.function(endpoint_cost, "endpoint_cost", "E(x) -> scalar")
        if running_cost is not None:
            validation.function(running_cost, "running_cost", "L(x, u) -> scalar")
        control_dim = validation.positive_int(control_dim, "control_dim")
        for label, value in (("t0", t0), ("tf", tf)):
            if isinstance(value, jax.core.Tracer):
                raise TypeError(
                    f"`{label}` must be a concrete number: the grid is fixed, so the "
                    f"horizon cannot depend on a traced parameter. For a horizon T as "
                    f"the parameter, scale time: solve on [0, 1] with dynamics "
                    f"T f(x, u) and running cost T L(x, u)."
                )
            if isinstance(value, bool) or not isinstance(
                value, int | float | np.integer | np.floating
            ):
                raise TypeError(f"`{label}` must be a real number; got {value!r}.")
            if not math.isfinite(value):
                raise ValueError(f"`{label}` must be finite; got {value}.")
        if not tf > t0:
            raise ValueError(f"`tf` must be greater than `t0`; got t0={t0}, tf={tf}.")
        if isinstance(x0, jax.core.Tracer):
            # built inside a JAX transformation (a problem family traced in its
            # parameter, stability.continuation): shape and dtype are checked, the
            # values cannot be
            x0_arr = _traced_x0(x0)
        else:
            x0_arr = _concrete_x0(x0)
        n = x0_arr.shape[0]
        u_zero = jax.ShapeDtypeStruct((control_dim,), jnp.float64)
        x0_abs = jax.ShapeDtypeStruct((n,), jnp.float64)
        fx = _evaluate("dynamics", dynamics, x0_abs, u_zero)
        if fx.shape != (n,):
            raise ValueError(
                f"`dynamics` must return shape (n,) = ({n},) for x0 of shape "
                f"({n},) and u of shape ({control_dim},); got shape {fx.shape}."
            )
        ex = _evaluate("endpoint_cost", endpoint_cost, x0_abs)
        if ex.shape != ():
            raise ValueError(
                f"`endpoint_cost` must return a scalar (shape ()); got shape {ex.shape}."
            )
        if running_cost is not None:
            lx = _evaluate("running_cost", running_cost, x0_abs, u_zero)
            if lx.shape != ():
                raise ValueError(
                    f"`running_cost` must return a scalar (shape ()); got shape {lx.shape}."
                )
        self.dynamics = dynamics
        self.endpoint_cost = endpoint_cost
        self.running_cost = running_cost
        self.x0 = x0_arr
        self.t0 = float(t0)
        self.tf = float(tf)
        self.control_dim = int(control_dim)
        self.name = str(name)
        self.control_bounds = (
            None
            if control_bounds is None
            else device_bounds(*validate_bounds(control_bounds, "control_bounds", (control_dim,)))
        )

    # ---------------------------------------------------------------- sizes
    @property
    def state_dim(self) -> int:
        """n, the dimension of the user's state (without the running-cost state)."""
        return self.x0.shape[0]

    @property
    def augmented_dim(self) -> int:
        """n + 1 with a running cost, n without: the state the schemes integrate."""
        return self.state_dim + (0 if self.running_cost is None else 1)

    # ------------------------------------------------------- augmented form
    def augmented_x0(self) -> Float[Array, " n_aug"]:
        """The initial state of the Mayer form: (x0, 0) with a running cost."""
        if self.running_cost is None:
            return self.x0
        return jnp.concatenate([self.x0, jnp.zeros((1,))])

    def augmented_dynamics(
        self, x: Float[Array, " n_aug"], u: Float[Array, " m"]
    ) -> Float[Array, " n_aug"]:
        r"""$\tilde f(x, u) = (f(x_{1:n}, u), L(x_{1:n}, u))$, or $f$ alone."""
        if self.running_cost is None:
            return jnp.asarray(self.dynamics(x, u))
        xs = x[: self.state_dim]
        fx = jnp.asarray(self.dynamics(xs, u))
        lx = jnp.asarray(self.running_cost(xs, u))
        return jnp.concatenate([fx, lx[None]])

    def augmented_endpoint_cost(self, x: Float[Array, " n_aug"]) -> Float[Array, ""]:
        r"""$\tilde E(x) = E(x_{1:n}) + x_{n+1}$, or $E$ alone."""
        if self.running_cost is None:
            return jnp.asarray(self.endpoint_cost(x))
        return jnp.asarray(self.endpoint_cost(x[: self.state_dim])) + x[-1]

    def hamiltonian(
        self,
        costate: Float[Array, " n_aug"],
        x: Float[Array, " n_aug"],
        u: Float[Array, " m"],
    ) -> Float[Array, ""]:
        r"""The Pontryagin Hamiltonian $H(\lambda, x, u) = \lambda^T \tilde f(x, u)$
        (paper eq. (5)); with a running cost the last costate component is 1 and
        this is $\lambda^T f + L$."""
        return jnp.dot(costate, self.augmented_dynamics(x, u))

    def __repr__(self) -> str:
        rc = "" if self.running_cost is None else ", running cost"
        if self.control_bounds is not None:
            lo, hi = (np.asarray(b) for b in self.control_bounds)
            if lo.shape[0] == 1:
                rc += f", {lo[0]:g} <= u <= {hi[0]:g}"
            else:
                rc += ", bounded u"
        return (
            f"OptimalControlProblem({self.name!r}: n={self.state_dim}, "
            f"m={self.control_dim}, t in [{self.t0:g}, {self.tf:g}]{rc})"
        )
