"""Naive against fast, kernel by kernel: what each optimisation in tinynet buys (the teaching view).

    python benchmarks/bench_kernels.py [--repeat 5] [--batch 64]

Every fast kernel in tinynet has a plain NumPy reference beside it (the tests compare the two). This
times both on the shapes NaimishNet-96 meets in training (batch 64, float32) and prints the
speed-up. Each figure is the median of ``--repeat`` calls after one warm-up call; the two sides of
a row are timed in turns (naive, fast, naive, fast, ...) so that the machine's drift hits both.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tinynet  # noqa: E402,F401  (first: it configures the thread pools before NumPy loads)
import numpy as np  # noqa: E402

import tinynet.functional.conv as conv  # noqa: E402
from tinynet.functional import activation, batchnorm, fused, pooling, winograd  # noqa: E402
from tinynet.functional import im2col as unfold  # noqa: E402
from tinynet.optim.adam import _adam_update_, adam_update_reference  # noqa: E402


def in_turns(naive, fast, repeat: int) -> tuple[float, float]:
    """Median milliseconds of each, calling them alternately."""
    naive(), fast()
    times: tuple[list, list] = ([], [])
    for _ in range(repeat):
        for function, bucket in ((naive, times[0]), (fast, times[1])):
            start = time.perf_counter()
            function()
            bucket.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[0]), 1000 * statistics.median(times[1])


def rows(batch: int, rng: np.random.Generator):
    """(kernel, what the naive and fast sides are, shape, naive, fast) for every row of the table."""
    f32 = np.float32

    def rand(*shape):
        return rng.standard_normal(shape).astype(f32)

    # conv2 of NaimishNet-96: 32 -> 64 channels, 3x3, on 46x46
    x, w, b = rand(batch, 32, 46, 46), rand(64, 32, 3, 3), rand(64)
    cols = unfold.im2col(x, 3)
    yield ("im2col", "NumPy slices / Numba", x.shape,
           lambda: unfold.im2col_reference(x, (3, 3), (1, 1), (0, 0)), lambda: unfold.im2col(x, 3, out=cols))
    yield ("col2im", "NumPy slices / Numba", x.shape,
           lambda: unfold.col2im_reference(cols, x.shape, (3, 3), (1, 1), (0, 0)), lambda: unfold.col2im(cols, x.shape, 3))
    out, cache = conv.conv2d_forward(x, w, b)
    dout = rand(*out.shape)
    yield ("conv2d forward", "offset loop of matmuls / im2col + BLAS", x.shape,
           lambda: conv.conv2d_forward_reference(x, w, b), lambda: conv.conv2d_forward(x, w, b))
    yield ("conv2d backward", "offset loop of matmuls / im2col + BLAS", x.shape,
           lambda: conv.conv2d_backward_reference(dout, x, w, True), lambda: conv.conv2d_backward(dout, cache))
    _, winograd_cache = winograd.conv2d_winograd_forward(x, w, b)
    yield ("conv2d forward, 3x3", "im2col + BLAS / Winograd F(2x2, 3x3)", x.shape,
           lambda: conv.conv2d_forward(x, w, b), lambda: winograd.conv2d_winograd_forward(x, w, b))
    yield ("conv2d backward, 3x3", "im2col + BLAS / Winograd F(2x2, 3x3)", x.shape,
           lambda: conv.conv2d_backward(dout, cache), lambda: winograd.conv2d_winograd_backward(dout, winograd_cache))

    # conv1: one input channel, 4x4 on 96x96
    x1, w1, b1 = rand(batch, 1, 96, 96), rand(32, 1, 4, 4), rand(32)
    out1, cache1 = conv.conv2d_forward(x1, w1, b1)
    dout1 = rand(*out1.shape)

    def im2col_path(function):
        def run():
            real, conv._is_single_channel = conv._is_single_channel, lambda *a: False
            try:
                return function()
            finally:
                conv._is_single_channel = real
        return run
    yield ("conv2d forward, 1 channel", "im2col + BLAS / direct loops", x1.shape,
           im2col_path(lambda: conv.conv2d_forward(x1, w1, b1)), lambda: conv.conv2d_forward(x1, w1, b1))
    yield ("conv2d weight grad, 1 channel", "im2col + BLAS / direct loops", x1.shape,
           im2col_path(lambda: conv.conv2d_backward(dout1, cache1, need_dx=False)),
           lambda: conv.conv2d_backward(dout1, cache1, need_dx=False))

    # the first block's tail: 32 x 93 x 93 feature maps
    y = rand(batch, 32, 93, 93)
    gamma, beta = rng.uniform(0.5, 1.5, 32).astype(f32), rand(32)

    def stats():
        return np.zeros(32, f32), np.ones(32, f32)
    bn_ref_out, bn_ref_cache = batchnorm.batchnorm_forward_reference(y, gamma, beta, *stats(), True)
    bn_out, bn_cache = batchnorm.batchnorm_forward(y, gamma, beta, *stats(), True)
    yield ("batch norm forward", "NumPy / Numba (2 passes)", y.shape,
           lambda: batchnorm.batchnorm_forward_reference(y, gamma, beta, *stats(), True),
           lambda: batchnorm.batchnorm_forward(y, gamma, beta, *stats(), True))
    yield ("batch norm backward", "NumPy / Numba (2 passes)", y.shape,
           lambda: batchnorm.batchnorm_backward_reference(y, bn_ref_cache), lambda: batchnorm.batchnorm_backward(y, bn_cache))
    relu_out, relu_cache = activation.relu_forward(y)
    yield ("ReLU forward", "np.maximum / Numba", y.shape,
           lambda: activation.relu_forward_reference(y), lambda: activation.relu_forward(y))
    yield ("ReLU backward", "np.where / Numba", y.shape,
           lambda: activation.relu_backward_reference(y, relu_cache), lambda: activation.relu_backward(y, relu_cache))
    pooled, pool_cache = pooling.maxpool2d_forward(y, 2)
    dpool = rand(*pooled.shape)
    yield ("max pool 2x2 forward", "NumPy offsets / Numba", y.shape,
           lambda: pooling.maxpool2d_forward_reference(y, (2, 2), (2, 2), (0, 0)), lambda: pooling.maxpool2d_forward(y, 2))
    yield ("max pool 2x2 backward", "np.add.at / Numba", y.shape,
           lambda: pooling.maxpool2d_backward_reference(dpool, pool_cache.argmax, y.shape),
           lambda: pooling.maxpool2d_backward(dpool, pool_cache, check_indices=False))

    def three_fast():
        o, c1 = batchnorm.batchnorm_forward(y, gamma, beta, *stats(), True)
        o, c2 = activation.relu_forward(o)
        o, c3 = pooling.maxpool2d_forward(o, 2)
        return (c1, c2, c3)
    caches = three_fast()

    def three_fast_backward():
        c1, c2, c3 = caches
        d = pooling.maxpool2d_backward(dpool, c3, check_indices=False)
        return batchnorm.batchnorm_backward(activation.relu_backward(d, c2), c1)
    fused_out, fused_cache = fused.batchnorm_relu_maxpool2d_forward(y, gamma, beta, *stats(), True)
    ref_out, ref_caches = fused.batchnorm_relu_maxpool2d_forward_reference(y, gamma, beta, *stats(), True)
    yield ("BN + ReLU + pool forward", "NumPy references chained / fused kernel", y.shape,
           lambda: fused.batchnorm_relu_maxpool2d_forward_reference(y, gamma, beta, *stats(), True),
           lambda: fused.batchnorm_relu_maxpool2d_forward(y, gamma, beta, *stats(), True))
    yield ("BN + ReLU + pool backward", "NumPy references chained / fused kernel", y.shape,
           lambda: fused.batchnorm_relu_maxpool2d_backward_reference(dpool, ref_caches),
           lambda: fused.batchnorm_relu_maxpool2d_backward(dpool, fused_cache))
    yield ("BN + ReLU + pool forward", "three fast kernels / fused kernel", y.shape,
           three_fast, lambda: fused.batchnorm_relu_maxpool2d_forward(y, gamma, beta, *stats(), True))
    yield ("BN + ReLU + pool backward", "three fast kernels / fused kernel", y.shape,
           three_fast_backward, lambda: fused.batchnorm_relu_maxpool2d_backward(dpool, fused_cache))

    # Adam on the 6400 -> 1000 weight
    p, g = rand(1000, 6400), rand(1000, 6400)
    m, v, scratch = np.zeros_like(p), np.zeros_like(p), np.empty_like(p)
    kwargs = dict(step=1, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False)
    yield ("Adam update", "NumPy out= ops / one Numba pass", p.shape,
           lambda: adam_update_reference(p, g, m, v, None, scratch, **kwargs), lambda: _adam_update_(p, g, m, v, None, **kwargs))

    # one image: thread wake-ups against the work itself
    y1 = y[:1].copy()
    scale, shift = np.ones(32), np.zeros(32)
    o1, w1_ = np.empty((1, 32, 46, 46), f32), np.empty((1, 32, 46, 46), np.int8)
    from tinynet.kernels.fused import bn_relu_maxpool_forward_kernel as kernel
    yield ("fused forward, one image", "parallel (2 threads) / serial", y1.shape,
           lambda: kernel.parallel(y1, scale, shift, o1, w1_), lambda: kernel.serial(y1, scale, shift, o1, w1_))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    print(f"batch {args.batch}, float32, median of {args.repeat} calls taken in turns (ms)")
    header = f"{'kernel':31}{'naive / fast':42}{'input shape':22}{'naive':>9}{'fast':>9}{'speed-up':>10}"
    print(header)
    print("-" * len(header))
    for name, sides, shape, naive, fast in rows(args.batch, np.random.default_rng(0)):
        slow_ms, fast_ms = in_turns(naive, fast, args.repeat)
        print(f"{name:31}{sides:42}{str(shape):22}{slow_ms:>9.1f}{fast_ms:>9.1f}{slow_ms / fast_ms:>9.1f}x", flush=True)


if __name__ == "__main__":
    main()
