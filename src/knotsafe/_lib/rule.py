"""The interpolation rule: numpy.interp's forward value and knotsafe's gradient rule.

This is the one place where the derivatives of piecewise-linear
interpolation are defined *and assembled*.  :meth:`InterpRule.value_and_partials`
computes the partials; :meth:`Partials.tangent` (forward mode) and
:meth:`Partials.cotangent` (reverse mode) are the only places where they are
combined with tangents and cotangents.  Every backend calls these two: the
generic ``stop_gradient`` path (:func:`generic_linearize`),
the ``jax.custom_jvp`` and both directions of the ``torch.autograd.Function``.

For a query ``x`` in the bin ``[k0, k1)`` with values ``f0, f1`` and
``w = (x - k0) / (k1 - k0)`` the output is ``f0 + (f1 - f0) * w`` and

=======================  ==============================  =====================
derivative               genuine bin (gap > threshold)   duplicate bin
=======================  ==============================  =====================
d out / d x              slope = (f1 - f0) / (k1 - k0)   0
d out / d f0, d f1       1 - w, w                        1 - w, w
d out / d k0, d k1       -slope (1 - w), -slope w        0, 0
second derivatives       exact derivatives of the        0
                         partials above (d2/dx2 = 0)
=======================  ==============================  =====================

so the knot partials are ``-(d out / d x)`` times the value weights
(translation invariance: moving x and all knots together changes nothing).

Second derivatives are the derivatives of this first-derivative rule: the
partials are differentiable functions of ``x``, ``knots`` and ``values``
(slope and barycentric weights), evaluated with guarded divisions so that no
branch of any order is inf/NaN.  In duplicate bins the slope is the constant
0 and the weights are constants, so every second derivative there is 0.
With ``knot_grad="stop"`` the partials are computed from stop-gradiented
knots: every derivative of any order with respect to the knots is 0.

Outside ``[knots[0], knots[-1])`` the output is a constant (``left``,
``right`` or an end value): only the end value it copies gets weight 1, or
the bound it copies (``d out / d left = 1`` below the knots, ``d out / d
right = 1`` above them).  With ``"extrapolate"`` an end continues the line of
its outermost bin: the bin's formula and partials above (``w`` outside
``[0, 1]``) when that bin is genuine, the end value (a zero-slope line, as a
duplicate bin has) when it is a duplicate; an extrapolated ``x = -inf`` or
``+inf`` gets the line's value (inf or NaN) and zero partials.

A bin without a finite slope has no derivative with respect to ``x`` or the
knots either: a bin touching an infinite knot (numpy's value there is
constant), and a bin whose slope is infinite or NaN (an infinite or NaN
value, or a rise that overflows; numpy's value there is inf, NaN or a
constant end value).  ``d/dx`` and ``d/dknots`` are 0 there and the value
weights are those of numpy's value: ``(1 - w, w)`` with ``w = (x - k0) / (k1
- k0)`` where that is a number, and in a bin from a ``-inf`` knot ``w = 1``
(numpy's value is ``f1``), except at ``x = -inf`` itself, ``w = 0`` (numpy's
value is ``f0``).  So every partial is finite whatever the inputs: forward
and reverse mode agree, and an output that a loss masks (zero cotangent)
adds nothing to any gradient, also when the output itself is inf or NaN.

Batched calls pass rows: ``x`` (R, M), ``knots`` and ``values`` (R, N), and
every operation works on each row alone (per-row threshold, search, gathers
and scatters), so a row gets the values and partials of the 1-D call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import array_api_compat

from knotsafe._lib.backends.hooks import BackendHooks, row_offsets

Array = Any
#: ``out -> bool``: whether an array may hold a NaN (True when unknown).
AnyNan = Callable[[Array], bool]

#: A knot gap at or below ``DUPLICATE_EPS_FACTOR * eps * max|knots|`` is a
#: duplicate.  Near-duplicate knots come from rounding at the scale of the whole
#: computation (a ray traced twice), not of each knot, so the threshold scales
#: with the largest knot magnitude.  On a traced lens grid every near-duplicate
#: gap is below 3 eps max|knots| while the smallest genuine gap is ~1e7 larger.
DUPLICATE_EPS_FACTOR = 8.0

#: The one meaning of ``knot_grad``: mode name -> whether knot partials flow.
KNOT_GRAD_MODES: dict[str, bool] = {"exact": True, "stop": False}
#: The type of ``knot_grad`` in the public signatures (the keys of :data:`KNOT_GRAD_MODES`).
KnotGrad = Literal["exact", "stop"]

#: What one end of the knots answers beyond it (``InterpRule.left``/``right``):
#: None, the end value (numpy's default); ``"value"``, a bound array passed
#: with the inputs (a traced operand, differentiable); ``"extrapolate"``, the
#: line of the outermost bin.  The bound's *value* is never part of the rule,
#: so a compiled rule serves every value (and -0.0 stays apart from 0.0).
Bound = Literal["value", "extrapolate"] | None


@dataclass(frozen=True)
class Partials:
    """First derivatives of each output with respect to the bin it reads.

    All arrays have the flattened query shape ``(M,)``, or ``(R, M)`` for R
    rows of a batched call; ``j`` is the lower knot index of the bin (in its
    row).  The knot partials are not stored: they are ``-dx * a0`` and
    ``-dx * a1`` (``dx`` is 0 wherever the weights are not the bin's
    barycentric ones), and zero when ``knot_grad`` is False.  ``bl``/``br``
    are the weights of a ``"value"`` bound (1 where the output copies it),
    None for the other kinds of end.

    The arrays are differentiable functions of the inputs they were computed
    from, so differentiating :meth:`tangent` or :meth:`cotangent` again gives
    the rule's second derivatives.
    """

    j: Array
    dx: Array
    a0: Array
    a1: Array
    knot_grad: bool
    hooks: BackendHooks
    xp: ModuleType
    bl: Array | None = None
    br: Array | None = None

    def tangent(
        self,
        x_dot: Array | None,
        knots_dot: Array | None,
        values_dot: Array | None,
        left_dot: Array | None = None,
        right_dot: Array | None = None,
    ) -> Array:
        """Forward mode: the output tangent for input tangents (None = zero).

        ``left_dot``/``right_dot``: tangents of the ``"value"`` bounds (0-d,
        or (R, 1) for rows).
        """
        xp, take, j = self.xp, self.hooks.take, self.j
        moved = xp.zeros_like(self.dx) if x_dot is None else x_dot
        if knots_dot is not None and self.knot_grad:
            moved = moved - (self.a0 * take(xp, knots_dot, j) + self.a1 * take(xp, knots_dot, j + 1))
        t = self.dx * moved
        if values_dot is not None:
            t = t + self.a0 * take(xp, values_dot, j) + self.a1 * take(xp, values_dot, j + 1)
        if left_dot is not None and self.bl is not None:
            t = t + self.bl * left_dot
        if right_dot is not None and self.br is not None:
            t = t + self.br * right_dot
        return t

    def cotangent(self, g: Array, n: int, needs: tuple[bool, ...] = (True, True, True)) -> tuple[Array | None, ...]:
        """Reverse mode: ``(gx, gknots, gvalues)`` for the output cotangent ``g``.

        ``n`` is the number of knots; an entry of ``needs`` that is False
        gives None.  Knot cotangents are zeros when ``knot_grad`` is False.
        ``needs`` of length 5 asks for the ``left`` and ``right`` bounds too
        and returns five entries (a bound that is not a ``"value"`` gives
        None); their cotangents are 0-d, or (R, 1) for rows.
        """
        need_x, need_k, need_v = needs[:3]
        xp = self.xp
        gx = g * self.dx if need_x or need_k else None
        gv = self._scatter_pair(n, g * self.a0, g * self.a1) if need_v else None
        gk = None
        if need_k and self.knot_grad:
            assert gx is not None
            # d/dknots = -dx times the value weights (see the table above).
            gk = -self._scatter_pair(n, gx * self.a0, gx * self.a1)
        elif need_k:
            gk = xp.zeros((*g.shape[:-1], n), dtype=g.dtype, device=array_api_compat.device(g))
        out = ((gx if need_x else None), gk, gv)
        if len(needs) == 3:
            return out
        bounds = tuple(
            self._row_sum(g, w) if need and w is not None else None
            for need, w in zip(needs[3:], (self.bl, self.br), strict=True)
        )
        return out + bounds

    def _scatter_pair(self, n: int, c0: Array, c1: Array) -> Array:
        # One scatter over both ends of each bin, in the order j then j + 1.
        # Rows scatter into one flattened (R * n) array, row r from r * n, so
        # each knot receives the same terms in the same order as a 1-D call.
        xp, j = self.xp, self.j
        if j.ndim == 1:
            return self._scatter_flat(n, j, c0, c1)
        rows = j.shape[0]
        j = xp.reshape(j + row_offsets(xp, rows, n, j), (-1,))
        out = self._scatter_flat(rows * n, j, xp.reshape(c0, (-1,)), xp.reshape(c1, (-1,)))
        return xp.reshape(out, (rows, n))

    def _scatter_flat(self, size: int, j: Array, c0: Array, c1: Array) -> Array:
        # The backend's pair scatter, or one scatter of the concatenations.
        xp, pair = self.xp, self.hooks.scatter_add_pair
        if pair is not None:
            return pair(xp, size, j, c0, c1)
        return self.hooks.scatter_add(xp, size, xp.concat([j, j + 1]), xp.concat([c0, c1]))

    def _row_sum(self, g: Array, w: Array) -> Array:
        """A bound's cotangent, the sum of ``g * w`` per row: 0-d for 1-D ``g``, (R, 1) for rows.

        A scatter, not ``sum``: it adds in query order in both layouts, so a
        row's sum is bitwise the 1-D call's (a reduction may change its order
        with the shape).  Entries with weight 0 go to a spare slot per row:
        the index then depends on the data (a constant index trips
        torch.compile's CPU code generator).
        """
        xp = self.xp
        c = g * w
        spare = xp.astype(w == 0, self.j.dtype)
        if c.ndim == 1:
            return xp.reshape(self.hooks.scatter_add(xp, 2, spare, c)[:1], ())
        rows = c.shape[0]
        index = xp.reshape(spare + row_offsets(xp, rows, 2, spare), (-1,))
        out = self.hooks.scatter_add(xp, 2 * rows, index, xp.reshape(c, (-1,)))
        return xp.reshape(out, (rows, 2))[:, :1]


@dataclass(frozen=True)
class _Ends:
    """Boolean masks of the entries beyond the knots' ends (None: no such entry)."""

    first: Array | None  # copy values[0]
    last: Array  # copy values[-1]
    left: Array | None  # copy the left bound
    right: Array | None  # copy the right bound
    extra: Array | None  # beyond an end, on the outermost bin's line ("extrapolate")


@dataclass(frozen=True)
class _Forward:
    """numpy.interp's values and the intermediates the partials reuse."""

    out: Array
    gap: Array  # k1 - k0
    safe_gap: Array  # gap, with exact zeros replaced by 1
    rise: Array | None  # f1 - f0 (None when not asked to keep it)
    d0: Array  # x - k0
    ends: _Ends
    slope: Array  # rise / safe_gap


@dataclass(frozen=True)
class InterpRule:
    """Interpolation with fixed options, evaluated on 1-D arrays or rows.

    ``x`` has shape ``(M,)``, ``knots`` and ``values`` shape ``(N,)`` with
    ``N >= 2`` (callers pad a single knot), all of one floating dtype; or
    rows: ``x`` (R, M), ``knots`` and ``values`` (R, N).  ``left``/``right``
    say what each end answers (:data:`Bound`); a ``"value"`` bound comes as
    an array with the inputs (0-d, or (R, 1) for rows).  Hashable (when
    ``min_gap`` is a number): backends cache compiled functions per rule.
    ``min_gap`` may also be a 0-d array (JAX passes it as a traced operand).
    """

    xp: ModuleType
    hooks: BackendHooks
    left: Bound
    right: Bound
    knot_grad: str
    min_gap: float | Array | None

    def _bracket(self, x: Array, knots: Array, values: Array, j: Array | None = None) -> tuple[Array, Array, Array]:
        """``(j, k0, f0)``: the lower knot index of each query's bin (``j``: known bins), its knot and value."""
        xp = self.xp
        take = self.hooks.take
        if j is None:
            # Searching the interior knots gives clip(searchsorted(knots, x) - 1, 0,
            # N - 2) directly, the lower index j of numpy's bin: no subtraction and
            # no clip over the queries.  (They differ only for NaN queries, whose
            # value is NaN and whose partials are all zero whatever the bin.)
            j = self.hooks.searchsorted(xp, knots[..., 1:-1], x)
        return j, take(xp, knots, j), take(xp, values, j)

    def _upper(self, knots: Array, values: Array, j: Array) -> tuple[Array, Array]:
        """``(k1, f1)``, the upper knot and value of each bin: gathered from the
        arrays shifted by one at ``j`` (no ``j + 1`` array over the queries)."""
        xp, take = self.xp, self.hooks.take
        return take(xp, knots[..., 1:], j), take(xp, values[..., 1:], j)

    def _forward(
        self,
        x: Array,
        knots: Array,
        values: Array,
        j: Array,
        k0: Array,
        f0: Array,
        any_nan: AnyNan | None = None,
        with_value: bool = True,
        *,
        lo: Array | None = None,
        hi: Array | None = None,
        thr: Array | float | None = None,
        keep_rise: bool = False,
        value_only: bool = False,
        keep_safe_gap: bool = True,
    ) -> _Forward:
        """numpy.interp's arithmetic, operation for operation (compiled_base.c).

        ``any_nan(out)`` (optional) says whether the first estimate may hold
        a NaN; when it answers False the NaN retries below are identities and
        are skipped (same values, fewer passes over the queries).  With
        ``with_value=False`` only the intermediates of the partials are
        computed (``out`` is None).  ``lo``/``hi``: the ``"value"`` bounds;
        ``thr``: the duplicate threshold, if the caller has it; ``keep_rise``:
        keep ``f1 - f0`` in the result (second derivatives read it);
        ``value_only``: the caller reads ``out`` alone (the other fields are None);
        ``keep_safe_gap=False``: no weight will be computed (``safe_gap`` is None).
        """
        xp = self.xp
        # Each array over the queries is let go as soon as nothing below reads
        # it (fewer alive at once: on PyTorch's CPU a fresh buffer costs page
        # faults).  The upper ends are read again only by the NaN retry, which
        # is rare where `any_nan` is given (they are gathered again if it runs).
        drop_upper = any_nan is not None or not with_value
        k1 = self.hooks.take(xp, knots[..., 1:], j)
        # The bin a finite in-range query uses always has k1 > x >= k0, so a
        # zero gap only occurs for entries the outer `where`s replace.
        gap = k1 - k0
        if drop_upper:
            k1 = None
        f1 = self.hooks.take(xp, values[..., 1:], j)
        rise = f1 - f0
        if drop_upper:
            f1 = None
        safe_gap = xp.where(gap == 0, _const(xp, 1.0, gap), gap)
        slope = rise / safe_gap
        if not keep_rise:
            rise = None
        if value_only:
            gap = safe_gap = None
        elif not keep_safe_gap:
            safe_gap = None
        d0 = x - k0
        ends = self._ends(x, knots, thr)
        if not with_value:
            return _Forward(None, gap, safe_gap, rise, d0, ends, slope)
        out = slope * d0 + f0
        # A NaN query makes this first estimate NaN, so an estimate without NaN
        # also skips the last `where` (NaN queries copied).
        retry = any_nan is None or any_nan(out)
        if value_only:
            d0 = None
            if not retry:
                slope = None
        if retry:
            if k1 is None:
                k1, f1 = self._upper(knots, values, j)
            # numpy: "If we get nan in one direction, try the other".
            out = xp.where(xp.isnan(out), slope * (x - k1) + f1, out)
            out = xp.where(xp.isnan(out) & (f0 == f1), f0, out)
        out = xp.where(x == k0, f0, out)
        # Beyond the ends: a bound, an end value, or (extrapolated entries)
        # the bin formula above, left as it is.
        if ends.right is not None:
            out = xp.where(ends.right, hi, out)
        out = xp.where(ends.last, values[..., -1:], out)
        if ends.left is not None:
            out = xp.where(ends.left, lo, out)
        if ends.first is not None:
            out = xp.where(ends.first, values[..., :1], out)
        if retry:
            out = xp.where(xp.isnan(x), x, out)
        if value_only:
            return _Forward(out, None, None, None, None, ends, None)
        return _Forward(out, gap, safe_gap, rise, d0, ends, slope)

    def _ends(self, x: Array, knots: Array, thr: Array | float | None) -> _Ends:
        """Who answers the entries beyond each end of the knots (see :data:`Bound`).

        Per end: the end value (None), the bound (``"value"``), or, with
        ``"extrapolate"``, the outermost bin's line where that bin is genuine
        (gap above the duplicate threshold, finite) and the end value where
        it is a duplicate.  ``x == knots[-1]`` copies ``values[-1]`` in
        every mode, as numpy does.
        """
        first_k, last_k = knots[..., :1], knots[..., -1:]
        below = x < first_k
        extra = None
        if "extrapolate" in (self.left, self.right) and thr is None:
            thr = self.threshold(knots)
        if self.left == "extrapolate":
            # The search puts every query below the knots in bin 0 already.
            line = self._genuine(knots[..., 1:2] - first_k, thr)
            extra, first, left = below & line, below & ~line, None
        else:
            first, left = (below, None) if self.left is None else (None, below)
        if self.right == "extrapolate":
            # ... and every query above them in bin N - 2.
            line = self._genuine(last_k - knots[..., -2:-1], thr)
            above = x > last_k
            extra = above & line if extra is None else extra | (above & line)
            last, right = (x == last_k) | (above & ~line), None
        elif self.right is None:
            # x > knots[-1] and x == knots[-1] both give the last value.
            last, right = x >= last_k, None
        else:
            last, right = x == last_k, x > last_k
        return _Ends(first, last, left, right, extra)

    @staticmethod
    def _genuine(gap: Array, thr: Array | float | None) -> Array:
        """Whether a gap is a genuine bin's: above the duplicate threshold and finite."""
        return (gap > thr) & (gap < math.inf)

    def value(
        self,
        x: Array,
        knots: Array,
        values: Array,
        any_nan: AnyNan | None = None,
        *,
        lo: Array | None = None,
        hi: Array | None = None,
    ) -> Array:
        """Forward values of ``numpy.interp(x, knots, values, left, right)``.

        ``any_nan``: see :meth:`_forward` (a backend's shortcut, same values);
        ``lo``/``hi``: the ``"value"`` bounds.
        """
        j, k0, f0 = self._bracket(x, knots, values)
        return self._forward(x, knots, values, j, k0, f0, any_nan, lo=lo, hi=hi, value_only=True).out

    def threshold(self, knots: Array) -> Array | float:
        """Largest knot gap that counts as a duplicate (see DUPLICATE_EPS_FACTOR).

        The scale is the largest *finite* knot magnitude (of each row): one
        infinite knot must not turn every bin into a duplicate.  Shape (1,),
        or (R, 1) for rows; ``min_gap`` when given.
        """
        if self.min_gap is not None:
            return self.min_gap
        xp = self.xp
        eps = xp.finfo(knots.dtype).eps
        mag = xp.abs(knots)
        mag = xp.where(xp.isfinite(mag), mag, xp.zeros_like(mag))
        return xp.max(mag, axis=-1, keepdims=True) * (DUPLICATE_EPS_FACTOR * eps)

    def partials(
        self, j: Array, dx: Array, a0: Array, a1: Array, bl: Array | None = None, br: Array | None = None
    ) -> Partials:
        """Partials from arrays an earlier :meth:`value_and_partials` returned."""
        return Partials(j, dx, a0, a1, KNOT_GRAD_MODES[self.knot_grad], self.hooks, self.xp, bl, br)

    def computed_partials(self, needs: tuple[bool, ...]) -> tuple[bool, bool, bool, bool, bool]:
        """Which of ``dx, a0, a1, bl, br`` a first-order :meth:`value_and_partials` computes for
        ``needs`` (the others are None): ``dx`` for a gradient of ``x`` or ``knots``; ``a0, a1`` for
        ``knots`` or ``values``; a bound's weight for its ``"value"`` bound unless ``needs[3:5]``
        rules it out."""
        need_x, need_k, need_v = needs[:3]
        want_lo, want_hi = needs[3:5] if len(needs) == 5 else (True, True)
        weights = need_k or need_v
        return need_x or need_k, weights, weights, want_lo and self.left == "value", want_hi and self.right == "value"

    def value_and_partials(
        self,
        x: Array,
        knots: Array,
        values: Array,
        *,
        first_order: bool = False,
        any_nan: AnyNan | None = None,
        with_value: bool = True,
        j: Array | None = None,
        needs: tuple[bool, ...] = (True, True, True),
        lo: Array | None = None,
        hi: Array | None = None,
    ) -> tuple[Array, Partials]:
        """Forward values and the gradient rule's partials.

        The partials are differentiable functions of the inputs (for second
        derivatives).  ``first_order=True`` is for callers whose inputs carry
        no derivative (a custom rule's forward, stop-gradiented inputs): the
        partials then get the same values, bit for bit, from fewer operations
        (the forward's slope and one division for the weights) but are not
        differentiable.  ``any_nan``: see :meth:`_forward`.  ``with_value=False``
        skips the forward values (returned as None); ``j``: the bins an earlier
        call returned for the same arrays (skips the search).  ``needs``
        (with ``first_order`` only): which of ``x, knots, values`` a gradient
        can be asked for; partials no such gradient reads are None (``dx``
        without ``x`` and ``knots``, ``a0, a1`` without ``knots`` and
        ``values``; ``needs[3:5]``, if given, for the bounds).  ``lo``/``hi``:
        the ``"value"`` bounds (their weights ``bl``/``br`` do not depend on
        them).
        """
        xp = self.xp
        knot_grad = KNOT_GRAD_MODES[self.knot_grad]
        if not knot_grad:
            # "stop": the knots are constants to every derivative of any order.
            knots = self.hooks.stop_gradient(knots)
        j, k0, f0 = self._bracket(x, knots, values, j)
        want_dx, want_weights, _, want_bl, want_br = self.computed_partials(needs if first_order else (True,) * 5)
        # The threshold is read by the slope's partials (d/dx, d/dknots) and by "extrapolate".
        slope_read = want_dx or "extrapolate" in (self.left, self.right)
        thr = self.threshold(knots) if slope_read else None
        fwd = self._forward(
            x,
            knots,
            values,
            j,
            k0,
            f0,
            any_nan,
            with_value,
            lo=lo,
            hi=hi,
            thr=thr,
            keep_rise=not first_order,
            keep_safe_gap=want_weights,
        )
        del f0  # read by the forward only: one array over the queries less alive below
        bounds = self._bound_weights(fwd.ends, x, want_bl, want_br)

        # On a bin's line: inside the knots, or extrapolated beyond an end.  An
        # extrapolated x = -inf or +inf is not: its output (the line's, inf or
        # NaN) is a constant of every input there, with infinite weights
        # `1 - w`, `w`, so all its partials are 0 (as a NaN query's).
        inside = (x >= knots[..., :1]) & (x < knots[..., -1:])  # False for NaN queries
        if fwd.ends.extra is not None:
            inside = inside | (fwd.ends.extra & _finite(x))
        # 0-d constants: a `where` broadcasts them, with no array over the queries.
        zero, one = _const(xp, 0.0, x), _const(xp, 1.0, x)
        # THE zero-width-bin rule.  A bin whose gap is at or below the duplicate
        # threshold is a step of the function (exact duplicates) or rounding
        # noise standing in for one (near-duplicates): its slope gets no
        # derivative, so d/dx and d/dknots are 0 there, while the forward value
        # stays numpy's and d/dvalues keeps the exact barycentric weights, which
        # lie in [0, 1] for any gap.  Those weights are constants there (their
        # derivatives, of order 1/gap, are the slope's, which the rule drops),
        # so every second derivative in a duplicate bin is 0.  A bin touching
        # an infinite knot (gap inf or NaN), or with an infinite or NaN slope,
        # is treated as a duplicate too.
        if first_order:
            dx = a0 = a1 = None
            if want_dx:
                # A genuine gap is > threshold >= 0, so there safe_gap == gap and
                # the forward's slope is rise / gap: the same values as the
                # guarded divisions below, which only differentiability needs.
                dx = xp.where(self._bin_genuine(inside, fwd, thr), fwd.slope, zero)
            if want_weights:
                a0, a1 = self._weights(self._flat_weight(x, k0, fwd, inside, zero, one), inside, fwd, zero, one)
            return fwd.out, self.partials(j, dx, a0, a1, *bounds)
        # Double where: the differentiable divisions only ever see genuine bins
        # (finite rise, offset and gap), so no branch of any order is inf/NaN.
        genuine = self._bin_genuine(inside, fwd, thr)
        dx = self.hooks.safe_slope(xp, xp.where(genuine, fwd.rise, zero), fwd.gap, genuine)
        w_genuine = xp.where(genuine, fwd.d0, zero) / xp.where(genuine, fwd.gap, one)
        w = xp.where(genuine, w_genuine, self.hooks.stop_gradient(self._flat_weight(x, k0, fwd, inside, zero, one)))
        w = xp.where(inside, w, zero)
        a0, a1 = self._weights(w, inside, fwd, zero, one)
        return fwd.out, self.partials(j, dx, a0, a1, *bounds)

    def _bin_genuine(self, inside: Array, fwd: _Forward, thr: Array | float | None) -> Array:
        """Queries on a bin's line (``inside``) in a bin with a slope: a genuine gap
        (:meth:`_genuine`) and a finite slope (the others: see the module docstring)."""
        return inside & self._genuine(fwd.gap, thr) & _finite(fwd.slope)

    def _flat_weight(self, x: Array, k0: Array, fwd: _Forward, inside: Array, zero: Array, one: Array) -> Array:
        """The in-bin weight ``w`` of numpy's value on a bin's line (``inside``), 0 elsewhere.

        ``(x - k0) / gap`` is NaN only in a bin from a ``-inf`` knot (``inf / inf``,
        or ``x - k0 = NaN`` at ``x = -inf``).  numpy's value there is ``f1`` (its
        retry from the upper knot), and ``f0`` at ``x == k0 == -inf``: the
        weight is 1, and 0 at ``x == k0``, the mirror image of a bin to a
        ``+inf`` knot (``w = (x - k0) / inf = 0``, value ``f0``).  ``zero``,
        ``one``: 0-d constants of ``x``'s dtype.
        """
        xp = self.xp
        w = fwd.d0 / fwd.safe_gap
        nan = xp.isnan(w)
        return xp.where(inside & ~(nan & (x == k0)), xp.where(nan, one, w), zero)

    def _weights(self, w: Array, inside: Array, fwd: _Forward, zero: Array, one: Array) -> tuple[Array, Array]:
        """``(a0, a1)``, the value weights, from the in-bin weight ``w`` (0 off the bins' lines).

        ``inside``: the entries on a bin's line (extrapolated ones included),
        which no end mask holds.
        """
        xp = self.xp
        # Beyond the knots the output copies an end value (weight 1) or a
        # bound (no weight on `values`).  Off the lines w is 0, so `w` and
        # `1 - w` there are already the weights 0 and 1.
        ends = fwd.ends
        a1 = xp.where(ends.last, one, w)
        a0 = xp.where(inside if ends.first is None else inside | ends.first, 1.0 - w, zero)
        return a0, a1

    def _bound_weights(self, ends: _Ends, x: Array, want_bl: bool, want_br: bool) -> tuple[Array | None, Array | None]:
        """``(bl, br)``: 1 where the output copies the ``"value"`` bound, else 0 (None where not
        wanted: no such bound, or no gradient of it asked for, see :meth:`computed_partials`)."""
        return tuple(  # type: ignore[return-value]
            None if mask is None or not w else self.xp.astype(mask, x.dtype)
            for mask, w in zip((ends.left, ends.right), (want_bl, want_br), strict=True)
        )


def generic_linearize(
    rule: InterpRule, x: Array, knots: Array, values: Array, left: Array | None = None, right: Array | None = None
) -> Array:
    """Evaluate ``rule`` with its first derivatives attached via ``stop_gradient``.

    Returns ``value + (s - stop_gradient(s))`` where ``value`` is the
    numpy-exact forward value and ``s = Partials.tangent(x, knots, values)``
    for the stop-gradiented partials of the rule: linear in
    the inputs with the rule's partials as coefficients.  Every autodiff mode
    sees exactly the partials of the gradient rule.  Second derivatives on
    this path are zero (the partials are constants to autodiff); JAX and
    PyTorch attach the exact ones natively.

    Non-finite inputs are replaced by 0 inside ``s`` (their partials are 0 or
    they copy a constant), and an entry where ``s`` is still not finite adds
    nothing, so the forward value is always ``value`` (``inf - inf`` would be
    NaN).
    """
    xp = rule.xp
    sg = rule.hooks.stop_gradient
    lo, hi = (None if b is None else sg(b) for b in (left, right))
    out, p = rule.value_and_partials(sg(x), sg(knots), sg(values), lo=lo, hi=hi)
    fin = [None if a is None else _finite_or_zero(xp, a) for a in (x, knots, values, left, right)]
    s = p.tangent(*fin)
    delta = s - sg(s)
    return out + xp.where(xp.isfinite(delta), delta, xp.zeros_like(delta))


def _finite(a: Array) -> Array:
    """``isfinite(a)`` from two comparisons: no float temporary (PyTorch's isfinite makes one)."""
    return (a > -math.inf) & (a < math.inf)


def _finite_or_zero(xp: ModuleType, a: Array) -> Array:
    return xp.where(xp.isfinite(a), a, xp.zeros_like(a))


def _const(xp: ModuleType, value: float, like: Array) -> Array:
    """A 0-d array of ``value`` in ``like``'s dtype and device."""
    return xp.full((), value, dtype=like.dtype, device=array_api_compat.device(like))
