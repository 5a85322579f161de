"""``knotsafe.backends``: the registry (lookup, registration, entry points, laziness, threads), the hook
contract of every built-in backend, and the standard-only defaults a registered backend gets.

References are outside knotsafe: ``numpy.add.at``, ``math.erf``, the framework's own gradient of a
product, the contract's partials (``tests/_contract.py``) and ``numpy.interp``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import subprocess
import sys
import textwrap
import threading
import types
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np
import pytest

import knotsafe
from knotsafe import backends, rectangular
from knotsafe._lib.backends import erf as _special
from knotsafe._lib.backends import registry
from knotsafe.backends import BackendHooks, generic_linearize, generic_scatter_add, hooks_for
from knotsafe.testing import knot_cases
from tests import backend_table
from tests._contract import KNOTS, VALUES, X_T, X, contract_partials, contract_threshold, expected_cotangent
from tests._support import (
    AutoDiff,
    asarray,
    autodiff_for,
    backend_module,
    backend_name,
    has_float64,
    interp_jacobians,
    to_numpy,
)


def _dt(xp: ModuleType) -> str:
    return "float64" if has_float64(xp) else "float32"


def _compat(xp: ModuleType) -> ModuleType:
    return array_api_compat.array_namespace(xp.asarray([0.0]))


# --- the registry ---------------------------------------------------------------------------------


def test_lookup_is_thread_safe(xp: ModuleType) -> None:
    ns = _compat(xp)
    registry._cache.clear()
    found: list[BackendHooks] = []
    threads = [threading.Thread(target=lambda: found.append(hooks_for(ns))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(found) == 8 and all(h is found[0] for h in found)


_THREAD_SCRIPT = textwrap.dedent(
    """
    import sys, threading
    import array_api_strict as xps
    import knotsafe
    assert "torch" not in sys.modules and "jax" not in sys.modules
    errors = []
    barrier = threading.Barrier(16)

    def user():
        x, k, v = xps.asarray([0.25, 0.5]), xps.asarray([0.0, 1.0]), xps.asarray([0.0, 2.0])
        barrier.wait()
        try:
            for _ in range(200):
                assert float(knotsafe.interp(x, k, v)[1]) == 1.0
                tr, _ = knotsafe.create_transforms(xps.reshape(k, (2, 1)))
                tr(xps.reshape(x, (2, 1)))
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    def importer(name):
        barrier.wait()
        __import__(name)

    threads = [threading.Thread(target=user) for _ in range(12)]
    threads += [threading.Thread(target=importer, args=(m,)) for m in ("torch", "jax", "torch", "jax")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(len(errors), errors[:2])
    """
)


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "jax", "array_api_strict")),
    reason="needs torch, jax and array_api_strict",
)
def test_first_use_while_other_threads_import_frameworks() -> None:
    """16 threads: 12 call knotsafe on array-api-strict arrays while 4 import torch and jax."""
    src = str(Path(knotsafe.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    for _ in range(2):
        run = subprocess.run(
            [sys.executable, "-c", _THREAD_SCRIPT], capture_output=True, text=True, env=env, timeout=300, check=False
        )
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stdout.startswith("0 []"), run.stdout


def test_import_knotsafe_imports_no_framework() -> None:
    code = (
        "import sys, knotsafe, knotsafe.rectangular\n"
        "bad = [m for m in ('numpy', 'jax', 'torch', 'array_api_strict', 'cupy') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_using_numpy_does_not_import_other_frameworks() -> None:
    code = (
        "import sys, numpy as np, knotsafe\n"
        "knotsafe.interp(np.array([0.5]), np.array([0.0, 1.0]), np.array([0.0, 1.0]))\n"
        "tr, inv = knotsafe.create_transforms(np.ones((4, 2)))\n"
        "bad = [m for m in ('jax', 'torch', 'array_api_strict') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _fake_namespace(name: str) -> ModuleType:
    mod = types.ModuleType(name)
    return mod


def test_unregistered_namespace_warns_once_with_identity_hooks() -> None:
    ns = _fake_namespace("fake_array_lib_for_test")
    with pytest.warns(UserWarning, match=r"fake_array_lib_for_test.*knotsafe\.backends\.register"):
        hooks = hooks_for(ns)
    assert hooks.name == "fake_array_lib_for_test"
    assert not hooks.differentiable
    marker = object()
    assert hooks.stop_gradient(marker) is marker
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hooks_for(ns) is hooks


def test_register_and_unregister_a_backend() -> None:
    ns = _fake_namespace("my_registered_lib")
    calls = []

    def factory() -> BackendHooks:
        calls.append(1)
        return BackendHooks("mine", differentiable=True)

    backends.register("my_registered_lib", factory)
    try:
        assert calls == []  # built lazily
        assert hooks_for(ns).name == "mine"
        assert hooks_for(ns).name == "mine"
        assert calls == [1]
        assert "my_registered_lib" in backends.registered()
    finally:
        backends.unregister("my_registered_lib")
    assert "my_registered_lib" not in backends.registered()


def test_register_validates_its_arguments() -> None:
    with pytest.raises(TypeError, match="`name`"):
        backends.register("", BackendHooks("x"))
    with pytest.raises(TypeError, match="`hooks`"):
        backends.register("x", 42)  # type: ignore[arg-type]
    backends.register("badfactory", lambda: 42, matches=lambda ns: getattr(ns, "__name__", "") == "bad_factory_ns")  # type: ignore[arg-type,return-value]
    try:
        with pytest.raises(TypeError, match="not BackendHooks"):
            hooks_for(_fake_namespace("bad_factory_ns"))
    finally:
        backends.unregister("badfactory")


def test_registered_hooks_override_builtins(xp: ModuleType) -> None:
    """A user registration wins over the built-in backend and is really used."""
    ns = _compat(xp)
    seen: list[str] = []
    builtin = hooks_for(ns)

    def spy_searchsorted(xpn: ModuleType, knots: object, x: object) -> object:
        seen.append("searchsorted")
        return builtin.searchsorted(xpn, knots, x)

    backends.register(
        "override", builtin.replace(searchsorted=spy_searchsorted, forward=None), matches=lambda n: n is ns
    )
    try:
        out = knotsafe.interp(xp.asarray([0.25]), xp.asarray([0.0, 1.0]), xp.asarray([0.0, 2.0]))
        assert float(to_numpy(out)[0]) == 0.5
        assert seen
    finally:
        backends.unregister("override")
    assert hooks_for(ns) is not None and hooks_for(ns).searchsorted is builtin.searchsorted


@pytest.mark.skip_xp_backend("dask", reason="lazy points cannot size the kernel grid: tests/test_scale_out.py")
def test_a_registered_compiled_hook_runs_the_kernel_ranks_and_mesh(xp: ModuleType) -> None:
    """The ``compiled`` hook receives the kernel CDF's build, forward and inverse, the rank knots and
    the mesh layout, and what it returns is what the public functions compute with: a hook that
    compiles nothing gives the built-in backend's results bit for bit, and one that returns a
    wrong function changes them."""
    ns = _compat(xp)
    builtin = hooks_for(ns)
    seen: list[str] = []

    def spy(fn: Any) -> Any:
        seen.append(getattr(fn, "func", fn).__name__)
        return builtin.compiled(fn)

    data = np.random.default_rng(1).normal(size=(40, 2))
    q = np.random.default_rng(2).normal(size=(30, 2))

    def results() -> list[np.ndarray]:
        pts, qs = asarray(xp, data), asarray(xp, q)
        out = []
        for method in ("rank", "kernel"):
            std = {"kernel_std": 0.5} if method == "kernel" else {}
            tr, inv = knotsafe.create_transforms(pts, method=method, **std)
            out += [to_numpy(tr(qs)), to_numpy(inv(tr(qs)))]
        idx, w = rectangular.mappings_weights(6, pts, qs)
        return [*out, to_numpy(idx), to_numpy(w)]

    expected = results()
    backends.register("compiled_spy", builtin.replace(compiled=spy), matches=lambda n: n is ns)
    try:
        got = results()
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_array_equal(g, e)
        assert {"rank_knots", "_build", "_forward", "_inverse", "normalisation", "bilinear"} <= set(seen)

        def halving(fn: Any) -> Any:
            return lambda *a: fn(*a[:-1], a[-1] * 0.5)

        backends.register("compiled_spy", builtin.replace(compiled=halving), matches=lambda n: n is ns)
        tr, _ = knotsafe.create_transforms(asarray(xp, data), method="kernel", kernel_std=0.5)
        assert not np.array_equal(to_numpy(tr(asarray(xp, q))), expected[2])
    finally:
        backends.unregister("compiled_spy")


def test_entry_point_is_loaded_lazily_by_namespace_name(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = []

    class FakeEntryPoint:
        name = "ep_array_lib"

        def load(self) -> object:
            loaded.append(1)
            return lambda: BackendHooks("from-entry-point")

    def fake_entry_points(group: str) -> list[FakeEntryPoint]:
        assert group == "knotsafe.backends"
        return [FakeEntryPoint()]

    monkeypatch.setattr(registry.metadata, "entry_points", fake_entry_points)
    with pytest.warns(UserWarning, match="other_lib_without_entry"):
        hooks_for(_fake_namespace("other_lib_without_entry"))
    assert loaded == []
    try:
        assert hooks_for(_fake_namespace("ep_array_lib")).name == "from-entry-point"
        assert loaded == [1]
    finally:
        backends.unregister("ep_array_lib")


# --- the hook contract of the built-in backends ---------------------------------------------------


#: The fields each built-in backend sets itself; every other field keeps :class:`BackendHooks`'s
#: standard-only default (identity ``stop_gradient`` and ``consolidate``, the ``generic_*`` functions,
#: no native ``forward`` or ``complex_parts``).
NATIVE_FIELDS = {
    "numpy": {"forward", "scatter_add", "erf", "searchsorted", "take"},
    "array_api_strict": set(),
    "jax": {"stop_gradient", "is_concrete", "linearize", "scatter_add", "erf", "searchsorted", "take", "compiled"},
    "torch": {
        "searchsorted",
        "stop_gradient",
        "linearize",
        "scatter_add",
        "take",
        "erf",
        "is_concrete",
        "complex_parts",
        "layout_problem",
        "scatter_add_pair",
    },
    "dask": {"take", "consolidate"},
}


def test_pair_scatter_adds_in_the_order_of_one_scatter_of_both_ends(xp: ModuleType) -> None:
    """``scatter_add_pair`` (where a backend has one) sums ``c0`` at ``index`` and then ``c1`` at
    ``index + 1`` in that order, as ``numpy.add.at`` adds one term after another: float32 terms that
    are not dyadic, so another order of the sums would change the rounding.  Its cotangents are the
    gathers of the output cotangent at ``index`` and ``index + 1``."""
    ns = _compat(xp)
    pair = hooks_for(ns).scatter_add_pair
    if pair is None:
        pytest.skip(f"{backend_name(xp)} has no pair scatter (the concatenations are scattered)")
    rng = np.random.default_rng(7)
    index = rng.integers(0, 9, 400)
    c0, c1 = (rng.uniform(-1.0, 1.0, 400).astype(np.float32) for _ in range(2))
    expected = np.zeros(10, dtype=np.float32)
    np.add.at(expected, np.concatenate([index, index + 1]), np.concatenate([c0, c1]))
    got = to_numpy(pair(ns, 10, ns.asarray(index), asarray(xp, c0, "float32"), asarray(xp, c1, "float32")))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    ad = autodiff_for(xp)
    if ad is not None:
        w = np.arange(1.0, 11.0, dtype=np.float32)
        grads = ad.grad(
            lambda a, b: pair(ns, 10, ns.asarray(index), a, b) * asarray(xp, w, "float32"),
            [asarray(xp, c0, "float32"), asarray(xp, c1, "float32")],
            (0, 1),
        )
        np.testing.assert_array_equal(grads[0], w[index])
        np.testing.assert_array_equal(grads[1], w[index + 1])


def _native_fields(hooks: BackendHooks) -> set[str]:
    default = BackendHooks(hooks.name)
    return {
        f.name
        for f in dataclasses.fields(BackendHooks)
        if f.name not in ("name", "differentiable", "extras") and getattr(hooks, f.name) is not getattr(default, f.name)
    }


def test_builtin_hooks_keep_the_hook_contract(xp: ModuleType) -> None:
    """Each built-in backend's hooks, field by field, against references outside knotsafe.

    Found once and cached per namespace, named after the backend, differentiable exactly for JAX and
    PyTorch, and native exactly in the fields of :data:`NATIVE_FIELDS`.  ``stop_gradient`` cuts a
    gradient: d/da (stop_gradient(a) * a) = stop_gradient(a) = 3, not 2a = 6.  ``is_concrete`` is
    True for eager arrays and False for traced (``jax.jit``) and lazy (Dask) ones, so the data checks
    run eagerly and are skipped otherwise.  ``scatter_add``, the backend's and the standard-only
    one, accumulates repeated indices like ``numpy.add.at`` (sums of dyadic numbers: exact), leaves
    empty slots zero, keeps the source's dtype, and its cotangent is the gather of the output
    cotangent.  ``erf`` matches ``math.erf``.  ``compiled`` gives a function of arrays (lists and
    None included) the function's values, bit for bit on exact arithmetic, and its gradient.
    """
    ns = _compat(xp)
    name = backend_name(xp)
    dt = _dt(xp)
    hooks = hooks_for(ns)
    assert hooks.name == backend_name(xp)
    assert hooks_for(ns) is hooks
    assert hooks.differentiable == (backend_name(xp) in ("jax", "torch"))
    assert _native_fields(hooks) == NATIVE_FIELDS[name]

    ad = autodiff_for(xp)
    if ad is not None:
        (g,) = ad.grad(lambda a: hooks.stop_gradient(a) * a, [asarray(xp, [3.0], dt)], (0,))
        np.testing.assert_array_equal(g, [3.0])

    eager = asarray(xp, [0.0, 1.0, 2.0], dt)
    assert hooks.is_concrete(eager) == (name != "dask")
    if name == "jax":
        import jax

        seen: list[bool] = []

        @jax.jit
        def traced(a: Any) -> Any:
            seen.append(hooks.is_concrete(a))
            return a

        traced(eager)
        assert seen == [False]

    index = ns.asarray(np.array([0, 0, 1, 0, 3, 3]))
    src = asarray(xp, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], dt)
    expected = [7.0, 3.0, 0.0, 11.0, 0.0]
    np.testing.assert_array_equal(to_numpy(hooks_for(ns).scatter_add(ns, 5, index, src)), expected)
    np.testing.assert_array_equal(to_numpy(generic_scatter_add(ns, 5, index, src)), expected)
    empty = generic_scatter_add(ns, 3, index[:0], src[:0])
    np.testing.assert_array_equal(to_numpy(empty), [0.0, 0.0, 0.0])
    # The sums keep the source's dtype: every floating one, and the integer ones too in the native
    # scatter-adds (the standard-only one sums with cumulative_sum, which promotes small integers to
    # the default integer dtype; knotsafe scatters only floating partials and weights).
    native = "scatter_add" in NATIVE_FIELDS[name]
    for dtype in ("float64", "float32", "int64", "int32") if has_float64(xp) else ("float32", "int32"):
        for scatter in (hooks.scatter_add, generic_scatter_add):
            if dtype.startswith("int") and not (native and scatter is hooks.scatter_add):
                continue
            out = to_numpy(scatter(ns, 5, index, ns.asarray(np.arange(1, 7).astype(dtype))))
            assert out.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(out, np.array([7, 3, 0, 11, 0], dtype=dtype))
    # Six output slots for five sources (the output length is `size`, not the source's), slot 5
    # receives nothing and slot 3 three times.
    index = np.array([3, 0, 3, 1, 3])
    src = np.array([0.5, 1.25, -2.0, 4.0, 0.125], dtype=np.float32)
    expected = np.zeros(6, dtype=np.float32)
    np.add.at(expected, index, src)
    w = np.arange(1.0, 7.0, dtype=np.float32)
    for scatter in (hooks.scatter_add, generic_scatter_add):
        got = scatter(ns, 6, ns.asarray(index), asarray(xp, src, "float32"))
        np.testing.assert_array_equal(to_numpy(got), expected)  # sums of dyadic numbers: exact
        if ad is not None:
            # The cotangent of a scatter-add is the gather of the output cotangent.
            (g,) = ad.grad(
                lambda s, f=scatter: f(ns, 6, ns.asarray(index), s) * asarray(xp, w, "float32"),
                [asarray(xp, src, "float32")],
                (0,),
            )
            np.testing.assert_array_equal(g, w[index])

    def pure(pair: list[Any], none: None, c: Any) -> tuple[Any, list[Any]]:
        assert none is None
        return pair[0] * c + pair[1], [c - pair[0]]

    compiled = hooks.compiled(pure)
    # Dyadic numbers: every result exact, so a compiler's contractions cannot change a bit.
    a, b, c = (asarray(xp, v, dt) for v in ([0.5, -1.25], [3.0, 0.125], [2.0, 4.0]))
    out, (diff,) = compiled([a, b], None, c)
    np.testing.assert_array_equal(to_numpy(out), [4.0, -4.875])
    np.testing.assert_array_equal(to_numpy(diff), [1.5, 5.25])
    if ad is not None:
        (g,) = ad.grad(lambda a: compiled([a, b], None, c)[0], [a], (0,))
        np.testing.assert_array_equal(g, [2.0, 4.0])

    z = np.array([-6.0, -2.5, -0.3, -1e-3, 0.0, 0.7, 1.9, 3.5], dtype=dt)
    ref = np.array([math.erf(float(t)) for t in z])
    got = to_numpy(hooks.erf(xp, asarray(xp, z, dt)))
    # |erf| <= 1: an erf correct to a few ulps is within 4 eps of the float64 math.erf.
    np.testing.assert_allclose(got, ref, rtol=0, atol=4 * np.finfo(dt).eps)
    if has_float64(xp):
        x = np.linspace(-7.0, 7.0, 2001)
        got = to_numpy(hooks_for(xp).erf(xp, asarray(xp, x)))
        ref = np.array([math.erf(v) for v in x])
        # native libraries promise ~1 ulp; 4 ulp of 1 covers every implementation here.
        np.testing.assert_allclose(got, ref, rtol=0, atol=4 * np.spacing(1.0))


def _erf_grid() -> np.ndarray:
    g = np.geomspace(1e-300, 27.0, 4000)
    return np.concatenate([-g[::-1], [0.0], g, np.linspace(-6, 6, 4001), [30.0, -30.0]])


@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_standard_erf_within_a_few_ulp(dtype_name: str) -> None:
    """Cody's erf (standard operations only) against math.erf, in ulp of the result's dtype."""
    x = _erf_grid().astype(dtype_name)
    got = _special.erf(np, x)
    assert got.dtype == x.dtype
    ref = np.array([math.erf(float(v)) for v in x])
    ulp = np.abs(got.astype(np.float64) - ref) / np.spacing(np.abs(ref).astype(dtype_name)).astype(np.float64)
    assert ulp.max() <= 4.0
    special = _special.erf(np, np.array([np.inf, -np.inf, np.nan, 0.0]))
    assert special[0] == 1.0 and special[1] == -1.0 and np.isnan(special[2]) and special[3] == 0.0


def test_numpy_erf_without_scipy_is_the_standard_erf(monkeypatch: pytest.MonkeyPatch) -> None:
    """SciPy is optional: where ``scipy.special`` cannot be imported, the NumPy hooks' erf falls back
    to the standard-only one and still matches ``math.erf`` (to 4 eps; |erf| <= 1)."""
    import array_api_compat.numpy as cnp

    from knotsafe._lib.backends import numpy_hooks as _hooks_numpy

    monkeypatch.setattr(_hooks_numpy, "_scipy_erf", None)  # not looked up yet in this process
    monkeypatch.setitem(sys.modules, "scipy.special", None)  # importing it raises ImportError
    z = np.array([-6.0, -2.5, -0.3, -1e-3, 0.0, 0.7, 1.9, 3.5])
    got = backends.hooks_for(cnp).erf(cnp, z)
    assert _hooks_numpy._scipy_erf is False  # the failed import is remembered, not retried per call
    np.testing.assert_allclose(got, [math.erf(float(t)) for t in z], rtol=0, atol=4 * np.finfo(np.float64).eps)


# --- the standard-only defaults, which a registered backend gets ----------------------------------


@pytest.mark.parametrize("index", [[], [2], [3, 0, 3, 1, 3, 0]], ids=["empty", "one", "repeated"])
def test_generic_scatter_add_keeps_dtype_and_device(index: list[int]) -> None:
    """The standard-only scatter-add (every registered backend's default) on array-api-strict's
    second device, float32 sources: no source, one source, repeated indices and empty slots.

    Expected: ``numpy.add.at`` into zeros of length 6 (sums of dyadic numbers: exact), in float32, on
    the sources' device (array-api-strict refuses to mix devices and does not promote silently).
    """
    xp = backend_module("array_api_strict")
    dev = xp.Device("device1")
    src = np.array([0.5, 1.25, -2.0, 4.0, 0.125, 8.0], dtype=np.float32)[: len(index)]
    expected = np.zeros(6, dtype=np.float32)
    np.add.at(expected, np.array(index, dtype=np.int64), src)
    got = backends.generic_scatter_add(
        xp, 6, xp.asarray(index, dtype=xp.int64, device=dev), xp.asarray(src, dtype=xp.float32, device=dev)
    )
    assert got.dtype == xp.float32 and got.device == dev
    np.testing.assert_array_equal(to_numpy(got), expected)


def test_generic_is_concrete_is_false_only_for_lazy_arrays() -> None:
    """The standard-only ``is_concrete`` (the default of registered backends and of Dask): a Dask
    array is lazy (reading it would compute the graph), NumPy and array-api-strict arrays are not."""
    da = backend_module("dask", "dask.array")
    assert not backends.generic_is_concrete(da.ones(3, chunks=2))
    assert backends.generic_is_concrete(np.ones(3))
    if backend_table.installed("array_api_strict"):  # not in the dask session's environment
        import array_api_strict

        assert backends.generic_is_concrete(array_api_strict.ones(3))


@pytest.mark.parametrize("case", [c for c in knot_cases() if c.knots.size <= 100], ids=lambda c: c.name)
def test_generic_linearize_equals_native_custom_derivative(xp: ModuleType, autodiff: AutoDiff, case: object) -> None:
    """The stop_gradient path any registered backend gets equals the native one."""
    ns = _compat(xp)
    dt = "float64" if has_float64(xp) else "float32"
    args = [asarray(xp, a, dt) for a in (case.queries, case.knots, case.values)]  # type: ignore[attr-defined]
    native = autodiff.grad(lambda a, b, c: knotsafe.interp(a, b, c), args, (0, 1, 2))
    value_native = to_numpy(knotsafe.interp(*args))
    backends.register("generic", hooks_for(ns).replace(linearize=generic_linearize), matches=lambda n: n is ns)
    try:
        generic = autodiff.grad(lambda a, b, c: knotsafe.interp(a, b, c), args, (0, 1, 2))
        # The native JAX path is compiled (XLA may fuse a multiply-add): 1 ulp apart at most.
        eps = float(np.finfo(dt).eps)
        np.testing.assert_allclose(to_numpy(knotsafe.interp(*args)), value_native, rtol=eps, atol=eps)
    finally:
        backends.unregister("generic")
    for g_native, g_generic in zip(native, generic, strict=True):
        np.testing.assert_allclose(g_generic, g_native, rtol=1e-12 if dt == "float64" else 1e-6, atol=0)


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


@pytest.mark.parametrize("knot_grad", ["exact", "stop"])
def test_torch_backend_registered_with_the_standard_scatter_add(knot_grad: str) -> None:
    """PyTorch hooks with ``scatter_add`` replaced by the standard-only default (``BackendHooks.replace``).

    The autograd Function's reverse mode scatters the cotangents through the hooks' ``scatter_add``
    with the rule's namespace; the standard-only one (every registered backend's default) works
    through that namespace.  Expected: the contract's ``g @ J`` for a cotangent ``g``.
    """
    torch = backend_module("torch")
    import array_api_compat.torch as torch_ns

    dt = "float64"
    x, k, v = (torch.asarray(a).requires_grad_() for a in (X, KNOTS, VALUES))
    g = X_T
    backends.register(
        "torch_standard_scatter",
        backends.hooks_for(torch_ns).replace(scatter_add=backends.generic_scatter_add),
        matches=lambda n: n is torch_ns,
    )
    try:
        got = torch.autograd.grad((knotsafe.interp(x, k, v, knot_grad=knot_grad) * torch.asarray(g)).sum(), [x, k, v])
    finally:
        backends.unregister("torch_standard_scatter")
    for got_i, (expected, bound) in zip(got, expected_cotangent(dt, g, knot_grad), strict=True):
        assert np.all(np.abs(got_i.numpy() - expected) <= bound), (got_i, expected)


# --- registration under a built-in backend's name; hooks checked when BackendHooks is built ----------------
# The namespaces of NumPy, PyTorch and Dask arrays are array_api_compat's wrappers (``array_api_compat.numpy``
# ...): a name must select the wrapper too, or a registration under ``"numpy"`` would match nothing.


#: The names that select each backend's namespace: its short name and its library's module names.
NAMES = {
    "numpy": ["numpy", "array_api_compat.numpy"],
    "torch": ["torch", "array_api_compat.torch"],
    "dask": ["dask", "dask.array", "array_api_compat.dask.array"],
    "jax": ["jax", "jax.numpy"],
    "array_api_strict": ["array_api_strict"],
}


@pytest.mark.parametrize("which", [0, 1, 2])
def test_registering_under_a_builtin_name_replaces_the_builtin(xp: ModuleType, which: int) -> None:
    names = NAMES[backend_name(xp)]
    if which >= len(names):
        pytest.skip(f"{backend_name(xp)} has {len(names)} names")
    name = names[which]
    ns = array_api_compat.array_namespace(xp.asarray([0.0]))
    builtin = hooks_for(ns)
    calls: list[int] = []

    def spy(xpn: ModuleType, knots: object, x: object) -> object:
        calls.append(1)
        return builtin.searchsorted(xpn, knots, x)

    backends.register(name, builtin.replace(name="spy", searchsorted=spy, forward=None))
    try:
        assert backends.registered()[0] == name
        assert hooks_for(ns).name == "spy"
        out = knotsafe.interp(xp.asarray([0.25]), xp.asarray([0.0, 1.0]), xp.asarray([0.0, 2.0]))
        assert float(to_numpy(out)[0]) == 0.5
        assert calls, f"register({name!r}, ...) did not take effect"
    finally:
        backends.unregister(name)
    assert hooks_for(ns).name == builtin.name and hooks_for(ns).searchsorted is not spy


def test_a_registered_name_selects_only_its_library() -> None:
    """ "numpy" does not select "numpyro"-like namespaces, and "dask" not "daskish"."""
    from knotsafe._lib.backends import registry

    fake = type("FakeNs", (), {"__name__": "array_api_compat.numpyish"})()
    assert not registry._name_matcher("numpy")(fake)  # type: ignore[arg-type]
    assert registry._name_matcher("numpyish")(fake)  # type: ignore[arg-type]
    assert not registry._name_matcher("dask")(type("FakeNs", (), {"__name__": "daskish.array"})())  # type: ignore[arg-type]


REQUIRED_HOOKS = [
    "stop_gradient",
    "safe_slope",
    "searchsorted",
    "take",
    "scatter_add",
    "is_concrete",
    "erf",
    "consolidate",
    "compiled",
]
OPTIONAL_HOOKS = ["forward", "linearize", "complex_parts", "layout_problem", "scatter_add_pair"]


@pytest.mark.parametrize("field", REQUIRED_HOOKS)
@pytest.mark.parametrize("bad", [None, 42], ids=["None", "int"])
def test_backend_hooks_reject_a_missing_hook_at_construction(field: str, bad: object) -> None:
    with pytest.raises(TypeError, match=rf"^BackendHooks\('mine'\): `{field}` must be callable, got {bad}$"):
        BackendHooks("mine", **{field: bad})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=rf"`{field}` must be callable"):
        BackendHooks("mine").replace(**{field: bad})


@pytest.mark.parametrize("field", OPTIONAL_HOOKS)
def test_optional_hooks_may_be_none_but_not_other_non_callables(field: str) -> None:
    assert getattr(BackendHooks("mine", **{field: None}), field) is None
    with pytest.raises(TypeError, match=rf"`{field}` must be callable or None, got 'x'"):
        BackendHooks("mine", **{field: "x"})


def test_the_field_lists_cover_every_hook() -> None:
    """A hook added to BackendHooks must be listed here as required or optional (and checked there)."""
    hooks = {f.name for f in dataclasses.fields(BackendHooks)} - {"name", "differentiable", "extras"}
    assert hooks == set(REQUIRED_HOOKS) | set(OPTIONAL_HOOKS)


@pytest.mark.parametrize("name", ["", None, 3])
def test_backend_hooks_need_a_name(name: object) -> None:
    with pytest.raises(TypeError, match="`name` must be a non-empty string"):
        BackendHooks(name)  # type: ignore[arg-type]


def test_a_none_hook_fails_at_registration_not_at_call_time() -> None:
    """A None hook fails when BackendHooks is built, before any registration, and not inside a later call
    with "'NoneType' object is not callable"; the registry is unchanged."""
    with pytest.raises(TypeError, match="`take` must be callable"):
        backends.register("broken", BackendHooks("broken", take=None), matches=lambda ns: False)  # type: ignore[arg-type]
    assert "broken" not in backends.registered()
    np.testing.assert_array_equal(knotsafe.interp(np.array([0.5]), np.array([0.0, 1.0]), np.array([0.0, 1.0])), [0.5])
