"""Tests for keypoints.metrics (against hand-computed values) and keypoints.evaluate (an oracle network
on a generated test set: its errors are zero, or a known shift, so every metric is known in advance)."""
from __future__ import annotations

import numpy as np
import pytest
from keypoint_fixtures import (
    METRIC_KEYS,
    crop_geometry,
    image_to_crop,
    to_normalized,
    write_checkpoint,
    write_split,
)

from keypoints.evaluate import evaluate_checkpoint, evaluate_predictor
from keypoints.metrics import format_metrics, interocular_distance, nme_per_face, summarize
from keypoints.predictor import load_predictor
from tinynet.nn.module import Module

# ---------------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------------


def face(rng: np.random.Generator, eye_distance: float = 50.0) -> np.ndarray:
    """Random points with the outer eye corners (36, 45) exactly ``eye_distance`` apart (a 3-4-5 triangle)."""
    points = rng.uniform(0, 200, size=(68, 2))
    points[36] = [40.0, 60.0]
    points[45] = [40.0 + 0.8 * eye_distance, 60.0 + 0.6 * eye_distance]
    return points


def test_interocular_distance():
    rng = np.random.default_rng(0)
    true = np.stack([face(rng, 50.0), face(rng, 20.0)])
    np.testing.assert_allclose(interocular_distance(true), [50.0, 20.0])


def test_nme_of_a_shifted_face_is_shift_over_interocular():
    rng = np.random.default_rng(1)
    true = np.stack([face(rng, 50.0), face(rng, 25.0)])
    pred = true + np.array([3.0, 4.0])  # every point off by |d| = 5
    np.testing.assert_allclose(nme_per_face(pred, true), [5 / 50, 5 / 25], rtol=1e-12)
    # float32 input gives the same (computed in float64)
    np.testing.assert_allclose(nme_per_face(pred.astype(np.float32), true.astype(np.float32)), [0.1, 0.2], rtol=1e-5)


def test_nme_of_one_wrong_point_is_averaged_over_68():
    rng = np.random.default_rng(2)
    true = face(rng, 40.0)[None]
    pred = true.copy()
    pred[0, 10] += [0.0, 17.0]
    np.testing.assert_allclose(nme_per_face(pred, true), [17 / 68 / 40], rtol=1e-12)
    # the distance uses the TRUE eyes: moving a predicted eye corner is just an error, not a new scale
    pred = true.copy()
    pred[0, 36] += [6.0, 8.0]
    np.testing.assert_allclose(nme_per_face(pred, true), [10 / 68 / 40], rtol=1e-12)


def test_summarize_against_hand_values():
    rng = np.random.default_rng(3)
    wanted = np.array([1, 2, 3, 4, 5, 6, 7, 8, 12, 20]) / 100  # NME of each face
    true = np.stack([face(rng, 40.0) for _ in wanted])
    pred = true + (wanted * 40.0)[:, None, None] * np.array([0.6, 0.8])  # |shift| = NME * 40
    true_norm = rng.normal(size=(10, 136))
    result = summarize(pred, true, true_norm + 0.25, true_norm)
    assert set(result) == {"faces", "nme_normalization", *METRIC_KEYS}
    assert result["faces"] == 10 and result["nme_normalization"] == "interocular"
    assert result["nme_percent"] == pytest.approx(6.8)  # (1+...+8+12+20) / 10
    assert result["nme_median_percent"] == pytest.approx(5.5)  # (5 + 6) / 2
    assert result["nme_p90_percent"] == pytest.approx(12.8)  # linear: rank 0.9 * 9 = 8.1 -> 12 + 0.1 * 8
    assert result["failure_rate_percent"] == pytest.approx(20.0)  # 12 % and 20 % are above 10 %
    assert result["nmse"] == pytest.approx(0.0625)  # 0.25 ** 2
    assert "nmse" not in summarize(pred, true)
    text = format_metrics(result)
    assert "NME 6.80 %" in text and "median 5.50 %" in text and "p90 12.80 %" in text and "20.0 %" in text
    assert "of 10 faces" in text and "nMSE 0.0625" in text


@pytest.mark.parametrize(
    "pred_shape, true_shape",
    [((2, 68, 2), (3, 68, 2)), ((2, 68, 3), (2, 68, 3)), ((2, 5, 2), (2, 6, 2)), ((68, 2), (68, 2))],
)
def test_nme_shape_errors(pred_shape, true_shape):
    with pytest.raises(ValueError, match=r"\(N, K, 2\)"):
        nme_per_face(np.ones(pred_shape), np.ones(true_shape))


def test_nme_coincident_eyes():
    true = np.random.default_rng(4).uniform(0, 100, size=(1, 68, 2))
    true[0, 45] = true[0, 36]
    with pytest.raises(ValueError, match="36 and 45"):
        nme_per_face(true + 1, true)


# ---------------------------------------------------------------------------------------------------
# evaluate: an oracle network on a generated test set
# ---------------------------------------------------------------------------------------------------

SHAPES = [(80, 64), (100, 130), (120, 120), (150, 200), (61, 97)]
LEVELS = [40, 80, 120, 160, 200]  # flat images: the crop's mean tells the oracle which face it sees


class Oracle(Module):
    """Knows every test face's true normalised crop coordinates (computed by hand) and returns them,
    plus ``shift`` crop pixels."""

    def __init__(self, true: np.ndarray, shift=(0.0, 0.0)):
        super().__init__()
        self.targets = np.stack(
            [to_normalized(image_to_crop(points, h, w)) for points, (h, w) in zip(true, SHAPES)]
        )  # (N, 68, 2)
        self.shift = np.asarray(shift) / (50 * 96 / 224)

    def forward(self, x: np.ndarray) -> np.ndarray:
        index = np.rint(x.reshape(len(x), -1).mean(axis=1) * 255 / 40).astype(int) - 1
        return (self.targets[index] + self.shift).reshape(len(x), 136).astype(np.float32)


@pytest.fixture(scope="module")
def oracle_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("oracle")
    rng = np.random.default_rng(11)
    write_split(root, "training", SHAPES[:2], rng)  # the dataset wants both splits
    true = write_split(root, "test", SHAPES, rng, values=LEVELS)
    checkpoint = root / "best.npz"
    write_checkpoint(checkpoint)
    return root, true, checkpoint


def test_oracle_scores_zero(oracle_data):
    root, true, checkpoint = oracle_data
    predictor = load_predictor(checkpoint)
    predictor.model = Oracle(true)
    metrics = evaluate_predictor(predictor, root)
    assert set(METRIC_KEYS) <= set(metrics) and metrics["faces"] == len(SHAPES)
    assert metrics["nme_percent"] < 1e-4 and metrics["nme_p90_percent"] < 1e-4
    assert metrics["failure_rate_percent"] == 0.0
    assert metrics["nmse"] < 1e-10
    assert metrics["flip_test"] is False and metrics["input_size"] == 96


def test_oracle_with_a_known_shift(oracle_data):
    """Off by (2, -1) crop pixels: in original pixels that is (2 W/W', -H/H'), W' and H' the rescaled
    sides; the nMSE is the mean of the squared normalised shifts, ((2/h)^2 + (1/h)^2) / 2, h = 50*96/224."""
    root, true, checkpoint = oracle_data
    predictor = load_predictor(checkpoint)
    predictor.model = Oracle(true, shift=(2.0, -1.0))
    metrics = evaluate_predictor(predictor, root, limit=4)
    expected = []
    for points, (h, w) in zip(true[:4], SHAPES[:4]):
        new_h, new_w, _, _ = crop_geometry(h, w)
        error = np.hypot(2.0 * w / new_w, 1.0 * h / new_h)
        expected.append(error / np.linalg.norm(points[36].astype(np.float64) - points[45]))
    expected = 100 * np.array(expected)
    assert metrics["faces"] == 4
    assert metrics["nme_percent"] == pytest.approx(expected.mean(), rel=1e-4)
    assert metrics["nme_median_percent"] == pytest.approx(np.median(expected), rel=1e-4)
    assert metrics["nme_p90_percent"] == pytest.approx(np.percentile(expected, 90), rel=1e-4)
    assert metrics["failure_rate_percent"] == pytest.approx(100 * np.mean(expected > 10))
    half = 50 * 96 / 224
    assert metrics["nmse"] == pytest.approx(((2 / half) ** 2 + (1 / half) ** 2) / 2, rel=1e-4)


def test_evaluate_checkpoint_keys(oracle_data):
    root, _, checkpoint = oracle_data
    metrics = evaluate_checkpoint(checkpoint, root, flip=True, limit=2)
    assert set(METRIC_KEYS) <= set(metrics)
    assert metrics["faces"] == 2 and metrics["flip_test"] is True and metrics["checkpoint"] == str(checkpoint)
    assert all(np.isfinite(metrics[key]) for key in METRIC_KEYS)
