"""Test helpers: conversions, tolerances and per-framework gradient calls.

Framework-specific code is fine here: tests must drive each framework's own
autodiff to check knotsafe's derivatives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np


def backend_name(xp: ModuleType) -> str:
    name = xp.__name__
    if name.startswith("jax"):
        return "jax"
    if name.startswith("array_api_compat.dask"):
        return "dask"
    return name.split(".")[0]


def has_float64(xp: ModuleType) -> bool:
    if backend_name(xp) == "jax":
        import jax

        return bool(jax.config.read("jax_enable_x64"))
    return True


def dtype_of(xp: ModuleType, name: str) -> Any:
    return getattr(xp, name)


def asarray(xp: ModuleType, a: Any, dtype_name: str = "float64") -> Any:
    """NumPy data on the backend, in the given float dtype."""
    with np.errstate(over="ignore"):  # +-1e300 test queries are +-inf in float32
        return xp.asarray(np.asarray(a, dtype=dtype_name))


def to_numpy(a: Any) -> np.ndarray:
    """Any backend's array as a NumPy array (copies off the device)."""
    if hasattr(a, "detach"):
        a = a.detach().cpu()
    if type(a).__module__.startswith("array_api_strict"):
        import array_api_strict

        a = array_api_strict.asarray(a, device=array_api_strict.Device("CPU_DEVICE"))
        return np.asarray(a._array)
    return np.asarray(a)


def eps_of(dtype_name: str) -> float:
    return float(np.finfo(dtype_name).eps)


@dataclass(frozen=True)
class AutoDiff:
    """Reverse- and forward-mode derivatives of ``f(*args)`` on one framework."""

    name: str
    grad: Callable[[Callable[..., Any], Sequence[Any], Sequence[int]], list[np.ndarray]]
    jacobians: Callable[[Callable[..., Any], Any], tuple[np.ndarray, np.ndarray]]


def _jax_grad(f: Callable[..., Any], args: Sequence[Any], argnums: Sequence[int]) -> list[np.ndarray]:
    import jax

    grads = jax.grad(lambda *a: f(*a).sum(), argnums=tuple(argnums))(*args)
    return [np.asarray(g) for g in grads]


def _jax_jacobians(f: Callable[..., Any], x: Any) -> tuple[np.ndarray, np.ndarray]:
    import jax

    return np.asarray(jax.jacfwd(f)(x)), np.asarray(jax.jacrev(f)(x))


def _torch_grad(f: Callable[..., Any], args: Sequence[Any], argnums: Sequence[int]) -> list[np.ndarray]:
    import torch

    leaves = [a.detach().clone().requires_grad_(i in argnums) for i, a in enumerate(args)]
    out = f(*leaves).sum()
    grads = torch.autograd.grad(out, [leaves[i] for i in argnums], allow_unused=True)
    return [
        np.zeros(tuple(leaves[i].shape)) if g is None else g.detach().numpy()
        for i, g in zip(argnums, grads, strict=True)
    ]


def _torch_jacobians(f: Callable[..., Any], x: Any) -> tuple[np.ndarray, np.ndarray]:
    import torch

    return torch.func.jacfwd(f)(x).numpy(), torch.func.jacrev(f)(x).numpy()


def autodiff_for(xp: ModuleType) -> AutoDiff | None:
    name = backend_name(xp)
    if name == "jax":
        return AutoDiff("jax", _jax_grad, _jax_jacobians)
    if name == "torch":
        return AutoDiff("torch", _torch_grad, _torch_jacobians)
    return None


def central_difference(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, h: np.ndarray | float) -> np.ndarray:
    """Elementwise d f / d x for an elementwise f, by central differences."""
    return (f(x + h) - f(x - h)) / (2 * h)


def interp_jacobians(
    autodiff: AutoDiff, xp: ModuleType, x: np.ndarray, k: np.ndarray, v: np.ndarray, dt: str, **kw: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """d out/d x (diagonal), d out/d knots and d out/d values of ``knotsafe.interp``.

    Forward and reverse mode are both computed and must agree bitwise.
    """
    import knotsafe

    X, K, V = (asarray(xp, a, dt) for a in (x, k, v))
    out = []
    for f, arg in (
        (lambda a: knotsafe.interp(a, K, V, **kw), X),
        (lambda a: knotsafe.interp(X, a, V, **kw), K),
        (lambda a: knotsafe.interp(X, K, a, **kw), V),
    ):
        fwd, rev = autodiff.jacobians(f, arg)
        np.testing.assert_array_equal(fwd, rev)
        out.append(rev.astype(np.float64))
    return np.diagonal(out[0]).copy(), out[1], out[2]
