"""Gradient-safe 1-D linear interpolation with numpy.interp's forward values."""

from __future__ import annotations

from types import ModuleType
from typing import Any, Literal

from knotsafe._lib import _namespace as ns
from knotsafe._lib._registry import hooks_for
from knotsafe._lib._rule import InterpRule

__all__ = ["interp"]

Array = Any
KnotGrad = Literal["exact", "stop"]


def interp(
    x: Array,
    knots: Array,
    values: Array,
    /,
    *,
    left: float | None = None,
    right: float | None = None,
    knot_grad: KnotGrad = "exact",
    min_gap: float | None = None,
    xp: ModuleType | None = None,
) -> Array:
    """One-dimensional linear interpolation, safe to differentiate.

    Forward values are those of ``numpy.interp(x, knots, values, left,
    right)``; derivatives are finite for every finite input, also when knots
    are duplicated or a few ulp apart.

    Parameters
    ----------
    x : array, any shape
        Query points.
    knots : array, shape (N,)
        Non-decreasing knot positions, N >= 1.  Duplicates are allowed.  On
        concrete (not traced) arrays, NaN or decreasing knots raise
        ValueError; under tracing they are not checked and, as with
        ``numpy.interp``, give meaningless values.
    values : array, shape (N,)
        Function values at the knots.
    left, right : float, optional
        Values for ``x < knots[0]`` and ``x > knots[-1]``; default
        ``values[0]`` and ``values[-1]``.  Constants: no gradient flows into
        them.
    knot_grad : {"exact", "stop"}
        ``"exact"`` (default) gives the exact partials with respect to the
        knots; ``"stop"`` gives zero knot gradients (the ``stop_gradient``
        semantics of the reference fix), leaving ``x`` and ``values`` exact.
    min_gap : float, optional
        A bin whose knot gap is ``<= min_gap`` is a duplicate (a step of the
        function).  Default ``8 * eps * max(abs(knots))`` with ``eps`` of the
        computation dtype.
    xp : namespace, optional
        Array namespace to compute in (numpy, jax.numpy, torch,
        array_api_strict, ...).  Default: inferred from the arrays.  With
        ``xp`` given, NumPy arrays and Python data are converted to it.

    Returns
    -------
    array, shape of ``x``
        Interpolated values in the common floating dtype of the inputs
        (float32 stays float32), on the inputs' device.

    Raises
    ------
    ValueError
        ``knots`` or ``values`` not 1-D, of different lengths or empty; NaN or
        decreasing ``knots`` (concrete arrays); unknown ``knot_grad``;
        negative ``min_gap``.
    TypeError
        Arrays from two libraries; non-numeric ``left``/``right``/``min_gap``.

    Notes
    -----
    Gradient behaviour (the rule lives in :mod:`knotsafe._lib._rule`):

    * ``d/dx`` is the slope of the bin numpy uses, ``[knots[j],
      knots[j+1])`` with ``knots[j] <= x < knots[j+1]``; 0 outside
      ``[knots[0], knots[-1])`` and in duplicate bins (gap ``<= min_gap``).
    * ``d/dvalues`` are the barycentric weights ``1 - w`` and ``w``,
      ``w = (x - knots[j]) / (knots[j+1] - knots[j])``, in every bin.
    * ``d/dknots`` are ``-slope * (1 - w)`` and ``-slope * w`` (zero in
      duplicate bins and under ``knot_grad="stop"``).
    * NaN queries give NaN values and zero gradients, except with a single
      knot, where ``numpy.interp`` (and so knotsafe) returns ``values[0]``.

    At a knot the one-sided derivative from the right is returned.  Second
    derivatives are not provided (they are zero or undefined almost
    everywhere for piecewise-linear functions).

    Examples
    --------
    >>> import numpy as np
    >>> from knotsafe import interp
    >>> interp(np.array([0.5, 1.0, 3.0]), np.array([0.0, 1.0, 1.0, 2.0]), np.array([0.0, 1.0, 2.0, 3.0]))
    array([0.5, 2. , 3. ])
    """
    xp_, arrays = ns.resolve({"x": x, "knots": knots, "values": values}, xp)
    ns.check_knot_grad(knot_grad)
    gap = ns.check_min_gap(min_gap)
    lo = ns.check_scalar("left", left)
    hi = ns.check_scalar("right", right)
    x, knots, values = arrays["x"], arrays["knots"], arrays["values"]
    if knots.ndim != 1:
        raise ValueError(f"`knots` must be 1-D, got shape {tuple(knots.shape)}")
    if values.ndim != 1:
        raise ValueError(f"`values` must be 1-D, got shape {tuple(values.shape)}")
    if knots.shape[0] == 0:
        raise ValueError("`knots` must not be empty")
    if values.shape[0] != knots.shape[0]:
        raise ValueError(f"`values` must have the length of `knots` ({knots.shape[0]}), got {values.shape[0]}")
    dtype = ns.float_dtype(xp_, x, knots, values)
    x, knots, values = (xp_.astype(a, dtype, copy=False) for a in (x, knots, values))
    if knots.shape[0] > 1 and ns.holds(xp_, knots[1:] >= knots[:-1]) is False:
        raise ValueError("`knots` must be non-decreasing and free of NaN")
    return interp_checked(xp_, x, knots, values, left=lo, right=hi, knot_grad=knot_grad, min_gap=gap)


def interp_checked(
    xp: ModuleType,
    x: Array,
    knots: Array,
    values: Array,
    *,
    left: float | None,
    right: float | None,
    knot_grad: str,
    min_gap: float | None,
) -> Array:
    """:func:`interp` on validated arrays of one namespace and dtype."""
    hooks = hooks_for(xp)
    shape = x.shape
    flat = xp.reshape(x, (-1,))
    single = knots.shape[0] == 1
    if single:
        # One knot is the degenerate bin [k, k]: the general code handles it.
        knots = xp.concat([knots, knots])
        values = xp.concat([values, values])
    rule = InterpRule(xp, hooks, left, right, knot_grad, min_gap)
    if hooks.differentiable:
        out = hooks.linearize(hooks, rule, flat, knots, values)
    else:
        out = hooks.forward(flat, knots, values, left, right) if hooks.forward is not None else None
        if out is None:
            out = rule.value(flat, knots, values)
    if single:
        # numpy.interp's one-knot loop has no NaN test: a NaN query copies the value.
        out = xp.where(xp.isnan(flat), values[0], out)
    return xp.reshape(out, shape)
