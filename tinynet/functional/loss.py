"""Regression losses (mean squared error, L1, smooth L1 with ``beta``, Wing) and the classification loss
(cross-entropy of logits, with PyTorch's ``weight``, ``ignore_index`` and ``label_smoothing``).

Each ``*_forward(pred, target, reduction)`` returns ``(loss, cache)`` where ``loss`` is a 0-d value of
``pred``'s dtype (or, with ``reduction="none"``, the element-wise array) and each ``*_backward(dloss,
cache)`` returns ``dpred``. ``reduction="mean"`` divides by the number of elements for the regression
losses, and for cross-entropy by what PyTorch divides by (see ``cross_entropy_forward``).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .activation import log_softmax_forward

REDUCTIONS = ("mean", "sum", "none")


class LossCache(NamedTuple):
    diff: np.ndarray  # pred - target
    reduction: str
    beta: float


def _reduce(elementwise: np.ndarray, reduction: str, dtype: np.dtype):
    """The loss: ``elementwise`` itself, its sum, or its mean; the mean of nothing is NaN, as PyTorch's."""
    if reduction == "none":
        return elementwise
    if reduction == "mean" and elementwise.size == 0:
        return dtype.type(np.nan)
    total = elementwise.sum() if reduction == "sum" else elementwise.mean()
    return dtype.type(total)


def _scale(dloss, cache: LossCache | WingCache) -> np.ndarray | float:
    """The factor each element's derivative is multiplied by: dloss, divided by n for the mean.

    An empty prediction has an empty gradient (as PyTorch's), so with n = 0 the factor multiplies nothing.
    """
    if cache.reduction == "mean" and cache.diff.size > 0:
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
    scale = _scale(dloss, cache)
    return (local * np.asarray(scale, dtype=diff.dtype)).astype(diff.dtype, copy=False)


class CrossEntropyCache(NamedTuple):
    probs: np.ndarray  # softmax of the logits, (N, C, d1, ...)
    target_weights: np.ndarray  # q: the weight of each log-probability in the loss, (N, C, d1, ...)
    ignored: np.ndarray | None  # (N, 1, d1, ...) bool, True where the class index is ignore_index
    divisor: float  # what reduction="mean" divides the sum by
    reduction: str
    class_dim: int  # 1, or 0 for an unbatched (C,) input


def cross_entropy_forward(
    logits: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
):
    """Cross-entropy of ``softmax(logits)`` along the class axis, exactly as ``torch.nn.functional.cross_entropy``.

    Parameters
    ----------
    logits : (N, C), (N, C, d1, ...) or (C,) float array
        Unnormalised scores; the class axis is 1 (0 for a single (C,) sample).
    target : integer array of shape (N,), (N, d1, ...) or (), or float array of ``logits``' shape
        Class indices in ``[0, C)`` (or ``ignore_index``), or class probabilities.
    weight : (C,) array, optional
        A weight per class (a rescaling of each class's share of the loss).

    Every position n (a sample, or a pixel of one) costs ``loss_n = -sum_c q_nc log softmax(logits)_nc``:

    - class indices ``y``: ``q_nc = w_c ((1 - eps) [c = y_n] + eps / C)``, and ``q_n = 0`` where
      ``y_n == ignore_index``. ``"mean"`` divides the sum by ``sum_n w_{y_n}`` over the counted positions
      (their number without ``weight``): a weighted mean, NaN when nothing is counted.
    - probabilities ``p``: ``q_nc = w_c ((1 - eps) p_nc + eps / C)``; ``"mean"`` divides by the number
      of positions (``weight`` does not change it), NaN for an empty batch.

    ``eps`` is ``label_smoothing``: the target mixed with the uniform distribution over the C classes.
    """
    class_dim = 0 if logits.ndim == 1 else 1
    num_classes = logits.shape[class_dim]
    dtype = logits.dtype
    log_probs, _ = log_softmax_forward(logits, class_dim)
    along_classes = [num_classes if axis == class_dim else 1 for axis in range(logits.ndim)]
    w = np.ones(num_classes, dtype) if weight is None else weight.astype(dtype, copy=False)
    w_broadcast = w.reshape(along_classes)
    eps = dtype.type(label_smoothing)
    smooth = eps / dtype.type(num_classes)

    if np.issubdtype(target.dtype, np.integer):
        ignored = np.expand_dims(target == ignore_index, class_dim)  # (N, 1, d1, ...)
        y = np.expand_dims(np.where(target == ignore_index, 0, target), class_dim)
        one_hot = y == np.arange(num_classes).reshape(along_classes)  # (N, C, d1, ...)
        q = w_broadcast * ((1 - eps) * one_hot + smooth) * ~ignored
        divisor = float(np.where(ignored, 0, w[y]).sum(dtype=np.float64))  # the weights of the targets
    else:
        ignored = None
        q = w_broadcast * ((1 - eps) * target + smooth)
        divisor = float(logits.size // max(num_classes, 1))  # the number of positions
    q = q.astype(dtype, copy=False)
    elementwise = -(q * log_probs).sum(axis=class_dim)
    if reduction == "none":
        loss = elementwise
    elif reduction == "sum":
        loss = dtype.type(elementwise.sum())
    elif divisor == 0:  # nothing counted (all ignored, zero weights, empty batch): undefined, NaN as PyTorch
        loss = dtype.type(np.nan)
    else:
        loss = dtype.type(elementwise.sum() / dtype.type(divisor))
    return loss, CrossEntropyCache(np.exp(log_probs), q, ignored, divisor, reduction, class_dim)


def cross_entropy_backward(dloss, cache: CrossEntropyCache) -> np.ndarray:
    """``dlogits_nc = (softmax_nc sum_c' q_nc' - q_nc) * dloss_n`` (divided by the mean's divisor).

    Without weights or smoothing ``sum_c' q_nc' = 1`` and this is the familiar ``softmax - one_hot``.
    """
    probs, q = cache.probs, cache.target_weights
    dtype = probs.dtype
    if cache.reduction == "none":
        scale = np.expand_dims(np.asarray(dloss, dtype=dtype), cache.class_dim)
    elif cache.reduction == "sum":
        scale = np.asarray(dloss, dtype=dtype)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.asarray(dloss, dtype=dtype) / dtype.type(cache.divisor)
    with np.errstate(invalid="ignore"):  # an infinite scale (nothing counted) gives NaN, as PyTorch
        dlogits = probs * (q.sum(axis=cache.class_dim, keepdims=True) * scale) - q * scale
    if cache.ignored is not None and cache.ignored.any():
        # an ignored target has no gradient at all, even when the mean is 0 / 0 (PyTorch)
        dlogits = np.where(cache.ignored, dtype.type(0), dlogits)
    return dlogits.astype(dtype, copy=False)
