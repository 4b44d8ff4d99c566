"""Tests for keypoints.train: recipes, the example script end to end, exact resume, divergence (NaN),
Ctrl-C, best-epoch selection and the scheduler on resume.

The network is slow on a shared 2-core machine, so the real runs use a 16-face generated data set and
batches of 8 (one or two optimizer steps per epoch). Driver-only behaviour (which epoch is kept, what is
written where, the learning-rate schedule across a resume) replaces ``run_epoch`` by a cheap stand-in
and, where the test-set evaluation is not the point, stubs it out too."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from keypoint_fixtures import METRIC_KEYS, real_data_dir, write_dataset

import keypoints.evaluate
import keypoints.report
import keypoints.train as train_module
import tinynet
from keypoints.cli import train_main
from keypoints.checkpoint import checkpoint_meta
from keypoints.recipes import DEFAULT_AUGMENT, RECIPES, Recipe, build_loss, build_optimizer
from keypoints.train import train
from tinynet.nn import BatchNorm1d, Linear, MSELoss, Sequential
from tinynet.optim import Adam

REPO = Path(__file__).resolve().parents[1]
# 16 training faces: val_fraction 0.25 -> 4 validation + 12 training faces (one batch of 8, drop_last)
RESUME_RECIPE = Recipe(name="resume", batch_size=8, epochs=2, augment=DEFAULT_AUGMENT, val_fraction=0.25, seed=3)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("tiny") / "data", n_train=16, n_test=4)


@pytest.fixture(scope="module")
def uninterrupted(tiny_data, tmp_path_factory):
    """RESUME_RECIPE trained for 2 epochs in one go."""
    out = tmp_path_factory.mktemp("uninterrupted")
    logs: list[str] = []
    metrics = train(RESUME_RECIPE, data=tiny_data, out=out, show_progress=False, log=logs.append)
    return out, metrics, logs


def assert_same_tree(a, b, path="", skip=("seconds", "train_seconds_this_run")):
    """Nested dicts/lists equal, arrays bit for bit (``np.array_equal``, same dtype)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            if key not in skip:
                assert_same_tree(a[key], b[key], f"{path}/{key}", skip)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, f"{path}/{i}", skip)
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype, path
        assert np.array_equal(a, b), f"{path}: arrays differ"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def fake_epochs(losses, step_scheduler=True):
    """A stand-in for ``run_epoch``: no forward/backward; it steps the scheduler once per batch, adds 1
    to the last layer's bias (so every epoch's weights differ) and returns the next of ``losses``."""
    values = iter(losses)

    def run_epoch(model, loader, criterion, optimizer, scheduler, progress=None, averaged=None):
        for _ in range(len(loader)):
            if scheduler is not None and step_scheduler:
                scheduler.step()
        bias = dict(model.named_parameters())["regressor.8.bias"]
        bias.data += 1.0
        return next(values)

    return run_epoch


@pytest.fixture
def stub_evaluation(monkeypatch):
    """Replace the final test-set evaluation and report by stubs that record the checkpoint they got."""
    seen = []

    def evaluate_checkpoint(path, data_dir, flip=None, limit=None, data_format="csv"):
        checkpoint = tinynet.load(path)  # fails if best.npz is missing
        seen.append(checkpoint)
        return {"checkpoint": str(path), "flip_test": bool(flip), "faces": 0}

    monkeypatch.setattr(keypoints.evaluate, "evaluate_checkpoint", evaluate_checkpoint)
    monkeypatch.setattr(keypoints.report, "write_report", lambda *args, **kwargs: None)
    return seen


# ---------------------------------------------------------------------------------------------------
# Recipes
# ---------------------------------------------------------------------------------------------------


def test_reference_recipe_is_the_classic_one():
    reference = RECIPES["reference"]
    assert (reference.size, reference.optimizer, reference.lr, reference.batch_size, reference.epochs) == (
        96, "adam", 1e-3, 64, 50)
    assert reference.loss == "mse" and not reference.augment and reference.val_fraction == 0.0
    assert reference.schedule == "constant" and reference.weight_decay == 0.0 and reference.flip_test is False
    optimizer = build_optimizer(Linear(3, 2), reference)
    assert type(optimizer) is Adam
    assert all(g["lr"] == 1e-3 and g["weight_decay"] == 0.0 for g in optimizer.param_groups)
    assert isinstance(build_loss(reference), MSELoss)
    meta = checkpoint_meta(reference)
    assert meta["input_size"] == 96 and meta["rescale"] == 107  # round(96 * 250 / 224) = round(107.14)
    # the keypoint normalisation is a function of the input size alone (keypoints.geometry): not stored
    assert "keypoint_mean" not in meta and "keypoint_std" not in meta
    assert checkpoint_meta(dataclasses.replace(reference, size=224))["rescale"] == 250


def test_weight_decay_only_on_weights():
    model = Sequential(Linear(3, 4), BatchNorm1d(4), Linear(4, 2))
    optimizer = build_optimizer(model, RECIPES["default"])
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 1e-4 and plain["weight_decay"] == 0.0
    assert sorted(p.data.shape for p in decayed["params"]) == [(2, 4), (4, 3)]
    assert len(plain["params"]) == 4  # two biases, BN weight and bias


@pytest.mark.parametrize(
    "changes",
    [dict(size=128), dict(batch_size=1), dict(epochs=0), dict(val_fraction=1.0), dict(val_fraction=-0.1),
     dict(optimizer="rmsprop"), dict(schedule="step"), dict(loss="huber"), dict(lr=0.0)],
)
def test_recipe_validation(changes):
    with pytest.raises(ValueError, match="Recipe"):
        Recipe(**changes)


# ---------------------------------------------------------------------------------------------------
# The example script, end to end
# ---------------------------------------------------------------------------------------------------


def test_example_script_smoke_run(tiny_data, tmp_path):
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "KEYPOINTS_DATA"}
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "train_keypoints.py"), "--data", str(tiny_data), "--limit", "32",
         "--epochs", "1", "--batch-size", "8", "--out", str(out), "--no-progress"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("best.npz", "last.npz", "loss_curve.png", "test_faces.png", "metrics.json"):
        assert (out / name).is_file(), name
    for name in ("loss_curve.png", "test_faces.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(METRIC_KEYS) <= set(metrics)
    assert all(isinstance(metrics[k], float) and math.isfinite(metrics[k]) for k in METRIC_KEYS)
    assert metrics["faces"] == 4 and metrics["epochs_completed"] == 1 and metrics["best_epoch"] == 1
    assert metrics["flip_test"] is True and metrics["interrupted"] is False  # the default recipe flips
    assert [h["epoch"] for h in metrics["history"]] == [1] and "val_loss" in metrics["history"][0]
    assert "NME" in result.stdout and "wrote" in result.stdout
    assert tinynet.load(out / "last.npz")["meta"]["recipe"]["batch_size"] == 8
    # 4 validation faces cannot calibrate the confidence: said, and the checkpoint has none (so no confidence)
    assert "no confidence calibration: " in result.stdout
    assert tinynet.load(out / "best.npz")["meta"].get("confidence_calibration") is None
    # the default recipe's close-up stages, trained on the same 12 faces and written into best.npz
    assert "eyes stage epoch  12/12" in result.stdout and "mouth stage epoch  12/12" in result.stdout
    best = tinynet.load(out / "best.npz")
    assert best["meta"]["closeup"] == {"eyes": {"size": 48, "side": 0.8, "width": 16, "passes": 2},
                                       "mouth": {"size": 48, "side": 1.4, "width": 16, "passes": 2}}
    assert set(best["closeup"]) == {"eyes", "mouth"}


@pytest.mark.integration
def test_example_script_smoke_run_on_the_real_data(tmp_path):
    """The issue's CI smoke run: the default recipe, 128 real faces, one epoch, end to end."""
    data = real_data_dir()
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "train_keypoints.py"), "--data", str(data), "--limit", "128",
         "--epochs", "1", "--out", str(out), "--no-progress"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["faces"] == 128 and metrics["epochs_completed"] == 1
    assert all(math.isfinite(metrics[k]) for k in METRIC_KEYS)
    assert "test (flip-averaged, 2 refinement pass(es), 4 test frames in the last pass, close-up eyes x2" in result.stdout


# ---------------------------------------------------------------------------------------------------
# Exact resume
# ---------------------------------------------------------------------------------------------------


def test_resume_equals_an_uninterrupted_run_bit_for_bit(tiny_data, uninterrupted, tmp_path):
    out_a, metrics_a, _ = uninterrupted
    out_b = tmp_path / "b"
    one_epoch = dataclasses.replace(RESUME_RECIPE, epochs=1)
    train(one_epoch, data=tiny_data, out=out_b, show_progress=False, log=lambda m: None)
    assert tinynet.load(out_b / "last.npz")["epoch"] == 1
    logs: list[str] = []
    metrics_b = train(RESUME_RECIPE, data=tiny_data, out=out_b, resume=out_b / "last.npz", show_progress=False,
                      log=logs.append)
    assert any("resumed from" in line and "after epoch 1" in line for line in logs)
    last_a, last_b = tinynet.load(out_a / "last.npz"), tinynet.load(out_b / "last.npz")
    assert last_a["epoch"] == last_b["epoch"] == 2
    assert last_a["optimizer"]["state"], "the optimizer state is empty: nothing would be compared"
    for part in ("model", "optimizer", "best_model", "history", "best_loss", "best_epoch", "scheduler"):
        assert_same_tree(last_a[part], last_b[part], part)
    assert_same_tree(tinynet.load(out_a / "best.npz")["model"], tinynet.load(out_b / "best.npz")["model"])
    assert_same_tree(metrics_a, metrics_b, skip=("train_seconds_this_run", "checkpoint"))


def test_resume_with_ema_refine_and_the_new_head_is_bit_for_bit(tiny_data, tmp_path):
    """The recipe's newer parts keep exact resume: framed crops (their extra random draws), the averaged
    weights (saved in last.npz), the batch-norm recomputation of the averaged weights and the close-up stages at
    the end."""
    recipe = dataclasses.replace(
        RESUME_RECIPE, ema=0.9, head="dropout-last", refine_passes=1, closeup=("eyes", "mouth"), closeup_epochs=2,
        augment=dict(DEFAULT_AUGMENT, refine=0.5, frame_shift=0.02, frame_zoom=0.05),
    )
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    logs: list[str] = []
    metrics_a = train(recipe, data=tiny_data, out=out_a, show_progress=False, log=logs.append)
    assert any("recomputed the batch-norm statistics" in line for line in logs)
    train(dataclasses.replace(recipe, epochs=1), data=tiny_data, out=out_b, show_progress=False, log=lambda m: None)
    metrics_b = train(recipe, data=tiny_data, out=out_b, resume=out_b / "last.npz", show_progress=False, log=lambda m: None)
    last_a, last_b = tinynet.load(out_a / "last.npz"), tinynet.load(out_b / "last.npz")
    assert int(last_a["averaged"]["n_averaged"]) == 2  # one step per epoch, two epochs
    for part in ("model", "averaged", "best_model", "history"):
        assert_same_tree(last_a[part], last_b[part], part)
    best_a, best_b = tinynet.load(out_a / "best.npz"), tinynet.load(out_b / "best.npz")
    assert_same_tree(best_a["model"], best_b["model"])
    assert best_a["meta"]["closeup"] == best_b["meta"]["closeup"] and set(best_a["closeup"]) == {"eyes", "mouth"}
    assert_same_tree(best_a["closeup"], best_b["closeup"], "closeup")
    # the kept weights are the average, with statistics of their own (not the averaged buffers)
    kept = last_a["best_model"]
    assert not np.array_equal(best_a["model"]["regressor.1.running_var"], kept["regressor.1.running_var"])
    np.testing.assert_array_equal(best_a["model"]["regressor.0.weight"], kept["regressor.0.weight"])
    assert best_a["meta"]["head"] == "dropout-last" and best_a["meta"]["refine_passes"] == 1
    assert_same_tree(metrics_a, metrics_b, skip=("train_seconds_this_run", "checkpoint"))


def test_uninterrupted_run_keeps_the_lowest_validation_loss(uninterrupted):
    out, metrics, logs = uninterrupted
    saved = json.loads((out / "metrics.json").read_text())
    history = saved["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    val = [h["val_loss"] for h in history]
    assert saved["selection"] == "validation loss" and saved["best_epoch"] == int(np.argmin(val)) + 1
    best = tinynet.load(out / "best.npz")
    assert best["epoch"] == saved["best_epoch"] and best["selection_loss"] == min(val)
    assert_same_tree(best["model"], tinynet.load(out / "last.npz")["best_model"])
    assert set(METRIC_KEYS) <= set(saved) and metrics["faces"] == 4
    assert any("keeping the lowest validation loss" in line for line in logs)


# ---------------------------------------------------------------------------------------------------
# Which epoch is kept, and the scheduler across a resume (driver only: run_epoch replaced)
# ---------------------------------------------------------------------------------------------------


def test_best_is_the_lowest_validation_loss_not_the_training_loss(tiny_data, tmp_path, monkeypatch, stub_evaluation):
    monkeypatch.setattr(train_module, "run_epoch", fake_epochs([1.0, 2.0, 3.0]))  # training loss: epoch 1 best
    val = iter([(3.0, 0.3), (1.0, 0.1), (2.0, 0.2)])  # validation loss: epoch 2 best
    monkeypatch.setattr(train_module, "evaluate_loader", lambda model, loader, criterion: next(val))
    initial_bias = train_module.naimishnet(96, seed=0).state_dict()["regressor.8.bias"]
    recipe = Recipe(batch_size=8, epochs=3, val_fraction=0.25)
    metrics = train(recipe, data=tiny_data, out=tmp_path, show_progress=False, log=lambda m: None)
    assert metrics["best_epoch"] == 2 and metrics["selection"] == "validation loss"
    best = tinynet.load(tmp_path / "best.npz")
    assert best["epoch"] == 2 and best["selection_loss"] == 1.0
    epoch_two = (initial_bias + np.float32(1)) + np.float32(1)  # two fake epochs, rounded as they ran
    np.testing.assert_array_equal(best["model"]["regressor.8.bias"], epoch_two)  # the weights of epoch 2
    assert stub_evaluation[-1]["epoch"] == 2


def test_without_validation_the_lowest_training_loss_is_kept(tiny_data, tmp_path, monkeypatch, stub_evaluation):
    monkeypatch.setattr(train_module, "run_epoch", fake_epochs([2.0, 0.5, 1.0]))
    recipe = Recipe(batch_size=8, epochs=3, val_fraction=0.0)
    metrics = train(recipe, data=tiny_data, out=tmp_path, show_progress=False, log=lambda m: None)
    assert metrics["best_epoch"] == 2 and metrics["selection"] == "training loss"
    assert tinynet.load(tmp_path / "best.npz")["selection_loss"] == 0.5


def test_resume_into_another_folder_without_improvement(tiny_data, tmp_path, monkeypatch, stub_evaluation):
    """The resumed run's --out must hold best.npz even when no later epoch improves on the checkpoint's best."""
    first, second = tmp_path / "first", tmp_path / "second"
    recipe = Recipe(batch_size=8, epochs=1)
    monkeypatch.setattr(train_module, "run_epoch", fake_epochs([1.0]))
    train(recipe, data=tiny_data, out=first, limit=8, show_progress=False, log=lambda m: None)
    monkeypatch.setattr(train_module, "run_epoch", fake_epochs([2.0, 3.0]))
    metrics = train(dataclasses.replace(recipe, epochs=3), data=tiny_data, out=second, limit=8,
                    resume=first / "last.npz", show_progress=False, log=lambda m: None)
    assert metrics["best_epoch"] == 1 and metrics["epochs_completed"] == 3
    assert_same_tree(tinynet.load(second / "best.npz")["model"], tinynet.load(first / "best.npz")["model"])
    assert tinynet.load(second / "last.npz")["epoch"] == 3
    assert stub_evaluation[-1]["epoch"] == 1


def test_cosine_schedule_resumed_with_more_epochs_still_ends_at_min_lr(tiny_data, tmp_path, monkeypatch,
                                                                       stub_evaluation):
    """One batch per epoch (8 faces, batch 8), so epoch e ends after e scheduler steps. After a resume that
    grows --epochs from 2 to 4 the cosine spans the 4 epochs: lr(3) = min + (lr - min)(1 + cos(3 pi / 4)) / 2
    and lr(4) = min, not a rate climbing back towards lr after the old end."""
    lr, low = 1e-3, 1e-5
    recipe = Recipe(batch_size=8, epochs=2, schedule="cosine", lr=lr, min_lr=low)
    monkeypatch.setattr(train_module, "run_epoch", fake_epochs([1.0, 1.0]))
    train(recipe, data=tiny_data, out=tmp_path, limit=8, show_progress=False, log=lambda m: None)
    monkeypatch.setattr(train_module, "run_epoch", fake_epochs([1.0, 1.0]))
    metrics = train(dataclasses.replace(recipe, epochs=4), data=tiny_data, out=tmp_path, limit=8,
                    resume=tmp_path / "last.npz", show_progress=False, log=lambda m: None)
    lrs = [h["lr"] for h in json.loads(json.dumps(tinynet.load(tmp_path / "last.npz")["history"]))]
    assert metrics["epochs_completed"] == 4 and len(lrs) == 4
    assert lrs[0] == pytest.approx(low + (lr - low) * (1 + math.cos(math.pi / 2)) / 2)  # T = 2 before the resume
    assert lrs[1] == pytest.approx(low)
    assert lrs[2] == pytest.approx(low + (lr - low) * (1 + math.cos(3 * math.pi / 4)) / 2)
    assert lrs[3] == pytest.approx(low)


# ---------------------------------------------------------------------------------------------------
# Divergence and Ctrl-C
# ---------------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's overflow warnings on the way to NaN
def test_nan_after_an_epoch_keeps_the_last_good_state(tiny_data, tmp_path):
    """lr 1e30: the first Adam step throws every weight ~1e30 away, epoch 2's output is NaN/inf."""
    saved = {}

    def log(message):
        if message.startswith("epoch   1/"):
            saved["last"] = (tmp_path / "last.npz").read_bytes()

    recipe = Recipe(batch_size=8, epochs=3, lr=1e30)
    with pytest.raises(SystemExit) as exit_info:
        train(recipe, data=tiny_data, out=tmp_path, limit=8, show_progress=False, log=log)
    message = str(exit_info.value.code)
    assert "NaN" in message and "--lr" in message and "epoch 2" in message
    assert str(tmp_path / "last.npz") in message and "after epoch 1" in message
    assert (tmp_path / "last.npz").read_bytes() == saved["last"]  # untouched since epoch 1
    assert tinynet.load(tmp_path / "last.npz")["epoch"] == 1
    assert (tmp_path / "best.npz").is_file() and not (tmp_path / "metrics.json").exists()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_nan_seen_first_on_the_validation_set(tiny_data, tmp_path):
    """With a validation split, the divergence of an epoch's last step shows in the validation pass: the
    same clear stop, not a raw ValueError from the loss."""
    recipe = Recipe(batch_size=8, epochs=2, lr=1e30, val_fraction=0.25)
    with pytest.raises(SystemExit) as exit_info:
        train(recipe, data=tiny_data, out=tmp_path, limit=12, show_progress=False, log=lambda m: None)
    message = str(exit_info.value.code)
    assert "NaN" in message and "validation" in message and "--lr" in message and "epoch 1" in message
    assert "nothing was saved" in message and not (tmp_path / "last.npz").exists()


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tiny_data, tmp_path, monkeypatch, capsys):
    real_run_epoch = train_module.run_epoch
    calls = []

    def run_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_run_epoch(*args, **kwargs)

    monkeypatch.setattr(train_module, "run_epoch", run_epoch)
    out = tmp_path / "run"
    code = train_main(["--recipe", "reference", "--data", str(tiny_data), "--limit", "8", "--epochs", "3",
                       "--batch-size", "8", "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 130 and len(calls) == 2
    assert "interrupted during epoch 2" in printed and f"--resume {out / 'last.npz'}" in printed
    last = tinynet.load(out / "last.npz")
    assert last["epoch"] == 1 and len(last["history"]) == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["interrupted"] is True and metrics["epochs_completed"] == 1 and metrics["best_epoch"] == 1
    assert set(METRIC_KEYS) <= set(metrics)


def test_resume_with_another_recipe_is_refused(tiny_data, uninterrupted, tmp_path):
    out, _, _ = uninterrupted
    with pytest.raises(ValueError, match="different recipe"):
        train(dataclasses.replace(RESUME_RECIPE, lr=5e-4), data=tiny_data, out=tmp_path, resume=out / "last.npz",
              show_progress=False, log=lambda m: None)
    with pytest.raises(ValueError, match="not a keypoints training checkpoint"):
        train(RESUME_RECIPE, data=tiny_data, out=tmp_path, resume=out / "best.npz", show_progress=False)


# ---------------------------------------------------------------------------------------------------
# Real data
# ---------------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_training_loss_falls_on_the_real_data():
    """8 Adam steps of batch 16 (the reference recipe's optimizer and loss) on the first 128 training
    faces: the loss on a fixed batch falls, and so does the running training loss."""
    from keypoints.data import FacialKeypointsDataset, prepare_faces
    from keypoints.loader import DataLoader
    from keypoints.models import naimishnet

    data = real_data_dir()
    faces = prepare_faces(FacialKeypointsDataset(data, "training"), 96, indices=range(128))
    recipe = dataclasses.replace(RECIPES["reference"], batch_size=16)
    model = naimishnet(96, seed=0)
    criterion, optimizer = build_loss(recipe), build_optimizer(model, recipe)
    probe_x, probe_y = next(iter(DataLoader(faces, 32, center=True)))

    def probe_loss() -> float:
        """Training mode (batch statistics: the running ones will have seen only 8 batches), the same
        dropout masks each time."""
        model.train()
        model.set_dropout_rng(np.random.default_rng(99))
        with tinynet.no_grad():
            return float(criterion(model(probe_x), probe_y))

    before = probe_loss()
    losses = []
    loader = DataLoader(faces, 16, shuffle=True, drop_last=True, seed=0)
    model.set_dropout_rng(np.random.default_rng(0))
    train_module.run_epoch(model, loader, criterion, optimizer, None, lambda n, loss: losses.append(loss))
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    after = probe_loss()
    assert after < before
