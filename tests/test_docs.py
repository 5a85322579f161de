"""The documentation runs: every Python example of the README and of ``docs/*.md``, every
docstring example of the public modules, and the README's test command is the one CI runs.

A ``python`` block is run as written, on its own (a block imports what it uses), in the
session of the backends it imports (a NumPy-only block in the NumPy session); a block of
``>>>`` lines runs as a doctest.  Blocks state their results with ``assert``, against a
reference the library did not compute (``numpy.interp``, a hand-derived number), so an
example that stops holding fails here.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import pkgutil
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import knotsafe
from knotsafe import backends
from tests._support import selected

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
TESTS = ROOT / "tests"

#: Top-level modules an example may import -> the backend whose session runs it.
FRAMEWORKS = {
    "jax": "jax",
    "torch": "torch",
    "dask": "dask",
    "distributed": "dask",
    "array_api_strict": "array_api_strict",
}
#: The README's test command: CI (.ci/run) runs this line verbatim.
TEST_COMMAND = (
    "python -m pip install 'nox[uv]' && python -m nox -s tests-numpy tests-jax tests-torch tests-strict tests-dask "
    "conformance lint"
)
TEST_COMMAND_MARKER = "<!-- test-command: .ci/run runs this line verbatim -->"
_FENCE = re.compile(r"^```python\n(.*?)^```$", flags=re.S | re.M)
_DOCTEST_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the first code line in the page
    code: str

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT).as_posix()}:{self.line}"

    @property
    def is_doctest(self) -> bool:
        return self.code.lstrip().startswith(">>>")

    def source(self) -> str:
        """The code as Python source (a doctest's ``>>>`` and ``...`` lines without their prompts)."""
        if not self.is_doctest:
            return self.code
        examples = doctest.DocTestParser().get_examples(self.code)
        return "".join(e.source for e in examples)

    def backends(self) -> tuple[str, ...]:
        """The backends whose session runs this block: the frameworks it imports, else NumPy."""
        found: set[str] = set()
        for node in ast.walk(ast.parse(self.source())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found.update(FRAMEWORKS[n.split(".")[0]] for n in names if n.split(".")[0] in FRAMEWORKS)
        return tuple(sorted(found)) or ("numpy",)


def python_blocks(page: Path) -> list[Block]:
    text = page.read_text()
    return [Block(page, text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in _FENCE.finditer(text)]


BLOCKS = [b for page in PAGES for b in python_blocks(page)]


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_example_runs(block: Block) -> None:
    for name in block.backends():
        if not selected(name):
            pytest.skip(f"runs in the {name} session (KNOTSAFE_TEST_BACKENDS, installed frameworks)")
    before = backends.registered()
    if block.is_doctest:
        test = doctest.DocTestParser().get_doctest(block.code, {}, block.id, str(block.page), block.line - 1)
        runner = doctest.DocTestRunner(optionflags=_DOCTEST_FLAGS)
        out: list[str] = []
        result = runner.run(test, out=out.append, clear_globs=True)
        assert result.failed == 0, "".join(out)
    else:
        # Run as a script (`__name__ == "__main__"`), padded so that a traceback's line numbers are the page's.
        exec(compile("\n" * (block.line - 1) + block.code, str(block.page), "exec"), {"__name__": "__main__"})
    assert backends.registered() == before, "an example must leave the backend registry as it found it"


def test_every_page_block_is_found() -> None:
    """The fence pattern finds every ```python block (so none is silently left unrun)."""
    for page in PAGES:
        opened = len(re.findall(r"^```python\s*$", page.read_text(), flags=re.M))
        assert len(python_blocks(page)) == opened, page.name


def test_readme_has_a_quickstart_per_framework() -> None:
    readme = python_blocks(README)
    assert len(readme) >= 3
    for framework in ("numpy", "jax", "torch"):
        assert any(framework in b.backends() for b in readme), framework


def test_readme_is_short() -> None:
    assert len(README.read_text().splitlines()) <= 100


def test_readme_test_command_is_what_ci_runs() -> None:
    lines = README.read_text().splitlines()
    marker = lines.index(TEST_COMMAND_MARKER)
    assert lines[marker + 1 : marker + 4] == ["```bash", TEST_COMMAND, "```"]
    assert sum(line == TEST_COMMAND for line in lines) == 1
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert TEST_COMMAND in ci, ".ci/run must run the README's test command verbatim"


def test_readme_states_the_test_time_once() -> None:
    times = re.findall(r"(?:about \d+|\d+ to \d+) minutes on a 2-core machine", README.read_text())
    assert len(times) == 1, times


# --- references from the docs to the tests ----------------------------------------------------

_DOC_TEXT = "\n".join(p.read_text() for p in PAGES)
_TEST_SOURCES = "\n".join(p.read_text() for p in (*TESTS.rglob("*.py"), *(ROOT / "conformance").rglob("*.py")))


def test_test_files_named_in_the_docs_exist() -> None:
    named = set(re.findall(r"\btests/[\w/]+\.py\b", _DOC_TEXT))
    missing = sorted(n for n in named if not (ROOT / n).is_file())
    assert not missing, f"the docs name test files that do not exist: {missing}"


def test_tests_named_in_the_docs_exist() -> None:
    """A behaviour the docs say is "checked by test_x" is checked by a test of that name."""
    named = set(re.findall(r"`(?:tests/[\w/]+\.py::)?(test_\w+)`", _DOC_TEXT))
    assert named, "the docs name no tests: the pattern is wrong"
    missing = sorted(n for n in named if not re.search(rf"^\s*def {n}\(", _TEST_SOURCES, flags=re.M))
    assert not missing, f"the docs name tests that do not exist: {missing}"


# --- the edge-input table -----------------------------------------------------------------------

EDGE_PAGE = ROOT / "docs" / "edge-inputs.md"


def _edge_cases() -> list[str]:
    table = EDGE_PAGE.read_text().split("\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith(("| Case", "| ---"))]
    return [re.split(r"(?<!\\)\|", row)[1].strip() for row in rows]


def test_edge_table_covers_every_case() -> None:
    """One row at least per edge case knotsafe promises something about."""
    cases = " ".join(_edge_cases()).lower()
    for word in (
        "float16",
        "bfloat16",
        "infinite knot",
        "infinite weight",
        "generic",
        "nan `left`",
        "jit",
        "int32",
        "scaled",
        "complex",
        "tie",
        "thread",
        "read",
    ):
        assert word in cases, word


def test_edge_table_links_resolve() -> None:
    """Every row points at an example section of the page or at the test that checks it."""
    text = EDGE_PAGE.read_text()
    anchors = {_anchor(h) for h in re.findall(r"^## (.+)$", text, flags=re.M)}
    table = text.split("\n## ")[0]
    for row in [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]:
        where = re.split(r"(?<!\\)\|", row)[4].strip()
        link = re.fullmatch(r"\[.+\]\(#([\w-]+)\)", where)
        test = re.fullmatch(r"`(test_\w+)`", where)
        assert link or test, row
        if link:
            assert link.group(1) in anchors, f"no section #{link.group(1)}"


def _anchor(heading: str) -> str:
    """MyST's (GitHub's) anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


# --- docstring examples ------------------------------------------------------------------------


def _public_modules() -> list[str]:
    found = pkgutil.walk_packages(knotsafe.__path__, prefix="knotsafe.")
    names = ["knotsafe", *(m.name for m in found)]
    return sorted(n for n in names if not any(part.startswith("_") for part in n.split(".")))


def _docstring_examples() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests: dict[str, doctest.DocTest] = {}
    for name in _public_modules():
        for test in finder.find(importlib.import_module(name)):
            # A function re-exported by knotsafe/__init__ is found twice: keep one.
            key = f"{test.filename}:{test.lineno}"
            if test.examples and key not in tests:
                tests[key] = test
    return sorted(tests.values(), key=lambda t: t.name)


DOCSTRING_EXAMPLES = _docstring_examples()


@pytest.mark.parametrize("example", DOCSTRING_EXAMPLES, ids=[t.name for t in DOCSTRING_EXAMPLES])
def test_docstring_example(example: doctest.DocTest) -> None:
    """The ``>>>`` examples in the public modules' docstrings (NumPy), as doctests."""
    if not selected("numpy"):
        pytest.skip("runs in the numpy session")
    runner = doctest.DocTestRunner(optionflags=_DOCTEST_FLAGS)
    out: list[str] = []
    result = runner.run(example, out=out.append, clear_globs=True)
    assert result.failed == 0, "".join(out)


def test_public_docstrings_have_examples() -> None:
    # interp's example at least: guards against the finder silently finding nothing.
    assert any(t.name.endswith(".interp") for t in DOCSTRING_EXAMPLES), [t.name for t in DOCSTRING_EXAMPLES]
