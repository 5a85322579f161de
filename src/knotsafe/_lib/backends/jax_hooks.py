"""JAX hooks: ``stop_gradient`` and the gradient rule as a ``jax.custom_jvp``."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.special
from jax.custom_derivatives import SymbolicZero

from knotsafe._lib.backends.hooks import BackendHooks
from knotsafe._lib.rule import InterpRule


@functools.lru_cache(maxsize=512)
def _custom_interp(key: InterpRule, gap_operand: bool) -> Any:
    """The compiled, differentiable interpolation for one kind of rule.

    Numbers (the ``left``/``right`` bounds, ``min_gap``) are operands, not
    part of ``key``: a new number costs no compilation, and -0.0 and 0.0 (equal
    as cache keys) each keep their sign.
    """

    def rule_for(gap: Any) -> InterpRule:
        return dataclasses.replace(key, min_gap=gap) if gap_operand else key

    # The partials, computed the cheap way (first_order: the forward's slope,
    # one division, no double where) unless something differentiates them.
    # Only a second derivative does; it goes through this function's own jvp,
    # the differentiable partials.  Both give the same values, bit for bit.
    # Without this split every first-derivative program carried the guarded
    # divisions of the differentiable partials: several more K-sized
    # temporaries per call, which made a program with two calls more than
    # twice as slow as two programs with one.
    @jax.custom_jvp
    def partials(x: Any, knots: Any, values: Any, lo: Any, hi: Any, gap: Any) -> Any:
        out, p = rule_for(gap).value_and_partials(x, knots, values, lo=lo, hi=hi, first_order=True)
        return out, (p.j, p.dx, p.a0, p.a1, p.bl, p.br)

    @partials.defjvp
    def partials_jvp(primals: Any, tangents: Any) -> Any:
        def differentiable(x: Any, knots: Any, values: Any, lo: Any, hi: Any, gap: Any) -> Any:
            out, p = rule_for(gap).value_and_partials(x, knots, values, lo=lo, hi=hi)
            return out, (p.j, p.dx, p.a0, p.a1, p.bl, p.br)

        return jax.jvp(differentiable, primals, tangents)

    # The custom function passes precomputed forward values through, so its
    # jvp rule computes values and partials once (shared bracket) and can
    # still return an output that is the custom function again.
    @jax.custom_jvp
    def interp(x: Any, knots: Any, values: Any, lo: Any, hi: Any, gap: Any, out: Any) -> Any:
        return out

    @functools.partial(interp.defjvp, symbolic_zeros=True)
    def interp_jvp(primals: Any, tangents: Any) -> Any:
        x, knots, values, lo, hi, gap, _ = primals
        # An input nobody differentiates has a symbolic zero tangent: its
        # terms are left out of the tangent (None = zero), not multiplied by
        # zeros.
        x_dot, knots_dot, values_dot, lo_dot, hi_dot = (
            None if isinstance(t, SymbolicZero) else t for t in tangents[:5]
        )
        out, arrays = partials(x, knots, values, lo, hi, gap)
        p = rule_for(gap).partials(*arrays)
        # Second derivatives: an outer differentiation of this rule sees the
        # custom rule again through `out`, and the partials' own jvp (the
        # differentiable partials: functions of the primals with guarded
        # divisions, differentiated by plain autodiff).  The tangent is linear in the input tangents, so JAX
        # transposes it for reverse mode (the takes become scatter-adds).
        out = interp(x, knots, values, lo, hi, gap, jax.lax.stop_gradient(out))
        return out, p.tangent(x_dot, knots_dot, values_dot, lo_dot, hi_dot)

    def call(x: Any, knots: Any, values: Any, lo: Any, hi: Any, gap: Any) -> Any:
        value = rule_for(gap).value(x, knots, values, lo=lo, hi=hi)
        return interp(x, knots, values, lo, hi, gap, jax.lax.stop_gradient(value))

    # Compiled even when called eagerly: one dispatch instead of dozens, and
    # XLA's multiply-add contraction (an FMA changes the last bit) is then the
    # same with and without an outer jax.jit.
    return jax.jit(call)


def _linearize(rule: InterpRule, x: Any, knots: Any, values: Any, left: Any, right: Any) -> Any:
    gap = rule.min_gap
    if gap is None:
        return _custom_interp(rule, False)(x, knots, values, left, right, None)
    key = dataclasses.replace(rule, min_gap=None)
    return _custom_interp(key, True)(x, knots, values, left, right, jnp.asarray(gap, dtype=knots.dtype))


def _scatter_add(xp: Any, size: int, index: Any, src: Any) -> Any:
    # zeros_like follows src's dtype and sharding, also for tracers (no .device).
    return jnp.zeros_like(src, shape=(size,)).at[index].add(src)


def _searchsorted(xp: Any, knots: Any, x: Any) -> Any:
    if knots.ndim == 1:
        return jnp.searchsorted(knots, x, side="right")
    # Rows: JAX's batching rule runs one search over all of them.
    return jax.vmap(functools.partial(jnp.searchsorted, side="right"))(knots, x)


def _take(xp: Any, a: Any, index: Any) -> Any:
    # Callers pass in-range indices only (the hook's contract), so the gathers
    # promise it: jnp.take's default mode adds a bounds mask and a NaN fill to
    # every gather, which XLA then evaluates once per query and gather.
    if a.ndim == 1:
        return a.at[index].get(mode="promise_in_bounds")
    return jnp.take_along_axis(a, index, axis=-1, mode="promise_in_bounds")


def _erf(xp: Any, x: Any) -> Any:
    return jax.scipy.special.erf(x)


def make_hooks() -> BackendHooks:
    return BackendHooks(
        "jax",
        differentiable=True,
        stop_gradient=jax.lax.stop_gradient,
        is_concrete=lambda a: not isinstance(a, jax.core.Tracer),
        linearize=_linearize,
        scatter_add=_scatter_add,
        searchsorted=_searchsorted,
        take=_take,
        erf=_erf,
        compiled=jax.jit,
    )
