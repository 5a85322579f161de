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

from knotsafe._lib.backends.registry import hooks_for
from knotsafe._lib.validation.dtypes import default_int

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


def check_all(xp: ModuleType, condition: Array, message: str) -> Array | None:
    """Raise ``ValueError(message)`` when ``condition`` is not true everywhere (one read).

    Returns None when checked, or the unread 0-d boolean "bad data" verdict
    where the data cannot be read (under tracing, on lazy arrays), for
    :func:`poison`.
    """
    ok = xp.all(condition)
    found = read_verdict(xp, xp.astype(ok, default_int(xp, ok)))
    if found is None:
        return ~ok
    if found == 0:
        raise ValueError(message)
    return None


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
    return check_rows_and_count(xp, name, bad, problem, conditions)[0]


def check_rows_and_count(
    xp: ModuleType,
    name: str,
    bad: Array,
    problem: str,
    conditions: Sequence[tuple[Array, str]] = (),
    count: Array | None = None,
) -> tuple[Array | None, int | None]:
    """:func:`check_rows`, and in the same read a size the caller needs from the data.

    ``count`` is a 0-d integer array, ``0 <= count < 2**30`` (the caller
    clamps it), for example a grid size from the data span.  A passing
    verdict carries it below the condition codes, so the checks and the
    size cost one read.  Returns ``(unread verdict or None, count)``;
    ``count`` is None where the data could not be read or none was asked.
    """
    int_dtype = default_int(xp, bad)
    bad_int = xp.astype(bad, int_dtype)
    first = xp.argmax(bad_int)
    clear = ~xp.any(bad)
    # Codes: a bad row's index (>= 0); _PASSED; condition k: _PASSED - 1 - k;
    # passed with a count: below the lowest condition code.
    lowest = _PASSED - len(conditions)
    passed = xp.full_like(first, _PASSED) if count is None else (lowest - 1) - xp.astype(count, int_dtype)
    verdict = xp.where(clear, passed, first)
    for k, (failed, _) in enumerate(conditions):
        verdict = xp.where(clear & failed, xp.full_like(verdict, _PASSED - 1 - k), verdict)
        clear = clear & ~failed
    found = read_verdict(xp, verdict)
    if found is None:
        return ~clear, None
    if found == _PASSED:
        return None, None
    if found < lowest:
        return None, (lowest - 1) - found
    if found >= 0:
        count_bad = int(xp.sum(bad_int))  # the error path may read again
        raise ValueError(f"`{name}` has {count_bad} {problem}; the first is row {found}")
    raise ValueError(conditions[_PASSED - 1 - found][1])


def check_finite_points(
    xp: ModuleType, name: str, points: Array, conditions: Sequence[tuple[Array, str]] = ()
) -> Array | None:
    """A 2-D point array must be free of NaN and inf (one read; see :func:`check_rows`)."""
    return check_rows(xp, name, _non_finite_rows(xp, points), "row(s) with NaN or inf", conditions)


def check_points_and_count(
    xp: ModuleType, name: str, points: Array, conditions: Sequence[tuple[Array, str]], count: Array | None
) -> tuple[Array | None, int | None]:
    """:func:`check_finite_points` with a size read in the same read (see :func:`check_rows_and_count`)."""
    return check_rows_and_count(xp, name, _non_finite_rows(xp, points), "row(s) with NaN or inf", conditions, count)


def _non_finite_rows(xp: ModuleType, points: Array) -> Array:
    return xp.any(~xp.isfinite(points), axis=1)


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
    # A 0-d NaN on the verdict's device, broadcast by `where` (on Dask, no NaN chunk per output chunk).
    return xp.where(bad, xp.full_like(bad, float("nan"), dtype=out.dtype), out)
