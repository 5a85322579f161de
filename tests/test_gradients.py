"""The first-derivative contract of ``knotsafe.interp``, through every autodiff mode of JAX and PyTorch.

References are never knotsafe's own numbers: the contract's partials transcribed independently in
NumPy (:func:`tests._contract.contract_partials`, the README's "The gradient contract"), the
contract's own numbers written here, and central differences of ``numpy.interp`` with steps that
cross no knot.  Sections: every point class of the contract; ``left``/``right`` and queries on the
knots; the duplicate threshold; the knot cases of :mod:`knotsafe.testing`; forward and reverse
mode, ``jit`` and ``vmap``; the rule's tangents and cotangents on every backend; PyTorch's own
autodiff entry points (dual numbers, ``torch.func``, ``torch.compile``, devices).
"""

from __future__ import annotations

import contextlib
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np
import pytest

import knotsafe
from knotsafe import backends
from knotsafe._lib.backends import registry
from knotsafe._lib.rule import InterpRule
from knotsafe.testing import KnotCase, knot_cases, lens_grid, plain_interp
from tests._contract import (
    KNOTS,
    KNOTS_T,
    VALUES,
    VALUES_T,
    X_T,
    X,
    contract_partials,
    contract_threshold,
    expected_cotangent,
    expected_tangent,
)
from tests._support import (
    AutoDiff,
    asarray,
    backend_module,
    backend_name,
    bin_index,
    cast_case,
    eps_of,
    has_float64,
    interior,
    interp_jacobians,
    to_numpy,
)

CASES = {c.name: c for c in knot_cases()}
SMALL = [name for name, c in CASES.items() if c.knots.size <= 100]


def _dt(xp: ModuleType) -> str:
    return "float64" if has_float64(xp) else "float32"


def _threshold(k: np.ndarray) -> float:
    """The contract's 8 eps max|knots| (written in tests/_contract.py, not imported from src)."""
    return contract_threshold(k, k.dtype.name)


def _torch(dt: str) -> tuple[Any, ...]:
    """The partials case (tests/_contract.py) and its tangents as PyTorch tensors."""
    import torch

    return tuple(torch.asarray(a.astype(dt)) for a in (X, KNOTS, VALUES, X_T, KNOTS_T, VALUES_T))


# --- every point class of the contract ------------------------------------------------------------


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


# --- left, right and queries on the knots ---------------------------------------------------------


@pytest.mark.parametrize("kw", LEFT_RIGHT)
def test_left_right_gradients(xp: ModuleType, autodiff: AutoDiff, kw: dict) -> None:
    """d/dx, d/dknots, d/dvalues with left/right: constants get no weight, the end value only where copied."""
    dt = _dt(xp)
    k = np.array([0.0, 1.0, 3.0])
    v = np.array([0.0, 2.0, 10.0])
    x = np.array([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 4.0, -np.inf, np.inf])
    gx, gk, gv = interp_jacobians(autodiff, xp, x, k, v, dt, **kw)
    _, ex, ek, ev = contract_partials(x, k, v, threshold=contract_threshold(k, dt), **kw)
    # Every expected partial is a small dyadic rational (slopes 2 and 4, w in {0, 1/2}):
    # exact in any float dtype, so exact equality is the derived tolerance.
    np.testing.assert_array_equal(gx, ex)
    np.testing.assert_array_equal(gk, ek)
    np.testing.assert_array_equal(gv, ev)


def test_dvalues_with_right_set_gives_no_weight_above_range(xp: ModuleType, autodiff: AutoDiff) -> None:
    """d sum/d values is [0.5, 0.5] with right= (the constant above the range has no weight), [0.5, 1.5] without."""
    dt = _dt(xp)
    x, k, v = (asarray(xp, a, dt) for a in ([0.5, 2.0], [0.0, 1.0], [5.0, 6.0]))
    (gv,) = autodiff.grad(lambda a: knotsafe.interp(x, k, a, right=9.0), [v], (0,))
    np.testing.assert_array_equal(gv, [0.5, 0.5])
    (gv,) = autodiff.grad(lambda a: knotsafe.interp(x, k, a), [v], (0,))
    np.testing.assert_array_equal(gv, [0.5, 1.5])


def test_derivative_on_first_interior_and_last_knot(xp: ModuleType, autodiff: AutoDiff) -> None:
    """At a knot the right-hand derivative: the first bin's slope at k0, the next bin's at k1, 0 at the last."""
    dt = _dt(xp)
    k, v = np.array([0.0, 1.0, 3.0]), np.array([0.0, 2.0, 10.0])
    x = np.array([0.0, 1.0, 3.0])
    for kw in ({}, {"right": 9.0}, {"left": -1.0}):
        gx, gk, gv = interp_jacobians(autodiff, xp, x, k, v, dt, **kw)
        np.testing.assert_array_equal(gx, [2.0, 4.0, 0.0])
        # On a knot w = 0: the bin's lower knot and value carry everything.
        np.testing.assert_array_equal(gk, [[-2.0, 0.0, 0.0], [0.0, -4.0, 0.0], [0.0, 0.0, 0.0]])
        np.testing.assert_array_equal(gv, np.eye(3))


# --- the duplicate threshold ----------------------------------------------------------------------


@pytest.mark.parametrize("factor", [7.9, 8.1])
def test_duplicate_threshold_is_eight_eps_max_abs_knot(
    xp: ModuleType, autodiff: AutoDiff, dtype_name: str, factor: float
) -> None:
    """A gap of 7.9 eps max|k| is a duplicate (slope 0), 8.1 eps max|k| is genuine (the exact slope).

    max|k| = 4 comes from a negative knot, so the scale is the largest
    magnitude, not the largest knot or the bin's own knots.  The bin [0, g]
    sits at zero, where g is representable to relative eps (the 1.25 %
    margin on either side of 8 is far above any rounding of g).
    """
    eps = float(np.finfo(dtype_name).eps)
    g = float(np.asarray(factor * eps * 4.0, dtype=dtype_name))
    k = np.array([-4.0, 0.0, g, 1.0], dtype=dtype_name)
    v = np.array([0.0, 1.0, 2.0, 3.0], dtype=dtype_name)
    x = np.array([g / 2], dtype=dtype_name)
    K, V = asarray(xp, k, dtype_name), asarray(xp, v, dtype_name)
    (gx,) = autodiff.grad(lambda a: knotsafe.interp(a, K, V), [asarray(xp, x, dtype_name)], (0,))
    (gk,) = autodiff.grad(lambda b: knotsafe.interp(asarray(xp, x, dtype_name), b, V), [K], (0,))
    if factor < 8:
        assert gx[0] == 0.0
        np.testing.assert_array_equal(gk, 0.0)
    else:
        slope = 1.0 / float(k[2])  # rise 1 over the gap, in float64
        # One division (and one subtraction of exact operands) in the dtype: <= eps relative.
        assert abs(gx[0] - slope) <= eps * slope
        # d/dk1 = d/dk2 = -slope/2 (w = 1/2), within 2 eps relative (slope and 1 - w).
        np.testing.assert_allclose(gk, [0.0, -slope / 2, -slope / 2, 0.0], rtol=2 * eps, atol=0)


@pytest.mark.parametrize("mode", ["rev", "fwd"])
def test_gap_exactly_at_threshold_is_a_duplicate(
    xp: ModuleType, autodiff: AutoDiff, dtype_name: str, mode: str
) -> None:
    """ "gap <= 8 eps max|k|": a gap of exactly 8 eps * 4 = 32 eps (a power of two, exact) is a duplicate,
    in reverse and forward mode (each mode computes the partials its own way).

    PyTorch's reverse mode uses the first-order partials, its forward mode (and every JAX mode) the
    differentiable ones: both must call the gap a duplicate, d/dx = 0, while the genuine bin beside it
    keeps its slope (1 / 4).  The gradient of the sum takes ``torch.autograd``'s path, the Jacobian
    ``torch.func``'s.
    """
    eps = float(np.finfo(dtype_name).eps)
    g = 8.0 * eps * 4.0
    k, v = asarray(xp, [-4.0, 0.0, g, 1.0], dtype_name), asarray(xp, [0.0, 1.0, 2.0, 3.0], dtype_name)
    jac = autodiff.jacobian(lambda a: knotsafe.interp(a, k, v), [asarray(xp, [g / 2, -2.0], dtype_name)], 0, mode)
    np.testing.assert_array_equal(np.diag(jac), [0.0, 0.25])  # 1 / 4: exact in binary
    if mode == "rev":
        (gx,) = autodiff.grad(lambda a: knotsafe.interp(a, k, v), [asarray(xp, [g / 2], dtype_name)], (0,))
        assert gx[0] == 0.0


# --- the knot cases of knotsafe.testing -----------------------------------------------------------


def _grads(autodiff: AutoDiff, xp: ModuleType, case: KnotCase, dtype_name: str, **kw: object) -> list[np.ndarray]:
    x, k, v = cast_case(case, dtype_name)
    args = [asarray(xp, a, dtype_name) for a in (x, k, v)]
    return autodiff.grad(lambda a, b, c: knotsafe.interp(a, b, c, **kw), args, (0, 1, 2))


@pytest.mark.parametrize("knot_grad", ["exact", "stop"])
@pytest.mark.parametrize("case_name", list(CASES))
def test_gradients_finite_everywhere(
    xp: ModuleType, autodiff: AutoDiff, dtype_name: str, case_name: str, knot_grad: str
) -> None:
    gx, gk, gv = _grads(autodiff, xp, CASES[case_name], dtype_name, knot_grad=knot_grad)
    assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gk)) and np.all(np.isfinite(gv))
    if knot_grad == "stop":
        assert np.all(gk == 0.0)
    if case_name == "nan_queries":
        nan = np.isnan(CASES[case_name].queries)
        assert np.all(gx[nan] == 0.0)


@pytest.mark.parametrize("case_name", ["near_duplicates", "exact_duplicates", "long_run", "lens_grid"])
def test_zero_slope_in_duplicate_bins_and_bounded_elsewhere(
    xp: ModuleType, autodiff: AutoDiff, dtype_name: str, case_name: str
) -> None:
    case = CASES[case_name]
    x, k, v = cast_case(case, dtype_name)
    (gx,) = autodiff.grad(
        lambda a: knotsafe.interp(a, asarray(xp, k, dtype_name), asarray(xp, v, dtype_name)),
        [asarray(xp, x, dtype_name)],
        (0,),
    )
    j = bin_index(k, x)
    gap = k[j + 1].astype(np.float64) - k[j]
    dup = interior(k, x) & (gap <= _threshold(k))
    if case_name == "near_duplicates":
        assert dup.sum() >= 30  # the case really puts queries inside ulp-sized gaps
    assert np.all(gx[dup] == 0.0)
    dv = np.abs(v[j + 1].astype(np.float64) - v[j])
    # The contract's bound |d/dx| <= |dvalues| / threshold (about 1e15 |dvalues| in float64) is
    # loose: check the exact slope instead.  Genuine bins: rise and gap are each one rounded
    # difference in the dtype (eps/2 relative), the quotient one more: <= 3/2 eps relative.
    gap64 = k[j + 1].astype(np.float64) - k[j]
    genuine = interior(k, x) & (gap64 > _threshold(k))
    slope = (v[j + 1].astype(np.float64) - v[j])[genuine] / gap64[genuine]
    assert np.all(np.abs(gx[genuine] - slope) <= 1.5 * eps_of(dtype_name) * np.abs(slope))
    assert np.all(gx[~interior(k, x)] == 0.0)
    assert np.all(np.abs(gx) <= dv / _threshold(k) * (1 + 4 * eps_of(dtype_name)))


def _fd_x(x: np.ndarray, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central differences in x with steps that stay inside each query's bin."""
    x64, k64, v64 = (a.astype(np.float64) for a in (x, k, v))
    j = bin_index(k64, x64)
    room = np.minimum(x64 - k64[j], k64[j + 1] - x64)
    usable = interior(k64, x64) & (room > 0) & (k64[j + 1] - k64[j] > _threshold(k))
    h = np.where(usable, np.minimum(room / 4, 1e-3), 1.0)
    fd = (np.interp(x64 + h, k64, v64) - np.interp(x64 - h, k64, v64)) / (2 * h)
    return fd, usable


def _fd_knots(x: np.ndarray, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d sum(out) / d knots[i] for knots whose neighbours are genuine and no query sits on them."""
    x64, k64, v64 = (a.astype(np.float64) for a in (x, k, v))
    thr = _threshold(k)
    fd = np.zeros_like(k64)
    usable = np.zeros(k64.size, dtype=bool)
    finite_x = x64[~np.isnan(x64)]
    for i in range(1, k64.size - 1):
        left, right = k64[i] - k64[i - 1], k64[i + 1] - k64[i]
        near = np.min(np.abs(finite_x - k64[i])) if finite_x.size else np.inf
        if min(left, right) <= thr or near == 0:
            continue
        h = min(left, right, near) * 1e-4  # central-difference truncation error ~ (h / gap)^2
        kp, km = k64.copy(), k64.copy()
        kp[i] += h
        km[i] -= h
        fd[i] = np.sum(np.interp(finite_x, kp, v64) - np.interp(finite_x, km, v64)) / (2 * h)
        usable[i] = True
    return fd, usable


def _rtol(dtype_name: str) -> float:
    return 1e-6 if dtype_name == "float64" else 1e-3


@pytest.mark.parametrize("case_name", [n for n in SMALL if n not in ("single_knot",)] + ["lens_grid"])
def test_gradients_match_central_differences(
    xp: ModuleType, autodiff: AutoDiff, dtype_name: str, case_name: str
) -> None:
    case = CASES[case_name]
    x, k, v = cast_case(case, dtype_name)
    gx, gk, gv = _grads(autodiff, xp, case, dtype_name)
    fd, usable = _fd_x(x, k, v)
    if case_name in ("random", "lens_grid", "single_pair"):
        assert usable.sum() >= x.size // 3  # the check is not vacuous
    scale = np.max(np.abs(fd[usable]), initial=1.0)
    np.testing.assert_allclose(gx[usable], fd[usable], rtol=_rtol(dtype_name), atol=_rtol(dtype_name) * 1e-3 * scale)
    if k.size <= 100:
        fdk, ok = _fd_knots(x, k, v)
        if ok.any():
            np.testing.assert_allclose(gk[ok], fdk[ok], rtol=_rtol(dtype_name), atol=_rtol(dtype_name) * 1e-3)
        # d sum / d values: the function is linear in the values, so a unit step is exact.
        fin = ~np.isnan(x)  # an infinite query copies an end value: it has a values gradient
        x64, k64, v64 = (a.astype(np.float64) for a in (x[fin], k, v))
        fdv = np.array(
            [np.sum(np.interp(x64, k64, v64 + e) - np.interp(x64, k64, v64 - e)) / 2 for e in np.eye(k.size)]
        )
        np.testing.assert_allclose(gv, fdv, rtol=_rtol(dtype_name), atol=_rtol(dtype_name) * 1e-3)


def test_stop_keeps_x_and_values_gradients(xp: ModuleType, autodiff: AutoDiff, dtype_name: str) -> None:
    case = CASES["exact_duplicates"]
    exact = _grads(autodiff, xp, case, dtype_name, knot_grad="exact")
    stop = _grads(autodiff, xp, case, dtype_name, knot_grad="stop")
    np.testing.assert_array_equal(exact[0], stop[0])
    np.testing.assert_array_equal(exact[2], stop[2])
    assert np.any(exact[1] != 0) and np.all(stop[1] == 0)


def test_min_gap_controls_what_is_a_duplicate(xp: ModuleType, autodiff: AutoDiff) -> None:
    if not has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    k = np.array([0.0, 1.0, 1.0 + 1e-9, 2.0])
    v = np.array([0.0, 1.0, 2.0, 3.0])
    x = np.array([1.0 + 5e-10])

    def gx(**kw: object) -> float:
        return float(
            autodiff.grad(lambda a: knotsafe.interp(a, xp.asarray(k), xp.asarray(v), **kw), [xp.asarray(x)], (0,))[0][0]
        )

    # A 1e-9 gap between knots of size 1 is genuine in float64 (default threshold ~3.6e-15).
    assert gx() == pytest.approx(1e9, rel=1e-6)
    assert gx(min_gap=1e-8) == 0.0
    assert gx(min_gap=0.0) == pytest.approx(1e9, rel=1e-6)


def test_lens_grid_breaks_plain_interp_but_not_knotsafe(xp: ModuleType, autodiff: AutoDiff, dtype_name: str) -> None:
    """The scenario of the reference report: queries at the traced points themselves."""
    data, _ = lens_grid(radius=1.5, sub_size=1, rotation=0.3, dtype=dtype_name)
    k = np.sort(data[:, 0])
    t = (np.arange(1, k.size + 1) / (k.size + 1)).astype(dtype_name)
    args = [asarray(xp, a, dtype_name) for a in (data[:, 0], k, t)]
    g_plain = autodiff.grad(lambda a, b, c: plain_interp(a, b, c), args, (0, 1))
    g_safe = autodiff.grad(lambda a, b, c: knotsafe.interp(a, b, c), args, (0, 1))
    assert max(np.max(np.abs(g)) for g in g_plain) > 1e6 or not all(np.all(np.isfinite(g)) for g in g_plain)
    bound = (1 / (k.size + 1)) / _threshold(k) * 2
    for g in g_safe:
        assert np.all(np.isfinite(g)) and np.max(np.abs(g)) < bound


# --- forward and reverse mode, jit and vmap -------------------------------------------------------


@pytest.mark.parametrize("case_name", ["near_duplicates", "queries_on_knots", "lens_grid"])
@pytest.mark.parametrize("knot_grad", ["exact", "stop"])
def test_forward_mode_equals_reverse_mode(xp: ModuleType, autodiff: AutoDiff, case_name: str, knot_grad: str) -> None:
    case = CASES[case_name]
    dt = _dt(xp)
    q = case.queries[:60]
    x, k, v = (asarray(xp, a, dt) for a in (q, case.knots, case.values))
    for f, arg in (
        (lambda a: knotsafe.interp(a, k, v, knot_grad=knot_grad), x),
        (lambda a: knotsafe.interp(x, a, v, knot_grad=knot_grad), k),
        (lambda a: knotsafe.interp(x, k, a, knot_grad=knot_grad), v),
    ):
        fwd, rev = autodiff.jacobians(f, arg)
        assert np.all(np.isfinite(fwd))
        np.testing.assert_array_equal(fwd, rev)


@pytest.mark.skip_xp_backend("numpy", reason="no autodiff")
@pytest.mark.skip_xp_backend("array_api_strict", reason="no autodiff")
@pytest.mark.skip_xp_backend("dask", reason="no autodiff")
@pytest.mark.parametrize("knot_grad", ["exact", "stop"])
def test_forward_mode_with_no_tangent_on_x(xp: ModuleType, knot_grad: str) -> None:
    """Forward mode where only the knots and values carry tangents (``x`` is a constant).

    PyTorch hands the custom derivative ``None`` for ``x``'s tangent (Partials.tangent's zero
    branch); JAX hands it zeros.  Both must give the contract's ``dknots @ knots_t + dvalues @
    values_t``, and with ``knot_grad="stop"`` only the values' term.
    """
    dt = _dt(xp)
    expected, bound = expected_tangent(dt, None, knot_grad)
    if backend_name(xp) == "torch":
        import torch

        x, k, v, _, kt, vt = _torch(dt)
        _, got = torch.func.jvp(lambda k_, v_: knotsafe.interp(x, k_, v_, knot_grad=knot_grad), (k, v), (kt, vt))
    else:
        import jax

        x, k, v, kt, vt = (asarray(xp, a, dt) for a in (X, KNOTS, VALUES, KNOTS_T, VALUES_T))
        _, got = jax.jvp(lambda k_, v_: knotsafe.interp(x, k_, v_, knot_grad=knot_grad), (k, v), (kt, vt))
    assert np.all(np.abs(to_numpy(got) - expected) <= bound), (to_numpy(got), expected)


@pytest.mark.skip_xp_backend("numpy", reason="jax.jit only")
@pytest.mark.skip_xp_backend("array_api_strict", reason="jax.jit only")
@pytest.mark.skip_xp_backend("torch", reason="jax.jit only")
@pytest.mark.skip_xp_backend("dask", reason="jax.jit only")
def test_jax_jit_gives_identical_values_and_gradients(xp: ModuleType) -> None:
    import jax

    case = CASES["near_duplicates"]
    dt = _dt(xp)
    args = [asarray(xp, a, dt) for a in (case.queries, case.knots, case.values)]

    def f(a, b, c):  # type: ignore[no-untyped-def]
        return knotsafe.interp(a, b, c, left=-1.0)

    np.testing.assert_array_equal(np.asarray(jax.jit(f)(*args)), np.asarray(f(*args)))
    g = jax.grad(lambda *a: f(*a).sum(), argnums=(0, 1, 2))
    for eager, jitted in zip(g(*args), jax.jit(g)(*args), strict=True):
        np.testing.assert_array_equal(np.asarray(jitted), np.asarray(eager))
    tr_fn = jax.jit(lambda p, q: knotsafe.create_transforms(p)[0](q))
    pts = asarray(xp, np.stack([case.knots, case.knots[::-1]], axis=1), dt)
    qs = asarray(xp, np.stack([case.queries[:50], case.queries[50:100]], axis=1), dt)
    np.testing.assert_array_equal(np.asarray(tr_fn(pts, qs)), np.asarray(knotsafe.create_transforms(pts)[0](qs)))


def test_vmap_gives_per_example_results(xp: ModuleType, autodiff: AutoDiff) -> None:
    dt = _dt(xp)
    rng = np.random.default_rng(3)
    knots = np.sort(rng.uniform(0, 1, (4, 12)), axis=1)
    knots[:, 3:6] = knots[:, 3:4]
    values = rng.normal(size=(4, 12))
    queries = rng.uniform(-0.1, 1.1, (4, 30))
    K, V, Q = (asarray(xp, a, dt) for a in (knots, values, queries))
    per_example = np.stack([to_numpy(knotsafe.interp(Q[i], K[i], V[i])) for i in range(4)])
    if backend_name(xp) == "jax":
        import jax

        vm = jax.vmap(knotsafe.interp)
        gvm = jax.vmap(jax.grad(lambda q, k, v: knotsafe.interp(q, k, v).sum(), argnums=(0, 1, 2)))
    else:
        import torch

        vm = torch.func.vmap(knotsafe.interp)
        gvm = torch.func.vmap(torch.func.grad(lambda q, k, v: knotsafe.interp(q, k, v).sum(), argnums=(0, 1, 2)))
    np.testing.assert_array_equal(to_numpy(vm(Q, K, V)), per_example)
    batched = [to_numpy(g) for g in gvm(Q, K, V)]
    for i in range(4):
        single = autodiff.grad(knotsafe.interp, [Q[i], K[i], V[i]], (0, 1, 2))
        for b, s in zip(batched, single, strict=True):
            np.testing.assert_allclose(b[i], s, rtol=1e-12 if dt == "float64" else 1e-6, atol=0)


# --- the rule's partials, tangents and cotangents, on every backend -------------------------------


@pytest.mark.parametrize("knot_grad", ["exact", "stop"])
@pytest.mark.parametrize("missing", ["x", "knots", "values", "x,knots"])
def test_partials_tangent_reads_a_missing_tangent_as_zero(xp: ModuleType, knot_grad: str, missing: str) -> None:
    """``Partials.tangent(None, ...)``: an input without a tangent contributes nothing.

    The rule's documented contract for custom derivatives ("None = zero").  On the pinned
    frameworks no built-in backend hands it None (PyTorch materialises zero tangents, JAX
    instantiates symbolic zeros, the generic path passes arrays), so it is checked directly, on
    every backend, against the contract's tangent with the missing terms left out.
    """
    dt = _dt(xp)
    x, k, v, xt, kt, vt = (asarray(xp, a, dt) for a in (X, KNOTS, VALUES, X_T, KNOTS_T, VALUES_T))
    ns = array_api_compat.array_namespace(x)
    rule = InterpRule(ns, backends.hooks_for(ns), None, None, knot_grad, None)
    _, p = rule.value_and_partials(x, k, v)
    gone = missing.split(",")
    got = p.tangent(None if "x" in gone else xt, None if "knots" in gone else kt, None if "values" in gone else vt)
    expected, bound = expected_tangent(
        dt, None if "x" in gone else X_T, knot_grad, knots="knots" not in gone, values="values" not in gone
    )
    assert np.all(np.abs(to_numpy(got) - expected) <= bound), (to_numpy(got), expected)


@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("knot_grad", ["exact", "stop"])
def test_rule_partials_on_the_strict_standard_namespace(dt: str, first_order: bool, knot_grad: str) -> None:
    """The rule's partials, tangent and cotangent computed on array-api-strict, with its hooks.

    The rule is written once against the array API standard; knotsafe's public API only asks it for
    forward values on array-api-strict (no autodiff), so its derivative code is run here directly
    on the namespace that rejects anything outside the standard (mixed bool/float ``where``, a
    namespace argument left out).  Expected: the contract's tangent and cotangents, in the inputs'
    dtype, None for a gradient that ``needs`` does not ask for, and the same partials again from the
    bins of the first call (``j=``).
    """
    xp = backend_module("array_api_strict")
    x, k, v, xt, kt, vt = (xp.asarray(a.astype(dt)) for a in (X, KNOTS, VALUES, X_T, KNOTS_T, VALUES_T))
    rule = InterpRule(xp, backends.hooks_for(xp), None, None, knot_grad, None)
    _, p = rule.value_and_partials(x, k, v, first_order=first_order)
    expected, bound = expected_tangent(dt, X_T, knot_grad)
    got = p.tangent(xt, kt, vt)
    assert got.dtype == x.dtype
    assert np.all(np.abs(to_numpy(got) - expected) <= bound), (to_numpy(got), expected)
    g = X_T
    grads = p.cotangent(xp.asarray(g.astype(dt)), KNOTS.size)
    for got_i, (expected_i, bound_i) in zip(grads, expected_cotangent(dt, g, knot_grad), strict=True):
        assert got_i is not None and got_i.dtype == x.dtype
        assert np.all(np.abs(to_numpy(got_i) - expected_i) <= bound_i), (to_numpy(got_i), expected_i)
    for needs in [(False, True, True), (True, False, True), (True, True, False), (False, False, True)]:
        some = p.cotangent(xp.asarray(g.astype(dt)), KNOTS.size, needs)
        assert [a is not None for a in some] == list(needs)
    # The bins of an earlier call passed back (``j=``, no search) give the same partials.
    out, again = rule.value_and_partials(x, k, v, first_order=first_order, j=p.j, with_value=False)
    assert out is None
    for name in ("j", "dx", "a0", "a1"):
        np.testing.assert_array_equal(to_numpy(getattr(again, name)), to_numpy(getattr(p, name)))


# --- PyTorch's own autodiff entry points ----------------------------------------------------------


def test_torch_forward_ad_dual_numbers() -> None:
    """torch.autograd.forward_ad (not torch.func): tangents on x, on knots only, and on all three
    inputs reach the output as the contract's partials times the tangents."""
    torch = backend_module("torch")
    import torch.autograd.forward_ad as fwad

    k = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    v = torch.tensor([0.0, 2.0, 10.0], dtype=torch.float64)
    x = torch.tensor([0.5, 2.0, 4.0], dtype=torch.float64)
    ones_x, ones_k, ones_v = (
        torch.ones(3, dtype=torch.float64),
        torch.ones(3, dtype=torch.float64),
        torch.ones(3, dtype=torch.float64),
    )
    # Contract: slopes 2 and 4; w = 1/2 in both bins; 4.0 is above the range (constant).
    d_x = [2.0, 4.0, 0.0]
    d_knots = [-2.0 * 0.5 - 2.0 * 0.5, -4.0 * 0.5 - 4.0 * 0.5, 0.0]  # tangent 1 on every knot: -(slope)
    d_values = [1.0, 1.0, 1.0]  # the weights sum to 1; above the range the last value has weight 1
    with fwad.dual_level():
        out = knotsafe.interp(fwad.make_dual(x, ones_x), k, v)
        np.testing.assert_array_equal(fwad.unpack_dual(out).tangent.numpy(), d_x)
        out = knotsafe.interp(x, fwad.make_dual(k, ones_k), v)
        np.testing.assert_array_equal(fwad.unpack_dual(out).tangent.numpy(), d_knots)
        out = knotsafe.interp(fwad.make_dual(x, ones_x), fwad.make_dual(k, ones_k), fwad.make_dual(v, ones_v))
        expected = np.array(d_x) + np.array(d_knots) + np.array(d_values)
        np.testing.assert_array_equal(fwad.unpack_dual(out).tangent.numpy(), expected)
        # A query inside a near-duplicate bin (4 ulp): the contract's zero slope, not the ~1e15 of
        # differentiating numpy's arithmetic (what plain forward-mode through the values would give).
        near = float(np.nextafter(np.nextafter(np.nextafter(np.nextafter(1.0, 2), 2), 2), 2))
        kd = torch.tensor([0.0, 1.0, near, 3.0], dtype=torch.float64)
        vd = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
        xd = torch.tensor([float(np.nextafter(np.nextafter(1.0, 2), 2))], dtype=torch.float64)
        for args in (
            (fwad.make_dual(xd, torch.ones(1, dtype=torch.float64)), kd, vd),
            (xd, fwad.make_dual(kd, torch.ones(4, dtype=torch.float64)), vd),
            (
                fwad.make_dual(xd, torch.ones(1, dtype=torch.float64)),
                fwad.make_dual(kd, torch.ones(4, dtype=torch.float64)),
                fwad.make_dual(vd, torch.zeros(4, dtype=torch.float64)),
            ),
        ):
            np.testing.assert_array_equal(fwad.unpack_dual(knotsafe.interp(*args)).tangent.numpy(), [0.0])


@pytest.mark.parametrize("no_grad", [False, True], ids=["grad_enabled", "no_grad"])
@pytest.mark.parametrize("duals", ["x", "values", "knots,values", "x,knots,values"])
def test_torch_forward_ad_dual_numbers_on_any_inputs(duals: str, no_grad: bool) -> None:
    """``torch.autograd.forward_ad`` dual numbers on some or all inputs, the others plain tensors, with
    gradients enabled and inside ``torch.no_grad()``: the contract's output tangent of the partials case.

    The PyTorch hooks skip the autograd Function when no input can carry a derivative
    (``_plain_tensor``); a dual number with a tangent must never be taken for a plain tensor,
    whichever inputs are dual, or its tangent would silently be dropped.  ``no_grad`` disables
    reverse mode only; the Function's ``jvp`` then runs with gradients disabled, and must still
    recompute the partials (the saved ones hold only those a reverse-mode gradient of the inputs
    reads: with one dual input the others are empty placeholders).
    """
    torch = backend_module("torch")
    import torch.autograd.forward_ad as fwad

    dt = "float64"
    x, k, v, xt, kt, vt = _torch(dt)
    which = duals.split(",")
    expected, bound = expected_tangent(
        dt, X_T if "x" in which else None, knots="knots" in which, values="values" in which
    )
    with torch.no_grad() if no_grad else contextlib.nullcontext(), fwad.dual_level():
        args = {"x": x, "knots": k, "values": v}
        for name, t in (("x", xt), ("knots", kt), ("values", vt)):
            if name in which:
                args[name] = fwad.make_dual(args[name], t)
        got = fwad.unpack_dual(knotsafe.interp(args["x"], args["knots"], args["values"])).tangent
    assert got is not None, "the output carries no tangent"
    assert np.all(np.abs(got.numpy() - expected) <= bound), (got, expected)


@pytest.mark.parametrize("grads", ["x", "knots", "values", "x,knots", "x,values", "knots,values", "x,knots,values"])
def test_torch_reverse_mode_for_each_subset_of_inputs_requiring_a_gradient(grads: str) -> None:
    """``torch.autograd.grad`` with respect to every subset of the inputs, the others plain tensors.

    The PyTorch Function computes only the partials that a gradient of an input which may need one
    reads (``needs``, from ``_plain_tensor``); a wrong ``needs`` entry leaves a partial that autograd
    asks for an empty placeholder.  Expected: the contract's ``g @ d/dx``, ``g @ d/dknots``, ``g @
    d/dvalues`` within the bounds of :func:`tests._contract.expected_cotangent`.
    """
    torch = backend_module("torch")
    dt = "float64"
    x, k, v, *_ = _torch(dt)
    which = grads.split(",")
    args = {"x": x, "knots": k, "values": v}
    for name in which:
        args[name] = args[name].clone().requires_grad_()
    g = np.linspace(-1.3, 1.7, X.size)  # no zero entry: every query's partials reach the gradient
    out = knotsafe.interp(args["x"], args["knots"], args["values"])
    got = torch.autograd.grad(out, [args[n] for n in which], grad_outputs=torch.asarray(g))
    expected = dict(zip(("x", "knots", "values"), expected_cotangent(dt, g, "exact"), strict=True))
    for name, gi in zip(which, got, strict=True):
        e, bound = expected[name]
        assert np.all(np.abs(gi.numpy() - e) <= bound), (name, gi, e)


def test_torch_nested_transform_with_constant_inputs_at_the_inner_level() -> None:
    """An outer ``torch.func.grad`` through an inner transform for which interp's inputs are constants.

    At the inner level the queries carry no gradient and no tangent, but they are functorch-wrapped
    tensors of the outer level: the PyTorch hooks must still attach the gradient rule (not the plain
    forward, whose derivative in the 2-ulp bin is the slope ~1e16).  Expected: the contract's
    d/dx (0 in the near-duplicate bin, the slope 1 in [0, 1)) times d x / d theta = x0.
    """
    torch = backend_module("torch")

    near = float(np.nextafter(np.nextafter(3.0, 4.0), 4.0))  # a 2-ulp bin: a duplicate
    k_np, v_np = np.array([0.0, 1.0, 3.0, near, 5.0]), np.array([0.0, 1.0, 2.0, 7.0, 1.0])
    x0 = np.array([float(np.nextafter(3.0, 4.0)), 0.5])
    k, v, x0_t = (torch.asarray(a) for a in (k_np, v_np, x0))

    def outer(theta: object) -> object:
        x = x0_t * theta
        inner = torch.func.grad(lambda s: (s * knotsafe.interp(x, k, v)).sum())
        return inner(torch.asarray(1.0, dtype=torch.float64))

    got = float(torch.func.grad(outer)(torch.asarray(1.0, dtype=torch.float64)))
    _, ex, _, _ = contract_partials(x0, k_np, v_np, threshold=contract_threshold(k_np, "float64"))
    expected = float(ex @ x0)
    # Two products and one sum of terms <= 1 in float64: within 4 eps of the float64 reference.
    assert abs(got - expected) <= 4 * np.finfo(np.float64).eps, (got, expected)


@pytest.mark.parametrize("knot_grad", ["exact", "stop"])
def test_torch_outputs_and_gradients_stay_on_the_inputs_device(knot_grad: str) -> None:
    """Every array the PyTorch path creates lives on the inputs' device, not the default one.

    PyTorch's ``meta`` device (shapes and dtypes, no data) is a second device on any machine, so
    this runs without a GPU.  Zeros made without ``device=`` (the scatter-add's accumulator, the
    knot gradient under ``knot_grad="stop"``) would land on the CPU: ``index_add`` and autograd's
    gradient validation both refuse to mix devices.  Meta data cannot be read, so the data checks
    are skipped (as under tracing).
    """
    torch = backend_module("torch")
    import array_api_compat.torch as torch_ns

    meta = torch.device("meta")
    index, src = torch.tensor([0, 2, 2], device=meta), torch.ones(3, device=meta)
    assert backends.hooks_for(torch_ns).scatter_add(torch_ns, 4, index, src).device == meta
    x, k, v = (torch.zeros(n, dtype=torch.float64, device=meta).requires_grad_() for n in (5, 4, 4))
    out = knotsafe.interp(x, k, v, knot_grad=knot_grad)
    assert out.device == meta and tuple(out.shape) == (5,)
    grads = torch.autograd.grad(out.sum(), [x, k, v])
    assert [g.device for g in grads] == [meta] * 3
    assert [tuple(g.shape) for g in grads] == [(5,), (4,), (4,)]


def _leaves(*arrays: np.ndarray) -> list[Any]:
    import torch

    return [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]


@pytest.mark.parametrize("knot_grad", ["exact", "stop"])
def test_compiled_interp_forward_and_backward_equal_eager(knot_grad: str) -> None:
    """``torch.compile(fullgraph=True)`` of a loss of interp: the eager values and gradients."""
    torch = backend_module("torch")
    torch._dynamo.reset()  # a cold registry cache must not break the graph either

    registry._cache.clear()
    case = CASES["near_duplicates"]

    def f(x: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (knotsafe.interp(x, k, v, left=-1.0, knot_grad=knot_grad) ** 2).sum()

    compiled = torch.compile(f, fullgraph=True)
    eager_args = _leaves(case.queries, case.knots, case.values)
    comp_args = _leaves(case.queries, case.knots, case.values)
    out_e, out_c = f(*eager_args), compiled(*comp_args)
    out_e.backward()
    out_c.backward()
    # Inductor may fuse a multiply-add (FMA): one rounding per output term,
    # summed over <= 1000 queries: 1e-13 relative bounds it.
    np.testing.assert_allclose(out_c.item(), out_e.item(), rtol=1e-13)
    for e, c in zip(eager_args, comp_args, strict=True):
        assert e.grad is not None and c.grad is not None
        assert torch.isfinite(c.grad).all()
        np.testing.assert_allclose(c.grad.numpy(), e.grad.numpy(), rtol=1e-12, atol=1e-12 * float(e.grad.abs().max()))


@pytest.mark.parametrize("which", [(0,), (1,), (2,), (0, 1), (0, 1, 2)], ids=["x", "knots", "values", "x-knots", "all"])
def test_compiled_first_call_each_subset_equals_eager(which: tuple[int, ...]) -> None:
    """The first knotsafe call of a process may be a compiled one, with any subset of the
    inputs requiring a gradient (each takes its own path through the autograd Function)."""
    torch = backend_module("torch")
    from knotsafe._lib.validation import namespace as _namespace

    torch._dynamo.reset()
    registry._cache.clear()
    _namespace._seen_types.clear()  # first use of the tensor type happens under tracing
    case = CASES["near_duplicates"]

    def f(x: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (knotsafe.interp(x, k, v) ** 2).sum()

    def args() -> list[torch.Tensor]:
        return [
            torch.tensor(a, dtype=torch.float64, requires_grad=i in which)
            for i, a in enumerate((case.queries, case.knots, case.values))
        ]

    comp_args, eager_args = args(), args()
    out_c = torch.compile(f, fullgraph=True)(*comp_args)
    out_e = f(*eager_args)
    grads_c = torch.autograd.grad(out_c, [comp_args[i] for i in which])
    grads_e = torch.autograd.grad(out_e, [eager_args[i] for i in which])
    # Same bound as above: Inductor may fuse a multiply-add per term.
    np.testing.assert_allclose(out_c.item(), out_e.item(), rtol=1e-13)
    for c, e in zip(grads_c, grads_e, strict=True):
        assert torch.isfinite(c).all()
        np.testing.assert_allclose(c.numpy(), e.numpy(), rtol=1e-12, atol=1e-12 * float(e.abs().max()))


@pytest.mark.parametrize("which", ["x", "knots"])
def test_torch_compile_with_one_input_requiring_a_gradient_in_a_duplicate_bin(which: str) -> None:
    """``torch.compile(fullgraph=True)`` where only ``x`` or only the knots require a gradient, with a
    query inside a 2-ulp (duplicate) bin: the compiled call must still attach the gradient rule
    (d/dx and d/dknots are 0 there, the contract's numbers), not differentiate the plain forward,
    whose slope there is about 1e16."""
    torch = backend_module("torch")

    near = float(np.nextafter(np.nextafter(3.0, 4.0), 4.0))
    k, v = np.array([0.0, 1.0, 3.0, near, 5.0]), np.array([0.0, 1.0, 2.0, 7.0, 1.0])
    x = np.array([float(np.nextafter(3.0, 4.0)), 0.5, 4.0])
    args = [torch.asarray(a) for a in (x, k, v)]
    arg = args[0 if which == "x" else 1].requires_grad_()
    torch._dynamo.reset()
    out = torch.compile(lambda a, b, c: knotsafe.interp(a, b, c).sum(), fullgraph=True)(*args)
    (got,) = torch.autograd.grad(out, [arg])
    _, ex, ek, _ = contract_partials(x, k, v, threshold=contract_threshold(k, "float64"))
    expected = ex if which == "x" else ek.sum(axis=0)
    # Slopes 1 and -3 and weights in [0, 1]: each entry a sum of at most 3 products, within 8 eps.
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=8 * np.finfo(np.float64).eps)


def test_torch_func_forward_mode_equals_reverse_mode_in_eager() -> None:
    """``torch.func.jacfwd`` beside ``torch.compile``: eager forward mode still equals reverse mode."""
    torch = backend_module("torch")
    case = CASES["exact_duplicates"]
    x, k, v = (torch.tensor(a, dtype=torch.float64) for a in (case.queries, case.knots, case.values))
    jf = torch.func.jacfwd(lambda a: knotsafe.interp(a, k, v))(x)
    jr = torch.func.jacrev(lambda a: knotsafe.interp(a, k, v))(x)
    np.testing.assert_array_equal(jf.numpy(), jr.numpy())


def test_torch_private_apis_missing_or_raising_fall_back_to_the_function(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without torch's private functorch/forward-AD probes, every path still gets the rule's gradients."""
    torch = backend_module("torch")
    import torch.autograd.forward_ad as fwd_ad

    from knotsafe._lib.backends import torch_hooks as _hooks_torch

    knots = torch.tensor([0.0, 1.0, 1.0, 2.0], dtype=torch.float64)
    values = torch.tensor([0.0, 1.0, 3.0, 4.0], dtype=torch.float64)
    x = torch.tensor([0.25, 0.999, 1.5], dtype=torch.float64)
    # The contract's numbers: slope 1 in [0, 1), 1 in [1, 2); the duplicate bin is never used.
    want_gx = [1.0, 1.0, 1.0]

    def boom(*a: object) -> bool:
        raise RuntimeError("private API changed")

    for how in ("missing", "raising"):
        with monkeypatch.context() as m:
            if how == "missing":
                m.delattr(torch._C._functorch, "is_functorch_wrapped_tensor")
                m.delattr(fwd_ad, "_current_level")
            else:
                m.setattr(torch._C._functorch, "is_functorch_wrapped_tensor", boom)
                m.setattr(fwd_ad, "unpack_dual", boom)
                m.setattr(fwd_ad, "_current_level", 0)
            assert not _hooks_torch._plain_tensor(x)
            out = knotsafe.interp(x, knots, values)
            np.testing.assert_array_equal(out.numpy(), np.interp(x.numpy(), knots.numpy(), values.numpy()))
            gx = torch.func.grad(lambda a: knotsafe.interp(a, knots, values).sum())(x)
            np.testing.assert_array_equal(gx.numpy(), want_gx)
            gk = torch.func.grad(lambda k: knotsafe.interp(x, k, values).sum())(knots)
            # -slope * (1 - w) and -slope * w summed per knot; 1 ulp of rounding in the sums.
            np.testing.assert_allclose(gk.numpy(), [-0.751, -1.249, -0.5, -0.5], rtol=4e-16, atol=0)
            leaf = x.clone().requires_grad_()
            knotsafe.interp(leaf, knots, values).sum().backward()
            assert leaf.grad is not None
            np.testing.assert_array_equal(leaf.grad.numpy(), want_gx)
