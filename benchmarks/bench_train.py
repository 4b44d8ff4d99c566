"""Training and inference speed of NaimishNet, tinynet against PyTorch on the same machine, same run.

    python benchmarks/bench_train.py [--net 96|224] [--batch 64] [--json] [--no-torch]

What is measured (batch 64, float32, every core in use):

- training step: forward, MSE loss, backward, Adam step, on random images and targets; images/s from
  the median step time, after warm-up steps (which also compile the Numba kernels);
- minor page faults per training step and the peak resident memory (``ru_maxrss``) of a process that
  does nothing but build the net and train it: each framework trains in its own fresh process;
- inference images/s at batch 64 and the latency of one face (batch 1), eval mode, no gradients;
- GFLOP/s: forward FLOPs counted analytically (2 per multiply-add of every Conv2d and Linear), a
  training step counted as 3x forward, against this machine's single-precision matmul peak, measured
  in the same run (NumPy ``a @ b``, 2048 x 2048).

PyTorch (``pip install torch==2.13.0``; never a dependency) gets the same weights (``torch_twin``)
and the same number of threads. Its figures appear beside tinynet's, with the ratio, when it is
importable. With ``--json`` the last line printed is one JSON object: ``train_img_per_s``,
``infer_img_per_s``, ``latency_ms``, ``peak_rss_mb``, ``train_gflops`` ... and ``torch_`` twins.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # torch_reference.py
sys.path.insert(0, str(HERE.parent))

#: measured training steps / inference batches / one-face calls, per net size (after the warm-up)
REPEATS = {96: dict(train=20, infer=10, latency=50), 224: dict(train=6, infer=4, latency=10)}
WARMUP = 2


# ---------------------------------------------------------------------------------------------
# Work done in a fresh process ("worker"): one framework, one job
# ---------------------------------------------------------------------------------------------
def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _timed(function, repeat: int, warmup: int = WARMUP) -> tuple[float, int, float]:
    """Median seconds per call, minor page faults per call, CPU seconds (user+sys) per call."""
    for _ in range(warmup):
        function()
    times = []
    faults, cpu = _faults(), time.process_time()
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), (_faults() - faults) // repeat, (time.process_time() - cpu) / repeat


def _data(size: int, batch: int):
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.random((batch, 1, size, size), dtype=np.float32)
    targets = rng.uniform(-1, 1, (batch, 136)).astype(np.float32)
    return images, targets


def _tinynet_model(size: int):
    from keypoints.models import naimishnet

    return naimishnet(size, seed=0)


def worker_train(framework: str, size: int, batch: int) -> dict:
    import tinynet  # noqa: F401  (first: it configures the thread pools before NumPy loads)

    images, targets = _data(size, batch)
    model = _tinynet_model(size)
    repeat = REPEATS[size]["train"]
    if framework == "tinynet":
        from tinynet import nn, optim

        model.train().skip_input_grad()
        criterion = nn.MSELoss()
        optimizer = optim.Adam(model.parameters(), lr=1e-3)

        def step():
            criterion(model(images), targets)
            optimizer.zero_grad()
            model.backward(criterion.backward())
            optimizer.step()
    else:
        import torch
        from torch_reference import torch_twin

        torch.set_num_threads(os.cpu_count() or 1)
        twin = torch_twin(model).train()
        del model
        criterion = torch.nn.MSELoss()
        optimizer = torch.optim.Adam(twin.parameters(), lr=1e-3)
        x, y = torch.from_numpy(images), torch.from_numpy(targets)

        def step():
            optimizer.zero_grad()
            criterion(twin(x), y).backward()
            optimizer.step()

    seconds, faults, cpu = _timed(step, repeat)
    return dict(train_img_per_s=batch / seconds, train_step_ms=1000 * seconds, faults_per_step=faults,
                cpu_s_per_step=cpu, peak_rss_mb=_peak_rss_mb())


def worker_infer(framework: str, size: int, batch: int) -> dict:
    import tinynet

    images, _ = _data(size, batch)
    one = images[:1].copy()
    model = _tinynet_model(size)
    model.eval()
    # eval mode with the statistics of a training batch rather than the initial (0, 1)
    model.train()(images)
    model.eval()
    if framework == "tinynet":
        def run(x):
            with tinynet.no_grad():
                return model(x)
        big, small = images, one
    else:
        import torch
        from torch_reference import torch_twin

        torch.set_num_threads(os.cpu_count() or 1)
        twin = torch_twin(model).eval()
        big, small = torch.from_numpy(images), torch.from_numpy(one)

        def run(x):
            with torch.no_grad():
                return twin(x)

    repeats = REPEATS[size]
    seconds, _, _ = _timed(lambda: run(big), repeats["infer"])
    latency, _, _ = _timed(lambda: run(small), repeats["latency"], warmup=5)
    return dict(infer_img_per_s=batch / seconds, latency_ms=1000 * latency)


def worker_startup(size: int, batch: int) -> dict:
    """Seconds from nothing to the end of the first training step (import included)."""
    start = time.perf_counter()
    import tinynet
    from tinynet import nn, optim

    imported = time.perf_counter()
    images, targets = _data(size, batch)
    model = _tinynet_model(size).train().skip_input_grad()
    criterion, optimizer = nn.MSELoss(), optim.Adam(model.parameters())
    criterion(model(images), targets)
    model.backward(criterion.backward())
    optimizer.step()
    done = time.perf_counter()
    del tinynet
    return dict(import_s=imported - start, first_step_s=done - imported, total_s=done - start)


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------
def forward_flops(size: int) -> int:
    """FLOPs of one image's forward pass: 2 per multiply-add of every Conv2d and Linear."""
    from keypoints.models import CHANNELS, KERNELS, feature_size

    flops, side, channels = 0, size, 1
    for out_channels, k in zip(CHANNELS, KERNELS[size]):
        side = side - k + 1
        flops += 2 * side * side * out_channels * channels * k * k
        side, channels = side // 2, out_channels
    flat = channels * feature_size(size, KERNELS[size]) ** 2
    for fan_in, fan_out in ((flat, 1000), (1000, 1000), (1000, 136)):
        flops += 2 * fan_in * fan_out
    return flops


def matmul_peak_gflops(n: int = 2048, repeat: int = 7) -> float:
    import numpy as np

    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = a.T.copy()
    seconds, _, _ = _timed(lambda: a @ b, repeat)
    return 2 * n**3 / seconds / 1e9


def run_worker(job: str, framework: str, size: int, batch: int, env: dict | None = None) -> dict:
    command = [sys.executable, __file__, "--worker", job, "--framework", framework, "--net", str(size), "--batch", str(batch)]
    if framework == "torch":
        # PyTorch as users get it: the worker imports tinynet (to build the net whose weights it
        # copies), so switch off what that import would change in the process (tinynet/_memory.py)
        env = dict(os.environ if env is None else env, TINYNET_MALLOC_TUNING="0")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"bench_train: the {framework} {job} worker failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def torch_version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", type=int, choices=(96, 224), default=96)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object, last")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even when it is importable")
    parser.add_argument("--startup", action="store_true", help="also time import + first step, cold and warm cache")
    parser.add_argument("--worker", choices=("train", "infer", "startup"), help=argparse.SUPPRESS)
    parser.add_argument("--framework", choices=("tinynet", "torch"), default="tinynet", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        if args.worker == "train":
            result = worker_train(args.framework, args.net, args.batch)
        elif args.worker == "infer":
            result = worker_infer(args.framework, args.net, args.batch)
        else:
            result = worker_startup(args.net, args.batch)
        print(json.dumps(result))
        return

    import numpy as np  # noqa: F401  (after nothing else: the driver itself runs no tinynet code)

    size, batch = args.net, args.batch
    version = None if args.no_torch else torch_version()
    frameworks = ["tinynet"] + (["torch"] if version else [])
    flops = forward_flops(size)
    results: dict = dict(net=size, batch=batch, cpu_count=os.cpu_count(), forward_mflops_per_image=flops / 1e6)
    results["matmul_peak_gflops"] = matmul_peak_gflops()
    for framework in frameworks:
        prefix = "" if framework == "tinynet" else "torch_"
        figures = run_worker("train", framework, size, batch)
        figures.update(run_worker("infer", framework, size, batch))
        figures["train_gflops"] = 3 * flops * figures["train_img_per_s"] / 1e9
        figures["infer_gflops"] = flops * figures["infer_img_per_s"] / 1e9
        figures["train_peak_fraction"] = figures["train_gflops"] / results["matmul_peak_gflops"]
        results.update({prefix + key: value for key, value in figures.items()})
    if version:
        results["torch_version"] = version
    if args.startup:
        import shutil
        import tempfile

        cache = tempfile.mkdtemp(prefix="tinynet-numba-cache-")
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        cold = run_worker("startup", "tinynet", size, batch, env)
        warm = run_worker("startup", "tinynet", size, batch, env)
        shutil.rmtree(cache, ignore_errors=True)
        results.update({f"startup_cold_{k}": v for k, v in cold.items()})
        results.update({f"startup_warm_{k}": v for k, v in warm.items()})

    print_table(results, "torch" in frameworks)
    if args.json:
        print(json.dumps(results))


ROWS = (
    ("training, images/s", "train_img_per_s", "{:.1f}", True),
    ("training step, ms", "train_step_ms", "{:.0f}", False),
    ("training GFLOP/s", "train_gflops", "{:.1f}", True),
    ("  fraction of matmul peak", "train_peak_fraction", "{:.0%}", True),
    ("minor page faults per step", "faults_per_step", "{:,}", False),
    ("CPU seconds per step", "cpu_s_per_step", "{:.2f}", False),
    ("peak RSS of training, MB", "peak_rss_mb", "{:.0f}", False),
    ("inference, images/s (batch 64)", "infer_img_per_s", "{:.1f}", True),
    ("one face (batch 1), ms", "latency_ms", "{:.2f}", False),
)


def print_table(results: dict, with_torch: bool) -> None:
    print(f"naimishnet({results['net']}), batch {results['batch']}, float32, {results['cpu_count']} cores; "
          f"forward {results['forward_mflops_per_image']:.1f} MFLOP/image; "
          f"matmul peak {results['matmul_peak_gflops']:.0f} GFLOP/s")
    header = f"{'':34}{'tinynet':>12}"
    if with_torch:
        header += f"{'PyTorch ' + results['torch_version'].split('+')[0]:>16}{'ratio':>10}"
    print(header)
    for label, key, fmt, higher_is_better in ROWS:
        line = f"{label:34}{fmt.format(results[key]):>12}"
        if with_torch:
            theirs = results["torch_" + key]
            ratio = results[key] / theirs if higher_is_better else theirs / results[key]
            line += f"{fmt.format(theirs):>16}{ratio:>9.2f}x"
        print(line)
    if with_torch:
        print("ratio: how many times better tinynet is (speed: ours / theirs; time, faults, memory: theirs / ours)")
    if "startup_cold_total_s" in results:
        for kind in ("cold", "warm"):
            print(f"start-up, {kind} Numba cache: import {results[f'startup_{kind}_import_s']:.2f} s + first training "
                  f"step {results[f'startup_{kind}_first_step_s']:.2f} s = {results[f'startup_{kind}_total_s']:.2f} s")


if __name__ == "__main__":
    main()
