"""Where data cannot be read (jax.jit, torch.func.vmap, torch.compile, lazy Dask), bad data gives NaN, never a crash.

On concrete arrays the same data raises (tests of the argument checks); here the checks cannot run, so the
outputs they would have guarded are NaN: every output of ``interp`` with decreasing or NaN knots, the rows of
``mapping_matrix`` with an index out of range, every entry where a bad entry cannot be attributed to a row,
the kernel-density transforms and the kernel mesh of bad points or bandwidths (and nothing reads out of range,
which under ``torch.compile`` aborts the process).  The references are numpy.interp, a dense matrix built here
entry by entry, and the same kernel computation on good data.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import knotsafe
from knotsafe import rectangular
from tests import _support
from tests._support import asarray, backend_name, has_float64


def _readable(xp: ModuleType) -> ModuleType:
    """The namespace whose arrays of the same data can be read: Dask's are always lazy, so NumPy's."""
    return np if backend_name(xp) == "dask" else xp


def _dt(xp: ModuleType) -> str:
    return "float64" if has_float64(xp) else "float32"


X = [-1.0, 0.0, 0.5, 1.5, 2.0, 3.0]


@pytest.mark.parametrize(
    "knots",
    [[2.0, 1.0, 0.0], [0.0, np.nan, 2.0], [np.nan, 1.0, 2.0], [0.0, 1.0, np.nan], [0.0, 2.0, 1.0]],
    ids=["decreasing", "nan-inside", "nan-first", "nan-last", "one-step-back"],
)
def test_interp_with_bad_knots_is_nan_everywhere(xp: ModuleType, knots: list[float]) -> None:
    dt = _dt(xp)
    f = _support.unreadable(xp, lambda x, k, v: knotsafe.interp(x, k, v))
    out = f(*(asarray(xp, a, dt) for a in (X, knots, [0.0, 1.0, 4.0])))
    assert out.shape == (len(X),) and np.isnan(out).all()
    with pytest.raises(ValueError, match=r"^`knots` must be non-decreasing and free of NaN$"):
        knotsafe.interp(*(asarray(_readable(xp), a, dt) for a in (X, knots, [0.0, 1.0, 4.0])))


def test_interp_with_a_single_nan_knot_is_nan(xp: ModuleType) -> None:
    dt = _dt(xp)
    args = [asarray(xp, a, dt) for a in (X, [np.nan], [3.0])]
    assert np.isnan(_support.unreadable(xp, lambda x, k, v: knotsafe.interp(x, k, v))(*args)).all()
    with pytest.raises(ValueError, match=r"^`knots` must be non-decreasing and free of NaN$"):
        knotsafe.interp(*(asarray(_readable(xp), a, dt) for a in (X, [np.nan], [3.0])))


def test_interp_with_good_knots_is_numpy_interp(xp: ModuleType) -> None:
    """The control: sorted knots (duplicates and a single knot included) are not poisoned."""
    dt = _dt(xp)
    f = _support.unreadable(xp, lambda x, k, v: knotsafe.interp(x, k, v))
    for knots, values in (([0.0, 1.0, 1.0, 2.0], [0.0, 1.0, 2.0, 4.0]), ([1.0], [3.0])):
        args = [np.asarray(a, dtype=dt) for a in (X, knots, values)]
        want = np.interp(*(a.astype(np.float64) for a in args))
        np.testing.assert_allclose(f(*(asarray(xp, a, dt) for a in args)), want, rtol=4 * np.finfo(dt).eps)


def test_interp_with_period_and_a_non_finite_knot_is_nan(xp: ModuleType) -> None:
    dt = _dt(xp)
    f = _support.unreadable(xp, lambda x, k, v: knotsafe.interp(x, k, v, period=360.0))
    for bad in (np.inf, np.nan):
        out = f(*(asarray(xp, a, dt) for a in ([10.0, 200.0], [0.0, 90.0, bad], [1.0, 2.0, 3.0])))
        assert np.isnan(out).all()


@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")  # torch.func.vmap of conj
def test_interp_with_complex_values_and_bad_knots_is_nan(xp: ModuleType) -> None:
    if backend_name(xp) == "dask":
        pytest.skip("complex values on Dask are covered by the real case (same poison)")
    dt = _dt(xp)
    cdt = "complex128" if dt == "float64" else "complex64"
    values = xp.asarray(np.asarray([1 + 1j, 2 - 1j, 0.5j], dtype=cdt))
    f = _support.unreadable(xp, lambda x, k, v: knotsafe.interp(x, k, v))
    out = f(asarray(xp, X, dt), asarray(xp, [2.0, 1.0, 0.0], dt), values)
    assert np.isnan(out.real).all()


# ---------------------------------------------------------------------------
# mapping and curvature matrices
# ---------------------------------------------------------------------------

N_PIX = 9
W = np.array([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25], [0.5, 0.1, 0.3, 0.1]])


def _dense(indices: np.ndarray, weights: np.ndarray, n_pixels: int) -> np.ndarray:
    m = np.zeros((indices.shape[0], n_pixels))
    for k in range(indices.shape[0]):
        for c in range(indices.shape[1]):
            m[k, indices[k, c]] += weights[k, c]
    return m


def _int(xp: ModuleType, a: Any) -> Any:
    return xp.asarray(np.asarray(a))


@pytest.mark.parametrize("bad", [N_PIX, 99, -1, -N_PIX - 1])
def test_mapping_matrix_row_with_an_out_of_range_index_is_nan(xp: ModuleType, bad: int) -> None:
    dt = _dt(xp)
    idx = np.array([[0, 1, 2, 3], [4, bad, 5, 6], [7, 8, 8, 0]])
    good = idx.copy()
    good[1, 1] = 5
    f = _support.unreadable(xp, lambda i, w: rectangular.mapping_matrix(i, w, N_PIX))
    out = f(_int(xp, idx), asarray(xp, W, dt))
    assert np.isnan(out[1]).all()
    want = _dense(good, W, N_PIX)
    np.testing.assert_allclose(out[[0, 2]], want[[0, 2]], rtol=4 * np.finfo(dt).eps)
    np.testing.assert_allclose(f(_int(xp, good), asarray(xp, W, dt)), want, rtol=4 * np.finfo(dt).eps)
    with pytest.raises(ValueError, match=r"^`indices` must lie in \[0, n_pixels\)"):
        rectangular.mapping_matrix(_int(_readable(xp), idx), asarray(_readable(xp), W, dt), N_PIX)


def test_out_of_range_mapping_indices_under_jit_give_nan() -> None:
    """jax.jit(lambda i: mapping_matrix(i, ones((1, 4)), 36).sum()) of [[0, 1, 2, 99]] gave 3.0 (-1: 4.0)."""
    from tests._support import backend_module

    jax = backend_module("jax")
    import jax.numpy as jnp

    f = jax.jit(lambda i: rectangular.mapping_matrix(i, jnp.ones((1, 4)), 36).sum())
    assert np.isnan(float(f(jnp.array([[0, 1, 2, 99]]))))
    assert np.isnan(float(f(jnp.array([[0, 1, 2, -1]]))))
    assert float(f(jnp.array([[0, 1, 2, 35]]))) == 4.0


def test_mapping_matrix_per_data_pixel_with_bad_entries(xp: ModuleType) -> None:
    """A data row averaging a row with a bad index is NaN (the others are the reference); a
    ``sub_to_data`` entry out of range belongs to no known row: every entry is NaN."""
    dt = _dt(xp)
    idx = np.array([[0, 1, 2, 3], [4, 99, 5, 6], [7, 8, 8, 0]])
    s2d = np.array([0, 1, 1])
    f = _support.unreadable(xp, lambda i, w, s: rectangular.mapping_matrix(i, w, N_PIX, sub_to_data=s, n_data=3))
    out = f(_int(xp, idx), asarray(xp, W, dt), _int(xp, s2d))
    assert np.isnan(out[1]).all()
    np.testing.assert_allclose(out[0], _dense(idx[:1], W[:1], N_PIX)[0], rtol=4 * np.finfo(dt).eps)
    np.testing.assert_array_equal(out[2], np.zeros(N_PIX))  # a data pixel without rows
    good = np.array([[0, 1, 2, 3], [4, 5, 5, 6], [7, 8, 8, 0]])
    for bad_s2d in ([0, 1, 3], [0, -1, 1]):
        assert np.isnan(f(_int(xp, good), asarray(xp, W, dt), _int(xp, bad_s2d))).all()


def test_curvature_matrix_with_an_out_of_range_index_is_nan(xp: ModuleType) -> None:
    dt = _dt(xp)
    f = _support.unreadable(xp, lambda i, w: rectangular.curvature_matrix(i, w, N_PIX))
    assert np.isnan(f(_int(xp, [[0, 1, 2, 3], [4, 99, 5, 6], [7, 8, 8, 0]]), asarray(xp, W, dt))).all()
    good = np.array([[0, 1, 2, 3], [4, 5, 5, 6], [7, 8, 8, 0]])
    m = _dense(good, W, N_PIX)
    # Generic scatter-add (Dask) differences a cumulative sum: rounding relative to the total.
    atol = 16 * np.finfo(dt).eps * float((m.sum(axis=1) ** 2).sum())
    np.testing.assert_allclose(f(_int(xp, good), asarray(xp, W, dt)), m.T @ m, rtol=0, atol=atol)


# ---------------------------------------------------------------------------
# the kernel-density method and the kernel mesh
# ---------------------------------------------------------------------------
# They turn every position into a cell index; a NaN or infinite point, a NaN, zero, negative or
# infinite bandwidth, identical points (zero spread) or a span beyond ``span_ratio`` make those
# positions NaN.  Nothing is checked under tracing, so the outputs must be NaN (for the affected
# column, or all of them), and no index may leave its array: ``floor(NaN)`` cast to an integer is
# an arbitrary index, which PyTorch's compiled kernels answer by aborting the process, eager
# PyTorch and Dask by an IndexError.  Each case is compared with the same computation on good data
# (finite outputs), so a test that returns NaN for everything cannot pass.

KERNEL_SPAN_RATIO = 100.0


def _kernel_points(seed: int = 0, n: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(n, 2))


def _bad_kernel_points() -> dict[str, np.ndarray]:
    """Point sets that concrete checks reject, keyed by what is wrong (column 0 only)."""
    cases = {}
    for name, value in (("nan", np.nan), ("inf", np.inf), ("-inf", -np.inf)):
        p = _kernel_points()
        p[3, 0] = value
        cases[name] = p
    p = _kernel_points()
    p[:, 0] = 0.25
    cases["identical"] = p
    p = _kernel_points()
    p[5, 0] = 1e3  # (max - min) / 0.3 > KERNEL_SPAN_RATIO
    cases["beyond_span_ratio"] = p
    return cases


BAD_KERNEL_POINTS = _bad_kernel_points()
BAD_KERNEL_BANDWIDTHS = {"nan": np.nan, "zero": 0.0, "negative": -0.3, "inf": np.inf}


def _kernel_queries() -> np.ndarray:
    return np.random.default_rng(1).uniform(size=(9, 2))


def _kernel_outputs(xp: Any, p: Any, h: Any, q: Any) -> Any:
    """Forward, exact inverse and table inverse stacked (K, 6)."""
    t, inv = knotsafe.create_transforms(p, method="kernel", kernel_std=h, span_ratio=KERNEL_SPAN_RATIO)
    _, inv_table = knotsafe.create_transforms(p, method="kernel", kernel_std=h, span_ratio=KERNEL_SPAN_RATIO, n_knots=8)
    return xp.concat([t(q), inv(q), inv_table(q)], axis=1)


def _check_kernel(out: np.ndarray, good: np.ndarray, all_bad: bool) -> None:
    assert np.all(np.isfinite(good))
    if all_bad:
        assert np.all(np.isnan(out))
    else:
        # Column 0 is bad: its outputs (0, 2, 4) are NaN.  Column 1 may be NaN too (a verdict
        # of bad data poisons every output) or, where only the tables' own flag saw it, finite.
        assert np.all(np.isnan(out[:, 0::2]))
        finite = np.isfinite(out[:, 1::2])
        np.testing.assert_allclose(out[:, 1::2][finite], good[:, 1::2][finite], rtol=1e-12)


@functools.cache
def _traced_kernel(name: str) -> tuple[Callable[..., Any], ModuleType]:
    """A jit (JAX) or vmap (PyTorch) wrapper of ``_kernel_outputs`` over (points, bandwidth), shared by
    the tests (one JAX compilation for all of them)."""
    if name == "jax":
        jax = _support.backend_module("jax")
        import jax.numpy as jnp

        return jax.jit(lambda p, h, q: _kernel_outputs(jnp, p, h, q)), jnp
    torch = _support.backend_module("torch")

    def one(p: Any, h: Any, q: Any) -> Any:
        return _kernel_outputs(torch, p, h, q)

    def batched(p: Any, h: Any, q: Any) -> Any:
        return torch.func.vmap(one, in_dims=(0, 0, None))(p[None], h[None], q)[0]

    return batched, torch


@pytest.mark.parametrize("backend", ["jax", "torch"])
@pytest.mark.parametrize("case", sorted(BAD_KERNEL_POINTS))
def test_kernel_with_bad_points_under_jit_and_vmap_is_nan(backend: str, case: str) -> None:
    _support.backend_module(backend)
    f, ns = _traced_kernel(backend)
    dt = ns.float32 if backend == "jax" and not _support.has_float64(ns) else ns.float64
    q = ns.asarray(_kernel_queries(), dtype=dt)
    h = ns.asarray([0.3, 0.3], dtype=dt)
    good = _support.to_numpy(f(ns.asarray(_kernel_points(), dtype=dt), h, q))
    out = _support.to_numpy(f(ns.asarray(BAD_KERNEL_POINTS[case], dtype=dt), h, q))
    _check_kernel(out, good, all_bad=False)


@pytest.mark.parametrize("backend", ["jax", "torch"])
@pytest.mark.parametrize("case", sorted(BAD_KERNEL_BANDWIDTHS))
def test_kernel_with_a_bad_bandwidth_under_jit_and_vmap_is_nan(backend: str, case: str) -> None:
    _support.backend_module(backend)
    f, ns = _traced_kernel(backend)
    dt = ns.float32 if backend == "jax" and not _support.has_float64(ns) else ns.float64
    q = ns.asarray(_kernel_queries(), dtype=dt)
    p = ns.asarray(_kernel_points(), dtype=dt)
    good = _support.to_numpy(f(p, ns.asarray([0.3, 0.3], dtype=dt), q))
    out = _support.to_numpy(f(p, ns.asarray([BAD_KERNEL_BANDWIDTHS[case], 0.3], dtype=dt), q))
    _check_kernel(out, good, all_bad=False)


@pytest.mark.parametrize("case", sorted(BAD_KERNEL_POINTS))
def test_kernel_with_bad_points_on_lazy_dask_is_nan(case: str) -> None:
    da = _support.backend_module("dask", "dask.array")
    xp = _support.backend_module("dask", "array_api_compat.dask.array")

    def run(p: np.ndarray, h: float) -> np.ndarray:
        lazy = da.from_array(p, chunks=(10, 2))
        q = da.from_array(_kernel_queries(), chunks=(3, 2))
        return np.asarray(_kernel_outputs(xp, lazy, h, q).compute())

    _check_kernel(run(BAD_KERNEL_POINTS[case], 0.3), run(_kernel_points(), 0.3), all_bad=False)


@pytest.mark.parametrize("h", [np.nan, 0.0, np.inf])
def test_kernel_with_a_bad_bandwidth_on_lazy_dask_is_nan(h: float) -> None:
    da = _support.backend_module("dask", "dask.array")
    xp = _support.backend_module("dask", "array_api_compat.dask.array")

    def run(hh: float) -> np.ndarray:
        lazy = da.from_array(_kernel_points(), chunks=(10, 2))
        bw = da.from_array(np.array([hh, 0.3]), chunks=1)
        return np.asarray(_kernel_outputs(xp, lazy, bw, da.from_array(_kernel_queries(), chunks=(3, 2))).compute())

    _check_kernel(run(h), run(0.3), all_bad=False)


# ---------------------------------------------------------------------------
# the kernel mesh
# ---------------------------------------------------------------------------


def _kernel_mesh_data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    good = rng.uniform(size=(30, 2))
    cases = {"good": good}
    for name, value in (("nan", np.nan), ("inf", np.inf)):
        d = good.copy()
        d[2, 1] = value
        cases[name] = d
    cases["identical"] = np.full((30, 2), 0.5)
    return cases


KERNEL_MESH = _kernel_mesh_data()


def _kernel_mesh_outputs(xp: Any, d: Any) -> tuple[Any, Any]:
    """Mapping indices, and the weights, centres and areas concatenated."""
    idx, w = rectangular.mappings_weights(6, d, d, transform="kernel")
    centres = rectangular.pixel_centres(6, d, transform="kernel")
    areas = rectangular.pixel_areas(6, d, transform="kernel")
    return idx, xp.concat([xp.reshape(w, (-1,)), xp.reshape(centres, (-1,)), areas])


def _check_kernel_mesh(idx: np.ndarray, values: np.ndarray, good: np.ndarray) -> None:
    assert np.all(np.isfinite(good))
    assert np.all(np.isnan(values))
    assert idx.min() >= 0 and idx.max() < 36


# Under torch.func.vmap a column of a batch is never contiguous: the table inverse's interp warns
# that torch.searchsorted copies it (a performance note of PyTorch's, once per process).
@pytest.mark.filterwarnings("ignore:torch.searchsorted\\(\\). input value tensor is non-contiguous:UserWarning")
@pytest.mark.parametrize("case", ["nan", "inf", "identical"])
def test_kernel_mesh_under_vmap_jit_and_dask_gives_nan(case: str) -> None:
    """``mappings_weights``, ``pixel_centres``, ``pixel_areas`` with ``transform="kernel"``."""
    if not any(_support.selected(name) for name in ("torch", "jax", "dask")):
        pytest.skip("runs in the torch, jax and dask sessions")
    if _support.selected("torch"):
        import torch

        def one(d: Any) -> tuple[Any, Any]:
            return _kernel_mesh_outputs(torch, d)

        batched = torch.func.vmap(one)
        data = torch.as_tensor(np.stack([KERNEL_MESH["good"], KERNEL_MESH[case]]))
        idx, values = (_support.to_numpy(a) for a in batched(data))
        _check_kernel_mesh(idx[1], values[1], values[0])
    if _support.selected("jax"):
        import jax
        import jax.numpy as jnp

        f = jax.jit(lambda d: _kernel_mesh_outputs(jnp, d))
        good = _support.to_numpy(f(jnp.asarray(KERNEL_MESH["good"]))[1])
        idx, values = (_support.to_numpy(a) for a in f(jnp.asarray(KERNEL_MESH[case])))
        _check_kernel_mesh(idx, values, good)
    if _support.selected("dask"):
        import array_api_compat.dask.array as xd
        import dask.array as da

        def lazy(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            i, v = _kernel_mesh_outputs(xd, da.from_array(d, chunks=(10, 2)))
            return np.asarray(i.compute()), np.asarray(v.compute())

        idx, values = lazy(KERNEL_MESH[case])
        _check_kernel_mesh(idx, values, lazy(KERNEL_MESH["good"])[1])


# ---------------------------------------------------------------------------
# torch.compile: an out-of-range index aborts the process, so it runs in a child process
# ---------------------------------------------------------------------------

_COMPILED = textwrap.dedent(
    """
    import numpy as np, torch, knotsafe

    def f(p, q):
        t, inv = knotsafe.create_transforms(p, method="kernel", kernel_std=0.3, span_ratio=100.0)
        return torch.cat([t(q), inv(q)], dim=1)

    g = torch.compile(f)
    rng = np.random.default_rng(0)
    p = torch.as_tensor(rng.uniform(size=(12, 2)))
    q = torch.as_tensor(rng.uniform(size=(5, 2)))
    good = g(p, q)
    assert torch.isfinite(good).all(), good
    for value in (float("nan"), float("inf")):
        bad = p.clone()
        bad[3, 0] = value
        out = g(bad, q)
        assert torch.isnan(out[:, 0::2]).all(), out
    print("compiled kernel transform: NaN for bad points")
    """
)


def test_kernel_under_torch_compile_with_bad_points_is_nan_and_does_not_abort() -> None:
    """The abort that was: ``terminate called ... index out of bounds`` (exit 134) from a compiled
    kernel transform of points containing a NaN.  Tiny sizes; compiling takes a minute."""
    _support.backend_module("torch")
    run = subprocess.run([sys.executable, "-c", _COMPILED], capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "NaN for bad points" in run.stdout
