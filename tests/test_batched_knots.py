"""Batched knots: ``knots``/``values`` (..., N) against ``x`` (..., M), one curve per row.

References: numpy.interp row by row, the 1-D call on each row (bitwise on NumPy, PyTorch,
array-api-strict and Dask), the contract's partials row by row, and each framework's own
vmap or row loop of the 1-D call for gradients.
"""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np
import pytest

import knotsafe
from tests import _support
from tests._contract import contract_partials, contract_threshold
from tests._support import AutoDiff, asarray, backend_module, backend_name, eps_of, has_float64, to_numpy


def _dt(xp: ModuleType) -> str:
    return "float64" if has_float64(xp) else "float32"


def _rows(rng: np.random.Generator, d: int = 4, n: int = 12, m: int = 30) -> tuple[np.ndarray, ...]:
    """Knots per row with an exact duplicate, a 2-ulp near-duplicate and a repeated end knot;
    queries below, inside, on knots, above, and one NaN."""
    k = np.sort(rng.uniform(-2.0, 2.0, (d, n)), axis=1)
    k[:, 3] = k[:, 2]
    k[:, 7] = np.nextafter(np.nextafter(k[:, 6], 3.0), 3.0)
    k[1, -1] = k[1, -2]
    v = rng.normal(size=(d, n))
    x = rng.uniform(-3.0, 3.0, (d, m))
    x[:, :4] = k[:, [0, 3, 7, -1]]
    x[2, 5] = np.nan
    return x, k, v


def _bound(x: np.ndarray, k: np.ndarray, v: np.ndarray, dt: str) -> np.ndarray:
    """numpy's rounding bound per query, as in tests/test_complex_period.py: 4 eps (|slope||x| + |f0| + |f1|)."""
    j = np.clip(np.searchsorted(k, x, side="right") - 1, 0, k.size - 2)
    gap = k[j + 1] - k[j]
    slope = np.where(gap > 0, (v[j + 1] - v[j]) / np.where(gap > 0, gap, 1.0), 0.0)
    return 4 * eps_of(dt) * (np.abs(slope) * np.abs(np.nan_to_num(x)) + np.abs(v[j]) + np.abs(v[j + 1]))


def _exact(xp: ModuleType) -> bool:
    """Whether a batched call is bitwise the 1-D calls (every backend but JAX, whose XLA programs differ)."""
    return backend_name(xp) != "jax"


def _assert_rows(xp: ModuleType, got: np.ndarray, rows: list[np.ndarray], k: np.ndarray, v: np.ndarray, x: Any) -> None:
    for r, want in enumerate(rows):
        if _exact(xp):
            np.testing.assert_array_equal(got[r], want)
        else:
            bound = _bound(np.broadcast_to(x, got.shape)[r], k[r], v[r], str(got.dtype))
            np.testing.assert_array_equal(np.isnan(got[r]), np.isnan(want))
            ok = ~np.isnan(want)
            np.testing.assert_array_less(np.abs(got[r] - want)[ok], bound[ok] + np.finfo(got.dtype).tiny)


# --- forward values -----------------------------------------------------------------------------


@pytest.mark.parametrize("query_shape", ["rows", "shared"])
def test_rows_are_the_one_dimensional_calls(
    xp: ModuleType, dtype_name: str, rng: np.random.Generator, query_shape: str
) -> None:
    """(D, M) or (M,) queries against (D, N) knots: row r is interp(x[r], knots[r], values[r]) and numpy.interp's."""
    x, k, v = (a.astype(dtype_name) for a in _rows(rng))
    if query_shape == "shared":
        x = x[0]
    got = to_numpy(knotsafe.interp(xp.asarray(x), xp.asarray(k), xp.asarray(v)))
    assert got.shape == (k.shape[0], x.shape[-1]) and got.dtype == np.dtype(dtype_name)
    xr = np.broadcast_to(x, got.shape)
    one_d = [
        to_numpy(knotsafe.interp(xp.asarray(xr[r]), xp.asarray(k[r]), xp.asarray(v[r]))) for r in range(k.shape[0])
    ]
    _assert_rows(xp, got, one_d, k, v, x)
    for r in range(k.shape[0]):
        ref = np.interp(xr[r].astype(np.float64), k[r].astype(np.float64), v[r].astype(np.float64))
        if backend_name(xp) == "numpy":
            np.testing.assert_array_equal(got[r], ref.astype(dtype_name))
        else:
            bound = _bound(xr[r].astype(np.float64), k[r].astype(np.float64), v[r].astype(np.float64), dtype_name)
            np.testing.assert_array_equal(np.isnan(got[r]), np.isnan(ref))
            ok = ~np.isnan(ref)
            np.testing.assert_array_less(np.abs(got[r] - ref)[ok], bound[ok] + np.finfo(dtype_name).tiny)


def test_leading_dimensions_broadcast(xp: ModuleType, rng: np.random.Generator) -> None:
    """knots (2, 1, N), values (1, 3, N), x (M,) -> (2, 3, M); values (N,) against knots (2, N)."""
    dt = _dt(xp)
    x, k, v = (a.astype(dt) for a in _rows(rng, d=3))
    kk = np.stack([k[:1], 2 * k[:1]])  # (2, 1, N)
    vv = v[None]  # (1, 3, N)
    got = to_numpy(knotsafe.interp(xp.asarray(x[0]), xp.asarray(kk), xp.asarray(vv)))
    assert got.shape == (2, 3, x.shape[1])
    for i in range(2):
        for j in range(3):
            want = to_numpy(knotsafe.interp(xp.asarray(x[0]), xp.asarray(kk[i, 0]), xp.asarray(vv[0, j])))
            _assert_rows(xp, got[i, j][None], [want], kk[i], vv[0, j][None], x[0])
    got = to_numpy(knotsafe.interp(xp.asarray(x[:2]), xp.asarray(k[:2]), xp.asarray(v[0])))
    for r in range(2):
        want = to_numpy(knotsafe.interp(xp.asarray(x[r]), xp.asarray(k[r]), xp.asarray(v[0])))
        _assert_rows(xp, got[r][None], [want], k[r][None], v[0][None], x[r])


@pytest.mark.parametrize("kind", ["period", "complex", "bounds", "extrapolate", "one knot"])
def test_signature_options_per_row(xp: ModuleType, rng: np.random.Generator, kind: str) -> None:
    """period=, complex values, per-row bounds and a single knot: each row is its 1-D call."""
    dt = _dt(xp)
    x, k, v = (a.astype(dt) for a in _rows(rng))
    d = k.shape[0]
    kw: list[dict[str, Any]] = [{} for _ in range(d)]
    batch_kw: dict[str, Any] = {}
    if kind == "period":
        k = rng.permutation(rng.uniform(-400.0, 400.0, (d, 12)).astype(dt), axis=1)
        x = rng.uniform(-720.0, 720.0, x.shape).astype(dt)
        batch_kw = {"period": 360.0}
        kw = [batch_kw] * d
    elif kind == "complex":
        v = (v + 1j * rng.normal(size=v.shape)).astype({"float32": "complex64", "float64": "complex128"}[dt])
    elif kind == "bounds":
        lo = rng.normal(size=d).astype(dt)
        batch_kw = {"left": xp.asarray(lo), "right": -2.5}
        kw = [{"left": float(lo[r]), "right": -2.5} for r in range(d)]
    elif kind == "extrapolate":
        batch_kw = {"left": "extrapolate", "right": xp.asarray(np.asarray([1.5], dt))}
        kw = [{"left": "extrapolate", "right": 1.5}] * d
    else:
        k, v = k[:, :1], v[:, :1]
    got = to_numpy(knotsafe.interp(xp.asarray(x), xp.asarray(k), xp.asarray(v), **batch_kw))
    rows = [to_numpy(knotsafe.interp(xp.asarray(x[r]), xp.asarray(k[r]), xp.asarray(v[r]), **kw[r])) for r in range(d)]
    if kind in ("complex", "period"):
        # Compared exactly, or for JAX through the per-part bound on the rows' own data.
        for r in range(d):
            if _exact(xp):
                np.testing.assert_array_equal(got[r], rows[r])
            else:
                np.testing.assert_allclose(got[r], rows[r], rtol=8 * eps_of(dt), atol=8 * eps_of(dt))
        return
    _assert_rows(xp, got, rows, k, np.real(v), x)


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_half_precision_rows(xp: ModuleType, rng: np.random.Generator, half: str) -> None:
    name = backend_name(xp)
    if not hasattr(xp, half) or name in ("array_api_strict", "dask") or (name == "numpy" and half == "bfloat16"):
        pytest.skip(f"no {half} on {name}")
    x, k, v = _rows(rng)
    ns = array_api_compat.array_namespace(xp.asarray(0.0))
    arrays = [ns.astype(xp.asarray(a.astype(np.float32)), getattr(xp, half)) for a in (x, k, v)]
    got = knotsafe.interp(*arrays)
    assert got.dtype == getattr(xp, half)
    for r in range(k.shape[0]):
        want = knotsafe.interp(*(a[r] for a in arrays))
        got_r, want_r = (to_numpy(ns.astype(a, ns.float32)) for a in (got[r], want))
        if _exact(xp):
            np.testing.assert_array_equal(got_r, want_r)
        else:
            # Computed in float32 and rounded once: the 1-D call and the row differ by at most one rounding.
            half_eps = 2.0**-7 if half == "bfloat16" else 2.0**-10
            np.testing.assert_allclose(got_r, want_r, rtol=half_eps, atol=0)


def test_empty_batches_and_queries(xp: ModuleType) -> None:
    dt = _dt(xp)
    k = asarray(xp, np.zeros((0, 3)), dt)
    assert knotsafe.interp(asarray(xp, [0.5], dt), k, k).shape == (0, 1)
    k = asarray(xp, [[0.0, 1.0], [0.0, 2.0]], dt)
    assert knotsafe.interp(asarray(xp, np.zeros((2, 0)), dt), k, k).shape == (2, 0)


# --- gradients ------------------------------------------------------------------------------


def _loss_weights(shape: tuple[int, ...]) -> np.ndarray:
    return np.linspace(-1.0, 2.0, int(np.prod(shape))).reshape(shape)


@pytest.mark.parametrize("bounds", [False, True])
def test_row_gradients_are_the_one_dimensional_calls(
    xp: ModuleType, autodiff: AutoDiff, rng: np.random.Generator, bounds: bool
) -> None:
    """grad of sum(G * interp(x, knots, values[, left=(D,), right])) per row against the 1-D call's gradient."""
    dt = _dt(xp)
    x, k, v = (a.astype(dt) for a in _rows(rng))
    x[2, 5] = 0.5  # a NaN query makes every gradient of its row NaN-free but the loss NaN
    d = k.shape[0]
    lo = rng.normal(size=d).astype(dt)
    g = asarray(xp, _loss_weights(x.shape), dt)

    def batched(a: Any, b: Any, c: Any, left: Any) -> Any:
        kw = {"left": left, "right": 3.0} if bounds else {}
        return knotsafe.interp(a, b, c, **kw) * g

    args = [asarray(xp, a, dt) for a in (x, k, v, lo)]
    got = autodiff.grad(batched, args, range(4 if bounds else 3))
    for r in range(d):
        gr = asarray(xp, _loss_weights(x.shape)[r], dt)

        def one(a: Any, b: Any, c: Any, left: Any, gr: Any = gr) -> Any:
            kw = {"left": left, "right": 3.0} if bounds else {}
            return knotsafe.interp(a, b, c, **kw) * gr

        want = autodiff.grad(one, [asarray(xp, a[r], dt) for a in (x, k, v, lo)], range(4 if bounds else 3))
        for got_i, want_i in zip(got, want, strict=True):
            if _exact(xp):
                np.testing.assert_array_equal(got_i[r], want_i)
            else:
                scale = np.max(np.abs(want_i)) + 1.0
                np.testing.assert_allclose(got_i[r], want_i, rtol=0, atol=16 * eps_of(dt) * scale)


def test_row_gradients_follow_the_contract(xp: ModuleType, autodiff: AutoDiff) -> None:
    """Exact binary data with an exact and a 2-ulp duplicate per row: the contract's Jacobians, row by row,
    forward mode equal to reverse mode."""
    dt = _dt(xp)
    near = float(np.nextafter(np.nextafter(np.asarray(1.0, dt), 2.0), 2.0))
    k = np.array([[0.0, 0.5, 0.5, 1.0, near, 2.0], [-1.0, 0.0, 0.25, 0.25, 1.0, 1.0]])
    v = np.array([[1.0, 2.0, -1.0, 0.0, 4.0, 2.0], [3.0, 1.0, 0.0, 2.0, -2.0, 5.0]])
    x = np.array([[-0.5, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5], [-2.0, -0.5, 0.125, 0.25, 0.5, 1.0, 1.5, 0.0]])
    X, K, V = (asarray(xp, a, dt) for a in (x, k, v))
    jac = []
    for f, arg in (
        (lambda a: knotsafe.interp(a, K, V), X),
        (lambda a: knotsafe.interp(X, a, V), K),
        (lambda a: knotsafe.interp(X, K, a), V),
    ):
        fwd, rev = autodiff.jacobians(f, arg)
        np.testing.assert_array_equal(fwd, rev)
        jac.append(rev)  # (2, M, 2, N) or (2, M, 2, M)
    for r in range(2):
        kr = k[r].astype(dt).astype(np.float64)
        _, ex, ek, ev = contract_partials(x[r], kr, v[r], threshold=contract_threshold(kr, dt))
        # Exact binary data, except the bin beside the near-duplicate, whose gap 1 - 2 ulp is one
        # rounding in the dtype: every partial within 2 eps relative (a division and a product).
        eps = eps_of(dt)
        np.testing.assert_allclose(np.diagonal(jac[0][r, :, r, :]), ex, rtol=2 * eps, atol=0)
        np.testing.assert_allclose(jac[1][r, :, r, :], ek, rtol=2 * eps, atol=0)
        np.testing.assert_allclose(jac[2][r, :, r, :], ev, rtol=2 * eps, atol=0)
        other = 1 - r  # nothing crosses rows
        assert not np.any(jac[0][r, :, other, :]) and not np.any(jac[1][r, :, other, :])
        assert not np.any(jac[2][r, :, other, :])


def test_vmap_of_the_one_dimensional_call_is_the_batched_call(
    xp: ModuleType, autodiff: AutoDiff, rng: np.random.Generator
) -> None:
    """The framework's vmap over the 1-D call: the batched values and per-row gradients, with no warning."""
    dt = _dt(xp)
    x, k, v = (a.astype(dt) for a in _rows(rng))
    x[2, 5] = 0.5
    args = [asarray(xp, a, dt) for a in (x, k, v)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mapped = to_numpy(autodiff.vmap(knotsafe.interp)(*args))
        grads = autodiff.vmap_grad(knotsafe.interp, (0, 1, 2))(*args)
    batched = to_numpy(knotsafe.interp(*args))
    want = autodiff.grad(knotsafe.interp, args, (0, 1, 2))
    if _exact(xp):
        np.testing.assert_array_equal(mapped, batched)
    else:
        np.testing.assert_allclose(mapped, batched, rtol=0, atol=4 * eps_of(dt) * (np.nanmax(np.abs(batched)) + 1))
    for got_i, want_i in zip(grads, want, strict=True):
        got_i = to_numpy(got_i)
        scale = np.max(np.abs(want_i)) + 1.0
        np.testing.assert_allclose(got_i, want_i, rtol=0, atol=16 * eps_of(dt) * scale)


def test_torch_compile_fullgraph_batched(rng: np.random.Generator) -> None:
    torch = backend_module("torch")
    x, k, v = _rows(rng)
    x[2, 5] = 0.5
    xt, kt, vt = (torch.asarray(a) for a in (x, k, v))
    lo = torch.asarray(rng.normal(size=k.shape[0]))
    g = torch.asarray(_loss_weights(x.shape))

    def loss(a: Any, b: Any, c: Any, left: Any) -> Any:
        return (knotsafe.interp(a, b, c, left=left, right="extrapolate") * g).sum()

    torch._dynamo.reset()
    compiled = torch.compile(loss, fullgraph=True)
    leaves = [t.clone().requires_grad_() for t in (xt, kt, vt, lo)]
    got = torch.autograd.grad(compiled(*leaves), leaves)
    eager = [t.clone().requires_grad_() for t in (xt, kt, vt, lo)]
    want = torch.autograd.grad(loss(*eager), eager)
    for got_i, want_i in zip(got, want, strict=True):
        # Inductor may fuse multiply-adds: a few roundings of the same terms.
        scale = float(want_i.abs().max()) + 1.0
        np.testing.assert_allclose(got_i.numpy(), want_i.numpy(), rtol=0, atol=16 * eps_of("float64") * scale)


def test_jax_jit_batched_equals_eager(rng: np.random.Generator) -> None:
    jax = backend_module("jax")
    import jax.numpy as jnp

    dt = "float64" if jax.config.read("jax_enable_x64") else "float32"
    x, k, v = (jnp.asarray(a.astype(dt)) for a in _rows(rng))
    eager = knotsafe.interp(x, k, v, left=jnp.zeros(k.shape[0], dt), right="extrapolate")
    jitted = jax.jit(lambda a, b, c, lo: knotsafe.interp(a, b, c, left=lo, right="extrapolate"))(
        x, k, v, jnp.zeros(k.shape[0], dt)
    )
    np.testing.assert_array_equal(np.asarray(jitted), np.asarray(eager))


@pytest.mark.parametrize("period", [None, 5.0])
def test_unreadable_bad_rows_are_nan_row_by_row(xp: ModuleType, period: float | None) -> None:
    """Knots that cannot be checked: a bad row's outputs are NaN (as the 1-D call on that row, or vmap of it,
    gives), the good rows are numpy.interp's; the same knots on readable arrays raise."""
    dt = _dt(xp)
    bad = [np.inf, 1.0, 2.0] if period else [2.0, 1.0, 0.0]
    k = np.array([[0.0, 1.0, 2.0], bad, [0.0, np.nan, 2.0], [0.0, 0.5, 2.0]])
    v = np.array([[0.0, 1.0, 4.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [4.0, 1.0, 0.0]])
    x = np.array([-1.0, 0.25, 1.5, 3.0])
    f = _support.unreadable(xp, lambda a, b, c: knotsafe.interp(a, b, c, period=period))
    got = f(*(asarray(xp, a, dt) for a in (x, k, v)))
    assert got.shape == (4, 4)
    assert np.isnan(got[1:3]).all()
    for r in (0, 3):
        want = np.interp(x, k[r], v[r], period=period).astype(dt)
        np.testing.assert_allclose(got[r], want, rtol=0, atol=4 * eps_of(dt) * 4)
    readable = np if backend_name(xp) == "dask" else xp
    with pytest.raises(ValueError, match=r"^`knots` must be"):
        knotsafe.interp(*(asarray(readable, a, dt) for a in (x, k, v)), period=period)


# --- bad shapes name the argument ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("shapes", "kw", "match"),
    [
        (((2, 3), (2, 4), (2, 5)), {}, "`values` must have the length of `knots`"),
        (((3, 5), (2, 4), (2, 4)), {}, "`knots` and `x` do not broadcast"),
        (((5,), (2, 4), (3, 4)), {}, "`knots` and `values` do not broadcast"),
        (((), (2, 4), (2, 4)), {}, "`x` must have at least one dimension"),
        (((2, 5), (2, 4), (2, 4)), {"left": (3,)}, "`left` of shape"),
        (((2, 5), (2, 4), (2, 4)), {"right": (2, 1)}, "`right` of shape"),
        (((2, 5), (2, 0), (2, 0)), {}, "`knots` must not be empty"),
    ],
)
def test_bad_batched_shapes_name_the_argument(
    xp: ModuleType, shapes: tuple[tuple[int, ...], ...], kw: dict[str, Any], match: str
) -> None:
    dt = _dt(xp)
    x, k, v = (asarray(xp, np.ones(s), dt) for s in shapes)
    bounds = {name: asarray(xp, np.zeros(s), dt) for name, s in kw.items()}
    with pytest.raises(ValueError, match=match):
        knotsafe.interp(x, k, v, **bounds)


# --- the row-aware hooks ------------------------------------------------------------------------


def test_searchsorted_and_take_hooks_work_row_by_row(xp: ModuleType, rng: np.random.Generator) -> None:
    """Each backend's searchsorted/take hooks and the standard-only defaults on rows, against
    numpy.searchsorted and fancy indexing row by row (NaN, -0.0, +-inf and the knots themselves as
    queries; a row with no knots)."""
    from knotsafe.backends import generic_searchsorted, generic_take, hooks_for

    ns = array_api_compat.array_namespace(xp.asarray(0.0))
    hooks = hooks_for(ns)
    dt = _dt(xp)
    k = np.sort(rng.uniform(-1.0, 1.0, (3, 9)), axis=1).astype(dt)
    k[0, 4] = k[0, 3]
    k[1] = [-0.9, -0.5, -0.2, -0.0, 0.0, 0.1, 0.3, 0.6, 0.8]  # -0.0 and 0.0 are equal knots
    x = rng.uniform(-1.5, 1.5, (3, 12)).astype(dt)
    x[:, :3] = k[:, [0, 3, 8]]
    x[0, 5], x[1, 6], x[2, 7], x[2, 8] = np.nan, 0.0, np.inf, -np.inf
    expected = np.stack([np.searchsorted(k[r], x[r], side="right") for r in range(3)])
    for search in (hooks.searchsorted, generic_searchsorted):
        got = to_numpy(search(ns, asarray(xp, k, dt), asarray(xp, x, dt)))
        np.testing.assert_array_equal(got, expected)
        empty = to_numpy(search(ns, asarray(xp, k[:, :0], dt), asarray(xp, x, dt)))
        np.testing.assert_array_equal(empty, np.zeros(x.shape, dtype=int))
    index = np.minimum(expected, 8)
    for take in (hooks.take, generic_take):
        got = to_numpy(take(ns, asarray(xp, k, dt), ns.asarray(index)))
        np.testing.assert_array_equal(got, np.take_along_axis(k, index, axis=1))
