"""Batched knots: one call on (D, N) knots against the row-by-row ways of getting the same result.

Usage::

    python benchmarks/batched.py                 # D = 64 rows, N = 1,000 knots, M = 4,000 queries per row
    python benchmarks/batched.py --repeats 5     # quicker

Per backend and mode (forward; forward+backward with respect to queries, knots and
values, upstream gradient all ones), float64, every implementation gets the same
arrays and is timed interleaved (one call of each in turn, the order rotated every
round); the table gives the median and minimum wall time and knotsafe's ratio to
each peer (median over median):

* JAX (``jax.jit`` around everything): knotsafe's batched call against
  ``jax.vmap`` of the 1-D call;
* PyTorch (eager): the batched call against a Python loop of 1-D calls (stacked),
  and ``torch.vmap`` of the 1-D call;
* NumPy (forward only): the batched call against a loop of ``numpy.interp``.

Results go to ``benchmarks/results/batched.md`` and ``batched.json``.

``--jax-calls`` times instead several separate calls in one jitted JAX program, the
way users write per-column code, on the lens grid (N = 15,380 sorted knots per
column, K = 246,080 over-sampled queries, float64): one call, the two columns
interpolated one by one and stacked, and three calls with different knots,
forward+backward for every subset of (queries, knots), knotsafe against the same
program with ``jnp.interp`` (``left=0.0, right=1.0``, values not differentiated),
with XLA's cost and temporary-memory analysis beside the wall times.  Results go to
``benchmarks/results/jax_calls.md`` and ``jax_calls.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if (ROOT / "src" / "knotsafe").is_dir():
    sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402

import knotsafe  # noqa: E402

Call = Callable[[], Any]


def inputs(d: int, n: int, m: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Sorted knots per row with 10 % exact duplicates; queries a little beyond the knots."""
    rng = np.random.default_rng(seed)
    k = rng.uniform(0.0, 1.0, (d, n))
    k[:, 1::10] = k[:, 0 : n - 1 : 10][:, : k[:, 1::10].shape[1]]
    k = np.sort(k, axis=1)
    v = np.cumsum(rng.uniform(0.0, 1.0, (d, n)), axis=1)
    x = rng.uniform(-0.02, 1.02, (d, m))
    return {"x": x, "k": k, "v": v}


def jax_costs(a: dict[str, np.ndarray]) -> list[str]:
    """XLA's cost analysis of the compiled programs (flops, bytes accessed): a measure that load cannot move."""
    import jax
    import jax.numpy as jnp

    x, k, v = (jnp.asarray(a[n]) for n in ("x", "k", "v"))
    lines = []
    for mode in ("fwd", "fwd+bwd"):
        for name, f in (("knotsafe batched", knotsafe.interp), ("jax.vmap(1-D call)", jax.vmap(knotsafe.interp))):
            g = f if mode == "fwd" else jax.grad(lambda *z, f=f: f(*z).sum(), argnums=(0, 1, 2))
            cost = jax.jit(g).lower(x, k, v).compile().cost_analysis()
            cost = cost[0] if isinstance(cost, list) else cost
            flops, nbytes = cost.get("flops", float("nan")), cost.get("bytes accessed", float("nan"))
            lines.append(f"| jax | {mode} | {name} | {flops / 1e6:.1f} | {nbytes / 2**20:.1f} |")
    return lines


def jax_cases(a: dict[str, np.ndarray]) -> dict[str, dict[str, Call]]:
    import jax
    import jax.numpy as jnp

    x, k, v = (jnp.asarray(a[n]) for n in ("x", "k", "v"))
    batched = knotsafe.interp
    mapped = jax.vmap(knotsafe.interp)

    def fwd(f: Any) -> Call:
        g = jax.jit(f)
        return lambda: g(x, k, v).block_until_ready()

    def bwd(f: Any) -> Call:
        g = jax.jit(jax.grad(lambda *z: f(*z).sum(), argnums=(0, 1, 2)))
        return lambda: jax.block_until_ready(g(x, k, v))

    return {
        "fwd": {"knotsafe batched": fwd(batched), "jax.vmap(1-D call)": fwd(mapped)},
        "fwd+bwd": {"knotsafe batched": bwd(batched), "jax.vmap(1-D call)": bwd(mapped)},
    }


def torch_cases(a: dict[str, np.ndarray]) -> dict[str, dict[str, Call]]:
    import torch

    x, k, v = (torch.from_numpy(a[n].copy()) for n in ("x", "k", "v"))

    def loop(xx: Any, kk: Any, vv: Any) -> Any:
        return torch.stack([knotsafe.interp(xx[r], kk[r], vv[r]) for r in range(kk.shape[0])])

    vmapped = torch.vmap(knotsafe.interp)

    def fwd(f: Any) -> Call:
        return lambda: f(x, k, v)

    def bwd(f: Any) -> Call:
        def run() -> Any:
            leaves = [t.detach().requires_grad_() for t in (x, k, v)]
            return torch.autograd.grad(f(*leaves).sum(), leaves)

        return run

    impls = {"knotsafe batched": knotsafe.interp, "row loop of 1-D calls": loop, "torch.vmap(1-D call)": vmapped}
    cases = {
        "fwd": {name: fwd(f) for name, f in impls.items()},
        "fwd+bwd": {name: bwd(f) for name, f in impls.items()},
    }
    try:
        from torchinterp1d import interp1d
    except ImportError:
        print("note: torchinterp1d is not installed; its row is left out")
    else:
        # Forward only: its backward on these inputs took more than 19 GiB and was killed by the
        # kernel's out-of-memory killer on a 24 GiB machine (docs/benchmarks.md).
        cases["fwd"][TORCHINTERP1D] = fwd(lambda xx, kk, vv: interp1d(kk, vv, xx))
    return cases


#: torchinterp1d extrapolates beyond the knots and adds eps to every gap: compared inside the knots only.
TORCHINTERP1D = "torchinterp1d"


def numpy_cases(a: dict[str, np.ndarray]) -> dict[str, dict[str, Call]]:
    x, k, v = a["x"], a["k"], a["v"]

    def loop() -> Any:
        return np.stack([np.interp(x[r], k[r], v[r]) for r in range(k.shape[0])])

    return {"fwd": {"knotsafe batched": lambda: knotsafe.interp(x, k, v), "row loop of numpy.interp": loop}}


def lens_columns() -> dict[str, np.ndarray]:
    """The lens grid's two columns, sorted (the knots), and its over-sampled grid (the queries)."""
    from knotsafe.testing import lens_grid

    data, over = lens_grid()
    return {"k": np.sort(data, axis=0), "q": over}


#: The programs of ``--jax-calls``: (queries column, knots column, shift of the knots) per call.
CALL_PROGRAMS: dict[str, tuple[tuple[int, int, float], ...]] = {
    "1 call": ((0, 0, 0.0),),
    "2 columns stacked": ((0, 0, 0.0), (1, 1, 0.0)),
    "3 calls, different knots": ((0, 0, 0.0), (1, 1, 0.0), (0, 1, 0.25)),
}
CALL_ARGNUMS: dict[str, tuple[int, ...]] = {"queries": (0,), "knots": (1,), "queries, knots": (0, 1)}


def jax_call_programs(a: dict[str, np.ndarray]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (program, differentiated arguments): the jitted gradient of each implementation."""
    import jax
    import jax.numpy as jnp

    n = a["k"].shape[0]
    t = jnp.arange(1, n + 1, dtype=jnp.float64) / (n + 1)

    def loss(f: Any, calls: tuple[tuple[int, int, float], ...]) -> Any:
        def run(q: Any, k: Any) -> Any:
            cols = [f(q[:, i], k[:, j] + s if s else k[:, j], t, left=0.0, right=1.0) for i, j, s in calls]
            return (jnp.stack(cols, 1) ** 2).sum()

        return run

    impls = {"knotsafe": knotsafe.interp, "jnp.interp": jnp.interp}
    return {
        (prog, diff): {name: jax.jit(jax.grad(loss(f, calls), argnums=argnums)) for name, f in impls.items()}
        for prog, calls in CALL_PROGRAMS.items()
        for diff, argnums in CALL_ARGNUMS.items()
    }


def run_jax_calls(args: argparse.Namespace) -> int:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    a = lens_columns()
    q, k = jnp.asarray(a["q"]), jnp.asarray(a["k"])
    load = [os.getloadavg()[0]]
    rows: list[dict[str, Any]] = []
    for (prog, diff), fs in jax_call_programs(a).items():
        calls = {name: (lambda g=g: jax.block_until_ready(g(q, k))) for name, g in fs.items()}
        leaves = [jax.tree_util.tree_leaves(f()) for f in calls.values()]
        got = [np.concatenate([np.ravel(np.asarray(z)) for z in g]) for g in leaves]
        scale = np.max(np.abs(got[1])) + 1.0
        if np.max(np.abs(got[0] - got[1])) > 1e-6 * scale:
            # The programs differ only where a query sits on a duplicate knot (knotsafe's 0, jnp.interp's
            # division by a tiny gap): reported, not fatal.
            print(f"note: {prog} / {diff}: gradients differ by up to {np.max(np.abs(got[0] - got[1])):.3g}")
        res = time_interleaved(calls, args.repeats)
        costs = {}
        for name, g in fs.items():
            compiled = g.lower(q, k).compile()
            cost = compiled.cost_analysis()
            cost = cost[0] if isinstance(cost, list) else cost
            costs[name] = {
                "Mflop": cost.get("flops", float("nan")) / 1e6,
                "MiB accessed": cost.get("bytes accessed", float("nan")) / 2**20,
                "MiB temporaries": compiled.memory_analysis().temp_size_in_bytes / 2**20,
            }
        row = {"program": prog, "differentiated": diff, "times": res, "costs": costs}
        row["ratio min"] = res["knotsafe"]["min"] / res["jnp.interp"]["min"]
        row["ratio median"] = res["knotsafe"]["median"] / res["jnp.interp"]["median"]
        rows.append(row)
        print(
            f"{prog:26} {diff:15} knotsafe {res['knotsafe']['min'] * 1e3:7.2f} ms  "
            f"jnp.interp {res['jnp.interp']['min'] * 1e3:7.2f} ms  ratio (min) {row['ratio min']:.2f}",
            flush=True,
        )
    load.append(os.getloadavg()[0])
    info = {
        "N": int(a["k"].shape[0]),
        "K": int(a["q"].shape[0]),
        "dtype": "float64",
        "repeats": args.repeats,
        "jax": jax.__version__,
        "cpus": os.cpu_count(),
        "load_1min_before_after": load,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "jax_calls.json").write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    lines = [
        f"Separate calls in one jitted JAX program (forward+backward, `jax.jit(jax.grad(...))`), lens grid: "
        f"N = {info['N']} knots per column, K = {info['K']} queries, float64, {args.repeats} interleaved rounds; "
        f"1-min load average {load[0]:.1f} before, {load[1]:.1f} after.",
        "",
        "| program | differentiated | knotsafe min ms | jnp.interp min ms | ratio (min) | ratio (median) "
        "| MiB temporaries (knotsafe / jnp) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t, c = r["times"], r["costs"]
        lines.append(
            f"| {r['program']} | {r['differentiated']} | {t['knotsafe']['min'] * 1e3:.2f} "
            f"| {t['jnp.interp']['min'] * 1e3:.2f} | {r['ratio min']:.2f} | {r['ratio median']:.2f} "
            f"| {c['knotsafe']['MiB temporaries']:.1f} / {c['jnp.interp']['MiB temporaries']:.1f} |"
        )
    (args.out / "jax_calls.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def time_interleaved(calls: dict[str, Call], repeats: int) -> dict[str, dict[str, float]]:
    for f in calls.values():
        f()
        f()  # compilation and caches
    samples: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for r in range(repeats):
        for i in range(len(names)):
            name = names[(i + r) % len(names)]
            t0 = time.perf_counter()
            calls[name]()
            samples[name].append(time.perf_counter() - t0)
    return {name: {"median": median(ts), "min": min(ts)} for name, ts in samples.items()}


def check_equal(cases: dict[str, dict[str, Call]], inside: np.ndarray) -> None:
    """Every implementation of the forward case returns the batched call's values (within 8 eps);
    torchinterp1d, which extrapolates and pads every gap with eps, within 1e-9 at the queries
    ``inside`` the knots."""
    fwd = cases["fwd"]
    ref = np.asarray(next(iter(fwd.values()))(), dtype=np.float64)
    scale = np.max(np.abs(ref)) + 1.0
    for name, f in fwd.items():
        out = f()
        got = np.asarray(out.detach() if hasattr(out, "detach") else out, dtype=np.float64)
        diff = np.abs(got - ref)
        worst = np.max(diff[inside]) / 1e-9 if name == TORCHINTERP1D else np.max(diff) / (8 * np.finfo(float).eps)
        if not worst / scale <= 1.0:
            raise AssertionError(f"{name} differs from the batched call")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--knots", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--backends", default="jax,torch,numpy")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--jax-calls", action="store_true", help="time separate calls in one JAX program instead")
    args = parser.parse_args(argv)
    if args.jax_calls:
        return run_jax_calls(args)
    if "jax" in args.backends:
        import jax

        jax.config.update("jax_enable_x64", True)
    a = inputs(args.rows, args.knots, args.queries)
    makers = {"jax": jax_cases, "torch": torch_cases, "numpy": numpy_cases}
    rows: list[dict[str, Any]] = []
    load = [os.getloadavg()[0]]
    for backend in args.backends.split(","):
        cases = makers[backend](a)
        check_equal(cases, (a["x"] >= a["k"][:, :1]) & (a["x"] <= a["k"][:, -1:]))
        for mode, calls in cases.items():
            res = time_interleaved(calls, args.repeats)
            ours = res["knotsafe batched"]["median"]
            for name, t in res.items():
                ratio = ours / t["median"] if name != "knotsafe batched" else None
                rows.append({"backend": backend, "mode": mode, "impl": name, **t, "knotsafe / impl": ratio})
                ms = f"{t['median'] * 1e3:9.2f} ms  (min {t['min'] * 1e3:8.2f})"
                print(f"{backend:6} {mode:8} {name:26} {ms}", flush=True)
    load.append(os.getloadavg()[0])
    info = {
        "D": args.rows,
        "N": args.knots,
        "M": args.queries,
        "dtype": "float64",
        "repeats": args.repeats,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_1min_before_after": load,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "batched.json").write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    lines = [
        f"Batched knots: D = {args.rows} rows, N = {args.knots} knots, M = {args.queries} queries per row, float64, "
        f"{args.repeats} interleaved rounds; 1-min load average {load[0]:.1f} before, {load[1]:.1f} after.",
        "",
        "| backend | mode | implementation | median ms | min ms | knotsafe batched / this (median) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = "" if r["knotsafe / impl"] is None else f"{r['knotsafe / impl']:.2f}"
        lines.append(
            f"| {r['backend']} | {r['mode']} | {r['impl']} | {r['median'] * 1e3:.2f} | {r['min'] * 1e3:.2f} | {ratio} |"
        )
    if any(r["impl"] == TORCHINTERP1D for r in rows):
        lines += [
            "",
            "torchinterp1d: forward only. Its backward on these inputs (`torch.autograd.grad` of the sum with respect "
            "to queries, knots and values) grew past 19 GiB and was killed by the out-of-memory killer of a 24 GiB "
            "machine, so it is not run.",
        ]
    if "jax" in args.backends:
        lines += [
            "",
            "XLA's cost analysis of the same JAX programs (independent of load):",
            "",
            "| backend | mode | implementation | Mflop | MiB accessed |",
            "|---|---|---|---|---|",
            *jax_costs(a),
        ]
    (args.out / "batched.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
