"""knotsafe.autoarray without autolens: PyAutoArray's conventions, and patching a stand-in module.

References are independent of the code under test: ``numpy.interp`` on
ranks written out here, an exact kernel sum (``tests/pyautoarray_kernel.py``),
a NumPy transcription of autoarray's rank mesh, and central differences.
"""

from __future__ import annotations

import functools
import inspect
import sys
import types
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np
import pytest

import knotsafe.autoarray as ka
from knotsafe.testing import lens_grid
from tests import _support
from tests import pyautoarray_kernel as ref

N_MESH = 10


def _need_float64(xp: ModuleType) -> None:
    if not _support.has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")


@functools.cache
def _grids(rotation: float, sub: int) -> tuple[np.ndarray, np.ndarray]:
    """SIS-traced grids; rotation 0 makes them mirror-symmetric (exact duplicate coordinates)."""
    return lens_grid(radius=1.0, pixel_scale=0.1, sub_size=sub, einstein_radius=0.8, rotation=rotation)


def _points(seed: int = 0, n: int = 120) -> np.ndarray:
    """Points with runs of ties in both columns (rounded) and untied ones."""
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, 2))
    pts[: n // 2] = np.round(pts[: n // 2], 1)
    return pts


def _weights(n: int, seed: int = 1) -> np.ndarray:
    w = np.random.default_rng(seed).uniform(0.1, 2.0, n)
    return w / w.sum()


def _ranks_reference(col: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """autoarray's CDF values, written out: (1..N)/(N+1), or cumulative weights, ties right-continuous."""
    n = col.size
    knots = np.sort(col)
    if w is None:
        return knots, np.arange(1, n + 1) / (n + 1)
    order = np.argsort(col, kind="stable")
    cum = np.cumsum(w[order])
    last = np.searchsorted(knots, knots, side="right") - 1
    return knots, cum[last]


# --------------------------------------------------------------------------
# create_transforms_rank
# --------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
def test_rank_transform_is_numpy_interp_on_autoarrays_ranks(xp: ModuleType, weighted: bool) -> None:
    _need_float64(xp)
    pts = _points()
    w = _weights(pts.shape[0]) if weighted else None
    rng = np.random.default_rng(3)
    q = np.concatenate([rng.normal(size=(200, 2)) * 1.5, pts[:40], [[-9.0, 9.0]]])
    u = np.concatenate([rng.uniform(-0.1, 1.1, size=(100, 2)), [[0.0, 1.0]]])
    transform, inverse = ka.create_transforms_rank(xp.asarray(pts), None if w is None else xp.asarray(w), xp=xp)
    got_q = _support.to_numpy(transform(xp.asarray(q)))
    got_u = _support.to_numpy(inverse(xp.asarray(u)))
    for d in range(2):
        knots, ranks = _ranks_reference(pts[:, d], w)
        want_q = np.interp(q[:, d], knots, ranks, left=0.0, right=1.0)
        want_u = np.interp(u[:, d], ranks, knots)
        # Weighted: np.cumsum sums in its own order (a few ulp); forward values within knotsafe's 4 eps.
        np.testing.assert_allclose(got_q[:, d], want_q, rtol=0, atol=1e-15 if weighted else 4e-16)
        np.testing.assert_allclose(got_u[:, d], want_u, rtol=0, atol=1e-13 * np.ptp(knots))


def test_rank_transform_on_numpy_is_bitwise_numpy_interp_unweighted() -> None:
    pts = _points()
    q = np.random.default_rng(4).normal(size=(300, 2))
    got = ka.create_transforms_rank(pts)[0](q)
    for d in range(2):
        knots, ranks = _ranks_reference(pts[:, d], None)
        np.testing.assert_array_equal(got[:, d], np.interp(q[:, d], knots, ranks, left=0, right=1))


@pytest.mark.parametrize("weighted", [False, True])
def test_rank_values_on_the_points_are_bitwise_equal_on_every_backend(xp: ModuleType, weighted: bool) -> None:
    # At the points themselves (every query at over-sampling 1) the value is the rank:
    # the same bits on every backend, and for the tied points the tie run's last rank.
    _need_float64(xp)
    pts = _points(n=507)
    w = _weights(pts.shape[0]) if weighted else None
    want = ka.create_transforms_rank(pts, w)[0](pts)
    got = ka.create_transforms_rank(xp.asarray(pts), None if w is None else xp.asarray(w), xp=xp)[0](xp.asarray(pts))
    np.testing.assert_array_equal(_support.to_numpy(got), want)
    for d in range(2):
        knots, ranks = _ranks_reference(pts[:, d], w)
        np.testing.assert_allclose(want[:, d], np.interp(pts[:, d], knots, ranks), rtol=0, atol=1e-15)


def test_weighted_ranks_do_not_depend_on_the_input_order() -> None:
    pts = _points(n=300)
    w = _weights(300)
    q = np.concatenate([pts, np.random.default_rng(5).normal(size=(100, 2))])
    perm = np.random.default_rng(6).permutation(300)
    a = ka.create_transforms_rank(pts, w)
    b = ka.create_transforms_rank(pts[perm], w[perm])
    np.testing.assert_array_equal(a[0](q), b[0](q))
    u = np.random.default_rng(7).uniform(size=(50, 2))
    np.testing.assert_array_equal(a[1](u), b[1](u))


def test_weighted_ties_are_right_continuous() -> None:
    # Three tied points of weight 0.2, 0.3, 0.1 after one of 0.4: every tied point gets 1.0,
    # and a query between the two values interpolates from 0.4 to 1.0 (not to 0.4 + 0.2).
    pts = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    w = np.array([0.4, 0.2, 0.3, 0.1])
    transform, _ = ka.create_transforms_rank(pts, w)
    got = transform(np.array([[1.0, 1.0], [0.5, 0.5], [0.0, -1.0], [2.0, 1.0]]))
    np.testing.assert_allclose(got, [[1.0, 1.0], [0.7, 0.7], [0.4, 0.0], [1.0, 1.0]], rtol=0, atol=1e-15)


def test_rank_gradient_is_zero_for_queries_on_the_points(xp: ModuleType, autodiff: _support.AutoDiff) -> None:
    # Over-sampling 1: each query is a traced point, so the value is its rank, a step function
    # of the positions; mirror-symmetric grids (rotation 0) have exact duplicates, where
    # jax.numpy.interp's rule gives large slopes.  The gradient with respect to positions is 0.
    _need_float64(xp)
    data, _ = _grids(0.0, 1)
    c = np.random.default_rng(8).normal(size=data.shape)

    def loss(p: Any) -> Any:
        return ka.create_transforms_rank(p, xp=xp)[0](p) * xp.asarray(c)

    (grad,) = autodiff.grad(loss, [xp.asarray(data)], [0])
    assert np.array_equal(grad, np.zeros_like(data))


def test_rank_gradient_between_points_is_the_interp_slope(xp: ModuleType, autodiff: _support.AutoDiff) -> None:
    # Queries strictly between knots: d transform / d q is the bin slope (central difference;
    # the step crosses no knot) and the knots move the value as numpy.interp of moved knots.
    _need_float64(xp)
    pts = np.random.default_rng(9).normal(size=(50, 2))
    q = np.random.default_rng(10).uniform(-1.0, 1.0, size=(30, 2))
    (gq,) = autodiff.grad(lambda a: ka.create_transforms_rank(xp.asarray(pts), xp=xp)[0](a), [xp.asarray(q)], [0])
    (gp,) = autodiff.grad(lambda p: ka.create_transforms_rank(p, xp=xp)[0](xp.asarray(q)), [xp.asarray(pts)], [0])
    h = 1e-7

    def f(qq: np.ndarray, pp: np.ndarray) -> np.ndarray:
        return np.stack([np.interp(qq[:, d], *_ranks_reference(pp[:, d], None), 0, 1) for d in range(2)], axis=1)

    np.testing.assert_allclose(gq, (f(q + h, pts) - f(q - h, pts)) / (2 * h), rtol=1e-6)
    fd_p = np.zeros_like(pts)
    for i in range(pts.shape[0]):
        for d in range(2):
            e = np.zeros_like(pts)
            e[i, d] = h
            fd_p[i, d] = (f(q, pts + e) - f(q, pts - e)).sum() / (2 * h)
    np.testing.assert_allclose(gp, fd_p, rtol=1e-6, atol=1e-9)


def test_weighted_rank_gradient_reaches_the_weights(xp: ModuleType, autodiff: _support.AutoDiff) -> None:
    # On the points the value is the cumulative weight: d/dw is 0/1 (the weights at or below the point).
    _need_float64(xp)
    pts = _points(n=40)
    w = _weights(40)
    (gw,) = autodiff.grad(
        lambda ww: ka.create_transforms_rank(xp.asarray(pts), ww, xp=xp)[0](xp.asarray(pts))[:, 0],
        [xp.asarray(w)],
        [1 - 1],
    )
    col = pts[:, 0]
    want = np.array([(col >= col[k]).sum() for k in range(40)], dtype=float)  # outputs whose sum holds w_k
    np.testing.assert_allclose(gw, want, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------
# create_transforms (kernel)
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("mesh_pixels", "bandwidth", "weighted"), [(20, 1.0, False), (10, 0.5, True)])
def test_kernel_transform_is_the_exact_sum_in_autoarrays_units(
    xp: ModuleType, mesh_pixels: int, bandwidth: float, weighted: bool
) -> None:
    _need_float64(xp)
    pts = np.random.default_rng(11).normal(size=(300, 2)) * [1.0, 2.0]
    w = np.random.default_rng(12).uniform(0.1, 2.0, 300) if weighted else None
    q = np.random.default_rng(13).normal(size=(200, 2)) * 2.5
    u = np.concatenate([np.random.default_rng(14).uniform(-0.05, 1.05, size=(100, 2)), [[0.0, 1.0]]])
    transform, inverse = ka.create_transforms(
        xp.asarray(pts), mesh_pixels, None if w is None else xp.asarray(w), bandwidth, 64, xp=xp
    )
    span = pts.max(axis=0) - pts.min(axis=0)
    h = bandwidth * span / mesh_pixels  # autoarray's unit: the mesh pixel scale span / mesh_pixels
    np.testing.assert_allclose(_support.to_numpy(transform(xp.asarray(q))), ref.kernel_cdf(pts, w, h, q), atol=1e-12)
    knots = pts.min(axis=0) + np.linspace(0.0, 1.0, 64)[:, None] * span
    knot_u = ref.kernel_cdf(pts, w, h, knots)
    want = np.stack([np.interp(u[:, d], knot_u[:, d], knots[:, d]) for d in range(2)], axis=1)
    np.testing.assert_allclose(_support.to_numpy(inverse(xp.asarray(u))), want, rtol=0, atol=1e-11 * span.max())


# Bandwidth 1 is autoarray's default: span / h = mesh_pixels, so 8 span / h is an integer and the
# largest point lies on a node-cell edge.  Under jax.jit with the tests-jax XLA flags (unoptimised)
# and x64 that edge once put u 1.4e-6 off the exact sum; the grid anchored at each column's minimum
# with compensated offsets puts every point in the cell its exact offset falls in.
@pytest.mark.parametrize("bandwidth", [0.7, 1.0])
def test_kernel_transform_under_jit_is_the_exact_sum(bandwidth: float) -> None:
    jax = _support.backend_module("jax")
    jnp = jax.numpy
    pts = np.random.default_rng(15).normal(size=(200, 2))
    q = np.random.default_rng(16).normal(size=(50, 2))
    jitted = jax.jit(lambda p, qq: ka.create_transforms(p, 20, bandwidth=bandwidth, xp=jnp)[0](qq))
    got = np.asarray(jitted(jnp.asarray(pts), jnp.asarray(q)))
    h = bandwidth * np.ptp(pts, axis=0) / 20
    want = ref.kernel_cdf(pts, None, h, q)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 if got.dtype == np.float32 else 1e-12)


# --------------------------------------------------------------------------
# the mesh functions
# --------------------------------------------------------------------------


def _rank_mesh_reference(
    n: int, data: np.ndarray, over: np.ndarray, w: np.ndarray | None, mu: np.ndarray, scale: float
) -> np.ndarray:
    """autoarray's rank mesh as a dense (K, n * n) mapping matrix, transcribed in NumPy."""
    scaled, q = (data - mu) / scale, (over - mu) / scale
    u = np.stack([np.interp(q[:, d], *_ranks_reference(scaled[:, d], w), 0, 1) for d in range(2)], axis=1)
    g = (n - 3) * u + 1
    down = np.clip(np.floor(g), 0, n - 2)
    t = g - down
    (dy, dx), (ty, tx) = down.T.astype(int), t.T
    idx = [(n - dy - 1) * n + dx, (n - dy - 1) * n + dx + 1, (n - dy) * n + dx, (n - dy) * n + dx + 1]
    wts = [ty * (1 - tx), ty * tx, (1 - ty) * (1 - tx), (1 - ty) * tx]
    m = np.zeros((over.shape[0], n * n))
    for i, ww in zip(idx, wts, strict=True):
        np.add.at(m, (np.arange(over.shape[0]), i), ww)
    return m


def _dense(idx: Any, w: Any, n: int) -> np.ndarray:
    idx, w = _support.to_numpy(idx), _support.to_numpy(w)
    m = np.zeros((idx.shape[0], n * n))
    np.add.at(m, (np.repeat(np.arange(idx.shape[0]), 4), idx.ravel()), w.ravel())
    return m


@pytest.mark.parametrize("rotation", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True])
def test_rank_mappings_match_autoarrays_rank_mesh(xp: ModuleType, rotation: float, weighted: bool) -> None:
    _need_float64(xp)
    data, over = _grids(rotation, 2)
    w = _weights(data.shape[0]) if weighted else None
    idx, wts = ka.adaptive_rectangular_mappings_weights_via_interpolation_from(
        N_MESH, xp.asarray(data), xp.asarray(over), None if w is None else xp.asarray(w), transform="rank", xp=xp
    )
    assert tuple(idx.shape) == (over.shape[0], 4)
    assert np.issubdtype(_support.to_numpy(idx).dtype, np.integer)
    # The normalisation is the backend's own mean and std (NumPy's are checked on NumPy): PyTorch
    # rounds them differently, which on the rotated grid turns some points a few ulp apart into ties;
    # with right-continuous weighted ties that moves the CDF beside them (autoarray's convention).
    ns = array_api_compat.array_namespace(xp.asarray(data))
    mu = _support.to_numpy(ns.mean(xp.asarray(data), axis=0))
    scale = float(_support.to_numpy(ns.min(ns.std(xp.asarray(data), axis=0, correction=0))))
    if xp.__name__ == "numpy":
        np.testing.assert_array_equal(mu, data.mean(axis=0))
        assert scale == data.std(axis=0).min()
    want = _rank_mesh_reference(N_MESH, data, over, w, mu, scale)
    np.testing.assert_allclose(_dense(idx, wts, N_MESH), want, atol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_kernel_mappings_match_pyautoarrays_kernel_mesh(xp: ModuleType, weighted: bool) -> None:
    _need_float64(xp)
    data, over = _grids(0.3, 2)
    w = _weights(data.shape[0]) if weighted else None
    idx, wts = ka.adaptive_rectangular_mappings_weights_via_interpolation_from(
        N_MESH, xp.asarray(data), xp.asarray(over), None if w is None else xp.asarray(w), xp=xp
    )
    r_idx, r_w = ref.mappings_weights(N_MESH, data, over, w)
    np.testing.assert_allclose(_dense(idx, wts, N_MESH), _dense(r_idx, r_w, N_MESH), atol=2 * (N_MESH - 3) * 1e-12)


@pytest.mark.parametrize("transform", ["rank", "kernel"])
def test_areas_and_transformed_grid_follow_autoarrays_edges(xp: ModuleType, transform: str) -> None:
    _need_float64(xp)
    data, _ = _grids(0.3, 1)
    n = N_MESH
    mu, scale = data.mean(axis=0), data.std(axis=0).min()
    scaled = (data - mu) / scale
    unit = np.stack([np.linspace(1.0, 0.0, n + 1), np.linspace(0.0, 1.0, n + 1)], axis=1)
    if transform == "rank":
        edges = np.stack([np.interp(unit[:, d], *_ranks_reference(scaled[:, d], None)[::-1]) for d in range(2)], 1)
    else:
        span = scaled.max(axis=0) - scaled.min(axis=0)
        knots = scaled.min(axis=0) + np.linspace(0.0, 1.0, 64)[:, None] * span
        knot_u = ref.kernel_cdf(scaled, None, span / n, knots)
        edges = np.stack([np.interp(unit[:, d], knot_u[:, d], knots[:, d]) for d in range(2)], axis=1)
    edges = edges * scale + mu
    grid = ka.adaptive_rectangular_transformed_grid_from(
        xp.asarray(data), xp.asarray(unit), n, transform=transform, xp=xp
    )
    np.testing.assert_allclose(_support.to_numpy(grid), edges, rtol=0, atol=1e-11)
    areas = _support.to_numpy(ka.adaptive_rectangular_areas_from((n, n), xp.asarray(data), transform=transform, xp=xp))
    want = np.abs(np.outer(np.diff(edges[:, 0]), np.diff(edges[:, 1])).ravel())
    np.testing.assert_allclose(areas, want, rtol=0, atol=1e-11)
    # The cells tile the data's bounding box.
    assert areas.sum() == pytest.approx(np.prod(np.ptp(data, axis=0)), rel=1e-12)


# --------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"traced_points": np.zeros((3,))}, ValueError, "traced_points"),
        ({"traced_points": np.array([[0.0, 1.0], [np.nan, 2.0]])}, ValueError, "traced_points"),
        ({"mesh_weight_map": np.ones(4)}, ValueError, "mesh_weight_map"),
        ({"mesh_weight_map": np.array([1.0, -1.0, 1.0])}, ValueError, "mesh_weight_map"),
        ({"mesh_weight_map": np.zeros(3)}, ValueError, "mesh_weight_map"),
        ({"traced_points": np.ones((3, 2), dtype=complex)}, TypeError, "traced_points"),
        ({"xp": "numpy"}, TypeError, "xp"),
    ],
)
def test_rank_arguments_are_checked(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    args: dict[str, Any] = {"traced_points": np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 0.5]]), **kwargs}
    with pytest.raises(error, match=match):
        ka.create_transforms_rank(**args)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mesh_pixels": 0}, ValueError, "mesh_pixels"),
        ({"mesh_pixels": 2.5}, TypeError, "mesh_pixels"),
        ({"bandwidth": 0.0}, ValueError, "bandwidth"),
        ({"bandwidth": float("inf")}, ValueError, "bandwidth"),
        ({"n_knots": 1}, ValueError, "n_knots"),
        ({"traced_points": np.array([[0.0, 1.0], [0.0, 2.0]])}, ValueError, "spread"),
    ],
)
def test_kernel_arguments_are_checked(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    args: dict[str, Any] = {"traced_points": np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 0.5]]), "mesh_pixels": 5, **kwargs}
    with pytest.raises(error, match=match):
        ka.create_transforms(**args)


def test_signatures_are_autoarrays() -> None:
    for name, params in ka._SIGNATURES.items():
        assert tuple(inspect.signature(getattr(ka, name)).parameters) == params
    sig = inspect.signature(ka.create_transforms)
    assert sig.parameters["bandwidth"].default == 1.0
    assert sig.parameters["n_knots"].default == 64


# --------------------------------------------------------------------------
# patch() / unpatch() against a stand-in for autoarray
# --------------------------------------------------------------------------


def _fake_autoarray(version: str = ka.SUPPORTED_AUTOARRAY_VERSIONS[0]) -> tuple[ModuleType, ModuleType]:
    """A package ``autoarray`` and its rectangular-interpolator module, with autoarray's signatures."""
    package = types.ModuleType("autoarray")
    package.__version__ = version  # type: ignore[attr-defined]
    module = types.ModuleType(ka.TARGET_MODULE)
    source = """
def create_transforms_rank(traced_points, mesh_weight_map=None, xp=None):
    return "own rank"

def create_transforms(traced_points, mesh_pixels, mesh_weight_map=None, bandwidth=1.0, n_knots=64, xp=None):
    return "own kernel"

def _transforms_from(points, mesh_pixels, mesh_weight_map, bandwidth, n_knots, transform, xp):
    # autoarray's caller: module globals, looked up at each call
    if transform == "rank":
        return create_transforms_rank(points, mesh_weight_map=mesh_weight_map, xp=xp)
    return create_transforms(points, mesh_pixels=mesh_pixels, mesh_weight_map=mesh_weight_map,
                             bandwidth=bandwidth, n_knots=n_knots, xp=xp)
"""
    exec(compile(source, "<fake autoarray>", "exec"), module.__dict__)
    return package, module


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    package, module = _fake_autoarray()
    monkeypatch.setitem(sys.modules, "autoarray", package)
    monkeypatch.setitem(sys.modules, ka.TARGET_MODULE, module)
    yield module
    ka.unpatch()


def _call(module: ModuleType, kind: str) -> Any:
    pts = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 0.5], [3.0, 1.5]])
    return module._transforms_from(pts, 5, None, 1.0, 64, kind, np)


def test_patch_replaces_both_globals_and_unpatch_restores_them(fake: ModuleType) -> None:
    own_rank, own_kernel = fake.create_transforms_rank, fake.create_transforms
    assert not ka.is_patched()
    ka.patch()
    assert ka.is_patched()
    assert fake.create_transforms_rank is ka.create_transforms_rank
    assert fake.create_transforms is ka.create_transforms
    for kind in ("rank", "kernel"):
        transform, _ = _call(fake, kind)
        u = transform(np.array([[1.0, 1.0]]))
        assert u.shape == (1, 2)
        assert np.all((u >= 0) & (u <= 1))
    ka.patch()  # idempotent
    ka.unpatch()
    assert fake.create_transforms_rank is own_rank
    assert fake.create_transforms is own_kernel
    assert _call(fake, "rank") == "own rank"
    ka.unpatch()  # a no-op when not patched
    assert fake.create_transforms_rank is own_rank


def test_patched_context_restores_and_nests(fake: ModuleType) -> None:
    own = fake.create_transforms
    with ka.patched():
        assert fake.create_transforms is ka.create_transforms
        with ka.patched():
            assert fake.create_transforms is ka.create_transforms
        assert fake.create_transforms is ka.create_transforms  # the inner exit keeps the outer patch
    assert fake.create_transforms is own
    with pytest.raises(KeyError), ka.patched():
        raise KeyError("restored on errors too")
    assert fake.create_transforms is own


@pytest.mark.parametrize("version", ["2026.10.4.1", "2027.1.1.1", None])
def test_other_versions_are_refused_and_nothing_is_patched(monkeypatch: pytest.MonkeyPatch, version: Any) -> None:
    package, module = _fake_autoarray()
    package.__version__ = version  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "autoarray", package)
    monkeypatch.setitem(sys.modules, ka.TARGET_MODULE, module)
    own = (module.create_transforms_rank, module.create_transforms)
    with pytest.raises(ka.UnsupportedAutoarrayError, match=r"autoarray == 2026\.10\.26\.1.*Nothing was patched"):
        ka.patch()
    with pytest.raises(ka.UnsupportedAutoarrayError), ka.patched():
        pass
    assert (module.create_transforms_rank, module.create_transforms) == own
    assert not ka.is_patched()


@pytest.mark.parametrize("change", ["signature", "missing", "caller"])
def test_a_changed_module_is_refused_before_anything_is_replaced(monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    package, module = _fake_autoarray()
    if change == "signature":
        module.create_transforms = lambda traced_points, mesh_pixels, xp=None: None
    elif change == "missing":
        del module.create_transforms
    else:
        del module._transforms_from
    monkeypatch.setitem(sys.modules, "autoarray", package)
    monkeypatch.setitem(sys.modules, ka.TARGET_MODULE, module)
    rank = module.create_transforms_rank
    with pytest.raises(ka.UnsupportedAutoarrayError, match="Nothing was patched"):
        ka.patch()
    assert module.create_transforms_rank is rank  # checked as a whole: the rank function was not replaced
    assert not ka.is_patched()


def test_patch_without_autoarray_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "autoarray", None)  # import autoarray raises ImportError
    with pytest.raises(ImportError, match=r"knotsafe\[autoarray\]"):
        ka.patch()
    assert not ka.is_patched()
