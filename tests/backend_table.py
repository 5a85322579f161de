"""The one table of test backends: noxfile.py, tests/, conformance/ and benchmarks/ read it.

Every reader imports it the same way, ``from tests.backend_table import ...``, with the repository root
on ``sys.path`` (pytest and ``python -m conformance`` put it there; noxfile.py and benchmarks/run.py
add it).  The standard library only: nox's own interpreter imports this module without numpy or any
framework installed.

The library's own registry of hooks (``knotsafe.backends``) is separate: it says how knotsafe
computes on an array library; this table says how the test tooling installs, selects and drives one.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

#: XLA's CPU compiler options for the tests-jax session.  The suite runs JAX mostly eagerly, so XLA
#: compiles every operation for every new shape, and most of that session's CPU goes to compiling.
#: Without the fusion emitters and LLVM's optimisations a compilation is much cheaper; the programs
#: compute the same operations, unoptimised.  The conformance session keeps XLA's defaults, so the
#: numbers users get are measured there (docs/conformance.md).  The caller's own XLA_FLAGS are kept,
#: after these, so they win (noxfile.py).
JAX_TEST_XLA_FLAGS = "--xla_cpu_use_fusion_emitters=false --xla_backend_optimization_level=0"


def _env(**variables: str) -> Mapping[str, str]:
    """A read-only mapping of environment variables (a row of the table cannot be changed by a reader)."""
    return MappingProxyType(dict(variables))


@dataclass(frozen=True)
class Backend:
    """One row: how the test tooling installs, selects and drives one array library."""

    #: The name in ``KNOTSAFE_TEST_BACKENDS``, the ``xp`` fixture id and the conformance built-ins.
    name: str
    #: The nox session that runs the suite on this backend alone is ``tests-<session>``.
    session: str
    #: The framework's top-level module: importable means installed.
    module: str
    #: The module the ``xp`` fixture returns (the namespace the tests call).
    namespace: str
    #: Requirements installed beside ``.[test]`` (pinned through constraints.txt).
    packages: tuple[str, ...] = ()
    #: Environment variables of each pytest run of the session: the suite runs once per entry
    #: (JAX: float32, then float64 with x64 on).
    runs: tuple[Mapping[str, str], ...] = field(default=(_env(),), hash=False)
    #: Environment variables of every pytest run of the session.
    test_env: Mapping[str, str] = field(default_factory=_env, hash=False)
    #: The specs ``python -m conformance`` checks for it; empty: not a conformance backend (Dask:
    #: the conformance drivers read results back eagerly).
    conformance: tuple[str, ...] = ()
    #: Whether ``benchmarks/run.py`` times it against its peers.
    bench: bool = False


BACKENDS: tuple[Backend, ...] = (
    Backend(
        name="numpy",
        session="numpy",
        module="numpy",
        namespace="numpy",
        conformance=("numpy",),
        bench=True,
    ),
    Backend(
        name="array_api_strict",
        session="strict",
        module="array_api_strict",
        namespace="array_api_strict",
        packages=("array-api-strict",),
        conformance=("array_api_strict",),
    ),
    Backend(
        name="dask",
        session="dask",
        module="dask",
        namespace="array_api_compat.dask.array",
        packages=("dask[array]", "distributed"),
    ),
    Backend(
        name="jax",
        session="jax",
        module="jax",
        namespace="jax.numpy",
        packages=("jax",),
        runs=(_env(JAX_ENABLE_X64="0"), _env(JAX_ENABLE_X64="1")),
        test_env=_env(XLA_FLAGS=JAX_TEST_XLA_FLAGS),
        conformance=("jax", "jax-x32"),
        bench=True,
    ),
    Backend(
        name="torch",
        session="torch",
        module="torch",
        namespace="torch",
        packages=("torch",),
        # torch-generic: PyTorch registered with only stop_gradient (the generic path).
        conformance=("torch", "torch-generic"),
        bench=True,
    ),
)

NAMES: tuple[str, ...] = tuple(b.name for b in BACKENDS)
#: Every framework of the table: the environments that compare backends (conformance, bench) install these.
ALL_PACKAGES: tuple[str, ...] = tuple(p for b in BACKENDS for p in b.packages)


def by_name(name: str) -> Backend:
    """The row of backend ``name``."""
    for b in BACKENDS:
        if b.name == name:
            return b
    raise KeyError(f"no backend named {name!r} in tests/backend_table.py; known: {', '.join(NAMES)}")


def installed(name: str) -> bool:
    """Whether the backend's framework can be imported here (does not import it)."""
    return importlib.util.find_spec(by_name(name).module) is not None


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
