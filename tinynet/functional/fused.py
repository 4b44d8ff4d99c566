"""``BatchNorm2d -> ReLU -> MaxPool2d(2, 2)`` as one forward/backward pair (kernels in ``tinynet.kernels.fused``).

This is the tail of every conv block in NaimishNet (and of most small CNNs). Same math, same running
statistics, same gradients as the three layers one after the other (``*_reference`` below *is* the
three reference functions chained, and the tests compare the two), but:

- forward writes only the pooled output and an ``int8`` window position per output; the batch-norm
  and ReLU outputs, each as large as the input, are never materialised;
- backward reads the input twice (per-channel sums, then ``dx``) and writes ``dx`` once;
- the cache holds the input (which the convolution before already produced) and the small pooled
  arrays: two full-size arrays fewer per block than the unfused layers keep.

With ``tinynet.backends.numba.enabled`` False, forward runs the reference chain instead and returns its
cache (``BatchNormReLUMaxPoolReferenceCache``), and backward, seeing that cache, runs the reference chain's
backward: the two always take the same path, whatever the flag says in between.

The layer that runs it is ``tinynet.nn.BatchNormReLUMaxPool2d``, which ``tinynet.nn.fuse(model)`` puts
in place of a ``BatchNorm2d``, a ``ReLU`` and a ``MaxPool2d(2, 2)`` that follow each other (opt-in).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import check_dout
from .. import backends, kernels
from .activation import ActivationCache, relu_backward_reference, relu_forward_reference
from .batchnorm import BatchNormCache, _forward_statistics, batchnorm_backward_reference, batchnorm_forward_reference
from .pooling import MaxPool2dCache, maxpool2d_backward_reference, maxpool2d_forward_reference


class BatchNormReLUMaxPoolCache(NamedTuple):
    x: np.ndarray  # (N, C, H, W) the batch-norm input
    out: np.ndarray  # (N, C, H//2, W//2) the pooled output (ReLU'd: out > 0 is the ReLU mask of the winners)
    window: np.ndarray  # (N, C, H//2, W//2) int8: 2*i + j of each window's winner
    mean: np.ndarray  # (C,) float64, batch (train) or running (eval) mean
    inv_std: np.ndarray  # (C,) float64
    weight: np.ndarray | None  # (C,) gamma
    training: bool


class BatchNormReLUMaxPoolReferenceCache(NamedTuple):
    """The caches of the three reference layers, as ``batchnorm_relu_maxpool2d_forward_reference`` returns them."""
    batchnorm: BatchNormCache
    relu: ActivationCache
    pool: MaxPool2dCache


def batchnorm_relu_maxpool2d_forward(
    x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, running_mean: np.ndarray,
    running_var: np.ndarray, training: bool, momentum: float | None = 0.1, eps: float = 1e-5,
    num_batches_tracked: np.ndarray | None = None, need_cache: bool = True,
) -> tuple[np.ndarray, BatchNormReLUMaxPoolCache | BatchNormReLUMaxPoolReferenceCache | None]:
    """``max_pool2d(relu(batch_norm(x)), 2, 2)``; the arguments are ``batchnorm_forward``'s, handled by
    the same ``_forward_statistics``.

    Parameters
    ----------
    x : (N, C, H, W), float32 or float64, H and W at least 2
    weight, bias : (C,) or None
    running_mean, running_var : (C,), updated in place in train mode (PyTorch's momentum rule)
    need_cache : bool
        False: no backward follows (the layer passes ``tinynet.is_grad_enabled()``), so plain NumPy skips the
        pool's window positions and returns no cache; the kernel always makes it (it costs nothing there).

    Returns
    -------
    out : (N, C, H // 2, W // 2), dtype of ``x``
    cache : BatchNormReLUMaxPoolCache; in plain NumPy BatchNormReLUMaxPoolReferenceCache, or None without
        ``need_cache``
    """
    if not backends.numba.enabled:
        return batchnorm_relu_maxpool2d_forward_reference(x, weight, bias, running_mean, running_var, training,
                                                          momentum, eps, num_batches_tracked, need_cache)
    x = np.ascontiguousarray(x)
    n, c, h, w = x.shape
    mean, inv_std, gamma, beta = _forward_statistics(
        x, weight, bias, running_mean, running_var, training, momentum, eps, num_batches_tracked
    )
    scale = inv_std * gamma
    shift = beta - mean * scale
    out = np.empty((n, c, h // 2, w // 2), dtype=x.dtype)
    window = np.empty(out.shape, dtype=np.int8)
    kernels.fused.bn_relu_maxpool_forward_kernel(x, scale, shift, out, window)
    return out, BatchNormReLUMaxPoolCache(x, out, window, mean, inv_std, weight, training)


def batchnorm_relu_maxpool2d_backward(
    dout: np.ndarray, cache: BatchNormReLUMaxPoolCache | BatchNormReLUMaxPoolReferenceCache
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Gradients of ``batchnorm_relu_maxpool2d_forward`` (by the reference chain for a reference cache).

    Returns
    -------
    dx : (N, C, H, W), dtype of ``x``
    dweight, dbias : (C,), or None without affine
    """
    if isinstance(cache, BatchNormReLUMaxPoolReferenceCache):
        pooled_shape = cache.pool.argmax.shape
        check_dout("batchnorm_relu_maxpool2d_backward", dout, pooled_shape, cache.batchnorm.x.dtype)
        return batchnorm_relu_maxpool2d_backward_reference(dout, cache)
    x, out, window, mean, inv_std, weight, training = cache
    check_dout("batchnorm_relu_maxpool2d_backward", dout, out.shape, out.dtype)
    dout = np.ascontiguousarray(dout)
    c = x.shape[1]
    gamma = np.ones(c) if weight is None else weight.astype(np.float64)
    if x.size == 0:  # an empty batch: no gradient to sum, and the kernels would divide by M = 0
        dx, dweight, dbias = np.empty_like(x), np.zeros(c), np.zeros(c)
        return (dx, None, None) if weight is None else (dx, dweight.astype(x.dtype), dbias.astype(x.dtype))
    partial = np.empty((x.shape[0] * c, 2), dtype=np.float64)  # per (image, channel) plane
    kernels.fused.bn_relu_maxpool_backward_sums_kernel(dout, out, window, x, mean, partial)
    sums = partial.reshape(x.shape[0], c, 2).sum(axis=0)
    dbias, dweight = sums[:, 0], sums[:, 1] * inv_std  # sum dy, sum dy * x_hat
    dx = np.empty_like(x)
    count = float(x.size // c)
    kernels.fused.bn_relu_maxpool_backward_dx_kernel(dout, out, window, x, mean, inv_std, gamma * inv_std, dbias, dweight, count, training, dx)
    if weight is None:
        return dx, None, None
    return dx, dweight.astype(x.dtype), dbias.astype(x.dtype)


# ---------------------------------------------------------------------------------------------
# Reference: the three layers' NumPy references, one after the other
# ---------------------------------------------------------------------------------------------
def batchnorm_relu_maxpool2d_forward_reference(x, weight, bias, running_mean, running_var, training,
                                               momentum=0.1, eps=1e-5, num_batches_tracked=None, need_cache=True):
    """Same arguments as ``batchnorm_relu_maxpool2d_forward``; returns ``out`` and the three caches (the
    reference the fused fast path is tested against, and what runs in plain NumPy), or ``out`` and None
    without ``need_cache`` (the pool then keeps the maximum alone)."""
    y, bn_cache = batchnorm_forward_reference(x, weight, bias, running_mean, running_var, training, momentum, eps,
                                              num_batches_tracked)
    z, relu_cache = relu_forward_reference(y)
    if not need_cache:
        return maxpool2d_forward_reference(z, (2, 2), (2, 2), (0, 0), return_indices=False), None
    out, argmax = maxpool2d_forward_reference(z, (2, 2), (2, 2), (0, 0))
    return out, BatchNormReLUMaxPoolReferenceCache(bn_cache, relu_cache, MaxPool2dCache(argmax, z.shape))


def batchnorm_relu_maxpool2d_backward_reference(dout, caches):
    """``(dx, dweight, dbias)`` through the three reference backward passes."""
    bn_cache, relu_cache, pool_cache = caches
    dz = maxpool2d_backward_reference(dout, pool_cache.argmax, pool_cache.x_shape)
    return batchnorm_backward_reference(relu_backward_reference(dz, relu_cache), bn_cache)
