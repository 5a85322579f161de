"""Dask hooks: gathers and scans on one block, so the task graph stays small.

Dask builds one task per pair of chunks when it gathers with a chunked
integer index (``a[index]`` with ``a`` in C chunks and ``index`` in Q chunks
is C x Q tasks plus an aggregation), and a shifted sum ``a + concat([pad,
a[:-k]])`` unifies two chunkings into their union, so every level of a
log-depth scan doubles the chunk count.  The arrays knotsafe gathers from
and scans (sorted knots and values, kernel node tables) are small next to
the queries, so they are rechunked to one block; the queries keep their
chunks and the work stays parallel over them.
"""

from __future__ import annotations

from typing import Any

from knotsafe._lib.backends.hooks import BackendHooks, generic_take


def _consolidate(a: Any) -> Any:
    return a.rechunk(-1)


def _take(xp: Any, a: Any, index: Any) -> Any:
    return generic_take(xp, _consolidate(a), index)


def make_hooks() -> BackendHooks:
    return BackendHooks("dask", take=_take, consolidate=_consolidate)
