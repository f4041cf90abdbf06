"""The `gradflow analyze` results document, its JSON Schema (checked with the
`jsonschema` library), reading it back, the figures and report.md.

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
import gradflow
import stability
from figures import report as report_figures


ROOT = pathlib.Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "gradflow" / "results.schema.json"
N = 50


@pytest.fixture(scope="module")
def schema():
    return json.loads(SCHEMA_PATH.read_text())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis")
    problem = flow.problems.get("scalar_regularized")
    return gradflow.run_analysis(
        problem, spec="scalar_regularized", N=N, equivalence_N=(N,), out=out
    ), out


# ---------------------------------------------------------------- the schema


def test_document_validates_against_the_schema_file(run, schema):
    import jsonschema

    run, _ = run
    jsonschema.Draft202012Validator.check_schema(schema)  # the schema itself is valid
    assert gradflow.validate_results(run.document) == []
    assert gradflow.load_schema() == schema  # the package reads the same file
    assert run.document["schema_version"] == gradflow.SCHEMA_VERSION == 3


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
            if (
                node.get("additionalProperties") is False
                or node.get("unevaluatedProperties") is False
            ):
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
    # every result section carries the one status vocabulary
    result = schema["$defs"]["result"]
    assert result["required"] == ["status", "success", "message"]
    names = set(flow.indirect.RESULTS._name_to_item)
    assert set(result["properties"]["status"]["enum"]) == names


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("euler"), "'euler' is a required property"),
        (lambda d: d.update(extra=1), "'extra' was unexpected"),
        (lambda d: d.update(N="50"), "$.N: '50' is not of type 'integer'"),
        (lambda d: d.update(N=True), "$.N: True is not of type 'integer'"),
        (lambda d: d.update(N=0), "less than the minimum"),
        (lambda d: d.update(scheme="midpoint"), "is not one of"),
        (lambda d: d.update(schema_version=1), "3 was expected"),
        (lambda d: d.update(status="fine"), "$.status"),
        (lambda d: d["equilibrium"].pop("status"), "'status' is a required property"),
        (lambda d: d["euler"].update(alpha_max=math.nan), "not a JSON number"),
        (lambda d: d["euler"].update(alpha_max="big"), "$.euler.alpha_max"),
        (lambda d: d["replay"].update(agrees="yes"), "$.replay.agrees"),
        (lambda d: d["spectrum"]["eigenvalues"].append("x"), "$.spectrum.eigenvalues"),
        (lambda d: d["trajectory"].pop("t"), "'t' is a required property"),
    ],
)
def test_validator_reports_violations(run, mutate, message):
    doc = copy.deepcopy(run[0].document)
    mutate(doc)
    errors = gradflow.validate_results(doc)
    assert errors and any(message in e for e in errors), errors


def test_validator_accepts_complex_spectra_and_nulls(run, schema):
    doc = copy.deepcopy(run[0].document)
    mu = doc["spectrum"]["eigenvalues"]
    doc["spectrum"]["eigenvalues"] = {"real": mu, "imag": [0.5] * len(mu)}
    doc["euler"]["limiting"] = {"real": -1.0, "imag": 0.5}
    doc["replay"] = None
    doc["step"] = None
    doc["equivalence"] = None
    assert gradflow.validate_results(doc) == []


# ---------------------------------------------------------------- round trips


def test_round_trips(run):
    run, out = run
    doc = run.document
    assert json.loads(json.dumps(doc, allow_nan=False)) == doc
    assert json.loads((out / "results.json").read_text()) == doc
    assert gradflow.load_results(out / "results.json") == doc
    assert [p.name for p in run.files[:2]] == ["results.json", "report.md"]


def test_load_results_refuses_what_is_not_a_document(run, tmp_path):
    doc = copy.deepcopy(run[0].document)
    with pytest.raises(FileNotFoundError):
        gradflow.load_results(tmp_path / "missing.json")
    (tmp_path / "text.json").write_text("not json")
    with pytest.raises(ValueError, match="not a JSON document"):
        gradflow.load_results(tmp_path / "text.json")
    old = dict(doc, schema_version=1)
    (tmp_path / "old.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="schema version 1"):
        gradflow.load_results(tmp_path / "old.json")
    broken = copy.deepcopy(doc)
    broken["euler"]["alpha_max"] = "big"
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(ValueError, match=r"\$\.euler\.alpha_max"):
        gradflow.load_results(tmp_path / "broken.json")


def test_figures_redraw_from_a_loaded_document_and_from_a_report(run, tmp_path):
    """The public plotting helpers draw a report's figures again, from
    results.json read back and from a StabilityReport, with the same captions."""
    run, out = run
    loaded = gradflow.load_results(out / "results.json")
    from_doc = report_figures.draw(loaded, tmp_path / "doc")
    from_report = report_figures.draw(run.report, tmp_path / "report")
    assert [e["name"] for e in from_doc] == ["spectrum", "replay", "equilibrium"]
    assert [e["caption"] for e in from_doc] == [e["caption"] for e in from_report]
    assert [e["caption"] for e in from_doc] == [f["caption"] for f in run.document["figures"]]
    for e in from_report:
        assert (tmp_path / "report" / e["png"]).stat().st_size > 10_000
    with pytest.raises(TypeError, match="source"):
        report_figures.draw(3, tmp_path)


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
        if isinstance(value, str):
            assert doc["tolerance"][key] == value
        else:
            pairs[f"tolerance.{key}"] = (doc["tolerance"][key], value)
    for name, (a, b) in pairs.items():
        assert _rel(a, b) <= 1e-12, (name, a, b)
    # the equilibrium's gradient norm is at rounding level (~1e-12): absolute
    assert abs(doc["equilibrium"]["gradient_norm"] - report.equilibrium.gradient_norm) <= 1e-14
    assert doc["equilibrium"]["hamiltonian_residual"] <= doc["settings"]["equilibrium_tol"]
    assert doc["classification"]["kind"] == report.classification.kind
    assert doc["replay"]["num_steps"] == int(report.replay.num_steps)
    assert doc["status"] == report.status == "converged"
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
    tol = doc["settings"]["tol"]
    assert tol == doc["tolerance"]["tol"] == 1e-8
    assert _rel(doc["tolerance"]["min_step"], h) <= 1e-13
    assert _rel(doc["tolerance"]["tol_over_h"], tol / h) <= 1e-13
    assert _rel(doc["tolerance"]["tol_times_h"], tol * h) <= 1e-13
    # the paper's regularised problem: dH/du = u + lambda (H = lambda f + u^2/2 with
    # f_u = 1), so at the equilibrium u_k = -lambda_k to the equilibrium tolerance (on
    # the Hamiltonian residual), up to the rounding of the costate recursion
    tr = doc["trajectory"]
    U, lam = np.array(tr["controls"]), np.array(tr["costates"])
    assert U.shape == (N, 1) and lam.shape == (N, 1) and len(tr["t"]) == N + 1
    assert np.max(np.abs(U + lam)) <= doc["settings"]["equilibrium_tol"] + 1e-14


# --------------------------------------------------------- figures and report


def test_figures_are_written(run):
    run, out = run
    names = [f["name"] for f in run.document["figures"]]
    assert names == ["spectrum", "replay", "equilibrium"]
    for f in run.document["figures"]:
        png, pdf = out / f["png"], out / f["pdf"]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000


def test_figure_files_are_deterministic_tight_and_searchable(run, tmp_path):
    """Drawn twice, the figures are byte-identical; each PNG is cut to the padded
    tight box (a margin of background all round: nothing clipped, whether it was cut
    from the one raster or, where the title overhangs the figure, drawn by savefig);
    the PDF's fonts are embedded TrueType with ToUnicode maps (selectable and
    searchable text)."""
    from PIL import Image

    doc = run[0].document
    first = report_figures.draw(doc, tmp_path / "a")
    report_figures.draw(doc, tmp_path / "b")
    for entry in first:
        for name in (entry["png"], entry["pdf"]):
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        img = np.asarray(Image.open(tmp_path / "a" / entry["png"]).convert("RGB"))
        frame = np.concatenate([img[:8].reshape(-1, 3), img[-8:].reshape(-1, 3)])
        frame = np.concatenate([frame, img[:, :8].reshape(-1, 3), img[:, -8:].reshape(-1, 3)])
        assert np.all(frame == 255), entry["png"]  # savefig.pad_inches = 0.1 in = 15 px
        assert np.any(img[:24] != 255) and np.any(img[:, :24] != 255)  # and no more
        pdf = (tmp_path / "a" / entry["pdf"]).read_bytes()
        # embedded TrueType (Type 0 + CID), no Type 3 fonts, which publishers refuse
        fonts = pdf.count(b"/Subtype /Type0")
        assert fonts >= 2 and b"/Subtype /Type3" not in pdf
        assert pdf.count(b"/ToUnicode") == fonts


def _same_files(a, b, entries):
    for entry in entries:
        for name in (entry["png"], entry["pdf"]):
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_the_figures_process_draws_the_same_files(run, tmp_path, monkeypatch):
    """gradflow analyze's figures process (started before the analysis) draws what
    this process would (the same entries, byte-identical files): the drawing here
    is disabled, so the files can only come from it, where one child per core draws
    them; and it says nothing."""
    import warnings

    import matplotlib.pyplot as plt

    from gradflow import _figure_worker

    doc = run[0].document
    here = report_figures.draw(doc, tmp_path / "here")
    open_figures = plt.get_fignums()
    report_figures.warm_up()  # what the figures process does first: it leaves nothing open
    assert plt.get_fignums() == open_figures
    _figure_worker.prestart()
    monkeypatch.setattr(report_figures, "draw", _refuse)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        there = _figure_worker.draw(doc, tmp_path / "there")
    assert there == here
    _same_files(tmp_path / "here", tmp_path / "there", here)


def _refuse(*args, **kwargs):
    raise AssertionError("drawn in the test process, not in the figures process")


def test_the_figures_process_fails_over_to_this_one(run, tmp_path, monkeypatch):
    """A figures process that dies is reported (a RuntimeWarning) and the figures
    are drawn here; an error while drawing there is raised here, as usual."""
    from gradflow import _figure_worker

    doc = run[0].document
    _figure_worker.prestart()
    _figure_worker._prestarted.kill()
    with pytest.warns(RuntimeWarning, match="figures' process failed"):
        entries = _figure_worker.draw(doc, tmp_path / "a")
    assert [e["name"] for e in entries] == ["spectrum", "replay", "equilibrium"]
    _figure_worker.prestart()
    broken = {k: v for k, v in doc.items() if k != "spectrum"}
    with pytest.raises(KeyError, match="spectrum"):
        _figure_worker.draw(broken, tmp_path / "b")
    assert _figure_worker._prestarted is None  # one exchange per process


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


def test_step_rules_of_analyze():
    """The step words: 'hamiltonian' is alpha = 1/h for the identity metric and is
    refused (with the reason) for the others; a line search replays without a
    predicted rate; a step outside the bound is replayed with a warning."""
    sh = flow.shoot(flow.problems.get("scalar_regularized"), 40)
    r = stability.analyze(sh, metric="identity", step="hamiltonian")
    assert r.step_rule == "hamiltonian" and r.step == pytest.approx(40.0, rel=1e-13)  # 1/h
    with pytest.raises(ValueError, match="identity metric") as info:
        stability.analyze(sh, metric="hamiltonian", step="hamiltonian")
    assert "alpha = 40" in str(info.value) and "alpha_max" in str(info.value)
    r = stability.analyze(sh, metric="newton", step="armijo")
    assert r.step_rule == "armijo" and r.step is None and r.predicted_rate is None
    assert r.replay.status == "converged" and r.agrees is None
    r = stability.analyze(sh, step=5.0)  # alpha_max = 1.39 for this problem
    assert r.warnings and "outside the forward-Euler bound" in r.warnings[0]
    # |1 - alpha mu| >= 2 * 5 / 1.39 - 1 = 6.2 along the stiff mode: the gradient
    # passes divergence_factor = 1e6 within log(1e6) / log(6.2) = 7.6 steps
    assert r.step_rule == "value" and r.replay.status == "diverged"
    assert 1 <= r.replay.diverged_at <= 8
    r = stability.analyze(sh, step=None)
    assert r.replay is None and r.step_rule == "none"
    for bad in ("fast", -1.0, 0.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="step"):
            stability.analyze(sh, step=bad)
    with pytest.raises(TypeError, match="step"):
        stability.analyze(sh, step=True)


def test_no_replay_and_a_saddle_validate(tmp_path, schema):
    """double_well at U = 0 is a saddle: no stable step, so no replay; the nulls
    must fit the schema and the figures must still be drawn."""
    run = gradflow.run_analysis(
        flow.problems.get("double_well"), N=40, equivalence_N=(40,), out=tmp_path
    )
    doc = run.document
    assert gradflow.validate_results(doc) == []
    assert doc["classification"]["kind"] == "saddle"
    assert doc["euler"]["alpha_max"] is None and doc["replay"] is None and doc["step"] is None
    assert [f["name"] for f in doc["figures"]] == ["spectrum", "equilibrium"]
    assert "No replay" in (tmp_path / "report.md").read_text()


def test_bad_arguments_raise():
    problem = flow.problems.get("scalar_regularized")
    with pytest.raises(TypeError, match="problem"):
        gradflow.run_analysis("scalar_regularized")
    for kwargs, word in [
        (dict(N=0), "N"),
        (dict(equivalence_N=(10, 0)), "equivalence_N"),
        (dict(tol=-1.0), "tol"),
        (dict(max_steps=0), "max_steps"),
        (dict(scheme="midpoint"), "scheme"),
        (dict(metric="euclid"), "metric"),
    ]:
        with pytest.raises(ValueError, match=word):
            gradflow.run_analysis(problem, figures=False, **kwargs)


def test_replay_figure_growth_and_divergence(run, tmp_path):
    """A step outside the bound (rho > 1, a long run that saturates) and a run that
    diverged at once (a non-finite residual, None in JSON) draw without warnings
    (warnings are errors here) and say so in the caption."""
    doc = copy.deepcopy(run[0].document)
    rp = doc["replay"]
    growth = [min(1.74 ** min(k, 20), 220.0) for k in range(3001)]
    rp.update(
        hamiltonian_norm=growth,
        predicted_rate=1.74,
        observed_rate=1.0,
        agrees=None,
        num_steps=3000,
        status="max_steps",
    )
    entry = report_figures.replay(doc, tmp_path / "growth")
    assert "were not compared" in entry["caption"]
    assert (tmp_path / "growth" / "replay.png").stat().st_size > 10_000
    rp.update(
        hamiltonian_norm=[7.0, None],
        predicted_rate=2.3e5,
        observed_rate=None,
        num_steps=1,
        diverged_at=1,
        status="diverged",
    )
    entry = report_figures.replay(doc, tmp_path / "diverged")
    assert "diverged after 1 steps" in entry["caption"]
    assert (tmp_path / "diverged" / "replay.pdf").stat().st_size > 5_000
