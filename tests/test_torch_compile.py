"""torch.compile(fullgraph=True) of code calling knotsafe: the same values and gradients as eager."""

from __future__ import annotations

import numpy as np
import pytest

import knotsafe
from knotsafe._lib.backends import registry
from knotsafe.testing import knot_cases
from tests._support import only_in_session_of

torch = pytest.importorskip("torch")
pytestmark = only_in_session_of("torch")
CASE = {c.name: c for c in knot_cases()}


def _leaves(*arrays: np.ndarray) -> list[torch.Tensor]:
    return [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]


@pytest.mark.parametrize("knot_grad", ["exact", "stop"])
def test_compiled_interp_forward_and_backward_equal_eager(knot_grad: str) -> None:
    torch._dynamo.reset()  # a cold registry cache must not break the graph either

    registry._cache.clear()
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


@pytest.mark.parametrize("which", [(0,), (1,), (2,), (0, 1), (0, 1, 2)], ids=["x", "knots", "values", "x-knots", "all"])
def test_compiled_first_call_each_subset_equals_eager(which: tuple[int, ...]) -> None:
    """The first knotsafe call of a process may be a compiled one, with any subset of the
    inputs requiring a gradient (each takes its own path through the autograd Function)."""
    from knotsafe._lib.validation import namespace as _namespace

    torch._dynamo.reset()
    registry._cache.clear()
    _namespace._seen_types.clear()  # first use of the tensor type happens under tracing
    case = CASE["near_duplicates"]

    def f(x: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (knotsafe.interp(x, k, v) ** 2).sum()

    def args() -> list[torch.Tensor]:
        return [
            torch.tensor(a, dtype=torch.float64, requires_grad=i in which)
            for i, a in enumerate((case.queries, case.knots, case.values))
        ]

    comp_args, eager_args = args(), args()
    out_c = torch.compile(f, fullgraph=True)(*comp_args)
    out_e = f(*eager_args)
    grads_c = torch.autograd.grad(out_c, [comp_args[i] for i in which])
    grads_e = torch.autograd.grad(out_e, [eager_args[i] for i in which])
    # Same bound as above: Inductor may fuse a multiply-add per term.
    np.testing.assert_allclose(out_c.item(), out_e.item(), rtol=1e-13)
    for c, e in zip(grads_c, grads_e, strict=True):
        assert torch.isfinite(c).all()
        np.testing.assert_allclose(c.numpy(), e.numpy(), rtol=1e-12, atol=1e-12 * float(e.abs().max()))


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
