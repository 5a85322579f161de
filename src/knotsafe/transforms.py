"""Rank-space (empirical CDF) transforms of point sets, one column at a time."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import array_api_compat as compat

from knotsafe._lib import _namespace as ns
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
        N >= 1 points in D >= 1 dimensions, free of NaN.
    weights : array, shape (N,), optional
        Non-negative weights, not all zero.  The ranks become the cumulative
        weights in each column's sort order, scaled so that ``t[-1] = N / (N
        + 1)``; uniform weights give exactly the unweighted ``t``.
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
        point, 1 above its largest.
    inv_transform : callable
        ``(K, D) -> (K, D)``, clamped to each column's range like
        ``numpy.interp``.

    Raises
    ------
    ValueError
        ``points`` not 2-D or empty, or containing NaN (checked on concrete
        arrays); ``weights`` of the wrong shape, negative, NaN or all zero
        (concrete arrays); queries of the wrong shape.
    TypeError
        Both ``weights`` and ``mesh_weight_map`` given; arrays from two
        libraries.

    Notes
    -----
    Gradients flow to ``points`` through the sort (a permutation) and the
    knot partials of :func:`knotsafe.interp`, to ``weights`` through the
    ranks, and to the queries through the bin slopes; all are finite on
    duplicate-laden point sets.  NaN queries give NaN outputs with zero
    gradient.  Under tracing (``jax.jit``) the data checks are skipped and NaN
    points give meaningless ranks.
    """
    weights_name = "weights"
    if mesh_weight_map is not None:
        if weights is not None:
            raise TypeError("pass `weights` or its alias `mesh_weight_map`, not both")
        weights, weights_name = mesh_weight_map, "mesh_weight_map"
    xp_, arrays = ns.resolve({"points": points, "weights": weights}, xp)
    ns.check_knot_grad(knot_grad)
    gap = ns.check_min_gap(min_gap)
    pts = arrays["points"]
    if pts.ndim != 2 or pts.shape[0] == 0 or pts.shape[1] == 0:
        raise ValueError(f"`points` must have shape (N, D) with N, D >= 1, got {tuple(pts.shape)}")
    n, dim = pts.shape
    dtype = ns.float_dtype(xp_, pts)
    pts = xp_.astype(pts, dtype, copy=False)
    if ns.holds(xp_, ~xp_.isnan(pts)) is False:
        raise ValueError("`points` contains NaN")

    raw = arrays.get("weights")
    weights_ = None if raw is None else ns.check_weights(xp_, raw, n, dtype, weights_name)
    if method == "kernel":
        from knotsafe._lib._kernel_transform import kernel_transforms

        return kernel_transforms(
            xp_, pts, weights_, bandwidth, n_knots=n_knots, span_ratio=span_ratio, knot_grad=knot_grad, min_gap=gap
        )
    if method != "rank":
        raise ValueError(f"`method` must be 'rank' or 'kernel', got {method!r}")
    for name, value in (("bandwidth", bandwidth), ("n_knots", n_knots), ("span_ratio", span_ratio)):
        if value is not None:
            raise TypeError(f"`{name}` applies to method='kernel' only")
    knots, rank_rows = rank_knots(xp_, pts, weights_)

    def apply(q: Array, name: str, inverse: bool) -> Array:
        _, arr = ns.resolve({name: q}, xp_)
        q = arr[name]
        if q.ndim != 2 or q.shape[1] != dim:
            raise ValueError(f"`{name}` must have shape (K, {dim}), got {tuple(q.shape)}")
        q = xp_.astype(q, xp_.result_type(q, dtype) if xp_.isdtype(q.dtype, "real floating") else dtype, copy=False)
        out = []
        for d in range(dim):
            col = xp_.astype(knots[d, :], q.dtype, copy=False)
            t = xp_.astype(rank_rows[d], q.dtype, copy=False)
            if inverse:
                out.append(
                    interp_checked(xp_, q[:, d], t, col, left=None, right=None, knot_grad=knot_grad, min_gap=gap)
                )
            else:
                out.append(interp_checked(xp_, q[:, d], col, t, left=0.0, right=1.0, knot_grad=knot_grad, min_gap=gap))
        return xp_.stack(out, axis=1)

    def transform(q: Array) -> Array:
        """Rank-space coordinates of queries ``q`` of shape (K, D), in [0, 1]."""
        return apply(q, "q", inverse=False)

    def inv_transform(u: Array) -> Array:
        """Points of rank-space coordinates ``u`` of shape (K, D)."""
        return apply(u, "u", inverse=True)

    return transform, inv_transform


def rank_knots(xp: ModuleType, points: Array, weights: Array | None) -> tuple[Array, list[Array]]:
    """Sorted columns and their ranks: the knots and values of each column's CDF.

    Parameters
    ----------
    points : array, shape (N, D)
    weights : array, shape (N,), optional
        Checked non-negative weights, not all zero.

    Returns
    -------
    knots : array, shape (D, N)
        Each column of ``points`` sorted (rows are contiguous, which 1-D
        searchsorted kernels prefer).
    ranks : list of D arrays, shape (N,)
        ``arange(1, N + 1) / (N + 1)``, or the cumulative weights in each
        column's sort order scaled so that the last rank is ``N / (N + 1)``.
    """
    n, dim = points.shape
    cols = xp.permute_dims(points, (1, 0))
    if weights is None:
        ranks = xp.arange(1, n + 1, dtype=points.dtype, device=compat.device(points)) / (n + 1)
        return xp.sort(cols, axis=1), [ranks] * dim
    order = xp.argsort(cols, axis=1, stable=True)
    knots = xp.stack([xp.take(cols[d, :], order[d, :]) for d in range(dim)])
    # Dividing by the largest weight makes uniform weights exactly 1, so their
    # cumulative sums are exact integers and the ranks match the unweighted
    # ones bit for bit.
    w = weights / xp.max(weights)
    rank_rows = []
    for d in range(dim):
        cum = xp.cumulative_sum(xp.take(w, order[d, :]))
        total = cum[-1]
        rank_rows.append(cum / (total + total / n))
    return knots, rank_rows
