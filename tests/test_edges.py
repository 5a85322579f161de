"""Edge inputs (issue 11) and the one-read validation layer (issue 9.3).

Every case checks a number the code under test did not produce: numpy.interp
in float64, a run-by-run transcription of the weighted tie rule, the same
data unscaled, or the error message's count and row worked out here.
"""

from __future__ import annotations

import collections
import importlib.util
import os
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import knotsafe
from knotsafe import rectangular
from knotsafe._lib.backends import registry
from knotsafe._lib.validation import checks as _checks
from knotsafe.testing import lens_grid
from tests._support import asarray, autodiff_for, backend_name, has_float64, only_in_session_of, selected, to_numpy

FIXTURE_HYPOTHESIS = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _float(xp: ModuleType) -> str:
    return "float64" if has_float64(xp) else "float32"


def _small_grid(xp: ModuleType | None = None, dtype: str = "float64") -> tuple[Any, Any]:
    data, over = lens_grid(radius=0.8, pixel_scale=0.1, sub_size=2, rotation=0.3)
    if xp is None:
        return data.astype(dtype), over.astype(dtype)
    return asarray(xp, data, dtype), asarray(xp, over, dtype)


# ---------------------------------------------------------------------------
# one validation layer: each input's data is read at most once (issue 9.3)
# ---------------------------------------------------------------------------


def _count_host_reads(xp: ModuleType, monkeypatch: pytest.MonkeyPatch) -> collections.Counter[str]:
    """Count reads: calls of the read helper, and on array-api-strict and PyTorch every
    conversion of an array to Python or NumPy data, wherever it happens."""
    counts: collections.Counter[str] = collections.Counter()
    original = _checks.read_verdict

    def counting(xp_: ModuleType, verdict: Any) -> Any:
        counts["read_verdict"] += 1
        return original(xp_, verdict)

    monkeypatch.setattr(_checks, "read_verdict", counting)
    name = backend_name(xp)
    cls: Any = None
    if name == "array_api_strict":
        cls = type(xp.asarray(0.0))
    elif name == "torch":
        import torch

        cls = torch.Tensor
    if cls is not None:
        for method in ("__int__", "__bool__", "__float__", "__index__", "__array__", "item", "tolist"):
            if not hasattr(cls, method):
                continue
            real = getattr(cls, method)

            def wrapped(self: Any, *a: Any, _real: Any = real, **k: Any) -> Any:
                # array_api_compat.is_lazy_array (the generic is_concrete hook) probes
                # unknown array types by reading one element of the 0-d verdict
                # itself: counted apart, as it is the hook's, not a read of an input.
                probe = any(f.name == "is_lazy_array" for f in traceback.extract_stack(limit=6))
                # PyTorch's CPU-only NaN-retry shortcut reads the first estimate
                # (not an input, no device sync): counted apart too.
                shortcut = any(f.name == "_any_nan" for f in traceback.extract_stack(limit=6))
                counts["probe" if probe else "shortcut" if shortcut else "host"] += 1
                return _real(self, *a, **k)

            monkeypatch.setattr(cls, method, wrapped)
    return counts


def test_mappings_weights_reads_each_input_once(xp: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """data_grid, data_grid_over_sampled and mesh_weight_map: one read each, no repeats."""
    data, over = _small_grid(xp, _float(xp))
    w = asarray(xp, np.linspace(0.5, 2.0, data.shape[0]), _float(xp))
    counts = _count_host_reads(xp, monkeypatch)
    rectangular.mappings_weights(8, data, over, w)
    assert counts["read_verdict"] == 3
    if backend_name(xp) in ("array_api_strict", "torch"):
        assert counts["host"] == 3  # nothing else reads data anywhere in the call
    counts.clear()
    rectangular.pixel_centres(8, data, w)
    assert counts["read_verdict"] == 2


def test_create_transforms_reads_each_input_once(xp: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    data, over = _small_grid(xp, _float(xp))
    w = asarray(xp, np.linspace(0.5, 2.0, data.shape[0]), _float(xp))
    counts = _count_host_reads(xp, monkeypatch)
    tr, _ = knotsafe.create_transforms(data, w)
    tr(over)
    assert counts["read_verdict"] == 2
    if backend_name(xp) in ("array_api_strict", "torch"):
        assert counts["host"] == 2


@pytest.mark.parametrize("span_ratio", [None, 40.0])
def test_kernel_create_transforms_reads_each_input_once(
    xp: ModuleType, monkeypatch: pytest.MonkeyPatch, span_ratio: float | None
) -> None:
    """method='kernel': one read for the points (their checks, the bandwidth's, and without
    ``span_ratio`` the grid size from the data span), one for the weights; none in the callables."""
    if span_ratio is None and backend_name(xp) == "dask":
        pytest.skip("lazy dask points cannot size the grid: span_ratio is required there (tests/test_dask.py)")
    data, over = _small_grid(xp, _float(xp))
    w = asarray(xp, np.linspace(0.5, 2.0, data.shape[0]), _float(xp))
    counts = _count_host_reads(xp, monkeypatch)
    tr, inv = knotsafe.create_transforms(data, w, method="kernel", bandwidth=0.1, span_ratio=span_ratio)
    inv(tr(over))
    assert counts["read_verdict"] == 2
    if backend_name(xp) in ("array_api_strict", "torch"):
        assert counts["host"] == 2
    counts.clear()
    tr, inv = knotsafe.create_transforms(data, method="kernel", bandwidth=0.1, n_knots=32, span_ratio=span_ratio)
    inv(tr(over))
    assert counts["read_verdict"] == 1
    if backend_name(xp) in ("array_api_strict", "torch"):
        assert counts["host"] == 1


def test_kernel_mesh_reads_each_input_once(xp: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """transform='kernel': the mesh reads as the rank mesh does (its grid size is static)."""
    data, over = _small_grid(xp, _float(xp))
    w = asarray(xp, np.linspace(0.5, 2.0, data.shape[0]), _float(xp))
    counts = _count_host_reads(xp, monkeypatch)
    rectangular.mappings_weights(8, data, over, w, transform="kernel")
    assert counts["read_verdict"] == 3
    if backend_name(xp) in ("array_api_strict", "torch"):
        assert counts["host"] == 3
    counts.clear()
    rectangular.pixel_centres(8, data, w, transform="kernel")
    assert counts["read_verdict"] == 2


def test_complex_interp_reads_the_knots_once(xp: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """Complex values: the knots' order check is the one read (the recombination reads nothing)."""
    k = asarray(xp, [0.0, 1.0, 2.0], _float(xp))
    x = asarray(xp, [0.25, 1.5], _float(xp))
    v = xp.asarray(np.array([1.0 + 2.0j, -3.0 + np.inf * 1j, 0.5 - 1.0j], dtype=np.complex128))
    counts = _count_host_reads(xp, monkeypatch)
    knotsafe.interp(x, k, v)
    assert counts["read_verdict"] == 1
    if backend_name(xp) in ("array_api_strict", "torch"):
        assert counts["host"] == 1


# ---------------------------------------------------------------------------
# weighted ties (11.9)
# ---------------------------------------------------------------------------


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
    dt = _float(xp)
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


def test_uniform_weights_are_the_unweighted_staircase_with_ties(xp: ModuleType) -> None:
    dt = _float(xp)
    pts = np.repeat(np.arange(7.0), np.arange(1, 8))[:, None].astype(dt)
    q = asarray(xp, np.linspace(-1, 8, 91)[:, None], dt)
    plain, _ = knotsafe.create_transforms(asarray(xp, pts, dt))
    for c in (1.0, 0.3, 1e-30):
        weighted, _ = knotsafe.create_transforms(asarray(xp, pts, dt), asarray(xp, np.full(28, c), dt))
        np.testing.assert_array_equal(to_numpy(weighted(q)), to_numpy(plain(q)))


def test_weighted_mesh_rows_do_not_move_when_tied_points_are_permuted(xp: ModuleType) -> None:
    """The issue's measurement: 8,000 mesh rows, tied data points, permuted input order."""
    dt = _float(xp)
    rng = np.random.default_rng(3)
    data = np.round(rng.normal(size=(2000, 2)), 1).astype(dt)  # heavy ties on both axes
    over = rng.normal(size=(8000, 2)).astype(dt)
    w = rng.uniform(0.1, 2.0, 2000).astype(dt)
    perm = rng.permutation(2000)
    i1, w1 = rectangular.mappings_weights(20, asarray(xp, data, dt), asarray(xp, over, dt), asarray(xp, w, dt))
    i2, w2 = rectangular.mappings_weights(
        20, asarray(xp, data[perm], dt), asarray(xp, over, dt), asarray(xp, w[perm], dt)
    )
    np.testing.assert_array_equal(to_numpy(i1), to_numpy(i2))
    # The ranks are bitwise invariant (test above); the normalisation's mean and std
    # are sums in input order, whose rounding moves with the permutation: relative
    # error <= N eps, times the largest rank slope of this grid (~30 cells per unit).
    tol = 30 * 2000 * np.finfo(dt).eps
    np.testing.assert_allclose(to_numpy(w1), to_numpy(w2), rtol=0, atol=tol)


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
    if importlib.util.find_spec("jax") is None:
        return ["float64", "float32"]
    import jax.numpy as jnp

    return ["float64", "float32"] if has_float64(jnp) else ["float32"]


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


# ---------------------------------------------------------------------------
# non-finite points and weights (11.3)
# ---------------------------------------------------------------------------


@pytest.mark.skip_xp_backend(
    "dask", reason="data check: needs values, skipped on lazy dask arrays (tests/test_dask.py)"
)
@FIXTURE_HYPOTHESIS
@given(
    bad_rows=st.sets(st.integers(0, 29), min_size=1, max_size=6),
    bad=st.sampled_from([np.nan, np.inf, -np.inf]),
    column=st.integers(0, 1),
)
def test_non_finite_points_raise_with_count_and_first_row(
    xp: ModuleType, bad_rows: set[int], bad: float, column: int
) -> None:
    dt = _float(xp)
    pts = np.random.default_rng(0).normal(size=(30, 2)).astype(dt)
    pts[sorted(bad_rows), column] = bad
    msg = rf"`points` has {len(bad_rows)} row\(s\) with NaN or inf; the first is row {min(bad_rows)}"
    with pytest.raises(ValueError, match=msg):
        knotsafe.create_transforms(asarray(xp, pts, dt))
    data, over = _small_grid(None, dt)
    data[sorted(bad_rows), column] = bad
    msg = msg.replace("`points`", "`data_grid`")
    with pytest.raises(ValueError, match=msg):
        rectangular.mappings_weights(8, asarray(xp, data, dt), asarray(xp, over, dt))


@pytest.mark.skip_xp_backend(
    "dask", reason="data check: needs values, skipped on lazy dask arrays (tests/test_dask.py)"
)
@FIXTURE_HYPOTHESIS
@given(bad_rows=st.sets(st.integers(0, 29), min_size=1, max_size=6), bad=st.sampled_from([np.nan, np.inf, -1.0]))
def test_bad_weights_raise_with_count_and_first_row(xp: ModuleType, bad_rows: set[int], bad: float) -> None:
    dt = _float(xp)
    pts = np.random.default_rng(0).normal(size=(30, 2)).astype(dt)
    w = np.ones(30, dtype=dt)
    w[sorted(bad_rows)] = bad
    msg = rf"has {len(bad_rows)} row\(s\) that are negative, NaN or inf; the first is row {min(bad_rows)}"
    with pytest.raises(ValueError, match="`weights` " + msg):
        knotsafe.create_transforms(asarray(xp, pts, dt), asarray(xp, w, dt))
    with pytest.raises(ValueError, match="`mesh_weight_map` " + msg):
        knotsafe.create_transforms(asarray(xp, pts, dt), mesh_weight_map=asarray(xp, w, dt))
    data, over = _small_grid(None, dt)
    wm = np.ones(data.shape[0], dtype=dt)
    wm[sorted(bad_rows)] = bad
    with pytest.raises(ValueError, match="`mesh_weight_map` " + msg):
        rectangular.mappings_weights(8, asarray(xp, data, dt), asarray(xp, over, dt), asarray(xp, wm, dt))


@only_in_session_of("jax")
@pytest.mark.parametrize("where", ["points", "weights", "data_grid", "mesh_weight_map"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_under_jit_bad_data_gives_nan_not_a_number(where: str, bad: float) -> None:
    """Traced data cannot be checked: every output is NaN (never a plausible value)."""
    import jax
    import jax.numpy as jnp

    data, over = _small_grid(jnp, "float32")
    w = jnp.ones(data.shape[0])
    if where in ("points", "data_grid"):
        data = data.at[3, 1].set(bad)
    else:
        w = w.at[3].set(bad)
    if where in ("points", "weights"):
        u = jax.jit(lambda p, ww, q: knotsafe.create_transforms(p, ww)[0](q))(data, w, over)
        back = jax.jit(lambda p, ww, q: knotsafe.create_transforms(p, ww)[1](q))(data, w, over * 0 + 0.5)
        assert bool(jnp.all(jnp.isnan(u))) and bool(jnp.all(jnp.isnan(back)))
    else:
        idx, wts = jax.jit(lambda d, o, ww: rectangular.mappings_weights(8, d, o, ww))(data, over, w)
        assert bool(jnp.all(jnp.isnan(wts)))
        assert int(idx.min()) >= 0 and int(idx.max()) < 64  # in range: scatters cannot drop them
        centres = jax.jit(lambda d, ww: rectangular.pixel_centres(8, d, ww))(data, w)
        assert bool(jnp.all(jnp.isnan(centres)))


# ---------------------------------------------------------------------------
# half precision (11.1)
# ---------------------------------------------------------------------------


def _half_backends() -> list[tuple[str, str]]:
    cases = [("numpy", "float16")]
    if selected("torch"):
        cases += [("torch", "float16"), ("torch", "bfloat16")]
    if selected("jax"):
        cases += [("jax", "float16"), ("jax", "bfloat16")]
    return cases


class _Half:
    """Arrays of one half-precision dtype on one backend, and their gradients."""

    def __init__(self, backend: str, dtype: str) -> None:
        self.backend, self.dtype_name = backend, dtype
        if backend == "torch":
            import torch

            self.xp: Any = torch
            self.dtype: Any = getattr(torch, dtype)
        elif backend == "jax":
            import jax.numpy as jnp

            self.xp, self.dtype = jnp, getattr(jnp, dtype)
        else:
            self.xp, self.dtype = np, np.float16

    def __call__(self, a: Any) -> Any:
        if self.backend == "torch":
            return self.xp.tensor(np.asarray(a, dtype=np.float32), dtype=self.dtype)
        return self.xp.asarray(np.asarray(a, dtype=np.float32), dtype=self.dtype)

    def numpy(self, a: Any) -> np.ndarray:
        """A half-precision array as float64 NumPy data (exact)."""
        if self.backend == "torch":
            return a.detach().float().numpy().astype(np.float64)  # type: ignore[no-any-return]
        return np.asarray(a, dtype=np.float64)

    def rounded(self, a: np.ndarray) -> np.ndarray:
        """float64 data rounded to this half dtype (and back to float64)."""
        return self.numpy(self(a))

    def ulp(self, a: np.ndarray) -> np.ndarray:
        mant = 8 if self.dtype_name == "bfloat16" else 11
        tiny = 2.0**-14 if self.dtype_name == "float16" else 2.0**-126
        return np.maximum(np.abs(a), tiny) * 2.0 ** (1 - mant)

    def grad_x(self, f: Any, x: Any) -> np.ndarray:
        ad = autodiff_for(self.xp)
        assert ad is not None
        if self.backend == "torch":
            import torch

            leaf = x.detach().clone().requires_grad_(True)
            (g,) = torch.autograd.grad(f(leaf).sum(), [leaf])
            return self.numpy(g)
        (g,) = ad.grad(f, [x], [0])
        return np.asarray(g, dtype=np.float64)


@pytest.mark.parametrize(("backend", "dtype"), _half_backends())
@settings(max_examples=20, deadline=None)
@given(
    # Hundredths: no values in the half types' subnormal range, which XLA on CPU flushes to zero.
    knots=st.lists(st.integers(-10_000, 10_000).map(lambda i: i / 100), min_size=2, max_size=12, unique=True),
    values=st.lists(st.integers(-10_000, 10_000).map(lambda i: i / 100), min_size=12, max_size=12),
    queries=st.lists(st.integers(-12_000, 12_000).map(lambda i: i / 100), min_size=16, max_size=16),
)
def test_half_precision_values_and_gradients(
    backend: str, dtype: str, knots: list[float], values: list[float], queries: list[float]
) -> None:
    """Values: numpy.interp in float64 on the half inputs, within one half ulp (the float32
    result rounded once).  d/dx: the float64 slope of the bin, to half rounding; finite and
    non-zero in every genuine bin whose slope the dtype can represent."""
    h = _Half(backend, dtype)
    k = np.unique(h.rounded(np.asarray(knots)))
    if k.size < 2:
        return
    v = h.rounded(np.asarray(values[: k.size]))
    x = h.rounded(np.asarray(queries))
    out = knotsafe.interp(h(x), h(k), h(v))
    assert out.dtype == h.dtype
    got = h.numpy(out)
    ref = np.interp(x, k, v)
    assert np.all(np.abs(got - ref) <= h.ulp(ref) + 1e-6 * np.abs(ref)), (got, ref)
    if backend == "numpy":
        return
    g = h.grad_x(lambda a: knotsafe.interp(a, h(k), h(v)), h(x))
    j = np.clip(np.searchsorted(k, x, side="right") - 1, 0, k.size - 2)
    slope = (v[j + 1] - v[j]) / (k[j + 1] - k[j])
    inside = (x >= k[0]) & (x < k[-1])
    ref_g = np.where(inside, slope, 0.0)
    representable = np.abs(ref_g) < float(h.xp.finfo(h.dtype).max) / 2
    sel = representable & (np.abs(ref_g) >= 2 * float(h.xp.finfo(h.dtype).smallest_normal))
    assert np.all(np.isfinite(g[representable]))
    assert np.all(g[sel] != 0)
    np.testing.assert_allclose(g[sel], ref_g[sel], rtol=4 * h.ulp(np.ones(1))[0])


@pytest.mark.parametrize(("backend", "dtype"), _half_backends())
def test_half_precision_issue_examples(backend: str, dtype: str) -> None:
    h = _Half(backend, dtype)
    out = knotsafe.interp(h([5e-4]), h([0.0, 1e-3]), h([0.0, 100.0]))
    assert h.numpy(out)[0] == 50.0
    if backend == "numpy":
        return
    k, v = h([0.0, 0.05, 1.0]), h([0.0, 1.0, 2.0])
    g = h.grad_x(lambda a: knotsafe.interp(a, k, v), h([0.025, 0.5]))
    kk = h.rounded(np.array([0.0, 0.05, 1.0]))
    ref = np.array([1 / (kk[1] - kk[0]), 1 / (kk[2] - kk[1])])
    np.testing.assert_allclose(g, ref, rtol=4 * h.ulp(np.ones(1))[0])


@pytest.mark.parametrize(("backend", "dtype"), [c for c in _half_backends() if c[0] != "numpy"])
def test_half_precision_transform_gradients_zero_only_on_ties(backend: str, dtype: str) -> None:
    """1,000 normal points: d transform / d q is 0 exactly where the half-precision knots tie."""
    h = _Half(backend, dtype)
    rng = np.random.default_rng(11)
    pts = h.rounded(rng.normal(size=(1000, 1)))
    q = h.rounded(rng.uniform(-1.5, 1.5, size=(400, 1)))
    tr, _ = knotsafe.create_transforms(h(pts))
    g = h.grad_x(lambda a: tr(a), h(q))[:, 0]
    s = np.sort(pts[:, 0])
    j = np.searchsorted(s, q[:, 0], side="right") - 1
    tie = s[j + 1] == s[j]
    assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(g == 0, tie)
    assert tie.mean() < 0.5  # most queries sit in genuine bins


@pytest.mark.parametrize(("backend", "dtype"), _half_backends())
def test_half_precision_ranks_do_not_overflow(backend: str, dtype: str) -> None:
    h = _Half(backend, dtype)
    n = 70_000  # beyond float16's largest finite value, 65,504
    pts = h.rounded(np.linspace(-1.0, 1.0, n)[:, None])
    tr, _ = knotsafe.create_transforms(h(pts))
    q = np.array([[-2.0], [-0.5], [0.0], [0.5], [2.0]])
    u = h.numpy(tr(h(q)))[:, 0]
    ref = np.array([np.searchsorted(np.sort(pts[:, 0]), v, side="right") / (n + 1) for v in q[:, 0]])
    ref[-1], ref[0] = 1.0, 0.0
    assert np.all(np.isfinite(u))
    np.testing.assert_allclose(u, ref, atol=h.ulp(np.ones(1))[0])


# ---------------------------------------------------------------------------
# extreme scales (11.5)
# ---------------------------------------------------------------------------


@FIXTURE_HYPOTHESIS
@given(exponent=st.integers(-300, 300), mantissa=st.floats(1.0, 9.99))
def test_mesh_is_scale_invariant(xp: ModuleType, exponent: int, mantissa: float) -> None:
    """Same indices and weights for data scaled by 1e-300..1e300 (float64)."""
    if not has_float64(xp):
        pytest.skip("1e+-300 needs float64")
    data, over = _small_grid(None, "float64")
    factor = mantissa * 10.0**exponent
    i0, w0 = rectangular.mappings_weights(8, asarray(xp, data), asarray(xp, over))
    i1, w1 = rectangular.mappings_weights(8, asarray(xp, data * factor), asarray(xp, over * factor))
    i0, w0, i1, w1 = (to_numpy(a) for a in (i0, w0, i1, w1))
    # Scaling rounds each coordinate once (0.5 ulp), normalising adds a few ulp: the
    # index coordinates move by at most (n - 3) * (largest rank slope) * 8 eps * max|x|.
    s = np.sort((data - data.mean(0)) / data.std(0).min(), axis=0)
    gaps = np.diff(s, axis=0)
    slope = (1.0 / (data.shape[0] + 1)) / gaps[gaps > 0].min()
    tol = 5 * slope * 8 * np.finfo(np.float64).eps * np.abs(s).max()
    same = np.all(i0 == i1, axis=1)
    assert same.mean() > 0.99  # rows can only change cell where the coordinate is within tol of an edge
    np.testing.assert_allclose(w1[same], w0[same], rtol=0, atol=max(tol, 1e-12))


# ---------------------------------------------------------------------------
# index range (11.4)
# ---------------------------------------------------------------------------


def test_mesh_index_range(xp: ModuleType) -> None:
    data_np, _ = _small_grid(None, _float(xp))
    # Beyond the corner (smallest y, largest x): u = (0, 1), the largest flat index n * n - 1.
    corner = np.array([[data_np[:, 0].min() - 1, data_np[:, 1].max() + 1]])
    data, over = asarray(xp, data_np, _float(xp)), asarray(xp, corner, _float(xp))
    n = 46_341  # n * n - 1 > 2**31 - 1
    int_max = int(np.iinfo(np.int32).max)
    info = knotsafe._lib.validation.namespace.array_namespace(data).__array_namespace_info__()
    if info.default_dtypes()["integral"] == xp.int32:
        with pytest.raises(ValueError, match=r"a 46341 x 46341 mesh has 2147488281 entries"):
            rectangular.mappings_weights(n, data, over)
    else:
        idx, _ = rectangular.mappings_weights(n, data, over)
        top = int(to_numpy(idx).max())
        assert top == n * n - 1 > int_max


# ---------------------------------------------------------------------------
# complex input (11.8)
# ---------------------------------------------------------------------------


def test_complex_input_is_a_type_error_naming_the_argument(xp: ModuleType) -> None:
    c = "complex128" if has_float64(xp) else "complex64"
    data, over = _small_grid(None)
    pts, q, w = data[:20], over[:7], np.ones(20)
    cx = lambda a: xp.asarray(np.asarray(a, dtype=c))  # noqa: E731
    rx = lambda a: asarray(xp, a, _float(xp))  # noqa: E731
    tr, inv = knotsafe.create_transforms(rx(pts))
    cases = [
        ("points", lambda: knotsafe.create_transforms(cx(pts))),
        ("weights", lambda: knotsafe.create_transforms(rx(pts), cx(w))),
        ("mesh_weight_map", lambda: knotsafe.create_transforms(rx(pts), mesh_weight_map=cx(w))),
        ("q", lambda: tr(cx(q))),
        ("u", lambda: inv(cx(q))),
        ("data_grid", lambda: rectangular.mappings_weights(8, cx(data), rx(over))),
        ("data_grid_over_sampled", lambda: rectangular.mappings_weights(8, rx(data), cx(over))),
        ("mesh_weight_map", lambda: rectangular.mappings_weights(8, rx(data), rx(over), cx(np.ones(len(data))))),
        ("data_grid", lambda: rectangular.pixel_areas(8, cx(data))),
    ]
    for name, call in cases:
        with pytest.raises(TypeError, match=rf"`{name}` is complex"):
            call()


# ---------------------------------------------------------------------------
# first use from threads (11.10)
# ---------------------------------------------------------------------------

_THREAD_SCRIPT = textwrap.dedent(
    """
    import sys, threading
    import array_api_strict as xps
    import knotsafe
    assert "torch" not in sys.modules and "jax" not in sys.modules
    errors = []
    barrier = threading.Barrier(16)

    def user():
        x, k, v = xps.asarray([0.25, 0.5]), xps.asarray([0.0, 1.0]), xps.asarray([0.0, 2.0])
        barrier.wait()
        try:
            for _ in range(200):
                assert float(knotsafe.interp(x, k, v)[1]) == 1.0
                tr, _ = knotsafe.create_transforms(xps.reshape(k, (2, 1)))
                tr(xps.reshape(x, (2, 1)))
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    def importer(name):
        barrier.wait()
        __import__(name)

    threads = [threading.Thread(target=user) for _ in range(12)]
    threads += [threading.Thread(target=importer, args=(m,)) for m in ("torch", "jax", "torch", "jax")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(len(errors), errors[:2])
    """
)


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "jax", "array_api_strict")),
    reason="needs torch, jax and array_api_strict",
)
def test_first_use_while_other_threads_import_frameworks() -> None:
    """16 threads: 12 call knotsafe on array-api-strict arrays while 4 import torch and jax."""
    src = str(Path(knotsafe.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    for _ in range(2):
        run = subprocess.run(
            [sys.executable, "-c", _THREAD_SCRIPT], capture_output=True, text=True, env=env, timeout=300, check=False
        )
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stdout.startswith("0 []"), run.stdout
