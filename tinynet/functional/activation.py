"""Element-wise activations. Each forward returns ``(out, cache)``; each backward ``dx``.

The caches keep the output (or input) the derivative is written in; for ReLU, tanh and sigmoid the
derivative is a function of the output, so nothing beyond the array the next layer already holds is kept.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..kernels import elementwise


class ActivationCache(NamedTuple):
    x: np.ndarray | None  # the input, when the derivative needs it
    out: np.ndarray | None  # the output, when the derivative needs it


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, ActivationCache]:
    """``out = max(x, 0)`` (NaN stays NaN), by a parallel Numba kernel (reference: ``relu_forward_reference``)."""
    out = elementwise.relu_forward(x)
    return out, ActivationCache(None, out)


def relu_backward(dout: np.ndarray, cache: ActivationCache) -> np.ndarray:
    """``dx = dout * [out > 0]`` (the subgradient at 0 is 0, as PyTorch)."""
    return elementwise.relu_backward(dout, cache.out)


def relu_forward_reference(x: np.ndarray) -> tuple[np.ndarray, ActivationCache]:
    """``relu_forward`` in NumPy."""
    out = np.maximum(x, 0)
    return out, ActivationCache(None, out)


def relu_backward_reference(dout: np.ndarray, cache: ActivationCache) -> np.ndarray:
    """``relu_backward`` in NumPy."""
    return np.where(cache.out > 0, dout, 0).astype(dout.dtype, copy=False)


def leaky_relu_forward(x: np.ndarray, negative_slope: float = 0.01) -> tuple[np.ndarray, ActivationCache]:
    """``out = x if x > 0 else negative_slope * x``."""
    return np.where(x > 0, x, x * negative_slope), ActivationCache(x, None)


def leaky_relu_backward(dout: np.ndarray, cache: ActivationCache, negative_slope: float = 0.01) -> np.ndarray:
    """``dx = dout if x > 0 else negative_slope * dout``."""
    return np.where(cache.x > 0, dout, dout * negative_slope)


def elu_forward(x: np.ndarray, alpha: float = 1.0) -> tuple[np.ndarray, ActivationCache]:
    """``out = x if x > 0 else alpha * (exp(x) - 1)``."""
    # expm1 of min(x, 0): exact near 0 and never overflows for large positive x
    out = np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))
    return out, ActivationCache(x, out)


def elu_backward(dout: np.ndarray, cache: ActivationCache, alpha: float = 1.0) -> np.ndarray:
    """``dx = dout if x > 0 else dout * (out + alpha)`` (since d/dx alpha*(e^x - 1) = out + alpha)."""
    return np.where(cache.x > 0, dout, dout * (cache.out + alpha))


def tanh_forward(x: np.ndarray) -> tuple[np.ndarray, ActivationCache]:
    out = np.tanh(x)
    return out, ActivationCache(None, out)


def tanh_backward(dout: np.ndarray, cache: ActivationCache) -> np.ndarray:
    """``dx = dout * (1 - out^2)``."""
    return dout * (1 - np.square(cache.out))


def sigmoid_forward(x: np.ndarray) -> tuple[np.ndarray, ActivationCache]:
    """``out = 1 / (1 + exp(-x))``, computed without overflow for large |x|."""
    e = np.exp(-np.abs(x))  # in (0, 1]: never overflows
    out = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
    return out, ActivationCache(None, out)


def sigmoid_backward(dout: np.ndarray, cache: ActivationCache) -> np.ndarray:
    """``dx = dout * out * (1 - out)``."""
    return dout * cache.out * (1 - cache.out)
