"""Gradient-safe 1-D linear interpolation with numpy.interp's forward values."""

from __future__ import annotations

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
    left: complex | None = None,
    right: complex | None = None,
    period: float | None = None,
    knot_grad: KnotGrad = "exact",
    min_gap: float | None = None,
    xp: ModuleType | None = None,
) -> Array:
    """One-dimensional linear interpolation, safe to differentiate.

    Forward values are those of ``numpy.interp(x, knots, values, left,
    right, period)``; derivatives are finite for every finite input, also when
    knots are duplicated or a few ulp apart.

    Parameters
    ----------
    x : array, any shape
        Query points (real).
    knots : array, shape (N,)
        Knot positions (real), N >= 1.  Non-decreasing unless ``period`` is
        given; duplicates are allowed.  On concrete arrays NaN or decreasing
        knots (with ``period``, NaN or infinite knots) raise ValueError; where
        the data cannot be read (``jax.jit`` and other tracing, lazy Dask
        arrays, ``torch.func.vmap``, ``torch.compile``) they are not checked
        and every output is NaN instead.
    values : array, shape (N,)
        Function values at the knots, real or complex.  Complex values give a
        complex result whose real and imaginary parts are the interpolations
        of the real and imaginary parts on the same knots.
    left, right : number, optional
        Values for ``x < knots[0]`` and ``x > knots[-1]``; default
        ``values[0]`` and ``values[-1]``.  Complex only with complex
        ``values``; a string or a boolean is a TypeError.  Constants: no gradient flows into them.  Ignored when
        ``period`` is given.
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
    array, shape of ``x``
        Interpolated values in the common floating dtype of the inputs
        (float32 stays float32; complex ``values`` give complex64 from float32
        parts and complex128 from float64), on the inputs' device.  float16
        and bfloat16 are computed in float32 (slopes, threshold) and rounded
        back once (PyTorch's complex32 as complex64).

    Raises
    ------
    ValueError
        ``knots`` or ``values`` not 1-D, of different lengths or empty; NaN or
        decreasing ``knots`` (concrete arrays; with ``period``, NaN or
        infinite knots); unknown ``knot_grad``; negative ``min_gap``;
        ``period`` zero or not finite.
    TypeError
        Arrays from two libraries; complex ``x`` or ``knots``; complex
        ``left``/``right`` with real ``values``; non-numeric
        ``left``/``right``/``min_gap``/``period`` (strings and booleans
        included); a sparse or nested tensor (the message names it).

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
    """
    for name, scalar in (("left", left), ("right", right), ("period", period)):
        _namespace.reject_non_number(name, scalar)
    xp_, arrays = _namespace.resolve({"x": x, "knots": knots, "values": values}, xp)
    _namespace.check_knot_grad(knot_grad)
    gap = _namespace.check_min_gap(min_gap)
    per = sig.check_period(period)
    x, knots, values = arrays["x"], arrays["knots"], arrays["values"]
    sig.check_real(xp_, "x", x)
    sig.check_real(xp_, "knots", knots)
    is_complex = xp_.isdtype(values.dtype, "complex floating")
    if per is not None:
        left = right = None  # numpy.interp ignores them with a period
    if not is_complex:
        sig.reject_complex_scalar("left", left)
        sig.reject_complex_scalar("right", right)
    lo = sig.complex_scalar("left", left) if is_complex else _namespace.check_scalar("left", left)
    hi = sig.complex_scalar("right", right) if is_complex else _namespace.check_scalar("right", right)
    if knots.ndim != 1:
        raise ValueError(f"`knots` must be 1-D, got shape {tuple(knots.shape)}")
    if values.ndim != 1:
        raise ValueError(f"`values` must be 1-D, got shape {tuple(values.shape)}")
    if knots.shape[0] == 0:
        raise ValueError("`knots` must not be empty")
    if values.shape[0] != knots.shape[0]:
        raise ValueError(f"`values` must have the length of `knots` ({knots.shape[0]}), got {values.shape[0]}")
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
        ordered = whole[1:] >= whole[:-1] if knots.shape[0] > 1 else ~xp_.isnan(whole)
        bad = _checks.check_all(xp_, ordered, "`knots` must be non-decreasing and free of NaN")
    else:
        bad = _checks.check_all(
            xp_, xp_.isfinite(whole), "`knots` must be finite (no NaN or inf) when `period` is given"
        )
        x, knots, values = sig.wrap_periodic(xp_, x, knots, values, per)

    def kernel(v: Array, lo: float | None, hi: float | None) -> Array:
        return interpolate(xp_, hooks, x, knots, v, left=lo, right=hi, knot_grad=knot_grad, min_gap=gap)

    if not is_complex:
        return _checks.poison(xp_, bad, xp_.astype(kernel(values, lo, hi), dtype, copy=False))  # type: ignore[arg-type]
    re = kernel(xp_.real(values), *(None if s is None else s[0] for s in (lo, hi)))  # type: ignore[index]
    im = kernel(xp_.imag(values), *(None if s is None else s[1] for s in (lo, hi)))  # type: ignore[index]
    if knots.shape[0] > 1:
        # numpy's complex loop returns NaN + 0j for a NaN query (its one-knot
        # loop copies the value, as the kernel does).
        im = xp_.where(xp_.isnan(x), xp_.zeros_like(im), im)
    return _checks.poison(xp_, bad, xp_.astype(sig.combine(xp_, re, im, vdtype), out_complex, copy=False))
