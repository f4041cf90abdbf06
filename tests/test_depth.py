"""Section 8: a residual network is direct shooting with forward Euler
(`figures.depth`).

References are independent of `flow`: a residual network written by hand (one
`lax.scan` over its layers, or a Python loop) and differentiated by `jax.grad`, and
a hand-written gradient descent on its loss (`lax.while_loop`).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _figure_files import check_files

import flow
from figures import depth


B, D = depth.INPUTS.size, depth.FEATURES


def _resnet_loss(U, eps, h):
    """The network by hand: X_{k+1} = X_k + h tanh(X_k W_k^T + b_k) + eps_k (samples
    as rows), loss mean((X_N c - y)^2). `eps` (N, B, d) perturbs each layer's output,
    so d loss / d eps_k = d loss / d X_{k+1}: the back-propagation "deltas"."""

    def layer(X, params):
        u, e = params
        W = u[: D * D].reshape(D, D)
        b = u[D * D :]
        return X + h * jnp.tanh(X @ W.T + b[None, :]) + e, None

    X0 = jnp.stack([jnp.asarray(depth.INPUTS), jnp.zeros(B)], axis=1)
    X, _ = jax.lax.scan(layer, X0, (U, eps))
    return jnp.mean((X @ jnp.asarray(depth.READOUT) - jnp.asarray(depth.TARGETS)) ** 2)


def _backprop(U, h):
    """(loss, d loss / d U, deltas of shape (N, B*d)) of the hand-written network."""
    eps = jnp.zeros((U.shape[0], B, D))
    loss, (gU, delta) = jax.value_and_grad(_resnet_loss, argnums=(0, 1))(U, eps, h)
    return loss, gU, delta.reshape(U.shape[0], B * D)


@pytest.fixture
def U6(rng):
    return jnp.asarray(0.7 * rng.standard_normal((6, D * D + D)))


def test_network_is_forward_euler(U6):
    # claim 2: Shooting.states with flow.Euler is the residual network's forward pass
    N = U6.shape[0]
    sh = flow.shoot(depth.network(T=2.0), N, flow.Euler())
    h = 2.0 / N
    X = jnp.stack([jnp.asarray(depth.INPUTS), jnp.zeros(B)], axis=1)
    xs = [X.reshape(-1)]
    for k in range(N):
        W, b = U6[k, :4].reshape(2, 2), U6[k, 4:]
        X = X + h * jnp.tanh(X @ W.T + b[None, :])
        xs.append(X.reshape(-1))
    # the same operations in the same order: equal to a few ulps
    np.testing.assert_allclose(sh.states(U6), jnp.stack(xs), rtol=1e-14, atol=1e-15)
    loss, _, _ = _backprop(U6, h)
    np.testing.assert_allclose(sh.cost(U6), loss, rtol=1e-14)


def test_h1_gradient_is_hamiltonian_gradient_and_costates_are_deltas(U6):
    """Eq. (70): with h = 1 (tf - t0 = N), grad E^N = dH/du, and the costates are the
    back-propagation deltas lambda_k = dE/dx_{k+1}.

    Tolerance 1e-13 relative to the largest entry: every quantity is a sum of at most
    N = 6 products of O(1) factors (|W| <~ 2, tanh' <= 1), each computed in float64
    (eps = 2.2e-16) in a different order by flow and by jax.grad of the hand-written
    loop, so the differences are a few hundred ulps at most (measured: 0 and 2 ulps);
    a missing or extra factor h, or an off-by-one costate, is O(1)."""
    N = U6.shape[0]
    sh = flow.shoot(depth.network(T=float(N)), N, flow.Euler())
    np.testing.assert_array_equal(sh.steps, np.ones(N))
    g = sh.gradient(U6)
    dH = sh.hamiltonian_gradient(U6)
    lam = sh.costates(U6)
    _, gU, delta = _backprop(U6, 1.0)
    scale = float(jnp.max(jnp.abs(gU)))
    assert scale > 0.1
    np.testing.assert_allclose(g, dH, rtol=0, atol=1e-13 * scale)  # Lemma 2 with h = 1
    np.testing.assert_allclose(dH, gU, rtol=0, atol=1e-13 * scale)  # dH/du = backprop
    np.testing.assert_allclose(
        sh.gradient(U6, "costate"), gU, rtol=0, atol=1e-13 * scale
    )  # the hand-written adjoint recursion
    lam_scale = float(jnp.max(jnp.abs(delta)))
    np.testing.assert_allclose(lam, delta, rtol=0, atol=1e-13 * lam_scale)
    # the deltas are not all alike: an off-by-one costate would fail
    assert float(jnp.max(jnp.abs(lam[1:] - delta[:-1]))) > 1e-2 * lam_scale


def test_h_not_1_gradient_misses_the_h(U6):
    # with h = 1/3 the direct gradient is h dH/du (49), not dH/du (70)
    N = U6.shape[0]
    sh = flow.shoot(depth.network(T=2.0), N)
    h = 2.0 / N
    _, gU, _ = _backprop(U6, h)
    dH = sh.hamiltonian_gradient(U6)
    scale = float(jnp.max(jnp.abs(gU)))
    np.testing.assert_allclose(h * dH, gU, rtol=0, atol=1e-13 * scale)
    assert float(jnp.max(jnp.abs(dH - gU))) > 0.5 * scale


def _descent_steps(N, alpha, tol, max_steps):
    """Iterations of U <- U - alpha grad(loss) from U = 0 until max|grad|/h <= tol, on
    the hand-written network with h = T/N (one lax.while_loop)."""
    h = depth.T / N
    eps = jnp.zeros((N, B, D))
    grad = jax.jit(jax.grad(_resnet_loss))

    def cond(state):
        i, _, g = state
        return (jnp.max(jnp.abs(g)) / h > tol) & (i < max_steps)

    def body(state):
        i, U, g = state
        U = U - alpha * g
        return i + 1, U, grad(U, eps, h)

    U0 = jnp.zeros((N, D * D + D))
    i, _, g = jax.lax.while_loop(cond, body, (jnp.asarray(0), U0, grad(U0, eps, h)))
    return int(i), float(jnp.max(jnp.abs(g)) / h)


def test_iterations_against_depth(tmp_path):
    """Claim 3 at N = 4 and 16 (T = 2): the identity metric with a fixed learning rate
    needs about N/4 times the iterations of N = 4; the Hamiltonian metric, the same
    rate scaled by 1/h, a depth-independent count; both steps inside the
    forward-Euler bounds at the trained equilibrium."""
    Ns = (4, 16)
    d = depth.compute(Ns)
    # the figure draws from these data (what make() writes, at these sizes)
    check_files(depth.draw(d, tmp_path), tmp_path, "depth")
    it_id, it_ham = d["it_identity"], d["it_hamiltonian"]
    # at N_0 the two runs are one and the same (alpha = step/h_0)
    assert it_id[0] == it_ham[0]
    # the depth-scaled identity run is the Hamiltonian run (h = 1/2, 1/8: exact)
    np.testing.assert_array_equal(d["it_scaled"], it_ham)
    assert np.all(d["scaled_diff"] <= 1e-14)
    # identity: grows like N (measured ratio 3.72 for N ratio 4); Hamiltonian: flat
    # (measured 541 and 547)
    assert 3.0 < it_id[1] / it_id[0] < 4.5
    assert abs(it_ham[1] / it_ham[0] - 1.0) < 0.1
    assert np.all(d["loss"] < 1e-10)  # the four points are fitted
    # the steps are inside the forward-Euler bounds; the identity bound grows like N
    # (J_I = h J_H on a uniform grid: exactly N/T times the Hamiltonian bound)
    assert np.all(d["step"] < d["alpha_max_ham"])
    assert np.all(d["alpha_identity"] < d["alpha_max_identity"])
    np.testing.assert_allclose(d["alpha_max_identity"], d["alpha_max_ham"] * np.array(Ns) / 2.0)
    # the counts agree with an independent gradient descent on the hand-written
    # network (the last step may land on either side of tol by rounding)
    for N, it in zip(Ns, it_id, strict=True):
        steps, r = _descent_steps(N, float(d["alpha_identity"]), depth.TOL, 100_000)
        assert r <= depth.TOL
        assert abs(steps - it) <= 1, (N, steps, it)
