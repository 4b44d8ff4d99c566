"""2-D convolution (cross-correlation, as PyTorch's ``conv2d``) by im2col + one matrix product.

Shapes and math::

    x       (N, C, H, W)
    weight  (F, C, kh, kw)
    bias    (F,)
    out     (N, F, OH, OW)     OH = (H + 2*ph - kh) // sh + 1,  OW = (W + 2*pw - kw) // sw + 1

    out[n, f, oh, ow] = bias[f] + sum_{c, i, j} weight[f, c, i, j] * xpad[n, c, oh*sh + i, ow*sw + j]

``im2col`` copies each window into a column, ``cols[n]`` of shape ``(K, P)`` with ``K = C*kh*kw``
and ``P = OH*OW``; the weight seen as a matrix ``Wm = weight.reshape(F, K)`` then gives every output
of image ``n`` in one BLAS call::

    out[n] = Wm @ cols[n]                       (F, K) @ (K, P) -> (F, P)

Backward, from the same picture::

    dWm    = sum_n dout[n] @ cols[n].T          (F, P) @ (P, K) -> (F, K)
    dcols  = Wm.T @ dout[n]                     (K, F) @ (F, P) -> (K, P)
    dx[n]  = col2im(dcols)                      adds overlapping windows back together
    dbias  = dout.sum over (n, oh, ow)

Memory and cache: the columns of a whole batch are ``kh*kw`` times larger than ``x`` (143 MB for
NaimishNet-96's conv2 at batch 64), so they are never made. Each image's columns are made, multiplied and
dropped in turn, in one buffer per thread: ``(K, P)`` of one image (2.2 MB there) stays in the CPU's cache
between the copy and the product. Backward makes them again, image by image, for both of its products
("recompute, save memory"). The images are the pieces tinynet's threads share out (``tinynet.blas.run_pieces``:
each product single-threaded, the images of a batch on several cores).

Two shapes skip im2col altogether:

- a 1x1 kernel with stride 1 and no padding: ``x[n].reshape(C, H*W)`` already is the column matrix;
- a single input channel (stride 1, no padding), the first layer of a grayscale network: the
  column matrix would have only ``kh*kw`` rows, too few for the matrix product to pay for the copy,
  so direct loops run instead (``tinynet.kernels.conv_single_channel``) when the Numba kernels are
  enabled; in plain NumPy it takes the im2col path like any other.

With ``tinynet.backends.numba.enabled`` False the same code runs with ``im2col_reference`` and
``col2im_reference`` in place of the kernels (``im2col``/``col2im`` choose), so the plain NumPy
convolution is im2col by slices plus the same matrix products.

``conv2d_forward_reference`` / ``conv2d_backward_reference`` are the naive version the tests compare
against: a loop over the ``kh*kw`` kernel offsets, each one matrix product.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from .._checks import pair
from .. import backends, kernels
from .._threads import bounds, get_num_threads
from ..blas import IMAGES_PER_SUM, MIN_SPLIT_BATCH_MACS, matmul, run_pieces as _run_pieces, shared_out, sum_of_products
from .im2col import col2im, conv_output_size, im2col, padded_windows


class Conv2dCache(NamedTuple):
    x: np.ndarray  # (N, C, H, W), the (C-contiguous) input
    weight: np.ndarray  # (F, C, kh, kw)
    stride: tuple[int, int]
    padding: tuple[int, int]
    has_bias: bool


def _is_pointwise(kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]) -> bool:
    """A 1x1 kernel, stride 1, no padding: the input itself is the column matrix."""
    return kernel == (1, 1) and stride == (1, 1) and padding == (0, 0)


def _is_single_channel(channels: int, stride: tuple[int, int], padding: tuple[int, int]) -> bool:
    """One input channel, stride 1, no padding, and the Numba kernels enabled: direct loops beat im2col +
    matmul (see the module docstring)."""
    return channels == 1 and stride == (1, 1) and padding == (0, 0) and backends.numba.enabled


def image_groups(n: int, images_per_range: int, macs: int) -> list[list[slice]]:
    """The batch cut into ranges of ``images_per_range`` images, the ranges in consecutive groups: one group per
    thread where products are shared out (``tinynet.blas.shared_out``) and the convolution's ``macs``
    multiply-adds are worth waking the threads for (``MIN_SPLIT_BATCH_MACS``), else one group. The ranges depend
    on the batch alone, so sums taken range by range do not depend on the thread count."""
    ranges = [slice(start, min(start + images_per_range, n)) for start in range(0, n, images_per_range)]
    if not ranges:  # an empty batch
        return []
    threads = get_num_threads() if shared_out() and macs >= MIN_SPLIT_BATCH_MACS else 1
    groups = min(threads, len(ranges))
    return [ranges[first:stop] for first, stop in bounds(len(ranges), groups)]


def _forward_images(x, wmat, geometry, ones, out_mat, ranges, cols) -> None:
    """``out[i] = Wm @ cols(x[i])`` (``[Wm | b] @ [cols; 1]`` with a bias) for every image ``i`` of ``ranges``,
    each image's columns made in ``cols (1, K [+1], P)`` just before its product (one piece of the forward)."""
    for images in ranges:
        for i in range(images.start, images.stop):
            im2col(x[i : i + 1], *geometry, out=cols, ones_row=ones)
            np.matmul(wmat, cols[0], out=out_mat[i])  # (F, K [+1]) @ (K [+1], P) -> (F, P)


def _backward_images(x, wmat, geometry, ones, dout_mat, dx, ranges, totals, cols) -> None:
    """For every range of images in ``ranges``: ``total = sum_i dout[i] @ [cols(x[i]); 1].T`` (its ``[dWm | dbias]``)
    and, unless ``dx`` is None, ``dx[i] = col2im(Wm.T @ dout[i])`` (one piece of the backward). ``cols``
    (1, K [+1], P) holds one image's columns, then its column gradients."""
    k = wmat.shape[1]
    product = np.empty_like(totals[0])
    for images, total in zip(ranges, totals):
        total[...] = 0
        for i in range(images.start, images.stop):
            im2col(x[i : i + 1], *geometry, out=cols, ones_row=ones)
            np.matmul(dout_mat[i], cols[0].T, out=product)  # (F, P) @ (P, K [+1])
            total += product
            if dx is not None:
                np.matmul(wmat.T, dout_mat[i], out=cols[0, :k])  # (K, F) @ (F, P): dcols, in the same buffer
                col2im(cols, (1,) + x.shape[1:], *geometry, out=dx[i : i + 1], ones_row=ones)


def conv2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: int | Sequence[int] = (1, 1),
    padding: int | Sequence[int] = (0, 0),
) -> tuple[np.ndarray, Conv2dCache]:
    """Forward pass of a 2-D convolution (im2col + BLAS, image by image).

    With a bias, the columns get a row of ones and the weight matrix the bias as a last column
    (``[Wm | b] @ [cols; 1]``): the matrix product adds the bias, and in backward sums ``dout`` into
    the bias gradient, so neither needs a pass of its own over the output.

    Parameters
    ----------
    x : (N, C, H, W)
    weight : (F, C, kh, kw), same dtype as ``x``
    bias : (F,) or None
    stride, padding : int or pair ``(h, w)``; the padding is zeros

    Returns
    -------
    out : (N, F, OH, OW), C-contiguous, dtype of ``x``
    cache : Conv2dCache
    """
    stride, padding = pair(stride, "stride"), pair(padding, "padding")
    x = np.ascontiguousarray(x)
    n, c, h, w = x.shape
    f, _, kh, kw = weight.shape
    oh, ow = conv_output_size(h, kh, stride[0], padding[0]), conv_output_size(w, kw, stride[1], padding[1])
    k, p = c * kh * kw, oh * ow
    wmat = weight.reshape(f, k)  # (F, K)
    out = np.empty((n, f, oh, ow), dtype=x.dtype)
    out_mat = out.reshape(n, f, p)  # a view: matmul writes straight into the NCHW output

    if _is_pointwise((kh, kw), stride, padding):
        matmul(wmat, x.reshape(n, c, p), out=out_mat)  # (F, C) @ (N, C, H*W)
        if bias is not None:
            out_mat += bias[:, None]
    elif _is_single_channel(c, stride, padding):
        shift = np.zeros(f, dtype=x.dtype) if bias is None else bias
        kernels.conv_single_channel.conv1ch_forward(x.reshape(n, h, w), weight.reshape(f, kh, kw), shift, out)
    else:
        ones = bias is not None
        if ones:
            wmat = np.concatenate([wmat, bias[:, None].astype(x.dtype, copy=False)], axis=1)  # (F, K + 1)
        geometry = ((kh, kw), stride, padding)
        _run_pieces([(_forward_images, x, wmat, geometry, ones, out_mat, ranges, np.empty((1, k + ones, p), x.dtype))
                     for ranges in image_groups(n, 1, n * f * (k + ones) * p)])
    return out, Conv2dCache(x, weight, stride, padding, bias is not None)


def conv2d_backward(
    dout: np.ndarray, cache: Conv2dCache, need_dx: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Backward pass of ``conv2d_forward``, by the same path as the forward took (see the module docstring).

    Parameters
    ----------
    dout : (N, F, OH, OW), gradient of the loss with respect to ``out``
    cache : Conv2dCache from the forward
    need_dx : bool
        False skips the input gradient (the first layer's input is data, not a parameter).

    Returns
    -------
    dx : (N, C, H, W), or None when ``need_dx`` is False
    dweight : (F, C, kh, kw)
    dbias : (F,) or None when the forward had no bias
    """
    x, weight, stride, padding = cache.x, cache.weight, cache.stride, cache.padding
    if _is_pointwise(weight.shape[2:], stride, padding):
        path = _pointwise_backward
    elif _is_single_channel(x.shape[1], stride, padding):
        path = _single_channel_backward
    else:
        path = _im2col_backward
    return path(np.ascontiguousarray(dout), cache, need_dx)


def _pointwise_backward(dout: np.ndarray, cache: Conv2dCache, need_dx: bool):
    """1x1 kernel, stride 1, no padding: ``x[n]`` seen as ``(C, H*W)`` is the column matrix itself."""
    x, weight, _, _, has_bias = cache
    n, c = x.shape[:2]
    f, p = weight.shape[0], dout.shape[2] * dout.shape[3]
    dout_mat, cols_all = dout.reshape(n, f, p), x.reshape(n, c, p)  # (N, F, P), (N, C, P)
    dwmat = sum_of_products(dout_mat, cols_all, np.zeros((f, c), dtype=x.dtype))  # sum_n dout[n] @ cols[n].T
    dx = None
    if need_dx:
        dx = np.empty_like(x)
        matmul(weight.reshape(f, c).T, dout_mat, out=dx.reshape(n, c, p))  # dcols is dx itself
    dbias = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dwmat.reshape(weight.shape), dbias


def _single_channel_backward(dout: np.ndarray, cache: Conv2dCache, need_dx: bool):
    """One input channel, stride 1, no padding: the direct loops of ``tinynet.kernels.conv_single_channel``."""
    x, weight, _, _, has_bias = cache
    n, _, h, w = x.shape
    f, _, kh, kw = weight.shape
    dweight = np.empty((f, kh, kw), dtype=x.dtype)
    dbias = np.empty(f, dtype=x.dtype)
    kernels.conv_single_channel.conv1ch_weight_grad_kernel(dout, x.reshape(n, h, w), dweight, dbias)
    dx = None
    if need_dx:
        dx = np.empty_like(x)
        kernels.conv_single_channel.conv1ch_input_grad_kernel(dout, weight.reshape(f, kh, kw), dx.reshape(n, h, w))
    return dx, dweight.reshape(weight.shape), dbias if has_bias else None


def _im2col_backward(dout: np.ndarray, cache: Conv2dCache, need_dx: bool):
    """The general case, image by image (``_backward_images``): the forward's columns made again, then
    ``[dWm | dbias] += dout[n] @ [cols[n]; 1].T`` and ``dx[n] = col2im(Wm.T @ dout[n])``. The weight gradient is
    summed over ranges of ``IMAGES_PER_SUM`` images, then the ranges' sums in order."""
    x, weight, stride, padding, ones = cache
    n, c = x.shape[:2]
    f, _, kh, kw = weight.shape
    k, p = c * kh * kw, dout.shape[2] * dout.shape[3]
    wmat, dout_mat = weight.reshape(f, k), dout.reshape(n, f, p)  # (F, K), (N, F, P)
    dx = np.empty_like(x) if need_dx else None
    groups = image_groups(n, IMAGES_PER_SUM, n * f * k * p)
    totals = [[np.empty((f, k + ones), dtype=x.dtype) for _ in ranges] for ranges in groups]
    _run_pieces([(_backward_images, x, wmat, ((kh, kw), stride, padding), ones, dout_mat, dx, ranges, sums,
                  np.empty((1, k + ones, p), dtype=x.dtype)) for ranges, sums in zip(groups, totals)])
    dw_ext = np.zeros((f, k + ones), dtype=x.dtype)  # [dWm | dbias]
    for total in (total for sums in totals for total in sums):
        dw_ext += total
    dbias = dw_ext[:, k].copy() if ones else None
    return dx, np.ascontiguousarray(dw_ext[:, :k]).reshape(weight.shape), dbias


# ---------------------------------------------------------------------------------------------
# Naive reference
# ---------------------------------------------------------------------------------------------
def conv2d_forward_reference(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """The convolution written from its definition: for each kernel offset ``(i, j)``, add
    ``weight[:, :, i, j]`` times the input pixels that offset sees in every window.

    Returns ``out (N, F, OH, OW)``.
    """
    n, c = x.shape[:2]
    f = weight.shape[0]
    xpad, (oh, ow), offsets = padded_windows(x, weight.shape[2:], pair(stride), pair(padding))
    out = np.zeros((n, f, oh * ow), dtype=x.dtype)
    for i, j, window in offsets:
        seen = xpad[window].reshape(n, c, oh * ow)  # (N, C, OH*OW), the pixel at offset (i, j) of every window
        out += weight[:, :, i, j] @ seen  # (F, C) @ (N, C, OH*OW) -> (N, F, OH*OW)
    out = out.reshape(n, f, oh, ow)
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def conv2d_backward_reference(
    dout: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    has_bias: bool,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients of ``conv2d_forward_reference``, offset by offset.

    Each offset ``(i, j)`` contributed ``weight[:, :, i, j] . seen``, so it receives
    ``dweight[:, :, i, j] = sum dout * seen`` and sends ``weight[:, :, i, j].T @ dout`` back to the
    pixels it saw.

    Returns ``dx (N, C, H, W)``, ``dweight (F, C, kh, kw)``, ``dbias (F,)`` or None.
    """
    (ph, pw), (n, c, h, w) = pair(padding), x.shape
    xpad, (oh, ow), offsets = padded_windows(x, weight.shape[2:], pair(stride), pair(padding))
    dout_mat = dout.reshape(n, weight.shape[0], oh * ow)  # (N, F, OH*OW)
    dxpad = np.zeros_like(xpad)
    dweight = np.zeros_like(weight)
    for i, j, window in offsets:
        seen = xpad[window].reshape(n, c, oh * ow)  # (N, C, OH*OW)
        dweight[:, :, i, j] = (dout_mat @ seen.transpose(0, 2, 1)).sum(axis=0)  # sum_n (F, P) @ (P, C)
        dxpad[window] += (weight[:, :, i, j].T @ dout_mat).reshape(n, c, oh, ow)  # (C, F) @ (N, F, P)
    dx = dxpad[:, :, ph : ph + h, pw : pw + w].copy()
    dbias = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dweight, dbias
