"""PyTorch hooks: ``detach`` and the gradient rule as a ``torch.autograd.Function``."""

from __future__ import annotations

from typing import Any

import torch
import torch.autograd.forward_ad as _fwd_ad

from knotsafe._lib.backends.hooks import BackendHooks
from knotsafe._lib.rule import AnyNan, InterpRule, Partials


def _take(xp: Any, a: Any, idx: Any) -> Any:
    # The rule's indices are in range: skip array_api_compat's negative-index
    # `where` (three passes over the queries per gather).  index_select (not
    # take) has a torch.func batching rule; so has gather, for rows.
    if a.ndim == 1:
        return torch.index_select(a, 0, idx)
    return torch.gather(a, 1, idx)


class _InterpFunction(torch.autograd.Function):
    """Forward values and reverse mode (the form torch.compile can trace)."""

    # The forward is made of torch operations only, so torch.func can derive
    # the vmap rule; partials travel as non-differentiable outputs because
    # setup_context (required by torch.func) cannot see forward's locals.
    generate_vmap_rule = True

    @staticmethod
    def forward(  # type: ignore[override]
        x: Any, knots: Any, values: Any, lo: Any, hi: Any, rule: InterpRule, needs: tuple[bool, ...]
    ) -> Any:
        # Only first derivatives use these partials (second derivatives and
        # forward mode recompute them, see _partials): the cheaper form, and
        # only those a gradient of an input in `needs` reads (the others are
        # empty placeholders).  `lo`/`hi`: the "value" bounds or None.
        out, p = rule.value_and_partials(
            x, knots, values, first_order=True, any_nan=_any_nan_reader(x), needs=needs, lo=lo, hi=hi
        )
        # Only the partials computed are outputs (`rule.computed_partials` says which):
        # torch.compile's AOTAutograd rejects an output that no input's
        # gradient reads (a placeholder), and unneeded partials cost passes.
        return out, p.j, *(a for a in (p.dx, p.a0, p.a1, p.bl, p.br) if a is not None)

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        x, knots, values, _, _, rule, needs = inputs
        _, *partials = output
        ctx.mark_non_differentiable(*partials)
        # The inputs are saved too: second derivatives recompute the partials
        # from them with differentiable operations (the bounds' weights do not
        # depend on the bounds).
        ctx.save_for_backward(x, knots, values, *partials)
        ctx.save_for_forward(x, knots, values, *partials)
        ctx.rule = rule
        ctx.present = rule.computed_partials(needs)

    @staticmethod
    def backward(ctx: Any, g: Any, *_: Any) -> Any:  # type: ignore[override]
        p = _partials(ctx)
        n = ctx.saved_tensors[1].shape[-1]
        return (*p.cotangent(g, n, tuple(ctx.needs_input_grad[:5])), None, None)


class _Interp(_InterpFunction):
    """The eager Function: adds forward mode (``torch.func.jvp``, ``jacfwd``)."""

    @staticmethod
    def jvp(ctx: Any, x_t: Any, knots_t: Any, values_t: Any, lo_t: Any, hi_t: Any, *_: Any) -> Any:
        t = _partials(ctx, saved=False).tangent(x_t, knots_t, values_t, lo_t, hi_t)
        # One tangent per output: the non-differentiable partials get None.
        return t, *([None] * (len(ctx.saved_tensors) - 3))


def _partials(ctx: Any, saved: bool = True) -> Partials:
    """The partials for a derivative rule: the saved ones (first-order
    reverse mode, each needed one was computed), or recomputed."""
    x, knots, values, j, *kept = ctx.saved_tensors
    rule: InterpRule = ctx.rule
    if torch.is_grad_enabled() or not saved:
        # A derivative of this derivative may be taken (create_graph=True,
        # torch.func): the partials as differentiable functions of the inputs.
        # Same arithmetic as the forward, so the same values; the saved bins
        # replace the search and the forward values are not recomputed.
        return rule.value_and_partials(x, knots, values, with_value=False, j=j)[1]
    # A partial not computed is never read: `needs` said no gradient asks for it.
    dx, a0, a1, bl, br = (kept.pop(0) if here else None for here in ctx.present)
    return rule.partials(j, dx, a0, a1, bl, br)


def _any_nan_reader(x: Any) -> AnyNan | None:
    """The rule's NaN-retry shortcut for CPU tensors in eager mode, else None.

    One reduction read on the host replaces the forward's two NaN retries
    (seven passes over the queries) when the first estimate has no NaN.  Not
    on accelerators (the read would synchronise the device) nor under
    torch.compile (it would break the graph); under torch.func transforms the
    read fails and the retries run.
    """
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return None
    return _any_nan


def _any_nan(out: Any) -> bool:
    # Not a data check (those live in _checks and raise): a read that only
    # picks the shorter of two paths with the same values.  Any failure to
    # read (torch.func transforms) takes the full path.
    try:
        return bool(torch.isnan(out).any())
    except Exception:
        return True


def _plain_tensor(t: Any) -> bool:
    """No autograd, forward-AD or torch.func information rides on ``t``.

    Uses two private torch APIs; if they are missing or raise, the answer is
    False, so the autograd Function (always correct) is used.
    """
    if t.requires_grad:
        return False
    try:
        wrapped = torch._C._functorch.is_functorch_wrapped_tensor(t)
        dual = _fwd_ad._current_level >= 0 and _fwd_ad.unpack_dual(t).tangent is not None  # type: ignore[no-untyped-call]
    except Exception:
        return False
    return not (wrapped or dual)


def _linearize(rule: InterpRule, x: Any, knots: Any, values: Any, lo: Any, hi: Any) -> Any:
    inputs = (x, knots, values, lo, hi)
    if torch.compiler.is_compiling():
        if not any(a is not None and a.requires_grad for a in inputs):
            return rule.value(x, knots, values, lo=lo, hi=hi)
        # torch.compile cannot trace a Function with a jvp: reverse mode only
        # (forward mode through a compiled function raises torch's own error).
        needs = tuple(a is not None and a.requires_grad for a in inputs)
        return _InterpFunction.apply(*_distinct(inputs), rule, needs)[0]  # type: ignore[no-untyped-call]
    # A plain tensor carries no autodiff information: no derivative with
    # respect to it can be asked for through this call.
    needs = tuple(a is not None and not _plain_tensor(a) for a in inputs)
    if not any(needs):
        # Nothing can ask for a derivative: forward values only, without the
        # partials (same arithmetic as the Function's first output).
        return rule.value(x, knots, values, _any_nan_reader(x), lo=lo, hi=hi)
    return _Interp.apply(*inputs, rule, needs)[0]  # type: ignore[no-untyped-call]


def _distinct(inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    """``inputs`` with a repeated tensor (``left`` and ``right`` the same bound,
    queries that are the knots) replaced by a view of it: torch.compile
    rejects one tensor passed twice to a Function."""
    out: list[Any] = []
    for t in inputs:
        if t is not None and any(t is u for u in out):
            t = t.view_as(t)
        out.append(t)
    return tuple(out)


def _scatter_add(xp: Any, size: int, index: Any, src: Any) -> Any:
    return torch.zeros(size, dtype=src.dtype, device=src.device).index_add(0, index, src)


def _scatter_add_pair(xp: Any, size: int, index: Any, c0: Any, c1: Any) -> Any:
    # c0 at `index`, then c1 at `index + 1` (the slots from 1 on at `index`):
    # index_add adds in index order, so each slot sums the terms of one
    # scatter of the concatenations in the same order, without those copies
    # of the queries' arrays.  Out of place (torch.func batches index_add,
    # not an in-place add of batched terms into an unbatched buffer); the
    # copies are the size of the knots.
    first = torch.zeros(size, dtype=c0.dtype, device=c0.device).index_add(0, index, c0)
    return torch.cat([first[:1], first[1:].index_add(0, index, c1)])


def _searchsorted(xp: Any, knots: Any, x: Any) -> Any:
    # torch copies (and warns about) non-contiguous inputs; column views are common.
    # 2-D knots and queries: each row is searched in its own knots.
    return torch.searchsorted(_contiguous(knots), _contiguous(x), right=True)


def _contiguous(t: Any) -> Any:
    """``t`` with contiguous memory, also under ``torch.vmap``/``torch.func``.

    A functorch-wrapped tensor reports the strides of one sample, so
    ``contiguous()`` keeps a strided batch (a slice of batched knots) and
    ``torch.searchsorted``'s batching rule warns about it; a clone in
    contiguous format lays out the whole batch.
    """
    if not torch.compiler.is_compiling():
        try:
            wrapped = torch._C._functorch.is_functorch_wrapped_tensor(t)
        except Exception:
            wrapped = False
        if wrapped:
            return t.clone(memory_format=torch.contiguous_format)
    return t.contiguous()


def _erf(xp: Any, x: Any) -> Any:
    return torch.special.erf(x)


def _complex_parts(xp: Any, re: Any, im: Any, dtype: Any) -> Any:
    # torch.complex copies the parts; torch's complex addition would mix them
    # ((1+0j) + (-0+inf j) is nan+inf j on the CPU).  The parts come in the
    # part dtype of `dtype` (interp computes complex32 as complex64).
    return torch.complex(re, im)


def _layout_problem(a: Any) -> str | None:
    # Sparse and nested tensors lack the strided operations the rule uses
    # (reshape, as_strided); say so before any of them fails inside.
    if a.is_nested:
        return "a nested tensor; pass a regular (strided) tensor"
    if a.layout != torch.strided:
        return f"a tensor of layout {a.layout}; pass a dense (strided) tensor, e.g. `.to_dense()`"
    return None


def _is_concrete(a: Any) -> bool:
    # Reading values under torch.compile would break the graph.
    return not torch.compiler.is_compiling()


def make_hooks() -> BackendHooks:
    return BackendHooks(
        "torch",
        differentiable=True,
        searchsorted=_searchsorted,
        stop_gradient=torch.Tensor.detach,
        linearize=_linearize,
        scatter_add=_scatter_add,
        scatter_add_pair=_scatter_add_pair,
        take=_take,
        erf=_erf,
        is_concrete=_is_concrete,
        complex_parts=_complex_parts,
        layout_problem=_layout_problem,
    )
