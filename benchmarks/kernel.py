"""Kernel-density CDF transform at the lens size, against the exact-sum peers.

Usage::

    python benchmarks/kernel.py                    # all backends, short run
    python benchmarks/kernel.py --backends jax --blocks 8 --repeat 5

Case: N = 15,380 traced points, K = 246,080 over-sampled queries, D = 2
(``knotsafe.testing.lens_grid`` at radius 3.5", 0.05" pixels, sub-size 4),
``h = span / 30`` per column, float64.  Rows:

* knotsafe ``create_transforms(method="kernel")``: forward ``u(q)`` for all K
  queries, and forward+backward (gradient of ``sum(u * c)`` with respect to
  points and queries), on JAX (``jax.jit``, grid sized by ``span_ratio``) and
  PyTorch (eager autograd); forward only on NumPy.
* peer, JAX and PyTorch: the blocked exact sum of PyAutoArray (512 queries per
  block, every point, ``ndtr``).  Only ``--blocks`` blocks are timed and the
  time is scaled by ``K / (512 * blocks)`` (the full pass would take minutes);
  its forward+backward is the gradient of each block's sum.
* peer, NumPy: the saturation-window exact loop (sorted points, weight prefix
  sums, terms more than 9 h away dropped), compiled with numba when it is
  installed (single thread); timed on a fraction of the queries and scaled.

Each time is the median of ``--repeat`` calls after one warm-up call (JIT
compilation).  Ratios are peer / knotsafe from the same run.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from statistics import median
from typing import Any

os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np

import knotsafe
from knotsafe.testing import lens_grid

BLOCK = 512
RATIO = 30.0  # span / h


def _time(fn: Any, repeat: int) -> float:
    fn()  # warm-up (compilation)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return median(times)


# ---------------------------------------------------------------------------
# JAX
# ---------------------------------------------------------------------------


def bench_jax(points: np.ndarray, queries: np.ndarray, blocks: int, repeat: int) -> dict[str, float]:
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import ndtr

    p, q = jnp.asarray(points), jnp.asarray(queries)
    c = jnp.asarray(np.random.default_rng(0).normal(size=queries.shape))

    def ks(p: Any, q: Any) -> Any:
        h = (jnp.max(p, axis=0) - jnp.min(p, axis=0)) / RATIO
        return knotsafe.create_transforms(p, method="kernel", kernel_std=h, span_ratio=RATIO + 1.0)[0](q)

    fwd = jax.jit(ks)
    bwd = jax.jit(jax.grad(lambda p, q: jnp.sum(ks(p, q) * c), argnums=(0, 1)))

    def exact_block(p: Any, qb: Any) -> Any:
        h = (jnp.max(p, axis=0) - jnp.min(p, axis=0)) / RATIO
        cols = []
        for d in range(2):
            lo, hi = jnp.min(p[:, d]), jnp.max(p[:, d])

            def cdf(x: Any, d: int = d) -> Any:
                return jnp.mean(ndtr((x[:, None] - p[None, :, d]) / h[d]), axis=1)

            ends = cdf(jnp.stack([lo, hi]))
            cols.append(jnp.clip((cdf(qb[:, d]) - ends[0]) / (ends[1] - ends[0]), 0.0, 1.0))
        return jnp.stack(cols, axis=1)

    efwd = jax.jit(exact_block)
    ebwd = jax.jit(jax.grad(lambda p, qb, cb: jnp.sum(exact_block(p, qb) * cb), argnums=(0, 1)))
    qbs = [q[i * BLOCK : (i + 1) * BLOCK] for i in range(blocks)]
    cbs = [c[i * BLOCK : (i + 1) * BLOCK] for i in range(blocks)]
    scale = queries.shape[0] / (BLOCK * blocks)
    err = float(jnp.max(jnp.abs(fwd(p, qbs[0]) - efwd(p, qbs[0]))))
    return {
        "knotsafe forward": _time(lambda: fwd(p, q).block_until_ready(), repeat),
        "knotsafe forward+backward": _time(lambda: jax.block_until_ready(bwd(p, q)), repeat),
        "exact forward": scale * _time(lambda: [efwd(p, b).block_until_ready() for b in qbs], repeat),
        "exact forward+backward": scale
        * _time(lambda: [jax.block_until_ready(ebwd(p, b, cb)) for b, cb in zip(qbs, cbs, strict=True)], repeat),
        "max |u - exact|": err,
    }


# ---------------------------------------------------------------------------
# PyTorch
# ---------------------------------------------------------------------------


def bench_torch(points: np.ndarray, queries: np.ndarray, blocks: int, repeat: int) -> dict[str, float]:
    import torch

    p, q = torch.asarray(points), torch.asarray(queries)
    c = torch.asarray(np.random.default_rng(0).normal(size=queries.shape))

    def ks(p: Any, q: Any) -> Any:
        h = (p.amax(0) - p.amin(0)) / RATIO
        return knotsafe.create_transforms(p, method="kernel", kernel_std=h)[0](q)

    def fwd() -> Any:
        with torch.no_grad():
            return ks(p, q)

    def bwd() -> Any:
        pp, qq = p.clone().requires_grad_(True), q.clone().requires_grad_(True)
        return torch.autograd.grad((ks(pp, qq) * c).sum(), (pp, qq))

    def exact_block(p: Any, qb: Any) -> Any:
        h = (p.amax(0) - p.amin(0)) / RATIO
        cols = []
        for d in range(2):
            ends_x = torch.stack([p[:, d].min(), p[:, d].max()])
            ends = torch.special.ndtr((ends_x[:, None] - p[None, :, d]) / h[d]).mean(1)
            f = torch.special.ndtr((qb[:, d, None] - p[None, :, d]) / h[d]).mean(1)
            cols.append(((f - ends[0]) / (ends[1] - ends[0])).clamp(0.0, 1.0))
        return torch.stack(cols, 1)

    qbs = [q[i * BLOCK : (i + 1) * BLOCK] for i in range(blocks)]
    cbs = [c[i * BLOCK : (i + 1) * BLOCK] for i in range(blocks)]

    def efwd() -> None:
        with torch.no_grad():
            for b in qbs:
                exact_block(p, b)

    def ebwd() -> None:
        for b, cb in zip(qbs, cbs, strict=True):
            pp, bb = p.clone().requires_grad_(True), b.clone().requires_grad_(True)
            torch.autograd.grad((exact_block(pp, bb) * cb).sum(), (pp, bb))

    scale = queries.shape[0] / (BLOCK * blocks)
    with torch.no_grad():
        err = float((ks(p, qbs[0]) - exact_block(p, qbs[0])).abs().max())
    return {
        "knotsafe forward": _time(fwd, repeat),
        "knotsafe forward+backward": _time(bwd, repeat),
        "exact forward": scale * _time(efwd, repeat),
        "exact forward+backward": scale * _time(ebwd, repeat),
        "max |u - exact|": err,
    }


# ---------------------------------------------------------------------------
# NumPy: saturation-window exact loop
# ---------------------------------------------------------------------------


def _window_loop_py(sorted_p: np.ndarray, cum_w: np.ndarray, h: float, q: np.ndarray) -> np.ndarray:
    """F(q) for one column: full weight left of q - 9h, the exact sum inside the window."""
    n = sorted_p.shape[0]
    out = np.empty(q.shape[0])
    for k in range(q.shape[0]):
        x = q[k]
        a = np.searchsorted(sorted_p, x - 9.0 * h)
        b = np.searchsorted(sorted_p, x + 9.0 * h)
        acc = cum_w[a]
        w = 1.0 / n
        for i in range(a, b):
            acc += w * 0.5 * math.erfc(-(x - sorted_p[i]) / (h * math.sqrt(2.0)))
        out[k] = acc
    return out


def _window_loop() -> tuple[Any, str]:
    try:
        import numba
    except ImportError:
        return _window_loop_py, "pure-Python window loop (numba not installed)"
    return numba.njit(cache=False)(_window_loop_py), f"numba {numba.__version__} window loop (one thread)"


def bench_numpy(points: np.ndarray, queries: np.ndarray, fraction: float, repeat: int) -> tuple[dict[str, float], str]:
    loop, label = _window_loop()
    h = (points.max(0) - points.min(0)) / RATIO

    def ks() -> Any:
        return knotsafe.create_transforms(points, method="kernel", kernel_std=h)[0](queries)

    sub = queries[: max(BLOCK, int(fraction * queries.shape[0]))]
    n = points.shape[0]
    prep = []
    for d in range(2):
        sp = np.sort(points[:, d])
        prep.append((sp, np.arange(n + 1) / n))

    def window() -> np.ndarray:
        cols = []
        for d in range(2):
            sp, cw = prep[d]
            ends = loop(sp, cw, float(h[d]), np.array([sp[0], sp[-1]]))
            f = loop(sp, cw, float(h[d]), np.ascontiguousarray(sub[:, d]))
            cols.append(np.clip((f - ends[0]) / (ends[1] - ends[0]), 0.0, 1.0))
        return np.stack(cols, 1)

    err = float(np.abs(ks()[: sub.shape[0]] - window()).max())
    scale = queries.shape[0] / sub.shape[0]
    return {
        "knotsafe forward": _time(ks, repeat),
        "window forward": scale * _time(window, max(1, repeat // 2)),
        "max |u - exact|": err,
    }, label


#: Speed targets, peer / knotsafe at least this (JAX, PyTorch: blocked exact sum; NumPy: window loop): the exact
#: sum is what PyAutoArray runs, so these say how much the node-grid interpolation must save to be worth it.
TARGETS = {"jax": 300.0, "torch": 300.0, "numpy": 30.0}
_TAGS = {"jax": "JAX (jit)", "torch": "PyTorch (eager)", "numpy": "NumPy"}


def run(backends: list[str], blocks: int, fraction: float, repeat: int) -> list[dict[str, Any]]:
    """Benchmark rows (one per backend and mode) at the lens size; missing frameworks are skipped."""
    import importlib.util

    points, queries = lens_grid(radius=3.5, pixel_scale=0.05, sub_size=4)
    rows: list[dict[str, Any]] = []
    for name in backends:
        if name not in TARGETS or importlib.util.find_spec("jax" if name == "jax" else name) is None:
            continue
        if name == "numpy":
            r, label = bench_numpy(points, queries, fraction, repeat)
            modes = [("forward", r["knotsafe forward"], r["window forward"], label)]
        else:
            r = (bench_jax if name == "jax" else bench_torch)(points, queries, blocks, repeat)
            modes = [
                (m, r[f"knotsafe {m}"], r[f"exact {m}"], f"blocked exact sum ({BLOCK} queries per block)")
                for m in ("forward", "forward+backward")
            ]
        for mode, ks, peer, label in modes:
            rows.append(
                {
                    "workload": "kernel",
                    "backend": name,
                    "mode": mode,
                    "peer": label,
                    "knotsafe_s": ks,
                    "peer_s": peer,
                    "ratio": peer / ks,
                    "target": TARGETS[name],
                    "max_abs_u_error": r["max |u - exact|"],
                    "N": points.shape[0],
                    "K": queries.shape[0],
                }
            )
    return rows


def markdown_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The kernel rows as a markdown table (peer / knotsafe; the target is "at least")."""
    rows = [r for r in rows if r.get("workload") == "kernel"]
    if not rows:
        return []
    n, k = rows[0]["N"], rows[0]["K"]
    lines = [
        "",
        f'Kernel-density CDF transform (`method="kernel"`, N = {n}, K = {k}, D = 2, h = span / {RATIO:g}, float64):',
        "",
        "| backend | mode | peer | peer s | knotsafe s | peer / knotsafe | target | max abs u error |",
        "|" + "---|" * 8,
    ]
    for r in rows:
        met = "met" if r["ratio"] >= r["target"] else "MISSED"
        lines.append(
            f"| {_TAGS[r['backend']]} | {r['mode']} | {r['peer']} | {r['peer_s']:.3g} | {r['knotsafe_s']:.3g} "
            f"| **{r['ratio']:,.0f}x** | >= {r['target']:g}x {met} | {r['max_abs_u_error']:.1e} |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="jax,torch,numpy")
    ap.add_argument("--blocks", type=int, default=4, help="512-query blocks of the exact sum to time (scaled to K)")
    ap.add_argument("--fraction", type=float, default=0.01, help="fraction of queries for the NumPy window loop")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible")
    rows = run(args.backends.split(","), args.blocks, args.fraction, args.repeat)
    print("\n".join(markdown_lines(rows)))


if __name__ == "__main__":
    main()
