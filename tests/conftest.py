"""Test configuration: float64, strict promotion, warnings as errors (pyproject).

The suite also checks every annotation of `flow`, `stability` and `gradflow` at run
time (pyproject's `--jaxtyping-packages`, beartype). An argument of the wrong *type*
is then refused by the checker first, with a `TypeError` that names the parameter
(without backticks); an argument of the right type and a wrong *value* reaches the
verb's own check (`flow.validation`), whose message names it in backticks. Tests of
type errors therefore match the bare parameter name.
"""

import jax


jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import Phase, settings  # noqa: E402


# Hypothesis is seeded: the same examples on every run and machine. The "mutation"
# profile (`--hypothesis-profile=mutation`, used by .ci/mutation_check.py) skips
# shrinking, which only makes a failure smaller, not more certain.
settings.register_profile("default", derandomize=True)
settings.register_profile(
    "mutation", derandomize=True, phases=[Phase.explicit, Phase.reuse, Phase.generate]
)
settings.load_profile("default")


@pytest.fixture
def rng():
    """A seeded numpy generator (tests are deterministic)."""
    return np.random.default_rng(20261124)


#: Clear JAX's caches after a test module once the process has this many memory maps.
MAX_MAPS = 20_000


def _memory_maps() -> int:
    try:
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f)
    except OSError:  # not Linux: no per-process map limit to watch
        return 0


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Drop JAX's compiled executables after a test module when they pile up.

    Each XLA CPU executable maps its own code and data pages. The whole suite
    compiles some twenty thousand kernels; kept alive by the jit caches, their
    mappings reached Linux's limit of 65530 per process (`vm.max_map_count`) near
    the end of a run, and the next compilation segfaulted (measured: 63600 maps,
    5.8 GB resident, jax 0.10.2). Clearing the caches at `MAX_MAPS` keeps the
    process far from the limit while modules that follow each other still share
    compiled kernels.
    """
    yield
    if _memory_maps() > MAX_MAPS:
        jax.clear_caches()


#: The environment variable that hands the run's compilation cache to xdist workers.
_CACHE_ENV = "GRADFLOW_TEST_COMPILATION_CACHE"


def pytest_configure(config):
    """One JAX persistent compilation cache for the whole run, in a fresh temporary
    directory (a clean run starts empty, as CI does): the xdist workers and the
    modules after a `jax.clear_caches()` load kernels another part of the run
    compiled instead of compiling them again. Removed when the run ends."""
    if _CACHE_ENV not in os.environ:
        os.environ[_CACHE_ENV] = tempfile.mkdtemp(prefix="gradflow-tests-jax-cache-")
        config.stash[_owner] = os.environ[_CACHE_ENV]
    jax.config.update("jax_compilation_cache_dir", os.environ[_CACHE_ENV])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)


def pytest_unconfigure(config):
    owned = config.stash.get(_owner, None)
    if owned is not None:
        shutil.rmtree(owned, ignore_errors=True)
        os.environ.pop(_CACHE_ENV, None)


_owner = pytest.StashKey[str]()


#: Test files by their measured share of the default run (seconds, 2 cores, xdist),
#: heaviest first. pytest-xdist (`--dist loadfile`) hands files to its workers in
#: collection order; starting with the longest files and ending with the short ones
#: keeps one worker from running a long file alone at the end. Files not listed run
#: after these, in the usual order.
HEAVY_FIRST = (
    "test_results.py",  # 95
    "test_figures.py",  # 78
    "test_indirect.py",  # 73
    "test_gradient_flow.py",  # 64
    "test_shooting.py",  # 60
    "test_docs.py",  # 45
    "test_cli.py",  # 43
    "test_gaps.py",  # 29
    "test_descent.py",  # 27
    "test_basin.py",  # 25
    "test_report.py",  # 24
)


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
