"""Docs: the tutorials run as the site shows them, every public symbol has a
docstring, and the API reference lists every public symbol."""

import functools
import importlib
import importlib.util
import inspect
import pathlib
import re
import sys
import warnings

import griffe
import pytest

import flow
import gradflow
import stability


ROOT = pathlib.Path(__file__).resolve().parent.parent
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.py"))
API = ROOT / "docs" / "api"
#: The public modules: their `__all__` is the public surface that the API reference
#: (docs/api/*.md) documents.
PUBLIC_MODULES = (
    "flow",
    "flow.problems",
    "flow.indirect",
    "flow.controls",
    "flow.metrics",
    "flow.solvers",
    "flow.validation",
    "flow.bounds",
    "stability",
    "figures",
    "figures.report",
    "figures.sweeps",
    "gradflow",
)


def _hook():
    """The MkDocs hook that executes the tutorials for the site (docs/hooks/tutorials.py)."""
    name = "docs_tutorials_hook"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "docs/hooks/tutorials.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_page(path):
    # each tutorial has its page, holding only the marker the hook replaces, and the
    # page is in the site's navigation; its first cell is the title
    page = path.with_suffix(".md")
    assert page.read_text().strip() == f"<!-- tutorial: {path.name} -->", page
    assert f"tutorials/{page.name}" in (ROOT / "mkdocs.yml").read_text(), page.name
    cells = _hook().parse(path.read_text())
    assert cells[0].kind == "markdown" and cells[0].source.startswith("# "), path.name
    assert sum(c.kind == "code" for c in cells) >= 2, path.name


# The tutorials are executed by the site's build, which CI runs after the tests
# (README's docs command: `mkdocs build --strict`; the hook runs every cell with
# warnings as errors, and a failing cell fails the build). Here they run again with
# the test suite's runtime type checks, in the slow run (about 110 s of CPU).
@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_runs(path):
    # the executor of the site's build: cell by cell, in a temporary directory, figures
    # captured
    hook = _hook()
    cells = hook.execute(path)
    assert any(c.kind == "code" and c.output.strip() for c in cells), "prints nothing"
    markdown = hook.render(cells, path.name)
    assert markdown.count("```python") == sum(c.kind == "code" for c in cells)


def test_there_are_tutorials():
    names = {p.stem for p in TUTORIALS}
    assert {"quickstart", "lemma2", "gradient_flow", "step_sizes", "own_problem"} <= names


def test_no_tutorial_shadows_a_package():
    # `python docs/tutorials/x.py` puts docs/tutorials/ first on sys.path: a tutorial
    # named like a package it imports (stability.py) would shadow that package
    imported = {name.partition(".")[0] for name in sys.modules}
    clashes = {p.name for p in TUTORIALS if p.stem in imported}
    assert not clashes, f"tutorials named like importable packages: {clashes}"


def test_the_build_runs_tutorials_with_warnings_as_errors(tmp_path):
    script = tmp_path / "warns.py"
    script.write_text("# %% [markdown]\n# # T\n\n# %%\nimport warnings\nwarnings.warn('w')\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the hook, not the test suite, must turn it into an error
        with pytest.raises(UserWarning, match="w"):
            _hook().execute(script)


def test_tutorial_parser_splits_cells():
    hook = _hook()
    cells = hook.parse("# %% [markdown]\n# # Title\n#\n# $x$\n\n# %%\n\nx = 1\nprint(x)\n")
    # line: where the cell's first non-blank line is, for tracebacks
    assert [(c.kind, c.source, c.line) for c in cells] == [
        ("markdown", "# Title\n\n$x$", 2),
        ("code", "x = 1\nprint(x)", 8),
    ]
    with pytest.raises(ValueError, match="line 2"):
        hook.parse("# %% [markdown]\nx = 1\n")


@functools.cache
def _griffe_package(root: str):
    """The package `root` as the site reads it: griffe, from the sources."""
    return griffe.load(root, search_paths=[str(ROOT)], resolve_aliases=True, resolve_external=False)


def _griffe_module(name: str):
    root, _, rest = name.partition(".")
    return _griffe_package(root)[rest] if rest else _griffe_package(root)


def reference_targets(api: pathlib.Path = API) -> set[str]:
    """The objects the API reference documents: every `::: name` block of docs/api/, a
    module block covering its members as well unless it says `members: false`."""
    targets: set[str] = set()
    for page in api.glob("*.md"):
        for match in re.finditer(r"^::: (\S+)\n((?:[ ]{4}.*\n)*)", page.read_text(), re.M):
            name, options = match.groups()
            targets.add(name)
            if "members: false" not in options:
                targets.add(name + ".*")
    return targets


def documentation_gaps(module_name: str, api: pathlib.Path = API) -> list[str]:
    """The public names of `module_name` (its `__all__`) that have no docstring as the
    site reads it (griffe: classes, functions, and attribute docstrings of constants)
    or that no page of the API reference documents."""
    module = importlib.import_module(module_name)
    public = getattr(module, "__all__", None)
    if public is None:
        return [f"{module_name} has no __all__"]
    undeclared = [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and obj.__module__.split(".")[0] == module_name.split(".")[0]
        and name not in public
    ]
    static = _griffe_module(module_name)
    targets = reference_targets(api)
    gaps = [f"{module_name}.{name}: public but not in __all__" for name in undeclared]
    for name in public:
        qualified = f"{module_name}.{name}"
        if name not in static.members:
            gaps.append(f"{qualified}: in __all__ but not found in the source")
            continue
        docstring = static[name].docstring
        if docstring is None or not docstring.value.strip():
            gaps.append(f"{qualified}: no docstring")
        if qualified not in targets and f"{module_name}.*" not in targets:
            gaps.append(f"{qualified}: missing from the API reference (docs/api/)")
    return gaps


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_symbol_is_documented_and_in_the_reference(module_name):
    gaps = documentation_gaps(module_name)
    assert not gaps, "\n".join(gaps)


def test_every_public_module_is_checked():
    pages = {p.stem for p in API.glob("*.md")} - {"index"}
    # figures.report and figures.sweeps are sections of the figures page
    assert pages == {m for m in PUBLIC_MODULES if m not in ("figures.report", "figures.sweeps")}


def test_the_documentation_check_catches_gaps(tmp_path, monkeypatch):
    # test the test: a public function without a docstring, and a documented one that
    # no reference page lists, are both reported
    package = tmp_path / "gradflow_docs_probe"
    package.mkdir()
    (package / "__init__.py").write_text(
        '"""A probe package."""\n\n\n'
        "def undocumented():\n    return 1\n\n\n"
        'def documented():\n    """Has a docstring."""\n\n\n'
        'def undeclared():\n    """Public but not in __all__."""\n\n\n'
        '__all__ = ["undocumented", "documented"]\n'
    )
    api = tmp_path / "api"
    api.mkdir()
    (api / "probe.md").write_text("::: gradflow_docs_probe.undocumented\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(griffe, "load", _loader_in(tmp_path))
    gaps = documentation_gaps("gradflow_docs_probe", api)
    assert gaps == [
        "gradflow_docs_probe.undeclared: public but not in __all__",
        "gradflow_docs_probe.undocumented: no docstring",
        "gradflow_docs_probe.documented: missing from the API reference (docs/api/)",
    ]
    # and with the module rendered in full, everything is listed
    (api / "probe.md").write_text("::: gradflow_docs_probe\n")
    assert documentation_gaps("gradflow_docs_probe", api) == gaps[:2]
    # `members: false` renders the module's docstring only
    (api / "probe.md").write_text("::: gradflow_docs_probe\n    options:\n      members: false\n")
    assert documentation_gaps("gradflow_docs_probe", api) == [
        *gaps[:2],
        "gradflow_docs_probe.undocumented: missing from the API reference (docs/api/)",
        gaps[2],
    ]


def _loader_in(path):
    real = griffe.load

    def load(name, **kwargs):
        kwargs["search_paths"] = [str(path)]
        return real(name, **kwargs)

    return load


def test_public_methods_are_documented():
    for cls in (
        flow.Shooting,
        flow.OptimalControlProblem,
        flow.GradientCheck,
        stability.Equilibrium,
        stability.Equilibria,
        stability.Linearization,
        stability.Spectrum,
        stability.Cluster,
        stability.SpectralDensity,
        stability.Classification,
        stability.EulerBound,
        stability.MeshStudy,
        stability.Basin,
        flow.indirect.CostateReport,
        flow.indirect.CostateTrajectory,
        flow.indirect.ConditionsSolution,
        flow.indirect.ContinuousAdjoint,
        flow.AbstractResult,
        flow.AbstractShooting,
        flow.DescentTrace,
        flow.FlowSolution,
        flow.Comparison,
        stability.StabilityReport,
        gradflow.AnalysisRun,
    ):
        for name, member in inspect.getmembers(cls):
            if name.startswith("_") or not (callable(member) or isinstance(member, property)):
                continue
            assert inspect.getdoc(member), f"{cls.__name__}.{name} has no docstring"
