"""``create_transforms(method="kernel")``: argument checks and the two callables.

The math lives in :mod:`knotsafe._lib._kernel_cdf`; this module checks the
bandwidth, sizes the node grid (a static shape) and wraps the tables in the
``transform`` / ``inv_transform`` pair, with the exact or the table inverse.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from types import ModuleType
from typing import Any

import array_api_compat as compat

from knotsafe._lib import _kernel_cdf as kc
from knotsafe._lib import _namespace as ns
from knotsafe.backends import hooks_for
from knotsafe.interp import KnotGrad, interp_checked

Array = Any
Transform = Callable[[Array], Array]


def check_bandwidth(xp: ModuleType, bandwidth: Any, dim: int, dtype: Any, like: Array) -> Array:
    """``bandwidth``: a positive scalar or one per column, as a (D,) array."""
    if bandwidth is None:
        raise TypeError("`bandwidth` is required for method='kernel' (the kernel width h in data units)")
    if compat.is_array_api_obj(bandwidth):
        _, arr = ns.resolve({"bandwidth": bandwidth}, xp)
        h = arr["bandwidth"]
    else:
        try:
            h = xp.asarray(bandwidth, dtype=dtype, device=compat.device(like))
        except Exception as exc:
            raise TypeError(f"`bandwidth` must be a positive number or one per column, got {bandwidth!r}") from exc
    if not xp.isdtype(h.dtype, ("real floating", "integral")):
        raise TypeError(f"`bandwidth` must be real, got dtype {h.dtype}")
    h = xp.astype(h, dtype, copy=False)
    if h.ndim == 0:
        h = xp.broadcast_to(h, (dim,))
    if h.ndim != 1 or h.shape[0] != dim:
        raise ValueError(f"`bandwidth` must be a scalar or have shape ({dim},), got {tuple(h.shape)}")
    if ns.holds(xp, (h > 0) & xp.isfinite(h)) is False:
        raise ValueError("`bandwidth` must be positive and finite")
    return h


def check_n_knots(n_knots: Any) -> int | None:
    if n_knots is None:
        return None
    if isinstance(n_knots, bool):
        raise TypeError(f"`n_knots` must be an integer or None, got {n_knots!r}")
    try:
        m = operator.index(n_knots)
    except TypeError as exc:
        raise TypeError(f"`n_knots` must be an integer or None, got {n_knots!r}") from exc
    if m < 2:
        raise ValueError(f"`n_knots` must be at least 2, got {m}")
    return m


def _grid_for(xp: ModuleType, points: Array, h: Array, span_ratio: float | None) -> int:
    """Static node count: from ``span_ratio`` if given, else from the concrete data."""
    if span_ratio is not None:
        try:
            ratio = float(span_ratio)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"`span_ratio` must be a real number or None, got {span_ratio!r}") from exc
        if not ratio > 0:
            raise ValueError(f"`span_ratio` must be positive, got {span_ratio!r}")
        return kc.grid_size(ratio)
    sg = hooks_for(xp).stop_gradient
    ratio_arr = sg(xp.max((xp.max(points, axis=0) - xp.min(points, axis=0)) / h))
    value = None
    if ns.holds(xp, ratio_arr >= 0) is not None:
        try:
            value = float(ratio_arr)
        except Exception:
            value = None
    if value is None:
        raise ValueError(
            "method='kernel' sizes its node grid from (max - min) / bandwidth of the points, which cannot be "
            "read from traced arrays: pass `span_ratio=` (a static upper bound on it; columns that exceed it "
            "give NaN)"
        )
    return kc.grid_size(value)


def kernel_transforms(
    xp: ModuleType,
    points: Array,
    weights: Array | None,
    bandwidth: Any,
    *,
    n_knots: Any = None,
    span_ratio: float | None = None,
    knot_grad: KnotGrad = "exact",
    min_gap: float | None = None,
) -> tuple[Transform, Transform]:
    """The kernel transform pair of checked ``points`` (N, D) and ``weights`` (N,)."""
    dim = points.shape[1]
    dtype = points.dtype
    h = check_bandwidth(xp, bandwidth, dim, dtype, points)
    m = check_n_knots(n_knots)
    if ns.holds(xp, xp.max(points, axis=0) > xp.min(points, axis=0)) is False:
        raise ValueError(
            "`points` has a column with zero spread: method='kernel' normalises by F(max) - F(min) of each column"
        )
    if ns.holds(xp, xp.isfinite(points)) is False:
        raise ValueError("`points` must be finite for method='kernel'")
    tabs = kc.build(xp, points, weights, h, _grid_for(xp, points, h, span_ratio))

    def checked(a: Array, name: str) -> Array:
        _, arr = ns.resolve({name: a}, xp)
        a = arr[name]
        if a.ndim != 2 or a.shape[1] != dim:
            raise ValueError(f"`{name}` must have shape (K, {dim}), got {tuple(a.shape)}")
        return xp.astype(a, dtype, copy=False)

    def transform(q: Array) -> Array:
        """Kernel-CDF coordinates of queries ``q`` of shape (K, D), in [0, 1]."""
        return kc.forward(tabs, checked(q, "q"))

    if m is None:

        def inv_transform(u: Array) -> Array:
            """Points whose kernel-CDF coordinates are ``u`` (K, D), clamped to [0, 1]."""
            return kc.inverse(tabs, checked(u, "u"))

        return transform, inv_transform

    frac = xp.linspace(0.0, 1.0, m, dtype=dtype, device=compat.device(points))
    knots = tabs.lo[None, :] + frac[:, None] * (tabs.hi - tabs.lo)[None, :]  # (M, D)
    knot_u = kc.forward(tabs, knots)
    gap = ns.check_min_gap(min_gap)

    def inv_table(u: Array) -> Array:
        """Table inverse: ``interp(u, u(knots), knots)`` per column (clamped)."""
        uu = checked(u, "u")
        opts: dict[str, Any] = {"left": None, "right": None, "knot_grad": knot_grad, "min_gap": gap}
        cols = [interp_checked(xp, uu[:, d], knot_u[:, d], knots[:, d], **opts) for d in range(dim)]
        return xp.stack(cols, axis=1)

    return transform, inv_table


def mesh_transforms(
    xp: ModuleType,
    scaled: Array,
    weights: Array | None,
    n: int,
    transform: Any,
    bandwidth: Any,
    n_knots: Any,
    knot_grad: KnotGrad,
    min_gap: float | None,
) -> tuple[Transform, Transform] | None:
    """The rectangular mesh's kernel transforms, or None for ``transform="rank"``.

    PyAutoArray's kernel mesh: on the normalised grid ``scaled`` (N, 2),
    ``h = bandwidth * (max - min) / n`` per axis, and the inverse is the
    ``n_knots`` table (exact with ``n_knots=None``).  ``span / h = n /
    bandwidth`` is static, so the grid size is known under tracing too.
    """
    if transform == "rank":
        if bandwidth != 1.0 or n_knots != 64:
            raise TypeError("`bandwidth` and `n_knots` apply to transform='kernel' only")
        return None
    if transform != "kernel":
        raise ValueError(f"`transform` must be 'rank' or 'kernel', got {transform!r}")
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)):
        raise TypeError(f"`bandwidth` must be a positive number (in units of span / n), got {bandwidth!r}")
    bw = float(bandwidth)
    if not (bw > 0 and bw < float("inf")):
        raise ValueError(f"`bandwidth` must be positive and finite, got {bandwidth!r}")
    h = bw * (xp.max(scaled, axis=0) - xp.min(scaled, axis=0)) / n
    # +1: the computed span / h may round just above n / bandwidth.
    return kernel_transforms(
        xp, scaled, weights, h, n_knots=n_knots, span_ratio=n / bw + 1.0, knot_grad=knot_grad, min_gap=min_gap
    )
