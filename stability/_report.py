r"""The `gradflow analyze` outputs: the results document (`results.json`), its JSON
Schema (`stability/results.schema.json`, draft 2020-12), a validator for the part of
JSON Schema that file uses, and the Markdown report (`report.md`).

[`run_analysis`][stability._report.run_analysis] runs
[`stability.analyze`][stability.analyze] on one discretised problem, the
gradient-equivalence check (Lemma 2, eq. (49)) over several N, draws the report's
figures (`figures._report`) and writes the three kinds of output. The document's
numbers are those of the [`StabilityReport`][stability.StabilityReport]: its
`to_dict()` sections are copied unchanged, and only context (the problem, the step
rule, the trajectory at the equilibrium, settings, versions, timings) is added.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.resources
import inspect
import json
import math
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import jax
import numpy as np

import flow

from ._analysis import StabilityReport, analyze
from ._common import jsonable


#: Version of the results document; bumped when a key changes meaning or is removed.
SCHEMA_VERSION = 1

#: The schema file, shipped inside the `stability` package.
SCHEMA_FILE = "results.schema.json"

#: `step` rules besides a positive number: `"optimal"` (what `stability.analyze`
#: picks: $\alpha_{opt}$, or $\alpha_{max}/2$ for a complex spectrum), `"hamiltonian"`
#: (the paper's remedy $\alpha h = 1$, section 6.2: $\alpha = 1/\min_k h_k$, as
#: `flow.HamiltonianStep(1)`), `"none"` (no replay).
STEP_RULES = ("optimal", "hamiltonian", "none")

#: The gradient routes "hold to rounding" when every relative difference is below
#: this: float64 rounding of an O(N) recursion is ~1e-15 * N, so 1e-11 leaves room up
#: to N ~ 1e4 and still fails on any real discrepancy (which is O(h) or larger).
ROUNDING = 1e-11

#: Default grid sizes of the gradient-equivalence table.
EQUIVALENCE_N = (50, 200, 1000)

_ANALYZE_DEFAULTS = {
    name: p.default
    for name, p in inspect.signature(analyze).parameters.items()
    if p.default is not inspect.Parameter.empty
}

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


# --------------------------------------------------------------------------
# The schema and a validator for the subset of JSON Schema it uses.


def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of `results.json`, read from the package."""
    text = importlib.resources.files("stability").joinpath(SCHEMA_FILE).read_text("utf-8")
    return json.loads(text)


#: The JSON Schema keywords [`validate`][stability._report.validate] understands.
#: Annotations (`title`, `description`, ...) are ignored; any other keyword is an
#: error, so the schema file cannot use a rule that is silently not checked.
VALIDATED_KEYWORDS = frozenset(
    {
        "type",
        "required",
        "properties",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "minimum",
        "anyOf",
        "$ref",
    }
)
_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$defs", "$comment", "title", "description", "examples", "default"}
)
_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def validate(instance: Any, schema: dict[str, Any] | None = None) -> list[str]:
    """Check `instance` against `schema` (default: [`load_schema`][]()); return the
    violations as `"$.path: message"` strings (empty: valid).

    Implements the subset of JSON Schema draft 2020-12 in `VALIDATED_KEYWORDS`:
    `type` (a name or a list of names), `required`, `properties`,
    `additionalProperties` (a boolean or a schema), `items` (one schema for every
    element), `enum`, `const`, `minimum`, `anyOf` and local `$ref`
    (`#/$defs/...`). Numbers are JSON numbers: `bool` is not an integer, and floats
    must be finite (strict JSON has no NaN).

    **Raises:** `ValueError` for a keyword outside that subset.
    """
    schema = load_schema() if schema is None else schema
    errors: list[str] = []
    _validate(instance, schema, schema, "$", errors)
    return errors


def _validate(value: Any, schema: Any, root: dict, path: str, errors: list[str]) -> None:
    if schema is True:
        return
    if schema is False:
        errors.append(f"{path}: no value is allowed here")
        return
    unknown = set(schema) - VALIDATED_KEYWORDS - _ANNOTATIONS
    if unknown:
        raise ValueError(f"schema at {path} uses keywords this validator lacks: {sorted(unknown)}")
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"only local $ref are supported; got {ref!r}")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        _validate(value, target, root, path, errors)
    if isinstance(value, float) and not math.isfinite(value):
        errors.append(f"{path}: {value} is not a JSON number")
        return
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[n](value) for n in names):
            errors.append(f"{path}: expected {' or '.join(names)}, got {_json_type(value)}")
            return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: expected {schema['const']!r}, got {value!r}")
    if "minimum" in schema and _TYPES["number"](value) and value < schema["minimum"]:
        errors.append(f"{path}: {value} is below the minimum {schema['minimum']}")
    if "anyOf" in schema:
        tries = [_errors(value, s, root, path) for s in schema["anyOf"]]
        if all(tries):  # none matches: report the closest alternative's violations
            errors.extend(min(tries, key=len))
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{path}: missing required key {key!r}")
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                _validate(item, props[key], root, f"{path}.{key}", errors)
            elif extra is False:
                errors.append(f"{path}: unexpected key {key!r}")
            else:
                _validate(item, extra, root, f"{path}.{key}", errors)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            _validate(item, schema["items"], root, f"{path}[{i}]", errors)


def _errors(value: Any, schema: Any, root: dict, path: str) -> list[str]:
    errors: list[str] = []
    _validate(value, schema, root, path, errors)
    return errors


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _TYPES[name](value):
            return name
    return type(value).__name__


# --------------------------------------------------------------------------
# Inputs.


def resolve_step(step: Any, shooting: flow.Shooting) -> float | str | None:
    r"""The `step` argument of `stability.analyze` for a CLI step rule.

    `"optimal"` stays `"optimal"`; `"none"` or None is None (no replay);
    `"hamiltonian"` is $\alpha = 1/\min_k h_k$ (section 6.2: $\alpha h = 1$); a
    number must be finite and positive.

    **Raises:** `ValueError` for anything else.
    """
    if step is None or step == "none":
        return None
    if isinstance(step, str):
        if step == "optimal":
            return "optimal"
        if step == "hamiltonian":
            return float(1.0 / np.min(np.asarray(shooting.steps)))
        try:
            step = float(step)
        except ValueError:
            raise ValueError(
                f"`step` must be one of {STEP_RULES} or a positive number; got {step!r}."
            ) from None
    if isinstance(step, bool) or not isinstance(step, int | float):
        raise TypeError(f"`step` must be one of {STEP_RULES} or a positive number; got {step!r}.")
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"`step` must be a finite positive number; got {step}.")
    return float(step)


def problem_info(problem: flow.OptimalControlProblem, spec: str) -> dict[str, Any]:
    """The `problem` section: name, how it was given, dimensions and horizon."""
    builtin = spec in flow.problems.BUILTIN
    return jsonable(
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


def trajectory(shooting: flow.Shooting, U: Any) -> dict[str, Any]:
    r"""The `trajectory` section at the controls `U` (the equilibrium): the grid
    `t` (N+1), `controls` $u_k$ (N x m), `states` $x_k$ (N+1 x n), `costates`
    $\lambda_k$ (N x n, eqs. (23), (25)) and `hamiltonian_gradient` $\partial_u H_k$
    (N x m). The running-cost component of the augmented state is left out."""
    n = shooting.problem.state_dim
    return jsonable(
        dict(
            t=shooting.grid,
            controls=U,
            states=np.asarray(shooting.states(U))[:, :n],
            costates=np.asarray(shooting.costates(U))[:, :n],
            hamiltonian_gradient=shooting.hamiltonian_gradient(U),
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


# --------------------------------------------------------------------------
# The document.


def results_document(
    report: StabilityReport,
    *,
    shooting: flow.Shooting,
    spec: str,
    step_rule: str,
    equivalence_sweep: Sequence[flow.GradientCheck],
    settings: dict[str, Any],
    timings: dict[str, float] | None = None,
    figures: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The `results.json` document (see `docs/report.md` and the schema file).

    The sections `equilibrium`, `spectrum`, `classification`, `tolerance`, `replay`
    and `equivalence` are `report.to_dict()`'s; `euler` is too, with `step`,
    `rate_at_step` ($\\rho(\\alpha)$) and `iterations_at_step` always present (None
    without a replay or a bound).
    """
    d = report.to_dict()
    euler = dict(d["euler"])
    alpha = report.step
    euler["step"] = alpha
    euler["rate_at_step"] = report.predicted_rate
    euler["iterations_at_step"] = (
        report.euler.iterations(alpha)
        if alpha is not None and report.euler.alpha_max is not None
        else None
    )
    worst = max(
        max(c.costate_vs_autodiff, c.lemma2) for c in [report.equivalence, *equivalence_sweep]
    )
    doc = dict(
        schema_version=SCHEMA_VERSION,
        problem=problem_info(shooting.problem, spec),
        N=d["N"],
        scheme=d["scheme"],
        metric=d["metric"],
        step_rule=step_rule,
        step=d["step"],
        verdict=d["verdict"],
        headline="",
        equilibrium=d["equilibrium"],
        trajectory=trajectory(shooting, report.equilibrium.U),
        spectrum=d["spectrum"],
        classification=d["classification"],
        euler=euler,
        tolerance=d["tolerance"],
        replay=d["replay"],
        equivalence=d["equivalence"],
        equivalence_sweep=[c.to_dict() for c in equivalence_sweep],
        equivalence_holds=bool(worst < ROUNDING),
        settings=settings,
        figures=list(figures),
        timings=dict(timings or {}),
        versions=versions(),
    )
    doc = jsonable(doc)
    doc["headline"] = headline(doc)
    return doc


def headline(doc: dict[str, Any]) -> str:
    """The verdict in one sentence: the problem and settings, then
    `StabilityReport.verdict`."""
    return (
        f"For {doc['problem']['name']} at N = {doc['N']} ({doc['scheme']}, "
        f"{doc['metric']} metric), {doc['verdict']}."
    )


# --------------------------------------------------------------------------
# The run.


class ProblemError(ValueError):
    """The analysis of a problem failed on bad input: a `ValueError` or `TypeError`
    raised while discretising or analysing it (a user function that cannot be
    traced by JAX, shapes that only fail under `jit`, a grid too small for an
    option). The message names the problem; the original error is the cause."""


@dataclasses.dataclass(frozen=True)
class AnalysisRun:
    """What [`run_analysis`][stability._report.run_analysis] produced: the
    `report` ([`StabilityReport`][stability.StabilityReport]), the `document`
    written to `results.json`, and the paths of every file written (`files`)."""

    report: StabilityReport
    document: dict[str, Any]
    files: tuple[Path, ...]

    def __repr__(self) -> str:
        return f"AnalysisRun({self.report!r}, {len(self.files)} files)"


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    yield


def run_analysis(
    problem: flow.OptimalControlProblem,
    *,
    spec: str | None = None,
    N: int = 200,
    scheme: str = "euler",
    metric: str = "hamiltonian",
    step: Any = "optimal",
    eps: float = 1e-6,
    iterations: int = 20_000,
    equivalence_N: Sequence[int] = EQUIVALENCE_N,
    out: str | Path = "gradflow-out",
    figures: bool = True,
    stage: Callable[[str], AbstractContextManager[Any]] | None = None,
) -> AnalysisRun:
    """The whole `gradflow analyze` run on `problem`, written into `out`.

    1. `stability.analyze(flow.shoot(problem, N, scheme), metric=metric, step=...,
       eps=eps, iterations=iterations)` (U0 = zeros; the other options at
       `analyze`'s defaults);
    2. `flow.check_gradients` at `flow.probe_control` for every N in
       `equivalence_N` (the analysis' own check is reused at its N);
    3. the figures (`figures._report.draw`: spectrum over the stability disk, the
       replay's residual against the predicted rate, the equilibrium's controls and
       costates) as PNG and PDF, unless `figures=False`;
    4. `results.json` and `report.md`.

    `step`: `"optimal"`, `"hamiltonian"`, `"none"` or a positive number (see
    `STEP_RULES`). `stage(name)` is entered around each stage (for a progress
    display). `spec` names the problem in the outputs (default its name).

    **Returns:** an [`AnalysisRun`][stability._report.AnalysisRun].

    **Raises:** `ValueError`/`TypeError` for bad arguments (from here or from
    `flow`/`stability`).
    """
    if not isinstance(problem, flow.OptimalControlProblem):
        raise TypeError(
            f"`problem` must be a flow.OptimalControlProblem; got {type(problem).__name__}."
        )
    for name, value in [("N", N), *(("equivalence_N", n) for n in equivalence_N)]:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be an integer >= 1; got {value!r}.")
    if (
        isinstance(eps, bool)
        or not isinstance(eps, int | float)
        or not (math.isfinite(eps) and eps > 0)
    ):
        raise ValueError(f"`eps` must be a finite positive number; got {eps!r}.")
    spec = problem.name if spec is None else spec
    stage = _quiet if stage is None else stage
    scheme_obj = flow.scheme_from_name(scheme)
    metric_obj = flow.metrics.metric_from_name(metric)
    out = Path(out)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()

    with stage(f"analysis at N = {N} (equilibrium, spectrum, Euler bound, replay)"):
        t0 = time.perf_counter()
        sh = flow.shoot(problem, N, scheme_obj)
        step_arg = resolve_step(step, sh)
        if step is None or step == "none":
            step_rule = "none"
        elif step in ("optimal", "hamiltonian"):
            step_rule = step
        else:
            step_rule = "value"
        with _problem_errors(spec):
            report = analyze(sh, metric=metric_obj, step=step_arg, eps=eps, iterations=iterations)
        timings["analysis"] = time.perf_counter() - t0

    Ns = sorted(set(equivalence_N) | {N})
    with stage(f"gradient equivalence at N = {', '.join(map(str, Ns))}"):
        t0 = time.perf_counter()
        with _problem_errors(spec):
            sweep = [
                report.equivalence
                if n == N
                else flow.check_gradients(flow.shoot(problem, n, scheme_obj))
                for n in Ns
            ]
        timings["equivalence_sweep"] = time.perf_counter() - t0

    settings = jsonable(
        dict(
            eps=eps,
            U0="zeros",
            iterations=iterations,
            replay_tol=_ANALYZE_DEFAULTS["replay_tol"],
            equilibrium_tol=_ANALYZE_DEFAULTS["equilibrium_tol"],
            k=_ANALYZE_DEFAULTS["k"],
            equivalence_N=Ns,
        )
    )

    def document(figs: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return results_document(
            report,
            shooting=sh,
            spec=spec,
            step_rule=step_rule,
            equivalence_sweep=sweep,
            settings=settings,
            timings=timings,
            figures=figs,
        )

    files: list[Path] = []
    figs: list[dict[str, Any]] = []
    if figures:
        with stage("figures (PNG and PDF)"):
            t0 = time.perf_counter()
            from figures import _report as report_figures

            figs = report_figures.draw(document([]), out)
            files += [out / f[k] for f in figs for k in ("png", "pdf")]
            timings["figures"] = time.perf_counter() - t0

    with stage("results.json and report.md"):
        out.mkdir(parents=True, exist_ok=True)
        timings["total"] = time.perf_counter() - t_start
        doc = document(figs)
        (out / "results.json").write_text(dumps(doc) + "\n", encoding="utf-8")
        (out / "report.md").write_text(render_markdown(doc), encoding="utf-8")
        files = [out / "results.json", out / "report.md", *files]
    return AnalysisRun(report=report, document=doc, files=tuple(files))


@contextmanager
def _problem_errors(spec: str) -> Iterator[None]:
    try:
        yield
    except (ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        hint = ""
        if isinstance(e, jax.errors.JAXTypeError):
            hint = (
                " (the problem's functions must be traceable by JAX: jnp operations, "
                "no Python if/for on the state or control)"
            )
        raise ProblemError(f"analysing {spec} failed: {type(e).__name__}: {first}{hint}") from e


def dumps(doc: dict[str, Any]) -> str:
    """`doc` as strict JSON (no NaN), indented; floats round-trip exactly."""
    return json.dumps(doc, indent=2, allow_nan=False)


# --------------------------------------------------------------------------
# The Markdown report.


def _g(x: Any, spec: str = ".4g") -> str:
    if x is None:
        return "n/a"
    if isinstance(x, dict):  # a complex number
        return f"{x['real']:{spec}} {'+' if x['imag'] >= 0 else '-'} {abs(x['imag']):{spec}}i"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    return format(x, spec)


def _e(x: Any) -> str:
    return _g(x, ".2e")


def _text(s: str) -> str:
    """Plain text made safe for Markdown: `|` would end a table cell and `*`, `_`
    start emphasis."""
    for c in ("\\", "|", "*", "_"):
        s = s.replace(c, "\\" + c)
    return s


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [
        "| " + " | ".join(_text(h) for h in header) + " |",
        "|" + "|".join(" --- " for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(_text(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _figure(doc: dict[str, Any], name: str) -> str:
    for f in doc["figures"]:
        if f["name"] == name:
            return (
                f"![{_text(f['title'])}]({f['png']})\n\n"
                f"**Figure: {_text(f['title'])}.** {_text(f['caption'])} "
                f"([PDF]({f['pdf']}))\n"
            )
    return ""


def render_markdown(doc: dict[str, Any]) -> str:
    """`report.md`: what was analysed, the verdict in one sentence, a table per
    section (equilibrium, spectrum and classification, forward-Euler bound,
    Theorem 5.14, replay, gradient equivalence) and the figures embedded by
    relative path (the report sits next to them). Formulas in the prose are
    `$...$` (rendered by GitHub and mkdocs' arithmatex); tables and captions are
    plain text."""
    p, eq, sp, cl = doc["problem"], doc["equilibrium"], doc["spectrum"], doc["classification"]
    eu, tol, rp = doc["euler"], doc["tolerance"], doc["replay"]
    parts = [f"# Gradient-flow analysis of {_text(p['name'])}\n"]
    parts.append(f"**Verdict.** {_text(doc['headline'])}\n")
    parts.append(
        "The optimizer $U_{i+1} = U_i - \\alpha M^{-1} \\nabla E^N(U_i)$ (eq. (37)) is "
        "forward Euler with step $\\alpha$ on the gradient flow "
        "$dU/d\\tau = -M^{-1} \\nabla E^N(U)$ (eq. (50)). This report finds the flow's "
        "equilibrium $U^\\star$, the eigenvalues $\\mu$ of its Jacobian "
        "$J = -M^{-1} \\nabla^2 E^N(U^\\star)$ and the steps for which descent is stable "
        "($|1 + \\alpha\\mu| < 1$), replays the descent to compare the observed rate "
        "with the predicted one, and checks that the direct gradient is the "
        "Hamiltonian gradient in disguise (Lemma 2: $\\nabla E^N = h \\partial H/\\partial u$).\n"
    )
    parts.append("## What was analysed\n")
    step_text = {
        "optimal": "optimal: α_opt (α_max/2 for a complex spectrum)",
        "hamiltonian": "hamiltonian: α h = 1 (section 6.2)",
        "none": "none (no replay)",
        "value": "given",
    }[doc["step_rule"]]
    parts.append(
        _table(
            ["setting", "value"],
            [
                ["problem", f"{p['spec']}: {p['description'] or 'user problem'}"],
                ["state and control dimensions", f"n = {p['state_dim']}, m = {p['control_dim']}"],
                ["running cost", _g(p["running_cost"])],
                ["horizon", f"[{_g(p['t0'])}, {_g(p['tf'])}]"],
                ["grid", f"N = {doc['N']} uniform intervals, h = {_g(tol['min_step'])}"],
                ["scheme", doc["scheme"]],
                ["metric M", doc["metric"]],
                ["step rule", step_text],
                ["step α", _g(doc["step"])],
                ["gradient tolerance ε (Theorem 5.14)", _e(tol["eps"])],
            ],
        )
    )
    parts.append("## Equilibrium\n")
    parts.append(
        f"The stationary point $U^\\star$ of $E^N$ ($\\nabla E^N = 0$, eq. (51)), by "
        f"trust-region Newton-CG from $U = 0$: **{eq['status']}** "
        f"({_text(eq['message'])}).\n"
    )
    parts.append(
        _table(
            ["quantity", "value"],
            [
                ["E^N(U*)", _g(eq["cost"], ".10g")],
                ["max |∇E^N(U*)| (eq. (54))", _e(eq["gradient_norm"])],
                ["max_k |∂H/∂u_k| at U* (eq. (55))", _e(eq["hamiltonian_residual"])],
                ["trust-region iterations", _g(eq["iterations"])],
                ["Hessian-vector products", _g(eq["n_hvp"])],
            ],
        )
    )
    parts.append(_figure(doc, "equilibrium"))
    parts.append("## Spectrum and classification\n")
    parts.append(
        f"Eigenvalues of $J$: {_text(sp['message'])}. The equilibrium is "
        f"**{cl['status']}** ({_text(cl['message'])}).\n"
    )
    clusters = ", ".join(
        f"{_g(c['position'])} ± {_g(c['halfwidth'], '.2g')} ({100 * c['weight']:.0f}% of "
        f"the eigenvalues)"
        for c in sp["clusters"]
    )
    parts.append(
        _table(
            ["quantity", "value"],
            [
                ["eigenvalues computed", f"{_n_eigs(sp)} of N m = {sp['size']} ({sp['method']})"],
                ["stiff end (most negative Re μ)", f"{_g(sp['stiff'])} ({sp['stiff_status']})"],
                ["slow end (largest Re μ)", f"{_g(sp['slow'])} ({sp['slow_status']})"],
                ["max |μ|", _g(sp["norm"])],
                [
                    "stable / zero / unstable",
                    f"{cl['n_stable']} / {cl['n_zero']} / {cl['n_unstable']}",
                ],
                ["dimension of the manifold of equilibria", _g(cl["manifold_dimension"])],
                ["clusters", clusters or "none"],
            ],
        )
    )
    parts.append("## Forward-Euler step bound\n")
    parts.append(
        f"Descent with step $\\alpha$ is linearly stable at $U^\\star$ iff every "
        f"$\\alpha\\mu$ lies in the disk $|1 + z| < 1$; the error then shrinks by "
        f"$\\rho(\\alpha) = \\max_\\mu |1 + \\alpha\\mu|$ per step. Here: "
        f"{_text(eu['message'])}.\n"
    )
    parts.append(
        _table(
            ["quantity", "value"],
            [
                ["α_max = min -2 Re μ / |μ|²", _g(eu["alpha_max"])],
                ["α_opt = 2 / (|μ_stiff| + |μ_slow|)", _g(eu["alpha_opt"])],
                ["ρ(α_opt)", _g(eu["rho_opt"])],
                [
                    f"predicted iterations at α_opt (error reduced by {_g(eu['reduction'])})",
                    _g(eu["iterations_opt"]),
                ],
                ["chosen step α", _g(eu["step"])],
                ["ρ(α) at the chosen step", _g(eu["rate_at_step"])],
                ["predicted iterations at α", _g(eu["iterations_at_step"])],
                ["zero eigenvalues left out (manifold directions)", _g(eu["n_excluded"])],
            ],
        )
    )
    parts.append(_figure(doc, "spectrum"))
    parts.append("## Theorem 5.14: the gradient tolerance on the Hamiltonian condition\n")
    parts.append(
        "Since $\\nabla E^N = h \\partial H/\\partial u$, a tolerance $\\varepsilon$ on "
        "the gradient is only $\\varepsilon/h$ on the Hamiltonian condition; stop at "
        "$\\varepsilon h$ to meet $\\varepsilon$ there.\n"
    )
    parts.append(
        _table(
            ["stopping rule", "guarantees"],
            [
                [
                    f"max |∇E^N| ≤ ε = {_e(tol['eps'])}",
                    f"max |∂H/∂u| ≤ ε / h = {_e(tol['hamiltonian_tolerance'])}",
                ],
                [
                    f"max |∇E^N| ≤ ε h = {_e(tol['gradient_tolerance_for_eps_H'])}",
                    f"max |∂H/∂u| ≤ ε = {_e(tol['eps'])}",
                ],
            ],
        )
    )
    parts.append("## Replay of the descent\n")
    if rp is None:
        parts.append("No replay: no step was chosen (`--step none`) or no step is stable.\n")
    else:
        agrees = {True: "agree", False: "**disagree**", None: "were not compared"}[rp["agrees"]]
        parts.append(
            f"`flow.descend` from $U = 0$ with $\\alpha$ = {_g(rp['step'])}, stopping when "
            f"$\\max_k |\\partial H/\\partial u_k| \\le$ {_e(doc['settings']['replay_tol'])}: "
            f"{_text(rp['status'])}. The observed rate (a fit over the last half of the "
            f"run) and the predicted $\\rho(\\alpha)$ {agrees} (log-rates within 10%).\n"
        )
        parts.append(
            _table(
                ["quantity", "value"],
                [
                    ["iterations", _g(rp["n_iterations"])],
                    ["final max |∂H/∂u|", _e(rp["hamiltonian_norm"][-1])],
                    ["final E^N", _g(rp["cost"][-1], ".10g")],
                    ["predicted rate ρ(α)", _g(rp["predicted_rate"])],
                    ["observed rate", _g(rp["observed_rate"])],
                    [
                        "diverged",
                        "no" if rp["diverged_at"] < 0 else f"at iteration {rp['diverged_at']}",
                    ],
                ],
            )
        )
        parts.append(_figure(doc, "replay"))
    parts.append("## Gradient equivalence (Lemma 2)\n")
    holds = "hold to rounding" if doc["equivalence_holds"] else "**do not hold to rounding**"
    parts.append(
        f"At the smooth probe control $u_k = \\sin(\\pi s_k + 1)/2$, the costate gradient "
        f"and Lemma 2 {holds} (below {ROUNDING:.0e} relative). Columns costate, finite "
        f"differences and Lemma 2 are max|a - b| / max|∇E^N| against autodiff.\n"
    )
    parts.append(
        _table(
            ["N", "E^N(U)", "max |∇E^N|", "max |∂H/∂u|", "costate", "finite diff.", "Lemma 2"],
            [
                [
                    str(c["N"]),
                    _g(c["cost"], ".6g"),
                    _e(c["gradient_norm"]),
                    _e(c["hamiltonian_residual"]),
                    _e(c["costate_vs_autodiff"]),
                    _e(c["fd_vs_autodiff"]),
                    _e(c["lemma2"]),
                ]
                for c in doc["equivalence_sweep"]
            ],
        )
    )
    parts.append("## Versions\n")
    versions_text = ", ".join(f"{k} {v}" for k, v in doc["versions"].items() if v is not None)
    parts.append(
        f"{_text(versions_text)}. All numbers: `results.json` (schema version "
        f"{doc['schema_version']}, `stability/results.schema.json`).\n"
    )
    return "\n".join(parts)


def _n_eigs(sp: dict[str, Any]) -> int:
    e = sp["eigenvalues"]
    return len(e["real"]) if isinstance(e, dict) else len(e)
