"""Photos per second for many photos: ``--workers 1``, ``--workers 2`` and a 2-worker Dask LocalCluster.

    python benchmarks/bench_batch.py [--data DIR] [--limit 500] [--turns 3] [--model CKPT] [--json out.json]

The photos are the first ``--limit`` test images of the data set (in the order of
``test_frames_keypoints.csv``), read in place from ``--data`` (default ``$KEYPOINTS_DATA``). Each way runs
the whole batch (detection, keypoints, the record: ``keypoints.batch.iter_predictions``, nothing written)
``--turns`` times after a warm-up run on a few photos; the table gives the median photos/s, its ratio to
``--workers 1``, and the median seconds until the first record (the worker processes' start-up: each
``--workers`` run starts its processes, as a command does; the Dask cluster is started once, as a cluster
is, with 2 worker processes of 1 thread each).
Run it on an otherwise idle machine: the ways share the same cores.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tinynet  # noqa: E402,F401  (first: it configures the thread pools before NumPy loads)


def first_test_photos(data: str | os.PathLike, limit: int) -> list[Path]:
    """The first ``limit`` test images named by ``test_frames_keypoints.csv`` (each once), in ``data/test``."""
    from keypoints.data.csv import csv_name, read_keypoints_csv

    data = Path(data)
    names, _ = read_keypoints_csv(data / csv_name("test"))
    photos = [data / "test" / name for name in dict.fromkeys(names)][:limit]
    missing = [str(p) for p in photos if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} test images named by the CSV are missing, e.g. {missing[0]}")
    return photos


def time_run(photos: list[Path], **how) -> tuple[float, float]:
    """Seconds for the whole batch, and until the first record."""
    from keypoints.batch import iter_predictions

    start = time.perf_counter()
    first = None
    for _ in iter_predictions(photos, **how):
        first = time.perf_counter() - start if first is None else first
    return time.perf_counter() - start, first


def measure(name: str, photos: list[Path], turns: int, **how) -> dict:
    time_run(photos[: max(4, 2 * how.get("workers", 2))], **how)  # warm-up: Numba caches, the model, the cascade
    runs = [time_run(photos, **how) for _ in range(turns)]
    seconds = statistics.median(total for total, _ in runs)
    return {"way": name, "photos": len(photos), "seconds": seconds, "photos_per_second": len(photos) / seconds,
            "first_record_seconds": statistics.median(first for _, first in runs),
            "turns": [round(total, 3) for total, _ in runs]}


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table with each way's ratio to the first (``--workers 1``)."""
    base = rows[0]["photos_per_second"]
    lines = ["| way | photos | photos/s | ratio to workers=1 | first record after |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['way']} | {row['photos']} | {row['photos_per_second']:.1f} |"
                     f" {row['photos_per_second'] / base:.2f}x | {row['first_record_seconds']:.2f} s |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("KEYPOINTS_DATA"),
                        help="the facial-keypoints data folder (default $KEYPOINTS_DATA)")
    parser.add_argument("--limit", type=int, default=500, help="photos (default %(default)s)")
    parser.add_argument("--turns", type=int, default=3, help="timed runs per way (default %(default)s)")
    parser.add_argument("--model", default=os.environ.get("KEYPOINTS_MODEL"), help="default: the shipped model")
    parser.add_argument("--no-dask", action="store_true", help="skip the LocalCluster")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    if not args.data:
        parser.error("give --data DIR or set KEYPOINTS_DATA to the facial-keypoints data folder")
    if args.limit < 1 or args.turns < 1:
        parser.error("--limit and --turns must be at least 1")

    from keypoints.batch import PredictOptions, available_cores

    photos = first_test_photos(args.data, args.limit)
    options = PredictOptions(model=args.model)
    rows = [measure("--workers 1", photos, args.turns, options=options, workers=1),
            measure("--workers 2", photos, args.turns, options=options, workers=2)]
    if not args.no_dask:
        import distributed

        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                      dashboard_address=None) as cluster, distributed.Client(cluster) as client:
            rows.append(measure("LocalCluster, 2 processes x 1 thread", photos, args.turns, options=options,
                                client=client))
    print(f"{len(photos)} test photos from {args.data}, {available_cores()} cores, median of {args.turns} turns")
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"cores": available_cores(), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
