"""Measure how the training images frame a face relative to the Haar detector's box.

    python benchmarks/measure_framing.py [--data DIR] [-n 400] [--seed 0]

Prints the medians and quartiles that ``keypoints/wild/face_crop.py`` stores as ``FRAME_SCALE`` and
``FRAME_OFFSET``, then checks them: for the same images it compares where the 68 keypoints fall in
(a) the square the network reads from the training image (its centre ``min(H, W)`` square) and (b) the
square ``pad_box`` frames around the detected box, both as fractions of the square's side. If the
constants are right the two distributions agree (same mean, similar spread).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from keypoints.data import read_keypoints_csv
from keypoints.image import ImageError, read_image_file
from keypoints.wild.detection import detect_faces
from keypoints.wild.face_crop import FRAME_OFFSET, FRAME_SCALE, pad_box


class Framing(NamedTuple):
    """How the training images frame the Haar box (see :data:`FRAME_SCALE`)."""

    scale: float  # median of min(H, W) / w
    offset: tuple[float, float]  # median of (image centre - box centre) / w, (x, y)
    scale_iqr: tuple[float, float]  # quartiles of the scale
    offset_iqr: tuple[tuple[float, float], tuple[float, float]]  # quartiles of the x and y offsets
    used: int  # images with exactly one detected face
    sampled: int


def measure_framing(data_dir: str | os.PathLike, n: int = 400, seed: int = 0, split: str = "training") -> Framing:
    """Measure ``FRAME_SCALE`` and ``FRAME_OFFSET`` on the training images.

    Draws ``n`` images of ``data_dir/<split>`` at random (``seed``), runs ``detect_faces`` with the
    default settings on each, keeps those with exactly one face, and returns the medians (robust to the
    odd misfit box) of ``min(H, W) / w`` and of ``(image centre - box centre) / w``. The network reads the
    centre ``min(H, W)`` square of an image (rescale the shorter side, centre crop), so that square, not
    the whole image, is what a crop in the wild must reproduce.
    """
    folder = Path(data_dir) / split
    if not folder.is_dir():
        raise FileNotFoundError(f"measure_framing: no folder {folder} (expected the facial keypoints data set)")
    names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not names:
        raise FileNotFoundError(f"measure_framing: no images in {folder}")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(names), size=min(n, len(names)), replace=False)
    scales, offsets = [], []
    for i in chosen:
        try:
            image = read_image_file(folder / names[i], cv2.IMREAD_UNCHANGED)
        except ImageError:
            continue
        boxes = detect_faces(image)
        if len(boxes) != 1:
            continue
        x, y, w, h = (float(v) for v in boxes[0])
        height, width = image.shape[:2]
        size = max(w, h)
        scales.append(min(height, width) / size)
        offsets.append(((width / 2.0 - (x + w / 2.0)) / size, (height / 2.0 - (y + h / 2.0)) / size))
    if not scales:
        raise ValueError(f"measure_framing: the detector found exactly one face in none of {len(chosen)} images")
    scales_a, offsets_a = np.array(scales), np.array(offsets)
    q = lambda a: (float(np.percentile(a, 25)), float(np.percentile(a, 75)))  # noqa: E731
    return Framing(
        scale=float(np.median(scales_a)),
        offset=(float(np.median(offsets_a[:, 0])), float(np.median(offsets_a[:, 1]))),
        scale_iqr=q(scales_a),
        offset_iqr=(q(offsets_a[:, 0]), q(offsets_a[:, 1])),
        used=len(scales),
        sampled=len(chosen),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("KEYPOINTS_DATA", "data"))
    parser.add_argument("-n", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    framing = measure_framing(args.data, n=args.n, seed=args.seed)
    print(f"measured on {framing.used} of {framing.sampled} images in {time.perf_counter() - start:.1f} s")
    print(f"  scale  median {framing.scale:.3f}  quartiles {framing.scale_iqr[0]:.3f} .. {framing.scale_iqr[1]:.3f}")
    for axis, med, (lo, hi) in zip("xy", framing.offset, framing.offset_iqr):
        print(f"  offset {axis} median {med:+.3f}  quartiles {lo:+.3f} .. {hi:+.3f}")
    print(f"  in keypoints/wild/face_crop.py: FRAME_SCALE = {FRAME_SCALE}, FRAME_OFFSET = {FRAME_OFFSET}")

    # check: keypoints in the training square vs in the pad_box square, as fractions of the side
    names, points = read_keypoints_csv(Path(args.data) / "training_frames_keypoints.csv")
    rng = np.random.default_rng(args.seed + 1)  # other images than the ones measured
    train_frac, ours_frac = [], []
    for i in rng.choice(len(names), size=min(args.n, len(names)), replace=False):
        image = read_image_file(Path(args.data) / "training" / names[i], cv2.IMREAD_UNCHANGED)
        boxes = detect_faces(image)
        if len(boxes) != 1:
            continue
        height, width = image.shape[:2]
        side = min(height, width)
        corner = np.array([(width - side) / 2.0, (height - side) / 2.0])
        train_frac.append((points[i] + 0.5 - corner) / side)
        x, y, s, _ = pad_box(boxes[0])
        ours_frac.append((points[i] + 0.5 - np.array([x, y])) / s)
    train_frac, ours_frac = np.array(train_frac), np.array(ours_frac)
    print(f"check on {len(train_frac)} other images (keypoints as fractions of the square's side):")
    for name, frac in (("training square", train_frac), ("pad_box square ", ours_frac)):
        centre = frac.mean(axis=1)  # (N, 2) centroid of each face
        extent = np.ptp(frac[:, :, 0], axis=1)  # face width (jaw to jaw) in the square
        print(f"  {name}: centroid x {centre[:, 0].mean():.3f} +- {centre[:, 0].std():.3f}"
              f"  y {centre[:, 1].mean():.3f} +- {centre[:, 1].std():.3f}"
              f"  face width {extent.mean():.3f} +- {extent.std():.3f}")


if __name__ == "__main__":
    main()
