"""Faces in any photo: detect, frame each face the way the training images were framed, predict, draw.

The keypoint network was trained on *face images* (frames of the YouTube Faces data set cropped around
one face), never on whole photos. To use it in the wild, every face is

1. **detected** (:func:`detect_faces`, OpenCV's Haar cascade by default): a box ``(x, y, w, h)``;
2. **framed** (:func:`pad_box`): the box is grown about its centre by :data:`FRAME_SCALE` and shifted by
   :data:`FRAME_OFFSET` so that the face sits in the crop as faces sat in the training images. Both
   constants were *measured* on the training data (:func:`measure_framing`), not guessed;
3. **cropped** (:func:`crop_face`): an integer rectangle cut out of the photo (no resampling), padded by
   replicating the border where it leaves the photo, so the framing stays right near the edges;
4. **predicted** (:func:`predict_faces`): all crops of a photo in one batch through the
   :class:`~keypoints.predictor.Predictor`, whose points come back in each crop's pixels; adding the
   crop's integer corner gives photo pixels (:func:`crop_to_photo`), exactly.

Coordinates follow :mod:`keypoints.geometry`: pixel ``(row y, column x)`` has its centre at ``(x, y)``.
A box or crop rectangle ``(x, y, w, h)`` covers the pixels ``x .. x + w - 1`` and ``y .. y + h - 1``.
"""
from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import cv2
import numpy as np

from .image import check_image, gray_uint8, to_bgr_uint8, to_gray_float32

# ----------------------------------------------------------------------------------------------------
# Framing constants, measured on the training data
# ----------------------------------------------------------------------------------------------------

# How the training images frame a face, relative to the Haar box of that face (box side w, box centre c):
# the network reads the centre square of each image whose side is the image's shorter side, so that is
# the square a crop in the wild must reproduce:
#
#     side   = FRAME_SCALE * w
#     centre = c + FRAME_OFFSET * w        (x, y); positive y is downwards
#
# Measured with ``measure_framing(KEYPOINTS_DATA, n=400, seed=0)`` (``python benchmarks/measure_framing.py``):
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

DEFAULT_DETECTOR = "haar+profile"  # the frontal cascade, and the profile one where it finds no face
DEFAULT_MAX_SIDE = 1024
DEFAULT_MIN_SIZE = 30
HAAR_FILE = "haarcascade_frontalface_default.xml"
PROFILE_FILE = "haarcascade_profileface.xml"


class FaceKeypoints(NamedTuple):
    """One face of a photo: ``box`` ``(4,)`` int ``(x, y, w, h)`` from the detector, ``points``
    ``(68, 2)`` float64 ``(x, y)`` in the photo's pixels and ``confidence`` in [0, 1]
    (:mod:`keypoints.wild.confidence`; None without flip averaging, which it is computed from, or for a
    checkpoint without a confidence calibration)."""

    box: np.ndarray
    points: np.ndarray
    confidence: float | None = None


# ----------------------------------------------------------------------------------------------------
# Detectors
# ----------------------------------------------------------------------------------------------------


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


def detect_haar_profile(gray: np.ndarray, min_size: int, min_neighbors: int = 5) -> np.ndarray:
    """Frontal faces; in a photo where the frontal cascade finds none, faces turned to the side: ``(F, 4)`` int64.

    OpenCV's profile cascade (``haarcascade_profileface.xml``) knows faces turned one way only, so it runs on
    the photo and on its mirror image (boxes mirrored back); a box overlapping one kept before it (more than
    half of the smaller box) is dropped. It runs only when the frontal cascade found nothing: it costs three
    frontal scans (measured on the 770 test photos: 36 ms a photo for the frontal cascade alone, 133 ms with
    both cascades on every photo), and a photo with frontal faces gives exactly ``detect_haar``'s boxes.
    """
    frontal = detect_haar(gray, min_size)
    if len(frontal):
        return frontal
    cascade = _haar_cascade(haar_cascade_path(PROFILE_FILE))
    width = gray.shape[1]
    kept: list[np.ndarray] = []
    for mirrored in (False, True):
        image = np.ascontiguousarray(gray[:, ::-1]) if mirrored else gray
        found = cascade.detectMultiScale(image, scaleFactor=1.1, minNeighbors=min_neighbors, minSize=(int(min_size),) * 2)
        for x, y, w, h in np.asarray(found, dtype=np.int64).reshape(-1, 4):
            box = np.array([width - x - w if mirrored else x, y, w, h], dtype=np.int64)
            if not kept or not _overlaps(box, np.array(kept), 0.5):
                kept.append(box)
    return np.array(kept, dtype=np.int64).reshape(-1, 4)


# name -> function (uint8 gray image, min_size in that image's pixels) -> (F, 4) boxes. Another detector
# (a DNN, a HOG detector) registers itself here and becomes available to ``--detector``.
DETECTORS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {"haar": detect_haar, "haar+profile": detect_haar_profile}


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
        A name in :data:`DETECTORS`: ``"haar+profile"`` (default) or ``"haar"`` (frontal faces only).
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


# ----------------------------------------------------------------------------------------------------
# Framing: box -> crop rectangle -> crop, and back
# ----------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------
# Keypoints for every face of a photo
# ----------------------------------------------------------------------------------------------------


def predict_faces(
    predictor,
    image: np.ndarray,
    detector: str = DEFAULT_DETECTOR,
    boxes: np.ndarray | None = None,
    max_side: int | None = DEFAULT_MAX_SIDE,
    min_size: int = DEFAULT_MIN_SIZE,
) -> list[FaceKeypoints]:
    """Detect the faces of a photo and predict 68 keypoints for each, in photo pixels.

    Parameters
    ----------
    predictor : keypoints.predictor.Predictor
    image : (H, W) or (H, W, C) gray/BGR/BGRA, uint8, uint16 or float in [0, 1]
    detector : str, a name in :data:`DETECTORS`
    boxes : (F, 4) int, optional
        Skip detection and use these boxes (e.g. from a tracker).
    max_side, min_size : see :func:`detect_faces`

    Returns
    -------
    list of FaceKeypoints(box (4,) int64, points (68, 2) float64), in the order of the boxes. All crops
    go through the network in one batch. Converted to gray once, cropped from the gray image: the
    predictor reads gray anyway, and a colour crop would be converted per face.
    """
    image = check_image("predict_faces", image)
    if boxes is None:
        boxes = detect_faces(image, detector=detector, max_side=max_side, min_size=min_size)
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    if len(boxes) == 0:
        return []
    gray = to_gray_float32(image)
    rects = [pad_box(box, gray.shape) for box in boxes]
    crops = [crop_face(gray, rect) for rect in rects]
    prediction = predictor.predict_details(crops)  # points (F, 68, 2) in each crop's pixels
    confidences = [None] * len(boxes)
    calibration = getattr(predictor, "confidence_calibration", None)
    if prediction.plain is not None and calibration is not None:
        from .wild.confidence import face_confidence

        confidences = [float(c) for c in face_confidence(prediction.plain, prediction.mirrored, calibration)]
    return [
        FaceKeypoints(box.copy(), crop_to_photo(points, rect), confidence)
        for box, rect, points, confidence in zip(boxes, rects, prediction.points, confidences)
    ]


# ----------------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------------

# iBUG 68-point contours: (first, last, closed)
CONTOURS = (
    (0, 16, False),  # jaw
    (17, 21, False),  # right brow (the person's right: left in the picture)
    (22, 26, False),  # left brow
    (27, 30, False),  # nose bridge
    (31, 35, False),  # nostrils
    (36, 41, True),  # right eye
    (42, 47, True),  # left eye
    (48, 59, True),  # outer lips
    (60, 67, True),  # inner lips
)

_SHIFT = 4  # OpenCV draws at 1/16 pixel precision with shift=4: the dots sit where the points are
_ONE = 1 << _SHIFT


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(points, dtype=np.float64) * _ONE).astype(np.int32)


def _as_faces(points) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim == 2:
        points = points[None]
    if points.ndim != 3 or points.shape[2] != 2:
        raise ValueError(f"draw_keypoints: expected points of shape (K, 2) or (F, K, 2), got {points.shape}")
    return points


def draw_keypoints(
    image: np.ndarray,
    points,
    indices: bool = False,
    color: tuple[int, int, int] = (0, 255, 0),
    radius: float | None = None,
    contours: bool = True,
) -> np.ndarray:
    """Draw keypoints on a BGR uint8 copy of ``image`` (any input format, see :func:`to_bgr_uint8`).

    Parameters
    ----------
    points : (K, 2) or (F, K, 2)
        ``(x, y)`` in the image's pixels, one set per face.
    indices : bool
        Also write each point's index beside it (checking the iBUG numbering).
    color : BGR
    radius : float, optional
        Dot radius in pixels; default ``max(1, face width / 80)`` per face, so dots scale with the face.
    contours : bool
        Join the 68 points along the jaw, brows, nose, eyes and lips (thin lines, for 68-point sets).

    Anti-aliased, at sub-pixel precision (a dot is centred on the point, not on the nearest pixel).
    """
    out = to_bgr_uint8(image)
    color = tuple(int(c) for c in color)
    for face in _as_faces(points):
        if not np.isfinite(face).all():
            continue
        width = float(np.ptp(face[:, 0])) if len(face) > 1 else 80.0
        r = float(radius) if radius is not None else max(1.0, width / 80.0)
        thickness = max(1, int(round(r / 2)))
        if contours and len(face) == 68:
            for first, last, closed in CONTOURS:
                contour = [_fixed(face[first : last + 1])]
                cv2.polylines(out, contour, closed, color, thickness // 2 + 1, cv2.LINE_AA, _SHIFT)
        for x, y in _fixed(face):
            cv2.circle(out, (int(x), int(y)), int(round(r * _ONE)), color, -1, cv2.LINE_AA, _SHIFT)
        if indices:
            # small print: 68 labels share a face, so about 1/600 of its width per unit of font scale
            scale = max(0.25, width / 600.0)
            for k, (x, y) in enumerate(face):
                origin = (int(round(x + r)), int(round(y - r)))
                cv2.putText(out, str(k), origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 2, cv2.LINE_AA)
                cv2.putText(out, str(k), origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def draw_boxes(
    image: np.ndarray, boxes, color: tuple[int, int, int] = (255, 160, 0), thickness: int | None = None
) -> np.ndarray:
    """Draw rectangles ``(x, y, w, h)`` (detector boxes or crop rectangles) on a BGR uint8 copy."""
    out = to_bgr_uint8(image)
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    t = thickness if thickness is not None else max(1, int(round(max(out.shape[:2]) / 400)))
    for x, y, w, h in boxes:
        # axis-aligned edges on whole pixels: no anti-aliasing needed
        corner, far = (int(x), int(y)), (int(x + w - 1), int(y + h - 1))
        cv2.rectangle(out, corner, far, tuple(int(c) for c in color), t, cv2.LINE_8)
    return out


def draw_faces(
    image: np.ndarray, faces: Sequence[FaceKeypoints], indices: bool = False, boxes: bool = True
) -> np.ndarray:
    """The picture ``predict`` writes: each face's detector box and keypoints on a BGR copy."""
    out = to_bgr_uint8(image)
    if boxes and faces:
        out = draw_boxes(out, np.stack([face.box for face in faces]))
    if faces:
        out = draw_keypoints(out, np.stack([face.points for face in faces]), indices=indices)
    return out


# ----------------------------------------------------------------------------------------------------
# Measuring the training framing
# ----------------------------------------------------------------------------------------------------


class Framing(NamedTuple):
    """How the training images frame the Haar box (see :data:`FRAME_SCALE`)."""

    scale: float  # median of min(H, W) / w
    offset: tuple[float, float]  # median of (image centre - box centre) / w, (x, y)
    scale_iqr: tuple[float, float]  # quartiles of the scale
    offset_iqr: tuple[tuple[float, float], tuple[float, float]]  # quartiles of the x and y offsets
    used: int  # images with exactly one detected face
    sampled: int


def measure_framing(data_dir: str | os.PathLike, n: int = 400, seed: int = 0, split: str = "training") -> Framing:
    """Measure :data:`FRAME_SCALE` and :data:`FRAME_OFFSET` on the training images.

    Draws ``n`` images of ``data_dir/<split>`` at random (``seed``), runs :func:`detect_faces` with the
    default settings on each, keeps those with exactly one face, and returns the medians (robust to the
    odd misfit box) of ``min(H, W) / w`` and of ``(image centre - box centre) / w``. The network reads the
    centre ``min(H, W)`` square of an image (rescale the shorter side, centre crop), so that square, not
    the whole image, is what a crop in the wild must reproduce.
    """
    from .image import ImageError, read_image_file

    folder = Path(data_dir) / split
    if not folder.is_dir():
        raise FileNotFoundError(f"measure_framing: no folder {folder} (expected the facial keypoints data set)")
    names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not names:
        raise FileNotFoundError(f"measure_framing: no images in {folder}")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(names), size=min(n, len(names)), replace=False)
    scales, offsets = [], []
    for i in chosen:
        try:
            image = read_image_file(folder / names[i], cv2.IMREAD_UNCHANGED)
        except ImageError:
            continue
        boxes = detect_faces(image)
        if len(boxes) != 1:
            continue
        x, y, w, h = (float(v) for v in boxes[0])
        height, width = image.shape[:2]
        size = max(w, h)
        scales.append(min(height, width) / size)
        offsets.append(((width / 2.0 - (x + w / 2.0)) / size, (height / 2.0 - (y + h / 2.0)) / size))
    if not scales:
        raise ValueError(f"measure_framing: the detector found exactly one face in none of {len(chosen)} images")
    scales_a, offsets_a = np.array(scales), np.array(offsets)
    q = lambda a: (float(np.percentile(a, 25)), float(np.percentile(a, 75)))  # noqa: E731
    return Framing(
        scale=float(np.median(scales_a)),
        offset=(float(np.median(offsets_a[:, 0])), float(np.median(offsets_a[:, 1]))),
        scale_iqr=q(scales_a),
        offset_iqr=(q(offsets_a[:, 0]), q(offsets_a[:, 1])),
        used=len(scales),
        sampled=len(chosen),
    )
