"""JAX hooks: ``stop_gradient`` and the gradient rule as a ``jax.custom_jvp``."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.special

from knotsafe._lib.backends.hooks import BackendHooks
from knotsafe._lib.rule import InterpRule


@functools.lru_cache(maxsize=512)
def _custom_interp(rule: InterpRule) -> Any:
    # The custom function passes precomputed forward values through, so its
    # jvp rule computes values and partials once (shared bracket) and can
    # still return an output that is the custom function again.
    @jax.custom_jvp
    def interp(x: Any, knots: Any, values: Any, out: Any) -> Any:
        return out

    @interp.defjvp
    def interp_jvp(primals: Any, tangents: Any) -> Any:
        x, knots, values, _ = primals
        x_dot, knots_dot, values_dot, _ = tangents
        out, p = rule.value_and_partials(x, knots, values)
        # Second derivatives: an outer differentiation of this rule sees the
        # custom rule again through `out`, and plain autodiff through the
        # partials (differentiable functions of the primals, guarded
        # divisions).  The tangent is linear in the input tangents, so JAX
        # transposes it for reverse mode (the takes become scatter-adds).
        out = interp(x, knots, values, jax.lax.stop_gradient(out))
        return out, p.tangent(x_dot, knots_dot, values_dot)

    def call(x: Any, knots: Any, values: Any) -> Any:
        return interp(x, knots, values, jax.lax.stop_gradient(rule.value(x, knots, values)))

    # Compiled even when called eagerly: one dispatch instead of dozens, and
    # XLA's multiply-add contraction (an FMA changes the last bit) is then the
    # same with and without an outer jax.jit.
    return jax.jit(call)


def _linearize(rule: InterpRule, x: Any, knots: Any, values: Any) -> Any:
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
