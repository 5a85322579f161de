"""knotsafe.create_transforms: per-column rank transforms and their gradients."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

import knotsafe
from knotsafe.testing import lens_grid, trace_sis
from tests._contract import inverse_bound, transform_bound, transform_reference
from tests._support import AutoDiff, asarray, backend_name, eps_of, has_float64, to_numpy

_LAZY_SKIP = pytest.mark.skip_xp_backend(
    "dask", reason="data check: needs values, skipped on lazy dask arrays (tests/test_dask.py)"
)


def _reference(points: np.ndarray, q: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """NumPy reference: sort each column, numpy.interp with ranks t (and back)."""
    n, d = points.shape
    fwd, inv = np.empty_like(q, dtype=np.float64), np.empty_like(q, dtype=np.float64)
    for c in range(d):
        order = np.argsort(points[:, c], kind="stable")
        s = points[order, c].astype(np.float64)
        if weights is None:
            t = np.arange(1, n + 1) / (n + 1)
        else:
            t = _tie_spread_ranks(s, weights[order].astype(np.float64))
        fwd[:, c] = np.interp(q[:, c], s, t, left=0.0, right=1.0)
        inv[:, c] = np.interp(np.clip(q[:, c], 0, 1), t, s)
    return fwd, inv


def _tie_spread_ranks(sorted_col: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The documented weighted tie rule, written run by run: a run of m tied points
    with total weight W after cumulative weight C gets C + W * i / m, i = 1..m."""
    n = sorted_col.size
    _, counts = np.unique(sorted_col, return_counts=True)
    run_w = np.add.reduceat(w, np.concatenate([[0], np.cumsum(counts)[:-1]]))
    cum = np.empty(n)
    c, pos = 0.0, 0
    for m, wr in zip(counts, run_w, strict=True):
        cum[pos : pos + m] = c + wr * np.arange(1, m + 1) / m
        c += wr
        pos += m
    return cum / (cum[-1] * (n + 1) / n)


@pytest.fixture
def grid(dtype_name: str) -> tuple[np.ndarray, np.ndarray]:
    data, over = lens_grid(radius=1.2, pixel_scale=0.1, sub_size=2, rotation=0.3)
    return data.astype(dtype_name), over.astype(dtype_name)


def _check_close(got: np.ndarray, ref: np.ndarray, dtype_name: str, exact: bool, bound: np.ndarray) -> None:
    assert got.dtype == np.dtype(dtype_name)
    if exact:
        np.testing.assert_array_equal(got, ref)
    else:
        # bound: the contract's rounding bound, per entry (tests/_contract.py derives it).
        err = np.abs(got.astype(np.float64) - ref)
        assert np.all(err <= bound), np.max(err - bound)


def test_transform_matches_numpy_reference(xp: ModuleType, dtype_name: str, grid: tuple) -> None:
    data, over = grid
    tr, inv = knotsafe.create_transforms(asarray(xp, data, dtype_name))
    u = np.linspace(-0.1, 1.1, over.shape[0] * 2).reshape(-1, 2)
    fwd_ref, _ = _reference(data, over)
    _, inv_ref = _reference(data, u)
    exact = backend_name(xp) == "numpy" and dtype_name == "float64"
    fb = transform_bound(data.astype(np.float64), over.astype(np.float64), dtype_name)
    ib = inverse_bound(data.astype(np.float64), u.astype(dtype_name).astype(np.float64), dtype_name)
    _check_close(to_numpy(tr(asarray(xp, over, dtype_name))), fwd_ref, dtype_name, exact, fb)
    _check_close(to_numpy(inv(asarray(xp, u, dtype_name))), inv_ref, dtype_name, exact, ib)


def test_transform_range_monotone_and_round_trip(xp: ModuleType, dtype_name: str, grid: tuple) -> None:
    data, _ = grid
    tr, inv = knotsafe.create_transforms(asarray(xp, data, dtype_name))
    q = np.sort(np.concatenate([data, data + 0.5, data - 0.5]), axis=0)
    u = to_numpy(tr(asarray(xp, q, dtype_name)))
    assert np.all((u >= 0) & (u <= 1))
    assert np.all(np.diff(u, axis=0) >= 0)
    # Where a point's value is unique in its column, inv(transform(p)) == p.
    back = to_numpy(inv(tr(asarray(xp, data, dtype_name))))
    for c in range(2):
        vals, counts = np.unique(data[:, c], return_counts=True)
        unique = np.isin(data[:, c], vals[counts == 1])
        np.testing.assert_allclose(back[unique, c], data[unique, c], rtol=0, atol=16 * eps_of(dtype_name))


@pytest.mark.parametrize("dim", [1, 3])
def test_any_dimension(xp: ModuleType, dim: int, rng: np.random.Generator) -> None:
    pts = rng.normal(size=(50, dim))
    pts[10:20] = pts[0]  # duplicated rows
    q = rng.normal(size=(30, dim))
    dt = "float64" if has_float64(xp) else "float32"
    tr, inv = knotsafe.create_transforms(asarray(xp, pts, dt))
    out = tr(asarray(xp, q, dt))
    assert tuple(out.shape) == (30, dim)
    fwd_ref, _ = _reference(pts.astype(dt), q.astype(dt))
    bound = transform_bound(pts.astype(dt).astype(np.float64), q.astype(dt).astype(np.float64), dt)
    assert np.all(np.abs(to_numpy(out) - fwd_ref) <= bound)
    assert tuple(inv(out).shape) == (30, dim)


def test_uniform_weights_equal_unweighted_exactly(xp: ModuleType, dtype_name: str, grid: tuple) -> None:
    data, over = grid
    pts = asarray(xp, data, dtype_name)
    q = asarray(xp, over, dtype_name)
    plain_t, plain_i = knotsafe.create_transforms(pts)
    for c in (1.0, 0.3, 7.25):
        w = asarray(xp, np.full(data.shape[0], c), dtype_name)
        wt, wi = knotsafe.create_transforms(pts, w)
        np.testing.assert_array_equal(to_numpy(wt(q)), to_numpy(plain_t(q)))
        u = asarray(xp, np.linspace(0, 1, 20).reshape(10, 2), dtype_name)
        np.testing.assert_array_equal(to_numpy(wi(u)), to_numpy(plain_i(u)))


def test_weighted_ranks_match_reference(xp: ModuleType, dtype_name: str, grid: tuple, rng: np.random.Generator) -> None:
    data, over = grid
    w = rng.uniform(0.0, 2.0, data.shape[0]).astype(dtype_name)
    w[::7] = 0.0
    tr, _ = knotsafe.create_transforms(asarray(xp, data, dtype_name), mesh_weight_map=asarray(xp, w, dtype_name))
    fwd_ref, _ = _reference(data, over, w)
    got = to_numpy(tr(asarray(xp, over, dtype_name)))
    bound = transform_bound(data.astype(np.float64), over.astype(np.float64), dtype_name, w.astype(np.float64))
    assert np.all(np.abs(got - fwd_ref) <= bound), np.max(np.abs(got - fwd_ref) - bound)


def test_original_call_shape_with_plain_module(xp: ModuleType) -> None:
    data, over = lens_grid(radius=1.0, pixel_scale=0.1, sub_size=1)
    dt = "float64" if has_float64(xp) else "float32"
    pts = asarray(xp, data, dt)
    tr, _ = knotsafe.create_transforms(pts, mesh_weight_map=None, xp=xp)
    ref, _ = _reference(data.astype(dt), over.astype(dt))
    bound = transform_bound(data.astype(dt).astype(np.float64), over.astype(dt).astype(np.float64), dt)
    assert np.all(np.abs(to_numpy(tr(asarray(xp, over, dt))) - ref) <= bound)


@pytest.mark.parametrize(
    ("points", "weights", "match"),
    [
        (np.zeros(5), None, "`points` must have shape"),
        (np.zeros((0, 2)), None, "`points` must have shape"),
        pytest.param(
            np.array([[0.0, 1.0], [np.nan, 2.0]]),
            None,
            r"`points` has 1 row\(s\) with NaN or inf; the first is row 1",
            marks=_LAZY_SKIP,
        ),
        (np.zeros((3, 2)), np.ones(4), r"`weights` must have shape \(3,\)"),
        pytest.param(
            np.zeros((3, 2)),
            np.array([1.0, -1.0, 1.0]),
            r"`weights` has 1 row\(s\) that are negative, NaN or inf; the first is row 1",
            marks=_LAZY_SKIP,
        ),
        pytest.param(
            np.zeros((3, 2)),
            np.array([np.nan, 1.0, -1.0]),
            r"`weights` has 2 row\(s\) that are negative, NaN or inf; the first is row 0",
            marks=_LAZY_SKIP,
        ),
        pytest.param(np.zeros((3, 2)), np.zeros(3), "`weights` must not all be zero", marks=_LAZY_SKIP),
    ],
)
def test_bad_input_names_the_argument(
    xp: ModuleType, points: np.ndarray, weights: np.ndarray | None, match: str
) -> None:
    dt = "float64" if has_float64(xp) else "float32"
    w = None if weights is None else asarray(xp, weights, dt)
    with pytest.raises(ValueError, match=match):
        knotsafe.create_transforms(asarray(xp, points, dt), w)


def test_bad_queries_and_options(xp: ModuleType) -> None:
    dt = "float64" if has_float64(xp) else "float32"
    pts = asarray(xp, np.arange(6.0).reshape(3, 2), dt)
    tr, inv = knotsafe.create_transforms(pts)
    with pytest.raises(ValueError, match=r"`q` must have shape \(K, 2\)"):
        tr(asarray(xp, np.zeros((4, 3)), dt))
    with pytest.raises(ValueError, match=r"`u` must have shape \(K, 2\)"):
        inv(asarray(xp, np.zeros(4), dt))
    with pytest.raises(TypeError, match="not both"):
        knotsafe.create_transforms(pts, asarray(xp, np.ones(3), dt), mesh_weight_map=asarray(xp, np.ones(3), dt))
    with pytest.raises(ValueError, match="`knot_grad`"):
        knotsafe.create_transforms(pts, knot_grad="nope")


def test_nan_queries_give_nan(xp: ModuleType) -> None:
    dt = "float64" if has_float64(xp) else "float32"
    tr, inv = knotsafe.create_transforms(asarray(xp, np.arange(6.0).reshape(3, 2), dt))
    q = asarray(xp, np.array([[np.nan, 1.0], [2.0, np.nan]]), dt)
    out = to_numpy(tr(q))
    assert np.isnan(out[0, 0]) and np.isnan(out[1, 1]) and np.isfinite(out[0, 1]) and np.isfinite(out[1, 0])
    back = to_numpy(inv(q))
    assert np.isnan(back[0, 0]) and np.isfinite(back[0, 1])


# --- gradients through the whole chain -------------------------------------------


def _chain(xp: ModuleType, image: np.ndarray, sub: np.ndarray, dt: str, knot_grad: str = "exact"):  # type: ignore[no-untyped-def]
    """Objective of the Einstein radius: traced grid -> transforms -> rank-space sub-pixels."""
    img, sb = asarray(xp, image, dt), asarray(xp, sub, dt)
    weights = asarray(xp, np.linspace(1.0, 2.0, sub.shape[0] * 2).reshape(-1, 2), dt)

    def objective(theta):  # type: ignore[no-untyped-def]
        data = trace_sis(img, theta)
        tr, _ = knotsafe.create_transforms(data, knot_grad=knot_grad)
        return xp.sum(tr(trace_sis(sb, theta)) * weights)

    return objective


def test_chain_gradient_finite_and_matches_finite_difference(xp: ModuleType, autodiff: AutoDiff) -> None:
    from knotsafe.testing import circular_mask_grid

    if not has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    image = circular_mask_grid(1.0, 0.1, 1)
    sub = circular_mask_grid(1.0, 0.1, 2)
    f = _chain(xp, image, sub, "float64")
    theta = 0.6
    (g,) = autodiff.grad(f, [asarray(xp, theta)], (0,))

    w = np.linspace(1.0, 2.0, sub.shape[0] * 2).reshape(-1, 2)

    def u_np(t: float) -> np.ndarray:  # the independent reference: sort + numpy.interp on i/(N+1)
        return transform_reference(trace_sis(image, t, xp=np), trace_sis(sub, t, xp=np))

    h = 1e-9  # crosses no knot or bin boundary on this grid (checked below)
    # Sum the per-query differences: subtracting two sums would lose the step in their ulp.
    fd = np.sum(w * (u_np(theta + h) - u_np(theta - h))) / (2 * h)
    plus = np.argsort(trace_sis(image, theta + h, xp=np)[:, 0], kind="stable")
    minus = np.argsort(trace_sis(image, theta - h, xp=np)[:, 0], kind="stable")
    assert np.array_equal(plus, minus)
    assert np.isfinite(g).all()
    np.testing.assert_allclose(g, fd, rtol=1e-6)


@pytest.mark.parametrize("knot_grad", ["exact", "stop"])
def test_chain_gradient_finite_in_float32(xp: ModuleType, autodiff: AutoDiff, knot_grad: str) -> None:
    from knotsafe.testing import circular_mask_grid

    f = _chain(xp, circular_mask_grid(1.5, 0.05, 1), circular_mask_grid(1.5, 0.05, 2), "float32", knot_grad)
    (g,) = autodiff.grad(f, [asarray(xp, 1.6, "float32")], (0,))
    assert np.isfinite(g).all()
