"""The JAX persistent compilation cache: compiled kernels kept on disk between runs.

Most of the time of a first analysis in a fresh process is XLA compilation. With the
cache on, a later process loads the kernels an earlier one compiled instead of
compiling them again. The `gradflow` command turns it on by default; from Python,
call [`enable_cache`][gradflow.enable_cache] before the first computation.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache


CACHE_ENV = "GRADFLOW_CACHE_DIR"
"""The environment variable that moves the cache (a directory) or turns it off (the
empty string, `0`, `off`, `false`, `no` or `none`)."""

_OFF = {"", "0", "off", "false", "no", "none"}

#: The directory `enable_cache` turned on in this process, if any (a sweep's local
#: workers share it).
active: Path | None = None


def default_cache_dir() -> Path:
    """The user's own cache directory for `gradflow`'s compiled kernels:
    `$XDG_CACHE_HOME/gradflow/jax` (default `~/.cache/gradflow/jax`) on Linux,
    `~/Library/Caches/gradflow/jax` on macOS, `%LOCALAPPDATA%\\gradflow\\jax` on
    Windows."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "gradflow" / "jax"


def _private(path: Path) -> None:
    """Refuse a directory that another user owns or can write to: JAX loads the
    executables it finds there, so the cache is trusted code."""
    if os.name != "posix":
        return
    for where in (path, path.parent):
        info = where.stat()
        others_write = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if where == path.parent and info.st_mode & stat.S_ISVTX:
            others_write = 0  # a sticky parent such as /tmp: others cannot replace `path`
        if (where == path and info.st_uid != os.getuid()) or others_write:
            raise PermissionError(
                f"the compilation cache directory {path} must be the user's own: {where} is "
                f"{'writable by others' if others_write else 'owned by another user'}"
                f" (JAX loads executables from the cache: it is trusted code). Fix its "
                f"permissions, or set {CACHE_ENV} to another directory or to 'off'."
            )


def enable_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache; returns its directory, or `None`
    when it is turned off.

    `path=None` takes the directory from the environment variable `GRADFLOW_CACHE_DIR`
    (the empty string, `0`, `off`, `false`, `no` or `none` turn the cache off) or, when
    it is unset, [`default_cache_dir`][gradflow.default_cache_dir]. The directory is
    created private to the user (mode 0700). Every compiled kernel is kept: a default
    `gradflow analyze` compiles 10 programs and, measured on 2 cores, takes 7.4 s
    with an empty cache against 5.1 s with a warm one (`benchmarks/bench_startup.py`).

    Call it before the first computation of the process (JAX reads the setting when it
    first compiles; later calls take effect for later compilations). The `gradflow`
    command calls it on start.

    **Raises:** `PermissionError` when the directory or its parent is owned by another
    user or writable by others: JAX loads executables from the cache, so it must be
    the user's own.
    """
    if path is None:
        setting = os.environ.get(CACHE_ENV)
        if setting is not None and setting.strip().lower() in _OFF:
            return None
        path = setting if setting is not None else default_cache_dir()
    directory = Path(path).expanduser().resolve()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    _private(directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    compilation_cache.set_cache_dir(str(directory))
    compilation_cache.reset_cache()  # re-read the directory at the next compilation
    global active
    active = directory
    return directory
