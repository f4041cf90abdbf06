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
# projected descent. Line searches, L-BFGS and the Newton metric are refused with
# bounds: a projected Newton step needs the two-metric scheme that
# `stability.equilibrium` uses.

# %%
report = stability.analyze(sh_lq)
print(report.verdict)
print(f"predicted rate {report.predicted_rate:.4f}, observed {report.observed_rate:.4f}")
