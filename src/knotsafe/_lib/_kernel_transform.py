"""``create_transforms(method="kernel")``: argument checks and the two callables.

The math lives in :mod:`knotsafe._lib._kernel_cdf`; this module checks the
bandwidth, sizes the node grid (a static shape) and wraps the tables in the
``transform`` / ``inv_transform`` pair, with the exact or the table inverse.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import array_api_compat as compat

from knotsafe._lib import _checks, _namespace
from knotsafe._lib import _kernel_cdf as kc
from knotsafe._lib._registry import hooks_for
from knotsafe.interp import interp_checked

Array = Any
Transform = Callable[[Array], Array]


def check_bandwidth(xp: ModuleType, bandwidth: Any, dim: int, dtype: Any, like: Array) -> Array:
    """``bandwidth``: a positive scalar or one per column, as a (D,) array."""
    if bandwidth is None:
        raise TypeError("`bandwidth` is required for method='kernel' (the kernel width h in data units)")
    if compat.is_array_api_obj(bandwidth):
        _, arr = _namespace.resolve({"bandwidth": bandwidth}, xp)
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
    if _checks.fails(xp, (h > 0) & xp.isfinite(h)):
        raise ValueError("`bandwidth` must be positive and finite")
    return h


def check_n_knots(n_knots: Any) -> int | None:
    """``n_knots``: None (the exact inverse) or an integer >= 2 (the table inverse)."""
    return None if n_knots is None else _namespace.check_integer("n_knots", n_knots, 2)


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
    hooks = hooks_for(xp)
    ratio_arr = hooks.stop_gradient(xp.max((xp.max(points, axis=0) - xp.min(points, axis=0)) / h))
    value = None
    if hooks.is_concrete(ratio_arr):
        try:
            value = float(ratio_arr)
        except Exception:  # torch.func transforms raise on data access
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
    knot_grad: str = "exact",
    min_gap: float | None = None,
) -> tuple[Transform, Transform]:
    """The kernel transform pair of validated ``points`` (N, D) and ``weights`` (N,).

    ``points`` are finite (checked by the caller); the returned callables take
    validated (K, D) arrays and compute in the points' dtype.
    """
    dim = points.shape[1]
    dtype = points.dtype
    h = check_bandwidth(xp, bandwidth, dim, dtype, points)
    m = check_n_knots(n_knots)
    if _checks.fails(xp, xp.max(points, axis=0) > xp.min(points, axis=0)):
        raise ValueError(
            "`points` has a column with zero spread: method='kernel' normalises by F(max) - F(min) of each column"
        )
    tabs = kc.build(xp, points, weights, h, _grid_for(xp, points, h, span_ratio))

    def transform(q: Array) -> Array:
        """Kernel-CDF coordinates of queries ``q`` of shape (K, D), in [0, 1]."""
        return kc.forward(tabs, xp.astype(q, dtype, copy=False))

    if m is None:

        def inv_transform(u: Array) -> Array:
            """Points whose kernel-CDF coordinates are ``u`` (K, D), clamped to [0, 1]."""
            return kc.inverse(tabs, xp.astype(u, dtype, copy=False))

        return transform, inv_transform

    frac = xp.linspace(0.0, 1.0, m, dtype=dtype, device=compat.device(points))
    knots = tabs.lo[None, :] + frac[:, None] * (tabs.hi - tabs.lo)[None, :]  # (M, D)
    knot_u = kc.forward(tabs, knots)

    def inv_table(u: Array) -> Array:
        """Table inverse: ``interp(u, u(knots), knots)`` per column (clamped)."""
        uu = xp.astype(u, dtype, copy=False)
        opts: dict[str, Any] = {"left": None, "right": None, "knot_grad": knot_grad, "min_gap": min_gap}
        cols = [interp_checked(xp, uu[:, d], knot_u[:, d], knots[:, d], **opts) for d in range(dim)]
        return xp.stack(cols, axis=1)

    return transform, inv_table


def check_mesh_kernel(transform: Any, bandwidth: Any, n_knots: Any) -> tuple[float, int | None]:
    """The rectangular mesh's ``transform``, ``bandwidth`` and ``n_knots`` arguments."""
    if transform == "rank":
        if bandwidth != 1.0 or n_knots != 64:
            raise TypeError("`bandwidth` and `n_knots` apply to transform='kernel' only")
        return 1.0, 64
    if transform != "kernel":
        raise ValueError(f"`transform` must be 'rank' or 'kernel', got {transform!r}")
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)):
        raise TypeError(f"`bandwidth` must be a positive number (in units of span / n), got {bandwidth!r}")
    bw = float(bandwidth)
    if not (bw > 0 and bw < float("inf")):
        raise ValueError(f"`bandwidth` must be positive and finite, got {bandwidth!r}")
    return bw, check_n_knots(n_knots)


def mesh_transforms(
    xp: ModuleType,
    scaled: Array,
    weights: Array | None,
    n: int,
    bandwidth: float,
    n_knots: int | None,
    *,
    knot_grad: str,
    min_gap: float | None,
) -> tuple[Transform, Transform]:
    """The rectangular mesh's kernel transforms (arguments checked by :func:`check_mesh_kernel`).

    PyAutoArray's kernel mesh: on the normalised grid ``scaled`` (N, 2),
    ``h = bandwidth * (max - min) / n`` per axis, and the inverse is the
    ``n_knots`` table (exact with ``n_knots=None``).  ``span / h = n /
    bandwidth`` is static, so the grid size is known under tracing too.
    """
    h = bandwidth * (xp.max(scaled, axis=0) - xp.min(scaled, axis=0)) / n
    # +1: the computed span / h may round just above n / bandwidth.
    return kernel_transforms(
        xp, scaled, weights, h, n_knots=n_knots, span_ratio=n / bandwidth + 1.0, knot_grad=knot_grad, min_gap=min_gap
    )
