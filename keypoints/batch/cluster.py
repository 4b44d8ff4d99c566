"""The batch on a Dask cluster (``dask.distributed``, the optional ``dask`` extra: ``pip install -e ".[dask]"``).

One task per photo: the task carries the photo's path (absolute, or relative to the client's working
folder, which it is read against) and the :class:`~keypoints.batch.PredictOptions`; the worker reads the
photo itself, loads the model once per process (:func:`keypoints.batch.cached_predictor`) and returns the
photo's :class:`~keypoints.batch.PhotoResult`. The photos, the ``-o`` folder and ``--model`` must therefore
be reachable at the same paths on every worker (a shared folder; the shipped model is in every install).
"""
from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path
from typing import Iterator

from . import _PREDICT_LOCK, DEFAULT_CONNECT_TIMEOUT, PhotoResult, PredictOptions, cached_predictor, limit_threads
from . import predict_photo
from .pool import died_on, exit_if_told

INSTALL_HINT = 'pip install -e ".[dask]" (or pip install "dask[distributed]")'


def connect(address: str, timeout: float = DEFAULT_CONNECT_TIMEOUT):
    """A ``distributed.Client`` on the scheduler at ``address`` (``tcp://HOST:PORT``).

    Raises ``ImportError`` (with the install command) without ``dask.distributed``, ``ConnectionError``
    naming the address when no scheduler answers within ``timeout`` seconds, ``ValueError`` for an
    address that is not one.
    """
    try:
        from distributed import Client
    except ImportError:
        raise ImportError(f"--scheduler needs dask.distributed, which is not installed: {INSTALL_HINT}") from None
    if not timeout > 0:
        raise ValueError(f"--scheduler-timeout: expected a number of seconds > 0, got {timeout}")
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:  # CommClosedError and asyncio's TimeoutError are OSErrors or TimeoutErrors
        detail = str(exc).splitlines()[0] if str(exc) else "no detail"
        raise ConnectionError(f"--scheduler {address}: no Dask scheduler answered within {timeout:g} s"
                              f" ({type(exc).__name__}: {detail})") from exc
    except (ValueError, TypeError) as exc:
        raise ValueError(f"--scheduler {address}: not a scheduler address, expected tcp://HOST:PORT ({exc})") from exc


def photo_task(path: str, output: str | None, options: PredictOptions, base: str) -> PhotoResult:
    """One photo on a Dask worker: the process's model, one photo at a time, ``OMP_NUM_THREADS`` threads for
    tinynet and OpenCV (set by every task: a worker may have run another task's settings);
    :func:`keypoints.batch.predict_photo` reads the faces on one OpenBLAS thread, as in every process."""
    exit_if_told(path)
    with _PREDICT_LOCK:
        limit_threads(int(os.environ.get("OMP_NUM_THREADS") or 1))
        predictor = cached_predictor(options.model, options.flip, options.speed)
        return predict_photo(predictor, path, options, output, base=base)


def dask_predictions(client, paths: list[Path], outputs: list, options: PredictOptions) -> Iterator[PhotoResult]:
    """Yield each photo's :class:`PhotoResult` in input order from tasks on ``client``'s cluster.

    A task whose worker died (``KilledWorker``: the scheduler gave up after its ``allowed-failures``
    retries) or that raised gets an error record naming it; the other photos' results are kept.
    """
    from distributed import KilledWorker

    if options.model is not None:  # the workers' working folder is not ours
        options = dataclasses.replace(options, model=str(Path(options.model).absolute()))
    base, run = str(Path.cwd()), uuid.uuid4().hex[:8]
    futures = [client.submit(photo_task, str(path), None if output is None else str(output), options, base,
                             key=f"keypoints-photo-{run}-{k}", pure=False)
               for k, (path, output) in enumerate(zip(paths, outputs))]
    try:
        for path, future in zip(paths, futures):
            try:
                yield future.result()
            except KilledWorker:
                yield died_on(path, "the Dask worker process died (the scheduler gave up on this task)")
            except Exception as exc:  # the task raised on the worker: name it, keep the batch
                yield PhotoResult({"path": str(path), "faces": [],
                                   "error": f"failed on a Dask worker: {type(exc).__name__}: {exc}"})
    finally:
        client.cancel([future for future in futures if not future.done()])
