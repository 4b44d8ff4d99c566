"""Forward and backward time of every layer of the keypoint network, fast kernels vs plain NumPy.

    python benchmarks/bench_layers.py [--size 96|224] [--batch 64] [--repeats 5] [--no-reference]

For each layer of ``naimishnet(size)`` at its real input shape (batch 64 by default) it prints the
median time of the forward and backward passes of tinynet's layer and of the plain-NumPy reference
beside it (``conv2d_forward_reference``, ``maxpool2d_forward_reference``, the batch-norm and ReLU
references), the speed-up, and GFLOP/s for the layers whose FLOPs are counted (conv, linear: forward
``2 * N * out * in * kh * kw * OH * OW``, backward twice that; the reference convolution is only timed
for the forward pass, it is slow).

The table is the teaching view of the optimisations: how much each kernel buys over the textbook code.
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

from keypoints.models import naimishnet  # noqa: E402
from tinynet._checks import pair  # noqa: E402
from tinynet.functional import activation as A  # noqa: E402
from tinynet.functional import batchnorm as B  # noqa: E402
from tinynet.functional.conv import conv2d_forward_reference  # noqa: E402
from tinynet.functional.pooling import maxpool2d_backward_reference, maxpool2d_forward_reference  # noqa: E402
from tinynet.nn import BatchNorm1d, BatchNorm2d, Conv2d, Linear, MaxPool2d, ReLU  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up (and Numba compilation on a cold cache)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def flops(layer, x_shape, out_shape) -> float:
    """Forward FLOPs (multiply + add) of conv and linear layers; 0 for the others."""
    if isinstance(layer, Conv2d):
        n, f, oh, ow = out_shape
        kh, kw = layer.kernel_size
        return 2.0 * n * f * oh * ow * layer.in_channels * kh * kw
    if isinstance(layer, Linear):
        return 2.0 * x_shape[0] * layer.in_features * layer.out_features
    return 0.0


def reference_pair(layer, x: np.ndarray, dout: np.ndarray):
    """(forward, backward) closures of the plain-NumPy reference of ``layer``, or None."""
    if isinstance(layer, Conv2d):
        w, b = layer.weight.data, layer.bias.data
        return (lambda: conv2d_forward_reference(x, w, b, layer.stride, layer.padding), None)
    if isinstance(layer, MaxPool2d):
        window = pair(layer.kernel_size), pair(layer.stride), pair(layer.padding)
        out, argmax = maxpool2d_forward_reference(x, *window)
        return (
            lambda: maxpool2d_forward_reference(x, *window),
            lambda: maxpool2d_backward_reference(dout, argmax, x.shape),
        )
    if isinstance(layer, (BatchNorm1d, BatchNorm2d)):
        args = (layer.weight.data, layer.bias.data, layer.running_mean.copy(), layer.running_var.copy(), True)
        _, cache = B.batchnorm_forward_reference(x, *args)
        return (lambda: B.batchnorm_forward_reference(x, *args), lambda: B.batchnorm_backward_reference(dout, cache))
    if isinstance(layer, ReLU):
        _, cache = A.relu_forward_reference(x)
        return (lambda: A.relu_forward_reference(x), lambda: A.relu_backward_reference(dout, cache))
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=96, choices=(96, 224))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-reference", action="store_true", help="time tinynet's layers only")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    model = naimishnet(args.size, seed=0).train()
    layers = [(f"features.{i}", m) for i, m in enumerate(model.features)] + [("flatten", model.flatten)]
    layers += [(f"regressor.{i}", m) for i, m in enumerate(model.regressor)]
    x = rng.random((args.batch, 1, args.size, args.size), dtype=np.float32)

    header = (
        f"{'layer':<13} {'type':<12} {'input shape':<20} {'fwd ms':>8} {'bwd ms':>8} {'GFLOP/s':>8}"
        f" | {'ref fwd':>9} {'ref bwd':>9} {'speed-up':>9}"
    )
    print(f"naimishnet({args.size}), batch {args.batch}, float32, median of {args.repeats}; reference = plain NumPy")
    print(header)
    print("-" * len(header))
    total_fwd = total_bwd = 0.0
    for name, layer in layers:
        out = layer(x)
        dout = rng.standard_normal(out.shape).astype(np.float32)
        fwd = median_ms(lambda: layer(x), args.repeats)
        layer(x)
        bwd = median_ms(lambda: layer.backward(dout), args.repeats)
        total_fwd += fwd
        total_bwd += bwd
        work = flops(layer, x.shape, out.shape)
        gflops = f"{(3 * work) / ((fwd + bwd) / 1000) / 1e9:8.1f}" if work else f"{'':8}"
        ref_text = f"{'':>9} {'':>9} {'':>9}"
        pair = None if args.no_reference else reference_pair(layer, x, dout)
        if pair is not None:
            ref_fwd = median_ms(pair[0], max(1, min(args.repeats, 3)))
            ref_bwd = median_ms(pair[1], max(1, min(args.repeats, 3))) if pair[1] else None
            speedup = (ref_fwd + (ref_bwd or 0)) / (fwd + (bwd if ref_bwd else 0))
            ref_text = f"{ref_fwd:9.1f} {ref_bwd if ref_bwd else float('nan'):9.1f} {speedup:8.1f}x"
        print(f"{name:<13} {type(layer).__name__:<12} {str(x.shape):<20} {fwd:8.1f} {bwd:8.1f} {gflops} | {ref_text}")
        x = out
    print("-" * len(header))
    total = total_fwd + total_bwd
    print(f"{'total':<13} {'':<12} {'':<20} {total_fwd:8.1f} {total_bwd:8.1f}  -> {args.batch / (total / 1000):.1f} images/s (layers only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
