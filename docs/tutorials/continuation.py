# %% [markdown]
# # Continuation: equilibria, their stability and the step bound against a parameter
#
# A stability study rarely asks about one problem. It asks how stability changes as a
# weight, a physical constant or a target moves, and where an optimum disappears.
# `stability.continuation` answers this for the gradient flow (50). It follows a branch
# of equilibria $\nabla E^N(U; p) = 0$ as the parameter $p$ varies, by pseudo-arclength
# continuation, which passes folds where re-solving at each $p$ cannot. At every point it
# reports:
#
# - the equilibrium, its cost and its $L^2$ norm;
# - the ends of the spectrum of $J = -M^{-1}\nabla^2 E^N$;
# - the kind: a minimiser (`asymptotically stable`) or a `saddle`, with its number of
#   unstable directions;
# - forward Euler's step bound $\alpha_{\max}$.
#
# It locates the **folds**, where a minimiser merges with a saddle and both disappear,
# and the **branch points**, where another branch crosses. It can switch onto the other
# branch at a branch point.

# %%
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import flow
import stability
from figures.continuation import plot_branch, plot_spectrum_ends, plot_step_bound
from flow import problems


# %% [markdown]
# ## 1. A problem family
#
# A family is a plain function `p -> OptimalControlProblem`. The parameter reaches it
# as a traced JAX scalar. Build the problem with `jnp` operations on `p`; closures over
# `p` are fine. This lets JAX trace $p$ and give $\partial_p\nabla E^N$, and every
# value of $p$ reuses one compiled program. Here is the tilted double well:
# $\dot x = u$, $x(0) = 0$ on $[0, 1]$, cost $(x(1)^2 - 1)^2 + p\,x(1) +
# \int_0^1 u^2/2\,dt$.

# %%
def tilted(p):
    return flow.OptimalControlProblem(
        dynamics=lambda x, u: u,
        endpoint_cost=lambda x: (x[0] ** 2 - 1.0) ** 2 + p * x[0],
        running_cost=lambda x, u: 0.5 * jnp.sum(u**2),
        x0=[0.0],
        t0=0.0,
        tf=1.0,
        control_dim=1,
        name="tilted",
    )


# %% [markdown]
# Its equilibria are known in closed form, which makes it a good first check. Forward
# Euler gives $x_N = h\sum_k u_k$, so a stationary control is constant, $u_k = x$, with
# $x = -E'(x)$, that is $4x^3 - 3x + p = 0$. For $|p| < 1$ the cubic has three real
# roots: two minimisers and a saddle. The folds are where $12x^2 - 3 = 0$: at
# $x = \pm 1/2$, $p = \pm 1$, for every $N$.
#
# We start on the outer branch at $p = -2$ and continue to $p = 2$. `U0` may be an
# equilibrium or a guess: Newton, with `stability.equilibrium` as a fallback, finds the
# point at `p_span[0]`.

# %%
N = 100
x_start = max(r.real for r in np.roots([4.0, 0.0, -3.0, -2.0]) if abs(r.imag) < 1e-12)
branch = stability.continuation(tilted, np.full((N, 1), x_start), (-2.0, 2.0), N=N)
print(branch)
for s in branch.special_points:
    print(s)

# %% [markdown]
# The run passes both folds and ends at $p = 2$ on the other outer stretch. The folds
# are located to $10^{-10}$ or better, against the exact $\pm 1$. Every point is a
# constant control that solves the cubic:

# %%
t = branch.table()
x = np.array([q.U[0, 0] for q in branch.points])
print("folds:", [f"{s.p:.12f}" for s in branch.folds])
print("max |4x^3 - 3x + p| over the branch:", np.max(np.abs(4 * x**3 - 3 * x + t["p"])))
print("points of each kind:", {str(k): int(np.sum(t["kind"] == k)) for k in sorted(set(t["kind"]))})

# %% [markdown]
# `table()` holds the points as columns: `p`, `norm`, `cost`, `slow` and `stiff` (the
# ends of the spectrum of $J$), `kind`, `index`, `alpha_max`, `residual`, `tangent_p`
# ($dp/ds$, which changes sign at a fold) and `newton_steps`. `to_dict()` is the
# JSON form. `at(p)` gives every equilibrium the branch has at one $p$. At $p = 0$
# there are three:

# %%
for q in sorted(branch.at(0.0), key=lambda q: q.U[0, 0]):
    bound = "none" if q.alpha_max is None else f"{q.alpha_max:.6g}"
    print(f"x(1) = {q.U[0, 0]:+.6f}: {q.kind}, index {q.index}, alpha_max = {bound}")

# %% [markdown]
# ## 2. What a fold means for the optimizer
#
# In panel (b) below, the slow end $\lambda_{\min}$ of $M^{-1}\nabla^2 E^N$ crosses zero
# at each fold: there the minimiser stops being one. The stiff end does not move, so the
# step bound $\alpha_{\max} = 2/\lambda_{\max}$ (panel (c)) stays finite up to the
# fold. What fails is the rate: with $\lambda_{\min} \to 0$,
# $\rho(\alpha) = \max|1 - \alpha\lambda| \to 1$ for every step, and descent slows down
# without bound.

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), layout="constrained")
plot_branch(branch, axes[0], y=lambda U: U.mean(), ylabel="$x(1) = u$", legend="upper right")
plot_spectrum_ends(branch, axes[1])
axes[1].legend(loc="upper center", fontsize=8)
plot_step_bound(branch, axes[2])
plt.show()

# %% [markdown]
# Past the fold no minimiser is left nearby. Here is descent at $p = 1.05$ (Hamiltonian
# metric), started from the minimiser at $p = 0.99$ on the upper stretch, with a step
# of 0.15, inside the bound of both minimisers:

# %%
(near,) = [q for q in branch.at(0.99) if q.kind == "asymptotically stable" and q.U[0, 0] > 0]
sh = flow.shoot(tilted(1.05), N)
trace = flow.descend(sh, near.U, metric="hamiltonian", step=0.15, tol=1e-8, max_steps=5000)
print(trace)
print(f"started at x(1) = {near.U[0, 0]:.4f}, ended at x(1) = {float(trace.U[0, 0]):.4f}")

# %% [markdown]
# Descent converges, but to the *other* minimiser: the optimum it was tracking no
# longer exists. A re-solve at each $p$ (CasADi + IPOPT, or `stability.equilibrium`
# warm-started) behaves the same way, and nothing in its output says that the branch
# ended. The continuation turns at the fold and reports it.
#
# ## 3. Branch points, and switching branches
#
# The built-in family `symmetric_well` has $E = x(1)^4/4 - p\,x(1)^2/2$. Here $U = 0$
# is an equilibrium for every $p$. It is a minimiser for $p < 1$ and a saddle for
# $p > 1$. At $p = 1$ the minimisers $x = \pm\sqrt{p - 1}$ branch off. The index
# changes there but $dp/ds$ does not: that is a **branch point**.

# %%
trivial = stability.continuation(problems.symmetric_well, np.zeros((N, 1)), (0.0, 2.0), N=N)
(bp,) = trivial.branch_points
print(bp)

# %% [markdown]
# To follow the other branch, pass the special point as `U0`. The run starts along its
# null vector $\varphi$ (a constant control here); `direction=-1` follows the other
# half.

# %%
halves = [
    stability.continuation(problems.symmetric_well, bp, (0.0, 2.0), N=N, direction=d)
    for d in (1, -1)
]
q = halves[0].points[-1]
print(f"at p = {q.p}: x(1) = {q.U[0, 0]:.10f}, sqrt(p - 1) = {np.sqrt(q.p - 1):.10f}, {q.kind}")
fig, ax = plt.subplots(figsize=(5, 3.4), layout="constrained")
for run in (trivial, *halves):
    plot_branch(run, ax, y=lambda U: U.mean(), ylabel="$x(1)$", legend=False)
unique = dict(zip(*ax.get_legend_handles_labels()[::-1], strict=True))  # one entry per label
ax.legend(unique.values(), unique.keys(), loc="upper left", fontsize=8)
plt.show()

# %% [markdown]
# ## 4. A physical parameter: the step bound moves
#
# For Van der Pol with damping $\mu = p$ (the built-in family `van_der_pol_mu`,
# $N = 200$), the optimum stays a minimiser, but its Hessian stiffens quickly as $\mu$
# grows. A step chosen at one $\mu$ is therefore unsafe at a larger one.

# %%
vdp = stability.continuation(problems.van_der_pol_mu, np.zeros((200, 1)), (0.6, 1.4), N=200)
tv = vdp.table()
(at_one,) = vdp.at(1.0)
alpha = 0.9 * at_one.alpha_max  # 90 % of the bound at mu = 1
# alpha_max(mu) falls about exponentially: interpolate log alpha_max between points
crossing = np.interp(np.log(alpha), np.log(tv["alpha_max"][::-1]), tv["p"][::-1])
print(f"alpha_max falls from {tv['alpha_max'][0]:.3g} at mu = 0.6 to {tv['alpha_max'][-1]:.3g}")
print(f"alpha = {alpha:.3g} (0.9 alpha_max at mu = 1) is past the bound from mu = {crossing:.3f}")

# %% [markdown]
# Check it by descent with that step, started next to each optimum, at $\mu = 1$
# (inside the bound) and at $\mu = 1.1$ (past it):

# %%
for mu in (1.0, 1.1):
    (q,) = vdp.at(mu)
    sh = flow.shoot(problems.van_der_pol(mu=mu), 200)
    start = np.asarray(q.U) + 1e-6
    d = flow.descend(sh, start, metric="hamiltonian", step=alpha, max_steps=3000, throw=False)
    gap = float(np.max(np.abs(np.asarray(d.U) - q.U)))
    print(f"mu = {mu}: alpha / alpha_max = {alpha / q.alpha_max:.2f}, {d.status}, "
          f"max|U - U*| from 1e-6 to {gap:.1e}")

# %% [markdown]
# Inside the bound the error shrinks, though slowly, because the spectrum is stiff. Past
# the bound it grows by five orders of magnitude. A parameter study that keeps one step
# size needs `alpha_max` along the branch.
#
# ## 5. Large N, and the other packages
#
# Up to `stability.DENSE_CONTINUATION_MAX` unknowns, each point assembles the bordered
# Jacobian and the whole spectrum. Above that, the corrector and the tangent run
# matrix-free: lineax GMRES on Jacobian-vector products of $\nabla E^N$ in $(U, p)$.
# The spectrum's ends come from Lanczos on Hessian-vector products. No $(Nm)^2$ array
# is formed. At $N = 10^4$, 50 points take about 9 s on two cores, compilation
# included (`benchmarks/README.md`).
#
# Why not an existing continuation package? We tried three on the cubic above
# (issue #17):
#
# - `pycont-lite` 0.6 is matrix-free, but only by finite differences of the residual.
#   It missed both folds at its default step sizes and located them only to $10^{-4}$
#   at the smallest.
# - `jaxcont` 0.4 is JAX-native. It builds a dense Jacobian at every point and has no
#   branch points.
# - `pacopy` could not be imported: it is a licensed binary.
#
# None of them knows the metric, the step bound or the costates.
#
# From the command line:
#
# ```bash
# gradflow continue tilted_double_well --from -2 --to 2 --N 100 --out out/
# gradflow continue my_problems.py:family --from 0 --to 1
# ```
#
# Each writes `continuation.json` and a figure: the branch, the spectrum's ends and
# $\alpha_{\max}$.
