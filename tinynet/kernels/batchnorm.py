"""Batch norm's jitted bodies: per-channel statistics, normalisation and the backward pass in few memory passes.

The wrappers that check and reshape their arguments, and the NumPy reference (``*_reference``: the
algorithm as written in the textbook, which the tests compare these against), are in
``tinynet.functional.batchnorm``. NumPy needs a separate pass (and often a
fresh temporary) for each of ``mean``, ``x - mean``, ``square``, ``mean``, ``* inv_std``, ``* gamma``,
``+ beta``; on a 64 x 32 x 93 x 93 feature map (71 MB) each pass costs about as much as the
convolution that made it. Here:

- forward: one pass for the statistics (sum and sum of squares, accumulated in float64, so the
  one-pass variance formula loses nothing that matters for float32 data), one pass writing ``out``;
- backward: one pass for the two per-channel sums, one pass writing ``dx``; ``x_hat`` is recomputed
  from ``x`` on the fly instead of being stored ("recompute, save memory").

Every kernel runs one iteration per channel: channels are independent, so no races.
Arrays are seen as ``(N, C, L)`` with ``L = H * W`` (or 1 for ``(N, C)`` inputs).
"""
from __future__ import annotations

import numpy as np

from .._numba import parallel_kernel


@parallel_kernel(size_arg=0, iterations=lambda x, *_: x.shape[1])
def channel_stats_kernel(x, mean, var, first, stop):
    """``mean[c]``, biased ``var[c]`` over axes (0, 2) of ``x (N, C, L)``."""
    n_img, n_ch, length = x.shape
    count = n_img * length
    for c in range(first, stop):
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


@parallel_kernel(size_arg=0, iterations=lambda x, *_: x.shape[1])
def normalize_kernel(x, mean, inv_std, weight, bias, out, first, stop):
    """``out = (x - mean) * inv_std * weight + bias`` per channel (weight/bias already folded in by the caller)."""
    n_img, n_ch, length = x.shape
    for c in range(first, stop):
        scale = inv_std[c] * weight[c]
        shift = bias[c] - mean[c] * scale
        for n in range(n_img):
            src = x[n, c]
            dst = out[n, c]
            for i in range(length):
                dst[i] = src[i] * scale + shift


@parallel_kernel(size_arg=0, iterations=lambda dout, x, *_: x.shape[1])
def batchnorm_backward_sums_kernel(dout, x, mean, inv_std, dbias, dweight, first, stop):
    """``dbias[c] = sum dout``, ``dweight[c] = sum dout * x_hat`` with ``x_hat = (x - mean) * inv_std``."""
    n_img, n_ch, length = x.shape
    for c in range(first, stop):
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


@parallel_kernel(size_arg=0, iterations=lambda dout, x, *_: x.shape[1])
def batchnorm_backward_dx_kernel(dout, x, mean, inv_std, scale, dbias, dweight, count, training, dx, first, stop):
    """Train: ``dx = scale * (dout - dbias/M - x_hat * dweight/M)``; eval: ``dx = scale * dout``.

    ``scale = weight * inv_std`` per channel.
    """
    n_img, n_ch, length = x.shape
    for c in range(first, stop):
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
