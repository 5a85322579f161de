"""Drop-in replacements for PyAutoArray's rectangular-mesh transforms, on knotsafe.

PyAutoArray (the array layer of PyAutoLens) maps the traced source-plane points
of its adaptive rectangular meshes to the unit square with a per-axis CDF, built
in ``autoarray.inversion.mesh.interpolator.rectangular`` by two functions:

* :func:`create_transforms_rank`: the empirical (rank) CDF of the
  ``RectangularBilinearAdaptDensity`` / ``RectangularBilinearAdaptImage``
  meshes;
* :func:`create_transforms`: the kernel-density CDF of the
  ``RectangularRTUAdaptDensity`` / ``RectangularRTUAdaptImage`` meshes.

This module gives both with PyAutoArray's names, signatures and conventions
(``mesh_pixels``, ``bandwidth`` in units of ``span / mesh_pixels``, the
``n_knots`` table inverse, raw cumulative weights with right-continuous ties),
computed by knotsafe: :func:`knotsafe.interp` for the rank CDF (NumPy's
forward values on every backend, finite gradients on duplicate points) and
``knotsafe.create_transforms(method="kernel")`` for the kernel CDF (O(K + N)
instead of the exact O(K x N) sum).  It also gives the three mesh functions that
call them (:func:`adaptive_rectangular_mappings_weights_via_interpolation_from`,
:func:`adaptive_rectangular_transformed_grid_from`,
:func:`adaptive_rectangular_areas_from`), written against the array API.

:func:`patch` (or the context manager :func:`patched`) makes an installed
autoarray use the two transforms: autoarray's only caller, ``_transforms_from``,
looks them up as module globals on every call, so replacing the two globals is
enough.  A function compiled with ``jax.jit`` before the patch keeps the
transforms it was traced with; jit after patching.

Importing this module imports NumPy (the ``xp=np`` defaults), not autoarray;
:func:`patch` imports autoarray.  Install with ``pip install knotsafe[autoarray]``.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import threading
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import array_api_compat as compat
import numpy as np

import knotsafe

# knotsafe's rank arithmetic: the fixed-order (pairwise) cumulative sum and the division that XLA
# cannot rewrite, which round identically on every backend, so weighted ranks are bitwise equal everywhere.
from knotsafe._lib.ranks import _cumulative_sum, _divide
from knotsafe.backends import hooks_for

__all__ = [
    "KERNEL_CDF_DEFAULT_BANDWIDTH",
    "KERNEL_CDF_DEFAULT_KNOTS",
    "SUPPORTED_AUTOARRAY_VERSIONS",
    "TARGET_MODULE",
    "UnsupportedAutoarrayError",
    "adaptive_rectangular_areas_from",
    "adaptive_rectangular_mappings_weights_via_interpolation_from",
    "adaptive_rectangular_transformed_grid_from",
    "create_transforms",
    "create_transforms_rank",
    "is_patched",
    "patch",
    "patched",
    "unpatch",
]

Array = Any
Transform = Callable[[Array], Array]

#: autoarray's defaults (``KERNEL_CDF_DEFAULT_BANDWIDTH``, ``KERNEL_CDF_DEFAULT_KNOTS``).
KERNEL_CDF_DEFAULT_BANDWIDTH: float = 1.0
KERNEL_CDF_DEFAULT_KNOTS: int = 64

#: The autoarray releases :func:`patch` was tested with (``nox -s autolens``); any other is refused.
SUPPORTED_AUTOARRAY_VERSIONS: tuple[str, ...] = ("2026.10.26.1",)
#: The module whose globals :func:`patch` replaces.
TARGET_MODULE = "autoarray.inversion.mesh.interpolator.rectangular"

# The replaced globals and the parameters autoarray's versions of them take, in order;
# ``_transforms_from`` (the caller) must exist too, or the patch would change nothing.
_SIGNATURES: dict[str, tuple[str, ...]] = {
    "create_transforms_rank": ("traced_points", "mesh_weight_map", "xp"),
    "create_transforms": ("traced_points", "mesh_pixels", "mesh_weight_map", "bandwidth", "n_knots", "xp"),
}
_CALLER = "_transforms_from"


class UnsupportedAutoarrayError(RuntimeError):
    """The installed autoarray is not one :func:`patch` was tested with (nothing was patched)."""


# --------------------------------------------------------------------------
# argument handling
# --------------------------------------------------------------------------


def _namespace(xp: Any) -> ModuleType:
    """The array-API namespace of autoarray's ``xp`` argument (``numpy``, ``jax.numpy``, ...)."""
    if not hasattr(xp, "asarray"):
        raise TypeError(f"`xp` must be an array library such as numpy or jax.numpy, got {xp!r}")
    ns: ModuleType = compat.array_namespace(xp.asarray(0.0))
    return ns


def _floating(ns: ModuleType, name: str, a: Any) -> Array:
    """``a`` as an array of ``ns`` with a real floating dtype (integers take the default float)."""
    try:
        arr = ns.asarray(a)
    except Exception as exc:
        raise TypeError(f"`{name}` must be an array of the `xp` library, got {type(a).__name__}") from exc
    if ns.isdtype(arr.dtype, "complex floating") or ns.isdtype(arr.dtype, "bool"):
        raise TypeError(f"`{name}` must be real, got dtype {arr.dtype}")
    if not ns.isdtype(arr.dtype, "real floating"):
        arr = ns.astype(arr, ns.asarray(0.0).dtype)
    return arr


def _concrete(ns: ModuleType, a: Array) -> bool:
    """Whether ``a``'s data can be read (not a ``jax.jit`` tracer, not a lazy Dask array)."""
    return bool(hooks_for(ns).is_concrete(a)) and not compat.is_lazy_array(a)


def _points(ns: ModuleType, traced_points: Any) -> Array:
    points = _floating(ns, "traced_points", traced_points)
    if points.ndim != 2 or points.shape[0] == 0 or points.shape[1] == 0:
        raise ValueError(f"`traced_points` must have shape (N, 2) with N >= 1, got {tuple(points.shape)}")
    if _concrete(ns, points) and not bool(ns.all(ns.isfinite(points))):
        raise ValueError("`traced_points` must be finite (no NaN or inf)")
    return points


def _weights(ns: ModuleType, mesh_weight_map: Any, points: Array) -> Array | None:
    if mesh_weight_map is None:
        return None
    w = _floating(ns, "mesh_weight_map", mesh_weight_map)
    n = points.shape[0]
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"`mesh_weight_map` must have shape ({n},) (one weight per point), got {tuple(w.shape)}")
    w = ns.astype(w, points.dtype, copy=False)
    if _concrete(ns, w) and not bool(ns.all(ns.isfinite(w) & (w >= 0) & ns.any(w > 0))):
        raise ValueError("`mesh_weight_map` must be finite and non-negative, and not all zero")
    return w


def _mesh_pixels(mesh_pixels: Any) -> int:
    if isinstance(mesh_pixels, bool) or not isinstance(mesh_pixels, (int, np.integer)):
        raise TypeError(f"`mesh_pixels` must be an integer (mesh pixels per axis), got {mesh_pixels!r}")
    if int(mesh_pixels) < 1:
        raise ValueError(f"`mesh_pixels` must be >= 1, got {mesh_pixels!r}")
    return int(mesh_pixels)


def _bandwidth(bandwidth: Any) -> float | None:
    """A Python number (checked here), or None for an array bandwidth (checked by knotsafe)."""
    if isinstance(bandwidth, bool):
        raise TypeError(f"`bandwidth` must be a positive number, got {bandwidth!r}")
    if isinstance(bandwidth, (int, float, np.integer, np.floating)):
        bw = float(bandwidth)
        if not (0 < bw < float("inf")):
            raise ValueError(f"`bandwidth` must be positive and finite, got {bandwidth!r}")
        return bw
    return None


# --------------------------------------------------------------------------
# the rank (empirical CDF) transform
# --------------------------------------------------------------------------


def _unweighted_ranks(ns: ModuleType, column: Array) -> Array:
    """``arange(1, N + 1) / (N + 1)``, correctly rounded on every backend.

    The positions are a cumulative sum of ones (exact integers), so no device
    argument is needed; dividing by ``where(isnan(p), p, N + 1)`` instead of
    the constant keeps XLA from turning the division into a multiplication
    by ``1 / (N + 1)``, which rounds differently from NumPy.
    """
    positions = ns.cumulative_sum(ns.ones_like(column))
    return positions / ns.where(ns.isnan(positions), positions, ns.full_like(positions, column.shape[0] + 1))


def _rank_columns(ns: ModuleType, points: Array, weights: Array | None) -> list[tuple[Array, Array]]:
    """Per column: the sorted points (knots) and autoarray's CDF values at them.

    Unweighted: ``(1, ..., N) / (N + 1)``.  Weighted: the cumulative weights
    in sort order, every point of a tie run taking the run's last (largest)
    cumulative weight, the right-continuous empirical CDF of autoarray's tie
    fix.  Columns are sorted by (value, weight), so the order in which the
    weights are summed depends on the multiset of (point, weight) pairs only,
    and the sum is the fixed-order pairwise scan: the ranks are bitwise the
    same whatever the input order, on every backend.
    """
    hooks = hooks_for(ns)
    out = []
    if weights is None:
        for d in range(points.shape[1]):
            knots = ns.sort(points[:, d])
            out.append((knots, _unweighted_ranks(ns, knots)))
        return out
    by_weight = ns.argsort(weights, stable=True)
    sorted_weights = ns.take(weights, by_weight)
    for d in range(points.shape[1]):
        col = ns.take(points[:, d], by_weight)
        order = ns.argsort(col, stable=True)
        knots = ns.take(col, order)
        cum = _cumulative_sum(ns, hooks.consolidate, ns.take(sorted_weights, order))
        run_end = hooks.searchsorted(ns, knots, knots) - 1  # last position of each point's tie run
        out.append((knots, ns.take(cum, run_end)))
    return out


def _rank_forward(ns: ModuleType, knots: Array, ranks: Array, q: Array) -> Array:
    """``numpy.interp(q, knots, ranks, left=0, right=1)``, a query on a knot taking that knot's rank.

    A query equal to a knot is, in a mesh fit, a traced point itself (every
    query at over-sampling 1).  Its value is the rank there, a function of
    the order and the weights only: as the points move, a tie between two
    of them breaks into ranks ``r`` and ``r + 1`` and the value steps, so it
    is piecewise constant with zero derivative on either side.  The value is
    ``numpy.interp``'s (``ranks[j]`` at ``q == knots[j]``, ``j`` the last of a
    tie run), and its gradient reaches the weights only, never the
    positions; elsewhere :func:`knotsafe.interp`'s derivative applies.
    """
    hooks = hooks_for(ns)
    n = knots.shape[0]
    j = ns.clip(hooks.searchsorted(ns, knots, q) - 1, 0, n - 1)
    on_knot = ns.take(knots, j) == q
    between = knotsafe.interp(q, knots, ranks, left=0.0, right=1.0, xp=ns)
    return ns.where(on_knot, ns.take(ranks, j), between)


def create_transforms_rank(
    traced_points: Array, mesh_weight_map: Array | None = None, xp: Any = np
) -> tuple[Transform, Transform]:
    """autoarray's empirical (rank) CDF transform pair, on knotsafe.

    Per column ``d`` of the points, with the points sorted into knots
    ``s_d`` and their CDF values ``t_d``:
    ``transform(q)[:, d] = interp(q[:, d], s_d, t_d, left=0, right=1)`` and
    ``inv_transform(u)[:, d] = interp(u[:, d], t_d, s_d)`` (clamped), with
    ``numpy.interp``'s values on every backend.

    Parameters
    ----------
    traced_points : array, shape (N, 2)
        The scaled source-plane points the CDF adapts to (finite).
    mesh_weight_map : array, shape (N,), optional
        Adapt-image weights (finite, non-negative, not all zero).  ``None``:
        ``t = (1, ..., N) / (N + 1)``.  Given: ``t`` is the raw cumulative sum
        of the weights in sort order (autoarray normalises the weight map to
        sum 1, so ``t`` ends at 1), every point of a run of tied coordinates
        taking the run's final cumulative weight (the right-continuous
        empirical CDF of autoarray's tie fix).
    xp : module
        The array library (``numpy``, ``jax.numpy``, ``torch``,
        ``array_api_strict``, ...); arrays of another library are converted
        with ``xp.asarray`` where it can.

    Returns
    -------
    transform : callable
        ``(K, 2) -> (K, 2)`` unit-square coordinates: 0 below a column's
        smallest point, 1 above its largest.
    inv_transform : callable
        ``(K, 2) -> (K, 2)`` scaled source-plane coordinates, clamped to
        each column's range.

    Raises
    ------
    ValueError
        ``traced_points`` not (N, D) with N >= 1 or not finite;
        ``mesh_weight_map`` of the wrong shape, negative, NaN, inf or all
        zero (data checks on concrete arrays only).
    TypeError
        An ``xp`` that is not an array library; complex or boolean arrays.

    Notes
    -----
    Differences from autoarray's own function, all by design:

    * Its JAX branch uses ``jax.numpy.interp``, which at a query equal to a
      duplicated knot returns a different tie's rank from ``numpy.interp``
      (one step of ``1 / (N + 1)`` apart), so a mirror-symmetric lens gave
      NumPy and JAX different likelihoods; here every backend gives
      ``numpy.interp``'s value, bitwise.
    * Weighted ties are summed in (value, weight) order with a fixed-order
      sum, so the weighted ranks are bitwise equal on every backend;
      autoarray's ``cumsum`` order follows its ``argsort`` (rounding-level
      differences).
    * Gradients: with respect to the points they are those of
      :func:`knotsafe.interp` (finite on duplicate knots), except that a
      query exactly on a knot (a traced point mapped onto its own mesh, as at
      over-sampling 1) has zero gradient with respect to positions: its
      value is a rank, constant between the events where points swap order.
      At over-sampling 1 the likelihood of a rank mesh is therefore piecewise
      constant and its gradient zero, also at a symmetric lens, where
      autoarray's JAX branch reports large meaningless slopes.
    """
    ns = _namespace(xp)
    points = _points(ns, traced_points)
    weights = _weights(ns, mesh_weight_map, points)
    columns = _rank_columns(ns, points, weights)
    dim = points.shape[1]

    def queries(a: Any, name: str) -> Array:
        arr = _floating(ns, name, a)
        if arr.ndim != 2 or arr.shape[1] != dim:
            raise ValueError(f"`{name}` must have shape (K, {dim}), got {tuple(arr.shape)}")
        return ns.astype(arr, ns.result_type(arr.dtype, points.dtype), copy=False)

    def transform(q: Array) -> Array:
        """Unit-square coordinates of scaled source-plane points ``q`` (K, 2)."""
        qq = queries(q, "q")
        return ns.stack(
            [
                _rank_forward(ns, ns.astype(k, qq.dtype), ns.astype(t, qq.dtype), qq[:, d])
                for d, (k, t) in enumerate(columns)
            ],
            axis=1,
        )

    def inv_transform(u: Array) -> Array:
        """Scaled source-plane points of unit-square coordinates ``u`` (K, 2)."""
        uu = queries(u, "u")
        return ns.stack(
            [
                knotsafe.interp(uu[:, d], ns.astype(t, uu.dtype), ns.astype(k, uu.dtype), xp=ns)
                for d, (k, t) in enumerate(columns)
            ],
            axis=1,
        )

    return transform, inv_transform


# --------------------------------------------------------------------------
# the kernel-density CDF transform
# --------------------------------------------------------------------------


def create_transforms(
    traced_points: Array,
    mesh_pixels: int,
    mesh_weight_map: Array | None = None,
    bandwidth: float = KERNEL_CDF_DEFAULT_BANDWIDTH,
    n_knots: int = KERNEL_CDF_DEFAULT_KNOTS,
    xp: Any = np,
) -> tuple[Transform, Transform]:
    """autoarray's kernel-density CDF transform pair, on knotsafe.

    Per column, with weights ``w_i`` normalised to sum 1 (``1 / N`` without a
    weight map), ``lo``/``hi`` the column's smallest and largest point and
    ``h = bandwidth * (hi - lo) / mesh_pixels``::

        F(q) = sum_i w_i Phi((q - p_i) / h)
        transform(q) = clip((F(q) - F(lo)) / (F(hi) - F(lo)), 0, 1)

    and ``inv_transform`` is autoarray's table inverse: ``knots = lo +
    linspace(0, 1, n_knots) * (hi - lo)``, ``interp(u, transform(knots),
    knots)`` per column (clamped).  Computed by
    ``knotsafe.create_transforms(method="kernel")``: within ``1e-12`` of the
    exact sum in float64, in O(N + K) instead of autoarray's O(K x N).

    Parameters
    ----------
    traced_points : array, shape (N, 2)
        The scaled source-plane points (finite, with a non-zero spread per
        column).
    mesh_pixels : int
        Mesh pixels per axis (autoarray passes the mesh's ``shape[0]``).
    mesh_weight_map : array, shape (N,), optional
        Adapt-image weights (finite, non-negative, not all zero), normalised
        here to sum 1.
    bandwidth : float
        The kernel width in units of the mesh pixel scale ``(hi - lo) /
        mesh_pixels`` (autoarray's unit).
    n_knots : int
        Knots of the table inverse (>= 2).
    xp : module
        The array library (``numpy``, ``jax.numpy``, ``torch``, ...).

    Returns
    -------
    transform, inv_transform : callable
        ``(K, 2) -> (K, 2)``, as in :func:`create_transforms_rank`.

    Raises
    ------
    ValueError
        As :func:`create_transforms_rank`; a column with zero spread;
        ``mesh_pixels < 1``; ``bandwidth`` not positive and finite;
        ``n_knots < 2``.
    TypeError
        Non-integer ``mesh_pixels`` or ``n_knots``; as
        :func:`create_transforms_rank`.

    Notes
    -----
    The node grid of knotsafe's kernel CDF has a static size, set here from
    ``span / h = mesh_pixels / bandwidth``, so the transform runs under
    ``jax.jit`` with traced points and weights.  Gradients are exact
    derivatives of the interpolated CDF (within the same ``1e-12`` relative
    accuracy), with respect to points, weights and queries.
    """
    ns = _namespace(xp)
    pixels = _mesh_pixels(mesh_pixels)
    points = _points(ns, traced_points)
    weights = _weights(ns, mesh_weight_map, points)
    bw = _bandwidth(bandwidth)
    span = ns.max(points, axis=0) - ns.min(points, axis=0)
    if _concrete(ns, span) and not bool(ns.all(span > 0)):
        # Else h = 0 and knotsafe would name the bandwidth, not its cause.
        raise ValueError("`traced_points` has a column with zero spread: the kernel CDF is normalised by its span")
    h = (bw if bw is not None else bandwidth) * span / pixels
    # span / h is mesh_pixels / bandwidth; +1 covers its rounding (a static bound sizes the node grid).
    ratio = pixels / bw + 1.0 if bw is not None else None
    transform: Transform
    inv_transform: Transform
    transform, inv_transform = knotsafe.create_transforms(
        points, weights, method="kernel", kernel_std=h, n_knots=n_knots, span_ratio=ratio, xp=ns
    )
    return transform, inv_transform


# --------------------------------------------------------------------------
# the mesh functions that call the transforms
# --------------------------------------------------------------------------


def _transforms_from(
    source_grid_scaled: Array,
    mesh_pixels: int,
    mesh_weight_map: Array | None,
    bandwidth: float,
    n_knots: int,
    transform: str,
    xp: Any,
) -> tuple[Transform, Transform]:
    """autoarray's dispatch: ``"rank"`` (Bilinear meshes) or ``"kernel"`` (RTU meshes)."""
    if transform == "rank":
        return create_transforms_rank(source_grid_scaled, mesh_weight_map=mesh_weight_map, xp=xp)
    if transform != "kernel":
        raise ValueError(f"`transform` must be 'rank' or 'kernel', got {transform!r}")
    return create_transforms(
        source_grid_scaled,
        mesh_pixels=mesh_pixels,
        mesh_weight_map=mesh_weight_map,
        bandwidth=bandwidth,
        n_knots=n_knots,
        xp=xp,
    )


def _normalised(ns: ModuleType, data_grid: Any) -> tuple[Array, Array, Array]:
    """``(data - mu) / scale``, ``mu`` (per-axis mean), ``scale`` (smaller population std)."""
    data = _points(ns, data_grid)
    mu = ns.mean(data, axis=0)
    scale = ns.min(ns.std(data, axis=0, correction=0))
    return _divide(ns, data - mu, scale), mu, scale


def adaptive_rectangular_transformed_grid_from(
    data_grid: Array,
    grid: Array,
    mesh_pixels: int,
    mesh_weight_map: Array | None = None,
    bandwidth: float = KERNEL_CDF_DEFAULT_BANDWIDTH,
    n_knots: int = KERNEL_CDF_DEFAULT_KNOTS,
    transform: str = "kernel",
    xp: Any = np,
) -> Array:
    """Unit-square coordinates ``grid`` (K, 2) mapped back to the source plane (autoarray's function).

    ``inv_transform(grid) * scale + mu`` with ``mu`` the per-axis mean of
    ``data_grid``, ``scale`` the smaller per-axis population standard
    deviation and ``inv_transform`` that of :func:`create_transforms_rank`
    (``transform="rank"``) or :func:`create_transforms` (``"kernel"``) of
    the normalised data grid.

    Parameters
    ----------
    data_grid : array, shape (N, 2)
        Traced (y, x) source-plane points.
    grid : array, shape (K, 2)
        Unit-square coordinates.
    mesh_pixels, mesh_weight_map, bandwidth, n_knots
        As in :func:`create_transforms`.
    transform : {"kernel", "rank"}
        Which CDF.
    xp : module
        The array library.

    Returns
    -------
    array, shape (K, 2)
        Source-plane (y, x) coordinates.
    """
    ns = _namespace(xp)
    scaled, mu, scale = _normalised(ns, data_grid)
    _, inverse = _transforms_from(scaled, mesh_pixels, mesh_weight_map, bandwidth, n_knots, transform, xp)
    return inverse(grid) * scale + mu


def adaptive_rectangular_areas_from(
    source_grid_shape: tuple[int, int],
    data_grid: Array,
    mesh_weight_map: Array | None = None,
    bandwidth: float = KERNEL_CDF_DEFAULT_BANDWIDTH,
    n_knots: int = KERNEL_CDF_DEFAULT_KNOTS,
    transform: str = "kernel",
    xp: Any = np,
) -> Array:
    """Source-plane areas of the mesh pixels (autoarray's function), flat (rows * cols,).

    Edges at unit-square ``y = linspace(1, 0, rows + 1)`` and ``x =
    linspace(0, 1, cols + 1)`` are mapped back with
    :func:`adaptive_rectangular_transformed_grid_from`'s inverse (with
    ``mesh_pixels = rows``); ``area[r * cols + c] = |dy[r] * dx[c]|``.

    Parameters
    ----------
    source_grid_shape : (int, int)
        Mesh pixels ``(rows, cols)``.
    data_grid, mesh_weight_map, bandwidth, n_knots, transform, xp
        As in :func:`adaptive_rectangular_transformed_grid_from`.

    Returns
    -------
    array, shape (rows * cols,)
        Non-negative areas.
    """
    ns = _namespace(xp)
    rows, cols = (int(s) for s in source_grid_shape)
    scaled, mu, scale = _normalised(ns, data_grid)
    _, inverse = _transforms_from(scaled, rows, mesh_weight_map, bandwidth, n_knots, transform, xp)
    dtype = scaled.dtype
    edges_y = ns.linspace(1.0, 0.0, rows + 1, dtype=dtype)
    edges_x = ns.linspace(0.0, 1.0, cols + 1, dtype=dtype)
    # autoarray stacks the two edge lines into one (rows + 1, 2) array, which needs rows == cols;
    # the columns are transformed independently, so two arrays give the same for any shape.
    ey = (inverse(ns.stack([edges_y, ns.full_like(edges_y, 0.5)], axis=1)) * scale + mu)[:, 0]
    ex = (inverse(ns.stack([ns.full_like(edges_x, 0.5), edges_x], axis=1)) * scale + mu)[:, 1]
    dy = ey[1:] - ey[:-1]
    dx = ex[1:] - ex[:-1]
    return ns.abs(ns.reshape(dy[:, None] * dx[None, :], (-1,)))


def adaptive_rectangular_mappings_weights_via_interpolation_from(
    source_grid_size: int,
    data_grid: Array,
    data_grid_over_sampled: Array,
    mesh_weight_map: Array | None = None,
    bandwidth: float = KERNEL_CDF_DEFAULT_BANDWIDTH,
    n_knots: int = KERNEL_CDF_DEFAULT_KNOTS,
    transform: str = "kernel",
    xp: Any = np,
) -> tuple[Array, Array]:
    """Bilinear mesh corners and weights of the over-sampled points (autoarray's function).

    ``index = (n - 3) * u + 1`` with ``u`` the transform of the normalised
    over-sampled grid (normalised with the data grid's ``mu`` and
    ``scale``), ``down = clip(floor(index), 0, n - 2)``, ``up = down + 1``,
    ``t = index - down``; corners TL, TR, BL, BR at flat index ``(n - i_y) *
    n + i_x`` with weights ``t_y (1 - t_x), t_y t_x, (1 - t_y)(1 - t_x),
    (1 - t_y) t_x`` (``y`` is column 0).  See ``docs/rectangular.md`` for the
    layout.

    Parameters
    ----------
    source_grid_size : int
        ``n``, mesh pixels per side.
    data_grid : array, shape (N, 2)
        Traced (y, x) points defining the normalisation and the CDF.
    data_grid_over_sampled : array, shape (K, 2)
        Traced (y, x) points to map onto the mesh.
    mesh_weight_map, bandwidth, n_knots, transform, xp
        As in :func:`adaptive_rectangular_transformed_grid_from`.

    Returns
    -------
    indices : array, shape (K, 4), the library's default integer dtype
        Flat mesh indices of the corners TL, TR, BL, BR.
    weights : array, shape (K, 4)
        Their bilinear weights (summing to 1 per row).
    """
    ns = _namespace(xp)
    n = int(source_grid_size)
    scaled, mu, scale = _normalised(ns, data_grid)
    forward, _ = _transforms_from(scaled, n, mesh_weight_map, bandwidth, n_knots, transform, xp)
    over = _floating(ns, "data_grid_over_sampled", data_grid_over_sampled)
    index = (n - 3) * forward(_divide(ns, over - mu, scale)) + 1
    down = ns.clip(ns.floor(index), 0.0, float(n - 2))
    t = index - down
    ty, tx = t[:, 0], t[:, 1]
    dy, dx = down[:, 0], down[:, 1]
    top = (n - (dy + 1)) * n
    bottom = (n - dy) * n
    flat = ns.stack([top + dx, top + dx + 1, bottom + dx, bottom + dx + 1], axis=1)
    indices = ns.astype(flat, ns.asarray(0).dtype)
    weights = ns.stack([ty * (1 - tx), ty * tx, (1 - ty) * (1 - tx), (1 - ty) * tx], axis=1)
    return indices, weights


# --------------------------------------------------------------------------
# patching an installed autoarray
# --------------------------------------------------------------------------

_REPLACEMENTS: dict[str, Callable[..., Any]] = {
    "create_transforms_rank": create_transforms_rank,
    "create_transforms": create_transforms,
}
_lock = threading.RLock()
# While patched: the module and the globals it had before.
_saved: dict[str, Any] = {}


def _supported_range() -> str:
    versions = sorted(SUPPORTED_AUTOARRAY_VERSIONS)
    if len(versions) == 1:
        return f"autoarray == {versions[0]}"
    return f"autoarray {versions[0]} to {versions[-1]} (tested: {', '.join(versions)})"


def _target() -> ModuleType:
    """autoarray's rectangular-interpolator module, after checking the version and the functions."""
    try:
        package = importlib.import_module("autoarray")
    except ImportError as exc:
        raise ImportError(
            "knotsafe.autoarray.patch() needs autoarray (PyAutoLens' array library): pip install knotsafe[autoarray]"
        ) from exc
    version = getattr(package, "__version__", None)
    if version not in SUPPORTED_AUTOARRAY_VERSIONS:
        raise UnsupportedAutoarrayError(
            f"knotsafe.autoarray supports {_supported_range()}; the installed autoarray is {version}. "
            "Nothing was patched."
        )
    module = importlib.import_module(TARGET_MODULE)
    if not callable(getattr(module, _CALLER, None)):
        raise UnsupportedAutoarrayError(
            f"{TARGET_MODULE} has no `{_CALLER}`, the caller the patch relies on. Nothing was patched."
        )
    for name, params in _SIGNATURES.items():
        fn = getattr(module, name, None)
        if fn is _REPLACEMENTS[name]:
            continue
        try:
            found = tuple(inspect.signature(fn).parameters) if callable(fn) else None
        except (TypeError, ValueError):
            found = None
        if found != params:
            raise UnsupportedAutoarrayError(
                f"{TARGET_MODULE}.{name} has parameters {found}, expected {params} "
                f"(supported: {_supported_range()}). Nothing was patched."
            )
    return module


def patch() -> None:
    """Make an installed autoarray build its rectangular-mesh transforms with knotsafe.

    Replaces ``create_transforms_rank`` and ``create_transforms`` in
    ``autoarray.inversion.mesh.interpolator.rectangular`` (the globals its
    ``_transforms_from`` looks up on every call) with this module's.
    Idempotent; undone by :func:`unpatch`.  Everything is checked before
    anything is replaced: either both are replaced or neither.

    Raises
    ------
    ImportError
        autoarray is not installed.
    UnsupportedAutoarrayError
        The installed autoarray is not a version in
        :data:`SUPPORTED_AUTOARRAY_VERSIONS`, or its functions do not have the
        expected names and parameters.

    Notes
    -----
    Functions already compiled with ``jax.jit`` keep the transforms they were
    traced with: jit (or re-create the fit's jitted function) after patching.
    """
    with _lock:
        module = _target()
        if _saved:
            return
        originals = {name: getattr(module, name) for name in _REPLACEMENTS}
        _saved.update(module=module, originals=originals)
        for name, fn in _REPLACEMENTS.items():
            setattr(module, name, fn)


def unpatch() -> None:
    """Restore the functions :func:`patch` replaced (a no-op when not patched)."""
    with _lock:
        if not _saved:
            return
        module = _saved["module"]
        for name, fn in _saved["originals"].items():
            setattr(module, name, fn)
        _saved.clear()


def is_patched() -> bool:
    """Whether :func:`patch` is in effect."""
    return bool(_saved)


@contextlib.contextmanager
def patched() -> Iterator[None]:
    """Context manager: :func:`patch` on entry, :func:`unpatch` on exit unless already patched before.

    Examples
    --------
    >>> import knotsafe.autoarray  # doctest: +SKIP
    >>> with knotsafe.autoarray.patched():  # doctest: +SKIP
    ...     fit = al.FitImaging(dataset=dataset, tracer=tracer, xp=jnp)
    """
    with _lock:
        was_patched = is_patched()
        patch()
    try:
        yield
    finally:
        if not was_patched:
            unpatch()
