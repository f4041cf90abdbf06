"""The 2-cycle born in a supercritical flip of descent: Newton on the two-step map
G(V) = F(F(V)) - V, F(V) = V - alpha M^-1 grad E^N(V), continued in the step from
just past the flip, and its multiplier (`stability.flip`'s cycle)."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def two_cycle(shooting, metric, U_star, q, c, alpha_star, alpha, tol, max_steps, dense, count):
    """The 2-cycle at `alpha`: Newton on G(V) = F(F(V)) - V, continued in the step
    from beta = 2 (alpha/alpha* - 1) = 1e-4 (where the leading-order U* + sqrt(beta/c)
    q is a close start), doubling beta up to the target; each start is the previous
    cycle scaled by sqrt(beta_new/beta_old). A stage whose Newton solution leaves its
    predictor by more than half the predictor's half-width (another branch, or the
    fixed point) is refused and its step halved. Returns (the two points, the final
    residual, the largest multiplier modulus of the cycle or None)."""

    sm = (shooting, metric)

    beta_end = 2.0 * (alpha / alpha_star - 1.0)
    beta = min(beta_end, 1e-4)
    V = U_star + math.sqrt(beta / c) * q
    beta_prev, halvings = beta, 0
    while True:
        guess = U_star + (V - U_star) * math.sqrt(beta / beta_prev)
        a = jnp.asarray(alpha_star * (1.0 + beta / 2.0))
        where = f"at alpha = {float(a):.8g} (alpha/alpha* - 1 = {beta / 2:.3g})"
        W, residual = _newton(sm, guess, a, tol, max_steps, dense, count)
        scale = max(1.0, float(jnp.max(jnp.abs(W))))
        # the branch is followed when Newton stays near its predictor (a jump to
        # another cycle, or back to the fixed point, is refused and the step halved)
        width = float(jnp.max(jnp.abs(guess - U_star)))
        moved = float(jnp.max(jnp.abs(W - guess)))
        W2 = _step(*sm, W, a)
        ok = (
            residual <= tol * scale
            and moved <= 0.5 * width
            and float(jnp.max(jnp.abs(W - W2))) > math.sqrt(tol) * scale
        )
        if not ok:
            halvings += 1
            if halvings > 30 or beta <= beta_prev * (1 + 1e-12):
                raise RuntimeError(
                    f"the continuation in the step lost the 2-cycle's branch {where} "
                    f"(Newton residual {residual:.3e}, moved {moved:.3e} from a predictor "
                    f"of half-width {width:.3e}: a fold of the cycle, or another branch)"
                )
            beta = beta_prev + (beta - beta_prev) / 2.0
            continue
        V, V2, beta_prev, halvings = W, W2, beta, 0
        if beta >= beta_end:
            break
        beta = min(2.0 * beta, beta_end)
    if float(jnp.vdot(V2 - V, q)) > 0:  # V1: the point on the side of +q
        V, V2 = V2, V
    residual = float(jnp.max(jnp.abs(_two_step_residual(*sm, V, a))))
    try:
        mult = _cycle_multiplier(sm, a, V, dense, count)
    except RuntimeError:  # ARPACK did not converge: the cycle stands, its stability unknown
        mult = None
    return np.stack([np.asarray(V), np.asarray(V2)]), residual, mult


def _newton(sm, V, a, tol, max_steps, dense, count):
    """Newton on G(V) = F(F(V)) - V at step `a`: (V, max|G(V)|)."""
    import scipy.sparse.linalg as spla  # on first use: `import stability` does not load scipy

    shape, size = V.shape, V.size
    r = _two_step_residual(*sm, V, a)
    for _ in range(max_steps):
        scale = max(1.0, float(jnp.max(jnp.abs(V))))
        if not float(jnp.max(jnp.abs(r))) > tol * scale:
            break
        rf = np.asarray(r).reshape(-1)
        if dense:
            J = np.asarray(_two_step_jacobian(*sm, V, a)).reshape(size, size)
            step = np.linalg.solve(J, -rf)
        else:
            op = spla.LinearOperator(
                (size, size),
                matvec=lambda x, V=V: _counted(
                    count, 2, _two_step_jvp(*sm, V, jnp.asarray(x.reshape(shape)), a)
                ),
                dtype=np.float64,
            )
            step, _ = spla.gmres(op, -rf, rtol=1e-10, restart=50, maxiter=20)
        V = V + jnp.asarray(step.reshape(shape))
        r = _two_step_residual(*sm, V, a)
    return V, float(jnp.max(jnp.abs(r)))


def _counted(count, n, value):
    count[0] += n
    return np.array(value).reshape(-1)


def _cycle_multiplier(sm, a, V, dense, count) -> float:
    """max |eig(DF(F(V)) DF(V))| (the Jacobian of G plus I): dense, or ARPACK on the
    product operator."""
    import scipy.sparse.linalg as spla  # on first use: `import stability` does not load scipy

    shape, size = V.shape, V.size
    if dense:
        J = np.asarray(_two_step_jacobian(*sm, V, a)).reshape(size, size) + np.eye(size)
        return float(np.max(np.abs(np.linalg.eigvals(J))))

    def product(x):
        W = jnp.asarray(x.reshape(shape))
        return _counted(count, 2, _two_step_jvp(*sm, V, W, a) + W)

    op = spla.LinearOperator((size, size), matvec=product, dtype=np.float64)
    vals = spla.eigs(op, k=1, which="LM", tol=1e-10, return_eigenvectors=False)
    return float(np.max(np.abs(vals)))


def _F(sh, metric, V, a):
    G = jax.grad(type(sh).objective, argnums=1)(sh, V)
    return V - a * metric.solve(sh, V, G).direction


def _G(sh, metric, V, a):
    return _F(sh, metric, _F(sh, metric, V, a), a) - V


_step = eqx.filter_jit(_F)
_two_step_residual = eqx.filter_jit(_G)


@eqx.filter_jit
def _two_step_jvp(sh, metric, V, W, a):
    return jax.jvp(lambda X: _G(sh, metric, X, a), (V,), (W,))[1]


@eqx.filter_jit
def _two_step_jacobian(sh, metric, V, a):
    return jax.jacfwd(lambda X: _G(sh, metric, X, a))(V)
