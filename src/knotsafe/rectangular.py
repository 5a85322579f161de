"""Adaptive rectangular mesh on the rank transforms, differentiable end to end.

A square ``n x n`` mesh is laid out in *rank space*: each axis of the traced
source-plane points is mapped to ``[0, 1]`` by its empirical CDF
(:func:`knotsafe.create_transforms`), so mesh pixels are small where the points
are dense.  This module gives

* :func:`mappings_weights`: the bilinear interpolation corners and weights of
  every (over-sampled) point on the mesh, in the layout of PyAutoArray's
  ``adaptive_rectangular_mappings_weights_via_interpolation_from``;
* :func:`mapping_matrix` and :func:`curvature_matrix`: the dense mapping
  matrix and ``M^T W M``, built with the accumulating scatter-add of the
  backend hooks;
* :func:`pixel_centres` and :func:`pixel_areas`: mesh nodes and cells back in
  the source plane.

Everything is written once against the array API standard; the only
framework-specific pieces (``stop_gradient``, ``scatter_add``) come from
:func:`knotsafe.backends.hooks_for`.  Gradients with respect to the traced
points (and so to lens parameters) are those of :func:`knotsafe.interp`:
finite on duplicate and near-duplicate points, exact elsewhere.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import array_api_compat as compat

from knotsafe._lib.backends.registry import hooks_for
from knotsafe._lib.mesh import MeshInputs, MeshState, scatter_matrix
from knotsafe._lib.rule import KnotGrad
from knotsafe._lib.validation import checks as _checks
from knotsafe._lib.validation import dtypes as _dtypes
from knotsafe._lib.validation import namespace as _namespace
from knotsafe._lib.validation.kernel_args import check_mesh_kernel

__all__ = ["Mesh", "curvature_matrix", "mapping_matrix", "mappings_weights", "pixel_areas", "pixel_centres"]

Array = Any


# --------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------


def _grid_size(source_grid_size: Any) -> int:
    return _namespace.check_integer("source_grid_size", source_grid_size, 3)


def _positive_int(name: str, value: Any) -> int:
    return _namespace.check_integer(name, value, 1)


def _too_large(xp: ModuleType, name: str, grid: Array) -> tuple[Array, str]:
    """The condition "some entry beyond a quarter of the dtype's largest value" and its message.

    Below it ``point - mean`` cannot overflow (the mean lies within the data's
    range); above it the normalisation could turn finite points into inf.
    """
    limit = float(xp.finfo(grid.dtype).max) / 4
    message = f"`{name}` has values beyond {limit:.4g} in magnitude, where the mesh normalisation overflows; rescale it"
    return xp.max(xp.abs(grid)) > limit, message


def _mesh_inputs(
    source_grid_size: Any,
    data_grid: Array,
    data_grid_over_sampled: Array | None,
    mesh_weight_map: Array | None,
    xp: ModuleType | None,
    knot_grad: str,
    min_gap: float | None,
    transform: str = "rank",
    bandwidth: Any = 1.0,
    n_knots: Any = 64,
) -> MeshInputs:
    """Validate the arguments of the mesh functions (reads each array at most once).

    Raises the errors documented in :func:`mappings_weights`; the data checks
    (finite grids, spread, weights) run on concrete arrays only.
    """
    n = _grid_size(source_grid_size)
    bandwidth, n_knots = check_mesh_kernel(transform, bandwidth, n_knots)
    arrays = {"data_grid": data_grid, "data_grid_over_sampled": data_grid_over_sampled}
    xp_, arrs = _namespace.resolve({**arrays, "mesh_weight_map": mesh_weight_map}, xp)
    hooks = hooks_for(xp_)
    _namespace.check_knot_grad(knot_grad)
    gap = _namespace.check_min_gap(min_gap)
    grids = {k: arrs[k] for k in arrays if k in arrs}
    for name, a in grids.items():
        if a.ndim != 2 or a.shape[1] != 2 or a.shape[0] == 0:
            raise ValueError(f"`{name}` must have shape (N, 2) with N >= 1, got {tuple(a.shape)}")
    dtype = _dtypes.result_dtype(xp_, grids)
    comp = _dtypes.compute_dtype(xp_, dtype)
    # The flat indices (n - i_y) * n + i_x reach n * n - 1.
    _dtypes.check_index_range(xp_, _dtypes.default_int(xp_, grids["data_grid"]), n * n, f"a {n} x {n} mesh")
    data = xp_.astype(grids["data_grid"], comp, copy=False)
    spread = xp_.max(data, axis=0) - xp_.min(data, axis=0)
    zero_spread = (xp_.min(spread) > 0, "`data_grid` must have a non-zero spread along both axes")
    verdicts = [
        _checks.check_finite_points(
            xp_, "data_grid", data, [(~zero_spread[0], zero_spread[1]), _too_large(xp_, "data_grid", data)]
        )
    ]
    over = grids.get("data_grid_over_sampled")
    if over is not None:
        over = xp_.astype(over, comp, copy=False)
        verdicts.append(
            _checks.check_finite_points(
                xp_, "data_grid_over_sampled", over, [_too_large(xp_, "data_grid_over_sampled", over)]
            )
        )
    weights = arrs.get("mesh_weight_map")
    if weights is not None:
        _dtypes.result_dtype(xp_, {"mesh_weight_map": weights})
        weights = xp_.astype(weights, comp, copy=False)
        verdicts.append(_checks.check_weights(xp_, "mesh_weight_map", weights, data.shape[0]))
    bad = _checks.any_bad(verdicts)
    return MeshInputs(xp_, hooks, n, data, over, weights, dtype, knot_grad, gap, bad, transform, bandwidth, n_knots)


# --------------------------------------------------------------------------
# mappings and weights
# --------------------------------------------------------------------------


class Mesh:
    """One adaptive rectangular mesh, validated once, with its transforms built once.

    The mesh functions :func:`mappings_weights`, :func:`pixel_centres` and
    :func:`pixel_areas` each validate their arguments, normalise the data
    grid and build its transforms (which sort every column).  A model that
    needs two or three of them for the same data builds one ``Mesh`` and
    asks it: the arguments are checked and each input read once, the
    normalisation computed once, and the transforms built on first use and
    shared.  The results are those of the functions, bitwise.

    Parameters
    ----------
    source_grid_size, data_grid, data_grid_over_sampled, mesh_weight_map, xp, knot_grad, min_gap, transform, \
bandwidth, n_knots
        As in :func:`mappings_weights`; ``data_grid_over_sampled`` is needed
        by :meth:`mappings_weights` only.

    Raises
    ------
    ValueError, TypeError
        As in :func:`mappings_weights`, when the mesh is built.

    Examples
    --------
    >>> import numpy as np
    >>> from knotsafe.rectangular import Mesh
    >>> grid = np.random.default_rng(0).normal(size=(100, 2))
    >>> mesh = Mesh(6, grid, grid)
    >>> indices, weights = mesh.mappings_weights()
    >>> mesh.pixel_areas().shape
    (36,)
    """

    def __init__(
        self,
        source_grid_size: int,
        data_grid: Array,
        data_grid_over_sampled: Array | None = None,
        mesh_weight_map: Array | None = None,
        *,
        xp: ModuleType | None = None,
        knot_grad: KnotGrad = "exact",
        min_gap: float | None = None,
        transform: str = "rank",
        bandwidth: float = 1.0,
        n_knots: int | None = 64,
    ) -> None:
        inputs = _mesh_inputs(
            source_grid_size,
            data_grid,
            data_grid_over_sampled,
            mesh_weight_map,
            xp,
            knot_grad,
            min_gap,
            transform,
            bandwidth,
            n_knots,
        )
        self._state = MeshState(inputs)

    @property
    def source_grid_size(self) -> int:
        """``n``: the mesh has ``n * n`` pixels."""
        return self._state.inputs.n

    def mappings_weights(self) -> tuple[Array, Array]:
        """:func:`mappings_weights` of the over-sampled grid given at construction.

        Raises
        ------
        TypeError
            The mesh was built without ``data_grid_over_sampled``.
        """
        return self._state.mappings_weights()

    def pixel_centres(self) -> Array:
        """:func:`pixel_centres`: node positions, shape (n * n, 2)."""
        return self._state.pixel_centres()

    def pixel_areas(self) -> Array:
        """:func:`pixel_areas`: cell areas, shape (n * n,)."""
        return self._state.pixel_areas()


def mappings_weights(
    source_grid_size: int,
    data_grid: Array,
    data_grid_over_sampled: Array,
    mesh_weight_map: Array | None = None,
    *,
    xp: ModuleType | None = None,
    knot_grad: KnotGrad = "exact",
    min_gap: float | None = None,
    transform: str = "rank",
    bandwidth: float = 1.0,
    n_knots: int | None = 64,
) -> tuple[Array, Array]:
    """Bilinear mesh corners and weights of every over-sampled point.

    A drop-in for PyAutoArray's
    ``adaptive_rectangular_mappings_weights_via_interpolation_from`` (rank
    CDF, with its fixed ``down + 1`` bracketing and row weights), written
    against the array API.

    1. Normalise: ``mu`` = per-axis mean of ``data_grid``, ``scale`` = the
       smaller of the two per-axis population standard deviations (each
       computed on its axis divided by a power of two near the axis's
       largest magnitude, so each axis may have any scale from 1e-300 to
       1e300 and the mesh is the same to rounding; an axis whose std is more
       than 2**32 times the other's is divided by its own std instead, which
       changes only the rounding).
    2. Build the rank transforms of the normalised ``data_grid`` (weighted by
       ``mesh_weight_map`` if given) with :func:`knotsafe.create_transforms`.
    3. Transform the normalised over-sampled grid to ``u`` in ``[0, 1]^2`` and
       go to index space ``index = (n - 3) * u + 1``, so ``index`` lies in
       ``[1, n - 2]``.
    4. Bracket each axis with ``down = clip(floor(index), 0, n - 2)`` and
       ``up = down + 1`` (never ``ceil``, so the cell is always one wide and
       continuous at integer ``index``); ``t = index - down``.

    Layout (``n = source_grid_size``; ``y`` is column 0 of the grids, ``x``
    column 1; flat index ``(n - i_y) * n + i_x``, so larger ``y`` is a
    smaller row, as in an image)::

        row n - up_y    TL (up_y, down_x) --------- TR (up_y, up_x)
                             |                          |
                             |      * (index_y, index_x)|   t_y = index_y - down_y
                             |                          |   t_x = index_x - down_x
        row n - down_y  BL (down_y, down_x) ------- BR (down_y, up_x)
                         col down_x                 col up_x

        indices[:, 0:4] = TL, TR, BL, BR
        weights[:, 0:4] = t_y (1 - t_x), t_y t_x, (1 - t_y)(1 - t_x), (1 - t_y) t_x

    Because ``index >= 1``, ``down >= 1`` and every flat index lies in
    ``[n + 1, n * n - 1]``: row 0 and column 0 are never touched, and row 1
    and column ``n - 1`` only with weight 0 (at ``u = 1``).  They are the
    guard ring of PyAutoArray's node convention (see :func:`pixel_centres`).

    Parameters
    ----------
    source_grid_size : int
        ``n``, the number of mesh pixels per side (``n >= 3``); the mesh has
        ``n * n`` pixels.
    data_grid : array, shape (N, 2)
        Traced (y, x) source-plane points that define the normalisation and
        the rank transforms; finite, with non-zero spread on both axes, and
        within a quarter of the dtype's largest value (float64: 4.49e307).
    data_grid_over_sampled : array, shape (K, 2)
        Traced (y, x) points to map onto the mesh (typically the sub-pixels
        of ``data_grid``); finite.
    mesh_weight_map : array, shape (N,), optional
        Non-negative weights of the ``data_grid`` points (not all zero): the
        ranks become cumulative weights, so pixels shrink where the weights
        are large.
    xp : namespace, optional
        Array namespace; default inferred from the arrays.
    knot_grad, min_gap
        As in :func:`knotsafe.interp`, passed to the transforms.
    transform : {"rank", "kernel"}
        ``"kernel"``: PyAutoArray's kernel-density CDF mesh
        (``create_transforms(method="kernel")`` on the normalised grid, see
        ``docs/kernel-transform.md``).
    bandwidth : float
        ``transform="kernel"`` only: ``h = bandwidth * (max - min) / n`` per
        axis of the normalised grid.
    n_knots : int or None
        ``transform="kernel"`` only: knots of the table inverse used by
        :func:`pixel_centres` and :func:`pixel_areas` (None: exact inverse).

    Returns
    -------
    indices : array, shape (K, 4), the backend's default integer dtype
        Flat mesh-pixel indices of the corners TL, TR, BL, BR.
    weights : array, shape (K, 4), floating dtype of the grids
        Bilinear weights in ``[0, 1]``, summing to 1 per row (float16 and
        bfloat16 grids are computed in float32 and cast back).

    Raises
    ------
    ValueError
        Grids not of shape (N, 2) / (K, 2), not finite or with values beyond
        a quarter of the dtype's largest value; ``data_grid`` with zero
        spread; ``mesh_weight_map`` of the wrong shape, negative, NaN,
        inf or all zero; ``source_grid_size < 3``, or ``n * n`` beyond the
        default integer dtype (int32 on JAX without x64: ``n >= 46341``);
        bad ``knot_grad``/``min_gap``.  Data checks run on concrete arrays
        only, read each input once, and name the count and first bad row;
        under tracing bad data gives NaN weights (with in-range indices).
    TypeError
        Non-integer ``source_grid_size``; arrays from two libraries;
        complex grids or weights (the message names the argument).

    Notes
    -----
    Gradients flow to ``weights`` from ``data_grid`` (knots, ``mu`` and
    ``scale``), ``data_grid_over_sampled`` (queries) and ``mesh_weight_map``
    (ranks), through :func:`knotsafe.interp`'s rule: finite on duplicate and
    near-duplicate points, exact wherever the mapping is differentiable.
    ``indices`` are integers and carry no gradient; ``down`` is computed
    from a ``stop_gradient`` copy of ``index``, so ``d t / d index = 1``.
    The mapping is continuous in the points (a point crossing a cell edge
    hands its weight over continuously); its derivative jumps at cell edges
    and knots.
    """
    inputs = _mesh_inputs(
        source_grid_size,
        data_grid,
        data_grid_over_sampled,
        mesh_weight_map,
        xp,
        knot_grad,
        min_gap,
        transform,
        bandwidth,
        n_knots,
    )
    return MeshState(inputs).mappings_weights()


# --------------------------------------------------------------------------
# mapping and curvature matrices
# --------------------------------------------------------------------------


def _checked_pairs(
    xp: ModuleType, indices: Array, weights: Array, n_pixels: int, *, index_name: str = "indices"
) -> tuple[Array, Array, Array | None]:
    """``(indices, weights, bad_rows)``: checked on concrete arrays (``bad_rows`` None).

    Where the indices cannot be read (under tracing), an out-of-range index
    would be dropped or wrapped by the scatter and give a plausible matrix:
    it is read as 0 instead, and ``bad_rows`` (K,) marks its row, for the
    caller to make NaN.
    """
    if indices.ndim != 2:
        raise ValueError(f"`{index_name}` must be 2-D (K, C), got shape {tuple(indices.shape)}")
    if tuple(weights.shape) != tuple(indices.shape):
        raise ValueError(
            f"`weights` must have the shape of `{index_name}` {tuple(indices.shape)}, got {tuple(weights.shape)}"
        )
    if not xp.isdtype(indices.dtype, "integral"):
        raise TypeError(f"`{index_name}` must be an integer array, got dtype {indices.dtype}")
    if not xp.isdtype(weights.dtype, "real floating"):
        raise TypeError(f"`weights` must be a real floating array, got dtype {weights.dtype}")
    in_range = (indices >= 0) & (indices < n_pixels)
    if _checks.check_all(xp, in_range, f"`{index_name}` must lie in [0, n_pixels) = [0, {n_pixels})") is None:
        return indices, weights, None
    return xp.where(in_range, indices, xp.zeros_like(indices)), weights, ~xp.all(in_range, axis=1)


def _nan_rows(xp: ModuleType, bad_rows: Array | None, matrix: Array) -> Array:
    """``matrix`` with the rows flagged by ``bad_rows`` (or None) all NaN."""
    if bad_rows is None:
        return matrix
    return xp.where(bad_rows[:, None], xp.full_like(matrix, float("nan")), matrix)


def mapping_matrix(
    indices: Array,
    weights: Array,
    n_pixels: int,
    *,
    sub_to_data: Array | None = None,
    n_data: int | None = None,
    xp: ModuleType | None = None,
) -> Array:
    """The dense mapping matrix of sparse ``(indices, weights)`` rows.

    ``M[k, p] = sum(weights[k, c] for c if indices[k, c] == p)``: repeated
    indices within a row accumulate.  With ``sub_to_data`` the rows are
    averaged per data pixel: ``M_data[d] = mean(M[k] for k if sub_to_data[k]
    == d)``.

    Parameters
    ----------
    indices : integer array, shape (K, C)
        Mesh-pixel indices in ``[0, n_pixels)``, e.g. from
        :func:`mappings_weights` (``C = 4``).
    weights : array, shape (K, C)
        Real floating weights.
    n_pixels : int
        Number of mesh pixels (columns of the result).
    sub_to_data : integer array, shape (K,), optional
        Data pixel of every row (``p * S + s -> p`` for the sub-pixel layout
        of :func:`knotsafe.testing.circular_mask_grid`).
    n_data : int, optional
        Number of data pixels; only with ``sub_to_data``.  Default
        ``max(sub_to_data) + 1`` (needs a concrete array; pass it under
        ``jax.jit``).
    xp : namespace, optional
        Array namespace; default inferred from the arrays.

    Returns
    -------
    array, shape (K, n_pixels) or (n_data, n_pixels)
        In the dtype of ``weights``.  Data pixels without sub-pixels get a
        zero row.

    Raises
    ------
    ValueError
        Shapes that disagree; indices outside ``[0, n_pixels)`` or
        ``sub_to_data`` outside ``[0, n_data)`` (concrete arrays; where they
        cannot be read, under tracing, a row with an index out of range is
        NaN, and a ``sub_to_data`` entry out of range makes every entry NaN);
        a result too large for the index dtype.
    TypeError
        Non-integer ``indices``/``sub_to_data``, non-floating ``weights``,
        bad ``n_pixels``/``n_data``, ``n_data`` without ``sub_to_data``.

    Notes
    -----
    Built with the backend's accumulating ``scatter_add`` hook on the flat
    keys ``row * n_pixels + index`` (``bincount`` on NumPy, ``.at[].add`` on
    JAX, ``index_add`` on PyTorch, sort + cumulative sum elsewhere), so it
    is linear in ``weights`` and differentiable with respect to them:
    ``d M[r, p] / d weights[k, c] = [row(k) == r][indices[k, c] == p] /
    count(r)``.  ``indices`` carry no gradient.
    """
    n_pix = _positive_int("n_pixels", n_pixels)
    xp_, arrs = _namespace.resolve({"indices": indices, "weights": weights, "sub_to_data": sub_to_data}, xp)
    idx, w, bad_rows = _checked_pairs(xp_, arrs["indices"], arrs["weights"], n_pix)
    hooks = hooks_for(xp_)
    k = idx.shape[0]
    dev = compat.device(w)
    if sub_to_data is None:
        if n_data is not None:
            raise TypeError("`n_data` is only used with `sub_to_data`")
        n_rows = k
        rows = xp_.arange(k, dtype=idx.dtype, device=dev)
        src = w
        bad_all = None
    else:
        s2d = arrs["sub_to_data"]
        if s2d.ndim != 1 or s2d.shape[0] != k:
            raise ValueError(f"`sub_to_data` must have shape ({k},) (one entry per row), got {tuple(s2d.shape)}")
        if not xp_.isdtype(s2d.dtype, "integral"):
            raise TypeError(f"`sub_to_data` must be an integer array, got dtype {s2d.dtype}")
        if n_data is None:
            if k == 0 or not hooks.is_concrete(s2d):
                raise ValueError("pass `n_data` (it cannot be inferred from a traced or empty `sub_to_data`)")
            n_rows = int(xp_.max(s2d)) + 1
        else:
            n_rows = _positive_int("n_data", n_data)
        s2d_in_range = (s2d >= 0) & (s2d < n_rows)
        bad_all = _checks.check_all(xp_, s2d_in_range, f"`sub_to_data` must lie in [0, n_data) = [0, {n_rows})")
        if bad_all is not None:
            # Unread: an entry out of range belongs to no known data row, so nothing is right.
            s2d = xp_.where(s2d_in_range, s2d, xp_.zeros_like(s2d))
        rows = xp_.astype(s2d, idx.dtype)
        counts = hooks.scatter_add(xp_, n_rows, rows, xp_.ones((k,), dtype=w.dtype, device=dev))
        inv = 1.0 / xp_.where(counts > 0, counts, xp_.ones_like(counts))
        src = w * xp_.take(inv, rows)[:, None]
        if bad_rows is not None:
            # A data row averaging a row with a bad index is NaN.
            bad_rows = hooks.scatter_add(xp_, n_rows, rows, xp_.astype(bad_rows, w.dtype)) > 0
    _dtypes.check_index_range(xp_, idx.dtype, n_rows * n_pix, "the mapping matrix")
    matrix = scatter_matrix(xp_, hooks, rows[:, None] * n_pix + idx, src, (n_rows, n_pix))
    return _checks.poison(xp_, bad_all, _nan_rows(xp_, bad_rows, matrix))


def curvature_matrix(
    indices: Array,
    weights: Array,
    n_pixels: int,
    *,
    noise_weights: Array | None = None,
    xp: ModuleType | None = None,
) -> Array:
    """``F = M^T diag(noise_weights) M`` straight from the sparse rows.

    The dense ``(K, n_pixels)`` mapping matrix is never formed: the
    ``C * C`` corner-pair products of every row are scatter-added into an
    ``n_pixels**2`` array.

    Parameters
    ----------
    indices : integer array, shape (K, C)
        Mesh-pixel indices in ``[0, n_pixels)`` (repeats accumulate).
    weights : array, shape (K, C)
        Real floating weights.
    n_pixels : int
        Number of mesh pixels.
    noise_weights : array, shape (K,), optional
        Per-row weights, typically ``1 / sigma**2``; default 1.
    xp : namespace, optional
        Array namespace; default inferred from the arrays.

    Returns
    -------
    array, shape (n_pixels, n_pixels)
        Symmetric, in the floating dtype of ``weights`` and
        ``noise_weights``; equal to ``M.T @ (noise_weights[:, None] * M)``
        for ``M = mapping_matrix(indices, weights, n_pixels)`` up to
        summation order.

    Raises
    ------
    ValueError
        Shapes that disagree; indices outside ``[0, n_pixels)`` (concrete
        arrays; where they cannot be read, under tracing, such an index
        makes every entry NaN); ``n_pixels**2`` too large for the index
        dtype.
    TypeError
        Non-integer ``indices``, non-floating ``weights``/``noise_weights``,
        bad ``n_pixels``.

    Notes
    -----
    Differentiable with respect to ``weights`` and ``noise_weights``
    (``F`` is quadratic in the weights and linear in ``noise_weights``);
    memory is ``O(K C^2 + n_pixels^2)``.
    """
    n_pix = _positive_int("n_pixels", n_pixels)
    xp_, arrs = _namespace.resolve({"indices": indices, "weights": weights, "noise_weights": noise_weights}, xp)
    idx, w, bad_rows = _checked_pairs(xp_, arrs["indices"], arrs["weights"], n_pix)
    k = idx.shape[0]
    prod = w[:, :, None] * w[:, None, :]
    if noise_weights is not None:
        nw = arrs["noise_weights"]
        if nw.ndim != 1 or nw.shape[0] != k:
            raise ValueError(f"`noise_weights` must have shape ({k},) (one per row), got {tuple(nw.shape)}")
        if not xp_.isdtype(nw.dtype, "real floating"):
            raise TypeError(f"`noise_weights` must be a real floating array, got dtype {nw.dtype}")
        prod = prod * nw[:, None, None]
    _dtypes.check_index_range(xp_, idx.dtype, n_pix * n_pix, "the curvature matrix")
    keys = idx[:, :, None] * n_pix + idx[:, None, :]
    curvature = scatter_matrix(xp_, hooks_for(xp_), keys, prod, (n_pix, n_pix))
    # A row with a bad index adds to pixel pairs it does not belong to: nothing is right.
    return _checks.poison(xp_, None if bad_rows is None else xp_.any(bad_rows), curvature)


# --------------------------------------------------------------------------
# mesh geometry
# --------------------------------------------------------------------------


def pixel_centres(
    source_grid_size: int,
    data_grid: Array,
    mesh_weight_map: Array | None = None,
    *,
    xp: ModuleType | None = None,
    knot_grad: KnotGrad = "exact",
    min_gap: float | None = None,
    transform: str = "rank",
    bandwidth: float = 1.0,
    n_knots: int | None = 64,
) -> Array:
    """Source-plane (y, x) positions of the mesh nodes, in flat pixel order.

    Pixel ``p = r * n + c`` is the node the bilinear weights of
    :func:`mappings_weights` refer to: unit-space ``U_y = (n - 1 - r) / (n -
    3)``, ``U_x = (c - 1) / (n - 3)`` (PyAutoArray's node convention),
    mapped back with the inverse rank transform and the inverse
    normalisation ``inv_transform(U) * scale + mu``.  Rows ``0, 1`` and
    columns ``0, n - 1`` are the guard ring: their ``U`` lies outside
    ``[0, 1]`` and clamps onto the data range.

    Parameters
    ----------
    source_grid_size : int
        ``n >= 3`` mesh pixels per side.
    data_grid : array, shape (N, 2)
        Traced (y, x) points defining the mesh (as in
        :func:`mappings_weights`).
    mesh_weight_map : array, shape (N,), optional
        Weights of the ``data_grid`` points.
    xp, knot_grad, min_gap, transform, bandwidth, n_knots
        As in :func:`mappings_weights`.

    Returns
    -------
    array, shape (n * n, 2)
        ``centres[r * n + c] = (Y[r], X[c])`` with ``Y`` non-increasing in
        ``r`` and ``X`` non-decreasing in ``c``.

    Raises
    ------
    ValueError, TypeError
        As in :func:`mappings_weights`.

    Notes
    -----
    Differentiable with respect to ``data_grid`` and ``mesh_weight_map``
    (the unit-space nodes are constants): the positions are interpolated
    sorted data points, with :func:`knotsafe.interp`'s gradient rule.
    """
    inputs = _mesh_inputs(
        source_grid_size, data_grid, None, mesh_weight_map, xp, knot_grad, min_gap, transform, bandwidth, n_knots
    )
    return MeshState(inputs).pixel_centres()


def pixel_areas(
    source_grid_size: int,
    data_grid: Array,
    mesh_weight_map: Array | None = None,
    *,
    xp: ModuleType | None = None,
    knot_grad: KnotGrad = "exact",
    min_gap: float | None = None,
    transform: str = "rank",
    bandwidth: float = 1.0,
    n_knots: int | None = 64,
) -> Array:
    """Source-plane areas of the mesh cells, in flat pixel order.

    Cell edges are the node midpoints of :func:`pixel_centres`
    (``U_y = (n - 0.5 - r) / (n - 3)`` and ``U_x = (c - 1.5) / (n - 3)``
    for ``r, c = 0..n``), mapped back to the source plane; ``area[r * n + c]
    = (Y[r] - Y[r + 1]) * (X[c + 1] - X[c])``.  Guard cells outside the data
    range have zero area and the areas sum to the bounding-box area of
    ``data_grid``.

    Parameters
    ----------
    source_grid_size, data_grid, mesh_weight_map, xp, knot_grad, min_gap, transform, bandwidth, n_knots
        As in :func:`pixel_centres`.

    Returns
    -------
    array, shape (n * n,)
        Non-negative areas (the inverse transform is monotone, so no
        ``abs`` is needed and gradients stay those of the edges).

    Raises
    ------
    ValueError, TypeError
        As in :func:`mappings_weights`.
    """
    inputs = _mesh_inputs(
        source_grid_size, data_grid, None, mesh_weight_map, xp, knot_grad, min_gap, transform, bandwidth, n_knots
    )
    return MeshState(inputs).pixel_areas()
