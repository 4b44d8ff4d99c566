"""``BatchNormReLUMaxPool2d``, a fused block, and ``fuse(model)``, the explicit pass that puts it in.

``BatchNorm2d -> ReLU -> MaxPool2d(2, 2)`` is the tail of every conv block in NaimishNet. Run one by
one, the three layers read and write the full-size feature map seven times and keep two full-size
copies for backward; ``tinynet.functional.fused`` computes the same outputs, running statistics and
gradients in two memory passes each way. Nothing runs fused unless the model asks for it, as with
PyTorch's ``torch.ao.quantization.fuse_modules``::

    features = fuse(Sequential(Conv2d(1, 32, 4), BatchNorm2d(32), ReLU(), MaxPool2d(2, 2)))
    print(features)
    # Sequential(
    #   (0): Conv2d(1, 32, kernel_size=(4, 4), stride=(1, 1))
    #   (1): BatchNormReLUMaxPool2d(32, eps=1e-05, momentum=0.1, affine=True; fused BatchNorm2d -> ReLU -> MaxPool2d(2, 2))
    #   (2): Identity()
    #   (3): Identity()
    # )

The block takes the batch norm's place and its very ``Parameter``s and buffers, so the state-dict
keys (``1.weight``, ``1.running_mean``, ...) and an optimizer built before fusing stay valid; the
ReLU and the pool become ``Identity`` so the later children keep their names. ``print(model)`` and
``model.summary()`` show the block, because it is what runs.
"""
from __future__ import annotations

import numpy as np

from .._checks import pair
from .._grad_mode import is_grad_enabled
from ..functional.fused import batchnorm_relu_maxpool2d_backward, batchnorm_relu_maxpool2d_forward
from ..functional.pooling import check_pool_input
from .activation import ReLU
from .container import Identity, Sequential
from .module import Module
from .normalization import BatchNorm2d
from .pooling import MaxPool2d


class BatchNormReLUMaxPool2d(BatchNorm2d):
    """``max_pool2d(relu(batch_norm(x)), 2, 2)`` as one layer: a ``BatchNorm2d`` (same arguments,
    parameters, buffers, train/eval behaviour) whose output is rectified and 2x2-pooled in the same kernel.

    Shapes
    ------
    input ``(N, C, H, W)`` with H, W at least 2 -> output ``(N, C, H // 2, W // 2)`` (a last odd row
    or column is dropped by the pool, as ``MaxPool2d(2, 2)``, but counts in the batch statistics).

    The math is that of the three layers (``tinynet.functional.fused``); build it with ``fuse(model)``
    or ``BatchNormReLUMaxPool2d.from_modules(bn, relu, pool)``.
    """

    pool_size = (2, 2)  # the only pool the fused kernel computes: 2x2 windows, stride 2, no padding
    pool_padding = (0, 0)

    @classmethod
    def from_modules(cls, bn: BatchNorm2d, relu: ReLU, pool: MaxPool2d) -> "BatchNormReLUMaxPool2d":
        """The block computing ``pool(relu(bn(x)))``, holding ``bn``'s own parameters and buffers
        (shared, not copied) and its training mode. ``ValueError`` if ``fusable`` says no."""
        if not cls.fusable(bn, relu, pool):
            raise ValueError(
                "BatchNormReLUMaxPool2d: expected BatchNorm2d, ReLU, MaxPool2d(2, 2) (stride 2, no padding),"
                f" got {bn!r}, {relu!r}, {pool!r}"
            )
        block = cls(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine, dtype=bn.running_mean.dtype)
        for name in ("weight", "bias"):
            block.register_parameter(name, getattr(bn, name))
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            block.register_buffer(name, getattr(bn, name))
        return block.train(bn.training)

    @staticmethod
    def fusable(bn: Module, relu: Module, pool: Module) -> bool:
        """Whether three modules are exactly ``BatchNorm2d``, ``ReLU``, ``MaxPool2d(2, 2)`` without padding
        (subclasses may compute something else, so they are left alone)."""
        return (
            type(bn) is BatchNorm2d
            and type(relu) is ReLU
            and type(pool) is MaxPool2d
            and pair(pool.kernel_size) == (2, 2)
            and pair(pool.stride) == (2, 2)
            and pair(pool.padding) == (0, 0)
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}; fused BatchNorm2d -> ReLU -> MaxPool2d(2, 2)"

    # forward and backward are BatchNorm2d's, running this pair: same arguments, same gradients to accumulate
    _forward = staticmethod(batchnorm_relu_maxpool2d_forward)
    _backward = staticmethod(batchnorm_relu_maxpool2d_backward)

    def _forward_options(self) -> dict:
        # under tinynet.no_grad no backward follows: plain NumPy then pools without window positions (4x faster)
        return {"need_cache": is_grad_enabled()}

    def _check_input(self, x: np.ndarray) -> None:
        super()._check_input(x)  # BatchNorm2d's checks, then the pool's: each error names this block
        check_pool_input(self._where(), x, self.pool_size, self.pool_padding)


def fuse(model: Module) -> Module:
    """Replace, in every ``Sequential`` of ``model`` (``model`` included), each run of ``BatchNorm2d``,
    ``ReLU``, ``MaxPool2d(2, 2)`` by a ``BatchNormReLUMaxPool2d`` followed by two ``Identity``.

    In place; returns ``model``. State-dict keys, parameters (the same objects) and results are
    unchanged; other layers, and runs that differ in any way, stay as they are.
    """
    for module in list(model.modules()):
        if not isinstance(module, Sequential):
            continue
        layers = list(module)
        i = 0
        while i + 3 <= len(layers):
            if BatchNormReLUMaxPool2d.fusable(*layers[i : i + 3]):
                module[i] = BatchNormReLUMaxPool2d.from_modules(*layers[i : i + 3])
                module[i + 1], module[i + 2] = Identity(), Identity()
                i += 3
            else:
                i += 1
    return model
