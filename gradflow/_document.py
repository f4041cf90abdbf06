"""The results document (`results.json`): what it holds, its JSON Schema
(`gradflow/results.schema.json`, draft 2020-12, checked with the `jsonschema`
library), and how it is written and read back.

The document's numbers are those of the [`StabilityReport`][stability.StabilityReport]:
its `to_dict()` sections are copied unchanged, and only context is added (the
problem, the gradient-equivalence table over several N, settings, figures,
timings, versions).
"""

import importlib.metadata
import importlib.resources
import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flow
import stability


SCHEMA_VERSION = 3
"""Version of the results document; bumped when a key changes meaning or is removed. 2:
the one results vocabulary (status words, num_* counters, classification `kind`,
tolerance as tol / stop_on, trajectory and warnings in the report)."""

#: The schema file, shipped inside the `gradflow` package.
SCHEMA_FILE = "results.schema.json"

ROUNDING = 1e-11
"""The gradient routes "hold to rounding" when every relative difference is below this:
float64 rounding of an O(N) recursion is ~1e-15 * N, so 1e-11 leaves room up to N ~
1e4 and still fails on any real discrepancy (which is O(h) or larger)."""

EQUIVALENCE_N = (50, 200, 1000)
"""Default grid sizes of the gradient-equivalence table."""

_PACKAGES = (
    "gradient-flow-analyzer",
    "jax",
    "jaxlib",
    "numpy",
    "scipy",
    "equinox",
    "diffrax",
    "lineax",
    "optimistix",
    "matplotlib",
)


def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of `results.json`, read from the package."""
    text = importlib.resources.files("gradflow").joinpath(SCHEMA_FILE).read_text("utf-8")
    return json.loads(text)


def validate_results(document: Any) -> list[str]:
    """The violations of `document` against the schema, as `"$.path: message"`
    strings (empty: valid), by the `jsonschema` library (Draft 2020-12). Floats must
    be finite (strict JSON has no NaN: they are written as `null`)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    out = [f"{e.json_path}: {e.message}" for e in map(_innermost, errors)]
    out += [f"{path}: {value} is not a JSON number" for path, value in _nonfinite(document, "$")]
    return out


def _innermost(error: Any) -> Any:
    """For an `anyOf` failure, the most relevant error of the alternatives (so that a
    wrong field of a nullable section is reported at that field)."""
    while error.context:
        # the alternative that got furthest into the value is the one meant
        error = max(error.context, key=lambda e: len(e.absolute_path))
    return error


def _nonfinite(value: Any, path: str):
    if isinstance(value, float) and not (value == value and abs(value) != float("inf")):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _nonfinite(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _nonfinite(v, f"{path}[{i}]")


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a `results.json` written by `gradflow analyze` (or
    [`run_analysis`][gradflow.run_analysis]) and validate it against the schema.

    **Returns:** the document (a dict); draw its figures again with
    [`figures.report.draw`][figures.report.draw].

    **Raises:** `FileNotFoundError`; `ValueError` for a file that is not JSON, or
    whose content violates the schema (the first violations are listed), or that
    was written with another schema version.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a JSON document ({e.msg}, line {e.lineno}).") from None
    if isinstance(doc, dict) and doc.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{path}: schema version {doc.get('schema_version')!r}; this gradflow reads "
            f"version {SCHEMA_VERSION} (run gradflow analyze again)."
        )
    errors = validate_results(doc)
    if errors:
        shown = "; ".join(errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise ValueError(f"{path}: does not match the results schema: {shown}{more}.")
    return doc


def dumps(document: dict[str, Any]) -> str:
    """`document` as strict JSON (no NaN), indented; floats round-trip exactly."""
    return json.dumps(document, indent=2, allow_nan=False)


def problem_info(problem: flow.OptimalControlProblem, spec: str) -> dict[str, Any]:
    """The `problem` section: name, how it was given, dimensions and horizon."""
    builtin = spec in flow.problems.BUILTIN
    return flow.to_json(
        dict(
            name=problem.name,
            spec=spec,
            builtin=builtin,
            description=flow.problems.BUILTIN[spec][1] if builtin else None,
            state_dim=problem.state_dim,
            control_dim=problem.control_dim,
            running_cost=problem.running_cost is not None,
            t0=problem.t0,
            tf=problem.tf,
            x0=problem.x0,
        )
    )


def versions() -> dict[str, str | None]:
    """Python, the platform and the installed versions of the packages the analysis
    uses (None when one is not installed)."""
    out: dict[str, str | None] = {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def results_document(
    report: stability.StabilityReport,
    *,
    problem: flow.OptimalControlProblem,
    spec: str,
    equivalence_sweep: Sequence[flow.GradientCheck],
    settings: dict[str, Any],
    timings: dict[str, float] | None = None,
    figures: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The `results.json` document (see `docs/report.md` and the schema file): the
    report's `to_dict()` with `problem` replaced by its description, and the
    context: `headline`, `equivalence_sweep`, `equivalence_holds`, `settings`,
    `figures`, `timings`, `versions`."""
    d = report.to_dict()
    checks = [c for c in [report.equivalence, *equivalence_sweep] if c is not None]
    worst = max((max(c.costate_vs_autodiff, c.lemma2) for c in checks), default=0.0)
    doc: dict[str, Any] = dict(schema_version=SCHEMA_VERSION)
    doc.update(d)
    doc.update(
        problem=problem_info(problem, spec),
        headline="",
        equivalence_sweep=[c.to_dict() for c in equivalence_sweep],
        equivalence_holds=bool(worst < ROUNDING),
        settings=flow.to_json(settings),
        figures=list(figures),
        timings=dict(timings or {}),
        versions=versions(),
    )
    doc = flow.to_json(doc)
    doc["headline"] = headline(doc)
    return doc


def headline(doc: dict[str, Any]) -> str:
    """The verdict in one sentence: the problem and settings, then
    `StabilityReport.verdict`."""
    return (
        f"For {doc['problem']['name']} at N = {doc['N']} ({doc['scheme']}, "
        f"{doc['metric']} metric), {doc['verdict']}."
    )
