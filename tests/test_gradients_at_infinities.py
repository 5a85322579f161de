"""Gradients with infinite knots and infinite or NaN values: finite, the same in forward and reverse mode.

A ``-inf`` first knot is the mirror image of a ``+inf`` last knot: the bin touching it has no slope and numpy's
value there is the finite end's value, so the value weights are ``(0, 1)`` (``(1, 0)`` at ``x = -inf`` itself,
where numpy returns ``values[0]``).  A bin with an infinite or NaN value (or a rise that overflows) has no slope
either: ``d/dx = d/dknots = 0`` there and the value weights stay ``(1 - w, w)``.

References: the contract written out here from docs/gradient-contract.md, and one-sided finite differences of
``numpy.interp`` (exact for the values, where the output is finite: the interpolant is linear in them).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import knotsafe
from tests._support import AutoDiff, asarray, backend_name, has_float64, to_numpy

INF = np.inf


def _dt(xp: ModuleType) -> str:
    return "float64" if has_float64(xp) else "float32"


def _reference(x: np.ndarray, k: np.ndarray, v: np.ndarray, dt: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``d out/d x`` (M,), ``d out/d knots`` (M, N), ``d out/d values`` (M, N) from the contract's words."""
    finite_k = np.abs(k[np.isfinite(k)])
    threshold = 8 * np.finfo(dt).eps * (finite_k.max() if finite_k.size else 0.0)
    m, n = x.size, k.size
    dx, dk, dv = np.zeros(m), np.zeros((m, n)), np.zeros((m, n))
    for i, xi in enumerate(x):
        if np.isnan(xi):
            continue
        if xi < k[0]:
            dv[i, 0] = 1.0
            continue
        if xi >= k[-1]:
            dv[i, -1] = 1.0
            continue
        j = min(int(np.searchsorted(k, xi, side="right")) - 1, n - 2)
        k0, k1 = k[j], k[j + 1]
        # A bin from -inf: numpy gives values[j] at x == k0, else values[j + 1].  A bin to +inf: w = 0.
        w = (0.0 if xi == k0 else 1.0) if k0 == -INF else (xi - k0) / (k1 - k0)
        dv[i, j] += 1.0 - w
        dv[i, j + 1] += w
        # The gap and the rise in the computation's dtype: a rise that overflows there has no slope.
        with np.errstate(all="ignore"):
            gap = np.asarray(k1, dt) - np.asarray(k0, dt)
            slope = (np.asarray(v[j + 1], dt) - np.asarray(v[j], dt)) / gap
        if gap > threshold and np.isfinite(gap) and np.isfinite(slope):
            dx[i] = slope
            dk[i, j] -= slope * (1.0 - w)
            dk[i, j + 1] -= slope * w
    return dx, dk, dv


def _finite_in(x: np.ndarray, k: np.ndarray, v: np.ndarray, dt: str) -> np.ndarray:
    """Whether each output is finite when numpy's formula runs in ``dt``: numpy.interp computes in float64,
    where a rise of two float32 values near the float32 maximum does not overflow; in float32 it does, and
    the output between those knots is not a number, so no difference of float64 outputs is its derivative."""
    with np.errstate(all="ignore"):
        f = np.interp(x, k, v)
        j = np.clip(np.searchsorted(k, x, side="right") - 1, 0, k.size - 2)
        rise = np.asarray(v[j + 1], dt) - np.asarray(v[j], dt)
    on_knot_or_outside = np.isin(x, k) | (x < k[0]) | (x > k[-1])
    return np.isfinite(f) & (on_knot_or_outside | np.isfinite(rise))


def _finite_differences(
    x: np.ndarray, k: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Right-hand differences of numpy.interp in float64: ``(dx, dk, dv, usable)``; ``usable`` marks the
    outputs (finite, off the knots) where they are derivatives.  Position steps are 2**-20 of the smallest
    finite gap, so no step crosses a knot; value steps 2**-20 of the largest value (values enter linearly)."""
    step = 2.0**-20
    with np.errstate(all="ignore"):
        f = np.interp(x, k, v)
        fk = k[np.isfinite(k)]
        h = np.min(np.diff(fk)) * step if fk.size > 1 else step
        dx = (np.interp(x + h, k, v) - f) / h
        dk = np.zeros((x.size, k.size))
        dv = np.zeros((x.size, k.size))
        for j in range(k.size):
            if np.isfinite(k[j]):
                kk = k.copy()
                kk[j] += h
                dk[:, j] = (np.interp(x, kk, v) - f) / h
            if np.isfinite(v[j]):
                vv = v.copy()
                hv = step * max(1.0, np.abs(v[np.isfinite(v)]).max())
                vv[j] += hv
                dv[:, j] = (np.interp(x, k, vv) - f) / hv
    usable = np.isfinite(f) & np.isfinite(x) & ~np.isin(x, k)
    return dx, dk, dv, usable


#: (queries, knots, values): a -inf first knot, its +inf mirror, both, and infinite, NaN and overflowing values.
CASES = {
    "-inf first knot": ([-5.0, 0.5, -INF, 2.0, INF, 0.0, 1.0, -0.25], [-INF, 0.0, 1.0], [5.0, 1.0, 3.0]),
    "+inf last knot": ([5.0, -0.5, INF, -2.0, -INF, 0.0, -1.0, 0.25], [-1.0, 0.0, INF], [3.0, 1.0, 5.0]),
    "both infinite ends": ([-5.0, 0.5, 5.0, -INF, INF, 0.0, 1.0], [-INF, 0.0, 1.0, INF], [5.0, 1.0, 3.0, 7.0]),
    "-inf and one finite knot": ([-5.0, -3.0, -1.0, -INF, INF], [-INF, -3.0], [2.0, 4.0]),
    "infinite value": ([1.0, 0.5, 1.5, 0.0, 2.0, -1.0, 3.0], [0.0, 1.0, 2.0], [0.0, INF, 5.0]),
    "-inf first value": ([1.0, 0.5, 1.5, 0.0, 2.0, -1.0, 3.0], [0.0, 1.0, 2.0], [-INF, 1.0, 2.0]),
    "NaN value": ([1.0, 0.5, 1.5, 0.0, 2.0, -1.0, 3.0], [0.0, 1.0, 2.0], [0.0, np.nan, 1.0]),
    "overflowing rise": ([0.5, 1.5, 0.0, 1.0], [0.0, 1.0, 2.0], ["-big", "big", 0.0]),
}


def _case(name: str, dt: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    big = 0.9 * float(np.finfo(dt).max)
    x, k, v = CASES[name]
    v = [big if a == "big" else -big if a == "-big" else a for a in v]
    return tuple(np.asarray(a, dtype=dt) for a in (x, k, v))  # type: ignore[return-value]


def _jacobians(
    autodiff: AutoDiff, wrap: Callable[[Callable[..., Any]], Callable[..., Any]], x: Any, k: Any, v: Any
) -> list[np.ndarray]:
    """d out/d x (M, M), d out/d knots (M, N), d out/d values (M, N) in reverse mode, after checking that
    forward mode gives the same numbers bitwise and that every entry is finite."""
    out = []
    for arg, f in (
        (x, wrap(lambda a: knotsafe.interp(a, k, v))),
        (k, wrap(lambda a: knotsafe.interp(x, a, v))),
        (v, wrap(lambda a: knotsafe.interp(x, k, a))),
    ):
        fwd, rev = autodiff.jacobians(f, arg)
        assert np.isfinite(fwd).all() and np.isfinite(rev).all()
        np.testing.assert_array_equal(fwd, rev)
        out.append(rev.astype(np.float64))
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_jacobians_are_finite_agree_between_modes_and_match_references(
    xp: ModuleType, autodiff: AutoDiff, case: str
) -> None:
    """jacfwd == jacrev bitwise, every entry finite (JAX: jax.jacfwd/jacrev; PyTorch: torch.func), equal to
    the contract; and where the output is finite and off the knots, equal to numpy.interp's right-hand
    differences (a reference the rule did not produce)."""
    dt = _dt(xp)
    x, k, v = _case(case, dt)
    X, K, V = (asarray(xp, a, dt) for a in (x, k, v))
    jx, jk, jv = _jacobians(autodiff, lambda f: f, X, K, V)
    x64, k64, v64 = (a.astype(np.float64) for a in (x, k, v))
    dx, dk, dv = _reference(x64, k64, v64, dt)
    rtol = 4 * np.finfo(dt).eps
    np.testing.assert_allclose(jx, np.diag(dx), rtol=rtol, atol=0)
    np.testing.assert_allclose(jk, dk, rtol=rtol, atol=0)
    np.testing.assert_allclose(jv, dv, rtol=rtol, atol=0)

    fd_x, fd_k, fd_v, usable = _finite_differences(x64, k64, v64)
    usable &= _finite_in(x64, k64, v64, dt)
    finite_k, finite_v = np.isfinite(k), np.isfinite(v)
    # The knots enter non-linearly: a right-hand difference is off by about step / gap relative to the
    # slope (2**-20); float32 gradients are further off by their own rounding.
    fv, fk = v64[finite_v], k64[finite_k]
    slope_scale = np.abs(fv).max(initial=1.0) / (np.min(np.diff(fk)) if fk.size > 1 else 1.0)
    tol = (2.0**-18 + 64 * np.finfo(dt).eps) * (1 + slope_scale)
    np.testing.assert_allclose(np.diag(jx)[usable], fd_x[usable], rtol=0, atol=tol)
    np.testing.assert_allclose(jk[usable][:, finite_k], fd_k[usable][:, finite_k], rtol=0, atol=tol)
    np.testing.assert_allclose(jv[usable][:, finite_v], fd_v[usable][:, finite_v], rtol=0, atol=2.0**-18)


def test_minus_inf_first_knot_and_infinite_value_jacobians_under_jit(xp: ModuleType, autodiff: AutoDiff) -> None:
    """Also under jax.jit: output 1 (x = 0.5) of a -inf first knot lies in the finite
    bin [0, 1) (d/dvalues = [0, 0.5, 0.5]); an infinite value gives jacfwd == jacrev = [0, 1, 0]."""
    dt = _dt(xp)
    wraps: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [lambda f: f]
    if backend_name(xp) == "jax":
        import jax

        wraps.append(jax.jit)
    x, k, v = (asarray(xp, a, dt) for a in ([-5.0, 0.5], [-INF, 0.0, 1.0], [5.0, 1.0, 3.0]))
    one, k3, vinf = (asarray(xp, a, dt) for a in ([1.0], [0.0, 1.0, 2.0], [0.0, INF, 5.0]))
    for wrap in wraps:
        _, jk, jv = _jacobians(autodiff, wrap, x, k, v)
        np.testing.assert_array_equal(jv[1], [0.0, 0.5, 0.5])
        np.testing.assert_array_equal(jk[1], [0.0, -1.0, -1.0])
        fwd, rev = autodiff.jacobians(wrap(lambda a: knotsafe.interp(one, k3, a)), vinf)
        np.testing.assert_array_equal(fwd, [[0.0, 1.0, 0.0]])
        np.testing.assert_array_equal(rev, [[0.0, 1.0, 0.0]])


@pytest.mark.parametrize("case", ["-inf first knot", "infinite value", "NaN value", "overflowing rise"])
def test_a_masked_output_adds_nothing_to_the_gradient(xp: ModuleType, autodiff: AutoDiff, case: str) -> None:
    """``where(isfinite(out), out, 0)``: the masked outputs (inf or NaN) have a zero cotangent, and the
    gradients are the contract's sums over the others (PyTorch: autograd's .backward)."""
    dt = _dt(xp)
    x, k, v = _case(case, dt)
    args = [asarray(xp, a, dt) for a in (x, k, v)]
    keep = _finite_in(*(a.astype(np.float64) for a in (x, k, v)), dt)

    def loss(*a: Any) -> Any:
        out = knotsafe.interp(*a)
        return xp.where(xp.isfinite(out), out, xp.zeros_like(out))

    gx, gk, gv = autodiff.grad(loss, args, (0, 1, 2))
    dx, dk, dv = _reference(*(a.astype(np.float64) for a in (x, k, v)), dt)
    rtol = 4 * np.finfo(dt).eps
    np.testing.assert_allclose(gx, np.where(keep, dx, 0.0), rtol=rtol, atol=0)
    with np.errstate(over="ignore"):  # overflowing rise: two knot partials of 0.9 max add up to inf, in both
        np.testing.assert_allclose(gk, dk[keep].sum(axis=0, dtype=dt), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(gv, dv[keep].sum(axis=0), rtol=rtol, atol=rtol)
    assert np.isfinite(gx).all() and np.isfinite(gv).all()


def test_minus_inf_first_knot_mirrors_plus_inf_last_knot(xp: ModuleType, autodiff: AutoDiff) -> None:
    """interp(x, k, v) == interp(-x, -k[::-1], v[::-1]) off the knots: the value gradients mirror too."""
    dt = _dt(xp)
    x = np.asarray([-7.0, -0.5, 0.25, 0.75, 3.0], dtype=dt)
    k = np.asarray([-INF, 0.0, 1.0, 2.0], dtype=dt)
    v = np.asarray([4.0, 1.0, 3.0, -2.0], dtype=dt)
    gx, gk, gv = autodiff.grad(knotsafe.interp, [asarray(xp, a, dt) for a in (x, k, v)], (0, 1, 2))
    mirrored = [asarray(xp, np.ascontiguousarray(a), dt) for a in (-x, -k[::-1], v[::-1])]
    mx, mk, mv = autodiff.grad(knotsafe.interp, mirrored, (0, 1, 2))
    np.testing.assert_array_equal(gv, mv[::-1])
    np.testing.assert_array_equal(gx, -mx)
    np.testing.assert_array_equal(gk, -mk[::-1])
    out = to_numpy(knotsafe.interp(*(asarray(xp, a, dt) for a in (x, k, v))))
    np.testing.assert_array_equal(out, np.interp(x, k, v).astype(dt))
