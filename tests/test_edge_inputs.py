"""Infinite knots and values as a family (issue 11, items 2 and 6), on every backend, under hypothesis.

References: ``numpy.interp`` in float64 on the same data for the values, and the
bin slopes worked out here for ``d/dx`` (zero on bins touching an infinite knot,
as the contract says).  ``tests/test_rule_edges.py`` has the issue's own examples.
"""

from __future__ import annotations

from types import ModuleType

import array_api_compat
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import knotsafe
from knotsafe import backends
from knotsafe.backends import generic_linearize, hooks_for
from tests._support import AutoDiff, asarray, has_float64, to_numpy

FIXTURE_HYPOTHESIS = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

_HUNDREDTHS = st.integers(-1000, 1000).map(lambda i: i / 100)


def _case(
    knots: list[float], values: list[float], queries: list[float], lo_inf: bool, hi_inf: bool, inf_value: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k = np.unique(np.asarray(knots))
    k = np.concatenate([[-np.inf] if lo_inf else [], k, [np.inf] if hi_inf else []])
    v = np.asarray(values[: k.size], dtype=np.float64)
    if inf_value is not None:
        v[inf_value % k.size] = np.inf if inf_value % 2 else -np.inf
    x = np.concatenate([np.asarray(queries), [np.inf, -np.inf, k[0], k[-1]]])
    return x, k, v


def _check_values(got: np.ndarray, want: np.ndarray, x: np.ndarray, v: np.ndarray, dt: str) -> None:
    """Non-finite results bitwise (inf sign, NaN where numpy gives NaN); finite ones within the
    contract's 4 eps (|f0| + |f1| + |slope x|) <= 4 eps (2 max|v| + max|v| / min gap * max|x|)
    (float32 data is rounded once, so float64 numpy.interp on it is the reference)."""
    finite = np.isfinite(want)
    np.testing.assert_array_equal(got[~finite], want[~finite])
    fv = v[np.isfinite(v)]
    scale = 2 * np.abs(fv).max(initial=1.0) * (1 + 200 * np.abs(x[np.isfinite(x)]).max(initial=1.0))
    np.testing.assert_allclose(got[finite], want[finite], rtol=0, atol=4 * np.finfo(dt).eps * scale)


#: Knot sets with an infinite first and/or last knot, values and queries on the same grid.
_INFINITE_CASES = dict(
    knots=st.lists(_HUNDREDTHS, min_size=2, max_size=8, unique=True),
    values=st.lists(_HUNDREDTHS, min_size=10, max_size=10),
    queries=st.lists(st.integers(-1200, 1200).map(lambda i: i / 100), min_size=8, max_size=8),
    lo_inf=st.booleans(),
    hi_inf=st.booleans(),
)


@FIXTURE_HYPOTHESIS
@given(**_INFINITE_CASES, inf_value=st.none() | st.integers(0, 20))
def test_infinite_knots_and_values_forward_is_numpy_interp(
    xp: ModuleType,
    knots: list[float],
    values: list[float],
    queries: list[float],
    lo_inf: bool,
    hi_inf: bool,
    inf_value: int | None,
) -> None:
    """Native hooks and the generic stop_gradient path: numpy.interp's values, inf and NaN included."""
    dt = "float64" if has_float64(xp) else "float32"
    x, k, v = _case(knots, values, queries, lo_inf, hi_inf, inf_value)
    x, k, v = (np.asarray(a, dtype=dt) for a in (x, k, v))
    with np.errstate(invalid="ignore"):
        want = np.interp(x.astype(np.float64), k.astype(np.float64), v.astype(np.float64))
    args = [asarray(xp, a, dt) for a in (x, k, v)]
    _check_values(to_numpy(knotsafe.interp(*args)).astype(np.float64), want, x, v, dt)
    ns = array_api_compat.array_namespace(args[0])
    backends.register("edge-generic", hooks_for(ns).replace(linearize=generic_linearize), matches=lambda n: n is ns)
    try:
        generic = to_numpy(knotsafe.interp(*args)).astype(np.float64)
    finally:
        backends.unregister("edge-generic")
    _check_values(generic, want, x, v, dt)


@FIXTURE_HYPOTHESIS
@given(**_INFINITE_CASES)
def test_infinite_knots_keep_the_finite_bins_slopes(
    xp: ModuleType,
    autodiff: AutoDiff,
    knots: list[float],
    values: list[float],
    queries: list[float],
    lo_inf: bool,
    hi_inf: bool,
) -> None:
    """d/dx: the finite bins' slopes (the duplicate threshold uses the largest finite knot),
    0 on bins touching an infinite knot and outside the knots."""
    dt = "float64" if has_float64(xp) else "float32"
    x, k, v = _case(knots, values, queries, lo_inf, hi_inf, None)
    x = x[np.isfinite(x)]
    x, k, v = (np.asarray(a, dtype=dt).astype(np.float64) for a in (x, k, v))
    (gx,) = autodiff.grad(knotsafe.interp, [asarray(xp, a, dt) for a in (x, k, v)], (0,))
    j = np.clip(np.searchsorted(k, x, side="right") - 1, 0, k.size - 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (v[j + 1] - v[j]) / (k[j + 1] - k[j])
    genuine = np.isfinite(k[j]) & np.isfinite(k[j + 1]) & (x >= k[0]) & (x < k[-1])
    want = np.where(genuine, slope, 0.0)
    # A slope of hundredths over a gap >= 0.01: relative rounding of two subtractions and a division.
    np.testing.assert_allclose(gx, want, rtol=4 * np.finfo(dt).eps, atol=0)
