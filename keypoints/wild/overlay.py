"""Face filters: sunglasses placed from the predicted keypoints and alpha-blended onto the photo.

The overlay is any BGRA picture (OpenCV's channel order, straight, i.e. not premultiplied, alpha) that
spans a face's width from temple to temple with the eyes on its middle row, such as the one
:func:`make_sunglasses` draws in code. :func:`sunglasses_affine` places it from the 68 iBUG points:

- **width**: the distance between the temples, points 0 and 16 (where the jaw contour meets the ear
  line, level with the eyes), or, with ``width_from="brows"``, 1.2 times the distance between the outer
  brow ends 17 and 26 (for crops where the jaw contour is unreliable);
- **angle**: the eye line, from the right eye's centre (points 36-41, on the left of the picture) to the
  left eye's (42-47), so the glasses tilt with the head;
- **position**: the overlay's centre goes to the midpoint of the two eye centres.

:func:`alpha_blend` warps the overlay with that affine (premultiplied colour, bilinear) and composites
it "over" the photo. Pixels the warped overlay does not touch (alpha exactly 0) are returned bit for
bit unchanged.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import cv2
import numpy as np

from ..image import IMAGE_DTYPES, read_image_file, to_uint8

RIGHT_EYE = slice(36, 42)  # the person's right eye: on the left of the picture
LEFT_EYE = slice(42, 48)
RIGHT_TEMPLE, LEFT_TEMPLE = 0, 16
RIGHT_BROW_END, LEFT_BROW_END = 17, 26
BROW_WIDTH_FACTOR = 1.2  # temple-to-temple width / outer brow ends distance, on the iBUG mean face

# Where a picture without alpha becomes transparent: pixels whose darkest channel is at least
# WHITE_OPAQUE_BELOW fade linearly to fully transparent at pure white (255), so clip-art glasses on a
# white background blend without a white box around them, and anti-aliased edges fade rather than halo.
WHITE_OPAQUE_BELOW = 230


# ----------------------------------------------------------------------------------------------------
# The overlay picture
# ----------------------------------------------------------------------------------------------------


def _superellipse(cx: float, cy: float, a: float, b: float, n: float, taper: float, count: int = 180) -> np.ndarray:
    """Closed outline ``|x/a|^n + |y/b|^n = 1`` (a rounded rectangle for n ~ 3) whose lower half narrows by
    ``taper`` at the bottom, as the lenses of classic sunglasses do."""
    t = np.linspace(0.0, 2.0 * np.pi, count, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    x = a * np.sign(c) * np.abs(c) ** (2.0 / n)
    y = b * np.sign(s) * np.abs(s) ** (2.0 / n)
    x = x * (1.0 - taper * np.clip(y / b, 0.0, 1.0))  # y grows downwards: narrower towards the cheeks
    return np.stack([cx + x, cy + y], axis=1)


def make_sunglasses(width: int = 512) -> np.ndarray:
    """Draw a pair of sunglasses in code: ``(round(0.36 width), width, 4)`` uint8 BGRA.

    Two dark, slightly see-through lenses (alpha 0.93) with a vertical gradient and a soft diagonal
    highlight, a black rim with a heavier top bar, a bridge, and the temple arms' hinges at both ends.
    The frame spans the full width (temple to temple) and the lens centres lie on the middle row, as
    :func:`sunglasses_affine` expects. Drawn 4x larger and shrunk with ``cv2.INTER_AREA`` (on
    premultiplied colour) for smooth, anti-aliased edges.

    Returns a fresh copy of a cached drawing.
    """
    return _draw_sunglasses(int(width)).copy()


@functools.lru_cache(maxsize=4)
def _draw_sunglasses(width: int) -> np.ndarray:
    """The drawing behind :func:`make_sunglasses`, cached (it takes ~0.5 s at the default width)."""
    if width < 32:
        raise ValueError(f"make_sunglasses: width must be at least 32 pixels, got {width}")
    ss = 4  # supersampling factor
    W = width * ss
    H = int(round(0.36 * width)) * ss
    cy = H / 2.0
    a, b = 0.19 * W, 0.135 * W  # lens half width and half height
    centres = (W / 2.0 - 0.235 * W, W / 2.0 + 0.235 * W)
    rim = max(2, int(round(0.016 * W)))
    fixed = 1 << 4  # shift=4 sub-pixel coordinates

    def poly(points: np.ndarray) -> np.ndarray:
        return np.rint(points * fixed).astype(np.int32)

    lens_mask = np.zeros((H, W), np.uint8)
    rim_mask = np.zeros((H, W), np.uint8)
    outlines = [_superellipse(cx, cy, a, b, n=3.0, taper=0.15) for cx in centres]
    for outline in outlines:
        cv2.fillPoly(lens_mask, [poly(outline)], 255, cv2.LINE_AA, 4)
        cv2.polylines(rim_mask, [poly(outline)], True, 255, rim, cv2.LINE_AA, 4)
        top = outline[outline[:, 1] < cy - 0.55 * b]  # the upper arc: a heavier brow bar
        top = top[np.argsort(top[:, 0])]
        cv2.polylines(rim_mask, [poly(top)], False, 255, int(rim * 2.2), cv2.LINE_AA, 4)
    # bridge: a shallow arc between the lenses' inner upper edges
    inner_left = centres[0] + a * 0.93
    inner_right = centres[1] - a * 0.93
    xs = np.linspace(inner_left, inner_right, 24)
    ys = cy - 0.45 * b - 0.12 * b * np.sin(np.linspace(0.0, np.pi, 24))
    cv2.polylines(rim_mask, [poly(np.stack([xs, ys], axis=1))], False, 255, int(rim * 1.6), cv2.LINE_AA, 4)
    # hinges and the start of the temple arms, from the lenses' outer upper corners to the canvas edges
    for cx, edge in ((centres[0], 0.0), (centres[1], W - 1.0)):
        side = -1.0 if edge == 0.0 else 1.0
        start = (cx + side * a * 0.9, cy - 0.6 * b)
        end = (edge, cy - 0.72 * b)
        cv2.line(rim_mask, tuple(int(v) for v in poly(np.array(start))), tuple(int(v) for v in poly(np.array(end))),
                 255, int(rim * 2.4), cv2.LINE_AA, 4)

    # lens colour: a vertical gradient, dark grey-blue at the top to a warmer brown at the bottom (BGR)
    rows = np.clip((np.arange(H, dtype=np.float32) - (cy - b)) / (2.0 * b), 0.0, 1.0)[:, None, None]
    top_color = np.array([38, 30, 26], np.float32)
    bottom_color = np.array([70, 78, 92], np.float32)
    lens_bgr = np.broadcast_to(top_color + rows * (bottom_color - top_color), (H, W, 3))
    # a soft diagonal highlight on the upper outer part of each lens
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    highlight = np.zeros((H, W), np.float32)
    for cx in centres:
        u = (xx - cx) / a + (yy - cy) / b  # distance along the diagonal
        fade = np.clip((cy + 0.2 * b - yy) / (0.6 * b), 0.0, 1.0)  # fades out towards the lens middle
        highlight = np.maximum(highlight, np.exp(-(((u + 0.75) / 0.22) ** 2)) * fade)
    highlight *= lens_mask / np.float32(255.0) * np.float32(0.35)

    # composite (premultiplied): lenses, then the highlight over them, then the rim over everything
    lens_alpha = lens_mask.astype(np.float32) / 255.0 * np.float32(0.93)
    premul = lens_bgr * lens_alpha[:, :, None]
    alpha = lens_alpha.copy()
    premul = highlight[:, :, None] * 255.0 + premul * (1.0 - highlight[:, :, None])
    alpha = highlight + alpha * (1.0 - highlight)
    rim_alpha = rim_mask.astype(np.float32) / 255.0
    rim_bgr = np.array([18, 18, 20], np.float32)
    premul = rim_bgr * rim_alpha[:, :, None] + premul * (1.0 - rim_alpha[:, :, None])
    alpha = rim_alpha + alpha * (1.0 - rim_alpha)

    small = cv2.resize(np.dstack([premul, alpha * 255.0]), (width, H // ss), interpolation=cv2.INTER_AREA)
    out_alpha = small[:, :, 3:4]
    color = np.where(out_alpha > 0, small[:, :, :3] * 255.0 / np.maximum(out_alpha, 1e-6), 0.0)
    return np.dstack([np.clip(color + 0.5, 0, 255), np.clip(out_alpha + 0.5, 0, 255)]).astype(np.uint8)


def as_bgra(picture: np.ndarray) -> np.ndarray:
    """Any picture ``cv2.imread(..., IMREAD_UNCHANGED)`` returns -> ``(h, w, 4)`` uint8 BGRA overlay.

    - BGRA: kept (uint16 scaled to 8 bits);
    - gray + alpha ``(h, w, 2)``: gray repeated, alpha kept;
    - **no alpha** (BGR or gray): near-white becomes transparent. Pixels whose darkest channel is below
      :data:`WHITE_OPAQUE_BELOW` are opaque, pure white is transparent, linear in between. A picture of
      glasses without alpha is almost always clip art on white; treating it as opaque would paste a
      white rectangle over the face.
    """
    if not isinstance(picture, np.ndarray) or picture.ndim not in (2, 3):
        got = getattr(picture, "shape", type(picture).__name__)
        raise ValueError(f"overlay: expected an image array (h, w) or (h, w, 1|2|3|4), got {got}")
    if picture.dtype not in IMAGE_DTYPES:
        raise ValueError(f"overlay: unsupported dtype {picture.dtype} (expected uint8, uint16 or float)")
    picture = to_uint8(picture)
    if picture.ndim == 2:
        picture = picture[:, :, None]
    channels = picture.shape[2]
    if channels == 4:
        return np.ascontiguousarray(picture)
    if channels == 2:
        return np.dstack([picture[:, :, 0]] * 3 + [picture[:, :, 1]])
    if channels == 1:
        picture = np.repeat(picture, 3, axis=2)
    elif channels != 3:
        raise ValueError(f"overlay: expected 1, 2, 3 or 4 channels, got {channels}")
    darkest = picture.min(axis=2).astype(np.float32)
    alpha = np.clip((255.0 - darkest) / (255.0 - WHITE_OPAQUE_BELOW), 0.0, 1.0) * 255.0
    return np.dstack([picture, np.rint(alpha).astype(np.uint8)])


def load_overlay(path: str | Path) -> np.ndarray:
    """Read an overlay picture (PNG with or without alpha, any format OpenCV reads) as BGRA uint8."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such overlay file")
    return as_bgra(read_image_file(path, cv2.IMREAD_UNCHANGED))  # ImageError (a ValueError) names the file


# ----------------------------------------------------------------------------------------------------
# Placement and blending
# ----------------------------------------------------------------------------------------------------


def _check_points(where: str, points) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"{where}: expected 68 keypoints of shape (68, 2), got {points.shape}")
    return points


def face_width(points, width_from: str = "temples") -> float:
    """Temple-to-temple width of a face from its keypoints (see the module docstring)."""
    points = _check_points("face_width", points)
    if width_from == "temples":
        return float(np.linalg.norm(points[LEFT_TEMPLE] - points[RIGHT_TEMPLE]))
    if width_from == "brows":
        return BROW_WIDTH_FACTOR * float(np.linalg.norm(points[LEFT_BROW_END] - points[RIGHT_BROW_END]))
    raise ValueError(f"face_width: width_from must be 'temples' or 'brows', got {width_from!r}")


def sunglasses_affine(points, overlay_shape, width_scale: float = 1.0, width_from: str = "temples") -> np.ndarray:
    """The ``(2, 3)`` affine taking overlay pixels to photo pixels for one face.

    ``M = T(eye midpoint) R(angle) S(s) T(-overlay centre)`` with ``s = width_scale * face_width / w``
    (the overlay's ``w`` pixels span the face width), ``angle`` the eye line's direction and the overlay
    centre ``((w - 1) / 2, (h - 1) / 2)`` in pixel-centre coordinates.
    """
    points = _check_points("sunglasses_affine", points)
    h, w = int(overlay_shape[0]), int(overlay_shape[1])
    right_eye, left_eye = points[RIGHT_EYE].mean(axis=0), points[LEFT_EYE].mean(axis=0)
    dx, dy = left_eye - right_eye
    angle = math.atan2(dy, dx)
    scale = width_scale * face_width(points, width_from) / w
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    mid = (right_eye + left_eye) / 2.0
    ox, oy = (w - 1) / 2.0, (h - 1) / 2.0
    return np.array([[c, -s, mid[0] - (c * ox - s * oy)], [s, c, mid[1] - (s * ox + c * oy)]])


def _affine3(affine) -> np.ndarray:
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape == (2, 3):
        return np.vstack([affine, [0.0, 0.0, 1.0]])
    if affine.shape == (3, 3):
        return affine
    raise ValueError(f"alpha_blend: expected an affine of shape (2, 3) or (3, 3), got {affine.shape}")


def alpha_blend(base: np.ndarray, overlay: np.ndarray, affine) -> np.ndarray:
    """Composite a BGRA overlay over a photo through an affine map; returns a new array.

    Parameters
    ----------
    base : (H, W, 3) or (H, W, 4) uint8
        The photo, BGR (or BGRA, whose alpha is composited too: ``a = a_o + a_b (1 - a_o)``).
    overlay : (h, w, 4) uint8
        BGRA with straight alpha.
    affine : (2, 3) or (3, 3)
        Overlay pixel coordinates -> base pixel coordinates (``cv2.warpAffine``'s forward matrix).

    The overlay is premultiplied, warped bilinearly (so its edges are anti-aliased against transparency,
    never against black), and composited ``out = c_o + base (1 - a_o)`` over the bounding box of the
    warped overlay only. Every pixel where the warped alpha is exactly 0 keeps its original value bit for
    bit; so does every pixel outside that bounding box.
    """
    if not isinstance(base, np.ndarray) or base.dtype != np.uint8 or base.ndim != 3 or base.shape[2] not in (3, 4):
        raise ValueError(f"alpha_blend: expected a uint8 BGR or BGRA base image (H, W, 3|4), got "
                         f"{getattr(base, 'dtype', type(base).__name__)} {getattr(base, 'shape', '')}")
    if not isinstance(overlay, np.ndarray) or overlay.dtype != np.uint8 or overlay.ndim != 3 or overlay.shape[2] != 4:
        raise ValueError(f"alpha_blend: expected a uint8 BGRA overlay (h, w, 4), got "
                         f"{getattr(overlay, 'dtype', type(overlay).__name__)} {getattr(overlay, 'shape', '')}")
    matrix = _affine3(affine)
    out = base.copy()
    height, width = base.shape[:2]
    h, w = overlay.shape[:2]
    corners = np.array([[-0.5, -0.5, 1.0], [w - 0.5, -0.5, 1.0], [-0.5, h - 0.5, 1.0], [w - 0.5, h - 0.5, 1.0]])
    mapped = corners @ matrix[:2].T  # (4, 2): where the overlay's outer edges land
    x0 = max(0, int(math.floor(mapped[:, 0].min())) - 1)
    y0 = max(0, int(math.floor(mapped[:, 1].min())) - 1)
    x1 = min(width, int(math.ceil(mapped[:, 0].max())) + 2)
    y1 = min(height, int(math.ceil(mapped[:, 1].max())) + 2)
    if x0 >= x1 or y0 >= y1 or not np.isfinite(mapped).all():
        return out
    alpha = overlay[:, :, 3:4].astype(np.float32) / np.float32(255.0)
    premul = np.dstack([overlay[:, :, :3].astype(np.float32) * alpha, alpha * np.float32(255.0)])
    # warp straight into the region of interest: shift the map by the region's corner
    roi_matrix = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]]) @ matrix
    warped = cv2.warpAffine(premul, roi_matrix[:2], (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    a = np.clip(warped[:, :, 3:4] / np.float32(255.0), 0.0, 1.0)  # (h', w', 1)
    region = out[y0:y1, x0:x1]
    color = warped[:, :, :3] + region[:, :, :3].astype(np.float32) * (1.0 - a)
    touched = a[:, :, 0] > 0
    blended = np.clip(color + 0.5, 0, 255).astype(np.uint8)
    region[:, :, :3] = np.where(touched[:, :, None], blended, region[:, :, :3])
    if base.shape[2] == 4:
        base_a = region[:, :, 3:4].astype(np.float32) / np.float32(255.0)
        new_a = np.clip((a + base_a * (1.0 - a)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        region[:, :, 3] = np.where(touched, new_a[:, :, 0], region[:, :, 3])
    return out


def add_sunglasses(
    image: np.ndarray,
    faces_points,
    overlay: np.ndarray | None = None,
    width_scale: float = 1.0,
    width_from: str = "temples",
) -> np.ndarray:
    """Sunglasses on every face: ``faces_points`` ``(F, 68, 2)`` (or a list of ``(68, 2)``) in the photo's
    pixels. ``image`` is BGR/BGRA uint8 (convert others with ``keypoints.image.to_bgr_uint8``);
    ``overlay`` BGRA (default :func:`make_sunglasses`). Returns a new image."""
    overlay = make_sunglasses() if overlay is None else as_bgra(overlay)
    out = image
    for points in faces_points:
        points = _check_points("add_sunglasses", points)
        if not np.isfinite(points).all():
            continue
        matrix = sunglasses_affine(points, overlay.shape, width_scale, width_from)
        scale = math.hypot(matrix[0, 0], matrix[1, 0])
        picture, placed = overlay, matrix
        if scale < 0.5:
            # shrink first with area averaging (bilinear warping alone would alias a large overlay drawn
            # small), then place the smaller picture: same centre, same width on the face
            h, w = overlay.shape[:2]
            new_w, new_h = max(2, int(round(w * scale))), max(2, int(round(h * scale)))
            alpha = overlay[:, :, 3:4].astype(np.float32) / 255.0
            premul = np.dstack([overlay[:, :, :3] * alpha, alpha * 255.0])
            small = cv2.resize(premul, (new_w, new_h), interpolation=cv2.INTER_AREA)
            a = small[:, :, 3:4]
            color = np.where(a > 0, small[:, :, :3] * 255.0 / np.maximum(a, 1e-6), 0.0)
            picture = np.dstack([np.clip(color + 0.5, 0, 255), np.clip(a + 0.5, 0, 255)]).astype(np.uint8)
            placed = sunglasses_affine(points, picture.shape, width_scale, width_from)
        out = alpha_blend(out, picture, placed)
    return out if out is not image else image.copy()
