"""Docs: the tutorials run, and every public symbol has a docstring."""

import inspect
import pathlib
import runpy
import typing

import pytest

import flow
import flow.controls
import flow.indirect
import flow.metrics
import flow.problems
import flow.solvers
import flow.validation
import gradflow
import stability
from figures import report as report_figures


ROOT = pathlib.Path(__file__).resolve().parent.parent
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.py"))
#: Tutorials that take 16-21 s each (2 cores) and whose claims the unit tests of
#: test_gradient_flow.py and test_indirect.py check as well: run with -m slow.
SLOW_TUTORIALS = {"gradient_flow.py", "indirect.py"}


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW_TUTORIALS else p for p in TUTORIALS],
    ids=lambda p: p.name,
)
def test_tutorial_runs(path, capsys):
    runpy.run_path(str(path), run_name="__main__")
    assert capsys.readouterr().out.strip()


def test_there_are_tutorials():
    assert TUTORIALS


def _public(module):
    for name in dir(module):
        if name.startswith("_"):
            continue
        obj = getattr(module, name)
        if inspect.ismodule(obj) or not (inspect.isclass(obj) or callable(obj)):
            continue
        if typing.get_origin(obj) is not None:  # a type alias such as flow.RealArrayLike
            continue
        yield name, obj


@pytest.mark.parametrize(
    "module",
    [
        flow,
        flow.problems,
        flow.indirect,
        flow.controls,
        flow.metrics,
        flow.solvers,
        flow.validation,
        stability,
        gradflow,
        report_figures,
    ],
    ids=lambda m: m.__name__,
)
def test_every_public_symbol_is_documented(module):
    missing = [name for name, obj in _public(module) if not inspect.getdoc(obj)]
    assert not missing, f"undocumented public symbols in {module.__name__}: {missing}"


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
