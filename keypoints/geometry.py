"""Where keypoints go when the pixels move: every affine builder, the one horizontal flip, normalisation.

Coordinates: pixel centres sit at integer coordinates, so pixel ``(row y, column x)`` covers
``[x - 0.5, x + 0.5) x [y - 0.5, y + 0.5)``. This is the convention ``cv2.resize`` and ``cv2.warpAffine``
use. Every map here is a 3x3 float64 matrix ``A`` acting on ``(x, y, 1)``:

=========================  ===================================================================
:func:`translation`        ``x' = x + tx``
:func:`flip_matrix`        ``x' = W - 1 - x`` (column ``x`` and column ``W - 1 - x`` trade places)
:func:`rotation_scale_about` rotation and zoom about a point (``cv2.getRotationMatrix2D``)
:func:`rescale_matrix`     a resize ``(H, W) -> (H', W')``: ``x' = (x + 0.5) W'/W - 0.5``
:func:`normalization_matrix` pixels of an ``S``-crop -> the network's targets ``(x - 100 S/224) / (50 S/224)``
=========================  ===================================================================

The horizontal flip of a face is written once, here: the image (:func:`flip_image`), the keypoints
(:func:`flip_keypoints`: ``x' = W - 1 - x`` and the left/right landmark indices swapped with
:data:`FLIP_PERMUTATION`, or the permutation of another point layout, :func:`checked_flip_permutation`)
and the matrix (:func:`flip_matrix`). Training augmentation
(``keypoints.transforms``, ``keypoints.crops.crop_sample``, ``keypoints.framing.framed_sample``), evaluation
and the predictor's flip averaging all use them.
"""
from __future__ import annotations

import numpy as np


NUM_KEYPOINTS = 68  # the iBUG layout of the shipped model
#: at most this many points per face in a model of your own (the largest common layouts have a few hundred)
MAX_POINTS = 1000

# The iBUG 68-point mirror permutation: after a horizontal flip, the point that used to be index
# FLIP_PERMUTATION[i] is the one that now plays the role of index i (the old right eye corner is the new
# left one). Indices: jaw 0-16, brows 17-21 | 22-26, nose bridge 27-30, nostrils 31-35, eyes 36-41 | 42-47,
# outer lips 48-59, inner lips 60-67. The permutation is an involution (applying it twice is the identity).
FLIP_PERMUTATION = np.array(
    [16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]  # jaw: 0 <-> 16, 8 (chin) fixed
    + [26, 25, 24, 23, 22, 21, 20, 19, 18, 17]  # brows: 17 <-> 26, ..., 21 <-> 22
    + [27, 28, 29, 30]  # nose bridge: on the symmetry axis
    + [35, 34, 33, 32, 31]  # nostrils: 31 <-> 35, 33 fixed
    + [45, 44, 43, 42, 47, 46]  # right eye (36-41) <- left eye: 36 <-> 45 (outer corners), 39 <-> 42 (inner)
    + [39, 38, 37, 36, 41, 40]  # left eye (42-47) <- right eye: 40 <-> 47, 41 <-> 46 (lower lids)
    + [54, 53, 52, 51, 50, 49, 48]  # upper outer lip: 48 <-> 54 (corners), 51 fixed
    + [59, 58, 57, 56, 55]  # lower outer lip: 55 <-> 59, 57 fixed
    + [64, 63, 62, 61, 60]  # upper inner lip: 60 <-> 64, 62 fixed
    + [67, 66, 65],  # lower inner lip: 65 <-> 67, 66 fixed
    dtype=np.intp,
)


def checked_flip_permutation(permutation, num_points: int, where: str = "flip permutation") -> np.ndarray:
    """``permutation`` as a ``(K,)`` intp array if it is a mirror permutation of ``K = num_points`` points.

    A mirror permutation says, for each index ``i``, which point plays the role of ``i`` on the mirrored face
    (as :data:`FLIP_PERMUTATION`). It must hold each of ``0 .. K-1`` exactly once and be its own inverse
    (``p[p[i]] == i``: mirroring twice gives the face back). Raises ``ValueError`` starting with ``where``
    and saying what was expected and what came.
    """
    values = np.asarray(permutation)
    if values.ndim != 1 or (values.size and values.dtype.kind not in "iu"):
        raise ValueError(f"{where}: expected a list of {num_points} integer indices, got {str(permutation)[:200]}")
    if len(values) != num_points:
        raise ValueError(f"{where}: expected {num_points} indices (one per point), got {len(values)}")
    values = values.astype(np.intp)
    if sorted(values.tolist()) != list(range(num_points)):
        missing = sorted(set(range(num_points)) - set(values.tolist()))
        raise ValueError(f"{where}: expected each index 0..{num_points - 1} exactly once; missing {missing[:10]}")
    broken = np.flatnonzero(values[values] != np.arange(num_points))
    if broken.size:
        i = int(broken[0])
        raise ValueError(
            f"{where}: not its own inverse: point {i} mirrors to {values[i]}, which mirrors to {values[values[i]]}"
            f" (expected {i}; a mirror swaps pairs of points and keeps points on the axis)"
        )
    return values


def default_flip_permutation(num_points: int) -> np.ndarray | None:
    """The mirror permutation used when none is given: the iBUG one for 68 points, else None (no flip)."""
    return FLIP_PERMUTATION if num_points == NUM_KEYPOINTS else None


# ----------------------------------------------------------------------------------------------------
# The horizontal flip
# ----------------------------------------------------------------------------------------------------


def flip_matrix(width: int) -> np.ndarray:
    """``x' = W - 1 - x``: column ``x`` and column ``W - 1 - x`` trade places. ``(3, 3)`` float64."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def flip_image(image: np.ndarray, batched: bool = False) -> np.ndarray:
    """Mirror an image left-right (a column reversal, exact): ``(H, W)`` or ``(H, W, C)``, or with
    ``batched`` a stack ``(N, H, W)``. Returns a fresh C-contiguous array of the same dtype."""
    image = np.asarray(image)
    return np.ascontiguousarray(image[:, :, ::-1] if batched else image[:, ::-1])


def flip_keypoints(points: np.ndarray, width: int, permutation: np.ndarray | None = None) -> np.ndarray:
    """The ``K`` points of a face mirrored in an image of width ``W``: ``(..., K, 2) -> (..., K, 2)``.

    ``x' = W - 1 - x`` and the points are re-indexed with ``permutation`` (``(K,)``, a mirror permutation
    as :func:`checked_flip_permutation` accepts; None: :data:`FLIP_PERMUTATION`, ``K = 68``): point ``i`` of
    the result is point ``permutation[i]`` of the input, moved, so the mirrored face's right eye is again
    indices 36-41. Its own inverse (the permutation is an involution): flipping the points a network found
    on a mirrored face gives them back on the face. Computed in ``points``' float dtype (exact:
    ``W - 1 - x`` is one rounding).
    """
    points = np.asarray(points)
    permutation = FLIP_PERMUTATION if permutation is None else permutation
    if points.ndim < 2 or points.shape[-2:] != (len(permutation), 2):
        raise ValueError(f"flip_keypoints: expected points of shape (..., {len(permutation)}, 2), got {points.shape}")
    mirrored = points[..., permutation, :]  # a copy (fancy indexing)
    mirrored[..., 0] = (width - 1) - mirrored[..., 0]
    return mirrored


# ----------------------------------------------------------------------------------------------------
# Keypoint normalisation
# ----------------------------------------------------------------------------------------------------


def _normalization(size: float) -> tuple[float, float]:
    """``(centre, half_range)`` of the keypoint normalisation for a square image of side ``size``."""
    if size <= 0:
        raise ValueError(f"keypoint normalisation: size must be positive, got {size}")
    return 100.0 * size / 224.0, 50.0 * size / 224.0


def normalize_keypoints(points: np.ndarray, size: float) -> np.ndarray:
    """Pixels -> the network's target range: ``q = (p - 100 S/224) / (50 S/224)``.

    At ``S = 224`` this is upstream's ``(p - 100) / 50``; for other sizes the same fraction of the image
    maps to the same value, so a face that fills a 96-pixel crop has targets in roughly ``[-2, 2]`` as it
    would at 224. Computed in float64, returned in ``points``' float dtype (float32 by default).
    """
    points = np.asarray(points)
    centre, half = _normalization(size)
    out = (points.astype(np.float64) - centre) / half
    return out.astype(points.dtype if points.dtype in (np.float32, np.float64) else np.float32)


def denormalize_keypoints(q: np.ndarray, size: float) -> np.ndarray:
    """The exact inverse of :func:`normalize_keypoints`: ``p = q * 50 S/224 + 100 S/224``."""
    q = np.asarray(q)
    centre, half = _normalization(size)
    out = q.astype(np.float64) * half + centre
    return out.astype(q.dtype if q.dtype in (np.float32, np.float64) else np.float32)


def normalization_matrix(size: float) -> np.ndarray:
    """The ``(3, 3)`` map of :func:`normalize_keypoints` (pixels of an ``S``-crop -> normalised)."""
    centre, half = _normalization(size)
    return np.array([[1.0 / half, 0.0, -centre / half], [0.0, 1.0 / half, -centre / half], [0.0, 0.0, 1.0]])


# ----------------------------------------------------------------------------------------------------
# Affine builders and their application
# ----------------------------------------------------------------------------------------------------


def as3x3(affine: np.ndarray) -> np.ndarray:
    """``(..., 2, 3)`` or ``(..., 3, 3)`` -> ``(..., 3, 3)`` float64 (a ``[0, 0, 1]`` row appended)."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.ndim < 2 or affine.shape[-1] != 3 or affine.shape[-2] not in (2, 3):
        raise ValueError(f"expected affine matrices of shape (..., 2, 3) or (..., 3, 3), got {affine.shape}")
    if affine.shape[-2] == 3:
        return affine
    bottom = np.broadcast_to(np.array([0.0, 0.0, 1.0]), affine.shape[:-2] + (1, 3))
    return np.concatenate([affine, bottom], axis=-2)


def apply_affine(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``p' = A[:2, :2] p + A[:2, 2]`` for points ``(..., K, 2)`` and matrices ``(..., 2|3, 3)`` (broadcast).

    Computed in float64; returned in ``points``' float dtype.
    """
    points = np.asarray(points)
    if points.ndim < 1 or points.shape[-1] != 2:
        raise ValueError(f"apply_affine: expected points of shape (..., K, 2), got {points.shape}")
    a = as3x3(affine)
    p = points.astype(np.float64)
    out = np.matmul(p, np.swapaxes(a[..., :2, :2], -1, -2)) + a[..., None, :2, 2]
    return out.astype(points.dtype if points.dtype in (np.float32, np.float64) else np.float32)


def map_to_original(points: np.ndarray, affine: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """Map keypoints from a transformed sample back to the original image's pixels.

    Parameters
    ----------
    points : (..., K, 2)
        Keypoints in the transformed sample's coordinates (pixels of the crop, or normalised values when
        ``Normalize`` ran: its mapping is part of ``affine`` too).
    affine : (..., 3, 3) or (..., 2, 3)
        ``sample["affine"]``: original pixels -> current coordinates. Its exact inverse is applied.
    order : (K,) int, optional
        ``sample["order"]`` after a horizontal flip: point ``j`` of the transformed sample is point
        ``order[j]`` of the original. The result is put back in the original order.

    Returns
    -------
    (..., K, 2) in the original image's pixel coordinates, in ``points``' float dtype.
    """
    inverse = np.linalg.inv(as3x3(affine))
    out = apply_affine(points, inverse)
    if order is not None:
        restored = np.empty_like(out)
        restored[..., np.asarray(order), :] = out
        out = restored
    return out


def translation(tx, ty) -> np.ndarray:
    """``x' = x + tx, y' = y + ty`` as a ``(3, 3)`` float64 matrix; arrays ``tx``, ``ty`` (broadcast together, shape
    ``B``) give ``B + (3, 3)`` matrices."""
    if isinstance(tx, int | float) and isinstance(ty, int | float):  # one matrix, the common case: 2.6 against 9 us
        return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])
    tx, ty = np.asarray(tx, dtype=np.float64), np.asarray(ty, dtype=np.float64)
    matrix = np.zeros(np.broadcast_shapes(tx.shape, ty.shape) + (3, 3))
    matrix[..., 0, 0] = matrix[..., 1, 1] = matrix[..., 2, 2] = 1.0
    matrix[..., 0, 2], matrix[..., 1, 2] = tx, ty
    return matrix


def rotation_scale_about(cx, cy, degrees, scale) -> np.ndarray:
    """Rotate by ``degrees`` (counter-clockwise as displayed, i.e. with y pointing down) and scale by
    ``scale`` about ``(cx, cy)``: the same matrix as ``cv2.getRotationMatrix2D((cx, cy), degrees, scale)``.
    Arrays broadcast as :func:`translation`'s (``(cx, cy)`` with each other, ``degrees`` with ``scale``, then the
    two shapes as matrix products do)."""
    theta = np.deg2rad(degrees)
    a, b = scale * np.cos(theta), scale * np.sin(theta)
    if np.ndim(a) == 0:  # one matrix, the common case, as a literal
        linear = np.array([[a, b, 0.0], [-b, a, 0.0], [0.0, 0.0, 1.0]])
    else:
        linear = np.zeros(np.shape(a) + (3, 3))
        linear[..., 0, 0] = linear[..., 1, 1] = a
        linear[..., 0, 1], linear[..., 1, 0], linear[..., 2, 2] = b, -b, 1.0
    cx, cy = (v if isinstance(v, int | float) else np.asarray(v, dtype=np.float64) for v in (cx, cy))
    return translation(cx, cy) @ linear @ translation(-cx, -cy)


def rescale_matrix(height: int, width: int, new_height: int, new_width: int) -> np.ndarray:
    """The 3x3 map of a resize ``(H, W) -> (H', W')``: ``x' = (x + 0.5) W'/W - 0.5`` (pixel centres)."""
    sx, sy = new_width / width, new_height / height
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def rescaled_shape(height: int, width: int, output_size: int | tuple[int, int]) -> tuple[int, int]:
    """Upstream ``Rescale``'s output shape ``(H', W')``.

    An int makes the *shorter* side ``output_size`` and the longer one ``int(output_size * long / short)``
    (truncated, as upstream); a tuple ``(h, w)`` is the exact output shape.
    """
    if isinstance(output_size, (tuple, list)):
        new_h, new_w = int(output_size[0]), int(output_size[1])
    elif height > width:
        new_h, new_w = int(output_size * height / width), int(output_size)
    else:
        new_h, new_w = int(output_size), int(output_size * width / height)
    if new_h <= 0 or new_w <= 0:
        raise ValueError(f"Rescale: output shape must be positive, got {(new_h, new_w)} from {(height, width)}")
    return new_h, new_w



def center_crop_offset(height: int, width: int, crop_h: int, crop_w: int) -> tuple[int, int]:
    """``(top, left)`` of a centred crop, ``int(round((H - h) / 2))`` as torchvision's ``CenterCrop``."""
    return int(round((height - crop_h) / 2.0)), int(round((width - crop_w) / 2.0))
