"""The `gradflow` command line (in process, plus one real subprocess)."""

import json
import subprocess
import sys
import textwrap

import pytest

from stability._cli import main


def test_analyze_default_prints_equivalence_table(capsys):
    assert main(["analyze", "--N", "20", "40"]) == 0
    out = capsys.readouterr().out
    assert "scalar_regularized" in out and "Lemma 2" in out
    assert "hold to rounding" in out


def test_analyze_json(capsys):
    assert main(["analyze", "--N", "30", "--scheme", "heun", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (row,) = data["equivalence"]
    assert row["N"] == 30 and row["scheme"] == "heun"
    assert row["costate_vs_autodiff"] <= 1e-12 and row["lemma2"] <= 1e-12


def test_problems_lists_builtins(capsys):
    assert main(["problems"]) == 0
    out = capsys.readouterr().out
    for name in ("scalar_regularized", "scalar_mayer", "van_der_pol", "linear_quadratic"):
        assert name in out


def test_user_problem_from_file(tmp_path, capsys):
    path = tmp_path / "myproblem.py"
    path.write_text(
        textwrap.dedent(
            """
            import jax.numpy as jnp
            import flow

            def make():
                return flow.OptimalControlProblem(
                    lambda x, u: jnp.stack([x[1], -x[0] + u[0]]),
                    lambda x: jnp.sum(x**2),
                    x0=[1.0, 0.0], t0=0.0, tf=1.0,
                    running_cost=lambda x, u: 0.5 * jnp.sum(u**2),
                    control_dim=1, name="oscillator",
                )

            problem = make()
            """
        )
    )
    assert main(["analyze", "--problem", f"{path}:problem", "--N", "25", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["equivalence"][0]["problem"] == "oscillator"
    assert main(["analyze", "--problem", f"{path}:make", "--N", "25"]) == 0


@pytest.mark.parametrize(
    "argv, words",
    [
        (["analyze", "--problem", "nope"], "unknown problem"),
        (["analyze", "--problem", "missing_file.py:obj"], "not found"),
        (["analyze", "--problem", "json:nothing_here"], "no object"),
        (["analyze", "--problem", "no_such_module_xyz:obj"], "cannot import"),
        (["analyze", "--problem", "json:dumps"], "failed"),
        (["analyze", "--N", "0"], "N >= 1"),
        (["analyze", "--N", "ten"], "integer"),
        (["analyze", "--scheme", "midpoint"], "scheme"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_exit_code_2_one_line(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_console_script_runs():
    proc = subprocess.run(
        [sys.executable, "-m", "stability._cli", "analyze", "--N", "10"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Verdict" in proc.stdout
