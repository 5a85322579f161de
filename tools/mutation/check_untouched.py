"""Check that the mutation tools leave a contributor's working tree alone, uncommitted edits included.

Usage: ``python tools/mutation/check_untouched.py`` (with an interpreter that has PyTorch).  Exits 0
when the check holds.

It never touches this checkout either: it builds a stand-in contributor's checkout in a temporary
folder (a git repository of this tree's files, committed), makes an uncommitted edit to the module a
hand mutant changes plus an untracked file, and runs that checkout's own ``hand_mutants.py`` on one
mutant.  Then it checks that the mutant was killed, that every file of the stand-in checkout is byte
for byte what it was (the edit included), and that ``git status`` reads the same.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import tree_copy  # run as a script: its folder, tools/mutation/, is on sys.path

MUTANT = "factor_1"
# The rule's module, where factor_1 goes; the edit is a comment, so the mutant's text still occurs once.
EDITED = "src/knotsafe/_lib/rule.py"
EDIT = "\n# An uncommitted edit the mutation tools must not lose.\n"
TESTS = ["tests/test_gradients.py", "-k", "duplicate_threshold"]


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts and "__pycache__" not in p.parts
    }


def _git(checkout: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=check", "-c", "user.email=check@invalid", *args],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def main() -> int:
    """Run the check; 0 when the stand-in checkout is unchanged and the mutant was killed."""
    with tempfile.TemporaryDirectory(prefix="knotsafe-untouched-") as tmp:
        checkout = tree_copy.copy_tree(Path(tmp) / "checkout")
        _git(checkout, "init", "-q")
        _git(checkout, "add", "-A")
        _git(checkout, "commit", "-q", "-m", "stand-in")
        with (checkout / EDITED).open("a", encoding="utf-8") as fh:
            fh.write(EDIT)
        (checkout / "scratch-notes.txt").write_text("untracked\n", encoding="utf-8")
        before, status_before = _digest(checkout), _git(checkout, "status", "--porcelain")
        env = {**os.environ, "KNOTSAFE_TEST_BACKENDS": os.environ.get("KNOTSAFE_TEST_BACKENDS", "torch")}
        env.pop("PYTHONPATH", None)  # the tool must find the copy's knotsafe by itself
        r = subprocess.run(
            [sys.executable, "tools/mutation/hand_mutants.py", "--only", MUTANT, "--", *TESTS],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
        )
        print(r.stdout + r.stderr)
        after, status_after = _digest(checkout), _git(checkout, "status", "--porcelain")
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        edit_kept = (checkout / EDITED).read_text(encoding="utf-8").endswith(EDIT)
        killed = r.returncode == 0 and f"{MUTANT}: killed" in r.stdout
        print(f"files changed: {changed or 'none'}; git status unchanged: {status_before == status_after}")
        print(f"uncommitted edit kept: {edit_kept}; mutant killed: {killed}")
        return 0 if killed and not changed and edit_kept and status_before == status_after else 1


if __name__ == "__main__":
    sys.exit(main())
