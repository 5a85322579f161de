"""PyTorch hooks: ``detach`` and the gradient rule as a ``torch.autograd.Function``."""

from __future__ import annotations

from typing import Any

import torch
import torch.autograd.forward_ad as _fwd_ad

from knotsafe._lib._rule import InterpRule
from knotsafe.backends import BackendHooks


def _gather_combine(idx: Any, idx1: Any, c0: Any, c1: Any, tangent: Any) -> Any:
    # index_select (not take) has a torch.func batching rule.
    return c0 * torch.index_select(tangent, 0, idx) + c1 * torch.index_select(tangent, 0, idx1)


def _scatter_pair(n: int, idx: Any, idx1: Any, g0: Any, g1: Any, alpha: int = 1) -> Any:
    out = torch.zeros(n, dtype=g0.dtype, device=g0.device)
    return out.index_add(0, idx, g0, alpha=alpha).index_add(0, idx1, g1, alpha=alpha)


def _take(xp: Any, a: Any, idx: Any) -> Any:
    # The rule's indices are in range: skip array_api_compat's negative-index
    # `where` (three passes over the queries per gather).
    return torch.index_select(a, 0, idx)


class _Interp(torch.autograd.Function):
    # The forward is made of torch operations only, so torch.func can derive
    # the vmap rule; partials travel as non-differentiable outputs because
    # setup_context (required by torch.func) cannot see forward's locals.
    generate_vmap_rule = True

    @staticmethod
    def forward(x: Any, knots: Any, values: Any, rule: InterpRule) -> Any:  # type: ignore[override]
        out, p = rule.value_and_partials(x, knots, values)
        return out, p.j, p.dx, p.a0, p.a1

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        _, knots, _, rule = inputs
        _, *partials = output
        ctx.mark_non_differentiable(*partials)
        ctx.save_for_backward(*partials)
        ctx.save_for_forward(*partials)
        ctx.n = knots.shape[-1]
        ctx.knot_grad = rule.knot_grad != "stop"

    @staticmethod
    def backward(ctx: Any, g: Any, *_: Any) -> Any:  # type: ignore[override]
        j, dx, a0, a1 = ctx.saved_tensors
        need_x, need_k, need_v, _ = ctx.needs_input_grad
        gx = g * dx if need_x or need_k else None
        j1 = j + 1 if need_v or need_k else None
        gv = _scatter_pair(ctx.n, j, j1, g * a0, g * a1) if need_v else None
        gk = None
        if need_k and ctx.knot_grad:
            # d/dknots = -dx times the value weights (see _rule.Partials).
            gk = _scatter_pair(ctx.n, j, j1, gx * a0, gx * a1, alpha=-1)
        elif need_k:
            gk = torch.zeros(ctx.n, dtype=g.dtype, device=g.device)
        return (gx if need_x else None), gk, gv, None

    @staticmethod
    def jvp(ctx: Any, x_t: Any, knots_t: Any, values_t: Any, _: Any) -> Any:
        j, dx, a0, a1 = ctx.saved_tensors
        j1 = j + 1
        moved = torch.zeros_like(dx) if x_t is None else x_t
        if knots_t is not None and ctx.knot_grad:
            moved = moved - _gather_combine(j, j1, a0, a1, knots_t)
        t = dx * moved
        if values_t is not None:
            t = t + _gather_combine(j, j1, a0, a1, values_t)
        return t, None, None, None, None


def _plain_tensor(t: Any) -> bool:
    """No autograd, forward-AD or torch.func information rides on ``t``."""
    return not (
        t.requires_grad
        or torch._C._functorch.is_functorch_wrapped_tensor(t)
        or (_fwd_ad._current_level >= 0 and _fwd_ad.unpack_dual(t).tangent is not None)  # type: ignore[no-untyped-call]
    )


def _linearize(hooks: BackendHooks, rule: InterpRule, x: Any, knots: Any, values: Any) -> Any:
    if _plain_tensor(x) and _plain_tensor(knots) and _plain_tensor(values):
        # Nothing can ask for a derivative: forward values only, without the
        # partials (same arithmetic as the Function's first output).
        return rule.value(x, knots, values)
    return _Interp.apply(x, knots, values, rule)[0]  # type: ignore[no-untyped-call]


def _scatter_add(xp: Any, size: int, index: Any, src: Any) -> Any:
    return torch.zeros(size, dtype=src.dtype, device=src.device).index_add(0, index, src)


def _searchsorted(xp: Any, knots: Any, x: Any) -> Any:
    # torch copies (and warns about) non-contiguous inputs; column views are common.
    return torch.searchsorted(knots.contiguous(), x.contiguous(), right=True)


def _erf(xp: Any, x: Any) -> Any:
    return torch.special.erf(x)


def make_hooks() -> BackendHooks:
    return BackendHooks(
        "torch",
        differentiable=True,
        searchsorted=_searchsorted,
        stop_gradient=torch.Tensor.detach,
        linearize=_linearize,
        scatter_add=_scatter_add,
        take=_take,
        erf=_erf,
    )
