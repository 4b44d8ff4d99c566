"""Face detectors for photos: OpenCV's Haar cascades and a registry of named detectors.

:func:`detect_faces` finds the faces of any photo (gray/BGR/BGRA, uint8/uint16/float) as boxes
``(x, y, w, h)`` with the detector named in :data:`DETECTORS`; another detector registers itself there
(:func:`register_detector`) and becomes available to ``--detector``. A box covers the pixels
``x .. x + w - 1`` and ``y .. y + h - 1``.
"""
from __future__ import annotations

import functools
import math
import os
from typing import Callable

import cv2
import numpy as np

from ..geometry import flip_image
from ..image import check_image, gray_uint8

DEFAULT_DETECTOR = "haar+profile"  # the frontal cascade, and the profile one where it finds no face
FAST_DETECTOR = "haar+profile-fast"  # the same, scanning face sizes COARSE_SCALE_FACTOR apart (``--speed fast``)
#: Face sizes 1.2x apart instead of 1.1x: fewer sizes to scan. Measured on the 770 test photos (about 200 x 200
#: pixels): 7.8 against 15.4 ms a photo (median), 752 of the true faces found against 765 (dlib's HOG detector
#: finds 752), NME of the whole pipeline on the faces found 5.53 against 5.62 % (with --speed fast).
COARSE_SCALE_FACTOR = 1.2
DEFAULT_MAX_SIDE = 1024
DEFAULT_MIN_SIZE = 30
HAAR_FILE = "haarcascade_frontalface_default.xml"
PROFILE_FILE = "haarcascade_profileface.xml"


@functools.lru_cache(maxsize=None)
def _haar_cascade(path: str) -> cv2.CascadeClassifier:
    """Load a cascade once per process (loading parses a ~1 MB XML file: ~50 ms)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Haar cascade {path} not found: it ships with opencv-python(-headless) < 5 in cv2.data.haarcascades;"
            " reinstall opencv-python-headless or pass the cascade file explicitly"
        )
    try:
        cascade = cv2.CascadeClassifier(path)
    except (cv2.error, SystemError) as exc:  # OpenCV reports a malformed XML file as a SystemError
        raise ValueError(f"Haar cascade {path}: OpenCV could not load it ({exc})") from exc
    if cascade.empty():
        raise ValueError(f"Haar cascade {path}: OpenCV could not load it (corrupt or not a cascade XML file)")
    return cascade


def haar_cascade_path(name: str = HAAR_FILE) -> str:
    """Where OpenCV keeps a cascade file (``cv2.data.haarcascades``), by default the frontal one."""
    data = getattr(cv2, "data", None)
    folder = getattr(data, "haarcascades", None)
    if folder is None:
        raise FileNotFoundError(
            "this OpenCV build has no cv2.data.haarcascades folder (opencv-python-headless < 5 ships it);"
            f" cannot find {name}"
        )
    return os.path.join(folder, name)


def detect_haar(gray: np.ndarray, min_size: int, scale_factor: float = 1.1, min_neighbors: int = 5) -> np.ndarray:
    """Viola-Jones frontal faces on a uint8 gray image: ``(F, 4)`` int64 ``(x, y, w, h)``.

    ``scale_factor`` 1.1 (image pyramid step) and ``min_neighbors`` 5 (overlapping raw detections needed
    to keep a face) are OpenCV's tutorial values: few false positives on photos, and the framing
    constants above were measured with them.
    """
    cascade = _haar_cascade(haar_cascade_path())
    found = cascade.detectMultiScale(
        gray, scaleFactor=scale_factor, minNeighbors=min_neighbors, minSize=(int(min_size), int(min_size))
    )
    return np.asarray(found, dtype=np.int64).reshape(-1, 4)


def _overlaps(box: np.ndarray, others: np.ndarray, threshold: float) -> bool:
    """Whether ``box`` covers more than ``threshold`` of the smaller of itself and any of ``others``."""
    x, y, w, h = box
    for ox, oy, ow, oh in others:
        inter = max(0, min(x + w, ox + ow) - max(x, ox)) * max(0, min(y + h, oy + oh) - max(y, oy))
        if inter > threshold * min(w * h, ow * oh):
            return True
    return False


def detect_haar_profile(gray: np.ndarray, min_size: int, min_neighbors: int = 5, scale_factor: float = 1.1) -> np.ndarray:
    """Frontal faces; in a photo where the frontal cascade finds none, faces turned to the side: ``(F, 4)`` int64.

    OpenCV's profile cascade (``haarcascade_profileface.xml``) knows faces turned one way only, so it runs on
    the photo and on its mirror image (boxes mirrored back); a box overlapping one kept before it (more than
    half of the smaller box) is dropped. It runs only when the frontal cascade found nothing: it costs three
    frontal scans (measured on the 770 test photos: 36 ms a photo for the frontal cascade alone, 133 ms with
    both cascades on every photo), and a photo with frontal faces gives exactly ``detect_haar``'s boxes.
    """
    frontal = detect_haar(gray, min_size, scale_factor=scale_factor)
    if len(frontal):
        return frontal
    cascade = _haar_cascade(haar_cascade_path(PROFILE_FILE))
    width = gray.shape[1]
    kept: list[np.ndarray] = []
    for mirrored in (False, True):
        image = flip_image(gray) if mirrored else gray
        found = cascade.detectMultiScale(image, scaleFactor=scale_factor, minNeighbors=min_neighbors,
                                         minSize=(int(min_size),) * 2)
        for x, y, w, h in np.asarray(found, dtype=np.int64).reshape(-1, 4):
            box = np.array([width - x - w if mirrored else x, y, w, h], dtype=np.int64)
            if not kept or not _overlaps(box, np.array(kept), 0.5):
                kept.append(box)
    return np.array(kept, dtype=np.int64).reshape(-1, 4)


# name -> function (uint8 gray image, min_size in that image's pixels) -> (F, 4) boxes. Another detector
# (a DNN, a HOG detector) registers itself here and becomes available to ``--detector``.
DETECTORS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "haar": detect_haar,
    "haar+profile": detect_haar_profile,
    FAST_DETECTOR: functools.partial(detect_haar_profile, scale_factor=COARSE_SCALE_FACTOR),
}


def register_detector(name: str, function: Callable[[np.ndarray, int], np.ndarray]) -> None:
    """Make ``function(gray_uint8, min_size) -> (F, 4) int boxes`` available as ``detector=name``."""
    if not callable(function):
        raise TypeError(f"register_detector: {name!r} must be callable, got {type(function).__name__}")
    DETECTORS[str(name)] = function


def detect_faces(
    image: np.ndarray,
    detector: str = DEFAULT_DETECTOR,
    max_side: int | None = DEFAULT_MAX_SIDE,
    min_size: int = DEFAULT_MIN_SIZE,
) -> np.ndarray:
    """Face boxes in a photo: ``(F, 4)`` int64 ``(x, y, w, h)`` in the photo's full-resolution pixels.

    Parameters
    ----------
    image : (H, W) or (H, W, 1|2|3|4)
        Gray, BGR or BGRA (OpenCV's order); uint8, uint16 or float in [0, 1].
    detector : str
        A name in :data:`DETECTORS`: ``"haar+profile"`` (default), ``"haar+profile-fast"`` (the same with face
        sizes 1.2x apart: half the time, a few more faces missed) or ``"haar"`` (frontal faces only).
    max_side : int or None
        A photo whose longer side exceeds this is shrunk (``cv2.INTER_AREA``) to that size for detection
        only: the cascade's cost grows with the pixel count, and faces in a 24-megapixel photo are far
        larger than the 24-pixel window anyway. Box edges are scaled back by the exact factor.
    min_size : int
        Smallest face side to report, in full-resolution pixels.

    Returns
    -------
    (F, 4) int64, sorted left to right (then top to bottom), an empty ``(0, 4)`` array when no face.
    """
    image = check_image("detect_faces", image)
    if detector not in DETECTORS:
        raise ValueError(f"detect_faces: unknown detector {detector!r}; available: {', '.join(sorted(DETECTORS))}")
    if max_side is not None and max_side < 32:
        raise ValueError(f"detect_faces: max_side must be at least 32 pixels (or None), got {max_side}")
    gray = gray_uint8(image)
    height, width = gray.shape
    factor = 1.0
    if max_side is not None and max(height, width) > max_side:
        factor = max_side / max(height, width)
        small = (max(1, int(round(width * factor))), max(1, int(round(height * factor))))
        gray = cv2.resize(gray, small, interpolation=cv2.INTER_AREA)
        # the exact per-axis factors of the resize (rounding makes them differ slightly from `factor`)
        fx, fy = small[0] / width, small[1] / height
    else:
        fx = fy = 1.0
    boxes = np.asarray(DETECTORS[detector](gray, max(1, int(math.floor(min_size * min(fx, fy))))), dtype=np.float64)
    boxes = boxes.reshape(-1, 4)
    if fx != 1.0 or fy != 1.0:
        # pixel edges scale exactly: the box [x, x + w) in the small image is [x / fx, (x + w) / fx)
        left, top = boxes[:, 0] / fx, boxes[:, 1] / fy
        right, bottom = (boxes[:, 0] + boxes[:, 2]) / fx, (boxes[:, 1] + boxes[:, 3]) / fy
        boxes = np.stack([left, top, right - left, bottom - top], axis=1)
    boxes = np.rint(boxes).astype(np.int64)
    order = np.lexsort((boxes[:, 1], boxes[:, 0]))
    return boxes[order]

