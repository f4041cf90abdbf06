r"""The discretised problem P^N: the shooting map, its cost, costates and gradients.

Indexing follows the paper (eqs. (16), (23), (25)) and DESIGN.md section 2:

    x_{k+1}      = Phi(x_k, u_k, h_k),                       k = 0, ..., N-1
    lambda_{N-1} = grad E(x_N)                                              (25)
    lambda_{k-1} = (dPhi/dx (x_k, u_k, h_k))^T lambda_k,      k = N-1, ..., 1 (23)
    dE^N/du_k    = (dPhi/du (x_k, u_k, h_k))^T lambda_k

so `lambda_k` belongs to the interval k and equals dE^N/dx_{k+1}.
"""

import abc
import math
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from equinox import AbstractVar
from jaxtyping import Array, Float

from ._box import device_bounds, validate_bounds
from ._dispatch import compiled, method
from ._finite_differences import BALANCED_STEP, central_differences
from ._grid import make_grid
from ._problem import OptimalControlProblem
from ._schemes import AbstractScheme, Euler
from ._validation import float64_array


_GRADIENT_METHODS = ("autodiff", "costate", "finite-difference")

#: Largest N*m for which `Shooting.hessian` forms a dense matrix by default.
DENSE_HESSIAN_MAX = 4096


class AbstractShooting(eqx.Module):
    r"""What every verb needs of a discretised problem: a grid, controls of shape
    `(N, m)`, and the cost $E^N(U)$ as a pure, traceable function.

    Implemented by [`Shooting`][flow.Shooting] (from [`shoot`][flow.shoot] and
    [`flow.controls.parameterize`][flow.controls.parameterize]) and by
    [`AdaptiveShooting`][flow.AdaptiveShooting]; [`descend`][flow.descend],
    [`gradient_flow`][flow.gradient_flow] and the metrics drive any of them.

    Subclasses provide `grid` ($t_0 < \dots < t_N$), `control_dim` and
    [`objective`][flow.AbstractShooting.objective].
    """

    grid: AbstractVar[Float[Array, " Np1"]]

    #: Whether forward-mode derivatives pass through `objective` after reverse mode
    #: (Hessian-vector products; an implicit flow solver's Jacobian). False for the
    #: adaptive map, whose diffrax step-size loop does not allow it.
    forward_differentiable: ClassVar[bool] = True

    @property
    @abc.abstractmethod
    def control_dim(self) -> int:
        """m."""

    @abc.abstractmethod
    def objective(self, U: Float[Array, "N m"]) -> Float[Array, ""]:
        r"""$E^N(U)$ as a pure function: no argument checks and no `jit` of its own,
        so verbs can differentiate, `vmap` and compile it inside their loops."""

    @method
    def hessian_vector_product(self, U: Any, V: Any) -> Float[Array, "N m"]:
        r"""$\nabla^2 E^N(U)\,V$ (forward-over-reverse), shape `(N, m)`."""
        return _hvp(self, U, V)

    def hessian(self, U: Any, *, max_size: int = DENSE_HESSIAN_MAX) -> Float[Array, "Nm Nm"]:
        r"""The dense Hessian $\nabla^2 E^N(U)$, shape `(N*m, N*m)`, in the row-major
        order of `U.reshape(-1)` (index `k*m + i` is $u_{k,i}$).

        Every discretisation has it (a [`flow.bounds.FreeShooting`][flow.bounds.FreeShooting]
        gives the free block); not the adaptive map, which is not forward-differentiable.

        **Raises:** `ValueError` when `N*m > max_size`; use
        [`hessian_vector_product`][flow.AbstractShooting.hessian_vector_product]
        (matrix-free) for large problems.
        """
        U = self.check_controls(U)
        if not self.forward_differentiable:
            raise ValueError(
                f"`hessian`: {type(self).__name__} does not allow forward-mode "
                f"derivatives after reverse mode (its step-size loop), which the Hessian needs."
            )
        size = self.N * self.control_dim
        if size > max_size:
            raise ValueError(
                f"`hessian`: N*m = {size} exceeds max_size = {max_size}; a dense "
                f"Hessian would take {size * size * 8 / 2**20:.0f} MiB. Use "
                f"hessian_vector_product (matrix-free), or raise max_size."
            )
        return _dense_hessian(self, U)

    def nonfinite_report(self, U: Any, name: str = "U0") -> str | None:
        r"""None when $E^N(U)$ and $\nabla E^N(U)$ are finite; otherwise one sentence
        saying which is not (a [`Shooting`][flow.Shooting] also names the first grid
        index whose state is not finite)."""
        U = self.check_controls(U, name)
        c, g = _value_and_grad(self, U)
        cost = float(c)
        if math.isfinite(cost) and bool(jnp.all(jnp.isfinite(g))):
            return None
        what = f"E^N({name}) = {cost!r}" if not math.isfinite(cost) else f"grad E^N({name})"
        return f"{what} is not finite"

    # ----------------------------------------------------------------- sizes
    @property
    def N(self) -> int:
        """The number of intervals."""
        return self.grid.shape[0] - 1

    @property
    def steps(self) -> Float[Array, " N"]:
        r"""The step sizes $h_k = t_{k+1} - t_k$."""
        grid = self.grid
        if isinstance(grid, jax.core.Tracer):
            return grid[1:] - grid[:-1]
        # a concrete grid: the same IEEE subtraction by numpy, placed on the device,
        # so that no XLA kernel is compiled for each new N
        return jax.device_put(np.diff(np.asarray(grid)))

    @property
    def control_shape(self) -> tuple[int, int]:
        """`(N, m)`, the shape every control argument must have."""
        return (self.N, self.control_dim)

    def zeros(self) -> Float[Array, "N m"]:
        """The zero control, of shape `(N, m)`."""
        return jax.device_put(np.zeros(self.control_shape))  # no kernel compiled per shape

    @method
    def check_controls(self, U: Any, name: str = "U") -> Float[Array, "N m"]:
        """`U` as a float64 array of shape `(N, m)`, or an error naming `name`.

        **Raises:** `TypeError` for a dtype other than float64 (or a non-numeric
        input), `ValueError` for a wrong shape. Works on tracers (static checks only).
        """
        return float64_array(U, name, self.control_shape)


class Shooting(AbstractShooting):
    r"""The direct-shooting discretisation $P^N$ of an
    [`OptimalControlProblem`][flow.OptimalControlProblem].

    Built by [`shoot`][flow.shoot]. For controls $U = (u_0, \dots, u_{N-1})$ of shape `(N, m)`
    it gives the states $x_k(U)$, the cost $E^N(U) = \tilde E(x_N(U))$, the discrete
    costates $\lambda_k$, the gradient $\nabla E^N$ by three independent methods,
    the (discrete) Hamiltonian gradient, and second derivatives.

    With a running cost, states and costates have the augmented dimension `n + 1`:
    the last state is the accumulated running cost and the last costate is 1.

    Every method is jit-compiled (a `lax.scan` over the grid), works under
    `jax.vmap` over `U`, and does not recompile for a new `U` of the same shape.

    **Attributes:** `problem`, `scheme`, `grid` (N+1,), `steps` ($h_k$, (N,)),
    `N`, `control_dim` (m), `state_dim` (augmented n).
    """

    problem: OptimalControlProblem
    scheme: AbstractScheme
    grid: Float[Array, " Np1"]
    bounds: tuple[Float[Array, "N m"], Float[Array, "N m"]] | None = None

    @property
    def control_dim(self) -> int:
        """m."""
        return self.problem.control_dim

    @property
    def state_dim(self) -> int:
        """The dimension of the integrated (augmented) state."""
        return self.problem.augmented_dim

    def objective(self, U: Float[Array, "N m"]) -> Float[Array, ""]:
        r"""$E^N(U) = \tilde E(x_N(U))$, unchecked and traceable (see
        [`AbstractShooting.objective`][flow.AbstractShooting.objective])."""
        return _cost_impl(self, U)

    def nonfinite_report(self, U: Any, name: str = "U0") -> str | None:
        r"""None when $E^N(U)$ and $\nabla E^N(U)$ are finite; otherwise one sentence
        naming `name` and where it goes wrong: the first grid index $k$ whose state
        $x_k$ is not finite (the dynamics blew up before $t_f$), or that the cost or
        its gradient is not finite although every state is."""
        generic = super().nonfinite_report(U, name)
        if generic is None:
            return None
        U = self.check_controls(U, name)
        xs = np.asarray(_states(self, U))
        bad = ~np.all(np.isfinite(xs), axis=1)
        what = generic.removesuffix(" is not finite")
        if np.any(bad):
            k = int(np.argmax(bad))
            t = float(self.grid[k])
            return (
                f"{what} is not finite: the state x_k first becomes non-finite at "
                f"k = {k} (t = {t:.6g}) of N = {self.N}; the dynamics blow up before tf "
                f"from this start"
            )
        return f"{what} is not finite although every state x_0..x_N is"

    # --------------------------------------------------------------- public
    @method
    def states(self, U: Any) -> Float[Array, "Np1 n"]:
        r"""The states $x_0, \dots, x_N$ generated by the scheme, shape `(N+1, n)`."""
        return _states(self, U)

    @method
    def cost(self, U: Any) -> Float[Array, ""]:
        r"""$E^N(U) = \tilde E(x_N(U))$ (the running cost, if any, is included)."""
        return _cost(self, U)

    @method
    def costates(self, U: Any) -> Float[Array, "N n"]:
        r"""$\lambda_0, \dots, \lambda_{N-1}$, shape `(N, n)`, by the discrete adjoint
        recursion (23), (25): $\lambda_{N-1} = \nabla\tilde E(x_N)$,
        $\lambda_{k-1} = (\partial_x\Phi(x_k, u_k, h_k))^T \lambda_k$.

        For Euler, $\lambda_{k-1} = \lambda_k + h_k\,\partial_x f(x_k, u_k)^T
        \lambda_k$. $\lambda_k = \partial E^N / \partial x_{k+1}$.
        """
        return _adjoint(self, U)[1]

    @method
    def hamiltonian_gradient(self, U: Any) -> Float[Array, "N m"]:
        r"""The Hamiltonian gradient on the grid, shape `(N, m)`.

        - Euler: $\partial_u H(\lambda_k, x_k, u_k) = \partial_u f(x_k, u_k)^T
          \lambda_k$, with $H = \lambda^T f$ (eq. (5)) and the costates of
          [`costates`][]. By Lemma 2 (eq. (49)), $\nabla E^N = h_k\,\partial_u H$.
        - other schemes: the *discrete Hamiltonian gradient*
          $h_k^{-1}\,\partial E^N/\partial u_k$ (by definition; it converges to
          $\partial_u H$ along the continuous solution as $h \to 0$).
        """
        return _hamiltonian_gradient(self, U)

    @method
    def gradient(self, U: Any, method: str = "autodiff") -> Float[Array, "N m"]:
        r"""$\nabla E^N(U)$, shape `(N, m)`, by one of three independent methods:

        - `"autodiff"`: reverse-mode differentiation of the whole scan (`jax.grad`);
        - `"costate"`: the hand-written adjoint recursion,
          $\partial E^N/\partial u_k = \partial_u\Phi(x_k, u_k, h_k)^T\lambda_k$,
          each step by the scheme's written-out adjoint
          ([`AbstractScheme.adjoint`][flow.AbstractScheme.adjoint]: transposed
          Jacobians of $f$ at the stage points, no differentiation of the scan);
        - `"finite-difference"`: central differences on each component with step
          $\delta_j = \epsilon^{1/3}\max(1, |U_j|)$, $\epsilon$ = float64 machine
          epsilon. Error about $\epsilon^{2/3}(|E^N| + |E'''|)$, i.e. ~1e-10
          absolute for costs of order one. Costs $2Nm$ evaluations of $E^N$: for
          checks at small N only.
        """
        if method not in _GRADIENT_METHODS:
            raise ValueError(f"`method` must be one of {_GRADIENT_METHODS}; got {method!r}.")
        if method == "autodiff":
            return _grad(self, U)
        if method == "costate":
            return _costate_gradient(self, U)
        return _fd_gradient(self, U)

    def __repr__(self) -> str:
        return (
            f"Shooting({self.problem.name!r}, scheme={self.scheme.name}, N={self.N}, "
            f"n={self.state_dim}, m={self.control_dim})"
        )


def shoot(
    problem: OptimalControlProblem,
    N_or_grid: Any,
    scheme: AbstractScheme | None = None,
    *,
    control_bounds: Any = None,
) -> Shooting:
    r"""Discretise `problem` by direct shooting: $x_{k+1} = \Phi(x_k, u_k, h_k)$.

    **Arguments:**

    - `problem`: an [`OptimalControlProblem`][].
    - `N_or_grid`: the number of uniform intervals $N \ge 1$ ($h = (t_f - t_0)/N$,
      eq. (15)), or an explicit strictly increasing array of times from `t0` to
      `tf`.
    - `scheme`: the one-step scheme; default [`Euler`][] (eq. (16)).
    - `control_bounds`: `(lower, upper)` box bounds on $u_k$, per interval (arrays of
      shape `(N, m)`) or as for the problem (numbers, `(m,)`); default the problem's
      `control_bounds`, if any. The discretised problem minimises $E^N$ over
      $\ell_k \le u_k \le \upsilon_k$.

    **Returns:** a [`Shooting`][]; `bounds` holds the bounds as two `(N, m)` arrays, or
    None.
    """
    if not isinstance(problem, OptimalControlProblem):
        raise TypeError(
            f"`problem` must be an OptimalControlProblem; got {type(problem).__name__}."
        )
    if scheme is None:
        scheme = Euler()
    if not isinstance(scheme, AbstractScheme):
        raise TypeError(f"`scheme` must be a scheme instance such as flow.Euler(); got {scheme!r}.")
    grid_np = make_grid(N_or_grid, problem.t0, problem.tf)
    grid = jax.device_put(grid_np)  # no kernel compiled
    shape = (grid_np.shape[0] - 1, problem.control_dim)
    if control_bounds is None and problem.control_bounds is not None:
        control_bounds = tuple(np.asarray(b) for b in problem.control_bounds)
    bounds = None
    if control_bounds is not None:
        bounds = device_bounds(*validate_bounds(control_bounds, "control_bounds", shape))
    return Shooting(problem=problem, scheme=scheme, grid=grid, bounds=bounds)


# --------------------------------------------------------------------------
# Jitted kernels. They take the Shooting module as their first argument, so a
# new U (or a new grid of the same N) reuses the compiled code.


def _step(sh: Shooting, x: Array, u: Array, h: Array) -> Array:
    return sh.scheme.step(sh.problem.augmented_dynamics, x, u, h)


def _final_state(sh: Shooting, U: Array) -> Array:
    def body(x, inp):
        u, h = inp
        return _step(sh, x, u, h), None

    # Under reverse-mode AD save only the carried state x_k per step and recompute
    # the step's internals on the way back: the residuals of a full save are
    # several times larger, and at N ~ 10^6 their allocation (page faults on fresh
    # scratch memory) dominated the gradient's cost (benchmarks/README.md).
    body = jax.checkpoint(body, policy=jax.checkpoint_policies.nothing_saveable)
    xN, _ = jax.lax.scan(body, sh.problem.augmented_x0(), (U, sh.steps))
    return xN


def _forward(sh: Shooting, U: Array) -> tuple[Array, Array]:
    """(x_0, ..., x_{N-1}) stacked, and x_N."""

    def body(x, inp):
        u, h = inp
        return _step(sh, x, u, h), x

    xN, xs = jax.lax.scan(body, sh.problem.augmented_x0(), (U, sh.steps))
    return xs, xN


def _states_impl(sh: Shooting, U: Array) -> Array:
    xs, xN = _forward(sh, U)
    return jnp.concatenate([xs, xN[None]], axis=0)


_states = compiled(_states_impl, ("U",))


def _cost_impl(sh: Shooting, U: Array) -> Array:
    return sh.problem.augmented_endpoint_cost(_final_state(sh, U))


_cost = compiled(_cost_impl, ("U",))
_grad = compiled(jax.grad(_cost_impl, argnums=1), ("U",))


def _adjoint_impl(sh: Shooting, U: Array, keep_costates: bool):
    """The discrete adjoint (23)/(25) by hand: states x_0..x_{N-1}, costates and
    dE^N/du_k = (dPhi/du)^T lambda_k, each step by `AbstractScheme.adjoint` (no
    differentiation of the step map or the scan)."""
    xs, xN = _forward(sh, U)
    lam_last = jax.grad(sh.problem.augmented_endpoint_cost)(xN)

    def body(lam, inp):  # lam = lambda_k
        x, u, h = inp
        # lambda_{k-1} and dE^N/du_k by the scheme's hand-written adjoint
        lam_prev, g = sh.scheme.adjoint(sh.problem.augmented_dynamics, x, u, h, lam)
        return lam_prev, ((lam, g) if keep_costates else g)

    _, out = jax.lax.scan(body, lam_last, (xs, U, sh.steps), reverse=True)
    return xs, out


def _adjoint_outputs(sh: Shooting, U: Array) -> tuple[Array, Array, Array]:
    """States x_0..x_{N-1}, costates, and the costate gradient."""
    xs, (lams, grads) = _adjoint_impl(sh, U, True)
    return xs, lams, grads


_adjoint = compiled(_adjoint_outputs, ("U",))


def _costate_gradient_impl(sh: Shooting, U: Array) -> Array:
    return _adjoint_impl(sh, U, False)[1]


_costate_gradient = compiled(_costate_gradient_impl, ("U",))


def _hamiltonian_gradient_impl(sh: Shooting, U: Array) -> Array:
    xs, (lams, grads) = _adjoint_impl(sh, U, True)
    return _hamiltonian_from_adjoint(sh, U, xs, lams, grads)


def _hamiltonian_from_adjoint(
    sh: Shooting, U: Array, xs: Array, lams: Array, grads: Array
) -> Array:
    """The Hamiltonian gradient from one adjoint pass (states, costates, gradient)."""
    if isinstance(sh.scheme, Euler):
        problem = sh.problem

        def du_h(lam, x, u):
            return jax.grad(problem.hamiltonian, argnums=2)(lam, x, u)

        return jax.vmap(du_h)(lams, xs, U)
    return grads / sh.steps[:, None]


_hamiltonian_gradient = compiled(_hamiltonian_gradient_impl, ("U",))


def _fd_gradient_impl(sh: Shooting, U: Array) -> Array:
    return central_differences(lambda V: _cost_impl(sh, V), U, BALANCED_STEP)


_fd_gradient = compiled(_fd_gradient_impl, ("U",))


def _hvp_impl(sh: AbstractShooting, U: Array, V: Array) -> Array:
    g = lambda W: jax.grad(type(sh).objective, argnums=1)(sh, W)  # noqa: E731
    return jax.jvp(g, (U,), (V,))[1]


_hvp = compiled(_hvp_impl, ("U", "V"))
_value_and_grad = eqx.filter_jit(jax.value_and_grad(lambda sh, U: sh.objective(U), argnums=1))


@eqx.filter_jit
def _dense_hessian(sh: AbstractShooting, U: Array) -> Array:
    size = U.size
    basis = jnp.eye(size, dtype=U.dtype).reshape((size,) + U.shape)
    cols = jax.lax.map(lambda V: _hvp_impl(sh, U, V), basis, batch_size=256)
    return cols.reshape(size, size).T
