"""The mesh does not depend on the scale of either axis of the data, from 1e-300 to 1e300 per axis.

A rank mesh is invariant under a positive rescaling of one axis (a CDF of one axis does not see its units),
so the mappings and weights of scaled data are those of the unscaled data, and the node positions and cell
areas scale with the axes.  The reference is the unscaled mesh (ordinary data, which the PyAutoArray
transcriptions test) and the scaling itself.
"""

from __future__ import annotations

from types import ModuleType

import array_api_compat
import numpy as np
import pytest

from knotsafe import rectangular
from tests._support import asarray, backend_name, has_float64, to_numpy

N_MESH = 6


def _scales(dt: str) -> list[float]:
    # float32 spans 1e-38..3e38: its extremes stay one decade inside, as float64's do.
    return [1e-300, 1e-200, 1e-10, 1.0, 3e7, 1e200, 1e300] if dt == "float64" else [1e-30, 1e-5, 1.0, 1e5, 1e30]


def _data(dt: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.uniform(size=(20, 2)).astype(dt), rng.uniform(-0.1, 1.1, size=(50, 2)).astype(dt)


def _weight_bound(data: np.ndarray, over: np.ndarray, dt: str) -> float:
    """Scaled and unscaled normalised positions agree to a few ulp of their size (the mean and std are
    rounded at each scale); a rank transform turns a position error into a rank error of at most
    error / (N + 1) / smallest gap, index = (n - 3) u + 1 multiplies it by n - 3, a weight (a product of
    two coordinates in [0, 1]) by at most 2."""
    z = (data - data.mean(axis=0)) / data.std(axis=0).min()
    zq = (over - data.mean(axis=0)) / data.std(axis=0).min()
    gap = min(float(np.diff(np.sort(z[:, c])).min()) for c in range(2))
    size = max(float(np.abs(z).max()), float(np.abs(zq).max()))
    return 2 * (N_MESH - 3) * 8 * np.finfo(dt).eps * size / ((data.shape[0] + 1) * gap)


@pytest.mark.parametrize("dt", ["float64", "float32"])
def test_mappings_centres_and_areas_do_not_depend_on_an_axis_scale(xp: ModuleType, dt: str) -> None:
    if dt == "float64" and not has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    data, over = _data(dt)
    idx0, w0 = (to_numpy(a) for a in rectangular.mappings_weights(N_MESH, asarray(xp, data, dt), asarray(xp, over, dt)))
    centres0 = to_numpy(rectangular.pixel_centres(N_MESH, asarray(xp, data, dt))).astype(np.float64)
    areas0 = to_numpy(rectangular.pixel_areas(N_MESH, asarray(xp, data, dt))).astype(np.float64)
    bound = _weight_bound(data.astype(np.float64), over.astype(np.float64), dt)
    eps = float(np.finfo(dt).eps)
    scales = _scales(dt)
    if backend_name(xp) == "dask":
        scales = scales[::2]  # every Dask call builds and runs a graph: fewer pairs, the extremes kept
    for s0 in scales:
        for s1 in scales:
            s = np.array([s0, s1])
            sd, so = (data * s).astype(dt), (over * s).astype(dt)
            idx, w = (
                to_numpy(a) for a in rectangular.mappings_weights(N_MESH, asarray(xp, sd, dt), asarray(xp, so, dt))
            )
            np.testing.assert_array_equal(idx, idx0, err_msg=f"scales {s}")
            np.testing.assert_allclose(w, w0, rtol=0, atol=bound, err_msg=f"scales {s}")
            # The mappings of the data points themselves: queries equal to knots give the ranks exactly.
            _, wd = rectangular.mappings_weights(N_MESH, asarray(xp, sd, dt), asarray(xp, sd, dt))
            _, wd0 = rectangular.mappings_weights(N_MESH, asarray(xp, data, dt), asarray(xp, data, dt))
            np.testing.assert_allclose(to_numpy(wd), to_numpy(wd0), rtol=0, atol=bound, err_msg=f"scales {s}")
            centres = to_numpy(rectangular.pixel_centres(N_MESH, asarray(xp, sd, dt))).astype(np.float64)
            assert np.isfinite(centres).all()
            # Interpolated sorted points, scaled back: a few ulp of the axis's size.
            np.testing.assert_allclose(centres / s, centres0, rtol=0, atol=16 * eps, err_msg=f"scales {s}")
            with np.errstate(over="ignore"):  # areas of 1e300 x 1e200 are inf, the correctly rounded value
                areas = to_numpy(rectangular.pixel_areas(N_MESH, asarray(xp, sd, dt))).astype(np.float64)
            assert (areas >= 0).all()
            if 1e-280 < s0 * s1 < 1e280 if dt == "float64" else 1e-30 < s0 * s1 < 1e30:  # representable areas
                np.testing.assert_allclose(areas / (s0 * s1), areas0, rtol=0, atol=64 * eps, err_msg=f"{s}")


def test_the_issue_example_tiny_axis(xp: ModuleType) -> None:
    """One axis at 1e-200 and the same axis at 1e-10: identical mappings; finite areas and centres."""
    if not has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    d = np.random.default_rng(0).uniform(size=(20, 2))
    d[:, 1] *= 1e-200
    d2 = d.copy()
    d2[:, 1] *= 1e190
    a, b = (rectangular.mappings_weights(6, asarray(xp, g), asarray(xp, g)) for g in (d, d2))
    np.testing.assert_array_equal(to_numpy(a[0]), to_numpy(b[0]))
    np.testing.assert_array_equal(to_numpy(a[1]), to_numpy(b[1]))
    areas = to_numpy(rectangular.pixel_areas(6, asarray(xp, d)))
    centres = to_numpy(rectangular.pixel_centres(6, asarray(xp, d)))
    assert np.isfinite(areas).all() and np.isfinite(centres).all()
    # The cells tile the bounding box of the data.
    box = np.ptp(d, axis=0)
    np.testing.assert_allclose(areas.sum(), box[0] * box[1], rtol=1e-12)


def test_ordinary_data_normalisation_is_the_direct_formula(xp: ModuleType) -> None:
    """Axes of different sizes (1 and 37): one scale, the smaller population std, and the mean, bitwise
    those of the backend's own direct formula (so PyAutoArray's layout is kept)."""
    from knotsafe._lib import mesh
    from knotsafe._lib.backends.registry import hooks_for

    dt = "float64" if has_float64(xp) else "float32"
    d = np.random.default_rng(1).normal(size=(30, 2)) * np.array([1.0, 37.0]) + np.array([0.3, -5.0])
    data = asarray(xp, d, dt)
    ns = array_api_compat.array_namespace(data)
    mu, scale = mesh.normalisation(ns, hooks_for(ns), data)
    direct_mu = to_numpy(ns.mean(data, axis=0))
    direct_scale = float(to_numpy(ns.min(ns.std(data, axis=0, correction=0))))
    np.testing.assert_array_equal(to_numpy(mu), direct_mu)
    np.testing.assert_array_equal(to_numpy(scale), [direct_scale, direct_scale])


def test_values_beyond_a_quarter_of_the_largest_float_raise() -> None:
    """Where ``point - mean`` could overflow, a ValueError names the grid (concrete arrays)."""
    d = np.random.default_rng(0).uniform(size=(20, 2))
    big = d.copy()
    big[:, 0] *= 1e308
    with pytest.raises(ValueError, match=r"^`data_grid` has values beyond"):
        rectangular.mappings_weights(6, big, d)
    with pytest.raises(ValueError, match=r"^`data_grid_over_sampled` has values beyond"):
        rectangular.mappings_weights(6, d, big)
    with pytest.raises(ValueError, match=r"^`data_grid` has values beyond"):
        rectangular.pixel_areas(6, big)
    # 1e307 is inside: the mesh is the unscaled one.
    np.testing.assert_array_equal(
        rectangular.mappings_weights(6, d * [1e307, 1.0], d * [1e307, 1.0])[0], rectangular.mappings_weights(6, d, d)[0]
    )
