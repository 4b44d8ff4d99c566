"""Element-wise activation layers: ``ReLU``, ``LeakyReLU``, ``ELU``, ``Tanh``, ``Sigmoid``.

Any input shape; output of the same shape and dtype. The math of each forward and backward pass is
in ``tinynet.functional.activation``.
"""
from __future__ import annotations

import numpy as np

from .._checks import check_float_array
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
        check_float_array(self._describe(), x)
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
