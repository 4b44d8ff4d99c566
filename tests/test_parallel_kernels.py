"""Every Numba kernel's outer loop is shared out over tinynet's threads for large inputs, and runs on the
calling thread for small ones (``tinynet._numba.PARALLEL_MIN_WORK``). The unit tests' inputs are small, so
here the property tests of the kernels run again with the threshold at 0 (every call shared out), and a
whole training step must give the same bits on one thread and on three."""
from unittest import mock

import numpy as np
import pytest

import tinynet._numba as numba_config
import tinynet.functional.conv as conv
from tinynet import blas, nn, optim
import test_conv_pool
import test_fast_kernels
import test_int8_linear
import test_kernels

PROPERTY_TESTS = [
    (test_kernels, "test_im2col_matches_reference"),
    (test_kernels, "test_col2im_matches_reference"),
    (test_kernels, "test_maxpool_forward_backward_match_reference"),
    (test_kernels, "test_maxpool_nan_matches_reference"),
    (test_fast_kernels, "test_batchnorm_kernels_match_reference"),
    (test_fast_kernels, "test_relu_kernels_match_reference"),
    (test_fast_kernels, "test_fused_bn_relu_maxpool_matches_the_three_layers"),
    (test_fast_kernels, "test_adam_kernel_matches_reference"),
    (test_conv_pool, "test_conv_fast_matches_reference"),
    (test_int8_linear, "test_int8_kernel_matches_the_reference_and_float64_math"),
]


@pytest.mark.parametrize("module, name", PROPERTY_TESTS, ids=[name for _, name in PROPERTY_TESTS])
def test_parallel_kernels_match_reference(module, name):
    with mock.patch.object(numba_config, "PARALLEL_MIN_WORK", 0):
        getattr(module, name)()  # the whole hypothesis search, on the parallel kernels


def test_small_work_runs_serially_and_large_work_in_parallel():
    from tinynet.kernels.elementwise import relu_forward_kernel as _relu_forward_kernel

    calls = []

    def spy(version):
        real = getattr(_relu_forward_kernel, version)
        return lambda *args: calls.append(version) or real(*args)

    with mock.patch.object(numba_config, "PARALLEL_MIN_WORK", 100), \
            mock.patch.object(_relu_forward_kernel, "parallel", spy("parallel")), \
            mock.patch.object(_relu_forward_kernel, "serial", spy("serial")):
        small, large = np.ones(99, np.float32), np.ones(100, np.float32)
        _relu_forward_kernel(small, np.empty_like(small))
        _relu_forward_kernel(large, np.empty_like(large))
    assert calls == ["serial", "parallel"]


def _training_step(threads: int, winograd: int = 0) -> list[np.ndarray]:
    """One forward, backward and Adam step of a small convolutional net on ``threads`` threads, every kernel
    call shared out (its 3x3 convolution by Winograd F(m x m, 3x3) if ``winograd`` is m); returns the output, the input gradient and every
    parameter after the step. 19 images: the weight gradients are summed over several ranges of images."""
    rng = np.random.default_rng(0)
    net = nn.Sequential(
        nn.Conv2d(1, 5, 4, rng=rng), nn.BatchNorm2d(5), nn.ReLU(), nn.MaxPool2d(2, 2),  # the 1-channel conv
        nn.Conv2d(5, 6, 3, padding=1, rng=rng), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(3, 2),  # im2col
        nn.Flatten(), nn.Linear(6 * 5 * 5, 16, rng=rng), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3, rng=rng),
    )
    net = nn.fuse(net)  # the first block becomes BatchNormReLUMaxPool2d; the 3x3 pooling stays apart
    if winograd:
        net = nn.use_winograd(net, winograd)
    x = rng.standard_normal((19, 1, 25, 25)).astype(np.float32)
    optimizer = optim.Adam(net.parameters(), lr=0.01)
    before = blas.get_num_threads()
    blas.set_num_threads(threads)
    try:
        # every kernel and every convolution's images shared out, however small
        with mock.patch.object(numba_config, "PARALLEL_MIN_WORK", 0), \
                mock.patch.object(conv, "MIN_SPLIT_BATCH_MACS", 0):
            out = net(x)
            dx = net.backward(np.cos(out))
            optimizer.step()
    finally:
        blas.set_num_threads(before)
    return [out, dx] + [p.data.copy() for p in net.parameters()]


@pytest.mark.parametrize("winograd", [0, 2, 4], ids=["im2col", "winograd-2x2", "winograd-4x4"])
def test_a_training_step_gives_the_same_bits_on_one_thread_and_on_three(winograd):
    one, three = _training_step(1, winograd), _training_step(3, winograd)
    assert len(one) == len(three) == 2 + 14  # out, dx, 7 layers x (weight, bias)
    for a, b in zip(one, three):
        np.testing.assert_array_equal(a, b)
