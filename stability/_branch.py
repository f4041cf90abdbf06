r"""The compiled kernels of continuation: $\nabla E^N(U; p)$ of a problem family, its
bordered Newton system and its tangent.

Continuation works in scaled controls $W = D^{1/2} U$ for a constant diagonal metric
$M = D = \mathrm{diag}(d)$:

$$G(W, p) = D^{-1/2}\,\nabla E^N(D^{-1/2} W;\, p), \qquad
  \partial_W G = K = D^{-1/2}\,\nabla^2 E^N\,D^{-1/2},$$

so $K$ is symmetric with the eigenvalues of $M^{-1}\nabla^2 E^N = -J$, and the
arclength $\|(\delta W, \delta p)\|^2 = \delta U^T M\,\delta U + \delta p^2$ is the
metric's norm (the $L^2$ norm of the control for the Hamiltonian metric: mesh
independent).

The pseudo-arclength corrector solves, from a predictor $(W_a, p_a)$ and a unit
tangent $t = (t_W, t_p)$,

$$G(W, p) = 0, \qquad t_W \cdot (W - W_a) + t_p (p - p_a) = 0$$

by Newton on the bordered Jacobian $\begin{pmatrix} K & G_p \\ t_W^T & t_p
\end{pmatrix}$, which stays nonsingular at a simple fold (where $K$ is singular but
$G_p \notin \mathrm{range}\,K$). The same bordered matrix, with the right-hand side
$(0, 1)$, gives the next tangent (its orientation kept by the previous one). Small
problems assemble it (forward-mode columns, LU); large ones apply it matrix-free
(one Jacobian-vector product of $G$ in $(W, p)$: a Hessian-vector product plus the
derivative in $p$) under lineax GMRES. Everything here is traced once per family,
grid, scheme and metric: a new parameter value or point reuses the compiled code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, Float

import flow


class Family(eqx.Module):
    """What the kernels trace: the family, the grid size and the scheme (static), the
    scale $D^{-1/2}$ and the residual's weight (arrays)."""

    family: Callable[[Any], flow.OptimalControlProblem] = eqx.field(static=True)
    N: int = eqx.field(static=True)
    scheme: flow.AbstractScheme
    scale: Float[Array, "N m"]  # D^{-1/2}
    unscale: Float[Array, "N m"]  # from G to the stopping residual: w / scale
    steps: Float[Array, " N"]  # h_k

    def shooting(self, p: Any) -> flow.Shooting:
        """The discretised problem at parameter `p` (traced or concrete)."""
        return flow.shoot(self.family(p), self.N, self.scheme)


def _objective(fam: Family, W: Array, p: Array) -> Array:
    return fam.shooting(p).objective(fam.scale * W)


_residual_fn = jax.grad(_objective, argnums=1)


def _bordered_matrix(fam: Family, W: Array, p: Array, tW: Array, tp: Array):
    """The dense bordered matrix [[K, G_p], [t_W^T, t_p]] and G (small Nm only)."""

    def flat(w, q):
        G = _residual_fn(fam, w.reshape(W.shape), q).reshape(-1)
        return G, G  # the second is the value itself (`has_aux`): one evaluation

    (K, Gp), G = jax.jacfwd(flat, argnums=(0, 1), has_aux=True)(W.reshape(-1), p)
    top = jnp.concatenate([K, Gp[:, None]], axis=1)
    bottom = jnp.concatenate([tW.reshape(-1), tp[None]])[None, :]
    return jnp.concatenate([top, bottom], axis=0), G.reshape(W.shape)


def _solve(fam: Family, W, p, tW, tp, rhs, dense: bool, rtol, max_krylov: int):
    """x = A^{-1} rhs(G) for the bordered A at (W, p), where G = G(W, p) and
    `rhs(G)` gives the right-hand side (W part, p part); also the number of Krylov
    steps (0 for the dense path) and whether the solve succeeded."""
    if dense:
        A, G = _bordered_matrix(fam, W, p, tW, tp)
        bW, bp = rhs(G)
        x = jnp.linalg.solve(A, jnp.concatenate([bW.reshape(-1), bp[None]]))
        ok = jnp.all(jnp.isfinite(x))
        return x[:-1].reshape(W.shape), x[-1], jnp.asarray(0), ok
    G, lin = jax.linearize(lambda w, q: _residual_fn(fam, w, q), W, p)
    struct = (jax.ShapeDtypeStruct(W.shape, W.dtype), jax.ShapeDtypeStruct((), W.dtype))
    op = lx.FunctionLinearOperator(
        lambda v: (lin(v[0], v[1]), jnp.vdot(tW, v[0]) + tp * v[1]), struct
    )
    bW, bp = rhs(G)
    # lineax's test is componentwise (|r_i| <= atol + rtol |b_i|): a norm-wise atol,
    # or the zero components of b (the tangent's) could never pass
    atol = rtol * jnp.maximum(jnp.max(jnp.abs(bW)), jnp.abs(bp))
    solver = lx.GMRES(rtol=rtol, atol=atol, restart=min(50, W.size + 1), max_steps=max_krylov)
    sol = lx.linear_solve(op, (bW, bp), solver, throw=False)
    dW, dp = sol.value
    ok = (sol.result == lx.RESULTS.successful) & jnp.all(jnp.isfinite(dW)) & jnp.isfinite(dp)
    return dW, dp, sol.stats["num_steps"], ok


@eqx.filter_jit
def correct(fam: Family, W, p, tW, tp, tol, max_newton: int, dense: bool, rtol, max_krylov: int):
    r"""Newton on the pseudo-arclength system from the predictor (W, p), anchored
    there. Stops when $\max|w \odot \nabla E^N|$ (the stopping residual) is at most
    `tol`, after `max_newton` steps, or on a failed linear solve or a non-finite
    value. Returns (W, p, residual, newton steps, Krylov steps, ok)."""
    Wa, pa = W, p

    def crit(W, p):
        return jnp.max(jnp.abs(_residual_fn(fam, W, p) * fam.unscale))

    def cond(c):
        W, p, it, r, steps, ok = c
        return ok & (r > tol) & (it < max_newton)

    def body(c):
        W, p, it, r, steps, ok = c
        arc = jnp.vdot(tW, W - Wa) + tp * (p - pa)
        dW, dp, n, ok_lin = _solve(fam, W, p, tW, tp, lambda G: (-G, -arc), dense, rtol, max_krylov)
        W, p = W + dW, p + dp
        r = crit(W, p)
        return W, p, it + 1, r, steps + n, ok_lin & jnp.isfinite(r)

    r0 = crit(W, p)
    init = (W, p, jnp.asarray(0), r0, jnp.asarray(0), jnp.isfinite(r0))
    W, p, it, r, steps, ok = jax.lax.while_loop(cond, body, init)
    return W, p, r, it, steps, ok & (r <= tol)


@eqx.filter_jit
def tangent(fam: Family, W, p, tW, tp, dense: bool, rtol, max_krylov: int):
    r"""The unit tangent of the branch at (W, p): the solution of
    $[[K, G_p], [t_W^T, t_p]]\,x = (0, 1)$, normalised (so $x \cdot t > 0$); the
    Krylov steps and whether the solve succeeded."""
    one = jnp.ones((), W.dtype)
    xW, xp, n, ok = _solve(
        fam, W, p, tW, tp, lambda G: (jnp.zeros_like(G), one), dense, rtol, max_krylov
    )
    norm = jnp.sqrt(jnp.vdot(xW, xW) + xp**2)
    return xW / norm, xp / norm, n, ok & (norm > 0)


@eqx.filter_jit
def dense_k(fam: Family, W, p):
    """K = D^{-1/2} Hess E^N D^{-1/2} at (W, p), dense (small Nm only)."""
    flat = lambda w: _residual_fn(fam, w.reshape(W.shape), p).reshape(-1)  # noqa: E731
    return jax.jacfwd(flat)(W.reshape(-1))


@eqx.filter_jit
def kvp(fam: Family, W, p, V):
    """K V at (W, p) (a Hessian-vector product, scaled)."""
    return jax.jvp(lambda w: _residual_fn(fam, w, p), (W,), (V,))[1]


@eqx.filter_jit
def cost(fam: Family, W, p):
    """E^N(D^{-1/2} W; p)."""
    return _objective(fam, W, p)


@eqx.filter_jit
def residual(fam: Family, W, p):
    """G(W, p) and the stopping residual max|w grad E^N|."""
    G = _residual_fn(fam, W, p)
    return G, jnp.max(jnp.abs(G * fam.unscale))


def host_kvp(fam: Family, W: Array, p: Array, shape: tuple[int, ...]):
    """K v for numpy vectors (the Lanczos driver's product)."""

    def mv(v: np.ndarray) -> np.ndarray:
        return np.asarray(kvp(fam, W, p, jnp.asarray(v.reshape(shape)))).reshape(-1)

    return mv
