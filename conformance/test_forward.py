"""Forward parity with numpy.interp on every knot case, float64 and float32."""

from __future__ import annotations

import numpy as np
import pytest

from conformance._backends import Driver
from conformance._compute import check_cases, forward
from conformance._data import Case, cases, forward_error, reference, ulp_distance
from conformance._record import Cell


@pytest.mark.prop("forward_{dtype}")
def test_forward_parity(backend: Driver, dtype: str, cell: Cell) -> None:
    """|out - numpy.interp| <= 4 eps (|slope| |x| + |f0| + |f1|); bitwise numpy.interp for NumPy float64."""
    bitwise = backend.spec == "numpy" and dtype == "float64"
    if bitwise:
        cell.unit, cell.tol = "ulp", 0.0
    eps = float(np.finfo(dtype).eps)

    def measure(case: Case) -> tuple[float, int]:
        out_b = forward(backend, case)
        out = backend.to_numpy(out_b)
        if out.shape != case.queries.shape or out.dtype != np.dtype(dtype):
            raise TypeError(f"output {out.dtype}{out.shape}, expected {dtype}{case.queries.shape}")
        ref = reference(case.knots, case.values, case.queries, case)
        if bitwise:
            return float(np.max(ulp_distance(out, ref.out))), out.size
        return float(np.max(forward_error(out, ref, eps))), out.size

    check_cases(cell, list(cases(dtype)), measure, lambda c: c.name)
