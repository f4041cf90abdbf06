"""The figure scripts: each draws its figure at small size (`make(out, quick=True)`),
standalone, and deterministically (the full sizes run in `gradflow figures`; the slow
tests check the numbers the full-size figures show)."""

import importlib
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from _figure_files import check_files as _check_files

import figures


ROOT = Path(__file__).resolve().parent.parent

#: Figures whose quick run is in the slow run only (the slow run also draws them at
#: full size):
#: - the heaviest two (26 s and 14 s of the quick run's 92 s on this machine), whose
#:   computations the default run tests elsewhere (tests/test_adaptive.py,
#:   tests/test_indirect.py);
#: - four whose own test files compute the quick figure's data and draw it
#:   (`draw(data, out)`: tests/test_unstable_flows.py, tests/test_basin_figure.py,
#:   tests/test_depth.py, tests/test_sharpness.py), so that the default run does not
#:   compute it twice;
#: - `continuation` (11 s quick), whose plotting functions tests/test_continuation.py
#:   draws from the continuations it checks.
QUICK_IN_SLOW_RUN = (
    "adaptive_grid", "costates", "unstable_flows", "basin", "depth", "sharpness",
    "continuation",
)  # fmt: skip


def test_figures_list_the_modules():
    # the figure scripts: public modules with a `make(out, quick)` (figures.report is
    # the library of the report's figures, not a script)
    on_disk = sorted(
        p.stem
        for p in (ROOT / "figures").glob("*.py")
        if not p.stem.startswith("_") and "\ndef make(" in p.read_text()
    )
    assert sorted(figures.FIGURES) == on_disk
    assert len(figures.FIGURES) == len(set(figures.FIGURES)) >= 10
    assert set(QUICK_IN_SLOW_RUN) < set(figures.FIGURES)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n in QUICK_IN_SLOW_RUN else n
        for n in figures.FIGURES
    ],
)
def test_quick_figure(name, tmp_path):
    """Each figure module's make(out, quick=True) (as `gradflow figures --quick`)
    writes a PNG and a PDF. Each figure is a scheduling unit of its own
    (tests/conftest.py), so the two xdist workers share them."""
    module = importlib.import_module(f"figures.{name}")
    paths = module.make(tmp_path, quick=True)
    _check_files(paths, tmp_path, name)


def test_generate_all_in_order(tmp_path, monkeypatch):
    """generate_all runs the `make` of each figure of FIGURES in order, with `quick`,
    reporting each, and returns every file written (here two stand-in figure modules:
    test_quick_figure runs the real ones)."""
    calls = []

    def stand_in(name):
        module = types.ModuleType(f"figures.{name}")

        def make(out, *, quick=False):
            calls.append((name, out, quick))
            return [out / f"{name}.png", out / f"{name}.pdf"]

        module.make = make
        return module

    names = ("first_stand_in", "second_stand_in")
    for name in names:
        monkeypatch.setitem(sys.modules, f"figures.{name}", stand_in(name))
    monkeypatch.setattr(figures, "FIGURES", names)
    seen: list[str] = []
    paths = figures.generate_all(str(tmp_path), quick=True, progress=seen.append)
    assert seen == list(names)
    assert calls == [(n, tmp_path, True) for n in names]
    assert paths == [tmp_path / f"{n}.{ext}" for n in names for ext in ("png", "pdf")]


# a fresh interpreter importing JAX (17 s); make() runs in test_quick_figure
@pytest.mark.slow
def test_a_script_runs_standalone_and_deterministically(tmp_path):
    """`python figures/<name>.py --quick --out DIR` in a fresh interpreter, with
    warnings as errors (as in the test suite), writes byte-identical files to those
    make() writes in this process (fixed seeds, no timestamps)."""
    name = "mesh"  # a cheap one (3 s)
    out, here = tmp_path / "out", tmp_path / "here"
    script = str(ROOT / "figures" / f"{name}.py")
    proc = subprocess.run(
        [sys.executable, "-W", "error", script, "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(out / f"{name}.png"), str(out / f"{name}.pdf")]
    _check_files([out / f"{name}.png", out / f"{name}.pdf"], out, name)
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr
    importlib.import_module(f"figures.{name}").make(here, quick=True)
    for ext in ("png", "pdf"):
        assert (out / f"{name}.{ext}").read_bytes() == (here / f"{name}.{ext}").read_bytes(), ext


@pytest.mark.parametrize("argv", [["--bogus"], ["--out"]])
def test_bad_command_line(argv, capsys):
    from figures import mesh

    with pytest.raises(SystemExit) as e:
        mesh.main(argv)
    assert e.value.code == 2
    assert "usage" in capsys.readouterr().err


@pytest.mark.slow
def test_generate_all_full_size(tmp_path):
    """The full-size figures, as `gradflow figures` draws them (about 5 minutes)."""
    paths = figures.generate_all(tmp_path)
    for name, pair in zip(figures.FIGURES, zip(paths[::2], paths[1::2], strict=True), strict=True):
        _check_files(list(pair), tmp_path, name)


# --------------------------------------------------------------------------
# The numbers the indirect-side figures show (full size; docs/figures.md quotes them).


@pytest.mark.slow
def test_costates_figure_numbers():
    from figures import costates

    d = costates.compute(costates.NS_FULL)
    for rep in d["reports"].values():
        assert all(s in ("converged", "completed") for s in rep.route_status.values()), (
            rep.route_status
        )
    # Proposition 4.5: Newton on (36) reproduces the direct costates; the costates are
    # O(1) and N <= 160, so a few ulps (1e-16 each) bound the difference
    assert np.max(d["differences"]["conditions"]) < 1e-14
    # the continuous routes are first order: slope -1 in N within 0.1 (Euler's O(h)
    # error has an O(h^2) correction, visible at N = 10)
    for route in ("shooting", "shooting_at_tk", "adjoint"):
        assert -1.1 < d["slopes"][route] < -0.9, (route, d["slopes"][route])
        assert np.all(np.diff(d["differences"][route]) < 0)
    # costate shooting and the report agree at the grid points (the same solve)
    rep = d["reports"][d["N_time"]]
    grid = np.asarray(rep.grid)
    lam = np.interp(grid[1:], d["t"], d["lam"][:, 0])
    # linear interpolation of the 401-point curve: error <= h_t^2/8 max|lambda''| ~ 1e-6
    np.testing.assert_allclose(lam, np.asarray(rep.shooting)[:, 0], atol=1e-5)


@pytest.mark.slow
def test_parameterization_figure_numbers():
    from figures import parameterization as fp

    d = fp.compute()
    ranks = d["ranks"]
    assert ranks["one block per interval ($B = I$)"].invisible_dimension == 0
    assert ranks["Chebyshev, degree 25"].rank_deficient
    assert ranks["Chebyshev, degree 25"].invisible_dimension == 0
    assert ranks["Legendre, degree 1"].invisible_dimension == fp.N - 2
    for run in d["runs"].values():
        chk = run["check"]
        assert run["trace"].success and chk.stationary_in_C
        # the descent's own residual ends below its tolerance ...
        assert run["gradient_C"][-1] <= fp.TOL
        # ... and the Hamiltonian residual of the last iterate is the check's
        assert run["hamiltonian"][-1] == pytest.approx(chk.hamiltonian_norm, rel=1e-12)
    runs = d["runs"]
    assert runs["Legendre, degree 1"]["check"].spurious
    assert runs["Legendre, degree 1"]["check"].hamiltonian_norm > 1e-2
    assert runs["Legendre, degree 3"]["check"].spurious
    assert runs["one block per interval ($B = I$)"]["check"].stationary_in_U


@pytest.mark.slow
def test_adaptive_grid_figure_numbers():
    from figures import adaptive_grid as fa

    d = fa.compute()
    rows = {r.tol: r for r in d["study"].rows}
    # loose tolerances: two steps per interval whatever U is nearby, S = FD error
    for tol in (1e-4, 1e-5):
        assert rows[tol].num_steps == 2 * fa.N
        assert rows[tol].s_norm < fa.RESOLVED * max(rows[tol].fd_noise, rows[tol].fixed_s_norm)
    # refined grids: S far above the FD error of the fixed grid, and about the tolerance
    refined = [rows[t] for t in (1e-6, 1e-7, 1e-8)]
    for r in refined:
        assert r.s_norm > 100 * r.fixed_s_norm
        assert 0.1 * r.tol < r.s_norm < 10 * r.tol
    assert refined[0].s_norm > refined[1].s_norm > refined[2].s_norm
    # descent: the grid inside the iteration stalls (line searches fail), the grid
    # fixed per outer iteration reaches a residual orders of magnitude lower
    r = d["descent"]
    assert r.inside_failures > 10
    assert r.inside_final > 1e-7
    assert r.fixed_final < 1e-3 * r.inside_final
