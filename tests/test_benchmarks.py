"""The benchmark scripts' own arithmetic (FLOP counts) and that they still run against today's API."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_kernels  # noqa: E402
import bench_train  # noqa: E402

from keypoints.models import naimishnet  # noqa: E402
from tinynet import nn, no_grad  # noqa: E402


@pytest.mark.parametrize("size", [96, 224])
def test_forward_flops_counts_every_conv_and_linear_multiply_add(size):
    """bench_train's analytic count against one traced through the real model: 2 FLOPs per multiply-add."""
    model = naimishnet(size).eval()
    counted = []

    def tracer(layer):
        original = layer.forward

        def forward(x):
            out = original(x)
            fan_in = layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels * np.prod(layer.kernel_size)
            counted.append(2 * out.size * int(fan_in))
            return out
        return forward

    for layer in model.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            object.__setattr__(layer, "forward", tracer(layer))
    with no_grad():
        model(np.zeros((1, 1, size, size), np.float32))
    assert len(counted) == 7
    assert bench_train.forward_flops(size) == sum(counted)
    if size == 96:
        assert bench_train.forward_flops(96) == 130_752_256


def test_kernel_table_rows_run():
    """Every naive/fast pair of bench_kernels runs on a small batch (guards the script against API drift)."""
    names = []
    for name, sides, shape, naive, fast in bench_kernels.rows(2, np.random.default_rng(0)):
        naive(), fast()
        names.append(name)
    assert len(names) == 19 and "BN + ReLU + pool backward" in names
