"""The keypoint CSV files: ``image name, x0, y0, x1, y1, ..., x67, y67`` (pixels), one row per image.

:func:`read_keypoints_csv` is strict: a bad row raises :class:`DataError` naming the file, the 1-based
line and the image (or, with ``on_error="skip"``, is dropped with one warning giving the count).
"""
from __future__ import annotations

import csv
import math
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ..geometry import NUM_KEYPOINTS

SPLITS = ("training", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_NUM_COLUMNS = 1 + 2 * NUM_KEYPOINTS  # image name + (x, y) per point

#: a keypoint coordinate beyond this many pixels is refused when the CSV is read
MAX_COORDINATE = 1e6


class DataError(ValueError):
    """The data on disk is missing, unreadable or malformed; the message names the file (and row)."""



def csv_name(split: str) -> str:
    """``"training" -> "training_frames_keypoints.csv"``."""
    return f"{split}_frames_keypoints.csv"




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
    return not first.lower().endswith(IMAGE_EXTENSIONS) and _parse_floats(row[1:]) is None


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


def check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


def read_csv_rows(path: Path, on_error: str) -> tuple[list[str], np.ndarray, list[int], list[str]]:
    """``(names, keypoints (N, 68, 2), line numbers, error messages of skipped rows)``; no warning."""
    check_on_error(on_error)
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


def warn_skipped(path: Path, errors: list[str], kept: int) -> None:
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
    names, keypoints, _, errors = read_csv_rows(path, on_error)
    warn_skipped(path, errors, len(names))
    return names, keypoints

