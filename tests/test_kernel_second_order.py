"""Second derivatives of the kernel transform (forward and exact inverse) on JAX and PyTorch.

References are written here in NumPy, never by knotsafe: the analytic first
derivatives of the exact kernel sum (``F' = sum w phi(z) / h``, ``dF/dh =
-sum w phi(z) z / h``), an independent bisection inverse of the exact sum,
and central differences of those analytic gradients.  The forward transform
is also checked against the framework's own Hessian of the exact sum.
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
from tests.test_kernel_density import _data, _exact_sum_native

pytestmark = pytest.mark.skip_xp_backend("dask", reason="no autodiff on dask arrays")

_INV_SQRT2PI = 0.3989422804014327


def _hessian(xp: ModuleType, f: Callable[[Any], Any], theta: np.ndarray, jit: bool = False) -> np.ndarray:
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


# --- NumPy references (exact sum over every point) ---------------------------


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


def _cd_hessian(grad: Callable[[np.ndarray], np.ndarray], theta: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Central differences of an analytic gradient, one column per parameter."""
    cols = []
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = steps[i]
        cols.append((grad(theta + e) - grad(theta - e)) / (2 * steps[i]))
    return np.stack(cols, axis=1)


# --- exact inverse ------------------------------------------------------------


def test_inverse_second_derivatives(xp: ModuleType, autodiff: _support.AutoDiff) -> None:
    """Hessian of sum(c * inv(v; h)) in (v, h) against central differences of the implicit-function gradient.

    dx/dv = 1 / u'(x) and dx/dh = -(du/dh)(x) / u'(x), written from the exact
    sum; one differentiable Newton step from a constant root gets these right
    but not their derivatives (the test fails for it).
    """
    _need(xp, autodiff)
    p, w = _data()
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
        inv = knotsafe.create_transforms(pts, wts, method="kernel", bandwidth=h, span_ratio=12.0)[1]
        return xp.sum(inv(v) * cc)

    got = _hessian(xp, phi, theta0)
    # Steps 1e-4 of each parameter's scale: truncation O(step^2 g''') ~ 1e-8
    # relative; rounding of the analytic gradient (~1e-14 relative, the
    # bisection root is exact to the last bit) over the step ~ 1e-10.
    steps = np.concatenate([np.full(2 * k, 2e-5), 2e-5 * h0])
    ref = _cd_hessian(analytic_grad, theta0, steps)
    scale = np.abs(ref).max()
    # The interpolant's second derivatives are within ~1e-11 relative of the
    # exact sum's; the finite difference dominates at ~1e-7 of the largest entry.
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * scale)
    # the Hessian is symmetric (autodiff of a smooth function)
    np.testing.assert_allclose(got, got.T, rtol=0, atol=1e-10 * scale)


def test_inverse_third_derivative_along_v(xp: ModuleType, autodiff: _support.AutoDiff) -> None:
    """d^3 x / dv^3 by nested autodiff against a central difference of the analytic d^2 x / dv^2."""
    _need(xp, autodiff)
    p, w = _data()
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
        inv = knotsafe.create_transforms(pts, wts, method="kernel", bandwidth=h, span_ratio=12.0)[1]
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


# --- forward u(q) ---------------------------------------------------------------


def test_forward_second_derivatives(xp: ModuleType, autodiff: _support.AutoDiff) -> None:
    """Hessian of sum(c * u(q; h)) in (q, h): central differences of the analytic gradient of the exact sum."""
    _need(xp, autodiff)
    p, w = _data()
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
        t = knotsafe.create_transforms(pts, wts, method="kernel", bandwidth=h, span_ratio=12.0)[0]
        return xp.sum(t(q) * cc)

    got = _hessian(xp, phi, theta0, jit=True)
    steps = np.concatenate([np.repeat(1e-4 * span[None, :], k, axis=0).ravel(), 1e-4 * h0])
    ref = _cd_hessian(analytic_grad, theta0, steps)
    # truncation O(step^2) ~ 1e-8 relative, rounding 1e-16 / 1e-4 ~ 1e-12: 1e-6 of the largest entry
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * np.abs(ref).max())


def test_forward_hessian_matches_autodiff_of_exact_sum(xp: ModuleType, autodiff: _support.AutoDiff) -> None:
    """Full Hessian in (points, weights, h, q) equal to the framework's Hessian of the exact sum."""
    _need(xp, autodiff)
    p, w = _data()
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
        t = knotsafe.create_transforms(pp, ww, method="kernel", bandwidth=hh, span_ratio=12.0)[0]
        return xp.sum(t(qq) * cc)

    def ex(theta: Any) -> Any:
        return xp.sum(_exact_sum_native(xp, *split(theta)) * cc)

    got, ref = _hessian(xp, ks, theta0, jit=True), _hessian(xp, ex, theta0, jit=True)
    # The interpolant's derivatives are within ~1e-11 of the exact sum's
    # (relative to the largest entry); 1e-8 leaves room for rounding.
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-8 * np.abs(ref).max())
