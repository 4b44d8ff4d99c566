"""``python -m keypoints predict --format/--json -/--pose/--min-confidence``, ``align`` and ``video``'s blink
options, run in-process on the Grace Hopper portrait and a photo without a face; every output read back
with a real parser."""
from __future__ import annotations

import csv
import json
import shutil

import cv2
import numpy as np
import pytest

from keypoints.wild import cli as wild_cli
from keypoints.predictor import PRETRAINED
from keypoints.wild.formats import CSV_HEADER, read_pts


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder with the portrait and a flat gray picture (no face)."""
    cbook = pytest.importorskip("matplotlib.cbook")
    folder = tmp_path_factory.mktemp("photos")
    shutil.copy(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), folder / "portrait.jpg")
    cv2.imwrite(str(folder / "wall.png"), np.full((120, 160, 3), 128, np.uint8))
    return folder


def run(*argv) -> int:
    return wild_cli.main([str(a) for a in argv])


def test_json_to_standard_output_keeps_messages_on_standard_error(photos, capsys):
    assert run("predict", photos / "portrait.jpg", "--json", "-") == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)  # nothing but the document on stdout
    (face,) = document["images"][0]["faces"]
    assert 0.0 < face["confidence"] < 1.0 and set(face["pose"]) == {"yaw", "pitch", "roll", "reprojection_error"}
    assert abs(face["pose"]["yaw"]) < 30 and abs(face["pose"]["roll"]) < 15  # a frontal portrait
    assert face["eyes"]["right_open"] and face["eyes"]["left_open"]
    assert "1 image, 1 face" in captured.err


def test_jsonl_csv_and_pts_agree_and_flag_the_photo_without_a_face(photos, tmp_path, capsys):
    assert run("predict", photos, "--format", "jsonl", "--json", tmp_path / "out.jsonl", "--no-progress") == 0
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [line["path"].split("/")[-1] for line in lines] == ["portrait.jpg", "wall.png"]
    assert lines[1]["faces"] == [] and lines[1]["error"] == "no face found"
    points = np.array(lines[0]["faces"][0]["points"])

    assert run("predict", photos, "--format", "csv", "--json", tmp_path / "out.csv", "--no-progress") == 0
    with open(tmp_path / "out.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == CSV_HEADER and len(rows) == 2
    assert rows[0]["face"] == "0" and float(rows[0]["yaw"]) == lines[0]["faces"][0]["pose"]["yaw"]
    np.testing.assert_array_equal([[float(rows[0][f"x{i}"]), float(rows[0][f"y{i}"])] for i in range(68)], points)
    assert rows[1]["face"] == "" and rows[1]["error"] == "no face found"

    out = tmp_path / "drawn"
    assert run("predict", photos, "--format", "pts", "-o", out, "--no-progress") == 0
    np.testing.assert_allclose(read_pts(out / "portrait.pts"), points, atol=5e-4)
    assert not (out / "wall.pts").exists() and (out / "portrait_keypoints.png").is_file()
    capsys.readouterr()


def test_pts_beside_the_photo_does_not_replace_an_existing_file(photos, tmp_path, capsys):
    photo = tmp_path / "indoor_001.jpg"
    shutil.copy(photos / "portrait.jpg", photo)
    assert run("predict", photo, "--format", "pts") == 0
    first = (tmp_path / "indoor_001.pts").read_text()
    (tmp_path / "indoor_001.pts").write_text("the annotation")
    assert run("predict", photo, "--format", "pts") == 1
    assert "not replaced" in capsys.readouterr().err
    assert (tmp_path / "indoor_001.pts").read_text() == "the annotation"
    assert run("predict", photo, "--format", "pts", "--overwrite") == 0
    assert (tmp_path / "indoor_001.pts").read_text() == first


def test_output_option_errors(photos, tmp_path, capsys):
    assert run("predict", photos / "portrait.jpg", "--format", "csv") == 2
    assert "add --json OUT" in capsys.readouterr().err
    assert run("predict", photos / "portrait.jpg", "--format", "pts", "--json", tmp_path / "x") == 2
    assert "not to --json" in capsys.readouterr().err
    assert run("predict", photos / "portrait.jpg", "--speed", "fast", "--min-confidence", "0.5") == 2
    assert "the last pass's test frames, and these settings read none" in capsys.readouterr().err
    assert run("predict", photos / "portrait.jpg", "--no-flip", "--min-confidence", "0.5") == 2
    assert "read with its own flip averaging, and these settings read them otherwise (drop --flip/--no-flip)" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):
        run("predict", photos / "portrait.jpg", "--min-confidence", "1.5")
    assert "expected a number in [0, 1]" in capsys.readouterr().err


def test_min_confidence_drops_faces_and_says_so(photos, tmp_path, capsys):
    target = tmp_path / "kept.json"
    assert run("predict", photos / "portrait.jpg", "--min-confidence", "0.01", "--json", target) == 0
    (face,) = json.loads(target.read_text())["images"][0]["faces"]
    assert run("predict", photos / "portrait.jpg", "--min-confidence", "1", "--json", target) == 1
    record = json.loads(target.read_text())["images"][0]
    assert record["faces"] == [] and "no face with confidence >= 1.0 (1 below)" in record["error"]
    assert record["below_min_confidence"] == 1
    assert face["confidence"] < 1.0
    capsys.readouterr()


def test_pose_axes_are_drawn_on_the_picture(photos, tmp_path):
    assert run("predict", photos / "portrait.jpg", "-o", tmp_path / "plain.png") == 0
    assert run("predict", photos / "portrait.jpg", "-o", tmp_path / "pose.png", "--pose") == 0
    plain, pose = cv2.imread(str(tmp_path / "plain.png")), cv2.imread(str(tmp_path / "pose.png"))
    changed = np.argwhere((plain != pose).any(axis=2))
    assert len(changed) > 100
    red = (pose[..., 2] > 200) & (pose[..., 1] < 80) & (pose[..., 0] < 80) & (plain != pose).any(axis=2)
    assert red.sum() > 20  # the red axis
    ys, xs = changed[:, 0], changed[:, 1]
    assert 150 < xs.mean() < 380 and 150 < ys.mean() < 400  # on the face, not elsewhere


def test_align_writes_one_upright_chip_per_face(photos, tmp_path, capsys):
    out = tmp_path / "chips"
    assert run("align", photos, "-o", out, "--size", "96") == 0
    chip = cv2.imread(str(out / "portrait_0.png"))
    assert chip.shape == (96, 96, 3)
    captured = capsys.readouterr()
    assert "1 chip 96x96" in captured.out and "wall.png: no face found" in captured.err
    assert run("align", photos / "wall.png", "-o", out) == 1  # nothing aligned
    (tmp_path / "file").write_text("x")
    assert run("align", photos / "portrait.jpg", "-o", tmp_path / "file") == 2
    assert "expected a folder" in capsys.readouterr().err
    assert run("align", photos / "portrait.jpg", "-o", out, "--size", "8") == 2


def test_align_flags_a_face_too_small(photos, tmp_path, capsys):
    portrait = cv2.imread(str(photos / "portrait.jpg"))
    tiny = cv2.resize(portrait, None, fx=0.16, fy=0.16, interpolation=cv2.INTER_AREA)  # a face of ~35 pixels
    canvas = np.full((200, 200, 3), 90, np.uint8)
    canvas[50 : 50 + tiny.shape[0], 50 : 50 + tiny.shape[1]] = tiny
    cv2.imwrite(str(tmp_path / "tiny.png"), canvas)
    # its eye centres are about 0.16 * 83 = 13 pixels apart: under a 20-pixel minimum it is named and skipped
    assert run("align", tmp_path / "tiny.png", "-o", tmp_path / "chips", "--min-eye-distance", "20") == 1
    assert "too small to align" in capsys.readouterr().err
    assert not (tmp_path / "chips" / "tiny_0.png").exists()
    assert run("align", tmp_path / "tiny.png", "-o", tmp_path / "chips", "--min-eye-distance", "8") == 0
    assert (tmp_path / "chips" / "tiny_0.png").is_file()
    assert run("align", tmp_path / "tiny.png", "-o", tmp_path / "chips", "--min-eye-distance", "nan") == 2


def test_video_blink_options(photos, tmp_path, capsys):
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (256, 300))
    small = cv2.resize(cv2.imread(str(photos / "portrait.jpg")), (256, 300), interpolation=cv2.INTER_AREA)
    for _ in range(3):
        writer.write(small)
    writer.release()
    assert run("video", clip, "-o", tmp_path / "out.mp4", "--no-progress", "--model", PRETRAINED) == 0
    assert "0 blinks" in capsys.readouterr().out  # a still photo does not blink
    assert run("video", clip, "-o", tmp_path / "out.mp4", "--blink-frames", "0") == 2
    assert "min_frames" in capsys.readouterr().err
