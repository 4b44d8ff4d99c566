"""``tinynet.serialization``: exact round trips, atomic writes, and refusal of anything that is not ours."""
from __future__ import annotations

import io
import json
import math
import os
import pickle
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinynet import serialization
from tinynet.nn.linear import Linear
from tinynet.nn import Module, Sequential
from tinynet.optim.adam import AdamW
from tinynet.optim.lr_scheduler import CosineAnnealingLR
from tinynet.serialization import load, load_metadata, save


class Scaled(Module):
    """A layer with a float and an int buffer, to check buffers and dtypes survive."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("running_mean", np.array([0.25, -1.5], dtype=np.float32))
        self.register_buffer("num_batches_tracked", np.array(7, dtype=np.int64))

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x - self.running_mean

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout


def make_model(seed: int, dtype=np.float32) -> Sequential:
    rng = np.random.default_rng(seed)
    return Sequential(Linear(4, 2, rng=rng, dtype=dtype), Scaled(), Linear(2, 3, rng=rng, dtype=dtype))


def assert_same_array(actual, expected):
    assert isinstance(actual, np.ndarray)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    assert actual.tobytes() == np.ascontiguousarray(expected).tobytes()  # bit-identical (nan, -0.0 included)


# ---------------------------------------------------------------------------------------------- round trips
def test_module_state_dict_round_trip(tmp_path):
    model = make_model(0)
    path = tmp_path / "model.npz"
    save(model, path)
    state = load(path)
    assert list(state) == list(model.state_dict())  # same keys, same order
    for key, value in model.state_dict().items():
        assert_same_array(state[key], value)
    assert state["1.num_batches_tracked"].dtype == np.int64


def test_loading_into_a_fresh_model_gives_identical_outputs(tmp_path):
    model = make_model(0)
    save(model, tmp_path / "model.npz")
    fresh = make_model(1)
    x = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    assert not np.array_equal(fresh(x), model(x))
    fresh.load_state_dict(load(tmp_path / "model.npz"))
    np.testing.assert_array_equal(fresh(x), model(x))


def test_nested_checkpoint_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "f64": np.array([np.nan, -0.0, np.inf, 1e-310]),
        "i64": np.arange(6, dtype=np.int64).reshape(2, 3),
        "u8": np.arange(256, dtype=np.uint8),
        "bool": np.array([True, False]),
        "scalar0d": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "fortran": np.asfortranarray(rng.standard_normal((3, 2))),
        "strided": np.arange(20.0)[::3],
        "text": np.array(["a", "ünïcode"]),
    }
    checkpoint = {
        "arrays": arrays,
        "epoch": 3,
        "big": 2**100 + 1,
        "loss": 0.1 + 0.2,
        "nan": float("nan"),
        "name": "résumé ✓",
        "flag": True,
        "nothing": None,
        "list": [1, 2.5, "x", None, [np.ones(2, dtype=np.float32), {"deep": np.int16(-3)}]],
        "tuple": (1, 2),
        "int_keys": {0: "zero", 10: np.zeros(1)},
        "np_scalars": {"f32": np.float32(1.5), "i64": np.int64(-7), "b": np.bool_(True)},
        "empty_dict": {},
        "empty_list": [],
        "dotted.key": 1,
    }
    path = tmp_path / "ckpt.npz"
    save(checkpoint, path)
    got = load(path)

    assert list(got) == list(checkpoint)
    for key, value in arrays.items():
        assert_same_array(got["arrays"][key], value)
    assert type(got["epoch"]) is int and got["epoch"] == 3
    assert got["big"] == 2**100 + 1
    assert type(got["loss"]) is float and got["loss"] == 0.1 + 0.2
    assert math.isnan(got["nan"])
    assert got["name"] == "résumé ✓"
    assert got["flag"] is True and got["nothing"] is None
    assert got["list"][:4] == [1, 2.5, "x", None]
    assert_same_array(got["list"][4][0], np.ones(2, dtype=np.float32))
    assert type(got["list"][4][1]["deep"]) is np.int16 and got["list"][4][1]["deep"] == -3
    assert got["tuple"] == [1, 2]  # JSON has no tuples
    assert list(got["int_keys"]) == ["0", "10"] and got["int_keys"]["0"] == "zero"
    assert type(got["np_scalars"]["f32"]) is np.float32 and got["np_scalars"]["f32"] == 1.5
    assert type(got["np_scalars"]["i64"]) is np.int64 and got["np_scalars"]["i64"] == -7
    assert type(got["np_scalars"]["b"]) is np.bool_
    assert got["empty_dict"] == {} and got["empty_list"] == []
    assert got["dotted.key"] == 1


def test_layout_is_readable_with_plain_numpy(tmp_path):
    model = make_model(0)
    save({"model": model.state_dict(), "step": 5}, tmp_path / "c.npz", metadata={"note": "hi"})
    with np.load(tmp_path / "c.npz", allow_pickle=False) as archive:
        assert set(archive.files) == {serialization.MARKER, "model/0.weight", "model/0.bias", "model/1.running_mean",
                                      "model/1.num_batches_tracked", "model/2.weight", "model/2.bias"}
        header = archive[serialization.MARKER]
        assert header.ndim == 0 and header.dtype.kind == "U"
        document = json.loads(str(header[()]))
        weight = archive["model/0.weight"]
    assert document["metadata"] == {"note": "hi"}
    assert document["tree"]["dict"]["step"] == 5
    assert_same_array(weight, model[0].weight.data)


def test_rng_state_round_trip_continues_the_stream(tmp_path):
    rng = np.random.default_rng(123)
    rng.standard_normal(10)
    save({"rng": rng.bit_generator.state}, tmp_path / "rng.npz")
    restored = np.random.default_rng()
    restored.bit_generator.state = load(tmp_path / "rng.npz")["rng"]
    np.testing.assert_array_equal(restored.standard_normal(5), rng.standard_normal(5))


def test_training_resumes_exactly_from_a_checkpoint(tmp_path):
    """Model + AdamW + cosine scheduler saved mid-run: the resumed run matches the uninterrupted one bit for bit."""
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((8, 4)).astype(np.float32), rng.standard_normal((8, 3)).astype(np.float32))
               for _ in range(6)]

    def train_step(model, opt, sched, x, y):
        out = model(x)
        model.zero_grad()
        model.backward((out - y) / len(x))  # gradient of 0.5 * mean squared error
        opt.step()
        sched.step()

    def build(seed):
        model = make_model(seed)
        opt = AdamW(model.parameters(), lr=0.01, weight_decay=0.1, amsgrad=True)
        return model, opt, CosineAnnealingLR(opt, T_max=5, warmup_epochs=1)

    model, opt, sched = build(0)
    for x, y in batches[:3]:
        train_step(model, opt, sched, x, y)
    save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict()},
         tmp_path / "mid.npz")
    for x, y in batches[3:]:
        train_step(model, opt, sched, x, y)

    resumed, resumed_opt, resumed_sched = build(1)
    checkpoint = load(tmp_path / "mid.npz")
    assert list(checkpoint["optimizer"]["state"]) == ["0", "1", "2", "3"]  # string keys after the round trip
    resumed.load_state_dict(checkpoint["model"])
    resumed_opt.load_state_dict(checkpoint["optimizer"])
    resumed_sched.load_state_dict(checkpoint["scheduler"])
    for x, y in batches[3:]:
        train_step(resumed, resumed_opt, resumed_sched, x, y)
    for key, value in model.state_dict().items():
        assert_same_array(resumed.state_dict()[key], value)
    assert resumed_sched.get_last_lr() == sched.get_last_lr()


def test_metadata(tmp_path):
    save({"a": np.zeros(2)}, tmp_path / "m.npz", metadata={"epoch": 4, "val_loss": 0.5, "tags": ["x"]})
    assert load_metadata(tmp_path / "m.npz") == {"epoch": 4, "val_loss": 0.5, "tags": ["x"]}
    save({"a": np.zeros(2)}, tmp_path / "n.npz")
    assert load_metadata(tmp_path / "n.npz") is None
    with pytest.raises(TypeError, match="metadata"):
        save({"a": 1}, tmp_path / "bad.npz", metadata={"array": np.zeros(2)})
    with pytest.raises(TypeError, match="metadata"):
        save({"a": 1}, tmp_path / "bad.npz", metadata=[1, 2])


def test_compress_flag(tmp_path):
    data = {"zeros": np.zeros(100_000, dtype=np.float32)}
    save(data, tmp_path / "plain.npz")
    save(data, tmp_path / "small.npz", compress=True)
    assert os.path.getsize(tmp_path / "small.npz") < os.path.getsize(tmp_path / "plain.npz") / 10
    assert_same_array(load(tmp_path / "small.npz")["zeros"], data["zeros"])


def test_path_is_used_as_given(tmp_path):
    save({"a": 1}, str(tmp_path / "checkpoint.bin"))  # str path, no ".npz" appended
    assert os.listdir(tmp_path) == ["checkpoint.bin"]
    assert load(str(tmp_path / "checkpoint.bin")) == {"a": 1}


def test_overwrite_replaces_and_keeps_permissions_of_a_plain_file(tmp_path):
    save({"v": 1}, tmp_path / "c.npz")
    save({"v": 2}, tmp_path / "c.npz")
    assert load(tmp_path / "c.npz") == {"v": 2}
    with open(tmp_path / "plain", "wb"):
        pass
    assert os.stat(tmp_path / "c.npz").st_mode == os.stat(tmp_path / "plain").st_mode  # umask honoured, not 0o600


def test_keys_zip_cannot_store_still_round_trip(tmp_path):
    # NUL ends a zip name, Windows zip turns "\\" into "/", lone surrogates cannot be encoded, and
    # the header's own name is taken: all must still come back under their own keys
    odd = {serialization.MARKER: np.ones(1), "\x00": np.full(1, 2.0), "a\x00b": np.full(1, 3.0),
           "a\\b": np.full(1, 4.0), "\ud800": np.full(1, 5.0), "_": np.full(1, 6.0), "_~1": np.full(1, 7.0)}
    save(odd, tmp_path / "odd.npz")
    got = load(tmp_path / "odd.npz")
    assert list(got) == list(odd)
    for key, value in odd.items():
        assert_same_array(got[key], value)


json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=8)
)
array_leaves = st.builds(
    lambda seed, shape, dtype: np.random.default_rng(seed).standard_normal(shape).astype(dtype),
    st.integers(0, 2**32 - 1),
    st.lists(st.integers(0, 3), max_size=3).map(tuple),
    st.sampled_from([np.float32, np.float64, np.int32, np.uint8]),
)
keys = st.text(alphabet=st.characters(blacklist_characters="/"), max_size=6)
trees = st.recursive(
    st.one_of(json_leaves, array_leaves),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(keys, children, max_size=3)),
    max_leaves=12,
)


def _assert_same_tree(actual, expected):
    if isinstance(expected, np.ndarray):
        assert_same_array(actual, expected)
    elif isinstance(expected, dict):
        assert list(actual) == list(expected)
        for key in expected:
            _assert_same_tree(actual[key], expected[key])
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected)
        for a, e in zip(actual, expected):
            _assert_same_tree(a, e)
    else:
        assert type(actual) is type(expected) and actual == expected


@settings(deadline=None, max_examples=30)
@given(tree=st.dictionaries(keys, trees, max_size=4))
def test_random_trees_round_trip(tmp_path_factory, tree):
    path = tmp_path_factory.mktemp("tree") / "t.npz"
    save(tree, path)
    _assert_same_tree(load(path), tree)


# ---------------------------------------------------------------------------------------------- atomic writes
def _only_file(directory):
    return sorted(os.listdir(directory))


def test_failed_replace_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    save({"version": 1, "w": np.ones(3)}, path)

    def failing_replace(src, dst):
        assert os.path.exists(src)  # the new file was fully written beside the old one
        raise OSError("disk on fire")

    monkeypatch.setattr(serialization.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk on fire"):
        save({"version": 2, "w": np.zeros(3)}, path)
    monkeypatch.undo()
    assert _only_file(tmp_path) == ["c.npz"]
    assert load(path)["version"] == 1


@pytest.mark.parametrize("exception", [OSError("no space left on device"), KeyboardInterrupt()])
def test_failure_mid_write_keeps_the_old_file(tmp_path, monkeypatch, exception):
    path = tmp_path / "c.npz"
    save({"version": 1, "w": np.ones(3)}, path)
    real_write_array = np.lib.format.write_array
    calls = []

    def write_then_fail(fp, array, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # header and first array written, then the "disk" fails
            fp.write(b"partial")
            raise exception
        return real_write_array(fp, array, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", write_then_fail)
    with pytest.raises(type(exception)):
        save({"version": 2, "a": np.zeros(3), "b": np.zeros(3), "c": np.zeros(3)}, path)
    monkeypatch.undo()
    assert len(calls) == 3
    assert _only_file(tmp_path) == ["c.npz"]
    got = load(path)
    assert got["version"] == 1
    np.testing.assert_array_equal(got["w"], np.ones(3))


def test_invalid_object_never_touches_the_disk(tmp_path):
    path = tmp_path / "c.npz"
    save({"version": 1}, path)
    with pytest.raises(TypeError):
        save({"version": 2, "bad": {1, 2}}, path)
    assert _only_file(tmp_path) == ["c.npz"] and load(path) == {"version": 1}


# ---------------------------------------------------------------------------------------------- refusals on save
@pytest.mark.parametrize(
    "obj, error, match",
    [
        ({"a": np.array([1, "x"], dtype=object)}, ValueError, "object"),
        ({"a": [np.array([None])]}, ValueError, "'a/0'"),
        ({"a": {1, 2}}, TypeError, "set"),
        ({"a": Linear(2, 2, rng=np.random.default_rng(0)).weight}, TypeError, "Parameter"),
        ({"a/b": 1}, ValueError, "'/'"),
        ({(1, 2): 1}, TypeError, "keys must be strings or ints"),
        ({1: "int", "1": "str"}, ValueError, "both become '1'"),
        ([np.zeros(2)], TypeError, "mapping"),
    ],
)
def test_save_refuses(tmp_path, obj, error, match):
    with pytest.raises(error, match=match):
        save(obj, tmp_path / "x.npz")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------- refusals on load
@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "good.npz"
    save({"model": make_model(0).state_dict(), "epoch": 2}, path)
    return path


def _assert_refused(path, match=None):
    with pytest.raises(ValueError, match=match) as info:
        load(path)
    assert str(path) in str(info.value)  # the message names the file
    return info.value


def test_refuses_a_pickle(tmp_path):
    path = tmp_path / "model.pt"
    with open(path, "wb") as f:
        pickle.dump({"w": np.ones(3)}, f)
    _assert_refused(path, "pickle")


def test_refuses_an_npz_with_an_object_array(tmp_path, good_file):
    # a real tinynet header that points at an entry holding pickled Python objects
    with np.load(good_file) as archive:
        header = archive[serialization.MARKER]
    document = json.loads(str(header[()]))
    document["tree"] = {"dict": {"evil": {"array": "evil"}}}
    path = tmp_path / "evil.npz"
    np.savez(path, **{serialization.MARKER: np.array(json.dumps(document)),
                      "evil": np.array([{"x": 1}, print], dtype=object)})
    _assert_refused(path, "'evil'.*Object arrays cannot be loaded")


def test_refuses_an_npz_without_the_marker(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, weight=np.ones(3))
    _assert_refused(path, "no '__tinynet__' entry")


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.3, 0.5, 0.9, 0.999])
def test_refuses_a_truncated_file(tmp_path, good_file, fraction):
    data = good_file.read_bytes()
    path = tmp_path / "truncated.npz"
    path.write_bytes(data[: int(len(data) * fraction)])
    _assert_refused(path)


def test_refuses_a_corrupted_array(tmp_path, good_file):
    data = bytearray(good_file.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo("model/0.weight.npy")
    data[info.header_offset + 200] ^= 0xFF  # inside the stored array bytes: the CRC catches it
    path = tmp_path / "corrupt.npz"
    path.write_bytes(bytes(data))
    _assert_refused(path, "BadZipFile|CRC")


def test_refuses_random_bytes(tmp_path):
    path = tmp_path / "noise.npz"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _assert_refused(path, "not an .npz archive")


def test_refuses_a_single_npy(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.ones(3))
    _assert_refused(path, "single .npy")


def test_refuses_a_corrupt_header(tmp_path):
    path = tmp_path / "header.npz"
    np.savez(path, **{serialization.MARKER: np.array("{not json")})
    _assert_refused(path, "header")
    np.savez(path, **{serialization.MARKER: np.array(json.dumps({"format": "tinynet-checkpoint", "version": 99,
                                                                   "tree": {"dict": {}}}))})
    _assert_refused(path, "version 99")
    np.savez(path, **{serialization.MARKER: np.array(json.dumps({"format": "tinynet-checkpoint", "version": 1,
                                                                   "tree": {"dict": {"w": {"array": "w"}}}}))})
    _assert_refused(path, "missing")


def test_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope.npz")


# ---------------------------------------------------------------------------------------------- PyTorch
def test_torch_state_dict_loads_into_a_tinynet_model(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    torch_model = torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.Linear(2, 3))
    numpy_state = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
    save(numpy_state, tmp_path / "from_torch.npz")

    rng = np.random.default_rng(0)
    model = Sequential(Linear(4, 2, rng=rng), Linear(2, 3, rng=rng))
    model.load_state_dict(load(tmp_path / "from_torch.npz"))
    x = rng.standard_normal((5, 4)).astype(np.float32)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model(x), expected, rtol=1e-6, atol=1e-6)

    direct = Sequential(Linear(4, 2, rng=rng), Linear(2, 3, rng=rng))
    direct.load_state_dict(numpy_state)  # plain arrays, no file
    np.testing.assert_array_equal(direct(x), model(x))
