"""Drawing the 68 points (dots, contours, indices) and the detector's boxes on a BGR uint8 copy of a photo."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np

from ..image import to_bgr_uint8

if TYPE_CHECKING:
    from .faces import FaceKeypoints

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


