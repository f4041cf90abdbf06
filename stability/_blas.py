"""Run dense linear algebra with a single-threaded OpenBLAS.

JAX's CPU eigensolvers call LAPACK from SciPy's bundled OpenBLAS. On a small
machine a multi-threaded OpenBLAS competes with XLA's own thread pool (whose
threads keep spinning for a while after each JAX computation) and with other
processes: measured on two cores, `eigvalsh` of a 2000 x 2000 matrix took 4-18 s
with two OpenBLAS threads right after JAX work and 0.55 s with one. So the
spectrum computations run inside [`single_threaded_blas`][], which sets every
loaded OpenBLAS to one thread and restores the previous counts afterwards (what
`threadpoolctl.threadpool_limits(1, "blas")` does; that package is used when
installed). Elsewhere (no OpenBLAS found, not Linux) it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys
from collections.abc import Callable, Iterator


_SYMBOLS = (
    ("openblas_get_num_threads", "openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
)


@functools.cache
def _controls() -> tuple[tuple[Callable[[], int], Callable[[int], None]], ...]:
    if not sys.platform.startswith("linux"):
        return ()
    try:
        with open("/proc/self/maps") as f:
            lines = f.read().splitlines()
    except OSError:
        return ()
    paths = sorted(
        {
            line.split()[-1]
            for line in lines
            if "openblas" in line.lower() and line.split()[-1].startswith("/")
        }
    )
    out = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get_name, set_name in _SYMBOLS:
            if hasattr(lib, get_name) and hasattr(lib, set_name):
                get, set_ = getattr(lib, get_name), getattr(lib, set_name)
                get.restype = ctypes.c_int
                set_.argtypes = [ctypes.c_int]
                set_.restype = None
                out.append((get, set_))
                break
    return tuple(out)


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Limit every loaded OpenBLAS to one thread inside the block."""
    try:
        import threadpoolctl  # type: ignore[import-not-found]
    except ImportError:
        threadpoolctl = None
    if threadpoolctl is not None:
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            yield
        return
    controls = _controls()
    previous = [get() for get, _ in controls]
    for _, set_ in controls:
        set_(1)
    try:
        yield
    finally:
        for (_, set_), n in zip(controls, previous, strict=True):
            set_(n)
