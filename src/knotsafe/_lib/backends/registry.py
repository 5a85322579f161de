"""The backend registry: from an array namespace to its :class:`BackendHooks`.

Built-in backends are listed in ``_BUILTINS``; their factories import the
framework (and its ``*_hooks`` module) only the first time an array of that
framework is seen.  Third-party backends come from :func:`register` or the
``knotsafe.backends`` entry-point group.  Lookups are cached and thread-safe.

Low-level modules (``_namespace``) may import :func:`hooks_for` from here:
this module imports only :mod:`knotsafe._lib.backends.hooks` at module level, and the
``*_hooks`` modules it imports lazily import nothing above ``hooks`` and
``rule``, so there is no import cycle.
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType

import array_api_compat as compat

from knotsafe._lib.backends.hooks import BackendHooks

Namespace = ModuleType
ENTRY_POINT_GROUP = "knotsafe.backends"

HooksFactory = Callable[[], BackendHooks]


@dataclass(frozen=True)
class _Entry:
    name: str
    matches: Callable[[Namespace], bool]
    factory: HooksFactory


def _numpy_hooks() -> BackendHooks:
    from knotsafe._lib.backends import numpy_hooks

    return numpy_hooks.make_hooks()


def _jax_hooks() -> BackendHooks:
    from knotsafe._lib.backends import jax_hooks

    return jax_hooks.make_hooks()


def _torch_hooks() -> BackendHooks:
    from knotsafe._lib.backends import torch_hooks

    return torch_hooks.make_hooks()


def _dask_hooks() -> BackendHooks:
    from knotsafe._lib.backends import dask_hooks

    return dask_hooks.make_hooks()


_BUILTINS: tuple[_Entry, ...] = (
    _Entry("numpy", compat.is_numpy_namespace, _numpy_hooks),
    _Entry("jax", compat.is_jax_namespace, _jax_hooks),
    _Entry("torch", compat.is_torch_namespace, _torch_hooks),
    _Entry("array_api_strict", compat.is_array_api_strict_namespace, lambda: BackendHooks("array_api_strict")),
    _Entry("cupy", compat.is_cupy_namespace, lambda: BackendHooks("cupy")),
    _Entry("dask", compat.is_dask_namespace, _dask_hooks),
)

_lock = threading.RLock()
_user_entries: list[_Entry] = []
_cache: dict[int, tuple[Namespace, BackendHooks]] = {}
_entry_points_seen: set[str] = set()


#: array_api_compat wraps NumPy, PyTorch, CuPy and Dask in namespaces named after them under this prefix.
_COMPAT_PREFIX = "array_api_compat."


def _module_names(xp: Namespace) -> tuple[str, ...]:
    """``xp.__name__``, and the library's own module name for an array_api_compat wrapper."""
    mod = getattr(xp, "__name__", "")
    return (mod, mod.removeprefix(_COMPAT_PREFIX)) if mod.startswith(_COMPAT_PREFIX) else (mod,)


def _name_matcher(name: str) -> Callable[[Namespace], bool]:
    # The namespace of NumPy arrays is array_api_compat.numpy, not numpy: a
    # name matches the wrapper of the library it names ("numpy", "torch",
    # "dask" or "dask.array"), and a built-in's name whatever the built-in
    # matches, so registering under it replaces the built-in.
    builtin = next((e.matches for e in _BUILTINS if e.name == name), None)

    def matches(xp: Namespace) -> bool:
        if builtin is not None and builtin(xp):
            return True
        return any(mod == name or mod.startswith(name + ".") for mod in _module_names(xp))

    return matches


def register(
    name: str,
    hooks: BackendHooks | HooksFactory,
    *,
    matches: Callable[[Namespace], bool] | None = None,
) -> None:
    """Register hooks for a third-party array namespace.

    Parameters
    ----------
    name
        The backend's name; by default it also selects the namespace: a
        namespace whose ``__name__`` is ``name`` or starts with ``name + "."``,
        also after the prefix ``array_api_compat.`` of the namespaces that
        wrap NumPy, PyTorch, CuPy and Dask (so ``"numpy"``, ``"torch"``,
        ``"dask"`` and ``"dask.array"`` select their library).  The name of
        a built-in backend (see :func:`registered`) selects what the
        built-in does: registering under it replaces the built-in.
    hooks
        A :class:`BackendHooks`, or a zero-argument callable building one on
        first use (so the framework is imported only when needed).
    matches
        Optional predicate ``xp -> bool`` replacing the name match.

    Notes
    -----
    User registrations take precedence over the built-in backends and clear
    the lookup cache, so re-registering replaces earlier hooks.
    """
    if not isinstance(name, str) or not name:
        raise TypeError("register: `name` must be a non-empty string")
    if isinstance(hooks, BackendHooks):
        built = hooks
        factory: HooksFactory = lambda: built  # noqa: E731
    elif callable(hooks):
        factory = hooks
    else:
        raise TypeError(f"register: `hooks` must be a BackendHooks or a callable returning one, got {type(hooks)!r}")
    entry = _Entry(name, matches or _name_matcher(name), factory)
    with _lock:
        _user_entries[:] = [e for e in _user_entries if e.name != name]
        _user_entries.insert(0, entry)
        _cache.clear()


def unregister(name: str) -> None:
    """Remove a backend added with :func:`register` (built-ins stay)."""
    with _lock:
        _user_entries[:] = [e for e in _user_entries if e.name != name]
        _cache.clear()


def registered() -> tuple[str, ...]:
    """Names of the user-registered and built-in backends, in lookup order."""
    with _lock:
        return tuple(e.name for e in (*_user_entries, *_BUILTINS))


def _load_entry_point(xp: Namespace) -> None:
    """Register the entry point named after ``xp`` if one is installed."""
    mod = getattr(xp, "__name__", "")
    if not mod or mod in _entry_points_seen:
        return
    _entry_points_seen.add(mod)
    names = _module_names(xp)
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in names:
            register(ep.name, ep.load())


def _compiling() -> bool:
    # The one framework probe here: without torch loaded nothing is compiling.
    # A torch still being imported by another thread has no `compiler` yet,
    # and nothing can be compiling then.
    compiler = getattr(sys.modules.get("torch"), "compiler", None)
    is_compiling = getattr(compiler, "is_compiling", None)
    return is_compiling is not None and bool(is_compiling())


def hooks_for(xp: Namespace) -> BackendHooks:
    """Return the hooks for an array namespace (thread-safe, cached).

    Parameters
    ----------
    xp
        An array-API namespace, as returned by
        ``array_api_compat.array_namespace``.

    Returns
    -------
    BackendHooks
        The registered hooks.  An unknown namespace gets identity hooks
        (forward values only, no gradient protection) and a one-time
        ``UserWarning`` saying how to register it.
    """
    key = id(xp)
    hit = _cache.get(key)
    if hit is not None and hit[0] is xp:
        return hit[1]
    if _compiling():
        # torch.compile cannot trace a lock, the entry-point scan or a store
        # into the cache: build the hooks without caching (once per trace).
        for entry in (*_user_entries, *_BUILTINS):
            if entry.matches(xp):
                return entry.factory()
    with _lock:
        hit = _cache.get(key)
        if hit is not None and hit[0] is xp:
            return hit[1]
        _load_entry_point(xp)
        for entry in (*_user_entries, *_BUILTINS):
            if entry.matches(xp):
                hooks = entry.factory()
                if not isinstance(hooks, BackendHooks):
                    raise TypeError(
                        f"knotsafe backend {entry.name!r}: its factory returned {type(hooks)!r}, not BackendHooks"
                    )
                break
        else:
            name = getattr(xp, "__name__", repr(xp))
            warnings.warn(
                f"knotsafe has no backend hooks for the array namespace {name!r}; using identity hooks, "
                "so forward values are correct but autodiff through knotsafe is not protected. "
                "Register hooks with knotsafe.backends.register(...) or the "
                f"{ENTRY_POINT_GROUP!r} entry-point group.",
                UserWarning,
                stacklevel=3,
            )
            hooks = BackendHooks(name)
        _cache[key] = (xp, hooks)
        return hooks
