"""The Module API: Parameter, registration, traversal, state dicts, modes, dtype conversion, repr,
summary, no_grad, and the errors of each."""
from __future__ import annotations

import re

import numpy as np
import pytest

from tinynet._grad_mode import no_grad
from tinynet.nn.activation import ReLU, Tanh
from tinynet.nn.dropout import Dropout
from tinynet.nn.flatten import Flatten
from tinynet.nn.linear import Linear
from tinynet.nn import Conv2d, IncompatibleKeys, Module, Parameter, Sequential
from tinynet.nn.normalization import BatchNorm1d, BatchNorm2d


def make_model(seed: int = 0) -> Sequential:
    """Linear(3, 4) - BatchNorm1d(4) - ReLU - [Linear(4, 2) - Dropout]: nested, with buffers."""
    rng = np.random.default_rng(seed)
    return Sequential(Linear(3, 4, rng=rng), BatchNorm1d(4), ReLU(), Sequential(Linear(4, 2, rng=rng), Dropout(0.5, rng=rng)))


STATE_KEYS = [
    "0.weight", "0.bias",
    "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked",
    "3.0.weight", "3.0.bias",
]
N_PARAMS = 3 * 4 + 4 + 4 + 4 + 4 * 2 + 2  # = 34, counted by hand


def snapshot(module: Module) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in module.state_dict().items()}


def assert_state_equal(module: Module, expected: dict[str, np.ndarray]) -> None:
    state = module.state_dict()
    assert list(state) == list(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(state[key], value, err_msg=key)
        assert state[key].dtype == value.dtype, key


# =========================================================================== Parameter


def test_parameter_owns_a_copy_and_validates_dtype():
    source = np.ones((2, 3), dtype=np.float32)
    p = Parameter(source)
    source[0, 0] = 5.0
    assert p.data[0, 0] == 1.0
    assert p.shape == (2, 3) and p.dtype == np.float32 and p.size == 6 and p.grad is None
    assert Parameter([1.0, 2.0]).dtype == np.float64
    assert Parameter([1, 2], dtype=np.float32).dtype == np.float32
    assert repr(p) == "Parameter(shape=(2, 3), dtype=float32)"
    with pytest.raises(TypeError, match="Parameter: expected float32 or float64 data, got int64"):
        Parameter(np.arange(3))


def test_parameter_without_copy_takes_a_fresh_array_itself_and_layers_keep_their_own():
    fresh = np.zeros((2, 3), dtype=np.float32)
    assert Parameter(fresh, copy=False).data is fresh
    converted = Parameter(np.zeros(3, np.float64), dtype=np.float32, copy=False)  # a dtype change still copies
    assert converted.dtype == np.float32
    with pytest.raises(TypeError, match="got int64"):
        Parameter(np.arange(3), copy=False)
    # each layer's parameters are arrays of their own, not views of one another or of a shared buffer
    layers = [Linear(4, 3, rng=np.random.default_rng(0)), Conv2d(2, 3, 3, rng=np.random.default_rng(0))]
    arrays = [p.data for layer in layers for p in layer.parameters()]
    assert all(a.base is None and a.flags.owndata for a in arrays)
    assert not any(np.shares_memory(a, b) for i, a in enumerate(arrays) for b in arrays[i + 1:])


def test_parameter_accumulate_grad():
    p = Parameter(np.zeros(3))
    g = np.array([1.0, 2.0, 3.0])
    p.accumulate_grad(g)
    p.accumulate_grad(np.array([1.0, 1.0, 1.0]))
    np.testing.assert_array_equal(p.grad, [2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match=r"expected a gradient of shape \(3,\) and dtype float64, got \(2,\) float64"):
        p.accumulate_grad(np.zeros(2))
    with pytest.raises(ValueError, match=r"got \(3,\) float32"):
        p.accumulate_grad(np.zeros(3, dtype=np.float32))


# =========================================================================== registration


class Pair(Module):
    def __init__(self):
        super().__init__()
        self.scale = Parameter(np.ones(2))
        self.inner = Linear(2, 2, rng=np.random.default_rng(0))
        self.register_buffer("count", np.zeros(2))
        self.note = "plain attribute"


def test_attributes_are_registered_by_kind():
    m = Pair()
    assert list(m._parameters) == ["scale"] and list(m._modules) == ["inner"] and list(m._buffers) == ["count"]
    assert m.note == "plain attribute"
    assert [n for n, _ in m.named_parameters()] == ["scale", "inner.weight", "inner.bias"]
    assert list(m.state_dict()) == ["scale", "count", "inner.weight", "inner.bias"]
    del m.inner
    assert "inner" not in m._modules and [n for n, _ in m.named_parameters()] == ["scale"]
    with pytest.raises(AttributeError, match="'Pair' object has no attribute 'inner'"):
        m.inner


def test_assigning_an_array_to_a_buffer_keeps_it_registered():
    bn = BatchNorm1d(3)
    bn.running_mean = np.full(3, 2.0, dtype=np.float32)
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    np.testing.assert_array_equal(bn.state_dict()["running_mean"], [2.0, 2.0, 2.0])
    bn.eval()
    np.testing.assert_allclose(bn(np.full((1, 3), 2.0, dtype=np.float32)), 0.0)  # the new buffer is used
    with pytest.raises(TypeError, match="BatchNorm1d: cannot assign a float to buffer 'running_var'"):
        bn.running_var = 1.0


def test_assigning_an_array_to_a_parameter_is_an_error():
    layer = Linear(2, 3)
    with pytest.raises(TypeError, match=r"Linear: cannot assign a ndarray to parameter 'weight' \(a Parameter or None expected"):
        layer.weight = np.zeros((3, 2), dtype=np.float32)
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]  # still registered
    layer.bias = None  # allowed: an absent parameter, as bias=False
    assert [n for n, _ in layer.named_parameters()] == ["weight"] and layer.bias is None
    layer.weight = Parameter(np.ones((3, 2), dtype=np.float32))  # replacing by a Parameter is fine
    np.testing.assert_array_equal(layer.state_dict()["weight"], np.ones((3, 2)))


def test_forgetting_super_init_is_a_clear_error():
    class Broken(Module):
        def __init__(self):
            self.w = Parameter(np.ones(1))

    with pytest.raises(AttributeError, match=r"Broken: call Module.__init__\(\) before assigning attributes"):
        Broken()


def test_register_buffer_rejects_non_arrays():
    with pytest.raises(TypeError, match="register_buffer: 'b' must be a numpy array"):
        Module().register_buffer("b", [1.0])


def test_base_module_forward_and_backward_are_abstract():
    with pytest.raises(NotImplementedError, match="Module does not implement forward"):
        Module()(np.zeros(1))
    with pytest.raises(NotImplementedError, match="Module does not implement backward"):
        Module().backward(np.zeros(1))


# =========================================================================== traversal and counts


def test_state_dict_keys_of_a_nested_sequential():
    model = make_model()
    state = model.state_dict()
    assert list(state) == STATE_KEYS
    # the module's own arrays, not copies
    assert state["0.weight"] is model[0].weight.data
    assert state["1.running_mean"] is model[1].running_mean
    assert state["1.num_batches_tracked"].shape == () and state["1.num_batches_tracked"].dtype == np.int64


def test_parameter_and_buffer_counts():
    model = make_model()
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias", "3.0.weight", "3.0.bias"]
    assert len(list(model.parameters())) == 6
    assert [n for n, _ in model.named_buffers()] == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    assert len(list(model.buffers())) == 3
    assert model.num_parameters() == N_PARAMS == sum(p.size for p in model.parameters())
    assert [n for n, _ in model.named_modules()] == ["", "0", "1", "2", "3", "3.0", "3.1"]
    assert [type(m).__name__ for m in model.children()] == ["Linear", "BatchNorm1d", "ReLU", "Sequential"]


def test_sequential_container():
    model = make_model()
    assert len(model) == 4 and isinstance(model[1], BatchNorm1d) and isinstance(model[-1], Sequential)
    assert [type(m).__name__ for m in model] == ["Linear", "BatchNorm1d", "ReLU", "Sequential"]
    model.append(Tanh())
    assert len(model) == 5 and "4" in dict(model.named_children())
    with pytest.raises(TypeError, match="Sequential: argument 1 is a ufunc, not a Module"):
        Sequential(ReLU(), np.tanh)
    with pytest.raises(TypeError, match="Sequential.append: expected a Module, got function"):
        model.append(lambda x: x)
    assert len(model) == 5


def test_sequential_forward_and_backward_chain_the_layers(rng):
    a, b = Linear(3, 4, rng=rng, dtype=np.float64), Linear(4, 2, rng=rng, dtype=np.float64)
    model = Sequential(a, Tanh(), b)
    x = rng.standard_normal((5, 3))
    h = np.tanh(x @ a.weight.data.T + a.bias.data)
    np.testing.assert_allclose(model(x), h @ b.weight.data.T + b.bias.data, rtol=1e-13)
    dout = rng.standard_normal((5, 2))
    dx = model.backward(dout)
    dh = dout @ b.weight.data * (1 - h**2)  # chain rule by hand, in reverse order
    np.testing.assert_allclose(dx, dh @ a.weight.data, rtol=1e-12)
    np.testing.assert_allclose(a.weight.grad, dh.T @ x, rtol=1e-12)
    np.testing.assert_allclose(b.weight.grad, dout.T @ h, rtol=1e-12)


# =========================================================================== load_state_dict


def test_load_state_dict_round_trip_copies_values(rng):
    source, target = make_model(1), make_model(2)
    source[1].running_mean[...] = rng.normal(size=4)
    source[1].num_batches_tracked[...] = 7
    state = snapshot(source)
    result = target.load_state_dict(state)
    assert result == IncompatibleKeys([], []) and isinstance(result, IncompatibleKeys)
    assert_state_equal(target, state)
    state["0.weight"][...] = 99.0  # loaded by copy: the model does not alias the dict
    assert not np.any(target[0].weight.data == 99.0)
    source.eval(), target.eval()
    x = rng.standard_normal((3, 3)).astype(np.float32)
    np.testing.assert_array_equal(target(x), source(x))


def test_load_state_dict_strict_lists_every_problem_and_changes_nothing():
    model = make_model()
    before = snapshot(model)
    state = snapshot(make_model(5))
    del state["1.running_var"], state["3.0.bias"]  # missing
    state["2.weight"] = np.zeros(3)  # unexpected
    state["extra"] = np.zeros(1)  # unexpected
    state["0.weight"] = np.zeros((4, 4), dtype=np.float32)  # shape mismatch
    with pytest.raises(RuntimeError) as info:
        model.load_state_dict(state)
    message = str(info.value)
    assert message.startswith("Error(s) in loading state_dict for Sequential")
    assert re.search(r"size mismatch:\n  0.weight: expected shape \(4, 3\), got \(4, 4\)", message)
    assert re.search(r"missing keys: 1.running_var, 3.0.bias", message)
    assert re.search(r"unexpected keys: 2.weight, extra", message)
    assert_state_equal(model, before)  # the valid keys (0.bias, 1.weight, ...) were not loaded either


def test_load_state_dict_non_strict_returns_the_incompatible_keys():
    model = make_model()
    source = make_model(3)
    state = snapshot(source)
    del state["3.0.bias"]
    state["bogus"] = np.zeros(2)
    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == ["3.0.bias"] and result.unexpected_keys == ["bogus"]
    np.testing.assert_array_equal(model[0].weight.data, source[0].weight.data)  # the rest is loaded
    assert not np.array_equal(model[3][0].bias.data, source[3][0].bias.data)


def test_load_state_dict_shape_mismatch_raises_even_when_not_strict():
    model = make_model()
    before = snapshot(model)
    state = snapshot(model)
    state["1.running_mean"] = np.zeros(5)
    with pytest.raises(RuntimeError, match=r"1.running_mean: expected shape \(4,\), got \(5,\)"):
        model.load_state_dict(state, strict=False)
    assert_state_equal(model, before)


def test_load_state_dict_rejects_non_numeric_values():
    model = Linear(2, 2)
    state = {"weight": np.array([["a", "b"], ["c", "d"]]), "bias": np.zeros(2)}
    with pytest.raises(RuntimeError, match="weight: expected a numeric array, got dtype <U1"):
        model.load_state_dict(state)


def test_load_state_dict_converts_dtypes():
    model = make_model()  # float32
    state = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in snapshot(make_model(4)).items()}
    state["0.weight"] = np.full((4, 3), 1 / 3)  # float64, not representable in float32
    state["1.num_batches_tracked"] = np.array(5)  # platform int
    model.load_state_dict(state)
    assert model[0].weight.dtype == np.float32
    np.testing.assert_array_equal(model[0].weight.data, np.float32(1 / 3))
    assert model[1].num_batches_tracked.dtype == np.int64 and int(model[1].num_batches_tracked) == 5
    double = make_model().double()
    double.load_state_dict({k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in state.items()})
    assert double[0].weight.dtype == np.float64
    np.testing.assert_array_equal(double[0].weight.data, np.float64(np.float32(1 / 3)))
    lists = {k: v.tolist() for k, v in snapshot(model).items()}  # plain nested lists load too
    make_model(9).load_state_dict(lists)


# =========================================================================== modes and dtypes


def test_train_and_eval_propagate_to_every_module():
    model = make_model()
    assert model.eval() is model
    assert all(not m.training for m in model.modules())
    assert model.train() is model
    assert all(m.training for m in model.modules())
    model.train(False)
    assert all(not m.training for m in model.modules())


def test_to_double_and_back(rng):
    model = make_model()
    x32 = rng.standard_normal((4, 3)).astype(np.float32)
    model(x32)
    model.backward(np.ones((4, 2), np.float32))
    assert model.double() is model
    for name, value in model.state_dict().items():
        assert value.dtype == (np.int64 if name.endswith("num_batches_tracked") else np.float64), name
    assert all(p.grad.dtype == np.float64 for p in model.parameters())  # gradients converted too
    with pytest.raises(RuntimeError, match="backward\\(\\) called before forward"):
        model.backward(np.ones((4, 2)))  # caches of the float32 forward were dropped
    assert model(x32.astype(np.float64)).dtype == np.float64
    with pytest.raises(TypeError, match="input dtype float32 does not match weight dtype float64"):
        model(x32)
    model.float()
    assert model[0].weight.dtype == np.float32 and model[1].running_var.dtype == np.float32
    assert model.to(np.float64)[3][0].bias.dtype == np.float64
    with pytest.raises(TypeError, match="Sequential.to: expected float32 or float64, got int32"):
        model.to(np.int32)


def test_to_double_keeps_values(rng):
    model = make_model()
    model(rng.standard_normal((4, 3)).astype(np.float32))  # running stats move
    before = snapshot(model)
    model.double()
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key].astype(value.dtype), err_msg=key)


def test_zero_grad_on_a_model(rng):
    model = make_model()
    model(rng.standard_normal((4, 3)).astype(np.float32))
    model.backward(np.ones((4, 2), np.float32))
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


# =========================================================================== repr and summary


def test_repr_shows_nested_modules():
    expected = """Sequential(
  (0): Linear(in_features=3, out_features=4, bias=True)
  (1): BatchNorm1d(4, eps=1e-05, momentum=0.1, affine=True)
  (2): ReLU()
  (3): Sequential(
    (0): Linear(in_features=4, out_features=2, bias=True)
    (1): Dropout(p=0.5)
  )
)"""
    assert repr(make_model()) == expected
    assert repr(Flatten()) == "Flatten(start_dim=1, end_dim=-1)"


def summary_model() -> Sequential:
    rng = np.random.default_rng(0)
    return Sequential(BatchNorm2d(2), Flatten(), Linear(2 * 3 * 3, 5, rng=rng), Dropout(0.5, rng=rng), Linear(5, 1, rng=rng))


def test_summary_lists_output_shapes_and_parameter_counts():
    text = summary_model().summary((7, 2, 3, 3))
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "type", "output", "shape", "params"]
    rows = [line.split(maxsplit=2) for line in lines[2:7]]
    assert [r[:2] for r in rows] == [["0", "BatchNorm2d"], ["1", "Flatten"], ["2", "Linear"], ["3", "Dropout"], ["4", "Linear"]]
    shapes_and_counts = [r[2].rsplit(maxsplit=1) for r in rows]
    assert shapes_and_counts == [["(7, 2, 3, 3)", "4"], ["(7, 18)", "0"], ["(7, 5)", "95"], ["(7, 5)", "0"], ["(7, 1)", "6"]]
    assert lines[-1] == "total parameters: 105"  # 4 + 18*5+5 + 5+1


def test_summary_restores_modes_and_touches_no_state(rng):
    model = summary_model()
    model[0].eval()  # a frozen BatchNorm inside a training model
    x = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    model[0].train()
    model[0](x)  # non-trivial running stats
    model[0].eval()
    before = snapshot(model)
    model.summary((4, 2, 3, 3))
    assert model.training and model[2].training and model[3].training
    assert not model[0].training  # each module's own mode, not the root's
    assert_state_equal(model, before)  # running stats and num_batches_tracked unchanged


def test_summary_keeps_the_caches_of_the_last_forward(rng):
    model = make_model().double()
    model[3][1].p = 0.0  # deterministic
    x = rng.standard_normal((5, 3))
    dout = rng.standard_normal((5, 2))
    model(x)
    expected = model.backward(dout)
    model.zero_grad()
    model(x)
    model.summary((2, 3), dtype=np.float64)
    np.testing.assert_array_equal(model.backward(dout), expected)


# =========================================================================== no_grad and backward errors


def test_no_grad_forward_of_a_model_keeps_no_cache(rng):
    model = make_model()
    x = rng.standard_normal((4, 3)).astype(np.float32)
    model(x)
    assert all(m._cache is not None for m in (model[0], model[1], model[2], model[3][0]))
    with no_grad():
        model(x)
    assert all(m._cache is None for m in model.modules())
    with pytest.raises(RuntimeError, match=r"Dropout\(p=0.5\): backward\(\) called before forward\(\) \(or the forward ran inside tinynet.no_grad\(\)"):
        model.backward(np.ones((4, 2), np.float32))


def test_no_grad_still_updates_batchnorm_running_stats_in_train_mode(rng):
    # as torch: no_grad only concerns gradients; the mode decides what BatchNorm does
    bn = BatchNorm1d(2, dtype=np.float64)
    with no_grad():
        bn(X := rng.standard_normal((5, 2)))
    np.testing.assert_allclose(bn.running_mean, 0.1 * X.mean(axis=0), rtol=1e-12)
    assert int(bn.num_batches_tracked) == 1


def test_no_grad_works_as_a_decorator(rng):
    layer = Linear(2, 2, rng=rng)

    @no_grad()
    def predict(x):
        return layer(x)

    predict(np.zeros((1, 2), np.float32))
    assert layer._cache is None


def test_backward_before_forward_names_the_layer():
    with pytest.raises(RuntimeError, match=r"^BatchNorm1d\(4, eps=1e-05, momentum=0.1, affine=True\): backward\(\) called before forward\(\)"):
        make_model()[1].backward(np.ones((2, 4), np.float32))
    # a model's backward stops at its last layer, the first one backward reaches
    with pytest.raises(RuntimeError, match=r"^Dropout\(p=0.5\): backward\(\) called before forward"):
        make_model().backward(np.ones((2, 2), np.float32))


def test_a_forward_makes_its_layers_descriptions_only_for_a_message(rng, monkeypatch):
    from tinynet import nn as tnn

    model = tnn.fuse(tnn.Sequential(tnn.Conv2d(1, 2, 3, rng=rng), tnn.BatchNorm2d(2), tnn.ReLU(), tnn.MaxPool2d(2),
                                    tnn.Flatten(), tnn.Linear(2 * 3 * 3, 4, rng=rng), tnn.BatchNorm1d(4), tnn.ReLU(),
                                    tnn.Dropout(0.5, rng=rng), tnn.Linear(4, 2, rng=rng)))
    x = rng.random((2, 1, 8, 8), dtype=np.float32)
    made = []
    describe = Module._describe
    monkeypatch.setattr(Module, "_describe", lambda self: made.append(type(self).__name__) or describe(self))
    model(x)
    model.backward(np.ones((2, 2), np.float32))
    with no_grad():
        model.eval()(x)
    assert made == []  # every check passed: no text was made, in training, backward or eval
    with pytest.raises(TypeError, match=r"^Linear\(in_features=4, out_features=2, bias=True\): input dtype float64"):
        model[-1](np.ones((2, 4)))
    assert made == ["Linear"]
    model.train()(x)
    with pytest.raises(ValueError, match=r"^Conv2d\(1, 2, kernel_size=\(3, 3\), stride=\(1, 1\)\): expected dout of shape"):
        model[0].backward(np.ones((1, 2, 6, 6), np.float32))


# ---------------------------------------------------------------------------------------------
# BatchNorm2d -> ReLU -> MaxPool2d(2, 2) as one fused block, when the model asks (tinynet.nn.fuse)
# ---------------------------------------------------------------------------------------------
def _conv_block_pair(seed=0):
    from tinynet import nn as tnn

    def block():
        rng = np.random.default_rng(seed)
        return tnn.Sequential(tnn.Conv2d(2, 3, 3, rng=rng), tnn.BatchNorm2d(3), tnn.ReLU(), tnn.MaxPool2d(2, 2),
                              tnn.BatchNorm2d(3), tnn.ReLU(), tnn.MaxPool2d(2))
    fused, plain = tnn.fuse(block()), block()
    return fused, plain


@pytest.mark.parametrize("training", [True, False])
def test_sequential_fused_block_equals_the_layers_one_by_one(training):
    from tinynet.nn.fused import BatchNormReLUMaxPool2d

    fused, plain = _conv_block_pair()
    fused.train(training), plain.train(training)
    x = np.random.default_rng(1).standard_normal((4, 2, 13, 12)).astype(np.float32)
    out, ref = fused(x), plain(x)
    assert sum(isinstance(step, BatchNormReLUMaxPool2d) for step in fused) == 2
    assert not any(isinstance(step, BatchNormReLUMaxPool2d) for step in plain)
    np.testing.assert_array_equal(out, ref)
    dout = np.random.default_rng(2).standard_normal(out.shape).astype(np.float32)
    np.testing.assert_allclose(fused.backward(dout), plain.backward(dout), rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(fused.named_parameters(), plain.parameters()):
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-5, atol=1e-6, err_msg=name)
    for (name, a), b in zip(fused.state_dict().items(), plain.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert list(fused.state_dict()) == list(plain.state_dict())  # the same keys: checkpoints load either way


def test_sequential_does_not_fuse_other_pools_or_wrapped_layers():
    from tinynet import nn as tnn

    seq = tnn.fuse(tnn.Sequential(tnn.BatchNorm2d(2), tnn.ReLU(), tnn.MaxPool2d(3, 2)))
    seq(np.ones((2, 2, 7, 7), np.float32))
    assert [type(s).__name__ for s in seq] == ["BatchNorm2d", "ReLU", "MaxPool2d"]
    fused, plain = _conv_block_pair()
    summary = plain.summary((1, 2, 13, 12))  # wraps every layer's forward: all must appear
    assert summary.count("MaxPool2d") == 2 and summary.count("BatchNorm2d") == 2
    # the fused model's summary and repr show what runs: the fused blocks
    assert fused.summary((1, 2, 13, 12)).count("BatchNormReLUMaxPool2d") == 2
    assert repr(fused).count("BatchNormReLUMaxPool2d") == 2 and "(1): BatchNormReLUMaxPool2d(3" in repr(fused)


def test_sequential_forward_is_the_plain_loop():
    from tinynet import nn as tnn

    _, plain = _conv_block_pair()
    calls = []
    for i, layer in enumerate(plain):
        original = layer.forward
        layer.forward = (lambda original, i: lambda x: calls.append(i) or original(x))(original, i)
    plain(np.ones((2, 2, 13, 12), np.float32))
    assert calls == list(range(len(plain)))  # every child, in order, each once: nothing fused behind our back
    assert not any(isinstance(m, tnn.BatchNormReLUMaxPool2d) for m in plain.modules())


def test_fuse_keeps_the_parameters_buffers_and_mode():
    from tinynet import nn as tnn

    seq = tnn.Sequential(tnn.BatchNorm2d(3, momentum=0.3, eps=1e-3), tnn.ReLU(), tnn.MaxPool2d(2)).eval()
    bn = seq[0]
    weight, running_mean = bn.weight, bn.running_mean
    tnn.fuse(seq)
    block = seq[0]
    assert type(block) is tnn.BatchNormReLUMaxPool2d and not block.training
    assert block.weight is weight and block.running_mean is running_mean  # shared: an optimizer built before still works
    assert (block.momentum, block.eps, block.num_features) == (0.3, 1e-3, 3)
    assert [type(m) for m in seq][1:] == [tnn.Identity, tnn.Identity]
    with pytest.raises(ValueError, match="BatchNormReLUMaxPool2d: expected"):
        tnn.BatchNormReLUMaxPool2d.from_modules(tnn.BatchNorm2d(3), tnn.ReLU(), tnn.MaxPool2d(2, 1))


def test_fused_backward_needs_a_recorded_forward():
    from tinynet import nn as tnn
    from tinynet import no_grad

    fused, _ = _conv_block_pair()
    x = np.ones((2, 2, 13, 12), np.float32)
    with no_grad():
        out = fused(x)
    with pytest.raises(RuntimeError, match="fused.*backward\\(\\) called before forward"):
        fused.backward(np.ones_like(out))
    _, plain = _conv_block_pair()
    replaced_pool = plain[3]
    tnn.fuse(plain)  # the pool's work moved into the fused block: the pool itself never runs
    out = plain(x)
    with pytest.raises(RuntimeError, match="backward\\(\\) called before forward"):
        replaced_pool.backward(np.ones_like(out))


def test_fused_block_names_the_layer_in_errors():
    from tinynet import nn as tnn

    seq = tnn.fuse(tnn.Sequential(tnn.BatchNorm2d(3), tnn.ReLU(), tnn.MaxPool2d(2)))
    with pytest.raises(ValueError, match="BatchNorm2d.*channels"):
        seq(np.ones((2, 4, 6, 6), np.float32))
