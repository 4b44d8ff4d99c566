"""One Euro filter, face tracking, and video in / video out (keypoints.wild.video)."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from keypoints.wild.faces import FaceKeypoints
from keypoints.wild.one_euro import OneEuroFilter, smoothing_factor
from keypoints.wild.video import FaceTracker, box_iou, open_video, process_video

FPS = 30.0


def exp_alpha(cutoff: float, dt: float) -> float:
    """The paper's smoothing factor, written out: 1 / (1 + tau / dt), tau = 1 / (2 pi f_c)."""
    return 1.0 / (1.0 + (1.0 / (2.0 * math.pi * cutoff)) / dt)


# ---------------------------------------------------------------------------------------------- One Euro
def test_smoothing_factor_formula():
    assert smoothing_factor(1 / 30, 1.0) == pytest.approx(1 / (1 + 30 / (2 * math.pi)))
    assert smoothing_factor(0.5, 1e9) == pytest.approx(1.0)


@pytest.mark.parametrize("beta", [0.0, 0.7, 50.0])
def test_constant_signal_passes_unchanged(beta):
    value = np.array([[3.25, -7.1], [1e-3, 412.9]])
    filt = OneEuroFilter(min_cutoff=0.5, beta=beta, norm_axis=-1)
    for k in range(60):
        np.testing.assert_array_equal(filt(value, k / FPS), value)


def test_two_steps_by_hand():
    filt = OneEuroFilter(min_cutoff=1.0, beta=0.5, d_cutoff=1.0)
    assert filt(0.0, 0.0) == 0.0  # the first sample passes
    out = filt(1.0, 1 / FPS)
    dx_hat = exp_alpha(1.0, 1 / FPS) * 30.0  # speed 30 / s, low-passed from 0
    alpha = exp_alpha(1.0 + 0.5 * dx_hat, 1 / FPS)
    assert out == pytest.approx(alpha * 1.0, rel=1e-12)


def test_noise_is_reduced_as_an_exponential_filter_predicts(rng):
    noise = rng.normal(0.0, 1.0, size=2000)
    filt = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    out = np.array([filt(5.0 + n, k / FPS) for k, n in enumerate(noise)])[100:]
    a = exp_alpha(1.0, 1 / FPS)
    expected_ratio = math.sqrt(a / (2 - a))  # std of exponentially smoothed white noise: 0.31
    assert out.std() == pytest.approx(expected_ratio, rel=0.15)
    assert out.mean() == pytest.approx(5.0, abs=0.1)


def test_a_step_is_followed_within_a_few_frames():
    signal = np.r_[np.zeros(30), np.full(30, 10.0)]
    adaptive = OneEuroFilter(min_cutoff=1.0, beta=1.0)
    plain = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    fast = np.array([adaptive(x, k / FPS) for k, x in enumerate(signal)])
    slow = np.array([plain(x, k / FPS) for k, x in enumerate(signal)])
    assert fast[32] > 9.8  # within 2% three frames after the step
    assert slow[32] < 6.0  # a plain low-pass filter with the same still cutoff lags far behind
    np.testing.assert_array_equal(fast[:30], 0.0)


def test_norm_axis_shares_the_speed_between_x_and_y():
    # a point moving diagonally at speed v per axis has speed sqrt(2) v: the same as one axis with beta * sqrt(2)
    shared = OneEuroFilter(1.0, beta=0.3, norm_axis=-1)
    single = OneEuroFilter(1.0, beta=0.3 * math.sqrt(2))
    for k in range(20):
        position = 2.0 * k + 0.1 * (k % 3)
        out = shared(np.array([[position, position]]), k / FPS)
        ref = single(position, k / FPS)
        np.testing.assert_allclose(out, [[ref, ref]], rtol=1e-12)


def test_irregular_times_and_errors():
    filt = OneEuroFilter()
    filt(np.zeros(3), 0.0)
    filt(np.ones(3), 0.1)
    filt(np.ones(3), 0.25)  # a skipped frame is fine
    with pytest.raises(ValueError, match="times must increase"):
        filt(np.ones(3), 0.25)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        filt(np.ones(4), 0.3)
    filt.reset()
    np.testing.assert_array_equal(filt(np.full(4, 9.0), 0.0), 9.0)
    with pytest.raises(ValueError, match="positive"):
        OneEuroFilter(min_cutoff=0.0)
    with pytest.raises(ValueError, match="beta"):
        OneEuroFilter(beta=-1.0)


def test_filter_does_not_alias_the_input():
    filt = OneEuroFilter()
    x = np.ones(3)
    out = filt(x, 0.0)
    x[:] = 5
    out[:] = 7
    np.testing.assert_array_equal(filt(np.ones(3), 0.1), 1.0)


# ---------------------------------------------------------------------------------------------- tracking
def test_box_iou_by_hand():
    iou = box_iou([[0, 0, 10, 10], [100, 100, 5, 5]], [[5, 0, 10, 10], [0, 0, 10, 10], [50, 50, 1, 1]])
    # overlap 5x10 = 50, union 150
    np.testing.assert_allclose(iou, [[50 / 150, 1.0, 0.0], [0.0, 0.0, 0.0]])


def face(x, y, w=100, value=None):
    points = np.full((68, 2), (x + w / 2, y + w / 2), float) if value is None else value
    return FaceKeypoints(np.array([x, y, w, w]), points)


def test_tracker_keeps_identities_whatever_the_detection_order():
    tracker = FaceTracker(smooth=False)
    first = tracker.update([face(0, 0), face(300, 0)], 0.0)
    assert [t.id for t in first] == [0, 1]
    second = tracker.update([face(305, 4), face(6, -3)], 1 / FPS)  # moved a little, listed in the other order
    assert [t.id for t in second] == [1, 0]
    np.testing.assert_array_equal(second[0].box, [305, 4, 100, 100])
    # a fast move with a new box size: no overlap, but the centre moved less than half a width
    third = tracker.update([face(50, 10, w=60)], 2 / FPS)
    assert [t.id for t in third] == [0]


def test_tracker_drops_faces_that_disappear():
    tracker = FaceTracker(smooth=False, max_missed=2)
    tracker.update([face(0, 0), face(300, 0)], 0.0)
    tracker.update([face(0, 0)], 1 / FPS)  # face 1 missed once: kept
    assert tracker.num_tracks == 2
    back = tracker.update([face(0, 0), face(300, 0)], 2 / FPS)
    assert [t.id for t in back] == [0, 1]  # it came back: same id
    for k in range(3, 6):
        tracker.update([face(0, 0)], k / FPS)  # gone for 3 frames: dropped
    assert tracker.num_tracks == 1
    again = tracker.update([face(0, 0), face(300, 0)], 6 / FPS)
    assert [t.id for t in again] == [0, 2]  # a new track


def test_tracker_smooths_each_face_and_can_be_switched_off(rng):
    still = np.tile([150.0, 150.0], (68, 1))
    smoothed, raw = [], []
    tracker = FaceTracker()
    plain = FaceTracker(smooth=False)
    for k in range(120):
        noisy = still + rng.normal(0, 2.0, size=(68, 2))  # 2 px jitter on a 100 px face
        smoothed.append(tracker.update([face(100, 100, value=noisy)], k / FPS)[0].points)
        raw.append(plain.update([face(100, 100, value=noisy)], k / FPS)[0].points)
        np.testing.assert_array_equal(raw[-1], noisy)
    jitter = np.std(np.array(smoothed[20:]) - still)
    assert jitter < 0.5 * 2.0  # at least halved


# ---------------------------------------------------------------------------------------------- video files
def grace_clip(path, frames=12, fps=15.0, size=(320, 256)):
    """Grace Hopper's portrait moving right and growing across ``frames`` frames."""
    cbook = pytest.importorskip("matplotlib.cbook")
    portrait = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), cv2.IMREAD_COLOR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    for k in range(frames):
        scale = 0.42 + 0.01 * k
        picture = cv2.resize(portrait, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        frame = np.full((size[1], size[0], 3), 200, np.uint8)
        x0, y0 = 20 + 5 * k, 0
        h, w = min(picture.shape[0], size[1] - y0), min(picture.shape[1], size[0] - x0)
        frame[y0 : y0 + h, x0 : x0 + w] = picture[:h, :w]
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    from keypoints.models import naimishnet
    from keypoints.predictor import load_predictor
    from keypoints.checkpoint import save_weights
    from keypoints.recipes import RECIPES

    path = tmp_path_factory.mktemp("model") / "m.npz"
    save_weights(path, RECIPES["reference"], naimishnet(96, seed=0).state_dict(), 1, 0.0)
    return load_predictor(path)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return grace_clip(tmp_path_factory.mktemp("video") / "grace.mp4")


def read_all(path):
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return fps, frames


def test_video_keeps_fps_size_and_frame_count(clip, untrained, tmp_path):
    out = tmp_path / "sub" / "out.mp4"
    report = process_video(clip, out, untrained, progress=False)
    fps, frames = read_all(out)
    assert fps == pytest.approx(15.0)
    assert len(frames) == 12 and report.frames == 12
    assert frames[0].shape == (256, 320, 3) and report.size == (320, 256)
    assert report.fps == pytest.approx(15.0)
    assert report.faces >= 10  # the detector finds her in (nearly) every frame
    assert report.processed_fps > 0
    _, inputs = read_all(clip)
    assert np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(frames, inputs)]) > 0.1  # drawn


def test_video_with_sunglasses_and_max_frames(clip, untrained, tmp_path):
    out = tmp_path / "glasses.mp4"
    report = process_video(clip, out, untrained, sunglasses=True, progress=False, max_frames=4)
    fps, frames = read_all(out)
    assert report.frames == 4 and len(frames) == 4


def test_video_errors(tmp_path, untrained, clip):
    with pytest.raises(FileNotFoundError, match="no such video"):
        process_video(tmp_path / "missing.mp4", tmp_path / "o.mp4", untrained)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video")
    with pytest.raises(ValueError, match="notes.mp4"):
        process_video(text, tmp_path / "o.mp4", untrained, progress=False)
    with pytest.raises(ValueError, match="cannot write"):
        process_video(clip, tmp_path / "out.nosuchformat", untrained, progress=False)


def test_open_video_reports_fps(clip):
    capture, fps = open_video(clip)
    capture.release()
    assert fps == pytest.approx(15.0)


def test_a_model_of_five_points_draws_its_points_counts_no_blinks_and_refuses_sunglasses(clip, tmp_path):
    """A model trained on your own .pts points: the video gets its points; blinks and sunglasses need the
    68-point layout's eyes, so there are no blinks (None, said in the report) and --sunglasses is refused
    before anything is written."""
    from keypoints.checkpoint import save_weights
    from keypoints.models import naimishnet
    from keypoints.predictor import load_predictor
    from keypoints.recipes import RECIPES

    path = tmp_path / "five.npz"
    save_weights(path, RECIPES["reference"], naimishnet(96, seed=0, num_points=5).state_dict(), 1, 0.0, num_points=5)
    five = load_predictor(path)
    report = process_video(clip, tmp_path / "five.mp4", five, progress=False, max_frames=3)
    assert report.frames == 3 and report.blinks is None and len(read_all(tmp_path / "five.mp4")[1]) == 3
    with pytest.raises(ValueError, match="--sunglasses needs a 68-point model.*5 points"):
        process_video(clip, tmp_path / "glasses.mp4", five, sunglasses=True, progress=False)
    assert not (tmp_path / "glasses.mp4").exists()
