"""Kernel-density CDF of a point set per column: node tables, forward, exact inverse.

For each column ``d`` of ``points`` (N, D) with weights ``w`` summing to 1
and bandwidth ``h_d``::

    F(q) = sum_i w_i Phi((q - p_i) / h)
    u(q) = clip((F(q) - F(lo)) / (F(hi) - F(lo)), 0, 1)

``F`` is never summed per query (that is O(K x N)).  Instead:

1. A uniform node grid of spacing ``delta`` has node ``k`` at ``lo + (k -
   1) delta``: node 1 is the column's smallest point exactly.  ``delta`` is
   ``h / C`` (``C = 8`` nodes per bandwidth), or ``span / 5`` where that is
   finer (``h > 1.6 span``), rounded up to ``p - 12`` significant bits
   (``p``: the dtype's precision).  A point ``x`` lies in the cell ``c = 1 +
   floor((x - lo) / delta)``, and its offset in that cell is computed with
   one rounding of a number below about 1 (:func:`_locate`): ``x - lo`` is
   split exactly into a float and its rounding error, and ``(c - 1) delta``
   is the sum of two exact products (the cell index split into 12-bit
   halves times a spacing of ``p - 12`` bits).  The offset is then good to
   about ``eps delta`` whatever ``span / h``.  (Offsets rounded relative to
   the grid origin put an error of ``eps span / h`` into ``u``.)
2. ``F - 1/2`` is tabulated rather than ``F``.  Each point adds ``Phi(z) -
   1/2 = erf(z / sqrt 2) / 2`` to the nodes within ``CORE = 8`` nodes of its
   cell, ``Phi(z) - 1`` (``Phi(z)``) to the rest of a fixed stencil of ``S =
   2 * 9 * C = 144`` nodes above (below) it, and ``+1/2`` (``-1/2``) to every
   node beyond its core above (below) it; beyond the stencil ``Phi`` is
   within ``Phi(-9) = 1.1e-19`` of 1 (0), a tail that is dropped.  The
   ``+-1/2`` parts are a prefix and a suffix sum of the weights binned by
   cell (exact whatever the rounding of the cell, because they are defined
   by the index).  Where a bandwidth is several spans wide the grid has at
   most ``CORE + 1`` nodes, all in every point's core: the ``+-1/2`` parts
   vanish and the tables keep their relative precision, so ``F(hi) -
   F(lo)``, about ``0.4 span / h``, is not lost to the rounding of ``F ~
   1/2``.  One scatter-add (the backend hook) per table builds ``F - 1/2``,
   ``delta F'``, ``delta^2 F''`` and ``delta^3 F'''`` at every node.  Cost
   O(N S) in time and memory, plus O(G log G) for the grid of ``G ~ C span
   / h`` nodes.  When the grid is small next to N,
   :mod:`knotsafe._lib.kde.nodes` sums the same stencils as a convolution of
   per-cell moments instead (O(N + G S)).
3. A query is the two-point Hermite interpolant of degree 7 (values and
   three derivatives at the bracketing nodes): 8 gathers of the monomial
   coefficients (tabulated per cell up to :data:`COEF_TABLE_GRID` nodes,
   computed per query from the 4 tables at the cell's two nodes beyond) and a
   Horner sum.

Error bound.  The degree-7 Hermite remainder is ``F^(8)(xi) (x - a)^4 (x -
b)^4 / 8!`` ``<= delta^8 max|F^(8)| / (8! 4^4)``, and ``|F^(8)| <= max_z
|He_7(z) phi(z)| / h^8 = 14.18 / h^8`` (weights sum to 1), so with ``delta
<= h / C`` (to a relative ``3 * 2^-39`` in float64) each interpolated ``F``
is within ``E = 14.18 / (40320 * 256 * C^8) = 8.2e-14`` of the exact sum,
plus the dropped tails (``< 2e-19``) and rounding.  ``lo`` is a node, where
the interpolant is exact, so ``|u - u_exact| <= 2 E / (F(hi) - F(lo))`` (to
first order), and ``F(hi) - F(lo) >= Phi(span / h) - 1/2``: at least
``0.341`` for ``h <= span`` and ``0.234`` for ``h <= 1.6 span``; beyond,
the spacing ``span / 5`` shrinks ``E`` by ``(8 span / (5 h))^8``, faster
than the denominator shrinks.  Hence ``|u - u_exact| <= 7.0e-13`` plus
rounding in float64 for every accepted ``h``: from ``span / 2,097,151``
(:data:`MAX_GRID`) up to ``span / min_span_ratio`` (:func:`min_span_ratio`,
where ``F(hi) - F(lo)`` would leave the normal floating-point range).

Every step is array-API arithmetic plus the ``take``/``scatter_add``/``erf``
hooks, with the integer cell indices computed from ``stop_gradient`` copies
(NaN offsets, from unchecked data under tracing, give cell 1 and never an
out-of-range index), so autodiff (JAX, PyTorch) differentiates the
interpolant with respect to the queries, points, weights and bandwidth; the
derivatives of the interpolant approximate those of ``F`` to the same
relative order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import array_api_compat as compat

from knotsafe._lib.backends.hooks import BackendHooks
from knotsafe._lib.kde import nodes as _kernel_nodes

Array = Any

#: Nodes per bandwidth (grid spacing ``h / C``).
C = 8
#: Stencil radius in bandwidths: ``Phi(-TAIL) = 1.1e-19``.
TAIL = 9
_M = TAIL * C
#: Stencil size: nodes ``c - M + 1 .. c + M`` around a point in cell ``c``.
STENCIL = 2 * _M
#: Largest grid (nodes per column) built, ``C * span / h`` (span / h up to about 2e6).
MAX_GRID = 2**24
#: Smallest grid.  Where ``h > 1.6 span`` the spacing is ``span / (MIN_GRID - 4)``
#: (finer than ``h / C``); ``MIN_GRID <= CORE + 1`` keeps every node inside the
#: core of every point's stencil then (:data:`knotsafe._lib.kde.nodes.CORE`), so
#: no tail is dropped although the stencil is shorter than ``9 h``, and the
#: tables hold ``F - 1/2`` to relative precision.
MIN_GRID = _kernel_nodes.CORE + 1
_SPAN_CELLS = MIN_GRID - 4
#: Largest grid whose Hermite coefficients are tabulated per cell (8 tables of
#: ``D * (G + 1)`` entries, 8 MiB per float64 column at most): a query then
#: gathers its 8 coefficients instead of computing them from the 8 node values
#: (about 40 elementwise operations per query).  Larger grids (up to ``2^24``
#: nodes per column) compute them per query, so the tables stay at 4 per node.
COEF_TABLE_GRID = 2**16
#: Cell indices (below ``MAX_GRID = 2^24``) are split into two 12-bit halves.
_SPLIT = 2**12
_SPLIT_BITS = 12
#: Newton iterations of the exact inverse (quadratic convergence from the
#: secant start inside one cell; 3 to 4 reach rounding, the rest are margin).
NEWTON_STEPS = 8
#: Differentiable Newton steps after the root: 2 make the first, second and
#: third derivatives of the inverse those of the implicit function.
DIFF_NEWTON_STEPS = 2
#: Proven bound on ``|F_interp - F|`` (weights summing to 1; float64, whose
#: spacing exceeds ``h / C`` by a relative ``3 * 2^-39`` at most): see the module docstring.
F_ERROR_BOUND = 14.18 / (40320 * 256 * C**8)

# Inverse of the s = 1 conditions on the s^4..s^7 coefficients (exact rationals).
_HINV = (
    (35.0, -15.0, 2.5, -1.0 / 6.0),
    (-84.0, 39.0, -7.0, 0.5),
    (70.0, -34.0, 6.5, -0.5),
    (-20.0, 10.0, -2.0, 1.0 / 6.0),
)


def grid_size(span_over_h: float, name: str = "bandwidth") -> int:
    """Nodes per column for ``max(span / h) = span_over_h`` (static under tracing).

    ``name`` is the argument blamed when the grid would be too large: the
    kernel width (``kernel_std`` of create_transforms, the mesh's
    ``bandwidth``), or ``span_ratio`` when that sized the grid.
    """
    if not math.isfinite(span_over_h) or span_over_h < 0:
        raise ValueError(f"`{name}`: span / h must be finite and non-negative, got {span_over_h}")
    limit = MAX_GRID // C - 1
    if C * span_over_h + 4 > MAX_GRID:
        if name != "span_ratio":
            raise ValueError(
                f"`{name}` is too small for the data range: span / h = {span_over_h:.6g} needs a grid "
                f"of more than {MAX_GRID} nodes per column; use an h of at least span / {limit}"
            )
        raise ValueError(
            f"`{name}`={span_over_h:.6g} needs a grid of more than {MAX_GRID} nodes per column: `{name}` "
            f"(span / h) must be at most {limit}"
        )
    return max(math.ceil(C * span_over_h) + 4, MIN_GRID)


def precision_bits(xp: ModuleType, dtype: Any) -> int:
    """Significant bits of a floating dtype (24 for float32, 53 for float64)."""
    return round(-math.log2(float(xp.finfo(dtype).eps))) + 1


def min_span_ratio(xp: ModuleType, dtype: Any) -> float:
    """Smallest accepted ``span / h``: ``F(hi) - F(lo) ~ 0.4 span / h`` stays a normal float with full precision."""
    info = xp.finfo(dtype)
    return float(info.smallest_normal) / float(info.eps)


def _unit(xp: ModuleType, spread: Array) -> Array:
    """A power of two within a factor ``2^4`` of ``spread`` (``2^16`` at the ends of the range; 1 for NaN, 0, inf).

    Exact: ``2^(8 m)`` with ``m = round(log2(spread) / 8)``, formed as a
    product of power-of-two constants, one per binary digit of ``|m|``
    (``xp.pow(2, e)`` is not exact on every backend; XLA's is not).  Each
    factor depends on ``m`` alone, so the expression stays linear in size for
    compilers that inline it (PyTorch's inductor).  Offsets divided by it
    stay exact, and the products of :func:`_locate` far from overflow and
    underflow.
    """
    emax = round(math.log2(float(xp.finfo(spread.dtype).max)))
    digits = max(1, math.ceil(math.log2(emax / 8)))  # |m| < emax / 8
    usable = xp.isfinite(spread) & (spread > 0)
    m = xp.round(xp.log2(xp.where(usable, spread, xp.ones_like(spread))) / 8.0)
    m = xp.clip(m, -(emax // 8 - 2.0), emax // 8 - 2.0)  # 2^(8 |m|) stays normal
    negative = m < 0
    rest = xp.abs(m)
    unit = xp.ones_like(spread)
    one = xp.ones_like(spread)
    for i in range(digits):
        top = xp.floor(rest / 2.0)
        factor = xp.where(negative, xp.full_like(spread, 2.0 ** (-8 * 2**i)), xp.full_like(spread, 2.0 ** (8 * 2**i)))
        unit = unit * xp.where(rest - 2.0 * top > 0.5, factor, one)
        rest = top
    return unit


def _round_up_to_bits(xp: ModuleType, x: Array, bits: int) -> Array:
    """``x`` (positive, near 1) rounded up to at most ``bits`` significant bits.

    Veltkamp's split keeps the leading ``bits - 1`` bits of ``x`` inflated by
    ``2^-(bits - 3)``: even if the compiler fuses ``t - x`` into a
    multiply-add (as GPU compilers do), the result keeps at most ``bits``
    bits and is within ``2^-(bits - 2)`` of its input, so it is at least
    ``x`` and at most ``x (1 + 3 * 2^-(bits - 2))``.
    """
    p = precision_bits(xp, x.dtype)
    y = x * (1.0 + 2.0 ** -(bits - 3))
    t = y * float(2 ** (p - bits + 1) + 1)
    return t - (t - y)


@dataclass(frozen=True)
class Frame:
    """The node grid of every column (constants to autodiff), see :func:`frame`.

    Node ``k`` of column ``d`` is at ``lo + (k - 1) * delta``.  Offsets are
    computed in units of ``unit``, a power of two near the span, so the
    products of :func:`_locate` stay in the normal range: ``ds = delta /
    unit`` has ``p - 12`` significant bits.
    """

    grid: int
    lo: Array
    unit: Array
    ds: Array
    delta: Array


def frame(xp: ModuleType, lo: Array, hi: Array, h: Array, grid: int) -> Frame:
    """The grid of columns with ranges ``[lo, hi]`` and bandwidths ``h`` (all without gradient)."""
    spread = hi - lo
    unit = _unit(xp, spread)
    raw = xp.minimum((h / unit) / C, (spread / unit) / _SPAN_CELLS)
    # Rounded up, so span / delta <= C span / h: the grid sized from span / h covers the span.
    ds = _round_up_to_bits(xp, raw, precision_bits(xp, lo.dtype) - _SPLIT_BITS)
    return Frame(grid, lo, unit, ds, ds * unit)


def covers(xp: ModuleType, h: Array, spread: Array, fr: Frame) -> Array:
    """Per column: finite positive ``h`` and spread within range, and the grid covers ``[lo, hi]``."""
    ratio = spread / h
    good = xp.isfinite(h) & (h > 0) & xp.isfinite(spread) & (spread > 0)
    good = good & (ratio >= min_span_ratio(xp, h.dtype))
    return good & ((spread / fr.unit) / fr.ds <= float(fr.grid - 4))


@dataclass(frozen=True)
class KernelTables:
    """Node tables of one kernel CDF (all columns), built by :func:`build`.

    Attributes
    ----------
    tables : list of 4 arrays, shape (D * (G + 1),)
        ``F - 1/2``, ``delta F'``, ``delta^2 F''`` and ``delta^3 F'''`` per
        column and node, flattened (slot ``G`` of each row is the scatter's
        dump slot, never read).
    frame : Frame
        The node grid.
    lo, hi : arrays, shape (D,)
        The column ranges.
    f_lo, f_hi : arrays, shape (D,)
        Interpolated ``F(lo) - 1/2`` and ``F(hi) - 1/2``.
    ok : array of bool, shape (D,)
        Whether the bandwidth and spread are in range and the grid covers
        ``[lo, hi]`` (always true for concrete inputs, which are checked
        instead; under tracing a false column gives NaN).
    coef : list of 8 arrays, shape (D * (G + 1) - 1,), or None
        The Hermite coefficients of the cell starting at each flattened
        node, for grids of at most :data:`COEF_TABLE_GRID` nodes; None
        (computed per query) for larger ones.
    """

    xp: ModuleType
    hooks: BackendHooks
    grid: int
    dim: int
    tables: list[Array]
    frame: Frame
    lo: Array
    hi: Array
    f_lo: Array
    f_hi: Array
    ok: Array
    coef: list[Array] | None = None


#: The arrays of a :class:`KernelTables`, in the order of :func:`arrays_of`.
TableArrays = tuple[Any, ...]


def arrays_of(tabs: KernelTables) -> TableArrays:
    """The arrays of ``tabs``: what a compiled program (the ``compiled`` hook) returns and takes."""
    fr = tabs.frame
    return (tabs.tables, fr.lo, fr.unit, fr.ds, fr.delta, tabs.lo, tabs.hi, tabs.f_lo, tabs.f_hi, tabs.ok, tabs.coef)


def tables_of(xp: ModuleType, hooks: BackendHooks, grid: int, arrays: TableArrays) -> KernelTables:
    """The :class:`KernelTables` of ``grid`` nodes whose arrays are ``arrays`` (the inverse of :func:`arrays_of`)."""
    tables, fr_lo, unit, ds, delta, lo, hi, f_lo, f_hi, ok, coef = arrays
    fr = Frame(grid, fr_lo, unit, ds, delta)
    coef = None if coef is None else list(coef)
    return KernelTables(xp, hooks, grid, lo.shape[0], list(tables), fr, lo, hi, f_lo, f_hi, ok, coef)


def _int_dtype(xp: ModuleType, like: Array) -> Any:
    return xp.__array_namespace_info__().default_dtypes(device=compat.device(like))["integral"]


def normalised_weights(xp: ModuleType, hooks: BackendHooks, weights: Array | None, n: int, like: Array) -> Array:
    """Weights summing to 1: divided by the largest first, so a sum of huge finite weights cannot overflow."""
    if weights is None:
        return xp.full((n,), 1.0 / n, dtype=like.dtype, device=compat.device(like))
    w = weights / hooks.stop_gradient(xp.max(weights))
    return w / xp.sum(w)


def build(
    xp: ModuleType, hooks: BackendHooks, points: Array, weights: Array | None, h: Array, grid: int
) -> KernelTables:
    """Node tables of the kernel CDF of ``points`` (N, D) with bandwidths ``h`` (D,).

    ``weights`` (N,) are checked non-negative, not all zero (normalised
    here); ``grid`` is the static node count from :func:`grid_size`.
    """
    sg = hooks.stop_gradient
    n, dim = points.shape
    dev = compat.device(points)
    itype = _int_dtype(xp, points)
    w = normalised_weights(xp, hooks, weights, n, points)
    lo = xp.min(points, axis=0)
    hi = xp.max(points, axis=0)
    # The grid is a constant to autodiff (stop_gradient): node positions do
    # not move with h or lo, so the derivative of the interpolant with
    # respect to any parameter is the interpolant of the derivative of F,
    # accurate to the same relative order.  (A grid that stretched with h
    # would add (distance from lo) / h times the interpolation error.)
    fr = frame(xp, sg(lo), sg(hi), sg(h), grid)
    cell, frac = _locate(xp, hooks, fr, points)
    b = xp.astype(cell, itype)
    rho = fr.delta / h  # differentiable in h

    j = xp.arange(-_M + 1, _M + 1, dtype=itype, device=dev)  # (S,)
    nodes = _kernel_nodes.node_tables(xp, hooks, w, b, frac, rho, j, grid)

    # Far parts: +1/2 for the weight of points whose stencil core ends below
    # node k (cells c < k - CORE), -1/2 for those whose core starts above it
    # (cells c > k + CORE): a prefix and a suffix sum of the binned weights.
    g1 = grid + 1
    hidx = xp.reshape(b + xp.arange(dim, dtype=itype, device=dev)[None, :] * g1, (-1,))
    hist = hooks.scatter_add(xp, dim * g1, hidx, xp.reshape(xp.broadcast_to(w[:, None], (n, dim)), (-1,)))
    hist = xp.reshape(hist, (dim, g1))
    scans = _prefix_sum(xp, hooks, xp.concat([hist, xp.flip(hist, axis=1)], axis=0))
    core = _kernel_nodes.CORE
    below = _shift(xp, scans[:dim, :], core + 1)  # sum of weights in cells <= k - CORE - 1
    above = _shift(xp, xp.flip(scans[dim:, :], axis=1), -(core + 1))  # in cells >= k + CORE + 1
    f_nodes = nodes[0] + 0.5 * (below - above)
    tables = [xp.reshape(t, (-1,)) for t in (f_nodes, *nodes[1:])]

    ok = covers(xp, sg(h), sg(hi - lo), fr)
    # Cell k of a row spans flattened nodes k, k + 1 (the last one of a row, into the dump
    # slot, is never gathered: cells stop at G - 2).
    coef = _hermite([t[:-1] for t in tables], [t[1:] for t in tables]) if grid <= COEF_TABLE_GRID else None
    tabs = KernelTables(xp, hooks, grid, dim, tables, fr, lo, hi, lo, hi, ok, coef)
    ends = _poly(*_coefficients_at(tabs, xp.stack([lo, hi])))
    return KernelTables(xp, hooks, grid, dim, tables, fr, lo, hi, ends[0, :], ends[1, :], ok, coef)


def _shift(xp: ModuleType, a: Array, by: int) -> Array:
    """``out[:, k] = a[:, k - by]`` along axis 1, zero where ``k - by`` is out of range."""
    rows, n = a.shape
    pad = xp.zeros((rows, min(abs(by), n)), dtype=a.dtype, device=compat.device(a))
    if abs(by) >= n:
        return pad
    if by >= 0:
        return xp.concat([pad, a[:, : n - by]], axis=1)
    return xp.concat([a[:, -by:], pad], axis=1)


def _prefix_sum(xp: ModuleType, hooks: BackendHooks, a: Array) -> Array:
    """Inclusive cumulative sum along axis 1 by a log-depth (Hillis-Steele) scan.

    Each output is a sum tree of depth ``ceil(log2(G))``, so its rounding
    error is at most that many units of the partial sum, where a sequential
    ``cumulative_sum`` (NumPy's) accumulates up to ``G`` of them: in float32
    with ``G = 8,000`` nodes the sequential sum alone moved ``u`` by 14 eps.
    O(G log G) additions of standard operations (differentiable).
    ``hooks.consolidate`` after each level: on Dask a shifted sum unifies
    two chunkings, and the chunk count would double at every level.
    """
    n = a.shape[1]
    k = 1
    while k < n:
        pad = xp.zeros((a.shape[0], k), dtype=a.dtype, device=compat.device(a))
        a = hooks.consolidate(a + xp.concat([pad, a[:, : n - k]], axis=1))
        k *= 2
    return a


def _locate(xp: ModuleType, hooks: BackendHooks, fr: Frame, x: Array) -> tuple[Array, Array]:
    """Cell (integer-valued float in ``[1, G - 2]``) and position in it of ``x`` (K, D), ``x >= lo``.

    The position ``(x - lo) / delta - (c - 1)`` is computed with one
    rounding of a number below about 1 (error-free transformations, all in
    standard operations and without multiplications that could be fused):
    ``x - lo = d + e`` exactly (Knuth's two-sum), ``(c - 1) delta = A + B``
    with ``A`` and ``B`` exact products, and ``d - A`` and ``(d - A) - B``
    exact by Sterbenz's lemma.  Its value carries no gradient; the
    derivative ``1 / delta`` with respect to ``x`` is added separately.
    NaN positions (unchecked data under tracing) get cell 1 and a NaN
    position, never an out-of-range index.
    """
    sg = hooks.stop_gradient
    a = sg(x)
    d, e = _two_sum(a, -fr.lo)
    d = d / fr.unit
    e = e / fr.unit
    q = d / fr.ds
    q = xp.where(xp.isnan(q), xp.zeros_like(q), q)
    b = xp.clip(xp.floor(q), 0.0, float(fr.grid - 3))
    b_hi = xp.floor(b / _SPLIT)
    b_lo = b - b_hi * _SPLIT
    r = ((d - b_hi * (fr.ds * _SPLIT)) - b_lo * fr.ds) + e
    frac = r / fr.ds
    # The quotient d / ds is rounded (by up to one cell in float32 at 2^24 nodes): move to the
    # cell the exact offset falls in, so the Hermite polynomial is never extrapolated (its
    # rounding grows like |s|^7 outside [0, 1]).
    shift = xp.floor(frac)
    shift = xp.where(xp.isnan(shift), xp.zeros_like(shift), shift)  # NaN must not reach an index
    moved = xp.clip(b + shift, 0.0, float(fr.grid - 3))
    frac = frac - (moved - b)
    if a is x:  # stop_gradient is the identity: no autodiff, and x - a is 0
        return moved + 1.0, frac
    return moved + 1.0, frac + (x - a) / fr.delta


def _two_sum(a: Array, b: Array) -> tuple[Array, Array]:
    """``(s, e)`` with ``s = fl(a + b)`` and ``a + b = s + e`` exactly (Knuth; no branch, no product)."""
    s = a + b
    back = s - a
    return s, (a - (s - back)) + (b - back)


def _position(xp: ModuleType, fr: Frame, cell: Array, s: Array) -> Array:
    """``lo + (cell - 1 + s) delta`` rounded once (no gradient): the inverse of :func:`_locate`.

    ``(cell - 1) delta`` is two exact products, and the sum is compensated,
    so the result is within about one rounding of the point (rounding
    ``cell - 1 + s`` first would put an error of ``eps span`` into it).
    """
    c = cell - 1.0
    c_hi = xp.floor(c / _SPLIT)
    c_lo = c - c_hi * _SPLIT
    s1, e1 = _two_sum(fr.lo, c_hi * (fr.ds * _SPLIT) * fr.unit)
    s2, e2 = _two_sum(s1, c_lo * fr.ds * fr.unit)
    s3, e3 = _two_sum(s2, s * fr.delta)
    return s3 + ((e1 + e2) + e3)


def _cells(tabs: KernelTables, x: Array) -> tuple[Array, Array]:
    """Cell index (int) and position ``s`` in ``[0, 1]`` of ``x`` (K, D) in ``[lo, hi]``."""
    xp = tabs.xp
    cell, s = _locate(xp, tabs.hooks, tabs.frame, x)
    return xp.astype(cell, _int_dtype(xp, x)), s


def _hermite(left: list[Array], right: list[Array]) -> list[Array]:
    """Monomial coefficients in ``s`` of the degree-7 Hermite interpolant on a cell.

    ``left``/``right`` hold the four node tables (``F`` and its scaled first
    three derivatives) at the cell's two nodes; the ``s^4 .. s^7``
    coefficients solve the ``s = 1`` conditions with the exact inverse
    matrix ``_HINV``.
    """
    f0, g10, g20, g30 = left
    f1, g11, g21, g31 = right
    c2 = 0.5 * g20
    c3 = g30 / 6.0
    res = (f1 - (f0 + g10 + c2 + c3), g11 - (g10 + g20 + 0.5 * g30), g21 - (g20 + g30), g31 - g30)
    high = [row[0] * res[0] + row[1] * res[1] + row[2] * res[2] + row[3] * res[3] for row in _HINV]
    return [f0, g10, c2, c3, *high]


def _coefficients(tabs: KernelTables, cell: Array) -> list[Array]:
    """The 8 coefficients of the cells ``cell`` (K, D): gathered from the coefficient tables, or
    from the 4 node tables at their two nodes where the grid is too large to tabulate them
    (:data:`COEF_TABLE_GRID`): the same 8 gathers, and a third of the memory.
    """
    xp = tabs.xp
    kq, dim = cell.shape
    g1 = tabs.grid + 1
    base = xp.reshape(cell + xp.arange(dim, dtype=cell.dtype, device=compat.device(cell))[None, :] * g1, (-1,))
    take = tabs.hooks.take

    def at(tables: list[Array], index: Array) -> list[Array]:
        return [xp.reshape(take(xp, t, index), (kq, dim)) for t in tables]

    if tabs.coef is not None:
        return at(tabs.coef, base)
    return _hermite(at(tabs.tables, base), at(tabs.tables, base + 1))


def _coefficients_at(tabs: KernelTables, x: Array) -> tuple[list[Array], Array]:
    cell, s = _cells(tabs, x)
    return _coefficients(tabs, cell), s


def _poly(coef: list[Array], s: Array) -> Array:
    out = coef[7]
    for c in reversed(coef[:7]):
        out = out * s + c
    return out


def _poly_ds(coef: list[Array], s: Array) -> Array:
    out = 7.0 * coef[7]
    for i in range(6, 0, -1):
        out = out * s + i * coef[i]
    return out


def evaluate(tabs: KernelTables, x: Array) -> tuple[Array, Array]:
    """Interpolated ``F(x) - 1/2`` and ``F'(x)`` for ``x`` (K, D) in ``[lo, hi]``."""
    cell, s = _cells(tabs, x)
    coef = _coefficients(tabs, cell)
    return _poly(coef, s), _poly_ds(coef, s) / tabs.frame.delta


def _clamped(xp: ModuleType, x: Array, lo: Array, hi: Array) -> Array:
    """``x`` clamped to ``[lo, hi]`` with NaN replaced by ``lo`` (a safe evaluation point)."""
    inside = xp.where(x < lo, lo, xp.where(x > hi, hi, x))
    return xp.where(xp.isnan(x), xp.broadcast_to(lo, x.shape), inside)


def forward(tabs: KernelTables, q: Array) -> Array:
    """``u(q)`` for queries ``q`` (K, D): 0 below ``lo``, 1 from ``hi`` on, NaN for NaN.

    The clamps are ``where``s, not ``clip``: at a tie ``clip``'s gradient is
    split in half by JAX and passed whole by PyTorch.  Every backend returns
    the right-hand derivative: at ``q = lo`` that of the interior formula,
    at ``q = hi`` that of the constant 1 above (zero).
    """
    xp = tabs.xp
    lo, hi = tabs.lo, tabs.hi
    f = _poly(*_coefficients_at(tabs, _clamped(xp, q, lo, hi)))
    r = (f - tabs.f_lo) / (tabs.f_hi - tabs.f_lo)
    zero, one = xp.zeros_like(r), xp.ones_like(r)
    u = xp.where(r < 0, zero, xp.where(r > 1, one, r))
    u = xp.where(q < lo, zero, xp.where(q >= hi, one, u))
    bad = xp.isnan(q) | ~xp.broadcast_to(tabs.ok, q.shape)
    return xp.where(bad, xp.full_like(u, math.nan), u)


def inverse(tabs: KernelTables, v: Array) -> Array:
    """Exact inverse of :func:`forward` for ``v`` (K, D), clamped to ``[0, 1]``.

    Newton's method on the interpolant inside the node cell found by a
    table search, all under ``stop_gradient``, then two differentiable
    Newton steps from the root ``x*``: ``x <- x - (F(x) - F_t) / F'(x)``
    with ``F_t = F(lo) + v (F(hi) - F(lo))``.  Its value is ``x*`` to
    rounding.  One step from a constant root already gives the implicit
    function's first derivatives (``dx/dv = (F(hi) - F(lo)) / F'(x)``,
    ``dx/dtheta = -(dF/dtheta) / F'(x)``) but not its second ones; the
    second step squares the parameter-dependent error again (O(d theta^4)),
    so second and third derivatives (``jax.hessian``, double backward,
    ``torch.func.hessian``) are the implicit function's too.  Where ``F'``
    vanishes to rounding (gaps many bandwidths wide) the inverse is
    ill-conditioned and the derivative is cut to 0.  Right-hand derivatives
    at the ends, as :func:`forward`: ``v >= 1`` is the constant ``hi``.
    """
    xp = tabs.xp
    hooks = tabs.hooks
    sg = hooks.stop_gradient
    zero, one = xp.zeros_like(v), xp.ones_like(v)
    vc = xp.where(xp.isnan(v), zero, xp.where(v < 0, zero, xp.where(v >= 1, one, v)))
    target = tabs.f_lo + vc * (tabs.f_hi - tabs.f_lo)
    t = sg(target)
    g1 = tabs.grid + 1
    table = sg(tabs.tables[0])
    kq = v.shape[0]
    # Contiguous per column: searchsorted copies a strided column.
    by_column = xp.reshape(xp.permute_dims(t, (1, 0)), (-1,))
    cells = []
    for d in range(tabs.dim):
        row = table[d * g1 : d * g1 + tabs.grid]
        cells.append(hooks.searchsorted(xp, row, by_column[d * kq : (d + 1) * kq]) - 1)
    cell = xp.clip(xp.stack(cells, axis=1), 0, tabs.grid - 2)
    coef = [sg(c) for c in _coefficients(tabs, cell)]
    span = coef[0] - _poly(coef, one)
    flat = hooks.safe_slope(xp, coef[0] - t, span, span < 0)
    s = xp.clip(flat, 0.0, 1.0)
    for _ in range(NEWTON_STEPS):
        slope = _poly_ds(coef, s)
        step = hooks.safe_slope(xp, _poly(coef, s) - t, slope, slope > 0)
        s = xp.clip(s - step, 0.0, 1.0)
    root = sg(_clamped(xp, _position(xp, tabs.frame, xp.astype(cell, v.dtype), s), sg(tabs.lo), sg(tabs.hi)))
    # Differentiable Newton steps from the constant root.  Each step squares
    # the error as a function of the parameters: x* - root is O(d theta), after
    # one step O(d theta^2) (first derivatives exact), after two O(d theta^4)
    # (derivatives up to the third exact), in every autodiff mode and with no
    # custom rule.  They carry the derivatives only: the value is the root,
    # already within about one rounding of the interpolant's root.  (Where
    # neighbouring floats are a bandwidth apart, float32 far from the origin,
    # a Newton step from the rounded root would leave the kernel's bump.)
    x = root
    for _ in range(DIFF_NEWTON_STEPS):
        f, fprime = evaluate(tabs, x)
        x = x - hooks.safe_slope(xp, f - target, fprime, sg(fprime) > 0)
    x = root + (x - sg(x))
    # Clamping keeps x in [lo, hi] exactly (v = 0, 1).
    x = _clamped(xp, x, tabs.lo, tabs.hi)
    bad = xp.isnan(v) | ~xp.broadcast_to(tabs.ok, v.shape)
    return xp.where(bad, xp.full_like(x, math.nan), x)
