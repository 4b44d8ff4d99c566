"""``Linear``: a fully connected layer (see ``tinynet.functional.linear`` for the math)."""
from __future__ import annotations

import numpy as np

from .. import init
from .._checks import check_layer_input
from ..functional.linear import linear_backward, linear_forward
from .module import Module
from .parameter import Parameter


class Linear(Module):
    """``y = x @ weight.T + bias``.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
        Whether to learn an additive bias.
    rng : np.random.Generator, optional
        Source of the initial weights (PyTorch's default init: ``U(-1/sqrt(in), 1/sqrt(in))``).
    dtype : float32 (default) or float64

    Shapes
    ------
    input ``(N, in_features)`` -> output ``(N, out_features)``;
    ``weight (out_features, in_features)``, ``bias (out_features,)``.

    Backward: ``dx = dout @ weight``, ``dweight += dout.T @ x``, ``dbias += dout.sum(0)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        rng: np.random.Generator | None = None,
        dtype=np.float32,
    ):
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ValueError(f"Linear: in_features and out_features must be positive, got {in_features}, {out_features}")
        rng = np.random.default_rng() if rng is None else rng
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.weight = Parameter(init.default_weight_(np.empty((out_features, in_features), dtype=dtype), rng),
                                copy=False)
        if bias:
            self.bias = Parameter(init.default_bias_(np.empty(out_features, dtype=dtype), in_features, rng), copy=False)
        else:
            self.register_parameter("bias", None)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

    _output_dtype_of = "weight"  # the output has the weight's dtype (checked in forward)

    def forward(self, x: np.ndarray) -> np.ndarray:
        where = self._where()
        check_layer_input(where, x, 2, "(N, in_features)", self.in_features, "features", self.weight.data)
        bias = None if self.bias is None else self.bias.data
        out, cache = linear_forward(x, self.weight.data, bias)
        self._save_for_backward(cache, out)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        cache = self._saved_cache(dout)
        dx, dweight, dbias = linear_backward(dout, cache)
        self.weight.accumulate_grad(dweight)
        if self.bias is not None:
            self.bias.accumulate_grad(dbias)
        return dx
