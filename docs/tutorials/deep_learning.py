# %% [markdown]
# # Deep learning: back-propagation is the costate recursion
#
# Section 8 of the paper ends with Lemma 2 at $h = 1$: for the multi-stage process
# $x_{k+1} = x_k + f(x_k, u_k)$ the gradient of the loss *is* the Hamiltonian gradient,
#
# $$\frac{\partial E^N}{\partial u_k} = \frac{\partial H}{\partial u_k}, \qquad (70)$$
#
# "a foundational equation for both back propagation in deep learning and automatic
# differentiation in the reverse mode". The conclusions add that the signature problem
# of the paper is a fundamental problem of deep learning, and that its Hamiltonian
# programming (section 6) can speed up learning. This tutorial shows three claims with
# the library's own verbs, on a residual network small enough to read:
#
# 1. a residual block $x_{k+1} = x_k + h\,f(x_k, u_k)$ is a forward-Euler step (16): the
#    layers are the grid intervals, the layer weights are the controls $u_k$;
# 2. with $h = 1$ the costate recursion is back-propagation: $\nabla E^N = \partial H/\partial u$
#    and the costates $\lambda_k$ are the "deltas" $\partial E/\partial x_{k+1}$;
# 3. the Hamiltonian metric $M = \mathrm{diag}(h)$ is the learning rate divided by $h$, and
#    it trains in a number of iterations that does not grow with the depth.
#
# Run it with `python docs/tutorials/deep_learning.py`; the figure
# [`depth`](../figures.md) draws claim 3 at depths up to 256.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import flow
import stability


# %% [markdown]
# ## 1. A residual network is forward Euler
#
# The training set: four 1-D inputs $s_i$ with targets $y_i = \sin 2 s_i$. Each input is
# lifted to the 2-D feature $x_i(0) = (s_i, 0)$, every layer applies
# $f(x, u) = \tanh(W x + b)$ to each sample with the same weights $u = (W, b)$
# ($m = 6$), and the loss reads the second feature out:
# $E = \frac14\sum_i (c^T x_i - y_i)^2$, $c = (0, 1)$. The state of the control problem
# stacks the features of all samples, $x \in \mathbb{R}^{B d} = \mathbb{R}^8$; the
# network's "length" is the final time $T$, and a network of depth $N$ is the Euler
# discretisation with $h = T/N$.

# %%
s = np.array([-1.0, -0.4, 0.3, 1.0])
y = jnp.asarray(np.sin(2.0 * s))
c = jnp.array([0.0, 1.0])
B, d = 4, 2
X0 = np.stack([s, np.zeros(B)], axis=1)  # samples as rows


def f(x, u):  # one layer, all samples, shared weights
    W, b = u[:4].reshape(2, 2), u[4:]
    return jnp.tanh(x.reshape(B, d) @ W.T + b[None, :]).reshape(-1)


def E(x):  # mean squared error of the fixed readout
    return jnp.mean((x.reshape(B, d) @ c - y) ** 2)


def network(T):
    return flow.OptimalControlProblem(f, E, X0.reshape(-1), 0.0, T, control_dim=6)


N, T = 8, 2.0
sh = flow.shoot(network(T), N, flow.Euler())
h = T / N
U = jnp.asarray(0.7 * np.random.default_rng(0).standard_normal((N, 6)))  # layer weights

# the same network written as deep-learning code: a loop over residual blocks
X = X0.copy()
for k in range(N):
    W, b = np.asarray(U[k, :4]).reshape(2, 2), np.asarray(U[k, 4:])
    X = X + h * np.tanh(X @ W.T + b)
err = float(np.max(np.abs(X.reshape(-1) - np.asarray(sh.states(U)[-1]))))
print(f"depth N = {N}, h = {h}: |x_N(shooting) - x_N(residual network)| = {err:.1e}")
print(f"loss E^N(U) = {float(sh.cost(U)):.6f}")
assert err < 1e-14

# %% [markdown]
# ## 2. With $h = 1$ the costate recursion is back-propagation
#
# Take $T = N$, so $h = 1$: the blocks are $x_{k+1} = x_k + \tanh(W_k x_k + b_k)$, a
# standard residual network. The costates $\lambda_k = \partial E^N/\partial x_{k+1}$
# (`Shooting.costates`, recursion (23), (25)) should be back-propagation's deltas, the
# derivative of the loss with respect to each hidden activation. To get those
# independently of `flow`, write the forward pass by hand with a perturbation
# $\varepsilon_k$ added to each block's output and let `jax.grad` differentiate it with
# respect to $\varepsilon$ at $\varepsilon = 0$.

# %%
sh1 = flow.shoot(network(float(N)), N)  # T = N = 8: h = 1, the same weights U
print("steps h_k:", np.asarray(sh1.steps))


def resnet_loss(weights, eps):  # a hand-written residual network, h = 1
    X = jnp.asarray(X0)
    for k in range(N):
        W, b = weights[k, :4].reshape(2, 2), weights[k, 4:]
        X = X + jnp.tanh(X @ W.T + b[None, :]) + eps[k]
    return jnp.mean((X @ c - y) ** 2)


backprop = jax.jit(jax.grad(resnet_loss, argnums=(0, 1)))  # weights and activations
backprop_grad, deltas = backprop(U, jnp.zeros((N, B, d)))

g = sh1.gradient(U)  # grad E^N (autodiff through the scan)
dH = sh1.hamiltonian_gradient(U)  # d_u H(lambda_k, x_k, u_k) = f_u^T lambda_k
lam = sh1.costates(U)
scale = float(jnp.max(jnp.abs(g)))
e70 = float(jnp.max(jnp.abs(g - dH))) / scale
e_bp = float(jnp.max(jnp.abs(dH - backprop_grad))) / scale
e_lam = float(jnp.max(jnp.abs(lam - deltas.reshape(N, -1)))) / float(jnp.max(jnp.abs(lam)))
print(f"(70)  |grad E^N - dH/du| / |grad|        = {e70:.1e}")
print(f"      |dH/du - backprop gradient| / |grad| = {e_bp:.1e}")
print(f"      |lambda_k - delta_(k+1)| / |lambda|  = {e_lam:.1e}")
# float64 rounding: sums of at most N = 8 products of O(1) factors
assert e70 < 1e-13 and e_bp < 1e-13 and e_lam < 1e-13

# %% [markdown]
# The equality needs $h = 1$. For any other step, (49) says $\nabla E^N = h\,\partial H/\partial u$:
# the gradient of a network of total time $T$ shrinks like $1/N$ as it gets deeper,
# while $\partial H/\partial u$ converges. The "missing $h$" of (70) is what section 6
# is about.

# %%
g8, dH8 = sh.gradient(U), sh.hamiltonian_gradient(U)
gmax, hmax = float(jnp.max(jnp.abs(g8))), float(jnp.max(jnp.abs(dH8)))
print(f"h = {h}: max |grad E^N| = {gmax:.3f}, max |dH/du| = {hmax:.3f}")
assert float(jnp.max(jnp.abs(g8 - h * dH8))) < 1e-13 * float(jnp.max(jnp.abs(g8)))

# %% [markdown]
# ## 3. The Hamiltonian metric is a depth-scaled learning rate
#
# Gradient descent with learning rate $\alpha$ is `flow.descend` with the identity
# metric, $U \leftarrow U - \alpha\nabla E^N$. The Hamiltonian metric with step $c$ is
# $U \leftarrow U - c\,M^{-1}\nabla E^N = U - c\,\partial H/\partial U$ (Lemma 2): on a
# uniform grid, gradient descent with $\alpha = c/h$. Same iterates:

# %%
step, tol = 0.25, 1e-6
U0 = sh.zeros()
ham = flow.descend(sh, U0, metric="hamiltonian", step=step, tol=tol)
scaled = flow.descend(sh, U0, metric="identity", step=step / h, tol=tol)
diff = float(jnp.max(jnp.abs(ham.U - scaled.U)))
print(
    f"Hamiltonian, step {step}: {int(ham.num_steps)} iterations, loss {float(sh.cost(ham.U)):.1e}"
)
print(f"identity, alpha = {step}/h = {step / h}: {int(scaled.num_steps)} iterations")
print(f"max |U_hamiltonian - U_identity| = {diff:.1e}")
assert int(ham.num_steps) == int(scaled.num_steps) and diff < 1e-12

# %% [markdown]
# Both steps are forward Euler on the gradient flow (50), so they must lie inside the
# forward-Euler bound $\alpha_{\max}$ of the flow's Jacobian $J = -M^{-1}\nabla^2 E^N$ at
# the trained equilibrium (section 5). The loss is zero on a whole manifold of weights
# (48 weights, 4 targets), so most eigenvalues vanish; `euler_bound` leaves them out. On
# a uniform grid $J_I = h\,J_H$, so the identity metric's bound is $1/h$ times the
# Hamiltonian one: it grows like $N$, and a fixed learning rate uses less and less of it.

# %%
trained = flow.descend(sh, ham.U, metric="hamiltonian", step=step, tol=1e-11)  # equilibrium
bounds = {}
for metric in ("identity", "hamiltonian"):
    spec = stability.spectrum(stability.linearize(sh, trained.U, metric=metric))
    bounds[metric] = stability.euler_bound(spec)
    print(f"{metric:>11}: {bounds[metric]}")
assert abs(bounds["identity"].alpha_max * h / bounds["hamiltonian"].alpha_max - 1) < 1e-8
assert step < bounds["hamiltonian"].alpha_max and step / h < bounds["identity"].alpha_max

# %% [markdown]
# Now train at fixed $T = 2$ and growing depth with two learning rates: a fixed
# $\alpha = c/h_0$ (the depth-scaled rate of the shallowest network, $N_0 = 4$) and the
# depth-scaled $\alpha = c/h$, i.e. the Hamiltonian metric. Both stop on the same
# mesh-independent residual $\max_k|\partial_u H_k| \le 10^{-6}$ (`stop_on="hamiltonian"`).
# The fixed rate needs about $N/N_0$ times as many iterations: each step moves the
# weights by $\alpha h\,\partial H/\partial U$, and $h$ shrinks. The depth-scaled rate
# needs the same number at every depth (mesh independence, section 6.2).

# %%
depths = (4, 8, 16)
alpha = step / (T / depths[0])
counts = {"fixed": [], "scaled": []}
for n in depths:
    sh_n = flow.shoot(network(T), n)
    for name, a in (("fixed", alpha), ("scaled", step * n / T)):
        tr = flow.descend(sh_n, sh_n.zeros(), metric="identity", step=a, tol=tol, max_steps=20_000)
        counts[name].append(int(tr.num_steps))
print(f"{'N':>4} {'fixed alpha':>12} {'alpha = c/h':>12}")
for n, i1, i2 in zip(depths, counts["fixed"], counts["scaled"], strict=True):
    print(f"{n:>4} {i1:>12} {i2:>12}")
fixed, scaled_counts = np.array(counts["fixed"]), np.array(counts["scaled"])
slope = np.polyfit(np.log(depths), np.log(fixed), 1)[0]
print(f"fixed alpha = {alpha}: iterations ~ N^{slope:.2f}")
assert 0.85 < slope < 1.1  # grows like N
assert np.max(scaled_counts) / np.min(scaled_counts) < 1.1  # flat

fig, ax = plt.subplots(figsize=(5, 3.4), layout="constrained")
ax.loglog(depths, fixed, "o-", label=rf"fixed $\alpha = {alpha:g}$ (identity metric)")
ax.loglog(depths, scaled_counts, "^--", label=rf"$\alpha = {step:g}/h$ (Hamiltonian metric)")
ax.set_xticks(depths, [str(n) for n in depths])
ax.set_xticks([], minor=True)
ax.set_xlabel(r"depth $N$ ($h = T/N$, $T = 2$)")
ax.set_ylabel(r"iterations to $\max_k|\partial_u H_k| \leq 10^{-6}$")
ax.legend()

# %% [markdown]
# The conclusions' remark in one line: a learning rate is a step in flow time $\tau$, and
# the time a residual network needs to train is set by $\partial H/\partial U$, not by
# $\nabla E^N = h\,\partial H/\partial U$. Scaling the rate by $1/h$ (equivalently,
# treating the step size $h$ as part of the model) makes training depth-independent, and
# stopping on $\max_k|\partial_u H_k|$ instead of $\|\nabla E^N\|_\infty$ (Theorem 5.14)
# makes the tolerance mean the same at every depth.
