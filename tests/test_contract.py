"""The documented contract, checked against references knotsafe did not produce.

Each test here was written against a bug put into ``src/`` by hand (see
``docs/mutation.md``): ``left`` ignored without ``right``, ``d/dvalues`` with
``right=``, ``d/dx`` on the first and last knot, the duplicate factor, the
weight gradients of ``create_transforms`` and the mesh, and the ranks
``i/(N+1)``.  References: numpy.interp, the contract's own numbers (written
here, not imported), central differences of an independent NumPy
transcription.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import knotsafe
from knotsafe import rectangular
from tests._contract import (
    contract_partials,
    contract_threshold,
    inverse_reference,
    pyautoarray_mappings,
    transform_reference,
)
from tests._support import AutoDiff, asarray, backend_name, eps_of, has_float64, interp_jacobians, to_numpy


def _dt(xp: ModuleType) -> str:
    return "float64" if has_float64(xp) else "float32"


# --- left / right: forward values --------------------------------------------

KNOTS = np.array([0.0, 1.0])
VALUES = np.array([5.0, 6.0])
# below, inside, above, on the first knot, on the last knot
QUERIES = np.array([-1.0, 0.5, 2.0, 0.0, 1.0])
LEFT_RIGHT = [
    pytest.param({"left": -7.0}, id="left"),
    pytest.param({"right": 9.0}, id="right"),
    pytest.param({"left": -7.0, "right": 9.0}, id="both"),
    pytest.param({}, id="neither"),
]


def _as_scalar(kind: str, value: float, xp: ModuleType, dt: str) -> Any:
    if kind == "python":
        return value
    if kind == "numpy0d":
        return np.asarray(value, dtype=dt)
    return asarray(xp, value, dt)  # a 0-d array of the backend itself


@pytest.mark.parametrize("kind", ["python", "numpy0d", "backend0d"])
@pytest.mark.parametrize("kw", LEFT_RIGHT)
def test_left_right_forward_values(xp: ModuleType, kw: dict, kind: str) -> None:
    """Each of left/right alone and together: numpy.interp's values (all exact in any float dtype)."""
    dt = _dt(xp)
    args = {name: _as_scalar(kind, val, xp, dt) for name, val in kw.items()}
    got = knotsafe.interp(*(asarray(xp, a, dt) for a in (QUERIES, KNOTS, VALUES)), **args)
    # Every expected value (5, 5.5, 6, -7, 9) is exact in float32 and float64.
    np.testing.assert_array_equal(to_numpy(got), np.interp(QUERIES, KNOTS, VALUES, **kw).astype(dt))


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
    """The issue's example: d sum/d values is [1.5, 0.5] with right=, not [1.5, 1.5]."""
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


# --- left / right under jax.jit ------------------------------------------------


@pytest.mark.skip_xp_backend("dask", reason="jax.jit only")
@pytest.mark.skip_xp_backend("numpy", reason="jax.jit only")
@pytest.mark.skip_xp_backend("array_api_strict", reason="jax.jit only")
@pytest.mark.skip_xp_backend("torch", reason="jax.jit only")
@pytest.mark.parametrize("kind", ["python", "numpy0d", "backend0d"])
@pytest.mark.parametrize("kw", LEFT_RIGHT)
def test_left_right_under_jit(xp: ModuleType, kw: dict, kind: str) -> None:
    """left/right are constants of the traced function: values and gradients as eager."""
    import jax

    dt = _dt(xp)
    args = {name: _as_scalar(kind, val, xp, dt) for name, val in kw.items()}
    x, k, v = (asarray(xp, a, dt) for a in (QUERIES, KNOTS, VALUES))

    def f(a: Any, b: Any, c: Any) -> Any:
        return knotsafe.interp(a, b, c, **args)

    np.testing.assert_array_equal(np.asarray(jax.jit(f)(x, k, v)), np.interp(QUERIES, KNOTS, VALUES, **kw).astype(dt))
    _, ex, ek, ev = contract_partials(QUERIES, KNOTS, VALUES, threshold=contract_threshold(KNOTS, dt), **kw)
    gx, gk, gv = jax.jit(jax.grad(lambda a, b, c: f(a, b, c).sum(), argnums=(0, 1, 2)))(x, k, v)
    # Exact: slope 1, w in {0, 1/2} (see test_left_right_gradients).
    np.testing.assert_array_equal(np.asarray(gx), ex)
    np.testing.assert_array_equal(np.asarray(gk), ek.sum(axis=0))
    np.testing.assert_array_equal(np.asarray(gv), ev.sum(axis=0))


# --- the duplicate threshold, from the contract's own numbers ----------------


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


# --- create_transforms: values against sort + numpy.interp on i/(N+1) --------


def _points(rng: np.random.Generator, n: int = 40) -> np.ndarray:
    pts = rng.normal(size=(n, 2))
    pts[5:12] = pts[0]  # duplicated rows: duplicate knots in both columns
    return pts


def _rank_value_bound(points: np.ndarray, q: np.ndarray, dt: str, weighted: bool) -> np.ndarray:
    """Rounding bound of ``transform(q)`` against the exact-arithmetic reference.

    The contract bounds interp by 4 eps (|slope||x| + |f0| + |f1|) of the
    bracketing bin; the ranks f are themselves rounded: i/(N+1) by one
    division (eps/2 relative); weighted ranks by an N-term cumulative sum, a
    division by the largest weight and a scaling (<= (N + 3) eps relative,
    the standard recursive-summation bound).  The output is a convex
    combination of two ranks, so a rank error passes through unamplified.
    """
    eps = float(np.finfo(dt).eps)
    n = points.shape[0]
    rank_err = (n + 3) * eps if weighted else eps
    bound = np.empty(q.shape)
    for d in range(q.shape[1]):
        k = np.sort(points[:, d])
        t = np.arange(1, n + 1) / (n + 1)  # ranks <= 1 bound |f0|, |f1|
        j = np.clip(np.searchsorted(k, q[:, d], side="right") - 1, 0, n - 2)
        gap = k[j + 1] - k[j]
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.where(gap > 0, 1.0 / (gap * (n + 1)) * (n if weighted else 1), 0.0)
        bound[:, d] = 4 * eps * (slope * np.abs(q[:, d]) + 2 * t.max()) + rank_err
    return bound


@pytest.mark.parametrize("weighted", [False, True])
def test_create_transforms_values_against_sort_and_numpy_interp(
    xp: ModuleType, dtype_name: str, weighted: bool, rng: np.random.Generator
) -> None:
    pts = _points(rng).astype(dtype_name)
    w = rng.uniform(0.5, 1.5, pts.shape[0]).astype(dtype_name) if weighted else None
    q = np.concatenate([rng.normal(size=(30, 2)), pts[:10], [[-10.0, -10.0], [10.0, 10.0]]]).astype(dtype_name)
    args = () if w is None else (asarray(xp, w, dtype_name),)
    tr, inv = knotsafe.create_transforms(asarray(xp, pts, dtype_name), *args)
    got = to_numpy(tr(asarray(xp, q, dtype_name))).astype(np.float64)
    ref = transform_reference(pts, q, w)
    bound = _rank_value_bound(pts.astype(np.float64), q.astype(np.float64), dtype_name, weighted)
    assert np.all(np.abs(got - ref) <= bound), np.max(np.abs(got - ref) - bound)
    # Outside the range: exactly 0 and 1; the last point's rank is N/(N+1) (then 1 above it).
    np.testing.assert_array_equal(got[-2:], [[0.0, 0.0], [1.0, 1.0]])
    u = np.linspace(0.0, 1.0, 24).reshape(12, 2)
    back = to_numpy(inv(asarray(xp, u, dtype_name))).astype(np.float64)
    ref_back = inverse_reference(pts, u, w)
    # The inverse interpolates points by ranks: slope = gap / rank step; 4 eps bound of
    # the contract on points of size <= max|p| plus the rank error times the slope.
    eps = eps_of(dtype_name)
    scale = np.abs(pts).max()
    n = pts.shape[0]
    rank_err = (n + 3) * eps if weighted else eps
    steep = 2 * scale * (n + 1) / (0.5 if weighted else 1.0)  # |gap| <= 2 max|p|, rank step >= 0.5/(N+1)
    assert np.all(np.abs(back - ref_back) <= 4 * eps * (steep + 2 * scale) + rank_err * steep)


# --- gradients with respect to weights / mesh_weight_map ---------------------


def _central_difference(f: Callable[[np.ndarray], float], w: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    """d f / d w_i by central differences, and a bound on their error.

    The truncation error of a central difference is ~ h^2 f'''/6; the
    difference of the estimates at h and 2h is 3x that (the 2h estimate has 4x
    the error), so |D(2h) - D(h)| bounds the truncation of D(h).  Rounding of
    the two evaluations adds <= 2 eps_f / (2h), with eps_f the evaluation's
    own rounding, bounded by 64 eps sum|f terms| (a few dozen roundings each).
    """
    g, bound = np.empty(w.size), np.empty(w.size)
    for i in range(w.size):
        e = np.zeros_like(w)
        e[i] = 1.0
        d1 = (f(w + h * e) - f(w - h * e)) / (2 * h)
        d2 = (f(w + 2 * h * e) - f(w - 2 * h * e)) / (4 * h)
        g[i] = d1
        bound[i] = abs(d2 - d1) + 64 * np.finfo(np.float64).eps * abs(f(w)) / h
    return g, bound


@pytest.mark.parametrize("keyword", ["weights", "mesh_weight_map"])
def test_create_transforms_gradient_wrt_weights(
    xp: ModuleType, autodiff: AutoDiff, keyword: str, rng: np.random.Generator
) -> None:
    if not has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1 (central differences)")
    pts = _points(rng, 12)
    w = rng.uniform(0.5, 1.5, pts.shape[0])
    q = rng.normal(size=(25, 2)) * 0.8  # generic queries: none on a knot
    c = rng.normal(size=q.shape)
    P, Q, C = (asarray(xp, a) for a in (pts, q, c))

    def objective(wt: Any) -> Any:
        return xp.sum(knotsafe.create_transforms(P, **{keyword: wt})[0](Q) * C)

    (g,) = autodiff.grad(objective, [asarray(xp, w)], (0,))
    fd, err = _central_difference(lambda ww: float(np.sum(transform_reference(pts, q, ww) * c)), w, 1e-4)
    assert np.any(np.abs(fd) > 1e3 * err)  # the check is not vacuous
    # Autodiff rounding: each of the 25 x 2 outputs sums <= N + 3 rounded terms of size <= |c| max|dt/dw|.
    ad_err = (pts.shape[0] + 3) * np.finfo(np.float64).eps * np.abs(c).sum() * np.abs(fd).max()
    assert np.all(np.abs(g - fd) <= err + ad_err), np.max(np.abs(g - fd) - err - ad_err)
    # Both spellings of the argument give one gradient.
    other = "weights" if keyword == "mesh_weight_map" else "mesh_weight_map"
    (g2,) = autodiff.grad(
        lambda wt: xp.sum(knotsafe.create_transforms(P, **{other: wt})[0](Q) * C), [asarray(xp, w)], (0,)
    )
    np.testing.assert_array_equal(g, g2)


def test_create_transforms_weight_gradient_issue_example(xp: ModuleType, autodiff: AutoDiff) -> None:
    """Four points, one query per bin: the derivative of the ranks by hand.

    Points 0..3 with weights (1, 1, 2, 1): ranks r = C / C_3 * 4/5 with C the
    cumulative weights.  A query in the middle of bin j gives (r_j + r_j+1)/2,
    so the sum over queries at 0.5, 1.5, 2.5 is (4/5) A / C_3 with A = (C_0 +
    2 C_1 + 2 C_2 + C_3)/2; dC_m/dw_i = 1 for m >= i, so dA/dw_i is half the
    sum of the coefficients from i on and dC_3/dw_i = 1.
    """
    dt = _dt(xp)
    pts = np.array([[0.0], [1.0], [2.0], [3.0]])
    w = np.array([1.0, 1.0, 2.0, 1.0])
    q = np.array([[0.5], [1.5], [2.5]])
    C = np.cumsum(w)
    coef = np.array([1.0, 2.0, 2.0, 1.0]) / 2
    A = float(coef @ C)
    dA = np.array([coef[i:].sum() for i in range(4)])
    expected = 0.8 * (dA * C[-1] - A) / C[-1] ** 2
    P, Q = asarray(xp, pts, dt), asarray(xp, q, dt)
    (g,) = autodiff.grad(lambda wt: xp.sum(knotsafe.create_transforms(P, wt)[0](Q)), [asarray(xp, w, dt)], (0,))
    # A handful of roundings on O(1) numbers: 16 eps absolute.
    np.testing.assert_allclose(g, expected, rtol=0, atol=16 * eps_of(dt))


def test_mesh_gradient_wrt_mesh_weight_map(xp: ModuleType, autodiff: AutoDiff, rng: np.random.Generator) -> None:
    """d sum(c * mesh weights) / d mesh_weight_map against central differences of the transcription."""
    if not has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1 (central differences)")
    n = 6
    data = _points(rng, 20)
    over = rng.normal(size=(30, 2)) * 0.7
    wmap = rng.uniform(0.5, 1.5, data.shape[0])
    c = rng.normal(size=(over.shape[0], 4))
    D, Ov, Cc = (asarray(xp, a) for a in (data, over, c))
    idx, _ = rectangular.mappings_weights(n, D, Ov, asarray(xp, wmap))
    ref_idx, _ = pyautoarray_mappings(n, data, over, wmap)
    np.testing.assert_array_equal(to_numpy(idx), ref_idx)

    def objective(wm: Any) -> Any:
        return xp.sum(rectangular.mappings_weights(n, D, Ov, wm)[1] * Cc)

    (g,) = autodiff.grad(objective, [asarray(xp, wmap)], (0,))
    h = 1e-5
    for s in (-2 * h, 2 * h):  # the steps must not move a point to another cell
        for i in range(wmap.size):
            e = np.zeros_like(wmap)
            e[i] = s
            np.testing.assert_array_equal(pyautoarray_mappings(n, data, over, wmap + e)[0], ref_idx)
    fd, err = _central_difference(lambda wm: float(np.sum(pyautoarray_mappings(n, data, over, wm)[1] * c)), wmap, h)
    assert np.any(np.abs(fd) > 1e3 * err)
    ad_err = (data.shape[0] + 3) * np.finfo(np.float64).eps * np.abs(c).sum() * np.abs(fd).max() * (n - 3)
    assert np.all(np.abs(g - fd) <= err + ad_err), np.max(np.abs(g - fd) - err - ad_err)


# --- edges the mutation run found untested (docs/mutation.md) -----------------


def test_gap_exactly_at_threshold_is_a_duplicate(xp: ModuleType, autodiff: AutoDiff, dtype_name: str) -> None:
    """ "gap <= 8 eps max|k|": a gap of exactly 8 eps * 4 = 32 eps (a power of two, exact) is a duplicate."""
    eps = float(np.finfo(dtype_name).eps)
    g = 8.0 * eps * 4.0
    k = np.array([-4.0, 0.0, g, 1.0], dtype=dtype_name)
    v = np.array([0.0, 1.0, 2.0, 3.0], dtype=dtype_name)
    K, V = asarray(xp, k, dtype_name), asarray(xp, v, dtype_name)
    (gx,) = autodiff.grad(lambda a: knotsafe.interp(a, K, V), [asarray(xp, [g / 2], dtype_name)], (0,))
    assert gx[0] == 0.0


@pytest.mark.parametrize(
    "values",
    [[np.inf, 0.0, 1.0], [np.inf, -np.inf, 1.0], [0.0, np.inf, 1.0], [-np.inf, 5.0, 1.0], [np.inf, np.inf, 2.0]],
)
def test_infinite_values_follow_numpy_interp(xp: ModuleType, values: list[float]) -> None:
    """numpy.interp's NaN retry: an infinite value gives +-inf or NaN exactly where numpy's does."""
    dt = _dt(xp)
    k = np.array([0.0, 1.0, 2.0])
    v = np.array(values)
    x = np.array([-1.0, 0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0])
    with np.errstate(invalid="ignore"):  # inf - inf on NumPy-based backends, as inside numpy.interp
        got = to_numpy(knotsafe.interp(*(asarray(xp, a, dt) for a in (x, k, v))))
        ref = np.interp(x, k, v).astype(dt)
    np.testing.assert_array_equal(got, ref)  # infinities and NaN positions exactly; finite ones exact here


def test_standard_forward_raises_no_floating_point_errors() -> None:
    """The array-API forward (what a backend without a native forward runs) never divides by a zero gap.

    NumPy hooks with ``forward=None`` run knotsafe's own forward on NumPy, where
    a division by zero or an invalid operation is observable.
    """
    import array_api_compat.numpy as cnp

    from knotsafe import backends

    builtin = backends.hooks_for(cnp)
    backends.register("numpy_standard_forward", builtin.replace(forward=None), matches=lambda n: n is cnp)
    try:
        k = np.array([0.0, 1.0, 1.0, 1.0, 2.0, 2.0])
        v = np.array([0.0, 1.0, 5.0, 2.0, 3.0, 7.0])
        x = np.array([-1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
        with np.errstate(all="raise"):
            got = knotsafe.interp(x, k, v)
        np.testing.assert_array_equal(got, np.interp(x, k, v))
    finally:
        backends.unregister("numpy_standard_forward")


@pytest.mark.parametrize("knot_grad", ["exact", "stop"])
def test_generic_stop_gradient_path(xp: ModuleType, autodiff: AutoDiff, knot_grad: str) -> None:
    """Hooks registered with only stop_gradient (how a third-party autodiff backend plugs in) give the
    contract's partials, knot_grad="stop" included."""
    import array_api_compat

    from knotsafe import backends

    dt = _dt(xp)
    if backend_name(xp) == "torch":
        stop = lambda a: a.detach()  # noqa: E731
        matches = array_api_compat.is_torch_namespace
    else:
        import jax

        stop, matches = jax.lax.stop_gradient, array_api_compat.is_jax_namespace
    backends.register(
        "generic_test", backends.BackendHooks("generic_test", differentiable=True, stop_gradient=stop), matches=matches
    )
    try:
        k = np.array([0.0, 1.0, 1.0, 3.0])
        v = np.array([0.0, 2.0, 4.0, 10.0])
        x = np.array([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 4.0])
        gx, gk, gv = interp_jacobians(autodiff, xp, x, k, v, dt, knot_grad=knot_grad)
        _, ex, ek, ev = contract_partials(x, k, v, threshold=contract_threshold(k, dt), knot_grad=knot_grad)
        # Slopes 2 and 3, w in {0, 1/2}: every partial is exact in float32 and float64.
        np.testing.assert_array_equal(gx, ex)
        np.testing.assert_array_equal(gk, ek)
        np.testing.assert_array_equal(gv, ev)
    finally:
        backends.unregister("generic_test")
