"""What every figure file must be: a PNG and a PDF of sensible size, the PNG not blank.
Shared by tests/test_figures.py and the tests of single figures."""

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np


def check_png(path: Path) -> None:
    """A readable RGB(A) image of a sensible size that is not blank."""
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4), img.shape
    height, width = img.shape[:2]
    # the smallest figure is 4.8 x 3.3 inches at 150 dpi (bbox "tight" trims margins)
    assert 300 <= height <= 2000 and 500 <= width <= 2500, (path.name, img.shape)
    # something is drawn: many pixels differ from the background
    rgb = img[..., :3]
    assert np.mean(np.any(np.abs(rgb - rgb[0, 0]) > 0.05, axis=-1)) > 0.01, path.name


def check_files(paths, out: Path, name: str) -> None:
    assert [p.name for p in paths] == [f"{name}.png", f"{name}.pdf"]
    for p in paths:
        assert p.parent == out and p.is_file() and p.stat().st_size > 1000, p
    assert paths[1].read_bytes().startswith(b"%PDF")
    check_png(paths[0])
