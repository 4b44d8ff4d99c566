"""Close-up crops framed from a face's points, a close-up network's reads, and the points mapped back.

A :class:`Region` says which points a close-up stage moves and which crops of one face it reads: each crop is
centred on the mean of its points and lists them in the network's output order; a mirrored crop is flipped
left-right, so one network reads both sides (a left eye as a right eye) or reads a face and its mirror image
(the mouth). Every point of the region is the mean of the reads that cover it: the eyes are covered once each
(:data:`EYES`: the right eye 36-41 as it is, the left eye mirrored, whose points in a right eye's order are
``FLIP_PERMUTATION[36:42]`` = 45, 44, 43, 42, 47, 46), the mouth twice (:data:`MOUTH`: as it is and mirrored,
flip-averaged). Every crop is ``side`` eye distances wide (the distance between the two eyes' centres) and
turned so that the eyes are level. Coordinates as :mod:`keypoints.geometry`.
"""
from __future__ import annotations

import dataclasses

import numpy as np

import tinynet

from ..framing import warp_crop
from ..geometry import FLIP_PERMUTATION, apply_affine, flip_matrix, map_to_original, rotation_scale_about, translation
from ..models import CloseupNet


@dataclasses.dataclass(frozen=True)
class Region:
    """A part of the 68 iBUG points that a close-up stage reads.

    points : the indices it moves; crops : ``((indices in output order, mirrored), ...)``, one read each;
    hidden : width of the network's hidden linear layer.
    """

    name: str
    points: tuple
    crops: tuple
    hidden: int

    @property
    def outputs(self) -> int:
        """P, the points one read gives."""
        return len(self.crops[0][0])


EYES = Region("eyes", tuple(range(36, 48)), ((tuple(range(36, 42)), False), (tuple(FLIP_PERMUTATION[36:42]), True)), 128)
MOUTH = Region("mouth", tuple(range(48, 68)), ((tuple(range(48, 68)), False), (tuple(FLIP_PERMUTATION[48:68]), True)), 256)
#: the regions, in the order prediction reads them
REGIONS = {region.name: region for region in (EYES, MOUTH)}


@dataclasses.dataclass(frozen=True)
class CloseupStage:
    """How one region is read (a checkpoint's ``meta.closeup[name]``).

    size : crop side in pixels (a multiple of 8, 16..128)
    side : crop side in eye distances
    width : channels of the network's first conv (:class:`keypoints.models.CloseupNet`)
    passes : reads at prediction, each framed from the last (0..4)
    """

    size: int = 48
    side: float = 0.8
    width: int = 16
    passes: int = 2

    def __post_init__(self) -> None:
        for name, value, low, high in (("size", self.size, 16, 128), ("width", self.width, 4, 128),
                                       ("passes", self.passes, 0, 4)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
        if self.size % 8:
            raise ValueError(f"size must be a multiple of 8 (three 2x2 poolings), got {self.size}")
        if isinstance(self.side, bool) or not isinstance(self.side, (int, float)) or not 0.25 <= self.side <= 4.0:
            raise ValueError(f"side must be a number of eye distances in [0.25, 4], got {self.side!r}")

    def to_dict(self) -> dict:
        return {"size": int(self.size), "side": float(self.side), "width": int(self.width), "passes": int(self.passes)}

    @classmethod
    def from_dict(cls, values) -> "CloseupStage":
        """Raises ValueError naming the field."""
        if not isinstance(values, dict) or set(values) != {"size", "side", "width", "passes"}:
            raise ValueError(f"must be a dict with size, side, width and passes, got {values!r}")
        return cls(**values)


#: each region's stage in the default recipe: an eye crop 0.8 eye distances wide, the mouth's 1.4
DEFAULT_STAGES = {"eyes": CloseupStage(48, 0.8, 16, 2), "mouth": CloseupStage(48, 1.4, 16, 2)}


def checked_closeup(values) -> dict[str, CloseupStage]:
    """A checkpoint's ``meta.closeup`` (``{region name: stage dict}``) as stages; ValueError naming the field."""
    if not isinstance(values, dict) or not set(values) <= set(REGIONS):
        raise ValueError(f"closeup must be a dict of stages named among {sorted(REGIONS)}, got {values!r}")
    stages = {}
    for name in REGIONS:
        if name in values:
            try:
                stages[name] = CloseupStage.from_dict(values[name])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"closeup.{name}: {exc}") from None
    return stages


def build_closeup_model(region: Region, stage: CloseupStage, rng: np.random.Generator | None = None) -> CloseupNet:
    return CloseupNet(stage.size, stage.width, region.outputs, region.hidden, rng=rng)


def crop_matrices(points: np.ndarray, region: Region, stage: CloseupStage, shift=None, zoom=None, degrees=None) -> np.ndarray:
    """``(N, 68, 2)`` points -> ``(N, C, 3, 3)`` maps image pixels -> crop pixels, one per crop of ``region``.

    Crop ``c``'s centre (the mean of its points) goes to ``((S - 1) / 2, (S - 1) / 2)``, the eye distance ``d``
    becomes ``S / side`` pixels and the line between the eyes' centres is level; a mirrored crop is then
    flipped. Training's framing error, per face and crop: ``shift`` ``(N, C, 2)`` moves the centre by that many
    eye distances, ``zoom`` ``(N, C)`` scales the content, ``degrees`` ``(N, C)`` turns it (counter-clockwise as
    displayed). Faces whose eyes are less than a pixel apart get NaN matrices (:func:`read_region` skips them).
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 3 or points.shape[1:] != (68, 2):
        raise ValueError(f"crop_matrices: expected (N, 68, 2) iBUG points, got shape {points.shape}")
    n, count, size = len(points), len(region.crops), stage.size
    dx, dy = (points[:, 42:48].mean(axis=1) - points[:, 36:42].mean(axis=1)).T
    distance = np.hypot(dx, dy)
    level = -np.degrees(np.arctan2(-dy, dx))  # turns the eye line level (keypoints.framing.eye_angle, undone)
    shift = np.zeros((n, count, 2)) if shift is None else np.asarray(shift, dtype=np.float64)
    zoom = np.ones((n, count)) if zoom is None else np.asarray(zoom, dtype=np.float64)
    degrees = np.zeros((n, count)) if degrees is None else np.asarray(degrees, dtype=np.float64)
    valid = np.isfinite(distance) & (distance >= 1.0)
    distance = np.where(valid, distance, 1.0)[:, None]  # (N, 1); the faces without a frame get NaN below
    centres = np.stack([points[:, list(indices)].mean(axis=1) for indices, _ in region.crops], axis=1)  # (N, C, 2)
    centres = centres + shift * distance[..., None]
    half = (size - 1) / 2
    matrices = (translation(half, half)
                @ rotation_scale_about(0.0, 0.0, level[:, None] + degrees, size / (stage.side * distance) * zoom)
                @ translation(-centres[..., 0], -centres[..., 1]))  # (N, C, 3, 3)
    mirrored = np.array([flipped for _, flipped in region.crops])
    matrices[:, mirrored] = flip_matrix(size) @ matrices[:, mirrored]
    matrices[~valid] = np.nan
    return matrices


def region_crops(images: list, matrices: np.ndarray, size: int) -> np.ndarray:
    """Gray float32 images and their ``(N, C, 3, 3)`` maps -> crops ``(N C, size, size)``, face by face."""
    return np.stack([warp_crop(image, matrix, size) for image, row in zip(images, matrices) for matrix in row])


def region_targets(points: np.ndarray, matrices: np.ndarray, region: Region, size: int) -> np.ndarray:
    """``(N, 68, 2)`` true points -> ``(N C, 2P)`` the network's targets for :func:`region_crops`' crops."""
    points = np.asarray(points, dtype=np.float64)
    crop = np.stack([apply_affine(points[:, list(indices)], matrices[:, c]) for c, (indices, _) in enumerate(region.crops)],
                    axis=1)  # (N, C, P, 2)
    return ((crop.reshape(-1, 2 * region.outputs) - (size - 1) / 2) / (size / 2)).astype(np.float32)


def points_from_outputs(outputs: np.ndarray, matrices: np.ndarray, region: Region, size: int) -> np.ndarray:
    """The network's ``(N C, 2P)`` outputs -> the region's points ``(N, len(region.points), 2)`` in image
    pixels: each crop's reads mapped back (the inverse of :func:`region_targets`), averaged where crops overlap."""
    crop = np.asarray(outputs, dtype=np.float64).reshape(len(matrices), len(region.crops), -1, 2) * (size / 2) + (size - 1) / 2
    image = map_to_original(crop, matrices)  # (N, C, P, 2): every crop's points in image pixels at once
    total, count = np.zeros((len(matrices), 68, 2)), np.zeros(68)
    for c, (indices, _) in enumerate(region.crops):
        total[:, list(indices)] += image[:, c]
        count[list(indices)] += 1
    return total[:, list(region.points)] / count[list(region.points), None]


def read_region(model: CloseupNet, region: Region, stage: CloseupStage, images: list, points: np.ndarray,
                passes: int | None = None, batch_size: int = 128) -> np.ndarray:
    """Points ``(N, 68, 2)`` with ``region``'s read again by its network, ``passes`` times (default
    ``stage.passes``), from the gray float32 ``images`` they are in; the other points are unchanged. A face
    whose eyes are less than a pixel apart keeps its points (there is no frame to read)."""
    points = np.array(points, dtype=np.float64)
    if len(images) != len(points):
        raise ValueError(f"read_region: {len(images)} images but {len(points)} faces of points")
    model.eval()
    for _ in range(stage.passes if passes is None else passes):
        matrices = crop_matrices(points, region, stage)
        faces = np.flatnonzero(np.isfinite(matrices).all(axis=(1, 2, 3)))
        if len(faces) == 0:
            break
        crops = region_crops([images[i] for i in faces], matrices[faces], stage.size)[:, None]
        with tinynet.no_grad():
            outputs = np.concatenate([model(crops[start : start + batch_size]) for start in range(0, len(crops), batch_size)])
        points[np.ix_(faces, region.points)] = points_from_outputs(outputs, matrices[faces], region, stage.size)
    return points


def region_nme(points: np.ndarray, true: np.ndarray, region: Region) -> float:
    """Mean distance of the region's points to the true ones over the true outer-eye-corner distance (36-45),
    averaged over faces: a close-up stage's own measure."""
    points, true = np.asarray(points, dtype=np.float64), np.asarray(true, dtype=np.float64)
    errors = np.linalg.norm(points[:, list(region.points)] - true[:, list(region.points)], axis=2).mean(axis=1)
    return float(np.mean(errors / np.linalg.norm(true[:, 36] - true[:, 45], axis=1)))
