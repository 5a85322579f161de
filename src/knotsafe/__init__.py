"""knotsafe: interpolation and rank-space transforms with gradients that stay finite.

Forward values are those of ``numpy.interp``; gradients are finite for every
finite input, also on duplicate and near-duplicate knots, and exact wherever
the function is differentiable, on any array-API backend.
"""

from knotsafe import backends, rectangular
from knotsafe.interp import interp
from knotsafe.transforms import create_transforms

__all__ = ["backends", "create_transforms", "interp", "rectangular"]
__version__ = "0.1.0"
