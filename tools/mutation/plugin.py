"""pytest plugin loaded only by the mutation runs (tools/mutation/run.py copies it into each run's tree).

mutmut learns which tests reach a function from one pass over the suite, then forks one process per
mutant from a process that has already run it.  knotsafe builds each backend's hooks once and caches
them (the registry's ``_cache``), and the JAX hooks cache one compiled custom-JVP function per rule:
left alone, a mutant in ``make_hooks`` or in the JAX custom derivative is never executed in the forked
child (the cached, unmutated objects are reused), and ``make_hooks`` is attributed only to the first
test that happened to build the hooks.  Clearing those caches before every test makes each test build
(and trace) them again, so coverage and the mutant runs both see the code under test.  The ordinary
test command does not load this plugin.
"""

from __future__ import annotations

import importlib
import os
import sys

import pytest

# The modules that hold the caches (dotted names).  If one moves, the plugin fails every test rather
# than let the runs silently test cached, unmutated objects.
REGISTRY = "knotsafe._lib.backends.registry"  # _cache: namespace -> hooks
JAX_HOOKS = "knotsafe._lib.backends.jax_hooks"  # _custom_interp: functools.lru_cache of compiled custom JVPs


def _module(name: str) -> object:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise RuntimeError(f"{name} is not importable: update the cache modules in {__file__}") from exc


@pytest.fixture(autouse=True)
def _fresh_backend_caches() -> None:
    if "knotsafe" not in sys.modules:
        return
    cache = getattr(_module(REGISTRY), "_cache", None)
    if cache is None:
        raise RuntimeError(f"{REGISTRY} has no _cache: update {__file__}")
    cache.clear()
    if "jax" in sys.modules:
        clear = getattr(getattr(_module(JAX_HOOKS), "_custom_interp", None), "cache_clear", None)
        if clear is None:
            raise RuntimeError(f"{JAX_HOOKS}._custom_interp has no cache_clear: update {__file__}")
        clear()


@pytest.fixture(autouse=True)
def _eager_torch_compile_while_mutmut_maps_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    # mutmut's first pass (MUTANT_UNDER_TEST=stats) records which tests reach which function through a
    # ContextVar in every trampoline, and torch.compile(fullgraph=True) cannot trace ContextVar.get: the
    # torch.compile tests would fail that pass and stop the run.  In that pass only, torch.compile runs
    # the function eagerly, which reaches the same hook functions; the mutant runs compile for real.
    if os.environ.get("MUTANT_UNDER_TEST") != "stats" or "torch" not in sys.modules:
        return
    torch = sys.modules["torch"]

    def eager(fn: object = None, **_: object) -> object:
        return fn if fn is not None else (lambda f: f)

    monkeypatch.setattr(torch, "compile", eager)
