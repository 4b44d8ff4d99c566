"""A checkpoint is input: every metadata field validated with a message naming it, entries a model does not
have refused before any array is read, a deeply nested header a "corrupt" file, not a RecursionError."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from keypoint_fixtures import write_checkpoint

import tinynet
from keypoints.checkpoint import DEFAULTS, CheckpointError, read_checkpoint, validate_meta
from keypoints.predictor import load_predictor
from tinynet import serialization

GOOD = {"arch": "naimishnet", "input_size": 96, "rescale": 107, "dropout": 0.4, "flip_test": False}

# field -> values that must be refused (each with a message naming the field)
BAD = {
    "arch": ["resnet", None, 3],
    "input_size": ["evil", 95, 0, -96, 96.0, True, None, 10**9],
    "rescale": [20000, 10**9, 95, 0, -1, 107.5, "107", None, float("nan"), True],
    "dropout": [1.0, 2, -0.1, float("nan"), float("inf"), "0.4", None],
    "flip_test": ["yes", 1, None],
    "head": ["evil", "", None, 1],
    "refine_passes": [-1, 5, 1.5, "2", True, None],
    "framing": [{"centroid": [0.5, 0.5]}, {"centroid": [0.5], "spread": 0.5}, {"centroid": [0.5, 1.0], "spread": 0.5},
                {"centroid": [0.5, 0.5], "spread": 0.0}, {"centroid": [0.5, float("nan")], "spread": 0.5},
                {"centroid": "0.5,0.5", "spread": 0.5}, [0.5, 0.5, 0.5], "evil",
                {"centroid": [0.5, 0.5], "spread": 0.5, "extra": 1},
                {"centroid": [0.5, 0.5], "spread": 0.2, "upright": "yes"}],
    # (intercept, slope): more disagreement must mean less confidence, so the slope is negative
    "confidence_calibration": [[-4.0, 2.0], [-4.0, 0.0], [-4.0], [-4.0, -2.0, 1.0], "evil", [float("nan"), -2.0],
                               [-4.0, float("-inf")], ["-4", -2.0], [True, -2.0], {"a": -4.0, "b": -2.0}],
    "confidence_signal": ["mirror", "", None, 1, ["flip"]],
    "test_frames": ["evil", [[0, 0, 1]], [[0.5, 0, 1, 0]], [[0, 0, 2, 0]], [[0, 0, 1, 90]], [[0, 0, float("nan"), 0]],
                    [[0, 0, 1, "0"]], [[0, 0, 1, 0]] * 17],
    # keypoints.closeup: {region: stage}, regions eyes and mouth; a stage's size a multiple of 8 in 16..128,
    # side in [0.25, 4], width 4..128, passes 0..4
    "closeup": ["evil", [{"size": 48, "side": 0.8, "width": 16, "passes": 2}], {"nose": {"size": 48, "side": 0.8, "width": 16, "passes": 2}},
                {"eyes": {"size": 48, "side": 0.8, "width": 16}}, {"eyes": {"size": 44, "side": 0.8, "width": 16, "passes": 2}},
                {"mouth": {"size": 48, "side": 0.1, "width": 16, "passes": 2}}, {"eyes": {"size": 48, "side": 0.8, "width": 16, "passes": 9}},
                {"eyes": {"size": "48", "side": 0.8, "width": 16, "passes": 2}},
                {"eyes": {"size": 48, "side": 0.8, "width": 16, "passes": 2, "extra": 1}}],
}


@given(field=st.sampled_from(sorted(BAD)), data=st.data())
def test_every_bad_field_is_refused_naming_it(field, data):
    value = data.draw(st.sampled_from(BAD[field]), label=field)
    with pytest.raises(CheckpointError, match=rf"x\.npz: meta\.{field}"):
        validate_meta(dict(GOOD, **{field: value}), "x.npz")


def test_a_test_frames_confidence_needs_a_model_that_reads_test_frames():
    calibrated = dict(GOOD, confidence_calibration=[-4.0, -2.0], confidence_signal="test_frames")
    frames = [[0.04, 0.0, 1.0, 0.0], [-0.04, 0.0, 1.0, 0.0]]
    assert validate_meta(dict(calibrated, test_frames=frames, refine_passes=1), "x.npz")["confidence_signal"] == "test_frames"
    for missing in ({"test_frames": frames, "refine_passes": 0}, {"test_frames": None, "refine_passes": 2}):
        with pytest.raises(CheckpointError, match="x.npz: meta.confidence_signal is test_frames, but the model reads no"):
            validate_meta(dict(calibrated, **missing), "x.npz")
    # an older checkpoint's calibration (no signal stored) was fitted on the flip disagreement
    assert validate_meta(dict(GOOD, confidence_calibration=[-4.0, -2.0]), "x.npz")["confidence_signal"] == "flip"


@given(size=st.sampled_from([96, 224]), data=st.data())
def test_good_metadata_passes_and_defaults_fill_the_optional_fields(size, data):
    rescale = data.draw(st.integers(size, 2 * size), label="rescale")
    meta = dict(GOOD, input_size=size, rescale=rescale)
    extra = data.draw(st.fixed_dictionaries({}, optional={
        "head": st.sampled_from(["classic", "dropout-last"]),
        "refine_passes": st.integers(0, 4),
        "confidence_calibration": st.lists(st.floats(-10, -0.01), min_size=2, max_size=2),
        "framing": st.builds(lambda fx, fy, s, up: {"centroid": [fx, fy], "spread": s, "upright": up},
                             *[st.floats(0.01, 0.99)] * 3, st.booleans()),
        "test_frames": st.lists(st.tuples(st.floats(-0.1, 0.1), st.floats(-0.1, 0.1), st.floats(0.8, 1.25),
                                          st.floats(-30, 30)).map(list), max_size=16),
        "closeup": st.dictionaries(st.sampled_from(["eyes", "mouth"]), st.builds(
            lambda size, side, width, passes: {"size": size, "side": side, "width": width, "passes": passes},
            st.sampled_from([16, 32, 48, 128]), st.floats(0.25, 4.0), st.integers(4, 128), st.integers(0, 4))),
    }), label="optional fields")
    checked = validate_meta({**meta, **extra})
    assert checked == {**DEFAULTS, **meta, **extra}


@pytest.mark.parametrize("field", ["arch", "input_size", "rescale"])
def test_a_missing_required_field_is_named(field):
    meta = {k: v for k, v in GOOD.items() if k != field}
    with pytest.raises(CheckpointError, match=rf"meta\.{field} is missing"):
        validate_meta(meta)
    with pytest.raises(CheckpointError, match="'meta' must be a dict"):
        validate_meta(None)


# ---------------------------------------------------------------------------------------------- files
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "best.npz"
    state = write_checkpoint(path)
    return path, tinynet.load(path), state


def rewrite(path, checkpoint, **changes):
    tinynet.save({**checkpoint, **changes}, path)
    return path


@pytest.mark.parametrize("change, message", [
    (dict(meta_rescale=20000), r"meta\.rescale must be an integer in \[96, 192\]"),
    (dict(meta_input_size="evil"), r"meta\.input_size"),
    (dict(meta_rescale=None), r"meta\.rescale"),
    (dict(model=None), r"'model' must be a dict"),
    (dict(meta_input_size=224, meta_rescale=250),
     r"model entry 'features\.0\.weight' is float32\[32, 1, 4, 4\], the network expects float values of shape"
     r" \[32, 1, 5, 5\]"),
])
def test_bad_checkpoint_files_are_refused_naming_the_field(saved, tmp_path, change, message):
    _, checkpoint, _ = saved
    meta = dict(checkpoint["meta"])
    meta.update({k[5:]: v for k, v in change.items() if k.startswith("meta_")})
    other = {k: v for k, v in change.items() if not k.startswith("meta_")}
    path = rewrite(tmp_path / "bad.npz", checkpoint, meta=meta, **other)
    with pytest.raises(CheckpointError, match=message):
        load_predictor(path)


def test_an_old_checkpoint_without_the_new_fields_loads_with_the_defaults(saved, tmp_path):
    _, checkpoint, _ = saved
    old_meta = {k: v for k, v in checkpoint["meta"].items() if k not in ("head", "refine_passes", "framing")}
    meta = load_predictor(rewrite(tmp_path / "old.npz", checkpoint, meta=old_meta)).meta
    assert meta["head"] == "classic" and meta["refine_passes"] == 0 and meta["framing"] is None
    assert load_predictor().meta["head"] == "dropout-last"  # the shipped weights carry the new fields


def test_entries_the_model_does_not_have_are_refused_before_any_array_is_read(saved, tmp_path, monkeypatch):
    _, checkpoint, _ = saved
    big = np.zeros(50_000_000, np.float32)  # 200 MB inflated, about 0.2 MB compressed
    path = tmp_path / "bomb.npz"
    tinynet.save({**checkpoint, "model": {**checkpoint["model"], "extra.weight": big}}, path, compress=True)
    del big
    reads = []
    real = serialization._read_entry
    monkeypatch.setattr(serialization, "_read_entry",
                        lambda archive, name, where: reads.append(name) or real(archive, name, where))
    with pytest.raises(CheckpointError, match=r"unexpected entries \['extra\.weight'\]"):
        load_predictor(path)
    assert reads == ["__tinynet__"], "an array was read before the entries were checked"


def test_a_checkpoint_is_opened_once_and_checked_on_the_structure_load_structure_gives(saved, monkeypatch):
    path, _, _ = saved
    seen = []
    loaded = tinynet.load(path, check_structure=seen.append)
    assert seen == [serialization.load_structure(path)]  # shapes and dtypes only, the same as asked separately
    np.testing.assert_array_equal(loaded["model"]["features.0.weight"], tinynet.load(path)["model"]["features.0.weight"])
    opened = []
    real = serialization._open_checkpoint
    monkeypatch.setattr(serialization, "_open_checkpoint", lambda where: opened.append(where) or real(where))
    read_checkpoint(path)
    assert opened == [str(path)]


def test_an_archive_entry_the_header_does_not_name_is_refused_before_reading(saved, tmp_path, monkeypatch):
    path, _, _ = saved
    copy = tmp_path / "extra.npz"
    copy.write_bytes(path.read_bytes())
    with zipfile.ZipFile(copy, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("hidden.npy", "w") as member:
            np.lib.format.write_array(member, np.zeros(10_000_000, np.float32))
    reads = []
    real = serialization._read_entry
    monkeypatch.setattr(serialization, "_read_entry",
                        lambda archive, name, where: reads.append(name) or real(archive, name, where))
    with pytest.raises(ValueError, match="entries its header does not mention: \\['hidden'\\]"):
        tinynet.load(copy)
    assert reads == ["__tinynet__"]


@pytest.mark.parametrize("depth", [70, 100_000])
def test_a_deeply_nested_header_is_a_corrupt_file(tmp_path, depth):
    tree = "null"
    if depth < 1000:
        for _ in range(depth):
            tree = '{"list": [' + tree + "]}"
    else:  # too deep for Python's JSON parser itself
        tree = '{"list": [' * depth + "null" + "]}" * depth
    header = '{"format": "tinynet-checkpoint", "version": 1, "metadata": null, "tree": {"dict": {"x": ' + tree + "}}}"
    path = tmp_path / "deep.npz"
    np.savez(path, __tinynet__=np.array(header))
    for read in (tinynet.load, serialization.load_structure, load_predictor):
        with pytest.raises(ValueError, match="corrupt"):
            read(path)


def test_a_training_checkpoint_is_validated_the_same_way(saved):
    path, _, _ = saved
    with pytest.raises(CheckpointError, match="not a keypoints training checkpoint"):
        read_checkpoint(path, training=True)
    assert json.dumps(read_checkpoint(path)[0]["meta"])  # the filled meta is still plain JSON


def test_update_meta_changes_only_the_field_and_refuses_a_bad_value(saved, tmp_path):
    from keypoints.checkpoint import update_meta

    _, checkpoint, _ = saved
    path = rewrite(tmp_path / "m.npz", checkpoint)
    before = tinynet.load(path)
    assert update_meta(path, confidence_calibration=[-4.5, -2.1])["confidence_calibration"] == [-4.5, -2.1]
    after = tinynet.load(path)
    assert after["meta"] == dict(before["meta"], confidence_calibration=[-4.5, -2.1])
    for name, array in before["model"].items():
        assert after["model"][name].dtype == array.dtype and np.array_equal(after["model"][name], array), name
    raw = path.read_bytes()
    with pytest.raises(CheckpointError, match=r"meta\.confidence_calibration"):
        update_meta(path, confidence_calibration=[-4.5, 2.1])
    assert path.read_bytes() == raw  # a refused change leaves the file as it was


# ------------------------------------------------------------------------------------ training state
@pytest.fixture(scope="module")
def training_state(tmp_path_factory):
    """A last.npz as training writes it after 2 of 3 epochs, cosine schedule, no ema."""
    import dataclasses

    from keypoints.models import naimishnet
    from keypoints.checkpoint import TrainState, save_checkpoint
    from keypoints.recipes import RECIPES, build_optimizer
    from keypoints.train import snapshot
    from tinynet.optim import CosineAnnealingLR

    recipe = dataclasses.replace(RECIPES["default"], epochs=3, schedule="cosine", ema=0.0)
    model = naimishnet(96, seed=0, head=recipe.head)
    optimizer = build_optimizer(model, recipe)
    scheduler = CosineAnnealingLR(optimizer, T_max=30)
    state = TrainState(epoch=2, history=[{"epoch": 1}, {"epoch": 2}], best_loss=0.5, best_epoch=2,
                       best_model=snapshot(model))
    path = tmp_path_factory.mktemp("last") / "last.npz"
    save_checkpoint(path, recipe, model, optimizer, scheduler, state)
    return path, tinynet.load(path)


# entry -> values that do not fit the recipe (cosine schedule, no ema, 2 finished epochs): each refused naming it
BAD_STATE = {
    "scheduler": [None, [1, 2], "cosine"],
    "averaged": [{"n_averaged": np.zeros(1)}, "yes"],
    "optimizer": [None, [0.1]],
    "epoch": [-1, 1.5, "2", None, True],
    "best_epoch": [3, -1, None, 2.0],
    "history": [[{"epoch": 1}], None, [1, 2], "2 epochs"],
    "best_loss": [float("nan"), "0.5", [0.5]],
    "best_model": [None, {"features.0.weight": np.zeros((32, 1, 4, 4), np.float32)}],
}


@pytest.mark.parametrize("entry, value", [(k, v) for k, values in BAD_STATE.items() for v in values])
def test_a_training_state_that_does_not_fit_its_recipe_is_refused_naming_the_entry(training_state, tmp_path, entry, value):
    from keypoints.checkpoint import read_checkpoint

    path, checkpoint = training_state
    read_checkpoint(path, training=True)  # as written, it loads
    bad = tmp_path / "last.npz"
    tinynet.save({**checkpoint, entry: value}, bad)
    with pytest.raises(CheckpointError, match=rf"last\.npz: {entry}"):
        read_checkpoint(bad, training=True)


def test_checkpoints_with_the_old_normalisation_fields_still_load(saved, tmp_path):
    """Training no longer writes ``keypoint_mean`` / ``keypoint_std`` (a function of the input size, which
    nothing read); checkpoints written before still have them, still load, and predict the same points."""
    path, checkpoint, _ = saved
    old = rewrite(tmp_path / "old.npz", checkpoint,
                  meta=dict(checkpoint["meta"], keypoint_mean=100 * 96 / 224, keypoint_std=50 * 96 / 224))
    stored, model = read_checkpoint(old)
    assert stored["meta"]["keypoint_mean"] == pytest.approx(100 * 96 / 224) and model.input_size == 96
    images = [np.random.default_rng(0).uniform(0, 1, (120, 100)).astype(np.float32)]
    np.testing.assert_array_equal(load_predictor(old).predict(images), load_predictor(path).predict(images))


def test_the_default_recipe_writes_its_test_frames_and_the_reference_recipe_none():
    from keypoints.checkpoint import checkpoint_meta
    from keypoints.recipes import RECIPES, Recipe

    meta = checkpoint_meta(RECIPES["default"])
    four = [[-0.04, 0.0, 1.0, 0.0], [0.04, 0.0, 1.0, 0.0], [0.0, -0.04, 1.0, 0.0], [0.0, 0.04, 1.0, 0.0]]
    assert meta["test_frames"] == four and validate_meta(meta)["test_frames"] == four
    assert load_predictor().test_frames == tuple(map(tuple, four))  # the shipped model is the default recipe's
    assert checkpoint_meta(RECIPES["reference"])["test_frames"] == []
    with pytest.raises(ValueError, match="test_frames"):
        Recipe(test_frames=[[0.0, 0.0, 2.0, 0.0]])
