"""One split of the data set: :class:`FacialKeypointsDataset` (upstream's ``Dataset``) and its image reader."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..geometry import NUM_KEYPOINTS
from ..image import DEFAULT_MAX_PIXELS, ImageError, read_image_file, to_gray_float32
from .csv import SPLITS, DataError, check_on_error, csv_name, read_csv_rows, warn_skipped



def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as float32 grayscale ``(H, W)`` in ``[0, 1]``.

    Read by :func:`keypoints.image.read_image_file` with ``IMREAD_UNCHANGED`` (so the EXIF orientation is
    ignored: the keypoints refer to the stored pixels). 8-bit images are divided by 255 and 16-bit ones by
    65535; BGR and BGRA become gray with ``cv2.cvtColor``'s weights (``0.299 R + 0.587 G + 0.114 B``),
    alpha dropped.

    Raises
    ------
    DataError
        The file is missing, empty, truncated, larger than ``max_pixels``, or not an image OpenCV can
        decode. The message names it.
    """
    if not Path(path).is_file():
        raise DataError(f"{path}: no such image file")
    try:
        image = read_image_file(path, cv2.IMREAD_UNCHANGED, max_pixels)
        return to_gray_float32(image)
    except ImageError as exc:
        raise DataError(str(exc)) from exc
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from exc



class FacialKeypointsDataset:
    """One split of the data in the upstream layout (``root/{split}_frames_keypoints.csv``, ``root/{split}/``).

    Parameters
    ----------
    root : folder holding the data (see :func:`find_data_dir`)
    split : {"training", "test"}
    transform : callable ``transform(sample, rng) -> sample``, optional
        Applied by ``__getitem__``, as upstream (see ``keypoints.transforms``).
    on_error : {"raise", "skip"}
        Bad CSV rows and rows whose image file is missing raise :class:`DataError` naming the file and the
        CSV line, or (``"skip"``) are dropped with one warning giving their count.
    rng : np.random.Generator, optional
        Passed to ``transform`` (``None`` is fine for deterministic transforms).

    Attributes
    ----------
    names : list[str]; keypoints : (N, 68, 2) float32; image_paths : list[Path]; lines : list[int] (CSV lines)

    ``dataset[i]`` reads the image from disk each time and returns
    ``{"image": (H, W) float32 gray in [0, 1], "keypoints": (68, 2) float32, "name": str}``, transformed.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "training",
        transform: Callable | None = None,
        on_error: str = "raise",
        *,
        rng: np.random.Generator | None = None,
    ):
        if split not in SPLITS:
            raise ValueError(f"FacialKeypointsDataset: split must be one of {SPLITS}, got {split!r}")
        check_on_error(on_error)
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.rng = rng
        self.csv_path = self.root / csv_name(split)
        self.image_dir = self.root / split
        if not self.csv_path.is_file():
            raise DataError(f"{self.csv_path}: no such keypoints CSV file (is {self.root} the data folder?)")
        if not self.image_dir.is_dir():
            raise DataError(f"{self.image_dir}: no such image folder (is {self.root} the data folder?)")
        names, keypoints, lines, errors = read_csv_rows(self.csv_path, on_error)

        # One directory listing instead of 3462 stat calls; names with a sub-folder fall back to a stat.
        present = set(os.listdir(self.image_dir))
        keep = []
        for i, (name, line) in enumerate(zip(names, lines)):
            path = self.image_dir / name
            if name in present or path.is_file():
                keep.append(i)
                continue
            message = f"{self.csv_path}, line {line} (image {name!r}): image file {path} does not exist"
            if on_error == "raise":
                raise DataError(message)
            errors.append(message)
        self.names = [names[i] for i in keep]
        self.keypoints = keypoints[keep] if keep else np.zeros((0, NUM_KEYPOINTS, 2), dtype=np.float32)
        self.lines = [lines[i] for i in keep]
        self.image_paths = [self.image_dir / name for name in self.names]
        warn_skipped(self.csv_path, errors, len(self.names))

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"FacialKeypointsDataset: index {index} out of range for {n} samples")
        index = index % n
        sample = {
            "image": read_image(self.image_paths[index]),
            "keypoints": self.keypoints[index].copy(),
            "name": self.names[index],
        }
        if self.transform is not None:
            sample = self.transform(sample, self.rng)
        return sample

    def __repr__(self) -> str:
        return f"FacialKeypointsDataset(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"

