"""Tests for keypoints.transforms.

The central property: keypoints move with the pixels. Each test draws an image whose only bright
features are small Gaussian blobs centred exactly on some keypoints (at sub-pixel positions), applies a
transform, and checks that in the output image the blob around every transformed keypoint is still
centred on it: the brightest pixel within 1 px, and the intensity-weighted centroid within 0.2 px
(tight enough to catch upstream's half-pixel ``x * W'/W`` rescaling convention).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keypoints.geometry import FLIP_PERMUTATION, apply_affine, denormalize_keypoints, map_to_original, normalize_keypoints
from keypoints.transforms import (
    CenterCrop,
    ColorJitter,
    Compose,
    Normalize,
    RandomAffine,
    RandomCrop,
    RandomHorizontalFlip,
    Rescale,
    ToArray,
)
from keypoints.crops import crop_sample
from keypoints.image import to_gray_float32

SIGMA = 1.2  # blob radius (pixels of the source image)
SEPARATION = 20.0  # minimum distance between blobs (source pixels)
MARGIN = 7.0  # blobs stay this far from the source image's edges
SETTINGS = settings(deadline=None, max_examples=25)


# ----------------------------------------------------------------------------------------------------
# Helpers: blobs at keypoints, and where they end up
# ----------------------------------------------------------------------------------------------------


def render_blobs(height: int, width: int, points: np.ndarray, sigma: float = SIGMA) -> np.ndarray:
    """Float32 image, 0 everywhere except a Gaussian blob of peak 1 centred on each point."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.zeros((height, width))
    for x, y in points:
        image += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
    return np.clip(image, 0, 1).astype(np.float32)


def spread_points(rng: np.random.Generator, height: int, width: int, count: int, margin: float = MARGIN) -> np.ndarray:
    """``count`` sub-pixel points at least SEPARATION apart and ``margin`` from the edges (rejection sampling)."""
    points: list[np.ndarray] = []
    for _ in range(20_000):
        p = rng.uniform([margin, margin], [width - 1 - margin, height - 1 - margin])
        if all(np.hypot(*(p - q)) >= SEPARATION for q in points):
            points.append(p)
            if len(points) == count:
                return np.array(points, dtype=np.float32)
    raise AssertionError("could not place the blobs; make the image larger")


def blob_position(image: np.ndarray, point: np.ndarray, sigma_out: float) -> tuple[np.ndarray, np.ndarray, float] | None:
    """``(peak (x, y), centroid (x, y), mass)`` of the image in a window around ``point``, or ``None``
    when the window does not fit inside the image (the blob may have been cut by a crop)."""
    radius = int(np.ceil(4 * sigma_out)) + 1
    cx, cy = int(round(float(point[0]))), int(round(float(point[1])))
    height, width = image.shape
    if cx - radius < 0 or cy - radius < 0 or cx + radius >= width or cy + radius >= height:
        return None
    window = image[cy - radius : cy + radius + 1, cx - radius : cx + radius + 1].astype(np.float64)
    ys, xs = np.mgrid[cy - radius : cy + radius + 1, cx - radius : cx + radius + 1]
    iy, ix = np.unravel_index(np.argmax(window), window.shape)
    peak = np.array([xs[iy, ix], ys[iy, ix]], dtype=np.float64)
    mass = window.sum()
    centroid = np.array([(window * xs).sum() / mass, (window * ys).sum() / mass]) if mass > 0 else peak
    return peak, centroid, mass


def assert_blobs_follow(image: np.ndarray, points: np.ndarray, sigma_out: float, centroid_tol: float = 0.2) -> int:
    """Every point whose window fits in ``image`` sits on a blob; returns how many points were checked."""
    checked = 0
    for k, point in enumerate(points):
        found = blob_position(image, point, sigma_out)
        if found is None:
            continue
        peak, centroid, mass = found
        # a blob has mass 2 pi SIGMA^2 ~ 9 in source pixels, >= 1.4 after shrinking to 0.4x; none has ~0
        assert mass > 0.5, f"no blob at keypoint {k} {point} (mass {mass})"
        assert np.max(np.abs(peak - point)) <= 1.0, f"keypoint {k}: brightest pixel {peak}, keypoint {point}"
        assert np.max(np.abs(centroid - point)) <= centroid_tol, f"keypoint {k}: blob centre {centroid}, keypoint {point}"
        checked += 1
    return checked


def face_points(rng: np.random.Generator, height: int, width: int, shown: list[int]) -> np.ndarray:
    """68 keypoints: the ``shown`` indices well separated (these get blobs), the rest anywhere."""
    points = rng.uniform([0, 0], [width - 1, height - 1], size=(68, 2)).astype(np.float32)
    points[shown] = spread_points(rng, height, width, len(shown))
    return points


SHOWN = [36, 45, 30, 57]  # outer eye corners, nose tip, lower lip: flipping maps 36 <-> 45, keeps 30, 57


# ----------------------------------------------------------------------------------------------------
# The flip permutation
# ----------------------------------------------------------------------------------------------------


def test_flip_permutation_is_the_ibug_mirror():
    # Written out independently from the iBUG 68-point diagram: pairs of mirrored landmarks.
    pairs = [(i, 16 - i) for i in range(8)]  # jaw
    pairs += [(17, 26), (18, 25), (19, 24), (20, 23), (21, 22)]  # brows
    pairs += [(31, 35), (32, 34)]  # nostrils
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lips
    pairs += [(60, 64), (61, 63), (65, 67)]  # inner lips
    fixed = [8, 27, 28, 29, 30, 33, 51, 57, 62, 66]
    expected = np.arange(68)
    for a, b in pairs:
        expected[a], expected[b] = b, a
    assert sorted(fixed + [i for p in pairs for i in p]) == list(range(68))
    np.testing.assert_array_equal(FLIP_PERMUTATION, expected)
    assert FLIP_PERMUTATION.dtype.kind == "i"
    np.testing.assert_array_equal(FLIP_PERMUTATION[FLIP_PERMUTATION], np.arange(68))  # an involution
    assert FLIP_PERMUTATION[36] == 45 and FLIP_PERMUTATION[45] == 36


# ----------------------------------------------------------------------------------------------------
# Normalisation
# ----------------------------------------------------------------------------------------------------


def test_normalize_keypoints_hand_values():
    p = np.array([[100.0, 150.0], [0.0, 200.0]], dtype=np.float32)
    np.testing.assert_allclose(normalize_keypoints(p, 224), [[0.0, 1.0], [-2.0, 2.0]], atol=1e-6)
    # S = 96: centre 100 * 96 / 224 = 42.857..., half range 50 * 96 / 224 = 21.428...; the crop's centre
    # pixel 47.5 maps to (47.5 - 300/7) / (150/7) = 0.21666...
    q = normalize_keypoints(np.array([[47.5, 0.0]], dtype=np.float32), 96)
    np.testing.assert_allclose(q, [[(47.5 - 300 / 7) / (150 / 7), -2.0]], rtol=1e-6)
    assert q.dtype == np.float32


@SETTINGS
@given(
    size=st.integers(8, 400),
    seed=st.integers(0, 2**32 - 1),
)
def test_normalize_denormalize_are_inverses(size, seed):
    rng = np.random.default_rng(seed)
    p = rng.uniform(-50, 450, size=(68, 2)).astype(np.float32)
    q = normalize_keypoints(p, size)
    assert q.dtype == np.float32
    np.testing.assert_allclose(denormalize_keypoints(q, size), p, atol=1e-4)
    p64 = p.astype(np.float64)
    np.testing.assert_allclose(denormalize_keypoints(normalize_keypoints(p64, size), size), p64, atol=1e-10)


def test_normalize_transform_grayscales_and_scales():
    bgr = np.zeros((4, 4, 3), dtype=np.uint8)
    bgr[..., 2] = 255  # pure red
    sample = {"image": bgr, "keypoints": np.full((68, 2), 2.0, np.float32)}
    out = Normalize()(sample)
    assert out["image"].dtype == np.float32 and out["image"].shape == (4, 4)
    np.testing.assert_allclose(out["image"], 0.299, atol=1e-6)
    np.testing.assert_allclose(out["keypoints"], (2.0 - 100 * 4 / 224) / (50 * 4 / 224), rtol=1e-6)
    with pytest.raises(ValueError, match="square"):
        Normalize()({"image": np.zeros((4, 5), np.float32), "keypoints": np.zeros((68, 2), np.float32)})
    with pytest.raises(ValueError, match="already normalised"):
        Rescale(2)(out)


def test_to_gray_float32_dtypes():
    np.testing.assert_allclose(to_gray_float32(np.array([[0, 255]], np.uint8)), [[0.0, 1.0]])
    np.testing.assert_allclose(to_gray_float32(np.array([[65535, 0]], np.uint16)), [[1.0, 0.0]])
    with pytest.raises(ValueError, match="dtype"):
        to_gray_float32(np.zeros((2, 2), np.int32))


# ----------------------------------------------------------------------------------------------------
# Rescale
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, output_size, expected",
    [
        ((100, 151), 50, (50, 75)),  # int(50 * 151 / 100) = int(75.5) = 75 (round() would give 76)
        ((151, 100), 50, (75, 50)),
        ((120, 200), 107, (107, 178)),  # int(178.33)
        ((80, 80), 107, (107, 107)),
        ((90, 60), (30, 45), (30, 45)),  # a tuple is the exact shape
    ],
)
def test_rescale_output_shape_truncates(shape, output_size, expected):
    sample = {"image": np.zeros(shape, np.float32), "keypoints": np.zeros((68, 2), np.float32)}
    out = Rescale(output_size)(sample)
    assert out["image"].shape == expected
    assert out["image"].dtype == np.float32


def test_rescale_keypoints_pixel_centre_convention():
    # (H, W) = (40, 60) -> (20, 30): the factor is 1/2, so x' = (x + 0.5) / 2 - 0.5 (hand-computed).
    points = np.array([[0.0, 0.0], [59.0, 39.0], [10.0, 21.0]], np.float32)
    out = Rescale(20)({"image": np.zeros((40, 60), np.float32), "keypoints": points})
    np.testing.assert_allclose(out["keypoints"], [[-0.25, -0.25], [29.25, 19.25], [4.75, 10.25]], atol=1e-6)


@SETTINGS
@given(
    height=st.integers(56, 90),
    width=st.integers(56, 90),
    factor=st.floats(0.4, 2.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_rescale_moves_keypoints_with_pixels(height, width, factor, seed):
    rng = np.random.default_rng(seed)
    output_size = max(8, int(round(min(height, width) * factor)))
    shrink = output_size / min(height, width)
    sigma_out = np.hypot(SIGMA * shrink, 0.5)  # the blob scaled, plus (generously) the resampling blur
    # keep every blob's window (radius 4 sigma_out + 1 output pixels) inside the output image
    margin = max(MARGIN, (np.ceil(4 * sigma_out) + 2) / shrink)
    points = spread_points(rng, height, width, 3, margin)
    image = render_blobs(height, width, points)
    out = Rescale(output_size)({"image": image, "keypoints": points})
    new_h, new_w = out["image"].shape
    # expected positions from the pixel-centre formula, computed here independently
    scale = np.array([new_w / width, new_h / height])
    expected = (points + 0.5) * scale - 0.5
    np.testing.assert_allclose(out["keypoints"], expected, atol=1e-4)
    assert assert_blobs_follow(out["image"], out["keypoints"], sigma_out) == 3


# ----------------------------------------------------------------------------------------------------
# Crops
# ----------------------------------------------------------------------------------------------------


@SETTINGS
@given(
    height=st.integers(56, 90),
    width=st.integers(56, 90),
    crop=st.integers(30, 56),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_crop_moves_keypoints_with_pixels(height, width, crop, seed):
    rng = np.random.default_rng(seed)
    points = spread_points(rng, height, width, 3)
    image = render_blobs(height, width, points)
    out = RandomCrop(crop)({"image": image, "keypoints": points}, rng)
    assert out["image"].shape == (crop, crop)
    # a pure shift: the crop is an exact sub-array, found back by its offset
    shift = points[0] - out["keypoints"][0]
    left, top = int(round(shift[0])), int(round(shift[1]))
    np.testing.assert_allclose(out["keypoints"], points - [left, top], atol=1e-5)
    np.testing.assert_array_equal(out["image"], image[top : top + crop, left : left + crop])
    assert_blobs_follow(out["image"], out["keypoints"], SIGMA)


def test_random_crop_reaches_every_offset_and_needs_rng():
    image = np.arange(6 * 7, dtype=np.float32).reshape(6, 7)
    sample = {"image": image, "keypoints": np.zeros((68, 2), np.float32)}
    rng = np.random.default_rng(0)
    corners = {float(RandomCrop(5)(sample, rng)["image"][0, 0]) for _ in range(200)}
    # offsets (top, left) in {0, 1} x {0, 1, 2}: the last offset is reachable (upstream's randint was not)
    assert corners == {float(image[t, l]) for t in range(2) for l in range(3)}
    with pytest.raises(TypeError, match="Generator"):
        RandomCrop(5)(sample, None)
    with pytest.raises(ValueError, match="does not fit"):
        RandomCrop(8)(sample, rng)


@pytest.mark.parametrize(
    "shape, size, top_left",
    [
        ((10, 13), 6, (2, 4)),  # (10-6)/2 = 2; (13-6)/2 = 3.5 -> round half to even = 4 (torchvision)
        ((11, 11), 6, (2, 2)),  # 2.5 -> 2
        ((8, 8), 8, (0, 0)),
    ],
)
def test_center_crop_offset(shape, size, top_left):
    image = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    points = np.array([[5.0, 6.0]] * 68, np.float32)
    out = CenterCrop(size)({"image": image, "keypoints": points})
    top, left = top_left
    np.testing.assert_array_equal(out["image"], image[top : top + size, left : left + size])
    np.testing.assert_allclose(out["keypoints"], points - [left, top])


# ----------------------------------------------------------------------------------------------------
# Flip and affine
# ----------------------------------------------------------------------------------------------------


@SETTINGS
@given(height=st.integers(56, 80), width=st.integers(56, 80), seed=st.integers(0, 2**32 - 1))
def test_flip_moves_keypoints_and_swaps_sides(height, width, seed):
    rng = np.random.default_rng(seed)
    points = face_points(rng, height, width, SHOWN)
    image = render_blobs(height, width, points[SHOWN])
    out = RandomHorizontalFlip(p=1.0)({"image": image, "keypoints": points})
    np.testing.assert_array_equal(out["image"], image[:, ::-1])
    # the old point 36 (first eye corner), mirrored to x' = W - 1 - x, is the new point 45
    np.testing.assert_allclose(out["keypoints"][45], [width - 1 - points[36, 0], points[36, 1]], atol=1e-5)
    np.testing.assert_allclose(out["keypoints"][30], [width - 1 - points[30, 0], points[30, 1]], atol=1e-5)
    shown_after = [int(FLIP_PERMUTATION[i]) for i in SHOWN]
    assert assert_blobs_follow(out["image"], out["keypoints"][shown_after], SIGMA) == len(SHOWN)


@SETTINGS
@given(height=st.integers(20, 60), width=st.integers(20, 60), seed=st.integers(0, 2**32 - 1))
def test_flip_twice_is_identity(height, width, seed):
    rng = np.random.default_rng(seed)
    image = rng.random((height, width), dtype=np.float32)
    # pixel coordinates on a 1/4 grid (the CSV's are whole pixels): W - 1 - x is then exact in float32
    points = (rng.integers(0, 4 * 60, size=(68, 2)) / 4).astype(np.float32)
    flip = RandomHorizontalFlip(p=1.0)
    once = flip({"image": image, "keypoints": points})
    twice = flip(once)
    np.testing.assert_array_equal(twice["image"], image)
    np.testing.assert_array_equal(twice["keypoints"], points)
    np.testing.assert_array_equal(twice["order"], np.arange(68))
    np.testing.assert_array_equal(twice["affine"], np.eye(3))
    # arbitrary float32 coordinates come back to within float32 rounding of W - 1 - x
    anywhere = rng.uniform(0, 60, size=(68, 2)).astype(np.float32)
    back = flip(flip({"image": image, "keypoints": anywhere}))["keypoints"]
    np.testing.assert_allclose(back, anywhere, rtol=0, atol=60 * np.finfo(np.float32).eps)


def test_flip_probability():
    sample = {"image": np.zeros((4, 4), np.float32), "keypoints": np.zeros((68, 2), np.float32)}
    rng = np.random.default_rng(1)
    flipped = sum("order" in RandomHorizontalFlip(0.3)(sample, rng) for _ in range(2000))
    assert 500 < flipped < 700  # 600 expected, sd ~20
    assert "order" not in RandomHorizontalFlip(0.0)(sample, None)
    with pytest.raises(ValueError, match="68"):
        RandomHorizontalFlip(1.0)({"image": np.zeros((4, 4), np.float32), "keypoints": np.zeros((5, 2), np.float32)})


@SETTINGS
@given(
    height=st.integers(60, 90),
    width=st.integers(60, 90),
    degrees=st.floats(0, 40),
    low=st.floats(0.8, 1.0),
    high=st.floats(1.0, 1.25),
    translate=st.floats(0, 0.1),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_affine_moves_keypoints_with_pixels(height, width, degrees, low, high, translate, seed):
    rng = np.random.default_rng(seed)
    points = spread_points(rng, height, width, 3)
    image = render_blobs(height, width, points)
    out = RandomAffine(degrees, (low, high), translate)({"image": image, "keypoints": points}, rng)
    assert out["image"].shape == (height, width) and out["image"].dtype == np.float32
    # the keypoints' motion is a similarity transform: distances scale by a factor within [low, high]
    ratio = np.hypot(*(out["keypoints"][0] - out["keypoints"][1])) / np.hypot(*(points[0] - points[1]))
    assert low - 1e-4 <= ratio <= high + 1e-4
    assert_blobs_follow(out["image"], out["keypoints"], SIGMA * high, centroid_tol=0.25)


def test_random_affine_rotation_direction():
    # 90 degrees counter-clockwise (as displayed, y down) about the centre (2, 2) of a 5x5 image:
    # the point right of the centre, (3, 2), goes above it, (2, 1).
    image = np.zeros((5, 5), np.float32)
    image[2, 3] = 1.0
    out = RandomAffine(degrees=90, scale=(1, 1), translate=0)(
        {"image": image, "keypoints": np.array([[3.0, 2.0]], np.float32)}, _FixedUniform(90.0)
    )
    np.testing.assert_allclose(out["keypoints"], [[2.0, 1.0]], atol=1e-6)
    assert np.unravel_index(np.argmax(out["image"]), (5, 5)) == (1, 2)


class _FixedUniform(np.random.Generator):
    """A Generator whose ``uniform`` returns its upper bound (to pin the angle in a hand-checked test)."""

    def __init__(self, value: float):
        super().__init__(np.random.PCG64(0))
        self.value = value

    def uniform(self, low=0.0, high=1.0, size=None):
        return np.full(size, high) if size is not None else float(high)


def test_color_jitter():
    rng = np.random.default_rng(0)
    image = rng.uniform(0.2, 0.6, size=(20, 20)).astype(np.float32)
    points = rng.uniform(0, 20, size=(68, 2)).astype(np.float32)
    out = ColorJitter(brightness=0.5, contrast=0.0)({"image": image, "keypoints": points}, rng)
    ratio = out["image"] / image  # brightness alone multiplies every pixel by the same factor
    assert 0.5 <= ratio.min() and ratio.max() <= 1.5
    np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-5)
    np.testing.assert_array_equal(out["keypoints"], points)
    strong = ColorJitter(brightness=3.0, contrast=3.0)
    for _ in range(20):
        jittered = strong({"image": image, "keypoints": points}, rng)["image"]
        assert jittered.dtype == np.float32 and 0.0 <= jittered.min() and jittered.max() <= 1.0
    same = ColorJitter(0.0, 0.0)({"image": image, "keypoints": points}, rng)["image"]
    np.testing.assert_allclose(same, image, atol=1e-6)


def test_to_array_layout():
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    points = np.arange(136, dtype=np.float32).reshape(68, 2)
    out = ToArray()({"image": image, "keypoints": points})
    assert out["image"].shape == (1, 3, 4) and out["image"].dtype == np.float32
    assert out["keypoints"].shape == (136,) and out["keypoints"].dtype == np.float32
    assert out["keypoints"][2] == 2.0 and out["keypoints"][3] == 3.0  # x1, y1
    np.testing.assert_array_equal(out["image"][0], image)


# ----------------------------------------------------------------------------------------------------
# Composition and the way back
# ----------------------------------------------------------------------------------------------------


@SETTINGS
@given(height=st.integers(60, 160), width=st.integers(60, 160), flip=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_map_to_original_inverts_the_pipeline(height, width, flip, seed):
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, [width - 1, height - 1], size=(68, 2)).astype(np.float32)
    sample = {"image": rng.random((height, width), dtype=np.float32), "keypoints": points}
    pipeline = Compose(
        [
            Rescale(60),
            RandomAffine(20, (0.9, 1.1), 0.05),
            RandomHorizontalFlip(p=1.0 if flip else 0.0),
            RandomCrop(50),
            Normalize(),
            ToArray(),
        ]
    )
    out = pipeline(sample, rng)
    assert out["image"].shape == (1, 50, 50) and out["keypoints"].shape == (136,)
    back = map_to_original(out["keypoints"].reshape(68, 2), out["affine"], out.get("order"))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, points, atol=1e-4)
    assert sample["keypoints"] is points  # the input sample is not modified
    np.testing.assert_array_equal(sample["keypoints"], points)


def test_map_to_original_batched():
    rng = np.random.default_rng(3)
    affines = np.zeros((4, 2, 3))
    affines[:, 0, 0], affines[:, 1, 1] = rng.uniform(0.5, 2, 4), rng.uniform(0.5, 2, 4)
    affines[:, :, 2] = rng.uniform(-10, 10, (4, 2))
    points = rng.uniform(0, 100, (4, 68, 2))
    moved = apply_affine(points, affines)
    # by hand: x' = a x + c, y' = d y + f for each of the 4 matrices
    np.testing.assert_allclose(moved[..., 0], affines[:, 0, 0, None] * points[..., 0] + affines[:, 0, 2, None])
    np.testing.assert_allclose(map_to_original(moved, affines), points, atol=1e-10)


# ----------------------------------------------------------------------------------------------------
# crop_sample, the training loop's fast path
# ----------------------------------------------------------------------------------------------------


@SETTINGS
@given(
    height=st.integers(70, 100),
    width=st.integers(70, 100),
    size=st.integers(48, 70),
    flip=st.booleans(),
    degrees=st.sampled_from([0.0, 10.0, 30.0]),
    zoom=st.sampled_from([(1.0, 1.0), (0.85, 1.15)]),
    translate=st.sampled_from([0.0, 0.08]),
    center=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_crop_sample_moves_keypoints_with_pixels(height, width, size, flip, degrees, zoom, translate, center, seed):
    rng = np.random.default_rng(seed)
    points = face_points(rng, height, width, SHOWN)
    image = render_blobs(height, width, points[SHOWN])
    crop, moved, affine, flipped = crop_sample(
        image, points, size, rng, flip=flip, degrees=degrees, scale=zoom, translate=translate,
        center=center, return_affine=True,
    )
    assert crop.shape == (size, size) and crop.dtype == np.float32
    assert moved.shape == (68, 2) and moved.dtype == np.float32
    shown_after = [int(FLIP_PERMUTATION[i]) if flipped else i for i in SHOWN]
    assert_blobs_follow(crop, moved[shown_after], SIGMA * zoom[1], centroid_tol=0.25)
    back = map_to_original(moved, affine, FLIP_PERMUTATION if flipped else None)
    np.testing.assert_allclose(back, points, atol=1e-4)
    if not flip:
        assert not flipped
    if degrees == 0 and zoom == (1.0, 1.0) and translate == 0:
        # the exact path: a slice (column-reversed when flipped) of the input, no interpolation
        left, top = -affine[0, 2], -affine[1, 2]
        if flipped:
            left = affine[0, 2] - (size - 1)
        left, top = int(round(left)), int(round(top))
        expected = image[top : top + size, left : left + size]
        np.testing.assert_array_equal(crop, expected[:, ::-1] if flipped else expected)
        if center:
            assert (top, left) == (int(round((height - size) / 2.0)), int(round((width - size) / 2.0)))


def test_crop_sample_center_is_deterministic_and_random_crop_is_not():
    rng = np.random.default_rng(0)
    image = rng.random((60, 70), dtype=np.float32)
    points = rng.uniform(0, 60, (68, 2)).astype(np.float32)
    a, pa = crop_sample(image, points, 40, None, center=True)
    np.testing.assert_array_equal(a, image[10:50, 15:55])  # (60-40)/2 = 10, (70-40)/2 = 15
    np.testing.assert_allclose(pa, points - [15, 10])
    crops = {crop_sample(image, points, 40, rng)[0][0, 0] for _ in range(30)}
    assert len(crops) > 5
    with pytest.raises(TypeError, match="Generator"):
        crop_sample(image, points, 40, None)
    with pytest.raises(ValueError, match="does not fit"):
        crop_sample(image, points, 61, rng)


def test_crop_sample_same_seed_same_output():
    image = np.random.default_rng(0).random((80, 90), dtype=np.float32)
    points = np.random.default_rng(1).uniform(0, 80, (68, 2)).astype(np.float32)
    kwargs = dict(flip=True, degrees=15, scale=(0.9, 1.1), translate=0.05, brightness=0.2, contrast=0.2)
    a = crop_sample(image, points, 64, np.random.default_rng(7), **kwargs)
    b = crop_sample(image, points, 64, np.random.default_rng(7), **kwargs)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert 0.0 <= a[0].min() and a[0].max() <= 1.0


def test_rotations_turn_about_the_centre():
    # 180 degrees about the centre ((W-1)/2, (H-1)/2) is a point reflection: x' = W-1-x, y' = H-1-y, and
    # the image is turned upside down; any other centre of rotation would also shift it.
    rng = np.random.default_rng(5)
    image = rng.random((7, 10), dtype=np.float32)
    points = rng.uniform(0, 6, size=(68, 2)).astype(np.float32)
    out = RandomAffine(degrees=180, scale=(1, 1), translate=0)({"image": image, "keypoints": points}, _FixedUniform(0))
    np.testing.assert_allclose(out["image"], image[::-1, ::-1], atol=1e-5)
    np.testing.assert_allclose(out["keypoints"], [9, 6] - points, atol=1e-5)
    # crop_sample turns about the centre of the crop: a centred 8x8 crop of a 10x12 image starts at (1, 2)
    big = rng.random((10, 12), dtype=np.float32)
    crop, moved = crop_sample(big, points + 2, 8, _FixedUniform(0), degrees=180, center=True)
    np.testing.assert_allclose(crop, big[1:9, 2:10][::-1, ::-1], atol=1e-5)
    np.testing.assert_allclose(moved, [7, 7] - (points + 2 - [2, 1]), atol=1e-5)
    # scale (1.5, 1.5) about the crop centre 3.5: x' = 1.5 (x - 3.5) + 3.5
    _, zoomed = crop_sample(big, points + 2, 8, None, scale=(1.5, 1.5), center=True)
    np.testing.assert_allclose(zoomed, 1.5 * (points + 2 - [2, 1] - 3.5) + 3.5, atol=1e-5)
    # translate: the shift drawn (here its upper bound 0.25) times S = 2 pixels
    _, shifted = crop_sample(big, points + 2, 8, _FixedUniform(0), translate=0.25, center=True)
    np.testing.assert_allclose(shifted, points + 2 - [2, 1] + 2, atol=1e-5)
