"""Aligned face chips: every face rotated upright, scaled and shifted onto the same template.

Like dlib's ``get_face_chip`` and InsightFace's ``norm_crop``: a similarity transform (rotation, uniform
scale, shift; no shear, so the face keeps its proportions) maps three points of the face, the centres of
the two eyes and the centre of the mouth, as close as possible (least squares, Umeyama 1991) onto fixed
positions of a square chip, and the photo is warped with it (bilinear, border replicated).

The template is InsightFace's ArcFace template for 112 x 112 chips (``arcface_dst`` in
``insightface/utils/face_align.py``): eyes at (38.29, 51.70) and (73.53, 51.50), mouth corners at
(41.55, 92.37) and (70.73, 92.20), scaled to the chip's size. Chips made this way line up with those of
the recognition models trained on it.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import cv2
import numpy as np

# eye centres and mouth centre (the mean of the ArcFace mouth corners) as fractions of the chip's side
TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.1396, 92.2848]]) / 112.0
#: faces whose eye centres are closer than this (photo pixels) are too small to align: the chip would be
#: an enlargement of a handful of pixels
MIN_EYE_DISTANCE = 12.0
RIGHT_EYE, LEFT_EYE, MOUTH = slice(36, 42), slice(42, 48), slice(48, 60)  # iBUG ranges (outer lips: mouth)


class AlignError(ValueError):
    """A face that cannot be aligned (too small, non-finite or collapsed keypoints)."""


class AlignedFace(NamedTuple):
    """One face's chip: ``chip`` ``(size, size[, C])`` of the photo's dtype and ``matrix`` ``(2, 3)``
    mapping photo pixels to chip pixels (``cv2.warpAffine``'s form); ``chip`` is None and ``error`` says
    why when the face could not be aligned."""

    chip: np.ndarray | None
    matrix: np.ndarray | None
    error: str | None = None


def anchor_points(points) -> np.ndarray:
    """``(68, 2) -> (3, 2)``: the centres of the right eye (36-41), left eye (42-47) and mouth (48-59)."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"align: expected 68 keypoints of shape (68, 2), got shape {points.shape}")
    return np.stack([points[RIGHT_EYE].mean(0), points[LEFT_EYE].mean(0), points[MOUTH].mean(0)])


def template_points(size: int) -> np.ndarray:
    """``(3, 2)`` where the eyes and the mouth go on a ``size x size`` chip, in its pixels (at 112, exactly
    InsightFace's positions, which ``norm_crop`` uses as pixel coordinates too)."""
    return TEMPLATE * size


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity ``(2, 3)`` with ``target ~ s R source + t`` (Umeyama 1991, no reflection).

    ``source``, ``target``: ``(K, 2)`` with ``K >= 2`` points not all equal.
    """
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    mu_s, mu_t = source.mean(0), target.mean(0)
    s0, t0 = source - mu_s, target - mu_t
    var_s = (s0 ** 2).sum() / len(source)
    if var_s <= 0:
        raise AlignError("align: the eye and mouth points coincide")
    covariance = t0.T @ s0 / len(source)  # (2, 2)
    u, d, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])  # a rotation, not a mirror
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(d) @ sign) / var_s
    shift = mu_t - scale * rotation @ mu_s
    return np.hstack([scale * rotation, shift[:, None]])


def align_face(image: np.ndarray, points, size: int = 112, min_eye_distance: float = MIN_EYE_DISTANCE) -> AlignedFace:
    """One face's chip. Raises :class:`AlignError` for a face too small or with unusable keypoints.

    Parameters
    ----------
    image : (H, W) or (H, W, C) photo, any dtype ``cv2.warpAffine`` takes (uint8, uint16, float32)
    points : (68, 2) keypoints in the photo's pixels
    size : side of the square chip, at least 16
    min_eye_distance : smallest distance between the eye centres, in photo pixels
    """
    if int(size) != size or size < 16:
        raise ValueError(f"align: size must be an integer of at least 16 pixels, got {size}")
    anchors = anchor_points(points)
    if not np.isfinite(anchors).all():
        raise AlignError("align: the eye or mouth keypoints are not finite")
    eye_distance = float(np.linalg.norm(anchors[1] - anchors[0]))
    if eye_distance < min_eye_distance:
        raise AlignError(
            f"face too small to align: its eyes are {eye_distance:.1f} pixels apart, at least"
            f" {min_eye_distance:g} needed"
        )
    matrix = similarity_transform(anchors, template_points(int(size)))
    chip = cv2.warpAffine(image, matrix, (int(size), int(size)), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return AlignedFace(chip, matrix)


def align_faces(image: np.ndarray, faces: Sequence, size: int = 112, min_eye_distance: float = MIN_EYE_DISTANCE) -> list[AlignedFace]:
    """Aligned chips of every face of a photo, in the order of ``faces``.

    ``faces``: ``FaceKeypoints`` (anything with ``.points``), ``(68, 2)`` arrays, or an ``(F, 68, 2)``
    array. A face that cannot be aligned gives ``AlignedFace(None, None, reason)`` and the others are
    still made; a bad ``image`` or ``size`` raises.
    """
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or 0 in image.shape[:2]:
        raise ValueError(f"align_faces: expected an image array (H, W[, C]), got {getattr(image, 'shape', type(image))}")
    out = []
    for face in faces:
        points = getattr(face, "points", face)
        try:
            out.append(align_face(image, points, size, min_eye_distance))
        except AlignError as exc:
            out.append(AlignedFace(None, None, str(exc)))
    return out
