"""Where a training step of NaimishNet spends its time, layer by layer, forward and backward.

    python benchmarks/profile_train.py [--net 96|224] [--batch 64] [--repeat 5]

Runs real training steps (forward, MSE, backward, Adam) and times every step of every
``Sequential`` as the model runs it, child by child (NaimishNet's fused ``BatchNormReLUMaxPool2d``
blocks are one row each). Each row is the median over ``--repeat`` steps after two warm-up steps; the last lines give the
loss, the optimizer and the sum, to compare with ``bench_train.py``'s step time.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tinynet  # noqa: E402  (first: it configures the thread pools before NumPy loads)
import numpy as np  # noqa: E402
from tinynet import nn, optim  # noqa: E402


def profiled_step(model, criterion, optimizer, images, targets, times) -> None:
    """One training step, timing each step of each part; same arithmetic as ``model(images)`` etc."""
    parts = [("features", model.features), ("flatten", model.flatten), ("regressor", model.regressor)]
    x = images
    ran: list[tuple[str, object]] = []
    for prefix, part in parts:
        if isinstance(part, nn.Sequential):
            for index, step in enumerate(part):  # what Sequential.forward does, one timed child at a time
                name = f"{prefix}.{index} {type(step).__name__}"
                start = time.perf_counter()
                x = step(x)
                times[name, "fwd"].append(time.perf_counter() - start)
                ran.append((name, step))
        else:
            start = time.perf_counter()
            x = part(x)
            times[prefix, "fwd"].append(time.perf_counter() - start)
            ran.append((prefix, part))
    start = time.perf_counter()
    criterion(x, targets)
    dout = criterion.backward()
    times["MSE loss", "fwd"].append(time.perf_counter() - start)
    optimizer.zero_grad()
    for name, step in reversed(ran):
        start = time.perf_counter()
        dout = step.backward(dout)
        times[name, "bwd"].append(time.perf_counter() - start)
    start = time.perf_counter()
    optimizer.step()
    times["Adam step", "fwd"].append(time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", type=int, choices=(96, 224), default=96)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from keypoints.models import naimishnet

    rng = np.random.default_rng(0)
    images = rng.random((args.batch, 1, args.net, args.net), dtype=np.float32)
    targets = rng.uniform(-1, 1, (args.batch, 136)).astype(np.float32)
    model = naimishnet(args.net, seed=0, winograd=True).train().skip_input_grad()  # as keypoints.train trains it
    criterion, optimizer = nn.MSELoss(), optim.Adam(model.parameters(), lr=1e-3)
    times: dict = defaultdict(list)
    for _ in range(2):
        profiled_step(model, criterion, optimizer, images, targets, defaultdict(list))
    for _ in range(args.repeat):
        profiled_step(model, criterion, optimizer, images, targets, times)
    names = list(dict.fromkeys(name for name, _ in times))
    print(f"naimishnet({args.net}), batch {args.batch}, training step, median of {args.repeat} (ms)")
    print(f"{'step':44}{'forward':>10}{'backward':>10}{'share':>8}")
    total = sum(statistics.median(v) for v in times.values())
    for name in names:
        fwd = statistics.median(times[name, "fwd"]) if (name, "fwd") in times else 0.0
        bwd = statistics.median(times[name, "bwd"]) if (name, "bwd") in times else 0.0
        print(f"{name:44}{1000 * fwd:>10.1f}{1000 * bwd:>10.1f}{(fwd + bwd) / total:>8.0%}")
    fwd_total = sum(statistics.median(v) for (n, kind), v in times.items() if kind == "fwd")
    bwd_total = sum(statistics.median(v) for (n, kind), v in times.items() if kind == "bwd")
    print(f"{'total':44}{1000 * fwd_total:>10.1f}{1000 * bwd_total:>10.1f}   -> {args.batch / total:.1f} images/s")


if __name__ == "__main__":
    main()
