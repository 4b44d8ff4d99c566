"""Empty batches (N = 0) and empty images in every layer and loss behave as PyTorch 2.x's.

What PyTorch does (observed with torch 2.13, and the rule each test below writes down):

- every layer maps an ``(0, ...)`` input to an ``(0, ...)`` output of the usual shape, and backward
  returns an empty ``dx`` and all-zero parameter gradients, in train and eval mode;
- ``BatchNorm`` in train mode with N = 0 (or an empty H or W) leaves ``running_mean``/``running_var``
  as they were but still adds 1 to ``num_batches_tracked``; exactly one value per channel raises
  ("Expected more than 1 value per channel when training");
- a loss with ``reduction="mean"`` over nothing is NaN, ``"sum"`` is 0, ``"none"`` is empty; the
  gradient is empty;
- convolution with an empty H or W is an error unless the batch is empty; pooling refuses an empty
  C, H or W even for an empty batch; a kernel larger than the (padded) input is an error for any N.

The torch-free tests assert these rules with concrete values; ``test_*_like_torch`` run the same
cases in PyTorch side by side when it is installed.
"""
from __future__ import annotations

import numpy as np
import pytest

import tinynet.nn as nn
from keypoints.models import naimishnet
from tinynet._checks import ShapeError
from tinynet.functional.batchnorm import channel_stats

F32 = np.float32

# (name, tinynet factory, input shape, expected output shape); the torch classes have the same names
LAYERS = [
    ("Conv2d", lambda: nn.Conv2d(3, 4, 3), (0, 3, 8, 8), (0, 4, 6, 6)),
    ("Conv2d", lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), (0, 3, 8, 8), (0, 4, 4, 4)),
    ("Linear", lambda: nn.Linear(5, 2), (0, 5), (0, 2)),
    ("BatchNorm1d", lambda: nn.BatchNorm1d(5), (0, 5), (0, 5)),
    ("BatchNorm1d", lambda: nn.BatchNorm1d(5), (0, 5, 4), (0, 5, 4)),
    ("BatchNorm2d", lambda: nn.BatchNorm2d(3), (0, 3, 8, 8), (0, 3, 8, 8)),
    ("BatchNorm2d", lambda: nn.BatchNorm2d(3), (2, 3, 0, 4), (2, 3, 0, 4)),
    ("ReLU", lambda: nn.ReLU(), (0, 3, 8, 8), (0, 3, 8, 8)),
    ("ELU", lambda: nn.ELU(), (0, 3, 8, 8), (0, 3, 8, 8)),
    ("LeakyReLU", lambda: nn.LeakyReLU(0.1), (0, 3, 8, 8), (0, 3, 8, 8)),
    ("Tanh", lambda: nn.Tanh(), (0, 5), (0, 5)),
    ("Sigmoid", lambda: nn.Sigmoid(), (0, 5), (0, 5)),
    ("Softmax", lambda: nn.Softmax(1), (0, 5), (0, 5)),
    ("LogSoftmax", lambda: nn.LogSoftmax(1), (0, 5), (0, 5)),
    ("MaxPool2d", lambda: nn.MaxPool2d(2), (0, 3, 8, 8), (0, 3, 4, 4)),
    ("MaxPool2d", lambda: nn.MaxPool2d(3, stride=1, padding=1), (0, 3, 5, 5), (0, 3, 5, 5)),
    ("Dropout", lambda: nn.Dropout(0.5, rng=np.random.default_rng(0)), (0, 3, 8, 8), (0, 3, 8, 8)),
    ("Flatten", lambda: nn.Flatten(), (0, 3, 8, 8), (0, 192)),
]
LAYER_IDS = [f"{name}{shape}" for name, _, shape, _ in LAYERS]


def run_layer(layer, shape, training: bool):
    layer.train(training)
    out = layer(np.zeros(shape, F32))
    dx = layer.backward(np.ones(out.shape, F32))
    return out, dx


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name, make, shape, expected", LAYERS, ids=LAYER_IDS)
def test_layer_maps_an_empty_batch_to_an_empty_output(name, make, shape, expected, training):
    layer = make()
    out, dx = run_layer(layer, shape, training)
    assert out.shape == expected and out.dtype == F32
    assert dx.shape == shape and dx.dtype == F32
    for pname, param in layer.named_parameters():
        assert param.grad is not None and param.grad.shape == param.data.shape, pname
        assert not param.grad.any(), f"{pname}: an empty batch has a zero gradient"


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 3, 0, 4)])
def test_batchnorm_train_on_an_empty_batch_counts_it_but_keeps_the_running_statistics(shape, momentum):
    bn = nn.BatchNorm2d(3, momentum=momentum)
    bn.running_mean[...] = [0.5, -1.0, 2.0]
    bn.running_var[...] = [2.0, 3.0, 0.25]
    bn(np.zeros(shape, F32))
    np.testing.assert_array_equal(bn.running_mean, np.array([0.5, -1.0, 2.0], F32))
    np.testing.assert_array_equal(bn.running_var, np.array([2.0, 3.0, 0.25], F32))
    assert int(bn.num_batches_tracked) == 1


def test_batchnorm_eval_on_an_empty_batch_changes_nothing():
    bn = nn.BatchNorm1d(4).eval()
    assert bn(np.zeros((0, 4), F32)).shape == (0, 4)
    assert int(bn.num_batches_tracked) == 0
    np.testing.assert_array_equal(bn.running_mean, np.zeros(4, F32))


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1), (1, 3, 1, 1)])
def test_batchnorm_train_with_one_value_per_channel_still_raises(shape):
    bn = nn.BatchNorm1d(3) if len(shape) < 4 else nn.BatchNorm2d(3)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(np.zeros(shape, F32))


def test_channel_stats_refuses_an_empty_batch_instead_of_dividing_by_zero_in_the_kernel():
    with pytest.raises(ValueError, match="empty batch"):
        channel_stats(np.zeros((0, 3, 4), F32))


# ---------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------
REGRESSION_LOSSES = {
    "MSELoss": lambda r: nn.MSELoss(reduction=r),
    "L1Loss": lambda r: nn.L1Loss(reduction=r),
    "SmoothL1Loss": lambda r: nn.SmoothL1Loss(reduction=r),
    "WingLoss": lambda r: nn.WingLoss(reduction=r),
}


def loss_inputs(name: str, dtype):
    if name == "CrossEntropyLoss":
        return np.zeros((0, 5), dtype), np.zeros((0,), np.int64)
    if name == "CrossEntropyLoss(probabilities)":
        return np.zeros((0, 5), dtype), np.zeros((0, 5), dtype)
    return np.zeros((0, 68, 2), dtype), np.zeros((0, 68, 2), dtype)


def make_loss(name: str, reduction: str):
    if name.startswith("CrossEntropyLoss"):
        return nn.CrossEntropyLoss(reduction=reduction)
    return REGRESSION_LOSSES[name](reduction)


LOSS_NAMES = [*REGRESSION_LOSSES, "CrossEntropyLoss", "CrossEntropyLoss(probabilities)"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_mean_of_an_empty_batch_is_nan_with_an_empty_gradient(name, dtype):
    pred, target = loss_inputs(name, dtype)
    criterion = make_loss(name, "mean")
    with np.errstate(all="raise"):  # no 0/0 warning on the way: NaN is the answer, not an accident
        loss = criterion(pred, target)
        dpred = criterion.backward()
    assert np.ndim(loss) == 0 and np.isnan(loss) and loss.dtype == dtype
    assert dpred.shape == pred.shape and dpred.dtype == dtype


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_sum_of_an_empty_batch_is_zero_and_none_is_empty(name):
    pred, target = loss_inputs(name, F32)
    total = make_loss(name, "sum")
    assert total(pred, target) == 0.0
    assert total.backward(2.0).shape == pred.shape
    each = make_loss(name, "none")
    elementwise = each(pred, target)
    assert elementwise.shape == ((0,) if name.startswith("CrossEntropyLoss") else (0, 68, 2))
    assert each.backward(np.ones(elementwise.shape, F32)).shape == pred.shape


# ---------------------------------------------------------------------------------------------
# empty images and outputs of size 0: errors, as PyTorch
# ---------------------------------------------------------------------------------------------
ERRORS = [
    ("Conv2d", lambda: nn.Conv2d(3, 4, 3), (0, 3, 2, 2), "smaller than the kernel 3x3"),
    ("Conv2d", lambda: nn.Conv2d(3, 4, 3), (2, 3, 2, 2), "smaller than the kernel 3x3"),
    ("Conv2d", lambda: nn.Conv2d(3, 4, 1, padding=1), (2, 3, 0, 4), r"H and W at least 1 .*got shape \(2, 3, 0, 4\)"),
    ("MaxPool2d", lambda: nn.MaxPool2d(3), (0, 3, 2, 2), "smaller than the kernel 3x3"),
    ("MaxPool2d", lambda: nn.MaxPool2d(2, padding=1), (2, 3, 0, 4), r"C, H and W at least 1 .*got shape \(2, 3, 0, 4\)"),
    ("MaxPool2d", lambda: nn.MaxPool2d(2, padding=1), (0, 3, 0, 4), r"C, H and W at least 1 .*got shape \(0, 3, 0, 4\)"),
]


@pytest.mark.parametrize("name, make, shape, message", ERRORS, ids=[f"{e[0]}{e[2]}" for e in ERRORS])
def test_an_empty_image_or_an_output_of_size_zero_raises_a_shape_error(name, make, shape, message):
    layer = make()
    with pytest.raises(ShapeError, match=message) as error:
        layer(np.zeros(shape, F32))
    assert name in str(error.value)


def test_an_empty_batch_of_empty_images_convolves_when_the_padding_covers_the_kernel():
    conv = nn.Conv2d(3, 4, 1, padding=1)
    out = conv(np.zeros((0, 3, 0, 4), F32))
    assert out.shape == (0, 4, 2, 6)  # (0 + 2 - 1) + 1 = 2 rows, (4 + 2 - 1) + 1 = 6 columns
    assert conv.backward(np.ones(out.shape, F32)).shape == (0, 3, 0, 4)


# ---------------------------------------------------------------------------------------------
# whole models: the fused BatchNorm + ReLU + MaxPool block and NaimishNet
# ---------------------------------------------------------------------------------------------
def conv_block():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 2)
    )


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_sequential_with_the_fused_block_takes_an_empty_batch(fuse, training):
    model = conv_block().train(training)
    if fuse:
        nn.fuse(model)
    out = model(np.zeros((0, 1, 8, 8), F32))
    assert out.shape == (0, 2)
    assert model.backward(np.ones((0, 2), F32)).shape == (0, 1, 8, 8)
    bn = model[1]
    assert int(bn.num_batches_tracked) == (1 if training else 0)
    np.testing.assert_array_equal(bn.running_mean, np.zeros(4, F32))
    np.testing.assert_array_equal(bn.running_var, np.ones(4, F32))
    assert not bn.weight.grad.any() and not model[0].weight.grad.any()


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_naimishnet_takes_an_empty_batch(training):
    model = naimishnet(96).train(training)
    out = model(np.zeros((0, 1, 96, 96), F32))
    assert out.shape == (0, 136) and out.dtype == F32
    assert model.backward(np.ones((0, 136), F32)).shape == (0, 1, 96, 96)


# ---------------------------------------------------------------------------------------------
# the same cases in PyTorch, when it is installed
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def torch_layer(torch, name: str, layer):
    """The torch module matching ``layer``, with ``layer``'s parameters and buffers."""
    kwargs = {
        "Conv2d": lambda: dict(in_channels=layer.in_channels, out_channels=layer.out_channels,
                               kernel_size=layer.kernel_size, stride=layer.stride, padding=layer.padding),
        "Linear": lambda: dict(in_features=layer.in_features, out_features=layer.out_features),
        "BatchNorm1d": lambda: dict(num_features=layer.num_features),
        "BatchNorm2d": lambda: dict(num_features=layer.num_features),
        "LeakyReLU": lambda: dict(negative_slope=layer.negative_slope),
        "Softmax": lambda: dict(dim=layer.dim),
        "LogSoftmax": lambda: dict(dim=layer.dim),
        "MaxPool2d": lambda: dict(kernel_size=layer.kernel_size, stride=layer.stride, padding=layer.padding),
        "Dropout": lambda: dict(p=layer.p),
    }.get(name, dict)()
    module = getattr(torch.nn, name)(**kwargs)
    module.load_state_dict({k: torch.tensor(np.array(v)) for k, v in layer.state_dict().items()})
    return module


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name, make, shape, expected", LAYERS, ids=LAYER_IDS)
def test_layer_on_an_empty_batch_like_torch(torch, name, make, shape, expected, training):
    layer = make()
    if isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d):
        layer.running_mean[...] = 0.5
        layer.running_var[...] = 2.0
    reference = torch_layer(torch, name, layer).train(training)
    out, dx = run_layer(layer, shape, training)
    xt = torch.zeros(shape, requires_grad=True)
    out_t = reference(xt)
    out_t.backward(torch.ones_like(out_t))
    assert out.shape == tuple(out_t.shape) and dx.shape == tuple(xt.grad.shape)
    for pname, param in reference.named_parameters():
        np.testing.assert_array_equal(getattr(layer, pname).grad, param.grad.numpy(), err_msg=pname)
    for bname, buffer in reference.named_buffers():
        np.testing.assert_array_equal(getattr(layer, bname), buffer.numpy(), err_msg=bname)


def torch_loss(torch, name: str, reduction: str):
    if name == "WingLoss":  # not in torch: its formula in torch operations
        def wing(pred, target, width=10.0, curvature=2.0):
            d = (pred - target).abs()
            joint = width - width * np.log1p(width / curvature)
            each = torch.where(d < width, width * torch.log1p(d / curvature), d - joint)
            return {"mean": each.mean, "sum": each.sum, "none": lambda: each}[reduction]()
        return wing
    return getattr(torch.nn, name.split("(")[0])(reduction=reduction)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_loss_on_an_empty_batch_like_torch(torch, name, reduction):
    pred, target = loss_inputs(name, F32)
    criterion = make_loss(name, reduction)
    loss = criterion(pred, target)
    pred_t = torch.tensor(pred, requires_grad=True)
    loss_t = torch_loss(torch, name, reduction)(pred_t, torch.tensor(target))
    loss_t.backward(torch.ones_like(loss_t))
    np.testing.assert_array_equal(np.asarray(loss), loss_t.detach().numpy())  # NaN equals NaN here
    dpred = criterion.backward(np.ones(np.shape(loss), F32) if reduction == "none" else 1.0)
    assert dpred.shape == tuple(pred_t.grad.shape)


@pytest.mark.parametrize("name, make, shape, message", ERRORS, ids=[f"{e[0]}{e[2]}" for e in ERRORS])
def test_torch_refuses_the_same_empty_images(torch, name, make, shape, message):
    reference = torch_layer(torch, name, make())
    with pytest.raises(RuntimeError):
        reference(torch.zeros(shape))


def test_torch_convolves_an_empty_batch_of_empty_images_to_the_same_shape(torch):
    assert tuple(torch.nn.Conv2d(3, 4, 1, padding=1)(torch.zeros(0, 3, 0, 4)).shape) == (0, 4, 2, 6)


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1)])
def test_torch_refuses_one_value_per_channel_too(torch, shape):
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        torch.nn.BatchNorm1d(3)(torch.zeros(shape))
