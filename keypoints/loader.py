"""``DataLoader``: batches of crops cut from a :class:`~keypoints.data.Faces` cache, prepared in the
background while the network trains on the previous batch.

Reproducibility: every random draw of an epoch (the shuffle order, then each sample's crop offset,
flip, angle, ... in order) comes from ``np.random.default_rng([seed, epoch])``. The batches of epoch
``e`` therefore depend only on ``(seed, e)``, not on what ran before, and a run resumed at epoch ``e``
with ``set_epoch(e)`` sees bit-for-bit the batches the interrupted run would have seen. The background
thread draws from that one generator in the same order as a synchronous loop would, so ``prefetch``
changes the speed, never the batches.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator

import numpy as np

from .data import Faces
from .framing import PointFraming, framed_sample
from .geometry import normalize_keypoints
from .crops import crop_sample

AUGMENT_KEYS = (
    "flip", "degrees", "scale", "translate", "brightness", "contrast", "refine", "frame_shift", "frame_zoom", "frame_degrees"
)
# the keys that only framed samples read (keypoints.framing.framed_sample, under their names there; frame_degrees
# replaces degrees for them), and those both kinds read
_FRAMED_ONLY = {"refine": None, "frame_shift": "shift", "frame_zoom": "zoom", "frame_degrees": "degrees"}
_SHARED = ("flip", "degrees", "brightness", "contrast")
_QUEUE_DEPTH = 2
_POLL_SECONDS = 0.05  # how often a blocked producer checks whether the consumer went away


class DataLoader:
    """Iterate over ``(x, y)`` batches of a :class:`Faces` cache.

    Parameters
    ----------
    faces : Faces
        Rescaled images and keypoints (``keypoints.data.prepare_faces``); the crop side is ``faces.size``.
    batch_size : int
    shuffle : bool
        A new order every epoch (drawn from the epoch's generator).
    drop_last : bool
        Drop the last batch when it is smaller than ``batch_size``.
    seed : int
        With the epoch (``set_epoch``), the only source of randomness.
    augment : dict, optional
        Keyword arguments of ``keypoints.crops.crop_sample``: ``flip``, ``degrees``, ``scale``,
        ``translate``, ``brightness``, ``contrast``. ``None``: random crops only (upstream's recipe).
        ``refine`` (a probability) makes that share of the samples *framed from their true points*
        (``keypoints.framing.framed_sample``, with ``frame_shift``, ``frame_zoom`` and ``frame_degrees`` as
        its ``shift``, ``zoom`` and ``degrees`` jitter and the shared ``flip``, ``degrees`` (unless
        ``frame_degrees`` is given), ``brightness``, ``contrast``): the crops the refinement pass reads.
        Needs ``framing``.
    framing : PointFraming, optional
        The canonical framing of ``refine`` samples.
    flip_permutation : (K,) int, optional
        How the ``K`` points swap sides when a crop is flipped (``keypoints.geometry.checked_flip_permutation``);
        None: the iBUG 68-point one.
    center : bool
        Centred crops (evaluation) instead of random ones.
    prefetch : bool
        Prepare the next batches in a background thread (a queue of depth 2).

    Yields
    ------
    x : (B, 1, S, S) float32, gray in [0, 1]
    y : (B, 2K) float32, the crop's keypoints ``(x0, y0, x1, y1, ...)`` normalised with
        ``normalize_keypoints(points, S)``

    With ``shuffle=False`` batch ``b`` holds faces ``b * batch_size ...`` in order, so predictions map back
    to the original images with ``faces.center_crop_to_original()`` when ``center=True``.
    """

    def __init__(
        self,
        faces: Faces,
        batch_size: int,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        augment: dict | None = None,
        center: bool = False,
        prefetch: bool = True,
        framing: PointFraming | None = None,
        flip_permutation: np.ndarray | None = None,
    ):
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"DataLoader: seed must be a non-negative int, got {seed!r}")
        augment = dict(augment or {})
        unknown = sorted(set(augment) - set(AUGMENT_KEYS))
        if unknown:
            raise ValueError(f"DataLoader: unknown augment keys {unknown}; expected some of {list(AUGMENT_KEYS)}")
        refine = float(augment.get("refine", 0.0))
        if not 0.0 <= refine <= 1.0:
            raise ValueError(f"DataLoader: augment refine must be a probability in [0, 1], got {refine!r}")
        if refine > 0 and not isinstance(framing, PointFraming):
            raise ValueError(f"DataLoader: augment refine={refine} needs a PointFraming as framing, got {framing!r}")
        for i, image in enumerate(faces.images):
            if min(image.shape[:2]) < faces.size:
                raise ValueError(
                    f"DataLoader: face {i} ({faces.names[i]!r}) of shape {image.shape} is smaller than the crop {faces.size}"
                )
        self.faces = faces
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.augment = augment
        self.framing = framing
        self.refine = refine
        self._crop_args = {k: v for k, v in augment.items() if k not in _FRAMED_ONLY}
        self._crop_args["flip_permutation"] = flip_permutation
        self._framed_args = {k: augment[k] for k in _SHARED if k in augment}
        self._framed_args["flip_permutation"] = flip_permutation
        self._framed_args.update({name: augment[k] for k, name in _FRAMED_ONLY.items() if name and k in augment})
        self.center = bool(center)
        self.prefetch = bool(prefetch)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields (as ``DistributedSampler.set_epoch``)."""
        if not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"DataLoader: epoch must be a non-negative int, got {epoch!r}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n, b = len(self.faces), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self._prefetched() if self.prefetch else self._batches()

    def _make_batch(self, indices: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        size = self.faces.size
        x = np.empty((len(indices), 1, size, size), dtype=np.float32)
        y = np.empty((len(indices), 2 * self.faces.keypoints.shape[1]), dtype=np.float32)
        for row, i in enumerate(indices):
            image, keypoints = self.faces.images[i], self.faces.keypoints[i]
            # the coin is drawn only when refine > 0, so recipes without it keep their random streams
            if self.refine > 0 and rng.random() < self.refine:
                crop, points = framed_sample(image, keypoints, size, rng, self.framing, **self._framed_args)
            else:
                crop, points = crop_sample(image, keypoints, size, rng, center=self.center, **self._crop_args)
            x[row, 0] = crop
            y[row] = normalize_keypoints(points, size).reshape(-1)
        return x, y

    def _batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The epoch's batches, computed in the calling thread."""
        rng = np.random.default_rng([self.seed, self.epoch])
        n = len(self.faces)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        for start in range(0, n, self.batch_size):
            indices = order[start : start + self.batch_size]
            if self.drop_last and len(indices) < self.batch_size:
                return
            yield self._make_batch(indices, rng)

    def _prefetched(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``_batches`` run by a background thread, two batches ahead.

        The producer never blocks for good: it puts with a timeout and gives up as soon as ``stop`` is
        set, which the ``finally`` below does when the consumer finishes, breaks out early, or is
        interrupted (closing or garbage-collecting a generator runs its ``finally``). An exception in the
        producer travels through the queue and is re-raised here, in the consumer's thread.
        """
        items: queue.Queue = queue.Queue(maxsize=_QUEUE_DEPTH)
        stop = threading.Event()
        batches = self._batches()

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    items.put(item, timeout=_POLL_SECONDS)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for batch in batches:
                    if not put(("batch", batch)):
                        return
                put(("done", None))
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, who re-raises it
                put(("error", exc))

        thread = threading.Thread(target=produce, name="keypoints-DataLoader", daemon=True)
        thread.start()
        try:
            while True:
                try:
                    kind, payload = items.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    if thread.is_alive() or not items.empty():
                        continue
                    # cannot happen unless the thread was killed from outside; better an error than a hang
                    raise RuntimeError("DataLoader: the background thread stopped without a result") from None
                if kind == "batch":
                    yield payload
                elif kind == "done":
                    return
                else:
                    raise payload
        finally:
            stop.set()
            thread.join()

    def __repr__(self) -> str:
        return (
            f"DataLoader(n={len(self.faces)}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"drop_last={self.drop_last}, seed={self.seed}, augment={self.augment}, center={self.center})"
        )
