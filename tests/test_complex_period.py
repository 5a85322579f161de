"""Complex ``values`` and ``period=``: numpy.interp's forward values and the gradient rule.

References are numpy.interp (run in float64) and central differences with
steps that cross no knot; nothing is compared against numbers from ``src``.
"""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import knotsafe
from tests._support import AutoDiff, asarray, backend_module, backend_name, eps_of, has_float64, to_numpy

CDTYPE = {"float32": "complex64", "float64": "complex128"}


def _complex_case(rng: np.random.Generator, n: int = 12, m: int = 200) -> tuple[np.ndarray, ...]:
    knots = np.sort(rng.uniform(-2.0, 2.0, n))
    values = rng.normal(size=n) + 1j * rng.normal(size=n)
    x = rng.uniform(-2.5, 2.5, m)
    return x, knots, values


def _bound(x: np.ndarray, k: np.ndarray, v: np.ndarray, dtype_name: str) -> np.ndarray:
    """numpy's rounding bound per query: 4 eps (|slope||x| + |f0| + |f1|) of the bracketing bin.

    Every operand is rounded to ``dtype_name`` once (error eps/2 relative
    each) and the kernel's three operations add eps/2 each; 4 eps bounds
    their sum with room for the rounding of the slope.
    """
    j = np.clip(np.searchsorted(k, x, side="right") - 1, 0, k.size - 2)
    slope = (v[j + 1] - v[j]) / (k[j + 1] - k[j])
    return 4 * eps_of(dtype_name) * (np.abs(slope) * np.abs(x) + np.abs(v[j]) + np.abs(v[j + 1]))


def _assert_numpy_values(xp: ModuleType, got: np.ndarray, ref: np.ndarray, scale: float) -> None:
    """Bitwise on NumPy float64; elsewhere within 4 eps * scale (scale: |slope||x| + |f0| + |f1| over the case)."""
    if backend_name(xp) == "numpy" and got.dtype in (np.float64, np.complex128):
        np.testing.assert_array_equal(got, ref)
        return
    eps = float(np.finfo(got.dtype).eps)
    np.testing.assert_allclose(got, ref, rtol=0, atol=4 * eps * scale)


# --- complex forward values -----------------------------------------------------------------------


def test_complex_values_match_numpy(xp: ModuleType, dtype_name: str, rng: np.random.Generator) -> None:
    x, k, v = _complex_case(rng)
    x, k = x.astype(dtype_name), k.astype(dtype_name)
    v = v.astype(CDTYPE[dtype_name])
    out = knotsafe.interp(xp.asarray(x), xp.asarray(k), xp.asarray(v))
    got = to_numpy(out)
    assert got.dtype == np.dtype(CDTYPE[dtype_name]) and got.shape == x.shape
    x64, k64 = x.astype(np.float64), k.astype(np.float64)
    for part, ref_values in (("real", v.real), ("imag", v.imag)):
        ref = np.interp(x64, k64, ref_values.astype(np.float64))
        g = getattr(got, part)
        if backend_name(xp) == "numpy" and dtype_name == "float64":
            # Each part is numpy.interp of that part, bit for bit.
            np.testing.assert_array_equal(g, ref)
        else:
            err = np.abs(g.astype(np.float64) - ref)
            bound = _bound(x64, k64, ref_values.astype(np.float64), dtype_name)
            assert np.all(err <= bound), np.max(err - bound)
    # numpy's own complex loop computes the slope as rise * (1 / gap), not
    # rise / gap: it differs from the per-part result by rounding only.
    ref_c = np.interp(x64, k64, v.astype(np.complex128))
    bound = _bound(x64, k64, np.abs(v).astype(np.float64), dtype_name)
    assert np.all(np.abs(got.astype(np.complex128) - ref_c) <= 2 * bound)


def test_complex_left_right_and_nan_query(xp: ModuleType) -> None:
    k = np.array([0.0, 1.0, 1.0, 2.0])
    v = np.array([1 + 1j, 2 - 1j, 3 + 0.5j, -4j])
    x = np.array([[-1.0, 0.5, 1.0], [2.5, np.nan, 0.0]])
    for left, right in ((None, None), (2 + 3j, -1 - 1j), (7.0, None)):
        got = to_numpy(knotsafe.interp(xp.asarray(x), xp.asarray(k), xp.asarray(v), left=left, right=right))
        ref = np.interp(x, k, v, left=left, right=right)
        np.testing.assert_array_equal(got, ref)
        # NaN query: numpy's complex loop gives NaN + 0j (the imaginary part is 0, not NaN).
        assert np.isnan(got[1, 1].real) and got[1, 1].imag == 0.0
    # One knot: numpy copies the value for every query, NaN included.
    one = to_numpy(knotsafe.interp(xp.asarray(np.array([np.nan, 5.0])), xp.asarray([1.0]), xp.asarray([2 + 3j])))
    np.testing.assert_array_equal(one, np.interp([np.nan, 5.0], [1.0], [2 + 3j]))


def test_complex_parts_exact_with_infinities(xp: ModuleType) -> None:
    """Infinite parts stay in their own part (``re + 1j * im`` would put NaN in the real part)."""
    k = np.array([0.0, 1.0, 2.0])
    v = np.array([complex(1.0, np.inf), complex(2.0, 5.0), complex(-np.inf, 1.0)])
    x = np.array([0.0, 0.5, 1.5, 2.0])
    ref = np.interp(x, k, v)
    # Pairs of special parts (zero or infinite real part, infinite or NaN
    # imaginary part) are exact on every backend, PyTorch included.
    special = np.array([complex(0.0, np.inf), complex(-np.inf, np.inf), complex(-0.0, np.nan)])
    got_s = to_numpy(knotsafe.interp(xp.asarray(k), xp.asarray(k), xp.asarray(special)))
    np.testing.assert_array_equal(got_s.real, special.real)
    np.testing.assert_array_equal(np.signbit(got_s.real), np.signbit(special.real))
    np.testing.assert_array_equal(got_s.imag, special.imag)
    # A finite non-zero real part beside an infinite imaginary part: exact on
    # PyTorch too, whose complex addition mixes the parts ((1+0j) + (-0+inf j)
    # == nan+inf j): its complex_parts hook builds them with torch.complex.
    got = to_numpy(knotsafe.interp(xp.asarray(x), xp.asarray(k), xp.asarray(v)))
    np.testing.assert_array_equal(got.real, ref.real)
    np.testing.assert_array_equal(got.imag, ref.imag)


@pytest.mark.parametrize("dt", ["complex64", "complex128"])
def test_torch_complex_values_with_infinite_imaginary_parts_keep_dtype_and_parts(dt: str) -> None:
    """A finite non-zero real part beside an infinite or NaN imaginary part, in both complex dtypes.

    These entries are built by the PyTorch ``complex_parts`` hook (PyTorch's complex arithmetic
    mixes the parts).  Queries on the knots copy the values: numpy.interp gives them bit for bit,
    and the result keeps the values' dtype.  Real parts 0.1 and 1/3 are not float32 numbers, so a
    complex128 result built from float32 parts differs from numpy's.
    """
    torch = backend_module("torch")
    real = "float32" if dt == "complex64" else "float64"
    k = np.array([0.0, 1.0, 2.0, 3.0]).astype(real)
    v = np.array([complex(0.1, np.inf), 2 + 5j, complex(1 / 3, -np.inf), complex(-0.7, np.nan)]).astype(dt)
    got = knotsafe.interp(torch.asarray(k), torch.asarray(k), torch.asarray(v))
    assert got.dtype == getattr(torch, dt)
    ref = np.interp(k, k, v).astype(dt)  # numpy computes in complex128; on the knots it copies the values
    np.testing.assert_array_equal(got.numpy().real, ref.real)
    np.testing.assert_array_equal(got.numpy().imag, ref.imag)


def test_torch_complex32_values_with_infinite_imaginary_parts_give_numpys_values() -> None:
    """``torch.complex32`` values (float16 parts) with infinite or NaN imaginary parts: numpy's values.

    Half precision is computed in float32 (complex32 as complex64: the PyTorch ``complex_parts``
    hook builds complex64 from float32 parts) and rounded back once, to complex32, as float16 real
    data comes back float16.  Queries on the knots copy the values, so numpy.interp on the exact
    complex64 upcast of the values is the reference, bit for bit.
    """
    torch = backend_module("torch")
    k = np.array([0.0, 1.0, 2.0, 3.0], dtype=np.float16)
    parts = [complex(0.1, np.inf), 2 + 5j, complex(1 / 3, -np.inf), complex(-0.7, np.nan)]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "ComplexHalf support is experimental", UserWarning)
        v = torch.asarray(np.array(parts, dtype=np.complex64)).to(torch.complex32)
        got = knotsafe.interp(torch.asarray(k), torch.asarray(k), v)
        v64 = v.to(torch.complex64).numpy()
    ref = np.interp(k.astype(np.float64), k.astype(np.float64), v64.astype(np.complex128))
    assert got.dtype == torch.complex32  # not complex128, which float64 parts in the hook would promote it to
    out = got.to(torch.complex128).numpy()
    np.testing.assert_array_equal(out.real, ref.real)
    np.testing.assert_array_equal(out.imag, ref.imag)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"x": np.array([0.5 + 1j])}, "`x` must be real"),
        ({"knots": np.array([0.0, 1j])}, "`knots` must be real"),
        ({"left": 1 + 2j}, "`left` is complex"),
        ({"right": np.complex128(1 + 2j)}, "`right` is complex"),
        ({"period": 1j}, "`period`"),
    ],
)
def test_complex_where_real_is_required_is_a_type_error(xp: ModuleType, kwargs: dict, match: str) -> None:
    args = {"x": np.array([0.5]), "knots": np.array([0.0, 1.0]), "values": np.array([0.0, 1.0])}
    kwargs = dict(kwargs)  # parametrize shares the dict between backends
    arrays = {n: xp.asarray(kwargs.pop(n, a)) for n, a in args.items()}
    with pytest.raises(TypeError, match=match):
        knotsafe.interp(arrays["x"], arrays["knots"], arrays["values"], **kwargs)


# --- period forward values ------------------------------------------------------------------------


def test_period_matches_numpy(xp: ModuleType, dtype_name: str, rng: np.random.Generator) -> None:
    p = 360.0
    k = rng.uniform(-720.0, 720.0, 15)  # unsorted, several periods
    v = rng.normal(size=15)
    x = rng.uniform(-1000.0, 1000.0, (4, 50))
    k32, v32, x32 = (a.astype(dtype_name) for a in (k, v, x))
    for period in (p, -p):  # numpy uses abs(period)
        got = to_numpy(knotsafe.interp(xp.asarray(x32), xp.asarray(k32), xp.asarray(v32), period=period))
        assert got.shape == x.shape and got.dtype == np.dtype(dtype_name)
        ref = np.interp(x32.astype(np.float64), k32.astype(np.float64), v32.astype(np.float64), period=period)
        if backend_name(xp) == "numpy" and dtype_name == "float64":
            np.testing.assert_array_equal(got, ref)
        else:
            # Reducing x and the knots modulo p in dtype_name rounds each by
            # eps/2 * p at most: the slope times that joins the usual bound.
            kr = np.sort(k32.astype(np.float64) % p)
            kw = np.concatenate([kr[-1:] - p, kr, kr[:1] + p])
            vs = v32.astype(np.float64)[np.argsort(k32.astype(np.float64) % p)]
            vw = np.concatenate([vs[-1:], vs, vs[:1]])
            xr = x32.astype(np.float64) % p
            j = np.clip(np.searchsorted(kw, xr, side="right") - 1, 0, kw.size - 2)
            slope = np.abs((vw[j + 1] - vw[j]) / (kw[j + 1] - kw[j]))
            bound = _bound(xr, kw, vw, dtype_name) + 4 * eps_of(dtype_name) * slope * p
            assert np.all(np.abs(got - ref) <= bound), np.max(np.abs(got - ref) - bound)


def test_period_ignores_left_right_and_takes_one_knot(xp: ModuleType) -> None:
    k, v, x = np.array([10.0, 200.0, 300.0]), np.array([1.0, -2.0, 4.0]), np.array([-5.0, 5.0, 400.0])
    got = knotsafe.interp(xp.asarray(x), xp.asarray(k), xp.asarray(v), left=-99.0, right=99.0, period=360)
    # |slope| <= 6/90 over |x| <= 360 plus |f0| + |f1| <= 8: scale 32.
    _assert_numpy_values(xp, to_numpy(got), np.interp(x, k, v, period=360), 32.0)
    one = knotsafe.interp(xp.asarray(x), xp.asarray([7.0]), xp.asarray([3.0]), period=360)
    np.testing.assert_array_equal(to_numpy(one), np.interp(x, [7.0], [3.0], period=360))  # a copy: exact


def test_complex_periodic(xp: ModuleType) -> None:
    """numpy's own complex periodic example, compared bitwise on the parts."""
    x = np.array([-180.0, -170.0, -185.0, 185.0, -10.0, -5.0, 0.0, 365.0])
    k = np.array([190.0, -190.0, 350.0, -350.0])
    v = np.array([5 + 1.0j, 10 + 2j, 3 + 3j, 4 + 4j])
    got = to_numpy(knotsafe.interp(xp.asarray(x), xp.asarray(k), xp.asarray(v), period=360))
    # |slope| <= 7/20 over |x| <= 360 plus |f0| + |f1| <= 20: scale 146.
    _assert_numpy_values(xp, got.real, np.interp(x, k, v.real, period=360), 146.0)
    _assert_numpy_values(xp, got.imag, np.interp(x, k, v.imag, period=360), 146.0)


@pytest.mark.skip_xp_backend(
    "dask",
    reason="its knots-finite case is a data check: skipped on lazy dask arrays",
)
@pytest.mark.parametrize(
    ("period", "knots", "exc", "match"),
    [
        (0, [0.0, 1.0], ValueError, "non-zero"),
        (0.0, [0.0, 1.0], ValueError, "non-zero"),
        (np.inf, [0.0, 1.0], ValueError, "finite"),
        (np.nan, [0.0, 1.0], ValueError, "non-zero|finite"),
        ("360", [0.0, 1.0], TypeError, None),
        (360, [0.0, np.nan], ValueError, "`knots` must be finite"),
        (360, [0.0, np.inf], ValueError, "`knots` must be finite"),
    ],
)
def test_bad_period(xp: ModuleType, period: Any, knots: list, exc: type, match: str | None) -> None:
    with pytest.raises(exc, match=match or "`period`"):
        knotsafe.interp(xp.asarray([0.5]), xp.asarray(knots), xp.asarray([1.0, 2.0]), period=period)


# --- gradients ------------------------------------------------------------------------------------


def _weights(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    return rng.normal(size=shape), rng.normal(size=shape)


def test_complex_value_gradients_follow_each_framework(
    xp: ModuleType, autodiff: AutoDiff, rng: np.random.Generator
) -> None:
    """d/dvalues of L = sum(a Re out + b Im out) against central differences of Re and Im.

    JAX's ``grad`` of a real function of complex ``v`` is ``dL/dRe - i dL/dIm``;
    PyTorch's ``.grad`` is ``dL/dRe + i dL/dIm``.
    """
    x, k, v = _complex_case(rng, n=8, m=40)
    a, b = _weights(rng, x.shape)

    def loss_np(vv: np.ndarray) -> float:
        out = np.interp(x, k, vv)
        return float(np.sum(a * out.real + b * out.imag))

    h = 1e-6
    fd_re = np.array([(loss_np(v + h * e) - loss_np(v - h * e)) / (2 * h) for e in np.eye(v.size)])
    fd_im = np.array([(loss_np(v + 1j * h * e) - loss_np(v - 1j * h * e)) / (2 * h) for e in np.eye(v.size)])
    dtype = "float64" if has_float64(xp) else "float32"
    cd = CDTYPE[dtype]
    xb, kb, ab, bb = (asarray(xp, t, dtype) for t in (x, k, a, b))
    vb = xp.asarray(v.astype(cd))

    def loss(vv: Any) -> Any:
        out = knotsafe.interp(xb, kb, vv)
        return xp.sum(ab * xp.real(out) + bb * xp.imag(out))

    if autodiff.name == "jax":
        import jax

        g = np.asarray(jax.grad(loss)(vb))
        expected = fd_re - 1j * fd_im
    else:
        leaf = vb.detach().clone().requires_grad_(True)
        loss(leaf).backward()
        g = leaf.grad.numpy()
        expected = fd_re + 1j * fd_im
    # L is linear in v: the central difference is exact up to rounding of
    # L (|L| ~ m, so ~m eps / h) -- 1e-6 relative in float64; float32 (JAX
    # without x64) rounds the weights themselves: 1e-4.
    tol = 1e-6 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(g, expected, rtol=tol, atol=tol)


def test_complex_query_gradient(xp: ModuleType, autodiff: AutoDiff, rng: np.random.Generator) -> None:
    """d/dx and d/dknots of a real loss of a complex result: slope parts weighted by a and b."""
    dtype = "float64" if has_float64(xp) else "float32"
    x, k, v = _complex_case(rng, n=8, m=40)
    a, b = _weights(rng, x.shape)
    vb = xp.asarray(v.astype(CDTYPE[dtype]))
    ab, bb = asarray(xp, a, dtype), asarray(xp, b, dtype)

    def f(xx: Any, kk: Any) -> Any:
        out = knotsafe.interp(xx, kk, vb)
        return ab * xp.real(out) + bb * xp.imag(out)

    gx, gk = autodiff.grad(f, [asarray(xp, x, dtype), asarray(xp, k, dtype)], [0, 1])
    # Central differences of the float64 reference with a step that crosses no knot.
    gaps = np.abs(x[:, None] - k[None, :]).min()
    h = min(1e-7, gaps / 4)

    def ref(xx: np.ndarray, kk: np.ndarray) -> np.ndarray:
        out = np.interp(xx, kk, v)
        return a * out.real + b * out.imag

    fd_x = (ref(x + h, k) - ref(x - h, k)) / (2 * h)
    fd_k = np.array([np.sum(ref(x, k + h * e) - ref(x, k - h * e)) / (2 * h) for e in np.eye(k.size)])
    # FD error ~ eps |out| / h ~ 1e-9 relative; float32 autodiff rounds at ~1e-6 times the slope scale.
    tol = 1e-6 if dtype == "float64" else 2e-3
    scale = np.abs(fd_x).max()
    np.testing.assert_allclose(gx, fd_x, rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(gk, fd_k, rtol=tol, atol=tol * scale * x.size)


def test_period_gradients_match_central_differences(
    xp: ModuleType, autodiff: AutoDiff, rng: np.random.Generator
) -> None:
    dtype = "float64" if has_float64(xp) else "float32"
    p = 2 * np.pi
    k = rng.uniform(-3 * p, 3 * p, 9)  # unsorted, spread over periods
    v = rng.normal(size=9)
    x = rng.uniform(-2 * p, 2 * p, 60)
    c = rng.normal(size=60)

    def ref(xx: np.ndarray, kk: np.ndarray, vv: np.ndarray) -> np.ndarray:
        return c * np.interp(xx, kk, vv, period=p)

    xr, kr = x % p, k % p
    dist = np.abs(xr[:, None] - np.concatenate([kr - p, kr, kr + p])[None, :]).min()
    h = min(1e-6, dist / 4)  # no query crosses a (wrapped) knot
    fd_x = (ref(x + h, k, v) - ref(x - h, k, v)) / (2 * h)
    fd_k = np.array([np.sum(ref(x, k + h * e, v) - ref(x, k - h * e, v)) / (2 * h) for e in np.eye(k.size)])
    fd_v = np.array([np.sum(ref(x, k, v + h * e) - ref(x, k, v - h * e)) / (2 * h) for e in np.eye(v.size)])
    cb = asarray(xp, c, dtype)

    def f(xx: Any, kk: Any, vv: Any) -> Any:
        return cb * knotsafe.interp(xx, kk, vv, period=p)

    gx, gk, gv = autodiff.grad(f, [asarray(xp, a, dtype) for a in (x, k, v)], [0, 1, 2])
    tol = 1e-6 if dtype == "float64" else 2e-3
    scale = max(np.abs(fd_x).max(), 1.0)
    np.testing.assert_allclose(gx, fd_x, rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(gk, fd_k, rtol=tol, atol=tol * scale * x.size)
    np.testing.assert_allclose(gv, fd_v, rtol=tol, atol=tol * x.size)


def test_wrap_duplicates_get_the_zero_slope_rule(xp: ModuleType, autodiff: AutoDiff) -> None:
    """A knot at 0 and one at p coincide after the reduction; one ulp below p is a near-duplicate."""
    dtype = "float64" if has_float64(xp) else "float32"
    p = 4.0
    below_p = float(np.nextafter(np.asarray(p, dtype), np.asarray(0.0, dtype)))
    # Exact duplicate: knots 0 and p with different values.
    k = np.array([0.0, 1.0, 2.0, 3.0, p])
    v = np.array([0.0, 1.0, 4.0, 9.0, 16.0])
    x = np.array([0.0, 0.5, 3.5, -0.5, p, 2 * p])
    gx, gk, gv = autodiff.grad(
        lambda xx, kk, vv: knotsafe.interp(xx, kk, vv, period=p), [asarray(xp, a, dtype) for a in (x, k, v)], [0, 1, 2]
    )
    for g in (gx, gk, gv):
        assert np.all(np.isfinite(g))
    # At 0 (and p, 2p) numpy uses the bin [0, 1) starting at the last of the
    # duplicates at 0 (the knot p, value 16): slope 1 - 16 = -15.
    np.testing.assert_allclose(gx[[0, 4, 5]], [-15.0] * 3, rtol=1e-5)
    np.testing.assert_allclose(gx[[1, 2, 3]], [-15.0, -9.0, -9.0], rtol=1e-5)  # 3.5 and -0.5 lie in [3, p)
    # Near-duplicate: a knot one ulp below p wraps to one ulp below 0; the
    # query there sits in the bin [p - ulp, p] of width ulp <= 8 eps max|knots|.
    k2 = np.array([0.0, 1.0, 2.0, below_p])
    v2 = np.array([0.0, 1.0, 4.0, 9.0])
    x2 = np.array([below_p, 1.5])
    out = to_numpy(knotsafe.interp(asarray(xp, x2, dtype), asarray(xp, k2, dtype), asarray(xp, v2, dtype), period=p))
    np.testing.assert_array_equal(out[:1], np.interp(x2[:1], k2, v2, period=p).astype(dtype))
    gx2, gk2 = autodiff.grad(
        lambda xx, kk: knotsafe.interp(xx, kk, asarray(xp, v2, dtype), period=p),
        [asarray(xp, a, dtype) for a in (x2, k2)],
        [0, 1],
    )
    assert gx2[0] == 0.0 and np.all(np.isfinite(gk2))  # plain interp: (0 - 9) / ulp ~ -1e16
    assert gx2[1] == pytest.approx(3.0)


def test_jax_jit_vmap_and_jacobians_with_period_and_complex() -> None:
    jax = backend_module("jax")
    import jax.numpy as jnp

    dt = jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32
    k = jnp.asarray([190.0, -190.0, 350.0, -350.0], dtype=dt)
    v = jnp.asarray([5.0, 10.0, 3.0, 4.0], dtype=dt)
    x = jnp.asarray([-180.0, 100.0, 5.0, 355.0], dtype=dt)  # in 4 different bins, none on a knot

    def f(xx: Any) -> Any:
        return knotsafe.interp(xx, k, v, period=360.0)  # period: a static Python number

    eager = np.asarray(f(x))
    np.testing.assert_array_equal(np.asarray(jax.jit(f)(x)), eager)
    np.testing.assert_array_equal(np.asarray(jax.vmap(f)(x[:, None]))[:, 0], eager)
    jf, jr = jax.jacfwd(f)(x), jax.jacrev(f)(x)
    np.testing.assert_array_equal(np.asarray(jf), np.asarray(jr))
    x64, k64, v64 = (np.asarray(a, dtype=np.float64) for a in (x, k, v))
    fd = (np.interp(x64 + 1e-3, k64, v64, period=360) - np.interp(x64 - 1e-3, k64, v64, period=360)) / 2e-3
    np.testing.assert_allclose(np.diag(np.asarray(jf)), fd, rtol=1e-4)
    with pytest.raises(TypeError, match="`period`"):
        jax.jit(lambda xx, pp: knotsafe.interp(xx, k, v, period=pp))(x, 360.0)
    vc = v.astype(jnp.complex64 if dt == jnp.float32 else jnp.complex128) * (1 + 2j)
    gc = jax.jit(jax.grad(lambda xx: jnp.real(knotsafe.interp(xx, k, vc, period=360.0)).sum()))(x)
    np.testing.assert_allclose(np.asarray(gc), fd, rtol=1e-4)


def test_torch_func_with_period_and_complex() -> None:
    torch = backend_module("torch")
    k = torch.tensor([190.0, -190.0, 350.0, -350.0], dtype=torch.float64)
    v = torch.tensor([5.0, 10.0, 3.0, 4.0], dtype=torch.float64)
    x = torch.tensor([-180.0, 100.0, 5.0, 355.0], dtype=torch.float64)  # none on a knot
    fd = (np.interp(x.numpy() + 1e-3, k, v, period=360) - np.interp(x.numpy() - 1e-3, k, v, period=360)) / 2e-3

    def f(xx: Any) -> Any:
        return knotsafe.interp(xx, k, v, period=360.0)

    jf, jr = torch.func.jacfwd(f)(x), torch.func.jacrev(f)(x)
    torch.testing.assert_close(jf, jr, rtol=0, atol=0)
    np.testing.assert_allclose(torch.diag(jf).numpy(), fd, rtol=1e-6)
    batched = torch.func.vmap(torch.func.grad(lambda xx: f(xx).sum()))(x[:, None])
    np.testing.assert_allclose(batched[:, 0].numpy(), fd, rtol=1e-6)
    vc = v.to(torch.complex128) * (1 + 2j)
    g = torch.func.grad(lambda xx: torch.imag(knotsafe.interp(xx, k, vc, period=360.0)).sum())(x)
    np.testing.assert_allclose(g.numpy(), 2 * fd, rtol=1e-6)


def test_docs_page_examples() -> None:
    """docs/complex-and-period.md's examples are doctests (they use NumPy and JAX)."""
    import doctest
    from pathlib import Path

    backend_module("jax")
    page = Path(__file__).resolve().parent.parent / "docs" / "complex-and-period.md"
    result = doctest.testfile(str(page), module_relative=False, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 10 and result.failed == 0
