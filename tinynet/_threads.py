"""tinynet's threads: one pool that runs the pieces of a matrix product (``tinynet.blas``) and the ranges of a
Numba kernel's outer loop (``tinynet._numba.parallel_kernel``).

One pool, not Numba's and OpenBLAS's. Each of those libraries has its own threads, which busy-wait ("spin")
after a call so that a quick next call finds them awake; in a training step the next call is the *other*
library's, and spinning threads steal its cores (on 2 cores Numba's default pool made the Linear layers 10x
slower). These threads sleep on a queue when idle. The kernels are compiled without Numba's ``prange``
(``tinynet._numba`` says why) and release the GIL (``nogil``), so two Python threads running one kernel on
two ranges use two cores.

Work is cut by the shapes alone: the threads only share the pieces out, so the results do not depend on the
thread count or on how busy the machine is.

Threads: ``TINYNET_NUM_THREADS`` (read when tinynet is imported), else the cores this process may run on;
``tinynet.blas.set_num_threads(n)`` at run time.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _default_threads() -> int:
    setting = os.environ.get("TINYNET_NUM_THREADS", "").strip()
    if setting:
        if not setting.isdigit() or int(setting) < 1:
            raise ValueError(f"TINYNET_NUM_THREADS: expected a positive integer, got {setting!r}")
        return int(setting)
    return available_cores()


_state: dict = {"threads": _default_threads(), "pool": None}
_lock = threading.Lock()  # several Python threads may run layers at once: one pool


def get_num_threads() -> int:
    """How many threads (the calling one included) share out a large product's pieces or a kernel's ranges."""
    return _state["threads"]


def set_num_threads(threads: int) -> None:
    """Share large work out over ``threads`` threads from now on (1: everything on the calling thread)."""
    if isinstance(threads, bool) or not hasattr(threads, "__index__") or threads < 1:
        raise ValueError(f"set_num_threads: expected a positive integer, got {threads!r}")
    if int(threads) != _state["threads"]:
        _shutdown_pool()
        _state["threads"] = int(threads)


def _shutdown_pool() -> None:
    pool, _state["pool"] = _state["pool"], None
    if pool is not None:
        pool.shutdown(wait=False)


# a forked child has the pool object but not its threads: it starts its own on first use
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _state.update(pool=None))


def bounds(length: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` consecutive ``(start, stop)`` ranges covering ``range(length)``, sizes differing by at most one."""
    step, extra = divmod(length, parts)
    edges = [0]
    for i in range(parts):
        edges.append(edges[-1] + step + (i < extra))
    return list(zip(edges[:-1], edges[1:]))


_inside = threading.local()  # .depth: how many run() groups this thread is inside


def _run_group(pieces: list) -> None:
    _inside.depth = getattr(_inside, "depth", 0) + 1
    try:
        for function, *arguments in pieces:
            function(*arguments)
    finally:
        _inside.depth -= 1


def run(pieces: list[tuple[Callable, ...]]) -> None:
    """Call each ``function(*arguments)`` of ``pieces``, in consecutive groups over ``get_num_threads()`` threads
    (the first group on this thread), and return when all are done (re-raising the first error).

    Called from inside a piece (a convolution's image whose im2col is large enough to share out), it runs its
    pieces on the calling thread: the threads are busy with the outer pieces, and a pool thread waiting for the
    pool it occupies would wait for ever."""
    if not pieces:  # nothing to share out (bounds would divide by zero parts)
        return
    if getattr(_inside, "depth", 0):
        _run_group(pieces)
        return
    groups = [pieces[start:stop] for start, stop in bounds(len(pieces), min(_state["threads"], len(pieces)))]
    futures = []
    if len(groups) > 1:
        with _lock:
            if _state["pool"] is None:
                _state["pool"] = ThreadPoolExecutor(_state["threads"] - 1, thread_name_prefix="tinynet")
            pool = _state["pool"]
        futures = [pool.submit(_run_group, group) for group in groups[1:]]
    try:
        _run_group(groups[0])
    finally:
        for future in futures:
            future.result()
