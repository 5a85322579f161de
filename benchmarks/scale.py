"""Scaling out: knotsafe.interp throughput against Dask workers and JAX devices.

Usage::

    python benchmarks/scale.py                 # what ``nox -s bench -- --scale`` runs
    python benchmarks/scale.py --quick         # smaller sizes, a smoke run

Dask: a ``distributed.LocalCluster`` of 1, 2, ... worker processes (one
thread each) evaluates ``interp`` on chunked float64 queries generated on the
workers against 1e5 knots; the time is that of ``compute(out.sum())`` and the
same pipeline without ``interp`` (generation and sum only) is timed beside
it.  JAX: ``jax.jit(interp)`` with the queries sharded over 1, 2, 4, 8
devices (``NamedSharding``, knots replicated); simulated CPU devices run in a
fresh process each (``--xla_force_host_platform_device_count``), on whatever
cores the machine has.  Every timing is the median of ``--repeats`` runs
after one warm-up.  Results go to ``scale.json`` and ``scale.md`` in ``--out``
(default ``benchmarks/results/``; ``nox -s bench -- --scale`` writes to ``build/benchmarks/``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if (ROOT / "src" / "knotsafe").is_dir():
    sys.path.insert(0, str(ROOT / "src"))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))

N_KNOTS = 100_000


def _knots() -> tuple[object, object]:
    import numpy as np

    rng = np.random.default_rng(0)
    k = np.sort(rng.uniform(-1.0, 1.0, N_KNOTS))
    k[1000:1010] = k[1000]
    return k, np.cumsum(rng.normal(size=N_KNOTS))


def _timed(fn: object, repeats: int) -> float:
    fn()  # type: ignore[operator]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return median(times)


def bench_dask(n: int, chunk: int, workers: list[int], repeats: int) -> list[dict[str, object]]:
    import dask
    import dask.array as da
    import distributed

    import knotsafe

    knots, values = _knots()
    rows = []
    for w in workers:
        with (
            distributed.LocalCluster(
                n_workers=w, threads_per_worker=1, processes=True, memory_limit="1.5GiB", dashboard_address=None
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            k = da.from_delayed(client.scatter(knots, broadcast=True), (N_KNOTS,), "float64")
            v = da.from_delayed(client.scatter(values, broadcast=True), (N_KNOTS,), "float64")

            def queries() -> object:
                return da.random.default_rng(1).uniform(-1.1, 1.1, size=n, chunks=chunk)

            t_base = _timed(lambda: dask.compute(queries().sum()), repeats)
            t_interp = _timed(lambda k=k, v=v: dask.compute(knotsafe.interp(queries(), k, v).sum()), repeats)
        rows.append(
            {
                "engine": "dask",
                "units": w,
                "queries": n,
                "seconds": t_interp,
                "baseline_seconds": t_base,
                "queries_per_s": n / t_interp,
            }
        )
        print(f"dask  workers={w}: {n / t_interp:.3g} queries/s ({t_interp:.2f} s; generation+sum {t_base:.2f} s)")
    return rows


_JAX_CHILD = r"""
import json, sys, time
from statistics import median
import numpy as np
import jax, jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import knotsafe
n, repeats, n_knots = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
k = np.sort(rng.uniform(-1.0, 1.0, n_knots)); k[1000:1010] = k[1000]
v = np.cumsum(rng.normal(size=n_knots))
x = rng.uniform(-1.1, 1.1, n)
mesh = Mesh(np.array(jax.devices()), ("d",))
xs = jax.device_put(jnp.asarray(x), NamedSharding(mesh, P("d")))
ks, vs = (jax.device_put(jnp.asarray(a), NamedSharding(mesh, P())) for a in (k, v))
f = jax.jit(knotsafe.interp)
g = jax.jit(jax.grad(lambda x, k, v: knotsafe.interp(x, k, v).sum(), argnums=(0, 1, 2)))
out = {}
for name, fn in (("fwd", lambda: f(xs, ks, vs).block_until_ready()),
                 ("fwd+bwd", lambda: jax.block_until_ready(g(xs, ks, vs)))):
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    out[name] = median(ts)
print(json.dumps({"devices": jax.device_count(), **out}))
"""


def bench_jax(n: int, devices: list[int], repeats: int) -> list[dict[str, object]]:
    rows = []
    for d in devices:
        env = {
            **os.environ,
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={d}",
            "JAX_PLATFORMS": "cpu",
            "JAX_ENABLE_X64": "1",
        }
        proc = subprocess.run(
            [sys.executable, "-c", _JAX_CHILD, str(n), str(repeats), str(N_KNOTS)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        for mode in ("fwd", "fwd+bwd"):
            rows.append(
                {
                    "engine": f"jax {mode}",
                    "units": res["devices"],
                    "queries": n,
                    "seconds": res[mode],
                    "queries_per_s": n / res[mode],
                }
            )
            print(f"jax {mode:7s} devices={res['devices']}: {n / res[mode]:.3g} queries/s ({res[mode]:.3f} s)")
    return rows


def _markdown(rows: list[dict[str, object]], info: dict[str, object]) -> str:
    lines = [
        f"Measured {info['date']} on {info['cpus']} CPU cores ({info['machine']}), {N_KNOTS:,} knots, float64; "
        f"load average at the end {info['load_average'][0]:.1f}.",
        "",
        "| engine | workers / devices | queries | seconds (median) | queries/s |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['engine']} | {r['units']} | {r['queries']:,} | {r['seconds']:.3f} | {r['queries_per_s']:.3g} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", default="1,2", help="Dask worker counts")
    p.add_argument("--devices", default="1,2,4,8", help="JAX device counts")
    p.add_argument("--skip", default="", help="comma-separated engines to skip: dask,jax")
    p.add_argument("--out", type=Path, default=HERE / "results", help="folder for scale.json / scale.md")
    args = p.parse_args(argv)
    n_dask = 4_000_000 if args.quick else 20_000_000
    n_jax = 1 << (20 if args.quick else 22)
    skip = set(filter(None, args.skip.split(",")))
    rows: list[dict[str, object]] = []
    if "dask" not in skip:
        rows += bench_dask(n_dask, 2_500_000, [int(w) for w in args.workers.split(",")], args.repeats)
    if "jax" not in skip:
        rows += bench_jax(n_jax, [int(d) for d in args.devices.split(",")], args.repeats)
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    (out / "scale.md").write_text(_markdown(rows, info))
    print(_markdown(rows, info))


if __name__ == "__main__":
    main()
