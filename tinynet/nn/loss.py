"""Loss modules: ``MSELoss``, ``L1Loss``, ``SmoothL1Loss``, ``WingLoss`` (regression) and ``CrossEntropyLoss``
(classification).

``loss = criterion(pred, target)`` returns a 0-d value of ``pred``'s dtype; ``criterion.backward()``
returns ``dpred`` (the gradient of the loss, times an optional ``dloss``), ready for ``model.backward``.
NaN or inf in either argument raises ``ValueError`` at once: a diverging run should stop with a clear
message, not train on garbage.
"""
from __future__ import annotations

import numpy as np

from .._checks import FLOAT_DTYPES, ShapeError, check_dout, check_float_array, check_same_dtype
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
        where = self._where()
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
        where = self._where()
        if self.reduction == "none":
            shape, dtype = self._elementwise_loss(cache)
            check_dout(where, dloss, shape, dtype, "dloss")
        elif isinstance(dloss, (bool, np.bool_)) or not isinstance(dloss, (int, float, np.number, np.ndarray)) \
                or np.ndim(dloss) != 0 or not np.isrealobj(dloss):
            raise TypeError(f"{where}: expected dloss to be a real number (the loss is a scalar), got {dloss!r}")
        return self._backward(dloss, cache)

    @staticmethod
    def _elementwise_loss(cache) -> tuple[tuple[int, ...], np.dtype]:
        """Shape and dtype of the loss with ``reduction="none"``: the prediction's, for the regression losses."""
        return cache.diff.shape, cache.diff.dtype


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


class WingLoss(_Loss):
    """Wing loss for landmark regression (Feng et al., CVPR 2018): ``width * ln(1 + |d| / curvature)`` for
    ``|d| < width``, ``|d| - C`` beyond (see ``tinynet.functional.loss.wing_loss_forward``).

    ``width`` and ``curvature`` are in the units of the targets (the paper's 10 and 2 are pixels of a
    64-pixel face; scale them with your coordinates). PyTorch has no built-in Wing loss.
    """

    def __init__(self, width: float = 10.0, curvature: float = 2.0, reduction: str = "mean"):
        super().__init__(reduction)
        width, curvature = float(width), float(curvature)
        if not (np.isfinite(width) and width > 0):
            raise ValueError(f"WingLoss: width must be positive and finite, got {width}")
        if not (np.isfinite(curvature) and curvature > 0):
            raise ValueError(f"WingLoss: curvature must be positive and finite, got {curvature}")
        self.width, self.curvature = width, curvature

    def extra_repr(self) -> str:
        return f"width={self.width}, curvature={self.curvature}, reduction={self.reduction!r}"

    def _forward(self, pred: np.ndarray, target: np.ndarray):
        return L.wing_loss_forward(pred, target, self.reduction, self.width, self.curvature)

    _backward = staticmethod(L.wing_loss_backward)


class CrossEntropyLoss(_Loss):
    """Cross-entropy of the logits' softmax against class indices or class probabilities, as PyTorch.

    ``criterion(logits, target)``:

    - ``logits`` (N, C), (N, C, d1, ...) (e.g. a score per pixel) or a single sample (C,), float;
    - ``target`` integer class indices of shape (N,), (N, d1, ...) or (), each in ``[0, C)`` or equal to
      ``ignore_index``; or float probabilities of ``logits``' shape and dtype.

    ``weight`` (C,) rescales each class; ``"mean"`` is then the weighted mean ``sum_n w_{y_n} loss_n /
    sum_n w_{y_n}`` over the targets not ignored. ``label_smoothing`` mixes the target with the uniform
    distribution: ``(1 - eps) target + eps / C``. The formulas are in
    ``tinynet.functional.loss.cross_entropy_forward``; backward is ``softmax - one_hot`` in the plain case.

    A class index outside ``[0, C)`` raises ``IndexError`` (as PyTorch); float class indices, NaN or
    infinite logits, and shapes that fit neither kind of target raise before anything is computed.
    """

    def __init__(
        self,
        weight: np.ndarray | None = None,
        *,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ):
        super().__init__(reduction)
        where = type(self).__name__
        if weight is not None:
            floating = isinstance(weight, np.ndarray) and weight.dtype in FLOAT_DTYPES
            weight = np.array(weight, dtype=weight.dtype if floating else np.float32)  # own copy; float32 by default
            if weight.ndim != 1 or weight.size == 0:
                raise ShapeError(f"{where}: weight must be a 1-D array with one value per class, got shape {weight.shape}")
            if not np.isfinite(weight).all():
                raise ValueError(f"{where}: weight contains NaN or infinite values")
            self.register_buffer("weight", weight)  # in state_dict, converted by .double(), as torch's buffer
        else:
            self.weight = None
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
            raise TypeError(f"{where}: ignore_index must be an int, got {ignore_index!r}")
        self.ignore_index = int(ignore_index)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"{where}: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    @staticmethod
    def _elementwise_loss(cache) -> tuple[tuple[int, ...], np.dtype]:
        """With ``reduction="none"`` the loss has the logits' shape without the class dimension."""
        shape = cache.probs.shape[: cache.class_dim] + cache.probs.shape[cache.class_dim + 1 :]
        return shape, cache.probs.dtype

    def extra_repr(self) -> str:
        weight = "" if self.weight is None else f"weight=<{self.weight.size} classes>, "
        return (
            f"{weight}ignore_index={self.ignore_index}, reduction={self.reduction!r},"
            f" label_smoothing={self.label_smoothing}"
        )

    def _check(self, logits: np.ndarray, target: np.ndarray) -> None:
        where = self._where()
        check_float_array(where, logits, "logits")
        if logits.ndim == 0 or logits.shape[1 if logits.ndim > 1 else 0] == 0:
            raise ShapeError(f"{where}: expected logits of shape (N, C, ...) or (C,) with C >= 1, got shape {logits.shape}")
        class_dim = 1 if logits.ndim > 1 else 0
        num_classes = logits.shape[class_dim]
        index_shape = logits.shape[:class_dim] + logits.shape[class_dim + 1 :]
        if not isinstance(target, np.ndarray):
            raise TypeError(f"{where}: expected target to be a numpy.ndarray, got {type(target).__name__}")
        kinds = (
            f"class indices of shape {index_shape} (an integer dtype) or probabilities of shape {logits.shape}"
        )
        if target.dtype.kind in "iu":
            if target.shape != index_shape:
                raise ShapeError(f"{where}: expected target {kinds}, got integers of shape {target.shape}")
            bad = ~(((target >= 0) & (target < num_classes)) | (target == self.ignore_index))
            if bad.any():
                raise IndexError(
                    f"{where}: target class index {target[bad].flat[0]} is out of range for {num_classes} classes"
                    f" (expected 0..{num_classes - 1} or ignore_index={self.ignore_index}; {int(bad.sum())} bad)"
                )
        elif target.dtype in FLOAT_DTYPES:
            if target.shape == index_shape and target.shape != logits.shape:
                raise TypeError(
                    f"{where}: target of shape {target.shape} looks like class indices but has dtype {target.dtype};"
                    " class indices must be integers (convert with target.astype(np.int64))"
                )
            if target.shape != logits.shape:
                raise ShapeError(f"{where}: expected target {kinds}, got shape {target.shape}")
            if target.dtype != logits.dtype:
                raise TypeError(f"{where}: logits are {logits.dtype} but the target probabilities are {target.dtype}; convert one of them")
            if self.ignore_index >= 0:  # a class that could be meant to be ignored: refused, as PyTorch
                raise ValueError(f"{where}: ignore_index applies to class-index targets only, not to probabilities")
        else:
            raise TypeError(f"{where}: expected target {kinds}, got dtype {target.dtype}")
        if self.weight is not None:
            if self.weight.size != num_classes:
                raise ShapeError(f"{where}: weight has {self.weight.size} values but the logits have {num_classes} classes")
            check_same_dtype(where, logits, self.weight)
        for name, array in (("logits", logits), ("target", target)):
            if array.dtype in FLOAT_DTYPES and not np.isfinite(array).all():
                bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
                raise ValueError(f"{where}: the {name} contain {bad} NaN or infinite value(s)")

    def _forward(self, logits: np.ndarray, target: np.ndarray):
        return L.cross_entropy_forward(
            logits, target, self.weight, self.ignore_index, self.reduction, self.label_smoothing
        )

    _backward = staticmethod(L.cross_entropy_backward)
