"""keypoints against dlib, whole pipeline against whole pipeline, on the 770 test photos.

    pip install -e ".[bench]"            # dlib-bin and face-recognition-models (the 68-point model file)
    python benchmarks/compare_dlib.py [--data DIR] [--model CKPT] [--speed fast] [--refine-passes N] [--no-test-frames]
                                      [--closeup-passes N] [--refine-tolerance T] [--limit N] [--detector haar+profile]
                                      [--larger-photos N]
                                      [--json out.json]

Each tool runs as its users run it, photo in, points out: keypoints with its own detector, framing, network
and refinement (``keypoints.predict_faces``); dlib with its HOG face detector (one upsampling, as its
examples) and ``shape_predictor_68_face_landmarks.dat``. In each photo the face whose box centre is nearest
the true face's centre (the mean of its 68 points) is scored. Printed side by side: photos where each tool
found that face, NME mean / median / p90 / failure rate (NME > 10 %) on the photos where *both* found it (and
on all photos each tool found), and the median and mean milliseconds per photo (detection included; the mean
counts the photos a pipeline reads twice in full, where the median may not). NME is the mean
point error over the distance between the true outer eye corners (points 36 and 45), as everywhere here.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tinynet  # noqa: E402,F401  (first: it configures the thread pools before NumPy loads)
import cv2  # noqa: E402
import numpy as np  # noqa: E402

INSTALL = 'pip install -e ".[bench]"   (or: pip install dlib-bin face-recognition-models)'


def dlib_pipeline():
    """``photo (H, W, 3) BGR uint8 -> [(box (4,), points (68, 2)), ...]`` with dlib, or exit with how to install."""
    try:
        import dlib
    except ImportError:
        raise SystemExit(f"compare_dlib: dlib is not installed; {INSTALL}") from None
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"compare_dlib: the 68-point model (package face-recognition-models) is missing; {INSTALL}")
    # the package's own locator imports pkg_resources, which new setuptools no longer ship: find the file directly
    model = Path(spec.submodule_search_locations[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not model.is_file():
        raise SystemExit(f"compare_dlib: {model} not found; {INSTALL}")
    detector, shape_predictor = dlib.get_frontal_face_detector(), dlib.shape_predictor(str(model))

    def run(photo: np.ndarray) -> list:
        rgb = cv2.cvtColor(photo, cv2.COLOR_BGR2RGB)
        faces = []
        for rect in detector(rgb, 1):
            shape = shape_predictor(rgb, rect)
            points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
            faces.append((np.array([rect.left(), rect.top(), rect.width(), rect.height()]), points))
        return faces

    return run


def keypoints_pipeline(model: str | None, detector: str, refine_passes: int | None, test_frames: bool = True,
                       closeup_passes: int | None = None, speed: str = "accurate", flip: bool | None = None,
                       refine_tolerance: float | None = None):
    from keypoints.predictor import load_predictor
    from keypoints.wild.faces import predict_faces

    predictor = load_predictor(model, flip=flip, refine_passes=refine_passes, test_frames=None if test_frames else (),
                               closeup_passes=closeup_passes, speed=speed, refine_tolerance=refine_tolerance)

    def run(photo: np.ndarray) -> list:
        return [(face.box, face.points) for face in predict_faces(predictor, photo, detector=detector)]

    return run, predictor


def larger_photos() -> dict[str, np.ndarray]:
    """matplotlib's Grace Hopper portrait (512 x 600) and the same portrait pasted into a 1920 x 1080 frame."""
    import matplotlib.cbook as cbook

    portrait = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), cv2.IMREAD_COLOR)
    frame = np.full((1080, 1920, 3), 90, np.uint8)
    frame[200:800, 700:1212] = portrait
    return {"portrait 512x600": portrait, "frame 1920x1080": frame}


def time_larger_photos(tools: dict, repeat: int) -> dict:
    """Median ms per photo of each tool on :func:`larger_photos`, the tools taking turns ``repeat`` times."""
    result = {}
    for name, photo in larger_photos().items():
        seconds = {tool: [] for tool in tools}
        for run in tools.values():
            run(photo)  # warm-up
        for _ in range(repeat):
            for tool, run in tools.items():
                start = time.perf_counter()
                faces = run(photo)
                seconds[tool].append(time.perf_counter() - start)
                if len(faces) != 1:
                    raise SystemExit(f"compare_dlib: {tool} found {len(faces)} faces in the {name}, expected 1")
        result[name] = {tool: 1000 * statistics.median(values) for tool, values in seconds.items()}
    return result


def nearest_face(faces: list, true: np.ndarray):
    """The points of the face whose box centre is nearest the true face's centre, or None."""
    if not faces:
        return None
    centre = true.mean(axis=0)
    distances = [np.hypot(*(box[:2] + box[2:] / 2.0 - centre)) for box, _ in faces]
    return faces[int(np.argmin(distances))][1]


def summary(nme: np.ndarray) -> dict:
    if len(nme) == 0:
        return {"faces": 0}
    return {
        "faces": int(len(nme)),
        "nme_percent": float(100 * nme.mean()),
        "nme_median_percent": float(100 * np.median(nme)),
        "nme_p90_percent": float(100 * np.percentile(nme, 90)),
        "failure_rate_percent": float(100 * np.mean(nme > 0.10)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="data folder (else $KEYPOINTS_DATA, else ./data)")
    parser.add_argument("--model", help="keypoints checkpoint (default: the model that ships with the package)")
    from keypoints.speed import SPEEDS

    parser.add_argument("--speed", choices=SPEEDS, default="accurate",
                        help="keypoints' --speed (fast: also its detector, unless --detector is given)")
    parser.add_argument("--detector", help="keypoints' face detector (a name in keypoints.wild.detection.DETECTORS;"
                                           " default haar+profile, haar+profile-fast with --speed fast)")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="keypoints' flip averaging (default: as the checkpoint, or --speed, says)")
    parser.add_argument("--refine-passes", type=int, choices=range(5), metavar="{0..4}",
                        help="override the checkpoint's number of refinement passes")
    parser.add_argument("--no-test-frames", action="store_true",
                        help="the last refinement pass reads the canonical frame only, not the checkpoint's test frames")
    parser.add_argument("--closeup-passes", type=int, choices=range(5), metavar="{0..4}",
                        help="override how often the checkpoint's close-up stages read the eyes and mouth (0: off)")
    parser.add_argument("--refine-tolerance", type=float, metavar="T",
                        help="keypoints' Predictor.refine_tolerance: a face whose refinement frame moves its crop by"
                             " less than T of its side keeps its first read (default: as --speed says)")
    parser.add_argument("--limit", type=int, help="only the first N test photos")
    parser.add_argument("--larger-photos", type=int, default=0, metavar="N",
                        help="also time both tools N times on the 512x600 portrait and on it in a 1920x1080 frame")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    from keypoints.data import FacialKeypointsDataset, ensure_data
    from keypoints.metrics import nme_per_face

    dlib_run = dlib_pipeline()
    from keypoints.wild.commands import resolve_speed

    resolve_speed(args)  # no --detector: the one of --speed, as the photo commands choose it
    ours_run, predictor = keypoints_pipeline(args.model, args.detector, args.refine_passes, not args.no_test_frames,
                                             args.closeup_passes, args.speed, args.flip, args.refine_tolerance)
    dataset = FacialKeypointsDataset(ensure_data(args.data), "test")
    count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    tools = {"keypoints": ours_run, "dlib": dlib_run}
    points = {name: [] for name in tools}
    seconds = {name: [] for name in tools}
    def read_photo(i: int) -> np.ndarray:
        photo = cv2.imread(str(dataset.image_paths[i]), cv2.IMREAD_COLOR)  # BGR uint8, as users load photos
        if photo is None:
            raise SystemExit(f"compare_dlib: cannot read {dataset.image_paths[i]}")
        return photo

    ours_run(read_photo(0))  # warm-up: Numba kernels, the cascades' first load
    for i in range(count):
        photo = read_photo(i)
        true = dataset.keypoints[i].astype(np.float64)
        for name, run in tools.items():  # the tools take turns on each photo: drift hits both alike
            start = time.perf_counter()
            faces = run(photo)
            seconds[name].append(time.perf_counter() - start)
            points[name].append(nearest_face(faces, true))
    true_all = dataset.keypoints[:count].astype(np.float64)
    found = {name: np.array([p is not None for p in points[name]]) for name in tools}
    both = found["keypoints"] & found["dlib"]
    result = {"photos": count, "model": str(args.model or "shipped"), "detector": args.detector, "predictor": repr(predictor)}
    for name in tools:
        nme = {}
        for subset, mask in (("both", both), ("own", found[name])):
            chosen = np.flatnonzero(mask)
            pred = np.stack([points[name][i] for i in chosen]) if len(chosen) else np.zeros((0, 68, 2))
            nme[subset] = summary(nme_per_face(pred, true_all[chosen]) if len(chosen) else np.zeros(0))
        result[name] = {
            "found": int(found[name].sum()),
            "on_faces_both_found": nme["both"],
            "on_faces_it_found": nme["own"],
            "ms_per_photo_median": 1000 * statistics.median(seconds[name]),
            "ms_per_photo_mean": 1000 * statistics.mean(seconds[name]),
        }
    print(f"{count} test photos; {int(both.sum())} where both found the face; predictor {predictor!r},"
          f" detector {args.detector}")
    header = f"{'':10s} {'found':>6s} {'NME %':>7s} {'median':>7s} {'p90':>7s} {'fail %':>7s} {'ms median':>9s} {'ms mean':>8s}   on faces both found"
    print(header)
    for name in tools:
        r, b = result[name], result[name]["on_faces_both_found"]
        print(
            f"{name:10s} {r['found']:6d} {b.get('nme_percent', float('nan')):7.2f} {b.get('nme_median_percent', float('nan')):7.2f}"
            f" {b.get('nme_p90_percent', float('nan')):7.2f} {b.get('failure_rate_percent', float('nan')):7.1f}"
            f" {r['ms_per_photo_median']:9.1f} {r['ms_per_photo_mean']:8.1f}"
        )
    for name in tools:
        own = result[name]["on_faces_it_found"]
        if own["faces"]:
            print(
                f"{name}: on all {own['faces']} photos it found: NME {own['nme_percent']:.2f} %, median"
                f" {own['nme_median_percent']:.2f} %, p90 {own['nme_p90_percent']:.2f} %, failures {own['failure_rate_percent']:.1f} %"
            )
    if args.larger_photos:
        result["larger_photos_ms"] = time_larger_photos(tools, args.larger_photos)
        for name, times in result["larger_photos_ms"].items():
            print(f"{name}: " + ", ".join(f"{tool} {ms:.1f} ms" for tool, ms in times.items())
                  + f" (median of {args.larger_photos}, in turns)")
    if args.json:
        target = Path(args.json)
        partial = target.with_name(f".{target.name}.tmp")
        partial.write_text(json.dumps(result, indent=2))
        partial.replace(target)  # whole or not at all
    return 0


if __name__ == "__main__":
    sys.exit(main())
