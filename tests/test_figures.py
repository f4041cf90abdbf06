"""The figure scripts: each draws its figure at small size, alone or through
`figures.generate_all`, deterministically (the full sizes run in `gradflow figures`)."""

import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

import figures


ROOT = Path(__file__).resolve().parent.parent


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
    on_disk = sorted(p.stem for p in (ROOT / "figures").glob("*.py") if not p.stem.startswith("_"))
    assert sorted(figures.FIGURES) == on_disk
    assert len(figures.FIGURES) == len(set(figures.FIGURES)) >= 6


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """Every figure at small size, through generate_all (as `gradflow figures --quick`)."""
    out = tmp_path_factory.mktemp("figures")
    seen = []
    paths = figures.generate_all(out, quick=True, progress=seen.append)
    return out, paths, seen


def test_generate_all_quick(quick_run):
    """Each figure module's make(out, quick=True) wrote a PNG and a PDF."""
    out, paths, seen = quick_run
    assert seen == list(figures.FIGURES)
    assert len(paths) == 2 * len(figures.FIGURES)
    for name, pair in zip(figures.FIGURES, zip(paths[::2], paths[1::2], strict=True), strict=True):
        _check_files(list(pair), out, name)


def test_a_script_runs_standalone(tmp_path):
    """`python figures/<name>.py --quick --out DIR` in a fresh interpreter, with
    warnings as errors (as in the test suite)."""
    out = tmp_path / "out"
    script = str(ROOT / "figures" / "euler_disk.py")
    proc = subprocess.run(
        [sys.executable, "-W", "error", script, "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(out / "euler_disk.png"), str(out / "euler_disk.pdf")]
    _check_files([out / "euler_disk.png", out / "euler_disk.pdf"], out, "euler_disk")
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr


def test_figures_are_deterministic(quick_run, tmp_path):
    """A second run writes byte-identical files (fixed seeds, no timestamps)."""
    from figures import mesh

    first = quick_run[0]
    for p in mesh.make(tmp_path, quick=True):
        assert p.read_bytes() == (first / p.name).read_bytes(), p.name


@pytest.mark.parametrize("argv", [["--bogus"], ["--out"]])
def test_bad_command_line(argv, capsys):
    from figures import mesh

    with pytest.raises(SystemExit) as e:
        mesh.main(argv)
    assert e.value.code == 2
    assert "usage" in capsys.readouterr().err


@pytest.mark.slow
def test_generate_all_full_size(tmp_path):
    """The full-size figures, as `gradflow figures` draws them (about 1-2 minutes)."""
    paths = figures.generate_all(tmp_path)
    for name, pair in zip(figures.FIGURES, zip(paths[::2], paths[1::2], strict=True), strict=True):
        _check_files(list(pair), tmp_path, name)
