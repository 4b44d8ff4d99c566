"""Images: the one file reader, the one pixel dtype conversion (each way), gray/BGR conversion, resizing.

Every image keypoints reads from a file (training faces, photos for ``predict`` / ``filter`` /
``show-maps``, overlays) goes through :func:`read_image_file`, which refuses, with a message naming the
file, before OpenCV decodes anything large:

- a missing, unreadable or empty file;
- an image with more than ``max_pixels`` pixels, read from the header (a 389 KB PNG can hold
  20000 x 20000 pixels, 1.2 GB decoded): a JPEG's or PNG's size is read here, another format's by Pillow,
  which reads only the header (``Image.open`` is lazy);
- a truncated JPEG or PNG (some libjpeg builds decode one with a warning and gray rows);
- a file OpenCV cannot decode, or whose format has no header its size can be read from (JPEG, PNG, BMP,
  TIFF, WebP, JPEG 2000 and the PNM family all have one).

:func:`decode_image_file` may instead decode a JPEG over the limit at 1/2, 1/4 or 1/8 of its size
(libjpeg scales while decoding, so the full-size pixels never exist) and says by which factor; the
photo commands use it and map the points back to the photo's pixels. Other formats cannot be decoded
reduced (OpenCV would decode them whole, then shrink them) and are refused.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

#: the default pixel limit (50 megapixels: a large phone photo has 12-50); ``--max-pixels`` raises it
DEFAULT_MAX_PIXELS = 50_000_000


class ImageError(ValueError):
    """An image file that cannot be used: ``str`` is ``"<path>: <reason>"``, ``.reason`` the reason alone."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


class ImageHeader(NamedTuple):
    pixels: int
    size: str  # "WxH", or "a N-pixel image" when only the count is known
    width: int | None  # None past Pillow's own limit, whose error gives the pixel count only
    height: int | None


class DecodedImage(NamedTuple):
    image: np.ndarray  # as cv2.imdecode returns it
    factor: int  # 1, or 2, 4, 8: the image is the file's at 1/factor of its width and height (rounded up)
    photo_shape: tuple[int, int]  # (height, width) of the full-size image, oriented as ``image``


#: OpenCV's flags for a JPEG decoded at 1/factor size, for IMREAD_COLOR and IMREAD_GRAYSCALE
REDUCED_FLAGS = {
    cv2.IMREAD_COLOR: {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8},
    cv2.IMREAD_GRAYSCALE: {2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
                           8: cv2.IMREAD_REDUCED_GRAYSCALE_8},
}


def header_pixels(data: bytes) -> ImageHeader | None:
    """``(pixels, "WxH", width, height)`` from the image header, or None if the format is not known.

    JPEG and PNG (nearly every photo) are read here, a few bytes each; other formats by Pillow, which reads
    only the header too but costs 35-50 ms to import and set up in a fresh process (5 % of a one-photo
    ``python -m keypoints predict``)."""
    size = jpeg_size(data) if data[:2] == b"\xff\xd8" else png_size(data) if data[:8] == PNG_SIGNATURE else None
    if size is not None:
        width, height = size
        return ImageHeader(width * height, f"{width}x{height}", width, height)
    return _pillow_header_pixels(data)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: the JPEG markers that start a frame and give its size (SOF0-SOF15 less DHT C4, JPG C8, DAC CC)
JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: markers without a length field: TEM, RST0-7, SOI
JPEG_STANDALONE_MARKERS = frozenset([0x01, *range(0xD0, 0xD9)])


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a JPEG's frame header, or None if the segments before it do not parse.

    After the ``FF D8`` start, a JPEG is segments ``FF <marker> <2-byte length, itself included> <body>``
    (APPn with EXIF, quantisation and Huffman tables, ...) up to the frame header ``SOFn``, whose body is
    precision (1 byte), height and width (2 bytes each, big-endian). A scan or the end before any frame
    header is not a usable JPEG."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # a fill byte before the marker
            at += 1
            continue
        if marker in JPEG_STANDALONE_MARKERS:
            at += 2
            continue
        length = int.from_bytes(data[at + 2:at + 4], "big")
        if marker in JPEG_FRAME_MARKERS:
            if length < 8 or at + 9 > len(data):
                return None
            return int.from_bytes(data[at + 7:at + 9], "big"), int.from_bytes(data[at + 5:at + 7], "big")
        if length < 2 or marker in (0xD9, 0xDA):  # a broken length, or the end or a scan before the frame
            return None
        at += 2 + length
    return None


def png_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG's first chunk, which must be ``IHDR`` (width and height its first 8
    bytes, big-endian), or None."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _pillow_header_pixels(data: bytes) -> ImageHeader | None:
    """:func:`header_pixels` for the formats other than JPEG and PNG: Pillow's ``Image.open`` reads the header
    only (it is lazy)."""
    import re
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                return ImageHeader(width * height, f"{width}x{height}", width, height)
    except Image.DecompressionBombError as exc:  # over Pillow's own limit: its message gives the pixel count
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = int(found.group(1)) if found else 2 * (Image.MAX_IMAGE_PIXELS or 0) + 1
        return ImageHeader(pixels, f"a {pixels}-pixel image", None, None)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def reduction(data: bytes, header: ImageHeader, flags: int, max_pixels: int) -> int | None:
    """The smallest factor, 2, 4 or 8, that brings a JPEG within ``max_pixels`` when libjpeg decodes it
    reduced (``ceil(W / f) x ceil(H / f)`` pixels), or None: not a JPEG, a ``flags`` without a reduced
    variant, a size unknown, or too large even at 1/8."""
    if data[:2] != b"\xff\xd8" or flags not in REDUCED_FLAGS or header.width is None:
        return None
    for factor in (2, 4, 8):
        if -(-header.width // factor) * -(-header.height // factor) <= max_pixels:
            return factor
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
    elif data[:8] == PNG_SIGNATURE:
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
    return decode_image_file(path, flags, max_pixels, reduce=False).image


def decode_image_file(path: str | os.PathLike, flags: int = cv2.IMREAD_COLOR,
                      max_pixels: int = DEFAULT_MAX_PIXELS, reduce: bool = True) -> DecodedImage:
    """:func:`read_image_file`, except that with ``reduce`` a JPEG over ``max_pixels`` read with
    ``IMREAD_COLOR`` or ``IMREAD_GRAYSCALE`` is decoded at 1/2, 1/4 or 1/8 size when that fits.

    ``factor`` says which: pixel ``(x, y)`` of the image covers the file's pixels ``f*x .. f*x + f - 1``
    (likewise y), so a point maps back as ``f * x + (f - 1) / 2`` and a box edge as ``f * x``.
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
    factor = 1
    if header.pixels > max_pixels:
        factor = reduction(data, header, flags, max_pixels) if reduce else None
        if factor is None:
            raise ImageError(
                path, f"{header.size} is {header.pixels / 1e6:.1f} megapixels, more than the limit of"
                      f" {max_pixels / 1e6:g} (raise it with --max-pixels if the image is genuine)"
            )
    if header.pixels == 0:
        raise ImageError(path, f"the image is empty ({header.size})")
    check_complete(data, path)
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), REDUCED_FLAGS[flags][factor] if factor > 1 else flags)
    except cv2.error as exc:
        raise ImageError(path, f"OpenCV cannot decode the image ({str(exc).strip().splitlines()[-1]})") from exc
    if image is None or image.size == 0:
        raise ImageError(path, "not an image OpenCV can decode (corrupt or unsupported format)")
    if factor == 1:
        return DecodedImage(image, 1, image.shape[:2])
    # the header's size, turned as the image was if the EXIF orientation rotated it by 90 degrees
    upright = (-(-header.height // factor), -(-header.width // factor)) == image.shape[:2]
    return DecodedImage(image, factor, (header.height, header.width) if upright else (header.width, header.height))


# ----------------------------------------------------------------------------------------------------
# Pixel values: the one dtype conversion, in each direction
# ----------------------------------------------------------------------------------------------------

#: the dtypes an image may have: uint8 (0..255), uint16 (0..65535), float in [0, 1]
IMAGE_DTYPES = (np.uint8, np.uint16, np.float32, np.float64)


def check_image(where: str, image) -> np.ndarray:
    """``image`` if it is a non-empty ``(H, W)`` or ``(H, W, 1|2|3|4)`` array, else TypeError/ValueError."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{where}: expected a numpy.ndarray image, got {type(image).__name__}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(f"{where}: expected an image of shape (H, W) or (H, W, 1|2|3|4), got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{where}: the image is empty (shape {image.shape})")
    return image


def _unsupported(where: str, image: np.ndarray) -> ValueError:
    return ValueError(f"{where}: unsupported image dtype {image.dtype} (expected uint8, uint16 or float)")


def to_float32(image: np.ndarray, where: str = "to_float32") -> np.ndarray:
    """Pixel values -> float32 in ``[0, 1]``, any shape: uint8 divided by 255, uint16 by 65535, float
    taken to be in ``[0, 1]`` already (float32 is not copied)."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) * np.float32(1.0 / 255.0)
    if image.dtype == np.uint16:
        return image.astype(np.float32) * np.float32(1.0 / 65535.0)
    if image.dtype in (np.float32, np.float64):
        return image.astype(np.float32, copy=False)
    raise _unsupported(where, image)


def to_uint8(image: np.ndarray, where: str = "to_uint8") -> np.ndarray:
    """Pixel values -> uint8, any shape: uint16 ``(v + 128) // 257`` (rounded), float in ``[0, 1]``
    ``round(255 v)`` (clipped); uint8 is returned as is (not copied)."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if image.dtype in (np.float32, np.float64):
        return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    raise _unsupported(where, image)


def to_gray_float32(image: np.ndarray) -> np.ndarray:
    """Any image ``cv2.imread`` returns -> float32 grayscale ``(H, W)`` in ``[0, 1]``.

    Pixel values by :func:`to_float32`. Channels follow OpenCV's order: ``(H, W, 3)`` is BGR and
    ``(H, W, 4)`` BGRA (alpha dropped), converted with ``cv2.cvtColor`` (``Y = 0.299 R + 0.587 G + 0.114 B``)
    *after* the division, so no precision is lost to an intermediate uint8 gray image. ``(H, W, 1)`` and
    ``(H, W, 2)`` (gray + alpha) keep channel 0.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"to_gray_float32: expected a numpy.ndarray image, got {type(image).__name__}")
    out = to_float32(image, "to_gray_float32")
    if out.ndim == 2:
        return out
    if out.ndim != 3 or out.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"to_gray_float32: expected an image of shape (H, W) or (H, W, 1|2|3|4), got {image.shape}")
    channels = out.shape[2]
    if channels <= 2:
        return np.ascontiguousarray(out[:, :, 0])
    code = cv2.COLOR_BGR2GRAY if channels == 3 else cv2.COLOR_BGRA2GRAY
    return cv2.cvtColor(out, code)


def gray_uint8(image: np.ndarray) -> np.ndarray:
    """Any image (gray/BGR/BGRA; uint8, uint16 or float in [0, 1]) -> ``(H, W)`` uint8 gray, what the
    Haar cascade reads. uint8 BGR goes straight through ``cv2.cvtColor``; other inputs through
    :func:`to_gray_float32`, then ``round(255 g)``."""
    image = check_image("gray_uint8", image)
    if image.dtype == np.uint8:
        if image.ndim == 2:
            return image
        channels = image.shape[2]
        if channels <= 2:
            return np.ascontiguousarray(image[:, :, 0])
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if channels == 3 else cv2.COLOR_BGRA2GRAY)
    return to_uint8(to_gray_float32(image))


def to_bgr_uint8(image: np.ndarray) -> np.ndarray:
    """Any image -> a fresh ``(H, W, 3)`` uint8 BGR copy for drawing (gray is repeated, alpha dropped,
    pixel values by :func:`to_uint8`)."""
    out = to_uint8(check_image("to_bgr_uint8", image), "to_bgr_uint8")
    if out.ndim == 2:
        return cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)
    channels = out.shape[2]
    if channels <= 2:
        return cv2.cvtColor(np.ascontiguousarray(out[:, :, 0]), cv2.COLOR_GRAY2BGR)
    if channels == 4:
        return cv2.cvtColor(out, cv2.COLOR_BGRA2BGR)
    return out.copy()


def resize_image(image: np.ndarray, new_height: int, new_width: int) -> np.ndarray:
    """``cv2.resize`` with ``INTER_AREA`` when shrinking (a box filter: no aliasing) and ``INTER_LINEAR``
    when enlarging (or when one side grows and the other shrinks)."""
    height, width = image.shape[:2]
    shrinking = new_height <= height and new_width <= width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (new_width, new_height), interpolation=interpolation)
