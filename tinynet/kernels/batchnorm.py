"""Batch-norm kernels: per-channel statistics, normalisation and the backward pass in few memory passes.

The NumPy version in ``tinynet.functional.batchnorm`` (``*_reference``) is the algorithm as written in
the textbook and what the tests compare these against. NumPy needs a separate pass (and often a
fresh temporary) for each of ``mean``, ``x - mean``, ``square``, ``mean``, ``* inv_std``, ``* gamma``,
``+ beta``; on a 64 x 32 x 93 x 93 feature map (71 MB) each pass costs about as much as the
convolution that made it. Here:

- forward: one pass for the statistics (sum and sum of squares, accumulated in float64, so the
  one-pass variance formula loses nothing that matters for float32 data), one pass writing ``out``;
- backward: one pass for the two per-channel sums, one pass writing ``dx``; ``x_hat`` is recomputed
  from ``x`` on the fly instead of being stored ("recompute, save memory").

Every kernel runs one ``prange`` iteration per channel: channels are independent, so no races.
Arrays are seen as ``(N, C, L)`` with ``L = H * W`` (or 1 for ``(N, C)`` inputs).
"""
from __future__ import annotations

import numpy as np

from .._numba import parallel_kernel, prange


@parallel_kernel()
def _channel_stats_kernel(x, mean, var):
    """``mean[c]``, biased ``var[c]`` over axes (0, 2) of ``x (N, C, L)``."""
    n_img, n_ch, length = x.shape
    count = n_img * length
    for c in prange(n_ch):
        total = 0.0
        total_sq = 0.0
        for n in range(n_img):
            row = x[n, c]
            for i in range(length):
                v = np.float64(row[i])
                total += v
                total_sq += v * v
        m = total / count
        mean[c] = m
        var[c] = max(total_sq / count - m * m, 0.0)


@parallel_kernel()
def _normalize_kernel(x, mean, inv_std, weight, bias, out):
    """``out = (x - mean) * inv_std * weight + bias`` per channel (weight/bias already folded in by the caller)."""
    n_img, n_ch, length = x.shape
    for c in prange(n_ch):
        scale = inv_std[c] * weight[c]
        shift = bias[c] - mean[c] * scale
        for n in range(n_img):
            src = x[n, c]
            dst = out[n, c]
            for i in range(length):
                dst[i] = src[i] * scale + shift


@parallel_kernel()
def _backward_sums_kernel(dout, x, mean, inv_std, dbias, dweight):
    """``dbias[c] = sum dout``, ``dweight[c] = sum dout * x_hat`` with ``x_hat = (x - mean) * inv_std``."""
    n_img, n_ch, length = x.shape
    for c in prange(n_ch):
        s = 0.0
        sx = 0.0
        m = mean[c]
        for n in range(n_img):
            g = dout[n, c]
            v = x[n, c]
            for i in range(length):
                d = np.float64(g[i])
                s += d
                sx += d * (np.float64(v[i]) - m)
        dbias[c] = s
        dweight[c] = sx * inv_std[c]


@parallel_kernel()
def _backward_dx_kernel(dout, x, mean, inv_std, scale, dbias, dweight, count, training, dx):
    """Train: ``dx = scale * (dout - dbias/M - x_hat * dweight/M)``; eval: ``dx = scale * dout``.

    ``scale = weight * inv_std`` per channel.
    """
    n_img, n_ch, length = x.shape
    for c in prange(n_ch):
        k = scale[c]
        if training:
            a = dbias[c] / count  # mean of dout
            b = dweight[c] / count * inv_std[c]  # mean of dout * x_hat, times inv_std to use x - mean
            m = mean[c]
            for n in range(n_img):
                g = dout[n, c]
                v = x[n, c]
                dst = dx[n, c]
                for i in range(length):
                    # x - m first: folding into k*g + p*x + q cancels badly when |m| >> std
                    dst[i] = k * (g[i] - a - b * (v[i] - m))
        else:
            for n in range(n_img):
                g = dout[n, c]
                dst = dx[n, c]
                for i in range(length):
                    dst[i] = k * g[i]


def _as_ncl(x: np.ndarray) -> np.ndarray:
    """A contiguous ``(N, C, L)`` view (a copy only if ``x`` is not C-contiguous)."""
    x = np.ascontiguousarray(x)
    return x.reshape(x.shape[0], x.shape[1], int(np.prod(x.shape[2:], dtype=np.int64)))  # not -1: N may be 0


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and biased variance of ``x (N, C, ...)``, float64 ``(C,)`` each."""
    x3 = _as_ncl(x)
    if x3.shape[0] * x3.shape[2] == 0:
        raise ValueError(f"channel_stats: the statistics of an empty batch are undefined, got shape {x.shape}")
    mean = np.empty(x3.shape[1], dtype=np.float64)
    var = np.empty(x3.shape[1], dtype=np.float64)
    _channel_stats_kernel(x3, mean, var)
    return mean, var


def normalize(x: np.ndarray, mean: np.ndarray, inv_std: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``(x - mean) * inv_std * weight + bias`` per channel; ``(C,)`` vectors, output in ``x``'s dtype."""
    x3 = _as_ncl(x)
    out = np.empty_like(x3)
    _normalize_kernel(x3, mean, inv_std, weight, bias, out)
    return out.reshape(x.shape)


def batchnorm_backward_kernel(
    dout: np.ndarray, x: np.ndarray, mean: np.ndarray, inv_std: np.ndarray, weight: np.ndarray, training: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dx, dweight, dbias)`` of batch norm, recomputing ``x_hat`` from ``x``; dweight/dbias float64."""
    x3 = _as_ncl(x)
    d3 = _as_ncl(dout).astype(x3.dtype, copy=False)
    n_ch = x3.shape[1]
    if x3.size == 0:  # an empty batch: nothing to sum, and the kernels would divide by M = 0
        return np.empty_like(x), np.zeros(n_ch), np.zeros(n_ch)
    dbias = np.empty(n_ch, dtype=np.float64)
    dweight = np.empty(n_ch, dtype=np.float64)
    _backward_sums_kernel(d3, x3, mean, inv_std, dbias, dweight)
    dx = np.empty_like(x3)
    scale = (weight * inv_std).astype(np.float64)
    _backward_dx_kernel(d3, x3, mean, inv_std, scale, dbias, dweight, float(x3.shape[0] * x3.shape[2]), training, dx)
    return dx.reshape(x.shape), dweight, dbias
