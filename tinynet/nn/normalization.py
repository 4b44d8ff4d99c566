"""``BatchNorm1d`` and ``BatchNorm2d``: parameters, buffers and checks; the math is ``tinynet.functional.batchnorm``'s."""
from __future__ import annotations

import math

import numpy as np

from .._checks import check_layer_input
from ..functional.batchnorm import batchnorm_backward, batchnorm_forward
from .module import Module
from .parameter import Parameter


class _BatchNorm(Module):
    """Shared machinery; subclasses fix the accepted input ranks."""

    _ranks: tuple[int, ...] = ()
    _layout: str = ""
    #: the functional pair ``forward``/``backward`` run; the fused ``BatchNormReLUMaxPool2d`` names its own,
    #: which takes the same arguments, so the argument list below is written once for both
    _forward = staticmethod(batchnorm_forward)
    _backward = staticmethod(batchnorm_backward)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True, dtype=np.float32):
        super().__init__()
        if num_features <= 0:
            raise ValueError(f"{type(self).__name__}: num_features must be positive, got {num_features}")
        if not (isinstance(eps, (int, float, np.integer, np.floating)) and math.isfinite(eps) and eps > 0):
            raise ValueError(f"{type(self).__name__}: eps must be positive, got {eps}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{type(self).__name__}: momentum must be in [0, 1] or None, got {momentum}")
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = momentum
        self.affine = bool(affine)
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype=dtype))
            self.bias = Parameter(np.zeros(num_features, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
        self.register_buffer("running_var", np.ones(num_features, dtype=dtype))
        # an int64 0-d array, as torch's, so PyTorch state dicts load key for key
        self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"

    def _check_input(self, x: np.ndarray) -> None:
        """Raise a readable error, naming this layer, for an input it cannot normalise."""
        where = self._where()
        check_layer_input(where, x, self._ranks, self._layout, self.num_features, "channels", self.running_mean, "running_mean")
        if self.training and x.size // x.shape[1] == 1:  # 0 is an empty batch, which PyTorch allows
            # checked here too so the message names the layer (the functional check cannot)
            raise ValueError(
                f"{where}: expected more than 1 value per channel when training, got input of shape {x.shape}"
                " (use a batch of 2 or more, or call .eval())"
            )

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        out, cache = self._forward(
            x,
            None if self.weight is None else self.weight.data,
            None if self.bias is None else self.bias.data,
            self.running_mean,
            self.running_var,
            self.training,
            self.momentum,
            self.eps,
            self.num_batches_tracked,
            **self._forward_options(),
        )
        self._save_for_backward(cache, out)
        return out

    def _forward_options(self) -> dict:
        """Keyword arguments of ``_forward`` beyond batch norm's own (none here; the fused block adds one)."""
        return {}

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx, dweight, dbias = self._backward(dout, self._saved_cache(dout))
        if self.weight is not None:
            self.weight.accumulate_grad(dweight)
            self.bias.accumulate_grad(dbias)
        return dx


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of features: input ``(N, C)`` or ``(N, C, L)``, statistics per channel over N (and L).

    ``out = gamma * (x - mu) / sqrt(var + eps) + beta``; parameters ``weight`` (gamma, ones) and ``bias``
    (beta, zeros) are ``(C,)``, buffers ``running_mean``, ``running_var`` and ``num_batches_tracked``.
    Training mode normalises with the batch's statistics and moves the running ones towards them
    (``momentum`` weighs the new batch, as PyTorch); eval mode uses the running ones. The forward and
    backward math is written once, in ``tinynet.functional.batchnorm``.
    """

    _ranks = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of feature maps: input ``(N, C, H, W)``, statistics per channel over N, H and W.

    Same math as ``BatchNorm1d`` with ``M = N * H * W`` values per channel.
    """

    _ranks = (4,)
    _layout = "(N, C, H, W)"
