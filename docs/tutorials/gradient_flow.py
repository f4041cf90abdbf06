# %% [markdown]
# # The optimizer is forward Euler on a gradient flow
#
# Gradient descent $U \leftarrow U - \alpha M^{-1}\nabla E^N(U)$ (eq. (37)) is forward
# Euler with step $\alpha$ on the gradient flow
#
# $$\frac{\mathrm{d}U}{\mathrm{d}\tau} = -M^{-1}\nabla E^N(U) \qquad (50).$$
#
# This tutorial
# integrates the flow with diffrax, replays the discrete algorithm beside it,
# shows what the choice of metric M does as the grid is refined, and what
# happens above forward Euler's stability bound.
# Run it with `python docs/tutorials/gradient_flow.py`.

# %%
import diffrax
import numpy as np

import flow
from flow import metrics, problems


# %% [markdown]
# ## 1. The flow and the discrete algorithm side by side

# %%
sh = flow.shoot(problems.scalar_regularized(), 100)
U0 = sh.zeros()
sol = flow.gradient_flow(
    sh,
    U0,
    metric=metrics.Hamiltonian(),
    tol=None,  # integrate to tau1 (no stopping tolerance)
    solver=diffrax.Tsit5(),
    rtol=1e-10,
    atol=1e-12,
    tau1=4.0,
    saveat=diffrax.SaveAt(t1=True, dense=True),
)
distances = []
for alpha in (0.2, 0.1, 0.05):
    trace = flow.descend(
        sh,
        U0,
        metric=metrics.Hamiltonian(),
        step=alpha,
        max_steps=int(4.0 / alpha),
        save_iterates=True,
    )
    comp = flow.compare(trace, sol, tau_max=4.0)
    distances.append(float(comp.max_distance))
    print(f"alpha = {alpha:5.3f}: max_i |U_i - U(tau_i)| = {distances[-1]:.3e}")
# Halving alpha halves the distance: forward Euler is first order in its step.
ratios = np.array(distances[:-1]) / np.array(distances[1:])
assert np.all((1.8 < ratios) & (ratios < 2.2)), ratios

# %% [markdown]
# ## 2. The metric decides how the iteration count scales with N
#
# Under the identity metric the gradient is $h\,\partial_u H$ (Lemma 2): its size, and
# the spectrum of the flow's Jacobian, shrink like $h$, so a fixed step needs $\sim N$
# iterations. The Hamiltonian metric $M = \mathrm{diag}(h_k)$ makes the flow the
# indirect method's flow $\mathrm{d}U/\mathrm{d}\tau = -\partial H/\partial U$, whose
# spectrum does not depend on $N$.

# %%
print(f"{'N':>6} {'identity, alpha=1':>18} {'Hamiltonian, alpha=0.5':>23}")
counts = []
for N in (50, 100, 200, 400):
    s = flow.shoot(problems.scalar_regularized(), N)
    a = flow.descend(s, s.zeros(), metric="identity", step=1.0, max_steps=100 * N, tol=1e-8)
    b = flow.descend(s, s.zeros(), metric="hamiltonian", step=0.5, max_steps=1000, tol=1e-8)
    counts.append((int(a.num_steps), int(b.num_steps)))
    print(f"{N:>6} {counts[-1][0]:>18} {counts[-1][1]:>23}")
identity, hamiltonian = np.array(counts).T
slope = np.polyfit(np.log([50, 100, 200, 400]), np.log(identity), 1)[0]
print(f"identity metric: iterations ~ N^{slope:.2f}; Hamiltonian metric: {set(hamiltonian)}")
assert 0.9 < slope < 1.1 and np.ptp(hamiltonian) <= 2

# %% [markdown]
# ## 3. Above the stability bound the algorithm diverges, and says so

# %%
trace = flow.descend(sh, U0, step=2.5, max_steps=500, throw=False)
print(trace.status, "--", trace.message)
print("detected at iteration", int(trace.diverged_at))
try:
    flow.descend(sh, U0, step=2.5, max_steps=500)
except flow.DivergenceError as e:
    print("DivergenceError:", str(e).split(";")[0])

# %% [markdown]
# ## 4. Stiff flows need an implicit solver, and the default finds it
#
# On Van der Pol the Hessian's spectrum spans four orders of magnitude; an
# explicit solver would need $\sim 10^5$ steps. With its defaults (`solver="auto"`),
# `gradient_flow` starts explicitly, sees the step size collapse, and goes on
# with an L-stable ESDIRK method (`flow.stiff_solver`), which takes a few dozen
# steps; `sol.solver` says what it did.

# %%
vdp = flow.shoot(problems.van_der_pol(), 100)
sol = flow.gradient_flow(vdp, vdp.zeros())
print(sol)
print("solver:", sol.solver)
assert sol.success and np.isfinite(float(sol.cost[-1]))
