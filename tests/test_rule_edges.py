"""Edges of the rule: infinite knots and values, NaN left/right, torch's private APIs, import layering."""

from __future__ import annotations

from types import ModuleType

import array_api_compat
import numpy as np
import pytest

import knotsafe
from knotsafe import backends
from knotsafe.backends import generic_linearize, hooks_for
from tests._support import AutoDiff, asarray, backend_module, backend_name, has_float64, to_numpy


def _dt(xp: ModuleType) -> str:
    return "float64" if has_float64(xp) else "float32"


def test_infinite_knot_does_not_make_every_bin_a_duplicate(xp: ModuleType, autodiff: AutoDiff) -> None:
    """knots = [0, 1, 2, inf]: x = 0.5 is in the genuine bin [0, 1) (d/dx = 1, as numpy's slope)."""
    dt = _dt(xp)
    x, k, v = (asarray(xp, a, dt) for a in ([0.5, 1.5, 5.0], [0.0, 1.0, 2.0, np.inf], [0.0, 1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(
        to_numpy(knotsafe.interp(x, k, v)), np.interp([0.5, 1.5, 5.0], *(to_numpy(a) for a in (k, v)))
    )
    gx, gk, gv = autodiff.grad(knotsafe.interp, [x, k, v], (0, 1, 2))
    # Bins [0, 1) and [1, 2) are genuine (slope 1); [2, inf) touches an
    # infinite knot: zero slope, and x = 5 copies values[2] (w = 3 / inf = 0).
    np.testing.assert_array_equal(gx, [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(gk, [-0.5, -1.0, -0.5, 0.0])
    np.testing.assert_array_equal(gv, [0.5, 1.0, 1.5, 0.0])


@pytest.mark.parametrize(
    ("x", "knots", "values"),
    [
        ([1.5, 0.5, 2.0], [0.0, 1.0, 2.0], [0.0, 1.0, np.inf]),
        ([5.0, 0.5, -1.0], [0.0, 1.0, np.inf], [0.0, 1.0, 2.0]),
        ([-5.0, 0.5, 3.0], [-np.inf, 1.0, 2.0], [0.0, 1.0, 2.0]),
        ([np.inf, -np.inf, 0.5], [0.0, 1.0, 2.0], [0.0, -np.inf, 2.0]),
    ],
)
def test_generic_path_forward_values_equal_numpy_for_infinities(
    xp: ModuleType, autodiff: AutoDiff, x: list[float], knots: list[float], values: list[float]
) -> None:
    """The stop_gradient path any registered backend gets: ``s - stop_gradient(s)`` adds no NaN."""
    ns = array_api_compat.array_namespace(xp.asarray(0.0))
    dt = _dt(xp)
    args = [asarray(xp, a, dt) for a in (x, knots, values)]
    with np.errstate(invalid="ignore"):
        expected = np.interp(*(np.asarray(a, dt) for a in (x, knots, values)))
    backends.register("generic", hooks_for(ns).replace(linearize=generic_linearize), matches=lambda n: n is ns)
    try:
        out = knotsafe.interp(*args)
        if backend_name(xp) == "torch":
            leaves = [a.clone().requires_grad_() for a in args]
            out = knotsafe.interp(*leaves)
        np.testing.assert_array_equal(to_numpy(out), expected)
    finally:
        backends.unregister("generic")
    native = to_numpy(knotsafe.interp(*args))
    np.testing.assert_array_equal(native, expected)


def test_nan_left_right_reuse_the_compiled_function() -> None:
    """NaN != NaN, but the rule (a cache key) stores one NaN object: no recompilation per call."""
    backend_module("jax")
    import jax.numpy as jnp

    from knotsafe._lib.backends import jax_hooks as _hooks_jax

    x, k, v = jnp.asarray([-1.0, 0.5, 3.0]), jnp.asarray([0.0, 1.0, 2.0]), jnp.asarray([0.0, 1.0, 2.0])
    knotsafe.interp(x, k, v, left=float("nan"), right=float("nan"))
    before = _hooks_jax._custom_interp.cache_info()
    for _ in range(5):
        out = knotsafe.interp(x, k, v, left=float("nan"), right=np.float64("nan"))
    after = _hooks_jax._custom_interp.cache_info()
    assert after.misses == before.misses
    assert after.hits == before.hits + 5
    assert np.isnan(np.asarray(out)[[0, 2]]).all() and np.asarray(out)[1] == 0.5


def test_torch_private_apis_missing_or_raising_fall_back_to_the_function(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without torch's private functorch/forward-AD probes, every path still gets the rule's gradients."""
    torch = backend_module("torch")
    import torch.autograd.forward_ad as fwd_ad

    from knotsafe._lib.backends import torch_hooks as _hooks_torch

    knots = torch.tensor([0.0, 1.0, 1.0, 2.0], dtype=torch.float64)
    values = torch.tensor([0.0, 1.0, 3.0, 4.0], dtype=torch.float64)
    x = torch.tensor([0.25, 0.999, 1.5], dtype=torch.float64)
    # The contract's numbers: slope 1 in [0, 1), 1 in [1, 2); the duplicate bin is never used.
    want_gx = [1.0, 1.0, 1.0]

    def boom(*a: object) -> bool:
        raise RuntimeError("private API changed")

    for how in ("missing", "raising"):
        with monkeypatch.context() as m:
            if how == "missing":
                m.delattr(torch._C._functorch, "is_functorch_wrapped_tensor")
                m.delattr(fwd_ad, "_current_level")
            else:
                m.setattr(torch._C._functorch, "is_functorch_wrapped_tensor", boom)
                m.setattr(fwd_ad, "unpack_dual", boom)
                m.setattr(fwd_ad, "_current_level", 0)
            assert not _hooks_torch._plain_tensor(x)
            out = knotsafe.interp(x, knots, values)
            np.testing.assert_array_equal(out.numpy(), np.interp(x.numpy(), knots.numpy(), values.numpy()))
            gx = torch.func.grad(lambda a: knotsafe.interp(a, knots, values).sum())(x)
            np.testing.assert_array_equal(gx.numpy(), want_gx)
            gk = torch.func.grad(lambda k: knotsafe.interp(x, k, values).sum())(knots)
            # -slope * (1 - w) and -slope * w summed per knot; 1 ulp of rounding in the sums.
            np.testing.assert_allclose(gk.numpy(), [-0.751, -1.249, -0.5, -0.5], rtol=4e-16, atol=0)
            leaf = x.clone().requires_grad_()
            knotsafe.interp(leaf, knots, values).sum().backward()
            assert leaf.grad is not None
            np.testing.assert_array_equal(leaf.grad.numpy(), want_gx)
