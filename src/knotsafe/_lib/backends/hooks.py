"""The backend-hook protocol and its standard-only implementations.

:class:`BackendHooks` lists what knotsafe needs from an array library beyond
the array API standard; the ``generic_*`` functions are the standard-only
defaults every backend starts from.  Framework-specific overrides live in
``numpy_hooks``, ``jax_hooks``, ``torch_hooks`` and ``dask_hooks``; the lookup from a
namespace to its hooks lives in :mod:`knotsafe._lib.backends.registry`.  This module
imports no framework and nothing else from knotsafe at run time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from types import ModuleType
from typing import Any

import array_api_compat as compat

from knotsafe._lib.backends import erf as _special

Array = Any
Namespace = ModuleType


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
    """``a[index]`` along the last axis, for in-range integer ``index`` (standard API).

    1-D ``a``: ``index`` of any shape.  2-D ``a`` (rows of a batched call):
    ``index`` of shape ``(rows, M)``, row ``r`` read from ``a[r]``, through one
    gather from the flattened rows.
    """
    if a.ndim == 1:
        return xp.take(a, index)
    rows, n = a.shape
    flat = xp.reshape(index + row_offsets(xp, rows, n, index), (-1,))
    return xp.reshape(xp.take(xp.reshape(a, (-1,)), flat), index.shape)


def row_offsets(xp: Namespace, rows: int, n: int, like: Array) -> Array:
    """``arange(rows)[:, None] * n`` in ``like``'s integer dtype and device: row ``r``'s start in the flattened rows."""
    return xp.reshape(xp.arange(rows, dtype=like.dtype, device=compat.device(like)) * n, (rows, 1))


def generic_searchsorted(xp: Namespace, knots: Array, x: Array) -> Array:
    """Right-sided ``searchsorted``: the number of knots ``<= x`` (standard API).

    1-D ``knots``: ``xp.searchsorted``.  2-D ``knots`` (rows, L) with ``x``
    (rows, M): row by row, in one vectorised branch-free binary search
    (:func:`searchsorted_rows`), since the standard's ``searchsorted`` takes
    one sorted 1-D array.
    """
    if knots.ndim == 1:
        return xp.searchsorted(knots, x, side="right")
    return searchsorted_rows(xp, knots, x, generic_take)


def searchsorted_rows(xp: Namespace, knots: Array, x: Array, take: Callable[[Namespace, Array, Array], Array]) -> Array:
    """The number of ``knots[r] <= x[r]`` per row, for ``knots`` (rows, L) and ``x`` (rows, M).

    A binary search over all queries at once: ``ceil(log2(L + 1))`` rounds,
    each one gather (``take``, row-aware) and one comparison, in the default
    integer dtype.  ``not knots > x`` is the test, so a NaN query counts every
    knot, as ``numpy.searchsorted`` puts NaN after every number.
    """
    n = knots.shape[-1]
    dev = compat.device(x)
    info = xp.__array_namespace_info__()
    int_dtype = info.default_dtypes(device=dev)["integral"]
    count = xp.zeros(x.shape, dtype=int_dtype, device=dev)
    if n == 0:
        return count
    step = 1 << (n.bit_length() - 1)
    while step:
        cand = count + step
        fits = cand <= n
        probe = take(xp, knots, xp.where(fits, cand - 1, xp.zeros_like(cand)))
        count = xp.where(fits & ~(probe > x), cand, count)
        step >>= 1
    return count


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
    return _special.erf(xp, x)


def generic_compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` itself: a library without a compiler runs it operation by operation."""
    return fn


def compiled_partial(hooks: BackendHooks, fn: Callable[..., Any], *static: Any) -> Callable[..., Any]:
    """``hooks.compiled(functools.partial(fn, *static))``, made once per hooks, ``fn`` and ``static``.

    ``static`` are the leading arguments (a namespace, the hooks, sizes,
    option strings); the returned function takes the arrays.  Being made
    once, it keeps a compiling backend's cache of programs (JAX: one per
    input shape and dtype) from one call to the next.  Hooks or arguments
    that cannot be hashed (a user's hook object) get a new one each call.
    """
    try:
        hash((hooks, fn, *static))
    except TypeError:
        return hooks.compiled(functools.partial(fn, *static))
    # Asked only once the key is known to hash: a TypeError from the hook itself propagates.
    return _compiled_partial(hooks, fn, *static)


@functools.lru_cache(maxsize=256)
def _compiled_partial(hooks: BackendHooks, fn: Callable[..., Any], *static: Any) -> Callable[..., Any]:
    return hooks.compiled(functools.partial(fn, *static))


#: The hooks every backend has (defaults above); None is not one of their values.
_REQUIRED_HOOKS = frozenset(
    (
        "stop_gradient",
        "safe_slope",
        "searchsorted",
        "take",
        "scatter_add",
        "is_concrete",
        "erf",
        "consolidate",
        "compiled",
    )
)
#: The hooks that may be None (no native version: knotsafe's own is used).
_OPTIONAL_HOOKS = frozenset(("forward", "linearize", "complex_parts", "layout_problem", "scatter_add_pair"))

#: ``(rule, x, knots, values, left, right) -> out``; ``rule`` is a :class:`knotsafe._lib.rule.InterpRule`,
#: which carries these hooks (this module sits below the rule and does not import it); ``left``/``right``
#: are the bound arrays of the rule's ``"value"`` ends, None for the others.
Linearize = Callable[[Any, Array, Array, Array, Any, Any], Array]
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
        side="right")``).  Batched calls pass 2-D ``knots`` (rows, L) and
        ``x`` (rows, M) and expect each row searched in its own knots.
    take
        ``(xp, a, index) -> a[index]`` for 1-D ``a`` and indices known to be
        in range (a backend may skip the standard's negative-index handling).
        Batched calls pass 2-D ``a`` (rows, N) and ``index`` (rows, M): row
        ``r`` of the result is ``a[r][index[r]]`` (``take_along_axis``).
    scatter_add
        ``(xp, size, index, src) -> out`` accumulating repeated indices,
        differentiable with respect to ``src``.
    scatter_add_pair
        Optional ``(xp, size, index, c0, c1) -> out``: ``scatter_add`` of
        ``c0`` at ``index`` followed by ``c1`` at ``index + 1``, each slot
        summing its terms in that order (bitwise the ``scatter_add`` of the
        concatenations), differentiable with respect to ``c0`` and ``c1``;
        ``index + 1 < size``.  None (the default): ``scatter_add`` of the
        concatenations.  A backend overrides it to skip the concatenated
        copies of the queries' arrays.
    forward
        Optional native forward pass ``(x, knots, values, left, right) ->
        out`` returning the exact ``numpy.interp`` values, or None to fall
        back to the standard implementation (used by non-differentiable
        backends only).
    is_concrete
        ``a -> bool``: whether data-dependent input checks may read ``a``
        (False for traced or lazy arrays, such as under ``jax.jit``).
    linearize
        Optional ``(rule, x, knots, values, left, right) -> out``: evaluate the
        interpolation with the gradient rule attached (``left``/``right``: the
        bound arrays, differentiable, or None).  None (the default): the rule's own
        ``stop_gradient`` linearisation (:func:`knotsafe._lib.rule.generic_linearize`).
        Backends override it with a native custom derivative (``jax.custom_jvp``,
        ``torch.autograd.Function``).
    erf
        ``(xp, x) -> erf(x)`` elementwise, differentiable where the backend
        is (the kernel-density transform's normal CDF); default
        :func:`generic_erf`, standard-only and within a few ulp.
    consolidate
        ``a -> a`` with the same values in one block, for a lazy chunked
        library (Dask: ``rechunk(-1)``) whose task graph grows with the
        number of chunks of an array that is gathered from or scanned by
        shifted sums; identity elsewhere.  knotsafe calls it only on arrays
        the size of the knots or of the kernel node grid, never the queries.
    compiled
        ``fn -> fn``: ``fn`` compiled into one program per input shape and
        dtype (``jax.jit``), for a library that otherwise compiles or
        dispatches every operation on its own.  ``fn`` is a pure function of
        arrays (arguments and results: arrays, None, or lists and tuples of
        them), differentiable through the library's autodiff; knotsafe builds
        each ``fn`` once per static configuration, so the library's cache of
        compiled programs is reused.  Default :func:`generic_compiled` (``fn``
        itself).
    complex_parts
        Optional ``(xp, re, im, dtype) -> re + i im`` of complex ``dtype``
        (``re`` and ``im`` come in its part dtype) with both parts exact, no
        arithmetic between them (``torch.complex``), for a library whose
        complex arithmetic is not IEEE per part.  knotsafe builds complex
        results with the standard's arithmetic plus a table of constants;
        the one case that needs this hook is a finite non-zero real part
        beside an infinite or NaN imaginary part.  None (the default): the
        library's complex subtraction keeps the parts apart, as NumPy's and
        JAX's do.
    layout_problem
        Optional ``a -> str | None``: why an array of this library cannot be
        computed on (a sparse or nested tensor), worded to follow "`name`
        is", or None for an ordinary dense array.  The public functions call
        it on every array argument and raise a TypeError naming the argument.
        None (the default): every array of the library is accepted.
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
    linearize: Linearize | None = None
    erf: Callable[[Namespace, Array], Array] = generic_erf
    consolidate: Callable[[Array], Array] = _identity
    compiled: Callable[[Callable[..., Any]], Callable[..., Any]] = generic_compiled
    complex_parts: Callable[[Namespace, Array, Array, Any], Array] | None = None
    layout_problem: Callable[[Array], str | None] | None = None
    scatter_add_pair: Callable[[Namespace, int, Array, Array, Array], Array] | None = None
    extras: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        # A hook left as None (or any non-callable) would fail only when a call
        # first needs it, with "'NoneType' object is not callable".
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"BackendHooks: `name` must be a non-empty string, got {self.name!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _REQUIRED_HOOKS and not callable(value):
                raise TypeError(f"BackendHooks({self.name!r}): `{f.name}` must be callable, got {value!r}")
            if f.name in _OPTIONAL_HOOKS and value is not None and not callable(value):
                raise TypeError(f"BackendHooks({self.name!r}): `{f.name}` must be callable or None, got {value!r}")

    def replace(self, **changes: Any) -> BackendHooks:
        """Return a copy with some hooks replaced (for wrappers and tests)."""
        return replace(self, **changes)
