"""Int8 against float32 weights in the Linear layers (``tinynet.nn.quantize_int8``): the layer, and photo to points.

    python benchmarks/bench_int8.py [--repeat 20] [--photos 300] [--rounds 3]

1. The 6400 -> 1000 layer of NaimishNet-96 for 1 to 64 input rows: ``Linear`` (NumPy's product on BLAS's own
   threads, as inference runs it) against ``Int8Linear``, medians of ``--repeat`` calls taken in turns.
2. With ``--photos N`` (needs the data: ``--data``, ``KEYPOINTS_DATA`` or ``./data``): ``predict_faces`` with
   ``--speed fast`` on the first N test photos, float weights against int8, each in a fresh process (the cache
   a process leaves behind is part of what int8 changes), the two taking turns ``--rounds`` times.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tinynet  # noqa: E402  (first: it configures the thread pools before NumPy loads)
import numpy as np  # noqa: E402

from tinynet import nn  # noqa: E402


def layer_rows(repeat: int) -> None:
    rng = np.random.default_rng(0)
    linear = nn.Linear(6400, 1000, rng=rng).eval()
    int8 = nn.Int8Linear.from_linear(linear).eval()
    print(f"Linear 6400 -> 1000, median of {repeat} calls in turns (ms)")
    print(f"{'rows':>5} {'float32':>9} {'int8':>9} {'ratio':>7}")
    with tinynet.no_grad():
        for rows in (1, 2, 4, 8, 16, 64):
            x = rng.standard_normal((rows, 6400)).astype(np.float32)
            linear(x), int8(x)  # warm-up (and the kernel's first compile)
            times: tuple[list, list] = ([], [])
            for _ in range(repeat):
                for layer, bucket in ((linear, times[0]), (int8, times[1])):
                    start = time.perf_counter()
                    layer(x)
                    bucket.append(time.perf_counter() - start)
            a, b = (1000 * statistics.median(t) for t in times)
            print(f"{rows:>5} {a:>9.3f} {b:>9.3f} {a / b:>6.2f}x", flush=True)


def photos_worker(data: str | None, photos: int, int8: bool) -> float:
    """Median ms of ``predict_faces`` (``--speed fast``, its detector) on the first ``photos`` test photos."""
    import cv2

    from keypoints.data import FacialKeypointsDataset, ensure_data
    from keypoints.predictor import load_predictor
    from keypoints.wild.detection import FAST_DETECTOR
    from keypoints.wild.faces import predict_faces

    predictor = load_predictor(speed="fast", int8_linears=int8)
    dataset = FacialKeypointsDataset(ensure_data(data), "test")
    images = [cv2.imread(str(path), cv2.IMREAD_COLOR) for path in dataset.image_paths[:photos]]
    predict_faces(predictor, images[0], detector=FAST_DETECTOR)  # warm-up
    seconds = []
    for image in images:
        start = time.perf_counter()
        predict_faces(predictor, image, detector=FAST_DETECTOR)
        seconds.append(time.perf_counter() - start)
    return 1000 * statistics.median(seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--photos", type=int, default=0, help="also time photo to points on this many test photos")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", help="data folder (else $KEYPOINTS_DATA, else ./data)")
    parser.add_argument("--worker", choices=("float", "int8"), help=argparse.SUPPRESS)  # one process of part 2
    args = parser.parse_args(argv)
    if args.worker:
        print(photos_worker(args.data, args.photos, args.worker == "int8"))
        return 0
    layer_rows(args.repeat)
    if args.photos:
        medians: dict[str, list] = {"float": [], "int8": []}
        command = [sys.executable, __file__, "--photos", str(args.photos)] + (["--data", args.data] if args.data else [])
        for _ in range(args.rounds):
            for kind in medians:
                done = subprocess.run(command + ["--worker", kind], capture_output=True, text=True, check=True)
                medians[kind].append(float(done.stdout.split()[-1]))
        print(f"predict_faces --speed fast, median ms per photo over the first {args.photos} test photos, "
              f"{args.rounds} rounds in turns:")
        for kind, values in medians.items():
            print(f"  {kind:6s} " + ", ".join(f"{value:.1f}" for value in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
