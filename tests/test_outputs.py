"""Nothing lost: outputs never over an input, written to a temporary and renamed, training runs never
replace an earlier run unless asked, and a checkpoint write killed at any moment keeps the earlier file."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import tinynet
from keypoints.files import (
    OutputError,
    RunExistsError,
    atomic_output,
    claim_run_folder,
    refuse_input_as_output,
    remove_stale_temporaries,
    write_image,
)
from keypoints.recipes import Recipe
from keypoints.train import train
from test_wild_cli import model_path, portrait_path, run  # noqa: F401 (the CLI tests' fixtures and runner)


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------------------------------------- helpers
def test_an_output_that_is_an_input_is_refused_however_it_is_spelled(tmp_path, monkeypatch):
    photo = tmp_path / "a.png"
    photo.write_bytes(b"x")
    link = tmp_path / "link.png"
    link.symlink_to(photo)
    monkeypatch.chdir(tmp_path)
    for spelling in (photo, "a.png", "./a.png", tmp_path / "sub" / ".." / "a.png", link):
        with pytest.raises(OutputError, match="is the input"):
            refuse_input_as_output(spelling, [tmp_path / "other.png", photo])
    refuse_input_as_output(tmp_path / "b.png", [photo, None])  # a different file is fine


@pytest.mark.parametrize("stop", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_an_interrupted_write_keeps_the_old_file_and_no_temporary(tmp_path, stop):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(type(stop)):
        with atomic_output(path) as temporary:
            assert temporary.parent == tmp_path and temporary.suffix == ".txt" and temporary.name.startswith(".")
            temporary.write_text("half")
            raise stop
    assert path.read_text() == "old" and hidden(tmp_path) == []


def test_write_image_reports_a_bad_extension_or_a_folder_as_a_bad_output(tmp_path):
    image = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(OutputError, match=r"-o .*out\.nosuchformat.*extension"):
        write_image(tmp_path / "out.nosuchformat", image)
    with pytest.raises(OutputError, match="is a folder"):
        write_image(tmp_path, image)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="cannot create the folder"):
        write_image(blocker / "sub" / "x.png", image)
    assert hidden(tmp_path) == []


# ---------------------------------------------------------------------------------------------- commands
def test_predict_and_filter_refuse_to_write_over_their_input(portrait_path, model_path, tmp_path, capsys):
    photo = tmp_path / "face.jpg"
    photo.write_bytes(Path(portrait_path).read_bytes())
    before = photo.read_bytes()
    assert run("predict", photo, "--model", model_path, "-o", photo) == 2
    assert "is the input" in capsys.readouterr().err
    assert run("filter", photo, "--model", model_path, "--sunglasses", "-o", photo) == 2
    assert run("predict", photo, "--model", model_path, "--json", photo) == 2
    assert photo.read_bytes() == before
    # several inputs into their own folder: an input named like an output is not overwritten
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(before)
    cv2.imwrite(str(folder / "a_keypoints.png"), np.zeros((8, 8, 3), np.uint8))
    kept = (folder / "a_keypoints.png").read_bytes()
    assert run("predict", folder, "--model", model_path, "-o", folder) == 2
    assert (folder / "a_keypoints.png").read_bytes() == kept
    assert run("predict", photo, "--model", model_path, "-o", tmp_path / "out.nosuchformat") == 2
    assert "extension" in capsys.readouterr().err


def test_video_refuses_to_write_over_its_input_and_leaves_no_partial_output(portrait_path, model_path, tmp_path,
                                                                             capsys, monkeypatch):
    clip = tmp_path / "clip.mp4"
    portrait = cv2.resize(cv2.imread(portrait_path), (128, 150))
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (128, 150))
    for k in range(6):
        writer.write(np.roll(portrait, 2 * k, axis=1))
    writer.release()
    before = clip.read_bytes()
    assert run("video", clip, "--model", model_path, "-o", clip, "--no-progress") == 2
    assert "is the input" in capsys.readouterr().err and clip.read_bytes() == before
    # Ctrl-C in the third frame: no output file, no temporary, the old output untouched
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an earlier result")
    from keypoints.wild import video

    real, calls = video.predict_faces, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(video, "predict_faces", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run("video", clip, "--model", model_path, "-o", out, "--no-progress")
    assert out.read_bytes() == b"an earlier result" and hidden(tmp_path) == []


# ---------------------------------------------------------------------------------------------- training
def test_a_new_run_does_not_replace_an_earlier_run(tmp_path):
    (tmp_path / "best.npz").write_bytes(b"trained for hours")
    with pytest.raises(RunExistsError, match=r"earlier run \(best.npz\).*--resume.*--overwrite"):
        claim_run_folder(tmp_path)
    # train() refuses before reading any data (there is none here)
    with pytest.raises(RunExistsError):
        train(Recipe(batch_size=8, epochs=1), data=tmp_path / "no-data", out=tmp_path, show_progress=False,
              log=lambda m: None)
    assert (tmp_path / "best.npz").read_bytes() == b"trained for hours"
    claim_run_folder(tmp_path, overwrite=True)
    (tmp_path / "last.npz").write_bytes(b"state")
    claim_run_folder(tmp_path, resume=tmp_path / "last.npz")  # continuing in place
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(RunExistsError):  # resuming *into* a folder that holds another run
        claim_run_folder(tmp_path, resume=other / "last.npz")


def test_train_cli_refuses_an_earlier_run_with_one_line(tmp_path, capsys):
    from keypoints.cli import run as run_program
    from keypoints.cli import train_main

    (tmp_path / "best.npz").write_bytes(b"trained for hours")
    code = run_program(train_main, ["--out", str(tmp_path), "--data", str(tmp_path / "no-data"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "--overwrite" in err and "Traceback" not in err
    assert (tmp_path / "best.npz").read_bytes() == b"trained for hours"


def test_stale_temporaries_of_a_killed_run_are_removed_and_nothing_else(tmp_path):
    stale = [".last.npz.0123456789ab.tmp", ".best.npz.ba9876543210.tmp", ".metrics.json.aaaaaaaaaaaa.tmp.json"]
    kept = [".last.npz.notmine", "last.npz.0123456789ab.tmp", ".other.npz.0123456789ab.tmp", "notes.txt"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "last.npz").write_bytes(b"state")
    removed = claim_run_folder(tmp_path, resume=tmp_path / "last.npz")
    assert sorted(p.name for p in removed) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept + ["last.npz"])
    assert remove_stale_temporaries(tmp_path, ["last.npz"]) == []


# ---------------------------------------------------------------------------------------------- kill test
_SAVER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tinynet

    path, k = sys.argv[1], 0
    while True:  # rewrite the checkpoint forever, each version different and 4 MB (a write takes a while)
        k += 1
        tinynet.save({"version": k, "w": np.full(1_000_000, k, np.float32)}, path)
        if k == 1:
            print("ready", flush=True)
    """
)


def test_a_checkpoint_write_killed_at_any_moment_keeps_a_complete_file(tmp_path):
    """SIGKILL (nothing runs, no cleanup) at random moments of a loop of saves: every time, the checkpoint is
    a complete, loadable version and the next run's folder claim removes the temporary the kill left."""
    rng = np.random.default_rng(0)
    path = tmp_path / "last.npz"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(tinynet.__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))
    left_behind = 0
    versions = []
    for _ in range(6):
        process = subprocess.Popen([sys.executable, "-c", _SAVER, str(path)], stdout=subprocess.PIPE, env=env)
        assert process.stdout.readline() == b"ready\n"
        time.sleep(float(rng.uniform(0.0, 0.3)))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        process.stdout.close()
        checkpoint = tinynet.load(path)
        versions.append(checkpoint["version"])
        assert checkpoint["version"] >= 1
        np.testing.assert_array_equal(checkpoint["w"], np.full(1_000_000, checkpoint["version"], np.float32))
        left_behind += len(hidden(tmp_path))
        claim_run_folder(tmp_path, resume=path)
        assert hidden(tmp_path) == []
    assert max(versions) > 1, "the saver never got past its first write: the kill test tested nothing"
    assert left_behind > 0, "no kill landed during a write: the test did not exercise an interrupted save"
