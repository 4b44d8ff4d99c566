"""Training and inference speed of NaimishNet, tinynet against PyTorch on the same machine, same run.

    python benchmarks/bench_train.py [--net 96|224] [--batch 64] [--load N] [--json] [--no-torch]

What is measured (batch 64, float32, every core in use):

- training step: forward, MSE loss, backward, Adam step, on random images and targets; images/s from
  the median step time, after warm-up steps (which also compile the Numba kernels);
- inference images/s at batch 64 and the latency of one face (batch 1), eval mode, no gradients, in a process
  that has not trained, as ``python -m keypoints predict`` and ``evaluate`` run (after a training product
  tinynet keeps NumPy's BLAS on one thread and shares products out over its own threads, ``tinynet.blas``: in
  the process that had just trained, one face took 10.6 ms against 9.7 for PyTorch, a figure no predict user meets);
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

- with ``--load N``, each round also times training while another compute job runs (a NumPy float32
  matmul loop with N BLAS threads, ``competing_load.py``, started and stopped here): the share of its
  idle speed each framework keeps, and the ratio between them under the same load.

PyTorch (``pip install torch==2.13.0``; never a dependency) gets the same weights and the same number of
threads. Its workers import nothing of tinynet (a worker that did is refused): this process writes the
nets to files (``torch_reference.save_twin``) and they build them with NumPy and torch alone. Its figures
appear beside tinynet's, with the ratio, when it is importable. With ``--json`` the last line printed is one JSON object: ``train_img_per_s``,
``infer_img_per_s``, ``latency_ms``, ``peak_rss_mb``, ``train_gflops`` ... and ``torch_`` twins.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # torch_reference.py, competing_load.py
sys.path.insert(0, str(HERE.parent))

from competing_load import CompetingLoad  # noqa: E402
from matmul_peak import matmul_peak  # noqa: E402
from train_report import print_table  # noqa: E402

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


def _tinynet_model(size: int, training: bool = False):
    """The seeded net as ``keypoints.train`` trains it (``training``: its 3x3 convolution a ``WinogradConv2d``), or
    as the photo commands run it (every convolution im2col's)."""
    from keypoints.models import naimishnet

    return naimishnet(size, seed=0, winograd=training)


def _train_step(framework: str, size: int, images, targets, twins: str | None):
    """A function running one training step (forward, MSE, backward, Adam) of a fresh seeded net; PyTorch's
    twin of that net comes from ``twins/train.npz`` (this process then imports nothing of tinynet)."""
    if framework == "tinynet":
        from tinynet import nn, optim

        model = _tinynet_model(size, training=True).train().skip_input_grad()
        criterion = nn.MSELoss()
        optimizer = optim.Adam(model.parameters(), lr=1e-3)

        def step():
            criterion(model(images), targets)
            optimizer.zero_grad()
            model.backward(criterion.backward())
            optimizer.step()
        return step
    import torch
    from torch_reference import load_twin

    torch.set_num_threads(os.cpu_count() or 1)
    twin = load_twin(Path(twins) / "train.npz").train()
    criterion = torch.nn.MSELoss()
    optimizer = torch.optim.Adam(twin.parameters(), lr=1e-3)
    x, y = torch.from_numpy(images), torch.from_numpy(targets)

    def step():
        optimizer.zero_grad()
        criterion(twin(x), y).backward()
        optimizer.step()
    return step


def _eval_model(size: int, images):
    """The seeded net in eval mode with the statistics of a training batch rather than the initial (0, 1)."""
    model = _tinynet_model(size)
    model.train()(images)
    return model.eval()


def _predict(framework: str, size: int, images, twins: str | None):
    """A function ``run(batch)`` of the net in eval mode without gradients, and how to feed it; PyTorch's
    twin comes from ``twins/eval.npz``."""
    if framework == "tinynet":
        import tinynet

        model = _eval_model(size, images)

        def run(x):
            with tinynet.no_grad():
                return model(x)
        return run, lambda a: a
    import torch
    from torch_reference import load_twin

    torch.set_num_threads(os.cpu_count() or 1)
    twin = load_twin(Path(twins) / "eval.npz").eval()

    def run(x):
        with torch.no_grad():
            return twin(x)
    return run, torch.from_numpy


def write_twins(size: int, batch: int, folder: Path) -> None:
    """The nets PyTorch's workers measure, as files: ``train.npz`` (fresh, seeded) and ``eval.npz``."""
    from torch_reference import save_twin

    images, _ = _data(size, batch)
    save_twin(_tinynet_model(size, training=True).train(), folder / "train.npz")
    save_twin(_eval_model(size, images), folder / "eval.npz")


def _imports_tinynet() -> bool:
    return any(name.split(".")[0] in ("tinynet", "keypoints") for name in sys.modules)


def worker_train(framework: str, size: int, batch: int, twins: str | None) -> dict:
    """A process that only trains: peak memory, page faults and CPU time per step."""
    if framework == "tinynet":
        import tinynet  # noqa: F401  (first: it configures the thread pools before NumPy loads)

    images, targets = _data(size, batch)
    step = _train_step(framework, size, images, targets, twins)
    _, faults, cpu = _timed(step, REPEATS[size]["memory"])
    return dict(faults_per_step=faults, cpu_s_per_step=cpu, peak_rss_mb=_peak_rss_mb(), imports_tinynet=_imports_tinynet())


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


def worker_speed(frameworks: list[str], size: int, batch: int, twins: str | None, train_only: bool = False,
                 infer_only: bool = False) -> dict:
    """Training, inference and one-face speed of each framework (in turn when several share a process);
    ``train_only``: the training speed alone (what ``--load`` measures); ``infer_only``: the inference speeds
    alone, in a process that trains nothing (the rounds measure them so)."""
    if "tinynet" in frameworks:
        import tinynet  # noqa: F401  (first: it configures the thread pools before NumPy loads)

    images, targets = _data(size, batch)
    repeats = REPEATS[size]
    result = {}
    if not infer_only:
        steps = {fw: _train_step(fw, size, images, targets, twins) for fw in frameworks}
        train = _alternating(steps, repeats["train"])
        del steps
        for fw in frameworks:
            prefix = "" if fw == "tinynet" else "torch_"
            result.update({prefix + "train_img_per_s": batch / train[fw], prefix + "train_step_ms": 1000 * train[fw]})
    if not train_only:
        result.update(_inference_speeds(frameworks, size, images, twins, repeats))
    result["imports_tinynet"] = _imports_tinynet()  # last: after everything the worker ran
    return result


def _inference_speeds(frameworks: list[str], size: int, images, twins: str | None, repeats: dict) -> dict:
    """Inference images/s at ``len(images)`` and the one-face latency of each framework, taking turns."""
    result = {}
    predictors = {fw: _predict(fw, size, images, twins) for fw in frameworks}
    big = {fw: (lambda run=run, x=feed(images): run(x)) for fw, (run, feed) in predictors.items()}
    one = images[:1].copy()
    small = {fw: (lambda run=run, x=feed(one): run(x)) for fw, (run, feed) in predictors.items()}
    infer = _alternating(big, repeats["infer"])
    latency = _alternating(small, repeats["latency"], warmup=5)
    for fw in frameworks:
        prefix = "" if fw == "tinynet" else "torch_"
        result.update({prefix + "infer_img_per_s": len(images) / infer[fw], prefix + "latency_ms": 1000 * latency[fw]})
    return result


def worker_peak() -> dict:
    """A process that only measures the matmul peak (nothing else of the benchmark has run in it)."""
    return matmul_peak()


def worker_startup(size: int, batch: int) -> dict:
    """Seconds from nothing to the end of the first training step (import included)."""
    start = time.perf_counter()
    import tinynet.compile
    from tinynet import nn, optim

    compiling = tinynet.compile.start_background()  # as keypoints.train does before its data (None when warm)
    imported = time.perf_counter()
    images, targets = _data(size, batch)
    model = _tinynet_model(size, training=True).train().skip_input_grad()
    criterion, optimizer = nn.MSELoss(), optim.Adam(model.parameters())
    criterion(model(images), targets)
    model.backward(criterion.backward())
    optimizer.step()
    done = time.perf_counter()
    if compiling is not None:
        compiling.wait()
    return dict(import_s=imported - start, first_step_s=done - imported, total_s=done - start,
                background_compile=compiling is not None)


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


def run_worker(job: str, framework: str, size: int, batch: int, env: dict | None = None, twins: Path | None = None,
               train_only: bool = False, infer_only: bool = False) -> dict:
    command = [sys.executable, __file__, "--worker", job, "--framework", framework, "--net", str(size), "--batch", str(batch)]
    command += ["--twins", str(twins)] if twins is not None else []
    command += ["--train-only"] if train_only else []
    command += ["--infer-only"] if infer_only else []
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"bench_train: the {framework} {job} worker failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if framework == "torch" and result.pop("imports_tinynet", False):
        raise SystemExit("bench_train: the PyTorch worker imported tinynet; its figures would not be PyTorch's own")
    result.pop("imports_tinynet", None)
    return result


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
    parser.add_argument("--load", type=int, metavar="N", help="also measure training beside another compute job (a"
                        " NumPy float32 matmul loop with N BLAS threads, started and stopped here; see competing_load.py)")
    parser.add_argument("--worker", choices=("train", "speed", "startup", "peak"), help=argparse.SUPPRESS)
    parser.add_argument("--framework", default="tinynet", help=argparse.SUPPRESS)  # speed: "tinynet,torch"
    parser.add_argument("--twins", help=argparse.SUPPRESS)  # PyTorch's nets as files (write_twins)
    parser.add_argument("--train-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--infer-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load is not None and args.load < 1:
        parser.error(f"--load: expected a positive number of threads, got {args.load}")

    if args.worker:
        if args.worker == "train":
            result = worker_train(args.framework, args.net, args.batch, args.twins)
        elif args.worker == "speed":
            result = worker_speed(args.framework.split(","), args.net, args.batch, args.twins, args.train_only,
                                  args.infer_only)
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
    twins = Path(tempfile.mkdtemp(prefix="bench-train-twins-"))
    if version:
        write_twins(size, batch, twins)  # PyTorch's workers read the nets from files: they import nothing of tinynet
    peaks = [run_worker("peak", "tinynet", size, batch)]  # before the speed rounds, and after them (below)
    # speeds: a fresh process per framework, in turns (tinynet, torch, tinynet, torch, ...), the median
    # of each figure over the rounds: the machine's speed drifts, and turns spread the drift evenly. With
    # --load, each round also measures training beside the competing job, started for that round's turns
    rounds, loaded = [], []
    for _ in range(args.rounds):
        # training, then inference in a fresh process that trained nothing, as a predict user runs it
        rounds.append({fw: {**run_worker("speed", fw, size, batch, twins=twins, train_only=True),
                            **run_worker("speed", fw, size, batch, twins=twins, infer_only=True)} for fw in frameworks})
        if args.load:
            with CompetingLoad(args.load) as load:
                loaded.append({fw: run_worker("speed", fw, size, batch, twins=twins, train_only=True) for fw in frameworks})
            loaded[-1]["load_gflops"] = load.gflops
    for framework in frameworks:
        for key in rounds[0][framework]:
            results[key] = statistics.median(r[framework][key] for r in rounds)
        for key in loaded[0][framework] if loaded else ():
            results["loaded_" + key] = statistics.median(r[framework][key] for r in loaded)
    if args.load:
        with CompetingLoad(args.load) as load:  # the job alone: what it does on a machine it has to itself
            time.sleep(5)
        results.update(load_threads=args.load, load_gflops_alone=load.gflops,
                       load_gflops_beside=statistics.median(r["load_gflops"] for r in loaded))
    peaks.append(run_worker("peak", "tinynet", size, batch))
    results["matmul_peak_gflops"] = max(peak["matmul_peak_gflops"] for peak in peaks)
    results["matmul_peak_runs_gflops"] = [peak["matmul_peak_gflops"] for peak in peaks]
    results["blas"] = peaks[-1]["blas"]
    for framework in frameworks:
        prefix = "" if framework == "tinynet" else "torch_"
        results.update({prefix + key: value for key, value in run_worker("train", framework, size, batch, twins=twins).items()})
        results[prefix + "train_gflops"] = 3 * flops * results[prefix + "train_img_per_s"] / 1e9
        results[prefix + "infer_gflops"] = flops * results[prefix + "infer_img_per_s"] / 1e9
        results[prefix + "train_peak_fraction"] = results[prefix + "train_gflops"] / results["matmul_peak_gflops"]
    shutil.rmtree(twins, ignore_errors=True)
    if version:
        results["torch_version"] = version
    if args.startup:
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


if __name__ == "__main__":
    main()
