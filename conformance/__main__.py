"""Run the conformance suite and print (and write) the conformance table.

    python -m conformance                      # every built-in backend (+ the bundled plugin, if installed)
    python -m conformance --backend some.xp    # a third-party namespace registered via knotsafe.backends

Backends run in pytest subprocesses: JAX reads JAX_ENABLE_X64 once, so
``jax`` (x64: float64 and float32) and ``jax-x32`` (float32 only) need
separate processes; JAX and PyTorch share one (the cross-framework check).
Exit status 0 only when every cell passes or is not applicable.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conformance._backends import BUILTINS, DEMO_PLUGIN, ISOLATED, available, label_of
from conformance._record import Recorder, render

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_TABLE = ROOT / "build" / "conformance" / "conformance.md"  # ignored: running never edits tracked files
DOCS_TABLE = ROOT / "docs" / "conformance.md"
X64_GROUP = ("jax",)  # the slowest backend gets its own process; it also measures the JAX-PyTorch check


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m conformance", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--backend",
        action="append",
        default=[],
        metavar="SPEC",
        help="a built-in backend (" + ", ".join(BUILTINS) + ") or a namespace module name; repeatable, comma-separated",
    )
    p.add_argument(
        "--output",
        default=None,
        help=f"write the table here ('-' for nowhere); default {DEFAULT_TABLE.relative_to(ROOT)} "
        "for the default backends, nowhere with --backend",
    )
    p.add_argument(
        "--write-docs",
        action="store_true",
        help=f"also copy the table to {DOCS_TABLE.relative_to(ROOT)} (tracked)",
    )
    p.add_argument("--fuzz-examples", type=int, default=12, help="hypothesis examples per fuzz test (default 12)")
    p.add_argument("--fuzz-random", action="store_true", help="random hypothesis seeds instead of the fixed one")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="parallel pytest processes")
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    return p.parse_args(argv)


def _groups(specs: list[str]) -> list[tuple[bool, list[str]]]:
    """(JAX_ENABLE_X64, specs) per pytest process."""
    x64 = [s for s in specs if s in X64_GROUP]
    rest = [s for s in specs if s not in X64_GROUP and s not in ISOLATED]
    groups = []
    if x64:
        groups.append((True, x64))
    if rest:
        groups.append(("jax-x32" not in rest, rest))
    groups += [(True, [s]) for s in specs if s in ISOLATED]
    return groups


def _pytest_cmd(specs: list[str], json_path: Path, args: argparse.Namespace) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(HERE),
        "-q",
        "-p",
        "no:cacheprovider",
        "-rfE",
        "--tb=line",
        "--durations=8",
        f"--rootdir={ROOT}",
        f"--conformance-backends={','.join(specs)}",
        f"--conformance-json={json_path}",
        f"--fuzz-examples={args.fuzz_examples}",
    ]
    if args.fuzz_random:
        cmd.append("--fuzz-random")
    return cmd + list(args.pytest_args)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    specs = [s.strip() for raw in args.backend for s in raw.split(",") if s.strip()]
    default_run = not specs
    if default_run:
        specs = list(BUILTINS)
        if available(DEMO_PLUGIN) is None:
            specs.append(DEMO_PLUGIN)
        else:
            print(f"note: {DEMO_PLUGIN} is not installed (pip install ./conformance/plugin); its column is left out")
    output = args.output if args.output is not None else (str(DEFAULT_TABLE) if default_run else "-")
    missing = {s: r for s in specs if (r := available(s)) is not None}
    if missing and not default_run:
        # A backend asked for by name must run: an all-n/a column would pass by accident.
        for s, r in missing.items():
            print(f"error: --backend {s}: {r}", file=sys.stderr)
        return 2
    for s, r in missing.items():
        print(f"note: {label_of(s)}: {r}; its cells are n/a")

    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="conformance-") as tmp:
        procs = []
        pending = list(enumerate(_groups(specs)))
        running: list[tuple[subprocess.Popen[bytes], Path, Path, list[str], bool, float]] = []
        while pending or running:
            while pending and len(running) < max(1, args.jobs):
                i, (x64, group) = pending.pop(0)
                json_path, log_path = Path(tmp) / f"cells{i}.json", Path(tmp) / f"log{i}.txt"
                env = dict(os.environ, JAX_ENABLE_X64="1" if x64 else "0")
                if args.jobs > 1:
                    env.setdefault("OMP_NUM_THREADS", "1")
                log = log_path.open("wb")
                proc = subprocess.Popen(
                    _pytest_cmd(group, json_path, args), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
                )
                running.append((proc, json_path, log_path, group, x64, time.monotonic()))
            time.sleep(0.2)
            for item in list(running):
                proc, json_path, log_path, group, x64, t0 = item
                if proc.poll() is None:
                    continue
                running.remove(item)
                procs.append((json_path, proc.returncode))
                names = ", ".join(label_of(s) for s in group)
                took = time.monotonic() - t0
                print(f"==== pytest [{names}] (JAX_ENABLE_X64={int(x64)}): exit {proc.returncode} in {took:.0f} s ====")
                sys.stdout.write(log_path.read_text(encoding="utf-8", errors="replace"))
                sys.stdout.flush()
        jsons = [p for p, _ in procs if p.exists()]
        crashed = [rc for p, rc in procs if not p.exists()]
        rec = Recorder.load(jsons)
    elapsed = time.monotonic() - start

    labels = [label_of(s) for s in specs]
    header = (
        "## knotsafe backend conformance\n\n"
        "Generated by `python -m conformance` (`nox -s conformance`); properties down, backends across. "
        "Third-party namespaces: `python -m conformance --backend some.module`.\n\n"
        "Notes: on JAX the Jacobians (zero slope, bounds, analytic, forward = reverse) are measured on "
        "jax.jit-compiled code, values and sum-gradients eagerly; the jit row compares the two. "
        "Fuzz data are normal numbers: XLA on CPU flushes subnormals to zero."
    )
    table, ok = render(rec, labels, header)
    print()
    print(table)
    print(f"conformance: {'PASS' if ok and not crashed else 'FAIL'} in {elapsed:.0f} s")
    if output != "-":
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(table, encoding="utf-8")
        print(f"table written to {output}")
    if args.write_docs:
        DOCS_TABLE.write_text(table, encoding="utf-8")
        print(f"table copied to {DOCS_TABLE.relative_to(ROOT)}")
    return 0 if ok and not crashed else 1


if __name__ == "__main__":
    sys.exit(main())
