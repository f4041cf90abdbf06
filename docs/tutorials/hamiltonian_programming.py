# %% [markdown]
# # Hamiltonian programming
#
# Section 7 of the paper: "if Theorem 5.14 is violated, then a direct shooting method
# exhibits all the properties reported in the literature" (inaccuracy, slow
# convergence); "any method that complies with Theorem 5.14 incorporates its indirect
# counterpart; hence, we call such methods Hamiltonian programming". This tutorial
# measures the two complaints of section 6 and their remedies on the signature problem
# with a control penalty, writes out the "Hamiltonianized" ODE of section 7.1
# (eqs. (62)-(64)) and checks what the paper says about it, and measures one more
# Hamiltonian condition that a nonlinear-programming view never looks at: the constancy
# of the Hamiltonian along the optimum of an autonomous problem.
# Run it with `python docs/tutorials/hamiltonian_programming.py`.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import flow
import stability
from flow import problems


problem = problems.scalar_regularized()  # x' = -x + u - 0.1 x^3, cost (x(1)-1)^2/2 + int u^2/2
Ns = (50, 100, 200)
shootings = {N: flow.shoot(problem, N) for N in Ns}  # forward Euler, h = 1/N

# %% [markdown]
# ## 1. Theorem 5.14: a tolerance on the gradient is $\epsilon/h$ on the Hamiltonian
#
# By Lemma 2 (eq. (49)) the gradient of the direct method is
# $\partial E^N/\partial u_k = h\,\partial_u H(\lambda_k, x_k, u_k)$. So stopping at
# $\|\nabla E^N\|_\infty \le \epsilon$ (eq. (54)) only guarantees
# $\max_k|\partial_u H_k| \le \epsilon/h$ (eq. (55)): a hundred times worse at $h = 0.01$,
# and worse on every refinement (section 6.1). `stability.hamiltonian_tolerance` maps
# $\epsilon$ to $\epsilon/\min_k h_k$; the remedy, "vary $\epsilon$ in concert with
# $h$", is `stability.gradient_tolerance`: $\epsilon = h\,\epsilon_H$.

# %%
eps = 1e-3
for N, sh in shootings.items():
    eps_over_h = float(stability.hamiltonian_tolerance(eps, sh))
    eps_remedy = float(stability.gradient_tolerance(eps, sh))
    print(
        f"N = {N:4d}: |grad E^N| <= {eps:g} means max|dH/du| <= {eps_over_h:5.2f};"
        f"  for max|dH/du| <= {eps:g} stop at |grad E^N| <= {eps_remedy:.1e}"
    )
    np.testing.assert_allclose([eps_over_h, eps_remedy], [eps * N, eps / N], rtol=1e-12)

# %% [markdown]
# We solve the problem on the three grids with descent in the Hamiltonian metric
# ($M = \mathrm{diag}(h_k)$, step $\alpha = 1$), saving the iterates, and look up in each
# run where a gradient tolerance would have stopped it, and what the control was worth
# there: the achieved $\max_k|\partial_u H_k|$ and the distance to the converged
# optimum $U^*$ (stopping on the Hamiltonian residual at `tol = 1e-8`).

# %%
runs = {}
for N, sh in shootings.items():
    runs[N] = flow.descend(
        sh, sh.zeros(), metric="hamiltonian", step=1.0, tol=1e-8, max_steps=100, save_iterates=True
    )


def stop_at(trace, gradient_tol):
    """Where `tol=gradient_tol, stop_on="gradient"` would have stopped: the first
    iterate i with |grad E^N|_inf <= gradient_tol; its max|dH/du| and max|U_i - U*|."""
    i = int(np.argmax(np.asarray(trace.gradient_norm) <= gradient_tol))
    dH = float(trace.hamiltonian_norm[i])
    error = float(jnp.max(jnp.abs(trace.iterates[i] - trace.U)))
    return i, dH, error


print(f"{'':12}| stop at |grad E^N| <= eps = {eps:g}  | stop at |grad E^N| <= h * {eps:g}")
print(
    f"{'N':>5} {'eps/h':>5} | {'iter':>4} {'max|dH/du|':>10} {'|U-U*|':>9} "
    f"| {'iter':>4} {'max|dH/du|':>10} {'|U-U*|':>9}"
)
fixed, remedy = {}, {}
for N, tr in runs.items():
    h = 1.0 / N
    fixed[N], remedy[N] = stop_at(tr, eps), stop_at(tr, eps * h)
    print(
        f"{N:5d} {eps / h:5.2f} | {fixed[N][0]:4d} {fixed[N][1]:10.2e} {fixed[N][2]:9.2e} "
        f"| {remedy[N][0]:4d} {remedy[N][1]:10.2e} {remedy[N][2]:9.2e}"
    )
    assert fixed[N][1] <= eps / h  # Theorem 5.14, (55)
    assert remedy[N][1] <= eps  # the remedy of section 6.1
# On the finest grid the gradient test accepts a control 100 times worse in dH/du:
assert fixed[Ns[-1]][1] > 100 * remedy[Ns[-1]][1]

# %% [markdown]
# With a fixed $\epsilon$ the returned control gets *worse* as the grid is refined: on
# $N = 200$ the gradient test is met after two iterations, by a control whose
# Hamiltonian residual is $0.19$ and which is $0.13$ away from the optimum. With
# $\epsilon = h\,\epsilon_H$ every grid returns a control with
# $\max_k|\partial_u H_k| \le \epsilon_H$. The library's default stopping rule is
# `stop_on="hamiltonian"`, which is this remedy built in.
#
# ## 2. Mesh-independent convergence: the metric, or $\alpha h = 1$
#
# Section 6.2: by Lemma 2 the gradient method (37) with the identity metric is
# $U_{i+1} = U_i - \alpha h\,\partial H/\partial U$ (eq. (56)), "an indirect method with
# a step size of $h$". Its flow's Jacobian is $h$ times that of the indirect method, so
# at $\alpha = 1$ the number of iterations grows like $N$. The paper's remedy is
# $\alpha h = 1$; the Hamiltonian metric $M = \mathrm{diag}(h_k)$ does the same on any
# grid, uniform or not. We count the iterations to $\max_k|\partial_u H_k| \le 10^{-8}$
# (a mesh-independent test, by section 1) from $U = 0$.

# %%
iterations = {
    "identity, alpha = 1": [],
    "identity, alpha = 1/h (56)": [],
    "Hamiltonian metric, alpha = 1": [],
}
for N, sh in shootings.items():
    h = 1.0 / N
    plain = flow.descend(sh, sh.zeros(), metric="identity", step=1.0, tol=1e-8, max_steps=50 * N)
    # the same compiled loop (alpha is data, not code), only the step differs
    scaled = flow.descend(
        sh, sh.zeros(), metric="identity", step=1.0 / h, tol=1e-8, max_steps=50 * N
    )
    iterations["identity, alpha = 1"].append(int(plain.num_steps))
    iterations["identity, alpha = 1/h (56)"].append(int(scaled.num_steps))
    iterations["Hamiltonian metric, alpha = 1"].append(int(runs[N].num_steps))
    # on a uniform grid, alpha = 1/h with M = I is the Hamiltonian metric with alpha = 1
    np.testing.assert_allclose(scaled.U, runs[N].U, rtol=0, atol=1e-12)

print(f"{'N':>30}" + "".join(f"{N:>7d}" for N in Ns) + "   fitted p (iterations ~ N^p)")
exponents = {}
for name, its in iterations.items():
    exponents[name] = round(float(np.polyfit(np.log(Ns), np.log(its), 1)[0]), 3) + 0.0
    print(f"{name:>30}" + "".join(f"{k:>7d}" for k in its) + f"   {exponents[name]:+.3f}")
# the slowest mode of the identity metric's J is -h * (control weight 1): ~N iterations
assert abs(exponents["identity, alpha = 1"] - 1) < 0.05
assert (
    max(iterations["Hamiltonian metric, alpha = 1"])
    - min(iterations["Hamiltonian metric, alpha = 1"])
    <= 1
)

# %% [markdown]
# ## 3. The "Hamiltonianized" ODE, eqs. (62)-(64)
#
# Section 7.1 attaches to any ODE $\dot x = f(x)$, $x \in \mathbb{R}^{n}$, a scalar
# function and a "shadow" ODE:
#
# $$\mathcal{H}(\psi, x) = \psi^T f(x) \quad (62), \qquad
# -\dot\psi = \partial_x \mathcal{H}(\psi, x) = \Big(\frac{\partial f}{\partial x}\Big)^T\psi
# \quad (63),$$
#
# so that the pair
#
# $$\dot x = \partial_\psi \mathcal{H}(\psi, x) \;(= f(x)) \quad (64a), \qquad
# -\dot\psi = \partial_x \mathcal{H}(\psi, x) \quad (64b)$$
#
# is a Hamiltonian system in the canonical variables $(x, \psi)$, of which the given ODE
# is one half. For a linear ODE $\dot x = Ax$ (60) the shadow is $-\dot\psi = A^T\psi$
# (61). The paper's claim is that this second half is exactly what a direct method
# leaves out and what Proposition 4.5 supplies. Three consequences can be checked
# numerically:
#
# - being Hamiltonian and autonomous, (64) conserves $\mathcal{H}(\psi(t), x(t))$;
# - the shadow ODE is the adjoint of the variational equation
#   $\dot v = (\partial f/\partial x) v$: the pairing $\psi^T v$ is constant in $t$,
#   so with the transversality condition $\psi(t_f) = \nabla E(x(t_f))$ (eq. (7)),
#   $\psi(t_0) = \nabla_{x_0} E(x(t_f))$: back-propagation;
# - the direct method's costate recursion (23) is (64b) discretized the way Lemma 1
#   requires (the paper's "backward Euler": run from $t_f$ to $t_0$, each step uses the
#   later costate): $\lambda_{k-1} = \lambda_k + h\,\partial_x H(\lambda_k, x_k, u_k)$.
#
# The example is the (unforced, dissipative, not Hamiltonian) Van der Pol oscillator
# $\dot x_1 = x_2$, $\dot x_2 = (1 - x_1^2)x_2 - x_1$ on $[0, 5]$. JAX builds (64) from
# $\mathcal{H}$ alone; we integrate it together with the variational matrix $V$
# ($\dot V = (\partial f/\partial x)V$, $V(0) = I$) by classical Runge-Kutta with
# 2000 steps, written as one `lax.scan`.


# %%
def f(x):
    return jnp.stack([x[1], (1 - x[0] ** 2) * x[1] - x[0]])


def script_H(psi, x):  # (62)
    return psi @ f(x)


def hamiltonianized(z):  # (64a), (64b), and the variational equation V' = f_x V
    x, psi, V = z[:2], z[2:4], z[4:].reshape(2, 2)
    dx = jax.grad(script_H, argnums=0)(psi, x)
    dpsi = -jax.grad(script_H, argnums=1)(psi, x)
    return jnp.concatenate([dx, dpsi, (jax.jacfwd(f)(x) @ V).ravel()])


# (64a) is the given ODE; for f(x) = A x, (64b) is the shadow ODE (61), -psi' = A^T psi
A = jnp.array([[0.0, 1.0], [-2.0, -0.3]])
x_, psi_ = jnp.array([0.7, -1.2]), jnp.array([0.4, 2.0])
np.testing.assert_array_equal(jax.grad(script_H, argnums=0)(psi_, x_), f(x_))
np.testing.assert_allclose(jax.grad(lambda x: psi_ @ (A @ x))(x_), A.T @ psi_, rtol=1e-15)

T, steps = 5.0, 2000


@jax.jit
def solve(x0, psi0):
    """x, psi and V at t_j = j T / steps, j = 0..steps (classical RK4)."""
    dt = T / steps

    def rk4(z, _):
        k1 = hamiltonianized(z)
        k2 = hamiltonianized(z + dt / 2 * k1)
        k3 = hamiltonianized(z + dt / 2 * k2)
        k4 = hamiltonianized(z + dt * k3)
        z = z + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return z, z

    z0 = jnp.concatenate([x0, psi0, jnp.eye(2).ravel()])
    zs = jnp.concatenate([z0[None], jax.lax.scan(rk4, z0, length=steps)[1]])
    return zs[:, :2], zs[:, 2:4], zs[:, 4:].reshape(-1, 2, 2)


x0, psi0 = jnp.array([1.0, 0.5]), jnp.array([0.3, -1.0])
xs, psis, Vs = map(np.asarray, solve(x0, psi0))
Hs = psis[:, 0] * xs[:, 1] + psis[:, 1] * ((1 - xs[:, 0] ** 2) * xs[:, 1] - xs[:, 0])  # (62)
pairing = np.einsum("ti,tij->tj", psis, Vs)  # psi(t)^T V(t)
print(
    f"H(psi, x) = {Hs[0]:.6f} at t = 0; max_t |H - H(0)| = {np.max(np.abs(Hs - Hs[0])):.1e}"
    f"  (|psi| up to {np.max(np.abs(psis)):.1f}, |x| up to {np.max(np.abs(xs)):.1f})"
)
print(f"max_t |psi(t)^T V(t) - psi(0)^T| = {np.max(np.abs(pairing - np.asarray(psi0))):.1e}")
# RK4's global error at dt = 2.5e-3 is ~dt^4 * (derivatives of order 10) ~ 1e-9 at most
assert np.max(np.abs(Hs - Hs[0])) < 1e-9 and np.max(np.abs(pairing - np.asarray(psi0))) < 1e-9

# Transversality (7): the shadow trajectory that ends at psi(tf) = grad E(x(tf)) starts,
# by the constant pairing, at psi(t0) = V(tf)^T grad E(x(tf)): the gradient of E(x(tf))
# with respect to x0. Reference: central differences of the forward solve.
target = np.array([1.0, 0.0])


def E(x):
    return 0.5 * np.sum((x - target) ** 2)  # grad E(x) = x - target


psi_start = Vs[-1].T @ (xs[-1] - target)
delta = 1e-5
fd = [
    (E(solve(x0 + delta * e, psi0)[0][-1]) - E(solve(x0 - delta * e, psi0)[0][-1])) / (2 * delta)
    for e in jnp.eye(2)
]
print(f"psi(t0) = {psi_start},  central differences of E(x(tf; x0)): {np.array(fd)}")
# delta = 1e-5: truncation ~delta^2 |E'''| ~ 1e-9, rounding ~1e-16/delta ~ 1e-11
np.testing.assert_allclose(psi_start, fd, atol=1e-8)

# %% [markdown]
# Both invariants hold to the integrator's accuracy, and the shadow trajectory that
# ends at $\nabla E(x(t_f))$ starts at the gradient with respect to the initial state:
# the shadow ODE is back-propagation, the half of the Hamiltonian system that
# computes gradients. Now the discrete version inside the direct method: on the finest
# optimum of section 1, the costates that `Shooting.costates` returns satisfy this
# discretization of (64b),
# written with the problem's Pontryagin Hamiltonian $H = \lambda^T\tilde f$ (eq. (5),
# `problem.hamiltonian`) and differentiated by JAX, independently of the library's
# adjoint code; and $\partial_u H_k = 0$ there (eq. (53)).


# %%
@jax.jit
def hamiltonian_along(lam, x, U):
    """H(lambda_k, x_k, u_k), d_x H and d_u H at every k (eq. (5), by autodiff)."""
    H = problem.hamiltonian
    return (
        jax.vmap(H)(lam, x, U),
        jax.vmap(jax.grad(H, argnums=1))(lam, x, U),
        jax.vmap(jax.grad(H, argnums=2))(lam, x, U),
    )


N = Ns[-1]
sh, U_star = shootings[N], runs[N].U
lam = sh.costates(U_star)  # lambda_k, k = 0..N-1
_, dH_dx, dH_du = hamiltonian_along(lam, sh.states(U_star)[:-1], U_star)
h = 1.0 / N
shadow_residual = float(jnp.max(jnp.abs(lam[:-1] - (lam[1:] + h * dH_dx[1:]))))
print(
    f"N = {N}: max_k |lambda_(k-1) - lambda_k - h dH/dx(lambda_k, x_k, u_k)| = "
    f"{shadow_residual:.1e}"
)
print(f"{'':9}max_k |dH/du(lambda_k, x_k, u_k)| = {float(jnp.max(jnp.abs(dH_du))):.1e}")
assert shadow_residual < 1e-14  # the same arithmetic in another order: rounding only
assert float(jnp.max(jnp.abs(dH_du))) <= 1e-8  # the stopping tolerance of section 1

# %% [markdown]
# ## 4. The Hamiltonian is constant along the optimum, to $O(h)$
#
# For an autonomous problem the Hamiltonian is constant along an optimal trajectory:
#
# $$\dot H = \partial_x H\,\dot x + \partial_\lambda H\,\dot\lambda + \partial_u H\,\dot u = 0,$$
#
# because $\dot x = \partial_\lambda H$ and $\dot\lambda = -\partial_x H$ (the pair (64)
# with the control in it, the state and adjoint equations of (14)) cancel the first two
# terms and $\partial_u H = 0$ (8) the third. An NLP solver never
# looks at this; a Hamiltonian view predicts it for the discrete optimum too, up to the
# discretization error. We measure $H_k = H(\lambda_k, x_k, u_k)$ along the discrete
# optima of section 1 and fit how $\max_k|H_k - \bar H|$ scales with $h$.

# %%
H_k, spread = {}, []
for N, sh in shootings.items():
    U = runs[N].U
    H_k[N] = np.asarray(hamiltonian_along(sh.costates(U), sh.states(U)[:-1], U)[0])
    spread.append(float(np.max(np.abs(H_k[N] - H_k[N].mean()))))
    print(f"N = {N:4d}: mean H_k = {H_k[N].mean():+.6f}, max_k |H_k - mean| = {spread[-1]:.3e}")
order = float(np.polyfit(np.log(1.0 / np.array(Ns)), np.log(spread), 1)[0])
print(f"fitted order: max_k |H_k - mean| ~ h^{order:.3f}")
assert abs(order - 1.0) < 0.05  # Euler is first order
# the optimisation error (max|dH/du| <= 1e-8) is far below the smallest spread measured
assert min(spread) > 1e3 * 1e-8
means = np.array([H_k[N].mean() for N in Ns])
ratio = (means[1] - means[0]) / (means[2] - means[1])
print(f"differences of the means: {np.diff(means)}, ratio {ratio:.3f} (first order: 2)")
assert abs(ratio - 2) < 0.1

# %% [markdown]
# The spread halves with $h$: first order, like forward Euler itself. The value the
# $H_k$ hover around converges at first order too (the differences of the means halve),
# to the constant Hamiltonian of the continuous optimum.

# %%
fig, axes = plt.subplots(1, 3, figsize=(11.5, 3.5), layout="constrained")
ax = axes[0]
labels = (
    r"$M = I$, $\alpha = 1$",
    r"$M = I$, $\alpha = 1/h$ (56)",
    r"$M = \mathrm{diag}(h)$, $\alpha = 1$",
)
for (name, its), label, marker, style, size in zip(
    iterations.items(), labels, "osd", ("-", "--", ":"), (6, 9, 5), strict=True
):
    ax.loglog(
        Ns,
        its,
        style,
        marker=marker,
        ms=size,
        mfc="none",
        lw=1.8,
        label=f"{label}: p = {exponents[name]:.2f}",
    )
ax.set_xticks(Ns, [str(N) for N in Ns])
ax.xaxis.set_minor_locator(plt.NullLocator())
ax.set_xlabel("N (grid intervals)")
ax.set_ylabel(r"iterations to $\max_k|\partial_u H_k| \leq 10^{-8}$")
ax.set_title("section 6.2: iterations against N")
ax.legend(fontsize=8, loc="center right")
ax.set_ylim(8, 2e4)

ax = axes[1]
for (N, Hk), style in zip(H_k.items(), ("-", "--", ":"), strict=True):
    t = np.asarray(shootings[N].grid[:-1])
    ax.plot(t, Hk, style, lw=1.8, label=f"N = {N}")
ax.set_xlabel("t")
ax.set_ylabel(r"$H_k = H(\lambda_k, x_k, u_k)$")
ax.set_title("the Hamiltonian along the discrete optimum")
ax.legend(fontsize=8, loc="lower left")

ax = axes[2]
hs = 1.0 / np.array(Ns)
ax.loglog(hs, spread, "o-", ms=6, lw=1.8, label=r"$\max_k|H_k - \bar H|$")
ax.loglog(hs, spread[0] * hs / hs[0], "k:", lw=1.2, label="slope 1 (guide)")
ax.set_xticks(hs, [f"1/{N}" for N in Ns])
ax.xaxis.set_minor_locator(plt.NullLocator())
ax.set_xlabel("h")
ax.set_ylabel(r"$\max_k |H_k - \bar H|$ (mean $\bar H$)")
ax.set_title(f"constancy of H: fitted order {order:.2f}")
ax.legend(fontsize=8, loc="upper left")
fig.suptitle("scalar_regularized, forward Euler")

# %% [markdown]
# ## Summary
#
# - **Stopping test.** NLP habit: $\|\nabla E^N\|_\infty \le \epsilon$, which is only
#   $\epsilon/h$ on $\partial_u H$ (Theorem 5.14). Hamiltonian programming:
#   $\max_k|\partial_u H_k| \le \epsilon_H$ (`stop_on="hamiltonian"`), or
#   $\epsilon = h\,\epsilon_H$ (`stability.gradient_tolerance`).
# - **Step and metric.** $M = I$, $\alpha = 1$: iterations $\propto N$. With
#   $\alpha h = 1$ (56) or $M = \mathrm{diag}(h_k)$ (`metric="hamiltonian"`): flat in $N$.
# - **Costates.** Hidden in the gradient; they are the shadow ODE (64b), discretized by
#   the recursion (23), and `Shooting.costates` returns them.
# - **Hamiltonian checks.** $\partial_u H_k = 0$ in its own units (53), not scaled by
#   $h$; and, for an autonomous problem, $H_k$ constant along the optimum, to $O(h)$
#   with forward Euler.
