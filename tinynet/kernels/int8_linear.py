"""The product of ``Int8Linear``: float inputs times int8 weights, one scale per output row.

``tinynet.functional.int8_linear`` holds the math, the checks and the NumPy reference; this is the loop
written out. Each output row ``j`` reads its ``in_features`` int8 weights once (a quarter of the bytes of
float32 weights) and widens them to the input's dtype in registers; the dot product with every input row
runs along contiguous memory, which LLVM vectorises. Threads share out the output rows, and each output
is summed by one thread in one order, so the result does not depend on the thread count.
"""
from __future__ import annotations

from .._numba import parallel_kernel


@parallel_kernel(size_arg=1, iterations=lambda x, weight, *_: weight.shape[0])
def int8_linear_forward_kernel(x, weight, scale, bias, out, first, stop):
    """``out[n, j] = scale[j] * sum_i weight[j, i] * x[n, i] + bias[j]`` for the output rows
    ``j`` in ``[first, stop)``; ``x (N, in)`` float, ``weight (out, in)`` int8, ``scale``, ``bias (out,)``."""
    t = x.dtype.type
    for j in range(first, stop):
        row = weight[j]
        for n in range(x.shape[0]):
            inputs = x[n]
            acc = t(0)
            for i in range(row.size):
                acc += t(row[i]) * inputs[i]
            out[n, j] = acc * scale[j] + bias[j]
