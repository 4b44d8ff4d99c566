"""How much the points of a face jitter in a video, per reading setting, with and without the video's smoothing.

    python benchmarks/video_jitter.py [--frames 150] [--model CKPT]

The clip is made from a photo that ships with a package: matplotlib's Grace Hopper portrait (512 x 600), and
scikit-image's astronaut (512 x 512) where scikit-image is installed. Each frame is the photo moved as a hand-held
camera moves it: a slow drift of about 15 by 10 pixels with a faster sway of 2-3 pixels, a zoom of +-4 % and a turn
of +-2 degrees, at 30 frames per second. The motion is known, so every frame's points are mapped back into the
photo's own pixels: there a still face's points should not move at all, and what moves is jitter.

Per setting (the default reads; ``--speed fast`` reading every face twice, as the ``video`` command does; and
``--speed fast`` with the photos' refinement tolerance, where a face keeps its first read when its frame moves less
than 5 % of the crop), raw and through the ``video`` command's One Euro smoothing (``FaceTracker`` defaults):

- the frame-to-frame move, mean over the 68 points, median / p90 / max over the frames, in % of the eye distance;
- how far the median position over the clip lies from the default reads' median position (% of the eye distance);
- for the tolerance setting, the share of frames whose face kept its first read;
- ms per frame (``predict_faces``, detection included; median).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tinynet  # noqa: E402,F401  (first: it configures the thread pools before NumPy loads)
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from keypoints.predictor import load_predictor  # noqa: E402
from keypoints.speed import FAST_REFINE_TOLERANCE, VIDEO_REFINE_TOLERANCE  # noqa: E402
from keypoints.wild.detection import DEFAULT_DETECTOR, FAST_DETECTOR  # noqa: E402
from keypoints.wild.faces import predict_faces  # noqa: E402
from keypoints.wild.video import FaceTracker  # noqa: E402

FPS = 30.0


def photos() -> dict[str, np.ndarray]:
    """The photos the clips are made from, BGR uint8."""
    import matplotlib.cbook as cbook

    found = {"portrait": cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), cv2.IMREAD_COLOR)}
    try:
        import skimage.data
    except ImportError:
        print("scikit-image is not installed: the astronaut clip is left out", file=sys.stderr)
    else:
        found["astronaut"] = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    return found


def hand_held(photo: np.ndarray, frames: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``frames`` frames of ``photo`` moved along a hand-held camera's path, and each frame's ``(3, 3)`` map from the
    photo's pixels to the frame's."""
    height, width = photo.shape[:2]
    t = np.arange(frames) / FPS
    dx = 12 * np.sin(2 * np.pi * 0.3 * t) + 3 * np.sin(2 * np.pi * 1.1 * t)
    dy = 8 * np.sin(2 * np.pi * 0.2 * t + 1) + 2 * np.sin(2 * np.pi * 0.9 * t)
    zoom = 1 + 0.04 * np.sin(2 * np.pi * 0.25 * t)
    degrees = 2 * np.sin(2 * np.pi * 0.15 * t)
    maps = np.array([np.vstack([cv2.getRotationMatrix2D((width / 2, height / 2), a, s), [0, 0, 1]]) + [[0, 0, x], [0, 0, y], [0, 0, 0]]
                     for a, s, x, y in zip(degrees, zoom, dx, dy)])
    clip = [cv2.warpAffine(photo, m[:2], (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            for m in maps]
    return clip, maps


def read_clip(clip: list, maps: np.ndarray, predictor, detector: str, smooth: bool) -> tuple[np.ndarray, float]:
    """The first face's points in every frame, mapped back into the photo's pixels ``(F, 68, 2)`` (NaN where no
    face was found), and the median ms per frame."""
    tracker, points, times = FaceTracker(smooth=smooth), [], []
    for index, frame in enumerate(clip):
        start = time.perf_counter()
        faces = predict_faces(predictor, frame, detector=detector)
        times.append(time.perf_counter() - start)
        tracks = tracker.update(faces, index / FPS)
        points.append(tracks[0].points if tracks else np.full((68, 2), np.nan))
    back = np.linalg.inv(maps)  # (F, 3, 3) frame -> photo
    points = np.einsum("fij,fpj->fpi", back[:, :2, :2], np.array(points)) + back[:, None, :2, 2]
    return points, 1e3 * statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=150, help="frames per clip (default %(default)s: 5 s)")
    parser.add_argument("--model", help="checkpoint (default: the shipped model)")
    args = parser.parse_args()
    if args.frames < 3:
        parser.error(f"--frames must be at least 3, got {args.frames}")
    settings = [
        ("default reads", load_predictor(args.model), DEFAULT_DETECTOR),
        (f"fast, every face twice (video; tolerance {VIDEO_REFINE_TOLERANCE:g})",
         load_predictor(args.model, speed="fast", refine_tolerance=VIDEO_REFINE_TOLERANCE), FAST_DETECTOR),
        (f"fast, tolerance {FAST_REFINE_TOLERANCE:g} (photos)",
         load_predictor(args.model, speed="fast", refine_tolerance=FAST_REFINE_TOLERANCE), FAST_DETECTOR),
    ]
    for name, photo in photos().items():
        clip, maps = hand_held(photo, args.frames)
        print(f"{name}: {args.frames} frames {photo.shape[1]}x{photo.shape[0]}; moves in % of the eye distance")
        reference = None
        raw_reads = {}
        for label, predictor, detector in settings:
            for smooth in (False, True):
                points, ms = read_clip(clip, maps, predictor, detector, smooth)
                if reference is None:
                    reference = np.nanmedian(points, axis=0)
                    eye = np.linalg.norm(reference[36:42].mean(axis=0) - reference[42:48].mean(axis=0))
                step = np.linalg.norm(np.diff(points, axis=0), axis=2).mean(axis=1) / eye * 100
                offset = np.linalg.norm(np.nanmedian(points, axis=0) - reference, axis=1).mean() / eye * 100
                kept = ""
                if not smooth:
                    raw_reads[label] = points
                    if predictor.refine_tolerance > 0:
                        twice = raw_reads[settings[1][0]]  # the same first reads, every face read again
                        kept = f", first read kept in {100 * np.mean(np.abs(points - twice).max(axis=(1, 2)) > 1e-9):.0f} % of frames"
                print(f"  {label:<46} {'smoothed' if smooth else 'raw     '}  frame to frame median"
                      f" {np.nanmedian(step):.2f} p90 {np.nanpercentile(step, 90):.2f} max {np.nanmax(step):.2f};"
                      f" median position {offset:.2f} from the default reads'; {ms:.1f} ms/frame"
                      f"; no face in {int(np.isnan(points[:, 0, 0]).sum())} frames{kept}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
