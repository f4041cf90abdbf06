# %% [markdown]
# # Lemma 2, the hidden costates, and the eps/h warning
#
# A direct shooting method never mentions costates, yet its gradient is built
# from them: for forward Euler,
#
# $$\frac{\partial E^N}{\partial u_k} = h\,\partial_u H(\lambda_k, x_k, u_k)
# \qquad \text{(Lemma 2, eq. (49))},$$
#
# with $\lambda_k$ back-propagated by the adjoint recursion (23), (25).
# This tutorial shows the identity on the Van der Pol problem, shows what an
# off-by-one costate looks like, and shows why a gradient tolerance means
# little on a fine grid. Run it with `python docs/tutorials/lemma2.py`.

# %%
import jax.numpy as jnp
import numpy as np

import flow
from flow import problems


# %% [markdown]
# ## 1. Three gradients and the Hamiltonian gradient

# %%
sh = flow.shoot(problems.van_der_pol(), 200, flow.Euler())
U = flow.probe_control(sh)  # a smooth, non-trivial control
g = sh.gradient(U)  # jax.grad through the scan
g_adj = sh.gradient(U, "costate")  # the adjoint recursion, by hand
dH = sh.hamiltonian_gradient(U)  # d_u H(lambda_k, x_k, u_k)
h = sh.steps[:, None]

lemma2 = float(jnp.max(jnp.abs(g - h * dH)) / jnp.max(jnp.abs(g)))
print(f"|grad - h dH/du| / |grad| = {lemma2:.1e}   (Lemma 2: rounding only)")
print(
    f"|grad_costate - grad_autodiff| / |grad| = "
    f"{float(jnp.max(jnp.abs(g_adj - g)) / jnp.max(jnp.abs(g))):.1e}"
)
assert lemma2 < 1e-12

# %% [markdown]
# ## 2. The costates the direct method hides
#
# $\lambda_k = \partial E^N/\partial x_{k+1}$: the costate of interval $k$ is the
# sensitivity to the state at its *end*. With a running cost the state is augmented by
# the accumulated cost, whose costate is identically 1.

# %%
lam = sh.costates(U)
print("lambda_0 =", np.asarray(lam[0]), " lambda_{N-1} =", np.asarray(lam[-1]))
assert np.all(np.asarray(lam[:, -1]) == 1.0)

# %% [markdown]
# ### The off-by-one costate (Remark 2, (23)-(25))
#
# Forward Euler has no $u_N$ (Remark 2), so (23) has no equation on the last interval,
# there is no $\lambda_N$, and the transversality condition (25) sets
# $\lambda_{N-1} = \nabla E(x_N)$. A costate aligned with the state nodes, as in
# continuous time ($\lambda(t_k)$ beside $x(t_k)$, $\lambda(t_N) = \nabla E(x(t_N))$), is
# $\partial E^N/\partial x_k = \lambda_{k-1}$. Used on interval $k$ it gives
# $\partial_u H(\lambda_{k-1}, x_k, u_k)$: wrong by $O(h)$, and plausible-looking.
# For Van der Pol $\partial_u H = \lambda_{k,1} + 2u_k$ ($f_u = (1, 0)$, $L_u = 2u$).

# %%
errors = []
for N_ in (50, 200, 800):
    s_ = flow.shoot(problems.van_der_pol(), N_, flow.Euler())
    U_ = flow.probe_control(s_)
    lam_ = s_.costates(U_)
    exact = s_.hamiltonian_gradient(U_)[1:, 0]
    shifted = lam_[:-1, 0] + 2 * U_[1:, 0]  # d_u H(lambda_{k-1}, x_k, u_k), k >= 1
    err = float(jnp.max(jnp.abs(shifted - exact)))
    print(f"N = {N_:4d}, h = {float(s_.steps[0]):.2e}: max |off-by-one dH/du error| = {err:.2e}")
    errors.append(err)
slope = np.polyfit(np.log([50, 200, 800]), np.log(errors), 1)[0]
print(f"fitted slope in N: {slope:.2f}   (O(h): -1)")
assert -1.15 < slope < -0.85 and min(errors) > 1e-2  # O(h), far above rounding

# %% [markdown]
# ## 3. Theorem 5.14: $\epsilon$ on the gradient is $\epsilon/h$ on the Hamiltonian
#
# At a fixed control the Hamiltonian gradient converges as the grid is refined,
# while the gradient shrinks like $h$. A fixed gradient tolerance is therefore
# met on fine grids by controls that are far from optimal.

# %%
print(f"{'N':>6} {'max|grad|':>11} {'max|dH/du|':>11}")
for N in (50, 200, 1000, 5000):
    s = flow.shoot(problems.scalar_regularized(), N)
    U0 = s.zeros()
    gmax = float(jnp.max(jnp.abs(s.gradient(U0))))
    hmax = float(jnp.max(jnp.abs(s.hamiltonian_gradient(U0))))
    print(f"{N:>6} {gmax:>11.2e} {hmax:>11.2e}")
    np.testing.assert_allclose(gmax, hmax / N, rtol=1e-12)
# With eps = 1e-3 the zero control "converges" at N = 5000 although
# max|dH/du| = 1: use eps = h * eps_H instead.
