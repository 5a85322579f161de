"""The `xp` fixture: every test runs once per installed backend.

``KNOTSAFE_TEST_BACKENDS`` (comma-separated) restricts the backends, so each
nox session runs the same suite on its own backend.  Markers
``skip_xp_backend(name, reason=...)`` and ``xfail_xp_backend(name, reason=...)``
adjust one backend.  JAX follows ``JAX_ENABLE_X64`` (read by JAX itself).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

import numpy as np
import pytest

from tests import _support

ALL_BACKENDS = ("numpy", "array_api_strict", "jax", "torch")
_MODULES = {"numpy": "numpy", "array_api_strict": "array_api_strict", "jax": "jax.numpy", "torch": "torch"}


def _selected() -> list[str]:
    wanted = os.environ.get("KNOTSAFE_TEST_BACKENDS")
    names = [n.strip() for n in wanted.split(",")] if wanted else list(ALL_BACKENDS)
    unknown = set(names) - set(ALL_BACKENDS)
    if unknown:
        raise pytest.UsageError(f"KNOTSAFE_TEST_BACKENDS names unknown backends: {sorted(unknown)}")
    missing = [n for n in names if importlib.util.find_spec(n) is None]
    if wanted and missing:
        raise pytest.UsageError(f"KNOTSAFE_TEST_BACKENDS asks for backends that are not installed: {missing}")
    return [n for n in names if n not in missing]


BACKENDS = _selected()


def pytest_report_header(config: pytest.Config) -> str:
    x64 = os.environ.get("JAX_ENABLE_X64", "0")
    return f"knotsafe backends: {', '.join(BACKENDS)} (JAX_ENABLE_X64={x64})"


@pytest.fixture(params=BACKENDS)
def xp(request: pytest.FixtureRequest) -> ModuleType:
    """The backend's namespace module (numpy, array_api_strict, jax.numpy, torch)."""
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
    return importlib.import_module(_MODULES[name])


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
