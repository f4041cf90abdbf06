"""Studies and sweeps: the declaration (Python and TOML), one configuration's steps
and starts in one compiled call, local processes and a Dask cluster giving the same
table, the stability boundary against stability.euler_bound, failures as rows, and
an interrupted study resumed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
from _compiles import counted
from jax.experimental.compilation_cache import compilation_cache

import flow
import gradflow
import stability
from gradflow import _configuration


def _boundary_study(**kw):
    fields = dict(
        problems=["scalar_regularized"],
        N=[4, 6, 8, 10, 12, 16],
        metrics=["identity", "hamiltonian", "newton"],
        steps={"start": 0.5, "stop": 1.5, "num": 32},
        max_steps=2000,
        tol=1e-8,
        compute=["descent", "euler_bound"],
    )
    fields.update(kw)
    return gradflow.Study(**fields)


# ----------------------------------------------------------------- the declaration


def test_study_from_toml_equals_the_python_study(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(
        'problems = ["scalar_regularized", "van_der_pol"]\nN = [10, 20]\n'
        'metrics = ["identity", "hamiltonian"]\ntol = 1e-7\nmax_steps = 300\n'
        'compute = ["euler_bound", "spectrum"]\nstarts = 3\nspread = 0.5\n\n'
        '[steps]\nstart = 0.5\nstop = 1.5\nnum = 5\nrelative_to = "alpha_max"\n'
    )
    study = gradflow.Study.from_toml(path)
    assert study == gradflow.Study(
        problems=("scalar_regularized", "van_der_pol"), N=(10, 20),
        metrics=("identity", "hamiltonian"), tol=1e-7, max_steps=300,
        compute=("descent", "euler_bound", "spectrum"), starts=3, spread=0.5,
        steps=gradflow.StepGrid(start=0.5, stop=1.5, num=5, relative_to="alpha_max"),
    )  # fmt: skip
    assert study.steps.multipliers() == (0.5, 0.75, 1.0, 1.25, 1.5)
    assert gradflow.Study.from_dict(study.to_dict()) == study
    assert len(list(study.configurations())) == 8
    assert study.needs_equilibrium


@pytest.mark.parametrize(
    "change, error, match",
    [
        ({"N": [10, 0]}, ValueError, "`N` must be a non-empty list of integers >= 1"),
        ({"metrics": []}, ValueError, "`metrics` must be a non-empty list"),
        ({"schemes": ["euler", "rk5"]}, ValueError, r"`schemes`: unknown \['rk5'\]"),
        ({"compute": ["descent", "nope"]}, ValueError, r"`compute`: unknown \['nope'\]"),
        ({"steps": {"start": 1.0, "stop": 0.5, "num": 3}}, ValueError, "`steps.stop` must be"),
        ({"steps": [0.1, -1.0]}, ValueError, "`steps` must hold finite positive"),
        ({"steps": {"start": 1, "stop": 2, "num": 3, "relative_to": "x"}}, ValueError,
         "`steps.relative_to`"),
        ({"tol": 0.0}, ValueError, "`tol` must hold finite positive"),
        ({"starts": 0}, ValueError, "`starts` must be an integer >= 1"),
        ({"spread": -1.0}, ValueError, "`spread` must be finite and >= 0"),
    ],
)  # fmt: skip
def test_bad_study_fields_are_named(change, error, match):
    fields = dict(problems=["scalar_regularized"], N=[10], steps=[0.1])
    fields.update(change)
    with pytest.raises(error, match=match):
        gradflow.Study(**fields)


def test_bad_toml_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('problems = ["scalar_regularized"]\nN = [10]\nsteps = [0.1]\nsteps_typo = 1\n')
    with pytest.raises(ValueError, match=r"s\.toml: unknown keys \['steps_typo'\]"):
        gradflow.Study.from_toml(path)
    path.write_text("problems = [\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        gradflow.Study.from_toml(path)


# ------------------------------------------------------------ one configuration


def test_steps_and_starts_run_in_one_compiled_call():
    """The (step, start) grid of a configuration is one vmapped descent: a second
    configuration of the same shapes with other steps and starts compiles nothing,
    and each of its rows equals a separate `flow.descend` call."""
    config = gradflow._study.Configuration("scalar_regularized", 20, "euler", "hamiltonian")
    first = gradflow.Study(problems=["scalar_regularized"], N=[20], steps=[0.5, 1.0, 3.0],
                           starts=2, spread=0.3, compute=["descent"])  # fmt: skip
    second = gradflow.Study(problems=["scalar_regularized"], N=[20], steps=[0.7, 2.0, 30.0],
                            starts=2, spread=0.1, seed=5, compute=["descent"])  # fmt: skip
    _configuration.compute(first, config)
    with counted() as compiled:
        rows = _configuration.compute(second, config)
    assert compiled == []
    sh = flow.shoot(flow.problems.get("scalar_regularized"), 20)
    U0s = _configuration.starts(second, sh.control_shape)
    for row in rows:
        tr = flow.descend(
            sh, U0s[row["start"]], step=row["step"], max_steps=5000, tol=1e-8, throw=False
        )
        assert row["status"] == tr.status and row["iterations"] == int(tr.num_steps)
        if row["status"] == "converged":  # (a diverging run amplifies rounding)
            final = float(tr.cost[int(tr.num_steps)])
            assert row["cost"] == pytest.approx(final, rel=1e-12)
            assert row["hamiltonian_residual"] <= 1e-8
    assert {r["status"] for r in rows} == {"converged", "diverged"}


# 10 s (two schemes compiled); the default run sweeps Euler configurations in
# test_steps_and_starts_run_in_one_compiled_call and test_failures_are_rows_with_their_reason
@pytest.mark.slow
def test_a_runge_kutta_scheme_has_its_own_boundary():
    """The scheme is part of the configuration: with Heun's and RK4's shooting the
    boundary a sweep finds is alpha_max of that scheme's E^N (an independent
    `stability.euler_bound` on `flow.shoot(..., scheme)`), not Euler's."""
    study = gradflow.Study(problems=["scalar_regularized"], N=[8], schemes=["heun", "rk4"],
                           metrics=["identity"], max_steps=3000, tol=1e-8,
                           steps={"start": 0.8, "stop": 1.2, "num": 8, "relative_to": "alpha_max"},
                           compute=["descent", "euler_bound"])  # fmt: skip
    table = gradflow.sweep(study, workers=1)
    assert set(table["scheme"]) == {"heun", "rk4"} and len(table) == 16
    bounds = {}
    for scheme, group in table.groupby("scheme"):
        sh = flow.shoot(flow.problems.get("scalar_regularized"), 8, flow.scheme_from_name(scheme))
        eq = stability.equilibrium(sh)
        linear = stability.linearize(sh, eq, metric="identity")
        bound = stability.euler_bound(stability.spectrum(linear))
        bounds[scheme] = bound.alpha_max
        assert group["alpha_max"].iloc[0] == pytest.approx(bound.alpha_max, rel=1e-9)
        below = group["step"] < bound.alpha_max
        assert (group.loc[below, "status"] == "converged").all(), scheme
        assert (group.loc[~below, "status"] != "converged").all(), scheme
    euler = flow.shoot(flow.problems.get("scalar_regularized"), 8)
    eq = stability.equilibrium(euler)
    linear = stability.linearize(euler, eq, metric="identity")
    euler_max = stability.euler_bound(stability.spectrum(linear)).alpha_max
    assert abs(bounds["rk4"] / euler_max - 1) > 1e-4  # the scheme changed the boundary


def test_failures_are_rows_with_their_reason():
    """A problem that cannot be loaded is one `error` row with the exception; a
    diverging step is a row with the iteration where it diverged."""
    study = gradflow.Study(problems=["scalar_regularized", "no_such_problem"], N=[10],
                           steps=[1.0, 100.0], compute=["descent"])  # fmt: skip
    table = gradflow.sweep(study, workers=1)
    assert list(table["problem"]) == ["scalar_regularized"] * 2 + ["no_such_problem"]
    error = table.iloc[2]
    assert error["status"] == "error"
    assert error["reason"].startswith("ProblemLoadError: unknown problem 'no_such_problem'")
    diverged = table.iloc[1]
    assert diverged["status"] == "diverged" and diverged["step"] == 100.0
    assert diverged["reason"] == f"diverged at iteration {diverged['iterations']}"
    assert table.iloc[0]["status"] == "converged" and table.iloc[0]["reason"] == ""


# ------------------------------------------- the boundary, locally and on Dask


def _local_and_dask(study, tmp_path):
    """The study's table from two local processes and from a two-process
    dask.distributed.LocalCluster, sharing one compilation cache."""
    distributed = pytest.importorskip("distributed")
    directory = jax.config.jax_compilation_cache_dir
    min_time = jax.config.jax_persistent_cache_min_compile_time_secs
    gradflow.enable_cache(tmp_path / "kernels")  # shared by every worker
    try:
        local = gradflow.sweep(study, workers=2, out=tmp_path / "local")
        with distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster, distributed.Client(cluster) as client:  # fmt: skip
            remote = gradflow.sweep(study, client=client)
    finally:  # this process's JAX settings as they were
        jax.config.update("jax_persistent_cache_min_compile_time_secs", min_time)
        compilation_cache.set_cache_dir(directory)
        compilation_cache.reset_cache()
        gradflow._cache.active = None
    pd.testing.assert_frame_equal(local, remote)
    return local


def _small_study():
    steps = {"start": 0.6, "stop": 1.4, "num": 8, "relative_to": "alpha_max"}
    return _boundary_study(N=[4, 8], metrics=["hamiltonian"], steps=steps)


def test_local_processes_give_the_table_of_this_process(tmp_path):
    """A small study (2 sizes x 8 steps across alpha_max) gives the same table in two
    spawned local processes (the default execution) as in this one; the boundary is
    at alpha_max."""
    study = _small_study()
    table = gradflow.sweep(study, workers=2, out=tmp_path)
    pd.testing.assert_frame_equal(table, gradflow.sweep(study, workers=1))
    executed = json.loads((tmp_path / "study.json").read_text())["executed"]
    assert executed.startswith("2 local processes (")
    assert len(table) == 16
    converged = table["status"] == "converged"
    assert (converged == (table["step_multiplier"] < 1)).all()


@pytest.mark.slow  # a Dask cluster of two processes (17 s)
def test_local_processes_and_a_dask_cluster_agree(tmp_path):
    """The small study gives the same table in two local processes and on a Dask
    LocalCluster."""
    table = _local_and_dask(_small_study(), tmp_path)
    assert len(table) == 16


@pytest.mark.slow  # 18 configurations compiled in fresh processes, twice (about 60 s)
def test_local_processes_and_a_dask_cluster_agree_and_find_the_euler_bound(tmp_path):
    """3 metrics x 6 values of N x 32 steps across [0.5, 1.5] alpha_max (absolute steps
    from an independent stability.euler_bound per configuration): run in two local
    processes and on a dask.distributed.LocalCluster, the tables are identical, and
    at every (metric, N) every step below alpha_max converges and every step above
    it does not: the boundary is alpha_max to the grid's resolution."""
    steps = {"start": 0.5, "stop": 1.5, "num": 32, "relative_to": "alpha_max"}
    study = _boundary_study(steps=steps)
    local = _local_and_dask(study, tmp_path)
    assert len(local) == 3 * 6 * 32 and set(local["status"]) <= {
        "converged", "diverged", "max_steps", "oscillating"
    }  # fmt: skip
    for (metric, N), group in local.groupby(["metric", "N"]):
        sh = flow.shoot(flow.problems.get("scalar_regularized"), int(N))
        eq = stability.equilibrium(sh)
        linear = stability.linearize(sh, eq, metric=metric)
        bound = stability.euler_bound(stability.spectrum(linear))
        assert group["alpha_max"].iloc[0] == pytest.approx(bound.alpha_max, rel=1e-9)
        below = group["step"] < bound.alpha_max
        assert (group.loc[below, "status"] == "converged").all(), (metric, N)
        assert (group.loc[~below, "status"] != "converged").all(), (metric, N)
    saved = pd.read_parquet(tmp_path / "local" / "sweep.parquet")
    pd.testing.assert_frame_equal(saved, local)
    meta = json.loads((tmp_path / "local" / "study.json").read_text())
    assert meta["study"] == study.to_dict() and meta["computed"] == 18
    assert meta["executed"].startswith("2 local processes")


# ------------------------------------------------------------ interrupted studies


def test_an_interrupted_study_computes_only_what_is_missing(tmp_path):
    """`gradflow sweep` killed after some configurations were stored; the rerun
    computes only the others and ends with the table of an uninterrupted run."""
    study = _boundary_study(N=[4, 6, 8, 10, 12, 16, 20, 24], metrics=["hamiltonian"],
                            steps=[0.5, 5.0, 50.0])  # fmt: skip
    toml = tmp_path / "study.toml"
    toml.write_text(
        'problems = ["scalar_regularized"]\nN = [4, 6, 8, 10, 12, 16, 20, 24]\n'
        'metrics = ["hamiltonian"]\nsteps = [0.5, 5.0, 50.0]\nmax_steps = 2000\n'
        'tol = 1e-8\ncompute = ["descent", "euler_bound"]\n'
    )
    assert gradflow.Study.from_toml(toml) == study
    out = tmp_path / "out"
    exe = Path(sys.executable).with_name("gradflow")
    log = tmp_path / "stderr.txt"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [str(exe), "sweep", str(toml), "--out", str(out), "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
        parts = out / "parts"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if parts.is_dir() and len(list(parts.glob("*.json"))) >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, log.read_text()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    stored = len(list(parts.glob("*.json")))
    assert 3 <= stored < 8
    assert not list(parts.glob("*.tmp"))  # parts are written whole
    computed = []

    def progress(i, n, config, output):
        computed.append(config.N)

    resumed = gradflow.sweep(study, out=out, workers=1, progress=progress)
    assert len(computed) == 8  # every configuration reported, stored ones first
    meta = json.loads((out / "study.json").read_text())
    assert meta["computed"] == 8 - stored
    fresh = gradflow.sweep(study, workers=1)
    pd.testing.assert_frame_equal(resumed, fresh)
    np.testing.assert_array_equal(resumed["N"], np.repeat([4, 6, 8, 10, 12, 16, 20, 24], 3))


@pytest.mark.slow  # a scheduler and a worker process, and the command's own process
def test_the_command_line_on_a_dask_scheduler(tmp_path):
    """`gradflow sweep STUDY.toml --scheduler ADDRESS` runs the study on the cluster
    behind the address, prints the summary of failures by reason, and writes the
    table of an in-process run."""
    distributed = pytest.importorskip("distributed")
    toml = tmp_path / "small.toml"
    toml.write_text(
        'problems = ["scalar_regularized"]\nN = [4, 8]\nmetrics = ["hamiltonian"]\n'
        'max_steps = 2000\ntol = 1e-8\ncompute = ["descent", "euler_bound"]\n\n'
        '[steps]\nstart = 0.6\nstop = 1.4\nnum = 8\nrelative_to = "alpha_max"\n'
    )
    assert gradflow.Study.from_toml(toml) == _small_study()
    exe = Path(sys.executable).with_name("gradflow")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:  # fmt: skip
        done = subprocess.run(
            [str(exe), "sweep", str(toml), "--scheduler", cluster.scheduler_address,
             "--out", str(tmp_path / "out")],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "2 configurations, 16 rows" in done.stdout
    assert "failures by reason:" in done.stdout and "diverged at iteration #" in done.stdout
    meta = json.loads((tmp_path / "out" / "study.json").read_text())
    assert meta["executed"] == f"Dask scheduler {cluster.scheduler_address}"
    table = pd.read_parquet(tmp_path / "out" / "sweep.parquet")
    pd.testing.assert_frame_equal(table, gradflow.sweep(_small_study(), workers=1))
