"""A scratch copy of the working tree, for the mutation tools to change instead of the working tree.

The copy holds every file ``git ls-files --cached --others --exclude-standard`` lists (tracked files and
untracked ones git does not ignore) as they are on disk, uncommitted edits included, so a mutant is put
into the code the contributor is looking at.  Outside a git checkout it falls back to the folders the
tests read.  Nothing here writes below the repository root except into the copy, and nothing runs
``git checkout`` or any other command that writes into the working tree.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Without git: what the tests, the conformance suite and the docs tests read.
_FALLBACK = ("src", "tests", "conformance", "docs", "examples", "README.md", "pyproject.toml")
# Entries of a copy that belong to the tools, not to the tree: kept when the copy is refreshed.
_KEEP = frozenset({"mutants"})


def _listed_files(root: Path) -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return [p.relative_to(root) for name in _FALLBACK for p in _walk(root / name)]
    # A tracked file deleted on disk is listed too; the copy follows the disk.
    return [Path(name) for name in out.decode().split("\0") if name and (root / name).is_file()]


def _walk(path: Path) -> Iterator[Path]:
    if path.is_file():
        yield path
    elif path.is_dir():
        yield from (p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def copy_tree(dest: Path, root: Path = ROOT) -> Path:
    """Make ``dest`` a copy of the working tree at ``root`` and return it.

    An existing ``dest`` is refreshed: every entry but mutmut's ``mutants/`` folder (its results, reused
    by a rerun) is deleted and copied again.  ``dest`` must not be the tree itself or contain it.
    """
    dest = dest.resolve()
    root = root.resolve()
    if dest == root or root.is_relative_to(dest):
        raise ValueError(f"dest {dest} would overwrite the working tree {root}")
    dest.mkdir(parents=True, exist_ok=True)
    for entry in dest.iterdir():
        if entry.name in _KEEP:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    for rel in _listed_files(root):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)  # keeps mtimes: mutmut regenerates only the mutants of changed files
    return dest


@contextmanager
def mutated(copy: Path, path: str, old: str, new: str) -> Iterator[Path]:
    """Within the block, file ``path`` of the copy ``copy`` has its one ``old`` replaced by ``new``.

    Raises ValueError when ``old`` does not occur exactly once (the mutant no longer matches the code)
    or when the file is not inside ``copy``.
    """
    copy = copy.resolve()
    target = (copy / path).resolve()
    if not target.is_relative_to(copy) or copy == ROOT or ROOT.is_relative_to(copy):
        raise ValueError(f"path {path!r} is not inside the scratch copy {copy}")
    original = target.read_text(encoding="utf-8")
    if original.count(old) != 1:
        raise ValueError(f"{path}: the text to mutate occurs {original.count(old)} times, not once: {old!r}")
    target.write_text(original.replace(old, new), encoding="utf-8")
    try:
        yield target
    finally:
        target.write_text(original, encoding="utf-8")
