"""Element-wise kernels for the activations on large feature maps.

NumPy's ``np.where(out > 0, dout, 0)`` makes a boolean temporary and a result in two passes, each
single-threaded; these kernels read each input once and write the result once, on every core. The
NumPy expressions in ``tinynet.functional.activation`` are the references the tests compare to.
Arrays are processed flat (any shape, C-contiguous); ``prange`` over the elements splits them into
one contiguous range per thread. (A hand-blocked loop, ``for i in range(block * B, min(n, ...))``,
measured 9x slower: LLVM cannot prove those indices non-negative and does not vectorise.)
"""
from __future__ import annotations

import numpy as np

from .._numba import parallel_kernel, prange

@parallel_kernel()
def _relu_forward_kernel(x, out):
    for i in prange(x.size):
        v = x[i]
        # v > 0 is False for NaN, so NaN must be passed on explicitly (as np.maximum does)
        out[i] = v if (v > 0 or v != v) else 0


@parallel_kernel()
def _relu_backward_kernel(dout, out, dx):
    for i in prange(dout.size):
        dx[i] = dout[i] if out[i] > 0 else 0


def relu_forward(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)``, NaN kept; same shape and dtype."""
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    _relu_forward_kernel(x.reshape(-1), out.reshape(-1))
    return out


def relu_backward(dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``dout * [out > 0]``; same shape and dtype as ``dout``."""
    dout = np.ascontiguousarray(dout)
    out = np.ascontiguousarray(out)
    if dout.shape != out.shape:
        raise ValueError(f"relu_backward: dout shape {dout.shape} does not match the output shape {out.shape}")
    dx = np.empty_like(dout)
    _relu_backward_kernel(dout.reshape(-1), out.reshape(-1), dx.reshape(-1))
    return dx
