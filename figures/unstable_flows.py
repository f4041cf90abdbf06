r"""Section 5.1, subproblem 1: when the gradient flow (50) is unstable or marginal at
an equilibrium, no step size makes the algorithm converge to it.

Descent with a constant step $\alpha$ is forward Euler on
$dU/d\tau = -M^{-1}\nabla E^N(U)$ (here the Hamiltonian metric
$M = \mathrm{diag}(h)$). Near an equilibrium it multiplies the component along an
eigenvector of $J = -M^{-1}\nabla^2 E^N$ with eigenvalue $\mu$ by $1 + \alpha\mu$ per
step: for $\mu > 0$ the factor exceeds 1 at every $\alpha > 0$, and for $\mu = 0$ it
is exactly 1. Every number comes from `stability.equilibrium`, `linearize`,
`spectrum`, `classify`, `euler_bound` and `flow.descend`.

Top row, a saddle: `double_well` ($\rho = 1/2$, $N = 20$, Euler) at $U = 0$, where
$J$ has the eigenvalues $-\rho$ ($N - 1$ times) and $\mu_{\max} = 1 - \rho > 0$
(`classify`: a saddle of index 1).
(a) Descent from $U_0 = 10^{-8}\xi$ ($\xi$ standard normal, seeded) at four steps,
from $0.005$ to $0.9\,\alpha_{\max}$ ($\alpha_{\max}$: the forward-Euler bound at the
minimisers $\pm\sqrt{1-\rho}$): $\|U_k\|_2$ against the flow time $\tau = \alpha k$,
with the unstable component's prediction $|v^T U_0|(1 + \alpha\mu_{\max})^k$
(dotted; $v$ the unit eigenvector of $\mu_{\max}$). Every run leaves $U = 0$ and
heads to a minimiser. (b) The measured growth per step of that component,
$(v^T U_K / v^T U_0)^{1/K}$ over the first $K = 20$ steps, minus one, against
$\alpha$ over three decades: on the line $\alpha\mu_{\max} > 0$. (c) The spectrum of
$J$ at $U = 0$.

Bottom row, a marginal flow: the paper's `scalar_mayer` ($N = 20$), whose minimisers
($x_N = 1$) form a manifold of dimension $N - 1$.
(d) Descent at $\alpha = 0.2\,\alpha_{\max}$ (the bound over the nonzero eigenvalue)
to $\max_k|\partial_u H_k| \le 10^{-12}$ from five random starts ends at five
different minimisers (their state trajectories, all reaching $x_N = 1$). (e) $|\mu|$ of
$J$ at each of them: one eigenvalue $\mu_1 < 0$ and $N - 1$ zeros at rounding level
(`classify`: marginal). (f) From one of them, $U^*$, plus a perturbation $\delta$ of
size $10^{-3}$ per component: the component along the eigenvector $v_1$ of $\mu_1$
contracts like $|1 + \alpha\mu_1|^i$ (drawn relative to the run's limit $U_\infty$);
the null-space component $P_0(U_i - U^*)$ does not move, so the limit is
$U^* + P_0\delta$ (to second order), a different minimiser.

Run: `python figures/unstable_flows.py --out DIR [--quick]` (`--quick`: $N = 8$,
two steps in (a), four in (b), three starts).
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np

import flow
import stability
from figures import _plots, _style
from flow import problems


NAME = "unstable_flows"
N_FULL = 20
N_QUICK = 8
SEED = 12
#: size of the perturbation of the saddle U = 0
EPS = 1e-8
#: steps of panel (a) as fractions of alpha_max at the minimisers of double_well
FRACTIONS_FULL = (0.005, 0.05, 0.25, 0.9)
FRACTIONS_QUICK = (0.05, 0.9)
#: the flow time every run of panel (a) covers
TAU_END = 80.0
#: steps of panel (b), fractions of alpha_max, and the steps K of each measurement
GROWTH_FRACTIONS_FULL = tuple(np.geomspace(1e-3, 1.0, 10))
GROWTH_FRACTIONS_QUICK = (1e-3, 1e-2, 0.1, 1.0)
GROWTH_STEPS = 20
#: scalar_mayer: the step (fraction of alpha_max), the starts, the perturbation
MAYER_FRACTION = 0.2
MAYER_STARTS_FULL = 5
MAYER_STARTS_QUICK = 3
MAYER_SPREAD = 1.0
MAYER_TOL = 1e-12
PERTURBATION = 1e-3
PERTURBATION_STEPS = 60
#: the limit of the perturbed run: the iterate after this many steps
LIMIT_STEPS = 200
#: colours, line styles and markers (colour AND style tell the runs apart)
STYLES = (
    (_style.COLORS[0], "-", "o"),
    (_style.COLORS[1], "--", "s"),
    (_style.COLORS[2], "-.", "^"),
    (_style.COLORS[3], ":", "D"),
    (_style.COLORS[4], (0, (5, 1, 1, 1)), "v"),
)


def _eigen(sh: flow.Shooting, U) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and unit eigenvectors (columns, of U.reshape(-1)) of J
    at U for the Hamiltonian metric: on a uniform grid M = h I, so J = -Hess/h is
    symmetric and equals linearize's dense_symmetric."""
    S = np.asarray(stability.linearize(sh, U, metric="hamiltonian").dense_symmetric())
    return np.linalg.eigh(S)


def saddle(N: int, fractions, growth_fractions) -> dict:
    """double_well at U = 0: its classification, the descent runs of panel (a) and the
    measured growth factors of panel (b)."""
    sh = flow.shoot(problems.double_well(), N)
    eq = stability.equilibrium(sh, sh.zeros())  # a stationary point: 0 iterations
    spec = stability.spectrum(stability.linearize(sh, eq, metric="hamiltonian"))
    cls = stability.classify(spec)
    mu = np.real(np.asarray(spec.eigenvalues))
    mu_max = float(mu.max())
    # the forward-Euler bound at the minimisers (constant controls +-sqrt(1 - rho))
    eq_min = stability.equilibrium(sh, jnp.full(sh.control_shape, 0.5))
    bound = stability.euler_bound(
        stability.spectrum(stability.linearize(sh, eq_min, metric="hamiltonian"))
    )
    alpha_max = float(bound.alpha_max)
    _, V = _eigen(sh, eq.U)
    v = V[:, -1]  # the unstable direction (largest eigenvalue)
    rng = np.random.default_rng(SEED)
    U0 = jnp.asarray(EPS * rng.standard_normal(sh.control_shape))
    c0 = float(v @ np.asarray(U0).reshape(-1))
    runs = []
    for f in fractions:
        alpha = f * alpha_max
        steps = int(np.ceil(TAU_END / alpha))
        tr = flow.descend(
            sh,
            U0,
            metric="hamiltonian",
            step=alpha,
            max_steps=steps,
            divergence_factor=1e300,  # leaving U = 0 is the point, not a divergence
            save_iterates=True,
        )
        Us = np.asarray(tr.iterates).reshape(steps + 1, -1)
        runs.append(
            dict(
                fraction=f,
                alpha=alpha,
                tau=alpha * np.arange(steps + 1),
                distance=np.linalg.norm(Us, axis=1),
                prediction=abs(c0) * (1.0 + alpha * mu_max) ** np.arange(steps + 1),
                final=Us[-1],
                hamiltonian_norm=float(tr.hamiltonian_norm[-1]),
            )
        )
    growth = []
    for f in growth_fractions:
        alpha = f * alpha_max
        tr = flow.descend(
            sh,
            U0,
            metric="hamiltonian",
            step=alpha,
            max_steps=GROWTH_STEPS,
            divergence_factor=1e300,
            save_iterates=True,
        )
        cK = float(v @ np.asarray(tr.iterates[-1]).reshape(-1))
        growth.append((alpha, (cK / c0) ** (1.0 / GROWTH_STEPS)))
    return dict(
        shooting=sh,
        equilibrium=eq,
        spectrum=spec,
        classification=cls,
        mu=mu,
        mu_max=mu_max,
        alpha_max=alpha_max,
        U0=np.asarray(U0),
        runs=runs,
        growth=np.asarray(growth),
    )


def marginal(N: int, n_starts: int) -> dict:
    """scalar_mayer: the minimisers descent reaches from `n_starts` random starts, the
    spectrum of J at each, and the perturbation experiment of panel (e)."""
    sh = flow.shoot(problems.scalar_mayer(), N)
    ref = stability.equilibrium(sh, jnp.ones(sh.control_shape))
    bound = stability.euler_bound(
        stability.spectrum(stability.linearize(sh, ref, metric="hamiltonian"))
    )
    alpha = MAYER_FRACTION * float(bound.alpha_max)
    rng = np.random.default_rng(SEED)
    starts = MAYER_SPREAD * rng.standard_normal((n_starts,) + sh.control_shape)
    ends = []
    for U0 in starts:
        tr = flow.descend(
            sh, jnp.asarray(U0), metric="hamiltonian", step=alpha, max_steps=2000, tol=MAYER_TOL
        )
        U = tr.U
        spec = stability.spectrum(stability.linearize(sh, U, metric="hamiltonian"))
        ends.append(
            dict(
                U0=U0,
                U=np.asarray(U),
                x_N=float(sh.states(U)[-1, 0]),
                num_steps=int(tr.num_steps),
                spectrum=spec,
                classification=stability.classify(spec),
            )
        )
    Uend = np.stack([e["U"].reshape(-1) for e in ends])
    pairwise = np.linalg.norm(Uend[:, None, :] - Uend[None, :, :], axis=-1)
    # panel (e): a perturbation of the first minimiser, split along the eigenvectors
    U_star = ends[0]["U"]
    mu, V = _eigen(sh, jnp.asarray(U_star))
    v1 = V[:, 0]  # mu_1 < 0 is the smallest; the others are zero
    null = V[:, 1:]
    delta = PERTURBATION * rng.standard_normal(U_star.size)
    tr = flow.descend(
        sh,
        jnp.asarray(U_star.reshape(-1) + delta).reshape(sh.control_shape),
        metric="hamiltonian",
        step=alpha,
        max_steps=LIMIT_STEPS,
        save_iterates=True,
    )
    Us = np.asarray(tr.iterates).reshape(LIMIT_STEPS + 1, -1)[: PERTURBATION_STEPS + 1]
    U_limit = np.asarray(tr.U).reshape(-1)
    return dict(
        shooting=sh,
        alpha=alpha,
        alpha_max=float(bound.alpha_max),
        ends=ends,
        pairwise=pairwise,
        mu=mu,
        mu_1=float(mu[0]),
        delta=delta,
        U_star=U_star.reshape(-1),
        U_limit=U_limit,
        # along the eigenvector of mu_1: the distance to the run's own limit
        range_part=np.abs((Us - U_limit) @ v1),
        # in the null space: the displacement from the minimiser U* it started near
        null_part=np.linalg.norm((Us - U_star.reshape(-1)) @ null, axis=1),
        steps=np.arange(PERTURBATION_STEPS + 1),
    )


def compute(*, quick: bool = False) -> dict:
    """Both experiments at the full (or quick) size."""
    N = N_QUICK if quick else N_FULL
    return dict(
        saddle=saddle(
            N,
            FRACTIONS_QUICK if quick else FRACTIONS_FULL,
            GROWTH_FRACTIONS_QUICK if quick else GROWTH_FRACTIONS_FULL,
        ),
        marginal=marginal(N, MAYER_STARTS_QUICK if quick else MAYER_STARTS_FULL),
    )


def _saddle_panels(a, b, c, s: dict) -> None:
    """(a) the distance from U = 0, (b) the growth per step, (c) the spectrum at U = 0."""
    for run, (color, ls, _) in zip(s["runs"], STYLES, strict=False):
        k = len(run["tau"]) - 1
        a.semilogy(
            run["tau"],
            run["distance"],
            color=color,
            linestyle=ls,
            label=rf"$\alpha = {run['fraction']:g}\,\alpha_{{\max}}$ ({k} steps)",
        )
        keep = run["prediction"] <= 0.3 * run["distance"][-1]
        a.semilogy(
            run["tau"][keep],
            run["prediction"][keep],
            color=color,
            linestyle=":",
            linewidth=2.2,
            alpha=0.55,
        )
    a.plot(
        [],
        [],
        color="0.4",
        linestyle=":",
        linewidth=2.2,
        alpha=0.55,
        label=r"$|v^TU_0|\,(1 + \alpha\mu_{\max})^k$",
    )
    a.set_xlabel(r"flow time $\tau = \alpha k$")
    a.set_ylabel(r"$\|U_k\|_2$ (distance from the saddle)")
    a.set_title(r"(a) descent from $U_0 = 10^{-8}\xi$")
    a.set_ylim(1e-17, 1e2)
    a.legend(loc="lower right", fontsize=6.5, handlelength=2.6)

    g = s["growth"]
    alphas = np.geomspace(g[:, 0].min() / 2, g[:, 0].max() * 2, 50)
    b.loglog(
        alphas,
        alphas * s["mu_max"],
        color=_style.COLORS[0],
        label=rf"$\alpha\mu_{{\max}}$, $\mu_{{\max}} = {s['mu_max']:.3g}$",
    )
    b.loglog(
        g[:, 0],
        g[:, 1] - 1.0,
        linestyle="none",
        marker="o",
        markersize=5.5,
        markerfacecolor="none",
        color=_style.COLORS[1],
        label=f"measured over {GROWTH_STEPS} steps",
    )
    b.axvline(s["alpha_max"], color="0.45", linestyle="--", linewidth=1.0)
    b.text(
        s["alpha_max"] * 0.8,
        2e-3 * s["mu_max"],
        r"$\alpha_{\max}$",
        ha="right",
        fontsize=8,
        color="0.3",
    )
    b.set_xlabel(r"step $\alpha$")
    b.set_ylabel(r"growth per step $-\ 1$")
    b.set_title(r"(b) unstable at every $\alpha > 0$")
    b.set_ylim(3e-4, 20.0)
    b.legend(loc="upper left", fontsize=7)

    mu = s["mu"]
    stable = mu < 0
    j = np.arange(1, mu.size + 1)
    c.plot(
        j[stable],
        mu[stable],
        linestyle="none",
        marker="o",
        color=_style.COLORS[0],
        label=rf"$\mu = -\rho$ ({int(stable.sum())})",
    )
    c.plot(
        j[~stable],
        mu[~stable],
        linestyle="none",
        marker="^",
        markersize=7,
        color=_style.COLORS[1],
        label=rf"$\mu_{{\max}} = 1 - \rho$ ({int((~stable).sum())})",
    )
    c.axhline(0.0, color="0.5", linewidth=0.8)
    c.set_ylim(-0.8, 0.8)
    c.set_xlabel("index $j$")
    c.set_ylabel(r"eigenvalues $\mu_j$ of $J$")
    cls = s["classification"]
    c.set_title(f"(c) $J$ at $U = 0$: {cls.kind}, index {cls.n_unstable}")
    c.legend(loc="center left", fontsize=7)


def _marginal_panels(c, e, f, m: dict) -> None:
    """(d) the state trajectories of the minimisers reached, (e) |mu| at each, (f) the
    perturbation's components."""
    sh = m["shooting"]
    t = np.asarray(sh.grid)
    for end, (color, ls, marker) in zip(m["ends"], STYLES, strict=False):
        x = np.asarray(sh.states(jnp.asarray(end["U"])))[:, 0]
        c.plot(t, x, color=color, linestyle=ls, marker=marker, markersize=3, markerfacecolor="none")
    off = np.triu(m["pairwise"], 1)[np.triu_indices(len(m["ends"]), 1)]
    c.text(
        0.03,
        0.9,
        rf"$|x_N - 1| \leq {max(abs(e['x_N'] - 1) for e in m['ends']):.0e}$"
        "\n"
        rf"$\|U_a - U_b\|_2 \geq {off.min():.2f}$",
        transform=c.transAxes,
        va="top",
        fontsize=7.5,
    )
    c.set_xlabel("$t$")
    c.set_ylabel("state $x(t)$ at the end")
    c.set_title(f"(d) {len(m['ends'])} starts, {len(m['ends'])} minimisers")

    for i, (end, (color, _, marker)) in enumerate(zip(m["ends"], STYLES, strict=False)):
        mu = np.sort(np.abs(np.real(np.asarray(end["spectrum"].eigenvalues))))
        e.semilogy(
            np.arange(1, mu.size + 1) + 0.12 * (i - 2),
            np.maximum(mu, 1e-20),
            linestyle="none",
            marker=marker,
            markersize=4,
            markerfacecolor="none",
            color=color,
        )
    cls = m["ends"][0]["classification"]
    e.set_xlabel("index $j$ (sorted)")
    e.set_ylabel(r"$|\mu_j|$ of $J$ at the minimiser")
    e.set_title(f"(e) {cls.kind}: {cls.n_zero} zeros")

    scale = float(np.linalg.norm(m["delta"]))
    i = m["steps"]
    f.semilogy(
        i,
        m["range_part"] / scale,
        color=_style.COLORS[0],
        marker="o",
        markersize=3,
        markevery=5,
        label=r"$|v_1^T(U_i - U_\infty)|$",
    )
    f.semilogy(
        i,
        m["range_part"][0] / scale * abs(1 + m["alpha"] * m["mu_1"]) ** i,
        color="0.35",
        linestyle=":",
        linewidth=1.4,
        label=rf"$|1 + \alpha\mu_1|^i$, $\mu_1 = {m['mu_1']:.3g}$",
    )
    f.semilogy(
        i,
        m["null_part"] / scale,
        color=_style.COLORS[1],
        linestyle="--",
        marker="s",
        markersize=3,
        markevery=5,
        label=r"$\|P_0(U_i - U^*)\|_2$",
    )
    f.set_ylim(1e-13, 1e9)  # the legend sits above the curves
    f.set_xlabel("iteration $i$")
    f.set_ylabel(r"component / $\|\delta\|_2$")
    f.set_title(r"(f) from $U^* + \delta$: no contraction")
    f.legend(loc="upper right", fontsize=6.5)


def make(out: Path, *, quick: bool = False) -> list[Path]:
    """Draw the figure into `out` (`unstable_flows.png`, `unstable_flows.pdf`);
    returns the paths."""
    d = compute(quick=quick)
    return draw(d, out)


def draw(d: dict, out: Path) -> list[Path]:
    """Draw the figure from the data of `compute` into `out` (`unstable_flows.png`,
    `unstable_flows.pdf`); returns the paths."""
    s, m = d["saddle"], d["marginal"]
    fig, axes = _style.figure(3, 2, width=_style.WIDTH_DOUBLE + 1.2, height=6.4)
    (a, b, c), (dd, e, f) = axes
    _saddle_panels(a, b, c, s)
    _marginal_panels(dd, e, f, m)
    fig.suptitle(
        rf"Top: double_well ($\rho = 0.5$, $N = {s['shooting'].N}$) at the saddle $U = 0$. "
        rf"Bottom: scalar_mayer ($N = {m['shooting'].N}$), a manifold of minimisers. "
        r"Hamiltonian metric, $\alpha_{\max}$ at the minimisers.",
        fontsize=9,
    )
    return _style.save(fig, out, NAME)


def main(argv: list[str] | None = None) -> int:
    """`python figures/unstable_flows.py --out DIR [--quick]`."""
    return _plots.command_line(make, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
