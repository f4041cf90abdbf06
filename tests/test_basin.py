"""stability.basin: the region-of-convergence experiment of the paper's section 6.3."""

import json

import numpy as np
import pytest
import scipy.integrate

import flow
from flow import problems
from flow.indirect import solve_conditions
from stability import Basin, basin


SREG = problems.scalar_regularized()


def _blows_up(lam0):
    """Does the canonical system of scalar_regularized (u = -lambda) started at
    (x, lambda) = (0, lam0) fail to reach t = 1? scipy, independent of the package."""

    def rhs(t, y):
        x, lam = y
        return [-x - lam - 0.1 * x**3, lam * (1.0 + 0.3 * x**2)]

    sol = scipy.integrate.solve_ivp(rhs, (0.0, 1.0), [0.0, lam0], "DOP853", rtol=1e-8, atol=1e-10)
    return sol.status != 0 or not np.all(np.isfinite(sol.y)) or np.max(np.abs(sol.y)) > 1e8


# 10 s; basin runs by default in test_basin_far_costate_guesses and test_bounds_indirect.py
@pytest.mark.slow
def test_basin_near_the_optimum():
    N = 20
    sh = flow.shoot(SREG, N)
    U_star = solve_conditions(sh).U
    # the forward-Euler bound of gradient descent (identity metric) at U*, from the
    # dense Hessian's eigenvalues by numpy: alpha_max = 2 / lambda_max
    alpha_max = 2.0 / np.linalg.eigvalsh(np.asarray(sh.hessian(U_star))).max()
    b = basin(
        sh,
        steps=(0.5 * alpha_max, 1.5 * alpha_max),
        dampings=(1.0, 0.5),
        n_starts=8,
        seed=3,
        center=U_star,
        spread=1e-3,
        metric="identity",
        max_steps=400,
        tol=1e-8,
        conditions=True,
    )
    assert isinstance(b, Basin)
    for r in b.rows:
        assert 0.0 <= r.fraction <= 1.0 and r.starts == 8
        assert sum(r.outcomes.values()) == 8 and r.outcomes.get("converged", 0) == r.converged
    descent = b.fractions("descent")
    inside, outside = sorted(descent)
    # linear stability decides near U*: every start converges inside the bound, none
    # outside it (the iteration is repelled along the top eigenvector)
    assert descent[inside] == 1.0 and descent[outside] == 0.0
    # costate shooting from the costates the same controls imply: converges at both
    # dampings; the damped iteration contracts only linearly (rate 1 - d), so it
    # needs more iterations than Newton
    shooting = {r.setting: r for r in b.rows if r.method == "costate shooting"}
    assert shooting[1.0].fraction == 1.0 and shooting[0.5].fraction == 1.0
    assert shooting[0.5].median_steps > 2 * shooting[1.0].median_steps
    assert b.fractions("Newton on (36)") == {None: 1.0}
    json.dumps(b.to_dict())
    text = b.summary()
    assert "costate shooting" in text and "descent" in text and "Newton on (36)" in text
    assert "Basin(" in repr(b)


def test_basin_far_costate_guesses():
    # Costate guesses far from lambda*(0) ~ -0.255: a guess whose own trajectory
    # blows up before t = 1 (checked with scipy) fails at every damping -- damping
    # shortens Newton steps, it cannot repair the first integration.
    sh = flow.shoot(SREG, 20)
    lam0s = np.array([[-0.2], [1.5], [-6.0], [12.0], [-20.0], [3.0], [-1.0], [25.0]])
    b = basin(
        sh,
        steps=(1.0,),
        dampings=(1.0, 0.5),
        n_starts=8,
        lambda_starts=lam0s,
        metric="identity",
        max_steps=5,
        shooting_max_steps=200,
    )
    assert b.lambda_starts == "given"
    blow = np.array([_blows_up(float(l)) for l in lam0s[:, 0]])
    assert blow.any() and not blow.all()  # the check is not vacuous
    for r in b.rows:
        if r.method == "costate shooting":
            assert r.converged <= int((~blow).sum())
            assert r.converged >= 1


def test_basin_bad_input():
    sh = flow.shoot(SREG, 5)
    with pytest.raises(ValueError, match="center"):
        basin(sh, steps=(1.0,), center=np.zeros((4, 1)))
    with pytest.raises(ValueError, match="lambda_starts"):
        basin(sh, steps=(1.0,), n_starts=3, lambda_starts=np.zeros((2, 1)))
    with pytest.raises(ValueError, match="steps"):
        basin(sh, steps=(-1.0,))
    with pytest.raises(ValueError, match="metric"):
        basin(sh, steps=(1.0,), metric="sobolev")
    with pytest.raises(TypeError, match="shooting"):
        basin(SREG, steps=(1.0,))


@pytest.mark.slow
def test_basin_damping_widens_the_region_for_the_unicycle():
    # Section 6.3 on a problem where Newton's full steps overshoot: costate shooting
    # for the unicycle from lambda(0) guesses of spread 0.3 converges from more starts
    # with a damped step (measured: 10/32 at d = 1, 24/32 at d = 0.5, seed 0).
    sh = flow.shoot(problems.unicycle(), 20)
    rng = np.random.default_rng(0)
    lam0s = 0.3 * rng.standard_normal((32, 3))
    b = basin(
        sh,
        steps=(0.1,),
        dampings=(1.0, 0.5),
        n_starts=32,
        lambda_starts=lam0s,
        metric="identity",
        max_steps=10,
    )
    f = b.fractions("costate shooting")
    assert f[0.5] > f[1.0] + 0.2
