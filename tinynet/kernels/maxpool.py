"""2-D max pooling: forward (max and where it was) and backward (route the gradient to that place).

Semantics are PyTorch's ``max_pool2d`` (``ceil_mode=False``, ``dilation=1``)::

    x    (N, C, H, W)
    out  (N, C, OH, OW)   out[n, c, oh, ow] = max over the window rows  oh*sh - ph ... oh*sh - ph + kh - 1
                                                        and columns  ow*sw - pw ... ow*sw - pw + kw - 1
    OH = (H + 2*ph - kh) // sh + 1   (floor mode), likewise OW

- the padding counts as ``-inf``: it is never the maximum;
- windows may overlap (``stride < kernel``);
- ``argmax`` is the flat index ``h*W + w`` of the maximum inside the *unpadded* input plane;
- ties go to the first maximum in row-major window order (strict ``>``);
- NaN propagates: a window holding a NaN outputs NaN, and, as PyTorch's CPU kernel, ``argmax``
  points at the last NaN of the window (the update rule is ``val > max or isnan(val)``);
- a window whose valid values are all ``-inf`` reports its first valid pixel.

Backward adds ``dout[n, c, oh, ow]`` onto ``dx[n, c].flat[argmax[n, c, oh, ow]]``; with overlapping
windows one pixel can receive several contributions, which are summed.

Each operation has a plain NumPy reference (used by the tests) and a parallel Numba kernel behind a
validating wrapper.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .._checks import FLOAT_DTYPES, ShapeError, pair
from .._numba import JIT, njit, parallel_kernel, prange
from .im2col import conv_output_size

#: dtype of the argmax indices the forward returns
INDEX_DTYPE = np.dtype(np.int32)  # a flat index within one plane: int32 halves the memory traffic of int64


# ---------------------------------------------------------------------------------------------
# Plain NumPy references
# ---------------------------------------------------------------------------------------------
def maxpool2d_forward_reference(
    x: np.ndarray,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling with NumPy: visit the kernel offsets in row-major order, keep the running maximum.

    Parameters
    ----------
    x : (N, C, H, W)
    kernel_size, stride, padding : pairs ``(h, w)``

    Returns
    -------
    out : (N, C, OH, OW)
    argmax : (N, C, OH, OW) int32, flat index ``h*W + w`` into the unpadded plane
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    n, c, h, w = x.shape
    oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    rows = np.arange(oh) * sh - ph  # top row of each window (in unpadded coordinates)
    cols = np.arange(ow) * sw - pw  # left column of each window
    best = np.full((n, c, oh, ow), -np.inf, dtype=x.dtype)
    # start at the first pixel of the window that lies inside the image, as PyTorch does
    first = np.maximum(rows, 0)[:, None] * w + np.maximum(cols, 0)[None, :]
    argmax = np.broadcast_to(first, (n, c, oh, ow)).astype(INDEX_DTYPE)
    for i in range(kh):
        for j in range(kw):
            val = xpad[:, :, i : i + sh * oh : sh, j : j + sw * ow : sw]
            index = (rows + i)[:, None] * w + (cols + j)[None, :]  # (OH, OW)
            update = (val > best) | np.isnan(val)
            best = np.where(update, val, best)
            argmax = np.where(update, index, argmax)
    return best, argmax


def maxpool2d_backward_reference(dout: np.ndarray, argmax: np.ndarray, x_shape: tuple[int, int, int, int]) -> np.ndarray:
    """Scatter-add ``dout`` onto the pixels named by ``argmax`` (``np.add.at`` sums repeated indices).

    Parameters
    ----------
    dout : (N, C, OH, OW)
    argmax : (N, C, OH, OW), flat indices into the ``H*W`` plane
    x_shape : ``(N, C, H, W)``

    Returns
    -------
    dx : (N, C, H, W)
    """
    n, c, h, w = x_shape
    dx = np.zeros((n * c, h * w), dtype=dout.dtype)
    planes = np.repeat(np.arange(n * c), argmax.shape[2] * argmax.shape[3])  # plane of every output position
    np.add.at(dx, (planes, argmax.reshape(-1)), dout.reshape(-1))
    return dx.reshape(n, c, h, w)


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


@parallel_kernel()
def _maxpool2d_forward_kernel(x, kh, kw, sh, sw, ph, pw, out, argmax):
    """Fill ``out`` and ``argmax`` (both ``(N, C, OH, OW)``); one ``prange`` iteration per plane."""
    n_img, n_ch = x.shape[0], x.shape[1]
    for plane in prange(n_img * n_ch):
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


@parallel_kernel(2)
def _maxpool2d_backward_kernel(dout, argmax, dx):
    """``dx[n, c].flat[argmax] += dout``; one ``prange`` iteration per plane, so no two write the same pixel."""
    n_img, n_ch, h, w = dx.shape
    out_h, out_w = dout.shape[2], dout.shape[3]
    for plane in prange(n_img * n_ch):
        n = plane // n_ch
        c = plane - n * n_ch
        flat = dx[n, c].reshape(h * w)  # a view: dx is C-contiguous
        flat[:] = 0
        grad = dout[n, c]
        where = argmax[n, c]
        for oh in range(out_h):
            for ow in range(out_w):
                flat[where[oh, ow]] += grad[oh, ow]


# ---------------------------------------------------------------------------------------------
# Validating wrappers
# ---------------------------------------------------------------------------------------------
def pool_params(
    where: str,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None,
    padding: int | Sequence[int],
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Normalise pooling hyper-parameters to pairs and check them as PyTorch does.

    ``stride=None`` means ``stride = kernel_size``. Padding may be at most half the kernel, so every
    window holds at least one real pixel. Raises ``ValueError`` naming ``where``.
    """
    kernel = pair(kernel_size, "kernel_size")
    step = kernel if stride is None else pair(stride, "stride")
    pad = pair(padding, "padding")
    if min(kernel) < 1:
        raise ValueError(f"{where}: kernel_size must be positive, got {kernel}")
    if min(step) < 1:
        raise ValueError(f"{where}: stride must be positive, got {step}")
    if min(pad) < 0 or pad[0] > kernel[0] // 2 or pad[1] > kernel[1] // 2:
        raise ValueError(
            f"{where}: padding must be between 0 and half the kernel size ({kernel[0] // 2}, {kernel[1] // 2}),"
            f" got {pad}"
        )
    return kernel, step, pad


def _check_input(where: str, array, name: str, layout: str) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{where}: expected {name} to be a numpy.ndarray, got {type(array).__name__}")
    if array.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{where}: expected {name} of dtype float32 or float64, got {array.dtype}")
    if array.ndim != 4:
        raise ShapeError(f"{where}: expected a 4-D {name} of shape {layout}, got shape {array.shape}")
    return np.ascontiguousarray(array)


def maxpool2d_forward(
    x: np.ndarray,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling (fast Numba kernel), PyTorch semantics (see the module docstring).

    Parameters
    ----------
    x : (N, C, H, W), float32 or float64 (a non-contiguous array is copied first)
    kernel_size : int or pair
    stride : int or pair, default ``kernel_size``
    padding : int or pair, at most half the kernel; the padding counts as ``-inf``

    Returns
    -------
    out : (N, C, OH, OW), same dtype as ``x``
    argmax : (N, C, OH, OW) int32, flat index ``h*W + w`` of each maximum in its ``(H, W)`` plane
    """
    where = "maxpool2d_forward"
    kernel, step, pad = pool_params(where, kernel_size, stride, padding)
    x = _check_input(where, x, "x", "(N, C, H, W)")
    n, c, h, w = x.shape
    if h + 2 * pad[0] < kernel[0] or w + 2 * pad[1] < kernel[1]:
        raise ShapeError(
            f"{where}: input of spatial size {h}x{w} (padding {pad[0]}, {pad[1]}) is smaller than the kernel"
            f" {kernel[0]}x{kernel[1]}"
        )
    if h * w > np.iinfo(INDEX_DTYPE).max:
        raise ShapeError(f"{where}: planes of {h}x{w} pixels are too large for {INDEX_DTYPE} indices")
    oh, ow = conv_output_size(h, kernel[0], step[0], pad[0]), conv_output_size(w, kernel[1], step[1], pad[1])
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = np.empty((n, c, oh, ow), dtype=INDEX_DTYPE)
    _maxpool2d_forward_kernel(x, kernel[0], kernel[1], step[0], step[1], pad[0], pad[1], out, argmax)
    return out, argmax


def maxpool2d_backward(
    dout: np.ndarray, argmax: np.ndarray, x_shape: Sequence[int], check_indices: bool = True
) -> np.ndarray:
    """Route each output gradient to the input pixel that was the maximum (fast Numba kernel).

    Parameters
    ----------
    dout : (N, C, OH, OW), float32 or float64
    argmax : (N, C, OH, OW), int32 or int64, as returned by ``maxpool2d_forward``
    x_shape : ``(N, C, H, W)`` of the forward input
    check_indices : bool
        Verify every index lies in its plane (two passes over ``argmax``); the layer, which passes
        the indices its own forward made, skips this.

    Returns
    -------
    dx : (N, C, H, W), same dtype as ``dout``; overlapping windows add up
    """
    where = "maxpool2d_backward"
    dout = _check_input(where, dout, "dout", "(N, C, OH, OW)")
    if not isinstance(argmax, np.ndarray) or argmax.dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
        got = argmax.dtype if isinstance(argmax, np.ndarray) else type(argmax).__name__
        raise TypeError(f"{where}: expected argmax to be an int32 or int64 numpy.ndarray, got {got}")
    if argmax.shape != dout.shape:
        raise ShapeError(f"{where}: argmax and dout must have the same shape, got {argmax.shape} and {dout.shape}")
    if len(x_shape) != 4 or tuple(x_shape[:2]) != dout.shape[:2]:
        raise ShapeError(f"{where}: x_shape {tuple(x_shape)} does not match dout of shape {dout.shape} (N, C first)")
    n, c, h, w = (int(v) for v in x_shape)
    argmax = np.ascontiguousarray(argmax)
    # an index outside the plane would write out of bounds (Numba does not check): refuse it here
    if check_indices and argmax.size and (argmax.min() < 0 or argmax.max() >= h * w):
        raise ValueError(f"{where}: argmax holds indices outside [0, {h * w}) for planes of size {h}x{w}")
    dx = np.empty((n, c, h, w), dtype=dout.dtype)
    _maxpool2d_backward_kernel(dout, argmax, dx)
    return dx
