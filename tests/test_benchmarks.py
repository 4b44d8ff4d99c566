"""The benchmark scripts' own arithmetic (FLOP counts) and that they still run against today's API."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_kernels  # noqa: E402
import bench_train  # noqa: E402
import train_report  # noqa: E402

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
    assert len(names) == 20 and "BN + ReLU + pool backward" in names and "conv2d backward, 3x3" in names


def test_a_fraction_of_the_matmul_peak_above_100_percent_is_not_printed_as_a_figure(capsys):
    assert train_report.format_figure("train_peak_fraction", 0.56, "{:.0%}") == "56%"
    assert train_report.format_figure("train_peak_fraction", 1.14, "{:.0%}") == "(>100 %)"
    assert train_report.format_figure("train_gflops", 114.0, "{:.1f}") == "114.0"
    results = dict(net=96, batch=64, cpu_count=2, forward_mflops_per_image=130.8, matmul_peak_gflops=35.0,
                   matmul_peak_runs_gflops=[35.0, 31.0], blas="openblas 0.3.27, Haswell kernel, 2 threads")
    for key in ("train_img_per_s", "train_step_ms", "faults_per_step", "cpu_s_per_step", "peak_rss_mb",
                "infer_img_per_s", "latency_ms"):
        results[key] = 1.0
    results.update(train_gflops=40.0, train_peak_fraction=40.0 / 35.0)
    train_report.print_table(results, with_torch=False)
    out = capsys.readouterr().out
    assert "matmul peak 35 GFLOP/s (best of the runs 35, 31; openblas 0.3.27, Haswell kernel, 2 threads)" in out
    assert "(>100 %)" in out and "114%" not in out and "measured low" in out


def test_the_matmul_peak_names_its_blas_and_is_the_best_product():
    from threadpoolctl import threadpool_info

    peak = bench_train.matmul_peak(sizes=(128,), repeat=2)
    threads = [pool["num_threads"] for pool in threadpool_info() if pool.get("user_api") == "blas"][0]
    assert peak["blas"].endswith(f", {threads} threads") and peak["matmul_peak_gflops"] > 0


@pytest.mark.parametrize("winograd", [False, True], ids=["as predict runs it", "as training runs it"])
def test_the_pytorch_twin_of_the_fused_naimishnet_computes_what_it_computes(winograd):
    """benchmarks/torch_reference.torch_twin on the model as it is built (fused blocks, Identity places, the
    Winograd convolution of training): the same outputs in eval mode and in training mode (batch statistics), so
    bench_train compares like with like."""
    torch = pytest.importorskip("torch")
    from torch_reference import torch_twin

    from keypoints.models import naimishnet

    model = naimishnet(96, seed=0, winograd=winograd)
    assert any(type(m).__name__ == "BatchNormReLUMaxPool2d" for m in model.features)
    assert any(type(m).__name__ == "WinogradConv2d" for m in model.features) is winograd
    x = np.random.default_rng(0).random((4, 1, 96, 96), dtype=np.float32)
    for training in (False, True):
        model.train(training)
        twin = torch_twin(model)
        assert twin.training is training
        if training:  # dropout draws differ between the frameworks: compare the features only
            ours, theirs = model.features(x), twin.features(torch.from_numpy(x)).detach().numpy()
        else:
            ours, theirs = model(x), twin(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-4)


def test_a_figure_of_zero_gives_no_ratio_instead_of_a_crash(capsys):
    """No page faults at all per step (tinynet's preallocated buffers): the ratio column says '-'."""
    results = dict(net=96, batch=64, cpu_count=2, forward_mflops_per_image=130.8, matmul_peak_gflops=262.0,
                   matmul_peak_runs_gflops=[249.0, 262.0], blas="openblas", torch_version="2.13.0")
    for key in ("train_img_per_s", "train_step_ms", "cpu_s_per_step", "peak_rss_mb", "infer_img_per_s",
                "latency_ms", "train_gflops", "train_peak_fraction"):
        results[key] = results["torch_" + key] = 2.0
    results["faults_per_step"], results["torch_faults_per_step"] = 0, 120
    train_report.print_table(results, with_torch=True)
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("minor page faults"))
    assert line.split()[-3:] == ["0", "120", "-"]


def test_the_pytorch_twin_from_a_file_is_built_without_tinynet(tmp_path):
    """bench_train's PyTorch workers read the net from a file (torch_reference.save_twin) in a process that
    imports nothing of tinynet, and compute what tinynet's net computes."""
    pytest.importorskip("torch")
    from torch_reference import save_twin

    model = naimishnet(96, seed=0).eval()
    x = np.random.default_rng(1).random((2, 1, 96, 96), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    save_twin(model, tmp_path / "twin.npz")
    script = (
        "import sys, json, numpy as np, torch\n"
        f"sys.path.insert(0, {str(Path(bench_train.__file__).parent)!r})\n"
        "from torch_reference import load_twin\n"
        f"twin = load_twin({str(tmp_path / 'twin.npz')!r})\n"
        f"out = twin(torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))).detach().numpy()\n"
        f"np.save({str(tmp_path / 'out.npy')!r}, out)\n"
        "print(json.dumps([twin.training, sorted(m for m in sys.modules if m.split('.')[0] in ('tinynet', 'keypoints'))]))\n"
    )
    import json
    import subprocess

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    training, imported = json.loads(done.stdout.strip().splitlines()[-1])
    assert training is False and imported == []
    with no_grad():
        np.testing.assert_allclose(np.load(tmp_path / "out.npy"), model(x), rtol=1e-4, atol=1e-4)


def test_the_competing_load_runs_while_the_block_runs_and_reports_its_rate():
    """competing_load.CompetingLoad: a process multiplying matrices exists during the block, not after it."""
    import time

    from competing_load import CompetingLoad

    with CompetingLoad(threads=1) as load:
        process = load._process
        assert process.poll() is None
        time.sleep(0.3)
    assert process.poll() is not None and load.gflops is not None and load.gflops > 0
    with pytest.raises(ValueError, match="positive integer"):
        CompetingLoad(threads=0)


def test_the_inference_figures_come_from_a_process_that_trained_nothing():
    """bench_train's rounds time inference in a worker of its own (``--infer-only``), as ``predict`` runs: it
    gives the inference figures and no training figure, and a worker that trains is a separate one."""
    inference = bench_train.run_worker("speed", "tinynet", 96, 2, infer_only=True)
    assert set(inference) == {"infer_img_per_s", "latency_ms"}
    assert all(value > 0 for value in inference.values())
    training = bench_train.run_worker("speed", "tinynet", 96, 2, train_only=True)
    assert set(training) == {"train_img_per_s", "train_step_ms"}


def test_video_jitter_removes_the_camera_motion_and_nothing_else(monkeypatch):
    """video_jitter maps each frame's points back through the frame's own motion: a reader that finds a fixed face
    where each frame's map puts it gives the same points in every frame (no jitter), and one that adds a known
    wobble gives that wobble back."""
    import video_jitter
    from keypoints.wild.faces import FaceKeypoints

    photo = np.zeros((120, 100, 3), np.uint8)
    clip, maps = video_jitter.hand_held(photo, 12)
    assert len(clip) == 12 and maps.shape == (12, 3, 3) and clip[0].shape == photo.shape
    face = np.random.default_rng(0).uniform(30, 90, (68, 2))
    wobble = np.zeros((12, 68, 2))
    wobble[:, :, 0] = np.arange(12)[:, None] % 2  # one pixel right in every other frame, in the photo's pixels
    frames = iter(range(12))

    def reader(predictor, frame, detector):
        i = next(frames)
        seen = (face + wobble[i]) @ maps[i, :2, :2].T + maps[i, :2, 2]  # where the camera put the (wobbled) face
        return [FaceKeypoints(np.array([20, 20, 60, 60]), seen)]

    monkeypatch.setattr(video_jitter, "predict_faces", reader)
    points, ms = video_jitter.read_clip(clip, maps, None, "haar", smooth=False)
    np.testing.assert_allclose(points, face + wobble, atol=1e-9)
    assert ms >= 0
    # the maps move the photo: a drift of several pixels over the clip, which the mapping back removed
    assert np.abs(maps[:, :2, 2] - maps[0, :2, 2]).max() > 2
