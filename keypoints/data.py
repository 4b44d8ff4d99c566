"""Reading, finding, downloading and caching the 68-point facial keypoints data set.

The data set is the one the Udacity "P1_Facial_Keypoints" project distributes (frames of the YouTube
Faces data set), in the upstream layout::

    training_frames_keypoints.csv   header row, then: image name, x0, y0, x1, y1, ..., x67, y67 (pixels)
    training/*.jpg                  3462 images
    test_frames_keypoints.csv       same columns
    test/*.jpg                      770 images

Pieces, from the bottom up:

- :func:`read_image` / :func:`read_keypoints_csv`: strict readers whose errors (:class:`DataError`)
  name the file, and for the CSV the 1-based line and the image.
- :class:`FacialKeypointsDataset`: upstream's ``Dataset`` (``len``, ``dataset[i] -> sample dict``).
- :func:`find_data_dir` / :func:`ensure_data`: locate the data (``--data``, else ``$KEYPOINTS_DATA``,
  else ``./data``) or download the official archive, atomically.
- :func:`prepare_faces`: decode + grayscale + rescale every image ONCE (in a thread pool) into a
  :class:`Faces` cache, from which ``keypoints.loader.DataLoader`` cuts the random crops of every epoch.
"""
from __future__ import annotations

import csv
import math
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from .image import DEFAULT_MAX_PIXELS, ImageError, read_image_file, to_gray_float32
from .geometry import NUM_KEYPOINTS, center_crop_offset
from .transforms import Rescale

OFFICIAL_URL = (
    "https://s3.amazonaws.com/video.udacity-data.com/topher/2018/May/5aea1b91_train-test-data/train-test-data.zip"
)
SPLITS = ("training", "test")
ENV_VAR = "KEYPOINTS_DATA"
DEFAULT_DIR = "data"
_NUM_COLUMNS = 1 + 2 * NUM_KEYPOINTS  # image name + (x, y) per point
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


#: a keypoint coordinate beyond this many pixels is refused when the CSV is read
MAX_COORDINATE = 1e6


class DataError(ValueError):
    """The data on disk is missing, unreadable or malformed; the message names the file (and row)."""


class DownloadError(RuntimeError):
    """Downloading or unpacking the data set failed; nothing half-written was left behind."""


def csv_name(split: str) -> str:
    """``"training" -> "training_frames_keypoints.csv"``."""
    return f"{split}_frames_keypoints.csv"


# ----------------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------------


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as float32 grayscale ``(H, W)`` in ``[0, 1]``.

    Read by :func:`keypoints.image.read_image_file` with ``IMREAD_UNCHANGED`` (so the EXIF orientation is
    ignored: the keypoints refer to the stored pixels). 8-bit images are divided by 255 and 16-bit ones by
    65535; BGR and BGRA become gray with ``cv2.cvtColor``'s weights (``0.299 R + 0.587 G + 0.114 B``),
    alpha dropped.

    Raises
    ------
    DataError
        The file is missing, empty, truncated, larger than ``max_pixels``, or not an image OpenCV can
        decode. The message names it.
    """
    if not Path(path).is_file():
        raise DataError(f"{path}: no such image file")
    try:
        image = read_image_file(path, cv2.IMREAD_UNCHANGED, max_pixels)
        return to_gray_float32(image)
    except ImageError as exc:
        raise DataError(str(exc)) from exc
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from exc


# ----------------------------------------------------------------------------------------------------
# Keypoint CSV files
# ----------------------------------------------------------------------------------------------------


def _parse_floats(cells: Sequence[str]) -> np.ndarray | None:
    try:
        return np.array([float(c) for c in cells], dtype=np.float64)
    except ValueError:
        return None


def _is_header(row: list[str]) -> bool:
    """Upstream's header is ``",0,1,...,135"`` (pandas' index column has no name); others write
    ``"image,x0,y0,..."``. A first row is a header when its first cell is empty, or when it does not name
    an image file and its coordinates are not all numbers (a real first row with a bad coordinate is
    thus still reported as an error, not swallowed as a header)."""
    first = row[0].strip()
    if not first:
        return True
    return not first.lower().endswith(_IMAGE_EXTENSIONS) and _parse_floats(row[1:]) is None


def _row_problem(row: list[str]) -> tuple[str, np.ndarray | None]:
    """``("", points)`` for a good row, ``(description, None)`` for a bad one."""
    if len(row) != _NUM_COLUMNS:
        return (
            f"expected {_NUM_COLUMNS} columns (image name + {NUM_KEYPOINTS} x,y pairs), got {len(row)}",
            None,
        )
    if not row[0].strip():
        return "empty image name", None
    name = Path(row[0].strip())
    if name.is_absolute() or ".." in name.parts or (name.drive and not name.root):
        return f"image name {row[0].strip()!r} must be a path inside the split's folder (not absolute, no '..')", None
    values = []
    for column, cell in enumerate(row[1:]):
        axis, point = "xy"[column % 2], column // 2
        try:
            value = float(cell)
        except ValueError:
            return f"coordinate {axis}{point} (column {column + 2}) is not a number: {cell!r}", None
        if not math.isfinite(value):
            return f"coordinate {axis}{point} (column {column + 2}) is not finite: {cell!r}", None
        if abs(value) > MAX_COORDINATE:  # also what would overflow float32 (1e39 -> inf)
            return (f"coordinate {axis}{point} (column {column + 2}) is {cell.strip()}, beyond +-{MAX_COORDINATE:g}"
                    " pixels: not a coordinate in an image"), None
        values.append(value)
    return "", np.asarray(values, dtype=np.float32).reshape(NUM_KEYPOINTS, 2)


def _check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


def _read_rows(path: Path, on_error: str) -> tuple[list[str], np.ndarray, list[int], list[str]]:
    """``(names, keypoints (N, 68, 2), line numbers, error messages of skipped rows)``; no warning."""
    _check_on_error(on_error)
    if not path.is_file():
        raise DataError(f"{path}: no such keypoints CSV file")
    names: list[str] = []
    points: list[np.ndarray] = []
    lines: list[int] = []
    errors: list[str] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            first = True
            for row in reader:
                if not row or all(not cell.strip() for cell in row):
                    continue  # blank lines (e.g. at the end of the file)
                if first:
                    first = False
                    if _is_header(row):
                        continue
                name = row[0].strip()
                problem, xy = _row_problem(row)
                if problem:
                    message = f"{path}, line {reader.line_num} (image {name!r}): {problem}"
                    if on_error == "raise":
                        raise DataError(message)
                    errors.append(message)
                    continue
                names.append(name)
                points.append(xy)
                lines.append(reader.line_num)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from exc
    keypoints = np.stack(points) if points else np.zeros((0, NUM_KEYPOINTS, 2), dtype=np.float32)
    return names, keypoints, lines, errors


def _warn_skipped(path: Path, errors: list[str], kept: int) -> None:
    if errors:
        warnings.warn(
            f"{path}: skipped {len(errors)} bad row(s), kept {kept}; first: {errors[0]}", UserWarning, stacklevel=3
        )


def read_keypoints_csv(path: str | os.PathLike, on_error: str = "raise") -> tuple[list[str], np.ndarray]:
    """Read a keypoints CSV: ``image name, x0, y0, ..., x67, y67`` per row, an optional header row.

    Parameters
    ----------
    path : the CSV file
    on_error : {"raise", "skip"}
        A row with the wrong number of columns, a non-numeric or a NaN/inf coordinate raises
        :class:`DataError` naming the file, the 1-based line and the image; with ``"skip"`` such rows are
        dropped and ONE warning gives their count (and the first problem).

    Returns
    -------
    names : list[str], the image file names
    keypoints : (N, 68, 2) float32, ``(x, y)`` in pixels
    """
    path = Path(path)
    names, keypoints, _, errors = _read_rows(path, on_error)
    _warn_skipped(path, errors, len(names))
    return names, keypoints


# ----------------------------------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------------------------------


class FacialKeypointsDataset:
    """One split of the data in the upstream layout (``root/{split}_frames_keypoints.csv``, ``root/{split}/``).

    Parameters
    ----------
    root : folder holding the data (see :func:`find_data_dir`)
    split : {"training", "test"}
    transform : callable ``transform(sample, rng) -> sample``, optional
        Applied by ``__getitem__``, as upstream (see ``keypoints.transforms``).
    on_error : {"raise", "skip"}
        Bad CSV rows and rows whose image file is missing raise :class:`DataError` naming the file and the
        CSV line, or (``"skip"``) are dropped with one warning giving their count.
    rng : np.random.Generator, optional
        Passed to ``transform`` (``None`` is fine for deterministic transforms).

    Attributes
    ----------
    names : list[str]; keypoints : (N, 68, 2) float32; image_paths : list[Path]; lines : list[int] (CSV lines)

    ``dataset[i]`` reads the image from disk each time and returns
    ``{"image": (H, W) float32 gray in [0, 1], "keypoints": (68, 2) float32, "name": str}``, transformed.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "training",
        transform: Callable | None = None,
        on_error: str = "raise",
        *,
        rng: np.random.Generator | None = None,
    ):
        if split not in SPLITS:
            raise ValueError(f"FacialKeypointsDataset: split must be one of {SPLITS}, got {split!r}")
        _check_on_error(on_error)
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.rng = rng
        self.csv_path = self.root / csv_name(split)
        self.image_dir = self.root / split
        if not self.csv_path.is_file():
            raise DataError(f"{self.csv_path}: no such keypoints CSV file (is {self.root} the data folder?)")
        if not self.image_dir.is_dir():
            raise DataError(f"{self.image_dir}: no such image folder (is {self.root} the data folder?)")
        names, keypoints, lines, errors = _read_rows(self.csv_path, on_error)

        # One directory listing instead of 3462 stat calls; names with a sub-folder fall back to a stat.
        present = set(os.listdir(self.image_dir))
        keep = []
        for i, (name, line) in enumerate(zip(names, lines)):
            path = self.image_dir / name
            if name in present or path.is_file():
                keep.append(i)
                continue
            message = f"{self.csv_path}, line {line} (image {name!r}): image file {path} does not exist"
            if on_error == "raise":
                raise DataError(message)
            errors.append(message)
        self.names = [names[i] for i in keep]
        self.keypoints = keypoints[keep] if keep else np.zeros((0, NUM_KEYPOINTS, 2), dtype=np.float32)
        self.lines = [lines[i] for i in keep]
        self.image_paths = [self.image_dir / name for name in self.names]
        _warn_skipped(self.csv_path, errors, len(self.names))

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"FacialKeypointsDataset: index {index} out of range for {n} samples")
        index = index % n
        sample = {
            "image": read_image(self.image_paths[index]),
            "keypoints": self.keypoints[index].copy(),
            "name": self.names[index],
        }
        if self.transform is not None:
            sample = self.transform(sample, self.rng)
        return sample

    def __repr__(self) -> str:
        return f"FacialKeypointsDataset(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"


# ----------------------------------------------------------------------------------------------------
# Finding and downloading the data
# ----------------------------------------------------------------------------------------------------


def holds_data(folder: str | os.PathLike) -> bool:
    """True when ``folder`` has both CSV files and both image folders."""
    folder = Path(folder)
    return all((folder / csv_name(s)).is_file() and (folder / s).is_dir() for s in SPLITS)


def _data_root(folder: Path) -> Path | None:
    """``folder`` if it holds the data, else its first sub-folder that does (an archive unpacked into a
    folder of its own, e.g. ``data/train-test-data/``), else ``None``."""
    if holds_data(folder):
        return folder.resolve()
    if folder.is_dir():
        for sub in sorted(folder.iterdir()):
            if sub.is_dir() and holds_data(sub):
                return sub.resolve()
    return None


def _destination(data: str | os.PathLike | None) -> Path:
    """The data folder by precedence: the ``--data`` argument, else ``$KEYPOINTS_DATA``, else ``./data``."""
    if data is not None:
        return Path(data)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return Path(DEFAULT_DIR)


def find_data_dir(data: str | os.PathLike | None = None) -> Path | None:
    """The folder holding the data, or ``None``.

    Only the folder chosen by precedence is looked at (the ``data`` argument, else ``$KEYPOINTS_DATA``,
    else ``./data``), so an explicit choice never silently falls back to another copy. The folder itself
    or one sub-folder of it may hold the data (``training/``, ``test/`` and both CSVs, the layout
    ``train-test-data.zip`` unpacks to). The result is an absolute path.
    """
    return _data_root(_destination(data))


def _download(url: str, out, quiet: bool) -> int:
    """Stream ``url`` into the open binary file ``out`` with a progress bar; return the byte count.

    Raises ``DownloadError`` on a connection/HTTP error or when fewer bytes arrive than the server's
    ``Content-Length`` promised (``http.client`` returns a short read then, rather than raising)."""
    from tqdm.auto import tqdm

    received = 0
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="facial keypoints data", disable=quiet
            ) as bar:
                while True:
                    chunk = response.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, HTTPException, OSError, ValueError) as exc:
        raise DownloadError(f"downloading {url} failed after {received} bytes: {exc}") from exc
    if total is not None and received != total:
        raise DownloadError(
            f"downloading {url} failed: the connection closed after {received} of {total} bytes (incomplete download)"
        )
    return received


def _archive_prefix(archive: zipfile.ZipFile, url: str) -> str:
    """The folder inside the archive that holds the data (``""`` for upstream's zip, whose members are
    ``training/...``, ``test/...`` and the two CSVs at the top level); ``DownloadError`` if it has none."""
    names = [n for n in archive.namelist() if not n.startswith("__MACOSX/")]
    candidates = sorted((n for n in names if n.endswith(csv_name("training"))), key=len)
    for candidate in candidates:
        prefix = candidate[: -len(csv_name("training"))]
        if prefix and not prefix.endswith("/"):
            continue
        has_test_csv = prefix + csv_name("test") in names
        has_images = all(any(n.startswith(f"{prefix}{s}/") and not n.endswith("/") for n in names) for s in SPLITS)
        if has_test_csv and has_images:
            return prefix
    raise DownloadError(
        f"the archive from {url} does not contain the expected members "
        f"({csv_name('training')}, {csv_name('test')}, training/*, test/*)"
    )


def _extract(archive: zipfile.ZipFile, prefix: str, target: Path) -> None:
    """Extract the members under ``prefix`` (not macOS' ``__MACOSX`` litter) into ``target``.

    ``ZipFile.extract`` already drops ``..`` and absolute paths; reading every member checks its CRC."""
    for info in archive.infolist():
        name = info.filename
        if name.startswith("__MACOSX/") or not name.startswith(prefix) or Path(name).name.startswith("._"):
            continue
        archive.extract(info, target)


def ensure_data(data: str | os.PathLike | None = None, url: str = OFFICIAL_URL, quiet: bool = False) -> Path:
    """Return the data folder, downloading and unpacking the official archive first if needed.

    The destination is the ``data`` argument if given, else ``$KEYPOINTS_DATA`` if set, else ``./data``.
    The zip is streamed (with a tqdm progress bar unless ``quiet``) into a temporary file next to the
    destination, checked to be a zip holding both CSVs and both image folders, extracted into a temporary
    folder next to the destination and renamed into place in one step, so an interrupted run never leaves
    a half-written data folder: on any failure (connection error, short download, not a zip, missing
    members, Ctrl-C) the temporary file and folder are removed and :class:`DownloadError` is raised.

    Raises
    ------
    DataError
        The destination exists, is not empty and does not hold the data (we do not write into it).
    DownloadError
        The download or the archive failed; nothing was left behind.
    """
    found = find_data_dir(data)
    if found is not None:
        return found
    destination = _destination(data).absolute()
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise DataError(
            f"{destination} exists but does not hold the data ({csv_name('training')}, {csv_name('test')}, "
            f"training/, test/); empty it or choose another folder (--data or ${ENV_VAR})"
        )
    parent = destination.parent
    parent.mkdir(parents=True, exist_ok=True)
    archive_path: Path | None = None
    unpack_dir: Path | None = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{destination.name}-", suffix=".zip.part", dir=parent)
        archive_path = Path(name)
        with os.fdopen(fd, "wb") as out:
            size = _download(url, out, quiet)
        if not zipfile.is_zipfile(archive_path):
            head = archive_path.read_bytes()[:16]
            raise DownloadError(f"{url} did not send a zip archive ({size} bytes starting with {head!r})")
        unpack_dir = Path(tempfile.mkdtemp(prefix=f".{destination.name}-unpack-", dir=parent))
        try:
            with zipfile.ZipFile(archive_path) as archive:
                prefix = _archive_prefix(archive, url)
                _extract(archive, prefix, unpack_dir)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
            raise DownloadError(f"the archive from {url} is corrupt: {exc}") from exc
        root = unpack_dir / prefix if prefix else unpack_dir
        if not holds_data(root):
            raise DownloadError(f"the archive from {url} did not unpack to the expected layout")
        os.chmod(root, 0o755)  # mkdtemp made it private (0700)
        if destination.is_dir():
            destination.rmdir()  # empty (checked above); rename cannot replace a folder
        os.replace(root, destination)
    finally:
        if archive_path is not None and archive_path.exists():
            archive_path.unlink()
        if unpack_dir is not None and unpack_dir.exists():
            shutil.rmtree(unpack_dir, ignore_errors=True)
    if not quiet:
        print(f"Downloaded the facial keypoints data from {url} to {destination}")
    return destination.resolve()


# ----------------------------------------------------------------------------------------------------
# The preprocessing cache
# ----------------------------------------------------------------------------------------------------


def rescale_size(size: int) -> int:
    """Shorter side before cropping ``size``: upstream's 250 -> 224 ratio, ``round(size * 250 / 224)``
    (rounded half up): 107 at 96, 250 at 224."""
    if size <= 0:
        raise ValueError(f"rescale_size: size must be positive, got {size}")
    return int(math.floor(size * 250 / 224 + 0.5))


@dataclass
class Faces:
    """Faces decoded, grayscaled and rescaled once, ready for the per-epoch crops.

    Attributes
    ----------
    images : list of (h, w) float32 arrays in [0, 1]; the shorter side is ``rescale_size(size)``
    keypoints : (N, 68, 2) float32, in the rescaled images' pixels
    names : list[str]
    original_sizes : (N, 2) int64, ``(height, width)`` of the original images
    size : int, ``S``, the side of the crops the network sees
    to_original : (N, 2, 3) float64, per image the affine mapping rescaled pixels back to original
        pixels, ``x = (x' + 0.5) W/W' - 0.5`` (apply with ``keypoints.geometry.apply_affine``)
    """

    images: list
    keypoints: np.ndarray
    names: list
    original_sizes: np.ndarray
    size: int
    to_original: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: Sequence[int] | np.ndarray) -> "Faces":
        """The faces at ``indices`` (e.g. a train/validation split); the images are shared, not copied."""
        idx = np.asarray(indices, dtype=np.intp).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"Faces.subset: indices out of range for {n} faces")
        return Faces(
            images=[self.images[i] for i in idx],
            keypoints=self.keypoints[idx],
            names=[self.names[i] for i in idx],
            original_sizes=self.original_sizes[idx],
            size=self.size,
            to_original=self.to_original[idx],
        )

    def center_crop_to_original(self) -> np.ndarray:
        """``(N, 2, 3)`` float64: centre-crop pixels (``DataLoader(center=True)``) -> original pixels."""
        out = self.to_original.copy()
        for i, image in enumerate(self.images):
            top, left = center_crop_offset(image.shape[0], image.shape[1], self.size, self.size)
            # original = T @ (crop + (left, top)): the shift enters the translation column through T.
            out[i, :, 2] += out[i, :, :2] @ np.array([left, top], dtype=np.float64)
        return out

    def __repr__(self) -> str:
        return f"Faces(n={len(self)}, size={self.size})"


def prepare_faces(
    dataset: FacialKeypointsDataset,
    size: int,
    *,
    indices: Sequence[int] | None = None,
    workers: int | None = None,
) -> Faces:
    """Decode, grayscale and ``Rescale(rescale_size(size))`` every image of ``dataset`` once.

    The deterministic part of upstream's pipeline (``Rescale(250)`` before ``RandomCrop(224)``) done once,
    not every epoch. OpenCV releases the GIL while decoding and resizing, so a thread pool scales across
    cores: the 3462 training images take a few seconds.

    Parameters
    ----------
    dataset : FacialKeypointsDataset (its ``transform`` is not used)
    size : int, the crop size ``S`` the network will see
    indices : optional subset of the dataset (in that order)
    workers : threads, default ``min(8, os.cpu_count())``
    """
    if size <= 0:
        raise ValueError(f"prepare_faces: size must be positive, got {size}")
    chosen = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    rescale = Rescale(rescale_size(size))

    def load(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
        image = read_image(dataset.image_paths[i])
        sample = rescale({"image": image, "keypoints": dataset.keypoints[i]})
        return sample["image"], sample["keypoints"], np.linalg.inv(sample["affine"])[:2], image.shape

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(load, chosen))
    n = len(results)
    return Faces(
        images=[r[0] for r in results],
        keypoints=np.stack([r[1] for r in results]).astype(np.float32)
        if n
        else np.zeros((0, NUM_KEYPOINTS, 2), np.float32),
        names=[dataset.names[i] for i in chosen],
        original_sizes=np.array([r[3] for r in results], dtype=np.int64).reshape(n, 2),
        size=int(size),
        to_original=np.stack([r[2] for r in results]) if n else np.zeros((0, 2, 3)),
    )
