"""Fused ``BatchNorm2d -> ReLU -> MaxPool2d(2, 2)``: the conv block's tail in two memory passes each way.

Run one after the other, the three layers read and write the full-size feature map seven times in
forward and backward and keep two full-size copies (the batch-norm and ReLU outputs) for backward.
Fused, nothing full-size is written in forward but the pooled output (a quarter of the size) and
the position of each window's maximum (``int8``, 0..3, a sixteenth); backward reads the input twice
(the two per-channel sums, then ``dx``) and writes ``dx`` once. The math is exactly that of the three layers (the NumPy reference in
``tinynet.functional.fused`` is literally the three reference functions chained):

    forward, per channel c, scale = gamma * inv_std, shift = beta - mean * scale
        y   = relu(x * scale + shift)                  never stored
        out = max of y over each 2x2 window            window[...] = 2*i + j of the winner

    backward: batch norm's backward (``tinynet.functional.batchnorm``) with dy, the gradient of y,
    equal to dout at each window's winner where out > 0 (ReLU lets nothing through where out <= 0)
    and zero elsewhere (pooling routes to the winner only): so only the winners contribute to the
    two per-channel sums (quarter-size work), and dx needs dy only there.

Ties and NaNs follow ``tinynet.functional.pooling`` (PyTorch's rules): the first of equal maxima wins;
a NaN wins its window (the last NaN, if several) and, as ``out > 0`` is False for it, passes no
gradient back, as in the unfused layers. A last odd row or column is never pooled (floor mode) but
still counts in the batch statistics and still receives the batch-norm part of ``dx``.
"""
from __future__ import annotations

import numpy as np

from .._numba import JIT, njit, parallel_kernel


@njit(**JIT, inline="always")
def _bn_relu_row(src, scale, shift, dst):
    """``dst = relu(src * scale + shift)``, rounded to the input's dtype as the unfused layers do, NaN kept."""
    for i in range(dst.size):
        y = src[i] * scale + shift  # float64 math, as the batch-norm kernel
        dst[i] = y if (y > 0 or y != y) else 0.0


@parallel_kernel(size_arg=0, iterations=lambda x, *_: x.shape[0] * x.shape[1])
def bn_relu_maxpool_forward_kernel(x, scale, shift, out, window, first, stop):
    """``out (N, C, OH, OW)``, ``window`` (int8) from ``x (N, C, H, W)``; one iteration per plane.

    Each pair of input rows is normalised into a small scratch buffer first (a contiguous loop that
    LLVM vectorises), then pooled from there while it is still in the L1 cache.
    """
    n_img, n_ch, _, w = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    # the scratch rows, once per call: allocated per plane they cost more than the work on a small plane
    # (2 x 64 planes of 12 x 12: 47 against 20 us)
    top = np.empty(w, dtype=x.dtype)
    bottom = np.empty(w, dtype=x.dtype)
    for plane in range(first, stop):
        n = plane // n_ch
        c = plane - n * n_ch
        k = scale[c]
        b = shift[c]
        for oh in range(out_h):
            _bn_relu_row(x[n, c, 2 * oh], k, b, top)
            _bn_relu_row(x[n, c, 2 * oh + 1], k, b, bottom)
            dst = out[n, c, oh]
            where = window[n, c, oh]
            for ow in range(out_w):
                y0, y1, y2, y3 = top[2 * ow], top[2 * ow + 1], bottom[2 * ow], bottom[2 * ow + 1]
                best, index = y0, 0
                if y1 > best:  # strict: the first of equal maxima stays
                    best, index = y1, 1
                if y2 > best:
                    best, index = y2, 2
                if y3 > best:
                    best, index = y3, 3
                if (y0 + y1 + y2 + y3) != (y0 + y1 + y2 + y3):  # a NaN: the last NaN wins, as PyTorch
                    for t, y in enumerate((y0, y1, y2, y3)):
                        if y != y:
                            best, index = y, t
                dst[ow] = best
                where[ow] = index


@parallel_kernel(size_arg=3, iterations=lambda dout, out, window, x, *_: x.shape[0] * x.shape[1])
def bn_relu_maxpool_backward_sums_kernel(dout, out, window, x, mean, partial, first, stop):
    """Per plane ``(n, c)``: ``partial[plane] = (sum dy, sum dy * (x - mean))``; only the windows'
    winners where ``out > 0`` have ``dy != 0``, so the products are taken at the winners only."""
    n_img, n_ch, h, w = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    for plane in range(first, stop):
        n = plane // n_ch
        c = plane - n * n_ch
        m = mean[c]
        s = 0.0
        sx = 0.0
        # the unfused sum runs over every pixel, dy = 0 included, and 0 * x_hat is NaN where x is
        # NaN or infinite: count such pixels (a vectorised integer sum; `x - x` would be folded away)
        not_finite = 0
        for ih in range(h):
            row = x[n, c, ih]
            for iw in range(w):
                not_finite += 0 if np.isfinite(row[iw]) else 1
        if not_finite:
            sx = np.nan
        for oh in range(out_h):
            top = x[n, c, 2 * oh]
            bottom = x[n, c, 2 * oh + 1]
            o = out[n, c, oh]
            g = dout[n, c, oh]
            where = window[n, c, oh]
            for ow in range(out_w):
                t = where[ow]
                v = np.float64(top[2 * ow + (t & 1)] if t < 2 else bottom[2 * ow + (t & 1)])
                # selects, not branches (the ReLU mask is a coin flip); a NaN must not leak through a 0
                d = np.float64(g[ow]) if o[ow] > 0 else 0.0
                s += d
                sx += d * ((v if o[ow] > 0 else m) - m)
        partial[plane, 0] = s
        partial[plane, 1] = sx


@njit(**JIT, inline="always")
def _bn_backward_row(src, k, a, b, m, training, dst):
    if training:
        for i in range(dst.size):
            dst[i] = k * (0.0 - a - b * (src[i] - m))  # dy = 0 here (as the unfused kernel, term by term)
    else:
        dst[:] = 0  # eval: dx = scale * dy, and x (even a NaN in it) plays no part


@parallel_kernel(size_arg=3, iterations=lambda dout, out, window, x, *_: x.shape[0] * x.shape[1])
def bn_relu_maxpool_backward_dx_kernel(dout, out, window, x, mean, inv_std, scale, dbias, dweight, count, training, dx,
                                       first, stop):
    """``dx`` of the fused block: the batch-norm terms everywhere, plus ``dy`` at the winners
    (written row pair by row pair, so the winners are patched while the rows are in cache)."""
    n_img, n_ch, h, w = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    for plane in range(first, stop):
        n = plane // n_ch
        c = plane - n * n_ch
        k = scale[c]
        a = dbias[c] / count if training else 0.0  # mean of dy
        b = dweight[c] / count * inv_std[c] if training else 0.0  # mean of dy * x_hat, times inv_std
        m = mean[c]
        for oh in range(out_h):
            top = x[n, c, 2 * oh]
            bottom = x[n, c, 2 * oh + 1]
            dtop = dx[n, c, 2 * oh]
            dbottom = dx[n, c, 2 * oh + 1]
            _bn_backward_row(top, k, a, b, m, training, dtop)
            _bn_backward_row(bottom, k, a, b, m, training, dbottom)
            o = out[n, c, oh]
            g = dout[n, c, oh]
            where = window[n, c, oh]
            for ow in range(out_w):
                if o[ow] > 0:
                    t = where[ow]
                    iw = 2 * ow + (t & 1)
                    if t < 2:
                        dtop[iw] = k * (g[ow] - a - b * (top[iw] - m))
                    else:
                        dbottom[iw] = k * (g[ow] - a - b * (bottom[iw] - m))
        for ih in range(2 * out_h, h):  # an odd last row: never pooled, batch-norm terms only
            _bn_backward_row(x[n, c, ih], k, a, b, m, training, dx[n, c, ih])
