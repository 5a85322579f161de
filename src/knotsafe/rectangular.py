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

import operator
from collections.abc import Callable
from types import ModuleType
from typing import Any

import array_api_compat as compat

from knotsafe._lib import _namespace as ns
from knotsafe._lib._kernel_transform import mesh_transforms
from knotsafe.backends import hooks_for
from knotsafe.interp import KnotGrad
from knotsafe.transforms import Transform, create_transforms, rank_knots

__all__ = ["curvature_matrix", "mapping_matrix", "mappings_weights", "pixel_areas", "pixel_centres"]

Array = Any
#: A peer interpolation ``(x, knots, values, *, xp) -> array`` for the private
#: comparison path (see :func:`_mappings_weights`).
PeerInterp = Callable[..., Array]


# --------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------


def _integer(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"`{name}` must be an integer, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError as exc:
        raise TypeError(f"`{name}` must be an integer, got {value!r}") from exc
    if v < minimum:
        raise ValueError(f"`{name}` must be at least {minimum}, got {v}")
    return v


def _grid_size(source_grid_size: Any) -> int:
    return _integer("source_grid_size", source_grid_size, 3)


def _positive_int(name: str, value: Any) -> int:
    return _integer(name, value, 1)


def _points(xp: ModuleType, name: str, a: Array, dtype: Any) -> Array:
    if a.ndim != 2 or a.shape[1] != 2 or a.shape[0] == 0:
        raise ValueError(f"`{name}` must have shape (N, 2) with N >= 1, got {tuple(a.shape)}")
    a = xp.astype(a, dtype, copy=False)
    if ns.holds(xp, xp.isfinite(a)) is False:
        raise ValueError(f"`{name}` must be finite (no NaN or inf)")
    return a


def _resolve_mesh_inputs(
    arrays: dict[str, Array | None], xp: ModuleType | None, knot_grad: str, min_gap: float | None
) -> tuple[ModuleType, dict[str, Array], float | None]:
    """Namespace, checked (N, 2)/(K, 2) float grids and checked (N,) weight map."""
    xp_, arrs = ns.resolve(arrays, xp)
    ns.check_knot_grad(knot_grad)
    gap = ns.check_min_gap(min_gap)
    grids = [k for k in ("data_grid", "data_grid_over_sampled") if k in arrs]
    dtype = ns.float_dtype(xp_, *(arrs[k] for k in grids))
    out: dict[str, Array] = {k: _points(xp_, k, arrs[k], dtype) for k in grids}
    n = out["data_grid"].shape[0]
    wmap = arrs.get("mesh_weight_map")
    if wmap is not None:
        out["mesh_weight_map"] = ns.check_weights(xp_, wmap, n, dtype, "mesh_weight_map")
    return xp_, out, gap


def _default_int(xp: ModuleType, like: Array) -> Any:
    info = xp.__array_namespace_info__()
    return info.default_dtypes(device=compat.device(like))["integral"]


# --------------------------------------------------------------------------
# normalisation and transforms
# --------------------------------------------------------------------------


def _normalisation(xp: ModuleType, data_grid: Array) -> tuple[Array, Array]:
    """``mu`` (2,) = per-axis mean and ``scale`` = the smaller population std.

    ``correction=0`` is explicit: ``torch.std`` defaults to the sample std.
    """
    mu = xp.mean(data_grid, axis=0)
    scale = xp.min(xp.std(data_grid, axis=0, correction=0))
    if ns.holds(xp, scale > 0) is False:
        raise ValueError("`data_grid` must have a non-zero spread along both axes")
    return mu, scale


def _peer_transform(xp: ModuleType, points: Array, weights: Array | None, interp_fn: PeerInterp) -> Transform:
    """The rank transform of :func:`knotsafe.create_transforms`, through another interp.

    Same knots and ranks; ``interp_fn(x, knots, values, xp=xp)`` replaces
    knotsafe's interpolation, and queries outside a column's range are 0
    (below) or 1 (above) as with ``left=0, right=1``.  For the comparisons
    in the example and tests only.
    """
    knots, rank_rows = rank_knots(xp, points, weights)

    def transform(q: Array) -> Array:
        out = []
        for d in range(2):
            x, k = q[:, d], knots[d, :]
            v = interp_fn(x, k, rank_rows[d], xp=xp)
            v = xp.where(x < k[0], xp.zeros_like(v), v)
            out.append(xp.where(x > k[-1], xp.ones_like(v), v))
        return xp.stack(out, axis=1)

    return transform


# --------------------------------------------------------------------------
# mappings and weights
# --------------------------------------------------------------------------


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
       smaller of the two per-axis population standard deviations.
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
        the rank transforms; finite, with non-zero spread on both axes.
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
        Bilinear weights in ``[0, 1]``, summing to 1 per row.

    Raises
    ------
    ValueError
        Grids not of shape (N, 2) / (K, 2) or not finite; ``data_grid`` with
        zero spread; ``mesh_weight_map`` of the wrong shape, negative or all
        zero; ``source_grid_size < 3``; bad ``knot_grad``/``min_gap``.
        (Data checks run on concrete arrays only.)
    TypeError
        Non-integer ``source_grid_size``; arrays from two libraries.

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
    return _mappings_weights(
        source_grid_size,
        data_grid,
        data_grid_over_sampled,
        mesh_weight_map,
        xp=xp,
        knot_grad=knot_grad,
        min_gap=min_gap,
        transform=transform,
        bandwidth=bandwidth,
        n_knots=n_knots,
    )


def _mappings_weights(
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
    _interp: PeerInterp | None = None,
) -> tuple[Array, Array]:
    """:func:`mappings_weights`, optionally through a peer interpolation.

    ``_interp`` (e.g. :func:`knotsafe.testing.plain_interp` or
    :func:`knotsafe.testing.jitter_interp`) replaces knotsafe's
    interpolation in the forward rank transform, for side-by-side
    comparisons; ``knot_grad`` and ``min_gap`` are then unused.
    """
    n = _grid_size(source_grid_size)
    xp_, arrs, gap = _resolve_mesh_inputs(
        {"data_grid": data_grid, "data_grid_over_sampled": data_grid_over_sampled, "mesh_weight_map": mesh_weight_map},
        xp,
        knot_grad,
        min_gap,
    )
    data, over, wmap = arrs["data_grid"], arrs["data_grid_over_sampled"], arrs.get("mesh_weight_map")
    mu, scale = _normalisation(xp_, data)
    scaled = (data - mu) / scale
    kernel = mesh_transforms(xp_, scaled, wmap, n, transform, bandwidth, n_knots, knot_grad, gap)
    if kernel is not None:
        forward = kernel[0]
    elif _interp is None:
        forward, _ = create_transforms(scaled, wmap, xp=xp_, knot_grad=knot_grad, min_gap=gap)
    else:
        forward = _peer_transform(xp_, scaled, wmap, _interp)
    u = forward((over - mu) / scale)
    return _bilinear(xp_, n, (n - 3) * u + 1)


def _bilinear(xp: ModuleType, n: int, index: Array) -> tuple[Array, Array]:
    """Corners and weights of index-space points ``index`` (K, 2) on an n x n mesh."""
    frozen = hooks_for(xp).stop_gradient(index)
    down = xp.clip(xp.floor(frozen), 0.0, float(n - 2))
    t = index - down
    ty, tx = t[:, 0], t[:, 1]
    d = xp.astype(down, _default_int(xp, index))
    dy, dx = d[:, 0], d[:, 1]
    top = (n - (dy + 1)) * n
    bottom = (n - dy) * n
    indices = xp.stack([top + dx, top + dx + 1, bottom + dx, bottom + dx + 1], axis=1)
    weights = xp.stack([ty * (1 - tx), ty * tx, (1 - ty) * (1 - tx), (1 - ty) * tx], axis=1)
    return indices, weights


# --------------------------------------------------------------------------
# mapping and curvature matrices
# --------------------------------------------------------------------------


def _checked_pairs(
    xp: ModuleType, indices: Array, weights: Array, n_pixels: int, *, index_name: str = "indices"
) -> tuple[Array, Array]:
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
    if ns.holds(xp, (indices >= 0) & (indices < n_pixels)) is False:
        raise ValueError(f"`{index_name}` must lie in [0, n_pixels) = [0, {n_pixels})")
    return indices, weights


def _check_key_range(xp: ModuleType, dtype: Any, size: int, what: str) -> None:
    if size - 1 > int(xp.iinfo(dtype).max):
        raise ValueError(
            f"{what} has {size} entries, more than the index dtype {dtype} can address; "
            "use 64-bit indices (JAX: JAX_ENABLE_X64=1)"
        )


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
        ``sub_to_data`` outside ``[0, n_data)`` (concrete arrays); a result
        too large for the index dtype.
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
    xp_, arrs = ns.resolve({"indices": indices, "weights": weights, "sub_to_data": sub_to_data}, xp)
    idx, w = _checked_pairs(xp_, arrs["indices"], arrs["weights"], n_pix)
    hooks = hooks_for(xp_)
    k = idx.shape[0]
    dev = compat.device(w)
    if sub_to_data is None:
        if n_data is not None:
            raise TypeError("`n_data` is only used with `sub_to_data`")
        n_rows = k
        rows = xp_.arange(k, dtype=idx.dtype, device=dev)
        src = w
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
        if ns.holds(xp_, (s2d >= 0) & (s2d < n_rows)) is False:
            raise ValueError(f"`sub_to_data` must lie in [0, n_data) = [0, {n_rows})")
        rows = xp_.astype(s2d, idx.dtype)
        counts = hooks.scatter_add(xp_, n_rows, rows, xp_.ones((k,), dtype=w.dtype, device=dev))
        inv = 1.0 / xp_.where(counts > 0, counts, xp_.ones_like(counts))
        src = w * xp_.take(inv, rows)[:, None]
    _check_key_range(xp_, idx.dtype, n_rows * n_pix, "the mapping matrix")
    keys = rows[:, None] * n_pix + idx
    flat = hooks.scatter_add(xp_, n_rows * n_pix, xp_.reshape(keys, (-1,)), xp_.reshape(src, (-1,)))
    return xp_.reshape(flat, (n_rows, n_pix))


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
        arrays); ``n_pixels**2`` too large for the index dtype.
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
    xp_, arrs = ns.resolve({"indices": indices, "weights": weights, "noise_weights": noise_weights}, xp)
    idx, w = _checked_pairs(xp_, arrs["indices"], arrs["weights"], n_pix)
    k = idx.shape[0]
    prod = w[:, :, None] * w[:, None, :]
    if noise_weights is not None:
        nw = arrs["noise_weights"]
        if nw.ndim != 1 or nw.shape[0] != k:
            raise ValueError(f"`noise_weights` must have shape ({k},) (one per row), got {tuple(nw.shape)}")
        if not xp_.isdtype(nw.dtype, "real floating"):
            raise TypeError(f"`noise_weights` must be a real floating array, got dtype {nw.dtype}")
        prod = prod * nw[:, None, None]
    _check_key_range(xp_, idx.dtype, n_pix * n_pix, "the curvature matrix")
    keys = idx[:, :, None] * n_pix + idx[:, None, :]
    flat = hooks_for(xp_).scatter_add(xp_, n_pix * n_pix, xp_.reshape(keys, (-1,)), xp_.reshape(prod, (-1,)))
    return xp_.reshape(flat, (n_pix, n_pix))


# --------------------------------------------------------------------------
# mesh geometry
# --------------------------------------------------------------------------


def _inverse_full(
    source_grid_size: int,
    data_grid: Array,
    mesh_weight_map: Array | None,
    xp: ModuleType | None,
    knot_grad: KnotGrad,
    min_gap: float | None,
    kernel_args: tuple[str, float, int | None] = ("rank", 1.0, 64),
) -> tuple[ModuleType, int, Array, Callable[[Array], Array]]:
    n = _grid_size(source_grid_size)
    xp_, arrs, gap = _resolve_mesh_inputs(
        {"data_grid": data_grid, "mesh_weight_map": mesh_weight_map}, xp, knot_grad, min_gap
    )
    data = arrs["data_grid"]
    mu, scale = _normalisation(xp_, data)
    kernel = mesh_transforms(xp_, (data - mu) / scale, arrs.get("mesh_weight_map"), n, *kernel_args, knot_grad, gap)
    if kernel is not None:
        inv = kernel[1]
    else:
        _, inv = create_transforms(
            (data - mu) / scale, arrs.get("mesh_weight_map"), xp=xp_, knot_grad=knot_grad, min_gap=gap
        )

    def inv_full(u: Array) -> Array:
        return inv(u) * scale + mu

    return xp_, n, data, inv_full


def _unit_lines(xp: ModuleType, n: int, like: Array, count: int, offset: float) -> Array:
    """(count, 2) unit-space lines: column 0 for rows (y), column 1 for columns (x).

    Node of row ``r`` / column ``c``: ``U_y = (n - 1 - r) / (n - 3)``,
    ``U_x = (c - 1) / (n - 3)``; ``offset = 0.5`` gives the cell edges
    (node midpoints).  ``max(n - 3, 1)`` keeps ``n = 3`` finite, as in
    PyAutoArray.
    """
    r = xp.arange(count, dtype=like.dtype, device=compat.device(like))
    den = float(max(n - 3, 1))
    return xp.permute_dims(xp.stack([(n - 1 + offset - r) / den, (r - 1 - offset) / den]), (1, 0))


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
    xp_, n, data, inv_full = _inverse_full(
        source_grid_size, data_grid, mesh_weight_map, xp, knot_grad, min_gap, (transform, bandwidth, n_knots)
    )
    nodes = inv_full(_unit_lines(xp_, n, data, n, 0.0))
    ys = xp_.broadcast_to(nodes[:, 0:1], (n, n))
    xs = xp_.broadcast_to(nodes[None, :, 1], (n, n))
    return xp_.reshape(xp_.stack([ys, xs], axis=2), (n * n, 2))


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
    xp_, n, data, inv_full = _inverse_full(
        source_grid_size, data_grid, mesh_weight_map, xp, knot_grad, min_gap, (transform, bandwidth, n_knots)
    )
    edges = inv_full(_unit_lines(xp_, n, data, n + 1, 0.5))
    heights = edges[:-1, 0] - edges[1:, 0]
    widths = edges[1:, 1] - edges[:-1, 1]
    return xp_.reshape(heights[:, None] * widths[None, :], (n * n,))
