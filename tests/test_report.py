"""The `gradflow analyze` results document, its JSON Schema, figures and report.md.

The schema is read from the file in the source tree (the one shipped in the
package), so the document cannot drift from it silently.
"""

import copy
import html as html_module
import json
import math
import pathlib
import re

import numpy as np
import pytest
from markdown_it import MarkdownIt

import flow
import stability
from stability import _report


ROOT = pathlib.Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "stability" / "results.schema.json"
N = 50


@pytest.fixture(scope="module")
def schema():
    return json.loads(SCHEMA_PATH.read_text())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis")
    problem = flow.problems.get("scalar_regularized")
    return _report.run_analysis(
        problem, spec="scalar_regularized", N=N, equivalence_N=(N,), out=out
    ), out


# ---------------------------------------------------------------- the schema


def test_document_validates_against_the_schema_file(run, schema):
    run, _ = run
    assert _report.validate(run.document, schema) == []
    assert _report.load_schema() == schema  # the package reads the same file


def test_schema_is_draft_2020_12_and_documents_every_key(schema):
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    for key in (
        "problem",
        "N",
        "scheme",
        "metric",
        "step",
        "equilibrium",
        "spectrum",
        "classification",
        "euler",
        "tolerance",
        "replay",
        "equivalence",
        "versions",
        "schema_version",
    ):
        assert key in schema["required"] and "description" in schema["properties"][key]
    assert {"alpha_max", "alpha_opt", "rate_at_step"} <= set(
        schema["properties"]["euler"]["required"]
    )

    # every closed object lists all its properties as required: a key the output
    # may leave out must be made nullable instead, so consumers can rely on it
    def closed_objects(node):
        if isinstance(node, dict):
            if node.get("additionalProperties") is False:
                yield node
            for v in node.values():
                yield from closed_objects(v)
        elif isinstance(node, list):
            for v in node:
                yield from closed_objects(v)

    objects = list(closed_objects(schema))
    assert len(objects) >= 10
    for node in objects:
        assert sorted(node["required"]) == sorted(node["properties"])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("euler"), "missing required key 'euler'"),
        (lambda d: d.update(extra=1), "unexpected key 'extra'"),
        (lambda d: d.update(N="50"), "$.N: expected integer"),
        (lambda d: d.update(N=True), "$.N: expected integer"),
        (lambda d: d.update(N=0), "below the minimum"),
        (lambda d: d.update(scheme="midpoint"), "not one of"),
        (lambda d: d.update(schema_version=2), "expected 1"),
        (lambda d: d["euler"].update(alpha_max=math.nan), "not a JSON number"),
        (lambda d: d["euler"].update(alpha_max="big"), "$.euler.alpha_max"),
        (lambda d: d["replay"].update(agrees="yes"), "$.replay.agrees"),
        (lambda d: d["spectrum"]["eigenvalues"].append("x"), "$.spectrum.eigenvalues"),
        (lambda d: d["trajectory"].pop("t"), "missing required key 't'"),
    ],
)
def test_validator_reports_violations(run, schema, mutate, message):
    doc = copy.deepcopy(run[0].document)
    mutate(doc)
    errors = _report.validate(doc, schema)
    assert errors and any(message in e for e in errors), errors


def test_validator_accepts_complex_spectra_and_nulls(run, schema):
    doc = copy.deepcopy(run[0].document)
    mu = doc["spectrum"]["eigenvalues"]
    doc["spectrum"]["eigenvalues"] = {"real": mu, "imag": [0.5] * len(mu)}
    doc["euler"]["limiting"] = {"real": -1.0, "imag": 0.5}
    doc["replay"] = None
    doc["step"] = None
    assert _report.validate(doc, schema) == []


def test_validator_refuses_unknown_keywords():
    with pytest.raises(ValueError, match="patternProperties"):
        _report.validate({}, {"type": "object", "patternProperties": {}})


# ---------------------------------------------------------------- round trips


def test_round_trips(run):
    run, out = run
    doc = run.document
    assert json.loads(json.dumps(doc)) == doc
    assert json.loads((out / "results.json").read_text()) == doc
    assert [p.name for p in run.files[:2]] == ["results.json", "report.md"]


# ------------------------------------------------- numbers equal the Python API


def _rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


def test_numbers_equal_the_python_api(run):
    doc = run[0].document
    problem = flow.problems.get("scalar_regularized")
    report = stability.analyze(flow.shoot(problem, N, flow.Euler()), metric="hamiltonian")
    # The same deterministic computation in the same process: equal up to the last
    # bits a differently-scheduled BLAS reduction could change (1e-12 relative).
    pairs = {
        "alpha_max": (doc["euler"]["alpha_max"], report.euler.alpha_max),
        "alpha_opt": (doc["euler"]["alpha_opt"], report.euler.alpha_opt),
        "rho_opt": (doc["euler"]["rho_opt"], report.euler.rho_opt),
        "step": (doc["step"], report.step),
        "rate_at_step": (doc["euler"]["rate_at_step"], report.predicted_rate),
        "observed_rate": (doc["replay"]["observed_rate"], report.observed_rate),
        "mu_min": (min(doc["spectrum"]["eigenvalues"]), float(np.min(report.spectrum.eigenvalues))),
        "mu_max": (max(doc["spectrum"]["eigenvalues"]), float(np.max(report.spectrum.eigenvalues))),
        "stiff": (doc["spectrum"]["stiff"], report.spectrum.stiff),
        "slow": (doc["spectrum"]["slow"], report.spectrum.slow),
        "cost": (doc["equilibrium"]["cost"], report.equilibrium.cost),
        "lemma2": (doc["equivalence"]["lemma2"] + 1.0, report.equivalence.lemma2 + 1.0),
    }
    for key, value in report.tolerance.items():
        pairs[f"tolerance.{key}"] = (doc["tolerance"][key], value)
    for name, (a, b) in pairs.items():
        assert _rel(a, b) <= 1e-12, (name, a, b)
    # the equilibrium's gradient norm is at rounding level (~1e-12): absolute
    assert abs(doc["equilibrium"]["gradient_norm"] - report.equilibrium.gradient_norm) <= 1e-14
    assert doc["equilibrium"]["gradient_norm"] <= doc["settings"]["equilibrium_tol"]
    assert doc["classification"]["status"] == report.classification.status
    assert doc["replay"]["n_iterations"] == int(report.replay.n_iterations)
    assert doc["verdict"] == report.verdict
    assert doc["N"] == N and doc["metric"] == "hamiltonian" and doc["scheme"] == "euler"


def test_numbers_agree_with_independent_formulas(run):
    """Recompute from the document's own eigenvalues with numpy: the bound, the
    rate at the step, Theorem 5.14 (h = 1/N on [0, 1]) and the trajectory's
    Lemma 2 consistency."""
    doc = run[0].document
    mu = np.array(doc["spectrum"]["eigenvalues"])
    assert mu.shape == (N,) and np.all(mu < 0)
    alpha = doc["step"]
    # 1e-13: a min / max over N values and one division, all well conditioned
    assert _rel(doc["euler"]["alpha_max"], np.min(-2.0 / mu)) <= 1e-13
    assert _rel(doc["euler"]["alpha_opt"], 2.0 / (-mu.min() - mu.max())) <= 1e-13
    assert _rel(doc["euler"]["rate_at_step"], np.max(np.abs(1 + alpha * mu))) <= 1e-13
    h = 1.0 / N
    assert _rel(doc["tolerance"]["min_step"], h) <= 1e-13
    assert _rel(doc["tolerance"]["hamiltonian_tolerance"], 1e-6 / h) <= 1e-13
    assert _rel(doc["tolerance"]["gradient_tolerance_for_eps_H"], 1e-6 * h) <= 1e-13
    # the paper's regularised problem: dH/du = u + lambda (H = lambda f + u^2/2 with
    # f_u = 1), so at the equilibrium u_k = -lambda_k to the equilibrium tolerance / h
    tr = doc["trajectory"]
    U, lam = np.array(tr["controls"]), np.array(tr["costates"])
    assert U.shape == (N, 1) and lam.shape == (N, 1) and len(tr["t"]) == N + 1
    assert np.max(np.abs(U + lam)) <= doc["settings"]["equilibrium_tol"] / h


# --------------------------------------------------------- figures and report


def test_figures_are_written(run):
    run, out = run
    names = [f["name"] for f in run.document["figures"]]
    assert names == ["spectrum", "replay", "equilibrium"]
    for f in run.document["figures"]:
        png, pdf = out / f["png"], out / f["pdf"]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000


def test_report_renders_as_a_page(run):
    run, out = run
    text = (out / "report.md").read_text()
    html = MarkdownIt("commonmark").enable("table").render(text)
    assert html.count("<h1>") == 1 and html.count("<h2>") >= 7
    assert html.count("<table>") >= 7
    images = re.findall(r'<img src="([^"]+)"', html)
    assert images == ["equilibrium.png", "spectrum.png", "replay.png"]
    for name in images:
        assert (out / name).is_file()
    # the verdict sentence, escaped for Markdown, reads back unchanged
    assert run.document["headline"] in html_module.unescape(re.sub(r"<[^>]+>", "", html))
    assert "<em>" not in html  # no stray emphasis from `*` or `_` in formulas or names
    # every row of the equivalence table made it into an HTML table row
    assert html.count("<tr>") >= 30


# ---------------------------------------------------------------- step rules


def test_resolve_step():
    sh = flow.shoot(flow.problems.get("scalar_regularized"), 40)
    assert _report.resolve_step("optimal", sh) == "optimal"
    assert _report.resolve_step("none", sh) is None and _report.resolve_step(None, sh) is None
    assert _report.resolve_step("hamiltonian", sh) == pytest.approx(40.0, rel=1e-13)  # 1/h
    assert _report.resolve_step("0.25", sh) == 0.25 and _report.resolve_step(2, sh) == 2.0
    for bad in ("fast", "-1", "nan", "inf", 0.0, -2.0):
        with pytest.raises(ValueError, match="step"):
            _report.resolve_step(bad, sh)
    with pytest.raises(TypeError, match="step"):
        _report.resolve_step(True, sh)


def test_no_replay_and_a_saddle_validate(tmp_path, schema):
    """double_well at U = 0 is a saddle: no stable step, so no replay; the nulls
    must fit the schema and the figures must still be drawn."""
    run = _report.run_analysis(
        flow.problems.get("double_well"), N=40, equivalence_N=(40,), out=tmp_path
    )
    doc = run.document
    assert _report.validate(doc, schema) == []
    assert doc["classification"]["status"] == "saddle"
    assert doc["euler"]["alpha_max"] is None and doc["replay"] is None and doc["step"] is None
    assert [f["name"] for f in doc["figures"]] == ["spectrum", "equilibrium"]
    assert "No replay" in (tmp_path / "report.md").read_text()


def test_bad_arguments_raise():
    problem = flow.problems.get("scalar_regularized")
    with pytest.raises(TypeError, match="problem"):
        _report.run_analysis("scalar_regularized")
    for kwargs, word in [
        (dict(N=0), "N"),
        (dict(equivalence_N=(10, 0)), "equivalence_N"),
        (dict(eps=-1.0), "eps"),
        (dict(scheme="midpoint"), "scheme"),
        (dict(metric="euclid"), "metric"),
    ]:
        with pytest.raises(ValueError, match=word):
            _report.run_analysis(problem, figures=False, **kwargs)


def test_replay_figure_growth_and_divergence(run, tmp_path):
    """A step outside the bound (rho > 1, a long run that saturates) and a run that
    diverged at once (a non-finite residual, None in JSON) draw without warnings
    (warnings are errors here) and say so in the caption."""
    from figures import _report as report_figures

    doc = copy.deepcopy(run[0].document)
    rp = doc["replay"]
    growth = [min(1.74 ** min(k, 20), 220.0) for k in range(3001)]
    rp.update(
        hamiltonian_norm=growth,
        predicted_rate=1.74,
        observed_rate=1.0,
        agrees=None,
        n_iterations=3000,
        status="stopped: the iteration limit was reached",
    )
    entry = report_figures.replay(doc, tmp_path / "growth")
    assert "were not compared" in entry["caption"]
    assert (tmp_path / "growth" / "replay.png").stat().st_size > 10_000
    rp.update(
        hamiltonian_norm=[7.0, None],
        predicted_rate=2.3e5,
        observed_rate=None,
        n_iterations=1,
        diverged_at=1,
        status="diverged: a non-finite value appeared",
    )
    entry = report_figures.replay(doc, tmp_path / "diverged")
    assert "diverged after 1 iterations" in entry["caption"]
    assert (tmp_path / "diverged" / "replay.pdf").stat().st_size > 5_000
