"""Registering hooks under a built-in backend's name takes effect; hooks are checked when they are built.

The namespaces of NumPy, PyTorch and Dask arrays are array_api_compat's wrappers (``array_api_compat.numpy``
...), so a registration under ``"numpy"`` used to match nothing while ``registered()`` listed it first.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType

import array_api_compat
import numpy as np
import pytest

import knotsafe
from knotsafe import backends
from knotsafe.backends import BackendHooks, hooks_for
from tests._support import backend_name, to_numpy

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


REQUIRED = ["stop_gradient", "safe_slope", "searchsorted", "take", "scatter_add", "is_concrete", "erf", "consolidate"]
OPTIONAL = ["forward", "linearize", "complex_parts", "layout_problem"]


@pytest.mark.parametrize("field", REQUIRED)
@pytest.mark.parametrize("bad", [None, 42], ids=["None", "int"])
def test_backend_hooks_reject_a_missing_hook_at_construction(field: str, bad: object) -> None:
    with pytest.raises(TypeError, match=rf"^BackendHooks\('mine'\): `{field}` must be callable, got {bad}$"):
        BackendHooks("mine", **{field: bad})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=rf"`{field}` must be callable"):
        BackendHooks("mine").replace(**{field: bad})


@pytest.mark.parametrize("field", OPTIONAL)
def test_optional_hooks_may_be_none_but_not_other_non_callables(field: str) -> None:
    assert getattr(BackendHooks("mine", **{field: None}), field) is None
    with pytest.raises(TypeError, match=rf"`{field}` must be callable or None, got 'x'"):
        BackendHooks("mine", **{field: "x"})


def test_the_field_lists_cover_every_hook() -> None:
    """A hook added to BackendHooks must be listed here as required or optional (and checked there)."""
    hooks = {f.name for f in dataclasses.fields(BackendHooks)} - {"name", "differentiable", "extras"}
    assert hooks == set(REQUIRED) | set(OPTIONAL)


@pytest.mark.parametrize("name", ["", None, 3])
def test_backend_hooks_need_a_name(name: object) -> None:
    with pytest.raises(TypeError, match="`name` must be a non-empty string"):
        BackendHooks(name)  # type: ignore[arg-type]


def test_a_none_hook_no_longer_fails_at_call_time() -> None:
    """The issue's symptom: a None hook was accepted and failed inside a call with 'NoneType' object is not
    callable; now the construction fails, before any registration."""
    with pytest.raises(TypeError, match="`take` must be callable"):
        backends.register("broken", BackendHooks("broken", take=None), matches=lambda ns: False)  # type: ignore[arg-type]
    assert "broken" not in backends.registered()
    np.testing.assert_array_equal(knotsafe.interp(np.array([0.5]), np.array([0.0, 1.0]), np.array([0.0, 1.0])), [0.5])
