"""How fast is keypoints in the wild? Face detection per image, keypoints per face (batches of 1 and 64).

    python benchmarks/bench_predict.py [--model CKPT] [--repeat 5] [--json out.json]

Without ``--model`` (or ``$KEYPOINTS_MODEL``) the model that ships with the package is timed (the
cost does not depend on the weights). When PyTorch is importable, the same network in PyTorch (2
threads, weights copied) is timed beside tinynet's on the same batches. Inputs are matplotlib's Grace Hopper portrait (512 x 600) and the same portrait
pasted into a 1920 x 1080 frame (detection runs on it shrunk to 1024 pixels); the keypoint batches
are her framed face crop repeated. Every measurement is the median of ``--repeat`` runs after one
warm-up run (which also compiles the Numba kernels).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import sys

sys.path.insert(0, str(Path(__file__).resolve().parent))  # torch_reference.py beside this file
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tinynet  # noqa: E402,F401  (first: it configures the thread pools before NumPy loads)
import cv2  # noqa: E402
import numpy as np  # noqa: E402


def median_seconds(function, repeat: int) -> float:
    function()  # warm-up: Numba compilation, caches, the cascade's first load
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load(model: str | None):
    from keypoints.predictor import load_predictor

    if model:
        return load_predictor(model), model
    from keypoints.predictor import PRETRAINED

    if PRETRAINED.is_file():
        return load_predictor(), str(PRETRAINED)
    from keypoints.models import naimishnet
    from keypoints.checkpoint import save_weights
    from keypoints.recipes import RECIPES

    path = Path(tempfile.mkdtemp()) / "untrained.npz"
    save_weights(path, RECIPES["reference"], naimishnet(96, seed=0).state_dict(), 1, 0.0)
    return load_predictor(path), "untrained NaimishNet-96"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("KEYPOINTS_MODEL"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()

    import matplotlib.cbook as cbook

    from keypoints.wild.detection import detect_faces
    from keypoints.wild.face_crop import crop_face, pad_box
    from keypoints.wild.faces import predict_faces
    from keypoints.image import to_gray_float32

    predictor, name = load(args.model)
    portrait = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), cv2.IMREAD_COLOR)
    frame = np.full((1080, 1920, 3), 90, np.uint8)
    frame[200:800, 700:1212] = portrait
    (box,) = detect_faces(portrait)
    crop = crop_face(to_gray_float32(portrait), pad_box(box))

    results = {"model": name, "predictor": repr(predictor), "tinynet_threads": tinynet.blas.get_num_threads()}
    results["detect_ms_portrait_512x600"] = 1000 * median_seconds(lambda: detect_faces(portrait), args.repeat)
    results["detect_ms_frame_1920x1080"] = 1000 * median_seconds(lambda: detect_faces(frame), args.repeat)
    for batch in (1, 64):
        crops = [crop] * batch
        repeat = args.repeat if batch == 1 else max(1, args.repeat // 2)
        seconds = median_seconds(lambda: predictor.predict(crops), repeat)
        results[f"keypoints_ms_per_face_batch{batch}"] = 1000 * seconds / batch
    batch = np.stack([predictor.preprocess(crop)[0]] * 64)[:, None]  # (64, 1, S, S): the network alone
    from tinynet import no_grad

    def network():
        with no_grad():
            predictor.model(batch)

    results["network_ms_per_face_batch64"] = 1000 * median_seconds(network, max(1, args.repeat // 2)) / 64
    one = np.ascontiguousarray(batch[:1])

    def network_one():
        with no_grad():
            predictor.model(one)

    results["network_ms_batch1"] = 1000 * median_seconds(network_one, args.repeat)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        from torch_reference import torch_twin

        torch.set_num_threads(2)
        twin = torch_twin(predictor.model)
        with torch.no_grad():
            difference = np.abs(twin(torch.from_numpy(batch)).numpy() - predictor.model(batch)).max()
        results["torch_version"] = torch.__version__
        results["torch_max_abs_difference"] = float(difference)
        for size, key, repeat in ((64, "torch_network_ms_per_face_batch64", max(1, args.repeat // 2)), (1, "torch_network_ms_batch1", args.repeat)):
            inputs = torch.from_numpy(np.ascontiguousarray(batch[:size]))

            def torch_network():
                with torch.no_grad():
                    twin(inputs)

            results[key] = 1000 * median_seconds(torch_network, repeat) / size
    results["pipeline_ms_portrait"] = 1000 * median_seconds(lambda: predict_faces(predictor, portrait), args.repeat)

    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value:.2f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
