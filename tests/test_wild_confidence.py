"""Confidence per face (keypoints.wild.confidence): the flip disagreement by hand, the logistic map, the
calibration fit, the hook in predict_faces, and (with the real data) the ranking on the test set."""
from __future__ import annotations

import numpy as np
import pytest

from keypoint_fixtures import canonical_face, real_data_dir

from keypoints.predictor import Prediction
from keypoints.wild.confidence import (
    calibrate,
    calibrate_checkpoint,
    confidence_from_disagreement,
    face_confidence,
    fit_calibration,
    flip_disagreement,
    ranking_report,
)


def test_flip_disagreement_by_hand():
    face = canonical_face(200)  # outer eye corners 36 and 45: 0.24 * 200 + 2 * 0.04 * 200 = 64 pixels apart
    eyes = np.linalg.norm(face[45] - face[36])
    shifted = face + [3.0, 4.0]  # every point 5 pixels away; the average's eye distance is unchanged
    np.testing.assert_allclose(flip_disagreement(face[None], shifted[None]), [5.0 / eyes])
    assert flip_disagreement(face[None], face[None])[0] == 0.0
    collapsed = np.zeros((1, 68, 2))
    assert flip_disagreement(collapsed, collapsed)[0] == np.inf
    with pytest.raises(ValueError, match=r"\(N, 68, 2\)"):
        flip_disagreement(face, face)


def test_confidence_is_a_decreasing_map_into_0_1():
    d = np.array([0.0, 1e-3, 0.01, 0.03, 0.1, 0.5, np.inf])
    a, b = -4.0, -2.0
    c = confidence_from_disagreement(d, (a, b))
    assert c[0] == 1.0 and c[-1] == 0.0
    assert ((c >= 0) & (c <= 1)).all() and (np.diff(c) < 0).all()
    assert c[3] == pytest.approx(1 / (1 + np.exp(-(a + b * np.log(0.03)))))
    face = canonical_face(200)
    both = face_confidence(np.stack([face, face]), np.stack([face, face + 30.0]), (a, b))
    assert both[0] == 1.0 and 0.0 <= both[1] < 0.1


def test_fit_calibration_recovers_a_known_logistic_model(rng):
    d = np.exp(rng.uniform(np.log(0.005), np.log(0.5), 20000))
    truth = (-4.0, -2.0)
    success = rng.random(d.size) < 1 / (1 + np.exp(-(truth[0] + truth[1] * np.log(d))))
    a, b = fit_calibration(d, success, l2=0.0)
    assert a == pytest.approx(truth[0], abs=0.2) and b == pytest.approx(truth[1], abs=0.08)
    with pytest.raises(ValueError, match="positive and finite"):
        fit_calibration([0.0, 0.1], [True, False])
    with pytest.raises(ValueError, match="same length"):
        fit_calibration([0.1], [True])


def test_ranking_report_by_hand():
    confidence = np.arange(20) / 20.0  # the two least confident are faces 0 and 1
    failed = np.zeros(20, bool)
    failed[[0, 5, 6]] = True
    report = ranking_report(confidence, failed, share=0.1)
    assert report["least_confident"] == 2
    assert report["failure_rate_least_confident"] == 0.5 and report["failure_rate_rest"] == pytest.approx(2 / 18)
    assert report["failure_rate_all"] == pytest.approx(3 / 20)


class ScriptedPredictor:
    """A stand-in for a flip-averaging predictor: face i's plain and mirrored passes are the true face
    shifted by +-shift[i] / 2 pixels along x (so its flip disagreement is shift[i] / eye distance), and its
    averaged points are the true face plus error[i] pixels along y."""

    flip = True

    def __init__(self, face, shift, error):
        self.face, self.shift, self.error = face, np.asarray(shift, float), np.asarray(error, float)

    def predict_details(self, images):
        n = len(images)
        assert n == len(self.shift)
        offsets = np.zeros((n, 1, 2))
        offsets[:, 0, 0] = self.shift / 2
        averaged = self.face + np.stack([np.zeros(n), self.error], axis=1)[:, None, :]
        return Prediction(averaged, None, None, averaged - offsets, averaged + offsets)


def test_calibrate_fits_disagreement_against_failures(rng):
    face = canonical_face(200)
    eyes = np.linalg.norm(face[45] - face[36])  # NME = error / eyes, disagreement = shift / eyes
    d = np.exp(rng.uniform(np.log(0.005), np.log(0.5), 4000))
    fails = rng.random(d.size) >= 1 / (1 + np.exp(-(-4.0 - 2.0 * np.log(d))))
    error = np.where(fails, 0.15, 0.05) * eyes  # NME 15 % or 5 %: over or under the 10 % threshold
    predictor = ScriptedPredictor(face, d * eyes, error)
    found = calibrate(predictor, [None] * d.size, np.repeat(face[None], d.size, axis=0))
    np.testing.assert_allclose(found.disagreement, d, rtol=1e-9)
    np.testing.assert_allclose(found.nme, np.where(fails, 0.15, 0.05), rtol=1e-9)
    a, b = found.calibration
    assert a == pytest.approx(-4.0, abs=0.3) and b == pytest.approx(-2.0, abs=0.12)
    # a smoke run whose faces all fail (or all succeed) cannot be calibrated: no fit, and the reason
    few = calibrate(ScriptedPredictor(face, d[:50] * eyes, np.full(50, 0.2 * eyes)), [None] * 50,
                    np.repeat(face[None], 50, axis=0))
    assert few.calibration is None and "0 of 50 usable faces under the 10 % threshold" in few.reason
    predictor.flip = False
    with pytest.raises(ValueError, match="flip"):
        calibrate(predictor, [None] * d.size, np.repeat(face[None], d.size, axis=0))


def test_predict_faces_gives_a_confidence_with_flip_averaging_and_a_calibration(tmp_path):
    cv2 = pytest.importorskip("cv2")
    cbook = pytest.importorskip("matplotlib.cbook")
    from keypoint_fixtures import save_constant_face_model

    from keypoints import load_predictor, predict_faces
    from keypoints.checkpoint import update_meta

    portrait = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), cv2.IMREAD_COLOR)
    shipped = load_predictor(flip=True)
    assert shipped.confidence_calibration is not None  # the packaged model was calibrated
    (face,) = predict_faces(shipped, portrait)
    assert isinstance(face.confidence, float) and 0.0 < face.confidence < 1.0
    (plain,) = predict_faces(load_predictor(flip=False), portrait)
    assert plain.confidence is None
    # a checkpoint without a calibration gives no confidence; with one, the logistic map of its disagreement
    path = tmp_path / "constant.npz"
    save_constant_face_model(path)
    predictor = load_predictor(path, flip=True)
    (uncalibrated,) = predict_faces(predictor, portrait)
    assert predictor.confidence_calibration is None and uncalibrated.confidence is None
    update_meta(path, confidence_calibration=[-4.0, -2.0])
    predictor = load_predictor(path, flip=True)
    prediction = predictor.predict_details([portrait[100:400, 150:400]])
    d = flip_disagreement(prediction.plain, prediction.mirrored)[0]
    (calibrated,) = predict_faces(predictor, portrait)
    assert calibrated.confidence == pytest.approx(1 / (1 + np.exp(4.0 + 2.0 * np.log(d))), rel=1e-6)


@pytest.mark.integration
def test_least_confident_test_faces_fail_far_more_often():
    """The ranking the README reports, on the first 300 test faces: the 10 % least confident fail (NME >
    10 %) at least twice as often as the rest."""
    from keypoints import load_predictor
    from keypoints.evaluate import load_split
    from keypoints.metrics import nme_per_face

    images, true, _ = load_split(real_data_dir(), "test", limit=300)
    predictor = load_predictor(flip=True)
    prediction = predictor.predict_details(images)
    confidence = face_confidence(prediction.plain, prediction.mirrored, predictor.confidence_calibration)
    report = ranking_report(confidence, nme_per_face(prediction.points, true) > 0.10)
    assert report["failure_rate_least_confident"] >= 2 * report["failure_rate_rest"], report


@pytest.mark.integration
def test_calibrate_checkpoint_stores_the_fit_and_keeps_the_weights(tmp_path):
    """What training does at its end, on a copy of the shipped model and the 346 faces its run held out: the
    fit lands in meta.confidence_calibration (the shipped one to 3 digits), every array stays bit for bit
    (float16 included). Not closer: the network's inference products run on NumPy's BLAS with the threads
    the process has, OpenBLAS's rounding depends on that count, and a process that trained before (as
    training does, and as this suite does) has it at one thread (tinynet.blas): the fit then moves by 3e-4
    of itself."""
    import shutil

    import tinynet
    from keypoints.data import FacialKeypointsDataset
    from keypoints.predictor import PRETRAINED
    from keypoints.recipes import RECIPES, validation_split

    path = tmp_path / "model.npz"
    shutil.copy(PRETRAINED, path)
    before = tinynet.load(path)
    before["meta"].pop("confidence_calibration", None)
    tinynet.save(before, path)
    training = FacialKeypointsDataset(real_data_dir(), "training")
    _, held_out = validation_split(len(training), RECIPES["default"])  # the faces the shipped run held out
    assert len(held_out) == 346
    found = calibrate_checkpoint(path, training, held_out)
    after = tinynet.load(path)
    assert found.calibration is not None and found.calibration[1] < 0
    assert after["meta"]["confidence_calibration"] == list(found.calibration)
    np.testing.assert_allclose(found.calibration, tinynet.load(PRETRAINED)["meta"]["confidence_calibration"], rtol=1e-3)
    for name, array in before["model"].items():
        assert after["model"][name].dtype == array.dtype and np.array_equal(after["model"][name], array), name
