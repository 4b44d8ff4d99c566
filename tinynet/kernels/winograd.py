"""The Winograd convolution's four tile transforms, one image at a time; the math, the wrappers and the NumPy
references are in ``tinynet.functional.winograd``.

Each kernel is the loop form of one matrix sandwich of F(2x2, 3x3) on every tile::

    winograd_input_kernel         V  = B^T d B     4x4 input tile  -> 16 values    (per channel)
    winograd_output_kernel        y  = A^T M A     16 values       -> 2x2 output   (per filter), plus the bias
    winograd_output_grad_kernel   dM = A dy A^T    2x2 gradient    -> 16 values    (the adjoint of the line above)
    winograd_input_grad_kernel    dd = B dV B^T    16 values       -> 4x4 tile, added where tiles overlap

with ``B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]`` and ``A^T = [[1, 1, 1, 0],
[0, 1, -1, -1]]``: only additions and subtractions. A sandwich is applied as two one-dimensional transforms,
first down the rows of a tile, then along its columns (``_bt``, ``_b``, ``_at``, ``_a`` below, each one matrix
times a short vector). The 16 values of a tile are stored at ``[4*a + b, channel, ty, tx]``: for each of the
16 positions ``(a, b)`` a ``(C, TH*TW)`` matrix, the operand of one of the 16 matrix products.

Tile ``(ty, tx)`` reads the padded input at rows ``2*ty .. 2*ty + 3`` and columns ``2*tx .. 2*tx + 3`` and
writes the output at rows ``2*ty, 2*ty + 1`` and columns ``2*tx, 2*tx + 1``: neighbouring input tiles overlap
by two rows or columns, output tiles do not.
"""
from __future__ import annotations

import numpy as np

from .._numba import JIT, njit, parallel_kernel


@njit(**JIT, inline="always")
def _bt(d0, d1, d2, d3):
    """``B^T @ (d0, d1, d2, d3)``."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@njit(**JIT, inline="always")
def _b(v0, v1, v2, v3):
    """``B @ (v0, v1, v2, v3)``, the adjoint of ``_bt``."""
    return v0, v1 - v2 + v3, v2 + v1 - v0, -v3


@njit(**JIT, inline="always")
def _at(m0, m1, m2, m3):
    """``A^T @ (m0, m1, m2, m3)``."""
    return m0 + m1 + m2, m1 - m2 - m3


@njit(**JIT, inline="always")
def _a(y0, y1):
    """``A @ (y0, y1)``, the adjoint of ``_at``."""
    return y0, y0 + y1, y0 - y1, -y1


@parallel_kernel(size_arg=0, iterations=lambda xpad, v: xpad.shape[0])
def winograd_input_kernel(xpad, v, first, stop):
    """``v (16, C, TH, TW)`` from one padded image ``xpad (C, 2*TH + 2, 2*TW + 2)``: ``B^T d B`` of every tile;
    one iteration per channel.

    Row by row of tiles: ``B^T`` combines the tile row's four image rows over the whole width (one contiguous
    loop), then ``B``, on the right, combines each tile's four columns of that.
    """
    th, tw = v.shape[2], v.shape[3]
    rows = np.empty((4, xpad.shape[2]), dtype=xpad.dtype)  # B^T d for one row of tiles, all columns
    for c in range(first, stop):
        for ty in range(th):
            r0, r1, r2, r3 = xpad[c, 2 * ty], xpad[c, 2 * ty + 1], xpad[c, 2 * ty + 2], xpad[c, 2 * ty + 3]
            for x in range(xpad.shape[2]):
                rows[0, x], rows[1, x], rows[2, x], rows[3, x] = _bt(r0[x], r1[x], r2[x], r3[x])
            for a in range(4):
                row = rows[a]
                v0, v1, v2, v3 = v[4 * a, c, ty], v[4 * a + 1, c, ty], v[4 * a + 2, c, ty], v[4 * a + 3, c, ty]
                for tx in range(tw):
                    x0 = 2 * tx
                    v0[tx], v1[tx], v2[tx], v3[tx] = _bt(row[x0], row[x0 + 1], row[x0 + 2], row[x0 + 3])


@parallel_kernel(size_arg=0, iterations=lambda m, bias, y: m.shape[1])
def winograd_output_kernel(m, bias, y, first, stop):
    """``y (F, 2*TH, 2*TW)`` from ``m (16, F, TH, TW)``: ``A^T M A + bias[f]`` for every tile; one iteration per
    filter."""
    th, tw = m.shape[2], m.shape[3]
    for f in range(first, stop):
        for ty in range(th):
            top, bottom = y[f, 2 * ty], y[f, 2 * ty + 1]
            for tx in range(tw):
                p00, p01 = _at(m[0, f, ty, tx], m[1, f, ty, tx], m[2, f, ty, tx], m[3, f, ty, tx])  # M A, row a = 0
                p10, p11 = _at(m[4, f, ty, tx], m[5, f, ty, tx], m[6, f, ty, tx], m[7, f, ty, tx])
                p20, p21 = _at(m[8, f, ty, tx], m[9, f, ty, tx], m[10, f, ty, tx], m[11, f, ty, tx])
                p30, p31 = _at(m[12, f, ty, tx], m[13, f, ty, tx], m[14, f, ty, tx], m[15, f, ty, tx])
                y00, y10 = _at(p00, p10, p20, p30)  # A^T (M A), output column 0
                y01, y11 = _at(p01, p11, p21, p31)
                top[2 * tx], top[2 * tx + 1] = y00 + bias[f], y01 + bias[f]
                bottom[2 * tx], bottom[2 * tx + 1] = y10 + bias[f], y11 + bias[f]


@parallel_kernel(size_arg=1, iterations=lambda dy, dm: dm.shape[1])
def winograd_output_grad_kernel(dy, dm, first, stop):
    """``dm (16, F, TH, TW)`` from ``dy (F, 2*TH, 2*TW)``: ``A dy A^T`` of every 2x2 tile of the output gradient;
    one iteration per filter."""
    th, tw = dm.shape[2], dm.shape[3]
    for f in range(first, stop):
        for ty in range(th):
            top, bottom = dy[f, 2 * ty], dy[f, 2 * ty + 1]
            for tx in range(tw):
                q00, q01, q02, q03 = _a(top[2 * tx], top[2 * tx + 1])  # dy A^T, row 0
                q10, q11, q12, q13 = _a(bottom[2 * tx], bottom[2 * tx + 1])
                dm[0, f, ty, tx], dm[4, f, ty, tx], dm[8, f, ty, tx], dm[12, f, ty, tx] = _a(q00, q10)  # A (dy A^T)
                dm[1, f, ty, tx], dm[5, f, ty, tx], dm[9, f, ty, tx], dm[13, f, ty, tx] = _a(q01, q11)
                dm[2, f, ty, tx], dm[6, f, ty, tx], dm[10, f, ty, tx], dm[14, f, ty, tx] = _a(q02, q12)
                dm[3, f, ty, tx], dm[7, f, ty, tx], dm[11, f, ty, tx], dm[15, f, ty, tx] = _a(q03, q13)


@parallel_kernel(size_arg=0, iterations=lambda dv, dxpad: dv.shape[1])
def winograd_input_grad_kernel(dv, dxpad, first, stop):
    """``dxpad (C, 2*TH + 2, 2*TW + 2)`` from ``dv (16, C, TH, TW)``: the sum of ``B dV B^T`` over the tiles that
    cover each pixel (overwritten, not added to); one iteration per channel.

    The adjoint of ``winograd_input_kernel``, in the opposite order: ``B`` spreads each tile's values over its
    four columns of a tile-row buffer (neighbouring tiles add into the same two columns), then ``B^T``'s adjoint
    spreads the buffer's four rows over the image rows (adding where tile rows overlap).
    """
    th, tw = dv.shape[2], dv.shape[3]
    width = dxpad.shape[2]
    rows = np.empty((4, width), dtype=dxpad.dtype)
    for c in range(first, stop):
        dxpad[c] = 0
        for ty in range(th):
            rows[:] = 0
            for a in range(4):
                row = rows[a]
                v0, v1, v2, v3 = dv[4 * a, c, ty], dv[4 * a + 1, c, ty], dv[4 * a + 2, c, ty], dv[4 * a + 3, c, ty]
                for tx in range(tw):
                    e0, e1, e2, e3 = _b(v0[tx], v1[tx], v2[tx], v3[tx])
                    x0 = 2 * tx
                    row[x0] += e0
                    row[x0 + 1] += e1
                    row[x0 + 2] += e2
                    row[x0 + 3] += e3
            r0, r1, r2, r3 = dxpad[c, 2 * ty], dxpad[c, 2 * ty + 1], dxpad[c, 2 * ty + 2], dxpad[c, 2 * ty + 3]
            for x in range(width):
                d0, d1, d2, d3 = _b(rows[0, x], rows[1, x], rows[2, x], rows[3, x])
                r0[x] += d0
                r1[x] += d1
                r2[x] += d2
                r3[x] += d3
