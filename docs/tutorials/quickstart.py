# %% [markdown]
# # Quickstart
#
# This page runs the main job, `gradflow analyze`, first from the command line and
# then from Python, and explains every part of what it prints and writes. On a
# fresh machine with Python 3.11 or newer, from a checkout of the repository, the
# README's first command installs the package and runs the analysis of the
# built-in default problem:
#
# ```bash
# python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/gradflow analyze
# ```
#
# and its second command installs the test extras and runs the tests:
#
# ```bash
# python3 -m venv .venv && .venv/bin/pip install ".[test]" && .venv/bin/python -m pytest
# ```
#
# The default problem, `scalar_regularized`, is the paper's scalar problem with a
# regularising running cost: minimise $\tfrac12 (x(1) - 1)^2 + \int_0^1 \tfrac12 u^2\,dt$
# subject to $\dot x = -x + u - 0.1 x^3$, $x(0) = 0$. Direct shooting cuts $[0, 1]$
# into $N$ intervals of length $h = 1/N$, holds the control constant on each
# ($U = (u_0, \dots, u_{N-1})$), integrates with forward Euler (eq. (16)) and
# minimises $E^N(U)$ with the gradient method
# $U_{i+1} = U_i - \alpha M^{-1} \nabla E^N(U_i)$ (eq. (37)). `gradflow analyze` asks
# of that optimizer the paper's questions: where does it converge to, is the
# gradient flow $dU/d\tau = -M^{-1}\nabla E^N(U)$ (eq. (50)) stable there, which
# steps $\alpha$ keep forward Euler on that flow stable, what a stopping tolerance
# means (Theorem 5.14), and whether the direct gradient really is the indirect
# method's $h\,\partial H/\partial u$ (Lemma 2).

# %% [markdown]
# ## 1. From the command line
#
# The default grid is $N = 200$; here a smaller one, $N = 50$, keeps the page fast.
# `--equivalence-N 50` restricts the gradient-equivalence table to that grid
# (its default is 50, 200 and 1000) and `--out out` names the output folder. The
# cell runs the `gradflow` executable installed next to this Python, exactly as
# you would in a shell:
#
# ```bash
# gradflow analyze --N 50 --equivalence-N 50 --out out
# ```

# %%
import json
import math
import pathlib
import subprocess
import sys
import time

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np

import gradflow
from flow import problems


gradflow_exe = pathlib.Path(sys.executable).with_name("gradflow")
start = time.perf_counter()
cli = subprocess.run(
    [str(gradflow_exe), *"analyze --N 50 --equivalence-N 50 --out out".split()],
    capture_output=True,
    text=True,
    check=False,
)
cli_seconds = time.perf_counter() - start
print(cli.stdout)
print(f"exit code {cli.returncode}, {cli_seconds:.0f} s (mostly JAX compilation and figures)")
assert cli.returncode == 0, cli.stderr
assert cli.stderr == "", cli.stderr  # no warnings: the chosen step suits the metric
assert "Verdict:" in cli.stdout

# %% [markdown]
# ## 2. Reading the summary
#
# Each row of the table is one stage of the analysis; `results.json` holds the same
# numbers in full, with the same section names.
#
# * **equilibrium** (`equilibrium`): the point $U^\star$ the optimizer should converge
#   to, a stationary point of $E^N$, $\nabla E^N(U^\star) = 0$ (eq. (51)), found by
#   trust-region Newton-CG from $U = 0$. `max|grad|` is $\|\nabla E^N\|_\infty$
#   (eq. (54)) and `max|dH/du|` the Hamiltonian residual
#   $\max_k |\partial H/\partial u_k|$ (eq. (55)); both are at rounding level.
# * **spectrum** (`spectrum`, `classification`): the eigenvalues $\mu$ of the flow's
#   Jacobian $J = -M^{-1} \nabla^2 E^N(U^\star)$ at the equilibrium. All of them are
#   negative, so the flow is *asymptotically stable*: started near $U^\star$, the
#   continuous-time optimizer returns to it. The *stiff end* is the most negative
#   eigenvalue, the *slow end* the one closest to zero. With the default
#   Hamiltonian metric $M = \mathrm{diag}(h_k)$, the flow is the indirect method's
#   $dU/d\tau = -\partial H/\partial U$, and its spectrum converges as $N$ grows
#   instead of shrinking like $h$.
# * **Euler bound** (`euler`): descent with a constant step $\alpha$ is forward Euler
#   on the flow, so it is linearly stable at $U^\star$ iff $|1 + \alpha\mu| < 1$ for
#   every $\mu$, i.e. $\alpha < \alpha_{\max} = \min_\mu -2\,\mathrm{Re}\,\mu/|\mu|^2$.
#   For a real spectrum $[\mu_{\mathrm{stiff}}, \mu_{\mathrm{slow}}]$ the best constant
#   step is $\alpha_{\mathrm{opt}} = 2/(|\mu_{\mathrm{stiff}}| + |\mu_{\mathrm{slow}}|)$;
#   the error then shrinks by $\rho(\alpha) = \max_\mu |1 + \alpha\mu|$ per step, and
#   *predicted iterations* is the number of steps that shrink it by $10^{-6}$.
# * **Thm 5.14** (`tolerance`): by Lemma 2, $\nabla E^N = h\,\partial H/\partial u$,
#   so a stopping tolerance $\varepsilon$ on the gradient only guarantees
#   $\max_k|\partial H/\partial u_k| \le \varepsilon/h$ (first line), and
#   $\varepsilon h$ is the gradient tolerance that gives $\varepsilon$ on the
#   optimality condition (second line). Here $h = 1/50$.
# * **replay** (`replay`): `flow.descend` actually run from $U = 0$ with the chosen
#   step (`--step optimal`: $\alpha_{\mathrm{opt}}$) until
#   $\max_k|\partial H/\partial u_k| \le$ `--tol` $= 10^{-8}$; its linear rate,
#   fitted from the residuals, is compared with the predicted $\rho(\alpha)$.
# * **Lemma 2** (`equivalence_sweep`): at a smooth probe control, the gradient by
#   the hand-written costate recursion (eqs. (23), (25)) against autodiff, and
#   $\nabla E^N$ against $h\,\partial_u H(\lambda_k, x_k, u_k)$ (eq. (49)), for each
#   $N$ of `--equivalence-N`; "holds" means all agree to rounding ($10^{-11}$
#   relative).
#
# The verdict says all of it in one sentence.

# %% [markdown]
# ## 3. The same run from Python
#
# `gradflow.run_analysis` is what the command line calls; it takes the problem
# object and the same settings as keywords, and returns the
# [`StabilityReport`][stability.StabilityReport] (`run.report`), the results
# document (`run.document`, written as `results.json`) and the paths it wrote.
# `figures=False` skips drawing the figures (the command line's are used below).

# %%
run = gradflow.run_analysis(
    problems.load("scalar_regularized"),
    N=50,
    equivalence_N=[50],
    out="python-out",
    figures=False,
)
print(run)
print(run.report.summary())
print("wrote", ", ".join(str(p) for p in run.files))

# %% [markdown]
# Both routes run the same code on the same input, so their numbers agree to the
# last bits; only the wall-clock `timings` and the list of `figures` differ.

# %%
with open("out/results.json", encoding="utf-8") as f:
    doc = json.load(f)
py = run.document
assert doc["status"] == py["status"] == "converged" and doc["success"]
assert doc["equivalence_holds"] is True
for section, key in [
    ("equilibrium", "cost"),
    ("euler", "alpha_max"),
    ("euler", "alpha_opt"),
    ("euler", "rate_at_step"),
    ("spectrum", "stiff"),
    ("spectrum", "slow"),
    ("tolerance", "tol_over_h"),
    ("replay", "observed_rate"),
]:
    np.testing.assert_allclose(doc[section][key], py[section][key], rtol=1e-12)
np.testing.assert_allclose(doc["spectrum"]["eigenvalues"], py["spectrum"]["eigenvalues"], 1e-12)
assert doc["replay"]["num_steps"] == py["replay"]["num_steps"]
assert doc["classification"]["kind"] == py["classification"]["kind"]
print("command line and Python agree:", doc["headline"] == py["headline"])
assert doc["headline"] == py["headline"]

# %% [markdown]
# ## 4. `results.json`
#
# The document is strict JSON (a missing or non-finite number is `null`) with a
# versioned JSON Schema shipped in the package; `gradflow.validate_results` checks a
# document against it and returns the list of violations (empty here), and
# `gradflow.load_results(path)` reads one back, validated. Its top-level keys:

# %%
errors = gradflow.validate_results(doc)
print("schema violations:", errors)
assert errors == []
print(", ".join(doc))

# %% [markdown]
# Every number in it can be checked by hand. The cell below recomputes the summary's
# claims from the document with numpy alone:
#
# * the eigenvalues of $J = -M^{-1}\nabla^2 E^N(U^\star)$: with $M = h I$ they are
#   $-1/h$ times those of the Hessian, which `Shooting.hessian` gives densely (by
#   `jax.hessian`, a route independent of the analysis' Hessian-vector products);
# * $\alpha_{\max}$, $\alpha_{\mathrm{opt}}$ and $\rho(\alpha)$ from their formulas;
# * the Theorem 5.14 pair $\varepsilon/h$ and $\varepsilon h$;
# * the replay's step count: from $r_0 = \max_k|\partial H/\partial u_k|$ at $U = 0$,
#   a contraction by $\rho$ per step needs $\log(\varepsilon/r_0)/\log\rho$ steps;
# * Pontryagin's condition at $U^\star$: here $H = \lambda(-x + u - 0.1x^3) +
#   \tfrac12 u^2$, so $\partial H/\partial u = \lambda + u = 0$, i.e. the optimal
#   control is minus the costate, $u^\star_k = -\lambda_k$, with the costates that
#   the direct method computed without ever naming them (`trajectory`).

# %%
h = 1.0 / doc["N"]
mu = np.asarray(doc["spectrum"]["eigenvalues"])  # real here: a list, ascending
sh = run.report.shooting
hess = np.asarray(sh.hessian(run.report.U).reshape(doc["N"], doc["N"]))
mu_dense = np.sort(-np.linalg.eigvalsh(hess) / h)
np.testing.assert_allclose(mu, mu_dense, rtol=0, atol=1e-12)  # |mu| <= 1.5: rounding

eu = doc["euler"]
alpha = eu["step"]
np.testing.assert_allclose(eu["alpha_max"], np.min(-2 * mu / mu**2), rtol=1e-14)
np.testing.assert_allclose(eu["alpha_opt"], 2 / (abs(mu[0]) + abs(mu[-1])), rtol=1e-14)
np.testing.assert_allclose(eu["rate_at_step"], np.max(np.abs(1 + alpha * mu)), rtol=1e-14)
assert alpha == eu["alpha_opt"] < eu["alpha_max"]

tol = doc["tolerance"]
np.testing.assert_allclose(tol["tol_over_h"], tol["tol"] / h, rtol=1e-12)
np.testing.assert_allclose(tol["tol_times_h"], tol["tol"] * h, rtol=1e-12)

rp = doc["replay"]
r = np.asarray(rp["hamiltonian_norm"])
predicted_steps = math.log(tol["tol"] / r[0]) / math.log(eu["rate_at_step"])
print(
    f"replay: r0 = {r[0]:.3g}, predicted {predicted_steps:.1f} steps to tol, "
    f"took {rp['num_steps']}; rate predicted {rp['predicted_rate']:.4f}, "
    f"observed {rp['observed_rate']:.4f}"
)
assert rp["status"] == "converged" and rp["agrees"] is True
assert r[-1] <= tol["tol"] < r[-2]
assert abs(rp["num_steps"] - predicted_steps) <= 1

traj = doc["trajectory"]
u_star = np.asarray(traj["controls"])[:, 0]
lam = np.asarray(traj["costates"])[:, 0]
pontryagin = np.max(np.abs(u_star + lam))
print(f"max_k |u*_k + lambda_k| = {pontryagin:.1e}  (dH/du = lambda + u = 0 at U*)")
assert pontryagin < 1e-12

eq = doc["equivalence_sweep"][0]
print(
    f"Lemma 2 at N = {eq['N']}: costate vs autodiff {eq['costate_vs_autodiff']:.1e}, "
    f"h dH/du vs autodiff {eq['lemma2']:.1e}, finite differences {eq['fd_vs_autodiff']:.1e}"
)
assert eq["costate_vs_autodiff"] < 1e-13 and eq["lemma2"] < 1e-13
assert eq["fd_vs_autodiff"] < 1e-8  # central differences: truncation, not an identity

# %% [markdown]
# ## 5. The figures
#
# The run wrote three figures, each as PNG and PDF, drawn from the document itself
# (so they show exactly the numbers in `results.json`). On the left, the spectrum:
# the points $\alpha\mu$ at the chosen step lie inside forward Euler's stability
# disk $|1 + z| < 1$, and the hollow grey circles, the same eigenvalues scaled by
# $\alpha_{\max}$, touch its left edge at $-2$ (the stiff eigenvalue sets the bound).
# On the right, the replay: its residual falls on the dashed line
# $r_0\,\rho(\alpha)^i$ predicted from the spectrum alone.
# `figures.report.draw(gradflow.load_results("out/results.json"), "redrawn")` draws
# them again from a saved document.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
for ax, name in zip(axes, ("spectrum", "replay"), strict=True):
    ax.imshow(matplotlib.image.imread(f"out/{name}.png"))
    ax.set_axis_off()
fig.tight_layout()
print([f["png"] for f in doc["figures"]])
assert [f["name"] for f in doc["figures"]] == ["spectrum", "replay", "equilibrium"]

# %% [markdown]
# ## 6. `report.md`
#
# The report is plain Markdown (GitHub, MkDocs or any viewer renders it): the
# verdict, what was analysed, then one section per stage with its table and
# figure. Its outline, and its gradient-equivalence table:

# %%
report = pathlib.Path("out/report.md").read_text(encoding="utf-8")
lines = report.splitlines()
print("\n".join(line for line in lines if line.startswith("#")))
table = lines.index("## Gradient equivalence (Lemma 2)")
print("\n".join(line for line in lines[table + 1 : table + 7] if line))
assert "**Verdict.**" in report and "](spectrum.png)" in report

# %% [markdown]
# The columns of the equivalence table are inf-norm differences relative to
# $\max|\nabla E^N|$: the costate recursion and Lemma 2 agree with autodiff to
# rounding (about $10^{-16}$), and finite differences to their truncation error
# (about $10^{-10}$). The same run at several $N$ (the default
# `--equivalence-N 50 200 1000`) shows $\max|\nabla E^N|$ shrinking like $h$ while
# $\max|\partial H/\partial u|$ stays put: the reason for Theorem 5.14.
#
# Next: [Lemma 2 and the hidden costates](lemma2.md) looks at the costates
# themselves, [The optimizer is an ODE](gradient_flow.md) at the flow and its
# metrics, and [Your own problem](own_problem.md) analyses a problem you define.
# The command's options and the document's keys are in
# [The gradflow command and its report](../report.md).
