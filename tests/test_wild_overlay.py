"""Sunglasses: drawing, placement from keypoints, alpha blending (keypoints.wild.overlay)."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from keypoints.wild.overlay import (
    add_sunglasses,
    alpha_blend,
    as_bgra,
    face_width,
    load_overlay,
    make_sunglasses,
    sunglasses_affine,
)


def synthetic_face(eye_mid=(150.0, 100.0), eye_distance=100.0, temple_width=200.0, angle_deg=0.0) -> np.ndarray:
    """68 points: eye rings around the two eye centres, temples 0 and 16, brow ends 17 and 26, the rest on
    the nose/mouth axis; rotated by ``angle_deg`` about the eye midpoint."""
    points = np.zeros((68, 2))
    points[:] = (0.0, 60.0)  # nose, mouth, jaw: below the eyes (unused by the placement)
    angles = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    ring = np.stack([np.cos(angles), np.sin(angles)], 1)
    points[36:42] = (-eye_distance / 2, 0.0) + 8 * ring
    points[42:48] = (eye_distance / 2, 0.0) + 8 * ring
    points[0], points[16] = (-temple_width / 2, 0.0), (temple_width / 2, 0.0)
    points[17], points[26] = (-temple_width / 2.4, -25.0), (temple_width / 2.4, -25.0)
    a = math.radians(angle_deg)
    rotation = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return points @ rotation.T + np.asarray(eye_mid)


# ---------------------------------------------------------------------------------------------- blending
def test_opaque_overlay_at_an_integer_shift_is_pasted_exactly(rng):
    base = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    overlay = np.dstack([rng.integers(0, 256, size=(10, 12, 3), dtype=np.uint8), np.full((10, 12), 255, np.uint8)])
    out = alpha_blend(base, overlay, [[1, 0, 7], [0, 1, 5]])
    expected = base.copy()
    expected[5:15, 7:19] = overlay[:, :, :3]
    np.testing.assert_array_equal(out, expected)
    assert out is not base


def test_half_transparent_overlay_blends_by_the_formula():
    base = np.full((20, 20, 3), (200, 100, 0), np.uint8)
    overlay = np.zeros((6, 6, 4), np.uint8)
    overlay[...] = (0, 50, 250, 102)  # alpha 0.4
    out = alpha_blend(base, overlay, [[1, 0, 4], [0, 1, 4]])
    # hand: 0.4 * overlay + 0.6 * base = (120, 80, 100)
    np.testing.assert_allclose(out[4:10, 4:10].astype(int), np.broadcast_to([120, 80, 100], (6, 6, 3)), atol=1)
    np.testing.assert_array_equal(out[:4], base[:4])


def test_pixels_outside_the_overlay_are_unchanged_bit_for_bit(rng):
    base = rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    h, w = 30, 50
    overlay = np.zeros((h, w, 4), np.uint8)
    overlay[:, :, :3] = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    overlay[8:22, 10:40, 3] = rng.integers(1, 256, size=(14, 30), dtype=np.uint8)  # a transparent margin around it
    angle, scale = math.radians(27.0), 1.7
    matrix = np.array([[scale * math.cos(angle), -scale * math.sin(angle), 70.3],
                       [scale * math.sin(angle), scale * math.cos(angle), 12.8]])
    out = alpha_blend(base, overlay, matrix)
    # independently: where does each base pixel centre come from in the overlay?
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))
    ys, xs = np.mgrid[0:120, 0:160]
    u = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    v = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    # bilinear sampling reads the four pixels around (u, v): outside the non-transparent block by more
    # than one pixel, nothing can leak in
    far = (u < 10 - 1) | (u > 39 + 1) | (v < 8 - 1) | (v > 21 + 1)
    assert far.sum() > 10000 and (~far).sum() > 500
    np.testing.assert_array_equal(out[far], base[far])
    # and inside the opaque block, the picture changed
    assert (out[~far] != base[~far]).any(axis=1).mean() > 0.5


def test_overlay_completely_off_the_image_changes_nothing(rng):
    base = rng.integers(0, 256, size=(30, 30, 3), dtype=np.uint8)
    overlay = np.full((10, 10, 4), 255, np.uint8)
    np.testing.assert_array_equal(alpha_blend(base, overlay, [[1, 0, 500], [0, 1, -300]]), base)


def test_bgra_base_composites_alpha_too():
    base = np.zeros((10, 10, 4), np.uint8)
    base[..., 3] = 51  # 0.2
    overlay = np.zeros((10, 10, 4), np.uint8)
    overlay[..., 3] = 128  # ~0.5
    out = alpha_blend(base, overlay, np.eye(3))
    # hand: a = 0.502 + 0.2 * 0.498 = 0.6016 -> 153.4
    assert np.all(np.abs(out[..., 3].astype(int) - 153) <= 1)


def test_alpha_blend_errors():
    with pytest.raises(ValueError, match="uint8 BGR"):
        alpha_blend(np.zeros((5, 5, 3), np.float32), np.zeros((2, 2, 4), np.uint8), np.eye(3))
    with pytest.raises(ValueError, match="uint8 BGR"):
        alpha_blend(np.zeros((5, 5), np.uint8), np.zeros((2, 2, 4), np.uint8), np.eye(3))
    with pytest.raises(ValueError, match="BGRA overlay"):
        alpha_blend(np.zeros((5, 5, 3), np.uint8), np.zeros((2, 2, 3), np.uint8), np.eye(3))
    with pytest.raises(ValueError, match=r"\(2, 3\) or \(3, 3\)"):
        alpha_blend(np.zeros((5, 5, 3), np.uint8), np.zeros((2, 2, 4), np.uint8), np.eye(2))


# ---------------------------------------------------------------------------------------------- placement
def test_face_width_from_temples_and_brows():
    points = synthetic_face(temple_width=200.0)
    assert face_width(points) == pytest.approx(200.0)
    # brow ends 2 * 200 / 2.4 = 166.7 apart, times 1.2
    assert face_width(points, "brows") == pytest.approx(1.2 * 400 / 2.4)
    with pytest.raises(ValueError, match="width_from"):
        face_width(points, "ears")
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        face_width(np.zeros((5, 2)))


def test_sunglasses_affine_level_face():
    matrix = sunglasses_affine(synthetic_face((150.0, 100.0), temple_width=200.0), (50, 100))
    # scale 200 / 100 = 2, no rotation; overlay centre (49.5, 24.5) -> eye midpoint (150, 100)
    np.testing.assert_allclose(matrix, [[2, 0, 150 - 99], [0, 2, 100 - 49]], atol=1e-9)
    # the overlay's outer edges land on the temples
    np.testing.assert_allclose(matrix @ [-0.5, 24.5, 1], [50, 100], atol=1e-9)
    np.testing.assert_allclose(matrix @ [99.5, 24.5, 1], [250, 100], atol=1e-9)


def test_sunglasses_affine_follows_a_tilted_head():
    points = synthetic_face((300.0, 200.0), temple_width=160.0, angle_deg=25.0)
    matrix = sunglasses_affine(points, (40, 80), width_scale=1.25)
    angle = math.degrees(math.atan2(matrix[1, 0], matrix[0, 0]))
    assert angle == pytest.approx(25.0, abs=1e-6)
    assert math.hypot(matrix[0, 0], matrix[1, 0]) == pytest.approx(1.25 * 160 / 80)
    np.testing.assert_allclose(matrix @ [39.5, 19.5, 1], [300, 200], atol=1e-9)


def test_add_sunglasses_darkens_both_eyes_of_every_face_and_nothing_far_away():
    image = np.full((300, 600, 3), 230, np.uint8)
    faces = np.stack([synthetic_face((150.0, 120.0), 80, 170), synthetic_face((450.0, 150.0), 70, 150, angle_deg=-12)])
    out = add_sunglasses(image, faces)
    assert out.shape == image.shape and out.dtype == np.uint8 and out is not image
    for face in faces:
        for eye in (face[36:42].mean(0), face[42:48].mean(0)):
            x, y = np.rint(eye).astype(int)
            assert out[y, x].mean() < 120, out[y, x]  # a dark lens over each eye
    np.testing.assert_array_equal(out[280:], image[280:])  # far below the glasses
    np.testing.assert_array_equal(out[:, 295:305], image[:, 295:305])  # between the two faces
    assert (image == 230).all()  # input untouched


def test_add_sunglasses_scales_down_big_overlays_smoothly():
    # a tiny face: the 512-pixel drawing is area-shrunk before placing; the lenses still cover the eyes
    image = np.full((80, 80, 3), 230, np.uint8)
    face = synthetic_face((40.0, 40.0), eye_distance=14.0, temple_width=30.0)
    face[36:42] = (40 - 7, 40) + (face[36:42] - face[36:42].mean(0)) * 0.2
    face[42:48] = (40 + 7, 40) + (face[42:48] - face[42:48].mean(0)) * 0.2
    out = add_sunglasses(image, [face])
    assert out[40, 33].mean() < 150 and out[40, 47].mean() < 150
    np.testing.assert_array_equal(out[60:], image[60:])


def test_add_sunglasses_without_faces_returns_a_copy():
    image = np.zeros((10, 10, 3), np.uint8)
    out = add_sunglasses(image, [])
    np.testing.assert_array_equal(out, image)
    assert out is not image


# ---------------------------------------------------------------------------------------------- pictures
def test_make_sunglasses_is_a_pair_of_dark_lenses():
    glasses = make_sunglasses(400)
    assert glasses.shape == (144, 400, 4) and glasses.dtype == np.uint8
    alpha = glasses[:, :, 3]
    cy = 72
    for cx in (200 - 94, 200 + 94):  # the lens centres: 0.235 of the width from the middle
        assert alpha[cy, cx] > 200
        assert glasses[cy, cx, :3].mean() < 110
    assert alpha[0, 0] == 0 and alpha[-1, -1] == 0 and alpha[-1, 200] == 0  # corners and below the bridge
    assert alpha[cy, :].max() == 255  # the rim is opaque
    # the frame is left-right symmetric (the highlight is not, its alpha nearly is)
    assert np.abs(alpha.astype(int) - alpha[:, ::-1].astype(int)).mean() < 6
    # cached, but every call gets its own copy
    glasses[...] = 0
    assert make_sunglasses(400)[cy, 106, 3] > 200
    with pytest.raises(ValueError, match="at least 32"):
        make_sunglasses(10)


def test_as_bgra_makes_white_transparent_and_keeps_alpha():
    picture = np.array([[[255, 255, 255], [0, 0, 0], [240, 250, 245], [100, 255, 255]]], np.uint8)
    out = as_bgra(picture)
    # hand: darkest channel 255 -> 0, 0 -> 255, 240 -> (15 / 25) * 255 = 153, 100 -> 255
    np.testing.assert_array_equal(out[0, :, 3], [0, 255, 153, 255])
    np.testing.assert_array_equal(out[:, :, :3], picture)
    bgra = np.dstack([picture, np.array([[1, 2, 3, 4]], np.uint8)])
    np.testing.assert_array_equal(as_bgra(bgra), bgra)
    gray_alpha = np.array([[[10, 200]]], np.uint8)
    np.testing.assert_array_equal(as_bgra(gray_alpha), [[[10, 10, 10, 200]]])
    np.testing.assert_array_equal(as_bgra(np.array([[[65535, 0, 257, 65535]]], np.uint16)), [[[255, 0, 1, 255]]])
    with pytest.raises(ValueError, match="unsupported dtype"):
        as_bgra(np.zeros((2, 2, 4), np.int32))


def test_load_overlay(tmp_path):
    picture = np.full((20, 30, 3), 255, np.uint8)
    picture[5:15, 5:25] = (20, 20, 20)
    cv2.imwrite(str(tmp_path / "glasses.png"), picture)
    out = load_overlay(tmp_path / "glasses.png")
    assert out.shape == (20, 30, 4)
    assert out[0, 0, 3] == 0 and out[10, 10, 3] == 255
    with pytest.raises(FileNotFoundError, match="no such overlay"):
        load_overlay(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(ValueError, match="not an image"):
        load_overlay(tmp_path / "notes.png")
