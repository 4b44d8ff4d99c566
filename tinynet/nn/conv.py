"""``Conv2d``: a 2-D convolution layer (the math and the im2col implementation are ``tinynet.functional.conv``'s)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import init
from .._checks import ShapeError, check_layer_input, pair
from ..functional.conv import conv2d_backward, conv2d_forward
from .module import Module
from .parameter import Parameter


class Conv2d(Module):
    """2-D convolution over a batch of images (a cross-correlation, exactly as ``torch.nn.Conv2d``).

    Parameters
    ----------
    in_channels, out_channels : int
        ``C`` and ``F``.
    kernel_size : int or pair ``(kh, kw)``
    stride : int or pair ``(sh, sw)``, default 1
    padding : int or pair ``(ph, pw)``, default 0; zeros are added on every side
    bias : bool
        Whether to learn one additive bias per output channel.
    rng : np.random.Generator, optional
        Source of the initial weights: PyTorch's default ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``
        with ``fan_in = C * kh * kw``, for the weight and the bias.
    dtype : float32 (default) or float64

    Shapes
    ------
    input ``(N, C, H, W)`` -> output ``(N, F, OH, OW)`` with
    ``OH = (H + 2*ph - kh) // sh + 1`` and ``OW = (W + 2*pw - kw) // sw + 1``;
    ``weight (F, C, kh, kw)``, ``bias (F,)``.

    ``out[n, f, oh, ow] = bias[f] + sum_{c,i,j} weight[f, c, i, j] * xpad[n, c, oh*sh + i, ow*sw + j]``.
    How it is computed (im2col and one matrix product, chunked; the backward products; the 1x1 and
    single-channel shortcuts) is written once, in ``tinynet.functional.conv``. This layer keeps the
    parameters, accumulates their gradients and keeps the cache between forward and backward.

    Examples
    --------
    >>> conv = Conv2d(1, 32, kernel_size=4, rng=np.random.default_rng(0))
    >>> conv(np.zeros((8, 1, 96, 96), dtype=np.float32)).shape
    (8, 32, 93, 93)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        bias: bool = True,
        rng: np.random.Generator | None = None,
        dtype=np.float32,
    ):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = pair(padding, "padding")
        if in_channels <= 0 or out_channels <= 0:
            raise ValueError(f"Conv2d: in_channels and out_channels must be positive, got {in_channels}, {out_channels}")
        if min(self.kernel_size) < 1:
            raise ValueError(f"Conv2d: kernel_size must be positive, got {self.kernel_size}")
        if min(self.stride) < 1:
            raise ValueError(f"Conv2d: stride must be positive, got {self.stride}")
        if min(self.padding) < 0:
            raise ValueError(f"Conv2d: padding must be non-negative, got {self.padding}")
        rng = np.random.default_rng() if rng is None else rng
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        kh, kw = self.kernel_size
        weight = np.empty((out_channels, in_channels, kh, kw), dtype=dtype)
        self.weight = Parameter(init.default_weight_(weight, rng), copy=False)
        if bias:
            fan_in = in_channels * kh * kw
            self.bias = Parameter(init.default_bias_(np.empty(out_channels, dtype=dtype), fan_in, rng), copy=False)
        else:
            self.register_parameter("bias", None)
        # Whether backward computes dx. The first layer of a network reads the images, which need no
        # gradient: turning this off there skips a matmul and a col2im (PyTorch skips them when the
        # input tensor does not require grad). backward then returns None.
        self.input_grad = True

    # how the convolution is computed, after forward's checks: im2col here, Winograd in ``WinogradConv2d``
    def _convolve(self, x: np.ndarray, bias: np.ndarray | None):
        return conv2d_forward(x, self.weight.data, bias, self.stride, self.padding)

    def _convolve_backward(self, dout: np.ndarray, cache):
        return conv2d_backward(dout, cache, need_dx=self.input_grad)

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.bias is None:
            text += ", bias=False"
        return text

    _output_dtype_of = "weight"  # the output has the weight's dtype (checked in forward)

    def forward(self, x: np.ndarray) -> np.ndarray:
        where = self._where()
        check_layer_input(where, x, 4, "(N, C, H, W)", self.in_channels, "channels", self.weight.data)
        (h, w), (kh, kw), (ph, pw) = x.shape[2:], self.kernel_size, self.padding
        if x.shape[0] > 0 and h * w == 0:  # as PyTorch: only an empty batch may have an empty image
            raise ShapeError(f"{where}: expected an input with H and W at least 1 (only the batch N may be 0), got shape {x.shape}")
        if h + 2 * ph < kh or w + 2 * pw < kw:
            pad = f"{ph}" if ph == pw else f"{self.padding}"
            raise ShapeError(
                f"{where}: input of spatial size {h}x{w} (padding {pad}) is smaller than the kernel {kh}x{kw}"
            )
        out, cache = self._convolve(x, None if self.bias is None else self.bias.data)
        self._save_for_backward(cache, out)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx, dweight, dbias = self._convolve_backward(dout, self._saved_cache(dout))
        self.weight.accumulate_grad(dweight)
        if self.bias is not None:
            self.bias.accumulate_grad(dbias)
        return dx
