"""Mutation testing, one source module at a time (``nox -s mutation`` calls this; it runs standalone too).

Usage, from anywhere, with an interpreter that has mutmut 3 and the backends the runs name::

    python tools/mutation/run.py                 # every run in RUNS
    python tools/mutation/run.py rule hooks_jax  # some of them ("hooks_jax" is both JAX runs)

Each run mutates one module and runs only the tests that exercise it, on the backends that reach it,
with ``-x`` (a mutant is killed at its first failing test), then applies the hand mutants of that
module (``hand_mutants.py``) to the same copy.  A run works in ``build/mutation/<run>/``: a copy of
the working tree (``tree_copy.copy_tree``: tracked and untracked, not ignored, files as they are on
disk) with a ``pyproject.toml`` whose ``[tool.mutmut]`` names that module and those tests.  mutmut
mutates a further copy of that, in ``build/mutation/<run>/mutants/``, which it keeps between calls,
so a rerun retests only what changed.  The working tree is only read.

Environment: ``MUTATION_MAX_CHILDREN`` (mutmut's worker processes, default 2),
``MUTATION_REPORT_ONLY=1`` (re-read the last results and rerun the hand mutants),
``MUTATION_RERUN_SURVIVORS=1`` (retest only the mutants the last run left alive: after tests were
added for them).  Every mutant's status and each survivor's diff go to ``build/mutation/report.txt``;
``docs/mutation.md`` explains the survivors.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import hand_mutants  # run as a script: its folder, tools/mutation/, is on sys.path
import tree_copy

# ---------------------------------------------------------------------------------------------------
# What is mutated: one line per module.  A module that moves is a change of its line here (and of the
# cache modules at the top of plugin.py for the registry and the JAX hooks).
MODULES: dict[str, str] = {
    "rule": "src/knotsafe/_lib/rule.py",
    "hooks": "src/knotsafe/_lib/backends/hooks.py",
    "hooks_numpy": "src/knotsafe/_lib/backends/numpy_hooks.py",
    "hooks_dask": "src/knotsafe/_lib/backends/dask_hooks.py",
    "hooks_torch": "src/knotsafe/_lib/backends/torch_hooks.py",
    "hooks_jax": "src/knotsafe/_lib/backends/jax_hooks.py",
    "ranks": "src/knotsafe/_lib/ranks.py",
    "checks": "src/knotsafe/_lib/validation/checks.py",
}
# Where the backend table lives (for its JAX cache variables).
BACKEND_TABLE = "tests/backend_table.py"
# ---------------------------------------------------------------------------------------------------

ROOT = tree_copy.ROOT
OUT = ROOT / "build" / "mutation"


def _backend_table() -> object:
    spec = importlib.util.spec_from_file_location("knotsafe_backend_table", ROOT / BACKEND_TABLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # the table's dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# JAX compiles every operation again in each mutant's process (the plugin clears knotsafe's caches):
# a persistent cache keyed on the program serves the programs a mutant leaves unchanged.
_JAX_CACHE: dict[str, str] = _backend_table().jax_cache_env(OUT / "jax-cache")  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Run:
    """One mutmut run: a module of MODULES, the pytest arguments that select its tests, the backends."""

    module: str
    backends: str
    tests: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    #: Only these mutants (fnmatch patterns of mutmut's names); empty: all of the module's.
    mutants: tuple[str, ...] = ()


# The tests (with -x, stop at the first failure) and backends that reach each module.  A file is listed
# only if it calls the module's code on the backends named; hypothesis-heavy files are left out.
_SECOND = (
    "tests/test_second_order.py::test_duplicate_bins_have_zero_finite_second_derivatives",
    "tests/test_second_order.py::test_mixed_x_values_second_derivative",
)
_KILLS = "tests/test_mutation_kills.py"
RUNS: dict[str, Run] = {
    # The rule's code is the same on every backend; PyTorch reaches all of it (values, partials, both
    # directions of the Function, and the generic stop_gradient path through test_contract.py).  The
    # second-order tests kill the mutants that change only the partials' own derivatives.
    "rule": Run(
        "rule",
        "torch",
        (
            "tests/test_point_classes.py",
            "tests/test_contract.py",
            "tests/test_rule_edges.py",
            _KILLS,
            "tests/test_second_order.py::test_hessian_of_issue_example_matches_contract_and_central_differences",
            *_SECOND,
        ),
    ),
    # The standard-only hooks: array-api-strict uses every one of them; PyTorch reaches
    # generic_linearize through the generic stop_gradient path of test_contract.py.
    "hooks": Run("hooks", "torch,array_api_strict", ("tests/test_contract.py", "tests/test_backends.py", _KILLS)),
    # The NumPy hooks' own tests (name, forward bitwise, scatter-add dtypes) and the erf hook's.
    "hooks_numpy": Run(
        "hooks_numpy",
        "numpy",
        (
            "tests/test_contract_edges.py",
            _KILLS,
            "tests/test_contract.py",
            "tests/test_backends.py",
            "tests/test_interp.py",
        ),
    ),
    # The Dask hooks only change the task graph, never a value: test_dask.py bounds the graph sizes
    # (a gather or scan on a chunked array multiplies the tasks) and compares with NumPy bitwise.
    "hooks_dask": Run("hooks_dask", "dask", ("tests/test_dask.py", "tests/test_backends.py")),
    "hooks_torch": Run(
        "hooks_torch",
        "torch",
        (
            _KILLS,
            "tests/test_point_classes.py",
            "tests/test_contract.py",
            "tests/test_autodiff_modes.py",
            "tests/test_backends.py",
            *_SECOND,
        ),
    ),
    # JAX: every test recompiles (the plugin clears the compiled-function cache), so the selection is
    # the JAX-specific tests plus one point-class case per knot_grad policy, the jit test and the
    # second derivatives.  float64 (x64) reaches every branch the float32 run does; the x32 run
    # checks the hooks where JAX computes in float32.
    "hooks_jax_x64": Run(
        "hooks_jax",
        "jax",
        (
            _KILLS,
            "tests/test_point_classes.py::test_every_point_class[jax-float64-left_right-exact]",
            "tests/test_point_classes.py::test_every_point_class[jax-float64-no_left_right-stop]",
            "tests/test_autodiff_modes.py::test_jax_jit_gives_identical_values_and_gradients",
            *_SECOND,
        ),
        {"JAX_ENABLE_X64": "1", **_JAX_CACHE},
    ),
    "hooks_jax_x32": Run(
        "hooks_jax",
        "jax",
        (
            _KILLS,
            "tests/test_point_classes.py::test_every_point_class[jax-float32-left_right-exact]",
            "tests/test_autodiff_modes.py::test_jax_jit_gives_identical_values_and_gradients",
        ),
        {"JAX_ENABLE_X64": "0", **_JAX_CACHE},
    ),
    # The torch.compile branch of the PyTorch hooks (and the hooks only compiled code reads
    # differently: is_concrete, the NaN-retry shortcut) against the compile tests, which the
    # hooks_torch run leaves out for their cost: only these functions' mutants are run.
    "hooks_torch_compile": Run(
        "hooks_torch",
        "torch",
        ("tests/test_torch_compile.py",),
        mutants=(
            "*.x__linearize__mutmut_*",
            "*.x__is_concrete__mutmut_*",
            "*.x__any_nan_reader__mutmut_*",
            "*.x_make_hooks__mutmut_*",
        ),
    ),
    # The transforms' edges (the argument an error names, xp= with Python data, min_gap and knot_grad
    # reaching both transforms, output dtypes) are in test_contract_edges.py.  test_edges.py is left
    # out: any of its tests makes every mutant's pytest collect that whole file (twenty times slower
    # per mutant), so its tie-run and weighted-rank tests were used by hand for the survivors.
    # array-api-strict: its second device and its strict dtypes see mutants NumPy and PyTorch do not.
    "ranks": Run(
        "ranks",
        "numpy,torch,array_api_strict",
        (
            "tests/test_transforms.py",
            "tests/test_contract.py",
            "tests/test_contract_edges.py",
            "tests/test_kernel_cdf.py",
            _KILLS,
        ),
    ),
    # test_edges.py without its slowest tests that check no data (thread imports, bitwise cross-backend
    # ranks, the fixed-order cumulative sum, half precision); its jit tests stay, they are the only ones
    # that reach the traced (unread) verdicts.  The weight, kernel and mesh error tests and
    # array-api-strict (no astype(..., None)) kill the survivors of a run without them.
    "checks": Run(
        "checks",
        "numpy,torch,array_api_strict",
        (
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
        ),
    ),
}


def selection_of(module: str) -> list[str]:
    """The test selection of the first run of ``module`` (a key of MODULES)."""
    return next(list(r.tests) for r in RUNS.values() if r.module == module)


_PLUGIN = "_knotsafe_mutation_plugin"  # the name plugin.py gets in a run's copy (a top-level module there)
_MUTMUT = """
[tool.mutmut]
source_paths = ["src/knotsafe"]
only_mutate = [{module!r}]
pytest_add_cli_args_test_selection = {tests!r}
pytest_add_cli_args = [
    "-p", "no:cacheprovider", "-p", "{plugin}", "-q", "-x", "-W", "ignore::DeprecationWarning"
]
also_copy = {also_copy!r}
# The copy lies inside the repository's build/ folder: git would see the repository, not the copy.
use_git_change_detection = false
# mutmut's timeout is 15x the covering tests' durations plus this: on a machine shared by many
# processes a forked child can wait minutes for a core, which is not a hanging mutant.
timeout_constant = 300.0
# PyTorch and JAX start thread pools; a fork of a process that has them can deadlock, so every
# mutant is forked from a server that has only collected the tests.
process_isolation = "forkserver"
"""


def _check_selection(where: Path, tests: tuple[str, ...]) -> None:
    """Fail before mutmut starts if a test file of the selection is not in the tree (tests refiled)."""
    files = [t.split("::")[0] for t in tests if t.startswith("tests/")]
    missing = [f for f in files if not (where / f).is_file()]
    if missing:
        raise SystemExit(f"the test selection names files that do not exist: {missing}; update RUNS in {__file__}")


def _sandbox(name: str, spec: Run) -> Path:
    where = tree_copy.copy_tree(OUT / name)
    if not (where / MODULES[spec.module]).is_file():
        raise SystemExit(f"{MODULES[spec.module]} does not exist; update MODULES in {__file__}")
    _check_selection(where, spec.tests)
    (where / f"{_PLUGIN}.py").write_text(
        (Path(__file__).parent / "plugin.py").read_text(encoding="utf-8"), encoding="utf-8"
    )
    # mutmut copies src/knotsafe and pyproject.toml into mutants/ itself; everything else the tests
    # read (tests/, docs/, the README, the plugin, ...) is named here.
    also_copy = sorted(e.name for e in where.iterdir() if e.name not in {"src", "pyproject.toml", "mutants"})
    pyproject = (where / "pyproject.toml").read_text(encoding="utf-8")
    # Drop the repository's own [tool.mutmut] table (if any) and write this run's.
    pyproject = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[|\Z)", "", pyproject)
    pyproject += _MUTMUT.format(
        module=MODULES[spec.module], tests=list(spec.tests), plugin=_PLUGIN, also_copy=also_copy
    )
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


def _hand(where: Path, spec: Run, env: dict[str, str]) -> list[str]:
    lines = []
    for m in (m for m in hand_mutants.MUTANTS if m.module == spec.module):
        why_not = hand_mutants.runnable(m, spec.backends, env)
        if why_not:
            lines.append(f"-- hand mutant {m.name}: not run ({why_not})")
            continue
        status, failed = hand_mutants.apply_and_test(where, MODULES[spec.module], m, ["-x", *spec.tests], env)
        if status == "survived" and m.equivalent:
            status = f"survived, equivalent ({m.equivalent})"
        lines.append(f"-- hand mutant {m.name} {status}: {m.old!r} -> {m.new!r} {' '.join(failed[:1])}")
    return lines


def run(name: str, spec: Run, max_children: int) -> str:
    """Run mutmut and the hand mutants for one entry of RUNS; the report's text."""
    where = _sandbox(name, spec)
    env = hand_mutants.copy_env(
        where,
        {
            **os.environ,
            "KNOTSAFE_TEST_BACKENDS": spec.backends,
            # mutmut forks; keep each child single-threaded (PyTorch's pool deadlocks in a forked child).
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            **spec.env,
        },
    )
    hand_mutants.check_imports_copy(where, env)
    patterns = list(spec.mutants)
    start = time.monotonic()
    rerun = bool(os.environ.get("MUTATION_RERUN_SURVIVORS"))
    names = patterns
    if rerun:
        names = [m for m, s in _statuses(where, env).items() if s not in ("killed", "not checked")]
        names = [m for m in names if not patterns or any(fnmatch.fnmatch(m, p) for p in patterns)]
    if not os.environ.get("MUTATION_REPORT_ONLY") and (names or not rerun):
        # mutmut exits non-zero when mutants survive: the statuses below are the result.
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
    extra = " ".join(f"{k}={v}" for k, v in spec.env.items() if not k.startswith("JAX_PERSISTENT"))
    lines = [
        f"== {name}: {MODULES[spec.module]} on {spec.backends} {extra} ({seconds:.0f} s"
        + (f", a rerun of {len(names)} survivors)" if rerun else ")"),
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
    """Run the named entries of RUNS (a key of MODULES names all of its runs); every entry by default."""
    names: list[str] = []
    for arg in argv or list(RUNS):
        matched = [arg] if arg in RUNS else [n for n, r in RUNS.items() if r.module == arg]
        if not matched:
            raise SystemExit(f"unknown run {arg!r}; choose from {list(RUNS)} or a module of {list(MODULES)}")
        names.extend(n for n in matched if n not in names)
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
