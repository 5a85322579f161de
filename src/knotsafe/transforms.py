"""Rank-space (empirical CDF) transforms of point sets, one column at a time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import array_api_compat as compat

from knotsafe._lib import _checks, _dtypes, _namespace
from knotsafe._lib._kernel_transform import check_kernel_args, kernel_transforms
from knotsafe._lib._registry import hooks_for
from knotsafe.interp import KnotGrad, interp_checked

__all__ = ["create_transforms"]

Array = Any
Transform = Callable[[Array], Array]


def create_transforms(
    points: Array,
    weights: Array | None = None,
    *,
    method: str = "rank",
    bandwidth: Any = None,
    n_knots: int | None = None,
    span_ratio: float | None = None,
    xp: ModuleType | None = None,
    knot_grad: KnotGrad = "exact",
    min_gap: float | None = None,
    mesh_weight_map: Array | None = None,
) -> tuple[Transform, Transform]:
    """Build the per-column rank transform of ``points`` and its inverse.

    Each column ``d`` is sorted into knots ``s_d`` with ranks
    ``t = arange(1, N + 1) / (N + 1)``; then ``transform(q)[:, d] =
    interp(q[:, d], s_d, t, left=0, right=1)`` and ``inv_transform(u)[:, d] =
    interp(u[:, d], t, s_d)``.  Duplicate points are duplicate knots, which
    :func:`knotsafe.interp` differentiates safely.

    Parameters
    ----------
    points : array, shape (N, D)
        N >= 1 points in D >= 1 dimensions, finite, real.
    weights : array, shape (N,), optional
        Finite non-negative weights, not all zero.  The ranks become the
        cumulative weights in each column's sort order, scaled so that
        ``t[-1] = N / (N + 1)``, with the total weight of a run of tied
        points spread evenly over its positions: uniform weights give
        exactly the unweighted ``t``, and the ranks depend only on the
        multiset of (point, weight) pairs, bitwise, whatever the input
        order.  (PyAutoArray instead gives every point of a tie run the
        run's final cumulative weight; the two agree on the ties themselves
        and differ for queries between a run and the one before it.)
    method : {"rank", "kernel"}
        ``"kernel"``: the kernel-density CDF ``u(q) = clip((F(q) - F(lo)) /
        (F(hi) - F(lo)), 0, 1)`` with ``F(q) = sum_i w_i Phi((q - p_i) / h)``
        per column, within 1e-12 of the exact sum in float64 for ``h <=
        span`` (see ``docs/kernel-transform.md`` and
        :mod:`knotsafe._lib._kernel_cdf`).
    bandwidth : float or array of shape (D,)
        ``h`` in data units, required for (and only for) ``method="kernel"``.
    n_knots : int, optional
        ``method="kernel"`` only: invert by linear interpolation on
        ``n_knots`` knots ``lo + linspace(0, 1, n_knots) * (hi - lo)``
        (PyAutoArray's table inverse) instead of the exact inverse.
    span_ratio : float, optional
        ``method="kernel"`` only: a static upper bound on ``(max - min) /
        bandwidth`` per column, which sizes the node grid; required when the
        points or bandwidth are traced (``jax.jit``), where a column
        exceeding it gives NaN.
    xp : namespace, optional
        Array namespace (numpy, jax.numpy, torch, array_api_strict, ...);
        default inferred from ``points``.
    knot_grad, min_gap
        As in :func:`knotsafe.interp`, applied to both transforms.
    mesh_weight_map : array, shape (N,), optional
        Alias of ``weights`` (the keyword of the lensing code this replaces).

    Returns
    -------
    transform : callable
        ``(K, D) -> (K, D)`` array in ``[0, 1]``: 0 below a column's smallest
        point, 1 above its largest.  Results are in the floating dtype of the
        queries and points (float16/bfloat16 are computed in float32 and
        cast back once).
    inv_transform : callable
        ``(K, D) -> (K, D)``, clamped to each column's range like
        ``numpy.interp``.

    Raises
    ------
    ValueError
        ``points`` not 2-D or empty, or containing NaN or inf; ``weights``
        of the wrong shape, negative, NaN, inf or all zero; queries of the
        wrong shape.  The data checks run on concrete arrays, read each
        input once, and say how many rows are bad and the first.
    TypeError
        Both ``weights`` and ``mesh_weight_map`` given; arrays from two
        libraries; complex ``points``, weights or queries (the message names
        the argument).

    Notes
    -----
    Gradients flow to ``points`` through the sort (a permutation) and the
    knot partials of :func:`knotsafe.interp`, to ``weights`` through the
    ranks, and to the queries through the bin slopes; all are finite on
    duplicate-laden point sets.  NaN queries give NaN outputs with zero
    gradient.  Under tracing (``jax.jit``) the data cannot be read, so it is
    not checked: non-finite points or non-finite/negative weights then make
    every output NaN rather than a plausible number.  All-zero weights under
    tracing give NaN ranks.
    """
    weights_name = "weights"
    if mesh_weight_map is not None:
        if weights is not None:
            raise TypeError("pass `weights` or its alias `mesh_weight_map`, not both")
        weights, weights_name = mesh_weight_map, "mesh_weight_map"
    if method not in ("rank", "kernel"):
        raise ValueError(f"`method` must be 'rank' or 'kernel', got {method!r}")
    if method == "rank":
        for name, value in (("bandwidth", bandwidth), ("n_knots", n_knots), ("span_ratio", span_ratio)):
            if value is not None:
                raise TypeError(f"`{name}` applies to method='kernel' only")
    xp_, arrays = _namespace.resolve({"points": points, weights_name: weights}, xp)
    _namespace.check_knot_grad(knot_grad)
    gap = _namespace.check_min_gap(min_gap)
    pts = arrays["points"]
    if pts.ndim != 2 or pts.shape[0] == 0 or pts.shape[1] == 0:
        raise ValueError(f"`points` must have shape (N, D) with N, D >= 1, got {tuple(pts.shape)}")
    n, dim = pts.shape
    dtype = _dtypes.result_dtype(xp_, {"points": pts})
    comp = _dtypes.compute_dtype(xp_, dtype)
    pts = xp_.astype(pts, comp, copy=False)
    kernel = check_kernel_args(xp_, pts, bandwidth, n_knots, span_ratio) if method == "kernel" else None
    # The kernel's data checks (bandwidth, spread) and its grid size ride on the points' one read.
    conditions, count = kernel.conditions(xp_, pts) if kernel is not None else ([], None)
    bad_points, cells = _checks.check_points_and_count(xp_, "points", pts, conditions, count)
    verdicts = [bad_points]
    w = arrays.get(weights_name)
    if w is not None:
        _dtypes.result_dtype(xp_, {weights_name: w})
        w = xp_.astype(w, comp, copy=False)
        verdicts.append(_checks.check_weights(xp_, weights_name, w, n))
    # Traced data cannot be checked: bad points or weights make every output NaN.
    bad = _checks.any_bad(verdicts)
    forward: Transform
    inverse: Transform
    if kernel is not None:
        grid = kernel.grid(xp_, pts, cells)
        forward, inverse = kernel_transforms(
            xp_, pts, w, kernel.h, grid, kernel.n_knots, knot_grad=knot_grad, min_gap=gap
        )
    else:
        ranks = rank_transform(xp_, pts, w, knot_grad=knot_grad, min_gap=gap)
        forward, inverse = ranks.forward, ranks.inverse

    def queries(q: Array, name: str) -> tuple[Array, Any]:
        _, arr = _namespace.resolve({name: q}, xp_)
        q = arr[name]
        if q.ndim != 2 or q.shape[1] != dim:
            raise ValueError(f"`{name}` must have shape (K, {dim}), got {tuple(q.shape)}")
        _dtypes.result_dtype(xp_, {name: q})
        # Floating queries join the points' dtype; integer queries take it.
        out = xp_.result_type(q.dtype, dtype) if xp_.isdtype(q.dtype, "real floating") else dtype
        return xp_.astype(q, _dtypes.compute_dtype(xp_, out), copy=False), out

    def transform(q: Array) -> Array:
        """Rank-space coordinates of queries ``q`` of shape (K, D), in [0, 1]."""
        q, out = queries(q, "q")
        return xp_.astype(_checks.poison(xp_, bad, forward(q)), out, copy=False)

    def inv_transform(u: Array) -> Array:
        """Points of rank-space coordinates ``u`` of shape (K, D)."""
        u, out = queries(u, "u")
        return xp_.astype(_checks.poison(xp_, bad, inverse(u)), out, copy=False)

    return transform, inv_transform


@dataclass(frozen=True)
class RankTransform:
    """The per-column rank transform on validated arrays (no checks, no reads).

    ``knots`` (D, N) are the sorted columns, ``ranks`` their CDF values (see
    :func:`rank_knots`), in the computation dtype.  :meth:`forward` and
    :meth:`inverse` take (K, D) arrays of one floating computation dtype and
    return that dtype.  The kernel behind :func:`create_transforms` and the
    rectangular mesh.
    """

    xp: ModuleType
    knots: Array
    ranks: tuple[Array, ...]
    knot_grad: str
    min_gap: float | None

    def _per_column(self, a: Array, *, inverse: bool, left: float | None, right: float | None) -> Array:
        """``interp`` of every column ``a[:, d]``: knots -> ranks (forward) or ranks -> knots (inverse)."""
        xp = self.xp
        out = []
        for d in range(a.shape[1]):
            k = xp.astype(self.knots[d, :], a.dtype, copy=False)
            t = xp.astype(self.ranks[d], a.dtype, copy=False)
            x_knots, y_values = (t, k) if inverse else (k, t)
            out.append(
                interp_checked(
                    xp,
                    a[:, d],
                    x_knots,
                    y_values,
                    left=left,
                    right=right,
                    knot_grad=self.knot_grad,
                    min_gap=self.min_gap,
                )
            )
        return xp.stack(out, axis=1)

    def forward(self, q: Array) -> Array:
        """``interp(q[:, d], knots[d], ranks[d], left=0, right=1)`` for every column."""
        return self._per_column(q, inverse=False, left=0.0, right=1.0)

    def inverse(self, u: Array) -> Array:
        """``interp(u[:, d], ranks[d], knots[d])`` for every column (clamped to the data range)."""
        return self._per_column(u, inverse=True, left=None, right=None)


def rank_transform(
    xp: ModuleType, points: Array, weights: Array | None, *, knot_grad: str, min_gap: float | None
) -> RankTransform:
    """:class:`RankTransform` of validated ``points`` (N, D) and ``weights`` (N,) of one dtype."""
    knots, ranks = rank_knots(xp, points, weights)
    return RankTransform(xp, knots, tuple(ranks), knot_grad, min_gap)


def rank_knots(xp: ModuleType, points: Array, weights: Array | None) -> tuple[Array, list[Array]]:
    """Sorted columns and their ranks: the knots and values of each column's CDF.

    Parameters
    ----------
    points : array, shape (N, D)
    weights : array, shape (N,), optional
        Checked finite, non-negative weights, not all zero.

    Returns
    -------
    knots : array, shape (D, N)
        Each column of ``points`` sorted (rows are contiguous, which 1-D
        searchsorted kernels prefer).
    ranks : list of D arrays, shape (N,)
        ``arange(1, N + 1) / (N + 1)``, or the weighted ranks of
        :func:`_weighted_ranks`, scaled so that the last rank is ``N / (N + 1)``.

    Notes
    -----
    Weighted columns are sorted by (value, weight), so the order in which
    the weights are summed depends only on the multiset of (point, weight)
    pairs, never on the input order: the ranks are bitwise invariant under a
    permutation of the points.  Ranks, weighted or not, are also bitwise
    equal on every backend (NumPy, JAX eager or jitted, PyTorch,
    array-api-strict): only sorts, gathers, copies and elementwise IEEE
    operations that no compiler rewrites (see :func:`_weighted_ranks` and
    :func:`_divide`).
    """
    n, dim = points.shape
    cols = xp.permute_dims(points, (1, 0))
    if weights is None:
        positions = xp.arange(1, n + 1, dtype=points.dtype, device=compat.device(points))
        # full_like, not asarray(..., device=...): a fixed device clashes with sharded inputs under jax.jit.
        ranks = _divide(xp, positions, xp.full_like(positions, n + 1))
        return xp.sort(cols, axis=1), [ranks] * dim
    # One block each on Dask: every gather below would otherwise cost a task per
    # pair of chunks (hooks.consolidate; identity elsewhere).
    consolidate = hooks_for(xp).consolidate
    cols, weights = consolidate(cols), consolidate(weights)
    # Stable sorts: by weight, then by value, give the lexicographic order.
    by_weight = xp.argsort(weights, stable=True)
    # Dividing by the largest weight makes uniform weights exactly 1, so their
    # cumulative sums are exact integers and the ranks match the unweighted
    # ones bit for bit.
    w = _divide(xp, xp.take(weights, by_weight), xp.max(weights))
    knots, rank_rows = [], []
    for d in range(dim):
        col = xp.take(cols[d, :], by_weight)
        order = xp.argsort(col, stable=True)
        k = xp.take(col, order)
        knots.append(k)
        rank_rows.append(_weighted_ranks(xp, consolidate, k, xp.take(w, order)))
    return xp.stack(knots), rank_rows


def _weighted_ranks(xp: ModuleType, consolidate: Callable[[Array], Array], knots: Array, w: Array) -> Array:
    """Cumulative weights with each tie run's total spread evenly over its positions.

    For a run of ``m`` equal knots at sorted positions ``s .. s + m - 1``,
    with ``C`` the total weight before it and ``W`` its own total, position
    ``s + i`` gets ``C + (W * (i + 1)) / m``: the run's weight is shared
    equally, so the CDF depends on the point multiset only (not on which
    tied point sorts first), and uniform weights give the unweighted
    staircase ``1, 2, ..., N`` exactly.  The last point of a run gets
    exactly ``C + W``; untied points get their plain cumulative weight.

    Every operation is an elementwise IEEE operation, a sort, a gather or a
    copy, and the cumulative sum is :func:`_cumulative_sum` (a fixed
    evaluation order), so NumPy, JAX and PyTorch give bitwise the same
    ranks.  ``(W * (i + 1)) / m`` is written so that no product feeds an
    addition: a compiler that contracts ``a * b + c`` into a fused
    multiply-add (XLA on GPU does) has nothing to contract.
    """
    n = knots.shape[0]
    cum = xp.concat([xp.zeros_like(w[:1]), _cumulative_sum(xp, consolidate, w)])
    start = xp.searchsorted(knots, knots, side="left")
    end = xp.searchsorted(knots, knots, side="right")
    position = xp.arange(1, n + 1, dtype=start.dtype, device=compat.device(knots)) - start
    before, through = xp.take(cum, start), xp.take(cum, end)
    size = end - start
    spread = before + ((through - before) * xp.astype(position, w.dtype)) / xp.astype(size, w.dtype)
    cum_w = xp.where(position == size, through, spread)
    total = cum[-1]
    return _divide(xp, cum_w, total + _divide(xp, total, xp.full_like(total, n)))


def _divide(xp: ModuleType, a: Array, d: Array) -> Array:
    """``a / d`` for ``d`` 0-d or uniform, correctly rounded on every backend.

    XLA rewrites ``a / broadcast(d)`` as ``a * (1 / d)``, which is one ulp
    off for about half the elements (measured: 7,957 of 15,380 unweighted
    ranks ``arange(1, N + 1) / (N + 1)`` differed from NumPy's).  Selecting
    ``d`` elementwise through a predicate on ``a`` (never true for the
    finite, checked data here; NaN ``a`` gives NaN either way) hides the
    broadcast from that rewrite, under ``jax.jit`` too, so JAX divides
    like NumPy and PyTorch.
    """
    return a / xp.where(xp.isnan(a), a, d)


def _cumulative_sum(xp: ModuleType, consolidate: Callable[[Array], Array], x: Array) -> Array:
    """Inclusive cumulative sum of a 1-D array in an evaluation order fixed by its length.

    Each framework's own ``cumsum`` adds in its own order (NumPy in
    sequence, XLA as a parallel scan, PyTorch's float32 through a float64
    accumulator), so the last bits of a cumulative weight differ between
    them.  This is the recursive pairwise scan: sum neighbouring pairs,
    scan the half-length array of pair sums, then ``out[2i + 1] = S[i]``
    and ``out[2i] = S[i - 1] + x[2i]``.  Only elementwise additions of the
    working dtype, slices and copies, so every IEEE backend rounds each
    element identically (additions are never reassociated or contracted
    by a compiler without fast-math).

    O(N) additions and copies over ``ceil(log2 N)`` levels (about 2N of
    each, memory 2N), and its rounding error is at most ``ceil(log2 N)``
    eps times the sum of ``|x|`` (a sequential sum's is N eps).
    Differentiable like any chain of additions.  ``consolidate`` (the
    backend hook) keeps each level in one block: on Dask the slices,
    concatenations and reshapes would multiply the chunks at every level.
    """
    n = x.shape[0]
    if n <= 1:
        return x
    if n % 2:
        x = xp.concat([x, xp.zeros_like(x[:1])])
    even, odd = x[0::2], x[1::2]
    pairs = _cumulative_sum(xp, consolidate, even + odd)
    evens = xp.concat([even[:1], pairs[:-1] + even[1:]])
    # Interleave: concat of (m, 1) columns, not stack(axis=1), which PyTorch copies slowly.
    columns = xp.concat([xp.expand_dims(evens, axis=1), xp.expand_dims(pairs, axis=1)], axis=1)
    return consolidate(xp.reshape(columns, (-1,))[:n])
