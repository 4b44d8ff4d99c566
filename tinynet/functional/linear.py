"""Fully connected layer: ``y = x @ W.T + b`` (PyTorch's ``weight`` layout ``(out, in)``)."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..blas import matmul


class LinearCache(NamedTuple):
    x: np.ndarray  # (N, in_features), the input
    weight: np.ndarray  # (out_features, in_features)
    has_bias: bool


def linear_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> tuple[np.ndarray, LinearCache]:
    """Forward pass of a fully connected layer.

    Parameters
    ----------
    x : (N, in_features)
    weight : (out_features, in_features)
    bias : (out_features,) or None

    Returns
    -------
    out : (N, out_features), ``out = x @ weight.T + bias``
    cache : LinearCache
    """
    out = matmul(x, weight.T)  # (N, out); in pieces on tinynet's threads while training (tinynet/blas.py)
    if bias is not None:
        out += bias
    return out, LinearCache(x, weight, bias is not None)


def linear_backward(dout: np.ndarray, cache: LinearCache) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Backward pass of a fully connected layer.

    With ``out = x W^T + b``: ``dx = dout W``, ``dW = dout^T x``, ``db = sum_n dout``.

    Parameters
    ----------
    dout : (N, out_features), gradient of the loss with respect to ``out``

    Returns
    -------
    dx : (N, in_features)
    dweight : (out_features, in_features)
    dbias : (out_features,) or None when the layer has no bias
    """
    x, weight, has_bias = cache
    dx = matmul(dout, weight)  # (N, in)
    dweight = matmul(dout.T, x)  # (out, in)
    dbias = dout.sum(axis=0) if has_bias else None  # (out,)
    return dx, dweight, dbias
