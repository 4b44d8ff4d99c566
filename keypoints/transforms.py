"""Transforms for 68-point facial keypoint samples, with the Udacity P1 project's names and semantics.

A *sample* is a dict ``{"image": (H, W) float32 in [0, 1], "keypoints": (68, 2) float32 (x, y) in
pixels, ...}``. Every transform is called as ``transform(sample, rng)`` and returns a new dict (the input
is never modified); ``rng`` is an explicit ``np.random.Generator`` and may be ``None`` for the
deterministic transforms (``Rescale``, ``CenterCrop``, ``Normalize``, ``ToArray``).

Coordinates: pixel centres sit at integer coordinates, so pixel ``(row y, column x)`` covers
``[x - 0.5, x + 0.5) x [y - 0.5, y + 0.5)``. This is the convention ``cv2.resize`` and
``cv2.warpAffine`` use, and with it every transform moves the keypoints exactly with the pixels:

===================  ========================================================================
``Rescale``          ``x' = (x + 0.5) * W'/W - 0.5``  (upstream used ``x * W'/W``: up to half a pixel off)
``RandomCrop``       ``x' = x - left``
``HorizontalFlip``   ``x' = W - 1 - x`` and the left/right landmark indices swap (``FLIP_PERMUTATION``)
``RandomAffine``     rotation/scale about the centre ``((W-1)/2, (H-1)/2)``, then a shift
``Normalize``        ``q = (x - 100 S/224) / (50 S/224)``  (``(x - 100) / 50`` at ``S = 224``)
===================  ========================================================================

Every geometric transform also composes its 3x3 matrix into ``sample["affine"]`` (which maps the
*original* image's pixel coordinates to the current keypoint coordinates, float64 so that composing
many of them loses nothing), and a flip composes its index permutation into ``sample["order"]``, so a
prediction made on the transformed image maps back exactly with :func:`keypoints.geometry.map_to_original`.

The training loop does not chain these: :func:`keypoints.crops.crop_sample` does random crop + flip +
rotation/scale/shift as ONE affine and ONE ``cv2.warpAffine`` from a cached, already rescaled image.
"""
from __future__ import annotations

from typing import Callable, Sequence

import cv2
import numpy as np

from .geometry import (
    FLIP_PERMUTATION,
    NUM_KEYPOINTS,
    apply_affine,
    center_crop_offset,
    flip_image,
    flip_matrix,
    normalization_matrix,
    rotation_scale_about,
    translation,
)
from .crops import jitter_factor, photometric_jitter, require_rng, rescale_face
from .image import to_gray_float32

_IDENTITY = np.eye(3)


def _check_sample(where: str, sample: dict) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(sample, dict) or "image" not in sample or "keypoints" not in sample:
        raise TypeError(f"{where}: expected a sample dict with 'image' and 'keypoints', got {type(sample).__name__}")
    image, keypoints = sample["image"], np.asarray(sample["keypoints"])
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
        shape = getattr(image, "shape", None)
        raise ValueError(f"{where}: expected an image of shape (H, W) or (H, W, C), got {shape}")
    if keypoints.ndim != 2 or keypoints.shape[1] != 2:
        raise ValueError(f"{where}: expected keypoints of shape (K, 2), got {keypoints.shape}")
    return image, keypoints


def _check_geometric(where: str, sample: dict) -> tuple[np.ndarray, np.ndarray]:
    image, keypoints = _check_sample(where, sample)
    if "normalized" in sample:
        raise ValueError(f"{where}: keypoints are already normalised; put Normalize after the geometric transforms")
    return image, keypoints


def _moved(sample: dict, image: np.ndarray, matrix: np.ndarray, permutation: np.ndarray | None = None) -> dict:
    """A new sample whose image is ``image`` and whose keypoints, ``affine`` and ``order`` are moved by
    ``matrix`` (3x3) and, for a flip, re-indexed by ``permutation``."""
    out = dict(sample)
    keypoints = np.asarray(sample["keypoints"])
    if keypoints.dtype not in (np.float32, np.float64):
        keypoints = keypoints.astype(np.float32)  # integer pixel coordinates: float32, the default
    keypoints = apply_affine(keypoints, matrix)  # float64 keypoints stay float64
    out["affine"] = matrix @ sample.get("affine", _IDENTITY)
    if permutation is not None:
        keypoints = keypoints[permutation]
        order = sample.get("order", np.arange(len(permutation)))
        out["order"] = np.asarray(order)[permutation]
    out["image"] = image
    out["keypoints"] = keypoints
    return out


def _crop_shape(where: str, size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        out = (int(size), int(size))
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        out = (int(size[0]), int(size[1]))
    else:
        raise TypeError(f"{where}: size must be an int or a (height, width) pair, got {size!r}")
    if out[0] <= 0 or out[1] <= 0:
        raise ValueError(f"{where}: size must be positive, got {size!r}")
    return out


def _check_fits(where: str, image: np.ndarray, crop_h: int, crop_w: int) -> None:
    height, width = image.shape[:2]
    if crop_h > height or crop_w > width:
        raise ValueError(f"{where}: a {crop_h}x{crop_w} crop does not fit in an image of shape {image.shape[:2]}")



# ----------------------------------------------------------------------------------------------------
# Sample transforms (upstream names)
# ----------------------------------------------------------------------------------------------------


class Compose:
    """Apply ``transforms`` in order, passing the same ``rng`` to each (as upstream ``transforms.Compose``)."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


class Normalize:
    """Image -> grayscale float32 in ``[0, 1]``; keypoints -> ``(p - 100 S/224) / (50 S/224)``.

    Parameters
    ----------
    size : int, optional
        ``S``. ``None`` uses the image's side, which must then be square (Normalize follows the crop).

    The normalisation is composed into ``sample["affine"]``, so :func:`keypoints.geometry.map_to_original` takes the
    network's normalised predictions straight back to the original pixels. Geometric transforms refuse a
    normalised sample (``sample["normalized"]`` is set) rather than silently mixing units.
    """

    def __init__(self, size: int | None = None):
        self.size = size

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        image, _ = _check_geometric("Normalize", sample)
        gray = to_gray_float32(image)
        size = self.size
        if size is None:
            height, width = gray.shape
            if height != width:
                raise ValueError(f"Normalize: size=None needs a square image, got {gray.shape}; pass size=")
            size = height
        out = _moved(sample, gray, normalization_matrix(size))
        out["normalized"] = size
        return out

    def __repr__(self) -> str:
        return f"Normalize(size={self.size})"


class Rescale:
    """Resize the image (upstream ``Rescale``).

    Parameters
    ----------
    output_size : int or (h, w)
        An int makes the shorter side ``output_size`` with the aspect ratio kept (the longer side is
        ``int(output_size * long / short)``, truncated as upstream); a tuple is the exact output shape.

    ``cv2.resize`` with ``INTER_AREA`` when shrinking, ``INTER_LINEAR`` when enlarging. Keypoints move
    with the pixel-centre convention of ``cv2.resize``, ``x' = (x + 0.5) * W'/W - 0.5``, which is exact
    for the resampled pixels. Upstream scaled by ``x * W'/W``, which is off by ``0.5 * (1 - W'/W)``
    pixels: up to half a pixel when shrinking a lot.
    """

    def __init__(self, output_size: int | tuple[int, int]):
        if isinstance(output_size, (int, np.integer)) and not isinstance(output_size, bool):
            if output_size <= 0:
                raise ValueError(f"Rescale: output_size must be positive, got {output_size}")
        elif not (isinstance(output_size, (tuple, list)) and len(output_size) == 2):
            raise TypeError(f"Rescale: output_size must be an int or an (h, w) pair, got {output_size!r}")
        self.output_size = output_size if isinstance(output_size, (int, np.integer)) else tuple(output_size)

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        image, _ = _check_geometric("Rescale", sample)
        resized, matrix = rescale_face(image, self.output_size)
        return _moved(sample, resized, matrix)

    def __repr__(self) -> str:
        return f"Rescale({self.output_size!r})"


class RandomCrop:
    """Crop a random ``size`` window (upstream ``RandomCrop``); keypoints shift by ``-(left, top)``.

    Every offset ``0 .. H - h`` is equally likely (upstream's ``randint(0, h - new_h)`` never picked the
    last one and failed when the image was exactly the crop size).
    """

    def __init__(self, size: int | tuple[int, int]):
        self.size = _crop_shape("RandomCrop", size)

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        image, _ = _check_geometric("RandomCrop", sample)
        rng = require_rng("RandomCrop", rng)
        crop_h, crop_w = self.size
        _check_fits("RandomCrop", image, crop_h, crop_w)
        top = int(rng.integers(0, image.shape[0] - crop_h + 1))
        left = int(rng.integers(0, image.shape[1] - crop_w + 1))
        crop = image[top : top + crop_h, left : left + crop_w].copy()
        return _moved(sample, crop, translation(-left, -top))

    def __repr__(self) -> str:
        return f"RandomCrop({self.size!r})"


class CenterCrop:
    """Crop the centre ``size`` window: offset ``int(round((H - h) / 2))`` as torchvision."""

    def __init__(self, size: int | tuple[int, int]):
        self.size = _crop_shape("CenterCrop", size)

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        image, _ = _check_geometric("CenterCrop", sample)
        crop_h, crop_w = self.size
        _check_fits("CenterCrop", image, crop_h, crop_w)
        top, left = center_crop_offset(image.shape[0], image.shape[1], crop_h, crop_w)
        crop = image[top : top + crop_h, left : left + crop_w].copy()
        return _moved(sample, crop, translation(-left, -top))

    def __repr__(self) -> str:
        return f"CenterCrop({self.size!r})"


class RandomHorizontalFlip:
    """With probability ``p``: mirror the image, ``x' = W - 1 - x``, and swap left/right landmarks.

    The keypoints are re-indexed with :data:`FLIP_PERMUTATION` (the old right eye becomes the new left
    eye), so the samples need all 68 points. The image flip is exact (a column reversal).
    """

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p}")
        self.p = float(p)

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        image, keypoints = _check_geometric("RandomHorizontalFlip", sample)
        if keypoints.shape[0] != NUM_KEYPOINTS:
            raise ValueError(f"RandomHorizontalFlip: needs {NUM_KEYPOINTS} keypoints to swap sides, got {keypoints.shape[0]}")
        if self.p >= 1.0:
            flip = True
        elif self.p <= 0.0:
            flip = False
        else:
            flip = bool(require_rng("RandomHorizontalFlip", rng).random() < self.p)
        if not flip:
            return dict(sample)
        return _moved(sample, flip_image(image), flip_matrix(image.shape[1]), FLIP_PERMUTATION)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomAffine:
    """Random rotation, scale and shift about the image centre, one ``cv2.warpAffine`` (border replicate).

    Parameters
    ----------
    degrees : float
        Angle drawn from ``U(-degrees, degrees)``, counter-clockwise as displayed.
    scale : (low, high)
        Zoom factor drawn from ``U(low, high)`` (> 1 enlarges the face).
    translate : float
        Shift drawn from ``U(-translate, translate)`` times the width (x) and the height (y).

    Matrix: ``p' = R(angle) * scale * (p - c) + c + t`` with ``c = ((W-1)/2, (H-1)/2)``; the keypoints
    move by the same matrix, bilinear interpolation for the pixels.
    """

    def __init__(self, degrees: float = 15.0, scale: tuple[float, float] = (0.9, 1.1), translate: float = 0.05):
        if degrees < 0 or translate < 0:
            raise ValueError(f"RandomAffine: degrees and translate must be >= 0, got {degrees}, {translate}")
        if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
            raise ValueError(f"RandomAffine: scale must be (low, high) with 0 < low <= high, got {scale!r}")
        self.degrees, self.scale, self.translate = float(degrees), (float(scale[0]), float(scale[1])), float(translate)

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        image, _ = _check_geometric("RandomAffine", sample)
        rng = require_rng("RandomAffine", rng)
        height, width = image.shape[:2]
        angle = rng.uniform(-self.degrees, self.degrees)
        zoom = rng.uniform(*self.scale)
        tx, ty = rng.uniform(-self.translate, self.translate, size=2) * (width, height)
        matrix = translation(tx, ty) @ rotation_scale_about((width - 1) / 2.0, (height - 1) / 2.0, angle, zoom)
        warped = cv2.warpAffine(
            image, matrix[:2], (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        return _moved(sample, warped, matrix)

    def __repr__(self) -> str:
        return f"RandomAffine(degrees={self.degrees}, scale={self.scale}, translate={self.translate})"


class ColorJitter:
    """Random brightness and contrast on a ``[0, 1]`` image, clipped back to ``[0, 1]``.

    Factors ``b ~ U(max(0, 1 - brightness), 1 + brightness)`` and ``c`` likewise; the image becomes
    ``clip((b x - m) c + m, 0, 1)`` with ``m`` the mean of ``b x``. Keypoints do not move.
    """

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2):
        if brightness < 0 or contrast < 0:
            raise ValueError(f"ColorJitter: brightness and contrast must be >= 0, got {brightness}, {contrast}")
        self.brightness, self.contrast = float(brightness), float(contrast)

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        image, _ = _check_sample("ColorJitter", sample)
        rng = require_rng("ColorJitter", rng)
        b, c = jitter_factor(rng, self.brightness), jitter_factor(rng, self.contrast)
        out = dict(sample)
        out["image"] = photometric_jitter(to_gray_float32(image) if image.dtype != np.float32 else image, b, c)
        return out

    def __repr__(self) -> str:
        return f"ColorJitter(brightness={self.brightness}, contrast={self.contrast})"


class ToArray:
    """Upstream ``ToTensor`` without torch: image ``(H, W)`` or ``(H, W, C)`` -> ``(C, H, W)`` float32
    (``C = 1`` for gray), keypoints ``(68, 2)`` -> flat ``(136,)`` float32 ``(x0, y0, x1, y1, ...)``."""

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        image, keypoints = _check_sample("ToArray", sample)
        chw = image[None] if image.ndim == 2 else np.transpose(image, (2, 0, 1))
        out = dict(sample)
        out["image"] = np.ascontiguousarray(chw, dtype=np.float32)
        out["keypoints"] = np.ascontiguousarray(keypoints, dtype=np.float32).reshape(-1)
        return out

    def __repr__(self) -> str:
        return "ToArray()"
