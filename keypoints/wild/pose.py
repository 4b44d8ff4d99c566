"""Head pose (yaw, pitch, roll in degrees) from the 68 keypoints of a face, and its axes drawn on a photo.

The pose is the rotation that, with a pinhole camera guessed from the photo's size, best projects a
generic 3D face onto a few stable keypoints (eye corners, nose tip, mouth corners, chin):
``cv2.solvePnP`` (SQPnP, a globally optimal solver, then Levenberg-Marquardt refinement).

Axes and angles
---------------
Camera axes as in OpenCV: x to the right of the picture, y down, z away from the viewer. The reference
face (:data:`FACE_3D`) looks at the camera (towards -z) with its nose tip at the origin. Its rotation is

    R = Rz(roll) @ Ry(-yaw) @ Rx(-pitch)

so that, in the picture,

- **yaw** > 0: the face turns towards the right of the picture (the person's left);
- **pitch** > 0: the face looks up;
- **roll** > 0: the face tilts clockwise (its right eye, on the left of the picture, goes up).

A mirrored photo gives the opposite yaw and roll and the same pitch. The angles are relative to the
camera's axes, not to the line of sight: a face that looks straight at the camera from the left edge of
a wide photo has turned towards the picture's right, and its yaw says so (about ``atan(offset / focal)``).

The camera: focal length ``max(H, W)`` pixels (a field of view of about 53 degrees along the longer
side, a phone's), principal point at the picture's centre ``((W - 1) / 2, (H - 1) / 2)`` (pixel centres
are integers), no lens distortion. The angles depend little on the focal length for a face far from the
edges; the distance (``translation``) depends on it and on the generic face's size, so it is a guess.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np

# iBUG 68-point indices of the stable points and their positions on a generic head, in millimetres, in
# the camera axes above (x right, y down, z away from the viewer), nose tip at the origin. From the
# widely used generic model of the OpenCV head-pose tutorials (the outer points), with the inner eye
# corners added at anthropometric averages (intercanthal width ~32 mm, biocular width ~90 mm).
POSE_POINTS = np.array([30, 8, 36, 39, 42, 45, 48, 54], dtype=np.intp)
FACE_3D = np.array(
    [
        [0.0, 0.0, 0.0],  # 30 nose tip
        [0.0, 66.0, 13.0],  # 8 chin
        [-45.0, -34.0, 27.0],  # 36 outer corner of the right eye (left in the picture)
        [-16.0, -33.0, 23.0],  # 39 inner corner of the right eye
        [16.0, -33.0, 23.0],  # 42 inner corner of the left eye
        [45.0, -34.0, 27.0],  # 45 outer corner of the left eye
        [-30.0, 30.0, 25.0],  # 48 right mouth corner
        [30.0, 30.0, 25.0],  # 54 left mouth corner
    ]
)

#: a fit whose mean reprojection error exceeds this fraction of the eye-corner distance is not a
#: head pose: the points are not the projection of any face-like shape (scrambled or collapsed points)
MAX_REPROJECTION_ERROR = 0.25
#: the stable points must span at least this many pixels in both directions for a meaningful fit
MIN_SPAN = 4.0


class PoseError(ValueError):
    """The keypoints give no head pose (non-finite, collapsed, or no rotation explains them)."""


class HeadPose(NamedTuple):
    """One face's head pose.

    yaw, pitch, roll : float, degrees (see the module docstring for the signs)
    rotation : (3, 3) float64, ``R`` mapping the reference face into camera axes
    translation : (3,) float64, the nose tip in camera axes (millimetres, a guess: see the module)
    reprojection_error : float, mean distance between the projected reference and the keypoints, as a
        fraction of the outer eye corners' distance
    """

    yaw: float
    pitch: float
    roll: float
    rotation: np.ndarray
    translation: np.ndarray
    reprojection_error: float


def camera_matrix(height: int, width: int) -> np.ndarray:
    """``(3, 3)`` pinhole camera of a ``height x width`` photo: focal ``max(H, W)``, centred."""
    if height <= 0 or width <= 0:
        raise ValueError(f"camera_matrix: expected a positive photo size, got {height}x{width}")
    focal = float(max(height, width))
    return np.array([[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def rotation_from_angles(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``R = Rz(roll) @ Ry(-yaw) @ Rx(-pitch)`` (degrees in, ``(3, 3)`` out): the inverse of
    :func:`angles_from_rotation`."""
    a, b, c = np.radians([-pitch, -yaw, roll])
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def angles_from_rotation(rotation: np.ndarray) -> tuple[float, float, float]:
    """``(yaw, pitch, roll)`` in degrees of a rotation ``Rz(roll) @ Ry(-yaw) @ Rx(-pitch)``.

    With ``R = Rz(c) Ry(b) Rx(a)``: ``R[2, 0] = -sin b``, ``R[2, 1] / R[2, 2] = tan a`` and
    ``R[1, 0] / R[0, 0] = tan c`` (for ``|b| < 90``, always true of a face the camera sees).
    """
    r = np.asarray(rotation, dtype=np.float64)
    b = math.asin(max(-1.0, min(1.0, -r[2, 0])))
    a = math.atan2(r[2, 1], r[2, 2])
    c = math.atan2(r[1, 0], r[0, 0])
    return -math.degrees(b), -math.degrees(a), math.degrees(c)


def _check_points(points) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim == 2 and points.shape[1] == 2 and len(points) != 68:  # a model of another point layout
        raise PoseError(f"head_pose: needs the 68 iBUG keypoints, shape (68, 2); the model gives {len(points)} points")
    if points.shape != (68, 2):
        raise ValueError(f"head_pose: expected 68 keypoints of shape (68, 2), got shape {points.shape}")
    return points


def head_pose(points, image_shape) -> HeadPose:
    """Yaw, pitch and roll of a face from its 68 keypoints in photo pixels.

    Parameters
    ----------
    points : (68, 2) float, ``(x, y)`` in the photo's pixels (iBUG order)
    image_shape : ``(H, W)`` or ``(H, W, C)`` of the photo: sets the camera (:func:`camera_matrix`)

    Returns
    -------
    HeadPose

    Raises
    ------
    PoseError
        Non-finite points, stable points spanning less than :data:`MIN_SPAN` pixels, no solution, a
        face behind the camera, or a reprojection error above :data:`MAX_REPROJECTION_ERROR`.
    """
    points = _check_points(points)
    if len(image_shape) < 2:
        raise ValueError(f"head_pose: expected a photo shape (H, W[, C]), got {tuple(image_shape)}")
    image_points = points[POSE_POINTS]  # (8, 2)
    if not np.isfinite(image_points).all():
        raise PoseError("head pose: the keypoints are not finite")
    span = np.ptp(image_points, axis=0)
    if span.min() < MIN_SPAN:
        raise PoseError(f"head pose: the eye, nose, mouth and chin points span only {span.min():.1f} pixels")
    camera = camera_matrix(int(image_shape[0]), int(image_shape[1]))
    no_distortion = np.zeros(4)
    ok, rvec, tvec = cv2.solvePnP(FACE_3D, image_points, camera, no_distortion, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        raise PoseError("head pose: solvePnP found no pose for these keypoints")
    rvec, tvec = cv2.solvePnPRefineLM(FACE_3D, image_points, camera, no_distortion, rvec, tvec)
    tvec = tvec.reshape(3)
    if not np.isfinite(tvec).all() or tvec[2] <= 0:
        raise PoseError("head pose: the best fit puts the face behind the camera")
    projected, _ = cv2.projectPoints(FACE_3D, rvec, tvec, camera, no_distortion)
    eye_distance = float(np.linalg.norm(points[45] - points[36]))
    error = float(np.linalg.norm(projected.reshape(-1, 2) - image_points, axis=1).mean())
    relative = error / max(eye_distance, 1e-9)
    if relative > MAX_REPROJECTION_ERROR:
        raise PoseError(
            f"head pose: no rotation of a face explains these keypoints (mean reprojection error"
            f" {relative:.2f} of the eye distance, more than {MAX_REPROJECTION_ERROR})"
        )
    rotation, _ = cv2.Rodrigues(rvec)
    yaw, pitch, roll = angles_from_rotation(rotation)
    return HeadPose(yaw, pitch, roll, rotation, tvec, relative)


def project_face(pose_rotation: np.ndarray, translation: np.ndarray, image_shape) -> np.ndarray:
    """The 68-point array whose stable points (:data:`POSE_POINTS`) are :data:`FACE_3D` seen with this
    rotation and translation (``(68, 2)``; the other points are NaN). What a round-trip test feeds
    :func:`head_pose`."""
    camera = camera_matrix(int(image_shape[0]), int(image_shape[1]))
    rvec, _ = cv2.Rodrigues(np.asarray(pose_rotation, dtype=np.float64))
    projected, _ = cv2.projectPoints(FACE_3D, rvec, np.asarray(translation, np.float64), camera, np.zeros(4))
    points = np.full((68, 2), np.nan)
    points[POSE_POINTS] = projected.reshape(-1, 2)
    return points


def draw_pose(image: np.ndarray, pose: HeadPose, length: float = 70.0, thickness: int | None = None) -> np.ndarray:
    """Draw the head's axes from the nose tip on a BGR uint8 copy of ``image``.

    Red: the head's x axis (towards the person's left ear as seen, the picture's right when frontal),
    green: up (towards the forehead), blue: forward (out of the face, towards the viewer when frontal),
    each outlined in black.
    ``length`` is in millimetres of the reference head (the eyes are 90 mm apart, the chin 100 mm below them).
    """
    from ..image import to_bgr_uint8

    out = to_bgr_uint8(image)
    camera = camera_matrix(out.shape[0], out.shape[1])
    axes = np.array([[0.0, 0, 0], [length, 0, 0], [0, -length, 0], [0, 0, -length]])  # origin, right, up, forward
    rvec, _ = cv2.Rodrigues(pose.rotation)
    ends, _ = cv2.projectPoints(axes, rvec, pose.translation, camera, np.zeros(4))
    ends = np.rint(ends.reshape(-1, 2) * 16).astype(np.int32)  # 1/16 pixel precision (shift=4)
    t = thickness if thickness is not None else max(2, int(round(max(out.shape[:2]) / 300)))
    origin = tuple(int(v) for v in ends[0])
    for end, colour in zip(ends[1:], ((0, 0, 255), (0, 255, 0), (255, 0, 0))):
        end = tuple(int(v) for v in end)
        # a dark outline first: the axes stay visible over green keypoints and any background
        cv2.arrowedLine(out, origin, end, (0, 0, 0), t + 2, cv2.LINE_AA, 4, 0.15)
        cv2.arrowedLine(out, origin, end, colour, t, cv2.LINE_AA, 4, 0.15)
    return out
