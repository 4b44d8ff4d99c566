"""The Numba kernels (im2col/col2im, max pooling) against their plain NumPy references.

Tier 1 of the test plan: every fast kernel equals its readable reference on shapes, strides and
paddings drawn by hypothesis, in float32 and float64. The references themselves are pinned by small
hand-computed examples, so a bug shared by kernel and reference cannot hide.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tinynet._checks import ShapeError
from tinynet.functional.im2col import col2im, col2im_reference, im2col, im2col_reference
from tinynet.functional import pooling
from tinynet.functional.pooling import MaxPool2dCache, maxpool2d_backward_reference, maxpool2d_forward_reference

DTYPES = st.sampled_from([np.float32, np.float64])


def pool_forward(x, kernel_size, stride=None, padding=0):
    """``tinynet.functional.pooling.maxpool2d_forward`` as ``(out, argmax)``, like the reference."""
    out, cache = pooling.maxpool2d_forward(x, kernel_size, stride, padding)
    return out, cache.argmax


def pool_backward(dout, argmax, x_shape):
    """``tinynet.functional.pooling.maxpool2d_backward`` from ``argmax``, like the reference (indices checked)."""
    return pooling.maxpool2d_backward(dout, MaxPool2dCache(argmax, tuple(x_shape)))


@st.composite
def conv_case(draw):
    """A batch shape and a (kernel, stride, padding) for which at least one window fits."""
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    assume(h + 2 * padding[0] >= kernel[0] and w + 2 * padding[1] >= kernel[1])
    return (n, c, h, w), kernel, stride, padding


@st.composite
def pool_case(draw):
    """Like ``conv_case`` but with PyTorch's pooling limit: padding at most half the kernel."""
    shape, kernel, stride, _ = draw(conv_case())
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    assume(shape[2] + 2 * padding[0] >= kernel[0] and shape[3] + 2 * padding[1] >= kernel[1])
    return shape, kernel, stride, padding


def _out_hw(shape, kernel, stride, padding):
    return tuple((shape[2 + a] + 2 * padding[a] - kernel[a]) // stride[a] + 1 for a in range(2))


# ------------------------------------------------------------------------------------- im2col
def test_im2col_reference_hand_computed():
    # 3x3 image 0..8, 2x2 kernel: the 4 windows are [0 1 3 4], [1 2 4 5], [3 4 6 7], [4 5 7 8]
    x = np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3)
    expected = np.array([[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]], dtype=np.float64)
    # rows are kernel taps (i, j), columns are windows: the transpose of the list above
    np.testing.assert_array_equal(im2col_reference(x, (2, 2), (1, 1), (0, 0))[0], expected.T)
    np.testing.assert_array_equal(im2col(x, 2)[0], expected.T)


def test_im2col_reference_hand_computed_padding_and_stride():
    # 2x2 image [[1 2] [3 4]], 2x2 kernel, stride 2, padding 1: 4x4 padded, windows at (0,0),(0,2),(2,0),(2,2)
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    cols = im2col_reference(x, (2, 2), (2, 2), (1, 1))[0]
    # each window sees exactly one pixel, at the tap diagonal to its corner
    expected = np.array([[0, 0, 0, 4], [0, 0, 3, 0], [0, 2, 0, 0], [1, 0, 0, 0]], dtype=np.float64)
    np.testing.assert_array_equal(cols, expected)
    np.testing.assert_array_equal(im2col(x, 2, 2, 1)[0], expected)


def test_col2im_reference_hand_computed_overlap():
    # 1x3 image, 1x2 kernel, stride 1: the middle pixel is in both windows and gets both entries
    cols = np.array([[[1.0, 10.0], [100.0, 1000.0]]])  # taps (0,0) and (0,1) of windows 0 and 1
    dx = col2im_reference(cols, (1, 1, 1, 3), (1, 2), (1, 1), (0, 0))
    np.testing.assert_array_equal(dx, [[[[1.0, 110.0, 1000.0]]]])
    np.testing.assert_array_equal(col2im(cols, (1, 1, 1, 3), (1, 2)), dx)


@given(case=conv_case(), dtype=DTYPES, seed=st.integers(0, 2**32 - 1))
def test_im2col_matches_reference(case, dtype, seed):
    shape, kernel, stride, padding = case
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    cols = im2col(x, kernel, stride, padding)
    assert cols.dtype == dtype and cols.flags.c_contiguous
    np.testing.assert_array_equal(cols, im2col_reference(x, kernel, stride, padding))  # a pure copy: exact


@given(case=conv_case(), dtype=DTYPES, seed=st.integers(0, 2**32 - 1))
def test_col2im_matches_reference(case, dtype, seed):
    shape, kernel, stride, padding = case
    oh, ow = _out_hw(shape, kernel, stride, padding)
    cols = np.random.default_rng(seed).standard_normal((shape[0], shape[1] * kernel[0] * kernel[1], oh * ow))
    cols = cols.astype(dtype)
    dx = col2im(cols, shape, kernel, stride, padding)
    assert dx.dtype == dtype and dx.shape == shape
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(dx, col2im_reference(cols, shape, kernel, stride, padding), rtol=tol, atol=tol)


@given(case=conv_case(), seed=st.integers(0, 2**32 - 1))
def test_col2im_is_the_adjoint_of_im2col(case, seed):
    # <im2col(x), c> == <x, col2im(c)> for every x and c: the defining property of the transpose
    shape, kernel, stride, padding = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    oh, ow = _out_hw(shape, kernel, stride, padding)
    c = rng.standard_normal((shape[0], shape[1] * kernel[0] * kernel[1], oh * ow))
    lhs = np.vdot(im2col(x, kernel, stride, padding), c)
    rhs = np.vdot(x, col2im(c, shape, kernel, stride, padding))
    assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-10)


def test_col2im_overwrites_out():
    cols = np.ones((1, 4, 4))
    out = np.full((1, 1, 3, 3), 123.0)
    col2im(cols, (1, 1, 3, 3), 2, out=out)
    # corner pixels are in one 2x2 window, edge pixels in two, the centre in four
    np.testing.assert_array_equal(out[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


def test_im2col_non_contiguous_input():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((2, 3, 10, 12)).astype(np.float32)
    for x in (base[:, :, ::2, 1::3], base.transpose(0, 1, 3, 2), base[:, ::2]):
        assert not x.flags.c_contiguous
        np.testing.assert_array_equal(im2col(x, 3, 1, 1), im2col_reference(np.ascontiguousarray(x), (3, 3), (1, 1), (1, 1)))
    cols = rng.standard_normal((2, 3 * 4, 7 * 7 * 2))[:, :, ::2]  # non-contiguous cols: 6x6 image, 2x2 kernel, padding 1
    assert not cols.flags.c_contiguous
    expected = col2im_reference(np.ascontiguousarray(cols), (2, 3, 6, 6), (2, 2), (1, 1), (1, 1))
    np.testing.assert_allclose(col2im(cols, (2, 3, 6, 6), 2, 1, 1), expected, rtol=1e-14)


def test_im2col_writes_into_out_and_reuses_it():
    x = np.random.default_rng(1).standard_normal((2, 2, 5, 5)).astype(np.float32)
    out = np.full((2, 2 * 9, 25), np.nan, dtype=np.float32)
    result = im2col(x, 3, 1, 1, out=out)
    assert result is out
    np.testing.assert_array_equal(out, im2col_reference(x, (3, 3), (1, 1), (1, 1)))  # padding zeros written too


def test_im2col_wrapper_errors():
    x = np.zeros((1, 2, 5, 5), dtype=np.float32)
    with pytest.raises(ShapeError, match="4-D x"):
        im2col(np.zeros((2, 5, 5), dtype=np.float32), 3)
    with pytest.raises(TypeError, match="float32 or float64, got int64"):
        im2col(np.zeros((1, 2, 5, 5), dtype=np.int64), 3)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        im2col([[[[0.0]]]], 1)
    with pytest.raises(ShapeError, match="smaller than the kernel 6x6"):
        im2col(x, 6)
    with pytest.raises(ShapeError, match=r"expected out of shape \(1, 18, 9\)"):
        im2col(x, 3, out=np.zeros((1, 18, 10), dtype=np.float32))
    with pytest.raises(ShapeError, match="dtype float32"):
        im2col(x, 3, out=np.zeros((1, 18, 9), dtype=np.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        im2col(x, 3, out=np.zeros((1, 9, 18), dtype=np.float32).transpose(0, 2, 1))
    with pytest.raises(ValueError, match="stride must be positive"):
        im2col(x, 3, stride=0)
    with pytest.raises(ValueError, match="padding must be non-negative"):
        im2col(x, 3, padding=-1)


def test_col2im_wrapper_errors():
    with pytest.raises(ShapeError, match=r"expected cols of shape \(1, 18, 9\)"):
        col2im(np.zeros((1, 18, 8)), (1, 2, 5, 5), 3)
    with pytest.raises(ShapeError, match="x_shape must be"):
        col2im(np.zeros((1, 18, 9)), (2, 5, 5), 3)
    with pytest.raises(TypeError, match="float32 or float64"):
        col2im(np.zeros((1, 18, 9), dtype=np.int32), (1, 2, 5, 5), 3)


# ------------------------------------------------------------------------------------ max pool
def test_maxpool_reference_hand_computed():
    x = np.array([[[[1.0, 5.0, 2.0], [7.0, 3.0, 7.0], [0.0, 9.0, 4.0]]]])
    # 2x2 windows, stride 1: maxima 7 (flat index 3), 7 (index 5), 9 (index 7), 9 (index 7 again)
    out, argmax = maxpool2d_forward_reference(x, (2, 2), (1, 1), (0, 0))
    np.testing.assert_array_equal(out, [[[[7.0, 7.0], [9.0, 9.0]]]])
    np.testing.assert_array_equal(argmax, [[[[3, 5], [7, 7]]]])
    # the 9 won two overlapping windows: it gets both gradients
    dx = maxpool2d_backward_reference(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), argmax, x.shape)
    np.testing.assert_array_equal(dx, [[[[0, 0, 0], [1, 0, 2], [0, 7, 0]]]])


def test_maxpool_reference_hand_computed_padding_ties_and_minus_inf():
    # padding 1 on a 2x2 image, kernel 2, stride 2: each window holds one real pixel
    x = np.array([[[[-1.0, -2.0], [-3.0, -4.0]]]])
    out, argmax = maxpool2d_forward_reference(x, (2, 2), (2, 2), (1, 1))
    np.testing.assert_array_equal(out, x)  # the -inf padding never wins, even over negative values
    np.testing.assert_array_equal(argmax, [[[[0, 1], [2, 3]]]])
    # ties: the first maximum in row-major window order
    ties = np.ones((1, 1, 2, 2))
    assert maxpool2d_forward_reference(ties, (2, 2), (2, 2), (0, 0))[1].item() == 0
    assert pool_forward(ties, 2)[1].item() == 0
    # a window of -inf only reports its first real pixel (PyTorch's choice)
    inf = np.full((1, 1, 2, 2), -np.inf)
    for out, argmax in (maxpool2d_forward_reference(inf, (2, 2), (1, 1), (1, 1)), pool_forward(inf, 2, 1, 1)):
        np.testing.assert_array_equal(argmax[0, 0], [[0, 0, 1], [0, 0, 1], [2, 2, 3]])


def test_maxpool_nan_propagates():
    x = np.array([[[[1.0, np.nan, 3.0, 4.0], [np.nan, 2.0, 0.0, 1.0]]]])
    for out, argmax in (maxpool2d_forward_reference(x, (2, 2), (2, 2), (0, 0)), pool_forward(x, 2)):
        assert np.isnan(out[0, 0, 0, 0]) and out[0, 0, 0, 1] == 4.0
        # PyTorch's update rule `val > max or isnan(val)` lands on the last NaN of the window
        np.testing.assert_array_equal(argmax, [[[[4, 3]]]])


@given(case=pool_case(), dtype=DTYPES, seed=st.integers(0, 2**32 - 1))
def test_maxpool_forward_backward_match_reference(case, dtype, seed):
    shape, kernel, stride, padding = case
    rng = np.random.default_rng(seed)
    # a few repeated values so ties are exercised too
    x = rng.integers(-3, 4, size=shape).astype(dtype) + rng.choice([0.0, 0.5], size=shape).astype(dtype)
    out, argmax = pool_forward(x, kernel, stride, padding)
    ref_out, ref_argmax = maxpool2d_forward_reference(x, kernel, stride, padding)
    assert out.dtype == dtype and argmax.dtype == np.int32  # flat index within a plane
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(argmax, ref_argmax)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx = pool_backward(dout, argmax, shape)
    assert dx.dtype == dtype and dx.shape == shape
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(dx, maxpool2d_backward_reference(dout, ref_argmax, shape), rtol=tol, atol=tol)


@given(case=pool_case(), seed=st.integers(0, 2**32 - 1), nan_fraction=st.sampled_from([0.05, 0.3]))
def test_maxpool_nan_matches_reference(case, seed, nan_fraction):
    shape, kernel, stride, padding = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    x[rng.random(shape) < 0.1] = np.inf  # +-inf too: an inf - inf sum must not be mistaken for a NaN
    x[rng.random(shape) < 0.1] = -np.inf
    x[rng.random(shape) < nan_fraction] = np.nan
    out, argmax = pool_forward(x, kernel, stride, padding)
    ref_out, ref_argmax = maxpool2d_forward_reference(x, kernel, stride, padding)
    np.testing.assert_array_equal(out, ref_out)  # NaN == NaN for assert_array_equal
    np.testing.assert_array_equal(argmax, ref_argmax)
    # independently: an output is NaN exactly when its window holds a NaN (im2col of the NaN mask)
    window_has_nan = im2col_reference(np.isnan(x).astype(np.float64), kernel, stride, padding)
    window_has_nan = window_has_nan.reshape(shape[0], shape[1], kernel[0] * kernel[1], -1).max(axis=2) > 0
    np.testing.assert_array_equal(np.isnan(out).reshape(window_has_nan.shape), window_has_nan)


def test_maxpool_overlapping_windows_accumulate():
    # a single large value wins all nine overlapping 3x3 windows of a 5x5 image (stride 1)
    x = np.zeros((1, 1, 5, 5), dtype=np.float32)
    x[0, 0, 2, 2] = 1.0
    out, argmax = pool_forward(x, 3, 1)
    assert (argmax == 12).all()
    dx = pool_backward(np.ones_like(out), argmax, x.shape)
    assert dx[0, 0, 2, 2] == 9.0 and dx.sum() == 9.0


def test_maxpool_non_contiguous_input_and_int32_argmax():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((2, 3, 9, 8))
    x = base.transpose(0, 1, 3, 2)[:, :, ::2]  # (2, 3, 4, 9), non-contiguous
    assert not x.flags.c_contiguous
    out, argmax = pool_forward(x, (2, 3), (1, 2), (1, 1))
    ref_out, ref_argmax = maxpool2d_forward_reference(np.ascontiguousarray(x), (2, 3), (1, 2), (1, 1))
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(argmax, ref_argmax)
    dout = rng.standard_normal(out.shape)
    expected = maxpool2d_backward_reference(dout, ref_argmax, x.shape)
    np.testing.assert_allclose(pool_backward(dout[..., ::-1].copy()[..., ::-1], argmax.astype(np.int32), x.shape), expected)
    np.testing.assert_allclose(pool_backward(np.asfortranarray(dout), argmax, x.shape), expected)


def test_maxpool_wrapper_errors():
    x = np.zeros((1, 2, 4, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="padding must be between 0 and half the kernel"):
        pool_forward(x, 2, 2, 2)
    with pytest.raises(ShapeError, match="4-D x"):
        pool_forward(x[0], 2)
    with pytest.raises(TypeError, match="float32 or float64"):
        pool_forward(x.astype(np.int16), 2)
    with pytest.raises(ShapeError, match="smaller than the kernel 5x5"):
        pool_forward(x, 5)
    out, argmax = pool_forward(x, 2)
    with pytest.raises(TypeError, match="int32 or int64"):
        pool_backward(out, argmax.astype(np.float64), x.shape)
    with pytest.raises(ShapeError, match="same shape"):
        pool_backward(out, argmax[:, :, :1], x.shape)
    with pytest.raises(ValueError, match="outside"):
        pool_backward(out, argmax + 100, x.shape)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(2, 9), w=st.integers(2, 9),
    dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16),
)
def test_maxpool_2x2_fast_path_matches_reference_with_ties_and_nans(n, c, h, w, dtype, seed):
    """The 2x2 window is a separately compiled (unrolled) copy of the kernel: same maxima, same
    indices (first of equal maxima, last NaN), odd sizes floored."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, size=(n, c, h, w)).astype(dtype)  # few distinct values: many ties
    x[rng.random(x.shape) < 0.1] = np.nan
    out, argmax = pool_forward(x, 2, 2, 0)
    ref_out, ref_argmax = maxpool2d_forward_reference(x, (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(argmax, ref_argmax)
    dout = rng.standard_normal(out.shape).astype(dtype)
    np.testing.assert_array_equal(pool_backward(dout, argmax, x.shape), maxpool2d_backward_reference(dout, ref_argmax, x.shape))


def test_im2col_ones_row_and_col2im_ignoring_it():
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 5))
    cols = im2col(x, 3, 1, 1, ones_row=True)
    plain = im2col(x, 3, 1, 1)
    assert cols.shape == (2, 3 * 9 + 1, 30)
    np.testing.assert_array_equal(cols[:, :-1], plain)
    np.testing.assert_array_equal(cols[:, -1], 1.0)
    cols[:, -1] = np.nan  # the extra row must not be read
    np.testing.assert_array_equal(col2im(cols, x.shape, 3, 1, 1, ones_row=True), col2im(plain, x.shape, 3, 1, 1))
