"""Runs of layers that ``Sequential`` executes as one fused kernel, with the layers' own parameters.

``BatchNorm2d -> ReLU -> MaxPool2d(2, 2)`` (the tail of a conv block) is run by
``tinynet.functional.fused``: the same outputs, running statistics and gradients as the three layers
run one by one, in a fraction of the memory traffic, and without keeping the batch-norm and ReLU
outputs for backward. Nothing about the model changes: the three modules stay in the ``Sequential``
(state-dict keys, ``model[i]``, ``print(model)``), and they still run one by one when called
directly, when their ``forward`` is wrapped (``Module.summary`` does that), or when the
``Sequential``'s ``fuse`` attribute is False.
"""
from __future__ import annotations

import numpy as np

from .._checks import check_dout
from .._grad_mode import is_grad_enabled
from ..functional.fused import batchnorm_relu_maxpool2d_backward, batchnorm_relu_maxpool2d_forward
from .activation import ReLU
from .module import Module
from .normalization import BatchNorm2d
from .pooling import MaxPool2d


class BatchNormReLUMaxPool:
    """``pool(relu(bn(x)))`` for three modules of a ``Sequential`` (see ``fusable``); not a Module:
    it owns nothing, the gradients go to ``bn.weight`` / ``bn.bias``."""

    def __init__(self, bn: BatchNorm2d, relu: ReLU, pool: MaxPool2d):
        self.bn, self.relu, self.pool = bn, relu, pool
        self.cache = None

    @staticmethod
    def fusable(modules: list[Module], start: int) -> bool:
        """Whether ``modules[start:start + 3]`` is BatchNorm2d, ReLU, MaxPool2d(2, stride 2, no padding),
        with none of their ``forward`` methods replaced (a wrapper must see its layer run)."""
        if start + 3 > len(modules):
            return False
        bn, relu, pool = modules[start : start + 3]
        return (
            type(bn) is BatchNorm2d
            and type(relu) is ReLU
            and type(pool) is MaxPool2d
            and pool._kernel == (2, 2)
            and pool._step == (2, 2)
            and pool._pad == (0, 0)
            and not any("forward" in m.__dict__ for m in (bn, relu, pool))
        )

    def accepts(self, x) -> bool:
        """Inputs the fused kernel takes; anything else runs unfused (whose layers raise the errors)."""
        return isinstance(x, np.ndarray) and x.ndim == 4 and x.shape[2] >= 2 and x.shape[3] >= 2

    def forward(self, x: np.ndarray) -> np.ndarray:
        bn = self.bn
        bn._check_input(x)
        out, cache = batchnorm_relu_maxpool2d_forward(
            x,
            None if bn.weight is None else bn.weight.data,
            None if bn.bias is None else bn.bias.data,
            bn.running_mean,
            bn.running_var,
            bn.training,
            bn.momentum,
            bn.eps,
            bn.num_batches_tracked,
        )
        for module in (self.bn, self.relu, self.pool):
            module._save_for_backward(None)  # their own backward must not run on an older forward's cache
        self.cache = cache if is_grad_enabled() else None
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self.cache is None:
            raise RuntimeError(
                f"{self.bn._describe()} + ReLU + MaxPool2d (fused): backward() called before forward() (or the"
                " forward ran inside tinynet.no_grad(), which keeps nothing for backward)"
            )
        check_dout(f"{self.bn._describe()} + ReLU + MaxPool2d (fused)", dout, self.cache.out.shape, self.cache.out.dtype)
        dx, dweight, dbias = batchnorm_relu_maxpool2d_backward(dout, self.cache)
        if self.bn.weight is not None:
            self.bn.weight.accumulate_grad(dweight)
            self.bn.bias.accumulate_grad(dbias)
        return dx
