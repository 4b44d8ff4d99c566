"""Confidence per face (keypoints.wild.confidence): the test frames' spread and the flip disagreement by hand,
the logistic map, the calibration fit on either signal, the hook in predict_faces, and (with the real data) the
ranking on the test set."""
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
    frame_spread,
    prediction_confidence,
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


def test_frame_spread_by_hand():
    face = canonical_face(200)
    eyes = np.linalg.norm(face[45] - face[36])
    # four frames' reads, each 5 pixels from their average (the face itself): right, left, down, up
    reads = np.stack([face + offset for offset in ([5.0, 0.0], [-5.0, 0.0], [0.0, 5.0], [0.0, -5.0])])[:, None]
    np.testing.assert_allclose(frame_spread(reads), [5.0 / eyes])
    # two faces at once, the second read alike four times: no spread
    both = np.concatenate([reads, np.repeat(face[None, None], 4, axis=0)], axis=1)
    np.testing.assert_allclose(frame_spread(both), [5.0 / eyes, 0.0])
    assert frame_spread(np.zeros((3, 1, 68, 2)))[0] == np.inf  # collapsed points: no eye distance
    with pytest.raises(ValueError, match=r"J >= 2 frames, shape \(J, N, 68, 2\)"):
        frame_spread(reads[:1])


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
    """A stand-in for a predictor whose reads of face i disagree by shift[i] pixels: with flip averaging, its
    plain and mirrored passes are the true face shifted by +-shift[i] / 2 along x (so its flip disagreement is
    shift[i] / eye distance); with test frames, its four frames' reads are the face shifted by shift[i] right,
    left, down and up (so their spread is shift[i] / eye distance). Its points are the true face plus error[i]
    pixels along y."""

    def __init__(self, face, shift, error, flip=True, frames=False):
        self.face, self.shift, self.error = face, np.asarray(shift, float), np.asarray(error, float)
        self.flip, self.test_frames, self.refine_passes = flip, ((0.0, 0.0, 1.0, 0.0),) * 4 if frames else (), 1

    def predict_details(self, images):
        n = len(images)
        assert n == len(self.shift)
        averaged = self.face + np.stack([np.zeros(n), self.error], axis=1)[:, None, :]
        plain = mirrored = reads = None
        if self.flip:
            offsets = np.zeros((n, 1, 2))
            offsets[:, 0, 0] = self.shift / 2
            plain, mirrored = averaged - offsets, averaged + offsets
        if self.test_frames:
            unit = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
            reads = averaged[None] + unit[:, None, None, :] * self.shift[None, :, None, None]
        return Prediction(averaged, None, None, plain, mirrored, reads)


@pytest.mark.parametrize("signal", ["test_frames", "flip"])
def test_calibrate_fits_disagreement_against_failures(rng, signal):
    face = canonical_face(200)
    eyes = np.linalg.norm(face[45] - face[36])  # NME = error / eyes, disagreement = shift / eyes
    d = np.exp(rng.uniform(np.log(0.005), np.log(0.5), 4000))
    fails = rng.random(d.size) >= 1 / (1 + np.exp(-(-4.0 - 2.0 * np.log(d))))
    error = np.where(fails, 0.15, 0.05) * eyes  # NME 15 % or 5 %: over or under the 10 % threshold
    predictor = ScriptedPredictor(face, d * eyes, error, flip=signal == "flip", frames=signal == "test_frames")
    found = calibrate(predictor, [None] * d.size, np.repeat(face[None], d.size, axis=0))
    assert found.signal == signal
    np.testing.assert_allclose(found.disagreement, d, rtol=1e-9)
    np.testing.assert_allclose(found.nme, np.where(fails, 0.15, 0.05), rtol=1e-9)
    a, b = found.calibration
    assert a == pytest.approx(-4.0, abs=0.3) and b == pytest.approx(-2.0, abs=0.12)
    # a smoke run whose faces all fail (or all succeed) cannot be calibrated: no fit, and the reason
    few = calibrate(ScriptedPredictor(face, d[:50] * eyes, np.full(50, 0.2 * eyes), flip=signal == "flip",
                                      frames=signal == "test_frames"), [None] * 50, np.repeat(face[None], 50, axis=0))
    assert few.calibration is None and "0 of 50 usable faces under the 10 % threshold" in few.reason


def test_calibrate_reads_the_test_frames_when_there_are_some_and_needs_several_reads(rng):
    face = canonical_face(200)
    eyes = np.linalg.norm(face[45] - face[36])
    shift = rng.uniform(0.5, 5.0, 40)
    both = ScriptedPredictor(face, shift, np.where(np.arange(40) < 20, 0.05, 0.15) * eyes, flip=True, frames=True)
    found = calibrate(both, [None] * 40, np.repeat(face[None], 40, axis=0))
    assert found.signal == "test_frames"
    np.testing.assert_allclose(found.disagreement, shift / eyes)  # the frames' spread, not half of it (flip)
    once = ScriptedPredictor(face, shift, shift, flip=False, frames=False)
    with pytest.raises(ValueError, match="this predictor reads each face once"):
        calibrate(once, [None] * 40, np.repeat(face[None], 40, axis=0))


def test_predict_faces_gives_a_confidence_from_its_calibrated_signal(tmp_path):
    cv2 = pytest.importorskip("cv2")
    cbook = pytest.importorskip("matplotlib.cbook")
    from keypoint_fixtures import save_constant_face_model

    from keypoints import load_predictor, predict_faces
    from keypoints.checkpoint import update_meta

    portrait = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), cv2.IMREAD_COLOR)
    shipped = load_predictor()
    # the packaged model was calibrated on its test frames' spread (each frame's read flip-averaged)
    assert shipped.confidence_calibration is not None and shipped.confidence_signal == "test_frames" and shipped.flip
    (face,) = predict_faces(shipped, portrait)
    assert isinstance(face.confidence, float) and 0.0 < face.confidence < 1.0
    # settings that read no test frames, or read them otherwise than the fit did, give none, and say why
    for settings, why in (({"test_frames": ()}, "read none"), ({"refine_passes": 0}, "read none"),
                          ({"speed": "fast"}, "read none"), ({"flip": False}, "read them otherwise"),
                          ({"test_frames": [[0.08, 0.0, 1.0, 0.0], [-0.08, 0.0, 1.0, 0.0]]}, "read them otherwise")):
        reader = load_predictor(**settings)
        assert reader.confidence_calibration is None and why in reader.no_confidence_reason, settings
        assert predict_faces(reader, portrait)[0].confidence is None
    assert shipped.no_confidence_reason is None
    # a checkpoint without a calibration gives no confidence; with one, the logistic map of its disagreement
    path = tmp_path / "constant.npz"
    save_constant_face_model(path)
    predictor = load_predictor(path, flip=True)
    (uncalibrated,) = predict_faces(predictor, portrait)
    assert predictor.confidence_calibration is None and uncalibrated.confidence is None
    assert "this model has no confidence calibration" in predictor.no_confidence_reason
    update_meta(path, confidence_calibration=[-4.0, -2.0])
    predictor = load_predictor(path, flip=True)
    prediction = predictor.predict_details([portrait[100:400, 150:400]])
    d = flip_disagreement(prediction.plain, prediction.mirrored)[0]
    (calibrated,) = predict_faces(predictor, portrait)
    assert calibrated.confidence == pytest.approx(1 / (1 + np.exp(4.0 + 2.0 * np.log(d))), rel=1e-6)
    # the same network calibrated on its test frames: the logistic map of their spread, with or without flip
    frames = [[0.04, 0.0, 1.0, 0.0], [-0.04, 0.0, 1.0, 0.0], [0.0, 0.04, 1.0, 0.0]]
    update_meta(path, confidence_calibration=[-4.0, -2.0], confidence_signal="test_frames", test_frames=frames,
                refine_passes=1)
    from keypoints.image import to_gray_float32
    from keypoints.wild.detection import detect_faces
    from keypoints.wild.face_crop import crop_face, pad_box

    gray = to_gray_float32(portrait)
    (box,) = detect_faces(portrait)
    crop = crop_face(gray, pad_box(box, gray.shape))  # the crop predict_faces reads (a square one: the
    for flip in (False, True):  # rescale's two axes then scale alike, and the spread is the same in any pixels)
        update_meta(path, flip_test=flip)  # a calibration holds for the flip averaging it was fitted with
        predictor = load_predictor(path)
        assert predictor.flip is flip and load_predictor(path, flip=not flip).confidence_calibration is None
        prediction = predictor.predict_details([crop])
        assert prediction.frame_reads.shape == (3, 1, 68, 2)
        spread = frame_spread(prediction.frame_reads)[0]
        assert spread > 0 and spread != pytest.approx(d)
        (calibrated,) = predict_faces(predictor, portrait)
        assert calibrated.confidence == pytest.approx(1 / (1 + np.exp(4.0 + 2.0 * np.log(spread))), rel=1e-6)
        assert prediction_confidence(prediction, "test_frames", (-4.0, -2.0))[0] == pytest.approx(calibrated.confidence)


@pytest.mark.integration
def test_least_confident_test_faces_fail_far_more_often():
    """The ranking the README reports, on the first 300 test faces: the 10 % least confident fail (NME >
    10 %) at least twice as often as the rest."""
    from keypoints import load_predictor
    from keypoints.evaluate import load_split
    from keypoints.metrics import nme_per_face

    images, true, _ = load_split(real_data_dir(), "test", limit=300)
    predictor = load_predictor()
    prediction = predictor.predict_details(images)
    confidence = prediction_confidence(prediction, predictor.confidence_signal, predictor.confidence_calibration)
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
    before["meta"].pop("confidence_signal", None)
    tinynet.save(before, path)
    training = FacialKeypointsDataset(real_data_dir(), "training")
    _, held_out = validation_split(len(training), RECIPES["default"])  # the faces the shipped run held out
    assert len(held_out) == 346
    found = calibrate_checkpoint(path, training, held_out)
    after = tinynet.load(path)
    assert found.calibration is not None and found.calibration[1] < 0
    assert after["meta"]["confidence_calibration"] == list(found.calibration)
    assert found.signal == after["meta"]["confidence_signal"] == "test_frames"
    np.testing.assert_allclose(found.calibration, tinynet.load(PRETRAINED)["meta"]["confidence_calibration"], rtol=1e-3)
    for name, array in before["model"].items():
        assert after["model"][name].dtype == array.dtype and np.array_equal(after["model"][name], array), name
