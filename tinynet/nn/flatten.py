"""``Flatten``: merge dimensions ``start_dim..end_dim`` into one, as ``torch.nn.Flatten``."""
from __future__ import annotations

import math

import numpy as np

from .._checks import ShapeError, check_float_array
from .module import Module


class Flatten(Module):
    """``(N, C, H, W) -> (N, C*H*W)`` with the defaults ``start_dim=1, end_dim=-1``.

    NCHW order is kept (channel-major), so a PyTorch Linear after a Flatten loads unchanged.
    Backward reshapes (a copy of) ``dout`` back to the input's shape.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = int(start_dim)
        self.end_dim = int(end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_float_array(self._where(), x)
        ndim = x.ndim
        if ndim == 0:
            raise ShapeError(f"{self._describe()}: expected an input with at least 1 dimension, got shape ()")
        # dims outside [-ndim, ndim) are an error (as torch), not silently wrapped around by the modulo
        in_range = all(-ndim <= dim < ndim for dim in (self.start_dim, self.end_dim))
        start = self.start_dim % ndim if in_range else 0
        end = self.end_dim % ndim if in_range else 0
        if not in_range or start > end:
            raise ShapeError(
                f"{self._describe()}: cannot flatten dims {self.start_dim}..{self.end_dim} of an input of shape {x.shape}"
                f" (expected start_dim <= end_dim, both in [-{ndim}, {ndim - 1}])"
            )
        shape = x.shape[:start] + (math.prod(x.shape[start : end + 1]),) + x.shape[end + 1 :]
        out = np.ascontiguousarray(x).reshape(shape)
        self._save_for_backward(x.shape, out)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        # a copy, not a view: like every other layer, dx must not alias dout (whoever holds dout
        # may modify it or accumulate into it)
        input_shape = self._saved_cache(dout)
        return dout.reshape(input_shape).copy()
