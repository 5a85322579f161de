"""rectangular.* with transform="kernel": parity with a NumPy transcription of PyAutoArray's kernel mesh."""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from knotsafe import rectangular
from knotsafe.testing import circular_mask_grid, lens_grid, trace_sis
from tests import _support
from tests import pyautoarray_kernel as ref

N_MESH = 10
RADIUS, PIXEL_SCALE = 1.5, 0.1
THETA = 1.2
# u within 1e-12 of the exact sum (test_kernel_cdf); index = (n - 3) u + 1 and each
# bilinear weight is a product of two t's, so weights move by <= 2 (n - 3) 1e-12.
W_TOL = 2 * (N_MESH - 3) * 1e-12


def _need_float64(xp: ModuleType) -> None:
    if not _support.has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")


@functools.cache
def _grids(rotation: float, sub: int) -> tuple[np.ndarray, np.ndarray]:
    return lens_grid(radius=RADIUS, pixel_scale=PIXEL_SCALE, sub_size=sub, einstein_radius=1.6, rotation=rotation)


def _dense(idx: np.ndarray, w: np.ndarray, n: int) -> np.ndarray:
    """(K, n * n) mapping matrix: robust to the two equivalent brackets at integer index."""
    m = np.zeros((idx.shape[0], n * n))
    np.add.at(m, (np.repeat(np.arange(idx.shape[0]), 4), idx.ravel()), w.ravel())
    return m


@pytest.mark.parametrize(("rotation", "sub", "bandwidth"), [(0.0, 1, 1.0), (0.3, 2, 1.0), (0.3, 2, 0.5)])
@pytest.mark.parametrize("weighted", [False, True])
def test_mappings_match_pyautoarray_kernel(
    xp: ModuleType, rotation: float, sub: int, bandwidth: float, weighted: bool
) -> None:
    _need_float64(xp)
    data, over = _grids(rotation, sub)
    wmap = np.random.default_rng(2).uniform(0.1, 2.0, data.shape[0]) if weighted else None
    r_idx, r_w = ref.mappings_weights(N_MESH, data, over, wmap, bandwidth)
    idx, w = rectangular.mappings_weights(
        N_MESH,
        xp.asarray(data),
        xp.asarray(over),
        None if wmap is None else xp.asarray(wmap),
        transform="kernel",
        bandwidth=bandwidth,
    )
    idx, w = _support.to_numpy(idx), _support.to_numpy(w)
    assert (idx == r_idx).all(axis=1).mean() > 0.99
    np.testing.assert_allclose(_dense(idx, w, N_MESH), _dense(r_idx, r_w, N_MESH), rtol=0, atol=W_TOL)


@pytest.mark.parametrize("weighted", [False, True])
def test_centres_and_areas_match_pyautoarray_kernel(xp: ModuleType, weighted: bool) -> None:
    _need_float64(xp)
    data, _ = _grids(0.3, 1)
    wmap = np.random.default_rng(3).uniform(0.1, 2.0, data.shape[0]) if weighted else None
    args = (N_MESH, xp.asarray(data), None if wmap is None else xp.asarray(wmap))
    centres = _support.to_numpy(rectangular.pixel_centres(*args, transform="kernel"))
    areas = _support.to_numpy(rectangular.pixel_areas(*args, transform="kernel"))
    span = float(np.ptp(data, axis=0).max())
    # 64 knot values within 1e-12 of exact; the table's slope (span / knot gap in u)
    # is below 1e3 here, so positions move by < 1e-9 of the span.
    np.testing.assert_allclose(centres, ref.pixel_centres(N_MESH, data, wmap), rtol=0, atol=1e-9 * span)
    np.testing.assert_allclose(areas, ref.pixel_areas(N_MESH, data, wmap), rtol=0, atol=1e-9 * span**2)
    bbox = np.ptp(data[:, 0]) * np.ptp(data[:, 1])
    assert areas.sum() == pytest.approx(bbox, rel=1e-12)
    # differs from the rank mesh (the two transforms are not interchangeable)
    assert not np.allclose(centres, _support.to_numpy(rectangular.pixel_centres(*args)))


def _objective(xp: ModuleType, theta: Any, sub: int, transform: str) -> Any:
    img_d = circular_mask_grid(RADIUS, PIXEL_SCALE, 1)
    img_o = circular_mask_grid(RADIUS, PIXEL_SCALE, sub)
    data = trace_sis(xp.asarray(img_d), theta, rotation=0.3, xp=xp)
    over = trace_sis(xp.asarray(img_o), theta, rotation=0.3, xp=xp)
    idx, w = rectangular.mappings_weights(N_MESH, data, over, xp=xp, transform=transform)
    m = rectangular.mapping_matrix(idx, w, N_MESH * N_MESH, xp=xp)
    s = np.random.default_rng(7).normal(size=N_MESH * N_MESH)
    return xp.sum((m @ xp.asarray(s)) ** 2)


@pytest.mark.parametrize("sub", [1, 4])
def test_kernel_mesh_gradient_matches_central_difference(autodiff: _support.AutoDiff, xp: ModuleType, sub: int) -> None:
    """d objective / d theta at over-sampling 1 and 4: non-zero, equal to a central difference."""
    _need_float64(xp)
    (g,) = autodiff.grad(lambda t: _objective(xp, t, sub, "kernel"), [xp.asarray(THETA, dtype=xp.float64)], [0])
    step = 1e-7
    plus = float(_objective(np, np.float64(THETA + step), sub, "kernel"))
    minus = float(_objective(np, np.float64(THETA - step), sub, "kernel"))
    fd = (plus - minus) / (2 * step)
    assert abs(float(g)) > 0
    # rounding of the objective (~1e-16 * value / step) and O(step^2) truncation
    assert float(g) == pytest.approx(fd, rel=1e-5)
    if sub == 1:
        (g_rank,) = autodiff.grad(lambda t: _objective(xp, t, sub, "rank"), [xp.asarray(THETA, dtype=xp.float64)], [0])
        # The rank CDF is piecewise constant at over-sampling 1: its derivative is
        # zero, computed as a cancellation of query and knot partials (O(1) terms)
        # that leaves rounding, ~1e-11 here; the kernel one is O(1).
        assert abs(float(g_rank)) <= 1e-8 * abs(float(g))


def test_jax_jit_kernel_mesh(xp: ModuleType) -> None:
    if _support.backend_name(xp) != "jax":
        pytest.skip("jax.jit only")
    _need_float64(xp)
    import jax

    data, over = _grids(0.3, 2)
    d, o = xp.asarray(data), xp.asarray(over)

    def build(d: Any, o: Any) -> tuple[Any, Any]:
        return rectangular.mappings_weights(N_MESH, d, o, transform="kernel")

    (i1, w1), (i2, w2) = jax.jit(build)(d, o), build(d, o)
    np.testing.assert_allclose(
        _dense(np.asarray(i1), np.asarray(w1), N_MESH), _dense(np.asarray(i2), np.asarray(w2), N_MESH), atol=W_TOL
    )
    c = jax.jit(lambda d: rectangular.pixel_centres(N_MESH, d, transform="kernel"))(d)
    np.testing.assert_allclose(np.asarray(c), ref.pixel_centres(N_MESH, data), rtol=0, atol=1e-9 * float(np.ptp(data)))


def test_kernel_mesh_bad_arguments(xp: ModuleType) -> None:
    data, over = _grids(0.0, 1)
    d, o = xp.asarray(data), xp.asarray(over)
    with pytest.raises(ValueError, match="transform"):
        rectangular.mappings_weights(N_MESH, d, o, transform="gauss")
    with pytest.raises(ValueError, match="bandwidth"):
        rectangular.mappings_weights(N_MESH, d, o, transform="kernel", bandwidth=0.0)
    with pytest.raises(TypeError, match="bandwidth"):
        rectangular.mappings_weights(N_MESH, d, o, transform="kernel", bandwidth="1")
    with pytest.raises(TypeError, match="transform='kernel'"):
        rectangular.pixel_centres(N_MESH, d, bandwidth=2.0)
    with pytest.raises(ValueError, match="n_knots"):
        rectangular.pixel_areas(N_MESH, d, transform="kernel", n_knots=1)
