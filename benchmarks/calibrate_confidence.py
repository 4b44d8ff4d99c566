"""Calibrate the per-face confidence on a model's validation faces and report how it ranks the test faces.

    python benchmarks/calibrate_confidence.py [--data DIR] [--model CKPT] [--flip | --no-flip] [--share 0.1] [--write]

1. The validation faces: the 10 % of the training set the model's recipe held out (``val_fraction``,
   split with ``seed`` by ``keypoints.recipes.validation_split``, as training splits), read as the checkpoint
   says (``--flip``/``--no-flip`` override its flip averaging).
2. The disagreement of each face's reads (``keypoints.wild.confidence``: the spread of the last pass's test
   frames when the model reads them, else the flip disagreement) and whether its NME is at most 10 %; a
   logistic fit of one on the log of the other gives the calibration ``(a, b)``
   (``keypoints.wild.confidence.calibrate``, what training runs at its end). ``--write`` stores it in the
   checkpoint (``meta.confidence_calibration``, ``meta.confidence_signal``; and ``meta.flip_test`` when
   ``--flip``/``--no-flip`` is given), for a checkpoint trained before training did so.
3. The test faces: confidence with the fitted calibration, then the failure rate (NME > 10 %) among the
   ``share`` least confident faces against the rest, and predicted against observed success by fifths.

Takes about a minute on 2 cores (1116 faces, each read as the model's predictor reads it).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from keypoints.checkpoint import update_meta
from keypoints.data import FacialKeypointsDataset
from keypoints.metrics import FAILURE_THRESHOLD
from keypoints.predictor import PRETRAINED, load_predictor
from keypoints.recipes import recipe_from_dict, validation_split
from keypoints.wild.confidence import calibrate, confidence_from_disagreement, ranking_report


def faces(dataset: FacialKeypointsDataset, indices) -> tuple[list, np.ndarray]:
    samples = [dataset[int(i)] for i in indices]
    return [s["image"] for s in samples], np.stack([s["keypoints"] for s in samples])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("KEYPOINTS_DATA", "data"))
    parser.add_argument("--model", default=str(PRETRAINED))
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="flip averaging (default: as the checkpoint says)")
    parser.add_argument("--share", type=float, default=0.1, help="the least confident share of the test faces")
    parser.add_argument("--write", action="store_true", help="store the fit in the checkpoint (meta.confidence_calibration)")
    args = parser.parse_args()

    start = time.perf_counter()
    predictor = load_predictor(args.model, flip=args.flip)
    recipe = predictor.meta.get("recipe", {})
    if not recipe.get("val_fraction"):
        raise SystemExit(f"{args.model}: its recipe held out no validation faces (val_fraction 0): nothing to calibrate on")
    training = FacialKeypointsDataset(args.data, "training")
    _, val = validation_split(len(training), recipe_from_dict(recipe))  # the faces its training held out
    fitted = calibrate(predictor, *faces(training, val))
    if fitted.calibration is None:
        raise SystemExit(f"no calibration: {fitted.reason}")
    print(f"validation: {len(val)} faces read {predictor!r}, NME {100 * np.mean(fitted.nme):.2f} %, failure rate"
          f" {100 * np.mean(fitted.nme > FAILURE_THRESHOLD):.1f} %; signal {fitted.signal}")
    print(f"  fitted (a, b) = ({fitted.calibration[0]:.4f}, {fitted.calibration[1]:.4f});"
          f" in the checkpoint: {predictor.meta.get('confidence_calibration')}")
    if args.write:
        flip = {} if args.flip is None else {"flip_test": args.flip}
        update_meta(args.model, confidence_calibration=list(fitted.calibration), confidence_signal=fitted.signal, **flip)
        print(f"  written to {args.model} (meta.confidence_calibration, meta.confidence_signal{', meta.flip_test' * bool(flip)})")

    test = FacialKeypointsDataset(args.data, "test")
    result = calibrate(predictor, *faces(test, np.arange(len(test))))  # its fit is not used: only d and NME
    failed = result.nme > FAILURE_THRESHOLD
    confidence = confidence_from_disagreement(result.disagreement, fitted.calibration)
    report = ranking_report(confidence, failed, args.share)
    print(
        f"test: {report['faces']} faces, NME {100 * np.mean(result.nme):.2f} %, failure rate {100 * report['failure_rate_all']:.1f} %;"
        f" the {report['least_confident']} least confident ({100 * args.share:g} %):"
        f" {100 * report['failure_rate_least_confident']:.1f} % fail, the rest: {100 * report['failure_rate_rest']:.1f} %"
    )
    # how well the probability is calibrated: predicted against observed success, in five bins
    edges = np.quantile(confidence, np.linspace(0, 1, 6))
    bins = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, 4)
    for k in range(5):
        chosen = bins == k
        print(f"  confidence {edges[k]:.2f}-{edges[k + 1]:.2f}: mean {confidence[chosen].mean():.2f},"
              f" observed NME <= 10 % in {100 * np.mean(~failed[chosen]):.0f} % of {chosen.sum()} faces")
    print(f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
