r"""Lemma 2 (eq. (49)): the direct method's gradient is the Hamiltonian gradient.

For forward Euler, $\nabla_{u_k} E^N = h\,\partial_u H(\lambda_k, x_k, u_k)$ exactly,
with the discrete costates $\lambda_k$ of the adjoint recursion (23), (25). The
figure shows, against $N$, on the Van der Pol problem at the smooth probe control
`flow.probe_control` (relative max-norm differences, divided by
$\|\nabla E^N\|_\infty$ from autodiff):

- left, identities that hold to rounding: Euler's Lemma 2, and the costate
  recursion's gradient against autodiff for Euler, Heun and RK4 (for Heun and RK4
  the discrete Hamiltonian gradient is *defined* as $h^{-1}\nabla_{u_k}E^N$,
  DESIGN section 2, so the recursion is what there is to check);
- right, what is not an identity: the same formula with an off-by-one costate
  ($\lambda_{k-1}$ in place of $\lambda_k$), and for Heun and RK4 the Pontryagin
  formula $h\,\partial_u H(\lambda_k, x_k, u_k)$ with their costates; both are
  $O(h)$ away, far above rounding.

Run: `python figures/lemma2.py --out DIR [--quick]`.
"""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import flow
from figures import _plots, _style
from flow import problems


NAME = "lemma2"
NS_FULL = (20, 100, 500, 2000, 10_000, 50_000)
NS_QUICK = (20, 200)
#: exact zeros (bitwise-equal gradients) are drawn at this value on the log axis
FLOOR = 1e-17


@eqx.filter_jit
def _errors(sh: flow.Shooting, U: jax.Array) -> jax.Array:
    """Relative differences, each max_k |a_k - b_k| / max|grad E^N|:
    [costate vs autodiff, Lemma 2 via Shooting.hamiltonian_gradient,
    Pontryagin formula h dH/du(lambda_k), off-by-one h dH/du(lambda_{k-1})]."""
    g = sh.gradient(U)
    scale = jnp.max(jnp.abs(g))
    h = sh.steps[:, None]
    lam = sh.costates(U)  # lambda_0 .. lambda_{N-1}
    xs = sh.states(U)[:-1]  # x_0 .. x_{N-1}
    du_h = jax.vmap(jax.grad(sh.problem.hamiltonian, argnums=2))

    def rel(a, b):
        return jnp.max(jnp.abs(a - b)) / scale

    return jnp.stack(
        [
            rel(sh.gradient(U, "costate"), g),
            rel(h * sh.hamiltonian_gradient(U), g),
            rel(h * du_h(lam, xs, U), g),
            # interval k >= 1 with lambda_{k-1}: the off-by-one costate
            rel(h[1:] * du_h(lam[:-1], xs[1:], U[1:]), g[1:]),
        ]
    )


def compute(Ns: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The four relative differences for each scheme and N: arrays of shape
    (len(Ns), 4), keyed by scheme name."""
    problem = problems.van_der_pol()
    out = {}
    for scheme in (flow.Euler(), flow.Heun(), flow.RK4()):
        rows = []
        for N in Ns:
            sh = flow.shoot(problem, N, scheme)
            rows.append(np.asarray(_errors(sh, flow.probe_control(sh))))
        out[scheme.name] = np.array(rows)
    return out


def make(out: Path, *, quick: bool = False) -> list[Path]:
    """Draw the figure into `out` (`lemma2.png`, `lemma2.pdf`); returns the paths."""
    Ns = NS_QUICK if quick else NS_FULL
    err = compute(Ns)
    N = np.asarray(Ns, dtype=np.float64)
    colors = dict(zip(("euler", "heun", "rk4"), _style.COLORS[:3], strict=True))
    labels = {"euler": "Euler", "heun": "Heun", "rk4": "RK4"}
    markers = {"euler": "o", "heun": "s", "rk4": "^"}

    fig, (a, b) = _style.figure(2, width=_style.WIDTH_DOUBLE, height=3.7, sharey=True)

    def line(ax, y, **kw):
        ax.loglog(N, np.maximum(y, FLOOR), **kw)

    line(
        a,
        err["euler"][:, 1],
        color=colors["euler"],
        marker="o",
        markersize=6,
        label=r"Euler: $\nabla E^N$ vs $h\,\partial_u H(\lambda_k, x_k, u_k)$ (Lemma 2)",
    )
    for s in ("euler", "heun", "rk4"):
        line(
            a,
            err[s][:, 0],
            color=colors[s],
            marker=markers[s],
            linestyle="--",
            markerfacecolor="none",
            label=f"{labels[s]}: costate recursion vs autodiff",
        )
    eps = float(np.finfo(np.float64).eps)
    a.axhline(eps, color="0.3", linewidth=0.9, linestyle=":", label=r"machine $\epsilon$")
    a.set_title("Identities: rounding level at every $N$")
    a.set_xlabel(r"number of intervals $N$ ($h = 10/N$)")
    a.set_ylabel(r"$\max_k|a_k - b_k|\;/\;\|\nabla E^N\|_\infty$")
    a.legend(loc="upper left", fontsize=7.5)
    for ax in (a, b):
        ax.axhline(FLOOR, color="0.55", linewidth=0.6)
    a.text(
        0.98,
        FLOOR / 1.4,
        "exactly 0 (bitwise equal)",
        transform=a.get_yaxis_transform(),
        ha="right",
        va="top",
        fontsize=7.5,
        color="0.35",
    )

    rounding = np.maximum(np.max([err[s][:, :2].max(axis=1) for s in err], axis=0), FLOOR)
    b.fill_between(N, FLOOR, rounding, color="0.85", label="rounding level (left panel)")
    for s in ("euler", "heun", "rk4"):
        line(
            b,
            err[s][:, 3],
            color=colors[s],
            marker=markers[s],
            label=rf"{labels[s]}: off-by-one costate $\lambda_{{k-1}}$",
        )
    for s in ("heun", "rk4"):
        line(
            b,
            err[s][:, 2],
            color=colors[s],
            marker=markers[s],
            linestyle="--",
            markerfacecolor="none",
            label=rf"{labels[s]}: $h\,\partial_u H(\lambda_k, x_k, u_k)$ (not an identity)",
        )
    slope = _plots.loglog_slope(N, err["euler"][:, 3])
    _plots.reference_slope(b, N, err["euler"][0, 3] * 2.0, -1.0, label=r"slope $-1$ ($O(h)$)")
    b.set_title(f"Not identities: $O(h)$ (Euler slope {_plots.fmt_slope(slope)})")
    b.set_xlabel(r"number of intervals $N$ ($h = 10/N$)")
    b.legend(loc="center left", fontsize=7.5)
    b.set_ylim(FLOOR / 12, 10.0)
    fig.suptitle(
        r"Lemma 2 on van_der_pol: the direct gradient is $h\,\partial H/\partial u$ "
        r"with the costate $\lambda_k$ of interval $k$",
        fontsize=10,
    )
    return _style.save(fig, out, NAME)


def main(argv: list[str] | None = None) -> int:
    """`python figures/lemma2.py --out DIR [--quick]`."""
    return _plots.command_line(make, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
