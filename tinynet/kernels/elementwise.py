"""ReLU's jitted bodies, for the activations on large feature maps; the wrappers and the NumPy
references are in ``tinynet.functional.activation``.

NumPy's ``np.where(out > 0, dout, 0)`` makes a boolean temporary and a result in two passes, each
single-threaded; these kernels read each input once and write the result once, on every core. The
NumPy expressions in ``tinynet.functional.activation`` are the references the tests compare to.
Arrays are processed flat (any shape, C-contiguous); ``prange`` over the elements splits them into
one contiguous range per thread. (A hand-blocked loop, ``for i in range(block * B, min(n, ...))``,
measured 9x slower: LLVM cannot prove those indices non-negative and does not vectorise.)
"""
from __future__ import annotations

from .._numba import parallel_kernel, prange


@parallel_kernel()
def relu_forward_kernel(x, out):
    for i in prange(x.size):
        v = x[i]
        # v > 0 is False for NaN, so NaN must be passed on explicitly (as np.maximum does)
        out[i] = v if (v > 0 or v != v) else 0


@parallel_kernel()
def relu_backward_kernel(dout, out, dx):
    for i in prange(dout.size):
        dx[i] = dout[i] if out[i] > 0 else 0
