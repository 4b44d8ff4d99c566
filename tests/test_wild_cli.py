"""The in-the-wild command lines (keypoints.wild.cli) and the pictures behind show-filters / show-maps
(keypoints.visualize), run in-process on the Grace Hopper portrait and generated images."""
from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
import pytest

from keypoint_fixtures import save_constant_face_model

from keypoints.wild import cli as wild_cli
from keypoints.wild.face_crop import pad_box
from keypoints.wild.commands import align_command


@pytest.fixture(scope="module")
def portrait_path():
    cbook = pytest.importorskip("matplotlib.cbook")
    return str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


@pytest.fixture(scope="module")
def portrait(portrait_path):
    return cv2.imread(portrait_path, cv2.IMREAD_COLOR)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    from keypoints.models import naimishnet
    from keypoints.checkpoint import save_weights
    from keypoints.recipes import RECIPES

    path = tmp_path_factory.mktemp("model") / "m.npz"
    save_weights(path, RECIPES["reference"], naimishnet(96, seed=0).state_dict(), 1, 0.0)
    return str(path)


def run(*argv) -> int:
    return wild_cli.main([str(a) for a in argv])


def test_add_commands_plugs_into_a_main_parser():
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("evaluate")
    wild_cli.add_commands(commands)
    expected = {
        "predict": wild_cli.predict_command,
        "filter": wild_cli.filter_command,
        "video": wild_cli.video_command,
        "show-filters": wild_cli.show_filters_command,
        "show-maps": wild_cli.show_maps_command,
        "align": align_command,
    }
    argvs = {
        "predict": ["predict", "a.jpg", "--model", "m.npz"],
        "filter": ["filter", "a.jpg", "--model", "m.npz", "--sunglasses", "-o", "o.png"],
        "video": ["video", "a.mp4", "--model", "m.npz", "-o", "o.mp4"],
        "show-filters": ["show-filters", "--model", "m.npz", "-o", "f.png"],
        "show-maps": ["show-maps", "--model", "m.npz", "--image", "a.jpg", "--layer", "2", "-o", "m.png"],
        "align": ["align", "a.jpg", "--model", "m.npz", "-o", "chips"],
    }
    for name, argv in argvs.items():
        assert parser.parse_args(argv).func is expected[name]


# ---------------------------------------------------------------------------------------------- predict
def test_predict_portrait_writes_png_and_json(portrait_path, portrait, model_path, tmp_path, capsys):
    out, js = tmp_path / "out.png", tmp_path / "out.json"
    assert run("predict", portrait_path, "--model", model_path, "-o", out, "--json", js, "--indices") == 0
    drawn = cv2.imread(str(out))
    assert drawn.shape == portrait.shape
    assert (drawn != portrait).any()
    document = json.loads(js.read_text())
    (image,) = document["images"]
    assert image["error"] is None and image["width"] == 512 and image["height"] == 600
    (face,) = image["faces"]
    points = np.array(face["points"])
    assert points.shape == (68, 2)
    x, y, side, _ = face["crop"]
    np.testing.assert_array_equal(face["crop"], pad_box(face["box"]))
    assert (points[:, 0] >= x).all() and (points[:, 0] < x + side).all()
    assert (points[:, 1] >= y).all() and (points[:, 1] < y + side).all()
    assert document["summary"]["faces"] == 1 and document["summary"]["failed"] == 0
    assert "1 image, 1 face in 1" in capsys.readouterr().out


def make_bad_inputs(folder, portrait):
    """Good and bad inputs side by side."""
    cv2.imwrite(str(folder / "a_color.jpg"), portrait)
    cv2.imwrite(str(folder / "b_gray.png"), cv2.cvtColor(portrait, cv2.COLOR_BGR2GRAY))
    rgba = cv2.cvtColor(portrait, cv2.COLOR_BGR2BGRA)
    rgba[..., 3] = 200
    cv2.imwrite(str(folder / "c_rgba.png"), rgba)
    cv2.imwrite(str(folder / "d_blank.png"), np.full((200, 200, 3), 127, np.uint8))  # no face
    (folder / "e_text.jpg").write_text("hello, I am not a picture")  # not an image
    (folder / "f_empty.png").write_bytes(b"")  # empty
    (folder / "notes.txt").write_text("skipped: not an image extension")


def test_predict_folder_goes_on_past_bad_inputs(portrait, model_path, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    make_bad_inputs(folder, portrait)
    out, js = tmp_path / "drawn", tmp_path / "all.json"
    missing = tmp_path / "missing.jpg"
    code = run("predict", folder, missing, "--model", model_path, "-o", out, "--json", js, "--no-progress")
    assert code == 0  # some inputs worked
    captured = capsys.readouterr()
    document = json.loads(js.read_text())
    errors = {image["path"].split("/")[-1]: image["error"] for image in document["images"]}
    assert errors == {
        "a_color.jpg": None,
        "b_gray.png": None,
        "c_rgba.png": None,
        "d_blank.png": "no face found",
        "e_text.jpg": "not an image OpenCV can decode",
        "f_empty.png": "empty file",
        "missing.jpg": "no such file",
    }
    drawn = sorted(p.name for p in out.iterdir())
    assert drawn == ["a_color_keypoints.png", "b_gray_keypoints.png", "c_rgba_keypoints.png"]
    assert "4 of 7 inputs failed" in captured.err
    for message in ("d_blank.png: no face found", "e_text.jpg: not an image", "f_empty.png: empty file",
                    "missing.jpg: no such file"):
        assert message in captured.err
    assert "7 images, 3 faces in 3" in captured.out
    # gray and RGBA versions of the portrait find the same face and nearly the same points
    faces = {image["path"].split("/")[-1]: image["faces"] for image in document["images"]}
    reference = np.array(faces["a_color.jpg"][0]["points"])
    for name in ("b_gray.png", "c_rgba.png"):
        np.testing.assert_allclose(faces[name][0]["box"], faces["a_color.jpg"][0]["box"], atol=3)
        np.testing.assert_allclose(np.array(faces[name][0]["points"]), reference, atol=3)


def test_predict_fails_only_when_every_input_fails(model_path, tmp_path, capsys):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((100, 100), 30, np.uint8))
    assert run("predict", blank, "--model", model_path) == 1
    assert "blank.png: no face found" in capsys.readouterr().err
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    assert run("predict", empty, "--model", model_path) == 1


def test_predict_huge_image_points_in_full_resolution(portrait, model_path, tmp_path):
    big = cv2.resize(portrait, (512 * 5, 600 * 5), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(tmp_path / "big.png"), big, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    cv2.imwrite(str(tmp_path / "small.png"), portrait)
    js_big, js_small = tmp_path / "big.json", tmp_path / "small.json"
    assert run("predict", tmp_path / "big.png", "--model", model_path, "--json", js_big, "--max-side", 600) == 0
    assert run("predict", tmp_path / "small.png", "--model", model_path, "--json", js_small) == 0
    big_face = json.loads(js_big.read_text())["images"][0]["faces"][0]
    small_face = json.loads(js_small.read_text())["images"][0]["faces"][0]
    # the same face, five times larger: box and points scale by 5 (a pixel of box rounding, times 5)
    np.testing.assert_allclose(big_face["box"], 5 * np.array(small_face["box"]), atol=5 * 3)
    np.testing.assert_allclose(np.array(big_face["points"]), 5 * np.array(small_face["points"]), atol=5 * 3)


def test_predict_model_errors(portrait_path, tmp_path, capsys):
    assert run("predict", portrait_path, "--model", tmp_path / "nope.npz") == 2
    assert "nope.npz: no such model file" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    bad.write_text("not a checkpoint")
    assert run("predict", portrait_path, "--model", bad) == 2
    assert "bad.npz" in capsys.readouterr().err


def test_predict_several_inputs_need_an_output_folder(portrait_path, model_path, tmp_path, capsys):
    target = tmp_path / "file.png"
    target.write_bytes(b"x")
    assert run("predict", portrait_path, portrait_path, "--model", model_path, "-o", target) == 2
    assert "-o must be a folder" in capsys.readouterr().err


def test_predict_same_stem_twice_gets_distinct_outputs(portrait, model_path, tmp_path):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        cv2.imwrite(str(tmp_path / sub / "face.jpg"), portrait)
    out = tmp_path / "out"
    code = run("predict", tmp_path / "x" / "face.jpg", tmp_path / "y" / "face.jpg", "--model", model_path, "-o", out)
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["face_keypoints-2.png", "face_keypoints.png"]


# ---------------------------------------------------------------------------------------------- filter
def test_filter_sunglasses(portrait_path, portrait, tmp_path, capsys):
    # the untrained network's points all sit within a few pixels (glasses a few pixels wide); a network
    # that always answers a plausible face shows where the glasses go
    save_constant_face_model(tmp_path / "constant.npz")
    out, js = tmp_path / "cool.png", tmp_path / "points.json"
    assert run("filter", portrait_path, "--model", tmp_path / "constant.npz", "--sunglasses", "-o", out) == 0
    assert "sunglasses on 1 face" in capsys.readouterr().out
    assert run("predict", portrait_path, "--model", tmp_path / "constant.npz", "--json", js) == 0
    points = np.array(json.loads(js.read_text())["images"][0]["faces"][0]["points"])
    result = cv2.imread(str(out))
    assert result.shape == portrait.shape
    changed = (result.astype(int) - portrait).any(axis=2)
    rows, cols = np.nonzero(changed)
    # the glasses span the temples (points 0 and 16) and stay between the brows and the nose tip
    assert cols.min() == pytest.approx(points[0, 0], abs=3) and cols.max() == pytest.approx(points[16, 0], abs=3)
    assert rows.min() > points[17:27, 1].min() - 20 and rows.max() < points[30, 1]
    for eye in (points[36:42].mean(0), points[42:48].mean(0)):
        x, y = np.rint(eye).astype(int)
        assert result[y, x].mean() < 110  # a dark lens over each eye


def test_filter_custom_overlay_and_errors(portrait_path, model_path, tmp_path, capsys):
    picture = np.full((40, 120, 3), 255, np.uint8)
    cv2.rectangle(picture, (5, 10), (55, 30), (0, 0, 0), -1)
    cv2.rectangle(picture, (65, 10), (115, 30), (0, 0, 0), -1)
    cv2.imwrite(str(tmp_path / "mine.png"), picture)
    out = tmp_path / "mine_on_face.png"
    assert run("filter", portrait_path, "--model", model_path, "--overlay", tmp_path / "mine.png", "-o", out) == 0
    assert out.is_file()
    assert run("filter", portrait_path, "--model", model_path, "-o", out) == 2
    assert "choose a filter" in capsys.readouterr().err
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((100, 100, 3), 200, np.uint8))
    assert run("filter", blank, "--model", model_path, "--sunglasses", "-o", tmp_path / "x.png") == 1
    assert not (tmp_path / "x.png").exists()
    assert run("filter", portrait_path, "--model", model_path, "--overlay", tmp_path / "no.png", "-o", out) == 2
    assert "no such overlay" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- video
def test_video_command(portrait, model_path, tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (256, 300))
    small = cv2.resize(portrait, (256, 300), interpolation=cv2.INTER_AREA)
    for k in range(5):
        writer.write(np.roll(small, 3 * k, axis=1))
    writer.release()
    out = tmp_path / "out.mp4"
    assert run("video", clip, "--model", model_path, "-o", out, "--sunglasses", "--no-progress") == 0
    assert "5 frames (256x300 at 10 fps)" in capsys.readouterr().out
    capture = cv2.VideoCapture(str(out))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)
    assert int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == 256 and int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == 300
    capture.release()
    assert run("video", tmp_path / "none.mp4", "--model", model_path, "-o", out) == 2
    assert "no such video" in capsys.readouterr().err


def test_video_reads_every_face_again_with_either_speed(tmp_path, monkeypatch):
    """A video face whose frame moves about the photos' refinement tolerance would switch between one read and two
    from frame to frame (benchmarks/video_jitter.py): ``video`` reads every face again, ``--speed fast`` too, and
    keeps fast's other settings; ``predict --speed fast`` keeps the tolerance."""
    from keypoints.speed import FAST_REFINE_TOLERANCE
    from keypoints.wild import video
    from keypoints.wild.video import VideoReport

    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 64))
    writer.write(np.zeros((64, 64, 3), np.uint8))
    writer.release()
    used = []

    def record(source, output, predictor, **options):
        used.append(predictor)
        return VideoReport(1, 0, 0.1, 10.0, 10.0, (64, 64), str(output))

    monkeypatch.setattr(video, "process_video", record)
    for speed in ("accurate", "fast"):
        assert run("video", clip, "--speed", speed, "-o", tmp_path / f"{speed}.mp4", "--no-progress") == 0
    accurate, fast = used
    assert accurate.refine_tolerance == 0 and fast.refine_tolerance == 0
    assert fast.flip is False and fast.int8_linears and not accurate.int8_linears
    assert wild_cli.load_model(None, speed="fast").refine_tolerance == FAST_REFINE_TOLERANCE


# ---------------------------------------------------------------------------------------------- visualize
def test_show_filters_and_maps_commands(portrait_path, model_path, tmp_path, capsys):
    assert run("show-filters", "--model", model_path, "-o", tmp_path / "filters.png") == 0
    assert "32 kernels 4x4" in capsys.readouterr().out
    assert cv2.imread(str(tmp_path / "filters.png")) is not None
    # features.0, the first conv (features.2 is an Identity in the shipped, fused model: the fused block before it pools)
    assert run("show-maps", "--model", model_path, "--image", portrait_path, "--layer", "features.0",
               "-o", tmp_path / "maps.png") == 0
    assert "32 maps 93x93" in capsys.readouterr().out  # 96 - 4 + 1 = 93 after the first conv
    assert cv2.imread(str(tmp_path / "maps.png")) is not None
    maps = ("show-maps", "--model", model_path, "-o", tmp_path / "m.png")
    assert run(*maps, "--image", portrait_path, "--layer", "99") == 2
    assert "layers 0..15" in capsys.readouterr().err
    assert run(*maps, "--image", tmp_path / "no.jpg", "--layer", "0") == 2
    assert "no.jpg: no such image file" in capsys.readouterr().err


def test_feature_maps_match_an_independent_forward(portrait, model_path):
    from keypoints.models import NaimishNet
    from keypoints.predictor import load_predictor
    from keypoints.visualize import feature_maps

    predictor = load_predictor(model_path)
    net = predictor.model
    crop, _ = predictor.preprocess(portrait)
    name, seen, maps = feature_maps(predictor, portrait, 0)
    assert name == "features.0"
    np.testing.assert_array_equal(seen, crop)
    # conv by hand: cross-correlation of the 96x96 crop with each 4x4 kernel, plus the bias
    weight = net.features[0].weight.data.astype(np.float64)  # (32, 1, 4, 4)
    bias = net.features[0].bias.data.astype(np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(crop.astype(np.float64), (4, 4))  # (93, 93, 4, 4)
    expected = np.einsum("ijkl,ckl->cij", windows, weight[:, 0]) + bias[:, None, None]
    assert maps.shape == (32, 93, 93) and maps.dtype == np.float32
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-5)
    # layer 2 is the ReLU after batch norm: no negative values; names and negative indices resolve
    # (in the model built unfused: the shipped one runs BatchNorm2d -> ReLU -> MaxPool2d as one fused block)
    unfused = NaimishNet(net.input_size, head=net.head, fused=False)
    unfused.load_state_dict(net.state_dict())
    _, _, relu = feature_maps(unfused, portrait, "features.2")
    assert relu.shape == (32, 93, 93) and relu.min() >= 0
    _, _, last = feature_maps(net, portrait, -1)
    assert last.shape == (256, 5, 5)
    assert net.training is False or net.training is True  # untouched type
    net.train()
    feature_maps(net, portrait, 1)
    assert net.training  # the caller's mode is restored


def test_visualize_errors(model_path, portrait):
    from keypoints.predictor import load_predictor
    from keypoints.visualize import feature_maps, first_conv, show_maps

    predictor = load_predictor(model_path)
    with pytest.raises(ValueError, match="expected an index"):
        feature_maps(predictor, portrait, "regressor.0")
    with pytest.raises(TypeError, match="int or a name"):
        feature_maps(predictor, portrait, 1.5)
    with pytest.raises(TypeError, match="Predictor or a tinynet Module"):
        first_conv("model")
    with pytest.raises(ValueError, match="max_maps"):
        show_maps(predictor, portrait, 0, "x.png", max_maps=0)
    name, weight = first_conv(predictor)
    assert name == "features.0" and weight.shape == (32, 1, 4, 4)


def test_speed_fast_reads_each_face_twice_without_test_frames_and_with_the_fast_detector(portrait_path, tmp_path,
                                                                                          capsys, monkeypatch):
    """``--speed fast``: the detector haar+profile-fast (unless --detector says otherwise), no test frames (so
    no confidence, and --min-confidence refused with the way out), the shipped model read as the fast settings say."""
    from keypoints.wild import detection

    parsed = wild_cli.build_parser().parse_args(["predict", "a.jpg", "--speed", "fast"])
    wild_cli.resolve_speed(parsed)
    assert parsed.detector == detection.FAST_DETECTOR
    for argv, expected in ((["predict", "a.jpg"], detection.DEFAULT_DETECTOR),
                           (["predict", "a.jpg", "--speed", "fast", "--detector", "haar"], "haar")):
        parsed = wild_cli.build_parser().parse_args(argv)
        wild_cli.resolve_speed(parsed)
        assert parsed.detector == expected
    used = []
    real = detection.DETECTORS[detection.FAST_DETECTOR]
    monkeypatch.setitem(detection.DETECTORS, detection.FAST_DETECTOR, lambda gray, size: used.append(1) or real(gray, size))
    js = tmp_path / "fast.json"
    assert run("predict", portrait_path, "--speed", "fast", "--json", js, "--no-progress") == 0
    assert used  # the fast detector ran
    (face,) = json.loads(js.read_text())["images"][0]["faces"]
    assert face["confidence"] is None and len(face["points"]) == 68
    accurate = tmp_path / "accurate.json"
    assert run("predict", portrait_path, "--json", accurate, "--no-progress") == 0
    (slow,) = json.loads(accurate.read_text())["images"][0]["faces"]
    assert slow["confidence"] is not None
    # the two settings read the same face: the points agree to a few pixels (eye distance about 90 px here)
    assert np.abs(np.array(face["points"]) - np.array(slow["points"])).mean() < 4.0
    capsys.readouterr()
    assert run("predict", portrait_path, "--speed", "fast", "--min-confidence", "0.5", "--json", js) == 2
    assert "test frames, and these settings read none (use the default --speed accurate)" in capsys.readouterr().err
