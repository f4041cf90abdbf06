# %% [markdown]
# # Sweeps: a study over problems, N, metrics and steps
#
# The paper's claims come from grids of runs. Section 6.2 counts iterations against
# $N$ under several metrics. Section 5.1's bound $\alpha_{\max}$ is checked by running
# descent at steps on either side of it, at every $N$. A **study** declares such a grid:
# problems $\times$ $N$ $\times$ schemes $\times$ metrics, each *configuration* with its
# steps and starts. [`gradflow.sweep`][gradflow.sweep] runs it, in this process, in
# local worker processes or on a Dask cluster. It returns one tidy table with a row per
# (configuration, step, start), and `figures.sweeps` draws that table's standard views.
#
# This page runs one small study (6 configurations, 48 descents), reads the stability
# boundary off its table, resumes it from disk, runs part of it on a Dask cluster, and
# shows how to point the same study at a Slurm cluster.

# %%
import dataclasses
import json
import pathlib
import shutil
import tempfile
import time

import matplotlib.pyplot as plt
import pandas as pd

import gradflow
from figures import sweeps


pd.set_option("display.width", 110)
workdir = pathlib.Path(tempfile.mkdtemp(prefix="gradflow-sweeps-"))

# %% [markdown]
# ## 1. A study, in Python and in TOML
#
# `scalar_regularized` on $N = 4, 8, 16$ intervals, with the identity metric (plain
# gradient descent on $E^N$) and the Hamiltonian metric $M = \mathrm{diag}(h)$.
# Each configuration gets 8 steps from $0.5$ to $1.5$ times its own forward-Euler bound
# $\alpha_{\max}$ (`relative_to = "alpha_max"`). One step grid then crosses the
# stability boundary at every $N$ and metric, although $\alpha_{\max}$ itself grows
# like $N$ under the identity metric. `compute` names the outcomes recorded beside
# each descent (`gradflow.OUTCOMES`).

# %%
study = gradflow.Study(
    problems=["scalar_regularized"],
    N=[4, 8, 16],
    metrics=["identity", "hamiltonian"],
    steps={"start": 0.5, "stop": 1.5, "num": 8, "relative_to": "alpha_max"},
    max_steps=2000,
    compute=["descent", "euler_bound"],
)
print(len(list(study.configurations())), "configurations:")
for config in study.configurations():
    print(" ", config)
print("step multiples:", [round(m, 3) for m in study.steps.multipliers()])
print("outcomes available:", list(gradflow.OUTCOMES))

# %% [markdown]
# The same study as a TOML file, with the fields of `Study` as its keys, reads back
# equal. The command line `gradflow sweep study.toml` runs a file like this.

# %%
toml = """\
problems = ["scalar_regularized"]
N = [4, 8, 16]
metrics = ["identity", "hamiltonian"]
max_steps = 2000
compute = ["descent", "euler_bound"]

[steps]
start = 0.5
stop = 1.5
num = 8
relative_to = "alpha_max"
"""
path = workdir / "study.toml"
path.write_text(toml)
assert gradflow.Study.from_toml(path) == study
print(f"{path.name}: the same study")

# %% [markdown]
# ## 2. Running it, and reading the table
#
# `gradflow.sweep(study)` runs the configurations in local worker processes, one
# per core by default (`workers=None`). Each worker gets its share of the cores for
# XLA and BLAS. Within a configuration, all steps and starts run in one compiled,
# vmapped call. This page passes `workers=1`, which runs everything in this process:
# six small configurations are not worth starting processes for, and the docs build
# stays short. With `out=`, every finished configuration is stored at once
# (section 3).

# %%
out = workdir / "sweep-out"
t0 = time.perf_counter()
table = gradflow.sweep(study, workers=1, out=out)
print(f"{len(table)} rows in {time.perf_counter() - t0:.1f} s")
print(table.status.value_counts().to_string())
columns = ["N", "metric", "step", "step_multiplier", "status", "iterations", "alpha_max"]
print(table[columns].head(8).to_string())

# %% [markdown]
# The rows of a failed run say why in `reason` (the iteration where it diverged, the
# cycle it settled on, or the residual left after `max_steps`).
#
# Reading the stability boundary is a `groupby`. For each metric and $N$: the
# largest step that converged, and the smallest that did not, against $\alpha_{\max}$.

# %%
ok = table.status == "converged"
by = ["metric", "N"]
boundary = pd.DataFrame(
    {
        "alpha_max": table.groupby(by).alpha_max.first(),
        "largest converged": table[ok].groupby(by).step.max(),
        "smallest failed": table[~ok].groupby(by).step.min(),
    }
)
boundary["bracketed"] = (boundary["largest converged"] < boundary.alpha_max) & (
    boundary.alpha_max < boundary["smallest failed"]
)
print(boundary.to_string(float_format="{:.4g}".format))
assert boundary.bracketed.all()

# %% [markdown]
# At every $N$ and under both metrics, the boundary lies between two neighbouring
# steps of the grid, and $\alpha_{\max}$ lies in the same gap. $\alpha_{\max}$ doubles
# with $N$ under the identity metric and converges under the Hamiltonian metric.
#
# `figures.sweeps.plot_stability_boundary` draws the $(N, \alpha)$ plane of one
# metric. Each (N, step) cell is coloured by its status (the worst over the starts,
# or with `aggregate="fraction"` the fraction that converged), under the
# $\alpha_{\max}$ of the table. With `relative=False` the steps are absolute and
# $\alpha_{\max}$ is a curve; the default for a study with relative steps is
# $\alpha/\alpha_{\max}$, where the bound is the line at 1.

# %%
sweeps.plot_stability_boundary(table, metric="identity", relative=False)
plt.show()
sweeps.plot_stability_boundary(table, metric="hamiltonian")
plt.show()

# %% [markdown]
# The steps just above $\alpha_{\max}$ end `oscillating` rather than diverging: past
# the flip at $\alpha_{\max}$ the iterates settle on a 2-cycle
# ([Past the step bound](beyond_equilibrium.md)). The figure counts them with the
# runs that did not reach the tolerance.
#
# `figures.sweeps.plot_metric_against_N` draws one column against $N$, one line per
# metric. By default it keeps only the converged rows. A per-configuration column such
# as `alpha_max` keeps every row (`status=None`), and the legend gives the fitted
# exponent of $N$. For the iterations, the rows are selected at one multiple of
# $\alpha_{\max}$.

# %%
sweeps.plot_metric_against_N(table, "alpha_max", status=None)
plt.show()
sweeps.plot_metric_against_N(table, "iterations", step_multiplier=0.5)
plt.show()

# %% [markdown]
# At the same multiple of its own $\alpha_{\max}$, descent needs the same number of
# iterations under both metrics: the two lines coincide. On a uniform grid the
# Hamiltonian metric is $M = hI$, so its descent with step $\alpha$ is the identity
# metric's with step $\alpha/h$, and its $\alpha_{\max}$ is $h$ times the identity
# metric's. The metrics differ in the step they need: a fixed step is an ever smaller
# fraction of the identity metric's $\alpha_{\max} \propto N$, and the iterations
# grow like $N$ (section 6.2, and the [step sizes](step_sizes.md) page).

# %% [markdown]
# ## 3. Resuming: what is stored is not computed again
#
# With `out=DIR`, each configuration is written to `DIR/parts/<key>.json` as soon as
# it finishes. The key is a hash of the configuration, the study's settings and the
# package version. At the end the table is written as `sweep.parquet` and
# `sweep.csv`, next to `study.json` (the study, versions, machine and timings). A
# rerun computes only the configurations without a part. After an interruption
# (a killed job, a lost node), the same call picks up where it stopped.

# %%
t0 = time.perf_counter()
again = gradflow.sweep(study, workers=1, out=out)
print(f"rerun: {time.perf_counter() - t0:.2f} s")
pd.testing.assert_frame_equal(again, table)
pd.testing.assert_frame_equal(pd.read_parquet(out / "sweep.parquet"), table)
meta = json.loads((out / "study.json").read_text())
print(f"computed {meta['computed']} of {meta['configurations']} configurations")
print(sorted(p.name for p in out.iterdir()), len(list((out / "parts").glob("*.json"))), "parts")

# %% [markdown]
# A larger study with the same settings shares the stored parts: adding $N = 32$
# computes only the two new configurations.

# %%
larger = dataclasses.replace(study, N=[4, 8, 16, 32])
t0 = time.perf_counter()
table32 = gradflow.sweep(larger, workers=1, out=out)
meta = json.loads((out / "study.json").read_text())
print(
    f"computed {meta['computed']} of {meta['configurations']} configurations "
    f"in {time.perf_counter() - t0:.1f} s"
)
print(table32.groupby(by).alpha_max.first().unstack("metric").to_string())

# %% [markdown]
# ## 4. On a Dask cluster
#
# `client=` hands the configurations to a `dask.distributed.Client`. Each one is one
# task that returns plain rows, and the table is the same wherever they ran. The
# workers need this package installed; install the extra with
# `pip install 'gradient-flow-analyzer[dask]'`. Here a `LocalCluster` runs two
# configurations. Its workers are threads of this process (`processes=False`), which
# keeps the page fast and lets it run as a plain script.
#
# With worker *processes* (the default of `LocalCluster`, and what every real cluster
# has), a script must start the cluster under `if __name__ == "__main__":`.
# Python's `spawn` start method imports the main script again in every worker.

# %%
from dask.distributed import Client, LocalCluster  # noqa: E402


small = dataclasses.replace(study, N=[8], metrics=["identity", "hamiltonian"])
with (
    LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster,
    Client(cluster) as client,
):
    print(len(client.scheduler_info()["workers"]), "Dask workers")
    remote = gradflow.sweep(small, client=client)
# the cluster and the client are closed here
local_rows = table[table.N == 8].reset_index(drop=True)
pd.testing.assert_frame_equal(remote, local_rows)
print(f"{len(remote)} rows, equal to the local table's rows at N = 8")

# %% [markdown]
# ## 5. On a Slurm cluster
#
# [dask-jobqueue](https://jobqueue.dask.org) starts Dask workers as Slurm jobs.
# Install it next to this package, on the login node and on the compute nodes.
# Every job runs `processes` workers; give each worker one thread (`cores` equal to
# `processes`). Each configuration is one single-threaded task, so the parallelism
# comes from the number of workers. Several threads per worker only compete for
# the cores. Pin the thread pools of XLA and BLAS to one thread in the job's
# environment as well. On `sweep`'s own local workers this is done for you; on a
# cluster it is the job script's task.
#
# Most of a configuration's first run is XLA compilation. Turn the persistent
# compilation cache on, in a directory on a **shared filesystem**: a kernel compiled
# by one worker is then loaded by the others, and by later runs. `sweep` passes the
# directory that `gradflow.enable_cache` turned on in the client process on to the
# Dask workers. The `GRADFLOW_CACHE_DIR` variable sets it for processes that call
# `enable_cache()` themselves, such as the `gradflow` command. The example below is
# shown, not run: it needs a Slurm cluster.
#
# ```py
# from dask.distributed import Client
# from dask_jobqueue import SLURMCluster
#
# import gradflow
#
# CACHE = "/shared/project/gradflow-jax-cache"  # a shared filesystem
#
# cluster = SLURMCluster(
#     cores=16,  # per job: 16 workers of one thread each
#     processes=16,
#     memory="64GB",
#     walltime="02:00:00",
#     job_extra_directives=["--partition=compute", "--account=my_project"],
#     job_script_prologue=[
#         "export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1",
#         'export XLA_FLAGS="--xla_cpu_multi_thread_eigen=false '
#         'intra_op_parallelism_threads=1"',
#         f"export GRADFLOW_CACHE_DIR={CACHE}",
#     ],
# )
# cluster.scale(jobs=10)  # 10 Slurm jobs, 160 workers
# client = Client(cluster)
#
# gradflow.enable_cache(CACHE)  # the workers compile into and load from it
# study = gradflow.Study.from_toml("study.toml")
# table = gradflow.sweep(study, client=client, out="study-out")
# ```
#
# Keep `out=` on the shared filesystem too. If the client process or the allocation
# ends early, the same call resumes.
#
# The command line does the same against a scheduler that is already running. Start
# one with `dask scheduler` on a node, and workers with
# `dask worker tcp://scheduler-node:8786 --nworkers 16 --nthreads 1` inside your
# job scripts (with the environment above). Then:
#
# ```bash
# export GRADFLOW_CACHE_DIR=/shared/project/gradflow-jax-cache
# gradflow sweep study.toml --scheduler tcp://scheduler-node:8786 --out study-out
# ```
#
# It shows a progress bar over the configurations with the time left, writes the
# table to `study-out/`, and ends with a summary of the failures by reason. Its
# default without `--scheduler` is local processes, one per core (`--workers K`
# to change it).

# %%
shutil.rmtree(workdir)  # this page's files
