"""WingLoss in the three tiers of every loss: a plain per-element reference and values by hand, finite
differences in float64, and parity with the same formula written in PyTorch (which has no Wing loss)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinynet import gradcheck
from tinynet.functional import loss as L
from tinynet.nn import WingLoss


def wing_reference(pred: np.ndarray, target: np.ndarray, width: float, curvature: float):
    """The paper's definition, one element at a time: ``(elementwise loss, d loss / d pred)``."""
    joint = width - width * math.log(1.0 + width / curvature)
    values, slopes = np.empty(pred.shape), np.empty(pred.shape)
    for index in np.ndindex(pred.shape):
        d = float(pred[index] - target[index])
        sign = (d > 0) - (d < 0)
        if abs(d) < width:
            values[index] = width * math.log(1.0 + abs(d) / curvature)
            slopes[index] = sign * width / (curvature + abs(d))
        else:
            values[index] = abs(d) - joint
            slopes[index] = sign
    return values, slopes


def away_from_kinks(rng: np.random.Generator, shape, width: float) -> np.ndarray:
    """``pred - target`` with ``|d|`` away from 0 (the kink) and from ``width`` (the seam)."""
    magnitude = rng.uniform(0.05, 3.0 * width, size=shape)
    magnitude = np.where(np.abs(magnitude - width) < 0.05 * width, magnitude + 0.1 * width, magnitude)
    return magnitude * rng.choice([-1.0, 1.0], size=shape)


def test_values_by_hand():
    criterion = WingLoss(width=10.0, curvature=2.0, reduction="none")
    pred = np.array([0.0, 2.0, -2.0, 10.0, 15.0])
    out = criterion(pred, np.zeros(5))
    joint = 10.0 - 10.0 * math.log(6.0)  # C = w - w ln(1 + w / eps) = 10 - 10 ln 6
    expected = [0.0, 10.0 * math.log(2.0), 10.0 * math.log(2.0), 10.0 - joint, 15.0 - joint]
    np.testing.assert_allclose(out, expected, rtol=1e-15)
    # continuous at the seam: w ln(1 + w / eps) from inside equals w - C from outside
    assert 10.0 * math.log(6.0) == pytest.approx(10.0 - joint, rel=1e-15)
    # slopes: 0 at d = 0 (sign 0, as L1), w / (eps + |d|) inside, 1 outside
    np.testing.assert_allclose(criterion.backward(np.ones(5)), [0.0, 10.0 / 4.0, -10.0 / 4.0, 1.0, 1.0], rtol=1e-15)


@given(
    reduction=st.sampled_from(["mean", "sum", "none"]),
    width=st.sampled_from([0.1, 1.0, 10.0]),
    curvature=st.sampled_from([0.02, 0.5, 2.0]),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_matches_the_reference(reduction, width, curvature, shape, seed):
    rng = np.random.default_rng(seed)
    pred = rng.standard_normal(tuple(shape)) * width
    target = pred - away_from_kinks(rng, pred.shape, width)
    values, slopes = wing_reference(pred, target, width, curvature)
    criterion = WingLoss(width, curvature, reduction)
    out = criterion(pred, target)
    n = pred.size
    expected = {"mean": values.mean(), "sum": values.sum(), "none": values}[reduction]
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    dloss = rng.standard_normal(pred.shape) if reduction == "none" else 1.3
    scale = dloss / n if reduction == "mean" else dloss
    np.testing.assert_allclose(criterion.backward(dloss), slopes * scale, rtol=1e-12, atol=1e-15)


@given(
    reduction=st.sampled_from(["mean", "sum", "none"]),
    width=st.sampled_from([0.5, 1.0, 2.0]),
    curvature=st.sampled_from([0.1, 0.5]),
    shape=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_gradcheck(reduction, width, curvature, shape, seed):
    rng = np.random.default_rng(seed)
    pred = rng.standard_normal(tuple(shape))
    target = pred - away_from_kinks(rng, pred.shape, width)
    result = gradcheck(WingLoss(width, curvature, reduction), pred, target, rng=rng)
    assert set(result.errors) == {"input"}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_torch_parity(reduction, rng):
    torch = pytest.importorskip("torch")
    width, curvature = 0.8, 0.15
    pred = rng.standard_normal((6, 5))
    target = pred + rng.standard_normal((6, 5))
    target[0, 0] = pred[0, 0]  # d = 0: both give slope 0
    ours = WingLoss(width, curvature, reduction)
    value = ours(pred, target)
    p = torch.tensor(pred, dtype=torch.float64, requires_grad=True)
    d = (p - torch.tensor(target, dtype=torch.float64)).abs()
    joint = width - width * math.log1p(width / curvature)
    elementwise = torch.where(d < width, width * torch.log1p(d / curvature), d - joint)
    theirs = {"mean": elementwise.mean(), "sum": elementwise.sum(), "none": elementwise}[reduction]
    np.testing.assert_allclose(value, theirs.detach().numpy(), rtol=1e-12)
    dloss = rng.standard_normal(pred.shape) if reduction == "none" else 1.7
    theirs.backward(torch.tensor(dloss, dtype=torch.float64))
    np.testing.assert_allclose(ours.backward(dloss), p.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_functional_matches_module_and_keeps_dtype():
    pred = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    target = np.zeros_like(pred)
    loss, cache = L.wing_loss_forward(pred, target, "mean", 0.5, 0.1)
    module = WingLoss(0.5, 0.1)
    assert loss.dtype == np.float32 and module(pred, target) == loss
    grad = L.wing_loss_backward(1.0, cache)
    assert grad.dtype == np.float32
    np.testing.assert_array_equal(grad, module.backward())


@pytest.mark.parametrize("width, curvature", [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.0), (float("nan"), 1.0), (1.0, float("inf"))])
def test_bad_parameters(width, curvature):
    with pytest.raises(ValueError, match="WingLoss"):
        WingLoss(width, curvature)


def test_nan_input_raises_and_repr():
    with pytest.raises(ValueError, match="NaN"):
        WingLoss()(np.array([np.nan]), np.array([0.0]))
    assert repr(WingLoss(0.25, 0.05)) == "WingLoss(width=0.25, curvature=0.05, reduction='mean')"
