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
    return BackendHooks("numpy", forward=_forward, scatter_add=_scatter_add, erf=_erf)
