"""JAX hooks: ``stop_gradient`` and the gradient rule as a ``jax.custom_jvp``."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.special

from knotsafe._lib._rule import InterpRule
from knotsafe.backends import BackendHooks


@functools.lru_cache(maxsize=512)
def _custom_interp(rule: InterpRule) -> Any:
    @jax.custom_jvp
    def interp(x: Any, knots: Any, values: Any) -> Any:
        return rule.value(x, knots, values)

    @interp.defjvp
    def interp_jvp(primals: Any, tangents: Any) -> Any:
        x, knots, values = primals
        x_dot, knots_dot, values_dot = tangents
        out, p = rule.value_and_partials(x, knots, values)
        # Linear in the tangents, so JAX transposes it for reverse mode
        # (the takes become scatter-adds).
        moved = x_dot
        if p.knot_grad:
            moved = moved - (p.a0 * jnp.take(knots_dot, p.j) + p.a1 * jnp.take(knots_dot, p.j + 1))
        t = p.dx * moved + p.a0 * jnp.take(values_dot, p.j) + p.a1 * jnp.take(values_dot, p.j + 1)
        return out, t

    # Compiled even when called eagerly: one dispatch instead of dozens, and
    # XLA's multiply-add contraction (an FMA changes the last bit) is then the
    # same with and without an outer jax.jit.
    return jax.jit(interp)


def _linearize(hooks: BackendHooks, rule: InterpRule, x: Any, knots: Any, values: Any) -> Any:
    return _custom_interp(rule)(x, knots, values)


def _scatter_add(xp: Any, size: int, index: Any, src: Any) -> Any:
    # zeros_like follows src's dtype and sharding, also for tracers (no .device).
    return jnp.zeros_like(src, shape=(size,)).at[index].add(src)


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
        erf=_erf,
    )
