"""Eye aspect ratio and blinks (Soukupova and Cech, "Real-Time Eye Blink Detection using Facial
Landmarks", CVWW 2016).

Each eye has six keypoints p1..p6 (iBUG: 36-41 for the right eye, 42-47 for the left): p1 and p4 the
corners, p2, p3 on the upper lid and p6, p5 below them on the lower lid. The eye aspect ratio

    EAR = (|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|)

is about 0.25-0.35 for an open eye and falls towards 0 when it closes, whatever the face's size and
(roughly) its pose. A blink is the mean EAR of the two eyes staying below a threshold for a few
consecutive frames, then rising again: the paper's simple detector, whose threshold 0.2 and
minimum of 2 frames (at 25-30 frames per second; a blink lasts 100-400 ms) are the defaults here.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

RIGHT_EYE = np.arange(36, 42)  # the person's right eye: on the left of the picture
LEFT_EYE = np.arange(42, 48)
EAR_THRESHOLD = 0.2
MIN_CLOSED_FRAMES = 2


def eye_aspect_ratio(eye) -> np.ndarray:
    """``(..., 6, 2)`` eye points p1..p6 -> ``(...)`` EAR (NaN for an eye whose corners coincide)."""
    eye = np.asarray(eye, dtype=np.float64)
    if eye.shape[-2:] != (6, 2):
        raise ValueError(f"eye_aspect_ratio: expected eye points of shape (..., 6, 2), got {eye.shape}")
    vertical = np.linalg.norm(eye[..., 1, :] - eye[..., 5, :], axis=-1) + np.linalg.norm(eye[..., 2, :] - eye[..., 4, :], axis=-1)
    horizontal = 2.0 * np.linalg.norm(eye[..., 0, :] - eye[..., 3, :], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(horizontal > 0, vertical / np.where(horizontal > 0, horizontal, 1.0), np.nan)


class EyeAspect(NamedTuple):
    """A face's eye aspect ratios (``right``: the person's right eye, points 36-41) and whether each eye
    is open (EAR at or above the threshold)."""

    right: float
    left: float
    right_open: bool
    left_open: bool


def eye_aspects(points, threshold: float = EAR_THRESHOLD) -> EyeAspect:
    """``(68, 2)`` keypoints -> :class:`EyeAspect`."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"eye_aspects: expected 68 keypoints of shape (68, 2), got shape {points.shape}")
    right, left = float(eye_aspect_ratio(points[RIGHT_EYE])), float(eye_aspect_ratio(points[LEFT_EYE]))
    return EyeAspect(right, left, bool(right >= threshold), bool(left >= threshold))


class BlinkCounter:
    """Count blinks in one face's sequence of frames.

    Feed the face's keypoints frame by frame (:meth:`update`); a blink is counted when the mean EAR of
    both eyes, after staying below ``threshold`` for at least ``min_frames`` consecutive frames, rises
    back to ``threshold`` or above. A shorter dip is noise (a jittery lid point), not a blink. A frame
    whose EAR is NaN (collapsed eye corners) counts as open.
    """

    def __init__(self, threshold: float = EAR_THRESHOLD, min_frames: int = MIN_CLOSED_FRAMES):
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"BlinkCounter: threshold must be in (0, 1), got {threshold}")
        if int(min_frames) != min_frames or min_frames < 1:
            raise ValueError(f"BlinkCounter: min_frames must be a positive integer, got {min_frames}")
        self.threshold, self.min_frames = float(threshold), int(min_frames)
        self.blinks = 0
        self.closed_frames = 0  # consecutive frames below the threshold so far

    def update(self, points) -> float:
        """One frame's ``(68, 2)`` keypoints -> the frame's mean EAR; updates :attr:`blinks`."""
        aspects = eye_aspects(points, self.threshold)
        ear = 0.5 * (aspects.right + aspects.left)
        if ear < self.threshold:  # False for NaN
            self.closed_frames += 1
        else:
            if self.closed_frames >= self.min_frames:
                self.blinks += 1
            self.closed_frames = 0
        return ear
