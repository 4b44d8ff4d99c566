"""The one image file reader: size limit from the header, truncation check, then OpenCV decodes.

Every image keypoints reads from a file (training faces, photos for ``predict`` / ``filter`` /
``show-maps``, overlays) goes through :func:`read_image_file`, which refuses, with a message naming the
file, before OpenCV decodes anything large:

- a missing, unreadable or empty file;
- an image with more than ``max_pixels`` pixels, read from the header (a 389 KB PNG can hold
  20000 x 20000 pixels, 1.2 GB decoded): Pillow reads only the header (``Image.open`` is lazy);
- a truncated JPEG or PNG (some libjpeg builds decode one with a warning and gray rows);
- a file OpenCV cannot decode, or whose format has no header Pillow can read the size from (JPEG, PNG,
  BMP, TIFF, WebP, JPEG 2000 and the PNM family all have one).
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np

#: the default pixel limit (50 megapixels: a large phone photo has 12-50); ``--max-pixels`` raises it
DEFAULT_MAX_PIXELS = 50_000_000


class ImageError(ValueError):
    """An image file that cannot be used: ``str`` is ``"<path>: <reason>"``, ``.reason`` the reason alone."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def header_pixels(data: bytes) -> tuple[int, str] | None:
    """``(pixels, "WxH")`` from the image header (Pillow reads the header only), or None if Pillow does
    not know the format."""
    import re
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                return width * height, f"{width}x{height}"
    except Image.DecompressionBombError as exc:  # over Pillow's own limit: its message gives the pixel count
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = int(found.group(1)) if found else 2 * (Image.MAX_IMAGE_PIXELS or 0) + 1
        return pixels, f"a {pixels}-pixel image"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def check_complete(data: bytes, path) -> None:
    """Refuse a JPEG or PNG whose end is missing (:class:`ImageError`).

    A complete JPEG has an end-of-image marker ``FF D9`` after its last start-of-scan marker ``FF DA``
    (inside the entropy-coded data a ``FF`` byte is always followed by ``00`` or a restart marker
    ``D0-D7``, so neither can appear by accident). Checking after the last scan, rather than the last two
    bytes, accepts files with trailing bytes after the image and catches a truncated file whose embedded
    EXIF thumbnail has its own ``FF D9``. A complete PNG ends with its ``IEND`` chunk.
    """
    if data[:2] == b"\xff\xd8":
        last_scan = data.rfind(b"\xff\xda")
        if last_scan < 0 or data.rfind(b"\xff\xd9") < last_scan:
            raise ImageError(path, "truncated JPEG (no end-of-image marker after the last scan)")
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        if b"IEND" not in data[-16:]:
            raise ImageError(path, "truncated PNG (no IEND chunk at the end)")


def check_max_pixels(max_pixels: int) -> int:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    return int(max_pixels)


def read_image_file(path: str | os.PathLike, flags: int = cv2.IMREAD_COLOR,
                    max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image file with ``cv2.imdecode(..., flags)`` after the checks above.

    ``flags``: ``cv2.IMREAD_COLOR`` (8-bit BGR, EXIF orientation applied: what a viewer shows) or
    ``cv2.IMREAD_UNCHANGED`` (the stored pixels, any depth and channels). Raises :class:`ImageError`.
    """
    max_pixels = check_max_pixels(max_pixels)
    path = Path(path)
    if not path.exists():
        raise ImageError(path, "no such file")
    if not path.is_file():
        raise ImageError(path, "not a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(path, f"cannot read the file ({exc.strerror or exc})") from exc
    if not data:
        raise ImageError(path, "empty file")
    header = header_pixels(data)
    if header is None:
        # a format without a size Pillow can read is refused like an undecodable one: decoding it blind is
        # what an image bomb needs (every format keypoints lists, JPEG to WebP, has a readable header)
        raise ImageError(path, "not an image OpenCV can decode")
    pixels, size = header
    if pixels > max_pixels:
        raise ImageError(
            path, f"{size} is {pixels / 1e6:.1f} megapixels, more than the limit of {max_pixels / 1e6:g}"
                  " (raise it with --max-pixels if the image is genuine)"
        )
    if pixels == 0:
        raise ImageError(path, f"the image is empty ({size})")
    check_complete(data, path)
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as exc:
        raise ImageError(path, f"OpenCV cannot decode the image ({str(exc).strip().splitlines()[-1]})") from exc
    if image is None or image.size == 0:
        raise ImageError(path, "not an image OpenCV can decode (corrupt or unsupported format)")
    return image
