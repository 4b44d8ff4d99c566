"""Conv2d and MaxPool2d: fast path vs naive reference, finite differences, hygiene, errors, PyTorch parity.

The naive references (``conv2d_forward_reference`` / ``conv2d_backward_reference``) loop over kernel
offsets with ``einsum`` and share no code with the im2col path; they are themselves pinned by a
hand-computed example and, when PyTorch is installed, by ``torch.nn.functional.conv2d``.
"""
from __future__ import annotations

import contextlib
import threading
import tracemalloc

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import tinynet.functional.conv as conv_module
from tinynet._checks import ShapeError
from tinynet._grad_mode import no_grad
from tinynet.blas import get_num_threads, set_num_threads
from tinynet.functional.conv import (
    Conv2dCache,
    conv2d_backward,
    conv2d_backward_reference,
    conv2d_forward,
    conv2d_forward_reference,
)
from tinynet.functional.pooling import MaxPool2dCache, maxpool2d_backward, maxpool2d_forward, maxpool2d_forward_reference
from tinynet.gradcheck import gradcheck, numerical_gradient, relative_error
from tinynet.nn.conv import Conv2d
from tinynet.nn.pooling import MaxPool2d

seeds = st.integers(0, 2**32 - 1)


@st.composite
def conv_case(draw):
    n, c, f = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    assume(h + 2 * padding[0] >= kernel[0] and w + 2 * padding[1] >= kernel[1])
    return (n, c, h, w), (f, c) + kernel, stride, padding


def tolerance(dtype) -> float:
    return 2e-5 if dtype == np.float32 else 1e-12


# --------------------------------------------------------------------------- the naive reference
def test_reference_hand_computed():
    # 1 channel, 3x3 image, 2x2 kernel [[1, 0], [0, -1]]: out = x[i, j] - x[i+1, j+1], plus bias 10
    x = np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3) ** 2  # 0 1 4 / 9 16 25 / 36 49 64
    weight = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])
    out = conv2d_forward_reference(x, weight, np.array([10.0]))
    np.testing.assert_array_equal(out, [[[[10 - 16, 11 - 25], [19 - 49, 26 - 64]]]])
    dout = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    dx, dweight, dbias = conv2d_backward_reference(dout, x, weight, True)
    # dx: +dout at the top-left tap, -dout at the bottom-right tap
    np.testing.assert_array_equal(dx[0, 0], [[1, 2, 0], [3, 3, -2], [0, -3, -4]])
    # dweight[i, j] = sum over windows of dout * x[oh + i, ow + j]
    expected_dw = [[1 * 0 + 2 * 1 + 3 * 9 + 4 * 16, 1 * 1 + 2 * 4 + 3 * 16 + 4 * 25],
                   [1 * 9 + 2 * 16 + 3 * 36 + 4 * 49, 1 * 16 + 2 * 25 + 3 * 49 + 4 * 64]]
    np.testing.assert_array_equal(dweight[0, 0], expected_dw)
    assert dbias.tolist() == [10.0]


# --------------------------------------------------------------------------- fast vs reference
@given(case=conv_case(), bias=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]), seed=seeds)
def test_conv_fast_matches_reference(case, bias, dtype, seed):
    x_shape, w_shape, stride, padding = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    weight = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if bias else None
    out, cache = conv2d_forward(x, weight, b, stride, padding)
    assert out.dtype == dtype and out.flags.c_contiguous
    tol = tolerance(dtype)
    ref = conv2d_forward_reference(x.astype(np.float64), weight.astype(np.float64), None if b is None else b.astype(np.float64), stride, padding)
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol * 10)

    dout = rng.standard_normal(out.shape).astype(dtype)
    dx, dweight, dbias = conv2d_backward(dout, cache)
    ref_dx, ref_dw, ref_db = conv2d_backward_reference(dout.astype(np.float64), x.astype(np.float64), weight.astype(np.float64), bias, stride, padding)
    for got, want in ((dx, ref_dx), (dweight, ref_dw)):
        assert got.dtype == dtype and got.flags.c_contiguous
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 10)
    if bias:
        assert dbias.dtype == dtype
        np.testing.assert_allclose(dbias, ref_db, rtol=tol, atol=tol * 10)
    else:
        assert dbias is None


@pytest.mark.parametrize("n, c, f, hw", [(2, 3, 4, (5, 7)), (1, 1, 1, (1, 1)), (3, 5, 2, (4, 4))])
def test_pointwise_conv_skips_im2col_and_matches_reference(n, c, f, hw, rng, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a 1x1 stride-1 convolution must not call im2col")

    monkeypatch.setattr(conv_module, "im2col", forbidden)
    x, weight, bias = rng.standard_normal((n, c) + hw), rng.standard_normal((f, c, 1, 1)), rng.standard_normal(f)
    out, cache = conv2d_forward(x, weight, bias)
    np.testing.assert_allclose(out, conv2d_forward_reference(x, weight, bias), rtol=1e-12)
    dout = rng.standard_normal(out.shape)
    for got, want in zip(conv2d_backward(dout, cache), conv2d_backward_reference(dout, x, weight, True)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, f, hw, kernel, bias", [
    (2, 3, (5, 7), (3, 2), True), (1, 1, (1, 1), (1, 1), False), (3, 4, (40, 37), (4, 4), True),  # 40x37: several blocks
    (2, 2, (23, 30), (5, 5), False), (1, 2, (9, 9), (3, 3), True),
])
def test_single_channel_conv_skips_im2col_and_matches_reference(n, f, hw, kernel, bias, dtype, rng, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a 1-channel stride-1 convolution must not call im2col/col2im")

    monkeypatch.setattr(conv_module, "im2col", forbidden)
    monkeypatch.setattr(conv_module, "col2im", forbidden)
    x = rng.standard_normal((n, 1) + hw).astype(dtype)
    weight = rng.standard_normal((f, 1) + kernel).astype(dtype)
    b = rng.standard_normal(f).astype(dtype) if bias else None
    out, cache = conv2d_forward(x, weight, b)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, conv2d_forward_reference(x, weight, b), **tol)
    dout = rng.standard_normal(out.shape).astype(dtype)
    for got, want in zip(conv2d_backward(dout, cache), conv2d_backward_reference(dout, x, weight, bias)):
        if want is None:
            assert got is None
        else:
            assert got.dtype == dtype
            np.testing.assert_allclose(got, want, **tol)


@pytest.mark.parametrize("recording", [True, False])
def test_columns_are_made_one_image_at_a_time(recording, rng, monkeypatch):
    # the batch's columns are never made whole: forward makes each image's once, backward once more (both of
    # its products read them); with gradients recorded the images run on tinynet's threads, under no_grad in
    # order on this thread
    n, c, f, h, w, k = 7, 2, 3, 6, 5, 3
    stride, padding = (1, 2), (1, 1)
    calls = []
    real_im2col = conv_module.im2col

    def spy(x, *args, **kwargs):
        calls.append((x.shape[0], kwargs["out"].shape))
        return real_im2col(x, *args, **kwargs)

    monkeypatch.setattr(conv_module, "im2col", spy)
    x, weight, bias = rng.standard_normal((n, c, h, w)), rng.standard_normal((f, c, k, k)), rng.standard_normal(f)
    one_image = (1, c * k * k + 1, 6 * 3)  # + 1: the row of ones that carries the bias; OH = 6, OW = 3
    grad_mode = contextlib.nullcontext if recording else no_grad
    with grad_mode():
        out, cache = conv2d_forward(x, weight, bias, stride, padding)
    assert calls == [(1, one_image)] * n
    np.testing.assert_allclose(out, conv2d_forward_reference(x, weight, bias, stride, padding), rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    calls.clear()
    with grad_mode():
        grads = conv2d_backward(dout, cache)
    assert calls == [(1, one_image)] * n
    for got, want in zip(grads, conv2d_backward_reference(dout, x, weight, True, stride, padding)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_an_image_whose_columns_are_shared_out_inside_a_piece(rng):
    # one image's columns here are 144 x 9604 elements, above the size from which im2col's kernel shares its
    # planes out over the threads: inside a convolution's piece (already on one of those threads) it runs them
    # itself (a pool thread waiting for its own pool would hang)
    x = rng.standard_normal((3, 16, 100, 100)).astype(np.float32)
    weight = rng.standard_normal((4, 16, 3, 3)).astype(np.float32)
    results = []

    def convolve():  # in a thread of its own, so that a hang fails the test instead of stopping the suite
        out, cache = conv2d_forward(x, weight, None)
        results.append((out, conv2d_backward(np.ones_like(out), cache)))

    previous = get_num_threads()
    set_num_threads(2)
    try:
        worker = threading.Thread(target=convolve, daemon=True)
        worker.start()
        worker.join(timeout=120)
    finally:
        set_num_threads(previous)
    assert results, "the convolution did not finish in 120 s"
    out, grads = results[0]
    np.testing.assert_allclose(out, conv2d_forward_reference(x, weight, None), rtol=1e-4, atol=1e-4)
    for got, want in zip(grads, conv2d_backward_reference(np.ones_like(out), x, weight, False)):
        if want is not None:
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-2)


def test_forward_memory_is_one_images_columns_per_thread(rng):
    # 16 images whose columns would take 16 * 36 * 62*62 * 4 bytes ~ 8.9 MB in one piece
    x = rng.standard_normal((16, 4, 64, 64)).astype(np.float32)
    weight = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    conv2d_forward(x, weight, None)  # compile outside the measurement
    tracemalloc.start()
    out, cache = conv2d_forward(x, weight, None)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    one_image, full_cols = 36 * 62 * 62 * 4, 16 * 36 * 62 * 62 * 4
    assert peak < out.nbytes + get_num_threads() * one_image + 2**18, (peak, full_cols)
    assert peak < full_cols


def test_conv_cache_keeps_only_what_backward_needs(rng):
    x, weight = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    _, cache = conv2d_forward(x, weight, None, 2, 1)
    assert isinstance(cache, Conv2dCache)
    assert cache.x is x and cache.weight is weight  # references, not copies
    assert cache.stride == (2, 2) and cache.padding == (1, 1) and cache.has_bias is False


def test_functional_conv_accepts_non_contiguous_input(rng):
    x = rng.standard_normal((2, 6, 7, 3)).transpose(0, 3, 2, 1)  # (2, 3, 7, 6), not C-contiguous
    weight, bias = rng.standard_normal((4, 3, 2, 3)), rng.standard_normal(4)
    out, cache = conv2d_forward(x, weight, bias, (2, 1), (1, 0))
    np.testing.assert_allclose(out, conv2d_forward_reference(x, weight, bias, (2, 1), (1, 0)), rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out.shape)[..., ::-1]  # non-contiguous upstream gradient
    for got, want in zip(conv2d_backward(dout, cache), conv2d_backward_reference(dout, x, weight, True, (2, 1), (1, 0))):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- finite differences
@pytest.mark.parametrize(
    "kernel, stride, padding, bias",
    [(3, 1, 0, True), (3, 2, 1, True), ((2, 3), (2, 1), (1, 0), False), (1, 1, 0, True), (4, 3, 2, True)],
)
def test_conv2d_gradcheck(kernel, stride, padding, bias, rng):
    layer = Conv2d(2, 3, kernel, stride, padding, bias=bias, rng=rng, dtype=np.float64)
    x = rng.standard_normal((2, 2, 5, 6))
    result = gradcheck(layer, x, rng=rng)
    expected = {"input", "weight"} | ({"bias"} if bias else set())
    assert set(result.errors) == expected and result.passed, str(result)


@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 1, 1), ((3, 2), (1, 2), (1, 0)), (3, 2, 1)])
def test_maxpool2d_gradcheck(kernel, stride, padding, rng):
    # distinct values 0.1 apart: no two within eps of each other, so every max is a clean winner
    shape = (2, 2, 6, 5)
    x = rng.permutation(np.prod(shape)).reshape(shape) * 0.1
    result = gradcheck(MaxPool2d(kernel, stride, padding), x, rng=rng)
    assert set(result.errors) == {"input"} and result.passed, str(result)


def test_functional_gradients_by_finite_differences(rng):
    # the functional pair on its own (as a lesson would use it), stride and padding both non-trivial
    x, weight, bias = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((3, 2, 3, 2)), rng.standard_normal(3)
    out, cache = conv2d_forward(x, weight, bias, (2, 1), (1, 1))
    dout = rng.standard_normal(out.shape)
    dx, dweight, dbias = conv2d_backward(dout, cache)
    f = lambda: conv2d_forward(x, weight, bias, (2, 1), (1, 1))[0]  # noqa: E731
    assert relative_error(dx, numerical_gradient(f, x, dout)) < 1e-8
    assert relative_error(dweight, numerical_gradient(f, weight, dout)) < 1e-8
    assert relative_error(dbias, numerical_gradient(f, bias, dout)) < 1e-8


# --------------------------------------------------------------------------- hygiene
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel, stride, padding", [(3, 1, 1), (1, 1, 0), (2, 2, 0)])
def test_conv2d_hygiene(dtype, kernel, stride, padding, rng):
    layer = Conv2d(3, 4, kernel, stride, padding, rng=rng, dtype=dtype)
    x = rng.standard_normal((2, 3, 6, 6)).astype(dtype)
    x_before = x.copy()
    out = layer(x)
    assert out.dtype == dtype and out.flags.c_contiguous
    dout = rng.standard_normal(out.shape).astype(dtype)
    dout_before = dout.copy()
    dx = layer.backward(dout)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(dout, dout_before)
    assert dx.dtype == dtype and dx.shape == x.shape
    assert not np.shares_memory(dx, x) and not np.shares_memory(dx, dout)
    assert layer.weight.grad.dtype == dtype and layer.bias.grad.dtype == dtype
    assert not np.shares_memory(layer.weight.grad, layer.weight.data)
    once_w, once_b = layer.weight.grad.copy(), layer.bias.grad.copy()
    dx2 = layer.backward(dout)  # gradients accumulate, exactly as a second loss.backward() in PyTorch
    np.testing.assert_array_equal(layer.weight.grad, 2 * once_w)
    np.testing.assert_array_equal(layer.bias.grad, 2 * once_b)
    np.testing.assert_array_equal(dx2, dx)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_maxpool2d_hygiene(dtype, rng):
    pool = MaxPool2d(3, stride=2, padding=1)
    x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
    x_before = x.copy()
    out = pool(x)
    assert out.dtype == dtype and out.shape == (2, 3, 4, 3)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx = pool.backward(dout)
    np.testing.assert_array_equal(x, x_before)
    assert dx.dtype == dtype and not np.shares_memory(dx, x)
    # every upstream gradient lands somewhere: the total is preserved
    assert dx.sum() == pytest.approx(dout.sum(), rel=1e-5)
    np.testing.assert_array_equal(pool.backward(dout), dx)
    assert isinstance(pool._cache, MaxPool2dCache)


def test_no_grad_keeps_no_cache(rng):
    layer, pool = Conv2d(1, 2, 3, rng=rng), MaxPool2d(2)
    x = rng.standard_normal((1, 1, 6, 6)).astype(np.float32)
    with no_grad():
        out = pool(layer(x))
    assert out.shape == (1, 2, 2, 2)
    for module, shape in ((layer, (1, 2, 4, 4)), (pool, out.shape)):
        with pytest.raises(RuntimeError, match="backward\\(\\) called before forward\\(\\)"):
            module.backward(np.zeros(shape, dtype=np.float32))


# --------------------------------------------------------------------------- errors
def test_conv2d_errors(rng):
    layer = Conv2d(1, 32, 5, rng=rng)
    name = r"Conv2d\(1, 32, kernel_size=\(5, 5\), stride=\(1, 1\)\)"
    with pytest.raises(RuntimeError, match=name + ": backward\\(\\) called before forward"):
        layer.backward(np.zeros((1, 32, 1, 1), dtype=np.float32))
    with pytest.raises(ShapeError, match=name + r": expected a 4-D input of shape \(N, C, H, W\), got shape \(1, 8, 8\)"):
        layer(np.zeros((1, 8, 8), dtype=np.float32))
    with pytest.raises(ShapeError, match=name + r": expected input with 1 channels"):
        layer(np.zeros((1, 3, 8, 8), dtype=np.float32))
    with pytest.raises(ShapeError, match=name + ": input of spatial size 3x3 \\(padding 0\\) is smaller than the kernel 5x5"):
        layer(np.zeros((1, 1, 3, 3), dtype=np.float32))
    with pytest.raises(TypeError, match=name + ": expected input of dtype float32 or float64, got int64"):
        layer(np.zeros((1, 1, 8, 8), dtype=np.int64))
    with pytest.raises(TypeError, match=name + ": input dtype float64 does not match weight dtype float32"):
        layer(np.zeros((1, 1, 8, 8), dtype=np.float64))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        layer([[[[0.0]]]])
    out = layer(np.zeros((2, 1, 8, 8), dtype=np.float32))
    with pytest.raises(ShapeError, match=name + r": expected dout of shape \(2, 32, 4, 4\)"):
        layer.backward(np.zeros((2, 32, 4, 5), dtype=np.float32))
    with pytest.raises(TypeError, match=name + ": dout dtype float64 does not match weight dtype float32"):
        layer.backward(np.zeros(out.shape))
    # padding makes a small input acceptable, and a non-square padding is named as a pair
    assert Conv2d(1, 2, 5, padding=1, rng=rng)(np.zeros((1, 1, 3, 3), dtype=np.float32)).shape == (1, 2, 1, 1)
    with pytest.raises(ShapeError, match=r"padding \(1, 0\)\) is smaller than the kernel 3x3"):
        Conv2d(1, 2, 3, padding=(1, 0), rng=rng)(np.zeros((1, 1, 2, 2), dtype=np.float32))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(in_channels=0, out_channels=2, kernel_size=3), ValueError, "must be positive"),
        (dict(in_channels=1, out_channels=2, kernel_size=0), ValueError, "kernel_size must be positive"),
        (dict(in_channels=1, out_channels=2, kernel_size=3, stride=0), ValueError, "stride must be positive"),
        (dict(in_channels=1, out_channels=2, kernel_size=3, padding=-1), ValueError, "padding must be non-negative"),
        (dict(in_channels=1, out_channels=2, kernel_size=2.5), TypeError, "kernel_size must be an int or a pair"),
    ],
)
def test_conv2d_constructor_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        Conv2d(**kwargs)


def test_maxpool2d_errors():
    with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=2, stride=2, padding=2\): padding must be"):
        MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match="stride must be positive"):
        MaxPool2d(2, stride=0)
    pool = MaxPool2d(3, stride=1)
    name = r"MaxPool2d\(kernel_size=3, stride=1, padding=0\)"
    with pytest.raises(RuntimeError, match=name + ": backward\\(\\) called before forward"):
        pool.backward(np.zeros((1, 1, 1, 1)))
    with pytest.raises(ShapeError, match=name + ": input of spatial size 2x5 \\(padding 0\\) is smaller than the kernel 3x3"):
        pool(np.zeros((1, 1, 2, 5)))
    with pytest.raises(ShapeError, match=name + ": expected a 4-D input"):
        pool(np.zeros((5, 5)))
    with pytest.raises(TypeError, match=name + ": expected input of dtype float32 or float64, got int32"):
        pool(np.zeros((1, 1, 5, 5), dtype=np.int32))
    pool(np.zeros((1, 1, 5, 5)))
    with pytest.raises(ShapeError, match=name + r": expected dout of shape \(1, 1, 3, 3\)"):
        pool.backward(np.zeros((1, 1, 2, 3)))


# --------------------------------------------------------------------------- module basics
def test_conv2d_attributes_and_init(rng):
    layer = Conv2d(3, 8, (3, 2), stride=2, padding=(1, 0), rng=np.random.default_rng(5))
    assert layer.kernel_size == (3, 2) and layer.stride == (2, 2) and layer.padding == (1, 0)
    assert layer.weight.shape == (8, 3, 3, 2) and layer.bias.shape == (8,)
    assert layer.weight.dtype == np.float32
    bound = 1 / np.sqrt(3 * 3 * 2)  # PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert np.abs(layer.weight.data).max() <= bound and np.abs(layer.bias.data).max() <= bound
    assert np.abs(layer.weight.data).max() > 0.8 * bound  # really spread over the range
    again = Conv2d(3, 8, (3, 2), stride=2, padding=(1, 0), rng=np.random.default_rng(5))
    np.testing.assert_array_equal(layer.weight.data, again.weight.data)  # the rng decides everything
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]
    no_bias = Conv2d(3, 8, 3, bias=False, rng=rng)
    assert no_bias.bias is None and [name for name, _ in no_bias.named_parameters()] == ["weight"]


def test_maxpool2d_attributes():
    pool = MaxPool2d(3)
    assert pool.kernel_size == 3 and pool.stride == 3 and pool.padding == 0
    assert list(pool.parameters()) == []
    assert repr(MaxPool2d((2, 3), stride=1, padding=(1, 1))) == "MaxPool2d(kernel_size=(2, 3), stride=1, padding=(1, 1))"


# --------------------------------------------------------------------------- PyTorch parity
@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((1, 32, 4), {}),
        ((3, 8, (3, 2)), dict(stride=2, padding=(1, 0))),
        ((2, 4, 3), dict(padding=1, bias=False)),
        ((4, 2, 1), dict(stride=(1, 2))),
    ],
)
def test_conv2d_torch_parity(args, kwargs, rng):
    torch = pytest.importorskip("torch")
    ours = Conv2d(*args, **kwargs, rng=rng, dtype=np.float64)
    theirs = torch.nn.Conv2d(*args, **kwargs).double()
    assert repr(ours) == repr(theirs)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(ours.weight.data))
        if ours.bias is not None:
            theirs.bias.copy_(torch.from_numpy(ours.bias.data))
    x = rng.standard_normal((3, args[0], 9, 8))
    xt = torch.tensor(x, requires_grad=True)
    out_t = theirs(xt)
    out = ours(x)
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    out_t.backward(torch.from_numpy(dout))
    dx = ours.backward(dout)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-10, atol=1e-12)
    if ours.bias is not None:
        np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_conv2d_torch_parity_float32_keypoint_shapes(rng):
    torch = pytest.importorskip("torch")
    for c, f, k, size in [(1, 32, 4, 24), (32, 64, 3, 11), (64, 128, 2, 5), (128, 256, 1, 3)]:
        ours = Conv2d(c, f, k, rng=rng)
        x = rng.standard_normal((4, c, size, size)).astype(np.float32)
        out = ours(x)
        expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(ours.weight.data), torch.from_numpy(ours.bias.data))
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, expected.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kernel, stride, padding", [(2, None, 0), (3, 1, 1), ((3, 2), (2, 1), (1, 0)), (3, 2, 1)])
def test_maxpool2d_torch_parity(kernel, stride, padding, rng):
    torch = pytest.importorskip("torch")
    ours = MaxPool2d(kernel, stride, padding)
    theirs = torch.nn.MaxPool2d(kernel, stride, padding)
    x = rng.standard_normal((2, 3, 9, 8))
    x[0, 0, 1:3, 1:3] = np.nan  # NaN propagates as in PyTorch
    x[1, 2] = np.round(x[1, 2])  # ties: the first maximum wins in both
    xt = torch.tensor(x, requires_grad=True)
    out_t, idx_t = torch.nn.functional.max_pool2d(xt, kernel, stride, padding, return_indices=True)
    out = ours(x)
    np.testing.assert_array_equal(out, out_t.detach().numpy())
    np.testing.assert_array_equal(ours._cache.argmax, idx_t.numpy())
    np.testing.assert_array_equal(out, theirs(torch.from_numpy(x)).numpy())
    dout = rng.standard_normal(out.shape)
    out_t.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(ours.backward(dout), xt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_functional_maxpool_matches_reference(rng):
    x = rng.standard_normal((2, 3, 7, 7)).astype(np.float32)
    out, cache = maxpool2d_forward(x, 3, 2, 1)
    ref_out, ref_argmax = maxpool2d_forward_reference(x, (3, 3), (2, 2), (1, 1))
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(cache.argmax, ref_argmax)
    assert cache.x_shape == x.shape
    dx = maxpool2d_backward(np.ones_like(out), cache)
    assert dx.sum() == out.size and dx.dtype == np.float32


def test_conv_without_input_grad_returns_none_and_the_same_parameter_gradients():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 7, 7))
    dout = rng.standard_normal((2, 4, 5, 5))
    full = Conv2d(3, 4, 3, rng=np.random.default_rng(0), dtype=np.float64)
    lean = Conv2d(3, 4, 3, rng=np.random.default_rng(0), dtype=np.float64)
    lean.input_grad = False
    full(x)
    lean(x)
    assert full.backward(dout) is not None
    assert lean.backward(dout) is None
    np.testing.assert_array_equal(full.weight.grad, lean.weight.grad)
    np.testing.assert_array_equal(full.bias.grad, lean.bias.grad)
