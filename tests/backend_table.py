"""The one table of test backends: read by noxfile.py, tests/conftest.py,
conformance/_backends.py and benchmarks/run.py.

Pure data and the standard library only: nox's own interpreter loads this file
by path (:func:`load`) without numpy or any framework installed.  The library's
own registry of hooks (``knotsafe.backends._BUILTINS``) is separate: it says
how knotsafe computes on an array library; this table says how the test
tooling installs, selects and drives one.

Columns
-------
name
    The backend's name in ``KNOTSAFE_TEST_BACKENDS``, the ``xp`` fixture id and
    the conformance built-ins.
session
    The nox session that runs the suite on it alone: ``tests-<session>``.
    Backends with the same ``env`` share one virtualenv.
packages
    pip requirements beyond ``.[test]`` (pinned through ``constraints.txt``).
module
    The framework's top-level module: whether it is installed.
namespace
    The module the ``xp`` fixture returns (the namespace tests call).
env_runs
    Environment variables of each pytest run of the session: the suite runs once per
    entry (JAX: float32 by default, then with x64).
test_env
    Environment variables of every pytest run of the session (JAX: :data:`JAX_TEST_XLA_FLAGS`).
autodiff
    Whether the framework has autodiff that the suite drives.
conformance
    The specs ``python -m conformance`` checks for it (JAX twice: x64 and
    x32); empty: not a conformance backend yet (dask: the conformance drivers
    read results back eagerly).
bench
    Whether ``benchmarks/run.py`` times it against its peers.
env
    The shared nox environment its session runs in (noxfile.py: one virtualenv
    per framework; PyTorch's is "all", the one the cross-framework sessions use,
    so that PyTorch is installed once).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

#: XLA's CPU compiler options for the tests-jax session.  The suite runs JAX mostly eagerly, where
#: XLA compiles every operation for every new shape: about 85% of that session's CPU went to
#: compiling (2,725 compilations in tests/test_kernel_cdf.py alone).  Without the fusion emitters
#: and LLVM's optimisations a compilation costs about a third (x64 suite, one process, no cache:
#: 890 -> 413 CPU-s); the programs compute the same operations, unoptimised.  The conformance
#: session keeps XLA's defaults, so the numbers users get are measured there (docs/conformance.md).
#: The caller's own XLA_FLAGS are kept, after these, so they win (noxfile.py).
JAX_TEST_XLA_FLAGS = "--xla_cpu_use_fusion_emitters=false --xla_backend_optimization_level=0"

BACKENDS: tuple[dict[str, Any], ...] = (
    {
        "name": "numpy",
        "session": "numpy",
        "packages": (),
        "module": "numpy",
        "namespace": "numpy",
        "env_runs": ({},),
        "test_env": {},
        "autodiff": False,
        "conformance": ("numpy",),
        "bench": True,
        "env": "base",
    },
    {
        "name": "array_api_strict",
        "session": "strict",
        "packages": ("array-api-strict",),
        "module": "array_api_strict",
        "namespace": "array_api_strict",
        "env_runs": ({},),
        "test_env": {},
        "autodiff": False,
        "conformance": ("array_api_strict",),
        "bench": False,
        "env": "base",
    },
    {
        "name": "dask",
        "session": "dask",
        "packages": ("dask[array]", "distributed"),
        "module": "dask",
        "namespace": "array_api_compat.dask.array",
        "env_runs": ({},),
        "test_env": {},
        "autodiff": False,
        "conformance": (),
        "bench": False,
        "env": "dask",
    },
    {
        "name": "jax",
        "session": "jax",
        "packages": ("jax",),
        "module": "jax",
        "namespace": "jax.numpy",
        "env_runs": ({"JAX_ENABLE_X64": "0"}, {"JAX_ENABLE_X64": "1"}),
        "test_env": {"XLA_FLAGS": JAX_TEST_XLA_FLAGS},
        "autodiff": True,
        "conformance": ("jax", "jax-x32"),
        "bench": True,
        "env": "jax",
    },
    {
        "name": "torch",
        "session": "torch",
        "packages": ("torch",),
        "module": "torch",
        "namespace": "torch",
        "env_runs": ({},),
        "test_env": {},
        "autodiff": True,
        # torch-generic: PyTorch registered with only stop_gradient (the generic path).
        "conformance": ("torch", "torch-generic"),
        "bench": True,
        "env": "all",
    },
)

NAMES: tuple[str, ...] = tuple(b["name"] for b in BACKENDS)


def by_name(name: str) -> dict[str, Any]:
    for b in BACKENDS:
        if b["name"] == name:
            return b
    raise KeyError(f"no backend named {name!r} in tests/backend_table.py; known: {', '.join(NAMES)}")


def installed(name: str) -> bool:
    """Whether the backend's framework can be imported here (does not import it)."""
    return importlib.util.find_spec(by_name(name)["module"]) is not None


def jax_cache_env(directory: Path | str) -> dict[str, str]:
    """Environment variables for JAX's persistent compilation cache in ``directory``, caching every program.

    No minimum compile time or size: the suites compile many small programs.  The cache is keyed on
    the program, the JAX version, the flags and the devices, so a hit runs the program XLA would
    have compiled.
    """
    return {
        "JAX_COMPILATION_CACHE_DIR": str(directory),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def load() -> ModuleType:
    """This module, loaded by path (for callers that cannot import ``tests``)."""
    mod = sys.modules.get("knotsafe_backend_table")
    if mod is None:
        spec = importlib.util.spec_from_file_location("knotsafe_backend_table", Path(__file__))
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules["knotsafe_backend_table"] = mod
        spec.loader.exec_module(mod)
    return mod
