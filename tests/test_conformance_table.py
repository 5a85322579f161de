"""The conformance table shows one status per cell (✅, ❌ or n/a), never two at once."""

from __future__ import annotations

import re

from conformance._record import Recorder, render

X32 = "jax (x32)"
NEEDS_X64 = "n/a: float64 needs JAX_ENABLE_X64=1 (see jax (x64))"


def _cells(table: str, title: str) -> list[str]:
    for line in table.splitlines():
        if line.startswith(f"| {title} |"):
            # Split on unescaped pipes; drop the leading and trailing empty pieces.
            return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
    raise AssertionError(f"no row {title!r} in\n{table}")


def _recorder() -> Recorder:
    rec = Recorder()
    rec.backend_notes[X32] = "JAX_ENABLE_X64=0 (float32 only)"
    # A passing cell whose float64 sub-check was skipped, as on JAX without x64.
    passed = rec.cell(X32, "grad_finite")
    passed.update(0.0, 38282)
    passed.passed_tests = 1
    passed.na.append(NEEDS_X64)
    # A cell with nothing but skipped sub-checks.
    rec.cell(X32, "fd_float64").na.append(NEEDS_X64)
    # A failing cell with a skipped sub-check.
    failed = rec.cell(X32, "zero_slope")
    failed.update(0.5, 10)
    failed.passed_tests = 1
    failed.na.append(NEEDS_X64)
    return rec


def test_passing_cell_with_skipped_subcheck_has_one_status() -> None:
    table, _ = render(_recorder(), [X32])
    cell = _cells(table, "gradients finite (x, knots, values; exact and stop)")[2]
    assert cell.startswith("✅"), cell
    assert "n/a" not in cell, cell


def test_skipped_subchecks_are_listed_once_under_backends() -> None:
    table, _ = render(_recorder(), [X32])
    notes = [line for line in table.splitlines() if line.startswith(f"- {X32}:")]
    assert notes == [
        f"- {X32}: JAX_ENABLE_X64=0 (float32 only); not run inside its ✅ cells: "
        "float64 needs JAX_ENABLE_X64=1 (see jax (x64))"
    ], notes


def test_every_cell_has_exactly_one_status() -> None:
    table, ok = render(_recorder(), [X32])
    assert not ok  # the failing cell and the properties never measured
    assert _cells(table, "gradients = central differences, float64")[2] == NEEDS_X64
    assert _cells(table, "zero slope in duplicate / near-duplicate bins")[2].startswith("❌")
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| property")]
    for line in rows:
        for cell in [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]][2:]:
            statuses = [s for s in ("✅", "❌", "n/a") if s in cell]
            assert len(statuses) == 1, line
