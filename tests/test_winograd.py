"""The Winograd F(2x2, 3x3) convolution: the functional pair against the plain convolution written from its
definition, each Numba kernel against its NumPy reference, the layer (``WinogradConv2d``) and the pass that puts it
in (``use_winograd``), and the networks built with it. The same bits on one thread and on several:
``tests/test_parallel_kernels.py``."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinynet
from tinynet import backends, nn, optim
from tinynet.functional import winograd
from tinynet.functional.conv import conv2d_backward_reference, conv2d_forward, conv2d_forward_reference
from tinynet.functional.winograd import conv2d_winograd_backward, conv2d_winograd_forward
from tinynet.gradcheck import gradcheck

ENGINES = pytest.mark.parametrize("numba_enabled", [True, False], ids=["numba", "numpy"])


def _case(rng, n, c, f, h, w, padding, dtype=np.float64):
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = rng.standard_normal((f, c, 3, 3)).astype(dtype)
    bias = rng.standard_normal(f).astype(dtype)
    return x, weight, bias


# ------------------------------------------------------------------------------ the functional pair
@ENGINES
@pytest.mark.parametrize(
    "n, c, f, h, w, padding",
    [
        (3, 4, 5, 10, 10, (0, 0)),  # even output, the input itself read in place
        (2, 3, 4, 9, 7, (1, 1)),  # odd output, padded
        (2, 3, 2, 6, 5, (2, 1)),  # padding differing per axis
        (1, 2, 3, 3, 3, (0, 0)),  # one output pixel: one tile, three quarters of it outside
        (17, 3, 2, 8, 9, (0, 0)),  # more images than IMAGES_PER_SUM: several ranges of the weight-gradient sum
        (2, 2, 3, 26, 27, (0, 1)),  # 12 x 13 = 156 tiles: more than TILES_PER_PRODUCT, dU in two products
    ],
)
def test_forward_and_backward_equal_the_convolution_from_its_definition(numba_enabled, n, c, f, h, w, padding, rng):
    x, weight, bias = _case(rng, n, c, f, h, w, padding)
    with backends.numba.flags(enabled=numba_enabled):
        out, cache = conv2d_winograd_forward(x, weight, bias, padding)
        expected = conv2d_forward_reference(x, weight, bias, (1, 1), padding)
        assert out.shape == expected.shape
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
        dout = rng.standard_normal(out.shape)
        dx, dweight, dbias = conv2d_winograd_backward(dout, cache)
    dx_ref, dweight_ref, dbias_ref = conv2d_backward_reference(dout, x, weight, True, (1, 1), padding)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dweight, dweight_ref, rtol=1e-12, atol=1e-11)
    np.testing.assert_allclose(dbias, dbias_ref, rtol=1e-12, atol=1e-12)


def test_without_bias_and_without_the_input_gradient(rng):
    x, weight, _ = _case(rng, 2, 3, 4, 8, 8, (1, 1))
    out, cache = conv2d_winograd_forward(x, weight, None, 1)
    np.testing.assert_allclose(out, conv2d_forward_reference(x, weight, None, (1, 1), (1, 1)), rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    dx, dweight, dbias = conv2d_winograd_backward(dout, cache, need_dx=False)
    assert dx is None and dbias is None
    np.testing.assert_allclose(dweight, conv2d_backward_reference(dout, x, weight, False, (1, 1), (1, 1))[1],
                               rtol=1e-12, atol=1e-11)


def test_float32_stays_within_rounding_of_im2col(rng):
    """NaimishNet-96's second convolution in float32: the transforms' sums cost a few bits, no more."""
    x, weight, bias = _case(rng, 4, 32, 64, 46, 46, (0, 0), np.float32)
    weight *= 0.1
    out, _ = conv2d_winograd_forward(x, weight, bias)
    exact = conv2d_forward_reference(x.astype(np.float64), weight.astype(np.float64), bias.astype(np.float64))
    scale = np.abs(exact).max()
    im2col_error = np.abs(conv2d_forward(x, weight, bias)[0] - exact).max() / scale
    winograd_error = np.abs(out - exact).max() / scale
    assert winograd_error < 1e-5
    assert winograd_error < 20 * im2col_error


def test_an_empty_batch(rng):
    x, weight, bias = _case(rng, 0, 2, 3, 6, 6, (0, 0))
    out, cache = conv2d_winograd_forward(x, weight, bias)
    assert out.shape == (0, 3, 4, 4)
    dx, dweight, dbias = conv2d_winograd_backward(np.zeros(out.shape), cache)
    assert dx.shape == x.shape and not dweight.any() and not dbias.any()


def test_refuses_what_it_does_not_compute(rng):
    x = rng.standard_normal((1, 2, 6, 6))
    with pytest.raises(tinynet.ShapeError, match=r"expected a weight of shape \(F, C, 3, 3\), got \(3, 2, 5, 5\)"):
        conv2d_winograd_forward(x, rng.standard_normal((3, 2, 5, 5)), None)
    with pytest.raises(tinynet.ShapeError, match="smaller than the kernel 3x3"):
        conv2d_winograd_forward(rng.standard_normal((1, 2, 2, 6)), rng.standard_normal((3, 2, 3, 3)), None)


# ------------------------------------------------------------------------------ each kernel against its reference
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tiles", [(1, 1), (3, 5), (22, 22)])
def test_each_kernel_equals_its_reference(dtype, tiles, rng):
    th, tw = tiles
    c, f = 3, 4
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)
    xpad = rng.standard_normal((c, 2 * th + 2, 2 * tw + 2)).astype(dtype)
    v = np.empty((16, c, th, tw), dtype)
    winograd.kernels.winograd.winograd_input_kernel(xpad, v)
    np.testing.assert_allclose(v, winograd.input_transform_reference(xpad, tiles), **tol)

    m = rng.standard_normal((16, f, th, tw)).astype(dtype)
    bias = rng.standard_normal(f).astype(dtype)
    y = np.empty((f, 2 * th, 2 * tw), dtype)
    winograd.kernels.winograd.winograd_output_kernel(m, bias, y)
    np.testing.assert_allclose(y, winograd.output_transform_reference(m) + bias[:, None, None], **tol)

    dy = rng.standard_normal((f, 2 * th, 2 * tw)).astype(dtype)
    dm = np.empty((16, f, th, tw), dtype)
    winograd.kernels.winograd.winograd_output_grad_kernel(dy, dm)
    np.testing.assert_allclose(dm, winograd.output_grad_transform_reference(dy), **tol)

    dv = rng.standard_normal((16, c, th, tw)).astype(dtype)
    dxpad = np.full((c, 2 * th + 2, 2 * tw + 2), np.nan, dtype)  # overwritten, not added to
    winograd.kernels.winograd.winograd_input_grad_kernel(dv, dxpad)
    np.testing.assert_allclose(dxpad, winograd.input_grad_transform_reference(dv), **tol)


def test_the_references_are_the_matrix_sandwiches_tile_by_tile(rng):
    """One tile written out with the matrices of the module docstring, against the vectorised references."""
    bt, at = winograd.B_T, winograd.A_T
    xpad = rng.standard_normal((2, 8, 6))  # 3 x 2 tiles
    v = winograd.input_transform_reference(xpad, (3, 2)).reshape(4, 4, 2, 3, 2)
    np.testing.assert_allclose(v[:, :, 1, 2, 1], bt @ xpad[1, 4:8, 2:6] @ bt.T, rtol=1e-13)
    m = rng.standard_normal((16, 2, 3, 2))
    y = winograd.output_transform_reference(m)
    np.testing.assert_allclose(y[1, 4:6, 2:4], at @ m[:, 1, 2, 1].reshape(4, 4) @ at.T, rtol=1e-13)
    dy = rng.standard_normal((2, 6, 4))
    dm = winograd.output_grad_transform_reference(dy).reshape(4, 4, 2, 3, 2)
    np.testing.assert_allclose(dm[:, :, 0, 1, 0], at.T @ dy[0, 2:4, 0:2] @ at, rtol=1e-13)
    # the input gradient: the adjoint of the input transform (<B^T d B, dv> = <d, transform^T dv>)
    dv = rng.standard_normal((16, 2, 3, 2))
    dxpad = winograd.input_grad_transform_reference(dv)
    assert np.isclose(np.vdot(winograd.input_transform_reference(xpad, (3, 2)), dv), np.vdot(xpad, dxpad), rtol=1e-12)


def test_the_weight_transform_and_its_gradient_are_adjoints(rng):
    weight, du = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal((16, 3, 2))
    u = winograd.winograd_weight(weight)
    np.testing.assert_allclose(u.reshape(4, 4, 3, 2)[:, :, 2, 1], winograd.G @ weight[2, 1] @ winograd.G.T, rtol=1e-13)
    assert np.isclose(np.vdot(u, du), np.vdot(weight, winograd.winograd_weight_grad(du)), rtol=1e-12)


# ------------------------------------------------------------------------------ the layer and the pass
def test_use_winograd_replaces_the_3x3_stride_1_convolutions_only_and_keeps_their_parameters(rng):
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, rng=rng), nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, rng=rng),  # stride 2: stays
        nn.Conv2d(4, 4, 5, rng=rng),  # 5x5: stays
        nn.Sequential(nn.Conv2d(4, 2, 3, bias=False, rng=rng)),  # nested: replaced
    )
    keys, weight = list(model.state_dict()), model[0].weight
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    x = rng.standard_normal((2, 1, 16, 16)).astype(np.float32)
    expected = model(x)
    assert nn.use_winograd(model) is model
    assert [type(layer).__name__ for layer in (model[0], model[2], model[3], model[4][0])] == [
        "WinogradConv2d", "Conv2d", "Conv2d", "WinogradConv2d"]
    assert model[0].weight is weight and list(model.state_dict()) == keys
    assert "WinogradConv2d(1, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1); Winograd F(2x2, 3x3))" in repr(model)
    assert "bias=False; Winograd" in repr(model[4][0])
    np.testing.assert_allclose(model(x), expected, rtol=1e-4, atol=1e-5)
    # the optimizer built before still updates the layer's parameters
    model.backward(np.ones_like(expected))
    before = weight.data.copy()
    optimizer.step()
    assert not np.array_equal(weight.data, before)


def test_the_layer_alone_and_its_refusals(rng):
    conv = nn.Conv2d(2, 3, 3, rng=rng).eval()
    conv.input_grad = False
    layer = nn.use_winograd(conv)
    assert type(layer) is nn.WinogradConv2d and not layer.training and layer.input_grad is False
    with pytest.raises(ValueError, match=r"3x3 kernels with stride 1 only, got kernel_size=\(3, 3\), stride=\(2, 2\)"):
        nn.WinogradConv2d(2, 3, 3, stride=2)
    with pytest.raises(ValueError, match="expected a Conv2d with a 3x3 kernel and stride 1"):
        nn.WinogradConv2d.from_conv(nn.Conv2d(2, 3, 2))
    with pytest.raises(tinynet.ShapeError, match="expected input with 2 channels"):
        layer(np.zeros((1, 3, 5, 5), np.float32))


def test_gradcheck_of_the_layer_with_padding(rng):
    layer = nn.WinogradConv2d(2, 3, 3, padding=1, rng=rng).double()
    result = gradcheck(layer, rng.standard_normal((2, 2, 5, 6)), rng=rng)
    assert {"input", "weight", "bias"} == set(result.errors)


@given(n=st.integers(1, 3), c=st.integers(1, 3), f=st.integers(1, 3), h=st.integers(3, 9), w=st.integers(3, 9),
       pad=st.integers(0, 2), seed=st.integers(0, 2**16))
def test_any_shape_matches_the_plain_convolution_layer(n, c, f, h, w, pad, seed):
    rng = np.random.default_rng(seed)
    conv = nn.Conv2d(c, f, 3, padding=pad, rng=rng).double()
    x, dout = rng.standard_normal((n, c, h, w)), rng.standard_normal((n, f, h + 2 * pad - 2, w + 2 * pad - 2))
    expected, expected_dx = conv(x), conv.backward(dout)
    expected_grads = [p.grad.copy() for p in conv.parameters()]
    conv.zero_grad()
    layer = nn.use_winograd(conv)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(layer.backward(dout), expected_dx, rtol=1e-11, atol=1e-11)
    for p, g in zip(layer.parameters(), expected_grads):
        np.testing.assert_allclose(p.grad, g, rtol=1e-11, atol=1e-10)


def test_naimishnet_with_winograd_has_the_same_state_dict_and_outputs(rng):
    from keypoints.models import naimishnet

    plain, fast = naimishnet(96, seed=3), naimishnet(96, seed=3, winograd=True)
    assert type(fast.features[4]).__name__ == "WinogradConv2d" and type(plain.features[4]).__name__ == "Conv2d"
    assert sum(type(layer).__name__ == "WinogradConv2d" for layer in fast.modules()) == 1
    state = plain.state_dict()
    assert list(fast.state_dict()) == list(state)
    for key, value in fast.state_dict().items():
        np.testing.assert_array_equal(value, state[key])
    x = rng.random((3, 1, 96, 96), dtype=np.float32)
    np.testing.assert_allclose(fast.train()(x), plain.train()(x), rtol=1e-3, atol=1e-4)


def test_pytorch_parity_of_the_layer(rng):
    torch = pytest.importorskip("torch")
    theirs = torch.nn.Conv2d(3, 5, 3, padding=(1, 2), dtype=torch.float64)
    ours = nn.WinogradConv2d(3, 5, 3, padding=(1, 2)).double()
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = rng.standard_normal((4, 3, 9, 8))
    out = ours(x)
    dout = rng.standard_normal(out.shape)
    dx = ours.backward(dout)
    xt = torch.tensor(x, requires_grad=True)
    theirs(xt).backward(torch.tensor(dout))
    np.testing.assert_allclose(out, theirs(torch.tensor(x)).detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=1e-10, atol=1e-12)
