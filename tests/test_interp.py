"""knotsafe.interp: numpy.interp forward values and the duplicate-knot gradient rule."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

import knotsafe
from knotsafe.testing import KnotCase, knot_cases, lens_grid, plain_interp
from tests._contract import contract_threshold
from tests._support import AutoDiff, asarray, backend_module, backend_name, eps_of, has_float64, to_numpy

CASES = {c.name: c for c in knot_cases()}
CASES32 = {c.name: c for c in knot_cases(dtype=np.float32)}
SMALL = [name for name, c in CASES.items() if c.knots.size <= 100]


def _cast(case: KnotCase, dtype_name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if dtype_name == "float32":  # near-duplicates one float32 ulp apart
        case = CASES32[case.name]
    with np.errstate(over="ignore"):  # +-1e300 queries become +-inf in float32, still out of range
        return tuple(np.asarray(a, dtype=dtype_name) for a in (case.queries, case.knots, case.values))  # type: ignore[return-value]


def _bin(k: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(k, x, side="right") - 1, 0, max(k.size - 2, 0))


def _threshold(k: np.ndarray) -> float:
    """The contract's 8 eps max|knots| (written in tests/_contract.py, not imported from src)."""
    return contract_threshold(k, k.dtype.name)


def _interior(k: np.ndarray, x: np.ndarray) -> np.ndarray:
    return (x >= k[0]) & (x < k[-1])


# --- forward values ---------------------------------------------------------


@pytest.mark.parametrize("case_name", list(CASES))
def test_forward_matches_numpy_interp(xp: ModuleType, dtype_name: str, case_name: str) -> None:
    x, k, v = _cast(CASES[case_name], dtype_name)
    ref = np.interp(x.astype(np.float64), k.astype(np.float64), v.astype(np.float64))
    out = knotsafe.interp(asarray(xp, x, dtype_name), asarray(xp, k, dtype_name), asarray(xp, v, dtype_name))
    got = to_numpy(out)
    assert got.dtype == np.dtype(dtype_name)
    assert got.shape == x.shape
    if backend_name(xp) == "numpy" and dtype_name == "float64":
        np.testing.assert_array_equal(got, ref)  # bitwise, NaN positions included
        return
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    ok = ~np.isnan(ref)
    k64, v64, x64 = k.astype(np.float64), v.astype(np.float64), x.astype(np.float64)
    if k.size == 1:
        np.testing.assert_array_equal(got[ok], ref[ok])
        return
    j = _bin(k64, x64)
    gap = k64[j + 1] - k64[j]
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(gap > 0, (v64[j + 1] - v64[j]) / gap, 0.0)
    bound = 4 * eps_of(dtype_name) * (np.abs(slope) * np.abs(x64) + np.abs(v64[j]) + np.abs(v64[j + 1]))
    inside = _interior(k64, x64)
    err = np.abs(got.astype(np.float64) - ref)
    assert np.all(err[ok & inside] <= bound[ok & inside]), np.max((err - bound)[ok & inside])
    np.testing.assert_array_equal(got[ok & ~inside], ref[ok & ~inside].astype(dtype_name))


def test_left_right_and_shape(xp: ModuleType) -> None:
    k = np.array([0.0, 1.0, 1.0, 2.0])
    v = np.array([1.0, 2.0, 3.0, 4.0])
    x = np.array([[-1.0, 0.0, 1.0], [2.0, 2.5, 0.25]])
    got = knotsafe.interp(xp.asarray(x), xp.asarray(k), xp.asarray(v), left=-7.0, right=9.0)
    np.testing.assert_array_equal(to_numpy(got), np.interp(x, k, v, left=-7.0, right=9.0))
    assert tuple(got.shape) == (2, 3)


def test_integer_inputs_promote_to_default_float(xp: ModuleType) -> None:
    out = knotsafe.interp(xp.asarray([0, 1, 2]), xp.asarray([0, 2]), xp.asarray([0, 4]))
    np.testing.assert_array_equal(to_numpy(out), [0.0, 2.0, 4.0])
    assert _ns(out).isdtype(out.dtype, "real floating")


def test_scalar_query(xp: ModuleType) -> None:
    out = knotsafe.interp(xp.asarray(0.5), xp.asarray([0.0, 1.0]), xp.asarray([0.0, 2.0]))
    assert tuple(out.shape) == ()
    assert float(to_numpy(out)) == 1.0


def test_xp_argument_converts_numpy_data(xp: ModuleType) -> None:
    out = knotsafe.interp(np.array([0.5]), np.array([0.0, 1.0]), [0.0, 2.0], xp=xp)
    assert knotsafe.backends.hooks_for(_ns(out)).name == backend_name(xp).replace(
        "array_api_strict", "array_api_strict"
    )
    np.testing.assert_array_equal(to_numpy(out), [1.0])


def _ns(a: object) -> ModuleType:
    import array_api_compat

    return array_api_compat.array_namespace(a)


@pytest.mark.skip_xp_backend("numpy", reason="needs a second array library beside NumPy")
def test_two_libraries_raise_type_error_naming_both(xp: ModuleType) -> None:
    with pytest.raises(TypeError, match=r"`x` is a .* array and `knots` is a numpy array"):
        knotsafe.interp(xp.asarray([0.5]), np.array([0.0, 1.0]), xp.asarray([0.0, 1.0]))


def test_device_is_preserved_on_array_api_strict() -> None:
    xps = backend_module("array_api_strict")
    dev = xps.Device("device1")
    x = xps.asarray([0.25, 0.5], device=dev)
    k = xps.asarray([0.0, 1.0, 1.0, 2.0], device=dev)
    v = xps.asarray([0.0, 1.0, 2.0, 3.0], device=dev)
    assert knotsafe.interp(x, k, v).device == dev
    tr, inv = knotsafe.create_transforms(xps.stack([k, v], axis=1))
    assert tr(xps.stack([x, x], axis=1)).device == dev
    assert inv(xps.stack([x, x], axis=1)).device == dev


# --- bad input ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"knots": [[0.0, 1.0]] * 2, "x": [[0.5]] * 3}, ValueError, "`knots` and `x` do not broadcast"),
        ({"values": [[0.0, 1.0]] * 2, "x": [[0.5]] * 3}, ValueError, "`values` and `x` do not broadcast"),
        ({"values": [0.0, 1.0, 2.0]}, ValueError, "`values` must have the length of `knots`"),
        ({"knots": [], "values": []}, ValueError, "`knots` must not be empty"),
        pytest.param(
            {"knots": [1.0, 0.0]},
            ValueError,
            "`knots` must be non-decreasing",
            marks=pytest.mark.skip_xp_backend(
                "dask", reason="data check: needs values, skipped on lazy dask arrays (tests/test_dask.py)"
            ),
        ),
        pytest.param(
            {"knots": [0.0, float("nan")]},
            ValueError,
            "`knots` must be non-decreasing and free of NaN",
            marks=pytest.mark.skip_xp_backend(
                "dask", reason="data check: needs values, skipped on lazy dask arrays (tests/test_dask.py)"
            ),
        ),
        ({"knot_grad": "bogus"}, ValueError, "`knot_grad`"),
        ({"min_gap": -1.0}, ValueError, "`min_gap`"),
        ({"min_gap": "x"}, TypeError, "`min_gap`"),
        ({"min_gap": "1e-8"}, TypeError, "`min_gap`"),
        ({"left": "x"}, TypeError, "`left`"),
        ({"right": [1.0, 2.0]}, TypeError, "`right`"),
    ],
)
def test_bad_input_names_the_argument(xp: ModuleType, kwargs: dict, exc: type, match: str) -> None:
    kwargs = dict(kwargs)
    args = {"x": [0.5], "knots": [0.0, 1.0], "values": [0.0, 1.0]}
    opts = {k: kwargs.pop(k) for k in list(kwargs) if k not in args}
    args.update(kwargs)
    arrays = [xp.asarray(np.asarray(args[k], dtype=np.float64 if has_float64(xp) else np.float32)) for k in args]
    with pytest.raises(exc, match=match):
        knotsafe.interp(*arrays, **opts)


def test_python_data_without_xp_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="expected arrays"):
        knotsafe.interp([0.5], [0.0, 1.0], [0.0, 1.0])


def test_xp_must_be_a_namespace() -> None:
    with pytest.raises(TypeError, match="`xp`"):
        knotsafe.interp(np.array([0.5]), np.array([0.0, 1.0]), np.array([0.0, 1.0]), xp="numpy")


# --- gradients --------------------------------------------------------------


def _grads(autodiff: AutoDiff, xp: ModuleType, case: KnotCase, dtype_name: str, **kw: object) -> list[np.ndarray]:
    x, k, v = _cast(case, dtype_name)
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
    x, k, v = _cast(case, dtype_name)
    (gx,) = autodiff.grad(
        lambda a: knotsafe.interp(a, asarray(xp, k, dtype_name), asarray(xp, v, dtype_name)),
        [asarray(xp, x, dtype_name)],
        (0,),
    )
    j = _bin(k, x)
    gap = k[j + 1].astype(np.float64) - k[j]
    dup = _interior(k, x) & (gap <= _threshold(k))
    if case_name == "near_duplicates":
        assert dup.sum() >= 30  # the case really puts queries inside ulp-sized gaps
    assert np.all(gx[dup] == 0.0)
    dv = np.abs(v[j + 1].astype(np.float64) - v[j])
    # The contract's bound |d/dx| <= |dvalues| / threshold (about 1e15 |dvalues| in float64) is
    # loose: check the exact slope instead.  Genuine bins: rise and gap are each one rounded
    # difference in the dtype (eps/2 relative), the quotient one more: <= 3/2 eps relative.
    gap64 = k[j + 1].astype(np.float64) - k[j]
    genuine = _interior(k, x) & (gap64 > _threshold(k))
    slope = (v[j + 1].astype(np.float64) - v[j])[genuine] / gap64[genuine]
    assert np.all(np.abs(gx[genuine] - slope) <= 1.5 * eps_of(dtype_name) * np.abs(slope))
    assert np.all(gx[~_interior(k, x)] == 0.0)
    assert np.all(np.abs(gx) <= dv / _threshold(k) * (1 + 4 * eps_of(dtype_name)))


def _fd_x(x: np.ndarray, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central differences in x with steps that stay inside each query's bin."""
    x64, k64, v64 = (a.astype(np.float64) for a in (x, k, v))
    j = _bin(k64, x64)
    room = np.minimum(x64 - k64[j], k64[j + 1] - x64)
    usable = _interior(k64, x64) & (room > 0) & (k64[j + 1] - k64[j] > _threshold(k))
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
    x, k, v = _cast(case, dtype_name)
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
