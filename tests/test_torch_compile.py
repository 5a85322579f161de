"""torch.compile(fullgraph=True) of code calling knotsafe: the same values and gradients as eager."""

from __future__ import annotations

import numpy as np
import pytest

import knotsafe
from knotsafe.testing import knot_cases

torch = pytest.importorskip("torch")
CASE = {c.name: c for c in knot_cases()}


def _leaves(*arrays: np.ndarray) -> list[torch.Tensor]:
    return [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]


@pytest.mark.parametrize("knot_grad", ["exact", "stop"])
def test_compiled_interp_forward_and_backward_equal_eager(knot_grad: str) -> None:
    torch._dynamo.reset()  # a cold registry cache must not break the graph either
    from knotsafe._lib import _registry

    _registry._cache.clear()
    case = CASE["near_duplicates"]

    def f(x: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (knotsafe.interp(x, k, v, left=-1.0, knot_grad=knot_grad) ** 2).sum()

    compiled = torch.compile(f, fullgraph=True)
    eager_args = _leaves(case.queries, case.knots, case.values)
    comp_args = _leaves(case.queries, case.knots, case.values)
    out_e, out_c = f(*eager_args), compiled(*comp_args)
    out_e.backward()
    out_c.backward()
    # Inductor may fuse a multiply-add (FMA): one rounding per output term,
    # summed over <= 1000 queries: 1e-13 relative bounds it.
    np.testing.assert_allclose(out_c.item(), out_e.item(), rtol=1e-13)
    for e, c in zip(eager_args, comp_args, strict=True):
        assert e.grad is not None and c.grad is not None
        assert torch.isfinite(c.grad).all()
        np.testing.assert_allclose(c.grad.numpy(), e.grad.numpy(), rtol=1e-12, atol=1e-12 * float(e.grad.abs().max()))


def test_compiled_create_transforms_equals_eager() -> None:
    rng = np.random.default_rng(0)
    pts = np.round(rng.normal(size=(200, 2)), 1)  # many ties
    qs = rng.normal(size=(50, 2))

    def g(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        tr, inv = knotsafe.create_transforms(p)
        return (tr(q) ** 2).sum() + inv(torch.sigmoid(q)).sum()

    compiled = torch.compile(g, fullgraph=True)
    pe, qe = _leaves(pts, qs)
    pc, qc = _leaves(pts, qs)
    out_e, out_c = g(pe, qe), compiled(pc, qc)
    out_e.backward()
    out_c.backward()
    np.testing.assert_allclose(out_c.item(), out_e.item(), rtol=1e-13)
    for e, c in ((pe, pc), (qe, qc)):
        assert e.grad is not None and c.grad is not None
        np.testing.assert_allclose(c.grad.numpy(), e.grad.numpy(), rtol=1e-12, atol=1e-12 * float(e.grad.abs().max()))


def test_forward_mode_still_works_in_eager() -> None:
    case = CASE["exact_duplicates"]
    x, k, v = (torch.tensor(a, dtype=torch.float64) for a in (case.queries, case.knots, case.values))
    jf = torch.func.jacfwd(lambda a: knotsafe.interp(a, k, v))(x)
    jr = torch.func.jacrev(lambda a: knotsafe.interp(a, k, v))(x)
    np.testing.assert_array_equal(jf.numpy(), jr.numpy())
