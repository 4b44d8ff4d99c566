"""Many photos: one function per photo, run in this process, in N worker processes, or on a Dask cluster.

:func:`predict_photo` turns one photo path into its record (the ``images`` entry ``predict`` writes: see
:mod:`keypoints.wild.formats`) and optionally its drawn picture. Every way of running a batch calls it, so
``--workers N`` and a Dask cluster give the same records, in the same (input) order, as ``--workers 1``:

- in process (``workers=1``, the default): a loop, each photo read and its faces found (:func:`find_faces`) on a
  second thread while the network reads the faces of the photo before (:func:`read_faces`;
  :mod:`keypoints.batch.ahead`);
- ``workers=N``: N processes started with the *spawn* method (Numba's thread pool does not survive a
  fork), each loading the model once when it starts. A worker holds one photo at a time, so a worker that
  dies (the OOM killer, a crash in a decoder) is known to have died on that photo: the photo gets an error
  record naming the death, a fresh worker takes its place, and the remaining photos go on;
- ``client=`` a ``dask.distributed.Client``: one task per photo; only the path travels, the worker reads
  the photo itself (so the paths, and ``--model``, must exist on the workers: a shared folder) and returns
  the small record; each worker process loads the model once (:func:`cached_predictor`). A task whose
  worker died (``KilledWorker``, after the scheduler's ``allowed-failures`` retries) gets an error record.

Threads. Every process runs OpenCV (detection), Numba kernels and OpenBLAS (the network's products).
OpenBLAS's results depend on its thread count (it splits a product's rows between its threads, and rows at a
split take another kernel: a two-face photo's points moved by up to 0.006 px between 1 and 2 threads), so
:func:`predict_photo` runs the network on *one* OpenBLAS thread in every process, each product whole even
in a process that trained before (:func:`one_blas_thread`):
the records of ``--workers N`` and of a Dask cluster are those of ``--workers 1``, to the byte. The price
is in one process: the reads of a photo are small products (batches of 2 to 8 crops), and one thread gave
10.3 photos/s against 12.2 on the first 200 test photos (2 cores), as fast or faster on the 512-pixel portraits;
``--workers 2`` gave 17.3 (``benchmarks/bench_batch.py``). tinynet's results do not depend on its thread count
(its kernels' threads write independent outputs), so N local workers give tinynet and OpenCV
``max(1, cores // N)`` threads each (:func:`threads_per_worker`; ``TINYNET_NUM_THREADS`` is in the worker's
environment before tinynet loads) and do not oversubscribe the cores. A Dask task runs one photo at a time per
process (tinynet's thread count is one setting per process) with the worker's ``OMP_NUM_THREADS``
(a Dask nanny sets 1) for tinynet and OpenCV: give Dask one thread per worker process and as many processes
as cores. The records are the same as a single process's on the same machine; another machine's OpenBLAS
may pick other kernels for its CPU, and points may then differ in the fifth decimal.

Engine. ``PredictOptions.engine`` (``"auto"``, ``"numba"`` or ``"numpy"``, :mod:`keypoints.engine`) says what
runs the network. :func:`iter_predictions` resolves ``"auto"`` once, in the calling process, from the number of
photos, and every process of the run uses that engine, so the records stay those of ``--workers 1``. A NumPy
run never imports Numba.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import cv2
import numpy as np

import tinynet
from tinynet._threads import available_cores  # the cores this process may run on

from ..image import DEFAULT_MAX_PIXELS


#: how long ``--scheduler`` waits for the scheduler to answer before giving up (:func:`keypoints.batch.cluster.connect`)
DEFAULT_CONNECT_TIMEOUT = 10.0


class WorkerStartError(RuntimeError):
    """A worker process could not start (its model did not load, or it died before it was ready).

    Here, not in :mod:`keypoints.batch.pool` that raises it: ``predict`` catches it, and a run in this process
    should not import ``multiprocessing`` to do so."""


@dataclasses.dataclass(frozen=True)
class PredictOptions:
    """What ``predict`` does with each photo (everything but the paths); picklable, sent to every worker.

    ``model``: a checkpoint path, or None for the shipped model; ``flip``: None keeps the checkpoint's
    choice (or ``speed``'s); ``speed``: one of :data:`keypoints.speed.SPEEDS`; ``min_confidence``: faces
    below it are dropped (and counted); ``indices``, ``boxes``, ``pose``: what the drawn picture shows;
    ``engine``: ``"numba"`` (tinynet's kernels), ``"numpy"`` (no Numba at all) or ``"auto"``
    (:func:`keypoints.engine.choose_engine` by the number of photos, resolved by :func:`iter_predictions`;
    :func:`predict_photo` called on its own takes it as one photo).
    """

    model: str | None = None
    flip: bool | None = None
    speed: str = "accurate"  # keypoints.speed.SPEEDS
    detector: str | None = None  # None: keypoints.wild.detection.DEFAULT_DETECTOR
    max_side: int | None = None  # None: keypoints.wild.detection.DEFAULT_MAX_SIDE
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_confidence: float | None = None
    indices: bool = False
    boxes: bool = True
    pose: bool = False
    engine: str = "auto"

    def __post_init__(self):
        """Refuse settings that would fail every photo alike (a usage error, not a bad photo)."""
        from ..wild.detection import DETECTORS

        if self.detector is not None and self.detector not in DETECTORS:
            raise ValueError(f"PredictOptions: detector must be one of {sorted(DETECTORS)}, got {self.detector!r}")
        for name in ("max_side", "max_pixels"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"PredictOptions: {name} must be a positive integer, got {value!r}")
        if self.min_confidence is not None and not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"PredictOptions: min_confidence must be in [0, 1] or None, got {self.min_confidence!r}")
        from ..engine import ENGINES
        from ..speed import checked_speed

        checked_speed(self.speed, "PredictOptions")
        if self.engine not in ENGINES:
            raise ValueError(f"PredictOptions: engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.model is not None and not isinstance(self.model, str):
            raise TypeError(f"PredictOptions: model must be a path as str or None, got {type(self.model).__name__}")

    def detection(self) -> dict:
        """The ``detect_faces`` keyword arguments (the detector module's defaults for None)."""
        from ..wild.detection import DEFAULT_DETECTOR, DEFAULT_MAX_SIDE

        return {"detector": self.detector or DEFAULT_DETECTOR,
                "max_side": DEFAULT_MAX_SIDE if self.max_side is None else self.max_side}


class PhotoResult(NamedTuple):
    """One photo's outcome. ``record``: its JSON-able record (``record["error"]`` None when it gave faces);
    ``detect_seconds`` / ``keypoint_seconds``: time in the detector / the network (None when not reached);
    ``faces``: faces kept; ``factor``: 1, or 2/4/8 when decoded reduced."""

    record: dict
    detect_seconds: float | None = None
    keypoint_seconds: float | None = None
    faces: int = 0
    factor: int = 1

    @property
    def failure(self) -> str | None:
        """``"<path>: <why>"`` when the photo gave nothing, else None."""
        error = self.record["error"]
        return None if error is None else f"{self.record['path']}: {error}"


def predict_photo(predictor, path: str | os.PathLike, options: PredictOptions, output: str | os.PathLike | None = None,
                  base: str | os.PathLike | None = None) -> PhotoResult:
    """Detect the faces of one photo, predict their keypoints, and return its record; never raises for a
    problem of the photo itself (unreadable, not an image, no face, too small for the detector: the
    record's ``error`` says which), so a batch goes on.

    ``output``: where to write the drawn picture (None: no picture). ``base``: a folder that relative
    ``path`` and ``output`` are read and written against (a Dask worker's working folder is not the
    client's); the record keeps them as given.
    """
    return read_faces(predictor, find_faces(path, options, base), options, output, base)


class FoundFaces(NamedTuple):
    """A photo read and its faces found (:func:`find_faces`), before the network reads them."""

    record: dict  # the record so far (path, size, reduced factor); its "error" is set when the photo failed already
    image: np.ndarray | None  # as decoded (None when it failed)
    boxes: np.ndarray | None  # (F, 4) detected faces, in the image's pixels
    factor: int
    detect_seconds: float | None


def find_faces(path: str | os.PathLike, options: PredictOptions, base: str | os.PathLike | None = None) -> FoundFaces:
    """The first half of :func:`predict_photo`: read the photo and detect its faces. A problem of the photo
    itself is its record's ``error``, never an exception."""
    from ..wild.detection import detect_faces
    from ..wild.photos import InputError, read_photo

    where = Path(base) if base is not None else Path()
    record = {"path": str(path), "faces": [], "error": None}
    image = boxes = detect_seconds = None
    factor = 1
    try:
        image, factor, (height, width) = read_photo(where / path, options.max_pixels)
        record["height"], record["width"] = height, width  # the photo's: boxes and points are in its pixels
        record["reduced"] = factor  # 1, or 2/4/8: decoded at 1/factor size (over --max-pixels)
        start = time.perf_counter()
        boxes = detect_faces(image, **options.detection())
        detect_seconds = time.perf_counter() - start
        if len(boxes) == 0:
            raise InputError(path, "no face found")
    except (InputError, ValueError, cv2.error) as exc:
        record["error"] = _reason(exc)
    return FoundFaces(record, image, boxes, factor, detect_seconds)


def read_faces(predictor, found: FoundFaces, options: PredictOptions, output: str | os.PathLike | None = None,
               base: str | os.PathLike | None = None) -> PhotoResult:
    """The second half of :func:`predict_photo`: the network reads the faces ``found`` (unless the photo failed
    already), and the record and the drawn picture are made."""
    from ..engine import choose_engine, engine_flags
    from ..files import write_image
    from ..wild.commands import confident, draw_poses
    from ..wild.drawing import draw_faces
    from ..wild.face_crop import pad_box
    from ..wild.faces import predict_faces
    from ..wild.formats import face_record
    from ..wild.photos import InputError, in_photo_pixels

    record, image, factor = found.record, found.image, found.factor
    keypoint_seconds = None
    if record["error"] is None:
        path, where = record["path"], Path(base) if base is not None else Path()
        try:
            start = time.perf_counter()
            # the same points in every process, whatever its BLAS threads and on the run's one engine (see above)
            with one_blas_thread(), engine_flags(choose_engine(options.engine, 1)):
                detected = predict_faces(predictor, image, boxes=found.boxes)
            keypoint_seconds = time.perf_counter() - start
            faces = confident(detected, options.min_confidence)
            record["below_min_confidence"] = len(detected) - len(faces)  # flagged, not silently dropped
            if not faces:
                raise InputError(path, f"no face with confidence >= {options.min_confidence} ({len(detected)} below)")
            # in the photo's pixels (a photo over --max-pixels was decoded at 1/factor size)
            height, width = record["height"], record["width"]
            record["faces"] = [face_record(in_photo_pixels(face, factor), pad_box(face.box) * factor, (height, width))
                               for face in faces]
            if output is not None:
                picture = draw_faces(image, faces, indices=options.indices, boxes=options.boxes)
                write_image(where / output, draw_poses(picture, faces) if options.pose else picture)
                record["output"] = str(output)
        except (InputError, ValueError, cv2.error) as exc:
            record["error"] = _reason(exc)
    return PhotoResult(record, found.detect_seconds, keypoint_seconds, len(record["faces"]), factor)


def _reason(exc: Exception) -> str:
    """A photo's error: an ``InputError`` is the photo's own problem; a ``ValueError``/``cv2.error``, an image
    OpenCV decoded but cannot process (e.g. too small for the detector). Either way this photo fails, the batch
    goes on."""
    from ..wild.photos import InputError

    return exc.reason if isinstance(exc, InputError) else str(exc)


# ----------------------------------------------------------------------------------------------------
# One model per process, threads per process
# ----------------------------------------------------------------------------------------------------

_PREDICTORS: dict = {}
#: one photo at a time per process: tinynet's thread count (``limit_threads``) is one setting for the whole process
_PREDICT_LOCK = threading.Lock()


def cached_predictor(model: str | None, flip: bool | None, speed: str = "accurate"):
    """This process's predictor for ``(model, flip, speed)``, loaded on first use (``None``: the shipped model)."""
    from ..wild.cli import load_model

    key = (None if model is None else str(model), flip, speed)
    if key not in _PREDICTORS:
        _PREDICTORS[key] = load_model(model, flip, speed)
    return _PREDICTORS[key]


#: ``workers="auto"`` starts one process per core for more than this many photos, and reads fewer in this
#: process. Measured (``benchmarks/bench_batch.py``, 500 test photos, 2 idle cores): one process reads 9.6
#: photos/s, two workers 17.3 but their first record comes after 1.0 s (each starts Python, loads the model
#: and its kernels), so two workers finish first from about 22 photos on.
AUTO_WORKERS_MIN_PHOTOS = 32


def choose_workers(workers: int | str, photos: int, cores: int | None = None) -> int:
    """The number of processes for ``workers`` (a positive int, or ``"auto"``: :data:`AUTO_WORKERS_MIN_PHOTOS`)
    and a run of ``photos`` photos."""
    if workers == "auto":
        return (available_cores() if cores is None else cores) if photos > AUTO_WORKERS_MIN_PHOTOS else 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer or 'auto', got {workers!r}")
    return workers


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Threads each of ``workers`` processes may use so that together they do not oversubscribe the
    cores: ``max(1, cores // workers)``."""
    return max(1, (available_cores() if cores is None else cores) // workers)


#: the thread limit tinynet reads when it loads (BLAS: one thread while a photo is read, :func:`one_blas_thread`)
THREAD_VARIABLES = ("TINYNET_NUM_THREADS",)


def limit_threads(threads: int) -> None:
    """OpenCV's threads and tinynet's (its kernels' and matrix products', ``tinynet.blas.set_num_threads``) in
    this process."""
    tinynet.blas.set_num_threads(threads)
    cv2.setNumThreads(threads)


_BLAS_CONTROLLER: list = []  # threadpoolctl's view of this process's thread pools, found once


@contextlib.contextmanager
def one_blas_thread():
    """A context in which this process's OpenBLAS (any BLAS) uses one thread (``threadpoolctl``; the
    previous count comes back at its end) and tinynet's products run whole (``tinynet.blas.whole_products``,
    also in a process that trained before): why, in this module's docstring."""
    if not _BLAS_CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _BLAS_CONTROLLER.append(ThreadpoolController())
    with _BLAS_CONTROLLER[0].limit(limits=1, user_api="blas"), tinynet.blas.whole_products():
        yield


# ----------------------------------------------------------------------------------------------------
# The batch
# ----------------------------------------------------------------------------------------------------


def iter_predictions(paths: Iterable[str | os.PathLike], options: PredictOptions | None = None, *,
                     outputs: Iterable[str | os.PathLike | None] | None = None, workers: int = 1,
                     client=None, predictor=None, ahead=None) -> Iterator[PhotoResult]:
    """An iterator over each photo's :class:`PhotoResult` in the order of ``paths``, each as soon as it and
    every photo before it are done (the arguments are checked at the call, the photos read as it is iterated).

    Parameters
    ----------
    paths : photo files (folders are expanded by the callers: :func:`keypoints.wild.photos.expand_inputs`).
    options : :class:`PredictOptions` (default: the shipped model, default detector).
    outputs : one drawn picture path (or None) per photo; default none.
    workers : 1 runs here (with ``predictor`` if given, else :func:`cached_predictor`); N > 1 runs N
        worker processes (:mod:`keypoints.batch.pool`).
    client : a ``dask.distributed.Client``: one task per photo on its cluster (with ``workers`` left at 1).
    predictor : the in-process path's model, when the caller has loaded it already.
    ahead : the in-process path's :class:`~keypoints.batch.ahead.FacesAhead`, when the caller has started the first
        photo on it already (``predict`` does, while it loads the model); the caller closes it. Default: one of
        this run's own.

    Raises ``WorkerStartError`` (:mod:`keypoints.batch.pool`) when a worker process cannot load the model.
    """
    from ..engine import choose_engine

    options = options or PredictOptions()
    if isinstance(paths, (str, os.PathLike)):
        raise TypeError(f"iter_predictions: expected a list of photo paths, got the single path {str(paths)!r}"
                        " (wrap it in a list)")
    paths = [Path(p) for p in paths]
    outputs = [None] * len(paths) if outputs is None else list(outputs)
    if len(outputs) != len(paths):
        raise ValueError(f"iter_predictions: expected one output per photo ({len(paths)}), got {len(outputs)}")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"iter_predictions: workers must be a positive integer, got {workers!r}")
    if client is not None and workers != 1:
        raise ValueError("iter_predictions: workers runs processes on this machine, client a Dask cluster: choose one")
    if client is None and options.model is not None and not Path(options.model).is_file():
        raise FileNotFoundError(f"{options.model}: no such model file (train one with examples/train_keypoints.py)")
    # once, here: every worker and task of the run gets the same engine (an "auto" left to each would be 1 photo)
    options = dataclasses.replace(options, engine=choose_engine(options.engine, len(paths)))
    if client is not None:
        from .cluster import dask_predictions

        return dask_predictions(client, paths, outputs, options)
    if workers > 1 and len(paths) > 1:
        from .pool import pool_predictions

        return pool_predictions(paths, outputs, options, workers)
    predictor = predictor or cached_predictor(options.model, options.flip, options.speed)
    return _in_process(paths, outputs, options, predictor, ahead)


def _in_process(paths: list[Path], outputs: list, options: PredictOptions, predictor, ahead) -> Iterator[PhotoResult]:
    """Each photo in turn, the next photo's faces found on ``ahead``'s thread (or a new one's) while the network
    reads this photo's: the same records as :func:`predict_photo` on each in turn (:mod:`keypoints.batch.ahead`)."""
    from .ahead import FacesAhead

    with contextlib.ExitStack() as stack:
        if ahead is None:
            ahead = stack.enter_context(FacesAhead(options))
        for k, (path, output) in enumerate(zip(paths, outputs)):
            found = ahead.found(path)
            if k + 1 < len(paths):
                ahead.start(paths[k + 1])
            yield read_faces(predictor, found, options, output)


def predict_files(paths: Iterable[str | os.PathLike], *, model: str | os.PathLike | None = None,
                  client=None, workers: int = 1, outputs: Iterable[str | os.PathLike | None] | None = None,
                  **settings) -> list[dict]:
    """Every photo's record (:mod:`keypoints.wild.formats`), in the order of ``paths``.

    ``model``: a checkpoint (None: the shipped one); ``client``: a ``dask.distributed.Client`` to run on
    its cluster; ``workers``: local worker processes (without a client); ``outputs``: drawn pictures;
    ``settings``: the other :class:`PredictOptions` fields (``detector``, ``flip``, ``min_confidence``, ...).

    >>> records = predict_files(["a.jpg", "b.jpg"], workers=2)            # doctest: +SKIP
    >>> records = predict_files(paths, client=Client("tcp://host:8786"))  # doctest: +SKIP
    """
    options = PredictOptions(model=None if model is None else str(model), **settings)
    return [result.record for result in iter_predictions(paths, options, outputs=outputs, workers=workers,
                                                         client=client)]
