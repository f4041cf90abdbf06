# %% [markdown]
# # Section 6.3 redone: the region of convergence of direct and indirect methods
#
# "Indirect methods have a small radius of convergence." Section 6.3 of the paper
# explains the folklore with the gradient flow (50): an algorithm is forward Euler on
# a flow, and what decides global convergence is the size of its step. This tutorial
# measures it on the unicycle, with $N = 8$ intervals so that it runs in seconds.
#
# By Lemma 2, $\nabla E^N = h\,\partial H/\partial U$ (Euler, uniform grid), so the
# direct method's gradient step with the identity metric is
#
# $$U_{i+1} = U_i - \alpha\,\nabla E^N(U_i) = U_i - \alpha h\,\frac{\partial H}{\partial U_i}
#   \qquad (56):$$
#
# forward Euler on the indirect method's flow $dU/d\tau = -\partial H/\partial U$
# (the Hamiltonian metric $M = \mathrm{diag}(h)$) with the *effective step*
# $\alpha h < \alpha$. Run it with `python docs/tutorials/basin.py`.

# %%
import matplotlib.pyplot as plt
import numpy as np

import flow
import stability
from figures.basin import wilson_interval
from flow import problems


sh = flow.shoot(problems.unicycle(), 8)  # T = 2: h = 1/4
h = float(sh.steps[0])
eq = stability.equilibrium(sh)  # the minimiser U*
bound = {
    metric: stability.euler_bound(
        stability.spectrum(stability.linearize(sh, eq, metric=metric))
    ).alpha_max
    for metric in ("identity", "hamiltonian")
}
print(f"h = {h}, cost at U* = {float(eq.cost):.6f}")
print(
    f"forward-Euler bound at U*: identity {bound['identity']:.4f}, "
    f"Hamiltonian {bound['hamiltonian']:.4f}"
)
# J = -M^-1 Hess E^N: M = h I instead of I multiplies the spectrum by 1/h, the bound by h
assert abs(bound["hamiltonian"] - h * bound["identity"]) < 1e-12 * bound["identity"]

# %% [markdown]
# ## 1. (56) iterate by iterate
#
# The direct method at step $\alpha$ and the Hamiltonian metric at $\alpha h$ are the
# same iteration. Here $h = 1/4$ is a power of two, so dividing by $h$ and multiplying
# by $\alpha h$ are exact in floating point and the iterates agree bit for bit. The
# Hamiltonian metric at the *same* $\alpha$ takes steps $1/h = 4$ times longer.

# %%
alpha = 0.8 * bound["identity"]
U0 = eq.U + np.random.default_rng(1).standard_normal(sh.control_shape)
direct = flow.descend(
    sh, U0, metric="identity", step=alpha, max_steps=2000, tol=1e-6, save_iterates=True
)
indirect = flow.descend(
    sh, U0, metric="hamiltonian", step=alpha * h, max_steps=2000, tol=1e-6, save_iterates=True
)
same = np.array_equal(np.asarray(direct.iterates), np.asarray(indirect.iterates))
print(
    f"alpha = {alpha:.4f}: direct {direct.status} in {int(direct.num_steps)} steps; "
    f"Hamiltonian at alpha*h {indirect.status} in {int(indirect.num_steps)}; "
    f"identical iterates: {same}"
)
assert same and direct.success
too_long = flow.descend(sh, U0, metric="hamiltonian", step=alpha, max_steps=2000, throw=False)
print(
    f"Hamiltonian metric at alpha = {alpha / bound['hamiltonian']:.1f} x its bound: "
    f"{too_long.status}"
)
assert too_long.status == "diverged"

# %% [markdown]
# ## 2. The fraction of random starts that converge
#
# `stability.basin` runs each method from the same random starts
# $U_0 = U^* + \sigma\xi$: the direct method (identity metric, step $\alpha$), the
# indirect method's flow (Hamiltonian metric at $\alpha$ and at $\alpha h$) and its
# Newton iteration (`conditions=True`: Newton with a line search on the discrete
# necessary conditions (36), the indirect method on the grid). With $n$ starts and $k$
# successes, the 95 % Wilson interval says how far the fraction $k/n$ can be trusted.

# %%
spreads = (0.1, 3.0)
n = 32
rows = {}
for spread in spreads:
    common = dict(n_starts=n, seed=0, center=eq.U, spread=spread, dampings=(), tol=1e-6)
    d = stability.basin(sh, steps=(alpha,), metric="identity", **common)
    i = stability.basin(
        sh, steps=(alpha, alpha * h), metric="hamiltonian", conditions=True, **common
    )
    rows[spread] = {
        "direct, alpha": d.rows[0],
        "Hamiltonian, alpha": i.rows[0],
        "Hamiltonian, alpha h": i.rows[1],
        "Newton on (36)": i.rows[2],
    }
    print(f"spread {spread}:")
    for name, r in rows[spread].items():
        lo, hi = wilson_interval(r.converged, r.starts)
        med = "-" if r.median_steps is None else f"{r.median_steps:.0f}"
        print(
            f"  {name:22s} {r.converged:3d}/{r.starts} converged  [{lo:.2f}, {hi:.2f}]"
            f"  median iterations {med}"
        )

for r in rows.values():
    assert r["direct, alpha"].fraction == 1.0
    assert r["Hamiltonian, alpha"].converged == 0
    assert r["Hamiltonian, alpha h"].converged == r["direct, alpha"].converged
    assert r["Hamiltonian, alpha h"].median_steps == r["direct, alpha"].median_steps
newton = [rows[s]["Newton on (36)"] for s in spreads]
# Newton's region is local: its fraction falls with the spread, beyond the intervals
assert newton[0].fraction >= 0.9
assert wilson_interval(newton[1].converged, n)[1] < wilson_interval(newton[0].converged, n)[0]
assert newton[0].median_steps < rows[0.1]["direct, alpha"].median_steps / 10


# %% [markdown]
# The direct method converges from every start, and so does the indirect flow at the
# step $\alpha h$, in exactly the same iterations; at the step $\alpha$ the indirect
# flow converges from none, because $\alpha$ is above its forward-Euler bound at $U^*$
# (a linear instability: no start is close enough). Newton on (36) needs a handful of
# iterations where descent needs hundreds, but only near $U^*$: its region of
# convergence shrinks as the starts spread. That is the trade the paper describes: a
# small effective step buys global convergence at the price of iterations, and the
# remedy for the indirect method is "to reduce the algorithm step size to bring it on
# par with that of its direct counterpart".

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.2), layout="constrained")
styles = {
    "direct, alpha": ("#0072B2", "-", "o", r"direct: identity, $\alpha$"),
    "Hamiltonian, alpha h": ("#009E73", "--", "x", r"Hamiltonian, $\alpha h$"),
    "Hamiltonian, alpha": ("#D55E00", ":", "v", r"Hamiltonian, $\alpha$"),
    "Newton on (36)": ("#CC79A7", "-.", "s", "Newton on (36)"),
}
for j, (name, (color, ls, marker, label)) in enumerate(styles.items()):
    x = np.array(spreads) * 1.06**j
    k = np.array([rows[s][name].converged for s in spreads])
    ci = np.array([wilson_interval(int(kk), n) for kk in k])
    ax.errorbar(
        x,
        k / n,
        yerr=[k / n - ci[:, 0], ci[:, 1] - k / n],
        color=color,
        linestyle=ls,
        marker=marker,
        capsize=3,
        label=label,
    )
ax.set_xscale("log")
ax.set_xlabel(r"spread $\sigma$ of the starts $U^* + \sigma\xi$")
ax.set_ylabel("fraction that converge")
ax.legend(loc="center left", fontsize=8)
ax.set_title(f"unicycle, N = {sh.N}: {n} starts per point, 95% Wilson intervals", fontsize=9)
