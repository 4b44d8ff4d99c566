"""Parity with PyTorch (an optional test dependency): same parameters in, same outputs, gradients and
running buffers out, in float64 to ~1e-10.

torch's parameters are copied into ours with ``load_state_dict({k: v.detach().numpy()})``, which also
exercises key names and buffer layouts (``num_batches_tracked`` included).
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tinynet import init  # noqa: E402
from tinynet.nn.activation import ELU, LeakyReLU, ReLU, Sigmoid, Tanh  # noqa: E402
from tinynet.nn.flatten import Flatten  # noqa: E402
from tinynet.nn.linear import Linear  # noqa: E402
from tinynet.nn.loss import L1Loss, MSELoss, SmoothL1Loss  # noqa: E402
from tinynet.nn import Sequential  # noqa: E402
from tinynet.nn.normalization import BatchNorm1d, BatchNorm2d  # noqa: E402

TOL = dict(rtol=1e-10, atol=1e-12)


def torch_state(module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def t(array: np.ndarray, grad: bool = True):
    return torch.tensor(array, dtype=torch.float64, requires_grad=grad)


def run_torch(module, x: np.ndarray, dout: np.ndarray):
    """Forward and backward in torch: (out, dx, {param name: grad})."""
    xt = t(x)
    for p in module.parameters():
        p.grad = None
    out = module(xt)
    out.backward(torch.tensor(dout))
    grads = {name: p.grad.numpy().copy() for name, p in module.named_parameters()}
    return out.detach().numpy(), xt.grad.numpy(), grads


def compare_step(ours, theirs, x: np.ndarray, rng: np.random.Generator) -> None:
    """One forward/backward of both with the same random upstream gradient; compare everything."""
    out = ours(x)
    dout = rng.standard_normal(out.shape)
    ours.zero_grad()
    dx = ours.backward(dout)
    t_out, t_dx, t_grads = run_torch(theirs, x, dout)
    np.testing.assert_allclose(out, t_out, **TOL, err_msg="output")
    np.testing.assert_allclose(dx, t_dx, **TOL, err_msg="input gradient")
    ours_grads = {name: p.grad for name, p in ours.named_parameters()}
    assert set(ours_grads) == set(t_grads)
    for name, grad in ours_grads.items():
        np.testing.assert_allclose(grad, t_grads[name], **TOL, err_msg=name)
    compare_buffers(ours, theirs)


def compare_buffers(ours, theirs) -> None:
    ours_buffers = dict(ours.named_buffers())
    theirs_buffers = {k: v.numpy() for k, v in theirs.named_buffers()}
    assert set(ours_buffers) == set(theirs_buffers)
    for name, value in ours_buffers.items():
        assert value.shape == theirs_buffers[name].shape, name
        np.testing.assert_allclose(value, theirs_buffers[name], **TOL, err_msg=name)


# =========================================================================== Linear


@pytest.mark.parametrize("bias", [True, False])
def test_linear(bias, rng):
    theirs = torch.nn.Linear(5, 3, bias=bias, dtype=torch.float64)
    ours = Linear(5, 3, bias=bias, dtype=np.float64)
    ours.load_state_dict(torch_state(theirs))
    compare_step(ours, theirs, rng.standard_normal((4, 5)), rng)


# =========================================================================== BatchNorm


def randomized_torch_bn(cls, c: int, rng: np.random.Generator, **kwargs):
    bn = cls(c, dtype=torch.float64, **kwargs)
    if bn.affine:
        with torch.no_grad():
            bn.weight.copy_(torch.tensor(rng.uniform(0.5, 2.0, c)))
            bn.bias.copy_(torch.tensor(rng.normal(size=c)))
    return bn


@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize(
    "ours_cls, theirs_name, shape",
    [(BatchNorm1d, "BatchNorm1d", (6, 3)), (BatchNorm1d, "BatchNorm1d", (3, 3, 4)), (BatchNorm2d, "BatchNorm2d", (2, 3, 3, 2))],
    ids=["1d-NC", "1d-NCL", "2d"],
)
def test_batchnorm_train_then_eval(ours_cls, theirs_name, shape, affine, momentum, rng):
    c = shape[1]
    theirs = randomized_torch_bn(getattr(torch.nn, theirs_name), c, rng, affine=affine, momentum=momentum)
    ours = ours_cls(c, affine=affine, momentum=momentum, dtype=np.float64)
    ours.load_state_dict(torch_state(theirs))
    for step in range(3):  # several steps, so the running statistics are compared as they move
        x = rng.standard_normal(shape) * (step + 1) + step
        compare_step(ours, theirs, x, rng)
    assert int(ours.num_batches_tracked) == 3
    ours.eval(), theirs.eval()
    for _ in range(2):
        compare_step(ours, theirs, rng.standard_normal(shape) * 2 - 1, rng)
    assert int(ours.num_batches_tracked) == 3


def test_batchnorm_float32_state_dict_loads(rng):
    theirs = randomized_torch_bn(torch.nn.BatchNorm2d, 4, rng).float()
    theirs(torch.randn(3, 4, 2, 2))  # running stats and num_batches_tracked move
    state = torch_state(theirs)
    ours = BatchNorm2d(4)
    ours.load_state_dict(state)
    for key, value in state.items():
        np.testing.assert_array_equal(ours.state_dict()[key], value)
    assert ours.num_batches_tracked.dtype == np.int64 and int(ours.num_batches_tracked) == 1


# =========================================================================== activations and Flatten


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (ReLU(), torch.nn.ReLU()),
        (LeakyReLU(), torch.nn.LeakyReLU()),
        (LeakyReLU(0.25), torch.nn.LeakyReLU(0.25)),
        (ELU(), torch.nn.ELU()),
        (ELU(0.6), torch.nn.ELU(0.6)),
        (Tanh(), torch.nn.Tanh()),
        (Sigmoid(), torch.nn.Sigmoid()),
    ],
    ids=["ReLU", "LeakyReLU", "LeakyReLU0.25", "ELU", "ELU0.6", "Tanh", "Sigmoid"],
)
def test_activations(ours, theirs, rng):
    x = rng.standard_normal((4, 3, 5)) * 4
    x[0, 0, :3] = [0.0, 40.0, -40.0]  # the kink itself, and saturation
    compare_step(ours, theirs, x, rng)


@pytest.mark.parametrize("start, end", [(1, -1), (0, -1), (1, 2), (2, 3), (-3, -2)])
def test_flatten(start, end, rng):
    compare_step(Flatten(start, end), torch.nn.Flatten(start, end), rng.standard_normal((2, 3, 4, 5)), rng)


# =========================================================================== losses


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    "make_ours, make_theirs",
    [
        (lambda r: MSELoss(r), lambda r: torch.nn.MSELoss(reduction=r)),
        (lambda r: L1Loss(r), lambda r: torch.nn.L1Loss(reduction=r)),
        (lambda r: SmoothL1Loss(r), lambda r: torch.nn.SmoothL1Loss(reduction=r)),
        (lambda r: SmoothL1Loss(r, beta=0.4), lambda r: torch.nn.SmoothL1Loss(reduction=r, beta=0.4)),
        (lambda r: SmoothL1Loss(r, beta=0.0), lambda r: torch.nn.SmoothL1Loss(reduction=r, beta=0.0)),
    ],
    ids=["MSE", "L1", "SmoothL1", "SmoothL1-beta0.4", "SmoothL1-beta0"],
)
def test_losses(make_ours, make_theirs, reduction, rng):
    pred = rng.standard_normal((6, 5))
    target = pred + rng.standard_normal((6, 5)) * 1.5
    target[0, 0] = pred[0, 0]  # d = 0
    ours, theirs = make_ours(reduction), make_theirs(reduction)
    value = ours(pred, target)
    pt = t(pred)
    t_value = theirs(pt, t(target, grad=False))
    np.testing.assert_allclose(value, t_value.detach().numpy(), **TOL)
    dloss = rng.standard_normal(pred.shape) if reduction == "none" else 1.7
    t_value.backward(torch.tensor(dloss, dtype=torch.float64))
    np.testing.assert_allclose(ours.backward(dloss), pt.grad.numpy(), **TOL)


# =========================================================================== a small model


def torch_model(rng):
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
    ).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor(rng.uniform(0.5, 2.0, 8)))
        model[1].bias.copy_(torch.tensor(rng.normal(size=8)))
    return model


def test_sequential_model_from_a_torch_state_dict(rng):
    theirs = torch_model(rng)
    ours = Sequential(Linear(6, 8), BatchNorm1d(8), ReLU(), Linear(8, 3)).double()
    assert list(ours.state_dict()) == list(theirs.state_dict())  # the same keys, in the same order
    ours.load_state_dict(torch_state(theirs))
    for _ in range(3):
        compare_step(ours, theirs, rng.standard_normal((10, 6)), rng)
    ours.eval(), theirs.eval()
    compare_step(ours, theirs, rng.standard_normal((4, 6)), rng)


def test_float32_model_from_a_torch_state_dict(rng):
    theirs = torch_model(rng).float().eval()
    ours = Sequential(Linear(6, 8), BatchNorm1d(8), ReLU(), Linear(8, 3)).eval()
    ours.load_state_dict(torch_state(theirs))
    x = rng.standard_normal((5, 6)).astype(np.float32)
    out = ours(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


# =========================================================================== init


@pytest.mark.parametrize("name, param", [("linear", None), ("relu", None), ("tanh", None), ("sigmoid", None),
                                         ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None), ("conv2d", None)])
def test_calculate_gain(name, param):
    assert init.calculate_gain(name, param) == pytest.approx(torch.nn.init.calculate_gain(name, param), rel=1e-15)


@pytest.mark.parametrize("shape", [(7, 5), (8, 3, 4, 2)])
def test_fans(shape):
    from torch.nn.init import _calculate_fan_in_and_fan_out

    assert init.fan_in_and_fan_out(shape) == _calculate_fan_in_and_fan_out(torch.empty(shape))
