"""Import cost: `import flow`, `import stability`, `import gradflow` and `gradflow
problems` load only what they use. diffrax (the flows, the adaptive grid, the indirect
side), optimistix (the root finders), scipy (B-splines, sparse LU, ARPACK, the Riccati
reference) and matplotlib (figures) are imported on first use; each check runs in a
fresh interpreter, so it fails when an eager import of one of them comes back."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import flow
import flow.solvers
import gradflow


ROOT = Path(__file__).resolve().parent.parent
#: The heavy optional dependencies (and the parts of `flow` that import them).
HEAVY = (
    "diffrax",
    "optimistix",
    "scipy",
    "scipy.integrate",
    "scipy.interpolate",
    "scipy.sparse",
    "matplotlib",
    "figures",
    "flow.indirect",
    "flow.problems",
)


def _loaded(code: str) -> list[str]:
    """The modules of HEAVY that running `code` in a fresh interpreter imports."""
    report = f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    probe = f"import json, sys\n{code}\n{report}"
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_importing_the_packages_loads_no_heavy_optional_part():
    # one interpreter for the three (gradflow imports stability, which imports flow)
    assert _loaded("import flow, stability, gradflow") == []


def test_the_console_script_starts_the_figures_process_before_importing_jax():
    # `gradflow analyze` starts its figures' process first thing: the entry module and
    # the package load neither JAX nor anything of flow before it has
    loaded = _loaded(
        "import gradflow._entry, gradflow._figure_worker\n"
        "assert not {'jax', 'flow', 'numpy'} & set(sys.modules), "
        "{'jax', 'flow', 'numpy'} & set(sys.modules)"
    )
    assert loaded == []


def test_gradflow_problems_loads_no_heavy_optional_part():
    # the listing needs flow.problems, nothing of diffrax, optimistix, scipy or matplotlib
    loaded = _loaded("from gradflow._cli import main\nmain(['problems'])")
    assert loaded == ["flow.problems"], loaded


def test_the_lazy_names_resolve_as_before():
    # `from flow import x`, `flow.x` and `import flow.indirect` work for every public
    # name, the lazy ones included, and load what they need on first use
    loaded = _loaded(
        "import flow\n"
        "from flow import gradient_flow, indirect, FlowSolution\n"
        "from flow.solvers import DampedNewton\n"
        "import flow.problems\n"
        "assert flow.gradient_flow is gradient_flow and flow.indirect is indirect\n"
        "assert gradient_flow.__module__ == 'flow._gradient_flow'\n"
        "assert flow.problems.get('double_well').control_dim == 1\n"
        "assert all(getattr(flow, n) is not None for n in flow.__all__)\n"
        "assert set(flow.__all__) <= set(dir(flow)), set(flow.__all__) - set(dir(flow))\n"
        "assert set(flow.solvers.__all__) <= set(dir(flow.solvers))"
    )
    assert {"diffrax", "optimistix", "flow.indirect", "flow.problems"} <= set(loaded)
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        flow.nonexistent  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        flow.solvers.nonexistent  # noqa: B018
    with pytest.raises(ImportError):
        from flow import nonexistent  # noqa: F401


def _type_checking_imports(path: Path) -> dict[str, str | None]:
    """The names imported under `if TYPE_CHECKING:` in `path`: name -> private module
    (None for a submodule, `from . import x`)."""
    names: dict[str, str | None] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.level == 1, ast.unparse(imp)
                for alias in imp.names:
                    names[alias.asname or alias.name] = imp.module
    return names


@pytest.mark.parametrize("module", [flow, flow.solvers, gradflow], ids=lambda m: m.__name__)
def test_the_lazy_tables_match_the_static_imports(module):
    # the names that the API reference and a type checker read (the TYPE_CHECKING
    # imports) are those `__getattr__` loads, each from the same module
    static = _type_checking_imports(Path(module.__file__))
    lazy = {name: None for name in getattr(module, "_LAZY_SUBMODULES", ())}
    lazy |= module._LAZY_NAMES
    assert static == lazy
    assert set(module._LAZY_NAMES) <= set(module.__all__)
