"""Batch normalisation over the channel axis (PyTorch's ``BatchNorm1d``/``BatchNorm2d`` semantics).

One implementation serves both: for ``x`` of shape ``(N, C)``, ``(N, C, L)`` or ``(N, C, H, W)`` the
statistics of channel ``c`` are taken over every axis but axis 1, i.e. over ``M = N * L`` (or ``N*H*W``)
values.

Conventions (PyTorch's, not CS231n's): ``momentum`` weighs the NEW statistic,
``running = (1 - momentum) * running + momentum * batch``; the running variance is updated with the
*unbiased* batch variance (``* M / (M - 1)``) while the output is normalised with the biased one.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class BatchNormCache(NamedTuple):
    x_hat: np.ndarray  # normalised input, same shape as x
    inv_std: np.ndarray  # (C,) 1 / sqrt(var + eps), of the batch (train) or the running variance (eval)
    weight: np.ndarray | None  # (C,) gamma, None without affine
    training: bool


def _channel_axes(x: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Reduction axes (all but 1) and the shape that broadcasts a (C,) vector against x."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    return axes, shape


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
    axes, shape = _channel_axes(x)
    if training:
        count = x.size // x.shape[1]
        if count < 2:
            raise ValueError(f"batchnorm: expected more than 1 value per channel when training, got input of shape {x.shape}")
        mean = x.mean(axis=axes)  # (C,)
        centred = x - mean.reshape(shape)
        var = np.mean(np.square(centred), axis=axes)  # biased, (C,)
        inv_std = 1.0 / np.sqrt(var + eps)
        x_hat = centred
        x_hat *= inv_std.reshape(shape)  # reuse the centred buffer: one allocation fewer
        if num_batches_tracked is not None:
            num_batches_tracked += 1
        if momentum is None:
            factor = 1.0 / float(num_batches_tracked) if num_batches_tracked is not None else 0.0
        else:
            factor = momentum
        running_mean *= 1.0 - factor
        running_mean += factor * mean
        running_var *= 1.0 - factor
        running_var += (factor * count / (count - 1)) * var
    else:
        inv_std = (1.0 / np.sqrt(running_var + eps)).astype(x.dtype, copy=False)
        x_hat = (x - running_mean.reshape(shape)) * inv_std.reshape(shape)
    out = x_hat * weight.reshape(shape) if weight is not None else x_hat.copy()
    if bias is not None:
        out += bias.reshape(shape)
    return out, BatchNormCache(x_hat, inv_std, weight, training)


def batchnorm_backward(dout: np.ndarray, cache: BatchNormCache) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Gradients of batch normalisation.

    With ``dbeta = sum(dout)`` and ``dgamma = sum(dout * x_hat)`` over the ``M`` values of a channel,
    train mode (where mu and var depend on x)::

        dx = gamma / sqrt(var + eps) * (dout - dbeta / M - x_hat * dgamma / M)

    and eval mode (statistics are constants)::

        dx = gamma / sqrt(running_var + eps) * dout

    Returns
    -------
    dx : same shape as dout
    dweight, dbias : (C,), or None without affine
    """
    x_hat, inv_std, weight, training = cache
    axes, shape = _channel_axes(dout)
    dbias = dout.sum(axis=axes)  # (C,)
    dweight = np.sum(dout * x_hat, axis=axes)  # (C,)
    scale = inv_std if weight is None else weight * inv_std  # (C,)
    if training:
        count = dout.size // dout.shape[1]
        dx = x_hat * (-dweight / count).reshape(shape)
        dx += dout
        dx -= (dbias / count).reshape(shape)
        dx *= scale.reshape(shape)
    else:
        dx = dout * scale.reshape(shape)
    if weight is None:
        return dx, None, None
    return dx, dweight, dbias
