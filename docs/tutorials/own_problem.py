# %% [markdown]
# # Your own problem
#
# This page defines a problem of its own, a pendulum swing with a running cost,
# and analyses it the way you would analyse yours: from Python (discretise, check
# the gradients, find the equilibrium and its stability, compare step rules), then
# from the command line with `gradflow analyze --problem file.py:object`. It ends
# with what a malformed problem looks like.
#
# The problem: a damped pendulum, hanging at rest at $t = 0$, should reach the
# horizontal at rest at $t_f = 3$ with the least control effort. With the state
# $x = (\theta, \omega)$ and one control $u$ (a torque),
#
# $$\min_u\; (\theta(3) - \tfrac{\pi}{2})^2 + \omega(3)^2 + \int_0^3 \tfrac12 u^2\,dt
# \quad\text{s.t.}\quad \dot\theta = \omega,\;
# \dot\omega = -\sin\theta - 0.1\,\omega + u,\; x(0) = (0, 0).$$
#
# Its Pontryagin Hamiltonian is $H = \lambda_1\omega + \lambda_2(-\sin\theta -
# 0.1\,\omega + u) + \tfrac12 u^2$ (eq. (5) with the running cost), so the
# optimality condition $\partial H/\partial u = \lambda_2 + u = 0$ says that the
# optimal torque is minus the costate of $\omega$.

# %% [markdown]
# ## 1. Define the problem
#
# `flow.OptimalControlProblem(f, E, x0, t0, tf, running_cost=L, control_dim=m)` takes
# the dynamics $f(x, u)$ (an array of shape `(n,)`), the endpoint cost $E(x)$ and the
# running cost $L(x, u)$ (scalars), and validates them on construction: it evaluates
# each function once on `x0` and a zero control and checks shapes, dtypes and values.
# The functions must be traceable by JAX: `jnp` operations, and `jnp.where` instead
# of a Python `if` on the state or control.

# %%
import json
import math
import pathlib
import subprocess
import sys

import jax.numpy as jnp
import numpy as np

import flow
import gradflow
import stability


def dynamics(x, u):
    theta, omega = x[0], x[1]
    return jnp.stack([omega, -jnp.sin(theta) - 0.1 * omega + u[0]])


def endpoint_cost(x):
    return (x[0] - jnp.pi / 2) ** 2 + x[1] ** 2


def running_cost(x, u):
    return 0.5 * u[0] ** 2


pendulum = flow.OptimalControlProblem(
    dynamics,
    endpoint_cost,
    x0=[0.0, 0.0],
    t0=0.0,
    tf=3.0,
    running_cost=running_cost,
    control_dim=1,
    name="pendulum",
)
print(pendulum)
print("n =", pendulum.state_dim, "(augmented:", pendulum.augmented_dim, "with the running cost)")

# %% [markdown]
# ## 2. Discretise, and check the gradients
#
# `flow.shoot(problem, N)` is the direct shooting discretisation: $N$ uniform
# intervals ($h = t_f/N$, eq. (15)), piecewise-constant controls of shape `(N, m)`,
# forward Euler by default (eq. (16)). The running cost is folded into the state as
# one extra component, so $E^N(U) = E(x_N) + \sum_k h\,L(x_k, u_k)$. The cell
# recomputes that sum with a plain numpy loop (an independent route) at a smooth
# probe control, then runs `flow.check_gradients`: the gradient by autodiff, by
# the costate recursion (eqs. (23), (25)) and by central finite differences, and
# Lemma 2, $\nabla E^N = h\,\partial_u H(\lambda_k, x_k, u_k)$ (eq. (49)).

# %%
N = 60
sh = flow.shoot(pendulum, N)
U = np.asarray(flow.probe_control(sh))  # u_k = sin(pi t_k / tf + 1) / 2

h = 3.0 / N
x, cost = np.array([0.0, 0.0]), 0.0
for k in range(N):  # forward Euler, by hand (a check, not a hot path)
    cost += h * 0.5 * U[k, 0] ** 2
    x = x + h * np.array([x[1], -np.sin(x[0]) - 0.1 * x[1] + U[k, 0]])
cost += (x[0] - np.pi / 2) ** 2 + x[1] ** 2
print(f"E^N(U) = {float(sh.cost(U)):.15f} (flow), {cost:.15f} (numpy loop)")
np.testing.assert_allclose(float(sh.cost(U)), cost, rtol=1e-13)

check = flow.check_gradients(sh)
print(check)
assert check.costate_vs_autodiff < 1e-13 and check.lemma2 < 1e-13  # identities: rounding
assert check.fd_vs_autodiff < 1e-8  # central differences: truncation error, ~1e-10

# %% [markdown]
# ## 3. The analysis: equilibrium, spectrum, step bound
#
# `stability.analyze` does in one call what `gradflow analyze` reports: it finds the
# equilibrium $U^\star$ of the gradient flow $dU/d\tau = -M^{-1}\nabla E^N$
# (eqs. (50), (51)), the eigenvalues $\mu$ of its Jacobian
# $J = -M^{-1}\nabla^2 E^N(U^\star)$ (here with the default Hamiltonian metric
# $M = \mathrm{diag}(h_k)$), forward Euler's bound $\alpha_{\max}$, Theorem 5.14 for
# the tolerance, and replays descent with the step `"optimal"`, the constant
# $\alpha_{\mathrm{opt}} = 2/(|\mu_{\mathrm{stiff}}| + |\mu_{\mathrm{slow}}|)$.
# The verbs it chains (`stability.equilibrium`, `linearize`, `spectrum`, `classify`,
# `euler_bound`) can also be called one by one.

# %%
report = stability.analyze(sh, step="optimal")
print(report.summary())
print(report.spectrum)
assert report.success and report.classification.kind == "asymptotically stable"

# %% [markdown]
# The spectrum has a structure one can read off the problem. The running cost
# $\tfrac12 u^2$ contributes $h_k$ to the Hessian's diagonal, which the Hamiltonian
# metric turns into exactly $-1$ in $J$: most eigenvalues cluster there. The
# endpoint cost depends on $U$ only through the two final states, so its
# Gauss-Newton part $(\partial x_N/\partial U)^T \nabla^2 E\,(\partial x_N/\partial U)$
# has rank two: it pulls two eigenvalues away from the cluster, and the stiffer one
# sets $\alpha_{\max} = 2/|\mu_{\mathrm{stiff}}|$. And at the equilibrium the Hamiltonian
# condition holds: $u^\star_k = -\lambda_{k,2}$, with the costates that the direct
# method computed along the way.

# %%
mu = np.asarray(report.spectrum.eigenvalues)  # real (J is symmetric here), ascending
in_cluster = np.abs(mu + 1) < 0.1
print(f"{in_cluster.sum()} of {N} eigenvalues within 0.1 of -1; the others: {mu[~in_cluster]}")
assert in_cluster.sum() >= N - 2  # the rank-two term: two outliers
np.testing.assert_allclose(report.euler.alpha_max, 2 / abs(mu[0]), rtol=1e-14)

u_star = np.asarray(report.trajectory["controls"])[:, 0]
lam = np.asarray(report.trajectory["costates"])  # (N, n): lambda_k = dE^N/dx_{k+1}
pontryagin = np.max(np.abs(u_star + lam[:, 1]))
print(f"max_k |u*_k + lambda_k,2| = {pontryagin:.1e}")
assert pontryagin < 1e-10  # the equilibrium search stops at max|dH/du| <= 1e-10

# %% [markdown]
# ## 4. Step rules
#
# `flow.descend(sh, U0, step=...)` runs the optimizer (37) itself. A number is a
# constant step (exactly forward Euler on the flow), `"armijo"` a backtracking line
# search, `"lbfgs"` L-BFGS with a line search (and `"hamiltonian"` the step
# $\alpha = 1/h$ of section 6.2, the remedy for the identity metric). The analysis
# already ran the constant $\alpha_{\mathrm{opt}}$ (`report.replay`); the cell adds
# a constant step 1.5 times over the bound and the two line searches, all from
# $U = 0$ with the same stopping rule, $\max_k|\partial H/\partial u_k| \le 10^{-8}$.
# `throw=False` returns a failed run with its status instead of raising.

# %%
alpha_opt, alpha_max = report.euler.alpha_opt, report.euler.alpha_max
runs = {f"constant {alpha_opt:.3f} (optimal)": report.replay}
for label, step in [
    (f"constant {1.5 * alpha_max:.3f} (1.5 alpha_max)", 1.5 * alpha_max),
    ("armijo", "armijo"),
    ("lbfgs", "lbfgs"),
]:
    runs[label] = flow.descend(sh, sh.zeros(), step=step, tol=1e-8, max_steps=500, throw=False)

E_star = report.equilibrium.cost
print(
    f"{'step rule':<32} {'status':>10} {'steps':>6} {'gradients':>9} {'trials':>6} "
    f"{'max|dH/du|':>10} {'E^N - E*':>9}"
)
for label, tr in runs.items():
    n = int(tr.num_steps)
    print(
        f"{label:<32} {tr.status:>10} {n:>6} {int(tr.num_gradients):>9} "
        f"{int(tr.num_line_search_trials):>6} {float(tr.hamiltonian_norm[n]):>10.1e} "
        f"{float(tr.cost[n]) - E_star:>9.1e}"
    )
print("\n1.5 alpha_max:", runs[f"constant {1.5 * alpha_max:.3f} (1.5 alpha_max)"].message)
print("\narmijo:", runs["armijo"].message)

# %% [markdown]
# What the table shows:
#
# * The constant $\alpha_{\mathrm{opt}}$ converges at the rate the spectrum predicts,
#   $\rho(\alpha) = \max_\mu|1 + \alpha\mu|$: from the first residual $r_0$, about
#   $\log(10^{-8}/r_0)/\log\rho$ steps.
# * Above $\alpha_{\max}$ the stiff eigenvalue leaves forward Euler's stability disk
#   ($|1 + \alpha\mu| > 1$) and descent diverges; `descend` detects it and says at
#   which iteration, instead of returning NaN.
# * Of the runs that reach the minimum, L-BFGS needs the fewest gradients.
# * Armijo gets to $\max_k|\partial H/\partial u_k| \approx 3\cdot 10^{-8}$ and
#   stalls: its sufficient-decrease test compares costs, and a step that lowers the
#   residual further lowers $E^N \approx 0.57$ by less than its rounding error. Its
#   cost is then already optimal to rounding; stop a line search on a looser
#   tolerance, or finish with a constant step or L-BFGS.

# %%
rho = report.predicted_rate
r0 = float(report.replay.hamiltonian_norm[0])
predicted = math.log(1e-8 / r0) / math.log(rho)
taken = int(report.replay.num_steps)
print(f"optimal step: predicted {predicted:.1f} steps from r0 = {r0:.2f}, took {taken}")
# the rate holds near U*; the start is far away, hence the 10% allowance
assert report.replay.status == "converged" and abs(taken - predicted) <= 0.1 * predicted

above = runs[f"constant {1.5 * alpha_max:.3f} (1.5 alpha_max)"]
assert above.status == "diverged" and int(above.diverged_at) > 0
assert runs["lbfgs"].status == "converged"
armijo = runs["armijo"]
for other in (report.replay, armijo):  # the runs that reach the minimum
    assert int(runs["lbfgs"].num_gradients) < int(other.num_gradients)
assert armijo.status == "max_steps" and float(armijo.hamiltonian_norm[-1]) < 1e-7
for tr in (report.replay, runs["lbfgs"], armijo):
    n = int(tr.num_steps)
    np.testing.assert_allclose(float(tr.cost[n]), E_star, rtol=1e-13)  # same minimum

# %% [markdown]
# ## 5. The same problem from the command line
#
# `gradflow analyze --problem path/to/file.py:object` loads `object` from a Python
# file: a `flow.OptimalControlProblem`, or a function with no required arguments
# that returns one. The cell writes the problem above into `pendulum.py` in the
# working directory and runs the command on it, starting from $u \equiv 0.5$
# (`--U0 0.5`; a `.npy` file of shape `(N, m)` also works) and replaying L-BFGS
# (`--step lbfgs`):
#
# ```bash
# gradflow analyze --problem pendulum.py:problem --N 60 --equivalence-N 60 \
#     --U0 0.5 --step lbfgs --out pendulum-out
# ```

# %%
pathlib.Path("pendulum.py").write_text(
    """import jax.numpy as jnp

import flow


def dynamics(x, u):
    theta, omega = x[0], x[1]
    return jnp.stack([omega, -jnp.sin(theta) - 0.1 * omega + u[0]])


problem = flow.OptimalControlProblem(
    dynamics,
    lambda x: (x[0] - jnp.pi / 2) ** 2 + x[1] ** 2,
    x0=[0.0, 0.0],
    t0=0.0,
    tf=3.0,
    running_cost=lambda x, u: 0.5 * u[0] ** 2,
    control_dim=1,
    name="pendulum",
)
""",
    encoding="utf-8",
)
gradflow_exe = pathlib.Path(sys.executable).with_name("gradflow")
command = "analyze --problem pendulum.py:problem --N 60 --equivalence-N 60 --U0 0.5 --step lbfgs"
cli = subprocess.run(
    [str(gradflow_exe), *command.split(), "--out", "pendulum-out"],
    capture_output=True,
    text=True,
    check=False,
)
print(cli.stdout)
assert cli.returncode == 0, cli.stderr

# %% [markdown]
# The equilibrium it found from $u \equiv 0.5$ is the one found from $U = 0$, so the
# costs agree to rounding and the bound $\alpha_{\max}$, computed from eigenvalues
# at two equilibria that each meet $\max|\partial H/\partial u| \le 10^{-10}$, to
# far better than the $10^{-8}$ asserted. A line search has no predicted rate
# (`n/a`, `n/c` in the replay row): the bound speaks about constant steps only.

# %%
doc = json.loads(pathlib.Path("pendulum-out/results.json").read_text(encoding="utf-8"))
assert gradflow.validate_results(doc) == []
rp = doc["replay"]
print(f"problem {doc['problem']['spec']}, U0 {doc['settings']['U0']}, N = {doc['N']}")
print(f"replay: {doc['step_rule']} {rp['status']} after {rp['num_steps']} steps")
print(f"E^N(U*) = {doc['equilibrium']['cost']:.15f} (command line), {E_star:.15f} (Python)")
np.testing.assert_allclose(doc["equilibrium"]["cost"], E_star, rtol=1e-13)
np.testing.assert_allclose(doc["euler"]["alpha_max"], alpha_max, rtol=1e-8)
assert doc["N"] == N and rp["status"] == "converged" and rp["predicted_rate"] is None

# %% [markdown]
# ## 6. When the problem is malformed
#
# Construction fails with a `ValueError` or `TypeError` that names the argument and
# says what was expected. Five common slips: dynamics that return one component
# instead of stacking both, a scalar initial state, a running cost that returns an
# array of shape `(1,)` (`u**2` instead of `u[0]**2`), a float32 cast, and a Python
# `if` on the state (the functions are traced by JAX when the problem is built, as
# every verb will trace them; use `jnp.where` for a branch). Controls of the wrong
# shape are refused by every verb in the same way.

# %%
good = dict(
    dynamics=dynamics,
    endpoint_cost=endpoint_cost,
    x0=[0.0, 0.0],
    t0=0.0,
    tf=3.0,
    running_cost=running_cost,
    control_dim=1,
)
slips = [
    ("dynamics", lambda x, u: x[1] + u[0]),
    ("x0", 0.0),
    ("running_cost", lambda x, u: 0.5 * u**2),
    ("dynamics", lambda x, u: dynamics(x, u).astype(jnp.float32)),
    ("dynamics", lambda x, u: dynamics(x, u) if x[0] > 0 else -dynamics(x, u)),
]
for argument, bad in slips:
    kwargs = {**good, argument: bad}
    try:
        flow.OptimalControlProblem(kwargs.pop("dynamics"), kwargs.pop("endpoint_cost"), **kwargs)
    except (ValueError, TypeError) as e:
        print(f"{type(e).__name__}: {e}")
        assert f"`{argument}`" in str(e)
    else:
        raise AssertionError(f"a bad {argument} was accepted")

try:
    flow.descend(sh, np.zeros(N), step=alpha_opt)  # (N,) instead of (N, m)
except ValueError as e:
    print(f"ValueError: {e}")
    assert "`U0`" in str(e)

# %% [markdown]
# On the command line the same mistakes end with exit code 2 and one line on stderr
# naming the problem, with no traceback; so do a file or object that does not
# exist, a function with required arguments, and functions that cannot be traced by
# JAX. The full list is in
# [The gradflow command and its report](../report.md).
