"""The architecture, checked: the layers flow <- stability <- figures <- gradflow and
the private modules are import-linter contracts (pyproject.toml); the contracts hold
on the tree, and each fails when an import that breaks it is added (tested on a copy)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("flow", "stability", "figures", "gradflow")
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": str(LINT.parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def copy(tmp_path):
    """The four packages and pyproject.toml, copied (sources only)."""
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_contracts_hold():
    proc = _lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 kept, 0 broken" in proc.stdout


@pytest.mark.parametrize(
    "module, line, contract",
    [
        # a numerics package importing the application: the layers run backwards
        ("flow/_descent.py", "import gradflow  # noqa", "Layers"),
        ("stability/_classify.py", "import figures  # noqa", "Layers"),
        # a package reaching into another's private module
        ("stability/_euler.py", "from flow._shooting import Shooting  # noqa", "Private modules"),
        ("gradflow/_run.py", "from stability._spectrum import spectrum  # noqa", "Private"),
    ],
)
def test_a_backwards_or_private_import_breaks_a_contract(copy, module, line, contract):
    path = copy / module
    path.write_text(path.read_text() + "\n" + line + "\n")
    proc = _lint(copy)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 broken" in proc.stdout and contract in proc.stdout


def test_modules_have_one_idea_each():
    """No module past about 500 lines without a reason stated at its top."""
    long = []
    for name in PACKAGES:
        for path in (ROOT / name).glob("*.py"):
            lines = path.read_text().splitlines()
            if len(lines) > 520 and not any("long module:" in l for l in lines[:30]):
                long.append((str(path.relative_to(ROOT)), len(lines)))
    assert not long, long
