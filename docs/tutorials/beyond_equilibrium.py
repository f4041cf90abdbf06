# %% [markdown]
# # Past the step bound: flips, cycles, sharpness and the start's own prediction
#
# Gradient descent with a constant step is a map,
# $F_\alpha(U) = U - \alpha M^{-1}\nabla E^N(U)$ (37), and forward Euler on the
# gradient flow (50). Near a minimiser $U^*$ it converges iff $\alpha < \alpha^* =
# 2/\mu_{\max}$, with $\mu_{\max}$ the largest eigenvalue of $M^{-1}\nabla^2E^N(U^*)$
# ([Stability and step sizes](step_sizes.md)). This page asks what happens just
# past $\alpha^*$. There the multiplier $1 - \alpha\mu_{\max}$ of the fixed point
# crosses $-1$: a **flip** (period-doubling) bifurcation of the map. Either a small
# stable 2-cycle is born (*supercritical*) and descent oscillates forever without
# diverging, or nothing small survives (*subcritical*) and descent leaves.
#
# - `flow.descend` recognises cycles: status `oscillating`, with `period` and
#   `amplitude`;
# - `stability.flip` locates the flip, says which kind it is, and computes the
#   2-cycle and its stability;
# - `stability.orbit_diagram` draws the attractor of descent across steps, in one
#   compiled call.
#
# Two more tools look at descent away from the equilibrium:
#
# - `stability.sharpness` tracks the top eigenvalue along the path against
#   $2/\alpha$;
# - `stability.start_spectrum` predicts the iteration count for the start actually
#   given, not only for the worst case.

# %%
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import flow
import stability
from figures.orbit_diagram import plot_orbit_diagram
from figures.sharpness import plot_sharpness


# %% [markdown]
# ## 1. A problem with a supercritical flip
#
# The tilted double well: $\dot x = u$, $x(0) = 0.3$ on $[0, 1]$, endpoint cost
# $E = (x(1)^2 - 1)^2 + 0.2\,x(1)$, running cost $u^2/2$. Its minimiser near
# $U = 0.5$ is a constant control. Forward Euler's bound comes from the spectrum at
# the minimiser, as on the step-size page.

# %%
problem = flow.OptimalControlProblem(
    dynamics=lambda x, u: u,
    endpoint_cost=lambda x: (x[0] ** 2 - 1.0) ** 2 + 0.2 * x[0],
    running_cost=lambda x, u: 0.5 * u[0] ** 2,
    x0=jnp.array([0.3]),
    t0=0.0,
    tf=1.0,
    control_dim=1,
    name="tilted_double_well",
)
N = 100
sh = flow.shoot(problem, N)
U0 = jnp.full((N, 1), 0.5)
eq = stability.equilibrium(sh, U0)
bound = stability.euler_bound(stability.spectrum(stability.linearize(sh, eq)))
print(f"u* = {float(eq.U[0, 0]):.6f}, alpha_max = {bound.alpha_max:.6f}")

# %% [markdown]
# ## 2. Descent just past the bound does not diverge: it oscillates
#
# At $1.02\,\alpha_{\max}$ the iterates settle on two controls and alternate between
# them. `descend` tests the iterates (not the cost, which is nearly equal at the two
# points) for $\|U_i - U_{i-p}\|_\infty \le$ `cycle_tol` relative with $p = 2$ or $4$.
# It stops with status `oscillating` and reports the period and the half-width of the
# cycle. `trace.cycle` holds the last four iterates.

# %%
trace = flow.descend(sh, U0, step=1.02 * bound.alpha_max, max_steps=5000, tol=1e-10, throw=False)
print(trace.status, "| period", int(trace.period), "| half-width", float(trace.amplitude))
print(trace.message)
print("the two controls:", np.asarray(trace.cycle[:2, 0, 0]))

# %% [markdown]
# With `throw=True` (the default) this run raises `flow.ConvergenceError` with the same
# message. Without a `tol`, every step is taken, and the status is `oscillating` when
# the last iterates form a cycle.
#
# ## 3. The flip: where, which kind, and the cycle
#
# `stability.flip` finds $\alpha^* = 2/\mu_{\max}$ and the critical eigenvector $q$.
# It computes the normal-form coefficient $c$ from third and fourth derivatives of
# $E^N$ along $q$ (forward-mode derivatives of Hessian-vector products). $c > 0$:
# supercritical. It then computes the 2-cycle at a step past $\alpha^*$ (by default
# $1.02\,\alpha^*$) by Newton on the two-step map $F(F(V)) = V$, with its
# multiplier.

# %%
result = stability.flip(sh, eq)
print(result)
print(result.message)
print(f"alpha* / alpha_max - 1 = {result.alpha / bound.alpha_max - 1:.1e}")
late = np.asarray(trace.cycle[:2])
gap = min(np.max(np.abs(late - result.cycle)), np.max(np.abs(late[::-1] - result.cycle)))
print(f"replay's cycle vs flip's cycle: {gap:.1e}")

# %% [markdown]
# The cycle the replay settled on is the flip's cycle, to the replay's own tolerance
# (descend stopped at `cycle_tol` $= 10^{-10}$). The half-width grows like
# $\sqrt{\alpha/\alpha^* - 1}$, as the normal form predicts:

# %%
print(" alpha/alpha* - 1   half-width   normal form   ratio to previous")
previous = None
for delta in (1e-4, 4e-4, 1.6e-3, 6.4e-3):
    alpha = result.alpha * (1 + delta)
    width = stability.flip(sh, eq, alpha=alpha).amplitude
    ratio = "" if previous is None else f"{width / previous:.4f}"
    print(f"{delta:17.1e} {width:12.6f} {result.predicted_cycle_amplitude(alpha):13.6f}   {ratio}")
    previous = width

# %% [markdown]
# Each quadrupling of the distance doubles the half-width.
#
# ## 4. A subcritical flip: descent leaves
#
# A damped pendulum, $\ddot\theta = -\sin\theta - 0.5\,\dot\theta + u$, steered
# towards $\theta(1) = 1$ with quadratic costs. Its flip is subcritical: past
# $\alpha^*$ no small cycle exists, and descent diverges, even from a start very close
# to the minimiser.

# %%
pendulum = flow.OptimalControlProblem(
    dynamics=lambda x, u: jnp.stack([x[1], -jnp.sin(x[0]) - 0.5 * x[1] + u[0]]),
    endpoint_cost=lambda x: 5.0 * ((x[0] - 1.0) ** 2 + x[1] ** 2),
    running_cost=lambda x, u: 0.5 * (x[0] ** 2 + u[0] ** 2),
    x0=jnp.zeros(2),
    t0=0.0,
    tf=1.0,
    control_dim=1,
    name="damped_pendulum",
)
sh_p = flow.shoot(pendulum, N)
eq_p = stability.equilibrium(sh_p)
flip_p = stability.flip(sh_p, eq_p)
print(flip_p)
near = flow.descend(sh_p, eq_p.U + 1e-4 * flip_p.eigenvector, step=1.001 * flip_p.alpha,
                    max_steps=20000, tol=1e-10, throw=False)  # fmt: skip
print(near.status, "at iteration", int(near.diverged_at))

# %% [markdown]
# The kinds differ only in the sign of $c$, and $c$ is computed at the minimiser,
# before any descent runs.
#
# ## 5. The orbit diagram
#
# For 256 steps across $[0.5, 1.5]\,\alpha^*$, `orbit_diagram` iterates the map from
# one start (here $U_0 = 0.5$). It discards a transient and records the last
# iterates through $s = q^\top M(U - U^*)$. All steps run in one compiled, vmapped
# call, so another diagram with 256 other steps compiles nothing. Each step's
# attractor is classified from the iterates: the fixed point, a cycle of period 2, 4,
# 8 or 16, `unresolved` (a longer period, chaos, or not settled), or `diverged`.

# %%
diagram = stability.orbit_diagram(sh, eq, U0=U0)
print(diagram)
first = {p: diagram.first(p) / diagram.alpha_star for p in (2, 4, 8, 16)}
print({p: round(x, 4) for p, x in first.items()})
print(f"(a4 - a2) / (a8 - a4) = {(first[4] - first[2]) / (first[8] - first[4]):.2f}")

fig, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
plot_orbit_diagram(diagram, ax)
ax.set_title("descent on the tilted double well: period doubling past alpha*")
plt.show()

# %% [markdown]
# The fixed point gives way at $\alpha^*$ to the 2-cycle, which doubles again near
# $1.24\,\alpha^*$, $1.29\,\alpha^*$ and $1.30\,\alpha^*$, into bands of chaos. The
# ratio of successive intervals is on its way to Feigenbaum's 4.669. This is the
# logistic map's cascade, made by an optimizer of a control problem. The grid is too
# coarse to resolve the ratio further.
#
# ## 6. Sharpness along the path
#
# The bound $\alpha^*$ is a property of the minimiser. Along the way the top
# eigenvalue $\mu_{\max}(U_i)$ of $M^{-1}\nabla^2E^N(U_i)$, the *sharpness*, moves.
# A constant step is linearly stable at $U_i$ iff $\alpha\,\mu_{\max}(U_i) < 2$.
# `stability.sharpness` computes it at the saved iterates of a descent. It works
# matrix-free for large $N$ (Lanczos warm-started from the previous iterate's
# vector), and densely for small $N$. Here descent runs from $U_0 = 0.8$ on the
# double well at $0.9\,\alpha^*$. `edge` is $\alpha\mu_{\max}(U_i)/2$: above 1, the
# step is past forward Euler's bound at that point.

# %%
run = flow.descend(sh, jnp.full((N, 1), 0.8), step=0.9 * result.alpha, max_steps=60,
                   save_iterates=True, cycle_tol=None)  # fmt: skip
sharp = stability.sharpness(run, metric="hamiltonian")
print(sharp)
print("edge at iterations 0, 1, 2, 5, 59:", np.round(sharp.edge[[0, 1, 2, 5, 59]], 3))

fig, ax = plt.subplots(figsize=(6.4, 3.4), layout="constrained")
plot_sharpness(sharp, ax, labels=["tilted double well, N = 100"])
ax.set_title("sharpness along descent at 0.9 alpha*")
ax.legend(loc="center right")
plt.show()

# %% [markdown]
# At $U_0 = 0.8$ the cost is steep and the sharpness is 1.6 times the limit, so the
# first step is locally unstable. It overshoots to a flat point (edge 0.14), and the
# path then settles where the step uses 90 % of the bound. The bound at the minimiser
# says nothing about the first steps; the sharpness along the path does.
#
# ## 7. Predictions for the start you give
#
# `stability.euler_bound` predicts a rate and an iteration count for the worst case:
# every eigenmode excited. A real start excites only some of them. On a
# double-integrator transfer (the built-in `double_integrator`, $N = 200$,
# Hamiltonian metric), the eigenvalues of $M^{-1}\nabla^2E^N$ are 1 (198 times),
# 7.59 and 127.5. The error of the start $U = 0$ lies along the last two.
# `alpha_opt` $= 2/(1 + 127.5)$ is tuned for the mode at 1, which the start never
# excites. At that step the excited mode at 127.5 converges at the worst rate.
#
# `stability.start_spectrum` runs Lanczos from $U_0 - U^*$. It returns the
# eigenvalues the start excites and their weights (the spectral measure). From
# them it predicts the residual history, with the replay's own stopping rule.

# %%
di = flow.shoot(flow.problems.get("double_integrator"), 200)
eq_di = stability.equilibrium(di)
lin_di = stability.linearize(di, eq_di)
bound_di = stability.euler_bound(stability.spectrum(lin_di))
start = stability.start_spectrum(lin_di, jnp.zeros((200, 1)))
print(start, "| weights", np.round(start.weights, 4), "|", start.num_hvp, "products")
effective, predicted = start.effective_step(bound_di.alpha_max, tol=1e-9)
print(f"worst case at alpha_opt: {bound_di.iterations_opt} iterations (error x 1e-6)")
for name, alpha in (("alpha_opt", bound_di.alpha_opt), ("effective", effective)):
    replay = flow.descend(di, jnp.zeros((200, 1)), step=alpha, max_steps=20000, tol=1e-9)
    print(f"{name:9s} alpha = {alpha:.6f}: predicted {start.iterations(alpha, 1e-9):5d}, "
          f"observed {int(replay.num_steps):5d} (max|dH/du| <= 1e-9)")  # fmt: skip

# %% [markdown]
# The predictions are exact here: the problem is quadratic and the start excites
# two modes, so Lanczos stops after two products. The effective step balances the
# two excited modes and needs about an eighth of the iterations of $\alpha_{opt}$.
# `gradflow analyze --problem double_integrator --step effective` replays it and
# reports both counts with their stopping rule. On nonlinear problems the
# prediction uses the linearisation at $U^*$: on `scalar_regularized` from $U = 0$
# it predicts 11 iterations and the replay takes 11.
#
# ## What to take away
#
# - A step past $\alpha_{\max}$ need not diverge. After a supercritical flip, descent
#   settles on a 2-cycle, and `descend` reports it as `oscillating` rather than
#   `max_steps`.
# - `stability.flip` predicts the kind before any run. Its 2-cycle, and the cycle's
#   square-root growth, match the replays.
# - The figure `orbit_diagram` (`gradflow figures`) shows both, with the cycle's
#   square-root law.
# - Sharpness along the path says where a constant step is locally unstable before
#   the minimiser is reached.
# - A start excites only some modes. Its spectral measure predicts the iteration
#   count with the replay's own stopping rule, and gives a better step than the
#   worst case.
