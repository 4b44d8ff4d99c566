"""Eye crops framed from a face's points, the eye network's reads, and the points mapped back.

One face gives two crops, in this order: its right eye (points 36-41, on the left of the picture) as it
is, and its left eye (42-47) mirrored, so that it looks like a right eye. A mirrored left eye's points, in
the right eye's order 36..41, are the left eye's points :data:`LEFT_AS_RIGHT` (``FLIP_PERMUTATION[36:42]``:
outer corner 45 plays 36, inner corner 42 plays 39, ...). Coordinates as :mod:`keypoints.geometry`.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

import tinynet

from ..framing import warp_crop
from ..geometry import FLIP_PERMUTATION, apply_affine, flip_matrix, map_to_original, rotation_scale_about, translation
from ..models import EyeNet

RIGHT_EYE = np.arange(36, 42)
LEFT_AS_RIGHT = FLIP_PERMUTATION[36:42]  # [45, 44, 43, 42, 47, 46]
EYES = np.arange(36, 48)


@dataclasses.dataclass(frozen=True)
class EyeStage:
    """What the eye stage reads (stored in a checkpoint as ``meta.eye_stage``).

    size : crop side in pixels (a multiple of 8, 16..128)
    side : crop side in eye distances (the distance between the two eyes' centres)
    width : channels of the network's first conv (``EyeNet``)
    passes : reads per eye at prediction, each framed from the last (0..4)
    """

    size: int = 48
    side: float = 0.8
    width: int = 16
    passes: int = 2

    def __post_init__(self) -> None:
        for name, value, low, high in (("size", self.size, 16, 128), ("width", self.width, 4, 128),
                                       ("passes", self.passes, 0, 4)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
                raise ValueError(f"eye_stage.{name} must be an integer in [{low}, {high}], got {value!r}")
        if self.size % 8:
            raise ValueError(f"eye_stage.size must be a multiple of 8 (three 2x2 poolings), got {self.size}")
        if isinstance(self.side, bool) or not isinstance(self.side, (int, float)) or not 0.25 <= self.side <= 4.0:
            raise ValueError(f"eye_stage.side must be a number of eye distances in [0.25, 4], got {self.side!r}")

    def to_dict(self) -> dict:
        return {"size": int(self.size), "side": float(self.side), "width": int(self.width), "passes": int(self.passes)}

    @classmethod
    def from_dict(cls, values) -> "EyeStage":
        """Raises ValueError / TypeError naming the field (checkpoints: ``meta.eye_stage``)."""
        if not isinstance(values, dict) or set(values) != {"size", "side", "width", "passes"}:
            raise ValueError(f"eye_stage must be a dict with size, side, width and passes, got {values!r}")
        return cls(**values)


def build_eye_model(stage: EyeStage, rng: np.random.Generator | None = None) -> EyeNet:
    return EyeNet(stage.size, stage.width, rng=rng)


def eye_matrices(points: np.ndarray, stage: EyeStage, shift=None, zoom=None, degrees=None) -> np.ndarray:
    """``(N, 68, 2)`` points -> ``(N, 2, 3, 3)`` maps image pixels -> eye crop pixels (right eye, mirrored left).

    Each eye's centre (the mean of its six points) goes to the crop centre ``((S - 1) / 2, (S - 1) / 2)``,
    the eye distance ``d`` becomes ``S / side`` pixels and the line between the eyes is level. Training's
    framing error, per face and eye: ``shift`` ``(N, 2, 2)`` moves the centre by that many eye distances,
    ``zoom`` ``(N, 2)`` scales the crop's content, ``degrees`` ``(N, 2)`` turns it (counter-clockwise as
    displayed). Faces whose eyes are less than a pixel apart get NaN matrices (:func:`read_eyes` skips them).
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 3 or points.shape[1:] != (68, 2):
        raise ValueError(f"eye_matrices: expected (N, 68, 2) iBUG points, got shape {points.shape}")
    n, size = len(points), stage.size
    centres = np.stack([points[:, 36:42].mean(axis=1), points[:, 42:48].mean(axis=1)], axis=1)  # (N, 2, 2)
    dx, dy = (centres[:, 1] - centres[:, 0]).T
    distance = np.hypot(dx, dy)
    level = -np.degrees(np.arctan2(-dy, dx))  # turns the eye line level (keypoints.framing.eye_angle, undone)
    shift = np.zeros((n, 2, 2)) if shift is None else np.asarray(shift, dtype=np.float64)
    zoom = np.ones((n, 2)) if zoom is None else np.asarray(zoom, dtype=np.float64)
    degrees = np.zeros((n, 2)) if degrees is None else np.asarray(degrees, dtype=np.float64)
    mirror = flip_matrix(size)
    out = np.full((n, 2, 3, 3), np.nan)
    for i in np.flatnonzero(np.isfinite(distance) & (distance >= 1.0)):
        scale = size / (stage.side * distance[i])
        for eye in (0, 1):
            centre = centres[i, eye] + shift[i, eye] * distance[i]
            matrix = (translation((size - 1) / 2, (size - 1) / 2)
                      @ rotation_scale_about(0.0, 0.0, level[i] + degrees[i, eye], scale * zoom[i, eye])
                      @ translation(*-centre))
            out[i, eye] = matrix if eye == 0 else mirror @ matrix
    return out


def eye_crops(images: list, matrices: np.ndarray, size: int) -> np.ndarray:
    """Gray float32 images and their ``(N, 2, 3, 3)`` maps -> crops ``(2N, size, size)`` (right, left, ...)."""
    return np.stack([warp_crop(image, matrix, size) for image, pair in zip(images, matrices) for matrix in pair])


def eye_targets(points: np.ndarray, matrices: np.ndarray, size: int) -> np.ndarray:
    """``(N, 68, 2)`` true points -> ``(2N, 12)`` the network's targets for :func:`eye_crops`' crops."""
    points = np.asarray(points, dtype=np.float64)
    right = apply_affine(points[:, RIGHT_EYE], matrices[:, 0])
    left = apply_affine(points[:, LEFT_AS_RIGHT], matrices[:, 1])
    crop = np.stack([right, left], axis=1).reshape(-1, 12)  # (2N, 12): face by face, right then left
    return ((crop - (size - 1) / 2) / (size / 2)).astype(np.float32)


def eyes_from_outputs(outputs: np.ndarray, matrices: np.ndarray, size: int) -> np.ndarray:
    """The network's ``(2N, 12)`` outputs -> points 36-47 ``(N, 12, 2)`` in image pixels (the inverse of
    :func:`eye_targets`)."""
    crop = (np.asarray(outputs, dtype=np.float64).reshape(-1, 2, 6, 2) * (size / 2)) + (size - 1) / 2
    eyes = np.empty((len(crop), 12, 2))
    eyes[:, RIGHT_EYE - 36] = map_to_original(crop[:, 0], matrices[:, 0])
    eyes[:, LEFT_AS_RIGHT - 36] = map_to_original(crop[:, 1], matrices[:, 1])
    return eyes


def read_eyes(model: EyeNet, stage: EyeStage, images: list, points: np.ndarray, passes: int | None = None,
              batch_size: int = 128) -> np.ndarray:
    """Points ``(N, 68, 2)`` with 36-47 read again by the eye network, ``passes`` times (default
    ``stage.passes``), from the gray float32 ``images`` they are in; the other points are unchanged.

    A face whose eyes are less than a pixel apart keeps its points (there is no eye frame to read).
    """
    points = np.array(points, dtype=np.float64)
    if len(images) != len(points):
        raise ValueError(f"read_eyes: {len(images)} images but {len(points)} faces of points")
    model.eval()
    for _ in range(stage.passes if passes is None else passes):
        matrices = eye_matrices(points, stage)
        faces = np.flatnonzero(np.isfinite(matrices).all(axis=(1, 2, 3)))
        if len(faces) == 0:
            break
        crops = eye_crops([images[i] for i in faces], matrices[faces], stage.size)[:, None]
        with tinynet.no_grad():
            outputs = np.concatenate([model(crops[start : start + batch_size])
                                      for start in range(0, len(crops), batch_size)])
        points[faces, 36:48] = eyes_from_outputs(outputs, matrices[faces], stage.size)
    return points


def eye_nme(points: np.ndarray, true: np.ndarray) -> float:
    """Mean distance of points 36-47 to the true ones over the true outer-eye-corner distance (36-45),
    averaged over faces: the eye stage's own measure."""
    points, true = np.asarray(points, dtype=np.float64), np.asarray(true, dtype=np.float64)
    errors = np.linalg.norm(points[:, EYES] - true[:, EYES], axis=2).mean(axis=1)
    return float(np.mean(errors / np.linalg.norm(true[:, 36] - true[:, 45], axis=1)))
