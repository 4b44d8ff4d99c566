"""How far the exported ONNX network is from tinynet's on the real test faces.

    python benchmarks/onnx_parity.py [--model CKPT] [--data DIR] [--limit N]

Exports the checkpoint (default: the shipped model) with ``keypoints.export``, then runs the 770 test faces'
centre crops (what ``python -m keypoints evaluate`` reads first: ``Predictor.preprocess``) through tinynet,
OpenCV's DNN module and onnxruntime (if installed), and prints the largest and mean absolute differences of
the outputs (normalised units, and in crop pixels). No timing: the figures do not depend on the machine's load.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

import tinynet
from keypoints.data import ensure_data
from keypoints.evaluate import load_split
from keypoints.export import export_onnx
from keypoints.predictor import load_predictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="checkpoint (default: the shipped model)")
    parser.add_argument("--data", help="data folder (else $KEYPOINTS_DATA, else ./data)")
    parser.add_argument("--limit", type=int, help="only the first N test faces")
    args = parser.parse_args()
    predictor = load_predictor(args.model)
    images, _, _ = load_split(ensure_data(args.data), "test", args.limit)
    crops = np.stack([predictor.preprocess(image)[0] for image in images])[:, None]  # (N, 1, S, S)
    with tinynet.no_grad():
        expected = np.concatenate([predictor.model(crops[i : i + 64]) for i in range(0, len(crops), 64)])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        export_onnx(path, args.model)
        net = cv2.dnn.readNetFromONNX(str(path))
        net.setInput(crops)
        outputs = {f"cv2.dnn {cv2.__version__}": net.forward()}
        try:
            import onnxruntime
        except ImportError:
            print("onnxruntime is not installed: OpenCV only")
        else:
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            outputs[f"onnxruntime {onnxruntime.__version__}"] = session.run(None, {"input": crops})[0]
    pixels = 50.0 * predictor.input_size / 224.0  # one normalised unit in crop pixels
    print(f"{len(crops)} test faces, outputs in [{expected.min():.3f}, {expected.max():.3f}]")
    for engine, out in outputs.items():
        difference = np.abs(out.astype(np.float64) - expected)
        print(f"{engine}: max |difference| {difference.max():.3g} (mean {difference.mean():.3g}),"
              f" {difference.max() * pixels:.3g} crop pixels")


if __name__ == "__main__":
    main()
