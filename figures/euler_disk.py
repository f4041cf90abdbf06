r"""Forward Euler's stability disk: gradient descent with step $\alpha$ is forward
Euler on the flow (50), stable at an equilibrium iff every eigenvalue $\mu$ of
$J = -M^{-1}\nabla^2 E^N$ has $|1 + \alpha\mu| < 1$.

On the built-in `linear_quadratic` problem (two states, two inputs, $N = 20$,
identity metric: gradient descent), the spectrum of $J$ at the minimiser comes from
`stability.spectrum` (dense, all 40 eigenvalues; real, since $J$ is similar to a
symmetric matrix) and $\alpha_{\max} = \min_\mu -2\,\mathrm{Re}\,\mu/|\mu|^2$ from
`stability.euler_bound`. The two panels draw $\alpha\mu$ over the disk
$|1 + z| < 1$ for $\alpha = 0.95\,\alpha_{\max}$ (all inside) and
$\alpha = 1.05\,\alpha_{\max}$ (the stiffest eigenvalue leaves through $z = -2$).
Each title reports what `flow.descend` (`throw=False`) does from the minimiser
plus a seeded perturbation of size $10^{-3}$: it converges below the disk
boundary and diverges above it.

Run: `python figures/euler_disk.py --out DIR [--quick]`.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np

import flow
import stability
from figures import _plots, _style
from flow import metrics, problems


NAME = "euler_disk"
N_FULL = 20
N_QUICK = 8
FACTORS = (0.95, 1.05)
SEED = 20261124


def compute(N: int) -> dict:
    """The spectrum, the Euler bound and one descent per factor of alpha_max."""
    sh = flow.shoot(problems.get("linear_quadratic"), N)
    eq = stability.equilibrium(sh)
    spec = stability.spectrum(stability.linearize(sh, eq, metric="identity"))
    bound = stability.euler_bound(spec)
    rng = np.random.default_rng(SEED)
    U0 = eq.U + 1e-3 * jnp.asarray(rng.standard_normal(sh.control_shape))
    runs = []
    for f in FACTORS:
        alpha = f * bound.alpha_max
        tr = flow.descend(
            sh, U0, metric=metrics.Identity(), step=alpha, max_steps=5000, tol=1e-10, throw=False
        )
        runs.append(dict(factor=f, alpha=alpha, rate=bound.rate(alpha), trace=tr))
    return dict(shooting=sh, spectrum=spec, bound=bound, runs=runs)


def make(out: Path, *, quick: bool = False) -> list[Path]:
    """Draw the figure into `out` (`euler_disk.png`, `euler_disk.pdf`); returns the paths."""
    d = compute(N_QUICK if quick else N_FULL)
    bound, spec = d["bound"], d["spectrum"]
    fig, axes = _style.figure(2, width=_style.WIDTH_DOUBLE, height=4.0)
    for ax, run in zip(axes, d["runs"], strict=True):
        tr = run["trace"]
        if tr.result == flow.RESULTS.diverged:
            what = f"descend diverged at iteration {int(tr.diverged_at)}"
        elif tr.success:
            what = f"descend converged in {int(tr.num_steps)} iterations"
        else:
            what = f"descend: {tr.status} after {int(tr.num_steps)}"
        _plots.stability_disk(
            ax,
            spec.eigenvalues,
            run["alpha"],
            zoom=False,
        )
        ax.text(
            0.02,
            0.03,
            rf"{spec.size} eigenvalues $\mu$ of $J$, all real"
            "\n"
            r"($J = -\nabla^2 E^N$ is symmetric)",
            transform=ax.transAxes,
            fontsize=7.5,
            color="0.3",
        )
        ax.set_xlim(-2.35, 0.3)
        ax.set_ylim(-1.6, 1.3)
        ax.set_title(
            rf"$\alpha = {run['factor']:.2f}\,\alpha_{{\max}}$: "
            rf"$\rho = \max|1+\alpha\mu| = {run['rate']:.3f}$"
            f"\n{what}",
            fontsize=9.5,
        )
        # below the panel, clear of the disk (which fills the axes' width)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=7.5)
    fig.suptitle(
        rf"Forward Euler's disk $|1 + \alpha\mu| < 1$ on linear_quadratic, $N = {spec.N}$, "
        rf"identity metric: $\alpha_{{\max}} = {bound.alpha_max:.4g}$ (stability.euler_bound)",
        fontsize=10,
    )
    return _style.save(fig, out, NAME)


def main(argv: list[str] | None = None) -> int:
    """`python figures/euler_disk.py --out DIR [--quick]`."""
    return _plots.command_line(make, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
