"""What ``--speed`` means: the names (:data:`SPEEDS`), their check, and the ``Predictor`` settings each one gives
(``keypoints.predictor.load_predictor`` applies them)."""
from __future__ import annotations

#: ``load_predictor(speed=...)`` and ``--speed``: ``"accurate"`` reads a face as its checkpoint says (the shipped
#: model: 12 reads of the face network, flip-averaged, and 4 of each close-up network); ``"fast"`` reads it at most
#: twice (the first read and one refinement pass), without flip averaging (so without a confidence) or test frames,
#: runs each close-up stage once, and its networks' Linear layers with int8 weights, each BatchNorm1d after one folded
#: into it (``tinynet.nn.quantize_int8(..., fold_batchnorm=True)``).
#: Measured with the shipped model: test NME (centre crops) 5.61 -> 5.68 %, failures (NME > 10 %) 1.9 -> 3.2 %
#: (the int8 weights change neither); on the 346 validation faces 6.06 -> 6.34 % and 5.5 -> 8.1 %; the whole
#: pipeline (with the detector haar+profile-fast, benchmarks/compare_dlib.py) in a third of the time.
SPEEDS = ("accurate", "fast")


def checked_speed(speed, where: str) -> str:
    """``speed`` if it is one of :data:`SPEEDS`, else ``ValueError`` naming ``where``."""
    if speed not in SPEEDS:
        raise ValueError(f"{where}: speed must be one of {', '.join(SPEEDS)}, got {speed!r}")
    return speed


def speed_settings(speed: str, meta: dict) -> dict:
    """The ``Predictor`` settings ``speed`` (one of :data:`SPEEDS`) gives a checkpoint with ``meta``: ``{}`` for
    ``"accurate"``; for ``"fast"`` no flip averaging, no test frames, at most one refinement pass, int8 weights in the
    Linear layers and, if the checkpoint has close-up stages, one read of each."""
    if checked_speed(speed, "speed_settings") == "accurate":
        return {}
    settings = {"flip": False, "test_frames": (), "refine_passes": min(1, int(meta.get("refine_passes", 0))),
                "int8_linears": True}
    if meta.get("closeup"):
        settings["closeup_passes"] = 1
    return settings
