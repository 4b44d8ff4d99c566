"""The tile transforms of Winograd's F(4x4, 3x3), one image at a time: ``kernels/winograd.py``'s four kernels for
4x4 output tiles read from 6x6 input tiles; the math, the wrappers and the NumPy references are in
``tinynet.functional.winograd``.

    winograd4x4_input_kernel         V  = B^T d B     6x6 input tile  -> 36 values   (per channel)
    winograd4x4_output_kernel        y  = A^T M A     36 values       -> 4x4 output  (per filter), plus the bias
    winograd4x4_output_grad_kernel   dM = A dy A^T    4x4 gradient    -> 36 values   (the adjoint of the line above)
    winograd4x4_input_grad_kernel    dd = B dV B^T    36 values       -> 6x6 tile, added where tiles overlap

with (Lavin and Gray 2015, interpolation points 0, 1, -1, 2, -2 and infinity)::

    B^T = [[4,  0, -5,  0, 1, 0],     A^T = [[1, 1,  1, 1,  1, 0],
           [0, -4, -4,  1, 1, 0],            [0, 1, -1, 2, -2, 0],
           [0,  4, -4, -1, 1, 0],            [0, 1,  1, 4,  4, 0],
           [0, -2, -1,  2, 1, 0],            [0, 1, -1, 8, -8, 1]]
           [0,  2, -1, -2, 1, 0],
           [0,  4,  0, -5, 0, 1]]

As in F(2x2, 3x3) a sandwich is two one-dimensional transforms (``_bt``, ``_b``, ``_at``, ``_a`` below), first
down the rows of a tile, then along its columns; the 36 values of a tile are stored at ``[6*a + b, channel, ty,
tx]``. Tile ``(ty, tx)`` reads the padded input at rows ``4*ty .. 4*ty + 5`` and columns ``4*tx .. 4*tx + 5`` (tiles
overlap by two) and writes the output at rows ``4*ty .. 4*ty + 3`` and columns ``4*tx .. 4*tx + 3``.
"""
from __future__ import annotations

import numpy as np

from .._numba import JIT, njit, parallel_kernel


@njit(**JIT, inline="always")
def _bt(d0, d1, d2, d3, d4, d5):
    """``B^T @ (d0, ..., d5)``."""
    return (4 * d0 - 5 * d2 + d4, d3 + d4 - 4 * (d1 + d2), 4 * (d1 - d2) + d4 - d3, 2 * (d3 - d1) + d4 - d2,
            2 * (d1 - d3) + d4 - d2, 4 * d1 - 5 * d3 + d5)


@njit(**JIT, inline="always")
def _b(v0, v1, v2, v3, v4, v5):
    """``B @ (v0, ..., v5)``, the adjoint of ``_bt``."""
    return (4 * v0, 4 * (v2 - v1 + v5) + 2 * (v4 - v3), -5 * v0 - 4 * (v1 + v2) - v3 - v4,
            v1 - v2 + 2 * (v3 - v4) - 5 * v5, v0 + v1 + v2 + v3 + v4, v5)


@njit(**JIT, inline="always")
def _at(m0, m1, m2, m3, m4, m5):
    """``A^T @ (m0, ..., m5)``."""
    return (m0 + m1 + m2 + m3 + m4, m1 - m2 + 2 * (m3 - m4), m1 + m2 + 4 * (m3 + m4), m1 - m2 + 8 * (m3 - m4) + m5)


@njit(**JIT, inline="always")
def _a(y0, y1, y2, y3):
    """``A @ (y0, ..., y3)``, the adjoint of ``_at``."""
    return (y0, y0 + y1 + y2 + y3, y0 - y1 + y2 - y3, y0 + 2 * y1 + 4 * y2 + 8 * y3, y0 - 2 * y1 + 4 * y2 - 8 * y3,
            y3)


@parallel_kernel(size_arg=0, iterations=lambda xpad, v: xpad.shape[0])
def winograd4x4_input_kernel(xpad, v, first, stop):
    """``v (36, C, TH, TW)`` from one padded image ``xpad (C, 4*TH + 2, 4*TW + 2)``: ``B^T d B`` of every tile;
    one iteration per channel. Row by row of tiles: ``B^T`` combines the tile row's six image rows over the whole
    width (one contiguous loop), then ``B``, on the right, combines each tile's six columns of that."""
    th, tw = v.shape[2], v.shape[3]
    rows = np.empty((6, xpad.shape[2]), dtype=xpad.dtype)  # B^T d for one row of tiles, all columns
    for c in range(first, stop):
        for ty in range(th):
            r0, r1, r2 = xpad[c, 4 * ty], xpad[c, 4 * ty + 1], xpad[c, 4 * ty + 2]
            r3, r4, r5 = xpad[c, 4 * ty + 3], xpad[c, 4 * ty + 4], xpad[c, 4 * ty + 5]
            for x in range(xpad.shape[2]):
                rows[0, x], rows[1, x], rows[2, x], rows[3, x], rows[4, x], rows[5, x] = _bt(
                    r0[x], r1[x], r2[x], r3[x], r4[x], r5[x])
            for a in range(6):
                row = rows[a]
                v0, v1, v2 = v[6 * a, c, ty], v[6 * a + 1, c, ty], v[6 * a + 2, c, ty]
                v3, v4, v5 = v[6 * a + 3, c, ty], v[6 * a + 4, c, ty], v[6 * a + 5, c, ty]
                for tx in range(tw):
                    x0 = 4 * tx
                    v0[tx], v1[tx], v2[tx], v3[tx], v4[tx], v5[tx] = _bt(
                        row[x0], row[x0 + 1], row[x0 + 2], row[x0 + 3], row[x0 + 4], row[x0 + 5])


@parallel_kernel(size_arg=0, iterations=lambda m, bias, y: m.shape[1])
def winograd4x4_output_kernel(m, bias, y, first, stop):
    """``y (F, 4*TH, 4*TW)`` from ``m (36, F, TH, TW)`` (C-contiguous): ``A^T M A + bias[f]`` for every tile; one
    iteration per filter. Both one-dimensional transforms run over all ``T = TH * TW`` tiles at once (each value of
    ``M`` is a contiguous row of ``T`` there): ``M A`` into ``p``, then ``A^T`` into ``q``, long loops that LLVM
    vectorises; only the last step, each tile's 16 values to its 4x4 place in ``y``, goes tile by tile. Tile by tile
    throughout (loops of 11 tiles, too short for the vector loop), the kernel took 0.25 ms an image of NaimishNet-96's
    conv2 on one core against 0.13 ms this way."""
    th, tw = m.shape[2], m.shape[3]
    t = th * tw
    tiles = m.reshape(36, m.shape[1], t)
    p = np.empty((24, t), dtype=y.dtype)  # p[4*a + j] = (M A)[a, j] of every tile
    q = np.empty((16, t), dtype=y.dtype)  # q[4*r + j] = (A^T M A)[r, j]
    for f in range(first, stop):
        b = bias[f]
        for a in range(6):
            m0, m1, m2 = tiles[6 * a, f], tiles[6 * a + 1, f], tiles[6 * a + 2, f]
            m3, m4, m5 = tiles[6 * a + 3, f], tiles[6 * a + 4, f], tiles[6 * a + 5, f]
            p0, p1, p2, p3 = p[4 * a], p[4 * a + 1], p[4 * a + 2], p[4 * a + 3]
            for i in range(t):
                p0[i], p1[i], p2[i], p3[i] = _at(m0[i], m1[i], m2[i], m3[i], m4[i], m5[i])
        for j in range(4):
            s0, s1, s2, s3, s4, s5 = p[j], p[4 + j], p[8 + j], p[12 + j], p[16 + j], p[20 + j]
            q0, q1, q2, q3 = q[j], q[4 + j], q[8 + j], q[12 + j]
            for i in range(t):
                q0[i], q1[i], q2[i], q3[i] = _at(s0[i], s1[i], s2[i], s3[i], s4[i], s5[i])
        for ty in range(th):
            for r in range(4):
                row = y[f, 4 * ty + r]
                for tx in range(tw):
                    i = ty * tw + tx
                    row[4 * tx] = q[4 * r, i] + b
                    row[4 * tx + 1] = q[4 * r + 1, i] + b
                    row[4 * tx + 2] = q[4 * r + 2, i] + b
                    row[4 * tx + 3] = q[4 * r + 3, i] + b


@parallel_kernel(size_arg=1, iterations=lambda dy, dm: dm.shape[1])
def winograd4x4_output_grad_kernel(dy, dm, first, stop):
    """``dm (36, F, TH, TW)`` (C-contiguous) from ``dy (F, 4*TH, 4*TW)``: ``A dy A^T`` of every 4x4 tile of the output
    gradient; one iteration per filter. The adjoint of the kernel above, in the opposite order: each tile's 16
    values gathered into ``g`` (tile by tile), then ``dy A^T`` into ``h`` and ``A`` on the left into ``dm``, each over
    all tiles at once (0.145 against 0.076 ms an image, tile by tile and this way; the same bits)."""
    th, tw = dm.shape[2], dm.shape[3]
    t = th * tw
    tiles = dm.reshape(36, dm.shape[1], t)
    g = np.empty((16, t), dtype=dy.dtype)  # g[4*r + j] = dy[r, j] of every tile
    h = np.empty((24, t), dtype=dy.dtype)  # h[6*r + b] = (dy A^T)[r, b]
    for f in range(first, stop):
        for ty in range(th):
            for r in range(4):
                row = dy[f, 4 * ty + r]
                for tx in range(tw):
                    i = ty * tw + tx
                    g[4 * r, i] = row[4 * tx]
                    g[4 * r + 1, i] = row[4 * tx + 1]
                    g[4 * r + 2, i] = row[4 * tx + 2]
                    g[4 * r + 3, i] = row[4 * tx + 3]
        for r in range(4):
            g0, g1, g2, g3 = g[4 * r], g[4 * r + 1], g[4 * r + 2], g[4 * r + 3]
            h0, h1, h2, h3, h4, h5 = h[6 * r], h[6 * r + 1], h[6 * r + 2], h[6 * r + 3], h[6 * r + 4], h[6 * r + 5]
            for i in range(t):
                h0[i], h1[i], h2[i], h3[i], h4[i], h5[i] = _a(g0[i], g1[i], g2[i], g3[i])
        for b in range(6):
            s0, s1, s2, s3 = h[b], h[6 + b], h[12 + b], h[18 + b]
            d0, d1, d2 = tiles[b, f], tiles[6 + b, f], tiles[12 + b, f]
            d3, d4, d5 = tiles[18 + b, f], tiles[24 + b, f], tiles[30 + b, f]
            for i in range(t):
                d0[i], d1[i], d2[i], d3[i], d4[i], d5[i] = _a(s0[i], s1[i], s2[i], s3[i])


@parallel_kernel(size_arg=0, iterations=lambda dv, dxpad: dv.shape[1])
def winograd4x4_input_grad_kernel(dv, dxpad, first, stop):
    """``dxpad (C, 4*TH + 2, 4*TW + 2)`` from ``dv (36, C, TH, TW)``: the sum of ``B dV B^T`` over the tiles that
    cover each pixel (overwritten, not added to); one iteration per channel. The adjoint of
    ``winograd4x4_input_kernel``, in the opposite order: ``B`` spreads each tile's values over its six columns of a
    tile-row buffer (neighbouring tiles add into the same two columns), then ``B^T``'s adjoint spreads the buffer's
    six rows over the image rows (adding where tile rows overlap)."""
    th, tw = dv.shape[2], dv.shape[3]
    height, width = dxpad.shape[1], dxpad.shape[2]
    rows = np.empty((6, width), dtype=dxpad.dtype)
    for c in range(first, stop):
        for y in range(height):
            for x in range(width):
                dxpad[c, y, x] = 0
        for ty in range(th):
            for a in range(6):
                for x in range(width):
                    rows[a, x] = 0
            for a in range(6):
                row = rows[a]
                v0, v1, v2 = dv[6 * a, c, ty], dv[6 * a + 1, c, ty], dv[6 * a + 2, c, ty]
                v3, v4, v5 = dv[6 * a + 3, c, ty], dv[6 * a + 4, c, ty], dv[6 * a + 5, c, ty]
                for tx in range(tw):
                    e0, e1, e2, e3, e4, e5 = _b(v0[tx], v1[tx], v2[tx], v3[tx], v4[tx], v5[tx])
                    x0 = 4 * tx
                    row[x0] += e0
                    row[x0 + 1] += e1
                    row[x0 + 2] += e2
                    row[x0 + 3] += e3
                    row[x0 + 4] += e4
                    row[x0 + 5] += e5
            r0, r1, r2 = dxpad[c, 4 * ty], dxpad[c, 4 * ty + 1], dxpad[c, 4 * ty + 2]
            r3, r4, r5 = dxpad[c, 4 * ty + 3], dxpad[c, 4 * ty + 4], dxpad[c, 4 * ty + 5]
            for x in range(width):
                d0, d1, d2, d3, d4, d5 = _b(rows[0, x], rows[1, x], rows[2, x], rows[3, x], rows[4, x], rows[5, x])
                r0[x] += d0
                r1[x] += d1
                r2[x] += d2
                r3[x] += d3
                r4[x] += d4
                r5[x] += d5
