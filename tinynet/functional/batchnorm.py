"""Batch normalisation over the channel axis (PyTorch's ``BatchNorm1d``/``BatchNorm2d`` semantics).

One implementation serves both: for ``x`` of shape ``(N, C)``, ``(N, C, L)`` or ``(N, C, H, W)`` the
statistics of channel ``c`` are taken over every axis but axis 1, i.e. over ``M = N * L`` (or ``N*H*W``)
values.

Conventions (PyTorch's, not CS231n's): ``momentum`` weighs the NEW statistic,
``running = (1 - momentum) * running + momentum * batch``; the running variance is updated with the
*unbiased* batch variance (``* M / (M - 1)``) while the output is normalised with the biased one.

``batchnorm_forward``/``batchnorm_backward`` run the Numba kernels of ``tinynet.kernels.batchnorm``
(two memory passes each way); ``batchnorm_forward_reference``/``batchnorm_backward_reference`` are the
same math in plain NumPy, one operation per line, which the tests compare them against. Both keep the
same cache: the input ``x`` and the per-channel statistics, from which ``x_hat`` is recomputed in
backward rather than stored (one full-size array fewer).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import check_dout
from ..kernels.batchnorm import batchnorm_backward_kernel, channel_stats, normalize


class BatchNormCache(NamedTuple):
    x: np.ndarray  # the input; x_hat = (x - mean) * inv_std is recomputed from it
    mean: np.ndarray  # (C,) float64: the batch mean (train) or the running mean (eval)
    inv_std: np.ndarray  # (C,) float64: 1 / sqrt(var + eps) of the batch (train) or running (eval) variance
    weight: np.ndarray | None  # (C,) gamma, None without affine
    training: bool


def _channel_axes(x: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Reduction axes (all but 1) and the shape that broadcasts a (C,) vector against x."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    return axes, shape


def _statistics(
    x: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    training: bool,
    momentum: float | None,
    eps: float,
    num_batches_tracked: np.ndarray | None,
    batch_stats,
) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, inv_std)`` to normalise with, float64; in train mode also updates the running buffers.

    ``batch_stats(x) -> (mean, biased var)`` is the kernel or the NumPy reference.
    """
    if not training:
        mean = running_mean.astype(np.float64)
        return mean, 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
    count = x.size // x.shape[1]
    if count == 1:
        raise ValueError(f"batchnorm: expected more than 1 value per channel when training, got input of shape {x.shape}")
    if num_batches_tracked is not None:
        num_batches_tracked += 1
    if count == 0:
        # an empty batch (N = 0, or an empty H or W) normalises nothing; PyTorch counts it in
        # num_batches_tracked and leaves the running statistics as they were
        return np.zeros(x.shape[1]), np.ones(x.shape[1])
    mean, var = batch_stats(x)
    if momentum is None:  # cumulative moving average, as PyTorch
        factor = 1.0 / float(num_batches_tracked) if num_batches_tracked is not None else 0.0
    else:
        factor = momentum
    running_mean[...] = (1.0 - factor) * running_mean + factor * mean
    running_var[...] = (1.0 - factor) * running_var + factor * var * (count / (count - 1))
    return mean, 1.0 / np.sqrt(var + eps)


def batchnorm_forward(
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    training: bool,
    momentum: float | None = 0.1,
    eps: float = 1e-5,
    num_batches_tracked: np.ndarray | None = None,
) -> tuple[np.ndarray, BatchNormCache]:
    """Normalise each channel, then scale and shift it.

    Train mode::

        mu = mean(x), var = mean((x - mu)^2)          over the M values of each channel
        x_hat = (x - mu) / sqrt(var + eps)
        out = gamma * x_hat + beta
        running_mean <- (1 - momentum) * running_mean + momentum * mu          (in place)
        running_var  <- (1 - momentum) * running_var  + momentum * var * M / (M - 1)

    Eval mode uses ``running_mean``/``running_var`` instead of ``mu``/``var`` and updates nothing.
    An empty batch gives an empty output; in train mode it leaves the running statistics unchanged but
    still counts in ``num_batches_tracked`` (as PyTorch). One value per channel raises ``ValueError``.
    ``momentum=None`` gives the cumulative average (factor ``1 / num_batches_tracked``), as PyTorch.

    Parameters
    ----------
    x : (N, C) or (N, C, L) or (N, C, H, W)
    weight, bias : (C,) or None (no affine transform)
    running_mean, running_var : (C,), updated in place in train mode
    num_batches_tracked : 0-d int64 array, incremented in place in train mode (optional)

    Returns
    -------
    out : same shape and dtype as x
    cache : BatchNormCache
    """
    mean, inv_std = _statistics(x, running_mean, running_var, training, momentum, eps, num_batches_tracked, channel_stats)
    ones = np.ones(x.shape[1]) if weight is None else weight.astype(np.float64)
    zeros = np.zeros(x.shape[1]) if bias is None else bias.astype(np.float64)
    out = normalize(x, mean, inv_std, ones, zeros)
    return out, BatchNormCache(x, mean, inv_std, weight, training)


def batchnorm_backward(dout: np.ndarray, cache: BatchNormCache) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Gradients of batch normalisation.

    With ``dbeta = sum(dout)`` and ``dgamma = sum(dout * x_hat)`` over the ``M`` values of a channel,
    train mode (where mu and var depend on x)::

        dx = gamma / sqrt(var + eps) * (dout - dbeta / M - x_hat * dgamma / M)

    and eval mode (statistics are constants)::

        dx = gamma / sqrt(running_var + eps) * dout

    Returns
    -------
    dx : same shape and dtype as dout
    dweight, dbias : (C,), or None without affine
    """
    x, mean, inv_std, weight, training = cache
    check_dout("batchnorm_backward", dout, x.shape, x.dtype)  # the output has the input's shape and dtype
    gamma = np.ones(x.shape[1]) if weight is None else weight.astype(np.float64)
    dx, dweight, dbias = batchnorm_backward_kernel(dout, x, mean, inv_std, gamma, training)
    if weight is None:
        return dx, None, None
    return dx, dweight.astype(x.dtype), dbias.astype(x.dtype)


# ---------------------------------------------------------------------------------------------
# NumPy reference: the same math, one operation per line
# ---------------------------------------------------------------------------------------------
def _reference_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    axes, _ = _channel_axes(x)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=axes)
    return mean, np.mean(np.square(x64 - mean.reshape((1, -1) + (1,) * (x.ndim - 2))), axis=axes)


def batchnorm_forward_reference(
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    training: bool,
    momentum: float | None = 0.1,
    eps: float = 1e-5,
    num_batches_tracked: np.ndarray | None = None,
) -> tuple[np.ndarray, BatchNormCache]:
    """``batchnorm_forward`` in plain NumPy (same arguments, same cache)."""
    _, shape = _channel_axes(x)
    mean, inv_std = _statistics(x, running_mean, running_var, training, momentum, eps, num_batches_tracked, _reference_stats)
    x_hat = (x - mean.reshape(shape)) * inv_std.reshape(shape)
    out = x_hat * weight.reshape(shape) if weight is not None else x_hat
    if bias is not None:
        out = out + bias.reshape(shape)
    return out.astype(x.dtype), BatchNormCache(x, mean, inv_std, weight, training)


def batchnorm_backward_reference(dout: np.ndarray, cache: BatchNormCache) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``batchnorm_backward`` in plain NumPy."""
    x, mean, inv_std, weight, training = cache
    axes, shape = _channel_axes(dout)
    x_hat = (x - mean.reshape(shape)) * inv_std.reshape(shape)
    dbias = dout.sum(axis=axes)  # (C,)
    dweight = np.sum(dout * x_hat, axis=axes)  # (C,)
    gamma = np.ones(x.shape[1]) if weight is None else weight
    scale = (gamma * inv_std).reshape(shape)
    if training:
        count = max(dout.size // dout.shape[1], 1)  # an empty batch: dx is empty, the sums are 0
        dx = scale * (dout - (dbias / count).reshape(shape) - x_hat * (dweight / count).reshape(shape))
    else:
        dx = scale * dout
    if weight is None:
        return dx.astype(x.dtype), None, None
    return dx.astype(x.dtype), dweight.astype(x.dtype), dbias.astype(x.dtype)
