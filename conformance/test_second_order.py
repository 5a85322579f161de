"""Second derivatives and torch.compile: the rows "second derivatives = central differences of
the gradient" and "torch.compile = eager".

Needs two rows in ``conformance/_record.PROPS`` (keys ``second_order`` and ``compile_eager``);
without them the checks skip with that reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import knotsafe
from conformance._backends import Driver
from conformance._data import Case, cases, reference
from conformance._record import PROP_BY_KEY


def _prop(key: str) -> Any:
    """The ``prop`` marker once the row exists in PROPS; until then the checks run unrecorded."""
    return pytest.mark.prop(key) if key in PROP_BY_KEY else (lambda f: f)


class _Unrecorded:
    def update(self, err: float, checked: int = 1, **kw: Any) -> bool:
        return True


@pytest.fixture
def rec(request: pytest.FixtureRequest) -> Any:
    if request.node.get_closest_marker("prop") is None:
        return _Unrecorded()
    return request.getfixturevalue("cell")


def _ref_grad_xv(case: Case, x: np.ndarray, v: np.ndarray) -> np.ndarray:
    """d/d(x, values) of sum(interp**2), from the contract (reference bins and weights)."""
    ref = reference(case.knots, v, x, case)
    out = np.interp(x, case.knots, v, left=case.left, right=case.right).astype(np.float64)
    c = 2 * out
    gx = c * np.where(ref.genuine, ref.dvalue / np.where(ref.genuine, ref.gap, 1.0), 0.0)
    return np.concatenate([gx, c @ ref.jac_values])


def _hessian(drv: Driver, case: Case, theta: np.ndarray, nx: int) -> np.ndarray:
    kw = case.kwargs()

    def f(t: Any) -> Any:
        k = drv.asarray(case.knots, "float64")
        out = knotsafe.interp(t[:nx], k, t[nx:], **kw)  # type: ignore[arg-type]
        return (out**2).sum()

    if drv.framework == "jax":
        import jax

        return np.asarray(jax.hessian(f)(drv.asarray(theta, "float64")))
    import torch

    return torch.func.hessian(f)(drv.asarray(theta, "float64")).detach().cpu().numpy()


@_prop("second_order")
def test_second_derivatives_equal_central_differences(autodiff: Driver, rec: Any) -> None:
    """Hessian of sum(interp**2) w.r.t. (x, values) = central differences of the analytic gradient."""
    if "float64" not in autodiff.dtypes:
        pytest.skip("float64 not available")
    if autodiff.expected_hooks not in (None, "jax", "torch"):
        # A registered backend with only stop_gradient gets first derivatives (documented).
        pytest.skip("n/a: the generic stop_gradient path gives first derivatives only")
    for case in cases("float64"):
        if case.knots.size > 64 or case.knots.size < 2:
            continue
        kn = case.knots
        x = case.queries[:24]
        # Steps of h cross no knot: keep queries at least 1e3 h from every knot.
        h = 1e-7 * max(1.0, float(np.max(np.abs(kn))))
        x = x[np.min(np.abs(x[:, None] - kn[None, :]), axis=1) > 1e3 * h]
        # In duplicate bins the rule's weights are constants (their 1/gap
        # derivatives are the dropped slope's); the reference weights are not.
        x = x[~reference(kn, case.values, x, case).duplicate]
        theta = np.concatenate([x, case.values])
        hess = _hessian(autodiff, case, theta, x.size)
        cols = []
        for i in range(theta.size):
            e = np.zeros_like(theta)
            e[i] = h
            gp = _ref_grad_xv(case, (theta + e)[: x.size], (theta + e)[x.size :])
            gm = _ref_grad_xv(case, (theta - e)[: x.size], (theta - e)[x.size :])
            cols.append((gp - gm) / (2 * h))
        ref = np.stack(cols, axis=1)
        # Rounding of the differences: eps |g| / h relative to the Hessian scale.
        scale = max(1.0, float(np.max(np.abs(ref))))
        err = float(np.max(np.abs(hess - ref), initial=0.0)) / scale
        bad = not np.all(np.isfinite(hess))
        rec.update(np.inf if bad else err, hess.size)
        assert not bad and err <= 1e-6, f"{case.name}: second derivatives off by {err:.2e} (relative)"


@_prop("compile_eager")
def test_torch_compile_equals_eager(autodiff: Driver, rec: Any) -> None:
    """torch.compile(fullgraph=True) of sum(interp**2): value and gradients = eager to rounding."""
    if autodiff.framework != "torch":
        pytest.skip("n/a: torch.compile is PyTorch's")
    if autodiff.expected_hooks != "torch":
        # Generic hooks cannot tell that torch.compile is tracing: the input checks read data and
        # torch.compile raises (a data-dependent guard), never a different gradient.
        pytest.skip("n/a: torch.compile needs PyTorch's own hooks (generic hooks raise under it)")
    import torch

    for case in cases("float64"):
        kw = case.kwargs()

        def f(x: Any, k: Any, v: Any, kw: Any = kw) -> Any:
            return (knotsafe.interp(x, k, v, **kw) ** 2).sum()

        compiled = torch.compile(f, fullgraph=True)
        args_e = [autodiff.asarray(a, "float64").requires_grad_() for a in (case.queries, case.knots, case.values)]
        args_c = [autodiff.asarray(a, "float64").requires_grad_() for a in (case.queries, case.knots, case.values)]
        f(*args_e).backward()
        compiled(*args_c).backward()
        err = 0.0
        for e, c in zip(args_e, args_c, strict=True):
            scale = max(1e-300, float(e.grad.abs().max()))
            err = max(err, float((c.grad - e.grad).abs().max()) / scale)
        rec.update(err, sum(a.numel() for a in args_e))
        # Inductor may contract a multiply-add (FMA): a few roundings per entry.
        assert err <= 1e-12, f"{case.name}: compiled gradients differ by {err:.2e} (relative)"
