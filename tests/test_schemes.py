"""One-step schemes: order of accuracy against the matrix exponential."""

import jax.numpy as jnp
import numpy as np
import pytest
from _reference import fit_order, linear_flow_exact

import flow


A = np.array([[-0.5, 2.0], [-1.5, -0.2]])
B = np.array([[1.0], [0.5]])
X0 = np.array([1.0, -1.0])
U_CONST = np.array([0.7])
T = 2.0


def linear_problem():
    Aj, Bj = jnp.asarray(A), jnp.asarray(B)
    return flow.OptimalControlProblem(
        lambda x, u: Aj @ x + Bj @ u,
        lambda x: jnp.sum(x**2),
        x0=X0,
        t0=0.0,
        tf=T,
        control_dim=1,
    )


@pytest.mark.parametrize(
    "scheme, Ns",
    [
        (flow.Euler(), [16, 32, 64, 128, 256, 512]),
        (flow.Heun(), [16, 32, 64, 128, 256, 512]),
        # RK4 reaches the rounding floor (~1e-14) near N = 1000: stay above it.
        (flow.RK4(), [8, 16, 32, 64, 128]),
    ],
    ids=lambda v: getattr(v, "name", ""),
)
def test_order_against_expm(scheme, Ns):
    exact = linear_flow_exact(A, B, U_CONST, X0, T)
    errs, hs = [], []
    for N in Ns:
        sh = flow.shoot(linear_problem(), N, scheme)
        U = jnp.full(sh.control_shape, U_CONST[0])
        errs.append(np.max(np.abs(np.asarray(sh.states(U))[-1] - exact)))
        hs.append(T / N)
    assert min(errs) > 1e-13  # above rounding, so the fit measures truncation
    order = fit_order(hs, errs)
    assert abs(order - scheme.order) < 0.1, (scheme.name, order, errs)


def test_schemes_by_name():
    assert flow.scheme_from_name("RK4") == flow.RK4()
    assert flow.scheme_from_name("heun") == flow.Heun()
    with pytest.raises(ValueError, match="`scheme`"):
        flow.scheme_from_name("midpoint")


def test_abstract_scheme_cannot_be_instantiated():
    with pytest.raises(TypeError):
        flow.AbstractScheme()
