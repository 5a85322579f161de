"""The interpolation rule: numpy.interp's forward value and knotsafe's gradient rule.

This is the one place where the derivatives of piecewise-linear
interpolation are defined.  Every backend evaluates them from here, either
through ``stop_gradient`` (:func:`knotsafe.backends.generic_linearize`) or
inside a native custom derivative (``jax.custom_jvp``,
``torch.autograd.Function``), so all backends share one gradient rule.

For a query ``x`` in the bin ``[k0, k1)`` with values ``f0, f1`` and
``w = (x - k0) / (k1 - k0)`` the output is ``f0 + (f1 - f0) * w`` and

====================  ==============================  =====================
partial               genuine bin (gap > threshold)   duplicate bin
====================  ==============================  =====================
d out / d x           slope = (f1 - f0) / (k1 - k0)   0
d out / d f0, d f1    1 - w, w                        1 - w, w
d out / d k0, d k1    -slope (1 - w), -slope w        0, 0
====================  ==============================  =====================

so the knot partials are ``-(d out / d x)`` times the value weights
(translation invariance: moving x and all knots together changes nothing).

Outside ``[knots[0], knots[-1])`` the output is a constant (``left``,
``right`` or an end value): only the end value it copies gets weight 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import array_api_compat

Array = Any

#: A knot gap at or below ``DUPLICATE_EPS_FACTOR * eps * max|knots|`` is a
#: duplicate.  Near-duplicate knots come from rounding at the scale of the whole
#: computation (a ray traced twice), not of each knot, so the threshold scales
#: with the largest knot magnitude.  On a traced lens grid every near-duplicate
#: gap is below 3 eps max|knots| while the smallest genuine gap is ~1e7 larger.
DUPLICATE_EPS_FACTOR = 8.0


@dataclass(frozen=True)
class Partials:
    """First derivatives of each output with respect to the bin it reads.

    All arrays have the flattened query shape ``(M,)``; ``j`` is the lower
    knot index of the bin.  The knot partials are not stored: they are
    ``-dx * a0`` and ``-dx * a1`` (``dx`` is 0 wherever the weights are not
    the bin's barycentric ones), and zero when ``knot_grad`` is False.
    """

    j: Array
    dx: Array
    a0: Array
    a1: Array
    knot_grad: bool


@dataclass(frozen=True)
class _Forward:
    """numpy.interp's values and the intermediates the partials reuse."""

    out: Array
    gap: Array  # k1 - k0
    safe_gap: Array  # gap, with exact zeros replaced by 1
    rise: Array  # f1 - f0
    d0: Array  # x - k0
    below: Array  # x < knots[0]
    at_end: Array  # the entries that copy values[-1]


@dataclass(frozen=True)
class InterpRule:
    """Interpolation with fixed options, evaluated on 1-D arrays.

    ``x`` has shape ``(M,)``, ``knots`` and ``values`` shape ``(N,)`` with
    ``N >= 2`` (callers pad a single knot), all of one floating dtype.
    """

    xp: ModuleType
    safe_slope: Any
    searchsorted: Any
    take: Any
    left: float | None
    right: float | None
    knot_grad: str
    min_gap: float | None

    def _bracket(self, x: Array, knots: Array, values: Array) -> tuple[Array, ...]:
        xp = self.xp
        # Searching the interior knots gives clip(searchsorted(knots, x) - 1, 0,
        # N - 2) directly, the lower index j of numpy's bin: no subtraction and
        # no clip over the queries.  (They differ only for NaN queries, whose
        # value is NaN and whose partials are all zero whatever the bin.)
        j = self.searchsorted(xp, knots[1:-1], x)
        j1 = j + 1
        take = self.take
        return j, take(xp, knots, j), take(xp, knots, j1), take(xp, values, j), take(xp, values, j1)

    def _forward(self, x: Array, knots: Array, values: Array, k0: Array, k1: Array, f0: Array, f1: Array) -> _Forward:
        """numpy.interp's arithmetic, operation for operation (compiled_base.c)."""
        xp = self.xp
        # The bin a finite in-range query uses always has k1 > x >= k0, so a
        # zero gap only occurs for entries the outer `where`s replace.
        gap = k1 - k0
        rise = f1 - f0
        d0 = x - k0
        safe_gap = xp.where(gap == 0, xp.ones_like(gap), gap)
        slope = rise / safe_gap
        out = slope * d0 + f0
        # numpy: "If we get nan in one direction, try the other".
        out = xp.where(xp.isnan(out), slope * (x - k1) + f1, out)
        out = xp.where(xp.isnan(out) & (f0 == f1), f0, out)
        out = xp.where(x == k0, f0, out)
        last = values[-1]
        lo = values[0] if self.left is None else xp.asarray(self.left, dtype=out.dtype, device=_device(out))
        if self.right is None:
            # x > knots[-1] and x == knots[-1] both give the last value.
            at_end = x >= knots[-1]
            out = xp.where(at_end, last, out)
        else:
            at_end = x == knots[-1]
            hi = xp.asarray(self.right, dtype=out.dtype, device=_device(out))
            out = xp.where(x > knots[-1], hi, out)
            out = xp.where(at_end, last, out)
        below = x < knots[0]
        out = xp.where(below, lo, out)
        return _Forward(xp.where(xp.isnan(x), x, out), gap, safe_gap, rise, d0, below, at_end)

    def value(self, x: Array, knots: Array, values: Array) -> Array:
        """Forward values of ``numpy.interp(x, knots, values, left, right)``."""
        _, k0, k1, f0, f1 = self._bracket(x, knots, values)
        return self._forward(x, knots, values, k0, k1, f0, f1).out

    def threshold(self, knots: Array) -> Array | float:
        """Largest knot gap that counts as a duplicate (see DUPLICATE_EPS_FACTOR)."""
        if self.min_gap is not None:
            return self.min_gap
        xp = self.xp
        eps = xp.finfo(knots.dtype).eps
        return xp.max(xp.abs(knots)) * (DUPLICATE_EPS_FACTOR * eps)

    def value_and_partials(self, x: Array, knots: Array, values: Array) -> tuple[Array, Partials]:
        """Forward values and the gradient rule's partials (no autodiff inside)."""
        xp = self.xp
        j, k0, k1, f0, f1 = self._bracket(x, knots, values)
        fwd = self._forward(x, knots, values, k0, k1, f0, f1)

        inside = (x >= knots[0]) & (x < knots[-1])  # False for NaN queries
        zero = xp.zeros_like(x)
        # THE zero-width-bin rule.  A bin whose gap is at or below the duplicate
        # threshold is a step of the function (exact duplicates) or rounding
        # noise standing in for one (near-duplicates): its slope gets no
        # derivative, so d/dx and d/dknots are 0 there, while the forward value
        # stays numpy's and d/dvalues keeps the exact barycentric weights, which
        # lie in [0, 1] for any gap.
        genuine = inside & (fwd.gap > self.threshold(knots))
        dx = self.safe_slope(xp, fwd.rise, fwd.gap, genuine)
        w = xp.where(inside, fwd.d0 / fwd.safe_gap, zero)
        one_minus_w = 1.0 - w

        # Outside the knots the output copies an end value (weight 1) or a
        # constant `left`/`right` (no weight on `values`).
        a1 = xp.where(inside, w, xp.astype(fwd.at_end, x.dtype))
        a0 = xp.where(inside, one_minus_w, xp.astype(fwd.below, x.dtype) if self.left is None else zero)
        return fwd.out, Partials(j, dx, a0, a1, self.knot_grad != "stop")


def _device(a: Array) -> Any:
    return array_api_compat.device(a)
