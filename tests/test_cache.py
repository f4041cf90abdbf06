"""The persistent compilation cache of `gradflow`: where it lives, how it is turned
off, that it refuses a directory that is not the user's own, and that the command
line fills it."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache

import gradflow


@pytest.fixture
def restore_cache_config():
    """enable_cache changes process-wide JAX settings: put the run's back afterwards."""
    directory = jax.config.jax_compilation_cache_dir
    min_time = jax.config.jax_persistent_cache_min_compile_time_secs
    yield
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_time)
    compilation_cache.set_cache_dir(directory)
    compilation_cache.reset_cache()


def test_default_directory_is_the_users_cache(monkeypatch, tmp_path):
    if sys.platform in ("win32", "darwin"):
        pytest.skip("the XDG layout is the Linux default")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert gradflow.default_cache_dir() == tmp_path / "gradflow" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert gradflow.default_cache_dir() == Path.home() / ".cache" / "gradflow" / "jax"


@pytest.mark.parametrize("value", ["", "0", "off", "OFF", "none", "false", "no"])
def test_the_environment_variable_turns_it_off(monkeypatch, value, restore_cache_config):
    before = jax.config.jax_compilation_cache_dir
    monkeypatch.setenv(gradflow.CACHE_ENV, value)
    assert gradflow.enable_cache() is None
    assert jax.config.jax_compilation_cache_dir == before


def test_the_environment_variable_moves_it(monkeypatch, tmp_path, restore_cache_config):
    target = tmp_path / "elsewhere" / "kernels"
    monkeypatch.setenv(gradflow.CACHE_ENV, str(target))
    assert gradflow.enable_cache() == target
    assert jax.config.jax_compilation_cache_dir == str(target)
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0  # every kernel
    if os.name == "posix":
        assert stat.S_IMODE(target.stat().st_mode) == 0o700  # private to the user
    # an explicit path wins over the variable
    other = tmp_path / "explicit"
    assert gradflow.enable_cache(other) == other


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_refuses_a_directory_others_can_write(tmp_path, restore_cache_config):
    before = jax.config.jax_compilation_cache_dir
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(PermissionError, match="writable by others.*trusted code"):
        gradflow.enable_cache(shared)
    assert jax.config.jax_compilation_cache_dir == before
    # a group- or world-writable parent that is not sticky is refused as well
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o775)
    with pytest.raises(PermissionError, match=str(loose)):
        gradflow.enable_cache(loose / "kernels")


# two `gradflow analyze` processes (28 s); the cache itself is tested above in-process
@pytest.mark.slow
def test_the_command_line_fills_the_cache_and_can_skip_it(tmp_path):
    gradflow_exe = Path(sys.executable).with_name("gradflow")
    cache = tmp_path / "cache"
    command = [str(gradflow_exe), "analyze", "--N", "10", "--equivalence-N", "10"]
    command += ["--step", "none", "--json", "--out", str(tmp_path / "out")]
    env = {**os.environ, gradflow.CACHE_ENV: str(cache)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert cache.is_dir() and any(cache.iterdir()), "no compiled kernel was kept"
    # a directory that is not private: a warning, and the analysis still runs
    cache.chmod(0o777)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "warning" in done.stderr and "Running without the cache" in done.stderr
