"""Rank-space (empirical CDF) transforms of point sets, one column at a time."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

from knotsafe._lib.backends.registry import hooks_for
from knotsafe._lib.kde.transform import kernel_transforms
from knotsafe._lib.ranks import rank_transform
from knotsafe._lib.rule import KnotGrad
from knotsafe._lib.validation import checks as _checks
from knotsafe._lib.validation import dtypes as _dtypes
from knotsafe._lib.validation import namespace as _namespace
from knotsafe._lib.validation.kernel_args import check_kernel_args

__all__ = ["create_transforms"]

Array = Any
Transform = Callable[[Array], Array]


def create_transforms(
    points: Array,
    weights: Array | None = None,
    *,
    method: str = "rank",
    kernel_std: Any = None,
    n_knots: int | None = None,
    span_ratio: float | None = None,
    xp: ModuleType | None = None,
    knot_grad: KnotGrad = "exact",
    min_gap: float | None = None,
    mesh_weight_map: Array | None = None,
    bandwidth: Any = None,
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
        per column, within 1e-12 of the exact sum in float64 for every
        accepted ``h``, ``span / 2,097,151 <= h <= span / 1e-292``
        (float32: ``span / 9.9e-32``), and about one float32 eps in float32
        (see ``docs/kernel-transform.md`` and :mod:`knotsafe._lib.kde.cdf`).
        Its derivatives at ``q = min`` and ``q = max`` of a column are the
        right-hand ones (zero at the maximum).
    kernel_std : float or array of shape (D,)
        ``h``, the Gaussian kernel's standard deviation in the points' units,
        required for (and only for) ``method="kernel"``: a real number, a
        sequence of them or an array (not a string or a bool).  (The
        rectangular mesh's ``bandwidth`` is PyAutoArray's, in units of
        ``span / n``.)
    n_knots : int, optional
        ``method="kernel"`` only: invert by linear interpolation on
        ``n_knots`` knots ``lo + linspace(0, 1, n_knots) * (hi - lo)``
        (PyAutoArray's table inverse) instead of the exact inverse.
    span_ratio : float, optional
        ``method="kernel"`` only: a static upper bound on ``(max - min) /
        kernel_std`` per column, which sizes the node grid; required when the
        points or ``kernel_std`` are traced (``jax.jit``), where a column
        exceeding it gives NaN.  On concrete data a column exceeding it
        raises ``ValueError``.
    xp : namespace, optional
        Array namespace (numpy, jax.numpy, torch, array_api_strict, ...);
        default inferred from ``points``.
    knot_grad, min_gap
        As in :func:`knotsafe.interp`, applied to both transforms.
    mesh_weight_map : array, shape (N,), optional
        Alias of ``weights`` (the keyword of the lensing code this replaces).
    bandwidth : float or array of shape (D,), optional
        Deprecated name of ``kernel_std`` (the same number, in the points'
        units): it warns with ``DeprecationWarning``.

    Returns
    -------
    transform : callable
        ``(K, D) -> (K, D)`` array in ``[0, 1]``: 0 below a column's smallest
        point, 1 above its largest.  Results are in the floating dtype of the
        queries and points, and computed in it (float16/bfloat16 are
        computed in float32 and cast back once).
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
        the argument); a ``kernel_std`` or ``span_ratio`` that is not a
        number; both ``kernel_std`` and ``bandwidth``.

    With ``method="kernel"`` also ``ValueError`` naming ``kernel_std`` (not
    positive and finite, or outside the accepted range), ``span_ratio``
    (not finite, too large for the node grid, or below a column's
    ``(max - min) / kernel_std``) or ``points`` (a zero spread, or a
    ``max - min`` that overflows).

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
    if bandwidth is not None:
        if kernel_std is not None:
            raise TypeError("pass `kernel_std` only: `bandwidth` is its deprecated name")
        warnings.warn(
            "create_transforms(bandwidth=) is deprecated: pass kernel_std= (the same number, the kernel's standard "
            "deviation in the points' units); the rectangular mesh's `bandwidth` keeps PyAutoArray's unit, span / n",
            DeprecationWarning,
            stacklevel=2,
        )
        kernel_std = bandwidth
    if method not in ("rank", "kernel"):
        raise ValueError(f"`method` must be 'rank' or 'kernel', got {method!r}")
    if method == "rank":
        for name, value in (("kernel_std", kernel_std), ("n_knots", n_knots), ("span_ratio", span_ratio)):
            if value is not None:
                raise TypeError(f"`{name}` applies to method='kernel' only")
    xp_, arrays = _namespace.resolve({"points": points, weights_name: weights}, xp)
    hooks = hooks_for(xp_)
    _namespace.check_knot_grad(knot_grad)
    gap = _namespace.check_min_gap(min_gap)
    pts = arrays["points"]
    if pts.ndim != 2 or pts.shape[0] == 0 or pts.shape[1] == 0:
        raise ValueError(f"`points` must have shape (N, D) with N, D >= 1, got {tuple(pts.shape)}")
    n, dim = pts.shape
    dtype = _dtypes.result_dtype(xp_, {"points": pts})
    comp = _dtypes.compute_dtype(xp_, dtype)
    pts = xp_.astype(pts, comp, copy=False)
    kernel = check_kernel_args(xp_, hooks, pts, kernel_std, n_knots, span_ratio) if method == "kernel" else None
    # The kernel's data checks (kernel_std, spread) and its grid size ride on the points' one read.
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
            xp_, hooks, pts, w, kernel.h, grid, kernel.n_knots, knot_grad=knot_grad, min_gap=gap
        )
    else:
        ranks = rank_transform(xp_, hooks, pts, w, knot_grad=knot_grad, min_gap=gap)
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
