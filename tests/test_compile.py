"""tinynet.compile: the list of a training step's kernel signatures, the command that compiles them ahead of time
and the background process training starts on a machine's first run."""
import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
from numba.core.sigutils import normalize_signature

import tinynet
import tinynet.compile
from keypoints.models import naimishnet
from tinynet import kernels, nn, optim

ROOT = Path(__file__).resolve().parents[1]

TESTS = Path(__file__).resolve().parent


def training_step() -> None:
    """One float32 training step of the shipped network's architecture as ``keypoints.train`` trains it, on two images
    (also run in a subprocess)."""
    model = naimishnet(96, seed=0, winograd=True).train().skip_input_grad()
    criterion, optimizer = nn.MSELoss(), optim.Adam(model.parameters())
    rng = np.random.default_rng(0)
    criterion(model(rng.random((2, 1, 96, 96), dtype=np.float32)), rng.random((2, 136), dtype=np.float32))
    model.backward(criterion.backward())
    optimizer.step()


#: a training step in a fresh process that names each kernel Numba compiles
STEP = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import tinynet; tinynet.report_compilation(sys.stdout);"
        " import test_compile; test_compile.training_step(); print('step done')")


def _launches(monkeypatch) -> list[tuple[str, tuple]]:
    """Spy on every kernel launch: (kernel name, Numba's types of its arguments and of its range)."""
    calls = []
    for module in kernels._MODULES:
        for name, launch in vars(getattr(kernels, module)).items():
            if not hasattr(launch, "kernel"):
                continue
            for version in ("serial", "parallel"):
                real = getattr(launch, version)

                def spy(*args, _name=name, _real=real):
                    calls.append((_name, tuple(numba.typeof(arg) for arg in args) + (numba.int64, numba.int64)))
                    return _real(*args)

                monkeypatch.setattr(launch, version, spy)
    return calls


def test_the_list_is_what_a_training_step_calls_in_the_order_it_first_calls_them(monkeypatch):
    calls = _launches(monkeypatch)
    training_step()
    first_calls = list(dict.fromkeys(calls))  # each (kernel, types) once, in the order of its first call
    listed = [(name, tuple(normalize_signature(f"({types})")[0])) for _, name, types in tinynet.compile.TRAINING_STEP]
    assert first_calls == listed
    # and with a warm cache (this process has just compiled them) training starts no second process
    assert tinynet.compile.is_cached("adam", "adam_update_kernel")
    assert tinynet.compile.start_background() is None


def test_the_inference_list_is_what_a_fast_predictor_calls_beyond_a_training_step(monkeypatch):
    from keypoints.predictor import load_predictor
    from keypoints.wild.faces import predict_faces

    predictor = load_predictor(speed="fast")  # int8 Linear layers in the face and close-up networks
    calls = _launches(monkeypatch)
    photo = np.random.default_rng(0).integers(0, 256, (120, 100), dtype=np.uint8)
    predict_faces(predictor, photo, boxes=np.array([[10, 10, 80, 80]]))
    trained = {(name, tuple(normalize_signature(f"({types})")[0])) for _, name, types in tinynet.compile.TRAINING_STEP}
    beyond = list(dict.fromkeys(call for call in calls if call not in trained))
    assert beyond == [(name, tuple(normalize_signature(f"({types})")[0])) for _, name, types in tinynet.compile.INFERENCE]


def test_nothing_starts_when_the_kernels_are_off():
    with tinynet.backends.numba.flags(enabled=False):
        assert tinynet.compile.start_background() is None


def test_on_an_empty_cache_the_background_process_and_the_command_leave_a_training_step_nothing_to_compile(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))

    def run(code: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)

    def cached() -> set[str]:  # the kernels with an index in the cache (not their jitted helpers, _valid_range...)
        names = {path.name.split("-")[0].split(".")[1] for path in (tmp_path / "cache").rglob("*.nbi")}
        return {name for name in names if name.endswith("_kernel")}

    # 1. the background process training starts: the list from its end, up to the first kernel in the cache (the
    #    training process's progress, here one kernel in the middle compiled first)
    half = len(tinynet.compile.TRAINING_STEP) // 2
    names = [name for _, name, _ in tinynet.compile.TRAINING_STEP]
    done = run(f"import tinynet.compile as c; c.compile_kernels(c.TRAINING_STEP[{half}:{half + 1}])")
    assert done.returncode == 0, done.stderr
    assert cached() == {names[half]}
    done = run("import tinynet.compile as c; p = c.start_background(); print(p is not None, p.wait())")
    assert done.stdout.split() == ["True", "0"], done.stderr
    assert cached() == set(names[half:])
    # 2. the command: the rest, and the kernels of inference beyond a training step's, in two processes
    done = subprocess.run([sys.executable, "-m", "tinynet.compile", "--jobs", "2"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    everything = names + [name for _, name, _ in tinynet.compile.INFERENCE]
    assert f"{len(everything)} kernels compiled or found in the cache" in done.stderr
    assert cached() == set(everything)
    # 3. a training step then loads every kernel from the cache: Numba compiles none of tinynet's
    done = run(STEP)
    assert done.returncode == 0, done.stderr
    assert "step done" in done.stdout and "compiling" not in done.stdout, done.stdout


def test_the_background_process_compiles_this_tinynet_into_this_processs_cache(tmp_path):
    """Run from a folder holding another ``tinynet`` (a checkout of another version), with this one imported through
    a symbolic link: the background process must compile the kernels this process will look up, where it will look
    (Numba names a cache folder after the path a source file was imported by)."""
    decoy = tmp_path / "elsewhere" / "tinynet"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise SystemExit('a tinynet from the working directory was imported')\n")
    link = tmp_path / "link"
    link.symlink_to(ROOT, target_is_directory=True)
    last, before_last = tinynet.compile.TRAINING_STEP[-1], tinynet.compile.TRAINING_STEP[-2]
    program = (f"import sys; sys.path.insert(0, {str(link)!r}); import tinynet.compile as c\n"
               f"c.compile_kernels([c.TRAINING_STEP[-2]])\n"  # the background then compiles the last kernel only
               f"p = c.start_background(report=True)\n"
               f"print(p is not None, p.wait(), c.is_cached(*c.TRAINING_STEP[-1][:2]), c.__file__)\n")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("PYTHONPATH", None)
    done = subprocess.run([sys.executable, "-c", program], cwd=decoy.parent, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    started, status, cached, imported = done.stdout.split()
    assert imported.startswith(str(link))  # this process imported tinynet through the link
    assert (started, status, cached) == ("True", "0", "True"), done.stderr
    assert f"compiling {last[1]}" in done.stderr and f"compiling {before_last[1]}" not in done.stderr
    assert len(list((tmp_path / "cache").iterdir())) == 1  # one cache folder: both processes wrote into it


@pytest.mark.parametrize("jobs", ["0", "-1"])
def test_the_command_refuses_a_job_count_below_one(jobs, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tinynet.compile.main(["--jobs", jobs])
    assert exit_info.value.code == 2
    assert f"--jobs: expected a positive number of processes, got {jobs}" in capsys.readouterr().err


def test_a_single_channel_convolution_compiles_the_kernel_of_its_filter_size_only():
    """Each unrolled filter size is a kernel of its own: a 4x4 layer (NaimishNet's first) neither compiles nor loads
    the 3x3, 5x5 or general one (one kernel with a branch per size compiled them all: a second of a cold start)."""
    program = (
        "import numpy as np, tinynet\n"
        "from tinynet import kernels\n"
        "from tinynet.functional.conv import conv2d_forward\n"
        "conv2d_forward(np.zeros((2, 1, 12, 12), np.float32), np.ones((3, 1, 4, 4), np.float32), None)\n"
        "module = kernels.conv_single_channel\n"
        "names = ['conv1ch_forward_3x3_kernel', 'conv1ch_forward_4x4_kernel', 'conv1ch_forward_5x5_kernel',"
        " 'conv1ch_forward_kernel']\n"
        "print([len(getattr(module, name).kernel.signatures) for name in names])\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=300)
    assert done.stdout.strip() == "[0, 1, 0, 0]"
