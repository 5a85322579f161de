"""knotsafe across 8 JAX devices: jit with NamedSharding and shard_map.

JAX fixes its device count when it is imported, so the outer test re-runs this
file in a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``
(8 simulated CPU devices) and the inner tests run there only.  The subprocess
inherits ``JAX_ENABLE_X64``, so the JAX session checks float32 and float64.

Reference: the same function jitted on one device.  Per-query values (and the
per-query gradient with respect to the queries) are the same elementwise
computation on every device, so they must agree bitwise.  Gradients with
respect to replicated knots, values or an Einstein radius sum contributions
over the queries; sharded, the sum is split across devices and added in
another order.  Recursive or pairwise summation of n terms is off by at most
``gamma_n * sum|terms|`` (``gamma_n = n u / (1 - n u)``, u the unit
roundoff), so two orders differ by at most ``2 gamma_n sum|terms|``, where
``sum|terms|`` is read off the single-device Jacobian.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests._support import only_in_session_of

INNER = os.environ.get("KNOTSAFE_SHARDING_INNER") == "1"
N_DEV = 8

pytestmark = only_in_session_of("jax")


@pytest.mark.skipif(INNER, reason="outer driver")
def test_sharding_suite_on_8_simulated_devices() -> None:
    pytest.importorskip("jax")
    env = {
        **os.environ,
        "KNOTSAFE_SHARDING_INNER": "1",
        "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={N_DEV}").strip(),
        "JAX_PLATFORMS": "cpu",
    }
    here = Path(__file__).resolve()
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(here),
        "-q",
        "-p",
        "no:cacheprovider",
        "-rs",
        "--rootdir",
        str(here.parents[1]),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    # Only the outer driver itself may be skipped in there.
    summary = proc.stdout.strip().splitlines()[-1]
    assert re.search(r"\b1 skipped", summary) or "skipped" not in summary, proc.stdout[-3000:]


inner = pytest.mark.skipif(not INNER, reason="runs in the 8-device subprocess")


@dataclass(frozen=True)
class Devices:
    """The 8-device mesh and the placements the inner tests use."""

    jax: Any
    jnp: Any
    mesh: Any
    P: Any  # jax.sharding.PartitionSpec
    rows: Any  # NamedSharding: a 1-D array split over the devices
    point_rows: Any  # NamedSharding: an (N, D) array split by rows
    repl: Any  # NamedSharding: replicated on every device
    dt: Any  # the NumPy float dtype of this run (float64 under x64)

    def put_rows(self, p: Any, q: Any) -> tuple[Any, Any]:
        """``p`` replicated, ``q`` (N, D) split by rows."""
        return self.jax.device_put(p, self.repl), self.jax.device_put(q, self.point_rows)

    def assert_rows_sharding_bitwise(self, fn: Any, p: Any, q: Any) -> None:
        """``fn(p, q)`` (two (N, D) outputs, per row of ``q``) under jit with ``q`` split by rows and under
        shard_map equals the single-device jit bitwise: each row is the same computation on every device."""
        jax, P = self.jax, self.P
        ref = jax.jit(fn)(p, q)
        got = jax.jit(fn)(*self.put_rows(p, q))
        smap = jax.shard_map(fn, mesh=self.mesh, in_specs=(P(), P("d", None)), out_specs=(P("d", None), P("d", None)))
        got_smap = jax.jit(smap)(p, q)
        for a, b in zip((*got, *got_smap), (*ref, *ref), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.fixture
def dev() -> Devices:
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    if jax.device_count() < N_DEV:
        pytest.fail(f"expected {N_DEV} devices, got {jax.device_count()} (XLA_FLAGS not applied)")
    mesh = Mesh(np.array(jax.devices()[:N_DEV]), ("d",))
    dt = np.float64 if jax.config.read("jax_enable_x64") else np.float32
    return Devices(
        jax, jnp, mesh, P, NamedSharding(mesh, P("d")), NamedSharding(mesh, P("d", None)), NamedSharding(mesh, P()), dt
    )


def _bound(jac_abs_sum: np.ndarray, n: int, dtype: Any) -> np.ndarray:
    u = np.finfo(dtype).eps / 2
    gamma = n * u / (1 - n * u)
    return 2 * gamma * jac_abs_sum + np.finfo(dtype).tiny


def _interp_case(dev: Devices) -> tuple[Any, Any, Any, Any]:
    """Queries, knots (with exact and near duplicates), values and loss weights, as JAX arrays."""
    rng = np.random.default_rng(7)
    k = np.sort(rng.uniform(-2.0, 2.0, 64))
    k[5:9] = k[5]  # exact duplicates
    k[20] = np.nextafter(k[19], np.inf)
    v = rng.normal(size=64)
    x = rng.uniform(-2.5, 2.5, 1024)
    c = rng.normal(size=1024)
    return tuple(dev.jnp.asarray(a.astype(dev.dt)) for a in (x, k, v, c))  # type: ignore[return-value]


def _assert_interp_grads(dev: Devices, g: Any, ref_g: Any, x: Any, k: Any, v: Any, c: Any) -> None:
    """Gradients of ``sum(c * interp(x, k, v))``: per query bitwise; for the replicated knots and values
    (sums over the queries, added in another order) within the summation bound (module docstring)."""
    import knotsafe

    np.testing.assert_array_equal(np.asarray(g[0]), np.asarray(ref_g[0]))  # per query: same computation
    jk, jv = dev.jax.jacrev(lambda k, v: c * knotsafe.interp(x, k, v), argnums=(0, 1))(k, v)
    for got, ref, jac in ((g[1], ref_g[1], jk), (g[2], ref_g[2], jv)):
        bound = _bound(np.abs(np.asarray(jac, dtype=np.float64)).sum(axis=0), x.shape[0], dev.dt)
        assert np.all(np.abs(np.asarray(got, np.float64) - np.asarray(ref, np.float64)) <= bound)


@inner
def test_interp_jit_named_sharding_queries_sharded_knots_replicated(dev: Devices) -> None:
    import knotsafe

    jax = dev.jax
    x, k, v, c = _interp_case(dev)

    def loss(x: Any, k: Any, v: Any) -> Any:
        return dev.jnp.sum(c * knotsafe.interp(x, k, v))

    fwd = jax.jit(knotsafe.interp)
    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    ref_out, ref_g = fwd(x, k, v), grad(x, k, v)
    xs, ks, vs = jax.device_put(x, dev.rows), jax.device_put(k, dev.repl), jax.device_put(v, dev.repl)
    out, g = fwd(xs, ks, vs), grad(xs, ks, vs)
    assert len(out.sharding.device_set) == N_DEV
    np.testing.assert_array_equal(np.asarray(out), np.asarray(ref_out))
    _assert_interp_grads(dev, g, ref_g, x, k, v, c)


@inner
def test_interp_shard_map_equals_single_device(dev: Devices) -> None:
    import knotsafe

    jax, P = dev.jax, dev.P
    x, k, v, c = _interp_case(dev)
    sharded = jax.shard_map(knotsafe.interp, mesh=dev.mesh, in_specs=(P("d"), P(), P()), out_specs=P("d"))

    def loss(f: Any) -> Any:
        return lambda x, k, v: dev.jnp.sum(c * f(x, k, v))

    out = jax.jit(sharded)(x, k, v)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(jax.jit(knotsafe.interp)(x, k, v)))
    g = jax.jit(jax.grad(loss(sharded), argnums=(0, 1, 2)))(x, k, v)
    ref_g = jax.jit(jax.grad(loss(knotsafe.interp), argnums=(0, 1, 2)))(x, k, v)
    _assert_interp_grads(dev, g, ref_g, x, k, v, c)


@inner
def test_create_transforms_queries_sharded_points_replicated(dev: Devices) -> None:
    import knotsafe

    jax, jnp = dev.jax, dev.jnp
    rng = np.random.default_rng(3)
    pts = jnp.asarray(rng.normal(size=(400, 2)).round(2).astype(dev.dt))  # ties
    q = jnp.asarray(rng.normal(size=(512, 2)).astype(dev.dt))

    def both(p: Any, q: Any) -> tuple[Any, Any]:
        tr, inv = knotsafe.create_transforms(p)
        return tr(q), inv(jnp.clip(tr(q), 0.0, 1.0))

    dev.assert_rows_sharding_bitwise(both, pts, q)
    # Gradient with respect to the queries: per query, the same computation.
    gq = jax.jit(jax.grad(lambda q, p: jnp.sum(both(p, q)[0] ** 2)))
    pts_repl, q_rows = dev.put_rows(pts, q)
    np.testing.assert_array_equal(np.asarray(gq(q_rows, pts_repl)), np.asarray(gq(q, pts)))


def _lens(dt: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from knotsafe.testing import circular_mask_grid

    data = circular_mask_grid(1.0, 0.2, 1).astype(dt)
    over = circular_mask_grid(1.0, 0.2, 2).astype(dt)
    over = over[: over.shape[0] // N_DEV * N_DEV]
    c = np.random.default_rng(5).normal(size=over.shape[0]).astype(dt)
    return data, over, c


def _lens_loss(data: Any, over: Any, c: Any) -> Any:
    """L(theta): rank transform of the traced data grid, evaluated at the traced over-sampled grid."""
    import jax.numpy as jnp

    import knotsafe
    from knotsafe.testing import trace_sis

    def loss(theta: Any) -> Any:
        tr, _ = knotsafe.create_transforms(trace_sis(data, theta))
        u = tr(trace_sis(over, theta))
        return jnp.sum(c * (u[:, 0] + u[:, 1]))

    return loss


@inner
def test_batch_of_lens_models_sharded_over_einstein_radius(dev: Devices) -> None:
    jax, jnp, P, dt = dev.jax, dev.jnp, dev.P, dev.dt
    data, over, c = (jnp.asarray(a) for a in _lens(dt))
    thetas = jnp.asarray(np.linspace(1.1, 1.8, N_DEV).astype(dt))
    batched = jax.vmap(jax.value_and_grad(_lens_loss(data, over, c)))
    ref_val, ref_grad = jax.jit(batched)(thetas)
    val, grad = jax.jit(batched)(jax.device_put(thetas, dev.rows))
    assert len(val.sharding.device_set) == N_DEV
    smap = jax.shard_map(batched, mesh=dev.mesh, in_specs=P("d"), out_specs=(P("d"), P("d")))
    val_s, grad_s = jax.jit(smap)(thetas)
    # Each lens model lies whole on one device, but XLA vectorises the sum
    # over queries differently for a batch of 8 and a batch of 1: the sums
    # agree to the summation bound over their own terms (module docstring).
    val_abs, grad_abs = _lens_term_sums(data, over, c, np.asarray(thetas))
    n_terms = 4 * over.shape[0] + 2 * data.shape[0]  # every product that reaches a sum
    for v, g in ((val, grad), (val_s, grad_s)):
        assert np.all(
            np.abs(np.asarray(v, np.float64) - np.asarray(ref_val, np.float64)) <= _bound(val_abs, n_terms, dt)
        )
        assert np.all(
            np.abs(np.asarray(g, np.float64) - np.asarray(ref_grad, np.float64)) <= _bound(grad_abs, n_terms, dt)
        )
    assert np.all(np.isfinite(np.asarray(grad)))


def _lens_term_sums(data: Any, over: Any, c: Any, thetas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per model: sum|terms| of the loss and of its theta-gradient (chain rule through queries and knots)."""
    import jax
    import jax.numpy as jnp

    import knotsafe
    from knotsafe.testing import trace_sis

    def per_query(q: Any, k: Any) -> Any:
        tr, _ = knotsafe.create_transforms(k)
        u = tr(q)
        return c * (u[:, 0] + u[:, 1])

    def sums(t: Any) -> tuple[Any, Any]:
        q, k = trace_sis(over, t), trace_sis(data, t)
        dq = jax.jacfwd(lambda t: trace_sis(over, t))(t)  # (n, 2)
        dk = jax.jacfwd(lambda t: trace_sis(data, t))(t)  # (m, 2)
        jq, jk = jax.jacrev(per_query, argnums=(0, 1))(q, k)  # (n, n, 2), (n, m, 2)
        terms = jnp.sum(jnp.abs(jq * dq)) + jnp.sum(jnp.abs(jk * dk))
        return jnp.sum(jnp.abs(per_query(q, k))), terms

    # One compilation for all models (the terms are summed in float64 below
    # only when x64 is on; float32 sums of |terms| are within a factor
    # 1 + n u of the exact sum, which moves the bound by that factor only).
    val_abs, grad_abs = jax.jit(jax.vmap(sums))(jnp.asarray(thetas, dtype=data.dtype))
    return np.asarray(val_abs, np.float64), np.asarray(grad_abs, np.float64)


@inner
def test_mesh_over_sampled_grid_sharded_data_grid_replicated(dev: Devices) -> None:
    from knotsafe import rectangular
    from knotsafe.testing import trace_sis

    jax, jnp = dev.jax, dev.jnp
    data_np, over_np, _ = _lens(dev.dt)
    data, over = trace_sis(jnp.asarray(data_np), 1.6), trace_sis(jnp.asarray(over_np), 1.6)

    def mesh_fn(d: Any, o: Any) -> tuple[Any, Any]:
        return rectangular.mappings_weights(6, d, o)

    dev.assert_rows_sharding_bitwise(mesh_fn, data, over)
    # Gradient of the mesh weights with respect to the over-sampled points: per point.
    g = jax.jit(jax.grad(lambda o: jnp.sum(mesh_fn(data, o)[1] ** 2)))
    data_repl, o_rows = dev.put_rows(data, over)
    np.testing.assert_array_equal(np.asarray(g(o_rows)), np.asarray(g(over)))
    centres = jax.jit(lambda d: rectangular.pixel_centres(6, d))
    np.testing.assert_array_equal(np.asarray(centres(data_repl)), np.asarray(centres(data)))
