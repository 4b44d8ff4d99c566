"""Matrix products for tinynet's layers: split over tinynet's own threads, each piece on one BLAS thread.

Every ``Conv2d`` and ``Linear`` spends most of its time in a matrix product. ``matmul(a, b, out)`` computes
``np.matmul(a, b, out=out)`` in ``get_num_threads()`` pieces that run at the same time, each piece a
single-threaded BLAS call on its own rows, columns or images; ``sum_of_products`` does the same for a 1x1
convolution's weight gradient, a sum of one product per image; ``run_pieces`` runs pieces that call ``np.matmul``
themselves (a convolution's images, each one's im2col and products in turn: ``tinynet.functional.conv``).

Why not BLAS's own threads. OpenBLAS's threads wait for each other *inside* every product by spinning. On
an idle machine that costs little; when another program runs on the same cores, a spinning thread holds a
core that the thread it waits for needs, and the product crawls. Measured on 2 cores, seconds per
NaimishNet-96 training step (batch 64; medians of 6 steps, two runs each, helpers' jobs stopped), beside a
NumPy matmul loop with 1 or 2 BLAS threads (``benchmarks/competing_load.py``):

==============================  ===========  ===============  ===============  ====================
                                idle         beside 1 thread  beside 2         the 2-thread job ran
==============================  ===========  ===============  ===============  ====================
OpenBLAS's 2 threads (before)   0.42 - 0.52  0.76 - 1.15      1.79 - 1.88      at 79 - 82 GFLOP/s
2 tinynet threads (this)        0.40 - 0.48  0.66 - 0.74      0.70 - 0.77      at 100 GFLOP/s
==============================  ===========  ===============  ===============  ====================

Before, a loaded step used 1.6-1.7 CPU seconds against 0.7-0.9 idle: the difference is spinning. The pieces
never wait for each other inside a product, so a loaded step keeps more than its fair half of its idle
speed, and the other job runs faster too. With OpenBLAS's threads, a machine that was busy for a moment
could make one step ten times slower (seen: 5.8 s).

Only while gradients are recorded (training), or once training has run in the process. Under ``tinynet.no_grad()``
(inference) a product is NumPy's, on BLAS's own threads: there, with the batches of 2-8 faces ``predict`` reads, the
pieces were 10-25 % slower (waking a thread costs about what such a piece saves), and an inference job seldom shares
its cores for long. But after the first training product (below) BLAS stays on one thread, and inference in that
process (validation between epochs, the evaluation at the end) takes the pieces as training does, except
inside ``whole_products()`` (the bits of a process that never trained).

While training, results depend neither on how busy the machine is, nor on the thread count, nor on BLAS's own thread
setting: the pieces are fixed by the shapes alone (the threads only share them out), and each piece is one
single-threaded BLAS call.

Threads: ``TINYNET_NUM_THREADS`` (read when tinynet is imported), else the cores this process may run on;
``set_num_threads(n)`` at run time. From the first training product on, NumPy's BLAS in the process stays
on one thread (``threadpoolctl``; waking BLAS's threads after every product made training 3.5x slower):
tinynet's threads do the parallel work, as PyTorch's own pool does for it. A program that needs BLAS's
threads for its own products between steps can ask for them with ``threadpoolctl.threadpool_limits``.
With a BLAS that ``threadpoolctl`` cannot set to one thread, each product runs whole, on that BLAS's own
threads.
"""
from __future__ import annotations

import contextlib
import os
import threading

import numpy as np

from . import _threads
from ._grad_mode import is_grad_enabled
from ._threads import get_num_threads, set_num_threads  # noqa: F401  (tinynet.blas.set_num_threads: the public name)

#: below this many multiply-adds a 2-D product runs as one piece, on the calling thread: waking a sleeping thread
#: takes 0.3-0.6 ms on these virtual machines, so one image's (64, 290) @ (290, 1936) took 1.27 ms in two pieces
#: on two threads, 0.68 ms whole on one
MIN_SPLIT_MACS = 1 << 25
#: a batch of images is cut by image from this many multiply-adds on (every piece then is one image's whole
#: product, and the thread wakes once per batch); a training batch of 64 is far above it
MIN_SPLIT_BATCH_MACS = 1 << 23
#: except a few rows times a large matrix (a few faces through a Linear layer): it reads the whole weight
#: matrix for few multiply-adds, and two threads read it faster (one row times 6400 x 1000: 1.29 against
#: 1.67 ms; two rows: 2.6 against 4.9 ms)
MIN_SPLIT_WEIGHTS = 1 << 22
#: a large product without a batch is cut into this many blocks of rows (or columns), whatever the thread count
PIECES = 8
#: the weight gradient's sum over a batch is taken in ranges of this many images, then the ranges' sums in order
IMAGES_PER_SUM = 8


# pinned: tinynet has put NumPy's BLAS on one thread (at the first training product), so from then on every large
# product, also under no_grad (validation between epochs, the evaluation after training), runs in pieces
# whole: how many whole_products() contexts are open (inference products then NumPy's own, pinned or not)
_state: dict = {"blas": None, "pinned": False, "whole": 0}
_whole_lock = threading.Lock()


def _blas() -> list:
    """threadpoolctl's handles on NumPy's BLAS (found once; empty when threadpoolctl sees none). A process may
    hold several BLAS libraries (PyTorch brings its own): NumPy's is the one loaded from NumPy's folder
    (``numpy.libs`` in a wheel); a NumPy linked to a system BLAS gets every BLAS library found."""
    if _state["blas"] is None:
        from threadpoolctl import ThreadpoolController

        libraries = ThreadpoolController().select(user_api="blas").lib_controllers
        numpys = [library for library in libraries if "numpy" in os.path.basename(os.path.dirname(library.filepath))]
        _state["blas"] = numpys or libraries
    return _state["blas"]


def _openblas_threads_sleep_at_once() -> bool:
    """Make NumPy's OpenBLAS, loaded before tinynet, put its idle threads to sleep at once: ``True`` if it did.

    ``import tinynet`` sets ``OPENBLAS_THREAD_TIMEOUT=1`` before NumPy loads (``tinynet/__init__.py``). A script
    that imports NumPy first has an OpenBLAS that read its settings already: after every product its idle threads
    spin for about 0.1 s, on the cores the next OpenCV call or Numba kernel needs. Measured (a script importing
    NumPy first, ``predict_faces --speed fast`` on 200 test photos, medians): face detection right after a product
    14.4-15.8 ms against 9.2-9.4, the whole pipeline 33.7-33.8 ms a photo against 27.0-27.7 with this call. So it
    sets the variable, has OpenBLAS read its environment again (``openblas_read_env``) and stops its threads
    (``blas_thread_shutdown_``, what OpenBLAS does itself before a fork); the next product starts them with the new
    setting. Only for an OpenBLAS that exports both functions; any other BLAS is left as it is. ``import tinynet``
    calls it once, and it is private: stopping the threads while another Python thread is inside a NumPy product is
    not safe.
    """
    import ctypes

    os.environ["OPENBLAS_THREAD_TIMEOUT"] = "1"  # also what NumPy's OpenBLAS reads in a child process
    done = False
    for library in _blas():
        if library.internal_api != "openblas":
            continue
        try:
            handle = ctypes.CDLL(library.filepath)  # the library already loaded: the same handle, not a second copy
            read_environment, stop_threads = handle.openblas_read_env, handle.blas_thread_shutdown_
        except (OSError, AttributeError):  # not found, or an OpenBLAS without these functions
            continue
        read_environment()
        stop_threads()
        done = True
    return done


def shared_out() -> bool:
    """Whether products now run in pieces on tinynet's threads: while gradients are recorded, or under ``no_grad``
    once training has pinned BLAS to one thread (outside ``whole_products()``). Otherwise a product is NumPy's own,
    on BLAS's threads (see the module docstring)."""
    return is_grad_enabled() or (_state["pinned"] and not _state["whole"])


def run_pieces(pieces: list) -> None:
    """Call each ``function(*arguments)`` of ``pieces``, pieces whose products are single ``np.matmul`` calls (a
    convolution's images, ``tinynet.functional.conv``): on tinynet's threads with NumPy's BLAS on one thread where
    products are shared out (``shared_out()``), else in order on this thread, BLAS's threads untouched."""
    if shared_out():
        _run(pieces)
    else:
        _in_order(pieces)


def _in_order(pieces: list) -> None:
    """Call each ``function(*arguments)`` of ``pieces`` in turn, on this thread."""
    for function, *arguments in pieces:
        function(*arguments)


def _run(pieces: list) -> None:
    """Call each ``function(*arguments)`` of ``pieces`` on tinynet's threads (``tinynet._threads.run``), NumPy's
    BLAS on one thread. The pieces do not depend on the thread count, so neither do the results."""
    libraries = _blas()
    if not libraries:
        _in_order(pieces)  # each product whole, on that BLAS's own threads
        return
    _state["pinned"] = True
    for library in libraries:
        if library.get_num_threads() != 1:
            # kept at one, not restored after the product: waking OpenBLAS's threads again after every product
            # made a NaimishNet-96 training step 3.5x slower (1.67 against 0.48 s), its threads spinning beside
            # the Numba kernels that follow
            library.set_num_threads(1)
    _threads.run(pieces)


def _slices(length: int, parts: int) -> list[slice]:
    """``parts`` consecutive slices of ``range(length)``, sizes differing by at most one."""
    return [slice(start, stop) for start, stop in _threads.bounds(length, parts)]


def _one_product(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    np.matmul(a, b, out=out)


def _row_times_matrix(row: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out = row @ b`` for a 1-D ``row`` as ``b.T @ row``: NumPy's ``matmul`` keeps the GIL for a product with
    one row (two pieces on two threads took 2.4 ms where one took 0.6), ``dot`` lets it go."""
    np.dot(b.T, row, out=out)


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.matmul(a, b, out=out)``; while gradients are recorded, in pieces shared out over ``get_num_threads()``
    threads.

    Shapes: ``a (M, K)`` or ``(B, M, K)``, ``b (K, N)`` or ``(B, K, N)``, ``out (M, N)`` or ``(B, M, N)``
    (views welcome: a transposed weight, a slice of a workspace; None: a new array). The pieces: a batch's
    images; without a batch, ``PIECES`` blocks of the larger of ``M`` and ``N``; a small product is one piece.
    """
    if out is None:
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        out = np.empty(batch + (a.shape[-2], b.shape[-1]), dtype=np.result_type(a, b))
    if not shared_out():
        # inference (predict's batches of 2-8 faces): NumPy's product on BLAS's own threads, untouched. In
        # pieces, its products of a few faces ran 10-25 % slower (waking a thread costs more than such a
        # piece saves), and inference rarely shares its machine for long. Once training has put BLAS on one
        # thread, inference takes the pieces too: NumPy's product would run on one core (NaimishNet-96, batch
        # 64, after training in the same process: 297 images/s against PyTorch's 283)
        return np.matmul(a, b, out=out)
    if out.ndim == 3 and len(out) == 1:  # one image: a 2-D product (NumPy's matmul keeps the GIL for a batch of one)
        matmul(a[0] if a.ndim == 3 else a, b[0] if b.ndim == 3 else b, out[0])
        return out
    m, n = out.shape[-2:]
    batch = out.shape[0] if out.ndim == 3 else 1
    large_weights = out.ndim == 2 and b.size >= MIN_SPLIT_WEIGHTS
    if large_weights and m == 1:  # one face through a Linear layer
        _run([(_row_times_matrix, a[0], b[:, s], out[0, s]) for s in _slices(n, min(PIECES, n))])
        return out
    macs = batch * m * n * a.shape[-1]
    if out.ndim == 3 and macs >= MIN_SPLIT_BATCH_MACS:  # NumPy multiplies a batch image by image anyway
        parts = [(a[s] if a.ndim == 3 else a, b[s] if b.ndim == 3 else b, out[s]) for s in _slices(batch, batch)]
    elif out.ndim == 3 or (macs < MIN_SPLIT_MACS and not large_weights):
        parts = [(a, b, out)]
    elif m >= n:
        parts = [(a[..., s, :], b, out[..., s, :]) for s in _slices(m, min(PIECES, m))]
    else:
        parts = [(a, b[..., :, s], out[..., :, s]) for s in _slices(n, min(PIECES, n))]
    _run([(_one_product, *part) for part in parts])
    return out


@contextlib.contextmanager
def whole_products():
    """Within: every product under ``no_grad`` is NumPy's own, whole, also after training has pinned BLAS to one
    thread, so inference gives the bits of a process that never trained. The pieces split a one-row product by
    columns, and a column split of a BLAS product can round otherwise (seen on AVX2 OpenBLAS: a record of
    ``keypoints.batch`` differed in its last printed digit between a worker process and the process that had
    trained before). ``keypoints.batch`` reads its photos so: its worker processes and the calling process
    then write the same bytes."""
    with _whole_lock:  # several threads may open the context (a count, not a flag, so nested contexts work)
        _state["whole"] += 1
    try:
        yield
    finally:
        with _whole_lock:
            _state["whole"] -= 1


def _sum_range(lefts: np.ndarray, rights: np.ndarray, images: slice, total: np.ndarray) -> None:
    """``total = sum over images i of lefts[i] @ rights[i].T``."""
    product = np.empty_like(total)
    total[...] = 0
    for i in range(images.start, images.stop):
        np.matmul(lefts[i], rights[i].T, out=product)
        total += product


def sum_of_products(lefts: np.ndarray, rights: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out += sum_i lefts[i] @ rights[i].T`` (the convolution's weight gradient: ``dout[n] @ cols[n].T``).

    ``lefts (B, M, P)``, ``rights (B, N, P)``, ``out (M, N)``. The images are cut into ranges of
    ``IMAGES_PER_SUM``, each range summed on its own (ranges run at the same time), then the ranges' sums
    are added to ``out`` in order.
    """
    ranges = _slices(len(lefts), max(1, -(-len(lefts) // IMAGES_PER_SUM)))
    totals = [np.empty_like(out) for _ in ranges]
    _run([(_sum_range, lefts, rights, images, total) for images, total in zip(ranges, totals)])
    for total in totals:
        out += total
    return out
