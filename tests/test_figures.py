"""The figure scripts: each draws its figure at small size through
`figures.generate_all`, standalone, and deterministically (the full sizes run in
`gradflow figures`; the slow tests check the numbers the full-size figures show)."""

import subprocess
import sys
import textwrap
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

import figures


ROOT = Path(__file__).resolve().parent.parent

#: Figures drawn by a second interpreter while this one draws the rest. JAX
#: compilation dominates the quick run (about 100 s of CPU on this machine); two
#: processes on two cores halve its wall time. The halves are balanced by measured
#: cost (about 45 s each).
WORKER_HALF = ("costates", "adaptive_grid", "mesh", "depth")

#: The worker: the test suite's settings (tests/conftest.py, and the jaxtyping
#: runtime checks of pyproject's `--jaxtyping-packages`), then generate_all on the
#: figures named on its command line, printing the files it writes.
WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    from jaxtyping import install_import_hook

    install_import_hook(["flow", "stability"], "beartype.beartype")
    import figures

    figures.FIGURES = tuple(sys.argv[2:])
    for path in figures.generate_all(Path(sys.argv[1]), quick=True):
        print(path, flush=True)
    """
)


def _check_png(path: Path) -> None:
    """A readable RGB(A) image of a sensible size that is not blank."""
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4), img.shape
    height, width = img.shape[:2]
    # the smallest figure is 4.8 x 3.3 inches at 150 dpi (bbox "tight" trims margins)
    assert 300 <= height <= 2000 and 500 <= width <= 2500, (path.name, img.shape)
    # something is drawn: many pixels differ from the background
    rgb = img[..., :3]
    assert np.mean(np.any(np.abs(rgb - rgb[0, 0]) > 0.05, axis=-1)) > 0.01, path.name


def _check_files(paths, out: Path, name: str) -> None:
    assert [p.name for p in paths] == [f"{name}.png", f"{name}.pdf"]
    for p in paths:
        assert p.parent == out and p.is_file() and p.stat().st_size > 1000, p
    assert paths[1].read_bytes().startswith(b"%PDF")
    _check_png(paths[0])


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
    assert set(WORKER_HALF) < set(figures.FIGURES)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """Every figure at small size through generate_all (as `gradflow figures --quick`):
    the figures of `WORKER_HALF` in a second interpreter, the others here, at the same
    time."""
    out = tmp_path_factory.mktemp("figures")
    here_out, worker_out = out / "here", out / "worker"
    worker = subprocess.Popen(
        [sys.executable, "-W", "error", "-c", WORKER, str(worker_out), *WORKER_HALF],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=out,
    )
    here = tuple(n for n in figures.FIGURES if n not in WORKER_HALF)
    seen: list[str] = []
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(figures, "FIGURES", here)
            paths = figures.generate_all(here_out, quick=True, progress=seen.append)
    except BaseException:
        worker.kill()
        worker.communicate()
        raise
    stdout, stderr = worker.communicate(timeout=600)
    return dict(
        here=here,
        here_out=here_out,
        paths=paths,
        seen=seen,
        worker_out=worker_out,
        returncode=worker.returncode,
        stdout=stdout,
        stderr=stderr,
    )


def test_generate_all_quick(quick_run):
    """Each figure module's make(out, quick=True) wrote a PNG and a PDF, here through
    generate_all (in the order of FIGURES) or in the worker (without warnings)."""
    r = quick_run
    assert r["seen"] == list(r["here"])
    assert len(r["paths"]) == 2 * len(r["here"])
    pairs = zip(r["paths"][::2], r["paths"][1::2], strict=True)
    for name, pair in zip(r["here"], pairs, strict=True):
        _check_files(list(pair), r["here_out"], name)
    assert r["returncode"] == 0, r["stderr"]
    assert "Traceback" not in r["stderr"] and "Warning" not in r["stderr"], r["stderr"]
    written = [Path(line) for line in r["stdout"].split()]
    expected = [r["worker_out"] / f"{n}.{ext}" for n in WORKER_HALF for ext in ("png", "pdf")]
    assert written == expected
    for name in WORKER_HALF:
        pair = [r["worker_out"] / f"{name}.png", r["worker_out"] / f"{name}.pdf"]
        _check_files(pair, r["worker_out"], name)
    assert sorted(r["here"] + WORKER_HALF) == sorted(figures.FIGURES)


def test_a_script_runs_standalone_and_deterministically(quick_run, tmp_path):
    """`python figures/<name>.py --quick --out DIR` in a fresh interpreter, with
    warnings as errors (as in the test suite), writes byte-identical files to those
    generate_all wrote in this process (fixed seeds, no timestamps)."""
    name = "parameterization"
    out = tmp_path / "out"
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
    assert name in quick_run["here"]
    for ext in ("png", "pdf"):
        ours = (quick_run["here_out"] / f"{name}.{ext}").read_bytes()
        assert (out / f"{name}.{ext}").read_bytes() == ours, ext


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
