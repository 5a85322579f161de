"""The implementations compared, per backend, as ready-to-time callables.

Every ``make_*`` function returns a list of :class:`Impl`: a name and, for
each mode (``"fwd"``, ``"fwd+bwd"``), a zero-argument callable that runs the
whole computation and waits for its result (``block_until_ready`` on JAX), or
None where the peer has no such mode.  All implementations of one case get
the same input arrays.

Gradients (``fwd+bwd``) are taken with respect to every input that the
computation can differentiate: queries, knots and values for ``interp``;
points and queries for the rank transform.  The upstream gradient is all ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import knotsafe
from knotsafe.testing import jitter_interp, plain_interp

MODES = ("fwd", "fwd+bwd")


@dataclass
class Impl:
    name: str
    calls: dict[str, Callable[[], Any] | None] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------- numpy
def numpy_interp(x: np.ndarray, k: np.ndarray, v: np.ndarray) -> list[Impl]:
    return [
        Impl("numpy.interp", {"fwd": lambda: np.interp(x, k, v), "fwd+bwd": None}),
        Impl("knotsafe", {"fwd": lambda: knotsafe.interp(x, k, v), "fwd+bwd": None}),
    ]


def _np_peer_transform(points: np.ndarray, q: np.ndarray) -> np.ndarray:
    n, dim = points.shape
    knots = np.sort(points, axis=0)
    t = np.arange(1, n + 1, dtype=points.dtype) / (n + 1)
    out = [np.interp(q[:, d], knots[:, d], t, left=0.0, right=1.0).astype(q.dtype, copy=False) for d in range(dim)]
    return np.stack(out, axis=1)


def numpy_transform(points: np.ndarray, q: np.ndarray) -> list[Impl]:
    def ks() -> Any:
        return knotsafe.create_transforms(points)[0](q)

    return [
        Impl("numpy.interp", {"fwd": lambda: _np_peer_transform(points, q), "fwd+bwd": None}),
        Impl("knotsafe", {"fwd": ks, "fwd+bwd": None}),
    ]


# ----------------------------------------------------------------------- jax
def _jax_pair(f: Callable[..., Any], args: tuple[Any, ...], argnums: tuple[int, ...]) -> dict[str, Any]:
    import jax

    fwd = jax.jit(f)
    bwd = jax.jit(jax.grad(lambda *a: f(*a).sum(), argnums=argnums))
    return {
        "fwd": lambda: jax.block_until_ready(fwd(*args)),
        "fwd+bwd": lambda: jax.block_until_ready(bwd(*args)),
    }


def jax_interp(x: Any, k: Any, v: Any) -> list[Impl]:
    import jax.numpy as jnp

    a = (x, k, v)
    return [
        Impl("jnp.interp", _jax_pair(lambda x, k, v: jnp.interp(x, k, v), a, (0, 1, 2))),
        Impl("plain", _jax_pair(lambda x, k, v: plain_interp(x, k, v), a, (0, 1, 2))),
        Impl("jitter", _jax_pair(lambda x, k, v: jitter_interp(x, k, v), a, (0, 1, 2))),
        Impl("knotsafe", _jax_pair(lambda x, k, v: knotsafe.interp(x, k, v), a, (0, 1, 2))),
    ]


def _jax_peer_transform(points: Any, q: Any) -> Any:
    import jax.numpy as jnp

    n, dim = points.shape
    knots = jnp.sort(points, axis=0)
    t = jnp.arange(1, n + 1, dtype=points.dtype) / (n + 1)
    return jnp.stack([jnp.interp(q[:, d], knots[:, d], t, left=0.0, right=1.0) for d in range(dim)], axis=1)


def jax_transform(points: Any, q: Any) -> list[Impl]:
    a = (points, q)
    return [
        Impl("jnp.interp", _jax_pair(_jax_peer_transform, a, (0, 1))),
        Impl("knotsafe", _jax_pair(lambda p, q: knotsafe.create_transforms(p)[0](q), a, (0, 1))),
    ]


def jax_searchsorted(x: Any, k: Any) -> list[Impl]:
    """``jnp.searchsorted`` methods (``compare_all`` builds a K x N temporary: left out)."""
    import jax
    import jax.numpy as jnp

    impls = []
    for method in ("scan", "scan_unrolled", "sort"):
        f = jax.jit(lambda k, x, m=method: jnp.searchsorted(k, x, side="right", method=m))
        impls.append(Impl(method, {"fwd": lambda f=f: jax.block_until_ready(f(k, x)), "fwd+bwd": None}))
    return impls


# --------------------------------------------------------------------- torch
def _torch_pair(f: Callable[..., Any], args: tuple[Any, ...], grad_of: tuple[int, ...]) -> dict[str, Any]:
    import torch

    def fwd() -> Any:
        return f(*args)

    leaves = [a.detach().clone().requires_grad_(i in grad_of) for i, a in enumerate(args)]
    wrt = [leaves[i] for i in grad_of]

    def bwd() -> Any:
        out = f(*leaves)
        return torch.autograd.grad(out, wrt, grad_outputs=torch.ones_like(out), allow_unused=True)

    return {"fwd": fwd, "fwd+bwd": bwd}


def _torchinterp1d(x: Any, k: Any, v: Any) -> Any:
    from torchinterp1d import interp1d

    return interp1d(k, v, x)


def torch_interp(x: Any, k: Any, v: Any) -> list[Impl]:
    a = (x, k, v)
    impls = [
        Impl("plain", _torch_pair(lambda x, k, v: plain_interp(x, k, v), a, (0, 1, 2))),
        Impl("jitter", _torch_pair(lambda x, k, v: jitter_interp(x, k, v), a, (0, 1, 2))),
    ]
    try:
        import torchinterp1d  # noqa: F401

        impls.append(Impl("torchinterp1d", _torch_pair(_torchinterp1d, a, (0, 1, 2))))
    except ImportError:
        impls.append(Impl("torchinterp1d", {}, {"fwd": "not installed", "fwd+bwd": "not installed"}))
    impls.append(Impl("knotsafe", _torch_pair(lambda x, k, v: knotsafe.interp(x, k, v), a, (0, 1, 2))))
    return impls


def _torch_peer_transform(points: Any, q: Any) -> Any:
    import torch

    n, dim = points.shape
    knots = torch.sort(points, dim=0).values
    t = torch.arange(1, n + 1, dtype=points.dtype) / (n + 1)
    return torch.stack([plain_interp(q[:, d], knots[:, d].contiguous(), t) for d in range(dim)], dim=1)


def torch_transform(points: Any, q: Any) -> list[Impl]:
    a = (points, q)
    return [
        Impl("plain", _torch_pair(_torch_peer_transform, a, (0, 1))),
        Impl("knotsafe", _torch_pair(lambda p, q: knotsafe.create_transforms(p)[0](q), a, (0, 1))),
    ]


# -------------------------------------------- per-subset gradients
#: Differentiated arguments -> argnums; the lens case (x, knots) first.
SUBSETS: dict[str, tuple[int, ...]] = {
    "x,knots": (0, 1),
    "x": (0,),
    "knots": (1,),
    "values": (2,),
    "x,knots,values": (0, 1, 2),
}


@dataclass
class SubsetGroup:
    """One backend/mode of the per-subset table.

    ``impls``: knotsafe and the peer, one call per subset (the mode is the
    subset name).  ``order2``: knotsafe's first-order gradient of
    ``sum(interp(...) ** 2)`` (``"1st-order"``) and a Hessian-vector product of
    the same loss (``"2nd-order"``), or empty.  ``memory``: in-process peak
    extra bytes per (impl, subset), where the backend can state them without
    running (JAX: the compiled executable's temporary buffers).
    """

    label: str
    backend: str
    peer: str
    impls: list[Impl]
    order2: list[Impl] = field(default_factory=list)
    memory: dict[tuple[str, str], Callable[[], int]] = field(default_factory=dict)
    dtype: str = "float64"


def _loss2(*z: Any) -> Any:
    return (knotsafe.interp(*z) ** 2).sum()


def jax_subsets(x: Any, k: Any, v: Any) -> SubsetGroup:
    """jax.jit(jax.grad) per subset for knotsafe and jnp.interp; knotsafe's
    Hessian-vector product (forward over reverse) beside its gradient."""
    import jax
    import jax.numpy as jnp

    a = (x, k, v)
    impls, memory = [], {}
    for name, f in (("jnp.interp", jnp.interp), ("knotsafe", knotsafe.interp)):
        calls = {}
        for sub, argnums in SUBSETS.items():
            g = jax.jit(jax.grad(lambda *z, f=f: f(*z).sum(), argnums=argnums))
            calls[sub] = lambda g=g: jax.block_until_ready(g(*a))
            memory[(name, sub)] = lambda g=g: _jax_temp_bytes(g, a)
        impls.append(Impl(name, calls))

    first: dict[str, Any] = {}
    second: dict[str, Any] = {}
    for sub, argnums in SUBSETS.items():
        grad = jax.grad(_loss2, argnums=argnums)
        tangents = tuple(jnp.ones_like(a[i]) for i in argnums)

        def hvp(*wrt: Any, argnums: tuple[int, ...] = argnums, grad: Any = grad, tangents: Any = tangents) -> Any:
            def g_of(*w: Any) -> Any:
                full = list(a)
                for i, wi in zip(argnums, w, strict=True):
                    full[i] = wi
                return grad(*full)

            return jax.jvp(g_of, wrt, tangents)[1]

        h, g1 = jax.jit(hvp), jax.jit(grad)
        wrt = tuple(a[i] for i in argnums)
        second[sub] = lambda h=h, wrt=wrt: jax.block_until_ready(h(*wrt))
        first[sub] = lambda g1=g1: jax.block_until_ready(g1(*a))
    order2 = [Impl("1st-order", first), Impl("2nd-order", second)]
    return SubsetGroup("JAX jit", "jax", "jnp.interp", impls, order2, memory)


def _jax_temp_bytes(g: Any, a: tuple[Any, ...]) -> int:
    """Peak extra bytes of a jitted function: its compiled temporary buffers
    (inputs and outputs excluded, the same for every implementation)."""
    stats = g.lower(*a).compile().memory_analysis()
    return int(stats.temp_size_in_bytes)


def torch_subsets(x: Any, k: Any, v: Any, compiled: bool) -> SubsetGroup:
    """Forward + backward per subset, and the forward alone (``"forward"``): eager
    (or torch.compile'd) knotsafe and the searchsorted+gather peer; eager also
    knotsafe's Hessian-vector product (double backward) beside its gradient.
    The label names float32 inputs (float64 is the default)."""
    import torch

    a = (x, k, v)
    if compiled:
        # Every subset and dtype is a compiled variant of the same functions: past Dynamo's recompile
        # limit (8 by default) a call would silently run eagerly.
        config = torch._dynamo.config
        for name in ("recompile_limit", "cache_size_limit"):
            if hasattr(config, name):
                setattr(config, name, max(getattr(config, name), 64))
    dtype = str(x.dtype).removeprefix("torch.")
    suffix = "" if dtype == "float64" else f" {dtype}"
    impls = []
    for name, f in (("plain", plain_interp), ("knotsafe", knotsafe.interp)):
        fn = torch.compile(f) if compiled else f
        calls = {sub: _torch_pair(fn, a, argnums)["fwd+bwd"] for sub, argnums in SUBSETS.items()}
        calls["forward"] = _torch_pair(fn, a, ())["fwd"]
        impls.append(Impl(name, calls))
    if compiled:
        return SubsetGroup("PyTorch torch.compile" + suffix, "torch", "plain (compiled)", impls, dtype=dtype)
    first: dict[str, Any] = {}
    second: dict[str, Any] = {}
    for sub, argnums in SUBSETS.items():
        leaves = [t.detach().clone().requires_grad_(i in argnums) for i, t in enumerate(a)]
        wrt = [leaves[i] for i in argnums]
        ones = [torch.ones_like(w) for w in wrt]

        def g1(leaves: Any = leaves, wrt: Any = wrt) -> Any:
            return torch.autograd.grad(_loss2(*leaves), wrt)

        def hvp(leaves: Any = leaves, wrt: Any = wrt, ones: Any = ones) -> Any:
            g = torch.autograd.grad(_loss2(*leaves), wrt, create_graph=True)
            return torch.autograd.grad(g, wrt, grad_outputs=ones, allow_unused=True)

        first[sub], second[sub] = g1, hvp
    order2 = [Impl("1st-order", first), Impl("2nd-order", second)]
    return SubsetGroup("PyTorch eager" + suffix, "torch", "plain", impls, order2, dtype=dtype)


def numpy_forward(x: Any, k: Any, v: Any) -> SubsetGroup:
    """NumPy has no gradient: the forward row of the per-subset table."""
    impls = [
        Impl("numpy.interp", {"forward": lambda: np.interp(x, k, v)}),
        Impl("knotsafe", {"forward": lambda: knotsafe.interp(x, k, v)}),
    ]
    return SubsetGroup("NumPy", "numpy", "numpy.interp", impls)
