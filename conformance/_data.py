"""Test data and the NumPy reference: numpy.interp values, bins and analytic partials.

Every case is NumPy data already rounded to the dtype under test, so every
backend and the reference see the same numbers.  The reference is computed in
float64 from those numbers (for float32 data: numpy.interp of the upcast data,
as the contract says); duplicate-bin classification uses the dtype's own
arithmetic, exactly as knotsafe's rule does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import numpy as np

from knotsafe.testing import knot_cases

DUPLICATE_EPS_FACTOR = 8.0  # the contract's default threshold: 8 * eps * max|knots|
#: Queries per case for per-entry Jacobians (d out_i / d knots_m, d out_i / d values_m).
JAC_QUERIES = 192


@dataclass(frozen=True)
class Case:
    """One interpolation problem in one dtype (NumPy arrays of that dtype)."""

    name: str
    dtype: str
    knots: np.ndarray
    values: np.ndarray
    queries: np.ndarray
    left: float | None = None
    right: float | None = None
    min_gap: float | None = None

    def kwargs(self) -> dict[str, float | None]:
        return {"left": self.left, "right": self.right, "min_gap": self.min_gap}


def _cast(a: np.ndarray, dtype: str) -> np.ndarray:
    with np.errstate(over="ignore"):  # 1e300 queries become inf in float32, as intended
        return np.asarray(a, dtype=np.float64).astype(dtype)


def _native_near_duplicates(dtype: str, scale: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Knot triples 0, 2 and 3 ulp apart in the dtype itself, with queries 1 ulp inside the gaps."""
    rng = np.random.default_rng(seed)
    t = np.dtype(dtype).type
    base = np.sort(rng.uniform(0.5, 1.5, 16) * scale).astype(dtype)
    up = t(np.inf)
    k2 = np.nextafter(np.nextafter(base, up), up)
    k3 = np.nextafter(k2, up)
    knots = np.sort(np.concatenate([base, base[::4], k2, k3]))
    inside = np.nextafter(base, up)  # strictly inside the 2-ulp gap [base, k2)
    q = np.concatenate([inside, base, k2, _cast(rng.uniform(0.4, 1.6, 64) * scale, dtype)])
    values = _cast(rng.normal(size=knots.size), dtype)
    return knots, values, q.astype(dtype)


@cache
def cases(dtype: str) -> tuple[Case, ...]:
    """knotsafe.testing.knot_cases() in ``dtype``, plus dtype-native near-duplicates,
    a min_gap override and constant left/right."""
    out = []
    for c in knot_cases():
        k = _cast(c.knots, dtype)
        out.append(Case(c.name, dtype, k, _cast(c.values, dtype), _cast(c.queries, dtype)))
    # numpy.interp with one knot returns values[0] for every query, NaN included.
    one = _cast(np.array([0.5]), dtype)
    out.append(
        Case("single_knot_nan", dtype, one, _cast(np.array([3.0]), dtype), _cast(np.array([np.nan, 0, 0.5, 1]), dtype))
    )
    for scale, seed in ((1.0, 1), (1e3, 2)):
        k, v, q = _native_near_duplicates(dtype, scale, seed)
        out.append(Case(f"near_duplicates_native_{scale:g}", dtype, k, v, q))
    rng = np.random.default_rng(3)
    k = _cast(np.sort(rng.uniform(0, 1, 30)), dtype)
    q = _cast(np.concatenate([rng.uniform(-0.1, 1.1, 120), (k[1:] + k[:-1]) / 2]), dtype)
    # 2**-6: bins narrower than 1/64 count as duplicates (exactly representable in both dtypes).
    out.append(Case("min_gap_override", dtype, k, _cast(rng.normal(size=30), dtype), q, min_gap=2.0**-6))
    k = _cast(np.sort(rng.uniform(-1, 1, 20)), dtype)
    k[7:10] = k[7]
    q = _cast(np.concatenate([rng.uniform(-1.5, 1.5, 80), k]), dtype)
    out.append(Case("left_right", dtype, k, _cast(rng.normal(size=20), dtype), q, left=-3.5, right=4.25))
    return tuple(out)


def case_ids(dtype: str = "float64") -> list[str]:
    return [c.name for c in cases(dtype)]


def threshold(knots: np.ndarray, min_gap: float | None) -> np.floating:
    """The duplicate threshold in the knots' dtype, computed as the rule computes it."""
    t = knots.dtype.type
    if min_gap is not None:
        return t(min_gap)
    eps = np.finfo(knots.dtype).eps
    return t(np.max(np.abs(knots)) * t(DUPLICATE_EPS_FACTOR * eps))


@dataclass
class Reference:
    """numpy.interp's value and bin, and the contract's partials, per query (float64)."""

    out: np.ndarray  # numpy.interp of the float64 data
    j: np.ndarray  # lower knot index of the bin (padded knots for N == 1)
    inside: np.ndarray  # knots[0] <= x < knots[-1]
    genuine: np.ndarray  # inside and gap > threshold
    duplicate: np.ndarray  # inside and gap <= threshold
    gap: np.ndarray  # knots[j+1] - knots[j] (float64)
    dvalue: np.ndarray  # values[j+1] - values[j] (float64)
    slope_np: np.ndarray  # slope of numpy's bin (0 outside [knots[0], knots[-1]))
    scale: np.ndarray  # |slope| |x| + |f0| + |f1| of the bracketing bin
    thr: float
    dx: np.ndarray  # contract d out / d x
    jac_values: np.ndarray = field(repr=False)  # (M, N) contract d out_i / d values_m
    jac_knots: np.ndarray = field(repr=False)  # (M, N) contract d out_i / d knots_m (knot_grad="exact")


def reference(
    knots: np.ndarray, values: np.ndarray, x: np.ndarray, case: Case | None = None, **kw: object
) -> Reference:
    """The contract for one problem; ``knots``/``values``/``x`` share one float dtype."""
    left = kw.get("left", case.left if case else None)
    right = kw.get("right", case.right if case else None)
    min_gap = kw.get("min_gap", case.min_gap if case else None)
    n_orig = knots.shape[0]
    thr = threshold(knots, min_gap)  # type: ignore[arg-type]
    kd, vd = knots, values
    if n_orig == 1:
        kd, vd = np.concatenate([knots, knots]), np.concatenate([values, values])
    n = kd.shape[0]
    with np.errstate(all="ignore"):
        j = np.clip(np.searchsorted(kd, x, side="right") - 1, 0, n - 2)
        gap_dt = kd[j + 1] - kd[j]  # in the dtype, as the rule computes it
        k64, v64, x64 = kd.astype(np.float64), vd.astype(np.float64), x.astype(np.float64)
        out = np.interp(x64, knots.astype(np.float64), values.astype(np.float64), left=left, right=right)
        k0, k1, f0, f1 = k64[j], k64[j + 1], v64[j], v64[j + 1]
        gap = k1 - k0
        dval = f1 - f0
        inside = (x64 >= k64[0]) & (x64 < k64[-1])
        genuine = inside & (gap_dt > thr)
        duplicate = inside & ~genuine
        slope_np = np.where(inside & (gap > 0), dval / np.where(gap > 0, gap, 1.0), 0.0)
        scale = np.where(slope_np != 0, np.abs(slope_np) * np.abs(x64), 0.0) + np.abs(f0) + np.abs(f1)
        slope = np.where(genuine, slope_np, 0.0)
        w = np.where(inside, (x64 - k0) / np.where(inside, gap, 1.0), 0.0)
        at_end = (x64 >= k64[-1]) if right is None else (x64 == k64[-1])
        a1 = np.where(inside, w, at_end.astype(np.float64))
        a0 = np.where(inside, 1.0 - w, (x64 < k64[0]).astype(np.float64) if left is None else 0.0)
        b1 = -slope * w
        b0 = -slope * (1.0 - w)
    m = x.shape[0]
    rows = np.arange(m)
    jv = np.zeros((m, n))
    jk = np.zeros((m, n))
    np.add.at(jv, (rows, j), a0)
    np.add.at(jv, (rows, j + 1), a1)
    np.add.at(jk, (rows, j), b0)
    np.add.at(jk, (rows, j + 1), b1)
    if n_orig == 1:
        jv = jv.sum(axis=1, keepdims=True)
        jk = jk.sum(axis=1, keepdims=True)
        # numpy.interp's one-knot path copies the value for a NaN query too.
        jv[np.isnan(x64), 0] = 1.0
    return Reference(out, j, inside, genuine, duplicate, gap, dval, slope_np, scale, float(thr), slope, jv, jk)


def jac_rows(case: Case) -> np.ndarray:
    """Deterministic query subset for per-entry Jacobians: duplicate-bin queries first, then a spread."""
    m = case.queries.shape[0]
    if m <= JAC_QUERIES:
        return np.arange(m)
    ref = reference(case.knots, case.values, case.queries, case)
    dup = np.flatnonzero(ref.duplicate)[: JAC_QUERIES // 4]
    rest = np.setdiff1d(np.arange(m), dup)
    pick = np.random.default_rng(0).choice(rest, JAC_QUERIES - dup.size, replace=False)
    return np.sort(np.concatenate([dup, pick]))


# -- error measures ---------------------------------------------------------------


def forward_error(out: np.ndarray, ref: Reference, eps: float) -> np.ndarray:
    """|out - numpy.interp| in units of eps * (|slope| |x| + |f0| + |f1|); NaN must match NaN."""
    out = out.astype(np.float64)
    both_nan = np.isnan(out) & np.isnan(ref.out)
    with np.errstate(all="ignore"):
        diff = np.abs(out - ref.out)
        err = np.where(diff == 0, 0.0, diff / (eps * ref.scale))
    err = np.where(both_nan, 0.0, err)
    return np.where(np.isnan(err), np.inf, err)


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in units in the last place of the dtype; NaN == NaN, +0 == -0."""
    a = np.asarray(a)
    b = np.asarray(b, dtype=a.dtype)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    with np.errstate(all="ignore"):
        d = np.abs(a.astype(np.float64) - b.astype(np.float64)) / np.spacing(
            np.maximum(np.abs(a), np.abs(b)).astype(a.dtype)
        ).astype(np.float64)
    return np.where(same, 0.0, np.where(np.isnan(d), np.inf, d))


def rel_error(a: np.ndarray, b: np.ndarray, floor: np.ndarray | float = 0.0) -> np.ndarray:
    """|a - b| / max(|a|, |b|, floor); 0 where equal (also both zero), inf where non-finite."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    with np.errstate(all="ignore"):
        diff = np.abs(a - b)
        den = np.maximum(np.maximum(np.abs(a), np.abs(b)), floor)
        err = np.where(a == b, 0.0, diff / den)
    return np.where(np.isfinite(err), err, np.inf)


def worst(a: np.ndarray) -> float:
    return float(np.max(a)) if np.size(a) else 0.0
