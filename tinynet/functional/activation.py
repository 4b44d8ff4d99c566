"""Activations. Each forward returns ``(out, cache)``; each backward ``dx``.

Element-wise ones (ReLU, LeakyReLU, ELU, tanh, sigmoid) and the two along one axis (softmax,
log-softmax). The caches keep the output (or input) the derivative is written in; for ReLU, tanh,
sigmoid and both softmaxes the derivative is a function of the output, so nothing beyond the array the
next layer already holds is kept.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import backends, kernels


class ActivationCache(NamedTuple):
    x: np.ndarray | None  # the input, when the derivative needs it
    out: np.ndarray | None  # the output, when the derivative needs it


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, ActivationCache]:
    """``out = max(x, 0)`` (NaN stays NaN), by a parallel Numba kernel, or ``relu_forward_reference`` when
    ``tinynet.backends.numba.enabled`` is False.

    ``out`` has ``x``'s shape and dtype (a non-contiguous ``x`` is copied first: the kernel reads it flat).
    """
    if not backends.numba.enabled:
        return relu_forward_reference(x)
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    kernels.elementwise.relu_forward_kernel(x.reshape(-1), out.reshape(-1))
    return out, ActivationCache(None, out)


def relu_backward(dout: np.ndarray, cache: ActivationCache) -> np.ndarray:
    """``dx = dout * [out > 0]`` (the subgradient at 0 is 0, as PyTorch); same shape and dtype as ``dout``
    (``relu_backward_reference`` when ``tinynet.backends.numba.enabled`` is False)."""
    dout = np.ascontiguousarray(dout)
    out = np.ascontiguousarray(cache.out)
    if dout.shape != out.shape:
        raise ValueError(f"relu_backward: dout shape {dout.shape} does not match the output shape {out.shape}")
    if not backends.numba.enabled:
        return relu_backward_reference(dout, cache)
    dx = np.empty_like(dout)
    kernels.elementwise.relu_backward_kernel(dout.reshape(-1), out.reshape(-1), dx.reshape(-1))
    return dx


def relu_forward_reference(x: np.ndarray) -> tuple[np.ndarray, ActivationCache]:
    """``relu_forward`` in NumPy: the reference the kernel is tested against."""
    out = np.maximum(x, 0)
    return out, ActivationCache(None, out)


def relu_backward_reference(dout: np.ndarray, cache: ActivationCache) -> np.ndarray:
    """``relu_backward`` in NumPy: the reference the kernel is tested against."""
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


class SoftmaxCache(NamedTuple):
    out: np.ndarray  # softmax(x) or log_softmax(x): both derivatives are written in the output
    dim: int


def _shift_by_max(x: np.ndarray, dim: int) -> np.ndarray:
    """``x - max(x)`` along ``dim``: softmax is unchanged, the largest exponent becomes ``exp(0) = 1``,
    so ``exp`` cannot overflow (logits of 1e4) and the sum is at least 1 (no ``log(0)`` at -1e4)."""
    return x - x.max(axis=dim, keepdims=True, initial=-np.inf)


def softmax_forward(x: np.ndarray, dim: int) -> tuple[np.ndarray, SoftmaxCache]:
    """``out_i = exp(x_i) / sum_j exp(x_j)`` along ``dim``; ``out`` has ``x``'s shape and dtype."""
    e = np.exp(_shift_by_max(x, dim))
    out = e / e.sum(axis=dim, keepdims=True)
    return out, SoftmaxCache(out, dim)


def softmax_backward(dout: np.ndarray, cache: SoftmaxCache) -> np.ndarray:
    """``dx_i = out_i (dout_i - sum_j dout_j out_j)``, from ``d out_j / d x_i = out_j ([i = j] - out_i)``."""
    out = cache.out
    return out * (dout - (dout * out).sum(axis=cache.dim, keepdims=True))


def log_softmax_forward(x: np.ndarray, dim: int) -> tuple[np.ndarray, SoftmaxCache]:
    """``out_i = x_i - log sum_j exp(x_j)`` along ``dim`` (log-sum-exp around the max: no overflow,
    and finite even where ``softmax`` itself underflows to 0)."""
    shifted = _shift_by_max(x, dim)
    with np.errstate(divide="ignore"):  # only an empty dim sums to 0, and then the output is empty
        out = shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))
    return out, SoftmaxCache(out, dim)


def log_softmax_backward(dout: np.ndarray, cache: SoftmaxCache) -> np.ndarray:
    """``dx_i = dout_i - softmax_i sum_j dout_j``, from ``d out_j / d x_i = [i = j] - softmax_i``."""
    return dout - np.exp(cache.out) * dout.sum(axis=cache.dim, keepdims=True)
