"""Hand-written mutants: bugs mutmut does not write, each put into a scratch copy of the tree and tested there.

Two kinds.  Behavioural bugs that once passed every unit test (``left`` ignored without ``right``, the
last value's weight above the range, the slope at the last knot, the duplicate threshold's factor,
the weight normalisation of the transforms cut from the gradient, ranks ``i/N``): the ordinary tests
must keep failing on each.  And the JAX custom derivative, which mutmut skips because it is decorated.

Usage, from anywhere, with an interpreter that has the backends the mutants need::

    KNOTSAFE_TEST_BACKENDS=numpy,torch python tools/mutation/hand_mutants.py             # every mutant
    python tools/mutation/hand_mutants.py --only factor_1,ranks_i_over_N                   # some of them
    python tools/mutation/hand_mutants.py --only factor_1 -- tests/test_gradients.py -k threshold

Without pytest arguments each mutant runs its own tests (``HandMutant.tests``; empty: the test selection
of its module's first run in ``run.RUNS``).  It prints every failing test, and exits non-zero when a
mutant that is not marked equivalent survives.  The working tree is only read: the mutants go into a
temporary copy (``tree_copy.copy_tree``), uncommitted edits included, which is deleted afterwards.
``tools/mutation/run.py`` applies the same mutants to each run's copy, with that run's tests.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import tree_copy  # run as a script: its folder, tools/mutation/, is on sys.path


@dataclass(frozen=True)
class HandMutant:
    """One hand-written change: ``old`` (which occurs once in the module) becomes ``new``."""

    name: str
    #: The key of the mutated module in ``run.MODULES``.
    module: str
    old: str
    new: str
    #: The ordinary tests that kill it (pytest arguments); empty: the selection of its module's run.
    tests: tuple[str, ...] = ()
    #: Backends that can see it (one of them must be selected), and whether it needs JAX in float64.
    needs: tuple[str, ...] = ("torch", "jax", "array_api_strict")
    needs_x64: bool = False
    #: Why no test can see it, for the mutants that are expected to survive.
    equivalent: str = ""


def test_ids(file: str, names: str) -> tuple[str, ...]:
    """The node ids of the named tests (separated by whitespace) of one file of tests/."""
    return tuple(f"tests/{file}::{name}" for name in names.split())


#: The tests of the contract's own numbers (left/right, the partials at the knots, the duplicate
#: threshold, the ranks and the weight gradients, infinite values, the generic stop_gradient path):
#: the behavioural hand mutants must keep failing them.  ``run.py`` selects them too.
CONTRACT_TESTS = (
    *test_ids(
        "test_interp.py",
        "test_left_right_forward_values test_left_right_under_jit"
        " test_standard_forward_raises_no_floating_point_errors",
    ),
    *test_ids(
        "test_gradients.py",
        "test_left_right_gradients test_dvalues_with_right_set_gives_no_weight_above_range"
        " test_derivative_on_first_interior_and_last_knot test_duplicate_threshold_is_eight_eps_max_abs_knot"
        " test_gap_exactly_at_threshold_is_a_duplicate",
    ),
    *test_ids(
        "test_transforms.py",
        "test_create_transforms_values_against_sort_and_numpy_interp"
        " test_create_transforms_gradient_wrt_weights test_weight_gradient_of_four_points_worked_by_hand",
    ),
    *test_ids("test_rectangular.py", "test_mesh_gradient_wrt_mesh_weight_map"),
    *test_ids("test_edge_inputs.py", "test_infinite_values_follow_numpy_interp"),
    *test_ids("test_backends.py", "test_generic_stop_gradient_path"),
)
_CONTRACT = CONTRACT_TESTS
_JVP = "return out, p.tangent(x_dot, knots_dot, values_dot)"
_OUT = "out = interp(x, knots, values, jax.lax.stop_gradient(out))"
_JAX = ("jax",)
_CUT = "the custom rule never reads the tangent of its fourth argument, so cutting it changes nothing"

MUTANTS: tuple[HandMutant, ...] = (
    HandMutant(
        "left_needs_right",
        "rule",
        "lo = values[0] if self.left is None else",
        "lo = values[0] if (self.left is None or self.right is None) else",
        _CONTRACT,
    ),
    # Above the range (not inside, d0 = x - k0 >= 0; NaN queries compare False) the last value keeps
    # weight 1 whether or not `right` is given.
    HandMutant(
        "dvalues_right",
        "rule",
        "a1 = xp.where(inside, w, xp.astype(fwd.at_end, w.dtype))",
        "a1 = xp.where(inside, w, xp.astype(~inside & (fwd.d0 >= 0), w.dtype))",
        _CONTRACT,
    ),
    HandMutant(
        "dx_last_knot",
        "rule",
        "inside = (x >= knots[0]) & (x < knots[-1])",
        "inside = (x >= knots[0]) & (x <= knots[-1])",
        _CONTRACT,
    ),
    HandMutant("factor_1e4", "rule", "DUPLICATE_EPS_FACTOR = 8.0", "DUPLICATE_EPS_FACTOR = 1e4", _CONTRACT),
    HandMutant("factor_64", "rule", "DUPLICATE_EPS_FACTOR = 8.0", "DUPLICATE_EPS_FACTOR = 64.0", _CONTRACT),
    HandMutant("factor_1e3", "rule", "DUPLICATE_EPS_FACTOR = 8.0", "DUPLICATE_EPS_FACTOR = 1e3", _CONTRACT),
    HandMutant("factor_1", "rule", "DUPLICATE_EPS_FACTOR = 8.0", "DUPLICATE_EPS_FACTOR = 1.0", _CONTRACT),
    HandMutant(
        "stop_gradient_total",
        "ranks",
        "    total = cum[-1]\n",
        "    from knotsafe.backends import hooks_for\n\n    total = hooks_for(xp).stop_gradient(cum[-1])\n",
        _CONTRACT,
    ),
    HandMutant(
        "ranks_i_over_N",
        "ranks",
        "xp.full_like(positions, n + 1)",
        "xp.full_like(positions, n)",
        _CONTRACT,
        needs=("numpy", "torch", "jax", "array_api_strict", "dask"),
    ),
    HandMutant(
        "weighted_ranks_no_N_over_N1",
        "ranks",
        "_divide(xp, cum_w, total + _divide(xp, total, xp.full_like(total, n)))",
        "_divide(xp, cum_w, total)",
        _CONTRACT,
        needs=("numpy", "torch", "jax", "array_api_strict", "dask"),
    ),
    # The JAX custom derivative (functools.lru_cache-decorated, so mutmut leaves it alone).
    HandMutant(
        "jvp_x_tangent_dropped", "hooks_jax", _JVP, "return out, p.tangent(None, knots_dot, values_dot)", needs=_JAX
    ),
    HandMutant(
        "jvp_knots_tangent_dropped", "hooks_jax", _JVP, "return out, p.tangent(x_dot, None, values_dot)", needs=_JAX
    ),
    HandMutant(
        "jvp_values_tangent_dropped", "hooks_jax", _JVP, "return out, p.tangent(x_dot, knots_dot, None)", needs=_JAX
    ),
    HandMutant(
        "jvp_tangents_swapped", "hooks_jax", _JVP, "return out, p.tangent(x_dot, values_dot, knots_dot)", needs=_JAX
    ),
    HandMutant("jvp_tangent_zeroed", "hooks_jax", _JVP, f"{_JVP} * 0", needs=_JAX),
    # Only second derivatives see the plain (not re-wrapped) output, and they are tested in float64.
    HandMutant("jvp_output_not_rewrapped", "hooks_jax", _OUT, "pass", needs=_JAX, needs_x64=True),
    HandMutant(
        "jvp_output_tangent_not_cut",
        "hooks_jax",
        _OUT,
        "out = interp(x, knots, values, out)",
        needs=_JAX,
        equivalent=_CUT,
    ),
    HandMutant("no_inner_jit", "hooks_jax", "return jax.jit(call)", "return call", needs=_JAX),
    HandMutant(
        "forward_tangent_not_cut",
        "hooks_jax",
        "jax.lax.stop_gradient(rule.value(x, knots, values))",
        "rule.value(x, knots, values)",
        needs=_JAX,
        equivalent=_CUT,
    ),
    HandMutant(
        "no_compile_cache",
        "hooks_jax",
        "@functools.lru_cache(maxsize=512)",
        "@functools.lru_cache(maxsize=0)",
        needs=_JAX,
        equivalent="the cache only saves recompilation",
    ),
)


def runnable(mutant: HandMutant, backends: str | None, env: dict[str, str]) -> str:
    """Why ``mutant`` cannot be seen with these backends and this environment ("" when it can)."""
    selected = None if backends is None else {b.strip() for b in backends.split(",")}
    if selected is not None and not selected & set(mutant.needs):
        return f"needs one of {', '.join(mutant.needs)}"
    if mutant.needs_x64 and env.get("JAX_ENABLE_X64", "0") in ("", "0", "false", "False"):
        return "needs JAX_ENABLE_X64=1"
    return ""


def copy_env(copy: Path, base: dict[str, str]) -> dict[str, str]:
    """``base`` with PYTHONPATH pointing at the copy only (never at the working tree's src/)."""
    return {**base, "PYTHONPATH": os.pathsep.join([str(copy / "src"), str(copy)])}


def check_imports_copy(copy: Path, env: dict[str, str]) -> None:
    """Raise RuntimeError unless ``import knotsafe`` in ``env`` finds the copy's package."""
    found = subprocess.run(
        [sys.executable, "-c", "import knotsafe; print(knotsafe.__file__)"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(found).resolve().is_relative_to(copy.resolve()):
        raise RuntimeError(f"the tests would import knotsafe from {found}, not from the scratch copy {copy}")


def apply_and_test(
    copy: Path, path: str, mutant: HandMutant, pytest_args: list[str], env: dict[str, str]
) -> tuple[str, list[str]]:
    """Put ``mutant`` into file ``path`` of the copy, run pytest there, put the file back.

    Returns ("killed" | "survived" | "error rc=N", the failing tests).
    """
    with tree_copy.mutated(copy, path, mutant.old, mutant.new):
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", *pytest_args],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
        )
    status = "killed" if r.returncode == 1 else "survived" if r.returncode == 0 else f"error rc={r.returncode}"
    failed = sorted(
        {ln.split(" - ")[0].removeprefix("FAILED ") for ln in r.stdout.splitlines() if ln.startswith("FAILED ")}
    )
    if status.startswith("error"):
        failed = r.stdout.splitlines()[-5:] + r.stderr.splitlines()[-5:]
    return status, failed


def main(argv: list[str]) -> int:
    """Run the selected hand mutants in a temporary copy of the tree; 1 if a non-equivalent one survives."""
    import run  # the module table; imported here, run.py imports this module at its top

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated mutant names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("pytest_args", nargs="*", help="tests to run against every mutant (after --)")
    args = parser.parse_args(argv)
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:30} {run.MODULES[m.module]}" + (f"  (equivalent: {m.equivalent})" if m.equivalent else ""))
        return 0
    chosen = list(MUTANTS)
    if args.only:
        names = [n.strip() for n in args.only.split(",")]
        unknown = sorted(set(names) - {m.name for m in MUTANTS})
        if unknown:
            parser.error(f"--only names unknown mutants {unknown}")
        chosen = [m for m in MUTANTS if m.name in names]
    backends = os.environ.get("KNOTSAFE_TEST_BACKENDS")
    bad = 0
    with tempfile.TemporaryDirectory(prefix="knotsafe-hand-mutants-") as tmp:
        copy = tree_copy.copy_tree(Path(tmp) / "tree")
        env = copy_env(copy, dict(os.environ))
        check_imports_copy(copy, env)
        for m in chosen:
            why_not = runnable(m, backends, env)
            if why_not:
                print(f"{m.name}: not run ({why_not})", flush=True)
                continue
            tests = args.pytest_args or list(m.tests) or run.selection_of(m.module)
            status, failed = apply_and_test(copy, run.MODULES[m.module], m, tests, env)
            if status == "killed":
                print(f"{m.name}: killed by {len(failed)} tests", flush=True)
            elif status == "survived" and m.equivalent:
                print(f"{m.name}: survived, equivalent ({m.equivalent})", flush=True)
            else:
                bad += 1
                print(f"{m.name}: {status}", flush=True)
            for f in failed[:12]:
                print("   ", f)
            if len(failed) > 12:
                print(f"    ... and {len(failed) - 12} more")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
