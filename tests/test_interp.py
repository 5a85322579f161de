"""``knotsafe.interp``'s values: ``numpy.interp``'s on every backend, and its argument checks.

References: ``numpy.interp`` in float64 (bitwise where NumPy computes, within the contract's
``4 eps (|slope||x| + |f0| + |f1|)`` elsewhere) and numbers written here.  Gradients are in
``tests/test_gradients.py``, complex values and ``period=`` in ``tests/test_complex_period.py``,
infinite knots and values and half precision in ``tests/test_edge_inputs.py``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import pytest

import knotsafe
from knotsafe.testing import knot_cases
from tests._contract import contract_partials, contract_threshold
from tests._support import (
    asarray,
    backend_module,
    backend_name,
    bin_index,
    cast_case,
    eps_of,
    has_float64,
    interior,
    to_numpy,
)

CASES = {c.name: c for c in knot_cases()}


def _dt(xp: ModuleType) -> str:
    return "float64" if has_float64(xp) else "float32"


# --- numpy.interp's values ------------------------------------------------------------------------


@pytest.mark.parametrize("case_name", list(CASES))
def test_forward_matches_numpy_interp(xp: ModuleType, dtype_name: str, case_name: str) -> None:
    x, k, v = cast_case(CASES[case_name], dtype_name)
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
    j = bin_index(k64, x64)
    gap = k64[j + 1] - k64[j]
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(gap > 0, (v64[j + 1] - v64[j]) / gap, 0.0)
    bound = 4 * eps_of(dtype_name) * (np.abs(slope) * np.abs(x64) + np.abs(v64[j]) + np.abs(v64[j + 1]))
    inside = interior(k64, x64)
    err = np.abs(got.astype(np.float64) - ref)
    assert np.all(err[ok & inside] <= bound[ok & inside]), np.max((err - bound)[ok & inside])
    np.testing.assert_array_equal(got[ok & ~inside], ref[ok & ~inside].astype(dtype_name))


def test_numpy_forward_is_numpy_interp_bitwise() -> None:
    """On NumPy float64 the forward is numpy.interp's, bit for bit, also where knotsafe's own
    arithmetic would round differently (a value computed from the other end of the bin)."""
    rng = np.random.default_rng(0)
    k = np.sort(rng.normal(size=50))
    v = rng.normal(size=50) * 1e8
    x = rng.normal(size=1000)
    np.testing.assert_array_equal(knotsafe.interp(x, k, v), np.interp(x, k, v))
    assert to_numpy(knotsafe.interp(x, k, v)).dtype == np.float64


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


def test_torch_compile_without_gradients_gives_numpy_interp_values() -> None:
    """``torch.compile(fullgraph=True)`` of a call where no input requires a gradient (inference):
    the compiled branch's plain forward, with ``left``/``right`` and a run of duplicate knots, gives
    numpy.interp's values (the compiled arithmetic may fuse a multiply-add: one rounding per value,
    so within 2 eps of numpy's float64 result, relative to the largest value)."""
    torch = backend_module("torch")

    k = np.array([0.0, 1.0, 2.0, 2.0, 3.0, 5.0])
    v = np.array([0.5, -1.25, 3.0, 0.75, 2.5, -2.0])
    x = np.array([-1.0, 0.0, 0.375, 1.5, 2.0, 2.625, 4.0, 5.0, 6.0])
    torch._dynamo.reset()
    compiled = torch.compile(lambda a, b, c: knotsafe.interp(a, b, c, left=-7.0, right=9.0), fullgraph=True)
    got = compiled(*(torch.asarray(a) for a in (x, k, v)))
    expected = np.interp(x, k, v, left=-7.0, right=9.0)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=2 * np.finfo(np.float64).eps * 9.0)


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


# --- left and right -------------------------------------------------------------------------------


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


@pytest.mark.parametrize("dt", ["float32", "float64"])
def test_left_right_are_rounded_once_to_the_queries_dtype(xp: ModuleType, dt: str) -> None:
    """``left=0.1``, ``right=1/3`` (not representable in float32) with float32 and float64 inputs.

    numpy.interp returns ``left``/``right`` themselves; in the inputs' dtype that is the Python float
    rounded once to it (float64: unchanged), never first to a framework's default float dtype
    (PyTorch's is float32).  Queries below, on and above the knots: the expected values are exact.
    """
    if dt == "float64" and not has_float64(xp):
        pytest.skip("no float64")
    x, k, v = (np.array(a, dtype=dt) for a in ([-1.0, 0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0], [0.5, 1.5, -2.0]))
    got = knotsafe.interp(*(asarray(xp, a, dt) for a in (x, k, v)), left=0.1, right=1 / 3)
    expected = np.interp(x, k, v, left=0.1, right=1 / 3).astype(dt)
    assert to_numpy(got).dtype == np.dtype(dt)
    np.testing.assert_array_equal(to_numpy(got), expected)


def test_strict_arrays_on_a_non_default_device_with_left_right() -> None:
    """array-api-strict arrays on its second device, ``left``/``right`` set: every array the forward
    makes (the 0-d ``left``/``right``) is on the inputs' device (array-api-strict refuses to mix
    devices), and the values are numpy.interp's."""
    xp = backend_module("array_api_strict")
    dev = xp.Device("device1")
    x, k, v = [-1.0, 0.5, 2.0, 3.0], [0.0, 1.0, 2.0], [0.5, 1.5, -2.0]
    got = knotsafe.interp(*(xp.asarray(a, dtype=xp.float64, device=dev) for a in (x, k, v)), left=0.1, right=1 / 3)
    assert got.device == dev
    np.testing.assert_array_equal(to_numpy(got), np.interp(x, k, v, left=0.1, right=1 / 3))


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
    # Exact: slope 1, w in {0, 1/2} (see test_left_right_gradients in tests/test_gradients.py).
    np.testing.assert_array_equal(np.asarray(gx), ex)
    np.testing.assert_array_equal(np.asarray(gk), ek.sum(axis=0))
    np.testing.assert_array_equal(np.asarray(gv), ev.sum(axis=0))


def test_nan_left_right_reuse_the_compiled_function() -> None:
    """NaN bounds are operands, not part of the cached rule (where NaN != NaN would miss): no recompilation per call."""
    backend_module("jax")
    import jax.numpy as jnp

    from knotsafe._lib.backends import jax_hooks as _hooks_jax

    x, k, v = jnp.asarray([-1.0, 0.5, 3.0]), jnp.asarray([0.0, 1.0, 2.0]), jnp.asarray([0.0, 1.0, 2.0])
    knotsafe.interp(x, k, v, left=float("nan"), right=float("nan"))
    before = _hooks_jax._custom_interp.cache_info()
    for _ in range(5):
        out = knotsafe.interp(x, k, v, left=float("nan"), right=np.float64("nan"))
    after = _hooks_jax._custom_interp.cache_info()
    assert after.misses == before.misses
    assert after.hits == before.hits + 5
    assert np.isnan(np.asarray(out)[[0, 2]]).all() and np.asarray(out)[1] == 0.5


# --- bad input ------------------------------------------------------------------------------------


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
                "dask", reason="data check: needs values, skipped on lazy dask arrays (tests/test_scale_out.py)"
            ),
        ),
        pytest.param(
            {"knots": [0.0, float("nan")]},
            ValueError,
            "`knots` must be non-decreasing and free of NaN",
            marks=pytest.mark.skip_xp_backend(
                "dask", reason="data check: needs values, skipped on lazy dask arrays (tests/test_scale_out.py)"
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
