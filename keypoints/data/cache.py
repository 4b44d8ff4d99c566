"""The preprocessing cache: every face decoded, grayscaled and rescaled once (:func:`prepare_faces`), from
which ``keypoints.loader.DataLoader`` cuts the crops of every epoch."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..geometry import center_crop_offset
from ..crops import rescale_face, rescale_size
from ..geometry import apply_affine
from .dataset import FacialKeypointsDataset, read_image

@dataclass
class Faces:
    """Faces decoded, grayscaled and rescaled once, ready for the per-epoch crops.

    Attributes
    ----------
    images : list of (h, w) float32 arrays in [0, 1]; the shorter side is ``rescale_size(size)``
    keypoints : (N, K, 2) float32, in the rescaled images' pixels
    names : list[str]
    original_sizes : (N, 2) int64, ``(height, width)`` of the original images
    size : int, ``S``, the side of the crops the network sees
    to_original : (N, 2, 3) float64, per image the affine mapping rescaled pixels back to original
        pixels, ``x = (x' + 0.5) W/W' - 0.5`` (apply with ``keypoints.geometry.apply_affine``)
    """

    images: list
    keypoints: np.ndarray
    names: list
    original_sizes: np.ndarray
    size: int
    to_original: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: Sequence[int] | np.ndarray) -> "Faces":
        """The faces at ``indices`` (e.g. a train/validation split); the images are shared, not copied."""
        idx = np.asarray(indices, dtype=np.intp).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"Faces.subset: indices out of range for {n} faces")
        return Faces(
            images=[self.images[i] for i in idx],
            keypoints=self.keypoints[idx],
            names=[self.names[i] for i in idx],
            original_sizes=self.original_sizes[idx],
            size=self.size,
            to_original=self.to_original[idx],
        )

    def center_crop_to_original(self) -> np.ndarray:
        """``(N, 2, 3)`` float64: centre-crop pixels (``DataLoader(center=True)``) -> original pixels."""
        out = self.to_original.copy()
        for i, image in enumerate(self.images):
            top, left = center_crop_offset(image.shape[0], image.shape[1], self.size, self.size)
            # original = T @ (crop + (left, top)): the shift enters the translation column through T.
            out[i, :, 2] += out[i, :, :2] @ np.array([left, top], dtype=np.float64)
        return out

    def __repr__(self) -> str:
        return f"Faces(n={len(self)}, size={self.size})"


def prepare_faces(
    dataset: FacialKeypointsDataset,
    size: int,
    *,
    indices: Sequence[int] | None = None,
    workers: int | None = None,
) -> Faces:
    """Decode, grayscale and ``keypoints.crops.rescale_face`` to ``rescale_size(size)`` every image of ``dataset`` once.

    The deterministic part of upstream's pipeline (``Rescale(250)`` before ``RandomCrop(224)``) done once,
    not every epoch. OpenCV releases the GIL while decoding and resizing, so a thread pool scales across
    cores: the 3462 training images take a few seconds.

    Parameters
    ----------
    dataset : FacialKeypointsDataset or PtsDataset (a ``transform`` is not used)
    size : int, the crop size ``S`` the network will see
    indices : optional subset of the dataset (in that order)
    workers : threads, default ``min(8, os.cpu_count())``
    """
    if size <= 0:
        raise ValueError(f"prepare_faces: size must be positive, got {size}")
    chosen = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    rescale = rescale_size(size)

    def load(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
        image = read_image(dataset.image_paths[i])
        rescaled, matrix = rescale_face(image, rescale)  # keypoints.crops: the one preprocessing path
        return rescaled, apply_affine(dataset.keypoints[i], matrix), np.linalg.inv(matrix)[:2], image.shape

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(load, chosen))
    n = len(results)
    return Faces(
        images=[r[0] for r in results],
        keypoints=np.stack([r[1] for r in results]).astype(np.float32)
        if n
        else np.zeros((0, dataset.keypoints.shape[1], 2), np.float32),
        names=[dataset.names[i] for i in chosen],
        original_sizes=np.array([r[3] for r in results], dtype=np.int64).reshape(n, 2),
        size=int(size),
        to_original=np.stack([r[2] for r in results]) if n else np.zeros((0, 2, 3)),
    )
