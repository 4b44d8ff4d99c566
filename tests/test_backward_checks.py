"""Every backward checks ``dout`` against its forward output (shape and dtype) and names the layer, and the
Numba kernels run once with bounds checking (``NUMBA_BOUNDSCHECK=1``), so an out-of-range index is an
``IndexError`` in CI, not NaN or a value that changes between identical calls for a user."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinynet._checks import ShapeError
from tinynet.functional.batchnorm import batchnorm_backward, batchnorm_forward
from tinynet.functional.fused import batchnorm_relu_maxpool2d_backward, batchnorm_relu_maxpool2d_forward
from tinynet.nn import (
    ELU,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    L1Loss,
    LeakyReLU,
    Linear,
    MaxPool2d,
    MSELoss,
    ReLU,
    Sequential,
    Sigmoid,
    SmoothL1Loss,
    Tanh,
    fuse,
)

REPO = Path(__file__).resolve().parents[1]


def _rng():
    return np.random.default_rng(0)


# (name the message must contain, layer factory, input shape)
LAYERS = [
    ("Linear", lambda: Linear(5, 3, rng=_rng()), (4, 5)),
    ("Conv2d", lambda: Conv2d(2, 3, 3, rng=_rng()), (2, 2, 6, 6)),
    ("BatchNorm1d", lambda: BatchNorm1d(3), (4, 3)),
    ("BatchNorm1d", lambda: BatchNorm1d(3), (2, 3, 5)),
    ("BatchNorm2d", lambda: BatchNorm2d(3), (2, 3, 4, 4)),
    ("ReLU", ReLU, (3, 4)),
    ("LeakyReLU", LeakyReLU, (3, 4)),
    ("ELU", ELU, (2, 3, 4)),
    ("Tanh", Tanh, (5,)),
    ("Sigmoid", Sigmoid, (2, 2)),
    ("Dropout", lambda: Dropout(0.5, rng=_rng()), (3, 4)),
    ("Flatten", Flatten, (2, 3, 2, 2)),
    ("MaxPool2d", lambda: MaxPool2d(2), (2, 3, 4, 4)),
    # the fused BatchNorm+ReLU+MaxPool block, as tinynet.nn.fuse puts it in a Sequential
    ("fused", lambda: fuse(Sequential(BatchNorm2d(3), ReLU(), MaxPool2d(2))), (2, 3, 6, 6)),
]


def wrong_shapes(shape: tuple[int, ...]) -> st.SearchStrategy:
    """Shapes other than ``shape``: one axis changed, one axis more or fewer, the same size reshaped."""
    axis = st.integers(0, len(shape) - 1)
    changed = st.tuples(axis, st.integers(-3, 3).filter(bool)).map(
        lambda a: shape[: a[0]] + (max(shape[a[0]] + a[1], 0),) + shape[a[0] + 1 :])
    return st.one_of(
        changed,
        st.just(shape + (1,)),
        st.just(shape[:-1]) if len(shape) > 1 else st.just((shape[0], 1)),
        st.just((int(np.prod(shape)),)),
        st.just(tuple(reversed(shape))),
    ).filter(lambda s: s != shape)


@pytest.mark.parametrize("name, make, shape", LAYERS, ids=[f"{n}-{len(s)}d" for n, make, s in LAYERS])
@given(data=st.data())
def test_every_backward_refuses_a_dout_of_another_shape(name, make, shape, data):
    layer = make()
    out = layer(np.random.default_rng(1).standard_normal(shape).astype(np.float32))
    bad = data.draw(wrong_shapes(out.shape), label="dout shape")
    with pytest.raises(ShapeError, match=rf"{name}.*expected dout of shape {re_shape(out.shape)}"):
        layer.backward(np.ones(bad, np.float32))
    assert all(p.grad is None for p in layer.parameters()), "a refused backward changed a gradient"
    assert layer.backward(np.ones(out.shape, np.float32)).shape == shape  # the right one still works


@pytest.mark.parametrize("name, make, shape", LAYERS, ids=[f"{n}-{len(s)}d" for n, make, s in LAYERS])
@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32])
def test_every_backward_refuses_a_dout_of_another_dtype(name, make, shape, dtype):
    layer = make()
    out = layer(np.ones(shape, np.float32))
    with pytest.raises(TypeError, match=rf"{name}.*(float32|float64)"):
        layer.backward(np.ones(out.shape, dtype))
    with pytest.raises(TypeError, match=rf"{name}.*numpy.ndarray"):
        layer.backward(np.ones(out.shape).tolist())
    assert all(p.grad is None for p in layer.parameters())


def re_shape(shape) -> str:
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


@pytest.mark.parametrize("loss", [MSELoss, L1Loss, SmoothL1Loss])
def test_loss_backward_checks_dloss(loss):
    criterion = loss(reduction="none")
    pred, target = np.zeros((2, 3), np.float32), np.ones((2, 3), np.float32)
    criterion(pred, target)
    with pytest.raises(ShapeError, match=rf"{loss.__name__}.*expected dloss of shape \(2, 3\)"):
        criterion.backward(np.ones((3,), np.float32))
    with pytest.raises(TypeError, match="dloss dtype float64"):
        criterion.backward(np.ones((2, 3)))
    criterion = loss()
    criterion(pred, target)
    for bad in (np.ones((2, 3), np.float32), "1", None, True, 1j):
        with pytest.raises(TypeError, match=rf"{loss.__name__}.*real number"):
            criterion.backward(bad)
    assert criterion.backward(np.float32(2)).shape == (2, 3)


def test_functional_kernel_backwards_check_dout_too():
    """The two functional backward passes whose Numba kernels read ``dout`` by the input's shape."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    ones, zeros = np.ones(3, np.float32), np.zeros(3, np.float32)
    out, cache = batchnorm_forward(x, ones, zeros, np.zeros(3, np.float32), np.ones(3, np.float32), True)
    with pytest.raises(ShapeError, match=r"batchnorm_backward: expected dout of shape \(2, 3, 6, 6\)"):
        batchnorm_backward(out[:1], cache)
    out, cache = batchnorm_relu_maxpool2d_forward(x, ones, zeros, np.zeros(3, np.float32), np.ones(3, np.float32), True)
    with pytest.raises(ShapeError, match=r"batchnorm_relu_maxpool2d_backward: expected dout of shape \(2, 3, 3, 3\)"):
        batchnorm_relu_maxpool2d_backward(out[:, :, :2], cache)
    with pytest.raises(TypeError, match="batchnorm_relu_maxpool2d_backward: dout dtype float64"):
        batchnorm_relu_maxpool2d_backward(out.astype(np.float64), cache)


# ---------------------------------------------------------------------------------------------- bounds checks
_OUT_OF_RANGE = textwrap.dedent(
    """
    # the raw kernels, behind no wrapper, given a dout smaller than the input: with bounds checks on this
    # must be an IndexError (without them it silently reads past the end of dout)
    import numpy as np
    from tinynet.functional.batchnorm import _backward_passes as batchnorm_backward_kernel

    x = np.ones((2, 3, 8, 8), np.float32)
    stats = np.zeros(3), np.ones(3), np.ones(3)
    try:
        batchnorm_backward_kernel(np.ones((1, 3, 8, 8), np.float32), x, *stats, True)
    except IndexError:
        print("IndexError")
    """
)


def _bounds_checked_env(tmp_path: Path) -> dict:
    # a fresh cache folder: Numba's on-disk cache ignores NUMBA_BOUNDSCHECK, so cached kernels compiled
    # without bounds checks would otherwise be loaded (and bounds-checked ones must not leak into the cache)
    return dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"),
                HYPOTHESIS_PROFILE="default", PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


@pytest.mark.slow
def test_kernels_with_numba_bounds_checks(tmp_path):
    """The kernel tests (batch norm, ReLU, fused block, max pooling, im2col/col2im, Adam) pass with every
    index bounds-checked, and the check is really on: an out-of-range read raises."""
    env = _bounds_checked_env(tmp_path)
    probe = subprocess.run([sys.executable, "-c", _OUT_OF_RANGE], env=env, capture_output=True, text=True,
                           timeout=300, cwd=REPO)
    assert probe.stdout.strip() == "IndexError", probe.stdout + probe.stderr
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
         "tests/test_fast_kernels.py", "tests/test_kernels.py::test_maxpool_forward_backward_match_reference",
         "tests/test_kernels.py::test_maxpool_2x2_fast_path_matches_reference_with_ties_and_nans",
         "tests/test_kernels.py::test_im2col_matches_reference", "tests/test_kernels.py::test_col2im_matches_reference",
         "tests/test_kernels.py::test_maxpool_overlapping_windows_accumulate"],
        env=env, capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
