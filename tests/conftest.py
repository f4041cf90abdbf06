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
    # the `gradflow` command (in-process and in subprocesses) uses the run's cache, not
    # the user's own
    os.environ["GRADFLOW_CACHE_DIR"] = os.environ[_CACHE_ENV]  # gradflow.CACHE_ENV


def pytest_unconfigure(config):
    owned = config.stash.get(_owner, None)
    if owned is not None:
        shutil.rmtree(owned, ignore_errors=True)
        os.environ.pop(_CACHE_ENV, None)


_owner = pytest.StashKey[str]()


#: The units pytest-xdist hands to its workers (`--dist loadgroup`): a test file, except
#: that the cases of the tests in `SPLIT` (the tutorials, the quick figures) are units
#: of their own (as one unit they would keep one worker busy alone). Units by
#: their measured share of the default run (seconds, 2 cores, xdist), heaviest first:
#: xdist hands units out in collection order, so the longest start first and the short
#: ones fill in at the end. Units not listed run after these, in the usual order.
HEAVY_FIRST = (
    "test_results.py",  # 94
    "test_indirect.py",  # 79
    "test_gradient_flow.py",  # 76
    "test_descent.py",  # 41
    "test_gaps.py",  # 38
    "test_shooting.py",  # 32
    "test_cli.py",  # 29
    "test_adaptive.py",  # 28
    "test_report.py",  # 25
    "test_krylov.py",  # 23
    "test_basin.py",  # 22
    "test_figures.py",  # 12 (its quick figures are units of their own, 3-9 s each)
)


#: Parametrized tests whose cases are scheduling units of their own: each takes seconds
#: to tens of seconds, and as one unit they would keep one worker busy alone.
SPLIT = {("test_docs.py", "test_tutorial_runs"), ("test_figures.py", "test_quick_figure")}


def _unit(item: pytest.Item) -> str:
    """The scheduling unit of a test: its file, or `file::test[id]` for the cases of
    the tests in `SPLIT`."""
    if (item.path.name, item.originalname) in SPLIT:
        return f"{item.path.name}::{item.name}"
    return item.path.name


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(_unit(item), rank.get(item.path.name, len(rank))))
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_unit(item)))
