"""Loss modules: ``MSELoss``, ``L1Loss``, ``SmoothL1Loss``.

``loss = criterion(pred, target)`` returns a 0-d value of ``pred``'s dtype; ``criterion.backward()``
returns ``dpred`` (the gradient of the loss, times an optional ``dloss``), ready for ``model.backward``.
NaN or inf in either argument raises ``ValueError`` at once: a diverging run should stop with a clear
message, not train on garbage.
"""
from __future__ import annotations

import numpy as np

from .._checks import ShapeError, check_dout, check_float_array
from ..functional import loss as L
from .module import Module


class _Loss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in L.REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be one of {L.REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"

    def _check(self, pred: np.ndarray, target: np.ndarray) -> None:
        where = self._describe()
        check_float_array(where, pred, "prediction")
        check_float_array(where, target, "target")
        if pred.shape != target.shape:
            raise ShapeError(f"{where}: prediction and target must have the same shape, got {pred.shape} and {target.shape}")
        if pred.dtype != target.dtype:
            raise TypeError(f"{where}: prediction is {pred.dtype} but target is {target.dtype}; convert one of them")
        for name, array in (("prediction", pred), ("target", target)):
            if not np.isfinite(array).all():
                bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
                raise ValueError(f"{where}: the {name} contains {bad} NaN or infinite value(s)")

    def forward(self, pred: np.ndarray, target: np.ndarray):
        self._check(pred, target)
        loss, cache = self._forward(pred, target)
        self._save_for_backward(cache)
        return loss

    def backward(self, dloss=1.0) -> np.ndarray:
        """``dpred``; ``dloss`` is a real number (``reduction`` "mean"/"sum") or, with "none", an array of
        the prediction's shape and dtype (as ``torch.Tensor.backward(gradient)``)."""
        cache = self._saved_cache()
        where = self._describe()
        if self.reduction == "none":
            check_dout(where, dloss, cache.diff.shape, cache.diff.dtype, "dloss")
        elif isinstance(dloss, (bool, np.bool_)) or not isinstance(dloss, (int, float, np.number, np.ndarray)) \
                or np.ndim(dloss) != 0 or not np.isrealobj(dloss):
            raise TypeError(f"{where}: expected dloss to be a real number (the loss is a scalar), got {dloss!r}")
        return self._backward(dloss, cache)


class MSELoss(_Loss):
    """Mean squared error ``mean((pred - target)^2)``; backward ``2 (pred - target) / n``."""

    def _forward(self, pred: np.ndarray, target: np.ndarray):
        return L.mse_loss_forward(pred, target, self.reduction)

    _backward = staticmethod(L.mse_loss_backward)


class L1Loss(_Loss):
    """Mean absolute error ``mean(|pred - target|)``; backward ``sign(pred - target) / n``."""

    def _forward(self, pred: np.ndarray, target: np.ndarray):
        return L.l1_loss_forward(pred, target, self.reduction)

    _backward = staticmethod(L.l1_loss_backward)


class SmoothL1Loss(_Loss):
    """Huber-like loss: quadratic for ``|d| < beta``, linear beyond (``beta=0`` is L1)."""

    def __init__(self, reduction: str = "mean", beta: float = 1.0):
        super().__init__(reduction)
        if not (isinstance(beta, (int, float, np.integer, np.floating)) and np.isfinite(beta) and beta >= 0):
            raise ValueError(f"SmoothL1Loss: beta must be non-negative, got {beta!r} (a finite number >= 0)")
        self.beta = float(beta)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, beta={self.beta}"

    def _forward(self, pred: np.ndarray, target: np.ndarray):
        return L.smooth_l1_loss_forward(pred, target, self.reduction, self.beta)

    _backward = staticmethod(L.smooth_l1_loss_backward)
