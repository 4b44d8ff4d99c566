"""One place for the Numba flags every kernel in tinynet uses.

Why these flags:
- ``cache=True`` writes compiled machine code next to the module (``__pycache__``), so only
  the very first import on a machine pays the compile time.
- ``nogil=True`` lets a kernel run while another Python thread (the data loader) holds the GIL.
- ``fastmath`` is the subset that lets LLVM vectorise reductions and fuse multiply-adds, *without*
  ``nnan``/``ninf``: a NaN in the input must come out as a NaN, never be optimised away.
- ``parallel=True`` only for kernels whose ``prange`` loop writes independent outputs
  (one image, or one (image, channel) plane, per iteration), so there are no races.

Threads. A training step alternates Numba kernels (im2col, batch norm, pooling) with OpenBLAS
matrix products, each using every core. Both pools busy-wait ("spin") after finishing, so that a
quick next call finds them awake; but the next call is the *other* library's, and the spinning
threads then steal its cores. Measured on 2 cores (naimishnet(96), batch 64): Numba's default
``omp`` layer made the Linear layers 10x slower than alone. So tinynet selects Numba's
``workqueue`` layer, whose workers sleep when idle (unless ``NUMBA_THREADING_LAYER`` is set), and
``tinynet/__init__.py`` asks OpenBLAS to sleep at once (``OPENBLAS_THREAD_TIMEOUT``) when it is
imported before NumPy (OpenBLAS reads it only when it loads). The workqueue layer does not allow
two Python threads to run tinynet's parallel kernels at the same time: use one thread for compute.
"""
from __future__ import annotations

import os

import numba

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

#: keyword arguments for a serial kernel: ``@numba.njit(**JIT)``
JIT = dict(cache=True, nogil=True, fastmath=set(FASTMATH))
#: keyword arguments for a kernel with a ``prange`` loop over independent outputs
PARALLEL_JIT = dict(JIT, parallel=True)

njit = numba.njit
prange = numba.prange
