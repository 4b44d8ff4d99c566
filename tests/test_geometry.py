"""Tests for keypoints.geometry: the one horizontal flip agrees with its matrix and is its own inverse."""
from __future__ import annotations

import numpy as np

import cv2
import pytest

from keypoints.geometry import (FLIP_PERMUTATION, apply_affine, flip_image, flip_keypoints, flip_matrix,
                                rotation_scale_about, translation)


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


def test_rotation_scale_about_is_opencvs_matrix():
    for cx, cy, degrees, scale in ((10.0, 20.0, 30.0, 1.5), (0.0, 0.0, -90.0, 0.5), (47.5, 3.0, 0.0, 1.0)):
        np.testing.assert_allclose(rotation_scale_about(cx, cy, degrees, scale)[:2],
                                   cv2.getRotationMatrix2D((cx, cy), degrees, scale), rtol=0, atol=1e-12)
        np.testing.assert_array_equal(rotation_scale_about(cx, cy, degrees, scale)[2], [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(translation(3.0, -4.0), [[1.0, 0.0, 3.0], [0.0, 1.0, -4.0], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize("centre_shape, turn_shape", [((), (4, 3)), ((4, 1), (3,)), ((4, 3), (4, 3))])
def test_translation_and_rotation_scale_about_broadcast_as_one_matrix_per_element(centre_shape, turn_shape):
    """Arrays give the stack of the matrices of their elements (what crop_matrices builds for N faces, C crops)."""
    rng = np.random.default_rng(0)
    cx, cy = rng.uniform(-50, 50, centre_shape), rng.uniform(-50, 50, centre_shape)
    degrees, scale = rng.uniform(-180, 180, turn_shape), rng.uniform(0.1, 3.0, turn_shape)
    shape = np.broadcast_shapes(centre_shape, turn_shape)
    stacked = rotation_scale_about(cx, cy, degrees, scale)
    moved = translation(cx, cy)
    assert stacked.shape == shape + (3, 3) and moved.shape == centre_shape + (3, 3)
    x, y, turn, zoom = np.broadcast_arrays(cx, cy, degrees, scale)
    for index in np.ndindex(shape):
        expected = cv2.getRotationMatrix2D((float(x[index]), float(y[index])), float(turn[index]), float(zoom[index]))
        np.testing.assert_allclose(stacked[index][:2], expected, rtol=0, atol=1e-5)  # OpenCV takes the centre as float32
        np.testing.assert_array_equal(stacked[index][2], [0.0, 0.0, 1.0])
    for index in np.ndindex(centre_shape):
        np.testing.assert_array_equal(moved[index], [[1.0, 0.0, cx[index]], [0.0, 1.0, cy[index]], [0.0, 0.0, 1.0]])
