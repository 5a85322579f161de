"""Bitwise before/after corpus of knotsafe's public API: values, gradients and Hessians.

Records, for every backend, the outputs of a fixed and deterministic set of calls
to every public function of knotsafe (``interp``, ``create_transforms`` and its
two transforms, every function of ``knotsafe.rectangular``, the hooks and
generic functions of ``knotsafe.backends`` and the helpers of
``knotsafe.testing``), with their first derivatives (reverse and forward mode,
``vmap``, ``jax.jit``) and second derivatives on the autodiff backends, and the
gradients of the generic ``stop_gradient`` path of a registered backend.  A
restructure of the source tree that changes no behaviour must reproduce every
array bit for bit.

Usage (from the repository root; ``PYTHONPATH`` selects the tree under test)::

    PYTHONPATH=/path/to/tree/src python tools/bitwise_corpus.py record /work/corpus/before
    PYTHONPATH=/path/to/other/src python tools/bitwise_corpus.py record /work/corpus/after
    python tools/bitwise_corpus.py compare /work/corpus/before /work/corpus/after

``record OUTDIR`` runs each backend in its own subprocess (JAX's x64 flag is
process-wide) and writes ``OUTDIR/<run>.npz``, one per run: ``numpy``,
``array_api_strict``, ``dask``, ``torch``, ``jax-x64``, ``jax-x32``, plus
``api.npz`` (the public names and the ``knotsafe.testing`` data).  A backend
that is not installed is skipped with a message (its file is then missing, which
``compare`` reports).  ``--only RUN[,RUN]`` records a subset.  OUTDIR must lie
outside any git tree.  Every run computes on the CPU with one thread (thread
counts, XLA's flags and the Dask scheduler are fixed here, see ``FIXED_ENV``), so
two records of one tree are bitwise equal.  ``CORPUS_PROFILE=1`` prints the CPU
time per group of cases, ``CORPUS_SHOW_ERRORS=1`` every recorded exception.

NumPy, array-api-strict and PyTorch record every case.  JAX and Dask pay per
call (eager JAX compiles each operation for each new shape, Dask builds a
graph), so they record a reduced set (``Backend.full``, ``core_cases``,
``transform_configs``, ``mesh_configs``): every knot case with the default
options, each option on fewer cases, and on JAX the heavy mesh and
second-order programs compiled once with ``jax.jit`` (``Backend.heavy``).

``compare DIR_A DIR_B`` compares every array bitwise: dtype, shape and raw bytes,
so NaN equals NaN only with the same bit pattern and ``-0.0`` differs from
``+0.0``.  It prints the number of arrays compared per run and every mismatch,
and exits 1 on any mismatch, on a key or file present on one side only.

A call that raises is recorded as the exception's type and message (key suffix
``!error``), so an exception that appears, disappears or changes its message is
a mismatch too.  Only the public API is used (``knotsafe``,
``knotsafe.rectangular``, ``knotsafe.backends``, ``knotsafe.testing``), so the
tool runs unchanged before and after a restructure.
"""

# Every closure below is called at once by Recorder.run, inside the loop iteration that built it, so a
# loop variable it reads is the current one (ruff's B023 guards against calling it later).
# ruff: noqa: B023
from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import os
import subprocess
import sys
import time
import traceback
import warnings
import zlib
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

RUNS: dict[str, dict[str, str]] = {
    "api": {},
    "numpy": {},
    "array_api_strict": {},
    "dask": {},
    "torch": {},
    "jax-x64": {"JAX_ENABLE_X64": "1"},
    "jax-x32": {"JAX_ENABLE_X64": "0"},
}

#: Environment of every run: one thread and the CPU, so that reductions are evaluated in one order.
FIXED_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "JAX_PLATFORMS": "cpu",
    "CUDA_VISIBLE_DEVICES": "",
    # Unoptimised XLA compilations (as in the tests-jax session) cost a third: eager JAX compiles every
    # operation for every new shape.  Both sides of a comparison use the same flags.
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false --xla_cpu_use_fusion_emitters=false"
    " --xla_backend_optimization_level=0",
    "PYTHONHASHSEED": "0",
    "PYTHONDONTWRITEBYTECODE": "1",  # nothing written into the tree under test
}

Array = Any


# --------------------------------------------------------------------------
# recording
# --------------------------------------------------------------------------


class Recorder:
    """Collects named NumPy arrays; a failing call is recorded as its exception."""

    def __init__(self, backend: Backend | None) -> None:
        self.backend = backend
        self.arrays: dict[str, np.ndarray] = {}
        self.errors: list[str] = []
        self.seconds: dict[str, float] = {}

    def convert(self, value: Any) -> Any:
        """``value`` with every array read back into NumPy (nested tuples, lists and dicts kept)."""
        if isinstance(value, dict):
            return {k: self.convert(v) for k, v in value.items()}
        if isinstance(value, tuple | list):
            return type(value)(self.convert(v) for v in value) if not (value and isinstance(value[0], str)) else value
        if value is None or isinstance(value, str | bool | int | float | complex):
            return value
        if isinstance(value, np.ndarray) and value.dtype.kind != "V":
            return value
        assert self.backend is not None
        return self.backend.num(value)

    def put(self, key: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                self.put(f"{key}.{k}", v)
            return
        if isinstance(value, tuple | list) and not (value and isinstance(value[0], str)):
            for i, v in enumerate(value):
                self.put(f"{key}.{i}", v)
            return
        if value is None:
            value = np.array("None")
        elif isinstance(value, str | bool | int | float | complex | tuple | list):
            value = np.asarray(value)
        elif not isinstance(value, np.ndarray) or value.dtype.kind == "V":
            assert self.backend is not None, key
            value = self.backend.num(value)
        if key in self.arrays:
            raise KeyError(f"duplicate key {key}")
        self.arrays[key] = np.ascontiguousarray(value)

    def run(self, key: str, fn: Callable[[], Any]) -> Any:
        """Record ``fn()`` under ``key``; an exception is recorded under ``key!error``."""
        t0 = time.process_time()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = self.convert(fn())  # a lazy array computes (and may raise) here
        except Exception as exc:  # every exception is part of the behaviour
            self.put(f"{key}!error", f"{type(exc).__name__}: {exc}")
            self.errors.append(f"{key}: {type(exc).__name__}: {exc}")
            return None
        finally:
            self.seconds[key] = time.process_time() - t0
        self.put(key, value)
        return value


def fixed(seed_text: str, shape: tuple[int, ...], low: float = -1.0, high: float = 1.0) -> np.ndarray:
    """Deterministic float64 data seeded by a text (cotangents, tangents)."""
    rng = np.random.default_rng(zlib.crc32(seed_text.encode()))
    return rng.uniform(low, high, shape)


# --------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------


class Backend:
    """One array library: array creation, read-back and (where it has one) autodiff."""

    name = ""
    autodiff = False
    #: Every case (cheap backends) or a reduced set (JAX and Dask, whose per-call cost is compiling or
    #: building a graph): all knot cases with the default options, each option on CORE_CASES only, the
    #: second dtype and half precision on fewer cases.
    full = True
    #: Fewer cases still (JAX without x64: the x64 run has the same programs in more dtypes).
    lean = False
    #: The knot cases every interp option is recorded on.
    core_cases: tuple[str, ...] = ()
    #: Full-precision dtypes to compute in, then the half-precision ones (interp only).
    dtypes: tuple[str, ...] = ("float64", "float32")
    halves: tuple[str, ...] = ()
    int_dtype = "int64"

    def __init__(self) -> None:
        self.xp: Any = None

    def arr(self, a: Any, dtype: str | None = None) -> Array:
        raise NotImplementedError

    def num(self, a: Array) -> np.ndarray:
        return np.asarray(a)

    @property
    def ns(self) -> Any:
        """The array-API namespace knotsafe resolves for this library's arrays."""
        import array_api_compat

        return array_api_compat.array_namespace(self.arr(np.zeros(1)))

    def weighted_sum(self, out: Array, tag: str) -> Array:
        """``sum(c * out)`` with fixed ``c`` (two of them, for the parts of a complex ``out``)."""
        ns = self.ns
        shape = tuple(out.shape)
        if ns.isdtype(out.dtype, "complex floating"):
            re, im = ns.real(out), ns.imag(out)
            c1 = self.like(fixed(tag + "re", shape), re)
            c2 = self.like(fixed(tag + "im", shape), re)
            return ns.sum(re * c1) + ns.sum(im * c2)
        return ns.sum(out * self.like(fixed(tag, shape), out))

    def like(self, a: np.ndarray, ref: Array) -> Array:
        raise NotImplementedError

    def heavy(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` as the heavy cases run it: compiled once with ``jax.jit`` on JAX (eager JAX compiles
        each of the mesh's thousand operations separately), as it is elsewhere."""
        return fn

    # Autodiff (JAX and PyTorch): ``f`` maps the arrays ``args`` to a scalar unless said otherwise.
    def grad(self, f: Callable[..., Array], args: list[Array], argnums: tuple[int, ...]) -> list[Array]:
        raise NotImplementedError

    def func_grad(self, f: Callable[..., Array], args: list[Array], argnums: tuple[int, ...]) -> Any:
        raise NotImplementedError

    def jac(self, f: Callable[..., Array], args: list[Array], argnum: int, mode: str) -> Array:
        raise NotImplementedError

    def hessian(self, f: Callable[..., Array], args: list[Array], argnums: tuple[int, ...]) -> Any:
        raise NotImplementedError

    def hvp(self, f: Callable[..., Array], args: list[Array], argnums: tuple[int, ...], tag: str) -> Any:
        raise NotImplementedError

    def vmap_grad(
        self, f: Callable[..., Array], args: list[Array], argnums: tuple[int, ...], dims: tuple[Any, ...]
    ) -> Any:
        raise NotImplementedError

    # Which configurations the reduced tiers record (see ``full``).
    def transform_configs(self, primary: bool) -> tuple[str, ...]:
        raise NotImplementedError

    def mesh_configs(self, primary: bool) -> tuple[str, ...]:
        raise NotImplementedError


class NumpyBackend(Backend):
    name = "numpy"
    halves = ("float16",)

    def __init__(self) -> None:
        self.xp = np

    def arr(self, a: Any, dtype: str | None = None) -> Array:
        with np.errstate(over="ignore"):
            return np.asarray(a, dtype=dtype)

    def like(self, a: np.ndarray, ref: Array) -> Array:
        return a.astype(ref.dtype)


class StrictBackend(Backend):
    name = "array_api_strict"

    def __init__(self) -> None:
        import array_api_strict

        self.xp = array_api_strict

    def arr(self, a: Any, dtype: str | None = None) -> Array:
        with np.errstate(over="ignore"):
            return self.xp.asarray(np.asarray(a, dtype=dtype))

    def num(self, a: Array) -> np.ndarray:
        a = self.xp.asarray(a, device=self.xp.Device("CPU_DEVICE"))
        return np.asarray(a._array)

    def like(self, a: np.ndarray, ref: Array) -> Array:
        return self.xp.asarray(a, dtype=ref.dtype)


class DaskBackend(Backend):
    """Dask arrays in several chunks, computed with the synchronous scheduler."""

    name = "dask"
    full = False

    def transform_configs(self, primary: bool) -> tuple[str, ...]:
        """The create_transforms configurations recorded (primary: the first dtype, D = 2)."""
        if primary:
            return ("rank_w", "kernel_table_w", "rank", "rank_stop", "kernel_bw_array")
        return ("rank_w", "kernel_table_w")

    def mesh_configs(self, primary: bool) -> tuple[str, ...]:
        return ("rank", "rank_w", "kernel") if primary else ("rank",)

    core_cases = ("exact_duplicates", "near_duplicates", "long_run", "out_of_range")
    halves = ("float16",)

    def __init__(self) -> None:
        import dask
        import dask.array as da

        dask.config.set(scheduler="synchronous")
        self.da = da
        self.xp = da

    def arr(self, a: Any, dtype: str | None = None) -> Array:
        with np.errstate(over="ignore"):
            a = np.asarray(a, dtype=dtype)
        chunks = tuple(max(1, -(-s // 3)) for s in a.shape[:1]) + tuple(a.shape[1:])
        return self.da.from_array(a, chunks=chunks if a.ndim else ())

    def num(self, a: Array) -> np.ndarray:
        return np.asarray(a.compute() if hasattr(a, "compute") else a)

    def like(self, a: np.ndarray, ref: Array) -> Array:
        return self.arr(a.astype(ref.dtype))


class TorchBackend(Backend):
    name = "torch"
    autodiff = True
    halves = ("float16", "bfloat16")

    def __init__(self) -> None:
        import torch

        torch.set_num_threads(1)
        self.torch = torch
        self.xp = torch

    def dtype(self, name: str | None) -> Any:
        return None if name is None else getattr(self.torch, name)

    def arr(self, a: Any, dtype: str | None = None) -> Array:
        torch = self.torch
        with np.errstate(over="ignore"):
            base = np.asarray(a, dtype="float32" if dtype == "bfloat16" else dtype)
        t = torch.asarray(base.copy())
        return t.to(torch.bfloat16) if dtype == "bfloat16" else t

    def num(self, a: Array) -> np.ndarray:
        torch = self.torch
        a = a.detach().cpu()
        if a.dtype == torch.bfloat16:
            return a.view(torch.int16).numpy().view(np.uint16)  # bits; NumPy has no bfloat16
        if a.dtype == torch.complex32:
            return torch.view_as_real(a).numpy()
        return a.numpy()

    def like(self, a: np.ndarray, ref: Array) -> Array:
        return self.torch.asarray(a).to(ref.dtype)

    def grad(self, f: Callable[..., Array], args: list[Array], argnums: tuple[int, ...]) -> list[Array]:
        """Reverse mode: ``loss.backward()`` on leaves; an unused input's gradient is recorded as None."""
        leaves = [a.detach().clone().requires_grad_(i in argnums) for i, a in enumerate(args)]
        f(*leaves).backward()
        return [leaves[i].grad for i in argnums]

    def func_grad(self, f: Callable[..., Array], args: list[Array], argnums: tuple[int, ...]) -> Any:
        return self.torch.func.grad(f, argnums=argnums)(*args)

    def jac(self, f: Callable[..., Array], args: list[Array], argnum: int, mode: str) -> Array:
        jac = self.torch.func.jacrev if mode == "rev" else self.torch.func.jacfwd
        return jac(f, argnums=argnum)(*args)

    def hessian(self, f: Callable[..., Array], args: list[Array], argnums: tuple[int, ...]) -> Any:
        return self.torch.func.hessian(f, argnums=argnums)(*args)

    def hvp(self, f: Callable[..., Array], args: list[Array], argnums: tuple[int, ...], tag: str) -> list[Array]:
        """Double backward: the Hessian times a fixed vector, through ``create_graph=True``."""
        torch = self.torch
        leaves = [a.detach().clone().requires_grad_(i in argnums) for i, a in enumerate(args)]
        xs = [leaves[i] for i in argnums]
        gs = torch.autograd.grad(f(*leaves), xs, create_graph=True)
        dot = sum((g * self.like(fixed(f"{tag}{j}", tuple(g.shape)), g)).sum() for j, g in enumerate(gs))
        return list(torch.autograd.grad(dot, xs, allow_unused=True))

    def vmap_grad(
        self, f: Callable[..., Array], args: list[Array], argnums: tuple[int, ...], dims: tuple[Any, ...]
    ) -> Any:
        return self.torch.func.vmap(self.torch.func.grad(f, argnums=argnums), in_dims=dims)(*args)


class JaxBackend(Backend):
    autodiff = True
    full = False
    core_cases = ("near_duplicates", "exact_duplicates")

    def transform_configs(self, primary: bool) -> tuple[str, ...]:
        return (("rank_w", "kernel_table_w") if self.x64 else ("rank_w",)) if primary else ()

    def mesh_configs(self, primary: bool) -> tuple[str, ...]:
        # Without x64, the kernel mesh runs compiled in lens_parameter_derivatives only.
        return (("rank", "kernel") if self.x64 else ("rank",)) if primary else ()

    halves = ("float16", "bfloat16")

    def __init__(self) -> None:
        import jax
        import jax.numpy as jnp

        self.jax = jax
        self.xp = jnp
        self.x64 = bool(jax.config.jax_enable_x64)
        self.name = "jax-x64" if self.x64 else "jax-x32"
        if not self.x64:
            self.lean = True
            self.halves = ()
            self.core_cases = self.core_cases[:1]
        self.dtypes = ("float64", "float32") if self.x64 else ("float32",)
        self.int_dtype = "int64" if self.x64 else "int32"

    def arr(self, a: Any, dtype: str | None = None) -> Array:
        with np.errstate(over="ignore"):
            if dtype in ("float16", "bfloat16"):
                return self.xp.asarray(np.asarray(a, dtype="float32"), dtype=getattr(self.xp, dtype))
            return self.xp.asarray(np.asarray(a, dtype=dtype))

    def num(self, a: Array) -> np.ndarray:
        out = np.asarray(a)
        if out.dtype.name == "bfloat16":
            return out.view(np.uint16)
        return out

    def like(self, a: np.ndarray, ref: Array) -> Array:
        return self.xp.asarray(a, dtype=ref.dtype)

    def heavy(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return self.jax.jit(fn)

    def grad(self, f: Callable[..., Array], args: list[Array], argnums: tuple[int, ...]) -> list[Array]:
        return list(self.jax.grad(f, argnums=argnums)(*args))

    def func_grad(self, f: Callable[..., Array], args: list[Array], argnums: tuple[int, ...]) -> Any:
        """``jax.grad`` under ``jax.jit``."""
        return self.jax.jit(self.jax.grad(f, argnums=argnums))(*args)

    def jac(self, f: Callable[..., Array], args: list[Array], argnum: int, mode: str) -> Array:
        jac = self.jax.jacrev if mode == "rev" else self.jax.jacfwd
        return jac(f, argnums=argnum)(*args)

    def hessian(self, f: Callable[..., Array], args: list[Array], argnums: tuple[int, ...]) -> Any:
        return self.jax.hessian(f, argnums=argnums)(*args)

    def hvp(self, f: Callable[..., Array], args: list[Array], argnums: tuple[int, ...], tag: str) -> Any:
        """Forward over reverse: ``jvp`` of ``grad`` with fixed tangents."""
        jax = self.jax
        xs = [args[i] for i in argnums]

        def g(*xs_: Array) -> Any:
            full = list(args)
            for i, x in zip(argnums, xs_, strict=True):
                full[i] = x
            return jax.grad(f, argnums=argnums)(*full)

        tangents = [self.like(fixed(f"{tag}{j}", tuple(x.shape)), x) for j, x in enumerate(xs)]
        return jax.jvp(g, xs, tangents)[1]

    def vmap_grad(
        self, f: Callable[..., Array], args: list[Array], argnums: tuple[int, ...], dims: tuple[Any, ...]
    ) -> Any:
        return self.jax.vmap(self.jax.grad(f, argnums=argnums), in_axes=dims)(*args)


def make_backend(run: str) -> Backend:
    return {
        "numpy": NumpyBackend,
        "array_api_strict": StrictBackend,
        "dask": DaskBackend,
        "torch": TorchBackend,
        "jax-x64": JaxBackend,
        "jax-x32": JaxBackend,
    }[run]()


@contextlib.contextmanager
def registered_hooks(b: Backend, kind: str) -> Iterator[None]:
    """Register, for this backend's namespace only, the generic hooks (``kind="bare"``: a
    :class:`~knotsafe.backends.BackendHooks` with nothing but ``stop_gradient``) or the built-in
    hooks with the generic ``stop_gradient`` linearisation (``kind="generic_linearize"``)."""
    from knotsafe import backends

    ns = b.ns
    if kind == "bare":
        stop: Callable[[Array], Array]
        if b.name.startswith("jax"):
            stop = b.jax.lax.stop_gradient
        elif b.name == "torch":
            stop = lambda a: a.detach()  # noqa: E731
        else:
            stop = lambda a: a  # noqa: E731
        hooks = backends.BackendHooks(name="corpus-bare", differentiable=b.autodiff, stop_gradient=stop)
    else:
        hooks = backends.hooks_for(ns).replace(linearize=backends.generic_linearize)
    backends.register("corpus-generic", hooks, matches=lambda n: n is ns)
    try:
        yield
    finally:
        backends.unregister("corpus-generic")


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------


def tie_points(n: int, d: int, seed: int) -> np.ndarray:
    """Rounded normal samples: many exact ties per column."""
    return np.round(np.random.default_rng(seed).normal(size=(n, d)), 1)


def point_queries(points: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Forward queries (points, between, outside) and inverse queries (ranks in and out of [0, 1])."""
    rng = np.random.default_rng(seed)
    d = points.shape[1]
    q = np.concatenate([points[:15], rng.uniform(-3.5, 3.5, (20, d)), np.full((1, d), -9.0), np.full((1, d), 9.0)])
    u = np.linspace(-0.1, 1.1, 25)
    u = np.stack([u if j % 2 == 0 else u[::-1] for j in range(d)], axis=1)
    return q, u


def small_knot_cases() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Small problems for Jacobians and Hessians: duplicates, near-duplicates, out-of-range queries."""
    k = np.array([0.0, 0.2, 0.2, 0.5, np.nextafter(0.5, 1.0), 0.75, 1.0])
    v = np.array([1.0, -0.5, 2.0, 0.25, 3.0, -1.0, 0.5])
    q = np.array([-0.3, 0.0, 0.1, 0.2, 0.35, 0.5, 0.6, 0.75, 0.9, 1.0, 1.4])
    run = np.array([-1.0, -0.5, 0.0, 0.0, 0.0, 0.0, 0.5, 1.0])
    return {
        "dup_near": (q, k, v),
        "run": (np.linspace(-1.2, 1.2, 13), run, np.linspace(0.0, 1.0, run.size) ** 2),
        "pair": (np.linspace(0.0, 1.0, 9), np.array([0.25, 0.75]), np.array([1.0, -2.0])),
    }


def knot_cases_for(dtype: str) -> list[Any]:
    """knotsafe.testing's duplicate-knot scenarios, near-duplicates one and two ulp apart in ``dtype``."""
    from knotsafe.testing import knot_cases

    ulp = {"float64": np.float64, "float32": np.float32, "float16": np.float16, "bfloat16": np.float16}[dtype]
    return knot_cases(seed=0, dtype=ulp)


# --------------------------------------------------------------------------
# interp
# --------------------------------------------------------------------------


def smallest_gap(k: np.ndarray, dtype: str) -> float:
    """The smallest positive knot gap as computed in ``dtype``: a ``min_gap`` on the rule's boundary."""
    if dtype not in ("float64", "float32"):
        return 0.0
    gaps = np.diff(k.astype(dtype))
    gaps = gaps[gaps > 0]
    return float(gaps.min()) if gaps.size else 0.0


def interp_variants(k: np.ndarray, dtype: str) -> dict[str, dict[str, Any]]:
    span = float(np.max(k) - np.min(k)) if k.size > 1 else 1.0
    return {
        "default": {},
        "stop": {"knot_grad": "stop"},
        "min_gap0": {"min_gap": 0.0},
        "min_gap": {"min_gap": span * 1e-3},
        # A gap equal to min_gap is a duplicate bin (gap <= min_gap): the boundary of the rule.
        "min_gap_edge": {"min_gap": smallest_gap(k, dtype)},
        "left_right": {"left": -7.0, "right": 9.5},
        "left_right_int": {"left": -7, "right": 9},
    }


def interp_section(rec: Recorder, b: Backend) -> None:
    import knotsafe

    for dtype in (*b.dtypes, *b.halves):
        half = dtype in b.halves
        primary = dtype == b.dtypes[0]
        for case in knot_cases_for(dtype):
            core = b.full or case.name in b.core_cases
            if not core and (half or not primary):
                continue
            if not b.full and half and case.name != b.core_cases[0]:
                continue
            x, k, v = (b.arr(a, dtype) for a in (case.queries, case.knots, case.values))
            variants = interp_variants(case.knots, dtype)
            if half:
                variants = {n: variants[n] for n in ("default", "stop", "left_right")}
            if not b.full and (half or not primary or not core):
                variants = {"default": {}}
            for vname, kw in variants.items():
                key = f"interp.{case.name}.{dtype}.{vname}"
                rec.run(f"{key}.value", lambda x=x, k=k, v=v, kw=kw: knotsafe.interp(x, k, v, **kw))
                if b.autodiff:
                    loss = lambda x, k, v, kw=kw, key=key: b.weighted_sum(knotsafe.interp(x, k, v, **kw), key)  # noqa: E731
                    rec.run(f"{key}.grad", lambda loss=loss, x=x, k=k, v=v: b.grad(loss, [x, k, v], (0, 1, 2)))
            # complex values: parts from the real values and a second fixed set
            if dtype == "bfloat16" or (not b.full and not (primary and core)):
                continue
            im = fixed(case.name + "im", case.values.shape)
            cv = b.arr(case.values, dtype), b.arr(im, dtype)
            cval = _complex(b, *cv)
            for vname, kw in {"default": {}, "left_right": {"left": -1 + 2j, "right": 3 - 0.5j}}.items():
                key = f"interp.{case.name}.{dtype}.complex_{vname}"
                rec.run(f"{key}.value", lambda x=x, k=k, cval=cval, kw=kw: knotsafe.interp(x, k, cval, **kw))
                if b.autodiff and cval is not None:
                    loss = lambda x, k, v, kw=kw, key=key: b.weighted_sum(knotsafe.interp(x, k, v, **kw), key)  # noqa: E731
                    rec.run(f"{key}.grad", lambda loss=loss, x=x, k=k, c=cval: b.grad(loss, [x, k, c], (0, 1, 2)))
    interp_period(rec, b)
    interp_conversions(rec, b)
    if b.autodiff:
        interp_derivatives(rec, b)


def _complex(b: Backend, re: Array, im: Array) -> Array:
    """A complex array of the backend from two real ones (built by the library, not by knotsafe)."""
    if b.name == "torch":
        if re.dtype == b.torch.float16:
            return b.torch.complex(re.float(), im.float()).to(b.torch.complex32)
        return b.torch.complex(re, im)
    if b.name == "array_api_strict":
        cdt = b.xp.complex128 if re.dtype == b.xp.float64 else b.xp.complex64
        return b.xp.astype(re, cdt) + b.xp.asarray(1j, dtype=cdt) * b.xp.astype(im, cdt)
    if b.name == "dask":
        return re + 1j * im
    return re + 1j * im


def interp_period(rec: Recorder, b: Backend) -> None:
    import knotsafe

    rng = np.random.default_rng(7)
    k360 = np.array([350.0, 10.0, 90.0, 90.0, 180.0, 0.0, 270.0, 360.0])
    v360 = rng.normal(size=k360.size)
    q360 = np.array([-45.0, 0.0, 5.0, 90.0, 315.0, 355.0, 360.0, 725.0, -360.0, 181.0])
    k1 = np.round(rng.uniform(-1.5, 2.5, 20), 1)
    v1 = rng.normal(size=k1.size)
    q1 = np.linspace(-2.0, 3.0, 41)
    cases = {"deg": (q360, k360, v360, 360.0), "unit": (q1, k1, v1, 1.0), "neg": (q1, k1, v1, -0.75)}
    for dtype in b.dtypes if b.full else b.dtypes[:1]:
        for name, (q, k, v, per) in cases.items():
            if b.autodiff and not b.full and name != "deg":
                continue
            x, kk, vv = (b.arr(a, dtype) for a in (q, k, v))
            variants = {"default": {}, "stop": {"knot_grad": "stop"}, "lr_ignored": {"left": 5.0}}
            if not b.full and name != "deg":
                variants = {"default": {}}
            for vname, kw in variants.items():
                key = f"interp.period_{name}.{dtype}.{vname}"
                kw = {**kw, "period": per}
                rec.run(f"{key}.value", lambda x=x, k=kk, v=vv, kw=kw: knotsafe.interp(x, k, v, **kw))
                if b.autodiff:
                    loss = lambda x, k, v, kw=kw, key=key: b.weighted_sum(knotsafe.interp(x, k, v, **kw), key)  # noqa: E731
                    rec.run(f"{key}.grad", lambda loss=loss, x=x, k=kk, v=vv: b.grad(loss, [x, k, v], (0, 1, 2)))
            cval = _complex(b, vv, b.arr(v[::-1].copy(), dtype))
            key = f"interp.period_{name}.{dtype}.complex"
            rec.run(f"{key}.value", lambda x=x, k=kk, c=cval, per=per: knotsafe.interp(x, k, c, period=per))


def interp_conversions(rec: Recorder, b: Backend) -> None:
    """Integer inputs, 2-D queries, Python and NumPy data converted with ``xp=``."""
    import knotsafe

    k = np.array([0.0, 1.0, 1.0, 2.0, 4.0])
    v = np.array([0.0, 1.0, 2.0, 3.0, -1.0])
    q = np.array([[-1, 0, 1], [2, 3, 5]])
    f = b.dtypes[0]
    rec.run("interp.int_x.value", lambda: knotsafe.interp(b.arr(q, b.int_dtype), b.arr(k, f), b.arr(v, f)))
    rec.run(
        "interp.int_all.value",
        lambda: knotsafe.interp(b.arr(q, b.int_dtype), b.arr(k, b.int_dtype), b.arr(v, b.int_dtype)),
    )
    rec.run(
        "interp.mixed_f32_f64.value", lambda: knotsafe.interp(b.arr(q, "float32"), b.arr(k, f), b.arr(v, "float32"))
    )
    rec.run("interp.xp_numpy_data.value", lambda: knotsafe.interp(q.astype(f), k.astype(f), v.astype(f), xp=b.ns))
    rec.run(
        "interp.xp_python_data.value",
        lambda: knotsafe.interp([0.5, 1.5, 3.0], [0.0, 1.0, 2.0, 4.0], [1.0, 2.0, 3.0, 4.0], xp=b.ns),
    )
    rec.run("interp.single_knot_2d.value", lambda: knotsafe.interp(b.arr(q, f), b.arr([0.5], f), b.arr([2.0], f)))
    nan = np.array([np.nan, -np.inf, np.inf, 0.0, -0.0, 1.0, 1e308, -1e-310])
    rec.run("interp.special_queries.value", lambda: knotsafe.interp(b.arr(nan, f), b.arr(k, f), b.arr(v, f)))
    rec.run(
        "interp.special_queries.complex.value",
        lambda: knotsafe.interp(b.arr(nan, f), b.arr(k, f), _complex(b, b.arr(v, f), b.arr(v[::-1].copy(), f))),
    )
    inf_v = np.array([0.0, np.inf, 1.0, -np.inf, 2.0])
    rec.run(
        "interp.inf_values.value",
        lambda: knotsafe.interp(b.arr(np.linspace(-1, 5, 25), f), b.arr(k, f), b.arr(inf_v, f)),
    )
    # bad input: the exception type and message are behaviour too
    bad = {
        "decreasing": lambda: knotsafe.interp(b.arr(q, f), b.arr(k[::-1].copy(), f), b.arr(v, f)),
        "knot_grad": lambda: knotsafe.interp(b.arr(q, f), b.arr(k, f), b.arr(v, f), knot_grad="nope"),
        "min_gap": lambda: knotsafe.interp(b.arr(q, f), b.arr(k, f), b.arr(v, f), min_gap=-1.0),
        "period0": lambda: knotsafe.interp(b.arr(q, f), b.arr(k, f), b.arr(v, f), period=0.0),
        "lengths": lambda: knotsafe.interp(b.arr(q, f), b.arr(k, f), b.arr(v[:3], f)),
        "complex_left": lambda: knotsafe.interp(b.arr(q, f), b.arr(k, f), b.arr(v, f), left=1j),
    }
    for name, fn in bad.items():
        rec.run(f"interp.bad_{name}", fn)


def interp_derivatives(rec: Recorder, b: Backend) -> None:
    """Jacobians (reverse and forward), jit/func gradients, vmap, Hessians and double backward."""
    import knotsafe

    for dtype in b.dtypes if b.full else b.dtypes[:1]:
        for name, (q, k, v) in small_knot_cases().items():
            if not b.full and name != "dup_near":
                continue
            x, kk, vv = (b.arr(a, dtype) for a in (q, k, v))
            variants = {
                "default": {},
                "stop": {"knot_grad": "stop"},
                "min_gap": {"min_gap": 0.1},
                "min_gap_edge": {"min_gap": smallest_gap(k, dtype)},
            }
            if b.lean:
                variants = {"default": {}}
            for vname, kw in variants.items():
                key = f"interp_d.{name}.{dtype}.{vname}"
                only_hessian = not b.full and (vname != "default" or name != "dup_near")
                fs = [
                    lambda a, kw=kw: knotsafe.interp(a, kk, vv, **kw),
                    lambda a, kw=kw: knotsafe.interp(x, a, vv, **kw),
                    lambda a, kw=kw: knotsafe.interp(x, kk, a, **kw),
                ]
                for i, (f, a) in enumerate(zip(fs, (x, kk, vv), strict=True)):
                    if only_hessian:
                        continue
                    for mode in ("rev", "fwd"):
                        rec.run(f"{key}.jac{mode}{i}", lambda f=f, a=a, mode=mode: b.jac(f, [a], 0, mode))

                def loss(x: Array, k: Array, v: Array, kw: dict[str, Any] = kw, key: str = key) -> Array:
                    out = knotsafe.interp(x, k, v, **kw)
                    return b.weighted_sum(out, key) + 0.5 * b.weighted_sum(out * out, key + "sq")

                args = [x, kk, vv]
                rec.run(f"{key}.hessian", lambda loss=loss, args=args: b.hessian(loss, args, (0, 1, 2)))
                if only_hessian:
                    continue
                rec.run(f"{key}.func_grad", lambda loss=loss, args=args: b.func_grad(loss, args, (0, 1, 2)))
                rec.run(f"{key}.hvp", lambda loss=loss, args=args, key=key: b.hvp(loss, args, (0, 1, 2), key))
            # per-example gradients: batches of query sets and value sets on one set of knots
            xb = b.arr(np.stack([q, q[::-1], q * 0.5]), dtype)
            vb = b.arr(np.stack([v, v[::-1], v * v]), dtype)

            def one(xrow: Array, k: Array, vrow: Array, name: str = name) -> Array:
                return b.weighted_sum(knotsafe.interp(xrow, k, vrow), name)

            rec.run(
                f"interp_d.{name}.{dtype}.vmap_grad",
                lambda one=one, xb=xb, kk=kk, vb=vb: b.vmap_grad(one, [xb, kk, vb], (0, 1, 2), (0, None, 0)),
            )
    if b.name.startswith("jax"):
        jax_jit_interp(rec, b, b.dtypes[0])


def jax_jit_interp(rec: Recorder, b: Backend, dtype: str) -> None:
    import knotsafe

    jax = b.jax
    for case in [c for c in knot_cases_for(dtype) if c.name in b.core_cases]:
        x, k, v = (b.arr(a, dtype) for a in (case.queries, case.knots, case.values))
        key = f"interp_jit.{case.name}.{dtype}"
        rec.run(f"{key}.value", lambda x=x, k=k, v=v: jax.jit(knotsafe.interp)(x, k, v))
        rec.run(
            f"{key}.period_value",
            lambda x=x, k=k, v=v: jax.jit(lambda a, b_, c: knotsafe.interp(a, b_, c, period=2.0))(x, k, v),
        )
        loss = lambda x, k, v, key=key: b.weighted_sum(knotsafe.interp(x, k, v, knot_grad="exact"), key)  # noqa: E731
        rec.run(f"{key}.grad", lambda loss=loss, x=x, k=k, v=v: jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(x, k, v))


# --------------------------------------------------------------------------
# create_transforms
# --------------------------------------------------------------------------


def transform_configs(d: int) -> dict[str, dict[str, Any]]:
    return {
        "rank": {},
        "rank_w": {"weights": True},
        "rank_w_alias": {"mesh_weight_map": True},
        "rank_w_uniform": {"weights": "uniform"},
        "rank_w_zeros": {"weights": "zeros"},
        "rank_stop": {"knot_grad": "stop"},
        "rank_min_gap": {"min_gap": 0.05},
        "kernel": {"method": "kernel", "bandwidth": 0.4},
        "kernel_w": {"method": "kernel", "bandwidth": 0.4, "weights": True},
        "kernel_bw_array": {"method": "kernel", "bandwidth": "array"},
        "kernel_table": {"method": "kernel", "bandwidth": 0.4, "n_knots": 33},
        "kernel_table_w": {"method": "kernel", "bandwidth": 0.3, "n_knots": 17, "weights": True},
        "kernel_span": {"method": "kernel", "bandwidth": 0.5, "span_ratio": 40.0},
        "kernel_stop": {"method": "kernel", "bandwidth": 0.4, "knot_grad": "stop", "n_knots": 33},
        "kernel_wide": {"method": "kernel", "bandwidth": 3.0},
    }


def transform_kwargs(
    b: Backend, cfg: dict[str, Any], n: int, d: int, dtype: str, seed: int
) -> tuple[dict[str, Any], Array | None]:
    """Keyword arguments of create_transforms; the weights array separately (differentiated)."""
    kw = dict(cfg)
    w = None
    for name in ("weights", "mesh_weight_map"):
        spec = kw.pop(name, None)
        if spec is None:
            continue
        wn = np.random.default_rng(seed + 1).uniform(0.2, 2.0, n)
        if spec == "uniform":
            wn = np.full(n, 0.7)
        elif spec == "zeros":
            wn[::4] = 0.0
        w = b.arr(wn, dtype)
        kw[name] = w
    if kw.get("bandwidth") == "array":
        kw["bandwidth"] = b.arr(np.linspace(0.3, 0.6, d), dtype)
    return kw, w


def transforms_section(rec: Recorder, b: Backend) -> None:
    import knotsafe

    for n, d, seed in ((60, 2, 1), (9, 3, 2)):
        pts_np = tie_points(n, d, seed)
        q_np, u_np = point_queries(pts_np, seed)
        for dtype in b.dtypes:
            primary = dtype == b.dtypes[0]
            pts, q, u = (b.arr(a, dtype) for a in (pts_np, q_np, u_np))
            for cname, cfg in transform_configs(d).items():
                if d == 3 and cname not in ("rank", "rank_w", "kernel", "kernel_table_w"):
                    continue
                if not b.full and cname not in b.transform_configs(primary and d == 2):
                    continue
                key = f"transforms.n{n}d{d}.{dtype}.{cname}"
                kw, w = transform_kwargs(b, cfg, n, d, dtype, seed)
                if b.name == "dask" and kw.get("method") == "kernel" and "span_ratio" not in kw:
                    # Dask arrays are lazy: the kernel method needs a static bound to size its grid.
                    key += "_span"
                    kw["span_ratio"] = 60.0
                made = rec.run(
                    f"{key}.create", lambda pts=pts, kw=kw: _no_arrays(knotsafe.create_transforms(pts, **kw))
                )
                if made is None:
                    continue
                fwd, inv = knotsafe.create_transforms(pts, **kw)
                rec.run(f"{key}.forward", lambda fwd=fwd, q=q: fwd(q))
                rec.run(f"{key}.inverse", lambda inv=inv, u=u: inv(u))
                if not b.autodiff or (not b.full and kw.get("method") == "kernel"):
                    continue  # JAX: the kernel transform's gradients are recorded compiled (jax_jit_transforms)
                wname = "weights" if "weights" in kw else "mesh_weight_map"

                def loss(p: Array, q: Array, u: Array, *ws: Array, kw: dict[str, Any] = kw, key: str = key) -> Array:
                    kw2 = {**kw, wname: ws[0]} if ws else kw
                    fwd, inv = knotsafe.create_transforms(p, **kw2)
                    return b.weighted_sum(fwd(q), key + "f") + b.weighted_sum(inv(u), key + "i")

                args = [pts, q, u] + ([w] if w is not None else [])
                argnums = tuple(range(len(args)))
                if not b.full:
                    rec.run(
                        f"{key}.grad_jit",
                        lambda loss=loss, args=args, an=argnums: b.heavy(lambda *a: b.grad(loss, list(a), an))(*args),
                    )
                else:
                    rec.run(f"{key}.grad", lambda loss=loss, args=args, an=argnums: b.grad(loss, args, an))
                if cname in ("rank_w", "kernel_w", "kernel_table") and b.full:
                    rec.run(
                        f"{key}.func_grad",
                        lambda loss=loss, args=args, argnums=argnums: b.func_grad(loss, args, argnums),
                    )
        if b.full or d == 2:
            transform_bad(rec, b, pts_np, d)
    if b.full or not b.autodiff:
        transform_conversions(rec, b)
    if b.autodiff:
        transform_second_order(rec, b)
        if b.name.startswith("jax"):
            jax_jit_transforms(rec, b)


def transform_conversions(rec: Recorder, b: Backend) -> None:
    """Integer and mixed-precision points and queries, NumPy data converted with ``xp=``, half precision."""
    import knotsafe

    pts_np = tie_points(12, 2, 13)
    q_np, u_np = point_queries(pts_np, 13)
    ipts, iq = np.round(pts_np * 10).astype(np.int64), np.round(q_np * 10).astype(np.int64)
    f = b.dtypes[0]
    for name, (p, q, u, kw) in {
        "int_points": (b.arr(ipts, b.int_dtype), b.arr(iq, b.int_dtype), b.arr(u_np, f), {}),
        "int_points_kernel": (b.arr(ipts, b.int_dtype), b.arr(q_np, f), b.arr(u_np, f), {"bandwidth": 4.0}),
        "f32_queries": (b.arr(pts_np, f), b.arr(q_np, "float32"), b.arr(u_np, "float32"), {}),
        "xp_numpy_data": (pts_np.astype(f), q_np.astype(f), u_np.astype(f), {"xp": b.ns}),
        **{h: (b.arr(pts_np, h), b.arr(q_np, h), b.arr(u_np, h), {"bandwidth": 0.5, "n_knots": 9}) for h in b.halves},
    }.items():
        if "bandwidth" in kw:
            kw = {**kw, "method": "kernel", **({"span_ratio": 100.0} if b.name == "dask" else {})}
        fwd_inv = rec.run(
            f"transforms_conv.{name}.create", lambda p=p, kw=kw: _no_arrays(knotsafe.create_transforms(p, **kw))
        )
        if fwd_inv is None:
            continue
        fwd, inv = knotsafe.create_transforms(p, **kw)
        rec.run(f"transforms_conv.{name}.forward", lambda fwd=fwd, q=q: fwd(q))
        rec.run(f"transforms_conv.{name}.inverse", lambda inv=inv, u=u: inv(u))
        if name in b.halves:
            fwd, inv = knotsafe.create_transforms(p)
            rec.run(f"transforms_conv.{name}.rank_forward", lambda fwd=fwd, q=q: fwd(q))
            rec.run(f"transforms_conv.{name}.rank_inverse", lambda inv=inv, u=u: inv(u))


def _no_arrays(pair: tuple[Any, Any]) -> str:
    """A created transform pair as text (its callables' names): creation succeeded."""
    return " ".join(getattr(f, "__name__", type(f).__name__) for f in pair)


def transform_bad(rec: Recorder, b: Backend, pts_np: np.ndarray, d: int) -> None:
    import knotsafe

    f = b.dtypes[0]
    bad_pts = pts_np.copy()
    bad_pts[3, 0] = np.nan
    bad = {
        "nan_points": lambda: knotsafe.create_transforms(b.arr(bad_pts, f)),
        "negative_weights": lambda: knotsafe.create_transforms(b.arr(pts_np, f), b.arr(-np.ones(pts_np.shape[0]), f)),
        "both_weights": lambda: knotsafe.create_transforms(
            b.arr(pts_np, f), b.arr(np.ones(pts_np.shape[0]), f), mesh_weight_map=b.arr(np.ones(pts_np.shape[0]), f)
        ),
        "method": lambda: knotsafe.create_transforms(b.arr(pts_np, f), method="nope"),
        "rank_bandwidth": lambda: knotsafe.create_transforms(b.arr(pts_np, f), bandwidth=1.0),
        "kernel_no_bandwidth": lambda: knotsafe.create_transforms(b.arr(pts_np, f), method="kernel"),
        "query_shape": lambda: knotsafe.create_transforms(b.arr(pts_np, f))[0](b.arr(np.zeros((3, d + 1)), f)),
    }
    for name, fn in bad.items():
        wrap = (lambda fn=fn: fn()) if name == "query_shape" else (lambda fn=fn: _no_arrays(fn()))
        rec.run(f"transforms.d{d}.bad_{name}", wrap)


def transform_second_order(rec: Recorder, b: Backend) -> None:
    """Hessians and double backward of scalar losses of the rank and kernel transforms."""
    import knotsafe

    pts_np = tie_points(10, 2, 5)
    q_np = np.concatenate([pts_np[:4] + 0.05, np.array([[-0.3, 0.2], [0.7, -1.1]])])
    u_np = np.array([[0.1, 0.9], [0.45, 0.5], [0.8, 0.2]])
    w_np = np.random.default_rng(6).uniform(0.5, 1.5, 10)
    configs = {
        "rank": {},
        "rank_w": {"weights": True},
        "kernel": {"method": "kernel", "bandwidth": 0.5},
        "kernel_w": {"method": "kernel", "bandwidth": 0.5, "weights": True},
        "kernel_table": {"method": "kernel", "bandwidth": 0.5, "n_knots": 21},
    }
    if not b.full:  # compiled below, where the kernel method needs a static bound on the spread
        configs["kernel_table"]["span_ratio"] = 40.0
    for dtype in b.dtypes if b.full else b.dtypes[:1]:
        pts, q, u, w = (b.arr(a, dtype) for a in (pts_np, q_np, u_np, w_np))
        for cname, cfg in configs.items():
            if not b.full and cname not in (("rank_w",) if b.lean else ("rank_w", "kernel_table")):
                continue
            key = f"transforms_d2.{dtype}.{cname}"
            weighted = cfg.get("weights", False)
            kw = {k: v for k, v in cfg.items() if k != "weights"}

            def loss(
                p: Array, q: Array, u: Array, w: Array, kw: dict[str, Any] = kw, key: str = key, wt: bool = weighted
            ) -> Array:
                fwd, inv = knotsafe.create_transforms(p, w if wt else None, **kw)
                a, c = fwd(q), inv(u)
                return (
                    b.weighted_sum(a, key + "f") + b.weighted_sum(a * a, key + "ff") + b.weighted_sum(c * c, key + "i")
                )

            args = [pts, q, u, w]
            argnums = (0, 1, 2, 3) if weighted else (0, 1, 2)
            if b.full:
                rec.run(f"{key}.hessian", lambda loss=loss, args=args, an=argnums: b.hessian(loss, args, an))
            else:  # compiled: eager JAX compiles every batched operation of the Hessian separately
                rec.run(
                    f"{key}.hessian_jit",
                    lambda loss=loss, args=args, an=argnums: b.heavy(lambda *a: b.hessian(loss, list(a), an))(*args),
                )
                continue
            if b.full:
                rec.run(f"{key}.hvp", lambda loss=loss, args=args, an=argnums, key=key: b.hvp(loss, args, an, key))

            def fq(qq: Array, pts: Array = pts, kw: dict[str, Any] = kw, w: Array = w, wt: bool = weighted) -> Array:
                return knotsafe.create_transforms(pts, w if wt else None, **kw)[0](qq)

            for mode in ("rev", "fwd"):
                rec.run(f"{key}.jac{mode}_q", lambda fq=fq, mode=mode: b.jac(fq, [q], 0, mode))
            fp = lambda pp, kw=kw, w=w, wt=weighted: knotsafe.create_transforms(pp, w if wt else None, **kw)[0](q)  # noqa: E731
            if b.full or cname == "kernel_table":
                rec.run(f"{key}.jacfwd_points", lambda fp=fp: b.jac(fp, [pts], 0, "fwd"))
                rec.run(f"{key}.jacrev_points", lambda fp=fp: b.jac(fp, [pts], 0, "rev"))


def jax_jit_transforms(rec: Recorder, b: Backend) -> None:
    import knotsafe

    jax = b.jax
    pts_np = tie_points(40, 2, 3)
    q_np, u_np = point_queries(pts_np, 3)
    w_np = np.random.default_rng(4).uniform(0.2, 2.0, 40)
    for dtype in b.dtypes[:1]:
        pts, q, u, w = (b.arr(a, dtype) for a in (pts_np, q_np, u_np, w_np))
        configs = {"kernel_span_table": {"method": "kernel", "bandwidth": 0.5, "span_ratio": 40.0, "n_knots": 25}}
        for cname, kw in configs.items():
            key = f"transforms_jit.{dtype}.{cname}"

            def both(p: Array, w: Array, q: Array, u: Array, kw: dict[str, Any] = kw) -> tuple[Array, Array]:
                fwd, inv = knotsafe.create_transforms(p, w, **kw)
                return fwd(q), inv(u)

            rec.run(f"{key}.value", lambda both=both: jax.jit(both)(pts, w, q, u))

            def loss(p: Array, w: Array, q: Array, u: Array, both: Any = both, key: str = key) -> Array:
                a, c = both(p, w, q, u)
                return b.weighted_sum(a, key + "f") + b.weighted_sum(c, key + "i")

            rec.run(f"{key}.grad", lambda loss=loss: jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(pts, w, q, u))
        # bad points under jit: NaN outputs instead of an exception
        bad = pts_np.copy()
        bad[2, 1] = np.inf
        rec.run(
            f"transforms_jit.{dtype}.bad_points",
            lambda bad=bad: jax.jit(lambda p, q: knotsafe.create_transforms(p)[0](q))(b.arr(bad, dtype), q),
        )


# --------------------------------------------------------------------------
# rectangular
# --------------------------------------------------------------------------

MESH_N = 7
LENS: dict[str, Any] = {"radius": 1.0, "pixel_scale": 0.1, "sub_size": 2, "einstein_radius": 0.6, "rotation": 0.3}


def mesh_configs() -> dict[str, dict[str, Any]]:
    return {
        "rank": {},
        "rank_w": {"weights": True},
        "rank_stop": {"knot_grad": "stop"},
        "rank_min_gap": {"min_gap": 1e-3},
        "kernel": {"transform": "kernel"},
        "kernel_w": {"transform": "kernel", "weights": True},
        "kernel_bw2_exact": {"transform": "kernel", "bandwidth": 2.0, "n_knots": None},
        "kernel_knots": {"transform": "kernel", "bandwidth": 0.5, "n_knots": 20},
    }


def rectangular_section(rec: Recorder, b: Backend) -> None:
    from knotsafe import rectangular
    from knotsafe.testing import circular_mask_grid, lens_grid, trace_sis

    data_np, over_np = lens_grid(**LENS)
    n_data = data_np.shape[0]
    sub = LENS["sub_size"] ** 2
    wmap_np = np.random.default_rng(11).uniform(0.5, 2.0, n_data)
    noise_np = np.random.default_rng(12).uniform(0.5, 2.0, over_np.shape[0])
    s2d_np = np.arange(over_np.shape[0]) // sub
    for dtype in b.dtypes:
        primary = dtype == b.dtypes[0]
        data, over, wmap = (b.arr(a, dtype) for a in (data_np, over_np, wmap_np))
        for cname, cfg in mesh_configs().items():
            if not b.full and cname not in b.mesh_configs(primary):
                continue
            key = f"mesh.{dtype}.{cname}"
            kw = {k: v for k, v in cfg.items() if k != "weights"}
            wm = wmap if cfg.get("weights") else None
            # On JAX only the plain rank mesh runs eagerly; the others are compiled (see Backend.heavy).
            call = (lambda fn: fn) if b.full or cname == "rank" else b.heavy
            mw_fn = call(lambda d, o, wm, kw=kw: rectangular.mappings_weights(MESH_N, d, o, wm, **kw))
            mw = rec.run(f"{key}.mappings_weights", lambda mw_fn=mw_fn, wm=wm: mw_fn(data, over, wm))
            rec.run(
                f"{key}.pixel_centres",
                lambda kw=kw, wm=wm, call=call: call(lambda d, w: rectangular.pixel_centres(MESH_N, d, w, **kw))(
                    data, wm
                ),
            )
            rec.run(
                f"{key}.pixel_areas",
                lambda kw=kw, wm=wm, call=call: call(lambda d, w: rectangular.pixel_areas(MESH_N, d, w, **kw))(
                    data, wm
                ),
            )
            if mw is None:
                continue
            idx, wts = mw_fn(data, over, wm)
            if cname in ("rank", "kernel") and (b.full or (primary and cname == "rank")):
                s2d = b.arr(s2d_np, b.int_dtype)
                noise = b.arr(noise_np, dtype)
                npix = MESH_N * MESH_N
                rec.run(f"{key}.mapping_matrix", lambda idx=idx, wts=wts: rectangular.mapping_matrix(idx, wts, npix))
                rec.run(
                    f"{key}.mapping_matrix_sub",
                    lambda idx=idx, wts=wts, s2d=s2d: rectangular.mapping_matrix(idx, wts, npix, sub_to_data=s2d),
                )
                rec.run(
                    f"{key}.mapping_matrix_sub_n",
                    lambda idx=idx, wts=wts, s2d=s2d: rectangular.mapping_matrix(
                        idx, wts, npix, sub_to_data=s2d, n_data=n_data + 3
                    ),
                )
                rec.run(
                    f"{key}.curvature_matrix", lambda idx=idx, wts=wts: rectangular.curvature_matrix(idx, wts, npix)
                )
                rec.run(
                    f"{key}.curvature_matrix_noise",
                    lambda idx=idx, wts=wts, noise=noise: rectangular.curvature_matrix(
                        idx, wts, npix, noise_weights=noise
                    ),
                )
                if b.autodiff:
                    mesh_matrix_grads(rec, b, key, idx, wts, noise, s2d, npix)
            if b.autodiff and (b.full or primary):
                grad_call = (lambda fn: fn) if b.full else b.heavy
                mesh_grads(rec, b, key, kw, data, over, wmap if cfg.get("weights") else None, grad_call)
        if b.autodiff and (b.full or primary):
            lens_parameter_derivatives(rec, b, dtype, circular_mask_grid, trace_sis)
    mesh_extra(rec, b, data_np, over_np, wmap_np)
    if b.full or not b.autodiff:
        mesh_conversions(rec, b, data_np, over_np, wmap_np)


def mesh_conversions(rec: Recorder, b: Backend, data_np: np.ndarray, over_np: np.ndarray, wmap_np: np.ndarray) -> None:
    """NumPy data converted with ``xp=``, integer grids and mixed precision."""
    from knotsafe import rectangular

    f = b.dtypes[0]
    ns = b.ns
    rec.run(
        "mesh_conv.xp_numpy_data.mappings_weights",
        lambda: rectangular.mappings_weights(5, data_np.astype(f), over_np.astype(f), wmap_np.astype(f), xp=ns),
    )
    rec.run("mesh_conv.xp_numpy_data.pixel_centres", lambda: rectangular.pixel_centres(5, data_np.astype(f), xp=ns))
    rec.run(
        "mesh_conv.xp_numpy_data.pixel_areas",
        lambda: rectangular.pixel_areas(5, data_np.astype(f), xp=ns, transform="kernel"),
    )
    idata, iover = np.round(data_np * 20).astype(np.int64), np.round(over_np * 20).astype(np.int64)
    rec.run(
        "mesh_conv.int_grids.mappings_weights",
        lambda: rectangular.mappings_weights(5, b.arr(idata, b.int_dtype), b.arr(iover, b.int_dtype)),
    )
    rec.run("mesh_conv.int_grids.pixel_areas", lambda: rectangular.pixel_areas(5, b.arr(idata, b.int_dtype)))
    rec.run(
        "mesh_conv.f32_over.mappings_weights",
        lambda: rectangular.mappings_weights(5, b.arr(data_np, f), b.arr(over_np, "float32")),
    )
    idx = np.array([[0, 1, 1, 3], [2, 2, 2, 2], [4, 0, 3, 1]])
    w = np.array([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25], [1.0, -2.0, 0.5, 0.0]])
    rec.run(
        "mesh_conv.xp_numpy_data.mapping_matrix",
        lambda: rectangular.mapping_matrix(idx, w.astype(f), 5, sub_to_data=np.array([0, 1, 0]), xp=ns),
    )
    rec.run(
        "mesh_conv.xp_numpy_data.curvature_matrix",
        lambda: rectangular.curvature_matrix(
            idx, w.astype(f), 5, noise_weights=np.array([1.0, 2.0, 0.5]).astype(f), xp=ns
        ),
    )


def mesh_matrix_grads(
    rec: Recorder, b: Backend, key: str, idx: Array, wts: Array, noise: Array, s2d: Array, npix: int
) -> None:
    from knotsafe import rectangular

    lm = lambda w: b.weighted_sum(rectangular.mapping_matrix(idx, w, npix, sub_to_data=s2d), key + "mm")  # noqa: E731
    rec.run(f"{key}.mapping_matrix_sub.grad", lambda: b.grad(lm, [wts], (0,)))
    lc = lambda w, nw: b.weighted_sum(rectangular.curvature_matrix(idx, w, npix, noise_weights=nw), key + "cm")  # noqa: E731
    rec.run(f"{key}.curvature_matrix_noise.grad", lambda: b.grad(lc, [wts, noise], (0, 1)))
    rec.run(f"{key}.curvature_matrix_noise.hvp", lambda: b.hvp(lc, [wts, noise], (0, 1), key + "cmh"))


def mesh_grads(
    rec: Recorder,
    b: Backend,
    key: str,
    kw: dict[str, Any],
    data: Array,
    over: Array,
    wmap: Array | None,
    call: Callable[[Callable[..., Any]], Callable[..., Any]],
) -> None:
    from knotsafe import rectangular

    def loss_mw(d: Array, o: Array, *wm: Array) -> Array:
        return b.weighted_sum(rectangular.mappings_weights(MESH_N, d, o, *wm, **kw)[1], key + "mw")

    def loss_geo(d: Array, *wm: Array) -> Array:
        c = rectangular.pixel_centres(MESH_N, d, *wm, **kw)
        a = rectangular.pixel_areas(MESH_N, d, *wm, **kw)
        return b.weighted_sum(c, key + "pc") + b.weighted_sum(a, key + "pa")

    extra = [wmap] if wmap is not None else []
    an_mw, an_geo = tuple(range(2 + len(extra))), tuple(range(1 + len(extra)))
    rec.run(
        f"{key}.mappings_weights.grad", lambda: call(lambda *a: b.grad(loss_mw, list(a), an_mw))(data, over, *extra)
    )
    if b.full or kw.get("transform", "rank") == "rank":
        rec.run(f"{key}.geometry.grad", lambda: call(lambda *a: b.grad(loss_geo, list(a), an_geo))(data, *extra))


def lens_parameter_derivatives(rec: Recorder, b: Backend, dtype: str, circular_mask_grid: Any, trace_sis: Any) -> None:
    """First and second derivatives of mesh losses with respect to the Einstein radius (the lens use case)."""
    from knotsafe import rectangular

    img = b.arr(circular_mask_grid(LENS["radius"], LENS["pixel_scale"], 1), dtype)
    img_over = b.arr(circular_mask_grid(LENS["radius"], LENS["pixel_scale"], LENS["sub_size"]), dtype)
    theta = b.arr(np.array([0.6]), dtype)
    for cname, kw in {"rank": {}, "kernel": {"transform": "kernel"}}.items() if b.full else [("rank", {})]:
        key = f"mesh_lens.{dtype}.{cname}"

        def loss(th: Array, kw: dict[str, Any] = kw, key: str = key) -> Array:
            e = th[0]
            d = trace_sis(img, e, rotation=LENS["rotation"])
            o = trace_sis(img_over, e, rotation=LENS["rotation"])
            w = rectangular.mappings_weights(MESH_N, d, o, **kw)[1]
            c = rectangular.pixel_centres(MESH_N, d, **kw)
            return b.weighted_sum(w, key + "w") + b.weighted_sum(w * w, key + "ww") + b.weighted_sum(c, key + "c")

        if b.full:
            rec.run(f"{key}.grad", lambda loss=loss: b.grad(loss, [theta], (0,)))
        else:
            rec.run(f"{key}.grad_jit", lambda loss=loss: b.heavy(lambda t: b.grad(loss, [t], (0,)))(theta))
        if b.full:
            rec.run(f"{key}.hessian", lambda loss=loss: b.hessian(loss, [theta], (0,)))
            rec.run(f"{key}.hvp", lambda loss=loss, key=key: b.hvp(loss, [theta], (0,), key))
        elif cname == "rank":
            rec.run(
                f"{key}.hessian_jit",
                lambda loss=loss: b.heavy(lambda t: b.hessian(loss, [t], (0,)))(theta),
            )
    if b.name.startswith("jax"):
        jax = b.jax
        data = trace_sis(img, theta[0], rotation=LENS["rotation"])
        over = trace_sis(img_over, theta[0], rotation=LENS["rotation"])
        key = f"mesh_jit.{dtype}"
        rec.run(f"{key}.rank", lambda: jax.jit(lambda d, o: rectangular.mappings_weights(MESH_N, d, o))(data, over))
        rec.run(
            f"{key}.kernel",
            lambda: jax.jit(lambda d, o: rectangular.mappings_weights(MESH_N, d, o, transform="kernel"))(data, over),
        )
        rec.run(f"{key}.centres", lambda: jax.jit(lambda d: rectangular.pixel_centres(MESH_N, d))(data))
        rec.run(
            f"{key}.matrix",
            lambda: jax.jit(
                lambda i, w, s: rectangular.mapping_matrix(i, w, MESH_N * MESH_N, sub_to_data=s, n_data=img.shape[0])
            )(*rectangular.mappings_weights(MESH_N, data, over), b.arr(np.arange(over.shape[0]) // 4, b.int_dtype)),
        )


def mesh_extra(rec: Recorder, b: Backend, data_np: np.ndarray, over_np: np.ndarray, wmap_np: np.ndarray) -> None:
    """Other mesh sizes, half precision on torch, integer-less edge inputs and bad input."""
    from knotsafe import rectangular

    f = b.dtypes[0]
    data, over = b.arr(data_np, f), b.arr(over_np, f)
    call = (lambda fn: fn) if b.full else b.heavy
    for n in (3, 4, 12) if b.full else (3,) if b.autodiff else (3, 12):
        rec.run(f"mesh_n{n}.mappings_weights", lambda n=n: call(partial(rectangular.mappings_weights, n))(data, over))
        rec.run(f"mesh_n{n}.pixel_centres", lambda n=n: call(partial(rectangular.pixel_centres, n))(data))
        rec.run(
            f"mesh_n{n}.pixel_areas",
            lambda n=n: call(partial(rectangular.pixel_areas, n, transform="kernel"))(data),
        )
    scaled = {"tiny": 1e-300, "huge": 1e300} if f == "float64" else {"tiny": 1e-30, "huge": 1e30}
    if b.lean:
        del scaled["huge"]
    for name, s in scaled.items():
        rec.run(
            f"mesh_scale_{name}.mappings_weights",
            lambda s=s: call(partial(rectangular.mappings_weights, 5))(b.arr(data_np * s, f), b.arr(over_np * s, f)),
        )
        rec.run(
            f"mesh_scale_{name}.pixel_areas",
            lambda s=s: call(partial(rectangular.pixel_areas, 5))(b.arr(data_np * s, f)),
        )
    for half in b.halves if b.full else b.halves[:1]:
        dh, oh = b.arr(data_np, half), b.arr(over_np, half)
        rec.run(
            f"mesh_{half}.mappings_weights",
            lambda dh=dh, oh=oh: call(partial(rectangular.mappings_weights, 5))(dh, oh),
        )
        if b.full:
            rec.run(f"mesh_{half}.pixel_centres", lambda dh=dh: rectangular.pixel_centres(5, dh))
            rec.run(f"mesh_{half}.pixel_areas", lambda dh=dh: rectangular.pixel_areas(5, dh))
    idx = b.arr(np.array([[0, 1, 1, 3], [2, 2, 2, 2], [4, 0, 3, 1]]), b.int_dtype)
    w = b.arr(np.array([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25], [1.0, -2.0, 0.5, 0.0]]), f)
    rec.run("matrix_small.mapping_matrix", lambda: rectangular.mapping_matrix(idx, w, 5))
    rec.run("matrix_small.curvature_matrix", lambda: rectangular.curvature_matrix(idx, w, 5))
    bad = {
        "grid_size": lambda: rectangular.mappings_weights(2, data, over),
        "grid_size_float": lambda: rectangular.mappings_weights(5.5, data, over),
        "grid_shape": lambda: rectangular.mappings_weights(5, b.arr(data_np[:, :1], f), over),
        "weights_shape": lambda: rectangular.pixel_centres(5, data, b.arr(wmap_np[:-1], f)),
        "index_range": lambda: rectangular.mapping_matrix(idx, w, 4),
        "n_data_alone": lambda: rectangular.mapping_matrix(idx, w, 5, n_data=3),
        "index_dtype": lambda: rectangular.curvature_matrix(w, w, 5),
        "transform": lambda: rectangular.pixel_areas(5, data, transform="nope"),
    }
    for name, fn in bad.items():
        rec.run(f"mesh.bad_{name}", fn)


# --------------------------------------------------------------------------
# knotsafe.backends and the generic path
# --------------------------------------------------------------------------


def hooks_section(rec: Recorder, b: Backend) -> None:
    from knotsafe import backends

    ns = b.ns
    hooks = backends.hooks_for(ns)
    rec.put("hooks.name", hooks.name)
    rec.put("hooks.differentiable", hooks.differentiable)
    rec.put("hooks.has_forward", hooks.forward is not None)
    rec.put("hooks.has_complex_parts", hooks.complex_parts is not None)
    rec.put("hooks.registered", list(backends.registered()))
    for dtype in b.dtypes if b.full else b.dtypes[:1]:
        x = b.arr(np.concatenate([np.linspace(-6.0, 6.0, 49), [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-300]]), dtype)
        knots = b.arr(np.array([-1.0, 0.0, 0.0, 0.5, 2.0, 2.0, 2.0, 3.0]), dtype)
        q = b.arr(np.array([-2.0, -1.0, 0.0, 0.25, 2.0, 2.5, 3.0, 4.0, np.nan]), dtype)
        rise = b.arr(np.array([1.0, -2.0, 0.0, 3.0, 1.0, np.inf]), dtype)
        run = b.arr(np.array([0.5, 0.0, 0.0, 1e-300, -1.0, 1.0]), dtype)
        genuine = b.arr(np.array([True, False, False, True, True, True]), "bool")
        a = b.arr(np.linspace(-1.0, 1.0, 7), dtype)
        index = b.arr(np.array([0, 6, 3, 3, 1]), b.int_dtype)
        sidx = b.arr(np.array([0, 0, 1, 0, 3, 3]), b.int_dtype)
        src = b.arr(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), dtype)
        for label, h in (("native", hooks), ("generic", None)):
            key = f"hooks.{label}.{dtype}"
            erf = h.erf if h else backends.generic_erf
            rec.run(f"{key}.erf", lambda erf=erf, x=x: erf(ns, x))
            slope = h.safe_slope if h else backends.generic_safe_slope
            rec.run(f"{key}.safe_slope", lambda s=slope: s(ns, rise, run, genuine))
            ss = h.searchsorted if h else backends.generic_searchsorted
            rec.run(f"{key}.searchsorted", lambda ss=ss, q=q: ss(ns, knots, q))
            take = h.take if h else backends.generic_take
            rec.run(f"{key}.take", lambda take=take: take(ns, a, index))
            sa = h.scatter_add if h else backends.generic_scatter_add
            rec.run(f"{key}.scatter_add", lambda sa=sa: sa(ns, 5, sidx, src))
            rec.run(f"{key}.scatter_add_empty", lambda sa=sa: sa(ns, 3, sidx[:0], src[:0]))
            conc = h.is_concrete if h else backends.generic_is_concrete
            rec.run(f"{key}.is_concrete", lambda conc=conc: bool(conc(x)))
        if hooks.forward is not None:
            fwd = hooks.forward
            rec.run(f"hooks.native.{dtype}.forward", lambda fwd=fwd, q=q, k=knots: fwd(q, k, k * 2.0, None, None))
            rec.run(f"hooks.native.{dtype}.forward_lr", lambda fwd=fwd, q=q, k=knots: fwd(q, k, k * 2.0, -1.0, 5.0))
        rec.run(f"hooks.native.{dtype}.stop_gradient", lambda: hooks.stop_gradient(a))
        rec.run(f"hooks.native.{dtype}.consolidate", lambda: hooks.consolidate(a))


def generic_path_section(rec: Recorder, b: Backend) -> None:
    """The same calls through a registered backend's generic hooks (first derivatives on the stop_gradient path).

    ``bare``: hooks with nothing but ``stop_gradient`` (every other hook generic, no native forward);
    ``generic_linearize`` (autodiff backends): the built-in hooks with the generic linearisation.
    """
    kinds = ("bare", "generic_linearize") if b.autodiff else ("bare",)
    for kind in kinds:
        with registered_hooks(b, kind):
            from knotsafe import backends

            rec.put(f"generic.{kind}.hooks_name", backends.hooks_for(b.ns).name)
            for dtype in b.dtypes if b.full else b.dtypes[:1]:
                generic_interp(rec, b, kind, dtype)
                if b.autodiff or dtype == b.dtypes[0]:
                    generic_transforms_and_mesh(rec, b, kind, dtype)


def generic_interp(rec: Recorder, b: Backend, kind: str, dtype: str) -> None:
    import knotsafe
    from knotsafe import rectangular

    for case in knot_cases_for(dtype):
        if (case.name == "lens_grid" and kind == "bare") or not (b.full or case.name in b.core_cases):
            continue
        x, k, v = (b.arr(a, dtype) for a in (case.queries, case.knots, case.values))
        key = f"generic.{kind}.interp.{case.name}.{dtype}"
        rec.run(f"{key}.value", lambda x=x, k=k, v=v: knotsafe.interp(x, k, v))
        if not b.autodiff:
            continue
        for vname, kw in {"exact": {}, "stop": {"knot_grad": "stop"}}.items():

            def loss(x: Array, k: Array, v: Array, kw: dict[str, Any] = kw, key: str = key) -> Array:
                return b.weighted_sum(knotsafe.interp(x, k, v, **kw), key)

            rec.run(f"{key}.{vname}.grad", lambda loss=loss, x=x, k=k, v=v: b.grad(loss, [x, k, v], (0, 1, 2)))
    if b.autodiff:
        # The docs promise zero second derivatives on the generic path; record what it gives.
        q2, k2, v2 = (b.arr(a, dtype) for a in small_knot_cases()["dup_near"])

        def hl(x: Array, k: Array, v: Array) -> Array:
            return b.weighted_sum(knotsafe.interp(x, k, v), "gh")

        rec.run(f"generic.{kind}.interp_hessian.{dtype}", lambda: b.hessian(hl, [q2, k2, v2], (0, 1, 2)))
    mm = b.arr(np.array([[0, 1, 1, 3], [2, 2, 0, 4]]), b.int_dtype)
    mw = b.arr(np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.25, 0.125, 0.125]]), dtype)
    rec.run(f"generic.{kind}.mapping_matrix.{dtype}", lambda: rectangular.mapping_matrix(mm, mw, 5))
    rec.run(f"generic.{kind}.curvature_matrix.{dtype}", lambda: rectangular.curvature_matrix(mm, mw, 5))


def generic_transforms_and_mesh(rec: Recorder, b: Backend, kind: str, dtype: str) -> None:
    import knotsafe
    from knotsafe import rectangular
    from knotsafe.testing import lens_grid

    if (not b.full and kind != "bare") or b.lean:
        return
    data_np, over_np = lens_grid(**LENS)
    pts_np = tie_points(30, 2, 8)
    q_np, u_np = point_queries(pts_np, 8)
    w_np = np.random.default_rng(9).uniform(0.2, 2.0, 30)
    pts, q, u, w = (b.arr(a, dtype) for a in (pts_np, q_np, u_np, w_np))
    data, over = b.arr(data_np, dtype), b.arr(over_np, dtype)
    configs = {"rank": {}, "kernel": {"method": "kernel", "bandwidth": 0.4, "n_knots": 17, "span_ratio": 40.0}}
    for cname, kw in configs.items() if b.full else list(configs.items())[:1]:
        key = f"generic.{kind}.transforms.{dtype}.{cname}"

        def tloss(p: Array, q: Array, u: Array, w: Array, kw: dict[str, Any] = kw, key: str = key) -> Array:
            fwd, inv = knotsafe.create_transforms(p, w, **kw)
            return b.weighted_sum(fwd(q), key + "f") + b.weighted_sum(inv(u), key + "i")

        if b.full or not b.autodiff:
            rec.run(f"{key}.forward", lambda kw=kw: knotsafe.create_transforms(pts, w, **kw)[0](q))
        if b.autodiff:
            call = (lambda fn: fn) if b.full else b.heavy
            rec.run(
                f"{key}.grad",
                lambda tloss=tloss, call=call: call(lambda *a: b.grad(tloss, list(a), (0, 1, 2, 3)))(pts, q, u, w),
            )
    mconfigs = {"rank": {}, "kernel": {"transform": "kernel"}}
    for cname, kw in mconfigs.items() if b.full else list(mconfigs.items())[:1]:
        key = f"generic.{kind}.mesh.{dtype}.{cname}"
        if b.full or not b.autodiff:
            rec.run(f"{key}.mappings_weights", lambda kw=kw: rectangular.mappings_weights(MESH_N, data, over, **kw))
            rec.run(f"{key}.pixel_areas", lambda kw=kw: rectangular.pixel_areas(MESH_N, data, **kw))
        if b.autodiff:

            def mloss(d: Array, o: Array, kw: dict[str, Any] = kw, key: str = key) -> Array:
                return b.weighted_sum(rectangular.mappings_weights(MESH_N, d, o, **kw)[1], key)

            rec.run(f"{key}.grad", lambda mloss=mloss: b.heavy(lambda d, o: b.grad(mloss, [d, o], (0, 1)))(data, over))


# --------------------------------------------------------------------------
# knotsafe.testing helpers
# --------------------------------------------------------------------------


def testing_section(rec: Recorder, b: Backend) -> None:
    from knotsafe import testing

    f = b.dtypes[0]
    peers = ("plain_interp", "jitter_interp") if b.full or not b.autodiff else ("plain_interp",)
    for case in knot_cases_for(f)[: 7 if b.full else 2 if not b.autodiff else 1]:
        x, k, v = (b.arr(a, f) for a in (case.queries, case.knots, case.values))
        for name in ("plain_interp", "jitter_interp"):
            fn = getattr(testing, name)
            key = f"testing.{name}.{case.name}"
            rec.run(f"{key}.value", lambda fn=fn, x=x, k=k, v=v: fn(x, k, v))
            if b.autodiff:
                loss = lambda x, k, v, fn=fn, key=key: b.weighted_sum(fn(x, k, v), key)  # noqa: E731
                rec.run(f"{key}.grad", lambda loss=loss, x=x, k=k, v=v: b.grad(loss, [x, k, v], (0, 1, 2)))
    pts_np = tie_points(30, 2, 10)
    q_np, _ = point_queries(pts_np, 10)
    w_np = np.random.default_rng(10).uniform(0.2, 2.0, 30)
    pts, q, w = b.arr(pts_np, f), b.arr(q_np, f), b.arr(w_np, f)
    for name in peers:
        fn = getattr(testing, name)
        rec.run(
            f"testing.peer_transform.{name}",
            lambda fn=fn: b.heavy(lambda p, w, q: testing.peer_transform(b.ns, p, w, fn)(q))(pts, w, q),
        )
        rec.run(
            f"testing.peer_transform_unweighted.{name}", lambda fn=fn: testing.peer_transform(b.ns, pts, None, fn)(q)
        )
    data_np, over_np = testing.lens_grid(**LENS)
    data, over = b.arr(data_np, f), b.arr(over_np, f)
    for name in ("plain_interp", "jitter_interp"):
        fn = getattr(testing, name)
        rec.run(
            f"testing.peer_mappings_weights.{name}",
            lambda fn=fn: b.heavy(lambda d, o: testing.peer_mappings_weights(MESH_N, d, o, interp=fn))(data, over),
        )
        if b.autodiff:

            def ml(d: Array, o: Array, fn: Any = fn) -> Array:
                return b.weighted_sum(testing.peer_mappings_weights(MESH_N, d, o, interp=fn)[1], "peer")

            rec.run(
                f"testing.peer_mappings_weights.{name}.grad",
                lambda ml=ml: b.heavy(lambda d, o: b.grad(ml, [d, o], (0, 1)))(data, over),
            )
    img = b.arr(testing.circular_mask_grid(1.0, 0.1, 1), f)
    rec.run("testing.trace_sis", lambda: testing.trace_sis(img, 0.6, rotation=0.3))
    rec.run("testing.trace_sis_xp", lambda: testing.trace_sis(img, 0.6, xp=b.ns))
    rec.run("testing.lens_grid_xp", lambda: testing.lens_grid(radius=1.0, pixel_scale=0.1, sub_size=2, xp=b.ns))


def api_section(rec: Recorder) -> None:
    """The public names and the NumPy data of knotsafe.testing (backend-independent)."""
    import knotsafe
    from knotsafe import testing

    for mod in ("knotsafe", "knotsafe.rectangular", "knotsafe.backends", "knotsafe.testing"):
        m = importlib.import_module(mod)
        rec.put(f"api.{mod}.__all__", sorted(getattr(m, "__all__", [])))
    rec.put("api.version", knotsafe.__version__)
    fields = [f for f in vars(knotsafe.backends.BackendHooks).get("__dataclass_fields__", {})]
    rec.put("api.BackendHooks.fields", fields)
    rec.put("api.ENTRY_POINT_GROUP", knotsafe.backends.ENTRY_POINT_GROUP)
    for dt in (np.float64, np.float32, np.float16):
        for case in testing.knot_cases(seed=0, dtype=dt):
            for part in ("knots", "values", "queries"):
                rec.put(f"api.knot_cases.{dt.__name__}.{case.name}.{part}", getattr(case, part))
    rec.put("api.knot_cases.seed3", [c.knots for c in testing.knot_cases(seed=3)])
    rec.put("api.circular_mask_grid", testing.circular_mask_grid(1.0, 0.1, 2))
    rec.put("api.lens_grid", testing.lens_grid(**LENS))
    rec.put("api.lens_grid_f32", testing.lens_grid(radius=1.0, pixel_scale=0.1, sub_size=2, dtype=np.float32))
    rec.put("api.trace_sis", testing.trace_sis(testing.circular_mask_grid(1.0, 0.1, 1), 0.6, rotation=0.3))
    rec.put("api.REPORT_JITTER", testing.REPORT_JITTER)


# --------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------

SECTIONS: tuple[Callable[[Recorder, Backend], None], ...] = (
    interp_section,
    transforms_section,
    rectangular_section,
    hooks_section,
    generic_path_section,
    testing_section,
)


def record_one(run: str, path: Path) -> None:
    """Compute one run's corpus in this process and save it."""
    import knotsafe

    print(f"[{run}] knotsafe from {Path(knotsafe.__file__).parent}", flush=True)
    t0 = time.process_time()
    if run == "api":
        rec = Recorder(None)
        api_section(rec)
    else:
        b = make_backend(run)
        rec = Recorder(b)
        for section in SECTIONS:
            t = time.process_time()
            section(rec, b)
            print(f"[{run}] {section.__name__}: {time.process_time() - t:.1f} CPU-s", flush=True)
    np.savez(path, **rec.arrays)
    print(
        f"[{run}] {len(rec.arrays)} arrays, {len(rec.errors)} recorded exceptions, {time.process_time() - t0:.1f} CPU-s"
    )
    if os.environ.get("CORPUS_PROFILE"):
        groups: dict[str, float] = {}
        for key, sec in rec.seconds.items():
            group = ".".join(key.split(".")[:2])
            groups[group] = groups.get(group, 0.0) + sec
        for group, sec in sorted(groups.items(), key=lambda g: -g[1])[:25]:
            print(f"  [{run}] {sec:6.1f} CPU-s  {group}")
        for key, sec in sorted(rec.seconds.items(), key=lambda g: -g[1])[:15]:
            print(f"  [{run}] {sec:6.2f} CPU-s  {key}")
    if os.environ.get("CORPUS_SHOW_ERRORS"):
        for e in rec.errors:
            print(f"  [{run}] {e}")


def available(run: str) -> bool:
    module = {
        "api": "numpy",
        "numpy": "numpy",
        "dask": "dask",
        "torch": "torch",
        "array_api_strict": "array_api_strict",
    }
    return importlib.util.find_spec(module.get(run, "jax")) is not None


def record(outdir: Path, only: list[str]) -> int:
    outdir = outdir.resolve()
    inside = [p for p in (outdir, *outdir.parents) if (p / ".git").exists()]
    if inside:
        print(f"refusing to record inside the git tree {inside[0]}: pick an OUTDIR outside it")
        return 2
    outdir.mkdir(parents=True, exist_ok=True)
    status = 0
    wall0, cpu0 = time.time(), os.times()
    for run in only or list(RUNS):
        if run not in RUNS:
            print(f"unknown run {run!r}; runs: {', '.join(RUNS)}")
            return 2
        path = outdir / f"{run}.npz"
        path.unlink(missing_ok=True)  # a failed run leaves no stale file behind
        if not available(run):
            print(f"[{run}] not installed: skipped")
            continue
        env = {**os.environ, **FIXED_ENV, **RUNS[run]}
        t0 = time.time()
        before = os.times()
        proc = subprocess.run([sys.executable, __file__, "_one", run, str(path)], env=env, check=False)
        after = os.times()
        cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
        print(f"[{run}] wall {time.time() - t0:.1f} s, CPU {cpu:.1f} s, exit {proc.returncode}", flush=True)
        status = status or proc.returncode
    end = os.times()
    cpu = (end.children_user - cpu0.children_user) + (end.children_system - cpu0.children_system)
    print(f"record: wall {time.time() - wall0:.1f} s, CPU {cpu:.1f} s (all runs), into {outdir}")
    return status


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


def describe(a: np.ndarray, b: np.ndarray) -> str:
    """How two arrays differ: counts, the largest finite difference and the first differing element's bits."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return f"dtype/shape {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
    if a.dtype.kind in "US":
        return f"{a!r} vs {b!r}"[:400]
    if a.size == 0:
        return "empty arrays with different bytes"
    width = a.dtype.itemsize
    ra = np.frombuffer(_bits(a), np.uint8).reshape(a.size, width)
    rb = np.frombuffer(_bits(b), np.uint8).reshape(b.size, width)
    diff = (ra != rb).any(axis=1)
    first = int(np.argmax(diff))
    fa, fb = a.reshape(-1)[first], b.reshape(-1)[first]
    text = (
        f"{int(np.count_nonzero(diff))} of {a.size} elements differ in bits; first at flat index {first}: "
        f"{fa!r} (0x{ra[first][::-1].tobytes().hex()}) vs {fb!r} (0x{rb[first][::-1].tobytes().hex()})"
    )
    if a.dtype.kind in "fc":
        with np.errstate(all="ignore"):
            finite = np.isfinite(a) & np.isfinite(b)
            err = float(np.max(np.abs(a[finite] - b[finite]))) if finite.any() else float("nan")
        text += f"; max |diff| over finite pairs {err:.3g}"
    return text


def compare(dir_a: Path, dir_b: Path) -> int:
    files_a = {p.name for p in dir_a.glob("*.npz")}
    files_b = {p.name for p in dir_b.glob("*.npz")}
    bad = 0
    for name in sorted(files_a ^ files_b):
        print(f"MISSING FILE {name}: only in {dir_a if name in files_a else dir_b}")
        bad += 1
    total = 0
    for name in sorted(files_a & files_b):
        with np.load(dir_a / name, allow_pickle=False) as fa, np.load(dir_b / name, allow_pickle=False) as fb:
            keys_a, keys_b = set(fa.files), set(fb.files)
            mismatches = 0
            for key in sorted(keys_a ^ keys_b):
                print(f"MISSING KEY {name}:{key}: only in {dir_a if key in keys_a else dir_b}")
                mismatches += 1
            common = sorted(keys_a & keys_b)
            for key in common:
                a, b = fa[key], fb[key]
                if a.dtype != b.dtype or a.shape != b.shape or _bits(a) != _bits(b):
                    print(f"MISMATCH {name}:{key}: {describe(a, b)}")
                    mismatches += 1
            errors = sum(k.endswith("!error") for k in common)
            print(
                f"{name[:-4]}: {len(common)} arrays compared ({len(common) - errors} results, {errors} recorded"
                f" exceptions), {mismatches} mismatches"
            )
            total += len(common)
            bad += mismatches
    print(f"total: {total} arrays compared, {bad} mismatches")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("record", help="record the corpus into OUTDIR (one .npz per run)")
    p.add_argument("outdir", type=Path)
    p.add_argument("--only", default="", help="comma-separated runs: " + ",".join(RUNS))
    p = sub.add_parser("compare", help="compare two recorded corpora bitwise")
    p.add_argument("dir_a", type=Path)
    p.add_argument("dir_b", type=Path)
    p = sub.add_parser("_one", help=argparse.SUPPRESS)
    p.add_argument("run")
    p.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "record":
        return record(args.outdir, [r for r in args.only.split(",") if r])
    if args.cmd == "compare":
        return compare(args.dir_a, args.dir_b)
    try:
        record_one(args.run, args.path)
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
