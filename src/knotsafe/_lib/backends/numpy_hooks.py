"""NumPy hooks: ``numpy.interp`` as the native forward pass, ``bincount`` scatter."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from knotsafe._lib.backends.hooks import BackendHooks, generic_erf

_scipy_erf: Any = None


def _forward(x: Any, knots: Any, values: Any, left: float | None, right: float | None) -> Any:
    # numpy.interp computes in float64; float32 callers get it rounded once.
    out = np.interp(x, knots, values, left=left, right=right)
    return out.astype(np.result_type(x, knots, values), copy=False)


def _searchsorted(xp: Any, knots: Any, x: Any) -> Any:
    if knots.ndim == 1:
        return np.searchsorted(knots, x, side="right")
    # Rows in one search: the key (row, value) as the complex number row + i value.
    # NumPy orders complex numbers without NaN lexicographically, so the
    # flattened keys of the sorted rows are sorted, and a query's count of keys
    # <= (r, x) is r * L plus the count in its own row: exact, with no
    # arithmetic on the values.  (Knots are never NaN here: NumPy's are always
    # checked.)  A NaN query searches as +inf: it counts its whole row, as
    # numpy.searchsorted counts every number below NaN.
    rows, n = knots.shape
    base = np.arange(rows)[:, None]
    keys = np.empty(knots.shape, dtype=np.complex128)
    keys.real, keys.imag = base, knots
    queries = np.empty(x.shape, dtype=np.complex128)
    queries.real, queries.imag = base, np.where(np.isnan(x), np.inf, x)
    return np.searchsorted(keys.ravel(), queries.ravel(), side="right").reshape(x.shape) - base * n


def _take(xp: Any, a: Any, index: Any) -> Any:
    if a.ndim == 1:
        return a.take(index)
    return np.take_along_axis(a, index, axis=-1)


def _scatter_add(xp: Any, size: int, index: Any, src: Any) -> Any:
    if src.dtype.kind == "f":
        return np.bincount(index, weights=src, minlength=size).astype(src.dtype, copy=False)
    out = np.zeros(size, dtype=src.dtype)
    np.add.at(out, index, src)
    return out


def _erf(xp: Any, x: Any) -> Any:
    # SciPy is optional: imported on first use, never at `import knotsafe`.
    global _scipy_erf
    if _scipy_erf is None:
        try:
            _scipy_erf = importlib.import_module("scipy.special").erf
        except ImportError:
            _scipy_erf = False
    if _scipy_erf is False:
        return generic_erf(xp, x)
    return _scipy_erf(x)


def make_hooks() -> BackendHooks:
    return BackendHooks(
        "numpy", forward=_forward, scatter_add=_scatter_add, erf=_erf, searchsorted=_searchsorted, take=_take
    )
