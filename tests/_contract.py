"""Independent NumPy transcriptions of the documented contract (README, "The gradient contract").

Nothing here imports knotsafe: the expected values and partials are computed
from the contract's own words and numbers, so a bug in knotsafe cannot leak
into its reference.
"""

from __future__ import annotations

import numpy as np

#: The contract's duplicate factor, written here on purpose rather than
#: imported: "a gap <= 8 * eps * max|knots| is a duplicate".
CONTRACT_FACTOR = 8.0


def contract_threshold(knots: np.ndarray, dtype_name: str) -> float:
    """``8 * eps * max|knots|`` with eps of the computation dtype."""
    return CONTRACT_FACTOR * float(np.finfo(dtype_name).eps) * float(np.max(np.abs(knots.astype(np.float64))))


def contract_partials(
    x: np.ndarray,
    knots: np.ndarray,
    values: np.ndarray,
    *,
    threshold: float,
    left: float | None = None,
    right: float | None = None,
    knot_grad: str = "exact",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Value and Jacobians ``d out/d x`` (M,), ``d out/d knots`` (M, N), ``d out/d values`` (M, N).

    Transcribed from the README:

    * inside ``[k0, k_last)`` the bin is numpy's ``[k_j, k_j+1)`` with
      ``k_j <= x < k_j+1``; ``w = (x - k_j)/gap``; d/dvalues = ``1 - w, w``; in a
      genuine bin (gap > threshold) d/dx = slope and d/dknots = ``-slope (1 - w),
      -slope w`` (``knot_grad="exact"``), otherwise 0;
    * outside (``x < k0``, ``x >= k_last``) the output is constant: d/dx = 0,
      the copied end value has weight 1, ``left``/``right`` have none; at the
      last knot the value is ``values[-1]`` (right-hand derivative 0);
    * NaN queries: NaN and zero partials; with a single knot numpy.interp
      returns ``values[0]`` for them, the copied value (weight 1).
    """
    x = np.asarray(x, dtype=np.float64)
    k = np.asarray(knots, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    m, n = x.size, k.size
    kw = {"left": left, "right": right}
    value = np.interp(x, k, v, **kw)
    dx = np.zeros(m)
    dk = np.zeros((m, n))
    dv = np.zeros((m, n))
    for i, xi in enumerate(x):
        if np.isnan(xi):
            if n == 1:
                value[i] = v[0]
                dv[i, 0] = 1.0
            continue
        if xi < k[0]:
            if left is None:
                dv[i, 0] = 1.0
            continue
        if xi > k[-1]:
            if right is None:
                dv[i, -1] = 1.0
            continue
        if xi == k[-1]:
            dv[i, -1] = 1.0  # numpy.interp returns values[-1] on the last knot, right= or not
            continue
        j = int(np.searchsorted(k, xi, side="right")) - 1
        gap = k[j + 1] - k[j]
        w = (xi - k[j]) / gap
        dv[i, j] += 1.0 - w
        dv[i, j + 1] += w
        if gap > threshold:
            slope = (v[j + 1] - v[j]) / gap
            dx[i] = slope
            if knot_grad == "exact":
                dk[i, j] += -slope * (1.0 - w)
                dk[i, j + 1] += -slope * w
    return value, dx, dk, dv


def rank_reference(points: np.ndarray, weights: np.ndarray | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Sorted columns and their ranks: ``i/(N+1)``, or cumulative weights with last rank ``N/(N+1)``."""
    pts = np.asarray(points, dtype=np.float64)
    n, dim = pts.shape
    knots, ranks = [], []
    for d in range(dim):
        order = np.argsort(pts[:, d], kind="stable")
        knots.append(pts[order, d])
        if weights is None:
            ranks.append(np.arange(1, n + 1) / (n + 1))
        else:
            cw = np.cumsum(np.asarray(weights, dtype=np.float64)[order])
            ranks.append(_spread_ties(knots[-1], cw) / cw[-1] * (n / (n + 1)))
    return knots, ranks


def _spread_ties(sorted_col: np.ndarray, cw: np.ndarray) -> np.ndarray:
    """The documented tie rule: a run of m equal points shares its total weight evenly.

    Position ``s + i`` of a run starting at ``s`` gets ``C + W (i + 1) / m`` with ``C`` the
    cumulative weight before the run and ``W`` the run's total (a loop over runs, written
    independently of knotsafe's vectorised version).
    """
    out = cw.copy()
    start = 0
    n = sorted_col.shape[0]
    while start < n:
        end = start
        while end + 1 < n and sorted_col[end + 1] == sorted_col[start]:
            end += 1
        before = cw[start - 1] if start > 0 else 0.0
        total = cw[end] - before
        m = end - start + 1
        for i in range(m):
            out[start + i] = cw[end] if i == m - 1 else before + total * (i + 1) / m
        start = end + 1
    return out


def transform_reference(points: np.ndarray, q: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """``transform(q)`` by sort + numpy.interp on the ranks, 0 below and 1 above each column."""
    knots, ranks = rank_reference(points, weights)
    q = np.asarray(q, dtype=np.float64)
    return np.stack([np.interp(q[:, d], knots[d], ranks[d], left=0.0, right=1.0) for d in range(q.shape[1])], axis=1)


def inverse_reference(points: np.ndarray, u: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """``inv_transform(u)`` by numpy.interp from the ranks back to the sorted points."""
    knots, ranks = rank_reference(points, weights)
    u = np.asarray(u, dtype=np.float64)
    return np.stack([np.interp(u[:, d], ranks[d], knots[d]) for d in range(u.shape[1])], axis=1)


def pyautoarray_mappings(
    n: int, data: np.ndarray, over: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """PyAutoArray's ``adaptive_rectangular_mappings_weights_via_interpolation_from`` (rank CDF path).

    Transcribed from its description: normalise by the per-axis mean and the
    smaller per-axis population std; ``index = (n - 3) u + 1``; ``down =
    clip(floor(index), 0, n - 2)``, ``up = down + 1``; corners TL, TR, BL, BR
    = (up_y, down_x), (up_y, up_x), (down_y, down_x), (down_y, up_x) with flat
    index ``(n - i_y) n + i_x`` (y is column 0) and weights ``t_y (1 - t_x),
    t_y t_x, (1 - t_y)(1 - t_x), (1 - t_y) t_x``, ``t = index - down``.  With
    weights, the ranks are knotsafe's documented weighted ranks (cumulative
    weights scaled so that the last rank is N/(N+1)).
    """
    data = np.asarray(data, dtype=np.float64)
    over = np.asarray(over, dtype=np.float64)
    mu = data.mean(axis=0)
    scale = data.std(axis=0).min()  # numpy's default ddof=0: population std
    u = transform_reference((data - mu) / scale, (over - mu) / scale, weights)
    index = (n - 3) * u + 1
    down = np.clip(np.floor(index), 0, n - 2)
    up = down + 1
    t = index - down
    ty, tx = t[:, 0], t[:, 1]
    dy, dx, uy, ux = down[:, 0], down[:, 1], up[:, 0], up[:, 1]

    def flat(iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
        return ((n - iy) * n + ix).astype(np.int64)

    idx = np.stack([flat(uy, dx), flat(uy, ux), flat(dy, dx), flat(dy, ux)], axis=1)
    w = np.stack([ty * (1 - tx), ty * tx, (1 - ty) * (1 - tx), (1 - ty) * tx], axis=1)
    return idx, w


def transform_bound(
    points: np.ndarray, q: np.ndarray, dtype_name: str, weights: np.ndarray | None = None
) -> np.ndarray:
    """Rounding bound of ``transform(q)`` (per entry) against :func:`transform_reference`.

    The contract bounds interp by ``4 eps (|slope||x| + |f0| + |f1|)`` of the
    bracketing bin; the ranks ``f`` are rounded too: ``i/(N+1)`` by one
    division (eps/2 relative); weighted ranks by an N-term cumulative sum, a
    division and a scaling (``(N + 3) eps`` relative, the recursive-summation
    bound).  The output is a convex combination of two ranks, so a rank error
    passes through unamplified.  Knots and queries that were themselves
    computed (a normalisation) carry ``<= 2 eps max|k|`` each: ``slope`` times
    that, hence the ``2 max|k|`` term.
    """
    eps = float(np.finfo(dtype_name).eps)
    pts = np.asarray(points, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    n = pts.shape[0]
    rank_err = (n + 3) * eps if weights is not None else eps
    # The largest rank step: 1/(N+1), or max w / sum w * N/(N+1) with weights.
    step = 1.0 / (n + 1) if weights is None else float(np.max(weights) / np.sum(weights)) * n / (n + 1)
    bound = np.empty(q.shape)
    for d in range(q.shape[1]):
        k = np.sort(pts[:, d])
        j = np.clip(np.searchsorted(k, q[:, d], side="right") - 1, 0, max(n - 2, 0))
        gap = k[np.minimum(j + 1, n - 1)] - k[j]
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.where(gap > 0, step / gap, 0.0)
        bound[:, d] = 4 * eps * (slope * (np.abs(q[:, d]) + 2 * np.abs(k).max()) + 2.0) + rank_err
    return bound


def mesh_weight_bound(
    n: int, data: np.ndarray, over: np.ndarray, dtype_name: str, weights: np.ndarray | None = None
) -> np.ndarray:
    """Rounding bound of the (K, 4) bilinear weights against :func:`pyautoarray_mappings`, same indices.

    ``index = (n - 3) u + 1``: the u error times (n - 3), plus the rounding of
    the product and sum (``n eps``); ``t = index - down`` is exact (Sterbenz);
    each weight is a product of two factors in [0, 1] each off by that much,
    plus one rounding: ``2 t_err + 2 eps``.
    """
    eps = float(np.finfo(dtype_name).eps)
    data = np.asarray(data, dtype=np.float64)
    mu, scale = data.mean(axis=0), data.std(axis=0).min()
    ub = transform_bound((data - mu) / scale, (np.asarray(over, dtype=np.float64) - mu) / scale, dtype_name, weights)
    t_err = (n - 3) * ub + n * eps
    per_point = 2 * t_err.max(axis=1) + 2 * eps
    return np.repeat(per_point[:, None], 4, axis=1)


def inverse_bound(points: np.ndarray, u: np.ndarray, dtype_name: str, weights: np.ndarray | None = None) -> np.ndarray:
    """Rounding bound of ``inv_transform(u)`` (per entry) against :func:`inverse_reference`.

    The inverse interpolates the sorted points by their ranks: slope ``S =
    gap / rank step`` of the bin ``u`` falls in.  Contract: ``4 eps (S |u| +
    |k0| + |k1|)``; the ranks (the knots here) are off by ``eps`` or ``(N + 3)
    eps`` (weighted), which moves the output by ``S`` times that.
    """
    eps = float(np.finfo(dtype_name).eps)
    knots, ranks = rank_reference(points, weights)
    u = np.asarray(u, dtype=np.float64)
    n = knots[0].size
    rank_err = (n + 3) * eps if weights is not None else eps
    bound = np.empty(u.shape)
    for d in range(u.shape[1]):
        k, t = knots[d], ranks[d]
        if n == 1:
            bound[:, d] = 0.0
            continue
        j = np.clip(np.searchsorted(t, u[:, d], side="right") - 1, 0, n - 2)
        dt = t[j + 1] - t[j]
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.where(dt > 0, (k[j + 1] - k[j]) / dt, 0.0)
        bound[:, d] = 4 * eps * (slope * np.abs(u[:, d]) + np.abs(k[j]) + np.abs(k[j + 1])) + rank_err * slope
    return bound


# The partials case: a genuine bin, a run of exact duplicates (2, 2), queries inside bins, on an interior
# knot, on the duplicate run, on the first and last knot and outside: every kind of partial is nonzero
# somewhere.  The tangents have no zero and no common factor, so no term of a tangent cancels by accident.
KNOTS = np.array([0.0, 1.0, 2.0, 2.0, 3.0, 5.0])
VALUES = np.array([0.5, -1.25, 3.0, 0.75, 2.5, -2.0])
X = np.array([0.375, 1.0, 1.5, 2.0, 2.625, 4.0, 0.0, 5.0, -1.0, 6.0])
X_T = np.array([0.3, -1.1, 0.7, 2.0, -0.4, 1.3, 0.9, -0.6, 1.7, -2.2])
KNOTS_T = np.array([0.25, -0.5, 1.5, -0.75, 0.6, 1.1])
VALUES_T = np.array([-0.8, 0.35, 1.2, -1.4, 0.45, 0.9])


def expected_tangent(
    dt: str, x_t: np.ndarray | None, knot_grad: str = "exact", *, knots: bool = True, values: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The contract's output tangent ``dx x_t + dknots @ knots_t + dvalues @ values_t`` of the partials
    case (:data:`X`, :data:`KNOTS`, :data:`VALUES`), and its bound.

    Bound: each partial computed in ``dt`` is within ``4 eps (|p| + max|slope|)`` of the float64
    transcription (a slope and a weight, each <= 3 eps/2 relative, and one product); the tangent sums
    at most ``2 + 2 + 2`` products with the input tangents, each adding one rounding of ``eps |p t|``.
    So ``sum |t| 4 eps (|p| + s) + 7 eps sum |p t|`` bounds the difference (``s`` the largest genuine
    slope).
    """
    k, v, x = KNOTS.astype(dt), VALUES.astype(dt), X.astype(dt)
    _, ex, ek, ev = contract_partials(x, k, v, threshold=contract_threshold(k, dt), knot_grad=knot_grad)
    eps = float(np.finfo(dt).eps)
    gaps = np.diff(k.astype(np.float64))
    genuine = gaps > contract_threshold(k, dt)
    s = float(np.max(np.abs(np.diff(v.astype(np.float64))[genuine] / gaps[genuine])))
    # A tangent left off is zero.
    kt = KNOTS_T.astype(dt).astype(np.float64) * knots
    vt = VALUES_T.astype(dt).astype(np.float64) * values
    tangent = ek @ kt + ev @ vt
    size = np.abs(ek) @ np.abs(kt) + np.abs(ev) @ np.abs(vt)
    first = 4 * eps * ((np.abs(ek) + s) @ np.abs(kt) + (np.abs(ev) + s) @ np.abs(vt))
    if x_t is not None:
        xt = x_t.astype(dt).astype(np.float64)
        tangent = tangent + ex * xt
        size = size + np.abs(ex * xt)
        first = first + 4 * eps * (np.abs(ex) + s) * np.abs(xt)
    if values:  # every output reads a value: with the values' tangents no entry is 0 by accident
        assert np.all(np.abs(tangent) > 0.05)
    return tangent, first + 7 * eps * size


def expected_cotangent(dt: str, g: np.ndarray, knot_grad: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """The contract's ``(g @ d/dx, g @ d/dknots, g @ d/dvalues)`` of the partials case, each with its bound.

    Each partial computed in ``dt`` is within ``4 eps (|p| + s)`` of the float64 transcription
    (see :func:`expected_tangent`); each gradient entry sums at most ``M`` products with ``g``,
    adding ``(M + 1) eps sum |g p|``.
    """
    k, v, x = KNOTS.astype(dt), VALUES.astype(dt), X.astype(dt)
    g = g.astype(dt).astype(np.float64)
    threshold = contract_threshold(k, dt)
    _, ex, ek, ev = contract_partials(x, k, v, threshold=threshold, knot_grad=knot_grad)
    eps = float(np.finfo(dt).eps)
    gaps = np.diff(k.astype(np.float64))
    genuine = gaps > threshold
    s = float(np.max(np.abs(np.diff(v.astype(np.float64))[genuine] / gaps[genuine])))
    m = x.size
    return [
        (g @ jac, np.abs(g) @ (4 * eps * (np.abs(jac) + s)) + (m + 1) * eps * (np.abs(g) @ np.abs(jac)))
        for jac in (np.diag(ex), ek, ev)
    ]


# One column with a run of four tied points (weights 3, 0.7, 1.9, 0.2) between untied ones, and a
# second column without ties; weights neither uniform nor dyadic, so every rank is rounded.
TIE_POINTS = np.array([[0.0, 4.0], [1.5, 0.5], [1.5, 2.25], [1.5, 3.0], [1.5, 1.0], [3.0, 5.5], [4.0, 2.0]])
TIE_WEIGHTS = np.array([0.3, 3.0, 0.7, 1.9, 0.2, 1.1, 0.45])


def tie_rule_ranks(col: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted column and its ranks by the documented tie rule, run by run in float64: a run of m
    tied points after cumulative weight C, with total W, gets C + W i / m (i = 1..m), all scaled so
    that the last rank is N / (N + 1)."""
    order = np.argsort(col, kind="stable")
    s, ws = col[order].astype(np.float64), w[order].astype(np.float64)
    ranks, c, i = np.empty(s.size), 0.0, 0
    while i < s.size:
        m = int(np.sum(s == s[i]))
        run = float(np.sum(ws[i : i + m]))
        ranks[i : i + m] = c + run * np.arange(1, m + 1) / m
        c, i = c + run, i + m
    return s, ranks / c * s.size / (s.size + 1)
