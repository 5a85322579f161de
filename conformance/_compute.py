"""knotsafe evaluated on a backend: values, gradients and Jacobians, memoised per process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import knotsafe
from conformance._backends import Driver
from conformance._data import Case, jac_rows
from conformance._record import Cell

Array = Any
_memo: dict[tuple[Any, ...], Any] = {}


def interp_fn(case: Case, knot_grad: str = "exact") -> Callable[[Array, Array, Array], Array]:
    kw = case.kwargs()

    def f(x: Array, k: Array, v: Array) -> Array:
        return knotsafe.interp(x, k, v, knot_grad=knot_grad, **kw)  # type: ignore[arg-type]

    return f


def _memoised(key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
    if key not in _memo:
        _memo[key] = make()
    return _memo[key]


def arrays(drv: Driver, case: Case, rows: np.ndarray | None = None) -> tuple[Array, Array, Array]:
    """(x, knots, values) on the backend; ``rows`` selects queries."""
    q = case.queries if rows is None else case.queries[rows]
    tag = "all" if rows is None else "rows"
    return _memoised(
        (drv.label, case.dtype, case.name, "arrays", tag),
        lambda: (drv.asarray(q, case.dtype), drv.asarray(case.knots, case.dtype), drv.asarray(case.values, case.dtype)),
    )


def forward(drv: Driver, case: Case) -> Array:
    """knotsafe.interp on the backend (the backend array)."""
    return _memoised((drv.label, case.dtype, case.name, "forward"), lambda: interp_fn(case)(*arrays(drv, case)))


def grads(drv: Driver, case: Case, knot_grad: str) -> list[np.ndarray]:
    """[d/dx, d/dknots, d/dvalues] of sum(interp(...)) over all queries (reverse mode)."""
    return _memoised(
        (drv.label, case.dtype, case.name, "grads", knot_grad),
        lambda: drv.autodiff.grad(interp_fn(case, knot_grad), arrays(drv, case), (0, 1, 2)),
    )


def jacobians(drv: Driver, case: Case, mode: str, knot_grad: str = "exact") -> list[np.ndarray]:
    """[d out/d x, d out/d knots, d out/d values] per entry, on the query subset jac_rows(case).

    On JAX all Jacobians of a case come from one jax.jit-compiled bundle (one
    compilation instead of one per eager operation and shape); the ``jit``
    property compares jitted against eager results.
    """
    if drv.framework == "jax":
        return jax_bundle(drv, case)[("jac", mode, knot_grad)]  # type: ignore[no-any-return]
    rows = jac_rows(case)

    def make() -> list[np.ndarray]:
        args = arrays(drv, case, rows)
        f = interp_fn(case, knot_grad)
        return [drv.autodiff.jacobian(f, args, i, mode) for i in range(3)]

    return _memoised((drv.label, case.dtype, case.name, "jac", mode, knot_grad), make)


def jax_bundle(drv: Driver, case: Case) -> dict[Any, Any]:
    """Under one jax.jit: values and sum-gradients on all queries, Jacobians (jacrev, jacfwd;
    exact and stop) on the query subset."""
    import jax

    def make() -> dict[Any, Any]:
        fe, fs = interp_fn(case, "exact"), interp_fn(case, "stop")

        def everything(x: Array, k: Array, v: Array, xr: Array) -> Any:
            out = fe(x, k, v)
            g = jax.grad(lambda *a: fe(*a).sum(), argnums=(0, 1, 2))(x, k, v)
            jacs = {}
            for kg, f in (("exact", fe), ("stop", fs)):
                jacs[("rev", kg)] = jax.jacrev(f, argnums=(0, 1, 2))(xr, k, v)
                jacs[("fwd", kg)] = jax.jacfwd(f, argnums=(0, 1, 2))(xr, k, v)
            return out, g, jacs

        x, k, v = arrays(drv, case)
        xr = arrays(drv, case, jac_rows(case))[0]
        out, g, jacs = jax.jit(everything)(x, k, v, xr)
        res: dict[Any, Any] = {"out": np.asarray(out), "grads": [np.asarray(a) for a in g]}
        for (mode, kg), js in jacs.items():
            res[("jac", mode, kg)] = [np.asarray(a) for a in js]
        return res

    return _memoised((drv.label, case.dtype, case.name, "jax_bundle"), make)  # type: ignore[no-any-return]


def check_cases(
    cell: Cell, items: list[Any], measure: Callable[[Any], tuple[float, int]], name: Callable[[Any], str]
) -> None:
    """Measure every item, fold the worst errors into ``cell``, then fail listing every item out of tolerance."""
    failures = []
    for item in items:
        try:
            err, n = measure(item)
        except pytest.skip.Exception:
            raise
        except Exception as exc:  # a crash is a measured failure of this item, not of the others
            failures.append(f"{name(item)}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            continue
        if not cell.update(err, n):
            failures.append(f"{name(item)}: worst {err:.3g} {cell.unit} > {cell.tol:g}")
    if failures:
        pytest.fail("; ".join(failures), pytrace=False)
