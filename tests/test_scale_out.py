"""Scale-out: knotsafe on chunked Dask arrays and on 8 JAX devices.

Dask: every knotsafe call runs under a scheduler that counts computations, so a call that computed
behind the caller's back (to check data, to infer a size) fails the test.  Results are computed
afterwards, by the test, and compared with knotsafe's own NumPy results (bitwise: the same
elementwise float64 operations run on each chunk) and with ``numpy.interp`` (bitwise, float64).
Operations that need every knot at once (sorting the N points of a rank transform) are done by
Dask itself: array-api-compat's ``sort``/``argsort`` on a Dask array gather the sorted axis into one
chunk lazily.  These tests run in the Dask session (``tests._support.DASK_SESSION_MARKS``); the
``dask.distributed`` cluster run is ``tests/test_dask_cluster.py``.

JAX: jit with ``NamedSharding`` and ``shard_map`` on 8 simulated CPU devices, against the same
function jitted on one device (see the section's comment).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import knotsafe
from knotsafe import rectangular
from knotsafe._lib import mesh as mesh_lib
from knotsafe._lib.backends import registry
from knotsafe.testing import lens_grid
from tests._support import DASK_SESSION_MARKS, only_in_session_of

if importlib.util.find_spec("dask") is not None:
    import array_api_compat.dask.array as cda
    import dask
    import dask.array as da


def _dask_only(f: Callable[..., Any]) -> Callable[..., Any]:
    """The Dask session's marks (with Dask's rechunking warnings silenced), or a skip where Dask is missing."""
    if importlib.util.find_spec("dask") is None:
        return pytest.mark.skip(reason="needs dask")(f)
    for mark in reversed(DASK_SESSION_MARKS):
        f = mark(f)
    return f


# --- Dask: lazy, and NumPy's results bitwise ------------------------------------------------------


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


@_dask_only
def test_interp_on_chunked_arrays_is_lazy_and_equals_numpy_bitwise(rng: np.random.Generator) -> None:
    k = _knots_with_duplicates(rng, 300)
    v = rng.normal(size=300)
    x = np.concatenate([rng.uniform(-2.5, 2.5, 5000), k[:50], [np.nan, -np.inf, np.inf]])
    with no_compute():
        out = knotsafe.interp(_chunked(x, 700), _chunked(k, 64), _chunked(v, 64))
        assert isinstance(out, da.Array)
        assert out.numblocks == (8,)  # the query chunks are kept
        # The knots are gathered from in one block (the Dask take hook), so the graph does not grow
        # with (query chunks) x (knot chunks) gathers.
        assert len(out.__dask_graph__()) < 620
    got = out.compute(scheduler="sync")
    np.testing.assert_array_equal(got, np.interp(x, k, v))
    np.testing.assert_array_equal(got, knotsafe.interp(x, k, v))


@_dask_only
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


@_dask_only
@pytest.mark.parametrize("weighted", [False, True])
def test_create_transforms_on_chunked_points_equal_numpy_bitwise(rng: np.random.Generator, weighted: bool) -> None:
    pts = rng.normal(size=(2000, 2)).round(2)  # many ties
    w = rng.uniform(0.5, 2.0, 2000) if weighted else None
    q = rng.normal(size=(3000, 2))
    u = rng.uniform(0.0, 1.0, (3000, 2))
    with no_compute():
        tr, inv = knotsafe.create_transforms(_chunked(pts, (300, 2)), None if w is None else _chunked(w, 300))
        t_out, i_out = tr(_chunked(q, (400, 2))), inv(_chunked(u, (400, 2)))
    # The knots and ranks are gathered from and scanned in one block (hooks.consolidate): chunked
    # gathers and scans would build a graph tens of times larger.
    assert len(t_out.__dask_graph__()) < 6_000
    ref_tr, ref_inv = knotsafe.create_transforms(pts, w)
    np.testing.assert_array_equal(t_out.compute(scheduler="sync"), ref_tr(q))
    np.testing.assert_array_equal(i_out.compute(scheduler="sync"), ref_inv(u))


@_dask_only
def test_kernel_transform_on_chunked_points_needs_span_ratio_and_is_lazy(rng: np.random.Generator) -> None:
    """method="kernel" sizes a static node grid: lazy points need `span_ratio=`, then it is lazy and exact."""
    pts = rng.normal(size=(500, 2))
    q = rng.normal(size=(400, 2)) * 1.5
    with no_compute(), pytest.raises(ValueError, match="span_ratio"):
        knotsafe.create_transforms(_chunked(pts, (100, 2)), method="kernel", kernel_std=0.2)
    with no_compute():
        tr, _ = knotsafe.create_transforms(_chunked(pts, (100, 2)), method="kernel", kernel_std=0.2, span_ratio=60.0)
        out = tr(_chunked(q, (50, 2)))
    # The node tables are scanned and gathered from in one block (hooks.consolidate): chunked
    # tables would build a graph a hundred times larger.
    assert len(out.__dask_graph__()) < 6_000
    ref_tr, _ = knotsafe.create_transforms(pts, method="kernel", kernel_std=0.2)
    # Two node grids (sized from span_ratio and from the data), each within the documented
    # 1e-12 of the exact sum: they agree to twice that.
    np.testing.assert_allclose(out.compute(scheduler="sync"), ref_tr(q), rtol=0, atol=2e-12)


@_dask_only
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


@_dask_only
def test_data_checks_are_skipped_on_lazy_arrays_without_computing() -> None:
    """Checks that need values (order, NaN, signs) are skipped: nothing is computed, no error."""
    x, v = _chunked(np.array([0.5, 1.5]), 1), _chunked(np.array([0.0, 1.0, 2.0]), 2)
    with no_compute():
        knotsafe.interp(x, _chunked(np.array([2.0, 1.0, 0.0]), 2), v)  # decreasing knots
        knotsafe.create_transforms(_chunked(np.array([[0.0, np.nan], [1.0, 2.0]]), 1))
        knotsafe.create_transforms(_chunked(np.zeros((3, 2)), 2), _chunked(np.array([1.0, -1.0, 1.0]), 2))


@_dask_only
def test_shape_and_type_checks_still_raise_on_dask() -> None:
    """Checks that need no values run on lazy arrays, and compute nothing."""
    x, k = _chunked(np.array([0.5]), 1), _chunked(np.array([0.0, 1.0]), 1)
    with no_compute():
        with pytest.raises(ValueError, match="`values` must have the length of `knots`"):
            knotsafe.interp(x, k, _chunked(np.array([0.0, 1.0, 2.0]), 2))
        with pytest.raises(ValueError, match="`knots` and `x` do not broadcast"):
            knotsafe.interp(_chunked(np.full((3, 1), 0.5), 1), _chunked(np.zeros((2, 2)), 1), k)
        with pytest.raises(ValueError, match="`points` must have shape"):
            knotsafe.create_transforms(_chunked(np.zeros(5), 2))
        with pytest.raises(ValueError, match="`knot_grad`"):
            knotsafe.interp(x, k, k, knot_grad="bogus")  # type: ignore[arg-type]


@_dask_only
def test_n_data_cannot_be_inferred_from_lazy_sub_to_data() -> None:
    """Inferring ``n_data`` would need a compute: knotsafe asks for it instead."""
    idx = da.from_array(np.array([[0, 1], [1, 2]]), chunks=1)
    w = da.from_array(np.array([[0.5, 0.5], [0.25, 0.75]]), chunks=1)
    with no_compute(), pytest.raises(ValueError, match="pass `n_data`"):
        rectangular.mapping_matrix(idx, w, 3, sub_to_data=da.from_array(np.array([0, 0]), chunks=1))


@_dask_only
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


# --- Dask: weighted ties on a chunked data grid ---------------------------------------------------


# The mesh normalises the data grid by its mean and standard deviation.  Dask sums a chunked data
# grid chunk by chunk, NumPy pairwise, so the two round ``mu`` and ``scale`` differently.  The
# unweighted mesh moves by that rounding only.  The weighted ranks spread a tie run's weight over its
# positions, so they depend on which normalised coordinates are *exactly* equal: on a rotated lens
# grid (mirror pairs one or two ulp apart) some pairs tie after NumPy's normalisation and not after
# Dask's (or the reverse), and the weighted mesh differs on the rows that read those runs
# (docs/edge-inputs.md).  These tests pin that behaviour: everything else is bitwise NumPy's.


N_MESH = 20


def _grid(rotation: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    data, over = lens_grid(radius=1.0, pixel_scale=0.05, sub_size=2, einstein_radius=1.6, rotation=rotation)
    w = np.random.default_rng(0).uniform(0.5, 1.5, data.shape[0])
    return data, over, w


def _dask_mesh(data: np.ndarray, over: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The mesh of the data grid cut into chunks of 100 rows (so its sums run chunk by chunk)."""
    wd = None if w is None else da.from_array(w, chunks=100)
    idx, wts = rectangular.mappings_weights(
        N_MESH, da.from_array(data, chunks=(100, 2)), da.from_array(over, chunks=(1000, 2)), wd
    )
    return np.asarray(idx.compute(scheduler="sync")), np.asarray(wts.compute(scheduler="sync"))


def _dask_normalisation(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, scale = mesh_lib.normalisation(cda, registry.hooks_for(cda), da.from_array(data, chunks=(100, 2)))
    return np.asarray(mu.compute(scheduler="sync")), np.asarray(scale.compute(scheduler="sync"))


@_dask_only
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("rotation", [0.0, 0.3])
def test_dask_mesh_is_numpy_mesh_with_dasks_normalisation(
    monkeypatch: pytest.MonkeyPatch, rotation: float, weighted: bool
) -> None:
    """Given Dask's mu and scale, NumPy builds bitwise Dask's mesh: the normalisation's
    rounding is the only difference (ranks, interpolation and weights are bitwise equal)."""
    data, over, w = _grid(rotation)
    got = _dask_mesh(data, over, w if weighted else None)
    mu, scale = _dask_normalisation(data)
    monkeypatch.setattr(mesh_lib, "normalisation", lambda xp, hooks, d: (xp.asarray(mu), xp.asarray(scale)))
    want = rectangular.mappings_weights(N_MESH, data, over, w if weighted else None)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def _runs(z: np.ndarray) -> np.ndarray:
    """Per point, the (sorted-order) index of the first point of its tie run."""
    order = np.argsort(z, kind="stable")
    s = z[order]
    start = np.searchsorted(s, s, side="left")
    out = np.empty_like(start)
    out[order] = order[start]
    return out


def _affected_rows(z_np: np.ndarray, z_dask: np.ndarray, q_np: np.ndarray) -> tuple[np.ndarray, int]:
    """Rows whose query (NumPy coordinates) sits in a bin touching a tie run whose membership
    differs between the two normalisations, in either column; and how many points changed run."""
    affected = np.zeros(q_np.shape[0], dtype=bool)
    changed_points = 0
    for c in range(2):
        a, b = _runs(z_np[:, c]), _runs(z_dask[:, c])
        # Canonical run labels: the set of points in a run, named by its smallest member.
        label_a = np.array([np.flatnonzero(a == a[i]).min() for i in range(a.size)])
        label_b = np.array([np.flatnonzero(b == b[i]).min() for i in range(b.size)])
        changed = label_a != label_b
        changed_points += int(changed.sum())
        # Every point of a run (in either partition) that holds a changed point.
        changed |= np.isin(label_a, label_a[changed]) | np.isin(label_b, label_b[changed])
        s = np.sort(z_np[:, c])
        changed_values = np.unique(z_np[changed, c])
        j = np.clip(np.searchsorted(s, q_np[:, c], side="right") - 1, 0, s.size - 2)
        affected |= np.isin(s[j], changed_values) | np.isin(s[j + 1], changed_values)
    return affected, changed_points


def _rounding_bound(z: np.ndarray, q: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """Per row, how far the mesh weights can move when mu and scale are rounded differently.

    A mean or variance of N terms is off by at most N eps relative, so every normalised
    coordinate moves by at most delta = 4 N eps (1 + max|z|) (mu and scale, data and
    queries alike).  A weight is (n - 3) * rank-slope * coordinate away from its
    neighbours, so it moves by at most (n - 3) * slope * delta, with slope the largest
    rank step over the bin width among the bins within delta of the query (inf for a bin
    narrower than 2 delta: a coordinate may cross it).
    """
    n = z.shape[0]
    eps = np.finfo(np.float64).eps
    delta = 4 * n * eps * (1 + np.abs(z).max())
    ww = np.ones(n) if w is None else w
    bound = np.zeros(q.shape[0])
    for c in range(2):
        order = np.argsort(z[:, c], kind="stable")
        s, cum = z[order, c], np.cumsum(ww[order]) / ww.sum()
        j0 = np.clip(np.searchsorted(s, q[:, c] - delta, side="right") - 1, 0, n - 2)
        j1 = np.clip(np.searchsorted(s, q[:, c] + delta, side="right") - 1, 0, n - 2)
        gaps, steps = np.diff(s), np.diff(cum)
        with np.errstate(divide="ignore"):
            slope = np.where(gaps > 2 * delta, steps / np.maximum(gaps, 2 * delta), np.inf)
        worst = np.array([slope[a : b + 1].max() for a, b in zip(j0, j1, strict=True)])
        bound = np.maximum(bound, (N_MESH - 3) * worst * delta)
    return bound + 4 * eps


@_dask_only
@pytest.mark.parametrize("rotation", [0.0, 0.3])
def test_weighted_mesh_on_dask_differs_only_where_ties_differ(rotation: float) -> None:
    """Unweighted: Dask's mesh is NumPy's to the rounding of mu and scale.  Weighted: the same
    on every row except those reading a tie run that the two normalisations split differently.

    Exact mirror pairs (rotation 0) tie under both normalisations, so no row is affected;
    on the rotated grid runs change and those rows move by up to ~5e-3 (docs/edge-inputs.md).
    """
    data, over, w = _grid(rotation)
    mu0, scale0 = mesh_lib.normalisation(np, registry.hooks_for(np), data)
    mu1, scale1 = _dask_normalisation(data)
    # Normalised as the mesh does, times the reciprocal scale: a tie run is a matter of the last bit.
    z_np, z_dask = (data - mu0) * (1.0 / scale0), (data - mu1) * (1.0 / scale1)
    q_np = (over - mu0) * (1.0 / scale0)
    affected, changed_points = _affected_rows(z_np, z_dask, q_np)
    for weights in (None, w):
        ref_idx, ref_w = rectangular.mappings_weights(N_MESH, data, over, weights)
        idx, wts = _dask_mesh(data, over, weights)
        bound = _rounding_bound(z_np, q_np, weights)
        moved = np.abs(wts - ref_w).max(axis=1) > bound
        same_cell = np.all(idx == ref_idx, axis=1)
        if weights is None:
            assert not np.any(moved & same_cell), np.flatnonzero(moved & same_cell)[:5]
        else:
            # Rows beyond rounding are exactly rows reading a changed tie run.
            assert not np.any(moved & same_cell & ~affected), np.flatnonzero(moved & same_cell & ~affected)[:5]
    if rotation == 0.0:
        assert changed_points == 0 and not affected.any()
    else:
        # The discontinuity is there (if a change makes Dask round like NumPy, this fails:
        # then test equality instead and update docs/edge-inputs.md).
        assert changed_points > 0
        _, wts = _dask_mesh(data, over, w)
        _, ref_w = rectangular.mappings_weights(N_MESH, data, over, w)
        assert np.abs(wts - ref_w).max() > 1e-4


# --- JAX: 8 simulated devices ---------------------------------------------------------------------


# JAX fixes its device count when it is imported, so the outer test re-runs the 8-device tests in a
# subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (8 simulated CPU devices) and
# they run there only.  The subprocess inherits ``JAX_ENABLE_X64``, so the JAX session checks float32
# and float64.
#
# Reference: the same function jitted on one device.  Per-query values (and the per-query gradient
# with respect to the queries) are the same elementwise computation on every device, so they must
# agree bitwise.  Gradients with respect to replicated knots, values or an Einstein radius sum
# contributions over the queries; sharded, the sum is split across devices and added in another
# order.  Recursive or pairwise summation of n terms is off by at most ``gamma_n * sum|terms|``
# (``gamma_n = n u / (1 - n u)``, u the unit roundoff), so two orders differ by at most
# ``2 gamma_n sum|terms|``, where ``sum|terms|`` is read off the single-device Jacobian.


_jax_only = only_in_session_of("jax")


INNER = os.environ.get("KNOTSAFE_SHARDING_INNER") == "1"
N_DEV = 8


@_jax_only
@pytest.mark.skipif(INNER, reason="outer driver")
def test_sharding_on_8_simulated_devices() -> None:
    pytest.importorskip("jax")
    env = {
        **os.environ,
        "KNOTSAFE_SHARDING_INNER": "1",
        "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={N_DEV}").strip(),
        "JAX_PLATFORMS": "cpu",
    }
    here = Path(__file__).resolve()
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        f"{here}::TestOnEightDevices",
        "-q",
        "-p",
        "no:cacheprovider",
        "-rs",
        "--rootdir",
        str(here.parents[1]),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    # Nothing may be skipped in there: the subprocess selects the 8-device tests only.
    summary = proc.stdout.strip().splitlines()[-1]
    assert "skipped" not in summary, proc.stdout[-3000:]


inner = pytest.mark.skipif(not INNER, reason="runs in the 8-device subprocess")


@dataclass(frozen=True)
class Devices:
    """The 8-device mesh and the placements the inner tests use."""

    jax: Any
    jnp: Any
    mesh: Any
    P: Any  # jax.sharding.PartitionSpec
    rows: Any  # NamedSharding: a 1-D array split over the devices
    point_rows: Any  # NamedSharding: an (N, D) array split by rows
    repl: Any  # NamedSharding: replicated on every device
    dt: Any  # the NumPy float dtype of this run (float64 under x64)

    def put_rows(self, p: Any, q: Any) -> tuple[Any, Any]:
        """``p`` replicated, ``q`` (N, D) split by rows."""
        return self.jax.device_put(p, self.repl), self.jax.device_put(q, self.point_rows)

    def assert_rows_sharding_bitwise(self, fn: Any, p: Any, q: Any) -> None:
        """``fn(p, q)`` (two (N, D) outputs, per row of ``q``) under jit with ``q`` split by rows and under
        shard_map equals the single-device jit bitwise: each row is the same computation on every device."""
        jax, P = self.jax, self.P
        ref = jax.jit(fn)(p, q)
        got = jax.jit(fn)(*self.put_rows(p, q))
        smap = jax.shard_map(fn, mesh=self.mesh, in_specs=(P(), P("d", None)), out_specs=(P("d", None), P("d", None)))
        got_smap = jax.jit(smap)(p, q)
        for a, b in zip((*got, *got_smap), (*ref, *ref), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.fixture
def dev() -> Devices:
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    if jax.device_count() < N_DEV:
        pytest.fail(f"expected {N_DEV} devices, got {jax.device_count()} (XLA_FLAGS not applied)")
    mesh = Mesh(np.array(jax.devices()[:N_DEV]), ("d",))
    dt = np.float64 if jax.config.read("jax_enable_x64") else np.float32
    return Devices(
        jax, jnp, mesh, P, NamedSharding(mesh, P("d")), NamedSharding(mesh, P("d", None)), NamedSharding(mesh, P()), dt
    )


def _bound(jac_abs_sum: np.ndarray, n: int, dtype: Any) -> np.ndarray:
    u = np.finfo(dtype).eps / 2
    gamma = n * u / (1 - n * u)
    return 2 * gamma * jac_abs_sum + np.finfo(dtype).tiny


def _interp_case(dev: Devices) -> tuple[Any, Any, Any, Any]:
    """Queries, knots (with exact and near duplicates), values and loss weights, as JAX arrays."""
    rng = np.random.default_rng(7)
    k = np.sort(rng.uniform(-2.0, 2.0, 64))
    k[5:9] = k[5]  # exact duplicates
    k[20] = np.nextafter(k[19], np.inf)
    v = rng.normal(size=64)
    x = rng.uniform(-2.5, 2.5, 1024)
    c = rng.normal(size=1024)
    return tuple(dev.jnp.asarray(a.astype(dev.dt)) for a in (x, k, v, c))  # type: ignore[return-value]


def _assert_interp_grads(dev: Devices, g: Any, ref_g: Any, x: Any, k: Any, v: Any, c: Any) -> None:
    """Gradients of ``sum(c * interp(x, k, v))``: per query bitwise; for the replicated knots and values
    (sums over the queries, added in another order) within the summation bound (the section's comment)."""
    import knotsafe

    np.testing.assert_array_equal(np.asarray(g[0]), np.asarray(ref_g[0]))  # per query: same computation
    jk, jv = dev.jax.jacrev(lambda k, v: c * knotsafe.interp(x, k, v), argnums=(0, 1))(k, v)
    for got, ref, jac in ((g[1], ref_g[1], jk), (g[2], ref_g[2], jv)):
        bound = _bound(np.abs(np.asarray(jac, dtype=np.float64)).sum(axis=0), x.shape[0], dev.dt)
        assert np.all(np.abs(np.asarray(got, np.float64) - np.asarray(ref, np.float64)) <= bound)


def _lens(dt: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from knotsafe.testing import circular_mask_grid

    data = circular_mask_grid(1.0, 0.2, 1).astype(dt)
    over = circular_mask_grid(1.0, 0.2, 2).astype(dt)
    over = over[: over.shape[0] // N_DEV * N_DEV]
    c = np.random.default_rng(5).normal(size=over.shape[0]).astype(dt)
    return data, over, c


def _lens_loss(data: Any, over: Any, c: Any) -> Any:
    """L(theta): rank transform of the traced data grid, evaluated at the traced over-sampled grid."""
    import jax.numpy as jnp

    import knotsafe
    from knotsafe.testing import trace_sis

    def loss(theta: Any) -> Any:
        tr, _ = knotsafe.create_transforms(trace_sis(data, theta))
        u = tr(trace_sis(over, theta))
        return jnp.sum(c * (u[:, 0] + u[:, 1]))

    return loss


def _lens_term_sums(data: Any, over: Any, c: Any, thetas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per model: sum|terms| of the loss and of its theta-gradient (chain rule through queries and knots)."""
    import jax
    import jax.numpy as jnp

    import knotsafe
    from knotsafe.testing import trace_sis

    def per_query(q: Any, k: Any) -> Any:
        tr, _ = knotsafe.create_transforms(k)
        u = tr(q)
        return c * (u[:, 0] + u[:, 1])

    def sums(t: Any) -> tuple[Any, Any]:
        q, k = trace_sis(over, t), trace_sis(data, t)
        dq = jax.jacfwd(lambda t: trace_sis(over, t))(t)  # (n, 2)
        dk = jax.jacfwd(lambda t: trace_sis(data, t))(t)  # (m, 2)
        jq, jk = jax.jacrev(per_query, argnums=(0, 1))(q, k)  # (n, n, 2), (n, m, 2)
        terms = jnp.sum(jnp.abs(jq * dq)) + jnp.sum(jnp.abs(jk * dk))
        return jnp.sum(jnp.abs(per_query(q, k))), terms

    # One compilation for all models (the terms are summed in float64 below
    # only when x64 is on; float32 sums of |terms| are within a factor
    # 1 + n u of the exact sum, which moves the bound by that factor only).
    val_abs, grad_abs = jax.jit(jax.vmap(sums))(jnp.asarray(thetas, dtype=data.dtype))
    return np.asarray(val_abs, np.float64), np.asarray(grad_abs, np.float64)


@_jax_only
@inner
class TestOnEightDevices:
    """Run by :func:`test_sharding_on_8_simulated_devices` in its subprocess."""

    def test_interp_jit_named_sharding_queries_sharded_knots_replicated(self, dev: Devices) -> None:
        import knotsafe

        jax = dev.jax
        x, k, v, c = _interp_case(dev)

        def loss(x: Any, k: Any, v: Any) -> Any:
            return dev.jnp.sum(c * knotsafe.interp(x, k, v))

        fwd = jax.jit(knotsafe.interp)
        grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
        ref_out, ref_g = fwd(x, k, v), grad(x, k, v)
        xs, ks, vs = jax.device_put(x, dev.rows), jax.device_put(k, dev.repl), jax.device_put(v, dev.repl)
        out, g = fwd(xs, ks, vs), grad(xs, ks, vs)
        assert len(out.sharding.device_set) == N_DEV
        np.testing.assert_array_equal(np.asarray(out), np.asarray(ref_out))
        _assert_interp_grads(dev, g, ref_g, x, k, v, c)

    def test_interp_shard_map_equals_single_device(self, dev: Devices) -> None:
        import knotsafe

        jax, P = dev.jax, dev.P
        x, k, v, c = _interp_case(dev)
        sharded = jax.shard_map(knotsafe.interp, mesh=dev.mesh, in_specs=(P("d"), P(), P()), out_specs=P("d"))

        def loss(f: Any) -> Any:
            return lambda x, k, v: dev.jnp.sum(c * f(x, k, v))

        out = jax.jit(sharded)(x, k, v)
        np.testing.assert_array_equal(np.asarray(out), np.asarray(jax.jit(knotsafe.interp)(x, k, v)))
        g = jax.jit(jax.grad(loss(sharded), argnums=(0, 1, 2)))(x, k, v)
        ref_g = jax.jit(jax.grad(loss(knotsafe.interp), argnums=(0, 1, 2)))(x, k, v)
        _assert_interp_grads(dev, g, ref_g, x, k, v, c)

    def test_create_transforms_queries_sharded_points_replicated(self, dev: Devices) -> None:
        import knotsafe

        jax, jnp = dev.jax, dev.jnp
        rng = np.random.default_rng(3)
        pts = jnp.asarray(rng.normal(size=(400, 2)).round(2).astype(dev.dt))  # ties
        q = jnp.asarray(rng.normal(size=(512, 2)).astype(dev.dt))

        def both(p: Any, q: Any) -> tuple[Any, Any]:
            tr, inv = knotsafe.create_transforms(p)
            return tr(q), inv(jnp.clip(tr(q), 0.0, 1.0))

        dev.assert_rows_sharding_bitwise(both, pts, q)
        # Gradient with respect to the queries: per query, the same computation.
        gq = jax.jit(jax.grad(lambda q, p: jnp.sum(both(p, q)[0] ** 2)))
        pts_repl, q_rows = dev.put_rows(pts, q)
        np.testing.assert_array_equal(np.asarray(gq(q_rows, pts_repl)), np.asarray(gq(q, pts)))

    def test_batch_of_lens_models_sharded_over_einstein_radius(self, dev: Devices) -> None:
        jax, jnp, P, dt = dev.jax, dev.jnp, dev.P, dev.dt
        data, over, c = (jnp.asarray(a) for a in _lens(dt))
        thetas = jnp.asarray(np.linspace(1.1, 1.8, N_DEV).astype(dt))
        batched = jax.vmap(jax.value_and_grad(_lens_loss(data, over, c)))
        ref_val, ref_grad = jax.jit(batched)(thetas)
        val, grad = jax.jit(batched)(jax.device_put(thetas, dev.rows))
        assert len(val.sharding.device_set) == N_DEV
        smap = jax.shard_map(batched, mesh=dev.mesh, in_specs=P("d"), out_specs=(P("d"), P("d")))
        val_s, grad_s = jax.jit(smap)(thetas)
        # Each lens model lies whole on one device, but XLA vectorises the sum
        # over queries differently for a batch of 8 and a batch of 1: the sums
        # agree to the summation bound over their own terms (the section's comment).
        val_abs, grad_abs = _lens_term_sums(data, over, c, np.asarray(thetas))
        n_terms = 4 * over.shape[0] + 2 * data.shape[0]  # every product that reaches a sum
        for v, g in ((val, grad), (val_s, grad_s)):
            assert np.all(
                np.abs(np.asarray(v, np.float64) - np.asarray(ref_val, np.float64)) <= _bound(val_abs, n_terms, dt)
            )
            assert np.all(
                np.abs(np.asarray(g, np.float64) - np.asarray(ref_grad, np.float64)) <= _bound(grad_abs, n_terms, dt)
            )
        assert np.all(np.isfinite(np.asarray(grad)))

    def test_mesh_over_sampled_grid_sharded_data_grid_replicated(self, dev: Devices) -> None:
        from knotsafe import rectangular
        from knotsafe.testing import trace_sis

        jax, jnp = dev.jax, dev.jnp
        data_np, over_np, _ = _lens(dev.dt)
        data, over = trace_sis(jnp.asarray(data_np), 1.6), trace_sis(jnp.asarray(over_np), 1.6)

        def mesh_fn(d: Any, o: Any) -> tuple[Any, Any]:
            return rectangular.mappings_weights(6, d, o)

        dev.assert_rows_sharding_bitwise(mesh_fn, data, over)
        # Gradient of the mesh weights with respect to the over-sampled points: per point.
        g = jax.jit(jax.grad(lambda o: jnp.sum(mesh_fn(data, o)[1] ** 2)))
        data_repl, o_rows = dev.put_rows(data, over)
        np.testing.assert_array_equal(np.asarray(g(o_rows)), np.asarray(g(over)))
        centres = jax.jit(lambda d: rectangular.pixel_centres(6, d))
        np.testing.assert_array_equal(np.asarray(centres(data_repl)), np.asarray(centres(data)))
