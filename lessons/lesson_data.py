"""Face data for the lessons: the real data set when ``KEYPOINTS_DATA`` names it, else drawn faces.

The drawn faces are written in the real data set's layout (``training_frames_keypoints.csv``,
``training/*.jpg``, ``test_frames_keypoints.csv``, ``test/*.jpg``), so every lesson reads both through
the same ``keypoints.data.FacialKeypointsDataset``. They are cartoons: a head, brows, eyes, a nose and
lips drawn through 68 points placed like the iBUG landmarks, each face turned, scaled, shifted and given
its own expression, on a noisy background. A network learns them in a few epochs; real faces are harder.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from keypoints.data import holds_data

NUM_KEYPOINTS = 68


def template_face(mouth_open: float = 0.0, brow_raise: float = 0.0) -> np.ndarray:
    """68 (x, y) points of a frontal face in a unit square, in the iBUG order (jaw 0-16, brows 17-26,
    nose 27-35, eyes 36-47, lips 48-67)."""
    f = np.zeros((NUM_KEYPOINTS, 2))
    t = np.linspace(0.0, np.pi, 17)
    f[0:17] = np.stack([0.5 - 0.3 * np.cos(t), 0.42 + 0.36 * np.sin(t)], 1)  # jaw, temple to temple
    arch = 0.02 * np.sin(np.linspace(0, np.pi, 5))
    f[17:22] = np.stack([np.linspace(0.27, 0.44, 5), 0.34 - brow_raise - arch], 1)  # brows
    f[22:27] = np.stack([np.linspace(0.56, 0.73, 5), 0.34 - brow_raise - arch[::-1]], 1)
    f[27:31] = np.stack([np.full(4, 0.5), np.linspace(0.40, 0.55, 4)], 1)  # bridge, 30 = tip
    f[31:36] = np.stack([np.linspace(0.45, 0.55, 5), 0.58 + 0.01 * np.abs(np.linspace(-2, 2, 5))], 1)
    # each eye from its corner on the image's left, along the upper lid, back along the lower lid
    ring = np.linspace(np.pi, -np.pi, 6, endpoint=False)
    for first, cx in ((36, 0.37), (42, 0.63)):
        f[first : first + 6] = np.stack([cx + 0.06 * np.cos(ring), 0.43 - 0.025 * np.sin(ring)], 1)
    lips = np.linspace(np.pi, -np.pi, 12, endpoint=False)
    f[48:60] = np.stack([0.5 + 0.12 * np.cos(lips), 0.68 - (0.03 + mouth_open / 2) * np.sin(lips)], 1)
    inner = np.linspace(np.pi, -np.pi, 8, endpoint=False)
    f[60:68] = np.stack([0.5 + 0.08 * np.cos(inner), 0.68 - (0.005 + mouth_open / 2) * np.sin(inner)], 1)
    return f


def draw_face(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """One drawn face: ``(image (H, W, 3) uint8 BGR, points (68, 2) float32 in its pixels)``."""
    points = template_face(mouth_open=rng.uniform(0.0, 0.08), brow_raise=rng.uniform(-0.01, 0.03))
    side = min(height, width) * rng.uniform(0.75, 0.95)
    angle = np.deg2rad(rng.uniform(-12, 12))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = np.array([width, height]) / 2 + rng.uniform(-0.06, 0.06, 2) * min(height, width)
    points = (points - 0.5) @ rotation.T * side + centre

    # a background that is not flat: a gradient plus blurred noise
    ramp = np.linspace(rng.uniform(40, 120), rng.uniform(40, 120), width)[None, :]
    background = ramp + cv2.GaussianBlur(rng.normal(0, 25, (height, width)), (0, 0), 3)
    image = np.clip(background, 0, 255).astype(np.uint8)
    image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)

    def poly(indices, colour, closed=True, thickness=-1):
        p = np.round(points[indices] * 16).astype(np.int32)  # 4 fractional bits: sub-pixel drawing
        if thickness < 0:
            cv2.fillPoly(image, [p], colour, cv2.LINE_AA, shift=4)
        else:
            cv2.polylines(image, [p], closed, colour, thickness, cv2.LINE_AA, shift=4)

    skin = tuple(int(v) for v in rng.uniform(150, 220) * np.array([0.8, 0.9, 1.0]))
    forehead = points[[26, 24, 19, 17]] + [0, -0.18 * side]
    head = np.concatenate([points[0:17], forehead])
    cv2.fillPoly(image, [np.round(head * 16).astype(np.int32)], skin, cv2.LINE_AA, shift=4)
    dark = tuple(int(v) for v in rng.uniform(20, 70, 3))
    thick = max(1, int(side / 40))
    poly(list(range(17, 22)), dark, closed=False, thickness=thick)
    poly(list(range(22, 27)), dark, closed=False, thickness=thick)
    poly([27, 28, 29, 30, 33], (90, 100, 120), closed=False, thickness=max(1, thick // 2))
    poly(list(range(31, 36)), (90, 100, 120), closed=False, thickness=max(1, thick // 2))
    for first in (36, 42):
        poly(list(range(first, first + 6)), (250, 250, 250))
        iris = points[first : first + 6].mean(axis=0)
        cv2.circle(image, tuple(np.round(iris * 16).astype(int)), int(side / 28 * 16), dark, -1, cv2.LINE_AA, shift=4)
    poly(list(range(48, 60)), (70, 60, int(rng.uniform(120, 180))))
    poly(list(range(60, 68)), (40, 30, 50))
    return image, points.astype(np.float32)


def write_drawn_faces(root: Path, n_train: int = 320, n_test: int = 100, seed: int = 0) -> Path:
    """Write ``n_train`` + ``n_test`` drawn faces in the data set's layout under ``root``; returns ``root``."""
    rng = np.random.default_rng(seed)
    header = "," + ",".join(str(i) for i in range(2 * NUM_KEYPOINTS))  # the upstream CSVs' header
    for split, count in (("training", n_train), ("test", n_test)):
        (root / split).mkdir(parents=True, exist_ok=True)
        rows = [header]
        for i in range(count):
            height, width = int(rng.integers(120, 200)), int(rng.integers(120, 200))
            image, points = draw_face(rng, height, width)
            name = f"drawn_{i:04d}.jpg"
            cv2.imwrite(str(root / split / name), image)
            rows.append(name + "," + ",".join(f"{v:.1f}" for v in points.reshape(-1)))
        (root / f"{split}_frames_keypoints.csv").write_text("\n".join(rows) + "\n")
    return root


def face_data_folder(n_train: int = 320, n_test: int = 100, seed: int = 0) -> tuple[Path, bool]:
    """``(folder, real)``: the real data set named by ``KEYPOINTS_DATA``, else drawn faces (``real`` False).

    The drawn faces are written once into the system's temporary folder and reused by every lesson: into a
    fresh folder first, renamed into place when complete, so a run that stops halfway leaves nothing half-written.
    """
    named = os.environ.get("KEYPOINTS_DATA")
    if named and holds_data(named):
        return Path(named), True
    if named:
        print(f"KEYPOINTS_DATA={named} does not hold the facial-keypoints data: using drawn faces")
    folder = Path(tempfile.gettempdir()) / f"tinynet-lesson-faces-v1-{n_train}-{n_test}-{seed}"
    if not holds_data(folder):
        partial = Path(tempfile.mkdtemp(prefix=folder.name + "-partial-", dir=folder.parent))
        write_drawn_faces(partial, n_train, n_test, seed)
        try:
            partial.rename(folder)
        except OSError:  # another lesson finished the same faces first: keep those
            shutil.rmtree(partial, ignore_errors=True)
    return folder, False
