"""Shared helpers for the keypoints training / evaluation tests (a plain module, imported by the tests).

- :func:`write_dataset` writes a tiny data set in the upstream layout (``training_frames_keypoints.csv``,
  ``training/*.jpg``, ``test_frames_keypoints.csv``, ``test/*.jpg``), the same way ``tests/test_data.py``
  does: images from a seeded generator, the CSV with upstream's pandas header.
- :func:`write_checkpoint` writes an inference checkpoint (``keypoints.checkpoint.save_weights``) of a seeded
  network whose batch-norm running statistics are not the trivial 0 / 1, so loading them matters.
- :func:`real_data_dir` returns the real data folder from ``KEYPOINTS_DATA`` or skips with the reason.
- Hand-written geometry of the evaluation pipeline (rescale the shorter side to ``round(S*250/224)``,
  centre crop ``S``) and the 68-point mirror, written out here independently of ``keypoints.transforms``
  so the tests compare against them rather than against the code under test.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

NUM_KEYPOINTS = 68
HEADER = "," + ",".join(str(i) for i in range(2 * NUM_KEYPOINTS))  # upstream's header (pandas index column)
METRIC_KEYS = ("nme_percent", "nme_median_percent", "nme_p90_percent", "failure_rate_percent", "nmse")

# The iBUG 68-point mirror pairs, written out from the landmark chart (not copied from keypoints.transforms):
# jaw 0..16, brows 17..26, nose 27..35, eyes 36..47, mouth 48..67; a pair (i, j) trades places in a mirror.
MIRROR_PAIRS = (
    [(i, 16 - i) for i in range(8)]  # jaw; 8 (chin) stays
    + [(17 + i, 26 - i) for i in range(5)]  # brows
    + [(31, 35), (32, 34)]  # nostrils; 27-30 and 33 stay
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lips; 51, 57 stay
    + [(60, 64), (61, 63), (65, 67)]  # inner lips; 62, 66 stay
)


def mirror_permutation() -> np.ndarray:
    perm = np.arange(NUM_KEYPOINTS)
    for i, j in MIRROR_PAIRS:
        perm[i], perm[j] = j, i
    return perm


def csv_row(name: str, points: np.ndarray) -> str:
    return name + "," + ",".join(f"{v:g}" for v in np.asarray(points).reshape(-1))


def write_split(
    root: Path,
    split: str,
    shapes: list[tuple[int, int]],
    rng: np.random.Generator,
    values: list[int] | None = None,
) -> np.ndarray:
    """Write ``root/{split}/face{i}.jpg`` and ``root/{split}_frames_keypoints.csv``; return the points.

    ``values``: if given, image ``i`` is a flat gray image of intensity ``values[i]`` (JPEG keeps a flat
    image exact, so a test can tell the images apart by their mean), else smooth random colour noise.
    The keypoints are drawn inside the middle of the image, rounded to 0.1 px as the upstream CSVs are.
    """
    (root / split).mkdir(parents=True, exist_ok=True)
    rows, all_points = [], []
    for i, (h, w) in enumerate(shapes):
        if values is None:
            image = cv2.GaussianBlur(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8), (5, 5), 1.5)
        else:
            image = np.full((h, w), values[i], np.uint8)
        cv2.imwrite(str(root / split / f"face{i}.jpg"), image)
        points = np.round(rng.uniform([0.2 * w, 0.2 * h], [0.8 * w, 0.8 * h], size=(NUM_KEYPOINTS, 2)), 1)
        points[36] = [0.3 * w, 0.4 * h]  # outer eye corners well apart: a sane inter-ocular distance
        points[45] = [0.7 * w, 0.4 * h]
        rows.append(csv_row(f"face{i}.jpg", points))
        all_points.append(points)
    (root / f"{split}_frames_keypoints.csv").write_text("\n".join([HEADER] + rows) + "\n")
    return np.array(all_points, dtype=np.float32)


def write_dataset(root: Path, n_train: int = 12, n_test: int = 4, seed: int = 0) -> Path:
    """A tiny data set of varied image sizes (portrait, landscape, square, smaller and larger than 107)."""
    rng = np.random.default_rng(seed)
    sides = [(80, 64), (100, 130), (120, 120), (90, 150), (140, 110), (70, 70)]
    write_split(root, "training", [sides[i % len(sides)] for i in range(n_train)], rng)
    write_split(root, "test", [sides[(i + 3) % len(sides)] for i in range(n_test)], rng)
    return root


def seeded_state_dict(input_size: int = 96, seed: int = 0) -> dict[str, np.ndarray]:
    """A seeded network's state dict with non-trivial batch-norm running statistics."""
    from keypoints.models import naimishnet

    rng = np.random.default_rng(seed + 1000)
    state = {k: v.copy() for k, v in naimishnet(input_size, seed=seed).state_dict().items()}
    for key in state:
        if key.endswith("running_mean"):
            state[key] = rng.normal(0.0, 0.1, state[key].shape).astype(np.float32)
        elif key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 2.0, state[key].shape).astype(np.float32)
    return state


def write_checkpoint(path: Path, input_size: int = 96, seed: int = 0, flip_test: bool = False) -> dict:
    """An inference checkpoint as training writes it (``save_weights``); returns the saved state dict."""
    from keypoints.checkpoint import save_weights
    from keypoints.recipes import Recipe

    state = seeded_state_dict(input_size, seed)
    save_weights(path, Recipe(size=input_size, flip_test=flip_test), state, epoch=1, loss=0.5)
    return state


def real_data_dir() -> Path:
    """The real data set named by ``KEYPOINTS_DATA``, or skip the test saying why."""
    folder = os.environ.get("KEYPOINTS_DATA")
    if not folder:
        pytest.skip("integration test: set KEYPOINTS_DATA to the facial-keypoints data folder to run it")
    path = Path(folder)
    if not (path / "training_frames_keypoints.csv").is_file() or not (path / "training").is_dir():
        pytest.skip(f"integration test: KEYPOINTS_DATA={folder} does not hold the facial-keypoints data")
    return path


# ---------------------------------------------------------------------------------------------------
# The evaluation geometry, by hand
# ---------------------------------------------------------------------------------------------------


def rescale_side(size: int) -> int:
    """107 for 96, 250 for 224 (upstream's 250 -> 224 ratio)."""
    return {96: 107, 224: 250}[size]


def crop_geometry(height: int, width: int, size: int = 96) -> tuple[int, int, int, int]:
    """``(new_h, new_w, top, left)`` of Rescale(shorter side -> rescale_side) + CenterCrop(size).

    The longer side is truncated (``int``), the crop offset is ``round`` of half the margin (Python's
    round, as torchvision's CenterCrop).
    """
    r = rescale_side(size)
    if height > width:
        new_h, new_w = int(r * height / width), r
    else:
        new_h, new_w = r, int(r * width / height)
    return new_h, new_w, int(round((new_h - size) / 2)), int(round((new_w - size) / 2))


def crop_to_image(points: np.ndarray, height: int, width: int, size: int = 96) -> np.ndarray:
    """Crop pixels -> original pixels: undo the crop shift, then the pixel-centre resize map
    ``x' = (x + 0.5) W'/W - 0.5``, i.e. ``x = (x' + 0.5) W/W' - 0.5``."""
    new_h, new_w, top, left = crop_geometry(height, width, size)
    points = np.asarray(points, dtype=np.float64)
    x = (points[..., 0] + left + 0.5) * width / new_w - 0.5
    y = (points[..., 1] + top + 0.5) * height / new_h - 0.5
    return np.stack([x, y], axis=-1)


def image_to_crop(points: np.ndarray, height: int, width: int, size: int = 96) -> np.ndarray:
    """The inverse of :func:`crop_to_image`."""
    new_h, new_w, top, left = crop_geometry(height, width, size)
    points = np.asarray(points, dtype=np.float64)
    x = (points[..., 0] + 0.5) * new_w / width - 0.5 - left
    y = (points[..., 1] + 0.5) * new_h / height - 0.5 - top
    return np.stack([x, y], axis=-1)


def to_normalized(points: np.ndarray, size: int = 96) -> np.ndarray:
    """Crop pixels -> the network's targets ``(p - 100 S/224) / (50 S/224)``."""
    return (np.asarray(points, dtype=np.float64) - 100.0 * size / 224) / (50.0 * size / 224)


def from_normalized(q: np.ndarray, size: int = 96) -> np.ndarray:
    return np.asarray(q, dtype=np.float64) * (50.0 * size / 224) + 100.0 * size / 224


def canonical_face(size: int = 96) -> np.ndarray:
    """A hand-drawn frontal face (68 iBUG points) in the pixels of a ``size`` crop, framed roughly as the
    training faces are (eyes at 44% of the height, chin at 75%)."""
    f = np.zeros((68, 2))
    t = np.linspace(0.0, np.pi, 17)
    f[0:17] = np.stack([0.5 - 0.25 * np.cos(t), 0.45 + 0.3 * np.sin(t)], 1)  # jaw, temple to temple
    f[17:22] = np.stack([np.linspace(0.30, 0.45, 5), np.full(5, 0.36)], 1)  # brows
    f[22:27] = np.stack([np.linspace(0.55, 0.70, 5), np.full(5, 0.36)], 1)
    f[27:31] = np.stack([np.full(4, 0.5), np.linspace(0.42, 0.55, 4)], 1)  # nose bridge, 30 = tip
    f[31:36] = np.stack([np.linspace(0.45, 0.55, 5), np.full(5, 0.58)], 1)  # nostrils
    ring = np.linspace(np.pi, -np.pi, 6, endpoint=False)
    f[36:42] = np.stack([0.38 + 0.04 * np.cos(ring), 0.44 - 0.02 * np.sin(ring)], 1)  # eyes
    f[42:48] = np.stack([0.62 + 0.04 * np.cos(ring), 0.44 - 0.02 * np.sin(ring)], 1)
    lips = np.linspace(np.pi, -np.pi, 12, endpoint=False)
    f[48:60] = np.stack([0.5 + 0.1 * np.cos(lips), 0.66 - 0.04 * np.sin(lips)], 1)
    inner = np.linspace(np.pi, -np.pi, 8, endpoint=False)
    f[60:68] = np.stack([0.5 + 0.06 * np.cos(inner), 0.66 - 0.015 * np.sin(inner)], 1)
    return f * size


def save_constant_face_model(path) -> np.ndarray:
    """A checkpoint whose network answers ``canonical_face()`` for every input: the last layer's weights
    are zero and its bias holds the face in normalised units ``(p - 100 S/224) / (50 S/224)``. Returns the
    face (crop pixels)."""
    from keypoints.models import naimishnet
    from keypoints.checkpoint import save_weights
    from keypoints.recipes import RECIPES

    model = naimishnet(96, seed=0)
    face = canonical_face(96)
    last = model.regressor[len(model.regressor) - 1]
    last.weight.data[...] = 0.0
    last.bias.data[...] = ((face - 100 * 96 / 224) / (50 * 96 / 224)).reshape(-1)
    save_weights(path, RECIPES["reference"], model.state_dict(), 1, 0.0)
    return face
