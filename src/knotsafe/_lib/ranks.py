"""Rank-space knots and values: the per-column empirical CDF on validated arrays.

No checks and no reads: :func:`knotsafe.create_transforms` and the mesh
validate, then build a :class:`RankTransform` here.  Every operation is a
sort, a gather, a copy or an elementwise IEEE operation in a fixed order, so
the ranks are bitwise equal on every backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import array_api_compat as compat

from knotsafe._lib.backends.hooks import BackendHooks, compiled_partial
from knotsafe._lib.interpolate import interpolate

Array = Any


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
    hooks: BackendHooks
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
                interpolate(
                    xp,
                    self.hooks,
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
    xp: ModuleType,
    hooks: BackendHooks,
    points: Array,
    weights: Array | None,
    *,
    knot_grad: str,
    min_gap: float | None,
) -> RankTransform:
    """:class:`RankTransform` of validated ``points`` (N, D) and ``weights`` (N,) of one dtype."""
    knots, ranks = compiled_partial(hooks, rank_knots, xp, hooks)(points, weights)
    return RankTransform(xp, hooks, knots, tuple(ranks), knot_grad, min_gap)


def rank_knots(xp: ModuleType, hooks: BackendHooks, points: Array, weights: Array | None) -> tuple[Array, list[Array]]:
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
    consolidate = hooks.consolidate
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
    off for about half the elements (of the unweighted ranks ``arange(1, N +
    1) / (N + 1)``, for example).  Selecting
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
