"""The `xp` fixture: every test runs once per installed backend.

``KNOTSAFE_TEST_BACKENDS`` (comma-separated) restricts the backends, so each
nox session runs the same suite on its own backend.  Markers
``skip_xp_backend(name, reason=...)`` and ``xfail_xp_backend(name, reason=...)``
adjust one backend.  JAX follows ``JAX_ENABLE_X64`` (read by JAX itself).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from types import ModuleType

import numpy as np
import pytest

from tests import _support, backend_table

ALL_BACKENDS = backend_table.NAMES
_MODULES = {b.name: b.namespace for b in backend_table.BACKENDS}
#: Dask arrays made by the tests are cut into chunks of this size, so that every
#: operation crosses chunk boundaries (1024 float64 or 2048 float32 per chunk; tests/test_scale_out.py cuts smaller).
DASK_CHUNK_SIZE = "8KiB"


def _selected() -> list[str]:
    wanted = os.environ.get("KNOTSAFE_TEST_BACKENDS")
    names = [n.strip() for n in wanted.split(",")] if wanted else list(ALL_BACKENDS)
    unknown = set(names) - set(ALL_BACKENDS)
    if unknown:
        raise pytest.UsageError(f"KNOTSAFE_TEST_BACKENDS names unknown backends: {sorted(unknown)}")
    missing = [n for n in names if not backend_table.installed(n)]
    if wanted and missing:
        raise pytest.UsageError(f"KNOTSAFE_TEST_BACKENDS asks for backends that are not installed: {missing}")
    return [n for n in names if n not in missing]


BACKENDS = _selected()


def pytest_report_header(config: pytest.Config) -> str:
    x64 = os.environ.get("JAX_ENABLE_X64", "0")
    return f"knotsafe backends: {', '.join(BACKENDS)} (JAX_ENABLE_X64={x64})"


@pytest.fixture(params=BACKENDS)
def xp(request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    """The backend's namespace module (numpy, array_api_strict, jax.numpy, torch,
    array_api_compat.dask.array).

    On dask, ``xp.asarray`` of NumPy data makes arrays of several small chunks
    (``DASK_CHUNK_SIZE``) so that operations on the larger test arrays cross chunk boundaries;
    ``tests/test_scale_out.py`` checks that knotsafe itself never computes.
    """
    name = request.param
    for marker in request.node.iter_markers("skip_xp_backend"):
        if marker.args[0] == name:
            pytest.skip(marker.kwargs.get("reason", f"skipped on {name}"))
    for marker in request.node.iter_markers("xfail_xp_backend"):
        if marker.args[0] == name:
            request.applymarker(pytest.mark.xfail(reason=marker.kwargs.get("reason", ""), strict=True))
    if name == "torch":
        import torch

        torch.set_default_dtype(torch.float32)
    module = importlib.import_module(_MODULES[name])
    if name == "dask":
        import dask

        with dask.config.set({"array.chunk-size": DASK_CHUNK_SIZE}):
            yield module
        return
    yield module


@pytest.fixture(params=["float64", "float32"])
def dtype_name(request: pytest.FixtureRequest, xp: ModuleType) -> str:
    """Floating dtype name; float64 is skipped on JAX without x64."""
    if request.param == "float64" and not _support.has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    return str(request.param)


@pytest.fixture
def autodiff(xp: ModuleType) -> _support.AutoDiff:
    """Gradient helpers for backends with autodiff; skips the others."""
    ad = _support.autodiff_for(xp)
    if ad is None:
        pytest.skip(f"{xp.__name__} has no autodiff")
    return ad


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
