"""Regression losses: mean squared error, L1, smooth L1 (Huber with ``beta``) and Wing.

Each ``*_forward(pred, target, reduction)`` returns ``(loss, cache)`` where ``loss`` is a 0-d value of
``pred``'s dtype (or, with ``reduction="none"``, the element-wise array) and each ``*_backward(dloss,
cache)`` returns ``dpred``. ``reduction="mean"`` divides by the number of elements, as PyTorch.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

REDUCTIONS = ("mean", "sum", "none")


class LossCache(NamedTuple):
    diff: np.ndarray  # pred - target
    reduction: str
    beta: float


def _reduce(elementwise: np.ndarray, reduction: str, dtype: np.dtype):
    if reduction == "none":
        return elementwise
    total = elementwise.sum() if reduction == "sum" else elementwise.mean()
    return dtype.type(total)


def _scale(dloss, cache: LossCache) -> np.ndarray | float:
    """The factor each element's derivative is multiplied by: dloss, divided by n for the mean."""
    if cache.reduction == "mean":
        return dloss / cache.diff.size
    return dloss


def mse_loss_forward(pred: np.ndarray, target: np.ndarray, reduction: str = "mean"):
    """``loss = mean((pred - target)^2)``."""
    diff = pred - target
    return _reduce(np.square(diff), reduction, pred.dtype), LossCache(diff, reduction, 0.0)


def mse_loss_backward(dloss, cache: LossCache) -> np.ndarray:
    """``dpred = 2 (pred - target) / n * dloss``."""
    return (cache.diff * (2 * np.asarray(_scale(dloss, cache), dtype=cache.diff.dtype))).astype(cache.diff.dtype, copy=False)


def l1_loss_forward(pred: np.ndarray, target: np.ndarray, reduction: str = "mean"):
    """``loss = mean(|pred - target|)``."""
    diff = pred - target
    return _reduce(np.abs(diff), reduction, pred.dtype), LossCache(diff, reduction, 0.0)


def l1_loss_backward(dloss, cache: LossCache) -> np.ndarray:
    """``dpred = sign(pred - target) / n * dloss`` (0 where they are equal, as PyTorch)."""
    return (np.sign(cache.diff) * np.asarray(_scale(dloss, cache), dtype=cache.diff.dtype)).astype(cache.diff.dtype, copy=False)


def smooth_l1_loss_forward(pred: np.ndarray, target: np.ndarray, reduction: str = "mean", beta: float = 1.0):
    """``loss_i = 0.5 d^2 / beta if |d| < beta else |d| - 0.5 beta`` with ``d = pred - target``.

    Quadratic near zero (smooth gradients for small errors), linear far away (robust to outliers).
    ``beta = 0`` is exactly the L1 loss.
    """
    diff = pred - target
    if beta == 0:
        elementwise = np.abs(diff)
    else:
        absolute = np.abs(diff)
        elementwise = np.where(absolute < beta, 0.5 * np.square(diff) / beta, absolute - 0.5 * beta)
    return _reduce(elementwise.astype(pred.dtype, copy=False), reduction, pred.dtype), LossCache(diff, reduction, float(beta))


def smooth_l1_loss_backward(dloss, cache: LossCache) -> np.ndarray:
    """``dpred_i = d / beta if |d| < beta else sign(d)``, times ``dloss / n``."""
    diff, beta = cache.diff, cache.beta
    if beta == 0:
        local = np.sign(diff)
    else:
        local = np.where(np.abs(diff) < beta, diff / beta, np.sign(diff))
    return (local * np.asarray(_scale(dloss, cache), dtype=diff.dtype)).astype(diff.dtype, copy=False)


class WingCache(NamedTuple):
    diff: np.ndarray  # pred - target
    reduction: str
    width: float
    curvature: float


def wing_loss_forward(pred: np.ndarray, target: np.ndarray, reduction: str = "mean", width: float = 10.0, curvature: float = 2.0):
    """Wing loss (Feng et al., "Wing Loss for Robust Facial Landmark Localisation with CNNs", CVPR 2018).

    ``loss_i = w ln(1 + |d| / eps)`` where ``|d| < w``, else ``|d| - C`` with ``C = w - w ln(1 + w / eps)``
    (``w = width``, ``eps = curvature``, ``d = pred - target``). Logarithmic near zero, so small and medium
    errors weigh more than under L1 (whose gradient is the same for every error), and linear beyond ``w``
    like L1, so outliers do not dominate as under MSE. ``C`` joins the two pieces continuously at ``|d| = w``.
    """
    diff = pred - target
    absolute = np.abs(diff)
    joint = width - width * np.log1p(width / curvature)
    elementwise = np.where(absolute < width, width * np.log1p(absolute / curvature), absolute - joint)
    cache = WingCache(diff, reduction, float(width), float(curvature))
    return _reduce(elementwise.astype(pred.dtype, copy=False), reduction, pred.dtype), cache


def wing_loss_backward(dloss, cache: WingCache) -> np.ndarray:
    """``dpred_i = sign(d) w / (eps + |d|)`` where ``|d| < w``, else ``sign(d)``; times ``dloss / n``."""
    diff, width, curvature = cache.diff, cache.width, cache.curvature
    absolute = np.abs(diff)
    local = np.sign(diff) * np.where(absolute < width, width / (curvature + absolute), 1.0)
    scale = dloss / diff.size if cache.reduction == "mean" else dloss
    return (local * np.asarray(scale, dtype=diff.dtype)).astype(diff.dtype, copy=False)
