"""Backend hooks: the public face of knotsafe's framework-specific layer.

The numerical code (:mod:`knotsafe.interp`, :mod:`knotsafe.transforms`,
:mod:`knotsafe.rectangular`) is written once against the array API standard.
Whatever cannot be said in the standard -- cutting a gradient, a custom
derivative rule, an accumulating scatter, a faster native kernel -- is asked of
the :class:`BackendHooks` object that :func:`hooks_for` returns for the
caller's namespace.

The protocol and its standard-only implementations live in
``knotsafe._lib.backends.hooks``, the registry in ``knotsafe._lib.backends.registry``
and the framework overrides in ``knotsafe._lib.backends.<framework>_hooks``; this
module re-exports the public names.

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

from knotsafe._lib.backends.hooks import (
    BackendHooks,
    Forward,
    Linearize,
    generic_erf,
    generic_is_concrete,
    generic_safe_slope,
    generic_scatter_add,
    generic_searchsorted,
    generic_take,
)
from knotsafe._lib.backends.registry import (
    ENTRY_POINT_GROUP,
    HooksFactory,
    hooks_for,
    register,
    registered,
    unregister,
)
from knotsafe._lib.rule import generic_linearize

__all__ = [
    "ENTRY_POINT_GROUP",
    "BackendHooks",
    "Forward",
    "HooksFactory",
    "Linearize",
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
