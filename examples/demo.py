"""The duplicate-knot scenario on every installed backend: knotsafe beside the peers.

A singular isothermal sphere traces a 3.5"-radius circular mask (0.05"
pixels, 4x4 over-sampling: 15,380 pixels, 246,080 sub-pixels) to the source
plane.  The sorted traced y coordinates are the knots of the rank transform
``u(q) = interp(q, sorted_y, t)``; the objective is

    L(theta) = sum_i c_i * u(q_i(theta))

over the traced sub-pixels ``q_i``, differentiated with respect to the
Einstein radius ``theta``.  Two grids: "mirror" (exact duplicate knots from
mirror-symmetric rays) and "rotated" (the same rays traced in a rotated frame:
exact duplicates plus 1-2 ulp near-duplicates).

Columns: forward error against numpy.interp; the largest |d u / d q| when the
traced pixels themselves are queried (queries inside near-duplicate gaps, the
failure of the reference report); dL/dtheta by autodiff; and a central finite
difference of the exact (numpy.interp) objective with a step that crosses no
knot or bin boundary.

Run: ``nox -s demo`` (or ``python examples/demo.py`` with knotsafe and the
backends installed).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any

os.environ.setdefault("JAX_ENABLE_X64", "1")

import warnings

import numpy as np

import knotsafe
from knotsafe.testing import circular_mask_grid, jitter_interp, plain_interp, trace_sis

THETA = 1.6
FD_STEP = 1e-9
RADIUS, PIXEL, SUB = 3.5, 0.05, 4
ROTATIONS = {"mirror": 0.0, "rotated": 0.3}

METHODS: dict[str, Callable[..., Any]] = {
    "knotsafe": knotsafe.interp,
    "plain interp": plain_interp,
    "stop_gradient+jitter": jitter_interp,
}


def _ranks_np(
    image: np.ndarray, sub: np.ndarray, theta: float, rot: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    knots = np.sort(trace_sis(image, theta, rotation=rot, xp=np)[:, 0])
    t = np.arange(1, knots.size + 1) / (knots.size + 1)
    q = trace_sis(sub, theta, rotation=rot, xp=np)[:, 0]
    return np.interp(q, knots, t), knots, q


def finite_difference(image: np.ndarray, sub: np.ndarray, c: np.ndarray, rot: float) -> tuple[float, bool]:
    """Central difference of the exact objective, and whether the step is clean.

    The per-query differences are summed, not the two objectives subtracted:
    L is ~1e5 and its ulp would swamp a 2e-9 step.
    """
    up, kp, qp = _ranks_np(image, sub, THETA + FD_STEP, rot)
    um, km, qm = _ranks_np(image, sub, THETA - FD_STEP, rot)
    clean = np.array_equal(np.searchsorted(kp, qp, "right"), np.searchsorted(km, qm, "right"))
    return float(np.sum(c * (up - um)) / (2 * FD_STEP)), clean


def _backends() -> list[tuple[str, Any]]:
    found = []
    for name, module in (
        ("numpy", "numpy"),
        ("array_api_strict", "array_api_strict"),
        ("jax", "jax.numpy"),
        ("torch", "torch"),
    ):
        if importlib.util.find_spec(name.split(".")[0]) is not None:
            found.append((name, importlib.import_module(module)))
    return found


def _grad(backend: str, f: Callable[..., Any], *args: Any) -> list[np.ndarray]:
    """Gradient of a scalar f with respect to each argument."""
    if backend == "jax":
        import jax

        return [np.asarray(g) for g in jax.grad(f, argnums=tuple(range(len(args))))(*args)]
    import torch

    leaves = [a.detach().clone().requires_grad_(True) for a in args]
    grads = torch.autograd.grad(f(*leaves), leaves, allow_unused=True)
    return [np.zeros(tuple(a.shape)) if g is None else g.numpy() for a, g in zip(leaves, grads, strict=True)]


def _to_np(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        return a.detach().numpy()
    if type(a).__module__.startswith("array_api_strict"):
        return np.asarray(a._array)
    return np.asarray(a)


def run_backend(name: str, module: Any, dtype: str, grid: str) -> list[list[str]]:
    import array_api_compat

    xp = array_api_compat.array_namespace(module.asarray([0.0]))
    rot = ROTATIONS[grid]
    image, sub = circular_mask_grid(RADIUS, PIXEL, 1), circular_mask_grid(RADIUS, PIXEL, SUB)
    rng = np.random.default_rng(0)
    c = rng.uniform(0.5, 1.5, sub.shape[0])
    ref_knots = np.sort(trace_sis(image, THETA, rotation=rot, xp=np)[:, 0]).astype(dtype)
    ref_q = trace_sis(sub, THETA, rotation=rot, xp=np)[:, 0].astype(dtype)
    ref_t = (np.arange(1, ref_knots.size + 1) / (ref_knots.size + 1)).astype(dtype)
    ref = np.interp(ref_q.astype(np.float64), ref_knots.astype(np.float64), ref_t.astype(np.float64))
    fd, clean = finite_difference(image, sub, c, rot)
    img, sb, cc = (xp.asarray(a.astype(dtype)) for a in (image, sub, c))
    ranks = xp.asarray(ref_t)
    rows = []
    for method, interp in METHODS.items():
        if method != "knotsafe" and name in ("numpy", "array_api_strict"):
            continue  # no autodiff: the peers only differ from numpy.interp in gradients
        out = interp(xp.asarray(ref_q), xp.asarray(ref_knots), ranks)
        err = float(np.max(np.abs(_to_np(out).astype(np.float64) - ref)))
        if name in ("numpy", "array_api_strict"):
            rows.append([name, dtype, grid, method, f"{err:.1e}", "n/a", "n/a", f"{fd:.7g}", "n/a"])
            continue

        def rank_of_traced(q: Any, k: Any, interp: Callable[..., Any] = interp) -> Any:
            return xp.sum(interp(q, k, ranks))

        traced = xp.asarray(np.sort(trace_sis(image, THETA, rotation=rot, xp=np)[:, 0]).astype(dtype))
        gq, _ = _grad(name, rank_of_traced, traced, traced)

        def objective(theta: Any, interp: Callable[..., Any] = interp) -> Any:
            knots = xp.sort(trace_sis(img, theta, rotation=rot)[:, 0])
            q = trace_sis(sb, theta, rotation=rot)[:, 0]
            return xp.sum(cc * interp(q, knots, ranks))

        (g,) = _grad(name, objective, xp.asarray(np.asarray(THETA, dtype=dtype)))
        rel = abs(float(g) - fd) / abs(fd)
        cells = [f"{err:.1e}", f"{np.max(np.abs(gq)):.3g}", f"{float(g):.7g}", f"{fd:.7g}", f"{rel:.1e}"]
        rows.append([name, dtype, grid, method, *cells])
    if not clean:
        rows[-1][-2] += " (step crossed a boundary)"
    return rows


def main() -> int:
    # The peers pass strided columns to torch.searchsorted, which warns once.
    warnings.filterwarnings("ignore", message=r"torch.searchsorted\(\): input value tensor is non-contiguous")
    header = ["backend", "dtype", "grid", "method", "fwd err", "max abs du/dq", "dL/dtheta", "FD dL/dtheta", "rel err"]
    rows = []
    for name, xp in _backends():
        dtypes = ["float64", "float32"]
        for dtype in dtypes:
            for grid in ROTATIONS:
                rows.extend(run_backend(name, xp, dtype, grid))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) + " |")
    n, k = circular_mask_grid(RADIUS, PIXEL, 1).shape[0], circular_mask_grid(RADIUS, PIXEL, SUB).shape[0]
    print(
        f"\nN = {n} knots, K = {k} queries.  fwd err: max |out - numpy.interp|.  FD: float64 central difference "
        f"(step {FD_STEP:g}) of the exact objective, summed per query.  In float32 the traced coordinates carry "
        "~2e-7 rounding, comparable to the smallest genuine knot gaps (1.2e-7): rounding dominates the float32 "
        "gradient of this objective whatever the method; knotsafe keeps it finite and O(1)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
