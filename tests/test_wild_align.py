"""Aligned face chips (keypoints.wild.align): the eyes land on the template in the chip's pixels, a
rotated photo gives the same upright chip, and faces too small or broken are flagged."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from keypoint_fixtures import canonical_face

from keypoints.wild.align import AlignError, align_face, align_faces, similarity_transform

# the ArcFace 112 template, written out from InsightFace's arcface_dst: eyes, and the mouth corners' mean
EYES_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014]])
MOUTH_112 = np.array([(41.5493 + 70.7299) / 2, (92.3655 + 92.2041) / 2])


def face_on_template(angle: float, scale: float, shift) -> np.ndarray:
    """A 68-point face whose eye centres and mouth centre are exactly the template moved by a similarity
    (rotation ``angle`` degrees, ``scale`` photo pixels per template pixel, then ``shift``)."""
    face = canonical_face(112)
    target = np.vstack([EYES_112, MOUTH_112])
    for rows, centre in zip((slice(36, 42), slice(42, 48), slice(48, 60)), target):  # the drawn eyes and
        face[rows] += centre - face[rows].mean(0)  # mouth, each moved onto its template position
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return face @ (scale * np.array([[c, s], [-s, c]])) + np.asarray(shift, float)


def blob_centres(chip: np.ndarray) -> np.ndarray:
    """Intensity-weighted centres of the bright blobs in the left and right halves of a gray chip."""
    centres = []
    for half in (slice(0, chip.shape[1] // 2), slice(chip.shape[1] // 2, None)):
        part = chip[: int(0.7 * chip.shape[0]), half].astype(np.float64)
        part = np.where(part > 0.5 * part.max(), part, 0.0)
        ys, xs = np.mgrid[: part.shape[0], : part.shape[1]]
        offset = 0 if half.start == 0 else chip.shape[1] // 2
        centres.append([(xs * part).sum() / part.sum() + offset, (ys * part).sum() / part.sum()])
    return np.array(centres)


@pytest.mark.parametrize("angle, scale, size", [(0, 2.0, 112), (35, 1.5, 112), (-70, 3.0, 224), (170, 2.5, 96)])
def test_the_eyes_land_on_the_template_within_a_pixel(angle, scale, size):
    face = face_on_template(angle, scale, (300, 260))
    photo = np.zeros((600, 640), np.float32)
    for centre in (face[36:42].mean(0), face[42:48].mean(0)):  # a bright blob on each eye centre
        ys, xs = np.mgrid[:600, :640]
        photo += np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * (2.0 * scale) ** 2))
    aligned = align_face(photo, face, size)
    assert aligned.chip.shape == (size, size) and aligned.chip.dtype == np.float32
    np.testing.assert_allclose(blob_centres(aligned.chip), EYES_112 * size / 112, atol=1.0)
    # and the points themselves, moved by the returned matrix, sit on the template exactly
    moved = face @ aligned.matrix[:, :2].T + aligned.matrix[:, 2]
    np.testing.assert_allclose(moved[36:42].mean(0), EYES_112[0] * size / 112, atol=1e-6)
    np.testing.assert_allclose(moved[48:60].mean(0), MOUTH_112 * size / 112, atol=1e-6)


def test_a_rotated_photo_gives_the_same_upright_chip():
    cbook = pytest.importorskip("matplotlib.cbook")
    photo = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), cv2.IMREAD_COLOR)
    face = face_on_template(0, 2.0, (145, 110))  # the portrait's face is about there; only geometry matters
    turn = cv2.getRotationMatrix2D((256.0, 300.0), 40.0, 1.0)  # (2, 3) photo -> rotated photo
    rotated = cv2.warpAffine(photo, turn, (512, 600), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    rotated_face = face @ turn[:, :2].T + turn[:, 2]
    upright, turned = align_face(photo, face, 112), align_face(rotated, rotated_face, 112)
    moved = rotated_face @ turned.matrix[:, :2].T + turned.matrix[:, 2]
    assert abs(moved[36:42, 1].mean() - moved[42:48, 1].mean()) < 0.5  # the eyes level again
    difference = np.abs(upright.chip.astype(np.float64) - turned.chip.astype(np.float64))
    assert difference[8:-8, 8:-8].mean() < 6.0  # two resamplings apart, not a rotated picture


def test_a_face_too_small_is_flagged_and_the_others_are_still_aligned():
    photo = np.zeros((200, 300, 3), np.uint8)
    small, large = face_on_template(0, 0.2, (10, 10)), face_on_template(0, 1.2, (100, 20))
    with pytest.raises(AlignError, match="too small to align"):
        align_face(photo, small, 112)
    broken = large.copy()
    broken[40] = np.nan
    results = align_faces(photo, [small, large, broken], size=64)
    assert results[0].chip is None and "too small" in results[0].error
    assert results[1].chip.shape == (64, 64, 3) and results[1].error is None
    assert results[2].chip is None and "not finite" in results[2].error


def test_bad_arguments():
    face = face_on_template(0, 1.0, (50, 50))
    with pytest.raises(ValueError, match="at least 16"):
        align_face(np.zeros((100, 100)), face, 8)
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        align_face(np.zeros((100, 100)), face[:5], 112)
    with pytest.raises(ValueError, match="image array"):
        align_faces(np.zeros((0, 10)), [face])


def test_similarity_transform_never_mirrors(rng):
    source = rng.normal(size=(3, 2)) * 20
    mirrored = source * [-1, 1]  # only a reflection maps one onto the other exactly
    matrix = similarity_transform(source, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0
    exact = similarity_transform(source, 1.7 * source @ np.array([[0.6, 0.8], [-0.8, 0.6]]) + [3, -4])
    np.testing.assert_allclose(exact, [[1.7 * 0.6, -1.7 * 0.8, 3], [1.7 * 0.8, 1.7 * 0.6, -4]], atol=1e-9)
