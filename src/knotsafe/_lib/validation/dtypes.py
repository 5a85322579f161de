"""The one dtype rule: result dtype, computation dtype and default integers.

Modelled on scipy's ``xp_result_type(..., force_floating=True)``: the
result dtype of real floating arrays is their promoted dtype; integer and
boolean data promote to the namespace's default floating dtype.  Complex
data is a TypeError naming the argument (knotsafe's functions are defined
on the real line).

Half precision (float16, bfloat16) is *stored* but not *computed* in: the
computation dtype is float32, and results are cast back to the storage
dtype once at the end.  Ranks, slopes ``rise / gap`` and the duplicate
threshold ``8 eps max|knots|`` are then those of float32, so they neither
overflow (float16 tops out at 65,504) nor swallow genuine bins (the
float16 threshold is 0.8 % of the knot range, bfloat16's 6 %).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

import array_api_compat as compat

Array = Any

#: Floating types narrower than this many bits are computed in float32.
_MIN_COMPUTE_BITS = 32


def result_dtype(xp: ModuleType, arrays: Mapping[str, Array]) -> Any:
    """The floating dtype results are returned in (``force_floating=True``).

    Parameters
    ----------
    arrays : mapping of argument name -> array
        Arrays of namespace ``xp``; the names appear in the errors.

    Raises
    ------
    TypeError
        An array is complex, or of a non-numeric dtype.
    """
    for name, a in arrays.items():
        if xp.isdtype(a.dtype, "complex floating"):
            raise TypeError(f"`{name}` is complex ({a.dtype}); knotsafe needs real data (pass the real part)")
        if not xp.isdtype(a.dtype, ("real floating", "integral", "bool")):
            raise TypeError(f"`{name}` must be a real floating or integer array, got dtype {a.dtype}")
    dtype = xp.result_type(*arrays.values())
    if xp.isdtype(dtype, "real floating"):
        return dtype
    return default_dtype(xp, next(iter(arrays.values())), "real floating")


def compute_dtype(xp: ModuleType, dtype: Any) -> Any:
    """The dtype to compute a result of ``dtype`` in: float32 for half precision."""
    if xp.finfo(dtype).bits < _MIN_COMPUTE_BITS:
        return xp.float32
    return dtype


def default_dtype(xp: ModuleType, like: Array, kind: str) -> Any:
    """The namespace's default ``"real floating"`` or ``"integral"`` dtype on ``like``'s device."""
    info = xp.__array_namespace_info__()
    return info.default_dtypes(device=compat.device(like))[kind]


def default_int(xp: ModuleType, like: Array) -> Any:
    """The default integer dtype (int32 on JAX without x64), for indices."""
    return default_dtype(xp, like, "integral")


def check_index_range(xp: ModuleType, dtype: Any, size: int, what: str) -> None:
    """Raise a ValueError when ``size`` entries cannot be addressed by ``dtype``."""
    if size - 1 > int(xp.iinfo(dtype).max):
        raise ValueError(
            f"{what} has {size} entries, more than the index dtype {dtype} can address "
            f"(largest index {int(xp.iinfo(dtype).max)}); use 64-bit indices (JAX: JAX_ENABLE_X64=1)"
        )
