"""gradient-flow-analyzer, the application: the `gradflow` command line, the whole
analysis of one problem ([`run_analysis`][gradflow.run_analysis]), studies over grids
of problems, sizes, metrics and steps ([`Study`][gradflow.Study],
[`sweep`][gradflow.sweep]), the results
document (`results.json`, its JSON Schema, [`load_results`][gradflow.load_results])
and the Markdown report. Built on `flow`, `stability` and `figures`.
"""

import importlib
import importlib.metadata
from typing import TYPE_CHECKING, Any


# Loaded on first use (PEP 562, `__getattr__` below), so that the `gradflow` command
# can start the figures' process before it imports JAX (gradflow/_entry.py), and
# `import gradflow` costs what the first name used costs. The imports below name the
# same objects for a type checker and for the API reference (griffe reads them);
# tests/test_imports.py checks that they match the table.
if TYPE_CHECKING:
    from ._cache import (
        CACHE_ENV as CACHE_ENV,
        default_cache_dir as default_cache_dir,
        enable_cache as enable_cache,
    )
    from ._document import (
        EQUIVALENCE_N as EQUIVALENCE_N,
        ROUNDING as ROUNDING,
        SCHEMA_VERSION as SCHEMA_VERSION,
        dumps as dumps,
        load_results as load_results,
        load_schema as load_schema,
        results_document as results_document,
        validate_results as validate_results,
    )
    from ._markdown import render_markdown as render_markdown
    from ._run import (
        AnalysisRun as AnalysisRun,
        ProblemError as ProblemError,
        run_analysis as run_analysis,
    )
    from ._study import OUTCOMES as OUTCOMES, StepGrid as StepGrid, Study as Study
    from ._sweep import sweep as sweep

#: The public names loaded on first use, and the private module of each.
_LAZY_NAMES = {
    "CACHE_ENV": "_cache",
    "default_cache_dir": "_cache",
    "enable_cache": "_cache",
    "EQUIVALENCE_N": "_document",
    "ROUNDING": "_document",
    "SCHEMA_VERSION": "_document",
    "dumps": "_document",
    "load_results": "_document",
    "load_schema": "_document",
    "results_document": "_document",
    "validate_results": "_document",
    "render_markdown": "_markdown",
    "AnalysisRun": "_run",
    "ProblemError": "_run",
    "run_analysis": "_run",
    "OUTCOMES": "_study",
    "StepGrid": "_study",
    "Study": "_study",
    "sweep": "_sweep",
}


# Imports a name of `_LAZY_NAMES` on first use and keeps it in the module's namespace
# (no docstring: the API reference would list it).
def __getattr__(name: str) -> Any:
    if name not in _LAZY_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY_NAMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_NAMES})


__version__ = importlib.metadata.version("gradient-flow-analyzer")


#: The public names of `gradflow`: what the API reference documents (tests/test_docs.py).
__all__ = [
    "AnalysisRun",
    "CACHE_ENV",
    "default_cache_dir",
    "dumps",
    "enable_cache",
    "EQUIVALENCE_N",
    "load_results",
    "load_schema",
    "OUTCOMES",
    "ProblemError",
    "render_markdown",
    "results_document",
    "ROUNDING",
    "run_analysis",
    "SCHEMA_VERSION",
    "StepGrid",
    "Study",
    "sweep",
    "validate_results",
]
