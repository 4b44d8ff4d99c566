"""The Winograd F(2x2, 3x3) and F(4x4, 3x3) convolutions: the functional pair against the plain convolution written
from its definition, each Numba kernel against its NumPy reference, the layer (``WinogradConv2d``) and the pass that
puts it in (``use_winograd``), and the networks built with it. The same bits on one thread and on several:
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
TILE = pytest.mark.parametrize("tile", [2, 4], ids=["F2x2", "F4x4"])


def _case(rng, n, c, f, h, w, padding, dtype=np.float64):
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = rng.standard_normal((f, c, 3, 3)).astype(dtype)
    bias = rng.standard_normal(f).astype(dtype)
    return x, weight, bias


# ------------------------------------------------------------------------------ the functional pair
@ENGINES
@TILE
@pytest.mark.parametrize(
    "n, c, f, h, w, padding",
    [
        (3, 4, 5, 10, 10, (0, 0)),  # even output, the input itself read in place
        (2, 3, 4, 9, 7, (1, 1)),  # odd output, padded
        (2, 3, 2, 6, 5, (2, 1)),  # padding differing per axis
        (1, 2, 3, 3, 3, (0, 0)),  # one output pixel: one tile, three quarters of it outside
        (17, 3, 2, 8, 9, (0, 0)),  # more images than IMAGES_PER_SUM: several ranges of the weight-gradient sum
        (2, 2, 3, 26, 27, (0, 1)),  # 12 x 13 = 156 tiles of 2x2: more than TILES_PER_PRODUCT, dU in two products
        (1, 2, 3, 50, 47, (0, 0)),  # 12 x 12 = 144 tiles of 4x4, the last row and column overhanging the output
    ],
)
def test_forward_and_backward_equal_the_convolution_from_its_definition(numba_enabled, tile, n, c, f, h, w, padding,
                                                                        rng):
    x, weight, bias = _case(rng, n, c, f, h, w, padding)
    with backends.numba.flags(enabled=numba_enabled):
        out, cache = conv2d_winograd_forward(x, weight, bias, padding, tile)
        expected = conv2d_forward_reference(x, weight, bias, (1, 1), padding)
        assert out.shape == expected.shape
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
        dout = rng.standard_normal(out.shape)
        dx, dweight, dbias = conv2d_winograd_backward(dout, cache)
    dx_ref, dweight_ref, dbias_ref = conv2d_backward_reference(dout, x, weight, True, (1, 1), padding)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dweight, dweight_ref, rtol=1e-12, atol=1e-11)
    np.testing.assert_allclose(dbias, dbias_ref, rtol=1e-12, atol=1e-12)


@TILE
def test_without_bias_and_without_the_input_gradient(tile, rng):
    x, weight, _ = _case(rng, 2, 3, 4, 8, 8, (1, 1))
    out, cache = conv2d_winograd_forward(x, weight, None, 1, tile)
    np.testing.assert_allclose(out, conv2d_forward_reference(x, weight, None, (1, 1), (1, 1)), rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    dx, dweight, dbias = conv2d_winograd_backward(dout, cache, need_dx=False)
    assert dx is None and dbias is None
    np.testing.assert_allclose(dweight, conv2d_backward_reference(dout, x, weight, False, (1, 1), (1, 1))[1],
                               rtol=1e-12, atol=1e-11)


@pytest.mark.parametrize("tile, bound, times_im2col", [(2, 1e-5, 20), (4, 2e-5, 100)], ids=["F2x2", "F4x4"])
def test_float32_stays_within_rounding_of_im2col(tile, bound, times_im2col, rng):
    """NaimishNet-96's second convolution in float32: the transforms' sums cost a few bits, no more (F(4x4, 3x3)'s
    larger coefficients a few more)."""
    x, weight, bias = _case(rng, 4, 32, 64, 46, 46, (0, 0), np.float32)
    weight *= 0.1
    out, _ = conv2d_winograd_forward(x, weight, bias, tile=tile)
    exact = conv2d_forward_reference(x.astype(np.float64), weight.astype(np.float64), bias.astype(np.float64))
    scale = np.abs(exact).max()
    im2col_error = np.abs(conv2d_forward(x, weight, bias)[0] - exact).max() / scale
    winograd_error = np.abs(out - exact).max() / scale
    assert winograd_error < bound
    assert winograd_error < times_im2col * im2col_error


@TILE
def test_an_empty_batch(tile, rng):
    x, weight, bias = _case(rng, 0, 2, 3, 6, 6, (0, 0))
    out, cache = conv2d_winograd_forward(x, weight, bias, tile=tile)
    assert out.shape == (0, 3, 4, 4)
    dx, dweight, dbias = conv2d_winograd_backward(np.zeros(out.shape), cache)
    assert dx.shape == x.shape and not dweight.any() and not dbias.any()


def test_refuses_what_it_does_not_compute(rng):
    x = rng.standard_normal((1, 2, 6, 6))
    with pytest.raises(tinynet.ShapeError, match=r"expected a weight of shape \(F, C, 3, 3\), got \(3, 2, 5, 5\)"):
        conv2d_winograd_forward(x, rng.standard_normal((3, 2, 5, 5)), None)
    with pytest.raises(tinynet.ShapeError, match="smaller than the kernel 3x3"):
        conv2d_winograd_forward(rng.standard_normal((1, 2, 2, 6)), rng.standard_normal((3, 2, 3, 3)), None)
    for tile in (3, True, "4"):
        with pytest.raises(ValueError, match=r"tile must be one of \[2, 4\]"):
            conv2d_winograd_forward(x, rng.standard_normal((3, 2, 3, 3)), None, tile=tile)
    with pytest.raises(ValueError, match="tile must be one of"):
        nn.WinogradConv2d(2, 3, 3, tile=6)
    with pytest.raises(ValueError, match="tile must be one of"):
        nn.use_winograd(nn.Conv2d(2, 3, 3), tile=8)


# ------------------------------------------------------------------------------ each kernel against its reference
@TILE
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tiles", [(1, 1), (3, 5), (22, 22)])
def test_each_kernel_equals_its_reference(tile, dtype, tiles, rng):
    (th, tw), spec = tiles, winograd.TILES[tile]
    t, p = spec.m, spec.alpha ** 2
    c, f = 3, 4

    def close(actual, expected):  # within rounding of the output's scale (F(4x4)'s sums cancel terms up to 25 times
        # an input, so a small output can differ by more than its own rounding)
        eps = 2e-6 if dtype == np.float32 else 1e-14
        np.testing.assert_allclose(actual, expected, rtol=0, atol=eps * np.abs(expected).max())

    xpad = rng.standard_normal((c, t * th + 2, t * tw + 2)).astype(dtype)
    v = np.empty((p, c, th, tw), dtype)
    spec.kernel("input")(xpad, v)
    close(v, winograd.input_transform_reference(xpad, tiles, spec))

    m = rng.standard_normal((p, f, th, tw)).astype(dtype)
    bias = rng.standard_normal(f).astype(dtype)
    y = np.empty((f, t * th, t * tw), dtype)
    spec.kernel("output")(m, bias, y)
    close(y, winograd.output_transform_reference(m, spec) + bias[:, None, None])

    dy = rng.standard_normal((f, t * th, t * tw)).astype(dtype)
    dm = np.empty((p, f, th, tw), dtype)
    spec.kernel("output_grad")(dy, dm)
    close(dm, winograd.output_grad_transform_reference(dy, spec))

    dv = rng.standard_normal((p, c, th, tw)).astype(dtype)
    dxpad = np.full((c, t * th + 2, t * tw + 2), np.nan, dtype)  # overwritten, not added to
    spec.kernel("input_grad")(dv, dxpad)
    close(dxpad, winograd.input_grad_transform_reference(dv, spec))


@TILE
def test_the_references_are_the_matrix_sandwiches_tile_by_tile(tile, rng):
    """One tile written out with the matrices of the module docstring, against the vectorised references."""
    spec = winograd.TILES[tile]
    bt, at, t, a = spec.b_t, spec.a_t, spec.m, spec.alpha
    xpad = rng.standard_normal((2, 3 * t + 2, 2 * t + 2))  # 3 x 2 tiles
    v = winograd.input_transform_reference(xpad, (3, 2), spec).reshape(a, a, 2, 3, 2)
    np.testing.assert_allclose(v[:, :, 1, 2, 1], bt @ xpad[1, 2 * t : 2 * t + a, t : t + a] @ bt.T, rtol=1e-13)
    m = rng.standard_normal((a * a, 2, 3, 2))
    y = winograd.output_transform_reference(m, spec)
    np.testing.assert_allclose(y[1, 2 * t : 3 * t, t : 2 * t], at @ m[:, 1, 2, 1].reshape(a, a) @ at.T, rtol=1e-13)
    dy = rng.standard_normal((2, 3 * t, 2 * t))
    dm = winograd.output_grad_transform_reference(dy, spec).reshape(a, a, 2, 3, 2)
    np.testing.assert_allclose(dm[:, :, 0, 1, 0], at.T @ dy[0, t : 2 * t, 0:t] @ at, rtol=1e-13)
    # the input gradient: the adjoint of the input transform (<B^T d B, dv> = <d, transform^T dv>)
    dv = rng.standard_normal((a * a, 2, 3, 2))
    dxpad = winograd.input_grad_transform_reference(dv, spec)
    assert np.isclose(np.vdot(winograd.input_transform_reference(xpad, (3, 2), spec), dv), np.vdot(xpad, dxpad),
                      rtol=1e-12)


def test_f4x4_is_winograds_minimal_filtering_in_one_dimension(rng):
    """``A^T [(G g) * (B^T d)]`` is the 4 outputs of the 3-tap correlation of 6 inputs: the identity the 2-D
    sandwiches are built from (for F(2x2, 3x3) the tile-by-tile test above, with the convolution tests, does it)."""
    spec = winograd.TILES[4]
    d, g = rng.standard_normal(6), rng.standard_normal(3)
    np.testing.assert_allclose(spec.a_t @ ((spec.g @ g) * (spec.b_t @ d)), [d[i : i + 3] @ g for i in range(4)],
                               rtol=1e-12)


@TILE
def test_the_weight_transform_and_its_gradient_are_adjoints(tile, rng):
    spec = winograd.TILES[tile]
    a = spec.alpha
    weight, du = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal((a * a, 3, 2))
    u = winograd.winograd_weight(weight, tile)
    np.testing.assert_allclose(u.reshape(a, a, 3, 2)[:, :, 2, 1], spec.g @ weight[2, 1] @ spec.g.T, rtol=1e-13)
    assert np.isclose(np.vdot(u, du), np.vdot(weight, winograd.winograd_weight_grad(du, tile)), rtol=1e-12)


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
    assert "Winograd F(4x4, 3x3)" in repr(nn.use_winograd(nn.Conv2d(2, 3, 3, rng=rng), tile=4))
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


@TILE
def test_gradcheck_of_the_layer_with_padding(tile, rng):
    layer = nn.WinogradConv2d(2, 3, 3, padding=1, rng=rng, tile=tile).double()
    result = gradcheck(layer, rng.standard_normal((2, 2, 5, 6)), rng=rng)
    assert {"input", "weight", "bias"} == set(result.errors)


@given(n=st.integers(1, 3), c=st.integers(1, 3), f=st.integers(1, 3), h=st.integers(3, 9), w=st.integers(3, 9),
       pad=st.integers(0, 2), tile=st.sampled_from([2, 4]), seed=st.integers(0, 2**16))
def test_any_shape_matches_the_plain_convolution_layer(n, c, f, h, w, pad, tile, seed):
    rng = np.random.default_rng(seed)
    conv = nn.Conv2d(c, f, 3, padding=pad, rng=rng).double()
    x, dout = rng.standard_normal((n, c, h, w)), rng.standard_normal((n, f, h + 2 * pad - 2, w + 2 * pad - 2))
    expected, expected_dx = conv(x), conv.backward(dout)
    expected_grads = [p.grad.copy() for p in conv.parameters()]
    conv.zero_grad()
    layer = nn.use_winograd(conv, tile)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(layer.backward(dout), expected_dx, rtol=1e-11, atol=1e-11)
    for p, g in zip(layer.parameters(), expected_grads):
        np.testing.assert_allclose(p.grad, g, rtol=1e-11, atol=1e-10)


def test_naimishnet_with_winograd_has_the_same_state_dict_and_outputs(rng):
    from keypoints.models import naimishnet

    plain, fast = naimishnet(96, seed=3), naimishnet(96, seed=3, winograd=True)
    assert type(fast.features[4]).__name__ == "WinogradConv2d" and type(plain.features[4]).__name__ == "Conv2d"
    assert fast.features[4].tile == 4 and naimishnet(96, winograd=True, winograd_tile=2).features[4].tile == 2
    assert sum(type(layer).__name__ == "WinogradConv2d" for layer in fast.modules()) == 1
    state = plain.state_dict()
    assert list(fast.state_dict()) == list(state)
    for key, value in fast.state_dict().items():
        np.testing.assert_array_equal(value, state[key])
    x = rng.random((3, 1, 96, 96), dtype=np.float32)
    np.testing.assert_allclose(fast.train()(x), plain.train()(x), rtol=1e-3, atol=1e-4)


@TILE
def test_pytorch_parity_of_the_layer(tile, rng):
    torch = pytest.importorskip("torch")
    theirs = torch.nn.Conv2d(3, 5, 3, padding=(1, 2), dtype=torch.float64)
    ours = nn.WinogradConv2d(3, 5, 3, padding=(1, 2), tile=tile).double()
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
