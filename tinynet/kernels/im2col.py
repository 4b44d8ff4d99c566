"""im2col and col2im: unfold image patches into the columns of a matrix, and fold them back.

``im2col`` copies every ``kh x kw`` patch that a convolution window visits into one column, so a
convolution with ``F`` filters becomes a single matrix product::

    x     (N, C, H, W)
    cols  (N, C*kh*kw, OH*OW)   cols[n, c*kh*kw + i*kw + j, oh*OW + ow] = xpad[n, c, oh*sh + i, ow*sw + j]
    out   (N, F, OH*OW)         out[n] = weight.reshape(F, C*kh*kw) @ cols[n]

with ``xpad`` the input zero-padded by ``(ph, pw)`` and ``OH = (H + 2*ph - kh) // sh + 1`` (likewise ``OW``).

``col2im`` is the adjoint (transpose) of that linear map: it adds every column entry back onto the
pixel it was copied from, so pixels shared by overlapping windows receive the sum of their
contributions, and entries that came from the zero padding are dropped. It is exactly what the
backward pass of a convolution needs: ``dx = col2im(weight_matrix.T @ dout)``.

Each operation has a plain NumPy reference (``im2col_reference``, ``col2im_reference``: readable,
used by the tests) and a fast Numba kernel (``_im2col_kernel``, ``_col2im_kernel``) behind a
validating wrapper (``im2col``, ``col2im``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .._checks import FLOAT_DTYPES, ShapeError, pair
from .._numba import JIT, njit, parallel_kernel, prange


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Number of window positions along one axis: ``(size + 2*padding - kernel) // stride + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


# ---------------------------------------------------------------------------------------------
# Plain NumPy references
# ---------------------------------------------------------------------------------------------
def im2col_reference(
    x: np.ndarray,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> np.ndarray:
    """Unfold patches with NumPy slicing: one strided slice of a padded copy per kernel offset.

    Parameters
    ----------
    x : (N, C, H, W)
    kernel_size, stride, padding : pairs ``(h, w)``

    Returns
    -------
    cols : (N, C*kh*kw, OH*OW), row ``c*kh*kw + i*kw + j``, column ``oh*OW + ow``
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    n, c, h, w = x.shape
    oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            # the pixel at offset (i, j) of every window: rows i, i+sh, ..., columns j, j+sw, ...
            cols[:, :, i, j] = xpad[:, :, i : i + sh * oh : sh, j : j + sw * ow : sw]
    return cols.reshape(n, c * kh * kw, oh * ow)


def col2im_reference(
    cols: np.ndarray,
    x_shape: tuple[int, int, int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> np.ndarray:
    """Fold columns back onto the image, summing where windows overlap (the adjoint of im2col).

    Parameters
    ----------
    cols : (N, C*kh*kw, OH*OW)
    x_shape : ``(N, C, H, W)`` of the image the columns were taken from

    Returns
    -------
    dx : (N, C, H, W)
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    n, c, h, w = x_shape
    oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    cols6 = cols.reshape(n, c, kh, kw, oh, ow)
    dxpad = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            dxpad[:, :, i : i + sh * oh : sh, j : j + sw * ow : sw] += cols6[:, :, i, j]
    return dxpad[:, :, ph : ph + h, pw : pw + w].copy()


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


@parallel_kernel(7)
def _im2col_kernel(x, kh, kw, sh, sw, ph, pw, out):
    """Write the columns of ``x (N, C, H, W)`` into ``out (N, C*kh*kw, OH*OW)``.

    One ``prange`` iteration per ``(n, c)`` plane: it writes only rows ``c*kh*kw ... c*kh*kw + kh*kw - 1``
    of image ``n``, so iterations never touch the same memory. Padding is handled by computing, per
    kernel offset, the range of windows that read inside the image (``_valid_range``) and writing
    zeros outside it: no padded copy of the input is made.
    """
    n_img, n_ch, h, w = x.shape
    out_h = (h + 2 * ph - kh) // sh + 1
    out_w = (w + 2 * pw - kw) // sw + 1
    for plane in prange(n_img * n_ch):
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


@parallel_kernel()
def _col2im_kernel(cols, kh, kw, sh, sw, ph, pw, out):
    """Fold ``cols (N, C*kh*kw, OH*OW)`` into ``out (N, C, H, W)``, summing overlapping windows.

    One ``prange`` iteration per ``(n, c)`` plane, which reads only that plane's rows of ``cols``
    and accumulates only into ``out[n, c]``: overlapping windows add into the same pixels, but
    always within one iteration, so there are no races. Column entries that came from the
    padding have no pixel and are skipped.
    """
    n_img, n_ch, h, w = out.shape
    out_h = (h + 2 * ph - kh) // sh + 1
    out_w = (w + 2 * pw - kw) // sw + 1
    for plane in prange(n_img * n_ch):
        n = plane // n_ch
        c = plane - n * n_ch
        img = out[n, c]  # (H, W)
        img[:, :] = 0
        for i in range(kh):
            oh_lo, oh_hi = _valid_range(h, out_h, sh, ph, i)
            for j in range(kw):
                ow_lo, ow_hi = _valid_range(w, out_w, sw, pw, j)
                row = cols[n, (c * kh + i) * kw + j]  # (OH*OW,)
                first = max(ow_lo * sw - pw + j, 0)  # as in _im2col_kernel
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


# ---------------------------------------------------------------------------------------------
# Validating wrappers
# ---------------------------------------------------------------------------------------------
def _conv_params(
    where: str,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int],
    padding: int | Sequence[int],
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    kernel, step, pad = pair(kernel_size, "kernel_size"), pair(stride, "stride"), pair(padding, "padding")
    if min(kernel) < 1:
        raise ValueError(f"{where}: kernel_size must be positive, got {kernel}")
    if min(step) < 1:
        raise ValueError(f"{where}: stride must be positive, got {step}")
    if min(pad) < 0:
        raise ValueError(f"{where}: padding must be non-negative, got {pad}")
    return kernel, step, pad


def _check_float_ndarray(where: str, array, name: str, ndim: int, layout: str) -> np.ndarray:
    """A C-contiguous float32/float64 array of rank ``ndim`` (a non-contiguous one is copied)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{where}: expected {name} to be a numpy.ndarray, got {type(array).__name__}")
    if array.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{where}: expected {name} of dtype float32 or float64, got {array.dtype}")
    if array.ndim != ndim:
        raise ShapeError(f"{where}: expected a {ndim}-D {name} of shape {layout}, got shape {array.shape}")
    # the kernels index with plain strides and vectorise the innermost axis: give them contiguous data
    return np.ascontiguousarray(array)


def _check_out(where: str, out, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``out`` must be exactly what the kernel writes: we cannot write through a copy."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{where}: expected out to be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape or out.dtype != dtype:
        raise ShapeError(f"{where}: expected out of shape {shape} and dtype {dtype}, got {out.shape} {out.dtype}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"{where}: out must be a writeable C-contiguous array")
    return out


def _output_hw(where: str, hw: tuple[int, int], kernel, stride, padding) -> tuple[int, int]:
    (h, w), (kh, kw), (sh, sw), (ph, pw) = hw, kernel, stride, padding
    if h + 2 * ph < kh or w + 2 * pw < kw:
        raise ShapeError(
            f"{where}: input of spatial size {h}x{w} (padding {ph}, {pw}) is smaller than the kernel {kh}x{kw}"
        )
    return conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)


def im2col(
    x: np.ndarray,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    out: np.ndarray | None = None,
    ones_row: bool = False,
) -> np.ndarray:
    """Unfold the ``kh x kw`` patches of ``x`` into columns (fast Numba kernel).

    Parameters
    ----------
    x : (N, C, H, W), float32 or float64 (a non-contiguous array is copied first)
    kernel_size, stride, padding : int or pair ``(h, w)``; padding is zeros
    out : (N, C*kh*kw, OH*OW), optional (one more row with ``ones_row``)
        C-contiguous array of ``x``'s dtype to write into (reused across calls to save allocations).
    ones_row : bool
        Append a row of ones: ``[weight | bias] @ cols`` then adds the bias inside the matrix product,
        and ``dout @ cols.T`` sums ``dout`` into the bias gradient's column, with no extra pass.

    Returns
    -------
    cols : (N, C*kh*kw, OH*OW), ``cols[n, c*kh*kw + i*kw + j, oh*OW + ow] = xpad[n, c, oh*sh + i, ow*sw + j]``
        (N, C*kh*kw + 1, OH*OW) with ``ones_row``, the last row all ones
    """
    where = "im2col"
    kernel, step, pad = _conv_params(where, kernel_size, stride, padding)
    x = _check_float_ndarray(where, x, "x", 4, "(N, C, H, W)")
    n, c, h, w = x.shape
    oh, ow = _output_hw(where, (h, w), kernel, step, pad)
    rows = c * kernel[0] * kernel[1]
    out = _check_out(where, out, (n, rows + int(ones_row), oh * ow), x.dtype)
    _im2col_kernel(x, kernel[0], kernel[1], step[0], step[1], pad[0], pad[1], out)  # writes rows < C*kh*kw only
    if ones_row:
        out[:, rows] = 1
    return out


def col2im(
    cols: np.ndarray,
    x_shape: Sequence[int],
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    out: np.ndarray | None = None,
    ones_row: bool = False,
) -> np.ndarray:
    """Fold columns back into an image, summing overlapping windows (fast Numba kernel, adjoint of ``im2col``).

    Parameters
    ----------
    cols : (N, C*kh*kw, OH*OW), float32 or float64
    x_shape : ``(N, C, H, W)``, the shape of the image the columns describe
    kernel_size, stride, padding : int or pair ``(h, w)``
    out : (N, C, H, W), optional
        C-contiguous array of ``cols``'s dtype to write into; it is overwritten, not added to.
    ones_row : bool
        ``cols`` has one more row at the end (as ``im2col(..., ones_row=True)`` makes); it is ignored.

    Returns
    -------
    dx : (N, C, H, W)
    """
    where = "col2im"
    kernel, step, pad = _conv_params(where, kernel_size, stride, padding)
    cols = _check_float_ndarray(where, cols, "cols", 3, "(N, C*kh*kw, OH*OW)")
    if len(x_shape) != 4:
        raise ShapeError(f"{where}: x_shape must be (N, C, H, W), got {tuple(x_shape)}")
    n, c, h, w = (int(v) for v in x_shape)
    oh, ow = _output_hw(where, (h, w), kernel, step, pad)
    expected = (n, c * kernel[0] * kernel[1] + int(ones_row), oh * ow)
    if cols.shape != expected:
        raise ShapeError(
            f"{where}: for x_shape {(n, c, h, w)}, kernel {kernel}, stride {step}, padding {pad}"
            f" expected cols of shape {expected}, got {cols.shape}"
        )
    out = _check_out(where, out, (n, c, h, w), cols.dtype)
    _col2im_kernel(cols, kernel[0], kernel[1], step[0], step[1], pad[0], pad[1], out)  # reads rows < C*kh*kw only
    return out
