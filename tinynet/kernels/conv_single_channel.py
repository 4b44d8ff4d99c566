"""Direct convolution for a single input channel (the first layer of a grayscale network).

With ``C = 1`` im2col is a poor deal: the column matrix has only ``K = kh*kw`` rows (16 for a 4x4
kernel), so the matrix product that follows has a tiny inner dimension, does two flops per value it
writes and runs far below the machine's peak, after im2col has written a ``kh*kw`` times larger copy
of the input. Here the loops are written out instead (valid convolution, stride 1, no padding):

    out[n, f, oh, :]  = bias[f] + sum_{i, j} w[f, i, j] * x[n, oh + i, j : j + OW]
    dw[f, i, j]       = sum_{n, oh} dout[n, f, oh, :] . x[n, oh + i, j : j + OW]   (as one flat dot product per tap)
    dbias[f]          = sum_{n, oh} sum(dout[n, f, oh, :])
    dx[n, oh + i, j : j + OW] += w[f, i, j] * dout[n, f, oh, :]

Every innermost loop runs along a row (``OW`` contiguous values), which LLVM vectorises; one image's
plane (96 x 96 floats = 36 KB) stays in cache while all its filters read it. The general im2col
path (``tinynet.functional.conv``) and ``conv2d_forward_reference`` compute the same thing; the tests
compare them.
"""
from __future__ import annotations

import numpy as np

from .._numba import JIT, njit, parallel_kernel


#: outputs per block in the weight-gradient dot products (1 KB of float32: L1-resident with its inputs)
BLOCK = 256


@njit(**JIT, inline="always")
def _forward_plane(img, w, b, kh, kw, dst):
    """One output plane: each output sums its ``kh x kw`` window in a register. Called with literal
    ``kh, kw`` (below), the tap loops unroll and the loop over ``t`` (along the row) vectorises."""
    out_h, out_w = dst.shape
    for oh in range(out_h):
        row = dst[oh]
        for t in range(out_w):
            acc = b
            for i in range(kh):
                for j in range(kw):
                    acc += w[i, j] * img[oh + i, t + j]
            row[t] = acc


@njit(**JIT, inline="always")
def _widen(plane, wide):
    """Copy ``plane (OH, OW)`` into the rows of ``wide`` (row length ``W``; the columns beyond ``OW`` stay 0).
    An element loop: a slice assignment (``wide[a:b] = plane[oh]``) made Numba compile its shape-mismatch
    error path, 5 s of a cold start."""
    out_h, out_w = plane.shape
    width = wide.size // out_h
    for oh in range(out_h):
        dst = wide[oh * width :]
        src = plane[oh]
        for t in range(out_w):
            dst[t] = src[t]


def _forward_kernel(kh: int, kw: int, name: str):
    """The forward kernel for ``kh x kw`` filters, ``0, 0`` for any size (read from the weight). The sizes are
    compile-time constants of each kernel, so its tap loops unroll, and each kernel compiles when a layer first
    calls it: one kernel with a branch per size compiled every size, 3.1-3.4 s of a cold first training step,
    against 1.6-1.8 s for the 4x4 kernel alone.

    The kernel: ``x (N, H, W)``, ``weight (F, kh, kw)``, ``bias (F,)`` -> ``out (N, F, OH, OW)``; one iteration
    per output plane ``(n, f)``.
    """

    def kernel(x, weight, bias, out, first, stop):
        n_filters = out.shape[1]
        for plane in range(first, stop):
            n = plane // n_filters
            f = plane - n * n_filters
            w = weight[f].copy()  # a private copy: the compiler then knows the output writes cannot change it
            if kh:  # a constant of this kernel: the unrolled taps, or (0) the sizes read from the weight
                _forward_plane(x[n], w, bias[f], kh, kw, out[n, f])
            else:
                _forward_plane(x[n], w, bias[f], weight.shape[1], weight.shape[2], out[n, f])

    kernel.__name__ = kernel.__qualname__ = name  # Numba's cache files are named after it: one set per kernel
    return parallel_kernel(size_arg=3, iterations=lambda x, weight, bias, out: out.shape[0] * out.shape[1])(kernel)


conv1ch_forward_3x3_kernel = _forward_kernel(3, 3, "conv1ch_forward_3x3_kernel")
conv1ch_forward_4x4_kernel = _forward_kernel(4, 4, "conv1ch_forward_4x4_kernel")
conv1ch_forward_5x5_kernel = _forward_kernel(5, 5, "conv1ch_forward_5x5_kernel")
conv1ch_forward_kernel = _forward_kernel(0, 0, "conv1ch_forward_kernel")
#: the filter sizes with a kernel of their own (unrolled taps, as the max-pool kernel); others run the general one
UNROLLED = {(3, 3): conv1ch_forward_3x3_kernel, (4, 4): conv1ch_forward_4x4_kernel, (5, 5): conv1ch_forward_5x5_kernel}


def conv1ch_forward(x, weight, bias, out) -> None:
    """The forward kernel for the weight's filter size ``weight.shape[1:]`` (see ``_forward_kernel``)."""
    UNROLLED.get(weight.shape[1:], conv1ch_forward_kernel)(x, weight, bias, out)


@parallel_kernel(size_arg=0, iterations=lambda dout, x, dweight, dbias: dweight.shape[0])
def conv1ch_weight_grad_kernel(dout, x, dweight, dbias, first, stop):
    """``dweight (F, kh, kw)`` and ``dbias (F,)``; one iteration per filter.

    Each gradient plane is first copied into a "wide" buffer with the input's row length ``W``
    (zeros beyond ``OW``). Then every tap ``(i, j)`` is a single long dot product of that buffer
    with the flat input shifted by ``i*W + j``: long contiguous loops that vectorise, instead of
    ``kh*kw`` short ones per row. Four taps of a row share one pass over the buffer (each of its values loaded
    once for four products: NaimishNet-96's 4x4 gradient on 64 images, one core, 18.4-19.3 against 23.0-27.1 ms,
    the same bits). Sums are accumulated per image in the input dtype, then in float64.
    """
    n_img, n_filters, out_h, out_w = dout.shape
    kh, kw = dweight.shape[1], dweight.shape[2]
    width = x.shape[2]
    length = (out_h - 1) * width + out_w  # the last needed input pixel stays inside the plane
    for f in range(first, stop):
        # np.empty and a loop: Numba compiles np.zeros's implementation once per shape, 0.35 s of this kernel's
        # 1.2 s on a cold start (0.84-0.96 s now)
        acc = np.empty((kh, kw))
        for i in range(kh):
            for j in range(kw):
                acc[i, j] = 0.0
        total = 0.0
        wide = np.empty(out_h * width, dtype=dout.dtype)
        for q in range(wide.size):
            wide[q] = 0  # columns >= OW stay 0
        for n in range(n_img):
            _widen(dout[n, f], wide)
            flat = x[n].reshape(x.shape[1] * width)
            row_sum = dout.dtype.type(0)
            for q in range(length):
                row_sum += wide[q]
            total += row_sum
            # in blocks of BLOCK outputs, so that the block and the input it meets stay in L1 for all taps
            for start in range(0, length, BLOCK):
                count = min(BLOCK, length - start)
                g = wide[start:]
                for i in range(kh):
                    j = 0
                    while j + 4 <= kw:  # four taps of a row at once: each gradient value loaded once for four
                        seen = flat[start + i * width + j :]  # a view, so the index below is q >= 0 (a negative
                        s0 = dout.dtype.type(0)  # one would be wrapped by Numba, which blocks SIMD)
                        s1, s2, s3 = s0, s0, s0
                        for q in range(count):
                            gq = g[q]
                            s0 += gq * seen[q]
                            s1 += gq * seen[q + 1]
                            s2 += gq * seen[q + 2]
                            s3 += gq * seen[q + 3]
                        acc[i, j] += s0
                        acc[i, j + 1] += s1
                        acc[i, j + 2] += s2
                        acc[i, j + 3] += s3
                        j += 4
                    for tap in range(j, kw):  # the row's last taps (kw not a multiple of 4), one at a time
                        seen = flat[start + i * width + tap :]
                        s = dout.dtype.type(0)
                        for q in range(count):
                            s += g[q] * seen[q]
                        acc[i, tap] += s
        for i in range(kh):
            for j in range(kw):
                dweight[f, i, j] = acc[i, j]
        dbias[f] = total


@parallel_kernel(size_arg=0, iterations=lambda dout, weight, dx: dx.shape[0])
def conv1ch_input_grad_kernel(dout, weight, dx, first, stop):
    """``dx (N, H, W)``, the adjoint of the forward; one iteration per image. Same "wide"
    gradient rows as ``conv1ch_weight_grad_kernel``: each tap adds ``w[f, i, j] * wide`` to the flat
    image at offset ``i*W + j``, one long vectorised loop."""
    n_img, n_filters, out_h, out_w = dout.shape
    kh, kw = weight.shape[1], weight.shape[2]
    width = dx.shape[2]
    length = (out_h - 1) * width + out_w
    for n in range(first, stop):
        flat = dx[n].reshape(dx.shape[1] * width)
        flat[:] = 0
        wide = np.zeros(out_h * width, dtype=dout.dtype)
        for f in range(n_filters):
            _widen(dout[n, f], wide)
            for i in range(kh):
                for j in range(kw):
                    hit = flat[i * width + j :]  # a view: a plain q >= 0 index vectorises (see above)
                    wij = weight[f, i, j]
                    for q in range(length):
                        hit[q] += wij * wide[q]
