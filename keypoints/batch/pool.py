"""``--workers N``: N local worker processes, each holding one photo at a time.

Why not ``concurrent.futures.ProcessPoolExecutor``: when one of its workers dies, every pending future
fails with ``BrokenProcessPool`` and nobody knows which photo killed it. Here each worker owns a pipe and
is handed the next photo only when it has answered the last one, so a worker's death names exactly one
photo: that photo gets an error record, a fresh worker (same model, same threads) takes the dead one's
place, and the batch goes on. A worker that dies before it is ready (the model does not load) stops the
batch with :class:`WorkerStartError`: a fresh one would fail the same way.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections import deque
from multiprocessing.connection import wait
from pathlib import Path
from typing import Iterator

from . import PhotoResult, PredictOptions, THREAD_VARIABLES, WorkerStartError, cached_predictor, limit_threads
from . import predict_photo, threads_per_worker

#: for the tests only: a worker handed a photo whose file name is this variable's value exits at once
#: (``os._exit``), as a worker killed by the OOM killer or a crashing decoder would, mid-photo
TEST_EXIT_VARIABLE = "KEYPOINTS_TEST_EXIT_ON_PHOTO"
TEST_EXIT_CODE = 70


def exit_if_told(path) -> None:
    """Die like a killed worker when the tests ask for it (:data:`TEST_EXIT_VARIABLE`)."""
    name = os.environ.get(TEST_EXIT_VARIABLE)
    if name and Path(path).name == name:
        os._exit(TEST_EXIT_CODE)


def died_on(path, reason: str) -> PhotoResult:
    """The record of a photo whose worker died while reading it."""
    return PhotoResult({"path": str(path), "faces": [], "error": f"{reason} while reading this photo"})


def death_reason(exit_code: int | None) -> str:
    """``"the worker process died (killed by SIGKILL)"`` or ``"... (exit code 70)"``."""
    if exit_code is not None and exit_code < 0:
        with contextlib.suppress(ValueError):
            return f"the worker process died (killed by {signal.Signals(-exit_code).name})"
    return f"the worker process died (exit code {exit_code})"


def _worker_main(connection, options: PredictOptions, threads: int) -> None:
    """A worker: load the model once, then answer ``(index, path, output)`` jobs until ``None``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops the pool
    try:
        limit_threads(threads)
        predictor = cached_predictor(options.model, options.flip, options.speed)
    except Exception as exc:  # the parent reports it: a fresh worker would fail the same way
        connection.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    try:
        connection.send(("ready", os.getpid()))
        while (job := connection.recv()) is not None:
            index, path, output = job
            exit_if_told(path)
            try:
                result = predict_photo(predictor, path, options, output)
            except Exception as exc:  # not the photo's own problem (predict_photo records those): name it, go on
                result = PhotoResult({"path": str(path), "faces": [],
                                      "error": f"unexpected error in the worker: {type(exc).__name__}: {exc}"})
            connection.send((index, result))
    except (EOFError, OSError):  # the parent is gone (killed): nobody to answer, stop quietly
        return


@contextlib.contextmanager
def _thread_environment(threads: int):
    """The thread limits in ``os.environ`` while a worker starts (a spawned child inherits the environment
    before it imports NumPy, OpenBLAS and Numba, which read them once), restored afterwards."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _Worker:
    """One worker process, its end of the pipe, and the photo it holds (``job``: an index, or None)."""

    def __init__(self, context, options: PredictOptions, threads: int):
        self.connection, child_end = context.Pipe()
        with _thread_environment(threads):
            self.process = context.Process(target=_worker_main, args=(child_end, options, threads), daemon=True,
                                           name="keypoints-worker")
            self.process.start()
        child_end.close()
        self.ready, self.job = False, None

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.connection.send(None)
        self.connection.close()


def pool_predictions(paths: list[Path], outputs: list, options: PredictOptions, workers: int) -> Iterator[PhotoResult]:
    """Yield each photo's :class:`PhotoResult` in input order, from ``workers`` spawned processes (each
    with :func:`threads_per_worker` threads), as soon as it and every photo before it are done."""
    context = multiprocessing.get_context("spawn")  # Numba's threads and fork do not mix
    workers = min(workers, len(paths))
    threads = threads_per_worker(workers)
    pending = deque(range(len(paths)))
    done: dict[int, PhotoResult] = {}
    next_index = 0
    pool = [_Worker(context, options, threads) for _ in range(workers)]
    try:
        while next_index < len(paths):
            for worker in pool:
                if worker.ready and worker.job is None and pending:
                    job = pending.popleft()
                    try:
                        worker.connection.send((job, str(paths[job]), outputs[job]))
                        worker.job = job
                    except OSError:  # it died idle: the photo waits for the next worker, the death is seen below
                        pending.appendleft(job)
            wait([worker.connection for worker in pool] + [worker.process.sentinel for worker in pool])
            for k, worker in enumerate(pool):
                alive = _receive(worker, done)
                if not alive:
                    worker.process.join()
                    if not worker.ready:
                        reason = death_reason(worker.process.exitcode)
                        raise WorkerStartError(f"a worker process could not start: {reason}")
                    if worker.job is not None:  # it died on this photo: report it, go on in a fresh worker
                        done[worker.job] = died_on(paths[worker.job], death_reason(worker.process.exitcode))
                    worker.connection.close()
                    pool[k] = _Worker(context, options, threads)
            while next_index in done:
                yield done.pop(next_index)
                next_index += 1
    finally:
        for worker in pool:
            worker.stop()
        for worker in pool:
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()


def _receive(worker: _Worker, done: dict) -> bool:
    """Read every message waiting from ``worker`` into ``done``; False when the worker is gone."""
    try:
        while worker.connection.poll():
            message = worker.connection.recv()
            if message[0] == "ready":
                worker.ready = True
            elif message[0] == "failed":
                raise WorkerStartError(f"a worker process could not start: {message[1]}")
            else:
                index, result = message
                done[index], worker.job = result, None
    except (EOFError, OSError):  # the pipe closed: the process is gone
        return False
    return worker.process.is_alive()
