"""``WinogradConv2d``, a 3x3 convolution computed by Winograd's F(2x2, 3x3) or F(4x4, 3x3), and
``use_winograd(model)``, the explicit pass that puts it in.

Same parameters, state-dict keys and outputs as the ``Conv2d`` it replaces (up to float rounding: about ``1e-6``
of the output's scale in float32 with 2x2 output tiles, a few ``1e-6`` with 4x4), 2.25 or 4 times fewer
multiplications (``tinynet.functional.winograd`` has the math and the measurements). Nothing runs it unless the
model asks, and ``print(model)`` shows it::

    features = use_winograd(Sequential(Conv2d(32, 64, 3), BatchNorm2d(64)))
    print(features)
    # Sequential(
    #   (0): WinogradConv2d(32, 64, kernel_size=(3, 3), stride=(1, 1); Winograd F(2x2, 3x3))
    #   (1): BatchNorm2d(64, eps=1e-05, momentum=0.1, affine=True)
    # )
"""
from __future__ import annotations

import numpy as np

from ..functional.winograd import conv2d_winograd_backward, conv2d_winograd_forward, tiles_for
from .conv import Conv2d
from .module import Module


class WinogradConv2d(Conv2d):
    """A ``Conv2d`` with a 3x3 kernel and stride 1 (any padding) whose forward and backward run F(tile x tile, 3x3):
    ``tile=2`` (the default; 4 multiplications per output instead of 9) or ``tile=4`` (2.25 per output, larger
    rounding, fewer and larger tiles: the faster on large maps, see ``benchmarks/README.md``).

    Build it as a ``Conv2d`` (``WinogradConv2d(32, 64, 3)``), or from one with ``from_conv`` / ``use_winograd``,
    which share that layer's own ``Parameter``s. Shapes and semantics are ``Conv2d``'s.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=0, bias: bool = True,
                 rng: np.random.Generator | None = None, dtype=np.float32, tile: int = 2):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias, rng, dtype)
        if not self.eligible(self):
            raise ValueError(f"WinogradConv2d: computes 3x3 kernels with stride 1 only, got kernel_size="
                             f"{self.kernel_size}, stride={self.stride}")
        self.tile = tiles_for(tile).m

    @staticmethod
    def eligible(conv: Module) -> bool:
        """Whether ``conv`` is a convolution this layer computes: a ``Conv2d`` (or this class) with a 3x3 kernel
        and stride 1."""
        return isinstance(conv, Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)

    @classmethod
    def from_conv(cls, conv: Conv2d, tile: int = 2) -> "WinogradConv2d":
        """The layer computing ``conv(x)`` by F(tile x tile, 3x3), holding ``conv``'s own parameters (shared, not
        copied), its ``input_grad`` setting and training mode. ``ValueError`` if ``eligible`` says no."""
        if type(conv) is not Conv2d or not cls.eligible(conv):
            raise ValueError(
                f"WinogradConv2d.from_conv: expected a Conv2d with a 3x3 kernel and stride 1, got {conv!r}")
        # built as conv was (the generator only fills weights that are replaced at once), then given conv's own
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    bias=conv.bias is not None, rng=np.random.default_rng(0), dtype=conv.weight.data.dtype, tile=tile)
        layer.register_parameter("weight", conv.weight)
        layer.register_parameter("bias", conv.bias)
        layer.input_grad = conv.input_grad
        return layer.train(conv.training)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}; Winograd F({self.tile}x{self.tile}, 3x3)"

    def _convolve(self, x: np.ndarray, bias: np.ndarray | None):
        return conv2d_winograd_forward(x, self.weight.data, bias, self.padding, self.tile)

    def _convolve_backward(self, dout: np.ndarray, cache):
        return conv2d_winograd_backward(dout, cache, need_dx=self.input_grad)


def use_winograd(model: Module, tile: int = 2) -> Module:
    """Replace every ``Conv2d`` of ``model`` with a 3x3 kernel and stride 1 by a ``WinogradConv2d`` of output tile
    ``tile`` (2 or 4) holding the same parameters (``model`` itself too, if it is one: then the new layer is
    returned).

    In place; returns ``model`` (or its replacement). State-dict keys, parameters (the same objects, so an
    optimizer built before stays valid) and results up to rounding are unchanged; other layers stay as they are.
    """
    tiles_for(tile)  # checked before anything is replaced
    if type(model) is Conv2d and WinogradConv2d.eligible(model):
        return WinogradConv2d.from_conv(model, tile)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is Conv2d and WinogradConv2d.eligible(child):
                setattr(parent, name, WinogradConv2d.from_conv(child, tile))
    return model
