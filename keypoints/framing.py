"""Framing a face from its keypoints: the canonical crop that the refinement pass reads.

The network's first pass reads a face framed by whatever is at hand: the data set's centre crop, or a crop
around a detector's box. Such framings vary (in the training images the points' centroid moves by about 6 %
of the crop side and the face's size by about 15 %), and a regressor that reads a badly framed face pulls its
answer towards the average framing. The refinement pass removes that variation: it frames the face again
*from the points of the previous pass*, so that

    the points' centroid lands on ``framing.centroid * S``  and
    their RMS distance to the centroid (their *spread*) becomes ``framing.spread * S``,

which is where the centroid and spread of an average training face sit in its centre crop
(:func:`measure_point_framing`). With ``upright`` the frame also turns the face so that the line through
its eye centres (the means of points 36-41 and 42-47) is horizontal: the network then never has to read
a tilted face in the refinement pass. Training shows the network such crops too, framed from the *true*
points with a small random error (``framed_sample``), so the second pass sees what it was trained on.
A checkpoint may also name *test frames* (:func:`checked_test_frames`): the last refinement pass then reads
the face in each of these jittered frames around the canonical one and averages what it finds there.

All matrices map source pixels to crop pixels (3x3, float64); pixel centres sit at integer coordinates,
as in :mod:`keypoints.geometry`.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .geometry import (
    FLIP_PERMUTATION,
    apply_affine,
    center_crop_offset,
    flip_keypoints,
    flip_matrix,
    rotation_scale_about,
    translation,
)
from .crops import flip_probability, jitter_factor, photometric_jitter


@dataclass(frozen=True)
class PointFraming:
    """Where the points of a canonically framed face sit, as fractions of the crop side ``S``.

    centroid : (x, y) of the points' mean
    spread : RMS distance of the points to their centroid
    upright : also turn the face so that its eyes are level (68 points: eyes 36-41 and 42-47)
    """

    centroid: tuple[float, float]
    spread: float
    upright: bool = False

    def __post_init__(self) -> None:
        cx, cy = (float(v) for v in self.centroid)
        spread = float(self.spread)
        if not (0.0 < cx < 1.0 and 0.0 < cy < 1.0):
            raise ValueError(f"framing.centroid must lie inside the crop, (0, 1) x (0, 1), got {self.centroid}")
        if not 0.0 < spread < 1.0:
            raise ValueError(f"framing.spread must be in (0, 1) of the crop side, got {self.spread}")
        if not isinstance(self.upright, (bool, np.bool_)):
            raise ValueError(f"framing.upright must be a bool, got {self.upright!r}")
        object.__setattr__(self, "centroid", (cx, cy))
        object.__setattr__(self, "spread", spread)
        object.__setattr__(self, "upright", bool(self.upright))

    def to_dict(self) -> dict:
        return {"centroid": list(self.centroid), "spread": self.spread, "upright": self.upright}

    @classmethod
    def from_dict(cls, values) -> "PointFraming":
        if not isinstance(values, dict) or not {"centroid", "spread"} <= set(values) <= {"centroid", "spread", "upright"}:
            raise ValueError(f"framing: expected a dict with 'centroid', 'spread' (and 'upright'), got {values!r}")
        centroid = values["centroid"]
        if not isinstance(centroid, (list, tuple)) or len(centroid) != 2:
            raise ValueError(f"framing.centroid: expected two numbers (x, y), got {centroid!r}")
        return cls(tuple(float(v) for v in centroid), float(values["spread"]), values.get("upright", False))


def point_spread(points: np.ndarray) -> np.ndarray:
    """``(..., K, 2) -> (...)``: RMS distance of the points to their centroid (float64)."""
    points = np.asarray(points, dtype=np.float64)
    centred = points - points.mean(axis=-2, keepdims=True)
    return np.sqrt((centred**2).sum(axis=-1).mean(axis=-1))


def measure_point_framing(images: list, keypoints: np.ndarray, size: int) -> PointFraming:
    """The canonical framing: medians over faces of the centroid and spread of the points in each face's
    centre ``size`` crop (the framing of the data set), as fractions of ``size``.

    ``images``: rescaled faces (only their shapes are read), ``keypoints`` ``(N, K, 2)`` in their pixels.
    """
    if len(images) == 0 or len(images) != len(keypoints):
        raise ValueError(f"measure_point_framing: need one keypoint set per image, got {len(images)} and {len(keypoints)}")
    offsets = np.array([center_crop_offset(im.shape[0], im.shape[1], size, size) for im in images], np.float64)
    points = np.asarray(keypoints, np.float64) - offsets[:, None, ::-1]  # (top, left) -> subtract (x=left, y=top)
    centroids = points.mean(axis=1) / size
    spreads = point_spread(points) / size
    return PointFraming(tuple(np.median(centroids, axis=0)), float(np.median(spreads)))


def eye_angle(points: np.ndarray) -> float:
    """Degrees the face is turned in the picture: the angle of the line from the right eye's centre (points
    36-41, left in the picture) to the left eye's (42-47), counter-clockwise as displayed (y points down)."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"eye_angle: expected the 68 iBUG points, got shape {points.shape}")
    dx, dy = points[42:48].mean(axis=0) - points[36:42].mean(axis=0)
    return float(np.degrees(np.arctan2(-dy, dx)))


def frame_matrix(
    points: np.ndarray,
    size: int,
    framing: PointFraming,
    shift: tuple[float, float] = (0.0, 0.0),
    zoom: float = 1.0,
    degrees: float = 0.0,
) -> np.ndarray:
    """``(K, 2)`` points -> the 3x3 matrix (source pixels -> crop pixels) framing them canonically.

    The points' centroid goes to ``framing.centroid * size + shift * size`` and their spread becomes
    ``framing.spread * size * zoom``; ``degrees`` turns the face about its centroid (as
    :func:`keypoints.geometry.rotation_scale_about`), after turning it upright first when
    ``framing.upright``. ``shift``, ``zoom`` and ``degrees`` are the training jitter; the refinement pass
    uses none, except in the test frames a checkpoint may name (:func:`frame_jitter`).
    """
    points = np.asarray(points, dtype=np.float64)
    spread = float(point_spread(points))
    if not np.isfinite(points).all() or spread <= 0.0:
        raise ValueError("frame_matrix: the points must be finite and not all equal")
    centre = points.mean(axis=0)
    if framing.upright:
        degrees = degrees - eye_angle(points)
    scale = framing.spread * size * zoom / spread
    target = np.asarray(framing.centroid) * size + np.asarray(shift, dtype=np.float64) * size
    return translation(*target) @ rotation_scale_about(0.0, 0.0, degrees, scale) @ translation(*-centre)


def frame_jitter(
    size: int, framing: PointFraming, shift: tuple[float, float] = (0.0, 0.0), zoom: float = 1.0, degrees: float = 0.0
) -> np.ndarray:
    """The 3x3 map from the canonical crop's pixels to those of the crop framed with this jitter.

    For any points, ``frame_matrix(points, size, framing, shift, zoom, degrees)`` equals
    ``frame_jitter(size, framing, shift, zoom, degrees) @ frame_matrix(points, size, framing)`` (up to
    rounding): the move, turn and zoom about the canonical centroid that training's ``framed_sample`` draws.
    """
    target = np.asarray(framing.centroid, dtype=np.float64) * size
    moved = target + np.asarray(shift, dtype=np.float64) * size
    return translation(*moved) @ rotation_scale_about(0.0, 0.0, degrees, zoom) @ translation(*-target)


def mirror_frame(size: int, framing: PointFraming) -> np.ndarray:
    """The 3x3 map from a canonical crop's pixels to those of the mirrored face's canonical crop: ``x' = 2 c S - x``
    (``c = framing.centroid[0]``), the mirror about the vertical line through the canonical centroid. Its own inverse.

    Training frames a mirrored face from its mirrored points (:func:`framed_sample`), so their centroid lands at
    ``c S`` like any face's. Flipping the crop instead (``x' = S - 1 - x``) would put it at ``S - 1 - c S``:
    ``2 c S - (S - 1)`` pixels to the left (1.1 at S = 96 with the data set's framing), and the network, which
    leans on where faces sit, reads such a face about a pixel off (measured on the shipped model, one refinement
    pass, test faces: the flipped-crop read NME 7.22 % against the plain read's 6.04 %). For any points,
    ``mirror_frame(S, f) @ frame_matrix(p, S, f)`` is ``frame_matrix(p', S, f) @ flip_matrix(W)`` with ``p'`` the
    points mirrored in an image of width ``W`` (up to rounding), the frame training gives the mirrored face.
    """
    axis = 2.0 * float(framing.centroid[0]) * size
    return np.array([[-1.0, 0.0, axis], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def frame_change(old: np.ndarray, new: np.ndarray, size: int) -> np.ndarray:
    """How far re-framing moves a face: ``(N, 3, 3)`` old and new frames (source -> crop pixels) of ``size``
    crops -> ``(N,)`` the farthest any corner of the crop moves under ``new @ inv(old)`` (the map from the old
    crop's pixels to the new crop's), over ``size`` (0: the same crop; 0.1: a corner moves a tenth of the side).

    An affine map moves no point of the square farther than its farthest corner, so this one number bounds how
    differently the new crop shows the face, whatever its mix of shift, zoom and turn.
    """
    moved = np.asarray(new, dtype=np.float64) @ np.linalg.inv(np.asarray(old, dtype=np.float64))  # (N, 3, 3)
    corners = np.array([[0.0, 0.0, 1.0], [size, 0.0, 1.0], [0.0, size, 1.0], [size, size, 1.0]]).T  # (3, 4)
    shifts = (moved @ corners)[:, :2] - corners[:2]  # (N, 2, 4)
    return np.hypot(shifts[:, 0], shifts[:, 1]).max(axis=1) / size


def reads_test_frames(test_frames, refine_passes: int) -> bool:
    """Whether a predictor with these settings reads test frames: they are read in the last refinement pass,
    so only with at least one."""
    return bool(test_frames) and int(refine_passes) >= 1


#: A test frame is ``(shift_x, shift_y, zoom, degrees)`` as in :func:`frame_matrix`; these bounds keep it
#: within a few times the jitter the refinement pass is trained on (frame_shift 0.02, frame_zoom 0.05,
#: degrees 15 in the default recipe).
TEST_FRAME_LIMITS = {"shift": 0.1, "zoom": (0.8, 1.25), "degrees": 30.0}
MAX_TEST_FRAMES = 16


def checked_test_frames(frames) -> tuple[tuple[float, float, float, float], ...]:
    """``[[shift_x, shift_y, zoom, degrees], ...]`` (at most :data:`MAX_TEST_FRAMES`, each within
    :data:`TEST_FRAME_LIMITS`) -> a tuple of float 4-tuples; ``None`` or empty: ``()``. Raises ``ValueError``
    starting with ``test_frames``."""
    if frames is None:
        return ()
    if not isinstance(frames, (list, tuple)) or len(frames) > MAX_TEST_FRAMES:
        raise ValueError(f"test_frames must be a list of at most {MAX_TEST_FRAMES} frames, got {frames!r}")
    checked = []
    for frame in frames:
        if not (isinstance(frame, (list, tuple)) and len(frame) == 4 and all(
                isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
                and np.isfinite(v) for v in frame)):
            raise ValueError(f"test_frames: each frame must be four numbers [shift_x, shift_y, zoom, degrees],"
                             f" got {frame!r}")
        shift_x, shift_y, zoom, degrees = (float(v) for v in frame)
        low, high = TEST_FRAME_LIMITS["zoom"]
        if max(abs(shift_x), abs(shift_y)) > TEST_FRAME_LIMITS["shift"] or not low <= zoom <= high \
                or abs(degrees) > TEST_FRAME_LIMITS["degrees"]:
            raise ValueError(f"test_frames: frame {list(frame)} is outside |shift| <= {TEST_FRAME_LIMITS['shift']},"
                             f" zoom in [{low}, {high}], |degrees| <= {TEST_FRAME_LIMITS['degrees']}")
        checked.append((shift_x, shift_y, zoom, degrees))
    return tuple(checked)


def warp_crop(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The ``(size, size)`` float32 crop ``matrix`` describes (bilinear, border replicated, as training)."""
    return cv2.warpAffine(
        image, np.asarray(matrix, np.float64)[:2], (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    ).astype(np.float32, copy=False)


def framed_sample(
    image: np.ndarray,
    keypoints: np.ndarray,
    size: int,
    rng: np.random.Generator,
    framing: PointFraming,
    *,
    flip: bool | float = False,
    degrees: float = 0.0,
    shift: float = 0.0,
    zoom: float = 0.0,
    brightness: float = 0.0,
    contrast: float = 0.0,
    flip_permutation: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A training crop framed from the true points with a random framing error (what refinement reads).

    Draws, in order: flip (``True`` is probability 0.5, a float the probability), angle ``U(-degrees, degrees)``, shift ``N(0, shift)``
    per axis (a fraction of ``size``), zoom ``exp(N(0, zoom))``, then brightness/contrast as
    ``keypoints.crops.crop_sample``. A flipped sample is framed from the mirrored points, so it is framed canonically too.

    Returns ``crop (size, size) float32`` and ``keypoints (K, 2) float32`` in crop pixels (left/right
    swapped when flipped, with ``flip_permutation``: ``(K,)``, None for the iBUG 68-point one).
    """
    keypoints = np.asarray(keypoints)
    p_flip = flip_probability(flip)
    flipped = p_flip >= 1.0 or (p_flip > 0.0 and bool(rng.random() < p_flip))
    angle = float(rng.uniform(-degrees, degrees)) if degrees > 0 else 0.0
    offset = rng.normal(0.0, shift, size=2) if shift > 0 else np.zeros(2)
    factor = float(np.exp(rng.normal(0.0, zoom))) if zoom > 0 else 1.0
    mirror = flip_matrix(image.shape[1]) if flipped else np.eye(3)
    source = keypoints.astype(np.float64)
    if flipped:
        source = flip_keypoints(source, image.shape[1], flip_permutation)  # the mirrored face's own left and right (upright framing reads the eyes)
    matrix = frame_matrix(source, size, framing, shift=offset, zoom=factor, degrees=angle) @ mirror
    crop = warp_crop(image, matrix, size)
    moved = apply_affine(keypoints.astype(np.float32, copy=False), matrix)
    if flipped:
        moved = moved[FLIP_PERMUTATION if flip_permutation is None else flip_permutation]
    if brightness > 0 or contrast > 0:
        crop = photometric_jitter(crop, jitter_factor(rng, brightness), jitter_factor(rng, contrast))
    return crop, moved


#: The data set's framing, measured on all 3462 training faces (``measure_point_framing`` on
#: ``prepare_faces(FacialKeypointsDataset(KEYPOINTS_DATA, "training"), S)``): centroid (0.5006, 0.5401) and
#: spread 0.1774 at S = 96, (0.5078, 0.5441) and 0.1778 at S = 224. Training measures its own training faces
#: and stores the result in the checkpoint; this is the default for checkpoints written without data.
DATASET_FRAMING = PointFraming((0.5006, 0.5401), 0.1774)
