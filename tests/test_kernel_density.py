"""``create_transforms(method="kernel")`` and the mesh's ``transform="kernel"``: the kernel-density CDF, its
inverses, gradients and argument checks, and parity with PyAutoArray's kernel mesh, on every backend.

References are computed here, never by knotsafe: the exact kernel sum over every point in float64
(``tests.pyautoarray_kernel.kernel_cdf``: SciPy's ``ndtr`` and NumPy's pairwise sum), autodiff of
that exact sum written in each framework's own operations
(:func:`tests._support.exact_kernel_transform`), central differences of the exact sum, and a NumPy
transcription of PyAutoArray's kernel mesh (``tests/pyautoarray_kernel.py``).  Second derivatives
are in ``tests/test_second_order.py``; the erf hooks in ``tests/test_backends.py``.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import knotsafe
from knotsafe import rectangular
from knotsafe._lib.kde import nodes as _kernel_nodes
from knotsafe.testing import circular_mask_grid, lens_grid, trace_sis
from tests import _support
from tests import pyautoarray_kernel as ref
from tests._support import backend_module, exact_kernel_transform, kernel_points, to_numpy
from tests.pyautoarray_kernel import kernel_cdf
from tests.test_kernel_density_accuracy import exact_u

#: Lazy Dask points need ``span_ratio=`` (the node grid is a static shape): tests/test_scale_out.py covers that path.
_NO_LAZY = pytest.mark.skip_xp_backend(
    "dask", reason="kernel method on lazy arrays needs span_ratio; see test_scale_out"
)


# Bandwidths as fractions of each column's span, span/1e4 .. span (the whole accepted range, both
# ends, is in tests/test_kernel_density_accuracy.py).
FRACTIONS = [1e-4, 1e-3, 1e-2, 1 / 30, 0.3, 1.0]
# Accuracy contract (float64): the module's proven bound is 7.0e-13 for every accepted h
# (Hermite remainder 8.2e-14 per F value, two of them over F(hi) - F(lo) >= 0.234);
# rounding of sums of O(1) terms adds O(1e-15).
U_TOL64 = 1e-12


def _np(a: Any) -> np.ndarray:
    return _support.to_numpy(a)


def _need_float64(xp: ModuleType) -> None:
    if not _support.has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")


def _queries(p: np.ndarray, k: int = 400, seed: int = 1) -> np.ndarray:
    """Queries inside and outside the range, at the points themselves and at the ends."""
    rng = np.random.default_rng(seed)
    lo, hi = p.min(axis=0), p.max(axis=0)
    span = hi - lo
    inside = rng.uniform(lo - 0.2 * span, hi + 0.2 * span, size=(k, 2))
    return np.concatenate([inside, p[:40], lo[None, :], hi[None, :], (lo - 1e3)[None, :], (hi + 1e3)[None, :]])


# --- forward values -------------------------------------------------------------------------------


@pytest.fixture(params=["direct", "moments"])
def node_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of building the node tables (by default chosen by cost)."""
    monkeypatch.setattr(_kernel_nodes, "FORCE", request.param)
    return str(request.param)


@_NO_LAZY
@pytest.mark.parametrize("frac", FRACTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_forward_matches_exact_sum(xp: ModuleType, frac: float, weighted: bool, node_path: str) -> None:
    _need_float64(xp)
    p, w = kernel_points()
    h = frac * (p.max(axis=0) - p.min(axis=0))
    q = _queries(p)
    wts = w if weighted else None
    t, _ = knotsafe.create_transforms(
        _support.asarray(xp, p),
        None if wts is None else _support.asarray(xp, wts),
        method="kernel",
        kernel_std=_support.asarray(xp, h),
    )
    got = _np(t(_support.asarray(xp, q)))
    ref = kernel_cdf(p, wts, h, q)
    np.testing.assert_allclose(got, ref, rtol=0, atol=U_TOL64)
    # beyond the range the clip is exact (at lo and hi themselves u is 0 and 1 to rounding)
    assert got[-2].tolist() == [0.0, 0.0] and got[-1].tolist() == [1.0, 1.0]


@_NO_LAZY
def test_forward_beyond_one_span(xp: ModuleType) -> None:
    """h = 3 spans: the docstring's bound scales like 1 / (F(hi) - F(lo)), here still far below 1e-12."""
    _need_float64(xp)
    p, _ = kernel_points()
    h = 3.0 * (p.max(axis=0) - p.min(axis=0))
    q = _queries(p)
    t, _ = knotsafe.create_transforms(_support.asarray(xp, p), method="kernel", kernel_std=_support.asarray(xp, h))
    np.testing.assert_allclose(_np(t(_support.asarray(xp, q))), kernel_cdf(p, None, h, q), rtol=0, atol=U_TOL64)


@_NO_LAZY
@pytest.mark.parametrize("frac", [1e-3, 1 / 30, 1.0])
def test_float32_within_10_eps(xp: ModuleType, frac: float) -> None:
    """float32 inputs: within 10 float32 eps of the exact sum of the same (float32) data."""
    p, w = kernel_points()
    p32 = p.astype(np.float32)
    h32 = (frac * (p32.max(axis=0) - p32.min(axis=0))).astype(np.float32)
    q32 = _queries(p32.astype(np.float64)).astype(np.float32)
    t, _ = knotsafe.create_transforms(
        _support.asarray(xp, p32, "float32"),
        _support.asarray(xp, w, "float32"),
        method="kernel",
        kernel_std=_support.asarray(xp, h32, "float32"),
    )
    got = t(_support.asarray(xp, q32, "float32"))
    assert "float32" in str(got.dtype)
    ref = kernel_cdf(p32.astype(np.float64), w.astype(np.float32).astype(np.float64), h32.astype(np.float64), q32)
    np.testing.assert_allclose(_np(got).astype(np.float64), ref, rtol=0, atol=10 * _support.eps_of("float32"))


@_NO_LAZY
def test_float32_many_nodes_within_10_eps(xp: ModuleType) -> None:
    """float32, 1,250 lens-grid points and h = span / 1000 (8,000 nodes per column).

    The step part of F is a prefix sum over the nodes: a sequential float32
    cumulative sum grows its error with the number of nodes and leaves the 10 eps
    bound here; the log-depth scan keeps it within.
    """
    from knotsafe.testing import lens_grid

    data, _ = lens_grid(radius=1.0, sub_size=1, rotation=0.3)
    p32 = data.astype(np.float32)
    h32 = ((p32.max(axis=0) - p32.min(axis=0)) / 1000).astype(np.float32)
    rng = np.random.default_rng(11)
    lo, hi = data.min(axis=0), data.max(axis=0)
    q32 = rng.uniform(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), size=(300, 2)).astype(np.float32)
    t, _ = knotsafe.create_transforms(
        _support.asarray(xp, p32, "float32"), method="kernel", kernel_std=_support.asarray(xp, h32, "float32")
    )
    got = _np(t(_support.asarray(xp, q32, "float32"))).astype(np.float64)
    ref = kernel_cdf(p32.astype(np.float64), None, h32.astype(np.float64), q32.astype(np.float64))
    np.testing.assert_allclose(got, ref, rtol=0, atol=10 * _support.eps_of("float32"))


@_NO_LAZY
def test_nan_queries_give_nan(xp: ModuleType) -> None:
    p, _ = kernel_points()
    t, inv = knotsafe.create_transforms(_support.asarray(xp, p), method="kernel", kernel_std=0.5)
    q = _support.asarray(xp, np.array([[np.nan, 0.0], [0.0, np.nan]]))
    out = _np(t(q))
    assert np.isnan(out[0, 0]) and np.isnan(out[1, 1]) and np.isfinite(out[0, 1]) and np.isfinite(out[1, 0])
    assert np.isnan(_np(inv(q))[0, 0])


# --- inverses -------------------------------------------------------------------------------------


@_NO_LAZY
@pytest.mark.parametrize("frac", FRACTIONS)
def test_exact_inverse(xp: ModuleType, frac: float) -> None:
    """u_exact(inv(v)) = v to the forward tolerance; inv(u(q)) = q where u is well conditioned."""
    _need_float64(xp)
    p, w = kernel_points()
    span = p.max(axis=0) - p.min(axis=0)
    h = frac * span
    t, inv = knotsafe.create_transforms(
        _support.asarray(xp, p), _support.asarray(xp, w), method="kernel", kernel_std=_support.asarray(xp, h)
    )
    rng = np.random.default_rng(3)
    v = np.concatenate([rng.uniform(size=(300, 2)), [[0.0, 0.0], [1.0, 1.0], [-0.5, 1.5]]])
    x = _np(inv(_support.asarray(xp, v)))
    assert np.all(x >= p.min(axis=0)) and np.all(x <= p.max(axis=0))
    np.testing.assert_allclose(kernel_cdf(p, w, h, x), np.clip(v, 0, 1), rtol=0, atol=U_TOL64)
    # Round trip: |x - q| <= |u error| / u'(q); keep queries with u' * span >= 0.5,
    # where 2e-12 of u is at most 4e-12 of the span.
    q = _queries(p)[:400]
    q = np.clip(q, p.min(axis=0), p.max(axis=0))
    step = 1e-6 * span
    slope = (kernel_cdf(p, w, h, q + step) - kernel_cdf(p, w, h, q - step)) / (2 * step)
    back = _np(inv(t(_support.asarray(xp, q))))
    good = slope * span >= 0.5
    assert good.sum() > 50
    assert np.all(np.abs(back - q)[good] <= 4e-12 * np.broadcast_to(span, q.shape)[good])


@_NO_LAZY
def test_table_inverse_is_pyautoarrays(xp: ModuleType) -> None:
    """n_knots=M: numpy.interp on M knots lo + linspace(0, 1, M) (hi - lo) and their exact u."""
    _need_float64(xp)
    p, w = kernel_points()
    lo, hi = p.min(axis=0), p.max(axis=0)
    h = (hi - lo) / 30
    _, inv = knotsafe.create_transforms(
        _support.asarray(xp, p),
        _support.asarray(xp, w),
        method="kernel",
        kernel_std=_support.asarray(xp, h),
        n_knots=64,
    )
    knots = lo + np.linspace(0, 1, 64)[:, None] * (hi - lo)
    ku = kernel_cdf(p, w, h, knots)
    v = np.random.default_rng(4).uniform(-0.1, 1.1, size=(500, 2))
    ref = np.stack([np.interp(v[:, d], ku[:, d], knots[:, d]) for d in range(2)], axis=1)
    # knot values within 1e-12 of exact; slopes of the table <= span / min knot gap of u
    got = _np(inv(_support.asarray(xp, v)))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9 * float((hi - lo).max()))


def _kernel_table_inverse_grads(knot_grad: str, min_gap: float | None) -> tuple[np.ndarray, ...]:
    """PyTorch gradients of ``sum(inv(u))`` of the kernel method's table inverse (``n_knots=16``)
    with respect to the points and to ``u``; also the points and the outputs."""
    torch = backend_module("torch")
    rng = np.random.default_rng(11)
    pts = rng.normal(size=(25, 2))
    u = np.array([[0.05, 0.9], [0.3, 0.5], [0.62, 0.13], [0.97, 0.71], [0.5, 0.02]])
    p_t = torch.asarray(pts, requires_grad=True)
    u_t = torch.asarray(u, requires_grad=True)
    _, inv = knotsafe.create_transforms(
        p_t, method="kernel", kernel_std=0.4, n_knots=16, knot_grad=knot_grad, min_gap=min_gap
    )
    out = inv(u_t)
    gp, gu = torch.autograd.grad(out.sum(), [p_t, u_t])
    return pts, to_numpy(out), gp.numpy(), gu.numpy()


def test_kernel_table_inverse_with_knot_grad_stop_moves_only_with_the_range() -> None:
    """``knot_grad="stop"`` reaches the kernel method's table inverse ``interp(u, u(knots), knots)``
    with ``knots = lo + linspace(0, 1, M) (hi - lo)`` (``lo``, ``hi`` the column's min and max): with
    the table's u-knots stop-gradiented, each output ``a0 knots[j] + a1 knots[j+1]`` moves with the
    points only through ``lo`` and ``hi``, so d sum(inv) / d points is ``sum_k (1 - s_k)`` at the
    column's minimum, ``sum_k s_k`` at its maximum and 0 elsewhere, with ``s_k = (inv_k - lo) /
    (hi - lo)``.  Tolerance: each ``s_k`` and each barycentric ``a0 frac_j + a1 frac_{j+1}`` is
    within 8 eps of the exact value (a few roundings of numbers <= 1), summed over 5 queries."""
    pts, out, gp, _ = _kernel_table_inverse_grads("stop", None)
    expected = np.zeros_like(pts)
    for d in range(2):
        lo, hi = pts[:, d].min(), pts[:, d].max()
        s = (out[:, d] - lo) / (hi - lo)
        expected[np.argmin(pts[:, d]), d] = np.sum(1 - s)
        expected[np.argmax(pts[:, d]), d] = np.sum(s)
    np.testing.assert_allclose(gp, expected, rtol=0, atol=5 * 16 * np.finfo(np.float64).eps)


def test_kernel_table_inverse_with_a_large_min_gap_has_zero_slope() -> None:
    """``min_gap`` reaches the kernel method's table inverse: the table's u-knots lie in [0, 1], so
    with ``min_gap=2`` every bin is a duplicate bin, whose slope is 0 by the contract: d inv / d u is
    exactly 0 (and without ``min_gap`` it is the table's positive slope)."""
    _, _, _, gu = _kernel_table_inverse_grads("exact", 2.0)
    np.testing.assert_array_equal(gu, np.zeros_like(gu))
    _, _, _, gu_default = _kernel_table_inverse_grads("exact", None)
    assert np.all(gu_default > 0)


# --- gradients ------------------------------------------------------------------------------------


def _knotsafe_fn(xp: ModuleType, inverse: bool = False) -> Any:
    def f(points: Any, weights: Any, h: Any, q: Any) -> Any:
        t, inv = knotsafe.create_transforms(points, weights, method="kernel", kernel_std=h, span_ratio=40.0)
        return inv(q) if inverse else t(q)

    return f


@_NO_LAZY
@pytest.mark.parametrize("frac", [1e-3, 1 / 30, 1.0])
def test_gradients_match_autodiff_of_exact_sum(
    autodiff: _support.AutoDiff, xp: ModuleType, frac: float, node_path: str
) -> None:
    """d sum(u * c) / d (points, weights, h, q) equal autodiff of the exact sum to 1e-9 relative."""
    _need_float64(xp)
    p, w = kernel_points()
    p = p[:40]
    w = w[:40]
    span = p.max(axis=0) - p.min(axis=0)
    h = frac * span
    q = _queries(p, 60)
    # u has kinks at lo and hi (the clip), where the derivative is one-sided and
    # the frameworks' conventions differ (JAX's clip gives 1/2 at a tie): no
    # query may sit exactly on a column's min or max.
    q = q[~((q == p.min(axis=0)) | (q == p.max(axis=0))).any(axis=1)]
    c = np.random.default_rng(5).normal(size=q.shape)
    args = [_support.asarray(xp, a) for a in (p, w, h, q)]
    cc = _support.asarray(xp, c)

    def ks(*a: Any) -> Any:
        f = knotsafe.create_transforms(a[0], a[1], method="kernel", kernel_std=a[2])[0]
        return f(a[3]) * cc

    def ex(*a: Any) -> Any:
        return exact_kernel_transform(xp, *a) * cc

    got = autodiff.grad(ks, args, [0, 1, 2, 3])
    ref = autodiff.grad(ex, args, [0, 1, 2, 3])
    for name, g, r in zip(("points", "weights", "bandwidth", "queries"), got, ref, strict=True):
        scale = np.abs(r).max()
        assert scale > 0, name
        # relative to the largest entry: the interpolant's derivative error is O(1e-12) of it
        assert np.abs(g - r).max() <= 1e-9 * scale, (name, np.abs(g - r).max() / scale)


@_NO_LAZY
def test_gradients_match_central_differences(autodiff: _support.AutoDiff, xp: ModuleType) -> None:
    """Bandwidth and one point's coordinate: central differences of the float64 exact sum."""
    _need_float64(xp)
    p, w = kernel_points()
    p, w = p[:40], w[:40]
    span = p.max(axis=0) - p.min(axis=0)
    h = span / 30
    q = _queries(p, 60)[:60]
    c = np.random.default_rng(6).normal(size=q.shape)

    def ks(pp: Any, hh: Any) -> Any:
        t = knotsafe.create_transforms(pp, _support.asarray(xp, w), method="kernel", kernel_std=hh)[0]
        return t(_support.asarray(xp, q)) * _support.asarray(xp, c)

    gp, gh = autodiff.grad(ks, [_support.asarray(xp, p), _support.asarray(xp, h)], [0, 1])

    def obj(pp: np.ndarray, hh: np.ndarray) -> float:
        return float((kernel_cdf(pp, w, hh, q) * c).sum())

    for d in range(2):
        e = np.zeros(2)
        e[d] = step = 1e-6 * span[d]
        fd = (obj(p, h + e) - obj(p, h - e)) / (2 * step)
        # truncation O(step^2 f''') ~ 1e-12 relative; rounding 1e-16 * |obj| / step ~ 1e-10 * |obj| / span
        assert abs(gh[d] - fd) <= 1e-6 * max(abs(fd), 1.0)
    i = 7  # an interior point (not the min or max of either column)
    assert 0 < np.argsort(p[:, 0]).tolist().index(i) < 39
    for d in range(2):
        e = np.zeros_like(p)
        e[i, d] = step = 1e-6 * span[d]
        fd = (obj(p + e, h) - obj(p - e, h)) / (2 * step)
        assert abs(gp[i, d] - fd) <= 1e-6 * max(abs(fd), 1.0)


@_NO_LAZY
def test_inverse_gradient_is_implicit_derivative(autodiff: _support.AutoDiff, xp: ModuleType) -> None:
    """d inv(v) / d v = (1 / u'(x)) and d inv / d h = -(du/dh) / u'(x), from the exact sum."""
    _need_float64(xp)
    p, w = kernel_points()
    span = p.max(axis=0) - p.min(axis=0)
    h = span / 30
    v = np.random.default_rng(8).uniform(0.05, 0.95, size=(50, 2))

    def inv(hh: Any, vv: Any) -> Any:
        pts, wts = _support.asarray(xp, p), _support.asarray(xp, w)
        return knotsafe.create_transforms(pts, wts, method="kernel", kernel_std=hh)[1](vv)

    gh, gv = autodiff.grad(inv, [_support.asarray(xp, h), _support.asarray(xp, v)], [0, 1])
    x = _np(inv(_support.asarray(xp, h), _support.asarray(xp, v)))
    step = 1e-6 * span
    du_dx = (kernel_cdf(p, w, h, x + step) - kernel_cdf(p, w, h, x - step)) / (2 * step)
    np.testing.assert_allclose(gv, 1.0 / du_dx, rtol=1e-6)
    for d in range(2):
        e = np.zeros(2)
        e[d] = hs = 1e-6 * h[d]
        du_dh = (kernel_cdf(p, w, h + e, x) - kernel_cdf(p, w, h - e, x))[:, d] / (2 * hs)
        np.testing.assert_allclose(gh[d], np.sum(-du_dh / du_dx[:, d]), rtol=1e-6)


def test_jax_jit_vmap_jacobians() -> None:
    jax = _support.backend_module("jax")
    import jax.numpy as jnp

    if not jax.config.read("jax_enable_x64"):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    p, w = kernel_points()
    p, w = p[:30], w[:30]
    h = (p.max(axis=0) - p.min(axis=0)) / 10
    q = _queries(p, 20)[:20]
    f = _knotsafe_fn(jnp)
    args = [jnp.asarray(a) for a in (p, w, h, q)]
    np.testing.assert_allclose(jax.jit(f)(*args), kernel_cdf(p, w, h, q), rtol=0, atol=U_TOL64)
    # Jacobians under jit, as a lens model takes them (one compilation each; eager JAX
    # gradients of the kernel transform are test_gradients_match_autodiff_of_exact_sum's).
    for argnum in range(4):
        jf = jax.jit(jax.jacfwd(f, argnums=argnum))(*args)
        jr = jax.jit(jax.jacrev(f, argnums=argnum))(*args)
        je = jax.jit(jax.jacrev(lambda *a: exact_kernel_transform(jnp, *a), argnums=argnum))(*args)
        scale = float(jnp.abs(je).max())
        assert float(jnp.abs(jf - je).max()) <= 1e-9 * scale
        assert float(jnp.abs(jr - je).max()) <= 1e-9 * scale
    per_row = jax.vmap(lambda qq: f(args[0], args[1], args[2], qq[None, :])[0])(args[3])
    np.testing.assert_allclose(per_row, kernel_cdf(p, w, h, q), rtol=0, atol=U_TOL64)
    # A traced span beyond span_ratio gives NaN instead of a wrong number.
    g = jax.jit(
        lambda pp, hh, qq: knotsafe.create_transforms(pp, method="kernel", kernel_std=hh, span_ratio=2.0)[0](qq)
    )
    assert bool(jnp.all(jnp.isnan(g(args[0], args[2], args[3]))))


def test_torch_func_jacobians() -> None:
    torch = _support.backend_module("torch")
    p, w = kernel_points()
    p, w = p[:30], w[:30]
    h = (p.max(axis=0) - p.min(axis=0)) / 10
    q = _queries(p, 20)[:20]
    f = _knotsafe_fn(torch)
    args = [torch.asarray(a, dtype=torch.float64) for a in (p, w, h, q)]
    for argnum in range(4):
        jf = torch.func.jacfwd(f, argnums=argnum)(*args)
        jr = torch.func.jacrev(f, argnums=argnum)(*args)
        je = torch.func.jacrev(lambda *a: exact_kernel_transform(torch, *a), argnums=argnum)(*args)
        scale = float(je.abs().max())
        assert float((jf - je).abs().max()) <= 1e-9 * scale
        assert float((jr - je).abs().max()) <= 1e-9 * scale


@_NO_LAZY
def test_float32_gradients_finite(autodiff: _support.AutoDiff, xp: ModuleType) -> None:
    """float32 gradients with respect to points, weights, bandwidth and queries are finite and non-zero."""
    p, w = kernel_points()
    h = (p.max(axis=0) - p.min(axis=0)) / 30
    q = _queries(p, 60)[:60]
    args = [_support.asarray(xp, a, "float32") for a in (p, w, h, q)]
    grads = autodiff.grad(_knotsafe_fn(xp), args, [0, 1, 2, 3])
    for g in grads:
        assert np.isfinite(g).all() and np.abs(g).max() > 0


# --- derivatives at the clamped ends -------------------------------------------------------------
# u(q) is 0 below a column's smallest point, 1 from its largest on, and the kernel CDF between: it
# has a kink at both ends.  Autodiff returns the right-hand derivative there (as the rank method and
# knotsafe.interp do): at q = min that of the kernel CDF, at q = max that of the constant 1, zero.
# (With clip JAX split the tied gradient in half and PyTorch passed it whole: a factor of 2 between
# backends, in the mesh's weight Jacobians too whenever the over-sampled grid contains the data
# points.)  References: one-sided differences of the exact kernel sum
# (tests.test_kernel_density_accuracy.exact_u) and of the NumPy transcription of PyAutoArray's
# kernel mesh (tests.pyautoarray_kernel).

END_H = 0.5
#: One-sided difference step (relative to the span) and its truncation error: O(step) of u''.
END_STEP = 1e-7
END_RTOL = 1e-5


def _end_points() -> np.ndarray:
    """The column [0, 0.4, 1] and a second column of other data."""
    return np.array([[0.0, 2.0], [0.4, -1.0], [1.0, 0.5], [0.7, 3.0]])


def _right_difference(f: Any, x: np.ndarray, step: np.ndarray) -> np.ndarray:
    return (f(x + step) - f(x)) / step


def test_transform_at_the_column_ends_is_right_hand(autodiff: _support.AutoDiff, xp: ModuleType) -> None:
    """d u / d q at q = min and q = max of each column: the right-hand difference (0 at max)."""
    _need_float64(xp)
    p = _end_points()
    lo, hi = p.min(axis=0), p.max(axis=0)
    q = np.stack([lo, hi])
    t, _ = knotsafe.create_transforms(xp.asarray(p), method="kernel", kernel_std=END_H)
    (g,) = autodiff.grad(t, [xp.asarray(q)], [0])
    step = END_STEP * (hi - lo)
    expected = _right_difference(lambda x: exact_u(p, None, np.array([END_H, END_H]), x), q, step)
    np.testing.assert_allclose(g[0], expected[0], rtol=END_RTOL)
    assert np.all(g[0] > 0)
    assert np.all(g[1] == 0.0) and np.all(expected[1] == 0.0)


def test_right_hand_derivative_at_the_ends_agrees_between_jax_and_torch() -> None:
    """Column [0, 0.4, 1], h = 0.5: 0.913 (the right-hand difference) at the minimum on both, 0 at the maximum."""
    grads = {}
    p = np.array([[0.0], [0.4], [1.0]])
    for name in ("jax", "torch"):
        if not _support.selected(name):
            continue
        ad = _support.AUTODIFF[name]
        ns = _support.backend_module(name, "jax.numpy" if name == "jax" else "torch")
        if name == "jax" and not _support.has_float64(ns):
            continue
        t, _ = knotsafe.create_transforms(ns.asarray(p), method="kernel", kernel_std=END_H)
        grads[name] = [ad.grad(t, [ns.asarray([[x]])], [0])[0].item() for x in (0.0, 1.0)]
    if not grads:
        pytest.skip("needs JAX (x64) or PyTorch")
    step = END_STEP
    at_min = exact_u(p, None, np.array([END_H]), np.array([[step]])) - exact_u(
        p, None, np.array([END_H]), np.array([[0.0]])
    )
    for g in grads.values():
        assert g[0] == pytest.approx(at_min.item() / step, rel=END_RTOL)
        assert g[0] == pytest.approx(0.913, abs=1e-3)
        assert g[1] == 0.0


def test_inverse_at_zero_and_one_is_right_hand(autodiff: _support.AutoDiff, xp: ModuleType) -> None:
    """d x / d v at v = 0 is 1 / u'(min) (the right-hand one), at v = 1 it is 0 (x stays at max)."""
    _need_float64(xp)
    p = _end_points()
    lo, hi = p.min(axis=0), p.max(axis=0)
    _, inv = knotsafe.create_transforms(xp.asarray(p), method="kernel", kernel_std=END_H)
    (g,) = autodiff.grad(inv, [xp.asarray(np.array([[0.0, 0.0], [1.0, 1.0]]))], [0])
    step = END_STEP * (hi - lo)
    slope_at_min = _right_difference(lambda x: exact_u(p, None, np.array([END_H, END_H]), x), lo[None, :], step)[0]
    np.testing.assert_allclose(g[0], 1.0 / slope_at_min, rtol=END_RTOL)
    assert np.all(g[1] == 0.0)


def test_mesh_weight_jacobian_at_sub_size_one_is_right_hand(autodiff: _support.AutoDiff, xp: ModuleType) -> None:
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
        step = END_STEP * span[axis]

        def at(shift: float, row: int = row, axis: int = axis) -> float:
            over = data.copy()
            over[row, axis] += shift
            _, w = ref.mappings_weights(n, data, over)
            return float(np.sum(w[row] * c[row]))

        expected = (at(step) - at(0.0)) / step
        assert g[row, axis] == pytest.approx(expected, rel=END_RTOL, abs=1e-9)


# --- arguments ------------------------------------------------------------------------------------


@_NO_LAZY
def test_bad_arguments_raise(xp: ModuleType) -> None:
    p, _ = kernel_points()
    pts = _support.asarray(xp, p)
    with pytest.raises(TypeError, match="`kernel_std`"):
        knotsafe.create_transforms(pts, method="kernel")
    with pytest.raises(ValueError, match="`kernel_std`"):
        knotsafe.create_transforms(pts, method="kernel", kernel_std=-1.0)
    with pytest.raises(ValueError, match="`kernel_std`"):
        knotsafe.create_transforms(pts, method="kernel", kernel_std=_support.asarray(xp, [1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="`kernel_std`"):
        knotsafe.create_transforms(pts, method="kernel", kernel_std=1e-9)  # grid would exceed MAX_GRID
    with pytest.raises(ValueError, match="n_knots"):
        knotsafe.create_transforms(pts, method="kernel", kernel_std=1.0, n_knots=1)
    with pytest.raises(TypeError, match="n_knots"):
        knotsafe.create_transforms(pts, method="kernel", kernel_std=1.0, n_knots=2.5)
    with pytest.raises(ValueError, match="method"):
        knotsafe.create_transforms(pts, method="gaussian", kernel_std=1.0)
    with pytest.raises(TypeError, match="`kernel_std`"):
        knotsafe.create_transforms(pts, kernel_std=1.0)
    flat = np.array(p)
    flat[:, 1] = 2.0
    with pytest.raises(ValueError, match="zero spread"):
        knotsafe.create_transforms(_support.asarray(xp, flat), method="kernel", kernel_std=1.0)
    t, _ = knotsafe.create_transforms(pts, method="kernel", kernel_std=1.0)
    with pytest.raises(ValueError, match="shape"):
        t(_support.asarray(xp, np.zeros((3, 3))))


@pytest.mark.parametrize("name", ["kernel_std", "n_knots", "span_ratio"])
def test_kernel_only_arguments_with_the_rank_method_name_the_argument(name: str) -> None:
    """``kernel_std``, ``n_knots`` and ``span_ratio`` apply to ``method="kernel"`` only: with the default
    rank method each is a TypeError whose message names that argument."""
    pts = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 0.5]])
    with pytest.raises(TypeError, match=f"`{name}` applies to method='kernel' only"):
        knotsafe.create_transforms(pts, **{name: 2})


def test_bandwidth_is_the_deprecated_name_of_kernel_std() -> None:
    """``create_transforms(bandwidth=h)`` warns (DeprecationWarning naming ``kernel_std``) and gives bitwise
    the transforms of ``kernel_std=h``; both together are a TypeError naming both."""
    pts = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 0.5], [1.0, 2.5]])
    q = np.array([[0.5, 1.5], [3.0, 0.75], [-1.0, 9.0]])
    t, inv = knotsafe.create_transforms(pts, method="kernel", kernel_std=0.7)
    with pytest.warns(DeprecationWarning, match="kernel_std="):
        t_old, inv_old = knotsafe.create_transforms(pts, method="kernel", bandwidth=0.7)
    np.testing.assert_array_equal(t_old(q), t(q))
    u = np.array([[0.25, 0.5], [0.9, 0.1]])
    np.testing.assert_array_equal(inv_old(u), inv(u))
    with pytest.raises(TypeError, match="`kernel_std` only: `bandwidth` is its deprecated name"):
        knotsafe.create_transforms(pts, method="kernel", kernel_std=0.7, bandwidth=0.7)


@pytest.mark.parametrize("span_ratio", [-1.0, 0.0, float("nan"), "x", "2"])
def test_kernel_span_ratio_is_checked(span_ratio: object) -> None:
    """``span_ratio`` must be a positive real number: anything else raises, naming ``span_ratio``
    (TypeError for a string, ValueError for a non-positive or NaN number)."""
    pts = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 0.5]])
    with pytest.raises((TypeError, ValueError), match="`span_ratio` must be a positive real number"):
        knotsafe.create_transforms(pts, method="kernel", kernel_std=1.0, span_ratio=span_ratio)


def test_kernel_span_ratio_below_the_data_span_raises() -> None:
    """A ``span_ratio`` below a column's ``(max - min) / bandwidth`` (here 4 / 0.25 = 16 > 2) sizes
    the node grid too small for that column: on concrete data a ValueError naming ``span_ratio``,
    never a number computed on a grid that does not cover the data (under tracing: NaN,
    tests/test_unreadable_data_gives_nan.py)."""
    pts = np.array([[0.0, 0.0], [1.0, 0.1], [4.0, 0.2], [2.5, 0.3]])
    with pytest.raises(ValueError, match="`span_ratio`"):
        knotsafe.create_transforms(pts, method="kernel", kernel_std=0.25, span_ratio=2.0)


def test_traced_points_need_span_ratio() -> None:
    """Under jax.jit the grid size cannot be read from the data: a clear error, not a guess."""
    jax = _support.backend_module("jax")
    import jax.numpy as jnp

    p = jnp.asarray(kernel_points()[0], dtype=jnp.float32)
    with pytest.raises(ValueError, match="span_ratio"):
        jax.jit(lambda pp: knotsafe.create_transforms(pp, method="kernel", kernel_std=1.0)[0](pp))(p)


def _argument_points(xp: ModuleType, dtype_name: str = "float64") -> Any:
    return _support.asarray(xp, np.array([[0.0, 1.0], [1.0, 3.0], [0.5, 2.0]]), dtype_name)


@pytest.mark.skip_xp_backend("dask", reason="lazy data are not checked: tests/test_unreadable_data_gives_nan.py")
@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_too_small_span_ratio_on_concrete_data_raises(xp: ModuleType, dtype_name: str) -> None:
    """span / h = 100 > span_ratio = 10 (it gave NaN)."""
    if dtype_name == "float64" and not _support.has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    p = _support.asarray(xp, np.array([[0.0], [1.0]]), dtype_name)
    with pytest.raises(ValueError, match="`span_ratio`"):
        knotsafe.create_transforms(p, method="kernel", kernel_std=0.01, span_ratio=10.0)
    # Just enough: accepted, and the outputs are numbers.
    t, _ = knotsafe.create_transforms(p, method="kernel", kernel_std=0.01, span_ratio=100.0)
    assert np.all(np.isfinite(_support.to_numpy(t(p))))


@pytest.mark.skip_xp_backend("dask", reason="lazy data are not checked: tests/test_unreadable_data_gives_nan.py")
@pytest.mark.parametrize("span_ratio", [float("inf"), 1e300, 3e6, True])
def test_span_ratio_out_of_range_names_span_ratio(xp: ModuleType, span_ratio: object) -> None:
    """inf (message without `span_ratio` before), too large for the node grid (blamed `kernel_std`), a bool."""
    with pytest.raises((TypeError, ValueError)) as info:
        knotsafe.create_transforms(_argument_points(xp), method="kernel", kernel_std=0.1, span_ratio=span_ratio)
    assert "`span_ratio`" in str(info.value)
    assert "`kernel_std`" not in str(info.value)


@pytest.mark.skip_xp_backend("dask", reason="lazy data are not checked: tests/test_unreadable_data_gives_nan.py")
@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_kernel_std_too_large_for_the_data_raises(xp: ModuleType, dtype_name: str) -> None:
    """span / h below smallest_normal / eps: F(max) - F(min) would be subnormal or zero (NaN
    outputs before); just above it the outputs are right (tests/test_kernel_density_accuracy.py)."""
    if dtype_name == "float64" and not _support.has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    info = np.finfo(dtype_name)
    smallest = float(info.smallest_normal) / float(info.eps)
    for h in (2.0 / (smallest / 2), float(info.max)):  # span 2 in column 1
        with pytest.raises(ValueError, match="`kernel_std` is too large"):
            knotsafe.create_transforms(_argument_points(xp, dtype_name), method="kernel", kernel_std=h)


@pytest.mark.skip_xp_backend("dask", reason="lazy data are not checked: tests/test_unreadable_data_gives_nan.py")
def test_overflowing_column_range_raises(xp: ModuleType) -> None:
    """Finite points whose max - min overflows: named `points` (not on `kernel_std`)."""
    if not _support.has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    p = _support.asarray(xp, np.array([[-1e308, 0.0], [1e308, 1.0]]))
    with pytest.raises(ValueError, match="`points` has a column whose range"):
        knotsafe.create_transforms(p, method="kernel", kernel_std=1.0)


@pytest.mark.skip_xp_backend("dask", reason="lazy data are not checked: tests/test_unreadable_data_gives_nan.py")
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


# --- the mesh with transform="kernel" -------------------------------------------------------------


N_MESH = 10
RADIUS, PIXEL_SCALE = 1.5, 0.1
THETA = 1.2


# u within 1e-12 of the exact sum (the forward tests above); index = (n - 3) u + 1 and each
# bilinear weight is a product of two t's, so weights move by <= 2 (n - 3) 1e-12.
W_TOL = 2 * (N_MESH - 3) * 1e-12


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
