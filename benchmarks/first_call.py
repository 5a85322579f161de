"""What a first call costs on JAX: eager (one compilation per operation and shape) against ``jax.jit``.

Usage::

    python benchmarks/first_call.py            # N = 1,000 knots / points, float64, XLA's default flags

Eager JAX compiles every operation the first time it sees its shapes and
dtypes, and knotsafe's functions are chains of operations (the interpolation
rule itself is compiled as one program), so the first eager call of a
function, and the first call with new shapes, pay for many small
compilations; under ``jax.jit`` the whole function is one program.  Each case
runs in a fresh Python process with JAX's persistent compilation cache off,
so nothing is reused from an earlier case or run.  Per case: the first call,
a second call with the same shapes, and a call with new shapes (``N + 1``),
each the wall time of that one call and the number of XLA compilations in it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

CASES = {
    "interp": "interp(x, knots, values)",
    "interp_grad": "jax.grad of sum(interp) w.r.t. x, knots",
    "ranks": "create_transforms(points): transform and inverse",
    "kernel": 'create_transforms(points, method="kernel"): transform and inverse',
}

_CHILD = r"""
import json, os, sys, time
os.environ["JAX_ENABLE_X64"] = "1"
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
import numpy as np
import jax, jax.monitoring
import knotsafe

case, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
compiles = [0]
jax.monitoring.register_event_duration_secs_listener(
    lambda event, _d, **_kw: compiles.__setitem__(0, compiles[0] + ("backend_compile" in event))
)

def inputs(n):
    rng = np.random.default_rng(n)
    knots = jax.numpy.asarray(np.sort(rng.normal(size=n)))
    values = jax.numpy.asarray(rng.normal(size=n))
    x = jax.numpy.asarray(rng.normal(size=n))
    points = jax.numpy.asarray(rng.normal(size=(n, 2)))
    return x, knots, values, points

def fn(x, knots, values, points):
    if case == "interp":
        return knotsafe.interp(x, knots, values)
    if case == "interp_grad":
        return jax.grad(lambda a, k: knotsafe.interp(a, k, values).sum(), argnums=(0, 1))(x, knots)
    if case == "ranks":
        tr, inv = knotsafe.create_transforms(points)
        return inv(tr(points))
    span = points.max(axis=0) - points.min(axis=0)
    tr, inv = knotsafe.create_transforms(points, method="kernel", kernel_std=span / 30, span_ratio=40.0)
    return inv(tr(points))

f = jax.jit(fn) if mode == "jit" else fn
out = {}
for label, size in (("first", n), ("same shapes", n), ("new shapes", n + 1)):
    args = inputs(size)
    compiles[0] = 0
    t0 = time.perf_counter()
    jax.block_until_ready(f(*args))
    out[label] = (time.perf_counter() - t0, compiles[0])
print(json.dumps(out))
"""


def _run(case: str, mode: str, n: int) -> dict[str, tuple[float, int]]:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # XLA's defaults: what a user gets
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, case, mode, str(n)], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{case} ({mode}) failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="knots, queries and points per column")
    args = parser.parse_args()
    import jax

    print(
        f"JAX {jax.__version__}, x64, CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores),"
        f" N = {args.n}; seconds (XLA compilations) of one call\n"
    )
    print("| case | mode | first call | same shapes again | new shapes (N + 1) |")
    print("|---|---|---|---|---|")
    for case, label in CASES.items():
        for mode in ("eager", "jit"):
            r = _run(case, mode, args.n)
            cells = " | ".join(f"{t:.2f} s ({c})" for t, c in (r["first"], r["same shapes"], r["new shapes"]))
            print(f"| {label} | {'jax.jit' if mode == 'jit' else 'eager'} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
