"""Kernel-density CDF of a point set per column: node tables, forward, exact inverse.

For each column ``d`` of ``points`` (N, D) with weights ``w`` summing to 1
and bandwidth ``h_d``::

    F(q) = sum_i w_i Phi((q - p_i) / h)
    u(q) = clip((F(q) - F(lo)) / (F(hi) - F(lo)), 0, 1)

``F`` is never summed per query (that is O(K x N)).  Instead:

1. A uniform node grid of spacing ``delta = h / C`` (``C = 8`` nodes per
   bandwidth) starts one node below ``lo``.  Each point ``p`` falls in the
   cell ``b = floor((p - x0) / delta)``.
2. ``Phi(z) = [node index > b] + R(z)``: the step part at node ``k`` is the
   cumulative sum of the weights binned by ``b`` (exact, whatever the
   rounding of ``b``, because it is defined by the index); the remainder
   ``R`` is below ``Phi(-9) = 1.1e-19`` more than ``9 h`` from the point, so
   each point adds ``R`` and the first three derivatives of ``Phi`` to a
   fixed stencil of ``S = 2 * 9 * C = 144`` nodes around it.  One
   scatter-add (the backend hook) builds the node tables of ``F``,
   ``delta F'``, ``delta^2 F''`` and ``delta^3 F'''``.  Cost O(N S) in time
   and memory, plus O(G) for the grid of ``G ~ C span / h`` nodes.  When
   the grid is small next to N, :mod:`knotsafe._lib.kde.nodes` sums the
   same stencils as a convolution of per-cell moments instead (O(N + G S)).
3. A query is the two-point Hermite interpolant of degree 7 (values and
   three derivatives at the bracketing nodes), whose monomial coefficients
   are tabulated per cell: 8 gathers and a Horner sum per query.

Error bound.  The degree-7 Hermite remainder is ``F^(8)(xi) (x - a)^4 (x -
b)^4 / 8!`` ``<= delta^8 max|F^(8)| / (8! 4^4)``, and ``|F^(8)| <= max_z
|He_7(z) phi(z)| / h^8 = 14.18 / h^8`` (weights sum to 1), so each
interpolated ``F`` is within ``14.18 / (40320 * 256 * C^8) = 8.2e-14`` of the
exact sum, plus the dropped tails (``< 2e-19``) and rounding.  ``u`` is a
ratio of differences of three such values, so ``|u - u_exact| <= 4 * 8.2e-14
/ (F(hi) - F(lo))``; for ``h <= span`` the denominator is at least
``Phi(1) - 1/2 = 0.341``, giving ``|u - u_exact| <= 9.6e-13`` in float64.
(Larger ``h`` shrinks the denominator like ``span / (h sqrt(2 pi))``.)

Every step is array-API arithmetic plus the ``take``/``scatter_add``/``erf``
hooks, with the integer cell indices computed from ``stop_gradient`` copies,
so autodiff (JAX, PyTorch) differentiates the interpolant with respect to the
queries, points, weights and bandwidth; the derivatives of the interpolant
approximate those of ``F`` to the same relative order.
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
#: Stencil size: nodes ``b - M + 1 .. b + M`` around a point in cell ``b``.
STENCIL = 2 * _M
#: Largest grid (nodes per column) built, ``C * span / h`` (span / h up to about 2e6).
MAX_GRID = 2**24
#: Newton iterations of the exact inverse (quadratic convergence from the
#: secant start inside one cell; 3 to 4 reach rounding, the rest are margin).
NEWTON_STEPS = 8
#: Differentiable Newton steps after the root: 2 make the first, second and
#: third derivatives of the inverse those of the implicit function.
DIFF_NEWTON_STEPS = 2
#: Proven bound on ``|F_interp - F|`` (weights summing to 1): see the module docstring.
F_ERROR_BOUND = 14.18 / (40320 * 256 * C**8)

# Inverse of the s = 1 conditions on the s^4..s^7 coefficients (exact rationals).
_HINV = (
    (35.0, -15.0, 2.5, -1.0 / 6.0),
    (-84.0, 39.0, -7.0, 0.5),
    (70.0, -34.0, 6.5, -0.5),
    (-20.0, 10.0, -2.0, 1.0 / 6.0),
)
_INV_SQRT2 = 0.7071067811865476
_INV_SQRT2PI = 0.3989422804014327


def grid_size(span_over_h: float) -> int:
    """Nodes per column for ``max(span / h) = span_over_h`` (static under tracing)."""
    if not math.isfinite(span_over_h) or span_over_h < 0:
        raise ValueError(f"span / bandwidth must be finite and non-negative, got {span_over_h}")
    g = math.ceil(C * span_over_h) + 4
    if g > MAX_GRID:
        raise ValueError(
            f"`bandwidth` is too small for the data range: span / bandwidth = {span_over_h:.6g} needs a grid "
            f"of {g} nodes per column (at most {MAX_GRID}); use a bandwidth of at least span / {MAX_GRID // C - 1}"
        )
    return g


@dataclass(frozen=True)
class KernelTables:
    """Node tables of one kernel CDF (all columns), built by :func:`build`.

    Attributes
    ----------
    table : array, shape (4 * D * (G + 1),)
        Flattened ``[F, delta F', delta^2 F'', delta^3 F''']`` per column and
        node (slot ``G`` of each row is the scatter's dump slot).
    coef : array, shape (8 * D * G,)
        Monomial coefficients (in ``s``) of the Hermite interpolant of each
        cell, computed once so a query costs 8 gathers and a Horner sum.
    x0, delta, lo, hi : arrays, shape (D,)
        Grid origin and spacing; the column ranges.
    f_lo, f_hi : arrays, shape (D,)
        Interpolated ``F(lo)`` and ``F(hi)``.
    ok : array of bool, shape (D,)
        Whether the grid covers ``[lo, hi]`` with a positive span (always
        true for concrete inputs, which are checked instead; under tracing a
        false column gives NaN).
    """

    xp: ModuleType
    hooks: BackendHooks
    grid: int
    dim: int
    table: Array
    coef: Array
    x0: Array
    delta: Array
    lo: Array
    hi: Array
    f_lo: Array
    f_hi: Array
    ok: Array


def _int_dtype(xp: ModuleType, like: Array) -> Any:
    return xp.__array_namespace_info__().default_dtypes(device=compat.device(like))["integral"]


def build(
    xp: ModuleType, hooks: BackendHooks, points: Array, weights: Array | None, h: Array, grid: int
) -> KernelTables:
    """Node tables of the kernel CDF of ``points`` (N, D) with bandwidths ``h`` (D,).

    ``weights`` (N,) are checked non-negative, not all zero (normalised
    here); ``grid`` is the static node count from :func:`grid_size`.
    """
    sg = hooks.stop_gradient
    n, dim = points.shape
    dtype = points.dtype
    dev = compat.device(points)
    itype = _int_dtype(xp, points)
    w = xp.full((n,), 1.0 / n, dtype=dtype, device=dev) if weights is None else weights / xp.sum(weights)
    lo = xp.min(points, axis=0)
    hi = xp.max(points, axis=0)
    # The grid is a constant to autodiff (stop_gradient): node positions do
    # not move with h or lo, so the derivative of the interpolant with
    # respect to any parameter is the interpolant of the derivative of F,
    # accurate to the same relative order.  (A grid that stretched with h
    # would add (distance from x0) / h times the interpolation error.)
    delta = sg(h) / C
    x0 = sg(lo) - delta
    pos = (points - x0) / delta  # (N, D)
    cell = xp.clip(xp.floor(sg(pos)), 0.0, float(grid - 2))
    frac = pos - cell
    b = xp.astype(cell, itype)

    j = xp.arange(-_M + 1, _M + 1, dtype=itype, device=dev)  # (S,)
    nodes = _kernel_nodes.node_tables(xp, hooks, w, b, frac, delta / h, j, grid)

    # Step part: sum of the weights of points in cells below each node.
    hidx = xp.reshape(b + 1 + xp.arange(dim, dtype=itype, device=dev)[None, :] * (grid + 1), (-1,))
    hist = hooks.scatter_add(xp, dim * (grid + 1), hidx, xp.reshape(xp.broadcast_to(w[:, None], (n, dim)), (-1,)))
    cum = _prefix_sum(xp, hooks, xp.reshape(hist, (dim, grid + 1)))
    table = xp.concat([xp.reshape(nodes[0] + cum, (-1,)), *(xp.reshape(t, (-1,)) for t in nodes[1:])])

    ok = (sg(hi - lo) / delta <= float(grid - 4)) & (hi > lo)
    f_nodes = nodes[0] + cum
    left = [f_nodes[:, :grid], *(t[:, :grid] for t in nodes[1:])]
    right = [f_nodes[:, 1:], *(t[:, 1:] for t in nodes[1:])]
    coef = xp.concat([xp.reshape(c, (-1,)) for c in _hermite(left, right)])
    tabs = KernelTables(xp, hooks, grid, dim, table, coef, x0, delta, lo, hi, lo, hi, ok)
    ends = _poly(*_coefficients_at(tabs, xp.stack([lo, hi])))
    return KernelTables(xp, hooks, grid, dim, table, coef, x0, delta, lo, hi, ends[0, :], ends[1, :], ok)


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


def _cells(tabs: KernelTables, x: Array) -> tuple[Array, Array]:
    """Cell index (int) and position ``s`` in ``[0, 1]`` of ``x`` (K, D) on the grid."""
    xp = tabs.xp
    t = (x - tabs.x0) / tabs.delta
    cell = xp.clip(xp.floor(tabs.hooks.stop_gradient(t)), 0.0, float(tabs.grid - 2))
    return xp.astype(cell, _int_dtype(xp, x)), t - cell


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
    """The 8 coefficients of the cells ``cell`` (K, D), gathered from the table."""
    xp = tabs.xp
    kq, dim = cell.shape
    g = tabs.grid
    base = xp.reshape(cell + xp.arange(dim, dtype=cell.dtype, device=compat.device(cell))[None, :] * g, (-1,))
    coef = xp.astype(tabs.coef, tabs.x0.dtype, copy=False)
    return [xp.reshape(tabs.hooks.take(xp, coef, base + q * dim * g), (kq, dim)) for q in range(8)]


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
    """Interpolated ``F(x)`` and ``F'(x)`` for ``x`` (K, D) inside the grid."""
    cell, s = _cells(tabs, x)
    coef = _coefficients(tabs, cell)
    return _poly(coef, s), _poly_ds(coef, s) / tabs.delta


def _clamped(xp: ModuleType, x: Array, lo: Array, hi: Array) -> Array:
    """``x`` clamped to ``[lo, hi]`` with NaN replaced by ``lo`` (a safe evaluation point)."""
    inside = xp.where(x < lo, lo, xp.where(x > hi, hi, x))
    return xp.where(xp.isnan(x), xp.broadcast_to(lo, x.shape), inside)


def forward(tabs: KernelTables, q: Array) -> Array:
    """``u(q)`` for queries ``q`` (K, D): 0 below ``lo``, 1 above ``hi``, NaN for NaN."""
    xp = tabs.xp
    lo, hi = tabs.lo, tabs.hi
    f = _poly(*_coefficients_at(tabs, _clamped(xp, q, lo, hi)))
    u = xp.clip((f - tabs.f_lo) / (tabs.f_hi - tabs.f_lo), 0.0, 1.0)
    zero, one = xp.zeros_like(u), xp.ones_like(u)
    u = xp.where(q < lo, zero, xp.where(q > hi, one, u))
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
    ill-conditioned and the derivative is cut to 0.
    """
    xp = tabs.xp
    hooks = tabs.hooks
    sg = hooks.stop_gradient
    zero, one = xp.zeros_like(v), xp.ones_like(v)
    vc = xp.where(xp.isnan(v), zero, xp.where(v < 0, zero, xp.where(v > 1, one, v)))
    target = tabs.f_lo + vc * (tabs.f_hi - tabs.f_lo)
    t = sg(target)
    g1 = tabs.grid + 1
    table = xp.astype(sg(tabs.table), v.dtype, copy=False)
    cells = []
    for d in range(tabs.dim):
        row = table[d * g1 : d * g1 + tabs.grid]
        cells.append(hooks.searchsorted(xp, row, t[:, d]) - 1)
    cell = xp.clip(xp.stack(cells, axis=1), 0, tabs.grid - 2)
    coef = [sg(c) for c in _coefficients(tabs, cell)]
    span = coef[0] - _poly(coef, one)
    flat = hooks.safe_slope(xp, coef[0] - t, span, span < 0)
    s = xp.clip(flat, 0.0, 1.0)
    for _ in range(NEWTON_STEPS):
        slope = _poly_ds(coef, s)
        step = hooks.safe_slope(xp, _poly(coef, s) - t, slope, slope > 0)
        s = xp.clip(s - step, 0.0, 1.0)
    delta = sg(tabs.delta)
    root = sg(_clamped(xp, sg(tabs.x0) + (xp.astype(cell, v.dtype) + s) * delta, sg(tabs.lo), sg(tabs.hi)))
    # Differentiable Newton steps from the constant root.  Each step squares
    # the error as a function of the parameters: x* - root is O(d theta), after
    # one step O(d theta^2) (first derivatives exact), after two O(d theta^4)
    # (derivatives up to the third exact), in every autodiff mode and with no
    # custom rule.  The values move only at rounding level.
    x = root
    for _ in range(DIFF_NEWTON_STEPS):
        f, fprime = evaluate(tabs, x)
        x = x - hooks.safe_slope(xp, f - target, fprime, sg(fprime) > 0)
    # Clamping keeps x in [lo, hi] exactly (v = 0, 1).
    x = _clamped(xp, x, tabs.lo, tabs.hi)
    bad = xp.isnan(v) | ~xp.broadcast_to(tabs.ok, v.shape)
    return xp.where(bad, xp.full_like(x, math.nan), x)
