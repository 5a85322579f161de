"""numpy.interp's signature above the real kernel: ``period=`` and complex values.

The kernel (:func:`knotsafe.interp.interp_checked`) interpolates real values
on non-decreasing real knots.  The rest of ``numpy.interp``'s signature is
reduced to it here, with standard array-API operations only, so that every
backend (and every autodiff mode) sees the same arithmetic:

* ``period=p`` reduces queries and knots modulo ``p``, sorts the knots
  (carrying their values) and wraps one knot onto each side, exactly as
  ``numpy.interp`` does; the kernel's duplicate-knot rule then applies to the
  wrapped knots, duplicates created by the reduction included.
* complex ``values`` are interpolated as two real problems on the same knots
  and recombined exactly (:func:`combine`);
* ``left``/``right`` (numbers, arrays of the namespace, ``"extrapolate"``)
  are parsed into what the kernel takes (:func:`check_bound`).

Batched inputs (knots of shape ``(..., N)``) go through the same steps along
the last axis.
"""

from __future__ import annotations

import math
import numbers
from types import ModuleType
from typing import Any

import array_api_compat

from knotsafe._lib.backends.hooks import BackendHooks
from knotsafe._lib.backends.registry import hooks_for

Array = Any
#: ``left``/``right`` as the kernel takes them: None, ``"extrapolate"``, a float or an array.
Bound = None | str | float | Array


def check_real(xp: ModuleType, name: str, a: Array) -> None:
    """Queries and knots are positions on the real line: complex raises TypeError."""
    if xp.isdtype(a.dtype, "complex floating"):
        raise TypeError(
            f"`{name}` must be real (only `values`, `left` and `right` may be complex), got dtype {a.dtype}"
        )


def check_period(period: Any) -> float | None:
    """``period`` as a positive float (numpy.interp uses ``abs(period)``), or None.

    It must be a concrete number: under ``jax.jit`` pass it as a static Python
    number, not a traced array.
    """
    if period is None:
        return None
    if _is_complex(period) or isinstance(period, str | bytes):
        raise TypeError(f"`period` must be a real number or None, got {period!r}")
    try:
        value = float(period)
    except Exception as exc:
        raise TypeError(
            f"`period` must be a real number or None (a static Python number under jit, not a traced array), "
            f"got {period!r}"
        ) from exc
    if value == 0.0:
        raise ValueError("`period` must be a non-zero value")
    if not math.isfinite(value):
        raise ValueError(f"`period` must be finite, got {period!r}")
    return abs(value)


def _is_complex(value: Any) -> bool:
    if isinstance(value, numbers.Complex) and not isinstance(value, numbers.Real):
        return True
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    if kind == "c":  # NumPy arrays and scalars
        return True
    return "complex" in str(getattr(value, "dtype", ""))


_BOUND_KINDS = "a number, an array of the inputs' library, None or 'extrapolate'"


def check_bound(
    xp: ModuleType, name: str, value: Any, *, is_complex: bool, batch: tuple[int, ...] | None
) -> tuple[Bound, Bound]:
    """``left``/``right`` parsed for the kernel: ``(real part, imaginary part)``.

    ``batch``: the leading shape of batched inputs, None for 1-D knots.
    Returns None, ``"extrapolate"`` or a float for both parts, or arrays of
    ``xp`` (0-d, or ``batch + (1,)``), differentiable where ``value`` is.
    The imaginary part is None for real ``values``.

    Raises
    ------
    ValueError
        An array whose shape is not 0-d (1-D knots) or broadcastable to
        ``batch``.
    TypeError
        A string other than ``"extrapolate"``; a bool; complex with real ``values`` (numpy.interp raises TypeError
        too); an array of another library (NumPy arrays are taken as
        constants) or of a non-numeric dtype; anything else not a number.
    """
    if value is None:
        return None, None
    reject_junk_bound(name, value)
    if isinstance(value, str):
        return "extrapolate", "extrapolate"
    if not is_complex and _is_complex(value):
        raise TypeError(f"`{name}` is complex but `values` is real; pass complex `values` for a complex result")
    if array_api_compat.is_array_api_obj(value) and not isinstance(value, numbers.Number):
        return _array_bound(xp, name, value, is_complex=is_complex, batch=batch)
    try:
        z = complex(value) if is_complex else float(value)
    except Exception as exc:
        raise TypeError(f"`{name}` must be {_BOUND_KINDS}, got {value!r}") from exc
    if isinstance(z, complex):
        return z.real, z.imag
    return z, None


def reject_junk_bound(name: str, value: Any) -> None:
    """A ``left``/``right`` that is no bound whatever the other arguments: TypeError naming ``name``.

    A string other than ``"extrapolate"``, bytes and booleans (``float("1")``,
    ``float(b"1")`` and ``float(True)`` would take them silently).  Checked
    also where the bound is then ignored (with ``period``).
    """
    if isinstance(value, str):
        if value != "extrapolate":
            raise TypeError(
                f"`{name}` must be {_BOUND_KINDS}; the only string it takes is 'extrapolate', got {value!r}"
            )
    elif isinstance(value, bytes):
        raise TypeError(f"`{name}` must be {_BOUND_KINDS}, got the bytes {value!r}")
    elif _is_bool(value):
        raise TypeError(f"`{name}` must be {_BOUND_KINDS}, got the bool {value!r}")


def _is_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    dtype = getattr(value, "dtype", None)
    return dtype is not None and (getattr(dtype, "kind", None) == "b" or str(dtype).endswith("bool"))


def _array_bound(
    xp: ModuleType, name: str, value: Any, *, is_complex: bool, batch: tuple[int, ...] | None
) -> tuple[Array, Array | None]:
    """An array ``left``/``right``: checked, in ``xp``, shaped for the kernel."""
    if array_api_compat.array_namespace(value) is not xp:
        if not array_api_compat.is_numpy_array(value):
            library = array_api_compat.array_namespace(value).__name__.removeprefix("array_api_compat.")
            raise TypeError(f"`{name}` is a {library} array; pass an array of the inputs' library ({xp.__name__})")
        value = xp.asarray(value)  # a NumPy constant, as jnp.interp takes one
    if not xp.isdtype(value.dtype, ("real floating", "complex floating", "integral")):
        raise TypeError(f"`{name}` must be a numeric array, got dtype {value.dtype}")
    shape = tuple(value.shape)
    if batch is None:
        if shape:
            raise ValueError(f"`{name}` must be a number or a 0-d array for 1-D `knots`, got shape {shape}")
    elif shape:
        if not _broadcasts_to(shape, batch):
            raise ValueError(
                f"`{name}` of shape {shape} does not broadcast to the leading dimensions {batch} of the inputs"
            )
        value = xp.reshape(xp.broadcast_to(value, batch), (*batch, 1))
    if xp.isdtype(value.dtype, "complex floating"):
        return xp.real(value), xp.imag(value)
    return value, (xp.zeros_like(value) if is_complex else None)


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    if len(shape) > len(target):
        return False
    return all(s in (1, t) for s, t in zip(shape[::-1], target[::-1], strict=False))


def broadcast_shapes(shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    """The broadcast of ``shapes`` (argument name -> shape); ValueError naming two that clash."""
    n = 0
    for shape in shapes.values():
        n = max(n, len(shape))
    out, owner = [1] * n, [""] * n
    for name, shape in shapes.items():
        for i, d in enumerate(shape, start=n - len(shape)):
            if d == 1:
                continue
            if out[i] == 1:
                out[i], owner[i] = d, name
            elif out[i] != d:
                raise ValueError(
                    f"the leading dimensions of `{owner[i]}` and `{name}` do not broadcast "
                    f"({out[i]} against {d}); batched inputs are `knots` and `values` (..., N) and `x` (..., M)"
                )
    return tuple(out)


def wrap_periodic(
    xp: ModuleType, hooks: BackendHooks, x: Array, knots: Array, values: Array, period: float
) -> tuple[Array, Array, Array]:
    """numpy.interp's periodic set-up: reduce, sort, wrap one knot on each side.

    Returns ``(x % period, wrapped knots, wrapped values)`` with ``N + 2``
    non-decreasing knots in ``[-period, 2 period]`` (along the last axis:
    batched ``knots`` and ``values`` of one shape ``(..., N)`` are set up
    row by row, with the hooks' row-aware ``take``).  Every step is
    differentiable (``%`` has slope 1 almost everywhere; the sort is a
    gather), so the knots' gradients reach the caller's unsorted knots.
    The sort is stable: knots that coincide after the reduction (such as 0
    and ``period``) keep their input order, where numpy's default sort leaves
    the order of equal keys unspecified.
    """
    x = _mod(x, period)
    reduced = _mod(knots, period)
    order = xp.argsort(reduced, axis=-1, stable=True)
    if knots.ndim == 1:
        k = xp.take(reduced, order)
        v = xp.take(values, order)
    else:
        shape = knots.shape
        rows = (-1, shape[-1])
        k, v = (
            xp.reshape(hooks.take(xp, xp.reshape(a, rows), xp.reshape(order, rows)), shape) for a in (reduced, values)
        )
    knots = xp.concat([k[..., -1:] - period, k, k[..., :1] + period], axis=-1)
    values = xp.concat([v[..., -1:], v, v[..., :1]], axis=-1)
    return x, knots, values


def _mod(a: Array, period: float) -> Array:
    # numpy's float remainder takes the divisor's sign (here +), like the
    # standard's `%`; adding +0.0 turns the -0.0 some backends return for
    # exact multiples into numpy's +0.0.
    return (a % period) + 0.0


def combine(xp: ModuleType, re: Array, im: Array, dtype: Any) -> Array:
    """``re + i im`` as a complex array of ``dtype``, both parts exact.  Reads no data.

    ``re + 1j * im`` is not exact: the complex product ``im * 1j`` has real
    part ``im * 0 - 0 * 1``, NaN for infinite ``im``, and loses signed zeros.
    Here ``conj(re)`` is ``re - 0i`` (``-0`` is the additive identity of the
    imaginary part) and ``im * (-0 - 1i)`` is exactly ``+0 - im i`` for every
    finite ``im`` (``+0`` is the identity of subtraction), so the difference
    of the two has parts ``re`` and ``im`` bit for bit, signed zeros
    included.  Non-finite ``im`` uses constants instead of the product.
    Differentiable in ``re`` and ``im`` (the constants carry no gradient).

    Pairs of special parts (zero or non-finite real, non-finite imaginary)
    are selected from a table of constants.  What remains, a finite non-zero
    real part beside a non-finite imaginary part, is exact only where the
    library's complex subtraction is IEEE per part; a library where it is
    not (PyTorch) supplies the ``complex_parts`` hook, which builds those
    entries from their parts with no arithmetic.
    """
    dev = _device(re)
    base = xp.conj(xp.astype(re, dtype))
    finite = xp.isfinite(im)
    im_safe = xp.where(finite, im, xp.zeros_like(im))
    rotor = xp.asarray(complex(-0.0, -1.0), dtype=dtype, device=dev)
    rotated = xp.astype(im_safe, dtype) * rotor  # +0 - im i
    c = {s: xp.asarray(complex(0.0, s), dtype=dtype, device=dev) for s in (-math.inf, math.inf, math.nan)}
    special = xp.where(im > 0, c[-math.inf], xp.where(im < 0, c[math.inf], c[math.nan]))
    out = base - xp.where(finite, rotated, special)
    # Not every library's complex arithmetic is IEEE per part: PyTorch 2.13's
    # CPU complex addition gives (1+0j) + (-0+inf j) = nan+inf j.  Where both
    # parts are special (a zero or non-finite real part beside a non-finite
    # imaginary part) the result is one of 15 constants: select it, with no
    # arithmetic.  Elsewhere the arithmetic above is kept (so results stay
    # bitwise what they were), except for a finite non-zero real part beside
    # a non-finite imaginary part, which the backend's complex_parts hook
    # builds where it has one.
    table_pair = ~finite & ((re == 0) | ~xp.isfinite(re))
    out = xp.where(table_pair, _special_table(xp, re, im, dtype, dev), out)
    from_parts = hooks_for(xp).complex_parts
    if from_parts is not None:
        out = xp.where(~finite & ~table_pair, from_parts(xp, re, im, dtype), out)
    return out


_RE_SPECIALS = (0.0, -0.0, math.inf, -math.inf, math.nan)
_IM_SPECIALS = (math.inf, -math.inf, math.nan)


def _special_table(xp: ModuleType, re: Array, im: Array, dtype: Any, dev: Any) -> Array:
    """``complex(re, im)`` looked up in a table, for ``re`` in ``_RE_SPECIALS`` and ``im`` in ``_IM_SPECIALS``."""
    table = xp.asarray([complex(r, i) for r in _RE_SPECIALS for i in _IM_SPECIALS], dtype=dtype, device=dev)

    def code(c: Array, k: int) -> Array:
        return xp.astype(c, xp.int32) * k

    # Row of the real part (a finite non-zero re maps to row 0; callers mask it out).
    row = code(xp.signbit(re) & (re == 0), 1) + code(re == math.inf, 2) + code(re == -math.inf, 3)
    row = row + code(xp.isnan(re), 4)
    col = code(im < 0, 1) + code(xp.isnan(im), 2)
    index = xp.reshape(row * len(_IM_SPECIALS) + col, (-1,))  # take wants a 1-D index on every library
    return xp.reshape(xp.take(table, index), re.shape)


def _device(a: Array) -> Any:
    import array_api_compat

    return array_api_compat.device(a)
