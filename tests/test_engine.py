"""keypoints.engine: which engine runs the network of the photo commands (``--engine auto|numpy|numba``).

``auto`` is NumPy for a handful of photos, so a first ``python -m keypoints predict photo.jpg`` neither
imports nor compiles Numba; the engine of a run is decided once and every worker gets it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keypoints.batch import PredictOptions, iter_predictions, predict_files
from keypoints.engine import AUTO_NUMPY_MAX_PHOTOS, choose_engine, engine_flags

ROOT = Path(__file__).resolve().parents[1]
#: runs ``python -m keypoints ARGS`` and says on standard error whether Numba was imported by the end
WRAPPER = """
import atexit, runpy, sys
atexit.register(lambda: print("numba imported:", "numba" in sys.modules, file=sys.stderr))
sys.argv = ["keypoints"] + sys.argv[1:]
runpy.run_module("keypoints", run_name="__main__")
"""


def test_auto_is_numpy_for_a_handful_of_photos_and_numba_for_more_or_a_video():
    assert choose_engine("auto", 1) == "numpy"
    assert choose_engine("auto", AUTO_NUMPY_MAX_PHOTOS) == "numpy"
    assert choose_engine("auto", AUTO_NUMPY_MAX_PHOTOS + 1) == "numba"
    assert choose_engine("auto", None) == "numba"  # a video
    assert choose_engine("numba", 1) == "numba" and choose_engine("numpy", 10_000) == "numpy"
    with pytest.raises(ValueError, match="engine must be one of auto, numpy, numba, got 'cuda'"):
        choose_engine("cuda", 1)
    with pytest.raises(ValueError, match="got 'auto'"):
        engine_flags("auto")  # must be resolved first
    with pytest.raises(ValueError, match="PredictOptions: engine must be one of auto, numpy, numba, got 'gpu'"):
        PredictOptions(engine="gpu")
    with pytest.raises(ValueError, match="PredictOptions: speed must be one of accurate, fast, got 'turbo'"):
        PredictOptions(speed="turbo")


def test_the_engine_is_decided_once_for_every_worker(monkeypatch, tmp_path):
    """iter_predictions resolves ``auto`` from the whole run's photo count before the workers get the options
    (left to each worker, ``auto`` would see one photo at a time and always pick NumPy)."""
    import keypoints.batch.pool as pool

    seen = []
    monkeypatch.setattr(pool, "pool_predictions", lambda paths, outputs, options, workers: seen.append(options) or [])
    many = [tmp_path / f"{k}.jpg" for k in range(AUTO_NUMPY_MAX_PHOTOS + 1)]
    list(iter_predictions(many, PredictOptions(), workers=2))
    list(iter_predictions(many[:2], PredictOptions(), workers=2))
    list(iter_predictions(many[:2], PredictOptions(engine="numba"), workers=2))
    assert [options.engine for options in seen] == ["numba", "numpy", "numba"]


@pytest.mark.slow
def test_a_photo_is_predicted_without_numba_from_an_empty_kernel_cache(tmp_path):
    """The first ``predict`` of a photo on a machine: nothing of Numba imported, nothing compiled (the cache
    stays empty), and the points those of the Numba engine within float32 rounding."""
    cbook = pytest.importorskip("matplotlib.cbook")
    portrait = str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    cache, out = tmp_path / "numba-cache", tmp_path / "faces.json"
    cache.mkdir()
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    env.pop("TINYNET_NUMBA", None)
    done = subprocess.run([sys.executable, "-c", WRAPPER, "predict", portrait, "--json", str(out), "-v"],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "engine: numpy (auto, 1 photo)" in done.stdout
    assert "numba imported: False" in done.stderr
    assert list(cache.iterdir()) == []
    numpy_faces = json.loads(out.read_text())["images"][0]["faces"]
    numba_faces = predict_files([portrait], engine="numba")[0]["faces"]
    assert len(numpy_faces) == len(numba_faces) == 1
    assert numpy_faces[0]["box"] == numba_faces[0]["box"]
    for got, expected in zip(numpy_faces[0]["points"], numba_faces[0]["points"]):
        # pixels: the engines' outputs differ by float32 rounding, and cv2.warpAffine samples each refinement and
        # close-up frame on a 1/32-pixel grid, so a difference of 1e-6 can move a sample to the next grid position
        # and every later read starts from points that moved (0.007 px measured; the ONNX example's tests allow 0.05)
        assert got == pytest.approx(expected, abs=0.05)


def test_a_resumed_run_keeps_the_engine_of_the_whole_run(tmp_path, capsys):
    """``auto`` decides from every photo of the run, not from those a resumed JSON Lines run has left: 34 photos
    are Numba's whether 34 or 30 remain (from the 30 left, NumPy would write the last decimals differently)."""
    import cv2
    import numpy as np

    from keypoints.wild import cli as wild_cli

    folder = tmp_path / "photos"
    folder.mkdir()
    count = AUTO_NUMPY_MAX_PHOTOS + 2
    for k in range(count):  # noise: no face, so the run is quick and writes a record per photo
        cv2.imwrite(str(folder / f"{k:02d}.png"), np.random.default_rng(k).integers(0, 256, (40, 40), dtype=np.uint8))
    out = tmp_path / "run.jsonl"
    argv = ["predict", str(folder), "--format", "jsonl", "--json", str(out), "--workers", "1", "--no-progress", "-v"]
    assert wild_cli.main(argv) == 1  # no face in any photo
    assert f"engine: numba (auto, {count} photos)" in capsys.readouterr().out
    lines = out.read_text().splitlines()
    assert len(lines) == count
    out.write_text("\n".join(lines[:4]) + "\n")  # an interrupted run: 4 photos recorded
    wild_cli.main(argv)
    said = capsys.readouterr().out
    assert "skipping 4 photos already in" in said and f"engine: numba (auto, {count} photos)" in said
    assert len(out.read_text().splitlines()) == count


def test_show_maps_runs_the_network_without_numba_by_default(tmp_path):
    """``show-maps`` reads one image: ``auto`` is NumPy there too (no Numba import, no compiling on a first run);
    ``--engine numba`` still loads the kernels."""
    cbook = pytest.importorskip("matplotlib.cbook")
    portrait = str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    env.pop("TINYNET_NUMBA", None)
    for engine, imported in (("auto", False), ("numba", True)):
        command = ["show-maps", "--image", portrait, "--layer", "0", "-o", str(tmp_path / f"{engine}.png"),
                   "--engine", engine]
        done = subprocess.run([sys.executable, "-c", WRAPPER, *command], capture_output=True, text=True, env=env,
                              timeout=300, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert f"numba imported: {imported}" in done.stderr
        assert (tmp_path / f"{engine}.png").stat().st_size > 0
