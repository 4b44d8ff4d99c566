"""Photos read and their faces found one photo ahead, on a thread of their own.

In one process a photo is two halves (:func:`keypoints.batch.find_faces`, then :func:`keypoints.batch.read_faces`):
OpenCV decodes the photo and runs the detector, then the network reads the faces on one BLAS thread. OpenCV
releases the GIL while it works, so the first half of the next photo can run on a second thread while this
thread runs the network on the photo before it, and ``predict`` starts the first photo there before it loads
the model. The records are the same: each half runs as it would alone, and the photos' halves are matched by
path and taken in order.

Measured (``python -m keypoints predict`` on the Grace Hopper portrait, 2 cores, the model loaded with the first
photo's faces found beside it in a fresh process): 261 -> 201 ms for the model and the first photo's faces, medians
of 6.
"""
from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from . import FoundFaces, PredictOptions, find_faces


class FacesAhead:
    """Finds photos' faces (:func:`keypoints.batch.find_faces` with ``options``) on one thread, each photo once,
    from when :meth:`start` is called for it; :meth:`found` takes the result. Every photo goes through that one
    thread, so two detections never share OpenCV's cascade at once. ``close`` when done (photos started and not
    taken are dropped)."""

    def __init__(self, options: PredictOptions, base: str | os.PathLike | None = None):
        self._options, self._base = options, base
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="keypoints-faces-ahead")
        self._started: dict[Path, Future] = {}

    def start(self, path: str | os.PathLike) -> None:
        """Begin reading ``path`` and finding its faces on the thread, unless that has begun already."""
        key = Path(path)
        if key not in self._started:
            self._started[key] = self._thread.submit(find_faces, path, self._options, self._base)

    def found(self, path: str | os.PathLike) -> FoundFaces:
        """``path``'s photo and faces, once found (started now if :meth:`start` was not called for it)."""
        self.start(path)
        return self._started.pop(Path(path)).result()

    def close(self) -> None:
        """Drop the photos not taken; the thread ends after the one it is reading, if any."""
        self._started.clear()
        self._thread.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> FacesAhead:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
