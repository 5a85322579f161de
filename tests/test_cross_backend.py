"""JAX == PyTorch: the same gradients from two frameworks' autodiff, float64.

These need JAX and PyTorch in one environment, which only the ``conformance``
nox session has; it runs this file with ``KNOTSAFE_REQUIRE_CROSS_BACKEND=1``,
which turns a missing framework into a failure instead of a skip, so the
session cannot pass without running them.  Elsewhere they skip.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import knotsafe
from knotsafe.testing import knot_cases
from tests._contract import contract_partials, contract_threshold
from tests._support import selected

CASE = {c.name: c for c in knot_cases()}


def _frameworks() -> tuple[ModuleType, ModuleType]:
    missing = [m for m in ("jax", "torch") if not selected(m)]
    if missing:
        if os.environ.get("KNOTSAFE_REQUIRE_CROSS_BACKEND") == "1":
            pytest.fail(f"KNOTSAFE_REQUIRE_CROSS_BACKEND=1 but {missing} not installed")
        pytest.skip("needs JAX and PyTorch installed and selected (the conformance session)")
    import jax
    import torch

    if not jax.config.read("jax_enable_x64"):
        if os.environ.get("KNOTSAFE_REQUIRE_CROSS_BACKEND") == "1":
            pytest.fail("KNOTSAFE_REQUIRE_CROSS_BACKEND=1 needs JAX_ENABLE_X64=1")
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    return jax, torch


def _both_grads(f: Any, arrays: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Gradients of sum(f(*arrays)) by jax.grad and by torch autograd."""
    jax, torch = _frameworks()
    import jax.numpy as jnp

    jg = jax.grad(lambda *a: f(*a).sum(), argnums=tuple(range(len(arrays))))(*(jnp.asarray(a) for a in arrays))
    leaves = [torch.tensor(a, requires_grad=True) for a in arrays]
    f(*leaves).sum().backward()
    return [np.asarray(g) for g in jg], [
        np.zeros(a.shape) if t.grad is None else t.grad.numpy() for a, t in zip(arrays, leaves, strict=True)
    ]


@pytest.mark.parametrize("knot_grad", ["exact", "stop"])
@pytest.mark.parametrize(
    "case_name", ["exact_duplicates", "near_duplicates", "lens_grid", "out_of_range", "queries_on_knots"]
)
def test_interp_gradients_agree(case_name: str, knot_grad: str) -> None:
    """Both sum the same per-query partials: each gradient entry is a sum of at most K terms,
    so two summation orders differ by at most 2 (K + 4) eps sum_i |term_i| (recursive-summation
    bound, plus the few roundings of each term); the terms' magnitudes are the contract's partials."""
    case = CASE[case_name]
    x, k, v = case.queries, case.knots, case.values
    jg, tg = _both_grads(lambda a, b, c: knotsafe.interp(a, b, c, knot_grad=knot_grad), [x, k, v])
    fin = ~np.isnan(x)
    if k.size <= 2000:
        _, dx, dk, dv = contract_partials(x, k, v, threshold=contract_threshold(k, "float64"), knot_grad=knot_grad)
        mags = [np.abs(dx), np.abs(dk).sum(axis=0), np.abs(dv).sum(axis=0)]
    else:  # the lens grid: bound each term by the largest partial instead of a K x N Jacobian
        mags = [np.abs(jg[0]), np.full(k.shape, np.abs(jg[1]).max() * fin.sum()), np.full(k.shape, fin.sum())]
    eps = np.finfo(np.float64).eps
    for j, t, m in zip(jg, tg, mags, strict=True):
        assert np.all(np.abs(j - t) <= 2 * (x.size + 4) * eps * m), np.max(np.abs(j - t))


@pytest.mark.parametrize("weighted", [False, True])
def test_create_transforms_gradients_agree(weighted: bool) -> None:
    """Gradients w.r.t. points, queries and weights: same bound as above with K = N + queries."""
    rng = np.random.default_rng(5)
    pts = np.round(rng.normal(size=(30, 2)), 1)  # many ties: duplicate knots
    q = rng.normal(size=(20, 2))
    w = rng.uniform(0.5, 1.5, 30)

    def f(p: Any, qq: Any, ww: Any) -> Any:
        tr, _ = knotsafe.create_transforms(p, ww if weighted else None)
        return tr(qq)

    jg, tg = _both_grads(f, [pts, q, w])
    eps = np.finfo(np.float64).eps
    for j, t in zip(jg, tg, strict=True):
        scale = np.abs(j).max(initial=0.0) * (pts.shape[0] + q.shape[0])
        assert np.all(np.abs(j - t) <= 2 * (pts.shape[0] + q.shape[0] + 4) * eps * scale)
