"""Property-based fuzzing (hypothesis) of the interp and create_transforms properties.

Knots are drawn with forced exact duplicates and 1-3 ulp near-duplicates (in
the dtype under test), at several scales and offsets; queries include the
knots, points inside near-duplicate gaps, out-of-range points and NaN.  The
runner derandomizes hypothesis (a fixed seed) unless ``--fuzz-random``.
Each cell reports the worst sub-check as a fraction of its tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import knotsafe
from conformance._backends import Driver
from conformance._data import Case, forward_error, reference, rel_error, threshold, ulp_distance
from conformance._record import Cell
from conformance.test_gradients import _fd_x, _scaled

FD_TOL = {"float64": 1e-6, "float32": 1e-3}
KNOT_SIZES = (1, 2, 7, 24)
QUERIES = 16
POINTS = (1, 5, 17)


@dataclass(frozen=True)
class Problem:
    knots: np.ndarray
    values: np.ndarray
    queries: np.ndarray
    left: float | None
    right: float | None


@st.composite
def problems(draw: st.DrawFn, dtype: str) -> Problem:
    t = np.dtype(dtype).type
    up = t(np.inf)
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    offset = draw(st.sampled_from([0.0, 0.0, 1.0, -20.0])) * scale
    # Fixed sizes keep the number of distinct shapes (one compilation each on JAX) small.
    n = draw(st.sampled_from(KNOT_SIZES))
    unit = st.floats(-1.0, 1.0, allow_nan=False, width=32)
    base = draw(st.lists(unit, min_size=n, max_size=n))
    # 0: plain, 1: exact duplicate(s), 2: near-duplicate(s) 1 ulp apart each
    kinds = draw(st.lists(st.sampled_from([0, 0, 1, 2]), min_size=n, max_size=n))
    reps = draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
    knots: list[np.floating] = []
    for b, kind, r in zip(base, kinds, reps, strict=True):
        k = t(b * scale + offset)
        knots.append(k)
        for _ in range(r if kind else 0):
            k = k if kind == 1 else np.nextafter(k, up)
            knots.append(k)
    kn = np.sort(np.array(knots[:n], dtype=dtype))
    vals = draw(st.lists(st.floats(-10, 10, allow_nan=False, width=32), min_size=n, max_size=n))
    values = np.array(vals, dtype=dtype)
    if draw(st.booleans()) and n > 1:
        values[1::2] = values[::2][: values[1::2].size]  # some equal neighbours (flat bins)
    lo, hi = float(kn[0]), float(kn[-1])
    span = max(hi - lo, scale)
    picks = draw(st.lists(st.integers(0, n - 1), min_size=0, max_size=QUERIES // 4))
    q: list[float] = [kn[i] for i in picks]
    q += [np.nextafter(kn[i], up) for i in picks]  # inside a near-duplicate gap or just right of a knot
    if draw(st.booleans()):
        q.append(np.nan)
    fracs = draw(st.lists(st.floats(-0.2, 1.2), min_size=QUERIES, max_size=QUERIES))
    q += [lo + f * span for f in fracs]
    queries = np.array(q[:QUERIES], dtype=dtype)
    left = draw(st.one_of(st.none(), st.floats(-5, 5, width=32)))
    right = draw(st.one_of(st.none(), st.floats(-5, 5, width=32)))
    return Problem(_normal(kn), _normal(values), _normal(queries), left, right)


def _normal(a: np.ndarray) -> np.ndarray:
    """Subnormals flushed to zero (monotone, so sorted stays sorted).

    XLA on CPU flushes subnormals to zero, so JAX cannot reproduce numpy.interp
    on subnormal data (a difference of at most the smallest normal number);
    the fuzz draws normal numbers only and docs/conformance.md says so.
    """
    a = a.copy()
    a[(a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)] = 0
    return a


def _ratio(err: float, tol: float) -> float:
    if tol == 0:
        return 0.0 if err == 0 else float("inf")
    return err / tol


def _interp_checks(drv: Driver, p: Problem, dtype: str) -> dict[str, float]:
    """Every interp property on one problem, as err / tol."""
    case = Case("fuzz", dtype, p.knots, p.values, p.queries, p.left, p.right)
    ref = reference(p.knots, p.values, p.queries, case)
    x, k, v = (drv.asarray(a, dtype) for a in (p.queries, p.knots, p.values))
    kw = {"left": p.left, "right": p.right}
    out = drv.to_numpy(knotsafe.interp(x, k, v, **kw))  # type: ignore[arg-type]
    eps = float(np.finfo(dtype).eps)
    r: dict[str, float] = {}
    if drv.spec == "numpy" and dtype == "float64":
        r["forward (ulp)"] = _ratio(float(np.max(ulp_distance(out, ref.out))), 0.0)
    else:
        r["forward"] = _ratio(float(np.max(forward_error(out, ref, eps))), 4.0)
    if drv.autodiff is None:
        return r

    def f(knot_grad: str):
        return lambda a, b, c: knotsafe.interp(a, b, c, knot_grad=knot_grad, **kw)  # type: ignore[arg-type]

    ge = drv.autodiff.grad(f("exact"), (x, k, v), (0, 1, 2))
    gs = drv.autodiff.grad(f("stop"), (x, k, v), (0, 1, 2))
    r["finite"] = _ratio(float(sum(np.sum(~np.isfinite(g)) for g in (*ge, *gs))), 0.0)
    r["stop: knot grads 0"] = _ratio(float(np.max(np.abs(gs[1]))), 0.0)
    r["stop: x, values as exact"] = _ratio(
        float(max(np.max(ulp_distance(gs[0], ge[0])), np.max(ulp_distance(gs[2], ge[2])))), 0.0
    )
    jx, jk, jv = (drv.autodiff.jacobian(f("exact"), (x, k, v), i, "rev") for i in range(3))
    r["zero slope"] = _ratio(
        float(max(np.max(np.abs(ge[0][ref.duplicate]), initial=0), np.max(np.abs(jk[ref.duplicate]), initial=0))),
        0.0,
    )
    thr = float(threshold(p.knots, None))
    bound = np.abs(ref.dvalue) / thr
    g = np.maximum(np.abs(ge[0]), np.max(np.abs(jk), axis=1)).astype(np.float64)
    with np.errstate(all="ignore"):
        ratio = np.where(g == 0, 0.0, g / bound)
    r["bound"] = _ratio(float(np.max(ratio[~ref.duplicate], initial=0.0)), 1.0)
    worst = float(np.max(_scaled(ge[0].astype(np.float64) - ref.dx, np.abs(ref.dx), eps), initial=0.0))
    for got, want in ((jk, ref.jac_knots), (jv, ref.jac_values)):
        scale = np.max(np.abs(want), axis=1, keepdims=True)
        worst = max(worst, float(np.max(_scaled(got - want, scale, eps), initial=0.0)))
    r["analytic partials"] = _ratio(worst, 8.0)
    idx, fd = _fd_x(case, ref, FD_TOL[dtype])
    r["central differences (x)"] = _ratio(float(np.max(rel_error(ge[0][idx], fd), initial=0.0)), FD_TOL[dtype])
    jf = [drv.autodiff.jacobian(f("exact"), (x, k, v), i, "fwd") for i in range(3)]
    diff = max(float(np.max(ulp_distance(a, b), initial=0.0)) for a, b in zip((jx, jk, jv), jf, strict=True))
    r["forward = reverse"] = _ratio(diff, 0.0)
    return r


def _record(cell: Cell, checks: dict[str, float]) -> None:
    worst_key = max(checks, key=lambda key: checks[key])
    note(f"checks (err / tol): {checks}")
    cell.update(checks[worst_key], 1)
    bad = {key: val for key, val in checks.items() if not val <= 1.0}
    assert not bad, f"out of tolerance (err / tol): {bad}"


@pytest.mark.prop("fuzz_interp")
def test_fuzz_interp(backend: Driver, dtype: str, cell: Cell) -> None:
    """Forward parity, and on autodiff backends: finite, stop, zero slope, bound, analytic, central differences,
    forward = reverse; on problems with forced duplicates and near-duplicates."""

    @given(problems(dtype))
    def run(p: Problem) -> None:
        _record(cell, _interp_checks(backend, p, dtype))

    run()
    if backend.autodiff is None:
        cell.partial.append("values only: " + backend.no_autodiff_reason.removeprefix("n/a: "))


@st.composite
def point_sets(draw: st.DrawFn, dtype: str) -> np.ndarray:
    t = np.dtype(dtype).type
    dim = draw(st.integers(1, 3))
    n = draw(st.sampled_from(POINTS))
    cols = []
    for _ in range(dim):
        vals = draw(st.lists(st.floats(-100, 100, allow_nan=False, width=32), min_size=n, max_size=n))
        col = np.array(vals, dtype=dtype)
        if n > 2 and draw(st.booleans()):
            col[n // 2 :] = col[: n - n // 2]  # exact duplicates
        if n > 2 and draw(st.booleans()):
            col[1::3] = np.nextafter(col[::3][: col[1::3].size], t(np.inf))  # near-duplicates
        cols.append(col)
    return _normal(np.stack(cols, axis=1))


@pytest.mark.prop("fuzz_transforms")
def test_fuzz_transforms(backend: Driver, dtype: str, cell: Cell) -> None:
    """Monotone in [0, 1], inverse on distinct knots, uniform weights bitwise, columns independent."""
    eps = float(np.finfo(dtype).eps)

    @given(point_sets(dtype), st.floats(0.01, 100.0))
    def run(pts: np.ndarray, c: float) -> None:
        n, dim = pts.shape
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        q = np.sort(np.concatenate([pts, np.linspace(lo - 1, hi + 1, 9).astype(pts.dtype)]), axis=0)
        P, Q = backend.asarray(pts, dtype), backend.asarray(q, dtype)
        t, inv = knotsafe.create_transforms(P)
        tq = backend.to_numpy(t(Q)).astype(np.float64)
        checks = {
            "monotone": _ratio(float(max(np.max(-np.diff(tq, axis=0), initial=0.0), 0.0)), 0.0),
            "in [0, 1]": _ratio(float(max(-tq.min(), tq.max() - 1.0, 0.0)), 0.0),
        }
        u = t(P)
        back = backend.to_numpy(inv(u)).astype(np.float64)
        u_np = backend.to_numpy(u)
        worst = 0.0
        ranks = (np.arange(1, n + 1, dtype=dtype) / np.dtype(dtype).type(n + 1)).astype(dtype)
        for d in range(dim):
            col = pts[:, d]
            values, counts = np.unique(col, return_counts=True)
            distinct = np.isin(col, values[counts == 1])
            ref = reference(ranks, np.sort(col), u_np[:, d])
            diff = np.abs(back[:, d] - col)
            with np.errstate(all="ignore"):
                err = np.where(diff == 0, 0.0, diff / (eps * ref.scale))
            worst = max(worst, float(np.max(np.where(np.isnan(err), np.inf, err)[distinct], initial=0.0)))
        checks["inverse"] = _ratio(worst, 4.0)
        tw, iw = knotsafe.create_transforms(P, backend.asarray(np.full(n, c), dtype))
        checks["uniform weights"] = _ratio(
            float(
                max(
                    np.max(ulp_distance(backend.to_numpy(tw(Q)), tq.astype(dtype))),
                    np.max(ulp_distance(backend.to_numpy(iw(u)), back.astype(dtype))),
                )
            ),
            0.0,
        )
        cols = 0.0
        for d in range(dim):
            t1, _ = knotsafe.create_transforms(backend.asarray(pts[:, d : d + 1], dtype))
            one = backend.to_numpy(t1(backend.asarray(q[:, d : d + 1], dtype)))[:, 0]
            cols = max(cols, float(np.max(ulp_distance(one, tq[:, d].astype(dtype)))))
        checks["columns independent"] = _ratio(cols, 0.0)
        _record(cell, checks)

    run()
