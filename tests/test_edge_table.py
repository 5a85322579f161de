"""docs/edge-inputs.md and the README's "Edge inputs" table are executable: every row's call is run
and its result checked.

So the tables cannot drift from the behaviour: change either and this fails.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from knotsafe import create_transforms, interp
from knotsafe.rectangular import mappings_weights, pixel_centres
from knotsafe.testing import lens_grid
from tests import test_edges
from tests._support import backend_module, selected

ROOT = Path(__file__).parents[1]
TABLE = ROOT / "docs" / "edge-inputs.md"
README = ROOT / "README.md"


@dataclass(frozen=True)
class Row:
    case: str
    backend: str
    call: str
    result: str


def _code(cell: str) -> str:
    cell = cell.strip()
    for fence in ("``", "`"):
        if cell.startswith(fence) and cell.endswith(fence):
            return cell[len(fence) : -len(fence)].strip()
    raise AssertionError(f"expected a code span, got {cell!r}")


def _readme_section() -> str:
    """The README's "## Edge inputs" section (up to the next heading)."""
    text = README.read_text()
    start = text.index("## Edge inputs\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def _rows(text: str) -> list[Row]:
    rows = []
    for line in text.splitlines():
        if not line.startswith("| ") or line.startswith(("| Case", "| ---")):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        assert len(cells) == 5, line
        rows.append(Row(cells[0], cells[1], _code(cells[2]), _code(cells[3])))
    return rows


ROWS = _rows(TABLE.read_text().split("\n## ")[0])  # the table, not the later sections
README_ROWS = _rows(_readme_section())


def test_readme_table_has_one_row_per_case_of_the_issue() -> None:
    """The compact README table: exactly the ten cases of issue 11, in its order."""
    assert [r.case for r in README_ROWS] == [
        "half precision",
        "infinite knot",
        "infinite weights",
        "index overflow",
        "extreme scale",
        "generic path infinities",
        "NaN left/right",
        "complex",
        "weighted ties",
        "first-use threads",
    ]


def test_table_covers_the_issue_cases() -> None:
    """One row at least per case of the issue this table answers."""
    text = " ".join(r.case for r in ROWS).lower()
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
        assert word in text, word


def _namespace() -> dict[str, Any]:
    ns: dict[str, Any] = {
        "np": np,
        "interp": interp,
        "create_transforms": create_transforms,
        "mappings_weights": mappings_weights,
        "pixel_centres": pixel_centres,
        "GRID": lens_grid(radius=0.8, pixel_scale=0.1, sub_size=2, rotation=0.3),
        "TIES": (np.arange(40) % 7 * 0.5)[:, None],
        "TIE_W": np.random.default_rng(0).uniform(0.05, 3.0, 40),
        "TIE_Q": np.linspace(-0.5, 3.5, 33)[:, None],
        "inf": np.inf,
    }
    if importlib.util.find_spec("torch") is not None:
        import torch

        def dx(f: Any, x: Any) -> Any:
            leaf = x.detach().clone().requires_grad_(True)
            (g,) = torch.autograd.grad(f(leaf).sum(), [leaf])
            return g

        ns.update(
            torch=torch,
            t16=lambda a: torch.tensor(np.asarray(a, np.float32), dtype=torch.float16),
            bf16=lambda a: torch.tensor(np.asarray(a, np.float32), dtype=torch.bfloat16),
            t64=lambda a: torch.tensor(np.asarray(a, np.float64)),
            dx=dx,
            generic=_generic_torch,
        )
    if importlib.util.find_spec("jax") is not None:
        import jax
        import jax.numpy as jnp

        ns.update(jax=jax, jnp=jnp, compilations=compilations)
        ns["JGRID"] = tuple(jnp.asarray(g, jnp.float32) for g in ns["GRID"])
    return ns


def _generic_torch(f: Any) -> Any:
    """``f()`` with PyTorch served by the generic stop_gradient hooks instead of its own."""
    import torch
    from array_api_compat import array_namespace

    from knotsafe import backends

    ns = array_namespace(torch.zeros(1))
    hooks = backends.hooks_for(ns).replace(linearize=backends.generic_linearize)
    backends.register("edge-table-generic", hooks, matches=lambda n: n is ns)
    try:
        return f()
    finally:
        backends.unregister("edge-table-generic")


def compilations(f: Any, calls: int) -> int:
    """XLA compilations during ``calls`` calls of ``f`` after a first (warming) one.

    Counted from JAX's own monitoring events, not from knotsafe's caches.
    """
    import jax

    f()
    events: list[str] = []

    def listener(name: str, _secs: float, **_: Any) -> None:
        if name == "/jax/core/compile/backend_compile_duration":
            events.append(name)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        for _ in range(calls):
            f()
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    return len(events)


def test_compilations_counts_recompiles() -> None:
    """The counter behind the NaN left/right row can fail: queries of new shapes compile anew."""
    jnp = backend_module("jax", "jax.numpy")
    k = jnp.array([0.0, 1.0])
    fresh = iter(range(2, 9))
    assert compilations(lambda: interp(jnp.linspace(-1.0, 2.0, next(fresh)), k, k), calls=3) >= 3


def _as_float64(a: Any) -> Any:
    if isinstance(a, bool | int | float):
        return a
    if hasattr(a, "detach"):
        return a.detach().float().numpy().astype(np.float64)
    return np.asarray(a, dtype=np.float64)


@pytest.mark.parametrize(
    "row", ROWS + README_ROWS, ids=[f"docs-{r.case}" for r in ROWS] + [f"readme-{r.case}" for r in README_ROWS]
)
def test_row(row: Row) -> None:
    if row.call.startswith("see "):
        name = row.call.removeprefix("see ")
        file = row.result.removeprefix("checked by ")
        assert file.startswith("tests/") and file.endswith(".py"), row.result
        if file == "tests/test_edges.py":
            assert callable(getattr(test_edges, name, None)), f"{name} is not in tests/test_edges.py"
        else:  # read, not imported: the file may need an engine this session lacks
            assert f"def {name}(" in (ROOT / file).read_text(), f"{name} is not in {file}"
        return
    needs = row.backend.split(" ")[0]
    if needs != "numpy" and not selected(needs):
        pytest.skip(f"needs {needs}")
    if row.backend == "jax (x32)":
        import jax

        if jax.config.read("jax_enable_x64"):
            pytest.skip("a JAX without x64 row")
    ns = _namespace()
    if row.result.startswith("raises "):
        exc_name, _, text = row.result.removeprefix("raises ").partition(": ")
        exc = {"ValueError": ValueError, "TypeError": TypeError}[exc_name]
        with pytest.raises(exc) as info:
            eval(row.call, ns)
        assert text in str(info.value)
        return
    got = _as_float64(eval(row.call, ns))
    if row.result.startswith("returns ≈ "):
        want = eval(row.result.removeprefix("returns ≈ "), {})
        np.testing.assert_allclose(got, want, rtol=1e-12)
    else:
        want = eval(row.result.removeprefix("returns "), {"nan": np.nan, "inf": np.inf})
        if isinstance(want, bool):
            assert got is want
        else:
            np.testing.assert_array_equal(got, np.asarray(want, dtype=np.float64))
