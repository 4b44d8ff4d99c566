"""What ``--speed`` means: the names (:data:`SPEEDS`), their check, the ``Predictor`` settings each one gives
(``keypoints.predictor.load_predictor`` applies them), and the int8 copies of the networks that ``int8_linears`` runs."""
from __future__ import annotations

import copy

import tinynet

#: ``load_predictor(speed=...)`` and ``--speed``: ``"accurate"`` reads a face as its checkpoint says (the shipped
#: model: 12 reads of the face network, flip-averaged, and 4 of each close-up network); ``"fast"`` reads it at most
#: twice (the first read and one refinement pass, the latter only where the first read's frame moves by 5 % of the
#: crop or more: :data:`FAST_REFINE_TOLERANCE`), without flip averaging (so without a confidence) or test frames,
#: runs each close-up stage once, and its networks' Linear layers with int8 weights, each BatchNorm1d after one folded
#: into it (``tinynet.nn.quantize_int8(..., fold_batchnorm=True)``).
#: Measured with the shipped model: test NME (centre crops) 5.61 -> 5.71 %, failures (NME > 10 %) 1.9 -> 3.4 %
#: (the int8 weights change neither); on the 346 validation faces 6.06 -> 6.35 % and 5.5 -> 8.1 %; the whole
#: pipeline (with the detector haar+profile-fast, benchmarks/compare_dlib.py) in a third of the time.
SPEEDS = ("accurate", "fast")
#: ``"fast"``'s ``Predictor.refine_tolerance``: a face whose refinement frame would move its crop's corners by less
#: than 5 % of the crop side keeps its first read (a detector's crops are framed well: 45 % of the test photos' faces
#: keep it; the data set's looser centre crops 10-12 %). Chosen on the 346 validation faces, from 0, 0.04 ... 0.1:
#: photos (detector haar+profile-fast) NME 5.92 % with every face read again, 5.90, 5.94, 5.93, 5.94, 5.94 and
#: 5.98 % at 0.04, 0.05, 0.06, 0.07, 0.08 and 0.1; centre crops 6.34, then 6.35, 6.35, 6.36, 6.37, 6.39, 6.42 %:
#: flat up to 0.06, and 0.05 errs towards reading again. On the test faces: photos 5.51 -> 5.52 %, failures
#: 2.4 -> 2.7 %; centre crops 5.68 -> 5.71 %, failures 3.2 -> 3.4 %.
FAST_REFINE_TOLERANCE = 0.05
#: The ``video`` command's ``Predictor.refine_tolerance``, with either speed: every face is read again. A video face
#: whose frame moves about :data:`FAST_REFINE_TOLERANCE` would switch between one read and two from frame to frame,
#: and its points jump between the two reads. ``python benchmarks/video_jitter.py`` (the README portrait moved as a
#: hand-held camera moves it, 150 frames; the frame-to-frame move of the points, motion removed, in % of the eye
#: distance, median / p90 / max): with ``--speed fast`` at 0.05 the face kept its first read in 55 % of the frames and
#: moved 3.58 / 7.15 / 10.09 raw, 1.04 / 1.82 / 3.51 after the One Euro smoothing, against 2.88 / 4.53 / 7.00 and
#: 0.82 / 1.25 / 2.30 read twice every frame, for 70.0 against 73.9 ms a frame.
VIDEO_REFINE_TOLERANCE = 0.0


def checked_speed(speed, where: str) -> str:
    """``speed`` if it is one of :data:`SPEEDS`, else ``ValueError`` naming ``where``."""
    if speed not in SPEEDS:
        raise ValueError(f"{where}: speed must be one of {', '.join(SPEEDS)}, got {speed!r}")
    return speed


def speed_settings(speed: str, meta: dict) -> dict:
    """The ``Predictor`` settings ``speed`` (one of :data:`SPEEDS`) gives a checkpoint with ``meta``: ``{}`` for
    ``"accurate"``; for ``"fast"`` no flip averaging, no test frames, at most one refinement pass (skipped for a face
    framed well already: :data:`FAST_REFINE_TOLERANCE`), int8 weights in the
    Linear layers and, if the checkpoint has close-up stages, one read of each."""
    if checked_speed(speed, "speed_settings") == "accurate":
        return {}
    settings = {"flip": False, "test_frames": (), "refine_passes": min(1, int(meta.get("refine_passes", 0))),
                "refine_tolerance": FAST_REFINE_TOLERANCE, "int8_linears": True}
    if meta.get("closeup"):
        settings["closeup_passes"] = 1
    return settings


def int8_runnable(model, int8_linears: bool):
    """``model`` in eval mode; with ``int8_linears`` and float Linear layers in it, a copy of it whose Linear layers
    hold int8 weights (the caller's model stays float; ``load_predictor`` quantises the model it built itself)."""
    if int8_linears and any(isinstance(module, tinynet.nn.Linear) for module in model.modules()):
        return int8_quantized(copy.deepcopy(model))
    return model.eval()


def int8_quantized(model):
    """``model`` in eval mode with int8 weights in its Linear layers, each BatchNorm1d that follows one folded into it
    (``tinynet.nn.quantize_int8(..., fold_batchnorm=True)``), in place."""
    return tinynet.nn.quantize_int8(model.eval(), fold_batchnorm=True)
