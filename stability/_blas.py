"""Run dense linear algebra with a single-threaded BLAS.

JAX's CPU eigensolvers and scipy call LAPACK from an OpenBLAS. On a small
machine a multi-threaded OpenBLAS competes with XLA's own thread pool (whose
threads keep spinning for a while after each JAX computation) and with other
processes: measured on two cores, `eigvalsh` of a 2000 x 2000 matrix took 4-18 s
with two OpenBLAS threads right after JAX work and 0.55 s with one. So the
spectrum computations run inside [`single_threaded_blas`][], which limits every
loaded BLAS to one thread (`threadpoolctl`) and restores it afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import threadpoolctl


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Limit every loaded BLAS to one thread inside the block."""
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        yield
