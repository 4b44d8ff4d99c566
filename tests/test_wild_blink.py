"""Eye aspect ratio and blink counting (keypoints.wild.blink) on hand-built eyes and synthetic sequences,
and the blink count of ``process_video``."""
from __future__ import annotations

import numpy as np
import pytest

from keypoint_fixtures import canonical_face

from keypoints.wild.blink import BlinkCounter, eye_aspect_ratio, eye_aspects


def eye(width: float, upper: float, lower: float) -> np.ndarray:
    """p1..p6 of an eye: corners at x = 0 and ``width``; p2, p3 at a third and two thirds of the width,
    ``upper`` above the corners' line; p6, p5 below them by ``lower`` (image y grows downwards)."""
    return np.array([[0, 0], [width / 3, -upper], [2 * width / 3, -upper], [width, 0],
                     [2 * width / 3, lower], [width / 3, lower]], dtype=np.float64)


def face_with_ear(ear: float) -> np.ndarray:
    """The hand-drawn face with both eyes redrawn to this EAR (corners 30 pixels apart)."""
    face = canonical_face(200)
    for start in (36, 42):
        corner = face[start]
        face[start : start + 6] = corner + eye(30.0, 15.0 * ear, 15.0 * ear)  # (2 * 30 ear) / (2 * 30) = ear
    return face


def test_eye_aspect_ratio_by_hand():
    # vertical: two lids 3 + 2 apart, twice: (5 + 5) / (2 * 12)
    assert eye_aspect_ratio(eye(12.0, 3.0, 2.0)) == pytest.approx(10.0 / 24.0)
    assert eye_aspect_ratio(eye(12.0, 0.0, 0.0)) == 0.0  # shut
    batch = np.stack([eye(12.0, 3.0, 2.0), eye(6.0, 1.0, 1.0)])
    np.testing.assert_allclose(eye_aspect_ratio(batch), [10.0 / 24.0, 4.0 / 12.0])
    # scale and rotation do not change it
    turn = np.array([[0.6, -0.8], [0.8, 0.6]])
    assert eye_aspect_ratio(3.0 * eye(12.0, 3.0, 2.0) @ turn.T + 7.0) == pytest.approx(10.0 / 24.0)
    assert np.isnan(eye_aspect_ratio(np.zeros((6, 2))))  # collapsed corners
    with pytest.raises(ValueError, match=r"\(\.\.\., 6, 2\)"):
        eye_aspect_ratio(np.zeros((5, 2)))


def test_eye_aspects_per_eye():
    face = face_with_ear(0.3)
    face[42:48] = face[42] + eye(30.0, 1.5, 1.5)  # the left eye nearly shut: EAR 0.1
    aspects = eye_aspects(face)
    assert aspects.right == pytest.approx(0.3) and aspects.left == pytest.approx(0.1)
    assert aspects.right_open and not aspects.left_open
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        eye_aspects(face[:48])


def run_sequence(ears, **kwargs) -> BlinkCounter:
    counter = BlinkCounter(**kwargs)
    for ear in ears:
        assert counter.update(face_with_ear(ear)) == pytest.approx(ear)
    return counter


def test_blinks_in_a_synthetic_sequence():
    o, c = 0.3, 0.08
    ears = [o] * 5 + [c] * 3 + [o] * 5 + [c] + [o] * 4 + [c] * 2 + [o] * 3 + [c] * 4  # ends with the eyes shut
    # a 3-frame blink, a 1-frame dip (noise), a 2-frame blink, and a closing not yet reopened
    assert run_sequence(ears).blinks == 2
    assert run_sequence(ears, min_frames=1).blinks == 3
    assert run_sequence(ears, min_frames=3).blinks == 1
    assert run_sequence(ears, threshold=0.05).blinks == 0  # never below 0.05
    assert run_sequence(ears + [o]).blinks == 3  # the last closing reopens: a blink


def test_blink_counter_arguments():
    with pytest.raises(ValueError, match="threshold"):
        BlinkCounter(threshold=0.0)
    with pytest.raises(ValueError, match="min_frames"):
        BlinkCounter(min_frames=0)


class EyesShutWhenDark:
    """Stands in for the network: the hand-drawn face with open eyes (EAR 0.3) on a bright crop, shut
    eyes (EAR 0.05) on a dark one, in crop pixels."""

    def predict_details(self, crops):
        from keypoints.predictor import Prediction

        points = []
        for crop in crops:
            face = face_with_ear(0.3 if crop.mean() > 0.25 else 0.05)
            points.append(face * (crop.shape[1] / 200.0))
        return Prediction(np.stack(points), None, None)


def test_process_video_counts_the_blinks(tmp_path):
    cv2 = pytest.importorskip("cv2")
    cbook = pytest.importorskip("matplotlib.cbook")
    from keypoints.wild.video import process_video

    portrait = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), cv2.IMREAD_COLOR)
    frame = cv2.resize(portrait, (256, 300), interpolation=cv2.INTER_AREA)
    dark = (frame * 0.35).astype(np.uint8)  # the detector still finds the face, the fake network shuts the eyes
    sequence = [frame] * 3 + [dark] * 3 + [frame] * 3 + [dark] + [frame] * 2
    source = tmp_path / "blinks.avi"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (256, 300))
    for image in sequence:
        writer.write(image)
    writer.release()
    report = process_video(source, tmp_path / "out.mp4", EyesShutWhenDark(), progress=False)
    assert report.frames == len(sequence) and report.faces == len(sequence)  # a face on every frame
    assert report.blinks == 1  # the 3-frame closing; the 1-frame one is below min_frames
    report = process_video(source, tmp_path / "out.mp4", EyesShutWhenDark(), progress=False,
                           blink=BlinkCounter(min_frames=1))
    assert report.blinks == 2
