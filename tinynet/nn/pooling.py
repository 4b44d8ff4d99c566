"""``MaxPool2d``: 2-D max pooling (the math, checks and kernels calls are in ``tinynet.functional.pooling``)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..functional.pooling import maxpool2d_backward, maxpool2d_forward, pool_params
from .module import Module


class MaxPool2d(Module):
    """The maximum of each ``kh x kw`` window, channel by channel (as ``torch.nn.MaxPool2d``).

    Parameters
    ----------
    kernel_size : int or pair ``(kh, kw)``
    stride : int or pair, default ``kernel_size`` (non-overlapping windows); a stride smaller than
        the kernel gives overlapping windows
    padding : int or pair, default 0; at most half the kernel (``ValueError`` otherwise, as PyTorch).
        The padding counts as ``-inf``, so it never wins.

    Shapes
    ------
    input ``(N, C, H, W)`` -> output ``(N, C, OH, OW)`` with ``OH = (H + 2*ph - kh) // sh + 1``
    (floor mode: a last partial window is dropped), likewise ``OW``. No parameters.

    The math (ties, NaN, backward routing to the winner, overlapping windows adding up) is
    ``tinynet.functional.pooling``'s; this layer keeps the cache between forward and backward.

    Examples
    --------
    >>> pool = MaxPool2d(2)
    >>> pool(np.zeros((8, 32, 93, 93), dtype=np.float32)).shape
    (8, 32, 46, 46)
    """

    def __init__(
        self,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
    ):
        super().__init__()
        # kept as given (an int stays an int), as PyTorch does; the pairs are used for computing
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self._kernel, self._step, self._pad = pool_params(self._describe(), kernel_size, stride, padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        out, cache = maxpool2d_forward(x, self._kernel, self._step, self._pad, where=self._where())
        self._save_for_backward(cache, out)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        # the indices come from this layer's own forward: no need to re-verify them
        return maxpool2d_backward(dout, self._saved_cache(dout), check_indices=False)
