"""The iBUG ``.pts`` format (the 300-W annotations), a folder of images annotated with it, and flip files.

A ``.pts`` file holds one face's points, 1-based (the 300-W annotations were made in Matlab: the top-left
pixel's centre is (1, 1)); this package's points are 0-based, so :func:`to_pts` writes ``(x + 1, y + 1)``
and :func:`read_pts` subtracts 1::

    version: 1
    n_points: 68
    {
    73.932 207.451
    ...
    }

:class:`PtsDataset` is a folder in the 300-W layout: ``name.jpg`` (or ``.png``, ...) with ``name.pts``
beside it, in nested folders. Its splits:

- ``DIR/train`` and ``DIR/test`` if both are folders: the training and the test faces;
- otherwise every annotated image under ``DIR``, sorted by path, of which a fixed share
  (:data:`TEST_SHARE`, drawn with the fixed seed :data:`TEST_SEED`, whatever the recipe's seed) is the test
  split and the rest the training split.

Images without a ``.pts`` file beside them are listed in ``unannotated`` and left out (training says how
many). Every file must hold the same number of points ``K``.

A *flip file* (:func:`read_flip_file`) says how the ``K`` points swap sides when a face is mirrored: ``K``
whitespace-separated 0-based indices (one per line, say), the ``i``-th being the point that plays the role of
point ``i`` on the mirrored face (a point on the symmetry axis names itself); ``#`` starts a comment.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..geometry import MAX_POINTS, checked_flip_permutation, default_flip_permutation
from .csv import IMAGE_EXTENSIONS, MAX_COORDINATE, DataError
from .dataset import read_image

#: a .pts file larger than this is refused before it is read (68 points take about 1 kB)
MAX_PTS_BYTES = 1 << 20
#: without ``DIR/train`` and ``DIR/test``, this share of the annotated images is the test split
TEST_SHARE = 0.1
TEST_SEED = 0
SPLIT_FOLDERS = {"training": "train", "test": "test"}


def to_pts(points) -> str:
    """``(K, 2)`` points (0-based pixel centres) -> the text of an iBUG ``.pts`` file (1-based)."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or not np.isfinite(points).all():
        raise ValueError(f"to_pts: expected finite points of shape (K, 2), got shape {points.shape}")
    rows = "".join(f"{x + 1:.3f} {y + 1:.3f}\n" for x, y in points)
    return f"version: 1\nn_points: {len(points)}\n{{\n{rows}}}\n"


def _read_small_text(path: Path, kind: str, bound: str, expected: str) -> str:
    """The UTF-8 text of ``path``, refused (``DataError`` naming the file) when it is missing, over
    ``MAX_PTS_BYTES`` (checked before reading: ``bound`` says why that is enough) or not text."""
    if not path.is_file():
        raise DataError(f"{path}: no such {kind}")
    if path.stat().st_size > MAX_PTS_BYTES:
        raise DataError(f"{path}: {path.stat().st_size} bytes; {bound} is under {MAX_PTS_BYTES} bytes")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file; expected {expected}") from None


def read_pts(path: str | os.PathLike, num_points: int | None = None) -> np.ndarray:
    """An iBUG ``.pts`` file -> ``(K, 2)`` float64 in 0-based pixel coordinates.

    ``num_points``: the ``K`` the file must hold (None: any). Raises :class:`~keypoints.data.DataError` (a
    ``ValueError``) naming the file and what was expected for a missing, huge, binary or malformed file, a
    coordinate that is not a finite number within ``MAX_COORDINATE``, or a point count that is not the
    header's ``n_points`` or ``num_points``.
    """
    path = Path(path)
    text = _read_small_text(path, ".pts file", f"a .pts file of at most {MAX_POINTS} points",
                            "an iBUG .pts file (version, n_points, points between { and })")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "{" not in lines or "}" not in lines or lines.index("}") < lines.index("{"):
        raise DataError(f"{path}: not an iBUG .pts file (expected 'n_points: K' and the points between {{ and }})")
    start, end = lines.index("{"), lines.index("}")
    header = dict((key.strip(), value.strip()) for key, _, value in (line.partition(":") for line in lines[:start]))
    declared = _declared_count(path, header.get("n_points"))
    if lines[end + 1:]:
        raise DataError(f"{path}: expected nothing after the closing '}}', got {lines[end + 1][:40]!r}")
    body = lines[start + 1 : end]
    points = np.empty((len(body), 2), dtype=np.float64)
    for row, line in enumerate(body):
        points[row] = _point(path, start + 2 + row, line)
    if len(points) != declared:
        raise DataError(f"{path}: n_points says {declared}, the file holds {len(points)} points")
    if num_points is not None and declared != num_points:
        raise DataError(f"{path}: {declared} points; expected {num_points} (as the other .pts files)")
    return points - 1.0


def _declared_count(path: Path, value: str | None) -> int:
    """The header's ``n_points``: an integer in ``1..MAX_POINTS``."""
    if value is None:
        raise DataError(f"{path}: no 'n_points: K' line before the opening '{{'")
    try:
        count = int(value)
    except ValueError:
        raise DataError(f"{path}: n_points must be an integer, got {value[:40]!r}") from None
    if not 1 <= count <= MAX_POINTS:
        raise DataError(f"{path}: n_points must be in 1..{MAX_POINTS}, got {count}")
    return count


def _point(path: Path, number: int, line: str) -> tuple[float, float]:
    """One body line ``x y`` -> two finite coordinates within ``MAX_COORDINATE`` (``number``: its line among
    the non-blank ones)."""
    cells = line.split()
    try:
        x, y = (float(cell) for cell in cells)
    except ValueError:
        raise DataError(f"{path}, point line {number}: expected two numbers 'x y', got {line[:60]!r}") from None
    if not (np.isfinite(x) and np.isfinite(y) and abs(x) <= MAX_COORDINATE and abs(y) <= MAX_COORDINATE):
        raise DataError(f"{path}, point line {number}: coordinates must be finite and within"
                        f" {MAX_COORDINATE:g} pixels, got {line[:60]!r}")
    return x, y


def read_flip_file(path: str | os.PathLike, num_points: int) -> np.ndarray:
    """A flip file (see the module docstring) -> the ``(K,)`` mirror permutation of ``num_points`` points.

    Raises :class:`~keypoints.data.DataError` naming the file: not readable, not integers, not ``K`` of
    them, or not a permutation that is its own inverse (:func:`keypoints.geometry.checked_flip_permutation`).
    """
    path = Path(path)
    text = _read_small_text(path, "flip file", f"a flip file of at most {MAX_POINTS} indices",
                            f"a flip file of {num_points} 0-based indices")
    try:
        indices = [int(word) for line in text.splitlines() for word in line.split("#")[0].split()]
    except ValueError as exc:
        raise DataError(f"{path}: expected 0-based integer indices, one per point: {exc}") from None
    try:
        return checked_flip_permutation(indices, num_points, where=f"{path}")
    except ValueError as exc:
        raise DataError(f"{exc} (a flip file for the {num_points}-point .pts files)") from None


def flip_permutation_for(num_points: int, flip_file: str | os.PathLike | None) -> tuple[np.ndarray | None, str]:
    """``(permutation or None, note)``: the mirror permutation training uses for ``num_points`` points and a
    sentence saying where it came from (the flip file, the standard iBUG one for 68 points, or none: then
    flip augmentation and flip averaging are off)."""
    if flip_file is not None:
        return read_flip_file(flip_file, num_points), f"flip permutation from {flip_file}"
    permutation = default_flip_permutation(num_points)
    if permutation is not None:
        return permutation, "the standard iBUG 68-point flip permutation (no --flip-file given)"
    return None, (f"no flip permutation for {num_points} points (give --flip-file FILE):"
                  " flip augmentation and flip test averaging are off")


class PtsDataset:
    """One split of a folder of images with ``.pts`` files beside them (see the module docstring).

    Parameters
    ----------
    root : the folder
    split : {"training", "test"}
    num_points : the ``K`` every file must hold (None: that of the first file)

    Attributes
    ----------
    names : list[str], paths relative to ``root``; keypoints : (N, K, 2) float32; image_paths : list[Path];
    num_points : K; unannotated : list[Path], this split's images without a ``.pts`` file (left out)

    ``dataset[i]`` reads the image each time: ``{"image": (H, W) float32 gray in [0, 1], "keypoints": (K, 2)
    float32, "name": str}``, as :class:`keypoints.data.FacialKeypointsDataset`.
    """

    def __init__(self, root: str | os.PathLike, split: str = "training", num_points: int | None = None):
        if split not in SPLIT_FOLDERS:
            raise ValueError(f"PtsDataset: split must be one of {tuple(SPLIT_FOLDERS)}, got {split!r}")
        self.root = Path(root)
        self.split = split
        if not self.root.is_dir():
            raise DataError(f"{self.root}: no such folder of images and .pts files")
        images = split_images(self.root, split)
        self.unannotated = [path for path in images if not path.with_suffix(".pts").is_file()]
        self.image_paths = [path for path in images if path.with_suffix(".pts").is_file()]
        if not self.image_paths:
            raise DataError(f"{self.root}: no {split} image with a .pts file beside it"
                            f" ({len(self.unannotated)} images without one); see --format pts in README.md")
        points = []
        for path in self.image_paths:
            points.append(read_pts(path.with_suffix(".pts"), num_points))
            num_points = len(points[0]) if num_points is None else num_points
        self.num_points = int(num_points)
        self.keypoints = np.stack(points).astype(np.float32)
        self.names = [path.relative_to(self.root).as_posix() for path in self.image_paths]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"PtsDataset: index {index} out of range for {n} samples")
        index = index % n
        return {"image": read_image(self.image_paths[index]), "keypoints": self.keypoints[index].copy(),
                "name": self.names[index]}

    def __repr__(self) -> str:
        return f"PtsDataset(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, num_points={self.num_points})"


def split_images(root: Path, split: str) -> list[Path]:
    """The image files of ``split`` under ``root``, sorted (see the module docstring for the rule)."""
    folders = [root / name for name in SPLIT_FOLDERS.values()]
    if all(folder.is_dir() for folder in folders):
        return _images_under(root / SPLIT_FOLDERS[split])
    images = _images_under(root)
    order = np.random.default_rng([TEST_SEED]).permutation(len(images))
    n_test = max(1, int(round(TEST_SHARE * len(images)))) if len(images) > 1 else 0
    chosen = order[:n_test] if split == "test" else order[n_test:]
    return [images[i] for i in np.sort(chosen)]


def _images_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file())


DATA_FORMATS = ("csv", "pts")


def open_split(root: str | os.PathLike, split: str, data_format: str = "csv", num_points: int | None = None):
    """One split of the data at ``root``: the keypoint CSV layout (``"csv"``, the 68-point data set:
    :class:`~keypoints.data.FacialKeypointsDataset`) or a folder of ``.pts`` files (``"pts"``:
    :class:`PtsDataset`, whose files must hold ``num_points`` points when given)."""
    from .dataset import FacialKeypointsDataset

    if data_format not in DATA_FORMATS:
        raise ValueError(f"data format must be one of {DATA_FORMATS}, got {data_format!r}")
    if data_format == "pts":
        return PtsDataset(root, split, num_points)
    dataset = FacialKeypointsDataset(root, split)
    if num_points is not None and dataset.keypoints.shape[1] != num_points:
        raise DataError(f"{dataset.csv_path}: {dataset.keypoints.shape[1]} points per face; expected {num_points}")
    return dataset
