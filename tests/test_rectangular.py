"""``knotsafe.rectangular`` with the default rank transform: the mesh's mappings and their layout, the
mapping and curvature matrices, the geometry, argument checks and end-to-end gradients.

References: NumPy transcriptions of PyAutoArray's mesh (here and in ``tests/_contract.py``), dense
matrices built by loops, ``numpy.interp`` and central differences.  The mesh with
``transform="kernel"`` is in ``tests/test_kernel_density.py``; bad data in ``tests/test_validation.py``.
"""

from __future__ import annotations

import functools
import importlib.util
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import knotsafe
from knotsafe import rectangular
from knotsafe._lib import mesh as mesh_lib
from knotsafe._lib.backends import registry
from knotsafe.testing import (
    circular_mask_grid,
    jitter_interp,
    lens_grid,
    peer_mappings_weights,
    plain_interp,
    trace_sis,
)
from tests import _support
from tests._contract import mesh_weight_bound, pyautoarray_mappings, rank_reference
from tests._support import (
    AutoDiff,
    asarray,
    backend_name,
    central_difference_gradient,
    has_float64,
    points_with_duplicate_rows,
    small_lens_grid,
    to_numpy,
)

FIXTURE_HYPOTHESIS = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _dt(xp: ModuleType) -> str:
    return "float64" if has_float64(xp) else "float32"


N_MESH = 10
RADIUS, PIXEL_SCALE, SUB = 1.5, 0.1, 2
THETA = 1.2  # Einstein radius at which gradients are taken
FD_STEP = 1e-9


@functools.cache
def _grids(rotation: float) -> tuple[np.ndarray, np.ndarray]:
    """Traced data and over-sampled grids (float64 NumPy), duplicate-laden."""
    return lens_grid(radius=RADIUS, pixel_scale=PIXEL_SCALE, sub_size=SUB, einstein_radius=1.6, rotation=rotation)


@functools.cache
def _image_grids() -> tuple[np.ndarray, np.ndarray]:
    return circular_mask_grid(RADIUS, PIXEL_SCALE, 1), circular_mask_grid(RADIUS, PIXEL_SCALE, SUB)


def _need_float64(xp: ModuleType) -> None:
    if not _support.has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")


def _np(a: Any) -> np.ndarray:
    return _support.to_numpy(a)


def _reference_index(n: int, data: np.ndarray, over: np.ndarray) -> np.ndarray:
    """Index-space coordinates, transcribed from PyAutoArray (rank CDF, numpy.interp)."""
    mu = data.mean(axis=0)
    scale = data.std(axis=0).min()
    scaled = (data - mu) / scale
    t = np.arange(1, data.shape[0] + 1) / (data.shape[0] + 1)
    knots = np.sort(scaled, axis=0)
    q = (over - mu) / scale
    u = np.stack([np.interp(q[:, j], knots[:, j], t, left=0, right=1) for j in range(2)], axis=1)
    return (n - 3) * u + 1


def _reference_mappings(n: int, data: np.ndarray, over: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PyAutoArray's adaptive_rectangular_mappings_weights_via_interpolation_from (rank CDF)."""
    g = _reference_index(n, data, over)
    ix_down = np.clip(np.floor(g[:, 0]), 0, n - 2)
    iy_down = np.clip(np.floor(g[:, 1]), 0, n - 2)
    ix_up, iy_up = ix_down + 1, iy_down + 1

    def flatten(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return (n - i) * n + j

    flat = np.stack(
        [flatten(ix_up, iy_down), flatten(ix_up, iy_up), flatten(ix_down, iy_down), flatten(ix_down, iy_up)], axis=1
    ).astype(np.int64)
    t_row, t_col = g[:, 0] - ix_down, g[:, 1] - iy_down
    w = np.stack([t_row * (1 - t_col), t_row * t_col, (1 - t_row) * (1 - t_col), (1 - t_row) * t_col], axis=1)
    return flat, w


def _reference_lines(
    n: int, data: np.ndarray, offset: float, count: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """Node (offset 0) or edge (offset 0.5) positions per row/column, via numpy.interp."""
    mu = data.mean(axis=0)
    scale = data.std(axis=0).min()
    knots, ranks = rank_reference((data - mu) / scale, weights)
    r = np.arange(count)
    u = np.stack([(n - 1 + offset - r) / (n - 3), (r - 1 - offset) / (n - 3)], axis=1)
    return np.stack([np.interp(u[:, j], ranks[j], knots[j]) for j in range(2)], axis=1) * scale + mu


def _line_bound(data: np.ndarray, weights: np.ndarray | None) -> float:
    """Rounding bound of a node/edge coordinate (float64) against _reference_lines.

    The inverse transform interpolates the scaled points by their ranks: slope
    S = gap / rank step.  Contract: 4 eps (S |u| + |k0| + |k1|) with |u| <= 2
    here (guard nodes); ranks off by eps (unweighted) or (N + 3) eps (weighted)
    move it by S times that; back to the source plane: times scale, plus the
    rounding of ``* scale + mu`` (2 eps of the result).
    """
    eps = float(np.finfo(np.float64).eps)
    mu, scale = data.mean(axis=0), data.std(axis=0).min()
    knots, ranks = rank_reference((data - mu) / scale, weights)
    worst = 0.0
    for k, t in zip(knots, ranks, strict=True):
        dt = np.diff(t)
        slope = np.max(np.diff(k)[dt > 0] / dt[dt > 0])
        rank_err = (k.size + 3) * eps if weights is not None else eps
        kmax = np.abs(k).max()
        worst = max(
            worst,
            scale * (4 * eps * (2 * slope + 2 * kmax) + rank_err * slope) + 2 * eps * (np.abs(mu).max() + scale * kmax),
        )
    return worst


def _objective(
    xp: ModuleType, theta: Any, rotation: float, *, interp: Any = None, knot_grad: str = "exact", dtype: Any = None
) -> Any:
    """sum((M @ s)^2) for the traced lens grid at Einstein radius ``theta``."""
    img_d, img_o = _image_grids()
    if dtype is not None:
        img_d, img_o = img_d.astype(dtype), img_o.astype(dtype)
    data = trace_sis(xp.asarray(img_d), theta, rotation=rotation, xp=xp)
    over = trace_sis(xp.asarray(img_o), theta, rotation=rotation, xp=xp)
    if interp is None:
        idx, w = rectangular.mappings_weights(N_MESH, data, over, xp=xp, knot_grad=knot_grad)  # type: ignore[arg-type]
    else:
        idx, w = peer_mappings_weights(N_MESH, data, over, xp=xp, interp=interp)
    m = rectangular.mapping_matrix(idx, w, N_MESH * N_MESH, xp=xp)
    s = np.random.default_rng(7).normal(size=N_MESH * N_MESH).astype(img_d.dtype)
    return xp.sum((m @ xp.asarray(s)) ** 2)


def _numpy_objective(theta: float, rotation: float) -> float:
    return float(_objective(np, np.float64(theta), rotation))


def _fd_structure(theta: float, rotation: float) -> tuple[np.ndarray, ...]:
    """Knot bins of every query (both axes) and the mesh cells, at ``theta``."""
    img_d, img_o = _image_grids()
    data = trace_sis(img_d, theta, rotation=rotation, xp=np)
    over = trace_sis(img_o, theta, rotation=rotation, xp=np)
    bins = [np.searchsorted(np.sort(data[:, j]), over[:, j], side="right") for j in range(2)]
    idx, _ = rectangular.mappings_weights(N_MESH, data, over)
    return (*bins, idx)


def _theta_grad(autodiff: _support.AutoDiff, xp: ModuleType, rotation: float, **kw: Any) -> float:
    theta = xp.asarray(THETA, dtype=kw.pop("theta_dtype", xp.float64))
    (g,) = autodiff.grad(lambda t: _objective(xp, t, rotation, **kw), [theta], [0])
    return float(g)


# --- mappings: layout and agreement with the reference library ------------------------------------


@pytest.mark.parametrize("rotation", [0.0, 0.3])
def test_mappings_match_pyautoarray_reference(xp: ModuleType, rotation: float) -> None:
    """Indices identical and weights within 1e-12 of the transcribed reference, on every backend."""
    _need_float64(xp)
    data, over = _grids(rotation)
    ref_idx, ref_w = _reference_mappings(N_MESH, data, over)
    idx, w = rectangular.mappings_weights(N_MESH, xp.asarray(data), xp.asarray(over))
    assert idx.dtype == _default_int(xp)
    assert w.dtype == xp.float64
    assert tuple(idx.shape) == tuple(w.shape) == (over.shape[0], 4)
    np.testing.assert_array_equal(_np(idx), ref_idx)
    bound = mesh_weight_bound(N_MESH, data, over, "float64")
    assert np.all(np.abs(_np(w) - ref_w) <= bound), np.max(np.abs(_np(w) - ref_w) - bound)


def test_weighted_mappings_match_pyautoarray_reference(xp: ModuleType) -> None:
    """With a mesh_weight_map: the independent transcription with knotsafe's documented weighted
    ranks (cumulative weights scaled so the last rank is N/(N+1)), not knotsafe's own NumPy output."""
    _need_float64(xp)
    data, over = _grids(0.0)
    wmap = np.random.default_rng(3).uniform(0.5, 1.5, data.shape[0])
    ref_idx, ref_w = pyautoarray_mappings(N_MESH, data, over, wmap)
    plain_idx, _ = pyautoarray_mappings(N_MESH, data, over)
    assert not np.array_equal(ref_idx, plain_idx)  # the weights do move the mesh
    idx, w = rectangular.mappings_weights(N_MESH, xp.asarray(data), xp.asarray(over), xp.asarray(wmap))
    np.testing.assert_array_equal(_np(idx), ref_idx)
    bound = mesh_weight_bound(N_MESH, data, over, "float64", wmap)
    assert np.all(np.abs(_np(w) - ref_w) <= bound), np.max(np.abs(_np(w) - ref_w) - bound)


def test_layout_reproduces_index_coordinates(xp: ModuleType, dtype_name: str) -> None:
    """Corner order TL, TR, BL, BR; weights in [0, 1] summing to 1; bilinear weights reproduce the index."""
    data, over = _grids(0.3)
    idx, w = rectangular.mappings_weights(
        N_MESH, _support.asarray(xp, data, dtype_name), _support.asarray(xp, over, dtype_name)
    )
    assert w.dtype == getattr(xp, dtype_name)
    idx, w = _np(idx).astype(np.int64), _np(w).astype(np.float64)
    n = N_MESH
    i_y, i_x = n - idx // n, idx % n
    # TL = (up_y, down_x), TR = (up_y, up_x), BL = (down_y, down_x), BR = (down_y, up_x)
    down_y, down_x = i_y[:, 2], i_x[:, 2]
    np.testing.assert_array_equal(i_y, np.stack([down_y + 1, down_y + 1, down_y, down_y], axis=1))
    np.testing.assert_array_equal(i_x, np.stack([down_x, down_x + 1, down_x, down_x + 1], axis=1))
    tol = 50 * _support.eps_of(dtype_name)
    assert (w >= -tol).all()
    assert (w <= 1 + tol).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=0, atol=tol)
    index = _reference_index(n, data, over)
    recon = np.stack([(w * i_y).sum(axis=1), (w * i_x).sum(axis=1)], axis=1)
    np.testing.assert_allclose(recon, index, rtol=0, atol=n * 1e3 * _support.eps_of(dtype_name))


@pytest.mark.parametrize("n", [3, 4, 7])
def test_indices_stay_in_range_at_and_beyond_the_data(xp: ModuleType, n: int) -> None:
    """index in [1, n-2] puts every flat index in [n+1, n*n-1]; points beyond the data sit on one node."""
    data, _ = _grids(0.0)
    lo, hi = data.min(axis=0), data.max(axis=0)
    beyond = np.array([lo - 5.0, hi + 5.0, [lo[0] - 1.0, hi[1] + 1.0], [hi[0] + 1.0, lo[1] - 1.0]])
    queries = np.concatenate([beyond, [lo, hi]])
    idx, w = rectangular.mappings_weights(n, xp.asarray(data), xp.asarray(queries))
    idx, w = _np(idx), _np(w)
    assert idx.min() >= n + 1
    assert idx.max() <= n * n - 1
    # Beyond the data u is exactly 0 or 1: index 1 (node 1) or n - 2 (bracket [n-2, n-1], t = 0),
    # so the whole weight sits on the BL corner (down_y, down_x) at flat (n - down_y) * n + down_x.
    expect_bl = [(n - 1) * n + 1, 2 * n + (n - 2), (n - 1) * n + (n - 2), 2 * n + 1]
    np.testing.assert_array_equal(w[:4], np.tile([0.0, 0.0, 1.0, 0.0], (4, 1)))
    np.testing.assert_array_equal(idx[:4, 2], expect_bl)


def test_mesh_index_range(xp: ModuleType) -> None:
    data_np, _ = small_lens_grid(None, _dt(xp))
    # Beyond the corner (smallest y, largest x): u = (0, 1), the largest flat index n * n - 1.
    corner = np.array([[data_np[:, 0].min() - 1, data_np[:, 1].max() + 1]])
    data, over = asarray(xp, data_np, _dt(xp)), asarray(xp, corner, _dt(xp))
    n = 46_341  # n * n - 1 > 2**31 - 1
    int_max = int(np.iinfo(np.int32).max)
    info = knotsafe._lib.validation.namespace.array_namespace(data).__array_namespace_info__()
    if info.default_dtypes()["integral"] == xp.int32:
        with pytest.raises(ValueError, match=r"a 46341 x 46341 mesh has 2147488281 entries"):
            rectangular.mappings_weights(n, data, over)
    else:
        idx, _ = rectangular.mappings_weights(n, data, over)
        top = int(to_numpy(idx).max())
        assert top == n * n - 1 > int_max


def test_normalisation_uses_population_std(xp: ModuleType) -> None:
    """mu = per-axis mean, scale = min per-axis std with correction 0 (torch's default differs)."""
    _need_float64(xp)
    pts = np.array([[0.0, 1.0], [1.0, 3.0], [3.0, 2.0], [4.0, 8.0], [7.0, 1.0]])
    ns = array_api_compat.array_namespace(xp.asarray(pts))  # as the public functions pass it
    mu, scale = mesh_lib.normalisation(ns, registry.hooks_for(ns), xp.asarray(pts))
    np.testing.assert_allclose(_np(mu), pts.mean(axis=0), rtol=1e-15)
    # One scale for both axes (per axis since a far larger axis gets its own std).
    np.testing.assert_allclose(_np(scale), [pts.std(axis=0, ddof=0).min()] * 2, rtol=1e-15)
    assert float(_np(scale)[0]) != pytest.approx(pts.std(axis=0, ddof=1).min(), rel=1e-3)


@FIXTURE_HYPOTHESIS
@given(exponent=st.integers(-300, 300), mantissa=st.floats(1.0, 9.99))
def test_mesh_is_scale_invariant(xp: ModuleType, exponent: int, mantissa: float) -> None:
    """Same indices and weights for data scaled by 1e-300..1e300 (float64)."""
    if not has_float64(xp):
        pytest.skip("1e+-300 needs float64")
    data, over = small_lens_grid(None, "float64")
    factor = mantissa * 10.0**exponent
    i0, w0 = rectangular.mappings_weights(8, asarray(xp, data), asarray(xp, over))
    i1, w1 = rectangular.mappings_weights(8, asarray(xp, data * factor), asarray(xp, over * factor))
    i0, w0, i1, w1 = (to_numpy(a) for a in (i0, w0, i1, w1))
    # Scaling rounds each coordinate once (0.5 ulp), normalising adds a few ulp: the
    # index coordinates move by at most (n - 3) * (largest rank slope) * 8 eps * max|x|.
    s = np.sort((data - data.mean(0)) / data.std(0).min(), axis=0)
    gaps = np.diff(s, axis=0)
    slope = (1.0 / (data.shape[0] + 1)) / gaps[gaps > 0].min()
    tol = 5 * slope * 8 * np.finfo(np.float64).eps * np.abs(s).max()
    same = np.all(i0 == i1, axis=1)
    assert same.mean() > 0.99  # rows can only change cell where the coordinate is within tol of an edge
    np.testing.assert_allclose(w1[same], w0[same], rtol=0, atol=max(tol, 1e-12))


def test_weighted_mesh_rows_do_not_move_when_tied_points_are_permuted(xp: ModuleType) -> None:
    """8,000 mesh rows on tied data points: the same rows, whatever the order of the input points."""
    dt = _dt(xp)
    rng = np.random.default_rng(3)
    data = np.round(rng.normal(size=(2000, 2)), 1).astype(dt)  # heavy ties on both axes
    over = rng.normal(size=(8000, 2)).astype(dt)
    w = rng.uniform(0.1, 2.0, 2000).astype(dt)
    perm = rng.permutation(2000)
    i1, w1 = rectangular.mappings_weights(20, asarray(xp, data, dt), asarray(xp, over, dt), asarray(xp, w, dt))
    i2, w2 = rectangular.mappings_weights(
        20, asarray(xp, data[perm], dt), asarray(xp, over, dt), asarray(xp, w[perm], dt)
    )
    np.testing.assert_array_equal(to_numpy(i1), to_numpy(i2))
    # The ranks are bitwise invariant (tests/test_transforms.py); the normalisation's mean and std
    # are sums in input order, whose rounding moves with the permutation: relative
    # error <= N eps, times the largest rank slope of this grid (~30 cells per unit).
    tol = 30 * 2000 * np.finfo(dt).eps
    np.testing.assert_allclose(to_numpy(w1), to_numpy(w2), rtol=0, atol=tol)


# --- mapping and curvature matrices ---------------------------------------------------------------


REPEAT_IDX = np.array([[0, 0, 1, 1], [2, 2, 2, 2], [3, 1, 3, 0], [4, 4, 0, 4], [1, 2, 3, 4]])
REPEAT_W = np.array(
    [[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25], [0.5, 0.1, 0.3, 0.1], [0.6, 0.1, 0.2, 0.1], [0.4, 0.3, 0.2, 0.1]]
)
SUB_TO_DATA = np.array([0, 0, 2, 2, 2])  # data pixel 1 has no sub-pixels


def _dense_reference(idx: np.ndarray, w: np.ndarray, n_pixels: int) -> np.ndarray:
    m = np.zeros((idx.shape[0], n_pixels))
    for k in range(idx.shape[0]):
        for c in range(idx.shape[1]):
            m[k, idx[k, c]] += w[k, c]
    return m


def _default_int(xp: ModuleType) -> Any:
    info = array_api_compat.array_namespace(xp.asarray(0)).__array_namespace_info__()
    return info.default_dtypes()["integral"]


def _int_array(xp: ModuleType, a: np.ndarray) -> Any:
    return xp.asarray(a, dtype=_default_int(xp))


def test_mapping_matrix_accumulates_repeated_indices(xp: ModuleType, dtype_name: str) -> None:
    m = rectangular.mapping_matrix(_int_array(xp, REPEAT_IDX), _support.asarray(xp, REPEAT_W, dtype_name), 6, xp=xp)
    assert m.dtype == getattr(xp, dtype_name)
    ref = _dense_reference(REPEAT_IDX, REPEAT_W, 6)
    np.testing.assert_allclose(_np(m), ref, rtol=0, atol=10 * _support.eps_of(dtype_name))
    assert ref[1, 2] == 1.0  # four repeats of one index add up


@pytest.mark.skip_xp_backend(
    "dask", reason="n_data cannot be inferred from a lazy sub_to_data (tests/test_scale_out.py)"
)
def test_mapping_matrix_averages_sub_pixels(xp: ModuleType, dtype_name: str) -> None:
    idx, w = _int_array(xp, REPEAT_IDX), _support.asarray(xp, REPEAT_W, dtype_name)
    ref_sub = _dense_reference(REPEAT_IDX, REPEAT_W, 6)
    ref = np.stack([ref_sub[:2].mean(axis=0), np.zeros(6), ref_sub[2:].mean(axis=0), np.zeros(6)])
    tol = 10 * _support.eps_of(dtype_name)
    m = rectangular.mapping_matrix(idx, w, 6, sub_to_data=_int_array(xp, SUB_TO_DATA), n_data=4)
    np.testing.assert_allclose(_np(m), ref, rtol=0, atol=tol)
    inferred = rectangular.mapping_matrix(idx, w, 6, sub_to_data=_int_array(xp, SUB_TO_DATA))
    assert tuple(inferred.shape) == (3, 6)
    np.testing.assert_allclose(_np(inferred), ref[:3], rtol=0, atol=tol)


def test_mapping_matrix_gradient_accumulates(autodiff: _support.AutoDiff, xp: ModuleType) -> None:
    """d sum(M * C) / d w[k, c] = C[k, idx[k, c]], repeats included."""
    c = np.random.default_rng(1).normal(size=(5, 6))
    idx = _int_array(xp, REPEAT_IDX)
    (g,) = autodiff.grad(lambda w: rectangular.mapping_matrix(idx, w, 6) * xp.asarray(c), [xp.asarray(REPEAT_W)], [0])
    tol = 16 * float(np.finfo(g.dtype).eps)
    np.testing.assert_allclose(g, np.take_along_axis(c, REPEAT_IDX, axis=1), rtol=tol, atol=0)
    (g,) = autodiff.grad(
        lambda w: (
            rectangular.mapping_matrix(idx, w, 6, sub_to_data=_int_array(xp, SUB_TO_DATA), n_data=4) * xp.asarray(c[:4])
        ),
        [xp.asarray(REPEAT_W)],
        [0],
    )
    counts = np.bincount(SUB_TO_DATA, minlength=4)
    expect = np.take_along_axis(c[SUB_TO_DATA], REPEAT_IDX, axis=1) / counts[SUB_TO_DATA, None]
    np.testing.assert_allclose(g, expect, rtol=tol, atol=0)


def test_curvature_matrix_equals_dense(xp: ModuleType) -> None:
    _need_float64(xp)
    nw = np.linspace(0.5, 2.0, 5)
    for weights in (None, nw):
        f = rectangular.curvature_matrix(
            _int_array(xp, REPEAT_IDX),
            xp.asarray(REPEAT_W),
            6,
            noise_weights=None if weights is None else xp.asarray(weights),
        )
        m = _dense_reference(REPEAT_IDX, REPEAT_W, 6)
        ref = m.T @ ((np.ones(5) if weights is None else weights)[:, None] * m)
        # Scatter-add by sort + cumulative sum (array-api-strict) rounds at the scale of the running total.
        np.testing.assert_allclose(_np(f), ref, rtol=0, atol=4 * np.finfo(np.float64).eps * np.abs(ref).sum())
    # On a real mesh mapping, against the dense matrix built by mapping_matrix.
    data, over = _grids(0.3)
    idx, w = rectangular.mappings_weights(N_MESH, xp.asarray(data), xp.asarray(over))
    noise = xp.asarray(np.random.default_rng(2).uniform(0.5, 2.0, over.shape[0]))
    f = rectangular.curvature_matrix(idx, w, N_MESH * N_MESH, noise_weights=noise)
    m = _np(rectangular.mapping_matrix(idx, w, N_MESH * N_MESH))
    ref = m.T @ (_np(noise)[:, None] * m)
    np.testing.assert_allclose(_np(f), ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_curvature_matrix_gradient(autodiff: _support.AutoDiff, xp: ModuleType) -> None:
    """d sum(F * C) / d w[k, a] = nw[k] * sum_b w[k, b] (C[i_a, i_b] + C[i_b, i_a])."""
    rng = np.random.default_rng(4)
    c = rng.normal(size=(6, 6))
    nw = rng.uniform(0.5, 2.0, 5)
    idx = _int_array(xp, REPEAT_IDX)
    (g,) = autodiff.grad(
        lambda w: rectangular.curvature_matrix(idx, w, 6, noise_weights=xp.asarray(nw)) * xp.asarray(c),
        [xp.asarray(REPEAT_W)],
        [0],
    )
    sym = c + c.T
    expect = nw[:, None] * np.einsum("kab,kb->ka", sym[REPEAT_IDX[:, :, None], REPEAT_IDX[:, None, :]], REPEAT_W)
    tol = 64 * float(np.finfo(g.dtype).eps)
    np.testing.assert_allclose(g, expect, rtol=tol, atol=tol)


# --- geometry -------------------------------------------------------------------------------------


def test_pixel_centres_and_areas(xp: ModuleType) -> None:
    _need_float64(xp)
    data, over = _grids(0.3)
    n = N_MESH
    centres = _np(rectangular.pixel_centres(n, xp.asarray(data)))
    areas = _np(rectangular.pixel_areas(n, xp.asarray(data)))
    assert centres.shape == (n * n, 2)
    assert areas.shape == (n * n,)
    nodes = _reference_lines(n, data, 0.0, n)
    ref = np.stack([np.repeat(nodes[:, 0], n), np.tile(nodes[:, 1], n)], axis=1)
    lb = _line_bound(data, None)  # derived in _line_bound
    assert np.all(np.abs(centres - ref) <= lb)
    edges = _reference_lines(n, data, 0.5, n + 1)
    ref_areas = np.outer(-np.diff(edges[:, 0]), np.diff(edges[:, 1])).ravel()
    span = np.abs(np.diff(edges, axis=0)).max()
    assert np.all(np.abs(areas - ref_areas) <= 4 * lb * span + np.finfo(np.float64).eps * np.abs(ref_areas))
    assert (areas >= 0).all()
    bbox = np.ptp(data[:, 0]) * np.ptp(data[:, 1])
    assert areas.sum() == pytest.approx(bbox, rel=1e-12)
    grid = areas.reshape(n, n)
    assert (grid[0] == 0).all()  # guard row 0 and column 0 lie outside the data
    assert (grid[:, 0] == 0).all()
    assert (grid[2:-1, 2:-1] > 0).all()
    # Bilinear weights on the node centres land on the point, to well within a cell.
    idx, w = rectangular.mappings_weights(n, data, over)
    recon = np.einsum("kc,kcd->kd", w, centres[idx])
    cell = np.sqrt(areas.max())
    assert np.abs(recon - over).max() < 0.5 * cell


def test_weighted_geometry_matches_reference(xp: ModuleType) -> None:
    """Weighted pixel_centres / pixel_areas against the independent NumPy transcription."""
    _need_float64(xp)
    data, _ = _grids(0.0)
    n = N_MESH
    wmap = np.random.default_rng(5).uniform(0.5, 1.5, data.shape[0])
    nodes = _reference_lines(n, data, 0.0, n, wmap)
    ref_c = np.stack([np.repeat(nodes[:, 0], n), np.tile(nodes[:, 1], n)], axis=1)
    edges = _reference_lines(n, data, 0.5, n + 1, wmap)
    ref_a = np.outer(-np.diff(edges[:, 0]), np.diff(edges[:, 1])).ravel()
    assert not np.allclose(ref_c, _reference_lines_grid(n, data))  # the weights do move the mesh
    centres = _np(rectangular.pixel_centres(n, xp.asarray(data), xp.asarray(wmap)))
    areas = _np(rectangular.pixel_areas(n, xp.asarray(data), xp.asarray(wmap)))
    lb = _line_bound(data, wmap)
    assert np.all(np.abs(centres - ref_c) <= lb)
    # An area is a product of two edge differences, each off by <= 2 lb: 2 lb (w + h) + the product's rounding.
    span = np.abs(np.diff(edges, axis=0)).max()
    assert np.all(np.abs(areas - ref_a) <= 4 * lb * span + np.finfo(np.float64).eps * np.abs(ref_a))


def _reference_lines_grid(n: int, data: np.ndarray) -> np.ndarray:
    nodes = _reference_lines(n, data, 0.0, n)
    return np.stack([np.repeat(nodes[:, 0], n), np.tile(nodes[:, 1], n)], axis=1)


def test_geometry_gradients_finite(autodiff: _support.AutoDiff, xp: ModuleType) -> None:
    data, _ = _grids(0.0)
    d = xp.asarray(data, dtype=xp.float32 if not _support.has_float64(xp) else xp.float64)
    for fn in (rectangular.pixel_centres, rectangular.pixel_areas):
        (g,) = autodiff.grad(lambda a, fn=fn: fn(N_MESH, a) ** 2, [d], [0])
        assert np.isfinite(g).all()
        assert np.abs(g).max() > 0


# --- argument checks ------------------------------------------------------------------------------


@pytest.mark.skip_xp_backend("dask", reason="mixes data checks, skipped on lazy arrays (tests/test_scale_out.py)")
def test_bad_arguments_raise(xp: ModuleType) -> None:
    data, over = _grids(0.0)
    d, o = xp.asarray(data), xp.asarray(over)
    idx, w = rectangular.mappings_weights(N_MESH, d, o)
    cases: list[tuple[type[Exception], str, Any]] = [
        (ValueError, "source_grid_size", lambda: rectangular.mappings_weights(2, d, o)),
        (TypeError, "source_grid_size", lambda: rectangular.mappings_weights(10.0, d, o)),
        (TypeError, "source_grid_size", lambda: rectangular.mappings_weights(True, d, o)),
        (ValueError, "data_grid", lambda: rectangular.mappings_weights(10, d[:, 0], o)),
        (
            ValueError,
            "data_grid_over_sampled",
            lambda: rectangular.mappings_weights(10, d, xp.stack([o[:, 0]] * 3, axis=1)),
        ),
        (ValueError, "data_grid_over_sampled", lambda: rectangular.mappings_weights(10, d, o * xp.asarray(np.nan))),
        (ValueError, "data_grid", lambda: rectangular.mappings_weights(10, d * xp.asarray(np.inf), o)),
        (ValueError, "spread", lambda: rectangular.mappings_weights(10, d * 0.0, o)),
        (ValueError, "mesh_weight_map", lambda: rectangular.mappings_weights(10, d, o, xp.ones(3))),
        (ValueError, "mesh_weight_map", lambda: rectangular.mappings_weights(10, d, o, -xp.ones(d.shape[0]))),
        (ValueError, "knot_grad", lambda: rectangular.mappings_weights(10, d, o, knot_grad="none")),  # type: ignore[arg-type]
        (ValueError, "min_gap", lambda: rectangular.pixel_centres(10, d, min_gap=-1.0)),
        (ValueError, "source_grid_size", lambda: rectangular.pixel_areas(1, d)),
        (ValueError, "n_pixels", lambda: rectangular.mapping_matrix(idx, w, 0)),
        (ValueError, "indices", lambda: rectangular.mapping_matrix(idx, w, 50)),
        (TypeError, "indices", lambda: rectangular.mapping_matrix(w, w, 100)),
        (TypeError, "weights", lambda: rectangular.mapping_matrix(idx, idx, 100)),
        (ValueError, "weights", lambda: rectangular.mapping_matrix(idx, w[:, :3], 100)),
        (TypeError, "n_data", lambda: rectangular.mapping_matrix(idx, w, 100, n_data=4)),
        (ValueError, "sub_to_data", lambda: rectangular.mapping_matrix(idx, w, 100, sub_to_data=idx[:5, 0])),
        (TypeError, "sub_to_data", lambda: rectangular.mapping_matrix(idx, w, 100, sub_to_data=w[:, 0])),
        (ValueError, "sub_to_data", lambda: rectangular.mapping_matrix(idx, w, 100, sub_to_data=idx[:, 0], n_data=3)),
        (ValueError, "noise_weights", lambda: rectangular.curvature_matrix(idx, w, 100, noise_weights=w[:3, 0])),
        (TypeError, "noise_weights", lambda: rectangular.curvature_matrix(idx, w, 100, noise_weights=idx[:, 0])),
        (ValueError, "indices", lambda: rectangular.curvature_matrix(idx, w, 60)),
    ]
    for exc, name, call in cases:
        with pytest.raises(exc, match=name):
            call()


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch for a second library")
def test_arrays_from_two_libraries_raise() -> None:
    import torch

    data, over = _grids(0.0)
    with pytest.raises(TypeError, match="data_grid_over_sampled"):
        rectangular.mappings_weights(N_MESH, data, torch.asarray(over))


# --- gradients ------------------------------------------------------------------------------------


def test_mesh_gradient_wrt_mesh_weight_map(xp: ModuleType, autodiff: AutoDiff, rng: np.random.Generator) -> None:
    """d sum(c * mesh weights) / d mesh_weight_map against central differences of the transcription."""
    if not has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1 (central differences)")
    n = 6
    data = points_with_duplicate_rows(rng, 20)
    over = rng.normal(size=(30, 2)) * 0.7
    wmap = rng.uniform(0.5, 1.5, data.shape[0])
    c = rng.normal(size=(over.shape[0], 4))
    D, Ov, Cc = (asarray(xp, a) for a in (data, over, c))
    idx, _ = rectangular.mappings_weights(n, D, Ov, asarray(xp, wmap))
    ref_idx, _ = pyautoarray_mappings(n, data, over, wmap)
    np.testing.assert_array_equal(to_numpy(idx), ref_idx)

    def objective(wm: Any) -> Any:
        return xp.sum(rectangular.mappings_weights(n, D, Ov, wm)[1] * Cc)

    (g,) = autodiff.grad(objective, [asarray(xp, wmap)], (0,))
    h = 1e-5
    for s in (-2 * h, 2 * h):  # the steps must not move a point to another cell
        for i in range(wmap.size):
            e = np.zeros_like(wmap)
            e[i] = s
            np.testing.assert_array_equal(pyautoarray_mappings(n, data, over, wmap + e)[0], ref_idx)
    fd, err = central_difference_gradient(
        lambda wm: float(np.sum(pyautoarray_mappings(n, data, over, wm)[1] * c)), wmap, h
    )
    assert np.any(np.abs(fd) > 1e3 * err)
    ad_err = (data.shape[0] + 3) * np.finfo(np.float64).eps * np.abs(c).sum() * np.abs(fd).max() * (n - 3)
    assert np.all(np.abs(g - fd) <= err + ad_err), np.max(np.abs(g - fd) - err - ad_err)


@pytest.mark.parametrize("rotation", [0.0, 0.3])
def test_lens_gradient_matches_finite_difference(autodiff: _support.AutoDiff, xp: ModuleType, rotation: float) -> None:
    """d/d theta_E of sum((M s)^2): finite and within 1e-4 of a central difference that crosses no boundary."""
    _need_float64(xp)
    # The step crosses no knot and no mesh cell: the difference is of one smooth piece.
    here = _fd_structure(THETA, rotation)
    for sign in (-1, 1):
        for a, b in zip(here, _fd_structure(THETA + sign * FD_STEP, rotation), strict=True):
            np.testing.assert_array_equal(a, b)
    fd = (_numpy_objective(THETA + FD_STEP, rotation) - _numpy_objective(THETA - FD_STEP, rotation)) / (2 * FD_STEP)
    g = _theta_grad(autodiff, xp, rotation)
    assert np.isfinite(g)
    assert g == pytest.approx(fd, rel=1e-4)


@pytest.mark.parametrize("rotation", [0.0, 0.3])
def test_jax_and_torch_gradients_agree(rotation: float) -> None:
    jax = _support.backend_module("jax")
    torch = _support.backend_module("torch")
    if not jax.config.read("jax_enable_x64"):
        pytest.skip("float64 JAX needs JAX_ENABLE_X64=1")
    import jax.numpy as jnp

    g_jax = _theta_grad(_support.autodiff_for(jnp), jnp, rotation)  # type: ignore[arg-type]
    g_torch = _theta_grad(_support.autodiff_for(torch), torch, rotation)  # type: ignore[arg-type]
    assert np.isfinite(g_jax)
    # Tolerance from the rounding bound.  By the chain rule g = sum_z (dF/dz)(dz/dtheta) over every
    # traced coordinate z (data points: the knots, over-sampled points: the queries); the terms c_z
    # cancel strongly (moving a query and its knots together changes nothing), so the scale of the
    # rounding is sum |c_z|, not |g|.  Each backend forms each c_z with a relative error of at most
    # L eps (L = 32 bounds the roundings on one path: trace, ranks, interp partials, bilinear weights,
    # matrix product, square) and sums the n terms, which adds at most (n - 1) eps sum |c_z|
    # (recursive summation, any order).  Two backends: |g_jax - g_torch| <= 2 (n + L) eps sum |c_z|.
    terms = _gradient_terms(rotation)
    bound = 2 * (terms.size + 32) * float(np.finfo(np.float64).eps) * float(np.sum(np.abs(terms)))
    assert abs(float(np.sum(terms)) - g_torch) <= bound  # the decomposition is the gradient
    assert abs(g_jax - g_torch) <= bound, (g_jax, g_torch, bound)


def _gradient_terms(rotation: float) -> np.ndarray:
    """The chain-rule terms (dF/dz)(dz/dtheta) of the lens gradient, one per traced coordinate z (PyTorch, float64)."""
    import torch

    img_d, img_o = _image_grids()
    theta = torch.asarray(THETA, dtype=torch.float64)
    one = torch.ones((), dtype=torch.float64)
    traced = []
    for img in (img_d, img_o):
        grid = torch.asarray(img)
        z, dz = torch.func.jvp(lambda t, g=grid: trace_sis(g, t, rotation=rotation, xp=torch), (theta,), (one,))
        traced.append((z.detach().requires_grad_(), dz))
    (data, d_data), (over, d_over) = traced
    idx, w = rectangular.mappings_weights(N_MESH, data, over, xp=torch)
    m = rectangular.mapping_matrix(idx, w, N_MESH * N_MESH, xp=torch)
    s = np.random.default_rng(7).normal(size=N_MESH * N_MESH)  # the source of _objective
    g_data, g_over = torch.autograd.grad(torch.sum((m @ torch.asarray(s)) ** 2), [data, over])
    return torch.cat([(g_data * d_data).reshape(-1), (g_over * d_over).reshape(-1)]).numpy()


def test_plain_interp_breaks_on_this_grid(autodiff: _support.AutoDiff, xp: ModuleType) -> None:
    """Control: the grid does exercise duplicate knots. Plain interp gives a NaN gradient, and
    stop_gradient+jitter a finite but wrong one, where knotsafe matches the finite difference."""
    _need_float64(xp)
    fd = (_numpy_objective(THETA + FD_STEP, 0.0) - _numpy_objective(THETA - FD_STEP, 0.0)) / (2 * FD_STEP)
    assert not np.isfinite(_theta_grad(autodiff, xp, 0.0, interp=plain_interp))
    jitter = _theta_grad(autodiff, xp, 0.0, interp=jitter_interp)
    assert np.isfinite(jitter)
    assert abs(jitter - fd) > 0.5 * abs(fd)


def test_knot_grad_option_reaches_the_transforms(autodiff: _support.AutoDiff, xp: ModuleType) -> None:
    """knot_grad="stop" drops the knot partials, so the lens gradient changes (and stays finite)."""
    dtype = xp.float64 if _support.has_float64(xp) else xp.float32
    exact = _theta_grad(autodiff, xp, 0.0, theta_dtype=dtype)
    stop = _theta_grad(autodiff, xp, 0.0, knot_grad="stop", theta_dtype=dtype)
    assert np.isfinite(stop)
    assert abs(stop - exact) > 1e-3 * abs(exact)


def test_float32_gradient_is_finite(autodiff: _support.AutoDiff, xp: ModuleType) -> None:
    for rotation in (0.0, 0.3):
        g = _theta_grad(autodiff, xp, rotation, theta_dtype=xp.float32, dtype=np.float32)
        assert np.isfinite(g)
        assert g != 0.0


def test_jax_jit_matches_eager(xp: ModuleType) -> None:
    if _support.backend_name(xp) != "jax":
        pytest.skip("jax.jit only")
    import jax

    data, over = _grids(0.3)
    dtype = xp.float64 if _support.has_float64(xp) else xp.float32
    d, o = xp.asarray(data, dtype=dtype), xp.asarray(over, dtype=dtype)
    s2d = xp.asarray(np.repeat(np.arange(data.shape[0]), SUB * SUB))

    def build(d: Any, o: Any) -> tuple[Any, Any]:
        idx, w = rectangular.mappings_weights(N_MESH, d, o)
        return idx, rectangular.mapping_matrix(idx, w, N_MESH * N_MESH, sub_to_data=s2d, n_data=data.shape[0])

    (idx_jit, m_jit), (idx, m) = jax.jit(build)(d, o), build(d, o)
    np.testing.assert_array_equal(np.asarray(idx_jit), np.asarray(idx))
    # XLA fuses the arithmetic differently under jit: values agree to rounding.
    eps = float(np.finfo(np.asarray(m).dtype).eps)
    np.testing.assert_allclose(np.asarray(m_jit), np.asarray(m), rtol=0, atol=16 * eps)


@pytest.mark.parametrize("transform", ["rank", "kernel"])
def test_mesh_object_gives_the_functions_results_bitwise(xp: ModuleType, transform: str) -> None:
    """One Mesh answers mappings_weights, pixel_centres and pixel_areas exactly as the three functions do."""
    rng = np.random.default_rng(3)
    data = np.round(rng.normal(size=(60, 2)), 1)  # ties
    over = data + rng.normal(scale=0.05, size=data.shape)
    weights = rng.uniform(0.5, 2.0, size=60)
    args = (7, xp.asarray(data))
    opts = {"transform": transform}
    mesh = rectangular.Mesh(*args, xp.asarray(over), xp.asarray(weights), **opts)
    want_idx, want_w = rectangular.mappings_weights(*args, xp.asarray(over), xp.asarray(weights), **opts)
    got_idx, got_w = mesh.mappings_weights()
    np.testing.assert_array_equal(_support.to_numpy(got_idx), _support.to_numpy(want_idx))
    np.testing.assert_array_equal(_support.to_numpy(got_w), _support.to_numpy(want_w))
    centres = rectangular.pixel_centres(*args, xp.asarray(weights), **opts)
    areas = rectangular.pixel_areas(*args, xp.asarray(weights), **opts)
    np.testing.assert_array_equal(_support.to_numpy(mesh.pixel_centres()), _support.to_numpy(centres))
    np.testing.assert_array_equal(_support.to_numpy(mesh.pixel_areas()), _support.to_numpy(areas))
    assert mesh.source_grid_size == 7


def test_mesh_object_sorts_the_data_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The transforms (one sort per column) are built on first use and shared by every method."""
    built = []
    real = mesh_lib.rank_transform

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(mesh_lib, "rank_transform", counting)
    data = np.random.default_rng(4).normal(size=(40, 2))
    mesh = rectangular.Mesh(5, data, data)
    mesh.mappings_weights()
    mesh.pixel_centres()
    mesh.pixel_areas()
    assert len(built) == 1


def test_mesh_object_without_over_sampled_grid_names_it() -> None:
    data = np.random.default_rng(5).normal(size=(30, 2))
    with pytest.raises(TypeError, match="data_grid_over_sampled"):
        rectangular.Mesh(5, data).mappings_weights()


# --- the scale of each axis, from 1e-300 to 1e300 ------------------------------------------------------------
# The mesh does not depend on the scale of either axis of the data, from 1e-300 to 1e300 per axis.
#
# A rank mesh is invariant under a positive rescaling of one axis (a CDF of one axis does not see its units),
# so the mappings and weights of scaled data are those of the unscaled data, and the node positions and cell
# areas scale with the axes.  The reference is the unscaled mesh (ordinary data, which the PyAutoArray
# transcriptions test) and the scaling itself.

SCALE_MESH = 6


def _axis_scales(dt: str) -> list[float]:
    # float32 spans 1e-38..3e38: its extremes stay one decade inside, as float64's do.
    return [1e-300, 1e-200, 1e-10, 1.0, 3e7, 1e200, 1e300] if dt == "float64" else [1e-30, 1e-5, 1.0, 1e5, 1e30]


def _scale_data(dt: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.uniform(size=(20, 2)).astype(dt), rng.uniform(-0.1, 1.1, size=(50, 2)).astype(dt)


def _weight_bound(data: np.ndarray, over: np.ndarray, dt: str) -> float:
    """Scaled and unscaled normalised positions agree to a few ulp of their size (the mean and std are
    rounded at each scale); a rank transform turns a position error into a rank error of at most
    error / (N + 1) / smallest gap, index = (n - 3) u + 1 multiplies it by n - 3, a weight (a product of
    two coordinates in [0, 1]) by at most 2."""
    z = (data - data.mean(axis=0)) / data.std(axis=0).min()
    zq = (over - data.mean(axis=0)) / data.std(axis=0).min()
    gap = min(float(np.diff(np.sort(z[:, c])).min()) for c in range(2))
    size = max(float(np.abs(z).max()), float(np.abs(zq).max()))
    return 2 * (SCALE_MESH - 3) * 8 * np.finfo(dt).eps * size / ((data.shape[0] + 1) * gap)


@pytest.mark.parametrize("dt", ["float64", "float32"])
def test_mappings_centres_and_areas_do_not_depend_on_an_axis_scale(xp: ModuleType, dt: str) -> None:
    if dt == "float64" and not has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    data, over = _scale_data(dt)
    mesh0 = rectangular.mappings_weights(SCALE_MESH, asarray(xp, data, dt), asarray(xp, over, dt))
    idx0, w0 = (to_numpy(a) for a in mesh0)
    centres0 = to_numpy(rectangular.pixel_centres(SCALE_MESH, asarray(xp, data, dt))).astype(np.float64)
    areas0 = to_numpy(rectangular.pixel_areas(SCALE_MESH, asarray(xp, data, dt))).astype(np.float64)
    bound = _weight_bound(data.astype(np.float64), over.astype(np.float64), dt)
    eps = float(np.finfo(dt).eps)
    scales = _axis_scales(dt)
    if backend_name(xp) == "dask":
        scales = scales[::2]  # every Dask call builds and runs a graph: fewer pairs, the extremes kept
    for s0 in scales:
        for s1 in scales:
            s = np.array([s0, s1])
            sd, so = (data * s).astype(dt), (over * s).astype(dt)
            idx, w = (
                to_numpy(a) for a in rectangular.mappings_weights(SCALE_MESH, asarray(xp, sd, dt), asarray(xp, so, dt))
            )
            np.testing.assert_array_equal(idx, idx0, err_msg=f"scales {s}")
            np.testing.assert_allclose(w, w0, rtol=0, atol=bound, err_msg=f"scales {s}")
            # The mappings of the data points themselves: queries equal to knots give the ranks exactly.
            _, wd = rectangular.mappings_weights(SCALE_MESH, asarray(xp, sd, dt), asarray(xp, sd, dt))
            _, wd0 = rectangular.mappings_weights(SCALE_MESH, asarray(xp, data, dt), asarray(xp, data, dt))
            np.testing.assert_allclose(to_numpy(wd), to_numpy(wd0), rtol=0, atol=bound, err_msg=f"scales {s}")
            centres = to_numpy(rectangular.pixel_centres(SCALE_MESH, asarray(xp, sd, dt))).astype(np.float64)
            assert np.isfinite(centres).all()
            # Interpolated sorted points, scaled back: a few ulp of the axis's size.
            np.testing.assert_allclose(centres / s, centres0, rtol=0, atol=16 * eps, err_msg=f"scales {s}")
            with np.errstate(over="ignore"):  # areas of 1e300 x 1e200 are inf, the correctly rounded value
                areas = to_numpy(rectangular.pixel_areas(SCALE_MESH, asarray(xp, sd, dt))).astype(np.float64)
            assert (areas >= 0).all()
            if 1e-280 < s0 * s1 < 1e280 if dt == "float64" else 1e-30 < s0 * s1 < 1e30:  # representable areas
                np.testing.assert_allclose(areas / (s0 * s1), areas0, rtol=0, atol=64 * eps, err_msg=f"{s}")


def test_an_axis_at_1e_200_gives_the_mesh_of_the_same_axis_at_1e_10(xp: ModuleType) -> None:
    """One axis at 1e-200 and the same axis at 1e-10: identical mappings; finite areas and centres."""
    if not has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    d = np.random.default_rng(0).uniform(size=(20, 2))
    d[:, 1] *= 1e-200
    d2 = d.copy()
    d2[:, 1] *= 1e190
    a, b = (rectangular.mappings_weights(6, asarray(xp, g), asarray(xp, g)) for g in (d, d2))
    np.testing.assert_array_equal(to_numpy(a[0]), to_numpy(b[0]))
    np.testing.assert_array_equal(to_numpy(a[1]), to_numpy(b[1]))
    areas = to_numpy(rectangular.pixel_areas(6, asarray(xp, d)))
    centres = to_numpy(rectangular.pixel_centres(6, asarray(xp, d)))
    assert np.isfinite(areas).all() and np.isfinite(centres).all()
    # The cells tile the bounding box of the data.
    box = np.ptp(d, axis=0)
    np.testing.assert_allclose(areas.sum(), box[0] * box[1], rtol=1e-12)


def test_ordinary_data_normalisation_is_the_direct_formula(xp: ModuleType) -> None:
    """Axes of different sizes (1 and 37): one scale, the smaller population std, and the mean, bitwise
    those of the backend's own direct formula (so PyAutoArray's layout is kept)."""
    from knotsafe._lib import mesh
    from knotsafe._lib.backends.registry import hooks_for

    dt = "float64" if has_float64(xp) else "float32"
    d = np.random.default_rng(1).normal(size=(30, 2)) * np.array([1.0, 37.0]) + np.array([0.3, -5.0])
    data = asarray(xp, d, dt)
    ns = array_api_compat.array_namespace(data)
    mu, scale = mesh.normalisation(ns, hooks_for(ns), data)
    direct_mu = to_numpy(ns.mean(data, axis=0))
    direct_scale = float(to_numpy(ns.min(ns.std(data, axis=0, correction=0))))
    np.testing.assert_array_equal(to_numpy(mu), direct_mu)
    np.testing.assert_array_equal(to_numpy(scale), [direct_scale, direct_scale])


def test_values_beyond_a_quarter_of_the_largest_float_raise() -> None:
    """Where ``point - mean`` could overflow, a ValueError names the grid (concrete arrays)."""
    d = np.random.default_rng(0).uniform(size=(20, 2))
    big = d.copy()
    big[:, 0] *= 1e308
    with pytest.raises(ValueError, match=r"^`data_grid` has values beyond"):
        rectangular.mappings_weights(6, big, d)
    with pytest.raises(ValueError, match=r"^`data_grid_over_sampled` has values beyond"):
        rectangular.mappings_weights(6, d, big)
    with pytest.raises(ValueError, match=r"^`data_grid` has values beyond"):
        rectangular.pixel_areas(6, big)
    # 1e307 is inside: the mesh is the unscaled one.
    np.testing.assert_array_equal(
        rectangular.mappings_weights(6, d * [1e307, 1.0], d * [1e307, 1.0])[0], rectangular.mappings_weights(6, d, d)[0]
    )
