"""Keypoints on every frame of a video, smoothed over time per face.

Per frame: detect the faces, predict their keypoints (:func:`keypoints.wild.faces.predict_faces`, one batch
per frame), match them to the faces of the previous frames (:class:`FaceTracker`), smooth each face's
points with a One Euro filter, and draw them (and sunglasses, if asked). Read with ``cv2.VideoCapture``,
written with ``cv2.VideoWriter`` (``mp4v``) at the input's frame rate and frame size.

Why smoothing, and the filter: :mod:`keypoints.wild.one_euro`.
"""
from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import NamedTuple, Sequence

import cv2
import numpy as np

from ..files import OutputError, atomic_output, refuse_input_as_output
from ..image import DEFAULT_MAX_PIXELS, check_max_pixels
from .blink import BlinkCounter
from .detection import DEFAULT_DETECTOR
from .drawing import draw_keypoints
from .faces import FaceKeypoints, predict_faces
from .one_euro import OneEuroFilter
from .overlay import add_sunglasses, make_sunglasses

DEFAULT_FPS = 30.0  # used when a video does not say its frame rate


# ----------------------------------------------------------------------------------------------------
# Tracking faces across frames
# ----------------------------------------------------------------------------------------------------


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes ``(x, y, w, h)``: ``(A, 4), (B, 4) -> (A, B)``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ax0, ay0, ax1, ay1 = a[:, 0, None], a[:, 1, None], (a[:, 0] + a[:, 2])[:, None], (a[:, 1] + a[:, 3])[:, None]
    bx0, by0, bx1, by1 = b[None, :, 0], b[None, :, 1], (b[:, 0] + b[:, 2])[None], (b[:, 1] + b[:, 3])[None]
    inter = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None) * np.clip(
        np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None
    )
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


class Track(NamedTuple):
    """A face followed across frames: ``id`` (stable while it is tracked), the detector ``box`` of this
    frame and its smoothed ``points`` ``(68, 2)`` in frame pixels."""

    id: int
    box: np.ndarray
    points: np.ndarray


class _TrackState:
    def __init__(self, track_id: int, box: np.ndarray, scale: float, filt: OneEuroFilter):
        self.id, self.box, self.scale, self.filter = track_id, box, scale, filt
        self.missed = 0


class FaceTracker:
    """Match each frame's faces to the previous frames' and smooth each face's keypoints.

    Matching is greedy, best pairs first: a detection continues a track if their boxes overlap with
    IoU >= ``iou_threshold``, or, failing that, if their centres are closer than ``max_centre_shift``
    times the track's box width (a fast move or a box that changed size). Unmatched detections start
    new tracks; a track not matched for more than ``max_missed`` frames is dropped (a face that left),
    while a track missed for fewer frames keeps its filter so a detector blink does not restart the
    smoothing. Only tracks matched on the current frame are returned.

    Smoothing runs in units of the face's size: points are divided by the width of the track's first
    box before the One Euro filter and multiplied back after, so ``beta`` is "per face width per
    second" and the same parameters suit a face of 50 or of 500 pixels. The defaults (min_cutoff 1 Hz,
    beta 5, d_cutoff 1 Hz) cut the jitter of a still face by about 3x at 30 frames per second, while a
    head turning at one face width per second still gets a cutoff of ~6 Hz (a lag of ~1 frame).
    """

    def __init__(
        self,
        min_cutoff: float = 1.0,
        beta: float = 5.0,
        d_cutoff: float = 1.0,
        iou_threshold: float = 0.3,
        max_centre_shift: float = 0.5,
        max_missed: int = 2,
        smooth: bool = True,
    ):
        OneEuroFilter(min_cutoff, beta, d_cutoff)  # validates the parameters now, not on the first face
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"FaceTracker: iou_threshold must be in (0, 1], got {iou_threshold}")
        if max_missed < 0:
            raise ValueError(f"FaceTracker: max_missed must be >= 0, got {max_missed}")
        self.params = (float(min_cutoff), float(beta), float(d_cutoff))
        self.iou_threshold, self.max_centre_shift = float(iou_threshold), float(max_centre_shift)
        self.max_missed, self.smooth = int(max_missed), bool(smooth)
        self._tracks: list[_TrackState] = []
        self._next_id = 0

    @property
    def num_tracks(self) -> int:
        """Tracks alive (matched now or missed for at most ``max_missed`` frames)."""
        return len(self._tracks)

    def _match(self, boxes: np.ndarray) -> list[tuple[int, int]]:
        """Greedy (track index, detection index) pairs."""
        if not self._tracks or len(boxes) == 0:
            return []
        old = np.stack([track.box for track in self._tracks]).astype(np.float64)
        iou = box_iou(old, boxes)
        old_centres = old[:, :2] + old[:, 2:] / 2.0
        new_centres = boxes[:, :2].astype(np.float64) + boxes[:, 2:] / 2.0
        dist = np.linalg.norm(old_centres[:, None] - new_centres[None], axis=2) / np.maximum(old[:, 2:3], 1.0)
        candidates = []
        for i in range(len(old)):
            for j in range(len(boxes)):
                if iou[i, j] >= self.iou_threshold or dist[i, j] < self.max_centre_shift:
                    candidates.append((-iou[i, j], dist[i, j], i, j))
        candidates.sort()
        used_t, used_d, pairs = set(), set(), []
        for _, _, i, j in candidates:
            if i not in used_t and j not in used_d:
                used_t.add(i)
                used_d.add(j)
                pairs.append((i, j))
        return pairs

    def update(self, faces: Sequence[FaceKeypoints], t: float) -> list[Track]:
        """One frame's faces (boxes and raw points) at time ``t`` (seconds) -> the tracked, smoothed faces,
        in the order of ``faces``."""
        boxes = np.array([face.box for face in faces], dtype=np.int64).reshape(-1, 4)
        pairs = self._match(boxes)
        matched_tracks = {i for i, _ in pairs}
        by_detection = {j: self._tracks[i] for i, j in pairs}
        for i, track in enumerate(self._tracks):
            if i not in matched_tracks:
                track.missed += 1
        kept = [track for track in self._tracks if track.missed <= self.max_missed]
        out = []
        for j, face in enumerate(faces):
            track = by_detection.get(j)
            if track is None:
                scale = float(max(face.box[2], face.box[3], 1))
                track = _TrackState(self._next_id, boxes[j], scale, OneEuroFilter(*self.params, norm_axis=-1))
                self._next_id += 1
                kept.append(track)
            track.box, track.missed = boxes[j], 0
            points = np.asarray(face.points, dtype=np.float64)
            if self.smooth:
                points = track.filter(points / track.scale, t) * track.scale
            out.append(Track(track.id, boxes[j].copy(), points))
        self._tracks = kept
        return out


# ----------------------------------------------------------------------------------------------------
# Video in, video out
# ----------------------------------------------------------------------------------------------------


class VideoReport(NamedTuple):
    frames: int  # frames read and written
    faces: int  # face detections over all frames
    seconds: float  # wall time of the processing loop
    processed_fps: float  # frames per second processed
    fps: float  # the output's frame rate (the input's)
    size: tuple[int, int]  # (width, height) of the frames
    output: str
    blinks: int | None = 0  # blinks counted over all tracked faces (keypoints.wild.blink); None: a model without the 68-point eyes


def open_video(path: str | Path) -> tuple[cv2.VideoCapture, float]:
    """``cv2.VideoCapture`` for a file, and its frame rate (:data:`DEFAULT_FPS` with a warning if the file
    does not say). Raises ``FileNotFoundError`` / ``ValueError`` with the file's name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise ValueError(f"{path}: OpenCV cannot open it as a video")
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    if not math.isfinite(fps) or fps <= 0:
        warnings.warn(f"{path}: no frame rate in the file, writing at {DEFAULT_FPS} frames per second", stacklevel=2)
        fps = DEFAULT_FPS
    return capture, fps


def process_video(
    source: str | Path,
    output: str | Path,
    predictor,
    *,
    sunglasses: bool = False,
    overlay: np.ndarray | None = None,
    points: bool | None = None,
    smooth: bool = True,
    detector: str = DEFAULT_DETECTOR,
    tracker: FaceTracker | None = None,
    progress: bool = True,
    max_frames: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    blink: BlinkCounter | None = None,
) -> VideoReport:
    """Detect, predict, smooth and draw on every frame of ``source``; write ``output`` (mp4v).

    Parameters
    ----------
    predictor : keypoints.predictor.Predictor
        The ``video`` command reads every face again (``refine_tolerance=keypoints.speed.VIDEO_REFINE_TOLERANCE``):
        with a tolerance, a face read once in some frames and twice in others jumps between the two reads.
    sunglasses : bool
        Put sunglasses on every face (``overlay``: a BGRA picture, default the drawn pair).
    points : bool or None
        Draw the keypoints; default: yes unless ``sunglasses``.
    smooth : bool
        One Euro smoothing per face track (``tracker`` sets its parameters).
    max_frames : int, optional
        Stop after this many frames.
    max_pixels : int
        Refuse a video whose frames (as its header says) have more pixels.
    blink : BlinkCounter, optional
        Its threshold and minimum of closed frames are used for every tracked face (one counter per
        track, fed the raw points: smoothing would flatten a blink of a few frames); default settings
        when None.

    Returns
    -------
    VideoReport with the frame count, the detections, and the frames per second processed.
    """
    output = Path(output)
    refuse_input_as_output(output, [source])
    ibug = getattr(predictor, "num_points", 68) == 68  # sunglasses and blinks need the 68-point layout's eyes
    if sunglasses and not ibug:
        raise ValueError(f"--sunglasses needs a 68-point model (its eyes place the glasses); this model has"
                         f" {predictor.num_points} points")
    capture, fps = open_video(source)
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if width * height > check_max_pixels(max_pixels):
        capture.release()
        raise ValueError(f"{source}: frames of {width}x{height} are more than the limit of {max_pixels / 1e6:g}"
                         " megapixels (raise it with --max-pixels)")
    draw_points = (not sunglasses) if points is None else bool(points)
    glasses = (make_sunglasses() if overlay is None else overlay) if sunglasses else None
    tracker = tracker if tracker is not None else FaceTracker(smooth=smooth)
    blink = (blink if blink is not None else BlinkCounter()) if ibug else None  # None: no blinks counted
    counters: dict[int, BlinkCounter] = {}  # track id -> its own counter, filled by the frame loop
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    if max_frames is not None:
        total = min(total, max_frames) if total > 0 else max_frames
    from tqdm.auto import tqdm

    bar = tqdm(total=total if total > 0 else None, unit="frame", desc=Path(source).name, disable=not progress)
    start = time.perf_counter()
    with atomic_output(output) as temporary:  # an interrupted run leaves no half-written video
        frames, faces_seen, size = _process_frames(
            capture, temporary, output, fps, predictor, tracker, glasses, draw_points, detector, max_frames, bar, start,
            blink, counters,
        )
        if frames == 0:
            raise ValueError(f"{source}: the video has no frames OpenCV can decode")
    seconds = time.perf_counter() - start
    processed_fps = frames / seconds if seconds > 0 else float("inf")
    blinks = sum(counter.blinks for counter in counters.values()) if ibug else None
    return VideoReport(frames, faces_seen, seconds, processed_fps, fps, size, str(output), blinks)


def _process_frames(capture, temporary: Path, output: Path, fps: float, predictor, tracker, glasses, draw_points: bool,
                    detector: str, max_frames: int | None, bar, start: float, blink: BlinkCounter | None,
                    counters: dict) -> tuple[int, int, tuple[int, int]]:
    """The frame loop of :func:`process_video`, writing into ``temporary``: ``(frames, detections, size)``;
    each track's blink counter (set up like ``blink``; none when it is None) goes into ``counters``."""
    writer = None
    frames = faces_seen = 0
    size = (0, 0)
    try:
        while max_frames is None or frames < max_frames:
            ok, frame = capture.read()
            if not ok or frame is None:
                break
            if writer is None:
                size = (frame.shape[1], frame.shape[0])
                writer = cv2.VideoWriter(str(temporary), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
                if not writer.isOpened():
                    raise OutputError(
                        f"-o {output}: OpenCV cannot write an mp4v video there (check the folder and the extension)"
                    )
            faces = predict_faces(predictor, frame, detector=detector)
            tracks = tracker.update(faces, frames / fps)
            if blink is not None:  # a model without the 68-point eyes counts no blinks
                for track, face in zip(tracks, faces):  # update returns the tracks in the order of the faces
                    counter = counters.setdefault(track.id, BlinkCounter(blink.threshold, blink.min_frames))
                    counter.update(face.points)
            out = frame if frame.ndim == 3 and frame.shape[2] == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
            if tracks:
                stacked = np.stack([track.points for track in tracks])
                if glasses is not None:
                    out = add_sunglasses(out, stacked, glasses)
                if draw_points:
                    out = draw_keypoints(out, stacked, contours=False)
            writer.write(out)
            frames += 1
            faces_seen += len(faces)
            bar.update(1)
            elapsed = time.perf_counter() - start
            bar.set_postfix(faces=len(faces), fps=f"{frames / elapsed:.1f}" if elapsed > 0 else "-", refresh=False)
    finally:
        bar.close()
        capture.release()
        if writer is not None:
            writer.release()
    return frames, faces_seen, size
