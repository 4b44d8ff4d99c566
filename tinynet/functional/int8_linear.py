"""A fully connected layer with int8 weights, for inference: ``y = scale * (x @ q.T) + b``.

Weight-only quantisation, one scale per output row (what llm.c's and llama.cpp's int8 formats do per
block, and PyTorch's ``torchao`` calls "int8 weight-only"). Row ``j`` of a float weight ``W`` is stored as

    scale[j] = max_i |W[j, i]| / 127          (1 for a row of zeros)
    q[j, i]  = round(W[j, i] / scale[j])      an int8 in [-127, 127]

so ``W[j, i] ~ scale[j] * q[j, i]``, off by at most ``scale[j] / 2``. The inputs and outputs stay float:

    y[n, j] = scale[j] * sum_i q[j, i] * x[n, i] + b[j]

Why. For one face, a layer such as NaimishNet's first fully connected one (6400 x 1000) does 6.4 million
multiply-adds on 25.6 MB of float32 weights: its time is the time to read them from memory. As int8 they are
6.4 MB. It pays for a few input rows (a batch of up to about 8): with many rows the product is no longer bound
by the weights' bytes, and BLAS on float weights is faster (``tinynet.nn.Int8Linear`` says by how much).
There is no backward: a quantised layer is made from a trained one (``quantize_rows``), not trained.
"""
from __future__ import annotations

import numpy as np

from .. import backends, kernels
from .._checks import ShapeError, check_float_array


def quantize_rows(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A float weight ``(out, in)`` -> ``(q (out, in) int8, scale (out,) in the weight's dtype)``, as the module
    docstring says. Raises ``ValueError`` for a weight with NaN or infinite values (no scale represents them)."""
    weight = check_float_array("quantize_rows", weight, "weight")
    if weight.ndim != 2:
        raise ShapeError(f"quantize_rows: expected a 2-D weight (out_features, in_features), got shape {weight.shape}")
    if not np.isfinite(weight).all():
        raise ValueError("quantize_rows: the weight has NaN or infinite values, which int8 cannot represent")
    largest = np.abs(weight).max(axis=1) if weight.shape[1] else np.zeros(weight.shape[0], weight.dtype)
    scale = np.where(largest > 0, largest / 127, 1).astype(weight.dtype)
    steps = weight / scale[:, None]  # in [-127, 127] up to rounding: the row's largest magnitude is 127 steps
    np.rint(steps, out=steps)
    np.clip(steps, -127, 127, out=steps)
    return steps.astype(np.int8), scale


def _check_arguments(x, weight: np.ndarray, scale: np.ndarray, bias: np.ndarray | None) -> None:
    """What the kernel needs (it reads ``x[n, :in]``, ``scale[j]`` and ``bias[j]`` without bounds checks)."""
    where = "int8_linear_forward"
    check_float_array(where, x)
    if weight.dtype != np.int8 or weight.ndim != 2:
        raise TypeError(f"{where}: expected an int8 weight (out_features, in_features), got {weight.dtype} {weight.shape}")
    if x.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise ShapeError(f"{where}: expected input (N, {weight.shape[1]}), got shape {x.shape}")
    for name, vector in (("scale", scale), ("bias", bias)):
        if vector is not None and (vector.dtype != x.dtype or vector.shape != (weight.shape[0],)):
            raise ShapeError(f"{where}: expected {name} ({weight.shape[0]},) {x.dtype}, got {vector.dtype} {vector.shape}")


def int8_linear_forward(x: np.ndarray, weight: np.ndarray, scale: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """``out (N, out) = scale * (x @ weight.T) + bias`` for ``x (N, in)`` float32/float64, ``weight (out, in)``
    int8 and ``scale``, ``bias (out,)`` in ``x``'s dtype (``bias`` may be None). The Numba kernel, or
    ``int8_linear_forward_reference`` when ``tinynet.backends.numba.enabled`` is False."""
    _check_arguments(x, weight, scale, bias)
    if not backends.numba.enabled:
        return int8_linear_forward_reference(x, weight, scale, bias)
    out = np.empty((x.shape[0], weight.shape[0]), dtype=x.dtype)
    shift = np.zeros(weight.shape[0], dtype=x.dtype) if bias is None else bias
    kernels.int8_linear.int8_linear_forward_kernel(np.ascontiguousarray(x), weight, scale, shift, out)
    return out


def int8_linear_forward_reference(x: np.ndarray, weight: np.ndarray, scale: np.ndarray,
                                  bias: np.ndarray | None) -> np.ndarray:
    """The same in NumPy: the int8 weights widened to ``x``'s dtype (a float copy each call), then one product."""
    out = (x @ weight.T.astype(x.dtype)) * scale
    return out if bias is None else out + bias

