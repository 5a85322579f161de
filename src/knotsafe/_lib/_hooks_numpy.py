"""NumPy hooks: ``numpy.interp`` as the native forward pass, ``bincount`` scatter."""

from __future__ import annotations

from typing import Any

import numpy as np

from knotsafe._lib._hooks import BackendHooks


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


def make_hooks() -> BackendHooks:
    return BackendHooks("numpy", forward=_forward, scatter_add=_scatter_add)
