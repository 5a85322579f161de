"""Gradients: finite, zero in duplicate bins, bounded elsewhere, exact (central differences
and analytic partials), knot_grad="stop", forward = reverse mode, jit, vmap, JAX = PyTorch."""

from __future__ import annotations

import os

import numpy as np
import pytest

from conformance._backends import Driver, available, label_of, make_driver
from conformance._compute import arrays, check_cases, forward, grads, interp_fn, jacobians, jax_bundle
from conformance._data import Case, cases, jac_rows, reference, rel_error, ulp_distance
from conformance._record import RECORDER, Cell

KNOT_GRADS = ("exact", "stop")


def _name(case: Case) -> str:
    return case.name


@pytest.mark.prop("grad_finite")
def test_gradients_finite(autodiff: Driver, dtype: str, cell: Cell) -> None:
    """d/dx, d/dknots, d/dvalues of sum(interp) are finite on every case, for both knot_grad settings."""

    def measure(case: Case) -> tuple[float, int]:
        bad = total = 0
        for kg in KNOT_GRADS:
            for g in grads(autodiff, case, kg):
                bad += int(np.sum(~np.isfinite(g)))
                total += g.size
        return float(bad), total

    check_cases(cell, list(cases(dtype)), measure, _name)
    cell.text = f"0 non-finite / {cell.checked:,}" if cell.worst == 0 else None


@pytest.mark.prop("zero_slope")
def test_zero_slope_in_duplicate_bins(autodiff: Driver, dtype: str, cell: Cell) -> None:
    """Queries in bins with gap <= threshold get d/dx = 0 and d/dknots = 0 exactly."""
    n_dup = 0

    def measure(case: Case) -> tuple[float, int]:
        nonlocal n_dup
        ref = reference(case.knots, case.values, case.queries, case)
        gx = grads(autodiff, case, "exact")[0]
        worst = float(np.max(np.abs(gx[ref.duplicate]), initial=0.0))
        rows = jac_rows(case)
        dup_rows = ref.duplicate[rows]
        jk = jacobians(autodiff, case, "rev")[1]
        worst = max(worst, float(np.max(np.abs(jk[dup_rows]), initial=0.0)))
        n_dup += int(np.sum(ref.duplicate))
        return worst, int(np.sum(ref.duplicate))

    check_cases(cell, list(cases(dtype)), measure, _name)
    if n_dup == 0:
        pytest.fail(f"{dtype}: no query fell in a duplicate bin: the check would be vacuous")


@pytest.mark.prop("grad_bound")
def test_gradient_bounded_elsewhere(autodiff: Driver, dtype: str, cell: Cell) -> None:
    """Outside duplicate bins |d/dx| and every |d out_i / d knots_m| are <= |Δvalues of the bin| / threshold."""

    def measure(case: Case) -> tuple[float, int]:
        ref = reference(case.knots, case.values, case.queries, case)
        other = ~ref.duplicate
        bound = np.abs(ref.dvalue) / ref.thr
        gx = np.abs(grads(autodiff, case, "exact")[0].astype(np.float64))
        with np.errstate(all="ignore"):
            ratio = np.where(gx == 0, 0.0, gx / bound)
        worst = float(np.max(ratio[other], initial=0.0))
        rows = jac_rows(case)
        jk = np.abs(jacobians(autodiff, case, "rev")[1].astype(np.float64))
        row_max = np.max(jk, axis=1)
        with np.errstate(all="ignore"):
            ratio_k = np.where(row_max == 0, 0.0, row_max / bound[rows])
        worst = max(worst, float(np.max(ratio_k[other[rows]], initial=0.0)))
        return worst, int(np.sum(other))

    check_cases(cell, list(cases(dtype)), measure, _name)


# -- exactness ------------------------------------------------------------------------

#: Fraction of the tolerance the central difference's own rounding error may use:
#: queries whose difference quotient cannot resolve the tolerance are not valid references.
FD_NOISE_SHARE = 0.1
#: Knot steps as a fraction of the smallest adjacent gap: truncation error ~ this**2.
KNOT_STEP = 1e-4


def _fd_x(case: Case, ref: object, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Central differences of numpy.interp (float64) in x with steps that cross no knot.

    Returns (indices, difference quotients) of the queries where such a step
    exists (x strictly inside a genuine bin) and resolves the tolerance.
    """
    x = case.queries.astype(np.float64)
    k = case.knots.astype(np.float64)
    v = case.values.astype(np.float64)
    j, genuine = ref.j, ref.genuine  # type: ignore[attr-defined]
    n = k.size if k.size > 1 else 2
    kk = k if k.size > 1 else np.concatenate([k, k])
    k0, k1 = kk[j], kk[np.minimum(j + 1, n - 1)]
    with np.errstate(all="ignore"):
        h = np.minimum(x - k0, k1 - x) / 2
    ok = genuine & (h > 0) & np.isfinite(h)
    idx = np.flatnonzero(ok)
    xp_, xm = x[idx] + h[idx], x[idx] - h[idx]
    kw = {"left": case.left, "right": case.right}
    fp, fm = np.interp(xp_, k, v, **kw), np.interp(xm, k, v, **kw)
    fd = (fp - fm) / (xp_ - xm)
    slope = np.abs(ref.slope_np[idx])  # type: ignore[attr-defined]
    eps = np.finfo(np.float64).eps
    noise = 2 * eps * (np.abs(fp) + np.abs(fm)) / (xp_ - xm) + eps * slope
    with np.errstate(all="ignore"):
        resolves = noise <= FD_NOISE_SHARE * tol * np.maximum(slope, np.finfo(np.float64).tiny)
    return idx[resolves], fd[resolves]


@pytest.mark.prop("fd_{dtype}")
def test_central_differences(autodiff: Driver, dtype: str, cell: Cell) -> None:
    """Gradients equal central differences of numpy.interp (float64) whose steps cross no knot.

    d/dx for every query strictly inside a genuine bin; d out_i / d values_m for
    every entry (out is linear in the values); d out_i / d knots_m for knots
    whose both neighbouring bins are genuine, with steps of KNOT_STEP times the
    smallest adjacent gap and only for queries the step does not cross.
    Errors are relative to the largest partial of the same output.
    """
    tol = cell.tol if cell.tol is not None else (1e-6 if dtype == "float64" else 1e-3)

    def measure(case: Case) -> tuple[float, int]:
        ref = reference(case.knots, case.values, case.queries, case)
        gx = grads(autodiff, case, "exact")[0].astype(np.float64)
        idx, fd = _fd_x(case, ref, tol)
        worst = float(np.max(rel_error(gx[idx], fd), initial=0.0))
        count = idx.size
        w2, c2 = _fd_jac(autodiff, case, ref, tol)
        return max(worst, w2), count + c2

    check_cases(cell, list(cases(dtype)), measure, _name)


def _fd_jac(drv: Driver, case: Case, ref: object, tol: float) -> tuple[float, int]:
    rows = jac_rows(case)
    _, jk, jv = jacobians(drv, case, "rev")
    x = case.queries[rows].astype(np.float64)
    k = case.knots.astype(np.float64)
    v = case.values.astype(np.float64)
    kw = {"left": case.left, "right": case.right}
    finite = np.isfinite(x)
    dup = ref.duplicate[rows]  # type: ignore[attr-defined]
    eps = np.finfo(np.float64).eps
    worst, count = 0.0, 0
    n = k.size
    # Row scales: the largest contract partial of each output.
    scale_v = np.max(np.abs(ref.jac_values[rows]), axis=1)  # type: ignore[attr-defined]
    scale_k = np.max(np.abs(ref.jac_knots[rows]), axis=1)  # type: ignore[attr-defined]
    # values: out is linear in them, any step is exact up to rounding.
    for m in range(n):
        h = max(1.0, abs(v[m]))
        vp, vm = v.copy(), v.copy()
        vp[m] += h
        vm[m] -= h
        fp, fm = np.interp(x, k, vp, **kw), np.interp(x, k, vm, **kw)
        fd = (fp - fm) / (vp[m] - vm[m])
        noise = 2 * eps * (np.abs(fp) + np.abs(fm) + 2 * h) / (vp[m] - vm[m])
        use = finite & (noise <= FD_NOISE_SHARE * tol * np.maximum(scale_v, 1.0))
        err = rel_error(jv[use, m], fd[use], floor=np.maximum(scale_v[use], 1.0))
        worst = max(worst, float(np.max(err, initial=0.0)))
        count += int(np.sum(use))
    # knots: only knots whose adjacent bins are both genuine (or that end the grid).
    thr = ref.thr  # type: ignore[attr-defined]
    gaps = np.diff(case.knots)  # in the dtype, as the rule classifies
    for m in range(n):
        adj = []
        if m > 0:
            adj.append(gaps[m - 1])
        if m < n - 1:
            adj.append(gaps[m])
        if not adj or min(adj) <= thr:
            continue
        h = KNOT_STEP * float(min(adj))
        kp, km = k.copy(), k.copy()
        kp[m] += h
        km[m] -= h
        if np.any(np.diff(kp) <= 0) or np.any(np.diff(km) <= 0):
            continue
        fp, fm = np.interp(x, kp, v, **kw), np.interp(x, km, v, **kw)
        step = kp[m] - km[m]
        fd = (fp - fm) / step
        noise = 2 * eps * (np.abs(fp) + np.abs(fm)) / step
        far = np.abs(x - k[m]) > 2 * h  # the step crosses no query
        use = finite & far & ~dup & (noise <= FD_NOISE_SHARE * tol * scale_k)
        use |= finite & far & ~dup & (scale_k == 0) & (noise <= FD_NOISE_SHARE * tol)
        err = rel_error(jk[use, m], fd[use], floor=scale_k[use])
        worst = max(worst, float(np.max(err, initial=0.0)))
        count += int(np.sum(use))
    return worst, count


# -- analytic partials and knot_grad ---------------------------------------------------------


def _scaled(err: np.ndarray, scale: np.ndarray, eps: float) -> np.ndarray:
    """|err| / (eps * scale); entries with scale 0 must be exactly 0."""
    err = np.abs(err)
    with np.errstate(all="ignore"):
        out = np.where(err == 0, 0.0, err / (eps * scale))
    return np.where(np.isnan(out), np.inf, out)


@pytest.mark.prop("knot_grad_exact")
def test_analytic_partials(autodiff: Driver, dtype: str, cell: Cell) -> None:
    """d/dx = slope of numpy's bin (0 in duplicate bins), d/dvalues = barycentric weights,
    d/dknots = -slope (1 - w), -slope w; per entry, relative to the row's largest partial."""
    eps = float(np.finfo(dtype).eps)

    def measure(case: Case) -> tuple[float, int]:
        ref = reference(case.knots, case.values, case.queries, case)
        gx = grads(autodiff, case, "exact")[0].astype(np.float64)
        worst = float(np.max(_scaled(gx - ref.dx, np.abs(ref.dx), eps), initial=0.0))
        rows = jac_rows(case)
        _, jk, jv = jacobians(autodiff, case, "rev")
        for got, want in ((jk, ref.jac_knots[rows]), (jv, ref.jac_values[rows])):
            scale = np.max(np.abs(want), axis=1, keepdims=True)
            worst = max(worst, float(np.max(_scaled(got - want, scale, eps), initial=0.0)))
        return worst, gx.size + jk.size + jv.size

    check_cases(cell, list(cases(dtype)), measure, _name)


@pytest.mark.prop("knot_grad_stop")
def test_knot_grad_stop(autodiff: Driver, dtype: str, cell: Cell) -> None:
    """knot_grad="stop": knot gradients exactly 0 (reverse and forward mode); d/dx, d/dvalues as under "exact"."""

    def measure(case: Case) -> tuple[float, int]:
        gx_s, gk_s, gv_s = grads(autodiff, case, "stop")
        gx_e, _, gv_e = grads(autodiff, case, "exact")
        worst = float(np.max(np.abs(gk_s), initial=0.0))
        jk_rev = jacobians(autodiff, case, "rev", "stop")[1]
        jk_fwd = jacobians(autodiff, case, "fwd", "stop")[1]
        worst = max(worst, float(np.max(np.abs(jk_rev), initial=0.0)), float(np.max(np.abs(jk_fwd), initial=0.0)))
        same = np.max(ulp_distance(gx_s, gx_e), initial=0.0) + np.max(ulp_distance(gv_s, gv_e), initial=0.0)
        if same != 0:
            raise AssertionError(f"d/dx or d/dvalues differ from knot_grad='exact' by up to {same:g} ulp")
        return worst, gk_s.size + jk_rev.size + jk_fwd.size

    check_cases(cell, list(cases(dtype)), measure, _name)


# -- modes ------------------------------------------------------------------------------------


@pytest.mark.prop("fwd_rev")
def test_forward_equals_reverse(autodiff: Driver, dtype: str, cell: Cell) -> None:
    """Jacobians by forward mode (jacfwd: JVPs) and reverse mode (jacrev: VJPs) are identical."""

    def measure(case: Case) -> tuple[float, int]:
        rev = jacobians(autodiff, case, "rev")
        fwd = jacobians(autodiff, case, "fwd")
        worst, n = 0.0, 0
        for a, b in zip(rev, fwd, strict=True):
            if a.shape != b.shape:
                raise AssertionError(f"shapes {a.shape} vs {b.shape}")
            diff = np.where((a == b) | (np.isnan(a) & np.isnan(b)), 0.0, np.abs(a.astype(float) - b))
            worst = max(worst, float(np.max(np.where(np.isnan(diff), np.inf, diff), initial=0.0)))
            n += a.size
        return worst, n

    check_cases(cell, list(cases(dtype)), measure, _name)


@pytest.mark.prop("jit")
def test_jit_identical(autodiff: Driver, dtype: str, cell: Cell) -> None:
    """jax.jit of the values, the sum-gradients and the per-entry Jacobians gives bitwise the eager results."""
    if autodiff.framework != "jax":
        pytest.skip("n/a: jax.jit only (torch.compile is not part of the contract)")
    import jax

    parts: dict[str, float] = {}

    def measure(case: Case) -> tuple[float, int]:
        bundle = jax_bundle(autodiff, case)
        eager = autodiff.to_numpy(forward(autodiff, case))
        found = {"values": float(np.max(ulp_distance(bundle["out"], eager), initial=0.0))}
        for name, a, b in zip(
            ("d/dx", "d/dknots", "d/dvalues"), bundle["grads"], grads(autodiff, case, "exact"), strict=True
        ):
            found[name] = float(np.max(ulp_distance(a, b), initial=0.0))
        x, k, v = arrays(autodiff, case, jac_rows(case))
        eager_jac = jax.jacrev(interp_fn(case), argnums=(0, 1, 2))(x, k, v)
        for name, a, b in zip(("J_x", "J_knots", "J_values"), bundle[("jac", "rev", "exact")], eager_jac, strict=True):
            found[name] = float(np.max(ulp_distance(a, np.asarray(b)), initial=0.0))
        for key, val in found.items():
            parts[key] = max(parts.get(key, 0.0), val)
        return max(found.values()), eager.size

    try:
        check_cases(cell, list(cases(dtype)), measure, _name)
    finally:
        differing = {k: v for k, v in parts.items() if v}
        if differing:
            cell.note(f"{dtype}: worst ulp by output: " + ", ".join(f"{k} {v:g}" for k, v in differing.items()))


#: vmap batch: the case itself and copies scaled by powers of two (exact, duplicates kept).
VMAP_SCALES = ((1.0, 1.0), (2.0, 0.5), (0.25, 3.0))


@pytest.mark.prop("vmap")
def test_vmap_per_example(autodiff: Driver, dtype: str, cell: Cell) -> None:
    """vmap of the values and of the gradients equals the per-example results, bitwise."""

    def measure(case: Case) -> tuple[float, int]:
        f = interp_fn(case)
        xs, ks, vs = [], [], []
        for kscale, vscale in VMAP_SCALES:
            xs.append(autodiff.asarray(case.queries * kscale, dtype))
            ks.append(autodiff.asarray(case.knots * kscale, dtype))
            vs.append(autodiff.asarray(case.values * vscale, dtype))
        batched = [autodiff.stack(a) for a in (xs, ks, vs)]
        out = autodiff.to_numpy(autodiff.autodiff.vmap(f)(*batched))
        gb = [autodiff.to_numpy(g) for g in autodiff.autodiff.vmap_grad(f, (0, 1, 2))(*batched)]
        worst = 0.0
        for b in range(len(VMAP_SCALES)):
            one = autodiff.to_numpy(f(xs[b], ks[b], vs[b]))
            worst = max(worst, float(np.max(ulp_distance(out[b], one), initial=0.0)))
            for g_all, g_one in zip(gb, autodiff.autodiff.grad(f, (xs[b], ks[b], vs[b]), (0, 1, 2)), strict=True):
                worst = max(worst, float(np.max(ulp_distance(g_all[b], g_one), initial=0.0)))
        return worst, out.size

    check_cases(cell, list(cases(dtype)), measure, _name)


@pytest.mark.prop("cross")
def test_jax_equals_torch(autodiff: Driver, cell: Cell) -> None:
    """float64: the same data give the same d/dx (all queries) and per-entry knot/value partials on JAX and PyTorch."""
    if "float64" not in autodiff.dtypes:
        pytest.skip(autodiff.missing_dtype_reason.get("float64", "n/a: no float64"))
    other_spec = "torch" if autodiff.framework == "jax" else "jax"
    reason = available(other_spec)
    if reason is not None:
        pytest.skip(f"n/a: {reason}")
    if other_spec == "jax" and os.environ.get("JAX_ENABLE_X64", "0").lower() not in ("1", "true"):
        pytest.skip("n/a: needs JAX_ENABLE_X64=1 in this process (measured by the jax (x64) column)")
    other = make_driver(other_spec)

    def measure(case: Case) -> tuple[float, int]:
        # d/dx per query (no accumulation), then the per-entry Jacobians.
        gx_a, gx_b = grads(autodiff, case, "exact")[0], grads(other, case, "exact")[0]
        worst, n = float(np.max(rel_error(gx_a, gx_b), initial=0.0)), gx_a.size
        for a, b in zip(jacobians(autodiff, case, "rev"), jacobians(other, case, "rev"), strict=True):
            worst = max(worst, float(np.max(rel_error(a, b), initial=0.0)))
            n += a.size
        return worst, n

    # The same measurement is the other backend's cell too (it may run in another process).
    mirror = RECORDER.cell(label_of(other_spec), "cross")
    try:
        check_cases(cell, list(cases("float64")), measure, _name)
    except BaseException:
        mirror.failed_tests += 1
        raise
    finally:
        mirror.worst, mirror.unit, mirror.tol = cell.worst, cell.unit, cell.tol
        mirror.checked, mirror.bitwise = cell.checked, cell.bitwise
        for text in cell.notes:
            mirror.note(text)
    mirror.passed_tests += 1
