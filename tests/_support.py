"""Test helpers: conversions, tolerances and per-framework gradient calls.

Framework-specific code is fine here: tests must drive each framework's own
autodiff to check knotsafe's derivatives.  :class:`AutoDiff` is also the
conformance suite's autodiff driver (``conformance/_backends.py``).
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tests import backend_table


def selected(name: str) -> bool:
    """Whether this session runs the tests of backend ``name`` that are not parametrised by ``xp``.

    True when the framework is installed and ``KNOTSAFE_TEST_BACKENDS`` (if set) names it.  A
    shared environment has frameworks a session does not test (the PyTorch session's has JAX);
    such a test runs once, in its own backend's session, and every one of them in a plain
    ``pytest`` run.
    """
    if not backend_table.installed(name):
        return False
    wanted = os.environ.get("KNOTSAFE_TEST_BACKENDS")
    return not wanted or name in {w.strip() for w in wanted.split(",")}


def backend_module(name: str, module: str | None = None) -> Any:
    """``pytest.importorskip`` for a backend's test that is not parametrised by ``xp``:
    also skips in a session that does not select ``name`` (:func:`selected`)."""
    if not selected(name):
        pytest.skip(f"runs in the {name} session (KNOTSAFE_TEST_BACKENDS, installed frameworks)")
    return importlib.import_module(module or backend_table.by_name(name).module)


def only_in_session_of(*names: str) -> pytest.MarkDecorator:
    """Skip mark: the test runs where every backend in ``names`` is :func:`selected`."""
    missing = [n for n in names if not selected(n)]
    return pytest.mark.skipif(bool(missing), reason=f"runs in the session of {', '.join(missing)}")


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


def unreadable(xp: ModuleType, f: Callable[..., Any]) -> Callable[..., np.ndarray]:
    """``f`` run where its inputs' values cannot be read (jax.jit, torch.func.vmap over a batch of one, lazy
    Dask), returning NumPy; skips the test on backends whose arrays can always be read."""
    name = backend_name(xp)
    if name == "jax":
        import jax

        jitted = jax.jit(f)
        return lambda *a: to_numpy(jitted(*a))
    if name == "torch":
        import torch

        return lambda *a: to_numpy(torch.func.vmap(f)(*(t[None] for t in a))[0])
    if name == "dask":
        return lambda *a: to_numpy(f(*a))  # lazy: knotsafe builds the graph without computing
    pytest.skip(f"{name} arrays can always be read")


def eps_of(dtype_name: str) -> float:
    return float(np.finfo(dtype_name).eps)


class AutoDiff:
    """Derivatives of ``f(*args)`` through one framework's own autodiff.

    The one autodiff driver of the test suite and the conformance suite
    (``conformance/_backends.Driver.autodiff``): reverse mode (:meth:`grad`,
    ``jacobian(mode="rev")``), forward mode (``jacobian(mode="fwd")``) and
    per-example gradients (:meth:`vmap_grad`).  Results come back as NumPy
    arrays in the arguments' dtype.
    """

    name: str

    def grad(self, f: Callable[..., Any], args: Sequence[Any], argnums: Sequence[int]) -> list[np.ndarray]:
        """Gradients of ``sum(f(*args))`` with respect to ``args[i]`` for ``i`` in ``argnums`` (reverse mode)."""
        raise NotImplementedError

    def jacobian(self, f: Callable[..., Any], args: Sequence[Any], argnum: int, mode: str) -> np.ndarray:
        """Jacobian of the 1-D ``f(*args)`` with respect to the 1-D ``args[argnum]``.

        ``mode="rev"``: jacrev (vector-Jacobian products); ``mode="fwd"``:
        jacfwd (Jacobian-vector products).
        """
        raise NotImplementedError

    def jacobians(self, f: Callable[..., Any], x: Any) -> tuple[np.ndarray, np.ndarray]:
        """Forward- and reverse-mode Jacobians of the 1-D ``f(x)`` (to compare the two modes)."""
        return self.jacobian(f, (x,), 0, "fwd"), self.jacobian(f, (x,), 0, "rev")

    def vmap(self, f: Callable[..., Any]) -> Callable[..., Any]:
        """``f`` mapped over the leading axis of every argument."""
        raise NotImplementedError

    def vmap_grad(self, f: Callable[..., Any], argnums: Sequence[int]) -> Callable[..., Any]:
        """Per-example gradients of ``sum(f(...))`` under vmap (framework arrays)."""
        raise NotImplementedError


class _JaxAutoDiff(AutoDiff):
    name = "jax"

    def grad(self, f: Callable[..., Any], args: Sequence[Any], argnums: Sequence[int]) -> list[np.ndarray]:
        import jax

        grads = jax.grad(lambda *a: f(*a).sum(), argnums=tuple(argnums))(*args)
        return [np.asarray(g) for g in grads]

    def jacobian(self, f: Callable[..., Any], args: Sequence[Any], argnum: int, mode: str) -> np.ndarray:
        import jax

        jac = jax.jacrev if mode == "rev" else jax.jacfwd
        return np.asarray(jac(f, argnums=argnum)(*args))

    def vmap(self, f: Callable[..., Any]) -> Callable[..., Any]:
        import jax

        return jax.vmap(f)

    def vmap_grad(self, f: Callable[..., Any], argnums: Sequence[int]) -> Callable[..., Any]:
        import jax

        return jax.vmap(jax.grad(lambda *a: f(*a).sum(), argnums=tuple(argnums)))


class _TorchAutoDiff(AutoDiff):
    name = "torch"

    def grad(self, f: Callable[..., Any], args: Sequence[Any], argnums: Sequence[int]) -> list[np.ndarray]:
        import torch

        leaves = [a.detach().clone().requires_grad_(i in argnums) for i, a in enumerate(args)]
        out = f(*leaves).sum()
        grads = torch.autograd.grad(out, [leaves[i] for i in argnums], allow_unused=True)
        return [
            np.zeros(tuple(leaves[i].shape), dtype=str(leaves[i].dtype).removeprefix("torch."))
            if g is None
            else g.detach().cpu().numpy()
            for i, g in zip(argnums, grads, strict=True)
        ]

    def jacobian(self, f: Callable[..., Any], args: Sequence[Any], argnum: int, mode: str) -> np.ndarray:
        import torch

        jac = torch.func.jacrev if mode == "rev" else torch.func.jacfwd
        return np.asarray(jac(f, argnums=argnum)(*args).detach().cpu().numpy())

    def vmap(self, f: Callable[..., Any]) -> Callable[..., Any]:
        import torch

        return torch.func.vmap(f)

    def vmap_grad(self, f: Callable[..., Any], argnums: Sequence[int]) -> Callable[..., Any]:
        import torch

        return torch.func.vmap(torch.func.grad(lambda *a: f(*a).sum(), argnums=tuple(argnums)))


#: The drivers, by framework (``backend_name``).
AUTODIFF: dict[str, AutoDiff] = {"jax": _JaxAutoDiff(), "torch": _TorchAutoDiff()}


def autodiff_for(xp: ModuleType) -> AutoDiff | None:
    """The autodiff driver of ``xp``'s framework, or None (no autodiff)."""
    return AUTODIFF.get(backend_name(xp))


def central_difference(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, h: np.ndarray | float) -> np.ndarray:
    """Elementwise d f / d x for an elementwise f, by central differences."""
    return (f(x + h) - f(x - h)) / (2 * h)


def central_difference_gradient(
    f: Callable[[np.ndarray], float], w: np.ndarray, h: float
) -> tuple[np.ndarray, np.ndarray]:
    """d f / d w_i by central differences, and a bound on their error.

    The truncation error of a central difference is ~ h^2 f'''/6; the
    difference of the estimates at h and 2h is 3x that (the 2h estimate has 4x
    the error), so |D(2h) - D(h)| bounds the truncation of D(h).  Rounding of
    the two evaluations adds <= 2 eps_f / (2h), with eps_f the evaluation's
    own rounding, bounded by 64 eps sum|f terms| (a few dozen roundings each).
    """
    g, bound = np.empty(w.size), np.empty(w.size)
    for i in range(w.size):
        e = np.zeros_like(w)
        e[i] = 1.0
        d1 = (f(w + h * e) - f(w - h * e)) / (2 * h)
        d2 = (f(w + 2 * h * e) - f(w - 2 * h * e)) / (4 * h)
        g[i] = d1
        bound[i] = abs(d2 - d1) + 64 * np.finfo(np.float64).eps * abs(f(w)) / h
    return g, bound


def cast_case(case: Any, dtype_name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Queries, knots and values of a :func:`knotsafe.testing.knot_cases` case in ``dtype_name``.

    float32 takes the float32 variant of the case, whose near-duplicates are one float32 ulp apart.
    """
    if dtype_name == "float32":
        case = _knot_cases_32()[case.name]
    with np.errstate(over="ignore"):  # +-1e300 queries become +-inf in float32, still out of range
        return tuple(np.asarray(a, dtype=dtype_name) for a in (case.queries, case.knots, case.values))  # type: ignore[return-value]


@functools.cache
def _knot_cases_32() -> dict[str, Any]:
    from knotsafe.testing import knot_cases

    return {c.name: c for c in knot_cases(dtype=np.float32)}


def bin_index(k: np.ndarray, x: np.ndarray) -> np.ndarray:
    """numpy.interp's bin ``[k_j, k_j+1)`` of each query, clipped to the first and the last bin."""
    return np.clip(np.searchsorted(k, x, side="right") - 1, 0, max(k.size - 2, 0))


def interior(k: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Queries in ``[k0, k_last)``, where the interpolant has a slope."""
    return (x >= k[0]) & (x < k[-1])


def points_with_duplicate_rows(rng: np.random.Generator, n: int = 40) -> np.ndarray:
    """(n, 2) normal points whose rows 5 to 11 repeat row 0: duplicate knots in both columns."""
    pts = rng.normal(size=(n, 2))
    pts[5:12] = pts[0]
    return pts


def small_lens_grid(xp: ModuleType | None = None, dtype: str = "float64") -> tuple[Any, Any]:
    """A small traced lens grid (data and over-sampled points): NumPy data, or arrays of ``xp``."""
    from knotsafe.testing import lens_grid

    data, over = lens_grid(radius=0.8, pixel_scale=0.1, sub_size=2, rotation=0.3)
    if xp is None:
        return data.astype(dtype), over.astype(dtype)
    return asarray(xp, data, dtype), asarray(xp, over, dtype)


@functools.cache
def kernel_points(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points (120, 2) for the kernel-density tests: a normal column and a skewed one with ties; positive weights."""
    n = 120
    rng = np.random.default_rng(seed)
    p = np.stack([rng.normal(size=n), np.round(rng.exponential(size=n) * 3.0, 2)], axis=1)
    w = rng.uniform(0.1, 2.0, size=n)
    return p, w


def exact_kernel_transform(xp: ModuleType, points: Any, weights: Any, h: Any, q: Any) -> Any:
    """The exact kernel transform (a sum over every point) in JAX's or PyTorch's own operations.

    The autodiff reference of the kernel method: its derivatives are the framework's, not knotsafe's.
    """
    if backend_name(xp) == "jax":
        from jax.scipy.special import ndtr
    else:
        from torch.special import ndtr  # type: ignore[no-redef]
    w = weights / xp.sum(weights)
    cols = []
    for d in range(points.shape[1]):
        pd = points[:, d]
        lo, hi = xp.min(pd), xp.max(pd)

        def cdf(x: Any, pd: Any = pd, d: int = d) -> Any:
            return xp.sum(w[None, :] * ndtr((x[:, None] - pd[None, :]) / h[d]), axis=1)

        ends = cdf(xp.stack([lo, hi]))
        cols.append(xp.clip((cdf(q[:, d]) - ends[0]) / (ends[1] - ends[0]), 0.0, 1.0))
    return xp.stack(cols, axis=1)


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


#: Marks for the Dask-only test files: they run in the dask session (or when no
#: backend list is set), with Dask's rechunking warnings silenced.
DASK_SESSION_MARKS = [
    pytest.mark.filterwarnings("ignore::dask.array.core.PerformanceWarning"),
    only_in_session_of("dask"),
]
