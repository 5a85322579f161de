"""autoarray's own kernel-density ``create_transforms`` against ``knotsafe.autoarray``'s, at the lens size.

Usage (an environment with autoarray, JAX and numba; ``nox -s autolens`` builds one)::

    python benchmarks/autoarray_kernel.py                      # writes benchmarks/results/autoarray_kernel.{json,md}
    python benchmarks/autoarray_kernel.py --sizes 1024 4096    # the query counts at which autoarray's sum is timed

Case: the traced grid of ``knotsafe.testing.lens_grid`` (SIS, 3.5" mask at 0.05"
pixels): N = 15,380 points and K = 246,080 over-sampled queries, normalised as
the mesh does (``(x - mean) / min std``), a 30 x 30 mesh (``mesh_pixels=30``,
``bandwidth=1``: ``h = span / 30``), float64.  What a likelihood evaluation of a
kernel-density (RTU) mesh does with the transform, timed as one jitted call:

* JAX: ``jax.jit(jax.value_and_grad(loss))`` with ``loss = sum(c * transform(q))``
  and the gradient with respect to the points and the queries (both move with
  the lens parameters).  knotsafe at full size; autoarray's exact O(K x N) sum
  (512-query blocks under ``jax.lax.map``) at the ``--sizes`` query counts with
  all N points, then extrapolated linearly in K to 246,080 (its cost is K / 512
  blocks of equal cost: the per-size times show it).
* NumPy, forward only (autoarray's NumPy branch has no gradient): autoarray's
  saturation-window loop (numba, one thread) at ``--numpy-size`` queries,
  extrapolated linearly, against knotsafe's forward at full size.

Each time is the fastest of ``--repeat`` calls after a first (compiling) call, wall
and CPU (the process's, all threads): on a shared machine the CPU time is the steadier
measure of the work, and the ratios are given for both.
The largest ``|u_knotsafe - u_autoarray|`` on the timed queries is reported too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import jax.numpy as jnp
import numpy as np
from autoarray.inversion.mesh.interpolator import rectangular as own

import knotsafe
import knotsafe.autoarray as ka
from knotsafe.testing import lens_grid

jax.config.update("jax_enable_x64", True)

MESH_PIXELS = 30
RESULTS = Path(__file__).resolve().parent / "results"


def fastest(fn: Callable[[], Any], repeat: int) -> tuple[float, float, float]:
    """(wall seconds of the first call, fastest wall and fastest CPU seconds of ``repeat`` further calls)."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    wall = cpu = math.inf
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn())
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return first, wall, cpu


def value_and_grad(create: Callable[..., Any]) -> Callable[..., Any]:
    def loss(points: Any, q: Any, c: Any) -> Any:
        transform, _ = create(points, MESH_PIXELS, xp=jnp)
        return jnp.sum(c * transform(q))

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def row(backend: str, what: str, impl: str, k: int, wall: float, cpu: float, **extra: Any) -> dict[str, Any]:
    return {"backend": backend, "what": what, "impl": impl, "K": k, "s": wall, "cpu_s": cpu, **extra}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--numpy-size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS / "autoarray_kernel"), help="results path, without .json/.md")
    args = parser.parse_args(argv)

    data, over = lens_grid()
    mu, scale = data.mean(axis=0), data.std(axis=0).min()
    points, queries = (data - mu) / scale, (over - mu) / scale
    n, k = points.shape[0], queries.shape[0]
    c = np.random.default_rng(0).normal(size=queries.shape)
    rows: list[dict[str, Any]] = []

    # JAX, value + gradient.
    p, q, cc = jnp.asarray(points), jnp.asarray(queries), jnp.asarray(c)
    ks_fn = value_and_grad(ka.create_transforms)
    first, ks_t, ks_cpu = fastest(lambda: ks_fn(p, q, cc), args.repeat)
    rows.append(row("jax (jit)", "value+grad", "knotsafe", k, ks_t, ks_cpu, first_s=first))
    print(f"knotsafe   jax value+grad K={k}: {ks_t:.3f} s, CPU {ks_cpu:.3f} s (first call {first:.1f} s)", flush=True)
    own_fn = value_and_grad(own.create_transforms)
    per_query, per_query_cpu = [], []
    for size in args.sizes:
        _, t, cpu = fastest(lambda s=size: own_fn(p, q[:s], cc[:s]), max(1, args.repeat - 1))
        per_query.append(t / size)
        per_query_cpu.append(cpu / size)
        rows.append(row("jax (jit)", "value+grad", "autoarray", size, t, cpu))
        print(f"autoarray  jax value+grad K={size}: {t:.3f} s, CPU {cpu:.3f} s", flush=True)
    own_full, own_full_cpu = min(per_query) * k, min(per_query_cpu) * k
    rows.append(row("jax (jit)", "value+grad", "autoarray", k, own_full, own_full_cpu, extrapolated=True))
    s = args.sizes[-1]
    u_own = np.asarray(own.create_transforms(p, MESH_PIXELS, xp=jnp)[0](q[:s]))
    u_ks = np.asarray(ka.create_transforms(p, MESH_PIXELS, xp=jnp)[0](q[:s]))
    jax_err = float(np.abs(u_own - u_ks).max())

    # NumPy, forward only.
    _, ks_np_t, ks_np_cpu = fastest(lambda: ka.create_transforms(points, MESH_PIXELS)[0](queries), args.repeat)
    rows.append(row("numpy", "forward", "knotsafe", k, ks_np_t, ks_np_cpu))
    m = args.numpy_size
    _, own_np_t, own_np_cpu = fastest(lambda: own.create_transforms(points, MESH_PIXELS)[0](queries[:m]), 1)
    rows.append(row("numpy", "forward", "autoarray (numba)", m, own_np_t, own_np_cpu))
    own_np_full, own_np_full_cpu = own_np_t / m * k, own_np_cpu / m * k
    rows.append(row("numpy", "forward", "autoarray (numba)", k, own_np_full, own_np_full_cpu, extrapolated=True))
    np_err = float(
        np.abs(
            own.create_transforms(points, MESH_PIXELS)[0](queries[:m])
            - ka.create_transforms(points, MESH_PIXELS)[0](queries[:m])
        ).max()
    )
    print(f"knotsafe   numpy forward K={k}: {ks_np_t:.3f} s; autoarray (numba) K={m}: {own_np_t:.3f} s", flush=True)

    import autoarray
    import numba

    result = {
        "case": {"N": n, "K": k, "mesh_pixels": MESH_PIXELS, "bandwidth": 1.0, "dtype": "float64"},
        "rows": rows,
        "ratio_jax_value_grad": {"wall": own_full / ks_t, "cpu": own_full_cpu / ks_cpu},
        "ratio_numpy_forward": {"wall": own_np_full / ks_np_t, "cpu": own_np_full_cpu / ks_np_cpu},
        "max_abs_u_difference": {"jax": jax_err, "numpy": np_err},
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_end": os.getloadavg()[0],
        "machine": f"{os.cpu_count()} CPU cores ({platform.machine()})",
        "versions": {
            "autoarray": autoarray.__version__,
            "knotsafe": knotsafe.__version__,
            "jax": jax.__version__,
            "numba": numba.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(result: dict[str, Any]) -> str:
    case = result["case"]
    lines = [
        f"autoarray {result['versions']['autoarray']} `create_transforms` (kernel-density CDF) against "
        f"`knotsafe.autoarray.create_transforms`: N = {case['N']:,} points, K = {case['K']:,} queries, "
        f"mesh_pixels = {case['mesh_pixels']}, float64. Measured {result['measured']} on {result['machine']}, "
        f"load average at the end {result['load_average_end']:.1f}; JAX {result['versions']['jax']}, "
        f"numba {result['versions']['numba']}. Fastest of a few calls after the compiling one.",
        "",
        "| backend | what | implementation | queries K | wall (s) | CPU (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        note = " (extrapolated, linear in K)" if r.get("extrapolated") else ""
        lines.append(
            f"| {r['backend']} | {r['what']} | {r['impl']} | {r['K']:,} | {r['s']:.3f}{note} | {r['cpu_s']:.3f} |"
        )
    lines += [
        "",
        f"At K = {case['K']:,}: autoarray / knotsafe = **{result['ratio_jax_value_grad']['wall']:,.0f}x** wall, "
        f"{result['ratio_jax_value_grad']['cpu']:,.0f}x CPU (JAX, one jitted value+gradient); "
        f"**{result['ratio_numpy_forward']['wall']:,.0f}x** wall, {result['ratio_numpy_forward']['cpu']:,.0f}x CPU "
        f"(NumPy forward, numba window loop). "
        f"Largest |u_knotsafe - u_autoarray| on the timed queries: {result['max_abs_u_difference']['jax']:.1e} (JAX), "
        f"{result['max_abs_u_difference']['numpy']:.1e} (NumPy).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
