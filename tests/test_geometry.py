"""Tests for keypoints.geometry: the one horizontal flip agrees with its matrix and is its own inverse."""
from __future__ import annotations

import numpy as np

from keypoints.geometry import FLIP_PERMUTATION, apply_affine, flip_image, flip_keypoints, flip_matrix


def test_flip_keypoints_is_the_flip_matrix_then_the_permutation_and_its_own_inverse():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 95, size=(3, 68, 2)).astype(np.float32)
    flipped = flip_keypoints(points, 96)
    assert flipped.dtype == np.float32 and flipped.shape == points.shape
    np.testing.assert_array_equal(flipped, apply_affine(points, flip_matrix(96))[:, FLIP_PERMUTATION])
    np.testing.assert_allclose(flip_keypoints(flipped, 96), points, atol=1e-5)  # up to float32 rounding
    assert not np.shares_memory(flipped, points)


def test_flip_image_reverses_columns_of_one_image_or_a_batch():
    image = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(flip_image(image, batched=True), image[:, :, ::-1])
    np.testing.assert_array_equal(flip_image(image), image[:, ::-1])  # (H, W, C): the columns, not the channels
    assert flip_image(image).flags.c_contiguous and flip_image(image, batched=True).flags.c_contiguous
