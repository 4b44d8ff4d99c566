"""Layers: hygiene of every layer, BatchNorm/Dropout semantics against hand-computed values, activation
and Flatten values, error messages for bad input, and the weight initialisers.

Every expected value here is computed independently (by hand or with plain NumPy written differently
from the layer), never read back from the code under test.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

from tinynet import init
from tinynet._checks import ShapeError
from tinynet._grad_mode import is_grad_enabled, no_grad
from tinynet.nn.activation import ELU, LeakyReLU, ReLU, Sigmoid, Tanh
from tinynet.nn.dropout import Dropout
from tinynet.nn.flatten import Flatten
from tinynet.nn.linear import Linear
from tinynet.nn.normalization import BatchNorm1d, BatchNorm2d

# =========================================================================== hygiene of every layer


@dataclass
class Case:
    name: str
    make: Callable[[type, np.random.Generator], object]  # (dtype, rng) -> layer
    shape: tuple[int, ...]
    deterministic: bool = True  # the same input gives the same output on a second forward


def _bn_eval(cls, c, dtype, rng):
    bn = cls(c, dtype=dtype)
    bn.running_mean[...] = rng.normal(size=c)
    bn.running_var[...] = rng.uniform(0.5, 2.0, c)
    bn.weight.data[...] = rng.uniform(0.5, 2.0, c)
    bn.bias.data[...] = rng.normal(size=c)
    return bn.eval()


def _bn_train(cls, c, dtype, rng, **kwargs):
    bn = cls(c, dtype=dtype, **kwargs)
    if bn.weight is not None:
        bn.weight.data[...] = rng.uniform(0.5, 2.0, c)
        bn.bias.data[...] = rng.normal(size=c)
    return bn


CASES = [
    Case("Linear", lambda dt, rng: Linear(4, 3, rng=rng, dtype=dt), (5, 4)),
    Case("Linear-no-bias", lambda dt, rng: Linear(4, 3, bias=False, rng=rng, dtype=dt), (5, 4)),
    Case("BatchNorm1d-NC", lambda dt, rng: _bn_train(BatchNorm1d, 4, dt, rng), (6, 4)),
    Case("BatchNorm1d-NCL", lambda dt, rng: _bn_train(BatchNorm1d, 3, dt, rng), (2, 3, 5)),
    Case("BatchNorm2d", lambda dt, rng: _bn_train(BatchNorm2d, 3, dt, rng), (2, 3, 4, 5)),
    Case("BatchNorm2d-no-affine", lambda dt, rng: _bn_train(BatchNorm2d, 3, dt, rng, affine=False), (2, 3, 2, 2)),
    Case("BatchNorm1d-eval", lambda dt, rng: _bn_eval(BatchNorm1d, 4, dt, rng), (3, 4)),
    Case("BatchNorm2d-eval", lambda dt, rng: _bn_eval(BatchNorm2d, 3, dt, rng), (2, 3, 2, 4)),
    Case("Dropout-train", lambda dt, rng: Dropout(0.4, rng=rng), (4, 6), deterministic=False),
    Case("Dropout-p0", lambda dt, rng: Dropout(0.0, rng=rng), (4, 6)),
    Case("Dropout-p1", lambda dt, rng: Dropout(1.0, rng=rng), (4, 6)),
    Case("Dropout-eval", lambda dt, rng: Dropout(0.4, rng=rng).eval(), (4, 6)),
    Case("ReLU", lambda dt, rng: ReLU(), (3, 4, 2)),
    Case("LeakyReLU", lambda dt, rng: LeakyReLU(0.1), (3, 4)),
    Case("ELU", lambda dt, rng: ELU(0.8), (2, 3, 2, 2)),
    Case("Tanh", lambda dt, rng: Tanh(), (5,)),
    Case("Sigmoid", lambda dt, rng: Sigmoid(), (3, 4)),
    Case("Flatten", lambda dt, rng: Flatten(), (2, 3, 4, 5)),
    Case("Flatten-1-2", lambda dt, rng: Flatten(1, 2), (2, 3, 4, 5)),
]
case_ids = [c.name for c in CASES]
dtypes = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])


def _setup(case: Case, dtype, rng):
    layer = case.make(dtype, rng)
    x = rng.standard_normal(case.shape).astype(dtype)
    return layer, x


@dtypes
@pytest.mark.parametrize("case", CASES, ids=case_ids)
def test_hygiene(case, dtype, rng):
    """Inputs unmodified, output and gradients of the input's dtype, dx a fresh array."""
    layer, x = _setup(case, dtype, rng)
    x_before = x.copy()
    out = layer(x)
    assert out.dtype == dtype
    np.testing.assert_array_equal(x, x_before)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dout_before = dout.copy()
    dx = layer.backward(dout)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(dout, dout_before)
    assert not np.shares_memory(dx, x)
    assert not np.shares_memory(dx, dout)
    assert not np.shares_memory(dx, out)
    for name, param in layer.named_parameters():
        assert param.grad.dtype == dtype and param.grad.shape == param.shape, name
        for other in (x, dout, dx, out, param.data):
            assert not np.shares_memory(param.grad, other), name


@dtypes
@pytest.mark.parametrize("case", CASES, ids=case_ids)
def test_second_backward_accumulates_exactly(case, dtype, rng):
    layer, x = _setup(case, dtype, rng)
    out = layer(x)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx1 = layer.backward(dout)
    first = {name: p.grad.copy() for name, p in layer.named_parameters()}
    dx2 = layer.backward(dout)
    np.testing.assert_array_equal(dx2, dx1)  # the cache was not consumed or modified
    for name, param in layer.named_parameters():
        np.testing.assert_array_equal(param.grad, 2 * first[name], err_msg=name)  # g + g == 2g exactly


@pytest.mark.parametrize("case", [c for c in CASES if any(True for _ in c.make(np.float64, np.random.default_rng(0)).parameters())], ids=lambda c: c.name)
def test_zero_grad(case, rng):
    layer, x = _setup(case, np.float64, rng)
    dout = rng.standard_normal(layer(x).shape)
    layer.backward(dout)
    first = {name: p.grad.copy() for name, p in layer.named_parameters()}
    arrays = {name: p.grad for name, p in layer.named_parameters()}
    layer.zero_grad(set_to_none=False)
    for name, param in layer.named_parameters():
        assert param.grad is arrays[name]  # zeroed in place, as torch's set_to_none=False
        np.testing.assert_array_equal(param.grad, np.zeros(param.shape))
    layer.backward(dout)
    for name, param in layer.named_parameters():
        np.testing.assert_array_equal(param.grad, first[name])
    layer.zero_grad()
    assert all(p.grad is None for p in layer.parameters())
    layer.zero_grad(set_to_none=False)  # no gradient yet: stays None
    assert all(p.grad is None for p in layer.parameters())


@pytest.mark.parametrize("case", CASES, ids=case_ids)
def test_backward_before_forward_names_the_layer(case, rng):
    layer = case.make(np.float32, rng)
    with pytest.raises(RuntimeError, match=re.escape(f"{layer._describe()}: backward() called before forward()")):
        layer.backward(np.ones(case.shape, dtype=np.float32))


@pytest.mark.parametrize("case", CASES, ids=case_ids)
def test_no_grad_keeps_no_cache(case, rng):
    layer, x = _setup(case, np.float64, rng)
    expected = layer(x) if case.deterministic else None
    with no_grad():
        assert not is_grad_enabled()
        out = layer(x)
    assert is_grad_enabled()
    assert layer._cache is None  # the cache of the earlier forward is dropped too
    if expected is not None:
        np.testing.assert_array_equal(out, expected)
    with pytest.raises(RuntimeError, match=r"backward\(\) called before forward\(\).*no_grad"):
        layer.backward(np.ones_like(out))


def test_no_grad_restores_state_after_an_exception_and_when_nested():
    with pytest.raises(KeyError):
        with no_grad():
            raise KeyError("x")
    assert is_grad_enabled()
    with no_grad():
        with no_grad():
            pass
        assert not is_grad_enabled()
    assert is_grad_enabled()


# =========================================================================== Linear values


def test_linear_values_by_hand():
    layer = Linear(2, 3, dtype=np.float64)
    layer.weight.data[...] = [[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]]
    layer.bias.data[...] = [0.5, -1.0, 2.0]
    x = np.array([[1.0, 1.0], [2.0, -4.0]])
    np.testing.assert_array_equal(layer(x), [[3.5, -2.0, 5.5], [-5.5, 3.0, 6.0]])
    dout = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])
    # dx = dout @ W, dW = dout^T @ x, db = column sums of dout
    np.testing.assert_array_equal(layer.backward(dout), [[7.0, 3.0], [-3.0, -1.5]])
    np.testing.assert_array_equal(layer.weight.grad, [[1.0, 1.0], [2.0, -4.0], [0.0, 6.0]])
    np.testing.assert_array_equal(layer.bias.grad, [1.0, 1.0, 1.0])


def test_linear_without_bias():
    layer = Linear(3, 2, bias=False, dtype=np.float64)
    assert layer.bias is None and [n for n, _ in layer.named_parameters()] == ["weight"]
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(layer(x), x @ layer.weight.data.T, rtol=1e-15)
    assert "bias=False" in repr(layer)


@pytest.mark.parametrize("args", [(0, 3), (3, 0), (-1, 2)])
def test_linear_rejects_non_positive_sizes(args):
    with pytest.raises(ValueError, match="must be positive"):
        Linear(*args)


# =========================================================================== BatchNorm semantics

X_BN = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 10.0]])
# by hand: channel means [3, 6]; biased variances [8/3, 32/3]; unbiased [4, 16]


def test_batchnorm_train_step_by_hand():
    bn = BatchNorm1d(2, dtype=np.float64)
    out = bn(X_BN)
    np.testing.assert_allclose(out[:, 0], np.array([-2.0, 0.0, 2.0]) / math.sqrt(8 / 3 + 1e-5), rtol=1e-13)
    np.testing.assert_allclose(out[:, 1], np.array([-4.0, 0.0, 4.0]) / math.sqrt(32 / 3 + 1e-5), rtol=1e-13)
    # momentum 0.1 weighs the NEW statistic; the running variance is the unbiased one
    np.testing.assert_allclose(bn.running_mean, [0.9 * 0 + 0.1 * 3, 0.9 * 0 + 0.1 * 6], rtol=1e-14)
    np.testing.assert_allclose(bn.running_var, [0.9 * 1 + 0.1 * 4, 0.9 * 1 + 0.1 * 16], rtol=1e-14)
    assert bn.num_batches_tracked.shape == () and bn.num_batches_tracked.dtype == np.int64
    assert int(bn.num_batches_tracked) == 1
    bn(X_BN + 1.0)  # means [4, 7], same variances
    np.testing.assert_allclose(bn.running_mean, [0.9 * 0.3 + 0.1 * 4, 0.9 * 0.6 + 0.1 * 7], rtol=1e-14)
    np.testing.assert_allclose(bn.running_var, [0.9 * 1.3 + 0.1 * 4, 0.9 * 2.5 + 0.1 * 16], rtol=1e-14)
    assert int(bn.num_batches_tracked) == 2


def test_batchnorm_affine_applies_gamma_and_beta():
    bn = BatchNorm1d(2, dtype=np.float64)
    bn.weight.data[...] = [2.0, -1.0]
    bn.bias.data[...] = [0.5, 3.0]
    out = bn(X_BN)
    np.testing.assert_allclose(out[:, 0], 2.0 * np.array([-2.0, 0.0, 2.0]) / math.sqrt(8 / 3 + 1e-5) + 0.5, rtol=1e-13)
    np.testing.assert_allclose(out[:, 1], -np.array([-4.0, 0.0, 4.0]) / math.sqrt(32 / 3 + 1e-5) + 3.0, rtol=1e-13)


@pytest.mark.parametrize("shape", [(3, 2, 4), (2, 2, 3, 4)])
def test_batchnorm_statistics_over_all_axes_but_channels(shape, rng):
    x = rng.standard_normal(shape) * 3 + 1
    bn = (BatchNorm2d if len(shape) == 4 else BatchNorm1d)(2, momentum=0.25, dtype=np.float64)
    out = bn(x)
    for c in range(2):
        values = x[:, c].ravel()  # every value of channel c, gathered by indexing rather than axes
        m = values.size
        mean = sum(values) / m
        var = sum((v - mean) ** 2 for v in values) / m
        np.testing.assert_allclose(out[:, c], (x[:, c] - mean) / math.sqrt(var + 1e-5), rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(bn.running_mean[c], 0.25 * mean, rtol=1e-12)
        np.testing.assert_allclose(bn.running_var[c], 0.75 + 0.25 * var * m / (m - 1), rtol=1e-12)


def test_batchnorm_momentum_none_is_a_cumulative_average(rng):
    bn = BatchNorm1d(3, momentum=None, dtype=np.float64)
    batches = [rng.standard_normal((4, 3)) * (k + 1) + k for k in range(4)]
    for x in batches:
        bn(x)
    # factor 1/t at step t: the plain average of the batch statistics (the initial 0 and 1 drop out)
    np.testing.assert_allclose(bn.running_mean, np.mean([x.mean(axis=0) for x in batches], axis=0), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, np.mean([x.var(axis=0, ddof=1) for x in batches], axis=0), rtol=1e-12)
    assert int(bn.num_batches_tracked) == 4


@pytest.mark.parametrize("momentum, expected_mean, expected_var", [(0.0, [0.0, 0.0], [1.0, 1.0]), (1.0, [3.0, 6.0], [4.0, 16.0])])
def test_batchnorm_momentum_extremes(momentum, expected_mean, expected_var):
    bn = BatchNorm1d(2, momentum=momentum, dtype=np.float64)
    bn(X_BN)
    np.testing.assert_allclose(bn.running_mean, expected_mean, rtol=1e-14)
    np.testing.assert_allclose(bn.running_var, expected_var, rtol=1e-14)


def test_batchnorm_eval_uses_running_statistics_and_updates_nothing():
    bn = BatchNorm1d(2, dtype=np.float64)
    bn.running_mean[...] = [1.0, -2.0]
    bn.running_var[...] = [4.0, 0.25]
    bn.weight.data[...] = [3.0, 1.0]
    bn.bias.data[...] = [0.0, 1.0]
    bn.eval()
    x = np.array([[1.0, 0.0], [5.0, -2.0]])  # a batch of 1 would do too
    out = bn(x)
    np.testing.assert_allclose(out[:, 0], 3.0 * (np.array([1.0, 5.0]) - 1.0) / math.sqrt(4.0 + 1e-5), rtol=1e-14)
    np.testing.assert_allclose(out[:, 1], (np.array([0.0, -2.0]) + 2.0) / math.sqrt(0.25 + 1e-5) + 1.0, rtol=1e-14)
    np.testing.assert_array_equal(bn.running_mean, [1.0, -2.0])
    np.testing.assert_array_equal(bn.running_var, [4.0, 0.25])
    assert int(bn.num_batches_tracked) == 0
    np.testing.assert_allclose(bn(x[:1]), out[:1], rtol=1e-15)  # each sample on its own


def test_batchnorm_float32_keeps_float32_state(rng):
    bn = BatchNorm2d(3)
    bn(rng.standard_normal((2, 3, 2, 2)).astype(np.float32))
    for name, value in bn.state_dict().items():
        assert value.dtype == (np.int64 if name == "num_batches_tracked" else np.float32), name


@pytest.mark.parametrize("layer, shape", [(BatchNorm1d(3), (1, 3)), (BatchNorm1d(3), (1, 3, 1)), (BatchNorm2d(3), (1, 3, 1, 1))])
def test_batchnorm_train_with_one_value_per_channel_raises(layer, shape):
    expected = re.escape(layer._describe()) + r": expected more than 1 value per channel when training, got input of shape " + re.escape(str(shape))
    with pytest.raises(ValueError, match=expected):
        layer(np.zeros(shape, dtype=np.float32))
    assert int(layer.num_batches_tracked) == 0  # nothing was updated
    layer.eval()
    assert layer(np.zeros(shape, dtype=np.float32)).shape == shape  # fine with running statistics


@pytest.mark.parametrize("kwargs, match", [
    ({"num_features": 0}, "num_features must be positive"),
    ({"num_features": 2, "eps": 0.0}, "eps must be positive"),
    ({"num_features": 2, "momentum": 1.5}, r"momentum must be in \[0, 1\] or None"),
    ({"num_features": 2, "momentum": -0.1}, r"momentum must be in \[0, 1\] or None"),
])
def test_batchnorm_rejects_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BatchNorm1d(**kwargs)


def test_batchnorm_without_affine_has_only_buffers():
    bn = BatchNorm2d(4, affine=False)
    assert list(bn.parameters()) == []
    assert list(bn.state_dict()) == ["running_mean", "running_var", "num_batches_tracked"]


# =========================================================================== Dropout semantics


def test_dropout_eval_is_the_identity(rng):
    layer = Dropout(0.7, rng=rng).eval()
    x = rng.standard_normal((5, 7)).astype(np.float32)
    out = layer(x)
    np.testing.assert_array_equal(out, x)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(layer.backward(dout), dout)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_train_drops_p_and_scales_the_rest(p, dtype):
    n = 200_000
    layer = Dropout(p, rng=np.random.default_rng(7))
    x = np.full(n, 3.0, dtype=dtype)
    out = layer(x)
    dropped = np.mean(out == 0)
    # the fraction dropped is Binomial(n, p) / n: standard deviation sqrt(p (1 - p) / n) <= 0.0012
    assert abs(dropped - p) < 6 * math.sqrt(p * (1 - p) / n)
    np.testing.assert_allclose(out[out != 0], 3.0 / (1 - p), rtol=1e-6)  # kept units scaled by 1/(1-p)
    assert abs(out.mean() - 3.0) < 0.1  # inverted dropout keeps the expectation
    assert out.dtype == dtype


def test_dropout_same_seed_same_mask_and_no_global_state(rng):
    x = rng.standard_normal((20, 30))
    state = np.random.get_state()[1].copy()
    a = Dropout(0.5, rng=np.random.default_rng(3))(x)
    b = Dropout(0.5, rng=np.random.default_rng(3))(x)
    c = Dropout(0.5, rng=np.random.default_rng(4))(x)
    np.testing.assert_array_equal(a, b)
    assert np.any((a == 0) != (c == 0))
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # the global generator was not used


def test_dropout_draws_a_new_mask_each_forward(rng):
    layer = Dropout(0.5, rng=rng)
    x = np.ones((10, 10))
    assert np.any(layer(x) != layer(x))


def test_dropout_p0_and_p1(rng):
    x = rng.standard_normal((4, 5))
    dout = rng.standard_normal((4, 5))
    zero = Dropout(0.0, rng=rng)
    np.testing.assert_array_equal(zero(x), x)
    np.testing.assert_array_equal(zero.backward(dout), dout)
    one = Dropout(1.0, rng=rng)
    with np.errstate(all="raise"):  # no 1 / (1 - p) = 1/0
        out = one(x)
        dx = one.backward(dout)
    np.testing.assert_array_equal(out, np.zeros_like(x))
    np.testing.assert_array_equal(dx, np.zeros_like(x))


@pytest.mark.parametrize("p", [-0.1, 1.01, float("nan")])
def test_dropout_p_out_of_range(p):
    with pytest.raises(ValueError, match=r"Dropout: p must be a probability in \[0, 1\], got"):
        Dropout(p)


# =========================================================================== activations and Flatten

X_ACT = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
DOUT_ACT = np.array([1.0, 2.0, 3.0, 4.0, 5.0])


@pytest.mark.parametrize("layer, expected_out, expected_dx", [
    (ReLU(), [0, 0, 0, 0.5, 2], [0, 0, 0, 4, 5]),  # subgradient 0 at 0, as torch
    (LeakyReLU(0.1), [-0.2, -0.05, 0, 0.5, 2], [0.1, 0.2, 0.3, 4, 5]),
    (LeakyReLU(), [-0.02, -0.005, 0, 0.5, 2], [0.01, 0.02, 0.03, 4, 5]),
    (ELU(2.0), [2 * (math.exp(-2) - 1), 2 * (math.exp(-0.5) - 1), 0, 0.5, 2],
     [2 * math.exp(-2), 2 * 2 * math.exp(-0.5), 3 * 2.0, 4, 5]),
    (Tanh(), [(math.exp(v) - math.exp(-v)) / (math.exp(v) + math.exp(-v)) for v in X_ACT],
     [d / math.cosh(v) ** 2 for v, d in zip(X_ACT, DOUT_ACT)]),
    (Sigmoid(), [1 / (1 + math.exp(-v)) for v in X_ACT],
     [d * math.exp(-v) / (1 + math.exp(-v)) ** 2 for v, d in zip(X_ACT, DOUT_ACT)]),
], ids=["ReLU", "LeakyReLU0.1", "LeakyReLU", "ELU", "Tanh", "Sigmoid"])
def test_activation_values(layer, expected_out, expected_dx):
    np.testing.assert_allclose(layer(X_ACT.copy()), expected_out, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(layer.backward(DOUT_ACT.copy()), expected_dx, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations_do_not_overflow_for_large_inputs(dtype):
    x = np.array([-1000.0, -50.0, 50.0, 1000.0], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        sig = Sigmoid()(x)
        elu = ELU()(x)
        tanh = Tanh()(x)
    np.testing.assert_allclose(sig, [0.0, math.exp(-50) / (1 + math.exp(-50)), 1.0, 1.0], rtol=1e-5, atol=0)
    np.testing.assert_array_equal(elu, [-1.0, -1.0, 50.0, 1000.0])
    np.testing.assert_array_equal(tanh, [-1.0, -1.0, 1.0, 1.0])


@pytest.mark.parametrize("layer", [ReLU(), LeakyReLU(), ELU(), Tanh(), Sigmoid()], ids=lambda l: type(l).__name__)
def test_activations_propagate_nan(layer):
    out = layer(np.array([np.nan, 1.0]))
    assert np.isnan(out[0]) and np.isfinite(out[1])


@pytest.mark.parametrize("start, end, expected", [
    (1, -1, (2, 60)), (0, -1, (120,)), (1, 2, (2, 12, 5)), (2, 3, (2, 3, 20)), (-3, -2, (2, 12, 5)), (2, 2, (2, 3, 4, 5)),
])
def test_flatten_shapes_and_order(start, end, expected):
    x = np.arange(120.0).reshape(2, 3, 4, 5)
    layer = Flatten(start, end)
    out = layer(x)
    assert out.shape == expected
    np.testing.assert_array_equal(out.ravel(), np.arange(120.0))  # C (channel-major) order kept
    dout = np.arange(120.0).reshape(expected) * 2
    dx = layer.backward(dout)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dx, x * 2)


@pytest.mark.parametrize("layer, shape, match", [
    (Flatten(2, 1), (2, 3, 4), r"cannot flatten dims 2\.\.1 of an input of shape \(2, 3, 4\)"),
    (Flatten(5), (2, 3, 4, 5), r"cannot flatten dims 5\.\.-1 .*both in \[-4, 3\]"),
    (Flatten(1, -6), (2, 3, 4, 5), r"cannot flatten dims 1\.\.-6"),
    (Flatten(), (7,), r"cannot flatten dims 1\.\.-1 of an input of shape \(7,\)"),
    (Flatten(), (), r"expected an input with at least 1 dimension"),
])
def test_flatten_bad_dims(layer, shape, match):
    with pytest.raises(ShapeError, match=re.escape(layer._describe()) + ".*" + match):
        layer(np.zeros(shape))


# =========================================================================== bad input

LIN = "Linear(in_features=4, out_features=3, bias=True)"
BN1 = "BatchNorm1d(3, eps=1e-05, momentum=0.1, affine=True)"
BN2 = "BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=True)"

BAD_INPUTS = [
    # (layer factory, input, exception, message: layer, expectation, what it got)
    (lambda: Linear(4, 3), np.zeros(4, np.float32), ShapeError,
     re.escape(LIN) + r": expected a 2-D input of shape \(N, in_features\), got shape \(4,\)"),
    (lambda: Linear(4, 3), np.zeros((2, 3, 4), np.float32), ShapeError, re.escape(LIN) + r": expected a 2-D input.*got shape \(2, 3, 4\)"),
    (lambda: Linear(4, 3), np.zeros((2, 5), np.float32), ShapeError,
     re.escape(LIN) + r": expected input with 4 features \(shape \(N, in_features\)\), got shape \(2, 5\)"),
    (lambda: Linear(4, 3), np.zeros((2, 4), np.int64), TypeError, re.escape(LIN) + r": expected input of dtype float32 or float64, got int64"),
    (lambda: Linear(4, 3), np.zeros((2, 4), np.float16), TypeError, re.escape(LIN) + r": .*float32 or float64, got float16"),
    (lambda: Linear(4, 3), np.zeros((2, 4), np.float64), TypeError,
     re.escape(LIN) + r": input dtype float64 does not match weight dtype float32"),
    (lambda: Linear(4, 3).double(), np.zeros((2, 4), np.float32), TypeError, r"input dtype float32 does not match weight dtype float64"),
    (lambda: Linear(4, 3), [[0.0] * 4] * 2, TypeError, re.escape(LIN) + r": expected input to be a numpy.ndarray, got list"),
    (lambda: BatchNorm1d(3), np.zeros((2, 3, 4, 5), np.float32), ShapeError,
     re.escape(BN1) + r": expected a 2/3-D input of shape \(N, C\) or \(N, C, L\), got shape \(2, 3, 4, 5\)"),
    (lambda: BatchNorm1d(3), np.zeros((4, 2), np.float32), ShapeError, re.escape(BN1) + r": expected input with 3 channels .*got shape \(4, 2\)"),
    (lambda: BatchNorm2d(3), np.zeros((2, 3, 4), np.float32), ShapeError,
     re.escape(BN2) + r": expected a 4-D input of shape \(N, C, H, W\), got shape \(2, 3, 4\)"),
    (lambda: BatchNorm2d(3), np.zeros((2, 4, 2, 2), np.float32), ShapeError, re.escape(BN2) + r": expected input with 3 channels.*got shape \(2, 4, 2, 2\)"),
    (lambda: BatchNorm2d(3), np.zeros((2, 3, 2, 2), np.int32), TypeError, re.escape(BN2) + r": .*float32 or float64, got int32"),
    (lambda: BatchNorm2d(3), np.zeros((2, 3, 2, 2), np.float64), TypeError,
     re.escape(BN2) + r": input dtype float64 does not match running_mean dtype float32"),
    (lambda: BatchNorm1d(3), 5.0, TypeError, re.escape(BN1) + r": expected input to be a numpy.ndarray, got float"),
    (lambda: Dropout(0.5), np.zeros(3, np.int64), TypeError, r"Dropout\(p=0.5\): .*float32 or float64, got int64"),
    (lambda: Dropout(0.5), [1.0], TypeError, r"Dropout\(p=0.5\): expected input to be a numpy.ndarray, got list"),
    (lambda: ReLU(), np.zeros(3, np.int64), TypeError, r"ReLU\(\): .*float32 or float64, got int64"),
    (lambda: LeakyReLU(0.2), np.zeros(3, bool), TypeError, r"LeakyReLU\(negative_slope=0.2\): .*got bool"),
    (lambda: ELU(), (1.0, 2.0), TypeError, r"ELU\(alpha=1.0\): expected input to be a numpy.ndarray, got tuple"),
    (lambda: Tanh(), np.zeros(3, np.int8), TypeError, r"Tanh\(\): .*got int8"),
    (lambda: Sigmoid(), np.zeros(3, np.complex128), TypeError, r"Sigmoid\(\): .*got complex128"),
    (lambda: Flatten(), np.zeros((2, 3), np.int64), TypeError, r"Flatten\(start_dim=1, end_dim=-1\): .*got int64"),
]


@pytest.mark.parametrize("make, x, error, match", BAD_INPUTS)
def test_bad_input_is_reported_clearly(make, x, error, match):
    layer = make()
    with pytest.raises(error, match=match):
        layer(x)
    assert layer._cache is None  # nothing half-done was kept


def test_shape_error_is_a_value_error():
    assert issubclass(ShapeError, ValueError)


# =========================================================================== init


@pytest.mark.parametrize("shape, fans", [((7, 5), (5, 7)), ((8, 3, 4, 2), (24, 64)), ((2, 6, 5), (30, 10)), ((1, 1), (1, 1))])
def test_fan_in_and_fan_out(shape, fans):
    assert init.fan_in_and_fan_out(shape) == fans


def test_fan_needs_two_dimensions():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.fan_in_and_fan_out((5,))


def test_calculate_gain():
    assert init.calculate_gain("linear") == 1.0 and init.calculate_gain("sigmoid") == 1.0
    assert init.calculate_gain("conv2d") == 1.0
    assert init.calculate_gain("relu") == pytest.approx(2**0.5)
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("leaky_relu") == pytest.approx((2 / (1 + 0.01**2)) ** 0.5)
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx((2 / 1.04) ** 0.5)
    assert init.calculate_gain("leaky_relu", 0.0) == pytest.approx(2**0.5)
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'"):
        init.calculate_gain("swish")


@pytest.mark.parametrize("shape", [(300, 50), (64, 8, 3, 3)])
def test_default_weight_bounds(shape):
    w = init.default_weight_(np.empty(shape, dtype=np.float32), np.random.default_rng(0))
    fan_in = int(np.prod(shape[1:]))
    bound = 1 / math.sqrt(fan_in)
    assert w.dtype == np.float32
    assert np.abs(w).max() <= bound * (1 + 1e-6)
    assert np.abs(w).max() > 0.99 * bound  # the whole range is used (15,000 draws)
    assert abs(w.std() - bound / math.sqrt(3)) < 0.02 * bound  # uniform on [-b, b]: std b/sqrt(3)
    b = init.default_bias_(np.empty(shape[0], dtype=np.float32), fan_in, np.random.default_rng(1))
    assert np.abs(b).max() <= bound * (1 + 1e-6)


def test_linear_default_init_is_reproducible_and_bounded():
    a = Linear(20, 30, rng=np.random.default_rng(5))
    b = Linear(20, 30, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    np.testing.assert_array_equal(a.bias.data, b.bias.data)
    assert np.abs(a.weight.data).max() <= 1 / math.sqrt(20) and np.abs(a.bias.data).max() <= 1 / math.sqrt(20)
    assert a.weight.dtype == np.float32 and Linear(2, 2, dtype=np.float64).weight.dtype == np.float64


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
@pytest.mark.parametrize("nonlinearity, a, gain", [("relu", 0.0, 2**0.5), ("leaky_relu", 0.2, (2 / 1.04) ** 0.5), ("linear", 0.0, 1.0)])
def test_kaiming(mode, nonlinearity, a, gain):
    shape = (200, 40, 2, 2)
    fan = 160 if mode == "fan_in" else 800
    u = init.kaiming_uniform_(np.empty(shape), np.random.default_rng(0), a=a, mode=mode, nonlinearity=nonlinearity)
    bound = gain * math.sqrt(3 / fan)
    assert np.abs(u).max() <= bound and np.abs(u).max() > 0.999 * bound
    assert abs(u.std() / (bound / math.sqrt(3)) - 1) < 0.02  # 32,000 draws: sampling error ~0.4%
    n = init.kaiming_normal_(np.empty(shape), np.random.default_rng(1), a=a, mode=mode, nonlinearity=nonlinearity)
    assert abs(n.std() / (gain / math.sqrt(fan)) - 1) < 0.02
    assert abs(n.mean()) < 0.02 * gain / math.sqrt(fan)


def test_kaiming_rejects_a_bad_mode():
    with pytest.raises(ValueError, match="mode must be 'fan_in' or 'fan_out'"):
        init.kaiming_uniform_(np.empty((3, 3)), np.random.default_rng(0), mode="fan_avg")


@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_xavier(gain):
    shape = (150, 30, 3)  # fan_in 90, fan_out 450
    u = init.xavier_uniform_(np.empty(shape), np.random.default_rng(0), gain=gain)
    bound = gain * math.sqrt(6 / 540)
    assert np.abs(u).max() <= bound and np.abs(u).max() > 0.999 * bound
    assert abs(u.std() / (bound / math.sqrt(3)) - 1) < 0.02
    n = init.xavier_normal_(np.empty(shape), np.random.default_rng(1), gain=gain)
    assert abs(n.std() / (gain * math.sqrt(2 / 540)) - 1) < 0.02


def test_init_fills_in_place_and_keeps_dtype():
    w = np.empty((4, 3), dtype=np.float32)
    for fill in (lambda a: init.xavier_uniform_(a, np.random.default_rng(0)), init.zeros_, init.ones_,
                 lambda a: init.normal_(a, 1.0, 0.1, np.random.default_rng(0)),
                 lambda a: init.uniform_(a, -1, 1, np.random.default_rng(0))):
        assert fill(w) is w and w.dtype == np.float32
    np.testing.assert_array_equal(init.zeros_(w), 0)
    np.testing.assert_array_equal(init.ones_(w), 1)
