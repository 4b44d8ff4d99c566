"""Calibrate the per-face confidence on the validation faces and report how it ranks the test faces.

    python benchmarks/calibrate_confidence.py [--data DIR] [--model CKPT] [--share 0.1]

1. The validation faces: the 10 % of the training set the model's recipe held out (``val_fraction``,
   split with ``seed``, exactly as ``keypoints.train`` splits), predicted with flip averaging.
2. The flip disagreement of each face (``keypoints.wild.confidence.flip_disagreement``) and whether its
   NME is at most 10 %; a logistic fit of one on the log of the other gives ``CALIBRATION`` (printed, to
   paste into keypoints/wild/confidence.py when the shipped model changes).
3. The test faces: confidence with the fitted calibration, then the failure rate (NME > 10 %) among the
   ``share`` least confident faces against the rest.

Takes about a minute on 2 cores (1116 faces, two network passes each).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from keypoints.data import FacialKeypointsDataset
from keypoints.metrics import FAILURE_THRESHOLD, nme_per_face
from keypoints.predictor import PRETRAINED, load_predictor
from keypoints.wild.confidence import (
    CALIBRATION,
    confidence_from_disagreement,
    fit_calibration,
    flip_disagreement,
    ranking_report,
)


def disagreement_and_nme(predictor, dataset: FacialKeypointsDataset, indices) -> tuple[np.ndarray, np.ndarray]:
    """``(N,)`` flip disagreements and ``(N,)`` NMEs of the faces at ``indices``."""
    samples = [dataset[int(i)] for i in indices]
    prediction = predictor.predict_details([s["image"] for s in samples])
    true = np.stack([s["keypoints"] for s in samples])
    return flip_disagreement(prediction.plain, prediction.mirrored), nme_per_face(prediction.points, true)


def validation_indices(n: int, recipe: dict) -> np.ndarray:
    """The training-set indices ``keypoints.train`` held out for validation (sorted)."""
    order = np.random.default_rng([int(recipe["seed"])]).permutation(n)
    return np.sort(order[: int(round(float(recipe["val_fraction"]) * n))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("KEYPOINTS_DATA", "data"))
    parser.add_argument("--model", default=str(PRETRAINED))
    parser.add_argument("--share", type=float, default=0.1, help="the least confident share of the test faces")
    args = parser.parse_args()

    start = time.perf_counter()
    predictor = load_predictor(args.model, flip=True)
    recipe = predictor.meta.get("recipe", {})
    if not recipe.get("val_fraction"):
        raise SystemExit(f"{args.model}: its recipe held out no validation faces (val_fraction 0): nothing to calibrate on")
    training = FacialKeypointsDataset(args.data, "training")
    val = validation_indices(len(training), recipe)
    d_val, nme_val = disagreement_and_nme(predictor, training, val)
    calibration = fit_calibration(d_val, nme_val <= FAILURE_THRESHOLD)
    print(f"validation: {len(val)} faces, failure rate {100 * np.mean(nme_val > FAILURE_THRESHOLD):.1f} %")
    print(f"  fitted CALIBRATION = ({calibration[0]:.4f}, {calibration[1]:.4f});"
          f" in keypoints/wild/confidence.py: {CALIBRATION}")

    test = FacialKeypointsDataset(args.data, "test")
    d_test, nme_test = disagreement_and_nme(predictor, test, np.arange(len(test)))
    failed = nme_test > FAILURE_THRESHOLD
    for name, cal in (("fitted", calibration), ("shipped", CALIBRATION)):
        confidence = confidence_from_disagreement(d_test, cal)
        report = ranking_report(confidence, failed, args.share)
        print(
            f"test ({name} calibration): {report['faces']} faces, failure rate {100 * report['failure_rate_all']:.1f} %;"
            f" the {report['least_confident']} least confident ({100 * args.share:g} %):"
            f" {100 * report['failure_rate_least_confident']:.1f} % fail, the rest: {100 * report['failure_rate_rest']:.1f} %"
        )
    # how well the probability is calibrated: predicted against observed success, in five bins
    confidence = confidence_from_disagreement(d_test, CALIBRATION)
    edges = np.quantile(confidence, np.linspace(0, 1, 6))
    bins = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, 4)
    for k in range(5):
        chosen = bins == k
        print(f"  confidence {edges[k]:.2f}-{edges[k + 1]:.2f}: mean {confidence[chosen].mean():.2f},"
              f" observed NME <= 10 % in {100 * np.mean(~failed[chosen]):.0f} % of {chosen.sum()} faces")
    print(f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
