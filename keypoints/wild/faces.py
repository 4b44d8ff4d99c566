"""Keypoints for every face of a photo: detect, frame each face as in training, predict in one batch.

``keypoints.predict_faces(predictor, photo)`` is the one entry point: it runs a detector
(:mod:`~keypoints.wild.detection`), frames and crops each box (:mod:`~keypoints.wild.face_crop`), sends all
crops through the :class:`~keypoints.predictor.Predictor` at once and maps the points back to photo pixels.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..image import check_image, to_gray_float32
from .detection import DEFAULT_DETECTOR, DEFAULT_MAX_SIDE, DEFAULT_MIN_SIZE, detect_faces
from .face_crop import crop_face, crop_to_photo, pad_box


class FaceKeypoints(NamedTuple):
    """One face of a photo: ``box`` ``(4,)`` int ``(x, y, w, h)`` from the detector, ``points``
    ``(68, 2)`` float64 ``(x, y)`` in the photo's pixels and ``confidence`` in [0, 1]
    (:mod:`keypoints.wild.confidence`; None without the reads it compares, test frames or flip averaging, or
    for a checkpoint without a confidence calibration)."""

    box: np.ndarray
    points: np.ndarray
    confidence: float | None = None



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
    if calibration is not None:
        from .confidence import prediction_confidence

        found = prediction_confidence(prediction, getattr(predictor, "confidence_signal", "flip"), calibration)
        confidences = confidences if found is None else [float(c) for c in found]
    return [
        FaceKeypoints(box.copy(), crop_to_photo(points, rect), confidence)
        for box, rect, points, confidence in zip(boxes, rects, prediction.points, confidences)
    ]
