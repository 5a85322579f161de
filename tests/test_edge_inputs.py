"""Inputs at the edges of the number line, for every public function they reach: infinite knots and
values (``numpy.interp``'s values, the rule's finite gradients), and half precision (float16 and
bfloat16, computed in float32 and rounded once).

References: ``numpy.interp`` in float64 on the same data, bin slopes and tie-rule ranks worked out
here in float64, the contract's partials in exact binary numbers.  Extreme scales and the index
range of the mesh are in ``tests/test_rectangular.py``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import knotsafe
from knotsafe import backends
from knotsafe.backends import generic_linearize, hooks_for
from tests._contract import tie_rule_ranks
from tests._support import (
    AutoDiff,
    asarray,
    autodiff_for,
    backend_module,
    backend_name,
    has_float64,
    selected,
    to_numpy,
)

FIXTURE_HYPOTHESIS = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _dt(xp: ModuleType) -> str:
    return "float64" if has_float64(xp) else "float32"


# --- infinite knots and values --------------------------------------------------------------------


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


def test_torch_vmap_keeps_numpy_nan_retries() -> None:
    """Under ``torch.func.vmap`` the forward still runs numpy's two NaN retries.

    The PyTorch hooks skip the retries when one host read says the first estimate has no NaN; under
    vmap that read raises (data-dependent control flow), and the answer must then be "maybe NaN",
    so the retries run.  Infinite values make the first estimate NaN where numpy's retries do not:
    ``inf - inf`` in the bin [1, 2) (second retry: equal end values give ``inf``) and ``-inf * 0.5
    + inf`` in [2, 3) (first retry, from the upper end: ``inf``).  Expected: numpy.interp, exactly.
    """
    torch = backend_module("torch")
    k, v = np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.0, np.inf, np.inf, 1.0])
    x = np.array([[0.5, 1.5, 2.5], [1.25, 1.0, 3.0]])
    kt, vt = torch.asarray(k), torch.asarray(v)
    got = torch.func.vmap(lambda row: knotsafe.interp(row, kt, vt))(torch.asarray(x))
    np.testing.assert_array_equal(got.numpy(), np.interp(x, k, v))


def test_infinite_knot_does_not_make_every_bin_a_duplicate(xp: ModuleType, autodiff: AutoDiff) -> None:
    """knots = [0, 1, 2, inf]: x = 0.5 is in the genuine bin [0, 1) (d/dx = 1, as numpy's slope)."""
    dt = _dt(xp)
    x, k, v = (asarray(xp, a, dt) for a in ([0.5, 1.5, 5.0], [0.0, 1.0, 2.0, np.inf], [0.0, 1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(
        to_numpy(knotsafe.interp(x, k, v)), np.interp([0.5, 1.5, 5.0], *(to_numpy(a) for a in (k, v)))
    )
    gx, gk, gv = autodiff.grad(knotsafe.interp, [x, k, v], (0, 1, 2))
    # Bins [0, 1) and [1, 2) are genuine (slope 1); [2, inf) touches an
    # infinite knot: zero slope, and x = 5 copies values[2] (w = 3 / inf = 0).
    np.testing.assert_array_equal(gx, [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(gk, [-0.5, -1.0, -0.5, 0.0])
    np.testing.assert_array_equal(gv, [0.5, 1.0, 1.5, 0.0])


@pytest.mark.parametrize("mode", ["rev", "fwd"])
def test_bin_to_an_infinite_knot_with_an_infinite_value_is_a_duplicate(
    xp: ModuleType, autodiff: AutoDiff, mode: str
) -> None:
    """A bin touching an infinite knot is a duplicate, also when its value is infinite (each mode).

    knots ``[0, 1, inf]``, values ``[0, 2, inf]``: in ``[1, inf)`` the slope would be inf / inf = NaN;
    the contract's "finite gradients everywhere" and its rule for a gap that is inf give d/dx = 0,
    d/dknots = 0 and the weights ``w = (x - 1) / inf = 0``, i.e. d/dvalues = (1, 0).  In the genuine
    bin ``[0, 1)`` at x = 0.5: slope 2, d/dknots = -2 (1 - w, w) = (-1, -1), d/dvalues = (0.5, 0.5).
    """
    dt = _dt(xp)
    x, k, v = (asarray(xp, a, dt) for a in ([0.5, 5.0], [0.0, 1.0, np.inf], [0.0, 2.0, np.inf]))
    expected = {
        0: [[2.0, 0.0], [0.0, 0.0]],
        1: [[-1.0, -1.0, 0.0], [0.0, 0.0, 0.0]],
        2: [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]],
    }
    for argnum, jac in expected.items():
        got = autodiff.jacobian(knotsafe.interp, [x, k, v], argnum, mode)
        if argnum == 0:
            got = got * np.eye(2)  # d out_i / d x_j, j != i, is 0 by construction
        np.testing.assert_array_equal(got, jac)  # exact: products of powers of two
    if mode == "rev":
        # The gradient of the sum (PyTorch: the Function's first-order partials, no recomputation).
        for got_sum, jac in zip(autodiff.grad(knotsafe.interp, [x, k, v], (0, 1, 2)), expected.values(), strict=True):
            np.testing.assert_array_equal(got_sum, np.sum(jac, axis=0))


@pytest.mark.parametrize(
    ("x", "knots", "values"),
    [
        ([1.5, 0.5, 2.0], [0.0, 1.0, 2.0], [0.0, 1.0, np.inf]),
        ([5.0, 0.5, -1.0], [0.0, 1.0, np.inf], [0.0, 1.0, 2.0]),
        ([-5.0, 0.5, 3.0], [-np.inf, 1.0, 2.0], [0.0, 1.0, 2.0]),
        ([np.inf, -np.inf, 0.5], [0.0, 1.0, 2.0], [0.0, -np.inf, 2.0]),
    ],
)
def test_generic_path_forward_values_equal_numpy_for_infinities(
    xp: ModuleType, autodiff: AutoDiff, x: list[float], knots: list[float], values: list[float]
) -> None:
    """The stop_gradient path any registered backend gets: ``s - stop_gradient(s)`` adds no NaN."""
    ns = array_api_compat.array_namespace(xp.asarray(0.0))
    dt = _dt(xp)
    args = [asarray(xp, a, dt) for a in (x, knots, values)]
    with np.errstate(invalid="ignore"):
        expected = np.interp(*(np.asarray(a, dt) for a in (x, knots, values)))
    backends.register("generic", hooks_for(ns).replace(linearize=generic_linearize), matches=lambda n: n is ns)
    try:
        out = knotsafe.interp(*args)
        if backend_name(xp) == "torch":
            leaves = [a.clone().requires_grad_() for a in args]
            out = knotsafe.interp(*leaves)
        np.testing.assert_array_equal(to_numpy(out), expected)
    finally:
        backends.unregister("generic")
    native = to_numpy(knotsafe.interp(*args))
    np.testing.assert_array_equal(native, expected)


_HUNDREDTHS = st.integers(-1000, 1000).map(lambda i: i / 100)


#: The knot counts the strategies draw from: few shapes, so that JAX compiles each operation for a
#: handful of shapes only (eager JAX compiles every operation for every new shape).
_KNOT_COUNTS = (4, 10)


def _case(
    knots: list[float], values: list[float], queries: list[float], lo_inf: bool, hi_inf: bool, inf_value: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted unique ``knots`` whose first and/or last is replaced by -inf/+inf (at least two stay finite),
    the values of as many knots, the queries and the infinities and end knots as queries."""
    k = np.unique(np.asarray(knots))
    k[0], k[-1] = (-np.inf if lo_inf else k[0]), (np.inf if hi_inf else k[-1])
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
    knots=st.sampled_from(_KNOT_COUNTS).flatmap(lambda n: st.lists(_HUNDREDTHS, min_size=n, max_size=n, unique=True)),
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


# --- half precision -------------------------------------------------------------------------------


def _half_backends() -> list[tuple[str, str]]:
    cases = [("numpy", "float16")]
    if selected("torch"):
        cases += [("torch", "float16"), ("torch", "bfloat16")]
    if selected("jax"):
        cases += [("jax", "float16"), ("jax", "bfloat16")]
    return cases


class _Half:
    """Arrays of one half-precision dtype on one backend, and their gradients."""

    def __init__(self, backend: str, dtype: str) -> None:
        self.backend, self.dtype_name = backend, dtype
        if backend == "torch":
            import torch

            self.xp: Any = torch
            self.dtype: Any = getattr(torch, dtype)
        elif backend == "jax":
            import jax.numpy as jnp

            self.xp, self.dtype = jnp, getattr(jnp, dtype)
        else:
            self.xp, self.dtype = np, np.float16

    def __call__(self, a: Any) -> Any:
        if self.backend == "torch":
            return self.xp.tensor(np.asarray(a, dtype=np.float32), dtype=self.dtype)
        return self.xp.asarray(np.asarray(a, dtype=np.float32), dtype=self.dtype)

    def numpy(self, a: Any) -> np.ndarray:
        """A half-precision array as float64 NumPy data (exact)."""
        if self.backend == "torch":
            return a.detach().float().numpy().astype(np.float64)  # type: ignore[no-any-return]
        return np.asarray(a, dtype=np.float64)

    def rounded(self, a: np.ndarray) -> np.ndarray:
        """float64 data rounded to this half dtype (and back to float64)."""
        return self.numpy(self(a))

    def ulp(self, a: np.ndarray) -> np.ndarray:
        mant = 8 if self.dtype_name == "bfloat16" else 11
        tiny = 2.0**-14 if self.dtype_name == "float16" else 2.0**-126
        return np.maximum(np.abs(a), tiny) * 2.0 ** (1 - mant)

    def grad_x(self, f: Any, x: Any) -> np.ndarray:
        ad = autodiff_for(self.xp)
        assert ad is not None
        if self.backend == "torch":
            import torch

            leaf = x.detach().clone().requires_grad_(True)
            (g,) = torch.autograd.grad(f(leaf).sum(), [leaf])
            return self.numpy(g)
        (g,) = ad.grad(f, [x], [0])
        return np.asarray(g, dtype=np.float64)


@pytest.mark.parametrize(("backend", "dtype"), _half_backends())
@settings(max_examples=20, deadline=None)
@given(
    # Hundredths: no values in the half types' subnormal range, which XLA on CPU flushes to zero.
    # Few knot counts: each new shape recompiles on JAX (rounding to half precision may merge two).
    knots=st.sampled_from((2, 4, 12)).flatmap(
        lambda n: st.lists(st.integers(-10_000, 10_000).map(lambda i: i / 100), min_size=n, max_size=n, unique=True)
    ),
    values=st.lists(st.integers(-10_000, 10_000).map(lambda i: i / 100), min_size=12, max_size=12),
    queries=st.lists(st.integers(-12_000, 12_000).map(lambda i: i / 100), min_size=16, max_size=16),
)
def test_half_precision_values_and_gradients(
    backend: str, dtype: str, knots: list[float], values: list[float], queries: list[float]
) -> None:
    """Values: numpy.interp in float64 on the half inputs, within one half ulp (the float32
    result rounded once).  d/dx: the float64 slope of the bin, to half rounding; finite and
    non-zero in every genuine bin whose slope the dtype can represent."""
    h = _Half(backend, dtype)
    k = np.unique(h.rounded(np.asarray(knots)))
    if k.size < 2:
        return
    v = h.rounded(np.asarray(values[: k.size]))
    x = h.rounded(np.asarray(queries))
    out = knotsafe.interp(h(x), h(k), h(v))
    assert out.dtype == h.dtype
    got = h.numpy(out)
    ref = np.interp(x, k, v)
    assert np.all(np.abs(got - ref) <= h.ulp(ref) + 1e-6 * np.abs(ref)), (got, ref)
    if backend == "numpy":
        return
    g = h.grad_x(lambda a: knotsafe.interp(a, h(k), h(v)), h(x))
    j = np.clip(np.searchsorted(k, x, side="right") - 1, 0, k.size - 2)
    slope = (v[j + 1] - v[j]) / (k[j + 1] - k[j])
    inside = (x >= k[0]) & (x < k[-1])
    ref_g = np.where(inside, slope, 0.0)
    representable = np.abs(ref_g) < float(h.xp.finfo(h.dtype).max) / 2
    sel = representable & (np.abs(ref_g) >= 2 * float(h.xp.finfo(h.dtype).smallest_normal))
    assert np.all(np.isfinite(g[representable]))
    assert np.all(g[sel] != 0)
    np.testing.assert_allclose(g[sel], ref_g[sel], rtol=4 * h.ulp(np.ones(1))[0])


@pytest.mark.parametrize(("backend", "dtype"), _half_backends())
def test_half_precision_narrow_bins_keep_their_values_and_slopes(backend: str, dtype: str) -> None:
    h = _Half(backend, dtype)
    out = knotsafe.interp(h([5e-4]), h([0.0, 1e-3]), h([0.0, 100.0]))
    assert h.numpy(out)[0] == 50.0
    if backend == "numpy":
        return
    k, v = h([0.0, 0.05, 1.0]), h([0.0, 1.0, 2.0])
    g = h.grad_x(lambda a: knotsafe.interp(a, k, v), h([0.025, 0.5]))
    kk = h.rounded(np.array([0.0, 0.05, 1.0]))
    ref = np.array([1 / (kk[1] - kk[0]), 1 / (kk[2] - kk[1])])
    np.testing.assert_allclose(g, ref, rtol=4 * h.ulp(np.ones(1))[0])


@pytest.mark.parametrize(("backend", "dtype"), [c for c in _half_backends() if c[0] != "numpy"])
def test_half_precision_transform_gradients_zero_only_on_ties(backend: str, dtype: str) -> None:
    """1,000 normal points: d transform / d q is 0 exactly where the half-precision knots tie."""
    h = _Half(backend, dtype)
    rng = np.random.default_rng(11)
    pts = h.rounded(rng.normal(size=(1000, 1)))
    q = h.rounded(rng.uniform(-1.5, 1.5, size=(400, 1)))
    tr, _ = knotsafe.create_transforms(h(pts))
    g = h.grad_x(lambda a: tr(a), h(q))[:, 0]
    s = np.sort(pts[:, 0])
    j = np.searchsorted(s, q[:, 0], side="right") - 1
    tie = s[j + 1] == s[j]
    assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(g == 0, tie)
    assert tie.mean() < 0.5  # most queries sit in genuine bins


@pytest.mark.parametrize(("backend", "dtype"), _half_backends())
def test_half_precision_ranks_do_not_overflow(backend: str, dtype: str) -> None:
    h = _Half(backend, dtype)
    n = 70_000  # beyond float16's largest finite value, 65,504
    pts = h.rounded(np.linspace(-1.0, 1.0, n)[:, None])
    tr, _ = knotsafe.create_transforms(h(pts))
    q = np.array([[-2.0], [-0.5], [0.0], [0.5], [2.0]])
    u = h.numpy(tr(h(q)))[:, 0]
    ref = np.array([np.searchsorted(np.sort(pts[:, 0]), v, side="right") / (n + 1) for v in q[:, 0]])
    ref[-1], ref[0] = 1.0, 0.0
    assert np.all(np.isfinite(u))
    np.testing.assert_allclose(u, ref, atol=h.ulp(np.ones(1))[0])


@pytest.mark.skip_xp_backend("jax", reason="slow eager dispatch; JAX's half precision: the tests above")
@pytest.mark.parametrize("weighted", [False, True])
def test_half_precision_transforms_are_computed_in_float32(xp: ModuleType, weighted: bool) -> None:
    """float16 points and queries: computed in float32 and rounded to float16 once, so each output
    is within one float16 rounding (eps16 / 2 relative) plus the float32 computation's error of sort +
    numpy.interp on the tie rule's ranks in float64.  Ranks or cumulative weights computed in float16
    (300 points: positions above 2048 are not even representable, and a float16 cumulative sum of 300
    weights is off by many float16 ulps) miss that bound.

    Bound: the float32 ranks are within 16 eps32 of the reference (the tie-run test's bound, log2 300 <
    9 levels of the pairwise sum included), the forward's slope is at most 1 / (N + 1) per smallest
    gap between distinct float16 points, so with the float32 interpolation's own 4 eps32 the float32
    value is within 64 eps32 (a generous multiple, far below eps16 = 2**-10); then one rounding."""
    if not hasattr(xp, "float16"):
        pytest.skip("no float16")
    rng = np.random.default_rng(7)
    pts = np.round(rng.normal(size=(300, 2)), 1).astype(np.float16)  # many ties
    w = rng.uniform(0.1, 2.0, 300).astype(np.float16) if weighted else None
    args = (asarray(xp, w, "float16"),) if w is not None else ()
    tr, _ = knotsafe.create_transforms(asarray(xp, pts, "float16"), *args)
    q = np.linspace(-2.5, 2.5, 41).astype(np.float16)
    q2 = np.stack([q, q[::-1]], axis=1)
    got = to_numpy(tr(asarray(xp, q2, "float16")))
    assert got.dtype == np.float16
    ww = w.astype(np.float64) if w is not None else np.ones(300)
    for d in range(2):
        s, t = tie_rule_ranks(pts[:, d].astype(np.float64), ww)
        expected = np.interp(q2[:, d].astype(np.float64), s, t, left=0.0, right=1.0)
        bound = np.finfo(np.float16).eps / 2 * np.abs(expected) + 64 * np.finfo(np.float32).eps
        assert np.all(np.abs(got[:, d].astype(np.float64) - expected) <= bound), d
