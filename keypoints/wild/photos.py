"""The inputs and outputs of the photo commands (``predict``, ``filter``, ``align``, ``show-maps``): which files,
read how, written where, and the faces found reported in the photo's own pixels.

Photos are read by ``keypoints.image.decode_image_file`` (``IMREAD_COLOR``): 8-bit BGR, gray and 16-bit
images converted, alpha dropped, and the EXIF orientation applied, so points refer to the picture as a
viewer shows it. Photos over ``--max-pixels`` (read from the header) are decoded at 1/2, 1/4 or 1/8 size
when they are JPEGs that fit then, and refused otherwise, as truncated ones are.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2

from .faces import FaceKeypoints
from ..files import check_image_output, refuse_input_as_output
from ..image import DEFAULT_MAX_PIXELS, DecodedImage, ImageError, decode_image_file

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm", ".ppm", ".pbm")


class InputError(ValueError):
    """One input of a batch cannot be used (the batch goes on): ``str`` is ``"<path>: <reason>"``."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def read_photo(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """A photo as ``(image, factor, photo_shape)``: ``(H, W, 3)`` uint8 BGR (EXIF orientation applied) at
    1/``factor`` of the photo's size (1 unless a JPEG over ``max_pixels`` was decoded reduced) and the
    photo's full ``(height, width)``; or ``InputError`` saying why not (missing, unreadable, empty,
    truncated, over ``max_pixels`` and not reducible, not an image)."""
    try:
        return decode_image_file(path, cv2.IMREAD_COLOR, max_pixels)
    except ImageError as exc:
        raise InputError(path, exc.reason) from exc


def in_photo_pixels(face: FaceKeypoints, factor: int) -> FaceKeypoints:
    """A face found in a photo decoded at 1/``factor`` size -> the same face in the photo's pixels.

    Pixel ``x`` of the reduced image covers the photo's pixels ``factor * x .. factor * x + factor - 1``:
    a point (a pixel centre) maps to the centre of that block, ``factor * x + (factor - 1) / 2``; a box's
    edges (its corner and size count whole pixels) scale by ``factor``.
    """
    if factor == 1:
        return face
    return face._replace(box=face.box * factor, points=face.points * factor + (factor - 1) / 2.0)


def expand_inputs(paths: list[str]) -> tuple[list[Path], bool]:
    """Files to process and whether there are several (a folder always counts as several).

    A folder contributes its image files (by extension, sorted, not recursive); a file named on the
    command line is always tried, whatever its extension, so a non-image gets a clear message.
    """
    files: list[Path] = []
    several = len(paths) > 1
    for name in paths:
        path = Path(name)
        if path.is_dir():
            several = True
            files.extend(sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS))
        else:
            files.append(path)
    return files, several


def output_paths(files: list[Path], several: bool, out: str | None, suffix: str) -> list[Path | None]:
    """Where each input's picture goes: ``-o`` itself for one input, ``-o/<stem><suffix>.png`` for several
    (a counter keeps equal stems from different folders apart). No output may be one of the inputs."""
    if out is None:
        return [None] * len(files)
    target = Path(out)
    if not several and not target.is_dir() and not str(out).endswith(("/", os.sep)):  # "DIR/" is a folder
        refuse_input_as_output(target, files)
        return [check_image_output(target)]
    if target.exists() and not target.is_dir():
        raise InputError(f"-o {target}", "with several inputs -o must be a folder, and this is a file")
    target.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    paths = []
    for file in files:
        name, k = f"{file.stem}{suffix}.png", 1
        while name in used:
            k += 1
            name = f"{file.stem}{suffix}-{k}.png"
        used.add(name)
        paths.append(target / name)
        refuse_input_as_output(paths[-1], files)
    return paths
