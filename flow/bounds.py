r"""Box bounds on the controls, $\ell \le U \le \upsilon$.

A bounded direct method minimises $E^N(U)$ over the box
$B = \{U : \ell_{k,i} \le u_{k,i} \le \upsilon_{k,i}\}$; $\pm\infty$ leaves a side
free. Its first-order (KKT) condition is that the *projected gradient* vanishes,

$$r(U) = U - P_B\bigl(U - \nabla E^N(U)\bigr) = 0,$$

with $P_B$ the componentwise clip onto the box: free components have
$\partial E^N/\partial u_{k,i} = 0$, components at the lower bound have
$\partial E^N/\partial u_{k,i} \ge 0$, at the upper bound $\le 0$. The gradient there
is the bound multiplier $\nu = \nabla E^N(U^*)$ (positive at a lower bound, negative
at an upper one, 0 on the free set): the KKT condition
$\nabla E^N = \mu_\ell - \mu_\upsilon$ with $\mu \ge 0$. By Lemma 2
($\nabla_{u_k} E^N = h_k\,\partial_u H_k$) the multiplier is $h_k$ times the
Hamiltonian gradient on the active set, and the mesh-independent (Hamiltonian) form of
the residual is $r_H(U) = U - P_B(U - \partial_u H)$: the first-order condition of the
discrete minimum principle, $u_k$ minimising $H(\lambda_k, x_k, \cdot)$ over the box.

Near a solution with strict complementarity the active components stay on their
bounds and the free ones follow the unbounded problem restricted to the free set
([`restrict`][flow.bounds.restrict]), whose spectrum and Euler bound are the reduced
ones.
"""

from ._box import (
    AT_LOWER as AT_LOWER,
    AT_UPPER as AT_UPPER,
    FREE as FREE,
    active_set as active_set,
    multipliers as multipliers,
    project as project,
    projected_residual as projected_residual,
    validate_bounds as validate_bounds,
)
from ._free_set import FreeShooting as FreeShooting, restrict as restrict


#: The public names of `flow.bounds`: what the API reference documents (tests/test_docs.py).
__all__ = [
    "AT_LOWER",
    "AT_UPPER",
    "FREE",
    "FreeShooting",
    "active_set",
    "multipliers",
    "project",
    "projected_residual",
    "restrict",
    "validate_bounds",
]
