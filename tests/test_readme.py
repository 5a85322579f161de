"""The Python examples of the README and of the guide pages run as written (with the backends they import)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# Guide pages whose examples moved out of the README; other pages' examples may
# need optional engines or long runs, and are checked by their own tests.
PAGES = [README, *(ROOT / "docs" / f"{name}.md" for name in ("gradient-contract", "backends", "rectangular"))]


def _blocks(path: Path) -> list[str]:
    return [b for b in re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S) if "import " in b]


RUNNABLE = [(path, block) for path in PAGES for block in _blocks(path)]
IDS = [f"{path.stem}-block{i}" for i, (path, _) in enumerate(RUNNABLE)]


@pytest.mark.parametrize(("path", "block"), RUNNABLE, ids=IDS)
def test_readme_example_runs(path: Path, block: str) -> None:
    if re.search(r"\bmylib\b", block):
        pytest.skip("illustrates a third-party library (and would register it for the whole session)")
    for module in re.findall(r"^import ([\w.]+)|^from ([\w.]+) import", block, flags=re.M):
        name = (module[0] or module[1]).split(".")[0]
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"example needs {name}")
    exec(compile(block, str(path), "exec"), {})


def test_readme_has_runnable_examples() -> None:
    # A quickstart per framework: NumPy, JAX and PyTorch.
    readme = _blocks(README)
    assert len(readme) >= 3
    for framework in ("numpy", "jax", "torch"):
        assert any(re.search(rf"^import {framework}\b", b, flags=re.M) for b in readme), framework
