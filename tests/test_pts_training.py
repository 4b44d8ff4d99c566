"""Training on your own annotations: the iBUG ``.pts`` format (``keypoints.data.pts``), flip files, K points
through training, the checkpoint, the predictor and the NME (box diagonal for K != 68).

The data sets here are written by the tests themselves: generated faces (noise with a bright dot on each
point) and ``.pts`` text written out by hand (1-based), not with ``to_pts``, so the reader is checked
against an independent writer.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from keypoint_fixtures import mirror_permutation, real_data_dir

import tinynet
from keypoints.checkpoint import CheckpointError, checkpoint_meta, validate_meta
from keypoints.cli import main, run, train_main
from keypoints.crops import crop_sample
from keypoints.data import DataError, PtsDataset, read_flip_file, read_pts, to_pts
from keypoints.data.pts import MAX_PTS_BYTES
from keypoints.framing import PointFraming
from keypoints.geometry import FLIP_PERMUTATION, checked_flip_permutation, flip_keypoints
from keypoints.metrics import nme_per_face, summarize
from keypoints.predictor import load_predictor
from keypoints.recipes import Recipe
from keypoints.train import check_resumed_points

K = 5  # right eye, left eye, nose, right and left mouth corner (as seen in the picture)
FLIP = [1, 0, 2, 4, 3]


def pts_text(points: np.ndarray) -> str:
    """An iBUG .pts file written by hand: 1-based coordinates."""
    return "version: 1\nn_points: %d\n{\n%s}\n" % (len(points), "".join(f"{x + 1} {y + 1}\n" for x, y in points))


def write_face(folder: Path, name: str, rng: np.random.Generator, annotate: bool = True) -> np.ndarray:
    """``folder/name.png``, a noisy face with a dot on each of its K points, and ``folder/name.pts``."""
    folder.mkdir(parents=True, exist_ok=True)
    h, w = int(rng.integers(110, 140)), int(rng.integers(110, 140))
    image = cv2.GaussianBlur(rng.integers(0, 200, (h, w), dtype=np.uint8), (5, 5), 1.5)
    cx, cy, s = w / 2 + rng.uniform(-8, 8), h / 2 + rng.uniform(-8, 8), rng.uniform(18, 26)
    points = np.round([[cx - s, cy - s / 2], [cx + s, cy - s / 2], [cx, cy], [cx - 0.7 * s, cy + s],
                       [cx + 0.7 * s, cy + s]], 1)
    for x, y in points:
        cv2.circle(image, (int(round(x)), int(round(y))), 3, 255, -1)
    cv2.imwrite(str(folder / f"{name}.png"), image)
    if annotate:
        (folder / f"{name}.pts").write_text(pts_text(points))
    return points


@pytest.fixture(scope="module")
def pts_data(tmp_path_factory) -> Path:
    """40 annotated faces in two nested folders, one image without a .pts file, and the flip file."""
    root = tmp_path_factory.mktemp("pts") / "faces"
    rng = np.random.default_rng(5)
    for i in range(40):
        write_face(root / ("indoor" if i % 2 else "outdoor/day"), f"face{i:02d}", rng)
    write_face(root / "indoor", "unlabelled", rng, annotate=False)
    (root.parent / "flip.txt").write_text("# right eye <-> left eye, nose stays, mouth corners swap\n1\n0\n2\n4\n3\n")
    return root


def train_cli(*argv, capsys=None) -> tuple[int, str, str]:
    code = run(train_main, [str(a) for a in argv])
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    return code, out, err


# ---------------------------------------------------------------------------------------------------
# The .pts reader
# ---------------------------------------------------------------------------------------------------


def test_read_pts_is_one_based_and_reads_what_to_pts_writes(tmp_path):
    path = tmp_path / "a.pts"
    path.write_text("version: 1\nn_points:  3\n{\n1 1\n10.5 20\n  3e1 4 \n}\n")
    np.testing.assert_array_equal(read_pts(path), [[0, 0], [9.5, 19], [29, 3]])
    points = np.array([[12.25, 40.5], [0.0, 7.125]])
    path.write_text(to_pts(points))
    np.testing.assert_allclose(read_pts(path, num_points=2), points, atol=5e-4)


BAD_PTS = {
    "binary": (b"\x89PNG\r\n\x1a\n\xff\xfe", "not a text file"),
    "no braces": (b"version: 1\nn_points: 2\n1 2\n3 4\n", "not an iBUG .pts file"),
    "no n_points": (b"version: 1\n{\n1 2\n}\n", "no 'n_points: K'"),
    "n_points not a number": (b"n_points: many\n{\n1 2\n}\n", "n_points must be an integer, got 'many'"),
    "a word for a number": (b"n_points: 2\n{\n1 2\n3 four\n}\n", "point line 4: expected two numbers"),
    "three numbers": (b"n_points: 1\n{\n1 2 3\n}\n", "expected two numbers 'x y'"),
    "nan": (b"n_points: 1\n{\n1 nan\n}\n", "must be finite"),
    "far away": (b"n_points: 1\n{\n1e9 1\n}\n", "must be finite and within"),
    "count": (b"n_points: 3\n{\n1 2\n3 4\n}\n", "n_points says 3, the file holds 2 points"),
    "trailing": (b"n_points: 1\n{\n1 2\n}\nextra\n", "nothing after the closing"),
}


@pytest.mark.parametrize("case", sorted(BAD_PTS))
def test_a_corrupt_pts_file_is_refused_naming_it(tmp_path, case):
    content, message = BAD_PTS[case]
    path = tmp_path / "face.pts"
    path.write_bytes(content)
    with pytest.raises(DataError, match="face.pts") as info:
        read_pts(path)
    assert message in str(info.value)


def test_a_huge_pts_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.pts"
    path.write_bytes(b"n_points: 1\n{\n1 2\n}\n" + b" " * MAX_PTS_BYTES)
    with pytest.raises(DataError, match=rf"huge.pts: {MAX_PTS_BYTES + 20} bytes"):
        read_pts(path)


def test_a_pts_file_with_another_count_than_expected(tmp_path):
    path = tmp_path / "face.pts"
    path.write_text(pts_text(np.zeros((4, 2))))
    with pytest.raises(DataError, match="face.pts: 4 points; expected 5"):
        read_pts(path, num_points=5)


# ---------------------------------------------------------------------------------------------------
# Flip files and permutations
# ---------------------------------------------------------------------------------------------------


def test_the_ibug_permutation_is_a_valid_mirror_and_flips_by_hand():
    # the 68-point permutation from the landmark chart's pairs (tests/keypoint_fixtures.py), not from the code
    np.testing.assert_array_equal(checked_flip_permutation(mirror_permutation(), 68), FLIP_PERMUTATION)
    points = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    # width 10: x' = 9 - x; point i of the result is point perm[i] of the input
    np.testing.assert_array_equal(flip_keypoints(points, 10, np.array([2, 1, 0])), [[4, 6], [6, 4], [8, 2]])


def test_a_flipped_training_crop_swaps_the_points_with_the_given_permutation():
    image = np.random.default_rng(0).random((100, 100), dtype=np.float32)
    points = np.array([[10, 20], [30, 40], [50, 60], [70, 80], [90, 95]], np.float32)
    crop, moved = crop_sample(image, points, 96, None, center=True, flip=1.0, flip_permutation=np.array(FLIP))
    np.testing.assert_array_equal(crop, image[2:98, 2:98][:, ::-1])
    # by hand: the centre crop starts at (2, 2), the mirror is x' = 95 - x, then point i is old point FLIP[i]
    by_hand = np.array([[95 - (x - 2), y - 2] for x, y in points])[FLIP]
    np.testing.assert_allclose(moved, by_hand)
    with pytest.raises(ValueError, match="permutation of 68 points needs 68 keypoints, got 5"):
        crop_sample(image, points, 96, None, center=True, flip=1.0)


@pytest.mark.parametrize("text", ["1\n0\n2\n4\n3\n", "1 0 2 4 3", "# pairs\n1 0  # eyes\n2\n4 3\n"])
def test_a_flip_file_lists_one_index_per_point(tmp_path, text):
    (tmp_path / "flip.txt").write_text(text)
    np.testing.assert_array_equal(read_flip_file(tmp_path / "flip.txt", 5), FLIP)


@pytest.mark.parametrize("text, message", [
    ("1 2 0 3 4", "not its own inverse: point 0 mirrors to 1, which mirrors to 2"),
    ("1 0 2 4", "expected 5 indices (one per point), got 4"),
    ("0 0 2 4 3", "each index 0..4 exactly once; missing [1]"),
    ("1 0 2 4 5", "each index 0..4 exactly once; missing [3]"),
    ("1 0 nose 4 3", "expected 0-based integer indices"),
    ("1.0 0 2 4 3", "expected 0-based integer indices"),
])
def test_a_bad_flip_file_is_refused_naming_it(tmp_path, text, message):
    (tmp_path / "flip.txt").write_text(text)
    with pytest.raises(DataError, match="flip.txt") as info:
        read_flip_file(tmp_path / "flip.txt", 5)
    assert message in str(info.value)


# ---------------------------------------------------------------------------------------------------
# The folder of .pts files
# ---------------------------------------------------------------------------------------------------


def test_without_train_and_test_folders_a_fixed_tenth_is_the_test_split(pts_data):
    training, test = PtsDataset(pts_data, "training"), PtsDataset(pts_data, "test")
    assert (len(training), len(test), training.num_points) == (36, 4, K)
    assert set(training.names).isdisjoint(test.names)
    annotated = sorted(p.relative_to(pts_data).as_posix() for p in pts_data.rglob("*.pts"))
    assert sorted(training.names + test.names) == [name[:-4] + ".png" for name in annotated]
    assert [p.name for p in training.unannotated + test.unannotated] == ["unlabelled.png"]
    assert PtsDataset(pts_data, "test").names == test.names  # the same split every time, whatever the recipe
    sample = test[0]
    np.testing.assert_allclose(sample["keypoints"], read_pts(pts_data / test.names[0].replace(".png", ".pts")))
    assert sample["image"].dtype == np.float32 and sample["image"].ndim == 2


def test_train_and_test_folders_are_the_splits(tmp_path):
    rng = np.random.default_rng(0)
    written = {split: [write_face(tmp_path / split / "sub", f"f{i}", rng) for i in range(n)]
               for split, n in (("train", 3), ("test", 2))}
    for split, name in (("training", "train"), ("test", "test")):
        dataset = PtsDataset(tmp_path, split)
        assert dataset.names == [f"{name}/sub/f{i}.png" for i in range(len(written[name]))]
        np.testing.assert_allclose(dataset.keypoints, np.array(written[name]), atol=1e-4)


def test_mixed_point_counts_name_the_file(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(3):
        write_face(tmp_path / "train", f"f{i}", rng)
    write_face(tmp_path / "test", "t0", rng)
    (tmp_path / "train" / "f2.pts").write_text(pts_text(np.ones((4, 2))))
    with pytest.raises(DataError, match=r"f2\.pts: 4 points; expected 5 \(as the other \.pts files\)"):
        PtsDataset(tmp_path, "training")
    with pytest.raises(DataError, match=r"t0\.pts: 5 points; expected 4"):  # training's count, given
        PtsDataset(tmp_path, "test", num_points=4)


# ---------------------------------------------------------------------------------------------------
# NME normalisation and the checkpoint's point layout
# ---------------------------------------------------------------------------------------------------


def test_nme_for_other_point_counts_is_over_the_box_diagonal():
    true = np.array([[[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]]])  # a 3 x 4 box: diagonal 5
    pred = true + np.array([[[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]]])  # errors 1, 2, 0: mean 1
    assert nme_per_face(pred, true) == pytest.approx([0.2])
    metrics = summarize(pred, true)
    assert metrics["nme_percent"] == pytest.approx(20.0) and metrics["nme_normalization"] == "box_diagonal"
    ibug = np.zeros((1, 68, 2))
    ibug[0, 45] = [8.0, 6.0]  # outer eye corners 10 apart
    assert summarize(ibug + [[[0.0, 1.0]]], ibug)["nme_normalization"] == "interocular"
    assert nme_per_face(ibug + [[[0.0, 1.0]]], ibug) == pytest.approx([0.1])


def test_checkpoint_meta_carries_the_points_and_validates_them():
    meta = checkpoint_meta(Recipe(), num_points=K, flip_permutation=np.array(FLIP))
    assert validate_meta(meta)["num_points"] == K and validate_meta(meta)["flip_permutation"] == FLIP
    older = {k: v for k, v in checkpoint_meta(Recipe()).items() if k not in ("num_points", "flip_permutation")}
    assert validate_meta(older)["num_points"] == 68  # checkpoints from before: the iBUG layout
    bad = {
        "num_points": ({"num_points": 0}, "meta.num_points must be an integer in [1, 1000]"),
        "not an int": ({"num_points": "5"}, "meta.num_points must be an integer"),
        "not a mirror": ({"flip_permutation": [1, 2, 0, 3, 4]}, "meta.flip_permutation: not its own inverse"),
        "length": ({"flip_permutation": [1, 0]}, "meta.flip_permutation: expected 5 indices"),
        "flip without mirror": ({"flip_permutation": None, "flip_test": True}, "meta.flip_test is true but 5 points"),
        "confidence": ({"confidence_calibration": [1.0, -2.0]}, "confidence_calibration must be null for 5 points"),
        "upright": ({"framing": PointFraming((0.5, 0.5), 0.2, upright=True).to_dict()}, "upright needs the eyes"),
    }
    for case, (fields, message) in bad.items():
        with pytest.raises(CheckpointError, match="x.npz: ") as info:
            validate_meta(dict(meta, **fields), "x.npz")
        assert message in str(info.value), case


def test_a_run_resumes_only_on_the_points_it_was_trained_on():
    meta = validate_meta(checkpoint_meta(Recipe(), num_points=K, flip_permutation=np.array(FLIP)))
    check_resumed_points("last.npz", meta, K, np.array(FLIP))  # the same points: fine
    for points, permutation, message in ((K, None, "on 5 points with a flip permutation; the data and --flip-file"
                                          " give 5 points without one"),
                                         (K, np.array([0, 1, 2, 4, 3]), "give 5 points with one (a different one)"),
                                         (6, None, "give 6 points without one")):
        with pytest.raises(ValueError, match="--resume last.npz: the checkpoint was trained") as info:
            check_resumed_points("last.npz", meta, points, permutation)
        assert message in str(info.value)


# ---------------------------------------------------------------------------------------------------
# Training end to end
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(pts_data, tmp_path_factory):
    """One epoch of the default recipe (flip augmentation, refinement, flip-averaged test) on the K points of
    16 faces (14 training, 2 validation) and the 4 test faces."""
    out = tmp_path_factory.mktemp("pts_run") / "run"
    code = run(train_main, ["--data", str(pts_data), "--format", "pts", "--flip-file", str(pts_data.parent / "flip.txt"),
                            "--limit", "16", "--epochs", "1", "--batch-size", "8", "--out", str(out), "--no-progress"])
    assert code == 0
    return out


@pytest.mark.slow
def test_training_on_pts_files_end_to_end(pts_data, trained, capsys):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert (metrics["num_points"], metrics["nme_normalization"], metrics["faces"]) == (K, "box_diagonal", 4)
    assert "flip permutation from" in metrics["flip"] and metrics["flip_test"] is True
    meta = tinynet.load(trained / "best.npz")["meta"]
    assert (meta["num_points"], meta["flip_permutation"]) == (K, FLIP)
    assert meta.get("closeup") is None and meta["recipe"]["closeup"] == []  # they read the 68 iBUG points' regions
    predictor = load_predictor(trained / "best.npz")
    assert predictor.flip and predictor.refine_passes == 2 and predictor.closeup_reads() == {}
    # the test split's NME recomputed here: the predictor's points against the hand-written files, over the
    # diagonal of the true points' box
    test = PtsDataset(pts_data, "test")
    images = [test[i]["image"] for i in range(len(test))]
    points = predictor.predict(images)
    assert points.shape == (4, K, 2) and np.isfinite(points).all()
    true = np.stack([read_pts(pts_data / name.replace(".png", ".pts")) for name in test.names])
    errors = np.sqrt(((points - true) ** 2).sum(-1)).mean(-1)
    diagonal = np.hypot(*(true.max(axis=1) - true.min(axis=1)).T)
    assert metrics["nme_percent"] == pytest.approx(100 * np.mean(errors / diagonal), rel=1e-4)
    # python -m keypoints evaluate reads the same test split
    assert main(["evaluate", str(trained / "best.npz"), "--data", str(pts_data), "--format", "pts", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["nme_percent"] == pytest.approx(metrics["nme_percent"], rel=1e-6) and evaluated["faces"] == 4


@pytest.mark.slow
def test_without_a_flip_file_flips_are_off_and_said(pts_data, tmp_path, capsys):
    """The default recipe asks for flip augmentation and flip-averaged tests; 5 points without a flip file
    get neither, and the note is printed and recorded."""
    code, out, _ = train_cli("--data", pts_data, "--format", "pts", "--limit", "16", "--epochs", "1", "--batch-size",
                             "8", "--out", tmp_path / "run", "--no-progress", capsys=capsys)
    assert code == 0
    assert "no flip permutation for 5 points (give --flip-file FILE): flip augmentation and flip test" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["flip_test"] is False and metrics["flip"].startswith("no flip permutation")
    meta = validate_meta(tinynet.load(tmp_path / "run" / "best.npz")["meta"])
    assert meta["flip_permutation"] is None and meta["flip_test"] is False
    assert meta["recipe"]["augment"]["flip"] is False and meta["recipe"]["flip_test"] is False
    with pytest.raises(ValueError, match="flip averaging needs the mirror permutation of the model's 5 points"):
        load_predictor(tmp_path / "run" / "best.npz", flip=True)


# ---------------------------------------------------------------------------------------------------
# Bad input on the command line: one line, exit code 2
# ---------------------------------------------------------------------------------------------------


def copy_of(pts_data: Path, tmp_path: Path) -> Path:
    root = tmp_path / "faces"
    shutil.copytree(pts_data, root)
    return root


@pytest.mark.parametrize("case", ["corrupt", "flip count", "not a mirror", "mixed counts", "no data"])
def test_bad_input_is_one_line_and_exit_code_2(pts_data, tmp_path, capsys, case):
    flip = tmp_path / "flip.txt"
    flip.write_text("1 0 2 4 3")
    data: Path | None = pts_data
    expected = ""
    if case == "corrupt":
        data = copy_of(pts_data, tmp_path)
        (data / "indoor" / "face03.pts").write_text("n_points: 5\n{\n1 2\n}\n")
        expected = "face03.pts: n_points says 5, the file holds 1 points"
    elif case == "flip count":
        flip.write_text("1 0 2 3")
        expected = "flip.txt: expected 5 indices (one per point), got 4"
    elif case == "not a mirror":
        flip.write_text("1 2 0 3 4")
        expected = "flip.txt: not its own inverse"
    elif case == "mixed counts":
        data = copy_of(pts_data, tmp_path)
        (data / "outdoor" / "day" / "face10.pts").write_text(pts_text(np.ones((6, 2))))
        expected = "face10.pts: 6 points; expected 5"
    else:
        data = None
        expected = "--format pts needs --data DIR"
    argv = (["--data", data] if data else []) + ["--format", "pts", "--flip-file", flip, "--out", tmp_path / "run",
                                                 "--no-progress"]
    code, _, err = train_cli(*argv, capsys=capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, err


# ---------------------------------------------------------------------------------------------------
# The real data, as .pts files
# ---------------------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.slow
def test_training_loss_falls_on_200_real_faces_as_pts(tmp_path):
    """200 real training faces written as .pts files beside links to their images (180 train, 20 test by
    the fixed held-out share): two epochs of the reference recipe (no flip file needed: 68 points use the
    iBUG permutation); the second epoch's training loss is well below the first's."""
    from keypoints.data import FacialKeypointsDataset

    source = FacialKeypointsDataset(real_data_dir(), "training")
    root = tmp_path / "faces"
    root.mkdir()
    for name, path, points in list(zip(source.names, source.image_paths, source.keypoints))[:200]:
        os.symlink(path, root / name)
        (root / name).with_suffix(".pts").write_text(pts_text(points.astype(np.float64)))
    out = tmp_path / "run"
    code = run(train_main, ["--data", str(root), "--format", "pts", "--recipe", "reference", "--epochs", "2",
                            "--batch-size", "16", "--out", str(out), "--no-progress"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    losses = [h["train_loss"] for h in metrics["history"]]
    assert metrics["num_points"] == 68 and metrics["nme_normalization"] == "interocular" and metrics["faces"] == 20
    assert "standard iBUG 68-point flip permutation" in metrics["flip"]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.85 * losses[0], losses  # 0.50 -> 0.35 when written
