"""`report.md`: the results document rendered as Markdown (headings, one table per
section, the figures embedded by relative path)."""

from collections.abc import Sequence
from typing import Any

from flow import format_number

from ._document import ROUNDING


_g = format_number


def _e(x: Any) -> str:
    return format_number(x, ".2e")


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
        "armijo": "armijo: backtracking line search",
        "lbfgs": "lbfgs: L-BFGS with a line search",
        "none": "none (no replay)",
        "value": "given",
    }[doc["step_rule"]]
    settings = doc["settings"]
    start = "$U = 0$" if settings["U0"] == "zeros" else f"`U0` = {_text(settings['U0'])}"
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
                ["start U0", _text(settings["U0"])],
                [f"stopping rule ({tol['stop_on']} residual)", f"≤ {_e(tol['tol'])}"],
            ],
        )
    )
    parts.append("## Equilibrium\n")
    if eq.get("num_active") is not None:
        parts.append(
            f"The KKT point $U^\\star$ of $E^N$ over the control bounds (the projected "
            f"gradient $U - P_B(U - \\nabla E^N)$ vanishes), by projected Newton-CG from "
            f"{start}: **{eq['status']}** ({_text(eq['message'])}). The residuals below are "
            f"the projected gradient's; {eq['num_active']} controls are on a bound "
            f"({eq['num_degenerate']} degenerate), and the spectrum, the Euler bound and the "
            f"replay's prediction are those of the free set.\n"
        )
    else:
        parts.append(
            f"The stationary point $U^\\star$ of $E^N$ ($\\nabla E^N = 0$, eq. (51)), by "
            f"trust-region Newton-CG from {start}: **{eq['status']}** "
            f"({_text(eq['message'])}).\n"
        )
    parts.append(
        _table(
            ["quantity", "value"],
            [
                ["E^N(U*)", _g(eq["cost"], ".10g")],
                ["max |∇E^N(U*)| (eq. (54))", _e(eq["gradient_norm"])],
                ["max_k |∂H/∂u_k| at U* (eq. (55))", _e(eq["hamiltonian_residual"])],
                [
                    "projected Newton steps"
                    if eq.get("num_active") is not None
                    else "trust-region steps",
                    _g(eq["num_steps"]),
                ],
                ["Hessian-vector products", _g(eq["num_hvp"])],
            ],
        )
    )
    parts.append(_figure(doc, "equilibrium"))
    parts.append("## Spectrum and classification\n")
    parts.append(
        f"Eigenvalues of $J$: {_text(sp['description'])}. The equilibrium is "
        f"**{cl['kind']}** ({_text(cl['description'])}).\n"
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
        f"{_text(eu['description'])}.\n"
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
        "$\\varepsilon h$ to meet $\\varepsilon$ there. Here $\\varepsilon$ is the "
        f"replay's tolerance ({tol['stop_on']} residual).\n"
    )
    parts.append(
        _table(
            ["stopping rule", "guarantees"],
            [
                [
                    f"max |∇E^N| ≤ ε = {_e(tol['tol'])}",
                    f"max |∂H/∂u| ≤ ε / h = {_e(tol['tol_over_h'])}",
                ],
                [
                    f"max |∇E^N| ≤ ε h = {_e(tol['tol_times_h'])}",
                    f"max |∂H/∂u| ≤ ε = {_e(tol['tol'])}",
                ],
            ],
        )
    )
    parts.append("## Replay of the descent\n")
    if rp is None:
        parts.append("No replay: no step was chosen (`--step none`) or no step is stable.\n")
        for w in doc["warnings"]:
            parts.append(f"**Warning.** {_text(w)}.\n")
    else:
        agrees = {True: "agree", False: "**disagree**", None: "were not compared"}[rp["agrees"]]
        parts.append(
            f"`flow.descend` from {start} with the step rule {_text(doc['step_rule'])} "
            f"($\\alpha$ = {_g(rp['step'])}), stopping when the {tol['stop_on']} residual "
            f"is $\\le$ {_e(tol['tol'])}: **{rp['status']}** ({_text(rp['message'])}). "
            f"The observed rate (a fit over the last half of the run) and the predicted "
            f"$\\rho(\\alpha)$ {agrees} (log-rates within 10%).\n"
        )
        for w in doc["warnings"]:
            parts.append(f"**Warning.** {_text(w)}.\n")
        parts.append(
            _table(
                ["quantity", "value"],
                [
                    ["steps (observed)", _g(rp["num_steps"])],
                    ["final max |∂H/∂u|", _e(rp["hamiltonian_norm"][-1])],
                    ["final E^N", _g(rp["cost"][-1], ".10g")],
                    ["predicted rate ρ(α)", _g(rp["predicted_rate"])],
                    ["observed rate", _g(rp["observed_rate"])],
                    *_start_rows(doc),
                    [
                        "diverged",
                        "no" if rp["diverged_at"] < 0 else f"at iteration {rp['diverged_at']}",
                    ],
                    [
                        "settled on a cycle",
                        "no"
                        if rp["period"] == 0
                        else f"period {rp['period']}, half-width {_g(rp['amplitude'])}",
                    ],
                ],
            )
        )
        parts.append(_figure(doc, "replay"))
    if doc["flip"] is not None:
        fl = doc["flip"]
        outcome = {
            "supercritical": "a stable 2-cycle is born, and descent at steps close enough "
            "past the bound oscillates on it instead of diverging (how far past depends on "
            "the problem: the replay shows what happens at its own step)",
            "subcritical": "no small cycle survives, and descent just past the bound leaves "
            "the equilibrium (it diverges or is captured by a distant attractor)",
            "degenerate": "the normal form's coefficient vanishes to rounding (higher order "
            "decides)",
        }[fl["kind"]]
        parts.append("## Past the step bound: the flip\n")
        parts.append(
            f"At $\\alpha^* = 2/\\mu_{{\\max}}$ = {_g(fl['alpha'])} the multiplier "
            f"$1 - \\alpha\\mu_{{\\max}}$ of the equilibrium crosses $-1$: a flip "
            f"(period-doubling) bifurcation of descent (`stability.flip`). It is "
            f"**{fl['kind']}** (normal-form coefficient $c$ = {_g(fl['coefficient'])}): "
            f"{outcome}.\n"
        )
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
        f"{doc['schema_version']}, `gradflow/results.schema.json`).\n"
    )
    return "\n".join(parts)


def _n_eigs(sp: dict[str, Any]) -> int:
    e = sp["eigenvalues"]
    return len(e["real"]) if isinstance(e, dict) else len(e)


def _start_rows(doc: dict[str, Any]) -> list[list[str]]:
    """The replay table's rows of the start's own prediction (`doc["start"]`)."""
    st, eu = doc["start"], doc["euler"]
    if st is None:
        return []
    excited = ", ".join(_g(m, ".4g") for m in st["excited"][:4])
    more = "" if len(st["excited"]) <= 4 else f" ({len(st['excited'])} in all)"
    return [
        ["eigenvalues μ the start excites", f"{excited}{more}"],
        ["predicted rate for this start", _g(st["rate_at_step"])],
        [
            f"iterations predicted for this start ({_text(st['rule'])})",
            _g(st["iterations_at_step"]),
        ],
        [
            f"worst case over every mode (error × {_e(eu['reduction'])})",
            _g(eu["iterations_at_step"]),
        ],
        [
            "effective step for this start, its predicted iterations",
            f"{_g(st['effective_step'])}, {_g(st['iterations_at_effective'])}",
        ],
    ]
