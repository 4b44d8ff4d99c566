"""Batch normalisation over the channel axis (PyTorch's ``BatchNorm1d``/``BatchNorm2d`` semantics).

One implementation serves both: for ``x`` of shape ``(N, C)``, ``(N, C, L)`` or ``(N, C, H, W)`` the
statistics of channel ``c`` are taken over every axis but axis 1, i.e. over ``M = N * L`` (or ``N*H*W``)
values.

Conventions (PyTorch's, not CS231n's): ``momentum`` weighs the NEW statistic,
``running = (1 - momentum) * running + momentum * batch``; the running variance is updated with the
*unbiased* batch variance (``* M / (M - 1)``) while the output is normalised with the biased one.

``batchnorm_forward``/``batchnorm_backward`` run the jitted bodies of ``tinynet.kernels.batchnorm``
(two memory passes each way) through the small wrappers below (``channel_stats``, ``_normalize``,
``_backward_passes``); ``batchnorm_forward_reference``/``batchnorm_backward_reference`` are the same
math in plain NumPy, one operation per line, which the tests compare them against (a reference-vs-fast
pair kept on purpose), and what runs when ``tinynet.backends.numba.enabled`` is False. Every forward, the fused ``batchnorm_relu_maxpool2d_forward`` included, turns
its arguments into the statistics and affine vectors by one helper, ``_forward_statistics``. Both keep the
same cache: the input ``x`` and the per-channel statistics, from which ``x_hat`` is recomputed in
backward rather than stored (one full-size array fewer).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .._checks import check_dout
from .. import backends, kernels


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


def _as_ncl(x: np.ndarray) -> np.ndarray:
    """A contiguous ``(N, C, L)`` view (a copy only if ``x`` is not C-contiguous)."""
    x = np.ascontiguousarray(x)
    return x.reshape(x.shape[0], x.shape[1], math.prod(x.shape[2:]))  # not -1: N may be 0


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and biased variance of ``x (N, C, ...)``, float64 ``(C,)`` each."""
    x3 = _as_ncl(x)
    if x3.shape[0] * x3.shape[2] == 0:
        raise ValueError(f"channel_stats: the statistics of an empty batch are undefined, got shape {x.shape}")
    mean = np.empty(x3.shape[1], dtype=np.float64)
    var = np.empty(x3.shape[1], dtype=np.float64)
    kernels.batchnorm.channel_stats_kernel(x3, mean, var)
    return mean, var


def _normalize(x: np.ndarray, mean: np.ndarray, inv_std: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``(x - mean) * inv_std * weight + bias`` per channel; ``(C,)`` vectors, output in ``x``'s dtype."""
    x3 = _as_ncl(x)
    out = np.empty_like(x3)
    kernels.batchnorm.normalize_kernel(x3, mean, inv_std, weight, bias, out)
    return out.reshape(x.shape)


def _backward_passes(
    dout: np.ndarray, x: np.ndarray, mean: np.ndarray, inv_std: np.ndarray, weight: np.ndarray, training: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dx, dweight, dbias)`` of batch norm by the two backward kernels (no check of ``dout``: ``batchnorm_backward``
    makes it), recomputing ``x_hat`` from ``x``; dweight/dbias float64."""
    x3 = _as_ncl(x)
    d3 = _as_ncl(dout).astype(x3.dtype, copy=False)
    n_ch = x3.shape[1]
    if x3.size == 0:  # an empty batch: nothing to sum, and the kernels would divide by M = 0
        return np.empty_like(x), np.zeros(n_ch), np.zeros(n_ch)
    dbias = np.empty(n_ch, dtype=np.float64)
    dweight = np.empty(n_ch, dtype=np.float64)
    kernels.batchnorm.batchnorm_backward_sums_kernel(d3, x3, mean, inv_std, dbias, dweight)
    dx = np.empty_like(x3)
    scale = (weight * inv_std).astype(np.float64)
    kernels.batchnorm.batchnorm_backward_dx_kernel(d3, x3, mean, inv_std, scale, dbias, dweight, float(x3.shape[0] * x3.shape[2]), training, dx)
    return dx.reshape(x.shape), dweight, dbias


def _forward_statistics(x, weight, bias, running_mean, running_var, training, momentum, eps, num_batches_tracked,
                        batch_stats=channel_stats) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The argument handling of every batch-norm forward (``batchnorm_forward``, its reference, the fused
    ``batchnorm_relu_maxpool2d_forward``), written once; the arguments are ``batchnorm_forward``'s.

    Returns ``(mean, inv_std, gamma, beta)``, float64 ``(C,)``: the statistics to normalise with (in train
    mode the batch's, and the running buffers are updated in place), and ``weight``/``bias`` (ones/zeros
    without affine). ``batch_stats(x) -> (mean, biased var)`` is the kernel or the NumPy reference.
    """
    gamma = np.ones(x.shape[1]) if weight is None else weight.astype(np.float64)
    beta = np.zeros(x.shape[1]) if bias is None else bias.astype(np.float64)
    if not training:
        mean = running_mean.astype(np.float64)
        return mean, 1.0 / np.sqrt(running_var.astype(np.float64) + eps), gamma, beta
    count = x.size // x.shape[1]
    if count == 1:
        raise ValueError(f"batchnorm: expected more than 1 value per channel when training, got input of shape {x.shape}")
    if num_batches_tracked is not None:
        num_batches_tracked += 1
    if count == 0:
        # an empty batch (N = 0, or an empty H or W) normalises nothing; PyTorch counts it in
        # num_batches_tracked and leaves the running statistics as they were
        return np.zeros(x.shape[1]), np.ones(x.shape[1]), gamma, beta
    mean, var = batch_stats(x)
    if momentum is None:  # cumulative moving average, as PyTorch
        factor = 1.0 / float(num_batches_tracked) if num_batches_tracked is not None else 0.0
    else:
        factor = momentum
    running_mean[...] = (1.0 - factor) * running_mean + factor * mean
    running_var[...] = (1.0 - factor) * running_var + factor * var * (count / (count - 1))
    return mean, 1.0 / np.sqrt(var + eps), gamma, beta


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

    With ``tinynet.backends.numba.enabled`` False, ``batchnorm_forward_reference`` runs instead.

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
    if not backends.numba.enabled:
        return batchnorm_forward_reference(x, weight, bias, running_mean, running_var, training, momentum, eps,
                                           num_batches_tracked)
    mean, inv_std, gamma, beta = _forward_statistics(
        x, weight, bias, running_mean, running_var, training, momentum, eps, num_batches_tracked
    )
    out = _normalize(x, mean, inv_std, gamma, beta)
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
    if not backends.numba.enabled:
        return batchnorm_backward_reference(dout, cache)
    gamma = np.ones(x.shape[1]) if weight is None else weight.astype(np.float64)
    dx, dweight, dbias = _backward_passes(dout, x, mean, inv_std, gamma, training)
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


def batchnorm_forward_reference(x, weight, bias, running_mean, running_var, training,
                                momentum=0.1, eps=1e-5, num_batches_tracked=None):
    """``batchnorm_forward`` in plain NumPy (same arguments, same cache): the reference of the fast path."""
    _, shape = _channel_axes(x)
    mean, inv_std, gamma, beta = _forward_statistics(
        x, weight, bias, running_mean, running_var, training, momentum, eps, num_batches_tracked, _reference_stats
    )
    # the (C,) statistics in x's dtype: the full-size arithmetic stays in float32 for a float32 x (a float64
    # vector would promote every element), and x - mean comes first, where it is exact for nearby values
    mean_, inv_std_, gamma_, beta_ = (v.astype(x.dtype).reshape(shape) for v in (mean, inv_std, gamma, beta))
    # x_hat = (x - mean) * inv_std; out = x_hat * gamma + beta: the same operations in the same order, in one array
    # (three temporaries of x's size cost 20-30 % more time)
    out = x - mean_
    out *= inv_std_
    out *= gamma_
    out += beta_
    return out, BatchNormCache(x, mean, inv_std, weight, training)


def batchnorm_backward_reference(dout: np.ndarray, cache: BatchNormCache) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``batchnorm_backward`` in plain NumPy: the reference of the fast path."""
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
