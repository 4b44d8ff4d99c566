"""Tests for keypoints.cli: ``python -m keypoints evaluate``, the training script's options and how its
flags build (or, with ``--resume``, refuse to change) a recipe."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from keypoint_fixtures import METRIC_KEYS, write_checkpoint, write_dataset

from keypoints.cli import build_recipe, main, train_main, train_parser
from keypoints.models import naimishnet
from keypoints.checkpoint import TrainState, save_checkpoint
from keypoints.recipes import DEFAULT_AUGMENT, RECIPES, Recipe, build_optimizer
from keypoints.train import snapshot
from tinynet.optim import CosineAnnealingLR

TRAIN_FLAGS = ("--size", "--epochs", "--batch-size", "--lr", "--loss", "--augment", "--val-fraction", "--seed",
               "--limit", "--out", "--resume", "--recipe")


def run_module(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "KEYPOINTS_DATA"}
    return subprocess.run([sys.executable, "-m", "keypoints", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def data_and_checkpoint(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp("cli") / "data", n_train=2, n_test=4)
    checkpoint = root.parent / "best.npz"
    write_checkpoint(checkpoint)
    return root, checkpoint


@pytest.fixture(scope="module")
def training_checkpoint(tmp_path_factory):
    """A last.npz as training writes it (after one epoch), made without training."""
    path = tmp_path_factory.mktemp("resume") / "last.npz"
    recipe = dataclasses.replace(RECIPES["default"], name="default+custom", epochs=3, batch_size=8, lr=2e-3)
    model = naimishnet(96, seed=0, head=recipe.head)
    state = TrainState(epoch=1, history=[{"epoch": 1, "train_loss": 1.0}], best_loss=1.0, best_epoch=1,
                       best_model=snapshot(model))
    optimizer = build_optimizer(model, recipe)
    scheduler = CosineAnnealingLR(optimizer, T_max=recipe.epochs * 10, eta_min=recipe.min_lr)  # as its recipe says
    save_checkpoint(path, recipe, model, optimizer, scheduler, state)
    return path, recipe


# ---------------------------------------------------------------------------------------------------
# python -m keypoints evaluate
# ---------------------------------------------------------------------------------------------------


def test_evaluate_json(data_and_checkpoint, tmp_path):
    root, checkpoint = data_and_checkpoint
    result = run_module("evaluate", str(checkpoint), "--data", str(root), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    metrics = json.loads(lines[0])
    assert isinstance(metrics, dict) and set(METRIC_KEYS) <= set(metrics)
    assert metrics["faces"] == 4 and metrics["checkpoint"] == str(checkpoint) and metrics["flip_test"] is False
    assert all(np.isfinite(metrics[key]) for key in METRIC_KEYS)


@pytest.mark.parametrize("photo, code", [("portrait", 0), ("missing.jpg", 1)])
def test_python_m_keypoints_runs_atexit_and_flushes_before_its_quick_exit(tmp_path, photo, code):
    """``python -m keypoints`` ends with ``os._exit`` once the command returns: the ``atexit`` functions still run,
    stdout (a pipe: block-buffered) arrives whole, and the exit code is the command's."""
    cbook = pytest.importorskip("matplotlib.cbook")
    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False) if photo == "portrait" else tmp_path / photo
    program = ("import atexit, runpy, sys; atexit.register(lambda: print('atexit ran', file=sys.stderr));"
               "sys.argv = ['keypoints', 'predict', sys.argv[1], '--json', '-', '--no-progress'];"
               "runpy.run_module('keypoints', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", program, str(path)], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)
    assert done.returncode == code, done.stderr
    assert done.stderr.rstrip().endswith("atexit ran")
    faces = [len(image["faces"]) for image in json.loads(done.stdout)["images"]]
    assert faces == ([1] if code == 0 else [0])


def test_evaluate_missing_checkpoint_exits_2(data_and_checkpoint, tmp_path):
    root, _ = data_and_checkpoint
    missing = tmp_path / "nowhere" / "best.npz"
    result = run_module("evaluate", str(missing), "--data", str(root), cwd=tmp_path)
    assert result.returncode == 2
    assert "error:" in result.stderr and str(missing) in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_evaluate_not_a_checkpoint_exits_2(data_and_checkpoint, tmp_path, capsys):
    root, _ = data_and_checkpoint
    bogus = tmp_path / "bogus.npz"
    np.savez(bogus, x=np.zeros(2))
    assert main(["evaluate", str(bogus), "--data", str(root)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "bogus.npz" in err


def test_evaluate_text_and_flip_flag(data_and_checkpoint, capsys):
    root, checkpoint = data_and_checkpoint
    assert main(["evaluate", str(checkpoint), "--data", str(root), "--flip", "--limit", "2"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"{checkpoint}: NME ") and "of 2 faces" in out and out.endswith("(flip-averaged)")


def test_evaluate_speed_fast_says_it_reads_with_int8_linear_layers(data_and_checkpoint, capsys):
    root, checkpoint = data_and_checkpoint
    assert main(["evaluate", str(checkpoint), "--data", str(root), "--speed", "fast", "--limit", "2"]) == 0
    assert capsys.readouterr().out.strip().endswith("(int8 Linear layers)")
    assert main(["evaluate", str(checkpoint), "--data", str(root), "--limit", "2", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["int8_linears"] is False and plain["refine_tolerance"] == 0.0
    # with a refinement pass, fast says it skips it for the faces framed well already
    assert main(["evaluate", str(checkpoint), "--data", str(root), "--speed", "fast", "--refine-passes", "1",
                 "--limit", "2"]) == 0
    assert capsys.readouterr().out.strip().endswith(
        "(1 refinement pass(es) (not where the frame moves less than 5 % of the crop), int8 Linear layers)")
    # --refine-tolerance overrides the speed's, and is checked where it enters
    assert main(["evaluate", str(checkpoint), "--data", str(root), "--refine-passes", "1", "--refine-tolerance", "0.2",
                 "--limit", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["refine_tolerance"] == 0.2
    with pytest.raises(SystemExit):
        main(["evaluate", str(checkpoint), "--refine-tolerance", "1"])
    assert "--refine-tolerance: expected a value in [0, 1), got 1" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# the training script's options
# ---------------------------------------------------------------------------------------------------


def test_train_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in TRAIN_FLAGS:
        assert flag in text, flag
    # `python -m keypoints train --help` is the same parser: everything after the usage lines (which name
    # the command typed) is the same text
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    typed = capsys.readouterr().out
    assert typed.startswith("usage: python -m keypoints train") and text.startswith("usage: train_keypoints.py")
    assert typed.split("\n\n", 1)[1] == text.split("\n\n", 1)[1]


def test_flags_override_the_recipe():
    parse = train_parser().parse_args
    assert build_recipe(parse([])) == RECIPES["default"]
    assert build_recipe(parse(["--recipe", "reference"])) == RECIPES["reference"]
    recipe = build_recipe(parse(["--recipe", "reference", "--size", "224", "--epochs", "3", "--batch-size", "8",
                                 "--lr", "0.01", "--loss", "l1", "--augment", "--val-fraction", "0.2",
                                 "--seed", "5"]))
    assert recipe == Recipe(name="reference+custom", size=224, epochs=3, batch_size=8, lr=0.01, loss="l1",
                            augment=DEFAULT_AUGMENT, val_fraction=0.2, seed=5)
    assert build_recipe(parse(["--no-augment"])).augment == {}


def test_bad_flag_value_is_a_clear_error():
    with pytest.raises(SystemExit, match="batch_size"):
        train_main(["--batch-size", "1", "--data", "unused"])


def test_resume_keeps_the_recipe_and_may_grow_epochs(training_checkpoint):
    path, saved = training_checkpoint
    parse = train_parser().parse_args
    assert build_recipe(parse(["--resume", str(path)])) == saved
    assert build_recipe(parse(["--resume", str(path), "--epochs", "9"])) == dataclasses.replace(saved, epochs=9)
    # repeating the saved values is not a change
    assert build_recipe(parse(["--resume", str(path), "--lr", "0.002", "--augment"])) == saved


@pytest.mark.parametrize("flags, field", [(["--lr", "0.01"], "lr"), (["--no-augment"], "augment"),
                                          (["--batch-size", "16", "--epochs", "5"], "batch_size"),
                                          (["--loss", "mse"], "loss")])
def test_resume_with_a_changed_recipe_flag_is_refused(training_checkpoint, flags, field):
    path, _ = training_checkpoint
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--resume", str(path), *flags])
    message = str(exit_info.value.code)
    assert "--resume" in message and field in message and "--epochs" in message


def test_resume_from_a_missing_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "last.npz"
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--resume", str(missing)])
    assert str(exit_info.value.code).startswith("error:") and str(missing) in str(exit_info.value.code)


def test_resume_from_an_inference_checkpoint_is_refused(data_and_checkpoint):
    _, checkpoint = data_and_checkpoint  # best.npz: weights only, no optimizer state
    with pytest.raises(SystemExit, match="last.npz"):
        train_main(["--resume", str(checkpoint)])


# ---------------------------------------------------------------------------------------------------
# --resume from a run of another architecture; --debug before or after the command
# ---------------------------------------------------------------------------------------------------


@pytest.fixture
def classic_run(tmp_path):
    """A run folder as an interrupted run leaves it: last.npz (naimishnet(96), classic head) and a log."""
    out = tmp_path / "run"
    out.mkdir()
    recipe = dataclasses.replace(RECIPES["reference"], head="classic", size=96, schedule="constant", epochs=3)
    model = naimishnet(96, seed=0, head="classic")
    state = TrainState(epoch=1, history=[{"epoch": 1, "train_loss": 1.0}], best_loss=1.0, best_epoch=1,
                       best_model=snapshot(model))
    save_checkpoint(out / "last.npz", recipe, model, build_optimizer(model, recipe), None, state)
    (out / "metrics.json").write_text('{"epoch": 1}\n')
    return out


def files_of(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("flags, saved, asked", [
    (["--head", "dropout-last"], "head='classic'", "head='dropout-last'"),
    (["--size", "224"], "size=96", "size=224"),
    (["--size", "224", "--head", "dropout-last"], "head='classic', size=96", "head='dropout-last', size=224"),
])
def test_resume_asking_for_another_architecture_ends_with_one_line_and_exit_2(
        classic_run, data_and_checkpoint, flags, saved, asked, capsys):
    from keypoints.cli import run

    root, _ = data_and_checkpoint
    before = files_of(classic_run)
    last = classic_run / "last.npz"
    argv = ["train", "--resume", str(last), "--data", str(root), "--out", str(classic_run), "--no-progress", *flags]
    assert run(main, argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert line == (f"error: --resume {last}: the checkpoint's recipe fixes {saved}; the flags ask for {asked}"
                    " (a run continues with its own recipe: only --epochs may change)")
    assert files_of(classic_run) == before


def test_resume_from_a_checkpoint_whose_recipe_and_weights_disagree_exits_2(classic_run, data_and_checkpoint, capsys):
    import tinynet
    from keypoints.cli import run

    root, _ = data_and_checkpoint
    last = classic_run / "last.npz"
    checkpoint = tinynet.load(last)
    checkpoint["meta"]["recipe"]["head"] = "dropout-last"  # the weights are still the classic head's
    tinynet.save(checkpoint, last)
    before = files_of(classic_run)
    assert run(main, ["train", "--resume", str(last), "--data", str(root), "--out", str(classic_run)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (f"error: {last}: meta.recipe asks for naimishnet(96) with the 'dropout-last' head, but the saved"
                    " network is naimishnet(96) with the 'classic' head")
    assert files_of(classic_run) == before


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_before_or_after_the_command_shows_the_exception(data_and_checkpoint, tmp_path, where, capsys):
    from keypoints.checkpoint import CheckpointError
    from keypoints.cli import run

    root, _ = data_and_checkpoint
    bogus = tmp_path / "bogus.npz"
    np.savez(bogus, x=np.zeros(2))
    photo = tmp_path / "x.jpg"
    commands = {
        "evaluate": (["evaluate", str(bogus), "--data", str(root)], CheckpointError),
        "predict": (["predict", str(photo), "--model", str(bogus)], CheckpointError),
        "show-maps": (["show-maps", "--model", str(bogus), "--image", str(photo), "--layer", "0",
                       "-o", str(tmp_path / "m.png")], CheckpointError),
        "train": (["train", "--resume", str(tmp_path / "missing.npz"), "--data", str(root)], FileNotFoundError),
    }
    for name, (argv, error) in commands.items():
        assert run(main, argv) == 2, name  # without --debug: one line
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("error: "), name
        with pytest.raises(error):  # with it, the exception itself (a traceback, for a developer)
            run(main, ["--debug", *argv] if where == "before" else [*argv, "--debug"])


def test_resume_reads_the_checkpoint_once_and_hands_it_to_train(classic_run, data_and_checkpoint, monkeypatch):
    import keypoints.checkpoint
    import keypoints.cli as cli_module
    import keypoints.train

    root, _ = data_and_checkpoint
    real_read, reads, handed = keypoints.checkpoint.read_checkpoint, [], {}

    def counting_read(*args, **kwargs):
        reads.append(args[0])
        return real_read(*args, **kwargs)

    def fake_train(recipe, **kwargs):
        handed.update(kwargs, recipe=recipe)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "read_checkpoint", counting_read)
    monkeypatch.setattr(keypoints.train, "train", fake_train)
    last = classic_run / "last.npz"
    assert train_main(["--resume", str(last), "--data", str(root), "--out", str(classic_run), "--no-progress"]) == 130
    assert reads == [str(last)] and handed["resume"] == str(last)
    assert handed["resumed"]["epoch"] == 1 and handed["recipe"].head == "classic"


def test_train_usage_names_the_command_that_was_typed(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--lr", "nan"])
    assert "usage: python -m keypoints train" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_main(["--lr", "nan"])
    assert "usage: train_keypoints.py" in capsys.readouterr().err
