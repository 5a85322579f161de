"""create_transforms(method="kernel"): values and inverse against the exact sum, gradients against central differences.

The reference is the kernel CDF summed over every point in float64, written
here (``scipy.special.ndtr``, NumPy's pairwise sum), never by knotsafe:

    F(q) = sum_i w_i Phi((q - p_i) / h),  u(q) = clip((F(q) - F(lo)) / (F(hi) - F(lo)), 0, 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pytest

import knotsafe
from conformance._backends import Driver
from conformance._compute import check_cases
from conformance._record import Cell
from knotsafe.testing import lens_grid

#: Bandwidths as fractions of each column's span, from narrow to as wide as the data (the documented range is
#: span/1e4 .. span).
FRACTIONS = (1e-3, 1 / 30, 1.0)


@dataclass(frozen=True)
class KernelCase:
    name: str
    points: np.ndarray  # (N, D) float64
    weights: np.ndarray | None
    frac: float
    queries: np.ndarray  # (K, D) float64


def exact_u(points: np.ndarray, weights: np.ndarray | None, h: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The exact kernel transform in float64 (every point, every query)."""
    from scipy.special import ndtr

    n, dim = points.shape
    w = np.full(n, 1.0 / n) if weights is None else weights / weights.sum()
    cols = []
    for d in range(dim):
        p = points[:, d]

        def cdf(x: np.ndarray, p: np.ndarray = p, d: int = d) -> np.ndarray:
            return (w[None, :] * ndtr((x[:, None] - p[None, :]) / h[d])).sum(axis=1)

        f_lo, f_hi = cdf(np.array([p.min(), p.max()]))
        cols.append(np.clip((cdf(q[:, d]) - f_lo) / (f_hi - f_lo), 0.0, 1.0))
    return np.stack(cols, axis=1)


@cache
def kernel_cases() -> tuple[KernelCase, ...]:
    rng = np.random.default_rng(11)
    data, _ = lens_grid(radius=1.0, sub_size=1, rotation=0.3)  # ~1,250 points with near-duplicates
    ties = np.stack([np.repeat(rng.normal(size=20), 3), np.round(rng.exponential(size=60) * 3, 1)], axis=1)
    sets = [("lens_grid_2d", data, None), ("ties_weighted", ties, rng.uniform(0.1, 2.0, ties.shape[0]))]
    out = []
    for name, pts, w in sets:
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        span = hi - lo
        q = np.concatenate([rng.uniform(lo - 0.1 * span, hi + 0.1 * span, size=(150, 2)), pts[:30], [lo, hi]])
        for frac in FRACTIONS:
            out.append(KernelCase(f"{name}, h = span x {frac:.3g}", pts, w, frac, q))
    return tuple(out)


def _name(c: KernelCase) -> str:
    return c.name


def _h(c: KernelCase) -> np.ndarray:
    return c.frac * (c.points.max(axis=0) - c.points.min(axis=0))


def _transforms(backend: Driver, c: KernelCase, pts: np.ndarray, dtype: str) -> Any:
    w = None if c.weights is None else backend.asarray(c.weights, dtype)
    h = backend.asarray(_h(c), dtype)
    return knotsafe.create_transforms(backend.asarray(pts, dtype), w, method="kernel", kernel_std=h)


@pytest.mark.prop("kernel_values_{dtype}")
def test_kernel_values_against_exact_sum(backend: Driver, dtype: str, cell: Cell) -> None:
    """|u - u_exact| over queries inside and outside the range, bandwidths span/1e3 .. span, weighted or not.

    Tolerances (the rows in conformance/_record.py): float64, the documented bound (9.6e-13 for h <= span,
    docs/kernel-transform.md) rounded up to 1e-12; float32, the documented 10 eps of float32 against the exact
    float64 sum of the same (float32-rounded) data.
    """

    def measure(c: KernelCase) -> tuple[float, int]:
        pts = c.points.astype(dtype)  # the reference sums the same (rounded) data in float64
        transform, _ = _transforms(backend, c, pts, dtype)
        got = backend.to_numpy(transform(backend.asarray(c.queries, dtype))).astype(np.float64)
        h = _h(c).astype(dtype).astype(np.float64)
        q = c.queries.astype(dtype).astype(np.float64)
        ref = exact_u(pts.astype(np.float64), c.weights, h, q)
        return float(np.max(np.abs(got - ref))), got.size

    check_cases(cell, list(kernel_cases()), measure, _name)


@pytest.mark.prop("kernel_inverse")
def test_kernel_exact_inverse(backend: Driver, cell: Cell) -> None:
    """|u_exact(inv(v)) - v| <= 1e-12 (float64) for v in (0, 1): the exact inverse solves the exact sum."""
    if "float64" not in backend.dtypes:
        pytest.skip(backend.missing_dtype_reason.get("float64", "n/a: no float64"))
    v = np.random.default_rng(12).uniform(0.0, 1.0, size=(200, 2))

    def measure(c: KernelCase) -> tuple[float, int]:
        _, inv = _transforms(backend, c, c.points, "float64")
        x = backend.to_numpy(inv(backend.asarray(v, "float64")))
        back = exact_u(c.points, c.weights, _h(c), x)
        return float(np.max(np.abs(back - v))), v.size

    check_cases(cell, list(kernel_cases()), measure, _name)


@pytest.mark.prop("kernel_fd")
def test_kernel_gradients_against_central_differences(autodiff: Driver, cell: Cell) -> None:
    """d sum(c * u) / d (queries, points, weights, bandwidth) against central differences of the exact sum.

    Steps 1e-6 of each column's span (1e-6 relative for weights and h): truncation O(step^2) ~ 1e-12 and
    rounding ~1e-16 / 1e-6 of the objective; the interpolant's derivatives are within ~1e-11 of the exact
    sum's.  Error relative to the largest entry of each gradient.
    """
    if "float64" not in autodiff.dtypes:
        pytest.skip(autodiff.missing_dtype_reason.get("float64", "n/a: no float64"))
    rng = np.random.default_rng(13)
    pts = np.stack([rng.normal(size=30), np.round(rng.exponential(size=30) * 3, 1)], axis=1)
    w = rng.uniform(0.1, 2.0, 30)
    span = pts.max(axis=0) - pts.min(axis=0)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    q = rng.uniform(lo + 0.01 * span, hi - 0.01 * span, size=(25, 2))
    c = rng.normal(size=q.shape)
    worst = 0.0
    for frac in (1 / 30, 0.3):
        h = frac * span
        args = [autodiff.asarray(a, "float64") for a in (pts, w, h, q)]
        cc = autodiff.asarray(c, "float64")

        def f(p: Any, ww: Any, hh: Any, qq: Any, cc: Any = cc) -> Any:
            t = knotsafe.create_transforms(p, ww, method="kernel", kernel_std=hh, span_ratio=40.0)[0]
            return t(qq) * cc

        assert autodiff.autodiff is not None
        grads = autodiff.autodiff.grad(f, args, [0, 1, 2, 3])

        def obj(p: np.ndarray, ww: np.ndarray, hh: np.ndarray, qq: np.ndarray) -> float:
            return float((exact_u(p, ww, hh, qq) * c).sum())

        base = [pts, w, h, q]
        scales = [np.broadcast_to(span, pts.shape), w, h, np.broadcast_to(span, q.shape)]
        for i, (g, x0, sc) in enumerate(zip(grads, base, scales, strict=True)):
            fd = np.zeros(x0.shape)
            for idx in np.ndindex(x0.shape):
                step = 1e-6 * float(sc[idx])
                plus, minus = [a.copy() for a in base], [a.copy() for a in base]
                plus[i][idx] += step
                minus[i][idx] -= step
                fd[idx] = (obj(*plus) - obj(*minus)) / (2 * step)
            if i == 0:
                # min and max of a column are the ends of u's normalisation, where u has kinks: one-sided there.
                ends = (pts == pts.min(axis=0)) | (pts == pts.max(axis=0))
                fd, g = np.where(ends, 0.0, fd), np.where(ends, 0.0, g)
            worst = max(worst, float(np.max(np.abs(g - fd)) / np.max(np.abs(fd))))
    if not cell.update(worst, 2 * (pts.size + w.size + 2 + q.size), unit="rel", tol=1e-6):
        pytest.fail(f"worst relative difference {worst:.3g} > 1e-6", pytrace=False)
