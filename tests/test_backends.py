"""knotsafe.backends: lookup, registration, entry points, laziness, generic hooks."""

from __future__ import annotations

import subprocess
import sys
import threading
import types
import warnings
from types import ModuleType

import array_api_compat
import numpy as np
import pytest

import knotsafe
from knotsafe import backends
from knotsafe._lib.backends import registry
from knotsafe.backends import BackendHooks, generic_linearize, generic_scatter_add, hooks_for
from knotsafe.testing import knot_cases
from tests._support import AutoDiff, asarray, backend_name, has_float64, to_numpy


def _compat(xp: ModuleType) -> ModuleType:
    return array_api_compat.array_namespace(xp.asarray([0.0]))


def test_builtin_hooks_are_found_and_cached(xp: ModuleType) -> None:
    ns = _compat(xp)
    hooks = hooks_for(ns)
    assert hooks.name == backend_name(xp)
    assert hooks_for(ns) is hooks
    assert hooks.differentiable == (backend_name(xp) in ("jax", "torch"))


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


def test_scatter_add_accumulates_repeated_indices(xp: ModuleType) -> None:
    ns = _compat(xp)
    dt = "float64" if has_float64(xp) else "float32"
    index = ns.asarray(np.array([0, 0, 1, 0, 3, 3]))
    src = asarray(xp, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], dt)
    expected = [7.0, 3.0, 0.0, 11.0, 0.0]
    np.testing.assert_array_equal(to_numpy(hooks_for(ns).scatter_add(ns, 5, index, src)), expected)
    np.testing.assert_array_equal(to_numpy(generic_scatter_add(ns, 5, index, src)), expected)
    empty = generic_scatter_add(ns, 3, index[:0], src[:0])
    np.testing.assert_array_equal(to_numpy(empty), [0.0, 0.0, 0.0])


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
