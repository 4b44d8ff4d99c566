"""Training and inference speed of NaimishNet, tinynet against PyTorch on the same machine, same run.

    python benchmarks/bench_train.py [--net 96|224] [--batch 64] [--json] [--no-torch]

What is measured (batch 64, float32, every core in use):

- training step: forward, MSE loss, backward, Adam step, on random images and targets; images/s from
  the median step time, after warm-up steps (which also compile the Numba kernels);
- inference images/s at batch 64 and the latency of one face (batch 1), eval mode, no gradients;
- these three speeds are measured ``--rounds`` times per framework, each time in a fresh process, the
  frameworks taking turns (tinynet, PyTorch, tinynet, PyTorch, ...), and each figure is the median
  over the rounds: the machines here drift by +-30 % within a minute, and taking turns spreads the
  drift over both, so the ratios hold even when the absolute figures move;
- minor page faults per training step and the peak resident memory (``ru_maxrss``) of a process that
  does nothing but build the net and train it: each framework trains in its own fresh process;
- GFLOP/s: forward FLOPs counted analytically (2 per multiply-add of every Conv2d and Linear), a
  training step counted as 3x forward, against this machine's single-precision matmul peak, measured
  in the same run by :func:`matmul_peak`: NumPy ``a @ b`` float32 at 1024 and 2048, the *best* of 5
  products each, in a fresh process before and again after the speed rounds, the higher kept (a peak
  is what the machine can do: a median, or one measurement while the machine was busy, reads low and
  made an earlier version print "114 % of matmul peak"); the BLAS library, its CPU kernel and its
  threads are named (``threadpoolctl``). A fraction above 100 % is not printed as a figure: it says
  the peak was measured low, and to run again on a quiet machine.

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
REPEATS = {96: dict(train=10, infer=8, latency=40, memory=5), 224: dict(train=4, infer=3, latency=10, memory=3)}
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


def _train_step(framework: str, size: int, images, targets):
    """A function running one training step (forward, MSE, backward, Adam) of a fresh seeded net."""
    model = _tinynet_model(size)
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
        return step
    import torch
    from torch_reference import torch_twin

    torch.set_num_threads(os.cpu_count() or 1)
    twin = torch_twin(model).train()
    criterion = torch.nn.MSELoss()
    optimizer = torch.optim.Adam(twin.parameters(), lr=1e-3)
    x, y = torch.from_numpy(images), torch.from_numpy(targets)

    def step():
        optimizer.zero_grad()
        criterion(twin(x), y).backward()
        optimizer.step()
    return step


def _predict(framework: str, size: int, images):
    """A function ``run(batch)`` of the net in eval mode without gradients, and how to feed it."""
    import tinynet

    model = _tinynet_model(size)
    model.train()(images)  # eval mode with the statistics of a training batch rather than the initial (0, 1)
    model.eval()
    if framework == "tinynet":
        def run(x):
            with tinynet.no_grad():
                return model(x)
        return run, lambda a: a
    import torch
    from torch_reference import torch_twin

    torch.set_num_threads(os.cpu_count() or 1)
    twin = torch_twin(model).eval()

    def run(x):
        with torch.no_grad():
            return twin(x)
    return run, torch.from_numpy


def worker_train(framework: str, size: int, batch: int) -> dict:
    """A process that only trains: peak memory, page faults and CPU time per step."""
    import tinynet  # noqa: F401  (first: it configures the thread pools before NumPy loads)

    images, targets = _data(size, batch)
    step = _train_step(framework, size, images, targets)
    _, faults, cpu = _timed(step, REPEATS[size]["memory"])
    return dict(faults_per_step=faults, cpu_s_per_step=cpu, peak_rss_mb=_peak_rss_mb())


def _alternating(functions: dict, repeat: int, warmup: int = WARMUP) -> dict:
    """Median seconds per call of each function, calling them in turn (a, b, a, b, ...): on a
    machine whose speed drifts, each framework then meets the same conditions."""
    for _ in range(warmup):
        for function in functions.values():
            function()
    times = {name: [] for name in functions}
    for _ in range(repeat):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def worker_speed(frameworks: list[str], size: int, batch: int) -> dict:
    """Training, inference and one-face speed of each framework (in turn when several share a process)."""
    import tinynet  # noqa: F401  (first: it configures the thread pools before NumPy loads)

    images, targets = _data(size, batch)
    repeats = REPEATS[size]
    steps = {fw: _train_step(fw, size, images, targets) for fw in frameworks}
    train = _alternating(steps, repeats["train"])
    del steps
    predictors = {fw: _predict(fw, size, images) for fw in frameworks}
    big = {fw: (lambda run=run, x=feed(images): run(x)) for fw, (run, feed) in predictors.items()}
    one = images[:1].copy()
    small = {fw: (lambda run=run, x=feed(one): run(x)) for fw, (run, feed) in predictors.items()}
    infer = _alternating(big, repeats["infer"])
    latency = _alternating(small, repeats["latency"], warmup=5)
    result = {}
    for fw in frameworks:
        prefix = "" if fw == "tinynet" else "torch_"
        result.update({prefix + "train_img_per_s": batch / train[fw], prefix + "train_step_ms": 1000 * train[fw],
                       prefix + "infer_img_per_s": batch / infer[fw], prefix + "latency_ms": 1000 * latency[fw]})
    return result


def worker_peak() -> dict:
    """A process that only measures the matmul peak (nothing else of the benchmark has run in it)."""
    return matmul_peak()


def worker_startup(size: int, batch: int) -> dict:
    """Seconds from nothing to the end of the first training step (import included)."""
    start = time.perf_counter()
    from tinynet import nn, optim

    imported = time.perf_counter()
    images, targets = _data(size, batch)
    model = _tinynet_model(size).train().skip_input_grad()
    criterion, optimizer = nn.MSELoss(), optim.Adam(model.parameters())
    criterion(model(images), targets)
    model.backward(criterion.backward())
    optimizer.step()
    done = time.perf_counter()
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


def blas_description() -> str:
    """NumPy's BLAS as ``threadpoolctl`` sees it: library, version, CPU kernel, threads."""
    from threadpoolctl import threadpool_info

    pools = [pool for pool in threadpool_info() if pool.get("user_api") == "blas"]
    if not pools:
        return "unknown BLAS"
    pool = pools[0]
    kernel = f", {pool['architecture']} kernel" if pool.get("architecture") else ""
    return f"{pool['internal_api']} {pool.get('version') or ''}{kernel}, {pool['num_threads']} threads".replace("  ", " ")


def matmul_peak(sizes: tuple[int, ...] = (1024, 2048), repeat: int = 5) -> dict:
    """This process's single-precision matmul peak: the best GFLOP/s of ``repeat`` products ``a @ b``
    (float32, n x n) at each of ``sizes``, after one warm-up product each; and the BLAS that gave it."""
    import numpy as np

    best = 0.0
    for n in sizes:
        a = np.random.default_rng(0).random((n, n), dtype=np.float32)
        b = a.T.copy()
        a @ b  # warm-up: threads started, pages touched
        for _ in range(repeat):
            start = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return dict(matmul_peak_gflops=best, blas=blas_description())


def run_worker(job: str, framework: str, size: int, batch: int, env: dict | None = None) -> dict:
    command = [sys.executable, __file__, "--worker", job, "--framework", framework, "--net", str(size), "--batch", str(batch)]
    if "torch" in framework.split(","):
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
    parser.add_argument("--rounds", type=int, default=3, help="speed measurements per framework, taken in turns")
    parser.add_argument("--startup", action="store_true", help="also time import + first step, cold and warm cache")
    parser.add_argument("--worker", choices=("train", "speed", "startup", "peak"), help=argparse.SUPPRESS)
    parser.add_argument("--framework", default="tinynet", help=argparse.SUPPRESS)  # speed: "tinynet,torch"
    args = parser.parse_args()

    if args.worker:
        if args.worker == "train":
            result = worker_train(args.framework, args.net, args.batch)
        elif args.worker == "speed":
            result = worker_speed(args.framework.split(","), args.net, args.batch)
        elif args.worker == "peak":
            result = worker_peak()
        else:
            result = worker_startup(args.net, args.batch)
        print(json.dumps(result))
        return

    size, batch = args.net, args.batch
    version = None if args.no_torch else torch_version()
    frameworks = ["tinynet"] + (["torch"] if version else [])
    flops = forward_flops(size)
    results: dict = dict(net=size, batch=batch, cpu_count=os.cpu_count(), forward_mflops_per_image=flops / 1e6)
    peaks = [run_worker("peak", "tinynet", size, batch)]  # before the speed rounds, and after them (below)
    # speeds: a fresh process per framework, in turns (tinynet, torch, tinynet, torch, ...), the median
    # of each figure over the rounds: the machine's speed drifts, and turns spread the drift evenly
    rounds = [{fw: run_worker("speed", fw, size, batch) for fw in frameworks} for _ in range(args.rounds)]
    for framework in frameworks:
        for key in rounds[0][framework]:
            results[key] = statistics.median(r[framework][key] for r in rounds)
    peaks.append(run_worker("peak", "tinynet", size, batch))
    results["matmul_peak_gflops"] = max(peak["matmul_peak_gflops"] for peak in peaks)
    results["matmul_peak_runs_gflops"] = [peak["matmul_peak_gflops"] for peak in peaks]
    results["blas"] = peaks[-1]["blas"]
    for framework in frameworks:
        prefix = "" if framework == "tinynet" else "torch_"
        results.update({prefix + key: value for key, value in run_worker("train", framework, size, batch).items()})
        results[prefix + "train_gflops"] = 3 * flops * results[prefix + "train_img_per_s"] / 1e9
        results[prefix + "infer_gflops"] = flops * results[prefix + "infer_img_per_s"] / 1e9
        results[prefix + "train_peak_fraction"] = results[prefix + "train_gflops"] / results["matmul_peak_gflops"]
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


def format_figure(key: str, value: float, fmt: str) -> str:
    """``value`` in ``fmt``; a fraction of the matmul peak above 100 % is a measurement error, not a figure."""
    if key.endswith("peak_fraction") and value > 1:
        return "(>100 %)"
    return fmt.format(value)


def print_table(results: dict, with_torch: bool) -> None:
    runs = ", ".join(f"{g:.0f}" for g in results["matmul_peak_runs_gflops"])
    print(f"naimishnet({results['net']}), batch {results['batch']}, float32, {results['cpu_count']} cores; "
          f"forward {results['forward_mflops_per_image']:.1f} MFLOP/image; "
          f"matmul peak {results['matmul_peak_gflops']:.0f} GFLOP/s (best of the runs {runs}; {results['blas']})")
    header = f"{'':34}{'tinynet':>12}"
    if with_torch:
        header += f"{'PyTorch ' + results['torch_version'].split('+')[0]:>16}{'ratio':>10}"
    print(header)
    for label, key, fmt, higher_is_better in ROWS:
        line = f"{label:34}{format_figure(key, results[key], fmt):>12}"
        if with_torch:
            theirs = results["torch_" + key]
            better, worse = (results[key], theirs) if higher_is_better else (theirs, results[key])
            ratio = f"{better / worse:>9.2f}x" if worse > 0 else f"{'-':>10}"  # e.g. no page faults at all
            line += f"{format_figure(key, theirs, fmt):>16}{ratio}"
        print(line)
    if any(results.get(prefix + "train_peak_fraction", 0) > 1 for prefix in ("", "torch_")):
        print("the matmul peak was measured low (the machine was busy while it was measured): a fraction of it above"
              " 100 % means nothing; run again on a quiet machine")
    if with_torch:
        print("ratio: how many times better tinynet is (speed: ours / theirs; time, faults, memory: theirs / ours)")
    if "startup_cold_total_s" in results:
        for kind in ("cold", "warm"):
            print(f"start-up, {kind} Numba cache: import {results[f'startup_{kind}_import_s']:.2f} s + first training "
                  f"step {results[f'startup_{kind}_first_step_s']:.2f} s = {results[f'startup_{kind}_total_s']:.2f} s")


if __name__ == "__main__":
    main()
