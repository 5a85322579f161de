"""``knotsafe.create_transforms`` with the default rank method: per-column rank transforms, weighted
ranks and their tie rule, dtypes, devices, argument checks and gradients.

References are never knotsafe's own output: sort + ``numpy.interp`` on the ranks ``i / (N + 1)`` or on
the documented weighted tie rule (transcribed run by run here and in ``tests/_contract.py``),
central differences of those references, and numbers worked out by hand.  The kernel method is in
``tests/test_kernel_density.py``; non-finite data, traced data and complex data in
``tests/test_validation.py``; half precision in ``tests/test_edge_inputs.py``.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import knotsafe
from knotsafe._lib.backends import registry
from knotsafe.testing import lens_grid, trace_sis
from tests._contract import (
    TIE_POINTS,
    TIE_WEIGHTS,
    inverse_bound,
    inverse_reference,
    tie_rule_ranks,
    transform_bound,
    transform_reference,
)
from tests._support import (
    AutoDiff,
    asarray,
    backend_module,
    backend_name,
    central_difference_gradient,
    eps_of,
    has_float64,
    points_with_duplicate_rows,
    selected,
    to_numpy,
)

FIXTURE_HYPOTHESIS = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _dt(xp: ModuleType) -> str:
    return "float64" if has_float64(xp) else "float32"


_LAZY_SKIP = pytest.mark.skip_xp_backend(
    "dask", reason="data check: needs values, skipped on lazy dask arrays (tests/test_scale_out.py)"
)


def _reference(points: np.ndarray, q: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """NumPy reference: sort each column, numpy.interp with ranks t (and back)."""
    n, d = points.shape
    fwd, inv = np.empty_like(q, dtype=np.float64), np.empty_like(q, dtype=np.float64)
    for c in range(d):
        order = np.argsort(points[:, c], kind="stable")
        s = points[order, c].astype(np.float64)
        if weights is None:
            t = np.arange(1, n + 1) / (n + 1)
        else:
            t = _tie_spread_ranks(s, weights[order].astype(np.float64))
        fwd[:, c] = np.interp(q[:, c], s, t, left=0.0, right=1.0)
        inv[:, c] = np.interp(np.clip(q[:, c], 0, 1), t, s)
    return fwd, inv


def _tie_spread_ranks(sorted_col: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The documented weighted tie rule, written run by run: a run of m tied points
    with total weight W after cumulative weight C gets C + W * i / m, i = 1..m."""
    n = sorted_col.size
    _, counts = np.unique(sorted_col, return_counts=True)
    run_w = np.add.reduceat(w, np.concatenate([[0], np.cumsum(counts)[:-1]]))
    cum = np.empty(n)
    c, pos = 0.0, 0
    for m, wr in zip(counts, run_w, strict=True):
        cum[pos : pos + m] = c + wr * np.arange(1, m + 1) / m
        c += wr
        pos += m
    return cum / (cum[-1] * (n + 1) / n)


@pytest.fixture
def grid(dtype_name: str) -> tuple[np.ndarray, np.ndarray]:
    data, over = lens_grid(radius=1.2, pixel_scale=0.1, sub_size=2, rotation=0.3)
    return data.astype(dtype_name), over.astype(dtype_name)


def _check_close(got: np.ndarray, ref: np.ndarray, dtype_name: str, exact: bool, bound: np.ndarray) -> None:
    assert got.dtype == np.dtype(dtype_name)
    if exact:
        np.testing.assert_array_equal(got, ref)
    else:
        # bound: the contract's rounding bound, per entry (tests/_contract.py derives it).
        err = np.abs(got.astype(np.float64) - ref)
        assert np.all(err <= bound), np.max(err - bound)


# --- values against sort + numpy.interp on the ranks ----------------------------------------------


def test_transform_matches_numpy_reference(xp: ModuleType, dtype_name: str, grid: tuple) -> None:
    data, over = grid
    tr, inv = knotsafe.create_transforms(asarray(xp, data, dtype_name))
    u = np.linspace(-0.1, 1.1, over.shape[0] * 2).reshape(-1, 2)
    fwd_ref, _ = _reference(data, over)
    _, inv_ref = _reference(data, u)
    exact = backend_name(xp) == "numpy" and dtype_name == "float64"
    fb = transform_bound(data.astype(np.float64), over.astype(np.float64), dtype_name)
    ib = inverse_bound(data.astype(np.float64), u.astype(dtype_name).astype(np.float64), dtype_name)
    _check_close(to_numpy(tr(asarray(xp, over, dtype_name))), fwd_ref, dtype_name, exact, fb)
    _check_close(to_numpy(inv(asarray(xp, u, dtype_name))), inv_ref, dtype_name, exact, ib)


def _rank_value_bound(points: np.ndarray, q: np.ndarray, dt: str, weighted: bool) -> np.ndarray:
    """Rounding bound of ``transform(q)`` against the exact-arithmetic reference.

    The contract bounds interp by 4 eps (|slope||x| + |f0| + |f1|) of the
    bracketing bin; the ranks f are themselves rounded: i/(N+1) by one
    division (eps/2 relative); weighted ranks by an N-term cumulative sum, a
    division by the largest weight and a scaling (<= (N + 3) eps relative,
    the standard recursive-summation bound).  The output is a convex
    combination of two ranks, so a rank error passes through unamplified.
    """
    eps = float(np.finfo(dt).eps)
    n = points.shape[0]
    rank_err = (n + 3) * eps if weighted else eps
    bound = np.empty(q.shape)
    for d in range(q.shape[1]):
        k = np.sort(points[:, d])
        t = np.arange(1, n + 1) / (n + 1)  # ranks <= 1 bound |f0|, |f1|
        j = np.clip(np.searchsorted(k, q[:, d], side="right") - 1, 0, n - 2)
        gap = k[j + 1] - k[j]
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.where(gap > 0, 1.0 / (gap * (n + 1)) * (n if weighted else 1), 0.0)
        bound[:, d] = 4 * eps * (slope * np.abs(q[:, d]) + 2 * t.max()) + rank_err
    return bound


@pytest.mark.parametrize("weighted", [False, True])
def test_create_transforms_values_against_sort_and_numpy_interp(
    xp: ModuleType, dtype_name: str, weighted: bool, rng: np.random.Generator
) -> None:
    pts = points_with_duplicate_rows(rng).astype(dtype_name)
    w = rng.uniform(0.5, 1.5, pts.shape[0]).astype(dtype_name) if weighted else None
    q = np.concatenate([rng.normal(size=(30, 2)), pts[:10], [[-10.0, -10.0], [10.0, 10.0]]]).astype(dtype_name)
    args = () if w is None else (asarray(xp, w, dtype_name),)
    tr, inv = knotsafe.create_transforms(asarray(xp, pts, dtype_name), *args)
    got = to_numpy(tr(asarray(xp, q, dtype_name))).astype(np.float64)
    ref = transform_reference(pts, q, w)
    bound = _rank_value_bound(pts.astype(np.float64), q.astype(np.float64), dtype_name, weighted)
    assert np.all(np.abs(got - ref) <= bound), np.max(np.abs(got - ref) - bound)
    # Outside the range: exactly 0 and 1; the last point's rank is N/(N+1) (then 1 above it).
    np.testing.assert_array_equal(got[-2:], [[0.0, 0.0], [1.0, 1.0]])
    u = np.linspace(0.0, 1.0, 24).reshape(12, 2)
    back = to_numpy(inv(asarray(xp, u, dtype_name))).astype(np.float64)
    ref_back = inverse_reference(pts, u, w)
    # The inverse interpolates points by ranks: slope = gap / rank step; 4 eps bound of
    # the contract on points of size <= max|p| plus the rank error times the slope.
    eps = eps_of(dtype_name)
    scale = np.abs(pts).max()
    n = pts.shape[0]
    rank_err = (n + 3) * eps if weighted else eps
    steep = 2 * scale * (n + 1) / (0.5 if weighted else 1.0)  # |gap| <= 2 max|p|, rank step >= 0.5/(N+1)
    assert np.all(np.abs(back - ref_back) <= 4 * eps * (steep + 2 * scale) + rank_err * steep)


def test_transform_range_monotone_and_round_trip(xp: ModuleType, dtype_name: str, grid: tuple) -> None:
    data, _ = grid
    tr, inv = knotsafe.create_transforms(asarray(xp, data, dtype_name))
    q = np.sort(np.concatenate([data, data + 0.5, data - 0.5]), axis=0)
    u = to_numpy(tr(asarray(xp, q, dtype_name)))
    assert np.all((u >= 0) & (u <= 1))
    assert np.all(np.diff(u, axis=0) >= 0)
    # Where a point's value is unique in its column, inv(transform(p)) == p.
    back = to_numpy(inv(tr(asarray(xp, data, dtype_name))))
    for c in range(2):
        vals, counts = np.unique(data[:, c], return_counts=True)
        unique = np.isin(data[:, c], vals[counts == 1])
        np.testing.assert_allclose(back[unique, c], data[unique, c], rtol=0, atol=16 * eps_of(dtype_name))


@pytest.mark.parametrize("dim", [1, 3])
def test_any_dimension(xp: ModuleType, dim: int, rng: np.random.Generator) -> None:
    pts = rng.normal(size=(50, dim))
    pts[10:20] = pts[0]  # duplicated rows
    q = rng.normal(size=(30, dim))
    dt = "float64" if has_float64(xp) else "float32"
    tr, inv = knotsafe.create_transforms(asarray(xp, pts, dt))
    out = tr(asarray(xp, q, dt))
    assert tuple(out.shape) == (30, dim)
    fwd_ref, _ = _reference(pts.astype(dt), q.astype(dt))
    bound = transform_bound(pts.astype(dt).astype(np.float64), q.astype(dt).astype(np.float64), dt)
    assert np.all(np.abs(to_numpy(out) - fwd_ref) <= bound)
    assert tuple(inv(out).shape) == (30, dim)


def test_original_call_shape_with_plain_module(xp: ModuleType) -> None:
    data, over = lens_grid(radius=1.0, pixel_scale=0.1, sub_size=1)
    dt = "float64" if has_float64(xp) else "float32"
    pts = asarray(xp, data, dt)
    tr, _ = knotsafe.create_transforms(pts, mesh_weight_map=None, xp=xp)
    ref, _ = _reference(data.astype(dt), over.astype(dt))
    bound = transform_bound(data.astype(dt).astype(np.float64), over.astype(dt).astype(np.float64), dt)
    assert np.all(np.abs(to_numpy(tr(asarray(xp, over, dt))) - ref) <= bound)


def test_nan_queries_give_nan(xp: ModuleType) -> None:
    dt = "float64" if has_float64(xp) else "float32"
    tr, inv = knotsafe.create_transforms(asarray(xp, np.arange(6.0).reshape(3, 2), dt))
    q = asarray(xp, np.array([[np.nan, 1.0], [2.0, np.nan]]), dt)
    out = to_numpy(tr(q))
    assert np.isnan(out[0, 0]) and np.isnan(out[1, 1]) and np.isfinite(out[0, 1]) and np.isfinite(out[1, 0])
    back = to_numpy(inv(q))
    assert np.isnan(back[0, 0]) and np.isfinite(back[0, 1])


def test_create_transforms_with_xp_accepts_python_data() -> None:
    """``xp=`` converts Python data, for the points and for the queries of both transforms."""
    tr, inv = knotsafe.create_transforms([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]], xp=np)
    np.testing.assert_array_equal(tr([[2.0, 3.0]]), [[0.5, 0.5]])
    np.testing.assert_array_equal(inv([[0.5, 0.5]]), [[2.0, 3.0]])


def test_compiled_create_transforms_equals_eager() -> None:
    """``torch.compile(fullgraph=True)`` of a loss of both transforms, on tied points: the eager values and
    gradients (Inductor may fuse a multiply-add: one rounding per term)."""
    torch = backend_module("torch")
    rng = np.random.default_rng(0)
    pts = np.round(rng.normal(size=(200, 2)), 1)  # many ties
    qs = rng.normal(size=(50, 2))

    def g(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        tr, inv = knotsafe.create_transforms(p)
        return (tr(q) ** 2).sum() + inv(torch.sigmoid(q)).sum()

    compiled = torch.compile(g, fullgraph=True)
    pe, qe = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (pts, qs))
    pc, qc = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (pts, qs))
    out_e, out_c = g(pe, qe), compiled(pc, qc)
    out_e.backward()
    out_c.backward()
    np.testing.assert_allclose(out_c.item(), out_e.item(), rtol=1e-13)
    for e, c in ((pe, pc), (qe, qc)):
        assert e.grad is not None and c.grad is not None
        np.testing.assert_allclose(c.grad.numpy(), e.grad.numpy(), rtol=1e-12, atol=1e-12 * float(e.grad.abs().max()))


# --- weighted ranks and the tie rule --------------------------------------------------------------


def test_uniform_weights_equal_unweighted_exactly(xp: ModuleType, dtype_name: str, grid: tuple) -> None:
    data, over = grid
    pts = asarray(xp, data, dtype_name)
    q = asarray(xp, over, dtype_name)
    plain_t, plain_i = knotsafe.create_transforms(pts)
    for c in (1.0, 0.3, 7.25):
        w = asarray(xp, np.full(data.shape[0], c), dtype_name)
        wt, wi = knotsafe.create_transforms(pts, w)
        np.testing.assert_array_equal(to_numpy(wt(q)), to_numpy(plain_t(q)))
        u = asarray(xp, np.linspace(0, 1, 20).reshape(10, 2), dtype_name)
        np.testing.assert_array_equal(to_numpy(wi(u)), to_numpy(plain_i(u)))


def test_weighted_ranks_match_reference(xp: ModuleType, dtype_name: str, grid: tuple, rng: np.random.Generator) -> None:
    data, over = grid
    w = rng.uniform(0.0, 2.0, data.shape[0]).astype(dtype_name)
    w[::7] = 0.0
    tr, _ = knotsafe.create_transforms(asarray(xp, data, dtype_name), mesh_weight_map=asarray(xp, w, dtype_name))
    fwd_ref, _ = _reference(data, over, w)
    got = to_numpy(tr(asarray(xp, over, dtype_name)))
    bound = transform_bound(data.astype(np.float64), over.astype(np.float64), dtype_name, w.astype(np.float64))
    assert np.all(np.abs(got - fwd_ref) <= bound), np.max(np.abs(got - fwd_ref) - bound)


def test_uniform_weights_are_the_unweighted_staircase_with_ties(xp: ModuleType) -> None:
    dt = _dt(xp)
    pts = np.repeat(np.arange(7.0), np.arange(1, 8))[:, None].astype(dt)
    q = asarray(xp, np.linspace(-1, 8, 91)[:, None], dt)
    plain, _ = knotsafe.create_transforms(asarray(xp, pts, dt))
    for c in (1.0, 0.3, 1e-30):
        weighted, _ = knotsafe.create_transforms(asarray(xp, pts, dt), asarray(xp, np.full(28, c), dt))
        np.testing.assert_array_equal(to_numpy(weighted(q)), to_numpy(plain(q)))


def _tie_rule_cdf(points: np.ndarray, w: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The documented rule, run by run in float64: a run of m tied points with total
    weight W after cumulative weight C has ranks C + W i / m, i = 1..m."""
    order = np.argsort(points, kind="stable")
    s, ws = points[order], w[order].astype(np.float64)
    _, first, counts = np.unique(s, return_index=True, return_counts=True)
    ranks = np.empty(s.size)
    c = 0.0
    for start, m in zip(first, counts, strict=True):
        run = ws[start : start + m].sum()
        ranks[start : start + m] = c + run * np.arange(1, m + 1) / m
        c += run
    ranks /= ranks[-1] * (s.size + 1) / s.size
    return np.interp(q, s, ranks, left=0.0, right=1.0)


_TIED = st.lists(st.integers(0, 6), min_size=40, max_size=40)


_WEIGHTS = st.lists(st.floats(0.05, 3.0), min_size=40, max_size=40)


@FIXTURE_HYPOTHESIS
@given(values=_TIED, weights=_WEIGHTS, seed=st.integers(0, 2**32 - 1))
def test_weighted_ranks_are_a_function_of_the_multiset(
    xp: ModuleType, values: list[int], weights: list[float], seed: int
) -> None:
    """Bitwise invariant under permutation; equal to the run-by-run rule to rounding."""
    dt = _dt(xp)
    pts = np.asarray(values, dtype=dt)[:, None] * 0.5
    w = np.asarray(weights, dtype=dt)
    q = np.linspace(-0.5, 3.5, 33, dtype=dt)[:, None]  # on the ties and between runs
    perm = np.random.default_rng(seed).permutation(pts.shape[0])
    a, _ = knotsafe.create_transforms(asarray(xp, pts, dt), asarray(xp, w, dt))
    b, _ = knotsafe.create_transforms(asarray(xp, pts[perm], dt), asarray(xp, w[perm], dt))
    got = to_numpy(a(asarray(xp, q, dt)))
    np.testing.assert_array_equal(got, to_numpy(b(asarray(xp, q, dt))))
    # Cumulative sums of 40 terms: relative rounding <= 40 eps of the dtype.
    tol = 40 * 4 * np.finfo(dt).eps
    np.testing.assert_allclose(got[:, 0], _tie_rule_cdf(pts[:, 0], w, q[:, 0]), rtol=0, atol=tol)


def test_inverse_transform_inside_a_run_of_tied_points_follows_the_tie_rule(xp: ModuleType) -> None:
    """``inv_transform`` at rank-space queries inside and beside a run of four tied, weighted points:
    the run's weight is spread evenly over its positions (ranks C + W i / m, increasing), so the
    inverse is numpy.interp on the tie rule's ranks.  A spread that is not increasing (the ranks
    unsorted inside the run) sends queries into the wrong bin.

    Queries: the midpoints of consecutive reference ranks and points a quarter of the way along.
    Tolerance: each computed rank is within 16 eps (relative to its value <= 1) of the float64
    reference (a pairwise cumulative sum of 7 weights, 3 levels, one product, two divisions, the
    scaling); a query at least a quarter of a bin from its knots then stays in its bin, and the output
    moves by at most slope * 2 * 16 eps plus one rounding of the output (eps * max|points|)."""
    dt = _dt(xp)
    eps = float(np.finfo(dt).eps)
    pts, w = TIE_POINTS.astype(dt), TIE_WEIGHTS.astype(dt)
    _, inv = knotsafe.create_transforms(asarray(xp, pts, dt), asarray(xp, w, dt))
    cols = [tie_rule_ranks(pts[:, d], w) for d in range(2)]
    u = np.stack([np.concatenate([t[:-1] + f * np.diff(t) for f in (0.25, 0.5, 0.75)]) for _, t in cols], axis=1)
    got = to_numpy(inv(asarray(xp, u, dt)))
    for d, (s, t) in enumerate(cols):
        expected = np.interp(u[:, d].astype(dt).astype(np.float64), t, s)
        slope = float(np.max(np.abs(np.diff(s)) / np.diff(t)))
        bound = slope * 2 * 16 * eps + eps * float(np.max(np.abs(s)))
        np.testing.assert_allclose(got[:, d], expected, rtol=0, atol=bound)


@pytest.mark.parametrize("dt", ["float32", "float64"])
def test_weighted_ranks_are_in_the_points_dtype_and_bitwise_equal_on_numpy_and_torch(dt: str) -> None:
    """``rank_knots`` promises ranks in the computation dtype, bitwise equal on every backend (only
    sorts, gathers, copies and elementwise IEEE operations of that dtype).  Weighted ranks of 507
    points with runs of ties (where the tie spread is computed) on NumPy and PyTorch: same dtype as
    the points, the same bits, and within 16 eps of the float64 tie rule (see the inverse test
    above).  A spread computed in float64 on NumPy (PyTorch keeps float32) breaks the dtype and the
    bits; so do unstable sorts, which order the tied points (and so sum their weights) differently
    on the two frameworks."""
    from knotsafe._lib.ranks import rank_knots

    torch = backend_module("torch")
    import array_api_compat.numpy as cnp
    import array_api_compat.torch as ctorch

    rng = np.random.default_rng(5)
    pts = np.concatenate([TIE_POINTS, np.round(rng.normal(size=(500, 2)), 1)]).astype(dt)
    w = np.concatenate([TIE_WEIGHTS, rng.uniform(0.1, 3.0, 500)]).astype(dt)
    _, ranks_np = rank_knots(cnp, registry.hooks_for(cnp), pts, w)
    _, ranks_torch = rank_knots(ctorch, registry.hooks_for(ctorch), torch.asarray(pts), torch.asarray(w))
    for d in range(pts.shape[1]):
        r_np, r_torch = np.asarray(ranks_np[d]), to_numpy(ranks_torch[d])
        assert r_np.dtype == np.dtype(dt) and r_torch.dtype == np.dtype(dt)
        np.testing.assert_array_equal(r_np, r_torch)
        _, expected = tie_rule_ranks(pts[:, d], w)
        np.testing.assert_allclose(r_np, expected, rtol=0, atol=16 * float(np.finfo(dt).eps))


def _rank_backends() -> list[tuple[str, Any, Any]]:
    """(name, namespace for rank_knots, maker of its arrays from NumPy data): NumPy (the
    reference) and every backend this session selects (:func:`tests._support.selected`)."""
    from array_api_compat import numpy as compat_np

    out: list[tuple[str, Any, Any]] = [("numpy", compat_np, np.asarray)]
    if selected("array_api_strict"):
        import array_api_strict

        out.append(("array_api_strict", array_api_strict, array_api_strict.asarray))
    if selected("torch"):
        import torch
        from array_api_compat import torch as compat_torch

        out.append(("torch", compat_torch, torch.asarray))
    if selected("jax"):
        import jax.numpy as jnp

        out.append(("jax", jnp, jnp.asarray))
        out.append(("jax.jit", jnp, jnp.asarray))
    if selected("dask"):
        import array_api_compat.dask.array as compat_dask
        import dask.array as da

        # Chunked in pieces of 64, so the scan crosses chunk boundaries.
        out.append(("dask", compat_dask, lambda a: da.from_array(np.asarray(a), chunks=64)))
    return out


def _jax_dtypes() -> list[str]:
    """Both float dtypes, or float32 alone where JAX runs without x64 (read from the environment as JAX
    reads it, so that collecting this file does not import JAX)."""
    if importlib.util.find_spec("jax") is None:
        return ["float64", "float32"]
    x64 = os.environ.get("JAX_ENABLE_X64", "").lower() in ("1", "true", "t", "yes", "y", "on")
    return ["float64", "float32"] if x64 else ["float32"]


@pytest.mark.parametrize("dtype", _jax_dtypes())
@settings(max_examples=10, deadline=None)
@given(
    n=st.sampled_from([1, 2, 7, 300]),  # few shapes: each new one recompiles on JAX
    values=st.lists(st.integers(0, 12), min_size=300, max_size=300),
    weights=st.lists(st.floats(1e-3, 1e3), min_size=300, max_size=300),
    uniform=st.booleans(),
)
def test_weighted_ranks_bitwise_equal_across_backends(
    dtype: str, n: int, values: list[int], weights: list[float], uniform: bool
) -> None:
    """NumPy, array-api-strict, PyTorch and JAX (eager and jitted; the x32 and x64
    sessions each run their dtypes) give bitwise the same knots and weighted ranks,
    and the forward transform at the points themselves (interp at a knot returns the
    rank there exactly) is bitwise equal too.  Ties everywhere: 300 points on 13 values."""
    from knotsafe._lib.ranks import rank_knots

    v = np.asarray(values[:n])
    pts = np.stack([v * 0.25, (v * 7 % 13) * 0.5], axis=1).astype(dtype)
    w = np.full(n, 0.7, dtype=dtype) if uniform else np.asarray(weights[:n], dtype=dtype)
    results = {}
    for name, xp, make in _rank_backends():
        f = lambda p, ww, _xp=xp: rank_knots(_xp, registry.hooks_for(_xp), p, ww)  # noqa: E731
        if name == "jax.jit":
            import jax

            f = jax.jit(f)
        knots, ranks = f(make(pts), make(w))
        tr, _ = knotsafe.create_transforms(make(pts), make(w))
        results[name] = (to_numpy(knots), np.stack([to_numpy(r) for r in ranks]), to_numpy(tr(make(pts))))
    ref = results["numpy"]
    assert ref[1].dtype == np.dtype(dtype)
    for name, got in results.items():
        for part, a, b in zip(("knots", "ranks", "transform(points)"), ref, got, strict=True):
            assert np.array_equal(a, b), f"{name} {part}: {np.count_nonzero(a != b)} differ"
    if uniform:  # uniform weights: exactly the unweighted ranks i / (N + 1) of NumPy
        np.testing.assert_array_equal(ref[1][0], np.arange(1, n + 1, dtype=dtype) / np.asarray(n + 1, dtype=dtype))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 64, 4097])
def test_fixed_order_cumulative_sum(n: int) -> None:
    """The scan behind the weighted ranks: equal to the exact (rational) cumulative sum within
    its bound, ceil(log2 n) eps * sum|x| (each element is a tree of at most that many
    additions), on every backend, bitwise."""
    import itertools
    import math
    from fractions import Fraction

    from knotsafe._lib.backends.registry import hooks_for
    from knotsafe._lib.ranks import _cumulative_sum

    x = np.random.default_rng(n).uniform(-1.0, 2.0, n)
    exact = np.array([float(c) for c in itertools.accumulate(Fraction(v) for v in x.tolist())])
    got = {
        name: to_numpy(_cumulative_sum(xp, hooks_for(xp).consolidate, make(x)))
        for name, xp, make in _rank_backends()
        if name != "jax.jit"
    }
    bound = max(math.ceil(math.log2(n)), 1) * np.finfo(np.float64).eps * np.cumsum(np.abs(x))
    for name, values in got.items():
        if values.dtype == np.float64:  # JAX without x64 makes float32 arrays
            assert np.all(np.abs(values - exact) <= bound), name
            np.testing.assert_array_equal(values, got["numpy"])


# --- dtypes, devices and arguments ----------------------------------------------------------------


@pytest.mark.parametrize("points_dt", ["float32", "float64"])
@pytest.mark.parametrize("queries_dt", ["float32", "float64", "int32", "int64"])
def test_transform_outputs_take_the_floating_dtype_of_queries_and_points(
    xp: ModuleType, points_dt: str, queries_dt: str
) -> None:
    """The documented output dtype: floating queries join the points' dtype (float32 with float64
    gives float64, either way round); integer queries take the points' dtype.  The values are
    sort + numpy.interp on i / (N + 1) (unweighted), within 48 eps of the coarser of the two
    dtypes (ranks rounded once in the points' dtype, a few roundings of the interpolation; values <= 3)."""
    if not has_float64(xp) and "float64" in (points_dt, queries_dt):
        pytest.skip("no float64")
    pts = np.array([[0.0, 1.0], [1.0, 3.0], [2.0, 2.0], [3.0, 0.5]])
    tr, inv = knotsafe.create_transforms(xp.asarray(pts.astype(points_dt)))
    q = np.array([[1, 2], [2, 1], [0, 3]])
    u = np.array([[0, 1], [1, 0], [0, 0]])
    expected = np.result_type(points_dt, queries_dt) if queries_dt.startswith("float") else np.dtype(points_dt)
    # The ranks and knots are computed in the points' dtype, the interpolation in the output's.
    eps = max(float(np.finfo(expected).eps), float(np.finfo(points_dt).eps))
    t = np.arange(1, 5) / 5
    for f, a, ref in (
        (tr, q, lambda c, x: np.interp(x, np.sort(pts[:, c]), t)),
        (inv, u, lambda c, x: np.interp(x, t, np.sort(pts[:, c]))),
    ):
        got = to_numpy(f(xp.asarray(a.astype(queries_dt))))
        assert got.dtype == expected
        for c in range(2):
            np.testing.assert_allclose(got[:, c], ref(c, a[:, c]), rtol=0, atol=16 * eps * 3)


@pytest.mark.parametrize("weighted", [False, True])
def test_strict_transforms_on_a_non_default_device(weighted: bool) -> None:
    """array-api-strict points (and weights) on its second device: every array the rank transform
    makes (the positions of the ranks and of the tie spread) is on that device (array-api-strict
    refuses to mix devices), and the values are sort + numpy.interp on the tie rule's ranks
    (unweighted: i / (N + 1)), within 16 eps (see the tie-run inverse test)."""
    xp = backend_module("array_api_strict")
    dev = xp.Device("device1")
    w = TIE_WEIGHTS if weighted else np.ones(len(TIE_WEIGHTS))
    tr, inv = knotsafe.create_transforms(
        xp.asarray(TIE_POINTS, device=dev), xp.asarray(w, device=dev) if weighted else None
    )
    q = np.array([[1.0, 2.5], [1.5, 0.75], [3.5, 4.5]])
    u = np.array([[0.3, 0.2], [0.55, 0.6], [0.8, 0.85]])
    got_f, got_i = tr(xp.asarray(q, device=dev)), inv(xp.asarray(u, device=dev))
    assert got_f.device == dev and got_i.device == dev
    for d in range(2):
        s, t = tie_rule_ranks(TIE_POINTS[:, d], w)
        slope = float(np.max(np.abs(np.diff(s)) / np.maximum(np.diff(t), 1e-300)))
        eps = float(np.finfo(np.float64).eps)
        np.testing.assert_allclose(to_numpy(got_f)[:, d], np.interp(q[:, d], s, t, left=0, right=1), atol=16 * eps)
        np.testing.assert_allclose(to_numpy(got_i)[:, d], np.interp(u[:, d], t, s), atol=slope * 32 * eps + eps * 4)


@pytest.mark.parametrize(
    ("points", "weights", "match"),
    [
        (np.zeros(5), None, "`points` must have shape"),
        (np.zeros((0, 2)), None, "`points` must have shape"),
        pytest.param(
            np.array([[0.0, 1.0], [np.nan, 2.0]]),
            None,
            r"`points` has 1 row\(s\) with NaN or inf; the first is row 1",
            marks=_LAZY_SKIP,
        ),
        (np.zeros((3, 2)), np.ones(4), r"`weights` must have shape \(3,\)"),
        pytest.param(
            np.zeros((3, 2)),
            np.array([1.0, -1.0, 1.0]),
            r"`weights` has 1 row\(s\) that are negative, NaN or inf; the first is row 1",
            marks=_LAZY_SKIP,
        ),
        pytest.param(
            np.zeros((3, 2)),
            np.array([np.nan, 1.0, -1.0]),
            r"`weights` has 2 row\(s\) that are negative, NaN or inf; the first is row 0",
            marks=_LAZY_SKIP,
        ),
        pytest.param(np.zeros((3, 2)), np.zeros(3), "`weights` must not all be zero", marks=_LAZY_SKIP),
    ],
)
def test_bad_input_names_the_argument(
    xp: ModuleType, points: np.ndarray, weights: np.ndarray | None, match: str
) -> None:
    dt = "float64" if has_float64(xp) else "float32"
    w = None if weights is None else asarray(xp, weights, dt)
    with pytest.raises(ValueError, match=match):
        knotsafe.create_transforms(asarray(xp, points, dt), w)


def test_bad_queries_and_options(xp: ModuleType) -> None:
    dt = "float64" if has_float64(xp) else "float32"
    pts = asarray(xp, np.arange(6.0).reshape(3, 2), dt)
    tr, inv = knotsafe.create_transforms(pts)
    with pytest.raises(ValueError, match=r"`q` must have shape \(K, 2\)"):
        tr(asarray(xp, np.zeros((4, 3)), dt))
    with pytest.raises(ValueError, match=r"`u` must have shape \(K, 2\)"):
        inv(asarray(xp, np.zeros(4), dt))
    with pytest.raises(TypeError, match="not both"):
        knotsafe.create_transforms(pts, asarray(xp, np.ones(3), dt), mesh_weight_map=asarray(xp, np.ones(3), dt))
    with pytest.raises(ValueError, match="`knot_grad`"):
        knotsafe.create_transforms(pts, knot_grad="nope")


def test_queries_of_the_wrong_kind_are_errors_naming_q_or_u(xp: ModuleType) -> None:
    """Each transform names its own argument: complex queries are a TypeError naming ``q``
    (``transform``) or ``u`` (``inv_transform``); a wrong
    shape is a ValueError naming it, with the expected shape."""
    dt = _dt(xp)
    tr, inv = knotsafe.create_transforms(asarray(xp, TIE_POINTS, dt))
    cplx = xp.asarray(np.array([[1.0 + 1.0j, 0.5]]))
    for f, name in ((tr, "q"), (inv, "u")):
        with pytest.raises(TypeError, match=rf"^`{name}` is complex"):
            f(cplx)
        with pytest.raises(ValueError, match=rf"^`{name}` must have shape \(K, 2\), got \(2, 3\)"):
            f(asarray(xp, np.zeros((2, 3)), dt))


@pytest.mark.skip_xp_backend("dask", reason="data check: skipped on lazy dask arrays")
def test_weight_errors_name_the_keyword_the_caller_used(xp: ModuleType) -> None:
    dt = "float64" if has_float64(xp) else "float32"
    pts = asarray(xp, np.zeros((3, 2)), dt)
    with pytest.raises(ValueError, match=r"^`mesh_weight_map` must have shape \(3,\)"):
        knotsafe.create_transforms(pts, mesh_weight_map=asarray(xp, np.ones(4), dt))
    with pytest.raises(ValueError, match=r"^`weights` must have shape \(3,\)"):
        knotsafe.create_transforms(pts, asarray(xp, np.ones(4), dt))
    with pytest.raises(TypeError, match=r"^pass `weights` or its alias `mesh_weight_map`, not both$"):
        knotsafe.create_transforms(pts, asarray(xp, np.ones(3), dt), mesh_weight_map=asarray(xp, np.ones(3), dt))
    with pytest.raises(ValueError, match=r"^`points` has 1 row\(s\) with NaN or inf; the first is row 0$"):
        knotsafe.create_transforms(asarray(xp, np.array([[0.0, np.nan]]), dt))


# --- gradients ------------------------------------------------------------------------------------


@pytest.mark.parametrize("keyword", ["weights", "mesh_weight_map"])
def test_create_transforms_gradient_wrt_weights(
    xp: ModuleType, autodiff: AutoDiff, keyword: str, rng: np.random.Generator
) -> None:
    if not has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1 (central differences)")
    pts = points_with_duplicate_rows(rng, 12)
    w = rng.uniform(0.5, 1.5, pts.shape[0])
    q = rng.normal(size=(25, 2)) * 0.8  # generic queries: none on a knot
    c = rng.normal(size=q.shape)
    P, Q, C = (asarray(xp, a) for a in (pts, q, c))

    def objective(wt: Any) -> Any:
        return xp.sum(knotsafe.create_transforms(P, **{keyword: wt})[0](Q) * C)

    (g,) = autodiff.grad(objective, [asarray(xp, w)], (0,))
    fd, err = central_difference_gradient(lambda ww: float(np.sum(transform_reference(pts, q, ww) * c)), w, 1e-4)
    assert np.any(np.abs(fd) > 1e3 * err)  # the check is not vacuous
    # Autodiff rounding: each of the 25 x 2 outputs sums <= N + 3 rounded terms of size <= |c| max|dt/dw|.
    ad_err = (pts.shape[0] + 3) * np.finfo(np.float64).eps * np.abs(c).sum() * np.abs(fd).max()
    assert np.all(np.abs(g - fd) <= err + ad_err), np.max(np.abs(g - fd) - err - ad_err)
    # Both spellings of the argument give one gradient.
    other = "weights" if keyword == "mesh_weight_map" else "mesh_weight_map"
    (g2,) = autodiff.grad(
        lambda wt: xp.sum(knotsafe.create_transforms(P, **{other: wt})[0](Q) * C), [asarray(xp, w)], (0,)
    )
    np.testing.assert_array_equal(g, g2)


def test_weight_gradient_of_four_points_worked_by_hand(xp: ModuleType, autodiff: AutoDiff) -> None:
    """Four points, one query per bin: the derivative of the ranks by hand.

    Points 0..3 with weights (1, 1, 2, 1): ranks r = C / C_3 * 4/5 with C the
    cumulative weights.  A query in the middle of bin j gives (r_j + r_j+1)/2,
    so the sum over queries at 0.5, 1.5, 2.5 is (4/5) A / C_3 with A = (C_0 +
    2 C_1 + 2 C_2 + C_3)/2; dC_m/dw_i = 1 for m >= i, so dA/dw_i is half the
    sum of the coefficients from i on and dC_3/dw_i = 1.
    """
    dt = _dt(xp)
    pts = np.array([[0.0], [1.0], [2.0], [3.0]])
    w = np.array([1.0, 1.0, 2.0, 1.0])
    q = np.array([[0.5], [1.5], [2.5]])
    C = np.cumsum(w)
    coef = np.array([1.0, 2.0, 2.0, 1.0]) / 2
    A = float(coef @ C)
    dA = np.array([coef[i:].sum() for i in range(4)])
    expected = 0.8 * (dA * C[-1] - A) / C[-1] ** 2
    P, Q = asarray(xp, pts, dt), asarray(xp, q, dt)
    (g,) = autodiff.grad(lambda wt: xp.sum(knotsafe.create_transforms(P, wt)[0](Q)), [asarray(xp, w, dt)], (0,))
    # A handful of roundings on O(1) numbers: 16 eps absolute.
    np.testing.assert_allclose(g, expected, rtol=0, atol=16 * eps_of(dt))


def test_min_gap_reaches_both_transforms(xp: ModuleType, autodiff: AutoDiff) -> None:
    """Points 1e-9 apart: a genuine bin by default (float64), a duplicate with min_gap=1e-8."""
    if not has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    pts = asarray(xp, np.array([[0.0], [1.0], [1.0 + 1e-9], [2.0]]))
    q = asarray(xp, np.array([[1.0 + 5e-10]]))
    u = asarray(xp, np.array([[0.5]]))  # between the ranks 2/5 and 3/5: the inverse's near-duplicate values

    def grads(**kw: object) -> tuple[float, float]:
        tr, inv = knotsafe.create_transforms(pts, **kw)
        (gq,) = autodiff.grad(tr, [q], (0,))
        (gu,) = autodiff.grad(inv, [u], (0,))
        return float(gq[0, 0]), float(gu[0, 0])

    gq, gu = grads()
    assert gq == pytest.approx(0.2 / 1e-9, rel=1e-6)  # rank step 1/5 over the gap
    assert gu == pytest.approx(1e-9 / 0.2, rel=1e-6)
    gq, gu = grads(min_gap=1e-8)
    assert gq == 0.0
    # The inverse's knots are the ranks (gap 0.2 > 1e-8): its slope is untouched.
    assert gu == pytest.approx(1e-9 / 0.2, rel=1e-6)
    _, inv = knotsafe.create_transforms(pts, min_gap=0.3)  # now the rank gaps are duplicates too
    (gu,) = autodiff.grad(inv, [u], (0,))
    assert float(gu[0, 0]) == 0.0


def test_knot_grad_stop_reaches_both_transforms(xp: ModuleType, autodiff: AutoDiff) -> None:
    """With knot_grad="stop" the knots get no gradient: the sorted points in transform, the ranks
    (and so the weights) in inv_transform."""
    dt = "float64" if has_float64(xp) else "float32"
    pts = asarray(xp, np.array([[0.0], [1.0], [3.0], [4.0]]), dt)
    w = asarray(xp, np.array([1.0, 2.0, 1.0, 1.0]), dt)
    q = asarray(xp, np.array([[0.5], [2.0]]), dt)
    u = asarray(xp, np.array([[0.3], [0.5]]), dt)
    for knot_grad, zero in (("exact", False), ("stop", True)):
        (gp,) = autodiff.grad(lambda p, kg=knot_grad: knotsafe.create_transforms(p, knot_grad=kg)[0](q), [pts], (0,))
        (gw,) = autodiff.grad(
            lambda ww, kg=knot_grad: knotsafe.create_transforms(pts, ww, knot_grad=kg)[1](u), [w], (0,)
        )
        assert np.all(gp == 0) == zero
        assert np.all(gw == 0) == zero


def _chain(xp: ModuleType, image: np.ndarray, sub: np.ndarray, dt: str, knot_grad: str = "exact"):  # type: ignore[no-untyped-def]
    """Objective of the Einstein radius: traced grid -> transforms -> rank-space sub-pixels."""
    img, sb = asarray(xp, image, dt), asarray(xp, sub, dt)
    weights = asarray(xp, np.linspace(1.0, 2.0, sub.shape[0] * 2).reshape(-1, 2), dt)

    def objective(theta):  # type: ignore[no-untyped-def]
        data = trace_sis(img, theta)
        tr, _ = knotsafe.create_transforms(data, knot_grad=knot_grad)
        return xp.sum(tr(trace_sis(sb, theta)) * weights)

    return objective


def test_chain_gradient_finite_and_matches_finite_difference(xp: ModuleType, autodiff: AutoDiff) -> None:
    from knotsafe.testing import circular_mask_grid

    if not has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    image = circular_mask_grid(1.0, 0.1, 1)
    sub = circular_mask_grid(1.0, 0.1, 2)
    f = _chain(xp, image, sub, "float64")
    theta = 0.6
    (g,) = autodiff.grad(f, [asarray(xp, theta)], (0,))

    w = np.linspace(1.0, 2.0, sub.shape[0] * 2).reshape(-1, 2)

    def u_np(t: float) -> np.ndarray:  # the independent reference: sort + numpy.interp on i/(N+1)
        return transform_reference(trace_sis(image, t, xp=np), trace_sis(sub, t, xp=np))

    h = 1e-9  # crosses no knot or bin boundary on this grid (checked below)
    # Sum the per-query differences: subtracting two sums would lose the step in their ulp.
    fd = np.sum(w * (u_np(theta + h) - u_np(theta - h))) / (2 * h)
    plus = np.argsort(trace_sis(image, theta + h, xp=np)[:, 0], kind="stable")
    minus = np.argsort(trace_sis(image, theta - h, xp=np)[:, 0], kind="stable")
    assert np.array_equal(plus, minus)
    assert np.isfinite(g).all()
    np.testing.assert_allclose(g, fd, rtol=1e-6)


@pytest.mark.parametrize("knot_grad", ["exact", "stop"])
def test_chain_gradient_finite_in_float32(xp: ModuleType, autodiff: AutoDiff, knot_grad: str) -> None:
    from knotsafe.testing import circular_mask_grid

    f = _chain(xp, circular_mask_grid(1.5, 0.05, 1), circular_mask_grid(1.5, 0.05, 2), "float32", knot_grad)
    (g,) = autodiff.grad(f, [asarray(xp, 1.6, "float32")], (0,))
    assert np.isfinite(g).all()
