"""Tests written for mutants that survived the mutation runs (docs/mutation.md, tests/mutation_run.py).

Each checks a number the code under test did not produce: the contract's partials
(:func:`tests._contract.contract_partials`, an independent NumPy transcription), ``numpy.add.at``,
``math.erf``.  They are ordinary unit tests and run in the README's test command too.
"""

from __future__ import annotations

import contextlib
import math
import sys
import warnings
from types import ModuleType

import array_api_compat
import numpy as np
import pytest

import knotsafe
from knotsafe import backends
from knotsafe._lib.backends import registry
from knotsafe._lib.rule import InterpRule
from tests import backend_table
from tests._contract import contract_partials, contract_threshold
from tests._support import AutoDiff, asarray, backend_module, backend_name, has_float64, to_numpy

# A genuine bin, a run of exact duplicates (2, 2), queries inside bins, on an interior knot, on the
# duplicate run, on the first and last knot and outside: every kind of partial is nonzero somewhere.
KNOTS = np.array([0.0, 1.0, 2.0, 2.0, 3.0, 5.0])
VALUES = np.array([0.5, -1.25, 3.0, 0.75, 2.5, -2.0])
X = np.array([0.375, 1.0, 1.5, 2.0, 2.625, 4.0, 0.0, 5.0, -1.0, 6.0])
# Tangents with no zero and no common factor, so no term of the tangent can cancel by accident.
X_T = np.array([0.3, -1.1, 0.7, 2.0, -0.4, 1.3, 0.9, -0.6, 1.7, -2.2])
KNOTS_T = np.array([0.25, -0.5, 1.5, -0.75, 0.6, 1.1])
VALUES_T = np.array([-0.8, 0.35, 1.2, -1.4, 0.45, 0.9])


def _dtype(xp: ModuleType) -> str:
    return "float64" if has_float64(xp) else "float32"


def _expected_tangent(
    dt: str, x_t: np.ndarray | None, knot_grad: str = "exact", *, knots: bool = True, values: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The contract's output tangent ``dx x_t + dknots @ knots_t + dvalues @ values_t`` and its bound.

    Bound: each partial computed in ``dt`` is within ``4 eps (|p| + max|slope|)`` of the float64
    transcription (the per-partial bound of tests/test_point_classes.py: a slope and a weight, each
    <= 3 eps/2 relative, and one product); the tangent sums at most ``2 + 2 + 2`` products with the
    input tangents, each adding one rounding of ``eps |p t|``.  So ``sum |t| 4 eps (|p| + s) +
    7 eps sum |p t|`` bounds the difference (``s`` the largest genuine slope).
    """
    k, v, x = KNOTS.astype(dt), VALUES.astype(dt), X.astype(dt)
    _, ex, ek, ev = contract_partials(x, k, v, threshold=contract_threshold(k, dt), knot_grad=knot_grad)
    eps = float(np.finfo(dt).eps)
    gaps = np.diff(k.astype(np.float64))
    genuine = gaps > contract_threshold(k, dt)
    s = float(np.max(np.abs(np.diff(v.astype(np.float64))[genuine] / gaps[genuine])))
    # A tangent left off is zero.
    kt = KNOTS_T.astype(dt).astype(np.float64) * knots
    vt = VALUES_T.astype(dt).astype(np.float64) * values
    tangent = ek @ kt + ev @ vt
    size = np.abs(ek) @ np.abs(kt) + np.abs(ev) @ np.abs(vt)
    first = 4 * eps * ((np.abs(ek) + s) @ np.abs(kt) + (np.abs(ev) + s) @ np.abs(vt))
    if x_t is not None:
        xt = x_t.astype(dt).astype(np.float64)
        tangent = tangent + ex * xt
        size = size + np.abs(ex * xt)
        first = first + 4 * eps * (np.abs(ex) + s) * np.abs(xt)
    if values:  # every output reads a value: with the values' tangents no entry is 0 by accident
        assert np.all(np.abs(tangent) > 0.05)
    return tangent, first + 7 * eps * size


def _expected_cotangent(dt: str, g: np.ndarray, knot_grad: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """The contract's ``(g @ d/dx, g @ d/dknots, g @ d/dvalues)``, each with its bound.

    Each partial computed in ``dt`` is within ``4 eps (|p| + s)`` of the float64 transcription
    (see :func:`_expected_tangent`); each gradient entry sums at most ``M`` products with ``g``,
    adding ``(M + 1) eps sum |g p|``.
    """
    k, v, x = KNOTS.astype(dt), VALUES.astype(dt), X.astype(dt)
    g = g.astype(dt).astype(np.float64)
    threshold = contract_threshold(k, dt)
    _, ex, ek, ev = contract_partials(x, k, v, threshold=threshold, knot_grad=knot_grad)
    eps = float(np.finfo(dt).eps)
    gaps = np.diff(k.astype(np.float64))
    genuine = gaps > threshold
    s = float(np.max(np.abs(np.diff(v.astype(np.float64))[genuine] / gaps[genuine])))
    m = x.size
    return [
        (g @ jac, np.abs(g) @ (4 * eps * (np.abs(jac) + s)) + (m + 1) * eps * (np.abs(g) @ np.abs(jac)))
        for jac in (np.diag(ex), ek, ev)
    ]


def _torch(dt: str) -> tuple[object, ...]:
    import torch

    return tuple(torch.asarray(a.astype(dt)) for a in (X, KNOTS, VALUES, X_T, KNOTS_T, VALUES_T))


@pytest.mark.skip_xp_backend("numpy", reason="no autodiff")
@pytest.mark.skip_xp_backend("array_api_strict", reason="no autodiff")
@pytest.mark.skip_xp_backend("dask", reason="no autodiff")
@pytest.mark.parametrize("knot_grad", ["exact", "stop"])
def test_forward_mode_with_no_tangent_on_x(xp: ModuleType, knot_grad: str) -> None:
    """Forward mode where only the knots and values carry tangents (``x`` is a constant).

    PyTorch hands the custom derivative ``None`` for ``x``'s tangent (Partials.tangent's zero
    branch); JAX hands it zeros.  Both must give the contract's ``dknots @ knots_t + dvalues @
    values_t``, and with ``knot_grad="stop"`` only the values' term.
    """
    dt = _dtype(xp)
    expected, bound = _expected_tangent(dt, None, knot_grad)
    if backend_name(xp) == "torch":
        import torch

        x, k, v, _, kt, vt = _torch(dt)
        _, got = torch.func.jvp(lambda k_, v_: knotsafe.interp(x, k_, v_, knot_grad=knot_grad), (k, v), (kt, vt))
    else:
        import jax

        x, k, v, kt, vt = (asarray(xp, a, dt) for a in (X, KNOTS, VALUES, KNOTS_T, VALUES_T))
        _, got = jax.jvp(lambda k_, v_: knotsafe.interp(x, k_, v_, knot_grad=knot_grad), (k, v), (kt, vt))
    assert np.all(np.abs(to_numpy(got) - expected) <= bound), (to_numpy(got), expected)


@pytest.mark.parametrize("duals", ["x", "knots,values", "x,knots,values"])
def test_torch_forward_ad_dual_numbers_on_any_inputs(duals: str) -> None:
    """``torch.autograd.forward_ad`` dual numbers on some or all inputs, the others plain tensors.

    The PyTorch hooks skip the autograd Function when no input can carry a derivative
    (``_plain_tensor``); a dual number with a tangent must never be taken for a plain tensor,
    whichever inputs are dual, or its tangent would silently be dropped.
    """
    _check_dual_tangent(duals, no_grad=False)


def _check_dual_tangent(duals: str, *, no_grad: bool) -> None:
    """interp of float64 dual numbers on the inputs named in ``duals``: the contract's output tangent."""
    torch = backend_module("torch")
    import torch.autograd.forward_ad as fwad

    dt = "float64"
    x, k, v, xt, kt, vt = _torch(dt)
    which = duals.split(",")
    expected, bound = _expected_tangent(
        dt, X_T if "x" in which else None, knots="knots" in which, values="values" in which
    )
    with torch.no_grad() if no_grad else contextlib.nullcontext(), fwad.dual_level():
        args = {"x": x, "knots": k, "values": v}
        for name, t in (("x", xt), ("knots", kt), ("values", vt)):
            if name in which:
                args[name] = fwad.make_dual(args[name], t)
        got = fwad.unpack_dual(knotsafe.interp(args["x"], args["knots"], args["values"])).tangent
    assert got is not None, "the output carries no tangent"
    assert np.all(np.abs(got.numpy() - expected) <= bound), (got, expected)


def test_jax_hooks() -> None:
    """The JAX hooks' fields, each against a reference outside knotsafe.

    ``stop_gradient`` cuts a gradient, ``is_concrete`` is False only for traced arrays (so the data
    checks are skipped under jit and run eagerly), ``scatter_add`` accumulates repeated indices like
    ``numpy.add.at`` and is differentiable with respect to its source, ``erf`` matches ``math.erf``.
    """
    jax = backend_module("jax")
    import jax.numpy as jnp

    hooks = backends.hooks_for(jnp)
    assert hooks.name == "jax"
    assert hooks.differentiable
    # d/da (stop_gradient(a) * a) = stop_gradient(a) = 3, not 2a = 6.
    assert float(jax.grad(lambda a: hooks.stop_gradient(a) * a)(3.0)) == 3.0
    seen: list[bool] = []

    @jax.jit
    def traced(a: object) -> object:
        seen.append(hooks.is_concrete(a))
        return a

    traced(jnp.ones(3))
    assert seen == [False]
    assert hooks.is_concrete(jnp.ones(3))
    # Six output slots for five sources (the output length is `size`, not the source's), slot 5
    # receives nothing and slot 3 three times.
    index = np.array([3, 0, 3, 1, 3])
    src = np.array([0.5, 1.25, -2.0, 4.0, 0.125], dtype=np.float32)
    expected = np.zeros(6, dtype=np.float32)
    np.add.at(expected, index, src)
    got = hooks.scatter_add(jnp, 6, jnp.asarray(index), jnp.asarray(src))
    np.testing.assert_array_equal(np.asarray(got), expected)  # sums of dyadic numbers: exact
    # The cotangent of a scatter-add is the gather of the output cotangent.
    w = np.arange(1.0, 7.0, dtype=np.float32)
    g = jax.grad(lambda s: (hooks.scatter_add(jnp, 6, jnp.asarray(index), s) * w).sum())(jnp.asarray(src))
    np.testing.assert_array_equal(np.asarray(g), w[index])
    z = np.array([-2.5, -0.3, 0.0, 0.7, 1.9], dtype=np.float32)
    ref = np.array([math.erf(float(t)) for t in z])
    # |erf| < 1: a float32 erf correct to a few ulps is within 4 eps (float32) of the float64 math.erf.
    np.testing.assert_allclose(
        np.asarray(hooks.erf(jnp, jnp.asarray(z))), ref, rtol=0, atol=4 * np.finfo(np.float32).eps
    )


def test_jax_eager_checks_run_and_traced_checks_are_skipped() -> None:
    """Unsorted knots raise eagerly (the hooks say the array is concrete) and are not read under jit."""
    jax = backend_module("jax")
    import jax.numpy as jnp

    k = jnp.asarray([0.0, 2.0, 1.0])
    v = jnp.asarray([0.0, 1.0, 2.0])
    x = jnp.asarray([0.5])
    with pytest.raises(ValueError, match="knots"):
        knotsafe.interp(x, k, v)
    jax.jit(knotsafe.interp)(x, k, v)  # traced: no data check, no error


def test_erf_hook_matches_math_erf(xp: ModuleType) -> None:
    """Every backend's ``erf`` hook (the standard-only Cody approximation where a backend has none)."""
    dt = _dtype(xp)
    z = np.array([-6.0, -2.5, -0.3, -1e-3, 0.0, 0.7, 1.9, 3.5], dtype=dt)
    ref = np.array([math.erf(float(t)) for t in z])
    got = to_numpy(backends.hooks_for(xp).erf(xp, asarray(xp, z, dt)))
    # |erf| <= 1: an erf correct to a few ulps is within 4 eps of the float64 math.erf.
    np.testing.assert_allclose(got, ref, rtol=0, atol=4 * np.finfo(dt).eps)


@pytest.mark.skip_xp_backend(
    "dask", reason="data check: needs values, skipped on lazy dask arrays (tests/test_dask.py)"
)
def test_eager_data_checks_raise(xp: ModuleType) -> None:
    """Eager arrays are concrete on every backend: unsorted knots raise, naming the argument.

    (A backend whose ``is_concrete`` said otherwise would skip the check and return NaN.)
    """
    dt = _dtype(xp)
    k, v, x = (asarray(xp, a, dt) for a in ([0.0, 2.0, 1.0], [0.0, 1.0, 2.0], [0.5]))
    with pytest.raises(ValueError, match="`knots`"):
        knotsafe.interp(x, k, v)


@pytest.mark.parametrize("knot_grad", ["exact", "stop"])
def test_torch_outputs_and_gradients_stay_on_the_inputs_device(knot_grad: str) -> None:
    """Every array the PyTorch path creates lives on the inputs' device, not the default one.

    PyTorch's ``meta`` device (shapes and dtypes, no data) is a second device on any machine, so
    this runs without a GPU.  Zeros made without ``device=`` (the scatter-add's accumulator, the
    knot gradient under ``knot_grad="stop"``) would land on the CPU: ``index_add`` and autograd's
    gradient validation both refuse to mix devices.  Meta data cannot be read, so the data checks
    are skipped (as under tracing).
    """
    torch = backend_module("torch")
    import array_api_compat.torch as torch_ns

    meta = torch.device("meta")
    index, src = torch.tensor([0, 2, 2], device=meta), torch.ones(3, device=meta)
    assert backends.hooks_for(torch_ns).scatter_add(torch_ns, 4, index, src).device == meta
    x, k, v = (torch.zeros(n, dtype=torch.float64, device=meta).requires_grad_() for n in (5, 4, 4))
    out = knotsafe.interp(x, k, v, knot_grad=knot_grad)
    assert out.device == meta and tuple(out.shape) == (5,)
    grads = torch.autograd.grad(out.sum(), [x, k, v])
    assert [g.device for g in grads] == [meta] * 3
    assert [tuple(g.shape) for g in grads] == [(5,), (4,), (4,)]


def test_torch_nested_transform_with_constant_inputs_at_the_inner_level() -> None:
    """An outer ``torch.func.grad`` through an inner transform for which interp's inputs are constants.

    At the inner level the queries carry no gradient and no tangent, but they are functorch-wrapped
    tensors of the outer level: the PyTorch hooks must still attach the gradient rule (not the plain
    forward, whose derivative in the 2-ulp bin is the slope ~1e16).  Expected: the contract's
    d/dx (0 in the near-duplicate bin, the slope 1 in [0, 1)) times d x / d theta = x0.
    """
    torch = backend_module("torch")

    near = float(np.nextafter(np.nextafter(3.0, 4.0), 4.0))  # a 2-ulp bin: a duplicate
    k_np, v_np = np.array([0.0, 1.0, 3.0, near, 5.0]), np.array([0.0, 1.0, 2.0, 7.0, 1.0])
    x0 = np.array([float(np.nextafter(3.0, 4.0)), 0.5])
    k, v, x0_t = (torch.asarray(a) for a in (k_np, v_np, x0))

    def outer(theta: object) -> object:
        x = x0_t * theta
        inner = torch.func.grad(lambda s: (s * knotsafe.interp(x, k, v)).sum())
        return inner(torch.asarray(1.0, dtype=torch.float64))

    got = float(torch.func.grad(outer)(torch.asarray(1.0, dtype=torch.float64)))
    _, ex, _, _ = contract_partials(x0, k_np, v_np, threshold=contract_threshold(k_np, "float64"))
    expected = float(ex @ x0)
    # Two products and one sum of terms <= 1 in float64: within 4 eps of the float64 reference.
    assert abs(got - expected) <= 4 * np.finfo(np.float64).eps, (got, expected)


@pytest.mark.parametrize("knot_grad", ["exact", "stop"])
@pytest.mark.parametrize("missing", ["x", "knots", "values", "x,knots"])
def test_partials_tangent_reads_a_missing_tangent_as_zero(xp: ModuleType, knot_grad: str, missing: str) -> None:
    """``Partials.tangent(None, ...)``: an input without a tangent contributes nothing.

    The rule's documented contract for custom derivatives ("None = zero").  On the pinned
    frameworks no built-in backend hands it None (PyTorch materialises zero tangents, JAX
    instantiates symbolic zeros, the generic path passes arrays), so it is checked directly, on
    every backend, against the contract's tangent with the missing terms left out.
    """
    dt = _dtype(xp)
    x, k, v, xt, kt, vt = (asarray(xp, a, dt) for a in (X, KNOTS, VALUES, X_T, KNOTS_T, VALUES_T))
    ns = array_api_compat.array_namespace(x)
    rule = InterpRule(ns, backends.hooks_for(ns), None, None, knot_grad, None)
    _, p = rule.value_and_partials(x, k, v)
    gone = missing.split(",")
    got = p.tangent(None if "x" in gone else xt, None if "knots" in gone else kt, None if "values" in gone else vt)
    expected, bound = _expected_tangent(
        dt, None if "x" in gone else X_T, knot_grad, knots="knots" not in gone, values="values" not in gone
    )
    assert np.all(np.abs(to_numpy(got) - expected) <= bound), (to_numpy(got), expected)


@pytest.mark.parametrize("knot_grad", ["exact", "stop"])
def test_torch_backend_registered_with_the_standard_scatter_add(knot_grad: str) -> None:
    """PyTorch hooks with ``scatter_add`` replaced by the standard-only default (``BackendHooks.replace``).

    The autograd Function's reverse mode scatters the cotangents through the hooks' ``scatter_add``
    with the rule's namespace; the standard-only one (every registered backend's default) works
    through that namespace.  Expected: the contract's ``g @ J`` for a cotangent ``g``.
    """
    torch = backend_module("torch")
    import array_api_compat.torch as torch_ns

    dt = "float64"
    x, k, v = (torch.asarray(a).requires_grad_() for a in (X, KNOTS, VALUES))
    g = X_T
    backends.register(
        "torch_standard_scatter",
        backends.hooks_for(torch_ns).replace(scatter_add=backends.generic_scatter_add),
        matches=lambda n: n is torch_ns,
    )
    try:
        got = torch.autograd.grad((knotsafe.interp(x, k, v, knot_grad=knot_grad) * torch.asarray(g)).sum(), [x, k, v])
    finally:
        backends.unregister("torch_standard_scatter")
    for got_i, (expected, bound) in zip(got, _expected_cotangent(dt, g, knot_grad), strict=True):
        assert np.all(np.abs(got_i.numpy() - expected) <= bound), (got_i, expected)


@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("knot_grad", ["exact", "stop"])
def test_rule_partials_on_the_strict_standard_namespace(dt: str, first_order: bool, knot_grad: str) -> None:
    """The rule's partials, tangent and cotangent computed on array-api-strict, with its hooks.

    The rule is written once against the array API standard; knotsafe's public API only asks it for
    forward values on array-api-strict (no autodiff), so its derivative code is run here directly
    on the namespace that rejects anything outside the standard (mixed bool/float ``where``, a
    namespace argument left out).  Expected: the contract's tangent and cotangents, in the inputs'
    dtype, None for a gradient that ``needs`` does not ask for, and the same partials again from the
    bins of the first call (``j=``).
    """
    xp = backend_module("array_api_strict")
    x, k, v, xt, kt, vt = (xp.asarray(a.astype(dt)) for a in (X, KNOTS, VALUES, X_T, KNOTS_T, VALUES_T))
    rule = InterpRule(xp, backends.hooks_for(xp), None, None, knot_grad, None)
    _, p = rule.value_and_partials(x, k, v, first_order=first_order)
    expected, bound = _expected_tangent(dt, X_T, knot_grad)
    got = p.tangent(xt, kt, vt)
    assert got.dtype == x.dtype
    assert np.all(np.abs(to_numpy(got) - expected) <= bound), (to_numpy(got), expected)
    g = X_T
    grads = p.cotangent(xp.asarray(g.astype(dt)), KNOTS.size)
    for got_i, (expected_i, bound_i) in zip(grads, _expected_cotangent(dt, g, knot_grad), strict=True):
        assert got_i is not None and got_i.dtype == x.dtype
        assert np.all(np.abs(to_numpy(got_i) - expected_i) <= bound_i), (to_numpy(got_i), expected_i)
    for needs in [(False, True, True), (True, False, True), (True, True, False), (False, False, True)]:
        some = p.cotangent(xp.asarray(g.astype(dt)), KNOTS.size, needs)
        assert [a is not None for a in some] == list(needs)
    # The bins of an earlier call passed back (``j=``, no search) give the same partials.
    out, again = rule.value_and_partials(x, k, v, first_order=first_order, j=p.j, with_value=False)
    assert out is None
    for name in ("j", "dx", "a0", "a1"):
        np.testing.assert_array_equal(to_numpy(getattr(again, name)), to_numpy(getattr(p, name)))


@pytest.mark.parametrize("mode", ["rev", "fwd"])
def test_gap_exactly_at_threshold_is_a_duplicate_in_both_modes(xp: ModuleType, autodiff: AutoDiff, mode: str) -> None:
    """ "gap <= 8 eps max|k|" in reverse and forward mode (each mode computes the partials its own way).

    PyTorch's reverse mode uses the first-order partials, its forward mode (and every JAX mode) the
    differentiable ones: both must call a gap of exactly ``8 eps * 4`` (a power of two, exact) a
    duplicate, d/dx = 0, while the genuine bin beside it keeps its slope (1 / 4).
    """
    dt = _dtype(xp)
    eps = float(np.finfo(dt).eps)
    g = 8.0 * eps * 4.0
    k, v = asarray(xp, [-4.0, 0.0, g, 1.0], dt), asarray(xp, [0.0, 1.0, 2.0, 3.0], dt)
    jac = autodiff.jacobian(lambda a: knotsafe.interp(a, k, v), [asarray(xp, [g / 2, -2.0], dt)], 0, mode)
    np.testing.assert_array_equal(np.diag(jac), [0.0, 0.25])  # 1 / 4: exact in binary


@pytest.mark.parametrize("mode", ["rev", "fwd"])
def test_bin_to_an_infinite_knot_with_an_infinite_value_is_a_duplicate(
    xp: ModuleType, autodiff: AutoDiff, mode: str
) -> None:
    """A bin touching an infinite knot is a duplicate, also when its value is infinite (each mode).

    knots ``[0, 1, inf]``, values ``[0, 2, inf]``: in ``[1, inf)`` the slope would be inf / inf = NaN;
    the contract's "finite gradients everywhere" and its rule for a gap that is inf give d/dx = 0,
    d/dknots = 0 and the weights ``w = (x - 1) / inf = 0``, i.e. d/dvalues = (1, 0).  In the genuine
    bin ``[0, 1)`` at x = 0.5: slope 2, d/dknots = -2 (1 - w, w) = (-1, -1), d/dvalues = (0.5, 0.5).
    """
    dt = _dtype(xp)
    x, k, v = (asarray(xp, a, dt) for a in ([0.5, 5.0], [0.0, 1.0, np.inf], [0.0, 2.0, np.inf]))
    expected = {
        0: [[2.0, 0.0], [0.0, 0.0]],
        1: [[-1.0, -1.0, 0.0], [0.0, 0.0, 0.0]],
        2: [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]],
    }
    for argnum, jac in expected.items():
        got = autodiff.jacobian(knotsafe.interp, [x, k, v], argnum, mode)
        if argnum == 0:
            got = got * np.eye(2)  # d out_i / d x_j, j != i, is 0 by construction
        np.testing.assert_array_equal(got, jac)  # exact: products of powers of two
    if mode == "rev":
        # The gradient of the sum (PyTorch: the Function's first-order partials, no recomputation).
        for got_sum, jac in zip(autodiff.grad(knotsafe.interp, [x, k, v], (0, 1, 2)), expected.values(), strict=True):
            np.testing.assert_array_equal(got_sum, np.sum(jac, axis=0))


@pytest.mark.parametrize("dt", ["float32", "float64"])
def test_left_right_are_rounded_once_to_the_queries_dtype(xp: ModuleType, dt: str) -> None:
    """``left=0.1``, ``right=1/3`` (not representable in float32) with float32 and float64 inputs.

    numpy.interp returns ``left``/``right`` themselves; in the inputs' dtype that is the Python float
    rounded once to it (float64: unchanged), never first to a framework's default float dtype
    (PyTorch's is float32).  Queries below, on and above the knots: the expected values are exact.
    """
    if dt == "float64" and not has_float64(xp):
        pytest.skip("no float64")
    x, k, v = (np.array(a, dtype=dt) for a in ([-1.0, 0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0], [0.5, 1.5, -2.0]))
    got = knotsafe.interp(*(asarray(xp, a, dt) for a in (x, k, v)), left=0.1, right=1 / 3)
    expected = np.interp(x, k, v, left=0.1, right=1 / 3).astype(dt)
    assert to_numpy(got).dtype == np.dtype(dt)
    np.testing.assert_array_equal(to_numpy(got), expected)


def test_strict_arrays_on_a_non_default_device_with_left_right() -> None:
    """array-api-strict arrays on its second device, ``left``/``right`` set: every array the forward
    makes (the 0-d ``left``/``right``) is on the inputs' device (array-api-strict refuses to mix
    devices), and the values are numpy.interp's."""
    xp = backend_module("array_api_strict")
    dev = xp.Device("device1")
    x, k, v = [-1.0, 0.5, 2.0, 3.0], [0.0, 1.0, 2.0], [0.5, 1.5, -2.0]
    got = knotsafe.interp(*(xp.asarray(a, dtype=xp.float64, device=dev) for a in (x, k, v)), left=0.1, right=1 / 3)
    assert got.device == dev
    np.testing.assert_array_equal(to_numpy(got), np.interp(x, k, v, left=0.1, right=1 / 3))


@pytest.mark.parametrize("index", [[], [2], [3, 0, 3, 1, 3, 0]], ids=["empty", "one", "repeated"])
def test_generic_scatter_add_keeps_dtype_and_device(index: list[int]) -> None:
    """The standard-only scatter-add (every registered backend's default) on array-api-strict's
    second device, float32 sources: no source, one source, repeated indices and empty slots.

    Expected: ``numpy.add.at`` into zeros of length 6 (sums of dyadic numbers: exact), in float32, on
    the sources' device (array-api-strict refuses to mix devices and does not promote silently).
    """
    xp = backend_module("array_api_strict")
    dev = xp.Device("device1")
    src = np.array([0.5, 1.25, -2.0, 4.0, 0.125, 8.0], dtype=np.float32)[: len(index)]
    expected = np.zeros(6, dtype=np.float32)
    np.add.at(expected, np.array(index, dtype=np.int64), src)
    got = backends.generic_scatter_add(
        xp, 6, xp.asarray(index, dtype=xp.int64, device=dev), xp.asarray(src, dtype=xp.float32, device=dev)
    )
    assert got.dtype == xp.float32 and got.device == dev
    np.testing.assert_array_equal(to_numpy(got), expected)


def test_generic_is_concrete_is_false_only_for_lazy_arrays() -> None:
    """The standard-only ``is_concrete`` (the default of registered backends and of Dask): a Dask
    array is lazy (reading it would compute the graph), NumPy and array-api-strict arrays are not."""
    da = backend_module("dask", "dask.array")
    assert not backends.generic_is_concrete(da.ones(3, chunks=2))
    assert backends.generic_is_concrete(np.ones(3))
    if backend_table.installed("array_api_strict"):  # not in the dask session's environment
        import array_api_strict

        assert backends.generic_is_concrete(array_api_strict.ones(3))


def test_numpy_erf_without_scipy_is_the_standard_erf(monkeypatch: pytest.MonkeyPatch) -> None:
    """SciPy is optional: where ``scipy.special`` cannot be imported, the NumPy hooks' erf falls back
    to the standard-only one and still matches ``math.erf`` (to 4 eps; |erf| <= 1)."""
    import array_api_compat.numpy as cnp

    from knotsafe._lib.backends import numpy_hooks as _hooks_numpy

    monkeypatch.setattr(_hooks_numpy, "_scipy_erf", None)  # not looked up yet in this process
    monkeypatch.setitem(sys.modules, "scipy.special", None)  # importing it raises ImportError
    z = np.array([-6.0, -2.5, -0.3, -1e-3, 0.0, 0.7, 1.9, 3.5])
    got = backends.hooks_for(cnp).erf(cnp, z)
    assert _hooks_numpy._scipy_erf is False  # the failed import is remembered, not retried per call
    np.testing.assert_allclose(got, [math.erf(float(t)) for t in z], rtol=0, atol=4 * np.finfo(np.float64).eps)


def test_torch_compile_without_gradients_gives_numpy_interp_values() -> None:
    """``torch.compile(fullgraph=True)`` of a call where no input requires a gradient (inference):
    the compiled branch's plain forward, with ``left``/``right`` and a run of duplicate knots, gives
    numpy.interp's values (the compiled arithmetic may fuse a multiply-add: one rounding per value,
    so within 2 eps of numpy's float64 result, relative to the largest value)."""
    torch = backend_module("torch")

    k = np.array([0.0, 1.0, 2.0, 2.0, 3.0, 5.0])
    v = np.array([0.5, -1.25, 3.0, 0.75, 2.5, -2.0])
    x = np.array([-1.0, 0.0, 0.375, 1.5, 2.0, 2.625, 4.0, 5.0, 6.0])
    torch._dynamo.reset()
    compiled = torch.compile(lambda a, b, c: knotsafe.interp(a, b, c, left=-7.0, right=9.0), fullgraph=True)
    got = compiled(*(torch.asarray(a) for a in (x, k, v)))
    expected = np.interp(x, k, v, left=-7.0, right=9.0)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=2 * np.finfo(np.float64).eps * 9.0)


@pytest.mark.parametrize("which", ["x", "knots"])
def test_torch_compile_with_one_input_requiring_a_gradient_in_a_duplicate_bin(which: str) -> None:
    """``torch.compile(fullgraph=True)`` where only ``x`` or only the knots require a gradient, with a
    query inside a 2-ulp (duplicate) bin: the compiled call must still attach the gradient rule
    (d/dx and d/dknots are 0 there, the contract's numbers), not differentiate the plain forward,
    whose slope there is about 1e16."""
    torch = backend_module("torch")

    near = float(np.nextafter(np.nextafter(3.0, 4.0), 4.0))
    k, v = np.array([0.0, 1.0, 3.0, near, 5.0]), np.array([0.0, 1.0, 2.0, 7.0, 1.0])
    x = np.array([float(np.nextafter(3.0, 4.0)), 0.5, 4.0])
    args = [torch.asarray(a) for a in (x, k, v)]
    arg = args[0 if which == "x" else 1].requires_grad_()
    torch._dynamo.reset()
    out = torch.compile(lambda a, b, c: knotsafe.interp(a, b, c).sum(), fullgraph=True)(*args)
    (got,) = torch.autograd.grad(out, [arg])
    _, ex, ek, _ = contract_partials(x, k, v, threshold=contract_threshold(k, "float64"))
    expected = ex if which == "x" else ek.sum(axis=0)
    # Slopes 1 and -3 and weights in [0, 1]: each entry a sum of at most 3 products, within 8 eps.
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=8 * np.finfo(np.float64).eps)


@pytest.mark.parametrize("name", ["bandwidth", "n_knots", "span_ratio"])
def test_kernel_only_arguments_with_the_rank_method_name_the_argument(name: str) -> None:
    """``bandwidth``, ``n_knots`` and ``span_ratio`` apply to ``method="kernel"`` only: with the default
    rank method each is a TypeError whose message names that argument."""
    pts = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 0.5]])
    with pytest.raises(TypeError, match=f"`{name}` applies to method='kernel' only"):
        knotsafe.create_transforms(pts, **{name: 2})


# --- transforms.py (the 27 November transforms run) -------------------------------------------------

# One column with a run of four tied points (weights 3, 0.7, 1.9, 0.2) between untied ones, and a
# second column without ties; weights neither uniform nor dyadic, so every rank is rounded.
_TIE_POINTS = np.array([[0.0, 4.0], [1.5, 0.5], [1.5, 2.25], [1.5, 3.0], [1.5, 1.0], [3.0, 5.5], [4.0, 2.0]])
_TIE_WEIGHTS = np.array([0.3, 3.0, 0.7, 1.9, 0.2, 1.1, 0.45])


def _tie_rule_ranks(col: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted column and its ranks by the documented tie rule, run by run in float64: a run of m
    tied points after cumulative weight C, with total W, gets C + W i / m (i = 1..m), all scaled so
    that the last rank is N / (N + 1)."""
    order = np.argsort(col, kind="stable")
    s, ws = col[order].astype(np.float64), w[order].astype(np.float64)
    ranks, c, i = np.empty(s.size), 0.0, 0
    while i < s.size:
        m = int(np.sum(s == s[i]))
        run = float(np.sum(ws[i : i + m]))
        ranks[i : i + m] = c + run * np.arange(1, m + 1) / m
        c, i = c + run, i + m
    return s, ranks / c * s.size / (s.size + 1)


def test_inverse_transform_inside_a_run_of_tied_points_follows_the_tie_rule(xp: ModuleType) -> None:
    """``inv_transform`` at rank-space queries inside and beside a run of four tied, weighted points:
    the run's weight is spread evenly over its positions (ranks C + W i / m, increasing), so the
    inverse is numpy.interp on the tie rule's ranks.  A spread that is not increasing (the ranks
    unsorted inside the run) sends queries into the wrong bin.

    Queries: the midpoints of consecutive reference ranks and points a quarter of the way along.
    Tolerance: each computed rank is within 16 eps (relative to its value <= 1) of the float64
    reference (a pairwise cumulative sum of 7 weights, 3 levels, one product, two divisions, the
    scaling); a query at least a quarter of a bin from its knots then stays in its bin, and the output
    moves by at most slope * 2 * 16 eps plus one rounding of the output (eps * max|points|)."""
    dt = _dtype(xp)
    eps = float(np.finfo(dt).eps)
    pts, w = _TIE_POINTS.astype(dt), _TIE_WEIGHTS.astype(dt)
    _, inv = knotsafe.create_transforms(asarray(xp, pts, dt), asarray(xp, w, dt))
    cols = [_tie_rule_ranks(pts[:, d], w) for d in range(2)]
    u = np.stack([np.concatenate([t[:-1] + f * np.diff(t) for f in (0.25, 0.5, 0.75)]) for _, t in cols], axis=1)
    got = to_numpy(inv(asarray(xp, u, dt)))
    for d, (s, t) in enumerate(cols):
        expected = np.interp(u[:, d].astype(dt).astype(np.float64), t, s)
        slope = float(np.max(np.abs(np.diff(s)) / np.diff(t)))
        bound = slope * 2 * 16 * eps + eps * float(np.max(np.abs(s)))
        np.testing.assert_allclose(got[:, d], expected, rtol=0, atol=bound)


@pytest.mark.parametrize("dt", ["float32", "float64"])
def test_weighted_ranks_are_in_the_points_dtype_and_bitwise_equal_on_numpy_and_torch(dt: str) -> None:
    """``rank_knots`` promises ranks in the computation dtype, bitwise equal on every backend (only
    sorts, gathers, copies and elementwise IEEE operations of that dtype).  Weighted ranks of 507
    points with runs of ties (where the tie spread is computed) on NumPy and PyTorch: same dtype as
    the points, the same bits, and within 16 eps of the float64 tie rule (see the inverse test
    above).  A spread computed in float64 on NumPy (PyTorch keeps float32) breaks the dtype and the
    bits; so do unstable sorts, which order the tied points (and so sum their weights) differently
    on the two frameworks."""
    from knotsafe._lib.ranks import rank_knots

    torch = backend_module("torch")
    import array_api_compat.numpy as cnp
    import array_api_compat.torch as ctorch

    rng = np.random.default_rng(5)
    pts = np.concatenate([_TIE_POINTS, np.round(rng.normal(size=(500, 2)), 1)]).astype(dt)
    w = np.concatenate([_TIE_WEIGHTS, rng.uniform(0.1, 3.0, 500)]).astype(dt)
    _, ranks_np = rank_knots(cnp, registry.hooks_for(cnp), pts, w)
    _, ranks_torch = rank_knots(ctorch, registry.hooks_for(ctorch), torch.asarray(pts), torch.asarray(w))
    for d in range(pts.shape[1]):
        r_np, r_torch = np.asarray(ranks_np[d]), to_numpy(ranks_torch[d])
        assert r_np.dtype == np.dtype(dt) and r_torch.dtype == np.dtype(dt)
        np.testing.assert_array_equal(r_np, r_torch)
        _, expected = _tie_rule_ranks(pts[:, d], w)
        np.testing.assert_allclose(r_np, expected, rtol=0, atol=16 * float(np.finfo(dt).eps))


def test_complex_points_are_a_type_error_naming_points(xp: ModuleType) -> None:
    """Complex ``points`` are a TypeError whose message names ``points`` (the argument the caller
    passed), with or without weights."""
    try:
        pts = xp.asarray(np.array([[1.0 + 1.0j, 0.0], [2.0, 1.0j]]))
    except (TypeError, ValueError):  # pragma: no cover - a backend without complex arrays
        pytest.skip("no complex arrays")
    with pytest.raises(TypeError, match=r"^`points` is complex"):
        knotsafe.create_transforms(pts)


@pytest.mark.parametrize("weighted", [False, True])
def test_strict_transforms_on_a_non_default_device(weighted: bool) -> None:
    """array-api-strict points (and weights) on its second device: every array the rank transform
    makes (the positions of the ranks and of the tie spread) is on that device (array-api-strict
    refuses to mix devices), and the values are sort + numpy.interp on the tie rule's ranks
    (unweighted: i / (N + 1)), within 16 eps (see the tie-run inverse test)."""
    xp = backend_module("array_api_strict")
    dev = xp.Device("device1")
    w = _TIE_WEIGHTS if weighted else np.ones(len(_TIE_WEIGHTS))
    tr, inv = knotsafe.create_transforms(
        xp.asarray(_TIE_POINTS, device=dev), xp.asarray(w, device=dev) if weighted else None
    )
    q = np.array([[1.0, 2.5], [1.5, 0.75], [3.5, 4.5]])
    u = np.array([[0.3, 0.2], [0.55, 0.6], [0.8, 0.85]])
    got_f, got_i = tr(xp.asarray(q, device=dev)), inv(xp.asarray(u, device=dev))
    assert got_f.device == dev and got_i.device == dev
    for d in range(2):
        s, t = _tie_rule_ranks(_TIE_POINTS[:, d], w)
        slope = float(np.max(np.abs(np.diff(s)) / np.maximum(np.diff(t), 1e-300)))
        eps = float(np.finfo(np.float64).eps)
        np.testing.assert_allclose(to_numpy(got_f)[:, d], np.interp(q[:, d], s, t, left=0, right=1), atol=16 * eps)
        np.testing.assert_allclose(to_numpy(got_i)[:, d], np.interp(u[:, d], t, s), atol=slope * 32 * eps + eps * 4)


@pytest.mark.parametrize("span_ratio", [-1.0, 0.0, float("nan"), "x", "2"])
def test_kernel_span_ratio_is_checked(span_ratio: object) -> None:
    """``span_ratio`` must be a positive real number: anything else raises, naming ``span_ratio``
    (TypeError for a string, ValueError for a non-positive or NaN number)."""
    pts = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 0.5]])
    with pytest.raises((TypeError, ValueError), match="`span_ratio` must be a positive real number"):
        knotsafe.create_transforms(pts, method="kernel", bandwidth=1.0, span_ratio=span_ratio)


def test_kernel_span_ratio_below_the_data_span_raises() -> None:
    """A ``span_ratio`` below a column's ``(max - min) / bandwidth`` (here 4 / 0.25 = 16 > 2) sizes
    the node grid too small for that column: on concrete data a ValueError naming ``span_ratio``,
    never a number computed on a grid that does not cover the data (under tracing: NaN,
    tests/test_traced_bad_data.py)."""
    pts = np.array([[0.0, 0.0], [1.0, 0.1], [4.0, 0.2], [2.5, 0.3]])
    with pytest.raises(ValueError, match="`span_ratio`"):
        knotsafe.create_transforms(pts, method="kernel", bandwidth=0.25, span_ratio=2.0)


@pytest.mark.skip_xp_backend("jax", reason="5-8 s of eager dispatch; JAX half precision: test_edges.py")
@pytest.mark.parametrize("weighted", [False, True])
def test_half_precision_transforms_are_computed_in_float32(xp: ModuleType, weighted: bool) -> None:
    """float16 points and queries: computed in float32 and rounded to float16 once, so each output
    is within one float16 rounding (eps16 / 2 relative) plus the float32 computation's error of sort +
    numpy.interp on the tie rule's ranks in float64.  Ranks or cumulative weights computed in float16
    (300 points: positions above 2048 are not even representable, and a float16 cumulative sum of 300
    weights is off by many float16 ulps) miss that bound.

    Bound: the float32 ranks are within 16 eps32 of the reference (the tie-run test's bound, log2 300 <
    9 levels of the pairwise sum included), the forward's slope is at most 1 / (N + 1) per smallest
    gap between distinct float16 points, so with the float32 interpolation's own 4 eps32 the float32
    value is within 64 eps32 (a generous multiple, far below eps16 = 2**-10); then one rounding."""
    if not hasattr(xp, "float16"):
        pytest.skip("no float16")
    rng = np.random.default_rng(7)
    pts = np.round(rng.normal(size=(300, 2)), 1).astype(np.float16)  # many ties
    w = rng.uniform(0.1, 2.0, 300).astype(np.float16) if weighted else None
    args = (asarray(xp, w, "float16"),) if w is not None else ()
    tr, _ = knotsafe.create_transforms(asarray(xp, pts, "float16"), *args)
    q = np.linspace(-2.5, 2.5, 41).astype(np.float16)
    q2 = np.stack([q, q[::-1]], axis=1)
    got = to_numpy(tr(asarray(xp, q2, "float16")))
    assert got.dtype == np.float16
    ww = w.astype(np.float64) if w is not None else np.ones(300)
    for d in range(2):
        s, t = _tie_rule_ranks(pts[:, d].astype(np.float64), ww)
        expected = np.interp(q2[:, d].astype(np.float64), s, t, left=0.0, right=1.0)
        bound = np.finfo(np.float16).eps / 2 * np.abs(expected) + 64 * np.finfo(np.float32).eps
        assert np.all(np.abs(got[:, d].astype(np.float64) - expected) <= bound), d


@pytest.mark.parametrize("bad", ["points", "weights"])
def test_traced_bad_data_makes_every_transform_output_nan(bad: str) -> None:
    """Under ``jax.jit`` the data cannot be read, so it is not checked; the docstring's promise is
    that a non-finite point or a negative weight then makes every output of both transforms NaN,
    never a plausible number (eagerly the same data raises)."""
    jax = backend_module("jax")
    jnp = jax.numpy
    pts = np.array([[0.0, 1.0], [1.0, 3.0], [2.0, 2.0], [3.0, 0.5]])
    w = np.array([1.0, 2.0, 0.5, 1.5])
    if bad == "points":
        pts[2, 1] = np.inf
    else:
        w[1] = -1.0
    q = jnp.asarray([[0.5, 1.5], [2.5, 2.5]])

    def both(p: object, ww: object, qq: object) -> tuple[object, object]:
        tr, inv = knotsafe.create_transforms(p, ww)
        return tr(qq), inv(qq / 4)

    with pytest.raises(ValueError, match=f"`{bad}`"):
        both(jnp.asarray(pts), jnp.asarray(w), q)
    for out in jax.jit(both)(jnp.asarray(pts), jnp.asarray(w), q):
        assert np.all(np.isnan(np.asarray(out)))


def _kernel_table_inverse_grads(knot_grad: str, min_gap: float | None) -> tuple[np.ndarray, ...]:
    """PyTorch gradients of ``sum(inv(u))`` of the kernel method's table inverse (``n_knots=16``)
    with respect to the points and to ``u``; also the points and the outputs."""
    torch = backend_module("torch")
    rng = np.random.default_rng(11)
    pts = rng.normal(size=(25, 2))
    u = np.array([[0.05, 0.9], [0.3, 0.5], [0.62, 0.13], [0.97, 0.71], [0.5, 0.02]])
    p_t = torch.asarray(pts, requires_grad=True)
    u_t = torch.asarray(u, requires_grad=True)
    _, inv = knotsafe.create_transforms(
        p_t, method="kernel", bandwidth=0.4, n_knots=16, knot_grad=knot_grad, min_gap=min_gap
    )
    out = inv(u_t)
    gp, gu = torch.autograd.grad(out.sum(), [p_t, u_t])
    return pts, to_numpy(out), gp.numpy(), gu.numpy()


def test_kernel_table_inverse_with_knot_grad_stop_moves_only_with_the_range() -> None:
    """``knot_grad="stop"`` reaches the kernel method's table inverse ``interp(u, u(knots), knots)``
    with ``knots = lo + linspace(0, 1, M) (hi - lo)`` (``lo``, ``hi`` the column's min and max): with
    the table's u-knots stop-gradiented, each output ``a0 knots[j] + a1 knots[j+1]`` moves with the
    points only through ``lo`` and ``hi``, so d sum(inv) / d points is ``sum_k (1 - s_k)`` at the
    column's minimum, ``sum_k s_k`` at its maximum and 0 elsewhere, with ``s_k = (inv_k - lo) /
    (hi - lo)``.  Tolerance: each ``s_k`` and each barycentric ``a0 frac_j + a1 frac_{j+1}`` is
    within 8 eps of the exact value (a few roundings of numbers <= 1), summed over 5 queries."""
    pts, out, gp, _ = _kernel_table_inverse_grads("stop", None)
    expected = np.zeros_like(pts)
    for d in range(2):
        lo, hi = pts[:, d].min(), pts[:, d].max()
        s = (out[:, d] - lo) / (hi - lo)
        expected[np.argmin(pts[:, d]), d] = np.sum(1 - s)
        expected[np.argmax(pts[:, d]), d] = np.sum(s)
    np.testing.assert_allclose(gp, expected, rtol=0, atol=5 * 16 * np.finfo(np.float64).eps)


def test_kernel_table_inverse_with_a_large_min_gap_has_zero_slope() -> None:
    """``min_gap`` reaches the kernel method's table inverse: the table's u-knots lie in [0, 1], so
    with ``min_gap=2`` every bin is a duplicate bin, whose slope is 0 by the contract: d inv / d u is
    exactly 0 (and without ``min_gap`` it is the table's positive slope)."""
    _, _, _, gu = _kernel_table_inverse_grads("exact", 2.0)
    np.testing.assert_array_equal(gu, np.zeros_like(gu))
    _, _, _, gu_default = _kernel_table_inverse_grads("exact", None)
    assert np.all(gu_default > 0)


def test_queries_of_the_wrong_kind_are_errors_naming_q_or_u(xp: ModuleType) -> None:
    """Each transform names its own argument: complex queries are a TypeError naming ``q``
    (``transform``) or ``u`` (``inv_transform``); a wrong
    shape is a ValueError naming it, with the expected shape."""
    dt = _dtype(xp)
    tr, inv = knotsafe.create_transforms(asarray(xp, _TIE_POINTS, dt))
    cplx = xp.asarray(np.array([[1.0 + 1.0j, 0.5]]))
    for f, name in ((tr, "q"), (inv, "u")):
        with pytest.raises(TypeError, match=rf"^`{name}` is complex"):
            f(cplx)
        with pytest.raises(ValueError, match=rf"^`{name}` must have shape \(K, 2\), got \(2, 3\)"):
            f(asarray(xp, np.zeros((2, 3)), dt))


@pytest.mark.parametrize("points_dt", ["float32", "float64"])
@pytest.mark.parametrize("queries_dt", ["float32", "float64", "int32", "int64"])
def test_transform_outputs_take_the_floating_dtype_of_queries_and_points(
    xp: ModuleType, points_dt: str, queries_dt: str
) -> None:
    """The documented output dtype: floating queries join the points' dtype (float32 with float64
    gives float64, either way round); integer queries take the points' dtype.  The values are
    sort + numpy.interp on i / (N + 1) (unweighted), within 48 eps of the coarser of the two
    dtypes (ranks rounded once in the points' dtype, a few roundings of the interpolation; values <= 3)."""
    if not has_float64(xp) and "float64" in (points_dt, queries_dt):
        pytest.skip("no float64")
    pts = np.array([[0.0, 1.0], [1.0, 3.0], [2.0, 2.0], [3.0, 0.5]])
    tr, inv = knotsafe.create_transforms(xp.asarray(pts.astype(points_dt)))
    q = np.array([[1, 2], [2, 1], [0, 3]])
    u = np.array([[0, 1], [1, 0], [0, 0]])
    expected = np.result_type(points_dt, queries_dt) if queries_dt.startswith("float") else np.dtype(points_dt)
    # The ranks and knots are computed in the points' dtype, the interpolation in the output's.
    eps = max(float(np.finfo(expected).eps), float(np.finfo(points_dt).eps))
    t = np.arange(1, 5) / 5
    for f, a, ref in (
        (tr, q, lambda c, x: np.interp(x, np.sort(pts[:, c]), t)),
        (inv, u, lambda c, x: np.interp(x, t, np.sort(pts[:, c]))),
    ):
        got = to_numpy(f(xp.asarray(a.astype(queries_dt))))
        assert got.dtype == expected
        for c in range(2):
            np.testing.assert_allclose(got[:, c], ref(c, a[:, c]), rtol=0, atol=16 * eps * 3)


# --- the _hooks_torch.py run on c5ff6b5 (docs/mutation.md, "_hooks_torch.py") ---------------------


def test_torch_vmap_keeps_numpy_nan_retries() -> None:
    """Under ``torch.func.vmap`` the forward still runs numpy's two NaN retries.

    The PyTorch hooks skip the retries when one host read says the first estimate has no NaN; under
    vmap that read raises (data-dependent control flow), and the answer must then be "maybe NaN",
    so the retries run.  Infinite values make the first estimate NaN where numpy's retries do not:
    ``inf - inf`` in the bin [1, 2) (second retry: equal end values give ``inf``) and ``-inf * 0.5
    + inf`` in [2, 3) (first retry, from the upper end: ``inf``).  Expected: numpy.interp, exactly.
    """
    torch = backend_module("torch")
    k, v = np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.0, np.inf, np.inf, 1.0])
    x = np.array([[0.5, 1.5, 2.5], [1.25, 1.0, 3.0]])
    kt, vt = torch.asarray(k), torch.asarray(v)
    got = torch.func.vmap(lambda row: knotsafe.interp(row, kt, vt))(torch.asarray(x))
    np.testing.assert_array_equal(got.numpy(), np.interp(x, k, v))


@pytest.mark.parametrize("grads", ["x", "knots", "values", "x,knots", "x,values", "knots,values", "x,knots,values"])
def test_torch_reverse_mode_for_each_subset_of_inputs_requiring_a_gradient(grads: str) -> None:
    """``torch.autograd.grad`` with respect to every subset of the inputs, the others plain tensors.

    The PyTorch Function computes only the partials that a gradient of an input which may need one
    reads (``needs``, from ``_plain_tensor``); a wrong ``needs`` entry leaves a partial that autograd
    asks for an empty placeholder.  Expected: the contract's ``g @ d/dx``, ``g @ d/dknots``, ``g @
    d/dvalues`` within the bounds of :func:`_expected_cotangent`.
    """
    torch = backend_module("torch")
    dt = "float64"
    x, k, v, *_ = _torch(dt)
    which = grads.split(",")
    args = {"x": x, "knots": k, "values": v}
    for name in which:
        args[name] = args[name].clone().requires_grad_()
    g = np.linspace(-1.3, 1.7, X.size)  # no zero entry: every query's partials reach the gradient
    out = knotsafe.interp(args["x"], args["knots"], args["values"])
    got = torch.autograd.grad(out, [args[n] for n in which], grad_outputs=torch.asarray(g))
    expected = dict(zip(("x", "knots", "values"), _expected_cotangent(dt, g, "exact"), strict=True))
    for name, gi in zip(which, got, strict=True):
        e, bound = expected[name]
        assert np.all(np.abs(gi.numpy() - e) <= bound), (name, gi, e)


@pytest.mark.parametrize("duals", ["x", "values", "x,knots,values"])
def test_torch_forward_ad_dual_numbers_under_no_grad(duals: str) -> None:
    """Forward mode (dual numbers) inside ``torch.no_grad()``: the contract's tangent.

    ``no_grad`` disables reverse mode only; the Function's ``jvp`` then runs with gradients
    disabled, and must still recompute the partials (the saved ones hold only those a reverse-mode
    gradient of the inputs reads: with one dual input the others are empty placeholders).
    Expected: the contract's output tangent, as in :func:`test_torch_forward_ad_dual_numbers_on_any_inputs`.
    """
    _check_dual_tangent(duals, no_grad=True)


@pytest.mark.parametrize("dt", ["complex64", "complex128"])
def test_torch_complex_values_with_infinite_imaginary_parts_keep_dtype_and_parts(dt: str) -> None:
    """A finite non-zero real part beside an infinite or NaN imaginary part, in both complex dtypes.

    These entries are built by the PyTorch ``complex_parts`` hook (PyTorch's complex arithmetic
    mixes the parts).  Queries on the knots copy the values: numpy.interp gives them bit for bit,
    and the result keeps the values' dtype.  Real parts 0.1 and 1/3 are not float32 numbers, so a
    complex128 result built from float32 parts differs from numpy's.
    """
    torch = backend_module("torch")
    real = "float32" if dt == "complex64" else "float64"
    k = np.array([0.0, 1.0, 2.0, 3.0]).astype(real)
    v = np.array([complex(0.1, np.inf), 2 + 5j, complex(1 / 3, -np.inf), complex(-0.7, np.nan)]).astype(dt)
    got = knotsafe.interp(torch.asarray(k), torch.asarray(k), torch.asarray(v))
    assert got.dtype == getattr(torch, dt)
    ref = np.interp(k, k, v).astype(dt)  # numpy computes in complex128; on the knots it copies the values
    np.testing.assert_array_equal(got.numpy().real, ref.real)
    np.testing.assert_array_equal(got.numpy().imag, ref.imag)


def test_torch_complex32_values_with_infinite_imaginary_parts_give_numpys_values() -> None:
    """``torch.complex32`` values (float16 parts) with infinite or NaN imaginary parts: numpy's values.

    Half precision is computed in float32 (complex32 as complex64: the PyTorch ``complex_parts``
    hook builds complex64 from float32 parts) and rounded back once, to complex32, as float16 real
    data comes back float16.  Queries on the knots copy the values, so numpy.interp on the exact
    complex64 upcast of the values is the reference, bit for bit.
    """
    torch = backend_module("torch")
    k = np.array([0.0, 1.0, 2.0, 3.0], dtype=np.float16)
    parts = [complex(0.1, np.inf), 2 + 5j, complex(1 / 3, -np.inf), complex(-0.7, np.nan)]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "ComplexHalf support is experimental", UserWarning)
        v = torch.asarray(np.array(parts, dtype=np.complex64)).to(torch.complex32)
        got = knotsafe.interp(torch.asarray(k), torch.asarray(k), v)
        v64 = v.to(torch.complex64).numpy()
    ref = np.interp(k.astype(np.float64), k.astype(np.float64), v64.astype(np.complex128))
    assert got.dtype == torch.complex32  # it was complex128: the float64 parts of the hook promoted it
    out = got.to(torch.complex128).numpy()
    np.testing.assert_array_equal(out.real, ref.real)
    np.testing.assert_array_equal(out.imag, ref.imag)
