"""im2col / col2im's jitted bodies; the math, the checks, the wrappers and the NumPy references are in
``tinynet.functional.im2col``.

Both kernels run one iteration per ``(n, c)`` plane and handle the zero padding by
computing, per kernel offset, the range of windows that read inside the image (``_valid_range``):
no padded copy of the input is made.
"""
from __future__ import annotations

from .._numba import JIT, njit, parallel_kernel


# ---------------------------------------------------------------------------------------------
# Numba kernels
# ---------------------------------------------------------------------------------------------
@njit(**JIT)
def _valid_range(size: int, out_size: int, stride: int, pad: int, offset: int) -> tuple[int, int]:
    """Output positions ``o`` in ``[lo, hi)`` whose input index ``o*stride - pad + offset`` is in ``[0, size)``.

    Outside that range the window pixel lies in the zero padding.
    """
    # smallest o with o*stride >= pad - offset  (ceil division, numerator may be <= 0)
    first = pad - offset
    lo = 0 if first <= 0 else (first + stride - 1) // stride
    # smallest o with o*stride >= size + pad - offset
    last = size + pad - offset
    hi = 0 if last <= 0 else (last + stride - 1) // stride
    lo = min(lo, out_size)
    hi = max(min(hi, out_size), lo)
    return lo, hi


@parallel_kernel(size_arg=7, iterations=lambda x, *_: x.shape[0] * x.shape[1])
def im2col_kernel(x, kh, kw, sh, sw, ph, pw, out, first, stop):
    """Write the columns of ``x (N, C, H, W)`` into ``out (N, C*kh*kw, OH*OW)``.

    ``col2im_kernel`` is its adjoint: the same loops with source and destination swapped (a mirrored
    pair kept on purpose; one generic body would cost a branch in the innermost loop).

    One iteration per ``(n, c)`` plane: it writes only rows ``c*kh*kw ... c*kh*kw + kh*kw - 1``
    of image ``n``, so iterations never touch the same memory. Padding is handled by computing, per
    kernel offset, the range of windows that read inside the image (``_valid_range``) and writing
    zeros outside it: no padded copy of the input is made.
    """
    n_img, n_ch, h, w = x.shape
    out_h = (h + 2 * ph - kh) // sh + 1
    out_w = (w + 2 * pw - kw) // sw + 1
    for plane in range(first, stop):
        n = plane // n_ch
        c = plane - n * n_ch
        img = x[n, c]  # (H, W)
        for i in range(kh):
            oh_lo, oh_hi = _valid_range(h, out_h, sh, ph, i)
            for j in range(kw):
                ow_lo, ow_hi = _valid_range(w, out_w, sw, pw, j)
                row = out[n, (c * kh + i) * kw + j]  # (OH*OW,), contiguous
                # windows whose pixel (i, j) falls in the top or bottom padding
                row[: oh_lo * out_w] = 0
                row[oh_hi * out_w :] = 0
                # window columns ow_lo..ow_hi-1 read input columns first, first+sw, ... (first >= 0 always;
                # max() tells LLVM so: Numba wraps negative indices, and that check blocks vectorisation)
                first = max(ow_lo * sw - pw + j, 0)
                count = ow_hi - ow_lo
                for oh in range(oh_lo, oh_hi):
                    src = img[oh * sh - ph + i]  # the input row this row of windows reads
                    base = oh * out_w
                    for ow in range(ow_lo):  # left padding
                        row[base + ow] = 0
                    start = max(base + ow_lo, 0)
                    if sw == 1:  # a contiguous copy: vector loads and stores
                        for t in range(count):
                            row[start + t] = src[first + t]
                    else:
                        for t in range(count):
                            row[start + t] = src[first + t * sw]
                    for ow in range(ow_hi, out_w):  # right padding
                        row[base + ow] = 0


@parallel_kernel(size_arg=0, iterations=lambda cols, kh, kw, sh, sw, ph, pw, out: out.shape[0] * out.shape[1])
def col2im_kernel(cols, kh, kw, sh, sw, ph, pw, out, first, stop):
    """Fold ``cols (N, C*kh*kw, OH*OW)`` into ``out (N, C, H, W)``, summing overlapping windows.

    The adjoint of ``im2col_kernel``, whose loops it mirrors on purpose (``+=`` into the image instead
    of ``=`` into the columns).

    One iteration per ``(n, c)`` plane, which reads only that plane's rows of ``cols``
    and accumulates only into ``out[n, c]``: overlapping windows add into the same pixels, but
    always within one iteration, so there are no races. Column entries that came from the
    padding have no pixel and are skipped.
    """
    n_img, n_ch, h, w = out.shape
    out_h = (h + 2 * ph - kh) // sh + 1
    out_w = (w + 2 * pw - kw) // sw + 1
    for plane in range(first, stop):
        n = plane // n_ch
        c = plane - n * n_ch
        img = out[n, c]  # (H, W)
        img[:, :] = 0
        for i in range(kh):
            oh_lo, oh_hi = _valid_range(h, out_h, sh, ph, i)
            for j in range(kw):
                ow_lo, ow_hi = _valid_range(w, out_w, sw, pw, j)
                row = cols[n, (c * kh + i) * kw + j]  # (OH*OW,)
                first = max(ow_lo * sw - pw + j, 0)  # as in im2col_kernel
                count = ow_hi - ow_lo
                for oh in range(oh_lo, oh_hi):
                    dst = img[oh * sh - ph + i]
                    start = max(oh * out_w + ow_lo, 0)
                    if sw == 1:
                        for t in range(count):
                            dst[first + t] += row[start + t]
                    else:
                        for t in range(count):
                            dst[first + t * sw] += row[start + t]
