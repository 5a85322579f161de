"""The kernel-density transform pair on validated arrays.

The math lives in :mod:`knotsafe._lib.kde.cdf`; this module wraps its tables
in the ``transform`` / ``inv_transform`` pair, with the exact or the table
inverse, for ``create_transforms(method="kernel")`` and the mesh.  Arguments
are checked by :mod:`knotsafe._lib.validation.kernel_args`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import array_api_compat as compat

from knotsafe._lib.backends.hooks import BackendHooks, compiled_partial
from knotsafe._lib.interpolate import interpolate
from knotsafe._lib.kde import cdf as kc

Array = Any
Transform = Callable[[Array], Array]


def _build(
    xp: ModuleType, hooks: BackendHooks, grid: int, points: Array, weights: Array | None, h: Array
) -> kc.TableArrays:
    return kc.arrays_of(kc.build(xp, hooks, points, weights, h, grid))


def _forward(xp: ModuleType, hooks: BackendHooks, grid: int, arrays: kc.TableArrays, q: Array) -> Array:
    return kc.forward(kc.tables_of(xp, hooks, grid, arrays), q)


def _inverse(xp: ModuleType, hooks: BackendHooks, grid: int, arrays: kc.TableArrays, u: Array) -> Array:
    return kc.inverse(kc.tables_of(xp, hooks, grid, arrays), u)


@dataclass(frozen=True)
class _Programs:
    """Build, forward and inverse of a ``grid``-node kernel CDF, each through the backend's
    ``compiled`` hook: the kernel CDF is a long chain of small operations, one program per shape
    on a compiling backend (JAX) rather than one per operation."""

    grid: int
    build: Callable[..., kc.TableArrays]
    forward: Callable[..., Array]
    inverse: Callable[..., Array]


def _programs(xp: ModuleType, hooks: BackendHooks, grid: int) -> _Programs:
    build, forward, inverse = (compiled_partial(hooks, f, xp, hooks, grid) for f in (_build, _forward, _inverse))
    return _Programs(grid, build, forward, inverse)


def kernel_transforms(
    xp: ModuleType,
    hooks: BackendHooks,
    points: Array,
    weights: Array | None,
    h: Array,
    grid: int,
    n_knots: int | None,
    *,
    knot_grad: str = "exact",
    min_gap: float | None = None,
) -> tuple[Transform, Transform]:
    """The kernel transform pair of validated ``points`` (N, D), ``weights`` (N,), bandwidth ``h`` (D,).

    No checks, no reads: ``points`` are finite with a positive spread per
    column, ``h`` positive (checked by the caller); ``grid`` nodes per
    column.  The returned callables take validated (K, D) arrays and compute
    in their dtype: queries of a wider floating dtype than the points (float64
    queries of float32 points) get node tables built from the points cast to
    it, as the rank method computes in the promoted dtype.
    """
    dim = points.shape[1]
    dtype = points.dtype
    m = n_knots
    # Two nodes of margin for a wider dtype: the grid was sized from span / h rounded in the points' dtype.
    progs, progs_wider = _programs(xp, hooks, grid), _programs(xp, hooks, grid + 2)
    own = progs.build(points, weights, h)
    wider: dict[Any, kc.TableArrays] = {}

    def tables(like: Array) -> tuple[kc.TableArrays, _Programs]:
        """The table arrays for queries ``like`` and the programs of their grid."""
        if like.dtype == dtype:
            return own, progs
        if like.dtype in wider:
            return wider[like.dtype], progs_wider

        def cast(a: Array) -> Array:
            return xp.astype(a, like.dtype)

        tabs = progs_wider.build(cast(points), None if weights is None else cast(weights), cast(h))
        # Kept only when concrete: tables traced inside one jax.jit must not leak into another call.
        if hooks.is_concrete(tabs[0][0]):
            wider[like.dtype] = tabs
        return tabs, progs_wider

    def transform(q: Array) -> Array:
        """Kernel-CDF coordinates of queries ``q`` of shape (K, D), in [0, 1]."""
        arrays, p = tables(q)
        return p.forward(arrays, q)

    if m is None:

        def inv_transform(u: Array) -> Array:
            """Points whose kernel-CDF coordinates are ``u`` (K, D), clamped to [0, 1]."""
            arrays, p = tables(u)
            return p.inverse(arrays, u)

        return transform, inv_transform

    def knot_table(arrays: kc.TableArrays, p: _Programs) -> tuple[Array, Array]:
        tabs = kc.tables_of(xp, hooks, p.grid, arrays)
        frac = xp.linspace(0.0, 1.0, m, dtype=tabs.lo.dtype, device=compat.device(points))
        knots = tabs.lo[None, :] + frac[:, None] * (tabs.hi - tabs.lo)[None, :]  # (M, D)
        return knots, p.forward(arrays, knots)

    own_knots = knot_table(own, progs)

    def inv_table(u: Array) -> Array:
        """Table inverse: ``interp(u, u(knots), knots)`` per column (clamped)."""
        arrays, p = tables(u)
        knots, knot_u = own_knots if arrays is own else knot_table(arrays, p)
        opts: dict[str, Any] = {"left": None, "right": None, "knot_grad": knot_grad, "min_gap": min_gap}
        cols = [interpolate(xp, hooks, u[:, d], knot_u[:, d], knots[:, d], **opts) for d in range(dim)]
        return xp.stack(cols, axis=1)

    return transform, inv_table


def mesh_transforms(
    xp: ModuleType,
    hooks: BackendHooks,
    scaled: Array,
    weights: Array | None,
    n: int,
    bandwidth: float,
    n_knots: int | None,
    *,
    knot_grad: str,
    min_gap: float | None,
) -> tuple[Transform, Transform]:
    """The rectangular mesh's kernel transforms (arguments checked by ``kernel_args.check_mesh_kernel``).

    PyAutoArray's kernel mesh: on the normalised grid ``scaled`` (N, 2),
    ``h = bandwidth * (max - min) / n`` per axis, and the inverse is the
    ``n_knots`` table (exact with ``n_knots=None``).  ``span / h = n /
    bandwidth`` is static, so the grid size is known under tracing too.
    """
    h = bandwidth * (xp.max(scaled, axis=0) - xp.min(scaled, axis=0)) / n
    # The mesh checked the data grid (finite, non-zero spread) in its one read; h > 0 follows.
    # +1: the computed span / h may round just above n / bandwidth.
    grid = kc.grid_size(n / bandwidth + 1.0)
    return kernel_transforms(xp, hooks, scaled, weights, h, grid, n_knots, knot_grad=knot_grad, min_gap=min_gap)
