"""Confidence per face (keypoints.wild.confidence): the flip disagreement by hand, the logistic map, the
calibration fit, the hook in predict_faces, and (with the real data) the ranking on the test set."""
from __future__ import annotations

import numpy as np
import pytest

from keypoint_fixtures import canonical_face, real_data_dir

from keypoints.wild.confidence import (
    CALIBRATION,
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
    c = confidence_from_disagreement(d)
    assert c[0] == 1.0 and c[-1] == 0.0
    assert ((c >= 0) & (c <= 1)).all() and (np.diff(c) < 0).all()
    a, b = CALIBRATION
    assert c[3] == pytest.approx(1 / (1 + np.exp(-(a + b * np.log(0.03)))))
    assert b < 0  # more disagreement, less confidence
    face = canonical_face(200)
    both = face_confidence(np.stack([face, face]), np.stack([face, face + 30.0]))
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


def test_predict_faces_gives_a_confidence_with_flip_averaging_only():
    cv2 = pytest.importorskip("cv2")
    cbook = pytest.importorskip("matplotlib.cbook")
    from keypoints import load_predictor, predict_faces

    portrait = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), cv2.IMREAD_COLOR)
    (face,) = predict_faces(load_predictor(flip=True), portrait)
    assert isinstance(face.confidence, float) and 0.0 < face.confidence < 1.0
    (plain,) = predict_faces(load_predictor(flip=False), portrait)
    assert plain.confidence is None


@pytest.mark.integration
def test_least_confident_test_faces_fail_far_more_often():
    """The ranking the README reports, on the first 300 test faces: the 10 % least confident fail (NME >
    10 %) at least twice as often as the rest."""
    from keypoints import load_predictor
    from keypoints.evaluate import load_split
    from keypoints.metrics import nme_per_face

    images, true, _ = load_split(real_data_dir(), "test", limit=300)
    prediction = load_predictor(flip=True).predict_details(images)
    confidence = face_confidence(prediction.plain, prediction.mirrored)
    report = ranking_report(confidence, nme_per_face(prediction.points, true) > 0.10)
    assert report["failure_rate_least_confident"] >= 2 * report["failure_rate_rest"], report
