"""Junk arguments raise an exception naming the argument, before any computation.

Strings and booleans are not numbers (``float("1")`` and ``float(True)`` would take them), for ``interp``'s
numbers and the kernel method's ``kernel_std``; a single NaN knot is a NaN knot; PyTorch's sparse and nested
tensors are not arrays knotsafe can compute on.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import pytest

import knotsafe
from knotsafe import rectangular
from tests._support import asarray, backend_module, has_float64, to_numpy

JUNK = ["1", b"1", True, False, np.True_, np.array(True)]


def _args(xp: ModuleType) -> list[Any]:
    dt = "float64" if has_float64(xp) else "float32"
    return [asarray(xp, a, dt) for a in ([0.5, 2.0], [0.0, 1.0], [0.0, 1.0])]


@pytest.mark.parametrize("junk", JUNK, ids=repr)
@pytest.mark.parametrize("name", ["left", "right", "period", "min_gap"])
def test_strings_and_booleans_are_not_numbers(xp: ModuleType, name: str, junk: object) -> None:
    with pytest.raises(TypeError, match=rf"^`{name}` must be a"):
        knotsafe.interp(*_args(xp), **{name: junk})


@pytest.mark.parametrize("name", ["left", "right"])
def test_strings_and_booleans_are_not_numbers_with_complex_values(name: str) -> None:
    x, k = np.array([0.5, 2.0]), np.array([0.0, 1.0])
    for junk in JUNK:
        with pytest.raises(TypeError, match=rf"^`{name}` must be a number"):
            knotsafe.interp(x, k, np.array([1j, 2.0]), **{name: junk})


def test_numbers_still_pass(xp: ModuleType) -> None:
    """The control: ints, floats, NumPy scalars and 0-d float arrays are numbers."""
    x, k, v = _args(xp)
    for left in (-1, -1.0, np.float32(-1.0), np.array(-1.0)):
        out = knotsafe.interp(x, k, v, left=left, right=5, period=None, min_gap=np.float64(0.0))
        np.testing.assert_array_equal(np.asarray(out), [0.5, 5.0])
    np.testing.assert_array_equal(np.asarray(knotsafe.interp(x, k, v, period=2)), [0.5, 0.0])


def test_a_single_nan_knot_raises(xp: ModuleType) -> None:
    """The docs: NaN knots raise.  A single knot had no order to check and slipped through."""
    if xp.__name__.startswith("array_api_compat.dask"):
        pytest.skip("Dask arrays cannot be read: tests/test_unreadable_data_gives_nan.py")
    dt = "float64" if has_float64(xp) else "float32"
    with pytest.raises(ValueError, match=r"^`knots` must be non-decreasing and free of NaN$"):
        knotsafe.interp(*(asarray(xp, a, dt) for a in ([0.5], [np.nan], [1.0])))
    np.testing.assert_array_equal(
        np.asarray(knotsafe.interp(*(asarray(xp, a, dt) for a in ([0.5], [2.0], [1.0])))), [1.0]
    )


def _kernel_points(xp: ModuleType) -> Any:
    return asarray(xp, [[0.0, 1.0], [1.0, 3.0], [0.5, 2.0]], "float64" if has_float64(xp) else "float32")


@pytest.mark.parametrize("bandwidth", ["0.1", b"0.1", True, False, np.True_, [True, 0.1], ["0.1", 0.1], object()])
def test_kernel_std_that_is_not_a_number_raises(xp: ModuleType, bandwidth: object) -> None:
    with pytest.raises(TypeError, match="`kernel_std`"):
        knotsafe.create_transforms(_kernel_points(xp), method="kernel", kernel_std=bandwidth)


def test_kernel_std_numbers_and_lists_are_accepted(xp: ModuleType) -> None:
    # Lazy Dask points size the node grid from a static span_ratio (here span / h <= 4).
    lazy = {"span_ratio": 10.0} if xp.__name__.startswith("array_api_compat.dask") else {}
    for bandwidth in (1, 0.5, np.float32(0.5), [0.5, 1], (0.5, 1.0)):
        t, _ = knotsafe.create_transforms(_kernel_points(xp), method="kernel", kernel_std=bandwidth, **lazy)
        assert np.all(np.isfinite(to_numpy(t(_kernel_points(xp)))))


def _layouts() -> list[tuple[str, Any]]:
    torch = backend_module("torch")
    return [
        ("sparse_coo", lambda t: t.to_sparse()),
        ("sparse_csr", lambda t: t[None].to_sparse_csr()),
        ("nested", lambda t: torch.nested.nested_tensor([t, t[:1]])),
    ]


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype stage:UserWarning")
@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state:UserWarning")
def test_sparse_and_nested_tensors_are_a_type_error_naming_the_argument() -> None:
    torch = backend_module("torch")
    dense = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    points = torch.rand(10, 2, dtype=torch.float64)
    for layout, make in _layouts():
        message = "nested tensor" if layout == "nested" else "layout torch.sparse"
        for name in ("x", "knots", "values"):
            args = {"x": dense, "knots": dense, "values": dense}
            args[name] = make(dense)
            with pytest.raises(TypeError, match=rf"^`{name}` is a {'' if layout == 'nested' else 'tensor of '}"):
                knotsafe.interp(args["x"], args["knots"], args["values"])
            with pytest.raises(TypeError, match=message):
                knotsafe.interp(args["x"], args["knots"], args["values"])
        with pytest.raises(TypeError, match=r"^`points` is a"):
            knotsafe.create_transforms(make(points[:, 0])[..., None] if layout == "nested" else make(points))
        transform, _ = knotsafe.create_transforms(points)
        with pytest.raises(TypeError, match=r"^`q` is a"):
            transform(make(points) if layout != "nested" else torch.nested.nested_tensor([points, points[:3]]))
        with pytest.raises(TypeError, match=r"^`data_grid` is a"):
            rectangular.pixel_areas(6, make(points) if layout != "nested" else torch.nested.nested_tensor([points]))


def test_sparse_tensors_under_torch_compile_raise_too() -> None:
    """The layout check reads no data, so it runs inside torch.compile as well."""
    torch = backend_module("torch")
    knots = torch.tensor([0.0, 1.0], dtype=torch.float64)
    f = torch.compile(lambda x: knotsafe.interp(x, knots, knots), backend="eager")
    with pytest.raises(Exception, match=r"`x` is a tensor of layout torch\.sparse_coo"):
        f(torch.tensor([0.5], dtype=torch.float64).to_sparse())
    assert f(torch.tensor([0.5], dtype=torch.float64)).tolist() == [0.5]
