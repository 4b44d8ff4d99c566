"""The one preprocessing path from an image to the crop the network reads, and the training crops.

Every face goes through the same two deterministic steps, whoever reads it:

1. :func:`rescale_face`: gray float32, shorter side to ``rescale`` (``rescale_size(S)``, upstream's 250 -> 224
   ratio), ``x' = (x + 0.5) W'/W - 0.5``. Training does it once per face (``keypoints.data.prepare_faces``,
   the cache), the predictor per image;
2. :func:`center_crop`: the centre ``S x S`` window (a plain slice). Validation
   (``DataLoader(center=True)``, through :func:`crop_sample` with ``center=True``), test evaluation and the
   predictor (``Predictor.preprocess``) read exactly these crops (``tests/test_crops.py`` checks that
   they are equal, bit for bit).

Training instead cuts a random crop with :func:`crop_sample`: random crop + flip + rotation/scale/shift as
ONE affine and ONE ``cv2.warpAffine`` from the cached, rescaled face (a plain slice when only cropping and
flipping, which is exact), then brightness/contrast (:func:`photometric_jitter`). All matrices are 3x3
float64 from ``keypoints.geometry``.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .geometry import (
    FLIP_PERMUTATION,
    apply_affine,
    center_crop_offset,
    flip_matrix,
    rescale_matrix,
    rescaled_shape,
    rotation_scale_about,
    translation,
)
from .image import resize_image


def rescale_size(size: int) -> int:
    """Shorter side before cropping ``size``: upstream's 250 -> 224 ratio, ``round(size * 250 / 224)``
    (rounded half up): 107 at 96, 250 at 224."""
    if size <= 0:
        raise ValueError(f"rescale_size: size must be positive, got {size}")
    return int(math.floor(size * 250 / 224 + 0.5))


def rescale_face(image: np.ndarray, output_size: int | tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Step 1: any image -> ``(rescaled (h, w), matrix (3, 3) image pixels -> rescaled pixels)``.

    ``image`` ``(H, W)`` or ``(H, W, C)`` is resized as it is (``keypoints.image.resize_image``: area
    averaging when shrinking, bilinear when enlarging); the predictor makes it gray first. An int
    ``output_size`` is the shorter side (the longer one ``int(output_size * long / short)``, truncated, as
    upstream's ``Rescale``); a pair ``(h, w)`` is the exact shape (``keypoints.geometry.rescaled_shape``).
    """
    height, width = image.shape[:2]
    new_h, new_w = rescaled_shape(height, width, output_size)
    return resize_image(image, new_h, new_w), rescale_matrix(height, width, new_h, new_w)


def center_crop(rescaled: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Step 2: ``(h, w)`` -> ``(crop (S, S) float32, a fresh copy; matrix (3, 3) rescaled -> crop pixels)``,
    the window at ``keypoints.geometry.center_crop_offset`` (``int(round((h - S) / 2))``)."""
    height, width = rescaled.shape[:2]
    if size > height or size > width:
        raise ValueError(f"center_crop: a {size}x{size} crop does not fit in an image of shape {rescaled.shape[:2]}")
    top, left = center_crop_offset(height, width, size, size)
    return np.array(rescaled[top : top + size, left : left + size], dtype=np.float32), translation(-left, -top)


def require_rng(where: str, rng: np.random.Generator | None) -> np.random.Generator:
    """``rng`` if it is an ``np.random.Generator`` (randomness is always explicit), else TypeError."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{where}: a random transform needs an np.random.Generator, got {type(rng).__name__}")
    return rng


def photometric_jitter(image: np.ndarray, brightness: float, contrast: float) -> np.ndarray:
    """``clip(((b * x) - m) * c + m, 0, 1)`` with ``m`` the mean of ``b * x`` (torchvision's order:
    brightness scales, contrast blends with the mean gray level)."""
    out = image * np.float32(brightness)
    mean = out.mean(dtype=np.float64)
    out = (out - np.float32(mean)) * np.float32(contrast) + np.float32(mean)
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


def jitter_factor(rng: np.random.Generator, amount: float) -> float:
    """A brightness or contrast factor ``U(max(0, 1 - amount), 1 + amount)`` (1 without drawing when ``amount`` is 0)."""
    return float(rng.uniform(max(0.0, 1.0 - amount), 1.0 + amount)) if amount > 0 else 1.0


def flip_probability(flip: bool | float) -> float:
    """``flip`` of :func:`crop_sample`: ``True`` is 0.5, ``False``/``None`` 0, a float in [0, 1] itself."""
    if flip is True:
        return 0.5
    if flip is False or flip is None:
        return 0.0
    p = float(flip)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"crop_sample: flip must be a bool or a probability in [0, 1], got {flip!r}")
    return p


def crop_sample(
    image: np.ndarray,
    keypoints: np.ndarray,
    size: int,
    rng: np.random.Generator | None,
    *,
    flip: bool | float = False,
    degrees: float = 0.0,
    scale: tuple[float, float] = (1.0, 1.0),
    translate: float = 0.0,
    brightness: float = 0.0,
    contrast: float = 0.0,
    center: bool = False,
    return_affine: bool = False,
    flip_permutation: np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """Random crop + flip + rotation/scale/shift + brightness/contrast of one cached, rescaled face.

    The geometric steps compose into one matrix ``M = A @ F @ C`` (crop shift ``C``, then flip ``F``,
    then the rotation/scale about the crop centre ``((S-1)/2, (S-1)/2)`` and the shift ``A``), applied with
    ONE ``cv2.warpAffine`` (bilinear, border replicate). Because the warp reads the whole rescaled image,
    zooming out or shifting shows real pixels from outside the crop window, not padding. With no
    rotation, scale or shift the crop is a plain slice (flip = column reversal): exact, no interpolation,
    which is what the reference recipe's ``RandomCrop`` does.

    Parameters
    ----------
    image : (H, W) float32
        A rescaled face (``Faces.images[i]``); ``H, W >= size``.
    keypoints : (K, 2) float32
        In ``image``'s pixels. ``K = 68`` when flipping without ``flip_permutation``.
    size : int
        ``S``, the side of the square crop.
    rng : np.random.Generator
        Source of every random draw, in a fixed order (offsets, flip, angle, scale, shift, brightness,
        contrast). May be ``None`` only when nothing is random (``center=True``, no augmentation).
    flip : bool or float
        ``True`` flips with probability 0.5, a float is the probability.
    degrees, scale, translate, brightness, contrast : as ``RandomAffine`` and ``ColorJitter``
        (``translate`` is a fraction of ``S``).
    center : bool
        Centred crop (evaluation) instead of a random one.
    return_affine : bool
        Also return the 3x3 matrix ``M`` (rescaled pixels -> crop pixels, float64) and whether the
        sample was flipped (then point ``j`` of the crop is point ``flip_permutation[j]`` of the input).
    flip_permutation : (K,) int, optional
        The mirror permutation of the points (``keypoints.geometry.checked_flip_permutation``); None: the
        iBUG 68-point :data:`~keypoints.geometry.FLIP_PERMUTATION`.

    Returns
    -------
    crop : (S, S) float32
    keypoints : (K, 2) float32, in crop pixels
    affine, flipped : only with ``return_affine=True``
    """
    height, width = image.shape[:2]
    if size > height or size > width:
        raise ValueError(f"crop_sample: a {size}x{size} crop does not fit in an image of shape {image.shape[:2]}")
    keypoints = np.asarray(keypoints)
    p_flip = flip_probability(flip)
    low, high = float(scale[0]), float(scale[1])
    if not 0.0 < low <= high:
        raise ValueError(f"crop_sample: scale must be (low, high) with 0 < low <= high, got {scale!r}")
    needs_rng = (not center) or (0.0 < p_flip < 1.0) or degrees > 0 or low != high or translate > 0
    needs_rng = needs_rng or brightness > 0 or contrast > 0
    if needs_rng:
        rng = require_rng("crop_sample", rng)

    if center:
        top, left = center_crop_offset(height, width, size, size)
    else:
        top = int(rng.integers(0, height - size + 1))
        left = int(rng.integers(0, width - size + 1))
    flipped = p_flip >= 1.0 or (p_flip > 0.0 and bool(rng.random() < p_flip))
    angle = float(rng.uniform(-degrees, degrees)) if degrees > 0 else 0.0
    zoom = float(rng.uniform(low, high)) if low != high else low
    shift = rng.uniform(-translate, translate, size=2) * size if translate > 0 else np.zeros(2)

    matrix = translation(-left, -top)
    if flipped:
        permutation = FLIP_PERMUTATION if flip_permutation is None else flip_permutation
        if keypoints.shape[0] != len(permutation):
            raise ValueError(f"crop_sample: flipping with a permutation of {len(permutation)} points needs"
                             f" {len(permutation)} keypoints, got {keypoints.shape[0]}")
        matrix = flip_matrix(size) @ matrix
    if angle == 0.0 and zoom == 1.0 and not shift.any():
        crop = image[top : top + size, left : left + size]
        crop = np.array(crop[:, ::-1] if flipped else crop, dtype=np.float32)  # a fresh contiguous copy
    else:
        centre = (size - 1) / 2.0
        matrix = translation(shift[0], shift[1]) @ rotation_scale_about(centre, centre, angle, zoom) @ matrix
        crop = cv2.warpAffine(
            image, matrix[:2], (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        ).astype(np.float32, copy=False)

    moved = apply_affine(keypoints.astype(np.float32, copy=False), matrix)
    if flipped:
        moved = moved[permutation]
    if brightness > 0 or contrast > 0:
        crop = photometric_jitter(crop, jitter_factor(rng, brightness), jitter_factor(rng, contrast))
    if return_affine:
        return crop, moved, matrix, flipped
    return crop, moved
