"""Int8Linear: the row-wise int8 quantisation, the kernel against the NumPy reference and against float64 math
written here, the error bound against the float layer, and quantize_int8's rewrite of a model."""
import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinynet
from tinynet import blas, nn
from tinynet._checks import ShapeError
from tinynet.backends import numba as numba_backend
from tinynet.functional.int8_linear import int8_linear_forward, int8_linear_forward_reference, quantize_rows


def test_each_row_is_stored_as_a_scale_and_int8_values_within_half_a_step():
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((5, 33)).astype(np.float32)
    weight[3] = 0.0  # a row of zeros
    q, scale = quantize_rows(weight)
    assert q.dtype == np.int8 and scale.dtype == np.float32 and q.shape == weight.shape and scale.shape == (5,)
    rows = [0, 1, 2, 4]
    # the largest magnitude of each row becomes +-127, and every value is off by at most half a step
    np.testing.assert_allclose(scale[rows], np.abs(weight[rows]).max(axis=1) / 127, rtol=1e-6)
    assert (np.abs(q[rows]).max(axis=1) == 127).all()
    error = np.abs(weight.astype(np.float64) - scale[:, None].astype(np.float64) * q)
    assert (error <= scale[:, None] / 2 * (1 + 1e-6)).all()
    assert scale[3] == 1 and not q[3].any()


def test_quantize_rows_refuses_what_int8_cannot_hold():
    with pytest.raises(ValueError, match="NaN or infinite"):
        quantize_rows(np.array([[1.0, np.nan]], dtype=np.float32))
    with pytest.raises(ShapeError, match=r"2-D weight .* got shape \(3,\)"):
        quantize_rows(np.ones(3, dtype=np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        quantize_rows(np.ones((2, 2), dtype=np.int32))


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 9), features=st.integers(1, 70), outputs=st.integers(1, 40), with_bias=st.booleans(),
       double=st.booleans(), seed=st.integers(0, 2**16))
def test_int8_kernel_matches_the_reference_and_float64_math(rows, features, outputs, with_bias, double, seed):
    rng = np.random.default_rng(seed)
    dtype = np.float64 if double else np.float32
    x = rng.standard_normal((rows, features)).astype(dtype)
    q = rng.integers(-127, 128, (outputs, features)).astype(np.int8)
    scale = rng.uniform(1e-3, 1e-1, outputs).astype(dtype)
    bias = rng.standard_normal(outputs).astype(dtype) if with_bias else None
    out = int8_linear_forward(x, q, scale, bias)
    # the definition, in float64: y[n, j] = scale[j] * sum_i q[j, i] x[n, i] + b[j]
    exact = np.einsum("ji,ni->nj", q.astype(np.float64), x.astype(np.float64)) * scale + (0 if bias is None else bias)
    assert out.dtype == dtype and out.shape == (rows, outputs)
    tolerance = (1e-12 if double else 2e-5) * (np.abs(x).sum(axis=1, keepdims=True) * 127 * scale + 1)
    assert (np.abs(out - exact) <= tolerance).all()
    reference = int8_linear_forward_reference(x, q, scale, bias)
    assert (np.abs(out - reference) <= tolerance).all()


def test_the_kernel_gives_the_same_bits_on_one_thread_and_on_several():
    rng = np.random.default_rng(1)
    q = rng.integers(-127, 128, (1100, 1000)).astype(np.int8)  # above the size from which the rows are shared out
    x, scale, bias = (rng.standard_normal(shape).astype(np.float32) for shape in ((3, 1000), 1100, 1100))
    before = blas.get_num_threads()
    try:
        blas.set_num_threads(1)
        one = int8_linear_forward(x, q, scale, bias)
        blas.set_num_threads(3)
        several = int8_linear_forward(x, q, scale, bias)
    finally:
        blas.set_num_threads(before)
    np.testing.assert_array_equal(one, several)


def test_the_numpy_engine_runs_the_reference():
    rng = np.random.default_rng(2)
    x, q = rng.standard_normal((2, 6)).astype(np.float32), rng.integers(-127, 128, (3, 6)).astype(np.int8)
    scale, bias = np.full(3, 0.5, np.float32), np.zeros(3, np.float32)
    with numba_backend.flags(enabled=False):
        out = int8_linear_forward(x, q, scale, bias)
    np.testing.assert_array_equal(out, int8_linear_forward_reference(x, q, scale, bias))


def test_the_functional_checks_name_what_the_kernel_would_read_wrongly():
    q, scale = np.zeros((3, 4), np.int8), np.ones(3, np.float32)
    with pytest.raises(ShapeError, match=r"expected input \(N, 4\), got shape \(2, 5\)"):
        int8_linear_forward(np.zeros((2, 5), np.float32), q, scale, None)
    with pytest.raises(ShapeError, match=r"bias \(3,\) float32, got float32 \(2,\)"):
        int8_linear_forward(np.zeros((2, 4), np.float32), q, scale, np.zeros(2, np.float32))
    with pytest.raises(TypeError, match="int8 weight"):
        int8_linear_forward(np.zeros((2, 4), np.float32), q.astype(np.int16), scale, None)


def test_an_int8_layer_stays_within_its_rounding_of_the_float_layer():
    rng = np.random.default_rng(3)
    linear = nn.Linear(300, 50, rng=rng)
    layer = nn.Int8Linear.from_linear(linear)
    x = rng.standard_normal((4, 300)).astype(np.float32)
    with tinynet.no_grad():
        out, float_out = layer(x), linear(x)
    # each weight is off by at most half its row's step, so each output by at most sum_i |x_i| * scale_j / 2
    bound = np.abs(x).sum(axis=1, keepdims=True) * layer.scale / 2 * (1 + 1e-4) + 1e-5
    assert (np.abs(out - float_out) <= bound).all()
    assert np.abs(out - float_out).max() > 0  # it is a different layer, not the float one
    # the float layer is untouched
    assert linear.weight.data.dtype == np.float32


def test_quantize_int8_replaces_every_linear_and_keeps_the_names():
    rng = np.random.default_rng(4)
    model = nn.Sequential(nn.Linear(4, 3, rng=rng), nn.ReLU(), nn.Sequential(nn.Linear(3, 2, bias=False, rng=rng)))
    float_model = copy.deepcopy(model)
    assert nn.quantize_int8(model) is model
    assert [type(m).__name__ for m in model.modules()] == ["Sequential", "Int8Linear", "ReLU", "Sequential", "Int8Linear"]
    assert list(model.state_dict()) == ["0.weight", "0.scale", "0.bias", "2.0.weight", "2.0.scale"]
    assert "Int8Linear(in_features=4, out_features=3, bias=True; int8 weights, a float32 scale per output row)" in repr(model)
    x = rng.standard_normal((2, 4)).astype(np.float32)
    with tinynet.no_grad():
        np.testing.assert_allclose(model(x), float_model(x), atol=0.05)
    assert isinstance(nn.quantize_int8(nn.Linear(2, 2)), nn.Int8Linear)  # a bare Linear: the new layer


def test_an_int8_layer_refuses_training_and_wrong_inputs():
    layer = nn.Int8Linear.from_linear(nn.Linear(4, 3, rng=np.random.default_rng(5)))
    with pytest.raises(RuntimeError, match="no backward"):
        layer.backward(np.zeros((1, 3), np.float32))
    with pytest.raises(ShapeError, match=r"Int8Linear\(in_features=4.*4 features"):
        layer(np.zeros((1, 5), np.float32))
    with pytest.raises(TypeError, match="does not match scale dtype float32"):
        layer(np.zeros((1, 4), np.float64))
    with pytest.raises(TypeError, match="expected a Linear, got ReLU"):
        nn.Int8Linear.from_linear(nn.ReLU())
    # to(float64) converts the scale and the bias, never the int8 weight
    layer.to(np.float64)
    assert (layer.weight.dtype, layer.scale.dtype, layer.bias.dtype) == (np.int8, np.float64, np.float64)
    assert layer(np.ones((1, 4))).dtype == np.float64


@pytest.mark.parametrize("linear_bias, affine", [(True, True), (False, True), (True, False)])
def test_fold_batchnorm_folds_an_eval_batchnorm1d_into_the_linear_before_it(linear_bias, affine):
    rng = np.random.default_rng(6)
    model = nn.Sequential(nn.Linear(40, 8, bias=linear_bias, rng=rng), nn.BatchNorm1d(8, affine=affine), nn.ReLU(),
                          nn.Linear(8, 3, rng=rng), nn.BatchNorm1d(3)).to(np.float64)
    for batchnorm in (model[1], model[4]):  # statistics and an affine part far from the identity, gamma < 0 too
        batchnorm.running_mean[...] = rng.standard_normal(batchnorm.num_features)
        batchnorm.running_var[...] = rng.uniform(0.1, 4.0, batchnorm.num_features)
        if batchnorm.affine:
            batchnorm.weight.data[...] = rng.uniform(-2.0, 2.0, batchnorm.num_features)
            batchnorm.bias.data[...] = rng.standard_normal(batchnorm.num_features)
    model.eval()
    float_model = copy.deepcopy(model)
    assert nn.quantize_int8(model, fold_batchnorm=True) is model
    assert [type(m).__name__ for m in model] == ["Int8Linear", "Identity", "ReLU", "Int8Linear", "Identity"]
    assert repr(model[0]).endswith(f"; BatchNorm1d(8, eps=1e-05, momentum=0.1, affine={affine}) folded in)")
    assert "folded" not in repr(nn.quantize_int8(copy.deepcopy(float_model)))  # only when asked
    x = rng.standard_normal((5, 40))
    with tinynet.no_grad():
        hidden, float_hidden = model[0](x), float_model[1](float_model[0](x))
        out, float_out = model(x), float_model(x)
    # the folded layer is the float pair up to its own int8 rounding: each weight off by at most half its row's step
    bound = np.abs(x).sum(axis=1, keepdims=True) * model[0].scale / 2 * (1 + 1e-9)
    assert (np.abs(hidden - float_hidden) <= bound).all() and np.abs(hidden - float_hidden).max() > 0
    np.testing.assert_allclose(out, float_out, atol=0.1)


def test_fold_batchnorm_leaves_a_training_batchnorm_and_refuses_to_fold_one():
    rng = np.random.default_rng(7)
    model = nn.Sequential(nn.Linear(4, 3, rng=rng), nn.BatchNorm1d(3))  # training mode: batch statistics
    nn.quantize_int8(model, fold_batchnorm=True)
    assert [type(m).__name__ for m in model] == ["Int8Linear", "BatchNorm1d"]
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3, .*\) is in training mode.*eval mode"):
        nn.Int8Linear.from_linear(nn.Linear(4, 3, rng=rng), nn.BatchNorm1d(3))
    with pytest.raises(TypeError, match=r"expected a BatchNorm1d\(3\) to fold, got BatchNorm1d\(5"):
        nn.Int8Linear.from_linear(nn.Linear(4, 3, rng=rng), nn.BatchNorm1d(5).eval())
