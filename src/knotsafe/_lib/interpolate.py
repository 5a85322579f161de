"""Interpolation on validated arrays: the kernel behind :func:`knotsafe.interp`.

Callers (the public ``interp``, the rank and kernel-density transforms) have
checked the arguments and resolved the namespace and its hooks; this module
pads a single knot, evaluates the rule with its derivative attached
(differentiable backends) or the fastest forward pass (the others), and
restores the query shape.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from knotsafe._lib.backends.hooks import BackendHooks
from knotsafe._lib.rule import InterpRule, generic_linearize

Array = Any


def interpolate(
    xp: ModuleType,
    hooks: BackendHooks,
    x: Array,
    knots: Array,
    values: Array,
    *,
    left: float | None,
    right: float | None,
    knot_grad: str,
    min_gap: float | None,
) -> Array:
    """``interp`` of validated real arrays of one namespace and floating dtype.

    ``x`` has any shape, ``knots`` and ``values`` shape (N,) with N >= 1,
    ``knots`` non-decreasing (not checked).  Returns the shape of ``x``.
    """
    shape = x.shape
    flat = xp.reshape(x, (-1,))
    single = knots.shape[0] == 1
    if single:
        # One knot is the degenerate bin [k, k]: the general code handles it.
        knots = xp.concat([knots, knots])
        values = xp.concat([values, values])
    rule = InterpRule(xp, hooks, left, right, knot_grad, min_gap)
    if hooks.differentiable:
        out = (hooks.linearize or generic_linearize)(rule, flat, knots, values)
    else:
        out = hooks.forward(flat, knots, values, left, right) if hooks.forward is not None else None
        if out is None:
            out = rule.value(flat, knots, values)
    if single:
        # numpy.interp's one-knot loop has no NaN test: a NaN query copies the value.
        out = xp.where(xp.isnan(flat), values[0], out)
    return xp.reshape(out, shape)
