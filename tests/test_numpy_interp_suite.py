"""numpy's own ``TestInterp``, run against ``knotsafe.interp`` on every backend.

NumPy ships its test suite; ``TestInterp`` lives in
``numpy/lib/tests/test_function_base.py``.  Its code is not copied: each test
method is re-created with the same code object but with globals in which
``interp`` and ``np.interp`` are a per-backend converter that turns the
inputs into the backend's arrays, calls :func:`knotsafe.interp` and turns
the result back into a NumPy array.  Everything else the tests use (``np``'s
other functions, ``assert_equal``, the ``sc`` fixture) is numpy's.

The deliberate differences are strict expected failures with their reasons.
"""

from __future__ import annotations

import functools
import importlib
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from array_api_compat import array_namespace

import knotsafe
from tests._support import backend_name, has_float64, to_numpy
from tests.conftest import _MODULES, BACKENDS

nptests = pytest.importorskip("numpy.lib.tests.test_function_base", reason="this NumPy does not ship its tests")
NumpyTestInterp: type = nptests.TestInterp

# The documented differences from numpy.interp (README, "The gradient contract").
NAN_KNOTS = "NaN knots raise ValueError (numpy.interp returns NaN)"
ZERO_D = "a 0-d query gives a 0-d array, not a NumPy scalar"
EXPECTED_FAILURES: dict[str, tuple[str, type[BaseException]]] = {
    "test_non_finite_any_nan": (NAN_KNOTS, ValueError),
    "test_zero_dimensional_interpolation_point": (ZERO_D, AssertionError),
}
BACKEND_FAILURES: dict[str, dict[str, tuple[str, type[BaseException]]]] = {
    "jax_x32": {
        # JAX without x64 computes in float32.  Rounding the knots (ulp(3)/2 =
        # 1.2e-7) and pi (8.7e-8) to float32 moves sin's interpolant at pi by up
        # to |slope| (1.2e-7 + 8.7e-8) = 2.1e-7, and the error comes close to that
        # bound, beyond the test's float64 tolerance of 1.5e-7 (decimal=7).
        "test_if_len_x_is_small": ("float32 rounding (2.1e-7 bound) exceeds decimal=7", AssertionError),
    },
}


def _to_backend(xp: Any, a: Any) -> Any:
    """NumPy data (lists, scalars, arrays) as an array of the backend ``xp``."""
    # numpy.interp's first step: real data as float64 (complex stays complex).
    # Mixed integer/float arrays are a TypeError under the array API's
    # promotion rules (array_api_strict), which is not what this suite tests.
    a = np.ascontiguousarray(a)  # torch refuses negative strides (incpts[::-1])
    if a.dtype.kind in "biu":
        a = a.astype(np.float64)
    if backend_name(xp) == "jax" and not has_float64(xp):
        # Without x64 JAX holds float32/complex64; say so instead of relying
        # on jnp.asarray's silent truncation.
        a = a.astype({"f": np.float32, "c": np.complex64}.get(a.dtype.kind, a.dtype))
    return xp.asarray(a)


def knotsafe_as_numpy_interp(xp: Any) -> Callable[..., np.ndarray]:
    """``numpy.interp``'s signature, computed by knotsafe on the backend ``xp``."""

    def interp(x: Any, xp_: Any, fp: Any, left: Any = None, right: Any = None, period: Any = None) -> np.ndarray:
        args = [_to_backend(xp, a) for a in (x, xp_, fp)]
        out = knotsafe.interp(*args, left=left, right=right, period=period)
        assert array_namespace(out) is array_namespace(args[0])  # computed on the backend
        return to_numpy(out)

    return interp


class _NumpyWithInterp(types.ModuleType):
    """``numpy`` with ``interp`` replaced (other attributes are numpy's)."""

    def __init__(self, interp: Callable[..., Any]) -> None:
        super().__init__("numpy")
        self.interp = interp

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


#: On lazy arrays (Dask) the NaN-knot data check is skipped, as documented, and the values are numpy's:
#: those tests pass there.
LAZY_PASSES = ("test_non_finite_any_nan",)


def rebind(cls: type, interp: Callable[..., Any], name: str, lazy: bool = False) -> type:
    """A subclass of ``cls`` whose test methods call ``interp`` for ``interp`` and ``np.interp``."""
    env = dict(vars(nptests))
    env["interp"] = interp
    env["np"] = _NumpyWithInterp(interp)
    attrs: dict[str, Any] = {}
    for attr, f in vars(cls).items():
        if not (attr.startswith("test_") and isinstance(f, types.FunctionType)):
            continue
        g = types.FunctionType(f.__code__, env, f.__name__, f.__defaults__, f.__closure__)
        g.__dict__.update(f.__dict__)  # pytest marks
        functools.update_wrapper(g, f, assigned=("__module__", "__qualname__", "__doc__"), updated=())
        if attr in EXPECTED_FAILURES and not (lazy and attr in LAZY_PASSES):
            reason, exc = EXPECTED_FAILURES[attr]
            g = pytest.mark.xfail(reason=reason, raises=exc, strict=True)(g)
        attrs[attr] = g
    return type(name, (cls,), attrs)


for _backend in BACKENDS:
    _name = f"TestNumpyInterpOn_{_backend}"
    _interp = knotsafe_as_numpy_interp(importlib.import_module(_MODULES[_backend]))
    globals()[_name] = rebind(NumpyTestInterp, _interp, _name, lazy=_backend == "dask")


@pytest.fixture(autouse=True)
def _backend_expected_failures(request: pytest.FixtureRequest) -> None:
    """Strict xfail for one parametrization of a numpy test on one backend."""
    cls = request.node.cls
    if cls is None or not cls.__name__.startswith("TestNumpyInterpOn_"):
        return
    backend = cls.__name__.removeprefix("TestNumpyInterpOn_")
    if backend == "jax" and not has_float64(importlib.import_module("jax.numpy")):
        backend = "jax_x32"
    entry = BACKEND_FAILURES.get(backend, {}).get(request.node.name)
    if entry is not None:
        request.applymarker(pytest.mark.xfail(reason=entry[0], raises=entry[1], strict=True))


def test_numpy_suite_is_present_and_complete() -> None:
    """The class has the tests this module was written against (NumPy 2.x: 14 methods)."""
    methods = {m for m in vars(NumpyTestInterp) if m.startswith("test_")}
    assert {"test_complex_interp", "test_period", "test_exceptions"} <= methods
    assert set(EXPECTED_FAILURES) <= methods


def test_substitution_reaches_the_tests() -> None:
    """A wrong interp substituted the same way makes numpy's tests fail (so the rebinding is real)."""

    def wrong(x: Any, xp_: Any, fp: Any, left: Any = None, right: Any = None, period: Any = None) -> np.ndarray:
        return np.interp(x, xp_, fp, left=left, right=right, period=period) + 1e-3

    broken = rebind(NumpyTestInterp, wrong, "Broken")()
    with pytest.raises(AssertionError):
        broken.test_basic()  # calls np.interp
    with pytest.raises(AssertionError):
        broken.test_right_left_behavior()  # calls interp
    with pytest.raises(AssertionError):
        broken.test_period()
