"""Many photos (keypoints.batch): worker processes and a Dask LocalCluster give the records, and the bytes,
of the single process; a worker that dies mid-photo costs that photo only; JSON Lines output resumes after a
kill, without a torn line, and refuses a file written with other settings.

The photos: matplotlib's Grace Hopper portrait, mirrored, shrunk, twice side by side (two faces: the network
reads a batch, where OpenBLAS's thread count shows in the last digits), a gray wall (no face) and a text file
named .jpg (not an image). The model is the shipped one."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import keypoints
from keypoints.batch import PredictOptions, one_blas_thread, predict_files, predict_photo, threads_per_worker
from keypoints.batch.pool import TEST_EXIT_CODE, TEST_EXIT_VARIABLE
from keypoints.engine import choose_engine, engine_flags
from keypoints.wild import cli as wild_cli
from keypoints.wild.formats import JsonlStream, settings_path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_batch  # noqa: E402
from keypoint_fixtures import write_dataset  # noqa: E402
PHOTOS = ["notes.jpg", "pair.jpg", "portrait.jpg", "portrait_mirrored.jpg", "portrait_small.jpg", "wall.png"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    cbook = pytest.importorskip("matplotlib.cbook")
    folder = tmp_path_factory.mktemp("photos")
    portrait = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), cv2.IMREAD_COLOR)
    cv2.imwrite(str(folder / "portrait.jpg"), portrait)
    cv2.imwrite(str(folder / "portrait_mirrored.jpg"), portrait[:, ::-1])
    small = cv2.resize(portrait, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(folder / "portrait_small.jpg"), small)
    cv2.imwrite(str(folder / "pair.jpg"), np.hstack([portrait, portrait[:, ::-1]]))
    cv2.imwrite(str(folder / "wall.png"), np.full((120, 160, 3), 128, np.uint8))
    (folder / "notes.jpg").write_text("not a photo\n")
    assert sorted(p.name for p in folder.iterdir()) == PHOTOS
    return folder


def run(*argv) -> int:
    return wild_cli.main([str(a) for a in argv])


@pytest.fixture(scope="module")
def single(photos, tmp_path_factory) -> bytes:
    """``--workers 1`` (the in-process loop) as JSON Lines: the reference every other way must match."""
    out = tmp_path_factory.mktemp("single") / "faces.jsonl"
    assert run("predict", photos, "--format", "jsonl", "--json", out, "--no-progress", "--workers", "1") == 0
    return out.read_bytes()


def records_of(jsonl: bytes) -> list[dict]:
    return [json.loads(line) for line in jsonl.decode().splitlines()]


def test_benchmark_reads_the_first_test_photos_in_csv_order_and_tabulates(tmp_path):
    """bench_batch's choice of photos (in place, each once) and its table, on a generated data set."""
    data = write_dataset(tmp_path, n_train=2, n_test=4)
    names = [line.split(",")[0] for line in (data / "test_frames_keypoints.csv").read_text().splitlines()[1:]]
    assert bench_batch.first_test_photos(data, 3) == [data / "test" / name for name in names[:3]]
    (data / "test" / names[1]).unlink()
    with pytest.raises(FileNotFoundError, match=f"1 test images .* missing, e.g. .*{names[1]}"):
        bench_batch.first_test_photos(data, 3)
    rows = [{"way": "--workers 1", "photos": 20, "photos_per_second": 8.0, "first_record_seconds": 0.1},
            {"way": "--workers 2", "photos": 20, "photos_per_second": 12.0, "first_record_seconds": 2.5}]
    assert bench_batch.table(rows).splitlines()[2:] == ["| --workers 1 | 20 | 8.0 | 1.00x | 0.10 s |",
                                                        "| --workers 2 | 20 | 12.0 | 1.50x | 2.50 s |"]


def test_threads_per_worker_share_the_cores():
    assert [threads_per_worker(n, cores=2) for n in (1, 2, 3)] == [2, 1, 1]
    assert [threads_per_worker(n, cores=8) for n in (1, 2, 3, 8, 9)] == [8, 4, 2, 1, 1]


def test_a_record_holds_what_the_public_api_finds(photos, single):
    """predict_photo against keypoints.predict_faces called directly, and the single run's order and errors."""
    records = records_of(single)
    assert [Path(r["path"]).name for r in records] == PHOTOS
    errors = {Path(r["path"]).name: r["error"] for r in records}
    assert errors["notes.jpg"] == "not an image OpenCV can decode" and errors["wall.png"] == "no face found"
    assert [len(r["faces"]) for r in records] == [0, 2, 1, 1, 1, 0]

    predictor = keypoints.load_predictor()
    photo = cv2.imread(str(photos / "pair.jpg"), cv2.IMREAD_COLOR)
    # as predict_photo reads faces: one OpenBLAS thread (its results depend on its thread count), and the engine
    # --engine auto picks for this many photos (NumPy and the Numba kernels differ in the last float32 bits)
    with one_blas_thread(), engine_flags(choose_engine("auto", len(PHOTOS))):
        faces = sorted(keypoints.predict_faces(predictor, photo), key=lambda face: face.box[0])
    assert records[1]["height"] == 600 and records[1]["width"] == 1024 and records[1]["reduced"] == 1
    got = sorted(records[1]["faces"], key=lambda face: face["box"][0])
    for face, expected in zip(got, faces):
        np.testing.assert_allclose(face["points"], expected.points, atol=5e-4)  # rounded to 3 decimals
        assert face["box"] == [int(v) for v in expected.box]
    failed = predict_photo(predictor, photos / "notes.jpg", PredictOptions())
    assert failed.failure == f"{photos / 'notes.jpg'}: not an image OpenCV can decode" and failed.faces == 0


class Begun:
    """The photos whose reading has begun on the faces-ahead thread, in order (``find_faces`` watched)."""

    def __init__(self, monkeypatch):
        import keypoints.batch.ahead as ahead_module

        self.names: list[str] = []
        self.changed = threading.Condition()
        real = ahead_module.find_faces

        def find_faces(path, *args):
            with self.changed:
                self.names.append(Path(path).name)
                self.changed.notify_all()
            return real(path, *args)

        monkeypatch.setattr(ahead_module, "find_faces", find_faces)

    def wait_for(self, count: int) -> bool:
        """Whether ``count`` photos have begun within 10 s."""
        with self.changed:
            return self.changed.wait_for(lambda: len(self.names) >= count, timeout=10)


def test_the_next_photo_is_read_while_the_network_reads_this_one_with_the_same_records(photos, monkeypatch):
    import keypoints.batch as batch

    paths = [photos / name for name in PHOTOS] + [photos / "portrait.jpg"]  # a photo twice is read twice
    predictor = keypoints.load_predictor()
    options = dataclasses.replace(PredictOptions(), engine=choose_engine("auto", len(paths)))
    expected = [predict_photo(predictor, path, options).record for path in paths]  # each photo alone, in turn
    begun = Begun(monkeypatch)
    real_read_faces, overlapped = batch.read_faces, []

    def read_faces(*args):
        # photo k is in the network's hands: photo k + 1 has begun on the other thread (a loop that read the photos
        # one after the other would wait here in vain)
        k = len(overlapped)
        overlapped.append(k + 1 == len(paths) or begun.wait_for(k + 2))
        return real_read_faces(*args)

    monkeypatch.setattr(batch, "read_faces", read_faces)
    results = list(batch.iter_predictions(paths, PredictOptions(), predictor=predictor))
    assert overlapped == [True] * len(paths) and begun.names == [path.name for path in paths]
    assert [r.record for r in results] == expected
    assert results[0].failure == f"{photos / 'notes.jpg'}: not an image OpenCV can decode"
    assert [r.faces for r in results] == [0, 2, 1, 1, 1, 0, 1]


def test_predict_reads_the_first_photo_while_the_model_loads(photos, tmp_path, monkeypatch):
    begun = Begun(monkeypatch)
    real_load, first_begun = wild_cli.load_model, []

    def load_model(*args):
        first_begun.append(begun.wait_for(1))
        return real_load(*args)

    monkeypatch.setattr(wild_cli, "load_model", load_model)
    assert run("predict", photos / "portrait.jpg", "--json", tmp_path / "faces.json", "--no-progress") == 0
    assert first_begun == [True] and begun.names == ["portrait.jpg"]
    assert len(json.loads((tmp_path / "faces.json").read_text())["images"][0]["faces"]) == 1


@pytest.mark.slow
def test_worker_processes_write_the_bytes_of_one_process(photos, single, tmp_path, capsys):
    out = tmp_path / "faces.jsonl"
    assert run("predict", photos, "--format", "jsonl", "--json", out, "--workers", "2", "--no-progress") == 0
    assert out.read_bytes() == single
    err = capsys.readouterr().err
    assert f"warning: {photos / 'notes.jpg'}: not an image OpenCV can decode" in err  # reported, not fatal
    assert "2 of 6 inputs failed" in err


def test_workers_auto_is_this_process_for_a_few_photos_and_one_process_per_core_for_more():
    from keypoints.batch import AUTO_WORKERS_MIN_PHOTOS, choose_workers

    assert choose_workers("auto", 1, cores=2) == choose_workers("auto", AUTO_WORKERS_MIN_PHOTOS, cores=2) == 1
    assert choose_workers("auto", AUTO_WORKERS_MIN_PHOTOS + 1, cores=2) == 2
    assert choose_workers("auto", 500, cores=4) == 4 and choose_workers(3, 1) == 3
    for bad in (0, -2, True, "2", 1.5):
        with pytest.raises(ValueError, match="positive integer or 'auto'"):
            choose_workers(bad, 10)


@pytest.mark.slow
def test_the_default_workers_read_a_folder_on_every_core_with_the_bytes_of_one_process(photos, single, tmp_path,
                                                                                       capsys, monkeypatch):
    """``predict FOLDER`` without ``--workers``: above the threshold (lowered here from 32 to 2 photos) one
    process per core, saying so under -v, and the records of ``--workers 1`` to the byte."""
    from keypoints import batch

    monkeypatch.setattr(batch, "AUTO_WORKERS_MIN_PHOTOS", 2)
    out = tmp_path / "faces.jsonl"
    assert run("predict", photos, "--format", "jsonl", "--json", out, "--no-progress", "-v") == 0
    cores = batch.available_cores()
    said = capsys.readouterr()
    assert f"; {cores} process{'es' if cores != 1 else ''} (auto)" in said.err + said.out
    assert out.read_bytes() == single


@pytest.mark.slow
def test_a_worker_that_dies_mid_photo_costs_that_photo_only(photos, single, tmp_path, monkeypatch):
    """Through the API."""
    dies = tmp_path / "dies.jpg"
    shutil.copy(photos / "portrait.jpg", dies)
    monkeypatch.setenv(TEST_EXIT_VARIABLE, "dies.jpg")  # the spawned workers inherit it
    paths = sorted(photos.iterdir())
    records = predict_files(paths[:2] + [dies] + paths[2:], workers=2)
    assert records[2] == {"path": str(dies), "faces": [],
                          "error": f"the worker process died (exit code {TEST_EXIT_CODE}) while reading this photo"}
    assert records[:2] + records[3:] == records_of(single)  # every other photo, in the worker that lived or a fresh one


@pytest.mark.slow
def test_jsonl_resumes_after_a_kill_and_a_torn_line(photos, single, tmp_path):
    """A run killed (SIGKILL, workers and all) after its first lines, plus half a line as a kill inside a
    write would leave; the re-run drops the half line, skips the photos done, and the file is the single
    uninterrupted run's, byte for byte."""
    out = tmp_path / "faces.jsonl"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "keypoints", "predict", str(photos), "--format", "jsonl", "--json", str(out),
               "--no-progress"]
    run_ = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and run_.poll() is None:
            if out.is_file() and out.read_bytes().count(b"\n") >= 2:
                break
            time.sleep(0.02)
    finally:
        try:
            os.killpg(run_.pid, signal.SIGKILL)
        except ProcessLookupError:  # it finished first: the re-run then has nothing to do
            pass
        run_.wait()
    done = out.read_bytes()
    assert done.count(b"\n") >= 2 and single.startswith(done)  # whole lines, in input order
    killed_early = done != single
    with open(out, "ab") as handle:
        handle.write(b'{"path": "' + str(photos / "torn.jpg").encode()[:20])
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "dropped an incomplete last line" in result.stdout
    lines = done.count(b"\n")
    assert f"skipping {lines} photo" in result.stdout
    assert out.read_bytes() == single
    assert killed_early or "nothing to do" in result.stdout


SETTINGS = {"model": "m.npz", "model_sha256": "ab", "detector": "haar", "max_side": 1024, "max_pixels": 10,
            "flip": True, "min_confidence": None}


def test_jsonl_stream_refuses_what_it_cannot_resume(tmp_path):
    out = tmp_path / "faces.jsonl"
    stream = JsonlStream(str(out), SETTINGS)
    stream.write({"path": "a.jpg", "faces": [], "error": "no face found"})
    stream.write({"path": "b.jpg", "faces": [], "error": None})
    stream.close()
    assert out.read_text() == '{"path": "a.jpg", "faces": [], "error": "no face found"}\n' \
                              '{"path": "b.jpg", "faces": [], "error": null}\n'
    assert json.loads(settings_path(out).read_text()) == SETTINGS

    again = JsonlStream(str(out), dict(SETTINGS, model="elsewhere/m.npz"))  # same digest: the same model moved
    assert again.done == {"a.jpg", "b.jpg"} and again.notes == [f"{out}: resuming, 2 photos already recorded"]
    again.close()
    with pytest.raises(ValueError, match=r"detector 'haar', now 'haar\+profile'.*--overwrite"):
        JsonlStream(str(out), dict(SETTINGS, detector="haar+profile"))
    with pytest.raises(ValueError, match="model_sha256 'ab', now 'cd'"):
        JsonlStream(str(out), dict(SETTINGS, model_sha256="cd"))
    fresh = JsonlStream(str(out), dict(SETTINGS, model_sha256="cd"), overwrite=True)
    assert fresh.done == set() and out.read_text() == ""
    fresh.close()

    foreign = tmp_path / "theirs.jsonl"
    foreign.write_text('{"path": "a.jpg"}\n')
    with pytest.raises(ValueError, match="without theirs.jsonl.run.json"):
        JsonlStream(str(foreign), SETTINGS)
    settings_path(foreign).write_text(json.dumps(SETTINGS))
    foreign.write_text('{"path": "a.jpg"}\nnot json\n{"path": "c.jpg"}\n')
    with pytest.raises(ValueError, match="line 2 is not a photo record"):
        JsonlStream(str(foreign), SETTINGS)
    foreign.write_text('{"path": "a.jpg"}\n{"path": "c.j')  # a torn last line: dropped, the rest kept
    torn = JsonlStream(str(foreign), SETTINGS)
    torn.close()
    assert torn.done == {"a.jpg"} and foreign.read_text() == '{"path": "a.jpg"}\n'
    assert "dropped an incomplete last line (13 bytes" in torn.notes[0]


def test_a_scheduler_that_is_not_there_is_an_error_not_a_hang(photos, capsys):
    pytest.importorskip("distributed")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    code = run("predict", photos / "portrait.jpg", "--scheduler", f"tcp://127.0.0.1:{port}", "--scheduler-timeout", "1")
    assert code == 2 and time.monotonic() - start < 15
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: --scheduler tcp://127.0.0.1:{port}: no Dask scheduler answered within 1 s")
    assert run("predict", photos / "portrait.jpg", "--scheduler", "tcp://127.0.0.1:1", "--workers", "2") == 2
    assert "choose one" in capsys.readouterr().err


def test_scheduler_without_dask_says_how_to_install_it(photos, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    assert run("predict", photos / "portrait.jpg", "--scheduler", "tcp://127.0.0.1:8786") == 2
    assert capsys.readouterr().err.strip() == ('error: --scheduler needs dask.distributed, which is not installed:'
                                               ' pip install -e ".[dask]" (or pip install "dask[distributed]")')


# ---------------------------------------------------------------------------------------------- Dask
@pytest.fixture(scope="module")
def cluster():
    """Two worker processes, one thread each, on 127.0.0.1; a worker handed ``dies.jpg`` exits (the hook is
    in the workers' environment from their start), and the scheduler gives up on a task at its first death
    (``allowed-failures`` 0, default 3: each death would cost a worker restart). With 0, a photo that
    merely waits on the worker that dies fails too, so the scheduler neither moves waiting photos between
    workers (work stealing once put one behind the photo that kills) nor sends a worker more than one."""
    distributed = pytest.importorskip("distributed")
    import dask

    saved = os.environ.get(TEST_EXIT_VARIABLE)
    os.environ[TEST_EXIT_VARIABLE] = "dies.jpg"
    try:
        with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                              "distributed.scheduler.work-stealing": False,
                              "distributed.scheduler.worker-saturation": 1.0}):
            local = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                             dashboard_address=None)
    finally:
        if saved is None:
            os.environ.pop(TEST_EXIT_VARIABLE, None)
        else:
            os.environ[TEST_EXIT_VARIABLE] = saved
    client = distributed.Client(local, set_as_default=False)
    yield local, client
    client.close()
    local.close()


@pytest.mark.slow
def test_dask_cluster_gives_the_records_of_one_process(cluster, photos, single, tmp_path, monkeypatch,
                                                                 capsys):
    local, client = cluster
    monkeypatch.chdir(photos.parent)  # relative paths: the workers read them against this folder
    out = tmp_path / "faces.jsonl"
    assert run("predict", photos.name, "--format", "jsonl", "--json", out, "--scheduler", local.scheduler_address,
               "--no-progress") == 0
    expected = [dict(r, path=str(Path(photos.name) / Path(r["path"]).name)) for r in records_of(single)]
    assert records_of(out.read_bytes()) == expected
    capsys.readouterr()


@pytest.mark.slow
def test_dask_worker_that_dies_mid_photo_costs_that_photo_only(cluster, photos, single, tmp_path):
    """Through the API: predict_files(paths, client=...). The photo that kills its worker comes last, so no
    other photo is waiting on that worker when it dies (one that was would be failed too, by the fixture's
    allowed-failures 0; with Dask's default 3 it would be retried). Results the dead worker held are
    recomputed by the scheduler."""
    local, client = cluster
    shutil.copy(photos / "portrait.jpg", tmp_path / "dies.jpg")
    records = predict_files(sorted(photos.iterdir()) + [tmp_path / "dies.jpg"], client=client)
    assert records[-1] == {"path": str(tmp_path / "dies.jpg"), "faces": [], "error": "the Dask worker process died"
                           " (the scheduler gave up on this task) while reading this photo"}
    assert records[:-1] == records_of(single)
