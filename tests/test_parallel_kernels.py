"""Every Numba kernel is compiled twice, parallel and serial, and small inputs run the serial one
(``tinynet._numba.PARALLEL_MIN_WORK``). The unit tests' inputs are small, so here the property tests of
the kernels run again with the threshold at 0: the parallel versions against the same references."""
from unittest import mock

import numpy as np
import pytest

import tinynet._numba as numba_config
import test_conv_pool
import test_fast_kernels
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
