"""2-D max pooling: the math, the checks, the forward/backward pair and its NumPy reference.

Semantics are PyTorch's ``max_pool2d`` (``ceil_mode=False``, ``dilation=1``)::

    x    (N, C, H, W)
    out  (N, C, OH, OW)    OH = (H + 2*ph - kh) // sh + 1,  OW = (W + 2*pw - kw) // sw + 1  (floor mode)
    out[n, c, oh, ow] = max of x[n, c] over rows oh*sh - ph ... + kh - 1, columns ow*sw - pw ... + kw - 1

- the padding counts as ``-inf``: it is never the maximum (so it may be at most half the kernel, and
  every window holds a real pixel);
- windows may overlap (``stride < kernel``);
- ``argmax`` is the flat index ``h*W + w`` of the maximum inside the *unpadded* plane (int32);
- ties go to the first maximum in row-major window order (strict ``>``);
- NaN propagates: a window holding a NaN outputs NaN and, as PyTorch's CPU kernel, ``argmax`` points at
  its last NaN (the update rule is ``val > max or isnan(val)``);
- a window whose valid values are all ``-inf`` reports its first valid pixel.

Backward: the derivative of a maximum is 1 for the element that won and 0 for the others, so each
``dout`` entry goes to the pixel ``argmax`` names, ``dx[n, c].flat[argmax[n, c, oh, ow]] += dout[n, c, oh, ow]``;
where windows overlap, a pixel that won several windows receives the sum.

``maxpool2d_forward``/``maxpool2d_backward`` check their arguments once and run the Numba kernels of
``tinynet.kernels.maxpool`` (one parallel iteration per plane); ``maxpool2d_forward_reference``/
``maxpool2d_backward_reference`` below are the same math in NumPy, which the tests compare them against
and which run instead of the kernels when ``tinynet.backends.numba.enabled`` is False.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from .._checks import ShapeError, check_float_array, check_ndim, pair
from .im2col import conv_output_size, padded_windows
from .. import backends, kernels

#: dtype of the argmax indices the forward returns
INDEX_DTYPE = np.dtype(np.int32)  # a flat index within one plane: int32 halves the memory traffic of int64
MAX_INDEX = int(np.iinfo(INDEX_DTYPE).max)  # the largest plane (H * W pixels) its indices can address


class MaxPool2dCache(NamedTuple):
    argmax: np.ndarray  # (N, C, OH, OW) int32, flat index h*W + w of each maximum in its plane
    x_shape: tuple[int, int, int, int]  # (N, C, H, W)


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


def check_pool_input(where: str, x: np.ndarray, kernel: tuple[int, int], padding: tuple[int, int],
                     name: str = "input") -> None:
    """Raise a readable error naming ``where`` (a layer or function) for an input ``name`` it cannot pool
    with a ``kernel`` window and ``padding`` (pairs): not a float array, not ``(N, C, H, W)``, an empty
    C, H or W, a plane smaller than the window, or a plane too large for int32 indices."""
    check_float_array(where, x, name)
    check_ndim(where, x, 4, "(N, C, H, W)", name)
    if 0 in x.shape[1:]:  # as PyTorch: only the batch may be empty (padding would make up a -inf output)
        raise ShapeError(f"{where}: expected an input with C, H and W at least 1 (only the batch N may be 0), got shape {x.shape}")
    (h, w), (kh, kw), (ph, pw) = x.shape[2:], kernel, padding
    if h + 2 * ph < kh or w + 2 * pw < kw:
        pad = f"{ph}" if ph == pw else f"{padding}"
        raise ShapeError(f"{where}: input of spatial size {h}x{w} (padding {pad}) is smaller than the kernel {kh}x{kw}")
    if h * w > MAX_INDEX:
        raise ShapeError(f"{where}: planes of {h}x{w} pixels are too large for {INDEX_DTYPE} indices")


def maxpool2d_forward(
    x: np.ndarray,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    where: str | None = None,
) -> tuple[np.ndarray, MaxPool2dCache]:
    """Forward pass of 2-D max pooling.

    Parameters
    ----------
    x : (N, C, H, W), float32 or float64 (a non-contiguous array is copied first)
    kernel_size : int or pair
    stride : int or pair, default ``kernel_size``
    padding : int or pair, at most half the kernel
    where : the caller named in error messages (``MaxPool2d`` passes its description); default this function

    Returns
    -------
    out : (N, C, OH, OW), dtype of ``x``
    cache : MaxPool2dCache (the argmax indices and the input shape; not the input itself)
    """
    name = "input" if where else "x"
    where = where or "maxpool2d_forward"
    kernel, step, pad = pool_params(where, kernel_size, stride, padding)
    check_pool_input(where, x, kernel, pad, name)
    x = np.ascontiguousarray(x)
    n, c, h, w = x.shape
    oh, ow = conv_output_size(h, kernel[0], step[0], pad[0]), conv_output_size(w, kernel[1], step[1], pad[1])
    if not backends.numba.enabled:
        out, argmax = maxpool2d_forward_reference(x, kernel, step, pad)
        return out, MaxPool2dCache(argmax, tuple(x.shape))
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = np.empty((n, c, oh, ow), dtype=INDEX_DTYPE)
    kernels.maxpool.maxpool2d_forward_kernel(x, kernel[0], kernel[1], step[0], step[1], pad[0], pad[1], out, argmax)
    return out, MaxPool2dCache(argmax, tuple(x.shape))


def maxpool2d_backward(dout: np.ndarray, cache: MaxPool2dCache, check_indices: bool = True) -> np.ndarray:
    """Backward pass of 2-D max pooling: ``dx[n, c].flat[argmax] += dout``.

    Parameters
    ----------
    dout : (N, C, OH, OW), float32 or float64
    cache : MaxPool2dCache from the forward (``argmax`` int32 or int64, ``x_shape``)
    check_indices : verify every index lies in its plane (two passes over ``argmax``; an index outside
        would write out of bounds, as Numba does not check). ``MaxPool2d``, which passes the indices its
        own forward made, skips this.

    Returns
    -------
    dx : (N, C, H, W), dtype of ``dout``; zero except at the pixels that were maxima
    """
    where = "maxpool2d_backward"
    argmax, x_shape = cache
    dout = np.ascontiguousarray(check_float_array(where, dout, "dout"))
    check_ndim(where, dout, 4, "(N, C, OH, OW)", "dout")
    if not isinstance(argmax, np.ndarray) or argmax.dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
        got = argmax.dtype if isinstance(argmax, np.ndarray) else type(argmax).__name__
        raise TypeError(f"{where}: expected argmax to be an int32 or int64 numpy.ndarray, got {got}")
    if argmax.shape != dout.shape:
        raise ShapeError(f"{where}: argmax and dout must have the same shape, got {argmax.shape} and {dout.shape}")
    if len(x_shape) != 4 or tuple(x_shape[:2]) != dout.shape[:2]:
        raise ShapeError(f"{where}: x_shape {tuple(x_shape)} does not match dout of shape {dout.shape} (N, C first)")
    n, c, h, w = (int(v) for v in x_shape)
    argmax = np.ascontiguousarray(argmax)
    if check_indices and argmax.size and (argmax.min() < 0 or argmax.max() >= h * w):
        raise ValueError(f"{where}: argmax holds indices outside [0, {h * w}) for planes of size {h}x{w}")
    if not backends.numba.enabled:
        return maxpool2d_backward_reference(dout, argmax, (n, c, h, w))
    dx = np.empty((n, c, h, w), dtype=dout.dtype)
    kernels.maxpool.maxpool2d_backward_kernel(dout, argmax, dx)
    return dx


# ---------------------------------------------------------------------------------------------
# Reference: the same math in plain NumPy, which the tests compare the fast path against
# ---------------------------------------------------------------------------------------------
def maxpool2d_forward_reference(
    x: np.ndarray,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    return_indices: bool = True,
) -> tuple[np.ndarray, np.ndarray] | np.ndarray:
    """Max pooling with NumPy: visit the kernel offsets in row-major order, keep the running maximum.

    Parameters
    ----------
    x : (N, C, H, W)
    kernel_size, stride, padding : pairs ``(h, w)``
    return_indices : bool
        False (as PyTorch's ``max_pool2d``) returns ``out`` alone, by one ``np.maximum`` per offset: the
        same values (a NaN propagates through ``np.maximum`` too), about 4x faster, for a forward that no
        backward will follow (``tinynet.no_grad``).

    Returns
    -------
    out : (N, C, OH, OW)
    argmax : (N, C, OH, OW) int32, flat index ``h*W + w`` into the unpadded plane (with ``return_indices``)
    """
    (sh, sw), (ph, pw) = stride, padding
    n, c, h, w = x.shape
    xpad, (oh, ow), offsets = padded_windows(x, kernel_size, stride, padding, fill=-np.inf)
    rows = np.arange(oh, dtype=INDEX_DTYPE) * sh - ph  # top row of each window (in unpadded coordinates)
    cols = np.arange(ow, dtype=INDEX_DTYPE) * sw - pw  # left column of each window
    best = np.full((n, c, oh, ow), -np.inf, dtype=x.dtype)
    if not return_indices:
        for _, _, window in offsets:
            np.maximum(best, xpad[window], out=best)
        return best
    # start at the first pixel of the window that lies inside the image, as PyTorch does
    first = np.maximum(rows, 0)[:, None] * w + np.maximum(cols, 0)[None, :]
    argmax = np.broadcast_to(first, (n, c, oh, ow)).astype(INDEX_DTYPE)
    for i, j, window in offsets:
        val = xpad[window]
        index = (rows + i)[:, None] * w + (cols + j)[None, :]  # (OH, OW)
        update = val > best
        update |= np.isnan(val)  # a NaN wins and stays: nothing is > NaN, and the last NaN seen is kept
        np.copyto(best, val, where=update)
        np.copyto(argmax, index, where=update)  # index broadcasts over (N, C)
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
