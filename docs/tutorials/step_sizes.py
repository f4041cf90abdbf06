# %% [markdown]
# # Stability and step sizes
#
# Gradient descent on the discretized cost, $U_{i+1} = U_i - \alpha M^{-1}\nabla E^N(U_i)$
# (eq. (37)), is forward Euler with step $\alpha$ on the gradient flow
# $dU/d\tau = -M^{-1}\nabla E^N(U)$ (eq. (50)). Section 5.1 of the paper splits the
# convergence of the algorithm into two subproblems:
#
# 1. **stability of the flow (50)** at its equilibria, the points where
#    $\nabla E^N(U^*) = 0$ (eq. (51)): if the flow is unstable there, the algorithm
#    leaves "no matter the step size";
# 2. **stability of the forward-Euler discretization** of (50): a stable flow can
#    still be followed by a diverging algorithm when $\alpha$ is too large.
#
# Both are questions about the linearization of (50) at an equilibrium $U^*$,
# $J = -M^{-1}\nabla^2 E^N(U^*)$, and its eigenvalues $\mu$. The `stability` package
# answers them with five verbs: `equilibrium` / `equilibria` (find $U^*$),
# `linearize` (build $J$, matrix-free), `spectrum` (its eigenvalues), `classify`
# (subproblem 1) and `euler_bound` (subproblem 2). This tutorial applies them to a
# stable minimum, a saddle, the paper's signature problem (whose minimisers form a
# manifold) and a descent run on either side of forward Euler's bound. (Remark 5.12 calls
# the stability of (50) "an open area of research": for a given problem and grid it is a
# computation.)

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import flow
import stability
from flow import problems


N = 20
rng = np.random.default_rng(2024)

# %% [markdown]
# ## 1. A stable minimum
#
# The signature problem with a control penalty, `scalar_regularized`:
# minimise $\tfrac12(x(1)-1)^2 + \int_0^1 \tfrac12 u^2\,dt$ subject to
# $\dot x = -x + u - 0.1x^3$, $x(0) = 0$, discretized by forward Euler on $N = 20$
# intervals. `stability.equilibrium` finds a point where (51) holds (trust-region
# Newton-CG on Hessian-vector products). Its two residuals are
# $\|\nabla E^N\|_\infty$ (eq. (54)) and $\max_k|\partial_u H(\lambda_k, x_k, u_k)|$
# (eq. (55)): at an equilibrium the direct method satisfies the indirect method's
# condition (53), and by Theorem 5.14 the second is the first divided by $h$.

# %%
sh = flow.shoot(problems.scalar_regularized(), N)
h = float(sh.steps[0])
eq = stability.equilibrium(sh)  # stops when max_k |dH/du_k| <= tol = 1e-10
print(eq)
print(
    f"|grad E^N|_inf / h = {eq.gradient_norm / h:.3e}, max|dH/du| = {eq.hamiltonian_residual:.3e}"
)
assert eq.success and eq.hamiltonian_residual <= 1e-10
# Lemma 2: equal up to the rounding of O(1) terms (~1e-16), divided by h
np.testing.assert_allclose(eq.gradient_norm / h, eq.hamiltonian_residual, atol=1e-14)

# %% [markdown]
# `stability.linearize` builds $J = -M^{-1}\nabla^2 E^N(U^*)$ for a metric $M$
# (default `"hamiltonian"`, $M = \mathrm{diag}(h_k)$, under which the flow is the
# indirect method's flow $dU/d\tau = -\partial H/\partial U$). $J$ is similar to a
# symmetric matrix, so its eigenvalues are real; `stability.spectrum` returns all of
# them for small $N m$ (and the two ends plus the clusters by Lanczos for large
# $N m$). `stability.classify` reads the signs.

# %%
lin = stability.linearize(sh, eq)  # metric="hamiltonian"
spec = stability.spectrum(lin)
kind = stability.classify(spec)
mu = np.asarray(spec.eigenvalues)
print(spec)
print(kind, "--", kind.description)
# An independent check of the symmetric path: a general (non-symmetric) eigensolver
# on the dense J itself. Both are backward stable: agreement to ~1e-13 * |J|.
mu_general = np.sort(np.linalg.eigvals(np.asarray(lin.dense())).real)
np.testing.assert_allclose(np.sort(mu), mu_general, atol=1e-12)
assert kind.kind == "asymptotically stable" and np.all(mu < 0)

# %% [markdown]
# Every eigenvalue is negative: the equilibrium is asymptotically stable and
# subproblem 1 is settled. All but one sit in a tight cluster at $-1$, the control
# weight $\rho$: the part $\rho h I$ of $\nabla^2 E^N$ that the running cost
# contributes, divided by $M = hI$.
#
# The metric does not change the *kind* of equilibrium: for any symmetric positive
# definite $M$, $J$ has as many negative, zero and positive eigenvalues as
# $-\nabla^2 E^N$ (Sylvester's law of inertia). It changes their *size*, and with it
# subproblem 2. The identity metric (the plain gradient method, $M = I$) gives
# $J_I = h\,J_H$ on a uniform grid: a spectrum $N$ times smaller, so a step bound
# $N$ times larger; at a fixed step such as $\alpha = 1$, $N$ times more iterations (the
# tutorial [Hamiltonian programming](hamiltonian_programming.md) measures that).

# %%
spec_identity = stability.spectrum(stability.linearize(sh, eq, metric="identity"))
np.testing.assert_allclose(spec_identity.eigenvalues, h * mu, rtol=1e-10)
print(f"identity metric: {stability.classify(spec_identity).kind}; eigenvalues = h * those above")

# %% [markdown]
# ## 2. A saddle: the flow is unstable and no step size helps
#
# `double_well` is $\dot x = u$, $x(0) = 0$, cost
# $\tfrac14(x(1)^2 - 1)^2 + \int_0^1 \tfrac{\rho}{2}u^2\,dt$ with $\rho = 1/2$. Since
# $x_N = h\sum_k u_k$, $U = 0$ is a stationary point ($\nabla E^N(0) = 0$ exactly)
# and the closed forms are: $\nabla^2 E^N(0)$ has the eigenvalue $\rho h$ ($N - 1$
# times) and $h(\rho - 1)$ (along the constant control). With $M = hI$:
# $\mu = -\rho = -0.5$ ($N-1$ times) and $\mu_+ = 1 - \rho = +0.5$. This is the case
# the paper warns about in section 5.1: "if the dynamical system given by (50) is
# unstable, then its corresponding algorithm will diverge no matter the step size."
# (Started exactly at $U = 0$, `stability.equilibrium` stays there with 0 steps; from
# a generic start it escapes along the negative curvature to a minimiser.)

# %%
rho = 0.5
dw = flow.shoot(problems.double_well(rho), N)
saddle = stability.linearize(dw, dw.zeros())
print(saddle)
spec_saddle = stability.spectrum(saddle)
kind_saddle = stability.classify(spec_saddle)
print(kind_saddle, "--", kind_saddle.description)
bound_saddle = stability.euler_bound(spec_saddle)
print("euler_bound:", bound_saddle.description)
mu_plus = float(np.max(spec_saddle.eigenvalues))
closed_form = np.sort(np.r_[np.full(N - 1, -rho), 1 - rho])
np.testing.assert_allclose(np.sort(spec_saddle.eigenvalues), closed_form, atol=1e-13)
assert kind_saddle.kind == "saddle" and kind_saddle.index == 1
assert bound_saddle.alpha_max is None

# %% [markdown]
# Forward Euler multiplies the unstable component by $1 + \alpha\mu_+ > 1$ per step
# for every $\alpha > 0$. We start descent a distance $\sim 10^{-8}$ from the saddle,
# with a tiny step and a large one, and record $d_i = \|U_i\|_\infty$, the distance
# from the saddle. The random start also excites the $N-1$ stable directions, which
# shrink by $|1 - \alpha\rho|$ per step; once they are gone, $d_{i+1}/d_i$ is the
# predicted $1 + \alpha\mu_+$.
#
# `descend` guards against divergence by stopping when $\|\nabla E^N\|_\infty$ grows a
# million-fold over its value at the start. Here the start's gradient is about
# $10^{-9}$, and growing away from the equilibrium is exactly the instability we want to
# watch, so we raise `divergence_factor` and let the runs go on to where they end.

# %%
U0 = jnp.asarray(1e-8 * rng.standard_normal((N, 1)))
saddle_runs = {}
for alpha in (0.01, 1.0):
    tr = flow.descend(
        dw, U0, step=alpha, tol=1e-12, max_steps=12000, save_iterates=True, divergence_factor=1e15
    )
    d = np.max(np.abs(np.asarray(tr.iterates)[: int(tr.num_steps) + 1]), axis=(1, 2))
    linear = (d > 1e-6) & (d < 1e-3)  # stable part gone, cubic term still negligible
    i = np.flatnonzero(linear)
    growth = float(np.exp(np.polyfit(i, np.log(d[i]), 1)[0]))
    saddle_runs[alpha] = (tr, d, growth)
    print(
        f"alpha = {alpha:5.2f}: d_0 = {d[0]:.1e} -> d = {d[-1]:.4f} after {d.size - 1} steps; "
        f"growth per step {growth:.6f}, predicted 1 + alpha*mu_+ = {1 + alpha * mu_plus:.6f}"
    )
    # in this window the cubic term changes the factor by alpha * d^2 <= 1e-6 and the
    # stable directions have decayed far below d: agreement to ~1e-6 or better
    np.testing.assert_allclose(growth, 1 + alpha * mu_plus, rtol=1e-6)
    # ... and they end at a minimiser, a constant control u = +-sqrt(1 - rho)
    np.testing.assert_allclose(np.abs(np.asarray(tr.U)), np.sqrt(1 - rho), rtol=1e-11)

# %% [markdown]
# Both runs leave the saddle and end at one of the two minimisers
# $u \equiv \pm\sqrt{1-\rho}$. Plotted against the flow time $\tau = i\alpha$, the
# tiny step follows the flow's own growth $e^{\mu_+\tau}$ while the large step
# grows faster per unit $\tau$, at $(1 + \alpha\mu_+)^{\tau/\alpha}$; neither stays.

# %%
fig, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
for (alpha, (_, d, _)), style in zip(saddle_runs.items(), ("-", "--"), strict=True):
    tau = alpha * np.arange(d.size)
    ax.semilogy(tau, d, style, lw=2, label=rf"descent, $\alpha = {alpha:g}$")
    # the prediction, anchored where the stable directions have died out (d = 1e-6)
    i0 = int(np.argmax(d > 1e-6))
    pred = d[i0] * (1 + alpha * mu_plus) ** ((tau - tau[i0]) / alpha)
    ax.semilogy(
        tau,
        pred,
        ":",
        lw=1.5,
        color=ax.lines[-1].get_color(),
        label=rf"$(1 + \alpha\mu_+)^{{\tau/\alpha}}$, $\alpha = {alpha:g}$",
    )
ax.axhline(np.sqrt(1 - rho), color="0.4", lw=0.8)
ax.text(0.3, 1.0, r"minimisers $|u| = \sqrt{1-\rho}$", fontsize=9, color="0.3")
ax.set_ylim(1e-9, 10)
ax.set_xlabel(r"flow time $\tau = i\,\alpha$")
ax.set_ylabel(r"distance from the saddle $\|U_i\|_\infty$")
ax.set_title(f"double_well, N = {N}: descent leaves the saddle U = 0", fontsize=10)
ax.legend(loc="lower right", fontsize=8.5)

# %% [markdown]
# ## 3. The signature problem: a manifold of minimisers
#
# The paper's problem (4) has no running cost: minimise $\tfrac12(x(1)-1)^2$ subject to
# $\dot x = -x + u - 0.1x^3$. Every control with $x_N(U) = 1$ is a minimiser. The map
# $U \mapsto x_N(U)$ goes from $\mathbb{R}^N$ to $\mathbb{R}$ with a non-zero gradient
# $g = \partial x_N/\partial U$, so its level set $\{x_N = 1\}$ is a manifold of
# dimension $N - 1$. At every point of it the residual $x_N - 1$ vanishes, so
# $\nabla^2 E^N = g g^T$ exactly: rank one. With $M = hI$ the spectrum of $J$ is
# $N - 1$ zeros and one eigenvalue $-\|g\|^2/h$.
#
# `stability.equilibria` runs the trust-region solver from several starts at once
# (vmapped) and deduplicates what it finds.

# %%
mayer = flow.shoot(problems.scalar_mayer(), N)
t = np.asarray(mayer.grid[:-1])
starts = jnp.asarray(
    np.stack([np.zeros(N), 2 * np.sin(2 * np.pi * t), 6 * t - 3, rng.standard_normal(N)])[..., None]
)
found = stability.equilibria(mayer, starts)
print(found)
print("start -> point:", found.labels)
dx_N = jax.grad(lambda U: mayer.states(U)[-1, 0])  # g = d x_N / d U, by autodiff
specs_mayer = []
for p in found.points:
    spec_p = stability.spectrum(stability.linearize(mayer, p))
    specs_mayer.append(spec_p)
    kind_p = stability.classify(spec_p)
    g = np.asarray(dx_N(p.U)).ravel()
    mu_p = float(np.min(spec_p.eigenvalues))
    print(
        f"x_N = {float(mayer.states(p.U)[-1, 0]):.12f}, E^N = {p.cost:.1e}: {kind_p}; "
        f"nonzero mu = {mu_p:.6f}, -|g|^2/h = {-(g @ g) / h:.6f}"
    )
    assert kind_p.kind == "marginal" and kind_p.manifold_dimension == N - 1
    np.testing.assert_allclose(mu_p, -(g @ g) / h, rtol=1e-10)  # closed form above
    np.testing.assert_allclose(float(mayer.states(p.U)[-1, 0]), 1.0, atol=1e-10)
assert len(found.points) == len(starts)  # four starts, four different minimisers

# %% [markdown]
# `classify` reports the zero eigenvalues as a manifold of equilibria of dimension
# $N - 1 = 19$, not as instability ("marginal"), and `euler_bound` leaves them out:
# along the manifold the iteration neither converges nor diverges, it just stops
# where it arrives. The bound comes from the one non-zero eigenvalue. Plain descent
# (Hamiltonian metric, $\alpha = 1$) from the same four starts also converges, each
# time to a different minimiser.

# %%
bound_mayer = stability.euler_bound(specs_mayer[0])
print("euler_bound at the first minimiser:", bound_mayer)
ends = [flow.descend(mayer, U, step=1.0, tol=1e-10, max_steps=500) for U in starts]
for tr in ends:
    print(f"  {tr}; x_N = {float(mayer.states(tr.U)[-1, 0]):.10f}")
U_ends = np.stack([np.asarray(tr.U).ravel() for tr in ends])
gaps = np.max(np.abs(U_ends[:, None] - U_ends[None]), axis=-1)
print(f"smallest distance between two of the minimisers reached: {np.min(gaps[gaps > 0]):.3f}")
assert bound_mayer.n_excluded == N - 1
np.testing.assert_allclose(bound_mayer.alpha_max, 2 / np.max(np.abs(specs_mayer[0].eigenvalues)))
assert np.min(gaps[np.triu_indices(len(ends), 1)]) > 0.1

# %%
fig, (ax_u, ax_x) = plt.subplots(1, 2, figsize=(8.4, 3.3), layout="constrained")
tt = np.asarray(mayer.grid)
for j, (tr, marker) in enumerate(zip(ends, "osd^", strict=True)):
    u = np.asarray(tr.U)[:, 0]
    ax_u.step(
        tt,
        np.r_[u, u[-1]],
        where="post",
        marker=marker,
        ms=3.5,
        markevery=range(N),
        label=f"start {j}",
    )
    ax_x.plot(tt, np.asarray(mayer.states(tr.U))[:, 0], marker=marker, ms=3.5)
ax_x.axhline(1.0, color="0.4", lw=0.8, ls="--")
ax_u.set_xlabel("t")
ax_u.set_ylabel(r"minimising control $u_k$")
ax_x.set_xlabel("t")
ax_x.set_ylabel(r"state $x_k$ (all reach $x_N = 1$)")
ax_x.legend(*ax_u.get_legend_handles_labels(), fontsize=8, ncol=2, loc="lower right")
fig.suptitle("scalar_mayer, N = 20: four starts, four different minimisers on {x_N = 1}")

# %% [markdown]
# ## 4. Forward Euler's bound: subproblem 2
#
# Back at the stable minimum of section 1. Near $U^*$ the error of the iteration
# evolves as $e_{i+1} = (I + \alpha J)e_i$, so descent converges iff
# $|1 + \alpha\mu| < 1$ for every eigenvalue: $\alpha\mu$ must lie in forward Euler's
# stability disk (centre $-1$, radius 1). For a real negative spectrum this is
# $\alpha < \alpha_{\max} = 2/|\mu|_{\max}$, and the contraction per step is
# $\rho(\alpha) = \max_\mu|1 + \alpha\mu|$. `stability.euler_bound` computes both.
# This is section 8 of the paper made quantitative: "If the continuous-time dynamical
# system for optimization (Cf. (50)) is stable, then the resulting algorithm may still
# diverge if the step size of the 'discrete' algorithm is too large."

# %%
bound = stability.euler_bound(spec)
print(bound)
np.testing.assert_allclose(bound.alpha_max, 2 / np.max(np.abs(mu)), rtol=1e-14)

U_start = eq.U + 1e-3 * jnp.asarray(rng.standard_normal((N, 1)))
euler_runs = {}
for factor in (0.9, 1.1):
    alpha = factor * bound.alpha_max
    tr = flow.descend(
        sh, U_start, step=alpha, max_steps=150, tol=1e-11, throw=False, save_iterates=True
    )
    r = np.asarray(tr.hamiltonian_norm)[: int(tr.num_steps) + 1]
    euler_runs[factor] = (alpha, tr, r)
    print(
        f"alpha = {factor} alpha_max = {alpha:.4f}, predicted rho = {bound.rate(alpha):.4f}: {tr}"
    )

alpha, tr, r = euler_runs[0.9]
observed = stability.observed_rate(r, floor=1e-10)
print(f"0.9 alpha_max: observed rate {observed:.6f}, predicted {bound.rate(alpha):.6f}")
assert tr.success
# the fitted slope of log r over ~40 steps of an almost linear recursion: 1e-3 relative
np.testing.assert_allclose(observed, bound.rate(alpha), rtol=1e-3)

alpha, tr, r = euler_runs[1.1]
i = np.flatnonzero((r > 1e-2) & (r < 0.3))  # past the transient, before saturation
growth = float(np.exp(np.polyfit(i, np.log(r[i]), 1)[0]))
print(f"1.1 alpha_max: residual grows by {growth:.3f} per step (predicted {bound.rate(alpha):.3f})")
n = int(tr.num_steps)
It = np.asarray(tr.iterates)
two_step, one_step = np.max(np.abs(It[n] - It[n - 2])), np.max(np.abs(It[n] - It[n - 1]))
print(
    f"  then {tr.status} at step {n} (period {int(tr.period)}, half-width "
    f"{float(tr.amplitude):.2f}): residual {r[-1]:.2f}, |U_n - U_n-2| = {two_step:.1e}, "
    f"|U_n - U_n-1| = {one_step:.1f}, |U_n - U*| = {np.max(np.abs(It[n] - np.asarray(eq.U))):.1f}"
)
assert tr.status == "oscillating" and int(tr.period) == 2 and r[-1] > 1.0
assert two_step < 1e-6 < 1.0 < one_step  # a period-2 cycle
# the window holds ~10 steps, with the other modes decayed by 0.5^i: a few per cent
np.testing.assert_allclose(growth, bound.rate(alpha), rtol=0.05)

# %% [markdown]
# At $0.9\,\alpha_{\max}$ the residual falls by exactly the predicted
# $\rho = |1 - 0.9\cdot 2| = 0.8$ per step; at $1.1\,\alpha_{\max}$ the stiffest mode is
# amplified by $|1 - 1.1\cdot 2| = 1.2$ per step until the nonlinearity stops it on a
# period-2 cycle of the map ($U_{i+2} = U_i \ne U_{i+1}$), far from the minimum:
# `descend` stops with status `oscillating` (see
# [Past the step bound](beyond_equilibrium.md): the flip at $\alpha_{\max}$). The flow
# itself is the same in both runs and stable: only the discretization of it changed.

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3.3), layout="constrained")
for ax, factor in zip(axes[:2], (0.9, 1.1), strict=True):
    alpha = euler_runs[factor][0]
    z = alpha * mu
    inside = np.abs(1 + z) < 1
    ax.add_patch(
        plt.Circle(
            (-1, 0),
            1,
            facecolor="#56B4E9",
            alpha=0.3,
            edgecolor="#0072B2",
            lw=1.3,
            label=r"Euler's disk $|1 + z| < 1$",
        )
    )
    ax.plot(
        z[inside],
        0 * z[inside],
        "o",
        ms=6,
        mfc="none",
        mew=1.5,
        color="#0072B2",
        label=rf"$z = \alpha\mu$ inside ({inside.sum()})",
    )
    if (~inside).any():
        ax.plot(
            z[~inside],
            0 * z[~inside],
            "x",
            ms=9,
            mew=2.5,
            color="#D55E00",
            label=rf"$z = \alpha\mu$ outside ({(~inside).sum()})",
        )
    ax.axhline(0, color="0.6", lw=0.6)
    ax.set_xlim(-2.6, 0.3)
    ax.set_ylim(-1.2, 1.75)
    ax.set_aspect("equal")
    ax.set_xlabel(r"Re $z$")
    ax.set_ylabel(r"Im $z$")
    ax.set_title(rf"$\alpha = {factor}\,\alpha_{{\max}}$: $\rho = {bound.rate(alpha):.1f}$")
    ax.legend(loc="upper left", fontsize=7.5, frameon=False)
ax = axes[2]
for factor, style in ((0.9, "-"), (1.1, "--")):
    alpha, tr, r = euler_runs[factor]
    i = np.arange(r.size)
    ax.semilogy(i, r, style, lw=2, label=rf"descent, $\alpha = {factor}\,\alpha_{{\max}}$")
    i0 = 5  # anchor the prediction past the first steps' transient
    ax.semilogy(
        i,
        r[i0] * bound.rate(alpha) ** (i - i0),
        ":",
        lw=1.4,
        color="0.1",
        zorder=3,
        label=rf"predicted $\rho^i$, $\rho = {bound.rate(alpha):.1f}$",
    )
ax.set_ylim(1e-12, 1e3)
ax.set_xlabel("iteration i")
ax.set_ylabel(r"residual $\max_k |\partial_u H_k|$")
ax.set_title("residual histories")
ax.legend(loc="center right", fontsize=7.5)
fig.suptitle(
    f"scalar_regularized, N = {N}, Hamiltonian metric: "
    rf"$\alpha_{{\max}} = 2/|\mu|_{{\max}} = {bound.alpha_max:.4f}$"
)

# %% [markdown]
# ## Summary
#
# - **`scalar_regularized`, the minimum**: every $\mu < 0$, *asymptotically stable*;
#   $\alpha_{\max} = 2/|\mu|_{\max}$, and descent converges at the rate $\rho(\alpha)$
#   exactly when $\alpha < \alpha_{\max}$.
# - **`double_well` at $U = 0$**: one $\mu_+ > 0$, a *saddle* of index 1; no step bound
#   exists, and descent leaves by the factor $1 + \alpha\mu_+$ per step, for every
#   $\alpha$.
# - **`scalar_mayer`, the minimisers**: $N - 1$ zero eigenvalues and one negative,
#   *marginal*, a manifold of equilibria of dimension $N - 1$; the bound comes from the
#   non-zero eigenvalue, and descent converges to a minimiser that depends on the start.
#
# For a whole problem in one call, `stability.analyze` (and `gradflow analyze`) runs
# all of these steps and replays the descent at the chosen step.
