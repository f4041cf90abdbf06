r"""Section 8 and the conclusions: a residual network is direct shooting, and the
Hamiltonian metric is a depth-scaled learning rate.

A residual block $x_{k+1} = x_k + h\,f(x_k, u_k)$ is a forward-Euler step (16): the
layers are the grid intervals of $[0, T]$, the layer weights are the controls $u_k$
and training is the descent (37) on $E^N$. The network of
`figures.depth.network`: four 1-D inputs $s_i$ lifted to the 2-D
features $(s_i, 0)$, every layer $f(x, u) = \tanh(W x + b)$ applied to each sample
with the same $u = (W, b)$ ($m = 6$; the state $x \in \mathbb{R}^{8}$ stacks the
samples), and the loss $E(x_N) = \frac{1}{4}\sum_i (c^T x_{N,i} - \sin 2 s_i)^2$
with the fixed readout $c = (0, 1)$.

At fixed total time $T = 2$ ($h = T/N$), from $U = 0$, `flow.descend` trains until
$\max_k |\partial_u H_k| \leq 10^{-6}$ with

- the identity metric and a fixed learning rate $\alpha = c/h_0$ (plain gradient
  descent; $h_0 = T/N_0$ at the shallowest depth $N_0$): by Lemma 2 its steps are
  $\alpha h\,\partial H/\partial U$, so its count grows like $N$;
- the Hamiltonian metric $M = \mathrm{diag}(h)$ with step $c$: a flat count (mesh
  independence, section 6.2);
- the identity metric with the depth-scaled learning rate $\alpha = c/h$: the same
  iterates as the Hamiltonian metric (hollow markers on top of its line).

The steps lie inside the forward-Euler bounds $\alpha_{\max}$ of
`stability.euler_bound` on the spectrum of $J = -M^{-1}\nabla^2 E^N$ at the trained
equilibrium (right panel): $\alpha_{\max}$ grows like $N$ under the identity metric
(a fixed $\alpha$ uses an ever smaller fraction of it) and converges under the
Hamiltonian one. Dotted lines on the left: the counts `EulerBound.iterations`
predicts from that spectrum, $\lceil\log(\text{tol}/r_0)/\log\rho(\alpha)\rceil$.

Run: `python figures/depth.py --out DIR [--quick]`.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np

import flow
import stability
from figures import _plots, _style


NAME = "depth"
NS_FULL = (4, 8, 16, 32, 64, 128, 256)
NS_QUICK = (4, 8)
#: total time (network "length"); the depth N sets h = T/N
T = 2.0
#: stopping tolerance on max_k |d_u H_k| (the same for every metric)
TOL = 1e-6
#: step c of the Hamiltonian metric: about half of its forward-Euler bound (0.54 to
#: 0.62 for N = 4 ... 256); the identity metric gets alpha = c/h_0
STEP = 0.25
#: tolerance of the refined training run whose end point is linearised
EQUILIBRIUM_TOL = 1e-11

#: the training set: four 1-D inputs, their 2-D features (s, 0), targets sin(2 s)
INPUTS = np.array([-1.0, -0.4, 0.3, 1.0])
TARGETS = np.sin(2.0 * INPUTS)
#: the fixed linear readout of the last layer's features
READOUT = np.array([0.0, 1.0])
FEATURES = 2


def network(T: float = T) -> flow.OptimalControlProblem:
    r"""The residual network as an optimal control problem (P) on $[0, T]$.

    State: the features of the $B = 4$ samples stacked, $x = (x_1, \dots, x_B)$,
    $x_i \in \mathbb{R}^2$, $x_i(0) = (s_i, 0)$; control $u = (W, b)$, $W$ of shape
    (2, 2) row-major then $b$ ($m = 6$), shared by the samples;
    $f(x, u)_i = \tanh(W x_i + b)$; $E(x) = \frac{1}{B}\sum_i (c^T x_i - y_i)^2$.
    With `flow.Euler` and $N$ intervals the discrete problem is a residual network of
    depth $N$ with blocks $x_{k+1} = x_k + h\tanh(W_k x_k + b_k)$, $h = T/N$.
    """
    B, d = INPUTS.size, FEATURES
    x0 = jnp.stack([jnp.asarray(INPUTS), jnp.zeros(B)], axis=1).reshape(-1)
    y = jnp.asarray(TARGETS)
    c = jnp.asarray(READOUT)

    def f(x, u):
        W = u[: d * d].reshape(d, d)
        b = u[d * d :]
        return jnp.tanh(x.reshape(B, d) @ W.T + b[None, :]).reshape(-1)

    def E(x):
        return jnp.mean((x.reshape(B, d) @ c - y) ** 2)

    return flow.OptimalControlProblem(
        f, E, x0, 0.0, T, control_dim=d * d + d, name="residual_network"
    )


def compute(
    Ns: tuple[int, ...], *, step: float = STEP, tol: float = TOL, bounds: bool = True
) -> dict[str, np.ndarray]:
    """Per depth N: the iterations to `tol` of the three runs (`it_identity`: fixed
    alpha = step/h_0; `it_hamiltonian`: step; `it_scaled`: identity with step/h), the
    largest difference between the Hamiltonian and the depth-scaled iterates
    (`scaled_diff`), the final loss, and with `bounds` the forward-Euler bounds at
    the trained equilibrium (`alpha_max_*`, `alpha_opt_*`) with the predicted counts
    (`pred_*`). Also `alpha_identity`, `step`, `T`, `tol`."""
    problem = network()
    h0 = T / Ns[0]
    alpha = step / h0
    keys = ["it_identity", "it_hamiltonian", "it_scaled", "scaled_diff", "loss"]
    if bounds:
        keys += [
            f"{q}_{m}" for q in ("alpha_max", "alpha_opt", "pred") for m in ("identity", "ham")
        ]
    rows: dict[str, list[float]] = {k: [] for k in keys}
    for N in Ns:
        sh = flow.shoot(problem, N)
        U0 = sh.zeros()
        h = T / N
        budget = 400 * N + 4000  # the identity metric needs 120 N to 135 N
        ham = flow.descend(sh, U0, metric="hamiltonian", step=step, max_steps=4000, tol=tol)
        ident = flow.descend(sh, U0, metric="identity", step=alpha, max_steps=budget, tol=tol)
        scaled = flow.descend(sh, U0, metric="identity", step=step / h, max_steps=4000, tol=tol)
        rows["it_hamiltonian"].append(int(ham.num_steps))
        rows["it_identity"].append(int(ident.num_steps))
        rows["it_scaled"].append(int(scaled.num_steps))
        rows["scaled_diff"].append(float(jnp.max(jnp.abs(scaled.U - ham.U))))
        rows["loss"].append(float(sh.cost(ham.U)))
        if not bounds:
            continue
        # the trained equilibrium: the same training continued to a tight residual
        eq = flow.descend(
            sh, ham.U, metric="hamiltonian", step=step, max_steps=4000, tol=EQUILIBRIUM_TOL
        )
        r0 = float(jnp.max(jnp.abs(sh.hamiltonian_gradient(U0))))
        for m, name, used in (("identity", "identity", alpha), ("ham", "hamiltonian", step)):
            spec = stability.spectrum(stability.linearize(sh, eq.U, metric=name))
            bound = stability.euler_bound(spec, reduction=tol / r0)
            rows[f"alpha_max_{m}"].append(bound.alpha_max)
            rows[f"alpha_opt_{m}"].append(bound.alpha_opt)
            rows[f"pred_{m}"].append(bound.iterations(used))
    out = {k: np.asarray(v, dtype=np.float64) for k, v in rows.items()}
    return out | {
        "N": np.asarray(Ns),
        "alpha_identity": np.float64(alpha),
        "step": np.float64(step),
        "T": np.float64(T),
        "tol": np.float64(tol),
    }


def make(out: Path, *, quick: bool = False) -> list[Path]:
    """Draw the figure into `out` (`depth.png`, `depth.pdf`); returns the paths."""
    d = compute(NS_QUICK if quick else NS_FULL)
    return draw(d, out)


def draw(d: dict, out: Path) -> list[Path]:
    """Draw the figure from the data of `compute` into `out` (`depth.png`,
    `depth.pdf`); returns the paths."""
    N = d["N"].astype(np.float64)
    fig, (a, b) = _style.figure(2, width=_style.WIDTH_DOUBLE, height=4.4)
    blue, red, green = _style.COLORS[0], _style.COLORS[1], _style.COLORS[2]
    alpha, c = float(d["alpha_identity"]), float(d["step"])
    xlabel = rf"depth $N$ (layers; $h = T/N$, $T = {float(d['T']):g}$)"

    # (a) iterations against depth
    runs = (
        (
            "it_identity",
            "pred_identity",
            rf"identity, fixed $\alpha = {alpha:g}$ ($= {c:g}/h$ at $N = {int(N[0])}$)",
            blue,
            "o",
        ),
        (
            "it_hamiltonian",
            "pred_ham",
            rf"Hamiltonian $M = \mathrm{{diag}}(h)$, step {c:g}",
            green,
            "^",
        ),
    )
    for key, pred, label, color, marker in runs:
        slope = _plots.fmt_slope(_plots.loglog_slope(N, d[key]))
        a.loglog(N, d[key], color=color, marker=marker, label=f"{label}: slope {slope}")
        a.loglog(N, d[pred], color=color, linestyle="--", linewidth=0.9)
        a.annotate(
            f"{d[key][-1]:.0f}",
            (N[-1], d[key][-1]),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            fontsize=7.5,
            color=color,
        )
    a.loglog(
        N,
        d["it_scaled"],
        color=red,
        linestyle="none",
        marker="s",
        markersize=8,
        markerfacecolor="none",
        label=rf"identity, depth-scaled $\alpha = {c:g}/h$ (same iterates)",
    )
    _plots.reference_slope(
        a, N, 0.5 * d["it_identity"][0], 1.0, label=r"guide: slope 1 ($\propto N$)"
    )
    a.plot([], [], color="0.4", linestyle="--", linewidth=0.9, label="predicted by euler_bound")
    a.set_xlabel(xlabel)
    a.set_ylabel(r"iterations to $\max_k|\partial_u H_k| \leq 10^{-6}$")
    a.set_title("(a) training iterations against depth")
    a.set_ylim(top=float(np.max(d["it_identity"])) * 60)
    a.set_xlim(right=float(N[-1]) * 1.7)
    a.legend(loc="upper left", fontsize=7.5)

    # (b) forward-Euler bounds at the trained equilibrium and the steps used
    for key, used, name, color, marker in (
        ("identity", alpha, "identity", blue, "o"),
        ("ham", c, "Hamiltonian", green, "^"),
    ):
        bound = d[f"alpha_max_{key}"]
        slope = _plots.fmt_slope(_plots.loglog_slope(N, bound))
        b.loglog(
            N, bound, color=color, marker=marker, label=rf"{name}: $\alpha_{{\max}}$, slope {slope}"
        )
        b.loglog(
            N,
            np.full_like(N, used),
            color=color,
            linestyle="--",
            linewidth=1.3,
            label=rf"{name}: step used, {used:g}",
        )
        b.annotate(
            rf"{used / bound[0]:.2f} $\to$ {used / bound[-1]:.2g} of $\alpha_{{\max}}$",
            (N[-1], used),
            xytext=(0, -4),
            textcoords="offset points",
            ha="right",
            va="top",
            fontsize=7.5,
            color=color,
        )
    b.set_xlabel(xlabel)
    b.set_ylabel(r"forward-Euler bound $\alpha_{\max}$ (euler_bound)")
    b.set_title("(b) step bounds at the trained equilibrium")
    b.set_ylim(
        float(min(c, np.min(d["alpha_max_ham"]))) / 2.5, float(np.max(d["alpha_max_identity"])) * 8
    )
    b.legend(loc="upper left", fontsize=7.5)
    for ax in (a, b):
        ax.set_xticks(N, [str(int(n)) for n in N])
        ax.set_xticks([], minor=True)
    fig.suptitle(
        r"A residual network $x_{k+1} = x_k + h\tanh(W_k x_k + b_k)$ is forward Euler: "
        r"gradient descent's iterations grow like the depth $N$;"
        "\n"
        r"the Hamiltonian metric (the learning rate scaled by $1/h$) trains in a "
        "depth-independent number of iterations",
        fontsize=10,
    )
    return _style.save(fig, out, NAME)


def main(argv: list[str] | None = None) -> int:
    """`python figures/depth.py --out DIR [--quick]`."""
    return _plots.command_line(make, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
