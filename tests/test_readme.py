"""The README's Python examples run as written (with the backends they import)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
RUNNABLE = [b for b in BLOCKS if "import " in b]


@pytest.mark.parametrize("block", RUNNABLE, ids=[f"block{i}" for i in range(len(RUNNABLE))])
def test_readme_example_runs(block: str) -> None:
    for module in re.findall(r"^import ([\w.]+)|^from ([\w.]+) import", block, flags=re.M):
        name = (module[0] or module[1]).split(".")[0]
        if name in ("jax", "torch", "numpy") and importlib.util.find_spec(name) is None:
            pytest.skip(f"example needs {name}")
        if name == "mylib":
            pytest.skip("illustrates a third-party library")
    exec(compile(block, str(README), "exec"), {})


def test_readme_has_runnable_examples() -> None:
    assert len(RUNNABLE) >= 3
