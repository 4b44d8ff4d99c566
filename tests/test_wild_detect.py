"""Face detection, framing, cropping, mapping back and drawing (keypoints.wild: detection, face_crop, faces,
drawing) and the framing measurement (benchmarks/measure_framing.py)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from keypoint_fixtures import real_data_dir, save_constant_face_model

from keypoints.geometry import FLIP_PERMUTATION
from keypoints.wild import detection
from keypoints.wild.detection import DETECTORS, detect_faces
from keypoints.wild.drawing import draw_boxes, draw_keypoints
from keypoints.wild.face_crop import FRAME_OFFSET, FRAME_SCALE, crop_face, crop_to_photo, pad_box, photo_to_crop
from keypoints.wild.faces import predict_faces

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from measure_framing import measure_framing  # noqa: E402

# Hand-annotated on matplotlib's grace_hopper.jpg (512 x 600) by looking at a gridded copy: the centres of
# her right eye (left in the picture) and left eye, the nose tip and the middle of the mouth.
GRACE_RIGHT_EYE = (225, 195)
GRACE_LEFT_EYE = (310, 192)
GRACE_NOSE_TIP = (265, 235)
GRACE_MOUTH = (265, 275)
# Measured once on the same photo, checked by eye on a 3x enlargement with the points drawn: the pupils'
# centres (iBUG points 36-41 and 42-47 averaged), the nose tip (point 30) and the mouth corners (48, 54).
# dlib's 68-point model gives (224, 192), (305, 189), (267, 238), (233, 281), (300, 277) on it.
REFERENCE_POINTS = {
    "right eye centre": ((224, 192), 6.0),  # (x, y), tolerance in pixels; the eye distance is 81 pixels
    "left eye centre": ((305, 189), 6.0),
    "nose tip": ((267, 238), 8.0),
    "right mouth corner": ((233, 281), 8.0),
    "left mouth corner": ((300, 277), 8.0),
}


def grace_hopper() -> np.ndarray:
    cbook = pytest.importorskip("matplotlib.cbook")
    image = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (600, 512, 3)
    return image


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return grace_hopper()


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    from keypoints.models import naimishnet
    from keypoints.predictor import load_predictor
    from keypoints.checkpoint import save_weights
    from keypoints.recipes import RECIPES

    path = tmp_path_factory.mktemp("model") / "m.npz"
    save_weights(path, RECIPES["reference"], naimishnet(96, seed=0).state_dict(), 1, 0.0)
    return load_predictor(path)


def _contains(box, point) -> bool:
    x, y, w, h = box
    return x <= point[0] < x + w and y <= point[1] < y + h


# ---------------------------------------------------------------------------------------------- detection
def test_haar_finds_exactly_one_face_in_the_portrait(portrait):
    boxes = detect_faces(portrait)
    assert boxes.shape == (1, 4) and boxes.dtype == np.int64
    for point in (GRACE_RIGHT_EYE, GRACE_LEFT_EYE, GRACE_NOSE_TIP, GRACE_MOUTH):
        assert _contains(boxes[0], point), (boxes[0], point)
    # a face box, not the whole picture: between a quarter and two thirds of the width
    assert 0.25 * 512 < boxes[0, 2] < 0.67 * 512


@pytest.mark.parametrize(
    "convert",
    [
        lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2GRAY),
        lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2GRAY)[:, :, None],
        lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2BGRA),
        lambda im: im.astype(np.uint16) * 257,
        lambda im: im.astype(np.float32) / 255.0,
        lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2GRAY).astype(np.float64) / 255.0,
    ],
    ids=["gray", "gray1", "bgra", "uint16", "float32", "float64-gray"],
)
def test_every_input_format_finds_the_same_face(portrait, convert):
    reference = detect_faces(portrait)
    boxes = detect_faces(convert(portrait))
    assert boxes.shape == (1, 4)
    # the gray conversion may round differently by one level; the box may move by a pixel or two
    np.testing.assert_allclose(boxes, reference, atol=3)


def test_huge_image_is_shrunk_for_detection_and_boxes_come_back_in_full_resolution(monkeypatch):
    seen = {}

    def spy(gray, min_size):
        seen["shape"], seen["min_size"] = gray.shape, min_size
        return np.array([[10, 20, 30, 40]])

    monkeypatch.setitem(DETECTORS, "spy", spy)
    image = np.zeros((2048, 4096), np.uint8)  # factor exactly 1/4 at max_side 1024
    boxes = detect_faces(image, detector="spy", max_side=1024, min_size=60)
    assert seen["shape"] == (512, 1024)
    assert seen["min_size"] == 15  # 60 full-resolution pixels
    np.testing.assert_array_equal(boxes, [[40, 80, 120, 160]])
    # small images are not touched
    detect_faces(np.zeros((300, 200), np.uint8), detector="spy", max_side=1024)
    assert seen["shape"] == (300, 200)


def test_huge_portrait_detects_the_same_face_scaled(portrait):
    big = cv2.resize(portrait, (512 * 4, 600 * 4), interpolation=cv2.INTER_CUBIC)
    small_box = detect_faces(portrait)[0]
    boxes = detect_faces(big, max_side=600)  # detection runs at 512 x 600, the original size
    assert boxes.shape == (1, 4)
    np.testing.assert_allclose(boxes[0], 4 * small_box, atol=4 * 4)


def test_boxes_sorted_left_to_right(monkeypatch):
    found = np.array([[50, 5, 10, 10], [5, 40, 10, 10], [5, 3, 10, 10]])
    monkeypatch.setitem(DETECTORS, "fixed", lambda gray, min_size: found)
    boxes = detect_faces(np.zeros((100, 100), np.uint8), detector="fixed")
    np.testing.assert_array_equal(boxes, [[5, 3, 10, 10], [5, 40, 10, 10], [50, 5, 10, 10]])


def test_no_face_gives_an_empty_array():
    boxes = detect_faces(np.full((200, 300, 3), 128, np.uint8))
    assert boxes.shape == (0, 4)


def test_detection_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown detector 'nope'"):
        detect_faces(np.zeros((50, 50), np.uint8), detector="nope")
    with pytest.raises(ValueError, match="empty"):
        detect_faces(np.zeros((0, 50), np.uint8))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        detect_faces(np.zeros((5, 5, 5), np.uint8))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        detect_faces([[0, 1], [2, 3]])
    with pytest.raises(ValueError, match="unsupported image dtype"):
        detect_faces(np.zeros((50, 50), np.int32))
    with pytest.raises(FileNotFoundError, match="Haar cascade .* not found"):
        detection._haar_cascade(str(tmp_path / "missing.xml"))
    bad = tmp_path / "bad.xml"
    bad.write_text("<opencv_storage></opencv_storage>")
    with pytest.raises(ValueError, match="could not load"):
        detection._haar_cascade(str(bad))


def test_haar_cascade_ships_with_opencv():
    assert os.path.isfile(detection.haar_cascade_path())
    assert detection.haar_cascade_path().endswith("haarcascade_frontalface_default.xml")


# ---------------------------------------------------------------------------------------------- framing
def test_pad_box_hand_computed():
    # box side 40, centre (120, 70); offset (0, 0.25) moves the centre 10 px down; side 80
    np.testing.assert_array_equal(pad_box((100, 50, 40, 40), scale=2.0, offset=(0.0, 0.25)), [80, 40, 80, 80])
    # non-square box: max side 60 -> side 90, centre (10 + 20, 0 + 30) moved by (-6, 0)
    np.testing.assert_array_equal(pad_box((10, 0, 40, 60), scale=1.5, offset=(-0.1, 0.0)), [-21, -15, 90, 90])


def test_pad_box_uses_the_measured_constants():
    x, y, side, side2 = pad_box((200, 100, 100, 100))
    assert side == side2 == round(FRAME_SCALE * 100)
    assert x + side / 2 == pytest.approx(250 + FRAME_OFFSET[0] * 100, abs=0.5)
    assert y + side / 2 == pytest.approx(150 + FRAME_OFFSET[1] * 100, abs=0.5)


def test_pad_box_errors():
    with pytest.raises(ValueError, match="positive"):
        pad_box((0, 0, 0, 10))
    with pytest.raises(ValueError, match=r"\(x, y, w, h\)"):
        pad_box((0, 0, 10))
    with pytest.raises(ValueError, match="does not overlap"):
        pad_box((1000, 1000, 10, 10), image_shape=(100, 100))


@pytest.mark.parametrize("channels", [None, 1, 3, 4])
@pytest.mark.parametrize("border", ["replicate", "constant"])
def test_crop_face_is_an_exact_slice_with_padding(rng, channels, border):
    shape = (37, 53) if channels is None else (37, 53, channels)
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)
    rect = (-7, 25, 30, 30)  # leaves the image on the left and at the bottom
    crop = crop_face(image, rect, border=border)
    assert crop.shape == (30, 30) + shape[2:] and crop.dtype == np.uint8
    rows = np.arange(25, 55)
    cols = np.arange(-7, 23)
    if border == "replicate":
        expected = image[np.clip(rows, 0, 36)][:, np.clip(cols, 0, 52)]
    else:
        expected = np.zeros((30, 30) + shape[2:], np.uint8)
        inside_r, inside_c = rows < 37, cols >= 0
        expected[np.ix_(inside_r, inside_c)] = image[np.ix_(rows[inside_r], cols[inside_c])]
    np.testing.assert_array_equal(crop, expected)


def test_crop_inside_is_a_copy(rng):
    image = rng.random((20, 20), dtype=np.float32)
    crop = crop_face(image, (2, 3, 5, 5))
    np.testing.assert_array_equal(crop, image[3:8, 2:7])
    crop[...] = 0
    assert image[3:8, 2:7].any()  # the photo is untouched


def test_crop_errors():
    with pytest.raises(ValueError, match="does not overlap"):
        crop_face(np.zeros((10, 10)), (20, 20, 5, 5))
    with pytest.raises(ValueError, match="border"):
        crop_face(np.zeros((10, 10)), (-2, 0, 5, 5), border="wrap")


def test_crop_to_photo_round_trips_exactly(rng):
    # quarter-pixel points: every step is exact in float64
    points = rng.integers(-400, 4000, size=(68, 2)) / 4.0
    rect = np.array([-13, 271, 140, 140])
    there = photo_to_crop(points, rect)
    np.testing.assert_array_equal(there, points - [-13, 271])  # hand: p - (x, y)
    np.testing.assert_array_equal(crop_to_photo(there, rect), points)


def test_a_marked_pixel_maps_back_to_its_photo_position(rng):
    image = rng.integers(0, 100, size=(300, 400), dtype=np.uint8)
    image[61, 137] = 255
    rect = pad_box((120, 40, 60, 60), image.shape)
    crop = crop_face(image, rect)
    row, col = np.unravel_index(np.argmax(crop), crop.shape)
    np.testing.assert_array_equal(crop_to_photo(np.array([[col, row]], float), rect), [[137, 61]])


# ---------------------------------------------------------------------------------------------- prediction
class BrightestPixelPredictor:
    """Stands in for the network: "predicts" the brightest pixel of each crop, 68 times, in crop pixels."""

    def __init__(self):
        self.calls = []

    def predict(self, crops):
        self.calls.append(len(crops))
        out = []
        for crop in crops:
            row, col = np.unravel_index(np.argmax(crop), crop.shape[:2])
            out.append(np.tile([col, row], (68, 1)).astype(np.float32))
        return np.stack(out)

    def predict_details(self, crops):
        """What ``predict_faces`` calls: the points, and no flip passes (so no confidence)."""
        from keypoints.predictor import Prediction

        return Prediction(self.predict(crops), None, None)


def test_predict_faces_batches_and_maps_back_exactly(rng):
    image = rng.integers(0, 100, size=(400, 500, 3), dtype=np.uint8)
    image[100, 90] = 255  # in face 1's crop
    image[300, 420] = 255  # in face 2's crop (near the border: its crop leaves the photo)
    boxes = np.array([[60, 70, 60, 60], [400, 280, 60, 60]])
    predictor = BrightestPixelPredictor()
    faces = predict_faces(predictor, image, boxes=boxes)
    assert predictor.calls == [2]  # one batch
    assert len(faces) == 2
    np.testing.assert_array_equal(faces[0].box, boxes[0])
    np.testing.assert_array_equal(faces[0].points, np.tile([90, 100], (68, 1)))
    np.testing.assert_array_equal(faces[1].points, np.tile([420, 300], (68, 1)))


def test_predict_faces_without_faces_does_not_call_the_network():
    predictor = BrightestPixelPredictor()
    assert predict_faces(predictor, np.full((120, 160), 0.5, np.float32)) == []
    assert predictor.calls == []


def test_untrained_model_end_to_end_on_the_portrait(portrait, untrained):
    faces = predict_faces(untrained, portrait)
    assert len(faces) == 1
    box, points, _ = faces[0]
    assert points.shape == (68, 2) and points.dtype == np.float64
    assert np.isfinite(points).all()
    x, y, side, _ = pad_box(box, portrait.shape)
    assert (points[:, 0] >= x).all() and (points[:, 0] < x + side).all()
    assert (points[:, 1] >= y).all() and (points[:, 1] < y + side).all()
    # one entry point: keypoints.predict_faces(predictor, photo); the Predictor has no method of that name
    import keypoints

    assert keypoints.predict_faces is predict_faces and not hasattr(untrained, "predict_faces")


def test_constant_model_points_follow_the_framing_chain_exactly(portrait, tmp_path):
    from keypoints.predictor import load_predictor

    face = save_constant_face_model(tmp_path / "constant.npz")
    predictor = load_predictor(tmp_path / "constant.npz")
    (box, points, _), = predict_faces(predictor, portrait)
    x, y, side, _ = pad_box(box, portrait.shape)
    # by hand: the square crop (side s) is resized to 107 x 107 (the checkpoint's "rescale" for S = 96),
    # the centre 96 x 96 is cut at offset round(11 / 2) = 6, and pixel centres scale as
    # x_crop = (x_107 + 0.5) * s / 107 - 0.5
    assert predictor.rescale == 107
    in_107 = face + 6
    expected = (in_107 + 0.5) * side / 107 - 0.5 + [x, y]
    np.testing.assert_allclose(points, expected, rtol=0, atol=1e-3)


def test_untrained_model_gray_and_rgba_give_the_same_points(portrait, untrained):
    (_, ref, _), = predict_faces(untrained, portrait)
    (_, gray, _), = predict_faces(untrained, cv2.cvtColor(portrait, cv2.COLOR_BGR2GRAY))
    (_, rgba, _), = predict_faces(untrained, cv2.cvtColor(portrait, cv2.COLOR_BGR2BGRA))
    np.testing.assert_allclose(rgba, ref, atol=1e-3)
    np.testing.assert_allclose(gray, ref, atol=0.5)  # an 8-bit gray image rounds each pixel


@pytest.fixture(scope="module")
def trained():
    """$KEYPOINTS_MODEL if set, else the model that ships with the package."""
    from keypoints.predictor import PRETRAINED

    path = os.environ.get("KEYPOINTS_MODEL") or str(PRETRAINED)
    if not Path(path).is_file():
        pytest.skip(f"no trained model at {path} (set KEYPOINTS_MODEL or train one)")
    from keypoints.predictor import load_predictor

    return load_predictor(path)


def test_trained_model_finds_the_portraits_features(portrait, trained):
    faces = predict_faces(trained, portrait)
    assert len(faces) == 1
    box, points, _ = faces[0]
    right_eye, left_eye = points[36:42].mean(axis=0), points[42:48].mean(axis=0)
    mouth, nose_tip = points[48:68].mean(axis=0), points[30]
    assert _contains(box, right_eye) and _contains(box, left_eye)
    assert right_eye[1] < mouth[1] and left_eye[1] < mouth[1]
    assert right_eye[0] < nose_tip[0] < left_eye[0]
    assert right_eye[0] < left_eye[0]  # the person's right eye is on the left of the picture
    # against the hand annotation, within 40 px (18% of the 222 px face box)
    pairs = ((right_eye, GRACE_RIGHT_EYE), (left_eye, GRACE_LEFT_EYE), (nose_tip, GRACE_NOSE_TIP), (mouth, GRACE_MOUTH))
    for predicted, annotated in pairs:
        assert np.linalg.norm(predicted - annotated) < 40, (predicted, annotated)
    # and against the measured reference points, within what a person looking at the picture accepts
    predicted = {"nose tip": nose_tip, "right mouth corner": points[48], "left mouth corner": points[54]}
    for name in predicted:
        reference, tolerance = REFERENCE_POINTS[name]
        error = float(np.linalg.norm(predicted[name] - np.array(reference)))
        assert error <= tolerance, f"{name}: predicted {predicted[name].round(1)}, reference {reference}, {error:.1f} px off"


# scikit-image's astronaut (512 x 512, RGB): measured once by eye on 8-16x enlargements, (x, y) in pixels
# with the measurement's uncertainty; the eye centres are 45 pixels apart, so 4 pixels is 9 % of that
ASTRONAUT_POINTS = {
    "right eye centre": ((203, 100), 4.0),  # measured +-1.5 px
    "left eye centre": ((248, 103), 4.0),  # +-1.5 px
    "nose tip": ((223, 127), 5.0),  # +-3 px
    "right mouth corner": ((202, 140), 8.0),  # +-3 px; in her broad smile the model puts the corners 4-7 px low
    "left mouth corner": ((244, 141), 8.0),
}


def test_trained_model_puts_the_astronauts_eyes_nose_and_mouth_where_they_are(trained):
    data = pytest.importorskip("skimage.data", reason="scikit-image (a test extra) ships the astronaut photo")
    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    (_, points, _), = predict_faces(trained, photo)
    predicted = {"right eye centre": points[36:42].mean(axis=0), "left eye centre": points[42:48].mean(axis=0),
                 "nose tip": points[30], "right mouth corner": points[48], "left mouth corner": points[54]}
    for name, (reference, tolerance) in ASTRONAUT_POINTS.items():
        error = float(np.linalg.norm(predicted[name] - np.array(reference)))
        assert error <= tolerance, f"{name}: predicted {predicted[name].round(1)}, reference {reference}, {error:.1f} px off"


def test_trained_model_puts_the_eye_centres_on_the_pupils(portrait, trained):
    """Behind her browline glasses the face network alone puts both eye centres 11-12 px (an eighth of the eye
    distance) below the pupils, on the lower lids; the close-up stage (keypoints.closeup) reads them up close."""
    (_, points, _), = predict_faces(trained, portrait)
    for name, eye in (("right eye centre", points[36:42]), ("left eye centre", points[42:48])):
        reference, tolerance = REFERENCE_POINTS[name]
        error = float(np.linalg.norm(eye.mean(axis=0) - np.array(reference)))
        assert error <= tolerance, f"{name}: predicted {eye.mean(axis=0).round(1)}, reference {reference}, {error:.1f} px off"


def test_trained_model_agrees_with_dlib_on_the_portrait(portrait, trained):
    """dlib's 68 points on the same photo as a second reference: NME (mean distance over dlib's outer
    eye-corner distance, 109 pixels) at most 8 %; the shipped model of the previous version was at 22 %."""
    dlib = pytest.importorskip("dlib")
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None:
        pytest.skip("dlib's 68-point model needs the face-recognition-models package (pip install -e '.[bench]')")
    model = Path(spec.submodule_search_locations[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    rgb = cv2.cvtColor(portrait, cv2.COLOR_BGR2RGB)
    rects = dlib.get_frontal_face_detector()(rgb, 1)
    assert len(rects) == 1
    reference = np.array([[p.x, p.y] for p in dlib.shape_predictor(str(model))(rgb, rects[0]).parts()], float)
    (_, points, _), = predict_faces(trained, portrait)
    nme = np.linalg.norm(points - reference, axis=1).mean() / np.linalg.norm(reference[36] - reference[45])
    assert nme <= 0.08, f"NME against dlib's points {100 * nme:.1f} %"


# ---------------------------------------------------------------------------------------------- drawing
def test_draw_keypoints_marks_the_points_on_a_copy():
    image = np.zeros((60, 80), np.uint8)
    points = np.array([[10.0, 20.0], [70.0, 50.0], [500.0, -30.0]])  # the last one is outside
    out = draw_keypoints(image, points, color=(0, 0, 255), radius=2, contours=False)
    assert out.shape == (60, 80, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[20, 10], [0, 0, 255])
    np.testing.assert_array_equal(out[50, 70], [0, 0, 255])
    assert out[35, 40].sum() == 0 and out[0, 79].sum() == 0  # nothing far from the points
    assert not image.any()  # input untouched


def test_draw_keypoints_with_indices_and_several_faces(rng):
    image = np.full((200, 300, 3), 90, np.uint8)
    faces = rng.uniform(20, 180, size=(2, 68, 2))
    out = draw_keypoints(image, faces, indices=True)
    plain = draw_keypoints(image, faces)
    assert (out != plain).any()  # the numbers were written
    for x, y in faces.reshape(-1, 2):
        assert tuple(plain[int(round(y)), int(round(x))]) == (0, 255, 0)
    with pytest.raises(ValueError, match=r"\(K, 2\)"):
        draw_keypoints(image, np.zeros((68, 3)))


def test_draw_boxes():
    out = draw_boxes(np.zeros((50, 50, 3), np.uint8), [[10, 10, 20, 20]], color=(255, 0, 0), thickness=1)
    np.testing.assert_array_equal(out[10, 15], [255, 0, 0])  # top edge
    np.testing.assert_array_equal(out[29, 15], [255, 0, 0])  # bottom edge: y + h - 1
    assert out[20, 20].sum() == 0  # inside untouched


# ---------------------------------------------------------------------------------------------- measuring
def test_measure_framing_recovers_a_known_framing(portrait, tmp_path):
    (x, y, w, h), = detect_faces(portrait)
    folder = tmp_path / "training"
    folder.mkdir()
    # three "training images": squares of side 1.8 w centred 0.1 w below the face box's centre
    for k, shift in enumerate((-6, 0, 6)):
        side = int(round(1.8 * w))
        cx, cy = x + w / 2 + shift, y + h / 2 + 0.1 * w
        rect = (int(round(cx - side / 2)), int(round(cy - side / 2)), side, side)
        cv2.imwrite(str(folder / f"face_{k}.jpg"), crop_face(portrait, rect))
    framing = measure_framing(tmp_path, n=3)
    assert framing.used == 3 and framing.sampled == 3
    # the detector sees the face at the same size in the crops (within its pyramid step)
    assert framing.scale == pytest.approx(1.8, abs=0.12)
    assert framing.offset[0] == pytest.approx(0.0, abs=0.05)
    assert framing.offset[1] == pytest.approx(0.1, abs=0.05)


def test_measure_framing_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no folder"):
        measure_framing(tmp_path)
    (tmp_path / "training").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        measure_framing(tmp_path)
    cv2.imwrite(str(tmp_path / "training" / "blank.png"), np.zeros((100, 100), np.uint8))
    with pytest.raises(ValueError, match="exactly one face in none"):
        measure_framing(tmp_path)


# ---------------------------------------------------------------------------------------------- profile faces
def test_haar_profile_gives_the_frontal_boxes_where_there_are_frontal_faces(portrait):
    np.testing.assert_array_equal(detect_faces(portrait, detector="haar+profile"), detect_faces(portrait, detector="haar"))


def test_haar_profile_runs_both_orientations_and_drops_overlaps(monkeypatch):
    """With no frontal face, the profile cascade runs on the photo and on its mirror image: boxes found in
    the mirror come back mirrored (x -> W - x - w), and a box overlapping one kept before it is dropped."""
    from keypoints.wild import detection as detect_module

    seen = []

    class FakeProfile:
        def detectMultiScale(self, image, scaleFactor, minNeighbors, minSize):
            seen.append(image.copy())
            if len(seen) == 1:  # the photo: one face turned one way
                return np.array([[10, 20, 30, 30]])
            # the mirror: the same face again (x = 100 - 10 - 30 = 60 here), and a new one at x = 5
            return np.array([[60, 21, 30, 30], [5, 50, 20, 20]])

    monkeypatch.setattr(detect_module, "detect_haar", lambda gray, min_size, scale_factor: np.zeros((0, 4), np.int64))
    monkeypatch.setattr(detect_module, "_haar_cascade", lambda path: FakeProfile())
    gray = np.arange(100, dtype=np.uint8)[None, :].repeat(80, axis=0)
    boxes = detect_module.detect_haar_profile(gray, 10)
    np.testing.assert_array_equal(boxes, [[10, 20, 30, 30], [75, 50, 20, 20]])
    np.testing.assert_array_equal(seen[1], gray[:, ::-1])


def test_the_fast_detector_scans_face_sizes_1_2_apart_in_both_cascades(monkeypatch):
    """``haar+profile-fast`` is ``haar+profile`` with OpenCV's scaleFactor 1.2 (not 1.1) in the frontal cascade
    and in both profile scans."""
    from keypoints.wild import detection as detect_module

    factors = []

    class FakeCascade:
        def detectMultiScale(self, image, scaleFactor, minNeighbors, minSize):
            factors.append(scaleFactor)
            return np.zeros((0, 4), np.int64)

    monkeypatch.setattr(detect_module, "_haar_cascade", lambda path: FakeCascade())
    gray = np.zeros((80, 100), np.uint8)
    assert len(detect_module.detect_faces(gray, detector=detect_module.FAST_DETECTOR)) == 0
    assert factors == [1.2, 1.2, 1.2]  # frontal, then the profile cascade on the photo and on its mirror
    factors.clear()
    detect_module.detect_faces(gray)
    assert factors == [1.1, 1.1, 1.1]


def test_the_fast_detector_finds_the_portrait_face_where_the_default_does(portrait):
    from keypoints.wild.detection import FAST_DETECTOR, detect_faces

    (default,) = detect_faces(portrait)
    (fast,) = detect_faces(portrait, detector=FAST_DETECTOR)
    centre = lambda box: box[:2] + box[2:] / 2.0  # noqa: E731
    assert np.hypot(*(centre(fast) - centre(default))) < 0.1 * default[2]
    assert 0.8 < fast[2] / default[2] < 1.25


@pytest.mark.integration
def test_a_face_turned_three_quarters_in_a_film_still_is_found(tmp_path, trained):
    """A test photo whose face is turned about 45 degrees (the frontal cascade misses it), enlarged 3x in a
    1920 x 1080 frame: the default detector finds it, both ways round, and its points are right."""
    data = real_data_dir()
    from keypoints.data import FacialKeypointsDataset
    from keypoints.metrics import nme_per_face

    dataset = FacialKeypointsDataset(data, "test")
    index = dataset.names.index("Katharine_Hepburn_30.jpg")
    photo = cv2.imread(str(dataset.image_paths[index]), cv2.IMREAD_COLOR)
    true = dataset.keypoints[index].astype(np.float64)
    big = cv2.resize(photo, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    frame = np.full((1080, 1920, 3), 40, np.uint8)
    top, left = 200, 900
    frame[top : top + big.shape[0], left : left + big.shape[1]] = big
    true_frame = (true + 0.5) * 3 - 0.5 + (left, top)  # pixel centres scale about the pixel edges
    for mirrored in (False, True):
        image = np.ascontiguousarray(frame[:, ::-1]) if mirrored else frame
        truth = true_frame.copy()
        if mirrored:
            truth[:, 0] = 1920 - 1 - truth[:, 0]
            truth = truth[FLIP_PERMUTATION]
        assert len(detect_faces(image, detector="haar")) == 0
        faces = predict_faces(trained, image)
        assert len(faces) == 1 and _contains(faces[0].box, truth.mean(axis=0))
        nme = float(nme_per_face(faces[0].points[None], truth[None])[0])
        assert nme < 0.10, f"NME {100 * nme:.1f} % (mirrored: {mirrored})"
