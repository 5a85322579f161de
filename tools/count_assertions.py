"""Count the assertions of the test suite, so that moving tests between files can be shown to lose none.

An assertion is an ``assert`` statement, a ``with pytest.raises(...)`` or ``with pytest.warns(...)`` block
(or a bare ``pytest.raises``/``pytest.warns`` call), or a call of an assertion helper: any function whose
name starts with ``assert`` (``np.testing.assert_allclose``, ``torch.testing.assert_close``, ...) or with
``_assert`` or ``_check`` (the suite's own helpers that assert).  Each is normalised by ``ast.dump`` of its
node, which leaves out line numbers and comments: an assertion moved to another file, or to another test,
has the same key, so it counts once.  A changed expression (a renamed variable, a new tolerance) is a new
key.

Usage (from the repository root; standard library only)::

    python tools/count_assertions.py                 # counts over tests/ in the working tree
    python tools/count_assertions.py --rev main      # the same counts at a git revision
    python tools/count_assertions.py --diff main     # and every assertion of that revision missing here

``--diff`` prints, for each assertion of the revision that the working tree no longer has, its old file,
line and source, and exits with status 1 if there is any; ``--per-file`` adds per-file counts.
"""

from __future__ import annotations

import argparse
import ast
import collections
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_RAISES = {"raises", "warns"}


@dataclass(frozen=True)
class Assertion:
    key: str
    path: str
    line: int
    source: str


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _is_raises(expr: ast.expr) -> bool:
    return isinstance(expr, ast.Call) and _name(expr.func) in _RAISES


def _is_helper(call: ast.Call) -> bool:
    name = _name(call.func)
    return name.startswith(("assert", "_assert", "_check"))


def assertions(path: str, text: str) -> Iterator[Assertion]:
    """Every assertion of one file, in source order of discovery."""
    tree = ast.parse(text, filename=path)
    in_with: set[int] = set()  # raises/warns calls already counted as the context of a with block
    for node in ast.walk(tree):
        if isinstance(node, (ast.With, ast.AsyncWith)) and any(_is_raises(i.context_expr) for i in node.items):
            in_with.update(id(i.context_expr) for i in node.items)
    for node in ast.walk(tree):
        kind = ""
        if isinstance(node, ast.Assert):
            kind = "assert"
        elif isinstance(node, (ast.With, ast.AsyncWith)) and any(_is_raises(i.context_expr) for i in node.items):
            kind = "with"
        elif isinstance(node, ast.Call) and id(node) not in in_with and (_is_raises(node) or _is_helper(node)):
            kind = "call"
        if kind:
            source = ast.get_source_segment(text, node) or ""
            yield Assertion(f"{kind}:{ast.dump(node)}", path, getattr(node, "lineno", 0), source)


def _files_here(root: str) -> dict[str, str]:
    return {str(p): p.read_text() for p in sorted(Path(root).rglob("*.py"))}


def _files_at(rev: str, root: str) -> dict[str, str]:
    names = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", rev, "--", root], check=True, capture_output=True, text=True
    ).stdout.split()
    return {
        n: subprocess.run(["git", "show", f"{rev}:{n}"], check=True, capture_output=True, text=True).stdout
        for n in names
        if n.endswith(".py")
    }


def collect(files: dict[str, str]) -> list[Assertion]:
    return [a for path, text in files.items() for a in assertions(path, text)]


def _report(label: str, found: list[Assertion], per_file: bool) -> None:
    keys = collections.Counter(a.key for a in found)
    print(f"{label}: {sum(keys.values())} assertions, {len(keys)} distinct")
    if per_file:
        by_file = collections.Counter(a.path for a in found)
        for path, n in sorted(by_file.items()):
            print(f"  {n:5d}  {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="tests", help="folder of the suite (default: tests)")
    parser.add_argument("--rev", help="count at this git revision instead of the working tree")
    parser.add_argument("--diff", metavar="REV", help="also list the assertions of REV missing from the working tree")
    parser.add_argument("--per-file", action="store_true", help="counts per file")
    args = parser.parse_args(argv)
    if args.rev:
        _report(args.rev, collect(_files_at(args.rev, args.root)), args.per_file)
        return 0
    here = collect(_files_here(args.root))
    _report("working tree", here, args.per_file)
    if not args.diff:
        return 0
    before = collect(_files_at(args.diff, args.root))
    _report(args.diff, before, args.per_file)
    now = {a.key for a in here}
    then = {a.key for a in before}
    missing = [a for a in before if a.key not in now]
    seen: set[str] = set()
    for a in missing:
        if a.key in seen:
            continue
        seen.add(a.key)
        print(f"\nmissing, was {a.path}:{a.line}\n    " + a.source.replace("\n", "\n    "))
    print(f"\n{len(seen)} distinct assertions of {args.diff} missing; {len(now - then)} distinct new ones")
    return 1 if seen else 0


if __name__ == "__main__":
    sys.exit(main())
