"""Data checks: each reads its input's values at most once.

Reading array values on the host is a device-to-host synchronisation on an
accelerator, so every data-dependent check of one input is folded into a
single 0-d integer *verdict* computed on the device and read once by
:func:`read_verdict` (the one place that reads).  Only when the verdict
reports a problem is more read, to word the error.

Checks are skipped (nothing is read, nothing raised) where the data cannot be
inspected: traced or lazy arrays (``jax.jit``, Dask) and transforms that
forbid reading values (``torch.func.vmap``).  The checks of the input
arrays then return their verdict as a 0-d boolean array (True: the data is
bad), which the public functions use to turn every output into NaN
(:func:`poison`) instead of returning a plausible wrong number.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

from knotsafe._lib._dtypes import default_int
from knotsafe._lib._registry import hooks_for

Array = Any

#: The verdict of a check that passed.
_PASSED = -1


def read_verdict(xp: ModuleType, verdict: Array) -> int | None:
    """``int(verdict)``, or None where the data cannot be read now."""
    if not hooks_for(xp).is_concrete(verdict):
        return None
    try:
        return int(verdict)
    except Exception:  # torch.func transforms raise on data access
        return None


def fails(xp: ModuleType, condition: Array) -> bool:
    """True when ``condition`` can be read and is not true everywhere.

    Reads as the call site means it: ``if fails(xp, knots[1:] >= knots[:-1]):
    raise ...``.  Unreadable (traced) data never fails.
    """
    verdict = xp.astype(xp.all(condition), default_int(xp, condition))
    return read_verdict(xp, verdict) == 0


def check_rows(
    xp: ModuleType,
    name: str,
    bad: Array,
    problem: str,
    conditions: Sequence[tuple[Array, str]] = (),
) -> Array | None:
    """Raise a ValueError if any entry of ``bad`` (shape (N,), bool) is True.

    The message says how many rows are bad and the first one:
    ``"`{name}` has {count} {problem}; the first is row {row}"``.
    ``conditions`` are further ``(failed, message)`` pairs of 0-d booleans,
    checked in order once the rows pass.  One read in all when nothing fails.

    Returns None when checked, or the 0-d boolean "bad data" verdict when
    the data could not be read (under tracing).
    """
    int_dtype = default_int(xp, bad)
    bad_int = xp.astype(bad, int_dtype)
    verdict = xp.where(xp.any(bad), xp.argmax(bad_int), xp.full_like(xp.argmax(bad_int), _PASSED))
    for k, (failed, _) in enumerate(conditions):
        code = xp.full_like(verdict, _PASSED - 1 - k)
        verdict = xp.where((verdict == _PASSED) & failed, code, verdict)
    found = read_verdict(xp, verdict)
    if found is None:
        return verdict != _PASSED
    if found == _PASSED:
        return None
    if found >= 0:
        count = int(xp.sum(bad_int))  # the error path may read again
        raise ValueError(f"`{name}` has {count} {problem}; the first is row {found}")
    raise ValueError(conditions[_PASSED - 1 - found][1])


def check_finite_points(
    xp: ModuleType, name: str, points: Array, conditions: Sequence[tuple[Array, str]] = ()
) -> Array | None:
    """A 2-D point array must be free of NaN and inf (one read; see :func:`check_rows`)."""
    bad = xp.any(~xp.isfinite(points), axis=1)
    return check_rows(xp, name, bad, "row(s) with NaN or inf", conditions)


def check_weights(xp: ModuleType, name: str, weights: Array, n: int) -> Array | None:
    """A weight vector of shape (n,): finite, non-negative, not all zero (one read; see :func:`check_rows`)."""
    if weights.ndim != 1 or weights.shape[0] != n:
        raise ValueError(f"`{name}` must have shape ({n},), one weight per point, got {tuple(weights.shape)}")
    bad = ~(xp.isfinite(weights) & (weights >= 0))
    all_zero = ~xp.any(weights > 0)
    return check_rows(
        xp, name, bad, "row(s) that are negative, NaN or inf", [(all_zero, f"`{name}` must not all be zero")]
    )


def any_bad(verdicts: Sequence[Array | None]) -> Array | None:
    """The unread verdicts of :func:`check_rows` combined (None if all were read)."""
    flags = [v for v in verdicts if v is not None]
    if not flags:
        return None
    out = flags[0]
    for f in flags[1:]:
        out = out | f
    return out


def poison(xp: ModuleType, bad: Array | None, out: Array) -> Array:
    """``out``, or NaN everywhere if the unread verdict ``bad`` is True (under tracing)."""
    if bad is None:
        return out
    return xp.where(bad, xp.full_like(out, float("nan")), out)
