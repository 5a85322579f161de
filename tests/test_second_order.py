"""Second derivatives: of ``knotsafe.interp`` (the derivatives of the first-derivative rule) and of the
kernel transform (forward and exact inverse), through every second-order mode of JAX and PyTorch.

References are never knotsafe's own output.  For interp: the contract's own numbers (a worked
example) and central differences of the analytic gradient written here in NumPy from the contract
table.  For the kernel transform: the analytic first derivatives of the exact kernel sum
(``F' = sum w phi(z) / h``, ``dF/dh = -sum w phi(z) z / h``), an independent bisection inverse of the
exact sum, central differences of those analytic gradients, and the framework's own Hessian of the
exact sum (:func:`tests._support.exact_kernel_transform`).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from scipy.special import ndtr

import knotsafe
from tests import _support
from tests._support import (
    backend_name,
    exact_kernel_transform,
    has_float64,
    kernel_points,
    only_in_session_of,
    to_numpy,
)

_NO_LAZY = pytest.mark.skip_xp_backend("dask", reason="no autodiff on dask arrays")


# --- interp ---------------------------------------------------------------------------------------


X = np.array([0.5, 2.0, 4.0])
K = np.array([0.0, 1.0, 3.0, 6.0])
V = np.array([0.0, 2.0, 3.0, 9.0])


# The knot Hessian diagonal of sum(interp(x, k, v)**2) at X, K, V: -2, 39/8, -95/24, 16/3
# (worked out by hand from the contract table).
DIAG = np.array([-2.0, 39.0 / 8.0, -95.0 / 24.0, 16.0 / 3.0])


def _ref_grad(x: np.ndarray, k: np.ndarray, v: np.ndarray, knot_grad: str = "exact") -> np.ndarray:
    """Gradient of sum(interp**2) w.r.t. (x, k, v), from the contract table (NumPy)."""
    out = np.interp(x, k, v)
    thr = 8 * np.finfo(k.dtype).eps * np.max(np.abs(k))
    gx, gk, gv = np.zeros_like(x), np.zeros_like(k), np.zeros_like(v)
    for i, xi in enumerate(x):
        c = 2 * out[i]
        if not (k[0] <= xi < k[-1]):
            gv[0 if xi < k[0] else -1] += c
            continue
        j = min(max(np.searchsorted(k, xi, side="right") - 1, 0), k.size - 2)
        gap = k[j + 1] - k[j]
        w = (xi - k[j]) / gap if gap > 0 else 0.0
        slope = (v[j + 1] - v[j]) / gap if gap > thr else 0.0
        gx[i] = c * slope
        gv[j] += c * (1 - w)
        gv[j + 1] += c * w
        if knot_grad == "exact":
            gk[j] -= c * slope * (1 - w)
            gk[j + 1] -= c * slope * w
    return np.concatenate([gx, gk, gv])


def _cd_hessian(x: np.ndarray, k: np.ndarray, v: np.ndarray, knot_grad: str = "exact", h: float = 1e-6) -> np.ndarray:
    """Central differences of the analytic gradient; steps cross no knot or query."""
    theta = np.concatenate([x, k, v])
    nx, nk = x.size, k.size
    cols = []
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = h
        p, m = theta + e, theta - e
        gp = _ref_grad(p[:nx], p[nx : nx + nk], p[nx + nk :], knot_grad)
        gm = _ref_grad(m[:nx], m[nx : nx + nk], m[nx + nk :], knot_grad)
        cols.append((gp - gm) / (2 * h))
    return np.stack(cols, axis=1)


def _objective(xp: ModuleType, knot_grad: str = "exact") -> Callable[[Any], Any]:
    nx, nk = X.size, K.size

    def f(theta: Any) -> Any:
        out = knotsafe.interp(theta[:nx], theta[nx : nx + nk], theta[nx + nk :], knot_grad=knot_grad)
        return xp.sum(out**2)

    return f


def _hessians(xp: ModuleType, f: Callable[[Any], Any], theta: np.ndarray) -> dict[str, np.ndarray]:
    """The full Hessian through every second-order mode of the backend."""
    if backend_name(xp) == "jax":
        import jax
        import jax.numpy as jnp

        t = jnp.asarray(theta)
        return {
            "hessian": np.asarray(jax.hessian(f)(t)),
            "jacfwd(jacrev)": np.asarray(jax.jacfwd(jax.jacrev(f))(t)),
            "jacrev(jacrev)": np.asarray(jax.jacrev(jax.jacrev(f))(t)),
            "jit(hessian)": np.asarray(jax.jit(jax.hessian(f))(t)),
        }
    import torch

    t = torch.tensor(theta, dtype=torch.float64)
    leaf = t.clone().requires_grad_()
    (g,) = torch.autograd.grad(f(leaf), leaf, create_graph=True)
    double = torch.stack([torch.autograd.grad(g[i], leaf, retain_graph=True)[0] for i in range(g.shape[0])])
    return {
        "torch.func.hessian": to_numpy(torch.func.hessian(f)(t)),
        "jacfwd(grad)": to_numpy(torch.func.jacfwd(torch.func.grad(f))(t)),
        "jacrev(grad)": to_numpy(torch.func.jacrev(torch.func.grad(f))(t)),
        "double backward": to_numpy(double),
    }


@pytest.fixture
def xp64(xp: ModuleType, autodiff: object) -> ModuleType:
    if not has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    return xp


@pytest.mark.parametrize("knot_grad", ["exact", "stop"])
def test_hessian_of_the_worked_example_matches_its_numbers_and_central_differences(
    xp64: ModuleType, knot_grad: str
) -> None:
    theta = np.concatenate([X, K, V])
    ref = _cd_hessian(X, K, V, knot_grad)
    nk = slice(X.size, X.size + K.size)
    if knot_grad == "stop":
        # "stop" is interp(x, stop_gradient(knots), v): the knots are constants
        # to derivatives of every order, so d(gradient)/dknots is 0 too.
        ref[:, nk] = 0.0
    # Central differences of a rational gradient: truncation O(h^2 |g'''|) ~ 1e-11,
    # rounding eps |g| / h ~ 1e-9 for |g| <= 50; 1e-7 bounds both with margin.
    tol = 1e-7 * max(1.0, np.max(np.abs(ref)))
    for mode, hess in _hessians(xp64, _objective(xp64, knot_grad), theta).items():
        assert np.all(np.isfinite(hess)), mode
        np.testing.assert_allclose(hess, ref, rtol=0, atol=tol, err_msg=mode)
        if knot_grad == "exact":
            np.testing.assert_allclose(np.diag(hess[nk, nk]), DIAG, rtol=1e-14, atol=0, err_msg=mode)
        else:
            assert np.all(hess[nk, :] == 0) and np.all(hess[:, nk] == 0), mode


def test_mixed_x_values_second_derivative(xp64: ModuleType) -> None:
    """d2 out / dx dv at x = 0.5 in the bin [0, 1): d/dv of the slope = [-1, 1, 0, 0]."""
    k, v = xp64.asarray(K), xp64.asarray(V)
    if backend_name(xp64) == "jax":
        import jax

        def gx(vv: Any) -> Any:
            return jax.grad(lambda xx: knotsafe.interp(xx, k, vv).sum())(xp64.asarray([0.5]))

        got = np.asarray(jax.jacfwd(gx)(v))
    else:
        import torch

        def gx(vv: Any) -> Any:
            return torch.func.grad(lambda xx: knotsafe.interp(xx, k, vv).sum())(xp64.asarray([0.5]))

        got = to_numpy(torch.func.jacfwd(gx)(v))
    np.testing.assert_array_equal(got, [[-1.0, 1.0, 0.0, 0.0]])


def _dup_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Exact duplicates at 1, near-duplicates (2 ulp) at 3, and queries inside
    # the near-duplicate bin, on knots and out of range.
    k = np.array([0.0, 1.0, 1.0, 2.0, 3.0, np.nextafter(np.nextafter(3.0, 4.0), 4.0), 5.0])
    x = np.array([-1.0, 0.25, 1.0, 1.5, 3.0, np.nextafter(3.0, 4.0), 4.0, 5.0, 6.0])
    v = np.array([1.0, 2.0, -1.0, 0.5, 2.0, 4.0, -3.0])
    return x, k, v


def test_duplicate_bins_have_zero_finite_second_derivatives(xp64: ModuleType) -> None:
    x, k, v = _dup_case()
    nx, nk = x.size, k.size

    def f(theta: Any) -> Any:
        return xp64.sum(knotsafe.interp(theta[:nx], theta[nx : nx + nk], theta[nx + nk :]) ** 2)

    for mode, hess in _hessians(xp64, f, np.concatenate([x, k, v])).items():
        assert np.all(np.isfinite(hess)), mode
        # The query inside the 2-ulp bin (index 5): d/dx is 0 there, and so is
        # every second derivative involving it (no 1/gap ~ 1e15 terms).
        assert np.all(hess[5, :] == 0) and np.all(hess[:, 5] == 0), mode
        # Symmetric (derivatives of a gradient of a piecewise-smooth function).
        np.testing.assert_allclose(hess, hess.T, rtol=1e-12, atol=1e-12, err_msg=mode)
    # Genuine-bin rows against central differences in x and values (knot steps
    # would reorder the duplicate knots).
    ref = _cd_hessian(x, k, v)
    rows = [1, 3, 6, *range(nx + nk, nx + 2 * nk)]
    for mode, hess in _hessians(xp64, f, np.concatenate([x, k, v])).items():
        np.testing.assert_allclose(hess[np.ix_(rows, rows)], ref[np.ix_(rows, rows)], rtol=0, atol=1e-6, err_msg=mode)


@only_in_session_of("jax", "torch")
def test_jax_and_torch_hessians_agree() -> None:
    import jax
    import jax.numpy as jnp
    import torch

    if not jax.config.read("jax_enable_x64"):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    rng = np.random.default_rng(7)
    k = np.sort(rng.uniform(-2, 2, 12))
    k[4] = k[3]
    k[8] = np.nextafter(k[7], 3.0)
    x = rng.uniform(-2.5, 2.5, 20)
    v = rng.normal(size=12)
    theta = np.concatenate([x, k, v])
    got = {}
    for xp in (jnp, torch):
        f = _objective_for(xp, x.size, k.size)
        got[xp.__name__] = _hessians(xp, f, theta)
    hj = got["jax.numpy"]["hessian"]
    for mode, h in got["torch"].items():
        scale = np.maximum(np.abs(hj), 1e-300)
        assert np.all(np.abs(h - hj) <= 1e-12 * scale + 1e-12 * np.max(np.abs(hj))), mode
    for mode, h in got["jax.numpy"].items():
        np.testing.assert_allclose(h, hj, rtol=1e-12, atol=1e-12 * np.max(np.abs(hj)), err_msg=mode)


def _objective_for(xp: ModuleType, nx: int, nk: int) -> Callable[[Any], Any]:
    def f(theta: Any) -> Any:
        return xp.sum(knotsafe.interp(theta[:nx], theta[nx : nx + nk], theta[nx + nk :]) ** 2)

    return f


def test_create_transforms_hessian_matches_central_differences(xp64: ModuleType) -> None:
    """Second derivatives through the rank transform w.r.t. the queries and points."""
    rng = np.random.default_rng(3)
    pts = rng.normal(size=(15, 2))
    q = rng.normal(size=(6, 2)) * 0.8

    def obj_np(theta: np.ndarray) -> float:
        p, qq = theta[:30].reshape(15, 2), theta[30:].reshape(6, 2)
        t = np.arange(1, 16) / 16
        u = np.stack([np.interp(qq[:, d], np.sort(p[:, d]), t, left=0, right=1) for d in range(2)], axis=1)
        return float(np.sum(u**2))

    def f(theta: Any) -> Any:
        tr, _ = knotsafe.create_transforms(xp64.reshape(theta[:30], (15, 2)))
        return xp64.sum(tr(xp64.reshape(theta[30:], (6, 2))) ** 2)

    theta = np.concatenate([pts.ravel(), q.ravel()])
    hess = _hessians(xp64, f, theta)
    # Reference: second central differences of the exact objective (smooth in
    # a neighbourhood: no ties, steps 1e-5 cross no knot).  Truncation is
    # O((h / gap)^2) relative (rational terms in 1/gap, smallest gap ~3e-3),
    # ~1e-5; rounding 4 eps |f| / h^2 ~ 1e-5 absolute.
    h = 1e-5
    n = theta.size
    ref = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            ei, ej = np.eye(n)[i] * h, np.eye(n)[j] * h
            ref[i, j] = (
                obj_np(theta + ei + ej) - obj_np(theta + ei - ej) - obj_np(theta - ei + ej) + obj_np(theta - ei - ej)
            ) / (4 * h * h)
    for mode, hm in hess.items():
        np.testing.assert_allclose(hm, ref, rtol=0, atol=5e-5 * max(1.0, np.max(np.abs(ref))), err_msg=mode)


# --- the kernel transform: references from the exact sum over every point -------------------------


_INV_SQRT2PI = 0.3989422804014327


def _framework_hessian(xp: ModuleType, f: Callable[[Any], Any], theta: np.ndarray, jit: bool = False) -> np.ndarray:
    """The framework's Hessian of the scalar ``f`` at ``theta`` (reverse-over-reverse on PyTorch)."""
    if _support.backend_name(xp) == "jax":
        import jax

        hess = jax.hessian(f)
        return np.asarray((jax.jit(hess) if jit else hess)(xp.asarray(theta)))
    import torch

    t = torch.tensor(theta, dtype=torch.float64)
    return torch.autograd.functional.hessian(f, t).numpy()


def _need(xp: ModuleType, autodiff: _support.AutoDiff) -> None:
    if not _support.has_float64(xp):
        pytest.skip("float64 needs JAX_ENABLE_X64=1")


def _col(p: np.ndarray, w: np.ndarray, h: float, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """F, dF/dx and dF/dh of one column at ``x`` (exact sum, float64)."""
    z = (x[:, None] - p[None, :]) / h
    phi = np.exp(-0.5 * z * z) * _INV_SQRT2PI
    return (w * ndtr(z)).sum(axis=1), (w * phi).sum(axis=1) / h, -(w * phi * z).sum(axis=1) / h


def _u_parts(p: np.ndarray, w: np.ndarray, h: float, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """u, du/dx and du/dh of one column (u normalised by F(hi) - F(lo))."""
    ends = np.array([p.min(), p.max()])
    f_e, _, fh_e = _col(p, w, h, ends)
    f, fx, fh = _col(p, w, h, x)
    den = f_e[1] - f_e[0]
    u = (f - f_e[0]) / den
    return u, fx / den, (fh - fh_e[0]) / den - u * (fh_e[1] - fh_e[0]) / den


def _inverse(p: np.ndarray, w: np.ndarray, h: float, v: np.ndarray) -> np.ndarray:
    """x with u(x) = v: bisection on the exact sum to the last bit, then one Newton polish."""
    a = np.full(v.shape, p.min())
    b = np.full(v.shape, p.max())
    for _ in range(80):
        m = 0.5 * (a + b)
        below = _u_parts(p, w, h, m)[0] < v
        a, b = np.where(below, m, a), np.where(below, b, m)
    x = 0.5 * (a + b)
    u, ux, _ = _u_parts(p, w, h, x)
    return x - (u - v) / ux


def _cd_hessian_of_gradient(
    grad: Callable[[np.ndarray], np.ndarray], theta: np.ndarray, steps: np.ndarray
) -> np.ndarray:
    """Central differences of an analytic gradient, one column per parameter."""
    cols = []
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = steps[i]
        cols.append((grad(theta + e) - grad(theta - e)) / (2 * steps[i]))
    return np.stack(cols, axis=1)


# --- the kernel transform's exact inverse ---------------------------------------------------------


@_NO_LAZY
def test_inverse_second_derivatives(xp: ModuleType, autodiff: _support.AutoDiff) -> None:
    """Hessian of sum(c * inv(v; h)) in (v, h) against central differences of the implicit-function gradient.

    dx/dv = 1 / u'(x) and dx/dh = -(du/dh)(x) / u'(x), written from the exact
    sum; one differentiable Newton step from a constant root gets these right
    but not their derivatives (the test fails for it).
    """
    _need(xp, autodiff)
    p, w = kernel_points()
    p, w = p[:60], w[:60]
    span = p.max(axis=0) - p.min(axis=0)
    h0 = span / 10
    k = 12
    v0 = np.random.default_rng(3).uniform(0.1, 0.9, size=(k, 2))
    c = np.random.default_rng(4).normal(size=(k, 2))
    theta0 = np.concatenate([v0.ravel(), h0])

    def analytic_grad(theta: np.ndarray) -> np.ndarray:
        v, h = theta[: 2 * k].reshape(k, 2), theta[2 * k :]
        gv, gh = np.zeros((k, 2)), np.zeros(2)
        for d in range(2):
            x = _inverse(p[:, d], w / w.sum(), h[d], v[:, d])
            _, ux, uh = _u_parts(p[:, d], w / w.sum(), h[d], x)
            gv[:, d] = c[:, d] / ux
            gh[d] = np.sum(-c[:, d] * uh / ux)
        return np.concatenate([gv.ravel(), gh])

    pts, wts, cc = (_support.asarray(xp, a) for a in (p, w, c))

    def phi(theta: Any) -> Any:
        v, h = xp.reshape(theta[: 2 * k], (k, 2)), theta[2 * k :]
        inv = knotsafe.create_transforms(pts, wts, method="kernel", kernel_std=h, span_ratio=12.0)[1]
        return xp.sum(inv(v) * cc)

    got = _framework_hessian(xp, phi, theta0)
    # Steps 1e-4 of each parameter's scale: truncation O(step^2 g''') ~ 1e-8
    # relative; rounding of the analytic gradient (~1e-14 relative, the
    # bisection root is exact to the last bit) over the step ~ 1e-10.
    steps = np.concatenate([np.full(2 * k, 2e-5), 2e-5 * h0])
    ref = _cd_hessian_of_gradient(analytic_grad, theta0, steps)
    scale = np.abs(ref).max()
    # The interpolant's second derivatives are within ~1e-11 relative of the
    # exact sum's; the finite difference dominates at ~1e-7 of the largest entry.
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * scale)
    # the Hessian is symmetric (autodiff of a smooth function)
    np.testing.assert_allclose(got, got.T, rtol=0, atol=1e-10 * scale)


@_NO_LAZY
def test_inverse_third_derivative_along_v(xp: ModuleType, autodiff: _support.AutoDiff) -> None:
    """d^3 x / dv^3 by nested autodiff against a central difference of the analytic d^2 x / dv^2."""
    _need(xp, autodiff)
    p, w = kernel_points()
    p, w = p[:60, 0], w[:60]
    wn = w / w.sum()
    h = (p.max() - p.min()) / 10
    v0 = np.array([0.17, 0.45, 0.81])

    def d2(v: np.ndarray) -> np.ndarray:
        # x'' = -u''(x) / u'(x)^3, u'' from the exact sum: sum w phi'(z) / h^2 / den
        x = _inverse(p, wn, h, v)
        _, ux, _ = _u_parts(p, wn, h, x)
        z = (x[:, None] - p[None, :]) / h
        fe = (wn * ndtr((np.array([p.min(), p.max()])[:, None] - p[None, :]) / h)).sum(axis=1)
        uxx = -(wn * z * np.exp(-0.5 * z * z) * _INV_SQRT2PI).sum(axis=1) / h**2 / (fe[1] - fe[0])
        return -uxx / ux**3

    step = 1e-4
    ref = (d2(v0 + step) - d2(v0 - step)) / (2 * step)
    pts = _support.asarray(xp, np.stack([p, p], axis=1))
    wts = _support.asarray(xp, w)

    def x_of(v: Any) -> Any:
        inv = knotsafe.create_transforms(pts, wts, method="kernel", kernel_std=h, span_ratio=12.0)[1]
        return inv(xp.stack([v, v], axis=1))[:, 0]

    if _support.backend_name(xp) == "jax":
        import jax

        f = lambda s: x_of(xp.reshape(s, (1,)))[0]  # noqa: E731
        third = jax.jit(jax.vmap(jax.grad(jax.grad(jax.grad(f)))))
        got = np.asarray(third(xp.asarray(v0)))
    else:
        import torch

        got = []
        for s in v0:
            t = torch.tensor([s], dtype=torch.float64, requires_grad=True)
            (g1,) = torch.autograd.grad(x_of(t).sum(), t, create_graph=True)
            (g2,) = torch.autograd.grad(g1.sum(), t, create_graph=True)
            (g3,) = torch.autograd.grad(g2.sum(), t)
            got.append(float(g3[0]))
        got = np.array(got)
    # truncation O(step^2 x^(5)) and rounding ~1e-14 |x''| / step: well below 1e-5 relative
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


# --- the kernel transform's forward u(q) ----------------------------------------------------------


@_NO_LAZY
def test_forward_second_derivatives(xp: ModuleType, autodiff: _support.AutoDiff) -> None:
    """Hessian of sum(c * u(q; h)) in (q, h): central differences of the analytic gradient of the exact sum."""
    _need(xp, autodiff)
    p, w = kernel_points()
    p, w = p[:60], w[:60]
    span = p.max(axis=0) - p.min(axis=0)
    h0 = span / 10
    rng = np.random.default_rng(5)
    k = 12
    q0 = rng.uniform(p.min(axis=0) + 0.05 * span, p.max(axis=0) - 0.05 * span, size=(k, 2))
    c = rng.normal(size=(k, 2))
    wn = w / w.sum()
    theta0 = np.concatenate([q0.ravel(), h0])

    def analytic_grad(theta: np.ndarray) -> np.ndarray:
        q, h = theta[: 2 * k].reshape(k, 2), theta[2 * k :]
        gq, gh = np.zeros((k, 2)), np.zeros(2)
        for d in range(2):
            _, ux, uh = _u_parts(p[:, d], wn, h[d], q[:, d])
            gq[:, d] = c[:, d] * ux
            gh[d] = np.sum(c[:, d] * uh)
        return np.concatenate([gq.ravel(), gh])

    pts, wts, cc = (_support.asarray(xp, a) for a in (p, w, c))

    def phi(theta: Any) -> Any:
        q, h = xp.reshape(theta[: 2 * k], (k, 2)), theta[2 * k :]
        t = knotsafe.create_transforms(pts, wts, method="kernel", kernel_std=h, span_ratio=12.0)[0]
        return xp.sum(t(q) * cc)

    got = _framework_hessian(xp, phi, theta0, jit=True)
    steps = np.concatenate([np.repeat(1e-4 * span[None, :], k, axis=0).ravel(), 1e-4 * h0])
    ref = _cd_hessian_of_gradient(analytic_grad, theta0, steps)
    # truncation O(step^2) ~ 1e-8 relative, rounding 1e-16 / 1e-4 ~ 1e-12: 1e-6 of the largest entry
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * np.abs(ref).max())


@_NO_LAZY
def test_forward_hessian_matches_autodiff_of_exact_sum(xp: ModuleType, autodiff: _support.AutoDiff) -> None:
    """Full Hessian in (points, weights, h, q) equal to the framework's Hessian of the exact sum."""
    _need(xp, autodiff)
    p, w = kernel_points()
    p, w = p[:16], w[:16]
    span = p.max(axis=0) - p.min(axis=0)
    h = span / 8
    rng = np.random.default_rng(7)
    q = rng.uniform(p.min(axis=0) + 0.02 * span, p.max(axis=0) - 0.02 * span, size=(8, 2))
    c = rng.normal(size=q.shape)
    cc = _support.asarray(xp, c)
    sizes = [p.size, w.size, h.size, q.size]
    theta0 = np.concatenate([p.ravel(), w, h, q.ravel()])

    def split(theta: Any) -> list[Any]:
        out, at = [], 0
        for a, n in zip((p, w, h, q), sizes, strict=True):
            out.append(xp.reshape(theta[at : at + n], a.shape))
            at += n
        return out

    def ks(theta: Any) -> Any:
        pp, ww, hh, qq = split(theta)
        t = knotsafe.create_transforms(pp, ww, method="kernel", kernel_std=hh, span_ratio=12.0)[0]
        return xp.sum(t(qq) * cc)

    def ex(theta: Any) -> Any:
        return xp.sum(exact_kernel_transform(xp, *split(theta)) * cc)

    got, ref = _framework_hessian(xp, ks, theta0, jit=True), _framework_hessian(xp, ex, theta0, jit=True)
    # The interpolant's derivatives are within ~1e-11 of the exact sum's
    # (relative to the largest entry); 1e-8 leaves room for rounding.
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-8 * np.abs(ref).max())
