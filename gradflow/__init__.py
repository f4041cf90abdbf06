"""gradient-flow-analyzer, the application: the `gradflow` command line, the whole
analysis of one problem ([`run_analysis`][gradflow.run_analysis]), the results
document (`results.json`, its JSON Schema, [`load_results`][gradflow.load_results])
and the Markdown report. Built on `flow`, `stability` and `figures`.
"""

import importlib.metadata

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
    "ProblemError",
    "render_markdown",
    "results_document",
    "ROUNDING",
    "run_analysis",
    "SCHEMA_VERSION",
    "validate_results",
]
