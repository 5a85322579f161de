"""pytest plugin loaded only by the mutation runs (``-p tests.mutation_plugin``, see tests/mutation_run.py).

mutmut learns which tests reach a function from one pass over the suite, then forks one process per
mutant from a process that has already run it.  knotsafe builds each backend's hooks once and caches
them (``_registry._cache``), and the JAX hooks cache one compiled custom-JVP function per rule: left
alone, a mutant in ``make_hooks`` or in the JAX custom derivative is never executed in the forked
child (the cached, unmutated objects are reused), and ``make_hooks`` is attributed only to the first
test that happened to build the hooks.  Clearing those caches before every test makes each test build
(and trace) them again, so coverage and the mutant runs both see the code under test.  The ordinary
test command does not load this plugin.
"""

from __future__ import annotations

import os
import sys

import pytest


@pytest.fixture(autouse=True)
def _fresh_backend_caches() -> None:
    registry = sys.modules.get("knotsafe._lib.backends.registry")
    if registry is not None:
        registry._cache.clear()
    jax_hooks = sys.modules.get("knotsafe._lib.backends.jax_hooks")
    if jax_hooks is not None:
        clear = getattr(jax_hooks._custom_interp, "cache_clear", None)
        if clear is not None:
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
