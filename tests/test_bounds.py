"""``left``/``right``: numbers, arrays of the backend (traced, differentiable) and ``"extrapolate"``.

References: numpy.interp for number and array bounds (the bound's value, signed zeros
included), jnp.interp in float64 for ``"extrapolate"``, central differences for the
derivatives with respect to the bounds, and the gradient contract's line partials,
transcribed below, beyond a genuine end bin.
"""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import knotsafe
from tests._support import AutoDiff, asarray, backend_module, backend_name, eps_of, has_float64, selected, to_numpy

KNOTS = np.array([-1.5, -0.5, 0.25, 0.25, 1.0, 2.5])
VALUES = np.array([2.0, -1.0, 0.5, 3.0, 1.5, -2.0])
# Below, inside (one on a duplicate knot, one on the last knot) and above the knots.
X = np.array([-4.0, -1.75, -1.0, 0.25, 0.625, 2.5, 2.75, 6.0])
BELOW, ABOVE = np.less(X, KNOTS[0]), np.greater(X, KNOTS[-1])


def _dt(xp: ModuleType) -> str:
    return "float64" if has_float64(xp) else "float32"


def _call(xp: ModuleType, dt: str, x: np.ndarray = X, k: np.ndarray = KNOTS, v: np.ndarray = VALUES, **kw: Any) -> Any:
    return knotsafe.interp(asarray(xp, x, dt), asarray(xp, k, dt), asarray(xp, v, dt), **kw)


def _jnp_reference(x: np.ndarray, k: np.ndarray, v: np.ndarray, **kw: Any) -> np.ndarray:
    """jnp.interp in float64 (x64 switched on for the call only)."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    with jax.enable_x64(True):
        args = (jnp.asarray(a, dtype=jnp.float64) for a in (x, k, v))
        return np.asarray(jnp.interp(*args, **kw))


def _line_scale(x: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """|f0| + |slope (x - k0)| of the bin each query reads (the end bins beyond the knots)."""
    j = np.clip(np.searchsorted(k, x, side="right") - 1, 0, k.size - 2)
    slope = (v[j + 1] - v[j]) / (k[j + 1] - k[j])
    return np.abs(v[j]) + np.abs(slope * (x - k[j]))


# --- numbers and arrays: numpy.interp's values --------------------------------------------


@pytest.mark.parametrize("kind", ["number", "array"])
def test_bounds_give_numpy_values(xp: ModuleType, kind: str) -> None:
    dt = _dt(xp)
    lo, hi = -7.5, 11.25  # exact in float32
    bounds = (lo, hi) if kind == "number" else (asarray(xp, lo, dt), asarray(xp, hi, dt))
    got = to_numpy(_call(xp, dt, left=bounds[0], right=bounds[1]))
    ref = np.interp(X, KNOTS, VALUES, left=lo, right=hi).astype(dt)
    # Slopes and weights of these knots are short binary fractions: every step is exact.
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("kind", ["number", "array"])
def test_signed_zero_bounds_keep_their_sign_in_any_order(xp: ModuleType, kind: str) -> None:
    """-0.0 then 0.0 (and back): each call returns numpy's signed zero, whatever came before.

    Equal as numbers, -0.0 and 0.0 once shared one compiled JAX program, so the second call
    returned the first one's sign.
    """
    dt = _dt(xp)
    for zero in (-0.0, 0.0, -0.0, 0.0):
        b = zero if kind == "number" else asarray(xp, zero, dt)
        got = to_numpy(_call(xp, dt, left=b, right=b))
        ref = np.interp(X, KNOTS, VALUES, left=zero, right=zero)
        outside = BELOW | ABOVE
        np.testing.assert_array_equal(np.signbit(got[outside]), np.signbit(ref[outside]))
        np.testing.assert_array_equal(got, ref.astype(dt))


def test_numpy_constant_bound_on_any_backend(xp: ModuleType) -> None:
    """A NumPy 0-d array is a constant bound on every backend (as jnp.interp takes one)."""
    dt = _dt(xp)
    got = to_numpy(_call(xp, dt, left=np.asarray(-3.0), right=np.float32(4.0)))
    np.testing.assert_array_equal(got, np.interp(X, KNOTS, VALUES, left=-3.0, right=4.0).astype(dt))


def test_complex_array_bounds(xp: ModuleType) -> None:
    dt = _dt(xp)
    cdt = {"float32": "complex64", "float64": "complex128"}[dt]
    v = (VALUES + 1j * VALUES[::-1]).astype(cdt)
    lo, hi = 1.5 - 2.25j, -0.5 + 0.75j
    out = knotsafe.interp(
        asarray(xp, X, dt), asarray(xp, KNOTS, dt), xp.asarray(v), left=xp.asarray(np.asarray(lo, cdt)), right=hi
    )
    ref = np.interp(X, KNOTS, v.astype(np.complex128), left=lo, right=hi)
    np.testing.assert_array_equal(to_numpy(out), ref.astype(cdt))
    # A real array bound with complex values has a zero imaginary part.
    out = knotsafe.interp(asarray(xp, X, dt), asarray(xp, KNOTS, dt), xp.asarray(v), left=asarray(xp, 2.0, dt))
    np.testing.assert_array_equal(to_numpy(out), np.interp(X, KNOTS, v.astype(np.complex128), left=2.0).astype(cdt))


# --- "extrapolate": jnp.interp's line -------------------------------------------------------


@pytest.mark.parametrize("ends", [("extrapolate", "extrapolate"), ("extrapolate", None), (None, "extrapolate")])
def test_extrapolate_matches_jnp_interp(xp: ModuleType, dtype_name: str, ends: tuple[Any, Any]) -> None:
    """Random genuine end bins; jnp.interp (float64) on the same rounded data is the reference.

    Each formula rounds the gap, the rise, ``x - k0``, a product, a quotient and a sum: six
    roundings of terms no larger than ``|f0| + |slope (x - k0)|``, so 6 eps of that scale
    bounds the difference between two evaluation orders.
    """
    rng = np.random.default_rng(7)
    k = np.sort(rng.uniform(-3.0, 3.0, 9)).astype(dtype_name)
    v = rng.normal(size=9).astype(dtype_name)
    x = np.concatenate([rng.uniform(-20.0, 20.0, 300), k[[0, -1]], [np.nan]]).astype(dtype_name)
    left, right = ends
    got = to_numpy(knotsafe.interp(xp.asarray(x), xp.asarray(k), xp.asarray(v), left=left, right=right))
    k64, v64, x64 = (a.astype(np.float64) for a in (k, v, x))
    ref = _jnp_reference(x64, k64, v64, left=left, right=right)
    inside = (x64 >= k64[0]) & (x64 <= k64[-1])
    # Inside and at the ends: the values of the call without extrapolation.
    plain = to_numpy(knotsafe.interp(xp.asarray(x), xp.asarray(k), xp.asarray(v)))
    np.testing.assert_array_equal(got[inside], plain[inside])
    assert np.isnan(got[-1])
    bound = 6 * eps_of(dtype_name) * _line_scale(x64, k64, v64)
    outside = ~inside & ~np.isnan(x64)
    np.testing.assert_array_less(np.abs(got[outside] - ref[outside]), bound[outside] + np.finfo(dtype_name).tiny)


@pytest.mark.parametrize("gap", ["exact", "near"])
def test_extrapolate_beyond_a_duplicate_end_bin_is_the_end_value(xp: ModuleType, gap: str) -> None:
    """Duplicate end bins (gap 0, or 2 ulp): the line of slope 0 through the end value.

    jnp.interp divides by the gap there (inf/NaN at an exact duplicate); the contract says
    a duplicate bin has slope 0, so the extrapolation is the constant ``values[0]`` below and
    ``values[-1]`` above.
    """
    dt = _dt(xp)
    k = np.array([0.0, 0.0, 1.0, 2.0, 2.0], dt)
    if gap == "near":
        k[1] = np.nextafter(np.nextafter(k[0], 1, dtype=dt), 1, dtype=dt)
        k[3] = np.nextafter(np.nextafter(k[4], 0, dtype=dt), 0, dtype=dt)
    v = np.array([5.0, 0.0, 1.0, 2.0, 9.0], dt)
    x = np.array([-3.0, -1e-3, 3.0, 1e4], dt)
    got = to_numpy(
        knotsafe.interp(xp.asarray(x), xp.asarray(k), xp.asarray(v), left="extrapolate", right="extrapolate")
    )
    np.testing.assert_array_equal(got, np.array([5.0, 5.0, 9.0, 9.0], dt))


def test_extrapolate_with_one_knot_is_the_value(xp: ModuleType) -> None:
    dt = _dt(xp)
    got = _call(
        xp, dt, np.array([-1.0, 0.5, 2.0]), np.array([0.5]), np.array([3.0]), left="extrapolate", right="extrapolate"
    )
    np.testing.assert_array_equal(to_numpy(got), np.full(3, 3.0, dt))


# --- derivatives ----------------------------------------------------------------------------


def test_bound_derivatives_are_the_copy_masks(xp: ModuleType, autodiff: AutoDiff) -> None:
    """d out / d left and d out / d right against central differences, and jacfwd == jacrev."""
    dt = _dt(xp)
    lo, hi = asarray(xp, -2.0, dt), asarray(xp, 3.5, dt)
    k, v, x = (asarray(xp, a, dt) for a in (KNOTS, VALUES, X))
    h = 0.25  # the output is linear in each bound: central differences are exact for any step
    for which in ("left", "right"):

        def f(b: Any, which: str = which) -> Any:
            return knotsafe.interp(x, k, v, **{which: b, ("right" if which == "left" else "left"): 0.5})

        base = -2.0 if which == "left" else 3.5
        other = {"right": 0.5} if which == "left" else {"left": 0.5}
        fd = (
            np.interp(X, KNOTS, VALUES, **{which: base + h}, **other)
            - np.interp(X, KNOTS, VALUES, **{which: base - h}, **other)
        ) / (2 * h)
        fwd = autodiff.jacobian(f, (lo if which == "left" else hi,), 0, "fwd")
        rev = autodiff.jacobian(f, (lo if which == "left" else hi,), 0, "rev")
        np.testing.assert_array_equal(fwd, rev)
        np.testing.assert_array_equal(fwd, fd)
        assert set(np.unique(fwd)) <= {0.0, 1.0}


def test_bound_gradient_in_every_mode(xp: ModuleType, autodiff: AutoDiff) -> None:
    """grad with respect to bounds, x, knots and values together (one reverse pass), and per example under vmap."""
    dt = _dt(xp)
    args = [asarray(xp, a, dt) for a in (X, KNOTS, VALUES, -2.0, 3.5)]

    def f(x: Any, k: Any, v: Any, lo: Any, hi: Any) -> Any:
        return knotsafe.interp(x, k, v, left=lo, right=hi)

    _, _, gv, gl, gr = autodiff.grad(f, args, range(5))
    assert float(gl) == np.sum(BELOW) and float(gr) == np.sum(ABOVE)
    # Bounds carry no weight on values: only queries inside the knots or on the last knot do.
    np.testing.assert_array_equal(gv.sum(), np.sum(~BELOW & ~ABOVE))
    # Per example (vmap over rows of bounds): one row per bound value, the same masks.
    lo_rows, hi_rows = asarray(xp, [-2.0, 1.0], dt), asarray(xp, [3.5, 0.0], dt)
    xs, ks, vs = (xp.stack([a, a]) for a in args[:3])
    grads = autodiff.vmap_grad(f, (3, 4))(xs, ks, vs, lo_rows, hi_rows)
    np.testing.assert_array_equal(to_numpy(grads[0]), [np.sum(BELOW)] * 2)
    np.testing.assert_array_equal(to_numpy(grads[1]), [np.sum(ABOVE)] * 2)


def _line_partials(x: np.ndarray, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The contract beyond a genuine end bin: the bin's line and its partials (w outside [0, 1]).

    For ``x`` below ``k[0]`` the bin is (0, 1), above ``k[-1]`` it is (N-2, N-1); d/dx is the
    slope, d/dvalues are ``1 - w, w`` and d/dknots ``-slope (1 - w), -slope w``.
    """
    n = k.size
    dx, dk, dv = np.zeros(x.size), np.zeros((x.size, n)), np.zeros((x.size, n))
    for i, xi in enumerate(x):
        j = 0 if xi < k[0] else n - 2
        gap = k[j + 1] - k[j]
        w = (xi - k[j]) / gap
        slope = (v[j + 1] - v[j]) / gap
        dx[i] = slope
        dv[i, j], dv[i, j + 1] = 1.0 - w, w
        dk[i, j], dk[i, j + 1] = -slope * (1.0 - w), -slope * w
    return dx, dk, dv


def test_extrapolated_partials_follow_the_line(xp: ModuleType, autodiff: AutoDiff) -> None:
    """Beyond genuine end bins: the contract's line partials, forward mode equal to reverse mode, and
    central differences (steps that cross no knot) agree."""
    dt = _dt(xp)
    x = np.array([-4.0, -1.75, 2.75, 6.0])
    k, v = KNOTS.copy(), VALUES.copy()
    kw = {"left": "extrapolate", "right": "extrapolate"}
    X_, K_, V_ = (asarray(xp, a, dt) for a in (x, k, v))
    jac = []
    for f, arg in (
        (lambda a: knotsafe.interp(a, K_, V_, **kw), X_),
        (lambda a: knotsafe.interp(X_, a, V_, **kw), K_),
        (lambda a: knotsafe.interp(X_, K_, a, **kw), V_),
    ):
        fwd, rev = autodiff.jacobians(f, arg)
        np.testing.assert_array_equal(fwd, rev)
        jac.append(rev.astype(np.float64))
    ex, ek, ev = _line_partials(x, k, v)
    eps = eps_of(dt)
    # Each partial is one or two roundings of products of terms <= 8 in size: 32 eps.
    np.testing.assert_allclose(np.diagonal(jac[0]), ex, rtol=0, atol=32 * eps)
    np.testing.assert_allclose(jac[1], ek, rtol=0, atol=32 * eps)
    np.testing.assert_allclose(jac[2], ev, rtol=0, atol=32 * eps)
    if dt == "float64":
        # The line is affine in x and values and rational in the knots: central differences
        # with h = 1e-6 are within 1e-12 * |f| (rounding) + h^2 |f'''| (about 1e-11 here).
        h = 1e-6
        line = lambda xx, kk, vv: _jnp_reference(xx, kk, vv, **kw)  # noqa: E731
        for i in range(k.size):
            e = np.zeros(k.size)
            e[i] = h
            fd_k = (line(x, k + e, v) - line(x, k - e, v)) / (2 * h)
            fd_v = (line(x, k, v + e) - line(x, k, v - e)) / (2 * h)
            np.testing.assert_allclose(jac[1][:, i], fd_k, rtol=0, atol=1e-7)
            np.testing.assert_allclose(jac[2][:, i], fd_v, rtol=0, atol=1e-7)


def test_extrapolated_duplicate_end_has_finite_zero_slope_gradients(xp: ModuleType, autodiff: AutoDiff) -> None:
    dt = _dt(xp)
    k = asarray(xp, [0.0, 0.0, 1.0, 2.0, 2.0], dt)
    v = asarray(xp, [5.0, 0.0, 1.0, 2.0, 9.0], dt)
    x = asarray(xp, [-3.0, 3.0], dt)
    kw = {"left": "extrapolate", "right": "extrapolate"}
    gx, gk, gv = autodiff.grad(lambda a, b, c: knotsafe.interp(a, b, c, **kw), [x, k, v], (0, 1, 2))
    np.testing.assert_array_equal(gx, [0.0, 0.0])
    np.testing.assert_array_equal(gk, np.zeros(5))
    np.testing.assert_array_equal(gv, [1.0, 0.0, 0.0, 0.0, 1.0])


@pytest.mark.parametrize("ends", [("extrapolate", "extrapolate"), ("extrapolate", None), (None, "extrapolate")])
def test_extrapolated_infinite_queries_have_zero_finite_partials(
    xp: ModuleType, autodiff: AutoDiff, ends: tuple[Any, Any]
) -> None:
    """x = -inf or +inf on an extrapolated line: the line's value (inf; on a flat end bin numpy's retry
    turns 0 * inf into the end value), whose weights 1 - w, w would be infinite, gets zero partials; so
    forward mode equals reverse mode and a masked infinite output adds nothing to the finite ones' gradient."""
    dt = _dt(xp)
    k, v = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0, 2.0])  # a rising and a flat end bin
    x = np.array([-np.inf, 0.5, np.inf, 2.5])
    kw = dict(zip(("left", "right"), ends, strict=True))
    X_, K_, V_ = (asarray(xp, a, dt) for a in (x, k, v))
    out = to_numpy(knotsafe.interp(X_, K_, V_, **kw))
    # The line's value below the knots, numpy.interp's elsewhere (the flat end bin's line is its value).
    expected = np.interp(x, k, v)
    if ends[0] == "extrapolate":
        expected[0] = -np.inf
    np.testing.assert_array_equal(out, expected.astype(dt))
    finite = np.isfinite(x)
    # The infinite queries on an extrapolated line (one that copies an end value keeps its weight 1).
    on_line = ~finite & np.array([ends[0] == "extrapolate", False, ends[1] == "extrapolate", False])
    for f, arg, width in (
        (lambda a: knotsafe.interp(a, K_, V_, **kw), X_, x.size),
        (lambda a: knotsafe.interp(X_, a, V_, **kw), K_, k.size),
        (lambda a: knotsafe.interp(X_, K_, a, **kw), V_, v.size),
    ):
        fwd, rev = autodiff.jacobians(f, arg)
        np.testing.assert_array_equal(fwd, rev)
        assert np.all(np.isfinite(rev))
        np.testing.assert_array_equal(rev[on_line], np.zeros((on_line.sum(), width)))
    # The masked loss: only the finite queries' outputs.
    mask = asarray(xp, finite.astype(float), dt)
    gx, gk, gv = autodiff.grad(lambda a, b, c: knotsafe.interp(a, b, c, **kw) * mask, [X_, K_, V_], (0, 1, 2))
    for g in (gx, gk, gv):
        assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(gv, [0.5, 0.5, 0.5, 0.5])


# --- backends: traced bounds, no recompilation, PyTorch modes --------------------------------


def _compilations(f: Any, calls: int) -> int:
    """XLA compilations (JAX's own compile events) during ``calls`` calls of ``f`` after a warming one,
    as docs/edge-inputs.md counts them (where the counter is shown to count recompiles)."""
    import jax

    f()
    events: list[str] = []

    def listener(name: str, _secs: float, **_: Any) -> None:
        if name == "/jax/core/compile/backend_compile_duration":
            events.append(name)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        for _ in range(calls):
            f()
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    return len(events)


def test_jax_traced_bounds_and_no_recompilation() -> None:
    jax = backend_module("jax")
    import jax.numpy as jnp

    dt = "float64" if jax.config.read("jax_enable_x64") else "float32"
    x, k, v = (jnp.asarray(a, dtype=dt) for a in (X, KNOTS, VALUES))
    jitted = jax.jit(lambda lo, hi: knotsafe.interp(x, k, v, left=lo, right=hi))
    got = jitted(jnp.asarray(-2.0, dt), jnp.asarray(3.5, dt))
    np.testing.assert_array_equal(np.asarray(got), np.interp(X, KNOTS, VALUES, left=-2.0, right=3.5).astype(dt))
    g = jax.jit(jax.grad(lambda lo: knotsafe.interp(x, k, v, left=lo).sum()))(jnp.asarray(1.0, dt))
    assert float(g) == np.sum(BELOW)
    # New numbers for left, right and min_gap compile nothing.
    fresh = iter([0.25, -0.0, 0.0, 7.0, 1e-300])

    def call() -> Any:
        b = next(fresh, 0.5)
        return knotsafe.interp(x, k, v, left=b, right=-b, min_gap=abs(b))

    assert _compilations(call, calls=5) == 0


def test_torch_bounds_double_backward_and_compile() -> None:
    torch = backend_module("torch")
    x, k, v = (torch.asarray(a) for a in (X, KNOTS, VALUES))
    lo = torch.asarray(-2.0, dtype=torch.float64, requires_grad=True)
    hi = torch.asarray(3.5, dtype=torch.float64, requires_grad=True)
    out = knotsafe.interp(x, k, v, left=lo, right=hi)
    (gl, gr) = torch.autograd.grad(out.sum(), [lo, hi])
    assert float(gl) == np.sum(BELOW) and float(gr) == np.sum(ABOVE)
    # Double backward: d2/dleft2 of sum(out^2) is 2 per copied entry, d2/dleft dright is 0.
    out = knotsafe.interp(x, k, v, left=lo, right=hi)
    (gl,) = torch.autograd.grad((out**2).sum(), [lo], create_graph=True)
    second = torch.autograd.grad(gl, [lo, hi], allow_unused=True)
    assert float(second[0]) == 2 * np.sum(BELOW)
    assert second[1] is None or float(second[1]) == 0.0
    # Forward mode.
    t = torch.func.jvp(
        lambda b: knotsafe.interp(x, k, v, left=b), (lo.detach(),), (torch.ones((), dtype=torch.float64),)
    )[1]
    np.testing.assert_array_equal(t.numpy(), BELOW.astype(float))
    torch._dynamo.reset()
    f = torch.compile(lambda a, b, c, lo_, hi_: knotsafe.interp(a, b, c, left=lo_, right=hi_).sum(), fullgraph=True)
    xg = x.clone().requires_grad_()
    gl2, gx = torch.autograd.grad(f(xg, k, v, lo, "extrapolate"), [lo, xg])
    assert float(gl2) == np.sum(BELOW)
    ex, _, _ = _line_partials(X[ABOVE], KNOTS, VALUES)
    np.testing.assert_allclose(gx.numpy()[ABOVE], ex, rtol=0, atol=4 * eps_of("float64"))


def test_torch_vmap_over_bounds_raises_no_warning() -> None:
    torch = backend_module("torch")
    x, k, v = (torch.asarray(a) for a in (X, KNOTS, VALUES))
    lo = torch.asarray([-2.0, 1.0], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = torch.vmap(lambda b: knotsafe.interp(x, k, v, left=b))(lo)
    for row, b in zip(out.numpy(), (-2.0, 1.0), strict=True):
        np.testing.assert_array_equal(row, np.interp(X, KNOTS, VALUES, left=b))


# --- bad bounds name the argument ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "exc", "match"),
    [
        ("extrapolat", TypeError, "`left`.*'extrapolate'"),
        ("1", TypeError, "`left`"),
        (True, TypeError, "`left`.*bool"),
        (np.bool_(False), TypeError, "`left`.*bool"),
        (b"1", TypeError, "`left`.*bytes"),
        (1 + 2j, TypeError, "`left` is complex"),
        ([1.0], TypeError, "`left`"),
        (object(), TypeError, "`left`"),
    ],
)
def test_bad_bound_names_the_argument(xp: ModuleType, value: Any, exc: type, match: str) -> None:
    dt = _dt(xp)
    with pytest.raises(exc, match=match):
        _call(xp, dt, left=value)


@pytest.mark.parametrize("value", ["1", b"1", True, np.bool_(False)], ids=repr)
def test_junk_bounds_raise_also_where_period_ignores_them(xp: ModuleType, value: Any) -> None:
    """numpy.interp ignores left/right with a period; a junk type is still a mistake, named."""
    dt = _dt(xp)
    for name in ("left", "right"):
        with pytest.raises(TypeError, match=rf"^`{name}` must be a number"):
            _call(xp, dt, period=10.0, **{name: value})
    # The control: "extrapolate" and numbers are bounds, ignored with a period (distinct knots: numpy's
    # order of knots that coincide after the reduction is arbitrary).
    k, v = np.array([-1.5, 0.0, 1.0, 2.5]), np.array([2.0, -1.0, 0.5, 3.0])
    want = np.interp(X, k, v, period=10.0)
    for good in ("extrapolate", 2.5):
        got = to_numpy(_call(xp, dt, k=k, v=v, period=10.0, left=good, right=good))
        np.testing.assert_allclose(got, want.astype(dt), rtol=0, atol=64 * eps_of(dt))


def test_bad_bound_arrays_name_the_argument(xp: ModuleType) -> None:
    dt = _dt(xp)
    with pytest.raises(ValueError, match="`right` must be a number or a 0-d array"):
        _call(xp, dt, right=asarray(xp, [1.0, 2.0], dt))
    with pytest.raises(TypeError, match=r"`right`.*bool"):
        _call(xp, dt, right=xp.asarray(True))
    with pytest.raises(TypeError, match="`left` is complex"):
        _call(xp, dt, left=xp.asarray(np.asarray(1 + 1j, "complex64")))
    if backend_name(xp) != "numpy":
        return
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="`left` is a torch array"):
        _call(xp, dt, left=torch.asarray(1.0))


def test_complex_bound_gradients_follow_each_frameworks_convention() -> None:
    """L = Re(sum(out) * (2 - 3i)) with one query below the knots: dL/dRe(left) = 2, dL/dIm(left) = 3.

    JAX's grad is dL/dRe - i dL/dIm, PyTorch's dL/dRe + i dL/dIm (docs/complex-and-period.md).
    """
    v = np.array([1 + 1j, 2 - 1j, 0.5j])
    k, x = np.array([0.0, 1.0, 2.0]), np.array([-1.0, 0.5, 3.0])
    w = 2 - 3j
    if selected("jax"):
        import jax
        import jax.numpy as jnp

        with jax.enable_x64(True):
            args = (jnp.asarray(x), jnp.asarray(k), jnp.asarray(v))
            g = jax.grad(lambda b: jnp.real(knotsafe.interp(*args, left=b).sum() * w))(jnp.asarray(1.0 + 2.0j))
        assert complex(g) == 2 - 3j
    if selected("torch"):
        import torch

        b = torch.tensor(1.0 + 2.0j, dtype=torch.complex128, requires_grad=True)
        out = knotsafe.interp(torch.asarray(x), torch.asarray(k), torch.asarray(v), left=b)
        (out.sum() * w).real.backward()
        assert complex(b.grad) == 2 + 3j
