"""The table ``benchmarks/bench_train.py`` prints: tinynet's figures, PyTorch's beside them and the ratio."""
from __future__ import annotations


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
    if "loaded_train_img_per_s" in results:
        print_load(results, with_torch)


def print_load(results: dict, with_torch: bool) -> None:
    """Training beside the competing job (``--load N``): images/s, the share of the idle speed it keeps, the ratio."""
    print(f"training beside another job (a NumPy matmul loop, {results['load_threads']} BLAS threads; alone it runs at"
          f" {results['load_gflops_alone']:.0f} GFLOP/s, beside the training at {results['load_gflops_beside']:.0f}):")
    for label, prefix in (("tinynet", ""),) + ((("PyTorch", "torch_"),) if with_torch else ()):
        idle, loaded = results[prefix + "train_img_per_s"], results["loaded_" + prefix + "train_img_per_s"]
        print(f"  {label:10} {loaded:8.1f} images/s under load, {idle:8.1f} idle: keeps {loaded / idle:.0%}")
    if with_torch:
        ratio = results["loaded_train_img_per_s"] / results["loaded_torch_train_img_per_s"]
        print(f"  under the same load tinynet trains {ratio:.2f}x as fast as PyTorch")
