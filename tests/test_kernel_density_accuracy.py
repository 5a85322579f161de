"""create_transforms(method="kernel"): the stated error bound over the whole accepted bandwidth range.

``docs/kernel-transform.md`` states ``|u - u_exact| <= 7.0e-13`` plus rounding
in float64 for every accepted bandwidth, from ``span / 2,097,151`` (the
largest node grid) up to ``span / min_span_ratio`` (``F(max) - F(min)`` still a
normal number), and about one float32 eps in float32; the exact inverse
within one floating-point spacing of the exact inverse (to the same bound).

The reference is computed here, never by knotsafe: ``u_exact(q) = sum_i w_i
(erf(z_qi) - erf(z_lo,i)) / sum_i w_i (erf(z_hi,i) - erf(z_lo,i))`` with
``z = (x - p_i) / (h sqrt 2)``, in float64 (SciPy's ``erf``, ``math.fsum``),
on the data as given (float32 data are converted exactly).  Differences of
``erf`` keep their relative precision where ``F ~ 1/2`` would lose it (huge
bandwidths: ``F(max) - F(min) ~ 0.4 span / h``).  Its own error: each ``z`` is
within ``|z|`` float64 eps (one subtraction, one division), each ``erf`` within
a few float64 eps, so ``u_exact`` is within about ``1e-15`` of the exact real
number for the data here, three orders below the tolerances.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from scipy.special import erf

import knotsafe
from tests import _support

#: float64: the proven bound 7.0e-13 plus rounding of O(1e-15) and the reference's O(1e-15).
TOL64 = 1e-12
#: float32: measured within 1.6 float32 eps over the range (rounding only: the interpolation
#: bound is 1e-13); 4 eps leaves room for other orders of summation on other backends.
TOL32 = 4 * _support.eps_of("float32")
#: The accepted ends: span / h at most (2**24 - 4) / 8 (the node grid), at least
#: smallest_normal / eps of the dtype.
SMALLEST_H_RATIO = 2_097_000.0


def _tol(dtype_name: str) -> float:
    return TOL64 if dtype_name == "float64" else TOL32


def exact_u(p: np.ndarray, w: np.ndarray | None, h: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``u_exact(q)`` (K, D) of points ``p`` (N, D), weights ``w``, bandwidths ``h`` (D,): see the module docstring."""
    p, q = p.astype(np.float64), q.astype(np.float64)
    h = np.broadcast_to(np.asarray(h, np.float64), (p.shape[1],))
    w = np.ones(p.shape[0]) if w is None else w.astype(np.float64)
    out = np.empty(q.shape)
    for d in range(p.shape[1]):
        lo, hi = p[:, d].min(), p[:, d].max()

        def e(x: float, d: int = d) -> np.ndarray:
            return np.asarray(erf((x - p[:, d]) / (h[d] * math.sqrt(2.0))))

        den = math.fsum(w * (e(hi) - e(lo)))
        for k in range(q.shape[0]):
            x = min(max(q[k, d], lo), hi)
            out[k, d] = math.fsum(w * (e(x) - e(lo))) / den
    return out


def _data(dtype_name: str, n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two columns: a normal one around 0 and a uniform one far from the origin (offset 1e3)."""
    rng = np.random.default_rng(seed)
    p = np.stack([rng.normal(size=n), 1e3 + 3.0 * rng.uniform(size=n)], axis=1).astype(dtype_name)
    w = rng.uniform(0.1, 2.0, n).astype(dtype_name)
    return p, w


def _queries(p: np.ndarray, h: np.ndarray, k: int, seed: int = 1) -> np.ndarray:
    """Queries within a few bandwidths of the points (where u changes) and uniform over the range."""
    rng = np.random.default_rng(seed)
    near = p[rng.integers(0, p.shape[0], k)] + h * rng.normal(0.0, 2.0, (k, p.shape[1]))
    spread = rng.uniform(p.min(axis=0), p.max(axis=0), (k // 4, p.shape[1]))
    return np.concatenate([near, spread, p.min(axis=0)[None], p.max(axis=0)[None]]).astype(p.dtype)


def _transforms(xp: ModuleType, p: np.ndarray, w: np.ndarray | None, h: np.ndarray, **kw: Any) -> Any:
    name = str(p.dtype)
    if _support.backend_name(xp) == "dask":
        # Lazy points: the node grid is sized by a static span_ratio.
        kw.setdefault("span_ratio", float(np.max((p.max(axis=0) - p.min(axis=0)).astype(np.float64) / h)) * 1.01)
    weights = None if w is None else _support.asarray(xp, w, name)
    return knotsafe.create_transforms(
        _support.asarray(xp, p, name), weights, method="kernel", kernel_std=_support.asarray(xp, h, name), **kw
    )


def _skip_large_grid_on_dask(xp: ModuleType, ratio: float) -> None:
    if _support.backend_name(xp) == "dask" and ratio > 100:
        pytest.skip("dask: a grid of 8 span / h nodes is minutes of task graph; NumPy runs the same operations")


def _run(xp: ModuleType, f: Any, a: np.ndarray) -> np.ndarray:
    return _support.to_numpy(f(_support.asarray(xp, a, str(a.dtype)))).astype(np.float64)


# ---------------------------------------------------------------------------
# the bound at both ends of the accepted range, and between
# ---------------------------------------------------------------------------


@_support.only_in_session_of("numpy")
@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_bound_at_the_smallest_accepted_bandwidth(dtype_name: str) -> None:
    """h = span / 2,097,000: 16.8 million nodes per column, offsets far from the grid origin.

    Rounding offsets relative to the grid origin put eps * span / h into u (2.7e-3 in float32
    here, 5e-11 in float64).  NumPy only, one column: the tables of this grid take about
    half a gigabyte.
    """
    rng = np.random.default_rng(3)
    p = (1e3 + rng.uniform(0.0, 1.0, (20, 1))).astype(dtype_name)
    h = ((p.max() - p.min()).astype(np.float64) / np.array([SMALLEST_H_RATIO])).astype(dtype_name)
    q = _queries(p, h, 200)
    t, _ = knotsafe.create_transforms(p, method="kernel", kernel_std=h)
    got = t(q).astype(np.float64)
    np.testing.assert_allclose(got, exact_u(p, None, h, q), rtol=0, atol=_tol(dtype_name))


@_support.only_in_session_of("numpy")
def test_float32_points_a_microbandwidth_apart_match_the_exact_sum() -> None:
    """Four float32 points, h = 1e-6 (span / 1e6): u(0.7500005) is 0.72775 (was 0.73049)."""
    p = np.array([[0.0], [0.25], [0.75], [1.0]], np.float32)
    h = np.array([1e-6], np.float32)
    q = np.array([[0.7500005], [0.75], [0.7499995], [0.25000012]], np.float32)
    t, _ = knotsafe.create_transforms(p, method="kernel", kernel_std=h)
    np.testing.assert_allclose(t(q).astype(np.float64), exact_u(p, None, h, q), rtol=0, atol=TOL32)


@pytest.mark.parametrize("ratio", [1e5, 1e3, 30.0, 1.0, 0.62, 0.3, 1e-3, 1e-12])
def test_bound_across_bandwidths(xp: ModuleType, dtype_name: str, ratio: float) -> None:
    """span / h from 1e5 down to 1e-12, weighted, on every backend (0.62: where the grid spacing
    switches from h / 8 to span / 5)."""
    _skip_large_grid_on_dask(xp, ratio)
    p, w = _data(dtype_name)
    h = ((p.max(axis=0) - p.min(axis=0)).astype(np.float64) / ratio).astype(dtype_name)
    q = _queries(p, h, 120)
    t, _ = _transforms(xp, p, w, h)
    np.testing.assert_allclose(_run(xp, t, q), exact_u(p, w, h, q), rtol=0, atol=_tol(dtype_name))


@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_bound_at_the_largest_accepted_bandwidth(xp: ModuleType, dtype_name: str) -> None:
    """span / h = 1.5 * smallest_normal / eps (1.5e-292 in float64, 1.5e-31 in float32):
    F(max) - F(min) ~ 0.4 span / h is still a normal number with full precision; one step
    beyond raises (tests/test_kernel_density.py)."""
    if dtype_name == "float64" and not _support.has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    info = np.finfo(dtype_name)
    ratio = 1.5 * float(info.smallest_normal) / float(info.eps)
    p, w = _data(dtype_name)
    h = ((p.max(axis=0) - p.min(axis=0)).astype(np.float64) / ratio).astype(dtype_name)
    assert np.all(np.isfinite(h))
    q = _queries(p, h, 40)
    q = np.concatenate([q, np.random.default_rng(5).uniform(p.min(axis=0), p.max(axis=0), (40, 2))]).astype(dtype_name)
    t, _ = _transforms(xp, p, w, h)
    np.testing.assert_allclose(_run(xp, t, q), exact_u(p, w, h, q), rtol=0, atol=_tol(dtype_name))


@pytest.mark.parametrize("factor", [1e10, 1e15, 1e20])
def test_huge_bandwidths_give_the_exact_value(xp: ModuleType, dtype_name: str, factor: float) -> None:
    """50 normal points, h = factor * span; at q = 0 u is 0.5426 (was 0.4286 at
    1e15 and NaN at 1e20).  Every output finite and within the bound."""
    p = np.random.default_rng(0).normal(size=(50, 1)).astype(dtype_name)
    h = (np.ptp(p.astype(np.float64), axis=0) * factor).astype(dtype_name)
    q = np.concatenate([[[0.0]], np.linspace(p.min(), p.max(), 30)[:, None]]).astype(dtype_name)
    t, _ = _transforms(xp, p, None, h)
    got = _run(xp, t, q)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, exact_u(p, None, h, q), rtol=0, atol=_tol(dtype_name))


# ---------------------------------------------------------------------------
# the exact inverse
# ---------------------------------------------------------------------------


def assert_within_one_float_of_the_inverse(
    p: np.ndarray, w: np.ndarray | None, h: np.ndarray, v: np.ndarray, x: np.ndarray, dtype_name: str
) -> None:
    """``u_exact(x-) - tol <= v <= u_exact(x+) + tol`` for the floats ``x-``, ``x+`` next to ``x``.

    The exact inverse of ``v`` lies within one floating-point spacing of ``x`` (up to the forward
    bound ``tol``): no inverse can do better where ``u`` changes by more than ``tol`` between
    neighbouring floats (float32 points near 1e3 with h = 1.5e-5 are 4 h apart).
    """
    xs = x.astype(dtype_name)
    below = np.nextafter(xs, -np.inf).astype(np.float64)
    above = np.nextafter(xs, np.inf).astype(np.float64)
    tol = _tol(dtype_name)
    vv = v.astype(np.float64)
    low, high = exact_u(p, w, h, below) - tol, exact_u(p, w, h, above) + tol
    bad = ~((low <= vv) & (vv <= high))
    assert not bad.any(), (vv[bad], low[bad], high[bad])


@pytest.mark.parametrize("ratio", [2e5, 30.0, 1.0, 1e-8])
def test_inverse_is_within_one_float_of_the_exact_inverse(xp: ModuleType, dtype_name: str, ratio: float) -> None:
    """The exact inverse's output brackets ``v`` between its neighbouring floats, to the forward
    bound.  Rounding the Newton root relative to the grid origin gave 3.5e-12 at span / 1e5 in
    float64 where neighbouring floats move u by 1e-16."""
    _skip_large_grid_on_dask(xp, ratio)
    p, w = _data(dtype_name)
    h = ((p.max(axis=0) - p.min(axis=0)).astype(np.float64) / ratio).astype(dtype_name)
    rng = np.random.default_rng(7)
    v = np.concatenate([rng.uniform(0.0, 1.0, (60, 2)), [[0.0, 0.0], [1.0, 1.0], [1e-9, 1 - 1e-9]]])
    v = v.astype(dtype_name)
    _, inv = _transforms(xp, p, w, h)
    x = _run(xp, inv, v)
    lo, hi = p.min(axis=0).astype(np.float64), p.max(axis=0).astype(np.float64)
    assert np.all((x >= lo) & (x <= hi))
    assert_within_one_float_of_the_inverse(p, w, h, v, x, dtype_name)


# ---------------------------------------------------------------------------
# weights and dtypes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("scale", ["max", "tiny"])
def test_extreme_finite_weights_normalise(xp: ModuleType, dtype_name: str, scale: str) -> None:
    """Weights near the largest finite number (their sum overflows) or the smallest normal one:
    the same as the weights scaled to 1 (weights of 1e308 gave NaN)."""
    p, w = _data(dtype_name, n=30)
    info = np.finfo(dtype_name)
    big = (w / w.max() * (float(info.max) / 4 if scale == "max" else float(info.smallest_normal) * 64)).astype(
        dtype_name
    )
    assert np.all(np.isfinite(big)) and np.all(big > 0)
    h = ((p.max(axis=0) - p.min(axis=0)) / 20).astype(dtype_name)
    q = _queries(p, h, 60)
    t, _ = _transforms(xp, p, big, h)
    got = _run(xp, t, q)
    assert np.all(np.isfinite(got))
    ref = exact_u(p, big.astype(np.float64) / float(big.max()), h, q)
    np.testing.assert_allclose(got, ref, rtol=0, atol=_tol(dtype_name))


@_support.only_in_session_of("numpy")
def test_weights_of_1e308_do_not_overflow_their_sum() -> None:
    """Three points of weight 1e308: u(0.5) = 0.5 by symmetry (was NaN)."""
    p = np.array([[0.0], [0.5], [1.0]])
    t, _ = knotsafe.create_transforms(p, np.full(3, 1e308), method="kernel", kernel_std=0.3)
    np.testing.assert_allclose(t(np.array([[0.5]])), [[0.5]], rtol=0, atol=TOL64)


@pytest.mark.parametrize("n_knots", [None, 16])
def test_wider_queries_are_computed_in_their_dtype(xp: ModuleType, n_knots: int | None) -> None:
    """float64 queries of float32 points: computed in float64 on the float32 data, as the rank
    method does (they were computed in float32 and returned as float64, so two queries one
    float32 ulp apart got the same output)."""
    if not _support.has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    p32, w32 = _data("float32", n=40)
    h32 = ((p32.max(axis=0) - p32.min(axis=0)) / 10).astype(np.float32)
    t, inv = _transforms(xp, p32, w32, h32, n_knots=n_knots)
    q = np.array([[0.1, 1001.0], [0.1 + 1e-12, 1001.0 + 1e-10], [0.3, 1002.0]])
    got = _support.to_numpy(t(_support.asarray(xp, q)))
    assert got.dtype == np.float64
    assert got[0, 0] < got[1, 0] and got[0, 1] < got[1, 1]
    np.testing.assert_allclose(got, exact_u(p32, w32, h32, q), rtol=0, atol=TOL64)
    v = np.array([[0.25, 0.5], [0.25 + 1e-13, 0.5 + 1e-13], [0.75, 0.9]])
    x = _support.to_numpy(inv(_support.asarray(xp, v)))
    assert x.dtype == np.float64
    if n_knots is None:
        assert_within_one_float_of_the_inverse(p32, w32, h32, v, x, "float64")
    else:
        # The table inverse interpolates linearly between 16 knots, in float64.
        assert x[0, 0] < x[1, 0] and x[0, 1] < x[1, 1]
