"""docs/signature.md's Python examples run as written (each checks itself against numpy.interp or jnp.interp)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parent.parent / "docs" / "signature.md"
BLOCKS = [b for b in re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S) if "import " in b]


def test_the_page_has_examples_for_each_framework() -> None:
    for framework in ("numpy", "jax", "torch"):
        assert any(re.search(rf"^import {framework}\b", b, flags=re.M) for b in BLOCKS), framework


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_signature_example_runs(block: str) -> None:
    for module in re.findall(r"^import ([\w.]+)|^from ([\w.]+) import", block, flags=re.M):
        name = (module[0] or module[1]).split(".")[0]
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"example needs {name}")
    exec(compile(block, str(PAGE), "exec"), {})
