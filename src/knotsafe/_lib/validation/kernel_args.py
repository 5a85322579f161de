"""Argument checks of the kernel-density method (``method="kernel"``, ``transform="kernel"``).

What needs no data is checked here at once; ``kernel_std``'s values, the
points' spread and the node-grid size are conditions read with the points'
own check (:class:`KernelArgs`), so the points are read once.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import array_api_compat as compat

from knotsafe._lib.kde import cdf as kc
from knotsafe._lib.validation import namespace as _namespace

Array = Any

#: Largest mesh ``bandwidth`` (in units of span / n): span / h = n / bandwidth
#: stays above float32's :func:`knotsafe._lib.kde.cdf.min_span_ratio` (1e-31) for n >= 3.
MAX_MESH_BANDWIDTH = 1e30


def _is_real_number(value: Any) -> bool:
    # bool is an int (numpy's bool_ is no numbers.Real); a string would parse: both are mistakes here.
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_kernel_std(xp: ModuleType, kernel_std: Any, dim: int, dtype: Any, like: Array) -> Array:
    """``kernel_std``: a scalar or one per column, as a (D,) array (reads nothing)."""
    if kernel_std is None:
        raise TypeError(
            "`kernel_std` is required for method='kernel' (the kernel's standard deviation h, in the points' units)"
        )
    message = f"`kernel_std` must be a positive number or one per column, got {kernel_std!r}"
    if compat.is_array_api_obj(kernel_std):
        _, arr = _namespace.resolve({"kernel_std": kernel_std}, xp)
        h = arr["kernel_std"]
    else:
        values = kernel_std if isinstance(kernel_std, (list, tuple)) else [kernel_std]
        if not all(_is_real_number(v) for v in values):
            raise TypeError(message)
        try:
            h = xp.asarray(kernel_std, dtype=dtype, device=compat.device(like))
        except Exception as exc:
            raise TypeError(message) from exc
    if not xp.isdtype(h.dtype, ("real floating", "integral")):
        raise TypeError(f"`kernel_std` must be real, got dtype {h.dtype}")
    h = xp.astype(h, dtype, copy=False)
    if h.ndim == 0:
        h = xp.broadcast_to(h, (dim,))
    if h.ndim != 1 or h.shape[0] != dim:
        raise ValueError(f"`kernel_std` must be a scalar or have shape ({dim},), got {tuple(h.shape)}")
    return h  # its values are checked with the points' (KernelArgs.conditions), in their one read


def check_n_knots(n_knots: Any) -> int | None:
    """``n_knots``: None (the exact inverse) or an integer >= 2 (the table inverse)."""
    return None if n_knots is None else _namespace.check_integer("n_knots", n_knots, 2)


def check_span_ratio(span_ratio: Any) -> tuple[float | None, int | None]:
    """``span_ratio``: None, or a positive finite number; with the static node count it gives."""
    if span_ratio is None:
        return None, None
    if isinstance(span_ratio, bool):
        raise TypeError(f"`span_ratio` must be a positive real number or None, got {span_ratio!r}")
    ratio = _namespace.check_optional_real("span_ratio", span_ratio, positive=True)
    assert ratio is not None
    if not math.isfinite(ratio):
        raise ValueError(
            f"`span_ratio` must be finite (an upper bound on (max - min) / kernel_std), got {span_ratio!r}"
        )
    return ratio, kc.grid_size(ratio, "span_ratio")


@dataclass(frozen=True)
class KernelArgs:
    """The checked arguments of ``create_transforms(method="kernel")``.

    :func:`check_kernel_args` checks what needs no data; ``kernel_std``'s
    values, the points' spread and (without ``span_ratio``) the node count
    from the data span are read with the points' own check, in one read
    (:meth:`conditions`, then :meth:`grid` with what was read).
    """

    hooks: Any  # the namespace's BackendHooks
    h: Array  # (D,) kernel_std in the points' dtype
    n_knots: int | None
    span_ratio: float | None
    span_grid: int | None  # the node count span_ratio gives

    def _ratio(self, xp: ModuleType, spread: Array) -> Array:
        # max over columns of span / h: it sizes the node grid, no gradient.
        return self.hooks.stop_gradient(xp.max(spread / self.h))

    def conditions(self, xp: ModuleType, points: Array) -> tuple[list[tuple[Array, str]], Array | None]:
        """``(failed, message)`` data conditions, and the node-grid cell count to read with them.

        The count is ``ceil(C * ratio)`` on the device: ``C`` is a power of
        two, so the product and its ceiling are exact in any float dtype and
        equal to :func:`knotsafe._lib.kde.cdf.grid_size`'s own ``ceil(C * ratio)``.
        Capped (at ``MAX_GRID``, also for inf and NaN) to fit the verdict's
        integer: a capped count is too large and raises in :meth:`grid`.
        Conditions are checked in order, so each message names the first
        cause: a bad ``kernel_std``, a zero or overflowing spread, a ``kernel_std``
        too large for the kernel CDF's differences to be represented, and a
        ``span_ratio`` below the data's.
        """
        sg = self.hooks.stop_gradient
        lo, hi = sg(xp.min(points, axis=0)), sg(xp.max(points, axis=0))
        spread = hi - lo
        h = sg(self.h)
        smallest = kc.min_span_ratio(xp, points.dtype)
        conditions = [
            (~xp.all((h > 0) & xp.isfinite(h)), "`kernel_std` must be positive and finite"),
            (
                ~xp.all(spread > 0),
                "`points` has a column with zero spread: method='kernel' normalises by F(max) - F(min) of each column",
            ),
            (
                ~xp.all(xp.isfinite(spread)),
                f"`points` has a column whose range max - min overflows {points.dtype}: rescale the points",
            ),
            (
                ~xp.all(spread / h >= smallest),
                f"`kernel_std` is too large for the data range: (max - min) / kernel_std must be at least "
                f"{smallest:.3g} in {points.dtype}, where F(max) - F(min) ~ 0.4 (max - min) / kernel_std is still a "
                "normal floating-point number (the kernel CDF is then the straight line (q - min) / (max - min))",
            ),
        ]
        if self.span_grid is not None:
            if not self.hooks.is_concrete(points):
                # Traced (torch.compile): nothing will be read, and the tables' own
                # coverage flag already makes a column beyond span_ratio NaN.
                return conditions, None
            fits = kc.covers(xp, h, spread, kc.frame(xp, lo, hi, h, self.span_grid))
            conditions.append(
                (
                    ~xp.all(fits),
                    f"`span_ratio`={self.span_ratio!r} is below (max - min) / kernel_std of a column of `points`: "
                    "pass a span_ratio of at least the largest (max - min) / kernel_std",
                )
            )
            return conditions, None
        ratio = self._ratio(xp, spread)
        capped = xp.where((ratio >= 0) & (ratio <= kc.MAX_GRID), ratio, xp.full_like(ratio, kc.MAX_GRID))
        return conditions, xp.ceil(kc.C * capped)

    def grid(self, xp: ModuleType, points: Array, cells: int | None) -> int:
        """Static node count, from ``span_ratio`` or the cell count read with the points."""
        if self.span_grid is not None:
            return self.span_grid
        if cells is None:
            raise ValueError(
                "method='kernel' sizes its node grid from (max - min) / kernel_std of the points, which cannot be "
                "read from traced arrays: pass `span_ratio=` (a static upper bound on it; columns that exceed it "
                "give NaN)"
            )
        if cells + 4 <= kc.MAX_GRID:
            return kc.grid_size(cells / kc.C, "kernel_std")  # exact: ceil(C * cells / C) == cells
        # Too many nodes: read the ratio itself to word the error (the error path may read again).
        spread = xp.max(points, axis=0) - xp.min(points, axis=0)
        return kc.grid_size(float(self._ratio(xp, spread)), "kernel_std")


def check_kernel_args(
    xp: ModuleType, hooks: Any, points: Array, kernel_std: Any, n_knots: Any, span_ratio: Any
) -> KernelArgs:
    """The kernel arguments' checks that read no data (points: validated (N, D))."""
    h = check_kernel_std(xp, kernel_std, points.shape[1], points.dtype, points)
    m = check_n_knots(n_knots)
    ratio, grid = check_span_ratio(span_ratio)
    return KernelArgs(hooks, h, m, ratio, grid)


def check_mesh_kernel(transform: Any, bandwidth: Any, n_knots: Any) -> tuple[float, int | None]:
    """The rectangular mesh's ``transform``, ``bandwidth`` and ``n_knots`` arguments."""
    if transform == "rank":
        if bandwidth != 1.0 or n_knots != 64:
            raise TypeError("`bandwidth` and `n_knots` apply to transform='kernel' only")
        return 1.0, 64
    if transform != "kernel":
        raise ValueError(f"`transform` must be 'rank' or 'kernel', got {transform!r}")
    if not _is_real_number(bandwidth):
        raise TypeError(f"`bandwidth` must be a positive number (in units of span / n), got {bandwidth!r}")
    bw = float(bandwidth)
    if not (bw > 0 and bw < float("inf")):
        raise ValueError(f"`bandwidth` must be positive and finite, got {bandwidth!r}")
    if bw > MAX_MESH_BANDWIDTH:
        raise ValueError(
            f"`bandwidth` must be at most {MAX_MESH_BANDWIDTH:g} (in units of span / n; beyond, the kernel CDF's "
            f"differences leave the floating-point range), got {bandwidth!r}"
        )
    return bw, check_n_knots(n_knots)
