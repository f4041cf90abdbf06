"""Test configuration: float64, strict promotion, warnings as errors (pyproject)."""

import jax


jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    """A seeded numpy generator (tests are deterministic)."""
    return np.random.default_rng(20261124)
