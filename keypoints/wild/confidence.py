"""A confidence in [0, 1] per face: how likely its keypoints are right, from what the pipeline knows.

The predictor reads each face more than once and averages the reads. On a face the network has learnt, the
reads agree to a fraction of a pixel; on a face it struggles with (a profile, a blurred or occluded face, a
detector box that framed it badly) they drift apart. How far apart is the signal, one of :data:`SIGNALS`:

- ``"test_frames"``: the last refinement pass reads the face in several frames shifted around the canonical
  one (``Predictor.test_frames``; :class:`keypoints.predictor.Prediction` keeps each frame's read, mapped
  back); ``d`` is their mean distance from their average (:func:`frame_spread`);
- ``"flip"``: with test-time flip averaging, the crop and its mirror image are read (``Prediction.plain`` and
  ``.mirrored``, each averaged over the test frames if any); ``d`` is their mean distance (:func:`flip_disagreement`).

Either is taken over the 68 points and divided by the outer eye corners' distance ``|p36 - p45|`` of the
averaged points, so faces of every size count alike. It is mapped to a probability by logistic regression,

    confidence = P(NME <= 10 % | d) = 1 / (1 + exp(-(a + b log d)))

with ``a`` and ``b`` fitted for each network, and for its signal, on the validation faces it held out in
training (:func:`calibrate`, called by ``keypoints.train`` once the best weights are final; the checkpoint keeps
them as ``meta.confidence_calibration`` and the signal as ``meta.confidence_signal``, and
``benchmarks/calibrate_confidence.py`` refits them for an older checkpoint and reports the ranking on the test
set). A confidence of 0.8 means: of the validation faces that scored 0.8, about 80 % had an NME under 10 %, the
field's failure threshold.

Why the test frames, when a model has them: they rank the faces better. On the shipped model's faces (data-set
crops, read flip-averaged as the model reads them), the 10 % least confident of the 770 test faces failed 13.0 %
of the time by the frames' spread (``benchmarks/calibrate_confidence.py``), 6.5 % by the flip disagreement (the
other 90 %: 0.7 and 1.4 %); on the 346 validation faces 22.9 % either way. They would give a confidence
without flip averaging too (and the same test NME, 5.55 against 5.61 %, in half the reads), but the shipped model
keeps flip averaging: without it its reads are not mirror-symmetric (the portrait and its mirror image, mapped
back, 3.5 pixels apart against 1.0, and the head pose's yaw +7.0 and +14.4 degrees instead of -11.9 and +10.9).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..checkpoint_meta import CONFIDENCE_SIGNALS
from ..framing import reads_test_frames

#: below this eye distance (pixels) the points have collapsed and the face gets confidence 0
MIN_EYE_DISTANCE = 1.0

#: what a calibration reads (``meta.confidence_signal``): the test frames' spread, or the flip disagreement
SIGNALS = CONFIDENCE_SIGNALS


def _check_pair(plain, mirrored) -> tuple[np.ndarray, np.ndarray]:
    plain, mirrored = np.asarray(plain, np.float64), np.asarray(mirrored, np.float64)
    if plain.shape != mirrored.shape or plain.ndim != 3 or plain.shape[1:] != (68, 2):
        raise ValueError(
            f"confidence: expected two point sets of shape (N, 68, 2), got {plain.shape} and {mirrored.shape}"
        )
    return plain, mirrored


def _over_eye_distance(distance: np.ndarray, average: np.ndarray) -> np.ndarray:
    """``(N,)`` distances over the outer-eye-corner distance of the ``(N, 68, 2)`` average face; ``inf`` where that
    distance is below :data:`MIN_EYE_DISTANCE` pixels or a distance is not finite."""
    eyes = np.linalg.norm(average[:, 36] - average[:, 45], axis=-1)
    usable = (eyes >= MIN_EYE_DISTANCE) & np.isfinite(distance)
    return np.where(usable, distance / np.where(usable, eyes, 1.0), np.inf)


def flip_disagreement(plain, mirrored) -> np.ndarray:
    """``(N, 68, 2), (N, 68, 2) -> (N,)``: the two passes' mean point distance over the averaged face's
    outer-eye-corner distance; ``inf`` where that distance is below :data:`MIN_EYE_DISTANCE` pixels or a
    point is not finite."""
    plain, mirrored = _check_pair(plain, mirrored)
    return _over_eye_distance(np.linalg.norm(plain - mirrored, axis=-1).mean(axis=1), 0.5 * (plain + mirrored))


def frame_spread(reads) -> np.ndarray:
    """``(J, N, 68, 2) -> (N,)``: the J frames' reads of each face, their mean distance from their average
    over the average face's outer-eye-corner distance; ``inf`` where that distance is below
    :data:`MIN_EYE_DISTANCE` pixels or a point is not finite."""
    reads = np.asarray(reads, np.float64)
    if reads.ndim != 4 or reads.shape[0] < 2 or reads.shape[2:] != (68, 2):
        raise ValueError(f"confidence: expected the reads of J >= 2 frames, shape (J, N, 68, 2), got {reads.shape}")
    average = reads.mean(axis=0)
    return _over_eye_distance(np.linalg.norm(reads - average, axis=-1).mean(axis=(0, 2)), average)


def signal_of(prediction, signal: str) -> np.ndarray | None:
    """The disagreement ``(N,)`` that ``signal`` (one of :data:`SIGNALS`) reads in a
    :class:`keypoints.predictor.Prediction`, or None when the prediction did not make those reads."""
    if signal == "test_frames":
        return None if prediction.frame_reads is None else frame_spread(prediction.frame_reads)
    if signal == "flip":
        return None if prediction.plain is None else flip_disagreement(prediction.plain, prediction.mirrored)
    raise ValueError(f"confidence: signal must be one of {', '.join(SIGNALS)}, got {signal!r}")


def confidence_from_disagreement(disagreement, calibration: tuple[float, float]) -> np.ndarray:
    """``(N,)`` disagreements -> ``(N,)`` float64 confidences in [0, 1] (1 for two identical passes, 0 for
    ``inf``): the logistic map of the module docstring, decreasing in the disagreement."""
    a, b = calibration
    d = np.asarray(disagreement, dtype=np.float64)
    with np.errstate(divide="ignore", over="ignore"):
        logit = a + b * np.log(d)  # +inf at d = 0, -inf at d = inf (b < 0)
        return np.where(np.isnan(logit), 0.0, 1.0 / (1.0 + np.exp(-logit)))


def face_confidence(plain, mirrored, calibration: tuple[float, float]) -> np.ndarray:
    """The flip signal's confidences: the plain and the mirrored pass ``(N, 68, 2)`` (the mirrored one already
    mapped back: point i is the face's point i) and the network's ``calibration`` ``(a, b)`` for that signal ->
    ``(N,)`` confidences in [0, 1] (the pipeline calls :func:`prediction_confidence`, which picks the signal)."""
    return confidence_from_disagreement(flip_disagreement(plain, mirrored), calibration)


def prediction_confidence(prediction, signal: str, calibration: tuple[float, float] | None) -> np.ndarray | None:
    """``(N,)`` confidences of a :class:`keypoints.predictor.Prediction` from its ``signal`` and the network's
    ``calibration`` for it; None without a calibration or when the prediction lacks the reads it needs."""
    disagreement = None if calibration is None else signal_of(prediction, signal)
    return None if disagreement is None else confidence_from_disagreement(disagreement, calibration)


def fit_calibration(disagreement, success, l2: float = 1e-6, iterations: int = 50) -> tuple[float, float]:
    """Logistic regression of ``success`` (bool, e.g. NME <= 10 %) on ``log(disagreement)``: ``(a, b)``.

    Newton's method on the mean log-likelihood with a small ridge ``l2`` (keeps the fit finite when the
    classes separate). ``disagreement`` must be positive and finite; both arrays ``(N,)``, N >= 2.
    """
    d = np.asarray(disagreement, dtype=np.float64).reshape(-1)
    y = np.asarray(success, dtype=np.float64).reshape(-1)
    if d.shape != y.shape or len(d) < 2:
        raise ValueError(f"fit_calibration: expected two arrays of the same length >= 2, got {d.shape} and {y.shape}")
    if not (np.isfinite(d).all() and (d > 0).all()):
        raise ValueError("fit_calibration: disagreements must be positive and finite")
    x = np.stack([np.ones_like(d), np.log(d)], axis=1)  # (N, 2)
    w = np.zeros(2)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        gradient = x.T @ (p - y) / len(d) + l2 * w
        hessian = (x * (p * (1 - p))[:, None]).T @ x / len(d) + l2 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(w[0]), float(w[1])


class Calibration(NamedTuple):
    """What :func:`calibrate` found: ``calibration`` ``(a, b)`` or None (then ``reason`` says why), the
    ``signal`` it reads (:data:`SIGNALS`), and per face that ``disagreement`` and the ``nme``, ``(N,)`` each."""

    calibration: tuple[float, float] | None
    disagreement: np.ndarray
    nme: np.ndarray
    reason: str = ""
    signal: str = "test_frames"


def predictor_signal(predictor) -> str | None:
    """The signal a predictor's reads give (:data:`SIGNALS`): the test frames when its last refinement pass
    reads them, else the flip disagreement with flip averaging, else None (a single read: no confidence)."""
    if reads_test_frames(predictor.test_frames, predictor.refine_passes):
        return "test_frames"
    return "flip" if predictor.flip else None


def calibrate(predictor, images, keypoints, min_each: int = 5) -> Calibration:
    """Fit ``(a, b)`` for ``predictor`` and the signal its reads give (:func:`predictor_signal`) on faces whose
    points are known.

    ``images``: face crops as ``predictor.predict`` takes them; ``keypoints``: ``(N, 68, 2)`` true points in
    those images' pixels. A fit needs at least ``min_each`` faces under and over the failure threshold
    and a slope that makes more disagreement less confident; otherwise ``calibration`` is None (a short
    smoke run whose faces all fail cannot say what a confident face looks like).
    """
    from ..metrics import FAILURE_THRESHOLD, nme_per_face

    signal = predictor_signal(predictor)
    if signal is None:
        raise ValueError("calibrate: the confidence compares several reads of a face (test frames in the last"
                         " refinement pass, or flip averaging); this predictor reads each face once")
    prediction = predictor.predict_details(images)
    disagreement = signal_of(prediction, signal)
    nme = nme_per_face(prediction.points, np.asarray(keypoints, np.float64))
    usable = np.isfinite(disagreement) & (disagreement > 0) & np.isfinite(nme)
    success = nme[usable] <= FAILURE_THRESHOLD
    if min(success.sum(), (~success).sum()) < min_each:
        reason = (f"{success.sum()} of {usable.sum()} usable faces under the {100 * FAILURE_THRESHOLD:g} % threshold;"
                  f" a fit needs at least {min_each} on each side")
        return Calibration(None, disagreement, nme, reason, signal)
    a, b = fit_calibration(disagreement[usable], success)
    if not b < 0:
        return Calibration(None, disagreement, nme, f"the fitted slope {b:.3g} is not negative", signal)
    return Calibration((a, b), disagreement, nme, signal=signal)


def calibrate_checkpoint(path, dataset, indices) -> Calibration:
    """:func:`calibrate` the checkpoint at ``path``, read as it says (its test frames, its flip averaging), on
    the faces ``dataset[i]`` for ``i`` in ``indices`` (dicts with ``image`` and ``keypoints``, as
    :class:`keypoints.data.FacialKeypointsDataset` gives) and, when a fit was made, store it in the checkpoint
    as ``meta.confidence_calibration`` with its ``meta.confidence_signal``."""
    from ..checkpoint import update_meta
    from ..predictor import load_predictor

    samples = [dataset[int(i)] for i in indices]
    found = calibrate(load_predictor(path), [s["image"] for s in samples], np.stack([s["keypoints"] for s in samples]))
    if found.calibration is not None:
        update_meta(path, confidence_calibration=list(found.calibration), confidence_signal=found.signal)
    return found


def ranking_report(confidence, failed, share: float = 0.1) -> dict:
    """How well ``confidence`` ranks ``failed`` faces low: the failure rate among the ``share`` least
    confident faces and among the rest (ties broken by position, stable)."""
    confidence = np.asarray(confidence, dtype=np.float64).reshape(-1)
    failed = np.asarray(failed, dtype=bool).reshape(-1)
    if confidence.shape != failed.shape or len(confidence) < 2:
        raise ValueError(f"ranking_report: expected two arrays of the same length >= 2, got {confidence.shape}, {failed.shape}")
    if not 0.0 < share < 1.0:
        raise ValueError(f"ranking_report: share must be in (0, 1), got {share}")
    order = np.argsort(confidence, kind="stable")
    k = int(np.ceil(share * len(order)))
    return {
        "faces": int(len(order)),
        "least_confident": k,
        "failure_rate_least_confident": float(failed[order[:k]].mean()),
        "failure_rate_rest": float(failed[order[k:]].mean()),
        "failure_rate_all": float(failed.mean()),
    }
