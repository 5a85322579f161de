"""Transforms of the frameworks: jit, vmap, forward vs reverse mode, JAX vs PyTorch."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

import knotsafe
from knotsafe.testing import knot_cases
from tests._support import AutoDiff, asarray, backend_name, has_float64, to_numpy

CASE = {c.name: c for c in knot_cases()}


def _dt(xp: ModuleType) -> str:
    return "float64" if has_float64(xp) else "float32"


@pytest.mark.parametrize("case_name", ["near_duplicates", "queries_on_knots", "lens_grid"])
@pytest.mark.parametrize("knot_grad", ["exact", "stop"])
def test_forward_mode_equals_reverse_mode(xp: ModuleType, autodiff: AutoDiff, case_name: str, knot_grad: str) -> None:
    case = CASE[case_name]
    dt = _dt(xp)
    q = case.queries[:60]
    x, k, v = (asarray(xp, a, dt) for a in (q, case.knots, case.values))
    for f, arg in (
        (lambda a: knotsafe.interp(a, k, v, knot_grad=knot_grad), x),
        (lambda a: knotsafe.interp(x, a, v, knot_grad=knot_grad), k),
        (lambda a: knotsafe.interp(x, k, a, knot_grad=knot_grad), v),
    ):
        fwd, rev = autodiff.jacobians(f, arg)
        assert np.all(np.isfinite(fwd))
        np.testing.assert_array_equal(fwd, rev)


@pytest.mark.skip_xp_backend("numpy", reason="jax.jit only")
@pytest.mark.skip_xp_backend("array_api_strict", reason="jax.jit only")
@pytest.mark.skip_xp_backend("torch", reason="jax.jit only")
@pytest.mark.skip_xp_backend("dask", reason="jax.jit only")
def test_jax_jit_gives_identical_values_and_gradients(xp: ModuleType) -> None:
    import jax

    case = CASE["near_duplicates"]
    dt = _dt(xp)
    args = [asarray(xp, a, dt) for a in (case.queries, case.knots, case.values)]

    def f(a, b, c):  # type: ignore[no-untyped-def]
        return knotsafe.interp(a, b, c, left=-1.0)

    np.testing.assert_array_equal(np.asarray(jax.jit(f)(*args)), np.asarray(f(*args)))
    g = jax.grad(lambda *a: f(*a).sum(), argnums=(0, 1, 2))
    for eager, jitted in zip(g(*args), jax.jit(g)(*args), strict=True):
        np.testing.assert_array_equal(np.asarray(jitted), np.asarray(eager))
    tr_fn = jax.jit(lambda p, q: knotsafe.create_transforms(p)[0](q))
    pts = asarray(xp, np.stack([case.knots, case.knots[::-1]], axis=1), dt)
    qs = asarray(xp, np.stack([case.queries[:50], case.queries[50:100]], axis=1), dt)
    np.testing.assert_array_equal(np.asarray(tr_fn(pts, qs)), np.asarray(knotsafe.create_transforms(pts)[0](qs)))


def test_vmap_gives_per_example_results(xp: ModuleType, autodiff: AutoDiff) -> None:
    dt = _dt(xp)
    rng = np.random.default_rng(3)
    knots = np.sort(rng.uniform(0, 1, (4, 12)), axis=1)
    knots[:, 3:6] = knots[:, 3:4]
    values = rng.normal(size=(4, 12))
    queries = rng.uniform(-0.1, 1.1, (4, 30))
    K, V, Q = (asarray(xp, a, dt) for a in (knots, values, queries))
    per_example = np.stack([to_numpy(knotsafe.interp(Q[i], K[i], V[i])) for i in range(4)])
    if backend_name(xp) == "jax":
        import jax

        vm = jax.vmap(knotsafe.interp)
        gvm = jax.vmap(jax.grad(lambda q, k, v: knotsafe.interp(q, k, v).sum(), argnums=(0, 1, 2)))
    else:
        import torch

        vm = torch.func.vmap(knotsafe.interp)
        gvm = torch.func.vmap(torch.func.grad(lambda q, k, v: knotsafe.interp(q, k, v).sum(), argnums=(0, 1, 2)))
    np.testing.assert_array_equal(to_numpy(vm(Q, K, V)), per_example)
    batched = [to_numpy(g) for g in gvm(Q, K, V)]
    for i in range(4):
        single = autodiff.grad(knotsafe.interp, [Q[i], K[i], V[i]], (0, 1, 2))
        for b, s in zip(batched, single, strict=True):
            np.testing.assert_allclose(b[i], s, rtol=1e-12 if dt == "float64" else 1e-6, atol=0)
