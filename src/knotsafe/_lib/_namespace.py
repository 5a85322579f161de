"""Namespace resolution and argument checks shared by the public functions."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import array_api_compat as compat

Array = Any

KNOT_GRAD_MODES = ("exact", "stop")


def _library(a: Any) -> str:
    name: str = compat.array_namespace(a).__name__
    return name.removeprefix("array_api_compat.").split(".")[0]


def namespace_of(xp: Any) -> ModuleType:
    """The array-API namespace for a user-supplied ``xp``.

    Accepts a compatible namespace (``array_api_strict``, ``jax.numpy``) or a
    plain library module (``numpy``, ``torch``, ``cupy``) that
    ``array_api_compat`` wraps.
    """
    if not hasattr(xp, "asarray"):
        raise TypeError(f"`xp` must be an array namespace such as numpy, jax.numpy or torch, got {xp!r}")
    return compat.array_namespace(xp.asarray(0.0))


def resolve(arrays: dict[str, Any], xp: Any = None) -> tuple[ModuleType, dict[str, Array]]:
    """Find the namespace of ``arrays`` (name -> array or None) and convert them.

    With ``xp=None`` all arrays must come from one library; mixing two raises
    a TypeError naming both arguments and libraries.  With ``xp`` given,
    NumPy arrays and Python data are converted with ``xp.asarray`` and an
    array of any other library is a TypeError.
    """
    present = {k: v for k, v in arrays.items() if v is not None}
    array_args = {k: v for k, v in present.items() if compat.is_array_api_obj(v)}
    if xp is not None:
        ns = namespace_of(xp)
        for name, a in array_args.items():
            if compat.array_namespace(a) is not ns and not compat.is_numpy_array(a):
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
        ns = compat.array_namespace(*array_args.values())
    out = {}
    for name, a in present.items():
        if name in array_args and compat.array_namespace(a) is ns:
            out[name] = a
            continue
        try:
            out[name] = ns.asarray(a)
        except Exception as exc:
            raise TypeError(f"`{name}` cannot be converted to an array of {ns.__name__}: {exc}") from exc
    return ns, out


def float_dtype(xp: ModuleType, *arrays: Array) -> Any:
    """The common floating dtype of ``arrays`` (integers promote to the default)."""
    dtype = xp.result_type(*arrays)
    if xp.isdtype(dtype, "real floating"):
        return dtype
    if xp.isdtype(dtype, ("integral", "bool")):
        info = xp.__array_namespace_info__()
        return info.default_dtypes(device=compat.device(arrays[0]))["real floating"]
    raise TypeError(f"expected real floating or integer arrays, got dtype {dtype}")


def check_weights(xp: ModuleType, w: Array, n: int, dtype: Any, name: str) -> Array:
    """A weight vector ``name`` of shape (n,): non-negative, not all zero (checked when concrete)."""
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"`{name}` must have shape ({n},), one weight per point, got {tuple(w.shape)}")
    w = xp.astype(w, dtype, copy=False)
    if holds(xp, w >= 0) is False:
        raise ValueError(f"`{name}` must be non-negative and free of NaN")
    if holds(xp, xp.any(w > 0)) is False:
        raise ValueError(f"`{name}` must not all be zero")
    return w


def check_knot_grad(knot_grad: str) -> None:
    if knot_grad not in KNOT_GRAD_MODES:
        raise ValueError(f"`knot_grad` must be one of {KNOT_GRAD_MODES}, got {knot_grad!r}")


def check_min_gap(min_gap: float | None) -> float | None:
    if min_gap is None:
        return None
    try:
        value = float(min_gap)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`min_gap` must be a non-negative real number or None, got {min_gap!r}") from exc
    if not value >= 0.0:
        raise ValueError(f"`min_gap` must be a non-negative real number or None, got {min_gap!r}")
    return value


def check_scalar(name: str, value: Any) -> float | None:
    """``left``/``right``: a real number (or concrete 0-d array) or None."""
    if value is None:
        return None
    try:
        return float(value)
    except Exception as exc:
        raise TypeError(
            f"`{name}` must be a real number or None (a constant, not a traced array), got {value!r}"
        ) from exc


def holds(xp: ModuleType, condition: Array) -> bool | None:
    """``bool(xp.all(condition))``, or None where the data cannot be inspected.

    Data-dependent checks are skipped for traced or lazy arrays (``jax.jit``,
    Dask) and inside transforms that forbid reading values
    (``torch.func.vmap``).
    """
    from knotsafe.backends import hooks_for

    if not hooks_for(xp).is_concrete(condition):
        return None
    try:
        return bool(xp.all(condition))
    except Exception:
        return None
