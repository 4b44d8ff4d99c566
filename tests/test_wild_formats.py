"""Output formats (keypoints.wild.formats): each written and read back with a real parser (json, the csv
module, a .pts reader written here), atomic writes, and the .pts files that must not replace annotations."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from keypoint_fixtures import canonical_face

from keypoints.wild.faces import FaceKeypoints
from keypoints.wild.formats import (
    CSV_HEADER,
    face_record,
    read_pts,
    to_csv,
    to_json,
    to_jsonl,
    to_pts,
    write_pts_files,
)


def parse_pts(text: str) -> np.ndarray:
    """A .pts reader written for the test: the lines between '{' and '}', minus the 1-based offset."""
    lines = text.strip().splitlines()
    assert lines[0] == "version: 1" and lines[1].replace(" ", "") == "n_points:68" and lines[2] == "{"
    assert lines[-1] == "}"
    return np.array([[float(v) for v in line.split()] for line in lines[3:-1]]) - 1.0


def records() -> list[dict]:
    face = canonical_face(200) + [40.25, 30.5]
    squinting = face.copy()
    squinting[[37, 38, 43, 44], 1] += 5.0  # upper lids down: eyes shut
    faces = [FaceKeypoints(np.array([40, 30, 200, 200]), face, 0.875),
             FaceKeypoints(np.array([300, 40, 180, 180]), squinting + [260, 10], None)]
    photo = {"path": "a b,c.jpg", "height": 480, "width": 640, "error": None,
             "faces": [face_record(f, (f.box[0] - 10, f.box[1] - 10, 250, 250), (480, 640, 3)) for f in faces]}
    empty = {"path": "cat.jpg", "height": 100, "width": 100, "error": "no face found", "faces": []}
    return [photo, empty]


def test_face_record_holds_pose_eyes_confidence_and_points():
    photo = records()[0]
    first, second = photo["faces"]
    assert first["confidence"] == 0.875 and second["confidence"] is None
    assert first["pose"] is not None and first["pose_error"] is None
    # a symmetric face left of the centre faces the camera: turned right by about atan(180 / 640) = 16 degrees
    assert 8 < first["pose"]["yaw"] < 24 and abs(first["pose"]["roll"]) < 3
    assert first["eyes"]["right_open"] and not second["eyes"]["right_open"]
    assert first["points"][0] == [round(canonical_face(200)[0, 0] + 40.25, 3), round(canonical_face(200)[0, 1] + 30.5, 3)]
    broken = FaceKeypoints(np.array([0, 0, 10, 10]), np.full((68, 2), 5.0))  # all points on one pixel
    record = face_record(broken, (0, 0, 20, 20), (100, 100))
    assert record["pose"] is None and "span only" in record["pose_error"]


def test_json_and_jsonl_round_trip():
    data = records()
    document = json.loads(to_json(data, {"model": "m.npz"}, {"faces": 2}))
    assert document["model"] == "m.npz" and document["summary"] == {"faces": 2} and document["images"] == data
    lines = to_jsonl(data).splitlines()
    assert len(lines) == 2 and [json.loads(line) for line in lines] == data


def test_csv_round_trip_with_the_csv_module():
    data = records()
    rows = list(csv.reader(io.StringIO(to_csv(data))))
    assert rows[0] == CSV_HEADER and len(CSV_HEADER) == 12 + 136 and len(rows) == 4
    assert all(len(row) == len(CSV_HEADER) for row in rows)
    first = dict(zip(CSV_HEADER, rows[1]))
    assert first["file"] == "a b,c.jpg" and first["face"] == "0" and first["confidence"] == "0.875"
    assert [int(first[k]) for k in ("box_x", "box_y", "box_w", "box_h")] == [40, 30, 200, 200]
    assert float(first["yaw"]) == data[0]["faces"][0]["pose"]["yaw"] and first["pose_error"] == ""
    points = np.array([float(first[f"{axis}{i}"]) for i in range(68) for axis in "xy"]).reshape(68, 2)
    np.testing.assert_array_equal(points, data[0]["faces"][0]["points"])
    second = dict(zip(CSV_HEADER, rows[2]))
    assert second["face"] == "1" and second["confidence"] == ""
    empty = dict(zip(CSV_HEADER, rows[3]))
    assert empty["file"] == "cat.jpg" and empty["face"] == "" and empty["error"] == "no face found"


def test_pts_round_trip_and_one_based_coordinates(tmp_path):
    points = canonical_face(200) + [0.25, 10.0]
    text = to_pts(points)
    np.testing.assert_allclose(parse_pts(text), points, atol=5e-4)
    first = text.splitlines()[3].split()
    assert float(first[0]) == pytest.approx(points[0, 0] + 1, abs=5e-4)  # the top-left pixel is (1, 1)
    path = tmp_path / "face.pts"
    path.write_text(text)
    np.testing.assert_allclose(read_pts(path), points, atol=5e-4)
    path.write_text("version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n")
    with pytest.raises(ValueError, match="n_points says 3"):
        read_pts(path)
    path.write_text("1 2\n3 4\n")
    with pytest.raises(ValueError, match="not an iBUG .pts file"):
        read_pts(path)
    with pytest.raises(ValueError, match=r"\(K, 2\)"):
        to_pts(np.full((68, 2), np.nan))


def test_pts_files_beside_the_photo_never_replace_annotations(tmp_path):
    photo, _ = records()
    photo["path"] = str(tmp_path / "indoor_001.jpg")
    paths = write_pts_files(photo)
    assert [p.name for p in paths] == ["indoor_001_0.pts", "indoor_001_1.pts"]
    np.testing.assert_allclose(read_pts(paths[1]), photo["faces"][1]["points"], atol=5e-4)
    paths[0].write_text("annotation")
    with pytest.raises(FileExistsError, match="indoor_001_0.pts"):
        write_pts_files(photo)
    assert paths[0].read_text() == "annotation"
    write_pts_files(photo, overwrite=True)
    assert paths[0].read_text().startswith("version: 1")
    one = dict(photo, faces=photo["faces"][:1])
    folder = tmp_path / "out"
    assert write_pts_files(one, folder) == [folder / "indoor_001.pts"]


def test_csv_of_a_five_point_model_has_ten_point_columns():
    """A model trained on your own .pts points: as many point columns as its faces have points."""
    face = {"box": [1, 2, 30, 30], "confidence": None, "pose": None, "pose_error": "needs 68 points",
            "points": [[float(i), float(10 * i)] for i in range(5)]}
    data = [{"path": "a.jpg", "faces": [face], "error": None}, {"path": "b.jpg", "faces": [], "error": "no face found"}]
    rows = list(csv.reader(io.StringIO(to_csv(data))))
    assert rows[0][12:] == ["x0", "y0", "x1", "y1", "x2", "y2", "x3", "y3", "x4", "y4"]
    assert [len(row) for row in rows] == [22, 22, 22]
    assert [float(v) for v in rows[1][12:]] == [0, 0, 1, 10, 2, 20, 3, 30, 4, 40]
    other = dict(face, points=face["points"][:3])
    with pytest.raises(ValueError, match=r"same number of points, got \[3, 5\]"):
        to_csv([{"path": "a.jpg", "faces": [face, other], "error": None}])
