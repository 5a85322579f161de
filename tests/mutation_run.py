"""Mutation testing, one source module at a time (``nox -s mutation`` calls this; it runs standalone too).

Usage, from the repository root, with an interpreter that has mutmut 3 and the backends named below::

    python tests/mutation_run.py                 # every run in RUNS
    python tests/mutation_run.py rule hooks_jax  # some of them

Each run mutates one module and runs only the test files that exercise it, on the backends that
reach it, with ``-x`` (a mutant is killed at its first failing test).  It works in its own folder
``build/mutation/<run>/`` (a copy of ``src/``, ``tests/``, ``conformance/``, ``docs/``, the README and a
``pyproject.toml``
whose ``[tool.mutmut]`` names that module and those tests), so the runs do not share mutmut's
coverage map and a rerun only retests what changed.  Every mutant's status and each survivor's diff
go to ``build/mutation/report.txt``; ``docs/mutation.md`` explains every survivor.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from backend_table import jax_cache_env  # run as a script: its own folder, tests/, is on sys.path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "mutation"

# The test files (with -x, stop at the first failure) and backends that reach each module.  A file is
# listed only if it calls the module's code on the backends named; hypothesis-heavy files are left out.
_SECOND = [
    "tests/test_second_order.py::test_duplicate_bins_have_zero_finite_second_derivatives",
    "tests/test_second_order.py::test_mixed_x_values_second_derivative",
]
_KILLS = "tests/test_mutation_kills.py"
# JAX compiles every operation again in each mutant's process (the plugin clears knotsafe's caches):
# a persistent cache keyed on the program serves the programs a mutant leaves unchanged.
_JAX_CACHE = jax_cache_env(OUT / "jax-cache")
RUNS: dict[str, dict[str, object]] = {
    # The rule's code is the same on every backend; PyTorch reaches all of it (values, partials, both
    # directions of the Function, and the generic stop_gradient path through test_contract.py).
    "rule": {
        "module": "src/knotsafe/_lib/rule.py",
        "backends": "torch",
        # The second-order tests kill the mutants that change only the partials' own derivatives.
        "tests": [
            "tests/test_point_classes.py",
            "tests/test_contract.py",
            "tests/test_rule_edges.py",
            _KILLS,
            "tests/test_second_order.py::test_hessian_of_issue_example_matches_contract_and_central_differences",
            *_SECOND,
        ],
    },
    # The standard-only hooks: array-api-strict uses every one of them; PyTorch reaches
    # generic_linearize through the generic stop_gradient path of test_contract.py.
    "hooks": {
        "module": "src/knotsafe/_lib/backends/hooks.py",
        "backends": "torch,array_api_strict",
        "tests": ["tests/test_contract.py", "tests/test_backends.py", _KILLS],
    },
    # test_contract_edges.py has the NumPy hooks' own tests (name, forward bitwise, scatter-add dtypes);
    # test_mutation_kills.py the erf hook (SciPy's and, without SciPy, the standard one).
    "hooks_numpy": {
        "module": "src/knotsafe/_lib/backends/numpy_hooks.py",
        "backends": "numpy",
        "tests": [
            "tests/test_contract_edges.py",
            _KILLS,
            "tests/test_contract.py",
            "tests/test_backends.py",
            "tests/test_interp.py",
        ],
    },
    # The Dask hooks only change the task graph, never a value: test_dask.py bounds the graph sizes
    # (a gather or scan on a chunked array multiplies the tasks) and compares with NumPy bitwise.
    "hooks_dask": {
        "module": "src/knotsafe/_lib/backends/dask_hooks.py",
        "backends": "dask",
        "tests": ["tests/test_dask.py", "tests/test_backends.py"],
    },
    "hooks_torch": {
        "module": "src/knotsafe/_lib/backends/torch_hooks.py",
        "backends": "torch",
        "tests": [
            _KILLS,
            "tests/test_point_classes.py",
            "tests/test_contract.py",
            "tests/test_autodiff_modes.py",
            "tests/test_backends.py",
            *_SECOND,
        ],
    },
    # JAX: every test recompiles (the plugin clears the compiled-function cache), so the selection is
    # the JAX-specific tests plus one point-class case per knot_grad policy, the jit test and the
    # second derivatives.  float64 (x64) reaches every branch the float32 run does; the x32 run
    # checks the hooks where JAX computes in float32.
    "hooks_jax_x64": {
        "module": "src/knotsafe/_lib/backends/jax_hooks.py",
        "backends": "jax",
        "env": {"JAX_ENABLE_X64": "1", **_JAX_CACHE},
        "tests": [
            _KILLS,
            "tests/test_point_classes.py::test_every_point_class[jax-float64-left_right-exact]",
            "tests/test_point_classes.py::test_every_point_class[jax-float64-no_left_right-stop]",
            "tests/test_autodiff_modes.py::test_jax_jit_gives_identical_values_and_gradients",
            *_SECOND,
        ],
    },
    "hooks_jax_x32": {
        "module": "src/knotsafe/_lib/backends/jax_hooks.py",
        "backends": "jax",
        "env": {"JAX_ENABLE_X64": "0", **_JAX_CACHE},
        "tests": [
            _KILLS,
            "tests/test_point_classes.py::test_every_point_class[jax-float32-left_right-exact]",
            "tests/test_autodiff_modes.py::test_jax_jit_gives_identical_values_and_gradients",
        ],
    },
    # The torch.compile branch of the PyTorch hooks (and the hooks only compiled code reads
    # differently: is_concrete, the NaN-retry shortcut) against the compile tests, which the
    # hooks_torch run leaves out for their cost: only these functions' mutants are run.
    "hooks_torch_compile": {
        "module": "src/knotsafe/_lib/backends/torch_hooks.py",
        "backends": "torch",
        "tests": ["tests/test_torch_compile.py"],
        "mutants": [
            "knotsafe._lib.backends.torch_hooks.x__linearize__mutmut_*",
            "knotsafe._lib.backends.torch_hooks.x__is_concrete__mutmut_*",
            "knotsafe._lib.backends.torch_hooks.x__any_nan_reader__mutmut_*",
            "knotsafe._lib.backends.torch_hooks.x_make_hooks__mutmut_*",
        ],
    },
    # The transforms' edges (the argument an error names, xp= with Python data, min_gap and
    # knot_grad reaching both transforms, output dtypes) are in test_contract_edges.py.  Any test of
    # test_edges.py in the selection makes every mutant's pytest collect that file (about 7 s here:
    # 585 mutants at 5 a minute instead of 100), so its tie-run and weighted-rank tests are used by
    # hand for the survivors (docs/mutation.md).
    "transforms": {
        "module": "src/knotsafe/transforms.py",
        # array-api-strict: its second device and its strict dtypes see mutants NumPy and PyTorch do not.
        "backends": "numpy,torch,array_api_strict",
        "tests": [
            "tests/test_transforms.py",
            "tests/test_contract.py",
            "tests/test_contract_edges.py",
            "tests/test_kernel_cdf.py",  # method="kernel": most survivors of the 27 November run
            _KILLS,  # the tests written for those survivors
        ],
    },
    # test_edges.py without its slowest tests that check no data (about 60 of its 96 s here: thread
    # imports, bitwise cross-backend ranks, the fixed-order cumulative sum, half precision); its
    # jit tests stay, they are the only ones that reach the traced (unread) verdicts.
    # The weight, kernel and mesh error tests and array-api-strict (no astype(..., None)) kill every
    # non-equivalent survivor of the 27 November run (docs/mutation.md); they are fast.
    "checks": {
        "module": "src/knotsafe/_lib/validation/checks.py",
        "backends": "numpy,torch,array_api_strict",
        "tests": [
            "tests/test_transforms.py::test_bad_input_names_the_argument",
            "tests/test_transforms.py::test_weighted_ranks_match_reference",
            "tests/test_kernel_cdf.py::test_bad_arguments_raise",
            "tests/test_kernel_cdf.py::test_forward_matches_exact_sum",
            "tests/test_rectangular.py::test_bad_arguments_raise",
            "tests/test_edge_table.py",
            "tests/test_contract_edges.py",
            "tests/test_edges.py",
            "-k",
            "not threads and not bitwise_equal_across_backends and not fixed_order_cumulative_sum"
            " and not half_precision",
        ],
    },
}

# mutmut does not mutate decorated functions: the JAX custom derivative (`_custom_interp`, under
# functools.lru_cache) is mutated here by hand, each change applied to the run's copy of the source,
# the run's tests run with -x, and the change reverted.  (old, new) pairs; each `old` occurs once.
_JAX_JVP = "return out, p.tangent(x_dot, knots_dot, values_dot)"
_JAX_OUT = "out = interp(x, knots, values, jax.lax.stop_gradient(out))"
HAND: dict[str, list[tuple[str, str]]] = {
    "src/knotsafe/_lib/backends/jax_hooks.py": [
        (_JAX_JVP, "return out, p.tangent(None, knots_dot, values_dot)"),
        (_JAX_JVP, "return out, p.tangent(x_dot, None, values_dot)"),
        (_JAX_JVP, "return out, p.tangent(x_dot, knots_dot, None)"),
        (_JAX_JVP, "return out, p.tangent(x_dot, values_dot, knots_dot)"),
        (_JAX_JVP, "return out, p.tangent(x_dot, knots_dot, values_dot) * 0"),
        (_JAX_OUT, "pass"),
        (_JAX_OUT, "out = interp(x, knots, values, out)"),
        ("return jax.jit(call)", "return call"),
        ("jax.lax.stop_gradient(rule.value(x, knots, values))", "rule.value(x, knots, values)"),
        ("@functools.lru_cache(maxsize=512)", "@functools.lru_cache(maxsize=0)"),
    ],
}

_MUTMUT = """
[tool.mutmut]
source_paths = ["src/knotsafe"]
only_mutate = [{module!r}]
pytest_add_cli_args_test_selection = {tests!r}
pytest_add_cli_args = [
    "-p", "no:cacheprovider", "-p", "tests.mutation_plugin", "-q", "-x", "-W", "ignore::DeprecationWarning"
]
also_copy = ["tests", "conformance", "docs", "README.md"]  # tests/test_edge_table.py reads the last two
use_git_change_detection = false
# mutmut's timeout is 15x the covering tests' durations plus this: on a machine shared by many
# processes a forked child can wait minutes for a core, which is not a hanging mutant.
timeout_constant = 300.0
# PyTorch and JAX start thread pools; a fork of a process that has them can deadlock, so every
# mutant is forked from a server that has only collected the tests.
process_isolation = "forkserver"
"""


def _sandbox(name: str, spec: dict[str, object]) -> Path:
    where = OUT / name
    where.mkdir(parents=True, exist_ok=True)
    for folder in ("src", "tests", "conformance", "docs"):
        if (where / folder).exists():
            shutil.rmtree(where / folder)
        shutil.copytree(ROOT / folder, where / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(ROOT / "README.md", where / "README.md")  # tests/test_edge_table.py reads it too
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    # Drop the repository's own [tool.mutmut] table (if any) and write this run's.
    pyproject = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[|\Z)", "", pyproject)
    pyproject += _MUTMUT.format(module=spec["module"], tests=list(spec["tests"]))  # type: ignore[call-overload]
    (where / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    return where


def _statuses(where: Path, env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+): (.+)$", line)
        if m:
            found[m.group(1)] = m.group(2).strip()
    return found


def _hand(where: Path, spec: dict[str, object], env: dict[str, str]) -> list[str]:
    module = str(spec["module"])
    lines = []
    path = where / module
    original = path.read_text(encoding="utf-8")
    for i, (old, new) in enumerate(HAND.get(module, []), 1):
        assert original.count(old) == 1, (module, old)
        path.write_text(original.replace(old, new), encoding="utf-8")
        try:
            r = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *spec["tests"]],  # type: ignore[misc]
                cwd=where,
                env=env,
                capture_output=True,
                text=True,
            )
        finally:
            path.write_text(original, encoding="utf-8")
        status = "killed" if r.returncode == 1 else "survived" if r.returncode == 0 else f"error rc={r.returncode}"
        first = next((ln for ln in r.stdout.splitlines() if ln.startswith("FAILED")), "")
        lines.append(f"-- hand mutant {i} {status}: {old!r} -> {new!r} {first}")
    return lines


def run(name: str, spec: dict[str, object], max_children: int) -> str:
    where = _sandbox(name, spec)
    env = {
        **os.environ,
        "PYTHONPATH": "src",
        "KNOTSAFE_TEST_BACKENDS": str(spec["backends"]),
        # mutmut forks; keep each child single-threaded (PyTorch's pool deadlocks in a forked child).
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        **spec.get("env", {}),  # type: ignore[dict-item]
    }
    # A run may be restricted to some mutants (fnmatch patterns of mutmut's names).
    patterns = [str(p) for p in spec.get("mutants", [])]  # type: ignore[attr-defined]
    start = time.monotonic()
    # mutmut exits non-zero when mutants survive: the statuses below are the result.
    # MUTATION_REPORT_ONLY=1 re-reads an earlier run's results (and reruns the hand mutants).
    # MUTATION_RERUN_SURVIVORS=1 retests only the mutants an earlier run left alive (after tests were
    # added for them: mutmut keeps every other result, and reruns no mutant it has a result for).
    names = patterns
    if os.environ.get("MUTATION_RERUN_SURVIVORS"):
        names = [m for m, s in _statuses(where, env).items() if s not in ("killed", "not checked")]
        names = [m for m in names if not patterns or any(fnmatch.fnmatch(m, p) for p in patterns)]
    if not os.environ.get("MUTATION_REPORT_ONLY") and (names or not os.environ.get("MUTATION_RERUN_SURVIVORS")):
        subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children), *names],
            cwd=where,
            env=env,
            check=False,
        )
    seconds = time.monotonic() - start
    statuses = _statuses(where, env)
    if patterns:
        statuses = {m: s for m, s in statuses.items() if any(fnmatch.fnmatch(m, p) for p in patterns)}
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    lines = [
        f"== {name}: {spec['module']} on {spec['backends']} {spec.get('env', '')} ({seconds:.0f} s"
        + (f", a rerun of {len(names)} survivors)" if os.environ.get("MUTATION_RERUN_SURVIVORS") else ")"),
        f"   {len(statuses)} mutants: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())),
    ]
    for mutant, status in sorted(statuses.items()):
        if status == "killed":
            continue
        diff = subprocess.run(
            [sys.executable, "-m", "mutmut", "show", mutant], cwd=where, env=env, capture_output=True, text=True
        ).stdout
        lines.append(f"-- {status}: {mutant}")
        lines.extend(
            "   " + ln for ln in diff.splitlines() if ln.startswith(("+", "-")) and not ln.startswith(("+++", "---"))
        )
    lines.extend(_hand(where, spec, env))
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    names = argv or list(RUNS)
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        raise SystemExit(f"unknown runs {unknown}; choose from {list(RUNS)}")
    max_children = int(os.environ.get("MUTATION_MAX_CHILDREN", "2"))
    OUT.mkdir(parents=True, exist_ok=True)
    for name in names:
        text = run(name, RUNS[name], max_children)
        (OUT / f"{name}.txt").write_text(text, encoding="utf-8")
        print(text, flush=True)
    # The report covers every run whose result is on disk (this call's and earlier ones).
    report = "".join((OUT / f"{n}.txt").read_text(encoding="utf-8") for n in RUNS if (OUT / f"{n}.txt").exists())
    (OUT / "report.txt").write_text(report, encoding="utf-8")
    print(f"report: {OUT / 'report.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
