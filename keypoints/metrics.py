"""Keypoint accuracy measures.

NME (normalised mean error) is the field's standard: for one face, the mean over its points of the
Euclidean error, divided by a length of the true face so that faces of every size count alike. For the 68
iBUG points that length is the inter-ocular distance (outer eye corners, points 36 and 45, 0-based); for any
other number of points, whose eyes we cannot name, it is the diagonal of the true points' bounding box
(:func:`nme_normalization` says which). We report it in percent, averaged over faces, with its median, 90th
percentile and the failure rate (share of faces with NME above 10 %).
"""
from __future__ import annotations

import numpy as np

from .geometry import NUM_KEYPOINTS

LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 36, 45
FAILURE_THRESHOLD = 0.10
#: what ``nme_normalization`` answers, and what ``summarize`` records as ``nme_normalization``
INTEROCULAR, BOX_DIAGONAL = "interocular", "box_diagonal"


def nme_normalization(num_points: int) -> str:
    """:data:`INTEROCULAR` (outer eye corners 36, 45) for the 68 iBUG points, else :data:`BOX_DIAGONAL`."""
    return INTEROCULAR if num_points == NUM_KEYPOINTS else BOX_DIAGONAL


def interocular_distance(true: np.ndarray) -> np.ndarray:
    """``(N, 68, 2) -> (N,)`` distance between the true outer eye corners."""
    return np.linalg.norm(true[:, LEFT_EYE_OUTER] - true[:, RIGHT_EYE_OUTER], axis=-1)


def box_diagonal(true: np.ndarray) -> np.ndarray:
    """``(N, K, 2) -> (N,)`` diagonal ``sqrt(w^2 + h^2)`` of each face's true points' bounding box."""
    return np.linalg.norm(true.max(axis=1) - true.min(axis=1), axis=-1)


def nme_per_face(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """``(N, K, 2), (N, K, 2) -> (N,)``: mean point error of each face over its inter-ocular distance
    (``K = 68``) or its true points' box diagonal (any other ``K``; :func:`nme_normalization`)."""
    if pred.shape != true.shape or pred.ndim != 3 or pred.shape[2] != 2:
        raise ValueError(f"nme_per_face: expected two arrays of shape (N, K, 2), got {pred.shape} and {true.shape}")
    true = true.astype(np.float64)
    errors = np.linalg.norm(pred.astype(np.float64) - true, axis=-1).mean(axis=1)
    if nme_normalization(true.shape[1]) == INTEROCULAR:
        distance, degenerate = interocular_distance(true), "coincident outer eye corners (points 36 and 45)"
    else:
        distance, degenerate = box_diagonal(true), "true points that all coincide (a zero box diagonal)"
    if np.any(distance <= 0):
        raise ValueError(f"nme_per_face: a face has {degenerate}")
    return errors / distance


def summarize(pred: np.ndarray, true: np.ndarray, pred_norm: np.ndarray | None = None, true_norm: np.ndarray | None = None) -> dict:
    """Metrics of a test run as a JSON-able dict.

    ``pred``/``true``: ``(N, K, 2)`` in original image pixels. ``pred_norm``/``true_norm``: the same
    points in normalised crop coordinates (what the network outputs), for the nMSE.
    """
    nme = nme_per_face(pred, true)
    result = {
        "faces": int(len(nme)),
        "nme_percent": float(100 * nme.mean()),
        "nme_median_percent": float(100 * np.median(nme)),
        "nme_p90_percent": float(100 * np.percentile(nme, 90)),
        "failure_rate_percent": float(100 * np.mean(nme > FAILURE_THRESHOLD)),
        "nme_normalization": nme_normalization(true.shape[1]),
    }
    if pred_norm is not None and true_norm is not None:
        result["nmse"] = float(np.mean((pred_norm.astype(np.float64) - true_norm.astype(np.float64)) ** 2))
    return result


def format_metrics(metrics: dict) -> str:
    text = (
        f"NME {metrics['nme_percent']:.2f} % (median {metrics['nme_median_percent']:.2f} %,"
        f" p90 {metrics['nme_p90_percent']:.2f} %), failures (NME > 10 %) {metrics['failure_rate_percent']:.1f} %"
        f" of {metrics['faces']} faces"
    )
    if "nmse" in metrics:
        text += f", nMSE {metrics['nmse']:.4f}"
    if metrics.get("nme_normalization") == BOX_DIAGONAL:
        text += "; NME over the true points' box diagonal"
    return text
