"""Gradient-safe 1-D linear interpolation with numpy.interp's forward values."""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

from knotsafe._lib import signature as sig
from knotsafe._lib.backends.registry import hooks_for
from knotsafe._lib.interpolate import interpolate
from knotsafe._lib.rule import KnotGrad
from knotsafe._lib.validation import checks as _checks
from knotsafe._lib.validation import dtypes as _dtypes
from knotsafe._lib.validation import namespace as _namespace

__all__ = ["interp"]

Array = Any


def interp(
    x: Array,
    knots: Array,
    values: Array,
    /,
    *,
    left: complex | str | Array | None = None,
    right: complex | str | Array | None = None,
    period: float | None = None,
    knot_grad: KnotGrad = "exact",
    min_gap: float | None = None,
    xp: ModuleType | None = None,
) -> Array:
    """One-dimensional linear interpolation, safe to differentiate.

    Forward values are those of ``numpy.interp(x, knots, values, left,
    right, period)``; derivatives are finite for every finite input, also when
    knots are duplicated or a few ulp apart.  Batched knots (one curve per
    row, as torchinterp1d takes them) and ``jnp.interp``'s
    ``left="extrapolate"`` and array bounds are accepted too.

    Parameters
    ----------
    x : array, any shape
        Query points (real).  With batched ``knots``/``values``: shape
        ``(..., M)``, queries along the last axis.
    knots : array, shape (N,) or (..., N)
        Knot positions (real), N >= 1.  Non-decreasing (along the last axis)
        unless ``period`` is given; duplicates are allowed.  On concrete arrays
        NaN or decreasing knots (with ``period``, NaN or infinite knots) raise
        ValueError; where the data cannot be read (``jax.jit`` and other
        tracing, lazy Dask arrays, ``torch.func.vmap``, ``torch.compile``)
        they are not checked and every output is NaN instead (every output
        of the offending row, for batched knots).  More than one dimension:
        batched, one curve per row; the leading dimensions of ``knots``,
        ``values`` and ``x`` broadcast, so (M,) queries against (D, N) knots
        give (D, M).  Every row gets exactly the values and gradients of the
        1-D call on that row.
    values : array, shape (N,) or (..., N)
        Function values at the knots, real or complex.  Complex values give a
        complex result whose real and imaginary parts are the interpolations
        of the real and imaginary parts on the same knots.
    left, right : number, array, "extrapolate" or None, optional
        What ``x < knots[0]`` and ``x > knots[-1]`` give; default (None)
        ``values[0]`` and ``values[-1]``.  A number or an array of the inputs'
        library (0-d, or for batched inputs broadcastable to the leading
        dimensions, one bound per row) is returned there, and is
        differentiable: the derivative with respect to ``left`` is 1 where
        ``x < knots[0]`` and 0 elsewhere (``right`` likewise).  Numbers and
        arrays are operands, not constants of a compiled program: under
        ``jax.jit`` they may be traced and a new number costs no compilation.
        ``"extrapolate"`` continues the straight line of the outermost bin
        (``jnp.interp``'s extrapolation), where that bin is genuine (gap above
        the duplicate threshold); beyond a duplicate end bin it gives the end
        value, a line of slope 0 (see the gradient contract).  Complex only
        with complex ``values``; any other string, or a boolean, is a
        TypeError.  Bounds are computed in the result's dtype.
        Ignored when ``period`` is given.
    period : float, optional
        Period of the knots: queries and knots are reduced modulo
        ``abs(period)``, the knots sorted (carrying their values, in any input
        order) and one knot wrapped onto each side, as ``numpy.interp`` does.
        A concrete number (under ``jax.jit`` a static Python number, not a
        traced array); 0 raises ValueError.
    knot_grad : {"exact", "stop"}
        ``"exact"`` (default) gives the exact partials with respect to the
        knots; ``"stop"`` gives zero knot gradients (the ``stop_gradient``
        semantics of the reference fix), leaving ``x`` and ``values`` exact.
    min_gap : float, optional
        A bin whose knot gap is ``<= min_gap`` is a duplicate (a step of the
        function).  Default ``8 * eps * max(abs(knots))`` with ``eps`` of the
        computation dtype (with ``period``, of the wrapped knots).
    xp : namespace, optional
        Array namespace to compute in (numpy, jax.numpy, torch,
        array_api_strict, ...).  Default: inferred from the arrays.  With
        ``xp`` given, NumPy arrays and Python data are converted to it.

    Returns
    -------
    array, shape of ``x`` (batched: the broadcast leading shape plus (M,))
        Interpolated values in the common floating dtype of the inputs
        (float32 stays float32; complex ``values`` give complex64 from float32
        parts and complex128 from float64), on the inputs' device.  float16
        and bfloat16 are computed in float32 (slopes, threshold) and rounded
        back once (PyTorch's complex32 as complex64).

    Raises
    ------
    ValueError
        ``knots`` or ``values`` 0-d, of different lengths or empty; leading
        dimensions that do not broadcast; a 0-d ``x`` with batched knots; NaN
        or decreasing ``knots`` (concrete arrays; with ``period``, NaN or
        infinite knots); unknown ``knot_grad``; negative ``min_gap``;
        ``period`` zero or not finite; an array ``left``/``right`` that is not
        0-d (1-D knots) or does not broadcast to the leading dimensions.
    TypeError
        Arrays from two libraries; complex ``x`` or ``knots``; complex
        ``left``/``right`` with real ``values``; non-numeric
        ``left``/``right``/``min_gap``/``period`` (strings and booleans
        included, except the string ``"extrapolate"`` for ``left``/``right``);
        an array ``left``/``right`` of another library (NumPy arrays are taken
        as constants); a sparse or nested tensor (the message names it).

    Notes
    -----
    Gradient behaviour (the rule lives in :mod:`knotsafe._lib.rule`):

    * ``d/dx`` is the slope of the bin numpy uses, ``[knots[j],
      knots[j+1])`` with ``knots[j] <= x < knots[j+1]``; 0 outside
      ``[knots[0], knots[-1])``, in duplicate bins (gap ``<= min_gap``)
      and in bins without a finite slope (an infinite knot, an infinite
      or NaN value): every partial is finite, so forward and reverse mode
      agree and a masked output adds nothing to a gradient.
    * ``d/dvalues`` are the barycentric weights ``1 - w`` and ``w``,
      ``w = (x - knots[j]) / (knots[j+1] - knots[j])``, in every bin (in a
      bin from a ``-inf`` knot ``w = 1``, and 0 at ``x = -inf``: the value
      numpy returns there).
    * ``d/dknots`` are ``-slope * (1 - w)`` and ``-slope * w`` (zero in
      duplicate bins and under ``knot_grad="stop"``).
    * ``left``/``right`` bounds: derivative 1 for the outputs that copy them.
      ``"extrapolate"``: beyond a genuine end bin the output is that bin's
      line, with the bin's partials (``w`` outside [0, 1]); beyond a
      duplicate end bin it copies the end value (d/dx = 0, weight 1).
    * NaN queries give NaN values and zero gradients, except with a single
      knot, where ``numpy.interp`` (and so knotsafe) returns ``values[0]``.
    * Complex ``values``: the rule applies to the real and imaginary parts
      separately; each framework reports complex gradients in its own
      convention (``jax.grad`` gives ``dL/dRe - i dL/dIm``, PyTorch
      ``dL/dRe + i dL/dIm``, for a real loss ``L``).
    * ``period``: the rule applies to the wrapped knots (the modulo has slope
      1), so a knot at 0 and one at ``period``, which coincide after the
      reduction, form a duplicate bin with zero slope.

    At a knot the one-sided derivative from the right is returned.

    Second derivatives (JAX ``hessian``/``jacfwd(jacrev)``, PyTorch double
    backward and ``torch.func.hessian``) are the exact derivatives of this
    rule: ``d2/dx2 = 0``, the mixed and knot terms are the derivatives of the
    slope and the barycentric weights, and they are 0 in duplicate bins and
    outside the knots.  The generic ``stop_gradient`` path of a registered
    backend gives first derivatives only (its second derivatives are 0).

    Examples
    --------
    >>> import numpy as np
    >>> from knotsafe import interp
    >>> interp(np.array([0.5, 1.0, 3.0]), np.array([0.0, 1.0, 1.0, 2.0]), np.array([0.0, 1.0, 2.0, 3.0]))
    array([0.5, 2. , 3. ])
    >>> interp(np.array([0.25]), np.array([0.0, 1.0]), np.array([1 + 1j, 2 - 1j]))
    array([1.25+0.5j])
    >>> interp(np.array([-45.0, 315.0, 45.0]), np.array([0.0, 90.0, 180.0, 270.0]), np.arange(4.0), period=360)
    array([1.5, 1.5, 0.5])
    >>> k, v = np.array([0.0, 1.0, 2.0]), np.array([0.0, 2.0, 3.0])
    >>> interp(np.array([-1.0, 3.0]), k, v, left="extrapolate", right="extrapolate")
    array([-2.,  4.])
    >>> interp(np.array([0.5, 1.5]), np.stack([k, 2 * k]), v)  # one row per curve
    array([[1. , 2.5],
           [0.5, 1.5]])
    """
    _namespace.reject_non_number("period", period)
    for name, bound in (("left", left), ("right", right)):
        sig.reject_junk_bound(name, bound)  # also where `period` then ignores the bound
    xp_, arrays = _namespace.resolve({"x": x, "knots": knots, "values": values}, xp)
    _namespace.check_knot_grad(knot_grad)
    gap = _namespace.check_min_gap(min_gap)
    per = sig.check_period(period)
    x, knots, values = arrays["x"], arrays["knots"], arrays["values"]
    sig.check_real(xp_, "x", x)
    sig.check_real(xp_, "knots", knots)
    is_complex = xp_.isdtype(values.dtype, "complex floating")
    batch = _batch_shape(x, knots, values)
    if per is not None:
        left = right = None  # numpy.interp ignores them with a period
    lo = sig.check_bound(xp_, "left", left, is_complex=is_complex, batch=batch)
    hi = sig.check_bound(xp_, "right", right, is_complex=is_complex, batch=batch)
    real_values = xp_.real(values) if is_complex else values
    dtype = _dtypes.result_dtype(xp_, {"x": x, "knots": knots, "values": real_values})
    comp = _dtypes.compute_dtype(xp_, dtype)  # float32 for float16/bfloat16
    # Complex values compute with parts in `comp` too (complex32 as complex64) and round back once.
    out_complex = xp_.result_type(dtype, values.dtype) if is_complex else None
    vdtype = xp_.result_type(comp, values.dtype) if is_complex else comp
    x, knots = (xp_.astype(a, comp, copy=False) for a in (x, knots))
    values = xp_.astype(values, vdtype, copy=False)
    # Unreadable knots (under tracing, lazy Dask) are not checked: `bad` is the
    # unread verdict, and a True one makes every output NaN (a binary search on
    # unsorted knots finds no meaningful bin for any query).
    hooks = hooks_for(xp_)
    # One block (Dask): the shifted comparison of chunked knots would rechunk them once more.
    whole = hooks.consolidate(knots)
    if per is None:
        # A NaN fails every comparison: with two knots or more it breaks the order.
        ordered = whole[..., 1:] >= whole[..., :-1] if knots.shape[-1] > 1 else ~xp_.isnan(whole)
        bad = _checks.check_all(xp_, ordered, "`knots` must be non-decreasing and free of NaN")
    else:
        ordered = xp_.isfinite(whole)
        bad = _checks.check_all(xp_, ordered, "`knots` must be finite (no NaN or inf) when `period` is given")
    if bad is not None and knots.ndim > 1:
        # Per row, as the 1-D call on each row (or vmap of it) would give.
        bad = ~xp_.all(ordered, axis=-1, keepdims=True)

    if batch is not None:
        n, m = knots.shape[-1], x.shape[-1]
        _dtypes.check_index_range(xp_, _dtypes.default_int(xp_, knots), math.prod(batch) * n, "the batch of `knots`")
        x = xp_.broadcast_to(x, (*batch, m))
        knots = xp_.broadcast_to(knots, (*batch, n))
        values = xp_.broadcast_to(values, (*batch, n))
    if per is not None:
        x, knots, values = sig.wrap_periodic(xp_, hooks, x, knots, values, per)

    def kernel(v: Array, lo: sig.Bound, hi: sig.Bound) -> Array:
        return interpolate(xp_, hooks, x, knots, v, left=lo, right=hi, knot_grad=knot_grad, min_gap=gap)

    if not is_complex:
        return _checks.poison(xp_, bad, xp_.astype(kernel(values, lo[0], hi[0]), dtype, copy=False))
    re = kernel(xp_.real(values), lo[0], hi[0])
    im = kernel(xp_.imag(values), lo[1], hi[1])
    if knots.shape[-1] > 1:
        # numpy's complex loop returns NaN + 0j for a NaN query (its one-knot
        # loop copies the value, as the kernel does).
        im = xp_.where(xp_.isnan(x), xp_.zeros_like(im), im)
    return _checks.poison(xp_, bad, xp_.astype(sig.combine(xp_, re, im, vdtype), out_complex, copy=False))


def _batch_shape(x: Array, knots: Array, values: Array) -> tuple[int, ...] | None:
    """The leading shape of batched inputs, or None for 1-D ``knots`` and ``values``.

    Raises ValueError naming the argument for shapes that do not fit.
    """
    for name, a in (("knots", knots), ("values", values)):
        if a.ndim == 0:
            raise ValueError(f"`{name}` must have at least one dimension, got a 0-d array")
    n = knots.shape[-1]
    if n == 0:
        raise ValueError("`knots` must not be empty")
    if values.shape[-1] != n:
        raise ValueError(f"`values` must have the length of `knots` ({n}) along the last axis, got {values.shape[-1]}")
    if knots.ndim == 1 and values.ndim == 1:
        return None
    if x.ndim == 0:
        raise ValueError(
            "`x` must have at least one dimension when `knots` or `values` are batched (queries along the last axis)"
        )
    return sig.broadcast_shapes(
        {"knots": tuple(knots.shape[:-1]), "values": tuple(values.shape[:-1]), "x": tuple(x.shape[:-1])}
    )
