"""Framing a detected face as the training images framed theirs: box -> square crop rectangle -> crop, and back.

1. **framed** (:func:`pad_box`): the detector's box is grown about its centre by :data:`FRAME_SCALE` and
   shifted by :data:`FRAME_OFFSET` so that the face sits in the crop as faces sat in the training images.
   Both constants were *measured* on the training data (``benchmarks/measure_framing.py``), not guessed;
2. **cropped** (:func:`crop_face`): an integer rectangle cut out of the photo (no resampling), padded by
   replicating the border where it leaves the photo, so the framing stays right near the edges;
3. **mapped back** (:func:`crop_to_photo`): the points the predictor returns in the crop's pixels plus
   the crop's integer corner are photo pixels, exactly.

Coordinates follow :mod:`keypoints.geometry`: pixel ``(row y, column x)`` has its centre at ``(x, y)``.
A box or crop rectangle ``(x, y, w, h)`` covers the pixels ``x .. x + w - 1`` and ``y .. y + h - 1``.
"""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from ..image import check_image

# How the training images frame a face, relative to the Haar box of that face (box side w, box centre c):
# the network reads the centre square of each image whose side is the image's shorter side, so that is
# the square a crop in the wild must reproduce:
#
#     side   = FRAME_SCALE * w
#     centre = c + FRAME_OFFSET * w        (x, y); positive y is downwards
#
# Measured with ``python benchmarks/measure_framing.py`` (``measure_framing(KEYPOINTS_DATA, n=400, seed=0)``):
# 400 training images drawn at random, the Haar detector with this module's default settings, the 383
# images in which it found exactly one face: median of ``min(H, W) / w`` 1.975 (quartiles 1.83 .. 2.15),
# median of ``(image centre - box centre) / w`` +0.012 in x (quartiles -0.04 .. +0.06) and +0.061 in y
# (+0.01 .. +0.13): the faces sit slightly above the image centre. Check on 386 other images, keypoints as
# fractions of the square's side: centroid (0.508, 0.537), face width 0.436 in the training squares;
# (0.504, 0.535) and 0.438 in the squares framed from the Haar boxes with these constants (and a third of
# the spread: centroid standard deviation 0.018 against 0.055, the detector frames more evenly than the
# data set did).
FRAME_SCALE = 1.98
FRAME_OFFSET = (0.01, 0.06)


def _as_box(where: str, box) -> np.ndarray:
    box = np.asarray(box)
    if box.shape != (4,):
        raise ValueError(f"{where}: expected a box (x, y, w, h), got shape {box.shape}")
    if box[2] <= 0 or box[3] <= 0:
        raise ValueError(f"{where}: box width and height must be positive, got {tuple(box.tolist())}")
    return box


def pad_box(
    box,
    image_shape: Sequence[int] | None = None,
    scale: float = FRAME_SCALE,
    offset: tuple[float, float] = FRAME_OFFSET,
) -> np.ndarray:
    """A detector box -> the square crop rectangle ``(x, y, side, side)`` (int64) framed as in training.

    ``side = round(scale * max(w, h))`` and the crop is centred on the box centre moved by
    ``offset * max(w, h)``; the corner is rounded to whole pixels, so cropping is a plain slice and the
    way back is an integer shift. The rectangle may extend outside the photo (:func:`crop_face` pads).

    ``image_shape`` is only checked (the rectangle must overlap the photo), never used to clip: clipping
    would move the face inside the crop and the network would see it framed differently.
    """
    box = _as_box("pad_box", box)
    if scale <= 0:
        raise ValueError(f"pad_box: scale must be positive, got {scale}")
    x, y, w, h = (float(v) for v in box)
    size = max(w, h)
    side = max(1, int(round(scale * size)))
    cx = x + w / 2.0 + offset[0] * size  # centre in edge coordinates: the box spans [x, x + w)
    cy = y + h / 2.0 + offset[1] * size
    left = int(math.floor(cx - side / 2.0 + 0.5))
    top = int(math.floor(cy - side / 2.0 + 0.5))
    rect = np.array([left, top, side, side], dtype=np.int64)
    if image_shape is not None:
        height, width = int(image_shape[0]), int(image_shape[1])
        if left >= width or top >= height or left + side <= 0 or top + side <= 0:
            raise ValueError(f"pad_box: crop {tuple(rect.tolist())} does not overlap the {width}x{height} image")
    return rect


def crop_face(image: np.ndarray, rect, border: str = "replicate") -> np.ndarray:
    """Cut the rectangle ``(x, y, w, h)`` out of ``image``; parts outside the photo are filled.

    ``border="replicate"`` repeats the edge pixels (as the training augmentation's warps do), ``"constant"``
    fills with 0. Pixel ``(i, j)`` of the crop is pixel ``(y + i, x + j)`` of the photo wherever that
    exists. Returns a fresh array of the image's dtype and channels.
    """
    image = check_image("crop_face", image)
    left, top, w, h = (int(v) for v in _as_box("crop_face", rect))
    height, width = image.shape[:2]
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + w, width), min(top + h, height)
    if x0 >= x1 or y0 >= y1:
        raise ValueError(f"crop_face: rectangle {(left, top, w, h)} does not overlap the {width}x{height} image")
    inside = image[y0:y1, x0:x1]
    pads = (y0 - top, top + h - y1, x0 - left, left + w - x1)  # top, bottom, left, right
    if not any(pads):
        return inside.copy()
    if border not in ("replicate", "constant"):
        raise ValueError(f"crop_face: border must be 'replicate' or 'constant', got {border!r}")
    mode = cv2.BORDER_REPLICATE if border == "replicate" else cv2.BORDER_CONSTANT
    squeeze = inside.ndim == 3 and inside.shape[2] == 1  # copyMakeBorder returns (h, w) for one channel
    padded = cv2.copyMakeBorder(np.ascontiguousarray(inside), *pads, mode, value=0)
    return padded[:, :, None] if squeeze and padded.ndim == 2 else padded


def crop_to_photo(points: np.ndarray, rect) -> np.ndarray:
    """Points in a crop's pixels -> photo pixels: ``p + (x, y)`` in float64 (an integer shift)."""
    rect = np.asarray(rect)
    return np.asarray(points, dtype=np.float64) + rect[:2].astype(np.float64)


def photo_to_crop(points: np.ndarray, rect) -> np.ndarray:
    """The inverse of :func:`crop_to_photo`: ``p - (x, y)`` in float64."""
    rect = np.asarray(rect)
    return np.asarray(points, dtype=np.float64) - rect[:2].astype(np.float64)
