# %% [markdown]
# # Control parameterizations, spurious stationary points, and adaptive grids
#
# Two failure modes the paper names (Remark 5.13 and section 6.5):
#
# 1. with controls $U = BC$ (eqs. (40)-(43)) the optimizer sees only
#    $\nabla_C E^N = B^T\nabla_U E^N$, so it can stop where $B^T g = 0$ although
#    $g \ne 0$: a spurious stationary point (eq. (52) without (51));
# 2. with an adaptive integrator the grid depends on U, and the gradient that
#    differentiates through the solver misses the term $S$ of eq. (59).
#
# Run it with `python docs/tutorials/controls.py`.

# %%
import numpy as np

import flow
import stability
from flow import controls, problems


# %% [markdown]
# ## 1. Bases and their rank
#
# $B$ has shape $(Nm, p)$; row $km + i$ belongs to $u_{k,i}$; the basis functions are
# sampled at the interval midpoints (or averaged over the interval with
# `sample="average"`).

# %%
sh = flow.shoot(problems.scalar_regularized(), 20)
for basis in (
    controls.PiecewiseConstant(5),
    controls.Hat(6),
    controls.Legendre(3),
    controls.Chebyshev(25),  # more polynomials than intervals
    controls.BSpline(3, 4),
):
    print(controls.rank_report(basis, sh))

# A classic mistake: N blocks uniform in *time* on a nonuniform grid. B has
# N columns, but some blocks are empty and some intervals share a control.
clustered = np.array([0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 1.0])
rep = controls.rank_report(controls.PiecewiseConstant(10), clustered)
print(rep)
assert rep.rank_deficient and rep.invisible_dimension == 2

# %% [markdown]
# ## 2. A badly chosen basis stalls at a spurious point
#
# The parameterized problem is an ordinary `flow.Shooting` (one step over
# $[t_0, t_f]$ with the $p$ coefficients as its control), so `flow.descend`,
# `flow.gradient_flow` and `stability` run on it unchanged. With affine controls
# (Legendre degree 1) descent "converges": $|B^T g|$ reaches $10^{-11}$, yet
# $\partial_u H$ is far from zero.

# %%
param = controls.parameterize(sh, controls.Legendre(1))
trace = flow.descend(
    param,
    param.zeros(),
    metric="identity",
    step=1.0,
    max_steps=500,
    tol=1e-11,
    stop_on="gradient",
)
print(trace)
check = controls.spurious_check(param, trace.U)
print(check)
assert check.spurious

best = stability.equilibrium(sh)  # the optimum of E^N itself, in U
print(f"cost at the spurious point {check.cost:.6f}, at the optimum {best.cost:.6f}")

# More functions shrink the Hamiltonian residual at the stall point; one function
# per interval ($B = I$) removes the spurious point altogether.
for degree in (1, 3, 5):
    p = controls.parameterize(sh, controls.Legendre(degree))
    eq = stability.equilibrium(p, tol=1e-12)
    chk = controls.spurious_check(p, eq.U)
    print(
        f"Legendre degree {degree}: |B^T g| = {chk.gradient_C_norm:.1e}, "
        f"max|dH/du| = {chk.hamiltonian_norm:.2e}"
    )

# %% [markdown]
# ## 3. The term S of an adaptive grid
#
# Each interval $[t_k, t_{k+1}]$ is integrated by Bogacki-Shampine under a PID
# controller with rtol = atol = tol. `jax.grad` through diffrax gives the
# gradient with the grid held fixed (diffrax stops gradients through the step
# sizes); central differences of the adaptive map itself give the full
# derivative. Their difference is $S$. On the frozen grid, $S$ vanishes up to the
# finite-difference error.

# %%
ash = flow.adaptive_shoot(problems.scalar_regularized(), 10, tol=1e-6)
U = flow.probe_control(ash.reference)
st = flow.s_term(ash, U)
print(st)
print(
    f"|S| = {st.s_norm:.2e} vs finite-difference noise {st.fd_noise:.1e}; "
    f"S on the frozen grid {st.fixed_s_norm:.1e}"
)
assert st.s_norm > 1e3 * st.fixed_s_norm
