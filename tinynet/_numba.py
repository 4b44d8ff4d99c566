"""One place for the Numba flags every kernel in tinynet uses, and the way a kernel runs on several threads.

Imported by the kernel modules only, so by the first kernel an op calls (``tinynet.kernels`` loads them
on first use): importing tinynet does not import Numba, and with ``tinynet.backends.numba.enabled``
False nothing ever does.

Why these flags:
- ``cache=True`` writes compiled machine code next to the module (``__pycache__``), so only
  the very first run on a machine pays the compile time.
- ``nogil=True`` lets a kernel run while other Python threads run: the data loader, and the other
  ranges of the same kernel (below).
- ``fastmath`` is the subset that lets LLVM vectorise reductions and fuse multiply-adds, *without*
  ``nnan``/``ninf``: a NaN in the input must come out as a NaN, never be optimised away.
- ``error_model="numpy"``: a division by zero gives inf or NaN, as in the NumPy references beside the kernels,
  instead of raising ``ZeroDivisionError``. Python's model puts a check before every division, and that branch
  kept LLVM from vectorising any loop that divides: Adam's update (``kernels/adam.py``) ran element by element,
  17-19 ms on 6.4 million float32 parameters, and runs at the speed of its memory traffic now, 7.3-7.6 ms (a loop
  with the same reads and writes and no square root or division: 7.3-7.6 ms); in a NaimishNet-96 training step
  (``benchmarks/profile_train.py``) the Adam step went from 23.9-26.4 to 9.9-10.2 ms.

Threads. No kernel is compiled with ``parallel=True``. A kernel whose outer loop has independent
iterations (one image, one (image, channel) plane, one channel, one block of elements) takes that loop's
range as its last two arguments, ``first`` and ``stop``; ``parallel_kernel`` cuts the range into one part
per thread of tinynet's pool (``tinynet._threads``, the threads that also run the matrix products'
pieces), and every thread runs the same compiled code on its part. Why not ``prange``:
- compile time: a ``prange`` loop took about three times as long to compile as the plain loop, and
  each kernel was compiled twice (parallel, and serial for small inputs); a machine's first training
  step waited 23-40 s for its kernels;
- spinning: Numba's pool and OpenBLAS's both busy-wait after a call, and in a training step the next call
  is the other library's (Numba's default ``omp`` layer made the Linear layers 10x slower on 2 cores);
  tinynet's threads sleep when idle;
- the results: each output is written by one iteration whatever the split, so they do not depend on
  the thread count (the tests compare one thread with several to the bit).
"""
from __future__ import annotations

import functools
from typing import Callable

import numba
from numba.core import event as numba_event

from . import _threads
from .backends import numba as _backend

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

#: keyword arguments for every kernel: ``@numba.njit(**JIT)``
JIT = dict(cache=True, nogil=True, fastmath=set(FASTMATH), error_model="numpy")

njit = numba.njit


#: below this many elements of work a kernel runs on the calling thread alone. Waking the pool's
#: sleeping threads is slow on these virtual machines: the fused batch-norm block on one 32x93x93
#: image took 0.70 ms in parallel and 0.18 ms serially. One face through NaimishNet-96 (median of 50,
#: three runs each): 6.8-7.6 ms with a threshold of 2**18, 3.6-5.8 ms with 2**20; a batch of 64
#: images is far above it for every large layer.
PARALLEL_MIN_WORK = 1 << 20


def parallel_kernel(size_arg: int, iterations: Callable[..., int]):
    """Decorator for a kernel ``func(*args, first, stop)`` whose loop ``for item in range(first, stop)`` writes
    independent outputs; ``iterations(*args)`` is that loop's whole length.

    The decorated function takes ``*args`` only. With fewer than ``PARALLEL_MIN_WORK`` elements in
    ``args[size_arg]``, or one thread, the whole range runs on the calling thread (``.serial(*args)``);
    otherwise in ``get_num_threads()`` consecutive ranges, one per thread (``.parallel(*args)``). The
    outputs are the same to the bit. ``.kernel`` is the compiled function itself.
    """

    def decorate(func):
        kernel = njit(**JIT)(func)

        def serial(*args):
            kernel(*args, 0, iterations(*args))

        def parallel(*args):
            count = iterations(*args)
            parts = max(1, min(_threads.get_num_threads(), count))
            _threads.run([(kernel, *args, first, stop) for first, stop in _threads.bounds(count, parts)])

        @functools.wraps(func)
        def launch(*args):
            large = args[size_arg].size >= PARALLEL_MIN_WORK and _threads.get_num_threads() > 1
            return (launch.parallel if large else launch.serial)(*args)

        launch.kernel, launch.parallel, launch.serial = kernel, parallel, serial
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
