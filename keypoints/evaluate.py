"""``python -m keypoints evaluate CKPT``: test-set accuracy of a checkpoint, deterministically.

Each of the 770 test images (or the test split of a ``.pts`` folder, ``keypoints.data.pts``) goes through ``Predictor`` (grayscale, rescale, centre crop, network,
mapping back) and is scored in its original pixels; see ``keypoints.metrics`` for the measures.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import DataError, open_split
from .metrics import summarize
from .predictor import Predictor, load_predictor
from .geometry import apply_affine, normalize_keypoints


def load_split(data_dir: str | Path, split: str = "test", limit: int | None = None, data_format: str = "csv"):
    """``(images, keypoints (N, K, 2), names)`` of a split (``data_format``: ``keypoints.data.open_split``),
    images as float32 gray arrays."""
    dataset = open_split(data_dir, split, data_format)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    samples = [dataset[i] for i in range(count)]
    return [s["image"] for s in samples], np.stack([s["keypoints"] for s in samples]), [s["name"] for s in samples]


def evaluate_predictor(predictor: Predictor, data_dir: str | Path, limit: int | None = None,
                       data_format: str = "csv") -> dict:
    """Metrics of ``predictor`` on the test split (the first ``limit`` faces if given)."""
    images, true, _ = load_split(data_dir, "test", limit, data_format)
    if true.shape[1] != predictor.num_points:
        raise DataError(f"{data_dir}: the test faces have {true.shape[1]} points, the model predicts {predictor.num_points}")
    prediction = predictor.predict_details(images)
    true_crop = apply_affine(true.astype(np.float64), prediction.affines)  # (N, K, 2) in crop pixels
    true_norm = normalize_keypoints(true_crop, predictor.input_size).reshape(len(true), -1)
    metrics = summarize(prediction.points, true, prediction.normalized, true_norm)
    metrics["flip_test"] = predictor.flip
    metrics["refine_passes"] = predictor.refine_passes
    metrics["refine_tolerance"] = predictor.refine_tolerance  # faces framed this well already keep their first read
    metrics["test_frames"] = [list(frame) for frame in predictor.test_frames]  # read in the last pass
    metrics["input_size"] = predictor.input_size
    metrics["closeup"] = predictor.closeup_reads()  # region -> reads
    metrics["int8_linears"] = predictor.int8_linears
    return metrics


def evaluate_checkpoint(path: str | Path, data_dir: str | Path, flip: bool | None = None, limit: int | None = None,
                        data_format: str = "csv") -> dict:
    metrics = evaluate_predictor(load_predictor(path, flip=flip), data_dir, limit, data_format)
    metrics["checkpoint"] = str(path)
    return metrics
