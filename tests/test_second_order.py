"""Second derivatives: the derivatives of the first-derivative rule, on every autodiff backend.

References are the contract's own numbers (the issue's example) and central
differences of the analytic gradient written here in NumPy from the contract
table, never knotsafe's own output.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import knotsafe
from tests._support import backend_name, has_float64, only_in_session_of, to_numpy

X = np.array([0.5, 2.0, 4.0])
K = np.array([0.0, 1.0, 3.0, 6.0])
V = np.array([0.0, 2.0, 3.0, 9.0])
# The issue's numbers for the knot Hessian diagonal of sum(interp(x, k, v)**2):
# -2, 39/8, -95/24, 16/3 (worked out by hand from the contract table).
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
def test_hessian_of_issue_example_matches_contract_and_central_differences(xp64: ModuleType, knot_grad: str) -> None:
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
