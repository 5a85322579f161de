"""Backend hooks: the public face of knotsafe's framework-specific layer.

The numerical code (:mod:`knotsafe.interp`, :mod:`knotsafe.transforms`,
:mod:`knotsafe.rectangular`) is written once against the array API standard.
Whatever cannot be said in the standard -- cutting a gradient, a custom
derivative rule, an accumulating scatter, a faster native kernel -- is asked of
the :class:`BackendHooks` object that :func:`hooks_for` returns for the
caller's namespace.

The protocol and its standard-only implementations live in
``knotsafe._lib._hooks``, the registry in ``knotsafe._lib._registry`` and the
framework overrides in ``knotsafe._lib._hooks_numpy``, ``_hooks_jax`` and
``_hooks_torch``; this module re-exports the public names.

Hooks are built lazily: a built-in backend's factory runs (and imports its
framework) only the first time an array of that framework is seen, so
``import knotsafe`` imports no array library beyond what the caller already
uses.  Third-party backends register with :func:`register` or through the
``knotsafe.backends`` entry-point group, whose entry *names* are namespace
module names (``xp.__name__``) and whose values are zero-argument callables
returning a :class:`BackendHooks`.  An unregistered namespace gets identity
hooks and a one-time warning.
"""

from __future__ import annotations

from importlib import metadata as metadata  # tests patch entry_points here

from knotsafe._lib._hooks import (
    BackendHooks,
    generic_erf,
    generic_is_concrete,
    generic_linearize,
    generic_safe_slope,
    generic_scatter_add,
    generic_searchsorted,
    generic_take,
)
from knotsafe._lib._hooks import Forward as Forward
from knotsafe._lib._hooks import Linearize as Linearize
from knotsafe._lib._registry import _BUILTINS as _BUILTINS
from knotsafe._lib._registry import ENTRY_POINT_GROUP as ENTRY_POINT_GROUP
from knotsafe._lib._registry import HooksFactory as HooksFactory
from knotsafe._lib._registry import _cache as _cache
from knotsafe._lib._registry import (
    hooks_for,
    register,
    registered,
    unregister,
)

__all__ = [
    "BackendHooks",
    "generic_erf",
    "generic_is_concrete",
    "generic_linearize",
    "generic_safe_slope",
    "generic_scatter_add",
    "generic_searchsorted",
    "generic_take",
    "hooks_for",
    "register",
    "registered",
    "unregister",
]
