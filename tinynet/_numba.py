"""One place for the Numba flags every kernel in tinynet uses.

Imported by the kernel modules only, so by the first kernel an op calls (``tinynet.kernels`` loads them
on first use): importing tinynet does not import Numba, and with ``tinynet.backends.numba.enabled``
False nothing ever does.

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

import functools
import os
import types

import numba
from numba.core import event as numba_event

from .backends import numba as _backend

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

#: keyword arguments for a serial kernel: ``@numba.njit(**JIT)``
JIT = dict(cache=True, nogil=True, fastmath=set(FASTMATH))
#: keyword arguments for a kernel with a ``prange`` loop over independent outputs
PARALLEL_JIT = dict(JIT, parallel=True)

njit = numba.njit
prange = numba.prange


#: below this many elements of work a kernel runs serially on the calling thread. Waking the pool's
#: sleeping threads is slow on these virtual machines: the fused batch-norm block on one 32x93x93
#: image took 0.70 ms in parallel and 0.18 ms serially. One face through NaimishNet-96 (median of 50,
#: three runs each): 6.8-7.6 ms with a threshold of 2**18, 3.6-5.8 ms with 2**20; a batch of 64
#: images is far above it for every large layer.
PARALLEL_MIN_WORK = 1 << 20


def parallel_kernel(size_arg: int = 0):
    """Decorator: compile ``func`` twice, with ``PARALLEL_JIT`` and serially (``prange`` is then a
    plain ``range``), and call the parallel one only when ``args[size_arg].size >= PARALLEL_MIN_WORK``.

    The two compiled versions are reachable as ``.parallel`` and ``.serial``. The serial one is
    compiled from a copy of the function named ``<name>_serial``, so the two are cached apart.
    """

    def decorate(func):
        parallel = njit(**PARALLEL_JIT)(func)
        copy = types.FunctionType(func.__code__, func.__globals__, func.__name__ + "_serial", func.__defaults__,
                                  func.__closure__)
        copy.__qualname__ = func.__qualname__ + "_serial"
        copy.__module__ = func.__module__
        copy.__doc__ = func.__doc__
        serial = njit(**JIT)(copy)

        @functools.wraps(func)
        def launch(*args):
            return (launch.parallel if args[size_arg].size >= PARALLEL_MIN_WORK else launch.serial)(*args)

        launch.parallel, launch.serial = parallel, serial
        return launch

    return decorate


# ---------------------------------------------------------------------------------------------- compile messages
class _CompileReport(numba_event.Listener):
    """Prints one line when Numba starts compiling one of tinynet's kernels, and how long it took. Numba
    raises its ``numba:compile`` event only for real compilation, not for a kernel loaded from the cache,
    so a warm run prints nothing."""

    def __init__(self, stream):
        self.stream = stream
        self.started: dict[int, float] = {}

    @staticmethod
    def _kernel(event) -> str | None:
        func = event.data["dispatcher"].py_func
        name = func.__name__
        return name if func.__module__.startswith("tinynet.") and not name.startswith("_") else None

    def on_start(self, event) -> None:
        name = self._kernel(event)
        if name is not None:
            import time

            self.started[id(event.data["dispatcher"])] = time.perf_counter()
            kinds = sorted({str(getattr(arg, "dtype", arg)) for arg in event.data["args"] if hasattr(arg, "dtype")})
            print(f"tinynet: compiling {name} ({', '.join(kinds)}) for this machine; later runs load it from the cache",
                  file=self.stream, flush=True)

    def on_end(self, event) -> None:
        start = self.started.pop(id(event.data["dispatcher"]), None)
        if start is not None:
            import time

            print(f"tinynet: {self._kernel(event)} compiled in {time.perf_counter() - start:.1f} s", file=self.stream,
                  flush=True)


_REPORTS: list = []


def register_compile_report(stream) -> None:
    """Listen for Numba's compile events and print them on ``stream`` (once per process; the public entry
    is ``tinynet.report_compilation``, which calls this when Numba is loaded, or leaves it to the end of
    this module's import)."""
    if not _REPORTS:
        _REPORTS.append(_CompileReport(stream))
        numba_event.register("numba:compile", _REPORTS[0])


for _stream in _backend._compile_report_streams:  # report_compilation was called before Numba loaded
    register_compile_report(_stream)
