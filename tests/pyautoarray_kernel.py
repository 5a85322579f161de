"""NumPy transcription of PyAutoArray's kernel-density rectangular mesh.

Written from PyAutoArray's formulas, independently of knotsafe: the exact
kernel CDF summed over every point (``scipy.special.ndtr``, NumPy's pairwise
sum, blocks of 512 queries as in PyAutoArray), the mesh normalisation and
bilinear layout of PyAutoArray's rectangular mesh, and the 64-knot table
inverse by ``numpy.interp``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

BLOCK = 512


def kernel_cdf(points: np.ndarray, weights: np.ndarray | None, h: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``u(q)`` (K, D) of the exact kernel CDF of ``points`` (N, D), bandwidths ``h`` (D,)."""
    n, dim = points.shape
    w = np.full(n, 1.0 / n) if weights is None else weights / weights.sum()
    h = np.broadcast_to(np.asarray(h, dtype=np.float64), (dim,))

    def cdf(x: np.ndarray, d: int) -> np.ndarray:
        out = np.empty(x.shape[0])
        for s in range(0, x.shape[0], BLOCK):
            z = (x[s : s + BLOCK, None] - points[None, :, d]) / h[d]
            out[s : s + BLOCK] = (w[None, :] * ndtr(z)).sum(axis=1)
        return out

    cols = []
    for d in range(dim):
        lo, hi = points[:, d].min(), points[:, d].max()
        f_lo, f_hi = cdf(np.array([lo, hi]), d)
        cols.append(np.clip((cdf(q[:, d], d) - f_lo) / (f_hi - f_lo), 0.0, 1.0))
    return np.stack(cols, axis=1)


def _normalise(data: np.ndarray) -> tuple[np.ndarray, float]:
    return data.mean(axis=0), float(data.std(axis=0).min())


def _mesh_h(scaled: np.ndarray, n: int, bandwidth: float) -> np.ndarray:
    return bandwidth * (scaled.max(axis=0) - scaled.min(axis=0)) / n


def mappings_weights(
    n: int, data: np.ndarray, over: np.ndarray, wmap: np.ndarray | None = None, bandwidth: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Corner indices (K, 4) and bilinear weights (K, 4) of the kernel mesh."""
    mu, scale = _normalise(data)
    scaled = (data - mu) / scale
    u = kernel_cdf(scaled, wmap, _mesh_h(scaled, n, bandwidth), (over - mu) / scale)
    g = (n - 3) * u + 1
    down = np.clip(np.floor(g), 0, n - 2)
    up = down + 1
    t = g - down

    def flat(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return (n - i) * n + j

    (uy, ux), (dy, dx) = up.T, down.T
    idx = np.stack([flat(uy, dx), flat(uy, ux), flat(dy, dx), flat(dy, ux)], axis=1).astype(np.int64)
    ty, tx = t[:, 0], t[:, 1]
    w = np.stack([ty * (1 - tx), ty * tx, (1 - ty) * (1 - tx), (1 - ty) * tx], axis=1)
    return idx, w


def _lines(
    n: int, data: np.ndarray, wmap: np.ndarray | None, bandwidth: float, n_knots: int, offset: float, count: int
) -> np.ndarray:
    mu, scale = _normalise(data)
    scaled = (data - mu) / scale
    lo, hi = scaled.min(axis=0), scaled.max(axis=0)
    knots = lo[None, :] + np.linspace(0.0, 1.0, n_knots)[:, None] * (hi - lo)[None, :]
    knot_u = kernel_cdf(scaled, wmap, _mesh_h(scaled, n, bandwidth), knots)
    r = np.arange(count)
    u = np.stack([(n - 1 + offset - r) / max(n - 3, 1), (r - 1 - offset) / max(n - 3, 1)], axis=1)
    return np.stack([np.interp(u[:, d], knot_u[:, d], knots[:, d]) for d in range(2)], axis=1) * scale + mu


def pixel_centres(
    n: int, data: np.ndarray, wmap: np.ndarray | None = None, bandwidth: float = 1.0, n_knots: int = 64
) -> np.ndarray:
    nodes = _lines(n, data, wmap, bandwidth, n_knots, 0.0, n)
    ys = np.broadcast_to(nodes[:, 0:1], (n, n))
    xs = np.broadcast_to(nodes[None, :, 1], (n, n))
    return np.stack([ys, xs], axis=2).reshape(n * n, 2)


def pixel_areas(
    n: int, data: np.ndarray, wmap: np.ndarray | None = None, bandwidth: float = 1.0, n_knots: int = 64
) -> np.ndarray:
    edges = _lines(n, data, wmap, bandwidth, n_knots, 0.5, n + 1)
    heights = edges[:-1, 0] - edges[1:, 0]
    widths = edges[1:, 1] - edges[:-1, 1]
    return (heights[:, None] * widths[None, :]).reshape(n * n)
