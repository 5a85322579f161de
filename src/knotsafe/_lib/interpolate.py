"""Interpolation on validated arrays: the kernel behind :func:`knotsafe.interp`.

Callers (the public ``interp``, the rank and kernel-density transforms) have
checked the arguments and resolved the namespace and its hooks; this module
pads a single knot, lays batched inputs out as rows, evaluates the rule with
its derivative attached (differentiable backends) or the fastest forward
pass (the others), and restores the query shape.
"""

from __future__ import annotations

import math
from dataclasses import replace
from types import ModuleType
from typing import Any

import array_api_compat

from knotsafe._lib.backends.hooks import BackendHooks
from knotsafe._lib.rule import Bound, InterpRule, generic_linearize

Array = Any
#: What ``left``/``right`` may be here: None, ``"extrapolate"``, a number or an array
#: (0-d, or for rows the batch shape with a trailing 1, see :func:`interpolate`).
BoundArg = Any


def interpolate(
    xp: ModuleType,
    hooks: BackendHooks,
    x: Array,
    knots: Array,
    values: Array,
    *,
    left: BoundArg,
    right: BoundArg,
    knot_grad: str,
    min_gap: float | None,
) -> Array:
    """``interp`` of validated real arrays of one namespace and floating dtype.

    1-D ``knots`` and ``values`` (N,), N >= 1: ``x`` has any shape, and the
    result has the shape of ``x``.  Batched: ``knots`` and ``values`` of
    shape ``B + (N,)`` and ``x`` of shape ``B + (M,)`` with the same leading
    shape ``B`` (callers broadcast), one curve per row; the result has the
    shape of ``x``.  ``knots`` non-decreasing along the last axis (not
    checked).  ``left``/``right``: None (the end value), ``"extrapolate"``, a
    number or an array of the computation dtype (0-d, or ``B + (1,)`` for
    batched inputs), differentiable.
    """
    rows = knots.ndim > 1
    shape = x.shape
    if rows:
        batch = knots.shape[:-1]
        count = math.prod(batch)
        flat = xp.reshape(x, (count, shape[-1]))
        knots = xp.reshape(knots, (count, knots.shape[-1]))
        values = xp.reshape(values, (count, values.shape[-1]))
    else:
        flat = xp.reshape(x, (-1,))
    single = knots.shape[-1] == 1
    if single:
        # One knot is the degenerate bin [k, k]: the general code handles it.
        knots = xp.concat([knots, knots], axis=-1)
        values = xp.concat([values, values], axis=-1)
    lo_mode, lo = _bound(xp, left, flat, rows)
    hi_mode, hi = _bound(xp, right, flat, rows)
    rule = InterpRule(xp, hooks, lo_mode, hi_mode, knot_grad, min_gap)
    if hooks.differentiable:
        out = (hooks.linearize or generic_linearize)(rule, flat, knots, values, lo, hi)
    else:
        native = hooks.forward is not None and not rows and "extrapolate" not in (lo_mode, hi_mode)
        out = hooks.forward(flat, knots, values, lo, hi) if native else None  # type: ignore[misc]
        if out is None and hooks.forward is not None and xp.finfo(flat.dtype).bits < 64:
            # The native forward is numpy.interp, which computes in float64 and
            # rounds once: the rule's path (rows, extrapolation) does the same, so
            # a row of a batched call is bitwise the 1-D call.
            # The duplicate threshold stays that of the input dtype.
            wide = [None if b is None else xp.astype(b, xp.float64) for b in (flat, knots, values, lo, hi)]
            gap = rule.threshold(knots)
            rule = replace(rule, min_gap=gap if isinstance(gap, float) else xp.astype(gap, xp.float64))
            out = xp.astype(rule.value(*wide[:3], lo=wide[3], hi=wide[4]), flat.dtype)
        if out is None:
            out = rule.value(flat, knots, values, lo=lo, hi=hi)
    if single:
        # numpy.interp's one-knot loop has no NaN test: a NaN query copies the value.
        out = xp.where(xp.isnan(flat), values[..., :1], out)
    return xp.reshape(out, shape)


def _bound(xp: ModuleType, value: BoundArg, like: Array, rows: bool) -> tuple[Bound, Array | None]:
    """The rule's kind of end and its bound array (0-d, or (R, 1) for rows) in ``like``'s dtype."""
    if value is None:
        return None, None
    if isinstance(value, str):
        return "extrapolate", None
    dtype, dev = like.dtype, array_api_compat.device(like)
    if isinstance(value, int | float):
        b = xp.asarray(value, dtype=dtype, device=dev)
    else:
        b = xp.astype(value, dtype, copy=False)
    if rows:
        count = like.shape[0]
        b = xp.broadcast_to(xp.reshape(b, (1, 1)), (count, 1)) if b.ndim == 0 else xp.reshape(b, (count, 1))
    return "value", b
