"""Finite-difference gradient checks (float64) of every layer and loss, and of ``tinynet.gradcheck`` itself.

``gradcheck`` draws a random, non-uniform upstream gradient: with ``dout = 1`` the batch-norm input
gradient is identically zero and a wrong backward that also returned zero would pass. Shapes are drawn
by hypothesis and kept small (the numerical gradient costs two forwards per element).
Inputs of the piecewise functions (ReLU, LeakyReLU, ELU, L1, SmoothL1) are kept away from their kinks,
where central differences straddle two branches and mean nothing.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tinynet.functional import activation as A
from tinynet.functional import loss as L
from tinynet.functional.batchnorm import batchnorm_backward, batchnorm_forward
from tinynet.functional.dropout import dropout_backward, dropout_forward
from tinynet.functional.linear import linear_backward, linear_forward
from tinynet.gradcheck import GradcheckError, GradcheckResult, gradcheck, numerical_gradient, relative_error
from tinynet.nn.activation import ELU, LeakyReLU, ReLU, Sigmoid, Tanh
from tinynet.nn.dropout import Dropout
from tinynet.nn.flatten import Flatten
from tinynet.nn.linear import Linear
from tinynet.nn.loss import L1Loss, MSELoss, SmoothL1Loss
from tinynet.nn import Module, Sequential
from tinynet.nn.normalization import BatchNorm1d, BatchNorm2d

seeds = st.integers(0, 2**32 - 1)
small = st.integers(1, 3)


def away_from_zero(rng: np.random.Generator, shape, margin: float = 1e-2, high: float = 3.0) -> np.ndarray:
    """float64 values with ``margin <= |x| <= high`` and random signs (no kink within reach of eps)."""
    magnitude = rng.uniform(margin, high, size=shape)
    return magnitude * rng.choice([-1.0, 1.0], size=shape)


def randomize_affine(bn, rng: np.random.Generator) -> None:
    """Non-trivial gamma/beta (the defaults 1/0 would hide a missing gamma factor)."""
    if bn.weight is not None:
        bn.weight.data[...] = rng.uniform(0.5, 2.0, bn.num_features) * rng.choice([-1.0, 1.0], bn.num_features)
        bn.bias.data[...] = rng.normal(size=bn.num_features)


def randomize_running_stats(bn, rng: np.random.Generator) -> None:
    bn.running_mean[...] = rng.normal(size=bn.num_features)
    bn.running_var[...] = rng.uniform(0.3, 3.0, bn.num_features)


def channel_var(x: np.ndarray) -> np.ndarray:
    """Biased variance of each channel (axis 1) over all other axes, computed independently of tinynet."""
    moved = np.moveaxis(x, 1, 0).reshape(x.shape[1], -1)
    return moved.var(axis=1)


# --------------------------------------------------------------------------- Linear


@given(n=st.integers(1, 4), fin=st.integers(1, 5), fout=st.integers(1, 4), bias=st.booleans(), seed=seeds)
def test_linear_gradcheck(n, fin, fout, bias, seed):
    rng = np.random.default_rng(seed)
    layer = Linear(fin, fout, bias=bias, rng=rng).double()
    x = rng.standard_normal((n, fin))
    result = gradcheck(layer, x, rng=rng)
    assert set(result.errors) == ({"input", "weight", "bias"} if bias else {"input", "weight"})
    assert result.passed


# --------------------------------------------------------------------------- BatchNorm, train mode


@given(
    n=st.integers(3, 5),
    fin=st.integers(1, 4),
    c=st.integers(1, 4),
    fout=st.integers(1, 3),
    affine=st.booleans(),
    momentum=st.sampled_from([0.1, None]),
    seed=seeds,
)
def test_batchnorm1d_train_gradcheck_between_linears(n, fin, c, fout, affine, momentum, seed):
    rng = np.random.default_rng(seed)
    model = Sequential(
        Linear(fin, c, rng=rng), BatchNorm1d(c, affine=affine, momentum=momentum), Linear(c, fout, rng=rng)
    ).double()
    randomize_affine(model[1], rng)
    x = rng.standard_normal((n, fin))
    hidden = x @ model[0].weight.data.T + model[0].bias.data  # what BatchNorm sees, computed here
    assume(np.all(channel_var(hidden) > 1e-2))  # a near-constant channel makes 1/sqrt(var) explode
    result = gradcheck(model, x, rng=rng)
    assert "1.weight" in result.errors if affine else "1.weight" not in result.errors
    assert {"input", "0.weight", "0.bias", "2.weight", "2.bias"} <= set(result.errors)


@given(
    shape=st.sampled_from(["NC", "NCL", "NCHW"]),
    n=st.integers(1, 3),
    c=st.integers(1, 3),
    length=st.integers(2, 3),
    fout=st.integers(1, 3),
    seed=seeds,
)
def test_batchnorm_train_gradcheck_with_spatial_axes(shape, n, c, length, fout, seed):
    """(N, C), (N, C, L) and (N, C, H, W): statistics over every axis but 1, a layer either side."""
    rng = np.random.default_rng(seed)
    dims = {"NC": (max(n, 3), c), "NCL": (n, c, length), "NCHW": (n, c, length, 2)}[shape]
    bn = BatchNorm2d(c) if shape == "NCHW" else BatchNorm1d(c)
    features = int(np.prod(dims[1:]))
    model = Sequential(Tanh(), bn, Flatten(), Linear(features, fout, rng=rng)).double()
    randomize_affine(bn, rng)
    x = rng.standard_normal(dims)
    assume(np.all(channel_var(np.tanh(x)) > 1e-2))
    result = gradcheck(model, x, rng=rng)
    assert {"input", "1.weight", "1.bias", "3.weight", "3.bias"} == set(result.errors)


@given(shape=st.sampled_from([(4, 3), (2, 3, 3), (2, 2, 2, 3)]), affine=st.booleans(), seed=seeds)
def test_batchnorm_train_gradcheck_alone(shape, affine, seed):
    """The layer on its own, the upstream gradient being gradcheck's random ``dout``."""
    rng = np.random.default_rng(seed)
    bn = (BatchNorm2d if len(shape) == 4 else BatchNorm1d)(shape[1], affine=affine).double()
    randomize_affine(bn, rng)
    x = rng.standard_normal(shape) * 2 + 1
    assume(np.all(channel_var(x) > 1e-2))
    gradcheck(bn, x, rng=rng)


# --------------------------------------------------------------------------- BatchNorm, eval mode


@given(shape=st.sampled_from([(1, 3), (4, 2), (2, 3, 3), (1, 2, 2, 3), (2, 2, 3, 2)]), affine=st.booleans(), seed=seeds)
def test_batchnorm_eval_gradcheck_with_running_stats(shape, affine, seed):
    """Eval mode normalises with the (constant) running statistics: a batch of 1 is fine."""
    rng = np.random.default_rng(seed)
    bn = (BatchNorm2d if len(shape) == 4 else BatchNorm1d)(shape[1], affine=affine).double()
    randomize_affine(bn, rng)
    randomize_running_stats(bn, rng)
    bn.eval()
    before = (bn.running_mean.copy(), bn.running_var.copy())
    gradcheck(bn, rng.standard_normal(shape), rng=rng)
    np.testing.assert_array_equal(bn.running_mean, before[0])
    np.testing.assert_array_equal(bn.running_var, before[1])


def test_batchnorm_eval_gradcheck_inside_model(rng):
    model = Sequential(Linear(3, 4, rng=rng), BatchNorm1d(4), Linear(4, 2, rng=rng)).double()
    randomize_affine(model[1], rng)
    randomize_running_stats(model[1], rng)
    model.eval()
    gradcheck(model, rng.standard_normal((2, 3)), rng=rng)


# --------------------------------------------------------------------------- activations and Flatten

ACTIVATIONS = {
    "ReLU": lambda draw: ReLU(),
    "LeakyReLU": lambda draw: LeakyReLU(draw(st.floats(0.0, 0.5))),
    "ELU": lambda draw: ELU(draw(st.floats(0.1, 2.0))),
    "Tanh": lambda draw: Tanh(),
    "Sigmoid": lambda draw: Sigmoid(),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@given(data=st.data(), shape=st.lists(small, min_size=1, max_size=4), seed=seeds)
def test_activation_gradcheck(name, data, shape, seed):
    rng = np.random.default_rng(seed)
    layer = ACTIVATIONS[name](data.draw).double()
    result = gradcheck(layer, away_from_zero(rng, tuple(shape)), rng=rng)
    assert set(result.errors) == {"input"}


@given(shape=st.lists(small, min_size=2, max_size=4), data=st.data(), seed=seeds)
def test_flatten_gradcheck(shape, data, seed):
    rng = np.random.default_rng(seed)
    ndim = len(shape)
    start = data.draw(st.integers(0, ndim - 1))
    end = data.draw(st.integers(start, ndim - 1))
    end = data.draw(st.sampled_from([end, end - ndim]))  # negative end_dim as well
    gradcheck(Flatten(start, end), rng.standard_normal(tuple(shape)), rng=rng)


# --------------------------------------------------------------------------- losses


def diff_away_from_kinks(rng: np.random.Generator, shape, beta: float) -> np.ndarray:
    """``pred - target`` with ``|d|`` away from 0 (L1's kink) and from ``beta`` (SmoothL1's seam)."""
    magnitude = rng.uniform(0.05, 3.0, size=shape)
    magnitude = np.where(np.abs(magnitude - beta) < 0.05, magnitude + 0.1, magnitude)
    return magnitude * rng.choice([-1.0, 1.0], size=shape)


LOSSES = {
    "MSELoss": lambda reduction, beta: MSELoss(reduction),
    "L1Loss": lambda reduction, beta: L1Loss(reduction),
    "SmoothL1Loss": lambda reduction, beta: SmoothL1Loss(reduction, beta=beta),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
@given(
    reduction=st.sampled_from(["mean", "sum", "none"]),
    beta=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    shape=st.lists(small, min_size=1, max_size=3),
    seed=seeds,
)
def test_loss_gradcheck(name, reduction, beta, shape, seed):
    rng = np.random.default_rng(seed)
    criterion = LOSSES[name](reduction, beta)
    pred = rng.standard_normal(tuple(shape))
    target = pred - diff_away_from_kinks(rng, pred.shape, beta)
    result = gradcheck(criterion, pred, target, rng=rng)
    assert set(result.errors) == {"input"}  # the loss's backward returns dpred only


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_backward_scales_with_dloss(name, rng):
    criterion = LOSSES[name]("mean", 1.0)
    pred = rng.standard_normal((3, 4))
    target = pred - diff_away_from_kinks(rng, pred.shape, 1.0)
    criterion(pred, target)
    np.testing.assert_allclose(criterion.backward(2.5), 2.5 * criterion.backward(), rtol=1e-15)


# --------------------------------------------------------------------------- Dropout


class ReseededDropout(Module):
    """A Dropout whose generator is re-seeded before every forward: the same mask each call,
    so finite differences see a deterministic function."""

    def __init__(self, p: float, seed: int):
        super().__init__()
        self.inner = Dropout(p)
        self.seed = seed

    def forward(self, x):
        self.inner.rng = np.random.default_rng(self.seed)
        return self.inner(x)

    def backward(self, dout):
        return self.inner.backward(dout)


@given(p=st.floats(0.05, 0.95), shape=st.lists(st.integers(1, 6), min_size=1, max_size=3), seed=seeds)
def test_dropout_backward_is_dout_times_mask(p, shape, seed):
    rng = np.random.default_rng(seed)
    x = away_from_zero(rng, tuple(shape))  # no zeros, so out == 0 exactly where a unit was dropped
    out, cache = dropout_forward(x, p, True, np.random.default_rng(seed + 1))
    kept = out != 0
    np.testing.assert_allclose(out[kept], x[kept] / (1 - p), rtol=1e-14)
    dout = rng.standard_normal(x.shape)
    dx = dropout_backward(dout, cache)
    np.testing.assert_allclose(dx, np.where(kept, dout / (1 - p), 0.0), rtol=1e-14, atol=0)


@given(p=st.sampled_from([0.0, 0.3, 0.5, 0.8]), n=st.integers(1, 4), seed=seeds)
def test_dropout_gradcheck_with_fixed_mask(p, n, seed):
    rng = np.random.default_rng(seed)
    model = Sequential(Linear(3, 6, rng=rng), ReseededDropout(p, seed), Linear(6, 2, rng=rng)).double()
    result = gradcheck(model, rng.standard_normal((n, 3)), rng=rng)
    assert set(result.errors) == {"input", "0.weight", "0.bias", "2.weight", "2.bias"}


def test_dropout_gradcheck_in_eval_mode(rng):
    layer = Dropout(0.5, rng=rng).eval()
    gradcheck(layer, rng.standard_normal((3, 4)), rng=rng)


# --------------------------------------------------------------------------- a small model


def test_model_gradcheck(rng):
    model = Sequential(
        Linear(4, 6, rng=rng), BatchNorm1d(6), ReLU(), Linear(6, 5, rng=rng), ELU(0.7),
        Linear(5, 3, rng=rng), Sigmoid(),
    ).double()
    randomize_affine(model[1], rng)
    result = gradcheck(model, rng.standard_normal((5, 4)), rng=rng)
    assert len(result.errors) == 1 + 6 + 2  # input, three Linear x2, BatchNorm x2


# --------------------------------------------------------------------------- functional pairs


def test_functional_linear_gradients(rng):
    x, w, b = rng.standard_normal((4, 3)), rng.standard_normal((2, 3)), rng.standard_normal(2)
    dout = rng.standard_normal((4, 2))
    _, cache = linear_forward(x, w, b)
    dx, dw, db = linear_backward(dout, cache)
    f = lambda: linear_forward(x, w, b)[0]  # noqa: E731
    for analytic, wrt in ((dx, x), (dw, w), (db, b)):
        assert relative_error(analytic, numerical_gradient(f, wrt, dout)) < 1e-8


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4), (2, 3, 2, 2)])
def test_functional_batchnorm_gradients(training, shape, rng):
    x = rng.standard_normal(shape)
    gamma, beta = rng.uniform(0.5, 2.0, shape[1]), rng.standard_normal(shape[1])
    running_mean, running_var = rng.standard_normal(shape[1]), rng.uniform(0.5, 2.0, shape[1])
    dout = rng.standard_normal(shape)

    def f():  # fresh copies of the running stats: train mode updates them in place
        return batchnorm_forward(x, gamma, beta, running_mean.copy(), running_var.copy(), training)[0]

    _, cache = batchnorm_forward(x, gamma, beta, running_mean.copy(), running_var.copy(), training)
    dx, dgamma, dbeta = batchnorm_backward(dout, cache)
    for analytic, wrt in ((dx, x), (dgamma, gamma), (dbeta, beta)):
        assert relative_error(analytic, numerical_gradient(f, wrt, dout)) < 1e-7


@pytest.mark.parametrize(
    "forward, backward, kwargs",
    [
        (A.relu_forward, A.relu_backward, {}),
        (A.leaky_relu_forward, A.leaky_relu_backward, {"negative_slope": 0.2}),
        (A.elu_forward, A.elu_backward, {"alpha": 1.3}),
        (A.tanh_forward, A.tanh_backward, {}),
        (A.sigmoid_forward, A.sigmoid_backward, {}),
    ],
)
def test_functional_activation_gradients(forward, backward, kwargs, rng):
    x = away_from_zero(rng, (3, 5))
    dout = rng.standard_normal(x.shape)
    _, cache = forward(x, *kwargs.values())
    dx = backward(dout, cache, *kwargs.values())
    assert relative_error(dx, numerical_gradient(lambda: forward(x, *kwargs.values())[0], x, dout)) < 1e-8


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    "forward, backward, beta",
    [
        (L.mse_loss_forward, L.mse_loss_backward, None),
        (L.l1_loss_forward, L.l1_loss_backward, None),
        (L.smooth_l1_loss_forward, L.smooth_l1_loss_backward, 0.7),
    ],
)
def test_functional_loss_gradients(forward, backward, beta, reduction, rng):
    pred = rng.standard_normal((3, 4))
    target = pred - diff_away_from_kinks(rng, pred.shape, 0.7)
    extra = () if beta is None else (beta,)
    out, cache = forward(pred, target, reduction, *extra)
    dloss = rng.standard_normal(np.shape(out)) if reduction == "none" else 1.7
    dpred = backward(dloss, cache)
    numeric = numerical_gradient(lambda: forward(pred, target, reduction, *extra)[0], pred, dloss)
    assert relative_error(dpred, numeric) < 1e-8


# --------------------------------------------------------------------------- gradcheck catches bugs


class LinearBiasMeanBug(Linear):
    """Bug: the bias gradient averages over the batch instead of summing."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.bias.grad = dout.mean(axis=0)
        return dx


class LinearForgetsWeightGrad(Linear):
    """Bug: the weight gradient is never accumulated."""

    def backward(self, dout):
        cache = self._saved_cache()
        dx, _, dbias = linear_backward(dout, cache)
        self.bias.accumulate_grad(dbias)
        return dx


class BatchNormEvalFormulaBug(BatchNorm1d):
    """The classic bug: in training, backward ignores that the batch mean and variance depend on x."""

    def backward(self, dout):
        cache = self._saved_cache()
        dx, dweight, dbias = batchnorm_backward(dout, cache._replace(training=False))
        self.weight.accumulate_grad(dweight)
        self.bias.accumulate_grad(dbias)
        return dx


class SigmoidBug(Sigmoid):
    """Bug: ``dout * out`` without the ``(1 - out)`` factor."""

    def backward(self, dout):
        return dout * self._saved_cache().out


def test_gradcheck_fails_on_wrong_bias_gradient_and_names_it(rng):
    layer = LinearBiasMeanBug(3, 2, rng=rng).double()
    x = rng.standard_normal((4, 3))
    with pytest.raises(GradcheckError, match=r"(?s)LinearBiasMeanBug\(in_features=3.*\n  bias .*too large"):
        gradcheck(layer, x, rng=rng)
    result = gradcheck(layer, x, rng=rng, raise_on_failure=False)
    assert not result.passed
    assert result.errors["bias"] > 0.1
    assert result.errors["input"] < 1e-8 and result.errors["weight"] < 1e-8  # the right parts pass


def test_gradcheck_fails_when_a_parameter_gradient_is_missing(rng):
    result = gradcheck(LinearForgetsWeightGrad(3, 2, rng=rng).double(), rng.standard_normal((4, 3)), raise_on_failure=False)
    assert result.errors["weight"] == pytest.approx(1.0)  # compared with zeros: as unrelated as can be
    assert result.errors["bias"] < 1e-8


@pytest.mark.parametrize("dout_kind", ["random", "ones"])
def test_gradcheck_fails_on_batchnorm_backward_with_eval_formula(dout_kind, rng):
    bn = BatchNormEvalFormulaBug(3).double()
    randomize_affine(bn, rng)
    x = rng.standard_normal((6, 3))
    dout = None if dout_kind == "random" else np.ones((6, 3))
    result = gradcheck(bn, x, dout=dout, rng=rng, raise_on_failure=False)
    assert result.errors["input"] > 0.1 and not result.ok("input")
    assert result.ok("weight") and result.ok("bias")  # with dout = 1, dgamma = sum(x_hat) = 0: only noise


def test_gradcheck_fails_on_wrong_activation_backward(rng):
    with pytest.raises(GradcheckError, match="SigmoidBug"):
        gradcheck(SigmoidBug(), rng.standard_normal((3, 3)), rng=rng)


def test_gradcheck_result_report():
    result = GradcheckResult({"input": 1e-10, "weight": 0.5}, tol=1e-7)
    text = str(result)
    assert not result.passed and "FAILED" in text
    assert "weight" in text and "too large" in text.splitlines()[-1]
    assert "too large" not in text.splitlines()[1]
    assert GradcheckResult({"input": 1e-9}).passed
    # a large relative error passes only if the absolute error is within atol
    assert GradcheckResult({"bias": 1.0}, tol=1e-7, abs_errors={"bias": 1e-10}, atol=1e-8).passed
    assert not GradcheckResult({"bias": 1.0}, tol=1e-7, abs_errors={"bias": 1e-6}, atol=1e-8).passed


def test_gradcheck_accepts_a_gradient_that_is_zero_in_exact_arithmetic(rng):
    """The bias of a Linear followed by BatchNorm has zero gradient (BN removes any shift): both the
    analytic and the numerical gradient are rounding noise, relative error ~1, absolute error ~1e-10."""
    model = Sequential(Linear(3, 4, rng=rng), BatchNorm1d(4), Linear(4, 2, rng=rng)).double()
    x = rng.standard_normal((5, 3))
    strict = gradcheck(model, x, rng=np.random.default_rng(1), atol=0.0, raise_on_failure=False)
    assert strict.errors["0.bias"] > 1e-3 and strict.abs_errors["0.bias"] < 1e-8  # noise, not a bug
    result = gradcheck(model, x, rng=np.random.default_rng(1))
    assert result.passed
    np.testing.assert_allclose(model[0].bias.grad, 0.0, atol=1e-12)


def test_gradcheck_rejects_bad_arguments(rng):
    with pytest.raises(TypeError, match="float64"):
        gradcheck(Linear(2, 2, rng=rng).double(), rng.standard_normal((2, 2)).astype(np.float32))
    with pytest.raises(TypeError, match=r"parameter 'weight' is float32; call module.double\(\)"):
        gradcheck(Linear(2, 2, rng=rng), rng.standard_normal((2, 2)))
    with pytest.raises(TypeError, match="expected a tinynet Module"):
        gradcheck(lambda x: x, rng.standard_normal(2))


def test_gradcheck_leaves_parameters_unchanged(rng):
    layer = Linear(3, 2, rng=rng).double()
    before = {k: v.copy() for k, v in layer.state_dict().items()}
    gradcheck(layer, rng.standard_normal((2, 3)), rng=rng)
    for key, value in layer.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


# --------------------------------------------------------------------------- numerical_gradient


def test_numerical_gradient_restores_x_exactly(rng):
    # values for which (v + eps) - eps != v: restoring by subtraction would leave x changed
    x = np.array([[0.1, 1e-20, 3.3], [-7.7e5, 1 / 3, 2.0**-30]])
    eps = 1e-6
    assert np.any((x + eps) - eps != x)  # the test is meaningful
    x_bits = x.copy().view(np.uint64)
    grad = numerical_gradient(lambda: np.sin(x), x, rng.standard_normal(x.shape), eps=eps)
    np.testing.assert_array_equal(x.view(np.uint64), x_bits)
    assert grad.shape == x.shape and grad.dtype == np.float64


def test_numerical_gradient_restores_x_when_f_raises():
    x = np.array([0.1, 0.2, 0.3])
    calls = []

    def f():
        calls.append(1)
        if len(calls) == 3:
            raise FloatingPointError("boom")
        return x

    with pytest.raises(FloatingPointError):
        numerical_gradient(f, x, 1.0)
    np.testing.assert_array_equal(x, [0.1, 0.2, 0.3])


def test_numerical_gradient_matches_an_analytic_derivative(rng):
    x = rng.standard_normal((4, 3))
    dout = rng.standard_normal(x.shape)
    grad = numerical_gradient(lambda: x**3, x, dout)
    np.testing.assert_allclose(grad, 3 * x**2 * dout, rtol=1e-7, atol=1e-9)


def test_numerical_gradient_rejects_non_contiguous_x(rng):
    x = rng.standard_normal((4, 3)).T  # reshape(-1) of a transpose is a copy, not a view
    with pytest.raises(ValueError, match="contiguous"):
        numerical_gradient(lambda: x, x, 1.0)


def test_relative_error():
    assert relative_error(np.ones(3), np.ones(3)) == 0.0
    assert relative_error(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(np.sqrt(2) / 2)
    assert relative_error(np.zeros(2), np.zeros(2)) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        relative_error(np.ones(2), np.ones(3))
