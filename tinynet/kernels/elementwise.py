"""ReLU's jitted bodies, for the activations on large feature maps; the wrappers and the NumPy
references are in ``tinynet.functional.activation``.

NumPy's ``np.where(out > 0, dout, 0)`` makes a boolean temporary and a result in two passes, each
single-threaded; these kernels read each input once and write the result once, on every core. The
NumPy expressions in ``tinynet.functional.activation`` are the references the tests compare to.
Arrays are processed flat (any shape, C-contiguous), in blocks of ``BLOCK`` elements: the threads share
out the blocks. Each block is indexed through a view that starts at the block (``x[start:]``), so the
inner index runs from 0: with ``x[start + i]`` LLVM cannot prove the index non-negative (Numba wraps
negative ones) and did not vectorise, 9x slower.
"""
from __future__ import annotations

from .._numba import parallel_kernel

#: elements per block (64 KB of float32): the unit the threads share out
BLOCK = 1 << 14


def blocks(array) -> int:
    """How many blocks of ``BLOCK`` elements cover the flat ``array``."""
    return -(-array.size // BLOCK)


@parallel_kernel(size_arg=0, iterations=lambda x, out: blocks(x))
def relu_forward_kernel(x, out, first, stop):
    for block in range(first, stop):
        start = block * BLOCK
        src, dst = x[start:], out[start:]
        for i in range(min(BLOCK, x.size - start)):
            v = src[i]
            # v > 0 is False for NaN, so NaN must be passed on explicitly (as np.maximum does)
            dst[i] = v if (v > 0 or v != v) else 0


@parallel_kernel(size_arg=0, iterations=lambda dout, out, dx: blocks(dout))
def relu_backward_kernel(dout, out, dx, first, stop):
    for block in range(first, stop):
        start = block * BLOCK
        g, o, dst = dout[start:], out[start:], dx[start:]
        for i in range(min(BLOCK, dout.size - start)):
            dst[i] = g[i] if o[i] > 0 else 0
