"""How long does ``python -m keypoints predict photo.jpg`` take from start to end, cold and warm?

    python benchmarks/bench_start.py [--repeat 5] [--engines default numba] [--repo DIR] [--no-forward] [--json out.json]

Each run is a fresh process timed from outside (wall time, interpreter start-up included) on matplotlib's Grace
Hopper portrait (512 x 600, one face). *Cold*: an empty Numba kernel cache (``NUMBA_CACHE_DIR`` a new empty
folder every run), as the first run after ``pip install``; *warm*: a cache filled by one run before. Python's
bytecode cache is written and used in both (as for an installed package), whatever ``PYTHONDONTWRITEBYTECODE``. Each
engine is one row: ``default`` passes no ``--engine`` (what a user types; ``auto`` for one photo is NumPy),
``numba``/``numpy``/``auto`` pass ``--engine``. ``--repo DIR`` times another checkout (``PYTHONPATH=DIR``),
e.g. main before this change (``--engines default`` there, it has no ``--engine``). Medians of ``--repeat``,
against issue 12's bar: cold under 3 s, warm under 0.8 s.

Then, unless ``--no-forward``, the shipped network alone in this process on 1/4/8/64 crops of 96x96 for each
engine (median ms of ``--repeat`` after a warm-up, one OpenBLAS thread as ``predict`` reads faces).
Run it on a quiet machine: every figure is a wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BAR_SECONDS = {"cold": 3.0, "warm": 0.8}
CROPS = (1, 4, 8, 64)


def portrait() -> str:
    import matplotlib.cbook as cbook

    return str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def predict_seconds(repo: Path, engine: str, cache: Path, photo: str, out: Path) -> float:
    """Wall seconds of one ``python -m keypoints predict photo`` in a fresh process with ``cache`` as kernel cache."""
    command = [sys.executable, "-m", "keypoints", "predict", photo, "--json", str(out), "--no-progress"]
    if engine != "default":
        command += ["--engine", engine]
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(repo))
    # Python's own bytecode cache as an installed package has it (pip compiles it at install): a setting that
    # forbids writing it would make every run compile each module's source again (0.1 s for keypoints + tinynet)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=out.parent)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
    return seconds


def start_times(repo: Path, engines: list[str], repeat: int) -> list[dict]:
    """One row per engine: median cold and warm seconds of ``repeat`` runs each."""
    photo, rows = portrait(), []
    with tempfile.TemporaryDirectory(prefix="bench_start-") as scratch:
        scratch = Path(scratch)
        out = scratch / "faces.json"
        for engine in engines:
            cold = []
            for run in range(repeat):
                cache = scratch / f"cold-{engine}-{run}"
                cache.mkdir()
                cold.append(predict_seconds(repo, engine, cache, photo, out))
            warm_cache = scratch / f"warm-{engine}"
            warm_cache.mkdir()
            predict_seconds(repo, engine, warm_cache, photo, out)  # fills the cache
            warm = [predict_seconds(repo, engine, warm_cache, photo, out) for _ in range(repeat)]
            rows.append({"engine": engine, "cold_s": statistics.median(cold), "warm_s": statistics.median(warm),
                         "cold_runs": cold, "warm_runs": warm})
            print(f"{engine}: cold {rows[-1]['cold_s']:.2f} s, warm {rows[-1]['warm_s']:.2f} s", file=sys.stderr)
    return rows


def forward_times(repeat: int) -> list[dict]:
    """The shipped network's forward on 1/4/8/64 crops, per engine, in this process (median ms)."""
    sys.path.insert(0, str(ROOT))
    import tinynet  # first: it configures the thread pools before NumPy loads

    import numpy as np

    from keypoints.batch import one_blas_thread
    from keypoints.predictor import load_predictor

    model = load_predictor().model
    rng = np.random.default_rng(0)
    rows = []
    with one_blas_thread(), tinynet.no_grad():
        for crops in CROPS:
            x = rng.random((crops, 1, 96, 96), dtype=np.float32)
            row = {"crops": crops}
            for engine in ("numba", "numpy"):
                with tinynet.backends.numba.flags(enabled=engine == "numba"):
                    model(x)  # warm-up (and the kernels' first load)
                    times = []
                    for _ in range(repeat):
                        start = time.perf_counter()
                        model(x)
                        times.append(time.perf_counter() - start)
                row[f"{engine}_ms"] = 1e3 * statistics.median(times)
            rows.append(row)
    return rows


def start_table(rows: list[dict]) -> str:
    lines = ["| engine | cold (s) | bar | warm (s) | bar |", "|---|---|---|---|---|"]
    for row in rows:
        marks = ["yes" if row[f"{kind}_s"] < BAR_SECONDS[kind] else "NO" for kind in ("cold", "warm")]
        lines.append(f"| {row['engine']} | {row['cold_s']:.2f} | < {BAR_SECONDS['cold']:g}: {marks[0]} |"
                     f" {row['warm_s']:.2f} | < {BAR_SECONDS['warm']:g}: {marks[1]} |")
    return "\n".join(lines)


def forward_table(rows: list[dict]) -> str:
    lines = ["| crops | numba (ms) | numpy (ms) | numpy / numba |", "|---|---|---|---|"]
    for row in rows:
        ratio = row["numpy_ms"] / row["numba_ms"]
        lines.append(f"| {row['crops']} | {row['numba_ms']:.1f} | {row['numpy_ms']:.1f} | {ratio:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per median (default %(default)s)")
    parser.add_argument("--engines", nargs="+", default=["default", "numba"],
                        choices=("default", "auto", "numpy", "numba"), help="rows to time (default: %(default)s)")
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout to time (default: this one)")
    parser.add_argument("--no-forward", action="store_true", help="skip the in-process forward times")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    if not (args.repo / "keypoints" / "__main__.py").is_file():
        parser.error(f"--repo {args.repo}: not a keypoints checkout (no keypoints/__main__.py)")
    result = {"repo": str(args.repo.resolve()), "repeat": args.repeat,
              "start": start_times(args.repo, args.engines, args.repeat)}
    print(f"python -m keypoints predict grace_hopper.jpg, {args.repo}, median of {args.repeat} fresh processes")
    print(start_table(result["start"]))
    if not args.no_forward:
        result["forward"] = forward_times(args.repeat)
        print("\nthe shipped NaimishNet-96 alone, one OpenBLAS thread, median ms")
        print(forward_table(result["forward"]))
    if args.json:
        sys.path.insert(0, str(ROOT))
        from keypoints.files import write_text

        write_text(args.json, json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
