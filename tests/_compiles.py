"""Counting the programs XLA compiles (through `jax.monitoring`)."""

import contextlib
from collections.abc import Iterator

import jax


@contextlib.contextmanager
def counted() -> Iterator[list[str]]:
    """The names of the programs XLA compiles inside the block, in order."""
    names: list[str] = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            names.append(kwargs.get("fun_name", "?"))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield names
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
