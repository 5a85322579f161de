"""The kernel-density transform's derivative at its clamped ends is the right-hand one, on every backend.

``u(q)`` is 0 below a column's smallest point, 1 from its largest on, and
the kernel CDF between: it has a kink at both ends.  Autodiff returns the
right-hand derivative there (as the rank method and ``knotsafe.interp`` do):
at ``q = min`` that of the kernel CDF, at ``q = max`` that of the constant 1,
zero.  (With ``clip`` JAX split the tied gradient in half and PyTorch passed
it whole: a factor of 2 between backends, in the mesh's weight Jacobians
too whenever the over-sampled grid contains the data points.)

References: one-sided differences of the exact kernel sum
(``tests.test_kernel_density_accuracy.exact_u``) and of the NumPy
transcription of PyAutoArray's kernel mesh (``tests.pyautoarray_kernel``).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import pytest

import knotsafe
from knotsafe import rectangular
from tests import _support
from tests import pyautoarray_kernel as ref
from tests.test_kernel_density_accuracy import exact_u

pytestmark = pytest.mark.skip_xp_backend("dask", reason="no autodiff")

H = 0.5
#: One-sided difference step (relative to the span) and its truncation error: O(step) of u''.
STEP = 1e-7
RTOL = 1e-5


def _need_float64(xp: ModuleType) -> None:
    if not _support.has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")


def _points() -> np.ndarray:
    """The issue's column [0, 0.4, 1] and a second column of other data."""
    return np.array([[0.0, 2.0], [0.4, -1.0], [1.0, 0.5], [0.7, 3.0]])


def _right_difference(f: Any, x: np.ndarray, step: np.ndarray) -> np.ndarray:
    return (f(x + step) - f(x)) / step


def test_transform_at_the_column_ends(autodiff: _support.AutoDiff, xp: ModuleType) -> None:
    """d u / d q at q = min and q = max of each column: the right-hand difference (0 at max)."""
    _need_float64(xp)
    p = _points()
    lo, hi = p.min(axis=0), p.max(axis=0)
    q = np.stack([lo, hi])
    t, _ = knotsafe.create_transforms(xp.asarray(p), method="kernel", bandwidth=H)
    (g,) = autodiff.grad(t, [xp.asarray(q)], [0])
    step = STEP * (hi - lo)
    expected = _right_difference(lambda x: exact_u(p, None, np.array([H, H]), x), q, step)
    np.testing.assert_allclose(g[0], expected[0], rtol=RTOL)
    assert np.all(g[0] > 0)
    assert np.all(g[1] == 0.0) and np.all(expected[1] == 0.0)


def test_issue_values_agree_between_jax_and_torch() -> None:
    """The issue's case: 0.913 (the right-hand difference) at the minimum on both, 0 at the maximum."""
    grads = {}
    p = np.array([[0.0], [0.4], [1.0]])
    for name in ("jax", "torch"):
        if not _support.selected(name):
            continue
        ad = _support.AUTODIFF[name]
        ns = _support.backend_module(name, "jax.numpy" if name == "jax" else "torch")
        if name == "jax" and not _support.has_float64(ns):
            continue
        t, _ = knotsafe.create_transforms(ns.asarray(p), method="kernel", bandwidth=H)
        grads[name] = [ad.grad(t, [ns.asarray([[x]])], [0])[0].item() for x in (0.0, 1.0)]
    if not grads:
        pytest.skip("needs JAX (x64) or PyTorch")
    step = STEP
    at_min = exact_u(p, None, np.array([H]), np.array([[step]])) - exact_u(p, None, np.array([H]), np.array([[0.0]]))
    for g in grads.values():
        assert g[0] == pytest.approx(at_min.item() / step, rel=RTOL)
        assert g[0] == pytest.approx(0.913, abs=1e-3)
        assert g[1] == 0.0


def test_inverse_at_zero_and_one(autodiff: _support.AutoDiff, xp: ModuleType) -> None:
    """d x / d v at v = 0 is 1 / u'(min) (the right-hand one), at v = 1 it is 0 (x stays at max)."""
    _need_float64(xp)
    p = _points()
    lo, hi = p.min(axis=0), p.max(axis=0)
    _, inv = knotsafe.create_transforms(xp.asarray(p), method="kernel", bandwidth=H)
    (g,) = autodiff.grad(inv, [xp.asarray(np.array([[0.0, 0.0], [1.0, 1.0]]))], [0])
    step = STEP * (hi - lo)
    slope_at_min = _right_difference(lambda x: exact_u(p, None, np.array([H, H]), x), lo[None, :], step)[0]
    np.testing.assert_allclose(g[0], 1.0 / slope_at_min, rtol=RTOL)
    assert np.all(g[1] == 0.0)


def test_mesh_weights_at_sub_size_one(autodiff: _support.AutoDiff, xp: ModuleType) -> None:
    """Sub-size 1: the over-sampled grid is the data grid, so it contains the column minima and
    maxima.  d weights / d over at those points is the right-hand difference of PyAutoArray's
    kernel mesh (transcribed in NumPy), hence the same on every backend."""
    _need_float64(xp)
    rng = np.random.default_rng(4)
    data = rng.uniform(-1.0, 1.0, (25, 2))
    n = 6
    c = rng.normal(size=(25, 4))
    ends = [int(f(data[:, axis])) for axis in (0, 1) for f in (np.argmin, np.argmax)]

    def objective(over: Any) -> Any:
        _, w = rectangular.mappings_weights(n, xp.asarray(data), over, transform="kernel")
        return xp.sum(w * xp.asarray(c), axis=1)

    (g,) = autodiff.grad(objective, [xp.asarray(data)], [0])
    span = data.max(axis=0) - data.min(axis=0)
    for row, axis in zip(ends, [0, 0, 1, 1], strict=True):
        step = STEP * span[axis]

        def at(shift: float, row: int = row, axis: int = axis) -> float:
            over = data.copy()
            over[row, axis] += shift
            _, w = ref.mappings_weights(n, data, over)
            return float(np.sum(w[row] * c[row]))

        expected = (at(step) - at(0.0)) / step
        assert g[row, axis] == pytest.approx(expected, rel=RTOL, abs=1e-9)
