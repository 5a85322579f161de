"""knotsafe side by side with its peers: timings, scaling sweep and peak memory.

Usage::

    python benchmarks/run.py            # full run (what ``nox -s bench`` runs)
    python benchmarks/run.py --quick    # smoke run, well under a minute of timing

Every case times all implementations on the same input arrays, interleaved
(one call of each in turn, the order rotated every round) and reports the
median; ratios are knotsafe's median over a peer's median from the same run.
JAX runs with ``JAX_ENABLE_X64=1`` so float64 and float32 are both measured
(float32 arrays stay float32).  Results go to ``benchmarks/results/`` (JSON and
Markdown) and the scaling plot to ``docs/bench_scaling.png``.

Peak memory is measured per implementation in a fresh subprocess: after a
warm-up call (JIT compilation, lazy initialisation) the kernel's peak-RSS mark
is reset (``/proc/self/clear_refs``), the computation runs once, and the peak
extra memory is ``VmHWM - VmRSS`` before the call.  glibc is told to serve
every allocation above 64 KiB with ``mmap`` (``MALLOC_MMAP_THRESHOLD_``) so that
freed buffers leave the resident set and are not silently reused from an
earlier call.  NumPy is cross-checked with ``tracemalloc``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
if (ROOT / "src" / "knotsafe").is_dir():
    sys.path.insert(1, str(ROOT / "src"))
sys.path.insert(2, str(ROOT))  # for the backend table, imported from the repository root as every reader does

import contextlib  # noqa: E402

import kernel as kernel_bench  # noqa: E402
import numpy as np  # noqa: E402
import peers  # noqa: E402

from tests.backend_table import BACKENDS as _TABLE  # noqa: E402

#: From tests/backend_table.py, the one list of backends.
BACKENDS = tuple(b.name for b in _TABLE if b.bench)
#: (backend, mode, peer) -> largest allowed ratio knotsafe / peer: safety should cost at most this over the
#: unprotected interpolation a user would otherwise call (docs/benchmarks.md).
TARGETS = {
    ("numpy", "fwd", "numpy.interp"): 1.05,
    ("jax", "fwd", "jnp.interp"): 1.10,
    ("jax", "fwd+bwd", "jnp.interp"): 1.10,
    ("torch", "fwd+bwd", "plain"): 1.00,
}
MEMORY_TARGET = 8.0
#: (table label, subset) -> largest allowed ratio knotsafe / peer, per differentiated subset (a lens model
#: differentiates only some arguments, and should pay only for those).
SUBSET_TARGETS: dict[tuple[str, str], float] = {("NumPy", "forward"): 1.05}
for _m in ("x,knots", "x", "knots", "values", "x,knots,values"):
    SUBSET_TARGETS[("JAX jit", _m)] = 1.10
# PyTorch: forward alone too, float64 and float32; compiled against the compiled peer.
for _m in ("x,knots", "x", "knots", "values", "x,knots,values", "forward"):
    for _dt in ("", " float32"):
        SUBSET_TARGETS[("PyTorch eager" + _dt, _m)] = 1.00
        SUBSET_TARGETS[("PyTorch torch.compile" + _dt, _m)] = 1.20
#: Largest allowed second-order / first-order time: a Hessian-vector product should cost a small constant multiple
#: of the gradient, as automatic differentiation gives for code without a custom derivative rule.
ORDER2_TARGET = 3.0


# ------------------------------------------------------------------ inputs
def to_backend(backend: str, a: np.ndarray, dtype: str) -> Any:
    a = np.ascontiguousarray(a, dtype=dtype)
    if backend == "numpy":
        return a
    if backend == "jax":
        import jax.numpy as jnp

        return jnp.asarray(a)
    import torch

    return torch.from_numpy(a.copy())


def lens_inputs() -> dict[str, np.ndarray]:
    from knotsafe.testing import lens_grid

    data, over = lens_grid()
    knots = np.sort(data[:, 0])
    n = knots.size
    return {
        "x": over[:, 0].copy(),
        "k": knots,
        "v": np.arange(1, n + 1) / (n + 1),
        "points": data,
        "q": over,
    }


def random_inputs(n: int, k: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Sorted knots in [0, 1] with 10 % exact duplicates; queries a little beyond."""
    rng = np.random.default_rng(seed)
    u = rng.uniform(0.0, 1.0, n)
    u[1::10] = u[0 : n - 1 : 10][: u[1::10].size]
    knots = np.sort(u)
    return {"x": rng.uniform(-0.02, 1.02, k), "k": knots, "v": np.cumsum(rng.uniform(0.0, 1.0, n))}


def make_impls(backend: str, workload: str, arrs: dict[str, np.ndarray], dtype: str) -> list[peers.Impl]:
    if workload == "transform":
        p, q = (to_backend(backend, arrs[n], dtype) for n in ("points", "q"))
        return {"numpy": peers.numpy_transform, "jax": peers.jax_transform, "torch": peers.torch_transform}[backend](
            p, q
        )
    x, k, v = (to_backend(backend, arrs[n], dtype) for n in ("x", "k", "v"))
    if workload == "searchsorted":
        return peers.jax_searchsorted(x, k)
    return {"numpy": peers.numpy_interp, "jax": peers.jax_interp, "torch": peers.torch_interp}[backend](x, k, v)


# ------------------------------------------------------------------ timing
def time_case(impls: list[peers.Impl], mode: str, repeats: int, budget: float | None = None) -> dict[str, Any]:
    """Median seconds per implementation (or an error string), interleaved."""
    res = time_stats(impls, mode, repeats, budget)
    return {name: v if isinstance(v, str) else v["median"] for name, v in res.items()}


def time_stats(impls: list[peers.Impl], mode: str, repeats: int, budget: float | None = None) -> dict[str, Any]:
    """``{"median", "min"}`` seconds per implementation (or an error string).

    Calls are interleaved, one of each in turn with the order rotated every
    round, so that load from other processes hits every implementation alike.
    """
    calls: dict[str, Any] = {}
    result: dict[str, Any] = {}
    for impl in impls:
        fn = impl.calls.get(mode)
        if fn is None:
            if mode in impl.notes:
                result[impl.name] = impl.notes[mode]
            continue
        try:
            t0 = time.perf_counter()
            fn()
            fn()  # JIT compilation and caches on the first call
            calls[impl.name] = (fn, (time.perf_counter() - t0) / 2)
        except Exception as exc:  # a peer that fails is reported, not fatal
            result[impl.name] = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
    if budget is not None and calls:
        per_round = sum(t for _, t in calls.values())
        repeats = int(min(repeats, max(3, budget / max(per_round, 1e-9))))
    samples: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for r in range(repeats):
        for i in range(len(names)):
            name = names[(i + r) % len(names)]
            fn = calls[name][0]
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    for name, ts in samples.items():
        # CPU time of the process (all its threads): on a loaded machine it
        # moves far less than wall time, which includes waiting for a core.
        result[name] = {"median": median(ts), "min": min(ts), "cpu": median(cpu[name])}
    return result


def run_cases(args: argparse.Namespace, log: list[dict[str, Any]]) -> None:
    lens = lens_inputs()
    n, k = lens["k"].size, lens["x"].size
    for workload in ("interp", "transform"):
        for backend in args.backends:
            for dtype in ("float64", "float32"):
                impls = make_impls(backend, workload, lens, dtype)
                for mode in peers.MODES:
                    if all(i.calls.get(mode) is None and mode not in i.notes for i in impls):
                        continue
                    res = time_case(impls, mode, args.repeats)
                    for name, t in res.items():
                        log.append(_row(workload, backend, dtype, mode, n, k, name, t))
                    _progress(workload, backend, dtype, mode, res)
    if "jax" in args.backends:
        for dtype in ("float64", "float32"):
            res = time_case(make_impls("jax", "searchsorted", lens, dtype), "fwd", args.repeats)
            for name, t in res.items():
                log.append(_row("searchsorted", "jax", dtype, "fwd", n, k, name, t))
            _progress("searchsorted", "jax", dtype, "fwd", res)


def subset_groups(args: argparse.Namespace, lens: dict[str, np.ndarray]) -> list[peers.SubsetGroup]:
    groups = []
    for backend in args.backends:
        x, kn, v = (to_backend(backend, lens[name], "float64") for name in ("x", "k", "v"))
        if backend == "numpy":
            groups.append(peers.numpy_forward(x, kn, v))
        elif backend == "jax":
            groups.append(peers.jax_subsets(x, kn, v))
        elif backend == "torch":
            # Both dtypes: the PyTorch targets hold for float32 too.
            for dtype in ("float64", "float32"):
                x, kn, v = (to_backend(backend, lens[name], dtype) for name in ("x", "k", "v"))
                groups.append(peers.torch_subsets(x, kn, v, compiled=False))
                if not args.quick:
                    groups.append(peers.torch_subsets(x, kn, v, compiled=True))
    return groups


def run_subsets(args: argparse.Namespace, log: list[dict[str, Any]]) -> None:
    """One row per backend and differentiated subset (lens grid, float64).

    Per row: knotsafe and its peer timed interleaved (median and min of
    ``args.subset_repeats`` rounds), knotsafe's second-order call against its
    first-order call (interleaved too), the peak extra memory of each, and the
    1-minute load average before and after the row.
    """
    lens = lens_inputs()
    n, k = lens["k"].size, lens["x"].size
    for group in subset_groups(args, lens):
        for sub in group.impls[0].calls:
            load0 = os.getloadavg()[0]
            res = time_stats(group.impls, sub, args.subset_repeats)
            row = {"workload": "subset", "backend": group.backend, "label": group.label, "dtype": group.dtype}
            row.update({"subset": sub, "peer": group.peer, "N": n, "K": k, "timing": res})
            if group.order2:
                row["order2"] = time_stats(group.order2, sub, args.subset_repeats)
            row["memory"] = {impl: fn() for (impl, s), fn in group.memory.items() if s == sub}
            if not group.memory and "torch.compile" not in group.label and group.dtype == "float64":
                row["memory"] = {impl.name: subset_memory(group.backend, impl.name, sub) for impl in group.impls}
            row["load"] = (load0, os.getloadavg()[0])
            log.append(row)
            print("  " + _subset_line(row), flush=True)


def _stat(v: Any, key: str = "median") -> float | None:
    return v[key] if isinstance(v, dict) else None


def _ratio(a: Any, b: Any, key: str = "median") -> float | None:
    x, y = _stat(a, key), _stat(b, key)
    return x / y if x is not None and y else None


def subset_summary(row: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one per-subset row, as shown in the table."""
    t = row["timing"]
    peer_name = next(name for name in t if name != "knotsafe")
    ks, peer = t.get("knotsafe"), t.get(peer_name)
    target = SUBSET_TARGETS.get((row["label"], row["subset"]))
    ratio = _ratio(ks, peer)
    o2 = row.get("order2", {})
    mem = row.get("memory", {})
    return {
        "ks": ks,
        "peer": peer,
        "ratio": ratio,
        "ratio_min": _ratio(ks, peer, "min"),
        "ratio_cpu": _ratio(ks, peer, "cpu"),
        "target": target,
        "met": None if target is None or ratio is None else ratio <= target,
        "order2": _ratio(o2.get("2nd-order"), o2.get("1st-order")) if o2 else None,
        "mem_ks": mem.get("knotsafe"),
        "mem_peer": mem.get(peer_name),
    }


def _ms(v: Any) -> str:
    if isinstance(v, str):
        return v
    if v is None:
        return "-"
    return f"{v['median'] * 1e3:.2f} ({v['min'] * 1e3:.2f})"


def _mib(v: Any) -> str:
    if isinstance(v, (int, float)):
        return f"{v / 2**20:.1f}"
    return "-" if v is None else str(v)


def _subset_line(row: dict[str, Any]) -> str:
    s = subset_summary(row)
    ratio = "-" if s["ratio"] is None else f"{s['ratio']:.2f} (min {s['ratio_min']:.2f}, CPU {s['ratio_cpu']:.2f})"
    o2 = "" if s["order2"] is None else f", 2nd/1st {s['order2']:.2f}"
    return (
        f"[{row['label']} {row['subset']}] knotsafe {_ms(s['ks'])} ms, {row['peer']} {_ms(s['peer'])} ms, "
        f"ratio {ratio}{o2}, peak MiB {_mib(s['mem_ks'])} / {_mib(s['mem_peer'])}, load {row['load'][0]:.1f}"
    )


def subset_markdown(log: list[dict[str, Any]]) -> list[str]:
    rows = [r for r in log if r["workload"] == "subset"]
    if not rows:
        return []
    order = [*peers.SUBSETS, "forward"]
    rows.sort(key=lambda r: order.index(r["subset"]))
    lines = [
        "Per differentiated subset (lens grid, float64 unless the backend says float32; forward + backward, "
        "forward alone in the rows 'forward'; ms = median (min) of interleaved calls; "
        "ratio = knotsafe / peer of the medians (of the minima; of the median CPU times); "
        "2nd/1st = knotsafe's Hessian-vector product over its "
        "gradient; peak = extra MiB of one call, knotsafe / peer; load = 1-min load average):",
        "",
        "| subset | backend | knotsafe ms | peer | peer ms | ratio | target | 2nd/1st | peak MiB | load |",
        "|" + "---|" * 10,
    ]
    for r in rows:
        s = subset_summary(r)
        ratio = "-"
        if s["ratio"] is not None:
            ratio = f"**{s['ratio']:.2f}** ({s['ratio_min']:.2f}; CPU {s['ratio_cpu']:.2f})"
        target = "" if s["target"] is None else f"<= {s['target']:.2f} " + ("met" if s["met"] else "MISSED")
        if s["order2"] is not None:
            o2 = f"{s['order2']:.2f} " + ("met" if s["order2"] <= ORDER2_TARGET else "MISSED")
        else:
            o2 = ""
        lines.append(
            f"| {r['subset']} | {r['label']} | {_ms(s['ks'])} | {r['peer']} | {_ms(s['peer'])} | {ratio} | {target} "
            f"| {o2} | {_mib(s['mem_ks'])} / {_mib(s['mem_peer'])} | {r['load'][0]:.1f} |"
        )
    return [*lines, ""]


def subset_memory(backend: str, impl: str, sub: str) -> int | str:
    """Peak extra bytes of one call, measured in a fresh subprocess (see memory_child)."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--subset-memory-child", backend, impl, sub]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        return "error: " + (proc.stderr.strip().splitlines() or ["?"])[-1][:100]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return int(report["tracemalloc_peak"] if "tracemalloc_peak" in report else report["peak_extra"])


def subset_memory_child(backend: str, impl: str, sub: str) -> None:
    """In a fresh process: the peak extra bytes of one per-subset call (lens grid).

    PyTorch: resident-set high-water mark over the call (``VmHWM - VmRSS``
    after resetting the mark, glibc forced to ``mmap``); NumPy: tracemalloc.
    """
    lens = lens_inputs()
    x, kn, v = (to_backend(backend, lens[name], "float64") for name in ("x", "k", "v"))
    group = peers.numpy_forward(x, kn, v) if backend == "numpy" else peers.torch_subsets(x, kn, v, compiled=False)
    fn = {i.name: i for i in group.impls}[impl].calls[sub]
    out = fn()  # warm-up: lazy initialisation, thread pools
    del out
    gc.collect()
    if backend == "numpy":
        import tracemalloc

        tracemalloc.start()
        out = fn()
        print(json.dumps({"tracemalloc_peak": tracemalloc.get_traced_memory()[1]}))
        tracemalloc.stop()
        return
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    before = _vm("VmRSS")
    out = fn()  # kept alive until the mark is read: outputs count, as for every impl
    print(json.dumps({"peak_extra": _vm("VmHWM") - before}))
    del out


def _row(workload: str, backend: str, dtype: str, mode: str, n: int, k: int, impl: str, t: Any) -> dict[str, Any]:
    row = {"workload": workload, "backend": backend, "dtype": dtype, "mode": mode, "N": n, "K": k, "impl": impl}
    if isinstance(t, str):
        row["error"] = t
    else:
        row["seconds"] = t
    return row


def _progress(*key: Any) -> None:
    *head, res = key
    parts = [f"{k}={v * 1e3:.2f}ms" if not isinstance(v, str) else f"{k}: {v}" for k, v in res.items()]
    print(f"  [{' '.join(map(str, head))}] " + ", ".join(parts), flush=True)


# ------------------------------------------------------------------ scaling
SCALING_PEER = {"numpy": "numpy.interp", "jax": "jnp.interp", "torch": "plain"}
SCALING_MODES = {"numpy": ("fwd",), "jax": ("fwd", "fwd+bwd"), "torch": ("fwd", "fwd+bwd")}


def sweep_points(max_exp: int) -> list[tuple[str, int, int]]:
    sizes = [10**e for e in range(3, max_exp + 1)]
    pts = [("N=K", s, s) for s in sizes]
    pts += [("K sweep, N=1e4", 10**4, s) for s in sizes]
    pts += [("N sweep, K=1e5", s, 10**5) for s in sizes]
    return pts


def run_scaling(args: argparse.Namespace, log: list[dict[str, Any]]) -> None:
    for sweep, n, k in sweep_points(args.max_exp):
        arrs = random_inputs(n, k)
        for backend in args.backends:
            keep = {SCALING_PEER[backend], "knotsafe"}
            impls = [i for i in make_impls(backend, "interp", arrs, "float64") if i.name in keep]
            for mode in SCALING_MODES[backend]:
                res = time_case(impls, mode, repeats=args.repeats, budget=args.scaling_budget)
                for name, t in res.items():
                    row = _row("scaling", backend, "float64", mode, n, k, name, t)
                    row["sweep"] = sweep
                    log.append(row)
                _progress(sweep, f"N={n:.0e} K={k:.0e}", backend, mode, res)
            del impls
            gc.collect()


# ------------------------------------------------------------------ memory
def _vm(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def _nbytes(a: Any) -> int:
    if isinstance(a, (tuple, list)):
        return sum(_nbytes(b) for b in a if b is not None)
    if hasattr(a, "element_size"):
        return int(a.numel() * a.element_size())
    return int(a.nbytes)


def memory_child(backend: str, impl_name: str, mode: str, n: int, k: int, dtype: str) -> None:
    """Runs in a fresh process: print the peak extra bytes of one call as JSON."""
    arrs = random_inputs(n, k)
    impls = {i.name: i for i in make_impls(backend, "interp", arrs, dtype)}
    fn = impls[impl_name].calls[mode]
    assert fn is not None
    out = fn()  # warm-up: compilation, lazy initialisation, thread pools
    del out
    gc.collect()
    in_bytes = sum(np.dtype(dtype).itemsize * arrs[name].size for name in ("x", "k", "v"))
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    before = _vm("VmRSS")
    out = fn()
    peak = _vm("VmHWM") - before
    out_bytes = _nbytes(out) + (np.dtype(dtype).itemsize * k if mode == "fwd+bwd" else 0)  # grads + value
    report = {"peak_extra": peak, "io_bytes": in_bytes + out_bytes}
    if backend == "numpy":
        import tracemalloc

        del out
        gc.collect()
        tracemalloc.start()
        out = fn()
        report["tracemalloc_peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    print(json.dumps(report))


MEMORY_IMPLS = {
    "numpy": (("numpy.interp", ("fwd",)), ("knotsafe", ("fwd",))),
    "jax": (("jnp.interp", peers.MODES), ("plain", peers.MODES), ("jitter", peers.MODES), ("knotsafe", peers.MODES)),
    "torch": (("plain", peers.MODES), ("jitter", peers.MODES), ("torchinterp1d", ("fwd",)), ("knotsafe", peers.MODES)),
}


def run_memory(args: argparse.Namespace, log: list[dict[str, Any]]) -> None:
    n, k = 15_380, args.memory_k
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    for backend in args.backends:
        for impl, modes in MEMORY_IMPLS[backend]:
            if args.quick and impl not in ("knotsafe", SCALING_PEER[backend]):
                continue
            for mode in modes:
                cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child"]
                cmd += [backend, impl, mode, str(n), str(k), "float64"]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
                row = _row("memory", backend, "float64", mode, n, k, impl, 0.0)
                del row["seconds"]
                if proc.returncode != 0:
                    row["error"] = "error: " + (proc.stderr.strip().splitlines() or ["?"])[-1][:100]
                else:
                    row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
                log.append(row)
                shown = row.get("error") or f"{row['peak_extra'] / row['io_bytes']:.2f} x io"
                print(f"  [memory {backend} {mode} K={k:.0e}] {impl}: {shown}", flush=True)


# ------------------------------------------------------------------ report
def ratio_table(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in log:
        if r["workload"] in ("interp", "transform"):
            key = (r["workload"], r["backend"], r["dtype"], r["mode"])
            groups.setdefault(key, {})[r["impl"]] = r.get("seconds", r.get("error"))
    for (workload, backend, dtype, mode), res in groups.items():
        ks = res.get("knotsafe")
        for peer, t in res.items():
            if peer == "knotsafe":
                continue
            target = TARGETS.get((backend, mode, peer))
            ok = isinstance(ks, float) and isinstance(t, float)
            ratio = ks / t if ok else None
            rows.append(
                {
                    "workload": workload,
                    "backend": backend,
                    "dtype": dtype,
                    "mode": mode,
                    "peer": peer,
                    "knotsafe_ms": ks * 1e3 if isinstance(ks, float) else None,
                    "peer_ms": t * 1e3 if isinstance(t, float) else t,
                    "ratio": ratio,
                    "target": target,
                    "met": None if target is None or ratio is None else ratio <= target,
                }
            )
    return rows


def markdown(log: list[dict[str, Any]], info: dict[str, Any]) -> str:
    lines = subset_markdown(log)
    if any(r["workload"] in ("interp", "transform") for r in log):
        lines += [
            "| workload | backend | dtype | mode | peer | peer ms | knotsafe ms | ratio | target |",
            "|" + "---|" * 9,
        ]
    for r in ratio_table(log):
        peer_ms = f"{r['peer_ms']:.2f}" if isinstance(r["peer_ms"], float) else str(r["peer_ms"])
        ks_ms = f"{r['knotsafe_ms']:.2f}" if r["knotsafe_ms"] is not None else "-"
        ratio = f"**{r['ratio']:.2f}**" if r["ratio"] is not None else "-"
        target = "" if r["target"] is None else f"<= {r['target']:.2f} " + ("met" if r["met"] else "MISSED")
        lines.append(
            f"| {r['workload']} | {r['backend']} | {r['dtype']} | {r['mode']} | {r['peer']} | {peer_ms} | {ks_ms} "
            f"| {ratio} | {target} |"
        )
    mem = [r for r in log if r["workload"] == "memory"]
    if mem:
        lines += ["", "| memory (K, N) | backend | mode | impl | peak extra MiB | inputs+outputs MiB | ratio |"]
        lines.append("|" + "---|" * 7)
        for r in mem:
            if "error" in r:
                lines.append(
                    f"| {r['K']:.0e}, {r['N']} | {r['backend']} | {r['mode']} | {r['impl']} | {r['error']} |||"
                )
                continue
            extra = f"{r['peak_extra'] / 2**20:.1f}"
            if "tracemalloc_peak" in r:
                extra += f" (tracemalloc {r['tracemalloc_peak'] / 2**20:.1f})"
            lines.append(
                f"| {r['K']:.0e}, {r['N']} | {r['backend']} | {r['mode']} | {r['impl']} | {extra} "
                f"| {r['io_bytes'] / 2**20:.1f} | {r['peak_extra'] / r['io_bytes']:.2f} |"
            )
    ss = [r for r in log if r["workload"] == "searchsorted"]
    if ss:
        lines += ["", "| jnp.searchsorted method | dtype | ms |", "|---|---|---|"]
        for r in ss:
            lines.append(f"| {r['impl']} | {r['dtype']} | {r.get('seconds', 0) * 1e3:.2f} {r.get('error', '')} |")
    lines += kernel_bench.markdown_lines(log)
    lines += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items())]
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(terse=True)}
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    info["cores"] = os.cpu_count()
    with contextlib.suppress(ValueError, OSError):
        info["memory_GiB"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    import knotsafe

    info["knotsafe"] = knotsafe.__version__
    info["numpy"] = np.__version__
    for mod in ("jax", "torch", "torchinterp1d"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", None) or _dist_version(mod)
        except ImportError:
            info[mod] = "not installed"
    if "torch" in sys.modules:
        info["torch_threads"] = sys.modules["torch"].get_num_threads()
    return info


def _dist_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def plot(log: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in log if r["workload"] == "scaling" and "seconds" in r]
    sweeps = list(dict.fromkeys(r["sweep"] for r in rows))
    fig, axes = plt.subplots(1, len(sweeps), figsize=(5.2 * len(sweeps), 4.6), squeeze=False)
    colors = {"numpy": "C0", "jax": "C1", "torch": "C2"}
    shown = {"numpy": "fwd", "jax": "fwd+bwd", "torch": "fwd+bwd"}
    for ax, sweep in zip(axes[0], sweeps, strict=True):
        sel = [r for r in rows if r["sweep"] == sweep]
        xkey = "K" if sweep.startswith("K") else "N"
        for backend, mode in shown.items():
            for impl, style in ((SCALING_PEER[backend], "--"), ("knotsafe", "-")):
                pts = sorted(
                    (r[xkey], r["seconds"])
                    for r in sel
                    if r["backend"] == backend and r["mode"] == mode and r["impl"] == impl
                )
                if pts:
                    xs, ys = zip(*pts, strict=True)
                    ax.loglog(xs, ys, style, marker="o", ms=3, color=colors[backend], label=f"{backend} {impl} {mode}")
        ref = sorted(
            (r["N"], r["K"], r["seconds"])
            for r in sel
            if r["backend"] == "numpy" and r["impl"] == "knotsafe" and r["mode"] == "fwd"
        )
        if ref:
            nn = np.array([p[0] for p in ref], dtype=float)
            kk = np.array([p[1] for p in ref], dtype=float)
            model = (nn + kk) * np.log2(np.maximum(nn, 2))
            scale = ref[-1][2] / model[-1]
            ax.loglog(nn if xkey == "N" else kk, model * scale, ":", color="grey", label="∝ (N + K) log N")
        ax.set_xlabel(xkey if sweep != "N=K" else "N = K")
        ax.set_ylabel("median seconds")
        ax.set_title(sweep + " (float64)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------ main
def run_kernel(args: argparse.Namespace, log: list[dict[str, Any]]) -> None:
    """The kernel transform against the exact sum (rows from ``benchmarks/kernel.py``)."""
    log += kernel_bench.run(args.backends, 1 if args.quick else 2, 0.002, 1 if args.quick else 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few repeats, sweep to 1e5, K=1e5 memory")
    parser.add_argument("--repeats", type=int, default=None, help="rounds per case (default 25, quick 5)")
    parser.add_argument(
        "--max-exp",
        type=int,
        default=None,
        help="largest sweep size 10**e (default 6; 7 takes minutes per call)",
    )
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated subset of numpy,jax,torch")
    parser.add_argument(
        "--skip", default="", help="comma-separated parts to skip: subsets,cases,kernel,scaling,memory,plot"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder for results.json / results.md")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "bench_scaling.png")
    parser.add_argument("--memory-child", nargs=6, help=argparse.SUPPRESS)
    parser.add_argument("--subset-memory-child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--subset-repeats", type=int, default=None, help="rounds per subset row (default 40, quick 8)")
    args = parser.parse_args(argv)
    if args.subset_memory_child:
        b, impl, sub = args.subset_memory_child
        if b == "jax":
            import jax

            jax.config.update("jax_enable_x64", True)
        subset_memory_child(b, impl, sub)
        return 0
    if args.memory_child:
        b, impl, mode, n, k, dtype = args.memory_child
        memory_child(b, impl, mode, int(n), int(k), dtype)
        return 0
    args.backends = [b for b in args.backends.split(",") if b]
    args.repeats = args.repeats or (5 if args.quick else 25)
    args.subset_repeats = args.subset_repeats or (8 if args.quick else 40)
    args.max_exp = args.max_exp or (5 if args.quick else 6)
    args.scaling_budget = 0.5 if args.quick else 3.0
    args.memory_k = 10**5 if args.quick else 10**6
    skip = set(args.skip.split(","))
    for backend in args.backends:
        if backend == "jax":
            import jax

            jax.config.update("jax_enable_x64", True)
    info = machine_info()
    print("knotsafe benchmarks -- " + ", ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    log: list[dict[str, Any]] = []
    start = time.perf_counter()
    parts = (
        ("subsets", "per differentiated subset (lens grid, float64; ms = median (min)):", run_subsets),
        ("cases", "realistic workload (lens grid, N=15380 knots, K=246080 queries):", run_cases),
        ("kernel", "kernel transform (lens size, against the exact sum; benchmarks/kernel.py):", run_kernel),
        ("scaling", "scaling sweep (float64, random knots with 10% duplicates):", run_scaling),
        ("memory", "peak memory (fresh subprocess per row):", run_memory),
    )
    for name, title, run_part in parts:
        if name not in skip:
            print(title, flush=True)
            run_part(args, log)
    info["bench_seconds"] = round(time.perf_counter() - start, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"machine": info, "rows": log}, indent=1))
    table = markdown(log, info)
    (args.out / "results.md").write_text(table + "\n")
    print()
    print(table)
    if "plot" not in skip and any(r["workload"] == "scaling" for r in log):
        plot(log, args.plot)
        print(f"\nplot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
