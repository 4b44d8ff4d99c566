"""Activation layers: element-wise ``ReLU``, ``LeakyReLU``, ``ELU``, ``Tanh``, ``Sigmoid``, and
``Softmax``/``LogSoftmax`` along one dimension.

Any input shape; output of the same shape and dtype. The math of each forward and backward pass is
in ``tinynet.functional.activation``.
"""
from __future__ import annotations

import numpy as np

from .._checks import ShapeError, check_float_array
from ..functional import activation as A
from .module import Module


def _finite(layer: str, name: str, value) -> float:
    """A hyper-parameter as a float, or ``ValueError`` for NaN, infinity or a non-number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value):
        raise ValueError(f"{layer}: {name} must be a finite number, got {value!r}")
    return float(value)


class _Activation(Module):
    def forward(self, x: np.ndarray) -> np.ndarray:
        check_float_array(self._where(), x)
        out, cache = self._forward(x)
        self._save_for_backward(cache, out)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        cache = self._saved_cache(dout)
        return self._backward(dout, cache)


class ReLU(_Activation):
    """``max(x, 0)``; backward passes ``dout`` where the output is positive."""

    def _forward(self, x):
        return A.relu_forward(x)

    def _backward(self, dout, cache):
        return A.relu_backward(dout, cache)


class LeakyReLU(_Activation):
    """``x if x > 0 else negative_slope * x``."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = _finite("LeakyReLU", "negative_slope", negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"

    def _forward(self, x):
        return A.leaky_relu_forward(x, self.negative_slope)

    def _backward(self, dout, cache):
        return A.leaky_relu_backward(dout, cache, self.negative_slope)


class ELU(_Activation):
    """``x if x > 0 else alpha * (exp(x) - 1)``."""

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = _finite("ELU", "alpha", alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"

    def _forward(self, x):
        return A.elu_forward(x, self.alpha)

    def _backward(self, dout, cache):
        return A.elu_backward(dout, cache, self.alpha)


class Tanh(_Activation):
    """``tanh(x)``; backward ``dout * (1 - out^2)``."""

    def _forward(self, x):
        return A.tanh_forward(x)

    def _backward(self, dout, cache):
        return A.tanh_backward(dout, cache)


class Sigmoid(_Activation):
    """``1 / (1 + exp(-x))``; backward ``dout * out * (1 - out)``."""

    def _forward(self, x):
        return A.sigmoid_forward(x)

    def _backward(self, dout, cache):
        return A.sigmoid_backward(dout, cache)


class _AlongDim(_Activation):
    """An activation that normalises along one dimension ``dim`` (PyTorch's ``dim`` argument)."""

    def __init__(self, dim: int):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            # torch's implicit dim (dim=None) is deprecated there; here the axis is always said
            raise TypeError(f"{type(self).__name__}: dim must be an int (the class axis, e.g. 1 for (N, C) logits), got {dim!r}")
        self.dim = int(dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_float_array(self._where(), x)
        if x.ndim == 0 or not -x.ndim <= self.dim < x.ndim:
            raise ShapeError(f"{self._describe()}: dim {self.dim} is out of range for an input of shape {x.shape}")
        return super().forward(x)


class Softmax(_AlongDim):
    """``exp(x_i) / sum_j exp(x_j)`` along ``dim``: each slice becomes a probability distribution.

    Computed around the maximum of each slice (no overflow at logits of 1e4). To train a classifier,
    feed the logits to ``CrossEntropyLoss`` instead (it contains a log-softmax, more accurate than
    ``log(softmax(x))``).
    """

    def _forward(self, x):
        return A.softmax_forward(x, self.dim)

    def _backward(self, dout, cache):
        return A.softmax_backward(dout, cache)


class LogSoftmax(_AlongDim):
    """``x_i - log sum_j exp(x_j)`` along ``dim`` (log-sum-exp: finite where softmax underflows to 0)."""

    def _forward(self, x):
        return A.log_softmax_forward(x, self.dim)

    def _backward(self, dout, cache):
        return A.log_softmax_backward(dout, cache)
