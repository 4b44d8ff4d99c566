"""Weight averaging, with PyTorch's names (``torch.optim.swa_utils``): ``AveragedModel``, the EMA and SWA
averaging rules, and ``update_bn``.

An averaged model keeps its own copy of a model's parameters and, after each optimizer step,
``update_parameters(model)`` moves them towards the model's:

- EMA (exponential moving average, ``get_ema_multi_avg_fn(decay)``): ``avg = decay * avg + (1 - decay) * w``;
- SWA (equal average of every snapshot, the default): ``avg = avg + (w - avg) / (n + 1)``.

The first call copies the weights (``n_averaged`` counts the calls). Averaged weights sit between the
iterates the optimizer visited, which usually generalise a little better than the last one.

Batch norm: the running statistics a model collected belong to *its* weights, not to the averaged ones.
``update_bn(loader, averaged)`` recomputes them with one pass over the training data in train mode (the
cumulative average of the batch statistics, ``momentum=None``), as PyTorch's ``update_bn``. With
``use_buffers=True`` the buffers are averaged like the parameters instead (PyTorch's option; cheaper, no
extra pass, but an average of statistics of other weights).
"""
from __future__ import annotations

import copy
from typing import Callable, Iterable

import numpy as np

from .._grad_mode import no_grad
from ..nn.module import Module
from ..nn.normalization import _BatchNorm

AvgFn = Callable[[np.ndarray, np.ndarray, int], None]


def get_ema_multi_avg_fn(decay: float = 0.999) -> AvgFn:
    """In place, per array: ``averaged = decay * averaged + (1 - decay) * current``."""
    decay = float(decay)
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"get_ema_multi_avg_fn: decay must be in [0, 1], got {decay}")

    def ema(averaged: np.ndarray, current: np.ndarray, num_averaged: int) -> None:
        averaged *= averaged.dtype.type(decay)
        averaged += averaged.dtype.type(1.0 - decay) * current

    return ema


def get_swa_multi_avg_fn() -> AvgFn:
    """In place, per array: ``averaged += (current - averaged) / (num_averaged + 1)`` (an equal average)."""

    def swa(averaged: np.ndarray, current: np.ndarray, num_averaged: int) -> None:
        averaged += (current - averaged) / averaged.dtype.type(num_averaged + 1)

    return swa


class AveragedModel(Module):
    """A copy of ``model`` whose parameters are the running average of ``model``'s.

    Parameters
    ----------
    model : Module
        Copied (deeply) at construction; the copy is ``self.module``.
    multi_avg_fn : callable, optional
        ``fn(averaged, current, num_averaged)`` updating ``averaged`` in place; default the equal (SWA)
        average. ``get_ema_multi_avg_fn(decay)`` for an exponential moving average.
    use_buffers : bool
        Average the buffers too (batch norm's running statistics), instead of keeping the copy's.

    ``state_dict`` keys are ``module.<name>`` plus ``n_averaged``, as PyTorch's; ``forward`` and
    ``backward`` are the copy's.
    """

    def __init__(self, model: Module, multi_avg_fn: AvgFn | None = None, use_buffers: bool = False):
        super().__init__()
        if not isinstance(model, Module):
            raise TypeError(f"AveragedModel: expected a tinynet Module, got {type(model).__name__}")
        self.module = copy.deepcopy(model)
        self.multi_avg_fn = get_swa_multi_avg_fn() if multi_avg_fn is None else multi_avg_fn
        self.use_buffers = bool(use_buffers)
        self.register_buffer("n_averaged", np.zeros((), dtype=np.int64))

    def forward(self, *inputs):
        return self.module(*inputs)

    def backward(self, dout):
        return self.module.backward(dout)

    def _pairs(self, model: Module) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        ours = [p.data for p in self.module.parameters()]
        theirs = [p.data for p in model.parameters()]
        if self.use_buffers:
            # integer buffers (num_batches_tracked) are copied, not averaged
            ours += [b for b in self.module.buffers() if b.dtype.kind == "f"]
            theirs += [b for b in model.buffers() if b.dtype.kind == "f"]
        if len(ours) != len(theirs) or any(a.shape != b.shape for a, b in zip(ours, theirs)):
            raise ValueError("AveragedModel.update_parameters: the model's parameters do not match the averaged copy's")
        return zip(ours, theirs)

    def update_parameters(self, model: Module) -> None:
        """Average ``model``'s current parameters (and buffers, with ``use_buffers``) into the copy."""
        n = int(self.n_averaged)
        for averaged, current in self._pairs(model):
            if n == 0:
                np.copyto(averaged, current)
            else:
                self.multi_avg_fn(averaged, current, n)
        if self.use_buffers:
            for ours, theirs in zip(self.module.buffers(), model.buffers()):
                if ours.dtype.kind != "f":
                    np.copyto(ours, theirs)
        self.n_averaged[...] = n + 1

    def extra_repr(self) -> str:
        return f"use_buffers={self.use_buffers}"


def update_bn(loader: Iterable, model: Module) -> None:
    """Recompute every batch norm's running statistics of ``model`` with one pass over ``loader``.

    ``loader`` yields inputs, or tuples whose first item is the input (``(x, y)`` batches). Each batch
    norm's running mean and variance are reset and become the cumulative average over the batches
    (``momentum=None``); momentum and train/eval mode are restored afterwards. Nothing is kept for
    backward. As ``torch.optim.swa_utils.update_bn``.
    """
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    if not norms:
        return
    momenta = {id(m): m.momentum for m in norms}
    for m in norms:
        m.running_mean[...] = 0
        m.running_var[...] = 1
        m.num_batches_tracked[...] = 0
        m.momentum = None
    was_training = model.training
    model.train()
    try:
        with no_grad():
            for batch in loader:
                model(batch[0] if isinstance(batch, (tuple, list)) else batch)
    finally:
        for m in norms:
            m.momentum = momenta[id(m)]
        model.train(was_training)
