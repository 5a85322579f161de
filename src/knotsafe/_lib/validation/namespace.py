"""Namespace resolution and the checks of non-array arguments.

Only public functions call these (once per call); the kernels they hand
over to take resolved arrays.  Data checks live in :mod:`._checks`, the
dtype rule in :mod:`._dtypes`.
"""

from __future__ import annotations

import contextlib
import importlib
import operator
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

import array_api_compat as compat

from knotsafe._lib.backends.registry import hooks_for
from knotsafe._lib.rule import KNOT_GRAD_MODES

Array = Any
_T = TypeVar("_T")


# --------------------------------------------------------------------------
# array_api_compat's type checks, safe while another thread imports a framework
# --------------------------------------------------------------------------
#
# array_api_compat recognises arrays by looking up ``sys.modules["torch"].Tensor``
# (and jax.Array, cupy.ndarray, ...).  While another thread is importing torch
# for the first time the module is in sys.modules but only partly executed, so
# that lookup raises AttributeError ("partially initialized module 'torch'"),
# even for arrays that have nothing to do with torch.  The results are cached
# per array type once they succeed, so the failure is confined to first use.
# We wait for the imports in flight (the import system's own module lock) and
# try again, and run the checks the kernels use later (device, laziness) here,
# under the same guard, the first time a type is seen.

_ATTEMPTS = 3
_seen_types: set[type] = set()


def _wait_for_imports() -> bool:
    """Block until modules other threads are importing have finished; True if any were."""
    waited = False
    for name, module in list(sys.modules.items()):
        if getattr(getattr(module, "__spec__", None), "_initializing", False):
            # import_module waits on the module lock of a module that another
            # thread is executing (importlib._bootstrap._find_and_load).
            # If the other thread's import fails, its error is its own.
            with contextlib.suppress(Exception):
                importlib.import_module(name)
            waited = True
    return waited


def compat_call(fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(*args)`` for an ``array_api_compat`` function, retried after concurrent imports finish."""
    for _ in range(_ATTEMPTS - 1):
        try:
            return fn(*args)
        except AttributeError:
            if not _wait_for_imports():
                raise
    return fn(*args)


def _warm(a: Any) -> None:
    """Run (and so cache) the type checks the kernels use on ``a``'s type."""
    cls = type(a)
    if cls in _seen_types:
        return
    try:
        compat_call(compat.device, a)
        compat_call(compat.is_lazy_array, a)
    except Exception:  # e.g. a tracer without a device: nothing cached, try next time
        return
    # No lock: set.add is atomic (the GIL, or the set's own lock on
    # free-threaded builds), and torch.compile cannot trace a lock.
    _seen_types.add(cls)


def array_namespace(*arrays: Any) -> ModuleType:
    """``array_api_compat.array_namespace``, safe during concurrent framework imports."""
    ns: ModuleType = compat_call(compat.array_namespace, *arrays)
    for a in arrays:
        _warm(a)
    return ns


def _library(a: Any) -> str:
    name: str = array_namespace(a).__name__
    return name.removeprefix("array_api_compat.").split(".")[0]


def namespace_of(xp: Any) -> ModuleType:
    """The array-API namespace for a user-supplied ``xp``.

    Accepts a compatible namespace (``array_api_strict``, ``jax.numpy``) or a
    plain library module (``numpy``, ``torch``, ``cupy``) that
    ``array_api_compat`` wraps.
    """
    if not hasattr(xp, "asarray"):
        raise TypeError(f"`xp` must be an array namespace such as numpy, jax.numpy or torch, got {xp!r}")
    return array_namespace(xp.asarray(0.0))


def resolve(arrays: dict[str, Any], xp: Any = None) -> tuple[ModuleType, dict[str, Array]]:
    """Find the namespace of ``arrays`` (name -> array or None) and convert them.

    With ``xp=None`` all arrays must come from one library; mixing two raises
    a TypeError naming both arguments and libraries.  With ``xp`` given,
    NumPy arrays and Python data are converted with ``xp.asarray`` and an
    array of any other library is a TypeError.
    """
    present = {k: v for k, v in arrays.items() if v is not None}
    array_args = {k: v for k, v in present.items() if compat_call(compat.is_array_api_obj, v)}
    if xp is not None:
        ns = namespace_of(xp)
        for name, a in array_args.items():
            if array_namespace(a) is not ns and not compat_call(compat.is_numpy_array, a):
                raise TypeError(
                    f"`{name}` is a {_library(a)} array but xp is {ns.__name__}; "
                    "pass arrays of one library (NumPy arrays are converted)"
                )
    elif not array_args:
        names = ", ".join(f"`{k}`" for k in present)
        raise TypeError(f"{names}: expected arrays; pass xp=... to interpret Python data")
    else:
        libs: dict[str, str] = {}
        for name, a in array_args.items():
            try:
                libs.setdefault(_library(a), name)
            except TypeError as exc:
                raise TypeError(f"`{name}`: {exc}") from exc
        if len(libs) > 1:
            (lib1, arg1), (lib2, arg2), *_ = libs.items()
            raise TypeError(
                f"arrays from two libraries in one call: `{arg1}` is a {lib1} array and `{arg2}` is a {lib2} array"
            )
        ns = array_namespace(*array_args.values())
    _check_layouts(ns, {k: a for k, a in array_args.items() if array_namespace(a) is ns})
    out = {}
    for name, a in present.items():
        if name in array_args and array_namespace(a) is ns:
            out[name] = a
            continue
        try:
            out[name] = ns.asarray(a)
        except Exception as exc:
            raise TypeError(f"`{name}` cannot be converted to an array of {ns.__name__}: {exc}") from exc
    return ns, out


def is_boolean(value: Any) -> bool:
    """A Python, NumPy or array boolean: a mistake where a number is meant (``float(True)`` is 1.0)."""
    if isinstance(value, bool):
        return True
    dtype = getattr(value, "dtype", None)
    return dtype is not None and str(dtype).removeprefix("torch.") == "bool"


def reject_non_number(name: str, value: Any) -> None:
    """A string or a boolean where a number is meant: TypeError naming ``name``.

    ``float("1")`` and ``float(True)`` would accept them silently.
    """
    if isinstance(value, str | bytes) or is_boolean(value):
        raise TypeError(f"`{name}` must be a number or None, got {value!r}")


def _check_layouts(ns: ModuleType, arrays: dict[str, Array]) -> None:
    """Arrays the library cannot compute on here (sparse, nested): TypeError naming the argument."""
    problem_of = hooks_for(ns).layout_problem
    if problem_of is None:
        return
    for name, a in arrays.items():
        problem = problem_of(a)
        if problem is not None:
            raise TypeError(f"`{name}` is {problem}")


def check_knot_grad(knot_grad: str) -> None:
    if knot_grad not in KNOT_GRAD_MODES:
        raise ValueError(f"`knot_grad` must be one of {tuple(KNOT_GRAD_MODES)}, got {knot_grad!r}")


def check_optional_real(name: str, value: Any, *, positive: bool = False) -> float | None:
    """None, or a real number ``>= 0`` (``> 0`` with ``positive``); TypeError / ValueError naming ``name``."""
    if value is None:
        return None
    message = f"`{name}` must be a {'positive' if positive else 'non-negative'} real number or None, got {value!r}"
    if isinstance(value, (str, bytes)) or is_boolean(value):  # float() would take "2" and True
        raise TypeError(message)
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(message) from exc
    if not (out > 0.0 if positive else out >= 0.0):
        raise ValueError(message)
    return out


def check_min_gap(min_gap: float | None) -> float | None:
    return check_optional_real("min_gap", min_gap)


def check_scalar(name: str, value: Any) -> float | None:
    """``left``/``right``: a real number (or concrete 0-d array) or None."""
    if value is None:
        return None
    reject_non_number(name, value)
    try:
        return float(value)
    except Exception as exc:
        raise TypeError(
            f"`{name}` must be a real number or None (a constant, not a traced array), got {value!r}"
        ) from exc


def check_integer(name: str, value: Any, minimum: int) -> int:
    """An integer argument ``name`` (not a bool) of at least ``minimum``."""
    if isinstance(value, bool):
        raise TypeError(f"`{name}` must be an integer, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError as exc:
        raise TypeError(f"`{name}` must be an integer, got {value!r}") from exc
    if v < minimum:
        raise ValueError(f"`{name}` must be at least {minimum}, got {v}")
    return v
