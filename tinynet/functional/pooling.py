"""2-D max pooling as a stateless forward/backward pair (kernels in ``tinynet.kernels.maxpool``).

Shapes and math (PyTorch's ``max_pool2d``, floor mode)::

    x    (N, C, H, W)
    out  (N, C, OH, OW)    OH = (H + 2*ph - kh) // sh + 1,  OW = (W + 2*pw - kw) // sw + 1
    out[n, c, oh, ow] = max of x[n, c] over the window starting at (oh*sh - ph, ow*sw - pw)

The padding counts as ``-inf``. The derivative of a maximum is 1 for the element that won and 0 for
the others, so backward sends each ``dout`` entry to the input pixel that was the maximum (recorded
as ``argmax`` in the forward); where windows overlap, a pixel that won several windows receives the
sum of their gradients.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from .._checks import ShapeError, check_float_array, check_ndim
from ..kernels.maxpool import maxpool2d_backward as _maxpool2d_backward_kernel
from ..kernels.maxpool import maxpool2d_forward as _maxpool2d_forward_kernel


class MaxPool2dCache(NamedTuple):
    argmax: np.ndarray  # (N, C, OH, OW) int32, flat index h*W + w of each maximum in its plane
    x_shape: tuple[int, int, int, int]  # (N, C, H, W)


def check_pool_input(where: str, x: np.ndarray, kernel: tuple[int, int], padding: tuple[int, int]) -> None:
    """Raise a readable error naming ``where`` (a layer) for an input it cannot pool with a ``kernel``
    window and ``padding`` (pairs): not a float array, not ``(N, C, H, W)``, or a plane smaller than the window."""
    check_float_array(where, x)
    check_ndim(where, x, 4, "(N, C, H, W)")
    if 0 in x.shape[1:]:  # as PyTorch: only the batch may be empty (padding would make up a -inf output)
        raise ShapeError(f"{where}: expected an input with C, H and W at least 1 (only the batch N may be 0), got shape {x.shape}")
    (h, w), (kh, kw), (ph, pw) = x.shape[2:], kernel, padding
    if h + 2 * ph < kh or w + 2 * pw < kw:
        pad = f"{ph}" if ph == pw else f"{padding}"
        raise ShapeError(f"{where}: input of spatial size {h}x{w} (padding {pad}) is smaller than the kernel {kh}x{kw}")


def maxpool2d_forward(
    x: np.ndarray,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
) -> tuple[np.ndarray, MaxPool2dCache]:
    """Forward pass of 2-D max pooling.

    Parameters
    ----------
    x : (N, C, H, W), float32 or float64
    kernel_size : int or pair
    stride : int or pair, default ``kernel_size``
    padding : int or pair, at most half the kernel

    Returns
    -------
    out : (N, C, OH, OW), dtype of ``x``
    cache : MaxPool2dCache (the argmax indices and the input shape; not the input itself)
    """
    out, argmax = _maxpool2d_forward_kernel(x, kernel_size, stride, padding)
    return out, MaxPool2dCache(argmax, tuple(x.shape))


def maxpool2d_backward(dout: np.ndarray, cache: MaxPool2dCache) -> np.ndarray:
    """Backward pass of 2-D max pooling: ``dx[n, c].flat[argmax] += dout``.

    Parameters
    ----------
    dout : (N, C, OH, OW)
    cache : MaxPool2dCache from the forward

    Returns
    -------
    dx : (N, C, H, W), dtype of ``dout``; zero except at the pixels that were maxima
    """
    # the indices come from our own forward: no need to re-verify them
    return _maxpool2d_backward_kernel(dout, cache.argmax, cache.x_shape, check_indices=False)
