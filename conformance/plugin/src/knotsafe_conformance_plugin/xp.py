"""array-api-strict under its own name: a minimal third-party array namespace.

Every function of ``array_api_strict`` is re-exported with its array results
re-classed as :class:`Array`, a subclass of array-api-strict's array whose
``__array_namespace__`` returns this module.  Devices, dtypes, flags and the
API version are array-api-strict's.
"""

from __future__ import annotations

import functools
import sys
import types
from typing import Any

import array_api_strict as _strict

_StrictArray = type(_strict.asarray(0.0))
_this = sys.modules[__name__]


class Array(_StrictArray):  # type: ignore[misc, valid-type]
    """An array-api-strict array that belongs to this namespace."""

    __slots__ = ()

    def __array_namespace__(self, /, *, api_version: str | None = None) -> types.ModuleType:
        if api_version is not None:
            # Same versions as array-api-strict; asking for one sets it, as there.
            _StrictArray.__array_namespace__(self, api_version=api_version)
        return _this

    def __repr__(self) -> str:
        return "plugin." + super().__repr__()


def _wrap(obj: Any) -> Any:
    """Re-class array results (also inside tuples, named tuples and lists)."""
    if isinstance(obj, _StrictArray):
        return obj if isinstance(obj, Array) else Array._new(obj._array, device=obj.device)
    if isinstance(obj, tuple):
        items = [_wrap(o) for o in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
    if isinstance(obj, list):
        return [_wrap(o) for o in obj]
    return obj


def _lift(fn: Any) -> Any:
    @functools.wraps(fn)
    def lifted(*args: Any, **kwargs: Any) -> Any:
        return _wrap(fn(*args, **kwargs))

    return lifted


# Operators and methods: array-api-strict returns its own class from some of
# them (e.g. after promoting a 0-d operand), so re-class every array result.
_METHODS = [
    name
    for name, attr in vars(_StrictArray).items()
    if callable(attr)
    and not isinstance(attr, (classmethod, staticmethod))
    and name not in {"__new__", "__init__", "__array_namespace__", "__repr__", "__reduce__", "__dlpack__"}
    and name not in {"__dlpack_device__", "__bool__", "__int__", "__float__", "__complex__", "__index__", "__len__"}
    and (name.startswith("__") or not name.startswith("_"))
]
for _name in _METHODS:
    setattr(Array, _name, _lift(getattr(_StrictArray, _name)))
for _name in ("T", "mT"):
    setattr(Array, _name, property(lambda self, _n=_name: _wrap(getattr(_StrictArray, _n).fget(self))))

__all__: list[str] = []
for _name in _strict.__all__:
    if _name.startswith("__"):
        continue  # __array_api_version__ follows array-api-strict's flags: see __getattr__
    _obj = getattr(_strict, _name)
    globals()[_name] = _lift(_obj) if isinstance(_obj, types.FunctionType) else _obj
    __all__.append(_name)

__array_namespace_info__ = _strict.__array_namespace_info__
__all__ += ["Array", "__array_namespace_info__"]


def __getattr__(name: str) -> Any:
    # __array_api_version__ and the optional extensions change with
    # array_api_strict.set_array_api_strict_flags.
    if name == "__array_api_version__" or name in {"linalg", "fft"}:
        return getattr(_strict, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
