"""The validation layer of every public function: each input's data is read at most once; bad data
raises an exception that names the argument (with the count of bad rows and the first one); data
that cannot be read (traced, lazy) is not checked, and then poisons the outputs to NaN; complex data
where real data is required is a TypeError naming the argument.

Each case checks a number the code under test did not produce: the reads counted here, the error
message's count and row worked out here, ``numpy.interp``.
"""

from __future__ import annotations

import collections
import traceback
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import knotsafe
from knotsafe import rectangular
from knotsafe._lib.validation import checks as _checks
from tests._support import (
    asarray,
    backend_module,
    backend_name,
    has_float64,
    only_in_session_of,
    small_lens_grid,
)

FIXTURE_HYPOTHESIS = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _dt(xp: ModuleType) -> str:
    return "float64" if has_float64(xp) else "float32"


# --- each input's data is read at most once -------------------------------------------------------


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
    data, over = small_lens_grid(xp, _dt(xp))
    w = asarray(xp, np.linspace(0.5, 2.0, data.shape[0]), _dt(xp))
    counts = _count_host_reads(xp, monkeypatch)
    rectangular.mappings_weights(8, data, over, w)
    assert counts["read_verdict"] == 3
    if backend_name(xp) in ("array_api_strict", "torch"):
        assert counts["host"] == 3  # nothing else reads data anywhere in the call
    counts.clear()
    rectangular.pixel_centres(8, data, w)
    assert counts["read_verdict"] == 2


def test_create_transforms_reads_each_input_once(xp: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    data, over = small_lens_grid(xp, _dt(xp))
    w = asarray(xp, np.linspace(0.5, 2.0, data.shape[0]), _dt(xp))
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
        pytest.skip("lazy dask points cannot size the grid: span_ratio is required there (tests/test_scale_out.py)")
    data, over = small_lens_grid(xp, _dt(xp))
    w = asarray(xp, np.linspace(0.5, 2.0, data.shape[0]), _dt(xp))
    counts = _count_host_reads(xp, monkeypatch)
    tr, inv = knotsafe.create_transforms(data, w, method="kernel", kernel_std=0.1, span_ratio=span_ratio)
    inv(tr(over))
    assert counts["read_verdict"] == 2
    if backend_name(xp) in ("array_api_strict", "torch"):
        assert counts["host"] == 2
    counts.clear()
    tr, inv = knotsafe.create_transforms(data, method="kernel", kernel_std=0.1, n_knots=32, span_ratio=span_ratio)
    inv(tr(over))
    assert counts["read_verdict"] == 1
    if backend_name(xp) in ("array_api_strict", "torch"):
        assert counts["host"] == 1


def test_kernel_mesh_reads_each_input_once(xp: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """transform='kernel': the mesh reads as the rank mesh does (its grid size is static)."""
    data, over = small_lens_grid(xp, _dt(xp))
    w = asarray(xp, np.linspace(0.5, 2.0, data.shape[0]), _dt(xp))
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
    k = asarray(xp, [0.0, 1.0, 2.0], _dt(xp))
    x = asarray(xp, [0.25, 1.5], _dt(xp))
    v = xp.asarray(np.array([1.0 + 2.0j, -3.0 + np.inf * 1j, 0.5 - 1.0j], dtype=np.complex128))
    counts = _count_host_reads(xp, monkeypatch)
    knotsafe.interp(x, k, v)
    assert counts["read_verdict"] == 1
    if backend_name(xp) in ("array_api_strict", "torch"):
        assert counts["host"] == 1


# --- bad data raises, naming the argument, the count of bad rows and the first --------------------


@pytest.mark.skip_xp_backend(
    "dask", reason="data check: needs values, skipped on lazy dask arrays (tests/test_scale_out.py)"
)
def test_eager_data_checks_raise(xp: ModuleType) -> None:
    """Eager arrays are concrete on every backend: unsorted knots raise, naming the argument.

    (A backend whose ``is_concrete`` said otherwise would skip the check and return NaN.)
    """
    dt = _dt(xp)
    k, v, x = (asarray(xp, a, dt) for a in ([0.0, 2.0, 1.0], [0.0, 1.0, 2.0], [0.5]))
    with pytest.raises(ValueError, match="`knots`"):
        knotsafe.interp(x, k, v)


@pytest.mark.skip_xp_backend(
    "dask", reason="data check: needs values, skipped on lazy dask arrays (tests/test_scale_out.py)"
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
    dt = _dt(xp)
    pts = np.random.default_rng(0).normal(size=(30, 2)).astype(dt)
    pts[sorted(bad_rows), column] = bad
    msg = rf"`points` has {len(bad_rows)} row\(s\) with NaN or inf; the first is row {min(bad_rows)}"
    with pytest.raises(ValueError, match=msg):
        knotsafe.create_transforms(asarray(xp, pts, dt))
    data, over = small_lens_grid(None, dt)
    data[sorted(bad_rows), column] = bad
    msg = msg.replace("`points`", "`data_grid`")
    with pytest.raises(ValueError, match=msg):
        rectangular.mappings_weights(8, asarray(xp, data, dt), asarray(xp, over, dt))


@pytest.mark.skip_xp_backend(
    "dask", reason="data check: needs values, skipped on lazy dask arrays (tests/test_scale_out.py)"
)
@FIXTURE_HYPOTHESIS
@given(bad_rows=st.sets(st.integers(0, 29), min_size=1, max_size=6), bad=st.sampled_from([np.nan, np.inf, -1.0]))
def test_bad_weights_raise_with_count_and_first_row(xp: ModuleType, bad_rows: set[int], bad: float) -> None:
    dt = _dt(xp)
    pts = np.random.default_rng(0).normal(size=(30, 2)).astype(dt)
    w = np.ones(30, dtype=dt)
    w[sorted(bad_rows)] = bad
    msg = rf"has {len(bad_rows)} row\(s\) that are negative, NaN or inf; the first is row {min(bad_rows)}"
    with pytest.raises(ValueError, match="`weights` " + msg):
        knotsafe.create_transforms(asarray(xp, pts, dt), asarray(xp, w, dt))
    with pytest.raises(ValueError, match="`mesh_weight_map` " + msg):
        knotsafe.create_transforms(asarray(xp, pts, dt), mesh_weight_map=asarray(xp, w, dt))
    data, over = small_lens_grid(None, dt)
    wm = np.ones(data.shape[0], dtype=dt)
    wm[sorted(bad_rows)] = bad
    with pytest.raises(ValueError, match="`mesh_weight_map` " + msg):
        rectangular.mappings_weights(8, asarray(xp, data, dt), asarray(xp, over, dt), asarray(xp, wm, dt))


# --- data that cannot be read is not checked, and poisons the outputs -----------------------------


def test_jax_eager_checks_run_and_traced_checks_are_skipped() -> None:
    """Unsorted knots raise eagerly (the hooks say the array is concrete) and are not read under jit."""
    jax = backend_module("jax")
    import jax.numpy as jnp

    k = jnp.asarray([0.0, 2.0, 1.0])
    v = jnp.asarray([0.0, 1.0, 2.0])
    x = jnp.asarray([0.5])
    with pytest.raises(ValueError, match="knots"):
        knotsafe.interp(x, k, v)
    jax.jit(knotsafe.interp)(x, k, v)  # traced: no data check, no error


@only_in_session_of("jax")
@pytest.mark.parametrize("where", ["points", "weights", "data_grid", "mesh_weight_map"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_under_jit_bad_data_gives_nan_not_a_number(where: str, bad: float) -> None:
    """Traced data cannot be checked: every output is NaN (never a plausible value)."""
    import jax
    import jax.numpy as jnp

    data, over = small_lens_grid(jnp, "float32")
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


@pytest.mark.parametrize("bad", ["points", "weights"])
def test_traced_bad_data_makes_every_transform_output_nan(bad: str) -> None:
    """Under ``jax.jit`` the data cannot be read, so it is not checked; the docstring's promise is
    that a non-finite point or a negative weight then makes every output of both transforms NaN,
    never a plausible number (eagerly the same data raises)."""
    jax = backend_module("jax")
    jnp = jax.numpy
    pts = np.array([[0.0, 1.0], [1.0, 3.0], [2.0, 2.0], [3.0, 0.5]])
    w = np.array([1.0, 2.0, 0.5, 1.5])
    if bad == "points":
        pts[2, 1] = np.inf
    else:
        w[1] = -1.0
    q = jnp.asarray([[0.5, 1.5], [2.5, 2.5]])

    def both(p: object, ww: object, qq: object) -> tuple[object, object]:
        tr, inv = knotsafe.create_transforms(p, ww)
        return tr(qq), inv(qq / 4)

    with pytest.raises(ValueError, match=f"`{bad}`"):
        both(jnp.asarray(pts), jnp.asarray(w), q)
    for out in jax.jit(both)(jnp.asarray(pts), jnp.asarray(w), q):
        assert np.all(np.isnan(np.asarray(out)))


# --- complex data where real data is required -----------------------------------------------------


def test_complex_input_is_a_type_error_naming_the_argument(xp: ModuleType) -> None:
    c = "complex128" if has_float64(xp) else "complex64"
    data, over = small_lens_grid(None)
    pts, q, w = data[:20], over[:7], np.ones(20)
    cx = lambda a: xp.asarray(np.asarray(a, dtype=c))  # noqa: E731
    rx = lambda a: asarray(xp, a, _dt(xp))  # noqa: E731
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


def test_complex_points_are_a_type_error_naming_points(xp: ModuleType) -> None:
    """Complex ``points`` are a TypeError whose message names ``points`` (the argument the caller
    passed), with or without weights."""
    try:
        pts = xp.asarray(np.array([[1.0 + 1.0j, 0.0], [2.0, 1.0j]]))
    except (TypeError, ValueError):  # pragma: no cover - a backend without complex arrays
        pytest.skip("no complex arrays")
    with pytest.raises(TypeError, match=r"^`points` is complex"):
        knotsafe.create_transforms(pts)
