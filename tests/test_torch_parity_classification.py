"""Softmax, LogSoftmax and CrossEntropyLoss against PyTorch (an optional test dependency), in float64,
over hypothesis-drawn shapes (empty batches included), targets and options: values and gradients.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
F = torch.nn.functional

from tinynet.nn import CrossEntropyLoss, LogSoftmax, Softmax  # noqa: E402

TOL = dict(rtol=1e-10, atol=1e-12)


def torch_cross_entropy(logits, target, dloss, **options):
    """Value and logits gradient from torch (int64 indices: torch takes no other integer type)."""
    xt = torch.tensor(logits, requires_grad=True)
    tt = torch.tensor(target.astype(np.int64) if target.dtype.kind in "iu" else target)
    if options.get("weight") is not None:
        options["weight"] = torch.tensor(options["weight"])
    value = F.cross_entropy(xt, tt, **options)
    value.backward(torch.tensor(dloss, dtype=torch.float64))
    return value.detach().numpy(), xt.grad.numpy()


@given(
    n=st.integers(0, 4),
    c=st.integers(1, 6),
    spatial=st.lists(st.integers(0, 3), max_size=2).map(tuple),
    kind=st.sampled_from(["indices", "probabilities"]),
    index_dtype=st.sampled_from([np.int64, np.int32, np.uint8]),
    with_weight=st.booleans(),
    ignore_index=st.sampled_from([-100, 0, 2]),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    label_smoothing=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
    scale=st.sampled_from([1.0, 30.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_cross_entropy(n, c, spatial, kind, index_dtype, with_weight, ignore_index, reduction, label_smoothing, scale, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, c) + spatial) * scale
    if kind == "indices":
        target = rng.integers(0, c, size=(n,) + spatial).astype(index_dtype)
    else:
        target = np.moveaxis(rng.dirichlet(np.ones(c), size=(n,) + spatial), -1, 1).copy()
    weight = rng.uniform(0.1, 3.0, c) if with_weight else None
    options = dict(weight=weight, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)
    ours = CrossEntropyLoss(**options)
    if kind == "probabilities" and ignore_index >= 0:
        with pytest.raises(RuntimeError, match="ignore_index is not supported for floating point target"):
            torch_cross_entropy(logits, target, 1.0, **options)
        with pytest.raises(ValueError, match="ignore_index applies to class-index targets only"):
            ours(logits, target)
        return
    value = ours(logits, target)
    dloss = rng.standard_normal(np.shape(value)) if reduction == "none" else rng.standard_normal()
    dlogits = ours.backward(dloss)
    t_value, t_dlogits = torch_cross_entropy(logits, target, dloss, **options)
    np.testing.assert_allclose(value, t_value, **TOL, err_msg="loss")  # NaN where torch has NaN
    np.testing.assert_allclose(dlogits, t_dlogits, **TOL, err_msg="logits gradient")


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("targets", [[-100, -100, -100], [0, 0, -100]], ids=["all-ignored", "zero-weight"])
def test_cross_entropy_when_nothing_counts(targets, label_smoothing, rng):
    """Mean over nothing: NaN, as torch; the gradient is 0 at ignored targets and NaN at zero-weight ones."""
    logits = rng.standard_normal((3, 4))
    options = dict(weight=np.array([0.0, 1.0, 1.0, 1.0]), label_smoothing=label_smoothing)
    ours = CrossEntropyLoss(**options)
    value, dlogits = ours(logits, np.array(targets)), ours.backward()
    t_value, t_dlogits = torch_cross_entropy(logits, np.array(targets), 1.0, **options)
    np.testing.assert_allclose(value, t_value)
    np.testing.assert_allclose(dlogits, t_dlogits)


def test_cross_entropy_unbatched(rng):
    logits = rng.standard_normal(5)
    for target in (np.array(3), rng.dirichlet(np.ones(5))):
        ours = CrossEntropyLoss(label_smoothing=0.1)
        value, dlogits = ours(logits, target), ours.backward(0.7)
        t_value, t_dlogits = torch_cross_entropy(logits, target, 0.7, label_smoothing=0.1)
        np.testing.assert_allclose(value, t_value, **TOL)
        np.testing.assert_allclose(dlogits, t_dlogits, **TOL)


@given(
    shape=st.lists(st.integers(0, 4), min_size=1, max_size=4).map(tuple),
    log=st.booleans(),
    scale=st.sampled_from([1.0, 100.0]),
    data=st.data(),
    seed=st.integers(0, 2**32 - 1),
)
def test_softmax_and_log_softmax(shape, log, scale, data, seed):
    rng = np.random.default_rng(seed)
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = rng.standard_normal(shape) * scale
    layer = LogSoftmax(dim) if log else Softmax(dim)
    out = layer(x)
    dout = rng.standard_normal(shape)
    xt = torch.tensor(x, requires_grad=True)
    t_out = (torch.log_softmax if log else torch.softmax)(xt, dim)
    t_out.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, t_out.detach().numpy(), **TOL)
    np.testing.assert_allclose(layer.backward(dout), xt.grad.numpy(), **TOL)
