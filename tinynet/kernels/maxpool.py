"""Max pooling's jitted bodies; the math, the checks, the wrapper and the NumPy reference are in
``tinynet.functional.pooling``.

Forward: one iteration per ``(n, c)`` plane writes that plane's maxima and their flat
indices; ties keep the first maximum (strict ``>``) and a NaN wins its window (the last one), as
PyTorch's CPU kernel. Backward: ``dx[n, c].flat[argmax] += dout``, one plane per iteration, so no two
iterations write the same pixel even where windows overlap.
"""
from __future__ import annotations

import numpy as np

from .._numba import JIT, njit, parallel_kernel


# ---------------------------------------------------------------------------------------------
# Numba kernels
# ---------------------------------------------------------------------------------------------
@njit(**JIT, inline="always")
def _window_max(img, h0, h1, w0, w1):
    """Maximum of ``img[h0:h1, w0:w1]`` and its flat index, with PyTorch's tie and NaN rules."""
    w = img.shape[1]
    best = img[h0, w0]
    best_index = h0 * w + w0
    # NaN test kept out of the hot loop: `val > best or isnan(val)` branches on every pixel and runs
    # several times slower. A NaN anywhere makes the running sum NaN; then a second pass applies
    # PyTorch's rule (`val > max or isnan(val)`), whose result is the window's last NaN.
    total = best * 0  # a zero of the input's dtype (NaN if best is inf: a harmless second pass)
    for ih in range(h0, h1):
        for iw in range(w0, w1):
            val = img[ih, iw]
            total += val
            if val > best:  # strict: the first of equal maxima stays
                best = val
                best_index = ih * w + iw
    if total != total:
        for ih in range(h0, h1):
            for iw in range(w0, w1):
                if np.isnan(img[ih, iw]):
                    best = img[ih, iw]
                    best_index = ih * w + iw
    return best, best_index


@njit(**JIT, inline="always")
def _maxpool_plane(img, kh, kw, sh, sw, ph, pw, out, argmax):
    """Pool one ``(H, W)`` plane into ``out`` / ``argmax`` (both ``(OH, OW)``)."""
    h, w = img.shape
    out_h, out_w = out.shape
    for oh in range(out_h):
        top = oh * sh - ph
        for ow in range(out_w):
            left = ow * sw - pw
            if top >= 0 and left >= 0 and top + kh <= h and left + kw <= w:
                # inside the image: the window loops run exactly kh x kw times
                best, index = _window_max(img, top, top + kh, left, left + kw)
            else:
                # overlaps the padding, which is -inf and never wins: clip the window to the image
                best, index = _window_max(img, max(top, 0), min(top + kh, h), max(left, 0), min(left + kw, w))
            out[oh, ow] = best
            argmax[oh, ow] = index


@parallel_kernel(size_arg=0, iterations=lambda x, *_: x.shape[0] * x.shape[1])
def maxpool2d_forward_kernel(x, kh, kw, sh, sw, ph, pw, out, argmax, first, stop):
    """Fill ``out`` and ``argmax`` (both ``(N, C, OH, OW)``); one iteration per plane."""
    n_img, n_ch = x.shape[0], x.shape[1]
    for plane in range(first, stop):
        n = plane // n_ch
        c = plane - n * n_ch
        # the common 2x2 and 3x3 windows get their own inlined copy with literal sizes, which LLVM
        # unrolls (2-3x faster than loops whose trip count is only known at run time)
        if kh == 2 and kw == 2:
            _maxpool_plane(x[n, c], 2, 2, sh, sw, ph, pw, out[n, c], argmax[n, c])
        elif kh == 3 and kw == 3:
            _maxpool_plane(x[n, c], 3, 3, sh, sw, ph, pw, out[n, c], argmax[n, c])
        else:
            _maxpool_plane(x[n, c], kh, kw, sh, sw, ph, pw, out[n, c], argmax[n, c])


@parallel_kernel(size_arg=2, iterations=lambda dout, argmax, dx: dx.shape[0] * dx.shape[1])
def maxpool2d_backward_kernel(dout, argmax, dx, first, stop):
    """``dx[n, c].flat[argmax] += dout``; one iteration per plane, so no two write the same pixel."""
    n_img, n_ch, h, w = dx.shape
    out_h, out_w = dout.shape[2], dout.shape[3]
    for plane in range(first, stop):
        n = plane // n_ch
        c = plane - n * n_ch
        flat = dx[n, c].reshape(h * w)  # a view: dx is C-contiguous
        flat[:] = 0
        grad = dout[n, c]
        where = argmax[n, c]
        for oh in range(out_h):
            for ow in range(out_w):
                flat[where[oh, ow]] += grad[oh, ow]
