"""The close-up stages (keypoints.closeup): their framing, their reads mapped back, their training, their
checkpoint entries and the predictor's use of them."""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest

from keypoint_fixtures import canonical_face, mirror_permutation, write_checkpoint

from keypoints.closeup.stage import (
    EYES,
    MOUTH,
    REGIONS,
    CloseupStage,
    build_closeup_model,
    checked_closeup,
    crop_matrices,
    points_from_outputs,
    read_region,
    region_nme,
    region_targets,
)

STAGE = CloseupStage(size=32, side=0.8, width=4, passes=1)


def turned_face(degrees: float = 0.0, scale: float = 2.0, centre=(100.0, 90.0)) -> np.ndarray:
    """canonical_face(96) scaled, turned counter-clockwise as displayed (y down) and moved: (68, 2)."""
    face = canonical_face(96) - 48.0
    a = math.radians(degrees)
    rotation = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    return face @ rotation.T * scale + np.asarray(centre)


def to_crop(point, matrix):  # written out here, not keypoints.geometry
    return matrix[:2, :2] @ point + matrix[:2, 2]


# ---------------------------------------------------------------------------------------------- the spec
@pytest.mark.parametrize("values, field", [
    (dict(size=20), "size"), (dict(size=8), "size"), (dict(size=256), "size"), (dict(size=48.0), "size"),
    (dict(width=2), "width"), (dict(width=True), "width"), (dict(passes=5), "passes"), (dict(passes=-1), "passes"),
    (dict(side=0.1), "side"), (dict(side=float("nan")), "side"), (dict(side="0.8"), "side"),
])
def test_a_bad_stage_is_refused_naming_the_region_and_the_field(values, field):
    with pytest.raises(ValueError, match=rf"closeup\.mouth: {field}"):
        checked_closeup({"mouth": dict(CloseupStage().to_dict(), **values)})


def test_the_closeup_field_names_known_regions_with_exactly_their_fields():
    assert checked_closeup({"eyes": STAGE.to_dict()}) == {"eyes": STAGE}
    for values in ({"nose": STAGE.to_dict()}, [STAGE.to_dict()], {"eyes": {"size": 48}},
                   {"eyes": dict(STAGE.to_dict(), extra=1)}):
        with pytest.raises(ValueError, match="closeup"):
            checked_closeup(values)


def test_the_regions_read_the_eyes_and_the_mouth_in_that_order():
    assert list(REGIONS) == ["eyes", "mouth"]
    assert EYES.points == tuple(range(36, 48)) and MOUTH.points == tuple(range(48, 68))
    # a mirrored crop lists, in the output's order, the points that play those roles on the mirrored face
    perm = mirror_permutation()
    assert EYES.crops[1] == (tuple(perm[36:42]), True) and MOUTH.crops[1] == (tuple(perm[48:68]), True)


# ---------------------------------------------------------------------------------------------- framing
@pytest.mark.parametrize("degrees", [0.0, 20.0, -35.0])
def test_each_eye_is_centred_level_and_the_eye_distance_fixed(degrees):
    points = turned_face(degrees)[None]
    matrices = crop_matrices(points, EYES, STAGE)
    right, left = points[0, 36:42].mean(axis=0), points[0, 42:48].mean(axis=0)
    middle = (STAGE.size - 1) / 2
    np.testing.assert_allclose(to_crop(right, matrices[0, 0]), [middle, middle], atol=1e-9)
    np.testing.assert_allclose(to_crop(left, matrices[0, 1]), [middle, middle], atol=1e-9)
    # in the right eye's crop the left eye sits level with it, S / side pixels to the right
    np.testing.assert_allclose(to_crop(left, matrices[0, 0]), [middle + STAGE.size / STAGE.side, middle], atol=1e-9)
    # the left eye is mirrored: its crop sees the right eye on its right too
    np.testing.assert_allclose(to_crop(right, matrices[0, 1]), [middle + STAGE.size / STAGE.side, middle], atol=1e-9)
    # in both crops the outer corner (36; 45 mirrored) is on the left and the inner one (39; 42) on the right
    for m, outer, inner in ((matrices[0, 0], 36, 39), (matrices[0, 1], 45, 42)):
        assert to_crop(points[0, outer], m)[0] < middle < to_crop(points[0, inner], m)[0]


def test_the_mouth_is_centred_level_and_read_both_ways_round():
    points = turned_face(25.0)[None]
    stage = CloseupStage(size=40, side=1.4, width=4, passes=1)
    matrices = crop_matrices(points, MOUTH, stage)
    middle = (stage.size - 1) / 2
    for m in matrices[0]:
        np.testing.assert_allclose(to_crop(points[0, 48:68].mean(axis=0), m), [middle, middle], atol=1e-9)
        left_corner, right_corner = to_crop(points[0, 48], m), to_crop(points[0, 54], m)
        assert left_corner[1] == pytest.approx(right_corner[1])  # level: the face is turned back upright
    # plain: corner 48 on the left; mirrored: on the right
    assert to_crop(points[0, 48], matrices[0, 0])[0] < middle < to_crop(points[0, 48], matrices[0, 1])[0]


def test_the_training_jitter_moves_zooms_and_turns_the_frame_as_documented():
    points = turned_face(10.0)[None]
    distance = np.linalg.norm(points[0, 42:48].mean(0) - points[0, 36:42].mean(0))
    shift = np.array([[[0.1, -0.05], [0.0, 0.0]]])
    moved = crop_matrices(points, EYES, STAGE, shift=shift)
    centre = points[0, 36:42].mean(0) + shift[0, 0] * distance
    np.testing.assert_allclose(to_crop(centre, moved[0, 0]), [(STAGE.size - 1) / 2] * 2, atol=1e-9)
    zoomed = crop_matrices(points, EYES, STAGE, zoom=np.array([[1.25, 1.0]]))
    plain = crop_matrices(points, EYES, STAGE)
    np.testing.assert_allclose(np.linalg.det(zoomed[0, 0, :2, :2]), 1.25**2 * np.linalg.det(plain[0, 0, :2, :2]))
    turned = crop_matrices(points, EYES, STAGE, degrees=np.array([[0.0, 30.0]]))
    np.testing.assert_allclose(turned[0, 0], plain[0, 0])  # only the left eye was asked to turn
    assert not np.allclose(turned[0, 1], plain[0, 1])


@pytest.mark.parametrize("region", [EYES, MOUTH], ids=lambda r: r.name)
def test_a_batch_of_faces_frames_each_face_as_it_would_alone(region):
    """Faces of different turns, sizes and places, each crop with its own jitter, framed in one call (as training
    frames all its faces): every face's matrices are those it gets alone."""
    faces = np.stack([turned_face(degrees, scale, centre) for degrees, scale, centre in
                      ((0.0, 2.0, (100.0, 90.0)), (25.0, 1.2, (300.0, 40.0)), (-40.0, 3.5, (60.0, 250.0)))])
    faces[1, 36:48] = faces[1, 36]  # no frame for the middle one
    rng = np.random.default_rng(0)
    crops = len(region.crops)
    shift, zoom = rng.normal(0, 0.05, (3, crops, 2)), rng.uniform(0.9, 1.1, (3, crops))
    degrees = rng.uniform(-15, 15, (3, crops))
    together = crop_matrices(faces, region, STAGE, shift, zoom, degrees)
    assert together.shape == (3, crops, 3, 3) and np.isnan(together[1]).all()
    for i in (0, 2):
        alone = crop_matrices(faces[i : i + 1], region, STAGE, shift[i : i + 1], zoom[i : i + 1], degrees[i : i + 1])
        np.testing.assert_allclose(together[i], alone[0], rtol=1e-12, atol=1e-9)
        assert not np.allclose(together[i], together[2 - i])  # and the faces differ


def test_faces_whose_eyes_coincide_get_no_frame_and_keep_their_points():
    points = np.stack([turned_face(), turned_face()])
    points[1, 36:48] = points[1, 36]  # both eyes on one spot
    matrices = crop_matrices(points, MOUTH, STAGE)
    assert np.isfinite(matrices[0]).all() and np.isnan(matrices[1]).all()
    image = np.full((200, 200), 0.5, np.float32)
    read = read_region(build_closeup_model(MOUTH, STAGE, np.random.default_rng(0)), MOUTH, STAGE, [image, image], points)
    np.testing.assert_array_equal(read[1], points[1])
    assert not np.allclose(read[0, 48:68], points[0, 48:68])


@pytest.mark.parametrize("region", [EYES, MOUTH], ids=lambda r: r.name)
def test_targets_and_outputs_are_inverse_maps(region):
    rng = np.random.default_rng(0)
    points = np.stack([turned_face(d, s) for d, s in ((5.0, 1.5), (-25.0, 2.5))]) + rng.normal(0, 1, (2, 68, 2))
    matrices = crop_matrices(points, region, STAGE)
    targets = region_targets(points, matrices, region, STAGE.size)
    assert targets.shape == (4, 2 * region.outputs) and targets.dtype == np.float32
    np.testing.assert_allclose(points_from_outputs(targets, matrices, region, STAGE.size),
                               points[:, list(region.points)], atol=1e-3)  # float32 targets: about 1e-5 of a crop


class ConstantNetwork:
    """A close-up network that answers the same numbers for every crop."""

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
    image = [np.zeros((200, 200), np.float32)]
    read = read_region(ConstantNetwork(answer), EYES, STAGE, image, points, passes=1)[0]
    mirrored = read.copy()
    mirrored[:, 0] = 2 * 100.0 - mirrored[:, 0]
    np.testing.assert_allclose(read[36:48], mirrored[mirror_permutation()][36:48], atol=1e-9)
    np.testing.assert_array_equal(np.delete(read, np.s_[36:48], axis=0), np.delete(points[0], np.s_[36:48], axis=0))
    zero = read_region(ConstantNetwork(np.zeros(12)), EYES, STAGE, image, points, passes=1)[0]
    # a network answering the crop centre puts all six points of each eye on that eye's centre
    np.testing.assert_allclose(zero[36:42], np.tile(points[0, 36:42].mean(0), (6, 1)), atol=1e-9)
    np.testing.assert_allclose(zero[42:48], np.tile(points[0, 42:48].mean(0), (6, 1)), atol=1e-9)


def test_the_mouth_is_the_mean_of_its_plain_and_its_mirrored_read():
    """A constant answer q: the plain read puts point k at q_k mapped back, the mirrored read puts point
    perm[k] at q_k mirrored back; each mouth point is the mean of the two."""
    points = turned_face(12.0)[None]
    answer = np.random.default_rng(1).uniform(-0.8, 0.8, 40)
    stage = CloseupStage(size=32, side=1.4, width=4, passes=1)
    read = read_region(ConstantNetwork(answer), MOUTH, stage, [np.zeros((200, 200), np.float32)], points, passes=1)[0]
    matrices = crop_matrices(points, MOUTH, stage)[0]
    crop = answer.reshape(20, 2) * 16 + 15.5
    plain = (np.linalg.inv(matrices[0])[:2, :2] @ crop.T).T + np.linalg.inv(matrices[0])[:2, 2]
    flipped = (np.linalg.inv(matrices[1])[:2, :2] @ crop.T).T + np.linalg.inv(matrices[1])[:2, 2]
    expected = np.zeros((68, 2))
    expected[48:68] += 0.5 * plain
    expected[mirror_permutation()[48:68]] += 0.5 * flipped
    np.testing.assert_allclose(read[48:68], expected[48:68], atol=1e-9)


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
    from keypoints.closeup.training import train_closeup

    stage = CloseupStage(size=32, side=0.8, width=8, passes=2)
    images, points = drawn_faces(160, seed=0)
    val_images, val_points = drawn_faces(24, seed=1)
    start = val_points.copy()
    distance = np.linalg.norm(val_points[:, 42:48].mean(1) - val_points[:, 36:42].mean(1), axis=1)
    start[:, 36:48] += (np.array([0.0, 0.12]) * distance[:, None])[:, None]  # eyes framed 0.12 eye distances low
    lines = []
    weights, history = train_closeup(EYES, stage, images, points, 12, seed=0,
                                     validation=(val_images, start, val_points), log=lines.append)
    before = region_nme(start, val_points, EYES)
    model = build_closeup_model(EYES, stage)
    model.load_state_dict(weights)
    after = region_nme(read_region(model, EYES, stage, val_images, start), val_points, EYES)
    assert after < 0.5 * before, (before, after, history)  # measured: 9 % -> about 1 %
    best = min(record["val_nme_percent"] for record in history)
    assert 100 * after == pytest.approx(best, rel=1e-6)  # the weights returned are the best epoch's
    assert len(history) == 12 and "held out" in lines[0]


def test_training_is_reproducible_from_the_seed():
    from keypoints.closeup.training import train_closeup

    images, points = drawn_faces(40, seed=2)
    quiet = dict(log=lambda line: None)
    first, _ = train_closeup(MOUTH, STAGE, images, points, 2, seed=3, **quiet)
    second, _ = train_closeup(MOUTH, STAGE, images, points, 2, seed=3, **quiet)
    other, _ = train_closeup(MOUTH, STAGE, images, points, 2, seed=4, **quiet)
    eyes, _ = train_closeup(EYES, STAGE, images, points, 2, seed=3, **quiet)
    assert all(np.array_equal(first[k], second[k]) for k in first)
    assert not all(np.array_equal(first[k], other[k]) for k in first)
    assert eyes["features.0.weight"].shape == first["features.0.weight"].shape  # same convs, ...
    assert not np.array_equal(eyes["features.0.weight"], first["features.0.weight"])  # ... a stream of its own
    few, _ = train_closeup(EYES, STAGE, images[:3], points[:3], 1, seed=0, **quiet)  # one batch of 6 crops
    assert all(np.isfinite(value).all() for value in few.values())
    with pytest.raises(ValueError, match="no training faces"):
        train_closeup(EYES, STAGE, [], np.zeros((0, 68, 2)), 1, seed=0, **quiet)


# ---------------------------------------------------------------------------------------------- checkpoint
MOUTH_STAGE = CloseupStage(size=32, side=1.4, width=4, passes=2)


@pytest.fixture()
def with_closeup(tmp_path):
    from keypoints.checkpoint import update_meta

    path = tmp_path / "best.npz"
    write_checkpoint(path, flip_test=True)
    weights = {"eyes": build_closeup_model(EYES, STAGE, np.random.default_rng(1)).state_dict(),
               "mouth": build_closeup_model(MOUTH, MOUTH_STAGE, np.random.default_rng(2)).state_dict()}
    update_meta(path, entries={"closeup": weights}, closeup={"eyes": STAGE.to_dict(), "mouth": MOUTH_STAGE.to_dict()})
    return path, weights


def test_a_checkpoint_carries_its_closeup_stages_and_the_predictor_reads_them(with_closeup):
    from keypoints.checkpoint import read_checkpoint
    from keypoints.geometry import apply_affine, normalize_keypoints
    from keypoints.predictor import load_predictor

    path, weights = with_closeup
    checkpoint, _ = read_checkpoint(path)
    assert checkpoint["meta"]["closeup"] == {"eyes": STAGE.to_dict(), "mouth": MOUTH_STAGE.to_dict()}
    for name, net in checkpoint["closeup_models"].items():
        for key, value in net.state_dict().items():
            np.testing.assert_array_equal(value, weights[name][key])
    rng = np.random.default_rng(0)
    images = [rng.uniform(0, 1, (130, 110)).astype(np.float32) for _ in range(3)]
    with_stages = load_predictor(path)
    assert with_stages.closeup_reads() == {"eyes": 1, "mouth": 2} and "'mouth': 2" in repr(with_stages)
    assert load_predictor(path, closeup_passes=3).closeup_reads() == {"eyes": 3, "mouth": 3}
    plain, read = load_predictor(path, closeup_passes=0).predict_details(images), with_stages.predict_details(images)
    np.testing.assert_array_equal(plain.points[:, :36], read.points[:, :36])  # only the eyes and mouth move
    expected = read_region(checkpoint["closeup_models"]["eyes"], EYES, STAGE, images, plain.points.astype(np.float64))
    expected = read_region(checkpoint["closeup_models"]["mouth"], MOUTH, MOUTH_STAGE, images, expected)
    np.testing.assert_allclose(read.points, expected, atol=1e-4)
    # the normalised outputs follow the points (evaluate's nMSE reads them)
    crop = normalize_keypoints(apply_affine(read.points.astype(np.float64), read.affines), 96).reshape(3, -1)
    np.testing.assert_allclose(read.normalized, crop, atol=1e-4)


def test_closeup_passes_are_refused_without_closeup_stages(tmp_path):
    from keypoints.predictor import load_predictor

    path = tmp_path / "plain.npz"
    write_checkpoint(path)
    assert load_predictor(path).closeup_reads() == {}
    with pytest.raises(ValueError, match="closeup_passes=2 needs close-up stages"):
        load_predictor(path, closeup_passes=2)
    with pytest.raises(ValueError, match="closeup_passes must be an int in 0..4"):
        load_predictor(path, closeup_passes=7)


def test_a_broken_closeup_stage_in_a_checkpoint_is_refused_naming_it(with_closeup, tmp_path):
    import tinynet
    from keypoints.checkpoint import CheckpointError, read_checkpoint

    path, _ = with_closeup
    stored = tinynet.load(path)
    eyes = stored["closeup"]["eyes"]
    cases = [
        (dict(stored, closeup=dict(stored["closeup"], eyes={k: v for k, v in eyes.items() if k != "regressor.2.bias"})),
         "closeup eyes"),
        ({k: v for k, v in stored.items() if k != "closeup"}, r"meta\.closeup names \['eyes', 'mouth'\]"),
        (dict(stored, closeup={"eyes": eyes}), "the file's 'closeup' weights are \\['eyes'\\]"),
        (dict(stored, meta=dict(stored["meta"], closeup={"eyes": dict(STAGE.to_dict(), width=8),
                                                         "mouth": MOUTH_STAGE.to_dict()})), "closeup eyes"),
        (dict(stored, meta=dict(stored["meta"], closeup={"eyes": dict(STAGE.to_dict(), size=20)})),
         r"meta\.closeup\.eyes: size"),
        (dict(stored, closeup=dict(stored["closeup"], eyes=dict(eyes, **{"regressor.2.bias": np.full(12, np.nan, np.float32)}))),
         "closeup eyes entry 'regressor.2.bias' holds NaN"),
    ]
    for i, (broken, message) in enumerate(cases):
        target = tmp_path / f"broken{i}.npz"
        tinynet.save(broken, target)
        with pytest.raises(CheckpointError, match=message):
            read_checkpoint(target)


def test_update_meta_refuses_closeup_weights_that_do_not_fit_and_leaves_the_file(with_closeup):
    from keypoints.checkpoint import CheckpointError, update_meta

    path, weights = with_closeup
    raw = path.read_bytes()
    wrong = build_closeup_model(EYES, dataclasses.replace(STAGE, width=8)).state_dict()
    with pytest.raises(CheckpointError, match="closeup eyes"):
        update_meta(path, entries={"closeup": dict(weights, eyes=wrong)})
    assert path.read_bytes() == raw
    assert not list(path.parent.glob("*.update.npz"))  # nothing left behind


def test_the_closeup_stages_need_the_68_ibug_points():
    from keypoints.checkpoint import CheckpointError, validate_meta
    from keypoints.recipes import RECIPES, Recipe
    from keypoints.train import recipe_for_points

    meta = {"arch": "naimishnet", "input_size": 96, "rescale": 107, "num_points": 5, "closeup": {"eyes": STAGE.to_dict()}}
    with pytest.raises(CheckpointError, match=r"meta\.closeup must be null for 5 points"):
        validate_meta(meta)
    assert recipe_for_points(RECIPES["default"], 5, None).closeup == ()
    assert recipe_for_points(RECIPES["default"], 68, mirror_permutation()).closeup == ("eyes", "mouth")
    assert RECIPES["reference"].closeup == ()  # the classic recipe stays the classic recipe
    assert Recipe(closeup=["mouth"]).closeup == ("mouth",)  # as a checkpoint's recipe holds it
    for bad in (("nose",), ("eyes", "eyes")):
        with pytest.raises(ValueError, match="closeup must name distinct regions"):
            Recipe(closeup=bad)
