"""knotsafe on chunked dask arrays: equal to NumPy bitwise, and lazy.

Every knotsafe call here runs under a scheduler that counts computations: a
call that computed behind the caller's back (to check data, to infer a size)
fails the test.  Results are computed afterwards, by the test, and compared
with knotsafe's own NumPy results (bitwise: the same elementwise float64
operations run on each chunk) and with ``numpy.interp`` (bitwise, float64).

Operations that need every knot at once (sorting the N points of a rank
transform) are done by dask itself: array-api-compat's ``sort``/``argsort``
on a dask array gather the sorted axis into one chunk lazily.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import knotsafe
from knotsafe import rectangular
from knotsafe.testing import lens_grid
from tests._support import DASK_SESSION_MARKS

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
cda = pytest.importorskip("array_api_compat.dask.array")

pytestmark = DASK_SESSION_MARKS


class _Computes:
    """A dask scheduler that counts the graphs it is asked to compute."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        self.count += 1
        return dask.get(dsk, keys, **kwargs)


@contextlib.contextmanager
def no_compute() -> Iterator[_Computes]:
    """Fail if anything inside the block computes a dask graph."""
    computes = _Computes()
    with dask.config.set(scheduler=computes):
        yield computes
    assert computes.count == 0, f"knotsafe computed {computes.count} dask graph(s) behind the caller's back"


def _chunked(a: np.ndarray, chunks: Any) -> Any:
    return da.from_array(np.asarray(a), chunks=chunks)


def _knots_with_duplicates(rng: np.random.Generator, n: int) -> np.ndarray:
    k = np.sort(rng.uniform(-2.0, 2.0, n))
    k[10:14] = k[10]  # a run of exact duplicates
    k[40] = np.nextafter(k[39], np.inf)  # a one-ulp gap
    return k


def test_interp_on_chunked_arrays_is_lazy_and_equals_numpy_bitwise(rng: np.random.Generator) -> None:
    k = _knots_with_duplicates(rng, 300)
    v = rng.normal(size=300)
    x = np.concatenate([rng.uniform(-2.5, 2.5, 5000), k[:50], [np.nan, -np.inf, np.inf]])
    with no_compute():
        out = knotsafe.interp(_chunked(x, 700), _chunked(k, 64), _chunked(v, 64))
        assert isinstance(out, da.Array)
        assert out.numblocks == (8,)  # the query chunks are kept
        # The knots are gathered from in one block (the Dask take hook): 556 tasks with the
        # pinned Dask, 686 when each of the 8 query chunks gathers from each of the 5 knot chunks.
        assert len(out.__dask_graph__()) < 620
    got = out.compute(scheduler="sync")
    np.testing.assert_array_equal(got, np.interp(x, k, v))
    np.testing.assert_array_equal(got, knotsafe.interp(x, k, v))


def test_interp_float32_within_the_contract_bound(rng: np.random.Generator) -> None:
    """float32 runs the standard-API kernel on dask (NumPy's hooks take another
    path), so the reference is numpy.interp in float64 of the same float32
    inputs and the bound is the README contract's
    ``4 eps (|slope||x| + |f0| + |f1|)`` of the bracketing bin.
    """
    k = _knots_with_duplicates(rng, 200).astype(np.float32)
    v = rng.normal(size=200).astype(np.float32)
    x = rng.uniform(-2.5, 2.5, 3000).astype(np.float32)
    with no_compute():
        out = knotsafe.interp(_chunked(x, 500), _chunked(k, 50), _chunked(v, 50), left=-1.0, right=2.0)
    got = out.compute(scheduler="sync")
    assert got.dtype == np.float32
    k64, v64, x64 = k.astype(np.float64), v.astype(np.float64), x.astype(np.float64)
    ref = np.interp(x64, k64, v64, left=-1.0, right=2.0)
    j = np.clip(np.searchsorted(k64, x64, side="right") - 1, 0, k.size - 2)
    gap = k64[j + 1] - k64[j]
    slope = np.where(gap > 0, (v64[j + 1] - v64[j]) / np.where(gap > 0, gap, 1.0), 0.0)
    bound = 4 * np.finfo(np.float32).eps * (np.abs(slope) * np.abs(x64) + np.abs(v64[j]) + np.abs(v64[j + 1]))
    assert np.all(np.abs(got - ref) <= bound)


@pytest.mark.parametrize("weighted", [False, True])
def test_create_transforms_on_chunked_points_equal_numpy_bitwise(rng: np.random.Generator, weighted: bool) -> None:
    pts = rng.normal(size=(2000, 2)).round(2)  # many ties
    w = rng.uniform(0.5, 2.0, 2000) if weighted else None
    q = rng.normal(size=(3000, 2))
    u = rng.uniform(0.0, 1.0, (3000, 2))
    with no_compute():
        tr, inv = knotsafe.create_transforms(_chunked(pts, (300, 2)), None if w is None else _chunked(w, 300))
        t_out, i_out = tr(_chunked(q, (400, 2))), inv(_chunked(u, (400, 2)))
    # The knots and ranks are gathered from and scanned in one block (hooks.consolidate):
    # 1,832 tasks here, where chunked gathers and scans built 59,561.
    assert len(t_out.__dask_graph__()) < 6_000
    ref_tr, ref_inv = knotsafe.create_transforms(pts, w)
    np.testing.assert_array_equal(t_out.compute(scheduler="sync"), ref_tr(q))
    np.testing.assert_array_equal(i_out.compute(scheduler="sync"), ref_inv(u))


def test_kernel_transform_on_chunked_points_needs_span_ratio_and_is_lazy(rng: np.random.Generator) -> None:
    """method="kernel" sizes a static node grid: lazy points need `span_ratio=`, then it is lazy and exact."""
    pts = rng.normal(size=(500, 2))
    q = rng.normal(size=(400, 2)) * 1.5
    with no_compute(), pytest.raises(ValueError, match="span_ratio"):
        knotsafe.create_transforms(_chunked(pts, (100, 2)), method="kernel", bandwidth=0.2)
    with no_compute():
        tr, _ = knotsafe.create_transforms(_chunked(pts, (100, 2)), method="kernel", bandwidth=0.2, span_ratio=60.0)
        out = tr(_chunked(q, (50, 2)))
    # The node tables are scanned and gathered from in one block (hooks.consolidate):
    # about 2,300 tasks, where chunked tables built 242,010.
    assert len(out.__dask_graph__()) < 6_000
    ref_tr, _ = knotsafe.create_transforms(pts, method="kernel", bandwidth=0.2)
    # Two node grids (sized from span_ratio and from the data), each within the documented
    # 1e-12 of the exact sum: they agree to twice that.
    np.testing.assert_allclose(out.compute(scheduler="sync"), ref_tr(q), rtol=0, atol=2e-12)


def test_rectangular_mesh_on_chunked_grids_equals_numpy_bitwise() -> None:
    """The over-sampled grid (the queries) chunked, the data grid (the knots) in one chunk.

    The mesh normalises by the data grid's mean and standard deviation; with
    the data grid in several chunks dask sums those in another order than
    NumPy, so the results then differ by rounding (docs/scaling.md).  The
    knots are sorted in one chunk anyway.
    """
    data, over = lens_grid(radius=1.0, pixel_scale=0.1, sub_size=2, einstein_radius=1.6)
    n_mesh = 12
    weights = np.linspace(0.5, 1.5, data.shape[0])
    with no_compute():
        d, o = _chunked(data, -1), _chunked(over, (250, 2))
        idx, w = rectangular.mappings_weights(n_mesh, d, o, _chunked(weights, 100))
        assert idx.numblocks[0] == o.numblocks[0]
        centres = rectangular.pixel_centres(n_mesh, d)
        areas = rectangular.pixel_areas(n_mesh, d)
        sub_to_data = da.arange(over.shape[0], chunks=250) // 4
        m = rectangular.mapping_matrix(idx, w, n_mesh**2, sub_to_data=sub_to_data, n_data=data.shape[0])
        f = rectangular.curvature_matrix(idx, w, n_mesh**2)
    ref_idx, ref_w = rectangular.mappings_weights(n_mesh, data, over, weights)
    np.testing.assert_array_equal(idx.compute(scheduler="sync"), ref_idx)
    np.testing.assert_array_equal(w.compute(scheduler="sync"), ref_w)
    np.testing.assert_array_equal(centres.compute(scheduler="sync"), rectangular.pixel_centres(n_mesh, data))
    np.testing.assert_array_equal(areas.compute(scheduler="sync"), rectangular.pixel_areas(n_mesh, data))
    # The matrices accumulate with scatter_add: NumPy's hook adds in place
    # (np.add.at), dask runs the standard-API kernel (sort, cumulative sum,
    # difference at segment ends).  A cumulative sum of L terms is off by at
    # most gamma_L * sum|src| (recursive summation, gamma_L = L u / (1 - L u)),
    # each entry is a difference of two such sums (2 gamma_L sum|src|) plus
    # one rounding of the entry (u |entry|); np.add.at's own error is within
    # the same bound.  So |dask - numpy| <= 4 gamma_L sum|src| + 2 u |entry|.
    s2d = np.arange(over.shape[0]) // 4
    ref_m = rectangular.mapping_matrix(ref_idx, ref_w, n_mesh**2, sub_to_data=s2d, n_data=data.shape[0])
    counts = np.bincount(s2d)
    m_src = np.abs(ref_w) / counts[s2d][:, None]
    np.testing.assert_array_less(np.abs(m.compute(scheduler="sync") - ref_m), _scatter_bound(m_src, ref_m))
    ref_f = rectangular.curvature_matrix(ref_idx, ref_w, n_mesh**2)
    f_src = np.abs(ref_w[:, :, None] * ref_w[:, None, :])
    np.testing.assert_array_less(np.abs(f.compute(scheduler="sync") - ref_f), _scatter_bound(f_src, ref_f))


def _scatter_bound(src: np.ndarray, ref: np.ndarray) -> np.ndarray:
    u = np.finfo(np.float64).eps / 2
    n = src.size
    gamma = n * u / (1 - n * u)
    # "+ tiny": assert_array_less is strict and exact zeros must compare equal.
    return 4 * gamma * src.sum() + 2 * u * np.abs(ref) + np.finfo(np.float64).tiny


def test_data_checks_are_skipped_on_lazy_arrays_without_computing() -> None:
    """Checks that need values (order, NaN, signs) are skipped: nothing is computed, no error."""
    x, v = _chunked(np.array([0.5, 1.5]), 1), _chunked(np.array([0.0, 1.0, 2.0]), 2)
    with no_compute():
        knotsafe.interp(x, _chunked(np.array([2.0, 1.0, 0.0]), 2), v)  # decreasing knots
        knotsafe.create_transforms(_chunked(np.array([[0.0, np.nan], [1.0, 2.0]]), 1))
        knotsafe.create_transforms(_chunked(np.zeros((3, 2)), 2), _chunked(np.array([1.0, -1.0, 1.0]), 2))


def test_shape_and_type_checks_still_raise_on_dask() -> None:
    """Checks that need no values run on lazy arrays, and compute nothing."""
    x, k = _chunked(np.array([0.5]), 1), _chunked(np.array([0.0, 1.0]), 1)
    with no_compute():
        with pytest.raises(ValueError, match="`values` must have the length of `knots`"):
            knotsafe.interp(x, k, _chunked(np.array([0.0, 1.0, 2.0]), 2))
        with pytest.raises(ValueError, match="`knots` must be 1-D"):
            knotsafe.interp(x, _chunked(np.zeros((2, 2)), 1), k)
        with pytest.raises(ValueError, match="`points` must have shape"):
            knotsafe.create_transforms(_chunked(np.zeros(5), 2))
        with pytest.raises(ValueError, match="`knot_grad`"):
            knotsafe.interp(x, k, k, knot_grad="bogus")  # type: ignore[arg-type]


def test_n_data_cannot_be_inferred_from_lazy_sub_to_data() -> None:
    """Inferring ``n_data`` would need a compute: knotsafe asks for it instead."""
    idx = da.from_array(np.array([[0, 1], [1, 2]]), chunks=1)
    w = da.from_array(np.array([[0.5, 0.5], [0.25, 0.75]]), chunks=1)
    with no_compute(), pytest.raises(ValueError, match="pass `n_data`"):
        rectangular.mapping_matrix(idx, w, 3, sub_to_data=da.from_array(np.array([0, 0]), chunks=1))


def test_numpy_and_jax_users_never_import_dask() -> None:
    code = textwrap.dedent(
        """
        import sys, numpy as np, knotsafe
        from knotsafe import rectangular
        from knotsafe.testing import lens_grid
        knotsafe.interp(np.array([0.5]), np.array([0.0, 1.0]), np.array([0.0, 1.0]))
        tr, inv = knotsafe.create_transforms(np.random.default_rng(0).normal(size=(50, 2)))
        d, o = lens_grid(radius=0.5, pixel_scale=0.1, sub_size=1)
        rectangular.mappings_weights(4, d, o)
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed"))
        assert not bad, bad
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)
