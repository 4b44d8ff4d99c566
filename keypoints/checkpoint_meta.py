"""The model spec a keypoints checkpoint carries (``meta``): its fields, their defaults and their validation.

:func:`validate_meta` checks every field against its allowed values, with a message naming the field and what
was expected, before a checkpoint costs memory or time (a ``rescale`` of 20000 would make predicting one small
crop allocate gigabytes); :mod:`keypoints.checkpoint` (the file format) calls it on every read and before every
metadata update.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .framing import PointFraming, reads_test_frames
from .geometry import MAX_POINTS, NUM_KEYPOINTS, checked_flip_permutation, default_flip_permutation

ARCHITECTURES = ("naimishnet",)
INPUT_SIZES = (96, 224)
HEADS = ("classic", "dropout-last")
MAX_REFINE_PASSES = 4
#: the rescaled shorter side is S * RESCALE_RANGE[0] .. S * RESCALE_RANGE[1] (training uses S * 250 / 224)
RESCALE_RANGE = (1.0, 2.0)

#: what a confidence calibration reads (keypoints.wild.confidence): the last pass's test frames, or the flip
#: disagreement
CONFIDENCE_SIGNALS = ("test_frames", "flip")

#: optional fields and the value a checkpoint without them (an older one) means; a calibration older than
#: ``confidence_signal`` was fitted on the flip disagreement
DEFAULTS = {"head": "classic", "refine_passes": 0, "framing": None, "flip_test": False, "dropout": 0.4,
            "confidence_calibration": None, "confidence_signal": "flip", "test_frames": None,
            "num_points": NUM_KEYPOINTS, "flip_permutation": None, "closeup": None}


class CheckpointError(ValueError):
    """A file that is not a usable keypoints checkpoint; ``str`` names the file and the field."""


def is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)) \
        and math.isfinite(float(value))


def validate_meta(meta: Any, where: str = "checkpoint") -> dict:
    """The metadata with every field checked and the optional ones filled with :data:`DEFAULTS`.

    Raises :class:`CheckpointError` naming ``where`` and the first bad field, with what was expected.
    """
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: 'meta' must be a dict of fields, got {type(meta).__name__}")
    meta = {**DEFAULTS, **meta}
    for name in ("arch", "input_size", "rescale"):
        if name not in meta:
            raise CheckpointError(f"{where}: meta.{name} is missing")
    if meta["arch"] not in ARCHITECTURES:
        raise CheckpointError(f"{where}: meta.arch must be one of {ARCHITECTURES}, got {meta['arch']!r}")
    size = meta["input_size"]
    if not (is_int(size) and int(size) in INPUT_SIZES):
        raise CheckpointError(f"{where}: meta.input_size must be one of {INPUT_SIZES}, got {size!r}")
    size = int(size)
    low, high = int(math.ceil(size * RESCALE_RANGE[0])), int(size * RESCALE_RANGE[1])
    rescale = meta["rescale"]
    if not (is_int(rescale) and low <= int(rescale) <= high):
        raise CheckpointError(
            f"{where}: meta.rescale must be an integer in [{low}, {high}] for input_size {size}, got {rescale!r}"
        )
    dropout = meta["dropout"]
    if not (is_real(dropout) and 0.0 <= float(dropout) < 1.0):
        raise CheckpointError(f"{where}: meta.dropout must be a number in [0, 1), got {dropout!r}")
    if not isinstance(meta["flip_test"], (bool, np.bool_)):
        raise CheckpointError(f"{where}: meta.flip_test must be true or false, got {meta['flip_test']!r}")
    if meta["head"] not in HEADS:
        raise CheckpointError(f"{where}: meta.head must be one of {HEADS}, got {meta['head']!r}")
    passes = meta["refine_passes"]
    if not (is_int(passes) and 0 <= int(passes) <= MAX_REFINE_PASSES):
        raise CheckpointError(f"{where}: meta.refine_passes must be an integer in [0, {MAX_REFINE_PASSES}], got {passes!r}")
    framing = meta["framing"]
    if framing is not None:
        try:
            framing = PointFraming.from_dict(framing).to_dict()
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{where}: meta.{exc}") from None
    frames = meta["test_frames"]
    if frames is not None:
        from .framing import checked_test_frames  # the one validation of test frames

        try:
            frames = [list(frame) for frame in checked_test_frames(frames)]
        except ValueError as exc:
            raise CheckpointError(f"{where}: meta.{exc}") from None
    num_points, permutation = _point_layout(meta, where)
    calibration = meta["confidence_calibration"]
    if calibration is not None and num_points != NUM_KEYPOINTS:
        raise CheckpointError(f"{where}: meta.confidence_calibration must be null for {num_points} points (the"
                              f" confidence reads the eye corners of the {NUM_KEYPOINTS} iBUG points)")
    if calibration is not None:
        # (a, b) of keypoints.wild.confidence: a finite intercept and a negative slope (more disagreement
        # between the plain and the mirrored pass must mean less confidence)
        if not (isinstance(calibration, (list, tuple)) and len(calibration) == 2 and all(map(is_real, calibration))
                and float(calibration[1]) < 0):
            raise CheckpointError(
                f"{where}: meta.confidence_calibration must be null or [intercept, slope] with a finite intercept"
                f" and a negative slope, got {calibration!r}"
            )
        calibration = [float(calibration[0]), float(calibration[1])]
    signal = meta["confidence_signal"]
    if signal not in CONFIDENCE_SIGNALS:
        raise CheckpointError(f"{where}: meta.confidence_signal must be one of {', '.join(CONFIDENCE_SIGNALS)},"
                              f" got {signal!r}")
    if calibration is not None and signal == "test_frames" and not reads_test_frames(frames, passes):
        raise CheckpointError(f"{where}: meta.confidence_signal is test_frames, but the model reads no test frames"
                              f" (meta.test_frames {frames!r}, meta.refine_passes {passes!r})")
    closeup = meta["closeup"]
    if closeup is not None:  # keypoints.closeup: each region network's shape and passes (weights: entries "closeup")
        from .closeup.stage import checked_closeup

        if num_points != NUM_KEYPOINTS:
            raise CheckpointError(f"{where}: meta.closeup must be null for {num_points} points (it reads regions of"
                                  f" the {NUM_KEYPOINTS} iBUG points)")
        try:
            closeup = {name: stage.to_dict() for name, stage in checked_closeup(closeup).items()}
        except ValueError as exc:
            raise CheckpointError(f"{where}: meta.{exc}") from None
    return dict(meta, input_size=size, rescale=int(rescale), dropout=float(dropout), flip_test=bool(meta["flip_test"]),
                refine_passes=int(passes), framing=framing, confidence_calibration=calibration, test_frames=frames,
                num_points=num_points, flip_permutation=permutation, closeup=closeup)


def _point_layout(meta: dict, where: str) -> tuple[int, list | None]:
    """``(num_points, flip_permutation)`` of ``meta``, checked: ``K`` in ``1..MAX_POINTS``; the permutation a
    mirror permutation of ``K`` points, or null (the iBUG one for 68 points, else no mirror, so no flip
    averaging; :func:`flip_permutation_of`); the refinement frame turned upright only for the 68 points,
    whose eyes it reads."""
    num_points = meta["num_points"]
    if not (is_int(num_points) and 1 <= int(num_points) <= MAX_POINTS):
        raise CheckpointError(f"{where}: meta.num_points must be an integer in [1, {MAX_POINTS}], got {num_points!r}")
    num_points = int(num_points)
    permutation = meta["flip_permutation"]
    if permutation is not None:
        try:
            permutation = checked_flip_permutation(permutation, num_points, f"{where}: meta.flip_permutation")
        except ValueError as exc:
            raise CheckpointError(str(exc)) from None
    if permutation is None and default_flip_permutation(num_points) is None and meta["flip_test"]:
        raise CheckpointError(f"{where}: meta.flip_test is true but {num_points} points have no meta.flip_permutation")
    if num_points != NUM_KEYPOINTS and (meta["framing"] or {}).get("upright"):
        raise CheckpointError(f"{where}: meta.framing.upright needs the eyes of the {NUM_KEYPOINTS} iBUG points,"
                              f" the model has {num_points} points")
    return num_points, None if permutation is None else [int(i) for i in permutation]


def flip_permutation_of(meta: dict) -> np.ndarray | None:
    """The ``(K,)`` mirror permutation a validated ``meta`` describes: its own, else for 68 points the iBUG
    one, else None (the model's points have no mirror: no flip averaging)."""
    if meta["flip_permutation"] is not None:
        return np.asarray(meta["flip_permutation"], dtype=np.intp)
    return default_flip_permutation(meta["num_points"])
