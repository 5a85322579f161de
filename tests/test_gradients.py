"""Every point class of the gradient contract, on every autodiff backend and both knot_grad policies.

The expected partials d/dx, d/dknots, d/dvalues come from the README's table
("The gradient contract"), transcribed independently in NumPy
(:func:`tests._contract.contract_partials`); the duplicate threshold is the
contract's ``8 eps max|knots|``, written in the test.  Classes: inside a
genuine bin, inside a near-duplicate bin, on an interior knot, on a run of
exact duplicates, on a near-duplicate knot, on the first and the last knot,
below and above the range, NaN and +-inf, each with and without
``left``/``right``; and a single knot.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

import knotsafe
from tests._contract import contract_partials, contract_threshold
from tests._support import AutoDiff, asarray, interp_jacobians, to_numpy


def _ulps(x: float, n: int, dtype_name: str) -> float:
    """x moved up by n ulps in the dtype."""
    y = np.asarray(x, dtype=dtype_name)
    for _ in range(n):
        y = np.nextafter(y, np.asarray(np.inf, dtype=dtype_name))
    return float(y)


def _case(dtype_name: str) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Knots with a run of exact duplicates (2, 2, 2) and a near-duplicate pair (3, 3 + 4 ulp).

    max|k| = 5: the threshold 8 eps * 5 = 40 eps is 20 ulps at 3 (ulp 2 eps
    there), so the 4-ulp gap is a duplicate by a factor 5, while the smallest
    genuine gap (1) is 1e13 (float64) or 1e5 (float32) times the threshold.
    """
    near = _ulps(3.0, 4, dtype_name)
    knots = np.array([0.0, 1.0, 2.0, 2.0, 2.0, 3.0, near, 5.0])
    values = np.array([0.5, -1.25, 3.0, 0.75, 2.5, 1.0, 4.0, -2.0])
    points = {
        "inside_genuine_bin": 0.375,
        "inside_bin_after_run": 2.625,
        "inside_near_duplicate_bin": _ulps(3.0, 2, dtype_name),
        "on_interior_knot": 1.0,
        "on_run_of_duplicates": 2.0,
        "on_near_duplicate_knot": near,
        "on_lower_near_duplicate_knot": 3.0,
        "on_first_knot": 0.0,
        "on_last_knot": 5.0,
        "below_range": -1.5,
        "above_range": 6.5,
        "nan": np.nan,
        "+inf": np.inf,
        "-inf": -np.inf,
    }
    return points, knots, values


LEFT_RIGHT = [
    pytest.param({}, id="no_left_right"),
    pytest.param({"left": -3.0}, id="left"),
    pytest.param({"right": 7.0}, id="right"),
    pytest.param({"left": -3.0, "right": 7.0}, id="left_right"),
]


def _bound(expected: np.ndarray, slope_max: float, dt: str) -> np.ndarray:
    """Rounding bound of a partial computed in ``dt`` against the float64 transcription.

    Each partial is at most a product of a slope (rise/gap: two roundings of
    the differences, one of the quotient, <= 3 eps/2 relative) and a weight
    (w = d0/gap: <= 3 eps/2; 1 - w: <= eps/2 + 3 eps/2 |w|) plus one product
    rounding: under 4 eps |slope| for knot partials, 2 eps for value weights
    in [0, 1], 3 eps/2 |slope| for d/dx.  4 eps (|expected| + max|slope|)
    covers all three.
    """
    return 4 * float(np.finfo(dt).eps) * (np.abs(expected) + slope_max)


@pytest.mark.parametrize("knot_grad", ["exact", "stop"])
@pytest.mark.parametrize("kw", LEFT_RIGHT)
def test_every_point_class(
    xp: ModuleType, autodiff: AutoDiff, dtype_name: str, knot_grad: str, kw: dict[str, float]
) -> None:
    points, k, v = _case(dtype_name)
    names = list(points)
    x = np.array([points[n] for n in names], dtype=dtype_name)
    k, v = k.astype(dtype_name), v.astype(dtype_name)
    thr = contract_threshold(k, dtype_name)
    gaps = np.diff(k.astype(np.float64))
    assert gaps[5] <= thr / 4 and gaps[[0, 1, 4, 6]].min() > 1e4 * thr  # the case is what it says
    gx, gk, gv = interp_jacobians(autodiff, xp, x, k, v, dtype_name, knot_grad=knot_grad, **kw)
    _, ex, ek, ev = contract_partials(x, k, v, threshold=thr, knot_grad=knot_grad, **kw)
    genuine = gaps > thr
    slope_max = float(np.max(np.abs(np.diff(v.astype(np.float64))[genuine] / gaps[genuine])))
    for got, exp, what in ((gx, ex, "d/dx"), (gk, ek, "d/dknots"), (gv, ev, "d/dvalues")):
        assert np.all(np.isfinite(got)), what
        bad = np.abs(got - exp) > _bound(exp, slope_max, dtype_name)
        rows = np.nonzero(bad.reshape(len(names), -1).any(axis=1))[0]
        assert not rows.size, f"{what} wrong at {[names[i] for i in rows]}: got {got[rows]}, expected {exp[rows]}"
    # Sanity of the transcription itself: the classes it must distinguish.
    i = names.index
    assert ex[i("inside_near_duplicate_bin")] == 0 and ev[i("inside_near_duplicate_bin")].sum() == 1
    assert ex[i("on_last_knot")] == 0 and ev[i("on_last_knot"), -1] == 1
    assert ex[i("on_run_of_duplicates")] == (v[5] - v[4]) / (k[5] - k[4])
    assert not np.any(ev[i("nan")]) and not np.any(ek[i("nan")])
    if knot_grad == "stop":
        assert not np.any(gk)


@pytest.mark.parametrize("kw", LEFT_RIGHT)
@pytest.mark.parametrize("knot_grad", ["exact", "stop"])
def test_single_knot(xp: ModuleType, autodiff: AutoDiff, dtype_name: str, knot_grad: str, kw: dict) -> None:
    """One knot: numpy.interp's values (NaN query copies the value); no slope anywhere."""
    k, v = np.array([2.0], dtype=dtype_name), np.array([7.0], dtype=dtype_name)
    x = np.array([1.0, 2.0, 3.0, np.nan, np.inf, -np.inf], dtype=dtype_name)
    X, K, V = (asarray(xp, a, dtype_name) for a in (x, k, v))
    got = to_numpy(knotsafe.interp(X, K, V, knot_grad=knot_grad, **kw))
    value, ex, ek, ev = contract_partials(x, k, v, threshold=contract_threshold(k, dtype_name), **kw)
    np.testing.assert_array_equal(got, value.astype(dtype_name))  # copies of 7, left or right: exact
    gx, gk, gv = interp_jacobians(autodiff, xp, x, k, v, dtype_name, knot_grad=knot_grad, **kw)
    np.testing.assert_array_equal(gx, ex)
    np.testing.assert_array_equal(gk, ek)
    np.testing.assert_array_equal(gv, ev)
