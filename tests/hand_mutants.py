"""Apply the issue-8 hand mutants one at a time, run tests, report which tests kill each, revert.

Run from the repository root: `python tests/hand_mutants.py [pytest args]` (default tests/test_contract.py).
Select mutants with MUTANTS=name1,name2.  Each mutant is reverted with `git checkout` of its file.
"""

import os
import subprocess
import sys

R = "src/knotsafe/_lib/rule.py"
T = "src/knotsafe/transforms.py"
MUTANTS = {
    "left_needs_right": (
        R,
        "lo = values[0] if self.left is None else",
        "lo = values[0] if (self.left is None or self.right is None) else",
    ),
    "dvalues_right": (
        R,
        # Above the range (not inside, d0 = x - k0 >= 0; NaN queries compare False) the last value
        # keeps weight 1 whether or not `right` is given.
        "a1 = xp.where(inside, w, xp.astype(fwd.at_end, w.dtype))",
        "a1 = xp.where(inside, w, xp.astype(~inside & (fwd.d0 >= 0), w.dtype))",
    ),
    "dx_last_knot": (R, "inside = (x >= knots[0]) & (x < knots[-1])", "inside = (x >= knots[0]) & (x <= knots[-1])"),
    "factor_1e4": (R, "DUPLICATE_EPS_FACTOR = 8.0", "DUPLICATE_EPS_FACTOR = 1e4"),
    "factor_64": (R, "DUPLICATE_EPS_FACTOR = 8.0", "DUPLICATE_EPS_FACTOR = 64.0"),
    "factor_1e3": (R, "DUPLICATE_EPS_FACTOR = 8.0", "DUPLICATE_EPS_FACTOR = 1e3"),
    "factor_1": (R, "DUPLICATE_EPS_FACTOR = 8.0", "DUPLICATE_EPS_FACTOR = 1.0"),
    "stop_gradient_total": (
        T,
        "    total = cum[-1]\n",
        "    from knotsafe.backends import hooks_for\n\n    total = hooks_for(xp).stop_gradient(cum[-1])\n",
    ),
    "ranks_i_over_N": (T, "xp.full_like(positions, n + 1)", "xp.full_like(positions, n)"),
    "weighted_ranks_no_N_over_N1": (
        T,
        "_divide(xp, cum_w, total + _divide(xp, total, xp.full_like(total, n)))",
        "_divide(xp, cum_w, total)",
    ),
}
tests = sys.argv[1:] or ["tests/test_contract.py"]
names = os.environ.get("MUTANTS")
for name, (path, old, new) in MUTANTS.items():
    if names and name not in names.split(","):
        continue
    with open(path) as fh:
        src = fh.read()
    assert src.count(old) == 1, (name, src.count(old))
    with open(path, "w") as fh:
        fh.write(src.replace(old, new))
    try:
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", *tests],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": "src"},
        )
        failed = sorted(
            {ln.split(" - ")[0].replace("FAILED ", "") for ln in r.stdout.splitlines() if ln.startswith("FAILED")}
        )
        print(f"{name}: rc={r.returncode} killed by {len(failed)} tests", flush=True)
        for f in failed[:12]:
            print("   ", f)
    finally:
        subprocess.run(["git", "checkout", path], check=True)
