"""Losses against hand-computed values, SmoothL1's limits, hygiene, and the errors for bad input.

(Finite-difference checks of every loss are in test_gradients.py, parity with torch in
test_torch_parity_layers.py.)
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinynet._checks import ShapeError
from tinynet.functional import loss as L
from tinynet.nn.loss import L1Loss, MSELoss, SmoothL1Loss

PRED = np.array([[1.0, 2.0], [3.0, 4.0]])
TARGET = np.array([[0.0, 2.0], [5.0, 1.0]])
# d = pred - target = [[1, 0], [-2, 3]], n = 4

# (loss, reduction) -> (value, elementwise, dpred for dloss = 1), all by hand
EXPECTED = {
    # squares [1, 0, 4, 9]; d/dpred = 2 d
    "mse": ([[1.0, 0.0], [4.0, 9.0]], [[2.0, 0.0], [-4.0, 6.0]]),
    # |d| = [1, 0, 2, 3]; d/dpred = sign(d), 0 where pred == target
    "l1": ([[1.0, 0.0], [2.0, 3.0]], [[1.0, 0.0], [-1.0, 1.0]]),
    # beta 1: 0.5 d^2 where |d| < 1 else |d| - 0.5 -> [0.5, 0, 1.5, 2.5]; |1| < 1 is false: linear branch
    "smooth1": ([[0.5, 0.0], [1.5, 2.5]], [[1.0, 0.0], [-1.0, 1.0]]),
    # beta 2: 0.5 d^2 / 2 where |d| < 2 else |d| - 1 -> [0.25, 0, 1, 2]; slopes d/2 or sign(d)
    "smooth2": ([[0.25, 0.0], [1.0, 2.0]], [[0.5, 0.0], [-1.0, 1.0]]),
}


def make(kind: str, reduction: str = "mean"):
    return {
        "mse": lambda: MSELoss(reduction),
        "l1": lambda: L1Loss(reduction),
        "smooth1": lambda: SmoothL1Loss(reduction),
        "smooth2": lambda: SmoothL1Loss(reduction, beta=2.0),
    }[kind]()


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_values_and_gradients_by_hand(kind):
    elementwise, slope = (np.array(a) for a in EXPECTED[kind])
    mean, total = make(kind, "mean"), make(kind, "sum")
    assert mean(PRED, TARGET) == pytest.approx(elementwise.sum() / 4, rel=1e-15)
    np.testing.assert_allclose(mean.backward(), slope / 4, rtol=1e-15)
    assert total(PRED, TARGET) == pytest.approx(elementwise.sum(), rel=1e-15)
    np.testing.assert_allclose(total.backward(), slope, rtol=1e-15)
    none = make(kind, "none")
    np.testing.assert_allclose(none(PRED, TARGET), elementwise, rtol=1e-15)
    dloss = np.array([[1.0, 2.0], [3.0, -1.0]])
    np.testing.assert_allclose(none.backward(dloss), slope * dloss, rtol=1e-15)


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_dloss_scales_the_gradient(kind):
    criterion = make(kind, "mean")
    criterion(PRED, TARGET)
    np.testing.assert_allclose(criterion.backward(0.5), np.array(EXPECTED[kind][1]) / 8, rtol=1e-15)
    np.testing.assert_allclose(criterion.backward(np.array(-2.0)), np.array(EXPECTED[kind][1]) * -0.5, rtol=1e-15)


@pytest.mark.parametrize("kind", sorted(EXPECTED))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_is_a_0d_value_of_the_prediction_dtype(kind, dtype):
    criterion = make(kind)
    value = criterion(PRED.astype(dtype), TARGET.astype(dtype))
    assert np.ndim(value) == 0 and value.dtype == dtype
    assert criterion.backward().dtype == dtype
    assert make(kind, "none")(PRED.astype(dtype), TARGET.astype(dtype)).dtype == dtype


@pytest.mark.parametrize("kind", sorted(EXPECTED))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_hygiene(kind, reduction, rng):
    pred = rng.standard_normal((3, 4)).astype(np.float32)
    target = rng.standard_normal((3, 4)).astype(np.float32)
    pred_before, target_before = pred.copy(), target.copy()
    criterion = make(kind, reduction)
    out = criterion(pred, target)
    dloss = rng.standard_normal(out.shape).astype(np.float32) if reduction == "none" else 1.0
    dpred = criterion.backward(dloss)
    np.testing.assert_array_equal(pred, pred_before)
    np.testing.assert_array_equal(target, target_before)
    assert dpred.shape == pred.shape and dpred.dtype == np.float32
    for other in (pred, target, out):
        assert not np.shares_memory(dpred, other)
    np.testing.assert_array_equal(criterion.backward(dloss), dpred)  # backward may be called again


@given(
    reduction=st.sampled_from(["mean", "sum", "none"]),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_smooth_l1_with_beta_zero_is_l1(reduction, shape, seed):
    rng = np.random.default_rng(seed)
    pred, target = rng.standard_normal(shape), rng.standard_normal(shape)
    target.flat[0] = pred.flat[0]  # include d = 0, where both gradients are 0
    smooth, l1 = SmoothL1Loss(reduction, beta=0.0), L1Loss(reduction)
    np.testing.assert_array_equal(smooth(pred, target), l1(pred, target))
    dloss = rng.standard_normal(shape) if reduction == "none" else 1.3
    np.testing.assert_array_equal(smooth.backward(dloss), l1.backward(dloss))


def test_smooth_l1_is_quadratic_inside_and_linear_outside_beta():
    beta = 0.5
    d = np.array([-2.0, -0.25, 0.1, 0.5, 3.0])
    loss = SmoothL1Loss("none", beta=beta)
    np.testing.assert_allclose(loss(d, np.zeros(5)), [2.0 - 0.25, 0.0625, 0.01, 0.5 - 0.25, 3.0 - 0.25], rtol=1e-15)
    np.testing.assert_allclose(loss.backward(np.ones(5)), [-1.0, -0.5, 0.2, 1.0, 1.0], rtol=1e-15)
    # continuous at |d| = beta: both branches give beta / 2
    assert 0.5 * beta**2 / beta == beta - 0.5 * beta


def test_functional_losses_match_the_modules():
    for forward, backward, module in (
        (L.mse_loss_forward, L.mse_loss_backward, MSELoss("sum")),
        (L.l1_loss_forward, L.l1_loss_backward, L1Loss("sum")),
    ):
        value, cache = forward(PRED, TARGET, "sum")
        assert value == module(PRED, TARGET)
        np.testing.assert_array_equal(backward(2.0, cache), module.backward(2.0))
    value, cache = L.smooth_l1_loss_forward(PRED, TARGET, "mean", 2.0)
    assert value == pytest.approx(3.25 / 4, rel=1e-15)
    np.testing.assert_allclose(L.smooth_l1_loss_backward(1.0, cache), np.array(EXPECTED["smooth2"][1]) / 4, rtol=1e-15)


# =========================================================================== bad input


@pytest.mark.parametrize("kind", sorted(EXPECTED))
@pytest.mark.parametrize("where, bad", [("prediction", np.nan), ("target", np.inf), ("prediction", -np.inf)])
def test_nan_or_inf_raises(kind, where, bad):
    criterion = make(kind)
    pred, target = PRED.copy(), TARGET.copy()
    (pred if where == "prediction" else target)[1, 0] = bad
    with pytest.raises(ValueError, match=re.escape(criterion._describe()) + f": the {where} contains 1 NaN or infinite value"):
        criterion(pred, target)


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_shape_mismatch_raises(kind):
    criterion = make(kind)
    with pytest.raises(ShapeError, match=re.escape(criterion._describe()) + r": prediction and target must have the same shape, got \(2, 2\) and \(4,\)"):
        criterion(PRED, TARGET.ravel())
    with pytest.raises(ShapeError, match=r"got \(2, 2\) and \(1, 2\)"):  # no silent broadcasting
        criterion(PRED, TARGET[:1])


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_dtype_mismatch_raises(kind):
    criterion = make(kind)
    with pytest.raises(TypeError, match=re.escape(criterion._describe()) + r": prediction is float32 but target is float64"):
        criterion(PRED.astype(np.float32), TARGET)


@pytest.mark.parametrize("pred, target, match", [
    (PRED.astype(np.int64), TARGET, r"expected prediction of dtype float32 or float64, got int64"),
    (PRED, TARGET.astype(np.int32), r"expected target of dtype float32 or float64, got int32"),
    (PRED.tolist(), TARGET, r"expected prediction to be a numpy.ndarray, got list"),
    (PRED, 0.0, r"expected target to be a numpy.ndarray, got float"),
])
def test_non_float_arrays_raise(pred, target, match):
    with pytest.raises(TypeError, match=r"MSELoss\(reduction='mean'\): " + match):
        MSELoss()(pred, target)


@pytest.mark.parametrize("cls", [MSELoss, L1Loss, SmoothL1Loss])
@pytest.mark.parametrize("reduction", ["avg", "Mean", None])
def test_bad_reduction(cls, reduction):
    with pytest.raises(ValueError, match=cls.__name__ + r": reduction must be one of \('mean', 'sum', 'none'\), got"):
        cls(reduction)


def test_negative_beta():
    with pytest.raises(ValueError, match="SmoothL1Loss: beta must be non-negative, got -0.5"):
        SmoothL1Loss(beta=-0.5)


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match=r"SmoothL1Loss\(reduction='sum', beta=2.0\): backward\(\) called before forward"):
        SmoothL1Loss("sum", beta=2.0).backward()


def test_repr():
    assert repr(MSELoss()) == "MSELoss(reduction='mean')"
    assert repr(SmoothL1Loss("none", beta=0.5)) == "SmoothL1Loss(reduction='none', beta=0.5)"
