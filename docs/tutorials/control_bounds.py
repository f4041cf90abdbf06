# %% [markdown]
# # Control bounds: projected descent and the reduced analysis
#
# Real problems bound their controls: a fishing rate in $[0, 1]$, an actuator limit.
# With box bounds $\ell \le u_k \le \upsilon$ the direct method minimises $E^N(U)$
# over a box $B$, and the optimizer becomes *projected* descent,
# $U \leftarrow P_B(U - \alpha M^{-1}\nabla E^N(U))$, with $P_B$ the componentwise clip.
# The paper's analysis carries over:
#
# - a solution is a KKT point: the **projected gradient** $U - P_B(U - \nabla E^N)$
#   vanishes. On the free set the gradient is zero; on a bound it points out of the
#   box, and its value there is the **bound multiplier** $\nu$;
# - by Lemma 2 ($\nabla_{u_k}E^N = h_k\,\partial_u H_k$) the multiplier is $h_k$ times
#   the Hamiltonian gradient, so the mesh-independent residual is the projected
#   Hamiltonian gradient, and Theorem 5.14's $\epsilon/h$ applies to it;
# - near a solution with strict complementarity the active controls stay on their
#   bounds, and the free ones follow the unbounded flow restricted to the free set.
#   The stability of projected descent is that of the **reduced** Jacobian
#   $-M_{FF}^{-1}\nabla^2_{FF}E^N$, with its own forward-Euler bound.

# %%
import matplotlib.pyplot as plt
import numpy as np

import flow
import stability
from flow import problems


# %% [markdown]
# ## 1. A bounded problem and its equilibrium
#
# `lotka_volterra_bounded` is Sager's fishing problem with a quadratic control cost
# and a fishing rate $0 \le u \le 1$. Bounds are part of the problem
# (`OptimalControlProblem(..., control_bounds=(lower, upper))`, numbers or arrays of
# shape `(m,)`), or given per interval to `flow.shoot` as arrays of shape `(N, m)`.
# `stability.equilibrium` solves the bounded problem by projected Newton-CG
# (Bertsekas 1982). It returns the active set (-1 at the lower bound, +1 at the
# upper, 0 free), the multipliers, and the components where strict complementarity
# fails.

# %%
problem = problems.get("lotka_volterra_bounded")
print(problem)
sh = flow.shoot(problem, 200)
eq = stability.equilibrium(sh)
print(eq)
active = np.asarray(eq.active_set).ravel()
print("at the lower bound:", np.sum(active == -1), " at the upper bound:", np.sum(active == 1))
print("degenerate components:", np.flatnonzero(np.asarray(eq.degenerate).ravel()))

# %% [markdown]
# The one degenerate component is the last control: the costate vanishes at $T$, so
# $\partial_u H = 2\rho u$ there. The unbounded minimiser $u = 0$ then lies exactly on
# the bound, with a zero multiplier.
#
# The multipliers are $h$ times the Hamiltonian gradient on the active set (Lemma 2),
# with the sign of a KKT point: $\nu \ge 0$ at a lower bound, $\le 0$ at an upper one.

# %%
nu = np.asarray(eq.multipliers).ravel()
dH = np.asarray(sh.hamiltonian_gradient(eq.U)).ravel()
h = float(sh.steps[0])
on = active != 0
print("max |nu - h dH/du| on the active set:", np.max(np.abs(nu[on] - h * dH[on])))
print("signs hold:", bool(np.all(nu[active == -1] >= 0) and np.all(nu[active == 1] <= 0)))

t = np.asarray(sh.grid)
fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
a.stairs(np.asarray(eq.U)[:, 0], t, label="$u^*_k$", linewidth=1.5, baseline=None)
a.axhline(0.0, color="0.5", linestyle=":", label="bounds")
a.axhline(1.0, color="0.5", linestyle=":")
a.fill_between(t[:-1], 0, 1, where=on, step="post", alpha=0.15, color="C2", label="on a bound")
a.set_xlabel("$t$")
a.set_ylabel("$u$")
a.set_title("fishing rate at the equilibrium")
a.legend(loc="upper right")
b.stairs(dH, t, color="C1", baseline=None, label=r"$\partial_u H_k$")
b.axhline(0.0, color="0.5", linewidth=0.8)
b.set_xlabel("$t$")
b.set_ylabel(r"$\partial_u H_k$")
b.set_title(r"$\partial_u H = 0$ on the free set only")
b.legend(loc="lower right")
plt.show()

# %% [markdown]
# ## 2. The reduced spectrum and projected descent
#
# `stability.linearize` at a bounded equilibrium restricts the problem to its free
# components (`flow.bounds.restrict`), so `spectrum`, `classify` and `euler_bound`
# give the reduced quantities. On a linear-quadratic problem with $|u| \le 0.3$, the
# bound $\alpha_{\max}$ of projected descent is checked the way the paper checks the
# unbounded one: just below it descent converges, and just above it the free
# components oscillate away.

# %%
lq = problems.get("linear_quadratic")
bounded_lq = flow.OptimalControlProblem(
    lq.dynamics,
    lq.endpoint_cost,
    lq.x0,
    lq.t0,
    lq.tf,
    running_cost=lq.running_cost,
    control_dim=2,
    control_bounds=(-0.3, 0.3),
    name="lq_bounded",
)
sh_lq = flow.shoot(bounded_lq, 40)
eq_lq = stability.equilibrium(sh_lq)
spec = stability.spectrum(stability.linearize(sh_lq, eq_lq))
bound = stability.euler_bound(spec)
print(eq_lq)
print(f"free components: {spec.size} of {eq_lq.U.size}, reduced alpha_max = {bound.alpha_max:.4f}")

rng = np.random.default_rng(0)
free = (np.asarray(eq_lq.active_set) == 0).astype(float)
start = np.asarray(eq_lq.U) + 1e-3 * rng.standard_normal(eq_lq.U.shape) * free
fig, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
for factor, style in ((0.97, "-"), (1.03, "--")):
    trace = flow.descend(
        sh_lq, start, step=factor * bound.alpha_max, max_steps=400, tol=1e-12, throw=False
    )
    residual = np.asarray(trace.residual)[: int(trace.num_steps) + 1]
    ax.semilogy(residual, style, label=rf"{factor} $\alpha_{{\max}}$: {trace.status}")
ax.set_xlabel("iteration $i$")
ax.set_ylabel(r"$\max|U - P_B(U - \partial_u H)|$")
ax.set_title("projected descent on either side of the reduced bound")
ax.legend()
plt.show()

# %% [markdown]
# ## 3. The whole analysis
#
# `stability.analyze` (and `gradflow analyze --problem lotka_volterra_bounded`) runs
# the same steps on a bounded problem. It finds the equilibrium with its active set,
# the reduced spectrum, the reduced Euler bound with its predicted rate, and replays
# projected descent. Its replay keeps to the identity and Hamiltonian metrics with a
# fixed step, whose reduced spectrum and Euler bound it predicts; section 5 shows
# the Newton and L-BFGS iterations with bounds.

# %%
report = stability.analyze(sh_lq)
print(report.verdict)
print(f"predicted rate {report.predicted_rate:.4f}, observed {report.observed_rate:.4f}")

# %% [markdown]
# ## 4. The projected gradient flow
#
# Projected descent with a constant step is forward Euler on the **projected
# gradient flow** $dU/d\tau = P_{T_B(U)}(-M^{-1}\nabla E^N(U))$: the tangent-cone
# projection holds a control that sits on its bound while its force points out of
# the box. `flow.gradient_flow` integrates it for diagonal metrics, one smooth
# segment per active set. A free control reaching its bound (a *hit*) and an active
# one whose multiplier changes sign (a *release*) are diffrax events, located by
# bisection on the dense output.
#
# A small problem shows both. With $\dot x = u$, $|u| \le 1$, running cost
# $(x^2 + \rho u^2)/2$ and $E = w(x(1) - a)^2/2$, the terminal pull first drives the
# controls up: four hit the upper bound. As $x(1)$ approaches $a$, the running cost
# takes over and releases them one by one.

# %%
import diffrax  # noqa: E402
import jax.numpy as jnp  # noqa: E402


w, a_target, rho = 20.0, 0.3, 0.5
pull = flow.OptimalControlProblem(
    lambda x, u: u,
    lambda x: 0.5 * w * (x[0] - a_target) ** 2,
    jnp.zeros(1),
    0.0,
    1.0,
    running_cost=lambda x, u: 0.5 * (x[0] ** 2 + rho * u[0] ** 2),
    control_dim=1,
    control_bounds=(-1.0, 1.0),
    name="terminal pull",
)
sh_pull = flow.shoot(pull, 8)
U0 = np.repeat([0.9, -0.9], 4)[:, None]
sol = flow.gradient_flow(
    sh_pull, U0, metric="identity", tol=None, tau1=3.0,
    saveat=diffrax.SaveAt(t0=True, t1=True, dense=True),
)  # fmt: skip
print(sol)
switch_times = np.asarray(sol.tau)[1:-1]
print(f"{sol.switches} changes of the active set at tau =", np.round(switch_times, 4))

taus = np.linspace(0.0, 3.0, 601)
path = np.asarray(sol.evaluate(taus))[:, :, 0]
fig, ax = plt.subplots(figsize=(7, 3.6), layout="constrained")
for k in range(8):
    ax.plot(taus, path[:, k], color=plt.cm.viridis(k / 7), label=f"$u_{k}$")
ax.axhline(1.0, color="0.5", linestyle=":")
ax.axhline(-1.0, color="0.5", linestyle=":")
ax.plot(switch_times, np.full(switch_times.size, 1.1), "v", color="C3", label="switch")
ax.set_ylim(-1.1, 1.2)
ax.set_xlabel(r"flow time $\tau$")
ax.set_ylabel("$u_k$")
ax.set_title("the projected flow: four hits near 0.2, four releases near 1.3")
ax.legend(ncols=3, fontsize="small", loc="lower right")
plt.show()

# %% [markdown]
# The switching times are exact to the integration tolerance: the tests compare
# them, and the flow between them, with the exact piecewise-linear flow of this
# quadratic (`tests/test_bounds.py`). On a real problem the flow crosses many
# switches: from $U = 0$ the fishing problem above changes its active set dozens of
# times, goes stiff and switches to the implicit solver, and ends at the projected
# Newton equilibrium.

# %%
flow_lv = flow.gradient_flow(sh, sh.zeros(), tol=1e-9)
print(flow_lv)
print(f"{flow_lv.switches} switches; max |U - U*| =", float(np.max(np.abs(flow_lv.U - eq.U))))

# %% [markdown]
# ## 5. Projected Newton and L-BFGS
#
# Projecting $U - \alpha M^{-1}\nabla E^N$ onto the box is a descent method only
# for a diagonal $M$. With the Newton metric, Armijo's rule or L-BFGS, `descend`
# uses Bertsekas' **two-metric projection**: a diagonal step on the
# $\varepsilon$-active set (controls close to a bound that the gradient pushes
# onto it), the metric's own step on the rest (Newton: conjugate gradients on the
# free block of the Hessian), and Armijo's rule along the projection arc
# $P_B(U - \alpha D)$. Near the solution it is Newton's method on the free set, and
# converges quadratically.

# %%
fig, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
runs = [
    ("newton", "armijo", "Newton, Armijo on the arc"),
    ("hamiltonian", "lbfgs", "L-BFGS (Hamiltonian start)"),
    ("hamiltonian", 0.04, r"Hamiltonian metric, $\alpha = 0.04$"),
]
for metric, step, label in runs:
    trace = flow.descend(sh, sh.zeros(), metric=metric, step=step, max_steps=300,
                         tol=1e-9, throw=False)  # fmt: skip
    residual = np.asarray(trace.residual)[: int(trace.num_steps) + 1]
    ax.semilogy(residual, label=f"{label}: {trace.status} in {int(trace.num_steps)}")
ax.set_xlabel("iteration $i$")
ax.set_ylabel(r"$\max|U - P_B(U - \partial_u H)|$")
ax.set_title("projected descent on the fishing problem, N = 200")
ax.legend(fontsize="small")
plt.show()

# %% [markdown]
# Projected Newton converges quadratically once its active set is the solution's.
# L-BFGS stalls near $10^{-8}$, at the rounding floor of its line search (as it does
# without bounds: the decrease Armijo's rule must verify falls below the cost's
# rounding). Gradient descent with the Hamiltonian metric is slow here at any stable
# step.
#
# ## 6. The indirect side
#
# The minimum principle with a box says that $u(t)$ minimises $H$ over the box.
# `flow.indirect.solve_conditions` solves its discrete form,
# $u_k - P_B(u_k - \partial_u H_k) = 0$, by semismooth Newton, and gives the direct
# method's KKT point: the bounded Proposition 4.5, checked to $10^{-9}$ in
# `tests/test_bounds.py`. `flow.indirect.costate_shooting` integrates the continuous
# conditions with the control $\arg\min_{\ell \le u \le \upsilon} H$ (projected Newton
# on $H$); its controls approach the direct equilibrium at first order in $h$
# (`tests/test_bounds_indirect.py`). On long horizons its Newton iteration on
# $\lambda(t_0)$ has a small basin: start it from the direct costates,
# `sh.costates(eq.U)[0, :n]`. `stability.basin` compares the three methods' regions
# of convergence on a bounded problem, with its random starts projected onto the box.

# %%
conditions = flow.indirect.solve_conditions(sh)
print(conditions)
print("max |U_conditions - U*| =", float(np.max(np.abs(conditions.U - eq.U))))
