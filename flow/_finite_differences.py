r"""The one central-difference gradient of the package.

$$D_j(\delta) = \frac{f(U + \delta_j e_j) - f(U - \delta_j e_j)}
                    {(U_j + \delta_j) - (U_j - \delta_j)},
  \qquad \delta_j = \delta\,\max(1, |U_j|),$$

dividing by the step actually taken (its representable value). The truncation
error is $\delta_j^2 |f'''|/6$ and the rounding error about $\epsilon |f| / \delta_j$,
so $\delta = \epsilon^{1/3}$ balances them (error $\sim \epsilon^{2/3}$, about 1e-10
for $f$ of order one). Used by `Shooting.gradient(U, "finite-difference")` and by
the adaptive map's full derivative (at $\delta$ and $\delta/2$, to detect jumps).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


#: The step that balances truncation and rounding for float64: eps^(1/3).
BALANCED_STEP = float(jnp.finfo(jnp.float64).eps) ** (1.0 / 3.0)


def central_differences(
    f: Callable[[Array], Array], U: Float[Array, "..."], delta: float | Array
) -> Float[Array, "..."]:
    """The central-difference gradient of the scalar function `f` at `U` (any shape),
    one component at a time with the relative step `delta` (see the module). Costs
    `2 U.size` evaluations of `f`, batched 64 at a time (`lax.map`); traceable."""
    flat = U.reshape(-1)
    steps = delta * jnp.maximum(1.0, jnp.abs(flat))

    def one(j):
        e = jnp.zeros_like(flat).at[j].set(steps[j])
        up = f((flat + e).reshape(U.shape))
        down = f((flat - e).reshape(U.shape))
        taken = (flat[j] + steps[j]) - (flat[j] - steps[j])
        return (up - down) / taken

    return jax.lax.map(one, jnp.arange(flat.shape[0]), batch_size=64).reshape(U.shape)
