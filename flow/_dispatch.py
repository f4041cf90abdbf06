r"""A small per-call floor for the public calls of a discretisation
(`sh.cost(U)`, `sh.gradient(U)`, ...): argument checks cached per shape and dtype,
and `jax.jit`'s C++ dispatch.

Two costs dominated a call at small N (measured at N = 10: `sh.cost(U)` 109 us
against 7-10 us for a bare `jax.jit` of the same recursion):

- *method access*: equinox turns every bound method of a `Module` into a
  `BoundMethod` module (so that `sh.cost` is a pytree), about 25 us per attribute
  access. [`method`][flow._dispatch.method] binds with `functools.partial` instead.
- *checks and dispatch*: `check_controls` on every call, then `eqx.filter_jit`'s
  partition of the module (about 37 us). [`compiled`][flow._dispatch.compiled]
  runs the checks while `jax.jit` traces (so once per shape and dtype: a wrong
  shape or dtype still raises the same error, naming the argument) and dispatches
  through `jax.jit` with the module's tree structure as a static argument; the
  module's flattening is kept per instance (modules are immutable).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax


class method:  # noqa: N801 - used as a decorator, like `property`
    """A method whose bound form is a `functools.partial` (see the module): a plain
    callable, usable with `jax.jit`, `jax.vmap` and `jax.grad` like any function."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn
        functools.update_wrapper(self, fn)

    def __get__(self, obj: Any, objtype: type | None = None) -> Callable[..., Any]:
        if obj is None:
            return self.fn
        return functools.partial(self.fn, obj)


def _concrete(x: Any) -> bool:
    return isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer)


#: id(module) -> (weak reference, leaves, tree structure, all leaves concrete arrays).
_FLAT: dict[int, tuple[weakref.ref, list[Any], Any, bool]] = {}


def _flatten(sh: Any) -> tuple[list[Any], Any, bool]:
    """`jax.tree_util.tree_flatten(sh)` (and whether every leaf is a concrete array),
    kept per instance: a module is immutable, and flattening an equinox module costs
    about 6 us, most of the remaining per-call floor. The entry goes when `sh` does."""
    key = id(sh)
    hit = _FLAT.get(key)
    if hit is not None and hit[0]() is sh:
        return hit[1], hit[2], hit[3]
    leaves, treedef = jax.tree_util.tree_flatten(sh)
    arrays = all(map(_concrete, leaves))
    try:
        ref = weakref.ref(sh, lambda _, key=key: _FLAT.pop(key, None))
    except TypeError:  # not weakly referenceable: not kept
        return leaves, treedef, arrays
    _FLAT[key] = (ref, leaves, treedef, arrays)
    return leaves, treedef, arrays


def compiled(impl: Callable[..., Any], names: tuple[str, ...]) -> Callable[..., Any]:
    """`impl(sh, *controls)` compiled for the public methods of a discretisation.

    The controls (named `names` in error messages) are checked by
    `sh.check_controls` inside the trace, so once per shape and dtype. When every
    control is a concrete `jax.Array` and every leaf of `sh` an array, the call goes
    through `jax.jit` with `sh`'s tree structure static; otherwise (numpy input,
    lists, tracers of an enclosing transformation, non-array leaves) the controls are
    checked and converted first and the call goes through `eqx.filter_jit`.
    """

    def traced(treedef: Any, leaves: list[Any], *args: Any) -> Any:
        sh = jax.tree_util.tree_unflatten(treedef, leaves)
        return impl(sh, *(sh.check_controls(a, n) for a, n in zip(args, names, strict=True)))

    fast = jax.jit(traced, static_argnums=0)
    filtered = eqx.filter_jit(impl)

    @functools.wraps(impl)
    def call(sh: Any, *args: Any) -> Any:
        if all(map(_concrete, args)):
            leaves, treedef, arrays = _flatten(sh)
            if arrays:
                return fast(treedef, leaves, *args)
        checked = (sh.check_controls(a, n) for a, n in zip(args, names, strict=True))
        return filtered(sh, *checked)

    return call
