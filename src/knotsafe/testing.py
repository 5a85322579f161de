"""Data for tests, demos and benchmarks: duplicate-laden knots and a traced lens grid.

Everything here is deterministic and built with NumPy, then converted with
``xp.asarray`` where a namespace is given, so every backend sees the same
numbers.  The lens grid reproduces what breaks plain interpolation: a
singular isothermal sphere (SIS) traces mirror-symmetric image pixels to
identical source-plane coordinates (exact duplicate knots), and a rotation of
the frame adds rounding noise of one or two ulp (near-duplicates).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

Array = Any
#: A peer interpolation ``(x, knots, values, *, xp) -> array``, such as
#: :func:`plain_interp` or :func:`jitter_interp`.
PeerInterp = Callable[..., Array]

__all__ = [
    "KnotCase",
    "circular_mask_grid",
    "jitter_interp",
    "knot_cases",
    "lens_grid",
    "peer_mappings_weights",
    "peer_transform",
    "plain_interp",
    "trace_sis",
]


def circular_mask_grid(radius: float = 3.5, pixel_scale: float = 0.05, sub_size: int = 1) -> np.ndarray:
    """Image-plane (y, x) coordinates of the pixels inside a circular mask.

    Parameters
    ----------
    radius, pixel_scale
        Mask radius and pixel size in arcseconds; the pixel grid is centred
        on the origin, so it is exactly mirror-symmetric.
    sub_size
        Over-sampling: each pixel is split into ``sub_size**2`` sub-pixels,
        listed pixel by pixel (sub-pixel ``s`` of pixel ``p`` is row
        ``p * sub_size**2 + s``).

    Returns
    -------
    ndarray, shape (N * sub_size**2, 2), float64
    """
    n = 2 * int(np.ceil(radius / pixel_scale))
    centres = (np.arange(n) - (n - 1) / 2) * pixel_scale
    yy, xx = np.meshgrid(centres[::-1], centres, indexing="ij")
    inside = yy**2 + xx**2 <= radius**2
    pix = np.stack([yy[inside], xx[inside]], axis=1)
    if sub_size == 1:
        return pix
    offsets = ((np.arange(sub_size) + 0.5) / sub_size - 0.5) * pixel_scale
    oy, ox = np.meshgrid(offsets[::-1], offsets, indexing="ij")
    sub = np.stack([oy.ravel(), ox.ravel()], axis=1)
    return (pix[:, None, :] + sub[None, :, :]).reshape(-1, 2)


def trace_sis(grid: Array, einstein_radius: Any, *, rotation: float = 0.0, xp: ModuleType | None = None) -> Array:
    """Ray-trace image-plane points through a singular isothermal sphere.

    ``beta = theta - einstein_radius * theta / |theta|``, computed in a frame
    rotated by ``rotation`` radians and rotated back.  Differentiable with
    respect to ``einstein_radius`` (an array of the grid's namespace, or a
    float).  A non-zero rotation turns some exact mirror duplicates into
    1-2 ulp near-duplicates.

    Parameters
    ----------
    grid : array, shape (N, 2)
    einstein_radius : float or 0-d array
    rotation : float
    xp : namespace, optional

    Returns
    -------
    array, shape (N, 2), dtype of ``grid``
    """
    if xp is None:
        import array_api_compat

        xp = array_api_compat.array_namespace(grid)
    c, s = float(np.cos(rotation)), float(np.sin(rotation))
    y, x = grid[:, 0], grid[:, 1]
    if rotation:
        y, x = c * y + s * x, -s * y + c * x
    r = xp.sqrt(y * y + x * x)
    scale = 1.0 - einstein_radius / r
    ty, tx = y * scale, x * scale
    if rotation:
        ty, tx = c * ty - s * tx, s * ty + c * tx
    return xp.stack([ty, tx], axis=1)


def lens_grid(
    *,
    radius: float = 3.5,
    pixel_scale: float = 0.05,
    sub_size: int = 4,
    einstein_radius: float = 1.6,
    rotation: float = 0.0,
    xp: ModuleType | None = None,
    dtype: Any = None,
) -> tuple[Array, Array]:
    """Traced source-plane data grid and over-sampled grid of an SIS lens.

    Returns
    -------
    data_grid : array, shape (N, 2)
        Traced pixel centres (N = 15,380 for the defaults).
    over_sampled : array, shape (N * sub_size**2, 2)
        Traced sub-pixels.

    Both are float64 NumPy arrays unless ``xp``/``dtype`` say otherwise.
    """
    grids = []
    for sub in (1, sub_size):
        image = circular_mask_grid(radius, pixel_scale, sub)
        grids.append(trace_sis(image, einstein_radius, rotation=rotation, xp=np))
    if xp is None:
        return (grids[0].astype(dtype or np.float64), grids[1].astype(dtype or np.float64))
    return tuple(xp.asarray(g, dtype=dtype) if dtype is not None else xp.asarray(g) for g in grids)  # type: ignore[return-value]


@dataclass(frozen=True)
class KnotCase:
    """A named interpolation problem: knots, values and queries (float64 NumPy)."""

    name: str
    knots: np.ndarray
    values: np.ndarray
    queries: np.ndarray


def knot_cases(seed: int = 0, dtype: Any = np.float64) -> list[KnotCase]:
    """The duplicate-knot scenarios every backend is tested on.

    Cases: random knots; exact duplicates; a long run of duplicates;
    ulp-level near-duplicates (``numpy.nextafter``) with queries inside the
    gaps; queries exactly on knots; out-of-range queries; a single knot pair;
    a single knot; NaN queries; and the sorted y column of the traced lens grid
    (data grid of a 1.5-radius mask, rotated frame) with its sub-pixels as
    queries.  Arrays are float64; ``dtype`` sets the precision in which the
    near-duplicates are one and two ulp apart (cast the case to it).
    """
    rng = np.random.default_rng(seed)
    cases = []

    k = np.sort(rng.uniform(-2.0, 3.0, 40))
    cases.append(KnotCase("random", k, rng.normal(size=40), rng.uniform(-2.5, 3.5, 200)))

    k = np.sort(np.concatenate([rng.uniform(0, 1, 20), np.repeat(rng.uniform(0, 1, 5), 3)]))
    cases.append(KnotCase("exact_duplicates", k, np.cumsum(rng.uniform(0, 1, k.size)), rng.uniform(-0.1, 1.1, 200)))

    k = np.concatenate([np.linspace(-1, 0, 10), np.zeros(25), np.linspace(0, 1, 10)])
    cases.append(KnotCase("long_run", k, np.arange(k.size, dtype=float) / k.size, np.linspace(-1.2, 1.2, 241)))

    base = np.sort(rng.uniform(0.5, 1.5, 30)).astype(dtype)
    up = np.nextafter(base, dtype(2.0))
    k = np.sort(np.concatenate([base, up, np.nextafter(up, dtype(2.0))])).astype(np.float64)
    # Queries on the first knot of each near-duplicate pair sit inside the ulp-wide gap.
    q = np.concatenate([base, up, rng.uniform(0.4, 1.6, 100).astype(dtype)]).astype(np.float64)
    cases.append(KnotCase("near_duplicates", k, rng.normal(size=k.size), q))

    k = np.sort(rng.uniform(-1, 1, 25))
    k[5:8] = k[5]
    cases.append(KnotCase("queries_on_knots", k, rng.normal(size=25), np.concatenate([k, k[::3]])))

    k = np.linspace(0.0, 1.0, 12)
    cases.append(
        KnotCase("out_of_range", k, rng.normal(size=12), np.array([-1e300, -5.0, -1e-300, 1.0, 1.0 + 1e-15, 7.0]))
    )

    cases.append(KnotCase("single_pair", np.array([0.25, 0.75]), np.array([1.0, -2.0]), np.linspace(0, 1, 21)))
    # numpy.interp's one-knot path returns the value even for a NaN query.
    cases.append(KnotCase("single_knot", np.array([0.5]), np.array([3.0]), np.array([0.0, 0.5, 1.0, np.nan])))

    k = np.linspace(0.0, 1.0, 8)
    cases.append(KnotCase("nan_queries", k, rng.normal(size=8), np.array([np.nan, 0.3, np.nan, 2.0])))

    data, over = lens_grid(radius=1.5, sub_size=2, rotation=0.3)
    ky = np.sort(data[:, 0])
    cases.append(KnotCase("lens_grid", ky, np.arange(1, ky.size + 1) / (ky.size + 1), over[:, 0].copy()))
    return cases


def plain_interp(x: Array, knots: Array, values: Array, *, xp: ModuleType | None = None) -> Array:
    """The straightforward differentiable interp most codes write (a peer, unsafe).

    ``searchsorted`` + gathers + ``(f1 - f0) / (k1 - k0)``, clamped to the end
    values, differentiated by the framework's autodiff as written: zero or
    ulp-sized knot gaps give inf/NaN or huge gradients.  Array API only.
    """
    if xp is None:
        import array_api_compat

        xp = array_api_compat.array_namespace(x, knots, values)
    n = knots.shape[0]
    j = xp.clip(xp.searchsorted(knots, x, side="right") - 1, 0, n - 2)
    k0, k1 = xp.take(knots, j), xp.take(knots, j + 1)
    f0, f1 = xp.take(values, j), xp.take(values, j + 1)
    out = f0 + (f1 - f0) / (k1 - k0) * (x - k0)
    out = xp.where(x <= knots[0], values[0], out)
    return xp.where(x >= knots[-1], values[-1], out)


#: The jitter of the reference report's fix, ``arange(N) * 1e-7``.
REPORT_JITTER = 1e-7


def jitter_interp(x: Array, knots: Array, values: Array, *, xp: ModuleType | None = None) -> Array:
    """The reference report's fix: ``stop_gradient(knots + arange(N) * 1e-7)``.

    Then :func:`plain_interp` on the jittered knots.  Forward values move by up
    to ``N * 1e-7``, knot gradients are dropped, and in float32 the jitter
    rounds away next to knots of size ~1, leaving zero gaps.
    """
    import array_api_compat

    from knotsafe.backends import hooks_for

    if xp is None:
        xp = array_api_compat.array_namespace(x, knots, values)
    n = knots.shape[0]
    jitter = xp.arange(n, dtype=knots.dtype, device=array_api_compat.device(knots)) * REPORT_JITTER
    frozen = hooks_for(xp).stop_gradient(knots + jitter)
    return plain_interp(x, frozen, values, xp=xp)


def peer_transform(
    xp: ModuleType, points: Array, weights: Array | None, interp: PeerInterp
) -> Callable[[Array], Array]:
    """The forward rank transform of :func:`knotsafe.create_transforms`, through a peer interp.

    Same knots and ranks as knotsafe (``points`` (N, D) and ``weights`` (N,)
    already validated, of one floating dtype); ``interp(x, knots, values,
    xp=xp)`` replaces knotsafe's interpolation, and queries outside a
    column's range are 0 (below) or 1 (above) as with ``left=0, right=1``.
    For side-by-side comparisons in the tests and examples.
    """
    from knotsafe._lib.ranks import rank_knots
    from knotsafe.backends import hooks_for

    knots, rank_rows = rank_knots(xp, hooks_for(xp), points, weights)

    def transform(q: Array) -> Array:
        out = []
        for d in range(knots.shape[0]):
            x, k = q[:, d], knots[d, :]
            v = interp(x, k, rank_rows[d], xp=xp)
            v = xp.where(x < k[0], xp.zeros_like(v), v)
            out.append(xp.where(x > k[-1], xp.ones_like(v), v))
        return xp.stack(out, axis=1)

    return transform


def peer_mappings_weights(
    source_grid_size: int,
    data_grid: Array,
    data_grid_over_sampled: Array,
    mesh_weight_map: Array | None = None,
    *,
    interp: PeerInterp,
    xp: ModuleType | None = None,
) -> tuple[Array, Array]:
    """:func:`knotsafe.rectangular.mappings_weights` with a peer interp in the rank transform.

    The arguments are validated as by ``mappings_weights``; only the forward
    interpolation differs (:func:`peer_transform`), so the outputs show what
    that interpolation does to the mesh and its gradients (e.g.
    ``interp=plain_interp`` or ``interp=jitter_interp``).
    """
    from knotsafe import rectangular
    from knotsafe._lib.mesh import MeshState

    inputs = rectangular._mesh_inputs(
        source_grid_size, data_grid, data_grid_over_sampled, mesh_weight_map, xp, "exact", None
    )
    return MeshState(inputs).mappings_weights(
        lambda points, weights: peer_transform(inputs.xp, points, weights, interp)
    )
