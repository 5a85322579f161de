"""Backend-hooks registry: everything framework-specific in knotsafe lives here.

The numerical code (:mod:`knotsafe.interp`, :mod:`knotsafe.transforms`,
:mod:`knotsafe.rectangular`) is written once against the array API standard.
Whatever cannot be said in the standard -- cutting a gradient, a custom
derivative rule, an accumulating scatter, a faster native kernel -- is asked of
the :class:`BackendHooks` object that :func:`hooks_for` returns for the
caller's namespace.

Hooks are built lazily: a built-in backend's factory runs (and imports its
framework) only the first time an array of that framework is seen, so
``import knotsafe`` imports no array library beyond what the caller already
uses.  Third-party backends register with :func:`register` or through the
``knotsafe.backends`` entry-point group, whose entry *names* are namespace
module names (``xp.__name__``) and whose values are zero-argument callables
returning a :class:`BackendHooks`.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING, Any

import array_api_compat as compat

if TYPE_CHECKING:
    from knotsafe._lib._rule import InterpRule

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

Array = Any
Namespace = ModuleType
ENTRY_POINT_GROUP = "knotsafe.backends"


def _identity(a: Array) -> Array:
    return a


def generic_safe_slope(xp: Namespace, rise: Array, run: Array, genuine: Array) -> Array:
    """``rise / run`` where ``genuine``, else 0, with no inf/NaN in any branch.

    The inner ``where`` keeps the division away from tiny or zero ``run`` so
    that neither the value nor any derivative of the unselected branch can be
    non-finite (the "double where" idiom: a single ``where`` still
    back-propagates ``0 * inf = NaN`` from the branch it discards).
    """
    one = xp.ones_like(run)
    return xp.where(genuine, rise / xp.where(genuine, run, one), xp.zeros_like(rise))


def generic_is_concrete(a: Array) -> bool:
    """Whether the values of ``a`` can be read now (not traced, not lazy)."""
    return not compat.is_lazy_array(a)


def generic_take(xp: Namespace, a: Array, index: Array) -> Array:
    """``a[index]`` for a 1-D ``a`` and in-range integer ``index`` (standard API)."""
    return xp.take(a, index)


def generic_searchsorted(xp: Namespace, knots: Array, x: Array) -> Array:
    """Right-sided ``searchsorted``: the number of knots ``<= x`` (standard API)."""
    return xp.searchsorted(knots, x, side="right")


def generic_scatter_add(xp: Namespace, size: int, index: Array, src: Array) -> Array:
    """``out[i] = sum(src[index == i])`` for a 1-D ``out`` of length ``size``.

    Standard-only and differentiable with respect to ``src``: sort the keys,
    take a cumulative sum, and difference it at segment boundaries.  Every
    index must lie in ``[0, size)``.
    """
    dev = compat.device(src)
    if index.shape[0] == 0:
        return xp.zeros((size,), dtype=src.dtype, device=dev)
    order = xp.argsort(index, stable=True)
    keys = xp.take(index, order)
    csum = xp.cumulative_sum(xp.take(src, order), include_initial=True)
    # Segment i of the sorted keys ends at searchsorted(keys, i, "right").
    bins = xp.arange(size, dtype=keys.dtype, device=dev)
    ends = xp.searchsorted(keys, bins, side="right")
    starts = xp.searchsorted(keys, bins, side="left")
    return xp.take(csum, ends) - xp.take(csum, starts)


def generic_erf(xp: Namespace, x: Array) -> Array:
    """``erf(x)`` elementwise with standard operations only (W. J. Cody's approximations)."""
    from knotsafe._lib._special import erf

    return erf(xp, x)


def generic_linearize(hooks: BackendHooks, rule: InterpRule, x: Array, knots: Array, values: Array) -> Array:
    """Evaluate ``rule`` with its first derivatives attached via ``stop_gradient``.

    Returns ``value + (s - stop_gradient(s))`` where ``value`` is the
    numpy-exact forward value and ``s`` is the first-order surrogate
    ``dx * (x - a0 * k0 - a1 * k1) + a0 * f0 + a1 * f1`` built from the
    stop-gradiented partials of :mod:`knotsafe._lib._rule`.  The forward value
    is exactly ``value`` (``s - s == 0`` for finite ``s``) and every autodiff
    mode sees exactly the partials of the gradient rule.  Second derivatives
    are zero (the partials are constants to autodiff).
    """
    xp = rule.xp
    sg = hooks.stop_gradient
    out, p = rule.value_and_partials(sg(x), sg(knots), sg(values))
    # An infinite query has dx == 0 but would make dx * x NaN; it still copies
    # an end value, so its values term must survive.
    x_finite = xp.where(xp.isfinite(x), x, xp.zeros_like(x))
    take = hooks.take
    a0, a1 = p.a0, p.a1
    moved = x_finite
    if p.knot_grad:
        moved = moved - (a0 * take(xp, knots, p.j) + a1 * take(xp, knots, p.j + 1))
    s = p.dx * moved + a0 * take(xp, values, p.j) + a1 * take(xp, values, p.j + 1)
    delta = s - sg(s)
    return out + delta


Linearize = Callable[["BackendHooks", "InterpRule", Array, Array, Array], Array]
Forward = Callable[[Array, Array, Array, Any, Any], Array | None]


@dataclass(frozen=True)
class BackendHooks:
    """The framework-specific pieces knotsafe needs from one array library.

    Attributes
    ----------
    name
        Short backend name used in messages and tables.
    differentiable
        Whether arrays of this backend can carry autodiff information.  When
        False, :func:`knotsafe.interp` only computes forward values.
    stop_gradient
        ``a -> a`` with gradients cut (``jax.lax.stop_gradient``,
        ``Tensor.detach``); identity for libraries without autodiff.
    safe_slope
        ``(xp, rise, run, genuine) -> slope`` that is ``rise / run`` in genuine
        bins and 0 in duplicate bins without creating inf/NaN anywhere.
    searchsorted
        ``(xp, knots, x) -> idx``, right-sided (``numpy.searchsorted(...,
        side="right")``).
    take
        ``(xp, a, index) -> a[index]`` for 1-D ``a`` and indices known to be
        in range (a backend may skip the standard's negative-index handling).
    scatter_add
        ``(xp, size, index, src) -> out`` accumulating repeated indices,
        differentiable with respect to ``src``.
    forward
        Optional native forward pass ``(x, knots, values, left, right) ->
        out`` returning the exact ``numpy.interp`` values, or None to fall
        back to the standard implementation (used by non-differentiable
        backends only).
    is_concrete
        ``a -> bool``: whether data-dependent input checks may read ``a``
        (False for traced or lazy arrays, such as under ``jax.jit``).
    linearize
        ``(hooks, rule, x, knots, values) -> out``: evaluate the interpolation
        with the gradient rule attached.  Backends override it with a native
        custom derivative (``jax.custom_jvp``, ``torch.autograd.Function``).
    erf
        ``(xp, x) -> erf(x)`` elementwise, differentiable where the backend
        is (used by the kernel-density transform); default
        :func:`generic_erf`, standard-only and within a few ulp.
    extras
        Free-form data for a backend's own use; knotsafe never reads it.
    """

    name: str
    differentiable: bool = False
    stop_gradient: Callable[[Array], Array] = _identity
    safe_slope: Callable[[Namespace, Array, Array, Array], Array] = generic_safe_slope
    searchsorted: Callable[[Namespace, Array, Array], Array] = generic_searchsorted
    take: Callable[[Namespace, Array, Array], Array] = generic_take
    scatter_add: Callable[[Namespace, int, Array, Array], Array] = generic_scatter_add
    forward: Forward | None = None
    is_concrete: Callable[[Array], bool] = generic_is_concrete
    linearize: Linearize = generic_linearize
    erf: Callable[[Namespace, Array], Array] = generic_erf
    extras: dict[str, Any] = field(default_factory=dict, compare=False)

    def replace(self, **changes: Any) -> BackendHooks:
        """Return a copy with some hooks replaced (for wrappers and tests)."""
        return replace(self, **changes)


HooksFactory = Callable[[], BackendHooks]


@dataclass(frozen=True)
class _Entry:
    name: str
    matches: Callable[[Namespace], bool]
    factory: HooksFactory


def _numpy_hooks() -> BackendHooks:
    from knotsafe._lib import _hooks_numpy

    return _hooks_numpy.make_hooks()


def _jax_hooks() -> BackendHooks:
    from knotsafe._lib import _hooks_jax

    return _hooks_jax.make_hooks()


def _torch_hooks() -> BackendHooks:
    from knotsafe._lib import _hooks_torch

    return _hooks_torch.make_hooks()


_BUILTINS: tuple[_Entry, ...] = (
    _Entry("numpy", compat.is_numpy_namespace, _numpy_hooks),
    _Entry("jax", compat.is_jax_namespace, _jax_hooks),
    _Entry("torch", compat.is_torch_namespace, _torch_hooks),
    _Entry("array_api_strict", compat.is_array_api_strict_namespace, lambda: BackendHooks("array_api_strict")),
    _Entry("cupy", compat.is_cupy_namespace, lambda: BackendHooks("cupy")),
    _Entry("dask", compat.is_dask_namespace, lambda: BackendHooks("dask")),
)

_lock = threading.RLock()
_user_entries: list[_Entry] = []
_cache: dict[int, tuple[Namespace, BackendHooks]] = {}
_entry_points_seen: set[str] = set()


def _name_matcher(name: str) -> Callable[[Namespace], bool]:
    def matches(xp: Namespace) -> bool:
        mod = getattr(xp, "__name__", "")
        return mod == name or mod.startswith(name + ".")

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
        namespace whose ``__name__`` is ``name`` or starts with ``name + "."``.
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
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == mod:
            register(ep.name, ep.load())


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
