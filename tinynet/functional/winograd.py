"""A 3x3 convolution with stride 1 by Winograd's minimal filtering F(2x2, 3x3) or F(4x4, 3x3): the same outputs as
``conv2d_forward`` with 2.25 or 4 times fewer multiplications (kernels in ``tinynet.kernels.winograd`` and
``winograd_4x4``). The math below is F(2x2, 3x3)'s; F(4x4, 3x3) is the same with 6x6 input tiles, 4x4 output tiles
and 36 products (``Tiles``; ``tile=4``).

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

F(4x4, 3x3) (what ``keypoints.train`` runs): 2.25 multiplications per output instead of 4, in 36 products over 121
tiles an image instead of 16 over 484; NaimishNet-96's training step about 7 % faster than with F(2x2) (measurements
in ``benchmarks/README.md``). Its coefficients (5 and 4 in ``B``, 8 in ``A``, 1/24 in ``G``) cost a few bits more:
2e-6 to 5e-6 of the output's scale in float32.

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


class Tiles(NamedTuple):
    """One member of the family: F(m x m, 3x3), output tiles of ``m x m`` read from input tiles of ``(m + 2)^2``."""
    m: int
    b_t: np.ndarray  # (m + 2, m + 2)
    g: np.ndarray  # (m + 2, 3)
    a_t: np.ndarray  # (m, m + 2)
    kernels: str  # the module of ``tinynet.kernels`` with its four transforms
    prefix: str  # their names' start: ``<prefix>_input_kernel`` ...

    @property
    def alpha(self) -> int:
        """The input tile's side, ``m + 2``; ``alpha^2`` products per call."""
        return self.m + 2

    def kernel(self, name: str):
        """The transform ``name`` (``input``, ``output``, ``output_grad``, ``input_grad``) of this tile size."""
        return getattr(getattr(kernels, self.kernels), f"{self.prefix}_{name}_kernel")


#: F(4x4, 3x3) (Lavin and Gray's points 0, 1, -1, 2, -2, infinity): 36 products per 16 outputs (2.25 per output
#: against 4 for F(2x2, 3x3) and 9 directly), at the price of larger rounding (``G``'s 1/24, ``A^T``'s 8)
B_T_4X4 = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
                    [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=np.float64)
G_4X4 = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
                  [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=np.float64)
A_T_4X4 = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
                   dtype=np.float64)

#: the output tile sizes there are kernels for
TILES = {2: Tiles(2, B_T, G, A_T, "winograd", "winograd"),
         4: Tiles(4, B_T_4X4, G_4X4, A_T_4X4, "winograd_4x4", "winograd4x4")}


def tiles_for(tile: int) -> Tiles:
    """The ``Tiles`` of output tile size ``tile`` (2 or 4); ``ValueError`` otherwise."""
    if isinstance(tile, bool) or tile not in TILES:
        raise ValueError(f"conv2d_winograd: tile must be one of {sorted(TILES)} (F(2x2, 3x3) or F(4x4, 3x3)), "
                         f"got {tile!r}")
    return TILES[tile]


class WinogradConv2dCache(NamedTuple):
    x: np.ndarray  # (N, C, H, W), the (C-contiguous) input
    weight: np.ndarray  # (F, C, 3, 3)
    u: np.ndarray  # (alpha^2, F, C), the transformed weight G g G^T
    padding: tuple[int, int]
    has_bias: bool
    tile: int  # the output tile size m of F(m x m, 3x3)


class _Geometry(NamedTuple):
    """Sizes of one call: the output ``(OH, OW)``, the ``m x m`` tiles ``(TH, TW)`` covering it, the padding, and
    the member of the family (``spec``) that cuts them."""
    out: tuple[int, int]
    tiles: tuple[int, int]
    padding: tuple[int, int]
    spec: Tiles

    @property
    def m(self) -> int:
        """The output tile's side."""
        return self.spec.m

    @property
    def even(self) -> bool:
        """Whether the tiles cover the output exactly (``OH``, ``OW`` multiples of ``m``)."""
        return self.out == (self.m * self.tiles[0], self.m * self.tiles[1])

    @property
    def padded_size(self) -> tuple[int, int]:
        """The input the tiles read: ``(m*TH + 2, m*TW + 2)``, the padded input plus zero rows/columns where the
        tiles overhang the output."""
        return self.m * self.tiles[0] + 2, self.m * self.tiles[1] + 2


def _geometry(x_shape: Sequence[int], weight_shape: Sequence[int], padding: tuple[int, int], spec: Tiles) -> _Geometry:
    if tuple(weight_shape[2:]) != (3, 3):
        raise ShapeError(f"conv2d_winograd: expected a weight of shape (F, C, 3, 3), got {tuple(weight_shape)}")
    oh, ow = conv_output_size(x_shape[2], 3, 1, padding[0]), conv_output_size(x_shape[3], 3, 1, padding[1])
    if oh < 1 or ow < 1:
        raise ShapeError(f"conv2d_winograd: input of spatial size {x_shape[2]}x{x_shape[3]} (padding {padding})"
                         " is smaller than the kernel 3x3")
    m = spec.m
    return _Geometry((oh, ow), (-(-oh // m), -(-ow // m)), padding, spec)


def winograd_weight(weight: np.ndarray, tile: int = 2) -> np.ndarray:
    """``U (alpha^2, F, C)`` from ``weight (F, C, 3, 3)``: ``U[alpha*a + b, f, c] = (G weight[f, c] G^T)[a, b]``."""
    f, c = weight.shape[:2]
    spec = tiles_for(tile)
    g = spec.g.astype(weight.dtype)
    return np.einsum("ai,fcij,bj->abfc", g, weight, g).reshape(spec.alpha ** 2, f, c).copy()


def winograd_weight_grad(du: np.ndarray, tile: int = 2) -> np.ndarray:
    """``dweight (F, C, 3, 3)`` from ``dU (alpha^2, F, C)``: the adjoint of ``winograd_weight``, ``G^T dU G``."""
    f, c = du.shape[1:]
    spec = tiles_for(tile)
    g = spec.g.astype(du.dtype)
    return np.einsum("ai,abfc,bj->fcij", g, du.reshape(spec.alpha, spec.alpha, f, c), g)


# ---------------------------------------------------------------------------------------------
# The four transforms: the kernel, or the reference with the Numba kernels disabled
# ---------------------------------------------------------------------------------------------
def input_transform(xpad: np.ndarray, v: np.ndarray, spec: Tiles = TILES[2]) -> None:
    """``v (alpha^2, C, TH, TW) = B^T d B`` of every tile of one padded image ``xpad (C, m*TH + 2, m*TW + 2)``."""
    if backends.numba.enabled:
        spec.kernel("input")(xpad, v)
    else:
        v[...] = input_transform_reference(xpad, v.shape[2:], spec)


def output_transform(m: np.ndarray, bias: np.ndarray, y: np.ndarray, spec: Tiles = TILES[2]) -> None:
    """``y (F, m*TH, m*TW) = A^T M A + bias`` of every tile, from ``m (alpha^2, F, TH, TW)``."""
    if backends.numba.enabled:
        spec.kernel("output")(m, bias, y)
    else:
        y[...] = output_transform_reference(m, spec) + bias[:, None, None]


def output_grad_transform(dy: np.ndarray, dm: np.ndarray, spec: Tiles = TILES[2]) -> None:
    """``dm (alpha^2, F, TH, TW) = A dy A^T`` of every ``m x m`` tile of ``dy (F, m*TH, m*TW)``."""
    if backends.numba.enabled:
        spec.kernel("output_grad")(dy, dm)
    else:
        dm[...] = output_grad_transform_reference(dy, spec)


def input_grad_transform(dv: np.ndarray, dxpad: np.ndarray, spec: Tiles = TILES[2]) -> None:
    """``dxpad (C, m*TH + 2, m*TW + 2)``: each tile's ``B dV B^T`` from ``dv (alpha^2, C, TH, TW)``, summed where
    tiles overlap."""
    if backends.numba.enabled:
        spec.kernel("input_grad")(dv, dxpad)
    else:
        dxpad[...] = input_grad_transform_reference(dv, spec)


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
    c, (th, tw), t, p = x.shape[1], geometry.tiles, geometry.m, geometry.spec.alpha ** 2
    direct = geometry.padding == (0, 0) and geometry.even
    return dict(
        v=np.empty((p, c, th, tw), dtype=x.dtype),
        m=np.empty((p, f, th, tw), dtype=x.dtype),
        xpad=None if direct else np.zeros((c, *geometry.padded_size), dtype=x.dtype),
        tiles_out=None if geometry.even else np.zeros((f, t * th, t * tw), dtype=x.dtype),
        dxpad=None if direct else np.empty((c, *geometry.padded_size), dtype=x.dtype),
    )


def _forward_images(x, u, bias, geometry, out, ranges, work) -> None:
    """``out[i]`` for every image ``i`` of ``ranges`` (one piece of the forward)."""
    v, m, (oh, ow), spec = work["v"], work["m"], geometry.out, geometry.spec
    p, c, f, t = v.shape[0], v.shape[1], m.shape[1], v.shape[2] * v.shape[3]
    for images in ranges:
        for i in range(images.start, images.stop):
            input_transform(_padded(x[i], geometry, work["xpad"]), v, spec)
            np.matmul(u, v.reshape(p, c, t), out=m.reshape(p, f, t))  # alpha^2 x (F, C) @ (C, T)
            if work["tiles_out"] is None:
                output_transform(m, bias, out[i], spec)
            else:
                output_transform(m, bias, work["tiles_out"], spec)
                out[i] = work["tiles_out"][:, :oh, :ow]


def conv2d_winograd_forward(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, padding: int | Sequence[int] = (0, 0), tile: int = 2
) -> tuple[np.ndarray, WinogradConv2dCache]:
    """Forward pass of a 3x3, stride-1 convolution by F(2x2, 3x3) (``tile=2``) or F(4x4, 3x3) (``tile=4``): the
    same result as ``conv2d_forward(x, weight, bias, 1, padding)`` up to float rounding.

    Parameters
    ----------
    x : (N, C, H, W)
    weight : (F, C, 3, 3), same dtype as ``x``
    bias : (F,) or None
    padding : int or pair ``(ph, pw)`` of zeros on every side
    tile : the output tile size m of F(m x m, 3x3), 2 or 4

    Returns
    -------
    out : (N, F, OH, OW), ``OH = H + 2*ph - 2``, ``OW = W + 2*pw - 2``
    cache : WinogradConv2dCache
    """
    padding, spec = pair(padding, "padding"), tiles_for(tile)
    x = np.ascontiguousarray(x)
    geometry = _geometry(x.shape, weight.shape, padding, spec)
    n, f = x.shape[0], weight.shape[0]
    u = winograd_weight(weight, spec.m)
    shift = np.zeros(f, dtype=x.dtype) if bias is None else bias.astype(x.dtype, copy=False)
    out = np.empty((n, f, *geometry.out), dtype=x.dtype)
    macs = n * spec.alpha ** 2 * f * x.shape[1] * geometry.tiles[0] * geometry.tiles[1]
    run_pieces([(_forward_images, x, u, shift, geometry, out, ranges, _workspace(x, f, geometry))
                for ranges in image_groups(n, 1, macs)])
    return out, WinogradConv2dCache(x, weight, u, padding, bias is not None, spec.m)


def _backward_images(x, u, dout, geometry, dx, ranges, totals, work) -> None:
    """For every range of ``ranges``: its ``dU`` and bias gradient summed into ``total`` (a pair), and, unless
    ``dx`` is None, ``dx[i]`` (one piece of the backward)."""
    v, m, xpad, dxpad, tiles_out = (work[name] for name in ("v", "m", "xpad", "dxpad", "tiles_out"))
    spec, p, c, f, t = geometry.spec, v.shape[0], v.shape[1], m.shape[1], v.shape[2] * v.shape[3]
    v_mat, m_mat = v.reshape(p, c, t), m.reshape(p, f, t)
    (oh, ow), (ph, pw), (h, w) = geometry.out, geometry.padding, x.shape[2:]
    product = np.empty_like(totals[0][0])
    for images, (du, dbias) in zip(ranges, totals):
        du[...], dbias[...] = 0, 0
        for i in range(images.start, images.stop):
            input_transform(_padded(x[i], geometry, xpad), v, spec)
            if tiles_out is None:
                output_grad_transform(dout[i], m, spec)
            else:
                tiles_out[:, :oh, :ow] = dout[i]  # the rest of the buffer is zero
                output_grad_transform(tiles_out, m, spec)
            for first in range(0, t, TILES_PER_PRODUCT):
                tiles = slice(first, first + TILES_PER_PRODUCT)
                # alpha^2 x (F, t) @ (t, C)
                np.matmul(m_mat[:, :, tiles], v_mat[:, :, tiles].transpose(0, 2, 1), out=product)
                du += product
            dbias += dout[i].sum(axis=(1, 2))
            if dx is not None:
                np.matmul(u.transpose(0, 2, 1), m_mat, out=v_mat)  # dV: alpha^2 x (C, F) @ (F, T), in v's buffer
                if dxpad is None:
                    input_grad_transform(v, dx[i], spec)
                else:
                    input_grad_transform(v, dxpad, spec)
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
    x, weight, u, padding, has_bias, tile = cache
    dout = np.ascontiguousarray(dout)
    geometry = _geometry(x.shape, weight.shape, padding, TILES[tile])
    n, (f, c), p = x.shape[0], weight.shape[:2], u.shape[0]
    dx = np.empty_like(x) if need_dx else None
    macs = n * p * f * c * geometry.tiles[0] * geometry.tiles[1]
    groups = image_groups(n, IMAGES_PER_SUM, 2 * macs)
    totals = [[(np.empty((p, f, c), dtype=x.dtype), np.empty(f, dtype=x.dtype)) for _ in ranges] for ranges in groups]
    run_pieces([(_backward_images, x, u, dout, geometry, dx, ranges, sums, _workspace(x, f, geometry))
                for ranges, sums in zip(groups, totals)])
    du, dbias = np.zeros((p, f, c), dtype=x.dtype), np.zeros(f, dtype=x.dtype)
    for range_du, range_dbias in (total for sums in totals for total in sums):
        du += range_du
        dbias += range_dbias
    return dx, winograd_weight_grad(du, tile), dbias if has_bias else None


# ---------------------------------------------------------------------------------------------
# Plain NumPy references of the four transforms (the tests compare the kernels with them)
# ---------------------------------------------------------------------------------------------
def _input_tiles(xpad: np.ndarray, tiles: tuple[int, int], spec: Tiles) -> np.ndarray:
    """``(C, TH, TW, alpha, alpha)`` view: the input tile of every output tile (overlapping by two)."""
    windows = np.lib.stride_tricks.sliding_window_view(xpad, (spec.alpha, spec.alpha), axis=(1, 2))
    return windows[:, : spec.m * tiles[0] : spec.m, : spec.m * tiles[1] : spec.m]


def input_transform_reference(xpad: np.ndarray, tiles: tuple[int, int], spec: Tiles = TILES[2]) -> np.ndarray:
    """``V (alpha^2, C, TH, TW)``: ``B^T d B`` of every tile ``d`` of ``xpad (C, m*TH + 2, m*TW + 2)``."""
    bt = spec.b_t.astype(xpad.dtype)
    v = np.einsum("ai,cyxij,bj->abcyx", bt, _input_tiles(xpad, tiles, spec), bt, optimize=True)
    return v.reshape(spec.alpha ** 2, *v.shape[2:])


def output_transform_reference(m: np.ndarray, spec: Tiles = TILES[2]) -> np.ndarray:
    """``y (F, m*TH, m*TW)``: ``A^T M A`` of every tile of ``m (alpha^2, F, TH, TW)``."""
    f, th, tw = m.shape[1:]
    at, alpha = spec.a_t.astype(m.dtype), spec.alpha
    y = np.einsum("ua,abfyx,vb->fyuxv", at, m.reshape(alpha, alpha, f, th, tw), at, optimize=True)  # (F, TH, m, TW, m)
    return y.reshape(f, spec.m * th, spec.m * tw)


def output_grad_transform_reference(dy: np.ndarray, spec: Tiles = TILES[2]) -> np.ndarray:
    """``dM (alpha^2, F, TH, TW)``: ``A dy A^T`` of every ``m x m`` tile of ``dy (F, m*TH, m*TW)``."""
    f, hm, wm = dy.shape
    at, t = spec.a_t.astype(dy.dtype), spec.m
    tiles = dy.reshape(f, hm // t, t, wm // t, t)  # (F, TH, m, TW, m)
    dm = np.einsum("ua,fyuxv,vb->abfyx", at, tiles, at, optimize=True)
    return dm.reshape(spec.alpha ** 2, f, hm // t, wm // t)


def input_grad_transform_reference(dv: np.ndarray, spec: Tiles = TILES[2]) -> np.ndarray:
    """``dxpad (C, m*TH + 2, m*TW + 2)``: every tile's ``B dV B^T`` (``dv (alpha^2, C, TH, TW)``) added onto the
    pixels it came from."""
    c, th, tw = dv.shape[1:]
    bt, alpha, t = spec.b_t.astype(dv.dtype), spec.alpha, spec.m
    dd = np.einsum("ai,abcyx,bj->ijcyx", bt, dv.reshape(alpha, alpha, c, th, tw), bt, optimize=True)
    dxpad = np.zeros((c, t * th + 2, t * tw + 2), dtype=dv.dtype)
    for i in range(alpha):
        for j in range(alpha):
            dxpad[:, i : i + t * th : t, j : j + t * tw : t] += dd[i, j]
    return dxpad
