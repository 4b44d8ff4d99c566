"""Tests for keypoints.models: the NaimishNet shapes, sizes and state-dict layout, and parity with the same
network written in PyTorch (``torch.nn.Sequential`` attributes ``features`` and ``regressor``)."""
from __future__ import annotations

import numpy as np
import pytest

import tinynet
from keypoints.models import KERNELS, NaimishNet, feature_size, naimishnet


@pytest.fixture(scope="module")
def net224() -> NaimishNet:
    """One 224 network for the module (initialising its 38 M parameters takes seconds)."""
    return naimishnet(224, seed=1)


def expected_keys() -> list[str]:
    """The state-dict keys, in order, of the PyTorch model: conv/BN2d at 0/1, 4/5, 8/9, 12/13 of
    ``features``; Linear at 0, 4, 8 and BN1d at 1, 5 of ``regressor``."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = []
    for block in range(4):
        keys += [f"features.{4 * block}.weight", f"features.{4 * block}.bias"]
        keys += [f"features.{4 * block + 1}.{name}" for name in bn]
    for index in (0, 4, 8):
        keys += [f"regressor.{index}.weight", f"regressor.{index}.bias"]
        if index < 8:
            keys += [f"regressor.{index + 1}.{name}" for name in bn]
    return keys


def test_feature_size_table():
    # by hand: 96 -> (93)//2=46 -> (44)//2=22 -> (21)//2=10 -> (10)//2=5
    assert feature_size(96, (4, 3, 2, 1)) == 5
    # 224 -> (220)//2=110 -> (107)//2=53 -> (51)//2=25 -> (24)//2=12
    assert feature_size(224, (5, 4, 3, 2)) == 12
    assert KERNELS == {96: (4, 3, 2, 1), 224: (5, 4, 3, 2)}
    assert naimishnet(96).num_flat == 256 * 5 * 5 == 6400


@pytest.mark.parametrize("size", [100, 128, 0])
def test_bad_input_size(size):
    with pytest.raises(ValueError, match="input_size"):
        naimishnet(size)
    with pytest.raises(ValueError, match="input_size"):
        NaimishNet(size)


def test_parameter_counts(net224):
    # 96: convs 544 + 18,496 + 32,896 + 33,024, BN2d 960, FC 6,401,000 + 1,001,000 + 136,136, BN1d 2 x 2,000
    assert naimishnet(96).num_parameters() == 7_628_056
    # 224: convs 832 + 32,832 + 73,856 + 131,328, BN2d 960, FC 36,865,000 + 1,001,000 + 136,136, BN1d 4,000
    assert net224.num_parameters() == 38_245_944


def test_state_dict_keys_shapes_and_dtypes(net224):
    state = naimishnet(96).state_dict()
    assert list(state) == expected_keys()
    assert state["features.0.weight"].shape == (32, 1, 4, 4)
    assert state["features.12.weight"].shape == (256, 128, 1, 1)
    assert state["features.13.running_var"].shape == (256,)
    assert state["regressor.0.weight"].shape == (1000, 6400)
    assert state["regressor.1.running_mean"].shape == (1000,)
    assert state["regressor.8.weight"].shape == (136, 1000)
    assert state["features.0.weight"].dtype == np.float32
    assert list(net224.state_dict()) == expected_keys()
    assert net224.state_dict()["features.0.weight"].shape == (32, 1, 5, 5)
    assert net224.state_dict()["regressor.0.weight"].shape == (1000, 36864)


def test_seed_reproducible():
    a, b = naimishnet(96, seed=3).state_dict(), naimishnet(96, seed=3).state_dict()
    c = naimishnet(96, seed=4).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["features.0.weight"], c["features.0.weight"])


@pytest.mark.parametrize("size, batch", [(96, 3), (224, 1)])
def test_output_shape_and_dtype(size, batch, net224):
    model = (naimishnet(96) if size == 96 else net224).eval()
    x = np.random.default_rng(0).random((batch, 1, size, size), dtype=np.float32)
    with tinynet.no_grad():
        out = model(x)
    assert out.shape == (batch, 136) and out.dtype == np.float32
    assert np.isfinite(out).all()


def test_set_dropout_rng_makes_masks_reproducible():
    x = np.random.default_rng(1).random((2, 1, 96, 96), dtype=np.float32)
    model = naimishnet(96).train()
    outs = []
    for seed in (5, 5, 6):
        model.set_dropout_rng(np.random.default_rng(seed))
        with tinynet.no_grad():
            outs.append(model(x))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.allclose(outs[0], outs[2])  # another stream, other masks


# ---------------------------------------------------------------------------------------------------
# Parity with PyTorch
# ---------------------------------------------------------------------------------------------------


def torch_naimishnet(torch, size: int, dropout: float = 0.4):
    nn = torch.nn
    layers, in_channels = [], 1
    for out_channels, k in zip((32, 64, 128, 256), {96: (4, 3, 2, 1), 224: (5, 4, 3, 2)}[size]):
        layers += [nn.Conv2d(in_channels, out_channels, k), nn.BatchNorm2d(out_channels), nn.ReLU(), nn.MaxPool2d(2, 2)]
        in_channels = out_channels
    side = {96: 5, 224: 12}[size]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(*layers)
            self.regressor = nn.Sequential(
                nn.Linear(256 * side * side, 1000), nn.BatchNorm1d(1000), nn.ReLU(), nn.Dropout(dropout),
                nn.Linear(1000, 1000), nn.BatchNorm1d(1000), nn.ReLU(), nn.Dropout(dropout),
                nn.Linear(1000, 136),
            )

        def forward(self, x):
            return self.regressor(torch.flatten(self.features(x), 1))

    net = Net()
    with torch.no_grad():  # non-trivial batch-norm statistics and affine parameters, so eval mode is tested
        for module in net.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
                module.num_batches_tracked.fill_(7)
    return net


@pytest.mark.parametrize("size, batch", [(96, 4), (224, 2)])
def test_eval_outputs_match_torch(size, batch, net224):
    torch = pytest.importorskip("torch")
    torch.manual_seed(size)
    reference = torch_naimishnet(torch, size).eval()
    state = {k: v.detach().numpy() for k, v in reference.state_dict().items()}
    ours = naimishnet(96, seed=1) if size == 96 else net224  # (the fixture's weights are overwritten here)
    assert list(ours.state_dict()) == list(state)
    ours.load_state_dict(state)
    ours.eval()
    x = np.random.default_rng(size).random((batch, 1, size, size), dtype=np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    with tinynet.no_grad():
        out = ours(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    assert int(ours.state_dict()["features.1.num_batches_tracked"]) == 7


def test_train_mode_forward_and_backward_match_torch_float64():
    """Training mode (batch statistics; dropout 0 so no masks differ), in float64 where both libraries
    agree to rounding: outputs, the input gradient and weight gradients at both ends of the network for
    a random upstream gradient, and the updated running statistics. (In float32 the train-mode batch
    norm over 3 samples amplifies rounding to ~1e-3 relative, too loose to catch a real mistake.)"""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    reference = torch_naimishnet(torch, 96, dropout=0.0).train().double()
    ours = naimishnet(96, dropout=0.0, dtype=np.float64)
    ours.load_state_dict({k: v.detach().numpy() for k, v in reference.state_dict().items()})
    ours.train()
    rng = np.random.default_rng(2)
    x = rng.random((3, 1, 96, 96))
    dout = rng.standard_normal((3, 136))
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out_t = reference(xt)
    out_t.backward(torch.from_numpy(dout))
    out = ours(x)
    ours.zero_grad()
    dx = ours.backward(dout)
    assert out.dtype == np.float64 and dx.dtype == np.float64
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-8, atol=1e-9)  # 26 layers of float64 sums in another order
    params = dict(ours.named_parameters())
    torch_params = dict(reference.named_parameters())
    for name in ("features.0.weight", "features.13.weight", "regressor.0.weight", "regressor.8.bias"):
        expected = torch_params[name].grad.numpy()  # (a hidden unit with a tiny batch variance amplifies rounding)
        np.testing.assert_allclose(params[name].grad, expected, rtol=1e-6, atol=1e-8 * np.abs(expected).max())
    # the running statistics moved exactly as PyTorch's (momentum 0.1, unbiased variance)
    torch_state = reference.state_dict()
    for key in ("features.1.running_mean", "features.1.running_var", "regressor.5.running_var"):
        np.testing.assert_allclose(ours.state_dict()[key], torch_state[key].numpy(), rtol=1e-10)
    assert int(ours.state_dict()["features.1.num_batches_tracked"]) == 8  # 7 set above, plus one batch
