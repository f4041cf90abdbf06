"""The `gradflow` command line (in process, plus real subprocesses)."""

import json
import pathlib
import subprocess
import sys
import types

import numpy as np
import pytest

import figures
import flow
import gradflow
import stability
from gradflow._cli import main


ROOT = pathlib.Path(__file__).resolve().parent.parent
USER_FILE = pathlib.Path(__file__).resolve().parent / "fixtures_user_problem.py"
SMALL = ["--N", "50", "--equivalence-N", "50"]


def _one_line(err):
    lines = err.strip().splitlines()
    return len(lines) == 1 and "Traceback" not in err


def test_analyze_prints_summary_and_writes_outputs(tmp_path, capsys):
    argv = ["analyze", "--N", "50", "--equivalence-N", "25", "50", "--out", str(tmp_path)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "scalar_regularized" in out and "Verdict:" in out
    assert "asymptotically stable" in out and "alpha_max" in out and "holds" in out
    assert captured.err == ""  # no progress output when stderr is not a terminal
    for name in (
        "results.json",
        "report.md",
        "spectrum.png",
        "spectrum.pdf",
        "replay.png",
        "replay.pdf",
        "equilibrium.png",
        "equilibrium.pdf",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["headline"] in " ".join(out.split())  # the verdict sentence, unwrapped
    assert [c["N"] for c in doc["equivalence_sweep"]] == [25, 50]


# 9 s; analyze runs by default in test_analyze_prints_summary_and_writes_outputs
@pytest.mark.slow
def test_analyze_json_prints_the_document(tmp_path, capsys):
    argv = [
        "analyze",
        *SMALL,
        "--scheme",
        "heun",
        "--metric",
        "identity",
        "--step",
        "hamiltonian",
        "--tol",
        "1e-8",
        "--out",
        str(tmp_path),
        "--json",
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # stdout is pure JSON
    assert doc == json.loads((tmp_path / "results.json").read_text())
    assert gradflow.validate_results(doc) == []
    assert doc["scheme"] == "heun" and doc["metric"] == "identity"
    assert doc["step_rule"] == "hamiltonian"
    assert doc["step"] == pytest.approx(50.0, rel=1e-13)  # alpha h = 1 with h = 1/50
    assert doc["tolerance"]["tol"] == 1e-8 and doc["tolerance"]["stop_on"] == "hamiltonian"
    assert doc["equivalence"]["scheme"] == "heun"
    # the same settings through the Python API give the same numbers
    problem = flow.problems.get("scalar_regularized")
    report = stability.analyze(
        flow.shoot(problem, 50, flow.Heun()), metric="identity", step=50.0, tol=1e-8
    )
    assert doc["euler"]["alpha_max"] == pytest.approx(report.euler.alpha_max, rel=1e-12)
    assert doc["euler"]["rate_at_step"] == pytest.approx(report.predicted_rate, rel=1e-12)
    for key in ("tol", "min_step", "tol_over_h", "tol_times_h"):
        assert doc["tolerance"][key] == pytest.approx(report.tolerance[key], rel=1e-14)


def test_analyze_past_the_bound_reports_the_cycle_and_the_flip(tmp_path, capsys):
    """`gradflow analyze --step` past alpha_max: the replay's status is `oscillating`
    with its period, the flip's kind is in the summary, results.json (valid against
    the schema, as load_results checks) and report.md. (`flip=False` leaves it out:
    tests/test_flip.py, test_analyze_classifies_the_flip_when_the_replay_meets_the_bound.)"""
    argv = ["analyze", *SMALL, "--step", "1.5", "--out", str(tmp_path / "past")]
    assert main(argv) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "oscillating" in out and "supercritical" in out
    doc = gradflow.load_results(tmp_path / "past" / "results.json")
    assert doc["replay"]["status"] == "oscillating" and doc["replay"]["period"] == 2
    assert doc["flip"]["kind"] == "supercritical" and doc["settings"]["flip"] == "auto"
    assert "## Past the step bound: the flip" in (tmp_path / "past" / "report.md").read_text()


def test_problems_lists_builtins(capsys):
    assert main(["problems"]) == 0
    out = capsys.readouterr().out
    for name in flow.problems.BUILTIN:
        assert name in out
    assert "(default)" in out


def test_figures_command_runs_every_registered_figure(tmp_path, capsys, monkeypatch):
    calls = []

    def make(out, *, quick=False):
        calls.append(quick)
        path = pathlib.Path(out) / "fake.png"
        path.write_bytes(b"png")
        return [path]

    monkeypatch.setitem(sys.modules, "figures.fake", types.SimpleNamespace(make=make))
    monkeypatch.setattr(figures, "FIGURES", ("fake", "fake"))
    assert main(["figures", "--out", str(tmp_path / "figs"), "--quick"]) == 0
    assert calls == [True, True]
    assert "wrote 2 files for 2 figures" in capsys.readouterr().out
    monkeypatch.setattr(figures, "FIGURES", ())
    assert main(["figures", "--out", str(tmp_path / "none")]) == 0
    assert "no figures" in capsys.readouterr().out


def test_user_problem_file_end_to_end(tmp_path):
    """A user's file with a vector state (n = 2) and a running cost, analysed by the
    installed command in a fresh process."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gradflow._entry",
            "analyze",
            "--problem",
            f"{USER_FILE}:problem",
            "--N",
            "30",
            "--equivalence-N",
            "30",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "damped_oscillator" in proc.stdout and "Verdict:" in proc.stdout
    doc = gradflow.load_results(tmp_path / "results.json")
    p = doc["problem"]
    assert (p["name"], p["state_dim"], p["control_dim"], p["running_cost"], p["builtin"]) == (
        "damped_oscillator",
        2,
        1,
        True,
        False,
    )
    assert len(doc["trajectory"]["costates"][0]) == 2
    assert doc["equilibrium"]["success"] and doc["equivalence_holds"]
    assert (tmp_path / "report.md").is_file() and (tmp_path / "spectrum.png").is_file()


def test_load_problem_forms():
    made = flow.problems.load(f"{USER_FILE}:make")  # a factory with no arguments
    assert isinstance(made, flow.OptimalControlProblem) and made.name == "damped_oscillator"
    assert flow.problems.load("van_der_pol").name == "van_der_pol"
    assert flow.problems.load("flow.problems:scalar_mayer").name == "scalar_mayer"
    with pytest.raises(flow.problems.ProblemLoadError, match="unknown problem"):
        flow.problems.load("nope")
    with pytest.raises(TypeError, match="spec"):
        flow.problems.load(3)


def test_blow_up_problem_exits_2_naming_the_nonfinite_cost(capsys, tmp_path, monkeypatch):
    """x' = x^2 + u blows up before tf from U0 = 0: one line naming the non-finite cost
    at U0 and the first grid index whose state is not finite (the index is checked
    against a numpy Euler recursion, independent of the package)."""
    monkeypatch.chdir(tmp_path)
    N = 50
    h = 2.0 / N
    x = [np.float64(1.0)]
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(N):
            x.append(x[-1] + h * x[-1] ** 2)
    first = int(np.argmax(~np.isfinite(np.array(x))))
    assert 0 < first < N + 1
    assert main(["analyze", "--problem", f"{USER_FILE}:blow_up", "--N", str(N)]) == 2
    err = capsys.readouterr().err
    assert _one_line(err), err
    assert "E^N(U0)" in err and "not finite" in err and f"at k = {first} " in err
    assert not (tmp_path / "gradflow-out" / "results.json").exists()


def test_step_rules_and_start_on_the_command_line(tmp_path, capsys):
    base = ["analyze", *SMALL, "--out", str(tmp_path), "--json"]
    # Newton with a line search from a start where a full step is too long
    assert main([*base, "--metric", "newton", "--step", "armijo", "--U0", "1.5"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["step_rule"] == "armijo" and doc["replay"]["status"] == "converged"
    assert doc["settings"]["U0"] == "constant 1.5" and doc["step"] is None
    # a start from a file: the equilibrium found from it is the same minimiser
    U0 = np.full((50, 1), -0.3)
    np.save(tmp_path / "u0.npy", U0)
    assert main([*base, "--U0", str(tmp_path / "u0.npy")]) == 0
    doc2 = json.loads(capsys.readouterr().out)
    assert doc2["settings"]["U0"] == str(tmp_path / "u0.npy")
    assert doc2["equilibrium"]["cost"] == pytest.approx(doc["equilibrium"]["cost"], rel=1e-12)
    # the identity metric's remedy alpha = 1/h makes no sense for the Hamiltonian metric
    assert main([*base, "--metric", "hamiltonian", "--step", "hamiltonian"]) == 2
    err = capsys.readouterr().err
    assert "identity metric" in err and "alpha = 50" in err and _one_line(err)
    # a step outside the Euler bound is replayed, with a warning on stderr
    assert main([*base, "--step", "5"]) == 0
    captured = capsys.readouterr()
    assert "warning:" in captured.err and "outside the forward-Euler bound" in captured.err
    assert json.loads(captured.out)["warnings"]


@pytest.mark.parametrize(
    "argv, words",
    [
        (["analyze", "--problem", "nope"], "unknown problem 'nope'"),
        (["analyze", "--problem", "missing_file.py:obj"], "not found: missing_file.py"),
        (["analyze", "--problem", f"{USER_FILE}:nothing"], "no object named 'nothing'"),
        (["analyze", "--problem", "json:nothing_here"], "no object named 'nothing_here'"),
        (["analyze", "--problem", "no_such_module_xyz:obj"], "cannot import module"),
        (
            ["analyze", "--problem", f"{USER_FILE}:needs_arguments"],
            "takes required arguments (stiffness, damping)",
        ),
        (
            ["analyze", "--problem", f"{USER_FILE}:not_a_problem"],
            "is of type int, expected an OptimalControlProblem",
        ),
        (["analyze", "--problem", "json:dumps"], "takes required arguments (obj)"),
        (["analyze", "--problem", f"{USER_FILE}:broken"], "the factory is broken"),
        (
            ["analyze", "--problem", f"{USER_FILE}:python_branch", "--N", "10"],
            "TracerBoolConversionError",
        ),
        (["analyze", "--problem", ":x"], "expected path/to/file.py:object"),
        (["analyze", "--N", "0"], "argument --N: expected an integer N >= 1, got 0"),
        (["analyze", "--N", "ten"], "argument --N: expected an integer"),
        (["analyze", "--N", "-3"], "N >= 1"),
        (["analyze", "--equivalence-N", "10", "0"], "argument --equivalence-N"),
        (["analyze", "--scheme", "midpoint"], "argument --scheme: must be one of"),
        (["analyze", "--metric", "euclid"], "argument --metric: must be one of"),
        (["analyze", "--step", "fast"], "argument --step"),
        (["analyze", "--step", "-1"], "argument --step"),
        (["analyze", "--step", "0"], "argument --step"),
        (["analyze", "--step", "nan"], "argument --step"),
        (["analyze", "--tol", "0"], "argument --tol"),
        (["analyze", "--tol", "inf"], "argument --tol"),
        (["analyze", "--tol", "tiny"], "argument --tol"),
        (["analyze", "--max-steps", "0"], "argument --max-steps"),
        (["analyze", "--stop-on", "cost"], "argument --stop-on"),
        (["analyze", "--U0", "nope.npy"], "--U0 nope.npy: no such file"),
        (["analyze", "--U0", "nan"], "--U0 nan"),
        (["analyze", "--out", str(USER_FILE)], "is not a folder"),
        (["analyze", "--frobnicate"], "unrecognized arguments"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_input_exit_code_2_one_line(argv, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a run that gets as far as the output folder writes here
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert words in captured.err and captured.err.startswith("gradflow: error: ")
    assert _one_line(captured.err), captured.err
    assert captured.out == ""


def test_bad_input_in_a_subprocess():
    proc = subprocess.run(
        [sys.executable, "-m", "gradflow._cli", "analyze", "--problem", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert _one_line(proc.stderr) and "unknown problem 'nope'" in proc.stderr
    assert proc.stdout == ""


def test_console_script_by_name():
    """The installed `gradflow` entry point (next to the interpreter), not `python -m`:
    --help and a real command (`problems`), each in its own process (run together;
    `python -m gradflow._cli` covers the rest of the command line)."""
    script = pathlib.Path(sys.executable).parent / "gradflow"
    assert script.is_file(), f"{script} is missing: install the package (pip install -e .)"
    procs = {
        k: subprocess.Popen(
            [str(script), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for k, argv in {"help": ["--help"], "problems": ["problems"]}.items()
    }
    out = {k: (*p.communicate(timeout=120), p.returncode) for k, p in procs.items()}
    text, err, code = out["help"]
    assert code == 0 and err == ""
    usage = "usage: gradflow [-h] [--version] {analyze,problems,figures,sweep,continue}"
    assert text.startswith(usage)
    text, err, code = out["problems"]
    assert code == 0 and err == ""
    builtin, families = text.strip().split("\n\n")
    names = [line.split()[0] for line in builtin.splitlines()]
    assert names == list(flow.problems.BUILTIN)
    assert families.splitlines()[0].startswith("problem families")
    assert [line.split()[0] for line in families.splitlines()[1:]] == list(flow.problems.FAMILIES)
    (default,) = [line for line in text.splitlines() if line.endswith("(default)")]
    assert default.split()[0] == flow.problems.DEFAULT_PROBLEM
