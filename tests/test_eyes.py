"""The eye stage (keypoints.eyes): its framing, its reads mapped back, its training, its checkpoint entries and
the predictor's use of it."""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest

from keypoint_fixtures import canonical_face, mirror_permutation, write_checkpoint

from keypoints.eyes.stage import (
    EyeStage,
    build_eye_model,
    eye_crops,
    eye_matrices,
    eye_nme,
    eye_targets,
    eyes_from_outputs,
    read_eyes,
)

STAGE = EyeStage(size=32, side=0.8, width=4, passes=1)


def turned_face(degrees: float = 0.0, scale: float = 2.0, centre=(100.0, 90.0)) -> np.ndarray:
    """canonical_face(96) scaled, turned counter-clockwise as displayed (y down) and moved: (68, 2)."""
    face = canonical_face(96) - 48.0
    a = math.radians(degrees)
    rotation = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    return face @ rotation.T * scale + np.asarray(centre)


# ---------------------------------------------------------------------------------------------- the spec
@pytest.mark.parametrize("values, field", [
    (dict(size=20), "size"), (dict(size=8), "size"), (dict(size=256), "size"), (dict(size=48.0), "size"),
    (dict(width=2), "width"), (dict(width=True), "width"), (dict(passes=5), "passes"), (dict(passes=-1), "passes"),
    (dict(side=0.1), "side"), (dict(side=float("nan")), "side"), (dict(side="0.8"), "side"),
])
def test_a_bad_eye_stage_is_refused_naming_the_field(values, field):
    with pytest.raises(ValueError, match=rf"eye_stage\.{field}"):
        EyeStage.from_dict(dict(EyeStage().to_dict(), **values))


def test_an_eye_stage_dict_must_have_exactly_its_fields():
    assert EyeStage.from_dict(EyeStage().to_dict()) == EyeStage()
    for values in ({"size": 48}, dict(EyeStage().to_dict(), extra=1), [48, 0.8, 16, 2], None):
        with pytest.raises(ValueError, match="eye_stage must be a dict"):
            EyeStage.from_dict(values)


# ---------------------------------------------------------------------------------------------- framing
@pytest.mark.parametrize("degrees", [0.0, 20.0, -35.0])
def test_each_eye_is_centred_level_and_the_eye_distance_fixed(degrees):
    points = turned_face(degrees)[None]
    matrices = eye_matrices(points, STAGE)
    right, left = points[0, 36:42].mean(axis=0), points[0, 42:48].mean(axis=0)
    middle = (STAGE.size - 1) / 2
    to_crop = lambda p, m: m[:2, :2] @ p + m[:2, 2]  # noqa: E731 (written out here, not keypoints.geometry)
    np.testing.assert_allclose(to_crop(right, matrices[0, 0]), [middle, middle], atol=1e-9)
    np.testing.assert_allclose(to_crop(left, matrices[0, 1]), [middle, middle], atol=1e-9)
    # in the right eye's crop the left eye sits level with it, S / side pixels to the right
    np.testing.assert_allclose(to_crop(left, matrices[0, 0]), [middle + STAGE.size / STAGE.side, middle], atol=1e-9)
    # the left eye is mirrored: the right eye's crop sees the left eye on its right, the left eye's on its left
    np.testing.assert_allclose(to_crop(right, matrices[0, 1]), [middle + STAGE.size / STAGE.side, middle], atol=1e-9)
    # in both crops the outer corner (36; 45 mirrored) is on the left and the inner one (39; 42) on the right
    for m, outer, inner in ((matrices[0, 0], 36, 39), (matrices[0, 1], 45, 42)):
        assert to_crop(points[0, outer], m)[0] < middle < to_crop(points[0, inner], m)[0]


def test_the_training_jitter_moves_zooms_and_turns_the_frame_as_documented():
    points = turned_face(10.0)[None]
    distance = np.linalg.norm(points[0, 42:48].mean(0) - points[0, 36:42].mean(0))
    shift = np.array([[[0.1, -0.05], [0.0, 0.0]]])
    moved = eye_matrices(points, STAGE, shift=shift)
    centre = points[0, 36:42].mean(0) + shift[0, 0] * distance
    np.testing.assert_allclose(moved[0, 0, :2, :2] @ centre + moved[0, 0, :2, 2], [(STAGE.size - 1) / 2] * 2, atol=1e-9)
    zoomed = eye_matrices(points, STAGE, zoom=np.array([[1.25, 1.0]]))
    plain = eye_matrices(points, STAGE)
    np.testing.assert_allclose(np.linalg.det(zoomed[0, 0, :2, :2]), 1.25**2 * np.linalg.det(plain[0, 0, :2, :2]))
    turned = eye_matrices(points, STAGE, degrees=np.array([[0.0, 30.0]]))
    np.testing.assert_allclose(turned[0, 0], plain[0, 0])  # only the left eye was asked to turn
    assert not np.allclose(turned[0, 1], plain[0, 1])


def test_faces_whose_eyes_coincide_get_no_frame_and_keep_their_points():
    points = np.stack([turned_face(), turned_face()])
    points[1, 36:48] = points[1, 36]  # both eyes on one spot
    matrices = eye_matrices(points, STAGE)
    assert np.isfinite(matrices[0]).all() and np.isnan(matrices[1]).all()
    image = np.full((200, 200), 0.5, np.float32)
    read = read_eyes(build_eye_model(STAGE, np.random.default_rng(0)), STAGE, [image, image], points)
    np.testing.assert_array_equal(read[1], points[1])
    assert not np.allclose(read[0, 36:48], points[0, 36:48])


def test_targets_and_outputs_are_inverse_maps_and_the_left_eye_keeps_its_indices():
    rng = np.random.default_rng(0)
    points = np.stack([turned_face(d, s) for d, s in ((5.0, 1.5), (-25.0, 2.5))]) + rng.normal(0, 1, (2, 68, 2))
    matrices = eye_matrices(points, STAGE)
    targets = eye_targets(points, matrices, STAGE.size)
    assert targets.shape == (4, 12) and targets.dtype == np.float32
    np.testing.assert_allclose(eyes_from_outputs(targets.astype(np.float64), matrices, STAGE.size),
                               points[:, 36:48], atol=1e-3)  # float32 targets: about 1e-5 of a crop


class ConstantEyes:
    """An eye network that answers the same 12 numbers for every crop."""

    def __init__(self, outputs):
        self.outputs = np.asarray(outputs, np.float32)

    def eval(self):
        return self

    def __call__(self, crops):
        return np.tile(self.outputs, (len(crops), 1))


def test_a_symmetric_face_read_by_a_constant_network_stays_symmetric():
    """The left eye is read mirrored and its points put back in the left eye's own order: with the same
    answer for both crops the eyes come out as mirror images, point for point (36 <-> 45, 37 <-> 44, ...)."""
    points = turned_face(0.0)[None]  # canonical_face is symmetric about x = 48 (then scaled and moved to 100)
    answer = np.array([-0.6, 0.05, -0.3, -0.3, 0.2, -0.25, 0.55, 0.0, 0.25, 0.3, -0.2, 0.35])
    read = read_eyes(ConstantEyes(answer), STAGE, [np.zeros((200, 200), np.float32)], points, passes=1)[0]
    mirrored = read.copy()
    mirrored[:, 0] = 2 * 100.0 - mirrored[:, 0]
    np.testing.assert_allclose(read[36:48], mirrored[mirror_permutation()][36:48], atol=1e-9)
    np.testing.assert_array_equal(read[:36], points[0, :36])  # nothing but the eyes moves
    np.testing.assert_array_equal(read[48:], points[0, 48:])
    zero = read_eyes(ConstantEyes(np.zeros(12)), STAGE, [np.zeros((200, 200), np.float32)], points, passes=1)[0]
    # a network answering the crop centre puts all six points of each eye on that eye's centre
    np.testing.assert_allclose(zero[36:42], np.tile(points[0, 36:42].mean(0), (6, 1)), atol=1e-9)
    np.testing.assert_allclose(zero[42:48], np.tile(points[0, 42:48].mean(0), (6, 1)), atol=1e-9)


# ---------------------------------------------------------------------------------------------- training
def drawn_faces(n: int, seed: int) -> tuple[list, np.ndarray]:
    """Gray images with dark eyes drawn on a light face: each eye an ellipse through its six points."""
    rng = np.random.default_rng(seed)
    images, points = [], []
    for _ in range(n):
        face = turned_face(rng.uniform(-10, 10), rng.uniform(0.9, 1.1), rng.uniform(55, 65, size=2))
        image = np.full((120, 120), 0.75, np.float32) + rng.normal(0, 0.03, (120, 120)).astype(np.float32)
        for eye in (face[36:42], face[42:48]):
            (cx, cy), (w, h), angle = cv2.fitEllipse(eye.astype(np.float32))
            cv2.ellipse(image, ((cx, cy), (w, h), angle), 0.2, -1)
        images.append(np.clip(image, 0, 1))
        points.append(face)
    return images, np.stack(points)


def test_training_learns_to_find_drawn_eyes_and_keeps_the_best_epoch():
    from keypoints.eyes.training import train_eye_stage

    stage = EyeStage(size=32, side=0.8, width=8, passes=2)
    images, points = drawn_faces(160, seed=0)
    val_images, val_points = drawn_faces(24, seed=1)
    start = val_points.copy()
    distance = np.linalg.norm(val_points[:, 42:48].mean(1) - val_points[:, 36:42].mean(1), axis=1)
    start[:, 36:48] += (np.array([0.0, 0.12]) * distance[:, None])[:, None]  # eyes framed 0.12 eye distances low
    lines = []
    weights, history = train_eye_stage(stage, images, points, 12, seed=0, validation=(val_images, start, val_points),
                                       log=lines.append)
    before = eye_nme(start, val_points)
    model = build_eye_model(stage)
    model.load_state_dict(weights)
    after = eye_nme(read_eyes(model, stage, val_images, start), val_points)
    assert after < 0.5 * before, (before, after, history)
    best = min(record["val_eye_nme_percent"] for record in history)
    assert 100 * after == pytest.approx(best, rel=1e-6)  # the weights returned are the best epoch's
    assert len(history) == 12 and "held out" in lines[0]


def test_training_is_reproducible_from_the_seed():
    from keypoints.eyes.training import train_eye_stage

    images, points = drawn_faces(40, seed=2)
    first, _ = train_eye_stage(STAGE, images, points, 2, seed=3, log=lambda line: None)
    second, _ = train_eye_stage(STAGE, images, points, 2, seed=3, log=lambda line: None)
    other, _ = train_eye_stage(STAGE, images, points, 2, seed=4, log=lambda line: None)
    assert all(np.array_equal(first[k], second[k]) for k in first)
    assert not all(np.array_equal(first[k], other[k]) for k in first)
    few, _ = train_eye_stage(STAGE, images[:3], points[:3], 1, seed=0, log=lambda line: None)  # one batch of 6 crops
    assert all(np.isfinite(value).all() for value in few.values())
    with pytest.raises(ValueError, match="no training faces"):
        train_eye_stage(STAGE, [], np.zeros((0, 68, 2)), 1, seed=0, log=lambda line: None)


# ---------------------------------------------------------------------------------------------- checkpoint
@pytest.fixture()
def with_eyes(tmp_path):
    from keypoints.checkpoint import update_meta

    path = tmp_path / "best.npz"
    write_checkpoint(path, flip_test=True)
    eyes = build_eye_model(STAGE, np.random.default_rng(1)).state_dict()
    update_meta(path, entries={"eyes": eyes}, eye_stage=STAGE.to_dict())
    return path, eyes


def test_a_checkpoint_carries_its_eye_stage_and_the_predictor_reads_it(with_eyes):
    from keypoints.checkpoint import read_checkpoint
    from keypoints.predictor import load_predictor

    path, eyes = with_eyes
    checkpoint, _ = read_checkpoint(path)
    assert checkpoint["meta"]["eye_stage"] == STAGE.to_dict()
    for name, value in checkpoint["eye_model"].state_dict().items():
        np.testing.assert_array_equal(value, eyes[name])
    rng = np.random.default_rng(0)
    images = [rng.uniform(0, 1, (130, 110)).astype(np.float32) for _ in range(3)]
    with_stage = load_predictor(path)
    assert with_stage.eye_passes == 1 and "eye_passes=1" in repr(with_stage)
    without = load_predictor(path, eye_passes=0)
    plain, read = without.predict_details(images), with_stage.predict_details(images)
    np.testing.assert_array_equal(plain.points[:, :36], read.points[:, :36])  # only the eyes move
    np.testing.assert_array_equal(plain.points[:, 48:], read.points[:, 48:])
    grays = [image for image in images]
    expected = read_eyes(checkpoint["eye_model"], STAGE, grays, plain.points.astype(np.float64), passes=1)
    np.testing.assert_allclose(read.points, expected, atol=1e-4)
    # the normalised outputs follow the points (evaluate's nMSE reads them)
    from keypoints.geometry import apply_affine, normalize_keypoints

    crop = normalize_keypoints(apply_affine(read.points.astype(np.float64), read.affines), 96).reshape(3, -1)
    np.testing.assert_allclose(read.normalized, crop, atol=1e-4)


def test_eye_passes_are_refused_without_an_eye_stage(tmp_path):
    from keypoints.predictor import load_predictor

    path = tmp_path / "plain.npz"
    write_checkpoint(path)
    assert load_predictor(path).eye_passes == 0
    with pytest.raises(ValueError, match="eye_passes=2 needs an eye stage"):
        load_predictor(path, eye_passes=2)
    with pytest.raises(ValueError, match="eye_passes must be an int in 0..4"):
        load_predictor(path, eye_passes=7)


def test_a_broken_eye_stage_in_a_checkpoint_is_refused_naming_it(with_eyes, tmp_path):
    import tinynet
    from keypoints.checkpoint import CheckpointError, read_checkpoint

    path, _ = with_eyes
    stored = tinynet.load(path)
    cases = [
        (dict(stored, eyes={k: v for k, v in stored["eyes"].items() if k != "regressor.2.bias"}), "eyes"),
        ({k: v for k, v in stored.items() if k != "eyes"}, "holds no 'eyes' weights"),
        (dict(stored, meta=dict(stored["meta"], eye_stage=dict(STAGE.to_dict(), width=8))), "eyes"),
        (dict(stored, meta=dict(stored["meta"], eye_stage=dict(STAGE.to_dict(), size=20))), r"meta\.eye_stage\.size"),
        (dict(stored, eyes=dict(stored["eyes"], **{"regressor.2.bias": np.full(12, np.nan, np.float32)})),
         "eyes entry 'regressor.2.bias' holds NaN"),
    ]
    for i, (broken, message) in enumerate(cases):
        target = tmp_path / f"broken{i}.npz"
        tinynet.save(broken, target)
        with pytest.raises(CheckpointError, match=message):
            read_checkpoint(target)


def test_update_meta_refuses_eye_weights_that_do_not_fit_and_leaves_the_file(with_eyes):
    from keypoints.checkpoint import CheckpointError, update_meta

    path, eyes = with_eyes
    raw = path.read_bytes()
    wrong = build_eye_model(dataclasses.replace(STAGE, width=8)).state_dict()
    with pytest.raises(CheckpointError, match="eyes"):
        update_meta(path, entries={"eyes": wrong})
    assert path.read_bytes() == raw
    assert not list(path.parent.glob("*.update.npz"))  # nothing left behind


def test_the_eye_stage_needs_the_68_ibug_points():
    from keypoints.checkpoint import CheckpointError, validate_meta
    from keypoints.recipes import RECIPES
    from keypoints.train import recipe_for_points

    meta = {"arch": "naimishnet", "input_size": 96, "rescale": 107, "num_points": 5, "eye_stage": STAGE.to_dict()}
    with pytest.raises(CheckpointError, match=r"meta\.eye_stage must be null for 5 points"):
        validate_meta(meta)
    assert recipe_for_points(RECIPES["default"], 5, None).eye_epochs == 0
    assert recipe_for_points(RECIPES["default"], 68, mirror_permutation()).eye_epochs == RECIPES["default"].eye_epochs > 0
    assert RECIPES["reference"].eye_epochs == 0  # the classic recipe stays the classic recipe
