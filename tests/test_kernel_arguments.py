"""Arguments of the kernel-density method: junk and out-of-range values raise, naming the argument.

``bandwidth`` must be a real number or an array (not a string, not a bool);
``span_ratio`` positive and finite, large enough for the data (concrete data
are checked; under tracing a column beyond it gives NaN,
``tests/test_traced_bad_data.py``), small enough for the node grid; a
bandwidth so large that ``F(max) - F(min) ~ 0.4 (max - min) / bandwidth``
leaves the normal floating-point range raises rather than giving NaN or a
wrong number, and so does a column whose range overflows.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

import knotsafe
from knotsafe import rectangular
from tests import _support

pytestmark = pytest.mark.skip_xp_backend("dask", reason="lazy data are not checked: tests/test_traced_bad_data.py")


def _points(xp: ModuleType, dtype_name: str = "float64") -> object:
    return _support.asarray(xp, np.array([[0.0, 1.0], [1.0, 3.0], [0.5, 2.0]]), dtype_name)


@pytest.mark.parametrize("bandwidth", ["0.1", b"0.1", True, False, np.True_, [True, 0.1], ["0.1", 0.1], object()])
def test_bandwidth_that_is_not_a_number_raises(xp: ModuleType, bandwidth: object) -> None:
    with pytest.raises(TypeError, match="`bandwidth`"):
        knotsafe.create_transforms(_points(xp), method="kernel", bandwidth=bandwidth)


def test_bandwidth_numbers_and_lists_are_accepted(xp: ModuleType) -> None:
    for bandwidth in (1, 0.5, np.float32(0.5), [0.5, 1], (0.5, 1.0)):
        t, _ = knotsafe.create_transforms(_points(xp), method="kernel", bandwidth=bandwidth)
        assert np.all(np.isfinite(_support.to_numpy(t(_points(xp)))))


@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_too_small_span_ratio_on_concrete_data_raises(xp: ModuleType, dtype_name: str) -> None:
    """The issue's case: span / h = 100 > span_ratio = 10 (it gave NaN)."""
    if dtype_name == "float64" and not _support.has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    p = _support.asarray(xp, np.array([[0.0], [1.0]]), dtype_name)
    with pytest.raises(ValueError, match="`span_ratio`"):
        knotsafe.create_transforms(p, method="kernel", bandwidth=0.01, span_ratio=10.0)
    # Just enough: accepted, and the outputs are numbers.
    t, _ = knotsafe.create_transforms(p, method="kernel", bandwidth=0.01, span_ratio=100.0)
    assert np.all(np.isfinite(_support.to_numpy(t(p))))


@pytest.mark.parametrize("span_ratio", [float("inf"), 1e300, 3e6, True])
def test_span_ratio_out_of_range_names_span_ratio(xp: ModuleType, span_ratio: object) -> None:
    """inf (message without `span_ratio` before), too large for the node grid (blamed `bandwidth`), a bool."""
    with pytest.raises((TypeError, ValueError)) as info:
        knotsafe.create_transforms(_points(xp), method="kernel", bandwidth=0.1, span_ratio=span_ratio)
    assert "`span_ratio`" in str(info.value)
    assert "`bandwidth`" not in str(info.value)


@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_bandwidth_too_large_for_the_data_raises(xp: ModuleType, dtype_name: str) -> None:
    """span / h below smallest_normal / eps: F(max) - F(min) would be subnormal or zero (NaN
    outputs before); just above it the outputs are right (test_kernel_density_accuracy.py)."""
    if dtype_name == "float64" and not _support.has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    info = np.finfo(dtype_name)
    smallest = float(info.smallest_normal) / float(info.eps)
    for h in (2.0 / (smallest / 2), float(info.max)):  # span 2 in column 1
        with pytest.raises(ValueError, match="`bandwidth` is too large"):
            knotsafe.create_transforms(_points(xp, dtype_name), method="kernel", bandwidth=h)


def test_overflowing_column_range_raises(xp: ModuleType) -> None:
    """Finite points whose max - min overflows: named `points` (it was blamed on `bandwidth`)."""
    if not _support.has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    p = _support.asarray(xp, np.array([[-1e308, 0.0], [1e308, 1.0]]))
    with pytest.raises(ValueError, match="`points` has a column whose range"):
        knotsafe.create_transforms(p, method="kernel", bandwidth=1.0)


def test_mesh_bandwidth_is_checked(xp: ModuleType) -> None:
    data = _support.asarray(xp, np.random.default_rng(0).uniform(size=(20, 2)))
    for bad in ("1", True, None):
        with pytest.raises(TypeError, match="`bandwidth`"):
            rectangular.mappings_weights(6, data, data, transform="kernel", bandwidth=bad)
    for bad in (0.0, -1.0, float("inf"), float("nan"), 1e31):
        with pytest.raises(ValueError, match="`bandwidth`"):
            rectangular.mappings_weights(6, data, data, transform="kernel", bandwidth=bad)
    _, w = rectangular.mappings_weights(6, data, data, transform="kernel", bandwidth=1e30)
    assert np.all(np.isfinite(_support.to_numpy(w)))
