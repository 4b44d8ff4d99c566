"""One place for the Numba flags every kernel in tinynet uses.

Why these flags:
- ``cache=True`` writes compiled machine code next to the module (``__pycache__``), so only
  the very first import on a machine pays the compile time.
- ``nogil=True`` lets a kernel run while another Python thread (the data loader) holds the GIL.
- ``fastmath`` is the subset that lets LLVM vectorise reductions and fuse multiply-adds, *without*
  ``nnan``/``ninf``: a NaN in the input must come out as a NaN, never be optimised away.
- ``parallel=True`` only for kernels whose ``prange`` loop writes independent outputs
  (one image, or one (image, channel) plane, per iteration), so there are no races.
"""
from __future__ import annotations

import numba

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

#: keyword arguments for a serial kernel: ``@numba.njit(**JIT)``
JIT = dict(cache=True, nogil=True, fastmath=set(FASTMATH))
#: keyword arguments for a kernel with a ``prange`` loop over independent outputs
PARALLEL_JIT = dict(JIT, parallel=True)

njit = numba.njit
prange = numba.prange
