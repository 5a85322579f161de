"""The ``>>>`` examples in the public modules' docstrings run as doctests, with NumPy.

Every public module of the package (names without a leading underscore) is
searched, so an example added to a new module runs without editing this file.
Each example is one test; it fails if its printed output differs.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import knotsafe

pytest.importorskip("numpy")

_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _public_modules() -> list[str]:
    found = pkgutil.walk_packages(knotsafe.__path__, prefix="knotsafe.")
    names = ["knotsafe", *(m.name for m in found)]
    return sorted(n for n in names if not any(part.startswith("_") for part in n.split(".")))


def _examples() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests: dict[str, doctest.DocTest] = {}
    for name in _public_modules():
        for test in finder.find(importlib.import_module(name)):
            # A function re-exported by knotsafe/__init__ is found twice: keep one.
            key = f"{test.filename}:{test.lineno}"
            if test.examples and key not in tests:
                tests[key] = test
    return sorted(tests.values(), key=lambda t: t.name)


EXAMPLES = _examples()


@pytest.mark.parametrize("example", EXAMPLES, ids=[t.name for t in EXAMPLES])
def test_docstring_example(example: doctest.DocTest) -> None:
    runner = doctest.DocTestRunner(optionflags=_FLAGS)
    out: list[str] = []
    result = runner.run(example, out=out.append, clear_globs=True)
    assert result.failed == 0, "".join(out)


def test_public_docstrings_have_examples() -> None:
    # interp's example at least: guards against the finder silently finding nothing.
    assert any(t.name.endswith(".interp") for t in EXAMPLES), [t.name for t in EXAMPLES]
