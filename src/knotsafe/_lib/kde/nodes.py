"""Node tables of the kernel CDF: ``F - 1/2``, ``delta F'``, ``delta^2 F''``, ``delta^3 F'''`` on a grid.

Two exact-to-rounding ways to sum the stencils of :mod:`knotsafe._lib.kde.cdf`
(each point in cell ``b`` at fraction ``f`` adds ``g_q((j - f) rho)`` to node
``b + j`` for ``j = -M + 1 .. M``, ``rho = delta / h``; ``g_0`` is ``Phi -
1/2`` in the stencil's core ``|j| <= CORE`` and ``Phi - 1`` (``Phi``) above
(below) it, the caller adding the ``+-1/2`` from prefix sums of the weights):

* :func:`direct`: evaluate every stencil, O(N S), and scatter-add it.
* :func:`moments`: expand ``g_q`` in Taylor series about the cell centre,
  ``g_q((j - 1/2 - e) rho) = sum_m g_q^(m)(z_j) (-e rho)^m / m!`` with
  ``e = f - 1/2`` in ``[-1/2, 1/2)``, so the tables are a convolution of the
  per-cell moments ``sum w e^m`` (m < MOMENTS) with fixed taps: O(N MOMENTS +
  G S MOMENTS).  Truncating after ``MOMENTS = 10`` terms leaves at most
  ``(1/16)^10 / 10! max|He_9 phi| = 2.9e-17`` per unit weight (``rho <= 1/8``
  to a relative ``2^-11``, ``|e| <= 1/2``), far below the interpolation bound.

:func:`node_tables` picks the cheaper one (moments when the grid is small
next to the number of points, as at the lens size with ``h = span / 30``).
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import array_api_compat as compat

from knotsafe._lib.backends.hooks import BackendHooks

Array = Any

MOMENTS = 10
_INV_SQRT2 = 0.7071067811865476
_INV_SQRT2PI = 0.3989422804014327
#: Force a path ("direct" or "moments"); None chooses by cost (tests set it).
FORCE: str | None = None
#: Core of the stencil: nodes ``|j| <= CORE`` from a point's cell get ``Phi - 1/2``
#: (relative precision near the point, which keeps ``F(hi) - F(lo)`` exact to
#: rounding when the span is a small part of a bandwidth); nodes beyond get
#: ``Phi - 1`` above and ``Phi`` below, small, and the caller adds ``+-1/2``
#: from prefix sums.  Small stencil sums keep a running-sum scatter (the
#: standard-only ``scatter_add``) accurate.
CORE = 8


def _step(xp: ModuleType, j: Array, dtype: Any, dev: Any) -> Array:
    """The constant removed from ``Phi - 1/2`` at relative node ``j``: ``1/2`` above the core, ``-1/2`` below."""
    half = xp.asarray(0.5, dtype=dtype, device=dev)
    zero = xp.asarray(0.0, dtype=dtype, device=dev)
    return xp.where(j > CORE, half, xp.where(j < -CORE, -half, zero))


def direct(
    xp: ModuleType, hooks: BackendHooks, w: Array, b: Array, frac: Array, rho: Array, j: Array, grid: int
) -> list[Array]:
    """Tables (4 arrays of shape (D, G + 1)) by evaluating every point's stencil."""
    dim = frac.shape[1]
    dtype, dev = frac.dtype, compat.device(frac)
    r3 = rho[None, :, None]
    z = (xp.astype(j, dtype)[None, None, :] - frac[:, :, None]) * r3  # (N, D, S): (node - point) / h
    wz = w[:, None, None]
    phi = xp.exp(-0.5 * z * z) * _INV_SQRT2PI
    r = 0.5 * hooks.erf(xp, z * _INV_SQRT2) - _step(xp, j, dtype, dev)[None, None, :]
    wphi = wz * phi * r3
    vals = (wz * r, wphi, -(z * wphi) * r3, (z * z - 1.0) * wphi * r3 * r3)
    k = b[:, :, None] + j[None, None, :]
    k = xp.where((k >= 0) & (k < grid), k, xp.full_like(k, grid))  # off-grid nodes go to the dump slot
    row = xp.reshape(k + xp.arange(dim, dtype=k.dtype, device=dev)[None, :, None] * (grid + 1), (-1,))
    # One scatter per table with a shared index (no (4, N, D, S) stack).
    return [
        xp.reshape(hooks.scatter_add(xp, dim * (grid + 1), row, xp.reshape(v, (-1,))), (dim, grid + 1)) for v in vals
    ]


def _taps(xp: ModuleType, hooks: BackendHooks, rho: Array, j: Array) -> Array:
    """(D, MOMENTS * S, 4) taps ``K[q, m](j) = rho^q phi^(m+q-1)(z_j) (-rho)^m / m!``."""
    dim = rho.shape[0]
    dtype, dev = rho.dtype, compat.device(rho)
    jf = xp.astype(j, dtype)
    r = rho[:, None]
    z = (jf[None, :] - 0.5) * r  # (D, S)
    phi = xp.exp(-0.5 * z * z) * _INV_SQRT2PI
    # phi^(n) = (-1)^n He_n(z) phi(z);  He_{n+1} = z He_n - n He_{n-1}
    top = MOMENTS + 2
    he = [xp.ones_like(z), z]
    for n in range(1, top):
        he.append(z * he[n] - n * he[n - 1])
    dphi = [(-1.0) ** n * he[n] * phi for n in range(top + 1)]
    cdf_part = 0.5 * hooks.erf(xp, z * _INV_SQRT2) - _step(xp, j, dtype, dev)[None, :]
    tables = []
    for q in range(4):
        rows = []
        for m in range(MOMENTS):
            coef = (-r) ** m / math.factorial(m)
            if q == 0:
                rows.append(cdf_part if m == 0 else dphi[m - 1] * coef)
            else:
                rows.append(dphi[m + q - 1] * coef * r**q)
        tables.append(xp.stack(rows, axis=1))  # (D, MOMENTS, S)
    taps = xp.stack(tables, axis=3)  # (D, MOMENTS, S, 4)
    return xp.reshape(taps, (dim, MOMENTS * j.shape[0], 4))


def moments(
    xp: ModuleType, hooks: BackendHooks, w: Array, b: Array, frac: Array, rho: Array, j: Array, grid: int
) -> list[Array]:
    """Tables (4 arrays of shape (D, G + 1)) as a convolution of per-cell moments with fixed taps."""
    n, dim = frac.shape
    dtype, dev = frac.dtype, compat.device(frac)
    itype = b.dtype
    g1 = grid + 1
    e = frac - 0.5
    powers = [xp.broadcast_to(w[:, None], (n, dim))]
    for _ in range(1, MOMENTS):
        powers.append(powers[-1] * e)
    src = xp.reshape(xp.stack(powers), (-1,))  # (MOMENTS, N, D)
    moment_base = xp.reshape(xp.arange(MOMENTS, dtype=itype, device=dev), (-1, 1, 1)) * (dim * g1)
    cells = b + xp.arange(dim, dtype=itype, device=dev)[None, :] * g1
    index = xp.reshape(cells[None, :, :] + moment_base, (-1,))
    hist = hooks.scatter_add(xp, MOMENTS * dim * g1, index, src)  # (MOMENTS, D, G + 1); slot G stays 0
    # Node k gathers cell k - j for every tap j (out-of-grid cells read the empty slot G).
    k = xp.arange(grid, dtype=itype, device=dev)
    src_cell = k[:, None] - j[None, :]
    src_cell = xp.where((src_cell >= 0) & (src_cell < grid), src_cell, xp.full_like(src_cell, grid))  # (G, S)
    taps = _taps(xp, hooks, rho, j)
    out = []
    s = j.shape[0]
    for d in range(dim):
        idx = src_cell[None, :, :] + moment_base + d * g1
        win = xp.reshape(hooks.take(xp, hist, xp.reshape(idx, (-1,))), (MOMENTS, grid, s))
        win = xp.reshape(xp.permute_dims(win, (1, 0, 2)), (grid, MOMENTS * s))
        out.append(xp.matmul(win, taps[d, ...]))  # (G, 4)
    nodes = xp.permute_dims(xp.stack(out), (2, 0, 1))  # (4, D, G)
    pad = xp.zeros((4, dim, 1), dtype=dtype, device=dev)
    full = xp.concat([nodes, pad], axis=2)
    return [full[q, ...] for q in range(4)]


def node_tables(
    xp: ModuleType, hooks: BackendHooks, w: Array, b: Array, frac: Array, rho: Array, j: Array, grid: int
) -> list[Array]:
    """The four node tables, by the cheaper exact path."""
    n = frac.shape[0]
    use_moments = FORCE == "moments" or (FORCE is None and MOMENTS * grid <= 4 * n)
    return (moments if use_moments else direct)(xp, hooks, w, b, frac, rho, j, grid)
