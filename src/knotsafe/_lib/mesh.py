"""The adaptive rectangular mesh on validated arrays: normalisation, transforms, bilinear layout.

:class:`MeshState` holds one validated mesh (:class:`MeshInputs`) and computes
its normalisation once and its unit-space transforms (rank or kernel-density
CDF, which sort the data) at most once, whichever of the mappings, the node
positions and the cell areas are asked for.  No checks and no reads here:
:mod:`knotsafe.rectangular` validates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import array_api_compat as compat

from knotsafe._lib.backends.hooks import BackendHooks, compiled_partial
from knotsafe._lib.kde.transform import mesh_transforms
from knotsafe._lib.ranks import rank_transform
from knotsafe._lib.validation import checks as _checks
from knotsafe._lib.validation import dtypes as _dtypes

Array = Any
Transform = Callable[[Array], Array]
#: Builds the forward rank transform of normalised points ``(points (N, 2),
#: weights (N,) or None) -> transform``; see :meth:`MeshState.index_coordinates`.
TransformOf = Callable[[Array, Any], Transform]


@dataclass(frozen=True)
class MeshInputs:
    """Validated mesh arguments: arrays of one namespace in the computation dtype.

    ``dtype`` is the dtype results are returned in (float16/bfloat16 grids are
    computed in float32, see :mod:`knotsafe._lib.validation.dtypes`).
    """

    xp: ModuleType
    hooks: BackendHooks
    n: int
    data: Array
    over: Array | None
    weights: Array | None
    dtype: Any
    knot_grad: str
    min_gap: float | None
    bad: Array | None = None  # unread verdict of the data checks (under tracing)
    transform: str = "rank"
    bandwidth: float = 1.0
    n_knots: int | None = 64


#: A column whose std exceeds the smallest one by more than this factor is
#: normalised by its own std (see :func:`normalisation`).
SCALE_RATIO_LIMIT = 2.0**32


def normalisation(xp: ModuleType, hooks: BackendHooks, data_grid: Array) -> tuple[Array, Array]:
    """``mu`` (2,) = per-axis mean and ``scale`` (2,), per axis, normalising ``(data - mu) / scale``.

    PyAutoArray's normalisation divides both axes by one number, the smaller
    population std; so does this one (``scale[0] == scale[1]``) unless one
    axis's std is more than :data:`SCALE_RATIO_LIMIT` times the other's:
    that axis is then divided by its own std, since the smaller std would
    blow it up towards overflow (axes of 1e300 and 1e-300).  The mesh does
    not depend on this choice (a rank or kernel CDF of one axis is the same
    for any positive scale of it), only its rounding does.

    Each axis's mean and std are computed on the axis divided by
    ``unit``, the power of two at or below its largest magnitude, and scaled
    back: the sums and squares then neither overflow (data of 1e300) nor
    underflow (data of 1e-300), whatever the other axis's scale, and because
    dividing by a power of two is exact, ``mu`` and the stds are bitwise
    those of the direct formula wherever that does not overflow or
    underflow.  ``unit`` is piecewise constant in the data and carries no
    gradient, nor does the choice of scale.  ``correction=0`` is explicit:
    ``torch.std`` defaults to the sample std.
    """
    amax = hooks.stop_gradient(xp.max(xp.abs(data_grid), axis=0))
    # full_like, not asarray(..., device=...): under jax.jit a fixed device would pin the result to
    # one device and clash with sharded inputs.
    unit = xp.pow(xp.full_like(amax, 2.0), xp.floor(xp.log2(amax)))
    # An all-zero axis (rejected on concrete arrays) or flushed subnormals: no rescaling.
    unit = xp.where(xp.isfinite(unit) & (unit > 0), unit, xp.ones_like(unit))
    unit_data = data_grid / unit
    mu = xp.mean(unit_data, axis=0) * unit
    std = xp.std(unit_data, axis=0, correction=0) * unit
    common = xp.min(std)
    own = std / SCALE_RATIO_LIMIT > common  # no overflow: std is finite
    return mu, xp.where(own, std, xp.broadcast_to(common, std.shape))


class MeshState:
    """One validated mesh: its normalisation, and its unit-space transforms built on first use."""

    def __init__(self, inputs: MeshInputs) -> None:
        self.inputs = inputs
        self.mu, self.scale = compiled_partial(inputs.hooks, normalisation, inputs.xp, inputs.hooks)(inputs.data)
        self.inv_scale = 1.0 / self.scale
        self._transforms: tuple[Transform, Transform] | None = None

    def _scaled(self, a: Array) -> Array:
        # A multiplication by the reciprocal, not a division: XLA turns a division by a broadcast
        # vector into a multiplication by its reciprocal in some programs and not in others (a
        # sharded one), which would change the last bit of a row depending on how rows are split.
        return (a - self.mu) * self.inv_scale

    def transforms(self) -> tuple[Transform, Transform]:
        """Forward and inverse unit-space transforms of the normalised data grid (rank or kernel CDF)."""
        if self._transforms is None:
            i = self.inputs
            scaled = self._scaled(i.data)
            if i.transform == "kernel":
                self._transforms = mesh_transforms(
                    i.xp,
                    i.hooks,
                    scaled,
                    i.weights,
                    i.n,
                    i.bandwidth,
                    i.n_knots,
                    knot_grad=i.knot_grad,
                    min_gap=i.min_gap,
                )
            else:
                ranks = rank_transform(i.xp, i.hooks, scaled, i.weights, knot_grad=i.knot_grad, min_gap=i.min_gap)
                self._transforms = (ranks.forward, ranks.inverse)
        return self._transforms

    def index_coordinates(self, transform_of: TransformOf | None = None) -> Array:
        """Index-space coordinates ``(n - 3) * u + 1`` (K, 2) of the over-sampled grid.

        ``transform_of(points, weights)`` builds the forward transform of the
        normalised data grid; default the mesh's own (:meth:`transforms`).
        """
        i = self.inputs
        if i.over is None:
            raise TypeError("`data_grid_over_sampled` is required")
        transform = self.transforms()[0] if transform_of is None else transform_of(self._scaled(i.data), i.weights)
        u = transform(self._scaled(i.over))
        return (i.n - 3) * u + 1

    def mappings_weights(self, transform_of: TransformOf | None = None) -> tuple[Array, Array]:
        """Corners (K, 4) and bilinear weights (K, 4) of the over-sampled grid, weights poisoned by bad data."""
        i = self.inputs
        indices, weights = compiled_partial(i.hooks, bilinear, i.xp, i.hooks, i.n)(self.index_coordinates(transform_of))
        weights = _checks.poison(i.xp, i.bad, weights)
        return indices, i.xp.astype(weights, i.dtype, copy=False)

    def _source_plane(self, count: int, offset: float) -> Array:
        """Unit-space lines (:func:`unit_lines`) mapped back to the source plane (inverse and normalisation)."""
        i = self.inputs
        inv = self.transforms()[1]
        lines = inv(unit_lines(i.xp, i.n, i.data, count, offset)) * self.scale + self.mu
        return _checks.poison(i.xp, i.bad, lines)

    def pixel_centres(self) -> Array:
        """Node positions (n * n, 2) in flat pixel order."""
        xp, n = self.inputs.xp, self.inputs.n
        nodes = self._source_plane(n, 0.0)
        ys = xp.broadcast_to(nodes[:, 0:1], (n, n))
        xs = xp.broadcast_to(nodes[None, :, 1], (n, n))
        return xp.astype(xp.reshape(xp.stack([ys, xs], axis=2), (n * n, 2)), self.inputs.dtype, copy=False)

    def pixel_areas(self) -> Array:
        """Cell areas (n * n,) in flat pixel order, from the node midpoints."""
        xp, n = self.inputs.xp, self.inputs.n
        edges = self._source_plane(n + 1, 0.5)
        heights = edges[:-1, 0] - edges[1:, 0]
        widths = edges[1:, 1] - edges[:-1, 1]
        return xp.astype(xp.reshape(heights[:, None] * widths[None, :], (n * n,)), self.inputs.dtype, copy=False)


def bilinear(xp: ModuleType, hooks: BackendHooks, n: int, index: Array) -> tuple[Array, Array]:
    """Corners and weights of index-space points ``index`` (K, 2) on an n x n mesh."""
    frozen = hooks.stop_gradient(index)
    # NaN coordinates (NaN queries, or unchecked bad data under tracing) get
    # in-range corners and NaN weights, never out-of-range indices.
    frozen = xp.where(xp.isnan(frozen), xp.ones_like(frozen), frozen)
    down = xp.clip(xp.floor(frozen), 0.0, float(n - 2))
    t = index - down
    ty, tx = t[:, 0], t[:, 1]
    d = xp.astype(down, _dtypes.default_int(xp, index))
    dy, dx = d[:, 0], d[:, 1]
    top = (n - (dy + 1)) * n
    bottom = (n - dy) * n
    indices = xp.stack([top + dx, top + dx + 1, bottom + dx, bottom + dx + 1], axis=1)
    weights = xp.stack([ty * (1 - tx), ty * tx, (1 - ty) * (1 - tx), (1 - ty) * tx], axis=1)
    return indices, weights


def unit_lines(xp: ModuleType, n: int, like: Array, count: int, offset: float) -> Array:
    """(count, 2) unit-space lines: column 0 for rows (y), column 1 for columns (x).

    Node of row ``r`` / column ``c``: ``U_y = (n - 1 - r) / (n - 3)``,
    ``U_x = (c - 1) / (n - 3)``; ``offset = 0.5`` gives the cell edges
    (node midpoints).  ``max(n - 3, 1)`` keeps ``n = 3`` finite, as in
    PyAutoArray.
    """
    r = xp.arange(count, dtype=like.dtype, device=compat.device(like))
    den = float(max(n - 3, 1))
    return xp.permute_dims(xp.stack([(n - 1 + offset - r) / den, (r - 1 - offset) / den]), (1, 0))


def scatter_matrix(xp: ModuleType, hooks: BackendHooks, keys: Array, src: Array, shape: tuple[int, int]) -> Array:
    """Dense ``shape`` matrix accumulating ``src`` at the flat ``keys`` (the mapping and curvature matrices)."""
    flat = hooks.scatter_add(xp, shape[0] * shape[1], xp.reshape(keys, (-1,)), xp.reshape(src, (-1,)))
    return xp.reshape(flat, shape)
