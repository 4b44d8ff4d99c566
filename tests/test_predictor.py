"""Tests for keypoints.predictor: loading a checkpoint, the input types it accepts, the exact mapping of
the network's output back to each crop's pixels, and test-time flip averaging.

The mapping and flip tests replace ``predictor.model`` by tiny ``Module`` subclasses whose outputs are
known, and compare against the rescale + centre-crop geometry written out by hand in
``keypoint_fixtures`` (independent of ``keypoints.transforms``)."""
from __future__ import annotations

import numpy as np
import pytest
from keypoint_fixtures import (
    crop_geometry,
    crop_to_image,
    from_normalized,
    image_to_crop,
    mirror_permutation,
    to_normalized,
    write_checkpoint,
)

import tinynet
from keypoints.predictor import Predictor, load_predictor
from tinynet.nn.module import Module

S = 96


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("predictor") / "best.npz"
    state = write_checkpoint(path, seed=4)
    return path, state


class FixedOutput(Module):
    """Returns the same normalised coordinates ``q`` (136,) for every crop; records what it saw."""

    def __init__(self, q: np.ndarray):
        super().__init__()
        self.q = np.asarray(q, dtype=np.float32)
        self.seen: list[np.ndarray] = []

    def forward(self, x: np.ndarray) -> np.ndarray:
        assert x.ndim == 4 and x.shape[1:] == (1, S, S) and x.dtype == np.float32
        self.seen.append(x.copy())
        return np.tile(self.q, (len(x), 1))


class LinearOutput(Module):
    """``h(x) = W x + b`` on the flattened crop: a deterministic output that depends on every pixel
    (and is not mirror-equivariant)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.w = rng.standard_normal((136, S * S)) / S
        self.b = rng.uniform(-1.0, 1.0, 136)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return (x.reshape(len(x), -1).astype(np.float64) @ self.w.T + self.b).astype(np.float32)


def mirror_normalized(q: np.ndarray) -> np.ndarray:
    """The network output of the mirrored face: in crop pixels ``x -> S - 1 - x`` and the left/right
    landmarks trade places. ``(N, 136) -> (N, 136)``."""
    points = from_normalized(np.asarray(q, dtype=np.float64).reshape(-1, 68, 2), S)
    mirrored = points[:, mirror_permutation()].copy()
    mirrored[..., 0] = S - 1 - mirrored[..., 0]
    return to_normalized(mirrored, S).reshape(-1, 136)


class EquivariantOutput(LinearOutput):
    """``f(x) = (h(x) + mirror(h(flip x))) / 2``: exactly mirror-equivariant, ``f(flip x) = mirror(f(x))``,
    because the mirror is an involution."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        direct = super().forward(x).astype(np.float64)
        flipped = super().forward(np.ascontiguousarray(x[..., ::-1])).astype(np.float64)
        return (0.5 * (direct + mirror_normalized(flipped))).astype(np.float32)


def gray_images(shapes, seed=0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=shape, dtype=np.uint8) for shape in shapes]


# ---------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------


def test_load_predictor_restores_weights_and_meta(checkpoint):
    path, state = checkpoint
    predictor = load_predictor(path)
    assert isinstance(predictor, Predictor)
    assert predictor.input_size == 96 and predictor.rescale == 107 and predictor.flip is False
    assert predictor.model.training is False
    loaded = predictor.model.state_dict()
    assert list(loaded) == list(state)
    for key in state:
        np.testing.assert_array_equal(loaded[key], state[key], err_msg=key)
    assert load_predictor(path, flip=True).flip is True


def test_checkpoint_flip_default(tmp_path):
    write_checkpoint(tmp_path / "flip.npz", flip_test=True)
    assert load_predictor(tmp_path / "flip.npz").flip is True
    assert load_predictor(tmp_path / "flip.npz", flip=False).flip is False


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "noise.npz").write_bytes(b"definitely not a zip archive")
    np.savez(tmp_path / "plain.npz", weight=np.zeros(3))
    tinynet.save({"model": {"w": np.zeros(3)}}, tmp_path / "other.npz")  # a tinynet file without keypoints meta
    tinynet.save({"meta": {"arch": "resnet"}, "model": {"w": np.zeros(3)}}, tmp_path / "arch.npz")
    for name in ("noise.npz", "plain.npz", "other.npz", "arch.npz"):
        with pytest.raises(ValueError, match=name):
            load_predictor(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        load_predictor(tmp_path / "missing.npz")


# ---------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------


def test_predict_any_size_dtype_and_channels(checkpoint):
    """The same gray content as uint8 gray/BGR/BGRA, uint16 and float gives the same points; every
    result is (N, 68, 2) float32."""
    predictor = load_predictor(checkpoint[0])
    images = gray_images([(80, 64), (130, 100), (120, 120)], seed=1)
    reference = predictor.predict(images)
    assert reference.shape == (3, 68, 2) and reference.dtype == np.float32 and np.isfinite(reference).all()
    variants = {
        "bgr": [np.repeat(g[..., None], 3, axis=2) for g in images],
        "bgra": [np.dstack([g, g, g, np.full_like(g, 7)]) for g in images],  # alpha is ignored
        "uint16": [g.astype(np.uint16) * 257 for g in images],  # 255 * 257 = 65535
        "float32": [(g / np.float32(255)).astype(np.float32) for g in images],
        "float64": [g / 255.0 for g in images],
    }
    for name, batch in variants.items():
        points = predictor.predict(batch)
        assert points.shape == (3, 68, 2) and points.dtype == np.float32, name
        np.testing.assert_allclose(points, reference, atol=2e-3, err_msg=name)
    # equal-sized crops as one array, gray (N, H, W) and colour (N, H, W, 3)
    same = gray_images([(100, 90)] * 2, seed=2)
    by_list = predictor.predict(same)
    np.testing.assert_allclose(predictor.predict(np.stack(same)), by_list, atol=1e-5)
    np.testing.assert_allclose(predictor.predict(np.stack([np.dstack([g] * 3) for g in same])), by_list, atol=2e-3)


def test_predict_rejects_a_single_image_and_accepts_none(checkpoint):
    predictor = load_predictor(checkpoint[0])
    with pytest.raises(ValueError, match="wrap a single"):
        predictor.predict(np.zeros((100, 100), np.uint8))
    empty = predictor.predict([])
    assert empty.shape == (0, 68, 2) and empty.dtype == np.float32
    with pytest.raises(ValueError, match="dtype"):
        predictor.predict([np.zeros((100, 100), np.int32)])


def test_real_network_sees_the_centre_crop(checkpoint):
    """An image whose shorter side is already 107 is not resized: the network reads the centre slice
    rows 6..101, columns 12..107 of a 107 x 120 image (offsets round(11/2) = 6, round(24/2) = 12), and
    the points are its de-normalised output shifted by (12, 6)."""
    predictor = load_predictor(checkpoint[0])
    image = np.random.default_rng(3).random((107, 120), dtype=np.float32)
    details = predictor.predict_details([image])
    crop = image[6:102, 12:108]
    with tinynet.no_grad():
        expected = predictor.model(np.ascontiguousarray(crop)[None, None])
    np.testing.assert_allclose(details.normalized, expected, rtol=1e-5, atol=1e-5)
    points = from_normalized(expected.reshape(68, 2)) + [12, 6]
    np.testing.assert_allclose(details.points[0], points, atol=1e-4)


# ---------------------------------------------------------------------------------------------------
# Coordinate mapping, exactly
# ---------------------------------------------------------------------------------------------------

SHAPES = [(80, 64), (100, 130), (120, 120), (300, 200), (107, 250), (61, 97), (150, 200)]


def test_hand_geometry_of_one_case():
    """150 x 200 by hand: shorter side 150 -> 107, longer int(107 * 200 / 150) = int(142.67) = 142;
    crop offsets round((107 - 96) / 2) = round(5.5) = 6 and round((142 - 96) / 2) = 23."""
    assert crop_geometry(150, 200) == (107, 142, 6, 23)
    # portrait 80 x 64: 64 -> 107, int(107 * 80 / 64) = int(133.75) = 133; round(37/2) = round(18.5) = 18
    # (Python rounds half to even, as torchvision's CenterCrop), round(11/2) = 6
    assert crop_geometry(80, 64) == (133, 107, 18, 6)


def test_points_are_the_exact_inverse_of_rescale_and_centre_crop(checkpoint):
    predictor = load_predictor(checkpoint[0])
    q = np.random.default_rng(5).uniform(-1.5, 1.5, 136)
    fake = FixedOutput(q)
    predictor.model = fake
    images = gray_images(SHAPES, seed=6)
    details = predictor.predict_details(images, batch_size=3)
    assert details.points.shape == (len(SHAPES), 68, 2) and details.points.dtype == np.float32
    assert [len(x) for x in fake.seen] == [3, 3, 1]  # batches of at most batch_size
    crop_points = from_normalized(q.reshape(68, 2))
    for i, (h, w) in enumerate(SHAPES):
        expected = crop_to_image(crop_points, h, w)
        np.testing.assert_allclose(details.points[i], expected, rtol=0, atol=1e-4, err_msg=str((h, w)))
        # the affine maps image pixels to crop pixels
        corners = np.array([[0.0, 0.0], [w - 1.0, h - 1.0], [12.5, 30.25]])
        mapped = corners @ details.affines[i][:2, :2].T + details.affines[i][:2, 2]
        np.testing.assert_allclose(mapped, image_to_crop(corners, h, w), atol=1e-9)
    np.testing.assert_allclose(details.normalized, np.tile(q, (len(SHAPES), 1)).astype(np.float32))
    # one literal value for 150 x 200 (q = 0 is crop pixel 100 * 96 / 224 = 42.857...):
    predictor.model = FixedOutput(np.zeros(136))
    point = predictor.predict([np.zeros((150, 200), np.uint8)])[0, 0]
    np.testing.assert_allclose(
        point, [(300 / 7 + 23 + 0.5) * 200 / 142 - 0.5, (300 / 7 + 6 + 0.5) * 150 / 107 - 0.5], atol=1e-4
    )


def test_network_input_is_the_centre_crop_of_the_rescaled_gray_image(checkpoint):
    """A linear ramp survives resizing exactly (bilinear and area interpolation reproduce linear
    functions away from the borders), so the crop the network reads is known in closed form."""
    predictor = load_predictor(checkpoint[0])
    fake = FixedOutput(np.zeros(136))
    predictor.model = fake
    h, w = 214, 300  # resized by exactly 1/2: 214 -> 107, 300 -> 150 (area interpolation = 2x2 means)
    rows, cols = np.mgrid[0:h, 0:w]
    image = (0.001 * cols + 0.002 * rows).astype(np.float32)
    predictor.predict([image])
    crop = fake.seen[0][0, 0]
    new_h, new_w, top, left = crop_geometry(h, w)
    assert (new_h, new_w, top, left) == (107, 150, 6, 27)
    rr, cc = np.mgrid[0:S, 0:S]
    x = (cc + left + 0.5) * w / new_w - 0.5  # the original pixel under each crop pixel centre
    y = (rr + top + 0.5) * h / new_h - 0.5
    np.testing.assert_allclose(crop, 0.001 * x + 0.002 * y, atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# Flip averaging
# ---------------------------------------------------------------------------------------------------


def test_flip_averaging_is_exact_for_an_equivariant_network(checkpoint):
    predictor = load_predictor(checkpoint[0])
    predictor.model = EquivariantOutput(seed=7)
    images = gray_images([(120, 100), (90, 140)], seed=8)
    predictor.flip = False
    single = predictor.predict(images)
    predictor.flip = True
    averaged = predictor.predict(images)
    assert np.abs(single).max() > 1.0  # not a trivial all-zero output
    np.testing.assert_allclose(averaged, single, atol=1e-3)


def test_flip_averaging_matches_the_hand_average(checkpoint):
    """A network that is not equivariant: the flip-averaged points are the mean of its output and the
    un-mirrored output for the mirrored crop, then mapped back."""
    predictor = load_predictor(checkpoint[0])
    model = LinearOutput(seed=9)
    fake = FixedOutput(np.zeros(136))  # only to capture the crops
    shapes = [(120, 100), (90, 140)]
    images = gray_images(shapes, seed=10)
    predictor.model = fake
    predictor.predict(images)
    crops = fake.seen[0]  # (N, 1, S, S)
    direct = model(crops).astype(np.float64)
    mirrored_back = mirror_normalized(model(np.ascontiguousarray(crops[..., ::-1])))
    crop_points = from_normalized((0.5 * (direct + mirrored_back)).reshape(-1, 68, 2))
    predictor.model, predictor.flip = model, True
    averaged = predictor.predict(images)
    predictor.flip = False
    single = predictor.predict(images)
    for i, (h, w) in enumerate(shapes):
        np.testing.assert_allclose(averaged[i], crop_to_image(crop_points[i], h, w), atol=1e-3)
    assert np.abs(averaged - single).max() > 1.0  # the flip really changed something here


# ---------------------------------------------------------------------------------------------------
# Speed settings
# ---------------------------------------------------------------------------------------------------


def test_speed_fast_reads_the_shipped_model_at_most_twice_and_each_closeup_stage_once():
    accurate, fast = load_predictor(), load_predictor(speed="fast")
    assert accurate.flip and accurate.refine_passes == 2 and len(accurate.test_frames) == 4
    assert accurate.closeup_reads() == {"eyes": 2, "mouth": 2}
    assert (fast.flip, fast.refine_passes, fast.test_frames) == (False, 1, ())
    assert fast.closeup_reads() == {"eyes": 1, "mouth": 1}
    # fast reads a face again only where its frame moves by 5 % of the crop or more; accurate always
    assert (accurate.refine_tolerance, fast.refine_tolerance) == (0.0, 0.05) and "refine_tolerance=0.05" in repr(fast)
    # a setting given explicitly wins over the speed's
    mixed = load_predictor(speed="fast", flip=True, refine_passes=2, closeup_passes=0, int8_linears=False,
                           refine_tolerance=0.0)
    assert (mixed.flip, mixed.refine_passes, mixed.test_frames, mixed.closeup_reads()) == (True, 2, (), {})
    assert mixed.refine_tolerance == 0.0
    assert not mixed.int8_linears and "int8" not in repr(mixed)


def _linear_kinds(model) -> set:
    return {type(module).__name__ for module in model.modules() if "Linear" in type(module).__name__}


def test_speed_fast_runs_int8_linear_layers_in_copies_of_the_networks():
    accurate, fast = load_predictor(), load_predictor(speed="fast")
    assert not accurate.int8_linears and _linear_kinds(accurate.model) == {"Linear"}
    assert fast.int8_linears and repr(fast).endswith(", int8_linears=True)")
    for model in [fast.model, *fast.closeup_models.values()]:
        assert _linear_kinds(model) == {"Int8Linear"} and not model.training
    # a model handed to the Predictor stays float: the int8 layers are in a copy
    model = accurate.model
    quantized = Predictor(model, accurate.meta, int8_linears=True)
    assert _linear_kinds(model) == {"Linear"} and _linear_kinds(quantized.model) == {"Int8Linear"}
    with pytest.raises(ValueError, match="int8_linears must be True or False, got 'yes'"):
        Predictor(model, accurate.meta, int8_linears="yes")
    # on the README portrait the same reads land within 1 % of the eye distance of the float network's points
    # (measured: 0.36 px, the eyes 81 px apart; the test NME is 5.6 %)
    import cv2
    from matplotlib import cbook
    from keypoints.wild.faces import predict_faces

    photo = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), cv2.IMREAD_COLOR)
    settings = {"flip": False, "refine_passes": 1, "test_frames": ()}
    float_points = predict_faces(Predictor(model, accurate.meta, **settings), photo)[0].points
    int8_points = predict_faces(Predictor(model, accurate.meta, int8_linears=True, **settings), photo)[0].points
    eye_distance = np.linalg.norm(float_points[36:42].mean(axis=0) - float_points[42:48].mean(axis=0))
    assert 0 < np.abs(int8_points - float_points).max() < 0.01 * eye_distance


def test_speed_fast_never_adds_reads_a_checkpoint_lacks(checkpoint):
    # write_checkpoint's model: no refinement passes, no close-up stages
    plain = load_predictor(checkpoint[0])
    fast = load_predictor(checkpoint[0], speed="fast")
    assert plain.refine_passes == 0 and fast.refine_passes == 0 and fast.closeup_reads() == {} and not fast.flip


def test_speed_is_checked_before_the_file_is_read(tmp_path):
    with pytest.raises(ValueError, match="speed must be one of accurate, fast, got 'slow'"):
        load_predictor(tmp_path / "missing.npz", speed="slow")
