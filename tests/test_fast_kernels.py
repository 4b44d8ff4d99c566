"""The Numba batch-norm, ReLU, fused BatchNorm+ReLU+MaxPool and Adam kernels against their NumPy references."""
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tinynet.functional.activation import relu_backward, relu_backward_reference, relu_forward, relu_forward_reference
from tinynet.functional.batchnorm import (
    batchnorm_backward,
    batchnorm_backward_reference,
    batchnorm_forward,
    batchnorm_forward_reference,
)

shapes = st.one_of(
    st.tuples(st.integers(2, 6), st.integers(1, 5)),
    st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 7)),
    st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 6), st.integers(1, 6)),
)


def assert_same_gradients(grads, ref_grads, dtype, tol):
    """``(dx, dweight, dbias)`` of a kernel against the reference's: None where the reference has None
    (no affine parameters), else the same values in the input dtype."""
    for fast, ref in zip(grads, ref_grads):
        if ref is None:
            assert fast is None
        else:
            assert fast.dtype == dtype
            np.testing.assert_allclose(fast, ref, **tol)


@settings(max_examples=40)
@example(shape=(2, 4), dtype=np.float64, training=True, affine=False, seed=337, offset=50.0)  # found by CI
@given(shape=shapes, dtype=st.sampled_from([np.float32, np.float64]), training=st.booleans(),
       affine=st.booleans(), seed=st.integers(0, 2**16), offset=st.sampled_from([0.0, 50.0]))
def test_batchnorm_kernels_match_reference(shape, dtype, training, affine, seed, offset):
    rng = np.random.default_rng(seed)
    if training and np.prod(shape) // shape[1] < 2:
        shape = (2,) + shape[1:]
    c = shape[1]
    x = (rng.standard_normal(shape) * 3 + offset).astype(dtype)  # an offset mean tests cancellation
    dout = rng.standard_normal(shape).astype(dtype)
    weight = rng.standard_normal(c).astype(dtype) if affine else None
    bias = rng.standard_normal(c).astype(dtype) if affine else None
    buffers = [rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)]
    fast_buffers = [b.copy() for b in buffers]
    ref_buffers = [b.copy() for b in buffers]
    out, cache = batchnorm_forward(x, weight, bias, *fast_buffers, training, 0.1, 1e-5)
    ref_out, ref_cache = batchnorm_forward_reference(x, weight, bias, *ref_buffers, training, 0.1, 1e-5)
    # float64: sums in another order; with 2 values per channel and mean 50 the gradient is a difference
    # of nearly equal terms, measured to differ by ~1e-9 (of terms of order 1)
    tol = dict(rtol=2e-4, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-7, atol=1e-8)
    assert out.dtype == dtype and out.shape == shape
    np.testing.assert_allclose(out, ref_out, **tol)
    for fast, ref in zip(fast_buffers, ref_buffers):
        np.testing.assert_allclose(fast, ref, **tol)
    grads = batchnorm_backward(dout, cache)
    ref_grads = batchnorm_backward_reference(dout, ref_cache)
    assert_same_gradients(grads, ref_grads, dtype, tol)


@settings(max_examples=30)
@given(size=st.integers(1, 3000), dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_relu_kernels_match_reference(size, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(size).astype(dtype)
    x[rng.random(size) < 0.1] = 0.0  # exact zeros: the subgradient there is 0
    x[rng.random(size) < 0.02] = np.nan
    dout = rng.standard_normal(size).astype(dtype)
    out, cache = relu_forward(x)
    ref_out, ref_cache = relu_forward_reference(x)
    np.testing.assert_array_equal(out, ref_out)  # NaN positions included
    assert out.dtype == dtype
    np.testing.assert_array_equal(relu_backward(dout, cache), relu_backward_reference(dout, ref_cache))


def test_relu_backward_rejects_mismatched_shapes():
    out, cache = relu_forward(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="dout shape"):
        relu_backward(np.ones((3, 2), np.float32), cache)


# ---------------------------------------------------------------------------------------------
# Fused BatchNorm2d -> ReLU -> MaxPool2d(2, 2) against the three references chained
# ---------------------------------------------------------------------------------------------
from tinynet.functional.fused import (  # noqa: E402
    batchnorm_relu_maxpool2d_backward,
    batchnorm_relu_maxpool2d_backward_reference,
    batchnorm_relu_maxpool2d_forward,
    batchnorm_relu_maxpool2d_forward_reference,
)


@settings(max_examples=60)
@example(n=2, c=1, h=3, w=2, dtype=np.float32, training=True, affine=True, seed=0, values="integers", nan=False)
@example(n=1, c=2, h=5, w=5, dtype=np.float64, training=False, affine=False, seed=1, values="normal", nan=True)
@given(n=st.integers(1, 3), c=st.integers(1, 4), h=st.integers(2, 9), w=st.integers(2, 9),
       dtype=st.sampled_from([np.float32, np.float64]), training=st.booleans(), affine=st.booleans(),
       seed=st.integers(0, 2**16), values=st.sampled_from(["normal", "integers"]), nan=st.booleans())
def test_fused_bn_relu_maxpool_matches_the_three_layers(n, c, h, w, dtype, training, affine, seed, values, nan):
    """Same output, running statistics and gradients, including ties (small integers: many equal
    maxima, and many windows that ReLU zeroes), NaNs, odd sizes (a last row or column never pooled)."""
    rng = np.random.default_rng(seed)
    if training and n * h * w < 2:
        n = 2
    shape = (n, c, h, w)
    x = rng.integers(-2, 3, shape).astype(dtype) if values == "integers" else rng.standard_normal(shape).astype(dtype)
    if nan:
        x.flat[rng.integers(0, x.size)] = np.nan
    weight = rng.uniform(0.5, 2, c).astype(dtype) if affine else None
    bias = rng.standard_normal(c).astype(dtype) if affine else None
    buffers = [rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)]
    fast_buffers, ref_buffers = [b.copy() for b in buffers], [b.copy() for b in buffers]
    out, cache = batchnorm_relu_maxpool2d_forward(x, weight, bias, *fast_buffers, training)
    ref_out, ref_caches = batchnorm_relu_maxpool2d_forward_reference(x, weight, bias, *ref_buffers, training)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    assert out.shape == (n, c, h // 2, w // 2) and out.dtype == dtype
    np.testing.assert_allclose(out, ref_out, **tol)  # NaNs must sit at the same places
    for fast, ref in zip(fast_buffers, ref_buffers):
        np.testing.assert_allclose(fast, ref, **tol)
    dout = rng.standard_normal(out.shape).astype(dtype)
    grads = batchnorm_relu_maxpool2d_backward(dout, cache)
    ref_grads = batchnorm_relu_maxpool2d_backward_reference(dout, ref_caches)
    assert_same_gradients(grads, ref_grads, dtype, tol)


# ---------------------------------------------------------------------------------------------
# The one-pass Adam kernel against the NumPy update
# ---------------------------------------------------------------------------------------------
from tinynet.optim.adam import _adam_update_, adam_update_reference  # noqa: E402


@settings(max_examples=40)
@given(size=st.integers(1, 2000), dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16),
       weight_decay=st.sampled_from([0.0, 0.05]), decoupled=st.booleans(), amsgrad=st.booleans(),
       lr=st.sampled_from([1e-3, 0.1]))
def test_adam_kernel_matches_reference(size, dtype, seed, weight_decay, decoupled, amsgrad, lr):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(size).astype(dtype)
    states = [np.zeros(size, dtype) for _ in range(3)]
    ref_p, ref_states = p.copy(), [s.copy() for s in states]
    for step in range(1, 4):
        grad = rng.standard_normal(size).astype(dtype)
        kwargs = dict(step=step, lr=lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=weight_decay, decoupled=decoupled)
        _adam_update_(p, grad, states[0], states[1], states[2] if amsgrad else None, **kwargs)
        adam_update_reference(ref_p, grad, ref_states[0], ref_states[1], ref_states[2] if amsgrad else None,
                              np.empty_like(p), **kwargs)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    assert p.dtype == dtype
    np.testing.assert_allclose(p, ref_p, **tol)
    for fast, ref in zip(states, ref_states):
        np.testing.assert_allclose(fast, ref, **tol)
