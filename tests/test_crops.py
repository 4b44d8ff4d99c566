"""keypoints.crops: validation, test evaluation and the predictor read the same crops, bit for bit.

Validation cuts its crops from the training cache (``prepare_faces`` -> ``DataLoader(center=True)`` ->
``crop_sample(center=True)``); test evaluation sends the test images through the ``Predictor``
(``evaluate_predictor`` -> ``predict_details``); the predictor preprocesses one image at a time
(``Predictor.preprocess``). All three go through ``rescale_face`` and the centre window, and must agree.
"""
from __future__ import annotations

import numpy as np
import pytest
from keypoint_fixtures import write_dataset

from keypoints.crops import center_crop, rescale_face, rescale_size
from keypoints.data import FacialKeypointsDataset, prepare_faces
from keypoints.evaluate import evaluate_predictor
from keypoints.geometry import apply_affine, denormalize_keypoints
from keypoints.loader import DataLoader
from keypoints.models import naimishnet
from keypoints.predictor import Predictor


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("crops") / "data", n_train=6, n_test=6)


def validation_batch(dataset, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(crops (N, S, S), targets (N, 68, 2) in crop pixels, crop -> original pixels (N, 2, 3))``."""
    faces = prepare_faces(dataset, size, workers=1)
    ((x, y),) = list(DataLoader(faces, len(faces), center=True, prefetch=False))
    return x[:, 0], denormalize_keypoints(y.reshape(-1, 68, 2), size), faces.center_crop_to_original()


@pytest.mark.parametrize("size", [96, 224])
def test_validation_crops_equal_the_predictors(root, size):
    dataset = FacialKeypointsDataset(root, "training")
    crops, targets, to_original = validation_batch(dataset, size)
    predictor = Predictor(naimishnet(size, seed=0), {"input_size": size, "rescale": rescale_size(size)})
    for i in range(len(dataset)):
        crop, affine = predictor.preprocess(dataset[i]["image"])
        np.testing.assert_array_equal(crop, crops[i])
        np.testing.assert_allclose(np.linalg.inv(affine)[:2], to_original[i], rtol=0, atol=1e-12)
        np.testing.assert_allclose(apply_affine(dataset.keypoints[i], affine), targets[i], rtol=0, atol=1e-4)


def test_test_evaluation_reads_the_validation_crops(root, monkeypatch):
    """``evaluate_predictor`` (no flip, no refinement) sends the network exactly the crops validation would
    cut from the same images."""
    dataset = FacialKeypointsDataset(root, "test")
    crops, _, _ = validation_batch(dataset, 96)
    predictor = Predictor(naimishnet(96, seed=0), {"input_size": 96, "rescale": rescale_size(96)})
    seen = []
    real_network = predictor._network

    def recording(batch, batch_size):
        seen.append(batch.copy())
        return real_network(batch, batch_size)

    monkeypatch.setattr(predictor, "_network", recording)
    evaluate_predictor(predictor, root)
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], crops)


def test_rescale_face_and_center_crop_shapes_and_maps():
    image = np.random.default_rng(0).random((130, 100), dtype=np.float32)
    rescaled, to_rescaled = rescale_face(image, 107)
    assert rescaled.shape == (139, 107) and rescaled.dtype == np.float32  # int(107 * 130 / 100) = 139
    crop, to_crop = center_crop(rescaled, 96)
    assert crop.shape == (96, 96) and crop.dtype == np.float32 and not np.shares_memory(crop, rescaled)
    top, left = 22, 6  # round((139 - 96) / 2) = round(21.5) = 22 (half to even), round(5.5) = 6
    np.testing.assert_array_equal(crop, rescaled[top : top + 96, left : left + 96])
    np.testing.assert_array_equal(to_crop[:2, 2], [-left, -top])
    with pytest.raises(ValueError, match="does not fit"):
        center_crop(rescaled, 120)
