"""tinynet: a from-scratch convolutional network library in NumPy + Numba.

Hand-written forward and backward passes (no autograd), PyTorch's names, layouts and semantics.
"""
from . import functional, init, nn
from ._checks import ShapeError
from ._grad_mode import is_grad_enabled, no_grad

__version__ = "0.1.0"
