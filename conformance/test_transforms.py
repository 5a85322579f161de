"""create_transforms: monotone and inside [0, 1], inverse on the knots, uniform weights, any D."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest

import knotsafe
from conformance._backends import Driver
from conformance._compute import check_cases
from conformance._data import reference, ulp_distance
from conformance._record import Cell
from knotsafe.testing import lens_grid


@dataclass(frozen=True)
class PointSet:
    name: str
    points: np.ndarray  # (N, D) in the dtype
    queries: np.ndarray  # (K, D) in the dtype


def _near_dups(rng: np.random.Generator, n: int, dtype: str) -> np.ndarray:
    base = rng.uniform(-1, 1, n // 3).astype(dtype)
    up = np.dtype(dtype).type(np.inf)
    col = np.concatenate([base, np.nextafter(base, up), np.nextafter(np.nextafter(base, up), up)])
    return np.concatenate([col, rng.uniform(-1, 1, n - col.size).astype(dtype)])


@cache
def point_sets(dtype: str) -> tuple[PointSet, ...]:
    rng = np.random.default_rng(7)
    sets = []
    data, _ = lens_grid(radius=1.5, sub_size=1, rotation=0.3)
    sets.append(("lens_grid_2d", data.astype(dtype)))
    n = 60
    c0 = np.repeat(rng.uniform(-2, 2, 20), 3)  # exact duplicates
    c2 = np.concatenate([np.zeros(30), rng.uniform(0, 1, 30)])  # a long run
    sets.append(("duplicates_3d", np.stack([c0.astype(dtype), _near_dups(rng, n, dtype), c2.astype(dtype)], axis=1)))
    sets.append(("one_column", rng.normal(size=(40, 1)).astype(dtype)))
    sets.append(("seven_columns", np.round(rng.normal(size=(25, 7)), 1).astype(dtype)))
    sets.append(("single_point", np.array([[0.5, -2.0]], dtype=dtype)))
    out = []
    for name, pts in sets:
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        rand = rng.uniform(lo - 0.1 * span, hi + 0.1 * span, size=(100, pts.shape[1])).astype(dtype)
        out.append(PointSet(name, pts, np.concatenate([pts, rand]).astype(dtype)))
    return tuple(out)


def _name(ps: PointSet) -> str:
    return ps.name


def _ranks(n: int, dtype: str) -> np.ndarray:
    return (np.arange(1, n + 1, dtype=dtype) / np.dtype(dtype).type(n + 1)).astype(dtype)


@pytest.mark.prop("tf_values")
def test_transform_values_against_sort_and_numpy_interp(backend: Driver, dtype: str, cell: Cell) -> None:
    """transform(q) against an independent reference: each column sorted, numpy.interp in float64 on the
    ranks i/(N+1), 0 below and 1 above.  Error in units of eps * s, s = |slope||q| + |t_j| + |t_j+1| of
    the bin: interp's contract is 4 eps s; ranks rounded to the dtype move the output by at most
    eps/2 (|t_j| + |t_j+1|) <= eps s / 2.  Outside the range the values must be exactly 0 and 1."""
    eps = float(np.finfo(dtype).eps)

    def measure(ps: PointSet) -> tuple[float, int]:
        transform, _ = knotsafe.create_transforms(backend.asarray(ps.points, dtype))
        got = backend.to_numpy(transform(backend.asarray(ps.queries, dtype))).astype(np.float64)
        n, dim = ps.points.shape
        t = np.arange(1, n + 1) / (n + 1)  # float64: not the dtype's ranks, not knotsafe's
        worst = 0.0
        for d in range(dim):
            k = np.sort(ps.points[:, d].astype(np.float64))
            q = ps.queries[:, d].astype(np.float64)
            ref = np.interp(q, k, t, left=0.0, right=1.0)
            tk = np.concatenate([t, t]) if n == 1 else t
            kk = np.concatenate([k, k]) if n == 1 else k
            j = np.clip(np.searchsorted(kk, q, side="right") - 1, 0, kk.size - 2)
            gap = kk[j + 1] - kk[j]
            with np.errstate(divide="ignore", invalid="ignore"):
                slope = np.where(gap > 0, (tk[j + 1] - tk[j]) / gap, 0.0)
            s = np.abs(slope) * np.abs(q) + np.abs(tk[j]) + np.abs(tk[j + 1])
            err = np.abs(got[:, d] - ref)
            outside = (q < k[0]) | (q > k[-1])
            if np.any(err[outside] != 0):
                raise AssertionError(f"column {d}: outside the points the transform is not exactly 0 / 1")
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.where(err == 0, 0.0, err / (eps * s))
            worst = max(worst, float(np.max(rel, initial=0.0)))
        return worst, got.size

    check_cases(cell, list(point_sets(dtype)), measure, _name)


@pytest.mark.prop("tf_monotone")
def test_transform_monotone_in_unit_interval(backend: Driver, dtype: str, cell: Cell) -> None:
    """For queries sorted per column, every column of transform(q) is non-decreasing and inside [0, 1]."""

    def measure(ps: PointSet) -> tuple[float, int]:
        transform, _ = knotsafe.create_transforms(backend.asarray(ps.points, dtype))
        q = np.sort(ps.queries, axis=0)
        t = backend.to_numpy(transform(backend.asarray(q, dtype))).astype(np.float64)
        if t.shape != q.shape or np.any(np.isnan(t)):
            raise AssertionError(f"shape {t.shape} (want {q.shape}) or NaN in the output")
        drop = float(np.max(-np.diff(t, axis=0), initial=0.0))
        outside = float(max(-t.min(), t.max() - 1.0))
        return max(drop, outside, 0.0), t.size

    check_cases(cell, list(point_sets(dtype)), measure, _name)


@pytest.mark.prop("tf_inverse")
def test_inverse_returns_knots(backend: Driver, dtype: str, cell: Cell) -> None:
    """inv_transform(transform(points)) returns every point value that is distinct in its column,
    within the forward-parity bound of the inverse interpolation."""
    eps = float(np.finfo(dtype).eps)

    def measure(ps: PointSet) -> tuple[float, int]:
        transform, inv = knotsafe.create_transforms(backend.asarray(ps.points, dtype))
        u = transform(backend.asarray(ps.points, dtype))
        back = backend.to_numpy(inv(u)).astype(np.float64)
        u_np = backend.to_numpy(u)
        n, dim = ps.points.shape
        worst, count = 0.0, 0
        for d in range(dim):
            col = ps.points[:, d]
            values, counts = np.unique(col, return_counts=True)
            distinct = np.isin(col, values[counts == 1])
            ref = reference(_ranks(n, dtype), np.sort(col), u_np[:, d])
            diff = np.abs(back[:, d] - col.astype(np.float64))
            with np.errstate(all="ignore"):
                err = np.where(diff == 0, 0.0, diff / (eps * ref.scale))
            err = np.where(np.isnan(err), np.inf, err)
            worst = max(worst, float(np.max(err[distinct], initial=0.0)))
            count += int(np.sum(distinct))
        return worst, count

    check_cases(cell, list(point_sets(dtype)), measure, _name)


UNIFORM = (1.0, 0.37, 1000.0)


@pytest.mark.prop("tf_weights")
def test_uniform_weights_equal_unweighted(backend: Driver, dtype: str, cell: Cell) -> None:
    """weights = c * ones gives bitwise the unweighted transform and inverse (c = 1, 0.37, 1000)."""

    def measure(ps: PointSet) -> tuple[float, int]:
        pts = backend.asarray(ps.points, dtype)
        q = backend.asarray(ps.queries, dtype)
        u = backend.asarray(np.tile(np.linspace(0, 1, 41)[:, None], (1, ps.points.shape[1])), dtype)
        t0, i0 = knotsafe.create_transforms(pts)
        base = [backend.to_numpy(t0(q)), backend.to_numpy(i0(u))]
        worst = 0.0
        for c in UNIFORM:
            w = backend.asarray(np.full(ps.points.shape[0], c), dtype)
            tw, iw = knotsafe.create_transforms(pts, w)
            for got, want in zip((backend.to_numpy(tw(q)), backend.to_numpy(iw(u))), base, strict=True):
                worst = max(worst, float(np.max(ulp_distance(got, want), initial=0.0)))
        return worst, sum(b.size for b in base) * len(UNIFORM)

    check_cases(cell, list(point_sets(dtype)), measure, _name)


@pytest.mark.prop("tf_dims")
def test_any_dimension(backend: Driver, dtype: str, cell: Cell) -> None:
    """For D = 1, 2, 3, 7 the (K, D) outputs equal, column by column, the transforms of each column alone."""

    def measure(ps: PointSet) -> tuple[float, int]:
        dim = ps.points.shape[1]
        u_np = np.tile(np.linspace(0, 1, 41)[:, None], (1, dim))
        t, inv = knotsafe.create_transforms(backend.asarray(ps.points, dtype))
        full_t = backend.to_numpy(t(backend.asarray(ps.queries, dtype)))
        full_i = backend.to_numpy(inv(backend.asarray(u_np, dtype)))
        if full_t.shape != ps.queries.shape or full_i.shape != u_np.shape:
            raise AssertionError(f"output shapes {full_t.shape}, {full_i.shape}")
        worst = 0.0
        for d in range(dim):
            t1, i1 = knotsafe.create_transforms(backend.asarray(ps.points[:, d : d + 1], dtype))
            one_t = backend.to_numpy(t1(backend.asarray(ps.queries[:, d : d + 1], dtype)))[:, 0]
            one_i = backend.to_numpy(i1(backend.asarray(u_np[:, d : d + 1], dtype)))[:, 0]
            worst = max(worst, float(np.max(ulp_distance(full_t[:, d], one_t), initial=0.0)))
            worst = max(worst, float(np.max(ulp_distance(full_i[:, d], one_i), initial=0.0)))
        return worst, full_t.size + full_i.size

    check_cases(cell, list(point_sets(dtype)), measure, _name)
