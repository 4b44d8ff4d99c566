"""Errors a user can act on: bad flags refused at parse time with exit code 2, hyper-parameters that are NaN
or would divide by zero refused at construction, optimizer steps that change all parameters or none,
Predictor inputs checked, Ctrl-C anywhere in training ending with one line saying what was saved."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from keypoint_fixtures import write_checkpoint, write_dataset

import keypoints.evaluate
import keypoints.train as train_module
import tinynet
from keypoints.cli import EXIT_CODES, main, run, train_main, train_parser
from keypoints.predictor import load_predictor
from keypoints.recipes import Recipe
from tinynet.nn import ELU, BatchNorm2d, LeakyReLU, Parameter, SmoothL1Loss
from tinynet.optim import SGD, Adam, AdamW

NAN = float("nan")


# ---------------------------------------------------------------------------------------------- flags
@pytest.mark.parametrize("flags, named", [
    (["--lr", "nan"], "--lr"), (["--lr", "0"], "--lr"), (["--lr", "inf"], "--lr"), (["--lr", "x"], "--lr"),
    (["--dropout", "2"], "--dropout"), (["--dropout", "1"], "--dropout"), (["--dropout", "nan"], "--dropout"),
    (["--weight-decay", "-1"], "--weight-decay"), (["--weight-decay", "nan"], "--weight-decay"),
    (["--val-fraction", "1"], "--val-fraction"), (["--epochs", "0"], "--epochs"), (["--limit", "0"], "--limit"),
    (["--limit", "16"], "--limit 16 leaves 14 training faces"),
    (["--limit", "100", "--batch-size", "91"], "fewer than one batch of 91"),
])
def test_bad_training_flags_are_refused_at_parse_time(flags, named, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        train_main(flags + ["--data", str(tmp_path / "never-read"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before anything was created


def test_help_documents_the_exit_codes(capsys):
    for parser in (train_parser(),):
        assert "130 interrupted" in parser.format_help().replace("\n", " ") or "130" in parser.format_help()
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "2 bad input" in " ".join(capsys.readouterr().out.split())
    assert "exit codes" in EXIT_CODES


@given(field=st.sampled_from(["lr", "weight_decay", "min_lr", "dropout"]),
       value=st.sampled_from([NAN, math.inf, -math.inf, -1.0]))
def test_recipe_refuses_non_finite_and_negative_hyper_parameters(field, value):
    with pytest.raises(ValueError, match=f"Recipe: {field}"):
        Recipe(**{field: value})


def test_training_data_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    data = write_dataset(tmp_path / "data", n_train=4, n_test=2)
    csv = data / "training_frames_keypoints.csv"
    lines = csv.read_text().splitlines()
    cells = lines[2].split(",")
    cells[5] = "1e39"  # finite in float64, inf in float32
    lines[2] = ",".join(cells)
    csv.write_text("\n".join(lines) + "\n")
    code = run(train_main, ["--data", str(data), "--out", str(tmp_path / "out"), "--no-progress",
                            "--batch-size", "2", "--val-fraction", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "line 3" in err and "1e39" in err
    with pytest.raises(Exception, match="line 3"):  # --debug: the exception itself, for a developer
        train_main(["--data", str(data), "--out", str(tmp_path / "out2"), "--no-progress", "--batch-size", "2",
                    "--val-fraction", "0", "--debug"])



@pytest.mark.parametrize("out, message", [("file", "--out {out}: is a file, not a folder"),
                                          ("file/run", "--out {out}: cannot create the folder (Not a directory)")])
def test_an_unwritable_out_is_one_line_with_exit_code_2_and_touches_nothing(tmp_path, capsys, out, message):
    data = write_dataset(tmp_path / "data", n_train=4, n_test=2)
    (tmp_path / "file").write_text("keep me\n")
    out = tmp_path / out
    code = run(train_main, ["--data", str(data), "--out", str(out), "--no-progress", "--batch-size", "2",
                            "--val-fraction", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err == f"error: {message.format(out=out)}\n"
    assert (tmp_path / "file").read_text() == "keep me\n"

# ---------------------------------------------------------------------------------------------- optimizers
@pytest.mark.parametrize("optimizer", [Adam, AdamW])
@pytest.mark.parametrize("eps", [0.0, 1e-46, -1e-8, NAN])
def test_adam_refuses_an_eps_that_is_zero_in_float32(optimizer, eps):
    with pytest.raises(ValueError, match="eps"):
        optimizer([Parameter(np.zeros(3, np.float32))], eps=eps)


@given(name=st.sampled_from(["lr", "momentum", "weight_decay", "dampening"]))
def test_sgd_refuses_nan(name):
    kwargs = {"lr": 0.1, name: NAN}
    with pytest.raises(ValueError, match=name):
        SGD([Parameter(np.zeros(3, np.float32))], **kwargs)


@pytest.mark.parametrize("make", [lambda: SmoothL1Loss(beta=NAN), lambda: BatchNorm2d(3, eps=NAN),
                                  lambda: BatchNorm2d(3, momentum=NAN), lambda: LeakyReLU(NAN),
                                  lambda: ELU(alpha=math.inf), lambda: Adam([Parameter(np.zeros(2))], lr=NAN),
                                  lambda: Adam([Parameter(np.zeros(2))], betas=(NAN, 0.9))])
def test_nan_hyper_parameters_are_refused(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize("optimizer", [lambda p: Adam(p, lr=0.1), lambda p: SGD(p, lr=0.1, momentum=0.9)])
def test_a_step_changes_every_parameter_or_none(optimizer):
    good, bad = Parameter(np.ones(3, np.float32)), Parameter(np.ones((2, 2), np.float32))
    opt = optimizer([{"params": [good]}, {"params": [bad]}])
    good.grad, bad.grad = np.ones(3, np.float32), np.ones(4, np.float32)  # the second gradient has a wrong shape
    with pytest.raises(ValueError, match="parameter 0 of group 1"):
        opt.step()
    np.testing.assert_array_equal(good.data, 1.0)
    assert opt.state.get(good, {}) == {}


def test_load_state_dict_checks_types_and_shapes():
    param = Parameter(np.ones(3, np.float32))
    opt = Adam([param])
    param.grad = np.ones(3, np.float32)
    opt.step()
    saved = opt.state_dict()
    for name, value, message in [("exp_avg", [0.0, 0.0, 0.0], "must be an array of shape"),
                                 ("exp_avg_sq", np.zeros(4, np.float32), "has shape"),
                                 ("exp_avg", np.array(["a", "b", "c"]), "expected floats"),
                                 ("step", "3", "'step'")]:
        broken = {"state": {0: dict(saved["state"][0], **{name: value})}, "param_groups": saved["param_groups"]}
        fresh = Adam([Parameter(np.ones(3, np.float32))])
        with pytest.raises(ValueError, match=message):
            fresh.load_state_dict(broken)
        assert fresh.state == {}
    with pytest.raises(ValueError, match="eps"):
        Adam([Parameter(np.ones(3, np.float32))]).load_state_dict(
            {"state": {}, "param_groups": [dict(saved["param_groups"][0], eps=0.0)]})


# ---------------------------------------------------------------------------------------------- predictor
@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.npz"
    write_checkpoint(path)
    return load_predictor(path)


@pytest.mark.parametrize("image, message", [
    (np.zeros((0, 0), np.uint8), r"image 0 has shape \(0, 0\)"),
    (np.zeros((5, 0, 3), np.uint8), r"image 0 has shape \(5, 0, 3\)"),
    (np.full((20, 20), 255.0, np.float32), r"image 0 is float32 with values in \[255, 255\]"),
    (np.full((20, 20), -0.5), r"image 0 is float64 with values in \[-0.5, -0.5\]"),
    (np.full((20, 20), NAN, np.float32), "NaN"),
])
def test_predictor_refuses_unusable_images_naming_them(predictor, image, message):
    with pytest.raises(ValueError, match=message):
        predictor.predict([image])


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True])
def test_predictor_refuses_a_bad_batch_size(predictor, batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        predictor.predict([np.zeros((20, 20), np.uint8)], batch_size=batch_size)
    assert predictor.predict([], batch_size=1).shape == (0, 68, 2)  # an empty batch is fine


def test_a_checkpoint_with_nan_weights_is_refused(tmp_path):
    path = tmp_path / "nan.npz"
    write_checkpoint(path)
    checkpoint = tinynet.load(path)
    checkpoint["model"]["regressor.8.bias"][3] = np.nan
    tinynet.save(checkpoint, path)
    with pytest.raises(ValueError, match=r"'regressor\.8\.bias' holds NaN"):
        load_predictor(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_float16_checkpoint_with_a_nan_or_infinite_weight_is_refused(tmp_path, bad):
    path = tmp_path / "half.npz"
    write_checkpoint(path)
    checkpoint = tinynet.load(path)
    checkpoint["model"] = {name: value.astype(np.float16) if value.dtype.kind == "f" else value
                           for name, value in checkpoint["model"].items()}
    tinynet.save(checkpoint, path)
    load_predictor(path)  # the shipped weights are float16 too: a finite one loads
    checkpoint["model"]["features.0.weight"].flat[7] = bad
    tinynet.save(checkpoint, path)
    with pytest.raises(ValueError, match=r"'features\.0\.weight' holds NaN or infinite values"):
        load_predictor(path)


@given(st.lists(st.integers(0, 0xFFFF), max_size=40), st.sampled_from([np.float16, np.float32, np.float64]))
def test_the_finite_check_agrees_with_numpys_isfinite_on_every_bit_pattern(bits, dtype):
    from keypoints.checkpoint import all_finite

    halves = np.array(bits, np.uint16).view(np.float16)  # every float16: subnormals, +-0, +-inf, NaNs with payloads
    values = halves.astype(dtype)
    assert all_finite(values) == bool(np.isfinite(values).all())
    assert all_finite(np.arange(0x10000, dtype=np.uint16).view(np.float16)[:0x7C00])  # every finite positive half
    assert not all_finite(np.array([0x7C00], np.uint16).view(np.float16))


# ---------------------------------------------------------------------------------------------- Ctrl-C
@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("tiny") / "data", n_train=8, n_test=2)


def _fake_epoch(model, loader, criterion, optimizer, scheduler, progress=None, averaged=None):
    return 1.0


@pytest.mark.parametrize("where", ["checkpoint write of epoch 2", "final evaluation", "data preparation"])
def test_ctrl_c_anywhere_ends_with_one_line_saying_what_was_saved(tiny_data, tmp_path, monkeypatch, capsys, where):
    monkeypatch.setattr(train_module, "run_epoch", _fake_epoch)
    out = tmp_path / "run"
    real_save, saves = train_module.save_checkpoint, []

    def save_checkpoint(*args, **kwargs):
        saves.append(1)
        if where.startswith("checkpoint") and len(saves) == 2:
            raise KeyboardInterrupt
        return real_save(*args, **kwargs)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "save_checkpoint", save_checkpoint)
    if where == "final evaluation":
        monkeypatch.setattr(keypoints.evaluate, "evaluate_checkpoint", interrupt)
    if where == "data preparation":
        monkeypatch.setattr(train_module, "prepare_faces", interrupt)
    code = train_main(["--recipe", "reference", "--data", str(tiny_data), "--epochs", "3", "--batch-size", "8",
                       "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 130 and "Traceback" not in err
    if where == "data preparation":
        assert "nothing was saved" in err and not (out / "last.npz").exists()
    else:
        assert f"--resume {out / 'last.npz'}" in err
        epoch = tinynet.load(out / "last.npz")["epoch"]
        assert epoch == (1 if where.startswith("checkpoint") else 3)
        assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left behind
