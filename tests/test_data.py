"""Tests for keypoints.data: readers, the dataset, data location and the preprocessing cache.

All fixtures are generated into ``tmp_path``; only the ``integration`` test reads the real data set
(``KEYPOINTS_DATA``).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from keypoints.data import (
    OFFICIAL_URL,
    DataError,
    Faces,
    FacialKeypointsDataset,
    find_data_dir,
    prepare_faces,
    read_image,
    read_keypoints_csv,
)
from keypoints.crops import rescale_size
from keypoints.geometry import NUM_KEYPOINTS, apply_affine
from keypoints.transforms import Compose, RandomCrop

HEADER = "," + ",".join(str(i) for i in range(2 * NUM_KEYPOINTS))  # upstream's header (pandas index column)


def csv_row(name: str, points: np.ndarray) -> str:
    return name + "," + ",".join(f"{v:g}" for v in np.asarray(points).reshape(-1))


def write_csv(path: Path, rows: list[str], header: str | None = HEADER) -> Path:
    lines = ([header] if header is not None else []) + rows
    path.write_text("\n".join(lines) + "\n")
    return path


def make_split(root: Path, split: str, shapes: list[tuple[int, int]], rng: np.random.Generator) -> np.ndarray:
    """Write ``root/{split}/face{i}.png`` (colour, lossless) and the CSV; return the keypoints (N, 68, 2)."""
    (root / split).mkdir(parents=True, exist_ok=True)
    rows, all_points = [], []
    for i, (h, w) in enumerate(shapes):
        cv2.imwrite(str(root / split / f"face{i}.png"), rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
        points = np.round(rng.uniform(0, [w - 1, h - 1], size=(NUM_KEYPOINTS, 2)), 1)
        rows.append(csv_row(f"face{i}.png", points))
        all_points.append(points)
    write_csv(root / f"{split}_frames_keypoints.csv", rows)
    return np.array(all_points, dtype=np.float32)


@pytest.fixture
def data_root(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "facial-keypoints"
    make_split(root, "training", [(120, 200), (150, 110), (107, 107)], rng)
    make_split(root, "test", [(90, 130)], rng)
    return root


# ----------------------------------------------------------------------------------------------------
# read_image
# ----------------------------------------------------------------------------------------------------


def test_read_gray_png(tmp_path):
    gray = np.arange(0, 240, 2, dtype=np.uint8).reshape(10, 12)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    image = read_image(tmp_path / "g.png")
    assert image.dtype == np.float32 and image.shape == (10, 12)
    np.testing.assert_allclose(image, gray / 255.0, atol=1e-7)


def test_read_bgra_png_uses_standard_weights_and_drops_alpha(tmp_path):
    rng = np.random.default_rng(1)
    bgra = rng.integers(0, 256, size=(9, 7, 4), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "c.png"), bgra)
    b, g, r = (bgra[..., k].astype(np.float64) / 255 for k in range(3))
    expected = 0.299 * r + 0.587 * g + 0.114 * b  # ITU-R BT.601, OpenCV's RGB -> gray
    image = read_image(tmp_path / "c.png")
    assert image.dtype == np.float32 and image.shape == (9, 7)
    np.testing.assert_allclose(image, expected, atol=1e-5)
    cv2.imwrite(str(tmp_path / "c3.png"), bgra[..., :3])
    np.testing.assert_allclose(read_image(tmp_path / "c3.png"), image, atol=1e-6)  # alpha did not matter


def test_read_16bit_png(tmp_path):
    rng = np.random.default_rng(2)
    gray16 = rng.integers(0, 65536, size=(6, 5), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), gray16)
    image = read_image(tmp_path / "g16.png")
    assert image.dtype == np.float32
    np.testing.assert_allclose(image, gray16 / 65535.0, atol=1e-7)
    bgr16 = rng.integers(0, 65536, size=(6, 5, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "c16.png"), bgr16)
    b, g, r = (bgr16[..., k] / 65535.0 for k in range(3))
    np.testing.assert_allclose(read_image(tmp_path / "c16.png"), 0.299 * r + 0.587 * g + 0.114 * b, atol=1e-5)


def test_read_jpeg(tmp_path):
    gray = np.full((16, 16), 200, np.uint8)
    cv2.imwrite(str(tmp_path / "a.jpg"), gray)
    np.testing.assert_allclose(read_image(tmp_path / "a.jpg"), 200 / 255, atol=2 / 255)  # flat: ~lossless


def _jpeg_bytes(tmp_path) -> bytes:
    rng = np.random.default_rng(3)
    image = cv2.GaussianBlur(rng.integers(0, 256, size=(64, 80, 3), dtype=np.uint8), (5, 5), 2)
    cv2.imwrite(str(tmp_path / "full.jpg"), image)
    data = (tmp_path / "full.jpg").read_bytes()
    assert data[-2:] == b"\xff\xd9"
    return data


@pytest.mark.parametrize("keep", [0.5, 0.9, -2])  # half, most, and all but the end-of-image marker
def test_truncated_jpeg_is_an_error(tmp_path, keep):
    data = _jpeg_bytes(tmp_path)
    cut = data[: int(len(data) * keep)] if keep > 0 else data[:keep]
    (tmp_path / "cut.jpg").write_bytes(cut)
    with pytest.raises(DataError, match=r"cut\.jpg.*(truncated|decode)"):
        read_image(tmp_path / "cut.jpg")


def test_jpeg_with_trailing_bytes_is_fine(tmp_path):
    data = _jpeg_bytes(tmp_path)
    (tmp_path / "tail.jpg").write_bytes(data + b"\x00" * 10)
    np.testing.assert_array_equal(read_image(tmp_path / "tail.jpg"), read_image(tmp_path / "full.jpg"))


def test_truncated_png_is_an_error(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.random.default_rng(4).integers(0, 256, (30, 30), dtype=np.uint8))
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) - 20])
    with pytest.raises(DataError, match=r"cut\.png"):
        read_image(tmp_path / "cut.png")


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("junk.jpg", b"this is not an image at all", "not an image"),
        ("empty.png", b"", "empty"),
        ("fake.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) + b"IEND\xaeB`\x82", "decode|not an image"),
    ],
)
def test_corrupt_files_are_errors(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=rf"{name.replace('.', r'[.]')}.*({message})"):
        read_image(tmp_path / name)


def test_missing_image_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"nope\.jpg: no such image file"):
        read_image(tmp_path / "nope.jpg")
    assert issubclass(DataError, ValueError)


# ----------------------------------------------------------------------------------------------------
# read_keypoints_csv
# ----------------------------------------------------------------------------------------------------


def test_read_csv_values_and_header_variants(tmp_path):
    rng = np.random.default_rng(5)
    points = np.round(rng.uniform(0, 300, size=(3, NUM_KEYPOINTS, 2)), 2)
    rows = [csv_row(f"img_{i}.jpg", p) for i, p in enumerate(points)]
    for header in (HEADER, None, "image," + ",".join(f"{a}{i}" for i in range(NUM_KEYPOINTS) for a in "xy")):
        names, keypoints = read_keypoints_csv(write_csv(tmp_path / "k.csv", rows, header))
        assert names == ["img_0.jpg", "img_1.jpg", "img_2.jpg"]
        assert keypoints.dtype == np.float32 and keypoints.shape == (3, NUM_KEYPOINTS, 2)
        np.testing.assert_allclose(keypoints, points, rtol=1e-6)
        # column order is x0, y0, x1, y1, ...: point 1's y is the 4th number of the row
        assert keypoints[0, 1, 1] == np.float32(float(rows[0].split(",")[4]))


def _good_rows(n: int) -> list[str]:
    return [csv_row(f"ok{i}.jpg", np.full((NUM_KEYPOINTS, 2), 10.0 + i)) for i in range(n)]


@pytest.mark.parametrize(
    "bad_row, problem",
    [
        ("short.jpg,1,2,3", "expected 137 columns.*got 4"),
        (csv_row("long.jpg", np.zeros(138)), "expected 137 columns.*got 139"),
        ("word.jpg," + ",".join(["1"] * 11 + ["abc"] + ["1"] * 124), r"coordinate y5 \(column 13\) is not a number: 'abc'"),
        ("nan.jpg," + ",".join(["1"] * 135 + ["nan"]), r"coordinate y67 \(column 137\) is not finite"),
        ("inf.jpg," + ",".join(["inf"] + ["1"] * 135), r"coordinate x0 \(column 2\) is not finite"),
    ],
)
def test_bad_csv_row_names_file_line_and_image(tmp_path, bad_row, problem):
    rows = _good_rows(2) + [bad_row] + _good_rows(1)
    path = write_csv(tmp_path / "bad.csv", rows)
    image = bad_row.split(",")[0]
    # line 1 is the header, lines 2-3 the good rows: the bad row is line 4
    with pytest.raises(DataError, match=rf"bad\.csv, line 4 \(image '{image.replace('.', '[.]')}'\): {problem}"):
        read_keypoints_csv(path)


def test_skip_mode_warns_once_with_the_count(tmp_path):
    rows = _good_rows(2) + ["a.jpg,1,2", "b.jpg," + ",".join(["x"] * 136)] + _good_rows(1) + ["c.jpg,nan"]
    path = write_csv(tmp_path / "k.csv", rows)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names, keypoints = read_keypoints_csv(path, on_error="skip")
    assert len(caught) == 1
    assert "skipped 3 bad row(s)" in str(caught[0].message) and "k.csv" in str(caught[0].message)
    assert names == ["ok0.jpg", "ok1.jpg", "ok0.jpg"] and keypoints.shape == (3, NUM_KEYPOINTS, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean file in skip mode: no warning at all
        read_keypoints_csv(write_csv(tmp_path / "clean.csv", _good_rows(2)), on_error="skip")
    with pytest.raises(ValueError, match="on_error"):
        read_keypoints_csv(path, on_error="ignore")


def test_missing_csv(tmp_path):
    with pytest.raises(DataError, match=r"none\.csv"):
        read_keypoints_csv(tmp_path / "none.csv")


# ----------------------------------------------------------------------------------------------------
# FacialKeypointsDataset
# ----------------------------------------------------------------------------------------------------


def test_dataset_items(data_root):
    train = FacialKeypointsDataset(data_root, "training")
    test = FacialKeypointsDataset(data_root, split="test")
    assert len(train) == 3 and len(test) == 1
    sample = train[1]
    assert set(sample) == {"image", "keypoints", "name"}
    assert sample["name"] == "face1.png"
    assert sample["image"].dtype == np.float32 and sample["image"].shape == (150, 110)
    assert sample["keypoints"].dtype == np.float32 and sample["keypoints"].shape == (NUM_KEYPOINTS, 2)
    bgr = cv2.imread(str(data_root / "training" / "face1.png")).astype(np.float64) / 255
    np.testing.assert_allclose(sample["image"], bgr @ [0.114, 0.587, 0.299], atol=1e-5)
    assert train[-1]["name"] == "face2.png"
    with pytest.raises(IndexError):
        train[3]
    with pytest.raises(ValueError, match="split"):
        FacialKeypointsDataset(data_root, "validation")


def test_dataset_applies_transform_with_rng(data_root):
    dataset = FacialKeypointsDataset(
        data_root, "training", transform=Compose([RandomCrop(50)]), rng=np.random.default_rng(0)
    )
    raw = FacialKeypointsDataset(data_root, "training")[0]
    out = dataset[0]
    assert out["image"].shape == (50, 50)
    left, top = -out["affine"][0, 2], -out["affine"][1, 2]
    np.testing.assert_allclose(out["keypoints"], raw["keypoints"] - [left, top], atol=1e-4)


def test_dataset_missing_image_names_file_and_row(data_root):
    (data_root / "training" / "face1.png").unlink()
    with pytest.raises(DataError, match=r"training_frames_keypoints\.csv, line 3 \(image 'face1\.png'\).*does not exist"):
        FacialKeypointsDataset(data_root, "training")
    with pytest.warns(UserWarning, match="skipped 1 bad row"):
        dataset = FacialKeypointsDataset(data_root, "training", on_error="skip")
    assert dataset.names == ["face0.png", "face2.png"]


def test_dataset_missing_layout(tmp_path):
    with pytest.raises(DataError, match="training_frames_keypoints.csv"):
        FacialKeypointsDataset(tmp_path, "training")


# ----------------------------------------------------------------------------------------------------
# find_data_dir
# ----------------------------------------------------------------------------------------------------


def fake_layout(folder: Path) -> Path:
    for split in ("training", "test"):
        (folder / split).mkdir(parents=True)
        (folder / f"{split}_frames_keypoints.csv").write_text(HEADER + "\n")
    return folder


def test_find_data_dir_precedence(tmp_path, monkeypatch):
    arg, env, cwd = fake_layout(tmp_path / "arg"), fake_layout(tmp_path / "env"), tmp_path / "cwd"
    fake_layout(cwd / "data")
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("KEYPOINTS_DATA", raising=False)
    assert find_data_dir() == (cwd / "data").resolve()  # ./data
    monkeypatch.setenv("KEYPOINTS_DATA", str(env))
    assert find_data_dir() == env.resolve()  # env beats ./data
    assert find_data_dir(arg) == arg.resolve()  # the argument beats env
    assert find_data_dir(str(arg)) == arg.resolve()
    # an explicit choice that does not hold the data is not silently replaced by another copy
    assert find_data_dir(tmp_path / "empty") is None
    monkeypatch.setenv("KEYPOINTS_DATA", str(tmp_path / "empty"))
    assert find_data_dir() is None


def test_find_data_dir_accepts_one_subfolder_and_needs_every_part(tmp_path, monkeypatch):
    monkeypatch.delenv("KEYPOINTS_DATA", raising=False)
    inner = fake_layout(tmp_path / "outer" / "train-test-data")
    assert find_data_dir(tmp_path / "outer") == inner.resolve()
    (inner / "test_frames_keypoints.csv").unlink()
    assert find_data_dir(tmp_path / "outer") is None
    assert OFFICIAL_URL.endswith("train-test-data.zip")


# ----------------------------------------------------------------------------------------------------
# prepare_faces
# ----------------------------------------------------------------------------------------------------


def test_rescale_size():
    assert rescale_size(96) == 107 and rescale_size(224) == 250
    assert rescale_size(112) == 125  # exactly 125
    assert rescale_size(56) == 63  # 62.5 rounds half up


def test_prepare_faces_sizes_and_keypoints(data_root):
    dataset = FacialKeypointsDataset(data_root, "training")
    faces = prepare_faces(dataset, 96)
    assert isinstance(faces, Faces) and len(faces) == 3 and faces.size == 96
    # shorter side -> 107; the longer one int(107 * long / short), by hand: 178, 145, 107
    assert [im.shape for im in faces.images] == [(107, 178), (145, 107), (107, 107)]
    assert all(im.dtype == np.float32 for im in faces.images)
    np.testing.assert_array_equal(faces.original_sizes, [[120, 200], [150, 110], [107, 107]])
    assert faces.names == dataset.names
    assert faces.keypoints.dtype == np.float32 and faces.keypoints.shape == (3, NUM_KEYPOINTS, 2)
    for i, (h2, w2) in enumerate([(107, 178), (145, 107), (107, 107)]):
        h, w = faces.original_sizes[i]
        expected = (dataset.keypoints[i] + 0.5) * [w2 / w, h2 / h] - 0.5  # pixel-centre rescaling
        np.testing.assert_allclose(faces.keypoints[i], expected, atol=1e-4)
        np.testing.assert_allclose(apply_affine(faces.keypoints[i], faces.to_original[i]), dataset.keypoints[i], atol=1e-4)
    # the image is the gray original shrunk with a box filter: its mean is kept
    np.testing.assert_allclose(faces.images[0].mean(), dataset[0]["image"].mean(), atol=2e-3)
    np.testing.assert_array_equal(faces.images[2], dataset[2]["image"])  # 107 -> 107: unchanged


def test_prepare_faces_indices_subset_and_center_crop_map(data_root):
    dataset = FacialKeypointsDataset(data_root, "training")
    faces = prepare_faces(dataset, 96, indices=[2, 0], workers=2)
    assert faces.names == ["face2.png", "face0.png"]
    sub = faces.subset([1])
    assert sub.names == ["face0.png"] and sub.images[0] is faces.images[1] and sub.size == 96
    np.testing.assert_array_equal(sub.keypoints[0], faces.keypoints[1])
    # face0: 120x200 -> 107x178; centre crop 96 at top = round(5.5) = 6 (half to even), left = 41
    crop_points = faces.keypoints[1] - [41, 6]
    back = apply_affine(crop_points, sub.center_crop_to_original()[0])
    np.testing.assert_allclose(back, dataset.keypoints[0], atol=1e-4)


# ----------------------------------------------------------------------------------------------------
# The real data
# ----------------------------------------------------------------------------------------------------


def _real_data() -> Path:
    location = os.environ.get("KEYPOINTS_DATA")
    if not location:
        pytest.skip("KEYPOINTS_DATA is not set (point it at the facial keypoints data folder)")
    folder = find_data_dir(location)
    if folder is None:
        pytest.skip(f"KEYPOINTS_DATA={location} does not hold the facial keypoints data")
    return folder


@pytest.mark.integration
def test_real_data_loads():
    root = _real_data()
    train = FacialKeypointsDataset(root, "training")
    test = FacialKeypointsDataset(root, "test")
    assert (len(train), len(test)) == (3462, 770)
    faces = prepare_faces(train, 96, indices=range(64))
    assert len(faces) == 64 and faces.keypoints.shape == (64, NUM_KEYPOINTS, 2)
    assert all(min(im.shape) == 107 and im.dtype == np.float32 for im in faces.images)
    assert all(0.0 <= im.min() and im.max() <= 1.0 for im in faces.images)
    # the faces are labelled inside their images (a little slack for points on the border)
    for image, points in zip(faces.images, faces.keypoints):
        h, w = image.shape
        assert (points >= -5).all() and (points[:, 0] <= w + 5).all() and (points[:, 1] <= h + 5).all()
