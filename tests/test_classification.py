"""Softmax, LogSoftmax and CrossEntropyLoss: plain-loop references, finite-difference gradients, stability
at extreme logits, PyTorch's edge cases (empty batches, every target ignored), hygiene and bad input.

(Parity with torch over drawn shapes and options is in test_torch_parity_classification.py.)
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinynet._checks import ShapeError
from tinynet.functional import activation as A
from tinynet.functional import loss as L
from tinynet.gradcheck import gradcheck
from tinynet.nn import CrossEntropyLoss, LogSoftmax, Softmax

seeds = st.integers(0, 2**32 - 1)


# =========================================================================== plain references (loops)


def positions(shape: tuple[int, ...], class_dim: int):
    """Every index of ``shape`` with the class axis left out: one tuple per sample (or pixel)."""
    rest = shape[:class_dim] + shape[class_dim + 1 :]
    return list(np.ndindex(*rest)) if rest else [()]


def at(index: tuple[int, ...], class_dim: int, c: int) -> tuple[int, ...]:
    """The full index of class ``c`` at position ``index``."""
    return index[:class_dim] + (c,) + index[class_dim:]


def log_softmax_reference(x: np.ndarray, dim: int) -> np.ndarray:
    """``x_i - log sum_j exp(x_j)`` slice by slice, with Python's math (log-sum-exp around the max)."""
    dim = dim % x.ndim
    out = np.empty_like(x)
    for index in positions(x.shape, dim):
        row = [float(x[at(index, dim, c)]) for c in range(x.shape[dim])]
        top = max(row)
        lse = top + math.log(sum(math.exp(v - top) for v in row))
        for c, v in enumerate(row):
            out[at(index, dim, c)] = v - lse
    return out


def softmax_backward_reference(dout: np.ndarray, out: np.ndarray, dim: int) -> np.ndarray:
    """``dx_i = sum_j dout_j d out_j / d x_i`` with the Jacobian ``out_j ([i = j] - out_i)`` written out."""
    dim = dim % out.ndim
    dx = np.zeros_like(out)
    for index in positions(out.shape, dim):
        for i in range(out.shape[dim]):
            for j in range(out.shape[dim]):
                jacobian = out[at(index, dim, j)] * ((i == j) - out[at(index, dim, i)])
                dx[at(index, dim, i)] += dout[at(index, dim, j)] * jacobian
    return dx


def cross_entropy_reference(logits, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """PyTorch's definition term by term, as its C++ writes it: the NLL of the target, plus the
    smoothing term ``-sum_c w_c log p_c`` scaled by ``eps / C``, each divided by the same divisor."""
    class_dim = 0 if logits.ndim == 1 else 1
    num_classes = logits.shape[class_dim]
    w = np.ones(num_classes) if weight is None else weight
    log_p = log_softmax_reference(logits.astype(np.float64), class_dim)
    eps = label_smoothing
    losses, divisor = {}, 0.0
    for index in positions(logits.shape, class_dim):
        if np.issubdtype(target.dtype, np.integer):
            y = int(target[index])
            if y == ignore_index:
                losses[index] = 0.0
                continue
            nll = -w[y] * log_p[at(index, class_dim, y)]
            smooth = -sum(w[c] * log_p[at(index, class_dim, c)] for c in range(num_classes))
            losses[index] = (1 - eps) * nll + eps / num_classes * smooth
            divisor += w[y]
        else:
            soft = [(1 - eps) * target[at(index, class_dim, c)] + eps / num_classes for c in range(num_classes)]
            losses[index] = -sum(w[c] * soft[c] * log_p[at(index, class_dim, c)] for c in range(num_classes))
            divisor += 1
    rest = logits.shape[:class_dim] + logits.shape[class_dim + 1 :]
    elementwise = np.zeros(rest)
    for index, value in losses.items():
        elementwise[index] = value
    if reduction == "none":
        return elementwise
    total = sum(losses.values())
    return total if reduction == "sum" else (total / divisor if divisor else math.nan)


def draw_case(rng: np.random.Generator, n: int, c: int, spatial: tuple[int, ...], kind: str, with_weight: bool, ignore: bool):
    """Logits (N, C, *spatial) in float64, a target of the given kind, a weight and an ignore_index
    (a real class, 1, when ``ignore`` and the targets are indices: PyTorch refuses it with probabilities)."""
    logits = rng.standard_normal((n, c) + spatial) * 3
    if kind == "indices":
        target = rng.integers(0, c, size=(n,) + spatial)
        if ignore and target.size:
            target.flat[rng.integers(0, target.size)] = 1 if c > 1 else 0  # ignore_index = 1 (a real class)
    else:
        target = rng.dirichlet(np.ones(c), size=(n,) + spatial)  # (N, *spatial, C): move C to axis 1
        target = np.moveaxis(target, -1, 1).copy()
    weight = rng.uniform(0.2, 3.0, c) if with_weight else None
    return logits, target, weight, (1 if ignore and kind == "indices" else -100)


case_options = dict(
    n=st.integers(0, 4),
    c=st.integers(1, 5),
    spatial=st.lists(st.integers(1, 3), max_size=2).map(tuple),
    kind=st.sampled_from(["indices", "probabilities"]),
    with_weight=st.booleans(),
    ignore=st.booleans(),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    label_smoothing=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    seed=seeds,
)


@given(**case_options)
def test_cross_entropy_matches_the_loop_reference(n, c, spatial, kind, with_weight, ignore, reduction, label_smoothing, seed):
    rng = np.random.default_rng(seed)
    logits, target, weight, ignore_index = draw_case(rng, n, c, spatial, kind, with_weight, ignore)
    criterion = CrossEntropyLoss(weight, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)
    expected = cross_entropy_reference(logits, target, weight, ignore_index, reduction, label_smoothing)
    np.testing.assert_allclose(criterion(logits, target), expected, rtol=1e-12, atol=1e-12)


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), data=st.data(), seed=seeds)
def test_softmax_and_log_softmax_match_the_loop_reference(shape, data, seed):
    rng = np.random.default_rng(seed)
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = rng.standard_normal(shape) * 5
    expected = log_softmax_reference(x, dim)
    np.testing.assert_allclose(LogSoftmax(dim)(x), expected, rtol=1e-13, atol=1e-13)
    softmax = Softmax(dim)
    out = softmax(x)
    np.testing.assert_allclose(out, np.exp(expected), rtol=1e-13, atol=1e-15)
    dout = rng.standard_normal(shape)
    np.testing.assert_allclose(softmax.backward(dout), softmax_backward_reference(dout, out, dim), rtol=1e-12, atol=1e-14)


def test_by_hand():
    # two equal logits: p = (1/2, 1/2), loss ln 2, gradient p - one_hot = (-1/2, 1/2)
    criterion = CrossEntropyLoss()
    assert criterion(np.zeros((1, 2)), np.array([0])) == pytest.approx(math.log(2), rel=1e-15)
    np.testing.assert_allclose(criterion.backward(), [[-0.5, 0.5]], rtol=1e-15)
    # logits (0, ln 3): p = (1/4, 3/4); two samples with targets 1 and 0, weights (2, 1):
    # weighted mean = (1 * -ln 3/4 + 2 * -ln 1/4) / (1 + 2)
    logits = np.array([[0.0, math.log(3)], [0.0, math.log(3)]])
    weighted = CrossEntropyLoss(np.array([2.0, 1.0]))
    assert weighted(logits, np.array([1, 0])) == pytest.approx((-math.log(0.75) - 2 * math.log(0.25)) / 3, rel=1e-14)
    # d/dlogits = w_y (p - one_hot) / 3
    np.testing.assert_allclose(weighted.backward(), [[0.25 / 3, -0.25 / 3], [-1.5 / 3, 1.5 / 3]], rtol=1e-14)
    # label smoothing 0.5 over 2 classes turns target 0 into (3/4, 1/4): the loss is the probability-target loss
    smoothed = CrossEntropyLoss(label_smoothing=0.5)(logits[:1], np.array([0]))
    assert smoothed == pytest.approx(-(0.75 * math.log(0.25) + 0.25 * math.log(0.75)), rel=1e-14)
    assert smoothed == pytest.approx(CrossEntropyLoss()(logits[:1], np.array([[0.75, 0.25]])), rel=1e-15)


# =========================================================================== finite differences


@given(**case_options)
def test_cross_entropy_gradcheck(n, c, spatial, kind, with_weight, ignore, reduction, label_smoothing, seed):
    rng = np.random.default_rng(seed)
    logits, target, weight, ignore_index = draw_case(rng, max(n, 1), c, spatial, kind, with_weight, ignore)
    criterion = CrossEntropyLoss(weight, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)
    counted = kind == "probabilities" or (target != ignore_index).any()
    if reduction == "mean" and not counted:
        return  # NaN loss (0 / 0): nothing to differentiate; see test_every_target_ignored
    # dout: a random non-uniform upstream gradient for "none", a random scalar otherwise
    result = gradcheck(criterion, logits, target, rng=rng, tol=1e-6)
    assert set(result.errors) == {"input"}


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), log=st.booleans(), data=st.data(), seed=seeds)
def test_softmax_gradcheck(shape, log, data, seed):
    rng = np.random.default_rng(seed)
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    layer = LogSoftmax(dim) if log else Softmax(dim)
    gradcheck(layer, rng.standard_normal(shape) * 3, rng=rng, tol=1e-6)


def test_functional_pairs_match_the_modules(rng):
    x = rng.standard_normal((3, 4))
    dout = rng.standard_normal((3, 4))
    for forward, backward, module in (
        (A.softmax_forward, A.softmax_backward, Softmax(1)),
        (A.log_softmax_forward, A.log_softmax_backward, LogSoftmax(1)),
    ):
        out, cache = forward(x, 1)
        np.testing.assert_array_equal(out, module(x))
        np.testing.assert_array_equal(backward(dout, cache), module.backward(dout))
    y = np.array([0, 3, 2])
    value, cache = L.cross_entropy_forward(x, y, None, -100, "sum", 0.2)
    criterion = CrossEntropyLoss(reduction="sum", label_smoothing=0.2)
    assert value == criterion(x, y)
    np.testing.assert_array_equal(L.cross_entropy_backward(1.5, cache), criterion.backward(1.5))


# =========================================================================== numerical stability


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_neither_overflow_nor_give_nan(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], dtype=dtype)
    target = np.array([1, 0, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow or invalid-value warning fails the test
        log_p = LogSoftmax(1)(logits)
        p = Softmax(1)(logits)
        criterion = CrossEntropyLoss(reduction="none")
        losses = criterion(logits, target)
        dlogits = criterion.backward(np.ones(3, dtype))
    assert log_p.dtype == p.dtype == losses.dtype == dlogits.dtype == dtype
    np.testing.assert_allclose(log_p[0], [0.0, -2e4, -1e4])
    np.testing.assert_allclose(log_p[1], [-math.log(3)] * 3, rtol=1e-6)
    np.testing.assert_allclose(p[2], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(losses, [2e4, math.log(3), 2e4 + math.log(2)], rtol=1e-6)
    np.testing.assert_allclose(dlogits, p - np.eye(3, dtype=dtype)[target], atol=1e-7)


# =========================================================================== PyTorch's edge cases


@pytest.mark.parametrize("kind", ["indices", "probabilities"])
def test_empty_batch(kind):
    logits = np.zeros((0, 4))
    target = np.zeros(0, np.int64) if kind == "indices" else np.zeros((0, 4))
    for reduction, expected in (("mean", math.nan), ("sum", 0.0)):
        criterion = CrossEntropyLoss(reduction=reduction, label_smoothing=0.1)
        np.testing.assert_equal(criterion(logits, target), expected)  # NaN == NaN here
        assert criterion.backward().shape == (0, 4)
    none = CrossEntropyLoss(reduction="none")
    assert none(logits, target).shape == (0,)
    assert none.backward(np.zeros(0)).shape == (0, 4)


def test_every_target_ignored_gives_nan_and_no_gradient():
    criterion = CrossEntropyLoss(label_smoothing=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(criterion(np.ones((3, 4)), np.full(3, -100)))
        np.testing.assert_array_equal(criterion.backward(), np.zeros((3, 4)))


def test_unbatched_sample():
    x = np.array([0.5, -1.0, 2.0])
    criterion = CrossEntropyLoss(reduction="none")
    value = criterion(x, np.array(2))
    assert value.shape == () and value == pytest.approx(-log_softmax_reference(x, 0)[2], rel=1e-15)
    assert criterion.backward(np.array(1.0)).shape == (3,)


# =========================================================================== hygiene


@pytest.mark.parametrize("kind", ["indices", "probabilities"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_hygiene(kind, reduction, rng):
    logits, target, weight, _ = draw_case(rng, 4, 5, (2,), kind, True, False)
    logits, weight = logits.astype(np.float32), weight.astype(np.float32)
    target = target.astype(np.float32) if kind == "probabilities" else target
    before = [a.copy() for a in (logits, target, weight)]
    criterion = CrossEntropyLoss(weight, reduction=reduction, label_smoothing=0.1)
    out = criterion(logits, target)
    assert out.dtype == np.float32 and out.shape == ((4, 2) if reduction == "none" else ())
    dloss = rng.standard_normal(out.shape).astype(np.float32) if reduction == "none" else 1.0
    dlogits = criterion.backward(dloss)
    for array, copy in zip((logits, target, weight), before):
        np.testing.assert_array_equal(array, copy)
    assert dlogits.shape == logits.shape and dlogits.dtype == np.float32
    assert not any(np.shares_memory(dlogits, a) for a in (logits, target, weight, out))
    np.testing.assert_array_equal(criterion.backward(dloss), dlogits)


@pytest.mark.parametrize("layer", [Softmax(1), LogSoftmax(-1)], ids=repr)
def test_softmax_hygiene(layer, rng):
    x = (rng.standard_normal((3, 4, 2)) * 3).astype(np.float32)
    before = x.copy()
    out = layer(x)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    dx = layer.backward(dout)
    np.testing.assert_array_equal(x, before)
    assert out.dtype == dx.dtype == np.float32 and dx.shape == x.shape
    assert not any(np.shares_memory(dx, a) for a in (x, out, dout))
    np.testing.assert_array_equal(layer.backward(dout), dx)


def test_weight_is_a_buffer_that_follows_the_dtype():
    criterion = CrossEntropyLoss([1, 2, 3])
    assert criterion.weight.dtype == np.float32 and list(criterion.state_dict()) == ["weight"]
    criterion.double()
    assert criterion.weight.dtype == np.float64
    assert list(CrossEntropyLoss().state_dict()) == []


def test_repr():
    assert repr(CrossEntropyLoss()) == "CrossEntropyLoss(ignore_index=-100, reduction='mean', label_smoothing=0.0)"
    assert repr(CrossEntropyLoss(np.ones(3), reduction="sum")).startswith("CrossEntropyLoss(weight=<3 classes>,")
    assert repr(Softmax(dim=1)) == "Softmax(dim=1)" and repr(LogSoftmax(-1)) == "LogSoftmax(dim=-1)"


# =========================================================================== bad input

LOGITS = np.zeros((3, 4))


@pytest.mark.parametrize("target, error, match", [
    (np.array([0, 1]), ShapeError, r"expected target class indices of shape \(3,\) \(an integer dtype\) or probabilities of shape \(3, 4\), got integers of shape \(2,\)"),
    (np.zeros((3, 4), np.int64), ShapeError, r"got integers of shape \(3, 4\)"),
    (np.zeros((3, 5)), ShapeError, r"or probabilities of shape \(3, 4\), got shape \(3, 5\)"),
    (np.array([0, 4, 1]), IndexError, r"target class index 4 is out of range for 4 classes \(expected 0..3 or ignore_index=-100; 1 bad\)"),
    (np.array([0, -1, -2]), IndexError, r"target class index -1 is out of range .*; 2 bad"),
    (np.array([0.0, 1.0, 2.0]), TypeError, r"target of shape \(3,\) looks like class indices but has dtype float64; class indices must be integers"),
    (np.zeros((3, 4), np.float32), TypeError, r"logits are float64 but the target probabilities are float32"),
    (np.array([True, False, True]), TypeError, r"got dtype bool"),
    (np.full((3, 4), 0.25), None, None),  # probabilities are fine with the default ignore_index (-100) ...
    ([0, 1, 2], TypeError, r"expected target to be a numpy.ndarray, got list"),
])
def test_bad_targets(target, error, match):
    if error is None:
        CrossEntropyLoss()(LOGITS, target)
        with pytest.raises(ValueError, match=r"CrossEntropyLoss\(ignore_index=0.*: ignore_index applies to class-index targets only"):
            CrossEntropyLoss(ignore_index=0)(LOGITS, target)  # ... but not with one that names a class
        return
    with pytest.raises(error, match=match) as raised:
        CrossEntropyLoss()(LOGITS, target)
    assert str(raised.value).startswith("CrossEntropyLoss(ignore_index=-100, reduction='mean', label_smoothing=0.0): ")


@pytest.mark.parametrize("where, bad", [("logits", np.nan), ("logits", np.inf), ("target", np.nan)])
def test_nan_or_inf_raises(where, bad):
    logits, target = LOGITS.copy(), np.full((3, 4), 0.25)
    (logits if where == "logits" else target)[1, 2] = bad
    with pytest.raises(ValueError, match=f": the {where} contain 1 NaN or infinite value"):
        CrossEntropyLoss()(logits, target)


def test_bad_logits_and_weight():
    with pytest.raises(TypeError, match=r"expected logits of dtype float32 or float64, got int64"):
        CrossEntropyLoss()(np.zeros((3, 4), np.int64), np.zeros(3, np.int64))
    with pytest.raises(ShapeError, match=r"expected logits of shape \(N, C, ...\) or \(C,\) with C >= 1, got shape \(3, 0\)"):
        CrossEntropyLoss()(np.zeros((3, 0)), np.zeros(3, np.int64))
    with pytest.raises(ShapeError, match="weight has 3 values but the logits have 4 classes"):
        CrossEntropyLoss(np.ones(3))(LOGITS, np.zeros(3, np.int64))
    with pytest.raises(TypeError, match="input dtype float64 does not match weight dtype float32"):
        CrossEntropyLoss([1, 1, 1, 1])(LOGITS, np.zeros(3, np.int64))
    with pytest.raises(ShapeError, match=r"weight must be a 1-D array with one value per class, got shape \(2, 2\)"):
        CrossEntropyLoss(np.ones((2, 2)))
    with pytest.raises(ValueError, match="weight contains NaN"):
        CrossEntropyLoss(np.array([1.0, np.nan]))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(label_smoothing=1.5), ValueError, "label_smoothing must be between 0.0 and 1.0, got 1.5"),
    (dict(label_smoothing=-0.1), ValueError, "label_smoothing must be between 0.0 and 1.0, got -0.1"),
    (dict(reduction="avg"), ValueError, r"reduction must be one of \('mean', 'sum', 'none'\), got 'avg'"),
    (dict(ignore_index=1.0), TypeError, "ignore_index must be an int, got 1.0"),
])
def test_bad_options(kwargs, error, match):
    with pytest.raises(error, match="CrossEntropyLoss: " + match):
        CrossEntropyLoss(**kwargs)


def test_softmax_bad_dim():
    with pytest.raises(ShapeError, match=r"Softmax\(dim=2\): dim 2 is out of range for an input of shape \(3, 4\)"):
        Softmax(2)(LOGITS)
    with pytest.raises(ShapeError, match=r"LogSoftmax\(dim=0\): dim 0 is out of range for an input of shape \(\)"):
        LogSoftmax(0)(np.array(1.0))
    with pytest.raises(TypeError, match="Softmax: dim must be an int"):
        Softmax(None)


def test_gradcheck_takes_class_indices_only_after_the_input(rng):
    with pytest.raises(TypeError, match="input 0 must be a float64 ndarray"):
        gradcheck(Softmax(0), np.arange(3))
    gradcheck(CrossEntropyLoss(), rng.standard_normal((2, 3)), np.array([2, 0]), rng=rng)
