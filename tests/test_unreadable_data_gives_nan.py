"""Where data cannot be read (jax.jit, torch.func.vmap, lazy Dask), bad data gives NaN, never a plausible number.

On concrete arrays the same data raises (tests of the argument checks); here the checks cannot run, so the
outputs they would have guarded are NaN: every output of ``interp`` with decreasing or NaN knots, the rows of
``mapping_matrix`` with an index out of range, every entry where a bad entry cannot be attributed to a row.
The references are numpy.interp and a dense matrix built here entry by entry.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import knotsafe
from knotsafe import rectangular
from tests._support import asarray, backend_name, has_float64, to_numpy


def _unreadable(xp: ModuleType, f: Callable[..., Any]) -> Callable[..., np.ndarray]:
    """``f`` run where its inputs' values cannot be read, returning NumPy."""
    name = backend_name(xp)
    if name == "jax":
        import jax

        jitted = jax.jit(f)
        return lambda *a: to_numpy(jitted(*a))
    if name == "torch":
        import torch

        return lambda *a: to_numpy(torch.func.vmap(f)(*(t[None] for t in a))[0])
    if name == "dask":
        return lambda *a: to_numpy(f(*a))  # lazy: knotsafe builds the graph without computing
    pytest.skip(f"{name} arrays can always be read")


def _readable(xp: ModuleType) -> ModuleType:
    """The namespace whose arrays of the same data can be read: Dask's are always lazy, so NumPy's."""
    return np if backend_name(xp) == "dask" else xp


def _dt(xp: ModuleType) -> str:
    return "float64" if has_float64(xp) else "float32"


X = [-1.0, 0.0, 0.5, 1.5, 2.0, 3.0]


@pytest.mark.parametrize(
    "knots",
    [[2.0, 1.0, 0.0], [0.0, np.nan, 2.0], [np.nan, 1.0, 2.0], [0.0, 1.0, np.nan], [0.0, 2.0, 1.0]],
    ids=["decreasing", "nan-inside", "nan-first", "nan-last", "one-step-back"],
)
def test_interp_with_bad_knots_is_nan_everywhere(xp: ModuleType, knots: list[float]) -> None:
    dt = _dt(xp)
    f = _unreadable(xp, lambda x, k, v: knotsafe.interp(x, k, v))
    out = f(*(asarray(xp, a, dt) for a in (X, knots, [0.0, 1.0, 4.0])))
    assert out.shape == (len(X),) and np.isnan(out).all()
    with pytest.raises(ValueError, match=r"^`knots` must be non-decreasing and free of NaN$"):
        knotsafe.interp(*(asarray(_readable(xp), a, dt) for a in (X, knots, [0.0, 1.0, 4.0])))


def test_interp_with_a_single_nan_knot_is_nan(xp: ModuleType) -> None:
    dt = _dt(xp)
    args = [asarray(xp, a, dt) for a in (X, [np.nan], [3.0])]
    assert np.isnan(_unreadable(xp, lambda x, k, v: knotsafe.interp(x, k, v))(*args)).all()
    with pytest.raises(ValueError, match=r"^`knots` must be non-decreasing and free of NaN$"):
        knotsafe.interp(*(asarray(_readable(xp), a, dt) for a in (X, [np.nan], [3.0])))


def test_interp_with_good_knots_is_numpy_interp(xp: ModuleType) -> None:
    """The control: sorted knots (duplicates and a single knot included) are not poisoned."""
    dt = _dt(xp)
    f = _unreadable(xp, lambda x, k, v: knotsafe.interp(x, k, v))
    for knots, values in (([0.0, 1.0, 1.0, 2.0], [0.0, 1.0, 2.0, 4.0]), ([1.0], [3.0])):
        args = [np.asarray(a, dtype=dt) for a in (X, knots, values)]
        want = np.interp(*(a.astype(np.float64) for a in args))
        np.testing.assert_allclose(f(*(asarray(xp, a, dt) for a in args)), want, rtol=4 * np.finfo(dt).eps)


def test_interp_with_period_and_a_non_finite_knot_is_nan(xp: ModuleType) -> None:
    dt = _dt(xp)
    f = _unreadable(xp, lambda x, k, v: knotsafe.interp(x, k, v, period=360.0))
    for bad in (np.inf, np.nan):
        out = f(*(asarray(xp, a, dt) for a in ([10.0, 200.0], [0.0, 90.0, bad], [1.0, 2.0, 3.0])))
        assert np.isnan(out).all()


@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")  # torch.func.vmap of conj
def test_interp_with_complex_values_and_bad_knots_is_nan(xp: ModuleType) -> None:
    if backend_name(xp) == "dask":
        pytest.skip("complex values on Dask are covered by the real case (same poison)")
    dt = _dt(xp)
    cdt = "complex128" if dt == "float64" else "complex64"
    values = xp.asarray(np.asarray([1 + 1j, 2 - 1j, 0.5j], dtype=cdt))
    f = _unreadable(xp, lambda x, k, v: knotsafe.interp(x, k, v))
    out = f(asarray(xp, X, dt), asarray(xp, [2.0, 1.0, 0.0], dt), values)
    assert np.isnan(out.real).all()


# ---------------------------------------------------------------------------
# mapping and curvature matrices
# ---------------------------------------------------------------------------

N_PIX = 9
W = np.array([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25], [0.5, 0.1, 0.3, 0.1]])


def _dense(indices: np.ndarray, weights: np.ndarray, n_pixels: int) -> np.ndarray:
    m = np.zeros((indices.shape[0], n_pixels))
    for k in range(indices.shape[0]):
        for c in range(indices.shape[1]):
            m[k, indices[k, c]] += weights[k, c]
    return m


def _int(xp: ModuleType, a: Any) -> Any:
    return xp.asarray(np.asarray(a))


@pytest.mark.parametrize("bad", [N_PIX, 99, -1, -N_PIX - 1])
def test_mapping_matrix_row_with_an_out_of_range_index_is_nan(xp: ModuleType, bad: int) -> None:
    dt = _dt(xp)
    idx = np.array([[0, 1, 2, 3], [4, bad, 5, 6], [7, 8, 8, 0]])
    good = idx.copy()
    good[1, 1] = 5
    f = _unreadable(xp, lambda i, w: rectangular.mapping_matrix(i, w, N_PIX))
    out = f(_int(xp, idx), asarray(xp, W, dt))
    assert np.isnan(out[1]).all()
    want = _dense(good, W, N_PIX)
    np.testing.assert_allclose(out[[0, 2]], want[[0, 2]], rtol=4 * np.finfo(dt).eps)
    np.testing.assert_allclose(f(_int(xp, good), asarray(xp, W, dt)), want, rtol=4 * np.finfo(dt).eps)
    with pytest.raises(ValueError, match=r"^`indices` must lie in \[0, n_pixels\)"):
        rectangular.mapping_matrix(_int(_readable(xp), idx), asarray(_readable(xp), W, dt), N_PIX)


def test_the_issue_example_under_jit() -> None:
    """jax.jit(lambda i: mapping_matrix(i, ones((1, 4)), 36).sum()) of [[0, 1, 2, 99]] gave 3.0 (-1: 4.0)."""
    from tests._support import backend_module

    jax = backend_module("jax")
    import jax.numpy as jnp

    f = jax.jit(lambda i: rectangular.mapping_matrix(i, jnp.ones((1, 4)), 36).sum())
    assert np.isnan(float(f(jnp.array([[0, 1, 2, 99]]))))
    assert np.isnan(float(f(jnp.array([[0, 1, 2, -1]]))))
    assert float(f(jnp.array([[0, 1, 2, 35]]))) == 4.0


def test_mapping_matrix_per_data_pixel_with_bad_entries(xp: ModuleType) -> None:
    """A data row averaging a row with a bad index is NaN (the others are the reference); a
    ``sub_to_data`` entry out of range belongs to no known row: every entry is NaN."""
    dt = _dt(xp)
    idx = np.array([[0, 1, 2, 3], [4, 99, 5, 6], [7, 8, 8, 0]])
    s2d = np.array([0, 1, 1])
    f = _unreadable(xp, lambda i, w, s: rectangular.mapping_matrix(i, w, N_PIX, sub_to_data=s, n_data=3))
    out = f(_int(xp, idx), asarray(xp, W, dt), _int(xp, s2d))
    assert np.isnan(out[1]).all()
    np.testing.assert_allclose(out[0], _dense(idx[:1], W[:1], N_PIX)[0], rtol=4 * np.finfo(dt).eps)
    np.testing.assert_array_equal(out[2], np.zeros(N_PIX))  # a data pixel without rows
    good = np.array([[0, 1, 2, 3], [4, 5, 5, 6], [7, 8, 8, 0]])
    for bad_s2d in ([0, 1, 3], [0, -1, 1]):
        assert np.isnan(f(_int(xp, good), asarray(xp, W, dt), _int(xp, bad_s2d))).all()


def test_curvature_matrix_with_an_out_of_range_index_is_nan(xp: ModuleType) -> None:
    dt = _dt(xp)
    f = _unreadable(xp, lambda i, w: rectangular.curvature_matrix(i, w, N_PIX))
    assert np.isnan(f(_int(xp, [[0, 1, 2, 3], [4, 99, 5, 6], [7, 8, 8, 0]]), asarray(xp, W, dt))).all()
    good = np.array([[0, 1, 2, 3], [4, 5, 5, 6], [7, 8, 8, 0]])
    m = _dense(good, W, N_PIX)
    # Generic scatter-add (Dask) differences a cumulative sum: rounding relative to the total.
    atol = 16 * np.finfo(dt).eps * float((m.sum(axis=1) ** 2).sum())
    np.testing.assert_allclose(f(_int(xp, good), asarray(xp, W, dt)), m.T @ m, rtol=0, atol=atol)
