"""Edges of the public API that the mutation run (docs/mutation.md) found unobserved.

Each test pins one behaviour a survivor changed: the argument an error names,
``xp=`` with Python data, ``min_gap`` and ``knot_grad`` reaching both
transforms, the output dtype of the transforms, and the NumPy hooks'
scatter-add on every dtype it accepts.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

import knotsafe
from knotsafe import backends
from tests._support import AutoDiff, asarray, backend_module, has_float64, to_numpy


@pytest.mark.skip_xp_backend("dask", reason="data check: skipped on lazy dask arrays")
def test_weight_errors_name_the_keyword_the_caller_used(xp: ModuleType) -> None:
    dt = "float64" if has_float64(xp) else "float32"
    pts = asarray(xp, np.zeros((3, 2)), dt)
    with pytest.raises(ValueError, match=r"^`mesh_weight_map` must have shape \(3,\)"):
        knotsafe.create_transforms(pts, mesh_weight_map=asarray(xp, np.ones(4), dt))
    with pytest.raises(ValueError, match=r"^`weights` must have shape \(3,\)"):
        knotsafe.create_transforms(pts, asarray(xp, np.ones(4), dt))
    with pytest.raises(TypeError, match=r"^pass `weights` or its alias `mesh_weight_map`, not both$"):
        knotsafe.create_transforms(pts, asarray(xp, np.ones(3), dt), mesh_weight_map=asarray(xp, np.ones(3), dt))
    with pytest.raises(ValueError, match=r"^`points` has 1 row\(s\) with NaN or inf; the first is row 0$"):
        knotsafe.create_transforms(asarray(xp, np.array([[0.0, np.nan]]), dt))


def test_create_transforms_with_xp_accepts_python_data() -> None:
    """``xp=`` converts Python data, for the points and for the queries of both transforms."""
    tr, inv = knotsafe.create_transforms([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]], xp=np)
    np.testing.assert_array_equal(tr([[2.0, 3.0]]), [[0.5, 0.5]])
    np.testing.assert_array_equal(inv([[0.5, 0.5]]), [[2.0, 3.0]])


def test_min_gap_reaches_both_transforms(xp: ModuleType, autodiff: AutoDiff) -> None:
    """Points 1e-9 apart: a genuine bin by default (float64), a duplicate with min_gap=1e-8."""
    if not has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    pts = asarray(xp, np.array([[0.0], [1.0], [1.0 + 1e-9], [2.0]]))
    q = asarray(xp, np.array([[1.0 + 5e-10]]))
    u = asarray(xp, np.array([[0.5]]))  # between the ranks 2/5 and 3/5: the inverse's near-duplicate values

    def grads(**kw: object) -> tuple[float, float]:
        tr, inv = knotsafe.create_transforms(pts, **kw)
        (gq,) = autodiff.grad(tr, [q], (0,))
        (gu,) = autodiff.grad(inv, [u], (0,))
        return float(gq[0, 0]), float(gu[0, 0])

    gq, gu = grads()
    assert gq == pytest.approx(0.2 / 1e-9, rel=1e-6)  # rank step 1/5 over the gap
    assert gu == pytest.approx(1e-9 / 0.2, rel=1e-6)
    gq, gu = grads(min_gap=1e-8)
    assert gq == 0.0
    # The inverse's knots are the ranks (gap 0.2 > 1e-8): its slope is untouched.
    assert gu == pytest.approx(1e-9 / 0.2, rel=1e-6)
    _, inv = knotsafe.create_transforms(pts, min_gap=0.3)  # now the rank gaps are duplicates too
    (gu,) = autodiff.grad(inv, [u], (0,))
    assert float(gu[0, 0]) == 0.0


def test_knot_grad_stop_reaches_both_transforms(xp: ModuleType, autodiff: AutoDiff) -> None:
    """With knot_grad="stop" the knots get no gradient: the sorted points in transform, the ranks
    (and so the weights) in inv_transform."""
    dt = "float64" if has_float64(xp) else "float32"
    pts = asarray(xp, np.array([[0.0], [1.0], [3.0], [4.0]]), dt)
    w = asarray(xp, np.array([1.0, 2.0, 1.0, 1.0]), dt)
    q = asarray(xp, np.array([[0.5], [2.0]]), dt)
    u = asarray(xp, np.array([[0.3], [0.5]]), dt)
    for knot_grad, zero in (("exact", False), ("stop", True)):
        (gp,) = autodiff.grad(lambda p, kg=knot_grad: knotsafe.create_transforms(p, knot_grad=kg)[0](q), [pts], (0,))
        (gw,) = autodiff.grad(
            lambda ww, kg=knot_grad: knotsafe.create_transforms(pts, ww, knot_grad=kg)[1](u), [w], (0,)
        )
        assert np.all(gp == 0) == zero
        assert np.all(gw == 0) == zero


@pytest.mark.parametrize(
    ("points_dtype", "query_dtype", "expected"),
    [
        ("float32", "float64", "float64"),
        ("float64", "float32", "float64"),
        ("float32", "float32", "float32"),
        ("float32", "int64", "float32"),
    ],
)
def test_transform_output_dtype(points_dtype: str, query_dtype: str, expected: str) -> None:
    """Floating queries promote with the points' dtype; integer queries take the points' dtype."""
    tr, inv = knotsafe.create_transforms(np.arange(6, dtype=points_dtype).reshape(3, 2))
    q = np.array([[1, 2], [3, 4]], dtype=query_dtype)
    assert tr(q).dtype == np.dtype(expected)
    assert inv(q).dtype == np.dtype(expected)


def test_numpy_hooks() -> None:
    """The built-in NumPy hooks: named numpy, numpy.interp as the forward, a scatter-add that keeps the
    dtype and accumulates repeated indices for float and integer sources."""
    import array_api_compat.numpy as cnp

    hooks = backends.hooks_for(cnp)
    assert hooks.name == "numpy"
    assert hooks.forward is not None and hooks.scatter_add is not backends.generic_scatter_add
    index = np.array([0, 0, 1, 0, 3, 3])
    for dtype in ("float64", "float32", "int64", "int32"):
        src = np.arange(1, 7).astype(dtype)
        out = hooks.scatter_add(cnp, 5, index, src)
        assert out.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(out, np.array([7, 3, 0, 11, 0], dtype=dtype))


def test_numpy_forward_is_numpy_interp_bitwise() -> None:
    """On NumPy float64 the forward is numpy.interp's, bit for bit, also where knotsafe's own
    arithmetic would round differently (a value computed from the other end of the bin)."""
    rng = np.random.default_rng(0)
    k = np.sort(rng.normal(size=50))
    v = rng.normal(size=50) * 1e8
    x = rng.normal(size=1000)
    np.testing.assert_array_equal(knotsafe.interp(x, k, v), np.interp(x, k, v))
    assert to_numpy(knotsafe.interp(x, k, v)).dtype == np.float64


def test_torch_forward_ad_dual_numbers() -> None:
    """torch.autograd.forward_ad (not torch.func): tangents on x, on knots only, and on all three
    inputs reach the output as the contract's partials times the tangents."""
    torch = backend_module("torch")
    import torch.autograd.forward_ad as fwad

    k = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    v = torch.tensor([0.0, 2.0, 10.0], dtype=torch.float64)
    x = torch.tensor([0.5, 2.0, 4.0], dtype=torch.float64)
    ones_x, ones_k, ones_v = (
        torch.ones(3, dtype=torch.float64),
        torch.ones(3, dtype=torch.float64),
        torch.ones(3, dtype=torch.float64),
    )
    # Contract: slopes 2 and 4; w = 1/2 in both bins; 4.0 is above the range (constant).
    d_x = [2.0, 4.0, 0.0]
    d_knots = [-2.0 * 0.5 - 2.0 * 0.5, -4.0 * 0.5 - 4.0 * 0.5, 0.0]  # tangent 1 on every knot: -(slope)
    d_values = [1.0, 1.0, 1.0]  # the weights sum to 1; above the range the last value has weight 1
    with fwad.dual_level():
        out = knotsafe.interp(fwad.make_dual(x, ones_x), k, v)
        np.testing.assert_array_equal(fwad.unpack_dual(out).tangent.numpy(), d_x)
        out = knotsafe.interp(x, fwad.make_dual(k, ones_k), v)
        np.testing.assert_array_equal(fwad.unpack_dual(out).tangent.numpy(), d_knots)
        out = knotsafe.interp(fwad.make_dual(x, ones_x), fwad.make_dual(k, ones_k), fwad.make_dual(v, ones_v))
        expected = np.array(d_x) + np.array(d_knots) + np.array(d_values)
        np.testing.assert_array_equal(fwad.unpack_dual(out).tangent.numpy(), expected)
        # A query inside a near-duplicate bin (4 ulp): the contract's zero slope, not the ~1e15 of
        # differentiating numpy's arithmetic (what plain forward-mode through the values would give).
        near = float(np.nextafter(np.nextafter(np.nextafter(np.nextafter(1.0, 2), 2), 2), 2))
        kd = torch.tensor([0.0, 1.0, near, 3.0], dtype=torch.float64)
        vd = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
        xd = torch.tensor([float(np.nextafter(np.nextafter(1.0, 2), 2))], dtype=torch.float64)
        for args in (
            (fwad.make_dual(xd, torch.ones(1, dtype=torch.float64)), kd, vd),
            (xd, fwad.make_dual(kd, torch.ones(4, dtype=torch.float64)), vd),
            (
                fwad.make_dual(xd, torch.ones(1, dtype=torch.float64)),
                fwad.make_dual(kd, torch.ones(4, dtype=torch.float64)),
                fwad.make_dual(vd, torch.zeros(4, dtype=torch.float64)),
            ),
        ):
            np.testing.assert_array_equal(fwad.unpack_dual(knotsafe.interp(*args)).tangent.numpy(), [0.0])


def test_torch_hooks() -> None:
    """The built-in PyTorch hooks: named torch, with the native autograd.Function and scatter-add."""
    backend_module("torch")
    import array_api_compat.torch as ctorch

    hooks = backends.hooks_for(ctorch)
    assert hooks.name == "torch" and hooks.differentiable
    assert hooks.linearize is not backends.generic_linearize
    assert hooks.scatter_add is not backends.generic_scatter_add
    assert hooks.take is not backends.generic_take
