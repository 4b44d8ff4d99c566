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

Each operation has a validating wrapper (``im2col``, ``col2im``) that checks its arguments once and
runs the jitted body of ``tinynet.kernels.im2col`` (``im2col_kernel``, ``col2im_kernel``), or with
``tinynet.backends.numba.enabled`` False the reference below; beside it stands that plain NumPy reference
(``im2col_reference``, ``col2im_reference``: the same map written with
slices, which the tests compare the fast path against: reference-vs-fast pairs kept on purpose).
``padded_windows`` is the loop every plain reference of a windowed op (these two, max pooling,
convolution) runs: the pixels each kernel offset sees in every window.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .._checks import FLOAT_DTYPES, ShapeError, pair
from .. import backends, kernels


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Number of window positions along one axis: ``(size + 2*padding - kernel) // stride + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


# ---------------------------------------------------------------------------------------------
# Validating wrappers
# ---------------------------------------------------------------------------------------------
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


def _window_geometry(
    where: str,
    hw: tuple[int, int],
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int],
    padding: int | Sequence[int],
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]:
    """``kernel, stride, padding`` as checked pairs and the output size ``(OH, OW)`` of an ``hw`` image."""
    kernel, step, pad = pair(kernel_size, "kernel_size"), pair(stride, "stride"), pair(padding, "padding")
    if min(kernel) < 1:
        raise ValueError(f"{where}: kernel_size must be positive, got {kernel}")
    if min(step) < 1:
        raise ValueError(f"{where}: stride must be positive, got {step}")
    if min(pad) < 0:
        raise ValueError(f"{where}: padding must be non-negative, got {pad}")
    (h, w), (kh, kw), (sh, sw), (ph, pw) = hw, kernel, step, pad
    if h + 2 * ph < kh or w + 2 * pw < kw:
        raise ShapeError(
            f"{where}: input of spatial size {h}x{w} (padding {ph}, {pw}) is smaller than the kernel {kh}x{kw}"
        )
    return kernel, step, pad, (conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw))


def im2col(
    x: np.ndarray,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    out: np.ndarray | None = None,
    ones_row: bool = False,
) -> np.ndarray:
    """Unfold the ``kh x kw`` patches of ``x`` into columns (the Numba kernel, or ``im2col_reference`` when
    ``tinynet.backends.numba.enabled`` is False).

    ``col2im`` is its adjoint: the two take the same geometry arguments and mirror each other's checks
    on purpose (the shared part, the window geometry, is ``_window_geometry``).

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
    x = _check_float_ndarray(where, x, "x", 4, "(N, C, H, W)")
    n, c, h, w = x.shape
    kernel, step, pad, (oh, ow) = _window_geometry(where, (h, w), kernel_size, stride, padding)
    rows = c * kernel[0] * kernel[1]
    out = _check_out(where, out, (n, rows + int(ones_row), oh * ow), x.dtype)
    if backends.numba.enabled:
        kernels.im2col.im2col_kernel(x, kernel[0], kernel[1], step[0], step[1], pad[0], pad[1], out)  # rows < C*kh*kw
    else:
        out[:, :rows] = im2col_reference(x, kernel, step, pad)
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
    """Fold columns back into an image, summing overlapping windows (the Numba kernel, or ``col2im_reference``
    when ``tinynet.backends.numba.enabled`` is False; adjoint of ``im2col``, whose arguments and checks it
    mirrors on purpose).

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
    cols = _check_float_ndarray(where, cols, "cols", 3, "(N, C*kh*kw, OH*OW)")
    if len(x_shape) != 4:
        raise ShapeError(f"{where}: x_shape must be (N, C, H, W), got {tuple(x_shape)}")
    n, c, h, w = (int(v) for v in x_shape)
    kernel, step, pad, (oh, ow) = _window_geometry(where, (h, w), kernel_size, stride, padding)
    expected = (n, c * kernel[0] * kernel[1] + int(ones_row), oh * ow)
    if cols.shape != expected:
        raise ShapeError(
            f"{where}: for x_shape {(n, c, h, w)}, kernel {kernel}, stride {step}, padding {pad}"
            f" expected cols of shape {expected}, got {cols.shape}"
        )
    out = _check_out(where, out, (n, c, h, w), cols.dtype)
    if backends.numba.enabled:
        kernels.im2col.col2im_kernel(cols, kernel[0], kernel[1], step[0], step[1], pad[0], pad[1], out)  # rows < C*kh*kw
    else:
        out[...] = col2im_reference(cols[:, : expected[1] - int(ones_row)], (n, c, h, w), kernel, step, pad)
    return out


# ---------------------------------------------------------------------------------------------
# Plain NumPy references
# ---------------------------------------------------------------------------------------------
def padded_windows(
    x: np.ndarray,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    fill: float = 0,
) -> tuple[np.ndarray, tuple[int, int], list[tuple[int, int, tuple[slice, ...]]]]:
    """What the plain references (im2col, col2im, max pooling, convolution) loop over, written once.

    Parameters
    ----------
    x : (N, C, H, W)
    kernel_size, stride, padding : pairs ``(h, w)``
    fill : the value of the padding (0; ``-inf`` for max pooling)

    Returns
    -------
    xpad : (N, C, H + 2*ph, W + 2*pw), a padded copy of ``x``; ``x`` itself when there is no padding (a
        copy would cost a pass over the input for nothing: a caller that writes into ``xpad`` passes its own array)
    (OH, OW) : the number of windows along each axis
    offsets : ``(i, j, index)`` for every kernel offset in row-major order, where ``xpad[index]``
        (N, C, OH, OW) is the pixel at offset ``(i, j)`` of every window: rows ``i, i+sh, ...``,
        columns ``j, j+sw, ...``
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    h, w = x.shape[2:]
    oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    xpad = x if (ph, pw) == (0, 0) else np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    whole = slice(None)
    offsets = [(i, j, (whole, whole, slice(i, i + sh * oh, sh), slice(j, j + sw * ow, sw)))
               for i in range(kh) for j in range(kw)]
    return xpad, (oh, ow), offsets


def im2col_reference(
    x: np.ndarray,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> np.ndarray:
    """Unfold patches with NumPy slicing: one strided slice of a padded copy per kernel offset (the
    reference ``im2col`` is tested against; a reference-vs-fast pair kept on purpose).

    Parameters
    ----------
    x : (N, C, H, W)
    kernel_size, stride, padding : pairs ``(h, w)``

    Returns
    -------
    cols : (N, C*kh*kw, OH*OW), row ``c*kh*kw + i*kw + j``, column ``oh*OW + ow``
    """
    (kh, kw), (n, c) = kernel_size, x.shape[:2]
    xpad, (oh, ow), offsets = padded_windows(x, kernel_size, stride, padding)
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i, j, index in offsets:
        cols[:, :, i, j] = xpad[index]  # the pixel at offset (i, j) of every window
    return cols.reshape(n, c * kh * kw, oh * ow)


def col2im_reference(
    cols: np.ndarray,
    x_shape: tuple[int, int, int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> np.ndarray:
    """Fold columns back onto the image, summing where windows overlap (the adjoint of im2col; the
    reference ``col2im`` is tested against, a reference-vs-fast pair kept on purpose).

    Parameters
    ----------
    cols : (N, C*kh*kw, OH*OW)
    x_shape : ``(N, C, H, W)`` of the image the columns were taken from

    Returns
    -------
    dx : (N, C, H, W)
    """
    (kh, kw), (ph, pw) = kernel_size, padding
    n, c, h, w = x_shape
    dxpad, (oh, ow), offsets = padded_windows(np.zeros((n, c, h, w), dtype=cols.dtype), kernel_size, stride, padding)
    cols6 = cols.reshape(n, c, kh, kw, oh, ow)
    for i, j, index in offsets:
        dxpad[index] += cols6[:, :, i, j]
    return dxpad[:, :, ph : ph + h, pw : pw + w].copy()
