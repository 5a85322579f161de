"""The backend itself: knotsafe finds its hooks, and outputs stay on the input's device."""

from __future__ import annotations

import warnings
from importlib import metadata

import array_api_compat as compat
import numpy as np
import pytest

import knotsafe
from conformance._backends import DTYPES, Driver
from conformance._record import Cell
from knotsafe.backends import ENTRY_POINT_GROUP, hooks_for, registered
from knotsafe.testing import knot_cases

BUILTIN_HOOKS = ("numpy", "jax", "torch", "array_api_strict", "cupy", "dask")


@pytest.mark.prop("hooks")
def test_hooks_for_namespace(backend: Driver, cell: Cell) -> None:
    """hooks_for(array_namespace(x)) returns this backend's hooks without the unknown-namespace fallback;
    a third-party namespace gets them from its ``knotsafe.backends`` entry point, and interp computes
    through them (plugin: its call counter moves) returning arrays of the same namespace."""
    dtype = backend.dtypes[0]
    x = backend.asarray(np.array([0.25, 0.5, 2.0]), dtype)
    k = backend.asarray(np.array([0.0, 0.5, 0.5, 1.0]), dtype)
    v = backend.asarray(np.array([1.0, 2.0, 3.0, 4.0]), dtype)
    ns = compat.array_namespace(x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hooks = hooks_for(ns)
    fallback = [w for w in caught if "no backend hooks" in str(w.message)]
    assert not fallback, f"hooks_for fell back to identity hooks: {fallback[0].message}"
    via = "built-in"
    if backend.expected_hooks is not None:
        assert hooks.name == backend.expected_hooks, f"hooks {hooks.name!r}, expected {backend.expected_hooks!r}"
        if hooks.name not in BUILTIN_HOOKS:
            via = "knotsafe.backends.register"
    else:
        eps = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == ns.__name__]
        assert hooks.name not in BUILTIN_HOOKS, f"{ns.__name__} resolved to the built-in hooks {hooks.name!r}"
        assert ns.__name__ in registered(), f"{ns.__name__} is not in knotsafe.backends.registered()"
        if eps:
            via = f"entry point {eps[0].value}"
            assert eps[0].load()().name == hooks.name, "entry point hooks differ from hooks_for's"
        else:
            via = "knotsafe.backends.register"
    calls = hooks.extras.get("calls")
    before = dict(calls) if isinstance(calls, dict) else None
    out = knotsafe.interp(x, k, v)
    assert compat.array_namespace(out) is ns, f"output namespace {compat.array_namespace(out).__name__}"
    np.testing.assert_array_equal(backend.to_numpy(out), np.interp([0.25, 0.5, 2.0], [0, 0.5, 0.5, 1], [1, 2, 3, 4]))
    if before is not None:
        assert calls != before, "interp did not call the registered hooks"
        via += ", hooks called"
    cell.update(0.0, 1)
    cell.text = f"{hooks.name} ({via})"


def _namespace_fails(backend: Driver, dev: object, dtype: str) -> str | None:
    """Why the namespace's own searchsorted cannot run on ``dev`` (None if it can).

    array-api-strict's searchsorted returns int64 even on its ``no_x64`` device,
    which refuses int64: a limitation of the namespace, not of knotsafe.
    """
    try:
        k = backend.asarray(np.array([0.0, 1.0]), dtype, dev)
        backend.xp.searchsorted(k, k, side="right")
    except Exception as exc:
        return f"{backend.xp.__name__}.searchsorted itself fails there ({type(exc).__name__}: {exc})"
    return None


@pytest.mark.prop("device")
def test_outputs_on_input_device(backend: Driver, cell: Cell) -> None:
    """interp, its gradients and both transforms return arrays on the inputs' device, on every device the
    backend offers and in every float dtype that device supports (internal arrays must be created there too:
    array-api-strict refuses to mix devices)."""
    case = knot_cases()[1]  # exact duplicates
    info = backend.xp.__array_namespace_info__() if hasattr(backend.xp, "__array_namespace_info__") else None
    mismatches, checked, failures = 0, 0, []
    for dev in backend.devices:
        if info is not None and backend.spec not in ("jax", "jax-x32", "torch", "numpy"):
            supported = info.dtypes(device=dev, kind="real floating")
            dtypes = [d for d in DTYPES if d in supported and d in backend.dtypes]
        else:
            dtypes = list(backend.dtypes)
        for dtype in dtypes:
            own = _namespace_fails(backend, dev, dtype)
            if own:
                cell.partial.append(f"{dev!r} {dtype} skipped: {own}")
                continue
            try:
                x, k, v = (backend.asarray(a, dtype, dev) for a in (case.queries, case.knots, case.values))
                outs = [knotsafe.interp(x, k, v)]
                pts = backend.stack([k, v])
                pts = backend.xp.permute_dims(pts, (1, 0))
                t, inv = knotsafe.create_transforms(pts)
                u = t(pts)
                outs += [u, inv(u)]
                if backend.framework == "torch":
                    xg = x.clone().requires_grad_(True)
                    kg = k.clone().requires_grad_(True)
                    outs.append(__import__("torch").autograd.grad(knotsafe.interp(xg, kg, v).sum(), kg)[0])
                elif backend.framework == "jax":
                    import jax

                    outs.append(jax.grad(lambda kk, x=x, v=v: knotsafe.interp(x, kk, v).sum())(k))
                for o in outs:
                    checked += 1
                    if backend.device_of(o) != dev:
                        mismatches += 1
                        failures.append(f"{dev!r} {dtype}: output on {backend.device_of(o)!r}")
            except Exception as exc:
                failures.append(f"{dev!r} {dtype}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    cell.update(float(mismatches), checked)
    if failures:
        pytest.fail("; ".join(failures), pytrace=False)
    cell.text = f"0 / {checked} outputs, {len(backend.devices)} device(s)"
