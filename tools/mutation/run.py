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


# The tests (with -x, stop at the first failure) and backends that reach each module.  A test is listed
# only if it calls the module's code on the backends named; hypothesis-heavy tests are left out.  The
# groups below are named after what they check, and list tests of the behaviour files.


_in = hand_mutants.test_ids
_SECOND = _in(
    "test_second_order.py",
    "test_duplicate_bins_have_zero_finite_second_derivatives test_mixed_x_values_second_derivative",
)
# The contract's own numbers (hand_mutants.py: the behavioural hand mutants must keep failing them).
_CONTRACT = hand_mutants.CONTRACT_TESTS
# Every point class of the gradient contract, and a single knot.
_POINT_CLASSES = (*_in("test_gradients.py", "test_every_point_class test_single_knot"),)
# The rule's edges: infinite knots, NaN left/right, PyTorch's private APIs missing.
_RULE_EDGES = (
    *_in(
        "test_edge_inputs.py",
        "test_infinite_knot_does_not_make_every_bin_a_duplicate"
        " test_generic_path_forward_values_equal_numpy_for_infinities",
    ),
    *_in("test_interp.py", "test_nan_left_right_reuse_the_compiled_function"),
    *_in("test_gradients.py", "test_torch_private_apis_missing_or_raising_fall_back_to_the_function"),
)
# Forward against reverse mode, jit and vmap.
_AUTODIFF_MODES = (
    *_in(
        "test_gradients.py",
        "test_forward_mode_equals_reverse_mode test_jax_jit_gives_identical_values_and_gradients"
        " test_vmap_gives_per_example_results",
    ),
)
# The public API's edges: the argument an error names, xp= with Python data, min_gap and knot_grad
# reaching both transforms, output dtypes, the NumPy forward bitwise, the hooks' contract, dual numbers.
_API_EDGES = (
    *_in(
        "test_transforms.py",
        "test_weight_errors_name_the_keyword_the_caller_used"
        " test_create_transforms_with_xp_accepts_python_data test_min_gap_reaches_both_transforms"
        " test_knot_grad_stop_reaches_both_transforms"
        " test_transform_outputs_take_the_floating_dtype_of_queries_and_points",
    ),
    *_in("test_backends.py", "test_builtin_hooks_keep_the_hook_contract"),
    *_in("test_interp.py", "test_numpy_forward_is_numpy_interp_bitwise"),
    *_in("test_gradients.py", "test_torch_forward_ad_dual_numbers"),
)
# The tests written for the survivors of earlier runs (docs/mutation.md).
_SURVIVORS = (
    *_in(
        "test_gradients.py",
        "test_forward_mode_with_no_tangent_on_x test_torch_forward_ad_dual_numbers_on_any_inputs"
        " test_torch_outputs_and_gradients_stay_on_the_inputs_device"
        " test_torch_nested_transform_with_constant_inputs_at_the_inner_level"
        " test_partials_tangent_reads_a_missing_tangent_as_zero"
        " test_rule_partials_on_the_strict_standard_namespace test_gap_exactly_at_threshold_is_a_duplicate"
        " test_torch_compile_with_one_input_requiring_a_gradient_in_a_duplicate_bin"
        " test_torch_reverse_mode_for_each_subset_of_inputs_requiring_a_gradient",
    ),
    *_in(
        "test_backends.py",
        "test_builtin_hooks_keep_the_hook_contract"
        " test_torch_backend_registered_with_the_standard_scatter_add"
        " test_generic_scatter_add_keeps_dtype_and_device"
        " test_generic_is_concrete_is_false_only_for_lazy_arrays"
        " test_numpy_erf_without_scipy_is_the_standard_erf",
    ),
    *_in(
        "test_validation.py",
        "test_jax_eager_checks_run_and_traced_checks_are_skipped test_eager_data_checks_raise"
        " test_complex_points_are_a_type_error_naming_points"
        " test_traced_bad_data_makes_every_transform_output_nan",
    ),
    *_in(
        "test_edge_inputs.py",
        "test_bin_to_an_infinite_knot_with_an_infinite_value_is_a_duplicate"
        " test_half_precision_transforms_are_computed_in_float32 test_torch_vmap_keeps_numpy_nan_retries",
    ),
    *_in(
        "test_interp.py",
        "test_left_right_are_rounded_once_to_the_queries_dtype"
        " test_strict_arrays_on_a_non_default_device_with_left_right"
        " test_torch_compile_without_gradients_gives_numpy_interp_values",
    ),
    *_in(
        "test_kernel_density.py",
        "test_kernel_only_arguments_with_the_rank_method_name_the_argument test_kernel_span_ratio_is_checked"
        " test_kernel_span_ratio_below_the_data_span_raises"
        " test_kernel_table_inverse_with_knot_grad_stop_moves_only_with_the_range"
        " test_kernel_table_inverse_with_a_large_min_gap_has_zero_slope",
    ),
    *_in(
        "test_transforms.py",
        "test_inverse_transform_inside_a_run_of_tied_points_follows_the_tie_rule"
        " test_weighted_ranks_are_in_the_points_dtype_and_bitwise_equal_on_numpy_and_torch"
        " test_strict_transforms_on_a_non_default_device"
        " test_queries_of_the_wrong_kind_are_errors_naming_q_or_u"
        " test_transform_outputs_take_the_floating_dtype_of_queries_and_points",
    ),
    *_in(
        "test_complex_period.py",
        "test_torch_complex_values_with_infinite_imaginary_parts_keep_dtype_and_parts"
        " test_torch_complex32_values_with_infinite_imaginary_parts_give_numpys_values",
    ),
)
# torch.compile of code calling knotsafe: the compiled values and gradients equal eager ones.
_TORCH_COMPILE = (
    *_in(
        "test_gradients.py",
        "test_compiled_interp_forward_and_backward_equal_eager"
        " test_compiled_first_call_each_subset_equals_eager"
        " test_torch_func_forward_mode_equals_reverse_mode_in_eager",
    ),
    *_in("test_transforms.py", "test_compiled_create_transforms_equals_eager"),
)
# The kernel method of create_transforms (values, inverses, gradients, arguments) and the erf hooks.
_KERNEL = (
    *_in("test_backends.py", "test_standard_erf_within_a_few_ulp test_builtin_hooks_keep_the_hook_contract"),
    *_in(
        "test_kernel_density.py",
        "test_forward_matches_exact_sum test_forward_beyond_one_span test_float32_within_10_eps"
        " test_float32_many_nodes_within_10_eps test_nan_queries_give_nan test_exact_inverse"
        " test_table_inverse_is_pyautoarrays test_gradients_match_autodiff_of_exact_sum"
        " test_gradients_match_central_differences test_inverse_gradient_is_implicit_derivative"
        " test_jax_jit_vmap_jacobians test_torch_func_jacobians test_bad_arguments_raise"
        " test_traced_points_need_span_ratio test_float32_gradients_finite",
    ),
)
# The edge inputs and the validation layer: one read per input, bad data's messages, traced data,
# complex data, weighted ties, extreme scales, the mesh's index range, half precision, threads.
_EDGES = (
    *_in(
        "test_validation.py",
        "test_mappings_weights_reads_each_input_once test_create_transforms_reads_each_input_once"
        " test_kernel_create_transforms_reads_each_input_once test_kernel_mesh_reads_each_input_once"
        " test_complex_interp_reads_the_knots_once test_non_finite_points_raise_with_count_and_first_row"
        " test_bad_weights_raise_with_count_and_first_row test_under_jit_bad_data_gives_nan_not_a_number"
        " test_complex_input_is_a_type_error_naming_the_argument",
    ),
    *_in(
        "test_transforms.py",
        "test_weighted_ranks_are_a_function_of_the_multiset"
        " test_uniform_weights_are_the_unweighted_staircase_with_ties"
        " test_weighted_ranks_bitwise_equal_across_backends test_fixed_order_cumulative_sum",
    ),
    *_in(
        "test_rectangular.py",
        "test_weighted_mesh_rows_do_not_move_when_tied_points_are_permuted test_mesh_is_scale_invariant"
        " test_mesh_index_range",
    ),
    *_in(
        "test_edge_inputs.py",
        "test_half_precision_values_and_gradients"
        " test_half_precision_narrow_bins_keep_their_values_and_slopes"
        " test_half_precision_transform_gradients_zero_only_on_ties test_half_precision_ranks_do_not_overflow",
    ),
    *_in("test_backends.py", "test_first_use_while_other_threads_import_frameworks"),
)
# interp's values and argument checks, and its gradients on the knot cases.
_INTERP = (
    *_in(
        "test_interp.py",
        "test_forward_matches_numpy_interp test_left_right_and_shape"
        " test_integer_inputs_promote_to_default_float test_scalar_query test_xp_argument_converts_numpy_data"
        " test_two_libraries_raise_type_error_naming_both test_device_is_preserved_on_array_api_strict"
        " test_bad_input_names_the_argument test_python_data_without_xp_is_a_type_error"
        " test_xp_must_be_a_namespace",
    ),
    *_in(
        "test_gradients.py",
        "test_gradients_finite_everywhere test_zero_slope_in_duplicate_bins_and_bounded_elsewhere"
        " test_gradients_match_central_differences test_stop_keeps_x_and_values_gradients"
        " test_min_gap_controls_what_is_a_duplicate test_lens_grid_breaks_plain_interp_but_not_knotsafe",
    ),
)
# The rank transforms: values, weights, arguments, gradients through the lens chain.
_TRANSFORMS = (
    *_in(
        "test_transforms.py",
        "test_transform_matches_numpy_reference test_transform_range_monotone_and_round_trip"
        " test_any_dimension test_uniform_weights_equal_unweighted_exactly test_weighted_ranks_match_reference"
        " test_original_call_shape_with_plain_module test_bad_input_names_the_argument"
        " test_bad_queries_and_options test_nan_queries_give_nan"
        " test_chain_gradient_finite_and_matches_finite_difference test_chain_gradient_finite_in_float32",
    ),
)
# The registry, the built-in hooks and the standard-only defaults.
_BACKENDS = (
    *_in(
        "test_backends.py",
        "test_builtin_hooks_keep_the_hook_contract test_lookup_is_thread_safe"
        " test_import_knotsafe_imports_no_framework test_using_numpy_does_not_import_other_frameworks"
        " test_unregistered_namespace_warns_once_with_identity_hooks test_register_and_unregister_a_backend"
        " test_register_validates_its_arguments test_registered_hooks_override_builtins"
        " test_entry_point_is_loaded_lazily_by_namespace_name"
        " test_generic_linearize_equals_native_custom_derivative",
    ),
)
# Chunked Dask arrays: lazy, bounded task graphs, NumPy's results bitwise.
_DASK = (
    *_in(
        "test_scale_out.py",
        "test_interp_on_chunked_arrays_is_lazy_and_equals_numpy_bitwise"
        " test_interp_float32_within_the_contract_bound"
        " test_create_transforms_on_chunked_points_equal_numpy_bitwise"
        " test_kernel_transform_on_chunked_points_needs_span_ratio_and_is_lazy"
        " test_rectangular_mesh_on_chunked_grids_equals_numpy_bitwise"
        " test_data_checks_are_skipped_on_lazy_arrays_without_computing"
        " test_shape_and_type_checks_still_raise_on_dask test_n_data_cannot_be_inferred_from_lazy_sub_to_data"
        " test_numpy_and_jax_users_never_import_dask",
    ),
)
RUNS: dict[str, Run] = {
    # The rule's code is the same on every backend; PyTorch reaches all of it (values, partials, both
    # directions of the Function, and the generic stop_gradient path of the contract's tests).  The
    # second-order tests kill the mutants that change only the partials' own derivatives.
    "rule": Run(
        "rule",
        "torch",
        (
            *_POINT_CLASSES,
            *_CONTRACT,
            *_RULE_EDGES,
            *_SURVIVORS,
            *_in(
                "test_second_order.py", "test_hessian_of_the_worked_example_matches_its_numbers_and_central_differences"
            ),
            *_SECOND,
        ),
    ),
    # The standard-only hooks: array-api-strict uses every one of them; PyTorch reaches
    # generic_linearize through the generic stop_gradient path of the contract's tests.
    "hooks": Run("hooks", "torch,array_api_strict", (*_CONTRACT, *_BACKENDS, *_SURVIVORS)),
    # The NumPy hooks' own tests (name, forward bitwise, scatter-add dtypes) and the erf hook's.
    "hooks_numpy": Run("hooks_numpy", "numpy", (*_API_EDGES, *_SURVIVORS, *_CONTRACT, *_BACKENDS, *_INTERP)),
    # The Dask hooks only change the task graph, never a value: the Dask tests bound the graph sizes
    # (a gather or scan on a chunked array multiplies the tasks) and compare with NumPy bitwise.
    "hooks_dask": Run("hooks_dask", "dask", (*_DASK, *_BACKENDS)),
    "hooks_torch": Run(
        "hooks_torch", "torch", (*_SURVIVORS, *_POINT_CLASSES, *_CONTRACT, *_AUTODIFF_MODES, *_BACKENDS, *_SECOND)
    ),
    # JAX: every test recompiles (the plugin clears the compiled-function cache), so the selection is
    # the JAX-specific tests plus one point-class case per knot_grad policy, the jit test and the
    # second derivatives.  float64 (x64) reaches every branch the float32 run does; the x32 run
    # checks the hooks where JAX computes in float32.
    "hooks_jax_x64": Run(
        "hooks_jax",
        "jax",
        (
            *_SURVIVORS,
            "tests/test_gradients.py::test_every_point_class[jax-float64-left_right-exact]",
            "tests/test_gradients.py::test_every_point_class[jax-float64-no_left_right-stop]",
            *_in("test_gradients.py", "test_jax_jit_gives_identical_values_and_gradients"),
            *_SECOND,
        ),
        {"JAX_ENABLE_X64": "1", **_JAX_CACHE},
    ),
    "hooks_jax_x32": Run(
        "hooks_jax",
        "jax",
        (
            *_SURVIVORS,
            "tests/test_gradients.py::test_every_point_class[jax-float32-left_right-exact]",
            *_in("test_gradients.py", "test_jax_jit_gives_identical_values_and_gradients"),
        ),
        {"JAX_ENABLE_X64": "0", **_JAX_CACHE},
    ),
    # The torch.compile branch of the PyTorch hooks (and the hooks only compiled code reads
    # differently: is_concrete, the NaN-retry shortcut) against the compile tests, which the
    # hooks_torch run leaves out for their cost: only these functions' mutants are run.
    "hooks_torch_compile": Run(
        "hooks_torch",
        "torch",
        _TORCH_COMPILE,
        mutants=(
            "*.x__linearize__mutmut_*",
            "*.x__is_concrete__mutmut_*",
            "*.x__any_nan_reader__mutmut_*",
            "*.x_make_hooks__mutmut_*",
        ),
    ),
    # The transforms' tests, the public API's edges (the argument an error names, xp= with Python data,
    # min_gap and knot_grad reaching both transforms, output dtypes), the contract's, the kernel
    # method's and the survivors'.  The edge inputs are left out: their hypothesis tests are slow per
    # mutant; their tie-run and weighted-rank tests were used by hand for the survivors.
    # array-api-strict: its second device and its strict dtypes see mutants NumPy and PyTorch do not.
    "ranks": Run(
        "ranks", "numpy,torch,array_api_strict", (*_TRANSFORMS, *_CONTRACT, *_API_EDGES, *_KERNEL, *_SURVIVORS)
    ),
    # The edge inputs without their slowest tests that check no data (thread imports, bitwise
    # cross-backend ranks, the fixed-order cumulative sum, half precision); their jit tests stay, they
    # are the only ones that reach the traced (unread) verdicts.  The weight, kernel and mesh error
    # tests and array-api-strict (no astype(..., None)) kill the survivors of a run without them.
    "checks": Run(
        "checks",
        "numpy,torch,array_api_strict",
        (
            *_in("test_transforms.py", "test_bad_input_names_the_argument test_weighted_ranks_match_reference"),
            *_in("test_kernel_density.py", "test_bad_arguments_raise test_forward_matches_exact_sum"),
            *_in("test_rectangular.py", "test_bad_arguments_raise"),
            *_API_EDGES,
            *_EDGES,
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
