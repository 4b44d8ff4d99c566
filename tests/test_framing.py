"""keypoints.framing: the canonical point framing, the framed training crops, and the refinement pass."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keypoint_fixtures import write_checkpoint
from test_transforms import SHOWN, assert_blobs_follow, face_points, render_blobs

from keypoints.data import Faces
from keypoints.framing import (
    DATASET_FRAMING,
    PointFraming,
    checked_test_frames,
    eye_angle,
    frame_change,
    frame_jitter,
    frame_matrix,
    framed_sample,
    measure_point_framing,
    mirror_frame,
    point_spread,
    warp_crop,
)
from keypoints.loader import DataLoader
from keypoints.predictor import Predictor, load_predictor
from keypoints.geometry import (FLIP_PERMUTATION, apply_affine, denormalize_keypoints, flip_keypoints, flip_matrix, map_to_original,
                                normalize_keypoints, rotation_scale_about, translation)
from tinynet.nn import Module

S = 96


def test_point_spread_by_hand():
    # four points at distance 1 and 3 from their centroid (2, 0): RMS sqrt((1 + 1 + 9 + 9) / 4)
    points = np.array([[1.0, 0.0], [3.0, 0.0], [2.0, 3.0], [2.0, -3.0]])
    assert point_spread(points) == pytest.approx(np.sqrt(5.0), rel=1e-15)
    assert point_spread(np.stack([points, 2 * points])).tolist() == pytest.approx([np.sqrt(5.0), 2 * np.sqrt(5.0)])


@pytest.mark.parametrize(
    "values, match",
    [
        (dict(centroid=(0.0, 0.5), spread=0.2), "centroid"),
        (dict(centroid=(0.5, 1.2), spread=0.2), "centroid"),
        (dict(centroid=(0.5, 0.5), spread=0.0), "spread"),
        (dict(centroid=(0.5, 0.5), spread=float("nan")), "spread"),
    ],
)
def test_point_framing_validates(values, match):
    with pytest.raises(ValueError, match=match):
        PointFraming(**values)


def test_point_framing_dict_round_trip_and_errors():
    framing = PointFraming((0.4, 0.55), 0.2)
    assert PointFraming.from_dict(framing.to_dict()) == framing
    upright = PointFraming((0.4, 0.55), 0.2, upright=True)
    assert PointFraming.from_dict(upright.to_dict()) == upright
    assert PointFraming.from_dict({"centroid": [0.4, 0.55], "spread": 0.2}) == framing  # written before upright
    for bad in ({"centroid": [0.5, 0.5]}, {"centroid": [0.5], "spread": 0.2}, "x", {"centroid": "ab", "spread": 0.2}):
        with pytest.raises(ValueError, match="framing"):
            PointFraming.from_dict(bad)


@given(
    shift=st.tuples(st.floats(-0.1, 0.1), st.floats(-0.1, 0.1)),
    zoom=st.floats(0.7, 1.4),
    degrees=st.floats(-30, 30),
    seed=st.integers(0, 2**32 - 1),
)
@settings(deadline=None, max_examples=30)
def test_frame_matrix_puts_centroid_and_spread_where_asked(shift, zoom, degrees, seed):
    rng = np.random.default_rng(seed)
    points = rng.uniform(10, 300, size=(68, 2))
    framing = PointFraming((0.45, 0.55), 0.2)
    matrix = frame_matrix(points, S, framing, shift=shift, zoom=zoom, degrees=degrees)
    moved = apply_affine(points, matrix)
    np.testing.assert_allclose(moved.mean(axis=0), (np.array([0.45, 0.55]) + shift) * S, atol=1e-9)
    assert point_spread(moved) == pytest.approx(0.2 * S * zoom, rel=1e-12)
    # a similarity: the direction between two points turns by -degrees in image coordinates (y down,
    # counter-clockwise as displayed), as transforms' rotation
    before, after = points[1] - points[0], moved[1] - moved[0]
    turn = np.degrees(np.arctan2(after[1], after[0]) - np.arctan2(before[1], before[0]))
    assert (turn + degrees + 180) % 360 - 180 == pytest.approx(0.0, abs=1e-7)


@given(tilt=st.floats(-40, 40), degrees=st.floats(-10, 10), seed=st.integers(0, 2**32 - 1))
@settings(deadline=None, max_examples=30)
def test_upright_framing_levels_the_eyes(tilt, degrees, seed):
    rng = np.random.default_rng(seed)
    face = rng.uniform(-20, 20, size=(68, 2))
    face[36:42] += (-30, 0) - face[36:42].mean(axis=0)  # the right eye left in the picture, the left eye
    face[42:48] += (30, 0) - face[42:48].mean(axis=0)  # right, their centres level
    assert eye_angle(face) == pytest.approx(0.0, abs=1e-9)
    tilted = apply_affine(face, rotation_scale_about(0.0, 0.0, tilt, 1.0)) + 200
    assert eye_angle(tilted) == pytest.approx(tilt, abs=1e-7)
    framing = PointFraming((0.5, 0.5), 0.2, upright=True)
    moved = apply_affine(tilted, frame_matrix(tilted, S, framing, degrees=degrees))
    assert eye_angle(moved) == pytest.approx(degrees, abs=1e-7)  # level, then the jitter
    np.testing.assert_allclose(moved.mean(axis=0), [0.5 * S, 0.5 * S], atol=1e-9)
    # a mirrored training sample is levelled from the mirrored face's own eyes (not turned upside down)
    image = np.zeros((260, 260), np.float32)
    _, sample = framed_sample(image, tilted.astype(np.float32), S, rng, framing, flip=1.0)
    assert abs(eye_angle(sample)) < 1e-3


def test_frame_matrix_rejects_degenerate_points():
    with pytest.raises(ValueError, match="frame_matrix"):
        frame_matrix(np.ones((68, 2)), S, DATASET_FRAMING)
    points = np.random.default_rng(0).uniform(0, 50, (68, 2))
    points[3, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        frame_matrix(points, S, DATASET_FRAMING)


@given(flip=st.booleans(), degrees=st.sampled_from([0.0, 20.0]), seed=st.integers(0, 2**32 - 1))
@settings(deadline=None, max_examples=25)
def test_framed_sample_moves_keypoints_with_pixels(flip, degrees, seed):
    rng = np.random.default_rng(seed)
    height, width, size = 90, 80, 64
    points = face_points(rng, height, width, SHOWN)
    sigma = 1.8  # the crop shrinks the image to about 2/3: blobs stay a pixel wide and 13 pixels apart
    image = render_blobs(height, width, points[SHOWN], sigma=sigma)
    framing = PointFraming((0.5, 0.5), 0.35)
    crop, moved = framed_sample(
        image, points, size, rng, framing, flip=1.0 if flip else 0.0, degrees=degrees, shift=0.03, zoom=0.1
    )
    assert crop.shape == (size, size) and crop.dtype == np.float32 and moved.dtype == np.float32
    zoom = point_spread(moved) / point_spread(points)
    shown_after = [int(FLIP_PERMUTATION[i]) for i in SHOWN] if flip else SHOWN
    assert_blobs_follow(crop, moved[shown_after], sigma * zoom, centroid_tol=0.3)


def test_framed_sample_without_jitter_is_canonical_and_flip_is_mirror_consistent():
    rng = np.random.default_rng(3)
    image = rng.random((120, 110)).astype(np.float32)
    points = rng.uniform(30, 80, size=(68, 2)).astype(np.float32)
    framing = PointFraming((0.48, 0.56), 0.18)
    for flip in (0.0, 1.0):
        crop, moved = framed_sample(image, points, S, rng, framing, flip=flip)
        # the moved points (left/right swapped after a flip) are framed canonically either way
        np.testing.assert_allclose(moved.mean(axis=0), np.array([0.48, 0.56]) * S, atol=1e-3)
        assert point_spread(moved) == pytest.approx(0.18 * S, rel=1e-5)
    plain, _ = framed_sample(image, points, S, rng, framing)
    np.testing.assert_array_equal(plain, warp_crop(image, frame_matrix(points, S, framing), S))


def test_measure_point_framing_on_known_faces():
    # two 107 x 120 images, centre 96-crop offsets (top, left) = (6, 12): points placed at known crop spots
    crop_points = np.random.default_rng(0).uniform(20, 70, size=(2, 68, 2))
    images = [np.zeros((107, 120), np.float32)] * 2
    keypoints = crop_points + np.array([12.0, 6.0])  # crop (x, y) + (left, top)
    framing = measure_point_framing(images, keypoints, S)
    centroids = crop_points.mean(axis=1) / S
    np.testing.assert_allclose(framing.centroid, np.median(centroids, axis=0), rtol=1e-12)
    assert framing.spread == pytest.approx(np.median(point_spread(crop_points)) / S, rel=1e-12)
    with pytest.raises(ValueError, match="one keypoint set per image"):
        measure_point_framing(images, keypoints[:1], S)


def faces_fixture(n: int = 6, seed: int = 0) -> Faces:
    rng = np.random.default_rng(seed)
    images = [rng.random((107, 107 + 3 * i)).astype(np.float32) for i in range(n)]
    keypoints = rng.uniform(30, 75, size=(n, 68, 2)).astype(np.float32)
    return Faces(images, keypoints, [f"f{i}" for i in range(n)], np.full((n, 2), 107), S, np.zeros((n, 2, 3)))


def test_loader_refine_zero_keeps_the_random_stream_and_refine_one_frames_every_sample():
    faces = faces_fixture()
    augment = dict(flip=True, degrees=10.0, scale=(0.9, 1.1), translate=0.04)
    plain = list(DataLoader(faces, 3, shuffle=True, seed=5, augment=augment, prefetch=False))
    zero = list(DataLoader(faces, 3, shuffle=True, seed=5, augment=dict(augment, refine=0.0), prefetch=False))
    for (x0, y0), (x1, y1) in zip(plain, zero):
        np.testing.assert_array_equal(x0, x1)
        np.testing.assert_array_equal(y0, y1)
    framing = PointFraming((0.5, 0.54), 0.18)
    framed = DataLoader(faces, 3, seed=5, augment=dict(refine=1.0), framing=framing, prefetch=False)
    for x, y in framed:
        points = denormalize_keypoints(y.reshape(-1, 68, 2).astype(np.float64), S)
        np.testing.assert_allclose(points.mean(axis=1), np.tile(np.array([0.5, 0.54]) * S, (len(y), 1)), atol=1e-3)
        np.testing.assert_allclose(point_spread(points), 0.18 * S, rtol=1e-5)


def test_loader_refine_needs_a_framing_and_a_probability():
    faces = faces_fixture(2)
    with pytest.raises(ValueError, match="PointFraming"):
        DataLoader(faces, 2, augment=dict(refine=0.5))
    with pytest.raises(ValueError, match="probability"):
        DataLoader(faces, 2, augment=dict(refine=1.5), framing=DATASET_FRAMING)


class CanonicalFace(Module):
    """Answers, for every crop, a fixed face framed exactly canonically (centroid and spread of the
    framing); records the crops it saw."""

    def __init__(self, framing: PointFraming, seed: int = 0):
        super().__init__()
        face = np.random.default_rng(seed).normal(0.0, 1.0, size=(68, 2))
        face = (face - face.mean(axis=0)) / point_spread(face) * framing.spread * S + np.array(framing.centroid) * S
        self.q = normalize_keypoints(face, S).reshape(-1).astype(np.float32)
        self.seen: list[np.ndarray] = []

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.seen.append(x[:, 0].copy())
        return np.tile(self.q, (len(x), 1))


def test_refinement_reads_the_canonical_crop_of_the_previous_points_and_a_canonical_answer_is_a_fixed_point(tmp_path):
    path = tmp_path / "best.npz"
    write_checkpoint(path)
    one_pass = load_predictor(path, refine_passes=0)
    two_passes = load_predictor(path, refine_passes=1)
    assert two_passes.refine_passes == 1 and "refine_passes=1" in repr(two_passes)
    images = [np.random.default_rng(i).random((150 + 20 * i, 130)).astype(np.float32) for i in range(3)]
    for predictor in (one_pass, two_passes):
        predictor.model = CanonicalFace(predictor.framing)
    first = one_pass.predict_details(images)
    second = two_passes.predict_details(images)
    # a network whose answer is already canonical leaves nothing to correct: the points stay where they were
    np.testing.assert_allclose(second.points, first.points, atol=1e-3)
    # what the second pass read: for each image, the canonical crop framed from the first pass's points
    seen = two_passes.model.seen[-1]
    for i, image in enumerate(images):
        rescaled, to_rescaled = two_passes._rescaled(image)
        source = apply_affine(first.points[i].astype(np.float64), to_rescaled)
        expected = warp_crop(rescaled, frame_matrix(source, S, two_passes.framing), S)
        np.testing.assert_allclose(seen[i], expected, atol=2e-3)
        # and the affine of the result maps image pixels to that last crop
        np.testing.assert_allclose(map_to_original(denormalize_keypoints(second.normalized[i].reshape(68, 2), S),
                                                   second.affines[i]), second.points[i], atol=1e-3)


@given(width=st.integers(40, 400), centroid_x=st.floats(0.3, 0.7), upright=st.booleans(), seed=st.integers(0, 2**32 - 1))
@settings(deadline=None, max_examples=30)
def test_mirror_frame_is_the_frame_training_gives_the_mirrored_face(width, centroid_x, upright, seed):
    """Training frames a mirrored face from its mirrored points after mirroring the image (framed_sample);
    mirror_frame gets there from the plain face's frame."""
    points = np.random.default_rng(seed).uniform(0, width - 1, size=(68, 2))
    framing = PointFraming((centroid_x, 0.55), 0.2, upright=upright)
    trained = frame_matrix(flip_keypoints(points, width), S, framing) @ flip_matrix(width)
    np.testing.assert_allclose(mirror_frame(S, framing) @ frame_matrix(points, S, framing), trained, rtol=0, atol=1e-9)
    np.testing.assert_allclose(mirror_frame(S, framing) @ mirror_frame(S, framing), np.eye(3), atol=0)  # its own inverse
    # the mirror axis is the canonical centroid's vertical line: a crop flip (about (S - 1) / 2) is not
    # the same map unless the centroid sits exactly in the middle
    assert abs((mirror_frame(S, framing) - flip_matrix(S))[0, 2]) == pytest.approx(abs(2 * centroid_x * S - (S - 1)))


def test_refinement_reads_the_mirrored_face_as_training_framed_it(tmp_path):
    """With flip averaging, the refinement pass's mirror images are training's mirrored crops (framed_sample
    with flip and no jitter, from the previous points), not the plain crops flipped: those put the face
    2 c S - (S - 1) pixels aside (1.1 at S = 96 for the data set's framing)."""
    path = tmp_path / "best.npz"
    write_checkpoint(path)
    predictor = load_predictor(path, flip=True, refine_passes=1, test_frames=())
    framing = PointFraming((0.5006, 0.5401), 0.1774)
    predictor.framing = framing
    predictor.model = CanonicalFace(framing)
    images = [np.random.default_rng(i).random((150 + 20 * i, 130)).astype(np.float32) for i in range(3)]
    first = load_predictor(path, flip=True, refine_passes=0)
    first.model = CanonicalFace(framing)
    previous = first.predict_details(images).points
    predictor.predict_details(images)
    seen = predictor.model.seen[-1]  # the refinement pass: the plain crops, then their mirror images
    assert len(seen) == 2 * len(images)
    for i, image in enumerate(images):
        rescaled, to_rescaled = predictor._rescaled(image)
        source = apply_affine(previous[i].astype(np.float64), to_rescaled)
        trained, _ = framed_sample(rescaled, source.astype(np.float32), S, np.random.default_rng(0), framing, flip=1.0)
        np.testing.assert_allclose(seen[len(images) + i], trained, atol=2e-3)
        # and not the plain crop flipped, which is a pixel away on this noise
        assert np.abs(seen[i][:, ::-1] - trained).mean() > 0.05


def test_predictor_refine_passes_validated(tmp_path):
    path = tmp_path / "best.npz"
    write_checkpoint(path)
    for bad in (-1, 5, 1.5, True):
        with pytest.raises(ValueError, match="refine_passes"):
            load_predictor(path, refine_passes=bad)


# ---------------------------------------------------------------------------------------------- refine_tolerance
def test_frame_change_by_hand():
    old = np.stack([translation(-10.0, -20.0), rotation_scale_about(0.0, 0.0, 12.0, 0.5)])
    centre = (S / 2, S / 2)
    moves = [
        np.eye(3),  # the same crop
        translation(3.0, 4.0),  # every corner moves 5 pixels
        rotation_scale_about(*centre, 90.0, 1.0),  # a quarter turn about the middle: each corner lands on the next
        rotation_scale_about(*centre, 0.0, 1.1),  # a 10 % zoom about the middle: corners move 0.1 * (S / 2) * sqrt(2)
    ]
    expected = [0.0, 5.0 / S, 1.0, 0.1 * np.sqrt(2) / 2]
    for move, change in zip(moves, expected):
        # the new frame is the old one followed by the move in crop pixels, whatever the old one was
        np.testing.assert_allclose(frame_change(old, move @ old, S), [change, change], rtol=0, atol=1e-12)


@given(shift=st.tuples(st.floats(-20, 20), st.floats(-20, 20)), zoom=st.floats(0.7, 1.4), degrees=st.floats(-40, 40),
       seed=st.integers(0, 2**32 - 1))
@settings(deadline=None, max_examples=50)
def test_frame_change_bounds_how_far_any_pixel_of_the_crop_moves(shift, zoom, degrees, seed):
    """No pixel of the crop moves farther than frame_change says, and a corner moves exactly that far."""
    rng = np.random.default_rng(seed)
    old = rotation_scale_about(*rng.uniform(0, 300, 2), rng.uniform(-30, 30), rng.uniform(0.2, 2.0))
    move = translation(*shift) @ rotation_scale_about(*rng.uniform(0, S, 2), degrees, zoom)
    change = frame_change(old[None], (move @ old)[None], S)[0]
    pixels = np.concatenate([rng.uniform(0, S, (500, 2)), [[0, 0], [S, 0], [0, S], [S, S]]])
    distances = np.linalg.norm(apply_affine(pixels, move) - pixels, axis=1) / S
    assert distances.max() <= change + 1e-9
    assert distances[-4:].max() == pytest.approx(change, abs=1e-9)


class TwoFramings(Module):
    """Reads a crop's brightness: a dark crop (the face of a dark image) gets a canonical answer, so its refinement
    frame is its crop's; a bright one gets that answer moved down by ``shift * S`` in the first call (its frame moves
    by that much), by half as much in the second. The face is its own mirror image (mirrored and its points swapped),
    so flip averaging changes neither answer. Records how many crops each call read."""

    def __init__(self, framing: PointFraming, shift: float):
        super().__init__()
        face = np.random.default_rng(0).normal(0.0, 1.0, size=(68, 2))
        mirrored = face[FLIP_PERMUTATION] * [-1.0, 1.0]
        face = (face + mirrored) / 2  # symmetric about x = 0
        face = (face - face.mean(axis=0)) / point_spread(face) * framing.spread * S + np.array(framing.centroid) * S
        self.canonical = normalize_keypoints(face, S).reshape(-1).astype(np.float32)
        self.moved = [normalize_keypoints(face + [0.0, shift * S / calls], S).reshape(-1).astype(np.float32)
                      for calls in (1, 2)]
        self.batches: list[int] = []

    def forward(self, x: np.ndarray) -> np.ndarray:
        moved = self.moved[min(len(self.batches), 1)]
        self.batches.append(len(x))
        bright = x.reshape(len(x), -1).mean(axis=1) > 0.5
        return np.where(bright[:, None], moved, self.canonical).astype(np.float32)


@pytest.mark.parametrize("flip", [False, True])
def test_refine_tolerance_reads_again_only_the_faces_whose_frame_moves(tmp_path, flip):
    path = tmp_path / "best.npz"
    write_checkpoint(path)
    images = [np.full((150, 130), 0.2, np.float32), np.full((170, 130), 0.8, np.float32),
              np.full((160, 140), 0.3, np.float32)]  # dark, bright, dark

    def run(**settings):
        predictor = load_predictor(path, flip=flip, test_frames=(), **settings)
        predictor.model = TwoFramings(predictor.framing, shift=0.1)  # the bright face's frame moves 0.1 of the side
        return predictor, predictor.predict_details(images)

    _, first = run(refine_passes=0)
    always, second = run(refine_passes=1)
    skipping, mixed = run(refine_passes=1, refine_tolerance=0.05)
    assert skipping.refine_tolerance == 0.05 and "refine_tolerance=0.05" in repr(skipping)
    assert "refine_tolerance" not in repr(always)
    reads = 2 if flip else 1  # each face, and its mirror image
    assert always.model.batches == [3 * reads, 3 * reads]
    assert skipping.model.batches == [3 * reads, 1 * reads]  # only the bright face is read again
    # the dark faces keep their first read and its frame, the bright one gets the second read
    for field in ("points", "normalized", "affines") + (("plain", "mirrored") if flip else ()):
        got, before, after = (getattr(p, field) for p in (mixed, first, second))
        np.testing.assert_array_equal(got[[0, 2]], before[[0, 2]])
        np.testing.assert_array_equal(got[1], after[1])
    assert np.abs(second.points[1] - first.points[1]).max() > 1.0  # the second read really moved the bright face
    # a tolerance above the move: nobody is read again; none: everybody
    none, kept = run(refine_passes=1, refine_tolerance=0.2)
    assert none.model.batches == [3 * reads]
    np.testing.assert_array_equal(kept.points, first.points)
    _, zero = run(refine_passes=1, refine_tolerance=0.0)
    np.testing.assert_array_equal(zero.points, second.points)


def test_refine_tolerance_leaves_the_test_frame_pass_to_every_face(tmp_path):
    """The confidence compares the test frames' reads of every face: the pass that reads them reads all faces."""
    path = tmp_path / "best.npz"
    write_checkpoint(path)
    images = [np.full((150, 130), 0.2, np.float32), np.full((170, 130), 0.8, np.float32)]
    frames = [[-0.04, 0.0, 1.0, 0.0], [0.04, 0.0, 1.0, 0.0]]
    results = []
    for tolerance in (0.0, 0.5):
        predictor = load_predictor(path, flip=False, refine_passes=1, test_frames=frames, refine_tolerance=tolerance)
        predictor.model = TwoFramings(predictor.framing, shift=0.1)
        results.append(predictor.predict_details(images))
        assert predictor.model.batches == [2, 2 * len(frames)]
    np.testing.assert_array_equal(results[0].points, results[1].points)
    np.testing.assert_array_equal(results[0].frame_reads, results[1].frame_reads)


def test_refine_tolerance_validated(tmp_path):
    path = tmp_path / "best.npz"
    write_checkpoint(path)
    loaded = load_predictor(path)
    for bad in (-0.1, 1.0, float("nan"), True, "0.1", None):
        with pytest.raises(ValueError, match=r"refine_tolerance must be a number in \[0, 1\)"):
            Predictor(loaded.model, loaded.meta, refine_tolerance=bad)


# ---------------------------------------------------------------------------------------------- test frames
@given(
    shift=st.tuples(st.floats(-0.1, 0.1), st.floats(-0.1, 0.1)),
    zoom=st.floats(0.8, 1.25),
    degrees=st.floats(-30, 30),
    upright=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
@settings(deadline=None, max_examples=30)
def test_a_test_frame_is_the_training_jitter_of_the_canonical_frame(shift, zoom, degrees, upright, seed):
    points = np.random.default_rng(seed).uniform(10, 300, size=(68, 2))
    framing = PointFraming((0.45, 0.55), 0.2, upright=upright)
    jittered = frame_matrix(points, S, framing, shift=shift, zoom=zoom, degrees=degrees)  # what training draws
    np.testing.assert_allclose(frame_jitter(S, framing, shift, zoom, degrees) @ frame_matrix(points, S, framing),
                               jittered, rtol=0, atol=1e-9)


def _predictors(path, frames, flip=True):
    plain = load_predictor(path, flip=flip, refine_passes=2)
    framed = load_predictor(path, flip=flip, refine_passes=2, test_frames=frames)
    assert plain.test_frames == () and framed.test_frames == checked_test_frames(frames)
    assert f"test_frames={len(frames)}" in repr(framed)
    return plain, framed


def test_the_canonical_test_frame_alone_is_the_plain_prediction_exactly(tmp_path):
    from test_predictor import LinearOutput  # an output that depends on every pixel of the crop

    path = tmp_path / "best.npz"
    write_checkpoint(path)
    images = [np.random.default_rng(i).random((150 + 20 * i, 130)).astype(np.float32) for i in range(3)]
    plain, framed = _predictors(path, [[0, 0, 1, 0]])
    plain.model = framed.model = LinearOutput(seed=3)
    a, b = plain.predict_details(images), framed.predict_details(images)
    for name in ("points", "normalized", "affines"):
        np.testing.assert_array_equal(getattr(b, name), getattr(a, name), err_msg=name)
    # a shifted frame reads other pixels: the answer changes (the option is not a no-op)
    (_, shifted) = _predictors(path, [[0.04, 0, 1, 0]])
    shifted.model = plain.model
    assert np.abs(shifted.predict(images) - a.points).max() > 0.1


@pytest.mark.parametrize("frames", [
    [[0.04, 0.0, 1.0, 0.0]],
    [[0.0, -0.03, 1.1, 0.0]],
    [[0.02, 0.01, 0.9, 7.0]],
    [[0.0, 0.0, 1.0, 0.0], [-0.04, 0.0, 1.0, 0.0], [0.04, 0.0, 1.0, 0.0], [0.0, 0.05, 0.95, -5.0]],
])
def test_points_read_in_a_test_frame_go_back_by_its_exact_inverse(tmp_path, frames):
    """A network that answers the same crop points ``c`` whatever it sees: in a frame moved by ``s S``, turned by
    ``a`` and zoomed by ``z`` about the canonical centroid ``t``, ``c`` is the canonical crop's point
    ``t + R(a)^-1 (c - t - s S) / z`` (written out here, not with frame_jitter); the mean over frames is kept."""
    path = tmp_path / "best.npz"
    write_checkpoint(path)
    images = [np.random.default_rng(i).random((160, 140 + 10 * i)).astype(np.float32) for i in range(2)]
    plain, framed = _predictors(path, frames, flip=False)
    plain.model = CanonicalFace(plain.framing)
    framed.model = CanonicalFace(framed.framing)
    a, b = plain.predict_details(images), framed.predict_details(images)
    np.testing.assert_array_equal(b.affines, a.affines)  # the same canonical frame, from the same first passes
    answer = denormalize_keypoints(framed.model.q.reshape(68, 2).astype(np.float64), S)
    centroid = np.array(framed.framing.centroid) * S
    expected = []
    for shift_x, shift_y, zoom, degrees in frames:
        theta = np.radians(degrees)  # counter-clockwise as displayed: (x, y) -> (x cos + y sin, -x sin + y cos)
        inverse = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) / zoom
        expected.append(centroid + (answer - centroid - np.array([shift_x, shift_y]) * S) @ inverse.T)
    expected = np.mean(expected, axis=0)
    for i in range(len(images)):
        got = denormalize_keypoints(b.normalized[i].reshape(68, 2).astype(np.float64), S)
        np.testing.assert_allclose(got, expected, atol=1e-3)
        # and in the image's pixels, through the canonical frame's exact inverse
        np.testing.assert_allclose(b.points[i], map_to_original(expected, b.affines[i]), atol=2e-3)


@pytest.mark.parametrize("bad", [[[0, 0, 1]], [[0.2, 0, 1, 0]], [[0, 0, 1.5, 0]], [[0, 0, 1, 45]],
                                 [[0, 0, float("nan"), 0]], [[0, 0, True, 0]], "0,0,1,0", [[0, 0, 1, 0]] * 17])
def test_test_frames_are_validated(tmp_path, bad):
    path = tmp_path / "best.npz"
    write_checkpoint(path)
    with pytest.raises(ValueError, match="Predictor: test_frames"):
        load_predictor(path, test_frames=bad)
