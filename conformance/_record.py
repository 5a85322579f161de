"""The conformance table: properties, per-(backend, property) cells, and their markdown rendering."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Prop:
    key: str
    title: str
    criterion: str
    unit: str
    tol: float


PROPS: tuple[Prop, ...] = (
    Prop("hooks", "hooks_for(namespace) gives the backend's own hooks", "built-in or entry point, no fallback", "", 0),
    Prop("forward_float64", "forward parity, float64", "≤ 4 ε·s (NumPy: bitwise)", "ε·s", 4.0),
    Prop("forward_float32", "forward parity, float32", "≤ 4 ε·s", "ε·s", 4.0),
    Prop("grad_finite", "gradients finite (x, knots, values; exact and stop)", "0 non-finite", "non-finite", 0.0),
    Prop("zero_slope", "zero slope in duplicate / near-duplicate bins", "d/dx = d/dknots = 0 exactly", "max |g|", 0.0),
    Prop("grad_bound", "|gradient| ≤ |Δvalues| / threshold elsewhere", "ratio ≤ 1", "ratio", 1.0),
    Prop("fd_float64", "gradients = central differences, float64", "rel ≤ 1e-6", "rel", 1e-6),
    Prop("fd_float32", "gradients = central differences, float32", "rel ≤ 1e-3", "rel", 1e-3),
    Prop("knot_grad_stop", 'knot_grad="stop": zero knot gradients', "exactly 0; x, values as exact", "max |g|", 0.0),
    Prop("knot_grad_exact", 'knot_grad="exact": analytic partials', "≤ 8 ε·s", "ε·s", 8.0),
    Prop("fwd_rev", "forward mode = reverse mode", "identical", "max |Δ|", 0.0),
    Prop("jit", "identical with and without jit", "bitwise", "ulp", 0.0),
    Prop("vmap", "vmap gives the per-example results", "bitwise", "ulp", 0.0),
    Prop("cross", "same gradients on JAX and PyTorch (float64)", "rel ≤ 1e-12", "rel", 1e-12),
    Prop("second_order", "second derivatives = central differences of the gradient", "rel ≤ 1e-6", "rel", 1e-6),
    Prop("compile_eager", "torch.compile = eager (value and gradients)", "rel ≤ 1e-12", "rel", 1e-12),
    Prop(
        "tf_values",
        "create_transforms: values = sort + numpy.interp on i/(N+1)",
        "≤ 4.5 ε·s (interp 4, rank rounding ½)",
        "ε·s",
        4.5,
    ),
    Prop("tf_monotone", "create_transforms: monotone, inside [0, 1]", "0 violations", "max viol.", 0.0),
    Prop("tf_inverse", "create_transforms: inv(transform(knots)) = knots", "≤ 4 ε·s where distinct", "ε·s", 4.0),
    Prop("tf_weights", "create_transforms: uniform weights = unweighted", "bitwise", "ulp", 0.0),
    Prop("tf_dims", "create_transforms: any D, columns independent", "bitwise vs D = 1", "ulp", 0.0),
    Prop("device", "outputs on the input's device (every device)", "0 mismatches", "mismatch", 0.0),
    Prop("kernel_values_float64", 'method="kernel": values = exact sum, float64', "≤ 1e-12", "abs", 1e-12),
    Prop(
        "kernel_values_float32",
        'method="kernel": values = exact sum, float32',
        "≤ 10 ε (float32)",
        "abs",
        10 * 2.0**-23,
    ),
    Prop("kernel_inverse", 'method="kernel": exact sum of the inverse = v (float64)', "≤ 1e-12", "abs", 1e-12),
    Prop("kernel_fd", 'method="kernel": gradients = central differences, float64', "rel ≤ 1e-6", "rel", 1e-6),
    Prop("fuzz_interp", "hypothesis fuzz: interp values and gradients", "all sub-checks", "x tol", 1.0),
    Prop("fuzz_transforms", "hypothesis fuzz: create_transforms", "all sub-checks", "x tol", 1.0),
)
PROP_BY_KEY = {p.key: p for p in PROPS}


@dataclass
class Cell:
    """Everything measured for one (backend, property)."""

    backend: str
    prop: str
    worst: float | None = None
    unit: str = ""
    tol: float | None = None
    checked: int = 0
    passed_tests: int = 0
    failed_tests: int = 0
    na: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    text: str | None = None
    bitwise: bool = True
    partial: list[str] = field(default_factory=list)

    def update(self, err: float, checked: int = 1, *, unit: str | None = None, tol: float | None = None) -> bool:
        """Fold in a measured worst error over ``checked`` items; return whether it is within tolerance."""
        prop = PROP_BY_KEY[self.prop]
        if unit is not None:
            self.unit = unit
        elif not self.unit:
            self.unit = prop.unit
        if tol is not None:
            self.tol = tol
        elif self.tol is None:
            self.tol = prop.tol
        err = float(err)
        if math.isnan(err):
            err = math.inf
        self.worst = err if self.worst is None else max(self.worst, err)
        self.checked += int(checked)
        if err != 0:
            self.bitwise = False
        return err <= self.tol

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    @property
    def status(self) -> str:
        if self.failed_tests:
            return "fail"
        if self.worst is not None and self.tol is not None and not self.worst <= self.tol:
            return "fail"
        if self.passed_tests:
            return "pass"
        if self.na:
            return "na"
        return "missing"


class Recorder:
    """Session-wide store of cells, written to JSON for the runner."""

    def __init__(self) -> None:
        self.cells: dict[tuple[str, str], Cell] = {}
        self.backend_notes: dict[str, str] = {}

    def cell(self, backend: str, prop: str) -> Cell:
        if prop not in PROP_BY_KEY:
            raise KeyError(f"unknown conformance property {prop!r}")
        key = (backend, prop)
        if key not in self.cells:
            self.cells[key] = Cell(backend, prop)
        return self.cells[key]

    def dump(self, path: str | Path) -> None:
        data = {"cells": [asdict(c) for c in self.cells.values()], "backend_notes": self.backend_notes}
        Path(path).write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")

    @classmethod
    def load(cls, paths: list[Path]) -> Recorder:
        """Merge the cells of several processes (a cell may be measured in more than one)."""
        rec = cls()
        for p in paths:
            data = json.loads(p.read_text(encoding="utf-8"))
            for c in data["cells"]:
                cell = Cell(**c)
                key = (cell.backend, cell.prop)
                old = rec.cells.get(key)
                rec.cells[key] = cell if old is None else _merge(old, cell)
            rec.backend_notes.update(data["backend_notes"])
        return rec


def _merge(a: Cell, b: Cell) -> Cell:
    worsts = [w for w in (a.worst, b.worst) if w is not None]
    return Cell(
        a.backend,
        a.prop,
        worst=max(worsts) if worsts else None,
        unit=a.unit or b.unit,
        tol=a.tol if a.tol is not None else b.tol,
        checked=a.checked + b.checked,
        passed_tests=a.passed_tests + b.passed_tests,
        failed_tests=a.failed_tests + b.failed_tests,
        na=[*a.na, *b.na],
        notes=[*a.notes, *[n for n in b.notes if n not in a.notes]],
        text=a.text if a.text is not None else b.text,
        bitwise=a.bitwise and b.bitwise,
        partial=[*a.partial, *b.partial],
    )


#: The process-wide recorder the conftest hooks and the tests write to.
RECORDER = Recorder()


# -- rendering ----------------------------------------------------------------------


def _fmt_num(x: float) -> str:
    if x == 0:
        return "0"
    if math.isinf(x):
        return "inf"
    if 1e-2 <= abs(x) < 1e4:
        return f"{x:.3g}"
    return f"{x:.2e}"


def _cell_text(cell: Cell | None, footnotes: list[str]) -> str:
    if cell is None:
        return "❌ not run"
    status = cell.status

    def mark(text: str) -> str:
        footnotes.append(text)
        return f" [{len(footnotes)}]"

    if status == "na":
        return "; ".join(dict.fromkeys(cell.na))
    if status == "missing":
        return "❌ not run" + mark(f"{cell.backend} / {cell.prop}: no check ran")
    icon = "✅" if status == "pass" else "❌"
    if cell.text is not None:
        body = cell.text
    elif cell.worst is None:
        body = "error"
    elif cell.bitwise and cell.unit in ("ε·s", "ulp", "rel", "max |Δ|"):
        body = "0 (bitwise)"
    else:
        body = f"{_fmt_num(cell.worst)} {cell.unit}".rstrip()
    extra = ""
    # One status per cell: a passing cell does not also list its n/a sub-checks (a dtype the
    # column cannot compute in is stated once, in the Backends notes under the table).
    side = list(cell.partial)
    if side:
        extra = f" ({'; '.join(dict.fromkeys(side))})"
    text = f"{icon} {body}{extra}"
    if status == "fail":
        why = "; ".join(cell.notes) if cell.notes else f"worst {_fmt_num(cell.worst or 0)} {cell.unit} > {cell.tol}"
        text += mark(f"**{cell.backend} / {PROP_BY_KEY[cell.prop].title}**: {why}")
    return text


def _skipped_in_passing(rec: Recorder, backend: str) -> list[str]:
    """Why sub-checks of ``backend``'s passing cells were skipped, each reason once."""
    reasons = (
        n.removeprefix("n/a: ")
        for (b, _), cell in rec.cells.items()
        if b == backend and cell.status == "pass"
        for n in cell.na
        if "measured by" not in n
    )
    return list(dict.fromkeys(reasons))


def render(rec: Recorder, backends: list[str], header: str = "") -> tuple[str, bool]:
    """Markdown table (properties down, backends across) and whether every cell passed or is n/a."""
    footnotes: list[str] = []
    lines = []
    if header:
        lines += [header, ""]
    cols = ["property", "criterion", *backends]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join(["---"] * len(cols)) + "|")
    ok = True
    for prop in PROPS:
        row = [prop.title, prop.criterion]
        for b in backends:
            cell = rec.cells.get((b, prop.key))
            row.append(_cell_text(cell, footnotes))
            if cell is None or cell.status in ("fail", "missing"):
                ok = False
        lines.append("| " + " | ".join(r.replace("|", "\\|") for r in row) + " |")
    lines.append("")
    lines.append(
        "Cells: ✅/❌ with the worst error measured; n/a cells say why. "
        "ε·s: units of eps of the dtype times |slope| |x| + |f0| + |f1| of the bin "
        "(for partials: eps times the largest partial of the same output); rel: relative error; "
        "ulp: units in the last place."
    )
    notes = []
    for b in backends:
        note = [rec.backend_notes[b]] if rec.backend_notes.get(b) else []
        skipped = _skipped_in_passing(rec, b)
        if skipped:
            note.append("not run inside its ✅ cells: " + "; ".join(skipped))
        if note:
            notes.append(f"- {b}: {'; '.join(note)}")
    if notes:
        lines += ["", "Backends:", "", *notes]
    if footnotes:
        lines += ["", "Failures:", ""]
        lines += [f"{i}. {t}" for i, t in enumerate(footnotes, 1)]
    return "\n".join(lines) + "\n", ok
