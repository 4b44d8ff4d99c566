"""A 3x3 convolution with stride 1 by Winograd's minimal filtering F(2x2, 3x3): the same outputs as
``conv2d_forward`` with 2.25 times fewer multiplications (kernels in ``tinynet.kernels.winograd``).

The math. Cut the output into 2x2 tiles; output tile ``(ty, tx)`` needs the 4x4 input tile ``d`` at rows
``2*ty .. 2*ty + 3`` and columns ``2*tx .. 2*tx + 3`` of the zero-padded input (neighbouring input tiles
overlap by two). For one filter ``g`` (3x3) and one channel, Lavin and Gray (2015, after Winograd 1980)::

    y = A^T [ (G g G^T) * (B^T d B) ] A          * elementwise on 4x4; y is the 2x2 output tile

    B^T = [[1, 0, -1, 0],     G = [[1,    0,   0 ],     A^T = [[1, 1,  1,  0],
           [0, 1,  1, 0],          [1/2,  1/2, 1/2],           [0, 1, -1, -1]]
           [0, -1, 1, 0],          [1/2, -1/2, 1/2],
           [0, 1,  0, -1]]         [0,    0,   1 ]]

16 multiplications per output tile and channel instead of 36 (4 outputs times 9 taps). Summed over the
channels, the elementwise products become 16 matrix products, one per position ``xi = (a, b)`` of the 4x4::

    U[xi]  = (G g G^T)[a, b]      (F, C)     the weight, transformed once per call
    V[xi]  = (B^T d B)[a, b]      (C, T)     every tile of one image, T = TH * TW
    M[xi]  = U[xi] @ V[xi]        (F, T)
    out    = A^T M A (+ bias)     (F, 2*TH, 2*TW), cropped to (F, OH, OW)

Backward is every step's adjoint, in reverse order (no other formula to derive)::

    dM[xi]   = (A dout A^T)[a, b]                    (F, T)
    dU[xi]   = sum over images of dM[xi] @ V[xi].T   (F, C)     dweight = G^T dU G
    dV[xi]   = U[xi].T @ dM[xi]                      (C, T)     dx = the tiles' B dV B^T, added where they overlap

``dU``'s products are taken ``TILES_PER_PRODUCT`` tiles at a time and added: with all 484 tiles of NaimishNet's
layer as the inner size, OpenBLAS took 2.0-2.4 ms for the 16 products on one thread in some processes and 1.0-1.1 in
others; in chunks of 121 or 162 tiles, 1.03-1.14 ms in both.

Why. NaimishNet-96's second convolution (32 -> 64 channels, 3x3, on 46x46) is almost half of a training step
with im2col (``benchmarks/profile_train.py``): 35.8 million multiply-adds per image and pass, in products whose
inner size is ``32*9 + 1 = 289``. Here the same layer takes 15.9 million in 16 products of inner size 32 (forward),
64 (dV) and 128 (dU); on this machine's OpenBLAS such small-inner products run as fast per multiply-add as the
large one (one thread: 27-30 GFLOP/s against 24-32). The transforms are additions only: 0.15-0.3 ms per image and
transform against 1.1-1.5 ms for its 16 products. Measured on the layer at batch 64, both cores, in turns with
im2col: forward 55-63 against 100-116 ms, backward 112-118 against 167-181 ms; the training step of the net
(``profile_train.py``) 130-132 against 106-116 images/s.

The price is rounding: the transformed values are sums of up to 16 terms (and ``G`` halves), so float32
results differ from im2col's in the last bits (measured: about ``1e-6`` relative to the output's scale),
as cuDNN's and oneDNN's Winograd convolutions do. Gradients are exact adjoints of that forward.

How it runs: image by image, like ``conv2d_forward`` (``tinynet.functional.conv``): each image's ``V`` (1 MB for
the layer above) and ``M`` are made and used while still in cache, and the images are the pieces tinynet's
threads share out. The weight gradient is summed over ranges of ``IMAGES_PER_SUM`` images, then the ranges' sums
in order, so it does not depend on the thread count. With ``tinynet.backends.numba.enabled`` False the four
transforms are the plain references below (each a matrix sandwich written with ``einsum``).

Nothing runs this unless the model asks: ``tinynet.nn.WinogradConv2d``, which ``tinynet.nn.use_winograd(model)``
puts in place of each 3x3, stride-1 ``Conv2d``.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from .._checks import ShapeError, pair
from .. import backends, kernels
from ..blas import IMAGES_PER_SUM, run_pieces
from .conv import image_groups
from .im2col import conv_output_size

#: ``dU``'s products take at most this many tiles (their inner size) at once (see the module docstring)
TILES_PER_PRODUCT = 128

B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)


class WinogradConv2dCache(NamedTuple):
    x: np.ndarray  # (N, C, H, W), the (C-contiguous) input
    weight: np.ndarray  # (F, C, 3, 3)
    u: np.ndarray  # (16, F, C), the transformed weight G g G^T
    padding: tuple[int, int]
    has_bias: bool


class _Geometry(NamedTuple):
    """Sizes of one call: the output ``(OH, OW)``, the tiles ``(TH, TW)`` covering it, the padding."""
    out: tuple[int, int]
    tiles: tuple[int, int]
    padding: tuple[int, int]

    @property
    def even(self) -> bool:
        """Whether the tiles cover the output exactly (``OH``, ``OW`` even)."""
        return self.out == (2 * self.tiles[0], 2 * self.tiles[1])

    @property
    def padded_size(self) -> tuple[int, int]:
        """The input the tiles read: ``(2*TH + 2, 2*TW + 2)``, the padded input plus a zero row/column when odd."""
        return 2 * self.tiles[0] + 2, 2 * self.tiles[1] + 2


def _geometry(x_shape: Sequence[int], weight_shape: Sequence[int], padding: tuple[int, int]) -> _Geometry:
    if tuple(weight_shape[2:]) != (3, 3):
        raise ShapeError(f"conv2d_winograd: expected a weight of shape (F, C, 3, 3), got {tuple(weight_shape)}")
    oh, ow = conv_output_size(x_shape[2], 3, 1, padding[0]), conv_output_size(x_shape[3], 3, 1, padding[1])
    if oh < 1 or ow < 1:
        raise ShapeError(f"conv2d_winograd: input of spatial size {x_shape[2]}x{x_shape[3]} (padding {padding})"
                         " is smaller than the kernel 3x3")
    return _Geometry((oh, ow), ((oh + 1) // 2, (ow + 1) // 2), padding)


def winograd_weight(weight: np.ndarray) -> np.ndarray:
    """``U (16, F, C)`` from ``weight (F, C, 3, 3)``: ``U[4*a + b, f, c] = (G weight[f, c] G^T)[a, b]``."""
    f, c = weight.shape[:2]
    g = G.astype(weight.dtype)
    return np.einsum("ai,fcij,bj->abfc", g, weight, g).reshape(16, f, c).copy()


def winograd_weight_grad(du: np.ndarray) -> np.ndarray:
    """``dweight (F, C, 3, 3)`` from ``dU (16, F, C)``: the adjoint of ``winograd_weight``, ``G^T dU G``."""
    f, c = du.shape[1:]
    g = G.astype(du.dtype)
    return np.einsum("ai,abfc,bj->fcij", g, du.reshape(4, 4, f, c), g)


# ---------------------------------------------------------------------------------------------
# The four transforms: the kernel, or the reference with the Numba kernels disabled
# ---------------------------------------------------------------------------------------------
def input_transform(xpad: np.ndarray, v: np.ndarray) -> None:
    """``v (16, C, TH, TW) = B^T d B`` of every tile of one padded image ``xpad (C, 2*TH + 2, 2*TW + 2)``."""
    if backends.numba.enabled:
        kernels.winograd.winograd_input_kernel(xpad, v)
    else:
        v[...] = input_transform_reference(xpad, v.shape[2:])


def output_transform(m: np.ndarray, bias: np.ndarray, y: np.ndarray) -> None:
    """``y (F, 2*TH, 2*TW) = A^T M A + bias`` of every tile, from ``m (16, F, TH, TW)``."""
    if backends.numba.enabled:
        kernels.winograd.winograd_output_kernel(m, bias, y)
    else:
        y[...] = output_transform_reference(m) + bias[:, None, None]


def output_grad_transform(dy: np.ndarray, dm: np.ndarray) -> None:
    """``dm (16, F, TH, TW) = A dy A^T`` of every 2x2 tile of ``dy (F, 2*TH, 2*TW)``."""
    if backends.numba.enabled:
        kernels.winograd.winograd_output_grad_kernel(dy, dm)
    else:
        dm[...] = output_grad_transform_reference(dy)


def input_grad_transform(dv: np.ndarray, dxpad: np.ndarray) -> None:
    """``dxpad (C, 2*TH + 2, 2*TW + 2)``: each tile's ``B dV B^T`` from ``dv (16, C, TH, TW)``, summed where tiles
    overlap."""
    if backends.numba.enabled:
        kernels.winograd.winograd_input_grad_kernel(dv, dxpad)
    else:
        dxpad[...] = input_grad_transform_reference(dv)


# ---------------------------------------------------------------------------------------------
# Forward and backward, image by image
# ---------------------------------------------------------------------------------------------
def _padded(image: np.ndarray, geometry: _Geometry, buffer: np.ndarray | None) -> np.ndarray:
    """The ``(C, 2*TH + 2, 2*TW + 2)`` input the tiles read: ``image`` itself without padding and with an even
    output, else ``image`` written into ``buffer``, whose border is zero and stays zero."""
    if buffer is None:
        return image
    (ph, pw), (h, w) = geometry.padding, image.shape[1:]
    buffer[:, ph : ph + h, pw : pw + w] = image
    return buffer


def _workspace(x: np.ndarray, f: int, geometry: _Geometry) -> dict:
    """One piece's buffers: ``v``, ``m`` (one image's transforms, backward's gradients in the same buffers); the
    padded input and its gradient (``None`` where the image itself is that); an output-sized tile buffer for an
    odd output (``None`` if even)."""
    c, (th, tw) = x.shape[1], geometry.tiles
    direct = geometry.padding == (0, 0) and geometry.even
    return dict(
        v=np.empty((16, c, th, tw), dtype=x.dtype),
        m=np.empty((16, f, th, tw), dtype=x.dtype),
        xpad=None if direct else np.zeros((c, *geometry.padded_size), dtype=x.dtype),
        tiles_out=None if geometry.even else np.zeros((f, 2 * th, 2 * tw), dtype=x.dtype),
        dxpad=None if direct else np.empty((c, *geometry.padded_size), dtype=x.dtype),
    )


def _forward_images(x, u, bias, geometry, out, ranges, work) -> None:
    """``out[i]`` for every image ``i`` of ``ranges`` (one piece of the forward)."""
    v, m, (oh, ow) = work["v"], work["m"], geometry.out
    c, f, t = v.shape[1], m.shape[1], v.shape[2] * v.shape[3]
    for images in ranges:
        for i in range(images.start, images.stop):
            input_transform(_padded(x[i], geometry, work["xpad"]), v)
            np.matmul(u, v.reshape(16, c, t), out=m.reshape(16, f, t))  # 16 x (F, C) @ (C, T)
            if work["tiles_out"] is None:
                output_transform(m, bias, out[i])
            else:
                output_transform(m, bias, work["tiles_out"])
                out[i] = work["tiles_out"][:, :oh, :ow]


def conv2d_winograd_forward(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, padding: int | Sequence[int] = (0, 0)
) -> tuple[np.ndarray, WinogradConv2dCache]:
    """Forward pass of a 3x3, stride-1 convolution by F(2x2, 3x3): the same result as
    ``conv2d_forward(x, weight, bias, 1, padding)`` up to float rounding.

    Parameters
    ----------
    x : (N, C, H, W)
    weight : (F, C, 3, 3), same dtype as ``x``
    bias : (F,) or None
    padding : int or pair ``(ph, pw)`` of zeros on every side

    Returns
    -------
    out : (N, F, OH, OW), ``OH = H + 2*ph - 2``, ``OW = W + 2*pw - 2``
    cache : WinogradConv2dCache
    """
    padding = pair(padding, "padding")
    x = np.ascontiguousarray(x)
    geometry = _geometry(x.shape, weight.shape, padding)
    n, f = x.shape[0], weight.shape[0]
    u = winograd_weight(weight)
    shift = np.zeros(f, dtype=x.dtype) if bias is None else bias.astype(x.dtype, copy=False)
    out = np.empty((n, f, *geometry.out), dtype=x.dtype)
    macs = n * 16 * f * x.shape[1] * geometry.tiles[0] * geometry.tiles[1]
    run_pieces([(_forward_images, x, u, shift, geometry, out, ranges, _workspace(x, f, geometry))
                for ranges in image_groups(n, 1, macs)])
    return out, WinogradConv2dCache(x, weight, u, padding, bias is not None)


def _backward_images(x, u, dout, geometry, dx, ranges, totals, work) -> None:
    """For every range of ``ranges``: its ``dU`` and bias gradient summed into ``total`` (a pair), and, unless
    ``dx`` is None, ``dx[i]`` (one piece of the backward)."""
    v, m, xpad, dxpad, tiles_out = (work[name] for name in ("v", "m", "xpad", "dxpad", "tiles_out"))
    c, f, t = v.shape[1], m.shape[1], v.shape[2] * v.shape[3]
    v_mat, m_mat = v.reshape(16, c, t), m.reshape(16, f, t)
    (oh, ow), (ph, pw), (h, w) = geometry.out, geometry.padding, x.shape[2:]
    product = np.empty_like(totals[0][0])
    for images, (du, dbias) in zip(ranges, totals):
        du[...], dbias[...] = 0, 0
        for i in range(images.start, images.stop):
            input_transform(_padded(x[i], geometry, xpad), v)
            if tiles_out is None:
                output_grad_transform(dout[i], m)
            else:
                tiles_out[:, :oh, :ow] = dout[i]  # the rest of the buffer is zero
                output_grad_transform(tiles_out, m)
            for first in range(0, t, TILES_PER_PRODUCT):
                tiles = slice(first, first + TILES_PER_PRODUCT)
                # 16 x (F, t) @ (t, C)
                np.matmul(m_mat[:, :, tiles], v_mat[:, :, tiles].transpose(0, 2, 1), out=product)
                du += product
            dbias += dout[i].sum(axis=(1, 2))
            if dx is not None:
                np.matmul(u.transpose(0, 2, 1), m_mat, out=v_mat)  # dV: 16 x (C, F) @ (F, T), in v's buffer
                if dxpad is None:
                    input_grad_transform(v, dx[i])
                else:
                    input_grad_transform(v, dxpad)
                    dx[i] = dxpad[:, ph : ph + h, pw : pw + w]


def conv2d_winograd_backward(
    dout: np.ndarray, cache: WinogradConv2dCache, need_dx: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Backward pass of ``conv2d_winograd_forward``: the adjoint of each of its steps (module docstring).

    Parameters
    ----------
    dout : (N, F, OH, OW)
    cache : WinogradConv2dCache from the forward
    need_dx : bool; False skips the input gradient

    Returns
    -------
    dx : (N, C, H, W) or None, dweight : (F, C, 3, 3), dbias : (F,) or None
    """
    x, weight, u, padding, has_bias = cache
    dout = np.ascontiguousarray(dout)
    geometry = _geometry(x.shape, weight.shape, padding)
    n, (f, c) = x.shape[0], weight.shape[:2]
    dx = np.empty_like(x) if need_dx else None
    macs = n * 16 * f * c * geometry.tiles[0] * geometry.tiles[1]
    groups = image_groups(n, IMAGES_PER_SUM, 2 * macs)
    totals = [[(np.empty((16, f, c), dtype=x.dtype), np.empty(f, dtype=x.dtype)) for _ in ranges] for ranges in groups]
    run_pieces([(_backward_images, x, u, dout, geometry, dx, ranges, sums, _workspace(x, f, geometry))
                for ranges, sums in zip(groups, totals)])
    du, dbias = np.zeros((16, f, c), dtype=x.dtype), np.zeros(f, dtype=x.dtype)
    for range_du, range_dbias in (total for sums in totals for total in sums):
        du += range_du
        dbias += range_dbias
    return dx, winograd_weight_grad(du), dbias if has_bias else None


# ---------------------------------------------------------------------------------------------
# Plain NumPy references of the four transforms (the tests compare the kernels with them)
# ---------------------------------------------------------------------------------------------
def _input_tiles(xpad: np.ndarray, tiles: tuple[int, int]) -> np.ndarray:
    """``(C, TH, TW, 4, 4)`` view: the 4x4 input tile of every output tile (overlapping by two)."""
    windows = np.lib.stride_tricks.sliding_window_view(xpad, (4, 4), axis=(1, 2))  # (C, Hp - 3, Wp - 3, 4, 4)
    return windows[:, : 2 * tiles[0] : 2, : 2 * tiles[1] : 2]


def input_transform_reference(xpad: np.ndarray, tiles: tuple[int, int]) -> np.ndarray:
    """``V (16, C, TH, TW)``: ``B^T d B`` of every tile ``d`` of ``xpad (C, 2*TH + 2, 2*TW + 2)``."""
    bt = B_T.astype(xpad.dtype)
    v = np.einsum("ai,cyxij,bj->abcyx", bt, _input_tiles(xpad, tiles), bt, optimize=True)
    return v.reshape(16, *v.shape[2:])


def output_transform_reference(m: np.ndarray) -> np.ndarray:
    """``y (F, 2*TH, 2*TW)``: ``A^T M A`` of every tile of ``m (16, F, TH, TW)``."""
    f, th, tw = m.shape[1:]
    at = A_T.astype(m.dtype)
    y = np.einsum("ua,abfyx,vb->fyuxv", at, m.reshape(4, 4, f, th, tw), at, optimize=True)  # (F, TH, 2, TW, 2)
    return y.reshape(f, 2 * th, 2 * tw)


def output_grad_transform_reference(dy: np.ndarray) -> np.ndarray:
    """``dM (16, F, TH, TW)``: ``A dy A^T`` of every 2x2 tile of ``dy (F, 2*TH, 2*TW)``."""
    f, h2, w2 = dy.shape
    at = A_T.astype(dy.dtype)
    tiles = dy.reshape(f, h2 // 2, 2, w2 // 2, 2)  # (F, TH, 2, TW, 2)
    return np.einsum("ua,fyuxv,vb->abfyx", at, tiles, at, optimize=True).reshape(16, f, h2 // 2, w2 // 2)


def input_grad_transform_reference(dv: np.ndarray) -> np.ndarray:
    """``dxpad (C, 2*TH + 2, 2*TW + 2)``: every tile's ``B dV B^T`` (``dv (16, C, TH, TW)``) added onto the 4x4
    pixels it came from."""
    c, th, tw = dv.shape[1:]
    bt = B_T.astype(dv.dtype)
    dd = np.einsum("ai,abcyx,bj->ijcyx", bt, dv.reshape(4, 4, c, th, tw), bt, optimize=True)  # (4, 4, C, TH, TW)
    dxpad = np.zeros((c, 2 * th + 2, 2 * tw + 2), dtype=dv.dtype)
    for i in range(4):
        for j in range(4):
            dxpad[:, i : i + 2 * th : 2, j : j + 2 * tw : 2] += dd[i, j]
    return dxpad
