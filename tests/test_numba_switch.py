"""tinynet.backends.numba: the switch between the Numba kernels and plain NumPy.

With the switch off every op runs its ``*_reference`` (forward and backward, Adam's update too), and Numba
is never imported; the kernels are the independent implementation the NumPy path is compared against."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinynet
import tinynet.backends.numba as numba_backend
from keypoints.models import naimishnet
from tinynet.functional.fused import (
    BatchNormReLUMaxPoolReferenceCache,
    batchnorm_relu_maxpool2d_backward,
    batchnorm_relu_maxpool2d_forward,
)

ROOT = Path(__file__).resolve().parents[1]


def python(code: str, **env) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=300)


def test_flags_set_the_switch_and_restore_it_also_after_an_error():
    before = numba_backend.enabled
    assert tinynet.backends.numba is numba_backend
    with numba_backend.flags(enabled=False):
        assert numba_backend.enabled is False
        with numba_backend.flags(enabled=True):
            assert numba_backend.enabled is True
        assert numba_backend.enabled is False
    assert numba_backend.enabled is before
    with pytest.raises(RuntimeError, match="inside"):
        with numba_backend.flags(enabled=not before):
            raise RuntimeError("inside")
    assert numba_backend.enabled is before
    with pytest.raises(TypeError, match="expected True or False, got 0"):
        numba_backend.enabled = 0
    with pytest.raises(TypeError, match="got 'no'"):
        with numba_backend.flags(enabled="no"):
            pass  # never reached
    assert numba_backend.enabled is before


def _naimishnet(enabled: bool, dtype, train: bool):
    """A seeded NaimishNet-96 in train or eval mode, its Dropout masks the same on both engines."""
    model = naimishnet(96, seed=3, dtype=dtype)
    for layer in model.modules():
        if isinstance(layer, tinynet.nn.Dropout):
            layer.rng = np.random.default_rng(7)
    return model.train(train)


def _forward_backward(enabled: bool, x: np.ndarray, dout: np.ndarray, train: bool, adam_step: bool = False):
    """Output, every gradient, and the state after (with ``adam_step``) one Adam step, on one engine."""
    with numba_backend.flags(enabled=enabled):
        model = _naimishnet(enabled, x.dtype, train)
        out = model(x)
        model.zero_grad()
        model.backward(dout)
        grads = {name: param.grad.copy() for name, param in model.named_parameters()}
        if adam_step:
            tinynet.optim.Adam(model.parameters(), lr=1e-3).step()
    return out, grads, model.state_dict()


def test_numpy_path_trains_naimishnet_as_the_kernels_do(rng):
    """Train mode in float64: the output, every gradient, the running statistics and the weights after an Adam
    step agree to rounding. (In float32, batch statistics over a few faces can move a hidden unit across ReLU's
    kink on one engine and not the other, and its gradient then differs by far more than rounding.)"""
    x = rng.standard_normal((4, 1, 96, 96))
    dout = rng.standard_normal((4, 136))
    kernels, numpy_path = (_forward_backward(enabled, x, dout, train=True, adam_step=True) for enabled in (True, False))
    assert any(isinstance(layer, tinynet.nn.BatchNormReLUMaxPool2d) for layer in naimishnet(96).modules())
    np.testing.assert_allclose(numpy_path[0], kernels[0], rtol=1e-9, atol=1e-12)
    assert kernels[1].keys() == numpy_path[1].keys()
    for name, expected in kernels[1].items():
        # a conv bias before batch norm has a gradient of 0 up to rounding (the batch norm subtracts the mean):
        # compare at the scale of the layer's largest gradient
        layer = name.rsplit(".", 1)[0]
        scale = max(float(np.abs(g).max()) for n, g in kernels[1].items() if n.rsplit(".", 1)[0] == layer)
        np.testing.assert_allclose(numpy_path[1][name], expected, rtol=1e-8, atol=1e-11 * scale, err_msg=name)
    for name, expected in kernels[2].items():  # weights after the step, running statistics, batch counts
        # atol: Adam turns the conv biases' rounding-noise gradients (1e-15) into steps of up to lr * g / eps ~ 1e-8;
        # the steps themselves are lr = 1e-3
        np.testing.assert_allclose(numpy_path[2][name], expected, rtol=1e-9, atol=1e-7, err_msg=name)


def test_numpy_path_reads_faces_as_the_kernels_do_in_float32(rng):
    """Eval mode in float32, as ``predict`` runs: output and gradients within float32 rounding."""
    x = rng.random((3, 1, 96, 96), dtype=np.float32)
    dout = rng.standard_normal((3, 136)).astype(np.float32)
    kernels, numpy_path = (_forward_backward(enabled, x, dout, train=False) for enabled in (True, False))
    assert numpy_path[0].dtype == np.float32
    np.testing.assert_allclose(numpy_path[0], kernels[0], rtol=1e-4, atol=1e-5)
    for name, expected in kernels[1].items():
        assert numpy_path[1][name].dtype == np.float32
        scale = float(np.abs(expected).max())
        np.testing.assert_allclose(numpy_path[1][name], expected, rtol=1e-3, atol=1e-4 * scale, err_msg=name)


def test_the_fused_block_runs_backward_on_the_path_of_its_forward(rng):
    """A forward in NumPy leaves the reference chain's cache; backward follows it even with the kernels
    switched back on, and both gradients are those of the kernels' forward and backward."""
    x = rng.standard_normal((2, 3, 6, 7)).astype(np.float32)
    weight, bias = rng.uniform(0.5, 1.5, 3).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    dout = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    running = [np.zeros(3), np.ones(3)]
    out, cache = batchnorm_relu_maxpool2d_forward(x, weight, bias, *running, training=True)
    expected = batchnorm_relu_maxpool2d_backward(dout, cache)
    with numba_backend.flags(enabled=False):
        out_numpy, cache_numpy = batchnorm_relu_maxpool2d_forward(x, weight, bias, np.zeros(3), np.ones(3), training=True)
    assert isinstance(cache_numpy, BatchNormReLUMaxPoolReferenceCache)
    np.testing.assert_allclose(out_numpy, out, rtol=1e-5, atol=1e-6)
    for got, want in zip(batchnorm_relu_maxpool2d_backward(dout, cache_numpy), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    with pytest.raises(tinynet.ShapeError, match="expected dout of shape"):
        batchnorm_relu_maxpool2d_backward(dout[:, :, :2], cache_numpy)


@pytest.mark.slow
def test_importing_tinynet_and_keypoints_does_not_import_numba_nor_does_a_numpy_training_step():
    script = """
import sys
import numpy as np
import tinynet, keypoints, keypoints.cli, keypoints.wild.cli, keypoints.batch
from keypoints.models import naimishnet
tinynet.report_compilation(sys.stderr)
assert "numba" not in sys.modules, "imported by an import"
with tinynet.backends.numba.flags(enabled=False):
    model = naimishnet(96)
    optimizer = tinynet.optim.Adam(model.parameters())
    out = model(np.zeros((2, 1, 96, 96), np.float32))
    model.zero_grad()
    model.backward(np.ones_like(out))
    optimizer.step()
assert "numba" not in sys.modules, "imported by a NumPy training step"
tinynet.nn.ReLU()(np.ones(3, np.float32))
assert "numba" in sys.modules, "the first kernel loads Numba"
print("ok")
"""
    done = python(script)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr
    switched_off = python("import sys, tinynet; print(tinynet.backends.numba.enabled, 'numba' in sys.modules)",
                          TINYNET_NUMBA="0")
    assert switched_off.stdout == "False False\n", switched_off.stderr
    wrong = python("import tinynet", TINYNET_NUMBA="maybe")
    assert wrong.returncode == 1
    assert "expected the environment variable TINYNET_NUMBA to be 1 or 0, got 'maybe'" in wrong.stderr


@pytest.mark.parametrize("kernel, stride, padding", [((2, 2), (2, 2), (0, 0)), ((3, 3), (1, 2), (1, 1))])
def test_pooling_without_indices_keeps_the_same_maxima(rng, kernel, stride, padding):
    """``return_indices=False`` (what a NumPy forward under no_grad runs) gives the values of the indexed loop
    exactly: NaN windows, windows of -inf, overlapping and padded windows included."""
    from tinynet.functional.pooling import maxpool2d_forward_reference

    x = rng.standard_normal((2, 3, 7, 8)).astype(np.float32)
    x[0, 0, 1, 1], x[1, 2, 4:, 5:] = np.nan, -np.inf
    expected, _ = maxpool2d_forward_reference(x, kernel, stride, padding)
    got = maxpool2d_forward_reference(x, kernel, stride, padding, return_indices=False)
    assert np.isnan(expected).any() and np.isneginf(expected).any()
    np.testing.assert_array_equal(got, expected)


def test_the_fused_block_under_no_grad_keeps_no_cache_and_the_same_output(rng):
    block = tinynet.nn.BatchNormReLUMaxPool2d(4).eval()
    block.running_mean[...], block.running_var[...] = rng.standard_normal(4), rng.uniform(0.5, 2.0, 4)
    x = rng.standard_normal((2, 4, 9, 8)).astype(np.float32)
    with numba_backend.flags(enabled=False):
        recorded = block(x)
        with tinynet.no_grad():
            unrecorded = block(x)
    np.testing.assert_array_equal(unrecorded, recorded)
    with pytest.raises(RuntimeError):
        block.backward(np.ones_like(unrecorded))  # nothing was kept for it
