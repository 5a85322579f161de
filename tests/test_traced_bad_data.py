"""Bad data that cannot be read (jax.jit, torch.func.vmap, torch.compile, lazy Dask) gives NaN, never a crash.

The kernel-density method and the kernel mesh turn every position into a
cell index; a NaN or infinite point, a NaN, zero, negative or infinite
bandwidth, identical points (zero spread) or a span beyond ``span_ratio``
make those positions NaN.  Under tracing nothing is checked, so the outputs
must be NaN (for the affected column, or all of them), and no index may
leave its array: ``floor(NaN)`` cast to an integer is an arbitrary index,
which PyTorch's compiled kernels answer by aborting the process, eager
PyTorch and Dask by an IndexError.  Each case is compared with the same
computation on good data (finite outputs) so a test that returns NaN for
everything cannot pass.
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

SPAN_RATIO = 100.0


def _points(seed: int = 0, n: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(n, 2))


def _bad_points() -> dict[str, np.ndarray]:
    """Point sets that concrete checks reject, keyed by what is wrong (column 0 only)."""
    cases = {}
    for name, value in (("nan", np.nan), ("inf", np.inf), ("-inf", -np.inf)):
        p = _points()
        p[3, 0] = value
        cases[name] = p
    p = _points()
    p[:, 0] = 0.25
    cases["identical"] = p
    p = _points()
    p[5, 0] = 1e3  # (max - min) / 0.3 > SPAN_RATIO
    cases["beyond_span_ratio"] = p
    return cases


BAD_POINTS = _bad_points()
BAD_BANDWIDTHS = {"nan": np.nan, "zero": 0.0, "negative": -0.3, "inf": np.inf}


def _queries() -> np.ndarray:
    return np.random.default_rng(1).uniform(size=(9, 2))


def _kernel_outputs(xp: Any, p: Any, h: Any, q: Any) -> Any:
    """Forward, exact inverse and table inverse stacked (K, 6)."""
    t, inv = knotsafe.create_transforms(p, method="kernel", bandwidth=h, span_ratio=SPAN_RATIO)
    _, inv_table = knotsafe.create_transforms(p, method="kernel", bandwidth=h, span_ratio=SPAN_RATIO, n_knots=8)
    return xp.concat([t(q), inv(q), inv_table(q)], axis=1)


def _check(out: np.ndarray, good: np.ndarray, all_bad: bool) -> None:
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
def _traced(name: str) -> tuple[Callable[..., Any], ModuleType]:
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
@pytest.mark.parametrize("case", sorted(BAD_POINTS))
def test_bad_points_under_jit_and_vmap_give_nan(backend: str, case: str) -> None:
    _support.backend_module(backend)
    f, ns = _traced(backend)
    dt = ns.float32 if backend == "jax" and not _support.has_float64(ns) else ns.float64
    q = ns.asarray(_queries(), dtype=dt)
    h = ns.asarray([0.3, 0.3], dtype=dt)
    good = _support.to_numpy(f(ns.asarray(_points(), dtype=dt), h, q))
    out = _support.to_numpy(f(ns.asarray(BAD_POINTS[case], dtype=dt), h, q))
    _check(out, good, all_bad=False)


@pytest.mark.parametrize("backend", ["jax", "torch"])
@pytest.mark.parametrize("case", sorted(BAD_BANDWIDTHS))
def test_bad_bandwidth_under_jit_and_vmap_gives_nan(backend: str, case: str) -> None:
    _support.backend_module(backend)
    f, ns = _traced(backend)
    dt = ns.float32 if backend == "jax" and not _support.has_float64(ns) else ns.float64
    q = ns.asarray(_queries(), dtype=dt)
    p = ns.asarray(_points(), dtype=dt)
    good = _support.to_numpy(f(p, ns.asarray([0.3, 0.3], dtype=dt), q))
    out = _support.to_numpy(f(p, ns.asarray([BAD_BANDWIDTHS[case], 0.3], dtype=dt), q))
    _check(out, good, all_bad=False)


@pytest.mark.parametrize("case", sorted(BAD_POINTS))
def test_bad_points_on_lazy_dask_give_nan(case: str) -> None:
    da = _support.backend_module("dask", "dask.array")
    xp = _support.backend_module("dask", "array_api_compat.dask.array")

    def run(p: np.ndarray, h: float) -> np.ndarray:
        lazy = da.from_array(p, chunks=(10, 2))
        q = da.from_array(_queries(), chunks=(3, 2))
        return np.asarray(_kernel_outputs(xp, lazy, h, q).compute())

    _check(run(BAD_POINTS[case], 0.3), run(_points(), 0.3), all_bad=False)


@pytest.mark.parametrize("h", [np.nan, 0.0, np.inf])
def test_bad_bandwidth_on_lazy_dask_gives_nan(h: float) -> None:
    da = _support.backend_module("dask", "dask.array")
    xp = _support.backend_module("dask", "array_api_compat.dask.array")

    def run(hh: float) -> np.ndarray:
        lazy = da.from_array(_points(), chunks=(10, 2))
        bw = da.from_array(np.array([hh, 0.3]), chunks=1)
        return np.asarray(_kernel_outputs(xp, lazy, bw, da.from_array(_queries(), chunks=(3, 2))).compute())

    _check(run(h), run(0.3), all_bad=False)


# ---------------------------------------------------------------------------
# the kernel mesh
# ---------------------------------------------------------------------------


def _mesh_data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    good = rng.uniform(size=(30, 2))
    cases = {"good": good}
    for name, value in (("nan", np.nan), ("inf", np.inf)):
        d = good.copy()
        d[2, 1] = value
        cases[name] = d
    cases["identical"] = np.full((30, 2), 0.5)
    return cases


MESH = _mesh_data()


def _mesh_outputs(xp: Any, d: Any) -> tuple[Any, Any]:
    """Mapping indices, and the weights, centres and areas concatenated."""
    idx, w = rectangular.mappings_weights(6, d, d, transform="kernel")
    centres = rectangular.pixel_centres(6, d, transform="kernel")
    areas = rectangular.pixel_areas(6, d, transform="kernel")
    return idx, xp.concat([xp.reshape(w, (-1,)), xp.reshape(centres, (-1,)), areas])


def _check_mesh(idx: np.ndarray, values: np.ndarray, good: np.ndarray) -> None:
    assert np.all(np.isfinite(good))
    assert np.all(np.isnan(values))
    assert idx.min() >= 0 and idx.max() < 36


# Under torch.func.vmap a column of a batch is never contiguous: the table inverse's interp warns
# that torch.searchsorted copies it (a performance note of PyTorch's, once per process).
@pytest.mark.filterwarnings("ignore:torch.searchsorted\\(\\). input value tensor is non-contiguous:UserWarning")
@pytest.mark.parametrize("case", ["nan", "inf", "identical"])
def test_kernel_mesh_under_vmap_jit_and_dask_gives_nan(case: str) -> None:
    """``mappings_weights``, ``pixel_centres``, ``pixel_areas`` with ``transform="kernel"``."""
    if _support.selected("torch"):
        import torch

        def one(d: Any) -> tuple[Any, Any]:
            return _mesh_outputs(torch, d)

        batched = torch.func.vmap(one)
        data = torch.as_tensor(np.stack([MESH["good"], MESH[case]]))
        idx, values = (_support.to_numpy(a) for a in batched(data))
        _check_mesh(idx[1], values[1], values[0])
    if _support.selected("jax"):
        import jax
        import jax.numpy as jnp

        f = jax.jit(lambda d: _mesh_outputs(jnp, d))
        good = _support.to_numpy(f(jnp.asarray(MESH["good"]))[1])
        idx, values = (_support.to_numpy(a) for a in f(jnp.asarray(MESH[case])))
        _check_mesh(idx, values, good)
    if _support.selected("dask"):
        import array_api_compat.dask.array as xd
        import dask.array as da

        def lazy(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            i, v = _mesh_outputs(xd, da.from_array(d, chunks=(10, 2)))
            return np.asarray(i.compute()), np.asarray(v.compute())

        idx, values = lazy(MESH[case])
        _check_mesh(idx, values, lazy(MESH["good"])[1])


# ---------------------------------------------------------------------------
# torch.compile: an out-of-range index aborts the process, so it runs in a child process
# ---------------------------------------------------------------------------

_COMPILED = textwrap.dedent(
    """
    import numpy as np, torch, knotsafe

    def f(p, q):
        t, inv = knotsafe.create_transforms(p, method="kernel", bandwidth=0.3, span_ratio=100.0)
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


def test_torch_compile_with_bad_points_gives_nan_and_does_not_abort() -> None:
    """The issue's abort: ``terminate called ... index out of bounds`` (exit 134) from a compiled
    kernel transform of points containing a NaN.  Tiny sizes; compiling takes a minute."""
    _support.backend_module("torch")
    run = subprocess.run([sys.executable, "-c", _COMPILED], capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "NaN for bad points" in run.stdout
